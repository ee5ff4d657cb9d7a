/* The wire codec's own header types (protocol/wire_headers.h) and the
 * codec over them, linked without librdkafka (target saga_wire only): a
 * list past its inline room, an owned copy, a round trip, the last of a
 * repeated header, no headers at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

static char errbuf[512];

static void test_a_header_list_grows_past_its_inline_room(void **state) {
  (void)state;
  enum { N = 3 * SAGA__HDRS_INLINE + 1 };
  static char names[N][8];
  saga__hdrs_t h;
  saga__hdrs_init(&h);
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "h%d", i);
    assert_int_equal(saga__hdrs_add(&h, names[i], names[i], strlen(names[i])),
                     0);
  }
  assert_int_equal(h.n, N);
  const saga__hdr_t *v = saga__hdrs_items(&h);
  saga__hdr_view_t view = saga__hdrs_view(&h);
  saga__hdr_t one;
  for (size_t i = 0; i < N; i++) {
    assert_string_equal(v[i].name, names[i]);
    assert_int_equal(view.at(view.src, i, &one), 0);
    assert_ptr_equal(one.name, names[i]);
    assert_memory_equal(one.value, names[i], one.len);
  }
  assert_int_equal(view.at(view.src, N, &one), -1);
  saga__hdrs_free(&h);
  assert_int_equal(h.n, 0);
  /* empty text values are left out, as on the wire */
  assert_int_equal(saga__hdrs_add_text(&h, "a", ""), 0);
  assert_int_equal(saga__hdrs_add_text(&h, "b", NULL), 0);
  assert_int_equal(h.n, 0);
  saga__hdrs_free(&h);
}

static void test_a_copy_owns_its_names_and_values(void **state) {
  (void)state;
  char name[8] = "k", value[8] = "v1";
  saga__hdrs_t h;
  saga__hdrs_init(&h);
  assert_int_equal(saga__hdrs_add(&h, name, value, 2), 0);
  assert_int_equal(saga__hdrs_add(&h, "null", NULL, 0), 0);
  saga__hdr_view_t v = saga__hdrs_view(&h);
  saga__hdr_copy_t *c = saga__hdr_copy(&v);
  saga__hdrs_free(&h);
  assert_non_null(c);
  memcpy(name, "x", 2);
  memcpy(value, "zz", 2);
  assert_int_equal(c->n, 2);
  assert_string_equal(c->h[0].name, "k");
  assert_int_equal(c->h[0].len, 2);
  assert_memory_equal(c->h[0].value, "v1", 2);
  assert_string_equal(c->h[1].name, "null");
  assert_null(c->h[1].value);
  saga__hdr_view_t cv = saga__hdr_copy_view(c);
  saga__hdr_t one;
  assert_int_equal(cv.at(cv.src, 1, &one), 0);
  assert_string_equal(one.name, "null");
  assert_int_equal(cv.at(cv.src, 2, &one), -1);
  free(c);
  saga__hdr_view_t none = saga__hdr_copy_view(NULL);
  assert_null(none.at);
}

static Saga__V1__Reply make_reply(void) {
  Saga__V1__Reply r;
  saga__v1__reply__init(&r);
  r.saga_id = SAGA_MUT("saga-1");
  r.step = SAGA_MUT("reserve");
  r.action = SAGA__V1__ACTION__ACTION_DO;
  r.attempt = 1;
  r.idempotency_key = SAGA_MUT("saga-1/reserve/DO/1");
  r.outcome = SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  return r;
}

static void test_a_message_round_trips_without_a_broker_library(void **state) {
  (void)state;
  Saga__V1__Reply r = make_reply();
  saga_meta_t meta = {.correlation_id = "corr-1",
                      .traceparent = "00-0af7651916cd43dd8448eb211c80319c-"
                                     "b7ad6b7169203331-01"};
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  assert_int_equal(saga__wire_pack(&r.base, &meta, 0, &buf, &len, &h, errbuf,
                                   sizeof errbuf),
                   0);
  assert_int_equal(h.n, 4); /* type, saga id, correlation, traceparent */
  assert_null(h.heap);      /* no allocation for an encoded message */
  saga__hdr_view_t v = saga__hdrs_view(&h);
  assert_ptr_equal(saga__wire_type_in(&v), &saga__v1__reply__descriptor);
  ProtobufCMessage *out = NULL;
  saga__wire_meta_t got;
  assert_int_equal(saga__wire_unpack(&saga__v1__reply__descriptor, buf, len,
                                     &v, 0, &out, &got, errbuf,
                                     sizeof errbuf),
                   0);
  assert_string_equal(((Saga__V1__Reply *)out)->step, "reserve");
  assert_string_equal(got.saga_id, "saga-1");
  assert_string_equal(got.correlation_id, "corr-1");
  assert_string_equal(got.causation_id, "");
  assert_string_equal(got.traceparent, meta.traceparent);
  saga__wire_free(out);
  saga__hdrs_free(&h);
  free(buf);
}

static void test_the_last_of_a_repeated_header_counts(void **state) {
  (void)state;
  Saga__V1__Reply r = make_reply();
  size_t len = protobuf_c_message_get_packed_size(&r.base);
  uint8_t *buf = malloc(len);
  assert_non_null(buf);
  protobuf_c_message_pack(&r.base, buf);
  saga__hdrs_t h;
  saga__hdrs_init(&h);
  saga__hdrs_add_text(&h, SAGA_HDR_TYPE, "saga.v1.Command");
  saga__hdrs_add_text(&h, SAGA_HDR_TYPE, "saga.v1.Reply");
  saga__hdr_view_t v = saga__hdrs_view(&h);
  ProtobufCMessage *out = NULL;
  saga__wire_meta_t got;
  assert_int_equal(saga__wire_unpack(&saga__v1__reply__descriptor, buf, len,
                                     &v, 0, &out, &got, errbuf,
                                     sizeof errbuf),
                   0);
  saga__wire_free(out);
  assert_int_equal(saga__wire_unpack(&saga__v1__command__descriptor, buf, len,
                                     &v, 0, &out, &got, errbuf,
                                     sizeof errbuf),
                   SAGA_ETYPE);
  assert_non_null(strstr(errbuf, "saga.v1.Reply"));
  saga__hdrs_free(&h);
  free(buf);
}

static void test_no_headers_is_a_missing_type(void **state) {
  (void)state;
  saga__hdr_view_t empty = {0};
  assert_null(saga__wire_type_in(NULL));
  assert_null(saga__wire_type_in(&empty));
  ProtobufCMessage *out = NULL;
  saga__wire_meta_t got;
  assert_int_equal(saga__wire_unpack(&saga__v1__reply__descriptor, "", 0,
                                     &empty, 0, &out, &got, errbuf,
                                     sizeof errbuf),
                   SAGA_ETYPE);
  assert_non_null(strstr(errbuf, "is missing"));
  assert_null(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_header_list_grows_past_its_inline_room),
      cmocka_unit_test(test_a_copy_owns_its_names_and_values),
      cmocka_unit_test(test_a_message_round_trips_without_a_broker_library),
      cmocka_unit_test(test_the_last_of_a_repeated_header_counts),
      cmocka_unit_test(test_no_headers_is_a_missing_type),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
