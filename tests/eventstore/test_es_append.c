/* The blocking face against the embedded PostgreSQL: migrations, appends
 * with expected versions, idempotent re-appends, the database's own
 * append-only refusals, bad input, snapshots and reconnecting. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void test_migrations_are_idempotent_and_recorded(void **state) {
  (void)state;
  char err[ES_ERRBUF_SIZE];
  int v = 0;
  assert_int_equal(es_migrate(db, &v, err, sizeof err), 0);
  assert_int_equal(v, es_schema_version());
  PGconn *c = est_raw(db);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_schema_version"),
                   es_schema_version());
  PQfinish(c);
}

/* A service may call es_migrate at every start as a role that may not
 * create tables: once the database is up to date there is nothing to
 * create, and nothing is tried. An older target is up to date too. */
static void test_an_up_to_date_database_needs_no_ddl_rights_to_migrate(
    void **state) {
  (void)state;
  char ci[1024], err[ES_ERRBUF_SIZE] = "";
  snprintf(ci, sizeof ci, "%s options='-c role=es_writer'", db);
  int v = 0;
  assert_int_equal(es_migrate(ci, &v, err, sizeof err), 0);
  assert_string_equal(err, "");
  assert_int_equal(v, es_schema_version());
  assert_int_equal(es_migrate_to(ci, 1, &v, err, sizeof err), 0);
  assert_int_equal(v, es_schema_version());
  /* a database a newer library migrated is said to be newer, at once:
   * not a DDL refusal */
  {
    char *newer = ts_pg_create_database("es_newer_writer");
    assert_int_equal(es_migrate(newer, &v, err, sizeof err), 0);
    PGconn *own = est_raw(newer);
    est_scalar(own, "INSERT INTO es_schema_version (version, name) VALUES "
                    "(9999, 'from a later release')");
    PQfinish(own);
    char wci[1024];
    snprintf(wci, sizeof wci, "%s options='-c role=es_writer'", newer);
    assert_int_equal(es_migrate(wci, &v, err, sizeof err), ES_ERR_SCHEMA);
    if (!strstr(err, "database schema version 9999 is newer"))
      fail_msg("%s", err);
    est_drop(newer);
  }
  /* on a bare database the same role is refused, with the reason */
  char *bare = ts_pg_create_database("es_bare_writer");
  snprintf(ci, sizeof ci, "%s options='-c role=es_writer'", bare);
  assert_int_equal(es_migrate(ci, &v, err, sizeof err), ES_ERR_SCHEMA);
  assert_non_null(strstr(err, "permission denied"));
  assert_int_equal(v, 0);
  est_drop(bare);
}

typedef struct {
  char ci[1024];
  int rc, version;
  char err[ES_ERRBUF_SIZE];
} migrate_call_t;

static void *migrate_thread(void *arg) {
  migrate_call_t *m = arg;
  m->rc = es_migrate(m->ci, &m->version, m->err, sizeof m->err);
  return NULL;
}

/* A start that finds the schema behind and waits on the migration lock
 * while a migration runs reads the version again once it has the lock:
 * the schema is then up to date, so a role that may not create tables
 * passes (PostgreSQL refuses it even CREATE TABLE IF NOT EXISTS). */
static void test_a_writer_that_waited_for_a_migration_needs_no_ddl(
    void **state) {
  (void)state;
  char *race = ts_pg_create_database("es_lock_race");
  char err[ES_ERRBUF_SIZE];
  int v = 0;
  assert_int_equal(es_migrate(race, &v, err, sizeof err), 0);
  /* the "migration" under way: the lock held, the last version not yet
   * recorded */
  PGconn *job = est_raw(race);
  char sql[256];
  snprintf(sql, sizeof sql,
           "DELETE FROM es_schema_version WHERE version = %d",
           es_schema_version());
  est_scalar(job, sql);
  est_scalar(job, "SELECT pg_advisory_lock(7310868361213554)");
  migrate_call_t m = {.rc = -100};
  snprintf(m.ci, sizeof m.ci, "%s options='-c role=es_writer'", race);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, migrate_thread, &m), 0);
  /* wait until the writer waits on the lock */
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  while (est_scalar(job, "SELECT count(*) FROM pg_locks WHERE "
                         "locktype = 'advisory' AND NOT granted") == 0 &&
         ts_now_ms() < until)
    nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
  assert_int_equal(est_scalar(job, "SELECT count(*) FROM pg_locks WHERE "
                                   "locktype = 'advisory' AND NOT granted"),
                   1);
  /* the migration ends: its version recorded, the lock released */
  snprintf(sql, sizeof sql,
           "INSERT INTO es_schema_version (version, name) VALUES (%d, 'x')",
           es_schema_version());
  est_scalar(job, sql);
  est_scalar(job, "SELECT pg_advisory_unlock(7310868361213554)");
  pthread_join(th, NULL);
  if (m.rc != 0)
    fail_msg("es_migrate as es_writer: %d %s", m.rc, m.err);
  assert_int_equal(m.version, es_schema_version());
  PQfinish(job);
  est_drop(race);
}

