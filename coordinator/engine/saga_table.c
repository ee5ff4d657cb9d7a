/* The engine's saga table (see engine_internal.h): a hash table of the
 * sagas in memory by id, each entry holding its machine (sm_t, in the same
 * allocation), its input, correlation-id and cancel reason, the records it
 * has in the current batch, and the steps' outputs in one allocation of
 * slots -- with the output cache's bound that drops the outputs of the
 * sagas least recently used. No I/O. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

static uint32_t hash_id(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

static size_t outs_size(const entry_t *en);

/* Free en and what it owns (it is out of the table). */
static void entry_release(sagad_engine_t *e, entry_t *en) {
  table_free_records(en);
  if (en->obs && e->hooks.on_forget)
    e->hooks.on_forget(e->hooks.arg, en->obs);
  timers_forget_entry(en);
  free(en->input);
  free(en->outs);
  free(en->cancelled);
  free(en->corr);
  free(en);
}

int table_init(sagad_engine_t *e) {
  e->nbuckets = 1024;
  e->buckets = calloc(e->nbuckets, sizeof *e->buckets);
  return e->buckets ? 0 : -1;
}

void table_free_all(sagad_engine_t *e) {
  if (e->buckets)
    for (size_t b = 0; b < e->nbuckets; b++)
      for (entry_t *en = e->buckets[b], *n; en; en = n) {
        n = en->hnext;
        entry_release(e, en);
      }
  free(e->buckets);
  e->buckets = NULL;
  e->nsagas = 0;
}

entry_t *table_lookup(const sagad_engine_t *e, const char *id) {
  uint32_t h = hash_id(id);
  for (entry_t *en = e->buckets[h & (e->nbuckets - 1)]; en; en = en->hnext)
    if (en->hash == h && !strcmp(ENTRY_SAGA(en)->id, id))
      return en;
  return NULL;
}

static void grow(sagad_engine_t *e) {
  size_t n = e->nbuckets * 2;
  entry_t **b = calloc(n, sizeof *b);
  if (!b)
    return; /* keep the longer chains */
  for (size_t i = 0; i < e->nbuckets; i++) {
    entry_t *en = e->buckets[i];
    while (en) {
      entry_t *next = en->hnext;
      en->hnext = b[en->hash & (n - 1)];
      b[en->hash & (n - 1)] = en;
      en = next;
    }
  }
  free(e->buckets);
  e->buckets = b;
  e->nbuckets = n;
}

entry_t *table_new_detached(sagad_engine_t *e, const char *id,
                            const saga_def_t *def, int32_t partition) {
  (void)e;
  entry_t *en = calloc(1, sizeof *en + sm_size(def, strlen(id)));
  if (!en)
    return NULL;
  if (sm_init(ENTRY_SAGA(en), id, def) != 0) {
    free(en);
    return NULL;
  }
  en->hash = hash_id(id);
  en->partition = partition;
  return en;
}

void table_insert(sagad_engine_t *e, entry_t *en) {
  if (e->nsagas >= e->nbuckets)
    grow(e);
  size_t b = en->hash & (e->nbuckets - 1);
  en->hnext = e->buckets[b];
  e->buckets[b] = en;
  e->nsagas++;
}

entry_t *table_add(sagad_engine_t *e, const char *id, const saga_def_t *def,
                   int32_t partition) {
  entry_t *en = table_new_detached(e, id, def, partition);
  if (en)
    table_insert(e, en);
  return en;
}

void table_discard(sagad_engine_t *e, entry_t *en) {
  if (en->outs)
    e->outs_bytes -= outs_size(en);
  entry_release(e, en);
}

void table_free_records(entry_t *en) {
  for (brec_t *r = en->rec_head, *n; r; r = n) {
    n = r->next;
    free(r);
  }
  en->rec_head = en->rec_tail = NULL;
  en->nrec = 0;
}

void table_remove(sagad_engine_t *e, entry_t *en) {
  entry_t **p = &e->buckets[en->hash & (e->nbuckets - 1)];
  while (*p && *p != en)
    p = &(*p)->hnext;
  if (*p) {
    *p = en->hnext;
    e->nsagas--;
  }
  table_discard(e, en);
}

int table_set_input(entry_t *en, const uint8_t *p, size_t n) {
  free(en->input);
  en->input = NULL;
  en->input_len = 0;
  if (!n)
    return 0;
  en->input = malloc(n);
  if (!en->input)
    return -1;
  memcpy(en->input, p, n);
  en->input_len = n;
  return 0;
}

/* The outputs of a saga's steps live in one allocation (a saga in flight
 * costs one malloc for them, not one per step): nsteps slots of
 * {offset, length} (length OUT_NONE: not replied yet), then the bytes in
 * the order the replies came. */
typedef struct {
  uint32_t off, len;
} out_slot_t;
#define OUT_NONE UINT32_MAX

