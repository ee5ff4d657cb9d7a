/* The daemon shell's sequencing, in process: a signal begins the shutdown,
 * on_stop runs once and may finish later, a failed start still stops, and
 * a shutdown that overruns shutdown.timeout_ms ends with a failure. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "log.h"

typedef struct {
  int starts;
  int stops;
  int start_result;
  bool finish_stop;   /* call stop_done from a later callback */
  bool signal_on_start;
  int shutdown_status; /* >= 0: call sagad_daemon_shutdown on start */
  bool saw_stopping;
  uv_timer_t later;
  sagad_daemon_t *d;
} probe_t;

static void finish_later(uv_timer_t *t) {
  probe_t *p = t->data;
  uv_close((uv_handle_t *)&p->later, NULL);
  sagad_daemon_stop_done(p->d);
}

static int on_start(sagad_daemon_t *d, void *arg) {
  probe_t *p = arg;
  p->starts++;
  p->d = d;
  assert_non_null(sagad_daemon_loop(d));
  assert_non_null(sagad_daemon_config(d));
  uv_timer_init(sagad_daemon_loop(d), &p->later);
  p->later.data = p;
  if (p->signal_on_start)
    raise(SIGTERM); /* delivered through the loop's signal handle */
  if (p->shutdown_status >= 0)
    sagad_daemon_shutdown(d, p->shutdown_status, "test asked");
  return p->start_result;
}

static void on_stop(sagad_daemon_t *d, void *arg) {
  probe_t *p = arg;
  p->stops++;
  p->saw_stopping = sagad_daemon_stopping(d);
  /* Work that finishes on a later loop turn, like a pending append. */
  if (p->finish_stop)
    uv_timer_start(&p->later, finish_later, 1, 0);
  else {
    uv_close((uv_handle_t *)&p->later, NULL);
    sagad_daemon_stop_done(d);
  }
}

static sagad_config_t *config(const char *timeout) {
  sagad_config_t *cfg = sagad_config_new();
  char err[256];
  assert_int_equal(sagad_config_set(cfg, "shutdown.timeout_ms", timeout, NULL,
                                    err, sizeof err),
                   0);
  return cfg;
}

static int run(probe_t *p, const char *timeout) {
  sagad_config_t *cfg = config(timeout);
  sagad_hooks_t hooks = {on_start, on_stop, p};
  int status = sagad_daemon_run(cfg, &hooks);
  sagad_config_free(cfg);
  return status;
}

static void test_sigterm_runs_on_stop_once_and_exits_cleanly(void **state) {
  (void)state;
  probe_t p = {.finish_stop = true, .signal_on_start = true,
               .shutdown_status = -1};
  assert_int_equal(run(&p, "60s"), SAGAD_EXIT_OK);
  assert_int_equal(p.starts, 1);
  assert_int_equal(p.stops, 1);
  assert_true(p.saw_stopping);
}

static void test_internal_shutdown_returns_its_status(void **state) {
  (void)state;
  probe_t p = {.finish_stop = true, .shutdown_status = 3};
  assert_int_equal(run(&p, "60s"), 3);
  assert_int_equal(p.stops, 1);
}

static void test_failed_start_still_calls_on_stop_and_fails(void **state) {
  (void)state;
  probe_t p = {.start_result = -1, .finish_stop = false,
               .shutdown_status = -1};
  assert_int_equal(run(&p, "60s"), SAGAD_EXIT_FAILURE);
  assert_int_equal(p.starts, 1);
  assert_int_equal(p.stops, 1);
}

static void test_without_stop_hook_shutdown_completes_at_once(void **state) {
  (void)state;
  probe_t p = {.shutdown_status = SAGAD_EXIT_OK};
  sagad_config_t *cfg = config("60s");
  sagad_hooks_t hooks = {on_start, NULL, &p};
  assert_int_equal(sagad_daemon_run(cfg, &hooks), SAGAD_EXIT_OK);
  assert_int_equal(p.starts, 1);
  sagad_config_free(cfg);
}

static void never_done(sagad_daemon_t *d, void *arg) {
  (void)d;
  probe_t *p = arg;
  p->stops++;
  /* Keeps the timer handle open and never calls stop_done. */
}

static void test_stop_hook_that_never_finishes_fails_at_deadline(void **state) {
  (void)state;
  probe_t p = {.shutdown_status = SAGAD_EXIT_OK};
  sagad_config_t *cfg = config("100ms");
  sagad_hooks_t hooks = {on_start, never_done, &p};
  assert_int_equal(sagad_daemon_run(cfg, &hooks), SAGAD_EXIT_FAILURE);
  assert_int_equal(p.stops, 1);
  sagad_config_free(cfg);
}

static void signal_again(sagad_daemon_t *d, void *arg) {
  (void)d;
  probe_t *p = arg;
  p->stops++;
  raise(SIGINT); /* an impatient operator: the second signal stops at once */
}

static void test_second_signal_stops_without_waiting(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  sagad_log_setup(SAGAD_LOG_ERROR, SAGAD_LOG_FORMAT_TEXT, false, fds[1]);
  probe_t p = {.signal_on_start = true, .shutdown_status = -1};
  sagad_config_t *cfg = config("600s");
  sagad_hooks_t hooks = {on_start, signal_again, &p};
  assert_int_equal(sagad_daemon_run(cfg, &hooks), SAGAD_EXIT_FAILURE);
  assert_int_equal(p.stops, 1);
  char buf[512] = "";
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  assert_true(n > 0);
  assert_string_equal(buf, "error second signal (SIGINT): stopping without "
                           "finishing the shutdown\n");
  sagad_config_free(cfg);
  close(fds[0]);
  close(fds[1]);
  sagad_log_setup(SAGAD_LOG_ERROR, SAGAD_LOG_FORMAT_TEXT, false, 2);
}

int main(void) {
  /* Keep the daemon's own records out of the test output. */
  sagad_log_setup(SAGAD_LOG_ERROR, SAGAD_LOG_FORMAT_TEXT, false, 2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigterm_runs_on_stop_once_and_exits_cleanly),
      cmocka_unit_test(test_internal_shutdown_returns_its_status),
      cmocka_unit_test(test_failed_start_still_calls_on_stop_and_fails),
      cmocka_unit_test(test_without_stop_hook_shutdown_completes_at_once),
      cmocka_unit_test(test_stop_hook_that_never_finishes_fails_at_deadline),
      cmocka_unit_test(test_second_signal_stops_without_waiting),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
