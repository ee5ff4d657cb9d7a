/* The byte-range copy (common/mem.h): the bytes, a NUL after them, NUL
 * bytes inside kept, an empty or NULL range, and an impossible size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"

static void test_a_range_is_copied_with_a_nul_after_it(void **state) {
  (void)state;
  const char src[] = "abc\0def";
  char *d = saga__memdup(src, 7);
  assert_non_null(d);
  assert_memory_equal(d, src, 7);
  assert_int_equal(d[7], '\0');
  free(d);
  /* a prefix of a longer string comes back as that prefix */
  d = saga__memdup("hello world", 5);
  assert_non_null(d);
  assert_string_equal(d, "hello");
  free(d);
}

static void test_an_empty_range_is_the_empty_string(void **state) {
  (void)state;
  char *d = saga__memdup(NULL, 0);
  assert_non_null(d);
  assert_string_equal(d, "");
  free(d);
  d = saga__memdup("x", 0);
  assert_non_null(d);
  assert_string_equal(d, "");
  free(d);
}

static void test_an_impossible_size_is_refused(void **state) {
  (void)state;
  assert_null(saga__memdup("x", SIZE_MAX));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_range_is_copied_with_a_nul_after_it),
      cmocka_unit_test(test_an_empty_range_is_the_empty_string),
      cmocka_unit_test(test_an_impossible_size_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
