/* The coordinator engine's core (see engine.h, engine_internal.h for its
 * other files, and docs/internals/engine.md): every input through the
 * pure machine (sm_step), the entry points the ports call, and the
 * engine's life cycle. Order is everything here: an input is stepped
 * through the machine, its transition joins the turn's batch (batch.c),
 * and only when the store says the batch is durable are its effects
 * performed (effects.c) and its input acknowledged (design.md invariants
 * 1 and 2). One batch is in flight at a time; inputs that arrive
 * meanwhile wait in the queue and are stepped as soon as it lands, so
 * they join the next batch. Must not do I/O except through the ports. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "engine_internal.h"
#include "log_sink.h"

/* ---- the input queue ------------------------------------------------ */

input_t *eng_input_new(const char *id) {
  size_t n = strlen(id) + 1;
  input_t *in = calloc(1, sizeof *in + n);
  if (in)
    memcpy(in->id, id, n);
  return in;
}

void eng_input_free(input_t *in) {
  if (!in)
    return;
  load_forget_waiter(in);
  sagad_msg_free(&in->msg);
  free(in);
}

void eng_input_done(sagad_engine_t *e, input_t *in) {
  if (in->ack)
    e->cfg.broker.ack(e->cfg.broker.self, in->ack);
  eng_input_free(in);
}

void eng_request_turn(sagad_engine_t *e) {
  e->cfg.clock.end_of_turn(e->cfg.clock.self);
}

/* ---- stepping inputs ------------------------------------------------ */

static void count_events(sagad_engine_t *e, const sm_t *s) {
  for (size_t i = 0; i < e->out.n_events; i++) {
    const sm_event_t *ev = &e->out.events[i];
    switch (ev->type) {
    case SM_EV_STARTED:
      e->c.started++;
      SLOG_INFO(s->id, NULL, "started %s v%u", s->def->name,
                (unsigned)s->def->version);
      break;
    case SM_EV_COMPLETED:
      e->c.completed++;
      SLOG_INFO(s->id, NULL, "completed");
      break;
    case SM_EV_COMPENSATING:
      SLOG_INFO(s->id, step_name(s, ev->step), "compensating");
      break;
    case SM_EV_COMPENSATED:
      e->c.compensated++;
      SLOG_INFO(s->id, NULL, "compensated");
      break;
    case SM_EV_PARKED:
      e->c.compensation_failed++;
      SLOG_WARN(s->id, step_name(s, ev->step),
                "compensation failed: parked for an operator");
      break;
    default:
      break;
    }
  }
}

/* A transition that records an output or completes the saga needs the
 * saga's outputs in memory. */
static bool flow_needs_outputs(const sm_output_t *out) {
  for (size_t i = 0; i < out->n_events; i++)
    if ((out->events[i].type == SM_EV_SUCCEEDED &&
         out->events[i].action == SM_DO) ||
        out->events[i].type == SM_EV_COMPLETED)
      return true;
  return false;
}

/* A transition that completes the saga records the saga's output (the
 * definition's "output" mapping) in its Completed event, so every reader
 * of the history sees it; *output (*output_len bytes) owns the bytes. The
 * final notification carries the same bytes: they go to its effect
 * (batch_add_fx), built once. */
static int saga_output(entry_t *en, sm_output_t *out, uint8_t **output,
                       size_t *output_len) {
  const sm_t *s = ENTRY_SAGA(en);
  *output = NULL;
  *output_len = 0;
  for (size_t i = 0; s->def->output_map && i < out->n_events; i++)
    if (out->events[i].type == SM_EV_COMPLETED) {
      saga_flow_value_t outs[SAGA_DEF_MAX_STEPS];
      table_flow_values(en, outs);
      if (saga_flow_saga_output(s->def, entry_input(en), en->input_len, outs,
                                output, output_len) != 0)
        return -1;
      out->events[i].payload = *output;
      out->events[i].payload_len = *output_len;
    }
  return 0;
}

