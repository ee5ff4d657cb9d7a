/* saga_index_query without a database: the cursor token round trip and
 * its refusals, time bounds, and which parameters a filter sets. The SQL
 * itself runs against PostgreSQL in test_sagactl_program and
 * test_admin_pg. The status names are checked against the machine's
 * list, which writes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "index_query.h"
#include "saga_machine.h"

static void test_a_cursor_round_trips_and_looks_opaque(void **state) {
  (void)state;
  char tok[IQ_CURSOR_SIZE];
  iq_cursor_t c;
  static const char *const ids[] = {"a", "ab", "abc", "o-1:with:colons",
                                    "\xc3\xa9t\xc3\xa9-42", NULL};
  for (size_t i = 0; ids[i]; i++) {
    assert_int_equal(iq_cursor_encode("1700000000123456", ids[i], tok,
                                      sizeof tok),
                     0);
    assert_null(strchr(tok, ':'));
    assert_null(strchr(tok, '='));
    assert_int_equal(iq_cursor_decode(tok, &c), 0);
    assert_true(c.started_us == 1700000000123456);
    assert_string_equal(c.saga_id, ids[i]);
  }
  assert_int_equal(iq_cursor_encode("-5", "x", tok, sizeof tok), 0);
  assert_int_equal(iq_cursor_decode(tok, &c), 0);
  assert_true(c.started_us == -5);
  /* the longest id fits the token size */
  char id[IQ_ID_MAX + 2];
  memset(id, 'z', IQ_ID_MAX);
  id[IQ_ID_MAX] = '\0';
  assert_int_equal(iq_cursor_encode("-9223372036854775807", id, tok,
                                    sizeof tok),
                   0);
  /* ... but no started_at PostgreSQL holds is that far back: forged */
  assert_int_equal(iq_cursor_decode(tok, &c), -1);
  assert_int_equal(iq_cursor_encode("-62135596800000000", id, tok,
                                    sizeof tok),
                   0); /* 0001-01-01 */
  assert_int_equal(iq_cursor_decode(tok, &c), 0);
  assert_string_equal(c.saga_id, id);
  assert_true(c.started_us == IQ_CURSOR_US_MIN);
  assert_int_equal(iq_cursor_encode("253402300800000000", "a", tok,
                                    sizeof tok),
                   0); /* 10000-01-01 */
  assert_int_equal(iq_cursor_decode(tok, &c), -1);
  assert_int_equal(iq_cursor_encode("253402300799999999", "a", tok,
                                    sizeof tok),
                   0);
  assert_int_equal(iq_cursor_decode(tok, &c), 0);
  id[IQ_ID_MAX] = 'z';
  id[IQ_ID_MAX + 1] = '\0';
  assert_int_equal(iq_cursor_encode("1", id, tok, sizeof tok), -1);
  assert_int_equal(iq_cursor_encode("12x", "a", tok, sizeof tok), -1);
  assert_int_equal(iq_cursor_encode("", "a", tok, sizeof tok), -1);
  assert_int_equal(iq_cursor_encode("1", "", tok, sizeof tok), -1);
  assert_int_equal(iq_cursor_encode("1", "abc", tok, 4), -1);
}

static void test_what_is_not_a_cursor_is_refused(void **state) {
  (void)state;
  iq_cursor_t c;
  static const char *const bad[] = {
      "",         "o-1",  /* a saga id, the old cursor */
      "MToxOjpx", /* "1:1::q": fine, but below is each kind of wrong */
      "MjoxOmE",  /* "2:1:a": another version */
      "MTp4OmE",  /* "1:x:a": not a number */
      "MToxOg",   /* "1:1:": no id */
      "MToxMg",   /* "1:12": no id either */
      "MTox!mE",  /* not base64url */
      "M",        /* a length no encoding has */
      NULL};
  assert_int_equal(iq_cursor_decode(bad[2], &c), 0);
  assert_string_equal(c.saga_id, ":q");
  for (size_t i = 0; bad[i]; i++)
    if (i != 2)
      assert_int_equal(iq_cursor_decode(bad[i], &c), -1);
  assert_int_equal(iq_cursor_decode(NULL, &c), -1);
}

static void test_time_bounds_are_rfc3339_or_a_duration_ago(void **state) {
  (void)state;
  iq_time_t t;
  char why[256] = "";
  assert_int_equal(iq_time_parse("2025-01-31T12:00:00Z", &t, why, sizeof why),
                   0);
  assert_true(t.set && !t.relative && t.ms == 1738324800000);
  assert_int_equal(iq_time_parse("1h30m", &t, why, sizeof why), 0);
  assert_true(t.set && t.relative && t.ms == 5400000);
  assert_int_equal(iq_time_parse("90", &t, why, sizeof why), -1);
  assert_non_null(strstr(why, "\"90\" is neither an RFC 3339 time"));
  assert_int_equal(iq_time_parse("2025-01-31", &t, why, sizeof why), -1);
  assert_non_null(strstr(why, "\"2025-01-31\""));
  /* further back than any saga: cut to IQ_BACK_MAX_MS, the same sagas,
   * where the database's time arithmetic would overflow */
  assert_int_equal(iq_time_parse("100000000d", &t, why, sizeof why), 0);
  assert_true(t.set && t.relative && t.ms == IQ_BACK_MAX_MS);
  assert_int_equal(iq_time_parse("36500d", &t, why, sizeof why), 0);
  assert_true(t.ms == (int64_t)36500 * 86400000);
}

