/* The engine's wire codec over protocol/wire.h: decode the four inbox
 * message types, encode commands and notifications, build dead-letter
 * headers. No I/O and no logging here. */
#include "msg_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "text.h"
#include "wire.h"

#define SAGAD_ENCODE_MAX ((size_t)1 << 30)

/* An id the wire takes (a longer one is undecodable) fits the engine's. */
_Static_assert(SAGA_WIRE_MAX_ID <= SM_ID_MAX,
               "saga ids the wire takes must fit SM_ID_MAX");

/* The same codec as the other inbox types (protocol/wire.c checks saga_id,
 * the action, reason and operator); sagactl encodes with it too. An
 * OperatorAction (retry, resolve) and a CancelSaga (op SM_IN_CANCEL) are
 * both an operator's input. */
static int decode_operator(const ProtobufCMessageDescriptor *d,
                           const void *value, size_t len,
                           const saga__hdr_view_t *hdrs, size_t max_bytes,
                           sagad_msg_t *msg, char *errbuf, size_t errlen) {
  saga__wire_meta_t meta;
  ProtobufCMessage *pb = NULL;
  if (saga__wire_unpack(d, value, len, hdrs, max_bytes, &pb, &meta, errbuf,
                        errlen) != 0)
    return -1;
  msg->kind = SAGAD_MSG_OPERATOR;
  msg->pb = pb;
  if (d == &saga__v1__cancel_saga__descriptor) {
    const Saga__V1__CancelSaga *m = (const Saga__V1__CancelSaga *)pb;
    msg->saga_id = m->saga_id;
    msg->op = SM_IN_CANCEL;
    msg->reason = m->reason;
    msg->who = m->operator_;
    return 0;
  }
  const Saga__V1__OperatorAction *m = (const Saga__V1__OperatorAction *)pb;
  msg->saga_id = m->saga_id;
  msg->op = m->action == SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY
                ? SM_IN_OPERATOR_RETRY
                : SM_IN_OPERATOR_RESOLVE;
  msg->reason = m->reason;
  msg->who = m->operator_;
  return 0;
}

int sagad_msg_decode(const void *value, size_t len,
                     const saga__hdr_view_t *hdrs, size_t max_bytes,
                     sagad_msg_t *msg, char *errbuf, size_t errlen) {
  memset(msg, 0, sizeof *msg);
  const ProtobufCMessageDescriptor *d = saga__wire_type_in(hdrs);
  if (d == &saga__v1__operator_action__descriptor ||
      d == &saga__v1__cancel_saga__descriptor)
    return decode_operator(d, value, len, hdrs, max_bytes, msg, errbuf,
                           errlen);
  if (d != &saga__v1__start_saga__descriptor &&
      d != &saga__v1__reply__descriptor) {
    snprintf(errbuf, errlen,
             "header \"%s\" is missing or names a type the inbox does not "
             "take (StartSaga, Reply, OperatorAction, CancelSaga)",
             SAGA_HDR_TYPE);
    return -1;
  }
  saga__wire_meta_t meta;
  ProtobufCMessage *pb = NULL;
  if (saga__wire_unpack(d, value, len, hdrs, max_bytes, &pb, &meta, errbuf,
                        errlen) != 0)
    return -1;
  msg->pb = pb;
  /* Only a well-formed traceparent travels on (into commands and the
   * events' metadata); a malformed one is dropped, not fatal. */
  if (saga__traceparent_valid(meta.traceparent))
    memcpy(msg->traceparent, meta.traceparent, strlen(meta.traceparent) + 1);
  if (d == &saga__v1__start_saga__descriptor) {
    const Saga__V1__StartSaga *s = (const Saga__V1__StartSaga *)pb;
    /* Bounded, UTF-8, no control characters: checked by
     * saga__wire_decode. Only a start keeps it (the saga's). */
    if (meta.correlation_id[0] &&
        !(msg->correlation_id = strdup(meta.correlation_id))) {
      sagad_msg_free(msg);
      snprintf(errbuf, errlen, "out of memory decoding a StartSaga");
      return SAGAD_MSG_NOMEM;
    }
    msg->kind = SAGAD_MSG_START;
    msg->saga_id = s->saga_id;
    msg->saga_type = s->saga_type;
    msg->def_version =
        s->definition_version_present_case ==
                SAGA__V1__START_SAGA__DEFINITION_VERSION_PRESENT_DEFINITION_VERSION
            ? s->definition_version
            : 0;
    msg->payload = s->input.data;
    msg->payload_len = s->input.len;
  } else {
    const Saga__V1__Reply *r = (const Saga__V1__Reply *)pb;
    msg->kind = SAGAD_MSG_REPLY;
    msg->saga_id = r->saga_id;
    msg->step = r->step;
    msg->action = r->action == SAGA__V1__ACTION__ACTION_COMPENSATE
                      ? SM_COMPENSATE
                      : SM_DO;
    msg->attempt = r->attempt;
    msg->outcome = r->outcome == SAGA__V1__OUTCOME__OUTCOME_SUCCESS
                       ? SM_OUTCOME_SUCCESS
                   : r->outcome == SAGA__V1__OUTCOME__OUTCOME_RETRYABLE
                       ? SM_OUTCOME_RETRYABLE
                       : SM_OUTCOME_FAILURE;
    msg->payload = r->payload.data;
    msg->payload_len = r->payload.len;
    /* free text from a participant: made valid text before it reaches
     * the history, the notifications and the admin API's JSON (proto3
     * strings other languages decode only as UTF-8) */
    if (r->reason)
      saga__text_clean(r->reason);
    msg->reason = r->reason;
  }
  return 0;
}

