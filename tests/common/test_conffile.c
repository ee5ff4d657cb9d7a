/* The `name = value` config file reader (common/conffile.h): what it hands
 * the callback, what it skips, and that every refusal names file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conffile.h"

static char path[64];

static void write_file(const char *text) {
  snprintf(path, sizeof path, "/tmp/saga-conffile-%ld.conf", (long)getpid());
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

typedef struct {
  char seen[1024];
  int stop_at; /* 1-based line count to refuse, 0 = never */
  int n;
} rec_t;

static int record(void *arg, const char *name, const char *value,
                  const char *where, char *err, size_t errlen) {
  rec_t *r = arg;
  r->n++;
  size_t used = strlen(r->seen);
  snprintf(r->seen + used, sizeof r->seen - used, "[%s|%s|%s]", name, value,
           strrchr(where, ':'));
  if (r->n == r->stop_at) {
    snprintf(err, errlen, "%s: refused", where);
    return 7;
  }
  return 0;
}

static void test_lines_reach_the_callback_in_order(void **state) {
  (void)state;
  write_file("# a comment\n"
             "\n"
             "  a = 1  \n"
             "b=two words\n"
             "c = \"  kept  \"\n"
             "d = \"\"\n"
             "e = has # no comment\n"
             "f = \"q\\\"b\\\\\"\n"
             "\t# indented comment\n");
  rec_t r = {0};
  char err[256] = "";
  assert_int_equal(saga__conf_read(path, record, &r, err, sizeof err),
                   SAGA_CONF_OK);
  assert_string_equal(r.seen, "[a|1|:3][b|two words|:4][c|  kept  |:5]"
                              "[d||:6][e|has # no comment|:7][f|q\"b\\|:8]");
  unlink(path);
}

static void expect_syntax(const char *text, const char *want_tail) {
  write_file(text);
  rec_t r = {0};
  char err[256] = "", want[256];
  assert_int_equal(saga__conf_read(path, record, &r, err, sizeof err),
                   SAGA_CONF_ESYNTAX);
  snprintf(want, sizeof want, "%s:%s", path, want_tail);
  assert_string_equal(err, want);
  unlink(path);
}

static void test_malformed_lines_are_refused_with_file_and_line(void **s) {
  (void)s;
  expect_syntax("a = 1\njust words\n",
                "2: expected \"name = value\", got \"just words\"");
  expect_syntax(" = x\n", "1: expected a name before '='");
  expect_syntax("two words = x\n", "1: expected a name before '='");
  expect_syntax("a = \"open\n",
                "1: a: unterminated or trailing text after quoted value");
  expect_syntax("a = \"x\" y\n",
                "1: a: unterminated or trailing text after quoted value");
  size_t n = SAGA_CONF_MAX_LINE + 8;
  char *big = malloc(n + 1);
  assert_non_null(big);
  memset(big, 'x', n);
  memcpy(big, "a = ", 4);
  big[n] = '\0';
  char tail[64];
  snprintf(tail, sizeof tail, "1: line longer than %d bytes",
           SAGA_CONF_MAX_LINE);
  expect_syntax(big, tail);
  free(big);
}

static void test_the_callback_stops_the_reading(void **state) {
  (void)state;
  write_file("a = 1\nb = 2\nc = 3\n");
  rec_t r = {.stop_at = 2};
  char err[256] = "", want[128];
  assert_int_equal(saga__conf_read(path, record, &r, err, sizeof err),
                   SAGA_CONF_ESTOP);
  assert_int_equal(r.n, 2);
  snprintf(want, sizeof want, "%s:2: refused", path);
  assert_string_equal(err, want);
  unlink(path);
}

static void test_a_missing_file_says_which_and_why(void **state) {
  (void)state;
  rec_t r = {0};
  char err[256] = "";
  assert_int_equal(
      saga__conf_read("/nonexistent/x.conf", record, &r, err, sizeof err),
      SAGA_CONF_EFILE);
  assert_string_equal(err, "could not open config file \"/nonexistent/x.conf\": "
                           "No such file or directory");
  assert_int_equal(r.n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines_reach_the_callback_in_order),
      cmocka_unit_test(test_malformed_lines_are_refused_with_file_and_line),
      cmocka_unit_test(test_the_callback_stops_the_reading),
      cmocka_unit_test(test_a_missing_file_says_which_and_why),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
