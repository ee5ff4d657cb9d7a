/* The blocking face: one connection in pipeline mode, each call one round
 * trip (send everything, one sync, read results in order). A lost
 * connection fails the call with CONNECTION and is re-established at the
 * start of the next call. */
#include <stdlib.h>
#include <string.h>

#include "es_internal.h"

struct es_store {
  PGconn *conn;
  char *conninfo;
  /* PQconnectdbParams's arrays: opts.conn_defaults, then dbname =
   * conninfo (expanded), then NULL; owned. */
  char **ckeys, **cvals;
  es_store_opts_t opts;
  int prepared;
  es__xcache_t xc; /* batch statements prepared on conn */
  es__heads_t heads; /* the stream heads es_append wrote on conn */
  int broken;
  es_batch_t *one; /* reused by es_append */
  int member_full; /* es_member_read: the full statement (es__op_t) */
  char msg[ES_ERRBUF_SIZE];
};

void es_store_opts_init(es_store_opts_t *opts) {
  memset(opts, 0, sizeof *opts);
  opts->max_payload = 1024 * 1024;
  opts->notify = 1;
  opts->migrate = 0;
  opts->durable_acks = 0;
}

/* Fill s->ckeys/cvals from defaults and s->conninfo. 0 or ES_ERR_NOMEM. */
static int conn_params(es_store_t *s, const char *const *defaults) {
  size_t n = 0;
  while (defaults && defaults[2 * n])
    n++;
  if (!(s->ckeys = calloc(n + 2, sizeof *s->ckeys)) ||
      !(s->cvals = calloc(n + 2, sizeof *s->cvals)))
    return ES_ERR_NOMEM;
  for (size_t i = 0; i <= n; i++) {
    const char *k = i < n ? defaults[2 * i] : "dbname";
    const char *v = i < n ? defaults[2 * i + 1] : s->conninfo;
    if (!(s->ckeys[i] = strdup(k)) || !(s->cvals[i] = strdup(v ? v : "")))
      return ES_ERR_NOMEM;
  }
  return 0;
}

static void conn_params_free(es_store_t *s) {
  for (size_t i = 0; s->ckeys && s->ckeys[i]; i++)
    free(s->ckeys[i]);
  for (size_t i = 0; s->cvals && s->cvals[i]; i++)
    free(s->cvals[i]);
  free(s->ckeys);
  free(s->cvals);
}

static PGconn *connect_db(const es_store_t *s) {
  PGconn *c = PQconnectdbParams((const char *const *)s->ckeys,
                                (const char *const *)s->cvals, 1);
  es__quiet(c); /* kept by PQreset */
  return c;
}

const char *es_store_last_error(const es_store_t *store) {
  return store ? store->msg : "";
}

static void trim_copy(char *dst, size_t len, const char *src) {
  es__set_msg(dst, len, "%s", src ? src : "");
  size_t n = strlen(dst);
  while (n && dst[n - 1] == '\n')
    dst[--n] = '\0';
}

/* A required pointer argument was NULL: INVALID, and the store's last
 * error says which (not the text of an earlier call). */
static int missing(es_store_t *s, const char *what) {
  es__set_msg(s->msg, sizeof s->msg, "%s is required", what);
  return ES_ERR_INVALID;
}

/* Check that the schema this library needs is in place. Runs before
 * pipeline mode is entered. */
static int check_schema(es_store_t *s) {
  PGresult *r = PQexec(s->conn, "SELECT max(version) FROM es_schema_version");
  int rc = 0;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = es__map_error(s->conn, r);
    if (rc == ES_ERR_SCHEMA || rc == ES_ERR_DB)
      rc = ES_ERR_SCHEMA;
    es__set_msg(s->msg, sizeof s->msg, "could not read the schema version: %s",
                PQresultErrorMessage(r));
  } else if (PQgetisnull(r, 0, 0) ||
             atoi(PQgetvalue(r, 0, 0)) != es_schema_version()) {
    rc = ES_ERR_SCHEMA;
    es__set_msg(s->msg, sizeof s->msg,
                "database schema version is %s, this library needs %d",
                PQgetisnull(r, 0, 0) ? "none" : PQgetvalue(r, 0, 0),
                es_schema_version());
  }
  PQclear(r);
  return rc;
}

