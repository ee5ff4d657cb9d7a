/* The engine's clock port on libuv: wall-clock milliseconds (deadlines are
 * Unix epoch times, shared with participants), one uv_timer per wake-up
 * slot, and an end-of-turn hook (uv_check, with a uv_idle so the loop does
 * not block in poll before it runs). Must not hold saga state. */
#include <stdlib.h>
#include <time.h>

#include "shell.h"

/* A libuv timer runs on the monotonic clock, deadlines on the wall clock,
 * and a step may wait 30 days: a clock stepped forward or a suspended host
 * would make one long uv timer fire late by as much. So a wait is armed
 * in slices of at most this long, each re-checking the wall clock. */
#define WAKE_SLICE_MS 60000

struct sagad_clock_uv {
  uv_timer_t timers[SAGAD_WAKE_N];
  int64_t target[SAGAD_WAKE_N]; /* wall-clock ms asked for, 0 = none */
  uv_check_t check;
  uv_idle_t idle;
  sagad_engine_t *engine;
  int turn_requested;
  int open_handles;
};

static int64_t c_now(void *self) {
  (void)self;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_timer(uv_timer_t *t);

/* Arm slot's uv timer for the next slice towards its target. */
static void arm_slice(sagad_clock_uv_t *c, int slot) {
  int64_t d = c->target[slot] - c_now(c);
  if (d < 0)
    d = 0;
  if (d > WAKE_SLICE_MS)
    d = WAKE_SLICE_MS;
  uv_timer_start(&c->timers[slot], on_timer, (uint64_t)d, 0);
}

static void on_timer(uv_timer_t *t) {
  sagad_clock_uv_t *c = t->data;
  int slot = (int)(t - c->timers);
  if (c_now(c) < c->target[slot]) { /* a slice of a longer wait */
    arm_slice(c, slot);
    return;
  }
  c->target[slot] = 0;
  if (c->engine)
    sagad_engine_on_wake(c->engine, slot);
}

static void c_wake_at(void *self, int slot, int64_t at_ms) {
  sagad_clock_uv_t *c = self;
  if (slot < 0 || slot >= SAGAD_WAKE_N)
    return;
  c->target[slot] = at_ms;
  if (!at_ms) {
    uv_timer_stop(&c->timers[slot]);
    return;
  }
  arm_slice(c, slot);
}

static void on_idle(uv_idle_t *h) { (void)h; }

static void on_check(uv_check_t *h) {
  sagad_clock_uv_t *c = h->data;
  if (!c->turn_requested)
    return;
  c->turn_requested = 0;
  uv_idle_stop(&c->idle);
  if (c->engine)
    sagad_engine_on_turn_end(c->engine);
}

static void c_end_of_turn(void *self) {
  sagad_clock_uv_t *c = self;
  if (c->turn_requested)
    return;
  c->turn_requested = 1;
  uv_idle_start(&c->idle, on_idle);
}

int sagad_clock_uv_open(uv_loop_t *loop, sagad_clock_uv_t **out,
                        sagad_clock_port_t *port) {
  sagad_clock_uv_t *c = calloc(1, sizeof *c);
  if (!c)
    return -1;
  for (int i = 0; i < SAGAD_WAKE_N; i++) {
    uv_timer_init(loop, &c->timers[i]);
    c->timers[i].data = c;
  }
  uv_check_init(loop, &c->check);
  c->check.data = c;
  uv_check_start(&c->check, on_check);
  uv_idle_init(loop, &c->idle);
  c->idle.data = c;
  *port = (sagad_clock_port_t){.self = c,
                               .now_ms = c_now,
                               .wake_at = c_wake_at,
                               .end_of_turn = c_end_of_turn};
  *out = c;
  return 0;
}

void sagad_clock_uv_attach(sagad_clock_uv_t *c, sagad_engine_t *e) {
  c->engine = e;
}

static void on_closed(uv_handle_t *h) {
  sagad_clock_uv_t *c = h->data;
  if (--c->open_handles == 0)
    free(c);
}

void sagad_clock_uv_close(sagad_clock_uv_t *c) {
  if (!c)
    return;
  c->engine = NULL;
  c->open_handles = SAGAD_WAKE_N + 2;
  for (int i = 0; i < SAGAD_WAKE_N; i++)
    uv_close((uv_handle_t *)&c->timers[i], on_closed);
  uv_close((uv_handle_t *)&c->check, on_closed);
  uv_close((uv_handle_t *)&c->idle, on_closed);
}
