/* The engine's loads are asynchronous (ports.h): a fake store port that
 * ends each load only when the test says so shows that the engine does not
 * wait for it inside on_assign or on_turn_end, that inputs wait for a
 * pending load -- recovery of their partition, the read-back of their
 * saga -- in order and are then stepped, and that a recovery failing after
 * it started calls the engine's on_fatal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_inbox.h"
#include "wire.h"

/* ---- fake ports ------------------------------------------------------ */

static struct {
  /* loads started and not ended yet, in order */
  struct load {
    sagad_load_cb cb;
    sagad_load_done_cb done;
    void *arg;
    char saga[64]; /* "" = load_partitions */
  } loads[8];
  int nloads, started;
  /* batches */
  int submits;
  char streams[8][64];
  size_t nstreams;
  int acks;
  int releases;
  void *tokens[32];
  int ntokens;
  int fatal;
} F;

static void s_reset(void *self) {
  (void)self;
  F.nstreams = 0;
}
static int s_add(void *self, const char *id, int64_t expected,
                 const sagad_record_t *recs, size_t n) {
  (void)self, (void)expected, (void)recs, (void)n;
  snprintf(F.streams[F.nstreams], sizeof F.streams[0], "%s", id);
  return (int)F.nstreams++;
}
static int s_index(void *self, const sagad_index_row_t *row) {
  (void)self, (void)row;
  return 0;
}
static int s_submit(void *self) {
  (void)self;
  F.submits++;
  return 0;
}
static int s_status(void *self, size_t i) {
  (void)self, (void)i;
  return SAGAD_STORE_OK;
}
static int start_load(const char *saga, sagad_load_cb cb,
                      sagad_load_done_cb done, void *arg) {
  struct load *L = &F.loads[F.nloads++];
  *L = (struct load){.cb = cb, .done = done, .arg = arg};
  snprintf(L->saga, sizeof L->saga, "%s", saga);
  F.started++;
  return 0;
}
static int s_load_parts(void *self, const int32_t *parts, size_t n,
                        sagad_load_cb cb, sagad_load_done_cb done, void *arg) {
  (void)self, (void)parts, (void)n;
  return start_load("", cb, done, arg);
}
static int s_load_saga(void *self, const char *id, int32_t partition,
                       sagad_load_cb cb, sagad_load_done_cb done, void *arg) {
  (void)self, (void)partition;
  return start_load(id, cb, done, arg);
}
static const char *s_error(void *self) {
  (void)self;
  return "fake store";
}

/* End the oldest pending load: no records (nothing stored), status. */
static void end_load(sagad_engine_t *e, int status) {
  (void)e;
  assert_true(F.nloads > 0);
  struct load L = F.loads[0];
  memmove(&F.loads[0], &F.loads[1], (size_t)--F.nloads * sizeof F.loads[0]);
  L.done(L.arg, status);
}

static int b_produce(void *self, const char *topic, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const saga__hdrs_t *hdrs, void *token) {
  (void)self, (void)topic, (void)key, (void)key_len, (void)value;
  (void)value_len, (void)hdrs;
  if (token)
    F.tokens[F.ntokens++] = token;
  return 0;
}
static void b_ack(void *self, void *ack) {
  (void)self, (void)ack;
  F.acks++;
}
static void b_release(void *self, void *ack) {
  (void)self, (void)ack;
  F.releases++;
}
static int64_t c_now(void *self) {
  (void)self;
  return 1700000000000LL;
}
static void c_wake(void *self, int slot, int64_t at) {
  (void)self, (void)slot, (void)at;
}
static void c_turn(void *self) { (void)self; }

static void on_fatal(void *arg, const char *why) {
  (void)arg, (void)why;
  F.fatal++;
}

static saga_registry_t *reg;

static sagad_engine_t *engine(void) {
  memset(&F, 0, sizeof F);
  sagad_engine_config_t cfg = {
      .registry = reg,
      .inbox_topic = "t.inbox",
      .notify_topic = "t.notifications",
      .dlq_topic = "t.dlq",
      .on_fatal = on_fatal,
      .store = {.batch_reset = s_reset,
                .batch_add = s_add,
                .batch_index = s_index,
                .batch_submit = s_submit,
                .batch_status = s_status,
                .load_partitions = s_load_parts,
                .load_saga = s_load_saga,
                .last_error = s_error},
      .broker = {.produce = b_produce, .ack = b_ack, .release = b_release},
      .clock = {.now_ms = c_now, .wake_at = c_wake, .end_of_turn = c_turn},
  };
  sagad_engine_t *e = sagad_engine_new(&cfg);
  assert_non_null(e);
  return e;
}

static void engine_done(sagad_engine_t *e) {
  sagad_engine_free(e);
  for (int i = 0; i < F.ntokens; i++)
    sagad_engine_forget_token(F.tokens[i]);
}

static void start(sagad_engine_t *e, const char *id) {
  char sid[64], type[] = "order";
  uint8_t input[] = "{\"n\":1}";
  snprintf(sid, sizeof sid, "%s", id);
  Saga__V1__StartSaga m;
  saga__v1__start_saga__init(&m);
  m.saga_id = sid;
  m.saga_type = type;
  m.input.data = input;
  m.input.len = sizeof input - 1;
  engine_inbox_deliver(e, &m.base, id);
}

