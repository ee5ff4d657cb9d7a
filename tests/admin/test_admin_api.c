/* The admin API handlers over a fake source: request validation, the
 * answers' shape, readiness, metrics and idempotent starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin_api.h"
#include "http_client.h"

typedef struct {
  admin_source_t src;
  admin_readiness_t ready;
  char started_id[64], started_type[64], started_input[256];
  char cancel_id[64], cancel_reason[256], cancel_who[64];
  int cancels;
  int ops;
  admin_op_t op;
  char op_id[64], op_reason[256], op_who[64];
  admin_list_query_t last_q;
  char last_after[IQ_CURSOR_SIZE];
  metrics_t *metrics;
  admin_http_t *srv;
  int port;
} fake_t;

static const admin_saga_row_t rows[] = {
    {"o-1", "order", 1, "completed", 3, 9, 1700000000000, 1700000001234, 0,
     NULL, false},
    {"o-2", "order", 1, "running", 0, 2, 1700000000000, 1700000000500,
     1700000060000, "pay\"ment", true},
};

static void get_saga(void *arg, const char *id, admin_reply_t *r) {
  (void)arg;
  for (size_t i = 0; i < 2; i++) {
    if (strcmp(rows[i].saga_id, id) != 0)
      continue;
    abuf_t b = ABUF_INIT;
    abuf_puts(&b, "{\"saga\":");
    admin_json_saga_row(&b, &rows[i]);
    abuf_puts(&b, ",\"history\":[]}");
    admin_reply(r, 200, b.data, b.len);
    abuf_free(&b);
    return;
  }
  admin_reply(r, 404, NULL, 0);
}

/* The fake pages by saga id; its tokens are index_query's, made from the
 * id (the API only checks that "after" is a token). */
static void list_sagas(void *arg, const admin_list_query_t *q,
                       admin_reply_t *r) {
  fake_t *f = arg;
  f->last_q = *q;
  snprintf(f->last_after, sizeof f->last_after, "%s", q->after ? q->after : "");
  iq_cursor_t after = {0};
  if (q->after)
    assert_int_equal(iq_cursor_decode(q->after, &after), 0);
  abuf_t b = ABUF_INIT;
  abuf_puts(&b, "{\"sagas\":[");
  size_t n = 0;
  const char *last = NULL;
  for (size_t i = 0; i < 2 && n < q->limit; i++) {
    if ((q->state && strcmp(q->state, rows[i].status) != 0) ||
        (q->after && strcmp(rows[i].saga_id, after.saga_id) <= 0) ||
        (q->stuck && !rows[i].stuck))
      continue;
    if (n++)
      abuf_add(&b, ",", 1);
    admin_json_saga_row(&b, &rows[i]);
    last = rows[i].saga_id;
  }
  char next[IQ_CURSOR_SIZE];
  if (n == q->limit && last &&
      iq_cursor_encode("1700000000000000", last, next, sizeof next) == 0)
    abuf_printf(&b, "],\"next\":\"%s\"}", next);
  else
    abuf_puts(&b, "],\"next\":null}");
  admin_reply(r, 200, b.data, b.len);
  abuf_free(&b);
}

static void start_saga(void *arg, const char *type, const char *id,
                       const char *input, size_t len, admin_reply_t *r) {
  fake_t *f = arg;
  bool again = strcmp(f->started_id, id) == 0;
  if (again && strcmp(f->started_type, type) != 0) {
    admin_reply(r, 409, NULL, 0);
    return;
  }
  snprintf(f->started_id, sizeof f->started_id, "%s", id);
  snprintf(f->started_type, sizeof f->started_type, "%s", type);
  snprintf(f->started_input, sizeof f->started_input, "%.*s", (int)len, input);
  char body[128];
  int n = snprintf(body, sizeof body, "{\"saga_id\":\"%s\",\"created\":%s}",
                   id, again ? "false" : "true");
  admin_reply(r, again ? 200 : 201, body, (size_t)n);
}

