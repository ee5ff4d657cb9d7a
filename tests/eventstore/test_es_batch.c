/* Batch append (group commit) against the embedded PostgreSQL: many
 * streams and extra statements in one transaction and one round trip, and
 * what each stream reports when one of them conflicts or races. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

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

/* b, reset, as one new stream id of one event with its upsert (id,
 * state), executed without an error. */
static void one_stream_batch(es_store_t *s, es_batch_t *b, const char *id,
                             const char *state) {
  es_batch_reset(b);
  es_event_t e = est_event("E", "1");
  assert_int_equal(es_batch_add(b, id, ES_NO_STREAM, &e, 1), 0);
  const char *p[2] = {id, state};
  assert_int_equal(es_batch_add_statement(b, upsert, 2, p), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
}

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
  /* the versions the batch found (no stream), not the ones it would have
   * written */
  assert_int_equal(es_batch_result(b, 0)->version, 0);
  assert_int_equal(es_batch_result(b, 1)->version, 0);
  assert_int_equal(count_events("saga-f1"), 0);
  assert_int_equal(count_events("saga-f2"), 0);
  es_batch_free(b);
  es_batch_t *empty = es_batch_new(NULL);
  assert_int_equal(es_batch_execute(s, empty), ES_ERR_INVALID);
  es_batch_free(empty);
  es_store_close(s);
}

/* A statement whose parameters do not match its text is the caller's
 * mistake: the server answers it with an ERROR of class 08 (protocol
 * violation) and keeps the session. The batch is aborted like any failing
 * statement; it is not a lost connection (which the caller is told to
 * retry, and which would drop a good connection). A stream that would have
 * written reports the version the batch found, not the one it would have
 * had. */
static void test_a_statement_with_the_wrong_parameter_count_aborts_the_batch(
    void **state) {
  (void)state;
  static const char *const named[] = {"application_name", "es-param-count",
                                      NULL};
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.conn_defaults = named;
  es_store_t *s = NULL;
  assert_int_equal(es_store_open(db, &o, &s, NULL, 0), 0);
  es_event_t a[2] = {est_event("A", "1"), est_event("B", "2")};
  assert_int_equal(es_append(s, "saga-wp1", ES_NO_STREAM, a, 2, NULL), 0);
  PGconn *admin = est_raw(db);
  static const char *pid_sql = "SELECT pid FROM pg_stat_activity WHERE"
                               " application_name = 'es-param-count'";
  long long before = est_scalar(admin, pid_sql);
  assert_true(before > 0);
  static const struct {
    const char *sql;
    int n;
  } wrong[] = {{"SELECT $1::int + $2::int", 1}, {"SELECT $1::int", 2}};
  const char *p[2] = {"1", "2"};
  for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
    es_batch_t *b = es_batch_new(NULL);
    es_event_t c = est_event("C", "3");
    assert_int_equal(es_batch_add(b, "saga-wp1", 2, &c, 1), 0);
    assert_int_equal(es_batch_add_statement(b, wrong[i].sql, wrong[i].n, p), 0);
    assert_int_equal(es_batch_execute(s, b), ES_ERR_BATCH_ABORTED);
    assert_non_null(strstr(es_store_last_error(s), "bind message supplies"));
    assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_BATCH_ABORTED);
    assert_int_equal(es_batch_result(b, 0)->version, 2);
    assert_int_equal(es_batch_result(b, 0)->first_position, 0);
    es_batch_free(b);
  }
  assert_int_equal(count_events("saga-wp1"), 2);
  /* the same session goes on */
  es_event_t d = est_event("D", "4");
  assert_int_equal(es_append(s, "saga-wp1", 2, &d, 1, NULL), 0);
  assert_int_equal(est_scalar(admin, pid_sql), before);
  PQfinish(admin);
  es_store_close(s);
}

/* The library never logs: a warning the server sends while a batch runs
 * does not reach stderr (libpq's default notice processor prints it). */
