/* The OTLP exporter against a small local receiver (the admin HTTP server
 * on 127.0.0.1 answering POST /v1/traces), reached by the host name
 * "localhost": the first request is refused with 503 and must be retried;
 * the spans' fields and their parent/child links (starter -> saga ->
 * steps, from a W3C traceparent) are checked, with the headers of
 * OTEL_EXPORTER_OTLP_HEADERS; the host:port form of otlp.endpoint reaches
 * it too; the retry goes over the kept-alive connection; a full queue
 * drops and counts without waiting; a redirect is a refusal, not retried
 * (no redirect is followed); a collector that takes the connection
 * but never answers is given up on after OTEL_EXPORTER_OTLP_TRACES_TIMEOUT
 * and tried again. otlp_resolve's
 * rules (sagad's setting over OTEL_*, base URLs, the off switches, bad
 * values named) are checked on a fake environment. */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "admin_http.h"
#include "http_client.h"
#include "otlp.h"
#include "otlp_test.h"
#include "test_support.h"

#define STARTER_TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static cJSON *received; /* array of spans, under mu */
static int posts;       /* under mu */
static char resource_service[32];
static char got_auth[64], got_tenant[32]; /* headers of the last POST */
static int hostport_spans;                /* spans from exp_hostport */
static uint64_t accepted; /* connections the receiver had taken, last POST */
static char got_env[32];  /* deployment.environment of the resource */
static int n_service_attrs; /* service.name attributes of the resource */

static admin_http_t *srv, *srv_moved; /* the receiver; a moved one */
static otlp_t *exp_main, *exp_small, *exp_hostport, *exp_moved;
static int moved_posts; /* under mu: POSTs to srv_moved */
static int small_rc[6];
static otlp_stats_t small_stats;
static char saga_span[SAGA_SPAN_ID_SIZE];
static loop_thread_t *lt;

/* A collector that accepts connections and never answers (its own thread):
 * each connection it took is counted and kept open. */
static int silent_fd = -1, silent_port;
static int silent_conns[16];
static int n_silent; /* under mu */
static volatile int stop_silent;
static pthread_t silent_thread;
static otlp_t *exp_silent;

static void *silent(void *arg) {
  (void)arg;
  while (!stop_silent) {
    struct pollfd p = {silent_fd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0)
      continue;
    int fd = accept(silent_fd, NULL, NULL);
    pthread_mutex_lock(&mu);
    if (fd >= 0 && n_silent < 16)
      silent_conns[n_silent++] = fd;
    else if (fd >= 0)
      close(fd);
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

/* Spans of the exporter named by service "sagad-test" are kept with the
 * request's headers; those of service "sagad" (the default, exp_hostport)
 * are only counted. The very first POST is refused with 503. */
static void h_traces(admin_http_req_t *req, void *arg) {
  (void)arg;
  admin_http_stats_t hs;
  admin_http_stats(srv, &hs);
  pthread_mutex_lock(&mu);
  accepted = hs.accepted;
  int n = ++posts;
  if (n > 1) {
    cJSON *doc = cJSON_ParseWithLength(req->body, req->body_len);
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "resourceSpans"),
                                   0);
    cJSON *svc = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(rs, "resource"),
                            "attributes"),
        0);
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(svc, "value"),
                                   "stringValue");
    bool main_exp = cJSON_IsString(v) && !strcmp(v->valuestring, "sagad-test");
    cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    cJSON *span;
    cJSON_ArrayForEach(span, cJSON_GetObjectItem(ss, "spans")) {
      if (!main_exp && cJSON_IsString(v) && !strcmp(v->valuestring, "sagad"))
        hostport_spans++;
      else
        cJSON_AddItemToArray(received, cJSON_Duplicate(span, 1));
    }
    if (main_exp) {
      snprintf(resource_service, sizeof resource_service, "%s", v->valuestring);
      cJSON *ra;
      n_service_attrs = 0;
      cJSON_ArrayForEach(
          ra, cJSON_GetObjectItem(cJSON_GetObjectItem(rs, "resource"),
                                  "attributes")) {
        const cJSON *k = cJSON_GetObjectItem(ra, "key");
        const cJSON *rv = cJSON_GetObjectItem(cJSON_GetObjectItem(ra, "value"),
                                              "stringValue");
        if (!cJSON_IsString(k) || !cJSON_IsString(rv))
          continue;
        if (!strcmp(k->valuestring, "service.name"))
          n_service_attrs++;
        if (!strcmp(k->valuestring, "deployment.environment"))
          snprintf(got_env, sizeof got_env, "%s", rv->valuestring);
      }
      const char *auth = admin_http_header(req, "authorization");
      const char *tenant = admin_http_header(req, "x-tenant");
      snprintf(got_auth, sizeof got_auth, "%s", auth ? auth : "");
      snprintf(got_tenant, sizeof got_tenant, "%s", tenant ? tenant : "");
    }
    cJSON_Delete(doc);
  }
  pthread_mutex_unlock(&mu);
  if (n == 1)
    admin_http_respond_error(req, 503, "collector busy");
  else
    admin_http_respond(req, 200, "application/json", "{}", 2);
}

