/* The stream heads a connection wrote: for the last streams its single
 * appends went into, the version written and the era it went into
 * (es_internal.h, es__heads_t; docs/internals/eventstore.md, "A single
 * append that skips the version probe"). ES__HEADS slots in sets of
 * ES__HEADS_WAYS: a stream lives in one of the slots of the set its hash
 * names, and a new stream takes the set's least recently used slot. (One
 * slot per hash lost a third of a hundred streams to collisions, each
 * pair evicting each other at every append.) */
#include <stdlib.h>
#include <string.h>

#include "es_internal.h"

/* FNV-1a over the stream id's bytes: the first slot of its set. */
static size_t set_of(const char *stream, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)stream[i];
    h *= 16777619u;
  }
  return (h % (ES__HEADS / ES__HEADS_WAYS)) * ES__HEADS_WAYS;
}

static es__head_t *find(es__heads_t *h, const char *stream, size_t len) {
  es__head_t *set = &h->slot[set_of(stream, len)];
  for (size_t w = 0; w < ES__HEADS_WAYS; w++)
    if (set[w].stream && set[w].len == len &&
        !memcmp(set[w].stream, stream, len))
      return &set[w];
  return NULL;
}

int32_t es__heads_era(es__heads_t *h, const char *stream, size_t len,
                      int64_t version) {
  es__head_t *e = h ? find(h, stream, len) : NULL;
  if (!e || e->version != version)
    return -1;
  e->used = ++h->tick;
  return e->era;
}

void es__heads_put(es__heads_t *h, const char *stream, size_t len,
                   int64_t version, int32_t era) {
  if (!h || version < 1 || era < 0)
    return;
  es__head_t *e = find(h, stream, len);
  if (!e) {
    es__head_t *set = &h->slot[set_of(stream, len)];
    e = &set[0]; /* an empty slot, or the least recently used */
    for (size_t w = 1; w < ES__HEADS_WAYS && e->stream; w++)
      if (!set[w].stream || set[w].used < e->used)
        e = &set[w];
    char *copy = malloc(len ? len : 1);
    if (!copy) /* no room: the stream is simply not remembered */
      return;
    memcpy(copy, stream, len);
    free(e->stream);
    e->stream = copy;
    e->len = len;
  }
  e->version = version;
  e->era = era;
  e->used = ++h->tick;
}

void es__heads_forget(es__heads_t *h, const char *stream, size_t len) {
  es__head_t *e = h ? find(h, stream, len) : NULL;
  if (e) {
    free(e->stream);
    *e = (es__head_t){0};
  }
}

void es__heads_clear(es__heads_t *h) {
  for (size_t i = 0; h && i < ES__HEADS; i++) {
    free(h->slot[i].stream);
    h->slot[i] = (es__head_t){0};
  }
}
