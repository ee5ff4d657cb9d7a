/* The simulated event store: saga streams in memory with the semantics the
 * engine relies on from store_pg.c and the event store's batches -- one
 * transaction per batch; per stream OK, DUPLICATE (every event id already
 * stored: an earlier try committed), CONFLICT (stale expected version,
 * nothing written); a statement error aborts the whole batch (culprit
 * CONFLICT, the others RETRY); the saga_index upsert of every stream of a
 * committed batch runs whatever that stream's own outcome, and updates the
 * row when its version is newer and held by the stream; recovery lists the
 * streams whose index status is not terminal or whose final notification
 * is pending. Loads are asynchronous, as the port says: each ends later
 * (EV_LOAD_DONE), reading the store then. Faults: failed, timed-out and
 * ack-lost appends, aborted batches, refused submits, slow recovery reads,
 * reads refused at start or failing after they started. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_codec.h"
#include "sim.h"

sim_stream_t *sim_store_find(sim_t *s, const char *id) {
  for (size_t i = 0; i < s->nstreams; i++)
    if (!strcmp(s->streams[i].id, id))
      return &s->streams[i];
  return NULL;
}

static sim_stream_t *stream_get(sim_t *s, const char *id) {
  sim_stream_t *st = sim_store_find(s, id);
  if (st)
    return st;
  if (s->nstreams == s->cstreams) {
    size_t n = s->cstreams ? s->cstreams * 2 : 64;
    sim_stream_t *v = realloc(s->streams, n * sizeof *v);
    if (!v)
      abort();
    s->streams = v;
    s->cstreams = n;
  }
  st = &s->streams[s->nstreams++];
  memset(st, 0, sizeof *st);
  snprintf(st->id, sizeof st->id, "%s", id);
  return st;
}

static void loads_clear(sim_conn_t *c);

static void batch_clear(sim_conn_t *c) {
  for (size_t i = 0; i < c->n; i++) {
    for (size_t j = 0; j < c->s[i].nrec; j++)
      free(c->s[i].data[j]);
    free(c->s[i].data);
    free(c->s[i].len);
  }
  c->n = 0;
  c->nix = 0;
  c->nmarks = 0;
}

static void p_reset(void *self) {
  sim_conn_t *c = self;
  batch_clear(c);
  c->busy = 1;
}

static int p_add(void *self, const char *id, int64_t expected,
                 const sagad_record_t *recs, size_t n) {
  sim_conn_t *c = self;
  if (c->n == c->cap) {
    size_t k = c->cap ? c->cap * 2 : 16;
    struct sim_bstream *v = realloc(c->s, k * sizeof *v);
    if (!v)
      return -1;
    c->s = v;
    c->cap = k;
  }
  struct sim_bstream *b = &c->s[c->n];
  memset(b, 0, sizeof *b);
  snprintf(b->id, sizeof b->id, "%s", id);
  b->expected = expected;
  b->nrec = n;
  b->data = calloc(n, sizeof *b->data);
  b->len = calloc(n, sizeof *b->len);
  if (!b->data || !b->len)
    abort();
  for (size_t i = 0; i < n; i++) {
    b->data[i] = malloc(recs[i].len ? recs[i].len : 1);
    memcpy(b->data[i], recs[i].data, recs[i].len);
    b->len[i] = recs[i].len;
  }
  b->eid0 = c->sim->next_eid;
  c->sim->next_eid += n;
  return (int)c->n++;
}

static int p_index(void *self, const sagad_index_row_t *r) {
  sim_conn_t *c = self;
  if (c->nix == c->cix) {
    size_t k = c->cix ? c->cix * 2 : 16;
    struct sim_ixrow *v = realloc(c->ix, k * sizeof *v);
    if (!v)
      return -1;
    c->ix = v;
    c->cix = k;
  }
  struct sim_ixrow *x = &c->ix[c->nix++];
  snprintf(x->id, sizeof x->id, "%s", r->saga_id);
  snprintf(x->status, sizeof x->status, "%s", r->status);
  x->partition = r->partition;
  x->version = r->version;
  x->notify_pending = r->notify_pending;
  return 0;
}

static int p_notified(void *self, const char *id) {
  sim_conn_t *c = self;
  if (c->nmarks == c->cmarks) {
    size_t k = c->cmarks ? c->cmarks * 2 : 16;
    char(*v)[SM_ID_MAX + 1] = realloc(c->marks, k * sizeof *v);
    if (!v)
      return -1;
    c->marks = v;
    c->cmarks = k;
  }
  snprintf(c->marks[c->nmarks++], SM_ID_MAX + 1, "%s", id);
  return 0;
}

/* Replay one committed record onto the stream's shadow saga. */
static void shadow_apply(sim_t *s, sim_stream_t *st, const uint8_t *data,
                         size_t len) {
  saga_record_t rec = {0};
  if (saga_codec_decode(data, len, &rec) != 0) {
    sim_violation(s, "saga %s: committed record %zu does not decode", st->id,
                  st->n);
    return;
  }
  if (!st->shadow) {
    const sm_event_t *ev = &rec.events[0];
    const saga_def_t *def =
        rec.n && ev->type == SM_EV_STARTED
            ? saga_registry_find(s->reg, ev->def_name, ev->def_version)
            : NULL;
    if (!def) {
      sim_violation(s, "saga %s: stream does not begin with Started", st->id);
      saga_record_clear(&rec);
      return;
    }
    st->shadow = malloc(sm_size(def, strlen(st->id)));
    if (!st->shadow || sm_init(st->shadow, st->id, def) != 0)
      abort();
  }
  for (size_t i = 0; i < rec.n; i++) {
    if (st->nfacts == st->cfacts) {
      size_t k = st->cfacts ? st->cfacts * 2 : 32;
      struct sim_fact *v = realloc(st->facts, k * sizeof *v);
      if (!v)
        abort();
      st->facts = v;
      st->cfacts = k;
    }
    const sm_event_t *ev = &rec.events[i];
    st->facts[st->nfacts++] = (struct sim_fact){.type = ev->type,
                                                .step = ev->step,
                                                .action = ev->action,
                                                .outcome = ev->outcome,
                                                .attempt = ev->attempt};
  }
  if (saga_codec_apply(st->shadow, &rec) != 0)
    sim_violation(s, "saga %s: committed record %zu does not replay (two "
                     "writers?)",
                  st->id, st->n);
  saga_record_clear(&rec);
}