static void test_server_warnings_are_not_printed(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_batch_t *b = es_batch_new(NULL);
  assert_int_equal(
      es_batch_add_statement(
          b, "DO $$BEGIN RAISE WARNING 'es-test-warning'; END$$", 0, NULL),
      0);
  fflush(stderr);
  int saved = dup(2);
  FILE *cap = tmpfile();
  assert_non_null(cap);
  assert_true(saved >= 0 && dup2(fileno(cap), 2) >= 0);
  int rc = es_batch_execute(s, b);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char out[512] = "";
  rewind(cap);
  size_t n = fread(out, 1, sizeof out - 1, cap);
  out[n] = '\0';
  fclose(cap);
  assert_int_equal(rc, 0);
  assert_null(strstr(out, "es-test-warning"));
  es_batch_free(b);
  es_store_close(s);
}

/* A batch statement the append-only store refuses (its triggers raise
 * ES001) aborts the batch like any failing statement: BATCH_ABORTED, not
 * the NOT_OWNER of a group member's refused acknowledgement, which raises
 * the same SQLSTATE (a group subscriber would read its page again for
 * ever). */
static void test_a_refused_change_in_a_batch_aborts_it(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t x = est_event("X", "1");
  assert_int_equal(es_append(s, "saga-u0", ES_NO_STREAM, &x, 1, NULL), 0);
  static const char *const refused[] = {
      "UPDATE es_events SET event_type = 'Y' WHERE stream_id = 'saga-u0'",
      "DELETE FROM es_events WHERE stream_id = 'saga-u0'",
      "DELETE FROM es_archive_log"};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    es_batch_t *b = es_batch_new(NULL);
    es_event_t y = est_event("Y", "2");
    assert_int_equal(es_batch_add(b, "saga-u1", ES_NO_STREAM, &y, 1), 0);
    assert_int_equal(es_batch_add_statement(b, refused[i], 0, NULL), 0);
    assert_int_equal(es_batch_execute(s, b), ES_ERR_BATCH_ABORTED);
    assert_non_null(strstr(es_store_last_error(s), "refused"));
    assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_BATCH_ABORTED);
    assert_int_equal(count_events("saga-u1"), 0);
    es_batch_free(b);
  }
  assert_int_equal(count_events("saga-u0"), 1);
  es_store_close(s);
}

/* Batch statements are prepared once per connection: one that cannot be
 * prepared fails its batch and leaves nothing behind, the same text runs
 * again and again, and a new connection prepares it anew. */
static void test_a_batch_statement_is_prepared_once_per_connection(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t x = est_event("X", "1");
  assert_int_equal(es_batch_add(b, "saga-p0", ES_NO_STREAM, &x, 1), 0);
  assert_int_equal(
      es_batch_add_statement(b, "SELECT 1 FROM no_such_table", 0, NULL), 0);
  assert_int_equal(es_batch_execute(s, b), ES_ERR_BATCH_ABORTED);
  assert_non_null(strstr(es_store_last_error(s), "no_such_table"));
  assert_int_equal(count_events("saga-p0"), 0);
  char id[32];
  for (int i = 1; i <= 4; i++) {
    if (i == 3) { /* the server ends the session: a new one prepares again */
      PGconn *c = est_raw(db);
      assert_int_equal(est_terminate_others(c), 1);
      PQfinish(c);
      es_batch_reset(b);
      es_event_t y = est_event("Y", "1");
      assert_int_equal(es_batch_add(b, "saga-p-lost", ES_NO_STREAM, &y, 1), 0);
      assert_int_equal(es_batch_execute(s, b), ES_ERR_CONNECTION);
    }
    snprintf(id, sizeof id, "saga-p%d", i);
    one_stream_batch(s, b, id, "prepared");
    assert_int_equal(count_events(id), 1);
  }
  PGconn *c = est_raw(db);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index WHERE "
                                 "state = 'prepared'"),
                   4);
  PQfinish(c);
  es_batch_free(b);
  es_store_close(s);
}

/* Global position of version v of stream (0 when absent). */
static long long position_of(const char *stream, long long v) {
  PGconn *c = est_raw(db);
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT global_position FROM es_events WHERE stream_id = '%s'"
           " AND stream_version = %lld",
           stream, v);
  long long p = est_scalar(c, sql);
  PQfinish(c);
  return p;
}