static int connect_store(es_store_t *s) {
  if (s->conn && !s->broken && PQstatus(s->conn) == CONNECTION_OK)
    return 0;
  if (s->conn)
    PQreset(s->conn);
  else
    s->conn = connect_db(s);
  if (!s->conn)
    return ES_ERR_NOMEM;
  if (PQstatus(s->conn) != CONNECTION_OK) {
    es__set_msg(s->msg, sizeof s->msg, "could not connect to the database: %s",
                PQerrorMessage(s->conn));
    return ES_ERR_CONNECTION;
  }
  s->broken = 0;
  s->prepared = 0;
  if (!PQenterPipelineMode(s->conn)) {
    es__set_msg(s->msg, sizeof s->msg, "could not enter pipeline mode: %s",
                PQerrorMessage(s->conn));
    s->broken = 1;
    return ES_ERR_CONNECTION;
  }
  return 0;
}

/* Send op's queries (and the statement preparations when prepare). */
static int send_op(es_store_t *s, es__op_t *op, int prepare) {
  int rc = es__op_send(s->conn, op, prepare, 0);
  if (!rc && PQflush(s->conn) != 0) {
    rc = ES_ERR_CONNECTION;
    es__set_msg(op->msg, sizeof op->msg, "could not send to the database: %s",
                PQerrorMessage(s->conn));
  }
  return rc;
}

/* Run op in one round trip (two when a batch's multi-stream statement
 * fails and its streams are classified); the op's status is the answer. */
static int run(es_store_t *s, es__op_t *op) {
  int rc = connect_store(s);
  if (rc) {
    es__op_fail(op, rc, s->msg);
    return rc;
  }
  int prepare = !s->prepared;
  op->xc = &s->xc;
  op->heads = &s->heads;
  rc = send_op(s, op, prepare);
  int nulls = 0;
  while (!rc) {
    PGresult *r = PQgetResult(s->conn);
    if (!r) {
      /* NULL ends each query's results; repeated NULLs mean the
       * connection is gone. */
      if (PQstatus(s->conn) == CONNECTION_BAD || ++nulls > 2) {
        rc = ES_ERR_CONNECTION;
        es__set_msg(op->msg, sizeof op->msg, "connection lost: %s",
                    PQerrorMessage(s->conn));
      }
      continue;
    }
    nulls = 0;
    if (PQresultStatus(r) == PGRES_FATAL_ERROR &&
        es__map_error(s->conn, r) == ES_ERR_CONNECTION) {
      es__set_msg(op->msg, sizeof op->msg, "connection lost: %s",
                  PQresultErrorMessage(r));
      PQclear(r);
      rc = ES_ERR_CONNECTION;
      break;
    }
    int done = es__op_result(op, r);
    if (done == ES__OP_AGAIN)
      rc = send_op(s, op, 0);
    else if (done)
      break;
  }
  if (rc) {
    s->broken = 1;
    op->status = 0;
    es__op_fail(op, rc, NULL);
  } else if (prepare && !op->prep_failed) {
    s->prepared = 1;
  }
  if (op->xprep_failed)
    s->prepared = 0;
  trim_copy(s->msg, sizeof s->msg, op->msg);
  return op->status;
}

int es_store_open(const char *conninfo, const es_store_opts_t *opts,
                  es_store_t **out, char *errbuf, size_t errlen) {
  if (!conninfo || !out) {
    es__set_msg(errbuf, errlen, "conninfo and out are required");
    return ES_ERR_INVALID;
  }
  *out = NULL;
  int bad = es__conninfo_check(conninfo, errbuf, errlen);
  if (bad)
    return bad;
  es_store_t *s = calloc(1, sizeof *s);
  if (!s)
    return ES_ERR_NOMEM;
  if (opts)
    s->opts = *opts;
  else
    es_store_opts_init(&s->opts);
  int rc = ES_ERR_NOMEM;
  if (!(s->conninfo = strdup(conninfo)) || !(s->one = es_batch_new(opts)) ||
      conn_params(s, s->opts.conn_defaults) != 0)
    goto fail;
  s->conn = connect_db(s);
  /* the migration on the store's own connection: the conninfo with
   * conn_defaults (a host, a password, connect_timeout) */
  if (s->opts.migrate && s->conn && PQstatus(s->conn) == CONNECTION_OK &&
      (rc = es__migrate_on(s->conn, es_schema_version(), NULL, s->msg,
                           sizeof s->msg)))
    goto fail;
  if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
    rc = s->conn ? ES_ERR_CONNECTION : ES_ERR_NOMEM;
    es__set_msg(s->msg, sizeof s->msg, "could not connect to the database: %s",
                s->conn ? PQerrorMessage(s->conn) : "out of memory");
    goto fail;
  }
  if ((rc = check_schema(s)))
    goto fail;
  s->broken = 1; /* connect_store enters pipeline mode */
  PQfinish(s->conn);
  s->conn = NULL;
  if ((rc = connect_store(s)))
    goto fail;
  *out = s;
  return 0;
