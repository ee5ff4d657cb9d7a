/* sagactl's command line: the options table, the parser, and duration and
 * time formatting (parsing durations is common/timetext.h's). Pure: no I/O except cli_fail's line on stderr. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cli.h"
#include "conninfo.h"
#include "text.h"
#include "timetext.h"

static const struct {
  const char *name;
  int takes_value;
  const char *help;
} OPTS[] = {
#define CLI_OPT_ROW_(id, name, val, help) {name, val, help},
    CLI_OPTION_MAP(CLI_OPT_ROW_)
#undef CLI_OPT_ROW_
};

const char *cli_opt_name(cli_opt_t o) { return OPTS[o].name; }
const char *cli_opt_help(cli_opt_t o) { return OPTS[o].help; }
int cli_opt_takes_value(cli_opt_t o) { return OPTS[o].takes_value; }

static int find_opt(const char *name, size_t len) {
  for (int i = 0; i < CLI_OPT_COUNT_; i++)
    if (strlen(OPTS[i].name) == len && strncmp(OPTS[i].name, name, len) == 0)
      return i;
  return -1;
}

int cli_args_parse(int argc, const char *const argv[], cli_args_t *out, char *err,
                   size_t errlen) {
  memset(out, 0, sizeof *out);
  int only_positional = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!only_positional && strcmp(a, "--") == 0) {
      only_positional = 1;
      continue;
    }
    if (!only_positional && strcmp(a, "-h") == 0) {
      out->opt[CLI_OPT_HELP] = "1";
      continue;
    }
    if (!only_positional && a[0] == '-' && a[1] != '\0') {
      if (a[1] != '-') {
        char shown[CLI_SHOW_SIZE];
        snprintf(err, errlen, "unknown option \"%s\" (options are --long)",
                 cli_show(a, shown, sizeof shown));
        return -1;
      }
      const char *name = a + 2;
      const char *eq = strchr(name, '=');
      size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
      int o = find_opt(name, len);
      if (o < 0) {
        char shown[CLI_SHOW_SIZE];
        char *nm = strndup(name, len);
        snprintf(err, errlen, "unknown option \"--%s\"",
                 nm != NULL ? cli_show(nm, shown, sizeof shown) : "");
        free(nm);
        return -1;
      }
      if (out->opt[o] != NULL) {
        snprintf(err, errlen, "option \"--%s\" given twice", OPTS[o].name);
        return -1;
      }
      if (!OPTS[o].takes_value) {
        if (eq != NULL) {
          snprintf(err, errlen, "option \"--%s\" takes no value",
                   OPTS[o].name);
          return -1;
        }
        out->opt[o] = "1";
      } else if (eq != NULL) {
        out->opt[o] = eq + 1;
      } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) == 0 &&
                 argv[i + 1][2] != '\0') {
        /* `--reason --dry-run` is a forgotten value, not a reason: taken
         * as one, the action the user meant to preview would be sent */
        char shown[CLI_SHOW_SIZE];
        snprintf(err, errlen,
                 "option \"--%s\" needs a value, and \"%s\" is an option "
                 "(for a value that starts with \"--\", write --%s=VALUE)",
                 OPTS[o].name, cli_show(argv[i + 1], shown, sizeof shown),
                 OPTS[o].name);
        return -1;
      } else if (i + 1 < argc) {
        out->opt[o] = argv[++i];
      } else {
        snprintf(err, errlen, "option \"--%s\" needs a value", OPTS[o].name);
        return -1;
      }
      continue;
    }
    if (out->command == NULL) {
      out->command = a;
    } else if (out->npos < CLI_MAX_POSITIONAL) {
      out->pos[out->npos++] = a;
    } else {
      char shown[CLI_SHOW_SIZE];
      snprintf(err, errlen, "too many arguments at \"%s\"",
               cli_show(a, shown, sizeof shown));
      return -1;
    }
  }
  return 0;
}

