/* The wire codec: round trips of every saga.v1 message and every way a
 * decode refuses input (truncated, wrong or missing type header, oversize,
 * missing fields, disagreeing headers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga/client.h"
#include "wire_kafka.h"
/* after protobuf-c */
#include "pb_nul.h"

static char errbuf[512];

static Saga__V1__Command make_command(void) {
  Saga__V1__Command c;
  saga__v1__command__init(&c);
  c.saga_id = SAGA_MUT("saga-1");
  c.saga_type = SAGA_MUT("order");
  c.definition_version = 3;
  c.step = SAGA_MUT("reserve");
  c.action = SAGA__V1__ACTION__ACTION_DO;
  c.attempt = 2;
  c.idempotency_key = SAGA_MUT("saga-1/reserve/DO/2");
  c.deadline_ms = 1700000000123;
  c.payload.data = (uint8_t *)SAGA_MUT("{\"sku\":1}");
  c.payload.len = 9;
  c.reply_topic = SAGA_MUT("saga.inbox");
  return c;
}

/* Encode then decode; returns the decode's code and frees everything. */
static int encode_decode(const ProtobufCMessage *m,
                         const ProtobufCMessageDescriptor *want,
                         ProtobufCMessage **out, saga__wire_meta_t *meta) {
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  saga_meta_t in = {.correlation_id = "corr-9", .causation_id = "cause-8",
                    .traceparent = "00-0af7651916cd43dd8448eb211c80319c-"
                                   "b7ad6b7169203331-01"};
  int rc = saga__wire_encode(m, &in, 0, &buf, &len, &h, errbuf, sizeof errbuf);
  assert_int_equal(rc, 0);
  rc = saga__wire_decode(want, buf, len, h, 0, out, meta, errbuf,
                         sizeof errbuf);
  free(buf);
  rd_kafka_headers_destroy(h);
  return rc;
}

