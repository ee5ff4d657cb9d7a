/* Helpers of the OTLP exporter's tests (otlp_test.h). */
#include "otlp_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

const char *otlp_test_env(const char *name, const void *arg) {
  const char *const *kv = arg;
  for (; kv && kv[0]; kv += 2)
    if (!strcmp(kv[0], name))
      return kv[1];
  return NULL;
}

otlp_t *otlp_test_exporter(uv_loop_t *loop, const char *endpoint,
                           const char *const *env) {
  otlp_settings_t st = {.endpoint = endpoint};
  otlp_target_t t;
  char err[512] = "";
  if (otlp_resolve(&st, otlp_test_env, env, &t, err, sizeof err) != 0)
    fail_msg("otlp_resolve: %s", err);
  assert_true(t.enabled);
  otlp_opts_t o;
  otlp_opts_init(&o);
  otlp_opts_from_target(&o, &t);
  o.flush_ms = 20;
  o.backoff_min_ms = 20;
  otlp_t *x = otlp_new(loop, &o);
  otlp_target_free(&t);
  assert_non_null(x);
  return x;
}