/* A conninfo libpq cannot parse is INVALID, at once, with libpq's words
 * (not CONNECTION, which es_err_is_retriable calls retriable: a caller
 * retried it, and a subscription reconnected to it, for ever); es_migrate
 * says so without libpq's closing newline. */
static void test_a_malformed_conninfo_is_invalid_not_a_connection_loss(
    void **state) {
  (void)state;
  char err[ES_ERRBUF_SIZE] = "";
  es_store_t *s = NULL;
  assert_int_equal(es_store_open("foo=bar", NULL, &s, err, sizeof err),
                   ES_ERR_INVALID);
  assert_null(s);
  assert_string_equal(err, "invalid conninfo: invalid connection option "
                           "\"foo\"");
  assert_false(es_err_is_retriable(ES_ERR_INVALID));
  int v = -1;
  assert_int_equal(es_migrate("foo=bar", &v, err, sizeof err),
                   ES_ERR_INVALID);
  assert_int_equal(v, 0);
  /* a password is never echoed */
  assert_int_equal(
      es_migrate("password=s3cret bogus", &v, err, sizeof err),
      ES_ERR_INVALID);
  assert_null(strstr(err, "s3cret"));
  /* a server that is not there: CONNECTION, one line */
  assert_int_equal(es_migrate("host=/nonexistent connect_timeout=2", &v,
                              err, sizeof err),
                   ES_ERR_CONNECTION);
  assert_true(strlen(err) > 0 && err[strlen(err) - 1] != '\n');
}

static void test_open_on_an_unmigrated_database_returns_schema(void **state) {
  (void)state;
  char *bare = ts_pg_create_database("es_bare");
  es_store_t *s = NULL;
  char err[ES_ERRBUF_SIZE] = "";
  assert_int_equal(es_store_open(bare, NULL, &s, err, sizeof err),
                   ES_ERR_SCHEMA);
  assert_null(s);
  assert_non_null(strstr(err, "schema"));
  est_drop(bare);
}

static void test_append_then_read_stream_returns_events_and_metadata(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_kv_t kv[2] = {{"tenant", "acme \"eu\""}, {"user", "\xc3\xa9lodie"}};
  es_event_t ev[3] = {est_event("Created", "{\"a\":1}"),
                      est_event("Paid", ""), est_event("Shipped", "x")};
  ev[0].correlation_id = "saga-1";
  ev[0].causation_id = "cmd-9";
  ev[0].traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  ev[0].meta = kv;
  ev[0].n_meta = 2;
  es_append_result_t r;
  assert_int_equal(es_append(s, "order-1", ES_NO_STREAM, ev, 3, &r), 0);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.version, 3);
  assert_true(r.first_position > 0 && r.last_position == r.first_position + 2);
  es_event_t more = est_event("Closed", "z");
  assert_int_equal(es_append(s, "order-1", 3, &more, 1, &r), 0);
  assert_int_equal(r.version, 4);
  assert_int_equal(es_append(s, "order-1", ES_ANY_VERSION, &more, 1, &r),
                   ES_ERR_DUPLICATE); /* same id filled in by the first */

  es_page_t *p = NULL;
  assert_int_equal(es_read_stream(s, "order-1", 2, 100, &p), 0);
  assert_int_equal(p->n, 3);
  assert_int_equal(p->events[0].version, 2);
  assert_string_equal(p->events[0].type, "Paid");
  assert_int_equal(p->events[0].data_len, 0);
  assert_string_equal(p->events[2].type, "Closed");
  assert_memory_equal(p->events[2].id, more.id, 16);
  es_page_free(p);
  assert_int_equal(es_read_stream(s, "order-1", 1, 1, &p), 0);
  assert_int_equal(p->n, 1);
  es_recorded_t *e = &p->events[0];
  assert_memory_equal(e->id, ev[0].id, 16);
  assert_string_equal(e->stream_id, "order-1");
  assert_int_equal(e->data_len, 7);
  assert_memory_equal(e->data, "{\"a\":1}", 7);
  assert_string_equal(e->correlation_id, "saga-1");
  assert_string_equal(e->causation_id, "cmd-9");
  assert_string_equal(e->traceparent, ev[0].traceparent);
  assert_non_null(strstr(e->meta_json, "\"tenant\": \"acme \\\"eu\\\"\""));
  assert_non_null(strstr(e->meta_json, "\xc3\xa9lodie"));
  assert_true(e->recorded_at_us > INT64_C(1600000000000000));
  es_page_free(p);
  assert_int_equal(es_read_stream(s, "order-none", 1, 10, &p), 0);
  assert_int_equal(p->n, 0);
  es_page_free(p);
  es_store_close(s);
}