static int is_cancel(const input_t *in) {
  return in->kind == IN_MSG && in->msg.kind == SAGAD_MSG_OPERATOR &&
         in->msg.op == SM_IN_CANCEL;
}

/* A CancelSaga that changed nothing: a CANCEL_REFUSED notification says
 * why (sm_cancel_refusal; s NULL: the saga was never started), so
 * whoever waits on the cancel (sagactl cancel --wait, saga_starter_await)
 * gets an answer. Nothing was decided, so nothing waits for the store. */
static void cancel_refused(sagad_engine_t *e, const char *id, const sm_t *s,
                           const char *corr, int64_t now) {
  char why[256];
  sagad_notification_t n = {
      .saga_id = id,
      .saga_type = s ? s->def->name : "",
      .def_version = s ? s->def->version : 0,
      .kind = SM_NOTIFY_CANCEL_REFUSED,
      .reason = s ? sm_cancel_refusal(s, why, sizeof why) : "no such saga",
      .at_ms = now,
      .correlation_id = corr,
  };
  SLOG_INFO(id, NULL, "cancel refused: %s", n.reason);
  if (e->notify)
    fx_produce_notification(e, e->notify, &n, NULL);
}

/* What became of an input step_input was given. */
typedef enum {
  STEP_DONE = 0,  /* stepped (or ignored): on the done list, or freed */
  STEP_RETRY = 1, /* must wait (out of memory, or a load could not start):
                     stepped again after a backoff */
  STEP_WAIT = 2   /* waits for the load it started (load.c): stepped again
                     when the load has ended */
} step_t;

/* Does the transition in out need the saga's outputs in memory: a command
 * to build (from the input and the outputs), an output to record, the
 * saga's output to make? */
static bool needs_outputs(const sm_output_t *out) {
  if (flow_needs_outputs(out))
    return true;
  for (size_t i = 0; i < out->n_effects; i++)
    if (out->effects[i].type == SM_FX_SEND)
      return true;
  return false;
}

/* saga_codec_encode_into's place: a batch record of len bytes, in *arg. */
static uint8_t *brec_place(void *arg, size_t len) {
  brec_t **r = arg;
  *r = malloc(sizeof **r + len);
  return *r ? (*r)->data : NULL;
}

