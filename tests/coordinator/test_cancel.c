/* Cancelling a running saga (design.md invariant 10), transition by
 * transition: before the pivot it compensates like a failure, after the
 * pivot it is refused and the saga goes on, on a finished saga it changes
 * nothing, twice it is one cancel; and the operator's name and reason are
 * recorded in CancelRequested, OperatorRetry and Resolved. Every input
 * goes through the harness, which checks after each one that replaying
 * the logged events rebuilds the live state; the crash tests replay the
 * stored records through the codec and resume. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "machine_harness.h"
#include "saga_codec.h"

/* reserve -> charge (pivot) -> ship. */
static const char *ORDER =
    "{'name':'order','version':1,'defaults':{'timeout_ms':1000,"
    "'retry':{'max_attempts':3,'initial_backoff_ms':100,'jitter':0},"
    "'compensation_retry':{'max_attempts':2,'initial_backoff_ms':50,"
    "'jitter':0}},'steps':["
    "{'name':'reserve','topic':'inv','compensation':{'action':'release'}},"
    "{'name':'charge','topic':'pay','kind':'pivot','compensation':{"
    "'action':'refund'}},"
    "{'name':'ship','topic':'ship','kind':'retriable'}]}";

/* a, b, c compensatable, d pivot; three attempts a step, one for an
 * undo. */
static const char *FOUR =
    "{'name':'four','version':1,'defaults':{'retry':{'max_attempts':3,"
    "'initial_backoff_ms':100,'jitter':0},'timeout_ms':1000,"
    "'compensation_retry':{'max_attempts':1}}," H_FOUR_STEPS;

static const char *GROUP = H_GROUP;

/* No pivot: cancellable while it runs. */
static const char *NOPIVOT =
    "{'name':'np','version':1,'defaults':{'timeout_ms':1000},'steps':["
    "{'name':'a','topic':'t','compensation':{'action':'undo'}},"
    "{'name':'b','topic':'t','compensation':{'action':'undo'}}]}";

static int h_cancel(h_t *h, const char *reason, const char *who) {
  return h_in(h, (sm_input_t){.type = SM_IN_CANCEL, .reason = reason,
                                .who = who});
}

static void expect_refusal(const h_t *h, const char *want) {
  char why[256];
  assert_string_equal(sm_cancel_refusal(h->saga, why, sizeof why), want);
}

/* The logged event of this type (the last one), or NULL. */
static const sm_event_t *find_event(const h_t *h, int type) {
  const sm_event_t *found = NULL;
  for (size_t t = 0; t < h->ntx; t++)
    for (size_t i = 0; i < h->tx[t].n; i++)
      if (h->tx[t].ev[i].type == type)
        found = &h->tx[t].ev[i];
  return found;
}

/* No forward step was ever dispatched after the cancel, and the pivot
 * never was. */
static void expect_no_dispatch_after_cancel(const h_t *h) {
  int cancelled = 0;
  for (size_t t = 0; t < h->ntx; t++)
    for (size_t i = 0; i < h->tx[t].n; i++) {
      const sm_event_t *e = &h->tx[t].ev[i];
      if (e->type == SM_EV_CANCEL_REQUESTED)
        cancelled = 1;
      if (cancelled && e->type == SM_EV_DISPATCHED)
        assert_int_equal(e->action, COMP);
      if (e->type == SM_EV_DISPATCHED && h->def->pivot >= 0)
        assert_int_not_equal(e->step, h->def->pivot);
    }
  assert_true(cancelled);
}

