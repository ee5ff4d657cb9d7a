/* An OTLP/HTTP trace exporter with JSON encoding on the caller's libuv
 * loop: spans are copied into a bounded queue (full: dropped and counted),
 * sent in batches as POST <path> (default /v1/traces) to a collector, a
 * failed batch (connection error, timeout, 429 or 5xx) retried with
 * exponential backoff while new spans queue behind it. Never blocks the
 * loop, never logs; loop thread only. No TLS: talk to a local collector
 * (an OpenTelemetry Collector agent) over plain HTTP. */
#ifndef SAGAD_OTLP_H
#define SAGAD_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "ids.h"

typedef struct {
  const char *host;         /* IPv4 address of the collector (required) */
  int port;                 /* default 4318 */
  const char *path;         /* default "/v1/traces" */
  const char *service_name; /* resource service.name (default "sagad") */
  size_t max_queue;         /* spans waiting (default 2048) */
  size_t max_batch;         /* spans per request (default 256) */
  uint64_t flush_ms;        /* longest wait before a partial batch (1000) */
  uint64_t timeout_ms;      /* one request, connect to answer (10000) */
  uint64_t backoff_min_ms;  /* first retry delay (200) */
  uint64_t backoff_max_ms;  /* largest retry delay (30000) */
} otlp_opts_t;

/* Defaults for every field (host NULL). */
void otlp_opts_init(otlp_opts_t *opts);

enum { OTLP_STATUS_UNSET = 0, OTLP_STATUS_OK = 1, OTLP_STATUS_ERROR = 2 };

/* One finished span. Ids are lower-case hex; parent_id "" for a root.
 * Strings are copied (cut at their field sizes); NULL = attribute absent. */
typedef struct {
  char trace_id[SAGA_TRACE_ID_SIZE];
  char span_id[SAGA_SPAN_ID_SIZE];
  char parent_id[SAGA_SPAN_ID_SIZE];
  const char *name;
  int64_t start_us, end_us; /* microseconds since the Unix epoch */
  const char *saga_id, *saga_type, *saga_step, *saga_action;
  int status;                 /* OTLP_STATUS_* */
  const char *status_message; /* for ERROR, or NULL */
} otlp_span_t;

typedef struct otlp otlp_t;

/* New exporter on loop; NULL when out of memory or opts are invalid (no
 * host or not an IPv4 address, max_queue or max_batch 0). */
otlp_t *otlp_new(uv_loop_t *loop, const otlp_opts_t *opts);

/* Queue a copy of span. Returns 0, or -1 when the queue is full (the span
 * is dropped and counted) or the exporter is closing. */
int otlp_emit(otlp_t *x, const otlp_span_t *span);

typedef struct {
  uint64_t emitted, sent, dropped, rejected; /* spans; rejected = 4xx */
  uint64_t requests, retries;
  size_t queued;
} otlp_stats_t;
void otlp_stats(const otlp_t *x, otlp_stats_t *out);

/* Stop: a request in flight is abandoned and spans still queued are
 * counted as dropped (call it after the last span had time to go: sagad
 * stops it last); close_cb(arg) (may be NULL) runs once every handle is
 * closed, and x is freed. NULL x is accepted. */
void otlp_close(otlp_t *x, void (*close_cb)(void *arg), void *arg);

#endif
