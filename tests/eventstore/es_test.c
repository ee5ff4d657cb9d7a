/* Helpers for the event store tests (see es_test.h). */
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

char *est_db(const char *prefix) {
  char *ci = ts_pg_create_database(prefix);
  char err[ES_ERRBUF_SIZE] = "";
  int version = 0;
  int rc = es_migrate(ci, &version, err, sizeof err);
  if (rc) {
    fprintf(stderr, "migrate: %s\n", err);
    abort();
  }
  return ci;
}

es_store_t *est_open(const char *conninfo) {
  es_store_t *s = NULL;
  char err[ES_ERRBUF_SIZE] = "";
  int rc = es_store_open(conninfo, NULL, &s, err, sizeof err);
  if (rc)
    fprintf(stderr, "open: %s\n", err);
  assert_int_equal(rc, 0);
  return s;
}

PGconn *est_raw(const char *conninfo) {
  PGconn *c = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  return c;
}

long long est_scalar(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
    fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
  assert_true(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK);
  long long v = 0;
  if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
    v = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  return v;
}

const char *est_sqlstate(PGconn *c, const char *sql) {
  static char state[8];
  PGresult *r = PQexec(c, sql);
  const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  snprintf(state, sizeof state, "%s", s ? s : "");
  PQclear(r);
  return state;
}

es_event_t est_event(const char *type, const char *data) {
  es_event_t e;
  memset(&e, 0, sizeof e);
  e.type = type;
  e.data = data;
  e.data_len = data ? strlen(data) : 0;
  return e;
}

long long est_terminate_others(PGconn *c) {
  /* The subquery with OFFSET 0 keeps the planner from calling
   * pg_terminate_backend before the filter (on this very session). */
  return est_scalar(c, "SELECT coalesce(sum(CASE WHEN"
                       " pg_terminate_backend(pid, 10000) THEN 1 END), 0)"
                       " FROM (SELECT pid FROM pg_stat_activity WHERE"
                       " datname = current_database() AND"
                       " pid <> pg_backend_pid() OFFSET 0) AS others");
}

void est_drop(char *conninfo) {
  if (!conninfo)
    return;
  /* The database made by ts_pg_create_database is the LAST dbname= of the
   * conninfo (the base one may carry its own). */
  const char *p = NULL, *q = conninfo;
  while ((q = strstr(q, " dbname=")))
    p = q++;
  if (p) {
    PGconn *c = est_raw(ts_pg_conninfo());
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)",
             p + 8);
    est_scalar(c, sql);
    PQfinish(c);
  }
  free(conninfo);
}

void est_wait_global(es_store_t *s, size_t want) {
  int64_t deadline = ts_now_ms() + ts_timeout_ms(20000);
  for (;;) {
    es_page_t *p = NULL;
    assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, NULL, want + 1, &p), 0);
    size_t n = p->n;
    es_page_free(p);
    assert_true(n <= want);
    if (n == want)
      return;
    assert_true(ts_now_ms() < deadline);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

long long est_count_events(const char *conninfo, const char *stream) {
  PGconn *c = est_raw(conninfo);
  const char *v[1] = {stream};
  PGresult *r = PQexecParams(c,
                             "SELECT count(*) FROM es_events"
                             " WHERE stream_id = $1",
                             1, NULL, v, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  long long n = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  return n;
}

void est_wait_lock_waiter(const char *conninfo) {
  PGconn *watch = est_raw(conninfo);
  int64_t deadline = ts_now_ms() + ts_timeout_ms(10000);
  while (est_scalar(watch, "SELECT count(*) FROM pg_stat_activity WHERE"
                           " datname = current_database() AND"
                           " wait_event_type = 'Lock'") == 0) {
    assert_true(ts_now_ms() < deadline);
    nanosleep(&(struct timespec){0, 2000000}, NULL);
  }
  PQfinish(watch);
}

PGconn *est_rival(const char *conninfo, const char *stream) {
  PGconn *c = est_raw(conninfo);
  char sql[512];
  est_scalar(c, "BEGIN");
  snprintf(sql, sizeof sql,
           "INSERT INTO es_append (stream_id, stream_version, event_id,"
           " event_type, data) VALUES ('%s', 1, gen_random_uuid(), 'Rival',"
           " '\\x00')",
           stream);
  est_scalar(c, sql);
  return c;
}

void est_append_round(es_store_t *s, const char *category, int streams,
                      int per_stream) {
  es_batch_t *b = es_batch_new(NULL);
  assert_non_null(b);
  assert_true(per_stream >= 1 && per_stream <= 8);
  for (int i = 0; i < streams; i++) {
    char id[64];
    snprintf(id, sizeof id, "%s-%d", category, i);
    es_event_t ev[8];
    for (int j = 0; j < per_stream; j++)
      ev[j] = est_event("Happened", "d");
    assert_true(es_batch_add(b, id, ES_ANY_VERSION, ev, (size_t)per_stream) >=
                0);
  }
  assert_int_equal(es_batch_execute(s, b), 0);
  es_batch_free(b);
}

long long est_era_of(PGconn *c, const char *stream, int version) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT era FROM es_events WHERE stream_id = '%s' AND"
           " stream_version = %d",
           stream, version);
  return est_scalar(c, sql);
}