static void test_append_with_a_stale_version_returns_conflict_and_writes_nothing(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t a = est_event("A", "1"), b = est_event("B", "2");
  assert_int_equal(es_append(s, "conf-1", ES_NO_STREAM, &a, 1, NULL), 0);
  es_append_result_t r;
  assert_int_equal(es_append(s, "conf-1", ES_NO_STREAM, &b, 1, &r),
                   ES_ERR_CONFLICT);
  assert_int_equal(r.status, ES_ERR_CONFLICT);
  assert_int_equal(r.version, 1);
  assert_int_equal(es_append(s, "conf-1", 5, &b, 1, &r), ES_ERR_CONFLICT);
  assert_int_equal(es_append(s, "conf-2", 1, &b, 1, &r), ES_ERR_CONFLICT);
  assert_int_equal(r.version, 0);
  assert_string_equal(es_store_last_error(s),
                      "stream \"conf-2\" is at version 0, not the expected "
                      "1: nothing appended");
  assert_int_equal(count_events("conf-1"), 1);
  assert_int_equal(count_events("conf-2"), 0);
  /* the same event appended at the right version goes in */
  assert_int_equal(es_append(s, "conf-1", 1, &b, 1, &r), 0);
  assert_int_equal(r.version, 2);
  es_store_close(s);
}

static void test_reappending_stored_event_ids_reports_duplicate_and_writes_nothing(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t ev[2] = {est_event("A", "1"), est_event("B", "2")};
  assert_int_equal(es_append(s, "dup-1", ES_NO_STREAM, ev, 2, NULL), 0);
  /* the retry of an append whose acknowledgement was lost */
  es_append_result_t r;
  assert_int_equal(es_append(s, "dup-1", ES_NO_STREAM, ev, 2, &r),
                   ES_ERR_DUPLICATE);
  assert_int_equal(r.version, 2);
  assert_int_equal(r.first_position, 0);
  /* one stored id among new ones, or stored ids in another stream */
  es_event_t mix[2] = {ev[0], est_event("C", "3")};
  assert_int_equal(es_append(s, "dup-1", 2, mix, 2, &r), ES_ERR_ID_REUSED);
  assert_int_equal(es_append(s, "dup-2", ES_ANY_VERSION, ev, 2, &r),
                   ES_ERR_ID_REUSED);
  /* the same id twice in one append */
  es_event_t twice[2] = {est_event("D", "4"), est_event("D", "4")};
  assert_int_equal(es_uuid_v4(twice[0].id), 0);
  memcpy(twice[1].id, twice[0].id, 16);
  assert_int_equal(es_append(s, "dup-3", ES_ANY_VERSION, twice, 2, &r),
                   ES_ERR_ID_REUSED);
  assert_int_equal(count_events("dup-1"), 2);
  assert_int_equal(count_events("dup-2"), 0);
  assert_int_equal(count_events("dup-3"), 0);
  es_store_close(s);
}

static void expect_refusals(PGconn *c, const char *state_expected) {
  assert_string_equal(est_sqlstate(c, "UPDATE es_events SET event_type = 'x'"),
                      state_expected);
  assert_string_equal(est_sqlstate(c, "DELETE FROM es_events"),
                      state_expected);
  assert_string_equal(est_sqlstate(c, "TRUNCATE es_events"), state_expected);
}

static void test_update_delete_and_truncate_are_refused_for_the_owner(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t a = est_event("A", "1");
  assert_int_equal(es_append(s, "ro-1", ES_ANY_VERSION, &a, 1, NULL), 0);
  es_store_close(s);
  PGconn *c = est_raw(db);
  expect_refusals(c, "ES001");
  assert_int_equal(count_events("ro-1"), 1);
  PQfinish(c);
}

