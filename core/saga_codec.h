/* Encoding of the persisted saga events (schemas/saga_events.proto): one
 * stored record per transition, holding its events and the time it was
 * decided. Pure: no I/O, no clock. Replaying the decoded records of a
 * stream through saga_codec_apply rebuilds the live saga exactly. */
#ifndef SAGA_CODEC_H
#define SAGA_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core_error.h"
#include "saga_machine.h"

/* Longest participant reason kept in an event; longer ones are cut. */
#define SAGA_CODEC_MAX_REASON 200

/* A decoded record. Event pointers (payload, reason, def_name) point into
 * the record and live until the next decode, saga_record_reset or
 * saga_record_clear. Zero-initialise before the first decode; one record
 * can be reused for many decodes, and then allocates nothing once its
 * buffer has grown to the records it decodes (a recovery decodes one per
 * stored transition). */
typedef struct {
  int64_t at_ms;
  size_t n;
  sm_event_t events[SM_MAX_OUT];
  void *pb; /* the unpacked message, in the buffer below */
  /* where decodes put what they unpack: one buffer kept across decodes,
   * and the blocks that did not fit in it (freed at the next reset, the
   * buffer then grown to fit them all) */
  uint8_t *buf;
  size_t buf_cap, buf_used, buf_want;
  void *spill;
} saga_record_t;

/* Bytes saga_codec_encode needs for these events. */
size_t saga_codec_size(const sm_event_t *ev, size_t n, int64_t at_ms);

/* Encode one transition (n >= 1 events decided at at_ms, e.g. the events of
 * one sm_output_t) into buf[0..cap). *len gets the bytes written.
 * Errors: SAGA_CORE_EINVAL (n == 0 or too many), SAGA_CORE_ETOOBIG (cap
 * smaller than saga_codec_size). No allocation. */
int saga_codec_encode(const sm_event_t *ev, size_t n, int64_t at_ms,
                      uint8_t *buf, size_t cap, size_t *len);

/* Encode one transition as saga_codec_encode does, into the len bytes
 * place(arg, len) returns (its exact size, computed once; NULL: out of
 * memory). *out gets that buffer, *len the bytes written. Errors:
 * SAGA_CORE_EINVAL, SAGA_CORE_ENOMEM (place gave NULL). */
int saga_codec_encode_into(const sm_event_t *ev, size_t n, int64_t at_ms,
                           uint8_t *(*place)(void *arg, size_t len),
                           void *arg, uint8_t **out, size_t *len);

/* Decode one record, replacing what rec held. Validates every field the
 * machine relies on. Errors: SAGA_CORE_EDECODE (malformed: rec is left
 * empty, its buffer freed), SAGA_CORE_ENOMEM. */
int saga_codec_decode(const uint8_t *buf, size_t len, saga_record_t *rec);

/* Free what a decode allocated, its buffer included; rec is empty (and
 * zero) afterwards. NULL-safe. */
void saga_record_clear(saga_record_t *rec);

/* Empty rec but keep its buffer for the next decode. NULL-safe. */
void saga_record_reset(saga_record_t *rec);

/* Apply a decoded record to saga (replay): every event, then one
 * transition counted. Errors: SAGA_CORE_EREPLAY (the record does not fit
 * the saga; it is then unusable). */
int saga_codec_apply(sm_t *saga, const saga_record_t *rec);

/* The event type to store for a record whose first event is ev[0], e.g.
 * "Started", "Succeeded": what the store's type column and the history
 * timeline show. Static storage. */
const char *saga_codec_record_type(const sm_event_t *ev, size_t n);

#endif
