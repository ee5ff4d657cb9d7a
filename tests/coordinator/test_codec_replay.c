/* The event codec, and replay through it: encoding then decoding a saga's
 * transitions and applying them rebuilds exactly the live state. A random
 * walk drives many sagas of several definitions with random (also
 * duplicated, late, bogus) inputs and checks the invariants after every
 * input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "machine_harness.h"
#include "saga_codec.h"

static const char *ORDER =
    "{'name':'order','version':1,'defaults':{'timeout_ms':1000,"
    "'compensation_retry':{'max_attempts':3}},'steps':["
    "{'name':'reserve_inventory','topic':'inventory.commands','action':"
    "'reserve','compensation':{'action':'release'}},"
    "{'name':'charge_payment','topic':'payment.commands','action':'charge',"
    "'kind':'pivot','compensation':{'action':'refund'}},"
    "{'name':'ship','topic':'shipping.commands','kind':'retriable'}]}";

static const char *FOUR =
    "{'name':'four','version':1,'defaults':{'retry':{'max_attempts':2},"
    "'timeout_ms':1000,'compensation_retry':{'max_attempts':2}},'steps':["
    "{'name':'a','topic':'t','compensation':{'action':'undo'}},"
    "{'name':'b','topic':'t','compensation':'none'},"
    "{'name':'c','topic':'t','compensation':{'action':'undo'}},"
    "{'name':'d','topic':'t','kind':'pivot'}]}";

static const char *GROUP =
    "{'name':'group','version':1,'defaults':{'retry':{'max_attempts':2},"
    "'timeout_ms':1000,'compensation_retry':{'max_attempts':2}},"
    H_GROUP_STEPS;

static const char *FORWARD =
    "{'name':'fwd','version':3,'defaults':{'retry':{'max_attempts':2},"
    "'timeout_ms':500},'steps':["
    "{'name':'a','topic':'t','compensation':{'action':'undo'}},"
    "{'name':'p','topic':'t','kind':'pivot','compensation':{'action':'u'}},"
    "{'name':'r1','topic':'t','kind':'retriable','group':'h'},"
    "{'name':'r2','topic':'t','kind':'retriable','group':'h'},"
    "{'name':'r3','topic':'t','kind':'retriable'}]}";

/* Encode every logged transition, decode it, apply it to a fresh saga. */
static sm_t *codec_replay(const h_t *h, size_t *bytes) {
  sm_t *r = h_new_saga(h->def, "s-1");
  saga_record_t rec = {0};
  uint8_t buf[16384];
  size_t total = 0;
  for (size_t t = 0; t < h->ntx; t++) {
    size_t len = 0;
    assert_int_equal(saga_codec_encode(h->tx[t].ev, h->tx[t].n, h->tx[t].at,
                                       buf, sizeof buf, &len),
                     SAGA_CORE_OK);
    assert_int_equal(len, saga_codec_size(h->tx[t].ev, h->tx[t].n,
                                          h->tx[t].at));
    total += len;
    assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_OK);
    assert_int_equal(saga_codec_apply(r, &rec), SAGA_CORE_OK);
  }
  saga_record_clear(&rec);
  if (bytes != NULL)
    *bytes = total;
  return r;
}

static void test_every_event_field_round_trips(void **state) {
  (void)state;
  const uint8_t pl[] = {0, 1, 2, 255};
  sm_event_t ev[4] = {
      {.type = SM_EV_STARTED, .def_name = "order", .def_version = 7,
       .payload = pl, .payload_len = sizeof pl},
      {.type = SM_EV_DISPATCHED, .step = 31, .action = COMP,
       .attempt = 65535, .until_ms = 123456789012},
      {.type = SM_EV_ATTEMPT_FAILED, .step = 2, .attempt = 3,
       .outcome = SM_OUTCOME_TIMEOUT, .reason = "card declined",
       .until_ms = 0},
      {.type = SM_EV_RESOLVED}};
  uint8_t buf[512];
  size_t len = 0;
  assert_int_equal(saga_codec_encode(ev, 4, 123456000000, buf, sizeof buf,
                                     &len),
                   SAGA_CORE_OK);
  saga_record_t rec = {0};
  assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_OK);
  assert_int_equal(rec.n, 4);
  assert_int_equal(rec.at_ms, 123456000000);
  assert_string_equal(rec.events[0].def_name, "order");
  assert_int_equal(rec.events[0].def_version, 7);
  assert_int_equal(rec.events[0].payload_len, 4);
  assert_memory_equal(rec.events[0].payload, pl, 4);
  assert_int_equal(rec.events[1].step, 31);
  assert_int_equal(rec.events[1].action, COMP);
  assert_int_equal(rec.events[1].attempt, 65535);
  assert_int_equal(rec.events[1].until_ms, 123456789012);
  assert_int_equal(rec.events[2].outcome, SM_OUTCOME_TIMEOUT);
  assert_string_equal(rec.events[2].reason, "card declined");
  assert_int_equal(rec.events[2].until_ms, 0);
  assert_int_equal(rec.events[3].type, SM_EV_RESOLVED);
  assert_string_equal(saga_codec_record_type(rec.events, rec.n), "Started");
  /* The record is reusable. */
  assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_OK);
  saga_record_clear(&rec);
  saga_record_clear(&rec);
}

