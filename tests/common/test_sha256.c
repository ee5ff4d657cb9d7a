/* SHA-256 (common/sha256.h) against the FIPS 180-4 examples and the
 * lengths around the padding's block boundary, checked with sha256sum's
 * digests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sha256.h"

static void test_sha256_matches_the_fips_examples(void **state) {
  (void)state;
  char hex[SAGA_SHA256_HEX_SIZE];
  assert_string_equal(
      saga__sha256_hex(NULL, 0, hex),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert_string_equal(
      saga__sha256_hex("abc", 3, hex),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  static const char two[] =
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  assert_string_equal(
      saga__sha256_hex(two, sizeof two - 1, hex),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_sha256_of_a_million_a(void **state) {
  (void)state;
  char *m = malloc(1000000);
  assert_non_null(m);
  memset(m, 'a', 1000000);
  char hex[SAGA_SHA256_HEX_SIZE];
  assert_string_equal(
      saga__sha256_hex(m, 1000000, hex),
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(m);
}

/* 55 bytes leave room for the length in one block, 56 do not, 64 fill
 * one: the three paths of the padding. */
static void test_sha256_pads_at_the_block_boundary(void **state) {
  (void)state;
  char m[64], hex[SAGA_SHA256_HEX_SIZE];
  memset(m, 'a', sizeof m);
  assert_string_equal(
      saga__sha256_hex(m, 55, hex),
      "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  assert_string_equal(
      saga__sha256_hex(m, 56, hex),
      "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  assert_string_equal(
      saga__sha256_hex(m, 64, hex),
      "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sha256_matches_the_fips_examples),
      cmocka_unit_test(test_sha256_of_a_million_a),
      cmocka_unit_test(test_sha256_pads_at_the_block_boundary),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