static void test_update_delete_and_truncate_are_refused_for_the_writer_role(
    void **state) {
  (void)state;
  PGconn *c = est_raw(db);
  est_scalar(c, "SET ROLE es_writer");
  expect_refusals(c, "42501"); /* insufficient privilege */
  /* the writer appends through es_append, as the library's statements
   * do, and reads es_events; category and bucket are the database's */
  assert_string_equal(
      est_sqlstate(c, "INSERT INTO es_append (stream_id, stream_version,"
                      " event_id, event_type, data) VALUES ('wr-1', 1,"
                      " gen_random_uuid(), 'A', '\\x00')"),
      "");
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_events WHERE"
                                 " stream_id = 'wr-1' AND category = 'wr'"
                                 " AND bucket = (hashtextextended('wr-1', 0)"
                                 " & 63) AND era = es_current_era()"),
                   1);
  /* not into es_events itself, and not with a category of its own */
  assert_string_equal(
      est_sqlstate(c, "INSERT INTO es_events (stream_id, stream_version,"
                      " event_id, event_type, data) VALUES ('wr-1', 2,"
                      " gen_random_uuid(), 'A', '\\x00')"),
      "42501");
  assert_string_equal(
      est_sqlstate(c, "INSERT INTO es_append (stream_id, stream_version,"
                      " event_id, event_type, data, category) VALUES"
                      " ('wr-1', 2, gen_random_uuid(), 'A', '\\x00', 'x')"),
      "42501");
  assert_string_equal(
      est_sqlstate(c, "INSERT INTO es_append (stream_id, stream_version,"
                      " event_id, event_type, data, bucket) VALUES"
                      " ('wr-1', 2, gen_random_uuid(), 'A', '\\x00', 1)"),
      "42501");
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_append"), 0);
  assert_string_equal(est_sqlstate(c, "DROP TABLE es_events"), "42501");
  PQfinish(c);
}

static void test_bad_input_returns_a_clear_code_and_writes_nothing(
    void **state) {
  (void)state;
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.max_payload = 100;
  es_store_t *s = NULL;
  assert_int_equal(es_store_open(db, &o, &s, NULL, 0), 0);
  es_event_t e = est_event("A", "1");
  char big[101];
  memset(big, 'x', sizeof big);
  es_event_t large = e;
  large.data = big;
  large.data_len = sizeof big;
  es_event_t bad = e;
  bad.type = "T\xe2\x82";
  assert_int_equal(es_append(s, NULL, 0, &e, 1, NULL), ES_ERR_INVALID);
  assert_int_equal(es_append(s, "", 0, &e, 1, NULL), ES_ERR_INVALID);
  assert_int_equal(es_append(s, "bad-1", 0, &large, 1, NULL),
                   ES_ERR_TOO_LARGE);
  assert_non_null(strstr(es_store_last_error(s), "more than 100"));
  assert_int_equal(es_append(s, "bad-1", 0, &bad, 1, NULL), ES_ERR_BAD_UTF8);
  assert_int_equal(es_append(s, "bad-\x80", 0, &e, 1, NULL), ES_ERR_BAD_UTF8);
  assert_int_equal(es_snapshot_save(s, "bad-1", 1, "S", big, sizeof big),
                   ES_ERR_TOO_LARGE);
  es_page_t *p = NULL;
  assert_int_equal(es_read_stream(s, "", 1, 10, &p), ES_ERR_INVALID);
  assert_int_equal(es_read_stream(s, "bad-1", 1, 0, &p), ES_ERR_INVALID);
  es_filter_t f = {"\xff", NULL};
  assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, &f, 10, &p),
                   ES_ERR_BAD_UTF8);
  assert_null(p);
  assert_int_equal(count_events("bad-1"), 0);
  /* the store still works after refusing */
  assert_int_equal(es_append(s, "bad-1", 0, &e, 1, NULL), 0);
  es_store_close(s);
}

