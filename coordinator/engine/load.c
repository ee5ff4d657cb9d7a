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

/* ---- loads ------------------------------------------------------------
 * Every load is asynchronous (ports.h): the store delivers its records
 * later, on the loop, possibly over several turns with other entry points
 * in between. A saga is rebuilt aside (a detached entry) and enters the
 * table only when its stream is complete, unless its partition was revoked
 * meanwhile or it is in memory by then. While any load is pending no input
 * is stepped (eng_pump): an input for a saga being loaded, or for a
 * partition being recovered, waits in the queue, in order, and nothing
 * else can write the saga meanwhile (one writer per saga). */

struct load_req {
  struct load_req *next;
  sagad_engine_t *e;
  load_mode_t mode;
  input_t *waiter;   /* the input waiting on it, or NULL */
  bool reload;       /* a failed read-back is noted (load_note_reload) */
  bool revoked;      /* a saga load whose partition was revoked meanwhile */
  int32_t partition; /* a saga load's */
  int32_t *parts;    /* LOAD_RECOVER: the partitions, owned */
  uint8_t *parts_revoked; /* LOAD_RECOVER: revoked meanwhile, per part */
  size_t nparts;
  char want[SM_ID_MAX + 1]; /* a saga load's saga */
  /* the loader */
  entry_t *cur;           /* saga being rebuilt (detached) */
  int skip;               /* records of a saga already in memory,
                             revoked or broken */
  char id[SM_ID_MAX + 1]; /* the saga of the last record */
  size_t loaded;
  entry_t *outs_en; /* LOAD_OUTPUTS: the entry filled */
  bool outs_failed;
};

static bool load_revoked(const load_req_t *L, int32_t partition) {
  if (L->mode != LOAD_RECOVER)
    return L->revoked;
  for (size_t i = 0; i < L->nparts; i++)
    if (L->parts[i] == partition)
      return L->parts_revoked[i] != 0;
  return true; /* not asked for */
}

static void load_req_free(load_req_t *L) {
  if (!L)
    return;
  if (L->waiter)
    L->waiter->load = NULL;
  free(L->parts);
  free(L->parts_revoked);
  free(L);
}

static load_req_t *load_req_new(sagad_engine_t *e, load_mode_t mode) {
  load_req_t *L = calloc(1, sizeof *L);
  if (L) {
    L->e = e;
    L->mode = mode;
  }
  return L;
}

static void load_link(sagad_engine_t *e, load_req_t *L) {
  L->next = e->loads;
  e->loads = L;
  e->nloads++;
}

static void load_unlink(sagad_engine_t *e, load_req_t *L) {
  for (load_req_t **p = &e->loads; *p; p = &(*p)->next)
    if (*p == L) {
      *p = L->next;
      e->nloads--;
      return;
    }
}

/* ---- the output cache's read-back -----------------------------------
 * Outputs the cache dropped (table_outs_trim) are read back from the
 * Succeeded events of the stream before an input whose transition needs
 * them is stepped. A saga waiting a day on a manual approval costs no
 * output memory meanwhile; the read happens once per cold saga. */

static int outs_record(load_req_t *L, const uint8_t *data, size_t len) {
  sagad_engine_t *e = L->e;
  entry_t *en = table_lookup(e, L->want);
  if (!L->outs_en) {
    /* The first record: fill the entry if its outputs are still gone. */
    if (!en || !en->outs_gone) {
      L->skip = 1;
      return 0;
    }
    L->outs_en = en;
    en->outs_gone = 0;
  }
  if (L->skip)
    return 0;
  if (en != L->outs_en || en->outs_gone) {
    /* Left memory, or dropped again meanwhile: the input reads again. */
    L->outs_failed = true;
    L->skip = 1;
    return 0;
  }
  saga_record_t rec = {0};
  if (saga_codec_decode(data, len, &rec) != 0 ||
      table_note_outputs(e, en, rec.events, rec.n) != 0)
    L->outs_failed = true;
  saga_record_clear(&rec);
  if (L->outs_failed)
    L->skip = 1;
  return L->outs_failed ? -1 : 0;
}

static void outs_done(load_req_t *L, int status) {
  sagad_engine_t *e = L->e;
  entry_t *en = table_lookup(e, L->want);
  if (!L->outs_en || en != L->outs_en)
    return; /* nothing to fill (found no record, or gone) */
  if (status != 0 || L->outs_failed) {
    SLOG_WARN(L->want, NULL, "could not read the steps' outputs back: %s",
              status != 0 ? e->cfg.store.last_error(e->cfg.store.self)
                          : "a stored record does not decode");
    table_outs_drop(e, en);
    return;
  }
  en->outs_used = 1; /* for the input that waits on them */
  e->c.outputs_read_back++;
  SLOG_DEBUG(L->want, NULL, "steps' outputs read back from the store");
}

