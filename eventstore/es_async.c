/* The non-blocking face: one libpq connection driven by a uv_poll_t on the
 * caller's loop. Operations queue and run one at a time, each as one
 * pipeline ending in a sync. Callbacks never run inside a submit call (a
 * zero timer defers the work) and run exactly once. */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "es_async_internal.h"

enum { ST_DOWN, ST_CONNECTING, ST_READY };

struct es_async {
  uv_loop_t *loop;
  char *conninfo;
  es_store_opts_t opts;
  PGconn *conn;
  int st;
  uv_poll_t *poll;
  int poll_fd;
  uv_timer_t kick;
  int prepared, prep_inflight;
  es__xcache_t xc; /* batch statements prepared on conn */
  int listen, listened, listen_inflight;
  es__op_t *head, *tail, *cur;
  int closing, handles;
  es_async_close_cb close_cb;
  void *close_arg;
  es__async_hooks_t hooks;
  int member_full; /* member reads: the full statement (es__op_t) */
  char msg[ES_ERRBUF_SIZE];
};

static void process(es_async_t *as);

static void on_kick(uv_timer_t *t) { process(t->data); }

static void on_handle_closed(uv_handle_t *h) {
  es_async_t *as = h->data;
  if (h != (uv_handle_t *)&as->kick)
    free(h);
  if (--as->handles == 0 && as->closing) {
    if (as->close_cb)
      as->close_cb(as, as->close_arg);
    es__xcache_clear(&as->xc);
    free(as->conninfo);
    free(as);
  }
}