static void commit(sim_conn_t *c) {
  sim_t *s = c->sim;
  for (size_t i = 0; i < c->n; i++) {
    struct sim_bstream *b = &c->s[i];
    sim_stream_t *st = stream_get(s, b->id);
    size_t mine = 0;
    for (size_t j = 0; j < b->nrec; j++)
      for (size_t k = 0; k < st->n; k++)
        if (st->recs[k].eid == b->eid0 + j)
          mine++;
    if (mine) {
      b->status = mine == b->nrec ? SAGAD_STORE_DUPLICATE : SAGAD_STORE_FATAL;
      continue;
    }
    if ((int64_t)st->n != b->expected) {
      b->status = SAGAD_STORE_CONFLICT;
      continue;
    }
    if (st->n + b->nrec > st->cap) {
      size_t k = st->cap ? st->cap * 2 : 16;
      while (k < st->n + b->nrec)
        k *= 2;
      struct sim_rec *v = realloc(st->recs, k * sizeof *v);
      if (!v)
        abort();
      st->recs = v;
      st->cap = k;
    }
    for (size_t j = 0; j < b->nrec; j++) {
      shadow_apply(s, st, b->data[j], b->len[j]);
      struct sim_rec *r = &st->recs[st->n++];
      r->eid = b->eid0 + j;
      r->len = b->len[j];
      r->data = malloc(r->len ? r->len : 1);
      memcpy(r->data, b->data[j], r->len);
    }
    b->status = SAGAD_STORE_OK;
    s->commits++;
  }
  /* The index upserts run after the appends, in the same transaction. */
  for (size_t i = 0; i < c->nix; i++) {
    struct sim_ixrow *x = &c->ix[i];
    sim_stream_t *st = stream_get(s, x->id);
    if (st->has_index && !(st->ix_version < x->version &&
                           x->version <= (int64_t)st->n))
      continue; /* store_pg.c: "... AND EXISTS (that stream version)" */
    st->has_index = 1;
    st->ix_version = x->version;
    st->ix_partition = x->partition;
    snprintf(st->ix_status, sizeof st->ix_status, "%s", x->status);
    st->ix_notify_pending = x->notify_pending;
  }
  for (size_t i = 0; i < c->nmarks; i++) {
    sim_stream_t *st = sim_store_find(s, c->marks[i]);
    if (st)
      st->ix_notify_pending = 0;
  }
  for (size_t i = 0; i < c->n; i++)
    sim_check_commit(s, sim_store_find(s, c->s[i].id));
}

