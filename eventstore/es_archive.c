/* Archive files: the format of one era's events written before its table
 * is dropped (docs/internals/eventstore.md, "Archive files"), the reader
 * of the public API and the writer saga-es-archive uses. Plain file I/O
 * through zlib (gzip streams); no database here. The reader inflates
 * with zlib's stream API rather than gzread, which would take a file
 * that is not gzip at all as it is and skip whatever follows the gzip
 * stream: a reader that verifies must see both. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "es_internal.h"

#define MAGIC "saga-es-archive "
#define FORMAT_VERSION 1
#define HEADER_MAX 65536             /* bytes of header text */
#define BODY_MAX (UINT32_C(1) << 30) /* bytes of one record */
#define FIXED_LEN (8 * 4 + 16)       /* position, tx, version, time, id */
#define NFIELDS 7                    /* variable fields of an event */
#define NULL_LEN UINT32_MAX
#define ZBUF 131072 /* bytes read from the file, and inflated, at a time */
/* A record is read this much at a time, so a damaged length cannot claim
 * memory the file lacks. */
#define BODY_STEP (UINT32_C(1) << 20)

/* A stream id by two independent 64-bit hashes: the streams of a file are
 * counted without keeping their ids (a mistaken count needs both to
 * collide). {0, 0} marks an empty slot. */
struct sid {
  uint64_t a, b;
};

struct es_archive {
  int fd;
  z_stream zs;
  int zinit;       /* inflateInit2 done */
  int member_done; /* the gzip member inflated so far ended whole */
  int any_member;  /* a gzip member's first bytes were seen */
  unsigned char *zin, *zout;
  size_t out_pos, out_len; /* what zout holds and get() has not taken */
  char path[256];
  es_archive_info_t info;
  uLong crc;          /* of every byte read before the manifest's tag */
  int64_t seen;       /* events read so far */
  es_pos_t last;      /* the last event's (tx, position) */
  int done;           /* the manifest was read and checked */
  int sum_seen;       /* the manifest's checksum line was read */
  unsigned keys;      /* bits of the header and manifest keys read */
  struct sid *sids;   /* the distinct streams seen (hashes), open addressing */
  size_t n_sids, cap_sids;
  int err;            /* sticky error */
  es__buf_t body;     /* the record being read */
  es__buf_t arena;    /* the strings of the page being built */
  es_recorded_t *evs; /* the page's events, pointers as arena offsets */
  size_t n_evs, cap_evs;
  char msg[ES_ERRBUF_SIZE];
};

struct es__arw {
  gzFile gz;
  int fd;
  char path[256];
  uLong crc;
  int64_t events;
  es_archive_info_t info;
  es__buf_t rec;
};

/* ---- common ---- */

static void be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static const char *gz_reason(gzFile gz) {
  int zerr = Z_OK;
  const char *m = gzerror(gz, &zerr);
  return zerr == Z_ERRNO ? strerror(errno) : m;
}

/* path as it goes into a message of at most room bytes: whole when it
 * fits, else "..." and its end (the file's name), so that the reason
 * after it is never cut off. Returns buf. */
static const char *short_path(char *buf, size_t cap, const char *path,
                              size_t room) {
  size_t len = strlen(path);
  if (room > cap - 1)
    room = cap - 1;
  if (room < 16)
    room = 16;
  if (len <= room)
    snprintf(buf, cap, "%s", path);
  else
    snprintf(buf, cap, "...%s", path + len - (room - 3));
  return buf;
}

/* "archive \"PATH\": what" into msg, the path shortened so that what fits. */
static void path_msg(char *msg, size_t msglen, const char *path,
                     const char *what) {
  char p[ES_ERRBUF_SIZE];
  size_t used = strlen(what) + sizeof "archive \"\": " - 1;
  short_path(p, sizeof p, path, msglen > used + 1 ? msglen - used - 1 : 0);
  es__set_msg(msg, msglen, "archive \"%s\": %s", p, what);
}

