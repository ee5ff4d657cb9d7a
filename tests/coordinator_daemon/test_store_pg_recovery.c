/* The PostgreSQL store port (coordinator/io/store_pg.c) against the
 * embedded PostgreSQL. Its recovery load: every record of the open sagas of
 * the asked partitions, stream by stream in version order (each saga's
 * records together, never a saga met again after another's), none of a
 * terminal saga or of another partition, also where the database would
 * plan the read with parallel workers; and a recovery larger than one
 * chunk is handed over in several loop turns (the loop serves other events
 * between chunks) rather than all rows at once after a single read. Its
 * batches: the delivered final notifications a batch carries clear their
 * sagas' notify_pending flags -- one saga's by its own statement, several
 * sagas' by one array, ids with quotes and backslashes as they are -- and
 * no other saga's, found by their ids and not through the partial index
 * of flags that holds an entry for every saga finished since a vacuum; a
 * batch of one saga writes its saga_index row (its own statement, scalar
 * parameters) as a batch of several writes theirs (one array per column),
 * updates it for a later version, and leaves it when its stream
 * conflicted. Its reads run without PostgreSQL's JIT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "saga/eventstore.h"
#include "shell.h"
#include "test_support.h"

#define NSAGAS 3000 /* open ones, 2 records each: more than one chunk */
#define NSAGAS_SLOW 10000 /* enough rows to keep the read's statement
                             waiting on its socket while they replay */
#define NSTREAM 2

typedef struct ctx {
  long turns; /* loop iterations (a uv_check handle) */
  long turns_at_first, turns_at_last;
  size_t records;
  char last_id[64];
  int64_t last_version;
  unsigned char seen[NSAGAS_SLOW]; /* open sagas whose records began */
  long slow_us; /* each record's replay takes this long */
  int bad; /* a record out of order, unexpected or with the wrong data */
  char why[200];
  int done, status;
} ctx_t;

static void on_check(uv_check_t *h) { ((ctx_t *)h->data)->turns++; }

static int on_record(void *arg, const char *id, int32_t partition,
                     int64_t version, const uint8_t *data, size_t len) {
  ctx_t *c = arg;
  if (c->slow_us)
    nanosleep(&(struct timespec){.tv_nsec = c->slow_us * 1000}, NULL);
  if (c->records == 0)
    c->turns_at_first = c->turns;
  c->turns_at_last = c->turns;
  c->records++;
  /* open sagas are "o<5 digits>", terminal ones "t...": partition = n % 2 */
  long n = atol(id + 1);
  char want[64];
  snprintf(want, sizeof want, "%s/%lld", id, (long long)version);
  /* the same saga goes on in version order; another one begins at its
   * first record and was not met before */
  int same = strcmp(id, c->last_id) == 0;
  int met_before = n >= 0 && n < NSAGAS_SLOW && !same && c->seen[n];
  if (n >= 0 && n < NSAGAS_SLOW)
    c->seen[n] = 1;
  if (!c->bad && (id[0] != 'o' || partition != (int32_t)(n % 2) ||
                  met_before || (same && version != c->last_version + 1) ||
                  (!same && version != 1) || len != strlen(want) ||
                  memcmp(data, want, len) != 0)) {
    c->bad = 1;
    snprintf(c->why, sizeof c->why, "record %s v%lld (partition %d) after "
             "%s v%lld", id, (long long)version, (int)partition, c->last_id,
             (long long)c->last_version);
  }
  snprintf(c->last_id, sizeof c->last_id, "%s", id);
  c->last_version = version;
  return 0;
}

static void on_done(void *arg, int status) {
  ctx_t *c = arg;
  c->done++;
  c->status = status;
}

static void on_closed(void *arg) { *(int *)arg = 1; }

/* A store port on database ci and *loop. */
static sagad_store_pg_t *store_open_on(const char *ci, uv_loop_t *loop,
                                       sagad_store_port_t *port) {
  uv_loop_init(loop);
  sagad_store_pg_t *s = NULL;
  char err[512];
  if (sagad_store_pg_open(loop, ci, "test.inbox", "test.group", &s, port,
                          err, sizeof err))
    fail_msg("%s", err);
  return s;
}

