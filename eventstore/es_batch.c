/* Batches: validated, copied and binary-encoded at add time, so executing
 * a batch only sends bytes. One stream's append is one prepared statement
 * (es_pipeline.c) taking nine parameters: stream id, expected version and
 * seven arrays (ids, types, data, correlation, causation, traceparent,
 * metadata). A batch of several streams is sent as one statement per round
 * (es__batch_plan): its arrays are the streams' arrays concatenated, so
 * executing still copies bytes and encodes nothing per event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "es_internal.h"

#define OID_UUID 2950
#define OID_TEXT 25
#define OID_BYTEA 17
#define OID_JSONB 3802
#define OID_INT8 20
#define OID_BOOL 16

es_batch_t *es_batch_new(const es_store_opts_t *opts) {
  es_batch_t *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  es_store_opts_t d;
  es_store_opts_init(&d);
  b->max_payload = opts ? opts->max_payload : d.max_payload;
  return b;
}

static void free_stmt(es__stmt_t *s) {
  for (int i = 0; i < s->nparams; i++)
    free(s->params[i]);
  free(s->params);
  free(s->sql);
}

void es_batch_reset(es_batch_t *b) {
  if (!b)
    return;
  for (size_t i = 0; i < b->n_stmts; i++)
    free_stmt(&b->stmts[i]);
  b->n_streams = 0;
  b->n_stmts = 0;
  b->ids.len = 0;
  b->msg[0] = '\0';
}

void es_batch_free(es_batch_t *b) {
  if (!b)
    return;
  es_batch_reset(b);
  for (size_t i = 0; i < b->cap_streams; i++)
    es__buf_free(&b->streams[i].params);
  free(b->streams);
  free(b->results);
  free(b->stmts);
  es__buf_free(&b->ids);
  es__buf_free(&b->multi);
  free(b->order);
  free(b);
}

size_t es_batch_size(const es_batch_t *b) { return b ? b->n_streams : 0; }

const char *es_batch_last_error(const es_batch_t *b) {
  return b ? b->msg : "no batch";
}

const es_append_result_t *es_batch_result(const es_batch_t *b, size_t i) {
  return (b && i < b->n_streams) ? &b->results[i] : NULL;
}

const uint8_t *es_batch_event_id(const es_batch_t *b, size_t i, size_t j) {
  if (!b || i >= b->n_streams || j >= b->streams[i].n_events)
    return NULL;
  return (const uint8_t *)b->ids.p + b->streams[i].ids_off + j * 16;
}

/* Array header for a one-dimensional array of n elements. */
static int array_head(es__buf_t *p, int32_t oid, size_t n, int hasnull) {
  int rc;
  if ((rc = es__buf_be32(p, 1)) || (rc = es__buf_be32(p, hasnull)) ||
      (rc = es__buf_be32(p, oid)) || (rc = es__buf_be32(p, (int32_t)n)) ||
      (rc = es__buf_be32(p, 1)))
    return rc;
  return 0;
}

static int array_elem(es__buf_t *p, const void *v, size_t len) {
  if (!v)
    return es__buf_be32(p, -1);
  int rc = es__buf_be32(p, (int32_t)len);
  return rc ? rc : es__buf_put(p, v, len);
}

/* Offset of the text field at byte offset off of each event (an optional
 * const char *). */
static int text_array(es__buf_t *p, const es_event_t *ev, size_t n,
                      size_t off) {
  int hasnull = 0, rc;
  for (size_t i = 0; i < n; i++) {
    const char *s;
    memcpy(&s, (const char *)&ev[i] + off, sizeof s);
    if (!s)
      hasnull = 1;
  }
  if ((rc = array_head(p, OID_TEXT, n, hasnull)))
    return rc;
  for (size_t i = 0; i < n; i++) {
    const char *s;
    memcpy(&s, (const char *)&ev[i] + off, sizeof s);
    if ((rc = array_elem(p, s, s ? strlen(s) : 0)))
      return rc;
  }
  return 0;
}