/* The same with a format, for the writer's messages. */
static void wfail(char *msg, size_t msglen, const char *path, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));
static void wfail(char *msg, size_t msglen, const char *path, const char *fmt,
                  ...) {
  char what[ES_ERRBUF_SIZE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  path_msg(msg, msglen, path, what);
}

/* ---- reader ---- */

static int fail(es_archive_t *ar, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(es_archive_t *ar, int rc, const char *fmt, ...) {
  char what[ES_ERRBUF_SIZE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  path_msg(ar->msg, sizeof ar->msg, ar->path, what);
  ar->err = rc;
  return rc;
}

/* Inflate the next bytes of the file into ar->zout (out_len of them).
 * out_len stays 0 only at the end of the file, after a whole gzip member
 * (a file may hold several, as gzip allows). A read error is IO; bytes
 * that are not gzip, a damaged stream or a file that ends inside one are
 * CORRUPT. */
static int inflate_more(es_archive_t *ar) {
  z_stream *z = &ar->zs;
  ar->out_pos = ar->out_len = 0;
  z->next_out = ar->zout;
  z->avail_out = ZBUF;
  while (z->avail_out == ZBUF) {
    if (z->avail_in == 0) {
      ssize_t r;
      do
        r = read(ar->fd, ar->zin, ZBUF);
      while (r < 0 && errno == EINTR);
      if (r < 0)
        return fail(ar, ES_ERR_IO, "could not read: %s", strerror(errno));
      if (r == 0) {
        if (ar->member_done)
          return 0; /* the end, after a whole member */
        return fail(ar, ES_ERR_CORRUPT, "%s",
                    ar->any_member
                        ? "truncated: the file ends inside its gzip stream"
                        : "truncated: the file is empty");
      }
      z->next_in = ar->zin;
      z->avail_in = (uInt)r;
    }
    if (ar->member_done || !ar->any_member) {
      /* a gzip member starts here: the file's first, or one after a
       * whole member (nothing else may follow one) */
      if (z->next_in[0] != 0x1f || (z->avail_in > 1 && z->next_in[1] != 0x8b))
        return fail(ar, ES_ERR_CORRUPT, "%s",
                    ar->any_member
                        ? "data after the end of the gzip stream"
                        : "not an event store archive (not a gzip file)");
      if (ar->member_done && inflateReset(z) != Z_OK)
        return fail(ar, ES_ERR_CORRUPT, "could not restart the gzip stream");
      ar->member_done = 0;
      ar->any_member = 1;
    }
    int zr = inflate(z, Z_NO_FLUSH);
    if (zr == Z_STREAM_END) {
      ar->member_done = 1; /* its CRC and length were checked */
    } else if (zr == Z_MEM_ERROR) {
      return fail(ar, ES_ERR_NOMEM, "out of memory");
    } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
      return fail(ar, ES_ERR_CORRUPT, "damaged gzip stream: %s",
                  z->msg ? z->msg : "inflate failed");
    }
  }
  ar->out_len = ZBUF - z->avail_out;
  return 0;
}

/* Up to n bytes of the uncompressed content into dst; *got 0 only at the
 * end of the file. */
static int take(es_archive_t *ar, void *dst, size_t n, size_t *got) {
  *got = 0;
  if (ar->out_pos == ar->out_len) {
    int rc = inflate_more(ar);
    if (rc)
      return rc;
  }
  size_t k = ar->out_len - ar->out_pos;
  if (k > n)
    k = n;
  if (k)
    memcpy(dst, ar->zout + ar->out_pos, k);
  ar->out_pos += k;
  *got = k;
  return 0;
}

/* Read exactly n bytes (n > 0); counted in the checksum when sum. */
static int get(es_archive_t *ar, void *dst, size_t n, int sum,
               const char *what) {
  char *p = dst;
  while (n > 0) {
    size_t got = 0;
    int rc = take(ar, p, n, &got);
    if (rc)
      return rc;
    if (got == 0)
      return fail(ar, ES_ERR_CORRUPT, "truncated: the file ends inside %s",
                  what);
    if (sum)
      ar->crc = crc32_z(ar->crc, (const Bytef *)p, got);
    p += got;
    n -= got;
  }
  return 0;
}

/* A count or position as the writer prints it: decimal digits only (no
 * sign, blank or other spelling a damaged file could pass for one). */
static int parse_i64(const char *v, int64_t *out) {
  size_t digits = strspn(v, "0123456789");
  if (digits == 0 || v[digits] != '\0')
    return -1;
  char *end = NULL;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || *end != '\0')
    return -1;
  *out = x;
  return 0;
}

/* The keys read from the header and the manifest, one bit each: a key
 * given twice is a damaged file, not a value to pick one of. */
static const char *const KEYS[] = {"era",           "table",  "created-at",
                                   "first-position", "last-position",
                                   "events",         "streams", "checksum"};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

/* One "key: value" line of the header or the manifest. */
static int header_line(es_archive_t *ar, char *line, int manifest) {
  char *colon = strstr(line, ": ");
  if (!colon)
    return fail(ar, ES_ERR_CORRUPT, "%s line \"%.60s\" is not \"key: value\"",
                manifest ? "manifest" : "header", line);
  *colon = '\0';
  const char *k = line, *v = colon + 2;
  es_archive_info_t *in = &ar->info;
  int64_t x = 0;
  int bad = 0;
  for (unsigned i = 0; i < NKEYS; i++) {
    int header_key = i < 5;
    if (strcmp(k, KEYS[i]) || (manifest && header_key) ||
        (!manifest && !header_key))
      continue; /* another key, or one this part does not read */
    if (ar->keys & (1u << i))
      return fail(ar, ES_ERR_CORRUPT, "%s has \"%s\" twice",
                  manifest ? "manifest" : "header", k);
    ar->keys |= 1u << i;
  }
  /* The manifest says how the file ends, nothing about the era: it is not
   * under the checksum, so a header key in it must not change what the
   * header said. */
  if (manifest &&
      (!strcmp(k, "era") || !strcmp(k, "table") || !strcmp(k, "created-at") ||
       !strcmp(k, "first-position") || !strcmp(k, "last-position"))) {
    /* not read here */
  } else if (!strcmp(k, "era"))
    bad = parse_i64(v, &x) || x < 0 || x > INT_MAX || ((in->era = (int)x), 0);
  else if (!strcmp(k, "table"))
    bad =
        snprintf(in->table, sizeof in->table, "%s", v) >= (int)sizeof in->table;
  else if (!strcmp(k, "created-at"))
    bad = snprintf(in->created_at, sizeof in->created_at, "%s", v) >=
          (int)sizeof in->created_at;
  else if (!strcmp(k, "first-position"))
    bad = parse_i64(v, &in->first_position);
  else if (!strcmp(k, "last-position"))
    bad = parse_i64(v, &in->last_position);
  else if (manifest && !strcmp(k, "events"))
    bad = parse_i64(v, &in->events) || in->events < 0;
  else if (manifest && !strcmp(k, "streams"))
    bad = parse_i64(v, &in->streams) || in->streams < 0;
  else if (manifest && !strcmp(k, "checksum")) {
    /* "crc32:" and exactly 8 hex digits */
    unsigned long c = 0;
    if (strncmp(v, "crc32:", 6) || strlen(v) != 14 ||
        strspn(v + 6, "0123456789abcdefABCDEF") != 8)
      bad = 1;
    else
      c = strtoul(v + 6, NULL, 16);
    in->checksum = (uint32_t)c;
    ar->sum_seen = 1;
  }
  /* other keys: added by a later writer of the same format version */
  if (bad)
    return fail(ar, ES_ERR_CORRUPT, "%s has a bad \"%s\": \"%.60s\"",
                manifest ? "manifest" : "header", k, v);
  return 0;
}

/* Split text (NUL-terminated, lines ending in '\n') into header lines. */
static int header_lines(es_archive_t *ar, char *text, int manifest) {
  for (char *line = text; *line;) {
    char *nl = strchr(line, '\n');
    if (!nl)
      return fail(ar, ES_ERR_CORRUPT, "%s does not end with a newline",
                  manifest ? "manifest" : "header");
    *nl = '\0';
    int rc = header_line(ar, line, manifest);
    if (rc)
      return rc;
    line = nl + 1;
  }
  return 0;
}

static int read_header(es_archive_t *ar) {
  char text[HEADER_MAX + 1];
  size_t n = 0;
  /* Byte by byte through the buffered stream, to the empty line. */
  for (;;) {
    if (n == HEADER_MAX)
      return fail(ar, ES_ERR_CORRUPT, "header longer than %d bytes",
                  HEADER_MAX);
    int rc = get(ar, text + n, 1, 0, "the header");
    if (rc)
      return rc;
    n++;
    if (n <= sizeof MAGIC - 1 && text[n - 1] != MAGIC[n - 1])
      return fail(ar, ES_ERR_CORRUPT,
                  "not an event store archive (no \"%s\" line)",
                  MAGIC "<version>");
    if (n >= 2 && text[n - 1] == '\n' && text[n - 2] == '\n')
      break;
  }
  ar->crc = crc32_z(ar->crc, (const Bytef *)text, n);
  if (memchr(text, '\0', n))
    return fail(ar, ES_ERR_CORRUPT, "header holds a NUL byte");
  text[n - 1] = '\0';
  char *nl = strchr(text, '\n');
  *nl = '\0';
  int64_t version = 0;
  if (parse_i64(text + sizeof MAGIC - 1, &version) || version < 1)
    return fail(ar, ES_ERR_CORRUPT, "bad format line \"%.60s\"", text);
  if (version > FORMAT_VERSION)
    return fail(ar, ES_ERR_CORRUPT,
                "format version %" PRId64 ", this library reads %d", version,
                FORMAT_VERSION);
  ar->info.format_version = (int)version;
  ar->info.first_position = ar->info.last_position = -1;
  int rc = header_lines(ar, nl + 1, 0);
  /* era: no default (0 is a real era, the pre-partition table's) */
  if (!rc && (!(ar->keys & 1u) || ar->info.table[0] == '\0' ||
              ar->info.first_position < 0 || ar->info.last_position < 0))
    rc = fail(ar, ES_ERR_CORRUPT,
              "header lacks the era, the table or the range of positions");
  return rc;
}

int es_archive_open(const char *path, es_archive_t **out, char *errbuf,
                    size_t errlen) {
  if (out)
    *out = NULL;
  if (!path || !out) {
    es__set_msg(errbuf, errlen, "archive open: path and out are required");
    return ES_ERR_INVALID;
  }
  es_archive_t *ar = calloc(1, sizeof *ar);
  if (!ar) {
    es__set_msg(errbuf, errlen, "archive open: out of memory");
    return ES_ERR_NOMEM;
  }
  short_path(ar->path, sizeof ar->path, path, sizeof ar->path - 1);
  ar->crc = crc32_z(0, NULL, 0);
  int rc = 0;
  ar->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (ar->fd < 0) {
    rc = fail(ar, ES_ERR_IO, "could not open: %s", strerror(errno));
  } else if (!(ar->zin = malloc(ZBUF)) || !(ar->zout = malloc(ZBUF))) {
    rc = fail(ar, ES_ERR_NOMEM, "out of memory");
  } else if (inflateInit2(&ar->zs, 16 + MAX_WBITS) != Z_OK) { /* gzip */
    rc = fail(ar, ES_ERR_NOMEM, "out of memory");
  } else {
    ar->zinit = 1;
    rc = read_header(ar);
  }
  if (rc) {
    es__set_msg(errbuf, errlen, "%s", ar->msg);
    es_archive_close(ar);
    return rc;
  }
  *out = ar;
  return 0;
}

/* The manifest: the last record, then the end of the stream. */
static int read_manifest(es_archive_t *ar) {
  unsigned char lenb[4];
  int rc = get(ar, lenb, 4, 0, "the manifest");
  if (rc)
    return rc;
  uint32_t len = (uint32_t)es__get_be32((const char *)lenb);
  if (len > HEADER_MAX)
    return fail(ar, ES_ERR_CORRUPT, "manifest of %" PRIu32 " bytes", len);
  char text[HEADER_MAX + 1];
  if (len && (rc = get(ar, text, len, 0, "the manifest")))
    return rc;
  text[len] = '\0';
  /* a NUL would end the text early and hide the lines after it */
  if (memchr(text, '\0', len))
    return fail(ar, ES_ERR_CORRUPT, "manifest holds a NUL byte");
  uLong crc = ar->crc;
  ar->info.events = ar->info.streams = -1;
  if ((rc = header_lines(ar, text, 1)))
    return rc;
  if (ar->info.events < 0 || ar->info.streams < 0 || !ar->sum_seen)
    return fail(ar, ES_ERR_CORRUPT,
                "manifest lacks the events, streams or checksum line");
  if ((uint32_t)crc != ar->info.checksum)
    return fail(ar, ES_ERR_CORRUPT,
                "checksum mismatch: the manifest says crc32:%08" PRIx32
                ", the content is crc32:%08" PRIx32 " (the file was changed"
                " or damaged)",
                ar->info.checksum, (uint32_t)crc);
  if (ar->info.events != ar->seen)
    return fail(ar, ES_ERR_CORRUPT,
                "the manifest counts %" PRId64
                " events, the file holds %" PRId64,
                ar->info.events, ar->seen);
  if (ar->info.streams != (int64_t)ar->n_sids)
    return fail(ar, ES_ERR_CORRUPT,
                "the manifest counts %" PRId64
                " streams, the file holds %zu",
                ar->info.streams, ar->n_sids);
  /* nothing follows: the end of the file, after a whole gzip stream */
  char extra;
  size_t got = 0;
  if ((rc = take(ar, &extra, 1, &got)))
    return rc;
  if (got)
    return fail(ar, ES_ERR_CORRUPT, "data after the manifest");
  ar->done = 1;
  ar->info.complete = 1;
  return 0;
}

/* Append len bytes and a NUL to the arena; *off gets where (or SIZE_MAX
 * for NULL). */
static int stash(es_archive_t *ar, const char *p, uint32_t len, size_t *off) {
  if (len == NULL_LEN) {
    *off = SIZE_MAX;
    return 0;
  }
  *off = ar->arena.len;
  if (es__buf_put(&ar->arena, p, len) || es__buf_put(&ar->arena, "", 1))
    return fail(ar, ES_ERR_NOMEM, "out of memory");
  return 0;
}

/* The two hashes of a stream id. */
static struct sid sid_of(const char *p, size_t n) {
  uint64_t a = UINT64_C(0xcbf29ce484222325), b = UINT64_C(0x9e3779b97f4a7c15);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    a = (a ^ c) * UINT64_C(0x100000001b3); /* FNV-1a */
    b = (b ^ c) * UINT64_C(0xff51afd7ed558ccd);
    b ^= b >> 29;
  }
  b ^= (uint64_t)n;
  struct sid s = {a, b};
  if (s.a == 0 && s.b == 0)
    s.b = 1;
  return s;
}

