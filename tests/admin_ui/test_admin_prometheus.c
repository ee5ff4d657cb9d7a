/* A real Prometheus server scrapes the admin endpoint's /metrics (the
 * metrics registry behind admin_api) and the test reads a saga counter
 * back through Prometheus's HTTP API. Skips unless prometheus is
 * installed, or SAGA_PROM_TESTS=1 installs it (Debian package). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin_api.h"
#include "http_client.h"
#include "test_support.h"

static metrics_t *metrics;
static admin_http_t *srv;
static admin_source_t src; /* no saga reads: only /metrics is scraped */
static int port;
static loop_thread_t *lt;
static char dir[64];
static pid_t prom = -1;
static int prom_port;

static void on_loop(uv_loop_t *loop, void *arg) {
  (void)arg;
  metrics = metrics_new();
  metric_family_t *f = metrics_counter(metrics, "saga_sagas_started_total",
                                       "Sagas started.", "saga_type");
  metric_t *s = metric_series(f, "order");
  for (int i = 0; i < 7; i++)
    metric_inc(s);
  srv = admin_http_new(loop, NULL);
  assert_non_null(srv);
  assert_int_equal(admin_api_register(srv, &src, metrics), 0);
  assert_int_equal(admin_http_start(srv, NULL, 0), 0);
  port = admin_http_port(srv);
}

static void closed(void *arg) {
  (void)arg;
  metrics_free(metrics);
}

static void on_stop(void *arg) {
  (void)arg;
  admin_http_close(srv, closed, NULL);
}

static int setup(void **state) {
  (void)state;
  if (system("command -v prometheus >/dev/null 2>&1") != 0) {
    const char *want = getenv("SAGA_PROM_TESTS");
    if (!want || strcmp(want, "1") != 0) {
      printf("skipped: prometheus is not installed (set SAGA_PROM_TESTS=1 "
             "to install it with apt-get for this test)\n");
      exit(TS_SKIP);
    }
    if (system("DEBIAN_FRONTEND=noninteractive apt-get install -y "
               "--no-install-recommends prometheus >/dev/null") != 0)
      return -1;
  }
  lt = loop_thread_start(on_loop, on_stop, NULL);
  snprintf(dir, sizeof dir, "/tmp/saga-prom-XXXXXX");
  if (!mkdtemp(dir))
    return -1;
  prom = prometheus_start(dir, port, &prom_port);
  return prom > 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  if (prom > 0) {
    kill(prom, SIGTERM);
    waitpid(prom, NULL, 0);
  }
  loop_thread_stop(lt);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_prometheus_scrapes_a_saga_counter_and_answers_it(
    void **state) {
  (void)state;
  const char *q = "/api/v1/query?query=saga_sagas_started_total"
                  "%7Bsaga_type%3D%22order%22%2Cjob%3D%22sagad%22%7D";
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  char *body = NULL;
  while (ts_now_ms() < until) {
    body = http_get_body(prom_port, q);
    if (body && strstr(body, "\"result\":[{"))
      break;
    free(body);
    body = NULL;
    nanosleep(&(struct timespec){.tv_nsec = 200000000}, NULL);
  }
  if (!body)
    fail_msg("prometheus did not report the scraped counter in time");
  /* {"status":"success","data":{"resultType":"vector","result":[{"metric":
   * {...},"value":[<time>,"7"]}]}} */
  assert_non_null(strstr(body, "\"status\":\"success\""));
  assert_non_null(strstr(body, "\"saga_type\":\"order\""));
  assert_non_null(strstr(body, ",\"7\"]"));
  free(body);
  body = http_get_body(prom_port,
                       "/api/v1/query?query=up%7Bjob%3D%22sagad%22%7D");
  assert_non_null(body);
  assert_non_null(strstr(body, ",\"1\"]"));
  free(body);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prometheus_scrapes_a_saga_counter_and_answers_it),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