static void test_snapshot_plus_later_events_rebuild_a_stream(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  for (int i = 0; i < 20; i++) {
    char d[16];
    snprintf(d, sizeof d, "%d", i + 1);
    es_event_t e = est_event("Added", d);
    assert_int_equal(es_append(s, "snap-1", i, &e, 1, NULL), 0);
  }
  es_snapshot_t *snap = NULL;
  assert_int_equal(es_snapshot_load(s, "snap-1", &snap), ES_ERR_NOT_FOUND);
  /* state = sum of the values; snapshot at version 15 */
  assert_int_equal(es_snapshot_save(s, "snap-1", 15, "Sum", "120", 3), 0);
  assert_int_equal(es_snapshot_save(s, "snap-1", 10, "Sum", "55", 2),
                   ES_ERR_CONFLICT);
  assert_int_equal(es_snapshot_load(s, "snap-1", &snap), 0);
  assert_int_equal(snap->version, 15);
  assert_string_equal(snap->type, "Sum");
  assert_int_equal(snap->len, 3);
  char text[4] = {0};
  memcpy(text, snap->data, 3);
  long sum = strtol(text, NULL, 10);
  assert_int_equal(sum, 120);
  es_page_t *p = NULL;
  assert_int_equal(es_read_stream(s, "snap-1", snap->version + 1, 100, &p), 0);
  assert_int_equal(p->n, 5);
  for (size_t i = 0; i < p->n; i++)
    sum += strtol((const char *)p->events[i].data, NULL, 10);
  assert_int_equal(sum, 210); /* 1 + ... + 20 */
  es_page_free(p);
  es_snapshot_free(snap);
  es_store_close(s);
}

static void test_a_terminated_connection_returns_connection_then_reconnects(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t a = est_event("A", "1"), b = est_event("B", "2");
  assert_int_equal(es_append(s, "conn-1", ES_NO_STREAM, &a, 1, NULL), 0);
  PGconn *admin = est_raw(db);
  assert_true(est_terminate_others(admin) >= 1);
  es_append_result_t r;
  assert_int_equal(es_append(s, "conn-1", 1, &b, 1, &r), ES_ERR_CONNECTION);
  assert_int_equal(r.status, ES_ERR_CONNECTION);
  assert_true(es_err_is_retriable(ES_ERR_CONNECTION));
  /* the retry reconnects; the first attempt never reached the server */
  assert_int_equal(es_append(s, "conn-1", 1, &b, 1, &r), 0);
  assert_int_equal(r.version, 2);
  /* a retry after a commit whose answer was lost reads as a duplicate */
  assert_int_equal(es_append(s, "conn-1", 1, &b, 1, &r), ES_ERR_DUPLICATE);
  es_page_t *p = NULL;
  assert_true(est_terminate_others(admin) >= 1);
  assert_int_equal(es_read_stream(s, "conn-1", 1, 10, &p), ES_ERR_CONNECTION);
  assert_int_equal(es_read_stream(s, "conn-1", 1, 10, &p), 0);
  assert_int_equal(p->n, 2);
  es_page_free(p);
  PQfinish(admin);
  es_store_close(s);
}

static long long sessions_named(PGconn *c, const char *app) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
           "'%s' AND datname = current_database()",
           app);
  return est_scalar(c, sql);
}

static void test_connection_defaults_apply_unless_the_conninfo_sets_them(
    void **state) {
  (void)state;
  static const char *const defaults[] = {"application_name", "es-default",
                                         "connect_timeout", "5", NULL};
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.conn_defaults = defaults;
  char err[ES_ERRBUF_SIZE];
  es_store_t *s = NULL;
  assert_int_equal(es_store_open(db, &o, &s, err, sizeof err), 0);
  PGconn *admin = est_raw(db);
  assert_int_equal(sessions_named(admin, "es-default"), 1);
  /* a reconnect uses them too */
  assert_true(est_terminate_others(admin) >= 1);
  es_event_t a = est_event("A", "1");
  assert_int_equal(es_append(s, "defaults-1", ES_NO_STREAM, &a, 1, NULL),
                   ES_ERR_CONNECTION);
  assert_int_equal(es_append(s, "defaults-1", ES_NO_STREAM, &a, 1, NULL), 0);
  assert_int_equal(sessions_named(admin, "es-default"), 1);
  es_store_close(s);
  /* the conninfo's own value wins over the default */
  char ci[1024];
  snprintf(ci, sizeof ci, "%s application_name=es-own", db);
  assert_int_equal(es_store_open(ci, &o, &s, err, sizeof err), 0);
  assert_int_equal(sessions_named(admin, "es-own"), 1);
  assert_int_equal(sessions_named(admin, "es-default"), 0);
  es_store_close(s);
  PQfinish(admin);
}

/* es_store_open with migrate runs the migration with the conn_defaults
 * too. Seen through a default that changes the role: on a bare database
 * the migration, run as es_writer, is refused (before, it ran on the
 * bare conninfo as the owner and the store then opened as es_writer);
 * once the owner migrated, the same open passes, creating nothing. */