/* A store port on a new database (*ci) and *loop. */
static sagad_store_pg_t *store_open(const char *prefix, char **ci,
                                    uv_loop_t *loop, sagad_store_port_t *port) {
  *ci = ts_pg_create_database(prefix);
  return store_open_on(*ci, loop, port);
}

/* Close the port, the loop and drop the database. */
static void store_close(sagad_store_pg_t *s, char *ci, uv_loop_t *loop) {
  int closed = 0;
  sagad_store_pg_close(s, on_closed, &closed);
  int64_t until = ts_now_ms() + ts_timeout_ms(20000);
  while (!closed && ts_now_ms() < until)
    uv_run(loop, UV_RUN_ONCE);
  assert_true(closed);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
  ts_pg_drop_database(ci);
}

static void exec_ok(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

/* Streams "saga-<id>" of NSTREAM events each, data "<id>/<version>". */
static void write_streams(const char *ci, char kind, int from, int to) {
  es_store_t *es = NULL;
  char err[256];
  if (es_store_open(ci, NULL, &es, err, sizeof err))
    fail_msg("%s", err);
  es_batch_t *b = es_batch_new(NULL);
  assert_non_null(b);
  for (int i = from; i < to; i++) {
    char id[32], stream[40], data[NSTREAM][64];
    snprintf(id, sizeof id, "%c%05d", kind, i);
    snprintf(stream, sizeof stream, "saga-%s", id);
    es_event_t ev[NSTREAM];
    memset(ev, 0, sizeof ev);
    for (int v = 0; v < NSTREAM; v++) {
      snprintf(data[v], sizeof data[v], "%s/%d", id, v + 1);
      ev[v].type = "Test";
      ev[v].data = data[v];
      ev[v].data_len = strlen(data[v]);
    }
    assert_true(es_batch_add(b, stream, 0, ev, NSTREAM) >= 0);
    if (es_batch_size(b) == 500 || i + 1 == to) {
      if (es_batch_execute(es, b) != 0)
        fail_msg("%s", es_store_last_error(es));
      es_batch_reset(b);
    }
  }
  es_batch_free(b);
  es_store_close(es);
}

/* Sessions of database ci plan with parallel workers wherever they can:
 * no cost for starting them or for passing rows, any table big enough. */
static void plan_parallel(const char *ci) {
  PGconn *pg = PQconnectdb(ci);
  assert_int_equal(PQstatus(pg), CONNECTION_OK);
  static const char *const settings[] = {
      "parallel_setup_cost = 0", "parallel_tuple_cost = 0",
      "min_parallel_table_scan_size = 0", "min_parallel_index_scan_size = 0",
      "max_parallel_workers_per_gather = 4"};
  for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
    char sql[200];
    snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" SET %s", PQdb(pg),
             settings[i]);
    exec_ok(pg, sql);
  }
  PQfinish(pg);
}

/* How check_recovery's database and replay are set. */
enum { PLAIN, PARALLEL, TIMEOUT_AND_SLOW };

/* NSAGAS open sagas (and 100 terminal ones) of partitions 0 and 1, one of
 * them moved to partition 2, recovered for partitions 0 and 1 on a store
 * on a new database. PARALLEL: the database plans with parallel workers
 * where it can (plan_parallel) and has fresh statistics. TIMEOUT_AND_SLOW:
 * NSAGAS_SLOW sagas, the database's statement_timeout is 300 ms and each
 * record's replay takes 0.05 ms (1 s in all), so the read's statement,
 * whose rows the replay reads no faster than that, lasts past the
 * timeout. */