static int json_string(es__buf_t *j, const char *s) {
  static const char hex[] = "0123456789abcdef";
  int rc = es__buf_put(j, "\"", 1);
  for (; !rc && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      rc = es__buf_put(j, e, 2);
    } else if (c < 0x20) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      rc = es__buf_put(j, e, 6);
    } else {
      rc = es__buf_put(j, s, 1);
    }
  }
  return rc ? rc : es__buf_put(j, "\"", 1);
}

/* An event's metadata as a jsonb value in binary format, appended to j. */
static int meta_json(es__buf_t *j, const es_event_t *ev) {
  int rc = es__buf_put(j, "\1{", 2); /* jsonb binary format version 1 */
  for (size_t k = 0; k < ev->n_meta && !rc; k++) {
    if (k)
      rc = es__buf_put(j, ",", 1);
    if (!rc)
      rc = json_string(j, ev->meta[k].key);
    if (!rc)
      rc = es__buf_put(j, ":", 1);
    if (!rc)
      rc = json_string(j, ev->meta[k].value);
  }
  return rc ? rc : es__buf_put(j, "}", 1);
}

static int meta_array(es__buf_t *p, const es_event_t *ev, size_t n) {
  int hasnull = 0, rc;
  for (size_t i = 0; i < n; i++)
    if (!ev[i].n_meta)
      hasnull = 1;
  if ((rc = array_head(p, OID_JSONB, n, hasnull)))
    return rc;
  es__buf_t j = {0};
  for (size_t i = 0; i < n && !rc; i++) {
    if (!ev[i].n_meta) {
      rc = array_elem(p, NULL, 0);
      continue;
    }
    j.len = 0;
    rc = meta_json(&j, &ev[i]);
    if (!rc)
      rc = array_elem(p, j.p, j.len);
  }
  es__buf_free(&j);
  return rc;
}

static int grow_streams(es_batch_t *b) {
  if (b->n_streams < b->cap_streams)
    return 0;
  size_t cap = b->cap_streams ? b->cap_streams * 2 : 16;
  es__stream_t *s = realloc(b->streams, cap * sizeof *s);
  if (!s)
    return ES_ERR_NOMEM;
  b->streams = s;
  memset(s + b->cap_streams, 0, (cap - b->cap_streams) * sizeof *s);
  es_append_result_t *r = realloc(b->results, cap * sizeof *r);
  if (!r)
    return ES_ERR_NOMEM;
  b->results = r;
  b->cap_streams = cap;
  return 0;
}

/* Checks shared by both encodings: the stream id, the events, the
 * expected version; room for one more stream; ids for events without (the
 * new slot's fresh_ids says whether every id was drawn here). */
