/* The wire part of fuzz_make_seeds (apart: wire.h and the machine's
 * header both name saga_action_t). */
#include <stdlib.h>
#include <string.h>

#include "seeds.h"
#include "wire_kafka.h"


static void wire_seed(const char *name, uint8_t type_index,
                      const ProtobufCMessage *msg) {
  saga_meta_t meta = {.correlation_id = "corr-1", .traceparent = SEEDS_TP};
  void *val;
  size_t len;
  rd_kafka_headers_t *h;
  char err[256];
  if (saga__wire_encode(msg, &meta, 0, &val, &len, &h, err, sizeof err)) {
    fprintf(stderr, "encode %s: %s\n", name, err);
    exit(1);
  }
  rd_kafka_headers_destroy(h);
  const char *sid = ((const Saga__V1__StartSaga *)msg)->saga_id;
  buf_t *b = calloc(1, sizeof *b);
  /* type header as the wanted name, saga-id, correlation-id, traceparent */
  add_byte(b, type_index);
  add_byte(b, 0x01 | 0x04 | 0x08 | 0x20);
  add_field(b, sid);
  add_field(b, "corr-1");
  add_field(b, SEEDS_TP);
  add(b, val, len);
  seeds_put("wire", name, b->b, b->n);
  /* the same value with only the type header */
  b->n = 0;
  char bare[128];
  snprintf(bare, sizeof bare, "%s-bare", name);
  add_byte(b, type_index);
  add_byte(b, 0x01);
  add(b, val, len);
  seeds_put("wire", bare, b->b, b->n);
  free(b);
  free(val);
}

void seeds_make_wire(void) {
  Saga__V1__StartSaga st;
  saga__v1__start_saga__init(&st);
  st.saga_id = SAGA_MUT("order-1001");
  st.saga_type = SAGA_MUT("order");
  st.input.data = (uint8_t *)SAGA_MUT("{\"sku\":\"A\",\"qty\":2}");
  st.input.len = 20;
  st.requested_at_ms = 1700000000000;
  wire_seed("start_saga", 0, &st.base);

  Saga__V1__Command c;
  saga__v1__command__init(&c);
  c.saga_id = SAGA_MUT("order-1001");
  c.saga_type = SAGA_MUT("order");
  c.definition_version = 1;
  c.step = SAGA_MUT("reserve_inventory");
  c.action = SAGA__V1__ACTION__ACTION_DO;
  c.attempt = 1;
  c.idempotency_key = SAGA_MUT("order-1001/reserve_inventory/DO/1");
  c.deadline_ms = 1700000005000;
  c.reply_topic = SAGA_MUT("saga.inbox");
  wire_seed("command", 1, &c.base);

  Saga__V1__Reply r;
  saga__v1__reply__init(&r);
  r.saga_id = SAGA_MUT("order-1001");
  r.step = SAGA_MUT("charge_payment");
  r.action = SAGA__V1__ACTION__ACTION_COMPENSATE;
  r.attempt = 2;
  r.idempotency_key = SAGA_MUT("order-1001/charge_payment/COMPENSATE/2");
  r.outcome = SAGA__V1__OUTCOME__OUTCOME_FAILURE;
  r.reason = SAGA_MUT("card declined");
  wire_seed("reply", 2, &r.base);

  Saga__V1__Notification n;
  saga__v1__notification__init(&n);
  n.saga_id = SAGA_MUT("order-1001");
  n.saga_type = SAGA_MUT("order");
  n.definition_version = 1;
  n.kind = SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_STEP_DONE;
  n.step = SAGA_MUT("ship");
  n.action = SAGA__V1__ACTION__ACTION_DO;
  n.outcome = SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  n.at_ms = 1700000009000;
  wire_seed("notification", 3, &n.base);
}