static void test_long_reason_is_cut(void **state) {
  (void)state;
  char reason[1000];
  memset(reason, 'r', sizeof reason - 1);
  reason[sizeof reason - 1] = '\0';
  sm_event_t ev = {.type = SM_EV_ATTEMPT_FAILED, .attempt = 1,
                     .outcome = FAIL, .reason = reason};
  uint8_t buf[2048];
  size_t len = 0;
  assert_int_equal(saga_codec_encode(&ev, 1, 5, buf, sizeof buf, &len),
                   SAGA_CORE_OK);
  saga_record_t rec = {0};
  assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_OK);
  assert_int_equal(strlen(rec.events[0].reason), SAGA_CODEC_MAX_REASON);
  /* A cut inside a UTF-8 character would store invalid text: the partial
   * character goes too. */
  reason[0] = '\0';
  while (strlen(reason) + 3 < 600)
    strcat(reason, "\xe2\x82\xac"); /* the euro sign, 3 bytes */
  assert_int_equal(saga_codec_encode(&ev, 1, 5, buf, sizeof buf, &len),
                   SAGA_CORE_OK);
  assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_OK);
  size_t n = strlen(rec.events[0].reason);
  assert_int_equal(n, SAGA_CODEC_MAX_REASON / 3 * 3);
  assert_memory_equal(rec.events[0].reason, reason, n);
  saga_record_clear(&rec);
}

/* Issue 14 case 6: the starter's correlation-id is kept in Started, so
 * later messages of the saga carry it after a recovery too. */
static void test_started_keeps_the_correlation_id(void **state) {
  (void)state;
  sm_event_t ev = {.type = SM_EV_STARTED, .def_name = "order",
                   .def_version = 1, .correlation_id = "corr-X"};
  uint8_t buf[256];
  size_t len = 0;
  assert_int_equal(saga_codec_encode(&ev, 1, 5, buf, sizeof buf, &len),
                   SAGA_CORE_OK);
  saga_record_t rec = {0};
  assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_OK);
  assert_string_equal(rec.events[0].correlation_id, "corr-X");
  /* None: nothing stored, nothing decoded. */
  ev.correlation_id = NULL;
  size_t shorter = 0;
  assert_int_equal(saga_codec_encode(&ev, 1, 5, buf, sizeof buf, &shorter),
                   SAGA_CORE_OK);
  assert_int_equal(shorter, len - 8);
  assert_int_equal(saga_codec_decode(buf, shorter, &rec), SAGA_CORE_OK);
  assert_null(rec.events[0].correlation_id);
  saga_record_clear(&rec);
  /* The machine puts the start's correlation-id into Started. */
  saga_def_t *def = h_def(FOUR);
  sm_t *s = h_new_saga(def, "s-corr");
  sm_output_t out;
  sm_input_t in = {.type = SM_IN_START, .correlation_id = "corr-Y"};
  assert_int_equal(sm_step(s, &in, 1, NULL, &out), SAGA_CORE_OK);
  assert_int_equal(out.events[0].type, SM_EV_STARTED);
  assert_string_equal(out.events[0].correlation_id, "corr-Y");
  free(s);
  saga_def_free(def);
}

static void test_encode_refuses_small_buffers_and_empty_transitions(
    void **state) {
  (void)state;
  sm_event_t ev = {.type = SM_EV_COMPLETED};
  uint8_t buf[64];
  size_t len = 0;
  size_t need = saga_codec_size(&ev, 1, 1000);
  assert_true(need > 0);
  assert_int_equal(saga_codec_encode(&ev, 1, 1000, buf, need - 1, &len),
                   SAGA_CORE_ETOOBIG);
  assert_int_equal(saga_codec_encode(&ev, 0, 1000, buf, sizeof buf, &len),
                   SAGA_CORE_EINVAL);
  assert_int_equal(saga_codec_size(&ev, 0, 0), 0);
}