fail:
  trim_copy(errbuf, errlen, s->msg);
  es_store_close(s);
  return rc;
}

void es_store_close(es_store_t *s) {
  if (!s)
    return;
  if (s->conn)
    PQfinish(s->conn);
  es_batch_free(s->one);
  es__xcache_clear(&s->xc);
  es__heads_clear(&s->heads);
  conn_params_free(s);
  free(s->conninfo);
  free(s);
}

int es_append(es_store_t *s, const char *stream_id, int64_t expected,
              es_event_t *events, size_t n, es_append_result_t *result) {
  if (!s) {
    if (result)
      *result = (es_append_result_t){ES_ERR_INVALID, 0, 0, 0};
    return ES_ERR_INVALID;
  }
  es_batch_reset(s->one);
  s->one->max_payload = s->opts.max_payload;
  /* The single-event statement writes version expected + 1, which
   * overflows for INT64_MAX: that one goes the general way (CONFLICT). */
  int rc = n == 1 && expected >= 0 && expected < INT64_MAX
               ? es__batch_add_one(s->one, stream_id, expected, events)
               : es_batch_add(s->one, stream_id, expected, events, n);
  if (rc < 0) {
    trim_copy(s->msg, sizeof s->msg, s->one->msg);
    if (result) /* nothing sent: the outcome is the refusal */
      *result = (es_append_result_t){rc, 0, 0, 0};
    return rc;
  }
  es__op_t op = {.kind = ES__OP_APPEND, .batch = s->one,
                 .notify = s->opts.notify};
  rc = run(s, &op);
  if (result)
    *result = s->one->results[0];
  es__op_free(&op);
  return rc;
}

/* Execute b: a caller's batch, or (own) the store's own statements, whose
 * failure answers its code (DB ...) rather than BATCH_ABORTED. */
static int execute(es_store_t *s, es_batch_t *b, int own) {
  if (b->n_streams == 0 && b->n_stmts == 0) {
    es__set_msg(s->msg, sizeof s->msg,
                "empty batch: it holds no append and no statement");
    return ES_ERR_INVALID;
  }
  for (size_t i = 0; i < b->n_streams; i++)
    b->results[i] = (es_append_result_t){0, 0, 0, 0};
  es__op_t op = {.kind = ES__OP_BATCH, .batch = b, .notify = s->opts.notify,
                 .own = own};
  int rc = run(s, &op);
  es__op_free(&op);
  return rc;
}

int es_batch_execute(es_store_t *s, es_batch_t *b) {
  if (!s)
    return ES_ERR_INVALID;
  if (!b)
    return missing(s, "batch");
  return execute(s, b, 0);
}

static int read_op(es_store_t *s, es__op_t *op, int rc, es_page_t **out) {
  if (!rc)
    rc = run(s, op);
  else
    trim_copy(s->msg, sizeof s->msg, op->msg);
  if (!rc) {
    *out = op->page;
    op->page = NULL;
  }
  es__op_free(op);
  return rc;
}

int es_read_stream(es_store_t *s, const char *stream_id, int64_t from_version,
                   size_t max, es_page_t **out) {
  if (!s)
    return ES_ERR_INVALID;
  if (!out)
    return missing(s, "out");
  *out = NULL;
  es__op_t op = {0};
  return read_op(s, &op, es__op_read_stream(&op, stream_id, from_version, max),
                 out);
}

int es_read_all(es_store_t *s, es_pos_t from, const es_filter_t *filter,
                size_t max, es_page_t **out) {
  if (!s)
    return ES_ERR_INVALID;
  if (!out)
    return missing(s, "out");
  *out = NULL;
  es__op_t op = {0};
  return read_op(s, &op, es__op_read_all(&op, from, filter, max), out);
}

int es_roll_forward(es_store_t *s, int64_t min_events, unsigned lock_wait_ms,
                    int *era) {
  if (!s)
    return ES_ERR_INVALID;
  if (min_events < 0 || lock_wait_ms > INT32_MAX) {
    es__set_msg(s->msg, sizeof s->msg,
                "roll forward: min_events must not be negative and"
                " lock_wait_ms at most %d",
                INT32_MAX);
    return ES_ERR_INVALID;
  }
  es__op_t op = {.kind = ES__OP_ROLL, .from_version = min_events,
                 .max = lock_wait_ms};
  int rc = run(s, &op);
  if (!rc && era)
    *era = (int)op.from_version;
  es__op_free(&op);
  return rc;
}