static int add_check(es_batch_t *b, const char *stream_id, int64_t expected,
                     es_event_t *events, size_t n) {
  int rc = es__check_text("stream id", stream_id, 1, ES_MAX_STREAM_ID, b->msg,
                          sizeof b->msg);
  if (rc)
    return rc;
  if (!events || n == 0 || n > 100000) {
    if (!events)
      es__set_msg(b->msg, sizeof b->msg,
                  "append to stream \"%s\": events is NULL", stream_id);
    else
      es__set_msg(b->msg, sizeof b->msg,
                  "append to stream \"%s\" needs 1 to 100000 events, got"
                  " %zu",
                  stream_id, n);
    return ES_ERR_INVALID;
  }
  if (expected < ES_ANY_VERSION) {
    es__set_msg(b->msg, sizeof b->msg,
                "expected version %lld of stream \"%s\" is invalid",
                (long long)expected, stream_id);
    return ES_ERR_INVALID;
  }
  for (size_t i = 0; i < n; i++)
    if ((rc = es__check_event(&events[i], b->max_payload, b->msg,
                              sizeof b->msg))) {
      if (n > 1) { /* which of them */
        char why[sizeof b->msg];
        memcpy(why, b->msg, sizeof why);
        es__set_msg(b->msg, sizeof b->msg, "event %zu of %zu: %s", i + 1, n,
                    why);
      }
      return rc;
    }
  /* what one append can encode (add_end's bound), judged on the data
   * before any of it is copied: a copy of up to a gigabyte, grown by
   * doubling, only to be refused */
  size_t data = 0;
  for (size_t i = 0; i < n; i++)
    data += events[i].data_len;
  if (data > (size_t)INT32_MAX / 2) {
    es__set_msg(b->msg, sizeof b->msg,
                "append to stream \"%s\" carries %zu bytes of event data in "
                "all, past the %zu one append can encode: split it",
                stream_id, data, (size_t)INT32_MAX / 2);
    return ES_ERR_TOO_LARGE;
  }
  if ((rc = grow_streams(b))) {
    es__set_msg(b->msg, sizeof b->msg, "out of memory");
    return rc;
  }
  static const uint8_t nil[16];
  size_t drawn = 0;
  for (size_t i = 0; i < n; i++)
    if (!memcmp(events[i].id, nil, 16)) {
      if ((rc = es_uuid_v7(events[i].id))) {
        es__set_msg(b->msg, sizeof b->msg,
                    "no clock or randomness for an event id");
        return rc;
      }
      drawn++;
    }
  b->streams[b->n_streams].fresh_ids = drawn == n;
  return 0;
}

/* Start stream slot n_streams: its ids copied to the batch's ids. */
static es__stream_t *add_begin(es_batch_t *b, int64_t expected,
                               const es_event_t *events, size_t n, int *rc) {
  es__stream_t *s = &b->streams[b->n_streams];
  s->params.len = 0;
  s->expected = expected;
  s->n_events = n;
  s->one = 0;
  s->ids_off = b->ids.len;
  for (size_t i = 0; i < n && !*rc; i++)
    *rc = es__buf_put(&b->ids, events[i].id, 16);
  return s;
}

/* Finish the slot started by add_begin: its index, or rc after undoing. */
static int add_end(es_batch_t *b, es__stream_t *s, const char *stream_id,
                   size_t ids_len, int rc) {
  if (!rc && s->params.len > (size_t)INT32_MAX / 2) {
    es__set_msg(b->msg, sizeof b->msg,
                "append to stream \"%s\" encodes to %zu bytes", stream_id,
                s->params.len);
    rc = ES_ERR_TOO_LARGE;
  }
  if (rc) {
    if (rc == ES_ERR_NOMEM)
      es__set_msg(b->msg, sizeof b->msg, "out of memory");
    b->ids.len = ids_len;
    return rc;
  }
  b->results[b->n_streams] = (es_append_result_t){0, 0, 0, 0};
  return (int)b->n_streams++;
}

#define MARK() (s->offs[k] = (int)p->len)
#define DONE() (s->lens[k] = (int)(p->len - (size_t)s->offs[k]), k++)