static void expect_decode_error(const sm_event_t *ev, size_t n) {
  uint8_t buf[256];
  size_t len = 0;
  assert_int_equal(saga_codec_encode(ev, n, 1000, buf, sizeof buf, &len),
                   SAGA_CORE_OK);
  saga_record_t rec = {0};
  assert_int_equal(saga_codec_decode(buf, len, &rec), SAGA_CORE_EDECODE);
  assert_int_equal(rec.n, 0);
  assert_null(rec.pb);
}

/* One record reused across decodes keeps its buffer: a record larger than
 * the buffer spills into blocks of its own, the next decode has a buffer
 * that fits it, and a smaller record in between changes nothing; every
 * decode reads back exactly what was encoded. */
static void test_a_reused_record_decodes_records_of_any_size(void **state) {
  (void)state;
  static uint8_t big[20000], buf[2][21000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)(i * 7);
  size_t sizes[2] = {40, sizeof big}, len[2];
  for (int k = 0; k < 2; k++) {
    sm_event_t ev[2] = {{.type = SM_EV_STARTED, .def_name = "order",
                         .def_version = 1, .payload = big,
                         .payload_len = sizes[k], .correlation_id = "c-1"},
                        {.type = SM_EV_DISPATCHED, .step = 1, .attempt = 2}};
    assert_int_equal(saga_codec_encode(ev, 2, 1000, buf[k], sizeof buf[k],
                                       &len[k]),
                     SAGA_CORE_OK);
  }
  saga_record_t rec = {0};
  const int order[] = {0, 1, 1, 0, 1, 0, 0};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    int k = order[i];
    assert_int_equal(saga_codec_decode(buf[k], len[k], &rec), SAGA_CORE_OK);
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.at_ms, 1000);
    assert_string_equal(rec.events[0].def_name, "order");
    assert_string_equal(rec.events[0].correlation_id, "c-1");
    assert_int_equal(rec.events[0].payload_len, sizes[k]);
    assert_memory_equal(rec.events[0].payload, big, sizes[k]);
    assert_int_equal(rec.events[1].attempt, 2);
    if (i == 2) /* the second big one fits in the grown buffer */
      assert_null(rec.spill);
  }
  /* a malformed record leaves it empty, and it decodes again after */
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  assert_int_equal(saga_codec_decode(junk, sizeof junk, &rec),
                   SAGA_CORE_EDECODE);
  assert_int_equal(rec.n, 0);
  assert_int_equal(saga_codec_decode(buf[1], len[1], &rec), SAGA_CORE_OK);
  assert_memory_equal(rec.events[0].payload, big, sizeof big);
  saga_record_reset(&rec);
  assert_int_equal(rec.n, 0);
  saga_record_clear(&rec);
  assert_null(rec.buf);
}

static void test_malformed_records_are_refused(void **state) {
  (void)state;
  saga_record_t rec = {0};
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  assert_int_equal(saga_codec_decode(junk, sizeof junk, &rec),
                   SAGA_CORE_EDECODE);
  assert_int_equal(saga_codec_decode(NULL, 0, &rec), SAGA_CORE_EDECODE);
  sm_event_t bad_type = {.type = 0};
  expect_decode_error(&bad_type, 1);
  sm_event_t bad_type2 = {.type = SM_EV_CANCEL_REQUESTED + 1};
  expect_decode_error(&bad_type2, 1);
  sm_event_t bad_step = {.type = SM_EV_DISPATCHED, .step = 40};
  expect_decode_error(&bad_step, 1);
  sm_event_t no_def = {.type = SM_EV_STARTED};
  expect_decode_error(&no_def, 1);
  sm_event_t bad_outcome = {.type = SM_EV_ATTEMPT_FAILED, .outcome = 9};
  expect_decode_error(&bad_outcome, 1);
}

