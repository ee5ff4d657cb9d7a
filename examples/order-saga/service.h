/* The frame shared by the three participant services of the order example
 * (inventory, payment, shipping): command line, PostgreSQL ledger, the
 * participant on a libuv loop, signals. A service only says what its DO
 * command decides for a given order; the frame applies the effect in the
 * service's ledger in the same transaction as the idempotency record, and
 * undoes it on COMPENSATE. Example code: it prints and exits. */
#ifndef ORDER_SERVICE_H
#define ORDER_SERVICE_H

#include <cJSON.h>

#include "saga/client.h"

/* What a DO command does for this order. */
typedef enum svc_verdict {
  SVC_APPLY,         /* apply the effect, reply SUCCESS */
  SVC_FAIL,          /* business "no": nothing applied, reply FAILURE */
  SVC_RETRY,         /* transient: nothing applied, reply RETRYABLE */
  SVC_APPLY_NO_REPLY /* apply the effect, never answer (a reply lost on
                        the way, as seen from the coordinator) */
} svc_verdict_t;

/* Decide a DO command. `order` is the saga input (NULL when the payload is
 * not a JSON object); set *reason for SVC_FAIL and SVC_RETRY. */
typedef svc_verdict_t (*svc_decide_fn)(const cJSON *order,
                                       const saga_command_t *cmd,
                                       const char **reason);

typedef struct svc_spec {
  const char *name;        /* "inventory": schema, group, log prefix */
  const char *topic;       /* default command topic */
  const char *do_action;   /* ledger name of the effect ("reserve") */
  const char *undo_action; /* ledger name of its undoing ("release") */
  const char *about;       /* one line for --help */
  const char *behaviour;   /* --help lines on the order fields it reads */
  svc_decide_fn decide;
} svc_spec_t;

/* Run the service until SIGINT/SIGTERM. Returns the exit status. */
int svc_main(const svc_spec_t *spec, int argc, char **argv);

/* The string field `name` of `order`, or "" when absent. */
const char *svc_order_str(const cJSON *order, const char *name);

#endif
