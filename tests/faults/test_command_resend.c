/* A command whose delivery fails is sent again (docs/reliability.md, fixed
 * findings): sagad runs with kafka.message.timeout.ms=1000, and the broker
 * leading the step topics (which only sagad produces to) is down while
 * sagas start, so their first commands' deliveries fail (message timed
 * out). The sagas are "slow" (one attempt, 60 s timeout): a command given
 * up would leave its saga waiting for that timeout and then compensate it.
 * Each must complete instead, every step applied once, with the resent
 * commands the same attempts as appended (faults_check_appended) and
 * counted (saga_commands_resent_total, a log line each). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "faults.h"
#include "http_client.h"
#include "test_support.h"

#define N 10
#define PARTITIONS 4
#define STEP_BROKER 3 /* leads the step topics: sagad's produces only */

static faults_kind_t all_ok(size_t i, void *arg) {
  (void)i;
  (void)arg;
  return FAULTS_OK;
}

/* The value of an unlabelled counter in a /metrics page, or -1. */
static long metric_value(const char *page, const char *name) {
  size_t n = strlen(name);
  for (const char *p = page; p && (p = strstr(p, name)) != NULL; p += n)
    if ((p == page || p[-1] == '\n') && p[n] == ' ')
      return strtol(p + n + 1, NULL, 10);
  return -1;
}

/* The mock, the harness and sagad, stopped by teardown even when the
 * test fails (cmocka runs it after a failed test). */
static struct {
  faults_mock_t *mock;
  e2e_t *t;
  int port;
} F;

static int setup(void **state) {
  (void)state;
  ts_require_pg();
  ts_require_kafka();
  F.mock = faults_mock_start();
  F.t = e2e_new("flt_resend", 2000, faults_script);
  static const char *const short_timeout[] = {"--kafka.message.timeout.ms=1000",
                                              NULL};
  F.port = e2e_sagad_start_admin(F.t, 0, short_timeout, ts_timeout_ms(30000));
  assert_true(F.port > 0);
  /* the inbox exists once sagad has its partitions */
  assert_true(faults_wait_log(F.t, "flt_resend", 0, "inbox partitions", 30000));
  faults_lead_apart(F.mock, F.t, PARTITIONS, STEP_BROKER);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (F.t)
    assert_int_equal(e2e_sagad_stop(F.t, 0, SIGTERM), 0);
  e2e_free(F.t);
  faults_mock_stop(F.mock);
  return 0;
}

static void test_an_undelivered_command_is_sent_again(void **state) {
  (void)state;
  e2e_t *t = F.t;
  faults_ids_t s;
  faults_ids_make(&s, N, "resend", all_ok, NULL);
  /* sagad's line for a command (not any message: notifications to the
   * same broker fail too, and may fail first) whose delivery failed */
  static const char cmd_failed[] = "is not confirmed delivered";
  long before = faults_log_count("flt_resend", 0, cmd_failed);
  faults_mock_ctl(F.mock, "broker-down %d", STEP_BROKER);
  faults_start(t, &s, 0, N);
  /* down until sagad's producer gave a command up (librdkafka's
   * delivery report, logged by the engine) */
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  while (faults_log_count("flt_resend", 0, cmd_failed) == before &&
         ts_now_ms() < until)
    e2e_pump(t, 50);
  long failed = faults_log_count("flt_resend", 0, cmd_failed) - before;
  faults_mock_ctl(F.mock, "broker-up %d", STEP_BROKER);
  printf("# commands whose delivery failed while broker %d was down: %ld\n",
         STEP_BROKER, failed);
  assert_true(failed >= 1);

  assert_int_equal(e2e_wait_terminal(t, s.ids, N, 120000), N);
  size_t fx = faults_check_ledger(t, &s);
  size_t cmds = faults_check_appended(t, &s);
  char *page = http_get_body(F.port, "/metrics");
  assert_non_null(page);
  long resent = metric_value(page, "saga_commands_resent_total");
  free(page);
  printf("# %d sagas completed, %zu effects and %zu commands checked, "
         "%ld commands sent again\n",
         N, fx, cmds, resent);
  assert_true(resent >= 1);
  faults_ids_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_undelivered_command_is_sent_again),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
