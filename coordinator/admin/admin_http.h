/* A minimal HTTP/1.1 server for sagad's admin endpoint, on the caller's
 * libuv loop (uv_tcp_t): bounded requests (head, body, read time,
 * connections), routing by method and path with {name} segments, query
 * strings with percent-decoding, keep-alive, redirects, and 400/404/405/
 * 408/413/431/501/505 answered by the server itself. Handlers may answer
 * at once or later from another callback on the loop. It is not a general web server:
 * no TLS, no chunked request bodies, no HTTP/2; it binds 127.0.0.1 unless
 * told otherwise. Everything runs on the loop thread; the server never
 * logs, exits or starts threads. */
#ifndef SAGAD_ADMIN_HTTP_H
#define SAGAD_ADMIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "abuf.h"

#define ADMIN_HTTP_MAX_HEADERS 64 /* more: 431 */
#define ADMIN_HTTP_MAX_QUERY 32   /* more query parameters: 400 */
#define ADMIN_HTTP_MAX_PARAMS 8   /* {name} segments per route */
#define ADMIN_HTTP_HEAD_CEILING 16384 /* largest max_head accepted */
/* After an answer that closes the connection, what the client still
 * sends is read and dropped until it closes, for at most this long. */
#define ADMIN_HTTP_LINGER_MS 2000

typedef struct {
  const char *name;
  const char *value;
} admin_kv_t;

/* Bounds: a request whose line + headers exceed max_head gets 431, a body
 * over max_body 413, a connection that sends no complete request within
 * read_timeout_ms 408 (or a silent close when it sent nothing). */
typedef struct {
  size_t max_head;  /* bytes of request line + headers (default 8192) */
  size_t max_body;  /* bytes (default 1 MiB) */
} admin_http_limits_t;

/* One parsed request. Strings are NUL-terminated and live until the
 * handler responds (admin_http_respond). path is the raw path (still
 * percent-encoded, without the query); query and params are decoded. */
typedef struct admin_http_req {
  const char *method;
  const char *path;
  admin_kv_t headers[ADMIN_HTTP_MAX_HEADERS];
  size_t nheaders;
  admin_kv_t query[ADMIN_HTTP_MAX_QUERY];
  size_t nquery;
  admin_kv_t params[ADMIN_HTTP_MAX_PARAMS]; /* filled by routing */
  size_t nparams;
  const char *body; /* body_len bytes (NUL-terminated in handlers) */
  size_t body_len;
  int minor;             /* HTTP/1.<minor> */
  bool keep_alive;       /* the client allows another request after this */
  bool expect_continue;  /* "Expect: 100-continue" */
  size_t head_len;       /* bytes of request line + headers */
  const char *why;       /* a refusal's cause (-400), said to the client:
                            "a header value holds a control character";
                            NULL when none is known */
  /* private: the copied head (up to the ceiling and its NUL), then the
   * decoded query (at most its bytes + 2 per parameter) and route
   * parameters (at most the path's bytes + a name and NUL per parameter) */
  char store_[2 * ADMIN_HTTP_HEAD_CEILING + 2 + 2 * ADMIN_HTTP_MAX_QUERY +
              ADMIN_HTTP_MAX_PARAMS * 66];
  size_t dec_;                                  /* private: store_ used */
  void *conn_;                                  /* private */
} admin_http_req_t;

/* Parse one request from buf[0..len) (not modified; req copies the head
 * and points body into buf). Returns the bytes the request takes (> 0)
 * when complete, 0 when more bytes are needed (req->head_len > 0 once the
 * head is complete and only body bytes are missing, with expect_continue
 * set from the head), or -status (-400, -413, -431, -501, -505) for a
 * request to refuse. Pure; used by the server and by tests. */
int admin_http_parse(admin_http_req_t *req, const char *buf, size_t len,
                     const admin_http_limits_t *limits);

/* Decode %XX (and '+' as a space when plus is true) from src[0..n) into
 * dst (at least n + 1 bytes), NUL-terminated. Returns the decoded length,
 * or -1 for a malformed escape or a decoded NUL byte. */
long admin_http_unescape(char *dst, const char *src, size_t n, bool plus);

/* A header's value by case-insensitive name, the query parameter's decoded
 * value, a {name} route parameter; NULL when absent. */