/* Note the stream of an event, for the manifest's count of streams. */
static int count_stream(es_archive_t *ar, const char *p, size_t n) {
  if (2 * (ar->n_sids + 1) > ar->cap_sids) { /* grow: at most half full */
    size_t cap = ar->cap_sids ? 2 * ar->cap_sids : 256;
    struct sid *t = calloc(cap, sizeof *t);
    if (!t)
      return fail(ar, ES_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ar->cap_sids; i++) {
      struct sid s = ar->sids[i];
      if (s.a == 0 && s.b == 0)
        continue;
      size_t j = (size_t)(s.a & (cap - 1));
      while (t[j].a || t[j].b)
        j = (j + 1) & (cap - 1);
      t[j] = s;
    }
    free(ar->sids);
    ar->sids = t;
    ar->cap_sids = cap;
  }
  struct sid s = sid_of(p, n);
  size_t j = (size_t)(s.a & (ar->cap_sids - 1));
  for (; ar->sids[j].a || ar->sids[j].b; j = (j + 1) & (ar->cap_sids - 1))
    if (ar->sids[j].a == s.a && ar->sids[j].b == s.b)
      return 0;
  ar->sids[j] = s;
  ar->n_sids++;
  return 0;
}

/* Parse the event record in ar->body; keep it when it is of stream (NULL:
 * any). */
