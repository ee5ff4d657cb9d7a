/* The single-event append (one event, exact expected version), which has a
 * statement of its own: every answer of the general append -- conflict,
 * duplicate, id reused (the refusals answered in a second round trip), its
 * fields stored as given, and a racing writer turned into a conflict (or a
 * success when the rival rolls back), never into a second row. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "es_test.h"
#include "test_support.h"

static char *db;

static long long count_events(const char *stream) {
  return est_count_events(db, stream);
}

static void test_a_single_event_append_tells_conflict_duplicate_and_id_reuse_apart(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t a = est_event("A", "1"), b = est_event("B", "2");
  es_append_result_t r;
  assert_int_equal(es_append(s, "one-1", ES_NO_STREAM, &a, 1, &r), 0);
  assert_int_equal(r.version, 1);
  assert_true(r.first_position > 0);
  assert_int_equal(r.first_position, r.last_position);
  /* the lost-acknowledgement retry, at the old and at the new version */
  assert_int_equal(es_append(s, "one-1", ES_NO_STREAM, &a, 1, &r),
                   ES_ERR_DUPLICATE);
  assert_int_equal(r.version, 1);
  assert_int_equal(r.first_position, 0);
  assert_int_equal(es_append(s, "one-1", 1, &a, 1, &r), ES_ERR_DUPLICATE);
  assert_int_equal(r.version, 1);
  /* the id stored in another stream */
  assert_int_equal(es_append(s, "one-2", ES_NO_STREAM, &a, 1, &r),
                   ES_ERR_ID_REUSED);
  /* stale, ahead, and a stream that does not exist */
  assert_int_equal(es_append(s, "one-1", ES_NO_STREAM, &b, 1, &r),
                   ES_ERR_CONFLICT);
  assert_int_equal(r.version, 1);
  assert_int_equal(es_append(s, "one-1", 2, &b, 1, &r), ES_ERR_CONFLICT);
  assert_int_equal(r.version, 1);
  assert_int_equal(es_append(s, "one-3", 4, &b, 1, &r), ES_ERR_CONFLICT);
  assert_int_equal(r.version, 0);
  assert_int_equal(count_events("one-1"), 1);
  assert_int_equal(count_events("one-2"), 0);
  assert_int_equal(count_events("one-3"), 0);
  /* the right version goes in, and the store stays usable */
  assert_int_equal(es_append(s, "one-1", 1, &b, 1, &r), 0);
  assert_int_equal(r.version, 2);
  assert_int_equal(count_events("one-1"), 2);
  es_store_close(s);
}

static void test_a_single_event_is_stored_with_its_metadata_and_null_fields(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_kv_t kv[2] = {{"tenant", "acme"}, {"quote", "a \"b\""}};
  es_event_t a = est_event("Full", "payload");
  a.causation_id = "cause-1";
  a.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  a.meta = kv;
  a.n_meta = 2;
  es_event_t bare = est_event("Bare", "");
  bare.data_len = 0;
  assert_int_equal(es_append(s, "meta-1", ES_NO_STREAM, &a, 1, NULL), 0);
  assert_int_equal(es_append(s, "meta-1", 1, &bare, 1, NULL), 0);
  es_page_t *p = NULL;
  assert_int_equal(es_read_stream(s, "meta-1", 1, 10, &p), 0);
  assert_int_equal(p->n, 2);
  const es_recorded_t *e = &p->events[0];
  assert_memory_equal(e->id, a.id, 16);
  assert_int_equal(e->version, 1);
  assert_string_equal(e->type, "Full");
  assert_int_equal(e->data_len, 7);
  assert_memory_equal(e->data, "payload", 7);
  assert_string_equal(e->causation_id, "cause-1");
  assert_string_equal(e->traceparent, a.traceparent);
  assert_non_null(strstr(e->meta_json, "\"tenant\": \"acme\""));
  assert_non_null(strstr(e->meta_json, "a \\\"b\\\""));
  e = &p->events[1];
  assert_int_equal(e->version, 2);
  assert_int_equal(e->data_len, 0);
  assert_null(e->causation_id);
  assert_null(e->traceparent);
  assert_null(e->meta_json);
  es_page_free(p);
  es_store_close(s);
}

struct racer {
  es_store_t *store;
  const char *stream;
  es_event_t ev;
  es_append_result_t r;
  int rc;
  int64_t expected; /* ES_NO_STREAM unless set */
};

