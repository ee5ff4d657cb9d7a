/* Sagas through the public client library (bench_library.h). Everything
 * runs on one libuv loop, as in a service: the starter's producer and
 * notification reader, and a participant with the PostgreSQL effect store
 * serving every step topic. A saga is started when the previous one's
 * outcome arrives, so each one runs alone. */
#include "bench_library.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <uv.h>

#include "saga/client.h"

typedef struct {
  const bench_library_opts_t *o;
  uv_loop_t loop;
  saga_starter_t *st;
  saga_participant_t *p;
  size_t n, next;  /* sagas to measure; next saga's index */
  size_t skip;     /* warm-up sagas still to run before measuring */
  size_t measured; /* sagas measured so far */
  int paused_first; /* o->pause ran after the warm-up */
  double t0;            /* start of the saga in flight */
  double *lat;
  int done, failed;
  char *err;
  size_t errlen;
  char *out; /* every DO's output */
  /* the effect store's time, wrapped (timed_*): the inner store, and the
   * saga in flight's total from each call to its callback */
  saga_idem_store_t inner;
  double store_cur, *store_ms;
  /* BENCH_LIBRARY_TRACE=FILE (bench_library.h): the saga in flight's
   * wall-clock marks, written when its outcome arrives */
  FILE *trace;
  double tr[32];
  int ntr;
} run_t;

