/* Minimal HTTP/1.1 server on a libuv loop (admin_http.h). One connection
 * holds at most one request being answered: it stops reading while its
 * handler works, so a client can never make the server buffer more than
 * max_head + max_body bytes per connection. Pipelined bytes already read
 * wait in the buffer for the next turn. */
#include "admin_http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text.h"

/* A 400 with its cause, for the answer (req->why). */
#define BAD(req, text) ((req)->why = (text), -400)

/* ---- parsing -------------------------------------------------------- */

long admin_http_unescape(char *dst, const char *src, size_t n, bool plus) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    if (c == '%') {
      if (i + 2 >= n)
        return -1;
      int h = saga__hexval(src[i + 1]), l = saga__hexval(src[i + 2]);
      if (h < 0 || l < 0 || (h == 0 && l == 0))
        return -1;
      c = (char)(h * 16 + l);
      i += 2;
    } else if (plus && c == '+') {
      c = ' ';
    } else if (c == '\0') {
      return -1;
    }
    dst[o++] = c;
  }
  dst[o] = '\0';
  return (long)o;
}

static bool is_tchar(char c) {
  return isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Find "\r\n\r\n" in buf[0..len); return the head length including it, or
 * 0. */
static size_t head_end(const char *buf, size_t len) {
  for (size_t i = 3; i < len; i++)
    if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
        buf[i - 3] == '\r')
      return i + 1;
  return 0;
}

/* Whether buf[0..len) holds a NUL, a bare LF or a CR followed by anything
 * but LF (a CR as the last byte may still be followed by its LF). */
static bool bad_line_end(const char *buf, size_t len) {
  for (size_t i = 0; i < len; i++) {
    char c = buf[i];
    if (c == '\0' || (c == '\n' && (i == 0 || buf[i - 1] != '\r')) ||
        (c == '\r' && i + 1 < len && buf[i + 1] != '\n'))
      return true;
  }
  return false;
}

/* Room left in req's store from dec on. */
static size_t store_left(const admin_http_req_t *req, const char *dec) {
  return sizeof req->store_ - (size_t)(dec - req->store_);
}

/* Split the query string q (NUL-terminated, in store) into req->query,
 * decoding into *dec. A name and value decode to at most n + 2 bytes (two
 * NULs); the store holds that for any head up to the ceiling, and a
 * decode that would not fit is refused (431) rather than written. */
static int parse_query(admin_http_req_t *req, char *q, char **dec) {
  while (*q) {
    char *amp = strchr(q, '&');
    size_t n = amp ? (size_t)(amp - q) : strlen(q);
    if (n > 0) {
      if (req->nquery == ADMIN_HTTP_MAX_QUERY)
        return BAD(req, "more than 32 query parameters");
      if (n + 2 > store_left(req, *dec))
        return -431;
      char *eq = memchr(q, '=', n);
      size_t kn = eq ? (size_t)(eq - q) : n;
      admin_kv_t *kv = &req->query[req->nquery++];
      long k = admin_http_unescape(*dec, q, kn, true);
      if (k < 0)
        return BAD(req, "a query parameter's name has a bad %-escape "
                        "(%XX, two hex digits) or a %00");
      kv->name = *dec;
      *dec += k + 1;
      const char *v = eq ? eq + 1 : q + n;
      long vl = admin_http_unescape(*dec, v, (size_t)(q + n - v), true);
      if (vl < 0)
        return BAD(req, "a query parameter's value has a bad %-escape "
                        "(%XX, two hex digits; a % alone is %25) or a %00");
      kv->value = *dec;
      *dec += vl + 1;
    }
    if (!amp)
      break;
    q = amp + 1;
  }
  return 0;
}

static int parse_version(admin_http_req_t *req, const char *v) {
  if (strncmp(v, "HTTP/", 5) != 0 || !isdigit((unsigned char)v[5]) ||
      v[6] != '.' || !isdigit((unsigned char)v[7]) || v[8] != '\0')
    return BAD(req, "the request line does not end with HTTP/1.0 or "
                    "HTTP/1.1");
  if (v[5] != '1')
    return -505;
  req->minor = v[7] - '0';
  return 0;
}