static void
test_each_stream_of_a_batch_answers_for_itself_with_its_positions(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t stored = est_event("S", "1"), other = est_event("O", "2");
  assert_int_equal(es_append(s, "m-dup", ES_NO_STREAM, &stored, 1, NULL), 0);
  assert_int_equal(es_append(s, "m-other", ES_NO_STREAM, &other, 1, NULL),
                   0);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t three[3] = {est_event("A", "1"), est_event("B", "2"),
                         est_event("C", "3")};
  three[1].correlation_id = "corr-1";
  es_kv_t meta = {"k", "v\"q"};
  three[2].meta = &meta;
  three[2].n_meta = 1;
  es_event_t again = stored, reuse = est_event("R", "1");
  memcpy(reuse.id, other.id, 16);
  es_event_t stale = est_event("T", "1"), any = est_event("Y", "1");
  es_event_t two[2] = {est_event("D", "4"), est_event("E", "5")};
  es_event_t half[2] = {stored, est_event("H", "1")};
  assert_int_equal(es_batch_add(b, "m-new", ES_NO_STREAM, three, 3), 0);
  assert_int_equal(es_batch_add(b, "m-dup", ES_NO_STREAM, &again, 1), 1);
  assert_int_equal(es_batch_add(b, "m-reuse", ES_NO_STREAM, &reuse, 1), 2);
  assert_int_equal(es_batch_add(b, "m-stale", 5, &stale, 1), 3);
  assert_int_equal(es_batch_add(b, "m-new", 3, two, 2), 4);
  assert_int_equal(es_batch_add(b, "m-any", ES_ANY_VERSION, &any, 1), 5);
  assert_int_equal(es_batch_add(b, "m-dup", 1, half, 2), 6);
  assert_int_equal(es_batch_execute(s, b), 0);
  const es_append_result_t *r = es_batch_result(b, 0);
  assert_int_equal(r->status, 0);
  assert_int_equal(r->version, 3);
  assert_int_equal(r->first_position, position_of("m-new", 1));
  assert_int_equal(r->last_position, position_of("m-new", 3));
  assert_true(position_of("m-new", 1) < position_of("m-new", 2));
  assert_true(position_of("m-new", 2) < position_of("m-new", 3));
  r = es_batch_result(b, 1);
  assert_int_equal(r->status, ES_ERR_DUPLICATE);
  assert_int_equal(r->version, 1);
  assert_int_equal(r->first_position, 0);
  assert_int_equal(es_batch_result(b, 2)->status, ES_ERR_ID_REUSED);
  r = es_batch_result(b, 3);
  assert_int_equal(r->status, ES_ERR_CONFLICT);
  assert_int_equal(r->version, 0);
  /* the stream's second append in the batch follows its first */
  r = es_batch_result(b, 4);
  assert_int_equal(r->status, 0);
  assert_int_equal(r->version, 5);
  assert_int_equal(r->first_position, position_of("m-new", 4));
  assert_int_equal(r->last_position, position_of("m-new", 5));
  assert_true(position_of("m-new", 3) < position_of("m-new", 4));
  r = es_batch_result(b, 5);
  assert_int_equal(r->status, 0);
  assert_int_equal(r->version, 1);
  assert_int_equal(r->first_position, r->last_position);
  /* a stored id next to a new one: never half a stream */
  assert_int_equal(es_batch_result(b, 6)->status, ES_ERR_ID_REUSED);
  assert_int_equal(count_events("m-new"), 5);
  assert_int_equal(count_events("m-dup"), 1);
  assert_int_equal(count_events("m-reuse"), 0);
  assert_int_equal(count_events("m-stale"), 0);
  assert_int_equal(count_events("m-any"), 1);
  /* every field of every event arrived with its own event */
  es_page_t *pg = NULL;
  assert_int_equal(es_read_stream(s, "m-new", 1, 10, &pg), 0);
  assert_int_equal(pg->n, 5);
  const char *types = "ABCDE";
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(pg->events[i].version, (int64_t)i + 1);
    assert_int_equal(pg->events[i].type[0], types[i]);
    assert_memory_equal(pg->events[i].id,
                        es_batch_event_id(b, i < 3 ? 0 : 4, i < 3 ? i : i - 3),
                        16);
  }
  assert_string_equal(pg->events[1].correlation_id, "corr-1");
  assert_null(pg->events[0].correlation_id);
  assert_non_null(strstr(pg->events[2].meta_json, "v\\\"q"));
  assert_null(pg->events[3].meta_json);
  assert_int_equal(pg->events[4].data_len, 1);
  assert_memory_equal(pg->events[4].data, "5", 1);
  es_page_free(pg);
  es_batch_free(b);
  es_store_close(s);
}

