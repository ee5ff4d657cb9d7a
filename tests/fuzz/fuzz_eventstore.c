/* Fuzz target: the event store's input validation, through its one entry
 * point that needs no connection, es_batch_add. The input is cut into the
 * stream id, the event type, correlation id, causation id, traceparent,
 * one metadata pair and the data (each a length byte and its bytes, the
 * data taking the rest). A refused event must leave the batch unchanged;
 * an accepted one must hold the text checks (valid UTF-8, bounded, a W3C
 * traceparent). */
#include <string.h>

#include "fuzz.h"
#include "saga/eventstore.h"

/* A NUL-terminated copy of the next field (free()), or NULL when the
 * field's length byte says "absent" (255). */
static char *field(fuzz_in_t *in) {
  uint8_t want = fuzz_byte(in);
  if (want == 255)
    return NULL;
  size_t len;
  const uint8_t *p = fuzz_bytes(in, want, &len);
  char *s = malloc(len + 1);
  FUZZ_ASSERT(s != NULL);
  memcpy(s, p, len);
  s[len] = '\0';
  return s;
}

static int lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in_t in = {data, size};
  uint8_t flags = fuzz_byte(&in);
  char *stream = field(&in);
  char *type = field(&in);
  char *corr = field(&in);
  char *caus = field(&in);
  char *tp = field(&in);
  char *key = field(&in);
  char *val = field(&in);
  /* The data in an exact-size buffer, so ASan sees reads past it. */
  uint8_t *body = malloc(in.n ? in.n : 1);
  FUZZ_ASSERT(body != NULL);
  memcpy(body, in.p, in.n);

  es_kv_t kv = {key, val};
  es_event_t ev = {
      .type = type,
      .data = body,
      .data_len = in.n,
      .correlation_id = corr,
      .causation_id = caus,
      .traceparent = tp,
      .meta = (flags & 1) ? &kv : NULL,
      .n_meta = (flags & 1) ? 1 : 0,
  };
  if (flags & 2)
    memset(ev.id, 0xab, sizeof ev.id);
  es_store_opts_t opts;
  es_store_opts_init(&opts);
  if (flags & 4)
    opts.max_payload = 16;
  es_batch_t *b = es_batch_new(&opts);
  FUZZ_ASSERT(b != NULL);
  int64_t expected = (flags & 8) ? ES_ANY_VERSION : (int64_t)(flags >> 4);
  int rc = es_batch_add(b, stream, expected, &ev, 1);
  if (rc >= 0) {
    FUZZ_ASSERT(rc == 0 && es_batch_size(b) == 1);
    FUZZ_ASSERT(type && type[0] && strlen(type) <= ES_MAX_TYPE);
    if (tp)
      FUZZ_ASSERT(strlen(tp) == 55 && lower_hex(tp, 2) && tp[2] == '-' &&
                  lower_hex(tp + 3, 32) && tp[35] == '-' &&
                  lower_hex(tp + 36, 16) && tp[52] == '-' &&
                  lower_hex(tp + 53, 2));
    FUZZ_ASSERT(es_batch_event_id(b, 0, 0) != NULL);
  } else {
    FUZZ_ASSERT(es_batch_size(b) == 0);
    FUZZ_ASSERT(rc == ES_ERR_INVALID || rc == ES_ERR_TOO_LARGE ||
                rc == ES_ERR_BAD_UTF8 || rc == ES_ERR_NOMEM);
  }
  es_batch_free(b);
  free(body);
  free(stream);
  free(type);
  free(corr);
  free(caus);
  free(tp);
  free(key);
  free(val);
  return 0;
}
