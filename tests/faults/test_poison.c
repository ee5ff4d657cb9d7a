/* Poison input on the coordinator's inbox: undecodable protobuf, a valid
 * message of a type the inbox does not take, a message without headers, an
 * unknown saga type, a payload past the ceiling. Each lands in the
 * dead-letter topic with a reason, is counted, and the partition moves on:
 * a valid saga produced after it on the same key (so the same partition)
 * completes. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "faults.h"
#include "http_client.h"
#include "test_support.h"
#include "wire_kafka.h"

#define NAME "flt_poison"
#define CEILING 2048

static e2e_answer_t ok_script(const char *id, int step, int comp,
                              uint32_t attempt) {
  (void)id, (void)step, (void)comp, (void)attempt;
  return E2E_SUCCESS;
}

/* A valid StartSaga's bytes for id with an input of input_len bytes. */
static void *start_bytes(const char *id, const char *type, size_t input_len,
                         size_t *len) {
  Saga__V1__StartSaga s;
  saga__v1__start_saga__init(&s);
  s.saga_id = SAGA_MUT(id);
  s.saga_type = SAGA_MUT(type);
  uint8_t *in = malloc(input_len + 2);
  assert_non_null(in);
  memset(in, ' ', input_len + 2);
  in[0] = '{';
  in[input_len + 1] = '}';
  s.input.data = in;
  s.input.len = input_len + 2;
  *len = protobuf_c_message_get_packed_size(&s.base);
  void *buf = malloc(*len);
  assert_non_null(buf);
  protobuf_c_message_pack(&s.base, buf);
  free(in);
  return buf;
}

static size_t dlq_wait(e2e_t *t, size_t want, char *reason, size_t len) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  size_t n;
  while ((n = e2e_dead_letters(t, reason, len)) < want && ts_now_ms() < until)
    e2e_pump(t, 20);
  return n;
}

/* Produce one poison message keyed key, then a valid saga on the same key;
 * the poison is dead-lettered with a reason and the saga completes. */
static void poison_then_saga(e2e_t *t, size_t *ndlq, const char *what,
                             const char *type_hdr, const void *v, size_t len,
                             const char *key) {
  e2e_produce_raw(t, type_hdr, key, v, len);
  /* The harness keys a StartSaga by its saga id: the saga named key lands
   * on the poison's partition, behind it. */
  e2e_start(t, "slow", key);
  char reason[256];
  assert_int_equal(dlq_wait(t, *ndlq + 1, reason, sizeof reason), *ndlq + 1);
  (*ndlq)++;
  printf("# %s: dead-lettered, reason \"%s\"\n", what, reason);
  assert_true(reason[0] != '\0');
  const char *ids[1] = {key};
  assert_int_equal(e2e_wait_terminal(t, ids, 1, 60000), 1);
  assert_string_equal(e2e_status(t, key), "completed");
  for (int s = 0; s < E2E_STEPS; s++)
    assert_int_equal(e2e_applied(t, key, s), 1);
}

