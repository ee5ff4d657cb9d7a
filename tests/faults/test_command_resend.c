/* A command whose delivery fails is sent again (docs/reliability.md, fixed
 * findings): sagad runs with kafka.message.timeout.ms=1000, and the broker
 * leading the step topics (which only sagad produces to) is down while
 * sagas start, so their first commands' deliveries fail (message timed
 * out, never sent: not persisted). The sagas are "slow" (one attempt, 60 s
 * timeout): a command given up would leave its saga waiting for that
 * timeout and then compensate it. Each must complete instead, every step
 * applied once, with the resent commands the same attempts as appended
 * (faults_check_appended) and counted (saga_commands_resent_total): at
 * least one resend for every delivery reported not persisted.
 *
 * sagad's consumer group is coordinated from broker 1, not from the
 * broker taken down: with its coordinator down for longer than
 * kafka.session.timeout.ms, sagad's partitions were revoked and assigned
 * again, the retries found the sagas gone from memory and were dropped,
 * and recovery sent the commands instead (resent 0: a failed run). The
 * test checks that sagad kept its partitions throughout. */
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
#define GROUP_BROKER 1 /* coordinates sagad's group, leads the inbox */

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

/* How many lines of sagad's log, as one read sees it, hold needle (and
 * also, when not NULL, and_too: the line's part after needle). */
static long count_in(const char *log, const char *needle, const char *and_too) {
  long n = 0;
  for (const char *p = log; p && (p = strstr(p, needle)) != NULL;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    const char *also = and_too ? strstr(p, and_too) : p;
    if (also && also < p + len)
      n++;
    p = eol;
  }
  return n;
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
  faults_coordinate_from(F.mock, F.t, GROUP_BROKER);
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
   * same broker fail too, and may fail first) whose delivery failed, the
   * part of such a line saying the message is not in the topic, and the
   * line for partitions taken from sagad */
  static const char cmd_failed[] = "is not confirmed delivered";
  static const char not_persisted[] = "; not persisted: not in the topic)";
  static const char revoked[] = "info  revoked "; /* ... inbox partitions */
  char *log = faults_sagad_log("flt_resend", 0);
  assert_non_null(log);
  long failed_before = count_in(log, cmd_failed, NULL);
  long np_before = count_in(log, cmd_failed, not_persisted);
  long revoked_before = count_in(log, revoked, NULL);
  free(log);
  faults_mock_ctl(F.mock, "broker-down %d", STEP_BROKER);
  faults_start(t, &s, 0, N);
  /* down until sagad's producer gave a command up (librdkafka's
   * delivery report, logged by the engine) */
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  while (faults_log_count("flt_resend", 0, cmd_failed) == failed_before &&
         ts_now_ms() < until)
    e2e_pump(t, 50);
  log = faults_sagad_log("flt_resend", 0);
  assert_non_null(log);
  long failed = count_in(log, cmd_failed, NULL) - failed_before;
  long failed_np = count_in(log, cmd_failed, not_persisted) - np_before;
  free(log);
  faults_mock_ctl(F.mock, "broker-up %d", STEP_BROKER);
  printf("# commands whose delivery failed while broker %d was down: %ld, "
         "%ld of them reported not persisted\n",
         STEP_BROKER, failed, failed_np);
  assert_true(failed >= 1);
  /* the broker went down before the sagas started: none of their
   * commands can have reached it */
  assert_int_equal(failed_np, failed);

  assert_int_equal(e2e_wait_terminal(t, s.ids, N, 120000), N);
  size_t fx = faults_check_ledger(t, &s);
  size_t cmds = faults_check_appended(t, &s);
  char *page = http_get_body(F.port, "/metrics");
  assert_non_null(page);
  long resent = metric_value(page, "saga_commands_resent_total");
  free(page);
  log = faults_sagad_log("flt_resend", 0);
  assert_non_null(log);
  long np = count_in(log, cmd_failed, not_persisted) - np_before;
  long all_failed = count_in(log, cmd_failed, NULL) - failed_before;
  long revokes = count_in(log, revoked, NULL) - revoked_before;
  free(log);
  printf("# %d sagas completed, %zu effects and %zu commands checked, "
         "%ld deliveries failed (%ld not persisted), %ld commands sent "
         "again\n",
         N, fx, cmds, all_failed, np, resent);
  /* the resends come from the retry list, not from a recovery */
  if (revokes != 0)
    fail_msg("sagad's inbox partitions were revoked during the test (%ld "
             "lines): its group coordinator was unreachable?",
             revokes);
  /* A command not in the topic reached nobody: its saga still waited for
   * it, so each such failure was followed by a resend (only one reported
   * possibly persisted may have been answered before its retry). */
  assert_true(np >= 1);
  if (resent < np)
    fail_msg("%ld deliveries reported not persisted, only %ld commands "
             "sent again",
             np, resent);
  faults_ids_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_undelivered_command_is_sent_again),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