/* Step one input; the transition joins the batch. */
static step_t step_input(sagad_engine_t *e, input_t *in, int64_t now) {
  entry_t *en = table_lookup(e, in->id);
  sm_input_t si = {0};
#ifdef SAGA_SIM_BREAK_ACK_BEFORE_APPEND /* test-only bug that tests/sim catches */
  if (in->kind == IN_MSG && in->msg.kind != SAGAD_MSG_START && in->ack) {
    e->cfg.broker.ack(e->cfg.broker.self, in->ack);
    in->ack = NULL;
  }
#endif
  if (in->kind == IN_TIMER) {
    if (!en) { /* saga finished or moved away: the timer is stale */
      eng_input_free(in);
      return STEP_DONE;
    }
    si = in->timer;
  } else if (in->msg.kind == SAGAD_MSG_START) {
    if (!en) {
      const saga_def_t *def = saga_registry_find(
          e->cfg.registry, in->msg.saga_type, in->msg.def_version);
      en = def ? table_add(e, in->id, def, in->partition, in->msg.payload,
                           in->msg.payload_len, in->msg.correlation_id)
               : NULL;
      if (!en) {
        LOG_ERROR("out of memory starting saga %s", in->id);
        return STEP_RETRY;
      }
    }
    si.type = SM_IN_START;
    si.payload = in->msg.payload;
    si.payload_len = in->msg.payload_len;
    si.correlation_id = entry_corr(en); /* kept in Started: survives
                                           recovery */
  } else {
    if (!en && !in->loaded) {
      /* Read it back (resumed: a saga of ours not in memory lost its
       * timers), then step the input again; none there: unknown. */
      int rc = load_start(e, in->id, in->partition, LOAD_READ_BACK, in, false);
      return rc == 0 ? STEP_WAIT : STEP_RETRY;
    }
    if (in->msg.kind == SAGAD_MSG_REPLY) {
      si.type = SM_IN_REPLY;
      si.step =
          en ? saga_def_step_index(ENTRY_SAGA(en)->def, in->msg.step) : -1;
      si.action = (uint8_t)in->msg.action;
      si.attempt = in->msg.attempt;
      si.outcome = (uint8_t)in->msg.outcome;
      si.payload = in->msg.payload;
      si.payload_len = in->msg.payload_len;
      si.reason = in->msg.reason;
    } else {
      /* Who and why go into the transition's event (the history). */
      si.type = (uint8_t)in->msg.op;
      si.reason = in->msg.reason && *in->msg.reason ? in->msg.reason : NULL;
      si.who = in->msg.who && *in->msg.who ? in->msg.who : NULL;
      if (en)
        SLOG_INFO(in->id, NULL, "operator %s asks %s: %s",
                  in->msg.who ? in->msg.who : "",
                  in->msg.op == SM_IN_CANCEL           ? "cancel"
                  : in->msg.op == SM_IN_OPERATOR_RETRY ? "retry"
                                                       : "resolve",
                  in->msg.reason ? in->msg.reason : "");
    }
    if (!en) {
      e->c.anomalies[SM_V_UNKNOWN_SAGA]++;
      SLOG_DEBUG(in->id, NULL, "input for an unknown saga ignored");
      if (is_cancel(in))
        cancel_refused(e, in->id, NULL, NULL, now);
      q_push(&e->done, in);
      return STEP_DONE;
    }
  }
  sm_t *s = ENTRY_SAGA(en);
  /* A saga whose outputs the cache dropped steps on a copy first: when
   * the transition needs them (needs_outputs), the saga and the retry
   * jitter are put back as they were and the outputs read back before the
   * input is stepped again, so a store that cannot be read leaves the
   * input waiting and nothing half done. */
  sm_t *before = NULL;
  sm_rng_t rng_before = e->rng;
  if (table_outs_ready(en) != 0) {
    before = malloc(sm_bytes(s));
    if (!before)
      return STEP_RETRY;
    sm_copy(before, s);
  }
  if (sm_step(s, &si, now, &e->rng, &e->out) != 0) {
    free(before);
    SLOG_ERROR(s->id, NULL, "the machine refused an input");
    q_push(&e->done, in);
    return STEP_DONE;
  }
  if (before) {
    bool need = needs_outputs(&e->out);
    if (need) {
      sm_copy(s, before);
      e->rng = rng_before;
    }
    free(before);
    if (need) {
      int rc = load_start(e, s->id, en->partition, LOAD_OUTPUTS, in, false);
      return rc == 0 ? STEP_WAIT : STEP_RETRY;
    }
  }
  if (in->kind == IN_MSG && !en->in_batch &&
      in->loaded != LOAD_READ_BACK_UNACTED &&
      (e->out.verdict == SM_V_UNEXPECTED || e->out.verdict == SM_V_REJECTED)) {
    /* The input names an attempt or a state this saga never reached here:
     * another owner may have advanced it (a fenced owner appends until it
     * learns of the revoke). Judge it against the store before acking it,
     * or a reply that store would take is lost (found by tests/sim, seed
     * 243). Nothing of ours is pending, so a read-back loses nothing; the
     * input is stepped again on what the store holds. */
    int32_t part = en->partition;
    SLOG_DEBUG(in->id, in->msg.step, "input %s here: reading the saga back",
               sm_verdict_name((sm_verdict_t)e->out.verdict));
    table_remove(e, en);
    int rc = load_start(e, in->id, part, LOAD_READ_BACK_UNACTED, in, false);
    return rc == 0 ? STEP_WAIT : STEP_RETRY;
  }
  uint8_t *output = NULL; /* the saga's output, when it completes */
  size_t output_len = 0;
  if (e->out.verdict != SM_V_APPLIED) {
    e->c.anomalies[e->out.verdict]++;
    if (in->kind != IN_TIMER)
      SLOG_DEBUG(s->id, in->msg.step, "input ignored: %s",
                 sm_verdict_name((sm_verdict_t)e->out.verdict));
    /* A second cancel waits on the first one's outcome; any other cancel
     * that changed nothing is answered. */
    if (is_cancel(in) && e->out.verdict != SM_V_DUPLICATE)
      cancel_refused(e, in->id, s, entry_corr(en), now);
  } else {
    /* The outputs are in memory (read back above; a read-back for an
     * unexpected reply rebuilt them), so this fails only out of memory. */
    int flow_ok =
        (!flow_needs_outputs(&e->out) || !en->outs_gone) &&
        table_note_outputs(e, en, e->out.events, e->out.n_events) == 0 &&
        saga_output(en, &e->out, &output, &output_len) == 0 &&
        table_note_cancel(en, e->out.events, e->out.n_events) == 0;
    brec_t *r = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    if (!flow_ok ||
        saga_codec_encode_into(e->out.events, e->out.n_events, now,
                               brec_place, &r, &data, &len) != 0 ||
        batch_add_stream(e, en) != 0) {
      /* Cannot record the decision: forget it, the input comes back. */
      free(r);
      free(output);
      SLOG_ERROR(s->id, NULL, "could not encode a transition: reloading");
      load_note_reload(e, s->id, en->partition);
      table_remove(e, en);
      return STEP_RETRY;
    }
    r->next = NULL;
    r->type = saga_codec_record_type(e->out.events, e->out.n_events);
    r->traceparent[0] = '\0';
    if (in->kind == IN_MSG)
      memcpy(r->traceparent, in->msg.traceparent, sizeof r->traceparent);
    r->len = len;
    if (en->rec_tail)
      en->rec_tail->next = r;
    else
      en->rec_head = r;
    en->rec_tail = r;
    en->nrec++;
    e->nrecords++;
    count_events(e, s);
    if (e->hooks.on_events)
      e->hooks.on_events(
          e->hooks.arg, &en->obs, s, e->out.events, e->out.n_events, now,
          in->kind == IN_MSG && in->msg.traceparent[0] ? in->msg.traceparent
                                                       : NULL);
  }
  for (size_t i = 0; i < e->out.n_effects; i++) {
    const sm_effect_t *fx = &e->out.effects[i];
    /* the saga's output goes to its COMPLETED notification */
    bool final = fx->type == SM_FX_NOTIFY && fx->notify == SM_NOTIFY_COMPLETED;
    if (batch_add_fx(e, en, fx,
                     in->kind == IN_MSG && in->msg.kind == SAGAD_MSG_REPLY
                         ? in->received_us
                         : 0,
                     final ? output : NULL, final ? output_len : 0) != 0)
      LOG_ERROR("out of memory queueing an effect of saga %s", s->id);
    if (final)
      output = NULL;
  }
  free(output); /* no COMPLETED notification took it */
  q_push(&e->done, in);
  /* A finished saga read back only to judge this input need not stay; it
   * goes when the batch settles (later inputs of this turn may need it). */
  if (!en->in_batch && sm_is_terminal(s))
    batch_note_evict(e, s->id);
  return STEP_DONE;
}