void sagad_msg_free(sagad_msg_t *msg) {
  if (!msg)
    return;
  free(msg->correlation_id);
  msg->correlation_id = NULL;
  if (!msg->pb)
    return;
  protobuf_c_message_free_unpacked(msg->pb, NULL);
  msg->pb = NULL;
}

static Saga__V1__Action wire_action(sm_action_t a) {
  return a == SM_COMPENSATE ? SAGA__V1__ACTION__ACTION_COMPENSATE
                            : SAGA__V1__ACTION__ACTION_DO;
}

static Saga__V1__Outcome wire_outcome(sm_outcome_t o) {
  switch (o) {
  case SM_OUTCOME_SUCCESS:
    return SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  case SM_OUTCOME_RETRYABLE:
    return SAGA__V1__OUTCOME__OUTCOME_RETRYABLE;
  case SM_OUTCOME_FAILURE:
  case SM_OUTCOME_TIMEOUT:
    break;
  }
  return SAGA__V1__OUTCOME__OUTCOME_FAILURE;
}

static Saga__V1__NotificationKind wire_kind(sm_notify_t k) {
  switch (k) {
  case SM_NOTIFY_STARTED:
    return SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_STARTED;
  case SM_NOTIFY_STEP_DONE:
    return SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_STEP_DONE;
  case SM_NOTIFY_COMPLETED:
    return SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPLETED;
  case SM_NOTIFY_COMPENSATED:
    return SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATED;
  case SM_NOTIFY_REJECTED:
    return SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_REJECTED;
  case SM_NOTIFY_CANCEL_REFUSED:
    return SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_CANCEL_REFUSED;
  case SM_NOTIFY_COMPENSATION_FAILED:
    break;
  }
  return SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATION_FAILED;
}

static int encode(const ProtobufCMessage *pb, const char *saga_id,
                  const char *correlation_id, const char *traceparent,
                  void **out, size_t *out_len, saga__hdrs_t *hdrs,
                  char *errbuf, size_t errlen) {
  saga_meta_t meta = {
      .saga_id = saga_id,
      .correlation_id =
          correlation_id && *correlation_id ? correlation_id : saga_id,
      .traceparent = traceparent};
  /* No ceiling of the wire's own (its default, 1 MiB, is less than
   * payload.max_bytes may allow): what sagad sends is bounded before it is
   * built (the engine's input_max, payload.max_bytes) and by the
   * producer's kafka.message.max.bytes. */
  return saga__wire_pack(pb, &meta, SAGAD_ENCODE_MAX, out, out_len, hdrs,
                         errbuf, errlen)
             ? -1
             : 0;
}

int sagad_msg_encode_command(const sagad_command_t *c, void **out,
                             size_t *out_len, saga__hdrs_t *hdrs,
                             char *errbuf, size_t errlen) {
  char key[SAGA_WIRE_MAX_KEY + 1];
  saga__hdrs_init(hdrs);
  if (saga__idempotency_key(key, sizeof key, c->saga_id, c->step,
                            (int)wire_action(c->action), c->attempt) != 0) {
    snprintf(errbuf, errlen, "could not build the idempotency key");
    return -1;
  }
  Saga__V1__Command m;
  saga__v1__command__init(&m);
  m.saga_id = SAGA_MUT(c->saga_id);
  m.saga_type = SAGA_MUT(c->saga_type);
  m.definition_version = c->def_version;
  m.step = SAGA_MUT(c->step);
  m.action = wire_action(c->action);
  m.action_name = SAGA_MUT(c->action_name ? c->action_name : "");
  m.attempt = c->attempt;
  m.idempotency_key = key;
  m.deadline_ms = c->deadline_ms;
  m.payload.data = (uint8_t *)(uintptr_t)c->payload;
  m.payload.len = c->payload_len;
  m.reply_topic = SAGA_MUT(c->reply_topic);
  return encode(&m.base, c->saga_id, c->correlation_id, c->traceparent, out,
                out_len, hdrs, errbuf, errlen);
}

