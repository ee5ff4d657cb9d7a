/* The engine's effects (see engine_internal.h): what a durable transition
 * makes leave the process -- commands built from the saga's input and its
 * steps' outputs (core/dataflow), timers armed, notifications -- and the
 * outbox of the final notification (COMPLETED or COMPENSATED), produced
 * until its delivery is recorded in the saga_index row (notify_pending),
 * so it is sent at least once. Only ever called for transitions the store
 * holds (design.md invariant 1). I/O only through the broker port. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "log_sink.h"
#include "wire.h"

/* The token of a command of saga s (fx: its step, action, attempt), so a
 * failed delivery sends it again (fx_command_delivered); NULL when out of
 * memory (then it is produced without one, as before: its deadline
 * decides a lost attempt). */
static dlq_token_t *command_token(const sm_t *s, const sm_effect_t *fx) {
  dlq_token_t *t = calloc(1, sizeof *t);
  size_t len = strlen(s->id) + 1;
  cmd_sent_t *c = t ? malloc(sizeof *c + len) : NULL;
  if (!c) {
    free(t);
    return NULL;
  }
  c->next = NULL;
  c->step = fx->step;
  c->action = fx->action;
  c->attempt = fx->attempt;
  memcpy(c->id, s->id, len);
  t->cmd = c;
  return t;
}

/* Returns 1 when the command was handed to the broker. */
static int send_command(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx) {
  sm_t *s = ENTRY_SAGA(en);
  const saga_step_def_t *sd = &s->def->steps[fx->step];
  const char *topic = fx->action == SM_DO ? sd->topic : sd->comp_topic;
  if (!topic)
    return 0;
  if (table_outs_ready(en) != 0) {
    /* Dropped by the cache since the step (which read them back): not
     * sent, the attempt's deadline retries it (and reads them back). */
    SLOG_WARN(s->id, sd->name,
              "the steps' outputs are not in memory: command not sent, its "
              "deadline retries it");
    e->c.produce_errors++;
    return 0;
  }
  saga_flow_value_t outs[SAGA_DEF_MAX_STEPS];
  table_flow_values(en, outs);
  uint8_t *payload = NULL;
  size_t payload_len = 0;
  if ((fx->action == SM_DO
           ? saga_flow_command(s->def, fx->step, entry_input(en), en->input_len,
                               outs, &payload, &payload_len)
           : saga_flow_compensation(s->def, fx->step, entry_input(en),
                                    en->input_len, outs, &payload,
                                    &payload_len)) != 0) {
    /* Not sent: the attempt's deadline retries it. */
    SLOG_ERROR(s->id, sd->name, "out of memory building the command");
    e->c.produce_errors++;
    return 0;
  }
  if (payload_len > e->input_max) {
    /* Its outputs grew it past what the producer takes: the step's
     * deadline decides it, like a command the broker refused. */
    SLOG_ERROR(s->id, sd->name,
               "the %s command's payload is %zu bytes with the earlier "
               "steps' outputs, above the %zu a command can carry "
               "(kafka.message.max.bytes): not sent, its deadline decides "
               "the attempt; map fewer outputs into this step (\"input\" "
               "in the definition)",
               fx->action == SM_DO ? "DO" : "COMPENSATE", payload_len,
               e->input_max);
    e->c.produce_errors++;
    free(payload);
    return 0;
  }
  sagad_command_t c = {
      .saga_id = s->id,
      .saga_type = s->def->name,
      .def_version = s->def->version,
      .step = sd->name,
      .action = (sm_action_t)fx->action,
      .action_name = fx->action == SM_DO ? sd->action : sd->comp_action,
      .attempt = fx->attempt,
      .deadline_ms = fx->at_ms,
      .payload = payload,
      .payload_len = payload_len,
      .reply_topic = e->inbox,
      .correlation_id = entry_corr(en),
  };
  char tp[SAGA_TRACEPARENT_SIZE] = "";
  if (e->hooks.on_command)
    e->hooks.on_command(e->hooks.arg, en->obs, s, fx->step, fx->action, tp);
  c.traceparent = tp[0] ? tp : NULL;
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  char err[256];
  int enc = sagad_msg_encode_command(&c, &buf, &len, &h, err, sizeof err);
  free(payload);
  if (enc != 0) {
    SLOG_ERROR(s->id, sd->name, "could not encode the command: %s", err);
    e->c.produce_errors++;
    return 0;
  }
  dlq_token_t *tok = command_token(s, fx);
  int rc = e->cfg.broker.produce(e->cfg.broker.self, topic, s->id,
                                 strlen(s->id), buf, len, &h, tok);
  saga__hdrs_free(&h);
  if (rc != 0)
    sagad_engine_forget_token(tok);
  if (rc != 0) {
    /* Not sent: the attempt's deadline retries it. */
    e->c.produce_errors++;
    SLOG_WARN(s->id, sd->name, "could not produce the command to %s", topic);
    free(buf);
    return 0;
  }
  e->c.commands_sent++;
  SLOG_DEBUG(s->id, sd->name, "sent %s attempt %u to %s",
             fx->action == SM_DO ? "DO" : "COMPENSATE", (unsigned)fx->attempt,
             topic);
  free(buf);
  return 1;
}

