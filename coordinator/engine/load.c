/* The engine's loading of sagas from the store (see engine_internal.h):
 * recovery of the sagas of assigned partitions, read-backs of one saga
 * (for an input that finds it gone or judged unexpected, after a conflict
 * or a lost commit), the sagas whose read-back failed and must be read
 * again, and the output cache's read-back. A saga is rebuilt by replaying
 * its stored records through the machine (recovery is replay), then
 * resumed: its pending commands and timers performed again. I/O only
 * through the store port. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "fault_point.h"
#include "grow.h"
#include "log_sink.h"

/* ---- loading sagas from the store ----------------------------------- */

typedef struct {
  sagad_engine_t *e;
  load_mode_t mode;
  entry_t *cur; /* saga being rebuilt */
  int skip;     /* records of a saga already in memory or broken */
  char id[SM_ID_MAX + 1];
  size_t loaded;
} loader_t;

static void loader_finish(loader_t *L) {
  sagad_engine_t *e = L->e;
  entry_t *en = L->cur;
  L->cur = NULL;
  if (!en)
    return;
  sm_t *s = ENTRY_SAGA(en);
  en->durable = s->version;
  L->loaded++;
  if (sm_is_terminal(s)) {
    if (L->mode == LOAD_RECOVER) {
      /* Listed by recovery only while its final notification is not
       * known to be delivered (saga_index.notify_pending): send it. */
#ifndef SAGA_SIM_BREAK_LOSE_FINAL_NOTIFY /* test-only bug that tests/sim       \
                                            catches */
      if (e->notify)
        fx_send_final(e, en, 0);
#endif
      table_remove(e, en);
    } else if (L->mode == LOAD_READ_BACK_UNACTED && e->notify) {
      fx_send_final(e, en, 0);
    }
    return;
  }
  /* The state is durable: resuming effects are safe to perform now. */
  sm_resume(s, &e->out);
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  for (size_t i = 0; i < e->out.n_effects; i++)
    fx_perform(e, en, &e->out.effects[i], now);
  /* A parked saga's COMPENSATION_FAILED may have died with the process
   * that parked it: a starter awaits it, so every recovery repeats it. */
  for (unsigned i = 0; L->mode == LOAD_RECOVER &&
                       s->status == SM_COMPENSATION_FAILED && i < s->nsteps;
       i++)
    if (s->steps[i].status == SM_STEP_COMP_FAILED) {
      sm_effect_t fx = {.type = SM_FX_NOTIFY,
                        .notify = SM_NOTIFY_COMPENSATION_FAILED,
                        .step = (uint8_t)i,
                        .action = SM_COMPENSATE,
                        .outcome = SM_OUTCOME_FAILURE};
      fx_send_notification(e, en, &fx, s->updated_ms);
      break;
    }
  FAULT_POINT("during_recovery"); /* some sagas resumed, others not yet */
  e->c.recovered++;
  SLOG_DEBUG(s->id, step_name(s, s->cursor), "recovered at version %u (%s)",
             (unsigned)s->version, sm_status_name((sm_status_t)s->status));
}

static int loader_record(void *arg, const char *id, int32_t partition,
                         int64_t version, const uint8_t *data, size_t len) {
  loader_t *L = arg;
  sagad_engine_t *e = L->e;
  if (strcmp(id, L->id) != 0) {
    loader_finish(L);
    snprintf(L->id, sizeof L->id, "%s", id);
    L->skip = strlen(id) > SM_ID_MAX || table_lookup(e, id) != NULL;
    if (strlen(id) > SM_ID_MAX)
      LOG_ERROR("stored saga id \"%.64s...\" is longer than %d bytes: saga "
                "left alone",
                id, SM_ID_MAX);
  }
  if (L->skip)
    return 0;
  if (saga_codec_decode(data, len, &e->rec) != 0) {
    SLOG_ERROR(id, NULL,
               "could not decode stored record %lld: skipping the "
               "saga",
               (long long)version);
    goto broken;
  }
  if (!L->cur) {
    const sm_event_t *ev = &e->rec.events[0];
    if (e->rec.n < 1 || ev->type != SM_EV_STARTED || !ev->def_name) {
      SLOG_ERROR(id, NULL, "stored stream does not begin with Started");
      goto broken;
    }
    const saga_def_t *def =
        saga_registry_find(e->cfg.registry, ev->def_name, ev->def_version);
    if (!def) {
      SLOG_ERROR(id, NULL,
                 "definition %s version %u is not loaded: saga left alone",
                 ev->def_name, (unsigned)ev->def_version);
      goto broken;
    }
    L->cur = table_add(e, id, def, partition);
    if (!L->cur || table_set_input(L->cur, ev->payload, ev->payload_len) != 0 ||
        table_set_corr(L->cur, ev->correlation_id) != 0) {
      SLOG_ERROR(id, NULL, "out of memory rebuilding the saga");
      goto broken;
    }
  }
  if (saga_codec_apply(ENTRY_SAGA(L->cur), &e->rec) != 0) {
    SLOG_ERROR(id, NULL, "stored record %lld does not replay",
               (long long)version);
    goto broken;
  }
#ifndef SAGA_SIM_BREAK_FORGET_OUTPUTS /* test-only bug that tests/sim catches  \
                                       */
  if (table_note_outputs(e, L->cur, e->rec.events, e->rec.n) != 0) {
    SLOG_ERROR(id, NULL, "out of memory rebuilding the saga's outputs");
    goto broken;
  }
#endif
  if (table_note_cancel(L->cur, e->rec.events, e->rec.n) != 0) {
    SLOG_ERROR(id, NULL, "out of memory rebuilding the saga's cancel");
    goto broken;
  }
  saga_record_clear(&e->rec);
  return 0;
broken:
  saga_record_clear(&e->rec);
  if (L->cur)
    table_remove(e, L->cur);
  L->cur = NULL;
  L->skip = 1;
  return -1;
}

