/* Test helper: a packed protobuf message with a NUL inside one of its
 * strings, which no C encoder produces (C strings end at a NUL) but any
 * producer can send. Header-only: include it after protobuf-c and cmocka. */
#ifndef SAGA_TEST_PB_NUL_H
#define SAGA_TEST_PB_NUL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Pack m (malloc'd, *len bytes; free()), then turn the first 'X' of its
 * bytes into a NUL. Fails the test when there is no 'X'. */
static inline void *ts_pack_with_nul(const ProtobufCMessage *m, size_t *len) {
  *len = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(*len);
  assert_non_null(b);
  protobuf_c_message_pack(m, b);
  uint8_t *x = memchr(b, 'X', *len);
  assert_non_null(x);
  *x = '\0';
  return b;
}

#endif
