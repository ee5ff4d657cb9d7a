/* Batch append (group commit) against the embedded PostgreSQL: many
 * streams and extra statements in one transaction and one round trip, and
 * what each stream reports when one of them conflicts or races. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include <cmocka.h>

#include "es_test.h"
#include "test_support.h"

static char *db;

static long long count_events(const char *stream) {
  PGconn *c = est_raw(db);
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM es_events WHERE stream_id = '%s'", stream);
  long long n = est_scalar(c, sql);
  PQfinish(c);
  return n;
}

static const char *upsert =
    "INSERT INTO saga_index (saga_id, state) VALUES ($1, $2)"
    " ON CONFLICT (saga_id) DO UPDATE SET state = EXCLUDED.state";

static void test_a_batch_commits_many_streams_and_its_statements_together(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t e1[2] = {est_event("A", "1"), est_event("B", "2")};
  es_event_t e2 = est_event("A", "3"), e3 = est_event("A", "4");
  assert_int_equal(es_batch_add(b, "saga-b1", ES_NO_STREAM, e1, 2), 0);
  assert_int_equal(es_batch_add(b, "saga-b2", ES_ANY_VERSION, &e2, 1), 1);
  assert_int_equal(es_batch_add(b, "saga-b1", 2, &e3, 1), 2);
  const char *p[2] = {"b1", "running"};
  assert_int_equal(es_batch_add_statement(b, upsert, 2, p), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, 0);
  assert_int_equal(es_batch_result(b, 0)->version, 2);
  assert_int_equal(es_batch_result(b, 1)->version, 1);
  assert_int_equal(es_batch_result(b, 2)->status, 0);
  assert_int_equal(es_batch_result(b, 2)->version, 3);
  assert_null(es_batch_result(b, 3));
  assert_int_equal(count_events("saga-b1"), 3);
  PGconn *c = est_raw(db);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index WHERE"
                                 " saga_id = 'b1' AND state = 'running'"),
                   1);
  PQfinish(c);
  /* the acknowledgement was lost: executing it again changes nothing */
  assert_int_equal(es_batch_execute(s, b), 0);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(es_batch_result(b, i)->status, ES_ERR_DUPLICATE);
  assert_int_equal(es_batch_result(b, 0)->version, 3);
  assert_int_equal(count_events("saga-b1"), 3);
  es_batch_free(b);
  es_store_close(s);
}

static void test_a_stale_stream_in_a_batch_reports_conflict_and_the_others_commit(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t a = est_event("A", "1");
  assert_int_equal(es_append(s, "saga-c1", ES_NO_STREAM, &a, 1, NULL), 0);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t x = est_event("X", "1"), y = est_event("Y", "2"),
             z = est_event("Z", "3");
  assert_int_equal(es_batch_add(b, "saga-c0", ES_NO_STREAM, &x, 1), 0);
  assert_int_equal(es_batch_add(b, "saga-c1", ES_NO_STREAM, &y, 1), 1);
  assert_int_equal(es_batch_add(b, "saga-c2", ES_NO_STREAM, &z, 1), 2);
  const char *p[2] = {"c", "ok"};
  assert_int_equal(es_batch_add_statement(b, upsert, 2, p), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, 0);
  assert_int_equal(es_batch_result(b, 1)->status, ES_ERR_CONFLICT);
  assert_int_equal(es_batch_result(b, 1)->version, 1);
  assert_int_equal(es_batch_result(b, 2)->status, 0);
  assert_int_equal(count_events("saga-c0"), 1);
  assert_int_equal(count_events("saga-c1"), 1);
  assert_int_equal(count_events("saga-c2"), 1);
  es_batch_free(b);
  es_store_close(s);
}