static void test_a_migrating_open_migrates_with_the_conn_defaults(
    void **state) {
  (void)state;
  char *bare = ts_pg_create_database("es_migrate_defaults");
  static const char *const defaults[] = {"options", "-c role=es_writer",
                                         NULL};
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.migrate = 1;
  o.conn_defaults = defaults;
  char err[ES_ERRBUF_SIZE] = "";
  es_store_t *s = NULL;
  assert_int_equal(es_store_open(bare, &o, &s, err, sizeof err),
                   ES_ERR_SCHEMA);
  if (!strstr(err, "permission denied"))
    fail_msg("es_store_open: %s", err);
  assert_null(s);
  int v = 0;
  assert_int_equal(es_migrate(bare, &v, err, sizeof err), 0);
  int rc = es_store_open(bare, &o, &s, err, sizeof err);
  if (rc != 0)
    fail_msg("es_store_open after the migration: %s (%s)", err,
             es_err_name(rc));
  es_store_close(s);
  est_drop(bare);
}

/* A bad value is named by the call's own argument, with the value: a
 * member read's max 0 said "members must be 1 to 64, member 0 to members
 * - 1" (arguments es_member_read does not take), a subscription
 * checkpoint's negative position talked about members. */
static void test_a_bad_value_is_named_by_its_own_argument(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_page_t *p = NULL;
  const char *msg;
  assert_int_equal(es_member_read(s, "arg", "c", 1, 0, &p), ES_ERR_INVALID);
  msg = es_store_last_error(s);
  if (!strstr(msg, "max must be 1 to 10000 (got 0)") || strstr(msg, "member"))
    fail_msg("es_member_read, max 0: \"%s\"", msg);
  assert_int_equal(es_member_read(s, "arg", "c", 0, 10, &p), ES_ERR_INVALID);
  assert_non_null(
      strstr(es_store_last_error(s), "member id must be positive (got 0)"));
  assert_int_equal(es_group_read(s, "arg", "c", 0, 1, 0, &p), ES_ERR_INVALID);
  msg = es_store_last_error(s);
  if (!strstr(msg, "max must be 1 to 10000 (got 0)") || strstr(msg, "member"))
    fail_msg("es_group_read, max 0: \"%s\"", msg);
  assert_int_equal(es_group_read(s, "arg", "c", 0, 0, 10, &p),
                   ES_ERR_INVALID);
  msg = es_store_last_error(s);
  if (!strstr(msg, "members must be 1 to 64 (got 0)") || strstr(msg, "max"))
    fail_msg("es_group_read, members 0: \"%s\"", msg);
  assert_int_equal(es_group_read(s, "arg", "c", 2, 2, 10, &p),
                   ES_ERR_INVALID);
  assert_non_null(strstr(es_store_last_error(s), "(got member 2 of 2)"));
  assert_null(p);

  assert_int_equal(es_checkpoint_save(s, "arg", (es_pos_t){1, -1}),
                   ES_ERR_INVALID);
  msg = es_store_last_error(s);
  if (!strstr(msg, "position must not be negative (got -1)") ||
      strstr(msg, "member"))
    fail_msg("es_checkpoint_save, position -1: \"%s\"", msg);
  assert_int_equal(es_group_ack(s, "arg", 0, 65, (es_pos_t){1, 1}),
                   ES_ERR_INVALID);
  msg = es_store_last_error(s);
  if (!strstr(msg, "members must be 1 to 64 (got 65)") ||
      strstr(msg, "position"))
    fail_msg("es_group_ack, members 65: \"%s\"", msg);
  assert_int_equal(es_member_ack(s, "arg", 7, 1, (es_pos_t){1, -2}),
                   ES_ERR_INVALID);
  msg = es_store_last_error(s);
  if (!strstr(msg, "position must not be negative (got -2)") ||
      strstr(msg, "member id"))
    fail_msg("es_member_ack, position -2: \"%s\"", msg);
  es_store_close(s);
}

/* A call refused for a missing argument says which in the last error,
 * not the text of an earlier call that failed. */