static void maybe_stopped(sagad_engine_t *e) {
  if (e->stopping && e->stop_done && !e->in_flight &&
      e->retry_wait == RETRY_NONE && !e->pending.head && !e->nstreams) {
    void (*cb)(void *) = e->stop_done;
    e->stop_done = NULL;
    e->drained = true;
    cb(e->stop_arg);
  }
}

/* The engine is idle (no input queued, no batch). After a backlog -- more
 * inputs queued than a batch takes, BACKLOG_TRIM of them stepped before it
 * was worked off (a burst of starts, a recovery's replies) -- the memory
 * the queued inputs held is free but stays resident, in holes between the
 * sagas allocated meanwhile: it is handed back to the system by the
 * configured trim_heap (sagad's: jemalloc purges every arena,
 * daemon/allocator.c), else by glibc's malloc_trim, which releases the
 * free pages of every arena, those the broker's threads freed too. An
 * engine under steady load steps what arrived during the batch before in
 * one batch: no backlog, no trim. */
#define BACKLOG_TRIM 4096
static void backlog_over(sagad_engine_t *e) {
  if (e->backlog_stepped >= BACKLOG_TRIM) {
    if (e->cfg.trim_heap)
      e->cfg.trim_heap();
#ifdef __GLIBC__
    else
      malloc_trim(0);
#endif
  }
  e->backlog_stepped = 0;
}

