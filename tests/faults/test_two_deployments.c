/* Two deployments on one database (issue 14, case 9): a second sagad with
 * another inbox and group.id on the same store.conninfo "recovered" the
 * first one's sagas (saga_index knows no deployment) and both logged
 * version conflicts. The database now belongs to the first deployment
 * that claims it: the second refuses to start with an error naming both,
 * and the first one's sagas are left to it. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "faults.h"
#include "test_support.h"

#define NAME "flt_two_deployments"

static e2e_answer_t ok_script(const char *id, int step, int comp,
                              uint32_t attempt) {
  (void)id, (void)step, (void)comp, (void)attempt;
  return E2E_SUCCESS;
}

static void test_a_second_deployment_on_one_database_refuses_to_start(
    void **state) {
  (void)state;
  e2e_t *t = e2e_new(NAME, 60000, ok_script);
  faults_use_product();
  e2e_sagad_start(t, 0);
  e2e_start(t, "slow", "dep-1");
  const char *ids[1] = {"dep-1"};
  assert_int_equal(e2e_wait_terminal(t, ids, 1, 60000), 1);
  e2e_start(t, "slow", "dep-2"); /* in flight while the second one starts */

  /* Another deployment: its own inbox and group, the same database. */
  const char *const other[] = {"--topic.inbox=other.inbox",
                               "--group.id=other-group", NULL};
  e2e_sagad_start_with(t, 1, other);
  int refused = faults_wait_log(t, NAME, 1, "holds the sagas of another "
                                            "deployment",
                                30000);
  char *log = faults_sagad_log(NAME, 1);
  printf("# second deployment's log:\n%s", log ? log : "(none)\n");
  free(log);
  assert_true(refused);
  int rc = e2e_sagad_wait(t, 1, 30000);
  if (rc < 0)
    rc = e2e_sagad_stop(t, 1, SIGKILL); /* still running: the old code */
  assert_int_equal(rc, 1);
  assert_int_equal(faults_log_count(NAME, 1, "recovered"), 0);

  /* The first deployment is untouched and goes on. */
  const char *ids2[1] = {"dep-2"};
  assert_int_equal(e2e_wait_terminal(t, ids2, 1, 60000), 1);
  assert_string_equal(e2e_status(t, "dep-2"), "completed");
  assert_int_equal(faults_log_count(NAME, 0, "version conflict"), 0);
  /* A restart of the first deployment is its own: it starts. */
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_sagad_start(t, 0);
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  while (faults_log_count(NAME, 0, "coordinating: inbox") < 2 &&
         ts_now_ms() < until)
    e2e_pump(t, 50);
  assert_int_equal(faults_log_count(NAME, 0, "coordinating: inbox"), 2);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_a_second_deployment_on_one_database_refuses_to_start),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
