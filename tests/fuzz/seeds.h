/* Shared by the two files of fuzz_make_seeds: where seeds go, and a byte
 * buffer to assemble an input in a fuzz target's layout. */
#ifndef SAGA_FUZZ_SEEDS_H
#define SAGA_FUZZ_SEEDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEEDS_TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/* Write p[0..n) to <corpus dir>/<sub>/<name>; exits on error. */
void seeds_put(const char *sub, const char *name, const void *p, size_t n);

/* The wire target's seeds (make_seeds_wire.c). */
void seeds_make_wire(void);

typedef struct {
  uint8_t b[65536];
  size_t n;
} buf_t;

static inline void add(buf_t *b, const void *p, size_t n) {
  if (b->n + n > sizeof b->b)
    abort();
  memcpy(b->b + b->n, p, n);
  b->n += n;
}

static inline void add_byte(buf_t *b, uint8_t v) { add(b, &v, 1); }

/* A length byte and the string's bytes. */
static inline void add_field(buf_t *b, const char *s) {
  add_byte(b, (uint8_t)strlen(s));
  add(b, s, strlen(s));
}

#endif
