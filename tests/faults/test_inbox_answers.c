/* Issue 14, cases 3 to 6: inputs on the coordinator's inbox get the answer
 * docs/protocol.md promises, against a real sagad.
 *  - a StartSaga of an unknown saga type, or of a definition version that
 *    is not loaded, gets a REJECTED notification (and a dead letter), so
 *    `sagactl start --wait` answers at once;
 *  - a NUL inside an id is refused, not cut (a StartSaga "nul-b\0zzz"
 *    started nul-b; a Reply for "wt-1\0junk" completed wt-1's step);
 *  - saga ids up to 255 bytes run, one byte more is refused with the words
 *    every component uses;
 *  - the starter's correlation-id travels on every later command and
 *    notification of the saga, after a coordinator crash too.
 * Notifications are read with the client library's starter. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "faults.h"
#include "run_sagactl.h"
#include "saga/client.h"
#include "test_support.h"
#include "wire.h"
#include "pb_nul.h"

#define NAME "flt_answers"
#define MAX_NOTES 256

typedef struct {
  char id[SAGA_WIRE_MAX_ID + 1];
  int kind;
  char corr[SAGA_WIRE_MAX_ID + 1];
  char reason[256];
} note_t;

static struct {
  e2e_t *t;
  uv_loop_t loop;
  saga_starter_t *starter;
  note_t notes[MAX_NOTES];
  size_t nnotes;
  size_t ndlq;
  int held_corr_rec; /* corr-rec's step s2 was held once */
} F;

static e2e_answer_t script(const char *id, int step, int comp,
                           uint32_t attempt) {
  (void)attempt;
  /* wt-1's first step is answered by hand, below. */
  if (!strcmp(id, "wt-1") && step == 0 && !comp)
    return E2E_NO_REPLY;
  /* corr-rec's second step waits for a coordinator crash, once. */
  if (!strcmp(id, "corr-rec") && step == 1 && !F.held_corr_rec) {
    F.held_corr_rec = 1;
    return E2E_NO_REPLY;
  }
  return E2E_SUCCESS;
}

static void on_note(saga_starter_t *s, const saga_notification_t *n,
                    void *arg) {
  (void)s, (void)arg;
  assert_true(F.nnotes < MAX_NOTES);
  note_t *o = &F.notes[F.nnotes++];
  snprintf(o->id, sizeof o->id, "%s", n->saga_id);
  o->kind = (int)n->kind;
  snprintf(o->corr, sizeof o->corr, "%s",
           n->meta.correlation_id ? n->meta.correlation_id : "");
  snprintf(o->reason, sizeof o->reason, "%s", n->reason ? n->reason : "");
}

static void pump(void *arg) {
  (void)arg;
  e2e_pump(F.t, 20);
  uv_run(&F.loop, UV_RUN_NOWAIT);
}

static const note_t *find_note(const char *id, int kind) {
  for (size_t i = 0; i < F.nnotes; i++)
    if (!strcmp(F.notes[i].id, id) && F.notes[i].kind == kind)
      return &F.notes[i];
  return NULL;
}

static const note_t *wait_note(const char *id, int kind) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  const note_t *n;
  while (!(n = find_note(id, kind)) && ts_now_ms() < until)
    pump(NULL);
  assert_non_null(n);
  return n;
}

/* Wait for the next dead letter; its reason into reason. */
static void wait_dead_letter(char *reason, size_t len) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  size_t n;
  while ((n = e2e_dead_letters(F.t, reason, len)) <= F.ndlq &&
         ts_now_ms() < until)
    pump(NULL);
  assert_int_equal(n, F.ndlq + 1);
  F.ndlq = n;
  printf("# dead letter: %s\n", reason);
}

static void wait_completed(const char *id) {
  const char *ids[1] = {id};
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (strcmp(e2e_status(F.t, id), "completed") && ts_now_ms() < until)
    pump(NULL);
  if (e2e_wait_terminal(F.t, ids, 1, 1000) != 1) {
    char *log = faults_sagad_log(NAME, 0); /* what sagad said */
    fprintf(stderr, "sagad log:\n%s\n", log ? log : "(none)");
    free(log);
    fail_msg("saga %s did not complete", id);
  }
  assert_string_equal(e2e_status(F.t, id), "completed");
}

