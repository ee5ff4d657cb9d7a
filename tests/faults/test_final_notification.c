/* A saga's final notification is an effect of its last transition like any
 * command: it must reach the notification topic at least once whatever the
 * moment of a crash (issue 14, case 12). The window is widened with
 * kafka.linger.ms=2000: the final transition is committed, its notification
 * waits in the producer, and sagad is killed (SIGKILL) as soon as the saga
 * shows terminal in saga_index. The restarted sagad must send it. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "faults.h"
#include "test_support.h"

enum { WIRE_COMPLETED = 3, WIRE_COMPENSATED = 4 };

static void crash_after_the_final_transition(const char *name,
                                             const char *id, int kind,
                                             const char *status) {
  e2e_t *t = e2e_new(name, 3000, faults_script);
  faults_use_product();
  const char *const slow_producer[] = {"--kafka.linger.ms=2000", NULL};
  e2e_sagad_start_with(t, 0, slow_producer);
  e2e_start(t, "slow", id);
  int64_t until = ts_now_ms() + ts_timeout_ms(90000);
  while (strcmp(e2e_status(t, id), status) != 0 && ts_now_ms() < until)
    e2e_pump(t, 2);
  assert_string_equal(e2e_status(t, id), status);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);

  e2e_sagad_start(t, 0);
  until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_notifications_seen(t, id, kind) == 0 && ts_now_ms() < until)
    e2e_pump(t, 20);
  printf("# %s: %zu final notification(s) after the crash\n", id,
         e2e_notifications_seen(t, id, kind));
  assert_true(e2e_notifications_seen(t, id, kind) >= 1);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

static void test_a_completed_saga_is_notified_after_a_crash(void **state) {
  (void)state;
  crash_after_the_final_transition("flt_final_ok", "ok-final", WIRE_COMPLETED,
                                   "completed");
}

static void test_a_compensated_saga_is_notified_after_a_crash(void **state) {
  (void)state;
  crash_after_the_final_transition("flt_final_fail", "fail-final",
                                   WIRE_COMPENSATED, "compensated");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_completed_saga_is_notified_after_a_crash),
      cmocka_unit_test(test_a_compensated_saga_is_notified_after_a_crash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