/* o-1 is finished: refused; any other id is sent. */
static void cancel_saga(void *arg, const char *id, const char *reason,
                        const char *who, admin_reply_t *r) {
  fake_t *f = arg;
  f->cancels++;
  snprintf(f->cancel_id, sizeof f->cancel_id, "%s", id);
  snprintf(f->cancel_reason, sizeof f->cancel_reason, "%s", reason);
  snprintf(f->cancel_who, sizeof f->cancel_who, "%s", who ? who : "(null)");
  if (!strcmp(id, "o-1")) {
    static const char no[] = "{\"error\":\"cancel refused: already "
                             "completed: nothing to cancel\"}";
    admin_reply(r, 409, no, sizeof no - 1);
    return;
  }
  char body[128];
  int n = snprintf(body, sizeof body, "{\"saga_id\":\"%s\",\"cancel\":"
                   "\"sent\"}", id);
  admin_reply(r, 202, body, (size_t)n);
}

/* o-1 is not parked: refused; any other id is sent. */
static void operate_saga(void *arg, admin_op_t op, const char *id,
                         const char *reason, const char *who,
                         admin_reply_t *r) {
  fake_t *f = arg;
  f->ops++;
  f->op = op;
  snprintf(f->op_id, sizeof f->op_id, "%s", id);
  snprintf(f->op_reason, sizeof f->op_reason, "%s", reason);
  snprintf(f->op_who, sizeof f->op_who, "%s", who ? who : "(null)");
  if (!strcmp(id, "o-1")) {
    static const char no[] = "{\"error\":\"retry refused: the saga is "
                             "completed, not parked in "
                             "compensation_failed\"}";
    admin_reply(r, 409, no, sizeof no - 1);
    return;
  }
  static const char sent[] = "{\"status\":\"sent\"}";
  admin_reply(r, 202, sent, sizeof sent - 1);
}

static void readiness(void *arg, admin_readiness_t *out) {
  *out = ((fake_t *)arg)->ready;
}

static void setup(uv_loop_t *loop, void *arg) {
  fake_t *f = arg;
  f->src = (admin_source_t){f,          get_saga,  list_sagas,
                            start_saga, readiness, cancel_saga,
                            operate_saga};
  f->metrics = metrics_new();
  metric_inc(metric_series(
      metrics_counter(f->metrics, "saga_started_total", "Sagas started.",
                      "saga_type"),
      "order"));
  f->srv = admin_http_new(loop, NULL);
  assert_int_equal(admin_api_register(f->srv, &f->src, f->metrics), 0);
  assert_int_equal(admin_http_start(f->srv, NULL, 0), 0);
  f->port = admin_http_port(f->srv);
}

static void teardown(void *arg) {
  fake_t *f = arg;
  admin_http_close(f->srv, NULL, NULL);
}

static fake_t *fake;
static loop_thread_t *loop;

static int group_setup(void **state) {
  (void)state;
  fake = calloc(1, sizeof *fake);
  loop = loop_thread_start(setup, teardown, fake);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  loop_thread_stop(loop);
  metrics_free(fake->metrics);
  free(fake);
  return 0;
}

/* Body of one exchange; status must equal want. Caller frees. */
static char *call(const char *request, int want) {
  int st;
  char *r = http_roundtrip(fake->port, request, &st);
  assert_non_null(r);
  if (st != want)
    fprintf(stderr, "unexpected answer:\n%s\n", r);
  assert_int_equal(st, want);
  char *body = strdup(strstr(r, "\r\n\r\n") + 4);
  free(r);
  return body;
}