static void test_one_event_id_in_two_streams_of_a_batch_aborts_it(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t x = est_event("X", "1"), y = est_event("Y", "2");
  assert_int_equal(es_batch_add(b, "twice-1", ES_NO_STREAM, &x, 1), 0);
  memcpy(y.id, x.id, 16);
  assert_int_equal(es_batch_add(b, "twice-2", ES_NO_STREAM, &y, 1), 1);
  assert_int_equal(es_batch_execute(s, b), ES_ERR_BATCH_ABORTED);
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_BATCH_ABORTED);
  assert_int_equal(es_batch_result(b, 1)->status, ES_ERR_ID_REUSED);
  assert_int_equal(count_events("twice-1"), 0);
  assert_int_equal(count_events("twice-2"), 0);
  /* the session is usable: nothing of the classification stayed open */
  es_event_t z = est_event("Z", "3");
  assert_int_equal(es_append(s, "twice-1", ES_NO_STREAM, &z, 1, NULL), 0);
  assert_int_equal(count_events("twice-1"), 1);
  es_batch_free(b);
  es_store_close(s);
}

/* The multi-stream statement skips the stored-id probe for ids the library
 * drew itself and has not sent yet; once sent, they are checked like any
 * other: executing the batch again, even in a later era (whose partition's
 * key does not hold the first era's ids), answers DUPLICATE and writes
 * nothing, and a drawn id given again by the caller is refused. */
static void test_ids_the_library_drew_are_checked_once_sent(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t x[2] = {est_event("X", "1"), est_event("X", "2")};
  es_event_t y = est_event("Y", "3");
  assert_int_equal(es_batch_add(b, "drawn-1", ES_ANY_VERSION, x, 2), 0);
  assert_int_equal(es_batch_add(b, "drawn-2", ES_ANY_VERSION, &y, 1), 1);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, 0);
  assert_int_equal(es_batch_result(b, 1)->status, 0);
  int era = 0;
  for (int k = 0; k < 2; k++) {
    assert_int_equal(es_batch_execute(s, b), 0);
    assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_DUPLICATE);
    assert_int_equal(es_batch_result(b, 0)->version, 2);
    assert_int_equal(es_batch_result(b, 1)->status, ES_ERR_DUPLICATE);
    assert_int_equal(count_events("drawn-1"), 2);
    assert_int_equal(count_events("drawn-2"), 1);
    if (k == 0) /* again in a new era */
      assert_int_equal(es_roll_forward(s, 0, 0, &era), 0);
  }
  es_batch_t *c = es_batch_new(NULL);
  es_event_t again = est_event("Z", "4"), other = est_event("Z", "5");
  memcpy(again.id, es_batch_event_id(b, 0, 1), 16);
  assert_int_equal(es_batch_add(c, "drawn-3", ES_NO_STREAM, &again, 1), 0);
  assert_int_equal(es_batch_add(c, "drawn-4", ES_NO_STREAM, &other, 1), 1);
  assert_int_equal(es_batch_execute(s, c), 0);
  assert_int_equal(es_batch_result(c, 0)->status, ES_ERR_ID_REUSED);
  assert_int_equal(es_batch_result(c, 1)->status, 0);
  assert_int_equal(count_events("drawn-3"), 0);
  assert_int_equal(count_events("drawn-4"), 1);
  es_batch_free(c);
  es_batch_free(b);
  es_store_close(s);
}