void eng_pump(sagad_engine_t *e) {
  if (e->in_flight || e->retry_wait != RETRY_NONE) {
    maybe_stopped(e);
    return;
  }
  if (e->stopping)
    e->nreload = 0; /* the next owner recovers them */
  if (e->nreload && load_reload_noted(e)) {
    batch_schedule_retry(e); /* the store is unreadable: inputs wait too */
    return;
  }
  if (e->nloads) {
    /* Inputs wait for the pending loads (load.c), in order: each one's
     * end pumps again. */
    maybe_stopped(e);
    return;
  }
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  size_t max = e->cfg.batch_max_events;
  input_t *in;
  step_t waiting = STEP_DONE;
  size_t stepped = 0;
  while (e->nrecords < max && (in = q_pop(&e->pending))) {
    stepped++;
    step_t st = step_input(e, in, now);
    if (st == STEP_RETRY)
      in->loaded = 0; /* its saga may have left memory: read it anew */
    if (st != STEP_DONE) {
      /* Put it back at the head: stepped again after a backoff, or when
       * the load it waits for has ended. */
      in->next = e->pending.head;
      e->pending.head = in;
      if (!e->pending.tail)
        e->pending.tail = in;
      waiting = st;
      break;
    }
  }
  if (e->nstreams) {
    if (batch_start(e) != 0) {
      LOG_ERROR("could not build the append batch: %s",
                e->cfg.store.last_error(e->cfg.store.self));
      batch_schedule_retry(e);
    }
  } else {
    batch_settle(e); /* nothing to append: effects (re-armed timers), acks */
    if (waiting == STEP_RETRY)
      batch_schedule_retry(e);
  }
  if (!e->in_flight && e->retry_wait == RETRY_NONE && !e->nloads &&
      e->pending.head)
    eng_request_turn(e); /* batch.max_events reached with input left */
  if (e->pending.head)
    e->backlog_stepped += stepped;
  else if (!e->in_flight && !e->nstreams)
    backlog_over(e);
  maybe_stopped(e);
}

/* ---- entry points --------------------------------------------------- */

static void rejected_delivered(void *arg, int status) {
  sagad_engine_t *e = arg;
  if (status == SAGAD_DELIVERY_OK)
    return;
  e->c.produce_errors++;
  LOG_ERROR("a REJECTED notification was not delivered to %s: %s", e->notify,
            sagad_delivery_text(status));
}

/* Tell the starter that its StartSaga is refused (docs/protocol.md: a
 * REJECTED notification carrying its correlation-id), as well as
 * dead-lettering it: an unknown saga type or version, an input no command
 * can carry. */
static void reject(sagad_engine_t *e, const sagad_msg_t *msg,
                   const char *reason) {
  if (!e->notify)
    return;
  sagad_notification_t n = {
      .saga_id = msg->saga_id,
      .saga_type = msg->saga_type,
      .def_version = msg->def_version,
      .kind = SM_NOTIFY_REJECTED,
      .reason = reason,
      .at_ms = e->cfg.clock.now_ms(e->cfg.clock.self),
      .correlation_id = msg->correlation_id,
  };
  SLOG_WARN(msg->saga_id, NULL, "start refused: %s", reason);
  fx_produce_notification(e, e->notify, &n, rejected_delivered);
}

