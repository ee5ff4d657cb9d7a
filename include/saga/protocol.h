/* The saga.v1 protocol's vocabulary, shared by the client library, the
 * coordinator and sagactl: error codes, the wire enums of
 * schemas/saga.proto, the metadata carried in message headers and the
 * default ceilings and topics. No I/O library: included by
 * include/saga/client.h and by the pure wire codec (protocol/wire.h), which
 * the coordinator's engine uses without libuv or librdkafka. */
#ifndef SAGA_PROTOCOL_H
#define SAGA_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SAGA_CLIENT_EXPORT
#define SAGA_CLIENT_EXPORT __attribute__((visibility("default")))
#endif

/* Errors: 0 = OK, negative = failure. Values are never reused. */
#define SAGA_ERRNO_MAP(X)                                                      \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ETOOBIG, -3, "message exceeds the size ceiling")                           \
  X(EDECODE, -4, "message could not be decoded")                               \
  X(ETYPE, -5, "missing or unexpected message type header")                    \
  X(EMISSING, -6, "required field missing or invalid")                         \
  X(EKAFKA, -7, "kafka error")                                                 \
  X(ETIMEDOUT, -8, "timed out")                                                \
  X(ECANCELED, -9, "cancelled")                                                \
  X(ESTORE, -10, "idempotency store error")                                    \
  X(ESTATE, -11, "operation not allowed in this state")                        \
  X(EEXIST, -12, "already exists")

typedef enum saga_err {
#define SAGA_ERR_ENUM_(name, value, text) SAGA_##name = (value),
  SAGA_ERRNO_MAP(SAGA_ERR_ENUM_)
#undef SAGA_ERR_ENUM_
} saga_err_t;

/* Text for an error code ("timed out"); never NULL, static storage. */
SAGA_CLIENT_EXPORT const char *saga_strerror(int err);
/* Name of an error code ("SAGA_ETIMEDOUT"); never NULL, static storage. */
SAGA_CLIENT_EXPORT const char *saga_err_name(int err);

/* The wire enums of schemas/saga.proto (same values). */
typedef enum saga_action {
  SAGA_ACTION_DO = 1,
  SAGA_ACTION_COMPENSATE = 2
} saga_action_t;

typedef enum saga_outcome {
  SAGA_OUTCOME_SUCCESS = 1,
  SAGA_OUTCOME_FAILURE = 2,
  SAGA_OUTCOME_RETRYABLE = 3
} saga_outcome_t;

typedef enum saga_notification_kind {
  SAGA_NOTIFY_STARTED = 1,
  SAGA_NOTIFY_STEP_DONE = 2,
  SAGA_NOTIFY_COMPLETED = 3,
  SAGA_NOTIFY_COMPENSATED = 4,
  SAGA_NOTIFY_COMPENSATION_FAILED = 5,
  SAGA_NOTIFY_REJECTED = 6,
  SAGA_NOTIFY_CANCEL_REFUSED = 7 /* a cancel changed nothing; reason says
                                    why */
} saga_notification_kind_t;

/* "DO" / "COMPENSATE" / "SUCCESS" ...; "?" for unknown values. Static. */
SAGA_CLIENT_EXPORT const char *saga_action_name(int action);
SAGA_CLIENT_EXPORT const char *saga_outcome_name(int outcome);
SAGA_CLIENT_EXPORT const char *saga_notification_kind_name(int kind);

/* Message metadata carried in Kafka headers (docs/protocol.md). Borrowed
 * strings; any may be NULL. */
typedef struct saga_meta {
  const char *saga_id;
  const char *correlation_id;
  const char *causation_id;
  const char *traceparent; /* W3C trace context */
} saga_meta_t;

#define SAGA_DEFAULT_MAX_MESSAGE_BYTES ((size_t)1 << 20)
/* Bytes of a saga id (UTF-8, no control characters, no '/'), and of every
 * id on the wire: the same ceiling in the coordinator, sagactl and the
 * admin endpoint (docs/protocol.md). */
#define SAGA_MAX_ID 255
#define SAGA_DEFAULT_INBOX_TOPIC "saga.inbox"
#define SAGA_DEFAULT_NOTIFICATIONS_TOPIC "saga.notifications"

#ifdef __cplusplus
}
#endif
#endif