static void check_recovery(const char *prefix, int mode) {
  int parallel = mode == PARALLEL;
  int nsagas = mode == TIMEOUT_AND_SLOW ? NSAGAS_SLOW : NSAGAS;
  char *ci = ts_pg_create_database(prefix);
  if (parallel)
    plan_parallel(ci);
  uv_loop_t loop;
  sagad_store_port_t port;
  sagad_store_pg_t *s = store_open_on(ci, &loop, &port);
  write_streams(ci, 'o', 0, nsagas);
  write_streams(ci, 't', 0, 100);
  PGconn *pg = PQconnectdb(ci);
  assert_int_equal(PQstatus(pg), CONNECTION_OK);
  char sql[600];
  snprintf(sql, sizeof sql,
           "INSERT INTO saga_index (saga_id, saga_type, definition_version, "
           "status, partition, version, started_at, updated_at) "
           "SELECT 'o' || lpad(i::text, 5, '0'), 't', 1, 'running', i %% 2, "
           "%d, now(), now() FROM generate_series(0, %d) i "
           "UNION ALL SELECT 't' || lpad(i::text, 5, '0'), 't', 1, "
           "'completed', i %% 2, %d, now(), now() "
           "FROM generate_series(0, 99) i",
           NSTREAM, nsagas - 1, NSTREAM);
  exec_ok(pg, sql);
  /* a third partition, not asked for */
  exec_ok(pg, "UPDATE saga_index SET partition = 2 WHERE saga_id = 'o00007'");
  if (parallel)
    exec_ok(pg, "ANALYZE");
  if (mode == TIMEOUT_AND_SLOW) {
    snprintf(sql, sizeof sql,
             "ALTER DATABASE \"%s\" SET statement_timeout = '300ms'",
             PQdb(pg));
    exec_ok(pg, sql);
    /* the store's reads' connection was made before: make it again */
    exec_ok(pg, "SELECT pg_terminate_backend(pid, 10000) FROM "
                "pg_stat_activity WHERE datname = current_database() AND "
                "pid <> pg_backend_pid()");
  }
  PQfinish(pg);

  ctx_t c = {.slow_us = mode == TIMEOUT_AND_SLOW ? 50 : 0};
  uv_check_t check;
  uv_check_init(&loop, &check);
  check.data = &c;
  uv_check_start(&check, on_check);
  const int32_t parts[] = {0, 1};
  assert_int_equal(port.load_partitions(port.self, parts, 2, on_record,
                                        on_done, &c),
                   0);
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (!c.done && ts_now_ms() < until)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(c.done, 1);
  assert_int_equal(c.status, 0);
  if (c.bad)
    fail_msg("%s", c.why);
  assert_int_equal(c.records, (size_t)(nsagas - 1) * NSTREAM);
  /* handed over in several turns of the loop, not all at once */
  assert_true(c.turns_at_last > c.turns_at_first);

  uv_check_stop(&check);
  uv_close((uv_handle_t *)&check, NULL);
  store_close(s, ci, &loop);
}

static void test_recovery_is_every_open_record_in_order_over_several_turns(
    void **state) {
  (void)state;
  check_recovery("store_recovery", PLAIN);
}

/* The read keeps each saga's records together also where PostgreSQL would
 * run it with parallel workers, whose rows a Gather interleaves. */
static void test_recovery_is_stream_by_stream_where_plans_go_parallel(
    void **state) {
  (void)state;
  check_recovery("store_recovery_par", PARALLEL);
}

/* A recovery's read is one statement that lasts as long as the replay of
 * what it reads: a role's or database's statement_timeout must not cut it
 * (a cut read ends the recovery, and sagad, at every start). */
static void test_recovery_outlasts_a_statement_timeout(void **state) {
  (void)state;
  check_recovery("store_recovery_slow", TIMEOUT_AND_SLOW);
}

/* Recovery's read is not compiled by PostgreSQL's JIT whatever the
 * database's default: its join over many open sagas is estimated past the
 * JIT thresholds, and compiling it cost more than running it. Also after
 * the connection was lost and made again. */
