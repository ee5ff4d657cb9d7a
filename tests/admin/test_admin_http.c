/* The admin HTTP server: parsing (including random and truncated input
 * that must never crash it), routing, keep-alive and pipelining, bounds
 * (431, 413, 408, connection limit) and handlers that answer later. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin_http.h"
#include "http_client.h"
#include "test_support.h"

static const admin_http_limits_t limits = {8192, 1024};

static int parse(admin_http_req_t *req, const char *s) {
  return admin_http_parse(req, s, strlen(s), &limits);
}

static void test_parser_reads_method_path_query_headers_and_body(
    void **state) {
  (void)state;
  admin_http_req_t *req = calloc(1, sizeof *req);
  const char *r = "POST /sagas/order?state=running&type=a%20b+c&flag "
                  "HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  "X-Trace:  v  \r\n\r\nhelloEXTRA";
  assert_int_equal(parse(req, r), (int)strlen(r) - 5);
  assert_string_equal(req->method, "POST");
  assert_string_equal(req->path, "/sagas/order");
  assert_string_equal(admin_http_query(req, "state"), "running");
  assert_string_equal(admin_http_query(req, "type"), "a b c");
  assert_string_equal(admin_http_query(req, "flag"), "");
  assert_null(admin_http_query(req, "nope"));
  assert_string_equal(admin_http_header(req, "x-trace"), "v");
  assert_int_equal(req->body_len, 5);
  assert_memory_equal(req->body, "hello", 5);
  assert_true(req->keep_alive);
  free(req);
}

static void test_parser_waits_for_the_rest_of_head_and_body(void **state) {
  (void)state;
  admin_http_req_t *req = calloc(1, sizeof *req);
  assert_int_equal(parse(req, "GET / HTTP/1.1\r\nHost: x\r\n"), 0);
  assert_int_equal(req->head_len, 0);
  assert_int_equal(
      parse(req, "POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
                 "Content-Length: 3\r\n\r\nab"),
      0);
  assert_true(req->head_len > 0);
  assert_true(req->expect_continue);
  free(req);
}

static void test_parser_refuses_bad_requests_with_their_status(void **state) {
  (void)state;
  admin_http_req_t *req = calloc(1, sizeof *req);
  assert_int_equal(parse(req, "GET /\r\n\r\n"), -400);
  assert_int_equal(parse(req, "GET x HTTP/1.1\r\n\r\n"), -400);
  assert_int_equal(parse(req, "G(T / HTTP/1.1\r\n\r\n"), -400);
  assert_int_equal(parse(req, "GET / HTTP/2.0\r\n\r\n"), -505);
  assert_int_equal(parse(req, "GET / HTTP/1.1\nHost: x\r\n\r\n"), -400);
  assert_int_equal(parse(req, "GET / HTTP/1.1\r\n folded\r\n\r\n"), -400);
  assert_int_equal(parse(req, "GET /?a=%zz HTTP/1.1\r\n\r\n"), -400);
  assert_int_equal(parse(req, "GET /?a=%00 HTTP/1.1\r\n\r\n"), -400);
  assert_int_equal(parse(req, "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"),
                   -400);
  assert_int_equal(parse(req, "GET / HTTP/1.1\r\nContent-Length: 1\r\n"
                              "Content-Length: 2\r\n\r\n"),
                   -400);
  assert_int_equal(parse(req, "GET / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n"),
                   -413);
  assert_int_equal(
      parse(req, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
      -501);
  assert_int_equal(parse(req, "\r\n\r\n"), -400);
  char *big = malloc(9000);
  memset(big, 'a', 8999);
  big[8999] = '\0';
  memcpy(big, "GET /", 5);
  assert_int_equal(parse(req, big), -431);
  free(big);
  char many[4096] = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < ADMIN_HTTP_MAX_HEADERS + 1; i++)
    strcat(many, "A: b\r\n");
  strcat(many, "\r\n");
  assert_int_equal(parse(req, many), -431);
  /* each 400 says its cause (req->why), for the answer: before, every
   * one was "malformed request" alone */
  static const struct {
    const char *head, *why;
  } causes[] = {
      {"GET /\r\n\r\n", "not METHOD /target HTTP/1.1"},
      {"GET / HTTP/9\r\n\r\n", "HTTP/1.0 or HTTP/1.1"},
      {"GET /?a=%zz HTTP/1.1\r\n\r\n", "query parameter's value"},
      {"GET /?a=100% HTTP/1.1\r\n\r\n", "a % alone is %25"},
      {"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
       "Content-Length is not digits alone"},
      {"GET / HTTP/1.1\r\nExpect: foo\r\n\r\n",
       "Expect other than 100-continue"},
      {"GET / HTTP/1.1\r\n folded\r\n\r\n", "Name: value"},
      {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", "control character"},
      {"GET / HTTP/1.1\nHost: x\r\n\r\n", "bare CR or LF"},
  };
  for (size_t i = 0; i < sizeof causes / sizeof *causes; i++) {
    assert_int_equal(parse(req, causes[i].head), -400);
    if (!req->why || !strstr(req->why, causes[i].why))
      fail_msg("%s: why \"%s\"", causes[i].head,
               req->why ? req->why : "(none)");
  }
  char q33[512] = "GET /?";
  for (int i = 0; i < 33; i++)
    strcat(q33, "a=1&");
  strcat(q33, " HTTP/1.1\r\n\r\n");
  assert_int_equal(parse(req, q33), -400);
  assert_non_null(strstr(req->why, "more than 32 query parameters"));
  free(req);
}

