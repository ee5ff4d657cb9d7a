/* Crashes in the dangerous windows, hit deterministically: sagad-faults
 * (the fault-point build) runs a mix of sagas and kills itself at a named
 * fault point; the product's sagad is started on the same database and
 * topics, and every saga must end as its script says with each effect
 * applied once and each compensated effect undone once. */
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

#define N 60

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Crash sagad-faults at point (its hit-th hit), restart the product. When
 * hold is set the participant is not pumped before the crash, so every saga
 * is still in flight when it happens. */
static void crash_and_recover(const char *name, const char *point,
                              unsigned hit, unsigned delay_ms) {
  e2e_t *t = e2e_new(name, 3000, faults_script);
  faults_ids_t s;
  faults_ids_make(&s, N, name, NULL, NULL);
  char needle[96];
  snprintf(needle, sizeof needle, "fault point %s hit", point);

  faults_use_fault_point(point, hit, delay_ms);
  e2e_sagad_start(t, 0);
  faults_start(t, &s, 0, N);
  assert_true(faults_wait_log(t, name, 0, needle, 60000));
  assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);

  faults_use_product();
  e2e_sagad_start(t, 0);
  assert_int_equal(e2e_wait_terminal(t, s.ids, N, 120000), N);
  size_t fx = faults_check_ledger(t, &s);
  size_t cmds = faults_check_appended(t, &s);
  printf("# %s: %d sagas terminal, %zu effects checked, %zu commands "
         "matched to appended decisions\n",
         point, N, fx, cmds);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  faults_ids_free(&s);
  e2e_free(t);
}

static void test_a_crash_right_after_an_append_loses_no_effect(void **state) {
  (void)state;
  crash_and_recover("flt_after_append", "after_append", 3, 0);
}

static void test_a_crash_in_the_middle_of_a_batch_doubles_no_effect(
    void **state) {
  (void)state;
  crash_and_recover("flt_mid_batch", "mid_batch", 2, 100);
}

static void test_a_crash_between_produce_and_ack_doubles_no_effect(
    void **state) {
  (void)state;
  crash_and_recover("flt_produce_ack", "after_produce_before_ack", 3, 300);
}

/* Every saga must be in flight at restart: the participant is held (not
 * pumped) until the product sagad that was killed has started them all. */
static void test_a_crash_during_recovery_is_recovered_by_the_next_start(
    void **state) {
  (void)state;
  const char *name = "flt_recovery";
  e2e_t *t = e2e_new(name, 3000, faults_script);
  faults_ids_t s;
  faults_ids_make(&s, N, name, NULL, NULL);
  faults_use_product();
  e2e_sagad_start(t, 0);
  faults_start(t, &s, 0, N);
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  size_t known = 0;
  while (known < N && ts_now_ms() < until) {
    known = 0;
    for (size_t i = 0; i < N; i++)
      known += e2e_status(t, s.ids[i])[0] != '\0';
    if (known < N)
      sleep_ms(20);
  }
  assert_int_equal(known, N);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);

  faults_use_fault_point("during_recovery", N / 3, 100);
  e2e_sagad_start(t, 0);
  assert_true(faults_wait_log(t, name, 0, "fault point during_recovery hit",
                              60000));
  assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);

  faults_use_product();
  e2e_sagad_start(t, 0);
  assert_int_equal(e2e_wait_terminal(t, s.ids, N, 120000), N);
  size_t fx = faults_check_ledger(t, &s);
  size_t cmds = faults_check_appended(t, &s);
  printf("# during_recovery: %d sagas terminal, %zu effects checked, %zu "
         "commands matched to appended decisions\n",
         N, fx, cmds);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  faults_ids_free(&s);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_crash_right_after_an_append_loses_no_effect),
      cmocka_unit_test(
          test_a_crash_in_the_middle_of_a_batch_doubles_no_effect),
      cmocka_unit_test(test_a_crash_between_produce_and_ack_doubles_no_effect),
      cmocka_unit_test(
          test_a_crash_during_recovery_is_recovered_by_the_next_start),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