static void test_command_round_trips_with_headers(void **state) {
  (void)state;
  Saga__V1__Command c = make_command();
  ProtobufCMessage *out;
  saga__wire_meta_t meta;
  assert_int_equal(encode_decode(&c.base, &saga__v1__command__descriptor, &out,
                                 &meta),
                   0);
  Saga__V1__Command *d = (Saga__V1__Command *)out;
  assert_string_equal(d->saga_id, "saga-1");
  assert_string_equal(d->saga_type, "order");
  assert_int_equal(d->definition_version, 3);
  assert_string_equal(d->step, "reserve");
  assert_int_equal(d->action, SAGA__V1__ACTION__ACTION_DO);
  assert_int_equal(d->attempt, 2);
  assert_string_equal(d->idempotency_key, "saga-1/reserve/DO/2");
  assert_int_equal(d->deadline_ms, 1700000000123);
  assert_int_equal(d->payload.len, 9);
  assert_memory_equal(d->payload.data, "{\"sku\":1}", 9);
  assert_string_equal(d->reply_topic, "saga.inbox");
  assert_string_equal(meta.saga_id, "saga-1");
  assert_string_equal(meta.correlation_id, "corr-9");
  assert_string_equal(meta.causation_id, "cause-8");
  assert_string_equal(meta.traceparent,
                      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  saga__wire_free(out);
}

static void test_start_saga_round_trips_with_and_without_version(void **s) {
  (void)s;
  for (int pinned = 0; pinned < 2; pinned++) {
    Saga__V1__StartSaga m;
  saga__v1__start_saga__init(&m);
    m.saga_id = SAGA_MUT("s-2");
    m.saga_type = SAGA_MUT("order");
    if (pinned) {
      m.definition_version_present_case =
          SAGA__V1__START_SAGA__DEFINITION_VERSION_PRESENT_DEFINITION_VERSION;
      m.definition_version = 0; /* presence survives even for zero */
    }
    m.input.data = (uint8_t *)SAGA_MUT("{}");
    m.input.len = 2;
    m.requested_at_ms = 42;
    ProtobufCMessage *out;
    saga__wire_meta_t meta;
    assert_int_equal(encode_decode(&m.base, &saga__v1__start_saga__descriptor,
                                   &out, &meta),
                     0);
    Saga__V1__StartSaga *d = (Saga__V1__StartSaga *)out;
    assert_string_equal(d->saga_type, "order");
    assert_int_equal(d->definition_version_present_case,
                     m.definition_version_present_case);
    assert_int_equal(d->input.len, 2);
    assert_int_equal(d->requested_at_ms, 42);
    saga__wire_free(out);
  }
}

static void test_a_reply_to_a_command_echoes_its_identity(void **state) {
  (void)state;
  Saga__V1__Command c;
  saga__v1__command__init(&c);
  c.saga_id = SAGA_MUT("s-9");
  c.step = SAGA_MUT("ship");
  c.action = SAGA__V1__ACTION__ACTION_COMPENSATE;
  c.attempt = 3;
  c.idempotency_key = SAGA_MUT("s-9/ship/COMPENSATE/3");
  c.reply_topic = SAGA_MUT("saga.inbox");
  Saga__V1__Reply r;
  saga__wire_reply_to(&r, &c, SAGA__V1__OUTCOME__OUTCOME_SUCCESS, NULL,
                      "{\"ok\":1}", 8);
  assert_ptr_equal(r.saga_id, c.saga_id);
  assert_ptr_equal(r.step, c.step);
  assert_int_equal(r.action, SAGA__V1__ACTION__ACTION_COMPENSATE);
  assert_int_equal(r.attempt, 3);
  assert_ptr_equal(r.idempotency_key, c.idempotency_key);
  assert_int_equal(r.outcome, SAGA__V1__OUTCOME__OUTCOME_SUCCESS);
  assert_string_equal(r.reason, "");
  assert_int_equal(r.payload.len, 8);
  assert_memory_equal(r.payload.data, "{\"ok\":1}", 8);
  char err[256];
  assert_int_equal(saga__wire_check(&r.base, err, sizeof err), 0);
  saga__wire_reply_to(&r, &c, SAGA__V1__OUTCOME__OUTCOME_FAILURE, "declined",
                      NULL, 5);
  assert_string_equal(r.reason, "declined");
  assert_int_equal(r.payload.len, 0); /* no payload, whatever the length */
}

static void test_reply_and_notification_round_trip(void **state) {
  (void)state;
  Saga__V1__Reply r;
  saga__v1__reply__init(&r);
  r.saga_id = SAGA_MUT("s-3");
  r.step = SAGA_MUT("charge");
  r.action = SAGA__V1__ACTION__ACTION_COMPENSATE;
  r.attempt = 1;
  r.idempotency_key = SAGA_MUT("s-3/charge/COMPENSATE/1");
  r.outcome = SAGA__V1__OUTCOME__OUTCOME_RETRYABLE;
  r.reason = SAGA_MUT("card service unavailable");
  ProtobufCMessage *out;
  saga__wire_meta_t meta;
  assert_int_equal(
      encode_decode(&r.base, &saga__v1__reply__descriptor, &out, &meta), 0);
  assert_int_equal(((Saga__V1__Reply *)out)->outcome,
                   SAGA__V1__OUTCOME__OUTCOME_RETRYABLE);
  assert_string_equal(((Saga__V1__Reply *)out)->reason,
                      "card service unavailable");
  saga__wire_free(out);

  Saga__V1__Notification n;
  saga__v1__notification__init(&n);
  n.saga_id = SAGA_MUT("s-3");
  n.kind = SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATED;
  n.reason = SAGA_MUT("charge failed");
  n.at_ms = 7;
  assert_int_equal(encode_decode(&n.base, &saga__v1__notification__descriptor,
                                 &out, &meta),
                   0);
  assert_int_equal(((Saga__V1__Notification *)out)->kind,
                   SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATED);
  saga__wire_free(out);
}

/* A packed command plus its headers, for the error paths. */
typedef struct packed {
  void *buf;
  size_t len;
  rd_kafka_headers_t *h;
} packed_t;

static packed_t pack(const ProtobufCMessage *m) {
  packed_t p;
  assert_int_equal(saga__wire_encode(m, NULL, 0, &p.buf, &p.len, &p.h, errbuf,
                                     sizeof errbuf),
                   0);
  return p;
}

static void unpack_free(packed_t *p) {
  free(p->buf);
  rd_kafka_headers_destroy(p->h);
}

static int decode_command(const void *buf, size_t len,
                          const rd_kafka_headers_t *h, size_t max) {
  ProtobufCMessage *out = (ProtobufCMessage *)(uintptr_t)1;
  saga__wire_meta_t meta;
  int rc = saga__wire_decode(&saga__v1__command__descriptor, buf, len, h, max,
                             &out, &meta, errbuf, sizeof errbuf);
  if (rc == 0)
    saga__wire_free(out);
  else
    assert_null(out);
  return rc;
}

static void test_every_truncation_of_a_command_is_refused(void **state) {
  (void)state;
  Saga__V1__Command c = make_command();
  packed_t p = pack(&c.base);
  for (size_t n = 0; n < p.len; n++) {
    int rc = decode_command(p.buf, n, p.h, 0);
    /* A cut at a field boundary parses but lacks required fields. */
    assert_true(rc == SAGA_EDECODE || rc == SAGA_EMISSING);
  }
  assert_int_equal(decode_command(p.buf, p.len, p.h, 0), 0);
  unpack_free(&p);
}

static void test_garbage_bytes_are_refused_as_undecodable(void **state) {
  (void)state;
  Saga__V1__Command c = make_command();
  packed_t p = pack(&c.base);
  /* field 1, length-delimited, claims 127 bytes: lengths are not trusted */
  const uint8_t lie[] = {0x0a, 0x7f, 'a', 'b'};
  assert_int_equal(decode_command(lie, sizeof lie, p.h, 0), SAGA_EDECODE);
  assert_non_null(strstr(errbuf, "could not be decoded"));
  unpack_free(&p);
}

static void test_missing_or_wrong_type_header_is_refused(void **state) {
  (void)state;
  Saga__V1__Command c = make_command();
  packed_t p = pack(&c.base);
  assert_int_equal(decode_command(p.buf, p.len, NULL, 0), SAGA_ETYPE);
  assert_non_null(strstr(errbuf, "is missing"));
  rd_kafka_headers_t *h = rd_kafka_headers_new(1);
  assert_int_equal(decode_command(p.buf, p.len, h, 0), SAGA_ETYPE);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.Reply", -1);
  assert_int_equal(decode_command(p.buf, p.len, h, 0), SAGA_ETYPE);
  assert_string_equal(errbuf, "header \"saga-message-type\" is "
                              "\"saga.v1.Reply\", expected \"saga.v1.Command\"");
  rd_kafka_headers_destroy(h);
  unpack_free(&p);
}

static void test_oversize_message_is_refused_before_parsing(void **state) {
  (void)state;
  Saga__V1__Command c = make_command();
  packed_t p = pack(&c.base);
  assert_int_equal(decode_command(p.buf, p.len, p.h, p.len - 1), SAGA_ETOOBIG);
  assert_non_null(strstr(errbuf, "exceeds the ceiling"));
  assert_int_equal(decode_command(p.buf, p.len, p.h, p.len), 0);
  /* encode has the same ceiling */
  void *buf;
  size_t len;
  rd_kafka_headers_t *h;
  assert_int_equal(saga__wire_encode(&c.base, NULL, p.len - 1, &buf, &len, &h,
                                     errbuf, sizeof errbuf),
                   SAGA_ETOOBIG);
  unpack_free(&p);
}

/* Encode that must fail: nothing allocated, the code returned. */
static int encode_msg_fails(const ProtobufCMessage *m) {
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  int rc = saga__wire_encode(m, NULL, 0, &buf, &len, &h, errbuf,
                             sizeof errbuf);
  assert_null(buf);
  assert_null(h);
  return rc;
}

/* Encode refuses m as SAGA_EMISSING with a message holding `says`. */
static void assert_refused(const ProtobufCMessage *m, const char *says) {
  assert_int_equal(encode_msg_fails(m), SAGA_EMISSING);
  if (!strstr(errbuf, says))
    fail_msg("expected \"%s\" in \"%s\"", says, errbuf);
}

static void test_missing_required_fields_are_named(void **state) {
  (void)state;
  Saga__V1__Command c;

  c = make_command();
  c.step = SAGA_MUT("");
  assert_refused(&c.base, "step is missing");

  c = make_command();
  c.action = SAGA__V1__ACTION__ACTION_UNSPECIFIED;
  assert_refused(&c.base, "action must be");

  c = make_command();
  c.idempotency_key = SAGA_MUT("saga-1/reserve/DO/1");
  assert_refused(&c.base, "does not match \"saga-1/reserve/DO/2\"");

  c = make_command();
  c.saga_id = SAGA_MUT("a/b");
  assert_refused(&c.base, "forbidden character");

  /* On the decode side: a body without reply_topic, packed by hand. */
  c = make_command();
  c.reply_topic = SAGA_MUT("");
  size_t n = protobuf_c_message_get_packed_size(&c.base);
  uint8_t *raw = malloc(n);
  protobuf_c_message_pack(&c.base, raw);
  rd_kafka_headers_t *th = rd_kafka_headers_new(1);
  rd_kafka_header_add(th, SAGA_HDR_TYPE, -1, "saga.v1.Command", -1);
  assert_int_equal(decode_command(raw, n, th, 0), SAGA_EMISSING);
  assert_string_equal(errbuf, "reply_topic is missing");
  /* an empty value is a Command with nothing set */
  assert_int_equal(decode_command("", 0, th, 0), SAGA_EMISSING);
  assert_string_equal(errbuf, "saga_id is missing");
  rd_kafka_headers_destroy(th);
  free(raw);
}

static void test_headers_that_disagree_or_overflow_are_refused(void **state) {
  (void)state;
  Saga__V1__Command c = make_command();
  packed_t p = pack(&c.base);
  rd_kafka_headers_t *h = rd_kafka_headers_new(3);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.Command", -1);
  rd_kafka_header_add(h, SAGA_HDR_SAGA_ID, -1, "someone-else", -1);
  assert_int_equal(decode_command(p.buf, p.len, h, 0), SAGA_EMISSING);
  assert_non_null(strstr(errbuf, "\"someone-else\" but the message is for"));
  rd_kafka_headers_destroy(h);

  char big[SAGA_WIRE_MAX_ID + 2];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  h = rd_kafka_headers_new(3);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.Command", -1);
  rd_kafka_header_add(h, SAGA_HDR_TRACEPARENT, -1, big, -1);
  assert_int_equal(decode_command(p.buf, p.len, h, 0), SAGA_EMISSING);
  assert_non_null(strstr(errbuf, "the ceiling is"));
  rd_kafka_headers_destroy(h);

  h = rd_kafka_headers_new(3);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.Command", -1);
  rd_kafka_header_add(h, SAGA_HDR_CORRELATION, -1, "a\0b", 3);
  assert_int_equal(decode_command(p.buf, p.len, h, 0), SAGA_EMISSING);
  assert_non_null(strstr(errbuf, "NUL byte"));
  rd_kafka_headers_destroy(h);
  unpack_free(&p);
}

/* Found by fuzz_wire: a correlation-id or traceparent header holding a
 * control character decoded, but the participant's reply echoing it could
 * not be encoded, so the command was never answered nor acknowledged. */
static void test_headers_with_control_characters_are_refused(void **state) {
  (void)state;
  Saga__V1__Command c = make_command();
  packed_t p = pack(&c.base);
  const char *names[] = {SAGA_HDR_CORRELATION, SAGA_HDR_TRACEPARENT,
                         SAGA_HDR_CAUSATION, SAGA_HDR_SAGA_ID};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.Command", -1);
    rd_kafka_header_add(h, names[i], -1, "corr\n1", -1);
    assert_int_equal(decode_command(p.buf, p.len, h, 0), SAGA_EMISSING);
    assert_non_null(strstr(errbuf, "control character at byte 4"));
    rd_kafka_headers_destroy(h);
  }
  rd_kafka_headers_t *h = rd_kafka_headers_new(3);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.Command", -1);
  rd_kafka_header_add(h, SAGA_HDR_CORRELATION, -1, "corr\x7f", -1);
  assert_int_equal(decode_command(p.buf, p.len, h, 0), SAGA_EMISSING);
  rd_kafka_headers_destroy(h);
  unpack_free(&p);
}