static void test_recovery_reads_without_jit_even_where_it_is_on(void **state) {
  (void)state;
  char *ci = ts_pg_create_database("store_nojit");
  PGconn *pg = PQconnectdb(ci);
  assert_int_equal(PQstatus(pg), CONNECTION_OK);
  char sql[300];
  snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" SET jit = on",
           PQdb(pg));
  exec_ok(pg, sql);
  uv_loop_t loop;
  uv_loop_init(&loop);
  sagad_store_port_t port;
  sagad_store_pg_t *s = NULL;
  char err[512], v[32] = "";
  if (sagad_store_pg_open(&loop, ci, "test.inbox", "test.group", &s, &port,
                          err, sizeof err))
    fail_msg("%s", err);
  /* a fresh session of this database has it on: the store turned it off */
  PGconn *other = PQconnectdb(ci);
  PGresult *r = PQexec(other, "SHOW jit");
  assert_string_equal(PQgetvalue(r, 0, 0), "on");
  PQclear(r);
  PQfinish(other);
  assert_int_equal(sagad_store_pg_reads_setting(s, "jit", v, sizeof v), 0);
  assert_string_equal(v, "off");
  /* and plans without parallel workers (recovery's rows stream by stream) */
  assert_int_equal(sagad_store_pg_reads_setting(
                       s, "max_parallel_workers_per_gather", v, sizeof v),
                   0);
  assert_string_equal(v, "0");
  /* and by the index's order, never a sort (planned on stale statistics,
   * recovery's join sorted each saga's records) */
  assert_int_equal(sagad_store_pg_reads_setting(s, "enable_sort", v, sizeof v),
                   0);
  assert_string_equal(v, "off");
  /* every other session of the database ended (waiting until each is
   * gone): the store's lanes and its reads' connection */
  exec_ok(pg, "SELECT pg_terminate_backend(pid, 10000) FROM "
              "pg_stat_activity WHERE datname = current_database() AND "
              "pid <> pg_backend_pid()");
  PQfinish(pg);
  /* the first read finds the session gone, the next one makes a new one */
  v[0] = '\0';
  assert_int_equal(sagad_store_pg_reads_setting(s, "jit", v, sizeof v), -1);
  assert_int_equal(sagad_store_pg_reads_setting(s, "jit", v, sizeof v), 0);
  assert_string_equal(v, "off");
  store_close(s, ci, &loop);
}

