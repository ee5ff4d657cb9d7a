/* Random ids and W3C trace context (common/ids.h): the forms made, what
 * parse takes and refuses, and that a child keeps its parent's trace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ids.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int all_lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789abcdef", s[i]) || !s[i])
      return 0;
  return 1;
}

/* saga__uuid_text (the starter's generated saga ids) is time-ordered:
 * version 7, and an id made in a later millisecond sorts after, as text
 * too; saga__uuid_v4 stays random. */
static void test_uuid_text_is_version_7_and_v4_bytes_are_random(
    void **state) {
  (void)state;
  char u[SAGA_UUID_SIZE], u2[SAGA_UUID_SIZE], u3[SAGA_UUID_SIZE];
  assert_int_equal(saga__uuid_text(u), 0);
  assert_int_equal(saga__uuid_text(u2), 0);
  assert_int_equal(strlen(u), SAGA_UUID_LEN);
  assert_int_equal(u[8], '-');
  assert_int_equal(u[13], '-');
  assert_int_equal(u[18], '-');
  assert_int_equal(u[23], '-');
  assert_int_equal(u[14], '7');
  assert_non_null(strchr("89ab", u[19]));
  assert_string_not_equal(u, u2);
  struct timespec two_ms = {0, 2000000};
  nanosleep(&two_ms, NULL);
  assert_int_equal(saga__uuid_text(u3), 0);
  assert_true(strcmp(u, u3) < 0 && strcmp(u2, u3) < 0);
  uint8_t b[16];
  assert_int_equal(saga__uuid_v4(b), 0);
  assert_int_equal(b[6] >> 4, 4);
  assert_int_equal(b[8] >> 6, 2);
}

static void test_uuid_format_writes_the_bytes_in_order(void **state) {
  (void)state;
  const uint8_t id[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                          0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  char out[SAGA_UUID_SIZE];
  saga__uuid_format(id, out);
  assert_string_equal(out, "00112233-4455-6677-8899-aabbccddeeff");
}

static void test_new_ids_are_hex_and_not_zero(void **state) {
  (void)state;
  char t[SAGA_TRACE_ID_SIZE], s[SAGA_SPAN_ID_SIZE], tp[SAGA_TRACEPARENT_SIZE];
  assert_int_equal(saga__trace_id_new(t), 0);
  assert_int_equal(saga__span_id_new(s), 0);
  assert_int_equal(strlen(t), 32);
  assert_int_equal(strlen(s), 16);
  assert_true(all_lower_hex(t, 32));
  assert_true(all_lower_hex(s, 16));
  assert_int_not_equal(strspn(t, "0"), 32);
  assert_int_equal(saga__traceparent_new(tp), 0);
  assert_int_equal(strlen(tp), SAGA_TRACEPARENT_LEN);
  assert_memory_equal(tp, "00-", 3);
  assert_memory_equal(tp + 52, "-01", 3);
  assert_true(saga__traceparent_valid(tp));
  assert_int_equal(saga__traceparent_parse(tp, NULL, NULL, NULL), 0);
}

static void test_parse_reads_ids_and_flags_lower_cased(void **state) {
  (void)state;
  char t[SAGA_TRACE_ID_SIZE], s[SAGA_SPAN_ID_SIZE], f[3];
  char tp[SAGA_TRACEPARENT_SIZE];
  assert_int_equal(saga__traceparent_parse(TP, t, s, f), 0);
  assert_string_equal(t, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert_string_equal(s, "00f067aa0ba902b7");
  assert_string_equal(f, "01");
  saga__traceparent_format(tp, t, s, NULL);
  assert_string_equal(tp, TP);
  assert_int_equal(
      saga__traceparent_parse(
          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00", t, s, f),
      0);
  assert_string_equal(t, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert_string_equal(f, "00");
  /* a later version may append fields after a '-' */
  assert_int_equal(saga__traceparent_parse(TP "-extra", NULL, NULL, NULL), 0);
}

static void test_parse_refuses_malformed_traceparents(void **state) {
  (void)state;
  static const char *const bad[] = {
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero */
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* ff */
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", /* hex */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",  /* short */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf9-00f0-01",
      "",
  };
  char t[SAGA_TRACE_ID_SIZE] = "x";
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(saga__traceparent_parse(bad[i], t, NULL, NULL), -1);
    assert_string_equal(t, "x"); /* untouched */
  }
  assert_int_equal(saga__traceparent_parse(NULL, t, NULL, NULL), -1);
}

static void test_valid_takes_only_the_stored_form(void **state) {
  (void)state;
  assert_true(saga__traceparent_valid(TP));
  assert_false(saga__traceparent_valid(NULL));
  assert_false(saga__traceparent_valid(""));
  assert_false(saga__traceparent_valid(TP "-extra"));
  assert_false(saga__traceparent_valid(
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"));
  assert_false(saga__traceparent_valid(
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
}

static void test_a_child_keeps_the_trace_and_flags_with_a_new_span(void **s) {
  (void)s;
  char c[SAGA_TRACEPARENT_SIZE], c2[SAGA_TRACEPARENT_SIZE];
  const char *parent =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
  assert_int_equal(saga__traceparent_child(c, parent), 0);
  assert_int_equal(saga__traceparent_child(c2, parent), 0);
  assert_true(saga__traceparent_valid(c));
  assert_memory_equal(c, parent, 36);               /* version, trace id */
  assert_memory_not_equal(c + 36, parent + 36, 16); /* a new span */
  assert_memory_not_equal(c + 36, c2 + 36, 16);
  assert_string_equal(c + 52, "-00");               /* the parent's flags */
  /* no parent, or one that does not parse: a new root */
  assert_int_equal(saga__traceparent_child(c, NULL), 0);
  assert_true(saga__traceparent_valid(c));
  assert_int_equal(saga__traceparent_child(c2, "junk"), 0);
  assert_true(saga__traceparent_valid(c2));
  assert_memory_not_equal(c + 3, c2 + 3, 32);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uuid_text_is_version_7_and_v4_bytes_are_random),
      cmocka_unit_test(test_uuid_format_writes_the_bytes_in_order),
      cmocka_unit_test(test_new_ids_are_hex_and_not_zero),
      cmocka_unit_test(test_parse_reads_ids_and_flags_lower_cased),
      cmocka_unit_test(test_parse_refuses_malformed_traceparents),
      cmocka_unit_test(test_valid_takes_only_the_stored_form),
      cmocka_unit_test(test_a_child_keeps_the_trace_and_flags_with_a_new_span),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