static void test_poison_on_the_inbox_is_dead_lettered_and_the_partition_moves_on(
    void **state) {
  (void)state;
  char v[32];
  snprintf(v, sizeof v, "%d", CEILING);
  setenv("SAGAD_PAYLOAD_MAX_BYTES", v, 1);
  e2e_t *t = e2e_new(NAME, 60000, ok_script);
  e2e_sagad_start(t, 0);
  unsetenv("SAGAD_PAYLOAD_MAX_BYTES");
  size_t ndlq = 0;
  (void)e2e_dead_letters(t, NULL, 0); /* start the reader */

  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x08};
  poison_then_saga(t, &ndlq, "undecodable protobuf", "saga.v1.StartSaga",
                   garbage, sizeof garbage, "p-garbage");

  /* A well-formed Command, which only participants take. */
  Saga__V1__Command c;
  saga__v1__command__init(&c);
  c.saga_id = SAGA_MUT("p-wrongtype");
  c.step = SAGA_MUT("s1");
  c.action = SAGA__V1__ACTION__ACTION_DO;
  c.attempt = 1;
  c.idempotency_key = SAGA_MUT("p-wrongtype/s1/DO/1");
  c.reply_topic = SAGA_MUT("nowhere");
  size_t clen = protobuf_c_message_get_packed_size(&c.base);
  uint8_t *cbuf = malloc(clen);
  assert_non_null(cbuf);
  protobuf_c_message_pack(&c.base, cbuf);
  poison_then_saga(t, &ndlq, "valid message of the wrong type",
                   "saga.v1.Command", cbuf, clen, "p-wrongtype");
  free(cbuf);

  size_t len = 0;
  void *b = start_bytes("p-noheaders", "slow", 16, &len);
  poison_then_saga(t, &ndlq, "missing headers", NULL, b, len, "p-noheaders");
  free(b);

  b = start_bytes("p-unknowntype", "no-such-saga", 16, &len);
  poison_then_saga(t, &ndlq, "unknown saga type", "saga.v1.StartSaga", b, len,
                   "p-unknowntype");
  free(b);

  b = start_bytes("p-toobig", "slow", CEILING * 2, &len);
  poison_then_saga(t, &ndlq, "payload past the ceiling", "saga.v1.StartSaga",
                   b, len, "p-toobig");
  free(b);

  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  char *log = faults_sagad_log(NAME, 0);
  assert_non_null(log);
  char want[64];
  snprintf(want, sizeof want, "%zu dead letters", ndlq);
  assert_non_null(strstr(log, want));
  free(log);
  e2e_free(t);
}

/* Issue 14, case 1: a 1.2 MiB StartSaga (the broker takes it) is past the
 * 1 MiB ceiling and past the producer's message.max.bytes (librdkafka's
 * 1,000,000): its dead letter was refused ("Message size too large") and
 * the offset committed anyway -- the input lost. Now the dead letter keeps
 * a prefix of the value and says so, and the partition moves on. */