void sagad_engine_on_message(sagad_engine_t *e, const sagad_inmsg_t *m) {
  if (e->stopping)
    return; /* not acked: redelivered to whoever runs next */
  e->c.inputs++;
  sagad_msg_t msg;
  char err[512];
  const char *why = "invalid";
  int rc = sagad_msg_decode(m->value, m->value_len, &m->hdrs,
                            e->cfg.payload_max_bytes, &msg, err, sizeof err);
  if (rc == SAGAD_MSG_NOMEM) {
    LOG_ERROR("out of memory taking an input");
    return;
  }
  if (rc != 0) {
    dlq_write(e, m, err, "undecodable");
    return;
  }
  input_t *in = eng_input_new(msg.saga_id);
  if (!in) {
    sagad_msg_free(&msg);
    LOG_ERROR("out of memory taking an input");
    return;
  }
  in->msg = msg;
  if (in->msg.kind == SAGAD_MSG_START &&
      !saga_registry_find(e->cfg.registry, in->msg.saga_type,
                          in->msg.def_version)) {
    if (in->msg.def_version &&
        saga_registry_find(e->cfg.registry, in->msg.saga_type, 0))
      snprintf(err, sizeof err,
               "saga type \"%s\" has no definition version %u loaded",
               in->msg.saga_type, (unsigned)in->msg.def_version);
    else
      snprintf(err, sizeof err, "unknown saga type \"%s\"%s", in->msg.saga_type,
               in->msg.def_version ? " (no version of it is loaded)" : "");
    why = "unknown_type";
    reject(e, &in->msg, err);
    goto dlq;
  }
  if (in->msg.kind == SAGAD_MSG_START && in->msg.payload_len > e->input_max) {
    snprintf(err, sizeof err,
             "input of %zu bytes: its commands could never be sent (a "
             "command carries the input plus up to %d bytes, "
             "kafka.message.max.bytes is %zu): inputs up to %zu bytes are "
             "taken",
             in->msg.payload_len, SAGAD_COMMAND_ENVELOPE,
             e->cfg.produce_max_bytes, e->input_max);
    why = "input_too_large";
    reject(e, &in->msg, err);
    goto dlq;
  }
  in->kind = IN_MSG;
  in->partition = m->partition;
  in->ack = m->ack;
  in->received_us = m->received_us;
  q_push(&e->pending, in);
  eng_request_turn(e);
  return;
dlq:
  eng_input_free(in);
  dlq_write(e, m, err, why);
}

void sagad_engine_on_delivery(sagad_engine_t *e, void *token, int status,
                              int persisted) {
  if (!token)
    return;
  dlq_token_t *t = token;
  /* sent again: commands and final notifications (ports.h) */
  if (status == SAGAD_DELIVERY_UNCONFIRMED && !t->cmd && !t->ob)
    status = SAGAD_DELIVERY_OK;
  if (t->dl) {
    dletter_t *dl = t->dl;
    free(t);
    dlq_delivered(e, dl, status);
    return;
  }
  if (t->ob) {
    outbox_t *ob = t->ob;
    free(t);
    fx_outbox_delivered(e, ob, status, persisted);
    return;
  }
  if (t->cmd) {
    cmd_sent_t *c = t->cmd;
    free(t);
    fx_command_delivered(e, c, status, persisted);
    return;
  }
  if (t->done) {
    t->done(t->arg, status);
    free(t);
    return;
  }
  if (status != SAGAD_DELIVERY_OK)
    LOG_ERROR("dead letter not delivered to %s: %s", e->dlq,
              sagad_delivery_text(status));
  e->cfg.broker.ack(e->cfg.broker.self, t->ack);
  free(t);
}

