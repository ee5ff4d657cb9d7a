/* Hooks the subscription sets on its async handle: LISTEN on each
 * (re)connect, wake-ups on NOTIFY, and news of a connection lost while
 * idle. Not installed. */
#ifndef SAGA_ES_ASYNC_INTERNAL_H
#define SAGA_ES_ASYNC_INTERNAL_H

#include "es_internal.h"

typedef struct {
  int listen;
  void (*on_notify)(es_async_t *as, void *arg);
  void (*on_lost)(es_async_t *as, void *arg);
  void *arg;
} es__async_hooks_t;

void es__async_set_hooks(es_async_t *as, const es__async_hooks_t *hooks);

/* A subscriber's wait after an empty read: the next quick re-read after a
 * start or NOTIFY (*settle_ms, then doubled), or poll_ms once the quick
 * ones reach it (*settle_ms becomes 0). */
static inline uint64_t es__settle_wait(uint64_t *settle_ms, unsigned poll_ms) {
  if (*settle_ms && *settle_ms < poll_ms) {
    uint64_t wait = *settle_ms;
    *settle_ms *= 2;
    return wait;
  }
  *settle_ms = 0;
  return poll_ms;
}

#endif
