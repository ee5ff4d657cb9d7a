/* The saga state machine, transition by transition. Every input goes
 * through the harness, which also checks after each one that replaying the
 * logged events rebuilds exactly the live state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "machine_harness.h"

/* reserve -> charge (pivot) -> ship, no jitter so times are exact. */
static const char *ORDER =
    "{'name':'order','version':1,'defaults':{'timeout_ms':1000,"
    "'retry':{'max_attempts':3,'initial_backoff_ms':100,'multiplier':2,"
    "'max_backoff_ms':1000,'jitter':0},'compensation_retry':{"
    "'max_attempts':2,'initial_backoff_ms':50,'max_backoff_ms':50,"
    "'jitter':0}},'steps':["
    "{'name':'reserve','topic':'inv','compensation':{'action':'release'}},"
    "{'name':'charge','topic':'pay','kind':'pivot','compensation':{"
    "'action':'refund'}},"
    "{'name':'ship','topic':'ship','kind':'retriable'}]}";

/* a, b, c compensatable, d pivot; one attempt a step. */
static const char *FOUR =
    "{'name':'four','version':1,'defaults':{'retry':{'max_attempts':1},"
    "'timeout_ms':1000}," H_FOUR_STEPS;

static const char *GROUP = H_GROUP;

static void expect_one_send(const h_t *h, int step, int action,
                            unsigned attempt) {
  sm_effect_t fx;
  assert_int_equal(h_sends(h, &fx), 1);
  assert_int_equal(fx.step, step);
  assert_int_equal(fx.action, action);
  assert_int_equal(fx.attempt, attempt);
}

static void expect_no_change(const h_t *h) {
  assert_int_equal(h->out.n_events, 0);
  assert_int_equal(h_sends(h, NULL), 0);
}

static void test_happy_path_runs_every_step_and_completes(void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  assert_int_equal(h_start(h), SM_V_APPLIED);
  assert_true(h_has_notify(h, SM_NOTIFY_STARTED));
  expect_one_send(h, 0, DO, 1);
  assert_int_equal(h->out.effects[2].type, SM_FX_TIMER);
  assert_int_equal(h->out.effects[2].at_ms, 2000);
  assert_int_equal(h->saga->steps[0].timer_ms, 2000);
  assert_int_equal(h_reply(h, 0, DO, 1, OK), SM_V_APPLIED);
  expect_one_send(h, 1, DO, 1);
  assert_true(h_has_notify(h, SM_NOTIFY_STEP_DONE));
  assert_int_equal(h_reply(h, 1, DO, 1, OK), SM_V_APPLIED);
  expect_one_send(h, 2, DO, 1);
  assert_int_equal(h_reply(h, 2, DO, 1, OK), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPLETED);
  assert_true(h_has_notify(h, SM_NOTIFY_COMPLETED));
  assert_true(sm_is_terminal(h->saga));
  assert_int_equal(h->saga->version, 4);
  assert_int_equal(h->ntx, 4);
  /* Start: Started + Dispatched. Last: Succeeded + Completed. */
  assert_int_equal(h->tx[0].ev[0].type, SM_EV_STARTED);
  assert_int_equal(h->tx[0].ev[1].type, SM_EV_DISPATCHED);
  assert_int_equal(h->tx[3].ev[1].type, SM_EV_COMPLETED);
  h_free(h);
}

static void test_duplicate_start_changes_nothing(void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  assert_int_equal(h_start(h), SM_V_DUPLICATE_START);
  expect_no_change(h);
  h_free(h);
}

static void test_duplicate_reply_changes_nothing(void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  uint32_t v = h->saga->version;
  assert_int_equal(h_reply(h, 0, DO, 1, OK), SM_V_DUPLICATE);
  expect_no_change(h);
  assert_int_equal(h_reply(h, 0, DO, 1, FAIL), SM_V_DUPLICATE);
  assert_int_equal(h->saga->version, v);
  assert_int_equal(h->saga->steps[1].status, SM_STEP_RUNNING);
  h_free(h);
}

