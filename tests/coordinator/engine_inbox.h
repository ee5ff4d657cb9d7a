/* Test helper of the engine's tests: hand an engine one inbox message, as
 * the broker port does (partition 0, ack token 1). Header-only. */
#ifndef TEST_ENGINE_INBOX_H
#define TEST_ENGINE_INBOX_H

#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "wire.h"

/* Encode pb for saga_id (its correlation-id the saga id) and hand it to
 * sagad_engine_on_message; aborts the test (cmocka's fail_msg, so include
 * cmocka.h first) when it does not encode. */
static inline void engine_inbox_deliver(sagad_engine_t *e,
                                        const ProtobufCMessage *pb,
                                        const char *saga_id) {
  saga_meta_t meta = {.saga_id = saga_id, .correlation_id = saga_id};
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  char err[256];
  int rc = saga__wire_pack(pb, &meta, 0, &buf, &len, &h, err, sizeof err);
  if (rc != 0)
    fail_msg("could not encode a message: %s", err);
  sagad_inmsg_t m = {.topic = "t.inbox",
                     .partition = 0,
                     .key = saga_id,
                     .key_len = strlen(saga_id),
                     .value = buf,
                     .value_len = len,
                     .hdrs = saga__hdrs_view(&h),
                     .ack = (void *)1};
  sagad_engine_on_message(e, &m);
  saga__hdrs_free(&h);
  free(buf);
}

#endif
