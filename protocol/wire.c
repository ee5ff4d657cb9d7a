/* Codec of the saga.v1 wire messages (see wire.h). Never trusts a length:
 * the value is bounded before protobuf-c sees it, header values are bounded
 * and copied, and each message's required fields are checked after unpack. */
#include "wire.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

int saga__errf(int err, char *errbuf, size_t errlen, const char *fmt, ...) {
  if (errbuf && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
  }
  return err;
}

static const ProtobufCMessageDescriptor *const known_types[] = {
    &saga__v1__start_saga__descriptor,
    &saga__v1__command__descriptor,
    &saga__v1__reply__descriptor,
    &saga__v1__notification__descriptor,
    &saga__v1__operator_action__descriptor,
    &saga__v1__cancel_saga__descriptor,
};

saga_meta_t saga__wire_meta_view(const saga__wire_meta_t *m) {
  saga_meta_t v = {
      .saga_id = m->saga_id[0] ? m->saga_id : NULL,
      .correlation_id = m->correlation_id[0] ? m->correlation_id : NULL,
      .causation_id = m->causation_id[0] ? m->causation_id : NULL,
      .traceparent = m->traceparent[0] ? m->traceparent : NULL,
  };
  return v;
}

/* A bounded UTF-8 string without control characters: an id (no '/', the
 * idempotency key's separator, unless allow_slash) or free text (which
 * may hold tabs and newlines). Empty passes; the callers decide presence. */
enum { STR_ID = 0, STR_ID_SLASH = 1, STR_TEXT = 2 };

static int check_str(const char *what, const char *v, size_t max, int kind,
                     char *errbuf, size_t errlen) {
  size_t n = v ? strlen(v) : 0;
  if (n > max)
    return saga__errf(SAGA_EMISSING, errbuf, errlen,
                      "%s is %zu bytes long, the ceiling is %zu", what, n,
                      max);
  unsigned char any = 0; /* the bytes or'ed: ASCII needs no UTF-8 check */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    any |= c;
    int ok = c >= 0x20 && c != 0x7f;
    if (c == '/' && kind == STR_ID)
      ok = 0;
    if ((c == '\t' || c == '\n') && kind == STR_TEXT)
      ok = 1;
    if (!ok)
      return saga__errf(SAGA_EMISSING, errbuf, errlen,
                        "%s contains a forbidden character at byte %zu", what,
                        i);
  }
  size_t bad = any & 0x80 ? saga__utf8_bad_at((const unsigned char *)v, n) : n;
  if (bad < n)
    return saga__errf(SAGA_EMISSING, errbuf, errlen,
                      "%s is not valid UTF-8 at byte %zu", what, bad);
  return 0;
}

static int check_id(const char *what, const char *v, int allow_slash,
                    char *errbuf, size_t errlen) {
  if (!v || !*v)
    return saga__errf(SAGA_EMISSING, errbuf, errlen, "%s is missing", what);
  return check_str(what, v, SAGA_WIRE_MAX_ID,
                   allow_slash ? STR_ID_SLASH : STR_ID, errbuf, errlen);
}

static int check_optional_id(const char *what, const char *v, char *errbuf,
                             size_t errlen) {
  if (!v || !*v)
    return 0;
  return check_id(what, v, 1, errbuf, errlen);
}

/* A header's ceiling: causation-id carries an idempotency key. */
static size_t header_max(const char *name) {
  return strcmp(name, SAGA_HDR_CAUSATION) == 0 ? SAGA_WIRE_MAX_KEY
                                                : SAGA_WIRE_MAX_ID;
}

static int check_action(int action, char *errbuf, size_t errlen) {
  if (action != SAGA__V1__ACTION__ACTION_DO &&
      action != SAGA__V1__ACTION__ACTION_COMPENSATE)
    return saga__errf(SAGA_EMISSING, errbuf, errlen,
                "action must be DO or COMPENSATE, got %d", action);
  return 0;
}

static int check_key(const char *key, const char *saga_id, const char *step,
                     int action, uint32_t attempt, char *errbuf,
                     size_t errlen) {
  char want[SAGA_WIRE_MAX_KEY + 1];
  if (attempt < 1)
    return saga__errf(SAGA_EMISSING, errbuf, errlen, "attempt must be at least 1");
  if (saga__idempotency_key(want, sizeof want, saga_id, step, action,
                            attempt) != 0)
    return saga__errf(SAGA_EMISSING, errbuf, errlen, "idempotency_key is invalid");
  if (!key || strcmp(key, want) != 0)
    return saga__errf(SAGA_EMISSING, errbuf, errlen,
                "idempotency_key \"%.64s\" does not match \"%s\"",
                key ? key : "", want);
  return 0;
}