const char *admin_http_header(const admin_http_req_t *req, const char *name);
const char *admin_http_query(const admin_http_req_t *req, const char *name);
const char *admin_http_param(const admin_http_req_t *req, const char *name);

/* Reason phrase of a status code ("OK", "Not Found"; "Unknown"). */
const char *admin_http_reason(int status);

typedef struct admin_http admin_http_t;

typedef struct {
  const char *host;          /* default "127.0.0.1" */
  int port;                  /* default 0: any free port (admin_http_port) */
  admin_http_limits_t limits;
  uint64_t read_timeout_ms;  /* default 10000 */
  unsigned max_connections;  /* default 64; more are answered 503 */
  bool keep_alive;           /* default true */
  /* Host header names answered, comma-separated, case-insensitive,
   * without ports; the loopback names (localhost, 127.0.0.0/8, [::1])
   * always pass, and a request without Host too. NULL or "*" (default
   * NULL): any. Others get 403. */
  const char *allowed_hosts;
} admin_http_opts_t;

/* Defaults for every field. */
void admin_http_opts_init(admin_http_opts_t *opts);

/* A handler: answer with admin_http_respond exactly once, now or later
 * from another loop callback (the request stays valid until then, even if
 * the client has gone; the answer is then dropped). The connection reads
 * nothing more until it is answered. */
typedef void (*admin_http_handler_t)(admin_http_req_t *req, void *arg);

/* New server on loop, not listening yet; opts may be NULL (defaults; host
 * is copied). NULL when out of memory or opts are out of bounds
 * (max_head 256..ADMIN_HTTP_HEAD_CEILING, max_body <= 1 GiB). */
admin_http_t *admin_http_new(uv_loop_t *loop, const admin_http_opts_t *opts);

/* Route method + pattern to fn. pattern is "/a/b" or "/sagas/{id}": a
 * {name} segment (a name of 1 to 64 characters) matches one non-empty
 * segment, percent-decoded into req->params. Routes are tried in the
 * order added; a GET route serves HEAD too (its head, no body); a path
 * that matches a route with another method gets 405 with an Allow header,
 * no match 404. Returns 0, or -1 when the pattern is malformed or out of
 * memory. */
int admin_http_route(admin_http_t *s, const char *method, const char *pattern,
                     admin_http_handler_t fn, void *arg);

/* Call fn(arg) when s is freed (after the close callback): releases what
 * routes' args hold. At most 8 per server. Returns 0 or -1 when full. */
int admin_http_on_free(admin_http_t *s, void (*fn)(void *arg), void *arg);

/* Bind and listen. Returns 0 or a negative libuv error (e.g. UV_EADDRINUSE)
 * with a message in errbuf (may be NULL). */
int admin_http_start(admin_http_t *s, char *errbuf, size_t errlen);

/* The port listened on (after admin_http_start), or -1. */
int admin_http_port(const admin_http_t *s);

/* Stop listening and close every connection; close_cb (may be NULL) is
 * called once everything is closed and every pending request answered,
 * then s is freed. Requests still waiting for their handler keep the
 * server alive until answered. NULL s is accepted. */
void admin_http_close(admin_http_t *s, void (*close_cb)(void *arg),
                      void *arg);

/* Answer req: status, content type (NULL = none) and body (copied). After
 * the call req is invalid. */
void admin_http_respond(admin_http_req_t *req, int status,
                        const char *content_type, const char *body,
                        size_t len);

/* Answer 302 Found with "Location: location" and no body; location is a
 * path on this server ("/ui"), printable ASCII without spaces, at most
 * 280 bytes (else the answer is 500). After the call req is invalid. */
void admin_http_redirect(admin_http_req_t *req, const char *location);

/* Answer with {"error": message} as application/json. */
void admin_http_respond_error(admin_http_req_t *req, int status,
                              const char *message);

/* Counters for tests and metrics. dropped: answers that never reached
 * their client, because it had gone (the write failed) or the connection
 * was closed while a handler held the request. */
typedef struct {
  uint64_t accepted, refused, requests, errors, timeouts, dropped;
  unsigned open;
} admin_http_stats_t;
void admin_http_stats(const admin_http_t *s, admin_http_stats_t *out);

#endif
