/* The coordinator survives SIGKILL: 1,000 sagas (one in five failing at
 * step 2), sagad killed mid-run and restarted; every saga ends completed or
 * compensated, and the participant's ledger shows each effect applied once
 * and each compensated effect undone once. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "e2e.h"
#include "test_support.h"

#define N 1000

static char ids[N][E2E_FAIL2_ID_LEN];
static const char *idp[N];

static void check_ledger(e2e_t *t) {
  for (int i = 0; i < N; i++) {
    const char *st = e2e_status(t, idp[i]);
    if (!strncmp(idp[i], "fail2-", 6)) {
      assert_string_equal(st, "compensated");
      assert_int_equal(e2e_applied(t, idp[i], 0), 1);
      assert_int_equal(e2e_undone(t, idp[i], 0), 1);
      assert_int_equal(e2e_applied(t, idp[i], 1), 0);
      assert_int_equal(e2e_undone(t, idp[i], 1), 0);
      assert_int_equal(e2e_applied(t, idp[i], 2), 0);
    } else {
      assert_string_equal(st, "completed");
      for (int s = 0; s < E2E_STEPS; s++) {
        assert_int_equal(e2e_applied(t, idp[i], s), 1);
        assert_int_equal(e2e_undone(t, idp[i], s), 0);
      }
    }
  }
}

static void
test_a_killed_coordinator_finishes_every_saga_with_effects_applied_once(
    void **state) {
  (void)state;
  e2e_t *t = e2e_new("coord_kill", 60000, e2e_fail2_script);
  e2e_fail2_ids(ids, idp, N);
  e2e_sagad_start(t, 0);
  for (int i = 0; i < N; i++)
    e2e_start(t, "slow", idp[i]);
  /* Let it get going, then kill it in the middle of the run. */
  size_t done = e2e_wait_terminal_at_least(t, idp, N, N / 5, 120000);
  int st = e2e_sagad_stop(t, 0, SIGKILL);
  assert_int_equal(st, 128 + SIGKILL);
  printf("# killed sagad with %zu of %d sagas finished\n", done, N);
  e2e_pump(t, 200);
  e2e_sagad_start(t, 0);
  done = e2e_wait_terminal(t, idp, N, 240000);
  assert_int_equal(done, N);
  check_ledger(t);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_a_killed_coordinator_finishes_every_saga_with_effects_applied_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