static int take_event(es_archive_t *ar, const char *stream) {
  const char *b = ar->body.p;
  size_t len = ar->body.len, at = FIXED_LEN;
  if (len < FIXED_LEN)
    return fail(ar, ES_ERR_CORRUPT, "event record %" PRId64 " too short",
                ar->seen + 1);
  es_recorded_t e = {0};
  e.global_position = es__get_be64(b);
  e.at.pos = e.global_position;
  e.at.tx = (uint64_t)es__get_be64(b + 8);
  e.version = es__get_be64(b + 16);
  e.recorded_at_us = es__get_be64(b + 24);
  memcpy(e.id, b + 32, 16);
  const char *f[NFIELDS];
  uint32_t flen[NFIELDS];
  for (int i = 0; i < NFIELDS; i++) {
    if (len - at < 4)
      return fail(ar, ES_ERR_CORRUPT, "event record %" PRId64 " cut short",
                  ar->seen + 1);
    flen[i] = (uint32_t)es__get_be32(b + at);
    at += 4;
    f[i] = b + at;
    if (flen[i] != NULL_LEN) {
      if (len - at < flen[i])
        return fail(ar, ES_ERR_CORRUPT, "event record %" PRId64 " cut short",
                    ar->seen + 1);
      at += flen[i];
    }
  }
  if (at != len || flen[0] == NULL_LEN || flen[1] == NULL_LEN)
    return fail(ar, ES_ERR_CORRUPT, "event record %" PRId64 " is malformed",
                ar->seen + 1);
  if (e.global_position < ar->info.first_position ||
      e.global_position > ar->info.last_position ||
      (ar->seen && (e.at.tx < ar->last.tx ||
                    (e.at.tx == ar->last.tx && e.at.pos <= ar->last.pos))))
    return fail(ar, ES_ERR_CORRUPT,
                "event at position %" PRId64 " out of order or outside the"
                " era's range",
                e.global_position);
  int rc = count_stream(ar, f[0], flen[0]);
  if (rc)
    return rc;
  ar->seen++;
  ar->last = e.at;
  if (stream && (strlen(stream) != flen[0] || memcmp(stream, f[0], flen[0])))
    return 0;
  if (ar->n_evs == ar->cap_evs) {
    size_t cap = ar->cap_evs ? 2 * ar->cap_evs : 64;
    es_recorded_t *n = realloc(ar->evs, cap * sizeof *n);
    if (!n)
      return fail(ar, ES_ERR_NOMEM, "out of memory");
    ar->evs = n;
    ar->cap_evs = cap;
  }
  size_t off[NFIELDS];
  for (int i = 0; i < NFIELDS; i++) {
    rc = stash(ar, f[i], flen[i], &off[i]);
    if (rc)
      return rc;
  }
  /* Offsets for now; pointers once the page's block is allocated. */
  e.stream_id = (const char *)(uintptr_t)off[0];
  e.type = (const char *)(uintptr_t)off[1];
  e.data = (const void *)(uintptr_t)off[2];
  e.data_len = flen[2] == NULL_LEN ? 0 : flen[2];
  e.correlation_id = (const char *)(uintptr_t)off[3];
  e.causation_id = (const char *)(uintptr_t)off[4];
  e.traceparent = (const char *)(uintptr_t)off[5];
  e.meta_json = (const char *)(uintptr_t)off[6];
  ar->evs[ar->n_evs++] = e;
  return 0;
}