void sagad_engine_on_revoke(sagad_engine_t *e, const int32_t *parts, size_t n) {
  e->nparts = e->nparts > n ? e->nparts - n : 0;
  load_revoke(e, parts, n); /* pending loads skip their sagas */
  /* Queued inputs of those partitions belong to the next owner now. */
  queue_t keep = {0};
  input_t *in;
  while ((in = q_pop(&e->pending))) {
    int32_t p = in->partition;
    if (in->kind == IN_TIMER) {
      entry_t *en = table_lookup(e, in->id);
      p = en ? en->partition : -1;
    }
    if (part_in(p, parts, n)) {
      /* released, not acked: kafka_loop still commits acks made during
       * the revoke, and this input is not durable; the next owner reads
       * it again (found by tests/sim, seed 13) */
      if (in->ack && e->cfg.broker.release)
        e->cfg.broker.release(e->cfg.broker.self, in->ack);
      eng_input_free(in);
    } else
      q_push(&keep, in);
  }
  e->pending = keep;
  size_t kept = 0;
  for (size_t i = 0; i < e->nreload; i++)
    if (!part_in(e->reload[i].partition, parts, n))
      e->reload[kept++] = e->reload[i];
  e->nreload = kept;
  size_t dropped = 0;
  for (size_t b = 0; b < e->nbuckets; b++) {
    entry_t *en = e->buckets[b];
    while (en) {
      entry_t *next = en->hnext;
      if (part_in(en->partition, parts, n)) {
        dropped++;
        if (en->in_batch)
          en->revoked = 1; /* freed once its batch settles */
        else
          table_remove(e, en);
      }
      en = next;
    }
  }
  LOG_INFO("released %zu sagas of %zu revoked partitions", dropped, n);
}

void sagad_engine_on_wake(sagad_engine_t *e, int slot) {
  if (slot == SAGAD_WAKE_RETRY) {
    int resubmit = e->retry_wait == RETRY_RESUBMIT;
    e->retry_wait = RETRY_NONE;
    if (resubmit) {
      batch_resubmit(e);
      return;
    }
    eng_pump(e);
    return;
  }
  timers_fire_due(e, e->cfg.clock.now_ms(e->cfg.clock.self));
  eng_pump(e);
}

void sagad_engine_on_turn_end(sagad_engine_t *e) { eng_pump(e); }

void sagad_engine_stop(sagad_engine_t *e, void (*done)(void *), void *arg) {
  e->stopping = true;
  e->stop_done = done;
  e->stop_arg = arg;
  eng_pump(e);
}

void sagad_engine_flush_marks(sagad_engine_t *e, void (*done)(void *),
                              void *arg) {
  if (!e->nmarks || e->in_flight || !e->cfg.store.batch_notified ||
      batch_submit_marks(e) != 0) {
    done(arg);
    return;
  }
  e->marks_done = done;
  e->marks_arg = arg;
}

/* ---- life cycle ----------------------------------------------------- */

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

/* The copy of a set topic (src neither NULL nor "") failed. */
static bool copy_lost(const char *copy, const char *src) {
  return !copy && src && *src;
}

sagad_engine_t *sagad_engine_new(const sagad_engine_config_t *cfg) {
  sagad_engine_t *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  e->cfg = *cfg;
  if (!e->cfg.batch_max_events)
    e->cfg.batch_max_events = 1024;
  if (!e->cfg.payload_max_bytes)
    e->cfg.payload_max_bytes = (size_t)1 << 20;
  if (!e->cfg.produce_max_bytes)
    e->cfg.produce_max_bytes = 1000000;
  e->outs_max =
      e->cfg.output_cache_bytes ? e->cfg.output_cache_bytes : (size_t)256 << 20;
  e->input_max = e->cfg.payload_max_bytes;
  size_t room = e->cfg.produce_max_bytes > SAGAD_COMMAND_ENVELOPE
                    ? e->cfg.produce_max_bytes - SAGAD_COMMAND_ENVELOPE
                    : 0;
  if (room < e->input_max) {
    e->input_max = room;
    LOG_WARN("kafka.message.max.bytes is %zu: a command carries the saga "
             "input plus up to %d bytes, so StartSaga inputs above %zu bytes "
             "are refused (payload.max_bytes is %zu); raise "
             "kafka.message.max.bytes, and the brokers' and topics' limits, "
             "to take inputs up to the ceiling",
             e->cfg.produce_max_bytes, SAGAD_COMMAND_ENVELOPE, room,
             e->cfg.payload_max_bytes);
  }
  e->rng.state = cfg->rng_seed;
  e->inbox = dup_or_null(cfg->inbox_topic);
  e->notify = dup_or_null(cfg->notify_topic);
  e->progress = dup_or_null(cfg->progress_topic);
  e->dlq = dup_or_null(cfg->dlq_topic);
  if (table_init(e) != 0 || !e->inbox || !e->dlq ||
      copy_lost(e->notify, cfg->notify_topic) ||
      copy_lost(e->progress, cfg->progress_topic)) {
    sagad_engine_free(e);
    return NULL;
  }
  return e;
}

