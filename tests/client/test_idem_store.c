/* The PostgreSQL effect store on its own (no Kafka): its two statements
 * are prepared once per session and really used, prepared again after a
 * PQreset or a DEALLOCATE ALL, run inside a transaction the caller left
 * open, fall back to unprepared statements when their name is taken; a
 * second store opens on the existing table and finds what the first
 * recorded; replies round-trip exactly (binary payload, reason or none,
 * the largest attempt), the keep-or-replace rule holds, and a reply with
 * no place in the table is refused; a lost connection fails every call
 * until the caller resets it; a failed call says why (last_error). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "saga/client.h"
#include "test_support.h"

/* What a lookup answered, copied out of the callback. */
typedef struct got {
  int calls, err, found;
  saga_outcome_t outcome;
  char payload[64];
  size_t payload_len;
  char reason[128];
  int has_reason;
  uint32_t attempt;
} got_t;

static void on_lookup(void *arg, int err, int found,
                      const saga_recorded_reply_t *r) {
  got_t *g = arg;
  g->calls++;
  g->err = err;
  g->found = found;
  if (found) {
    g->outcome = r->outcome;
    g->payload_len = r->payload_len;
    assert_true(r->payload_len <= sizeof g->payload);
    memcpy(g->payload, r->payload, r->payload_len);
    g->has_reason = r->reason != NULL;
    snprintf(g->reason, sizeof g->reason, "%s", r->reason ? r->reason : "");
    g->attempt = r->attempt;
  }
}

static got_t lookup(saga_idem_store_t *s, const char *key) {
  got_t g = {0};
  s->lookup(s->ctx, key, on_lookup, &g);
  assert_int_equal(g.calls, 1); /* answered before the call returns */
  return g;
}

static void on_record(void *arg, int err) {
  int *e = arg;
  *e = err;
}

static int record(saga_idem_store_t *s, const char *key, saga_outcome_t o,
                  const void *payload, size_t len, const char *reason,
                  uint32_t attempt) {
  saga_recorded_reply_t r = {o, payload, len, reason, attempt};
  int err = 1;
  s->record(s->ctx, key, &r, on_record, &err);
  assert_int_not_equal(err, 1); /* answered before the call returns */
  return err;
}

/* Executions of this session's prepared statements named like `like`
 * (pg_prepared_statements counts each one's plans), -1 when there is
 * none; *n_out (may be NULL): how many there are. */
static long executions_of(PGconn *c, const char *like, long *n_out) {
  const char *v[1] = {like};
  PGresult *r = PQexecParams(
      c,
      "SELECT count(*), coalesce(sum(generic_plans + custom_plans), 0)"
      " FROM pg_prepared_statements WHERE name LIKE $1",
      1, NULL, v, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  long n = atol(PQgetvalue(r, 0, 0)), runs = atol(PQgetvalue(r, 0, 1));
  PQclear(r);
  if (n_out)
    *n_out = n;
  return n ? runs : -1;
}

static long executions(PGconn *c, const char *like) {
  return executions_of(c, like, NULL);
}

static void exec_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
}

static PGconn *connect_to(const char *ci) {
  PGconn *c = PQconnectdb(ci);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  return c;
}

static void open_store(PGconn *c, saga_idem_store_t *s) {
  char err[256];
  assert_int_equal(saga_idem_store_pg(c, s, err, sizeof err), 0);
  assert_non_null(s->destroy);
}

/* A scratch database, a connection to it and a store on that. */
typedef struct fixture {
  char *ci;
  PGconn *c;
  saga_idem_store_t s;
} fixture_t;

static void fixture_open(fixture_t *f, const char *db) {
  f->ci = ts_pg_create_database(db);
  f->c = connect_to(f->ci);
  open_store(f->c, &f->s);
}

static void fixture_close(fixture_t *f) {
  f->s.destroy(f->s.ctx);
  /* destroy leaves the caller's connection alone */
  assert_int_equal(PQstatus(f->c), CONNECTION_OK);
  PQfinish(f->c);
  ts_pg_drop_database(f->ci);
}

