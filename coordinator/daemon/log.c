/* sagad log records: formatting (text or JSON lines) and the single write.
 * Nothing here allocates or locks: a record is built in a bounded stack
 * buffer, saga and step first so a cut message never loses them. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "text.h"
#include "timetext.h"

static sagad_log_format_t fmt_in_use = SAGAD_LOG_FORMAT_TEXT;
static bool with_ts = true;
static int out_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *sagad_log_level_name(sagad_log_level_t level) {
  if ((int)level < 0 || level > SAGAD_LOG_DEBUG)
    return "debug";
  return level_names[level];
}

static void write_record(void *arg, sagad_log_level_t level,
                         const char *saga, const char *step,
                         const char *msg);

void sagad_log_setup(sagad_log_level_t level, sagad_log_format_t format,
                     bool timestamps, int fd) {
  sagad_log_sink_t sink = {.write = write_record};
  sagad_log_set_sink(&sink, level);
  if (format == SAGAD_LOG_FORMAT_AUTO)
    format = isatty(fd) ? SAGAD_LOG_FORMAT_TEXT : SAGAD_LOG_FORMAT_JSON;
  fmt_in_use = format;
  with_ts = timestamps;
  out_fd = fd;
}

void sagad_log_setup_from_config(const sagad_config_t *cfg, int fd) {
  sagad_log_setup((sagad_log_level_t)cfg->log_level,
                  (sagad_log_format_t)cfg->log_format, cfg->log_timestamps,
                  fd);
}

sagad_log_format_t sagad_log_format_in_use(void) { return fmt_in_use; }

sagad_log_level_t sagad_log_level_from_syslog(int syslog_level) {
  if (syslog_level <= 3) /* emerg, alert, crit, err */
    return SAGAD_LOG_ERROR;
  if (syslog_level == 4)
    return SAGAD_LOG_WARN;
  if (syslog_level <= 6) /* notice, info */
    return SAGAD_LOG_INFO;
  return SAGAD_LOG_DEBUG;
}

/* ---- a bounded output buffer ---- */

/* Room kept back for "...", the closing of a JSON record and the newline. */
#define TAIL_RESERVE 8

typedef struct {
  char *buf;
  size_t limit; /* content may not pass this */
  size_t len;
  bool cut;
} out_t;

static bool room(out_t *o, size_t n) {
  if (o->len + n <= o->limit)
    return true;
  o->cut = true;
  return false;
}

