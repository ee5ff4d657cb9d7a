/* A real sagad seen from outside, as an operator and a tracing backend see
 * it: its admin endpoint on a free port (metrics of a finished saga,
 * readiness once partitions are assigned, a saga's history, a saga started
 * over HTTP, a stuck saga in the list, the gauge and the log), its spans
 * sent to an in-test OTLP receiver with the links back to the starter's
 * traceparent, and a real Prometheus scraping it (skipped unless
 * prometheus is installed, or SAGA_PROM_TESTS=1 installs it). One sagad
 * and one participant (tests/coordinator_e2e) serve every test. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
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
#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "admin_http.h"
#include "e2e.h"
#include "http_client.h"
#include "saga/version.h"
#include "test_support.h"

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define STARTER_SPAN "00f067aa0ba902b7"
#define STARTER_TP "00-" TRACE_ID "-" STARTER_SPAN "-01"

static e2e_t *t;
static int admin_port = -1;
static char logpath[256], stuckdef[256];
static char otlp_opt[64]; /* --otlp.endpoint= the receiver */

/* ---- the OTLP receiver (admin HTTP server on its own loop thread) ---- */

static loop_thread_t *lt;
static admin_http_t *rx;
static int rx_port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static cJSON *spans; /* every span received */

static void h_traces(admin_http_req_t *req, void *arg) {
  (void)arg;
  cJSON *doc = cJSON_ParseWithLength(req->body, req->body_len);
  pthread_mutex_lock(&mu);
  cJSON *rs;
  cJSON_ArrayForEach(rs, cJSON_GetObjectItem(doc, "resourceSpans")) {
    cJSON *ss;
    cJSON_ArrayForEach(ss, cJSON_GetObjectItem(rs, "scopeSpans")) {
      cJSON *sp;
      cJSON_ArrayForEach(sp, cJSON_GetObjectItem(ss, "spans"))
        cJSON_AddItemToArray(spans, cJSON_Duplicate(sp, 1));
    }
  }
  pthread_mutex_unlock(&mu);
  cJSON_Delete(doc);
  admin_http_respond(req, 200, "application/json", "{}", 2);
}

static void rx_setup(uv_loop_t *loop, void *arg) {
  (void)arg;
  rx = admin_http_new(loop, NULL);
  assert_non_null(rx);
  assert_int_equal(admin_http_route(rx, "POST", "/v1/traces", h_traces, NULL),
                   0);
  assert_int_equal(admin_http_start(rx, NULL, 0), 0);
  rx_port = admin_http_port(rx);
}

static void rx_teardown(void *arg) {
  (void)arg;
  admin_http_close(rx, NULL, NULL);
}

/* ---- helpers ---------------------------------------------------------- */

/* The saga test_spans_wait_for_their_transition_to_be_committed holds:
 * when the participant answers its first step, blocker (a session of the
 * test) takes a lock that makes sagad's next append wait. */
#define HELD_ID "obs-held"
static PGconn *blocker;
static int held_answered;

/* The saga test_a_recovered_saga_continues_its_trace holds: its first
 * step is not answered until sagad has been killed and started again. */
#define RECOVER_ID "obs-recover"
static int hold_recover = 1;

static e2e_answer_t script(const char *id, int step, int compensate,
                           uint32_t attempt) {
  (void)compensate;
  (void)attempt;
  if (hold_recover && !strcmp(id, RECOVER_ID) && step == 0)
    return E2E_NO_REPLY;
  if (blocker && !held_answered && !strcmp(id, HELD_ID) && step == 0) {
    PGresult *r = PQexec(blocker, "BEGIN; LOCK TABLE saga_index IN "
                                  "EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    held_answered = 1;
  }
  return E2E_SUCCESS;
}

/* GET path from sagad's admin endpoint; the body (malloc'd) and status. */
static char *get(const char *path, int *status) {
  char req[512];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Connection: close\r\n\r\n",
           path);
  char *r = http_roundtrip(admin_port, req, status);
  char *body = r ? strstr(r, "\r\n\r\n") : NULL;
  char *out = strdup(body ? body + 4 : "");
  free(r);
  return out;
}