static void test_statements_are_prepared_once_per_session(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "idem_prepared");
  PGconn *c = f.c;
  saga_idem_store_t s = f.s;
  /* nothing prepared before the first use */
  assert_int_equal(executions(c, "saga_idem_%"), -1);

  assert_int_equal(lookup(&s, "s1/charge/DO").found, 0);
  assert_int_equal(
      record(&s, "s1/charge/DO", SAGA_OUTCOME_SUCCESS, "ok", 2, NULL, 1), 0);
  for (int i = 0; i < 3; i++) {
    got_t g = lookup(&s, "s1/charge/DO");
    assert_int_equal(g.found, 1);
    assert_int_equal(g.outcome, SAGA_OUTCOME_SUCCESS);
  }
  /* every call ran a statement prepared once: 4 lookups, 1 record */
  assert_int_equal(executions(c, "saga_idem_lookup_%"), 4);
  assert_int_equal(executions(c, "saga_idem_record_%"), 1);

  /* A new session: prepared again on first use. */
  PQreset(c);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  assert_int_equal(executions(c, "saga_idem_%"), -1);
  assert_int_equal(lookup(&s, "s1/charge/DO").found, 1);
  assert_int_equal(
      record(&s, "s2/charge/DO", SAGA_OUTCOME_FAILURE, NULL, 0, "no", 1), 0);
  assert_int_equal(executions(c, "saga_idem_lookup_%"), 1);
  assert_int_equal(executions(c, "saga_idem_record_%"), 1);

  /* The statements dropped under the store: prepared again, no error. */
  exec_ok(c, "DEALLOCATE ALL");
  got_t g = lookup(&s, "s2/charge/DO");
  assert_int_equal(g.err, 0);
  assert_int_equal(g.found, 1);
  assert_int_equal(g.outcome, SAGA_OUTCOME_FAILURE);
  assert_int_equal(
      record(&s, "s3/charge/DO", SAGA_OUTCOME_SUCCESS, "x", 1, NULL, 1), 0);
  assert_int_equal(executions(c, "saga_idem_lookup_%"), 1);
  assert_int_equal(executions(c, "saga_idem_record_%"), 1);

  fixture_close(&f);
}

static void test_a_transaction_left_open_is_joined_not_broken(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "idem_in_tx");
  PGconn *c = f.c;
  saga_idem_store_t s = f.s;
  exec_ok(c, "BEGIN");
  assert_int_equal(lookup(&s, "t1/ship/DO").found, 0);
  assert_int_equal(
      record(&s, "t1/ship/DO", SAGA_OUTCOME_SUCCESS, "a", 1, NULL, 1), 0);
  assert_int_equal(lookup(&s, "t1/ship/DO").found, 1);
  /* nothing of the store's own was prepared inside the transaction, and
   * the transaction is still usable */
  assert_int_equal(executions(c, "saga_idem_%"), -1);
  assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
  exec_ok(c, "ROLLBACK");
  /* the record was part of that transaction */
  assert_int_equal(lookup(&s, "t1/ship/DO").found, 0);
  assert_int_equal(executions(c, "saga_idem_lookup_%"), 1);

  /* saga_pg_record_in_transaction, committed with the caller's effect */
  char err[256];
  saga_recorded_reply_t r = {SAGA_OUTCOME_SUCCESS, "paid", 4, NULL, 2};
  exec_ok(c, "BEGIN");
  assert_int_equal(
      saga_pg_record_in_transaction(c, "t2/pay/DO", &r, err, sizeof err), 0);
  exec_ok(c, "COMMIT");
  got_t g = lookup(&s, "t2/pay/DO");
  assert_int_equal(g.found, 1);
  assert_int_equal(g.attempt, 2);
  assert_memory_equal(g.payload, "paid", 4);
  /* the library's own record of the same reply keeps it */
  assert_int_equal(
      record(&s, "t2/pay/DO", SAGA_OUTCOME_SUCCESS, "paid", 4, NULL, 2), 0);
  fixture_close(&f);
}