void sagad_engine_free(sagad_engine_t *e) {
  if (!e)
    return;
  input_t *in;
  while ((in = q_pop(&e->pending)))
    eng_input_free(in);
  while ((in = q_pop(&e->done)))
    eng_input_free(in);
  load_free_all(e);
  table_free_all(e);
  timers_free(e);
  free(e->streams);
  for (size_t i = 0; i < e->nfx; i++)
    free(e->fx[i].output);
  free(e->fx);
  free(e->evict);
  free(e->reload);
  free(e->marks);
  for (outbox_t *ob = e->ob_retry, *n; ob; ob = n) {
    n = ob->next;
    fx_outbox_free(ob);
  }
  for (dletter_t *dl = e->dl_retry, *n; dl; dl = n) {
    n = dl->next;
    dlq_free(dl);
  }
  fx_command_free_list(e->cmd_retry);
  saga_record_clear(&e->rec);
  free(e->inbox);
  free(e->notify);
  free(e->progress);
  free(e->dlq);
  free(e);
}

const sagad_counters_t *sagad_engine_counters(const sagad_engine_t *e) {
  return &e->c;
}

size_t sagad_engine_sagas(const sagad_engine_t *e) { return e->nsagas; }

void sagad_engine_set_hooks(sagad_engine_t *e, const sagad_engine_hooks_t *h) {
  if (h)
    e->hooks = *h;
  else
    memset(&e->hooks, 0, sizeof e->hooks);
}

void sagad_engine_foreach(sagad_engine_t *e,
                          void (*fn)(void *arg, const sm_t *s,
                                     int32_t partition, void **obs),
                          void *arg) {
  for (size_t b = 0; b < e->nbuckets; b++)
    for (entry_t *en = e->buckets[b]; en; en = en->hnext)
      fn(arg, ENTRY_SAGA(en), en->partition, &en->obs);
}

const sm_t *sagad_engine_find(const sagad_engine_t *e, const char *id) {
  entry_t *en = table_lookup(e, id);
  return en ? ENTRY_SAGA(en) : NULL;
}

int sagad_engine_produce(sagad_engine_t *e, const char *topic, const void *key,
                         size_t key_len, const void *value, size_t value_len,
                         const saga__hdrs_t *hdrs,
                         void (*done)(void *arg, int status), void *arg) {
  dlq_token_t *t = calloc(1, sizeof *t);
  if (!t)
    return -1;
  t->done = done;
  t->arg = arg;
  if (e->cfg.broker.produce(e->cfg.broker.self, topic, key, key_len, value,
                            value_len, hdrs, t) != 0) {
    free(t);
    return -1;
  }
  return 0;
}

size_t sagad_engine_partitions(const sagad_engine_t *e) { return e->nparts; }

size_t sagad_engine_input_max(const sagad_engine_t *e) { return e->input_max; }

void sagad_engine_forget_token(void *token) {
  dlq_token_t *t = token;
  if (t) {
    fx_outbox_free(t->ob);
    if (t->dl)
      dlq_free(t->dl);
    free(t->cmd);
  }
  free(t);
}