/* Found from a fuzz_wire input: protobuf-c does not check that proto3
 * strings are UTF-8, so a saga id of raw bytes decoded; the event store
 * and PostgreSQL refuse it as text, other languages' decoders refuse the
 * whole message. Ids and headers must be UTF-8 both ways. */
static void test_ids_and_headers_that_are_not_utf8_are_refused(void **state) {
  (void)state;
  Saga__V1__Command c = make_command();
  packed_t p = pack(&c.base);
  const char *bad[] = {"a\xff", "a\xc0\xaf", "a\xed\xa0\x80", "a\xe2\x82"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.Command", -1);
    rd_kafka_header_add(h, SAGA_HDR_CORRELATION, -1, bad[i], -1);
    assert_int_equal(decode_command(p.buf, p.len, h, 0), SAGA_EMISSING);
    assert_non_null(strstr(errbuf, "not valid UTF-8 at byte 1"));
    rd_kafka_headers_destroy(h);
  }
  unpack_free(&p);
  /* A body saga id of raw bytes, packed by hand past the encoder. */
  Saga__V1__StartSaga st;
  saga__v1__start_saga__init(&st);
  st.saga_id = SAGA_MUT("order-\xff\xfe");
  st.saga_type = SAGA_MUT("order");
  uint8_t raw[64];
  size_t n = saga__v1__start_saga__pack(&st, raw);
  rd_kafka_headers_t *h = rd_kafka_headers_new(1);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.StartSaga", -1);
  ProtobufCMessage *m = NULL;
  saga__wire_meta_t meta;
  assert_int_equal(saga__wire_decode(&saga__v1__start_saga__descriptor, raw,
                                     n, h, 0, &m, &meta, errbuf,
                                     sizeof errbuf),
                   SAGA_EMISSING);
  assert_null(m);
  assert_non_null(strstr(errbuf, "saga_id is not valid UTF-8 at byte 6"));
  rd_kafka_headers_destroy(h);
  /* The encoder refuses it too. */
  void *buf = NULL;
  size_t len = 0;
  assert_int_equal(saga__wire_encode(&st.base, NULL, 0, &buf, &len, &h,
                                     errbuf, sizeof errbuf),
                   SAGA_EMISSING);
  /* A valid multi-byte id is fine. */
  st.saga_id = SAGA_MUT("commande-\xc3\xa9t\xc3\xa9-\xf0\x9f\x9a\x80");
  assert_int_equal(saga__wire_encode(&st.base, NULL, 0, &buf, &len, &h,
                                     errbuf, sizeof errbuf),
                   0);
  assert_int_equal(saga__wire_decode(&saga__v1__start_saga__descriptor, buf,
                                     len, h, 0, &m, &meta, errbuf,
                                     sizeof errbuf),
                   0);
  saga__wire_free(m);
  rd_kafka_headers_destroy(h);
  free(buf);
}

