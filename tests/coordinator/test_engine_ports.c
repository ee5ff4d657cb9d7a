/* The engine's side of its ports without any I/O library: dead-letter
 * headers over a read view (the source's headers, then the reason and the
 * source), the delivery status texts, and the log sink (threshold, saga
 * and step handed through, nothing before a sink is installed). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "log_sink.h"
#include "msg_codec.h"
#include "ports.h"
#include "wire.h"

static void test_a_dead_letter_keeps_its_source_headers(void **state) {
  (void)state;
  saga__hdrs_t src;
  saga__hdrs_init(&src);
  saga__hdrs_add_text(&src, "saga-message-type", "saga.v1.Reply");
  saga__hdrs_add(&src, "empty", NULL, 0);
  saga__hdr_view_t v = saga__hdrs_view(&src);
  saga__hdrs_t out;
  char where[64];
  assert_int_equal(sagad_msg_dlq_headers(&v, "bad bytes", "saga.inbox", 3, 42,
                                         where, sizeof where, &out),
                   0);
  const saga__hdr_t *h = saga__hdrs_items(&out);
  assert_int_equal(out.n, 4);
  assert_string_equal(h[0].name, "saga-message-type");
  assert_memory_equal(h[0].value, "saga.v1.Reply", h[0].len);
  assert_string_equal(h[1].name, "empty");
  assert_null(h[1].value);
  assert_string_equal(h[2].name, "saga-dlq-reason");
  assert_memory_equal(h[2].value, "bad bytes", h[2].len);
  assert_string_equal(h[3].name, "saga-dlq-source");
  assert_string_equal(where, "saga.inbox/3/42");
  assert_ptr_equal(h[3].value, where);
  saga__hdrs_free(&out);
  saga__hdrs_free(&src);
  /* a message without headers gets the two of its own */
  assert_int_equal(sagad_msg_dlq_headers(NULL, "x", "t", 0, 0, where,
                                         sizeof where, &out),
                   0);
  assert_int_equal(out.n, 2);
  saga__hdrs_free(&out);
}

/* A reply's reason is a participant's free text: a byte that is not
 * UTF-8, or a control character, would be stored into the saga's history
 * as a proto3 string other languages' decoders refuse (and handed to the
 * starters' notifications). sagad takes it as valid text. */
static void test_a_reply_reason_is_taken_as_valid_text(void **state) {
  (void)state;
  char key[SAGA_WIRE_MAX_KEY + 1];
  assert_int_equal(saga__idempotency_key(key, sizeof key, "s-1", "charge",
                                         SAGA__V1__ACTION__ACTION_DO, 1),
                   0);
  Saga__V1__Reply r;
  saga__v1__reply__init(&r);
  r.saga_id = SAGA_MUT("s-1");
  r.step = SAGA_MUT("charge");
  r.action = SAGA__V1__ACTION__ACTION_DO;
  r.attempt = 1;
  r.idempotency_key = key;
  r.outcome = SAGA__V1__OUTCOME__OUTCOME_FAILURE;
  char reason[] = "card \xff declined\x1b[31m";
  r.reason = reason;
  size_t len = protobuf_c_message_get_packed_size(&r.base);
  uint8_t buf[512];
  assert_true(len <= sizeof buf);
  protobuf_c_message_pack(&r.base, buf);
  saga__hdrs_t h;
  saga__hdrs_init(&h);
  saga__hdrs_add_text(&h, "saga-message-type", "saga.v1.Reply");
  saga__hdr_view_t v = saga__hdrs_view(&h);
  sagad_msg_t m;
  char err[256];
  assert_int_equal(sagad_msg_decode(buf, len, &v, 1 << 20, &m, err,
                                    sizeof err),
                   0);
  assert_string_equal(m.reason, "card ? declined?[31m");
  sagad_msg_free(&m);
  saga__hdrs_free(&h);
}

static void test_every_delivery_status_has_a_text(void **state) {
  (void)state;
  assert_string_equal(sagad_delivery_text(SAGAD_DELIVERY_OK), "delivered");
#define CHECK_TEXT_(name, value, text)                                         \
  assert_string_equal(sagad_delivery_text(SAGAD_DELIVERY_##name), text);
  SAGAD_DELIVERY_MAP(CHECK_TEXT_)
#undef CHECK_TEXT_
  assert_string_equal(sagad_delivery_text(99), "unknown delivery status");
}

static void test_every_persistence_has_a_text(void **state) {
  (void)state;
  assert_string_equal(sagad_persisted_text(SAGAD_PERSISTED_NO),
                      "not persisted: not in the topic");
#define CHECK_PERSISTED_(name, value, text)                                    \
  assert_string_equal(sagad_persisted_text(SAGAD_PERSISTED_##name), text);
  SAGAD_PERSISTED_MAP(CHECK_PERSISTED_)
#undef CHECK_PERSISTED_
  assert_string_equal(sagad_persisted_text(-1), "persistence unknown");
}

static struct {
  int n;
  sagad_log_level_t level;
  char saga[32], step[32], msg[64];
} seen;

static void sink_write(void *arg, sagad_log_level_t level, const char *saga,
                       const char *step, const char *msg) {
  assert_ptr_equal(arg, &seen);
  seen.n++;
  seen.level = level;
  snprintf(seen.saga, sizeof seen.saga, "%s", saga ? saga : "-");
  snprintf(seen.step, sizeof seen.step, "%s", step ? step : "-");
  snprintf(seen.msg, sizeof seen.msg, "%s", msg);
  errno = EIO; /* the sink may clobber errno; the caller's is kept */
}

static void test_the_log_sink_gets_records_up_to_its_threshold(void **state) {
  (void)state;
  LOG_ERROR("dropped: no sink yet");
  assert_int_equal(seen.n, 0);
  sagad_log_sink_t sink = {.arg = &seen, .write = sink_write};
  sagad_log_set_sink(&sink, SAGAD_LOG_INFO);
  errno = ENOENT;
  SLOG_WARN("saga-1", "reserve", "attempt %d of %s", 2, "reserve");
  assert_int_equal(errno, ENOENT);
  assert_int_equal(seen.n, 1);
  assert_int_equal(seen.level, SAGAD_LOG_WARN);
  assert_string_equal(seen.saga, "saga-1");
  assert_string_equal(seen.step, "reserve");
  assert_string_equal(seen.msg, "attempt 2 of reserve");
  LOG_DEBUG("below the threshold");
  assert_int_equal(seen.n, 1);
  LOG_INFO("plain");
  assert_int_equal(seen.n, 2);
  assert_string_equal(seen.saga, "-");
  assert_string_equal(seen.step, "-");
  sagad_log_set_sink(NULL, SAGAD_LOG_DEBUG);
  LOG_ERROR("dropped again");
  assert_int_equal(seen.n, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_dead_letter_keeps_its_source_headers),
      cmocka_unit_test(test_a_reply_reason_is_taken_as_valid_text),
      cmocka_unit_test(test_every_delivery_status_has_a_text),
      cmocka_unit_test(test_every_persistence_has_a_text),
      cmocka_unit_test(test_the_log_sink_gets_records_up_to_its_threshold),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