/* Request line: METHOD SP target SP version. */
static int parse_request_line(admin_http_req_t *req, char *line,
                              char **dec) {
  char *sp1 = strchr(line, ' ');
  if (!sp1 || sp1 == line || sp1 - line > 16)
    return BAD(req, "the request line is not METHOD /target HTTP/1.1");
  *sp1 = '\0';
  for (char *p = line; *p; p++)
    if (!is_tchar(*p))
      return BAD(req, "the method holds a character a token may not");
  char *target = sp1 + 1;
  char *sp2 = strchr(target, ' ');
  if (!sp2 || target[0] != '/')
    return BAD(req, "the request line is not METHOD /target HTTP/1.1");
  *sp2 = '\0';
  int rc = parse_version(req, sp2 + 1);
  if (rc != 0)
    return rc;
  for (char *p = target; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      return BAD(req, "the target holds a space or a control character");
  char *hash = strchr(target, '#');
  if (hash)
    *hash = '\0';
  char *qm = strchr(target, '?');
  if (qm) {
    *qm = '\0';
    rc = parse_query(req, qm + 1, dec);
    if (rc != 0)
      return rc;
  }
  req->method = line;
  req->path = target;
  return 0;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = '\0';
  return s;
}

static int parse_header(admin_http_req_t *req, char *line) {
  char *colon = strchr(line, ':');
  if (!colon || colon == line)
    /* also obs-fold lines, which start with a space */
    return BAD(req, "a header line is not Name: value (a folded line is "
                    "not taken)");
  *colon = '\0';
  for (char *p = line; *p; p++)
    if (!is_tchar(*p))
      return BAD(req, "a header name holds a character a token may not");
  char *value = trim(colon + 1);
  for (char *p = value; *p; p++)
    if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
      return BAD(req, "a header value holds a control character");
  if (req->nheaders == ADMIN_HTTP_MAX_HEADERS)
    return -431;
  req->headers[req->nheaders].name = line;
  req->headers[req->nheaders].value = value;
  req->nheaders++;
  return 0;
}

/* Content-Length (one value, digits only), Transfer-Encoding (refused),
 * Connection and Expect. *clen = -1 when absent. */
static int read_framing(admin_http_req_t *req, long long *clen) {
  *clen = -1;
  bool close = false, keep = false;
  for (size_t i = 0; i < req->nheaders; i++) {
    const char *n = req->headers[i].name, *v = req->headers[i].value;
    if (strcasecmp(n, "content-length") == 0) {
      if (!*v || strlen(v) > 12)
        return strlen(v) > 12 ? -413
                              : BAD(req, "Content-Length is empty");
      long long x = 0;
      for (const char *p = v; *p; p++) {
        if (!isdigit((unsigned char)*p))
          return BAD(req, "Content-Length is not digits alone");
        x = x * 10 + (*p - '0');
      }
      if (*clen >= 0 && *clen != x)
        return BAD(req, "Content-Length given twice with different values");
      *clen = x;
    } else if (strcasecmp(n, "transfer-encoding") == 0) {
      return -501;
    } else if (strcasecmp(n, "connection") == 0) {
      if (strcasecmp(v, "close") == 0)
        close = true;
      else if (strcasecmp(v, "keep-alive") == 0)
        keep = true;
    } else if (strcasecmp(n, "expect") == 0) {
      if (strcasecmp(v, "100-continue") != 0)
        return BAD(req, "Expect other than 100-continue");
      req->expect_continue = true;
    }
  }
  req->keep_alive = !close && (req->minor == 1 || keep);
  return 0;
}

int admin_http_parse(admin_http_req_t *req, const char *buf, size_t len,
                     const admin_http_limits_t *limits) {
  size_t max_head = limits->max_head;
  if (max_head > ADMIN_HTTP_HEAD_CEILING)
    max_head = ADMIN_HTTP_HEAD_CEILING;
  void *conn = req->conn_;
  memset(req, 0, offsetof(admin_http_req_t, store_));
  req->conn_ = conn;
  size_t hl = head_end(buf, len < max_head ? len : max_head);
  if (hl == 0) {
    /* Not complete yet: a head already malformed is refused now rather
     * than after the read timeout (a client ending lines with a bare LF
     * would otherwise wait for a CRLF CRLF that never comes). */
    size_t seen = len < max_head ? len : max_head;
    if (bad_line_end(buf, seen))
      return BAD(req, "a line ends with a bare CR or LF (CRLF is "
                      "needed), or the head holds a NUL");
    return len >= max_head ? -431 : 0;
  }
  memcpy(req->store_, buf, hl);
  req->store_[hl] = '\0';
  char *dec = req->store_ + hl + 1;
  /* Lines end with CRLF; a bare CR or LF, or a NUL, is malformed. */
  if (bad_line_end(req->store_, hl))
    return BAD(req, "a line ends with a bare CR or LF (CRLF is needed), "
                    "or the head holds a NUL");
  char *line = req->store_;
  int rc = 0;
  bool first = true;
  while (rc == 0) {
    char *eol = strstr(line, "\r\n");
    *eol = '\0';
    if (!*line)
      break; /* the empty line that ends the head */
    rc = first ? parse_request_line(req, line, &dec) : parse_header(req, line);
    first = false;
    line = eol + 2;
  }
  if (rc == 0 && first)
    rc = BAD(req, "no request line");
  if (rc != 0)
    return rc;
  long long clen;
  rc = read_framing(req, &clen);
  if (rc != 0)
    return rc;
  if (clen > (long long)limits->max_body)
    return -413;
  req->head_len = hl;
  req->dec_ = (size_t)(dec - req->store_);
  size_t body = clen > 0 ? (size_t)clen : 0;
  if (len - hl < body)
    return 0;
  req->body = buf + hl;
  req->body_len = body;
  return (int)(hl + body);
}

const char *admin_http_header(const admin_http_req_t *req, const char *name) {
  for (size_t i = 0; i < req->nheaders; i++)
    if (strcasecmp(req->headers[i].name, name) == 0)
      return req->headers[i].value;
  return NULL;
}

static const char *kv_find(const admin_kv_t *kv, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i].name, name) == 0)
      return kv[i].value;
  return NULL;
}

