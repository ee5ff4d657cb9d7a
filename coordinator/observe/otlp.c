/* OTLP/HTTP JSON trace exporter (otlp.h). One request at a time: a batch
 * is taken from the queue, rendered once, and posted until the collector
 * takes it (2xx), refuses it for good (4xx but 429), or the exporter
 * closes; spans keep queueing behind it up to max_queue. */
#include "otlp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "abuf.h"
#include "text.h"

typedef struct {
  char trace_id[33], span_id[17], parent_id[17];
  char name[96], saga_id[256] /* ids up to 255 bytes */, saga_type[65],
      saga_step[65], saga_action[16];
  char status_message[128];
  bool has_id, has_type, has_step, has_action;
  int status;
  int64_t start_us, end_us;
} qspan_t;

typedef struct req {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  uv_buf_t buf;
  struct otlp *x;
  char head[16];
  size_t got;
  int handles; /* open handles of this request */
  bool done;
} req_t;

struct otlp {
  uv_loop_t *loop;
  otlp_opts_t opts;
  struct sockaddr_in addr;
  char *host, *path, *service;
  qspan_t *q; /* ring of max_queue */
  size_t qhead, qlen;
  char *batch; /* rendered request in flight or waiting for its retry */
  size_t batch_len, batch_spans;
  uint64_t backoff_ms;
  req_t *req;
  uv_timer_t flush, retry, deadline;
  int open_handles;
  bool closing;
  void (*close_cb)(void *);
  void *close_arg;
  otlp_stats_t stats;
};

void otlp_opts_init(otlp_opts_t *o) {
  *o = (otlp_opts_t){.port = 4318,
                     .path = "/v1/traces",
                     .service_name = "sagad",
                     .max_queue = 2048,
                     .max_batch = 256,
                     .flush_ms = 1000,
                     .timeout_ms = 10000,
                     .backoff_min_ms = 200,
                     .backoff_max_ms = 30000};
}

/* ---- ids -------------------------------------------------------------- */

/* n hex digits from s into out (lower case); -1 when not hex or all 0 */
static int hex_id(const char *s, size_t n, char *out) {
  bool nonzero = false;
  for (size_t i = 0; i < n; i++) {
    int v = saga__hexval(s[i]);
    if (v < 0)
      return -1;
    nonzero |= v != 0;
    out[i] = "0123456789abcdef"[v];
  }
  out[n] = '\0';
  return nonzero ? 0 : -1;
}

int otlp_traceparent_parse(const char *tp, char trace_id[33],
                           char span_id[17]) {
  if (!tp || strlen(tp) < 55 || saga__hexval(tp[0]) < 0 || saga__hexval(tp[1]) < 0 ||
      tp[2] != '-' || tp[35] != '-' || tp[52] != '-' ||
      !strncmp(tp, "ff", 2) || saga__hexval(tp[53]) < 0 || saga__hexval(tp[54]) < 0 ||
      (tp[55] != '\0' && tp[55] != '-'))
    return -1;
  char t[33], s[17];
  if (hex_id(tp + 3, 32, t) != 0 || hex_id(tp + 36, 16, s) != 0)
    return -1;
  memcpy(trace_id, t, 33);
  memcpy(span_id, s, 17);
  return 0;
}

void otlp_traceparent_format(const char *trace_id, const char *span_id,
                             char out[56]) {
  snprintf(out, 56, "00-%.32s-%.16s-01", trace_id, span_id);
}

static void random_hex(char *out, size_t n) {
  uint8_t b[16];
  do {
    if (getrandom(b, n / 2, 0) != (ssize_t)(n / 2))
      for (size_t i = 0; i < n / 2; i++) /* no entropy: still unique-ish */
        b[i] = (uint8_t)(rand() ^ (int)i);
    for (size_t i = 0; i < n / 2; i++)
      snprintf(out + 2 * i, 3, "%02x", b[i]);
  } while (strspn(out, "0") == n);
}

void otlp_new_span_id(char out[17]) { random_hex(out, 16); }
void otlp_new_trace_id(char out[33]) { random_hex(out, 32); }

/* ---- queue and rendering -------------------------------------------- */

static void attr(abuf_t *b, bool *first, const char *k, const char *v) {
  abuf_printf(b, "%s{\"key\":\"%s\",\"value\":{\"stringValue\":\"",
              *first ? "" : ",", k);
  abuf_json_str(b, v);
  abuf_puts(b, "\"}}");
  *first = false;
}

