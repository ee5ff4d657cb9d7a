/* Helpers of the OTLP exporter's tests: a fake environment and an
 * exporter built the way sagad builds one. */
#ifndef SAGA_OTLP_TEST_H
#define SAGA_OTLP_TEST_H

#include <uv.h>

#include "otlp.h"

/* An otlp_env_fn over arg, a NULL-terminated array of name, value, ... */
const char *otlp_test_env(const char *name, const void *arg);

/* otlp_resolve(endpoint, env) then otlp_new with every field of the
 * target, flushing every 20 ms and retrying from 20 ms; fails the test
 * when resolving fails, export is off or otlp_new refuses. Loop thread. */
otlp_t *otlp_test_exporter(uv_loop_t *loop, const char *endpoint,
                           const char *const *env);

#endif
