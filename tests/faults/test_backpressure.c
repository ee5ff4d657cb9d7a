/* Back-pressure (input.max_held, docs/configuration.md): while the store
 * does not answer (saga_index locked by another session), sagad stops
 * fetching its inbox once it holds input.max_held messages, logs it, and
 * holds no more than that plus what librdkafka had handed over; once the
 * store answers again it resumes, and every saga completes, each step
 * applied once, nothing acted on before it was appended. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "faults.h"
#include "test_support.h"

#define NAME "flt_held"
#define N 60
#define MAX_HELD 10

static faults_kind_t all_ok(size_t i, void *arg) {
  (void)i;
  (void)arg;
  return FAULTS_OK;
}

static void ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
}

static void test_a_stuck_store_pauses_the_inbox_and_nothing_is_lost(
    void **state) {
  (void)state;
  char v[16];
  snprintf(v, sizeof v, "%d", MAX_HELD);
  setenv("SAGAD_INPUT_MAX_HELD", v, 1);
  e2e_t *t = e2e_new(NAME, 2000, faults_script);
  e2e_sagad_start(t, 0);
  unsetenv("SAGAD_INPUT_MAX_HELD");
  assert_true(faults_wait_log(t, NAME, 0, "inbox partitions", 30000));

  PGconn *ctl = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(ctl), CONNECTION_OK);
  ok(ctl, "BEGIN");
  ok(ctl, "LOCK TABLE saga_index IN ACCESS EXCLUSIVE MODE");
  faults_ids_t s;
  faults_ids_make(&s, N, "held", all_ok, NULL);
  faults_start(t, &s, 0, N);
  assert_true(faults_wait_log(t, NAME, 0, "inbox paused", 60000));
  e2e_pump(t, 1000);
  char *log = faults_sagad_log(NAME, 0);
  assert_non_null(log);
  const char *p = strstr(log, "inbox paused: ");
  assert_non_null(p);
  long held = strtol(p + strlen("inbox paused: "), NULL, 10);
  free(log);
  printf("# paused with %ld inputs held (input.max_held %d) of %d started\n",
         held, MAX_HELD, N);
  assert_true(held >= MAX_HELD && held < N);
  /* still paused: nothing was stepped, so nothing was done */
  assert_int_equal(faults_log_count(NAME, 0, "inbox resumed"), 0);
  ok(ctl, "COMMIT");
  PQfinish(ctl);

  assert_int_equal(e2e_wait_terminal(t, s.ids, N, 120000), N);
  size_t fx = faults_check_ledger(t, &s);
  size_t cmds = faults_check_appended(t, &s);
  printf("# %d sagas completed, %zu effects and %zu commands checked\n", N,
         fx, cmds);
  assert_true(faults_log_count(NAME, 0, "inbox resumed") >= 1);
  faults_ids_free(&s);
  e2e_free(t);
}

int main(void) {
  ts_require_pg();
  ts_require_kafka();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_stuck_store_pauses_the_inbox_and_nothing_is_lost),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
