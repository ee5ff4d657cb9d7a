/* The engine's group commit (see engine_internal.h): the transitions
 * stepped in a turn join one store batch -- each saga's records as one
 * stream expecting its durable version, its saga_index row, the delivered
 * final notifications' marks -- submitted as one transaction, one batch
 * in flight at a time. When it settles, the effects of the streams that
 * committed are performed and their inputs acked (design.md invariants 1
 * and 2); a stream that conflicted, or whose commit's answer was lost, is
 * read back and its inputs stepped again (invariant 5); a lost connection
 * resubmits the same batch after a backoff. I/O only through the ports. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "fault_point.h"
#include "grow.h"
#include "log_sink.h"

int batch_add_stream(sagad_engine_t *e, entry_t *en) {
  if (en->in_batch)
    return 0;
  if (SAGA_GROW(e->streams, e->cstreams, e->nstreams + 1, 256) != 0)
    return -1;
  e->streams[e->nstreams++] = en;
  en->in_batch = 1;
  return 0;
}

int batch_add_fx(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx,
                 int64_t reply_us, uint8_t *output, size_t output_len) {
#ifdef SAGA_SIM_BREAK_APPEND_BEFORE_ACT /* test-only bug that tests/sim catches */
  return fx_perform(e, en, fx, e->cfg.clock.now_ms(e->cfg.clock.self), output,
                    output_len),
         0;
#endif
  if (SAGA_GROW(e->fx, e->cfx, e->nfx + 1, 256) != 0) {
    free(output);
    return -1;
  }
  e->fx[e->nfx] = (bfx_t){.en = en,
                          .fx = *fx,
                          .reply_us = reply_us,
                          .output = output,
                          .output_len = output_len};
  e->nfx++;
  return 0;
}

void batch_note_evict(sagad_engine_t *e, const char *id) {
  if (SAGA_GROW(e->evict, e->cevict, e->nevict + 1, 64) != 0)
    return; /* it stays in memory: harmless */
  memcpy(e->evict[e->nevict++], id, strlen(id) + 1);
}

/* Drop the finished sagas noted while stepping, unless they joined the
 * batch since. Runs before failed streams are read back, so those stay
 * until their inputs are stepped again. */
static void evict_noted(sagad_engine_t *e) {
  for (size_t i = 0; i < e->nevict; i++) {
    entry_t *en = table_lookup(e, e->evict[i]);
    if (en && !en->in_batch && sm_is_terminal(ENTRY_SAGA(en)))
      table_remove(e, en);
  }
  e->nevict = 0;
}

static void index_row(const sagad_engine_t *e, const sm_t *s, int32_t partition,
                      sagad_index_row_t *row) {
  row->saga_id = s->id;
  row->saga_type = s->def->name;
  row->definition_version = s->def->version;
  row->status = sm_status_name((sm_status_t)s->status);
  row->partition = partition;
  row->version = s->version;
  row->started_ms = s->started_ms;
  row->updated_ms = s->updated_ms;
  row->next_deadline_ms = sm_next_timer(s);
  row->stuck_at_ms = sm_stuck_at(s);
  int cur = sm_current_step(s);
  row->current_step = cur < 0 ? NULL : step_name(s, (unsigned)cur);
  row->notify_pending = e->notify && sm_is_terminal(s);
}

int batch_start(sagad_engine_t *e) {
  sagad_store_port_t *st = &e->cfg.store;
  st->batch_reset(st->self);
  for (size_t i = 0; i < e->nstreams; i++) {
    entry_t *en = e->streams[i];
    sagad_record_t recs[64];
    sagad_record_t *rv = en->nrec <= 64 ? recs : malloc(en->nrec * sizeof *rv);
    if (!rv)
      return -1;
    size_t k = 0;
    for (brec_t *r = en->rec_head; r; r = r->next, k++)
      rv[k] = (sagad_record_t){.type = r->type,
                               .data = r->data,
                               .len = r->len,
                               .traceparent =
                                   r->traceparent[0] ? r->traceparent : NULL};
    sagad_index_row_t row;
    index_row(e, ENTRY_SAGA(en), en->partition, &row);
    int rc = st->batch_add(st->self, ENTRY_SAGA(en)->id, en->durable, rv, k);
    if (rv != recs)
      free(rv);
    if (rc < 0 || st->batch_index(st->self, &row) < 0)
      return -1;
  }
  for (size_t i = 0; i < e->nmarks; i++)
    if (st->batch_notified && st->batch_notified(st->self, e->marks[i]) < 0)
      return -1;
  if (st->batch_submit(st->self) != 0)
    return -1;
  e->nmarks = 0; /* resubmitted with the batch after RETRY */
  e->in_flight = true;
  if (e->hooks.on_batch_submit)
    e->hooks.on_batch_submit(e->hooks.arg, e->nstreams, e->nrecords);
  return 0;
}