static size_t outs_size(const entry_t *en) {
  const sm_t *s = ENTRY_SAGA_C(en);
  size_t n = s->nsteps * sizeof(out_slot_t);
  const out_slot_t *slot = (const out_slot_t *)(const void *)en->outs;
  for (unsigned i = 0; en->outs && i < s->nsteps; i++)
    if (slot[i].len != OUT_NONE && slot[i].off + slot[i].len > n)
      n = slot[i].off + slot[i].len;
  return n;
}

/* Keep step's output (replay and the live path record the same ones, so
 * commands built from them are the same bytes). The saga's outputs must be
 * in memory (outs_ready). */
static int note_output(sagad_engine_t *e, entry_t *en, uint32_t step,
                       const uint8_t *p, size_t n) {
  const sm_t *s = ENTRY_SAGA(en);
  if (step >= s->nsteps || n >= OUT_NONE)
    return -1;
  size_t old = en->outs ? outs_size(en) : 0;
  size_t have = old ? old : s->nsteps * sizeof(out_slot_t);
  uint8_t *v = realloc(en->outs, have + n ? have + n : 1);
  if (!v)
    return -1;
  e->outs_bytes += have + n - old;
  out_slot_t *slot = (out_slot_t *)(void *)v;
  if (!en->outs)
    for (unsigned i = 0; i < s->nsteps; i++)
      slot[i] = (out_slot_t){0, OUT_NONE};
  if (n)
    memcpy(v + have, p, n);
  slot[step] = (out_slot_t){(uint32_t)have, (uint32_t)n};
  en->outs = v;
  return 0;
}

/* The outputs recorded by a transition's (or a stored record's) events. */
int table_note_outputs(sagad_engine_t *e, entry_t *en, const sm_event_t *ev,
                       size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ev[i].type == SM_EV_SUCCEEDED && ev[i].action == SM_DO &&
        note_output(e, en, ev[i].step, ev[i].payload, ev[i].payload_len) != 0)
      return -1;
  return 0;
}

void table_outs_drop(sagad_engine_t *e, entry_t *en) {
  if (en->outs)
    e->outs_bytes -= outs_size(en);
  free(en->outs);
  en->outs = NULL;
  en->outs_gone = 1;
}

/* ---- the output cache's bound --------------------------------------
 * Outputs are kept with their saga while they fit output_cache_bytes; past
 * it, a clock hand over the saga table drops those of the sagas least
 * recently used (not in the batch: their outputs may not be stored yet);
 * a load (load.c, LOAD_OUTPUTS) reads them back before an input whose
 * transition needs them is stepped. */

int table_outs_ready(entry_t *en) {
  en->outs_used = 1;
  return en->outs_gone ? -1 : 0;
}

/* Bring the cache back under its bound: drop the outputs of sagas not used
 * since the hand last passed them, down to 7/8 of the bound. */
void table_outs_trim(sagad_engine_t *e) {
  if (e->outs_bytes <= e->outs_max || !e->nbuckets)
    return;
  size_t low = e->outs_max - e->outs_max / 8;
  for (size_t k = 0; k < 2 * e->nbuckets && e->outs_bytes > low; k++) {
    size_t b = e->outs_hand++ & (e->nbuckets - 1);
    for (entry_t *en = e->buckets[b]; en; en = en->hnext) {
      if (!en->outs || en->in_batch)
        continue;
      if (en->outs_used)
        en->outs_used = 0;
      else
        table_outs_drop(e, en);
    }
  }
}

/* v[nsteps] from the recorded outputs, for core/dataflow. */
void table_flow_values(const entry_t *en, saga_flow_value_t *v) {
  const sm_t *s = ENTRY_SAGA_C(en);
  const out_slot_t *slot = (const out_slot_t *)(const void *)en->outs;
  for (unsigned i = 0; i < s->nsteps; i++) {
    v[i] = (saga_flow_value_t){0};
    if (en->outs && slot[i].len != OUT_NONE)
      v[i] = (saga_flow_value_t){en->outs + slot[i].off, slot[i].len, true};
  }
}

/* Keep "cancelled: <reason>" from a transition's (or a stored record's)
 * CancelRequested, for the COMPENSATED notification it leads to. */
int table_note_cancel(entry_t *en, const sm_event_t *ev, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ev[i].type != SM_EV_CANCEL_REQUESTED)
      continue;
    const char *why = ev[i].reason ? ev[i].reason : "(no reason given)";
    size_t len = sizeof "cancelled: " + strlen(why);
    char *v = malloc(len);
    if (!v)
      return -1;
    snprintf(v, len, "cancelled: %s", why);
    free(en->cancelled);
    en->cancelled = v;
  }
  return 0;
}

/* Keep the starter's correlation-id (NULL, "" or the saga id: none). */
int table_set_corr(entry_t *en, const char *corr) {
  free(en->corr);
  en->corr = NULL;
  if (!corr || !*corr || !strcmp(corr, ENTRY_SAGA(en)->id))
    return 0;
  en->corr = strdup(corr);
  return en->corr ? 0 : -1;
}