static void test_replay_refuses_events_for_another_definition(void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h_start(h);
  saga_def_t *other = h_def(FOUR);
  sm_t *s = h_new_saga(other, "s-1");
  assert_int_equal(sm_apply(s, &h->tx[0].ev[0], 0), SAGA_CORE_EREPLAY);
  sm_event_t ev = {.type = SM_EV_DISPATCHED, .step = 9};
  sm_t *t = h_new_saga(h->def, "s-1");
  assert_int_equal(sm_apply(t, &ev, 0), SAGA_CORE_EREPLAY); /* not started */
  assert_int_equal(sm_apply(t, &h->tx[0].ev[0], 0), SAGA_CORE_OK);
  assert_int_equal(sm_apply(t, &ev, 0), SAGA_CORE_EREPLAY); /* no step 9 */
  free(s);
  free(t);
  saga_def_free(other);
  h_free(h);
}

/* The published figure: bytes stored per saga of the order example with a
 * 100-byte input and 20-byte step outputs. */
static void test_bytes_per_saga_stay_small(void **state) {
  (void)state;
  h_t *h = h_new(ORDER, 1);
  h->now = 1760000000000; /* a real epoch time: the widest varints */
  char input[101];
  memset(input, 'i', 100);
  input[100] = '\0';
  h_in(h, (sm_input_t){.type = SM_IN_START,
                         .payload = (const uint8_t *)input,
                         .payload_len = 100});
  for (int step = 0; step < 3; step++) {
    h->now += 7;
    h_in(h, (sm_input_t){.type = SM_IN_REPLY, .step = step,
                           .action = DO, .attempt = 1, .outcome = OK,
                           .payload = (const uint8_t *)"01234567890123456789",
                           .payload_len = 20});
  }
  assert_int_equal(h->saga->status, SM_COMPLETED);
  size_t bytes = 0;
  sm_t *r = codec_replay(h, &bytes);
  assert_true(sm_equal(r, h->saga));
  size_t overhead = bytes - 100 - 3 * 20;
  print_message("order saga: %zu records, %zu bytes (%zu without payloads)\n",
                h->ntx, bytes, overhead);
  assert_int_equal(h->ntx, 4);
  assert_true(overhead <= 120);
  free(r);
  h_free(h);
}

/* Waits of 30 days (2592000000 ms, more than INT32_MAX) at real epoch
 * times: every deadline and backoff is exact, the early timer re-armed at
 * the same instant, the stuck threshold is the step's own, and the stored
 * records give back the same absolute times. */
static void test_thirty_day_waits_are_exact_and_survive_the_codec(
    void **state) {
  (void)state;
  const int64_t day30 = 2592000000LL;
  h_t *h = h_new(
      "{'name':'long','version':1,'steps':[{'name':'approve','topic':'t',"
      "'timeout_ms':2592000000,'stuck_after_ms':2592000000,"
      "'retry':{'max_attempts':2,'initial_backoff_ms':2592000000,"
      "'max_backoff_ms':2592000000,'jitter':0},"
      "'compensation':{'action':'undo','timeout_ms':2592000000}},"
      "{'name':'pay','topic':'t','kind':'pivot'}]}",
      1);
  const int64_t t0 = 1760000000000;
  h->now = t0;
  h_start(h);
  assert_int_equal(h->saga->steps[0].timer_ms, t0 + day30);
  assert_int_equal(h->tx[0].ev[h->tx[0].n - 1].until_ms, t0 + day30);
  assert_int_equal(sm_next_timer(h->saga), t0 + day30);
  /* Its own stuck threshold, not a global one. */
  assert_false(sm_is_stuck(h->saga, t0 + day30));
  assert_true(sm_is_stuck(h->saga, t0 + day30 + 1));
  /* A timer fired a day early (clock adjusted) is re-armed at the same
   * deadline. */
  h->now = t0 + day30 - 86400000;
  assert_int_equal(h_in(h, (sm_input_t){.type = SM_IN_TIMER, .step = 0,
                                        .action = DO, .attempt = 1,
                                        .timer = SM_TIMER_DEADLINE}),
                   SM_V_STALE_TIMER);
  assert_int_equal(h->out.n_effects, 1);
  assert_int_equal(h->out.effects[0].at_ms, t0 + day30);
  /* Deadline, then a 30-day backoff, then the second attempt's deadline. */
  assert_int_equal(h_fire(h, 0, DO, SM_TIMER_DEADLINE), SM_V_APPLIED);
  assert_int_equal(h->saga->steps[0].status, SM_STEP_BACKOFF);
  assert_int_equal(h->saga->steps[0].timer_ms, t0 + 2 * day30);
  assert_int_equal(h_fire(h, 0, DO, SM_TIMER_BACKOFF), SM_V_APPLIED);
  assert_int_equal(h->saga->steps[0].timer_ms, t0 + 3 * day30);
  assert_int_equal(h_fire(h, 0, DO, SM_TIMER_DEADLINE), SM_V_APPLIED);
  /* Retries spent: the unknown step is compensated, with its own 30-day
   * deadline. */
  assert_int_equal(h->saga->status, SM_COMPENSATING);
  assert_int_equal(h->saga->steps[0].status, SM_STEP_COMP_RUNNING);
  assert_int_equal(h->saga->steps[0].timer_ms, t0 + 4 * day30);
  sm_t *r = codec_replay(h, NULL);
  assert_true(sm_equal(r, h->saga));
  assert_int_equal(r->steps[0].timer_ms, t0 + 4 * day30);
  free(r);
  h_free(h);
}

