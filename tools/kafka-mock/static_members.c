/* Static group membership in the relay (see static_members.h). */
#include "static_members.h"

#include "grow.h"
#include "wire_bytes.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JOIN_GROUP_STATIC_VERSION 5
#define SYNC_GROUP_STATIC_VERSION 3
#define API_HEARTBEAT 12
#define PROBE_VERSION 1 /* Heartbeat v1: group generation member */

typedef struct {
  char *group, *instance, *member; /* member NULL until an answer gives it */
  size_t glen, ilen, mlen;
  const void *conn; /* the connection that joined last, NULL once closed */
  /* The group as the last JoinGroup answer of this member left it: sole
   * when the member was elected leader of a group of itself alone, with
   * its generation, the group's protocol and the member's metadata. */
  int sole;
  int32_t gen;
  char *proto, *meta;
  size_t protolen, metalen;
  /* A rejoin being probed, or answered by the relay (see the header). */
  char *join;    /* the JoinGroup to send on if the probe fails */
  size_t joinsz; /* with its 4-byte size */
  char *answer;  /* the JoinGroup answer to give if it succeeds */
  size_t answersz;
  const void *synced; /* the connection told its old generation: its
                         SyncGroup is the relay's to answer */
  char *assignment;   /* that SyncGroup's assignment for the member */
  int32_t assignlen;  /* -1: null */
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

/* The (nullable) bytes at b + *o, as read_str with a 4-byte length. */
static int read_bytes(const char *b, size_t n, size_t *o, const char **s,
                      int32_t *len) {
  if (*o + 4 > n)
    return -1;
  *len = wire_rd32(b + *o);
  *o += 4;
  *s = *len >= 0 ? b + *o : NULL;
  if (*len > 0)
    *o += (size_t)*len;
  return *o <= n ? 0 : -1;
}

static char *dup_bytes(const char *s, size_t len) {
  char *d = malloc(len ? len : 1);
  if (d && len)
    memcpy(d, s, len);
  return d;
}

/* A message being built: its bytes so far (NULL once memory ran out). */
typedef struct {
  char *b;
  size_t len, cap;
} out_t;

static void put(out_t *w, const void *p, size_t n) {
  if (w->b && SAGA_GROW(w->b, w->cap, w->len + n, 64) != 0) {
    free(w->b);
    w->b = NULL;
  }
  if (w->b) {
    memcpy(w->b + w->len, p, n);
    w->len += n;
  }
}

static void put16(out_t *w, int16_t v) {
  char b[2];
  wire_wr16(b, v);
  put(w, b, 2);
}

static void put32(out_t *w, int32_t v) {
  char b[4];
  wire_wr32(b, v);
  put(w, b, 4);
}

static void put_str(out_t *w, const char *s, size_t len) {
  put16(w, (int16_t)len);
  put(w, s, len);
}

static void put_bytes(out_t *w, const char *s, int32_t len) {
  put32(w, len);
  if (len > 0)
    put(w, s, (size_t)len);
}

/* A new message: its 4-byte size, filled in by done(). */
static out_t begin(void) {
  out_t w = {.b = malloc(64), .cap = 64};
  put32(&w, 0);
  return w;
}

static char *done(out_t *w, size_t *sz) {
  if (w->b) {
    wire_wr32(w->b, (int32_t)(w->len - 4));
    *sz = w->len;
  }
  return w->b;
}

/* A Heartbeat of the member's generation under the request header of f
 * (its first h bytes: key, version, correlation id, client id). */
static char *probe_of(const entry_t *e, const char *f, size_t h,
                      size_t *sz) {
  out_t w = begin();
  put16(&w, API_HEARTBEAT);
  put16(&w, PROBE_VERSION);
  put(&w, f + 4, h - 4); /* correlation id and client id */
  put_str(&w, e->group, e->glen);
  put32(&w, e->gen);
  put_str(&w, e->member, e->mlen);
  return done(&w, sz);
}

static void entry_unprobe(entry_t *e) {
  free(e->join);
  free(e->answer);
  free(e->assignment);
  e->join = e->answer = e->assignment = NULL;
  e->assignlen = -1;
  e->synced = NULL;
}

static_members_t *static_members_new(void) {
  return calloc(1, sizeof(static_members_t));
}

void static_members_free(static_members_t *sm) {
  if (!sm)
    return;
  for (size_t i = 0; i < sm->n; i++) {
    entry_unprobe(&sm->e[i]);
    free(sm->e[i].group);
    free(sm->e[i].instance);
    free(sm->e[i].member);
    free(sm->e[i].proto);
    free(sm->e[i].meta);
  }
  free(sm->e);
  free(sm);
}

/* The entry of (group, instance), added when new (when add); -1 when
 * none or out of memory. */
static int entry_of(static_members_t *sm, const char *g, size_t glen,
                    const char *in, size_t ilen, int add) {
  for (size_t i = 0; i < sm->n; i++)
    if (sm->e[i].glen == glen && sm->e[i].ilen == ilen &&
        !memcmp(sm->e[i].group, g, glen) &&
        !memcmp(sm->e[i].instance, in, ilen))
      return (int)i;
  if (!add || SAGA_GROW(sm->e, sm->cap, sm->n + 1, 8) != 0)
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

/* The JoinGroup answer the group would give the member coming back to
 * its place, unchanged: its generation, itself the leader and only
 * member, corr the request's correlation id. */
static char *rejoin_answer(const entry_t *e, int32_t corr, size_t *sz) {
  out_t w = begin();
  put32(&w, corr);
  put32(&w, 0); /* throttle */
  put16(&w, 0); /* error */
  put32(&w, e->gen);
  put_str(&w, e->proto, e->protolen);
  put_str(&w, e->member, e->mlen); /* leader */
  put_str(&w, e->member, e->mlen);
  put32(&w, 1);
  put_str(&w, e->member, e->mlen);
  put_str(&w, e->instance, e->ilen);
  put_bytes(&w, e->meta, (int32_t)e->metalen);
  return done(&w, sz);
}

/* Version 5's body: group_id session_timeout rebalance_timeout member_id
 * group_instance_id protocol_type protocols [name metadata]. */
int static_members_join(static_members_t *sm, const void *conn,
                        const char *f, size_t sz, size_t h, int ver,
                        char **out, size_t *outsz, int *probe) {
  *out = NULL;
  *probe = 0;
  if (!sm || ver != JOIN_GROUP_STATIC_VERSION)
    return -1;
  size_t o = h, glen, mlen, ilen, tlen, plen;
  const char *g, *m, *in, *t, *p, *meta;
  int32_t nproto = 0, metalen = -1;
  if (read_str(f, sz, &o, &g, &glen) || (o += 8) > sz)
    return -1;
  size_t at_member = o;
  if (read_str(f, sz, &o, &m, &mlen) || read_str(f, sz, &o, &in, &ilen) ||
      !in || !g)
    return -1;
  int i = entry_of(sm, g, glen, in, ilen, 1);
  if (i < 0)
    return -1;
  entry_t *e = &sm->e[i];
  if (mlen == 0 && e->member && e->conn == NULL && e->mlen <= INT16_MAX) {
    /* what an earlier probe left was its closed connection's: a join
     * from a live one leaves another's probe as it is */
    entry_unprobe(e);
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
    /* to its place unchanged, when it held the group alone and asks for
     * what it had: its first protocol the group's, with the same
     * metadata */
    if (nf && e->sole && read_str(f, sz, &o, &t, &tlen) == 0 &&
        o + 4 <= sz && (nproto = wire_rd32(f + o)) > 0 &&
        (o += 4, read_str(f, sz, &o, &p, &plen)) == 0 &&
        read_bytes(f, sz, &o, &meta, &metalen) == 0 && p &&
        plen == e->protolen && !memcmp(p, e->proto, plen) &&
        metalen == (int32_t)e->metalen &&
        (metalen == 0 || !memcmp(meta, e->meta, (size_t)metalen))) {
      size_t psz = 0, asz = 0;
      char *pr = probe_of(e, f, h, &psz);
      e->answer = rejoin_answer(e, wire_rd32(f + 4), &asz);
      if (pr && e->answer) {
        e->join = nf;
        e->joinsz = *outsz;
        e->answersz = asz;
        *out = pr;
        *outsz = psz;
        *probe = 1;
      } else {
        free(pr);
        free(e->answer);
        e->answer = NULL;
      }
    }
  }
  e->conn = conn;
  return i;
}

/* Version 5's answer: throttle error generation protocol leader member_id
 * members [member_id group_instance_id metadata]. */
void static_members_answer(static_members_t *sm, int idx, const char *b,
                           size_t n, int ver) {
  if (!sm || idx < 0 || (size_t)idx >= sm->n ||
      ver != JOIN_GROUP_STATIC_VERSION || n < 10 || wire_rd16(b + 4) != 0)
    return;
  entry_t *e = &sm->e[idx];
  e->sole = 0;
  size_t o = 10, plen = 0, llen = 0, len = 0;
  const char *proto = NULL, *leader = NULL, *s = NULL;
  if (read_str(b, n, &o, &proto, &plen) || read_str(b, n, &o, &leader, &llen) ||
      read_str(b, n, &o, &s, &len) || !s || len == 0)
    return;
  char *m = dup_bytes(s, len);
  if (!m)
    return;
  free(e->member);
  e->member = m;
  e->mlen = len;
  /* the leader's answer lists the members: the member alone? */
  const char *id, *inst, *meta;
  size_t idlen, instlen;
  int32_t metalen;
  if (o + 4 > n || wire_rd32(b + o) != 1 || !proto || !leader ||
      llen != len || memcmp(leader, m, len))
    return;
  o += 4;
  if (read_str(b, n, &o, &id, &idlen) || read_str(b, n, &o, &inst, &instlen) ||
      read_bytes(b, n, &o, &meta, &metalen) || !id || idlen != len ||
      memcmp(id, m, len) || metalen < 0)
    return;
  char *p = dup_bytes(proto, plen), *md = dup_bytes(meta, (size_t)metalen);
  if (!p || !md) {
    free(p);
    free(md);
    return;
  }
  free(e->proto);
  free(e->meta);
  e->proto = p;
  e->protolen = plen;
  e->meta = md;
  e->metalen = (size_t)metalen;
  e->gen = wire_rd32(b + 6);
  e->sole = 1;
}

/* A Heartbeat answer (version 1: throttle error) to the probe of entry
 * idx: the frame for the client, or the one for the broker. */
void static_members_probed(static_members_t *sm, int idx, const char *b,
                           size_t n, const void *conn, char **to_client,
                           size_t *csz, char **to_broker, size_t *bsz) {
  *to_client = *to_broker = NULL;
  if (!sm || idx < 0 || (size_t)idx >= sm->n)
    return;
  entry_t *e = &sm->e[idx];
  if (!e->join || !e->answer)
    return;
  if (n >= 6 && wire_rd16(b + 4) == 0) { /* its place is as it was */
    *to_client = e->answer;
    *csz = e->answersz;
    e->answer = NULL;
    free(e->join);
    e->join = NULL;
    e->synced = conn;
    return;
  }
  *to_broker = e->join;
  *bsz = e->joinsz;
  e->join = NULL;
  free(e->answer);
  e->answer = NULL;
}

/* Version 3's body: group_id generation member_id group_instance_id
 * assignments [member_id assignment]. */
int static_members_sync(static_members_t *sm, const void *conn,
                        const char *f, size_t sz, size_t h, int ver,
                        char **out, size_t *outsz) {
  *out = NULL;
  if (!sm || ver != SYNC_GROUP_STATIC_VERSION)
    return -1;
  size_t o = h, glen, mlen, ilen;
  const char *g, *m, *in;
  if (read_str(f, sz, &o, &g, &glen) || o + 4 > sz)
    return -1;
  int32_t gen = wire_rd32(f + o);
  o += 4;
  if (read_str(f, sz, &o, &m, &mlen) || read_str(f, sz, &o, &in, &ilen) ||
      !in || !g || !m || o + 4 > sz)
    return -1;
  int i = entry_of(sm, g, glen, in, ilen, 0);
  if (i < 0)
    return -1;
  entry_t *e = &sm->e[i];
  if (e->synced != conn || gen != e->gen || mlen != e->mlen ||
      memcmp(m, e->member, mlen))
    return -1;
  e->synced = NULL;
  /* the leader's assignment for itself: what the relay answers with */
  int32_t na = wire_rd32(f + o);
  o += 4;
  free(e->assignment);
  e->assignment = NULL;
  e->assignlen = -1;
  for (int32_t k = 0; k < na; k++) {
    const char *id, *a;
    size_t idlen;
    int32_t alen;
    if (read_str(f, sz, &o, &id, &idlen) || read_bytes(f, sz, &o, &a, &alen))
      return -1;
    if (id && idlen == mlen && !memcmp(id, m, mlen) && alen >= 0) {
      free(e->assignment);
      e->assignment = dup_bytes(a, (size_t)alen);
      if (!e->assignment)
        return -1;
      e->assignlen = alen;
    }
  }
  *out = probe_of(e, f, h, outsz);
  return *out ? i : -1;
}

/* A Heartbeat answer to the SyncGroup probe of entry idx, correlation id
 * corr: the SyncGroup answer for the client (version 3: throttle error
 * assignment), the assignment when the member still holds its place,
 * else the group's error and none. */
char *static_members_synced(static_members_t *sm, int idx, int32_t corr,
                            const char *b, size_t n, size_t *csz) {
  if (!sm || idx < 0 || (size_t)idx >= sm->n)
    return NULL;
  entry_t *e = &sm->e[idx];
  int16_t err = n >= 6 ? wire_rd16(b + 4) : -1; /* -1: unknown server error */
  out_t w = begin();
  put32(&w, corr);
  put32(&w, 0); /* throttle */
  put16(&w, err);
  /* bytes, not nullable in version 3: empty for none */
  if (err == 0 && e->assignment && e->assignlen > 0)
    put_bytes(&w, e->assignment, e->assignlen);
  else
    put_bytes(&w, NULL, 0);
  free(e->assignment);
  e->assignment = NULL;
  e->assignlen = -1;
  return done(&w, csz);
}

void static_members_closed(static_members_t *sm, const void *conn) {
  for (size_t i = 0; sm && i < sm->n; i++) {
    if (sm->e[i].conn == conn)
      sm->e[i].conn = NULL;
    if (sm->e[i].synced == conn)
      sm->e[i].synced = NULL;
  }
}