/* A batch of one stream and one event (sagad's usual batch: one saga, one
 * transition) answers each outcome as a multi-stream batch does, keeps
 * every field, and its statements commit beside a refused stream. */
static void test_a_one_event_batch_of_one_stream_answers_for_itself(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t x = est_event("X", "1");
  x.correlation_id = "corr-x";
  x.traceparent = "00-8063eb9f86977f393c325b0964c3e01c-7b1cb8e8e4d6883c-01";
  es_kv_t meta = {"k", "v\"q"};
  x.meta = &meta;
  x.n_meta = 1;
  assert_int_equal(es_batch_add(b, "one-1", ES_NO_STREAM, &x, 1), 0);
  const char *p[2] = {"one-1", "first"};
  assert_int_equal(es_batch_add_statement(b, upsert, 2, p), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
  const es_append_result_t *r = es_batch_result(b, 0);
  assert_int_equal(r->status, 0);
  assert_int_equal(r->version, 1);
  assert_int_equal(r->first_position, position_of("one-1", 1));
  assert_int_equal(r->last_position, r->first_position);
  /* the acknowledgement was lost: the same batch again is a duplicate */
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_DUPLICATE);
  assert_int_equal(es_batch_result(b, 0)->version, 1);
  /* a stale expected version: nothing appended, the statement commits */
  es_batch_reset(b);
  es_event_t y = est_event("Y", "2");
  assert_int_equal(es_batch_add(b, "one-1", ES_NO_STREAM, &y, 1), 0);
  const char *q[2] = {"one-1", "second"};
  assert_int_equal(es_batch_add_statement(b, upsert, 2, q), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_CONFLICT);
  assert_int_equal(es_batch_result(b, 0)->version, 1);
  assert_int_equal(es_batch_result(b, 0)->first_position, 0);
  PGconn *c = est_raw(db);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index WHERE"
                                 " saga_id = 'one-1' AND state = 'second'"),
                   1);
  PQfinish(c);
  /* an id stored in another stream */
  es_batch_reset(b);
  es_event_t reuse = est_event("R", "3");
  memcpy(reuse.id, x.id, 16);
  assert_int_equal(es_batch_add(b, "one-2", ES_NO_STREAM, &reuse, 1), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_ID_REUSED);
  /* any version, then the expected one */
  es_batch_reset(b);
  es_event_t any = est_event("A", "4"), next = est_event("N", "5");
  assert_int_equal(es_batch_add(b, "one-1", ES_ANY_VERSION, &any, 1), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, 0);
  assert_int_equal(es_batch_result(b, 0)->version, 2);
  es_batch_reset(b);
  assert_int_equal(es_batch_add(b, "one-1", 2, &next, 1), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, 0);
  assert_int_equal(es_batch_result(b, 0)->version, 3);
  assert_int_equal(count_events("one-1"), 3);
  assert_int_equal(count_events("one-2"), 0);
  es_page_t *pg = NULL;
  assert_int_equal(es_read_stream(s, "one-1", 1, 10, &pg), 0);
  assert_int_equal(pg->n, 3);
  assert_memory_equal(pg->events[0].id, x.id, 16);
  assert_string_equal(pg->events[0].type, "X");
  assert_int_equal(pg->events[0].data_len, 1);
  assert_memory_equal(pg->events[0].data, "1", 1);
  assert_string_equal(pg->events[0].correlation_id, "corr-x");
  assert_null(pg->events[0].causation_id);
  assert_string_equal(pg->events[0].traceparent, x.traceparent);
  assert_non_null(strstr(pg->events[0].meta_json, "v\\\"q"));
  assert_null(pg->events[1].meta_json);
  assert_null(pg->events[1].correlation_id);
  assert_string_equal(pg->events[2].type, "N");
  es_page_free(pg);
  es_batch_free(b);
  es_store_close(s);
}