int batch_submit_marks(sagad_engine_t *e) {
  sagad_store_port_t *st = &e->cfg.store;
  st->batch_reset(st->self);
  for (size_t i = 0; i < e->nmarks; i++)
    if (st->batch_notified(st->self, e->marks[i]) < 0)
      return -1;
  if (st->batch_submit(st->self) != 0) {
    LOG_WARN("could not record delivered notifications: %s",
             st->last_error(st->self));
    return -1;
  }
  /* no on_batch_submit hook: the append histograms count appends */
  e->nmarks = 0; /* resubmitted with the batch after RETRY */
  e->in_flight = true;
  return 0;
}

int batch_flush_marks(sagad_engine_t *e) {
  /* a stopping engine's marks wait for sagad_engine_flush_marks, after
   * the broker's last delivery reports */
  if (!e->nmarks || e->stopping || !e->cfg.store.batch_notified)
    return 0;
  if (e->in_flight || e->retry_wait != RETRY_NONE || e->nstreams ||
      batch_submit_marks(e) != 0) {
    timers_arm_retry(e, &e->marks_armed, TMR_MARKS);
    return 1;
  }
  return 0;
}

void batch_schedule_retry(sagad_engine_t *e) {
  e->backoff_ms = e->backoff_ms ? e->backoff_ms * 2 : 50;
  if (e->backoff_ms > 2000)
    e->backoff_ms = 2000;
  e->retry_wait = RETRY_RESTEP;
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  e->cfg.clock.wake_at(e->cfg.clock.self, SAGAD_WAKE_RETRY,
                       now + e->backoff_ms);
}

/* The batch is settled: perform the effects of the streams that committed,
 * ack their inputs; streams that did not commit are dropped and read back,
 * and their inputs stepped again (design.md invariant 5). */
void batch_settle(sagad_engine_t *e) {
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  int any_failed = 0;
  for (size_t i = 0; i < e->nfx; i++) {
    if (i == e->nfx / 2 && i > 0)
      FAULT_POINT("mid_batch"); /* half of the batch's effects are out */
    uint8_t *output = e->fx[i].output; /* taken by fx_perform */
    e->fx[i].output = NULL;
    if (e->fx[i].en->failed != STREAM_OK) {
      free(output);
      continue;
    }
    if (fx_perform(e, e->fx[i].en, &e->fx[i].fx, now, output,
                   e->fx[i].output_len) &&
        e->fx[i].reply_us && e->hooks.on_reply_command)
      e->hooks.on_reply_command(e->hooks.arg, e->fx[i].reply_us);
  }
  if (e->nfx)
    FAULT_POINT("after_produce_before_ack"); /* inputs not yet acked */
  e->nfx = 0;
  timers_rearm(e);
  /* Inputs of failed sagas go back to the front of the queue, in order. */
  queue_t again = {0};
  input_t *in;
  while ((in = q_pop(&e->done))) {
    entry_t *en = table_lookup(e, in->id);
    if (en && en->failed != STREAM_OK) {
      in->loaded = 0; /* its saga is read back anew */
      q_push(&again, in);
    } else
      eng_input_done(e, in);
  }
  if (again.head) {
    again.tail->next = e->pending.head;
    if (!e->pending.head)
      e->pending.tail = again.tail;
    e->pending.head = again.head;
  }
  evict_noted(e);
  for (size_t i = 0; i < e->nstreams; i++) {
    entry_t *en = e->streams[i];
    if (en->failed != STREAM_OK) {
      char id[SM_ID_MAX + 1];
      int32_t part = en->partition;
      int stale = en->failed == STREAM_STALE;
      memcpy(id, ENTRY_SAGA(en)->id, strlen(ENTRY_SAGA(en)->id) + 1);
      table_remove(e, en);
      /* Read back (its inputs wait for the load), resumed, kept even if
       * terminal, with its final notification sent: the store may hold
       * transitions whose effects no one performed -- our own commit
       * whose answer was lost, or a fenced owner's (found by tests/sim,
       * seeds 16 and 401). A read-back that fails is noted for another
       * (load_note_reload) and backs off. */
      int failed =
          load_start(e, id, part, LOAD_READ_BACK_UNACTED, NULL, true) != 0;
      if (failed)
        load_note_reload(e, id, part);
      if (!stale || failed)
        any_failed = 1;
      continue;
    }
    table_free_records(en);
    en->in_batch = 0;
    en->durable = ENTRY_SAGA(en)->version;
    if (en->revoked || sm_is_terminal(ENTRY_SAGA(en)))
      table_remove(e, en);
  }
  e->nstreams = 0;
  e->nrecords = 0;
  table_outs_trim(e);
  if (any_failed)
    batch_schedule_retry(e); /* do not spin on a stream that keeps failing */
  else
    e->backoff_ms = 0;
}

