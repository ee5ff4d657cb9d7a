/* Input checks and the binary wire encoding of append parameters (arrays
 * of uuid, text, bytea, jsonb), plus UUID generation (saga_common's).
 * Pure: no I/O other than getrandom(2). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_internal.h"
#include "ids.h"
#include "text.h"

void es__set_msg(char *msg, size_t msglen, const char *fmt, ...) {
  if (!msg || msglen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, msglen, fmt, ap);
  va_end(ap);
}

int es__buf_put(es__buf_t *b, const void *src, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
      return ES_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->len, src, n);
  b->len += n;
  return 0;
}

int es__buf_be32(es__buf_t *b, int32_t v) {
  uint32_t u = (uint32_t)v;
  unsigned char c[4] = {(unsigned char)(u >> 24), (unsigned char)(u >> 16),
                        (unsigned char)(u >> 8), (unsigned char)u};
  return es__buf_put(b, c, 4);
}

int es__buf_be64(es__buf_t *b, int64_t v) {
  uint64_t u = (uint64_t)v;
  int rc = es__buf_be32(b, (int32_t)(uint32_t)(u >> 32));
  return rc ? rc : es__buf_be32(b, (int32_t)(uint32_t)u);
}

void es__buf_free(es__buf_t *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

int32_t es__get_be32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (int32_t)(((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) |
                   ((uint32_t)u[2] << 8) | (uint32_t)u[3]);
}

int64_t es__get_be64(const char *p) {
  uint64_t hi = (uint32_t)es__get_be32(p), lo = (uint32_t)es__get_be32(p + 4);
  return (int64_t)((hi << 32) | lo);
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF) and no NUL;
 * the UTF-8 rules are saga_common's, shared with the wire codec. */
int es__utf8_valid(const char *s, size_t n) {
  return memchr(s, '\0', n) == NULL && saga__utf8_bad_at(s, n) == n;
}

int es__check_text(const char *what, const char *s, int required, size_t max,
                   char *msg, size_t msglen) {
  if (!s) {
    if (!required)
      return 0;
    es__set_msg(msg, msglen, "%s is missing", what);
    return ES_ERR_INVALID;
  }
  size_t n = strlen(s);
  if (n == 0 && required) {
    es__set_msg(msg, msglen, "%s is empty", what);
    return ES_ERR_INVALID;
  }
  if (n > max) {
    es__set_msg(msg, msglen, "%s is %zu bytes, more than %zu", what, n, max);
    return ES_ERR_TOO_LARGE;
  }
  if (!es__utf8_valid(s, n)) {
    es__set_msg(msg, msglen, "%s is not valid UTF-8", what);
    return ES_ERR_BAD_UTF8;
  }
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The metadata is stored as a jsonb object, which keeps one value per
 * key: a key given twice would lose all but its last value without a
 * word, so it is refused. */
static int check_meta_keys(const es_event_t *ev, char *msg, size_t msglen) {
  size_t n = ev->n_meta;
  const char *dup = NULL;
  if (n <= 16) {
    for (size_t i = 0; i < n && !dup; i++)
      for (size_t j = i + 1; j < n && !dup; j++)
        if (!strcmp(ev->meta[i].key, ev->meta[j].key))
          dup = ev->meta[i].key;
  } else {
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) {
      es__set_msg(msg, msglen, "out of memory");
      return ES_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
      keys[i] = ev->meta[i].key;
    qsort(keys, n, sizeof *keys, cmp_str);
    for (size_t i = 1; i < n && !dup; i++)
      if (!strcmp(keys[i - 1], keys[i]))
        dup = keys[i];
    free(keys);
  }
  if (dup) {
    es__set_msg(msg, msglen, "metadata key \"%.200s\" is given twice", dup);
    return ES_ERR_INVALID;
  }
  return 0;
}

int es__check_event(const es_event_t *ev, size_t max_payload, char *msg,
                    size_t msglen) {
  int rc;
  if ((rc = es__check_text("event type", ev->type, 1, ES_MAX_TYPE, msg,
                           msglen)) ||
      (rc = es__check_text("correlation id", ev->correlation_id, 0,
                           ES_MAX_TEXT, msg, msglen)) ||
      (rc = es__check_text("causation id", ev->causation_id, 0, ES_MAX_TEXT,
                           msg, msglen)) ||
      (rc = es__check_text("traceparent", ev->traceparent, 0, ES_MAX_TEXT,
                           msg, msglen)))
    return rc;
  if (ev->traceparent && !saga__traceparent_valid(ev->traceparent)) {
    es__set_msg(msg, msglen, "traceparent \"%s\" is not in W3C form",
                ev->traceparent);
    return ES_ERR_INVALID;
  }
  if (ev->data_len > 0 && !ev->data) {
    es__set_msg(msg, msglen, "event data is NULL with length %zu",
                ev->data_len);
    return ES_ERR_INVALID;
  }
  if (max_payload > ES__MAX_VALUE)
    max_payload = ES__MAX_VALUE;
  if (ev->data_len > max_payload) {
    es__set_msg(msg, msglen, "event data is %zu bytes, more than %zu",
                ev->data_len, max_payload);
    return ES_ERR_TOO_LARGE;
  }
  if (ev->n_meta && !ev->meta) {
    es__set_msg(msg, msglen, "metadata is NULL with %zu pairs", ev->n_meta);
    return ES_ERR_INVALID;
  }
  for (size_t i = 0; i < ev->n_meta; i++) {
    if ((rc = es__check_text("metadata key", ev->meta[i].key, 1, ES_MAX_TEXT,
                             msg, msglen)) ||
        (rc = es__check_text("metadata value", ev->meta[i].value, 1,
                             ES_MAX_TEXT, msg, msglen)))
      return rc;
  }
  return check_meta_keys(ev, msg, msglen);
}

int es_uuid_v4(uint8_t out[16]) {
  return saga__uuid_v4(out) == 0 ? 0 : ES_ERR_INVALID;
}

int es_uuid_v7(uint8_t out[16]) {
  return saga__uuid_v7(out) == 0 ? 0 : ES_ERR_INVALID;
}

void es_uuid_format(const uint8_t id[16], char out[37]) {
  saga__uuid_format(id, out);
}

int64_t es__member_id(void) {
  uint8_t r[16];
  if (es_uuid_v4(r))
    return -1;
  uint64_t id = 0;
  for (int i = 0; i < 8; i++)
    id = (id << 8) | r[i];
  id &= (uint64_t)INT64_MAX;
  return id ? (int64_t)id : 1;
}

int es__conninfo_check(const char *conninfo, char *msg, size_t msglen) {
  char *err = NULL;
  PQconninfoOption *o = PQconninfoParse(conninfo, &err);
  if (o) {
    PQconninfoFree(o);
    return 0;
  }
  if (!err) {
    es__set_msg(msg, msglen, "out of memory parsing the conninfo");
    return ES_ERR_NOMEM;
  }
  size_t n = strlen(err);
  while (n && err[n - 1] == '\n')
    err[--n] = '\0';
  /* libpq quotes a piece of the text: not when it may hold a password */
  if (strstr(conninfo, "password") || strchr(conninfo, '@'))
    es__set_msg(msg, msglen, "invalid conninfo (details withheld: it may "
                             "hold a password)");
  else
    es__set_msg(msg, msglen, "invalid conninfo: %s", err);
  PQfreemem(err);
  return ES_ERR_INVALID;
}