const char *admin_http_query(const admin_http_req_t *req, const char *name) {
  return kv_find(req->query, req->nquery, name);
}

const char *admin_http_param(const admin_http_req_t *req, const char *name) {
  return kv_find(req->params, req->nparams, name);
}

const char *admin_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 302: return "Found";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Content Too Large";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Content";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

/* ---- server --------------------------------------------------------- */

typedef struct route {
  struct route *next;
  char *method;
  char *pattern;
  admin_http_handler_t fn;
  void *arg;
} route_t;

typedef struct conn conn_t;

struct admin_http {
  uv_loop_t *loop;
  uv_tcp_t listener;
  admin_http_opts_t opts;
  char *host;
  char *allowed_hosts; /* opts.allowed_hosts, copied; NULL = any */
  int port;
  bool listening, closing;
  route_t *routes;
  conn_t *conns;
  admin_http_stats_t stats;
  unsigned handles; /* listener + connections still to close */
  void (*close_cb)(void *arg);
  void *close_arg;
  struct {
    void (*fn)(void *);
    void *arg;
  } on_free[8];
  size_t non_free;
};

int admin_http_on_free(admin_http_t *s, void (*fn)(void *arg), void *arg) {
  if (!s || !fn || s->non_free == 8)
    return -1;
  s->on_free[s->non_free].fn = fn;
  s->on_free[s->non_free].arg = arg;
  s->non_free++;
  return 0;
}

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wr;
  uv_shutdown_t sd;
  admin_http_t *srv;
  conn_t *prev, *next;
  char *in;
  size_t in_len, in_cap;
  abuf_t out;
  admin_http_req_t *req;
  bool pending;      /* a handler holds req */
  bool writing;      /* out is being written */
  bool close_after;  /* close once out is written */
  bool closed;       /* uv_close called */
  bool lingering;    /* answered and shut for writing: input dropped */
  bool no_linger;    /* refused for want of room (503): closed at once */
  int nclosing;      /* handles whose close callback is outstanding */
  bool continued;    /* 100 Continue sent for the current request */
  size_t req_size;   /* bytes of c->in the request being answered takes */
  char saved;        /* the byte after it, replaced by the body's NUL */
};

void admin_http_opts_init(admin_http_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1";
  o->port = 0;
  o->limits.max_head = 8192;
  o->limits.max_body = 1u << 20;
  o->read_timeout_ms = 10000;
  o->max_connections = 64;
  o->keep_alive = true;
}