static void *run_append(void *arg) {
  struct racer *x = arg;
  x->rc = es_append(x->store, x->stream, x->expected, &x->ev, 1, &x->r);
  return NULL;
}

/* Start an append to stream that blocks on a rival's uncommitted version 1,
 * then end the rival with `end` (COMMIT or ROLLBACK). */
static void race(const char *stream, const char *end, struct racer *x) {
  PGconn *rival = est_raw(db);
  char sql[512];
  est_scalar(rival, "BEGIN");
  snprintf(sql, sizeof sql,
           "INSERT INTO es_append (stream_id, stream_version, event_id,"
           " event_type, data) VALUES ('%s', 1, gen_random_uuid(), 'Rival',"
           " '\\x00')",
           stream);
  est_scalar(rival, sql);
  *x = (struct racer){est_open(db), stream, est_event("Mine", "1"), {0}, 0,
                     ES_NO_STREAM};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, run_append, x), 0);
  est_wait_lock_waiter(db);
  est_scalar(rival, end);
  pthread_join(t, NULL);
  PQfinish(rival);
}

static void test_a_single_append_racing_a_writer_conflicts_when_the_rival_commits(
    void **state) {
  (void)state;
  struct racer x;
  race("race-1", "COMMIT", &x);
  assert_int_equal(x.rc, ES_ERR_CONFLICT);
  assert_int_equal(x.r.status, ES_ERR_CONFLICT);
  assert_int_equal(count_events("race-1"), 1);
  /* the connection is still in a clean state */
  es_event_t next = est_event("Next", "2");
  assert_int_equal(es_append(x.store, "race-1", 1, &next, 1, NULL), 0);
  assert_int_equal(count_events("race-1"), 2);
  es_store_close(x.store);
}

static void test_a_single_append_racing_a_writer_goes_in_when_the_rival_rolls_back(
    void **state) {
  (void)state;
  struct racer x;
  race("race-2", "ROLLBACK", &x);
  assert_int_equal(x.rc, 0);
  assert_int_equal(x.r.version, 1);
  assert_int_equal(count_events("race-2"), 1);
  es_store_close(x.store);
}

/* One event with an id the library draws (a fresh es_event_t each time:
 * the library writes the id it drew into the event). */
static int append_fresh(es_store_t *s, const char *stream, int64_t expected,
                        es_append_result_t *r) {
  es_event_t e = est_event("Step", "1");
  return es_append(s, stream, expected, &e, 1, r);
}

/* A connection remembers the version its last single append wrote to a
 * stream, with the row's era, and sends the next append at that version
 * without the version probe (es__heads_t): any later version is in the
 * same era, where the partition's unique key refuses a second row. Another
 * writer's version in between is still a conflict, and the stream goes on
 * without a gap or a second row of a version. */
static void test_an_append_at_a_remembered_version_conflicts_with_a_later_writer(
    void **state) {
  (void)state;
  es_store_t *a = est_open(db), *b = est_open(db);
  es_append_result_t r;
  assert_int_equal(append_fresh(a, "head-1", ES_NO_STREAM, &r), 0);
  assert_int_equal(append_fresh(a, "head-1", 1, &r), 0); /* remembered */
  assert_int_equal(r.version, 2);
  assert_int_equal(append_fresh(b, "head-1", 2, &r), 0);
  assert_int_equal(append_fresh(a, "head-1", 2, &r), ES_ERR_CONFLICT);
  assert_int_equal(r.status, ES_ERR_CONFLICT);
  assert_int_equal(r.version, 3);
  assert_int_equal(r.first_position, 0);
  assert_string_equal(es_store_last_error(a),
                      "stream \"head-1\" is at version 3, not the expected 2:"
                      " nothing appended");
  assert_int_equal(count_events("head-1"), 3);
  /* the connection goes on from what it was told */
  assert_int_equal(append_fresh(a, "head-1", 3, &r), 0);
  assert_int_equal(append_fresh(a, "head-1", 4, &r), 0);
  assert_int_equal(r.version, 5);
  assert_int_equal(count_events("head-1"), 5);
  es_store_close(b);
  es_store_close(a);
}

/* The remembered era must still be the current one: a version another
 * writer wrote in the era before the switch would not meet the unique key
 * of the new era's partition. So an append at a remembered version after
 * an era switch is probed, and conflicts when it must; and goes in, into
 * the new era, when it may. */
