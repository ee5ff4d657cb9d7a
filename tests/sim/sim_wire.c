/* The simulator's one door to protocol/wire.h (kept apart: the client's
 * public names overlap the machine's). */
#include <stdio.h>
#include <stdlib.h>

#include "wire.h"

int sim_wire_encode(const struct ProtobufCMessage *pb, const char *saga_id,
                    void **buf, size_t *len, saga__hdr_copy_t **h);
saga__hdr_copy_t *sim_wire_operator_headers(void);

/* The encoded headers are kept with the message: an owned copy. */
static saga__hdr_copy_t *keep(const saga__hdrs_t *h) {
  saga__hdr_view_t v = saga__hdrs_view(h);
  return saga__hdr_copy(&v);
}

int sim_wire_encode(const struct ProtobufCMessage *pb, const char *saga_id,
                    void **buf, size_t *len, saga__hdr_copy_t **h) {
  saga_meta_t meta = {.saga_id = saga_id, .correlation_id = saga_id};
  char err[256];
  saga__hdrs_t hl;
  if (saga__wire_pack(pb, &meta, 0, buf, len, &hl, err, sizeof err) != 0) {
    fprintf(stderr, "saga-sim: could not encode a message: %s\n", err);
    return -1;
  }
  *h = keep(&hl);
  saga__hdrs_free(&hl);
  if (!*h) {
    free(*buf);
    return -1;
  }
  return 0;
}

saga__hdr_copy_t *sim_wire_operator_headers(void) {
  saga__hdrs_t hl;
  saga__hdrs_init(&hl);
  saga__hdrs_add_text(&hl, SAGA_HDR_TYPE, "saga.v1.OperatorAction");
  saga__hdr_copy_t *h = keep(&hl);
  saga__hdrs_free(&hl);
  return h;
}