admin_http_t *admin_http_new(uv_loop_t *loop, const admin_http_opts_t *opts) {
  admin_http_opts_t d;
  admin_http_opts_init(&d);
  if (opts)
    d = *opts;
  if (!loop || d.limits.max_head < 256 ||
      d.limits.max_head > ADMIN_HTTP_HEAD_CEILING ||
      d.limits.max_body > (1u << 30) || d.max_connections == 0 ||
      d.port < 0 || d.port > 65535)
    return NULL;
  admin_http_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->host = strdup(d.host ? d.host : "127.0.0.1");
  if (!s->host) {
    free(s);
    return NULL;
  }
  if (d.allowed_hosts && !(s->allowed_hosts = strdup(d.allowed_hosts))) {
    free(s->host);
    free(s);
    return NULL;
  }
  s->loop = loop;
  s->opts = d;
  s->opts.host = s->host;
  s->opts.allowed_hosts = s->allowed_hosts;
  s->port = -1;
  return s;
}

static bool pattern_ok(const char *p) {
  if (p[0] != '/')
    return false;
  for (const char *seg = p + 1; *seg;) {
    const char *end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    /* a {name} of 1 to 64 characters: the request's store has room for
     * ADMIN_HTTP_MAX_PARAMS of them */
    if (n > 0 && seg[0] == '{' && (n < 3 || n > 66 || seg[n - 1] != '}'))
      return false;
    if (!end)
      break;
    seg = end + 1;
  }
  return true;
}

int admin_http_route(admin_http_t *s, const char *method, const char *pattern,
                     admin_http_handler_t fn, void *arg) {
  if (!s || !method || !pattern || !fn || !pattern_ok(pattern))
    return -1;
  route_t *r = calloc(1, sizeof *r);
  if (!r)
    return -1;
  r->method = strdup(method);
  r->pattern = strdup(pattern);
  if (!r->method || !r->pattern) {
    free(r->method);
    free(r->pattern);
    free(r);
    return -1;
  }
  r->fn = fn;
  r->arg = arg;
  route_t **tail = &s->routes;
  while (*tail)
    tail = &(*tail)->next;
  *tail = r;
  return 0;
}

/* Match path against pattern, filling req->params from {name} segments.
 * Returns 1 on a match, 0 otherwise, -1 for a malformed escape. */
static int match(const char *pattern, admin_http_req_t *req, char **dec) {
  const char *p = pattern, *u = req->path;
  req->nparams = 0;
  while (*p && *u) {
    if (*p != '/' || *u != '/')
      return 0;
    p++, u++;
    size_t pn = strcspn(p, "/"), un = strcspn(u, "/");
    if (pn > 0 && p[0] == '{') {
      if (un == 0 || req->nparams == ADMIN_HTTP_MAX_PARAMS)
        return 0;
      if ((pn - 1) + un + 1 > store_left(req, *dec))
        return -1; /* cannot happen with the store's size; never written */
      admin_kv_t *kv = &req->params[req->nparams++];
      kv->name = *dec;
      memcpy(*dec, p + 1, pn - 2);
      (*dec)[pn - 2] = '\0';
      *dec += pn - 1;
      long n = admin_http_unescape(*dec, u, un, false);
      if (n < 0)
        return -1;
      kv->value = *dec;
      *dec += n + 1;
    } else if (pn != un || memcmp(p, u, pn) != 0) {
      return 0;
    }
    p += pn, u += un;
  }
  return *p == '\0' && *u == '\0';
}

static void conn_close(conn_t *c);
static void conn_continue(conn_t *c);

static void send_response(conn_t *c, int status, const char *extra_headers,
                          const char *ctype, const char *body, size_t len,
                          bool keep, bool no_body);
static void respond(admin_http_req_t *req, int status, const char *headers,
                    const char *ctype, const char *body, size_t len);

static void linger(conn_t *c);

static void write_cb(uv_write_t *w, int status) {
  conn_t *c = w->data;
  c->writing = false;
  abuf_reset(&c->out);
  if (status < 0)
    c->srv->stats.dropped++; /* the client had gone: the answer is lost */
  if (status < 0 || c->srv->closing) {
    conn_close(c);
    return;
  }
  if (c->close_after) {
    if (c->no_linger) /* its slot is what the server is short of */
      conn_close(c);
    else
      linger(c);
    return;
  }
  conn_continue(c);
}

