/* Text and time helpers (common/text.h, common/timetext.h): UTF-8
 * sequences and where a text stops being UTF-8, hex digits, RFC 3339, and
 * the one duration syntax. */
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

static void test_free_text_is_cleaned_in_place(void **state) {
  (void)state;
  char s[] = "ok \xff\x01tab\tnl\n\xe2\x82\xac \xe2\x82x \xed\xa0\x80\x7f";
  size_t n = strlen(s);
  saga__text_clean(s);
  assert_int_equal(strlen(s), n);
  assert_string_equal(s, "ok ??tab\tnl\n\xe2\x82\xac ??x ????");
  assert_int_equal(saga__utf8_bad_at(s, strlen(s)), strlen(s));
  char empty[] = "";
  saga__text_clean(empty);
  assert_string_equal(empty, "");
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

static void test_rfc3339_parses_back_with_its_zone(void **state) {
  (void)state;
  int64_t ms = 7;
  assert_int_equal(saga__rfc3339_parse("2025-01-31T12:00:00.250Z", &ms), 0);
  assert_int_equal(ms, 1738324800250);
  assert_int_equal(saga__rfc3339_parse("2025-01-31T14:00:00.25+02:00", &ms),
                   0);
  assert_int_equal(ms, 1738324800250);
  assert_int_equal(saga__rfc3339_parse("2025-01-31 11:30:00-00:30", &ms), 0);
  assert_int_equal(ms, 1738324800000);
  assert_int_equal(saga__rfc3339_parse("1969-12-31T23:59:59.999z", &ms), 0);
  assert_int_equal(ms, -1);
  assert_int_equal(saga__rfc3339_parse("2024-02-29T00:00:00.1234567Z", &ms),
                   0);
  assert_int_equal(ms, 1709164800123);
  /* every formatted time parses back */
  char b[SAGA_RFC3339_MS_SIZE];
  for (int64_t t = -86400001; t < 4102444800000; t += 123456789013) {
    assert_int_equal(saga__rfc3339_parse(saga__rfc3339_ms(b, sizeof b, t), &ms),
                     0);
    assert_int_equal(ms, t);
  }
  static const char *const bad[] = {
      "",  "2025-01-31", "2025-01-31T12:00:00", "2025-01-31T12:00Z",
      "2025-02-29T00:00:00Z", "2025-13-01T00:00:00Z", "2025-01-31T24:00:00Z",
      "2025-01-31T12:00:00.Z", "2025-01-31T12:00:00+0200",
      "2025-01-31T12:00:00Z trailing", "1h", NULL};
  ms = 7;
  for (size_t i = 0; bad[i]; i++) {
    assert_int_equal(saga__rfc3339_parse(bad[i], &ms), -1);
    assert_int_equal(ms, 7);
  }
  assert_int_equal(saga__rfc3339_parse(NULL, &ms), -1);
}

static void test_durations_take_units_and_compounds(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t ms;
  } ok[] = {{"0ms", 0},         {"250ms", 250},      {"30s", 30000},
            {"2m", 120000},     {"1h30m", 5400000},  {"2d", 172800000},
            {"1m30s", 90000},   {"1s500ms", 1500},   {"90m", 5400000},
            {"1d1h1m1s1ms", 90061001}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t ms = -1;
    assert_int_equal(saga__duration_parse(ok[i].text, &ms), SAGA_DURATION_OK);
    assert_int_equal(ms, ok[i].ms);
  }
}