/* ---- random walk ---- */

static uint64_t rnd(sm_rng_t *g, uint64_t n) {
  return (uint64_t)(sm_rng_next(g) * (double)n);
}

/* After the pivot succeeded nothing is ever compensated; compensations go
 * in reverse order of completion and only to steps that were applied or
 * unknown. A cancel is taken only before the pivot is dispatched, and no
 * step goes forward after it. */
static void check_invariants(const h_t *h) {
  const sm_t *s = h->saga;
  int32_t pivot = s->def->pivot;
  bool pivot_done = false, pivot_sent = false, cancelled = false;
  uint16_t last_comp_order = UINT16_MAX;
  for (size_t t = 0; t < h->ntx; t++)
    for (size_t i = 0; i < h->tx[t].n; i++) {
      const sm_event_t *e = &h->tx[t].ev[i];
      if (e->type == SM_EV_SUCCEEDED && e->action == DO &&
          (int32_t)e->step == pivot)
        pivot_done = true;
      if (e->type == SM_EV_DISPATCHED && e->action == DO &&
          (int32_t)e->step == pivot)
        pivot_sent = true;
      if (e->type == SM_EV_CANCEL_REQUESTED) {
        assert_false(pivot_sent);
        cancelled = true;
      }
      if (cancelled)
        assert_false(e->type == SM_EV_DISPATCHED && e->action == DO);
      if (pivot_done) {
        assert_int_not_equal(e->type, SM_EV_COMPENSATING);
        assert_false(e->type == SM_EV_DISPATCHED && e->action == COMP);
      }
      if (e->type == SM_EV_DISPATCHED && e->action == COMP &&
          e->attempt == 1) {
        const sm_step_state_t *st = &s->steps[e->step];
        assert_true(st->order > 0 && st->order < last_comp_order);
        assert_true(st->order > 0);
        last_comp_order = st->order;
        assert_int_not_equal(s->def->steps[e->step].kind,
                             SAGA_STEP_RETRIABLE);
        assert_non_null(s->def->steps[e->step].comp_topic);
      }
    }
  if (s->status == SM_COMPENSATED && !(s->flags & SM_F_RESOLVED))
    for (uint32_t i = 0; i < s->nsteps; i++) {
      const sm_step_state_t *st = &s->steps[i];
      bool applied = st->status == SM_STEP_DONE ||
                     (st->status == SM_STEP_FAILED &&
                      (st->flags & SM_SF_UNKNOWN));
      /* Every applied step with a compensation was undone. */
      assert_false(applied && s->def->steps[i].comp_topic != NULL);
    }
}

/* One random input: mostly sensible, sometimes duplicated, late or bogus. */
static void random_input(h_t *h, sm_rng_t *g) {
  sm_t *s = h->saga;
  int step = (int)rnd(g, s->nsteps);
  const sm_step_state_t *st = &s->steps[step];
  int action = (st->status >= SM_STEP_COMP_RUNNING) ? COMP : DO;
  unsigned attempt = st->attempt;
  if (rnd(g, 8) == 0)
    attempt = attempt > 1 ? attempt - 1 : attempt + 1; /* late or bogus */
  h->now += (int64_t)rnd(g, 300);
  switch (rnd(g, 12)) {
  case 0:
    h_start(h);
    break;
  case 1:
  case 2:
  case 3:
  case 4: {
    static const int outcomes[] = {OK, OK, OK, FAIL, RETRY};
    h_reply(h, rnd(g, 20) == 0 ? 40 : step, rnd(g, 10) == 0 ? !action : action,
            attempt, outcomes[rnd(g, 5)]);
    break;
  }
  case 5:
  case 6:
  case 7:
    h_fire(h, step, action, SM_TIMER_DEADLINE);
    break;
  case 8:
  case 9:
    h_fire(h, step, action, SM_TIMER_BACKOFF);
    break;
  case 10:
    h_op(h, SM_IN_OPERATOR_RETRY);
    break;
  default:
    if (rnd(g, 3) == 0)
      h_in(h, (sm_input_t){.type = SM_IN_CANCEL, .reason = "walk",
                           .who = "op"});
    else
      h_op(h, rnd(g, 4) == 0 ? SM_IN_OPERATOR_RESOLVE
                             : SM_IN_OPERATOR_RETRY);
    break;
  }
}

