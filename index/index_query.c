/* saga_index queries: SQL text and parameters (index_query.h). */
#include "index_query.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "timetext.h"

static const char *const STATUSES[] = {"running", "compensating",
                                       "completed", "compensated",
                                       "compensation_failed"};

bool iq_status_known(const char *name) {
  for (size_t i = 0; name && i < sizeof STATUSES / sizeof *STATUSES; i++)
    if (!strcmp(name, STATUSES[i]))
      return true;
  return false;
}

const char *iq_status_name(size_t i) {
  return i < sizeof STATUSES / sizeof *STATUSES ? STATUSES[i] : NULL;
}

int iq_time_parse(const char *text, iq_time_t *out, char *why,
                  size_t whylen) {
  int64_t ms = 0;
  if (text && saga__rfc3339_parse(text, &ms) == 0) {
    *out = (iq_time_t){.set = true, .relative = false, .ms = ms};
    return 0;
  }
  if (text && saga__duration_parse(text, &ms) == SAGA_DURATION_OK) {
    /* Further back than IQ_BACK_MAX_MS selects what it would: every saga
     * (or none, as an upper bound), and the database's time arithmetic
     * would overflow on it ("timestamp out of range"). */
    *out = (iq_time_t){.set = true,
                       .relative = true,
                       .ms = ms > IQ_BACK_MAX_MS ? IQ_BACK_MAX_MS : ms};
    return 0;
  }
  snprintf(why, whylen,
           "\"%s\" is neither an RFC 3339 time with its zone "
           "(2025-01-31T12:00:00Z) nor a duration before now in "
           SAGA_DURATION_UNITS " (90s, 1h, 2d)",
           text ? text : "");
  return -1;
}

/* ---- the cursor: base64url of "1:<started_us>:<saga_id>" ---------------- */

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(char c) {
  const char *p = c ? strchr(B64, c) : NULL;
  return p ? (int)(p - B64) : -1;
}

int iq_cursor_encode(const char *started_us, const char *saga_id, char *buf,
                     size_t len) {
  char *end = NULL;
  if (!started_us || !saga_id || !*saga_id ||
      strlen(saga_id) > IQ_ID_MAX)
    return -1;
  long long us = strtoll(started_us, &end, 10);
  if (end == started_us || *end)
    return -1;
  char raw[IQ_ID_MAX + 32];
  int n = snprintf(raw, sizeof raw, "1:%lld:%s", us, saga_id);
  if (n < 0 || (size_t)n >= sizeof raw || len < ((size_t)n * 4 + 2) / 3 + 1)
    return -1;
  size_t o = 0;
  for (int i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)(unsigned char)raw[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)(unsigned char)raw[i + 1] << 8;
    if (i + 2 < n)
      v |= (unsigned char)raw[i + 2];
    buf[o++] = B64[(v >> 18) & 63];
    buf[o++] = B64[(v >> 12) & 63];
    if (i + 1 < n)
      buf[o++] = B64[(v >> 6) & 63];
    if (i + 2 < n)
      buf[o++] = B64[v & 63];
  }
  buf[o] = '\0';
  return 0;
}

int iq_cursor_decode(const char *token, iq_cursor_t *out) {
  if (!token)
    return -1;
  size_t len = strlen(token);
  char raw[IQ_CURSOR_SIZE];
  if (len == 0 || len >= IQ_CURSOR_SIZE || len % 4 == 1)
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 4) {
    uint32_t v = 0;
    size_t k = 0;
    for (; k < 4 && i + k < len; k++) {
      int d = b64_value(token[i + k]);
      if (d < 0)
        return -1;
      v |= (uint32_t)d << (18 - 6 * k);
    }
    raw[o++] = (char)(v >> 16);
    if (k > 2)
      raw[o++] = (char)(v >> 8);
    if (k > 3)
      raw[o++] = (char)v;
  }
  raw[o] = '\0';
  if (strlen(raw) != o || strncmp(raw, "1:", 2) != 0)
    return -1;
  char *end = NULL;
  const char *num = raw + 2;
  if (*num != '-' && (*num < '0' || *num > '9'))
    return -1;
  errno = 0;
  long long us = strtoll(num, &end, 10);
  if (errno || end == num || *end != ':' || !end[1] ||
      strlen(end + 1) > IQ_ID_MAX || us < IQ_CURSOR_US_MIN ||
      us >= IQ_CURSOR_US_END)
    return -1; /* no started_at PostgreSQL holds made it */
  /* nor a saga id: one that is not UTF-8 would fail the query in
   * PostgreSQL rather than be refused as no token */
  const char *id = end + 1;
  size_t idlen = strlen(id);
  if (saga__utf8_bad_at(id, idlen) != idlen)
    return -1;
  for (size_t i = 0; i < idlen; i++)
    if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
      return -1;
  out->started_us = us;
  snprintf(out->saga_id, sizeof out->saga_id, "%s", end + 1);
  return 0;
}

