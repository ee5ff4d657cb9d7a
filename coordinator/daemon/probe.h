/* sagad --probe: ask a running sagad's admin endpoint whether it is alive
 * (GET /healthz), for a container runtime's health check that has no HTTP
 * client of its own (the image has no shell or curl). */
#ifndef SAGAD_PROBE_H
#define SAGAD_PROBE_H

#include <stddef.h>

/* GET /healthz from the admin endpoint at listen ("host:port" as
 * admin.listen writes it; a wildcard host, 0.0.0.0 or [::], is asked on
 * the loopback address of its family), waiting at most timeout_ms in all.
 * 0 when it answered 200; -1 with why saying what was seen (the endpoint
 * is off, nothing listens, another status, no answer in time). */
int sagad_probe_health(const char *listen, int timeout_ms, char *why,
                       size_t len);

#endif