int es_batch_add(es_batch_t *b, const char *stream_id, int64_t expected,
                 es_event_t *events, size_t n) {
  if (!b)
    return ES_ERR_INVALID;
  int rc = add_check(b, stream_id, expected, events, n);
  if (rc)
    return rc;
  size_t ids_len = b->ids.len;
  es__stream_t *s = add_begin(b, expected, events, n, &rc);
  es__buf_t *p = &s->params;
  int k = 0;
  MARK();
  if (!rc)
    rc = es__buf_put(p, stream_id, strlen(stream_id));
  DONE();
  MARK();
  if (!rc)
    rc = es__buf_be64(p, expected);
  DONE();
  MARK();
  if (!rc)
    rc = array_head(p, OID_UUID, n, 0);
  for (size_t i = 0; i < n && !rc; i++)
    rc = array_elem(p, events[i].id, 16);
  DONE();
  MARK();
  if (!rc)
    rc = text_array(p, events, n, offsetof(es_event_t, type));
  DONE();
  MARK();
  if (!rc)
    rc = array_head(p, OID_BYTEA, n, 0);
  for (size_t i = 0; i < n && !rc; i++)
    rc = array_elem(p, events[i].data_len ? events[i].data : "",
                    events[i].data_len);
  DONE();
  MARK();
  if (!rc)
    rc = text_array(p, events, n, offsetof(es_event_t, correlation_id));
  DONE();
  MARK();
  if (!rc)
    rc = text_array(p, events, n, offsetof(es_event_t, causation_id));
  DONE();
  MARK();
  if (!rc)
    rc = text_array(p, events, n, offsetof(es_event_t, traceparent));
  DONE();
  MARK();
  if (!rc)
    rc = meta_array(p, events, n);
  DONE();
  return add_end(b, s, stream_id, ids_len, rc);
}

/* A scalar parameter: len bytes of v, or SQL NULL when v is NULL. */
static int scalar(es__stream_t *s, int k, const void *v, size_t len) {
  s->offs[k] = (int)s->params.len;
  s->lens[k] = v ? (int)len : -1;
  return v ? es__buf_put(&s->params, v, len) : 0;
}

int es__batch_add_one(es_batch_t *b, const char *stream_id, int64_t expected,
                      es_event_t *ev) {
  if (!b || expected < 0)
    return ES_ERR_INVALID;
  int rc = add_check(b, stream_id, expected, ev, 1);
  if (rc)
    return rc;
  size_t ids_len = b->ids.len;
  es__stream_t *s = add_begin(b, expected, ev, 1, &rc);
  es__buf_t *p = &s->params;
  s->one = 1;
  int k = 1;
  if (!rc)
    rc = scalar(s, 0, stream_id, strlen(stream_id));
  MARK();
  if (!rc)
    rc = es__buf_be64(p, expected);
  DONE();
  if (!rc)
    rc = scalar(s, 2, ev->id, 16);
  if (!rc)
    rc = scalar(s, 3, ev->type, strlen(ev->type));
  if (!rc)
    rc = scalar(s, 4, ev->data_len ? ev->data : "", ev->data_len);
  for (k = 5; k < 8 && !rc; k++) {
    const char *t = k == 5   ? ev->correlation_id
                    : k == 6 ? ev->causation_id
                             : ev->traceparent;
    rc = scalar(s, k, t, t ? strlen(t) : 0);
  }
  k = 8;
  if (!rc && ev->n_meta) {
    MARK();
    rc = meta_json(p, ev);
    DONE();
  } else if (!rc) {
    rc = scalar(s, 8, NULL, 0);
  }
  return add_end(b, s, stream_id, ids_len, rc);
}

#undef MARK
#undef DONE

/* The first word of sql after blanks and comments, as far as it names a
 * statement a batch must not hold, or NULL. A batch is one implicit
 * transaction: BEGIN would leave it (and every later call on the
 * connection) open and never committed, ROLLBACK or COMMIT would end it
 * half way while the batch still answers for all of it, DEALLOCATE or
 * DISCARD would drop the library's prepared statements, and a session's
 * SET (not SET LOCAL, SET TRANSACTION or SET CONSTRAINTS, which end with
 * the batch), RESET, LISTEN or UNLISTEN would outlive the batch on the
 * library's connection (its role, search_path or subscriptions). */
/* p past white space, comments and empty statements (a ';' alone, which
 * PostgreSQL drops: ";COMMIT" is a COMMIT). */
