/* Internal codec of the saga.v1 wire messages: protobuf payload plus the
 * message headers of docs/protocol.md, with a size ceiling on every decode
 * and a check of every required field. Pure functions: no I/O, no logging,
 * and no broker library -- headers are this file's own types (a list to
 * encode into, a read view to decode from); wire_kafka.h converts them
 * to and from librdkafka's. Shared by the client library, sagactl and the
 * coordinator, whose engine links it without librdkafka (target
 * saga_wire). */
#ifndef SAGA_CLIENT_WIRE_H
#define SAGA_CLIENT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "saga.pb-c.h"
#include "saga/protocol.h"
#include "wire_headers.h"

#define SAGA_HDR_TYPE "saga-message-type"
#define SAGA_HDR_SAGA_ID "saga-id"
#define SAGA_HDR_CORRELATION "correlation-id"
#define SAGA_HDR_CAUSATION "causation-id"
#define SAGA_HDR_TRACEPARENT "traceparent"
#define SAGA_HDR_DLQ_REASON "saga-dlq-reason"
#define SAGA_HDR_DLQ_SOURCE "saga-dlq-source"
/* A dead letter cut to fit the producer or the broker: the original
 * value's size in bytes, and what was kept. */
#define SAGA_HDR_DLQ_SIZE "saga-dlq-size"
#define SAGA_HDR_DLQ_TRUNCATED "saga-dlq-truncated"

/* protobuf-c's message structs hold `char *` even for data they only read:
 * this casts a borrowed const string for them without -Wcast-qual noise. */
#define SAGA_MUT(s) ((char *)(uintptr_t)(const void *)(s))

/* Ceiling on ids, step names, topics and header values, in bytes. */
#define SAGA_WIRE_MAX_ID 255
/* Ceiling on an idempotency key "<saga_id>/<step>/COMPENSATE/<attempt>"
 * built from the longest ids, and so on the causation-id header that
 * carries one (a reply's): two ids, three separators, "COMPENSATE" and a
 * 32-bit attempt fit. */
#define SAGA_WIRE_MAX_KEY (2 * SAGA_WIRE_MAX_ID + 32)
/* Ceiling on free text (OperatorAction.reason, CancelSaga.reason), in
 * bytes. */
#define SAGA_WIRE_MAX_TEXT 1024

/* Decoded header values, NUL-terminated; "" when absent. */
typedef struct saga__wire_meta {
  char saga_id[SAGA_WIRE_MAX_ID + 1];
  char correlation_id[SAGA_WIRE_MAX_ID + 1];
  char causation_id[SAGA_WIRE_MAX_KEY + 1];
  char traceparent[SAGA_WIRE_MAX_ID + 1];
} saga__wire_meta_t;

/* A view of `m` as saga_meta_t (NULL for empty fields). */
saga_meta_t saga__wire_meta_view(const saga__wire_meta_t *m);

/* Encode `msg` (checked first, see saga__wire_check) into a malloc'd buffer
 * (*out, *out_len; free()) and the header list *hdrs (initialised here;
 * saga__hdrs_free it) carrying the type name, the message's saga id and
 * meta's other fields. The headers borrow msg's saga id and meta's strings:
 * keep them alive while the list is used. max_bytes 0 = 1 MiB. Returns 0,
 * SAGA_EMISSING, SAGA_ETOOBIG, SAGA_EINVAL or SAGA_ENOMEM (then *hdrs is
 * empty); errbuf says what. wire_kafka.h's saga__wire_encode gives a
 * librdkafka header list instead. */
int saga__wire_pack(const ProtobufCMessage *msg, const saga_meta_t *meta,
                    size_t max_bytes, void **out, size_t *out_len,
                    saga__hdrs_t *hdrs, char *errbuf, size_t errlen);

/* Decode a message's value into a message of type `want`. Refuses a
 * missing or different `saga-message-type` header (SAGA_ETYPE), a value
 * past max_bytes (SAGA_ETOOBIG; 0 = 1 MiB), bytes that do not parse
 * (SAGA_EDECODE), and (SAGA_EMISSING) header values past SAGA_WIRE_MAX_ID
 * (causation-id: SAGA_WIRE_MAX_KEY), not UTF-8 or holding NUL or other
 * control characters (which saga__wire_pack refuses), string fields
 * holding a NUL byte (protobuf-c would cut them there), missing required
 * fields, ids that are not UTF-8, or a `saga-id` header that disagrees
 * with the body. hdrs may be NULL or empty (then SAGA_ETYPE). When a header
 * name repeats, the last one counts. On 0, *out is the message
 * (saga__wire_free) and *meta the headers. wire_kafka.h's saga__wire_decode
 * takes librdkafka's headers. */
int saga__wire_unpack(const ProtobufCMessageDescriptor *want,
                      const void *value, size_t len,
                      const saga__hdr_view_t *hdrs, size_t max_bytes,
                      ProtobufCMessage **out, saga__wire_meta_t *meta,
                      char *errbuf, size_t errlen);

/* The message type named by the `saga-message-type` header, or NULL when
 * absent or not one of saga.v1's. hdrs may be NULL. */
const ProtobufCMessageDescriptor *
saga__wire_type_in(const saga__hdr_view_t *hdrs);

/* Check required fields and ceilings of a saga.v1 message. 0 or
 * SAGA_EMISSING with errbuf naming the field. */
int saga__wire_check(const ProtobufCMessage *msg, char *errbuf, size_t errlen);

void saga__wire_free(ProtobufCMessage *msg); /* NULL-safe */

/* Fill r (saga__v1__reply__init first) as the answer to command c: c's
 * saga id, step, action, attempt and idempotency key, with outcome, reason
 * (NULL = "") and payload (NULL = none). Every string and the payload are
 * borrowed: c, reason and payload must outlive r. The one place a Reply is
 * made from a Command. */
void saga__wire_reply_to(Saga__V1__Reply *r, const Saga__V1__Command *c,
                         Saga__V1__Outcome outcome, const char *reason,
                         const void *payload, size_t payload_len);

/* "<saga_id>/<step>/<DO|COMPENSATE>/<attempt>" into buf. Returns 0, or
 * SAGA_EINVAL for a bad action or SAGA_ETOOBIG when buf is short. */
int saga__idempotency_key(char *buf, size_t len, const char *saga_id,
                          const char *step, int action, uint32_t attempt);

/* Format an error message into errbuf (may be NULL) and return err. */
int saga__errf(int err, char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
