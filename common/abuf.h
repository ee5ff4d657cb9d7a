/* A growing text buffer with a ceiling, shared by the metrics renderer,
 * the admin HTTP server and the OTLP exporter. Once an append fails
 * (ceiling or out of memory) the buffer stays failed and later appends do
 * nothing, so a writer checks once at the end. Plain object, no I/O; one thread at a time. */
#ifndef SAGA_COMMON_ABUF_H
#define SAGA_COMMON_ABUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char *data;   /* NUL-terminated when len > 0 or after abuf_cstr */
  size_t len;
  size_t cap;
  size_t limit; /* most bytes of content; 0 = no ceiling */
  bool failed;
} abuf_t;

/* A zeroed abuf_t is an empty buffer without ceiling. */
#define ABUF_INIT {NULL, 0, 0, 0, false}

/* Append n bytes / a NUL-terminated string / formatted text. Return 0, or
 * -1 when the buffer has failed (now or before). */
int abuf_add(abuf_t *b, const char *s, size_t n);
int abuf_puts(abuf_t *b, const char *s);
int abuf_printf(abuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append s as the inside of a JSON string (quotes not added): escapes ",
 * \ and control characters; bytes >= 0x80 are copied as they are. */
int abuf_json_str(abuf_t *b, const char *s);

/* Content as a NUL-terminated string ("" when empty; never NULL unless out
 * of memory). */
const char *abuf_cstr(abuf_t *b);

/* Hand the content over: returns the malloc'd string (the caller frees it)
 * and leaves b empty; NULL when b failed or out of memory. */
char *abuf_take(abuf_t *b, size_t *len);

/* Empty the buffer, keeping its memory and ceiling, clearing failure. */
void abuf_reset(abuf_t *b);

/* Free the memory; b is empty (and not failed) afterwards. NULL-safe. */
void abuf_free(abuf_t *b);

#endif