static void test_an_append_at_a_remembered_version_is_probed_after_an_era_switch(
    void **state) {
  (void)state;
  es_store_t *a = est_open(db), *b = est_open(db);
  PGconn *c = est_raw(db);
  es_append_result_t r;
  int32_t era = 0;
  assert_int_equal(append_fresh(a, "head-2", ES_NO_STREAM, &r), 0);
  assert_int_equal(append_fresh(a, "head-3", ES_NO_STREAM, &r), 0);
  assert_int_equal(append_fresh(b, "head-2", 1, &r), 0); /* in era E */
  long long before = est_era_of(c, "head-2", 2);
  assert_int_equal(es_roll_forward(a, 0, 5000, &era), 0);
  assert_int_equal(era, before + 1);
  /* head-2 is at 2 in era E: version 2 again, in era E + 1, would meet no
   * unique key */
  assert_int_equal(append_fresh(a, "head-2", 1, &r), ES_ERR_CONFLICT);
  assert_int_equal(r.version, 2);
  assert_int_equal(count_events("head-2"), 2);
  /* head-3 is at 1 as remembered: it goes on, in the new era */
  assert_int_equal(append_fresh(a, "head-3", 1, &r), 0);
  assert_int_equal(r.version, 2);
  assert_int_equal(est_era_of(c, "head-3", 2), era);
  assert_int_equal(append_fresh(a, "head-3", 2, &r), 0);
  assert_int_equal(est_era_of(c, "head-3", 3), era);
  assert_int_equal(count_events("head-3"), 3);
  PQfinish(c);
  es_store_close(b);
  es_store_close(a);
}

/* A remembered era whose table has gone (archived; here detached by
 * hand): the append is probed, and answers what the store holds now. */
static void test_an_append_at_a_remembered_version_after_its_era_left(
    void **state) {
  (void)state;
  char *own = est_db("es_append_head_gone");
  es_store_t *a = est_open(own);
  PGconn *c = est_raw(own);
  es_append_result_t r;
  int32_t era = 0;
  assert_int_equal(append_fresh(a, "gone-1", ES_NO_STREAM, &r), 0);
  long long old = est_scalar(c, "SELECT era FROM es_events"
                                " WHERE stream_id = 'gone-1'");
  assert_int_equal(es_roll_forward(a, 0, 5000, &era), 0);
  char sql[128];
  snprintf(sql, sizeof sql,
           "ALTER TABLE es_events DETACH PARTITION es_events_e%lld", old);
  est_scalar(c, sql);
  assert_int_equal(append_fresh(a, "gone-1", 1, &r), ES_ERR_CONFLICT);
  assert_int_equal(r.version, 0);
  assert_int_equal(append_fresh(a, "gone-1", ES_NO_STREAM, &r), 0);
  assert_int_equal(r.version, 1);
  assert_int_equal(est_scalar(c, "SELECT era FROM es_events"
                                 " WHERE stream_id = 'gone-1'"),
                   era);
  PQfinish(c);
  es_store_close(a);
  est_drop(own);
}

/* A remembered version racing a writer of the next one: the unique key
 * decides, as for any single append. */
static void test_an_append_at_a_remembered_version_racing_a_writer(
    void **state) {
  (void)state;
  static const char *const ends[2] = {"COMMIT", "ROLLBACK"};
  for (int k = 0; k < 2; k++) {
    char stream[32], sql[512];
    snprintf(stream, sizeof stream, "head-race-%d", k);
    struct racer x = {est_open(db), stream, est_event("Mine", "1"), {0}, 0, 1};
    assert_int_equal(append_fresh(x.store, stream, ES_NO_STREAM, NULL), 0);
    PGconn *rival = est_raw(db);
    est_scalar(rival, "BEGIN");
    snprintf(sql, sizeof sql,
             "INSERT INTO es_append (stream_id, stream_version, event_id,"
             " event_type, data) VALUES ('%s', 2, gen_random_uuid(),"
             " 'Rival', '\\x00')",
             stream);
    est_scalar(rival, sql);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_append, &x), 0);
    est_wait_lock_waiter(db);
    est_scalar(rival, ends[k]);
    pthread_join(t, NULL);
    PQfinish(rival);
    assert_int_equal(x.rc, k == 0 ? ES_ERR_CONFLICT : 0);
    assert_int_equal(x.r.version, 2);
    assert_int_equal(count_events(stream), 2);
    es_store_close(x.store);
  }
}