static void test_a_failing_statement_aborts_the_whole_batch(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t x = est_event("X", "1"), y = est_event("Y", "2");
  assert_int_equal(es_batch_add(b, "saga-f1", ES_NO_STREAM, &x, 1), 0);
  assert_int_equal(es_batch_add(b, "saga-f2", ES_NO_STREAM, &y, 1), 1);
  assert_int_equal(es_batch_add_statement(b, "SELECT 1 / 0", 0, NULL), 0);
  assert_int_equal(es_batch_execute(s, b), ES_ERR_BATCH_ABORTED);
  assert_non_null(strstr(es_store_last_error(s), "division by zero"));
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_BATCH_ABORTED);
  assert_int_equal(es_batch_result(b, 1)->status, ES_ERR_BATCH_ABORTED);
  assert_int_equal(count_events("saga-f1"), 0);
  assert_int_equal(count_events("saga-f2"), 0);
  es_batch_free(b);
  es_batch_t *empty = es_batch_new(NULL);
  assert_int_equal(es_batch_execute(s, empty), ES_ERR_INVALID);
  es_batch_free(empty);
  es_store_close(s);
}

struct racer {
  es_store_t *store;
  es_batch_t *batch;
  int rc;
};

static void *run_batch(void *arg) {
  struct racer *r = arg;
  r->rc = es_batch_execute(r->store, r->batch);
  return NULL;
}

static void test_a_racing_writer_aborts_the_batch_and_names_the_culprit(
    void **state) {
  (void)state;
  PGconn *rival = est_raw(db);
  est_scalar(rival, "BEGIN");
  est_scalar(rival, "INSERT INTO es_events (stream_id, stream_version,"
                    " event_id, event_type, data) VALUES ('saga-r1', 1,"
                    " gen_random_uuid(), 'Rival', '\\x00')");
  struct racer r = {est_open(db), es_batch_new(NULL), 0};
  es_event_t x = est_event("X", "1"), y = est_event("Y", "2");
  assert_int_equal(es_batch_add(r.batch, "saga-r0", ES_NO_STREAM, &x, 1), 0);
  assert_int_equal(es_batch_add(r.batch, "saga-r1", ES_NO_STREAM, &y, 1), 1);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, run_batch, &r), 0);
  /* wait until the batch blocks on the rival's uncommitted key */
  est_wait_lock_waiter(db);
  est_scalar(rival, "COMMIT");
  pthread_join(t, NULL);
  assert_int_equal(r.rc, ES_ERR_BATCH_ABORTED);
  assert_int_equal(es_batch_result(r.batch, 0)->status, ES_ERR_BATCH_ABORTED);
  assert_int_equal(es_batch_result(r.batch, 1)->status, ES_ERR_CONFLICT);
  assert_int_equal(count_events("saga-r0"), 0);
  assert_int_equal(count_events("saga-r1"), 1);
  /* the retry: the culprit now conflicts inside its statement, the other
   * commits */
  int rc = es_batch_execute(r.store, r.batch);
  if (rc)
    fprintf(stderr, "retry: %s\n", es_store_last_error(r.store));
  assert_int_equal(rc, 0);
  assert_int_equal(es_batch_result(r.batch, 0)->status, 0);
  assert_int_equal(es_batch_result(r.batch, 1)->status, ES_ERR_CONFLICT);
  assert_int_equal(count_events("saga-r0"), 1);
  PQfinish(rival);
  es_batch_free(r.batch);
  es_store_close(r.store);
}

static int setup(void **state) {
  (void)state;
  db = est_db("es_batch");
  PGconn *c = est_raw(db);
  est_scalar(c, "CREATE TABLE saga_index (saga_id text PRIMARY KEY,"
                " state text NOT NULL)");
  PQfinish(c);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  est_drop(db);
  return 0;
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_a_batch_commits_many_streams_and_its_statements_together),
      cmocka_unit_test(
          test_a_stale_stream_in_a_batch_reports_conflict_and_the_others_commit),
      cmocka_unit_test(test_a_failing_statement_aborts_the_whole_batch),
      cmocka_unit_test(
          test_a_racing_writer_aborts_the_batch_and_names_the_culprit),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
