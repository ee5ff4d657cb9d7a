/* Growing text buffer with a ceiling (abuf.h). */
#include "abuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(abuf_t *b, size_t extra) {
  if (b->failed)
    return -1;
  if (b->limit && (extra > b->limit || b->len > b->limit - extra)) {
    b->failed = true;
    return -1;
  }
  size_t need = b->len + extra + 1;
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->failed = true;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

int abuf_add(abuf_t *b, const char *s, size_t n) {
  if (reserve(b, n) != 0)
    return -1;
  if (n)
    memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int abuf_puts(abuf_t *b, const char *s) { return abuf_add(b, s, strlen(s)); }

int abuf_printf(abuf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || reserve(b, (size_t)n) != 0) {
    b->failed = true;
    return -1;
  }
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

int abuf_json_str(abuf_t *b, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    int rc;
    switch (*p) {
    case '"':
      rc = abuf_add(b, "\\\"", 2);
      break;
    case '\\':
      rc = abuf_add(b, "\\\\", 2);
      break;
    case '\n':
      rc = abuf_add(b, "\\n", 2);
      break;
    case '\r':
      rc = abuf_add(b, "\\r", 2);
      break;
    case '\t':
      rc = abuf_add(b, "\\t", 2);
      break;
    default:
      if (*p < 0x20)
        rc = abuf_printf(b, "\\u%04x", *p);
      else
        rc = abuf_add(b, (const char *)p, 1);
    }
    if (rc != 0)
      return -1;
  }
  return b->failed ? -1 : 0;
}

const char *abuf_cstr(abuf_t *b) {
  if (!b->data && reserve(b, 0) == 0)
    b->data[0] = '\0';
  return b->data;
}

char *abuf_take(abuf_t *b, size_t *len) {
  if (b->failed || !abuf_cstr(b))
    return NULL;
  char *p = b->data;
  if (len)
    *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

void abuf_reset(abuf_t *b) {
  b->len = 0;
  b->failed = false;
  if (b->data)
    b->data[0] = '\0';
}

void abuf_free(abuf_t *b) {
  if (!b)
    return;
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = false;
}