/* The name of the store's prepared lookup in c's session. */
static void lookup_name(PGconn *c, char *buf, size_t len) {
  PGresult *r = PQexec(c, "SELECT name FROM pg_prepared_statements"
                          " WHERE name LIKE 'saga_idem_lookup_%'");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_int_equal(PQntuples(r), 1);
  snprintf(buf, len, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
}

static void test_a_taken_statement_name_falls_back_to_unprepared(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "idem_taken");
  PGconn *c = f.c;
  saga_idem_store_t s = f.s;
  assert_int_equal(
      record(&s, "u1/pack/DO", SAGA_OUTCOME_SUCCESS, "packed", 6, NULL, 1), 0);
  assert_int_equal(lookup(&s, "u1/pack/DO").found, 1);
  char name[64], sql[160];
  lookup_name(c, name, sizeof name);
  /* A new session in which that name already means something else (as
   * behind a pooler that hands sessions around). */
  PQreset(c);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  snprintf(sql, sizeof sql, "PREPARE %s(text) AS SELECT 9, $1", name);
  exec_ok(c, sql);
  for (int i = 0; i < 2; i++) {
    got_t g = lookup(&s, "u1/pack/DO");
    assert_int_equal(g.err, 0);
    assert_int_equal(g.found, 1);
    assert_int_equal(g.payload_len, 6);
    assert_memory_equal(g.payload, "packed", 6);
  }
  /* the foreign statement was never run */
  assert_int_equal(executions(c, name), 0);
  assert_int_equal(
      record(&s, "u2/pack/DO", SAGA_OUTCOME_SUCCESS, "b", 1, NULL, 1), 0);
  assert_int_equal(lookup(&s, "u2/pack/DO").found, 1);
  fixture_close(&f);
}

