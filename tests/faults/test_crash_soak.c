/* Randomized crashes: sagas of every kind (succeed, fail at step 2, time
 * out at step 2) started in waves while sagad is killed with SIGKILL at
 * random moments of its work -- 0.3 to 4 s after it took its partitions,
 * so every kill lands while sagas are being driven, not during the group
 * join -- and restarted at once; at the end every saga is terminal, the
 * participant's ledger shows each effect applied once and each compensated
 * effect undone once, and every command it received has its decision in
 * the store. CI runs 1,000 sagas and 3 kills; the long run
 * (docs/reliability.md) sets SAGA_SOAK_SAGAS=10000 SAGA_SOAK_KILLS=20
 * (and SAGA_SOAK_SEED to replay a run). Step and compensation timeouts
 * are 3 s. */
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

#define NAME "flt_soak"

static long env_long(const char *name, long def) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : def;
}

static void
test_sagad_killed_at_random_moments_finishes_every_saga_with_effects_once(
    void **state) {
  (void)state;
  size_t n = (size_t)env_long("SAGA_SOAK_SAGAS", 1000);
  long kills = env_long("SAGA_SOAK_KILLS", 3);
  unsigned seed = (unsigned)env_long("SAGA_SOAK_SEED", (long)time(NULL));
  srand(seed);
  printf("# soak: %zu sagas, %ld kills, seed %u\n", n, kills, seed);
  int64_t t0 = ts_now_ms();
  e2e_t *t = e2e_new(NAME, 3000, faults_script);
  faults_ids_t s;
  faults_ids_make(&s, n, "soak", NULL, NULL);
  size_t wave = n / (size_t)(kills + 1) + 1, started = 0;
  e2e_sagad_start(t, 0);
  for (long k = 0; k < kills; k++) {
    size_t to = started + wave < n ? started + wave : n;
    long owned = faults_log_count(NAME, 0, "recovered ");
    faults_start(t, &s, started, to);
    started = to;
    /* This run of sagad has its partitions (the join takes seconds after
     * a SIGKILL: the old member's session must expire first)... */
    int64_t until = ts_now_ms() + ts_timeout_ms(60000);
    while (faults_log_count(NAME, 0, "recovered ") == owned &&
           ts_now_ms() < until)
      e2e_pump(t, 50);
    assert_true(faults_log_count(NAME, 0, "recovered ") > owned);
    /* ... and is killed at a random moment 0.3 to 4 s into its work. */
    e2e_pump(t, 300 + rand() % 3700);
    assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);
    e2e_pump(t, rand() % 300);
    e2e_sagad_start(t, 0);
  }
  faults_start(t, &s, started, n);
  size_t done = e2e_wait_terminal(t, s.ids, n, 600000);
  assert_int_equal(done, n);
  size_t fx = faults_check_ledger(t, &s);
  size_t cmds = faults_check_appended(t, &s);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  size_t kinds[3] = {0};
  for (size_t i = 0; i < n; i++)
    kinds[faults_kind(s.ids[i])]++;
  printf("# soak: %zu sagas terminal (%zu completed, %zu failed and "
         "compensated, %zu timed out and compensated) after %ld SIGKILLs, "
         "%zu effects checked, 0 lost or doubled, %zu commands matched to "
         "appended decisions, %zu answered from a recorded outcome, "
         "%.1f s\n",
         n, kinds[FAULTS_OK], kinds[FAULTS_FAIL], kinds[FAULTS_TIMEOUT],
         kills, fx, cmds, e2e_answered_from_record(t),
         (double)(ts_now_ms() - t0) / 1000.0);
  faults_ids_free(&s);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_sagad_killed_at_random_moments_finishes_every_saga_with_effects_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
