/* The simulator's invariants (design.md 1-6), checked against the store's
 * committed truth: after every world event, and at the end of a run. A
 * check that fails records the first violation; the run stops there and
 * its trace is printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataflow.h"
#include "msg_codec.h"
#include "saga_codec.h"
#include "saga.pb-c.h"
#include "sim.h"

int sim_violation(sim_t *s, const char *fmt, ...) {
  if (s->violated)
    return 1;
  s->violated = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->violation, sizeof s->violation, fmt, ap);
  va_end(ap);
  sim_log(s, "VIOLATION: %s", s->violation);
  return 1;
}

static int has_fact(const sim_stream_t *st, int type, int step, int action,
                    int attempt) {
  for (size_t i = 0; st && i < st->nfacts; i++) {
    const struct sim_fact *f = &st->facts[i];
    if (f->type == type && (step < 0 || f->step == step) &&
        (action < 0 || f->action == action) &&
        (attempt < 0 || f->attempt == attempt))
      return 1;
  }
  return 0;
}

/* What the store recorded of a saga's data: its input and the outputs of
 * its steps. The values point into recs[], which the caller clears. */
typedef struct {
  saga_record_t recs[2]; /* Started's record and the latest decoded */
  const uint8_t *input;
  size_t input_len;
  saga_flow_value_t outs[SAGA_DEF_MAX_STEPS];
  uint8_t *copies[SAGA_DEF_MAX_STEPS];
} recorded_t;

static void recorded_clear(recorded_t *r) {
  saga_record_clear(&r->recs[0]);
  saga_record_clear(&r->recs[1]);
  for (int i = 0; i < SAGA_DEF_MAX_STEPS; i++)
    free(r->copies[i]);
}

static int recorded_read(const sim_stream_t *st, recorded_t *r) {
  memset(r, 0, sizeof *r);
  for (size_t i = 0; i < st->n; i++) {
    saga_record_t *rec = &r->recs[i == 0 ? 0 : 1];
    if (saga_codec_decode(st->recs[i].data, st->recs[i].len, rec) != 0)
      return -1;
    for (size_t k = 0; k < rec->n; k++) {
      const sm_event_t *ev = &rec->events[k];
      if (ev->type == SM_EV_STARTED) {
        r->input = ev->payload;
        r->input_len = ev->payload_len;
      } else if (ev->type == SM_EV_SUCCEEDED && ev->action == SM_DO &&
                 ev->step < SAGA_DEF_MAX_STEPS) {
        free(r->copies[ev->step]);
        r->copies[ev->step] = malloc(ev->payload_len ? ev->payload_len : 1);
        if (!r->copies[ev->step])
          abort();
        if (ev->payload_len)
          memcpy(r->copies[ev->step], ev->payload, ev->payload_len);
        r->outs[ev->step] = (saga_flow_value_t){r->copies[ev->step],
                                                ev->payload_len, true};
      }
    }
  }
  return 0;
}

/* Invariant 9: a command carries what the definition's mappings give for
 * the input and outputs the store recorded (and so does the COMPLETED
 * notification, with the saga's output). which: 0 DO, 1 COMPENSATE, 2 the
 * saga's output. */
static int check_payload(sim_t *s, const sim_stream_t *st, const char *saga,
                         int which, uint32_t step, const uint8_t *payload,
                         size_t payload_len) {
  const saga_def_t *def = st->shadow->def;
  recorded_t r;
  uint8_t *want = NULL;
  size_t want_len = 0;
  int rc = recorded_read(st, &r);
  if (rc == 0)
    rc = which == 0   ? saga_flow_command(def, step, r.input, r.input_len,
                                          r.outs, &want, &want_len)
         : which == 1 ? saga_flow_compensation(def, step, r.input,
                                               r.input_len, r.outs, &want,
                                               &want_len)
                      : saga_flow_saga_output(def, r.input, r.input_len,
                                              r.outs, &want, &want_len);
  recorded_clear(&r);
  if (rc != 0)
    abort();
  int same = want_len == payload_len &&
             (want_len == 0 || memcmp(want, payload, want_len) == 0);
  if (!same)
    sim_violation(s, "%s of %s%s%s carries %.*s, but the recorded input "
                     "and outputs give %.*s",
                  which == 2 ? "the COMPLETED notification" : "the command",
                  saga, which == 2 ? "" : "/", which == 2 ? "" :
                  def->steps[step].name, (int)payload_len,
                  payload ? (const char *)payload : "", (int)want_len,
                  want ? (const char *)want : "");
  free(want);
  return !same;
}