static sagactl_result_t run_sagactl(const sagactl_how_t *how,
                                    const char *first, ...) {
  va_list ap;
  va_start(ap, first);
  sagactl_result_t r = sagactl_vrun(how, first, ap);
  va_end(ap);
  return r;
}

/* sagad with its progress notes (STARTED, STEP_DONE) on the notifications
 * topic, where the starter's subscriber sees them with the outcomes. */
static void start_sagad(void) {
  char progress[300];
  snprintf(progress, sizeof progress, "--topic.progress=%s",
           e2e_notifications(F.t));
  const char *const extra[] = {progress, NULL};
  e2e_sagad_start_with(F.t, 0, extra);
}

static int setup(void **state) {
  (void)state;
  F.t = e2e_new(NAME, 60000, script);
  start_sagad();
  (void)e2e_dead_letters(F.t, NULL, 0); /* start the reader */
  assert_int_equal(uv_loop_init(&F.loop), 0);
  saga_starter_config_t cfg = {
      .kafka = {.bootstrap_servers = ts_kafka_bootstrap()},
      .inbox_topic = e2e_inbox(F.t),
      .notifications_topic = e2e_notifications(F.t),
      .setup_timeout_ms = ts_timeout_ms(30000),
  };
  char err[256];
  assert_int_equal(saga_starter_new(&F.loop, &cfg, &F.starter, err,
                                    sizeof err),
                   0);
  assert_int_equal(saga_starter_subscribe(F.starter, on_note, NULL), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  saga_starter_close(F.starter, NULL, NULL);
  while (uv_loop_alive(&F.loop))
    uv_run(&F.loop, UV_RUN_NOWAIT);
  uv_loop_close(&F.loop);
  assert_int_equal(e2e_sagad_stop(F.t, 0, SIGTERM), 0);
  e2e_free(F.t);
  return 0;
}

/* Case 3: before, sagactl waited out its 15 s ("unk-1 timeout") and the
 * only trace was a dead letter. */
static void test_unknown_type_or_version_is_rejected(void **state) {
  (void)state;
  char kafka[256];
  snprintf(kafka, sizeof kafka, "%s", ts_kafka_bootstrap());
  const sagactl_how_t how = {.bin = SAGACTL_BIN,
                             .dir = e2e_dir(F.t),
                             .conninfo = e2e_conninfo(F.t),
                             .pump = pump};
  sagactl_result_t r = run_sagactl(
      &how, "start", "nosuchtype", "--input", "{}", "--id", "unk-1",
      "--wait", "15s", "--kafka", kafka, "--inbox", e2e_inbox(F.t),
      "--notifications", e2e_notifications(F.t), NULL);
  printf("# sagactl: rc %d, out \"%s\", err \"%s\"\n", r.rc, r.out, r.err);
  /* docs/sagactl.md: exit 1 when the outcome is not "completed". */
  assert_int_equal(r.rc, 1);
  assert_non_null(
      strstr(r.out, "unk-1 rejected: unknown saga type \"nosuchtype\""));
  sagactl_result_free(&r);
  const note_t *n = wait_note("unk-1", SAGA_NOTIFY_REJECTED);
  assert_string_equal(n->corr, "unk-1");
  char reason[256];
  wait_dead_letter(reason, sizeof reason);
  /* saga-dlq-reason: "<class>: <text>" (docs/protocol.md) */
  assert_string_equal(reason,
                      "unknown_type: unknown saga type \"nosuchtype\"");

  /* A type of 250 bytes is named in full (the engine cut it at 64 bytes,
   * sagactl cut the reason at 255). */
  char type[251], want[300];
  memset(type, 'y', sizeof type - 1);
  type[sizeof type - 1] = '\0';
  snprintf(want, sizeof want, "unk-2 rejected: unknown saga type \"%s\"\n",
           type);
  r = run_sagactl(&how, "start", type, "--input", "{}", "--id", "unk-2",
                  "--wait", "15s", "--kafka", kafka, "--inbox", e2e_inbox(F.t),
                  "--notifications", e2e_notifications(F.t), NULL);
  assert_int_equal(r.rc, 1);
  assert_string_equal(r.out, want);
  sagactl_result_free(&r);
  wait_dead_letter(reason, sizeof reason);

  /* A version of a known type that is not loaded. */
  e2e_start_as(F.t, "fast", "unk-v", "corr-V", 99);
  n = wait_note("unk-v", SAGA_NOTIFY_REJECTED);
  assert_string_equal(n->reason,
                      "saga type \"fast\" has no definition version 99 "
                      "loaded");
  assert_string_equal(n->corr, "corr-V");
  wait_dead_letter(reason, sizeof reason);
  char with_class[300];
  snprintf(with_class, sizeof with_class, "unknown_type: %s", n->reason);
  assert_string_equal(reason, with_class);
  assert_string_equal(e2e_status(F.t, "unk-v"), "");
}

/* Case 4: protobuf-c cuts a string at a NUL; the coordinator acted on the
 * cut id. */
static void test_a_nul_inside_an_id_is_dead_lettered_not_cut(void **state) {
  (void)state;
  Saga__V1__StartSaga st;
  saga__v1__start_saga__init(&st);
  st.saga_id = SAGA_MUT("nul-bXzzz");
  st.saga_type = SAGA_MUT("slow");
  size_t len;
  void *b = ts_pack_with_nul(&st.base, &len);
  e2e_produce_raw(F.t, "saga.v1.StartSaga", "nul-b", b, len);
  free(b);
  char reason[256];
  wait_dead_letter(reason, sizeof reason);
  assert_non_null(strstr(reason, "saga_id contains a NUL byte at byte 5"));
  assert_int_equal(strncmp(reason, "undecodable: ", 13), 0);
  /* The real nul-b is not a duplicate of it. */
  e2e_start(F.t, "slow", "nul-b");
  wait_completed("nul-b");
  assert_non_null(wait_note("nul-b", SAGA_NOTIFY_STARTED));

  /* A reply naming "wt-1\0junk" must not complete wt-1's step. */
  e2e_start(F.t, "slow", "wt-1");
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_commands(F.t, "wt-1", 0) < 1 && ts_now_ms() < until)
    pump(NULL);
  assert_int_equal(e2e_commands(F.t, "wt-1", 0), 1);
  Saga__V1__Reply rep;
  saga__v1__reply__init(&rep);
  rep.saga_id = SAGA_MUT("wt-1Xjunk");
  rep.step = SAGA_MUT("s1");
  rep.action = SAGA__V1__ACTION__ACTION_DO;
  rep.attempt = 1;
  rep.idempotency_key = SAGA_MUT("wt-1/s1/DO/1");
  rep.outcome = SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  b = ts_pack_with_nul(&rep.base, &len);
  e2e_produce_raw(F.t, "saga.v1.Reply", "wt-1", b, len);
  free(b);
  wait_dead_letter(reason, sizeof reason);
  assert_non_null(strstr(reason, "saga_id contains a NUL byte at byte 4"));
  /* Dead-lettered in inbox order, so wt-1 did not move. */
  assert_string_equal(e2e_status(F.t, "wt-1"), "running");
  assert_int_equal(e2e_commands(F.t, "wt-1", 1), 0);
  e2e_reply(F.t, "wt-1", 0, 1, 1);
  wait_completed("wt-1");
}