/* A head whose lines end with a bare LF never holds CRLF CRLF: it is
 * malformed as soon as the LF is seen, not complete-later. */
static void test_parser_refuses_bare_lf_before_the_head_ends(void **state) {
  (void)state;
  admin_http_req_t *req = calloc(1, sizeof *req);
  assert_int_equal(parse(req, "GET / HTTP/1.1\nHost: x\n\n"), -400);
  assert_int_equal(parse(req, "GET / HTTP/1.1\n"), -400);
  assert_int_equal(parse(req, "GET / HTTP/1.1\r\nHost: x\rY"), -400);
  /* A CR last may still get its LF. */
  assert_int_equal(parse(req, "GET / HTTP/1.1\r"), 0);
  assert_int_equal(parse(req, "GET / HTTP/1.1\r\nHost: x\r\n\r"), 0);
  free(req);
}

static void test_http_1_0_closes_unless_asked_to_keep_alive(void **state) {
  (void)state;
  admin_http_req_t *req = calloc(1, sizeof *req);
  assert_true(parse(req, "GET / HTTP/1.0\r\n\r\n") > 0);
  assert_false(req->keep_alive);
  assert_true(parse(req, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") >
              0);
  assert_true(req->keep_alive);
  assert_true(parse(req, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n") > 0);
  assert_false(req->keep_alive);
  free(req);
}

/* Random bytes, valid requests cut at every length, and valid requests
 * with one byte changed: the parser answers need-more, a size, or a
 * refusal, and never reads outside what it is given (ASan watches). */
static void test_parser_survives_random_and_truncated_input(void **state) {
  (void)state;
  admin_http_req_t *req = calloc(1, sizeof *req);
  const char *valid =
      "POST /sagas/x%2Fy?a=1&b=%41+c HTTP/1.1\r\nHost: h\r\n"
      "Content-Length: 4\r\nConnection: keep-alive\r\n\r\nbody";
  size_t vlen = strlen(valid);
  for (size_t cut = 0; cut < vlen; cut++) {
    char *copy = malloc(cut ? cut : 1); /* exact size: overreads trap */
    memcpy(copy, valid, cut);
    assert_int_equal(admin_http_parse(req, copy, cut, &limits), 0);
    free(copy);
  }
  srand(7);
  const char alphabet[] = "GET POST/ %?&=+:\r\n\t0123456789aZ{}HTTP/1.1\x80\x01";
  for (int round = 0; round < 20000; round++) {
    size_t n = (size_t)(rand() % 300) + 1;
    char *buf = malloc(n);
    if (round % 2) {
      for (size_t i = 0; i < n; i++)
        buf[i] = (char)(rand() % 256);
    } else if (round % 4 == 0) {
      for (size_t i = 0; i < n; i++)
        buf[i] = alphabet[rand() % (int)(sizeof alphabet - 1)];
    } else {
      n = vlen;
      free(buf);
      buf = malloc(n);
      memcpy(buf, valid, n);
      buf[rand() % (int)n] = (char)(rand() % 256);
    }
    int rc = admin_http_parse(req, buf, n, &limits);
    assert_true(rc == 0 || (rc > 0 && (size_t)rc <= n) || rc == -400 ||
                rc == -413 || rc == -431 || rc == -501 || rc == -505);
    if (rc > 0)
      assert_non_null(req->method);
    free(buf);
  }
  free(req);
}

/* ---- the server on a loop ------------------------------------------ */

typedef struct {
  admin_http_opts_t opts;
  admin_http_t *srv;
  int port;
  uv_timer_t later;
  admin_http_req_t *held;
  uv_sem_t held_sem; /* posted when /hold holds its request */
  admin_http_stats_t at_close;
  int closed;
} fixture_t;

static void h_echo_param(admin_http_req_t *req, void *arg) {
  (void)arg;
  char body[512];
  const char *q = admin_http_query(req, "x");
  int n = snprintf(body, sizeof body, "%s|%s", admin_http_param(req, "id"),
                   q ? q : "-");
  admin_http_respond(req, 200, "text/plain", body, (size_t)n);
}

static void h_echo_body(admin_http_req_t *req, void *arg) {
  (void)arg;
  assert_int_equal(req->body[req->body_len], '\0');
  admin_http_respond(req, 201, "application/json", req->body, req->body_len);
}

static void later_cb(uv_timer_t *t) {
  fixture_t *f = t->data;
  admin_http_req_t *req = f->held;
  f->held = NULL;
  admin_http_respond(req, 200, "text/plain", "later", 5);
}

static void h_redirect(admin_http_req_t *req, void *arg) {
  (void)arg;
  admin_http_redirect(req, admin_http_query(req, "to"));
}

static void h_later(admin_http_req_t *req, void *arg) {
  fixture_t *f = arg;
  f->held = req;
  uv_timer_start(&f->later, later_cb, 20, 0);
}

/* Hold the next request until /answer-held (no timer). */
static void h_hold(admin_http_req_t *req, void *arg) {
  fixture_t *f = arg;
  f->held = req;
  uv_sem_post(&f->held_sem);
}

/* Answer the held request (if any), then this one: 200 "held" or 409. */
static void h_answer_held(admin_http_req_t *req, void *arg) {
  fixture_t *f = arg;
  admin_http_req_t *held = f->held;
  f->held = NULL;
  if (held)
    admin_http_respond(held, 200, "text/plain", "late", 4);
  admin_http_respond(req, held ? 200 : 409, "text/plain", "held", 4);
}

static void setup_server(uv_loop_t *loop, void *arg) {
  fixture_t *f = arg;
  uv_timer_init(loop, &f->later);
  f->later.data = f;
  f->srv = admin_http_new(loop, &f->opts);
  assert_non_null(f->srv);
  assert_int_equal(admin_http_route(f->srv, "GET", "/sagas/{id}",
                                    h_echo_param, f),
                   0);
  assert_int_equal(admin_http_route(f->srv, "POST", "/echo", h_echo_body, f),
                   0);
  assert_int_equal(admin_http_route(f->srv, "GET", "/later", h_later, f), 0);
  assert_int_equal(admin_http_route(f->srv, "GET", "/hold", h_hold, f), 0);
  assert_int_equal(
      admin_http_route(f->srv, "GET", "/answer-held", h_answer_held, f), 0);
  assert_int_equal(admin_http_route(f->srv, "GET", "/", h_redirect, f), 0);
  assert_int_equal(admin_http_route(f->srv, "bad", "/{", h_later, f), -1);
  char err[128];
  assert_int_equal(admin_http_start(f->srv, err, sizeof err), 0);
  f->port = admin_http_port(f->srv);
}

static void server_closed(void *arg) { ((fixture_t *)arg)->closed = 1; }

static void teardown_server(void *arg) {
  fixture_t *f = arg;
  admin_http_stats(f->srv, &f->at_close);
  uv_close((uv_handle_t *)&f->later, NULL);
  if (f->held) /* a handler answers even when the server closes */
    later_cb(&f->later);
  admin_http_close(f->srv, server_closed, f);
}

static fixture_t *start(void (*tweak)(admin_http_opts_t *),
                        loop_thread_t **t) {
  fixture_t *f = calloc(1, sizeof *f);
  assert_int_equal(uv_sem_init(&f->held_sem, 0), 0);
  admin_http_opts_init(&f->opts);
  if (tweak)
    tweak(&f->opts);
  *t = loop_thread_start(setup_server, teardown_server, f);
  assert_true(f->port > 0);
  return f;
}

static void stop(fixture_t *f, loop_thread_t *t) {
  loop_thread_stop(t);
  assert_int_equal(f->closed, 1);
  uv_sem_destroy(&f->held_sem);
  free(f);
}

static void test_server_routes_and_decodes_path_parameters(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(NULL, &t);
  int st;
  char *r = http_roundtrip(f->port, "GET /sagas/a%2Fb?x=1 HTTP/1.1\r\n\r\n",
                           &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(r, "\r\n\r\na/b|1"));
  free(r);
  r = http_roundtrip(f->port, "GET /nowhere HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 404);
  free(r);
  r = http_roundtrip(f->port, "GET /sagas/ HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 404);
  free(r);
  r = http_roundtrip(f->port, "DELETE /echo HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 405);
  assert_non_null(strstr(r, "\r\nAllow: POST\r\n"));
  free(r);
  r = http_roundtrip(f->port, "GET /sagas/%zz HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 400);
  free(r);
  stop(f, t);
}

/* Everything the server sends until it closes (recv's timeout bounds a
 * wait), NUL-terminated. */
static char *read_all(int fd, size_t *n_out) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  ssize_t k;
  while (n + 1 < cap && (k = recv(fd, buf + n, cap - 1 - n, 0)) > 0)
    n += (size_t)k;
  buf[n] = '\0';
  *n_out = n;
  return buf;
}

/* HEAD is a GET without its body: the head (with the GET's
 * Content-Length) and nothing after it, so the next answer on the
 * connection starts right there; a HEAD on a route without GET gets 405,
 * again with no body, and GET routes name HEAD in Allow. Before, HEAD got
 * 405 with a body, which a client took for the next answer's start. */
static void test_head_answers_the_gets_head_without_a_body(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(NULL, &t);
  int fd = http_connect(f->port);
  const char *three = "HEAD /sagas/abc HTTP/1.1\r\n\r\n"
                      "HEAD /echo HTTP/1.1\r\n\r\n"
                      "GET /sagas/xyz HTTP/1.1\r\nConnection: close\r\n\r\n";
  http_send(fd, three, strlen(three));
  size_t n = 0;
  char *all = read_all(fd, &n);
  close(fd);
  /* first: 200, the GET's length (its body "abc|-" is 5 bytes), no body */
  assert_int_equal(strncmp(all, "HTTP/1.1 200 ", 13), 0);
  char *end1 = strstr(all, "\r\n\r\n");
  assert_non_null(end1);
  assert_non_null(strstr(all, "Content-Length: 5\r\n"));
  assert_true(strstr(all, "Content-Length: 5\r\n") < end1);
  /* second, right after: 405 naming POST, no body either */
  char *second = end1 + 4;
  assert_int_equal(strncmp(second, "HTTP/1.1 405 ", 13), 0);
  char *end2 = strstr(second, "\r\n\r\n");
  assert_non_null(end2);
  /* third, right after: the GET, with its body */
  char *third = end2 + 4;
  if (strncmp(third, "HTTP/1.1 200 ", 13) != 0)
    fail_msg("the answer after two HEADs: %s", third);
  assert_non_null(strstr(third, "\r\n\r\nxyz|-"));
  free(all);
  /* a GET route names HEAD in Allow */
  int st;
  char *r = http_roundtrip(f->port, "PUT /sagas/a HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 405);
  assert_non_null(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
  free(r);
  stop(f, t);
}

static void loopback_hosts(admin_http_opts_t *o) {
  o->allowed_hosts = "ops.example, Sagad.Internal, [fd00::1]";
}

/* With allowed_hosts set, a Host naming another name is refused (403,
 * naming it), whatever the route or method: a page whose name was
 * pointed at 127.0.0.1 (DNS rebinding) reads and posts nothing. The
 * loopback names, the listed ones (any case, any port) and a request
 * without Host pass. */
static void test_a_host_not_allowed_is_refused(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(loopback_hosts, &t);
  static const char *const ok[] = {"127.0.0.1:8080", "localhost",
                                   "LOCALHOST:1", "[::1]:8080", "127.1.2.3",
                                   "ops.example", "sagad.internal:8080",
                                   "[fd00::1]:8080", "localhost.:8080"};
  static const char *const refused[] = {"evil.example:8080", "localhost.evil",
                                        "127.0.0.1.evil", "ops.example.evil",
                                        "[::2]:8080", "10.0.0.1"};
  char req[256];
  int st;
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    snprintf(req, sizeof req, "GET /sagas/a HTTP/1.1\r\nHost: %s\r\n\r\n",
             ok[i]);
    char *r = http_roundtrip(f->port, req, &st);
    if (st != 200)
      fail_msg("Host %s: %d", ok[i], st);
    free(r);
  }
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
    snprintf(req, sizeof req,
             "POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 2\r\n"
             "\r\n{}",
             refused[i]);
    char *r = http_roundtrip(f->port, req, &st);
    if (st != 403 || !strstr(r, "admin.allowed_hosts"))
      fail_msg("Host %s: %d %s", refused[i], st, r ? r : "");
    free(r);
  }
  char *r = http_roundtrip(f->port, "GET /sagas/a HTTP/1.0\r\n\r\n", &st);
  assert_int_equal(st, 200);
  free(r);
  stop(f, t);
}

static void largest_head(admin_http_opts_t *o) {
  o->limits.max_head = ADMIN_HTTP_HEAD_CEILING;
}

/* A head at the ceiling whose query decodes to more bytes than it holds
 * (32 names without values: "a\0" and "\0" each) fits the request's
 * store: answered, never written past it (ASan watches). */
static void test_a_query_at_the_head_ceiling_fits_its_store(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(largest_head, &t);
  size_t cap = ADMIN_HTTP_HEAD_CEILING + 64;
  char *req = malloc(cap);
  assert_non_null(req);
  /* no header: the whole head is the query, so the decoded query plus
   * the route's {id} need 32781 bytes, past the 32770 the store held */
  const char *tail = " HTTP/1.1\r\n\r\n";
  size_t n = (size_t)snprintf(req, cap, "GET /sagas/q?");
  size_t fill = ADMIN_HTTP_HEAD_CEILING - strlen(tail) - n - 31 * 2;
  memset(req + n, 'a', fill);
  n += fill;
  for (int i = 0; i < 31; i++) {
    req[n++] = '&';
    req[n++] = 'a';
  }
  n += (size_t)snprintf(req + n, cap - n, "%s", tail);
  assert_int_equal(n, ADMIN_HTTP_HEAD_CEILING);
  int st;
  char *r = http_roundtrip(f->port, req, &st);
  assert_int_equal(st, 200);
  free(r);
  free(req);
  stop(f, t);
}

static void test_keep_alive_answers_pipelined_requests_in_order(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(NULL, &t);
  int fd = http_connect(f->port);
  const char *two = "POST /echo HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
                    "GET /later HTTP/1.1\r\n\r\n"
                    "GET /sagas/z HTTP/1.1\r\nConnection: close\r\n\r\n";
  http_send(fd, two, strlen(two));
  int st;
  char *r = http_read_response(fd, &st);
  assert_int_equal(st, 201);
  assert_non_null(strstr(r, "\r\n\r\n{\"a\":1}"));
  assert_non_null(strstr(r, "Connection: keep-alive"));
  free(r);
  r = http_read_response(fd, &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(r, "\r\n\r\nlater"));
  free(r);
  r = http_read_response(fd, &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(r, "Connection: close"));
  free(r);
  assert_true(http_peer_closed(fd));
  close(fd);
  stop(f, t);
}

static void small_limits(admin_http_opts_t *o) {
  o->limits.max_head = 512;
  o->limits.max_body = 64;
  o->read_timeout_ms = 50;
  o->max_connections = 2;
}

static void test_bounds_answer_431_413_and_408(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(small_limits, &t);
  int st;
  char head[700] = "GET /sagas/1 HTTP/1.1\r\nX: ";
  memset(head + strlen(head), 'a', 600);
  char *r = http_roundtrip(f->port, head, &st);
  assert_int_equal(st, 431);
  assert_non_null(strstr(r, "{\"error\":\"request head too large: at most "
                            "512 bytes and 64 headers\"}"));
  free(r);
  r = http_roundtrip(f->port,
                     "POST /echo HTTP/1.1\r\nContent-Length: 65\r\n\r\n", &st);
  assert_int_equal(st, 413);
  /* the limit named, for the client to fix its request */
  assert_non_null(strstr(r, "{\"error\":\"request body over the limit of 64 "
                            "bytes\"}"));
  free(r);
  /* Half a request, then silence: 408 once the read timeout passes. */
  r = http_roundtrip(f->port, "GET /sagas/1 HTTP/1.1\r\n", &st);
  assert_int_equal(st, 408);
  free(r);
  /* An idle connection is closed without an answer. */
  int fd = http_connect(f->port);
  assert_true(http_peer_closed(fd));
  close(fd);
  stop(f, t);
}

/* A client still sending a body the server refused can send it all and
 * then read the refusal and a clean end: the server stops writing, then
 * reads and drops what is still coming before it closes. Closed with that
 * body unread, its kernel answered the rest with a reset: the client's
 * sends failed (curl: "Send failure: Connection reset by peer", the 413
 * never shown) and, on a network that lost the 413's segment, the answer
 * was gone. */
static void test_a_refused_body_still_being_sent_reads_its_413(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(small_limits, &t);
  int fd = http_connect(f->port);
  static const char head[] =
      "POST /echo HTTP/1.1\r\nContent-Length: 4194304\r\n\r\n";
  http_send(fd, head, sizeof head - 1);
  /* the body as a client sends it, without waiting for an answer; the
   * server has answered after the head by the second chunk */
  static char chunk[65536];
  memset(chunk, 'b', sizeof chunk);
  size_t sent = 0;
  for (int i = 0; i < 64; i++) {
    ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
    if (n < 0)
      fail_msg("send of the body's chunk %d failed: %s", i, strerror(errno));
    sent += (size_t)n;
    if (i == 0)
      uv_sleep(100);
  }
  assert_int_equal(sent, 4194304);
  int st = 0;
  char *r = http_read_response(fd, &st);
  assert_non_null(r);
  assert_int_equal(st, 413);
  assert_non_null(strstr(r, "request body over the limit of 64 bytes"));
  free(r);
  char c;
  assert_int_equal(recv(fd, &c, 1, 0), 0); /* an end, not a reset */
  close(fd);
  stop(f, t);
}

static void test_connections_over_the_limit_get_503(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(small_limits, &t);
  int a = http_connect(f->port), b = http_connect(f->port);
  int c = http_connect(f->port);
  int st;
  char *r = http_read_response(c, &st);
  assert_int_equal(st, 503);
  free(r);
  close(a);
  close(b);
  close(c);
  stop(f, t);
}

static void test_garbage_gets_400_and_the_connection_closes(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(NULL, &t);
  int fd = http_connect(f->port);
  http_send(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15);
  int st;
  char *r = http_read_response(fd, &st);
  assert_int_equal(st, 400);
  /* the answer says what was malformed */
  assert_non_null(strstr(r, "malformed request: "));
  free(r);
  assert_true(http_peer_closed(fd));
  close(fd);
  stop(f, t);
}

/* Bare LF line ends answer 400 at once, not 408 after the read timeout
 * (the client's receive timeout is shorter than the server's 10 s). */
static void test_bare_lf_request_gets_400_at_once(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(NULL, &t);
  int st = 0;
  char *r = http_roundtrip(f->port, "GET /sagas/1 HTTP/1.1\nHost: x\n\n",
                           &st);
  assert_non_null(r);
  assert_int_equal(st, 400);
  free(r);
  stop(f, t);
}

static void test_redirect_answers_302_with_its_location(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(NULL, &t);
  int st = 0;
  char *r = http_roundtrip(f->port, "GET /?to=/ui HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 302);
  assert_non_null(strstr(r, "\r\nLocation: /ui\r\n"));
  free(r);
  r = http_roundtrip(f->port, "GET /?to=http://elsewhere HTTP/1.1\r\n\r\n",
                     &st);
  assert_int_equal(st, 500);
  free(r);
  stop(f, t);
}

static void test_client_gone_before_a_late_answer_is_harmless(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(NULL, &t);
  int fd = http_connect(f->port);
  http_send(fd, "GET /hold HTTP/1.1\r\n\r\n", 22);
  uv_sem_wait(&f->held_sem); /* the handler holds it */
  /* Gone for good: a reset, so the late answer cannot be written. */
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  close(fd);
  /* The held request is answered after the reset; the server drops it. A
   * second request proves the loop carries on. */
  int st;
  char *r = http_roundtrip(f->port, "GET /answer-held HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 200);
  free(r);
  r = http_roundtrip(f->port, "GET /sagas/2 HTTP/1.1\r\n\r\n", &st);
  assert_int_equal(st, 200);
  free(r);
  loop_thread_stop(t);
  assert_int_equal(f->at_close.dropped, 1); /* the dropped-answer path ran */
  assert_int_equal(f->closed, 1);
  uv_sem_destroy(&f->held_sem);
  free(f);
}

static void test_expect_continue_gets_100_then_the_answer(void **state) {
  (void)state;
  loop_thread_t *t;
  fixture_t *f = start(NULL, &t);
  int fd = http_connect(f->port);
  const char *h = "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
                  "Content-Length: 2\r\n\r\n";
  http_send(fd, h, strlen(h));
  int st;
  char *r = http_read_response(fd, &st);
  assert_int_equal(st, 100);
  free(r);
  http_send(fd, "{}", 2);
  r = http_read_response(fd, &st);
  assert_int_equal(st, 201);
  free(r);
  close(fd);
  stop(f, t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parser_reads_method_path_query_headers_and_body),
      cmocka_unit_test(test_parser_waits_for_the_rest_of_head_and_body),
      cmocka_unit_test(test_parser_refuses_bad_requests_with_their_status),
      cmocka_unit_test(test_parser_refuses_bare_lf_before_the_head_ends),
      cmocka_unit_test(test_http_1_0_closes_unless_asked_to_keep_alive),
      cmocka_unit_test(test_parser_survives_random_and_truncated_input),
      cmocka_unit_test(test_server_routes_and_decodes_path_parameters),
      cmocka_unit_test(test_head_answers_the_gets_head_without_a_body),
      cmocka_unit_test(test_a_query_at_the_head_ceiling_fits_its_store),
      cmocka_unit_test(test_a_host_not_allowed_is_refused),
      cmocka_unit_test(test_keep_alive_answers_pipelined_requests_in_order),
      cmocka_unit_test(test_bounds_answer_431_413_and_408),
      cmocka_unit_test(test_a_refused_body_still_being_sent_reads_its_413),
      cmocka_unit_test(test_connections_over_the_limit_get_503),
      cmocka_unit_test(test_garbage_gets_400_and_the_connection_closes),
      cmocka_unit_test(test_bare_lf_request_gets_400_at_once),
      cmocka_unit_test(test_redirect_answers_302_with_its_location),
      cmocka_unit_test(test_client_gone_before_a_late_answer_is_harmless),
      cmocka_unit_test(test_expect_continue_gets_100_then_the_answer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