static void test_an_oversized_input_is_dead_lettered_with_a_prefix(
    void **state) {
  (void)state;
  e2e_t *t = e2e_new("flt_oversized", 60000, ok_script);
  e2e_sagad_start(t, 0);
  size_t ndlq = 0;
  (void)e2e_dead_letters(t, NULL, 0);
  size_t len = 0;
  void *b = start_bytes("p-huge", "slow", 1200 * 1024, &len);
  poison_then_saga(t, &ndlq, "1.2 MiB StartSaga", "saga.v1.StartSaga", b, len,
                   "p-huge");
  free(b);
  char cut[256];
  size_t kept = e2e_dead_letter_last(t, cut, sizeof cut);
  printf("# dead letter of %zu bytes: %s\n", kept, cut);
  assert_true(kept > 0 && kept <= 65536);
  char want[96];
  snprintf(want, sizeof want, "value: first %zu of %zu bytes kept", kept,
           len);
  assert_non_null(strstr(cut, want));
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

/* The admin port of sagad 0's start number `start` (1: its first; a
 * restarted sagad appends to its log), from its log (-1 when not found in
 * time). */
static int admin_port_of(e2e_t *t, const char *name, int start) {
  static const char needle[] = "admin endpoint listening on http://127.0.0.1:";
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  while (ts_now_ms() < until) {
    char *log = faults_sagad_log(name, 0);
    const char *p = log ? strstr(log, needle) : NULL;
    for (int k = 1; p && k < start; k++)
      p = strstr(p + 1, needle);
    int port = p ? atoi(p + sizeof needle - 1) : -1;
    free(log);
    if (port > 0)
      return port;
    e2e_pump(t, 50);
  }
  return -1;
}

/* Issue 14, case 2: a StartSaga with 1,000,100 bytes of input is under the
 * 1 MiB ceiling, but no command carrying it fits librdkafka's default
 * message.max.bytes (1,000,000): it was accepted and every command then
 * failed ("Message size too large"), the saga timing out three times and
 * compensating. Now it is refused at once with a REJECTED notification
 * naming the limit (and a dead letter), and the same body through
 * POST /sagas/{type} gets 413. */
static void test_an_input_no_command_can_carry_is_rejected(void **state) {
  (void)state;
  const char *name = "flt_wontfit";
  e2e_t *t = e2e_new(name, 60000, ok_script);
  e2e_sagad_start(t, 0);
  size_t ndlq = 0;
  (void)e2e_dead_letters(t, NULL, 0);
  (void)e2e_notifications_seen(t, "p-wontfit", 6);
  size_t len = 0;
  void *b = start_bytes("p-wontfit", "slow", 1000100 - 2, &len);
  e2e_produce_raw(t, "saga.v1.StartSaga", "p-wontfit", b, len);
  free(b);
  char reason[256];
  assert_int_equal(dlq_wait(t, ndlq + 1, reason, sizeof reason), ndlq + 1);
  printf("# dead letter: %s\n", reason);
  assert_int_equal(strncmp(reason, "input_too_large: ", 17), 0);
  assert_non_null(strstr(reason, "could never be sent"));
  assert_non_null(strstr(reason, "kafka.message.max.bytes is 1000000"));
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  while (e2e_notifications_seen(t, "p-wontfit", 6) == 0 &&
         ts_now_ms() < until)
    e2e_pump(t, 20);
  /* one REJECTED */
  assert_int_equal(e2e_notifications_seen(t, "p-wontfit", 6), 1);
  assert_string_equal(e2e_status(t, "p-wontfit"), ""); /* never started */
  assert_int_equal(e2e_commands(t, "p-wontfit", 0), 0);

  int port = admin_port_of(t, name, 1);
  assert_true(port > 0);
  size_t blen = 1000100;
  char *body = malloc(blen);
  assert_non_null(body);
  memset(body, 'x', blen);
  memcpy(body, "{\"x\":\"", 6);
  memcpy(body + blen - 2, "\"}", 2);
  char head[256];
  int hl = snprintf(head, sizeof head,
                    "POST /sagas/slow?id=p-wontfit-http HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\nContent-Length: "
                    "%zu\r\nConnection: close\r\n\r\n",
                    blen);
  char *req = malloc((size_t)hl + blen + 1);
  assert_non_null(req);
  memcpy(req, head, (size_t)hl);
  memcpy(req + hl, body, blen);
  req[(size_t)hl + blen] = '\0';
  int status = 0;
  char *r = http_roundtrip(port, req, &status);
  printf("# POST of %zu bytes: %d\n", blen, status);
  assert_int_equal(status, 413);
  assert_non_null(strstr(r, "bytes a command can carry"));
  free(r);
  free(req);
  free(body);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);

  /* With the limits raised, the endpoint takes what a command can carry:
   * a 1.5 MB start (over the HTTP server's default 1 MiB) goes in, and a
   * body past the raised limit is refused by the same 413 naming it. */
  static const char *const raised[] = {"--payload.max_bytes=4194304",
                                       "--kafka.message.max.bytes=5000000",
                                       NULL};
  e2e_sagad_start_with(t, 0, raised);
  port = admin_port_of(t, name, 2);
  assert_true(port > 0);
  static const size_t sizes[] = {1500000, 4194304 + 100};
  for (size_t k = 0; k < 2; k++) {
    blen = sizes[k];
    body = malloc(blen);
    assert_non_null(body);
    memset(body, 'x', blen);
    memcpy(body, "{\"x\":\"", 6);
    memcpy(body + blen - 2, "\"}", 2);
    hl = snprintf(head, sizeof head,
                  "POST /sagas/slow?id=p-big-%zu HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Content-Type: application/json\r\nContent-Length: "
                  "%zu\r\nConnection: close\r\n\r\n",
                  k, blen);
    req = malloc((size_t)hl + blen + 1);
    assert_non_null(req);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, body, blen);
    req[(size_t)hl + blen] = '\0';
    r = http_roundtrip(port, req, &status);
    printf("# raised limits, POST of %zu bytes: %d %.400s\n", blen, status,
           r ? r : "");
    if (k == 0) {
      assert_int_not_equal(status, 413);
    } else {
      assert_int_equal(status, 413);
      assert_non_null(strstr(r, "over the limit of 4194305 bytes"));
    }
    free(r);
    free(req);
    free(body);
  }
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_poison_on_the_inbox_is_dead_lettered_and_the_partition_moves_on),
      cmocka_unit_test(test_an_oversized_input_is_dead_lettered_with_a_prefix),
      cmocka_unit_test(test_an_input_no_command_can_carry_is_rejected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