static void test_metrics_endpoint_serves_prometheus_text(void **state) {
  (void)state;
  int st;
  char *r = http_roundtrip(fake->port, "GET /metrics HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 200);
  assert_non_null(
      strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  assert_non_null(strstr(r, "\r\n\r\n# HELP saga_started_total Sagas started."
                            "\n# TYPE saga_started_total counter\n"
                            "saga_started_total{saga_type=\"order\"} 1\n"));
  free(r);
}

static void test_healthz_is_ok_and_readyz_follows_the_source(void **state) {
  (void)state;
  free(call("GET /healthz HTTP/1.1\r\n\r\n", 200));
  fake->ready =
      (admin_readiness_t){true, true, false, "no partitions yet", false};
  char *b = call("GET /readyz HTTP/1.1\r\n\r\n", 503);
  assert_string_equal(b, "{\"ready\":false,\"store\":true,\"kafka\":true,"
                         "\"partitions\":false,\"detail\":\"no partitions "
                         "yet\"}");
  free(b);
  fake->ready = (admin_readiness_t){true, true, true, "", false};
  b = call("GET /readyz HTTP/1.1\r\n\r\n", 200);
  assert_string_equal(b, "{\"ready\":true,\"store\":true,\"kafka\":true,"
                         "\"partitions\":true,\"detail\":null}");
  free(b);
  /* A dead letter that cannot be written holds its offset: not ready. */
  fake->ready = (admin_readiness_t){true, true, true, "1 dead letter", true};
  b = call("GET /readyz HTTP/1.1\r\n\r\n", 503);
  assert_string_equal(b, "{\"ready\":false,\"store\":true,\"kafka\":true,"
                         "\"partitions\":true,\"detail\":\"1 dead letter\"}");
  free(b);
}

static void test_get_saga_answers_the_row_as_json_or_404(void **state) {
  (void)state;
  char *b = call("GET /sagas/o-2 HTTP/1.1\r\n\r\n", 200);
  assert_string_equal(
      b, "{\"saga\":{\"saga_id\":\"o-2\",\"saga_type\":\"order\","
         "\"definition_version\":1,\"status\":\"running\",\"partition\":0,"
         "\"version\":2,\"started_at\":\"2023-11-14T22:13:20.000Z\","
         "\"updated_at\":\"2023-11-14T22:13:20.500Z\","
         "\"next_deadline_at\":\"2023-11-14T22:14:20.000Z\","
         "\"current_step\":\"pay\\\"ment\",\"stuck\":true},\"history\":[]}");
  free(b);
  free(call("GET /sagas/nope HTTP/1.1\r\n\r\n", 404));
  /* One saga id ceiling everywhere, 255 bytes (issue 14 case 5: the
   * admin endpoint refused ids past 63 that the coordinator takes). */
  char longid[400] = "GET /sagas/";
  memset(longid + strlen(longid), 'x', 255);
  strcat(longid, " HTTP/1.1\r\n\r\n");
  free(call(longid, 404));
  snprintf(longid, sizeof longid, "GET /sagas/%0256d HTTP/1.1\r\n\r\n", 0);
  free(call(longid, 400));
  /* An id that is not UTF-8 is refused here: PostgreSQL refuses it as a
   * text parameter, which answered 503 instead. A UTF-8 one is looked up. */
  char *bad = call("GET /sagas/o-%FF HTTP/1.1\r\n\r\n", 400);
  assert_non_null(strstr(bad, "invalid saga id"));
  free(bad);
  free(call("GET /sagas/o-%C3 HTTP/1.1\r\n\r\n", 400));
  free(call("GET /sagas/o-%C3%A9 HTTP/1.1\r\n\r\n", 404));
  /* an id with a space, as the wire and the client library take it, is
   * looked up (it was refused as invalid: listed, never readable) */
  free(call("GET /sagas/order%2042 HTTP/1.1\r\n\r\n", 404));
}

static void test_list_validates_filters_and_pages_with_a_cursor(
    void **state) {
  (void)state;
  char *b = call("GET /sagas?limit=1 HTTP/1.1\r\n\r\n", 200);
  assert_non_null(strstr(b, "\"saga_id\":\"o-1\""));
  char token[IQ_CURSOR_SIZE], req[600];
  assert_int_equal(iq_cursor_encode("1700000000000000", "o-1", token,
                                    sizeof token),
                   0);
  snprintf(req, sizeof req, "\"next\":\"%s\"", token);
  assert_non_null(strstr(b, req));
  free(b);
  snprintf(req, sizeof req, "GET /sagas?limit=1&after=%s HTTP/1.1\r\n\r\n",
           token);
  b = call(req, 200);
  assert_non_null(strstr(b, "\"saga_id\":\"o-2\""));
  assert_string_equal(fake->last_after, token);
  free(b);
  b = call("GET /sagas?state=running&type=order&stuck=true HTTP/1.1\r\n\r\n",
           200);
  assert_true(fake->last_q.stuck);
  assert_int_equal(fake->last_q.limit, ADMIN_LIST_DEFAULT);
  assert_false(fake->last_q.oldest_first);
  assert_false(fake->last_q.since.set);
  assert_false(fake->last_q.until.set);
  assert_false(fake->last_q.counts);
  assert_null(strstr(b, "o-1"));
  free(b);
  free(call("GET /sagas?counts=true HTTP/1.1\r\n\r\n", 200));
  assert_true(fake->last_q.counts);
  free(call("GET /sagas?counts=0 HTTP/1.1\r\n\r\n", 200));
  assert_false(fake->last_q.counts);
  /* time bounds and the order reach the source as the module reads them */
  free(call("GET /sagas?since=1h&until=2025-01-31T12:00:00Z&order=oldest "
            "HTTP/1.1\r\n\r\n",
            200));
  assert_true(fake->last_q.since.set && fake->last_q.since.relative &&
              fake->last_q.since.ms == 3600000);
  assert_true(fake->last_q.until.set && !fake->last_q.until.relative &&
              fake->last_q.until.ms == 1738324800000);
  assert_true(fake->last_q.oldest_first);
  free(call("GET /sagas?state=sleeping HTTP/1.1\r\n\r\n", 400));
  free(call("GET /sagas?limit=0 HTTP/1.1\r\n\r\n", 400));
  free(call("GET /sagas?limit=1001 HTTP/1.1\r\n\r\n", 400));
  free(call("GET /sagas?limit=5x HTTP/1.1\r\n\r\n", 400));
  free(call("GET /sagas?stuck=maybe HTTP/1.1\r\n\r\n", 400));
  /* what is wrong, and which parameter */
  static const struct {
    const char *query, *says;
  } bad[] = {
      {"after=o-1", "after: not a token of this list"},
      {"since=soon", "since: \\\"soon\\\" is neither an RFC 3339 time"},
      {"until=90", "until: \\\"90\\\" is neither an RFC 3339 time"},
      {"order=sideways", "order must be newest or oldest"},
      {"state=stuck", "state must be one of running, compensating, "},
      {"counts=maybe", "counts must be true or false"},
      /* a misspelt or repeated filter is refused, never ignored (the list
       * would hold every saga as if none were asked) */
      {"status=compensation_failed", "unknown parameter \\\"status\\\""},
      {"limt=5", "unknown parameter \\\"limt\\\" (known: state, type"},
      {"state=running&state=completed", "parameter \\\"state\\\" given twice"},
      /* a filter given empty is refused too (state=$STATE with the
       * variable unset listed every saga) */
      {"state=", "parameter \\\"state\\\" is empty"},
      {"limit=&order=oldest", "parameter \\\"limit\\\" is empty"},
      {"after", "parameter \\\"after\\\" is empty"},
      /* digits alone: '+' decodes to a space, which strtol skipped */
      {"limit=+5", "limit must be between 1 and 1000"},
      {"limit=%2B5", "limit must be between 1 and 1000"},
      {"limit=-5", "limit must be between 1 and 1000"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(req, sizeof req, "GET /sagas?%s HTTP/1.1\r\n\r\n", bad[i].query);
    b = call(req, 400);
    if (!strstr(b, bad[i].says))
      fail_msg("%s: %s, want %s", bad[i].query, b, bad[i].says);
    free(b);
  }
}

static void test_start_is_idempotent_on_the_client_id(void **state) {
  (void)state;
  const char *req = "POST /sagas/order?id=o-9 HTTP/1.1\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: 13\r\n\r\n{\"amount\":10}";
  char *b = call(req, 201);
  assert_string_equal(b, "{\"saga_id\":\"o-9\",\"created\":true}");
  assert_string_equal(fake->started_input, "{\"amount\":10}");
  free(b);
  b = call(req, 200);
  assert_string_equal(b, "{\"saga_id\":\"o-9\",\"created\":false}");
  free(b);
  free(call("POST /sagas/refund HTTP/1.1\r\nIdempotency-Key: o-9\r\n"
            "Content-Length: 2\r\n\r\n{}",
            409));
  free(call("POST /sagas/order HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            400)); /* no id */
  free(call("POST /sagas/order?id=x HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
            "{nope",
            400));
  free(call("POST /sagas/order?id=x HTTP/1.1\r\nContent-Type: text/plain\r\n"
            "Content-Length: 2\r\n\r\n{}",
            415));
  /* the whole media type: not one that starts like it */
  free(call("POST /sagas/order?id=x HTTP/1.1\r\nContent-Type: "
            "application/jsonp\r\nContent-Length: 2\r\n\r\n{}",
            415));
  free(call("POST /sagas/order?id=o-10 HTTP/1.1\r\nContent-Type: "
            "Application/JSON; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}",
            201));
  /* what cJSON takes but JSON does not is refused, saying what and where
   * (they answered 201, the input passed on: 01 as 1, the raw bytes) */
  static const struct {
    const char *body, *says;
  } lax[] = {
      {"{\"n\":01}", "a number JSON does not allow at byte 5"},
      {"{\"n\":1.}", "a number JSON does not allow at byte 5"},
      {"{\"s\":\"a\x01" "b\"}", "a raw control character (a string escapes "
                            "it) at byte 7"},
      {"{\"s\":\"a\xff" "b\"}", "a byte that is not UTF-8 at byte 7"},
      /* cJSON skips any byte up to 0x20 between tokens */
      {"{\"a\":\x01 1}", "a raw control character (a string escapes it) "
                         "at byte 5"},
  };
  for (size_t i = 0; i < sizeof lax / sizeof lax[0]; i++) {
    char one[256];
    snprintf(one, sizeof one,
             "POST /sagas/order?id=lax-%zu HTTP/1.1\r\nContent-Length: %zu"
             "\r\n\r\n%s",
             i, strlen(lax[i].body), lax[i].body);
    char *got = call(one, 400);
    if (!strstr(got, lax[i].says))
      fail_msg("%s: %s", lax[i].body, got);
    free(got);
  }
  /* JSON's own forms pass: escapes, exponents, negative zero */
  free(call("POST /sagas/order?id=o-11 HTTP/1.1\r\nContent-Length: 37\r\n"
            "\r\n{\"a\":[-0,1e5,2.5E-3],\"s\":\"\\u0001\\\"x\"}",
            201));
}

/* An id the idempotency key cannot carry ('/' is its separator) is the
 * request's fault: 400 naming where the id came from, and the source is
 * never asked. */
static void test_start_refuses_an_id_with_a_slash_naming_the_field(
    void **state) {
  (void)state;
  fake->started_id[0] = '\0';
  char *b = call("POST /sagas/order?id=a%2Fb HTTP/1.1\r\n"
                 "Content-Length: 2\r\n\r\n{}",
                 400);
  assert_non_null(strstr(b, "query parameter id"));
  free(b);
  b = call("POST /sagas/order HTTP/1.1\r\nIdempotency-Key: a/b\r\n"
           "Content-Length: 2\r\n\r\n{}",
           400);
  assert_non_null(strstr(b, "header Idempotency-Key"));
  free(b);
  b = call("POST /sagas/order?id=a%20b HTTP/1.1\r\n"
           "Content-Length: 2\r\n\r\n{}",
           400);
  assert_non_null(strstr(b, "query parameter id"));
  free(b);
  assert_string_equal(fake->started_id, "");
}

/* POST /sagas/{id}/cancel with body (its length computed). */
static char *post_cancel(const char *id, const char *ctype, const char *body,
                         int want) {
  char req[512];
  snprintf(req, sizeof req,
           "POST /sagas/%s/cancel HTTP/1.1\r\n%s%s%sContent-Length: "
           "%zu\r\n\r\n%s",
           id, ctype ? "Content-Type: " : "", ctype ? ctype : "",
           ctype ? "\r\n" : "", strlen(body), body);
  return call(req, want);
}

/* POST /sagas/{id}/cancel: a JSON body with a reason (required) and an
 * operator (optional), checked before the source is asked. */
static void test_cancel_takes_a_reason_and_an_operator(void **state) {
  (void)state;
  char *b = post_cancel("o-2", "application/json",
                        "{\"reason\":\"customer called\",\"operator\":\"amy\"}",
                        202);
  assert_string_equal(b, "{\"saga_id\":\"o-2\",\"cancel\":\"sent\"}");
  free(b);
  assert_string_equal(fake->cancel_id, "o-2");
  assert_string_equal(fake->cancel_reason, "customer called");
  assert_string_equal(fake->cancel_who, "amy");
  free(post_cancel("o-2", NULL, "{\"reason\":\"x\"}", 202));
  assert_string_equal(fake->cancel_who, "(null)");
  b = post_cancel("o-1", NULL, "{\"reason\":\"x\"}", 409);
  assert_non_null(strstr(b, "already completed: nothing to cancel"));
  free(b);
  int asked = fake->cancels;
  b = post_cancel("o-2", NULL, "{}", 400);
  assert_non_null(strstr(b, "reason"));
  free(b);
  free(post_cancel("o-2", NULL, "", 400));
  free(post_cancel("o-2", NULL, "{nope", 400));
  free(post_cancel("o-2", NULL, "[1]", 400));
  free(post_cancel("o-2", NULL, "{\"reason\":7}", 400));
  free(post_cancel("o-2", NULL, "{\"reason\":\"x\",\"operator\":1}", 400));
  free(post_cancel("o-2", NULL, "{\"reason\":\"a\\u0001b\"}", 400));
  free(post_cancel("a%2Fb", NULL, "{\"reason\":\"x\"}", 400));
  free(post_cancel("o-2", "text/plain", "{\"reason\":\"x\"}", 415));
  assert_int_equal(fake->cancels, asked);
}

/* POST /sagas/order?id=ID with body (its length computed). */
static char *post_start(const char *id, const char *body, int want) {
  char req[512];
  snprintf(req, sizeof req,
           "POST /sagas/order?id=%s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s",
           id, strlen(body), body);
  return call(req, want);
}

/* A body is one JSON value the saga will see as sent: text after it, or a
 * \u0000 that the coordinator's JSON reader would cut a string at, is a
 * 400 naming the byte, and the source is never asked. */
static void test_start_takes_one_json_value_read_back_whole(void **state) {
  (void)state;
  fake->started_id[0] = '\0';
  char *b = post_start("t1", "{\"a\":1} trail", 400);
  assert_non_null(strstr(b, "text after the value, at byte 8"));
  free(b);
  b = post_start("t2", "{\"a\":\"x\\u0000\"}", 400);
  assert_non_null(strstr(b, "(NUL) in a string, at byte 7"));
  free(b);
  assert_string_equal(fake->started_id, "");
  /* an escaped backslash before u0000 is plain text, and white space may
   * follow the value */
  free(post_start("t3", "{\"a\":\"\\\\u0000\"}\n", 201));
  b = post_start("t-%E2%82", "{}", 400);
  assert_non_null(strstr(b, "printable bytes of UTF-8"));
  free(b);
  assert_string_equal(fake->started_id, "t3");
  b = post_cancel("o-2", NULL, "{\"reason\":\"x\"} {}", 400);
  assert_non_null(strstr(b, "text after the value"));
  free(b);
  b = post_cancel("o-2", NULL, "{\"reason\":\"x\\u0000\"}", 400);
  assert_non_null(strstr(b, "(NUL)"));
  free(b);
}

/* POST /sagas/{id}/<action> with extra header lines and body. */
static char *post_action(const char *id, const char *action,
                         const char *headers, const char *body, int want) {
  char req[768];
  snprintf(req, sizeof req,
           "POST /sagas/%s/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
           "Content-Length: %zu\r\n\r\n%s",
           id, action, fake->port, headers, strlen(body), body);
  return call(req, want);
}

/* POST /sagas/{id}/retry and /resolve: the body and checks of cancel's,
 * then the source with which action. */
static void test_retry_and_resolve_take_a_reason_as_cancel_does(
    void **state) {
  (void)state;
  static const struct {
    const char *path;
    admin_op_t op;
  } acts[] = {{"retry", ADMIN_OP_RETRY}, {"resolve", ADMIN_OP_RESOLVE}};
  const char *json = "Content-Type: application/json\r\n";
  for (size_t i = 0; i < 2; i++) {
    char *b = post_action("o-2", acts[i].path, json,
                          "{\"reason\":\"refund done\",\"operator\":\"amy\"}",
                          202);
    assert_string_equal(b, "{\"status\":\"sent\"}");
    free(b);
    assert_int_equal(fake->op, acts[i].op);
    assert_string_equal(fake->op_id, "o-2");
    assert_string_equal(fake->op_reason, "refund done");
    assert_string_equal(fake->op_who, "amy");
    free(post_action("o-2", acts[i].path, "", "{\"reason\":\"x\",\"operator\":"
                     "\"\"}", 202));
    assert_string_equal(fake->op_who, "(null)");
    b = post_action("o-1", acts[i].path, "", "{\"reason\":\"x\"}", 409);
    assert_non_null(strstr(b, "not parked in compensation_failed"));
    free(b);
    int asked = fake->ops;
    static const struct {
      const char *id, *headers, *body, *says;
      int status;
    } bad[] = {
        {"o-2", "", "{}", "\\\"reason\\\" is required", 400},
        {"o-2", "", "{\"reason\":\"\"}", "\\\"reason\\\" is required", 400},
        /* blanks alone are no reason; a name is one line (the wire
         * refused it only after the saga was looked up) */
        {"o-2", "", "{\"reason\":\" \\t \"}", "\\\"reason\\\" is required", 400},
        {"o-2", "", "{\"reason\":\"x\",\"operator\":\"a\\tb\"}",
         "\\\"operator\\\" must be one line", 400},
        {"o-2", "", "", "body must be a JSON object", 400},
        {"o-2", "", "{nope", "body must be a JSON object", 400},
        {"o-2", "", "[1]", "body must be a JSON object", 400},
        {"o-2", "", "{\"reason\":7}", "\\\"reason\\\" must be a string", 400},
        {"o-2", "", "{\"reason\":\"x\",\"operator\":1}",
         "\\\"operator\\\" must be a string", 400},
        {"o-2", "", "{\"reason\":\"a\\u0001b\"}", "without control", 400},
        {"a%2Fb", "", "{\"reason\":\"x\"}", "invalid saga id", 400},
        {"o-%FF", "", "{\"reason\":\"x\"}", "invalid saga id", 400},
        {"o-2", "Content-Type: text/plain\r\n", "{\"reason\":\"x\"}",
         "body must be application/json", 415},
        {"o-2", "Origin: http://evil.example\r\n", "{\"reason\":\"x\"}",
         "cross-origin request refused", 403},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
      b = post_action(bad[k].id, acts[i].path, bad[k].headers, bad[k].body,
                      bad[k].status);
      if (!strstr(b, bad[k].says))
        fail_msg("%s %s: %s, want %s", acts[i].path, bad[k].body, b,
                 bad[k].says);
      free(b);
    }
    assert_int_equal(fake->ops, asked);
  }
}

/* A page of another site cannot make the operator's browser act: a POST
 * whose Origin is not this server is refused before the source is asked;
 * the page's own (same origin) and clients without Origin go through. */
static void test_operator_actions_refuse_other_origins(void **state) {
  (void)state;
  char same[96];
  snprintf(same, sizeof same, "Origin: http://127.0.0.1:%d\r\n", fake->port);
  int cancels = fake->cancels, ops = fake->ops;
  static const char *const others[] = {
      "Origin: http://evil.example\r\n", "Origin: null\r\n",
      "Origin: https://127.0.0.1\r\n"};
  for (size_t i = 0; i < 3; i++) {
    free(post_action("o-2", "cancel", others[i], "{\"reason\":\"x\"}", 403));
    free(post_action("o-2", "retry", others[i], "{\"reason\":\"x\"}", 403));
    free(post_action("o-2", "resolve", others[i], "{\"reason\":\"x\"}", 403));
  }
  assert_int_equal(fake->cancels, cancels);
  assert_int_equal(fake->ops, ops);
  free(post_action("o-2", "cancel", same, "{\"reason\":\"x\"}", 202));
  free(post_action("o-2", "retry", same, "{\"reason\":\"x\"}", 202));
  assert_int_equal(fake->cancels, cancels + 1);
  assert_int_equal(fake->ops, ops + 1);
}

/* Starting a saga is an action too: a page on another site cannot start
 * one behind the operator's back (403, the source never asked), while a
 * page of this server, and a client with no Origin, can. */
static void test_start_refuses_other_origins(void **state) {
  (void)state;
  char req[512];
  static const char *const others[] = {"http://evil.example", "null",
                                       "https://127.0.0.1"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(req, sizeof req,
             "POST /sagas/order?id=x-%zu HTTP/1.1\r\nOrigin: %s\r\n"
             "Content-Type: application/json\r\n"
             "Content-Length: 12\r\n\r\n{\"amount\":7}",
             i, others[i]);
    free(call(req, 403));
    assert_string_not_equal(fake->started_input, "{\"amount\":7}");
  }
  snprintf(req, sizeof req,
           "POST /sagas/order?id=x-same HTTP/1.1\r\n"
           "Host: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n"
           "Content-Type: application/json\r\n"
           "Content-Length: 12\r\n\r\n{\"amount\":7}",
           fake->port, fake->port);
  free(call(req, 201));
  assert_string_equal(fake->started_input, "{\"amount\":7}");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_endpoint_serves_prometheus_text),
      cmocka_unit_test(test_healthz_is_ok_and_readyz_follows_the_source),
      cmocka_unit_test(test_get_saga_answers_the_row_as_json_or_404),
      cmocka_unit_test(test_list_validates_filters_and_pages_with_a_cursor),
      cmocka_unit_test(test_start_is_idempotent_on_the_client_id),
      cmocka_unit_test(
          test_start_refuses_an_id_with_a_slash_naming_the_field),
      cmocka_unit_test(test_cancel_takes_a_reason_and_an_operator),
      cmocka_unit_test(test_start_takes_one_json_value_read_back_whole),
      cmocka_unit_test(test_retry_and_resolve_take_a_reason_as_cancel_does),
      cmocka_unit_test(test_operator_actions_refuse_other_origins),
      cmocka_unit_test(test_start_refuses_other_origins),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