static const char *skip_blanks(const char *p) {
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' ||
           *p == '\v' || *p == ';')
      p++;
    if (p[0] == '-' && p[1] == '-') {
      while (*p && *p != '\n')
        p++;
    } else if (p[0] == '/' && p[1] == '*') {
      int depth = 0; /* PostgreSQL's block comments nest */
      do {
        if (p[0] == '/' && p[1] == '*')
          depth++, p += 2;
        else if (p[0] == '*' && p[1] == '/')
          depth--, p += 2;
        else
          p++;
      } while (*p && depth > 0);
    } else {
      return p;
    }
  }
}

static const char *session_control(const char *sql) {
  static const char *const words[] = {
      "BEGIN",      "START",   "COMMIT", "END",   "ROLLBACK", "ABORT",
      "SAVEPOINT",  "RELEASE", "DEALLOCATE", "DISCARD", "RESET",
      "LISTEN",     "UNLISTEN"};
  const char *p = skip_blanks(sql);
  size_t n = 0;
  while ((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= 'a' && p[n] <= 'z'))
    n++;
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
    if (strlen(words[i]) != n)
      continue;
    size_t k = 0;
    while (k < n && (p[k] & ~0x20) == words[i][k])
      k++;
    if (k == n)
      return words[i];
  }
  /* SET for the session, unless it is for the transaction alone */
  if (n == 3 && !strncasecmp(p, "SET", 3)) {
    const char *q = skip_blanks(p + 3); /* a comment before LOCAL too */
    static const char *const scoped[] = {"LOCAL", "TRANSACTION",
                                         "CONSTRAINTS"};
    for (size_t i = 0; i < 3; i++) {
      size_t l = strlen(scoped[i]);
      if (!strncasecmp(q, scoped[i], l) &&
          !((q[l] >= 'A' && q[l] <= 'Z') || (q[l] >= 'a' && q[l] <= 'z') ||
            q[l] == '_'))
        return NULL;
    }
    return "SET";
  }
  /* PREPARE TRANSACTION (two-phase commit) ends the transaction too */
  if (n == 7 && !strncasecmp(p, "PREPARE", 7)) {
    const char *q = skip_blanks(p + 7);
    if (!strncasecmp(q, "TRANSACTION", 11))
      return "PREPARE TRANSACTION";
  }
  return NULL;
}

int es_batch_add_statement(es_batch_t *b, const char *sql, int nparams,
                           const char *const *params) {
  if (!b)
    return ES_ERR_INVALID;
  if (!sql || !*sql || nparams < 0 || nparams > 65535 ||
      (nparams > 0 && !params)) {
    es__set_msg(b->msg, sizeof b->msg, "batch statement: %s",
                !sql || !*sql ? "the SQL text is missing or empty"
                : nparams < 0 || nparams > 65535
                    ? "nparams must be 0 to 65535"
                    : "params is NULL with nparams above 0");
    return ES_ERR_INVALID;
  }
  const char *word = session_control(sql);
  if (word) {
    es__set_msg(b->msg, sizeof b->msg,
                "batch statement: %s is not allowed in a batch (the batch is"
                " one transaction on the library's session)",
                word);
    return ES_ERR_INVALID;
  }
  if (b->n_stmts == b->cap_stmts) {
    size_t cap = b->cap_stmts ? b->cap_stmts * 2 : 8;
    es__stmt_t *s = realloc(b->stmts, cap * sizeof *s);
    if (!s) {
      es__set_msg(b->msg, sizeof b->msg, "out of memory");
      return ES_ERR_NOMEM;
    }
    b->stmts = s;
    b->cap_stmts = cap;
  }
  es__stmt_t *s = &b->stmts[b->n_stmts];
  memset(s, 0, sizeof *s);
  s->sql = strdup(sql);
  s->params = calloc((size_t)nparams + 1, sizeof *s->params);
  if (!s->sql || !s->params)
    goto nomem;
  for (int i = 0; i < nparams; i++) {
    s->nparams = i + 1;
    if (params[i] && !(s->params[i] = strdup(params[i])))
      goto nomem;
  }
  s->nparams = nparams;
  return (int)b->n_stmts++;
nomem:
  free_stmt(s);
  es__set_msg(b->msg, sizeof b->msg, "out of memory");
  return ES_ERR_NOMEM;
}