static void test_statements_carry_the_filter(void **state) {
  (void)state;
  iq_stuck_t st = {.default_ms = IQ_STUCK_DEFAULT_MS};
  iq_cursor_t after = {.started_us = 42, .saga_id = "o-7"};
  iq_filter_t f = {.state = "running",
                   .type = "order",
                   .since = {.set = true, .relative = true, .ms = 3600000},
                   .until = {.set = true, .ms = 1738324800000},
                   .stuck = true,
                   .after = &after,
                   .limit = 20};
  iq_stmt_t s;
  assert_int_equal(iq_list(&f, &st, &s), 0);
  assert_int_equal(s.nparams, 12);
  assert_non_null(strstr(s.sql, "ORDER BY i.started_at DESC, i.saga_id DESC"));
  assert_string_equal(s.params[0], "[]");
  assert_string_equal(s.params[1], "300000");
  assert_string_equal(s.params[2], "running");
  assert_string_equal(s.params[3], "order");
  assert_null(s.params[4]);
  assert_string_equal(s.params[5], "3600000");
  assert_string_equal(s.params[6], "1738324800000");
  assert_null(s.params[7]);
  assert_string_equal(s.params[8], "true");
  assert_string_equal(s.params[9], "42");
  assert_string_equal(s.params[10], "o-7");
  assert_string_equal(s.params[11], "21"); /* one more: is there a next? */
  f.oldest_first = true;
  f.after = NULL;
  assert_int_equal(iq_list(&f, &st, &s), 0);
  assert_non_null(strstr(s.sql, "ORDER BY i.started_at, i.saga_id LIMIT"));
  assert_null(s.params[9]);
  assert_null(s.params[10]);
  assert_int_equal(iq_count(&f, &st, &s), 0);
  assert_int_equal(s.nparams, 9);
  assert_non_null(strstr(s.sql, "count(*)"));
  /* counts per state: every filter but the state */
  assert_int_equal(iq_counts(&f, &st, &s), 0);
  assert_int_equal(s.nparams, 9);
  assert_non_null(strstr(s.sql, "GROUP BY i.status"));
  assert_null(s.params[2]);
  assert_string_equal(s.params[3], "order");
  assert_string_equal(s.params[8], "true");
  assert_int_equal(iq_get("o-1", &st, &s), 0);
  assert_int_equal(s.nparams, 3);
  assert_string_equal(s.params[2], "o-1");
  /* refusals */
  f.state = "stuck";
  assert_int_equal(iq_list(&f, &st, &s), -1);
  assert_int_equal(iq_count(&f, &st, &s), -1);
  assert_int_equal(iq_counts(&f, &st, &s), -1);
  f.state = NULL;
  f.limit = 0;
  assert_int_equal(iq_list(&f, &st, &s), -1);
  f.limit = IQ_LIMIT_MAX + 1;
  assert_int_equal(iq_list(&f, &st, &s), -1);
  f.limit = 1;
  st.default_ms = 0;
  assert_int_equal(iq_list(&f, &st, &s), -1);
  assert_int_equal(iq_get("o-1", &st, &s), -1);
}

static void test_status_names_are_the_five(void **state) {
  (void)state;
  /* every status the machine writes to saga_index, and no other */
#define CHECK_(name, value, text)                                             \
  assert_true(iq_status_known(text) == (SM_##name != SM_NEW));
  SM_STATUS_LIST(CHECK_)
#undef CHECK_
  assert_true(iq_status_known("running"));
  assert_true(iq_status_known("compensation_failed"));
  assert_false(iq_status_known("stuck"));
  assert_false(iq_status_known(""));
  assert_false(iq_status_known(NULL));
  /* iq_status_name lists the same five, in IQ_STATUSES' order */
  char all[128] = "";
  const char *name;
  for (size_t i = 0; (name = iq_status_name(i)) != NULL; i++) {
    assert_true(iq_status_known(name));
    if (i)
      strcat(all, ", ");
    strcat(all, name);
  }
  assert_string_equal(all, IQ_STATUSES);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_cursor_round_trips_and_looks_opaque),
      cmocka_unit_test(test_what_is_not_a_cursor_is_refused),
      cmocka_unit_test(test_time_bounds_are_rfc3339_or_a_duration_ago),
      cmocka_unit_test(test_statements_carry_the_filter),
      cmocka_unit_test(test_status_names_are_the_five),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