static void reply(sagad_engine_t *e, const char *id) {
  char sid[64], step[] = "reserve", key[128];
  snprintf(sid, sizeof sid, "%s", id);
  snprintf(key, sizeof key, "%s/reserve/DO/1", id);
  Saga__V1__Reply m;
  saga__v1__reply__init(&m);
  m.saga_id = sid;
  m.step = step;
  m.action = SAGA__V1__ACTION__ACTION_DO;
  m.attempt = 1;
  m.idempotency_key = key;
  m.outcome = SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  engine_inbox_deliver(e, &m.base, id);
}

/* ---- tests ----------------------------------------------------------- */

static void test_an_input_waits_for_the_recovery_of_its_partition(void **st) {
  (void)st;
  sagad_engine_t *e = engine();
  int32_t p = 0;
  assert_int_equal(sagad_engine_on_assign(e, &p, 1), 0);
  assert_int_equal(F.nloads, 1); /* started, not ended: on_assign returned */
  start(e, "s1");
  sagad_engine_on_turn_end(e);
  assert_int_equal(F.submits, 0); /* waits for the recovery */
  end_load(e, 0);
  assert_int_equal(F.submits, 1); /* stepped when it ended */
  assert_int_equal(F.nstreams, 1);
  assert_string_equal(F.streams[0], "s1");
  assert_int_equal(F.acks, 0);
  sagad_engine_on_batch_done(e, SAGAD_STORE_OK);
  assert_int_equal(F.acks, 1);
  assert_int_equal(F.fatal, 0);
  engine_done(e);
}

static void test_inputs_wait_in_order_for_a_read_back(void **st) {
  (void)st;
  sagad_engine_t *e = engine();
  int32_t p = 0;
  assert_int_equal(sagad_engine_on_assign(e, &p, 1), 0);
  end_load(e, 0);   /* nothing to recover */
  reply(e, "gone"); /* a saga not in memory: read back */
  start(e, "s2");   /* queued behind it */
  sagad_engine_on_turn_end(e);
  assert_int_equal(F.nloads, 1);
  assert_string_equal(F.loads[0].saga, "gone");
  assert_int_equal(F.submits, 0);
  assert_int_equal(F.acks, 0);
  end_load(e, 0); /* no stream: the reply is for an unknown saga */
  assert_int_equal(F.nloads, 0); /* read once, not again */
  assert_int_equal(F.submits, 1);
  assert_int_equal(F.nstreams, 1);
  assert_string_equal(F.streams[0], "s2");
  sagad_engine_on_batch_done(e, SAGAD_STORE_OK);
  assert_int_equal(F.acks, 2); /* both, after the batch */
  assert_int_equal(sagad_engine_counters(e)->anomalies[SM_V_UNKNOWN_SAGA], 1);
  engine_done(e);
}

/* An input dropped because its partition was revoked is released to the
 * broker, not acknowledged (the next owner reads it again) and not just
 * forgotten (the broker would track it until it closes). */
static void test_an_input_of_a_revoked_partition_is_released(void **st) {
  (void)st;
  sagad_engine_t *e = engine();
  int32_t p = 0;
  assert_int_equal(sagad_engine_on_assign(e, &p, 1), 0);
  start(e, "s1"); /* waits for the recovery of partition 0 */
  sagad_engine_on_turn_end(e);
  assert_int_equal(F.submits, 0);
  sagad_engine_on_revoke(e, &p, 1);
  assert_int_equal(F.releases, 1);
  assert_int_equal(F.acks, 0);
  end_load(e, 0); /* the recovery of the revoked partition ends */
  assert_int_equal(F.submits, 0);
  assert_int_equal(F.acks, 0);
  assert_int_equal(F.releases, 1);
  engine_done(e);
}

static void test_a_recovery_failing_after_it_started_is_fatal(void **st) {
  (void)st;
  sagad_engine_t *e = engine();
  int32_t p = 0;
  assert_int_equal(sagad_engine_on_assign(e, &p, 1), 0);
  assert_int_equal(F.fatal, 0);
  end_load(e, -1);
  assert_int_equal(F.fatal, 1);
  engine_done(e);
}

int main(void) {
  reg = saga_registry_new();
  saga_diags_t d = {0};
  size_t loaded = 0;
  if (!reg || saga_registry_load_dir(reg, SIM_DEFINITIONS_DIR, &d, &loaded) !=
                  SAGA_CORE_OK) {
    fprintf(stderr, "could not load %s\n", SIM_DEFINITIONS_DIR);
    return 1;
  }
  saga_diags_clear(&d);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_input_waits_for_the_recovery_of_its_partition),
      cmocka_unit_test(test_inputs_wait_in_order_for_a_read_back),
      cmocka_unit_test(test_an_input_of_a_revoked_partition_is_released),
      cmocka_unit_test(test_a_recovery_failing_after_it_started_is_fatal),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  saga_registry_free(reg);
  return rc;
}
