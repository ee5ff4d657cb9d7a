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

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &n) != 0)
    return -1;
  close(fd);
  return ntohs(a.sin_port);
}

/* GET path from Prometheus over HTTP/1.0 (no chunking: read to EOF);
 * the body, or NULL when it does not answer yet. */
static char *prom_get(const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)prom_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return NULL;
  }
  char req[512];
  snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
           path);
  http_send(fd, req, strlen(req));
  abuf_t b = ABUF_INIT;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    abuf_add(&b, buf, (size_t)n);
  close(fd);
  char *all = abuf_take(&b, NULL);
  char *body = all ? strstr(all, "\r\n\r\n") : NULL;
  char *out = body ? strdup(body + 4) : NULL;
  free(all);
  return out;
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
  char path[128];
  snprintf(path, sizeof path, "%s/prometheus.yml", dir);
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fprintf(f,
          "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
          "scrape_configs:\n  - job_name: sagad\n    static_configs:\n"
          "      - targets: ['127.0.0.1:%d']\n",
          port);
  fclose(f);
  prom_port = free_port();
  prom = fork();
  if (prom == 0) {
    char cfg[160], data[160], listen[64];
    snprintf(cfg, sizeof cfg, "--config.file=%s", path);
    snprintf(data, sizeof data, "--storage.tsdb.path=%s/data", dir);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d",
             prom_port);
    if (!freopen("/dev/null", "w", stderr) ||
        !freopen("/dev/null", "w", stdout))
      _exit(126);
    execlp("prometheus", "prometheus", cfg, data, listen, (char *)NULL);
    _exit(127);
  }
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
    body = prom_get(q);
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
  body = prom_get("/api/v1/query?query=up%7Bjob%3D%22sagad%22%7D");
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