/* The answer: its head, and body[0..len) unless no_body (HEAD), whose
 * Content-Length still says len. */
static void send_response(conn_t *c, int status, const char *extra_headers,
                          const char *ctype, const char *body, size_t len,
                          bool keep, bool no_body) {
  abuf_t *o = &c->out;
  abuf_reset(o);
  abuf_printf(o, "HTTP/1.1 %d %s\r\n", status, admin_http_reason(status));
  if (ctype)
    abuf_printf(o, "Content-Type: %s\r\n", ctype);
  abuf_printf(o, "Content-Length: %zu\r\nCache-Control: no-store\r\n", len);
  abuf_printf(o, "Connection: %s\r\n%s\r\n", keep ? "keep-alive" : "close",
              extra_headers ? extra_headers : "");
  if (!no_body)
    abuf_add(o, body, len);
  c->close_after = !keep;
  if (o->failed || c->closed) {
    conn_close(c);
    return;
  }
  uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
  c->wr.data = c;
  c->writing = true;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
    c->writing = false;
    c->srv->stats.dropped++;
    conn_close(c);
  }
}

static void refuse(conn_t *c, int status) {
  const char *msg = status == 408   ? "request not complete in time"
                    : status == 413 ? "request body over the limit of"
                    : status == 431 ? "request head too large: at most"
                    : status == 501 ? "transfer encoding not supported"
                    : status == 505 ? "HTTP version not supported"
                    : status == 503 ? "too many connections"
                                    : "malformed request";
  /* a refused size names the limit, as the client needs it to fix the
   * request */
  const admin_http_limits_t *l = &c->srv->opts.limits;
  char body[256];
  /* a 400 says what was malformed, as the parser found it */
  const char *why = status == 400 && c->req && c->req->why ? c->req->why
                                                            : NULL;
  int n = why ? snprintf(body, sizeof body, "{\"error\":\"%s: %s\"}", msg, why)
          : status == 413
              ? snprintf(body, sizeof body, "{\"error\":\"%s %zu bytes\"}",
                         msg, l->max_body)
          : status == 431
              ? snprintf(body, sizeof body,
                         "{\"error\":\"%s %zu bytes and %d headers\"}", msg,
                         l->max_head, ADMIN_HTTP_MAX_HEADERS)
              : snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);
  c->srv->stats.errors++;
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_timer_stop(&c->timer);
  bool head = c->req && c->req->method && !strcmp(c->req->method, "HEAD");
  send_response(c, status, NULL, "application/json", body, (size_t)n, false,
                head);
}

/* Whether the Host header value h names a host in allowed (a
 * comma-separated list, case-insensitive) or a loopback one. */