/* Case 5: the coordinator dead-lettered ids past 63 bytes that the
 * protocol, the client library and sagactl take. */
static void test_ids_of_255_bytes_run_and_longer_ones_are_refused(
    void **state) {
  (void)state;
  char id[SAGA_WIRE_MAX_ID + 2];
  memset(id, 'x', sizeof id - 1);
  id[sizeof id - 1] = '\0';
  memcpy(id, "long-", 5);
  char reason[256];
  /* 256 bytes (which the library's encoder refuses, so packed here):
   * refused with the words of every component. */
  Saga__V1__StartSaga st;
  saga__v1__start_saga__init(&st);
  st.saga_id = id;
  st.saga_type = SAGA_MUT("slow");
  size_t len = protobuf_c_message_get_packed_size(&st.base);
  uint8_t *b = malloc(len);
  assert_non_null(b);
  protobuf_c_message_pack(&st.base, b);
  e2e_produce_raw(F.t, "saga.v1.StartSaga", id, b, len);
  free(b);
  wait_dead_letter(reason, sizeof reason);
  assert_non_null(
      strstr(reason, "saga_id is 256 bytes long, the ceiling is 255"));
  /* of the class the wire's refusals have (the metric's reason label) */
  assert_int_equal(strncmp(reason, "undecodable: ", 13), 0);
  /* 255 bytes: runs, and its notifications and commands carry it. */
  id[SAGA_WIRE_MAX_ID] = '\0';
  e2e_start(F.t, "slow", id);
  wait_completed(id);
  assert_string_equal(wait_note(id, SAGA_NOTIFY_COMPLETED)->corr, id);
  for (int s = 0; s < E2E_STEPS; s++)
    assert_int_equal(e2e_applied(F.t, id, s), 1);
}