/* The collector of the exporter closed with otlp_flush_close: counts the
 * spans it gets (under mu). */
static admin_http_t *srv_stop;
static otlp_t *exp_stop;
static int stop_spans, stop_closed;

static void h_stop(admin_http_req_t *req, void *arg) {
  (void)arg;
  cJSON *doc = cJSON_ParseWithLength(req->body, req->body_len);
  cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "resourceSpans"), 0);
  cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
  pthread_mutex_lock(&mu);
  stop_spans += cJSON_GetArraySize(cJSON_GetObjectItem(ss, "spans"));
  pthread_mutex_unlock(&mu);
  cJSON_Delete(doc);
  admin_http_respond(req, 200, "application/json", "{}", 2);
}

static void on_stop_closed(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  stop_closed = 1;
  pthread_mutex_unlock(&mu);
}

/* A collector that has moved: every POST answered 302. */
static void h_moved(admin_http_req_t *req, void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  moved_posts++;
  pthread_mutex_unlock(&mu);
  admin_http_respond_error(req, 302, "moved");
}

static void emit(const char *trace, const char *id, const char *parent,
                 const char *name, const char *step, const char *action,
                 int status, const char *msg, int64_t t) {
  otlp_span_t s = {.name = name, .start_us = t, .end_us = t + 1500,
                   .saga_id = "o-1", .saga_type = "order", .saga_step = step,
                   .saga_action = action, .status = status,
                   .status_message = msg};
  snprintf(s.trace_id, sizeof s.trace_id, "%s", trace);
  snprintf(s.span_id, sizeof s.span_id, "%s", id);
  snprintf(s.parent_id, sizeof s.parent_id, "%s", parent);
  assert_int_equal(otlp_emit(exp_main, &s), 0);
}

/* A receiver on 127.0.0.1 (a port of its own) answering POST /v1/traces
 * with h. */
static admin_http_t *receiver(uv_loop_t *loop, admin_http_handler_t h) {
  admin_http_t *r = admin_http_new(loop, NULL);
  assert_non_null(r);
  assert_int_equal(admin_http_route(r, "POST", "/v1/traces", h, NULL), 0);
  assert_int_equal(admin_http_start(r, NULL, 0), 0);
  return r;
}

/* The failures the moved and silent collectors gave, copied from the loop
 * thread every 20 ms (under mu). */
static uv_timer_t stats_timer;
static otlp_stats_t moved_stats, silent_stats;
static char moved_err[300], silent_err[300];

static void on_stats(uv_timer_t *h) {
  (void)h;
  pthread_mutex_lock(&mu);
  otlp_stats(exp_moved, &moved_stats);
  snprintf(moved_err, sizeof moved_err, "%s", moved_stats.last_error);
  otlp_stats(exp_silent, &silent_stats);
  snprintf(silent_err, sizeof silent_err, "%s", silent_stats.last_error);
  pthread_mutex_unlock(&mu);
}