static int setup(void **state) {
  (void)state;
  db = est_db("es_append_one");
  return 0;
}

/* Whether conn L receives a NOTIFY on es_events within wait_ms. */
static int notified(PGconn *l, int wait_ms) {
  for (int waited = 0; waited <= wait_ms; waited += 10) {
    PQconsumeInput(l);
    PGnotify *n = PQnotifies(l);
    if (n) {
      PQfreemem(n);
      while ((n = PQnotifies(l)))
        PQfreemem(n);
      return 1;
    }
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* A writer notifies only when a subscription listens: subscriptions hold
 * the listener lock (shared) from before their LISTEN, and an append that
 * can take it alone skips the NOTIFY. A bare LISTEN without the lock hears
 * nothing; with it, every append (single and batch, of one stream or
 * several) is heard. */
static void test_appends_notify_only_while_a_subscription_listens(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  PGconn *l = est_raw(db);
  PQclear(PQexec(l, "LISTEN es_events"));
  es_event_t a = est_event("A", "1");
  assert_int_equal(es_append(s, "quiet-1", ES_NO_STREAM, &a, 1, NULL), 0);
  assert_false(notified(l, 300));
  PGresult *r = PQexec(l, "SELECT pg_advisory_lock_shared(7310868361213555)");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  PQclear(r);
  es_event_t b = est_event("B", "2");
  assert_int_equal(es_append(s, "quiet-1", 1, &b, 1, NULL), 0);
  assert_true(notified(l, (int)ts_timeout_ms(5000)));
  es_batch_t *bt = es_batch_new(NULL);
  es_event_t c = est_event("C", "3"), d = est_event("D", "4");
  assert_int_equal(es_batch_add(bt, "quiet-2", ES_NO_STREAM, &c, 1), 0);
  assert_int_equal(es_batch_add(bt, "quiet-3", ES_NO_STREAM, &d, 1), 1);
  assert_int_equal(es_batch_execute(s, bt), 0);
  assert_true(notified(l, (int)ts_timeout_ms(5000)));
  /* a batch of one stream notifies from its append statement */
  es_batch_reset(bt);
  es_event_t f = est_event("F", "6");
  assert_int_equal(es_batch_add(bt, "quiet-4", ES_NO_STREAM, &f, 1), 0);
  assert_int_equal(es_batch_execute(s, bt), 0);
  assert_true(notified(l, (int)ts_timeout_ms(5000)));
  PQfinish(l); /* the lock goes with the session: quiet again */
  l = est_raw(db);
  PQclear(PQexec(l, "LISTEN es_events"));
  es_event_t e = est_event("E", "5");
  assert_int_equal(es_append(s, "quiet-1", 2, &e, 1, NULL), 0);
  assert_false(notified(l, 300));
  es_batch_reset(bt);
  es_event_t g = est_event("G", "7");
  assert_int_equal(es_batch_add(bt, "quiet-4", 1, &g, 1), 0);
  assert_int_equal(es_batch_execute(s, bt), 0);
  assert_int_equal(es_batch_result(bt, 0)->status, 0);
  assert_false(notified(l, 300));
  es_batch_free(bt);
  PQfinish(l);
  es_store_close(s);
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
          test_a_single_event_append_tells_conflict_duplicate_and_id_reuse_apart),
      cmocka_unit_test(
          test_a_single_event_is_stored_with_its_metadata_and_null_fields),
      cmocka_unit_test(
          test_a_single_append_racing_a_writer_conflicts_when_the_rival_commits),
      cmocka_unit_test(
          test_a_single_append_racing_a_writer_goes_in_when_the_rival_rolls_back),
      cmocka_unit_test(test_appends_notify_only_while_a_subscription_listens),
      cmocka_unit_test(
          test_an_append_at_a_remembered_version_conflicts_with_a_later_writer),
      cmocka_unit_test(
          test_an_append_at_a_remembered_version_is_probed_after_an_era_switch),
      cmocka_unit_test(
          test_an_append_at_a_remembered_version_after_its_era_left),
      cmocka_unit_test(
          test_an_append_at_a_remembered_version_racing_a_writer),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