static bool host_allowed(const char *h, const char *allowed) {
  /* the name without its port: "[::1]:8080", "localhost:8080" */
  size_t n = h[0] == '[' ? strcspn(h, "]") + (h[strcspn(h, "]")] ? 1 : 0)
                         : strcspn(h, ":");
  if (((n == 9 || (n == 10 && h[9] == '.')) &&
       !strncasecmp(h, "localhost", 9)) ||
      (n == 5 && !strncmp(h, "[::1]", 5)))
    return true;
  struct in_addr a;
  char ip[16];
  if (n < sizeof ip) {
    memcpy(ip, h, n);
    ip[n] = '\0';
    if (inet_pton(AF_INET, ip, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127)
      return true;
  }
  for (const char *p = allowed; *p;) {
    size_t k = strcspn(p, ",");
    const char *w = p;
    size_t wn = k;
    while (wn && *w == ' ')
      w++, wn--;
    while (wn && w[wn - 1] == ' ')
      wn--;
    if (wn == n && !strncasecmp(w, h, n))
      return true;
    p += k + (p[k] == ',');
  }
  return false;
}

static void dispatch(conn_t *c) {
  admin_http_t *s = c->srv;
  admin_http_req_t *req = c->req;
  const char *host = admin_http_header(req, "Host");
  const char *allowed = s->opts.allowed_hosts;
  if (host && allowed && strcmp(allowed, "*") != 0 &&
      !host_allowed(host, allowed)) {
    s->stats.requests++;
    c->pending = true;
    char msg[400];
    snprintf(msg, sizeof msg,
             "Host \"%.100s\" is not one this endpoint answers to (a web "
             "page could reach it through a name pointed at this address): "
             "use 127.0.0.1, [::1] or localhost, or add the name to "
             "admin.allowed_hosts",
             host);
    admin_http_respond_error(req, 403, msg);
    return;
  }
  /* Decoded params go after the head copy and the decoded query. */
  char *dec = req->store_ + req->dec_;
  char allow[256] = "";
  for (route_t *r = s->routes; r; r = r->next) {
    char *d = dec;
    int m = match(r->pattern, req, &d);
    if (m < 0) {
      req->why = "a path segment has a bad %-escape (%XX, two hex digits) "
                 "or a %00";
      refuse(c, 400);
      return;
    }
    if (!m)
      continue;
    bool head_of_get = !strcmp(req->method, "HEAD") &&
                       !strcmp(r->method, "GET");
    if (strcmp(r->method, req->method) == 0 || head_of_get) {
      s->stats.requests++;
      c->pending = true;
      r->fn(req, r->arg);
      return;
    }
    /* a GET route serves HEAD too: both named */
    const char *ms = !strcmp(r->method, "GET") ? "GET, HEAD" : r->method;
    if (strlen(allow) + strlen(ms) + 3 < sizeof allow) {
      if (*allow)
        strcat(allow, ", ");
      strcat(allow, ms);
    }
  }
  s->stats.requests++;
  c->pending = true;
  if (*allow) {
    char hdr[300];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    static const char body[] = "{\"error\":\"method not allowed\"}";
    respond(req, 405, hdr, "application/json", body, sizeof body - 1);
    return;
  }
  admin_http_respond_error(req, 404, "no such resource");
}

static void timeout_cb(uv_timer_t *t) {
  conn_t *c = t->data;
  c->srv->stats.timeouts++;
  if (c->in_len == 0) {
    conn_close(c); /* an idle keep-alive connection: just close */
    return;
  }
  refuse(c, 408);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  conn_t *c = h->data;
  const admin_http_limits_t *l = &c->srv->opts.limits;
  size_t limit = l->max_head + l->max_body;
  if (c->in_cap < limit && c->in_cap - c->in_len < 16384) {
    size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
    if (cap > limit)
      cap = limit;
    char *p = realloc(c->in, cap + 1); /* + 1: room for the body's NUL */
    if (p) {
      c->in = p;
      c->in_cap = cap;
    }
  }
  *buf = uv_buf_init(c->in ? c->in + c->in_len : NULL,
                     (unsigned)(c->in ? c->in_cap - c->in_len : 0));
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  conn_t *c = st->data;
  if (n < 0) {
    /* EOF, reset, or no buffer space (ENOBUFS): nothing more to answer. */
    conn_close(c);
    return;
  }
  if (c->lingering)
    return; /* after the last answer: dropped (c->in_len stays 0) */
  c->in_len += (size_t)n;
  conn_continue(c);
}

static void linger_timeout_cb(uv_timer_t *t) { conn_close(t->data); }

static void shutdown_cb(uv_shutdown_t *sd, int status) {
  conn_t *c = sd->data;
  if (status < 0 && status != UV_ECANCELED)
    conn_close(c); /* cancelled: closing already */
}

/* After the last answer: the connection is shut for writing (the client
 * reads the answer and an end), and what the client still sends -- the
 * rest of a body refused after its head, a pipelined request -- is read
 * and dropped until the client closes, for at most ADMIN_HTTP_LINGER_MS.
 * Closed with input unread, the kernel would answer the client's next
 * segments with a reset: its sends fail, and a reset that overtakes the
 * answer throws it away. */
static void linger(conn_t *c) {
  c->sd.data = c;
  if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
    conn_close(c);
    return;
  }
  c->lingering = true;
  c->in_len = 0;
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0 &&
      !uv_is_active((uv_handle_t *)&c->tcp)) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, linger_timeout_cb, ADMIN_HTTP_LINGER_MS, 0);
}

static void start_reading(conn_t *c) {
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0 &&
      !uv_is_active((uv_handle_t *)&c->tcp)) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, timeout_cb, c->srv->opts.read_timeout_ms, 0);
}

