/* A participant written without the C library (tests/client/
 * python_participant.py: confluent-kafka + protobuf, from docs/protocol.md)
 * completes a step: this test plays the coordinator, sends a Command and
 * decodes the Reply with the strict C codec. Skips when Debian's Python
 * Kafka or protobuf modules are missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client_test.h"
#include "kafka_loop.h"
#include "wire_kafka.h"

typedef struct fix {
  int exited;
  int64_t exit_status;
  int replies;
  char payload[64];
  char correlation[64];
  int decode_rc;
} fix_t;

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  fix_t *f = p->data;
  (void)sig;
  f->exit_status = status;
  f->exited = 1;
  uv_close((uv_handle_t *)p, NULL);
}

static void on_message(saga_kloop_t *kl, const rd_kafka_message_t *m,
                       saga_kloop_ack_t *ack, void *opaque) {
  fix_t *f = opaque;
  rd_kafka_headers_t *h = NULL;
  rd_kafka_message_headers(m, &h);
  ProtobufCMessage *msg = NULL;
  saga__wire_meta_t meta;
  char err[256];
  f->decode_rc = saga__wire_decode(&saga__v1__reply__descriptor, m->payload,
                                   m->len, h, 0, &msg, &meta, err, sizeof err);
  if (f->decode_rc == 0) {
    Saga__V1__Reply *r = (Saga__V1__Reply *)msg;
    assert_int_equal(r->outcome, SAGA__V1__OUTCOME__OUTCOME_SUCCESS);
    assert_string_equal(r->idempotency_key, "py-1/reserve/DO/1");
    snprintf(f->payload, sizeof f->payload, "%.*s", (int)r->payload.len,
             (const char *)r->payload.data);
    snprintf(f->correlation, sizeof f->correlation, "%.63s",
             meta.correlation_id);
    saga__wire_free(msg);
  } else {
    fprintf(stderr, "reply refused: %s\n", err);
  }
  f->replies++;
  saga_kloop_ack(kl, ack);
}

static int done(void *arg) {
  fix_t *f = arg;
  return f->exited && (f->replies > 0 || f->exit_status != 0);
}

static void test_python_participant_completes_a_step(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  fix_t f = {0};
  char topic[128], replies[128], group[128], pygroup[128], err[256];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("py.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("py.inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("coord"));
  snprintf(pygroup, sizeof pygroup, "%s", ts_unique_name("pyparticipant"));
  saga_kloop_config_t cfg = {.bootstrap_servers = ts_kafka_bootstrap(),
                             .consumer_properties = ct_consumer_props,
                             .producer_properties = ct_producer_props,
                             .want_consumer = 1,
                             .want_producer = 1,
                             .group_id = group};
  saga_kloop_callbacks_t cb = {.opaque = &f, .on_message = on_message};
  saga_kloop_t *kl;
  assert_int_equal(saga_kloop_new(&loop, &cfg, &cb, &kl, err, sizeof err), 0);
  const char *topics[] = {replies};
  assert_int_equal(saga_kloop_subscribe(kl, topics, 1, err, sizeof err), 0);

  Saga__V1__Command c;
  saga__v1__command__init(&c);
  c.saga_id = SAGA_MUT("py-1");
  c.step = SAGA_MUT("reserve");
  c.action = SAGA__V1__ACTION__ACTION_DO;
  c.attempt = 1;
  c.idempotency_key = SAGA_MUT("py-1/reserve/DO/1");
  c.reply_topic = replies;
  c.payload.data = (uint8_t *)SAGA_MUT("sku-9");
  c.payload.len = 5;
  saga_meta_t meta = {.correlation_id = "order-9"};
  void *buf;
  size_t len;
  rd_kafka_headers_t *h;
  assert_int_equal(saga__wire_encode(&c.base, &meta, 0, &buf, &len, &h, err,
                                     sizeof err),
                   0);
  assert_int_equal(saga_kloop_produce(kl, topic, RD_KAFKA_PARTITION_UA, "py-1",
                                      4, buf, len, h, NULL, err, sizeof err),
                   0);
  free(buf);

  char *args[] = {SAGA_MUT("/usr/bin/python3"), SAGA_MUT(PY_PARTICIPANT),
                  SAGA_MUT(ts_kafka_bootstrap()), SAGA_MUT(DESCRIPTOR_SET),
                  topic, pygroup, NULL};
  uv_process_t proc;
  proc.data = &f;
  uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                   {.flags = UV_INHERIT_FD, .data.fd = 2},
                                   {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t opt = {.file = args[0], .args = args,
                              .exit_cb = on_exit_cb, .stdio_count = 3,
                              .stdio = stdio};
  int rc = uv_spawn(&loop, &proc, &opt);
  if (rc) {
    fprintf(stderr, "skipped: cannot run /usr/bin/python3: %s\n",
            uv_strerror(rc));
    exit(TS_SKIP);
  }
  assert_true(ct_run_until_pred(&loop, done, &f, 90000));
  if (f.exit_status == TS_SKIP) {
    saga_kloop_close(kl, NULL, NULL);
    ct_loop_finish(&loop);
    exit(TS_SKIP);
  }
  assert_int_equal(f.exit_status, 0);
  assert_int_equal(f.decode_rc, 0);
  assert_string_equal(f.payload, "reserved sku-9");
  assert_string_equal(f.correlation, "order-9");
  saga_kloop_close(kl, NULL, NULL);
  ct_loop_finish(&loop);
}

int main(void) {
  ts_require_kafka();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_python_participant_completes_a_step),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