static void on_loop(uv_loop_t *loop, void *arg) {
  (void)arg;
  srv = receiver(loop, h_traces);
  srv_moved = receiver(loop, h_moved);
  char base[64], hostport[64], moved[80];
  snprintf(base, sizeof base, "http://localhost:%d", admin_http_port(srv));
  snprintf(hostport, sizeof hostport, "localhost:%d", admin_http_port(srv));
  const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                       base,
                       "OTEL_EXPORTER_OTLP_HEADERS",
                       "authorization=Bearer%20t0ken , x-tenant=acme",
                       "OTEL_SERVICE_NAME",
                       "sagad-test",
                       "OTEL_RESOURCE_ATTRIBUTES",
                       "deployment.environment=prod,service.name=other",
                       NULL};
  exp_main = otlp_test_exporter(loop, NULL, env);
  exp_hostport = otlp_test_exporter(loop, hostport, NULL);
  snprintf(moved, sizeof moved, "http://localhost:%d",
           admin_http_port(srv_moved));
  exp_moved = otlp_test_exporter(loop, moved, NULL);
  otlp_span_t mv = {.name = "to a moved collector", .trace_id = "1",
                    .span_id = "2"};
  assert_int_equal(otlp_emit(exp_moved, &mv), 0);
  otlp_span_t hp = {.name = "via host:port", .trace_id = "1", .span_id = "2"};
  assert_int_equal(otlp_emit(exp_hostport, &hp), 0);
  char trace[SAGA_TRACE_ID_SIZE], starter[SAGA_SPAN_ID_SIZE];
  char s1[SAGA_SPAN_ID_SIZE], s2[SAGA_SPAN_ID_SIZE], s3[SAGA_SPAN_ID_SIZE];
  assert_int_equal(saga__traceparent_parse(STARTER_TP, trace, starter, NULL),
                   0);
  assert_int_equal(saga__span_id_new(saga_span), 0);
  assert_int_equal(saga__span_id_new(s1), 0);
  assert_int_equal(saga__span_id_new(s2), 0);
  assert_int_equal(saga__span_id_new(s3), 0);
  int64_t t = 1700000000000000;
  emit(trace, s1, saga_span, "step reserve", "reserve", "do", OTLP_STATUS_OK,
       NULL, t + 10);
  emit(trace, s2, saga_span, "step charge", "charge", "do",
       OTLP_STATUS_ERROR, "declined", t + 20);
  emit(trace, s3, saga_span, "compensate reserve", "reserve", "compensate",
       OTLP_STATUS_OK, NULL, t + 30);
  /* a status message cut where a character of two bytes starts: the
   * span's message ends before it, never half of it (the collector would
   * refuse the whole batch as invalid UTF-8) */
  char long_msg[160];
  memset(long_msg, 'x', 126);
  snprintf(long_msg + 126, sizeof long_msg - 126, "\xc3\xa9 compensated");
  emit(trace, saga_span, starter, "saga order", NULL, NULL,
       OTLP_STATUS_ERROR, long_msg, t);

  /* a queue of 4 that never flushes: the fifth and sixth are dropped */
  otlp_opts_t o;
  otlp_opts_init(&o);
  o.url = "http://127.0.0.1:9/v1/traces";
  o.max_queue = 4;
  o.flush_ms = 3600000;
  exp_small = otlp_new(loop, &o);
  assert_non_null(exp_small);
  otlp_span_t s = {.name = "x", .trace_id = "1", .span_id = "2"};
  for (int i = 0; i < 6; i++)
    small_rc[i] = otlp_emit(exp_small, &s);
  otlp_stats(exp_small, &small_stats);

  /* the silent collector: 300 ms per request (the traces variable wins
   * over the general one, which would wait ten minutes) */
  char silent_url[64];
  snprintf(silent_url, sizeof silent_url, "http://127.0.0.1:%d", silent_port);
  const char *env_silent[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                              silent_url,
                              "OTEL_EXPORTER_OTLP_TIMEOUT",
                              "600000",
                              "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                              "300",
                              NULL};
  exp_silent = otlp_test_exporter(loop, NULL, env_silent);
  otlp_span_t ss = {.name = "unanswered", .trace_id = "1", .span_id = "2"};
  assert_int_equal(otlp_emit(exp_silent, &ss), 0);
  uv_timer_init(loop, &stats_timer);
  uv_timer_start(&stats_timer, on_stats, 20, 20);

  /* spans queued when the exporter is closed with otlp_flush_close (two
   * batches of 3, a flush that would never come by itself) go first */
  srv_stop = receiver(loop, h_stop);
  char stop_url[64];
  snprintf(stop_url, sizeof stop_url, "http://127.0.0.1:%d/v1/traces",
           admin_http_port(srv_stop));
  otlp_opts_t so;
  otlp_opts_init(&so);
  so.url = stop_url;
  so.max_batch = 3;
  so.flush_ms = 3600000;
  exp_stop = otlp_new(loop, &so);
  assert_non_null(exp_stop);
  for (int i = 0; i < 5; i++) {
    otlp_span_t sp = {.name = "at the stop", .trace_id = "1", .span_id = "2"};
    assert_int_equal(otlp_emit(exp_stop, &sp), 0);
  }
  otlp_flush_close(exp_stop, 10000, on_stop_closed, NULL);
  exp_stop = NULL;
}