static void test_late_reply_from_an_earlier_attempt_changes_nothing(
    void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  assert_int_equal(h_reply(h, 0, DO, 1, RETRY), SM_V_APPLIED);
  assert_int_equal(h->saga->steps[0].status, SM_STEP_BACKOFF);
  assert_int_equal(h->saga->steps[0].timer_ms, 1100);
  assert_int_equal(h_fire(h, 0, DO, SM_TIMER_BACKOFF), SM_V_APPLIED);
  expect_one_send(h, 0, DO, 2);
  assert_int_equal(h_reply(h, 0, DO, 1, OK), SM_V_LATE);
  expect_no_change(h);
  assert_int_equal(h->saga->steps[0].status, SM_STEP_RUNNING);
  assert_int_equal(h_reply(h, 0, DO, 2, OK), SM_V_APPLIED);
  h_free(h);
}

static void test_reply_for_unknown_saga_or_step_is_classified(void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  assert_int_equal(h_reply(h, 0, DO, 1, OK), SM_V_UNKNOWN_SAGA);
  expect_no_change(h);
  assert_int_equal(h->saga->status, SM_NEW);
  h_start(h);
  assert_int_equal(h_reply(h, 7, DO, 1, OK), SM_V_UNKNOWN_STEP);
  assert_int_equal(h_reply(h, -1, DO, 1, OK), SM_V_UNKNOWN_STEP);
  /* Never sent: a later attempt, a step not dispatched, a compensation. */
  assert_int_equal(h_reply(h, 0, DO, 5, OK), SM_V_UNEXPECTED);
  assert_int_equal(h_reply(h, 1, DO, 1, OK), SM_V_UNEXPECTED);
  assert_int_equal(h_reply(h, 0, COMP, 1, OK), SM_V_UNEXPECTED);
  assert_int_equal(h_reply(h, 0, DO, 0, OK), SM_V_UNEXPECTED);
  assert_int_equal(h_reply(h, 0, DO, 1, 9), SM_V_UNEXPECTED);
  expect_no_change(h);
  assert_int_equal(h->saga->version, 1);
  h_free(h);
}

static void test_timeout_then_late_success_is_ignored_and_retried(
    void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  assert_int_equal(h_fire(h, 0, DO, SM_TIMER_DEADLINE), SM_V_APPLIED);
  assert_int_equal(h->now, 2000);
  assert_int_equal(h->saga->steps[0].status, SM_STEP_BACKOFF);
  assert_true(h->saga->steps[0].flags & SM_SF_UNKNOWN);
  /* The success of the timed-out attempt arrives after its deadline. */
  assert_int_equal(h_reply(h, 0, DO, 1, OK), SM_V_LATE);
  expect_no_change(h);
  /* The deadline timer delivered twice is stale. */
  assert_int_equal(h_fire(h, 0, DO, SM_TIMER_DEADLINE), SM_V_STALE_TIMER);
  assert_int_equal(h_fire(h, 0, DO, SM_TIMER_BACKOFF), SM_V_APPLIED);
  expect_one_send(h, 0, DO, 2);
  assert_int_equal(h_reply(h, 0, DO, 2, OK), SM_V_APPLIED);
  assert_int_equal(h->saga->steps[0].status, SM_STEP_DONE);
  h_free(h);
}