static const char *at_off(char *base, const void *off) {
  uintptr_t o = (uintptr_t)off;
  return o == (uintptr_t)SIZE_MAX ? NULL : base + o;
}

/* The kept events as one page: the events and their strings in a single
 * block, so es_page_free (which frees events and the page) frees all. */
static int make_page(es_archive_t *ar, es_page_t **out) {
  size_t n = ar->n_evs, head = n * sizeof(es_recorded_t);
  es_page_t *pg = calloc(1, sizeof *pg);
  char *block = malloc(head + ar->arena.len + 1);
  if (!pg || !block) {
    free(pg);
    free(block);
    return fail(ar, ES_ERR_NOMEM, "out of memory");
  }
  es_recorded_t *evs = (es_recorded_t *)(void *)block;
  char *strs = block + head;
  if (ar->arena.len)
    memcpy(strs, ar->arena.p, ar->arena.len);
  for (size_t i = 0; i < n; i++) {
    es_recorded_t e = ar->evs[i];
    e.stream_id = at_off(strs, e.stream_id);
    e.type = at_off(strs, e.type);
    e.data = at_off(strs, e.data);
    e.correlation_id = at_off(strs, e.correlation_id);
    e.causation_id = at_off(strs, e.causation_id);
    e.traceparent = at_off(strs, e.traceparent);
    e.meta_json = at_off(strs, e.meta_json);
    evs[i] = e;
  }
  pg->n = n;
  pg->events = evs;
  pg->next = n ? evs[n - 1].at : ar->last;
  *out = pg;
  return 0;
}