static double wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void mark(run_t *r) {
  if (r->trace && r->ntr < 32)
    r->tr[r->ntr++] = wall_ms();
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Stop the run (why NULL: every saga measured); the loop returns. */
static void stop(run_t *r, const char *why, int code) {
  if (why && !r->failed) {
    saga_participant_stats_t ps = {0};
    if (r->p)
      saga_participant_stats(r->p, &ps);
    r->failed = 1;
    snprintf(r->err, r->errlen,
             "%s (%s), saga %s%zu; the participant handled %llu commands, "
             "answered %llu from its store, %llu errors",
             why, saga_err_name(code), r->o->id_prefix,
             r->next ? r->next - 1 : 0, (unsigned long long)ps.handled,
             (unsigned long long)ps.duplicates,
             (unsigned long long)ps.errors);
  }
  r->done = 1;
  uv_stop(&r->loop);
}

static void on_command(saga_participant_t *p, const saga_command_t *c,
                       saga_pending_t *pending, void *arg) {
  run_t *r = arg;
  (void)p;
  mark(r);
  int do_ = c->action == SAGA_ACTION_DO;
  int rc = saga_participant_done(pending, SAGA_OUTCOME_SUCCESS,
                                 do_ ? r->out : NULL,
                                 do_ ? r->o->output_bytes : 0, NULL);
  if (rc != 0)
    stop(r, "the participant could not reply", rc);
}

static void start_next(run_t *r);

/* The effect store, timed: each lookup and record from the call to its
 * callback, added to the saga in flight's total (one saga at a time). */
typedef struct {
  run_t *r;
  double t0;
  saga_store_lookup_cb lcb;
  saga_store_record_cb rcb;
  void *arg;
} timed_call_t;

static timed_call_t *timed_begin(run_t *r, void *arg) {
  timed_call_t *t = malloc(sizeof *t);
  if (t)
    *t = (timed_call_t){.r = r, .t0 = now_ms(), .arg = arg};
  return t;
}

static void timed_looked_up(void *arg, int err, int found,
                            const saga_recorded_reply_t *reply) {
  timed_call_t *t = arg;
  t->r->store_cur += now_ms() - t->t0;
  mark(t->r);
  saga_store_lookup_cb cb = t->lcb;
  void *a = t->arg;
  free(t);
  cb(a, err, found, reply);
}

static void timed_lookup(void *ctx, const char *key, saga_store_lookup_cb cb,
                         void *arg) {
  run_t *r = ctx;
  mark(r);
  timed_call_t *t = timed_begin(r, arg);
  if (!t) {
    cb(arg, SAGA_ENOMEM, 0, NULL);
    return;
  }
  t->lcb = cb;
  r->inner.lookup(r->inner.ctx, key, timed_looked_up, t);
}

static void timed_recorded(void *arg, int err) {
  timed_call_t *t = arg;
  t->r->store_cur += now_ms() - t->t0;
  mark(t->r);
  saga_store_record_cb cb = t->rcb;
  void *a = t->arg;
  free(t);
  cb(a, err);
}

static void timed_record(void *ctx, const char *key,
                         const saga_recorded_reply_t *rep,
                         saga_store_record_cb cb, void *arg) {
  run_t *r = ctx;
  mark(r);
  timed_call_t *t = timed_begin(r, arg);
  if (!t) {
    cb(arg, SAGA_ENOMEM);
    return;
  }
  t->rcb = cb;
  r->inner.record(r->inner.ctx, key, rep, timed_recorded, t);
}

static void timed_destroy(void *ctx) {
  run_t *r = ctx;
  if (r->inner.destroy)
    r->inner.destroy(r->inner.ctx);
}

static void on_outcome(saga_starter_t *s, int err,
                       const saga_notification_t *n, void *arg) {
  run_t *r = arg;
  (void)s;
  if (r->done)
    return;
  if (err || !n || n->kind != SAGA_NOTIFY_COMPLETED) {
    stop(r, "a saga did not complete within 30 s", err);
    return;
  }
  size_t i = r->next - 1;
  mark(r);
  if (r->skip > 0) { /* a warm-up saga */
    if (--r->skip == 0 && r->measured == 0 && !r->paused_first &&
        r->o->pause) { /* the first pause: between warm-up and line */
      r->paused_first = 1;
      r->o->pause(r->o->pause_arg);
      r->skip = r->o->rewarm;
    }
    start_next(r);
    return;
  }
  size_t k = r->measured++;
  if (r->trace) {
    fprintf(r->trace, "%s%zu", r->o->id_prefix, i);
    for (int t = 0; t < r->ntr; t++)
      fprintf(r->trace, " %.3f", r->tr[t]);
    fprintf(r->trace, "\n");
  }
  r->lat[k] = now_ms() - r->t0;
  if (r->store_ms)
    r->store_ms[k] = r->store_cur;
  if (r->measured == r->n) {
    stop(r, NULL, 0);
    return;
  }
  if (r->o->pause && r->o->pause_every &&
      r->measured % r->o->pause_every == 0) {
    r->o->pause(r->o->pause_arg);
    r->skip = r->o->rewarm;
  }
  start_next(r);
}

static void on_started(saga_starter_t *s, int err, const char *saga_id,
                       void *arg) {
  run_t *r = arg;
  if (r->done)
    return;
  if (err) {
    stop(r, "StartSaga was not delivered", err);
    return;
  }
  mark(r);
  int rc = saga_starter_await(s, saga_id, 30000, on_outcome, r);
  if (rc != 0)
    stop(r, "saga_starter_await failed", rc);
}

static void start_next(run_t *r) {
  char id[64], input[96], got[SAGA_MAX_ID + 1];
  snprintf(id, sizeof id, "%s%zu", r->o->id_prefix, r->next);
  int len = snprintf(input, sizeof input,
                     "{\"order\":\"%s\",\"amount\":4200}", id);
  saga_start_request_t req = {.saga_type = r->o->saga_type,
                              .saga_id = id,
                              .input = input,
                              .input_len = (size_t)len};
  r->next++;
  r->store_cur = 0;
  r->ntr = 0;
  mark(r);
  r->t0 = now_ms();
  int rc = saga_starter_start(r->st, &req, got, sizeof got, on_started, r);
  if (rc != 0)
    stop(r, "saga_starter_start failed", rc);
}

static void closed(void *arg) { (void)arg; }

/* n recorded replies under keys no saga uses, then ANALYZE. */
static int give_history(PGconn *pg, size_t n, char *why, size_t len) {
  char sql[400];
  snprintf(sql, sizeof sql,
           "INSERT INTO saga_idempotency (key, outcome, payload, attempt) "
           "SELECT 'history:' || g, 1, convert_to(repeat('x', 200), 'UTF8'), "
           "1 FROM generate_series(1, %zu) g ON CONFLICT DO NOTHING",
           n);
  const char *const stmts[] = {sql, "ANALYZE saga_idempotency"};
  for (size_t i = 0; i < 2; i++) {
    PGresult *res = PQexec(pg, stmts[i]);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
      snprintf(why, len, "%s", PQresultErrorMessage(res));
    PQclear(res);
    if (!ok)
      return -1;
  }
  return 0;
}

int bench_library_c1(const bench_library_opts_t *o, size_t warm, size_t n,
                     double *lat_ms, double *store_ms, char *err,
                     size_t errlen) {
  run_t r = {.o = o, .skip = warm, .n = n, .lat = lat_ms, .err = err,
             .errlen = errlen, .store_ms = store_ms};
  char why[512] = "";
  PGconn *pg = PQconnectdb(o->pg_conninfo);
  if (PQstatus(pg) != CONNECTION_OK) {
    snprintf(err, errlen, "effect store: %s", PQerrorMessage(pg));
    PQfinish(pg);
    return -1;
  }
  r.out = malloc(o->output_bytes + 1);
  if (!r.out || uv_loop_init(&r.loop) != 0) {
    snprintf(err, errlen, "out of memory");
    free(r.out);
    PQfinish(pg);
    return -1;
  }
  /* {"ref":"xxx...x"}, output_bytes long */
  memset(r.out, 'x', o->output_bytes);
  if (o->output_bytes >= 10) {
    memcpy(r.out, "{\"ref\":\"", 8);
    memcpy(r.out + o->output_bytes - 2, "\"}", 2);
  }
  saga_idem_store_t store;
  saga_kafka_config_t kc = {.bootstrap_servers = o->bootstrap,
                            .properties = o->kafka_props};
  saga_participant_config_t pc = {.kafka = kc, .group_id = o->group};
  saga_starter_config_t sc = {.kafka = kc,
                              .inbox_topic = o->inbox,
                              .notifications_topic = o->notifications};
  int rc = saga_idem_store_pg(pg, &store, why, sizeof why);
  if (rc != 0) {
    snprintf(err, errlen, "effect store: %s", why);
    goto out;
  }
  r.inner = store;
  if (o->store_history && give_history(pg, o->store_history, why,
                                       sizeof why) != 0) {
    store.destroy(store.ctx);
    snprintf(err, errlen, "effect store: %s", why);
    rc = -1;
    goto out;
  }
  pc.store = (saga_idem_store_t){.ctx = &r,
                                 .lookup = timed_lookup,
                                 .record = timed_record,
                                 .destroy = timed_destroy};
  rc = saga_participant_new(&r.loop, &pc, &r.p, why, sizeof why);
  if (rc != 0) {
    if (store.destroy)
      store.destroy(store.ctx);
    snprintf(err, errlen, "participant: %s", why);
    goto out;
  }
  for (size_t i = 0; i < o->nsteps && rc == 0; i++)
    rc = saga_participant_handle(r.p, o->step_topics[i], on_command, &r);
  if (rc == 0)
    rc = saga_participant_start(r.p, why, sizeof why);
  if (rc == 0)
    rc = saga_starter_new(&r.loop, &sc, &r.st, why, sizeof why);
  if (rc != 0) {
    snprintf(err, errlen, "client library: %s (%s)", why,
             saga_err_name(rc));
    goto out;
  }
  const char *trace = getenv("BENCH_LIBRARY_TRACE");
  if (trace && *trace && !(r.trace = fopen(trace, "w"))) {
    snprintf(err, errlen, "%s: cannot write the trace", trace);
    rc = -1;
    goto out;
  }
  start_next(&r);
  if (!r.done)
    uv_run(&r.loop, UV_RUN_DEFAULT);
  if (!r.done)
    snprintf(err, errlen, "the loop ended before the sagas did");
  rc = r.done && !r.failed ? 0 : -1;
out:
  saga_starter_close(r.st, closed, NULL);
  saga_participant_close(r.p, closed, NULL);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  (void)uv_loop_close(&r.loop);
  free(r.out);
  PQfinish(pg);
  if (r.trace) {
    /* and sagad's appends of those sagas: when each statement began */
    PGconn *c = PQconnectdb(o->pg_conninfo);
    char q[256];
    snprintf(q, sizeof q,
             "SELECT stream_id, stream_version, event_type, extract(epoch"
             " FROM recorded_at) * 1000 FROM es_events WHERE stream_id"
             " LIKE 'saga-%s%%' ORDER BY global_position",
             o->id_prefix);
    PGresult *res = PQexec(c, q);
    for (int i = 0; PQresultStatus(res) == PGRES_TUPLES_OK &&
                    i < PQntuples(res); i++)
      fprintf(r.trace, "E %s %s %s %s\n", PQgetvalue(res, i, 0),
              PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
              PQgetvalue(res, i, 3));
    PQclear(res);
    PQfinish(c);
    fclose(r.trace);
  }
  return rc == 0 ? 0 : -1;
}