#define CHECK(expr)                                                            \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    if (rc_)                                                                   \
      return rc_;                                                              \
  } while (0)

/* An operator's reason and name, recorded in the saga's history:
 * optional, but bounded and UTF-8 like every string on the wire. */
static int check_trail(const char *reason, const char *who, char *errbuf,
                       size_t errlen) {
  CHECK(check_str("reason", reason, SAGA_WIRE_MAX_TEXT, STR_TEXT, errbuf,
                  errlen));
  return check_str("operator", who, SAGA_WIRE_MAX_ID, STR_ID_SLASH, errbuf,
                   errlen);
}

int saga__wire_check(const ProtobufCMessage *msg, char *errbuf,
                     size_t errlen) {
  if (!msg)
    return saga__errf(SAGA_EINVAL, errbuf, errlen, "no message");
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  if (d == &saga__v1__start_saga__descriptor) {
    const Saga__V1__StartSaga *m = (const Saga__V1__StartSaga *)msg;
    CHECK(check_id("saga_id", m->saga_id, 0, errbuf, errlen));
    CHECK(check_id("saga_type", m->saga_type, 1, errbuf, errlen));
  } else if (d == &saga__v1__command__descriptor) {
    const Saga__V1__Command *m = (const Saga__V1__Command *)msg;
    CHECK(check_id("saga_id", m->saga_id, 0, errbuf, errlen));
    CHECK(check_optional_id("saga_type", m->saga_type, errbuf, errlen));
    CHECK(check_id("step", m->step, 0, errbuf, errlen));
    CHECK(check_action(m->action, errbuf, errlen));
    CHECK(check_key(m->idempotency_key, m->saga_id, m->step, m->action,
                    m->attempt, errbuf, errlen));
    CHECK(check_id("reply_topic", m->reply_topic, 1, errbuf, errlen));
    CHECK(check_optional_id("action_name", m->action_name, errbuf, errlen));
  } else if (d == &saga__v1__reply__descriptor) {
    const Saga__V1__Reply *m = (const Saga__V1__Reply *)msg;
    CHECK(check_id("saga_id", m->saga_id, 0, errbuf, errlen));
    CHECK(check_id("step", m->step, 0, errbuf, errlen));
    CHECK(check_action(m->action, errbuf, errlen));
    CHECK(check_key(m->idempotency_key, m->saga_id, m->step, m->action,
                    m->attempt, errbuf, errlen));
    if (m->outcome < SAGA__V1__OUTCOME__OUTCOME_SUCCESS ||
        m->outcome > SAGA__V1__OUTCOME__OUTCOME_RETRYABLE)
      return saga__errf(SAGA_EMISSING, errbuf, errlen,
                  "outcome must be SUCCESS, FAILURE or RETRYABLE, got %d",
                  m->outcome);
  } else if (d == &saga__v1__notification__descriptor) {
    const Saga__V1__Notification *m = (const Saga__V1__Notification *)msg;
    CHECK(check_id("saga_id", m->saga_id, 0, errbuf, errlen));
    CHECK(check_optional_id("saga_type", m->saga_type, errbuf, errlen));
    if (m->kind < SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_STARTED ||
        m->kind > SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_CANCEL_REFUSED)
      return saga__errf(SAGA_EMISSING, errbuf, errlen,
                  "notification kind %d is unknown", m->kind);
  } else if (d == &saga__v1__operator_action__descriptor) {
    const Saga__V1__OperatorAction *m = (const Saga__V1__OperatorAction *)msg;
    CHECK(check_id("saga_id", m->saga_id, 0, errbuf, errlen));
    if (m->action != SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY &&
        m->action != SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RESOLVE)
      return saga__errf(SAGA_EMISSING, errbuf, errlen,
                        "action must be RETRY or RESOLVE, got %d", m->action);
    CHECK(check_trail(m->reason, m->operator_, errbuf, errlen));
  } else if (d == &saga__v1__cancel_saga__descriptor) {
    const Saga__V1__CancelSaga *m = (const Saga__V1__CancelSaga *)msg;
    CHECK(check_id("saga_id", m->saga_id, 0, errbuf, errlen));
    CHECK(check_trail(m->reason, m->operator_, errbuf, errlen));
  } else {
    return saga__errf(SAGA_EINVAL, errbuf, errlen, "message type %s is not saga.v1",
                d->name);
  }
  return 0;
}