static char *post_start(const char *type, const char *id, const char *tp,
                        int *status) {
  const char *body = "{\"amount\":10}";
  char req[1024];
  snprintf(req, sizeof req,
           "POST /sagas/%s?id=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Content-Type: application/json\r\nContent-Length: %zu\r\n"
           "%s%s%sConnection: close\r\n\r\n%s",
           type, id, strlen(body), tp ? "traceparent: " : "", tp ? tp : "",
           tp ? "\r\n" : "", body);
  char *r = http_roundtrip(admin_port, req, status);
  char *b = r ? strstr(r, "\r\n\r\n") : NULL;
  char *out = strdup(b ? b + 4 : "");
  free(r);
  return out;
}

/* Pump the participant until GET path answers 200 with `want` in its body
 * (want NULL: any 200). Returns the body or fails. */
static char *wait_get(const char *path, const char *want) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (ts_now_ms() < until) {
    int st = 0;
    char *b = get(path, &st);
    if (st == 200 && (!want || strstr(b, want)))
      return b;
    free(b);
    e2e_pump(t, 100);
  }
  fail_msg("GET %s never answered 200 with \"%s\"", path, want ? want : "");
  return NULL;
}

static void wait_done(const char *id) {
  const char *ids[] = {id};
  assert_int_equal(e2e_wait_terminal(t, ids, 1, ts_timeout_ms(60000)), 1);
}

/* ---- set-up: sagad with a free admin port and spans to the receiver --- */

/* Start sagad 0 with spans to the receiver; wait for its admin endpoint. */
static void start_sagad(void) {
  const char *extra[] = {otlp_opt, NULL};
  admin_port = e2e_sagad_start_admin(t, 0, extra, ts_timeout_ms(30000));
}

static int setup(void **state) {
  (void)state;
  ts_require_pg();
  ts_require_kafka();
  spans = cJSON_CreateArray();
  lt = loop_thread_start(rx_setup, rx_teardown, NULL);
  t = e2e_new("observed", 60000, script);
  /* A type whose one step goes to a topic nobody reads, reported stuck
   * after one second without progress. */
  snprintf(stuckdef, sizeof stuckdef, "%s/defs/stuck.json", e2e_dir(t));
  FILE *f = fopen(stuckdef, "w");
  assert_non_null(f);
  fprintf(f,
          "{\"name\": \"stuck\", \"version\": 1, \"steps\": [{\"name\": "
          "\"wait\", \"topic\": \"%s\", \"timeout_ms\": 600000, "
          "\"stuck_after_ms\": 1000, \"kind\": \"compensatable\", "
          "\"compensation\": {\"topic\": \"%s\", \"action\": \"undo\"}}]}\n",
          ts_unique_name("nobody"), ts_unique_name("nobody"));
  fclose(f);
  snprintf(otlp_opt, sizeof otlp_opt, "--otlp.endpoint=127.0.0.1:%d",
           rx_port);
  snprintf(logpath, sizeof logpath, "%s/sagad0.log", e2e_dir(t));
  start_sagad();
  return admin_port > 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  int rc = e2e_sagad_stop(t, 0, SIGTERM);
  unlink(stuckdef);
  e2e_free(t);
  loop_thread_stop(lt);
  cJSON_Delete(spans);
  return rc == 0 ? 0 : -1;
}

/* ---- tests -------------------------------------------------------------- */

static void test_readyz_answers_200_once_partitions_are_assigned(void **s) {
  (void)s;
  char *b = wait_get("/readyz", "\"ready\":true");
  assert_non_null(strstr(b, "\"partitions\":true"));
  free(b);
  int st = 0;
  b = get("/healthz", &st);
  assert_int_equal(st, 200);
  free(b);
}