static void test_replies_round_trip_and_keep_their_rule(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "idem_rows");
  PGconn *c = f.c, *c2 = connect_to(f.ci);
  saga_idem_store_t s = f.s, s2, s3;
  const char bin[5] = {'a', '\0', '\xff', '\n', 'z'};
  assert_int_equal(record(&s, "v1/a/DO", SAGA_OUTCOME_RETRYABLE, bin,
                          sizeof bin, "busy: try again", 1),
                   0);
  /* the largest attempt the column holds (the participant's voiding
   * record uses it) */
  assert_int_equal(record(&s, "v1/a/COMPENSATE", SAGA_OUTCOME_FAILURE, NULL, 0,
                          NULL, INT32_MAX),
                   0);

  /* A second store, on another connection, where the table exists. */
  open_store(c2, &s2);
  got_t g = lookup(&s2, "v1/a/DO");
  assert_int_equal(g.found, 1);
  assert_int_equal(g.outcome, SAGA_OUTCOME_RETRYABLE);
  assert_int_equal(g.payload_len, sizeof bin);
  assert_memory_equal(g.payload, bin, sizeof bin);
  assert_int_equal(g.has_reason, 1);
  assert_string_equal(g.reason, "busy: try again");
  assert_int_equal(g.attempt, 1);
  g = lookup(&s2, "v1/a/COMPENSATE");
  assert_int_equal(g.found, 1);
  assert_int_equal(g.outcome, SAGA_OUTCOME_FAILURE);
  assert_int_equal(g.payload_len, 0);
  assert_int_equal(g.has_reason, 0);
  assert_int_equal(g.attempt, (uint32_t)INT32_MAX);

  /* A later attempt replaces a RETRYABLE; nothing replaces a SUCCESS;
   * an earlier attempt replaces nothing. */
  assert_int_equal(
      record(&s2, "v1/a/DO", SAGA_OUTCOME_SUCCESS, "done", 4, NULL, 2), 0);
  assert_int_equal(
      record(&s, "v1/a/DO", SAGA_OUTCOME_FAILURE, NULL, 0, "late", 3), 0);
  assert_int_equal(
      record(&s, "v1/b/DO", SAGA_OUTCOME_FAILURE, NULL, 0, "second", 2), 0);
  assert_int_equal(
      record(&s2, "v1/b/DO", SAGA_OUTCOME_FAILURE, NULL, 0, "first", 1), 0);
  g = lookup(&s, "v1/a/DO");
  assert_int_equal(g.outcome, SAGA_OUTCOME_SUCCESS);
  assert_int_equal(g.attempt, 2);
  assert_memory_equal(g.payload, "done", 4);
  assert_int_equal(g.has_reason, 0);
  g = lookup(&s, "v1/b/DO");
  assert_string_equal(g.reason, "second");
  assert_int_equal(g.attempt, 2);

  /* Two stores on one connection each keep their own statements. */
  open_store(c, &s3);
  assert_int_equal(lookup(&s3, "v1/b/DO").found, 1);
  assert_int_equal(lookup(&s, "v1/b/DO").found, 1);
  long n = 0;
  assert_int_equal(executions_of(c, "saga_idem_lookup_%", &n), 3 + 1);
  assert_int_equal(n, 2);

  /* No place in the table: refused, nothing written, the connection
   * fine. */
  assert_int_equal(record(&s, "v2/a/DO", SAGA_OUTCOME_SUCCESS, NULL, 0, NULL,
                          (uint32_t)INT32_MAX + 1),
                   SAGA_ESTORE);
  assert_int_equal(record(&s, "v2/a/DO", (saga_outcome_t)7, NULL, 0, NULL, 1),
                   SAGA_ESTORE);
  char err[256] = "";
  saga_recorded_reply_t bad = {SAGA_OUTCOME_SUCCESS, NULL, 0, NULL, UINT32_MAX};
  assert_int_equal(
      saga_pg_record_in_transaction(c, "v2/a/DO", &bad, err, sizeof err),
      SAGA_ESTORE);
  assert_non_null(strstr(err, "attempt 4294967295"));
  assert_non_null(strstr(err, "v2/a/DO"));
  bad = (saga_recorded_reply_t){(saga_outcome_t)0, NULL, 0, NULL, 1};
  assert_int_equal(
      saga_pg_record_in_transaction(c, "v2/a/DO", &bad, err, sizeof err),
      SAGA_ESTORE);
  assert_non_null(strstr(err, "outcome 0"));
  /* A length without bytes: refused, never 5 bytes read from nowhere
   * (it read past a 1-byte literal and stored what it found there). */
  bad = (saga_recorded_reply_t){SAGA_OUTCOME_SUCCESS, NULL, 5, NULL, 1};
  assert_int_equal(
      saga_pg_record_in_transaction(c, "v2/a/DO", &bad, err, sizeof err),
      SAGA_ESTORE);
  assert_non_null(strstr(err, "payload is NULL"));
  assert_int_equal(record(&s, "v2/a/DO", SAGA_OUTCOME_SUCCESS, NULL, 5, NULL,
                          1),
                   SAGA_ESTORE);
  saga_idem_store_t mem;
  assert_int_equal(saga_idem_store_memory(&mem), 0);
  assert_int_equal(record(&mem, "v2/a/DO", SAGA_OUTCOME_SUCCESS, NULL, 5,
                          NULL, 1),
                   SAGA_EINVAL);
  assert_int_equal(lookup(&mem, "v2/a/DO").found, 0);
  mem.destroy(mem.ctx);
  assert_int_equal(lookup(&s, "v2/a/DO").found, 0);
  assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

  s2.destroy(s2.ctx);
  s3.destroy(s3.ctx);
  PQfinish(c2);
  fixture_close(&f);
}