int cli_args_check(const cli_args_t *args, uint32_t allowed,
                   const char *command, char *err, size_t errlen) {
  for (int i = 0; i < CLI_OPT_COUNT_; i++) {
    if (args->opt[i] != NULL && (allowed & ((uint32_t)1 << i)) == 0) {
      snprintf(err, errlen, "%s: option \"--%s\" does not apply", command,
               OPTS[i].name);
      return -1;
    }
  }
  return 0;
}

int cli_parse_uint(const char *text, uint64_t min, uint64_t max,
                   uint64_t *out) {
  if (text == NULL || *text < '0' || *text > '9')
    return -1;
  errno = 0;
  char *end = NULL;
  unsigned long long n = strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || n < min || n > max)
    return -1;
  *out = n;
  return 0;
}

int cli_saga_id_check(const char *id, char *why, size_t len) {
  size_t n = strlen(id);
  if (n == 0) {
    snprintf(why, len, "saga id is empty");
    return -1;
  }
  if (n > CLI_SAGA_ID_MAX) {
    snprintf(why, len, "saga id is %zu bytes long, the ceiling is %d", n,
             CLI_SAGA_ID_MAX);
    return -1;
  }
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)id[i];
    size_t k = saga__utf8_seq_len(id + i, n - i);
    if (k == 0) {
      snprintf(why, len, "saga id is not valid UTF-8 at byte %zu", i);
      return -1;
    }
    if (k == 1 && (c < 0x20 || c == 0x7f)) {
      snprintf(why, len, "saga id holds a control character at byte %zu", i);
      return -1;
    }
    i += k;
  }
  return 0;
}

const char *cli_show(const char *v, char *buf, size_t len) {
  enum { SHOWN = 64 };
  size_t n = strlen(v), o = 0, i = 0;
  buf[0] = '\0';
  while (i < n && i < SHOWN && o + 8 < len) {
    unsigned char c = (unsigned char)v[i];
    size_t k = saga__utf8_seq_len(v + i, n - i);
    if (k == 0 || (k == 1 && (c < 0x20 || c == 0x7f)) ||
        (k == 2 && c == 0xc2 && (unsigned char)v[i + 1] < 0xa0)) {
      o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
      i++;
      continue;
    }
    if (i + k > SHOWN)
      break;
    memcpy(buf + o, v + i, k);
    o += k;
    i += k;
  }
  buf[o] = '\0';
  if (i < n)
    snprintf(buf + o, len - o, "... (%zu bytes)", n);
  return buf;
}

const char *cli_flat(const char *v, char *buf, size_t len) {
  size_t n = strlen(v), o = 0;
  for (size_t i = 0; i < n && o + 1 < len;) {
    unsigned char c = (unsigned char)v[i];
    size_t k = saga__utf8_seq_len(v + i, n - i);
    if (k == 0) { /* not UTF-8: no terminal's business either */
      buf[o++] = '?';
      i++;
    } else if ((k == 1 && (c < 0x20 || c == 0x7f)) ||
               (k == 2 && c == 0xc2 && (unsigned char)v[i + 1] < 0xa0)) {
      buf[o++] = ' ';
      i += k;
    } else if (o + k < len) {
      memcpy(buf + o, v + i, k);
      o += k;
      i += k;
    } else {
      break; /* a sequence is never cut */
    }
  }
  if (len > 0)
    buf[o] = '\0';
  return buf;
}

const char *cli_duration_why(const char *text, char *buf, size_t len) {
  /* what cli_show changes (a control character, a long tail) is no
   * duration either, and a bare number stays one: the same reason */
  char shown[CLI_SHOW_SIZE];
  return saga__duration_explain(cli_show(text, shown, sizeof shown), buf,
                                len);
}

char *cli_format_time(int64_t ms, char *buf, size_t len) {
  if (ms <= 0) {
    snprintf(buf, len, "-");
    return buf;
  }
  return saga__rfc3339_ms(buf, len, ms);
}

