/* The PostgreSQL store port's recovery load (coordinator/io/store_pg.c)
 * against the embedded PostgreSQL: every record of the open sagas of the
 * asked partitions, stream by stream in version order, none of a terminal
 * saga or of another partition; and a recovery larger than one chunk is
 * handed over in several loop turns (the loop serves other events between
 * chunks) rather than all rows at once after a single read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "saga/eventstore.h"
#include "shell.h"
#include "test_support.h"

#define NSAGAS 3000 /* open ones, 2 records each: more than one chunk */
#define NSTREAM 2

typedef struct ctx {
  long turns; /* loop iterations (a uv_check handle) */
  long turns_at_first, turns_at_last;
  size_t records;
  char last_id[64];
  int64_t last_version;
  int bad; /* a record out of order, unexpected or with the wrong data */
  char why[200];
  int done, status;
} ctx_t;

static void on_check(uv_check_t *h) { ((ctx_t *)h->data)->turns++; }

static int on_record(void *arg, const char *id, int32_t partition,
                     int64_t version, const uint8_t *data, size_t len) {
  ctx_t *c = arg;
  if (c->records == 0)
    c->turns_at_first = c->turns;
  c->turns_at_last = c->turns;
  c->records++;
  /* open sagas are "o<5 digits>", terminal ones "t...": partition = n % 2 */
  long n = atol(id + 1);
  char want[64];
  snprintf(want, sizeof want, "%s/%lld", id, (long long)version);
  int cmp = strcmp(id, c->last_id);
  if (!c->bad && (id[0] != 'o' || partition != (int32_t)(n % 2) ||
                  cmp < 0 || (cmp == 0 && version != c->last_version + 1) ||
                  (cmp > 0 && version != 1) || len != strlen(want) ||
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

static void test_recovery_is_every_open_record_in_order_over_several_turns(
    void **state) {
  (void)state;
  char *ci = ts_pg_create_database("store_recovery");
  uv_loop_t loop;
  uv_loop_init(&loop);
  sagad_store_pg_t *s = NULL;
  sagad_store_port_t port;
  char err[512];
  if (sagad_store_pg_open(&loop, ci, "test.inbox", "test.group", &s, &port,
                          err, sizeof err))
    fail_msg("%s", err);
  write_streams(ci, 'o', 0, NSAGAS);
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
           NSTREAM, NSAGAS - 1, NSTREAM);
  exec_ok(pg, sql);
  /* a third partition, not asked for */
  exec_ok(pg, "UPDATE saga_index SET partition = 2 WHERE saga_id = 'o00007'");
  PQfinish(pg);

  ctx_t c = {0};
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
  assert_int_equal(c.records, (size_t)(NSAGAS - 1) * NSTREAM);
  /* handed over in several turns of the loop, not all at once */
  assert_true(c.turns_at_last > c.turns_at_first);

  uv_check_stop(&check);
  uv_close((uv_handle_t *)&check, NULL);
  int closed = 0;
  sagad_store_pg_close(s, on_closed, &closed);
  until = ts_now_ms() + ts_timeout_ms(20000);
  while (!closed && ts_now_ms() < until)
    uv_run(&loop, UV_RUN_ONCE);
  assert_true(closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  ts_pg_drop_database(ci);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_recovery_is_every_open_record_in_order_over_several_turns),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