static long long scalar(PGconn *pg, const char *sql, const char *id) {
  const char *p[1] = {id};
  PGresult *r = PQexecParams(pg, sql, id ? 1 : 0, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    fail_msg("%s: %s", sql, PQresultErrorMessage(r));
  long long v = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  return v;
}

/* Whether saga id's notify_pending is set (fails when it has no row). */
static int pending(PGconn *pg, const char *id) {
  return (int)scalar(pg,
                     "SELECT notify_pending::int FROM saga_index "
                     "WHERE saga_id = $1",
                     id);
}

/* The engine the store reports to: its batch-done hook counts the
 * batches that ended (the engine itself has stepped nothing: its ports
 * below are never asked for anything but the time). */
static int batches_done, last_status = -1;
static void on_batch_done(void *arg, int status) {
  (void)arg;
  batches_done++;
  last_status = status;
}
static int64_t c_now(void *self) {
  (void)self;
  return ts_now_ms();
}
static void c_wake_at(void *self, int slot, int64_t at_ms) {
  (void)self, (void)slot, (void)at_ms;
}
static void c_end_of_turn(void *self) { (void)self; }
static int b_produce(void *self, const char *topic, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const saga__hdrs_t *hdrs, void *token) {
  (void)self, (void)topic, (void)key, (void)key_len, (void)value;
  (void)value_len, (void)hdrs, (void)token;
  fail_msg("the engine produced");
  return -1;
}
static void b_ack(void *self, void *ack) { (void)self, (void)ack; }

/* An engine on store s (its port *port) that only counts the batches
 * that ended: it steps nothing, so its other ports are never asked. */
static sagad_engine_t *engine_on(sagad_store_pg_t *s,
                                 const sagad_store_port_t *port,
                                 saga_registry_t **reg) {
  *reg = saga_registry_new();
  assert_non_null(*reg);
  sagad_engine_config_t cfg = {.registry = *reg,
                               .inbox_topic = "test.inbox",
                               .dlq_topic = "test.dlq",
                               .store = *port,
                               .broker = {.produce = b_produce, .ack = b_ack},
                               .clock = {.now_ms = c_now,
                                         .wake_at = c_wake_at,
                                         .end_of_turn = c_end_of_turn}};
  sagad_engine_t *e = sagad_engine_new(&cfg);
  assert_non_null(e);
  sagad_engine_hooks_t hooks = {.on_batch_done = on_batch_done};
  sagad_engine_set_hooks(e, &hooks);
  sagad_store_pg_attach(s, e);
  return e;
}

/* A store port on a new database with an engine on it, and a connection
 * of the test's own to that database. */
typedef struct {
  char *ci;
  uv_loop_t loop;
  sagad_store_port_t port;
  sagad_store_pg_t *s;
  saga_registry_t *reg;
  sagad_engine_t *e;
  PGconn *pg;
} fixture_t;

static void fixture_open(fixture_t *f, const char *prefix) {
  f->s = store_open(prefix, &f->ci, &f->loop, &f->port);
  f->e = engine_on(f->s, &f->port, &f->reg);
  f->pg = PQconnectdb(f->ci);
  assert_int_equal(PQstatus(f->pg), CONNECTION_OK);
}

static void fixture_close(fixture_t *f) {
  PQfinish(f->pg);
  store_close(f->s, f->ci, &f->loop);
  sagad_engine_free(f->e);
  saga_registry_free(f->reg);
}

/* Submit the batch built on port and run the loop until it has ended,
 * with the store's answer OK (per stream: batch_status). */
static void submit_and_wait(uv_loop_t *loop, sagad_store_port_t *port) {
  int before = batches_done;
  assert_int_equal(port->batch_submit(port->self), 0);
  int64_t until = ts_now_ms() + ts_timeout_ms(20000);
  while (batches_done == before && ts_now_ms() < until)
    uv_run(loop, UV_RUN_ONCE);
  assert_int_equal(batches_done, before + 1);
  assert_int_equal(last_status, SAGAD_STORE_OK);
}

/* One batch of the sagas rows[0..n), each one record after version
 * rows[i].version - 1 (expected[i] when expected is not NULL), submitted
 * and the loop run until it has ended; each stream's status in st. */
static void batch_rows(uv_loop_t *loop, sagad_store_port_t *port,
                       const sagad_index_row_t *rows, const int64_t *expected,
                       size_t n, int *st) {
  port->batch_reset(port->self);
  for (size_t i = 0; i < n; i++) {
    sagad_record_t rec = {
        .type = "Stepped", .data = (const uint8_t *)"x", .len = 1};
    assert_true(port->batch_add(port->self, rows[i].saga_id,
                                expected ? expected[i] : rows[i].version - 1,
                                &rec, 1) >= 0);
    assert_int_equal(port->batch_index(port->self, &rows[i]), 0);
  }
  submit_and_wait(loop, port);
  for (size_t i = 0; i < n; i++)
    st[i] = port->batch_status(port->self, i);
}

/* One batch: a new stream of one record for each of the sagas `ids`
 * (terminal, notify_pending set), then the delivered notifications of the
 * sagas `marks`; submitted, and the loop run until it has ended. */
static void batch(uv_loop_t *loop, sagad_store_port_t *port, PGconn *pg,
                  const char *const *ids, const char *const *marks) {
  port->batch_reset(port->self);
  for (size_t i = 0; ids[i]; i++) {
    sagad_record_t rec = {.type = "Started",
                          .data = (const uint8_t *)"x",
                          .len = 1};
    assert_true(port->batch_add(port->self, ids[i], 0, &rec, 1) >= 0);
    sagad_index_row_t row = {.saga_id = ids[i],
                             .saga_type = "t",
                             .definition_version = 1,
                             .status = "completed",
                             .partition = 0,
                             .version = 1,
                             .started_ms = 1796000000000,
                             .updated_ms = 1796000000000,
                             .notify_pending = 1};
    assert_int_equal(port->batch_index(port->self, &row), 0);
  }
  for (size_t i = 0; marks[i]; i++)
    assert_int_equal(port->batch_notified(port->self, marks[i]), 0);
  submit_and_wait(loop, port);
  for (size_t i = 0; ids[i]; i++) {
    assert_int_equal(port->batch_status(port->self, i), SAGAD_STORE_OK);
    assert_int_equal(
        scalar(pg, "SELECT count(*) FROM saga_index WHERE saga_id = $1",
               ids[i]),
        1);
  }
}

static void test_delivered_notifications_clear_their_sagas_flags_only(
    void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "store_batch");
  const char *quoted = "q\"1\\x", *comma = "c,{2}";
  const char *const first[] = {"a1", quoted, comma, "a4", NULL};
  const char *const none[] = {NULL};
  batch(&f.loop, &f.port, f.pg, first, none);
  for (size_t i = 0; first[i]; i++)
    assert_int_equal(pending(f.pg, first[i]), 1);
  /* one saga's notification delivered */
  const char *const second[] = {"b1", NULL}, *const one[] = {quoted, NULL};
  batch(&f.loop, &f.port, f.pg, second, one);
  assert_int_equal(pending(f.pg, quoted), 0);
  assert_int_equal(pending(f.pg, "a1"), 1);
  assert_int_equal(pending(f.pg, comma), 1);
  assert_int_equal(pending(f.pg, "b1"), 1);
  /* several at once, one of them already clear */
  const char *const third[] = {"b2", NULL};
  const char *const several[] = {"a1", comma, quoted, NULL};
  batch(&f.loop, &f.port, f.pg, third, several);
  assert_int_equal(pending(f.pg, "a1"), 0);
  assert_int_equal(pending(f.pg, comma), 0);
  assert_int_equal(pending(f.pg, quoted), 0);
  assert_int_equal(pending(f.pg, "a4"), 1);
  assert_int_equal(pending(f.pg, "b1"), 1);
  assert_int_equal(pending(f.pg, "b2"), 1);
  assert_int_equal(scalar(f.pg,
                          "SELECT count(*) FROM es_events WHERE stream_id "
                          "LIKE 'saga-%'",
                          NULL),
                   6);
  fixture_close(&f);
}