static void send_continue(conn_t *c) {
  static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  uv_buf_t b = uv_buf_init(cont, sizeof cont - 1);
  c->continued = true;
  /* Best effort: a client that does not see it sends the body anyway after
   * its own wait. */
  (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
}

/* Parse what is buffered: answer, refuse, or wait for more bytes. */
static void conn_continue(conn_t *c) {
  admin_http_t *s = c->srv;
  if (c->pending || c->writing || c->closed)
    return;
  int n = admin_http_parse(c->req, c->in, c->in_len, &s->opts.limits);
  if (n < 0) {
    refuse(c, -n);
    return;
  }
  if (n == 0) {
    if (c->req->head_len > 0 && c->req->expect_continue && !c->continued)
      send_continue(c);
    if (!uv_is_active((uv_handle_t *)&c->tcp))
      start_reading(c);
    return;
  }
  c->continued = false;
  c->req_size = (size_t)n;
  /* The body is NUL-terminated in place (c->in has a spare byte); the byte
   * after it may belong to the next pipelined request, so it is saved and
   * put back on answer. */
  c->saved = c->in[n];
  c->in[n] = '\0';
  uv_timer_stop(&c->timer);
  uv_read_stop((uv_stream_t *)&c->tcp);
  dispatch(c);
}

static void conn_free(conn_t *c) {
  admin_http_t *s = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->stats.open--;
  abuf_free(&c->out);
  free(c->in);
  free(c->req);
  free(c);
}

static void maybe_done(admin_http_t *s);

static void handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  admin_http_t *s = c->srv;
  if (--c->nclosing > 0)
    return;
  /* A handler still holding the request frees the connection when it
   * answers. */
  if (!c->pending)
    conn_free(c);
  maybe_done(s);
}

static void conn_close(conn_t *c) {
  if (c->closed)
    return;
  c->closed = true;
  c->nclosing = 2;
  uv_close((uv_handle_t *)&c->tcp, handle_closed);
  uv_close((uv_handle_t *)&c->timer, handle_closed);
}

static void on_connection(uv_stream_t *server, int status) {
  admin_http_t *s = server->data;
  if (status < 0 || s->closing)
    return;
  conn_t *c = calloc(1, sizeof *c);
  admin_http_req_t *req = c ? malloc(sizeof *req) : NULL;
  if (!c || !req) {
    /* Out of memory: libuv waits for an accept before taking the next
     * connection, so accept into a stack-free handle and drop it. */
    free(c);
    uv_tcp_t *t = malloc(sizeof *t);
    if (t && uv_tcp_init(s->loop, t) == 0) {
      (void)uv_accept(server, (uv_stream_t *)t);
      uv_close((uv_handle_t *)t, (uv_close_cb)free);
    } else {
      free(t);
    }
    return;
  }
  /* nothing parsed yet: a refusal before the first request (503) reads
   * its method and cause as none */
  memset(req, 0, offsetof(admin_http_req_t, store_));
  req->conn_ = c;
  c->req = req;
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->stats.open++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  s->stats.accepted++;
  if (s->stats.open > s->opts.max_connections) {
    s->stats.refused++;
    c->no_linger = true;
    refuse(c, 503);
    return;
  }
  start_reading(c);
}

int admin_http_start(admin_http_t *s, char *errbuf, size_t errlen) {
  struct sockaddr_storage addr;
  int rc = uv_ip4_addr(s->host, s->opts.port, (struct sockaddr_in *)&addr);
  if (rc != 0)
    rc = uv_ip6_addr(s->host, s->opts.port, (struct sockaddr_in6 *)&addr);
  if (rc != 0) {
    if (errbuf)
      snprintf(errbuf, errlen, "invalid admin listen address \"%s\"",
               s->host);
    return rc;
  }
  uv_tcp_init(s->loop, &s->listener);
  s->listener.data = s;
  s->handles = 1;
  s->listening = true;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
  if (rc != 0) {
    if (errbuf)
      snprintf(errbuf, errlen, "could not listen on %s:%d: %s", s->host,
               s->opts.port, uv_strerror(rc));
    return rc;
  }
  struct sockaddr_storage got;
  int len = sizeof got;
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
  s->port = got.ss_family == AF_INET6
                ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                : ntohs(((struct sockaddr_in *)&got)->sin_port);
  return 0;
}