static Saga__V1__OperatorAction make_operator_action(void) {
  Saga__V1__OperatorAction a;
  saga__v1__operator_action__init(&a);
  a.saga_id = SAGA_MUT("s-park");
  a.action = SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY;
  a.reason = SAGA_MUT("stock fixed by hand\nticket 42");
  a.operator_ = SAGA_MUT("alice");
  return a;
}

static void test_operator_action_round_trips_with_its_type_header(void **s) {
  (void)s;
  Saga__V1__OperatorAction a = make_operator_action();
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  assert_int_equal(saga__wire_encode(&a.base, NULL, 0, &buf, &len, &h, errbuf,
                                     sizeof errbuf),
                   0);
  /* The header the coordinator's inbox dispatches on. */
  const void *v = NULL;
  size_t n = 0;
  assert_int_equal(rd_kafka_header_get_last(h, SAGA_HDR_TYPE, &v, &n),
                   RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(n, strlen("saga.v1.OperatorAction"));
  assert_memory_equal(v, "saga.v1.OperatorAction", n);
  assert_ptr_equal(saga__wire_type_of(h),
                   &saga__v1__operator_action__descriptor);
  ProtobufCMessage *out = NULL;
  saga__wire_meta_t meta;
  assert_int_equal(saga__wire_decode(&saga__v1__operator_action__descriptor,
                                     buf, len, h, 0, &out, &meta, errbuf,
                                     sizeof errbuf),
                   0);
  Saga__V1__OperatorAction *d = (Saga__V1__OperatorAction *)out;
  assert_string_equal(d->saga_id, "s-park");
  assert_int_equal(d->action,
                   SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY);
  assert_string_equal(d->reason, "stock fixed by hand\nticket 42");
  assert_string_equal(d->operator_, "alice");
  assert_string_equal(meta.saga_id, "s-park");
  saga__wire_free(out);
  /* A Reply decoder refuses it by its type header. */
  assert_int_equal(saga__wire_decode(&saga__v1__reply__descriptor, buf, len,
                                     h, 0, &out, &meta, errbuf,
                                     sizeof errbuf),
                   SAGA_ETYPE);
  /* And the ceiling applies before parsing. */
  assert_int_equal(saga__wire_decode(&saga__v1__operator_action__descriptor,
                                     buf, len, h, len - 1, &out, &meta,
                                     errbuf, sizeof errbuf),
                   SAGA_ETOOBIG);
  rd_kafka_headers_destroy(h);
  free(buf);
  /* reason and operator are optional. */
  a.reason = SAGA_MUT("");
  a.operator_ = NULL;
  a.action = SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RESOLVE;
  assert_int_equal(saga__wire_encode(&a.base, NULL, 0, &buf, &len, &h, errbuf,
                                     sizeof errbuf),
                   0);
  rd_kafka_headers_destroy(h);
  free(buf);
}

static void test_operator_action_fields_are_checked_both_ways(void **s) {
  (void)s;
  Saga__V1__OperatorAction a = make_operator_action();
  a.saga_id = SAGA_MUT("");
  assert_refused(&a.base, "saga_id is missing");

  a = make_operator_action();
  a.action = SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_UNSPECIFIED;
  assert_refused(&a.base, "action must be RETRY or RESOLVE, got 0");

  a = make_operator_action();
  a.saga_id = SAGA_MUT("a/b");
  assert_refused(&a.base, "forbidden character");

  a = make_operator_action();
  a.operator_ = SAGA_MUT("al\x1bice");
  assert_refused(&a.base, "operator contains a forbidden character at "
                              "byte 2");

  a = make_operator_action();
  a.reason = SAGA_MUT("fixed \xc0\xaf");
  assert_refused(&a.base, "reason is not valid UTF-8 at byte 6");

  char big[SAGA_WIRE_MAX_TEXT + 2];
  memset(big, 'r', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  a = make_operator_action();
  a.reason = big;
  assert_refused(&a.base, "reason is 1025 bytes long");
  big[SAGA_WIRE_MAX_TEXT] = '\0'; /* exactly at the ceiling is fine */
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  assert_int_equal(saga__wire_encode(&a.base, NULL, 0, &buf, &len, &h, errbuf,
                                     sizeof errbuf),
                   0);
  rd_kafka_headers_destroy(h);
  free(buf);

  /* Decode side: an unknown action and a raw-byte id, packed by hand. */
  a = make_operator_action();
  a.action = (Saga__V1__OperatorActionKind)7;
  uint8_t raw[128];
  size_t n = saga__v1__operator_action__pack(&a, raw);
  h = rd_kafka_headers_new(1);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.OperatorAction", -1);
  ProtobufCMessage *m = NULL;
  saga__wire_meta_t meta;
  assert_int_equal(saga__wire_decode(&saga__v1__operator_action__descriptor,
                                     raw, n, h, 0, &m, &meta, errbuf,
                                     sizeof errbuf),
                   SAGA_EMISSING);
  assert_null(m);
  assert_string_equal(errbuf, "action must be RETRY or RESOLVE, got 7");
  a = make_operator_action();
  a.saga_id = SAGA_MUT("s-\xff");
  n = saga__v1__operator_action__pack(&a, raw);
  assert_int_equal(saga__wire_decode(&saga__v1__operator_action__descriptor,
                                     raw, n, h, 0, &m, &meta, errbuf,
                                     sizeof errbuf),
                   SAGA_EMISSING);
  assert_string_equal(errbuf, "saga_id is not valid UTF-8 at byte 2");
  /* Every truncation is refused, or (cut at a field boundary past the
   * required fields) decodes into a message that passed the checks. */
  a = make_operator_action();
  n = saga__v1__operator_action__pack(&a, raw);
  size_t refused = 0;
  for (size_t cut = 0; cut < n; cut++) {
    int rc = saga__wire_decode(&saga__v1__operator_action__descriptor, raw,
                               cut, h, 0, &m, &meta, errbuf, sizeof errbuf);
    if (rc == 0) {
      assert_string_equal(((Saga__V1__OperatorAction *)m)->saga_id, "s-park");
      saga__wire_free(m);
      continue;
    }
    assert_true(rc == SAGA_EDECODE || rc == SAGA_EMISSING);
    assert_null(m);
    refused++;
  }
  assert_true(refused >= n - 3);
  rd_kafka_headers_destroy(h);
}

static void test_type_header_names_a_known_message(void **state) {
  (void)state;
  rd_kafka_headers_t *h = rd_kafka_headers_new(1);
  assert_null(saga__wire_type_of(h));
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "saga.v1.Reply", -1);
  assert_ptr_equal(saga__wire_type_of(h), &saga__v1__reply__descriptor);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, "other.Thing", -1);
  assert_null(saga__wire_type_of(h));
  rd_kafka_headers_destroy(h);
}