/* ---- SQL ------------------------------------------------------------------ */

/* The stuck flag ($1 thresholds, $2 default ms): see iq_stuck_t. sagad
 * writes stuck_at with every transition (sm_stuck_at: the thresholds of
 * the steps waited on, in the saga's own definition version); the
 * thresholds judge only rows written before that column (NULL). */
#define STUCK                                                                \
  "(i.status = 'compensation_failed' OR (i.status IN ('running', "           \
  "'compensating') AND COALESCE(i.stuck_at, i.updated_at + COALESCE(("       \
  "SELECT th.ms FROM "                                                       \
  "jsonb_to_recordset($1::jsonb) AS th(t text, s text, ms bigint) "          \
  "WHERE th.t = i.saga_type AND th.s IN (i.current_step, '') "               \
  "ORDER BY th.s = '' LIMIT 1), $2::bigint) * interval '1 millisecond') "    \
  "< now()))"

/* started_at in microseconds, exact whatever extract's type. */
#define STARTED_US                                                           \
  "(extract(epoch FROM date_trunc('second', i.started_at))::bigint * "       \
  "1000000 + extract(microseconds FROM i.started_at)::bigint % 1000000)"

#define COLUMNS                                                              \
  "SELECT i.saga_id, i.saga_type, i.definition_version, i.status, "          \
  "i.partition, i.version, "                                                 \
  "(extract(epoch FROM i.started_at) * 1000)::bigint, "                      \
  "(extract(epoch FROM i.updated_at) * 1000)::bigint, "                      \
  "(extract(epoch FROM i.next_deadline_at) * 1000)::bigint, "                \
  "i.current_step, " STUCK ", " STARTED_US " FROM saga_index i "

#define AT(p) "'epoch'::timestamptz + " p "::bigint * interval '1 millisecond'"
#define AGO(p) "now() - " p "::bigint * interval '1 millisecond'"

/* $3 state, $4 type, $5/$6 since (absolute/relative), $7/$8 until, $9
 * stuck only. */
#define WHERE                                                                \
  "WHERE ($3::text IS NULL OR i.status = $3) "                               \
  "AND ($4::text IS NULL OR i.saga_type = $4) "                              \
  "AND ($5::bigint IS NULL OR i.started_at >= " AT("$5") ") "                \
  "AND ($6::bigint IS NULL OR i.started_at >= " AGO("$6") ") "               \
  "AND ($7::bigint IS NULL OR i.started_at < " AT("$7") ") "                 \
  "AND ($8::bigint IS NULL OR i.started_at < " AGO("$8") ") "                \
  "AND (NOT $9::bool OR " STUCK ") "

/* $10/$11 the cursor's position, $12 the rows. */
#define PAST(op)                                                             \
  "AND ($10::bigint IS NULL OR (i.started_at, i.saga_id) " op                \
  " ('epoch'::timestamptz + $10::bigint * interval '1 microsecond', "        \
  "$11::text)) "

static const char SQL_NEWEST[] =
    COLUMNS WHERE PAST("<")
    "ORDER BY i.started_at DESC, i.saga_id DESC LIMIT $12::bigint";
static const char SQL_OLDEST[] =
    COLUMNS WHERE PAST(">")
    "ORDER BY i.started_at, i.saga_id LIMIT $12::bigint";