static void outbox_retry_later(sagad_engine_t *e, outbox_t *ob) {
  ob->next = e->ob_retry;
  e->ob_retry = ob;
  timers_arm_retry(e, &e->ob_armed, TMR_OUTBOX);
}

void fx_outbox_free(outbox_t *ob) {
  if (ob) {
    free(ob->corr);
    free(ob->output);
    free(ob->reason);
  }
  free(ob);
}

/* Produce the final notification ob describes; it is freed once its
 * delivery is recorded, and sent again when it fails. */
static void outbox_send(sagad_engine_t *e, outbox_t *ob) {
  sagad_notification_t n = {
      .saga_id = ob->id,
      .saga_type = ob->def->name,
      .def_version = ob->def->version,
      .kind = (sm_notify_t)ob->kind,
      .action = ob->kind == SM_NOTIFY_COMPLETED ? SM_DO : SM_COMPENSATE,
      .outcome = SM_OUTCOME_SUCCESS,
      .at_ms = ob->at_ms,
      .correlation_id = ob->corr,
      .payload = ob->output,
      .payload_len = ob->output_len,
      .reason = ob->reason,
  };
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  char err[256];
  if (sagad_msg_encode_notification(&n, &buf, &len, &h, err, sizeof err)) {
    SLOG_ERROR(ob->id, NULL, "could not encode the final notification: %s",
               err);
    fx_outbox_free(ob); /* cannot happen: the same fields encoded before */
    return;
  }
  dlq_token_t *t = calloc(1, sizeof *t);
  if (t) {
    t->ob = ob;
    int rc = e->cfg.broker.produce(e->cfg.broker.self, e->notify, ob->id,
                                   strlen(ob->id), buf, len, &h, t);
    if (rc == 0) {
      saga__hdrs_free(&h);
      free(buf);
      return;
    }
  }
  saga__hdrs_free(&h);
  free(t);
  free(buf);
  e->c.produce_errors++;
  SLOG_WARN(ob->id, NULL,
            "could not produce the final notification to %s: "
            "sending it again in %d ms",
            e->notify, OUTBOX_RETRY_MS);
  outbox_retry_later(e, ob);
}

/* The final notification of a terminal saga (at the time of its last
 * transition when at_ms is 0: recovery); output: the saga's output built
 * when it completed (taken), or NULL. */
void fx_send_final(sagad_engine_t *e, entry_t *en, int64_t at_ms,
                   uint8_t *output, size_t output_len) {
  const sm_t *s = ENTRY_SAGA(en);
  outbox_t *ob = calloc(1, sizeof *ob);
  if (ob && entry_corr(en) && !(ob->corr = strdup(entry_corr(en)))) {
    free(ob);
    ob = NULL;
  }
  if (!ob) {
    free(output);
    SLOG_ERROR(s->id, NULL,
               "out of memory sending the final notification: "
               "the next recovery sends it");
    return;
  }
  ob->def = s->def;
  ob->kind =
      s->status == SM_COMPLETED ? SM_NOTIFY_COMPLETED : SM_NOTIFY_COMPENSATED;
  if (ob->kind != SM_NOTIFY_COMPLETED) {
    free(output); /* a COMPENSATED notification carries none */
  } else if (output) {
    /* built when it completed: the bytes its Completed event records */
    ob->output = output;
    ob->output_len = output_len;
  } else if (ob->kind == SM_NOTIFY_COMPLETED && s->def->output_map) {
    /* The same bytes as its Completed event records (saga_output). */
    saga_flow_value_t outs[SAGA_DEF_MAX_STEPS];
    if (table_outs_ready(en) != 0) {
      fx_outbox_free(ob);
      SLOG_ERROR(s->id, NULL,
                 "the saga's output could not be built: the "
                 "next recovery sends the notification");
      return;
    }
    table_flow_values(en, outs);
    if (saga_flow_saga_output(s->def, entry_input(en), en->input_len, outs,
                              &ob->output, &ob->output_len) != 0) {
      fx_outbox_free(ob);
      SLOG_ERROR(s->id, NULL,
                 "out of memory building the saga's output: "
                 "the next recovery sends the notification");
      return;
    }
  }
  if (ob->kind == SM_NOTIFY_COMPENSATED && en->cancelled &&
      !(ob->reason = strdup(en->cancelled))) {
    fx_outbox_free(ob);
    SLOG_ERROR(s->id, NULL,
               "out of memory sending the final notification: "
               "the next recovery sends it");
    return;
  }
  ob->at_ms = at_ms ? at_ms : s->updated_ms;
  memcpy(ob->id, s->id, strlen(s->id) + 1); /* at most SM_ID_MAX */
  outbox_send(e, ob);
}