static int p_submit(void *self) {
  sim_conn_t *c = self;
  sim_t *s = c->sim;
  if (s->faults_on && sim_chance(&s->rng, 10)) {
    sim_fault(s, SIM_F_SUBMIT_REFUSED);
    snprintf(c->err, sizeof c->err, "simulated: connection refused");
    return -1;
  }
  int64_t lat = sim_range(&s->rng, 1, 4);
  if (s->faults_on && sim_chance(&s->rng, 60)) {
    sim_fault(s, SIM_F_APPEND_SLOW);
    lat = sim_range(&s->rng, 50, 400);
  }
  c->in_flight = 1;
  c->token++;
  sim_schedule(s, s->now + lat, EV_STORE_DONE, c->node, (int64_t)c->token,
               NULL);
  return 0;
}

/* The batch finished: decide its fate, then tell the engine. */
void sim_store_complete(sim_node_t *n, uint64_t token) {
  sim_conn_t *c = &n->conn;
  sim_t *s = c->sim;
  if (!c->in_flight || c->token != token || !n->engine)
    return;
  c->in_flight = 0;
  int overall = SAGAD_STORE_OK;
  int roll = s->faults_on ? (int)sim_range(&s->rng, 0, 999) : 1000;
  if (roll < 30) {
    sim_fault(s, SIM_F_APPEND_FAIL);
    overall = SAGAD_STORE_RETRY;
  } else if (roll < 60) {
    sim_fault(s, SIM_F_APPEND_LOST_ACK);
    commit(c);
    overall = SAGAD_STORE_RETRY;
  } else if (roll < 80 && c->n) {
    sim_fault(s, SIM_F_APPEND_ABORT);
    size_t culprit = (size_t)sim_range(&s->rng, 0, (int64_t)c->n - 1);
    for (size_t i = 0; i < c->n; i++)
      c->s[i].status =
          i == culprit ? SAGAD_STORE_CONFLICT : SAGAD_STORE_RETRY;
  } else {
    commit(c);
  }
  if (overall == SAGAD_STORE_RETRY)
    snprintf(c->err, sizeof c->err, "simulated: connection lost");
  sim_log(s, "node%d batch of %zu streams done: %s", n->idx, c->n,
          overall == SAGAD_STORE_RETRY ? "RETRY" : "settled");
  c->busy = overall == SAGAD_STORE_RETRY;
  sagad_engine_on_batch_done(n->engine, overall);
}

void sim_store_crash(sim_node_t *n) {
  sim_conn_t *c = &n->conn;
  if (c->in_flight) {
    sim_fault(c->sim, SIM_F_CRASH_IN_FLIGHT);
    if (sim_chance(&c->sim->rng, 500))
      commit(c); /* committed, the process died before the answer */
  }
  c->in_flight = 0;
  c->busy = 0;
  batch_clear(c);
  loads_clear(c); /* their engine is gone: never ended */
}

static int p_status(void *self, size_t i) {
  sim_conn_t *c = self;
  return i < c->n ? c->s[i].status : SAGAD_STORE_FATAL;
}

static int read_fault(sim_conn_t *c, int64_t *lat) {
  sim_t *s = c->sim;
  /* When the load ends: from a generator of its own (see load_rng). */
  *lat = sim_range(&s->load_rng, 1, 5);
  if (!s->faults_on)
    return 0;
  if (sim_chance(&s->rng, 20)) {
    sim_fault(s, SIM_F_LOAD_FAIL);
    snprintf(c->err, sizeof c->err, "simulated: recovery read failed");
    return -1;
  }
  if (sim_chance(&s->rng, 50)) {
    sim_fault(s, SIM_F_LOAD_SLOW); /* inputs wait for it meanwhile */
    *lat = sim_range(&s->rng, 20, 600);
  }
  return 0;
}

static int part_in(int32_t p, const int32_t *parts, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (parts[i] == p)
      return 1;
  return 0;
}

/* A load started and not yet ended: it reads the store when it ends. */
struct sim_load {
  struct sim_load *next;
  uint64_t token;
  int all;                  /* load_partitions (else load_saga) */
  int32_t parts[SIM_PARTS]; /* load_partitions */
  size_t nparts;
  char id[SM_ID_MAX + 1];   /* load_saga */
  int32_t partition;
  sagad_load_cb cb;
  sagad_load_done_cb done;
  void *arg;
};

static int load_begin(sim_conn_t *c, struct sim_load *L) {
  int64_t lat;
  if (read_fault(c, &lat)) {
    free(L);
    return -1;
  }
  L->token = ++c->load_token;
  L->next = c->loads;
  c->loads = L;
  sim_schedule(c->sim, c->sim->now + lat, EV_LOAD_DONE, c->node,
               (int64_t)L->token, NULL);
  return 0;
}