static void test_a_bare_number_has_no_unit_and_nonsense_is_refused(void **s) {
  (void)s;
  int64_t ms = 7;
  assert_int_equal(saga__duration_parse("90", &ms), SAGA_DURATION_ENOUNIT);
  assert_int_equal(saga__duration_parse("0", &ms), SAGA_DURATION_ENOUNIT);
  static const char *const bad[] = {"",     "x",    "5x",   "-5s", "+5s",
                                    "1h30", "s",    "1.5h", "5 s", " 5s",
                                    "5S",   "5sec", "99999999999999999d",
                                    "9223372036854775808ms"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (saga__duration_parse(bad[i], &ms) != SAGA_DURATION_EINVAL)
      fail_msg("\"%s\" was not refused as invalid", bad[i]);
  assert_int_equal(saga__duration_parse(NULL, &ms), SAGA_DURATION_EINVAL);
  assert_int_equal(ms, 7); /* untouched */
  char why[256];
  assert_string_equal(saga__duration_explain("90", why, sizeof why),
                      "\"90\" has no unit: use ms, s, m, h or d (e.g. 90ms, "
                      "30s, 1h30m)");
  assert_string_equal(saga__duration_explain("5x", why, sizeof why),
                      "\"5x\" is not a duration: write a number and a unit, "
                      "ms, s, m, h or d, or several (e.g. 250ms, 30s, 1h30m)");
}

static void test_durations_format_exactly_and_parse_back(void **state) {
  (void)state;
  char b[32];
  assert_string_equal(saga__duration_format(b, sizeof b, 0), "0ms");
  assert_string_equal(saga__duration_format(b, sizeof b, 250), "250ms");
  assert_string_equal(saga__duration_format(b, sizeof b, 10000), "10s");
  assert_string_equal(saga__duration_format(b, sizeof b, 5400000), "1h30m");
  assert_string_equal(saga__duration_format(b, sizeof b, 2592000000),
                      "30d");
  assert_string_equal(saga__duration_format(b, sizeof b, -1500), "-1s500ms");
  const int64_t round[] = {1, 999, 1001, 61000, 3600001, 90061001,
                           INT64_MAX};
  for (size_t i = 0; i < sizeof round / sizeof round[0]; i++) {
    int64_t back = -1;
    saga__duration_format(b, sizeof b, round[i]);
    assert_int_equal(saga__duration_parse(b, &back), SAGA_DURATION_OK);
    assert_int_equal(back, round[i]);
  }
}

/* A \u0000 escape is found inside a JSON string only: an escaped
 * backslash before "u0000", an escaped quote, or text outside strings are
 * not one. */
static void test_a_nul_escape_is_found_inside_strings_only(void **state) {
  (void)state;
  static const struct {
    const char *json;
    size_t at; /* SIZE_MAX: none */
  } cases[] = {
      {"{\"a\":\"x\\u0000\"}", 7},
      {"[\"\\u0000\"]", 2},
      {"{\"k\\u0000\":1}", 3},
      {"{\"a\":\"\\\\u0000\"}", SIZE_MAX},
      {"{\"a\":\"\\\"\\u0000\"}", 8},
      {"{\"a\":\"\\u00001\"}", 6},
      {"{\"a\":\"\\u0001\"}", SIZE_MAX},
      {"\\u0000", SIZE_MAX},
      {"{\"a\":\"\\u000", SIZE_MAX},
      {"", SIZE_MAX}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = strlen(cases[i].json);
    size_t want = cases[i].at == SIZE_MAX ? n : cases[i].at;
    assert_int_equal(saga__json_nul_escape_at(cases[i].json, n), want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utf8_sequences_have_their_length),
      cmocka_unit_test(test_utf8_refuses_what_is_not_utf8),
      cmocka_unit_test(test_free_text_is_cleaned_in_place),
      cmocka_unit_test(test_hex_digits_have_their_values),
      cmocka_unit_test(test_rfc3339_times_are_utc_with_milliseconds),
      cmocka_unit_test(test_rfc3339_parses_back_with_its_zone),
      cmocka_unit_test(test_durations_take_units_and_compounds),
      cmocka_unit_test(test_a_bare_number_has_no_unit_and_nonsense_is_refused),
      cmocka_unit_test(test_durations_format_exactly_and_parse_back),
      cmocka_unit_test(test_a_nul_escape_is_found_inside_strings_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
