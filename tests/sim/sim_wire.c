/* The simulator's one door to protocol/wire.h (kept apart: the client's
 * public names overlap the machine's). */
#include <stdio.h>

#include "wire.h"

int sim_wire_encode(const struct ProtobufCMessage *pb, const char *saga_id,
                    void **buf, size_t *len, rd_kafka_headers_t **h);
rd_kafka_headers_t *sim_wire_operator_headers(void);

int sim_wire_encode(const struct ProtobufCMessage *pb, const char *saga_id,
                    void **buf, size_t *len, rd_kafka_headers_t **h) {
  saga_meta_t meta = {.saga_id = saga_id, .correlation_id = saga_id};
  char err[256];
  if (saga__wire_encode(pb, &meta, 0, buf, len, h, err, sizeof err) != 0) {
    fprintf(stderr, "saga-sim: could not encode a message: %s\n", err);
    return -1;
  }
  return 0;
}

rd_kafka_headers_t *sim_wire_operator_headers(void) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(2);
  if (h && saga__hdr_add(h, SAGA_HDR_TYPE, "saga.v1.OperatorAction") != 0) {
    rd_kafka_headers_destroy(h);
    return NULL;
  }
  return h;
}
