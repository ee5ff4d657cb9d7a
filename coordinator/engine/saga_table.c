/* The engine's saga table (see engine_internal.h): a hash table of the
 * sagas in memory by id, each entry holding its machine (sm_t), its input
 * and correlation-id (all in the entry's allocation), its cancel reason,
 * the records it has in the current batch, and the steps' outputs in one
 * allocation of slots -- with the output cache's bound that drops the
 * outputs of the sagas least recently used. No I/O. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

/* The machine follows the entry in its allocation (ENTRY_SAGA). */
_Static_assert(sizeof(entry_t) % _Alignof(sm_t) == 0,
               "sm_t after entry_t must be aligned");

static uint32_t hash_id(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

/* Free en and what it owns (it is out of the table). */
static void entry_release(sagad_engine_t *e, entry_t *en) {
  table_free_records(en);
  if (en->obs && e->hooks.on_forget)
    e->hooks.on_forget(e->hooks.arg, en->obs);
  timers_forget_entry(en);
  free(en->outs);
  free(en->cancelled);
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
                            const saga_def_t *def, int32_t partition,
                            const uint8_t *input, size_t input_len,
                            const char *corr) {
  (void)e;
  if (!corr || !*corr || !strcmp(corr, id))
    corr = NULL; /* the saga id: kept as none */
  size_t corr_size = corr ? strlen(corr) + 1 : 0;
  if (input_len >= UINT32_MAX)
    return NULL;
  size_t machine = sm_size(def, strlen(id));
  /* the entry is 8-byte aligned and a multiple of 8: so is the machine */
  entry_t *en = malloc(sizeof *en + machine + input_len + corr_size);
  if (!en)
    return NULL;
  memset(en, 0, sizeof *en);
  if (sm_init(ENTRY_SAGA(en), id, def) != 0) {
    free(en);
    return NULL;
  }
  en->hash = hash_id(id);
  en->partition = partition;
  en->input_len = (uint32_t)input_len;
  /* after the id sm_init wrote: entry_input */
  uint8_t *tail = (uint8_t *)ENTRY_SAGA(en) + machine;
  if (input_len)
    memcpy(tail, input, input_len);
  if (corr) {
    en->has_corr = 1;
    memcpy(tail + input_len, corr, corr_size);
  }
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
                   int32_t partition, const uint8_t *input, size_t input_len,
                   const char *corr) {
  entry_t *en =
      table_new_detached(e, id, def, partition, input, input_len, corr);
  if (en)
    table_insert(e, en);
  return en;
}

void table_discard(sagad_engine_t *e, entry_t *en) {
  e->outs_bytes -= en->outs_len;
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

/* The outputs of a saga's steps live in one allocation (a saga in flight
 * costs one malloc for them, not one per step): nsteps slots of
 * {offset, length} (length OUT_NONE: not replied yet), then the bytes in
 * the order the replies came; en->outs_len is its size (kept, not walked
 * on each append). */
typedef struct {
  uint32_t off, len;
} out_slot_t;
#define OUT_NONE UINT32_MAX

/* Keep step's output (replay and the live path record the same ones, so
 * commands built from them are the same bytes). The saga's outputs must be
 * in memory (outs_ready). */
static int note_output(sagad_engine_t *e, entry_t *en, uint32_t step,
                       const uint8_t *p, size_t n) {
  const sm_t *s = ENTRY_SAGA(en);
  size_t old = en->outs ? en->outs_len : 0;
  size_t have = old ? old : s->nsteps * sizeof(out_slot_t);
  if (step >= s->nsteps || n >= OUT_NONE || have + n >= UINT32_MAX)
    return -1;
  uint8_t *v = realloc(en->outs, have + n ? have + n : 1);
  if (!v)
    return -1;
  e->outs_bytes += have + n - old;
  en->outs_len = (uint32_t)(have + n);
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
  e->outs_bytes -= en->outs_len;
  free(en->outs);
  en->outs = NULL;
  en->outs_len = 0;
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