static void test_idempotency_key_has_its_form(void **s) {
  (void)s;
  char k[64];
  assert_int_equal(saga__idempotency_key(k, sizeof k, "s", "pay",
                                         SAGA_ACTION_COMPENSATE, 3),
                   0);
  assert_string_equal(k, "s/pay/COMPENSATE/3");
  assert_int_equal(saga__idempotency_key(k, 8, "s", "pay", SAGA_ACTION_DO, 3),
                   SAGA_ETOOBIG);
  assert_int_equal(saga__idempotency_key(k, sizeof k, "s", "pay", 0, 3),
                   SAGA_EINVAL);
  /* the attempt in decimal, whatever its digits; the terminator must fit */
  assert_int_equal(saga__idempotency_key(k, sizeof k, "s", "pay",
                                         SAGA_ACTION_DO, 4294967295u),
                   0);
  assert_string_equal(k, "s/pay/DO/4294967295");
  assert_int_equal(
      saga__idempotency_key(k, sizeof k, "s", "pay", SAGA_ACTION_DO, 10), 0);
  assert_string_equal(k, "s/pay/DO/10");
  assert_int_equal(
      saga__idempotency_key(k, sizeof k, "s", "pay", SAGA_ACTION_DO, 0), 0);
  assert_string_equal(k, "s/pay/DO/0");
  assert_int_equal(saga__idempotency_key(k, 11, "s", "pay", SAGA_ACTION_DO, 3),
                   0);
  assert_string_equal(k, "s/pay/DO/3");
  assert_int_equal(saga__idempotency_key(k, 10, "s", "pay", SAGA_ACTION_DO, 3),
                   SAGA_ETOOBIG);
}