/* The delivered notifications' statement finds its sagas by their ids,
 * never through saga_index_notify_idx: that partial index keeps an entry
 * for every saga that finished until a vacuum (a cleared flag is a new row
 * version, the old entry stays), so a plan that walked it cost as many
 * entries as sagas had finished since -- 8.4 ms for 117 marks after 50,000
 * sagas, against 0.24 ms through the primary key, the statement being on
 * the batch's lane 0. After an ANALYZE that saw almost no flag set,
 * PostgreSQL took that plan for `AND notify_pending`. */
static void test_delivered_notifications_are_found_by_id_not_by_the_flag(
    void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "store_notified_plan");
  exec_ok(f.pg,
          "INSERT INTO saga_index (saga_id, saga_type, definition_version, "
          "status, partition, version, started_at, updated_at, "
          "notify_pending, stuck_at) SELECT 'd' || g, 't', 1, 'completed', "
          "0, 1, now(), now(), true, 'infinity' "
          "FROM generate_series(1, 50000) g");
  /* all but the last 100 delivered long ago */
  exec_ok(f.pg, "UPDATE saga_index SET notify_pending = false "
                "WHERE substr(saga_id, 2)::int <= 49900");
  exec_ok(f.pg, "ANALYZE saga_index");
  const char *ids[101];
  char names[100][16];
  for (int i = 0; i < 100; i++) {
    snprintf(names[i], sizeof names[i], "d%d", 49901 + i);
    ids[i] = names[i];
  }
  ids[100] = NULL;
  const char *const fresh[] = {"n1", NULL};
  batch(&f.loop, &f.port, f.pg, fresh, ids);
  /* The store's session reports its statistics once idle, within about
   * a second: wait for its 100 updates to show. */
  const char *updates = "SELECT n_tup_upd FROM pg_stat_user_tables "
                        "WHERE relname = 'saga_index'";
  int64_t until = ts_now_ms() + ts_timeout_ms(15000);
  while (scalar(f.pg, updates, NULL) < 49900 + 100 && ts_now_ms() < until)
    uv_sleep(50);
  assert_true(scalar(f.pg, updates, NULL) >= 49900 + 100);
  assert_int_equal(scalar(f.pg,
                          "SELECT idx_scan FROM pg_stat_user_indexes "
                          "WHERE indexrelname = 'saga_index_notify_idx'",
                          NULL),
                   0);
  /* (after: this count reads that index) */
  assert_int_equal(scalar(f.pg,
                          "SELECT count(*) FROM saga_index "
                          "WHERE notify_pending",
                          NULL),
                   1); /* n1's own */
  fixture_close(&f);
}