/* ---- rebuilding sagas ------------------------------------------------ */

/* The saga rebuilt so far is complete: into the table, resumed. */
static void loader_finish(load_req_t *L) {
  sagad_engine_t *e = L->e;
  entry_t *en = L->cur;
  L->cur = NULL;
  if (!en)
    return;
  sm_t *s = ENTRY_SAGA(en);
  if (e->drained || load_revoked(L, en->partition) || table_lookup(e, s->id)) {
    /* Drained, revoked, or in memory by now (another load was first):
     * not ours to resume. */
    table_discard(e, en);
    return;
  }
  table_insert(e, en);
  en->durable = s->version;
  L->loaded++;
  if (sm_is_terminal(s)) {
    if (L->mode == LOAD_RECOVER) {
      /* Listed by recovery only while its final notification is not
       * known to be delivered (saga_index.notify_pending): send it. */
#ifndef SAGA_SIM_BREAK_LOSE_FINAL_NOTIFY /* test-only bug that tests/sim catches */
      if (e->notify)
        fx_send_final(e, en, 0, NULL, 0);
#endif
      table_remove(e, en);
    } else if (L->mode == LOAD_READ_BACK_UNACTED && e->notify) {
      fx_send_final(e, en, 0, NULL, 0);
    }
    return;
  }
  if (e->hooks.on_met)
    e->hooks.on_met(e->hooks.arg, &en->obs, s);
  /* The state is durable: resuming effects are safe to perform now. */
  sm_resume(s, &e->out);
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  for (size_t i = 0; i < e->out.n_effects; i++)
    fx_perform(e, en, &e->out.effects[i], now, NULL, 0);
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
      fx_send_notification(e, en, &fx, s->updated_ms, NULL, 0);
      break;
    }
  FAULT_POINT("during_recovery"); /* some sagas resumed, others not yet */
  e->c.recovered++;
  SLOG_DEBUG(s->id, step_name(s, s->cursor), "recovered at version %u (%s)",
             (unsigned)s->version, sm_status_name((sm_status_t)s->status));
}