int es_batch_add_statement_replanned(es_batch_t *b, const char *sql,
                                     int nparams,
                                     const char *const *params) {
  int i = es_batch_add_statement(b, sql, nparams, params);
  if (i >= 0)
    b->stmts[i].replanned = 1;
  return i;
}

/* A checkpoint advance as text parameters: of a subscription (group 0:
 * ES__CKPT_SAVE_SQL) or of a group member's buckets (ES__GROUP_ACK_SQL).
 * Returns the statement's index or an error with b->msg set. */
static int add_ckpt(es_batch_t *b, int group, const char *name, int member,
                    int members, es_pos_t pos) {
  if (!b)
    return ES_ERR_INVALID;
  int rc = es__check_sub_name(group ? "group name" : "subscription name",
                              name, b->msg, sizeof b->msg);
  if (rc)
    return rc;
  /* name only the arguments of the call made: a subscription's
   * checkpoint takes no member or members */
  if (pos.pos < 0) {
    es__set_msg(b->msg, sizeof b->msg,
                "checkpoint of \"%s\": the position must not be negative"
                " (got %lld)",
                name, (long long)pos.pos);
    return ES_ERR_INVALID;
  }
  if (group && (members < 1 || members > ES_GROUP_BUCKETS)) {
    es__set_msg(b->msg, sizeof b->msg,
                "checkpoint of group \"%s\": members must be 1 to %d"
                " (got %d)",
                name, ES_GROUP_BUCKETS, members);
    return ES_ERR_INVALID;
  }
  if (group && (member < 0 || member >= members)) {
    es__set_msg(b->msg, sizeof b->msg,
                "checkpoint of group \"%s\": member must be 0 to members - 1"
                " (got member %d of %d)",
                name, member, members);
    return ES_ERR_INVALID;
  }
  char tx[24], gp[24], m[16], n[16];
  snprintf(tx, sizeof tx, "%llu", (unsigned long long)pos.tx);
  snprintf(gp, sizeof gp, "%lld", (long long)pos.pos);
  snprintf(m, sizeof m, "%d", member);
  snprintf(n, sizeof n, "%d", members);
  const char *by_group[5] = {name, m, n, tx, gp}, *one[3] = {name, tx, gp};
  return group ? es_batch_add_statement(b, ES__GROUP_ACK_SQL, 5, by_group)
               : es_batch_add_statement(b, ES__CKPT_SAVE_SQL, 3, one);
}

int es_batch_add_checkpoint(es_batch_t *b, const char *name, es_pos_t pos) {
  return add_ckpt(b, 0, name, 0, 1, pos);
}

int es_batch_add_checkpoint_reset(es_batch_t *b, const char *name) {
  if (!b)
    return ES_ERR_INVALID;
  int rc = es__check_sub_name("subscription name", name, b->msg,
                              sizeof b->msg);
  return rc ? rc : es_batch_add_statement(b, ES__CKPT_RESET_SQL, 1, &name);
}

int es_batch_add_group_ack(es_batch_t *b, const char *group, int member,
                           int members, es_pos_t pos) {
  return add_ckpt(b, 1, group, member, members, pos);
}