static void close_poll(es_async_t *as) {
  if (!as->poll)
    return;
  uv_close((uv_handle_t *)as->poll, on_handle_closed);
  as->poll = NULL;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void set_poll(es_async_t *as, int events) {
  int fd = PQsocket(as->conn);
  if (as->poll && as->poll_fd != fd)
    close_poll(as); /* the socket may change while connecting */
  if (!as->poll) {
    as->poll = malloc(sizeof *as->poll);
    if (!as->poll || uv_poll_init(as->loop, as->poll, fd)) {
      free(as->poll);
      as->poll = NULL;
      return;
    }
    as->poll->data = as;
    as->poll_fd = fd;
    as->handles++;
  }
  uv_poll_start(as->poll, events, on_poll);
}

static void drop_conn(es_async_t *as) {
  close_poll(as);
  if (as->conn)
    PQfinish(as->conn);
  as->conn = NULL;
  as->st = ST_DOWN;
  as->prepared = as->listened = 0;
}

static void complete(es_async_t *as, es__op_t *op) {
  /* the callback's es_async_last_error names this operation's failure
   * ("" when it succeeded), not an earlier one's */
  es__set_msg(as->msg, sizeof as->msg, "%s", op->status ? op->msg : "");
  size_t n = strlen(as->msg);
  while (n && as->msg[n - 1] == '\n')
    as->msg[--n] = '\0';
  if (op->kind == ES__OP_BATCH) {
    op->batch_cb(as, op->batch, op->status, op->arg);
  } else if (op->kind == ES__OP_MEMBER) {
    op->member_cb(as, op->status, op->from_version,
                  op->status ? 0 : op->from.tx, op->arg);
  } else {
    if (op->kind == ES__OP_READ_MEMBER && !op->status)
      as->member_full = op->member_full;
    es_page_t *page = op->status ? NULL : op->page;
    if (page)
      op->page = NULL;
    op->read_cb(as, op->status, page, op->arg);
  }
  es__op_free(op);
  free(op);
}

/* Fail the running op (if any) and, when queued_too, every queued one
 * with status. */
static void fail_all(es_async_t *as, int status, int queued_too) {
  es__op_t *list = queued_too ? as->head : NULL;
  if (queued_too)
    as->head = as->tail = NULL;
  es__op_t *cur = as->cur;
  as->cur = NULL;
  if (cur) {
    cur->status = 0;
    es__op_fail(cur, status, as->msg);
    complete(as, cur);
  }
  while (list) {
    es__op_t *next = list->qnext;
    es__op_fail(list, status, as->msg);
    complete(as, list);
    list = next;
  }
}

static void lost(es_async_t *as, const char *why) {
  es__set_msg(as->msg, sizeof as->msg, "connection lost: %s",
              why ? why : (as->conn ? PQerrorMessage(as->conn) : ""));
  int had_op = as->cur != NULL;
  drop_conn(as);
  fail_all(as, ES_ERR_CONNECTION, 0);
  if (!as->closing && !had_op && as->hooks.on_lost)
    as->hooks.on_lost(as, as->hooks.arg);
  if (!as->closing)
    uv_timer_start(&as->kick, on_kick, 0, 0);
}

static void flush(es_async_t *as) {
  int r = PQflush(as->conn);
  if (r < 0)
    lost(as, NULL);
  else
    set_poll(as, r ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

static void drain_notifies(es_async_t *as) {
  PGnotify *n;
  int any = 0;
  while ((n = PQnotifies(as->conn))) {
    any = 1;
    PQfreemem(n);
  }
  if (any && as->hooks.on_notify)
    as->hooks.on_notify(as, as->hooks.arg);
}

static void read_results(es_async_t *as) {
  int nulls = 0;
  while (as->cur && as->conn && !PQisBusy(as->conn)) {
    PGresult *r = PQgetResult(as->conn);
    if (!r) {
      if (++nulls > 1)
        break;
      continue;
    }
    nulls = 0;
    if (PQresultStatus(r) == PGRES_FATAL_ERROR &&
        es__map_error(as->conn, r) == ES_ERR_CONNECTION) {
      char why[ES_ERRBUF_SIZE];
      es__set_msg(why, sizeof why, "%s", PQresultErrorMessage(r));
      PQclear(r);
      lost(as, why);
      return;
    }
    es__op_t *op = as->cur;
    int done = es__op_result(op, r);
    if (done == ES__OP_AGAIN) {
      if (es__op_send(as->conn, op, 0, 0)) {
        lost(as, op->msg);
        return;
      }
      flush(as);
      if (!as->conn)
        return;
      continue;
    }
    if (done) {
      as->cur = NULL;
      if (as->prep_inflight && !op->prep_failed)
        as->prepared = 1;
      if (op->xprep_failed)
        as->prepared = 0;
      if (as->listen_inflight && !op->prep_failed && !op->status)
        as->listened = 1;
      as->prep_inflight = as->listen_inflight = 0;
      complete(as, op);
      if (!as->closing)
        process(as);
      return;
    }
  }
}

static void on_connected(es_async_t *as) {
  if (!PQenterPipelineMode(as->conn)) {
    lost(as, "could not enter pipeline mode");
    return;
  }
  as->st = ST_READY;
  set_poll(as, UV_READABLE);
  process(as);
}

static void connect_step(es_async_t *as) {
  switch (PQconnectPoll(as->conn)) {
  case PGRES_POLLING_READING:
    set_poll(as, UV_READABLE);
    break;
  case PGRES_POLLING_WRITING:
    set_poll(as, UV_WRITABLE);
    break;
  case PGRES_POLLING_OK:
    on_connected(as);
    break;
  default:
    es__set_msg(as->msg, sizeof as->msg,
                "could not connect to the database: %s",
                PQerrorMessage(as->conn));
    drop_conn(as);
    fail_all(as, ES_ERR_CONNECTION, 1);
    break;
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  es_async_t *as = h->data;
  if (as->closing || !as->conn || h != as->poll)
    return;
  if (as->st == ST_CONNECTING) {
    connect_step(as);
    return;
  }
  if (status < 0) {
    lost(as, uv_strerror(status));
    return;
  }
  if (events & UV_WRITABLE) {
    flush(as);
    if (!as->conn)
      return;
  }
  if (events & UV_READABLE) {
    if (!PQconsumeInput(as->conn)) {
      lost(as, NULL);
      return;
    }
    read_results(as);
    if (!as->conn || as->closing)
      return;
    drain_notifies(as);
    if (as->conn && !as->cur && PQstatus(as->conn) == CONNECTION_BAD)
      lost(as, NULL);
  }
}

static void start_connect(es_async_t *as) {
  as->conn = PQconnectStart(as->conninfo);
  es__quiet(as->conn);
  if (!as->conn || PQstatus(as->conn) == CONNECTION_BAD ||
      PQsetnonblocking(as->conn, 1)) {
    es__set_msg(as->msg, sizeof as->msg,
                "could not connect to the database: %s",
                as->conn ? PQerrorMessage(as->conn) : "out of memory");
    drop_conn(as);
    fail_all(as, ES_ERR_CONNECTION, 1);
    return;
  }
  as->st = ST_CONNECTING;
  set_poll(as, UV_WRITABLE);
}

static void process(es_async_t *as) {
  if (as->closing)
    return;
  if (as->st == ST_DOWN && (as->head || as->listen)) {
    start_connect(as);
    return;
  }
  if (as->st != ST_READY || as->cur || !as->head)
    return;
  es__op_t *op = as->head;
  as->head = op->qnext;
  if (!as->head)
    as->tail = NULL;
  as->cur = op;
  op->xc = &as->xc;
  as->prep_inflight = !as->prepared;
  as->listen_inflight = as->listen && !as->listened;
  if (es__op_send(as->conn, op, as->prep_inflight, as->listen_inflight)) {
    lost(as, op->msg);
    return;
  }
  flush(as);
}

static int submit(es_async_t *as, es__op_t *op, void *arg) {
  op->arg = arg;
  op->qnext = NULL;
  if (as->tail)
    as->tail->qnext = op;
  else
    as->head = op;
  as->tail = op;
  uv_timer_start(&as->kick, on_kick, 0, 0);
  return 0;
}

int es_async_open(uv_loop_t *loop, const char *conninfo,
                  const es_store_opts_t *opts, es_async_t **out, char *errbuf,
                  size_t errlen) {
  if (!loop || !conninfo || !out) {
    es__set_msg(errbuf, errlen, "async store: %s is NULL",
                !loop ? "loop" : !conninfo ? "conninfo" : "out");
    return ES_ERR_INVALID;
  }
  int bad = es__conninfo_check(conninfo, errbuf, errlen);
  if (bad)
    return bad;
  es_async_t *as = calloc(1, sizeof *as);
  if (!as || !(as->conninfo = strdup(conninfo))) {
    free(as);
    return ES_ERR_NOMEM;
  }
  as->loop = loop;
  if (opts)
    as->opts = *opts;
  else
    es_store_opts_init(&as->opts);
  uv_timer_init(loop, &as->kick);
  as->kick.data = as;
  as->handles = 1;
  start_connect(as);
  *out = as;
  return 0;
}

void es__async_set_hooks(es_async_t *as, const es__async_hooks_t *hooks) {
  as->hooks = *hooks;
  as->listen = hooks->listen;
}

void es_async_close(es_async_t *as, es_async_close_cb close_cb, void *arg) {
  if (!as || as->closing)
    return;
  as->closing = 1;
  as->close_cb = close_cb;
  as->close_arg = arg;
  drop_conn(as);
  /* The running operation was sent: the server may still carry it out
   * (a batch whose statements it has may commit after the connection is
   * gone), so its outcome is unknown -- CONNECTION, as when the
   * connection drops -- not CANCELLED. The queued ones never left. */
  if (as->cur) {
    es__set_msg(as->msg, sizeof as->msg,
                "closed while it ran: its outcome is unknown");
    fail_all(as, ES_ERR_CONNECTION, 0);
  }
  es__set_msg(as->msg, sizeof as->msg, "closed");
  fail_all(as, ES_ERR_CANCELLED, 1);
  uv_close((uv_handle_t *)&as->kick, on_handle_closed);
}

const char *es_async_last_error(const es_async_t *as) {
  return as ? as->msg : "";
}

int es_async_batch(es_async_t *as, es_batch_t *b, es_batch_cb cb, void *arg) {
  if (!as)
    return ES_ERR_INVALID;
  if (as->closing) {
    es__set_msg(as->msg, sizeof as->msg, "the handle is closing");
    return ES_ERR_BUSY;
  }
  if (!b || !cb || (b->n_streams == 0 && b->n_stmts == 0)) {
    es__set_msg(as->msg, sizeof as->msg, "%s",
                !b    ? "batch is required"
                : !cb ? "a callback is required"
                      : "empty batch: it holds no append and no statement");
    return ES_ERR_INVALID;
  }
  es__op_t *op = calloc(1, sizeof *op);
  if (!op)
    return ES_ERR_NOMEM;
  for (size_t i = 0; i < b->n_streams; i++)
    b->results[i] = (es_append_result_t){0, 0, 0, 0};
  op->kind = ES__OP_BATCH;
  op->batch = b;
  op->notify = as->opts.notify;
  op->batch_cb = cb;
  return submit(as, op, arg);
}

/* A zeroed op for a submit call, or NULL with *rc set (INVALID without a
 * handle or callback, BUSY when closing, NOMEM). */
static es__op_t *new_op(es_async_t *as, int has_cb, int *rc) {
  *rc = !as           ? ES_ERR_INVALID
        : as->closing ? ES_ERR_BUSY
        : !has_cb     ? ES_ERR_INVALID
                      : 0;
  es__op_t *op = *rc ? NULL : calloc(1, sizeof *op);
  if (!*rc && !op)
    *rc = ES_ERR_NOMEM;
  if (as && *rc)
    es__set_msg(as->msg, sizeof as->msg, "%s",
                *rc == ES_ERR_BUSY      ? "the handle is closing"
                : *rc == ES_ERR_INVALID ? "a callback is required"
                                        : "out of memory");
  return op;
}

static int submit_read(es_async_t *as, es__op_t *op, int rc, es_read_cb cb,
                       void *arg) {
  if (rc) {
    es__set_msg(as->msg, sizeof as->msg, "%s", op->msg);
    es__op_free(op);
    free(op);
    return rc;
  }
  if (cb)
    op->read_cb = cb;
  return submit(as, op, arg);
}

int es_async_read_stream(es_async_t *as, const char *stream_id,
                         int64_t from_version, size_t max, es_read_cb cb,
                         void *arg) {
  int rc;
  es__op_t *op = new_op(as, cb != NULL, &rc);
  if (!op)
    return rc;
  return submit_read(as, op,
                     es__op_read_stream(op, stream_id, from_version, max), cb,
                     arg);
}

int es_async_read_all(es_async_t *as, es_pos_t from, const es_filter_t *filter,
                      size_t max, es_read_cb cb, void *arg) {
  int rc;
  es__op_t *op = new_op(as, cb != NULL, &rc);
  if (!op)
    return rc;
  return submit_read(as, op, es__op_read_all(op, from, filter, max), cb, arg);
}

int es_async_group_read(es_async_t *as, const char *group,
                        const char *category, int member, int members,
                        size_t max, es_read_cb cb, void *arg) {
  int rc;
  es__op_t *op = new_op(as, cb != NULL, &rc);
  if (!op)
    return rc;
  return submit_read(
      as, op, es__op_read_group(op, group, category, member, members, max),
      cb, arg);
}

int es_async_member_read(es_async_t *as, const char *group,
                         const char *category, int64_t member_id, size_t max,
                         es_read_cb cb, void *arg) {
  int rc;
  es__op_t *op = new_op(as, cb != NULL, &rc);
  if (!op)
    return rc;
  op->member_full = as->member_full;
  return submit_read(
      as, op, es__op_read_member(op, group, category, member_id, max), cb,
      arg);
}

/* Join (which 0, member_id 0: a new random id), renew (1) or leave (2). */
static int member_op(es_async_t *as, int which, const char *group,
                     int64_t member_id, unsigned lease_ms, es_member_cb cb,
                     void *arg) {
  int rc;
  es__op_t *op = new_op(as, cb != NULL, &rc);
  if (!op)
    return rc;
  if (which == 0 && (member_id = es__member_id()) <= 0)
    member_id = 0; /* refused below: no randomness */
  op->member_cb = cb;
  return submit_read(as, op,
                     es__op_member(op, which, group, member_id, lease_ms),
                     NULL, arg);
}

int es_async_group_join(es_async_t *as, const char *group, unsigned lease_ms,
                        es_member_cb cb, void *arg) {
  return member_op(as, 0, group, 0, lease_ms, cb, arg);
}

int es_async_group_renew(es_async_t *as, const char *group, int64_t member_id,
                         unsigned lease_ms, es_member_cb cb, void *arg) {
  return member_op(as, 1, group, member_id, lease_ms, cb, arg);
}

int es_async_group_leave(es_async_t *as, const char *group, int64_t member_id,
                         es_member_cb cb, void *arg) {
  return member_op(as, 2, group, member_id, 0, cb, arg);
}