static int p_load_partitions(void *self, const int32_t *parts, size_t n,
                             sagad_load_cb cb, sagad_load_done_cb done,
                             void *arg) {
  sim_conn_t *c = self;
  struct sim_load *L = calloc(1, sizeof *L);
  if (!L || n > SIM_PARTS) {
    free(L);
    return -1;
  }
  L->all = 1;
  memcpy(L->parts, parts, n * sizeof *parts);
  L->nparts = n;
  L->cb = cb;
  L->done = done;
  L->arg = arg;
  return load_begin(c, L);
}

static int p_load_saga(void *self, const char *id, int32_t partition,
                       sagad_load_cb cb, sagad_load_done_cb done, void *arg) {
  sim_conn_t *c = self;
  struct sim_load *L = calloc(1, sizeof *L);
  if (!L || strlen(id) > SM_ID_MAX) {
    free(L);
    return -1;
  }
  snprintf(L->id, sizeof L->id, "%s", id);
  L->partition = partition;
  L->cb = cb;
  L->done = done;
  L->arg = arg;
  return load_begin(c, L);
}

void sim_store_load_done(sim_node_t *n, uint64_t token) {
  sim_conn_t *c = &n->conn;
  sim_t *s = c->sim;
  struct sim_load **p = &c->loads, *L;
  while (*p && (*p)->token != token)
    p = &(*p)->next;
  if (!(L = *p) || !n->engine)
    return;
  *p = L->next; /* off the list: its callbacks may start other loads */
  if (s->faults_on && sim_chance(&s->load_rng, 20)) {
    sim_fault(s, SIM_F_LOAD_FAIL_LATE);
    snprintf(c->err, sizeof c->err, "simulated: recovery read failed");
    L->done(L->arg, -1);
    free(L);
    return;
  }
  if (L->all) {
    /* ORDER BY saga_id: the starter's ids sort in creation order. */
    for (int i = 0; i < s->nsagas; i++) {
      sim_stream_t *st = sim_store_find(s, s->sagas[i].id);
      if (!st || !st->has_index ||
          !part_in(st->ix_partition, L->parts, L->nparts) ||
          ((!strcmp(st->ix_status, "completed") ||
            !strcmp(st->ix_status, "compensated")) &&
           !st->ix_notify_pending))
        continue;
      for (size_t j = 0; j < st->n; j++)
        L->cb(L->arg, st->id, st->ix_partition, (int64_t)j + 1,
              st->recs[j].data, st->recs[j].len);
    }
  } else {
    sim_stream_t *st = sim_store_find(s, L->id);
    for (size_t j = 0; st && j < st->n; j++)
      L->cb(L->arg, L->id, L->partition, (int64_t)j + 1, st->recs[j].data,
            st->recs[j].len);
  }
  L->done(L->arg, 0);
  free(L);
}

static void loads_clear(sim_conn_t *c) {
  for (struct sim_load *L = c->loads, *n; L; L = n) {
    n = L->next;
    free(L);
  }
  c->loads = NULL;
}

static const char *p_last_error(void *self) {
  return ((sim_conn_t *)self)->err;
}

void sim_store_port(sim_node_t *n, sagad_store_port_t *port) {
  n->conn.sim = n->sim;
  n->conn.node = n->idx;
  *port = (sagad_store_port_t){.self = &n->conn,
                               .batch_reset = p_reset,
                               .batch_add = p_add,
                               .batch_index = p_index,
                               .batch_notified = p_notified,
                               .batch_submit = p_submit,
                               .batch_status = p_status,
                               .load_partitions = p_load_partitions,
                               .load_saga = p_load_saga,
                               .last_error = p_last_error};
}

void sim_store_free(sim_t *s) {
  for (size_t i = 0; i < s->nstreams; i++) {
    for (size_t j = 0; j < s->streams[i].n; j++)
      free(s->streams[i].recs[j].data);
    free(s->streams[i].recs);
    free(s->streams[i].shadow);
    free(s->streams[i].facts);
  }
  free(s->streams);
  s->streams = NULL;
  s->nstreams = s->cstreams = 0;
  for (int i = 0; i < SIM_NODES; i++) {
    batch_clear(&s->nodes[i].conn);
    loads_clear(&s->nodes[i].conn);
    free(s->nodes[i].conn.s);
    free(s->nodes[i].conn.ix);
    free(s->nodes[i].conn.marks);
    memset(&s->nodes[i].conn, 0, sizeof s->nodes[i].conn);
  }
}