/* Invariant 1 (append before act) for commands, invariant 6's "never
 * compensate after the pivot", and invariant 9 (commands derived from the
 * history). */
int sim_check_command(sim_t *s, const char *saga, const char *step,
                      int action, uint32_t attempt, const uint8_t *payload,
                      size_t payload_len) {
  sim_stream_t *st = sim_store_find(s, saga);
  const saga_def_t *def = st && st->shadow ? st->shadow->def : NULL;
  int k = def ? saga_def_step_index(def, step) : -1;
  if (k < 0 ||
      !has_fact(st, SM_EV_DISPATCHED, k, action, (int)attempt))
    return sim_violation(s,
                         "append before act: command %s/%s/%s/%u produced "
                         "but its Dispatched event is not committed",
                         saga, step, action ? "COMPENSATE" : "DO",
                         (unsigned)attempt);
  if (action && def->pivot >= 0 &&
      has_fact(st, SM_EV_SUCCEEDED, def->pivot, SM_DO, -1))
    return sim_violation(s, "compensation %s/%s sent after the pivot %s "
                            "succeeded",
                         saga, step, def->steps[def->pivot].name);
  return check_payload(s, st, saga, action ? 1 : 0, (uint32_t)k, payload,
                       payload_len);
}

/* Spans and other observations wait for on_durable (engine.h): what it
 * reports committed must be in the store. */
int sim_check_durable(sim_t *s, const char *saga, uint32_t version) {
  sim_stream_t *st = sim_store_find(s, saga);
  uint32_t committed = st && st->shadow ? st->shadow->version : 0;
  if (committed < version)
    return sim_violation(s,
                         "on_durable: saga %s reported committed at version "
                         "%u, the store has %u",
                         saga, (unsigned)version, (unsigned)committed);
  return 0;
}

int sim_check_notification(sim_t *s, const char *saga, int kind,
                           const char *step, int action,
                           const uint8_t *payload, size_t payload_len) {
  sim_stream_t *st = sim_store_find(s, saga);
  int ok = 0;
  switch (kind) {
  case SM_NOTIFY_STARTED:
    ok = has_fact(st, SM_EV_STARTED, -1, -1, -1);
    break;
  case SM_NOTIFY_COMPLETED:
    ok = has_fact(st, SM_EV_COMPLETED, -1, -1, -1);
    break;
  case SM_NOTIFY_COMPENSATED:
    ok = has_fact(st, SM_EV_COMPENSATED, -1, -1, -1) ||
         has_fact(st, SM_EV_RESOLVED, -1, -1, -1);
    break;
  case SM_NOTIFY_COMPENSATION_FAILED:
    ok = has_fact(st, SM_EV_PARKED, -1, -1, -1);
    break;
  case SM_NOTIFY_CANCEL_REFUSED:
    ok = 1; /* it records nothing: an answer, not an effect of an event */
    break;
  case SM_NOTIFY_STEP_DONE: {
    int k = st && st->shadow ? saga_def_step_index(st->shadow->def, step) : -1;
    int a = action == SAGA__V1__ACTION__ACTION_COMPENSATE ? SM_COMPENSATE : SM_DO;
    ok = k >= 0 && (has_fact(st, SM_EV_SUCCEEDED, k, a, -1) ||
                    has_fact(st, SM_EV_ATTEMPT_FAILED, k, a, -1));
    break;
  }
  default:
    return sim_violation(s, "notification of unknown kind %d for %s", kind,
                         saga);
  }
  if (!ok)
    return sim_violation(s,
                         "append before act: notification %d of saga %s "
                         "produced before its event is committed",
                         kind, saga);
  if (kind == SM_NOTIFY_COMPLETED)
    return check_payload(s, st, saga, 2, 0, payload, payload_len);
  return 0;
}

/* Invariant 2 (acknowledge after append), for every kind of input: a
 * StartSaga is acknowledged only once the saga's Started record is durable
 * (a duplicate start finds it too); a reply or an operator action only once
 * the committed stream has taken it -- stepping it on the replay of the
 * committed records must change nothing (it was applied and committed, or
 * it is a duplicate, late, unexpected or refused input that no state of
 * the saga will ever take). An input acknowledged while the committed
 * state would still apply it is lost for good: the broker never
 * redelivers it. */