int es_batch_add_member_ack(es_batch_t *b, const char *group,
                            int64_t member_id, uint64_t buckets,
                            es_pos_t pos) {
  if (!b)
    return ES_ERR_INVALID;
  int rc = es__check_sub_name("group name", group, b->msg, sizeof b->msg);
  if (rc)
    return rc;
  if (member_id <= 0) {
    es__set_msg(b->msg, sizeof b->msg,
                "acknowledgement in group \"%s\": the member id must be"
                " positive (got %lld): use the id es_group_join gave",
                group, (long long)member_id);
    return ES_ERR_INVALID;
  }
  if (pos.pos < 0) {
    es__set_msg(b->msg, sizeof b->msg,
                "acknowledgement in group \"%s\": the position must not be"
                " negative (got %lld)",
                group, (long long)pos.pos);
    return ES_ERR_INVALID;
  }
  char id[24], mask[24], tx[24], gp[24];
  snprintf(id, sizeof id, "%lld", (long long)member_id);
  snprintf(mask, sizeof mask, "%lld", (long long)(int64_t)buckets);
  snprintf(tx, sizeof tx, "%llu", (unsigned long long)pos.tx);
  snprintf(gp, sizeof gp, "%lld", (long long)pos.pos);
  const char *v[5] = {group, id, mask, tx, gp};
  int i = es_batch_add_statement(
      b,
      "SELECT es_group_member_ack($1, $2::int8, $3::int8, $4::xid8,"
      " $5::int8)",
      5, v);
  if (i >= 0)
    b->stmts[i].member_ack = 1;
  return i;
}

/* ---- the multi-stream statement ---- */

struct skey {
  const char *id;
  size_t len, i;
};

static int key_cmp(const void *a, const void *b) {
  const struct skey *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->id, y->id, n);
  if (c)
    return c;
  if (x->len != y->len)
    return x->len < y->len ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

int es__batch_plan(es_batch_t *b) {
  size_t n = b->n_streams;
  if (b->cap_plan < n) {
    size_t *p = realloc(b->order, (3 * n + 1) * sizeof *p);
    if (!p)
      return ES_ERR_NOMEM;
    b->order = p;
    b->cap_plan = n;
  }
  b->rank = b->order + n;
  b->round_start = b->rank + n;
  struct skey *keys = malloc((n ? n : 1) * sizeof *keys);
  if (!keys)
    return ES_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) {
    const es__stream_t *s = &b->streams[i];
    keys[i] = (struct skey){s->params.p + s->offs[0], (size_t)s->lens[0], i};
  }
  qsort(keys, n, sizeof *keys, key_cmp);
  b->n_rounds = n ? 1 : 0;
  for (size_t j = 0; j < n; j++) {
    size_t r = 0;
    if (j && keys[j].len == keys[j - 1].len &&
        !memcmp(keys[j].id, keys[j - 1].id, keys[j].len))
      r = b->rank[keys[j - 1].i] + 1;
    b->rank[keys[j].i] = r;
    if (r + 1 > b->n_rounds)
      b->n_rounds = r + 1;
  }
  free(keys);
  /* counting sort by round, batch order within a round */
  memset(b->round_start, 0, (b->n_rounds + 1) * sizeof *b->round_start);
  for (size_t i = 0; i < n; i++)
    b->round_start[b->rank[i] + 1]++;
  for (size_t r = 0; r < b->n_rounds; r++)
    b->round_start[r + 1] += b->round_start[r];
  size_t fill[64], *cur = b->n_rounds <= 64 ? fill : NULL;
  if (!cur && !(cur = malloc(b->n_rounds * sizeof *cur)))
    return ES_ERR_NOMEM;
  memcpy(cur, b->round_start, b->n_rounds * sizeof *cur);
  for (size_t i = 0; i < n; i++)
    b->order[cur[b->rank[i]]++] = i;
  if (cur != fill)
    free(cur);
  return 0;
}

/* Concatenate parameter k (an array) of the streams of a round into one
 * array of n_events elements: each stream's elements follow its 20-byte
 * array header. */
static int concat_array(es_batch_t *b, const size_t *idx, size_t m, int k,
                        size_t n_events) {
  es__buf_t *p = &b->multi;
  int32_t hasnull = 0, oid = 0;
  for (size_t j = 0; j < m; j++) {
    const es__stream_t *s = &b->streams[idx[j]];
    hasnull |= es__get_be32(s->params.p + s->offs[k] + 4);
    oid = es__get_be32(s->params.p + s->offs[k] + 8);
  }
  int rc = array_head(p, oid, n_events, hasnull != 0);
  for (size_t j = 0; j < m && !rc; j++) {
    const es__stream_t *s = &b->streams[idx[j]];
    rc = es__buf_put(p, s->params.p + s->offs[k] + 20,
                     (size_t)s->lens[k] - 20);
  }
  return rc;
}