/* Start the store's own batch for a checkpoint that only moves forward
 * (es_checkpoint_save, es_group_ack, es_member_ack): unless the store was
 * opened with durable_acks, its commit does not wait for the WAL flush
 * (at least once: a checkpoint a server crash loses only means those
 * events are read again). 0, or a negative error with the batch's
 * message. */
static int ack_begin(es_store_t *s) {
  es_batch_reset(s->one);
  if (s->opts.durable_acks)
    return 0;
  int rc = es_batch_add_statement(
      s->one, "SELECT set_config('synchronous_commit', 'off', true)", 0,
      NULL);
  return rc < 0 ? rc : 0;
}

/* Run the store's own batch holding one checkpoint statement (add's
 * answer: its index, or an error with the batch's message). */
static int run_ckpt(es_store_t *s, int add) {
  if (add < 0) {
    trim_copy(s->msg, sizeof s->msg, s->one->msg);
    return add;
  }
  return execute(s, s->one, 1);
}

int es_checkpoint_save(es_store_t *s, const char *name, es_pos_t pos) {
  if (!s)
    return ES_ERR_INVALID;
  int rc = ack_begin(s);
  return run_ckpt(s, rc ? rc : es_batch_add_checkpoint(s->one, name, pos));
}

int es_checkpoint_reset(es_store_t *s, const char *name) {
  if (!s)
    return ES_ERR_INVALID;
  es_batch_reset(s->one);
  return run_ckpt(s, es_batch_add_checkpoint_reset(s->one, name));
}

int es_group_ack(es_store_t *s, const char *group, int member, int members,
                 es_pos_t pos) {
  if (!s)
    return ES_ERR_INVALID;
  int rc = ack_begin(s);
  return run_ckpt(s, rc ? rc
                        : es_batch_add_group_ack(s->one, group, member,
                                                 members, pos));
}

int es_close_stream(es_store_t *s, const char *stream_id) {
  if (!s)
    return ES_ERR_INVALID;
  int rc = es__check_text("stream id", stream_id, 1, ES_MAX_STREAM_ID,
                          s->msg, sizeof s->msg);
  if (rc)
    return rc;
  es_batch_reset(s->one);
  return run_ckpt(s, es_batch_add_statement(
                         s->one,
                         "INSERT INTO es_closed_streams (stream_id)"
                         " VALUES ($1) ON CONFLICT DO NOTHING",
                         1, &stream_id));
}

int es_checkpoint_load(es_store_t *s, const char *name, es_pos_t *pos) {
  if (!s)
    return ES_ERR_INVALID;
  if (!pos)
    return missing(s, "pos");
  es__op_t op = {.kind = ES__OP_CKPT_LOAD};
  int rc = es__check_sub_name("subscription name", name, op.msg,
                              sizeof op.msg);
  if (!rc && !(op.stream_id = strdup(name)))
    rc = ES_ERR_NOMEM;
  if (rc)
    trim_copy(s->msg, sizeof s->msg, op.msg);
  else if (!(rc = run(s, &op)))
    *pos = op.from;
  es__op_free(&op);
  return rc;
}

int es_group_read(es_store_t *s, const char *group, const char *category,
                  int member, int members, size_t max, es_page_t **out) {
  if (!s)
    return ES_ERR_INVALID;
  if (!out)
    return missing(s, "out");
  *out = NULL;
  es__op_t op = {0};
  return read_op(
      s, &op, es__op_read_group(&op, group, category, member, members, max),
      out);
}

/* Join (which 0), renew (1) or leave (2) a group; the buckets owned
 * after it into *buckets (optional). */
static int member_op(es_store_t *s, int which, const char *group,
                     int64_t member_id, unsigned lease_ms,
                     uint64_t *buckets) {
  es__op_t op = {0};
  int rc = es__op_member(&op, which, group, member_id, lease_ms);
  if (rc)
    trim_copy(s->msg, sizeof s->msg, op.msg);
  else if (!(rc = run(s, &op)) && buckets)
    *buckets = op.from.tx;
  es__op_free(&op);
  return rc;
}

int es_group_join(es_store_t *s, const char *group, unsigned lease_ms,
                  int64_t *member_id, uint64_t *buckets) {
  if (!s)
    return ES_ERR_INVALID;
  if (!member_id)
    return missing(s, "member_id");
  int64_t id = es__member_id();
  if (id <= 0) {
    es__set_msg(s->msg, sizeof s->msg,
                "group join: no randomness for a member id");
    return ES_ERR_INVALID;
  }
  int rc = member_op(s, 0, group, id, lease_ms, buckets);
  if (!rc)
    *member_id = id;
  return rc;
}

