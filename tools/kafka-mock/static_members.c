/* Static group membership in the relay (see static_members.h). */
#include "static_members.h"

#include "grow.h"
#include "wire_bytes.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JOIN_GROUP_STATIC_VERSION 5

typedef struct {
  char *group, *instance, *member; /* member NULL until an answer gives it */
  size_t glen, ilen, mlen;
  const void *conn; /* the connection that joined last, NULL once closed */
} entry_t;

struct static_members {
  entry_t *e;
  size_t n, cap;
};

/* The (nullable) string at b + *o: its bytes in *s and length in *len
 * (NULL and 0 for null), *o moved past it; 0, or -1 past n. */
static int read_str(const char *b, size_t n, size_t *o, const char **s,
                    size_t *len) {
  if (*o + 2 > n)
    return -1;
  int16_t l = wire_rd16(b + *o);
  *o += 2;
  *s = l >= 0 ? b + *o : NULL;
  *len = l > 0 ? (size_t)l : 0;
  *o += *len;
  return *o <= n ? 0 : -1;
}

static char *dup_bytes(const char *s, size_t len) {
  char *d = malloc(len ? len : 1);
  if (d && len)
    memcpy(d, s, len);
  return d;
}

static_members_t *static_members_new(void) {
  return calloc(1, sizeof(static_members_t));
}

void static_members_free(static_members_t *sm) {
  if (!sm)
    return;
  for (size_t i = 0; i < sm->n; i++) {
    free(sm->e[i].group);
    free(sm->e[i].instance);
    free(sm->e[i].member);
  }
  free(sm->e);
  free(sm);
}

/* The entry of (group, instance), added when new; -1 out of memory. */
static int entry_of(static_members_t *sm, const char *g, size_t glen,
                    const char *in, size_t ilen) {
  for (size_t i = 0; i < sm->n; i++)
    if (sm->e[i].glen == glen && sm->e[i].ilen == ilen &&
        !memcmp(sm->e[i].group, g, glen) &&
        !memcmp(sm->e[i].instance, in, ilen))
      return (int)i;
  if (SAGA_GROW(sm->e, sm->cap, sm->n + 1, 8) != 0)
    return -1;
  entry_t e = {.group = dup_bytes(g, glen), .instance = dup_bytes(in, ilen),
               .glen = glen, .ilen = ilen};
  if (!e.group || !e.instance) {
    free(e.group);
    free(e.instance);
    return -1;
  }
  sm->e[sm->n] = e;
  return (int)sm->n++;
}

/* Version 5's body: group_id session_timeout rebalance_timeout member_id
 * group_instance_id protocol_type protocols. */
int static_members_join(static_members_t *sm, const void *conn,
                        const char *f, size_t sz, size_t h, int ver,
                        char **out, size_t *outsz) {
  *out = NULL;
  if (!sm || ver != JOIN_GROUP_STATIC_VERSION)
    return -1;
  size_t o = h, glen, mlen, ilen;
  const char *g, *m, *in;
  if (read_str(f, sz, &o, &g, &glen) || (o += 8) > sz)
    return -1;
  size_t at_member = o;
  if (read_str(f, sz, &o, &m, &mlen) || read_str(f, sz, &o, &in, &ilen) ||
      !in || !g)
    return -1;
  int i = entry_of(sm, g, glen, in, ilen);
  if (i < 0)
    return -1;
  entry_t *e = &sm->e[i];
  if (mlen == 0 && e->member && e->conn == NULL && e->mlen <= INT16_MAX) {
    /* the instance comes back: under the member id it had */
    size_t rest = sz - (at_member + 2);
    char *nf = malloc(4 + sz + e->mlen);
    if (nf) {
      wire_wr32(nf, (int32_t)(sz + e->mlen));
      memcpy(nf + 4, f, at_member);
      wire_wr16(nf + 4 + at_member, (int16_t)e->mlen);
      memcpy(nf + 4 + at_member + 2, e->member, e->mlen);
      memcpy(nf + 4 + at_member + 2 + e->mlen, f + at_member + 2, rest);
      *out = nf;
      *outsz = 4 + sz + e->mlen;
    }
  }
  e->conn = conn;
  return i;
}

/* Version 5's answer: throttle error generation protocol leader member_id
 * members. */
void static_members_answer(static_members_t *sm, int idx, const char *b,
                           size_t n, int ver) {
  if (!sm || idx < 0 || (size_t)idx >= sm->n ||
      ver != JOIN_GROUP_STATIC_VERSION || n < 10 || wire_rd16(b + 4) != 0)
    return;
  size_t o = 10, len = 0;
  const char *s = NULL;
  for (int k = 0; k < 3; k++) /* protocol name, leader, member id */
    if (read_str(b, n, &o, &s, &len))
      return;
  if (!s || len == 0)
    return;
  char *m = dup_bytes(s, len);
  if (!m)
    return;
  entry_t *e = &sm->e[idx];
  free(e->member);
  e->member = m;
  e->mlen = len;
}

void static_members_closed(static_members_t *sm, const void *conn) {
  for (size_t i = 0; sm && i < sm->n; i++)
    if (sm->e[i].conn == conn)
      sm->e[i].conn = NULL;
}
