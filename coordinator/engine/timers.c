/* The engine's timers (see engine_internal.h): a min-heap on the deadline
 * holding the sagas' timers (step deadlines, retry backoffs) and the retry
 * lists' wake-ups (the outbox's, the held dead letters', the undelivered
 * commands'), the one clock
 * wake-up it keeps armed at the earliest, and firing what is due: a saga's
 * timer becomes an input queued like any other. A timer refers to its
 * saga by id, not by entry: the saga may leave memory and come back (read
 * back) before it fires, and a timer of a saga gone is stale; stale
 * timers are dropped when the heap is full, before it grows. The id is
 * shared, counted, by the saga's entry and its timers, so a push allocates
 * nothing per timer. No I/O. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "grow.h"
#include "log_sink.h"

static void heap_swap(tmr_t *a, tmr_t *b) {
  tmr_t t = *a;
  *a = *b;
  *b = t;
}

static void tid_release(timer_id_t *tid) {
  if (tid && --tid->refs == 0)
    free(tid);
}

/* en's shared id (made at its first timer), or NULL when out of memory. */
static timer_id_t *tid_of(entry_t *en) {
  if (!en->tid) {
    const char *id = ENTRY_SAGA(en)->id;
    size_t len = strlen(id) + 1;
    en->tid = malloc(sizeof *en->tid + len);
    if (!en->tid)
      return NULL;
    en->tid->refs = 1; /* the entry's */
    memcpy(en->tid->id, id, len);
  }
  return en->tid;
}

void timers_forget_entry(entry_t *en) {
  tid_release(en->tid);
  en->tid = NULL;
}

/* A saga's timer that can no longer do anything: its saga is not in
 * memory (a read-back or recovery resumes it, re-arming its timers), or
 * the step no longer waits on this attempt of this action (the machine
 * would take it as SM_V_STALE_TIMER and change nothing). */
static bool stale(const sagad_engine_t *e, const tmr_t *t) {
  if (!t->id)
    return false; /* a retry list's wake-up */
  const entry_t *en = table_lookup(e, t->id->id);
  if (!en)
    return true;
  const sm_t *s = ENTRY_SAGA_C(en);
  if (t->step >= s->nsteps)
    return true;
  const sm_step_state_t *st = &s->steps[t->step];
  uint8_t want =
      t->timer == SM_TIMER_DEADLINE
          ? (t->action == SM_DO ? SM_STEP_RUNNING : SM_STEP_COMP_RUNNING)
      : t->timer == SM_TIMER_BACKOFF
          ? (t->action == SM_DO ? SM_STEP_BACKOFF : SM_STEP_COMP_BACKOFF)
          : 0xff;
  return st->status != want || st->attempt != t->attempt;
}

static void sift_down(sagad_engine_t *e, size_t i);

/* When the heap is full: drop the stale timers (a step's deadline stays
 * in the heap after its reply, until it would fire: a saga at its third
 * step held three), then re-make the heap. Judged on the state in memory,
 * which may be ahead of the store's: a saga whose batch then fails is read
 * back, and its resume re-arms every timer it waits on. */
static void purge_stale(sagad_engine_t *e) {
  size_t k = 0;
  for (size_t i = 0; i < e->nheap; i++) {
    if (stale(e, &e->heap[i]))
      tid_release(e->heap[i].id);
    else
      e->heap[k++] = e->heap[i];
  }
  e->nheap = k;
  for (size_t i = k / 2; i-- > 0;)
    sift_down(e, i);
}

void timers_push(sagad_engine_t *e, const tmr_t *t, entry_t *en) {
  timer_id_t *tid = en ? tid_of(en) : NULL;
  if (e->nheap == e->cheap && e->cheap >= 256) {
    purge_stale(e);
    /* mostly live: grow now, so that the next push does not purge again
     * (a purge runs after at least a quarter of the heap's pushes) */
    if (e->nheap > e->cheap / 4 * 3)
      (void)SAGA_GROW(e->heap, e->cheap, e->cheap + 1, 256);
  }
  if ((en && !tid) || SAGA_GROW(e->heap, e->cheap, e->nheap + 1, 256) != 0) {
    LOG_ERROR("out of memory arming a timer of %s%s", en ? "saga " : "",
              en ? ENTRY_SAGA(en)->id : "a retry list");
    return;
  }
  if (tid)
    tid->refs++;
  size_t i = e->nheap++;
  e->heap[i] = *t;
  e->heap[i].id = tid;
  while (i && e->heap[(i - 1) / 2].at > e->heap[i].at) {
    heap_swap(&e->heap[(i - 1) / 2], &e->heap[i]);
    i = (i - 1) / 2;
  }
}

static void heap_pop(sagad_engine_t *e) {
  e->heap[0] = e->heap[--e->nheap];
  sift_down(e, 0);
}

static void sift_down(sagad_engine_t *e, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < e->nheap && e->heap[l].at < e->heap[m].at)
      m = l;
    if (r < e->nheap && e->heap[r].at < e->heap[m].at)
      m = r;
    if (m == i)
      break;
    heap_swap(&e->heap[m], &e->heap[i]);
    i = m;
  }
}

void timers_rearm(sagad_engine_t *e) {
  int64_t at = e->nheap ? e->heap[0].at : 0;
  if (at == e->armed_at)
    return;
  e->armed_at = at;
  e->cfg.clock.wake_at(e->cfg.clock.self, SAGAD_WAKE_TIMERS, at);
}

void timers_arm_retry(sagad_engine_t *e, bool *armed, uint8_t kind) {
  if (*armed)
    return;
  tmr_t t = {.at = e->cfg.clock.now_ms(e->cfg.clock.self) + OUTBOX_RETRY_MS,
             .timer = kind};
  timers_push(e, &t, NULL);
  *armed = true;
  timers_rearm(e);
}

void timers_fire_due(sagad_engine_t *e, int64_t now) {
  e->armed_at = 0;
  while (e->nheap && e->heap[0].at <= now) {
    tmr_t t = e->heap[0];
    heap_pop(e);
    if (t.timer == TMR_DLQ) { /* no id */
      dlq_retry(e);
      continue;
    }
    if (t.timer == TMR_MARKS) { /* no id */
      e->marks_armed = false;
      batch_flush_marks(e);
      continue;
    }
    if (t.timer == TMR_OUTBOX) { /* no id */
      fx_outbox_retry(e);
      continue;
    }
    if (t.timer == TMR_CMD) { /* no id */
      fx_command_retry(e);
      continue;
    }
    if (!t.id || !table_lookup(e, t.id->id)) {
      tid_release(t.id);
      continue;
    }
    input_t *in = eng_input_new(t.id->id);
    if (!in) {
      tid_release(t.id);
      break;
    }
    in->kind = IN_TIMER;
    tid_release(t.id);
    in->timer.type = SM_IN_TIMER;
    in->timer.step = t.step;
    in->timer.action = t.action;
    in->timer.attempt = t.attempt;
    in->timer.timer = t.timer;
    q_push(&e->pending, in);
  }
  timers_rearm(e);
}

void timers_free(sagad_engine_t *e) {
  for (size_t i = 0; i < e->nheap; i++)
    tid_release(e->heap[i].id);
  free(e->heap);
  e->heap = NULL;
  e->nheap = e->cheap = 0;
}