/* The array form of the delivered notifications' statement is planned for
 * its ids at every run, not prepared. Prepared, after five runs with
 * hundreds of ids (whose plans cost more than one for the ten ids a
 * generic plan assumes) PostgreSQL took its generic plan, made on a
 * saga_index of a page or two: a sequential scan testing each row against
 * the array, kept as the table grew (no ANALYZE in between, as in the saga
 * benchmark's fresh databases): 20-119 ms a call at 150,000 rows. Here:
 * eight batches of 200 marks on a small table, then 50,000 rows more, then
 * one more such batch, which must not scan the table. */
#define REPLAN_MARKS 200
static void test_delivered_notifications_are_planned_for_their_ids(
    void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "store_notified_replan");
  static char names[20][16], others[REPLAN_MARKS][16];
  for (int i = 0; i < 20; i++)
    snprintf(names[i], sizeof names[i], "r%d", i);
  for (int k = 0; k < REPLAN_MARKS; k++)
    snprintf(others[k], sizeof others[k], "gone%d", k);
  /* each batch: two new finished sagas, and the marks of the two before
   * them and of REPLAN_MARKS - 2 sagas without a row */
  const char *marks[REPLAN_MARKS + 1];
  for (int k = 0; k < REPLAN_MARKS; k++)
    marks[k] = others[k];
  marks[REPLAN_MARKS] = NULL;
  for (int i = 0; i < 9; i++) {
    if (i == 8)
      exec_ok(f.pg, "INSERT INTO saga_index (saga_id, saga_type, "
                    "definition_version, status, partition, version, "
                    "started_at, updated_at, notify_pending, stuck_at) "
                    "SELECT 'g' || g, 't', 1, 'completed', 0, 1, now(), "
                    "now(), false, 'infinity' "
                    "FROM generate_series(1, 50000) g");
    const char *stats = "SELECT n_tup_upd * 1000000 + seq_scan FROM "
                        "pg_stat_user_tables WHERE relname = 'saga_index'";
    /* the store's session reports its statistics once idle, within about
     * a second: wait for the flags cleared so far to show */
    long long want = i ? 2 * (i - 1) : 0;
    int64_t until = ts_now_ms() + ts_timeout_ms(15000);
    while (scalar(f.pg, stats, NULL) / 1000000 < want && ts_now_ms() < until)
      uv_sleep(50);
    long long before = scalar(f.pg, stats, NULL);
    assert_int_equal(before / 1000000, want);
    const char *const fresh[] = {names[2 * i], names[2 * i + 1], NULL};
    if (i) {
      marks[0] = names[2 * i - 2];
      marks[1] = names[2 * i - 1];
    }
    batch(&f.loop, &f.port, f.pg, fresh, marks);
    if (i < 8)
      continue;
    until = ts_now_ms() + ts_timeout_ms(15000);
    while (scalar(f.pg, stats, NULL) / 1000000 < want + 2 &&
           ts_now_ms() < until)
      uv_sleep(50);
    long long after = scalar(f.pg, stats, NULL);
    assert_int_equal(after / 1000000, want + 2);
    assert_int_equal(after % 1000000, before % 1000000); /* no seq scan */
  }
  assert_int_equal(pending(f.pg, names[15]), 0);
  assert_int_equal(pending(f.pg, names[16]), 1);
  fixture_close(&f);
}

