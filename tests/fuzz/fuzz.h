/* Shared by the fuzz targets: the libFuzzer entry point every target
 * defines, and a reader that cuts structured fields out of the raw input.
 * Test-only code: a target may abort() when an oracle fails. */
#ifndef SAGA_FUZZ_H
#define SAGA_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Run one input. Returns 0; a crash, a sanitizer report or abort() is a
 * finding. Built with libFuzzer (SAGA_FUZZ=ON) or with replay_main.c. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fail the run with a message: an oracle (not the code under test) saw a
 * broken property. */
#define FUZZ_ASSERT(cond)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__,          \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

typedef struct {
  const uint8_t *p;
  size_t n;
} fuzz_in_t;

/* Next byte, 0 once the input is used up. */
static inline uint8_t fuzz_byte(fuzz_in_t *in) {
  if (in->n == 0)
    return 0;
  in->n--;
  return *in->p++;
}

/* Next `want` bytes (fewer when the input is short): *len gets how many. */
static inline const uint8_t *fuzz_bytes(fuzz_in_t *in, size_t want,
                                        size_t *len) {
  const uint8_t *p = in->p;
  *len = want < in->n ? want : in->n;
  in->p += *len;
  in->n -= *len;
  return p;
}

#endif