/* Its delivery is recorded by the next batch. */
static void note_notified(sagad_engine_t *e, const char *id) {
  if (e->nmarks == e->cmarks) {
    size_t n = e->cmarks ? e->cmarks * 2 : 64;
    char(*v)[SM_ID_MAX + 1] = realloc(e->marks, n * sizeof *v);
    if (!v)
      return; /* the flag stays: a recovery sends it once more */
    e->marks = v;
    e->cmarks = n;
  }
  memcpy(e->marks[e->nmarks++], id, strlen(id) + 1);
  /* the next batch takes it; an idle engine records it on its own */
  if (!e->stopping)
    timers_arm_retry(e, &e->marks_armed, TMR_MARKS);
}

/* Produce a notification that is sent once (not the final one: see
 * send_final) to topic: without a delivery report when done is NULL, else
 * done(e, status) runs on its delivery. */
void fx_produce_notification(sagad_engine_t *e, const char *topic,
                             const sagad_notification_t *n,
                             void (*done)(void *arg, int status)) {
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  char err[256];
  if (sagad_msg_encode_notification(n, &buf, &len, &h, err, sizeof err)) {
    SLOG_ERROR(n->saga_id, NULL, "could not encode a notification: %s", err);
    return;
  }
  int rc =
      done ? sagad_engine_produce(e, topic, n->saga_id, strlen(n->saga_id),
                                  buf, len, &h, done, e)
           : e->cfg.broker.produce(e->cfg.broker.self, topic, n->saga_id,
                                   strlen(n->saga_id), buf, len, &h, NULL);
  if (rc != 0) {
    e->c.produce_errors++;
    SLOG_WARN(n->saga_id, NULL, "could not produce a notification to %s",
              topic);
  }
  saga__hdrs_free(&h);
  free(buf);
}

void fx_send_notification(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx,
                          int64_t now, uint8_t *output, size_t output_len) {
  sm_t *s = ENTRY_SAGA(en);
  if (e->notify &&
      (fx->notify == SM_NOTIFY_COMPLETED ||
       fx->notify == SM_NOTIFY_COMPENSATED) &&
      sm_is_terminal(s)) {
    fx_send_final(e, en, now, output, output_len);
    return;
  }
  free(output); /* not a final notification: it carries none */
  /* STARTED and STEP_DONE are progress notes: on a topic of their own,
   * when one is configured, so that a starter awaiting outcomes reads (and
   * wakes for) one note per saga, not one per step. */
  bool progress = fx->notify == SM_NOTIFY_STARTED ||
                  fx->notify == SM_NOTIFY_STEP_DONE;
  const char *topic = progress ? e->progress : e->notify;
  if (!topic)
    return;
  sagad_notification_t n = {
      .saga_id = s->id,
      .saga_type = s->def->name,
      .def_version = s->def->version,
      .kind = (sm_notify_t)fx->notify,
      .step = fx->notify == SM_NOTIFY_STEP_DONE ||
                      fx->notify == SM_NOTIFY_COMPENSATION_FAILED
                  ? step_name(s, fx->step)
                  : NULL,
      .action = (sm_action_t)fx->action,
      .outcome = (sm_outcome_t)fx->outcome,
      .reason = fx->outcome == SM_OUTCOME_TIMEOUT ? "timeout" : NULL,
      .at_ms = now,
      .correlation_id = entry_corr(en),
  };
  fx_produce_notification(e, topic, &n, NULL);
}

