/* sagad's observability glue: the engine's hooks (engine.h) turned into
 * metrics (metrics.h), spans (otlp.h) and stuck-saga reports, and the admin
 * endpoint (admin_http + admin_api + admin_pg + admin_ui) wired to the
 * engine: readiness, POST /sagas/{type} through the engine's broker, Kafka
 * consumer lag. Keeps engine.c down to small hook calls. Loop thread only;
 * logs through log.h like the rest of the daemon. */
#ifndef SAGAD_OBSERVE_H
#define SAGAD_OBSERVE_H

#include <uv.h>

#include "config.h"
#include "definition.h"
#include "engine.h"
#include "shell.h"

typedef struct sagad_observe sagad_observe_t;

typedef struct {
  uv_loop_t *loop;
  const sagad_config_t *cfg;        /* admin.listen, otlp.endpoint, ... */
  const saga_registry_t *registry;  /* borrowed, outlives the observer */
  sagad_engine_t *engine;           /* borrowed; hooks installed on it */
  sagad_broker_kafka_t *broker;     /* consumer lag and readiness */
  uint64_t scan_ms;                 /* stuck scan period (0 = 1000) */
} sagad_observe_opts_t;

/* Check admin.listen (an IPv4 or IPv6 address and a port 0..65535) and
 * the span exporter's settings -- otlp.endpoint (empty, host:port or an
 * http(s) URL) and the OTEL_* variables of the process environment
 * (otlp_resolve) -- as sagad_observe_start would take them; names are not
 * resolved. Returns 0 (a value taken other than as written, such as
 * OTEL_TRACES_EXPORTER=console, is logged as a warning), or -1 with
 * errbuf naming the property or variable and what is wrong. Reads only
 * the environment and the TLS files' access; any thread (sagad
 * --check-config, and a start before anything is connected). */
int sagad_observe_check(const sagad_config_t *cfg, char *errbuf,
                        size_t errlen);

/* Register the metrics, install the engine hooks, start the admin endpoint
 * on cfg->admin_listen (port 0: a free port, logged as "admin endpoint
 * listening on http://host:port") and, when otlp.endpoint or the OTEL_*
 * variables give an endpoint, the span exporter; arm the stuck scan. Returns 0,
 * or -1 with errbuf (bad address, port in use, out of memory); on -1 call
 * sagad_observe_close anyway. */
int sagad_observe_start(const sagad_observe_opts_t *opts,
                        sagad_observe_t **out, char *errbuf, size_t errlen);

/* The admin endpoint's port, or -1. */
int sagad_observe_admin_port(const sagad_observe_t *o);

/* Stop taking admin requests (the server closes, then the saga reader) and
 * stop the stuck scan; metrics and spans keep being recorded while the
 * engine drains. NULL-safe; a second call does nothing. */
void sagad_observe_stop(sagad_observe_t *o);

/* After the engine has drained (and before it is freed): uninstall the
 * hooks (leaving only the one that frees observer slots), stop the span
 * exporter, free everything once the server and exporter are closed, then
 * call cb(arg) (may be NULL) on the loop. Implies sagad_observe_stop.
 * NULL o calls cb at once. */
void sagad_observe_close(sagad_observe_t *o, void (*cb)(void *arg),
                         void *arg);

#endif