int es_group_renew(es_store_t *s, const char *group, int64_t member_id,
                   unsigned lease_ms, uint64_t *buckets) {
  if (!s)
    return ES_ERR_INVALID;
  return member_op(s, 1, group, member_id, lease_ms, buckets);
}

int es_group_leave(es_store_t *s, const char *group, int64_t member_id) {
  if (!s)
    return ES_ERR_INVALID;
  return member_op(s, 2, group, member_id, 0, NULL);
}

int es_member_read(es_store_t *s, const char *group, const char *category,
                   int64_t member_id, size_t max, es_page_t **out) {
  if (!s)
    return ES_ERR_INVALID;
  if (!out)
    return missing(s, "out");
  *out = NULL;
  es__op_t op = {0};
  int rc = es__op_read_member(&op, group, category, member_id, max);
  if (rc) {
    trim_copy(s->msg, sizeof s->msg, op.msg);
  } else {
    op.member_full = s->member_full;
    if (!(rc = run(s, &op))) {
      s->member_full = op.member_full;
      *out = op.page;
      op.page = NULL;
    }
  }
  es__op_free(&op);
  return rc;
}

int es_member_ack(es_store_t *s, const char *group, int64_t member_id,
                  uint64_t buckets, es_pos_t pos) {
  if (!s)
    return ES_ERR_INVALID;
  int rc = ack_begin(s);
  return run_ckpt(s, rc ? rc
                        : es_batch_add_member_ack(s->one, group, member_id,
                                                  buckets, pos));
}

/* Snapshot parameters packed in op->snap: version, stream id, type, data
 * (lengths of the stream id in op->max, of the type in op->from_version). */
static int snap_op(es_store_t *s, es__op_t *op, const char *stream_id,
                   int64_t version, const char *type, const void *data,
                   size_t len) {
  int rc = es__check_text("stream id", stream_id, 1, ES_MAX_STREAM_ID,
                          op->msg, sizeof op->msg);
  if (!rc && op->kind == ES__OP_SNAP_SAVE) {
    rc = es__check_text("snapshot type", type, 1, ES_MAX_TYPE, op->msg,
                        sizeof op->msg);
    if (!rc && ((len && !data) || version <= 0)) {
      es__set_msg(op->msg, sizeof op->msg,
                  "snapshot of stream \"%s\": version must be positive and"
                  " data given",
                  stream_id);
      rc = ES_ERR_INVALID;
    }
    size_t ceiling = s->opts.max_payload < ES__MAX_VALUE ? s->opts.max_payload
                                                         : ES__MAX_VALUE;
    if (!rc && len > ceiling) {
      es__set_msg(op->msg, sizeof op->msg,
                  "snapshot data is %zu bytes, more than %zu", len, ceiling);
      rc = ES_ERR_TOO_LARGE;
    }
  }
  if (rc) {
    trim_copy(s->msg, sizeof s->msg, op->msg);
    return rc;
  }
  op->max = strlen(stream_id);
  op->from_version = type ? (int64_t)strlen(type) : 0;
  if (es__buf_be64(&op->snap, version) ||
      es__buf_put(&op->snap, stream_id, op->max) ||
      (type && es__buf_put(&op->snap, type, (size_t)op->from_version)) ||
      (len && es__buf_put(&op->snap, data, len))) {
    es__set_msg(s->msg, sizeof s->msg, "out of memory");
    return ES_ERR_NOMEM;
  }
  return run(s, op);
}

int es_snapshot_save(es_store_t *s, const char *stream_id, int64_t version,
                     const char *type, const void *data, size_t len) {
  if (!s)
    return ES_ERR_INVALID;
  es__op_t op = {.kind = ES__OP_SNAP_SAVE};
  int rc = snap_op(s, &op, stream_id, version, type, data, len);
  es__op_free(&op);
  return rc;
}

int es_snapshot_load(es_store_t *s, const char *stream_id,
                     es_snapshot_t **out) {
  if (!s)
    return ES_ERR_INVALID;
  if (!out)
    return missing(s, "out");
  *out = NULL;
  es__op_t op = {.kind = ES__OP_SNAP_LOAD};
  int rc = snap_op(s, &op, stream_id, 0, NULL, NULL, 0);
  if (!rc) {
    *out = op.snapshot;
    op.snapshot = NULL;
  }
  es__op_free(&op);
  return rc;
}