/* protobuf-c hands a string field over NUL-terminated, so a NUL inside
 * its bytes silently cuts it: a saga_id "nul-b\0zzz" would decode as
 * "nul-b" and act on another saga. Walk the packed fields (saga.v1
 * messages have no nested messages) and refuse a string field whose bytes
 * hold a NUL. Bytes this walk cannot follow are refused too, so no string
 * escapes it. Returns 0, SAGA_EMISSING or SAGA_EDECODE. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return 0;
  }
  return -1;
}

static int check_nul_in_strings(const ProtobufCMessageDescriptor *d,
                                const uint8_t *p, size_t len, char *errbuf,
                                size_t errlen) {
  const uint8_t *end = p + len;
  while (p < end) {
    uint64_t tag, n;
    if (varint(&p, end, &tag) != 0)
      goto malformed;
    switch (tag & 7) {
    case 0:
      if (varint(&p, end, &n) != 0)
        goto malformed;
      break;
    case 1:
    case 5: {
      size_t w = (tag & 7) == 1 ? 8 : 4;
      if ((size_t)(end - p) < w)
        goto malformed;
      p += w;
      break;
    }
    case 2: {
      if (varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
        goto malformed;
      const ProtobufCFieldDescriptor *f =
          tag >> 3 <= UINT32_MAX
              ? protobuf_c_message_descriptor_get_field(d,
                                                        (unsigned)(tag >> 3))
              : NULL;
      const void *nul = memchr(p, '\0', (size_t)n);
      if (f && f->type == PROTOBUF_C_TYPE_STRING && nul)
        return saga__errf(SAGA_EMISSING, errbuf, errlen,
                          "%s contains a NUL byte at byte %zu", f->name,
                          (size_t)((const uint8_t *)nul - p));
      p += n;
      break;
    }
    default:
      goto malformed;
    }
  }
  return 0;
malformed:
  return saga__errf(SAGA_EDECODE, errbuf, errlen,
                    "%s of %zu bytes could not be decoded (truncated or "
                    "malformed)",
                    d->name, len);
}

static const char *body_saga_id(const ProtobufCMessage *msg) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  if (d == &saga__v1__start_saga__descriptor)
    return ((const Saga__V1__StartSaga *)msg)->saga_id;
  if (d == &saga__v1__command__descriptor)
    return ((const Saga__V1__Command *)msg)->saga_id;
  if (d == &saga__v1__reply__descriptor)
    return ((const Saga__V1__Reply *)msg)->saga_id;
  if (d == &saga__v1__operator_action__descriptor)
    return ((const Saga__V1__OperatorAction *)msg)->saga_id;
  if (d == &saga__v1__cancel_saga__descriptor)
    return ((const Saga__V1__CancelSaga *)msg)->saga_id;
  return ((const Saga__V1__Notification *)msg)->saga_id;
}

int saga__wire_pack(const ProtobufCMessage *msg, const saga_meta_t *meta,
                    size_t max_bytes, void **out, size_t *out_len,
                    saga__hdrs_t *hdrs, char *errbuf, size_t errlen) {
  if (!msg || !out || !out_len || !hdrs)
    return saga__errf(SAGA_EINVAL, errbuf, errlen, "invalid argument to encode");
  saga__hdrs_init(hdrs);
  if (!max_bytes)
    max_bytes = SAGA_DEFAULT_MAX_MESSAGE_BYTES;
  CHECK(saga__wire_check(msg, errbuf, errlen));
  saga_meta_t none = {0};
  if (!meta)
    meta = &none;
  const char *hv[] = {meta->correlation_id, meta->causation_id,
                      meta->traceparent};
  const char *hn[] = {"correlation_id", "causation_id", "traceparent"};
  const char *hh[] = {SAGA_HDR_CORRELATION, SAGA_HDR_CAUSATION,
                      SAGA_HDR_TRACEPARENT};
  for (size_t i = 0; i < 3; i++)
    if (hv[i] && *hv[i])
      CHECK(check_str(hn[i], hv[i], header_max(hh[i]), STR_ID_SLASH, errbuf,
                      errlen));
  size_t n = protobuf_c_message_get_packed_size(msg);
  if (n > max_bytes)
    return saga__errf(SAGA_ETOOBIG, errbuf, errlen,
                "%s of %zu bytes exceeds the ceiling of %zu bytes",
                msg->descriptor->name, n, max_bytes);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf)
    goto nomem;
  protobuf_c_message_pack(msg, buf);
  /* five headers fit the list's inline room: these cannot fail */
  saga__hdrs_add_text(hdrs, SAGA_HDR_TYPE, msg->descriptor->name);
  saga__hdrs_add_text(hdrs, SAGA_HDR_SAGA_ID, body_saga_id(msg));
  saga__hdrs_add_text(hdrs, SAGA_HDR_CORRELATION, meta->correlation_id);
  saga__hdrs_add_text(hdrs, SAGA_HDR_CAUSATION, meta->causation_id);
  saga__hdrs_add_text(hdrs, SAGA_HDR_TRACEPARENT, meta->traceparent);
  *out = buf;
  *out_len = n;
  return 0;
