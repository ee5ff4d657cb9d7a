/* Header lists, views and copies (see wire_headers.h). */
#include "wire_headers.h"

#include <stdlib.h>
#include <string.h>

void saga__hdrs_init(saga__hdrs_t *h) {
  h->n = 0;
  h->cap = SAGA__HDRS_INLINE;
  h->heap = NULL;
}

const saga__hdr_t *saga__hdrs_items(const saga__hdrs_t *h) {
  return h->heap ? h->heap : h->inl;
}

int saga__hdrs_add(saga__hdrs_t *h, const char *name, const void *value,
                   size_t len) {
  if (h->n == h->cap) {
    size_t cap = h->cap * 2;
    saga__hdr_t *v = h->heap ? realloc(h->heap, cap * sizeof *v)
                             : malloc(cap * sizeof *v);
    if (!v)
      return SAGA_ENOMEM;
    if (!h->heap)
      memcpy(v, h->inl, h->n * sizeof *v);
    h->heap = v;
    h->cap = cap;
  }
  saga__hdr_t *v = h->heap ? h->heap : h->inl;
  v[h->n++] = (saga__hdr_t){.name = name, .value = value, .len = len};
  return 0;
}

int saga__hdrs_add_text(saga__hdrs_t *h, const char *name,
                        const char *value) {
  if (!value || !*value)
    return 0;
  return saga__hdrs_add(h, name, value, strlen(value));
}

void saga__hdrs_free(saga__hdrs_t *h) {
  if (!h)
    return;
  free(h->heap);
  saga__hdrs_init(h);
}

static int hdrs_at(const void *src, size_t i, saga__hdr_t *out) {
  const saga__hdrs_t *h = src;
  if (i >= h->n)
    return -1;
  *out = saga__hdrs_items(h)[i];
  return 0;
}

saga__hdr_view_t saga__hdrs_view(const saga__hdrs_t *h) {
  return (saga__hdr_view_t){.src = h, .at = hdrs_at};
}

static int copy_at(const void *src, size_t i, saga__hdr_t *out) {
  const saga__hdr_copy_t *c = src;
  if (i >= c->n)
    return -1;
  *out = c->h[i];
  return 0;
}

saga__hdr_view_t saga__hdr_copy_view(const saga__hdr_copy_t *c) {
  return (saga__hdr_view_t){.src = c, .at = c ? copy_at : NULL};
}

saga__hdr_copy_t *saga__hdr_copy(const saga__hdr_view_t *v) {
  size_t n = 0, bytes = 0;
  saga__hdr_t h;
  for (; v && v->at && v->at(v->src, n, &h) == 0; n++)
    bytes += strlen(h.name) + 1 + h.len;
  saga__hdr_copy_t *c = malloc(sizeof *c + n * sizeof c->h[0] + bytes);
  if (!c)
    return NULL;
  c->n = n;
  char *p = (char *)(c->h + n);
  for (size_t i = 0; i < n; i++) {
    v->at(v->src, i, &h);
    size_t nl = strlen(h.name) + 1;
    memcpy(p, h.name, nl);
    c->h[i].name = p;
    p += nl;
    c->h[i].value = h.value ? p : NULL;
    c->h[i].len = h.len;
    if (h.len)
      memcpy(p, h.value, h.len);
    p += h.len;
  }
  return c;
}
