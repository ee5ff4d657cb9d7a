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

#endif