static void test_metrics_show_a_completed_saga_and_its_step_latency(void **s) {
  (void)s;
  e2e_start(t, "fast", "obs-done");
  wait_done("obs-done");
  char *b = wait_get("/metrics", "saga_finished_total{saga_type=\"fast\","
                                 "outcome=\"completed\"} 1");
  assert_non_null(strstr(b, "saga_started_total{saga_type=\"fast\"} 1"));
  assert_non_null(strstr(b, "saga_step_duration_seconds_count{saga_type="
                            "\"fast\",step=\"s2\",action=\"do\"} 1"));
  assert_non_null(strstr(b, "# TYPE saga_eventstore_append_duration_seconds "
                            "histogram"));
  /* bounds below a millisecond (docs/metrics.md): a commit's p50 is read
   * from its own bucket, not interpolated across 0-1 ms */
  assert_non_null(strstr(b, "saga_eventstore_append_duration_seconds_bucket"
                            "{le=\"0.0003\"} "));
  assert_non_null(strstr(b, "saga_eventstore_batch_sagas_count "));
  /* spans a collector refused have a series of their own (they were
   * counted by the exporter and shown nowhere) */
  assert_non_null(strstr(b, "saga_trace_spans_total{result=\"rejected\"} "));
  /* s1's reply led to s2's command: one reaction timed at least */
  const char *rc = "\nsaga_reply_to_command_duration_seconds_count ";
  const char *react = strstr(b, rc);
  assert_non_null(react);
  assert_true(atof(react + strlen(rc)) >= 1);
  assert_non_null(strstr(b, "# TYPE saga_inbox_lag_messages gauge"));
  /* the version of project() in CMakeLists.txt, as --version says it, and
   * the source revision (git's short commit when built from a clone) */
  assert_non_null(strstr(b, "saga_build_info{version=\"" SAGA_VERSION
                            "\",revision=\""));
  /* the standard process metrics */
  assert_non_null(strstr(b, "\nprocess_cpu_seconds_total "));
  assert_non_null(strstr(b, "\nprocess_resident_memory_bytes "));
  assert_non_null(strstr(b, "\nprocess_open_fds "));
  assert_non_null(strstr(b, "\nprocess_start_time_seconds "));
  free(b);
}

static void test_get_saga_returns_its_history(void **s) {
  (void)s;
  e2e_start(t, "fast", "obs-hist");
  wait_done("obs-hist");
  char *b = wait_get("/sagas/obs-hist", "\"Completed\"");
  cJSON *doc = cJSON_Parse(b);
  assert_non_null(doc);
  cJSON *saga = cJSON_GetObjectItem(doc, "saga");
  assert_string_equal(cJSON_GetObjectItem(saga, "status")->valuestring,
                      "completed");
  cJSON *h = cJSON_GetObjectItem(doc, "history");
  /* Started, three steps dispatched and succeeded, Completed. */
  assert_true(cJSON_GetArraySize(h) >= 4);
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetArrayItem(h, 0), "event")->valuestring,
      "Started");
  cJSON_Delete(doc);
  free(b);
  int st = 0;
  b = get("/sagas/no-such-saga", &st);
  assert_int_equal(st, 404);
  free(b);
}

static void test_post_starts_a_saga_that_completes_once(void **s) {
  (void)s;
  int st = 0;
  char *b = post_start("fast", "obs-post", NULL, &st);
  assert_int_equal(st, 201);
  assert_non_null(strstr(b, "\"created\":true"));
  free(b);
  wait_done("obs-post");
  assert_string_equal(e2e_status(t, "obs-post"), "completed");
  /* The same id again starts nothing new. */
  b = post_start("fast", "obs-post", NULL, &st);
  assert_true(st == 200 || st == 201);
  free(b);
  e2e_pump(t, 500);
  for (int i = 0; i < E2E_STEPS; i++)
    assert_int_equal(e2e_applied(t, "obs-post", i), 1);
  b = post_start("nosuchtype", "obs-x", NULL, &st);
  assert_int_equal(st, 404);
  free(b);
}

/* A saga that already finished is no longer in the coordinator's memory:
 * a start with its id still says the saga exists (200 with its status),
 * and 409 for another type, never a fresh 201. */
static void test_post_for_a_finished_saga_answers_that_it_exists(void **s) {
  (void)s;
  e2e_start(t, "fast", "obs-again");
  wait_done("obs-again");
  free(wait_get("/sagas/obs-again", "\"completed\""));
  int st = 0;
  char *b = post_start("fast", "obs-again", NULL, &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(b, "\"created\":false"));
  assert_non_null(strstr(b, "\"status\":\"completed\""));
  free(b);
  b = post_start("stuck", "obs-again", NULL, &st);
  assert_int_equal(st, 409);
  assert_non_null(strstr(b, "\"fast\""));
  free(b);
  e2e_pump(t, 500);
  for (int i = 0; i < E2E_STEPS; i++)
    assert_int_equal(e2e_applied(t, "obs-again", i), 1);
  assert_string_equal(e2e_status(t, "obs-again"), "completed");
}