static void test_timeout_with_retries_spent_compensates_the_unknown_step(
    void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  for (unsigned a = 1; a <= 3; a++) {
    assert_int_equal(h_fire(h, 1, DO, SM_TIMER_DEADLINE), SM_V_APPLIED);
    if (a < 3)
      assert_int_equal(h_fire(h, 1, DO, SM_TIMER_BACKOFF), SM_V_APPLIED);
  }
  /* The pivot's outcome is unknown: it is compensated first (refund),
   * then reserve. */
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  expect_one_send(h, 1, COMP, 1);
  assert_int_equal(h_reply(h, 1, DO, 3, OK), SM_V_LATE);
  assert_int_equal(h_reply(h, 1, COMP, 1, OK), SM_V_APPLIED);
  expect_one_send(h, 0, COMP, 1);
  assert_int_equal(h_reply(h, 0, COMP, 1, OK), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_true(h_has_notify(h, SM_NOTIFY_COMPENSATED));
  h_free(h);
}

static void test_early_or_stale_timer_changes_nothing(void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  sm_input_t t = {.type = SM_IN_TIMER,
                    .step = 0,
                    .action = DO,
                    .attempt = 1,
                    .timer = SM_TIMER_DEADLINE};
  assert_int_equal(h_in(h, t), SM_V_STALE_TIMER); /* now 1000 < 2000 */
  assert_int_equal(h->out.n_events, 0);
  assert_int_equal(h->out.n_effects, 1); /* re-armed */
  assert_int_equal(h->out.effects[0].at_ms, 2000);
  t.attempt = 2;
  h->now = 5000;
  assert_int_equal(h_in(h, t), SM_V_STALE_TIMER);
  t.attempt = 1;
  t.timer = SM_TIMER_BACKOFF;
  assert_int_equal(h_in(h, t), SM_V_STALE_TIMER);
  expect_no_change(h);
  h_free(h);
}

static void test_failure_of_step_k_compensates_completed_steps_in_reverse(
    void **state) {
  (void)state;
  h_t *h = h_new(FOUR, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, OK);
  assert_int_equal(h_reply(h, 2, DO, 1, FAIL), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  assert_int_equal(h->saga->steps[2].status, SM_STEP_FAILED);
  /* c failed by its own reply: nothing to undo there; b then a. */
  expect_one_send(h, 1, COMP, 1);
  assert_int_equal(h_reply(h, 1, COMP, 1, OK), SM_V_APPLIED);
  expect_one_send(h, 0, COMP, 1);
  assert_int_equal(h_reply(h, 0, COMP, 1, OK), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_int_equal(h->saga->steps[2].status, SM_STEP_FAILED);
  assert_int_equal(h->saga->steps[3].status, SM_STEP_PENDING);
  /* A late DO reply after compensation began changes nothing. */
  assert_int_equal(h_reply(h, 0, DO, 1, OK), SM_V_LATE);
  h_free(h);
}

static void test_failure_of_the_first_step_compensates_nothing(void **state) {
  (void)state;
  h_t *h = h_new(FOUR, 1);
  h_start(h);
  assert_int_equal(h_reply(h, 0, DO, 1, FAIL), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_int_equal(h_sends(h, NULL), 0);
  h_free(h);
}

static void test_failure_inside_a_parallel_group_drains_then_compensates(
    void **state) {
  (void)state;
  h_t *h = h_new(GROUP, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  assert_int_equal(h_sends(h, NULL), 3); /* b, c, d together */
  h_reply(h, 1, DO, 1, OK);
  /* c fails; d still running: compensation waits for d's outcome. */
  assert_int_equal(h_reply(h, 2, DO, 1, FAIL), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  assert_int_equal(h_sends(h, NULL), 0);
  /* d completes last: undone first, then b, then a. */
  assert_int_equal(h_reply(h, 3, DO, 1, OK), SM_V_APPLIED);
  expect_one_send(h, 3, COMP, 1);
  h_reply(h, 3, COMP, 1, OK);
  expect_one_send(h, 1, COMP, 1);
  h_reply(h, 1, COMP, 1, OK);
  expect_one_send(h, 0, COMP, 1);
  h_reply(h, 0, COMP, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_int_equal(h->saga->steps[2].status, SM_STEP_FAILED);
  assert_int_equal(h->saga->steps[4].status, SM_STEP_PENDING);
  h_free(h);
}

static void test_parallel_member_waiting_to_retry_gives_up_on_failure(
    void **state) {
  (void)state;
  h_t *h = h_new(GROUP, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  /* b times out (unknown, waits to retry), c fails, d fails. */
  h->now = 2500;
  assert_int_equal(h_fire(h, 1, DO, SM_TIMER_DEADLINE), SM_V_APPLIED);
  assert_int_equal(h->saga->steps[1].status, SM_STEP_BACKOFF);
  h_reply(h, 2, DO, 1, FAIL);
  assert_int_equal(h->saga->steps[1].status, SM_STEP_FAILED);
  assert_int_equal(h_sends(h, NULL), 0); /* d still running */
  h_reply(h, 3, DO, 1, RETRY); /* compensating: no forward retry */
  assert_int_equal(h->saga->steps[3].status, SM_STEP_FAILED);
  /* b's outcome is unknown: undone, then a. */
  expect_one_send(h, 1, COMP, 1);
  h_reply(h, 1, COMP, 1, OK);
  expect_one_send(h, 0, COMP, 1);
  h_reply(h, 0, COMP, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  /* b's stale backoff timer is ignored. */
  sm_input_t t = {.type = SM_IN_TIMER, .step = 1, .action = DO,
                    .attempt = 1, .timer = SM_TIMER_BACKOFF};
  assert_int_equal(h_in(h, t), SM_V_STALE_TIMER);
  h_free(h);
}

static void test_parallel_group_completes_when_every_member_is_done(
    void **state) {
  (void)state;
  h_t *h = h_new(GROUP, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 3, DO, 1, OK);
  assert_int_equal(h_sends(h, NULL), 0);
  h_reply(h, 1, DO, 1, RETRY);
  h_reply(h, 2, DO, 1, OK);
  assert_int_equal(h_sends(h, NULL), 0);
  h_fire(h, 1, DO, SM_TIMER_BACKOFF);
  assert_int_equal(h_reply(h, 1, DO, 2, OK), SM_V_APPLIED);
  expect_one_send(h, 4, DO, 1);
  h_free(h);
}

/* Run ORDER to a failure of charge so reserve needs compensating. */
static h_t *order_compensating(void) {
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, FAIL);
  expect_one_send(h, 0, COMP, 1);
  return h;
}

static h_t *order_parked(void) {
  h_t *h = order_compensating();
  assert_int_equal(h_reply(h, 0, COMP, 1, FAIL), SM_V_APPLIED);
  assert_int_equal(h->saga->steps[0].status, SM_STEP_COMP_BACKOFF);
  assert_int_equal(h_fire(h, 0, COMP, SM_TIMER_BACKOFF), SM_V_APPLIED);
  expect_one_send(h, 0, COMP, 2);
  assert_int_equal(h_fire(h, 0, COMP, SM_TIMER_DEADLINE), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATION_FAILED);
  assert_true(h_has_notify(h, SM_NOTIFY_COMPENSATION_FAILED));
  assert_true(sm_is_stuck(h->saga, h->now));
  return h;
}

/* The step a saga is at: the one in flight, then the one being undone
 * (not the one that failed), then the one parked on. */
static void test_current_step_follows_compensation_and_parking(
    void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  assert_int_equal(sm_current_step(h->saga), 0);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  assert_int_equal(sm_current_step(h->saga), 1);
  h_free(h);
  h = order_parked(); /* charge (1) failed, reserve's (0) undo is spent */
  assert_int_equal(h->saga->cursor, 1);
  assert_int_equal(sm_current_step(h->saga), 0);
  h_free(h);
  h = order_compensating();
  assert_int_equal(sm_current_step(h->saga), 0);
  h_reply(h, 0, COMP, 1, OK);
  assert_true(sm_is_terminal(h->saga));
  assert_int_equal(sm_current_step(h->saga), -1);
  h_free(h);
}

static void test_compensation_failure_retries_then_parks(void **state) {
  (void)state;
  h_t *h = order_parked();
  assert_int_equal(h->saga->steps[0].status, SM_STEP_COMP_FAILED);
  /* Parked: late replies and timers change nothing. */
  assert_int_equal(h_reply(h, 0, COMP, 2, OK), SM_V_LATE);
  assert_int_equal(h_reply(h, 0, COMP, 1, OK), SM_V_LATE);
  assert_false(sm_is_terminal(h->saga));
  h_free(h);
}

static void test_operator_retry_resumes_a_parked_compensation(void **state) {
  (void)state;
  h_t *h = order_parked();
  assert_int_equal(h_op(h, SM_IN_OPERATOR_RETRY), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  expect_one_send(h, 0, COMP, 3);
  /* A fresh budget: one more failure is retried, not parked. */
  h_reply(h, 0, COMP, 3, RETRY);
  assert_int_equal(h->saga->steps[0].status, SM_STEP_COMP_BACKOFF);
  h_fire(h, 0, COMP, SM_TIMER_BACKOFF);
  expect_one_send(h, 0, COMP, 4);
  assert_int_equal(h_reply(h, 0, COMP, 4, OK), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_int_equal(h->saga->flags & SM_F_RESOLVED, 0);
  h_free(h);
}

static void test_operator_resolve_closes_a_parked_saga(void **state) {
  (void)state;
  h_t *h = order_parked();
  assert_int_equal(h_op(h, SM_IN_OPERATOR_RESOLVE), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_true(h->saga->flags & SM_F_RESOLVED);
  assert_true(h_has_notify(h, SM_NOTIFY_COMPENSATED));
  assert_int_equal(h_op(h, SM_IN_OPERATOR_RETRY), SM_V_REJECTED);
  h_free(h);
}

static void test_operator_actions_are_refused_unless_parked(void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  assert_int_equal(h_op(h, SM_IN_OPERATOR_RETRY), SM_V_UNKNOWN_SAGA);
  h_start(h);
  assert_int_equal(h_op(h, SM_IN_OPERATOR_RETRY), SM_V_REJECTED);
  assert_int_equal(h_op(h, SM_IN_OPERATOR_RESOLVE), SM_V_REJECTED);
  expect_no_change(h);
  h_free(h);
}

static void test_step_after_the_pivot_is_retried_forward_never_compensated(
    void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, OK);
  int64_t last_delay = 0;
  for (unsigned a = 1; a <= 20; a++) {
    int outcome = a % 3 == 0 ? RETRY : FAIL;
    if (a % 4 == 0)
      assert_int_equal(h_fire(h, 2, DO, SM_TIMER_DEADLINE), SM_V_APPLIED);
    else
      assert_int_equal(h_reply(h, 2, DO, a, outcome), SM_V_APPLIED);
    assert_int_equal(h->saga->status, SM_RUNNING);
    assert_int_equal(h->saga->steps[2].status, SM_STEP_BACKOFF);
    int64_t delay = h->saga->steps[2].timer_ms - h->now;
    assert_true(delay >= last_delay && delay <= 1000); /* grows, capped */
    last_delay = delay;
    h_fire(h, 2, DO, SM_TIMER_BACKOFF);
    expect_one_send(h, 2, DO, a + 1);
  }
  assert_int_equal(last_delay, 1000);
  assert_int_equal(h_reply(h, 2, DO, 21, OK), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPLETED);
  for (size_t t = 0; t < h->ntx; t++)
    for (size_t i = 0; i < h->tx[t].n; i++) {
      assert_int_not_equal(h->tx[t].ev[i].type, SM_EV_COMPENSATING);
      assert_int_not_equal(h->tx[t].ev[i].action, COMP);
    }
  h_free(h);
}

static void test_resume_resends_pending_commands_with_the_same_key(
    void **state) {
  (void)state;
  h_t *h = h_new(GROUP, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, RETRY); /* b waits to retry; c, d in flight */
  sm_t *r = h_replay(h);
  sm_output_t out;
  sm_resume(r, &out);
  assert_int_equal(out.n_events, 0);
  assert_int_equal(out.n_effects, 5); /* backoff b; send+deadline c, d */
  assert_int_equal(out.effects[0].type, SM_FX_TIMER);
  assert_int_equal(out.effects[0].timer, SM_TIMER_BACKOFF);
  assert_int_equal(out.effects[0].at_ms, h->saga->steps[1].timer_ms);
  assert_int_equal(out.effects[1].type, SM_FX_SEND);
  assert_int_equal(out.effects[1].step, 2);
  assert_int_equal(out.effects[1].attempt, 1);
  assert_int_equal(out.effects[1].at_ms, h->saga->steps[2].timer_ms);
  char key[128];
  sm_idempotency_key(r, 2, SM_DO, 1, key, sizeof key);
  assert_string_equal(key, "s-1/c/DO/1");
  sm_idempotency_key(r, 0, SM_COMPENSATE, 3, key, sizeof key);
  assert_string_equal(key, "s-1/a/COMPENSATE/3");
  assert_int_equal(sm_next_timer(r), h->saga->steps[1].timer_ms);
  free(r);
  h_free(h);
}

static void test_jitter_is_drawn_from_the_given_rng_only(void **state) {
  (void)state;
  const char *def = "{'name':'j','version':1,'steps':[{'name':'a',"
                    "'topic':'t','compensation':'none','retry':{"
                    "'initial_backoff_ms':1000,'jitter':0.5}}]}";
  int64_t t[3];
  for (int i = 0; i < 3; i++) {
    h_t *h = h_new(def, i < 2 ? 42 : 43);
    h_start(h);
    h_reply(h, 0, DO, 1, RETRY);
    t[i] = h->saga->steps[0].timer_ms - h->now;
    assert_true(t[i] > 500 && t[i] <= 1000);
    h_free(h);
  }
  assert_int_equal(t[0], t[1]);
  assert_int_not_equal(t[0], t[2]);
}

static void test_stuck_detection_uses_the_step_threshold(void **state) {
  (void)state;
  h_t *h = h_new("{'name':'s','version':1,'steps':[{'name':'a','topic':"
                 "'t','compensation':'none','stuck_after_ms':5000}]}",
                 1);
  h_start(h);
  assert_false(sm_is_stuck(h->saga, h->now + 5000));
  assert_true(sm_is_stuck(h->saga, h->now + 5001));
  h_free(h);
}

/* saga_index's stuck_at: the time sm_is_stuck turns true, by the smallest
 * stuck_after_ms of the steps waited on (parallel members each have their
 * own), moving with every transition; parked = stuck since it parked;
 * terminal = never. */
static void expect_stuck_at(const h_t *h, int64_t at) {
  assert_int_equal(sm_stuck_at(h->saga), at);
  assert_false(sm_is_stuck(h->saga, at));
  assert_true(sm_is_stuck(h->saga, at + 1));
}

static void test_stuck_at_follows_the_thresholds_of_the_steps_waited_on(
    void **state) {
  (void)state;
  h_t *h = h_new(
      "{'name':'g','version':1,'defaults':{'retry':{'max_attempts':1},"
      "'compensation_retry':{'max_attempts':1},'timeout_ms':1000},"
      "'steps':["
      "{'name':'a','topic':'t','stuck_after_ms':2592000000,"
      "'compensation':{'action':'undo'}},"
      "{'name':'b','topic':'t','group':'g','stuck_after_ms':9000,"
      "'compensation':{'action':'undo'}},"
      "{'name':'c','topic':'t','group':'g','stuck_after_ms':4000,"
      "'compensation':{'action':'undo'}},"
      "{'name':'d','topic':'t','kind':'pivot'}]}",
      1);
  h_start(h);
  expect_stuck_at(h, 1000 + 2592000000LL); /* a: 30 days */
  h->now = 1500;
  h_reply(h, 0, DO, 1, OK); /* b and c in flight: c's 4 s first */
  expect_stuck_at(h, 1500 + 4000);
  h->now = 1700;
  h_reply(h, 2, DO, 1, OK); /* only b left: its 9 s */
  expect_stuck_at(h, 1700 + 9000);
  h->now = 1800;
  h_reply(h, 1, DO, 1, FAIL); /* compensating c, then a */
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  expect_stuck_at(h, 1800 + 4000);
  h->now = 1900;
  h_reply(h, 2, COMP, 1, FAIL); /* c's compensation spent: parked */
  assert_int_equal(h->saga->status, SM_COMPENSATION_FAILED);
  assert_int_equal(sm_stuck_at(h->saga), 1900);
  assert_true(sm_is_stuck(h->saga, 1900));
  h_op(h, SM_IN_OPERATOR_RESOLVE);
  assert_true(sm_is_terminal(h->saga));
  assert_int_equal(sm_stuck_at(h->saga), 0);
  assert_false(sm_is_stuck(h->saga, INT64_MAX / 2));
  h_free(h);
}

static void test_init_refuses_bad_ids(void **state) {
  (void)state;
  saga_def_t *def = h_def("{'name':'s','version':1,'steps':[{'name':'a',"
                          "'topic':'t','compensation':'none'}]}");
  char id[SM_ID_MAX + 2];
  memset(id, 'x', sizeof id - 1);
  id[sizeof id - 1] = '\0';
  sm_t *s = malloc(sm_size(def, sizeof id));
  assert_int_equal(sm_init(s, "", def), SAGA_CORE_EINVAL);
  assert_int_equal(sm_init(s, id, def), SAGA_CORE_EINVAL);
  /* 255 bytes, the wire's ceiling (issue 14 case 5: it was 63). */
  id[SM_ID_MAX] = '\0';
  assert_int_equal(SM_ID_MAX, 255);
  assert_int_equal(sm_init(s, id, def), SAGA_CORE_OK);
  assert_string_equal(s->id, id);
  assert_int_equal(sm_bytes(s), sm_size(def, SM_ID_MAX));
  sm_output_t out;
  sm_input_t in = {.type = SM_IN_START};
  assert_int_equal(sm_step(s, &in, -1, NULL, &out), SAGA_CORE_EINVAL);
  /* The id is stored by its length: a short id keeps a saga small. */
  assert_true(sm_size(def, 8) <= 80);
  sm_t *c = malloc(sm_bytes(s));
  sm_copy(c, s);
  assert_true(sm_equal(c, s));
  assert_ptr_not_equal(c->id, s->id);
  free(s);
  assert_string_equal(c->id, id);
  free(c);
  saga_def_free(def);
}

/* Walks every X-macro list of saga_machine.h: each value has its own
 * name, never "unknown", and the names of one list are distinct. */
static void check_names(const char *const *got, const char *const *want,
                        size_t n) {
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(got[i], want[i]);
    assert_string_not_equal(got[i], "unknown");
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(got[i], got[j]);
  }
}

static void test_names_cover_every_value(void **state) {
  (void)state;
#define GOT_(fn, type) fn((type)v)
#define CHECK_LIST_(LIST, fn, type)                                            \
  do {                                                                         \
    const int values[] = {LIST(VALUE_)};                                       \
    const char *const want[] = {LIST(TEXT_)};                                  \
    const char *got[sizeof values / sizeof values[0]];                         \
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {            \
      int v = values[i];                                                       \
      got[i] = GOT_(fn, type);                                                 \
    }                                                                          \
    check_names(got, want, sizeof values / sizeof values[0]);                  \
  } while (0)
#define VALUE_(name, value, text) value,
#define TEXT_(name, value, text) text,
  CHECK_LIST_(SM_STATUS_LIST, sm_status_name, sm_status_t);
  CHECK_LIST_(SM_STEP_STATUS_LIST, sm_step_status_name, sm_step_status_t);
  CHECK_LIST_(SM_EVENT_TYPE_LIST, sm_event_type_name, sm_event_type_t);
  CHECK_LIST_(SM_VERDICT_LIST, sm_verdict_name, sm_verdict_t);
#undef VALUE_
#undef TEXT_
#undef CHECK_LIST_
#undef GOT_
  /* the verdict that once printed "unknown" */
  assert_string_equal(sm_verdict_name(SM_V_FINISHED), "finished");
  assert_string_equal(sm_verdict_name((sm_verdict_t)99), "unknown");
  assert_string_equal(sm_event_type_name((sm_event_type_t)0), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_happy_path_runs_every_step_and_completes),
      cmocka_unit_test(test_duplicate_start_changes_nothing),
      cmocka_unit_test(test_duplicate_reply_changes_nothing),
      cmocka_unit_test(test_late_reply_from_an_earlier_attempt_changes_nothing),
      cmocka_unit_test(test_reply_for_unknown_saga_or_step_is_classified),
      cmocka_unit_test(test_timeout_then_late_success_is_ignored_and_retried),
      cmocka_unit_test(
          test_timeout_with_retries_spent_compensates_the_unknown_step),
      cmocka_unit_test(test_early_or_stale_timer_changes_nothing),
      cmocka_unit_test(
          test_failure_of_step_k_compensates_completed_steps_in_reverse),
      cmocka_unit_test(test_failure_of_the_first_step_compensates_nothing),
      cmocka_unit_test(
          test_failure_inside_a_parallel_group_drains_then_compensates),
      cmocka_unit_test(
          test_parallel_member_waiting_to_retry_gives_up_on_failure),
      cmocka_unit_test(test_parallel_group_completes_when_every_member_is_done),
      cmocka_unit_test(test_current_step_follows_compensation_and_parking),
      cmocka_unit_test(test_compensation_failure_retries_then_parks),
      cmocka_unit_test(test_operator_retry_resumes_a_parked_compensation),
      cmocka_unit_test(test_operator_resolve_closes_a_parked_saga),
      cmocka_unit_test(test_operator_actions_are_refused_unless_parked),
      cmocka_unit_test(
          test_step_after_the_pivot_is_retried_forward_never_compensated),
      cmocka_unit_test(test_resume_resends_pending_commands_with_the_same_key),
      cmocka_unit_test(test_jitter_is_drawn_from_the_given_rng_only),
      cmocka_unit_test(test_stuck_detection_uses_the_step_threshold),
      cmocka_unit_test(
          test_stuck_at_follows_the_thresholds_of_the_steps_waited_on),
      cmocka_unit_test(test_init_refuses_bad_ids),
      cmocka_unit_test(test_names_cover_every_value),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
