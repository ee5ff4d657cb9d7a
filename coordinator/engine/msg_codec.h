/* The engine's view of the wire (schemas/saga.proto): inbox messages
 * decoded into plain structs, and Command / Notification / dead-letter
 * messages encoded for the broker port. It translates between the wire's
 * enums (schemas/saga.proto) and the machine's (saga_machine.h), so the
 * engine sees machine values only. Pure: no I/O, no logging. */
#ifndef SAGAD_MSG_CODEC_H
#define SAGAD_MSG_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "saga_machine.h"
#include "wire_headers.h"

typedef enum {
  SAGAD_MSG_START = 1,
  SAGAD_MSG_REPLY = 2,
  SAGAD_MSG_OPERATOR = 3,
} sagad_msg_kind_t;

/* A decoded inbox message. Strings and payload point into the unpacked
 * message and live until sagad_msg_free. Enums are the machine's. */
typedef struct {
  int kind;                /* sagad_msg_kind_t */
  const char *saga_id;
  const char *saga_type;   /* START */
  uint32_t def_version;    /* START: 0 = newest */
  const char *step;        /* REPLY */
  sm_action_t action;      /* REPLY */
  sm_input_type_t op;      /* OPERATOR: SM_IN_OPERATOR_RETRY, _RESOLVE, or
                              SM_IN_CANCEL (a CancelSaga) */
  uint32_t attempt;        /* REPLY */
  sm_outcome_t outcome;    /* REPLY: SUCCESS, FAILURE or RETRYABLE */
  const uint8_t *payload;  /* START: input; REPLY: output */
  size_t payload_len;
  const char *reason;      /* REPLY, OPERATOR */
  const char *who;         /* OPERATOR */
  char traceparent[SAGA_TRACEPARENT_SIZE]; /* W3C header, "" when absent */
  char *correlation_id;    /* START: the correlation-id header (owned,
                              at most SM_ID_MAX bytes), NULL when absent */
  void *pb;                /* owned */
} sagad_msg_t;

/* Decode an inbox message (hdrs: a view of its headers, may be NULL).
 * Returns 0, -1 with the reason in errbuf (the dead-letter reason), or
 * SAGAD_MSG_NOMEM when out of memory (not the message's fault: it is not
 * dead-lettered); on < 0 *msg is empty. */
#define SAGAD_MSG_NOMEM (-2)
int sagad_msg_decode(const void *value, size_t len,
                     const saga__hdr_view_t *hdrs, size_t max_bytes,
                     sagad_msg_t *msg, char *errbuf, size_t errlen);

void sagad_msg_free(sagad_msg_t *msg); /* NULL-safe */

/* A command to encode. */
typedef struct {
  const char *saga_id;
  const char *saga_type;
  uint32_t def_version;
  const char *step;
  sm_action_t action;
  const char *action_name; /* the definition's action or compensation
                              action; NULL = none */
  uint32_t attempt;
  int64_t deadline_ms;
  const uint8_t *payload;
  size_t payload_len;
  const char *reply_topic;
  const char *traceparent; /* header, NULL = none */
  const char *correlation_id; /* header, NULL = the saga id */
} sagad_command_t;

/* A notification to encode (REJECTED: a refused StartSaga;
 * CANCEL_REFUSED: a CancelSaga that changed nothing; reason says why). For STEP_DONE the step's action and outcome
 * travel too (TIMEOUT goes out as FAILURE with reason "timeout"). */
typedef struct {
  const char *saga_id;
  const char *saga_type;
  uint32_t def_version;
  sm_notify_t kind;
  const char *step;  /* may be NULL */
  sm_action_t action;   /* STEP_DONE only */
  sm_outcome_t outcome; /* STEP_DONE only */
  const char *reason; /* may be NULL */
  int64_t at_ms;
  const char *correlation_id; /* header, NULL = the saga id */
  const uint8_t *payload; /* COMPLETED: the saga's output; may be NULL */
  size_t payload_len;
} sagad_notification_t;

/* Encode into a malloc'd buffer (free()) and the header list *hdrs
 * (initialised here; saga__hdrs_free), which borrows the input's strings:
 * keep them alive while the list is used. Returns 0 or -1 with errbuf
 * (then *hdrs is empty). */
int sagad_msg_encode_command(const sagad_command_t *c, void **out,
                             size_t *out_len, saga__hdrs_t *hdrs,
                             char *errbuf, size_t errlen);
int sagad_msg_encode_notification(const sagad_notification_t *n, void **out,
                                  size_t *out_len, saga__hdrs_t *hdrs,
                                  char *errbuf, size_t errlen);

/* A StartSaga for the inbox (sagad's POST /sagas/{type}): def_version 0 =
 * the newest; traceparent NULL = none. Same ownership as above. */
int sagad_msg_encode_start(const char *saga_id, const char *saga_type,
                           uint32_t def_version, const uint8_t *input,
                           size_t input_len, const char *traceparent,
                           void **out, size_t *out_len,
                           saga__hdrs_t *hdrs, char *errbuf,
                           size_t errlen);

/* A CancelSaga for the inbox (sagad's POST /sagas/{id}/cancel): reason
 * and who may be NULL; traceparent NULL = none. Same ownership as
 * above. */
int sagad_msg_encode_cancel(const char *saga_id, const char *reason,
                            const char *who, int64_t requested_at_ms,
                            const char *traceparent, void **out,
                            size_t *out_len, saga__hdrs_t *hdrs,
                            char *errbuf, size_t errlen);

/* An OperatorAction for the inbox (sagad's POST /sagas/{id}/retry and
 * /resolve, as sagactl retry / resolve send it): retry true = retry the
 * parked compensation, false = resolve it; reason and who may be NULL;
 * traceparent NULL = none. Same ownership as above. */
int sagad_msg_encode_operator(const char *saga_id, bool retry,
                              const char *reason, const char *who,
                              const char *traceparent, void **out,
                              size_t *out_len, saga__hdrs_t *hdrs,
                              char *errbuf, size_t errlen);

/* Headers of a dead letter into *out (initialised here; saga__hdrs_free):
 * the source's own headers (src, may be NULL), then the reason and
 * "topic/partition/offset" of the source, written into where (where_len
 * bytes). The list borrows src's headers, reason and where: keep them
 * alive while it is used. Returns 0 or -1 (out of memory; *out empty). */
int sagad_msg_dlq_headers(const saga__hdr_view_t *src, const char *reason,
                          const char *topic, int32_t partition,
                          int64_t offset, char *where, size_t where_len,
                          saga__hdrs_t *out);

#endif