/* Ids the wire cannot carry are refused at the door with the field named
 * (the real endpoint, not only the handler); / leads to the page. */
static void test_post_with_an_id_holding_a_slash_gets_400(void **s) {
  (void)s;
  int st = 0;
  char *b = post_start("fast", "a%2Fb", NULL, &st);
  assert_int_equal(st, 400);
  assert_non_null(strstr(b, "query parameter id"));
  free(b);
  char *r = http_roundtrip(admin_port,
                           "POST /sagas/fast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Idempotency-Key: a/b\r\nContent-Length: 2\r\n"
                           "Connection: close\r\n\r\n{}",
                           &st);
  assert_int_equal(st, 400);
  assert_non_null(strstr(r, "header Idempotency-Key"));
  free(r);
  r = http_roundtrip(admin_port,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "\r\n",
                     &st);
  assert_int_equal(st, 302);
  assert_non_null(strstr(r, "\r\nLocation: /ui\r\n"));
  free(r);
}

static cJSON *span_named(const char *saga, const char *name) {
  cJSON *sp, *found = NULL;
  pthread_mutex_lock(&mu);
  cJSON_ArrayForEach(sp, spans) {
    if (strcmp(cJSON_GetObjectItem(sp, "name")->valuestring, name) != 0)
      continue;
    cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(sp, "attributes")) {
      cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "value"),
                                     "stringValue");
      if (!strcmp(cJSON_GetObjectItem(a, "key")->valuestring, "saga.id") &&
          cJSON_IsString(v) && !strcmp(v->valuestring, saga))
        found = cJSON_Duplicate(sp, 1);
    }
    if (found)
      break;
  }
  pthread_mutex_unlock(&mu);
  return found;
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* Wait for saga id's saga span and its span named step: the saga span is
 * a child of STARTER_TP's span, the step span a child of the saga span,
 * both in STARTER_TP's trace. */
static void saga_and_step_in_starters_trace(const char *id,
                                            const char *step_name) {
  cJSON *saga = NULL, *step = NULL;
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  while ((!saga || !step) && ts_now_ms() < until) {
    if (!saga)
      saga = span_named(id, "saga");
    if (!step)
      step = span_named(id, step_name);
    e2e_pump(t, 100);
  }
  assert_non_null(saga);
  assert_non_null(step);
  assert_string_equal(str(saga, "traceId"), TRACE_ID);
  assert_string_equal(str(saga, "parentSpanId"), STARTER_SPAN);
  assert_string_equal(str(step, "traceId"), TRACE_ID);
  assert_string_equal(str(step, "parentSpanId"), str(saga, "spanId"));
  assert_string_not_equal(str(step, "spanId"), str(saga, "spanId"));
  cJSON_Delete(saga);
  cJSON_Delete(step);
}

static void test_spans_link_back_to_the_starters_traceparent(void **s) {
  (void)s;
  int st = 0;
  char *b = post_start("fast", "obs-trace", STARTER_TP, &st);
  assert_int_equal(st, 201);
  free(b);
  wait_done("obs-trace");
  saga_and_step_in_starters_trace("obs-trace", "step s1");
  /* The trace context is also kept with the persisted decision the start
   * caused, so a history can be tied to its trace. */
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, "SELECT traceparent FROM es_events WHERE"
                          " stream_id = 'saga-obs-trace' AND"
                          " stream_version = 1");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_int_equal(PQntuples(r), 1);
  assert_string_equal(PQgetvalue(r, 0, 0), STARTER_TP);
  PQclear(r);
  PQfinish(c);
}

/* Invariant 1 for spans: the span of an attempt is exported only once the
 * transition that decided it is committed. The append of the reply's
 * transition is held by a table lock; while a backend waits on it, no span
 * of that step may arrive (sagad flushes spans every second, so waiting 3 s
 * lets a span emitted too early show up; a correct sagad can never fail
 * this, however slow); once the lock goes, the span arrives. */
