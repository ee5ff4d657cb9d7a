/* Message headers without a broker library: a list to send (names and
 * values borrowed, no allocation for a short one), a read view of a
 * received message's headers (no copy), and an owned copy for code that
 * keeps messages. The wire codec (wire.h) encodes into and decodes from
 * these; wire_kafka.h converts to and from librdkafka's, and the
 * coordinator's broker port (coordinator/engine/ports.h) carries them.
 * Pure: part of target saga_wire. */
#ifndef SAGA_WIRE_HEADERS_H
#define SAGA_WIRE_HEADERS_H

#include <stddef.h>

#include "saga/protocol.h"

/* One header: a name and a value of len bytes (value NULL: a header
 * without a value). Borrowed. */
typedef struct saga__hdr {
  const char *name;
  const void *value;
  size_t len;
} saga__hdr_t;

/* A list of headers to send, in order. Names and values are borrowed:
 * they must outlive every use of the list. The first SAGA__HDRS_INLINE
 * entries live in the struct itself (an encoded message has five), so
 * building one allocates nothing; a longer list (a dead letter copying
 * its source's headers) grows on the heap. Do not copy the struct. */
#define SAGA__HDRS_INLINE 8
typedef struct saga__hdrs {
  size_t n;
  size_t cap;
  saga__hdr_t *heap; /* NULL while the inline room suffices */
  saga__hdr_t inl[SAGA__HDRS_INLINE];
} saga__hdrs_t;

/* An empty list. */
void saga__hdrs_init(saga__hdrs_t *h);
/* Append a header (name and value borrowed). 0 or SAGA_ENOMEM. */
int saga__hdrs_add(saga__hdrs_t *h, const char *name, const void *value,
                   size_t len);
/* Append a text header; nothing when value is NULL or "". 0 or
 * SAGA_ENOMEM. */
int saga__hdrs_add_text(saga__hdrs_t *h, const char *name, const char *value);
/* The entries, h->n of them. */
const saga__hdr_t *saga__hdrs_items(const saga__hdrs_t *h);
/* Release the heap part; the list is empty again. NULL-safe. */
void saga__hdrs_free(saga__hdrs_t *h);

/* A read view of some header list (a received message's), so decoding
 * needs neither a copy nor the broker library: at(src, i, out) fills *out
 * with header i (borrowed from src) and returns 0, or returns -1 past the
 * last one. An empty view has at == NULL. */
typedef struct saga__hdr_view {
  const void *src;
  int (*at)(const void *src, size_t i, saga__hdr_t *out);
} saga__hdr_view_t;

/* A view of a saga__hdrs_t (which must outlive the view). */
saga__hdr_view_t saga__hdrs_view(const saga__hdrs_t *h);

/* An owned copy of the headers a view shows, names and values included,
 * in one allocation: free() it. For code that keeps messages (the
 * simulator, tests). NULL when out of memory. */
typedef struct saga__hdr_copy {
  size_t n;
  saga__hdr_t h[];
} saga__hdr_copy_t;
saga__hdr_copy_t *saga__hdr_copy(const saga__hdr_view_t *v);
/* A view of a copy (which must outlive the view); c may be NULL (empty). */
saga__hdr_view_t saga__hdr_copy_view(const saga__hdr_copy_t *c);

#endif