/* The statement a batch of one stream runs is planned once per connection
 * and probes the unique keys, whatever the table held when it was planned.
 * Read inside the library's own session (a batch statement can: a
 * function that reads pg_prepared_statements and explains each append
 * statement's generic plan): the plans were made while es_events was
 * nearly empty and never analysed (autovacuum off for it), then the table
 * grew. Before, the one-stream statement either got a custom plan at
 * every execution (its event ids come as an array, whose size the custom
 * plans knew and the generic one guessed at 10) or kept a generic plan
 * that scanned es_events for the ids (`event_id = ANY($3)`), at every
 * append, however large the table grew (the saga benchmark's
 * concurrency-1 half: 0.5-0.9 ms a statement, 86 buffers, against 0.2). */
static void test_a_one_stream_batch_keeps_one_plan_that_probes_the_keys(
    void **state) {
  (void)state;
  char *pdb = est_db("es_batch_plan");
  PGconn *c = est_raw(pdb);
  est_scalar(c, "ALTER TABLE es_events_e1 SET (autovacuum_enabled = false)");
  est_scalar(c, "CREATE TABLE saga_index (saga_id text PRIMARY KEY,"
                " state text NOT NULL)");
  est_scalar(
      c, "CREATE TABLE plan_probe (name text, generic bigint, custom bigint,"
         " plan text)");
  est_scalar(
      c,
      "CREATE FUNCTION plan_probe() RETURNS void LANGUAGE plpgsql AS $$"
      " DECLARE r record; line text; p text;"
      " BEGIN"
      " PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);"
      " FOR r IN SELECT name, generic_plans, custom_plans,"
      " cardinality(parameter_types) AS n FROM pg_prepared_statements"
      " WHERE name LIKE 'es_append%' AND generic_plans + custom_plans > 0"
      " LOOP p := '';"
      " FOR line IN EXECUTE format('EXPLAIN EXECUTE %I(%s)', r.name,"
      " array_to_string(array_fill('NULL'::text, ARRAY[r.n]), ',')) LOOP"
      " p := p || line || E'\\n'; END LOOP;"
      " INSERT INTO plan_probe VALUES (r.name, r.generic_plans,"
      " r.custom_plans, p);"
      " END LOOP; END $$");
  es_store_t *s = est_open(pdb);
  es_batch_t *b = es_batch_new(NULL);
  char id[32];
  for (int i = 0; i < 20; i++) {
    if (i == 10) /* the table grows past its planned size */
      est_scalar(c, "INSERT INTO es_append (stream_id, stream_version,"
                    " event_id, event_type, data) SELECT 'grow-' || g, 1,"
                    " gen_random_uuid(), 'G', '\\x00' FROM"
                    " generate_series(1, 20000) g");
    snprintf(id, sizeof id, "plan-%d", i);
    one_stream_batch(s, b, id, "running");
    assert_int_equal(es_batch_result(b, 0)->status, 0);
  }
  es_batch_reset(b);
  assert_int_equal(es_batch_add_statement(b, "SELECT plan_probe()", 0, NULL),
                   0);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_true(est_scalar(c, "SELECT count(*) FROM plan_probe") >= 1);
  PGresult *r = PQexec(c, "SELECT name, generic, custom, plan FROM plan_probe"
                          " WHERE custom > 5 OR plan LIKE"
                          " '%Seq Scan on es_events%'");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  for (int i = 0; i < PQntuples(r); i++)
    print_message("%s: %s generic and %s custom plans; generic plan:\n%s\n",
                  PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                  PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
  assert_int_equal(PQntuples(r), 0);
  PQclear(r);
  /* sagad's shape (ids the library drew) goes by the statement without
   * the id probe */
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM plan_probe WHERE"
                                  " name LIKE 'es\\_append\\_row\\_fresh%'"),
                   1);
  PQfinish(c);
  es_batch_free(b);
  es_store_close(s);
  est_drop(pdb);
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

/* Execute r's batch while the rival holds a key it needs: once the batch
 * waits on it, the rival commits, and the batch is aborted. */
static void race(struct racer *r, PGconn *rival) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, run_batch, r), 0);
  est_wait_lock_waiter(db);
  est_scalar(rival, "COMMIT");
  pthread_join(t, NULL);
  assert_int_equal(r->rc, ES_ERR_BATCH_ABORTED);
}

