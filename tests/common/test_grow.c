/* The growable array (common/grow.h): capacity from first, doubling,
 * contents kept, and refusals that leave the array as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "grow.h"

static void test_an_array_grows_from_first_by_doubling(void **state) {
  (void)state;
  int *v = NULL;
  size_t n = 0, cap = 0;
  for (int i = 0; i < 100; i++) {
    assert_int_equal(SAGA_GROW(v, cap, n + 1, 8), 0);
    v[n++] = i;
    if (i == 0)
      assert_int_equal(cap, 8);
  }
  assert_int_equal(cap, 128);
  for (int i = 0; i < 100; i++)
    assert_int_equal(v[i], i);
  /* room already there: nothing changes */
  int *same = v;
  assert_int_equal(SAGA_GROW(v, cap, 128, 8), 0);
  assert_ptr_equal(v, same);
  assert_int_equal(cap, 128);
  /* a need past twice the capacity doubles until it fits */
  assert_int_equal(SAGA_GROW(v, cap, 1000, 8), 0);
  assert_int_equal(cap, 1024);
  assert_int_equal(v[99], 99);
  free(v);
}

static void test_an_impossible_size_is_refused_and_changes_nothing(void **s) {
  (void)s;
  uint64_t *v = NULL;
  size_t cap = 0;
  assert_int_equal(SAGA_GROW(v, cap, 4, 4), 0);
  uint64_t *before = v;
  assert_int_equal(SAGA_GROW(v, cap, SIZE_MAX / 4, 4), -1);
  assert_ptr_equal(v, before);
  assert_int_equal(cap, 4);
  assert_int_equal(SAGA_GROW(v, cap, SIZE_MAX, 4), -1);
  assert_int_equal(cap, 4);
  free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_array_grows_from_first_by_doubling),
      cmocka_unit_test(test_an_impossible_size_is_refused_and_changes_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