int es__batch_encode_round(es_batch_t *b, size_t k, const char **values,
                           int *lens) {
  const size_t *idx = b->order + b->round_start[k];
  size_t m = b->round_start[k + 1] - b->round_start[k], n_events = 0;
  size_t bytes = 0;
  for (size_t j = 0; j < m; j++) {
    n_events += b->streams[idx[j]].n_events;
    bytes += b->streams[idx[j]].params.len +
             (36 + (size_t)b->streams[idx[j]].lens[0]) *
                 b->streams[idx[j]].n_events;
  }
  if (bytes > ES__MULTI_MAX_BYTES)
    return ES_ERR_TOO_LARGE;
  es__buf_t *p = &b->multi;
  size_t offs[ES__MULTI_NPARAMS];
  int rc;
  p->len = 0;
  offs[0] = 0;
  rc = array_head(p, OID_TEXT, m, 0);
  for (size_t j = 0; j < m && !rc; j++) {
    const es__stream_t *s = &b->streams[idx[j]];
    rc = array_elem(p, s->params.p + s->offs[0], (size_t)s->lens[0]);
  }
  offs[1] = p->len;
  if (!rc)
    rc = array_head(p, OID_INT8, m, 0);
  for (size_t j = 0; j < m && !rc; j++)
    if (!(rc = es__buf_be32(p, 8)))
      rc = es__buf_be64(p, b->streams[idx[j]].expected);
  for (int a = 0; a < 2; a++) { /* stream number, ordinal in its stream */
    offs[2 + a] = p->len;
    if (!rc)
      rc = array_head(p, OID_INT8, n_events, 0);
    for (size_t j = 0; j < m && !rc; j++)
      for (size_t e = 0; e < b->streams[idx[j]].n_events && !rc; e++)
        if (!(rc = es__buf_be32(p, 8)))
          rc = es__buf_be64(p, (int64_t)(a ? e : j) + 1);
  }
  for (int a = 2; a < ES__APPEND_NPARAMS; a++) {
    offs[a + 2] = p->len;
    if (!rc)
      rc = concat_array(b, idx, m, a, n_events);
  }
  /* each event's stream id, so the statement needs no join to find it */
  offs[ES__APPEND_NPARAMS + 2] = p->len;
  if (!rc)
    rc = array_head(p, OID_TEXT, n_events, 0);
  for (size_t j = 0; j < m && !rc; j++) {
    const es__stream_t *s = &b->streams[idx[j]];
    for (size_t e = 0; e < s->n_events && !rc; e++)
      rc = array_elem(p, s->params.p + s->offs[0], (size_t)s->lens[0]);
  }
  /* per stream: probe its ids, unless the library drew them all and has
   * not sent them before (sent now: a later execution probes) */
  offs[ES__APPEND_NPARAMS + 3] = p->len;
  if (!rc)
    rc = array_head(p, OID_BOOL, m, 0);
  for (size_t j = 0; j < m && !rc; j++) {
    es__stream_t *s = &b->streams[idx[j]];
    char probe = !s->fresh_ids;
    if (!(rc = es__buf_be32(p, 1)))
      rc = es__buf_put(p, &probe, 1);
    s->fresh_ids = 0;
  }
  if (rc)
    return rc;
  for (int a = 0; a < ES__MULTI_NPARAMS; a++) {
    values[a] = p->p + offs[a];
    lens[a] = (int)((a + 1 < ES__MULTI_NPARAMS ? offs[a + 1] : p->len) -
                    offs[a]);
  }
  return 0;
}
