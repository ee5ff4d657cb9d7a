/* Text and time helpers (common/text.h, common/timetext.h): UTF-8
 * sequences and where a text stops being UTF-8, hex digits, RFC 3339. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "text.h"
#include "timetext.h"

static void test_utf8_sequences_have_their_length(void **state) {
  (void)state;
  assert_int_equal(saga__utf8_seq_len("a", 1), 1);
  assert_int_equal(saga__utf8_seq_len("", 1), 1); /* NUL */
  assert_int_equal(saga__utf8_seq_len("\xc3\xa9", 2), 2);       /* é */
  assert_int_equal(saga__utf8_seq_len("\xe2\x82\xac", 3), 3);   /* € */
  assert_int_equal(saga__utf8_seq_len("\xf0\x9f\x98\x80", 4), 4);
  assert_int_equal(saga__utf8_seq_len("a", 0), 0);
}

static void test_utf8_refuses_what_is_not_utf8(void **state) {
  (void)state;
  static const struct {
    const char *s;
    size_t n;
  } bad[] = {
      {"\x80", 1},                 /* a lone continuation */
      {"\xff", 1},                 /* never a lead byte */
      {"\xc3", 1},                 /* cut short */
      {"\xe2\x82", 2},             /* cut short */
      {"\xc3(", 2},                /* bad continuation */
      {"\xc0\xaf", 2},             /* overlong '/' */
      {"\xe0\x80\xaf", 3},         /* overlong */
      {"\xed\xa0\x80", 3},         /* surrogate U+D800 */
      {"\xf4\x90\x80\x80", 4},     /* past U+10FFFF */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(saga__utf8_seq_len(bad[i].s, bad[i].n), 0);
  assert_int_equal(saga__utf8_bad_at("ok \xc3\xa9 ok", 8), 8);
  assert_int_equal(saga__utf8_bad_at("ok \xc3(", 5), 3);
  assert_int_equal(saga__utf8_bad_at("ab\xe2\x82", 4), 2);
  assert_int_equal(saga__utf8_bad_at("", 0), 0);
}

static void test_hex_digits_have_their_values(void **state) {
  (void)state;
  assert_int_equal(saga__hexval('0'), 0);
  assert_int_equal(saga__hexval('9'), 9);
  assert_int_equal(saga__hexval('a'), 10);
  assert_int_equal(saga__hexval('F'), 15);
  assert_int_equal(saga__hexval('g'), -1);
  assert_int_equal(saga__hexval('\0'), -1);
}

static void test_rfc3339_times_are_utc_with_milliseconds(void **state) {
  (void)state;
  char b[SAGA_RFC3339_MS_SIZE];
  assert_string_equal(saga__rfc3339_ms(b, sizeof b, 0),
                      "1970-01-01T00:00:00.000Z");
  assert_string_equal(saga__rfc3339_ms(b, sizeof b, 1738324800250),
                      "2025-01-31T12:00:00.250Z");
  assert_string_equal(saga__rfc3339_ms(b, sizeof b, -1),
                      "1969-12-31T23:59:59.999Z");
  assert_int_equal(strlen(b), SAGA_RFC3339_MS_SIZE - 1);
  char small[11];
  assert_string_equal(saga__rfc3339_ms(small, sizeof small, 0), "1970-01-01");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utf8_sequences_have_their_length),
      cmocka_unit_test(test_utf8_refuses_what_is_not_utf8),
      cmocka_unit_test(test_hex_digits_have_their_values),
      cmocka_unit_test(test_rfc3339_times_are_utc_with_milliseconds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