static void render_span(abuf_t *b, const qspan_t *s) {
  abuf_printf(b,
              "{\"traceId\":\"%s\",\"spanId\":\"%s\",\"parentSpanId\":\"%s\","
              "\"name\":\"",
              s->trace_id, s->span_id, s->parent_id);
  abuf_json_str(b, s->name);
  abuf_printf(b,
              "\",\"kind\":1,\"startTimeUnixNano\":\"%" PRId64
              "000\",\"endTimeUnixNano\":\"%" PRId64 "000\",\"attributes\":[",
              s->start_us, s->end_us);
  bool first = true;
  if (s->has_id)
    attr(b, &first, "saga.id", s->saga_id);
  if (s->has_type)
    attr(b, &first, "saga.type", s->saga_type);
  if (s->has_step)
    attr(b, &first, "saga.step", s->saga_step);
  if (s->has_action)
    attr(b, &first, "saga.action", s->saga_action);
  abuf_printf(b, "],\"status\":{\"code\":%d", s->status);
  if (s->status_message[0]) {
    abuf_puts(b, ",\"message\":\"");
    abuf_json_str(b, s->status_message);
    abuf_add(b, "\"", 1);
  }
  abuf_puts(b, "}}");
}

/* Take up to max_batch spans into x->batch as a whole HTTP request. */
static int take_batch(otlp_t *x) {
  size_t n = x->qlen < x->opts.max_batch ? x->qlen : x->opts.max_batch;
  abuf_t body = ABUF_INIT;
  abuf_puts(&body, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{"
                   "\"key\":\"service.name\",\"value\":{\"stringValue\":\"");
  abuf_json_str(&body, x->service);
  abuf_puts(&body, "\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"sagad\"},"
                   "\"spans\":[");
  for (size_t i = 0; i < n; i++) {
    if (i)
      abuf_add(&body, ",", 1);
    render_span(&body, &x->q[(x->qhead + i) % x->opts.max_queue]);
  }
  abuf_puts(&body, "]}]}]}");
  abuf_t req = ABUF_INIT;
  abuf_printf(&req,
              "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
              "application/json\r\nContent-Length: %zu\r\nConnection: "
              "close\r\n\r\n",
              x->path, x->host, x->opts.port, body.len);
  abuf_add(&req, abuf_cstr(&body), body.len);
  abuf_free(&body);
  if (req.failed) {
    abuf_free(&req);
    return -1;
  }
  x->batch = abuf_take(&req, &x->batch_len);
  if (!x->batch)
    return -1;
  x->batch_spans = n;
  x->qhead = (x->qhead + n) % x->opts.max_queue;
  x->qlen -= n;
  return 0;
}

/* ---- one request ---------------------------------------------------- */

static void pump(otlp_t *x);

/* One handle closed; the last one after otlp_close frees x. */
static void release(otlp_t *x) {
  if (--x->open_handles > 0 || !x->closing)
    return;
  void (*cb)(void *) = x->close_cb;
  void *arg = x->close_arg;
  free(x->q);
  free(x->batch);
  free(x->host);
  free(x->path);
  free(x->service);
  free(x);
  if (cb)
    cb(arg);
}

static void handle_closed(uv_handle_t *h) { release(h->data); }

static void req_closed(uv_handle_t *h) {
  req_t *r = h->data;
  otlp_t *x = r->x;
  free(r);
  release(x);
}

static void on_retry(uv_timer_t *t) { pump(t->data); }

/* The request ended: status = HTTP status, or 0 for a transport error. */
static void finish(req_t *r, int status) {
  otlp_t *x = r->x;
  if (r->done)
    return;
  r->done = true;
  x->req = NULL;
  uv_timer_stop(&x->deadline);
  uv_close((uv_handle_t *)&r->tcp, req_closed);
  if (x->closing)
    return;
  if (status >= 200 && status < 300) {
    x->stats.sent += x->batch_spans;
  } else if (status >= 400 && status < 500 && status != 429) {
    x->stats.rejected += x->batch_spans;
  } else {
    x->stats.retries++;
    x->backoff_ms = x->backoff_ms ? x->backoff_ms * 2 : x->opts.backoff_min_ms;
    if (x->backoff_ms > x->opts.backoff_max_ms)
      x->backoff_ms = x->opts.backoff_max_ms;
    uv_timer_start(&x->retry, on_retry, x->backoff_ms, 0);
    return;
  }
  free(x->batch);
  x->batch = NULL;
  x->backoff_ms = 0;
  pump(x);
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf) {
  (void)h;
  (void)want;
  static char sink[4096]; /* loop thread only; the status line is kept */
  *buf = uv_buf_init(sink, sizeof sink);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  req_t *r = s->data;
  if (n > 0) {
    for (ssize_t i = 0; i < n && r->got < sizeof r->head - 1; i++)
      r->head[r->got++] = buf->base[i];
    r->head[r->got] = '\0';
    return;
  }
  if (n == 0)
    return;
  /* EOF or error: the answer is whatever status line arrived */
  int status = 0;
  if (!strncmp(r->head, "HTTP/1.", 7) && r->got >= 12)
    status = atoi(r->head + 9);
  finish(r, status);
}

static void on_write(uv_write_t *w, int status) {
  req_t *r = w->data;
  if (status != 0)
    finish(r, 0);
}

static void on_connect(uv_connect_t *c, int status) {
  req_t *r = c->data;
  if (r->done)
    return;
  if (status != 0 ||
      uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read) != 0) {
    finish(r, 0);
    return;
  }
  r->buf = uv_buf_init(r->x->batch, (unsigned)r->x->batch_len);
  r->write.data = r;
  if (uv_write(&r->write, (uv_stream_t *)&r->tcp, &r->buf, 1, on_write) != 0)
    finish(r, 0);
}