/* A notification of wire kind `kind` (n->kind is not read). */
static int encode_note(const sagad_notification_t *n,
                       Saga__V1__NotificationKind kind, void **out,
                       size_t *out_len, saga__hdrs_t *hdrs,
                       char *errbuf, size_t errlen) {
  Saga__V1__Notification m;
  saga__v1__notification__init(&m);
  m.saga_id = SAGA_MUT(n->saga_id);
  m.saga_type = SAGA_MUT(n->saga_type);
  m.definition_version = n->def_version;
  m.kind = kind;
  m.step = SAGA_MUT(n->step ? n->step : "");
  if (kind == SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_STEP_DONE) {
    m.action = wire_action(n->action);
    m.outcome = wire_outcome(n->outcome);
  }
  m.reason = SAGA_MUT(n->reason ? n->reason : "");
  m.at_ms = n->at_ms;
  m.payload.data = (uint8_t *)(uintptr_t)n->payload;
  m.payload.len = n->payload ? n->payload_len : 0;
  return encode(&m.base, n->saga_id, n->correlation_id, NULL, out, out_len,
                hdrs, errbuf, errlen);
}

int sagad_msg_encode_notification(const sagad_notification_t *n, void **out,
                                  size_t *out_len, saga__hdrs_t *hdrs,
                                  char *errbuf, size_t errlen) {
  return encode_note(n, wire_kind(n->kind), out, out_len, hdrs, errbuf,
                     errlen);
}

int sagad_msg_encode_start(const char *saga_id, const char *saga_type,
                           uint32_t def_version, const uint8_t *input,
                           size_t input_len, const char *traceparent,
                           void **out, size_t *out_len,
                           saga__hdrs_t *hdrs, char *errbuf,
                           size_t errlen) {
  Saga__V1__StartSaga m;
  saga__v1__start_saga__init(&m);
  m.saga_id = SAGA_MUT(saga_id);
  m.saga_type = SAGA_MUT(saga_type);
  if (def_version) {
    m.definition_version_present_case =
        SAGA__V1__START_SAGA__DEFINITION_VERSION_PRESENT_DEFINITION_VERSION;
    m.definition_version = def_version;
  }
  m.input.data = (uint8_t *)(uintptr_t)input;
  m.input.len = input_len;
  return encode(&m.base, saga_id, NULL, traceparent, out, out_len, hdrs,
                errbuf, errlen);
}

int sagad_msg_encode_cancel(const char *saga_id, const char *reason,
                            const char *who, int64_t requested_at_ms,
                            const char *traceparent, void **out,
                            size_t *out_len, saga__hdrs_t *hdrs,
                            char *errbuf, size_t errlen) {
  Saga__V1__CancelSaga m;
  saga__v1__cancel_saga__init(&m);
  m.saga_id = SAGA_MUT(saga_id);
  m.reason = SAGA_MUT(reason ? reason : "");
  m.operator_ = SAGA_MUT(who ? who : "");
  m.requested_at_ms = requested_at_ms;
  return encode(&m.base, saga_id, NULL, traceparent, out, out_len, hdrs,
                errbuf, errlen);
}

int sagad_msg_encode_operator(const char *saga_id, bool retry,
                              const char *reason, const char *who,
                              const char *traceparent, void **out,
                              size_t *out_len, saga__hdrs_t *hdrs,
                              char *errbuf, size_t errlen) {
  Saga__V1__OperatorAction m;
  saga__v1__operator_action__init(&m);
  m.saga_id = SAGA_MUT(saga_id);
  m.action =
      retry ? SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY
            : SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RESOLVE;
  m.reason = SAGA_MUT(reason ? reason : "");
  m.operator_ = SAGA_MUT(who ? who : "");
  return encode(&m.base, saga_id, NULL, traceparent, out, out_len, hdrs,
                errbuf, errlen);
}

int sagad_msg_dlq_headers(const saga__hdr_view_t *src, const char *reason,
                          const char *topic, int32_t partition,
                          int64_t offset, char *where, size_t where_len,
                          saga__hdrs_t *out) {
  saga__hdrs_init(out);
  saga__hdr_t h;
  for (size_t i = 0; src && src->at && src->at(src->src, i, &h) == 0; i++)
    if (saga__hdrs_add(out, h.name, h.value, h.len) != 0)
      goto nomem;
  snprintf(where, where_len, "%s/%d/%lld", topic, (int)partition,
           (long long)offset);
  if (saga__hdrs_add_text(out, SAGA_HDR_DLQ_REASON, reason) ||
      saga__hdrs_add_text(out, SAGA_HDR_DLQ_SOURCE, where))
    goto nomem;
  return 0;
nomem:
  saga__hdrs_free(out);
  return -1;
}
