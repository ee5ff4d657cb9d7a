/* An OTLP/HTTP trace exporter with JSON encoding on the caller's libuv
 * loop: spans are copied into a bounded queue (full: dropped and counted,
 * never waited for), sent in batches as POST to a collector's URL, a
 * failed batch (connection error, timeout, 429 or 5xx) retried with
 * exponential backoff while new spans queue behind it; any other answer
 * but a 2xx (a redirect too: none is followed) drops the batch. The HTTP
 * side is
 * libcurl's multi interface driven by the same loop (host names resolved
 * off the loop by curl's threaded resolver, IPv6, TLS, proxies from
 * http_proxy/https_proxy/no_proxy, HTTP/1.1 keep-alive). Never blocks the
 * loop, never logs (otlp_stats says why a request failed, for the
 * caller's log), starts no thread of its own; loop thread only.
 *
 * otlp_resolve turns sagad's settings and the standard OTEL_* environment
 * variables into the exporter's target (docs/tracing.md). */
#ifndef SAGAD_OTLP_H
#define SAGAD_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "ids.h"

typedef struct {
  const char *url;          /* where spans are POSTed, http:// or https://
                               (required; otlp_resolve builds it) */
  const char *headers;      /* extra request headers as in
                               OTEL_EXPORTER_OTLP_HEADERS (k=v,k2=v2, values
                               percent-decoded), or NULL */
  const char *ca_file;      /* PEM CA bundle for https, NULL = system's */
  const char *cert_file;    /* PEM client certificate (mutual TLS) */
  const char *key_file;     /* its PEM private key */
  const char *service_name; /* resource service.name (default "sagad") */
  const char *resource_attributes; /* more resource attributes, as in
                                      OTEL_RESOURCE_ATTRIBUTES, or NULL */
  size_t max_queue;                /* spans waiting (default 2048) */
  size_t max_batch;                /* spans per request (default 256) */
  uint64_t flush_ms;       /* longest wait before a partial batch (1000) */
  uint64_t timeout_ms;     /* one request, connect to answer (10000) */
  uint64_t backoff_min_ms; /* first retry delay (200) */
  uint64_t backoff_max_ms; /* largest retry delay (30000) */
} otlp_opts_t;

/* Defaults for every field (url NULL). */
void otlp_opts_init(otlp_opts_t *opts);

/* ---- settings: sagad's properties and the OTEL_* variables --------- */

/* sagad's own settings; NULL or "" = not set. */
typedef struct {
  const char *endpoint; /* otlp.endpoint: host:port or a base URL */
} otlp_settings_t;

/* The exporter's target, resolved. Strings owned (otlp_target_free). */
typedef struct {
  bool enabled; /* false: export nothing */
  char *url;    /* full URL, e.g. http://otel-collector:4318/v1/traces */
  const char *url_from; /* "otlp.endpoint" or the variable it came from */
  char *headers;        /* OTEL_EXPORTER_OTLP[_TRACES]_HEADERS or NULL */
  char *ca_file, *cert_file, *key_file; /* NULL = not set */
  char *service_name;        /* OTEL_SERVICE_NAME, else service.name of
                                OTEL_RESOURCE_ATTRIBUTES, else "sagad" */
  char *resource_attributes; /* OTEL_RESOURCE_ATTRIBUTES, or NULL */
  uint64_t timeout_ms; /* OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT, 0 = not set */
  char warning[320];   /* values taken other than as written, for the
                          log ("" = none): an OTEL_SDK_DISABLED that is
                          not true or false, exporters besides otlp */
} otlp_target_t;

/* A lookup of an environment variable: its value or NULL. */
typedef const char *(*otlp_env_fn)(const char *name, const void *arg);

