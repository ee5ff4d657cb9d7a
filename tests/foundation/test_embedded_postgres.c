/* The embedded PostgreSQL is a real server with durability on: the
 * benchmarks and the invariants rely on fsync and synchronous_commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "test_support.h"

static char *show(PGconn *c, const char *name) {
  char sql[128];
  snprintf(sql, sizeof sql, "SHOW %s", name);
  PGresult *r = PQexec(c, sql);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  char *v = strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
  return v;
}

static void test_embedded_postgres_runs_with_fsync_on(void **state) {
  (void)state;
  PGconn *c = PQconnectdb(ts_pg_conninfo());
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  char *fsync = show(c, "fsync");
  char *sync = show(c, "synchronous_commit");
  assert_string_equal(fsync, "on");
  assert_string_equal(sync, "on");
  free(fsync);
  free(sync);
  PQfinish(c);
}

static void test_scratch_database_is_created_and_dropped(void **state) {
  (void)state;
  char *ci = ts_pg_create_database("scratch");
  PGconn *c = PQconnectdb(ci);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PQfinish(c);
  ts_pg_drop_database(ci);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_embedded_postgres_runs_with_fsync_on),
      cmocka_unit_test(test_scratch_database_is_created_and_dropped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
