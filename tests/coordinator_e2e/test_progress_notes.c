/* Progress notes (docs/protocol.md, docs/configuration.md topic.progress)
 * against a real sagad: STARTED and STEP_DONE go to topic.progress when it
 * is set and nowhere by default, so the notifications topic a starter
 * reads carries one note per saga (its outcome), not one per step.
 * Each topic is read with the client library's starter, whose subscriber
 * sees every notification of the topic it reads. */
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

#include "e2e.h"
#include "saga/client.h"
#include "test_support.h"

#define MAX_NOTES 64

typedef struct {
  char id[64];
  int kind;
  char step[16];
} note_t;

typedef struct {
  saga_starter_t *starter;
  note_t notes[MAX_NOTES];
  size_t n;
} reader_t;

static struct {
  e2e_t *t;
  uv_loop_t loop;
  char progress[128]; /* the progress topic */
  reader_t outcomes;  /* reads the notifications topic */
  reader_t progress_notes; /* reads the progress topic */
} F;

static e2e_answer_t script(const char *id, int step, int comp,
                           uint32_t attempt) {
  (void)id, (void)step, (void)comp, (void)attempt;
  return E2E_SUCCESS;
}

static void on_note(saga_starter_t *s, const saga_notification_t *n,
                    void *arg) {
  (void)s;
  reader_t *r = arg;
  assert_true(r->n < MAX_NOTES);
  note_t *o = &r->notes[r->n++];
  snprintf(o->id, sizeof o->id, "%s", n->saga_id);
  o->kind = (int)n->kind;
  snprintf(o->step, sizeof o->step, "%s", n->step ? n->step : "");
}

static void pump(void) {
  e2e_pump(F.t, 20);
  uv_run(&F.loop, UV_RUN_NOWAIT);
}

/* Pump for ms, so that a note sent later than expected would arrive. */
static void pump_for(int64_t ms) {
  int64_t until = ts_now_ms() + ms;
  while (ts_now_ms() < until)
    pump();
}

static void reader_open(reader_t *r, const char *topic) {
  saga_starter_config_t cfg = {
      .kafka = {.bootstrap_servers = ts_kafka_bootstrap()},
      .inbox_topic = e2e_inbox(F.t),
      .notifications_topic = topic,
      .setup_timeout_ms = ts_timeout_ms(30000),
  };
  char err[256];
  assert_int_equal(
      saga_starter_new(&F.loop, &cfg, &r->starter, err, sizeof err), 0);
  assert_int_equal(saga_starter_subscribe(r->starter, on_note, r), 0);
}

/* The notes of saga id a reader has seen: their kinds in order into kinds
 * (up to max), their steps into steps; returns how many. */
static size_t notes_of(const reader_t *r, const char *id, int *kinds,
                       const char **steps, size_t max) {
  size_t k = 0;
  for (size_t i = 0; i < r->n; i++)
    if (!strcmp(r->notes[i].id, id) && k < max) {
      kinds[k] = r->notes[i].kind;
      steps[k++] = r->notes[i].step;
    }
  return k;
}

static void wait_outcome(const char *id) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  int kinds[8];
  const char *steps[8];
  while (notes_of(&F.outcomes, id, kinds, steps, 8) == 0 &&
         ts_now_ms() < until)
    pump();
  assert_int_equal(notes_of(&F.outcomes, id, kinds, steps, 8), 1);
  assert_int_equal(kinds[0], SAGA_NOTIFY_COMPLETED);
}

static int setup(void **state) {
  (void)state;
  F.t = e2e_new("progress", 60000, script);
  snprintf(F.progress, sizeof F.progress, "%s.progress",
           e2e_notifications(F.t));
  assert_int_equal(uv_loop_init(&F.loop), 0);
  reader_open(&F.outcomes, e2e_notifications(F.t));
  reader_open(&F.progress_notes, F.progress);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  saga_starter_close(F.outcomes.starter, NULL, NULL);
  saga_starter_close(F.progress_notes.starter, NULL, NULL);
  while (uv_loop_alive(&F.loop))
    uv_run(&F.loop, UV_RUN_NOWAIT);
  uv_loop_close(&F.loop);
  e2e_free(F.t);
  return 0;
}

/* Before: STARTED and three STEP_DONE shared the notifications topic with
 * the outcome, so every starter read and woke for five notes per saga. */
static void test_progress_notes_go_to_their_topic_or_nowhere(void **state) {
  (void)state;
  int kinds[8];
  const char *steps[8];

  /* By default: none at all. */
  e2e_sagad_start(F.t, 0);
  e2e_start(F.t, "slow", "quiet-1");
  wait_outcome("quiet-1");
  pump_for(1000);
  assert_int_equal(notes_of(&F.outcomes, "quiet-1", kinds, steps, 8), 1);
  assert_int_equal(notes_of(&F.progress_notes, "quiet-1", kinds, steps, 8),
                   0);
  assert_int_equal(e2e_sagad_stop(F.t, 0, SIGTERM), 0);

  /* With topic.progress: there, in the saga's order, and only there. */
  char opt[200];
  snprintf(opt, sizeof opt, "--topic.progress=%s", F.progress);
  const char *const extra[] = {opt, NULL};
  e2e_sagad_start_with(F.t, 0, extra);
  e2e_start(F.t, "slow", "noted-1");
  wait_outcome("noted-1");
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (notes_of(&F.progress_notes, "noted-1", kinds, steps, 8) < 4 &&
         ts_now_ms() < until)
    pump();
  pump_for(1000);
  assert_int_equal(notes_of(&F.progress_notes, "noted-1", kinds, steps, 8),
                   4);
  assert_int_equal(kinds[0], SAGA_NOTIFY_STARTED);
  for (int i = 1; i < 4; i++) {
    assert_int_equal(kinds[i], SAGA_NOTIFY_STEP_DONE);
    char want[8];
    snprintf(want, sizeof want, "s%d", i);
    assert_string_equal(steps[i], want);
  }
  assert_int_equal(notes_of(&F.outcomes, "noted-1", kinds, steps, 8), 1);
  assert_int_equal(e2e_sagad_stop(F.t, 0, SIGTERM), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_progress_notes_go_to_their_topic_or_nowhere),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