static void test_spans_wait_for_their_transition_to_be_committed(void **s) {
  (void)s;
  blocker = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(blocker), CONNECTION_OK);
  PGconn *watch = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(watch), CONNECTION_OK);
  int st = 0;
  char *b = post_start("fast", HELD_ID, NULL, &st);
  assert_int_equal(st, 201);
  free(b);
  /* the participant answers step 0 and the lock is taken; then sagad's
   * append of that answer waits on it */
  int waiting = 0;
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (!waiting && ts_now_ms() < until) {
    e2e_pump(t, 100);
    if (!held_answered)
      continue;
    PGresult *r = PQexec(watch, "SELECT count(*) FROM pg_locks l JOIN "
                                "pg_class c ON c.oid = l.relation WHERE "
                                "c.relname = 'saga_index' AND NOT l.granted");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    waiting = atoi(PQgetvalue(r, 0, 0)) > 0;
    PQclear(r);
  }
  assert_true(waiting);
  cJSON *early = NULL;
  int64_t window = ts_now_ms() + 3000;
  while (!early && ts_now_ms() < window) {
    early = span_named(HELD_ID, "step s1");
    nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
  }
  if (early) {
    cJSON_Delete(early);
    PQfinish(blocker); /* ends the transaction, so sagad can go on */
    blocker = NULL;
    PQfinish(watch);
    fail_msg("the span of step s1 arrived before its transition was "
             "committed");
  }
  PGresult *r = PQexec(blocker, "COMMIT");
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  wait_done(HELD_ID);
  cJSON *step = NULL;
  until = ts_now_ms() + ts_timeout_ms(30000);
  while (!step && ts_now_ms() < until) {
    step = span_named(HELD_ID, "step s1");
    e2e_pump(t, 100);
  }
  assert_non_null(step);
  cJSON_Delete(step);
  PQfinish(blocker);
  blocker = NULL;
  PQfinish(watch);
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

static void test_a_stuck_saga_is_listed_counted_and_logged_once(void **s) {
  (void)s;
  e2e_start(t, "stuck", "obs-stuck");
  char *b = wait_get("/sagas?stuck=true", "\"obs-stuck\"");
  free(b);
  b = wait_get("/metrics", "saga_stuck{saga_type=\"stuck\"} 1");
  assert_non_null(strstr(b, "saga_in_flight{saga_type=\"stuck\"} 1"));
  free(b);
  /* A few more scans: still one report. */
  e2e_pump(t, 2500);
  char *log = ts_slurp(logpath);
  assert_non_null(log);
  assert_int_equal(count(log, "saga=obs-stuck step=wait: stuck:"), 1);
  free(log);
}

/* ---- a real Prometheus -------------------------------------------------- */

static void test_prometheus_scrapes_sagad_and_answers_a_saga_counter(
    void **s) {
  (void)s;
  if (system("command -v prometheus >/dev/null 2>&1") != 0) {
    const char *want = getenv("SAGA_PROM_TESTS");
    if (!want || strcmp(want, "1") != 0) {
      printf("skipped: prometheus is not installed (SAGA_PROM_TESTS=1 "
             "installs it)\n");
      skip();
    }
    assert_int_equal(system("DEBIAN_FRONTEND=noninteractive apt-get install "
                            "-y --no-install-recommends prometheus "
                            ">/dev/null"),
                     0);
  }
  e2e_start(t, "fast", "obs-prom");
  wait_done("obs-prom");
  char dir[256];
  snprintf(dir, sizeof dir, "%s/prom", e2e_dir(t));
  char cmd[600];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  assert_int_equal(system(cmd), 0);
  int prom_port;
  pid_t prom = prometheus_start(dir, admin_port, &prom_port);
  assert_true(prom > 0);
  const char *q = "/api/v1/query?query=saga_finished_total%7Bsaga_type%3D%22"
                  "fast%22%2Coutcome%3D%22completed%22%2Cjob%3D%22sagad%22"
                  "%7D";
  char *body = NULL;
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (ts_now_ms() < until) {
    char *r = http_get_body(prom_port, q);
    if (r && strstr(r, "\"result\":[{")) {
      body = r;
      break;
    }
    free(r);
    e2e_pump(t, 200);
  }
  kill(prom, SIGTERM);
  waitpid(prom, NULL, 0);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  if (!body)
    fail_msg("prometheus did not report sagad's counter in time");
  assert_non_null(strstr(body, "\"status\":\"success\""));
  assert_non_null(strstr(body, "\"saga_type\":\"fast\""));
  /* At least the sagas the earlier tests finished, this one included. */
  char *v = strstr(body, "\"value\":[");
  assert_non_null(v);
  v = strchr(v, ',');
  assert_non_null(v);
  assert_true(atoi(v + 2) >= 1);
  free(body);
}