static void on_stop(void *arg) {
  (void)arg;
  uv_close((uv_handle_t *)&stats_timer, NULL);
  otlp_close(exp_main, NULL, NULL);
  otlp_close(exp_small, NULL, NULL);
  otlp_close(exp_hostport, NULL, NULL);
  otlp_close(exp_moved, NULL, NULL);
  otlp_close(exp_silent, NULL, NULL);
  admin_http_close(srv, NULL, NULL);
  admin_http_close(srv_moved, NULL, NULL);
  admin_http_close(srv_stop, NULL, NULL);
}

static int setup(void **state) {
  (void)state;
  received = cJSON_CreateArray();
  silent_fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (silent_fd < 0 || bind(silent_fd, (struct sockaddr *)&a, sizeof a) ||
      listen(silent_fd, 16) ||
      getsockname(silent_fd, (struct sockaddr *)&a, &alen) ||
      pthread_create(&silent_thread, NULL, silent, NULL))
    return -1;
  silent_port = ntohs(a.sin_port);
  lt = loop_thread_start(on_loop, on_stop, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  loop_thread_stop(lt);
  stop_silent = 1;
  pthread_join(silent_thread, NULL);
  for (int i = 0; i < n_silent; i++)
    close(silent_conns[i]);
  close(silent_fd);
  cJSON_Delete(received);
  return 0;
}

static const cJSON *span_named(const char *name) {
  const cJSON *s;
  cJSON_ArrayForEach(s, received) {
    const cJSON *n = cJSON_GetObjectItem(s, "name");
    if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
      return s;
  }
  return NULL;
}

static const char *field(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static const char *attr_of(const cJSON *span, const char *key) {
  const cJSON *a;
  cJSON_ArrayForEach(a, cJSON_GetObjectItem(span, "attributes")) {
    if (!strcmp(field(a, "key"), key))
      return field(cJSON_GetObjectItem(a, "value"), "stringValue");
  }
  return NULL;
}

static void test_spans_arrive_after_a_refused_post_with_their_links(
    void **state) {
  (void)state;
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  int n = 0;
  while (ts_now_ms() < until) {
    pthread_mutex_lock(&mu);
    n = cJSON_GetArraySize(received) + hostport_spans;
    pthread_mutex_unlock(&mu);
    if (n >= 5)
      break;
    nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
  }
  pthread_mutex_lock(&mu);
  assert_int_equal(cJSON_GetArraySize(received), 4);
  assert_int_equal(hostport_spans, 1);
  assert_true(posts >= 3); /* the 503 was retried */
  /* HTTP/1.1 keep-alive: the retry went over the connection the 503 came
   * on, so two exporters opened two connections for three or more POSTs */
  assert_int_equal(accepted, 2);
  assert_string_equal(resource_service, "sagad-test");
  assert_string_equal(got_auth, "Bearer t0ken");
  assert_string_equal(got_tenant, "acme");
  /* OTEL_RESOURCE_ATTRIBUTES joins the resource; OTEL_SERVICE_NAME wins
   * over its service.name, which appears once */
  assert_string_equal(got_env, "prod");
  assert_int_equal(n_service_attrs, 1);
  const cJSON *saga = span_named("saga order");
  assert_non_null(saga);
  assert_string_equal(field(saga, "traceId"),
                      "4bf92f3577b34da6a3ce929d0e0e4736");
  assert_string_equal(field(saga, "parentSpanId"), "00f067aa0ba902b7");
  assert_string_equal(field(saga, "spanId"), saga_span);
  assert_string_equal(attr_of(saga, "saga.id"), "o-1");
  assert_null(attr_of(saga, "saga.step"));
  assert_string_equal(field(saga, "startTimeUnixNano"),
                      "1700000000000000000");
  assert_string_equal(field(saga, "endTimeUnixNano"), "1700000000001500000");
  const char *cut = field(cJSON_GetObjectItem(saga, "status"), "message");
  assert_int_equal(strlen(cut), 126);
  assert_int_equal(strspn(cut, "x"), 126);
  const char *steps[] = {"step reserve", "step charge", "compensate reserve"};
  for (size_t i = 0; i < 3; i++) {
    const cJSON *s = span_named(steps[i]);
    assert_non_null(s);
    assert_string_equal(field(s, "traceId"), field(saga, "traceId"));
    assert_string_equal(field(s, "parentSpanId"), saga_span);
    assert_int_equal(strlen(field(s, "spanId")), 16);
    assert_string_equal(attr_of(s, "saga.type"), "order");
  }
  const cJSON *charge = span_named("step charge");
  const cJSON *st = cJSON_GetObjectItem(charge, "status");
  assert_int_equal(cJSON_GetObjectItem(st, "code")->valueint,
                   OTLP_STATUS_ERROR);
  assert_string_equal(field(st, "message"), "declined");
  assert_string_equal(attr_of(span_named("compensate reserve"),
                              "saga.action"),
                      "compensate");
  pthread_mutex_unlock(&mu);
}

/* A graceful stop sends what is queued before it closes: the five spans
 * of exp_stop arrive (in two batches), then its close callback runs. */
static void test_a_flushing_close_sends_the_queued_spans_first(void **state) {
  (void)state;
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  int closed = 0, n = 0;
  while (!closed && ts_now_ms() < until) {
    nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    pthread_mutex_lock(&mu);
    closed = stop_closed;
    n = stop_spans;
    pthread_mutex_unlock(&mu);
  }
  assert_true(closed);
  assert_int_equal(n, 5);
}

static void test_a_full_queue_drops_and_counts(void **state) {
  (void)state;
  for (int i = 0; i < 4; i++)
    assert_int_equal(small_rc[i], 0);
  assert_int_equal(small_rc[4], -1);
  assert_int_equal(small_rc[5], -1);
  assert_int_equal(small_stats.dropped, 2);
  assert_int_equal(small_stats.queued, 4);
}

/* A 3xx is not followed and not retried: the batch is refused as a 4xx
 * would be. Retried (from 20 ms, doubling), its POST would come back four
 * times or more in the half second after the first. */
static void test_a_redirect_is_refused_not_retried(void **state) {
  (void)state;
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  int n = 0;
  while (n == 0 && ts_now_ms() < until) {
    nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    pthread_mutex_lock(&mu);
    n = moved_posts;
    pthread_mutex_unlock(&mu);
  }
  assert_int_equal(n, 1);
  nanosleep(&(struct timespec){.tv_nsec = 500000000}, NULL);
  pthread_mutex_lock(&mu);
  n = moved_posts;
  /* the exporter says why, for sagad's log */
  assert_int_equal(moved_stats.failed, 1);
  assert_int_equal(moved_stats.failing, 1);
  assert_string_equal(moved_err, "HTTP 302 (refused, spans dropped)");
  pthread_mutex_unlock(&mu);
  assert_int_equal(n, 1);
}

/* A collector that never answers: the request is abandoned after the
 * timeout OTEL_EXPORTER_OTLP_TRACES_TIMEOUT gives (300 ms) and posted again
 * on a new connection. The default (10 s) or the general variable (ten
 * minutes) would keep the first connection past this test's wait (8 s,
 * longer only in scaled sanitizer runs). */
static void test_an_unanswered_export_is_abandoned_after_the_timeout(
    void **state) {
  (void)state;
  int64_t until = ts_now_ms() + ts_timeout_ms(8000);
  int n = 0;
  while (n < 2 && ts_now_ms() < until) {
    nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    pthread_mutex_lock(&mu);
    n = n_silent;
    pthread_mutex_unlock(&mu);
  }
  assert_true(n >= 2);
  /* the exporter says why (curl's words), for sagad's log */
  until = ts_now_ms() + ts_timeout_ms(8000);
  pthread_mutex_lock(&mu);
  while (silent_stats.failing < 1 && ts_now_ms() < until) {
    pthread_mutex_unlock(&mu);
    nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    pthread_mutex_lock(&mu);
  }
  assert_true(silent_stats.failing >= 1);
  if (!strstr(silent_err, "timed out") || !strstr(silent_err, "(retried)"))
    fail_msg("last error \"%s\"", silent_err);
  pthread_mutex_unlock(&mu);
}

/* The export timeout from the environment: the traces variable, else the
 * general one, else not set (the exporter's 10 s stays). */
static void test_resolve_reads_the_export_timeout(void **state) {
  (void)state;
  static const struct {
    const char *env[6];
    uint64_t want; /* in the target; 0 = not set */
    uint64_t opts; /* in the exporter's options */
  } cases[] = {
      {{NULL}, 0, 10000},
      {{"OTEL_EXPORTER_OTLP_TIMEOUT", "2500", NULL}, 2500, 2500},
      {{"OTEL_EXPORTER_OTLP_TIMEOUT", "2500",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "400", NULL},
       400,
       400},
      {{"OTEL_EXPORTER_OTLP_TIMEOUT", "", NULL}, 0, 10000},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    otlp_settings_t st = {.endpoint = "c:1"};
    otlp_target_t t;
    char err[512] = "";
    if (otlp_resolve(&st, otlp_test_env, cases[i].env, &t, err, sizeof err))
      fail_msg("case %zu: %s", i, err);
    assert_int_equal(t.timeout_ms, cases[i].want);
    otlp_opts_t o;
    otlp_opts_init(&o);
    otlp_opts_from_target(&o, &t);
    assert_int_equal(o.timeout_ms, cases[i].opts);
    otlp_target_free(&t);
  }
}

/* Which URL sagad posts to, from otlp.endpoint and the environment. */
static void test_resolve_picks_the_url_as_the_sdks_do(void **state) {
  (void)state;
  static const struct {
    const char *endpoint;
    const char *env[8];
    const char *url, *from; /* url NULL: not enabled */
    const char *service;
  } cases[] = {
      /* today's host:port form, a host name, IPv6 */
      {"otel-collector:4318",
       {NULL},
       "http://otel-collector:4318/v1/traces",
       "otlp.endpoint",
       "sagad"},
      {"[::1]:4318",
       {NULL},
       "http://[::1]:4318/v1/traces",
       "otlp.endpoint",
       "sagad"},
      /* a base URL: v1/traces appended to its path */
      {"https://collector.example:4318",
       {NULL},
       "https://collector.example:4318/v1/traces",
       "otlp.endpoint",
       "sagad"},
      {"https://gw.example/otlp/",
       {NULL},
       "https://gw.example/otlp/v1/traces",
       "otlp.endpoint",
       "sagad"},
      /* sagad's setting wins over the environment */
      {"otel-collector:4318",
       {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:4318/x", NULL},
       "http://otel-collector:4318/v1/traces",
       "otlp.endpoint",
       "sagad"},
      /* the traces endpoint as given, before the base endpoint */
      {NULL,
       {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c.example/t", NULL},
       "https://c.example/t",
       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
       "sagad"},
      {"",
       {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318/",
        "OTEL_RESOURCE_ATTRIBUTES", "service.name=orders,team=pay", NULL},
       "http://otel-collector:4318/v1/traces",
       "OTEL_EXPORTER_OTLP_ENDPOINT",
       "orders"},
      /* OTEL_SERVICE_NAME over the resource attribute */
      {"c:1",
       {"OTEL_SERVICE_NAME", "sagad-eu", "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=orders", NULL},
       "http://c:1/v1/traces",
       "otlp.endpoint",
       "sagad-eu"},
      /* the off switches win; no endpoint at all: off */
      {"c:1",
       {"OTEL_SDK_DISABLED", "true", NULL},
       NULL,
       "otlp.endpoint",
       "sagad"},
      {NULL,
       {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1", "OTEL_TRACES_EXPORTER",
        "none", NULL},
       NULL,
       "OTEL_EXPORTER_OTLP_ENDPOINT",
       "sagad"},
      {NULL, {"OTEL_SERVICE_NAME", "x", NULL}, NULL, NULL, "x"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    otlp_settings_t st = {.endpoint = cases[i].endpoint};
    otlp_target_t t;
    char err[512] = "";
    if (otlp_resolve(&st, otlp_test_env, cases[i].env, &t, err, sizeof err) != 0)
      fail_msg("case %zu: %s", i, err);
    if (cases[i].url) {
      assert_true(t.enabled);
      assert_string_equal(t.url, cases[i].url);
    } else {
      assert_false(t.enabled);
    }
    if (cases[i].from)
      assert_string_equal(t.url_from, cases[i].from);
    assert_string_equal(t.service_name, cases[i].service);
    otlp_target_free(&t);
  }
}

/* With export off (OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none)
 * the other variables are not used, so a bad one is no error: the off
 * switch is also the way out of a bad value. */
static void test_an_off_switch_leaves_the_other_variables_unjudged(
    void **state) {
  (void)state;
  static const char *const envs[][9] = {
      {"OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_TIMEOUT", "10s",
       "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", NULL},
      {"OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT",
       "http://c:1", "OTEL_EXPORTER_OTLP_CERTIFICATE",
       "/nonexistent/ca.pem", "OTEL_EXPORTER_OTLP_HEADERS", "novalue", NULL},
  };
  for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
    otlp_settings_t st = {0};
    otlp_target_t t;
    char err[512] = "";
    if (otlp_resolve(&st, otlp_test_env, envs[i], &t, err, sizeof err) != 0)
      fail_msg("case %zu: %s", i, err);
    assert_false(t.enabled);
    otlp_target_free(&t);
    /* the same values with export on are refused */
    const char *on[9];
    size_t k = 0;
    for (size_t j = 2; envs[i][j]; j++)
      on[k++] = envs[i][j];
    on[k] = NULL;
    assert_int_equal(otlp_resolve(&st, otlp_test_env, on, &t, err, sizeof err),
                     -1);
  }
  /* sagad's own otlp.endpoint is judged all the same, beside a bad
   * variable as alone */
  static const char *const off_bad[] = {"OTEL_SDK_DISABLED", "true",
                                        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc",
                                        NULL};
  static const char *const off_only[] = {"OTEL_SDK_DISABLED", "true", NULL};
  otlp_settings_t bad_ep = {.endpoint = "http://ho st:4318"};
  otlp_target_t t;
  char err[512] = "";
  assert_int_equal(
      otlp_resolve(&bad_ep, otlp_test_env, off_bad, &t, err, sizeof err), -1);
  if (strncmp(err, "otlp.endpoint: ", 15))
    fail_msg("with another variable bad: \"%s\"", err);
  assert_int_equal(
      otlp_resolve(&bad_ep, otlp_test_env, off_only, &t, err, sizeof err), -1);
  if (strncmp(err, "otlp.endpoint: ", 15))
    fail_msg("alone: \"%s\"", err);
}

/* The off switches as the spec reads them, in an environment shared with
 * other services: only true disables the SDK (any other value is false,
 * with a warning), OTEL_TRACES_EXPORTER is a list, an exporter sagad lacks
 * is a warning, not a refusal, and OTEL_SDK_DISABLED=true wins over any
 * OTEL_TRACES_EXPORTER. */
static void test_the_off_switches_read_as_the_spec_says(void **state) {
  (void)state;
  static const struct {
    const char *env[5];
    bool enabled;
    const char *warning; /* in the warning, or "" for none */
  } cases[] = {
      {{"OTEL_SDK_DISABLED", "TRUE", NULL}, false, ""},
      {{"OTEL_SDK_DISABLED", "false", NULL}, true, ""},
      {{"OTEL_SDK_DISABLED", "", NULL}, true, ""},
      {{"OTEL_SDK_DISABLED", "1", NULL}, true, "\"1\" is not true"},
      {{"OTEL_SDK_DISABLED", "true", "OTEL_TRACES_EXPORTER", "console", NULL},
       false, ""},
      {{"OTEL_TRACES_EXPORTER", "none", "OTEL_SDK_DISABLED", "1", NULL}, false,
       "OTEL_SDK_DISABLED"},
      {{"OTEL_TRACES_EXPORTER", "otlp", NULL}, true, ""},
      {{"OTEL_TRACES_EXPORTER", " otlp , console", NULL}, true,
       "sagad exports only otlp; console ignored"},
      {{"OTEL_TRACES_EXPORTER", "zipkin,console", NULL}, false,
       "\"zipkin, console\" does not name it: no spans are exported"},
      {{"OTEL_TRACES_EXPORTER", "otlp,none", NULL}, false, ""},
      {{"OTEL_TRACES_EXPORTER", "OTLP", NULL}, true, ""},
      {{"OTEL_TRACES_EXPORTER", "None", NULL}, false, ""},
      {{"OTEL_TRACES_EXPORTER", "", NULL}, true, ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    otlp_settings_t st = {.endpoint = "c:1"};
    otlp_target_t t;
    char err[512] = "";
    if (otlp_resolve(&st, otlp_test_env, cases[i].env, &t, err, sizeof err))
      fail_msg("case %zu: %s", i, err);
    if (t.enabled != cases[i].enabled)
      fail_msg("case %zu: enabled %d", i, t.enabled);
    if (*cases[i].warning ? !strstr(t.warning, cases[i].warning)
                          : t.warning[0] != '\0')
      fail_msg("case %zu: warning \"%s\"", i, t.warning);
    otlp_target_free(&t);
  }
}

/* Bad values are refused with the property or variable and the fault. */
static void test_resolve_names_what_is_wrong(void **state) {
  (void)state;
  static const struct {
    const char *endpoint;
    const char *env[4];
    const char *want[2];
  } cases[] = {
      {"otel-collector", {NULL}, {"otlp.endpoint: ", "expected host:port"}},
      {"otel-collector:0", {NULL}, {"otlp.endpoint: ", "port 1..65535"}},
      {"ftp://c:21", {NULL}, {"otlp.endpoint: ", "only http:// and https://"}},
      {"https://u:secret@c:1", {NULL}, {"otlp.endpoint: ", "user or password"}},
      {NULL,
       {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://", NULL},
       {"OTEL_EXPORTER_OTLP_ENDPOINT: ", "is not a URL"}},
      {"http://otel-collector:0", {NULL},
       {"otlp.endpoint: ", "the port must be 1..65535"}},
      {NULL,
       {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:0", NULL},
       {"OTEL_EXPORTER_OTLP_ENDPOINT: ", "the port must be 1..65535"}},
      {NULL,
       {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318", NULL},
       {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: ", "collector:4318"}},
      {"c:1",
       {"OTEL_EXPORTER_OTLP_HEADERS", "api-key", NULL},
       {"OTEL_EXPORTER_OTLP_HEADERS: ", "expected key=value"}},
      {"c:1",
       {"OTEL_EXPORTER_OTLP_HEADERS", "k=%zz", NULL},
       {"OTEL_EXPORTER_OTLP_HEADERS: ", "bad %XX escape"}},
      {"c:1",
       {"OTEL_EXPORTER_OTLP_HEADERS", "a b=1", NULL},
       {"OTEL_EXPORTER_OTLP_HEADERS: ", "is not a valid name"}},
      {"c:1",
       {"OTEL_EXPORTER_OTLP_HEADERS", "k=a%0d%0aInjected: 1", NULL},
       {"OTEL_EXPORTER_OTLP_HEADERS: ", "control character"}},
      {"https://c:1",
       {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem", NULL},
       {"OTEL_EXPORTER_OTLP_CERTIFICATE: ", "cannot read"}},
      /* a folder for a PEM file would fail every handshake, silently */
      {"https://c:1",
       {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/tmp", NULL},
       {"OTEL_EXPORTER_OTLP_CERTIFICATE: ", "\"/tmp\" is not a file"}},
      /* half a client identity names the variable given */
      {"https://c:1",
       {"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/etc/passwd", NULL},
       {"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE is set but ",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY (or"}},
      {"https://c:1",
       {"OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/passwd", NULL},
       {"OTEL_EXPORTER_OTLP_CLIENT_KEY is set but ",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE (or"}},
      {"c:1",
       {"OTEL_RESOURCE_ATTRIBUTES", "team", NULL},
       {"OTEL_RESOURCE_ATTRIBUTES: ", "expected key=value"}},
      {"c:1",
       {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", NULL},
       {"OTEL_EXPORTER_OTLP_PROTOCOL: ", "grpc"}},
      {"c:1",
       {"OTEL_EXPORTER_OTLP_TIMEOUT", "10s", NULL},
       {"OTEL_EXPORTER_OTLP_TIMEOUT: ", "whole milliseconds"}},
      {"c:1",
       {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0", NULL},
       {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: ", "from 1 to 3600000"}},
      {"c:1",
       {"OTEL_EXPORTER_OTLP_TIMEOUT", "-5", NULL},
       {"OTEL_EXPORTER_OTLP_TIMEOUT: ", "\"-5\""}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    otlp_settings_t st = {.endpoint = cases[i].endpoint};
    otlp_target_t t;
    char err[512] = "";
    int rc = otlp_resolve(&st, otlp_test_env, cases[i].env, &t, err, sizeof err);
    if (rc != -1 || strncmp(err, cases[i].want[0], strlen(cases[i].want[0])) ||
        !strstr(err, cases[i].want[1]))
      fail_msg("case %zu: rc %d, \"%s\"", i, rc, err);
    assert_null(t.url);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spans_arrive_after_a_refused_post_with_their_links),
      cmocka_unit_test(test_a_full_queue_drops_and_counts),
      cmocka_unit_test(test_a_flushing_close_sends_the_queued_spans_first),
      cmocka_unit_test(test_a_redirect_is_refused_not_retried),
      cmocka_unit_test(test_an_unanswered_export_is_abandoned_after_the_timeout),
      cmocka_unit_test(test_resolve_reads_the_export_timeout),
      cmocka_unit_test(test_resolve_picks_the_url_as_the_sdks_do),
      cmocka_unit_test(test_resolve_names_what_is_wrong),
      cmocka_unit_test(test_the_off_switches_read_as_the_spec_says),
      cmocka_unit_test(test_an_off_switch_leaves_the_other_variables_unjudged),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  return rc;
}