int es_archive_read(es_archive_t *ar, const char *stream_id, size_t max,
                    es_page_t **out) {
  if (out)
    *out = NULL;
  if (!ar)
    return ES_ERR_INVALID;
  if (ar->err)
    return ar->err;
  if (!out) {
    es__set_msg(ar->msg, sizeof ar->msg, "archive read: out is required");
    return ES_ERR_INVALID;
  }
  if (max == 0 || max > 10000) {
    es__set_msg(ar->msg, sizeof ar->msg,
                "archive read: max must be 1 to 10000, got %zu", max);
    return ES_ERR_INVALID;
  }
  ar->n_evs = 0;
  ar->arena.len = 0;
  int rc = 0;
  while (!rc && !ar->done && ar->n_evs < max) {
    unsigned char tag;
    if ((rc = get(ar, &tag, 1, 0, "a record tag")))
      break;
    if (tag == 'M') { /* the checksum covers what comes before its tag */
      rc = read_manifest(ar);
      break;
    }
    ar->crc = crc32_z(ar->crc, &tag, 1);
    if (tag != 'E') {
      rc = fail(ar, ES_ERR_CORRUPT,
                "unknown record tag 0x%02x after %" PRId64 " events", tag,
                ar->seen);
      break;
    }
    unsigned char lenb[4];
    if ((rc = get(ar, lenb, 4, 1, "a record length")))
      break;
    uint32_t len = (uint32_t)es__get_be32((const char *)lenb);
    if (len > BODY_MAX) {
      rc = fail(ar, ES_ERR_CORRUPT, "record of %" PRIu32 " bytes", len);
      break;
    }
    /* In steps, growing the buffer as the bytes arrive: a length damaged
     * into a large one fails at the end of the file, not at a malloc of
     * up to BODY_MAX. */
    ar->body.len = 0;
    while (!rc && ar->body.len < len) {
      size_t step = len - ar->body.len;
      if (step > BODY_STEP)
        step = BODY_STEP;
      if (ar->body.cap < ar->body.len + step) {
        size_t cap = ar->body.cap ? 2 * ar->body.cap : 4096;
        if (cap < ar->body.len + step)
          cap = ar->body.len + step;
        if (cap > len)
          cap = len;
        char *p = realloc(ar->body.p, cap);
        if (!p) {
          rc = fail(ar, ES_ERR_NOMEM, "out of memory");
          break;
        }
        ar->body.p = p;
        ar->body.cap = cap;
      }
      rc = get(ar, ar->body.p + ar->body.len, step, 1, "an event record");
      if (!rc)
        ar->body.len += step;
    }
    if (!rc)
      rc = take_event(ar, stream_id);
  }
  if (rc)
    return rc;
  return make_page(ar, out);
}