/* A saga in flight when sagad dies is resumed by the next sagad in the
 * trace its starter began: the trace context is read back from its first
 * event. Its saga span is the starter's child, and the spans of the steps
 * the new sagad runs are children of that saga span (the same span id a
 * sagad that had not restarted would have given it). */
/* W3C Trace Context: a starter that did not sample its trace (flags 00)
 * gets its decision kept. The commands carry the trace with flags 00, so
 * the participants do not sample it either, and sagad exports no span of
 * that saga, while a sampled saga after it is exported as before. */
static void test_an_unsampled_trace_stays_unsampled_and_exports_nothing(
    void **s) {
  (void)s;
  const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
  int st = 0;
  char *b = post_start("fast", "obs-unsampled", tp, &st);
  assert_int_equal(st, 201);
  free(b);
  wait_done("obs-unsampled");
  const char *cmd_tp = e2e_command_traceparent(t, "obs-unsampled");
  assert_int_equal(strlen(cmd_tp), 55);
  assert_memory_equal(cmd_tp, "00-0af7651916cd43dd8448eb211c80319c-", 36);
  assert_string_equal(cmd_tp + 52, "-00");
  /* a sampled saga after it: once its spans are in, the unsampled one's
   * would be too */
  b = post_start("fast", "obs-sampled-after", STARTER_TP, &st);
  assert_int_equal(st, 201);
  free(b);
  wait_done("obs-sampled-after");
  assert_string_equal(e2e_command_traceparent(t, "obs-sampled-after") + 52,
                      "-01");
  saga_and_step_in_starters_trace("obs-sampled-after", "step s3");
  e2e_pump(t, 1500); /* one more flush of the exporter */
  assert_null(span_named("obs-unsampled", "saga"));
  assert_null(span_named("obs-unsampled", "step s1"));
}

static void test_a_recovered_saga_continues_its_trace(void **s) {
  (void)s;
  int st = 0;
  char *b = post_start("slow", RECOVER_ID, STARTER_TP, &st);
  assert_int_equal(st, 201);
  free(b);
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_commands(t, RECOVER_ID, 0) < 1 && ts_now_ms() < until)
    e2e_pump(t, 50);
  assert_true(e2e_commands(t, RECOVER_ID, 0) >= 1);
  struct timespec killed;
  clock_gettime(CLOCK_REALTIME, &killed);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);
  hold_recover = 0;
  start_sagad();
  assert_true(admin_port > 0);
  wait_done(RECOVER_ID);
  assert_string_equal(e2e_status(t, RECOVER_ID), "completed");
  saga_and_step_in_starters_trace(RECOVER_ID, "step s2");
  /* the attempt in flight at the kill has its span too, from when the
   * killed sagad sent it (its deadline less the step's timeout) */
  saga_and_step_in_starters_trace(RECOVER_ID, "step s1");
  cJSON *s1 = span_named(RECOVER_ID, "step s1");
  assert_non_null(s1);
  double start_ns = strtod(str(s1, "startTimeUnixNano"), NULL);
  double killed_ns = (double)killed.tv_sec * 1e9 + (double)killed.tv_nsec;
  assert_true(start_ns > 0 && start_ns < killed_ns);
  cJSON_Delete(s1);
}

/* sagad listens on 127.0.0.1 with admin.allowed_hosts empty: a request
 * naming another host (a page whose name was pointed at 127.0.0.1, DNS
 * rebinding) is refused with 403 before any route runs, a start too; the
 * loopback names pass. */