static void put(out_t *o, const char *s, size_t n) {
  if (o->cut || !room(o, n))
    return;
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

/* Close the record in the reserved tail, marking a cut message with "...". */
static void finish(out_t *o, size_t cap, const char *close) {
  bool was_cut = o->cut;
  o->cut = false;
  o->limit = cap - 1;
  if (was_cut)
    puts_(o, "...");
  puts_(o, close);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s) {
  return saga__utf8_seq_len(s, strnlen((const char *)s, 4));
}

/* Escape s as the inside of a JSON string. */
static void put_json(out_t *o, const char *s) {
  char esc[8];
  const unsigned char *p = (const unsigned char *)s;
  while (*p && !o->cut) {
    size_t n = utf8_len(p);
    if (n == 0) {
      put(o, "\\ufffd", 6);
      p++;
      continue;
    }
    if (n > 1) {
      put(o, (const char *)p, n);
      p += n;
      continue;
    }
    switch (*p) {
    case '"':
      put(o, "\\\"", 2);
      break;
    case '\\':
      put(o, "\\\\", 2);
      break;
    case '\n':
      put(o, "\\n", 2);
      break;
    case '\r':
      put(o, "\\r", 2);
      break;
    case '\t':
      put(o, "\\t", 2);
      break;
    default:
      if (*p < 0x20 || *p == 0x7f) {
        snprintf(esc, sizeof esc, "\\u%04x", *p);
        put(o, esc, 6);
      } else {
        put(o, (const char *)p, 1);
      }
    }
    p++;
  }
}

static bool is_fold(unsigned char c) {
  return c == '\n' || c == '\r' || c == '\t';
}

/* Escape s for a text record. A line break or tab, with the blanks around
 * it, becomes one space (none at the end): a multi-line message (libpq's
 * "...\nDETAIL: ...", librdkafka's) reads as one line, with no literal
 * "\n" in it. Other control characters and invalid UTF-8 are C escapes;
 * in a quoted value also '"' and '\\'. */
static void put_text(out_t *o, const char *s, bool quoted) {
  char esc[8];
  const unsigned char *p = (const unsigned char *)s;
  size_t start = o->len;
  while (*p && !o->cut) {
    if (is_fold(*p)) {
      while (o->len > start && o->buf[o->len - 1] == ' ')
        o->len--;
      while (is_fold(*p) || *p == ' ')
        p++;
      if (*p && o->len > start)
        put(o, " ", 1);
      continue;
    }
    size_t n = utf8_len(p);
    if (n > 1) {
      put(o, (const char *)p, n);
      p += n;
      continue;
    }
    if (n == 1 && quoted && (*p == '"' || *p == '\\')) {
      char two[2] = {'\\', (char)*p};
      put(o, two, 2);
    } else if (n == 0 || *p < 0x20 || *p == 0x7f) {
      snprintf(esc, sizeof esc, "\\x%02x", *p);
      put(o, esc, 4);
    } else {
      put(o, (const char *)p, 1);
    }
    p++;
  }
}

static void put_text_field(out_t *o, const char *key, const char *v) {
  bool quote = !*v || strpbrk(v, " \"=\\:") != NULL;
  for (const unsigned char *p = (const unsigned char *)v; *p && !quote; p++)
    quote = *p < 0x20 || *p == 0x7f;
  puts_(o, key);
  if (quote)
    puts_(o, "\"");
  put_text(o, v, quote);
  if (quote)
    puts_(o, "\"");
}

size_t sagad_log_format_record(char *buf, size_t cap,
                               sagad_log_format_t format, int64_t unix_ms,
                               sagad_log_level_t level, const char *saga,
                               const char *step, const char *msg) {
  if (cap < TAIL_RESERVE + 2) {
    if (cap)
      buf[0] = '\0';
    return 0;
  }
  out_t o = {buf, cap - TAIL_RESERVE - 1, 0, false};
  char ts[96]; /* room for any int the compiler may assume */
  if (unix_ms >= 0)
    saga__rfc3339_ms(ts, sizeof ts, unix_ms);
  const char *lvl = sagad_log_level_name(level);
  if (format == SAGAD_LOG_FORMAT_JSON) {
    puts_(&o, "{");
    if (unix_ms >= 0) {
      puts_(&o, "\"ts\":\"");
      puts_(&o, ts);
      puts_(&o, "\",");
    }
    puts_(&o, "\"level\":\"");
    puts_(&o, lvl);
    puts_(&o, "\"");
    const char *keys[2] = {",\"saga\":\"", ",\"step\":\""};
    const char *vals[2] = {saga, step};
    for (int i = 0; i < 2; i++) {
      if (!vals[i])
        continue;
      puts_(&o, keys[i]);
      put_json(&o, vals[i]);
      puts_(&o, "\"");
    }
    puts_(&o, ",\"msg\":\"");
    put_json(&o, msg);
    finish(&o, cap, "\"}\n");
  } else {
    if (unix_ms >= 0) {
      puts_(&o, ts);
      puts_(&o, " ");
    }
    char lv[8];
    snprintf(lv, sizeof lv, "%-5s ", lvl);
    puts_(&o, lv);
    if (saga) {
      put_text_field(&o, "saga=", saga);
      puts_(&o, step ? " " : ": ");
    }
    if (step) {
      put_text_field(&o, "step=", step);
      puts_(&o, ": ");
    }
    put_text(&o, msg, false);
    finish(&o, cap, "\n");
  }
  buf[o.len] = '\0';
  return o.len;
}

/* The log port's sink: format the record with the current settings and
 * write it with one write(2). */
static void write_record(void *arg, sagad_log_level_t level,
                         const char *saga, const char *step,
                         const char *msg) {
  (void)arg;
  char line[SAGAD_LOG_LINE_MAX];
  int64_t now = -1;
  if (with_ts) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    now = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
  }
  size_t n = sagad_log_format_record(line, sizeof line, fmt_in_use, now, level,
                                     saga, step, msg);
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(out_fd, line + off, n - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break; /* a full non-blocking stderr drops the record, never waits */
    off += (size_t)w;
  }
}