static void on_deadline(uv_timer_t *t) {
  otlp_t *x = t->data;
  if (x->req)
    finish(x->req, 0);
}

static void start_request(otlp_t *x) {
  req_t *r = calloc(1, sizeof *r);
  if (!r || uv_tcp_init(x->loop, &r->tcp) != 0) {
    free(r);
    uv_timer_start(&x->retry, on_retry, x->opts.backoff_min_ms, 0);
    return;
  }
  x->open_handles++;
  r->x = x;
  r->tcp.data = r;
  r->connect.data = r;
  x->req = r;
  x->stats.requests++;
  uv_timer_start(&x->deadline, on_deadline, x->opts.timeout_ms, 0);
  if (uv_tcp_connect(&r->connect, &r->tcp, (struct sockaddr *)&x->addr,
                     on_connect) != 0)
    finish(r, 0);
}

/* Send the pending batch, or a new one when spans wait. */
static void pump(otlp_t *x) {
  if (x->closing || x->req || uv_is_active((uv_handle_t *)&x->retry))
    return;
  if (!x->batch && x->qlen > 0 && take_batch(x) != 0)
    return; /* out of memory: the flush timer tries again */
  if (x->batch)
    start_request(x);
}

static void on_flush(uv_timer_t *t) { pump(t->data); }

/* ---- public ---------------------------------------------------------- */

otlp_t *otlp_new(uv_loop_t *loop, const otlp_opts_t *opts) {
  if (!loop || !opts || !opts->host || !opts->max_queue || !opts->max_batch ||
      opts->port < 1 || opts->port > 65535)
    return NULL;
  otlp_t *x = calloc(1, sizeof *x);
  if (!x)
    return NULL;
  x->loop = loop;
  x->opts = *opts;
  x->host = strdup(opts->host);
  x->path = strdup(opts->path ? opts->path : "/v1/traces");
  x->service = strdup(opts->service_name ? opts->service_name : "sagad");
  x->q = calloc(opts->max_queue, sizeof *x->q);
  if (!x->host || !x->path || !x->service || !x->q ||
      uv_ip4_addr(opts->host, opts->port, &x->addr) != 0) {
    free(x->host);
    free(x->path);
    free(x->service);
    free(x->q);
    free(x);
    return NULL;
  }
  uv_timer_t *timers[3] = {&x->flush, &x->retry, &x->deadline};
  for (int i = 0; i < 3; i++) {
    uv_timer_init(loop, timers[i]);
    timers[i]->data = x;
    x->open_handles++;
  }
  uv_timer_start(&x->flush, on_flush, opts->flush_ms, opts->flush_ms);
  return x;
}

static void copy(char *dst, size_t n, const char *src, bool *has) {
  if (has)
    *has = src != NULL;
  snprintf(dst, n, "%s", src ? src : "");
}

int otlp_emit(otlp_t *x, const otlp_span_t *s) {
  if (x->closing || x->qlen == x->opts.max_queue) {
    x->stats.dropped++;
    return -1;
  }
  qspan_t *q = &x->q[(x->qhead + x->qlen) % x->opts.max_queue];
  copy(q->trace_id, sizeof q->trace_id, s->trace_id, NULL);
  copy(q->span_id, sizeof q->span_id, s->span_id, NULL);
  copy(q->parent_id, sizeof q->parent_id, s->parent_id, NULL);
  copy(q->name, sizeof q->name, s->name ? s->name : "span", NULL);
  copy(q->saga_id, sizeof q->saga_id, s->saga_id, &q->has_id);
  copy(q->saga_type, sizeof q->saga_type, s->saga_type, &q->has_type);
  copy(q->saga_step, sizeof q->saga_step, s->saga_step, &q->has_step);
  copy(q->saga_action, sizeof q->saga_action, s->saga_action, &q->has_action);
  copy(q->status_message, sizeof q->status_message, s->status_message, NULL);
  q->status = s->status;
  q->start_us = s->start_us;
  q->end_us = s->end_us;
  x->qlen++;
  x->stats.emitted++;
  if (x->qlen >= x->opts.max_batch)
    pump(x);
  return 0;
}

void otlp_stats(const otlp_t *x, otlp_stats_t *out) {
  *out = x->stats;
  out->queued = x->qlen;
}

void otlp_close(otlp_t *x, void (*close_cb)(void *arg), void *arg) {
  if (!x || x->closing)
    return;
  x->closing = true;
  x->close_cb = close_cb;
  x->close_arg = arg;
  x->stats.dropped += x->qlen + (x->batch ? x->batch_spans : 0);
  x->qlen = 0;
  if (x->req)
    finish(x->req, 0);
  uv_close((uv_handle_t *)&x->flush, handle_closed);
  uv_close((uv_handle_t *)&x->retry, handle_closed);
  uv_close((uv_handle_t *)&x->deadline, handle_closed);
}