nomem:
  return saga__errf(SAGA_ENOMEM, errbuf, errlen, "out of memory encoding %s",
              msg->descriptor->name);
}

/* The last header of each of the n names in one pass over the view:
 * val[i] and len[i], val[i] NULL when absent (or without a value). */
static void find_headers(const saga__hdr_view_t *v, const char *const *names,
                         size_t n, const void **val, size_t *len) {
  for (size_t k = 0; k < n; k++) {
    val[k] = NULL;
    len[k] = 0;
  }
  if (!v || !v->at)
    return;
  saga__hdr_t h;
  for (size_t i = 0; v->at(v->src, i, &h) == 0; i++)
    for (size_t k = 0; k < n; k++)
      if (!strcmp(h.name, names[k])) {
        val[k] = h.value;
        len[k] = h.len;
        break;
      }
}

/* Copy header `name`'s value (v, n bytes; v NULL = absent) into dst (""):
 * bounded, UTF-8, no NUL bytes, no control characters. */
static int get_header(const char *name, const void *v, size_t n, char *dst,
                      char *errbuf, size_t errlen) {
  dst[0] = '\0';
  if (!v)
    return 0;
  if (n > header_max(name))
    return saga__errf(SAGA_EMISSING, errbuf, errlen,
                "header \"%s\" is %zu bytes long, the ceiling is %zu", name,
                n, header_max(name));
  if (memchr(v, '\0', n))
    return saga__errf(SAGA_EMISSING, errbuf, errlen,
                "header \"%s\" contains a NUL byte", name);
  /* The encoder refuses control characters in these values: accepting
   * them here would let a receiver take a message it cannot answer (a
   * participant echoes correlation-id into its reply). */
  unsigned char any = 0; /* the bytes or'ed: ASCII needs no UTF-8 check */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = ((const unsigned char *)v)[i];
    any |= c;
    if (c < 0x20 || c == 0x7f)
      return saga__errf(SAGA_EMISSING, errbuf, errlen,
                        "header \"%s\" contains a control character at "
                        "byte %zu", name, i);
  }
  size_t bad = any & 0x80 ? saga__utf8_bad_at(v, n) : n;
  if (bad < n)
    return saga__errf(SAGA_EMISSING, errbuf, errlen,
                      "header \"%s\" is not valid UTF-8 at byte %zu", name,
                      bad);
  memcpy(dst, v, n);
  dst[n] = '\0';
  return 0;
}

const ProtobufCMessageDescriptor *
saga__wire_type_in(const saga__hdr_view_t *hdrs) {
  static const char *const names[] = {SAGA_HDR_TYPE};
  const void *v;
  size_t n;
  char type[SAGA_WIRE_MAX_ID + 1];
  find_headers(hdrs, names, 1, &v, &n);
  if (get_header(SAGA_HDR_TYPE, v, n, type, NULL, 0) != 0 || !type[0])
    return NULL;
  for (size_t i = 0; i < sizeof known_types / sizeof known_types[0]; i++)
    if (!strcmp(type, known_types[i]->name))
      return known_types[i];
  return NULL;
}

