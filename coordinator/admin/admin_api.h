/* sagad's admin API: the HTTP handlers for /metrics, /healthz, /readyz,
 * GET /sagas/{id}, GET /sagas, POST /sagas/{type} and the operator actions
 * POST /sagas/{id}/cancel, /retry and /resolve, reading through a
 * source interface the engine implements (or admin_pg.c for the reads).
 * This module validates requests, calls the source and shapes answers; it
 * holds no saga state and does no I/O of its own. Loop thread only. */
#ifndef SAGAD_ADMIN_API_H
#define SAGAD_ADMIN_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "abuf.h"
#include "admin_http.h"
#include "index_query.h"
#include "metrics.h"

/* Longest saga id and type accepted (bytes), as in saga_machine.h and
 * definition.h. */
#define ADMIN_ID_MAX 255 /* SAGA_MAX_ID: one saga id ceiling everywhere */
#define ADMIN_TYPE_MAX 64
#define ADMIN_LIST_DEFAULT 50
#define ADMIN_LIST_MAX 1000
/* Longest operator name and cancel reason (bytes), as on the wire. */
#define ADMIN_OPERATOR_MAX 255
#define ADMIN_REASON_MAX 1024

/* A pending answer: the source calls admin_reply exactly once, now or
 * later on the loop thread. */
typedef admin_http_req_t admin_reply_t;

/* Answer with a JSON document (copied): 200 found / listed, 201 started,
 * 202 cancel or operator action sent, 404 unknown saga or type, 409 id
 * taken by another saga or action refused, 503 store or broker
 * unavailable. NULL json with an error status sends
 * {"error": "<reason phrase>"}. */
void admin_reply(admin_reply_t *r, int status, const char *json, size_t len);

/* GET /sagas filters, validated (index/index_query.h gives them their
 * meaning): state is NULL or a status name (IQ_STATUSES); type NULL or a
 * saga type; stuck = only stuck sagas (iq_stuck_t); limit
 * 1..ADMIN_LIST_MAX; after NULL or the "next" token of the previous page
 * (iq_cursor_decode takes it); since/until bound started_at (unset when
 * not asked); oldest_first reverses the newest-first order; counts asks
 * for the number of sagas in each state under every filter but state
 * (the answer's "counts"). */
typedef struct {
  const char *state;
  const char *type;
  bool stuck;
  size_t limit;
  const char *after;
  iq_time_t since, until;
  bool oldest_first;
  bool counts;
} admin_list_query_t;

/* The operator actions on a saga parked in compensation_failed, as
 * sagactl retry / resolve send them (an OperatorAction in the inbox). */
typedef enum { ADMIN_OP_RETRY, ADMIN_OP_RESOLVE } admin_op_t;

/* Readiness, filled synchronously by the source. */
typedef struct {
  bool store;      /* the event store answers */
  bool kafka;      /* the brokers answer */
  bool partitions; /* inbox partitions are assigned to this instance */
  char detail[128];
  bool dlq_blocked; /* a dead letter cannot be written: its offset waits */
} admin_readiness_t;

/* What the engine provides. Any function may be NULL: its route answers
 * 501. Strings are valid during the call only.
 * - get_saga: {"saga": {row...}, "history": [...]}, or 404.
 * - list_sagas: {"sagas": [row...], "total": N, "next": "<token>" | null}
 *   (total: every saga the filters match, whatever the page), and with
 *   q->counts "counts": {"<status>": N, ...} for every status of
 *   IQ_STATUSES (0 included) under every filter but state.
 * - start_saga: start a saga of type with the client-supplied id (checked
 *   here: printable, no space or '/') and input (valid JSON, input_len
 *   bytes), idempotent on id: 201 {"saga_id": ..., "created": true} the
 *   first time, 200 with "created": false and "status" when a saga with
 *   this id and type exists in any state, 409 when the id belongs to
 *   another type, 404 for an unknown type.
 * - cancel_saga: cancel saga id (checked here like start_saga's) for
 *   operator who (NULL = none) with reason (non-empty), both UTF-8 text
 *   within ADMIN_OPERATOR_MAX / ADMIN_REASON_MAX bytes: 409 {"error":
 *   why} when the saga is past its pivot, finished or parked, 404 when
 *   unknown, else 202 {"saga_id", "cancel": "sent"} once the CancelSaga is
 *   in the inbox (the coordinator decides; a CANCEL_REFUSED notification
 *   says why when it refuses).
 * - operate_saga: op on saga id for who with reason, checked as
 *   cancel_saga's: 409 {"error": why} unless the saga is parked in
 *   compensation_failed, 404 when unknown, else 202 {"saga_id",
 *   "action": "retry" | "resolve", "status": "sent"} once the
 *   OperatorAction is in the inbox (the coordinator applies it and records
 *   OperatorRetry or Resolved with who and reason in the history).
 * - readiness: fill *out now. */
typedef struct {
  void *arg;
  void (*get_saga)(void *arg, const char *id, admin_reply_t *r);
  void (*list_sagas)(void *arg, const admin_list_query_t *q,
                     admin_reply_t *r);
  void (*start_saga)(void *arg, const char *type, const char *id,
                     const char *input, size_t input_len, admin_reply_t *r);
  void (*readiness)(void *arg, admin_readiness_t *out);
  void (*cancel_saga)(void *arg, const char *id, const char *reason,
                      const char *who, admin_reply_t *r);
  void (*operate_saga)(void *arg, admin_op_t op, const char *id,
                       const char *reason, const char *who,
                       admin_reply_t *r);
} admin_source_t;

/* A saga_index row, for sources building their JSON with
 * admin_json_saga_row. Times in milliseconds since the Unix epoch; 0 =
 * none (next_deadline_ms). current_step NULL = none. */
typedef struct {
  const char *saga_id;
  const char *saga_type;
  int definition_version;
  const char *status;
  int partition;
  int64_t version;
  int64_t started_ms, updated_ms, next_deadline_ms;
  const char *current_step;
  bool stuck;
} admin_saga_row_t;

/* Append the row as a JSON object (times as RFC 3339 UTC strings with
 * milliseconds, and *_ms numbers). Returns 0 or -1 when b failed. */
int admin_json_saga_row(abuf_t *b, const admin_saga_row_t *row);

/* Register every admin route on s: GET /metrics (metrics may be NULL:
 * empty text), GET /healthz, GET /readyz, GET /sagas/{id}, GET /sagas,
 * POST /sagas/{type}, POST /sagas/{id}/cancel, /retry and /resolve. The
 * three operator actions take {"reason" (required), "operator"} and
 * refuse (403) a request whose Origin header names another site. src
 * (and metrics) are borrowed and must outlive s.
 * Returns 0 or -1 when out of memory. */
int admin_api_register(admin_http_t *s, const admin_source_t *src,
                       metrics_t *metrics);

#endif