static int loader_record(void *arg, const char *id, int32_t partition,
                         int64_t version, const uint8_t *data, size_t len) {
  load_req_t *L = arg;
  sagad_engine_t *e = L->e;
  if (L->mode == LOAD_OUTPUTS)
    return outs_record(L, data, len);
  if (strcmp(id, L->id) != 0) {
    loader_finish(L);
    snprintf(L->id, sizeof L->id, "%s", id);
    L->skip = strlen(id) > SM_ID_MAX || table_lookup(e, id) != NULL ||
              load_revoked(L, partition) || e->drained;
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
    L->cur = table_new_detached(e, id, def, partition, ev->payload,
                                ev->payload_len, ev->correlation_id);
    if (!L->cur) {
      SLOG_ERROR(id, NULL, "out of memory rebuilding the saga");
      goto broken;
    }
  }
  if (saga_codec_apply(ENTRY_SAGA(L->cur), &e->rec) != 0) {
    SLOG_ERROR(id, NULL, "stored record %lld does not replay",
               (long long)version);
    goto broken;
  }
#ifndef SAGA_SIM_BREAK_FORGET_OUTPUTS /* test-only bug that tests/sim catches */
  if (table_note_outputs(e, L->cur, e->rec.events, e->rec.n) != 0) {
    SLOG_ERROR(id, NULL, "out of memory rebuilding the saga's outputs");
    goto broken;
  }
#endif
  if (table_note_cancel(L->cur, e->rec.events, e->rec.n) != 0) {
    SLOG_ERROR(id, NULL, "out of memory rebuilding the saga's cancel");
    goto broken;
  }
  saga_record_reset(&e->rec);
  return 0;
broken:
  saga_record_reset(&e->rec);
  if (L->cur)
    table_discard(e, L->cur);
  L->cur = NULL;
  L->skip = 1;
  return -1;
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

/* Start reading the noted sagas back (resumed, a terminal one's final
 * notification sent, as for any read-back after a failed append). Returns
 * how many could not start. */
size_t load_reload_noted(sagad_engine_t *e) {
  size_t keep = 0, n = e->nreload;
  e->nreload = 0; /* a failed load notes its saga again */
  for (size_t i = 0; i < n; i++) {
    struct reload r = e->reload[i];
    if (!table_lookup(e, r.id) &&
        load_start(e, r.id, r.partition, LOAD_READ_BACK_UNACTED, NULL, true) !=
            0)
      e->reload[keep++] = r;
  }
  e->nreload = keep;
  return keep;
}

/* A load has ended: the last saga in, the waiting input told, and the
 * engine pumps again (inputs waited for it). */
static void load_done(void *arg, int status) {
  load_req_t *L = arg;
  sagad_engine_t *e = L->e;
  load_unlink(e, L);
  if (e->drained) {
    /* The ports are closing (a load ended by the store's close): the
     * engine acts no more. */
    if (L->cur)
      table_discard(e, L->cur);
    load_req_free(L);
    return;
  }
  if (L->mode == LOAD_OUTPUTS) {
    outs_done(L, status);
  } else {
    loader_finish(L);
    if (L->mode == LOAD_RECOVER) {
      timers_rearm(e);
      table_outs_trim(e);
      LOG_INFO("recovered %zu sagas of %zu assigned partitions", L->loaded,
               L->nparts);
      if (status != 0) {
        LOG_ERROR("could not recover the sagas of assigned partitions: %s",
                  e->cfg.store.last_error(e->cfg.store.self));
        if (!e->stopping && e->cfg.on_fatal)
          e->cfg.on_fatal(e->cfg.fatal_arg,
                          "could not recover the assigned partitions");
      }
    } else {
      SLOG_DEBUG(L->want, NULL, "read back from the store: %zu", L->loaded);
      if (status != 0) {
        SLOG_WARN(L->want, NULL, "could not read the saga back: %s",
                  e->cfg.store.last_error(e->cfg.store.self));
        if (L->reload && !L->revoked && !e->stopping)
          load_note_reload(e, L->want, L->partition);
      }
    }
  }
  if (L->waiter) {
    L->waiter->loaded =
        status == 0 && L->mode != LOAD_OUTPUTS ? (uint8_t)L->mode : 0;
    L->waiter->load = NULL;
    L->waiter = NULL;
  }
  int failed = status != 0 && L->mode != LOAD_RECOVER;
  load_req_free(L);
  if (failed && !e->stopping && !e->in_flight && e->retry_wait == RETRY_NONE)
    batch_schedule_retry(e); /* the store is unreadable: inputs wait */
  else
    eng_pump(e);
}

int load_start(sagad_engine_t *e, const char *id, int32_t partition,
               load_mode_t mode, input_t *waiter, bool reload) {
  load_req_t *L = load_req_new(e, mode);
  if (!L) {
    SLOG_WARN(id, NULL, "could not read the saga back: out of memory");
    return -1;
  }
  snprintf(L->want, sizeof L->want, "%s", id);
  L->partition = partition;
  L->reload = reload;
  if (e->cfg.store.load_saga(e->cfg.store.self, id, partition, loader_record,
                             load_done, L) != 0) {
    SLOG_WARN(id, NULL, "could not read the saga back: %s",
              e->cfg.store.last_error(e->cfg.store.self));
    load_req_free(L);
    return -1;
  }
  if (waiter) {
    L->waiter = waiter;
    waiter->load = L;
  }
  load_link(e, L);
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
   * 354186, now pinned as 295: revoked, assigned back before its slow
   * batch landed). */
  for (size_t b = 0; b < e->nbuckets; b++)
    for (entry_t *en = e->buckets[b]; en; en = en->hnext)
      if (en->revoked && part_in(en->partition, parts, n)) {
        en->revoked = 0;
        SLOG_DEBUG(ENTRY_SAGA(en)->id, NULL,
                   "assigned back while its batch is in flight: kept");
      }
  load_req_t *L = load_req_new(e, LOAD_RECOVER);
  if (L) {
    L->parts = malloc(n * sizeof *L->parts);
    L->parts_revoked = calloc(n, 1);
  }
  if (!L || !L->parts || !L->parts_revoked) {
    LOG_ERROR("out of memory recovering the sagas of assigned partitions");
    load_req_free(L);
    return -1;
  }
  memcpy(L->parts, parts, n * sizeof *parts);
  L->nparts = n;
  if (e->cfg.store.load_partitions(e->cfg.store.self, parts, n, loader_record,
                                   load_done, L) != 0) {
    LOG_ERROR("could not recover the sagas of assigned partitions: %s",
              e->cfg.store.last_error(e->cfg.store.self));
    load_req_free(L);
    return -1;
  }
  load_link(e, L);
  return 0;
}

void load_revoke(sagad_engine_t *e, const int32_t *parts, size_t n) {
  for (load_req_t *L = e->loads; L; L = L->next) {
    if (L->mode != LOAD_RECOVER) {
      if (part_in(L->partition, parts, n))
        L->revoked = true;
      continue;
    }
    for (size_t i = 0; i < L->nparts; i++)
      if (part_in(L->parts[i], parts, n))
        L->parts_revoked[i] = 1;
  }
}

void load_forget_waiter(input_t *in) {
  if (in->load)
    in->load->waiter = NULL;
  in->load = NULL;
}

void load_free_all(sagad_engine_t *e) {
  /* Only after the ports have closed: no load calls back any more. */
  for (load_req_t *L = e->loads, *n; L; L = n) {
    n = L->next;
    if (L->cur)
      table_discard(e, L->cur);
    load_req_free(L);
  }
  e->loads = NULL;
  e->nloads = 0;
}