static const char SQL_COUNT[] = "SELECT count(*) FROM saga_index i " WHERE;
static const char SQL_COUNTS[] =
    "SELECT i.status, count(*) FROM saga_index i " WHERE
    "GROUP BY i.status";
static const char SQL_GET[] = COLUMNS "WHERE i.saga_id = $3";

/* ---- parameters ----------------------------------------------------------- */

static const char *num(iq_stmt_t *s, size_t slot, int64_t v) {
  snprintf(s->num[slot], sizeof s->num[slot], "%" PRId64, v);
  return s->num[slot];
}

static int stuck_params(const iq_stuck_t *st, iq_stmt_t *s) {
  if (!st || st->default_ms < 1)
    return -1;
  s->params[0] = st->thresholds_json ? st->thresholds_json : "[]";
  s->params[1] = num(s, 0, st->default_ms);
  return 0;
}

/* The bound t as ($abs, $ago) into params[i], params[i + 1]. */
static void time_params(iq_stmt_t *s, int i, size_t slot, iq_time_t t) {
  s->params[i] = t.set && !t.relative ? num(s, slot, t.ms) : NULL;
  s->params[i + 1] = t.set && t.relative ? num(s, slot, t.ms) : NULL;
}

static int filter_params(const iq_filter_t *f, const iq_stuck_t *st,
                         iq_stmt_t *s) {
  memset(s, 0, sizeof *s);
  if (!f || (f->state && !iq_status_known(f->state)) ||
      stuck_params(st, s) != 0)
    return -1;
  s->params[2] = f->state;
  s->params[3] = f->type;
  time_params(s, 4, 1, f->since);
  time_params(s, 6, 2, f->until);
  s->params[8] = f->stuck ? "true" : "false";
  return 0;
}

int iq_list(const iq_filter_t *f, const iq_stuck_t *stuck, iq_stmt_t *out) {
  if (filter_params(f, stuck, out) != 0 || f->limit < 1 ||
      f->limit > IQ_LIMIT_MAX)
    return -1;
  out->sql = f->oldest_first ? SQL_OLDEST : SQL_NEWEST;
  out->nparams = 12;
  if (f->after) {
    out->params[9] = num(out, 3, f->after->started_us);
    snprintf(out->id, sizeof out->id, "%s", f->after->saga_id);
    out->params[10] = out->id;
  }
  out->params[11] = num(out, 4, (int64_t)f->limit + 1);
  return 0;
}

int iq_count(const iq_filter_t *f, const iq_stuck_t *stuck, iq_stmt_t *out) {
  if (filter_params(f, stuck, out) != 0)
    return -1;
  out->sql = SQL_COUNT;
  out->nparams = 9;
  return 0;
}

int iq_counts(const iq_filter_t *f, const iq_stuck_t *stuck,
              iq_stmt_t *out) {
  if (filter_params(f, stuck, out) != 0)
    return -1;
  out->params[2] = NULL; /* every state */
  out->sql = SQL_COUNTS;
  out->nparams = 9;
  return 0;
}

int iq_get(const char *saga_id, const iq_stuck_t *stuck, iq_stmt_t *out) {
  memset(out, 0, sizeof *out);
  if (!saga_id || strlen(saga_id) > IQ_ID_MAX || stuck_params(stuck, out))
    return -1;
  snprintf(out->id, sizeof out->id, "%s", saga_id);
  out->sql = SQL_GET;
  out->nparams = 3;
  out->params[2] = out->id;
  return 0;
}

int iq_definition(const char *name, uint32_t version, iq_stmt_t *out) {
  memset(out, 0, sizeof *out);
  if (name != NULL && strlen(name) > IQ_ID_MAX)
    return -1;
  if (name == NULL) {
    out->sql = "SELECT name, version, body, sha256, source FROM "
               "saga_definitions ORDER BY name, version";
    return 0;
  }
  snprintf(out->id, sizeof out->id, "%s", name);
  snprintf(out->num[0], sizeof out->num[0], "%" PRIu32, version);
  out->sql = "SELECT name, version, body, sha256, source FROM "
             "saga_definitions WHERE name = $1 AND version = $2::int";
  out->nparams = 2;
  out->params[0] = out->id;
  out->params[1] = out->num[0];
  return 0;
}