static void test_a_racing_writer_aborts_the_batch_and_names_the_culprit(
    void **state) {
  (void)state;
  PGconn *rival = est_rival(db, "saga-r1");
  struct racer r = {est_open(db), es_batch_new(NULL), 0};
  es_event_t x = est_event("X", "1"), y = est_event("Y", "2");
  assert_int_equal(es_batch_add(r.batch, "saga-r0", ES_NO_STREAM, &x, 1), 0);
  assert_int_equal(es_batch_add(r.batch, "saga-r1", ES_NO_STREAM, &y, 1), 1);
  race(&r, rival);
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

static void
test_a_race_in_a_large_batch_names_the_culprit_and_keeps_found_conflicts(
    void **state) {
  (void)state;
  PGconn *rival = est_rival(db, "saga-q2");
  struct racer r = {est_open(db), es_batch_new(NULL), 0};
  es_event_t ev[5] = {est_event("A", "0"), est_event("B", "1"),
                      est_event("C", "2"), est_event("D", "3"),
                      est_event("E", "4")};
  const char *names[5] = {"saga-q0", "saga-q1", "saga-q2", "saga-q3",
                          "saga-q0"};
  int64_t expect[5] = {ES_NO_STREAM, 7, ES_NO_STREAM, ES_ANY_VERSION, 1};
  for (int i = 0; i < 5; i++)
    assert_int_equal(es_batch_add(r.batch, names[i], expect[i], &ev[i], 1),
                     i);
  const char *p[2] = {"q", "raced"};
  assert_int_equal(es_batch_add_statement(r.batch, upsert, 2, p), 0);
  race(&r, rival);
  int want[5] = {ES_ERR_BATCH_ABORTED, ES_ERR_CONFLICT, ES_ERR_CONFLICT,
                 ES_ERR_BATCH_ABORTED, ES_ERR_BATCH_ABORTED};
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(es_batch_result(r.batch, i)->status, want[i]);
    assert_int_equal(es_batch_result(r.batch, i)->first_position, 0);
  }
  assert_int_equal(count_events("saga-q0"), 0);
  assert_int_equal(count_events("saga-q3"), 0);
  PGconn *c = est_raw(db);
  assert_int_equal(
      est_scalar(c, "SELECT count(*) FROM saga_index WHERE saga_id = 'q'"), 0);
  PQfinish(c);
  /* the retry commits all but the two conflicting streams */
  assert_int_equal(es_batch_execute(r.store, r.batch), 0);
  int want2[5] = {0, ES_ERR_CONFLICT, ES_ERR_CONFLICT, 0, 0};
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(es_batch_result(r.batch, i)->status, want2[i]);
  assert_int_equal(es_batch_result(r.batch, 4)->version, 2);
  assert_int_equal(count_events("saga-q0"), 2);
  assert_int_equal(count_events("saga-q3"), 1);
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

/* A statement added to be planned at every run (unprepared) runs in the
 * batch's transaction like any other, with its parameters, as often as
 * the batch is executed; it is refused for the same inputs. */
static void test_a_replanned_statement_runs_with_its_batch(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_batch_t *b = es_batch_new(NULL);
  for (int round = 0; round < 7; round++) {
    es_batch_reset(b);
    char id[32], stream[40];
    snprintf(id, sizeof id, "rp%d", round);
    snprintf(stream, sizeof stream, "saga-%s", id);
    es_event_t e = est_event("E", "1");
    assert_int_equal(es_batch_add(b, stream, ES_NO_STREAM, &e, 1), 0);
    const char *p[2] = {id, "replanned"};
    assert_int_equal(es_batch_add_statement_replanned(b, upsert, 2, p), 0);
    assert_int_equal(es_batch_execute(s, b), 0);
  }
  PGconn *c = est_raw(db);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index WHERE"
                                 " state = 'replanned'"),
                   7);
  PQfinish(c);
  assert_int_equal(es_batch_add_statement_replanned(b, NULL, 0, NULL),
                   ES_ERR_INVALID);
  assert_int_equal(es_batch_add_statement_replanned(b, "COMMIT", 0, NULL),
                   ES_ERR_INVALID);
  assert_int_equal(es_batch_add_statement_replanned(NULL, upsert, 0, NULL),
                   ES_ERR_INVALID);
  es_batch_free(b);
  es_store_close(s);
}

