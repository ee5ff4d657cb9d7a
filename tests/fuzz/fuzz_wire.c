/* Fuzz target: saga__wire_decode for every saga.v1 message type, with
 * fuzzed Kafka headers. Layout of an input:
 *   byte 0   message type wanted (index into `types`); bit 7: a 64-byte
 *            ceiling instead of the default one
 *   byte 1   header mask: bit 0 the type header is present, bit 1 its value
 *            is fuzzed (else the wanted type's name), bits 2-5 saga-id,
 *            correlation-id, causation-id, traceparent are present, bit 6
 *            an earlier, different type header comes first
 *   then     for each fuzzed header: one length byte and its bytes
 *   rest     the protobuf value
 * A message that decodes must pass saga__wire_check, and must re-encode
 * with its headers and decode again to the same bytes: what a receiver
 * accepts, it can forward (a participant echoes correlation-id and
 * traceparent into its reply). */
#include <string.h>

#include "fuzz.h"
#include "wire_kafka.h"

static const ProtobufCMessageDescriptor *const types[] = {
    &saga__v1__start_saga__descriptor,
    &saga__v1__command__descriptor,
    &saga__v1__reply__descriptor,
    &saga__v1__notification__descriptor,
#ifdef SAGA__V1__OPERATOR_ACTION__INIT
    &saga__v1__operator_action__descriptor,
#endif
#ifdef SAGA__V1__CANCEL_SAGA__INIT
    &saga__v1__cancel_saga__descriptor,
#endif
};
#define NTYPES (sizeof types / sizeof types[0])

static const char *const meta_headers[] = {SAGA_HDR_SAGA_ID,
                                           SAGA_HDR_CORRELATION,
                                           SAGA_HDR_CAUSATION,
                                           SAGA_HDR_TRACEPARENT};

static void add_fuzzed(rd_kafka_headers_t *h, const char *name,
                       fuzz_in_t *in) {
  size_t len;
  const uint8_t *v = fuzz_bytes(in, fuzz_byte(in), &len);
  FUZZ_ASSERT(rd_kafka_header_add(h, name, -1, v, (ssize_t)len) ==
              RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Re-encode a decoded message with its headers; decode that again. */
static void round_trip(const ProtobufCMessageDescriptor *want,
                       const ProtobufCMessage *msg,
                       const saga__wire_meta_t *meta) {
  char err[512];
  /* Unknown fields are not re-sent by anyone, and protobuf-c packs them
   * differently from how it read them (a field number 0 written in two
   * bytes is read, then written in one and refused): leave them out. */
  ProtobufCMessage *mut = (ProtobufCMessage *)(uintptr_t)msg;
  unsigned n_unknown = mut->n_unknown_fields;
  mut->n_unknown_fields = 0;
  saga_meta_t view = saga__wire_meta_view(meta);
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  int rc = saga__wire_encode(msg, &view, 0, &buf, &len, &h, err, sizeof err);
  mut->n_unknown_fields = n_unknown;
  if (rc != 0)
    fprintf(stderr, "decoded %s does not encode again: %s\n", want->name,
            err);
  FUZZ_ASSERT(rc == 0);
  ProtobufCMessage *again = NULL;
  saga__wire_meta_t meta2;
  rc = saga__wire_decode(want, buf, len, h, 0, &again, &meta2, err,
                         sizeof err);
  if (rc != 0)
    fprintf(stderr, "re-encoded %s does not decode: %s\n", want->name, err);
  FUZZ_ASSERT(rc == 0);
  FUZZ_ASSERT(strcmp(meta->saga_id, meta2.saga_id) == 0);
  FUZZ_ASSERT(strcmp(meta->correlation_id, meta2.correlation_id) == 0);
  FUZZ_ASSERT(strcmp(meta->causation_id, meta2.causation_id) == 0);
  FUZZ_ASSERT(strcmp(meta->traceparent, meta2.traceparent) == 0);
  size_t n2 = protobuf_c_message_get_packed_size(again);
  FUZZ_ASSERT(n2 == len);
  uint8_t *b2 = malloc(n2 ? n2 : 1);
  FUZZ_ASSERT(b2 != NULL);
  protobuf_c_message_pack(again, b2);
  FUZZ_ASSERT(memcmp(buf, b2, len) == 0);
  free(b2);
  saga__wire_free(again);
  rd_kafka_headers_destroy(h);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in_t in = {data, size};
  uint8_t sel = fuzz_byte(&in);
  uint8_t mask = fuzz_byte(&in);
  const ProtobufCMessageDescriptor *want = types[(sel & 0x7f) % NTYPES];
  size_t max_bytes = (sel & 0x80) ? 64 : 0;

  rd_kafka_headers_t *h = rd_kafka_headers_new(8);
  FUZZ_ASSERT(h != NULL);
  if (mask & 0x40) {
    const char *other = types[((sel & 0x7f) + 1) % NTYPES]->name;
    rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, other, -1);
  }
  if (mask & 0x01) {
    if (mask & 0x02)
      add_fuzzed(h, SAGA_HDR_TYPE, &in);
    else
      rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, want->name, -1);
  }
  for (size_t i = 0; i < 4; i++)
    if (mask & (0x04u << i))
      add_fuzzed(h, meta_headers[i], &in);

  /* The value in an exact-size buffer, so ASan sees reads past it. */
  uint8_t *value = malloc(in.n ? in.n : 1);
  FUZZ_ASSERT(value != NULL);
  memcpy(value, in.p, in.n);

  (void)saga__wire_type_of(h);
  char err[512];
  ProtobufCMessage *msg = NULL;
  saga__wire_meta_t meta;
  int rc = saga__wire_decode(want, value, in.n, h, max_bytes, &msg, &meta,
                             err, sizeof err);
  if (rc == 0) {
    FUZZ_ASSERT(msg != NULL && msg->descriptor == want);
    FUZZ_ASSERT(saga__wire_check(msg, err, sizeof err) == 0);
    FUZZ_ASSERT(meta.saga_id[0] != '\0');
    round_trip(want, msg, &meta);
    saga__wire_free(msg);
  } else {
    FUZZ_ASSERT(msg == NULL);
    FUZZ_ASSERT(rc == SAGA_ETYPE || rc == SAGA_ETOOBIG ||
                rc == SAGA_EDECODE || rc == SAGA_EMISSING ||
                rc == SAGA_EINVAL);
  }
  /* A NULL header list is a missing type header. */
  FUZZ_ASSERT(saga__wire_decode(want, value, in.n, NULL, max_bytes, &msg,
                                &meta, err, sizeof err) == SAGA_ETYPE);
  free(value);
  rd_kafka_headers_destroy(h);
  return 0;
}