static void test_the_loopback_endpoint_answers_loopback_names_only(void **s) {
  (void)s;
  int st = 0;
  char req[512];
  snprintf(req, sizeof req,
           "GET /sagas HTTP/1.1\r\nHost: evil.example:%d\r\n"
           "Connection: close\r\n\r\n",
           admin_port);
  char *r = http_roundtrip(admin_port, req, &st);
  assert_int_equal(st, 403);
  assert_non_null(strstr(r, "admin.allowed_hosts"));
  free(r);
  const char *body = "{\"amount\":1}";
  snprintf(req, sizeof req,
           "POST /sagas/fast?id=obs-rebound HTTP/1.1\r\nHost: evil.example\r\n"
           "Origin: http://evil.example\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
           strlen(body), body);
  r = http_roundtrip(admin_port, req, &st);
  assert_int_equal(st, 403);
  free(r);
  assert_string_equal(e2e_status(t, "obs-rebound"), "");
  snprintf(req, sizeof req,
           "GET /healthz HTTP/1.1\r\nHost: localhost:%d\r\n"
           "Connection: close\r\n\r\n",
           admin_port);
  r = http_roundtrip(admin_port, req, &st);
  assert_int_equal(st, 200);
  free(r);
}

/* The exporter's failures reach the log: a collector that is not there
 * is named with curl's reason once (not at every retry), so a wrong host
 * or a TLS problem does not pass in silence. */
static void test_a_failing_span_export_is_logged_once_with_its_reason(
    void **s) {
  (void)s;
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  char *log = ts_slurp(logpath);
  size_t before = log ? strlen(log) : 0;
  free(log);
  int port = http_free_port(); /* nothing listens there */
  char opt[64], want[128];
  snprintf(opt, sizeof opt, "--otlp.endpoint=127.0.0.1:%d", port);
  snprintf(want, sizeof want,
           "span export to http://127.0.0.1:%d/v1/traces failing: ", port);
  const char *extra[] = {opt, NULL};
  admin_port = e2e_sagad_start_admin(t, 0, extra, ts_timeout_ms(30000));
  assert_true(admin_port > 0);
  int st = 0;
  char *b = post_start("fast", "obs-nocollector", STARTER_TP, &st);
  assert_int_equal(st, 201);
  free(b);
  wait_done("obs-nocollector");
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  const char *at = NULL;
  while (ts_now_ms() < until) {
    log = ts_slurp(logpath);
    at = log && strlen(log) > before ? strstr(log + before, want) : NULL;
    if (at)
      break;
    free(log);
    log = NULL;
    e2e_pump(t, 200);
  }
  if (!at)
    fail_msg("no \"%s\" in the log", want);
  /* curl's reason is on the line: "Failed to connect to 127.0.0.1 port
   * N ...: Connection refused (retried)" */
  char line[512];
  snprintf(line, sizeof line, "%.*s", (int)strcspn(at, "\n"), at);
  if (!strstr(line, "onnect") || !strstr(line, "(retried)"))
    fail_msg("log line: %s", line);
  e2e_pump(t, 2000); /* retries go on; the line is not repeated */
  free(log);
  log = ts_slurp(logpath);
  at = strstr(log + before, want);
  assert_null(strstr(at + 1, want));
  free(log);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_readyz_answers_200_once_partitions_are_assigned),
      cmocka_unit_test(test_metrics_show_a_completed_saga_and_its_step_latency),
      cmocka_unit_test(test_get_saga_returns_its_history),
      cmocka_unit_test(test_post_starts_a_saga_that_completes_once),
      cmocka_unit_test(test_post_for_a_finished_saga_answers_that_it_exists),
      cmocka_unit_test(test_post_with_an_id_holding_a_slash_gets_400),
      cmocka_unit_test(test_spans_link_back_to_the_starters_traceparent),
      cmocka_unit_test(test_spans_wait_for_their_transition_to_be_committed),
      cmocka_unit_test(test_a_stuck_saga_is_listed_counted_and_logged_once),
      cmocka_unit_test(
          test_prometheus_scrapes_sagad_and_answers_a_saga_counter),
      cmocka_unit_test(
          test_an_unsampled_trace_stays_unsampled_and_exports_nothing),
      cmocka_unit_test(
          test_the_loopback_endpoint_answers_loopback_names_only),
      cmocka_unit_test(test_a_recovered_saga_continues_its_trace),
      cmocka_unit_test(
          test_a_failing_span_export_is_logged_once_with_its_reason),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