void sagad_engine_on_batch_done(sagad_engine_t *e, int status) {
  e->in_flight = false;
  if (e->hooks.on_batch_done)
    e->hooks.on_batch_done(e->hooks.arg, status);
  if (e->marks_done) {
    /* a stopped engine's last record (sagad_engine_flush_marks): not
     * retried, the flags that stay make a recovery send those
     * notifications once more */
    void (*cb)(void *) = e->marks_done;
    e->marks_done = NULL;
    if (status != SAGAD_STORE_OK)
      LOG_WARN("could not record delivered notifications at shutdown: %s",
               e->cfg.store.last_error(e->cfg.store.self));
    cb(e->marks_arg);
    return;
  }
  if (status == SAGAD_STORE_RETRY) {
    /* Outcome unknown (connection lost): nothing is acted on; submit the
     * same batch again, a lost commit then answers DUPLICATE. */
    e->c.append_retries++;
    LOG_WARN("%s failed, retrying: %s",
             e->nstreams ? "append" : "recording delivered notifications",
             e->cfg.store.last_error(e->cfg.store.self));
    batch_schedule_retry(e);
    e->retry_wait = RETRY_RESUBMIT;
    return;
  }
  size_t ok = 0;
  for (size_t i = 0; i < e->nstreams; i++) {
    int st = e->cfg.store.batch_status(e->cfg.store.self, i);
    entry_t *en = e->streams[i];
    if (st == SAGAD_STORE_OK) {
      ok += en->nrec;
      if (e->hooks.on_durable)
        e->hooks.on_durable(e->hooks.arg, en->obs, ENTRY_SAGA(en));
      continue;
    }
    if (st == SAGAD_STORE_DUPLICATE) {
      /* Committed before, its acknowledgement lost. The stream may have
       * moved on since -- by another owner, if the partition went away
       * and came back meanwhile (tests/sim, seed 20786: the saga was kept
       * at the version of its batch and waited for ever) -- so it is read
       * back like a conflict, and resumed from what the store holds. */
      ok += en->nrec;
      if (e->hooks.on_durable) /* committed, before it is read back */
        e->hooks.on_durable(e->hooks.arg, en->obs, ENTRY_SAGA(en));
      en->failed = STREAM_STALE;
      SLOG_DEBUG(ENTRY_SAGA(en)->id, NULL,
                 "already committed (its acknowledgement was lost): "
                 "reading it back");
      continue;
    }
    en->failed = st == SAGAD_STORE_CONFLICT ? STREAM_STALE : STREAM_FAILED;
    if (st == SAGAD_STORE_CONFLICT) {
      e->c.conflicts++;
      SLOG_WARN(ENTRY_SAGA(en)->id, NULL,
                "version conflict: another owner advanced the saga, "
                "reloading it");
    } else if (st == SAGAD_STORE_FATAL) {
      SLOG_ERROR(ENTRY_SAGA(en)->id, NULL, "the store refused the append: %s",
                 e->cfg.store.last_error(e->cfg.store.self));
    }
  }
  if (ok) {
    e->c.batches++;
    e->c.records += ok;
    FAULT_POINT("after_append"); /* durable, nothing performed or acked */
  }
  batch_settle(e);
  eng_pump(e);
}

void batch_resubmit(sagad_engine_t *e) {
  if (e->cfg.store.batch_submit(e->cfg.store.self) == 0) {
    e->in_flight = true;
  } else {
    batch_schedule_retry(e);
    e->retry_wait = RETRY_RESUBMIT;
  }
}