/* A refused add says why through es_batch_last_error: the argument and
 * the fault, which event of several; "" after a reset. Before, the
 * reason was kept where no caller could read it. */
static void test_a_refused_add_says_why(void **state) {
  (void)state;
  es_batch_t *b = es_batch_new(NULL);
  assert_non_null(b);
  assert_string_equal(es_batch_last_error(b), "");
  es_event_t ev[3] = {est_event("A", "1"), est_event("", "2"),
                      est_event("C", "3")};
  assert_int_equal(es_batch_add(b, "why-1", ES_NO_STREAM, ev, 3),
                   ES_ERR_INVALID);
  if (!strstr(es_batch_last_error(b), "event 2 of 3: ") ||
      !strstr(es_batch_last_error(b), "type"))
    fail_msg("%s", es_batch_last_error(b));
  assert_int_equal(es_batch_add(b, "", ES_NO_STREAM, ev, 1), ES_ERR_INVALID);
  assert_non_null(strstr(es_batch_last_error(b), "stream id"));
  assert_int_equal(es_batch_add_statement(b, "COMMIT", 0, NULL),
                   ES_ERR_INVALID);
  assert_non_null(strstr(es_batch_last_error(b), "batch statement"));
  es_batch_reset(b);
  assert_string_equal(es_batch_last_error(b), "");
  es_batch_free(b);
  assert_string_equal(es_batch_last_error(NULL), "no batch");
  /* two events of 600 MB, each within max_payload, are past what one
   * append encodes: refused on their sizes, before anything is copied
   * (the pages are never touched: mapped, not written) */
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.max_payload = (size_t)1 << 30;
  b = es_batch_new(&o);
  assert_non_null(b);
  size_t big = (size_t)600 << 20;
  void *zeros = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
                                               MAP_NORESERVE,
                     -1, 0);
  assert_true(zeros != MAP_FAILED);
  es_event_t two[2] = {est_event("A", ""), est_event("A", "")};
  two[0].data = zeros, two[0].data_len = big;
  two[1].data = zeros, two[1].data_len = big;
  assert_int_equal(es_batch_add(b, "huge-1", ES_NO_STREAM, two, 2),
                   ES_ERR_TOO_LARGE);
  if (!strstr(es_batch_last_error(b), "bytes of event data in all"))
    fail_msg("%s", es_batch_last_error(b));
  munmap(zeros, big);
  es_batch_free(b);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_a_batch_commits_many_streams_and_its_statements_together),
      cmocka_unit_test(test_a_replanned_statement_runs_with_its_batch),
      cmocka_unit_test(test_a_refused_add_says_why),
      cmocka_unit_test(
          test_a_stale_stream_in_a_batch_reports_conflict_and_the_others_commit),
      cmocka_unit_test(test_a_failing_statement_aborts_the_whole_batch),
      cmocka_unit_test(test_a_refused_change_in_a_batch_aborts_it),
      cmocka_unit_test(test_a_batch_statement_is_prepared_once_per_connection),
      cmocka_unit_test(
          test_a_racing_writer_aborts_the_batch_and_names_the_culprit),
      cmocka_unit_test(
          test_each_stream_of_a_batch_answers_for_itself_with_its_positions),
      cmocka_unit_test(test_one_event_id_in_two_streams_of_a_batch_aborts_it),
      cmocka_unit_test(test_ids_the_library_drew_are_checked_once_sent),
      cmocka_unit_test(test_a_one_event_batch_of_one_stream_answers_for_itself),
      cmocka_unit_test(
          test_a_one_stream_batch_keeps_one_plan_that_probes_the_keys),
      cmocka_unit_test(
          test_a_race_in_a_large_batch_names_the_culprit_and_keeps_found_conflicts),
      cmocka_unit_test(
          test_a_statement_with_the_wrong_parameter_count_aborts_the_batch),
      cmocka_unit_test(test_server_warnings_are_not_printed),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