/* The connection is the caller's: when its session is lost (a server
 * restart, pg_terminate_backend), every lookup and record answers
 * SAGA_ESTORE -- nothing is recorded, nothing found -- until the caller
 * resets it (docs/client.md, "The PostgreSQL store"); then the store
 * prepares its statements again by itself and finds what it recorded. A
 * NULL connection or place is SAGA_EINVAL, as the header says (it was
 * SAGA_ESTORE), and a connection that is not open SAGA_ESTORE with
 * libpq's word. */
static void test_a_lost_connection_fails_until_the_caller_resets_it(
    void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "client_idem_lost");
  assert_int_equal(record(&f.s, "l1/a/DO", SAGA_OUTCOME_SUCCESS, "p", 1, NULL,
                          1),
                   0);
  PGconn *admin = connect_to(f.ci);
  char sql[96];
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)",
           PQbackendPID(f.c));
  PQclear(PQexec(admin, sql));
  got_t g = lookup(&f.s, "l1/a/DO");
  assert_int_equal(g.err, SAGA_ESTORE);
  assert_int_equal(g.found, 0);
  assert_int_equal(PQstatus(f.c), CONNECTION_BAD);
  assert_int_equal(record(&f.s, "l1/b/DO", SAGA_OUTCOME_SUCCESS, "p", 1, NULL,
                          1),
                   SAGA_ESTORE);
  assert_int_equal(lookup(&f.s, "l1/a/DO").err, SAGA_ESTORE);

  saga_idem_store_t other;
  char err[256] = "";
  assert_int_equal(saga_idem_store_pg(f.c, &other, err, sizeof err),
                   SAGA_ESTORE);
  assert_non_null(strstr(err, "open PostgreSQL connection"));
  assert_int_equal(saga_idem_store_pg(NULL, &other, err, sizeof err),
                   SAGA_EINVAL);
  assert_int_equal(saga_idem_store_pg(admin, NULL, err, sizeof err),
                   SAGA_EINVAL);

  PQreset(f.c);
  assert_int_equal(PQstatus(f.c), CONNECTION_OK);
  g = lookup(&f.s, "l1/a/DO");
  assert_int_equal(g.err, 0);
  assert_int_equal(g.found, 1);
  assert_int_equal(record(&f.s, "l1/b/DO", SAGA_OUTCOME_SUCCESS, "p", 1, NULL,
                          1),
                   0);
  assert_int_equal(lookup(&f.s, "l1/b/DO").found, 1);
  PQfinish(admin);
  fixture_close(&f);
}

/* A lookup or record that fails says why through the store's last_error,
 * in the server's words and naming the key, and "" after a call that
 * worked: here the store's session runs as a role that may not read or
 * write the table (as a participant given the wrong database user would).
 * Before, the text was dropped and the participant's caller saw only
 * SAGA_ESTORE; the same for a reply that has no place in the table, and
 * for the memory store's refusals. */
/* A service's least-privilege role, with rights on the table alone and
 * none to create tables, opens the store once the table is in place: the
 * store looks first and runs no DDL (PostgreSQL refuses even CREATE TABLE
 * IF NOT EXISTS without CREATE on the schema). */
static void test_a_role_with_rights_on_the_table_alone_opens_it(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "client_idem_writer"); /* the owner made the table */
  char role[64], sql[200];
  snprintf(role, sizeof role, "saga_idem_writer_%ld", (long)getpid());
  snprintf(sql, sizeof sql, "CREATE ROLE %s NOLOGIN", role);
  exec_ok(f.c, sql);
  snprintf(sql, sizeof sql,
           "GRANT SELECT, INSERT, UPDATE ON saga_idempotency TO %s", role);
  exec_ok(f.c, sql);
  PGconn *w = connect_to(f.ci);
  snprintf(sql, sizeof sql, "SET ROLE %s", role);
  exec_ok(w, sql);
  saga_idem_store_t ws;
  open_store(w, &ws);
  assert_int_equal(record(&ws, "lp/a/DO", SAGA_OUTCOME_SUCCESS, "p", 1, NULL,
                          1),
                   0);
  got_t g = lookup(&ws, "lp/a/DO");
  assert_int_equal(g.err, 0);
  assert_int_equal(g.found, 1);
  ws.destroy(ws.ctx);
  PQfinish(w);
  snprintf(sql, sizeof sql, "DROP OWNED BY %s", role);
  exec_ok(f.c, sql);
  snprintf(sql, sizeof sql, "DROP ROLE %s", role);
  exec_ok(f.c, sql);
  fixture_close(&f);
}