/* Returns 1 when the effect was a command handed to the broker. */
int fx_perform(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx,
               int64_t now, uint8_t *output, size_t output_len) {
  if (fx->type != SM_FX_NOTIFY)
    free(output); /* only a COMPLETED notification carries one */
  switch (fx->type) {
  case SM_FX_SEND:
    return send_command(e, en, fx);
  case SM_FX_TIMER: {
    tmr_t t = {.at = fx->at_ms,
               .step = fx->step,
               .action = fx->action,
               .timer = fx->timer,
               .attempt = fx->attempt};
    timers_push(e, &t, en);
    break;
  }
  case SM_FX_NOTIFY:
    fx_send_notification(e, en, fx, now, output, output_len);
    break;
  default:
    break;
  }
  return 0;
}

void fx_outbox_delivered(sagad_engine_t *e, outbox_t *ob, int status,
                         int persisted) {
  if (status != SAGAD_DELIVERY_OK) {
    SLOG_WARN(ob->id, NULL,
              "final notification not delivered to %s (%s; %s): "
              "sending it again in %d ms",
              e->notify, sagad_delivery_text(status),
              sagad_persisted_text(persisted), OUTBOX_RETRY_MS);
    e->c.produce_errors++;
    outbox_retry_later(e, ob);
    return;
  }
  note_notified(e, ob->id);
  fx_outbox_free(ob);
}

void fx_outbox_retry(sagad_engine_t *e) {
  outbox_t *ob = e->ob_retry, *n;
  e->ob_retry = NULL;
  e->ob_armed = false;
  for (; ob; ob = n)
    n = ob->next, outbox_send(e, ob);
}

void fx_command_free_list(cmd_sent_t *c) {
  for (cmd_sent_t *n; c; c = n) {
    n = c->next;
    free(c);
  }
}

void fx_command_delivered(sagad_engine_t *e, cmd_sent_t *c, int status,
                          int persisted) {
  if (status == SAGAD_DELIVERY_OK || e->stopping) {
    /* delivered; or stopping (purged at close): the next owner resumes
     * the saga and sends what it waits for */
    free(c);
    return;
  }
  SLOG_WARN(c->id, NULL,
            "the %s command of step %u, attempt %u, is not confirmed "
            "delivered (%s; %s): sending it again in %d ms while the saga "
            "waits for it",
            c->action == SM_DO ? "DO" : "COMPENSATE", (unsigned)c->step + 1,
            (unsigned)c->attempt, sagad_delivery_text(status),
            sagad_persisted_text(persisted), OUTBOX_RETRY_MS);
  e->c.produce_errors++;
  c->next = e->cmd_retry;
  e->cmd_retry = c;
  timers_arm_retry(e, &e->cmd_armed, TMR_CMD);
}

void fx_command_retry(sagad_engine_t *e) {
  cmd_sent_t *c = e->cmd_retry, *n;
  e->cmd_retry = NULL;
  e->cmd_armed = false;
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  for (; c; c = n) {
    n = c->next;
    entry_t *en = table_lookup(e, c->id);
    const sm_t *s = en ? ENTRY_SAGA(en) : NULL;
    const sm_step_state_t *st =
        s && c->step < s->nsteps ? &s->steps[c->step] : NULL;
    /* Still waiting for this very attempt, before its deadline: the same
     * command again (its Dispatched event is durable). Else its reply or
     * deadline decided it, or the saga left memory (a later owner or
     * read-back resumes it): nothing to send, said once, so that a failed
     * delivery line is never left unanswered (docs/operations.md). */
    const char *why = NULL;
    if (!st)
      why = "the saga is not in memory (finished, its partition revoked, "
            "or its entry evicted): whoever reads it back resumes it";
    else if (st->status != (c->action == SM_DO ? SM_STEP_RUNNING
                                               : SM_STEP_COMP_RUNNING) ||
             st->attempt != c->attempt)
      why = "a reply or the step's deadline decided the attempt since (a "
            "reply: the attempt reached its participant after all, this "
            "message or another copy of it)";
    else if (st->timer_ms <= now)
      why = "its deadline has passed: the deadline decides the attempt";
    if (why) {
      SLOG_INFO(c->id, NULL,
                "the %s command of step %u, attempt %u, is not sent again: "
                "%s",
                c->action == SM_DO ? "DO" : "COMPENSATE", (unsigned)c->step + 1,
                (unsigned)c->attempt, why);
    } else {
      sm_effect_t fx = {.type = SM_FX_SEND,
                        .step = c->step,
                        .action = c->action,
                        .attempt = c->attempt,
                        .at_ms = st->timer_ms};
      if (send_command(e, en, &fx))
        e->c.commands_resent++;
    }
    free(c);
  }
}
