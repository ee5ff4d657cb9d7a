/* sagad log records: exact text and JSON lines, escapes of odd characters,
 * a bounded length, and no formatting at all below the threshold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* 2025-01-02T03:04:05.678Z */
#define T0 1735787045678LL

static char line[SAGAD_LOG_LINE_MAX];

static const char *fmt(sagad_log_format_t f, int64_t ms,
                       sagad_log_level_t lv, const char *saga,
                       const char *step, const char *msg) {
  size_t n = sagad_log_format_record(line, sizeof line, f, ms, lv, saga, step,
                                     msg);
  assert_int_equal(n, strlen(line));
  return line;
}

static void test_text_record_carries_time_level_saga_and_step(void **state) {
  (void)state;
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_TEXT, T0, SAGAD_LOG_INFO, "8f2c",
                          "charge", "reply received"),
                      "2025-01-02T03:04:05.678Z info  saga=8f2c step=charge: "
                      "reply received\n");
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_TEXT, T0, SAGAD_LOG_ERROR, NULL,
                          NULL, "boom"),
                      "2025-01-02T03:04:05.678Z error boom\n");
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_TEXT, -1, SAGAD_LOG_WARN, "s1",
                          NULL, "late"),
                      "warn  saga=s1: late\n");
}

static void test_json_record_has_fields(void **state) {
  (void)state;
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_JSON, T0, SAGAD_LOG_DEBUG, "8f2c",
                          "charge", "reply received"),
                      "{\"ts\":\"2025-01-02T03:04:05.678Z\",\"level\":"
                      "\"debug\",\"saga\":\"8f2c\",\"step\":\"charge\","
                      "\"msg\":\"reply received\"}\n");
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_JSON, -1, SAGAD_LOG_INFO, NULL,
                          NULL, "started"),
                      "{\"level\":\"info\",\"msg\":\"started\"}\n");
}

static void test_json_escapes_odd_characters(void **state) {
  (void)state;
  assert_string_equal(
      fmt(SAGAD_LOG_FORMAT_JSON, -1, SAGAD_LOG_INFO, "a\"b", "s\\t",
          "line1\nline2\ttab\r\x01\x7f caf\xc3\xa9 bad\xff\xc3("),
      "{\"level\":\"info\",\"saga\":\"a\\\"b\",\"step\":\"s\\\\t\","
      "\"msg\":\"line1\\nline2\\ttab\\r\\u0001\\u007f caf\xc3\xa9 "
      "bad\\ufffd\\ufffd(\"}\n");
}

static void test_text_escapes_odd_characters_and_quotes_fields(void **state) {
  (void)state;
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_TEXT, -1, SAGAD_LOG_INFO,
                          "id with space", "x\"y",
                          "forged\n2025 error fake\x1b[31m \xff ok"),
                      "info  saga=\"id with space\" step=\"x\\\"y\": "
                      "forged 2025 error fake\\x1b[31m \\xff ok\n");
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_TEXT, -1, SAGAD_LOG_INFO, "", NULL,
                          "empty id"),
                      "info  saga=\"\": empty id\n");
}

/* Multi-line messages (libpq's errors, librdkafka's) read as one text
 * line: each break or tab with the blanks around it is one space, and no
 * literal "\n" or "\t" is written; JSON keeps them as string escapes. */
static void test_text_folds_line_breaks_and_tabs_into_spaces(void **state) {
  (void)state;
  const char *msg = "could not connect to the event store:\n\tFATAL:  "
                    "password authentication failed\r\n  DETAIL:\tx \n";
  const char *r = fmt(SAGAD_LOG_FORMAT_TEXT, -1, SAGAD_LOG_ERROR, NULL, NULL,
                      msg);
  assert_string_equal(r, "error could not connect to the event store: "
                         "FATAL:  password authentication failed DETAIL: "
                         "x\n");
  assert_null(strchr(r, '\\'));
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_TEXT, -1, SAGAD_LOG_INFO, "s1",
                          NULL, "\n\tonly inside\n"),
                      "info  saga=s1: only inside\n");
  assert_string_equal(fmt(SAGAD_LOG_FORMAT_TEXT, -1, SAGAD_LOG_INFO,
                          "a\nb", NULL, "m"),
                      "info  saga=\"a b\": m\n");
  r = fmt(SAGAD_LOG_FORMAT_JSON, -1, SAGAD_LOG_ERROR, NULL, NULL, "a\n\tb");
  assert_string_equal(r, "{\"level\":\"error\",\"msg\":\"a\\n\\tb\"}\n");
}

static void test_long_message_is_cut_and_stays_one_valid_record(void **state) {
  (void)state;
  char *big = malloc(3 * SAGAD_LOG_LINE_MAX);
  memset(big, 'x', 3 * SAGAD_LOG_LINE_MAX - 1);
  big[3 * SAGAD_LOG_LINE_MAX - 1] = '\0';
  const char *r =
      fmt(SAGAD_LOG_FORMAT_JSON, T0, SAGAD_LOG_INFO, "s", "t", big);
  size_t n = strlen(r);
  assert_true(n < SAGAD_LOG_LINE_MAX);
  assert_non_null(strstr(r, "\"saga\":\"s\",\"step\":\"t\""));
  assert_string_equal(r + n - 7, "x...\"}\n");
  r = fmt(SAGAD_LOG_FORMAT_TEXT, T0, SAGAD_LOG_INFO, "s", NULL, big);
  n = strlen(r);
  assert_true(n < SAGAD_LOG_LINE_MAX);
  assert_string_equal(r + n - 5, "x...\n");
  assert_null(memchr(r, '\n', n - 1));
  free(big);
}

