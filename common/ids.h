/* Random identifiers and W3C trace context (target saga_common): random
 * bytes from getrandom(2), UUID v4 and v7, and the traceparent header's make,
 * parse and check. The only home of these forms and of their sizes. No
 * allocation; any thread. Internal: not a public header. */
#ifndef SAGA_COMMON_IDS_H
#define SAGA_COMMON_IDS_H

#include <stddef.h>
#include <stdint.h>

/* A UUID as text: 36 characters "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". */
#define SAGA_UUID_LEN 36
#define SAGA_UUID_SIZE (SAGA_UUID_LEN + 1)

/* A W3C traceparent "vv-<32 hex trace id>-<16 hex span id>-<2 hex flags>":
 * 55 characters, 56 bytes with the NUL. */
#define SAGA_TRACEPARENT_LEN 55
#define SAGA_TRACEPARENT_SIZE (SAGA_TRACEPARENT_LEN + 1)
/* Its trace id (32 hex digits) and span id (16), as NUL-terminated text. */
#define SAGA_TRACE_ID_SIZE 33
#define SAGA_SPAN_ID_SIZE 17

/* Fill buf with n random bytes from getrandom(2), retrying short reads and
 * EINTR. Returns 0, or -1 when the kernel gives no randomness (buf is then
 * unspecified). */
int saga__random(void *buf, size_t n);

/* A random version 4 UUID (RFC 9562: version nibble 4, variant 10xx) as
 * bytes. Returns 0, or -1 when saga__random fails. */
int saga__uuid_v4(uint8_t out[16]);

/* A time-ordered version 7 UUID (RFC 9562): the Unix time in milliseconds
 * (CLOCK_REALTIME) in its first 48 bits, big-endian, then the version
 * nibble 7, 74 random bits and the variant 10xx. Ids drawn in a later
 * millisecond sort after earlier ones (as bytes, as text and as PostgreSQL
 * uuid values), so an index on them grows at its right edge; ids of the
 * same millisecond are in random order. Returns 0, or -1 when the clock
 * or saga__random fails. */
int saga__uuid_v7(uint8_t out[16]);

/* id as 36 lower-case hex characters with dashes and a NUL (37 bytes). */
void saga__uuid_format(const uint8_t id[16], char out[SAGA_UUID_SIZE]);

/* saga__uuid_v7 formatted by saga__uuid_format: a new time-ordered id (the
 * starter's saga ids, keys of the saga index and of the event streams, so
 * they too grow at their indexes' right edge). Returns 0, or -1 (out is
 * then "") when the clock or randomness could not be read. */
int saga__uuid_text(char out[SAGA_UUID_SIZE]);

/* A random trace id (32 lower-case hex digits) / span id (16), never all
 * zeros (W3C: an all-zero id is invalid). Return 0, or -1 (out is then "")
 * when no randomness could be read. */
int saga__trace_id_new(char out[SAGA_TRACE_ID_SIZE]);
int saga__span_id_new(char out[SAGA_SPAN_ID_SIZE]);

/* 1 when tp is a traceparent of exactly the stored form: 55 characters
 * "vv-<32 hex>-<16 hex>-<2 hex>", lower-case hex (what the event store
 * keeps and the coordinator passes on); 0 otherwise, also for NULL. */
int saga__traceparent_valid(const char *tp);

/* Read a traceparent header as W3C Trace Context says a receiver does: a
 * version of two hex digits other than "ff", a trace id and a parent span
 * id that are hex and not all zeros, two hex flag digits, and after them
 * the end or (for a later version) a '-'. Hex may be upper case; the ids
 * and flags are written lower-cased into trace_id, span_id and flags (any
 * of which may be NULL). Returns 0, or -1 when tp is NULL or malformed
 * (the outputs are then untouched). */
int saga__traceparent_parse(const char *tp, char trace_id[SAGA_TRACE_ID_SIZE],
                            char span_id[SAGA_SPAN_ID_SIZE], char flags[3]);

/* "00-<trace_id>-<span_id>-<flags>" into out; flags NULL means "01"
 * (sampled). trace_id and span_id are taken as given (32 and 16 hex
 * digits). */
void saga__traceparent_format(char out[SAGA_TRACEPARENT_SIZE],
                              const char *trace_id, const char *span_id,
                              const char *flags);

/* A new root traceparent: random trace and span ids, flags 01. Returns 0,
 * or -1 (out is then "") when no randomness could be read. */
int saga__traceparent_new(char out[SAGA_TRACEPARENT_SIZE]);

/* The traceparent of a child span of parent: parent's trace id and flags
 * with a new random span id. When parent is NULL or does not parse
 * (saga__traceparent_parse), a new root as saga__traceparent_new. Returns
 * 0, or -1 (out is then "") when no randomness could be read. */
int saga__traceparent_child(char out[SAGA_TRACEPARENT_SIZE],
                            const char *parent);

#endif