/* Resolve the target from cfg and env (getenv-like; NULL = no variables).
 * sagad's setting wins over the environment, as explicit configuration
 * wins over OTEL_* in the OpenTelemetry SDKs; then
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the URL as given), then
 * OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: "v1/traces" appended to its
 * path). otlp.endpoint is a base URL too, or host:port meaning
 * http://host:port. OTEL_SDK_DISABLED=true (any case) or
 * OTEL_TRACES_EXPORTER naming none turn export off whatever the endpoint,
 * and then nothing else is judged (a bad value of another variable is no
 * error; out is left empty but for its warning); no endpoint at all: off.
 * As the spec says, any other OTEL_SDK_DISABLED is false, and
 * OTEL_TRACES_EXPORTER is a comma-separated list: otlp in it exports
 * (others ignored), a list of only exporters sagad lacks (console,
 * zipkin) exports nothing; out->warning says so, for the caller to log.
 * OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, else OTEL_EXPORTER_OTLP_TIMEOUT: the
 * longest wait for one export request, in milliseconds (an integer from 1
 * to 3600000; the spec's default, 10000, when neither is set).
 * Returns 0 (out filled; free it with otlp_target_free), or -1 with errbuf
 * naming the property or variable and what is wrong (out left empty).
 * Pure besides reading env and checking that the TLS files are readable;
 * any thread. */
int otlp_resolve(const otlp_settings_t *cfg, otlp_env_fn env,
                 const void *env_arg, otlp_target_t *out, char *errbuf,
                 size_t errlen);
void otlp_target_free(otlp_target_t *t); /* NULL-safe; zeroes *t */

/* Point opts' url, headers, TLS files and resource at t's (borrowed:
 * keep t until otlp_new, which copies what it keeps) and take its timeout
 * when set; other fields stay. */
void otlp_opts_from_target(otlp_opts_t *opts, const otlp_target_t *t);

/* ---- the exporter ---------------------------------------------------- */

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

/* New exporter on loop; NULL when out of memory, libcurl could not be set
 * up, or opts are invalid (no url, a url libcurl refuses or not http(s),
 * bad headers or resource attributes, max_queue or max_batch 0). */
otlp_t *otlp_new(uv_loop_t *loop, const otlp_opts_t *opts);

/* Queue a copy of span. Returns 0, or -1 when the queue is full (the span
 * is dropped and counted) or the exporter is closing. Never waits. */
int otlp_emit(otlp_t *x, const otlp_span_t *span);

typedef struct {
  uint64_t emitted, sent, dropped, rejected; /* spans; rejected = 4xx */
  uint64_t requests, retries;
  uint64_t failed;   /* requests that got no 2xx (retried or refused) */
  uint64_t failing;  /* of them, in a row since the last 2xx (0: the last
                        request succeeded, or none ended yet) */
  size_t queued;
  /* why the last failed request failed: curl's error ("Could not resolve
   * host: otel-collector", "SSL certificate problem: ...") or "HTTP 401
   * (refused, spans dropped)" / "HTTP 503 (retried)"; "" before any.
   * Points into the exporter: valid until its next request ends. */
  const char *last_error;
} otlp_stats_t;
/* The exporter's counters and its last failure. The exporter logs
 * nothing; the caller reads this to say so (sagad logs a failing export
 * once, then every 5 minutes while it fails, and when it works again). */
void otlp_stats(const otlp_t *x, otlp_stats_t *out);

/* Send what is queued (the batch in flight, a batch waiting for its
 * retry at once, then the rest), then otlp_close. Gives up and closes
 * when max_wait_ms pass or a request fails (no retry: the process is
 * stopping); what is left is counted dropped. close_cb(arg) as for
 * otlp_close. For a graceful stop: the last sagas' spans reach the
 * collector. NULL x is accepted (nothing is called). Loop thread. */
void otlp_flush_close(otlp_t *x, uint64_t max_wait_ms,
                      void (*close_cb)(void *arg), void *arg);

/* Stop: a request in flight is abandoned and spans still queued are
 * counted as dropped (call it after the last span had time to go: sagad
 * stops it last); close_cb(arg) (may be NULL) runs once every handle is
 * closed, and x is freed. NULL x is accepted. */
void otlp_close(otlp_t *x, void (*close_cb)(void *arg), void *arg);

#endif