int saga__wire_unpack(const ProtobufCMessageDescriptor *want,
                      const void *value, size_t len,
                      const saga__hdr_view_t *hdrs, size_t max_bytes,
                      ProtobufCMessage **out, saga__wire_meta_t *meta,
                      char *errbuf, size_t errlen) {
  if (!want || !out || !meta || (!value && len))
    return saga__errf(SAGA_EINVAL, errbuf, errlen, "invalid argument to decode");
  *out = NULL;
  if (!max_bytes)
    max_bytes = SAGA_DEFAULT_MAX_MESSAGE_BYTES;
  enum { H_TYPE, H_SAGA, H_CORR, H_CAUS, H_TP, H_N };
  static const char *const names[H_N] = {
      SAGA_HDR_TYPE, SAGA_HDR_SAGA_ID, SAGA_HDR_CORRELATION,
      SAGA_HDR_CAUSATION, SAGA_HDR_TRACEPARENT};
  const void *hv[H_N];
  size_t hl[H_N];
  find_headers(hdrs, names, H_N, hv, hl);
  char type[SAGA_WIRE_MAX_ID + 1];
  CHECK(get_header(SAGA_HDR_TYPE, hv[H_TYPE], hl[H_TYPE], type, errbuf,
                   errlen));
  if (!type[0])
    return saga__errf(SAGA_ETYPE, errbuf, errlen,
                "header \"%s\" is missing, expected \"%s\"", SAGA_HDR_TYPE,
                want->name);
  if (strcmp(type, want->name) != 0)
    return saga__errf(SAGA_ETYPE, errbuf, errlen,
                "header \"%s\" is \"%s\", expected \"%s\"", SAGA_HDR_TYPE,
                type, want->name);
  if (len > max_bytes)
    return saga__errf(SAGA_ETOOBIG, errbuf, errlen,
                "%s of %zu bytes exceeds the ceiling of %zu bytes", want->name,
                len, max_bytes);
  CHECK(get_header(SAGA_HDR_SAGA_ID, hv[H_SAGA], hl[H_SAGA], meta->saga_id,
                   errbuf, errlen));
  CHECK(get_header(SAGA_HDR_CORRELATION, hv[H_CORR], hl[H_CORR],
                   meta->correlation_id, errbuf, errlen));
  CHECK(get_header(SAGA_HDR_CAUSATION, hv[H_CAUS], hl[H_CAUS],
                   meta->causation_id, errbuf, errlen));
  CHECK(get_header(SAGA_HDR_TRACEPARENT, hv[H_TP], hl[H_TP],
                   meta->traceparent, errbuf, errlen));
  ProtobufCMessage *m =
      protobuf_c_message_unpack(want, NULL, len, (const uint8_t *)value);
  if (!m)
    return saga__errf(SAGA_EDECODE, errbuf, errlen,
                "%s of %zu bytes could not be decoded (truncated or malformed)",
                want->name, len);
  int rc = check_nul_in_strings(want, value, len, errbuf, errlen);
  if (!rc)
    rc = saga__wire_check(m, errbuf, errlen);
  if (!rc && meta->saga_id[0] && strcmp(meta->saga_id, body_saga_id(m)))
    rc = saga__errf(SAGA_EMISSING, errbuf, errlen,
              "header \"%s\" is \"%s\" but the message is for saga \"%s\"",
              SAGA_HDR_SAGA_ID, meta->saga_id, body_saga_id(m));
  if (rc) {
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
  }
  if (!meta->saga_id[0])
    snprintf(meta->saga_id, sizeof meta->saga_id, "%s", body_saga_id(m));
  *out = m;
  return 0;
}

void saga__wire_free(ProtobufCMessage *msg) {
  if (msg)
    protobuf_c_message_free_unpacked(msg, NULL);
}

void saga__wire_reply_to(Saga__V1__Reply *r, const Saga__V1__Command *c,
                         Saga__V1__Outcome outcome, const char *reason,
                         const void *payload, size_t payload_len) {
  saga__v1__reply__init(r);
  r->saga_id = c->saga_id;
  r->step = c->step;
  r->action = c->action;
  r->attempt = c->attempt;
  r->idempotency_key = c->idempotency_key;
  r->outcome = outcome;
  r->reason = SAGA_MUT(reason ? reason : "");
  r->payload.data = (uint8_t *)(uintptr_t)payload;
  r->payload.len = payload ? payload_len : 0;
}

int saga__idempotency_key(char *buf, size_t len, const char *saga_id,
                          const char *step, int action, uint32_t attempt) {
  const char *a = action == SAGA_ACTION_DO           ? "DO"
                  : action == SAGA_ACTION_COMPENSATE ? "COMPENSATE"
                                                     : NULL;
  if (!a || !saga_id || !step)
    return SAGA_EINVAL;
  /* Built by hand: every command and reply checks one (snprintf cost a
   * tenth of sagad's instructions per saga, bench/engine). */
  char num[10];
  size_t k = sizeof num;
  uint32_t v = attempt;
  do
    num[--k] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  size_t ni = strlen(saga_id), ns = strlen(step), na = strlen(a);
  size_t nn = sizeof num - k;
  if (!buf || ni + ns + na + nn + 3 >= len) {
    /* too long: snprintf's cut (the caller is told) */
    if (buf && len)
      snprintf(buf, len, "%s/%s/%s/%" PRIu32, saga_id, step, a, attempt);
    return SAGA_ETOOBIG;
  }
  char *o = buf;
  memcpy(o, saga_id, ni);
  o += ni;
  *o++ = '/';
  memcpy(o, step, ns);
  o += ns;
  *o++ = '/';
  memcpy(o, a, na);
  o += na;
  *o++ = '/';
  memcpy(o, num + k, nn);
  o[nn] = '\0';
  return 0;
}