int admin_http_port(const admin_http_t *s) { return s ? s->port : -1; }

static void server_free(admin_http_t *s) {
  void (*cb)(void *) = s->close_cb;
  void *arg = s->close_arg;
  for (route_t *r = s->routes, *n; r; r = n) {
    n = r->next;
    free(r->method);
    free(r->pattern);
    free(r);
  }
  free(s->host);
  free(s->allowed_hosts);
  if (cb)
    cb(arg);
  for (size_t i = 0; i < s->non_free; i++)
    s->on_free[i].fn(s->on_free[i].arg);
  free(s);
}

static void maybe_done(admin_http_t *s) {
  if (s->closing && s->handles == 0 && s->conns == NULL)
    server_free(s);
}

static void listener_closed(uv_handle_t *h) {
  admin_http_t *s = h->data;
  s->handles = 0;
  maybe_done(s);
}

void admin_http_close(admin_http_t *s, void (*close_cb)(void *arg),
                      void *arg) {
  if (!s || s->closing)
    return;
  s->closing = true;
  s->close_cb = close_cb;
  s->close_arg = arg;
  for (conn_t *c = s->conns; c; c = c->next)
    conn_close(c);
  if (s->listening)
    uv_close((uv_handle_t *)&s->listener, listener_closed);
  else
    maybe_done(s);
}

static void respond(admin_http_req_t *req, int status, const char *headers,
                    const char *content_type, const char *body, size_t len) {
  conn_t *c = req->conn_;
  if (!c->pending)
    return; /* answered twice: the contract forbids it; ignore */
  c->pending = false;
  if (c->closed) {
    /* The client went away (or the server closed) while the handler
     * worked: drop the answer, and finish freeing if the handles are
     * closed already. */
    c->srv->stats.dropped++;
    if (c->nclosing == 0) {
      admin_http_t *s = c->srv;
      conn_free(c);
      maybe_done(s);
    }
    return;
  }
  bool keep = req->keep_alive && c->srv->opts.keep_alive;
  if (status >= 400)
    c->srv->stats.errors++;
  /* The body may point into c->in: copy it out first, then drop the
   * answered request's bytes (pipelined ones move to the front). */
  /* HEAD: the GET's head, Content-Length included, and no body (a client
   * reads none: a body would be taken for the next answer's start) */
  bool head = req->method && !strcmp(req->method, "HEAD");
  send_response(c, status, headers, content_type, body ? body : "", len,
                keep, head);
  c->in[c->req_size] = c->saved;
  memmove(c->in, c->in + c->req_size, c->in_len - c->req_size);
  c->in_len -= c->req_size;
  c->req_size = 0;
}

void admin_http_respond(admin_http_req_t *req, int status,
                        const char *content_type, const char *body,
                        size_t len) {
  respond(req, status, NULL, content_type, body, len);
}

void admin_http_redirect(admin_http_req_t *req, const char *location) {
  char hdr[300];
  size_t n = strlen(location);
  bool ok = location[0] == '/' && n + 13 < sizeof hdr;
  for (size_t i = 0; ok && i < n; i++)
    ok = (unsigned char)location[i] > 0x20 && location[i] != 0x7f;
  if (!ok) {
    admin_http_respond_error(req, 500, "invalid redirect location");
    return;
  }
  snprintf(hdr, sizeof hdr, "Location: %s\r\n", location);
  respond(req, 302, hdr, NULL, "", 0);
}

void admin_http_respond_error(admin_http_req_t *req, int status,
                              const char *message) {
  abuf_t b = ABUF_INIT;
  /* the message may quote the request's bytes, cut anywhere: valid
   * UTF-8 in the JSON, whatever they were (a byte that breaks it: '?') */
  char text[1024];
  snprintf(text, sizeof text, "%s", message ? message : "");
  saga__text_clean(text);
  abuf_puts(&b, "{\"error\":\"");
  abuf_json_str(&b, text);
  abuf_puts(&b, "\"}");
  if (b.failed)
    admin_http_respond(req, 500, NULL, NULL, 0);
  else
    admin_http_respond(req, status, "application/json", b.data, b.len);
  abuf_free(&b);
}

void admin_http_stats(const admin_http_t *s, admin_http_stats_t *out) {
  *out = s->stats;
}