static void test_a_failed_call_names_its_cause(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f, "client_idem_why");
  assert_non_null(f.s.last_error);
  assert_int_equal(record(&f.s, "w1/a/DO", SAGA_OUTCOME_SUCCESS, "p", 1, NULL,
                          1),
                   0);
  assert_string_equal(f.s.last_error(f.s.ctx), "");
  char role[64], sql[160];
  snprintf(role, sizeof role, "saga_idem_noaccess_%ld", (long)getpid());
  snprintf(sql, sizeof sql, "CREATE ROLE %s NOLOGIN", role);
  exec_ok(f.c, sql);
  snprintf(sql, sizeof sql, "SET ROLE %s", role);
  exec_ok(f.c, sql);

  got_t g = lookup(&f.s, "w1/a/DO");
  assert_int_equal(g.err, SAGA_ESTORE);
  const char *why = f.s.last_error(f.s.ctx);
  assert_non_null(strstr(why, "permission denied for table saga_idempotency"));
  assert_non_null(strstr(why, "\"w1/a/DO\""));
  assert_null(strchr(why, '\n'));
  assert_int_equal(record(&f.s, "w1/b/DO", SAGA_OUTCOME_SUCCESS, "p", 1, NULL,
                          1),
                   SAGA_ESTORE);
  why = f.s.last_error(f.s.ctx);
  assert_non_null(strstr(why, "permission denied for table saga_idempotency"));
  assert_non_null(strstr(why, "\"w1/b/DO\""));

  exec_ok(f.c, "RESET ROLE");
  snprintf(sql, sizeof sql, "DROP ROLE %s", role);
  exec_ok(f.c, sql);
  g = lookup(&f.s, "w1/a/DO");
  assert_int_equal(g.err, 0);
  assert_int_equal(g.found, 1);
  assert_string_equal(f.s.last_error(f.s.ctx), "");
  /* refused before the server is asked */
  assert_int_equal(record(&f.s, "w1/c/DO", SAGA_OUTCOME_SUCCESS, "p", 1, NULL,
                          UINT32_MAX),
                   SAGA_ESTORE);
  why = f.s.last_error(f.s.ctx);
  assert_non_null(strstr(why, "attempt 4294967295"));
  assert_non_null(strstr(why, "\"w1/c/DO\""));

  saga_idem_store_t mem;
  assert_int_equal(saga_idem_store_memory(&mem), 0);
  assert_non_null(mem.last_error);
  assert_int_equal(record(&mem, "w1/d/DO", SAGA_OUTCOME_SUCCESS, NULL, 5,
                          NULL, 1),
                   SAGA_EINVAL);
  why = mem.last_error(mem.ctx);
  assert_non_null(strstr(why, "payload is NULL"));
  assert_non_null(strstr(why, "\"w1/d/DO\""));
  assert_int_equal(lookup(&mem, "w1/d/DO").found, 0);
  assert_string_equal(mem.last_error(mem.ctx), "");
  mem.destroy(mem.ctx);
  fixture_close(&f);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_statements_are_prepared_once_per_session),
      cmocka_unit_test(test_a_transaction_left_open_is_joined_not_broken),
      cmocka_unit_test(test_a_taken_statement_name_falls_back_to_unprepared),
      cmocka_unit_test(test_replies_round_trip_and_keep_their_rule),
      cmocka_unit_test(
          test_a_lost_connection_fails_until_the_caller_resets_it),
      cmocka_unit_test(test_a_failed_call_names_its_cause),
      cmocka_unit_test(test_a_role_with_rights_on_the_table_alone_opens_it),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