/* Case 6: commands and notifications carried the saga id as their
 * correlation-id, not the starter's value. */
static void test_the_starters_correlation_id_travels_and_survives_a_crash(
    void **state) {
  (void)state;
  e2e_start_as(F.t, "slow", "corr-1", "corr-X", 0);
  wait_completed("corr-1");
  const note_t *n = wait_note("corr-1", SAGA_NOTIFY_COMPLETED);
  assert_string_equal(n->corr, "corr-X");
  size_t seen = 0;
  for (size_t i = 0; i < F.nnotes; i++)
    if (!strcmp(F.notes[i].id, "corr-1")) {
      assert_string_equal(F.notes[i].corr, "corr-X");
      seen++;
    }
  assert_true(seen >= 5); /* STARTED, three STEP_DONE, COMPLETED */
  assert_string_equal(e2e_command_correlation(F.t, "corr-1"), "corr-X");
  /* Without one, the saga id, as before. */
  e2e_start(F.t, "slow", "corr-2");
  wait_completed("corr-2");
  assert_string_equal(wait_note("corr-2", SAGA_NOTIFY_COMPLETED)->corr,
                      "corr-2");
  assert_string_equal(e2e_command_correlation(F.t, "corr-2"), "corr-2");

  /* Kept in Started: after a crash, the recovered saga's commands and
   * notifications still carry it. */
  e2e_start_as(F.t, "slow", "corr-rec", "corr-R", 0);
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_commands(F.t, "corr-rec", 1) < 1 && ts_now_ms() < until)
    pump(NULL);
  assert_int_equal(e2e_commands(F.t, "corr-rec", 1), 1);
  assert_int_equal(e2e_sagad_stop(F.t, 0, SIGKILL), 128 + SIGKILL);
  size_t before = F.nnotes;
  start_sagad();
  wait_completed("corr-rec");
  assert_true(e2e_commands(F.t, "corr-rec", 1) >= 2); /* re-sent */
  assert_string_equal(e2e_command_correlation(F.t, "corr-rec"), "corr-R");
  n = wait_note("corr-rec", SAGA_NOTIFY_COMPLETED);
  assert_true(n >= &F.notes[before]);
  assert_string_equal(n->corr, "corr-R");
}

int main(void) {
  ts_require_pg();
  ts_require_kafka();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unknown_type_or_version_is_rejected),
      cmocka_unit_test(test_a_nul_inside_an_id_is_dead_lettered_not_cut),
      cmocka_unit_test(test_ids_of_255_bytes_run_and_longer_ones_are_refused),
      cmocka_unit_test(
          test_the_starters_correlation_id_travels_and_survives_a_crash),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
