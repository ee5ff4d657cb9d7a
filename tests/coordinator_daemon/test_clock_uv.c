/* sagad's clock port on libuv: deadlines are wall-clock times and may be
 * 30 days away, libuv timers run on the monotonic clock, so a long wait is
 * armed in slices that look at the wall clock again (a clock stepped
 * forward or a suspended host must not delay a deadline by as much). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "shell.h"

#define DAY_MS 86400000LL

typedef struct {
  int active;
  uint64_t due_in;
} seen_t;

static void find_timer(uv_handle_t *h, void *arg) {
  seen_t *s = arg;
  if (h->type == UV_TIMER && uv_is_active(h)) {
    s->active++;
    s->due_in = uv_timer_get_due_in((uv_timer_t *)h);
  }
}

static seen_t armed(uv_loop_t *loop) {
  seen_t s = {0, 0};
  uv_walk(loop, find_timer, &s);
  return s;
}

static void closed(uv_loop_t *loop, sagad_clock_uv_t *c) {
  sagad_clock_uv_close(c);
  assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(loop), 0);
}

static sagad_clock_uv_t *opened(uv_loop_t *loop, sagad_clock_port_t *port) {
  assert_int_equal(uv_loop_init(loop), 0);
  sagad_clock_uv_t *c = NULL;
  assert_int_equal(sagad_clock_uv_open(loop, &c, port), 0);
  return c;
}

static void test_a_thirty_day_wake_is_armed_in_short_slices(void **state) {
  (void)state;
  uv_loop_t loop;
  sagad_clock_port_t port;
  sagad_clock_uv_t *c = opened(&loop, &port);
  int64_t now = port.now_ms(port.self);
  assert_true(now > 1600000000000LL); /* Unix epoch ms */
  port.wake_at(port.self, SAGAD_WAKE_TIMERS, now + 30 * DAY_MS);
  seen_t s = armed(&loop);
  assert_int_equal(s.active, 1);
  assert_true(s.due_in > 0 && s.due_in <= 60000);
  /* 0 cancels the wait. */
  port.wake_at(port.self, SAGAD_WAKE_TIMERS, 0);
  assert_int_equal(armed(&loop).active, 0);
  closed(&loop, c);
}

static void test_a_near_or_past_wake_is_armed_for_its_own_time(
    void **state) {
  (void)state;
  uv_loop_t loop;
  sagad_clock_port_t port;
  sagad_clock_uv_t *c = opened(&loop, &port);
  int64_t now = port.now_ms(port.self);
  port.wake_at(port.self, SAGAD_WAKE_RETRY, now + 30000);
  seen_t s = armed(&loop);
  assert_int_equal(s.active, 1);
  assert_true(s.due_in > 25000 && s.due_in <= 30000);
  port.wake_at(port.self, SAGAD_WAKE_RETRY, now - 5000);
  s = armed(&loop);
  assert_int_equal(s.active, 1);
  assert_int_equal(s.due_in, 0);
  closed(&loop, c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_thirty_day_wake_is_armed_in_short_slices),
      cmocka_unit_test(test_a_near_or_past_wake_is_armed_for_its_own_time),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