static void test_cancel_before_the_pivot_drains_then_compensates_in_reverse(
    void **state) {
  (void)state;
  h_t *h = h_new(FOUR, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, OK); /* c in flight */
  expect_refusal(h, "");
  assert_int_equal(h_cancel(h, "customer changed their mind", "alice"),
                   SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  assert_true(h->saga->flags & SM_F_CANCELLED);
  assert_int_equal(h->out.n_events, 1); /* c drains first */
  assert_int_equal(h_sends(h, NULL), 0);
  const sm_event_t *ev = find_event(h, SM_EV_CANCEL_REQUESTED);
  assert_non_null(ev);
  assert_string_equal(ev->reason, "customer changed their mind");
  assert_string_equal(ev->who, "alice");
  /* c succeeds after the cancel: it is undone first, then b, then a. */
  assert_int_equal(h_reply(h, 2, DO, 1, OK), SM_V_APPLIED);
  assert_true(h_sent_one(h, 2, COMP, 1));
  h_reply(h, 2, COMP, 1, OK);
  assert_true(h_sent_one(h, 1, COMP, 1));
  h_reply(h, 1, COMP, 1, OK);
  assert_true(h_sent_one(h, 0, COMP, 1));
  assert_int_equal(h_reply(h, 0, COMP, 1, OK), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_true(h_has_notify(h, SM_NOTIFY_COMPENSATED));
  assert_int_equal(h->saga->steps[3].status, SM_STEP_PENDING);
  expect_no_dispatch_after_cancel(h);
  assert_null(find_event(h, SM_EV_COMPENSATING)); /* no step failed */
  h_free(h);
}

static void test_cancel_while_a_step_is_in_flight_that_times_out(
    void **state) {
  (void)state;
  h_t *h = h_new(FOUR, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK); /* b in flight */
  assert_int_equal(h_cancel(h, "wrong address", NULL), SM_V_APPLIED);
  assert_null(find_event(h, SM_EV_CANCEL_REQUESTED)->who);
  /* b's deadline passes: its outcome is unknown, it is not retried
   * forward, and it is compensated before a. */
  assert_int_equal(h_fire(h, 1, DO, SM_TIMER_DEADLINE), SM_V_APPLIED);
  assert_true(h->saga->steps[1].flags & SM_SF_UNKNOWN);
  assert_true(h_sent_one(h, 1, COMP, 1));
  h_reply(h, 1, COMP, 1, OK);
  assert_true(h_sent_one(h, 0, COMP, 1));
  h_reply(h, 0, COMP, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  /* The late reply of b's DO changes nothing. */
  assert_int_equal(h_reply(h, 1, DO, 1, OK), SM_V_LATE);
  expect_no_dispatch_after_cancel(h);
  h_free(h);
}

static void test_cancel_of_a_step_waiting_to_retry_gives_it_up(
    void **state) {
  (void)state;
  h_t *h = h_new(FOUR, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, RETRY); /* b waits to retry: not applied */
  assert_int_equal(h->saga->steps[1].status, SM_STEP_BACKOFF);
  /* Nothing in flight: the cancel compensates a at once. */
  assert_int_equal(h_cancel(h, "stop", "bob"), SM_V_APPLIED);
  assert_int_equal(h->saga->steps[1].status, SM_STEP_FAILED);
  assert_true(h_sent_one(h, 0, COMP, 1));
  /* b's backoff timer is stale now. */
  assert_int_equal(h_fire(h, 1, DO, SM_TIMER_BACKOFF), SM_V_STALE_TIMER);
  h_reply(h, 0, COMP, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  expect_no_dispatch_after_cancel(h);
  h_free(h);
}

static void test_cancel_of_the_first_step_in_flight_that_fails(
    void **state) {
  (void)state;
  h_t *h = h_new(NOPIVOT, 1);
  h_start(h);
  assert_int_equal(h_cancel(h, "duplicate order", "ops"), SM_V_APPLIED);
  /* a fails for good: nothing was applied, nothing to undo. */
  assert_int_equal(h_reply(h, 0, DO, 1, FAIL), SM_V_APPLIED);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_int_equal(h_sends(h, NULL), 0);
  assert_true(h_has_notify(h, SM_NOTIFY_COMPENSATED));
  h_free(h);
}

static void test_cancel_without_a_pivot_is_taken_while_running(
    void **state) {
  (void)state;
  h_t *h = h_new(NOPIVOT, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK); /* b, the last step, in flight */
  assert_int_equal(h_cancel(h, "late", "ops"), SM_V_APPLIED);
  h_reply(h, 1, DO, 1, OK);
  assert_true(h_sent_one(h, 1, COMP, 1));
  h_reply(h, 1, COMP, 1, OK);
  assert_true(h_sent_one(h, 0, COMP, 1));
  h_reply(h, 0, COMP, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_null(find_event(h, SM_EV_COMPLETED));
  h_free(h);
}

static void test_cancel_during_a_parallel_group_drains_every_member(
    void **state) {
  (void)state;
  h_t *h = h_new(GROUP, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  assert_int_equal(h_sends(h, NULL), 3); /* b, c, d together */
  h_reply(h, 1, DO, 1, OK);
  assert_int_equal(h_cancel(h, "fraud check", "carol"), SM_V_APPLIED);
  assert_int_equal(h_sends(h, NULL), 0); /* c, d still running */
  /* c fails for good, d times out (unknown): no forward retry. */
  assert_int_equal(h_reply(h, 2, DO, 1, FAIL), SM_V_APPLIED);
  assert_int_equal(h_sends(h, NULL), 0);
  assert_int_equal(h_fire(h, 3, DO, SM_TIMER_DEADLINE), SM_V_APPLIED);
  /* d (unknown, decided last) is undone first, then b, then a. */
  assert_true(h_sent_one(h, 3, COMP, 1));
  h_reply(h, 3, COMP, 1, OK);
  assert_true(h_sent_one(h, 1, COMP, 1));
  h_reply(h, 1, COMP, 1, OK);
  assert_true(h_sent_one(h, 0, COMP, 1));
  h_reply(h, 0, COMP, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_int_equal(h->saga->steps[2].status, SM_STEP_FAILED);
  assert_int_equal(h->saga->steps[4].status, SM_STEP_PENDING);
  expect_no_dispatch_after_cancel(h);
  h_free(h);
}

static void test_cancel_during_compensation_after_a_failure_is_refused(
    void **state) {
  (void)state;
  h_t *h = h_new(FOUR, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, FAIL); /* undoing a */
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  assert_int_equal(h_cancel(h, "too late", "dave"), SM_V_REJECTED);
  assert_int_equal(h->out.n_events + h->out.n_effects, 0);
  expect_refusal(h, "already compensating after step b failed");
  assert_int_equal(h->saga->flags & SM_F_CANCELLED, 0);
  h_reply(h, 0, COMP, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_null(find_event(h, SM_EV_CANCEL_REQUESTED));
  h_free(h);
}

static void test_cancel_during_its_own_compensation_is_one_cancel(
    void **state) {
  (void)state;
  h_t *h = h_new(FOUR, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, OK);
  h_cancel(h, "first", "erin");
  size_t ntx = h->ntx;
  /* again while draining, and again while compensating */
  assert_int_equal(h_cancel(h, "second", "frank"), SM_V_DUPLICATE);
  assert_int_equal(h->out.n_events + h->out.n_effects, 0);
  expect_refusal(h, "");
  h_reply(h, 2, DO, 1, OK);
  assert_int_equal(h_cancel(h, "third", "erin"), SM_V_DUPLICATE);
  assert_int_equal(h->out.n_events + h->out.n_effects, 0);
  assert_int_equal(h->ntx, ntx + 1);
  assert_string_equal(find_event(h, SM_EV_CANCEL_REQUESTED)->reason,
                      "first");
  h_free(h);
}

static void test_cancel_after_the_pivot_is_refused_and_the_saga_goes_on(
    void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK); /* charge, the pivot, dispatched */
  assert_int_equal(h_cancel(h, "please", "gina"), SM_V_REJECTED);
  assert_int_equal(h->out.n_events + h->out.n_effects, 0);
  expect_refusal(h, "after the pivot step charge");
  h_reply(h, 1, DO, 1, OK);
  assert_int_equal(h_cancel(h, "please", "gina"), SM_V_REJECTED);
  expect_refusal(h, "after the pivot step charge");
  h_reply(h, 2, DO, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPLETED);
  assert_null(find_event(h, SM_EV_CANCEL_REQUESTED));
  h_free(h);
}

static void test_cancel_is_refused_once_the_pivot_is_dispatched(
    void **state) {
  (void)state;
  const char *def = "{'name':'pg','version':1,'steps':["
                    "{'name':'a','topic':'t','compensation':{'action':'u'}},"
                    "{'name':'p','topic':'t','kind':'pivot'}]}";
  h_t *h = h_new(def, 1);
  h_start(h);
  assert_int_equal(h_cancel(h, "x", "y"), SM_V_APPLIED);
  h_free(h);
  h = h_new(def, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  assert_int_equal(h_cancel(h, "x", "y"), SM_V_REJECTED);
  expect_refusal(h, "after the pivot step p");
  h_free(h);
}

static void test_cancel_of_a_finished_or_unknown_saga_changes_nothing(
    void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  assert_int_equal(h_cancel(h, "x", "y"), SM_V_UNKNOWN_SAGA);
  expect_refusal(h, "no such saga");
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, OK);
  h_reply(h, 2, DO, 1, OK);
  assert_int_equal(h_cancel(h, "x", "y"), SM_V_FINISHED);
  assert_int_equal(h->out.n_events + h->out.n_effects, 0);
  expect_refusal(h, "already completed: nothing to cancel");
  h_free(h);

  h = h_new(FOUR, 1);
  h_start(h);
  h_cancel(h, "x", "y");
  h_reply(h, 0, DO, 1, FAIL);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  assert_int_equal(h_cancel(h, "again", "y"), SM_V_FINISHED);
  assert_int_equal(h->out.n_events + h->out.n_effects, 0);
  expect_refusal(h, "already compensated (cancelled): nothing to cancel");
  h_free(h);

  h = h_new(FOUR, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, FAIL);
  assert_int_equal(h_cancel(h, "x", "y"), SM_V_FINISHED);
  expect_refusal(h, "already compensated: nothing to cancel");
  h_free(h);
}

/* FOUR with a's undo spent: parked. */
static h_t *four_parked(void) {
  h_t *h = h_new(FOUR, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, FAIL);
  h_reply(h, 0, COMP, 1, FAIL);
  assert_int_equal(h->saga->status, SM_COMPENSATION_FAILED);
  return h;
}

static void test_cancel_of_a_parked_saga_is_refused(void **state) {
  (void)state;
  h_t *h = four_parked();
  assert_int_equal(h_cancel(h, "x", "y"), SM_V_REJECTED);
  assert_int_equal(h->out.n_events + h->out.n_effects, 0);
  expect_refusal(h, "compensation failed at step a: parked for an operator "
                    "(retry or resolve it)");
  h_free(h);
}

static void test_operator_retry_and_resolve_record_who_and_why(
    void **state) {
  (void)state;
  h_t *h = four_parked();
  assert_int_equal(h_in(h, (sm_input_t){.type = SM_IN_OPERATOR_RETRY,
                                          .reason = "refund service is back",
                                          .who = "henry"}),
                   SM_V_APPLIED);
  const sm_event_t *ev = find_event(h, SM_EV_OPERATOR_RETRY);
  assert_string_equal(ev->reason, "refund service is back");
  assert_string_equal(ev->who, "henry");
  h_reply(h, 0, COMP, 2, FAIL);
  assert_int_equal(h->saga->status, SM_COMPENSATION_FAILED);
  assert_int_equal(h_in(h, (sm_input_t){.type = SM_IN_OPERATOR_RESOLVE,
                                          .reason = "refunded by hand",
                                          .who = "iris"}),
                   SM_V_APPLIED);
  ev = find_event(h, SM_EV_RESOLVED);
  assert_string_equal(ev->reason, "refunded by hand");
  assert_string_equal(ev->who, "iris");
  expect_refusal(h, "already compensated (resolved by an operator): nothing "
                    "to cancel");
  h_free(h);
}

/* Rebuild the saga from its stored records: encode each logged
 * transition, decode it, apply it, as recovery does. */
static sm_t *stored_replay(const h_t *h) {
  sm_t *r = h_new_saga(h->def, "s-1");
  saga_record_t rec = {0};
  uint8_t buf[16384];
  for (size_t t = 0; t < h->ntx; t++) {
    size_t len = 0;
    assert_int_equal(saga_codec_encode(h->tx[t].ev, h->tx[t].n, h->tx[t].at,
                                       buf, sizeof buf, &len),
                     SAGA_CORE_OK);
    assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_OK);
    for (size_t i = 0; i < rec.n; i++)
      if (rec.events[i].type == SM_EV_CANCEL_REQUESTED) {
        assert_string_equal(rec.events[i].reason, h->tx[t].ev[i].reason);
        if (h->tx[t].ev[i].who)
          assert_string_equal(rec.events[i].who, h->tx[t].ev[i].who);
        else
          assert_null(rec.events[i].who);
      }
    assert_int_equal(saga_codec_apply(r, &rec), SAGA_CORE_OK);
  }
  saga_record_clear(&rec);
  assert_true(sm_equal(r, h->saga));
  return r;
}

/* The process dies: the saga goes on from what the store holds. */
static void crash(h_t *h, sm_output_t *resumed) {
  sm_t *r = stored_replay(h);
  sm_resume(r, resumed);
  assert_int_equal(resumed->n_events, 0);
  free(h->saga);
  h->saga = r;
}

static void test_cancel_interrupted_by_a_crash_resumes_where_it_was(
    void **state) {
  (void)state;
  sm_output_t out;
  h_t *h = h_new(GROUP, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, OK);
  h_reply(h, 1, DO, 1, OK);
  h_reply(h, 2, DO, 1, RETRY); /* c waits to retry; d in flight */
  h_cancel(h, "crash test", "jack");
  int64_t d_deadline = h->saga->steps[3].timer_ms;
  /* Crash while d drains: resume re-sends d's DO with its deadline, and
   * nothing for c (given up) or the pivot. */
  crash(h, &out);
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  assert_true(h->saga->flags & SM_F_CANCELLED);
  assert_int_equal(out.n_effects, 2);
  assert_int_equal(out.effects[0].type, SM_FX_SEND);
  assert_int_equal(out.effects[0].step, 3);
  assert_int_equal(out.effects[0].action, DO);
  assert_int_equal(out.effects[0].attempt, 1);
  assert_int_equal(out.effects[0].at_ms, d_deadline);
  assert_int_equal(out.effects[1].type, SM_FX_TIMER);
  /* A second cancel after the crash is still one cancel. */
  assert_int_equal(h_cancel(h, "again", "jack"), SM_V_DUPLICATE);
  h_reply(h, 3, DO, 1, OK);
  assert_true(h_sent_one(h, 3, COMP, 1));
  /* Crash while d's compensation runs: it is re-sent, same attempt. */
  crash(h, &out);
  assert_int_equal(out.n_effects, 2);
  assert_int_equal(out.effects[0].type, SM_FX_SEND);
  assert_int_equal(out.effects[0].step, 3);
  assert_int_equal(out.effects[0].action, COMP);
  assert_int_equal(out.effects[0].attempt, 1);
  h_reply(h, 3, COMP, 1, OK);
  assert_true(h_sent_one(h, 1, COMP, 1));
  h_reply(h, 1, COMP, 1, OK);
  assert_true(h_sent_one(h, 0, COMP, 1));
  h_reply(h, 0, COMP, 1, OK);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  /* Crash after the end: nothing to resume, the cancel is remembered. */
  crash(h, &out);
  assert_int_equal(out.n_effects, 0);
  assert_int_equal(h_cancel(h, "x", "y"), SM_V_FINISHED);
  expect_refusal(h, "already compensated (cancelled): nothing to cancel");
  expect_no_dispatch_after_cancel(h);
  h_free(h);
}

/* A stored CancelRequested that does not fit the state (after the saga
 * finished) does not replay. */
static void test_cancel_requested_on_a_finished_saga_does_not_replay(
    void **state) {
  (void)state;
  h_t *h = h_new(NOPIVOT, 1);
  h_start(h);
  h_reply(h, 0, DO, 1, FAIL);
  assert_int_equal(h->saga->status, SM_COMPENSATED);
  sm_event_t ev = {.type = SM_EV_CANCEL_REQUESTED, .reason = "x"};
  assert_int_equal(sm_apply(h->saga, &ev, h->now), SAGA_CORE_EREPLAY);
  h_free(h);
}

static void test_operator_name_longer_than_an_id_is_not_stored(
    void **state) {
  (void)state;
  char who[SM_ID_MAX + 2];
  memset(who, 'w', sizeof who - 1);
  who[sizeof who - 1] = '\0';
  sm_event_t ev = {.type = SM_EV_CANCEL_REQUESTED, .who = who};
  uint8_t buf[1024];
  size_t len = 0;
  assert_int_equal(saga_codec_encode(&ev, 1, 1000, buf, sizeof buf, &len),
                   SAGA_CORE_EINVAL);
  who[SM_ID_MAX] = '\0';
  assert_int_equal(saga_codec_encode(&ev, 1, 1000, buf, sizeof buf, &len),
                   SAGA_CORE_OK);
  saga_record_t rec = {0};
  assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_OK);
  assert_int_equal(rec.events[0].type, SM_EV_CANCEL_REQUESTED);
  assert_string_equal(rec.events[0].who, who);
  saga_record_clear(&rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_cancel_before_the_pivot_drains_then_compensates_in_reverse),
      cmocka_unit_test(test_cancel_while_a_step_is_in_flight_that_times_out),
      cmocka_unit_test(test_cancel_of_a_step_waiting_to_retry_gives_it_up),
      cmocka_unit_test(test_cancel_of_the_first_step_in_flight_that_fails),
      cmocka_unit_test(test_cancel_without_a_pivot_is_taken_while_running),
      cmocka_unit_test(test_cancel_during_a_parallel_group_drains_every_member),
      cmocka_unit_test(
          test_cancel_during_compensation_after_a_failure_is_refused),
      cmocka_unit_test(test_cancel_during_its_own_compensation_is_one_cancel),
      cmocka_unit_test(
          test_cancel_after_the_pivot_is_refused_and_the_saga_goes_on),
      cmocka_unit_test(
          test_cancel_is_refused_once_the_pivot_is_dispatched),
      cmocka_unit_test(
          test_cancel_of_a_finished_or_unknown_saga_changes_nothing),
      cmocka_unit_test(test_cancel_of_a_parked_saga_is_refused),
      cmocka_unit_test(test_operator_retry_and_resolve_record_who_and_why),
      cmocka_unit_test(
          test_cancel_interrupted_by_a_crash_resumes_where_it_was),
      cmocka_unit_test(
          test_cancel_requested_on_a_finished_saga_does_not_replay),
      cmocka_unit_test(test_operator_name_longer_than_an_id_is_not_stored),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