int sim_check_ack(sim_t *s, const sim_inmsg_t *m) {
  if (m->kind == SIM_IN_GARBAGE || m->saga < 0)
    return 0;
  const char *id = s->sagas[m->saga].id;
  sim_stream_t *st = sim_store_find(s, id);
  if (m->kind == SIM_IN_START) {
    if (!has_fact(st, SM_EV_STARTED, -1, -1, -1))
      return sim_violation(s, "ack before append: StartSaga of %s "
                              "acknowledged before its Started record is "
                              "committed",
                           id);
    return 0;
  }
  if (!st || !st->shadow)
    return 0; /* nothing committed: no state would take it */
  sagad_msg_t msg;
  char err[256];
  saga__hdr_view_t hv = saga__hdr_copy_view(m->hdrs);
  if (sagad_msg_decode(m->value, m->len, &hv, (size_t)1 << 20, &msg, err,
                       sizeof err) != 0)
    return sim_violation(s, "the simulator's own input for %s does not "
                            "decode: %s",
                         id, err);
  const sm_t *sh = st->shadow;
  sm_input_t in = {0};
  if (msg.kind == SAGAD_MSG_REPLY) {
    in.type = SM_IN_REPLY;
    in.step = saga_def_step_index(sh->def, msg.step);
    in.action = (uint8_t)msg.action;
    in.attempt = msg.attempt;
    in.outcome = (uint8_t)msg.outcome;
    in.reason = msg.reason;
  } else {
    in.type = (uint8_t)msg.op;
  }
  sm_t *probe = malloc(sm_bytes(sh));
  sm_output_t *out = malloc(sizeof *out);
  if (!probe || !out)
    abort();
  sm_copy(probe, sh);
  sm_rng_t rng = {.state = 1};
  int rc = sm_step(probe, &in, s->now, &rng, out);
  int applies = rc == 0 && out->verdict == SM_V_APPLIED;
  free(probe);
  free(out);
  if (applies)
    sim_violation(s,
                  "ack before append: %s of %s (%s/%s/%u) acknowledged but "
                  "the committed stream (version %zu) has not taken it",
                  msg.kind == SAGAD_MSG_REPLY ? "reply" : "operator action",
                  id, msg.kind == SAGAD_MSG_REPLY ? msg.step : "-",
                  msg.kind == SAGAD_MSG_REPLY
                      ? (msg.action == SM_COMPENSATE ? "COMPENSATE" : "DO")
                      : (msg.op == SM_IN_OPERATOR_RETRY ? "RETRY" : "RESOLVE"),
                  (unsigned)msg.attempt, st->n);
  sagad_msg_free(&msg);
  return applies;
}

/* Invariant 10: a cancel is taken only before the pivot is dispatched,
 * and once taken no step goes forward and the saga never completes. */
static int check_cancel(sim_t *s, const sim_stream_t *st) {
  const saga_def_t *def = st->shadow ? st->shadow->def : NULL;
  int pivot_sent = 0, cancelled = 0;
  for (size_t i = 0; def && i < st->nfacts; i++) {
    const struct sim_fact *f = &st->facts[i];
    if (f->type == SM_EV_DISPATCHED && f->action == SM_DO) {
      if (cancelled)
        return sim_violation(s, "%s: %s dispatched forward after the saga "
                                "was cancelled",
                             st->id, def->steps[f->step].name);
      if ((int32_t)f->step == def->pivot)
        pivot_sent = 1;
    } else if (f->type == SM_EV_CANCEL_REQUESTED) {
      if (pivot_sent)
        return sim_violation(s, "%s: cancel taken after the pivot %s was "
                                "dispatched",
                             st->id, def->steps[def->pivot].name);
      cancelled = 1;
    } else if (f->type == SM_EV_COMPLETED && cancelled) {
      return sim_violation(s, "%s: completed after it was cancelled",
                           st->id);
    }
  }
  return 0;
}

/* The saga_index row written with a batch describes the stream as
 * committed: never a version the stream does not have (recovery trusts
 * its status). */
int sim_check_commit(sim_t *s, sim_stream_t *st) {
  if (st && check_cancel(s, st))
    return 1;
  if (!st || !st->has_index)
    return 0;
  if (st->ix_version > (int64_t)st->n)
    return sim_violation(s,
                         "saga_index of %s says version %lld (%s) but the "
                         "stream holds %zu records",
                         st->id, (long long)st->ix_version, st->ix_status,
                         st->n);
  if (st->ix_version == (int64_t)st->n && st->shadow &&
      strcmp(st->ix_status, sm_status_name(
                                (sm_status_t)st->shadow->status)) != 0)
    return sim_violation(s, "saga_index of %s says %s, its events say %s",
                         st->id, st->ix_status,
                         sm_status_name((sm_status_t)st->shadow->status));
  return 0;
}

static int in_batch(const sim_node_t *n, const char *id) {
  if (!n->conn.busy)
    return 0;
  for (size_t i = 0; i < n->conn.n; i++)
    if (!strcmp(n->conn.s[i].id, id))
      return 1;
  return 0;
}

