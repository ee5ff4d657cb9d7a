/* sagad metrics: a small registry of counters, gauges and fixed-bucket
 * histograms with labels, rendered in the Prometheus text exposition format
 * 0.0.4. Single-threaded: every call on the loop thread. Registration
 * (families and label series) allocates; updating a series handle
 * (metric_inc, metric_set, metric_observe, ...) never allocates, locks or
 * fails. The registry knows nothing about sagas: the engine registers what
 * it counts (docs/metrics.md lists sagad's families). */
#ifndef SAGAD_METRICS_H
#define SAGAD_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics_t;             /* the registry */
typedef struct metric_family metric_family_t; /* one name, HELP and TYPE */
typedef struct metric metric_t;               /* one label set's series */

typedef enum {
  METRIC_COUNTER = 0,
  METRIC_GAUGE = 1,
  METRIC_HISTOGRAM = 2,
} metric_kind_t;

/* Most labels per family, most buckets per histogram (+Inf not counted),
 * longest metric or label name. */
#define METRICS_MAX_LABELS 8
#define METRICS_MAX_BUCKETS 32
#define METRICS_MAX_NAME 128

/* Bucket bounds in seconds for latencies, from 1 ms to 60 s. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

/* New empty registry, or NULL when out of memory. Free with metrics_free. */
metrics_t *metrics_new(void);

/* Free the registry with every family and series; every handle it gave out
 * becomes invalid. NULL is accepted. */
void metrics_free(metrics_t *m);

/* Register a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be new in
 * m; help is any text (copied); labels is a comma-separated list of label
 * names ("saga_type,outcome"), or NULL / "" for none: each [a-zA-Z_][a-zA-Z0-9_]*,
 * not starting with "__", at most METRICS_MAX_LABELS, and never "le" for a
 * histogram. Histogram bounds: nbounds (1..METRICS_MAX_BUCKETS) strictly
 * increasing finite upper bounds; the +Inf bucket is implied. The family
 * lives until metrics_free. Returns NULL on an invalid argument, a name
 * already registered, or out of memory. */
metric_family_t *metrics_counter(metrics_t *m, const char *name,
                                 const char *help, const char *labels);
metric_family_t *metrics_gauge(metrics_t *m, const char *name,
                               const char *help, const char *labels);
metric_family_t *metrics_histogram(metrics_t *m, const char *name,
                                   const char *help, const char *labels,
                                   const double *bounds, size_t nbounds);

/* The series of family f for these label values, created (at zero) on the
 * first call, found on later ones without allocating. The variadic form
 * reads exactly as many const char * values as f has labels (none for an
 * unlabelled family); the array form reads values[0..nlabels). Values are
 * copied, any UTF-8 text (escaped when rendered). The handle lives until
 * metrics_free. Returns NULL when f is NULL, a value is NULL, or out of
 * memory. Register the series of known label values (e.g. every saga type
 * at definition load) outside the hot path. */
metric_t *metric_series(metric_family_t *f, ...);
metric_t *metric_series_v(metric_family_t *f, const char *const *values);

/* Update a series. NULL handles are ignored, so a failed registration never
 * crashes the hot path. metric_inc / metric_add: counters and gauges (a
 * counter ignores negative or NaN amounts). metric_set / metric_dec: gauges
 * only (ignored on others). metric_observe: histograms only, one value in
 * the family's unit. */
void metric_inc(metric_t *s);
void metric_add(metric_t *s, double v);
void metric_dec(metric_t *s);
void metric_set(metric_t *s, double v);
void metric_observe(metric_t *s, double v);

/* Read back (tests, readiness): a counter's or gauge's value, a histogram's
 * sum; 0 for NULL. */
double metric_value(const metric_t *s);
/* A histogram's observation count (0 for other kinds and NULL). */
uint64_t metric_count(const metric_t *s);

/* Called at the start of every metrics_render, on the loop thread, so
 * gauges computed on demand (in-flight sagas, stuck sagas, consumer lag)
 * can be refreshed with metric_set. One hook per registry; fn NULL removes
 * it. */
void metrics_on_collect(metrics_t *m, void (*fn)(metrics_t *m, void *arg),
                        void *arg);

/* Render every family in registration order, each series in creation
 * order, as Prometheus text 0.0.4 ("# HELP", "# TYPE", samples; histograms
 * as cumulative _bucket{le=...} including le="+Inf", then _sum and
 * _count). A family without series renders only its HELP and TYPE lines.
 * *out receives a malloc'd NUL-terminated text (free it), *len its length
 * (len may be NULL). Returns 0, or -1 when out of memory (*out NULL). */
int metrics_render(metrics_t *m, char **out, size_t *len);

/* Content-Type of the rendered text. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