/* Answer everything with success and fire due timers: every saga must end
 * terminal (liveness once faults stop). */
static void drive_to_end(h_t *h) {
  for (int i = 0; i < 400 && !sm_is_terminal(h->saga); i++) {
    sm_t *s = h->saga;
    if (s->status == SM_COMPENSATION_FAILED) {
      h_op(h, SM_IN_OPERATOR_RETRY);
      continue;
    }
    for (uint32_t k = 0; k < s->nsteps; k++) {
      const sm_step_state_t *st = &s->steps[k];
      if (st->status == SM_STEP_RUNNING)
        h_reply(h, (int)k, DO, st->attempt, OK);
      else if (st->status == SM_STEP_COMP_RUNNING)
        h_reply(h, (int)k, COMP, st->attempt, OK);
      else if (st->status == SM_STEP_BACKOFF)
        h_fire(h, (int)k, DO, SM_TIMER_BACKOFF);
      else if (st->status == SM_STEP_COMP_BACKOFF)
        h_fire(h, (int)k, COMP, SM_TIMER_BACKOFF);
    }
  }
  assert_true(sm_is_terminal(h->saga));
}

static void test_random_walk_replay_equals_live_and_no_compensation_after_pivot(
    void **state) {
  (void)state;
  const char *defs[] = {ORDER, FOUR, GROUP, FORWARD};
  sm_rng_t g = {20240601};
  size_t inputs = 0;
  size_t terminal_early = 0;
  size_t ended[8] = {0};
  size_t parked = 0, cancelled = 0;
  for (int run = 0; run < 1200; run++) {
    h_t *h = h_new(defs[run % 4], (uint64_t)run);
    h_start(h);
    int n = 5 + (int)rnd(&g, 120);
    for (int i = 0; i < n && h->ntx < H_MAX_TX - 450; i++) {
      random_input(h, &g);
      check_invariants(h);
      inputs++;
    }
    if (sm_is_terminal(h->saga))
      terminal_early++;
    for (size_t t = 0; t < h->ntx; t++)
      if (h->tx[t].ev[h->tx[t].n - 1].type == SM_EV_PARKED) {
        parked++;
        break;
      }
    drive_to_end(h);
    check_invariants(h);
    cancelled += h->saga->flags & SM_F_CANCELLED ? 1 : 0;
    ended[h->saga->status]++;
    /* Replay through the codec equals the live state too. */
    sm_t *r = codec_replay(h, NULL);
    assert_true(sm_equal(r, h->saga));
    /* Terminal sagas take no input any more. */
    uint32_t v = h->saga->version;
    random_input(h, &g);
    assert_int_equal(h->saga->version, v);
    free(r);
    h_free(h);
  }
  print_message("random walk: 1200 sagas, %zu inputs, %zu terminal before "
                "the drive, %zu completed, %zu compensated (%zu cancelled), "
                "%zu parked once\n",
                inputs, terminal_early, ended[SM_COMPLETED],
                ended[SM_COMPENSATED], cancelled, parked);
  assert_true(cancelled > 20);
  /* The walk reaches every outcome. */
  assert_true(ended[SM_COMPLETED] > 100 && ended[SM_COMPENSATED] > 100 &&
              parked > 10);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_event_field_round_trips),
      cmocka_unit_test(test_long_reason_is_cut),
      cmocka_unit_test(test_started_keeps_the_correlation_id),
      cmocka_unit_test(test_encode_refuses_small_buffers_and_empty_transitions),
      cmocka_unit_test(test_a_reused_record_decodes_records_of_any_size),
      cmocka_unit_test(test_malformed_records_are_refused),
      cmocka_unit_test(test_replay_refuses_events_for_another_definition),
      cmocka_unit_test(test_bytes_per_saga_stay_small),
      cmocka_unit_test(test_thirty_day_waits_are_exact_and_survive_the_codec),
      cmocka_unit_test(
          test_random_walk_replay_equals_live_and_no_compensation_after_pivot),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