static int decode_typed(const ProtobufCMessageDescriptor *d, const void *b,
                        size_t len) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(1);
  rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, d->name, -1);
  ProtobufCMessage *out = NULL;
  saga__wire_meta_t meta;
  int rc = saga__wire_decode(d, b, len, h, 0, &out, &meta, errbuf,
                             sizeof errbuf);
  saga__wire_free(out);
  rd_kafka_headers_destroy(h);
  return rc;
}

static Saga__V1__CancelSaga make_cancel(void) {
  Saga__V1__CancelSaga c;
  saga__v1__cancel_saga__init(&c);
  c.saga_id = SAGA_MUT("s-cancel");
  c.reason = SAGA_MUT("customer called\nticket 7");
  c.operator_ = SAGA_MUT("alice@ops");
  c.requested_at_ms = 1700000000000;
  return c;
}

/* A CancelSaga travels like an OperatorAction: its own type header, and
 * saga_id, reason and operator checked as strictly both ways. */
static void test_cancel_saga_round_trips_and_is_checked_both_ways(void **s) {
  (void)s;
  Saga__V1__CancelSaga c = make_cancel();
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  assert_int_equal(saga__wire_encode(&c.base, NULL, 0, &buf, &len, &h, errbuf,
                                     sizeof errbuf),
                   0);
  assert_ptr_equal(saga__wire_type_of(h), &saga__v1__cancel_saga__descriptor);
  ProtobufCMessage *out = NULL;
  saga__wire_meta_t meta;
  assert_int_equal(saga__wire_decode(&saga__v1__cancel_saga__descriptor, buf,
                                     len, h, 0, &out, &meta, errbuf,
                                     sizeof errbuf),
                   0);
  Saga__V1__CancelSaga *d = (Saga__V1__CancelSaga *)out;
  assert_string_equal(d->saga_id, "s-cancel");
  assert_string_equal(d->reason, "customer called\nticket 7");
  assert_string_equal(d->operator_, "alice@ops");
  assert_int_equal(d->requested_at_ms, 1700000000000);
  assert_string_equal(meta.saga_id, "s-cancel");
  saga__wire_free(out);
  /* An OperatorAction decoder refuses it by its type header. */
  assert_int_equal(saga__wire_decode(&saga__v1__operator_action__descriptor,
                                     buf, len, h, 0, &out, &meta, errbuf,
                                     sizeof errbuf),
                   SAGA_ETYPE);
  rd_kafka_headers_destroy(h);
  free(buf);

  c = make_cancel();
  c.saga_id = SAGA_MUT("");
  assert_refused(&c.base, "saga_id is missing");
  c = make_cancel();
  c.saga_id = SAGA_MUT("a/b");
  assert_refused(&c.base, "forbidden character");
  c = make_cancel();
  c.operator_ = SAGA_MUT("al\x1bice");
  assert_refused(&c.base, "operator contains a forbidden character at "
                          "byte 2");
  c = make_cancel();
  c.reason = SAGA_MUT("stop \xc0\xaf");
  assert_refused(&c.base, "reason is not valid UTF-8 at byte 5");
  char big[SAGA_WIRE_MAX_TEXT + 2];
  memset(big, 'r', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  c = make_cancel();
  c.reason = big;
  assert_refused(&c.base, "reason is 1025 bytes long");
  char who[SAGA_WIRE_MAX_ID + 2];
  memset(who, 'w', sizeof who - 1);
  who[sizeof who - 1] = '\0';
  c = make_cancel();
  c.operator_ = who;
  assert_refused(&c.base, "operator is 256 bytes long");

  /* Decode side: a NUL inside saga_id, reason or operator. */
  const char *nul_in[][2] = {{"saga_id", "s-cXancel"},
                             {"reason", "whyXnot"},
                             {"operator", "boXb"}};
  for (size_t i = 0; i < 3; i++) {
    c = make_cancel();
    if (i == 0)
      c.saga_id = SAGA_MUT(nul_in[i][1]);
    else if (i == 1)
      c.reason = SAGA_MUT(nul_in[i][1]);
    else
      c.operator_ = SAGA_MUT(nul_in[i][1]);
    void *b = ts_pack_with_nul(&c.base, &len);
    assert_int_equal(decode_typed(&saga__v1__cancel_saga__descriptor, b, len),
                     SAGA_EMISSING);
    char want[64];
    snprintf(want, sizeof want, "%s contains a NUL byte at byte %zu",
             nul_in[i][0], (size_t)(strchr(nul_in[i][1], 'X') - nul_in[i][1]));
    assert_string_equal(errbuf, want);
    free(b);
  }
}

/* Issue 14 case 4: protobuf-c cuts a string at its first NUL, so
 * "nul-b\0zzz" decoded as saga nul-b and a reply for "wt-1\0junk"
 * completed wt-1. Every string field holding a NUL is refused. */
static void test_a_nul_inside_a_string_field_is_refused(void **state) {
  (void)state;
  Saga__V1__StartSaga st;
  saga__v1__start_saga__init(&st);
  st.saga_id = SAGA_MUT("nul-bXzzz");
  st.saga_type = SAGA_MUT("order");
  size_t len;
  void *b = ts_pack_with_nul(&st.base, &len);
  assert_int_equal(decode_typed(&saga__v1__start_saga__descriptor, b, len),
                   SAGA_EMISSING);
  assert_string_equal(errbuf, "saga_id contains a NUL byte at byte 5");
  free(b);

  Saga__V1__Reply r;
  saga__v1__reply__init(&r);
  r.saga_id = SAGA_MUT("wt-1Xjunk");
  r.step = SAGA_MUT("w1");
  r.action = SAGA__V1__ACTION__ACTION_DO;
  r.attempt = 1;
  r.idempotency_key = SAGA_MUT("wt-1/w1/DO/1");
  r.outcome = SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  b = ts_pack_with_nul(&r.base, &len);
  assert_int_equal(decode_typed(&saga__v1__reply__descriptor, b, len),
                   SAGA_EMISSING);
  assert_string_equal(errbuf, "saga_id contains a NUL byte at byte 4");
  free(b);

  /* The step, the key, a reason and a command's topic alike. */
  r.saga_id = SAGA_MUT("wt-1");
  r.reason = SAGA_MUT("cutX here");
  b = ts_pack_with_nul(&r.base, &len);
  assert_int_equal(decode_typed(&saga__v1__reply__descriptor, b, len),
                   SAGA_EMISSING);
  assert_string_equal(errbuf, "reason contains a NUL byte at byte 3");
  free(b);
  Saga__V1__Command c = make_command();
  c.reply_topic = SAGA_MUT("saga.inboxX.evil");
  b = ts_pack_with_nul(&c.base, &len);
  assert_int_equal(decode_typed(&saga__v1__command__descriptor, b, len),
                   SAGA_EMISSING);
  assert_string_equal(errbuf, "reply_topic contains a NUL byte at byte 10");
  free(b);
  /* Bytes fields may hold anything. */
  c = make_command();
  c.payload.data = (uint8_t *)SAGA_MUT("aXb");
  c.payload.len = 3;
  b = ts_pack_with_nul(&c.base, &len);
  assert_int_equal(decode_typed(&saga__v1__command__descriptor, b, len), 0);
  free(b);
}

/* Issue 14 case 5: ids of 255 bytes are the limit everywhere, and the
 * idempotency key built from the longest ids travels as the reply's
 * causation-id (it was refused as a header past 255 bytes, so such a
 * command was never answered). */
static void test_the_key_of_the_longest_ids_fits_the_causation_header(
    void **state) {
  (void)state;
  char id[SAGA_WIRE_MAX_ID + 2], step[SAGA_WIRE_MAX_ID + 1];
  memset(id, 'i', sizeof id - 1);
  id[SAGA_WIRE_MAX_ID] = '\0';
  memset(step, 's', sizeof step - 1);
  step[SAGA_WIRE_MAX_ID] = '\0';
  char key[SAGA_WIRE_MAX_KEY + 1];
  assert_int_equal(saga__idempotency_key(key, sizeof key, id, step,
                                         SAGA_ACTION_COMPENSATE, UINT32_MAX),
                   0);
  Saga__V1__Reply r;
  saga__v1__reply__init(&r);
  r.saga_id = id;
  r.step = step;
  r.action = SAGA__V1__ACTION__ACTION_COMPENSATE;
  r.attempt = UINT32_MAX;
  r.idempotency_key = key;
  r.outcome = SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  saga_meta_t in = {.correlation_id = id, .causation_id = key};
  assert_int_equal(saga__wire_encode(&r.base, &in, 0, &buf, &len, &h, errbuf,
                                     sizeof errbuf),
                   0);
  ProtobufCMessage *out = NULL;
  saga__wire_meta_t meta;
  assert_int_equal(saga__wire_decode(&saga__v1__reply__descriptor, buf, len,
                                     h, 0, &out, &meta, errbuf,
                                     sizeof errbuf),
                   0);
  assert_string_equal(meta.causation_id, key);
  assert_string_equal(((Saga__V1__Reply *)out)->saga_id, id);
  saga__wire_free(out);
  free(buf);
  rd_kafka_headers_destroy(h);
  /* One byte more is refused, with the same words everywhere. */
  id[SAGA_WIRE_MAX_ID] = 'i';
  id[SAGA_WIRE_MAX_ID + 1] = '\0';
  r.saga_id = id;
  assert_int_not_equal(saga__wire_encode(&r.base, NULL, 0, &buf, &len, &h,
                                         errbuf, sizeof errbuf),
                       0);
  assert_string_equal(errbuf,
                      "saga_id is 256 bytes long, the ceiling is 255");
}

static void test_error_map_names_every_code(void **state) {
  (void)state;
#define CHECK_ERR_(name, value, text)                                          \
  assert_string_equal(saga_strerror(value), text);                             \
  assert_string_equal(saga_err_name(value), "SAGA_" #name);
  SAGA_ERRNO_MAP(CHECK_ERR_)
#undef CHECK_ERR_
  assert_string_equal(saga_strerror(-999), "unknown error");
  assert_string_equal(saga_err_name(-999), "SAGA_EUNKNOWN");
  assert_string_equal(saga_action_name(SAGA_ACTION_COMPENSATE), "COMPENSATE");
  assert_string_equal(saga_outcome_name(SAGA_OUTCOME_RETRYABLE), "RETRYABLE");
  assert_true(saga_notification_is_outcome(SAGA_NOTIFY_REJECTED));
  assert_false(saga_notification_is_outcome(SAGA_NOTIFY_STEP_DONE));
  /* A refused cancel leaves the saga running: not its outcome. */
  assert_false(saga_notification_is_outcome(SAGA_NOTIFY_CANCEL_REFUSED));
  assert_string_equal(saga_notification_kind_name(SAGA_NOTIFY_CANCEL_REFUSED),
                      "CANCEL_REFUSED");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_command_round_trips_with_headers),
      cmocka_unit_test(test_start_saga_round_trips_with_and_without_version),
      cmocka_unit_test(test_reply_and_notification_round_trip),
      cmocka_unit_test(test_every_truncation_of_a_command_is_refused),
      cmocka_unit_test(test_garbage_bytes_are_refused_as_undecodable),
      cmocka_unit_test(test_missing_or_wrong_type_header_is_refused),
      cmocka_unit_test(test_oversize_message_is_refused_before_parsing),
      cmocka_unit_test(test_missing_required_fields_are_named),
      cmocka_unit_test(test_headers_that_disagree_or_overflow_are_refused),
      cmocka_unit_test(test_headers_with_control_characters_are_refused),
      cmocka_unit_test(test_ids_and_headers_that_are_not_utf8_are_refused),
      cmocka_unit_test(test_operator_action_round_trips_with_its_type_header),
      cmocka_unit_test(test_operator_action_fields_are_checked_both_ways),
      cmocka_unit_test(test_cancel_saga_round_trips_and_is_checked_both_ways),
      cmocka_unit_test(test_type_header_names_a_known_message),
      cmocka_unit_test(test_idempotency_key_has_its_form),
      cmocka_unit_test(test_a_reply_to_a_command_echoes_its_identity),
      cmocka_unit_test(test_a_nul_inside_a_string_field_is_refused),
      cmocka_unit_test(
          test_the_key_of_the_longest_ids_fits_the_causation_header),
      cmocka_unit_test(test_error_map_names_every_code),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