/* Replay == live (invariant 4) and one writer (invariant 5): a saga an
 * engine holds outside a batch is exactly the replay of its committed
 * stream, or an older version of it (a fenced old owner); never ahead of
 * the store, never different at the same version. */
int sim_check_step(sim_t *s) {
  for (int k = 0; k < SIM_NODES; k++) {
    sim_node_t *n = &s->nodes[k];
    if (!n->engine)
      continue;
    for (int i = 0; i < s->nsagas; i++) {
      const sm_t *live = sagad_engine_find(n->engine, s->sagas[i].id);
      if (!live || in_batch(n, live->id))
        continue;
      sim_stream_t *st = sim_store_find(s, live->id);
      size_t stored = st ? st->n : 0;
      if (live->version > stored)
        return sim_violation(s,
                             "node%d holds %s at version %u, the store at "
                             "%zu, and no batch carries it",
                             k, live->id, (unsigned)live->version, stored);
      if (live->version == stored && st->shadow &&
          !sm_equal(live, st->shadow))
        return sim_violation(s,
                             "node%d's live %s differs from the replay of "
                             "its %zu committed records",
                             k, live->id, stored);
    }
  }
  return 0;
}

/* At the end: liveness, and the participants' effects against the
 * committed outcome (invariants 3 and 6). */
int sim_check_end(sim_t *s) {
  for (int i = 0; i < s->nsagas; i++) {
    sim_saga_t *sg = &s->sagas[i];
    sim_stream_t *st = sim_store_find(s, sg->id);
    if (!st || !st->shadow)
      return sim_violation(s, "liveness: %s was started but never recorded",
                           sg->id);
    const sm_t *sh = st->shadow;
    if (!sm_is_terminal(sh))
      return sim_violation(s, "liveness: %s is still %s after the faults "
                              "stopped",
                           sg->id, sm_status_name((sm_status_t)sh->status));
    /* Every effect a committed transition calls for is performed at least
     * once once the faults stop: commands and timers by the liveness
     * above, the final notification here (lost across a crash before the
     * fix: recovery did not list terminal sagas). */
    if (!sg->final_landed)
      return sim_violation(s, "effect lost: %s is %s but its final "
                              "notification never reached the topic",
                           sg->id, sm_status_name((sm_status_t)sh->status));
    const saga_def_t *def = sh->def;
    int completed = sh->status == SM_COMPLETED;
    int resolved = (sh->flags & SM_F_RESOLVED) != 0;
    uint32_t last_order = UINT32_MAX;
    /* compensation order: by the participants' application sequence */
    for (;;) {
      int next = -1;
      for (uint32_t k = 0; k < def->nsteps; k++) {
        const sim_effect_t *fx = &sg->fx[k];
        if (fx->comp_applied && fx->comp_seq > 0 &&
            (next < 0 || fx->comp_seq < sg->fx[next].comp_seq) &&
            (last_order == UINT32_MAX ||
             fx->comp_seq > sg->fx[last_order].comp_seq))
          next = (int)k;
      }
      if (next < 0)
        break;
      if (last_order != UINT32_MAX && sh->steps[next].order &&
          sh->steps[last_order].order &&
          sh->steps[next].order > sh->steps[last_order].order)
        return sim_violation(s, "%s: %s compensated after %s, not in reverse "
                                "order of completion",
                             sg->id, def->steps[next].name,
                             def->steps[last_order].name);
      last_order = (uint32_t)next;
    }
    for (uint32_t k = 0; k < def->nsteps; k++) {
      const sim_effect_t *fx = &sg->fx[k];
      const saga_step_def_t *sd = &def->steps[k];
      if (completed) {
        if (!fx->do_applied)
          return sim_violation(s, "%s completed but step %s was never "
                                  "applied",
                               sg->id, sd->name);
        if (fx->comp_applied)
          return sim_violation(s, "%s completed but step %s was compensated",
                               sg->id, sd->name);
        continue;
      }
      if (resolved)
        continue;
      if (fx->do_applied && !fx->comp_applied)
        return sim_violation(s, "%s compensated but the effect of step %s "
                                "is left applied%s",
                             sg->id, sd->name,
                             sd->comp_topic ? "" : " (it has no compensation)");
      if (fx->comp_noop && !(sh->steps[k].flags & SM_SF_UNKNOWN))
        return sim_violation(s, "%s: step %s compensated though it never "
                                "ran and its outcome was known",
                             sg->id, sd->name);
    }
  }
  return 0;
}