const es_archive_info_t *es_archive_info(const es_archive_t *ar) {
  return ar ? &ar->info : NULL;
}

const char *es_archive_last_error(const es_archive_t *ar) {
  return ar ? ar->msg : "";
}

void es_archive_close(es_archive_t *ar) {
  if (!ar)
    return;
  if (ar->zinit)
    inflateEnd(&ar->zs);
  if (ar->fd >= 0)
    close(ar->fd);
  free(ar->zin);
  free(ar->zout);
  es__buf_free(&ar->body);
  es__buf_free(&ar->arena);
  free(ar->evs);
  free(ar->sids);
  free(ar);
}

int es_archive_verify(const char *path, es_archive_info_t *info, char *errbuf,
                      size_t errlen) {
  es_archive_t *ar = NULL;
  if (info)
    memset(info, 0, sizeof *info);
  int rc = es_archive_open(path, &ar, errbuf, errlen);
  while (!rc) {
    es_page_t *pg = NULL;
    /* a stream id no event has: nothing is kept, everything is read */
    rc = es_archive_read(ar, "", 10000, &pg);
    es_page_free(pg);
    if (!rc && ar->done)
      break;
  }
  if (ar && rc)
    es__set_msg(errbuf, errlen, "%s", ar->msg);
  if (info && ar)
    *info = ar->info;
  es_archive_close(ar);
  return rc;
}

/* ---- writer (saga-es-archive) ---- */

static int wput(es__arw_t *w, const void *p, size_t n, int sum, char *msg,
                size_t msglen) {
  if (sum)
    w->crc = crc32_z(w->crc, p, n);
  if (n && gzwrite(w->gz, p, (unsigned)n) != (int)n) {
    wfail(msg, msglen, w->path, "could not write: %s", gz_reason(w->gz));
    return ES_ERR_IO;
  }
  return 0;
}

