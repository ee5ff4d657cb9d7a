/* Helpers shared by the client tests (see client_test.h). */
#include "client_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

const char *const ct_consumer_props[] = {
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500",
    "fetch.wait.max.ms", "5", "auto.offset.reset", "earliest",
    "topic.metadata.refresh.interval.ms", "1000", NULL};

const char *const ct_producer_props[] = {"linger.ms", "1", NULL};

static void on_tick(uv_timer_t *t) {
  (void)t;
}

int ct_run_until_pred(uv_loop_t *loop, int (*pred)(void *), void *arg,
                      int64_t timeout_ms) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5); /* keeps UV_RUN_ONCE returning */
  int64_t deadline = ts_now_ms() + ts_timeout_ms(timeout_ms);
  while (!pred(arg) && ts_now_ms() < deadline)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return pred(arg);
}

static int flag_set(void *arg) {
  return *(const volatile int *)arg != 0;
}

int ct_run_until(uv_loop_t *loop, const volatile int *flag,
                 int64_t timeout_ms) {
  return ct_run_until_pred(loop, flag_set, (void *)(uintptr_t)flag,
                           timeout_ms);
}

void ct_loop_finish(uv_loop_t *loop) {
  int64_t deadline = ts_now_ms() + ts_timeout_ms(30000);
  while (uv_loop_alive(loop) && ts_now_ms() < deadline)
    uv_run(loop, UV_RUN_ONCE);
  if (uv_loop_close(loop) != 0) {
    fprintf(stderr, "loop still has open handles after close\n");
    abort();
  }
}

int ct_kafka_ctl(const char *fmt, ...) {
  const char *path = getenv("SAGA_KAFKA_CONTROL");
  if (!path || !*path)
    return -1;
  char line[512], out[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  assert_true(n > 0 && n < (int)sizeof line);
  int rc = ts_mock_exchange(path, line, out, sizeof out);
  assert_true(rc != -2);
  if (rc != 0)
    return -1;
  if (strcmp(out, "ok\n") != 0)
    fail_msg("Kafka mock command \"%s\": %s", line, out);
  return 0;
}

rd_kafka_mock_cluster_t *ct_mock_cluster(int brokers, rd_kafka_t **owner) {
  char e[512], n[16];
  snprintf(n, sizeof n, "%d", brokers);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "test.mock.num.brokers", n, e, sizeof e) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "log_level", "0", e, sizeof e) !=
          RD_KAFKA_CONF_OK)
    fail_msg("mock cluster: %s", e);
  *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  if (!*owner)
    fail_msg("mock cluster: %s", e);
  rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(*owner);
  assert_non_null(mc);
  return mc;
}
