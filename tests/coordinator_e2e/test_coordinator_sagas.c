/* The coordinator end to end, one sagad against PostgreSQL and Kafka with a
 * scripted participant: sagas complete, a failure compensates, a timeout
 * compensates the unknown step, duplicates and late replies change
 * nothing, poison input is dead-lettered and the next saga still runs. */
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
#include "test_support.h"

static e2e_t *T;
static pid_t pid; /* sagad 0 */

/* Saga ids say what the participant does: fail2-* fails step 2,
 * noreply2-* never answers step 2's DO, dup-* answers every command
 * twice; everything else succeeds. */
static e2e_answer_t script(const char *id, int step, int comp,
                           uint32_t attempt) {
  (void)attempt;
  if (comp)
    return E2E_SUCCESS;
  if (!strncmp(id, "fail2-", 6) && step == 1)
    return E2E_FAILURE;
  if (!strncmp(id, "noreply2-", 9) && step == 1)
    return E2E_NO_REPLY;
  if (!strncmp(id, "dup-", 4))
    return E2E_REPLY_TWICE;
  return E2E_SUCCESS;
}

static int setup(void **state) {
  (void)state;
  T = e2e_new("coord_sagas", 1500, script);
  pid = e2e_sagad_start(T, 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  /* SIGHUP is logged and ignored: no reload, no stop (its default action
   * killed sagad without flushing or committing) */
  assert_int_equal(kill(pid, SIGHUP), 0);
  assert_int_equal(e2e_sagad_wait(T, 0, 1000), -1);
  char log[512];
  snprintf(log, sizeof log, "%s/sagad0.log", e2e_dir(T));
  char *text = ts_slurp(log);
  assert_non_null(text);
  assert_non_null(strstr(text, "SIGHUP ignored: sagad reads its "
                               "configuration only at start"));
  free(text);
  assert_int_equal(e2e_sagad_stop(T, 0, SIGTERM), 0);
  e2e_free(T);
  return 0;
}

static void wait_done(const char *id) {
  const char *ids[1] = {id};
  assert_int_equal(e2e_wait_terminal(T, ids, 1, 60000), 1);
}

static void test_a_saga_completes_and_applies_each_step_once(void **state) {
  (void)state;
  e2e_start(T, "fast", "ok-1");
  wait_done("ok-1");
  assert_string_equal(e2e_status(T, "ok-1"), "completed");
  for (int s = 0; s < E2E_STEPS; s++) {
    assert_int_equal(e2e_applied(T, "ok-1", s), 1);
    assert_int_equal(e2e_undone(T, "ok-1", s), 0);
  }
}

static void test_a_failure_at_step_two_compensates_step_one(void **state) {
  (void)state;
  e2e_start(T, "fast", "fail2-1");
  wait_done("fail2-1");
  assert_string_equal(e2e_status(T, "fail2-1"), "compensated");
  assert_int_equal(e2e_applied(T, "fail2-1", 0), 1);
  assert_int_equal(e2e_undone(T, "fail2-1", 0), 1);
  /* The step that failed by its own reply is not compensated. */
  assert_int_equal(e2e_undone(T, "fail2-1", 1), 0);
  assert_int_equal(e2e_commands(T, "fail2-1", 2), 0);
  /* every command so far named its action: "s1".. for DO, "undo" for the
   * compensation (docs/protocol.md, Command.action_name) */
  assert_true(e2e_commands_seen(T) > 0);
  assert_int_equal(e2e_action_mismatches(T), 0);
}

static void test_a_timeout_compensates_the_unknown_step(void **state) {
  (void)state;
  e2e_start(T, "fast", "noreply2-1");
  wait_done("noreply2-1");
  assert_string_equal(e2e_status(T, "noreply2-1"), "compensated");
  /* Step 2's outcome is unknown: it is compensated, then step 1. */
  assert_int_equal(e2e_undone(T, "noreply2-1", 1), 1);
  assert_int_equal(e2e_undone(T, "noreply2-1", 0), 1);
  assert_int_equal(e2e_commands(T, "noreply2-1", 2), 0);
}

static long long index_version(const char *id) {
  PGconn *c = PQconnectdb(e2e_conninfo(T));
  const char *p[1] = {id};
  PGresult *r = PQexecParams(c, "SELECT version FROM saga_index WHERE "
                                "saga_id = $1",
                             1, NULL, p, NULL, NULL, 0);
  long long v = PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(c);
  return v;
}

static void test_duplicate_and_late_replies_change_nothing(void **state) {
  (void)state;
  e2e_start(T, "fast", "dup-1");
  wait_done("dup-1");
  assert_string_equal(e2e_status(T, "dup-1"), "completed");
  long long v = index_version("dup-1");
  /* Three steps, each one Started/Dispatched/Succeeded...: a duplicate
   * reply would have added records. 1 start + 3 replies = 4. */
  assert_int_equal(v, 4);
  /* A late failure for step 1 and a second start: nothing moves. */
  e2e_reply(T, "dup-1", 0, 1, 2);
  e2e_start(T, "fast", "dup-1");
  e2e_start(T, "fast", "ok-after-dup");
  wait_done("ok-after-dup");
  assert_int_equal(index_version("dup-1"), 4);
  assert_string_equal(e2e_status(T, "dup-1"), "completed");
  for (int s = 0; s < E2E_STEPS; s++)
    assert_int_equal(e2e_applied(T, "dup-1", s), 1);
}

static void test_poison_input_is_dead_lettered_and_the_next_saga_runs(
    void **state) {
  (void)state;
  size_t before = e2e_dead_letters(T, NULL, 0);
  e2e_produce_raw(T, NULL, "poison-1", "garbage", 7);
  e2e_produce_raw(T, "saga.v1.StartSaga", "poison-2", "\xff\xff\xff", 3);
  e2e_start(T, "no-such-type", "poison-3");
  e2e_start(T, "fast", "after-poison");
  wait_done("after-poison");
  assert_string_equal(e2e_status(T, "after-poison"), "completed");
  assert_string_equal(e2e_status(T, "poison-3"), "");
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  char reason[256] = "";
  while (e2e_dead_letters(T, reason, sizeof reason) < before + 3 &&
         ts_now_ms() < until)
    e2e_pump(T, 50);
  assert_int_equal(e2e_dead_letters(T, reason, sizeof reason), before + 3);
  assert_true(reason[0] != '\0');
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_saga_completes_and_applies_each_step_once),
      cmocka_unit_test(test_a_failure_at_step_two_compensates_step_one),
      cmocka_unit_test(test_a_timeout_compensates_the_unknown_step),
      cmocka_unit_test(test_duplicate_and_late_replies_change_nothing),
      cmocka_unit_test(
          test_poison_input_is_dead_lettered_and_the_next_saga_runs),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