static void test_a_missing_argument_is_named_by_the_last_error(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t e = est_event("A", "1");
  es_append_result_t r;
  memset(&r, 0x5a, sizeof r);
  assert_int_equal(es_append(s, "", 0, &e, 1, &r), ES_ERR_INVALID);
  assert_non_null(strstr(es_store_last_error(s), "stream id is empty"));
  /* result answers for a refused call too, not left as it was */
  assert_int_equal(r.status, ES_ERR_INVALID);
  assert_int_equal(r.first_position, 0);
  int64_t id;
  assert_int_equal(es_read_stream(s, "arg-1", 1, 10, NULL), ES_ERR_INVALID);
  assert_string_equal(es_store_last_error(s), "out is required");
  assert_int_equal(es_append(s, "", 0, &e, 1, NULL), ES_ERR_INVALID);
  assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, NULL, 10, NULL),
                   ES_ERR_INVALID);
  assert_string_equal(es_store_last_error(s), "out is required");
  assert_int_equal(es_append(s, "", 0, &e, 1, NULL), ES_ERR_INVALID);
  assert_int_equal(es_checkpoint_load(s, "arg", NULL), ES_ERR_INVALID);
  assert_string_equal(es_store_last_error(s), "pos is required");
  assert_int_equal(es_snapshot_load(s, "arg-1", NULL), ES_ERR_INVALID);
  assert_string_equal(es_store_last_error(s), "out is required");
  assert_int_equal(es_group_join(s, "arg", 1000, NULL, NULL), ES_ERR_INVALID);
  assert_string_equal(es_store_last_error(s), "member_id is required");
  assert_int_equal(es_batch_execute(s, NULL), ES_ERR_INVALID);
  assert_string_equal(es_store_last_error(s), "batch is required");
  assert_int_equal(es_group_read(s, "arg", "c", 0, 1, 10, NULL),
                   ES_ERR_INVALID);
  assert_string_equal(es_store_last_error(s), "out is required");
  assert_int_equal(es_member_read(s, "arg", "c", 1, 10, NULL), ES_ERR_INVALID);
  assert_string_equal(es_store_last_error(s), "out is required");
  /* a join's bad lease names the lease, not the id the library drew */
  assert_int_equal(es_group_join(s, "arg", 0, &id, NULL), ES_ERR_INVALID);
  assert_non_null(strstr(es_store_last_error(s), "lease must be 1 to"));
  assert_null(strstr(es_store_last_error(s), "member"));
  /* a metadata key given twice (jsonb would keep the last value only) */
  es_kv_t twice[2] = {{"tenant", "a"}, {"tenant", "b"}};
  e.meta = twice;
  e.n_meta = 2;
  assert_int_equal(es_append(s, "arg-1", ES_NO_STREAM, &e, 1, NULL),
                   ES_ERR_INVALID);
  assert_non_null(
      strstr(es_store_last_error(s), "metadata key \"tenant\" is given twice"));
  assert_int_equal(count_events("arg-1"), 0);
  es_store_close(s);
}

/* The expected version INT64_MAX is one no stream has: CONFLICT, as for
 * any other version the stream is not at, not a database error from the
 * single-event statement's version + 1. */
static void test_the_largest_expected_version_is_a_conflict(void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  es_event_t e = est_event("A", "1");
  assert_int_equal(es_append(s, "max-1", ES_NO_STREAM, &e, 1, NULL), 0);
  es_append_result_t r;
  es_event_t f = est_event("B", "2");
  assert_int_equal(es_append(s, "max-1", INT64_MAX, &f, 1, &r),
                   ES_ERR_CONFLICT);
  assert_int_equal(r.status, ES_ERR_CONFLICT);
  assert_int_equal(r.version, 1);
  assert_non_null(strstr(es_store_last_error(s), "is at version 1"));
  es_event_t g = est_event("C", "3");
  assert_int_equal(es_append(s, "max-2", INT64_MAX, &g, 1, &r),
                   ES_ERR_CONFLICT);
  assert_int_equal(r.version, 0);
  assert_int_equal(count_events("max-1"), 1);
  assert_int_equal(count_events("max-2"), 0);
  es_store_close(s);
}

/* The blocking calls that run a statement of the store's own (a
 * checkpoint saved or reset, a stream closed) answer a refusal by the
 * database with DB, as their contracts say, not with the BATCH_ABORTED
 * of a caller's batch (retriable, and the caller made no batch). */