char *cli_format_duration(int64_t ms, char *buf, size_t len) {
  if (ms < 0)
    snprintf(buf, len, "-");
  else if (ms < 1000)
    snprintf(buf, len, "%" PRId64 "ms", ms);
  else if (ms < 60000)
    snprintf(buf, len, "%" PRId64 ".%03" PRId64 "s", ms / 1000, ms % 1000);
  else if (ms < 3600000)
    snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", ms / 60000,
             ms / 1000 % 60);
  else if (ms < 86400000)
    snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", ms / 3600000,
             ms / 60000 % 60);
  else
    snprintf(buf, len, "%" PRId64 "d%" PRId64 "h", ms / 86400000,
             ms / 3600000 % 24);
  return buf;
}

char *cli_connect_timeout(int64_t timeout_ms, char *buf, size_t len) {
  /* libpq's connect_timeout is whole seconds, at least 2. */
  int64_t secs = (timeout_ms + 999) / 1000;
  if (secs < 2)
    secs = 2;
  snprintf(buf, len, "%" PRId64, secs);
  return buf;
}

char *cli_conninfo_where(const char *conninfo, char *buf, size_t len) {
  const char *host = NULL, *port = NULL, *db = NULL;
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
  if (opts != NULL) {
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
      if (o->val == NULL)
        continue;
      if (strcmp(o->keyword, "host") == 0 || (host == NULL &&
                                              strcmp(o->keyword, "hostaddr") == 0))
        host = o->val;
      else if (strcmp(o->keyword, "port") == 0)
        port = o->val;
      else if (strcmp(o->keyword, "dbname") == 0)
        db = o->val;
    }
  }
  snprintf(buf, len, "%s%s%s%s%s", host != NULL ? host : "(default host)",
           port != NULL ? ":" : "", port != NULL ? port : "",
           db != NULL ? " database " : "", db != NULL ? db : "");
  PQconninfoFree(opts);
  PQfreemem(perr);
  return buf;
}

int cli_conninfo_check(const char *conninfo, char *why, size_t len) {
  /* PQconnectdbParams' expand_dbname takes text without '=' that is not a
   * URI for a database name, as it stands. */
  if (strchr(conninfo, '=') == NULL &&
      strncmp(conninfo, "postgresql://", 13) != 0 &&
      strncmp(conninfo, "postgres://", 11) != 0)
    return 0;
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
  int rc = 0;
  if (opts == NULL) {
    snprintf(why, len, "%s",
             perr != NULL ? perr : "out of memory parsing the conninfo");
    why[strcspn(why, "\n")] = '\0';
    rc = -1;
  }
  for (PQconninfoOption *o = opts; rc == 0 && o && o->keyword != NULL; o++)
    if (o->val != NULL)
      rc = saga__conninfo_value_check(o->keyword, o->val, why, len);
  PQconninfoFree(opts);
  PQfreemem(perr);
  return rc;
}

int64_t cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_fail(int code, const char *fmt, ...) {
  char small[2048], *text = small;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (w >= (int)sizeof small && (text = malloc((size_t)w + 1)) != NULL) {
    va_start(ap, fmt);
    vsnprintf(text, (size_t)w + 1, fmt, ap);
    va_end(ap);
  }
  if (w < 0)
    small[0] = '\0';
  if (text == NULL)
    text = small; /* out of memory: the start of the line */
  /* one line whatever a value in it holds: a control character or a byte
   * that is not UTF-8 as \xNN, as cli_show shows them */
  fputs("sagactl: ", stderr);
  size_t n = strlen(text);
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)text[i];
    size_t k = saga__utf8_seq_len(text + i, n - i);
    if (k == 0 || (k == 1 && (c < 0x20 || c == 0x7f)) ||
        (k == 2 && c == 0xc2 && (unsigned char)text[i + 1] < 0xa0)) {
      fprintf(stderr, "\\x%02x", c);
      i++;
    } else {
      fwrite(text + i, 1, k, stderr);
      i += k;
    }
  }
  fputc('\n', stderr);
  if (text != small)
    free(text);
  return code;
}