static int calls;
static int counted(void) { return ++calls; }

/* Read what the log wrote into the pipe so far. */
static size_t drain(int fd, char *buf, size_t cap) {
  ssize_t n = read(fd, buf, cap - 1);
  buf[n > 0 ? n : 0] = '\0';
  return n > 0 ? (size_t)n : 0;
}

static void test_records_below_threshold_are_not_formatted(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  sagad_log_setup(SAGAD_LOG_INFO, SAGAD_LOG_FORMAT_JSON, false, p[1]);
  calls = 0;
  LOG_DEBUG("skipped %d", counted());
  SLOG_DEBUG("s", "t", "skipped %d", counted());
  assert_int_equal(calls, 0);
  SLOG_WARN("s9", "ship", "kept %d", counted());
  assert_int_equal(calls, 1);
  char buf[512];
  drain(p[0], buf, sizeof buf);
  assert_string_equal(buf, "{\"level\":\"warn\",\"saga\":\"s9\",\"step\":"
                           "\"ship\",\"msg\":\"kept 1\"}\n");

  /* AUTO on a pipe resolves to JSON; timestamps on give RFC 3339 UTC ms. */
  sagad_log_setup(SAGAD_LOG_DEBUG, SAGAD_LOG_FORMAT_AUTO, true, p[1]);
  assert_int_equal(sagad_log_format_in_use(), SAGAD_LOG_FORMAT_JSON);
  LOG_DEBUG("now %s", "shown");
  drain(p[0], buf, sizeof buf);
  assert_memory_equal(buf, "{\"ts\":\"", 7);
  assert_int_equal(buf[7 + 10], 'T');
  assert_int_equal(buf[7 + 19], '.');
  assert_int_equal(buf[7 + 23], 'Z');
  assert_non_null(strstr(buf, "\"msg\":\"now shown\"}\n"));
  close(p[0]);
  close(p[1]);
  sagad_log_setup(SAGAD_LOG_INFO, SAGAD_LOG_FORMAT_TEXT, true, 2);
}

static void test_levels_map_from_config_and_syslog(void **state) {
  (void)state;
  assert_string_equal(sagad_log_level_name(SAGAD_LOG_WARN), "warn");
  assert_int_equal(sagad_log_level_from_syslog(3), SAGAD_LOG_ERROR);
  assert_int_equal(sagad_log_level_from_syslog(4), SAGAD_LOG_WARN);
  assert_int_equal(sagad_log_level_from_syslog(6), SAGAD_LOG_INFO);
  assert_int_equal(sagad_log_level_from_syslog(7), SAGAD_LOG_DEBUG);
  sagad_config_t *cfg = sagad_config_new();
  char err[256];
  const char *names[] = {"error", "warn", "info", "debug"};
  for (int lv = 0; lv < 4; lv++) {
    assert_int_equal(
        sagad_config_set(cfg, "log.level", names[lv], NULL, err, sizeof err),
        0);
    assert_int_equal(cfg->log_level, lv);
    assert_string_equal(sagad_log_level_name((sagad_log_level_t)lv),
                        names[lv]);
  }
  sagad_config_free(cfg);
}

/* log.level.kafka: inherit by default (the global threshold decides);
 * set, it decides alone for librdkafka's records, quieter or louder than
 * log.level. */
static void test_a_component_level_decides_for_its_records(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  char err[256];
  assert_int_equal(cfg->log_level_kafka, SAGAD_LOG_INHERIT);
  sagad_log_set_sink(NULL, SAGAD_LOG_INFO);
  assert_true(sagad_log_wanted(SAGAD_LOG_INFO, cfg->log_level_kafka));
  assert_false(sagad_log_wanted(SAGAD_LOG_DEBUG, cfg->log_level_kafka));
  assert_int_equal(sagad_config_set(cfg, "log.level.kafka", "warn", NULL, err,
                                    sizeof err),
                   0);
  assert_int_equal(cfg->log_level_kafka, SAGAD_LOG_WARN);
  assert_true(sagad_log_wanted(SAGAD_LOG_WARN, cfg->log_level_kafka));
  assert_false(sagad_log_wanted(SAGAD_LOG_INFO, cfg->log_level_kafka));
  assert_int_equal(sagad_config_set(cfg, "log.level.kafka", "debug", NULL,
                                    err, sizeof err),
                   0);
  assert_true(sagad_log_wanted(SAGAD_LOG_DEBUG, cfg->log_level_kafka));
  assert_int_equal(sagad_config_set(cfg, "log.level.kafka", "loud", NULL, err,
                                    sizeof err),
                   SAGAD_CONFIG_INVALID);
  assert_non_null(strstr(err, "log.level.kafka: must be one of error, warn, "
                              "info, debug, inherit, got \"loud\""));
  sagad_config_free(cfg);
  sagad_log_setup(SAGAD_LOG_INFO, SAGAD_LOG_FORMAT_TEXT, true, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_record_carries_time_level_saga_and_step),
      cmocka_unit_test(test_json_record_has_fields),
      cmocka_unit_test(test_json_escapes_odd_characters),
      cmocka_unit_test(test_text_escapes_odd_characters_and_quotes_fields),
      cmocka_unit_test(test_text_folds_line_breaks_and_tabs_into_spaces),
      cmocka_unit_test(test_long_message_is_cut_and_stays_one_valid_record),
      cmocka_unit_test(test_records_below_threshold_are_not_formatted),
      cmocka_unit_test(test_levels_map_from_config_and_syslog),
      cmocka_unit_test(test_a_component_level_decides_for_its_records),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