static void test_a_refused_checkpoint_or_close_answers_db(void **state) {
  (void)state;
  static const char *const read_only[] = {
      "options", "-c default_transaction_read_only=on", NULL};
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.conn_defaults = read_only;
  es_store_t *s = NULL;
  char err[ES_ERRBUF_SIZE];
  assert_int_equal(es_store_open(db, &o, &s, err, sizeof err), 0);
  es_pos_t at = {1, 1};
  assert_int_equal(es_checkpoint_save(s, "ro-sub", at), ES_ERR_DB);
  assert_non_null(strstr(es_store_last_error(s), "read-only transaction"));
  assert_int_equal(es_checkpoint_reset(s, "ro-sub"), ES_ERR_DB);
  assert_int_equal(es_close_stream(s, "ro-1"), ES_ERR_DB);
  assert_int_equal(es_group_ack(s, "ro-group", 0, 1, at), ES_ERR_DB);
  es_event_t e = est_event("A", "1");
  assert_int_equal(es_append(s, "ro-1", ES_NO_STREAM, &e, 1, NULL), ES_ERR_DB);
  /* a caller's batch still answers BATCH_ABORTED */
  es_batch_t *b = es_batch_new(NULL);
  assert_int_equal(es_batch_add_checkpoint(b, "ro-sub", at), 0);
  assert_int_equal(es_batch_execute(s, b), ES_ERR_BATCH_ABORTED);
  es_batch_free(b);
  es_store_close(s);
}

/* max_payload raised past what PostgreSQL takes in one value (1 GiB):
 * larger data is still TOO_LARGE, refused before a byte of it is read
 * (the data here is far shorter than the length claimed). */
static void test_data_larger_than_a_database_value_is_too_large(
    void **state) {
  (void)state;
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.max_payload = SIZE_MAX;
  es_store_t *s = NULL;
  assert_int_equal(es_store_open(db, &o, &s, NULL, 0), 0);
  es_event_t e = est_event("A", "1");
  e.data_len = (size_t)1 << 31;
  assert_int_equal(es_append(s, "huge-1", ES_NO_STREAM, &e, 1, NULL),
                   ES_ERR_TOO_LARGE);
  assert_non_null(strstr(es_store_last_error(s), "more than 1073741823"));
  assert_int_equal(es_snapshot_save(s, "huge-1", 1, "S", "1", (size_t)1 << 31),
                   ES_ERR_TOO_LARGE);
  assert_non_null(strstr(es_store_last_error(s), "more than 1073741823"));
  es_batch_t *b = es_batch_new(&o);
  assert_int_equal(es_batch_add(b, "huge-1", ES_ANY_VERSION, &e, 1),
                   ES_ERR_TOO_LARGE);
  es_batch_free(b);
  assert_int_equal(count_events("huge-1"), 0);
  es_store_close(s);
}

static int setup(void **state) {
  (void)state;
  db = est_db("es_append");
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
      cmocka_unit_test(test_migrations_are_idempotent_and_recorded),
      cmocka_unit_test(
          test_an_up_to_date_database_needs_no_ddl_rights_to_migrate),
      cmocka_unit_test(test_a_writer_that_waited_for_a_migration_needs_no_ddl),
      cmocka_unit_test(
          test_a_malformed_conninfo_is_invalid_not_a_connection_loss),
      cmocka_unit_test(test_open_on_an_unmigrated_database_returns_schema),
      cmocka_unit_test(test_a_migrating_open_migrates_with_the_conn_defaults),
      cmocka_unit_test(test_append_then_read_stream_returns_events_and_metadata),
      cmocka_unit_test(
          test_append_with_a_stale_version_returns_conflict_and_writes_nothing),
      cmocka_unit_test(
          test_reappending_stored_event_ids_reports_duplicate_and_writes_nothing),
      cmocka_unit_test(test_update_delete_and_truncate_are_refused_for_the_owner),
      cmocka_unit_test(
          test_update_delete_and_truncate_are_refused_for_the_writer_role),
      cmocka_unit_test(test_bad_input_returns_a_clear_code_and_writes_nothing),
      cmocka_unit_test(test_snapshot_plus_later_events_rebuild_a_stream),
      cmocka_unit_test(
          test_a_terminated_connection_returns_connection_then_reconnects),
      cmocka_unit_test(
          test_connection_defaults_apply_unless_the_conninfo_sets_them),
      cmocka_unit_test(test_a_missing_argument_is_named_by_the_last_error),
      cmocka_unit_test(test_a_bad_value_is_named_by_its_own_argument),
      cmocka_unit_test(test_the_largest_expected_version_is_a_conflict),
      cmocka_unit_test(test_a_refused_checkpoint_or_close_answers_db),
      cmocka_unit_test(test_data_larger_than_a_database_value_is_too_large),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