/* saga_index's columns of a saga, as one text (fails when it has no row). */
static char *index_row(PGconn *pg, const char *id) {
  const char *v[1] = {id};
  PGresult *r = PQexecParams(
      pg,
      "SELECT concat_ws('|', saga_type, definition_version, status, "
      "partition, version, (extract(epoch FROM started_at) * 1000)::bigint, "
      "(extract(epoch FROM updated_at) * 1000)::bigint, "
      "coalesce((extract(epoch FROM next_deadline_at) * 1000)::bigint::text, "
      "'none'), coalesce(current_step, 'none'), notify_pending, "
      "CASE WHEN isfinite(stuck_at) "
      "THEN (extract(epoch FROM stuck_at) * 1000)::bigint::text "
      "ELSE stuck_at::text END) "
      "FROM saga_index WHERE saga_id = $1",
      1, NULL, v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    fail_msg("no saga_index row for %s: %s", id, PQresultErrorMessage(r));
  char *t = strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
  assert_non_null(t);
  return t;
}

static void
test_one_saga_s_index_row_is_written_as_a_larger_batch_s(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "store_one_row");
  sagad_index_row_t r = {.saga_type = "order \"x\"",
                         .definition_version = 7,
                         .status = "running",
                         .partition = 3,
                         .version = 1,
                         .started_ms = 1796000000123,
                         .updated_ms = 1796000000456,
                         .next_deadline_ms = 1796000009000,
                         .stuck_at_ms = 1796000060000,
                         .current_step = "reserve, {stock}"};
  int st[2];
  /* two sagas: one array per column */
  sagad_index_row_t two[2] = {r, r};
  two[0].saga_id = "m1";
  two[1].saga_id = "m2";
  batch_rows(&f.loop, &f.port, two, NULL, 2, st);
  assert_int_equal(st[0], SAGAD_STORE_OK);
  /* one saga alone: its own statement, the same row */
  sagad_index_row_t one = r;
  one.saga_id = "s\"1\\";
  batch_rows(&f.loop, &f.port, &one, NULL, 1, st);
  assert_int_equal(st[0], SAGAD_STORE_OK);
  char *want = index_row(f.pg, "m1"), *got = index_row(f.pg, one.saga_id);
  assert_string_equal(want, "order \"x\"|7|running|3|1|1796000000123|"
                            "1796000000456|1796000009000|reserve, {stock}|f|"
                            "1796000060000");
  assert_string_equal(got, want);
  free(want);
  free(got);
  /* its next version: terminal, no step, no deadline, never stuck */
  one.version = 2;
  one.status = "completed";
  one.updated_ms = 1796000000789;
  one.next_deadline_ms = 0;
  one.stuck_at_ms = 0;
  one.current_step = NULL;
  one.notify_pending = 1;
  batch_rows(&f.loop, &f.port, &one, NULL, 1, st);
  assert_int_equal(st[0], SAGAD_STORE_OK);
  got = index_row(f.pg, one.saga_id);
  assert_string_equal(got, "order \"x\"|7|completed|3|2|"
                           "1796000000123|1796000000789|none|none|t|"
                           "infinity");
  free(got);
  /* a version its stream does not get (the stream conflicted): the row
   * stays as it was */
  sagad_index_row_t late = one;
  late.version = 3;
  late.status = "failed";
  int64_t stale = 1;
  batch_rows(&f.loop, &f.port, &late, &stale, 1, st);
  assert_int_equal(st[0], SAGAD_STORE_CONFLICT);
  got = index_row(f.pg, one.saga_id);
  assert_string_equal(got, "order \"x\"|7|completed|3|2|"
                           "1796000000123|1796000000789|none|none|t|"
                           "infinity");
  free(got);
  fixture_close(&f);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_recovery_is_every_open_record_in_order_over_several_turns),
      cmocka_unit_test(
          test_recovery_is_stream_by_stream_where_plans_go_parallel),
      cmocka_unit_test(test_recovery_outlasts_a_statement_timeout),
      cmocka_unit_test(
          test_recovery_reads_without_jit_even_where_it_is_on),
      cmocka_unit_test(
          test_delivered_notifications_clear_their_sagas_flags_only),
      cmocka_unit_test(
          test_delivered_notifications_are_found_by_id_not_by_the_flag),
      cmocka_unit_test(
          test_delivered_notifications_are_planned_for_their_ids),
      cmocka_unit_test(
          test_one_saga_s_index_row_is_written_as_a_larger_batch_s),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
