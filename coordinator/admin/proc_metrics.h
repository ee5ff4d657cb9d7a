/* The process metrics every Prometheus client library exports, under
 * their standard names (process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds), read
 * from Linux's /proc/self so that the usual dashboards and alerts work on
 * sagad unchanged. Registered in a metrics.h registry; refreshed on the
 * loop thread when the registry is rendered. Knows nothing about sagas. */
#ifndef SAGAD_PROC_METRICS_H
#define SAGAD_PROC_METRICS_H

#include "metrics.h"

typedef struct proc_metrics proc_metrics_t;

/* Register the process_* families in m (they must not exist there yet)
 * and read them once. Returns the handle (free with proc_metrics_free,
 * after or before metrics_free(m)), or NULL when out of memory or a name
 * is taken. */
proc_metrics_t *proc_metrics_new(metrics_t *m);

/* Read /proc/self again into the gauges and the CPU counter. A file that
 * cannot be read leaves its metrics at their last value. NULL is
 * accepted. */
void proc_metrics_refresh(proc_metrics_t *p);

/* Free the handle (not the families: the registry owns them). NULL is
 * accepted. */
void proc_metrics_free(proc_metrics_t *p);

#endif