/* Blocking, through the store port's load_saga. */
entry_t *load_one(sagad_engine_t *e, const char *id, int32_t partition,
                  load_mode_t mode, int *failed) {
  loader_t L = {.e = e, .mode = mode};
  *failed = e->cfg.store.load_saga(e->cfg.store.self, id, partition,
                                   loader_record, &L) != 0;
  loader_finish(&L);
  SLOG_DEBUG(id, NULL, "read back from the store: %zu", L.loaded);
  if (*failed)
    SLOG_WARN(id, NULL, "could not read the saga back: %s",
              e->cfg.store.last_error(e->cfg.store.self));
  return table_lookup(e, id);
}

/* Remember a saga of ours that is no longer in memory and could not be
 * read back. Nothing else would bring it back: its timers went with it,
 * and an input may never come (found by tests/sim, seed 781: a timer's
 * transition conflicted, the read-back failed, the saga stalled). */
void load_note_reload(sagad_engine_t *e, const char *id, int32_t partition) {
  for (size_t i = 0; i < e->nreload; i++)
    if (!strcmp(e->reload[i].id, id))
      return;
  if (SAGA_GROW(e->reload, e->creload, e->nreload + 1, 16) != 0) {
    LOG_ERROR("out of memory noting saga %s for a read-back", id);
    return;
  }
  memcpy(e->reload[e->nreload].id, id, strlen(id) + 1);
  e->reload[e->nreload++].partition = partition;
}

/* Read the noted sagas back and resume them. Returns how many still could
 * not be read. */
size_t load_reload_noted(sagad_engine_t *e) {
  size_t keep = 0;
  for (size_t i = 0; i < e->nreload; i++) {
    struct reload *r = &e->reload[i];
    int failed = 0;
    if (!table_lookup(e, r->id))
      (void)load_one(e, r->id, r->partition, LOAD_READ_BACK_UNACTED, &failed);
    if (failed)
      e->reload[keep++] = *r;
  }
  e->nreload = keep;
  return keep;
}

/* ---- the output cache's read-back -----------------------------------
 * Outputs the cache dropped (table_outs_trim) are read back from the
 * Succeeded events of the stream when a command or the saga's output needs
 * them. A saga waiting a day on a manual approval costs no output memory
 * meanwhile; the store read is blocking, like every read-back, and happens
 * once per cold saga. */

typedef struct {
  sagad_engine_t *e;
  entry_t *en;
  int failed;
} outs_load_t;

static int outs_record(void *arg, const char *id, int32_t partition,
                       int64_t version, const uint8_t *data, size_t len) {
  outs_load_t *L = arg;
  saga_record_t rec = {0};
  (void)id;
  (void)partition;
  (void)version;
  if (saga_codec_decode(data, len, &rec) != 0 ||
      table_note_outputs(L->e, L->en, rec.events, rec.n) != 0)
    L->failed = 1;
  saga_record_clear(&rec);
  return L->failed ? -1 : 0;
}

int load_outputs(sagad_engine_t *e, entry_t *en) {
  en->outs_used = 1;
  if (!en->outs_gone)
    return 0;
  const sm_t *s = ENTRY_SAGA(en);
  outs_load_t L = {.e = e, .en = en};
  en->outs_gone = 0;
  int rc = e->cfg.store.load_saga(e->cfg.store.self, s->id, en->partition,
                                  outs_record, &L);
  if (rc != 0 || L.failed) {
    SLOG_WARN(s->id, NULL, "could not read the steps' outputs back: %s",
              rc != 0 ? e->cfg.store.last_error(e->cfg.store.self)
                      : "a stored record does not decode");
    table_outs_drop(e, en);
    return -1;
  }
  e->c.outputs_read_back++;
  SLOG_DEBUG(s->id, NULL, "steps' outputs read back from the store");
  return 0;
}

int sagad_engine_on_assign(sagad_engine_t *e, const int32_t *parts, size_t n) {
  e->nparts += n;
  if (!n)
    return 0;
  /* A saga of a partition revoked while its batch was in flight is still
   * here, marked to go when the batch settles; the loader skips it as in
   * memory. Keep it: the batch's outcome brings it up to date (a conflict
   * reads it back), or no one would drive it (found by tests/sim, seed
   * 354186, now pinned as 156: revoked, assigned back before its slow
   * batch landed). */
  for (size_t b = 0; b < e->nbuckets; b++)
    for (entry_t *en = e->buckets[b]; en; en = en->hnext)
      if (en->revoked && part_in(en->partition, parts, n)) {
        en->revoked = 0;
        SLOG_DEBUG(ENTRY_SAGA(en)->id, NULL,
                   "assigned back while its batch is in flight: kept");
      }
  loader_t L = {.e = e, .mode = LOAD_RECOVER};
  int rc = e->cfg.store.load_partitions(e->cfg.store.self, parts, n,
                                        loader_record, &L);
  loader_finish(&L);
  timers_rearm(e);
  table_outs_trim(e);
  LOG_INFO("recovered %zu sagas of %zu assigned partitions", L.loaded, n);
  if (rc != 0)
    LOG_ERROR("could not recover the sagas of assigned partitions: %s",
              e->cfg.store.last_error(e->cfg.store.self));
  return rc;
}