int es__archive_create(const char *path, const es_archive_info_t *hdr,
                       es__arw_t **out, char *msg, size_t msglen) {
  *out = NULL;
  es__arw_t *w = calloc(1, sizeof *w);
  if (!w) {
    wfail(msg, msglen, path, "out of memory");
    return ES_ERR_NOMEM;
  }
  short_path(w->path, sizeof w->path, path, sizeof w->path - 1);
  w->info = *hdr;
  w->info.format_version = FORMAT_VERSION;
  w->crc = crc32_z(0, NULL, 0);
  w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int dupfd = w->fd < 0 ? -1 : dup(w->fd);
  if (dupfd < 0 || !(w->gz = gzdopen(dupfd, "wb6"))) {
    wfail(msg, msglen, path, "could not create: %s", strerror(errno));
    if (dupfd >= 0)
      close(dupfd);
    if (w->fd >= 0)
      close(w->fd);
    free(w);
    return ES_ERR_IO;
  }
  gzbuffer(w->gz, 1 << 17);
  char text[1024];
  int n =
      snprintf(text, sizeof text,
               MAGIC "%d\n"
                     "era: %d\n"
                     "table: %s\n"
                     "created-at: %s\n"
                     "first-position: %" PRId64 "\n"
                     "last-position: %" PRId64 "\n"
                     "order: tx_id, global_position\n"
                     "record: 'E', u32 length, i64 global_position, u64 tx_id,"
                     " i64 stream_version, i64 recorded_at_us, 16 bytes"
                     " event_id, then stream_id, event_type, data,"
                     " correlation_id, causation_id, traceparent, metadata"
                     " each as u32 length (0xffffffff: null) and bytes;"
                     " big-endian\n"
                     "manifest: 'M', u32 length, events, streams, checksum"
                     " (crc32 of every byte before the 'M')\n"
                     "\n",
               FORMAT_VERSION, hdr->era, hdr->table, hdr->created_at,
               hdr->first_position, hdr->last_position);
  int rc = wput(w, text, (size_t)n, 1, msg, msglen);
  if (rc) {
    es__archive_abort(w);
    return rc;
  }
  *out = w;
  return 0;
}

static int put_field(es__buf_t *b, const void *p, size_t n) {
  if (es__buf_be32(b, (int32_t)(p ? (uint32_t)n : NULL_LEN)))
    return ES_ERR_NOMEM;
  return p && n ? es__buf_put(b, p, n) : 0;
}

int es__archive_put(es__arw_t *w, const es_recorded_t *e, char *msg,
                    size_t msglen) {
  es__buf_t *b = &w->rec;
  b->len = 0;
  int rc = es__buf_put(b, "E\0\0\0\0", 5) ||
           es__buf_be64(b, e->global_position) ||
           es__buf_be64(b, (int64_t)e->at.tx) || es__buf_be64(b, e->version) ||
           es__buf_be64(b, e->recorded_at_us) || es__buf_put(b, e->id, 16);
  const char *txt[] = {e->stream_id, e->type};
  for (int i = 0; !rc && i < 2; i++)
    rc = put_field(b, txt[i], strlen(txt[i]));
  rc = rc || put_field(b, e->data ? e->data : "", e->data_len);
  const char *opt[] = {e->correlation_id, e->causation_id, e->traceparent,
                       e->meta_json};
  for (int i = 0; !rc && i < 4; i++)
    rc = put_field(b, opt[i], opt[i] ? strlen(opt[i]) : 0);
  if (rc || b->len - 5 > BODY_MAX) {
    wfail(msg, msglen, w->path, "%s",
          rc ? "out of memory" : "event record too large");
    return rc ? ES_ERR_NOMEM : ES_ERR_TOO_LARGE;
  }
  be32((unsigned char *)b->p + 1, (uint32_t)(b->len - 5));
  w->events++;
  return wput(w, b->p, b->len, 1, msg, msglen);
}

int es__archive_finish(es__arw_t *w, int64_t streams, es_archive_info_t *info,
                       char *msg, size_t msglen) {
  char text[256];
  int n = snprintf(text + 5, sizeof text - 5,
                   "events: %" PRId64 "\nstreams: %" PRId64
                   "\nchecksum: crc32:%08" PRIx32 "\n",
                   w->events, streams, (uint32_t)w->crc);
  text[0] = 'M';
  be32((unsigned char *)text + 1, (uint32_t)n);
  w->info.events = w->events;
  w->info.streams = streams;
  w->info.checksum = (uint32_t)w->crc;
  w->info.complete = 1;
  int rc = wput(w, text, (size_t)n + 5, 0, msg, msglen);
  int zrc = gzclose(w->gz);
  w->gz = NULL;
  if (!rc && zrc != Z_OK) {
    wfail(msg, msglen, w->path, "could not finish: %s",
          zrc == Z_ERRNO ? strerror(errno) : "zlib error");
    rc = ES_ERR_IO;
  }
  if (!rc && fsync(w->fd)) {
    wfail(msg, msglen, w->path, "could not sync: %s", strerror(errno));
    rc = ES_ERR_IO;
  }
  if (info)
    *info = w->info;
  es__archive_abort(w);
  return rc;
}

void es__archive_abort(es__arw_t *w) {
  if (!w)
    return;
  if (w->gz)
    gzclose(w->gz);
  if (w->fd >= 0)
    close(w->fd);
  es__buf_free(&w->rec);
  free(w);
}
