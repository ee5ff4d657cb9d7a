/* sagad runs as a role with no right to create tables: a member of
 * es_writer, once `sagad --migrate` made the schema as a role that may.
 * Before that, such a start fails and says what to run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "e2e.h"
#include "http_client.h"
#include "test_support.h"

static e2e_answer_t all_succeed(const char *id, int step, int comp,
                                uint32_t attempt) {
  (void)id, (void)step, (void)comp, (void)attempt;
  return E2E_SUCCESS;
}

static char *sagad_log(e2e_t *t) {
  char path[256];
  snprintf(path, sizeof path, "%s/sagad0.log", e2e_dir(t));
  char *log = ts_slurp(path);
  assert_non_null(log);
  return log;
}

static long long scalar(const char *ci, const char *sql) {
  PGconn *c = PQconnectdb(ci);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, sql);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  long long v = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  return v;
}

static void test_sagad_runs_as_es_writer_once_migrated(void **state) {
  (void)state;
  e2e_t *t = e2e_new("least_priv", 5000, all_succeed);
  char writer[1024], owner[1024];
  snprintf(writer, sizeof writer, "--store.conninfo=%s options='-c "
           "role=es_writer'", e2e_conninfo(t));
  snprintf(owner, sizeof owner, "--store.conninfo=%s", e2e_conninfo(t));

  /* an unmigrated database: the writer's start fails, saying what to do */
  const char *as_writer[] = {writer, NULL};
  e2e_sagad_start_with(t, 0, as_writer);
  assert_int_equal(e2e_sagad_wait(t, 0, ts_timeout_ms(30000)), 1);
  char *log = sagad_log(t);
  assert_non_null(strstr(log, "permission denied"));
  assert_non_null(strstr(log, "run `sagad --migrate` once as a role that "
                              "may"));
  size_t before = strlen(log);
  free(log);
  /* and nor does --migrate as the writer */
  const char *migrate_writer[] = {"--migrate", writer, NULL};
  assert_int_equal(e2e_sagad_run_once(t, migrate_writer), 1);

  /* the migration, by the database's owner, needs no brokers or
   * definitions; a second run finds nothing to do */
  const char *migrate[] = {"--migrate", owner, NULL};
  assert_int_equal(e2e_sagad_run_once(t, migrate), 0);
  assert_int_equal(e2e_sagad_run_once(t, migrate), 0);
  assert_int_equal(scalar(e2e_conninfo(t),
                          "SELECT count(*) FROM sagad_schema_version"),
                   scalar(e2e_conninfo(t),
                          "SELECT max(version) FROM sagad_schema_version"));
  /* --migrate as the writer now passes: nothing to create */
  assert_int_equal(e2e_sagad_run_once(t, migrate_writer), 0);

  /* the writer runs sagad: claims the database, records its definitions,
   * runs a saga to its end, answers the admin endpoint's reads (the
   * saga, its history, its definition), stops cleanly */
  int port = e2e_sagad_start_admin(t, 0, as_writer, ts_timeout_ms(30000));
  assert_true(port > 0);
  e2e_start(t, "fast", "lp-1");
  e2e_wait_status(t, "lp-1", "completed");
  for (int s = 0; s < E2E_STEPS; s++)
    assert_int_equal(e2e_applied(t, "lp-1", s), 1);
  char *body = http_get_body(port, "/sagas/lp-1");
  assert_non_null(body);
  if (!strstr(body, "\"completed\"") || !strstr(body, "Started"))
    fail_msg("GET /sagas/lp-1: %s", body);
  free(body);
  body = http_get_body(port, "/sagas?state=completed");
  assert_non_null(body);
  assert_non_null(strstr(body, "lp-1"));
  free(body);
  /* the container's health check: --probe asks its /healthz, needing no
   * brokers, store or definitions in its configuration */
  char listen[64];
  snprintf(listen, sizeof listen, "--admin.listen=127.0.0.1:%d", port);
  const char *probe[] = {"--probe", listen, NULL};
  assert_int_equal(e2e_sagad_run_once(t, probe), 0);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  assert_int_equal(e2e_sagad_run_once(t, probe), 1); /* nothing answers */
  assert_int_equal(
      scalar(e2e_conninfo(t), "SELECT count(*) FROM saga_definitions"), 2);
  /* nothing the writer made, nothing it was refused after the migration */
  assert_int_equal(scalar(e2e_conninfo(t),
                          "SELECT count(*) FROM pg_class c JOIN pg_roles r "
                          "ON r.oid = c.relowner WHERE r.rolname = "
                          "'es_writer'"),
                   0);
  log = sagad_log(t);
  assert_true(strlen(log) > before);
  assert_null(strstr(log + before, "permission denied"));
  assert_null(strstr(log + before, "could not"));
  free(log);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sagad_runs_as_es_writer_once_migrated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
