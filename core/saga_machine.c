/* The saga state machine. sm_step decides; sm_apply is the only code
 * that changes a saga. Decisions emit events one at a time and apply each
 * at once, so later decisions in the same transition see its effect, and
 * replaying the stored events walks through exactly the same states. */
#include "saga_machine.h"

#include <stdio.h>
#include <string.h>

/* ---- rng, names ---- */

double sm_rng_next(sm_rng_t *rng) {
  uint64_t z = (rng->state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1.0p-53;
}

/* One switch per X-macro list of saga_machine.h: a value added to a list
 * has its name at once. */
#define SM_NAME_FN_(fn, type, LIST)                                            \
  const char *fn(type v) {                                                     \
    switch (v) {                                                               \
      LIST(SM_NAME_CASE_)                                                      \
    }                                                                          \
    return "unknown";                                                          \
  }
#define SM_NAME_CASE_(name, value, text)                                       \
  case value:                                                                  \
    return text;

SM_NAME_FN_(sm_status_name, sm_status_t, SM_STATUS_LIST)
SM_NAME_FN_(sm_step_status_name, sm_step_status_t, SM_STEP_STATUS_LIST)
SM_NAME_FN_(sm_event_type_name, sm_event_type_t, SM_EVENT_TYPE_LIST)
SM_NAME_FN_(sm_verdict_name, sm_verdict_t, SM_VERDICT_LIST)

#undef SM_NAME_CASE_
#undef SM_NAME_FN_

/* ---- state ---- */

size_t sm_size(const saga_def_t *def, size_t id_len) {
  return sizeof(sm_t) + def->nsteps * sizeof(sm_step_state_t) + id_len + 1;
}

size_t sm_bytes(const sm_t *saga) {
  return sizeof(sm_t) + saga->nsteps * sizeof(sm_step_state_t) +
         saga->id_len + 1;
}

static char *id_slot(sm_t *saga) {
  return (char *)(saga->steps + saga->nsteps);
}

void sm_copy(sm_t *dst, const sm_t *src) {
  memcpy(dst, src, sm_bytes(src));
  dst->id = id_slot(dst);
}

int sm_init(sm_t *saga, const char *id, const saga_def_t *def) {
  if (saga == NULL || id == NULL || def == NULL || def->nsteps == 0 ||
      def->nsteps > SAGA_DEF_MAX_STEPS)
    return SAGA_CORE_EINVAL;
  size_t n = strlen(id);
  if (n == 0 || n > SM_ID_MAX)
    return SAGA_CORE_EINVAL;
  memset(saga, 0, sm_size(def, n));
  saga->def = def;
  saga->nsteps = (uint8_t)def->nsteps;
  saga->id_len = (uint8_t)n;
  memcpy(id_slot(saga), id, n);
  saga->id = id_slot(saga);
  return SAGA_CORE_OK;
}

bool sm_is_terminal(const sm_t *saga) {
  return saga->status == SM_COMPLETED || saga->status == SM_COMPENSATED;
}

static bool is_comp_status(uint8_t st) {
  return st == SM_STEP_COMP_RUNNING || st == SM_STEP_COMP_BACKOFF ||
         st == SM_STEP_COMPENSATED || st == SM_STEP_COMP_FAILED;
}

static bool is_waiting(uint8_t st) {
  return st == SM_STEP_RUNNING || st == SM_STEP_BACKOFF ||
         st == SM_STEP_COMP_RUNNING || st == SM_STEP_COMP_BACKOFF;
}

int sm_apply(sm_t *saga, const sm_event_t *ev, int64_t at_ms) {
  if (saga == NULL || ev == NULL)
    return SAGA_CORE_EINVAL;
  sm_step_state_t *st = NULL;
  switch (ev->type) {
  case SM_EV_DISPATCHED:
  case SM_EV_SUCCEEDED:
  case SM_EV_ATTEMPT_FAILED:
  case SM_EV_OPERATOR_RETRY:
  case SM_EV_PARKED:
  case SM_EV_COMPENSATING:
    if (ev->step >= saga->nsteps || ev->action > SM_COMPENSATE)
      return SAGA_CORE_EREPLAY;
    st = &saga->steps[ev->step];
    break;
  default:
    break;
  }
  if (ev->type != SM_EV_STARTED && saga->status == SM_NEW)
    return SAGA_CORE_EREPLAY;
  saga->updated_ms = at_ms;
  switch (ev->type) {
  case SM_EV_STARTED:
    if (saga->status != SM_NEW || ev->def_name == NULL ||
        strcmp(ev->def_name, saga->def->name) != 0 ||
        ev->def_version != saga->def->version)
      return SAGA_CORE_EREPLAY;
    saga->status = SM_RUNNING;
    saga->started_ms = at_ms;
    break;
  case SM_EV_DISPATCHED:
    if (ev->action == SM_DO) {
      st->status = SM_STEP_RUNNING;
      saga->cursor = (uint8_t)saga_def_block_start(saga->def, ev->step);
    } else {
      if (!is_comp_status(st->status))
        st->budget_base = 0;
      st->status = SM_STEP_COMP_RUNNING;
    }
    st->attempt = ev->attempt;
    st->timer_ms = ev->until_ms;
    st->flags &= (uint8_t)~SM_SF_BY_TIMER;
    break;
  case SM_EV_SUCCEEDED:
    if (ev->action == SM_DO) {
      st->status = SM_STEP_DONE;
      st->order = ++saga->seq;
    } else {
      st->status = SM_STEP_COMPENSATED;
    }
    st->timer_ms = 0;
    break;
  case SM_EV_ATTEMPT_FAILED:
    if (ev->outcome == SM_OUTCOME_TIMEOUT) {
      st->flags |= SM_SF_BY_TIMER;
      if (ev->action == SM_DO)
        st->flags |= SM_SF_UNKNOWN;
    }
    st->timer_ms = ev->until_ms;
    if (ev->until_ms != 0) {
      st->status =
          ev->action == SM_DO ? SM_STEP_BACKOFF : SM_STEP_COMP_BACKOFF;
    } else if (ev->action == SM_DO) {
      st->status = SM_STEP_FAILED;
      st->order = ++saga->seq;
    } else {
      st->status = SM_STEP_COMP_FAILED;
    }
    break;
  case SM_EV_CANCEL_REQUESTED:
    if (saga->status != SM_RUNNING)
      return SAGA_CORE_EREPLAY;
    saga->flags |= SM_F_CANCELLED;
    /* from here on it compensates like a failure */
    __attribute__((fallthrough));
  case SM_EV_COMPENSATING:
    /* Steps waiting to retry forward give up now; running ones drain. */
    saga->status = SM_COMPENSATING;
    for (uint32_t i = 0; i < saga->nsteps; i++)
      if (saga->steps[i].status == SM_STEP_BACKOFF) {
        saga->steps[i].status = SM_STEP_FAILED;
        saga->steps[i].timer_ms = 0;
        saga->steps[i].order = ++saga->seq;
      }
    break;
  case SM_EV_COMPLETED:
    saga->status = SM_COMPLETED;
    break;
  case SM_EV_COMPENSATED:
    saga->status = SM_COMPENSATED;
    break;
  case SM_EV_PARKED:
    saga->status = SM_COMPENSATION_FAILED;
    break;
  case SM_EV_OPERATOR_RETRY:
    st->budget_base = st->attempt;
    saga->status = SM_COMPENSATING;
    break;
  case SM_EV_RESOLVED:
    saga->status = SM_COMPENSATED;
    saga->flags |= SM_F_RESOLVED;
    break;
  default:
    return SAGA_CORE_EREPLAY;
  }
  return SAGA_CORE_OK;
}

void sm_end_transition(sm_t *saga) { saga->version++; }

/* ---- deciding ---- */

typedef struct {
  sm_t *saga;
  int64_t now;
  sm_rng_t *rng;
  sm_output_t *out;
  const sm_input_t *in;
} run_t;

static void emit(run_t *r, sm_event_t ev) {
  r->out->events[r->out->n_events++] = ev;
  /* Events built here always fit the state they were decided from. */
  (void)sm_apply(r->saga, &ev, r->now);
}

static void effect(sm_output_t *out, sm_effect_t fx) {
  out->effects[out->n_effects++] = fx;
}

static void notify(run_t *r, sm_notify_t what, uint32_t step,
                   sm_action_t action, sm_outcome_t outcome) {
  effect(r->out, (sm_effect_t){.type = SM_FX_NOTIFY,
                                 .notify = (uint8_t)what,
                                 .step = (uint8_t)step,
                                 .action = (uint8_t)action,
                                 .outcome = (uint8_t)outcome,
                                 .at_ms = r->now});
}

static void send_effects(sm_output_t *out, uint32_t step,
                         sm_action_t action, uint32_t attempt,
                         int64_t deadline) {
  effect(out, (sm_effect_t){.type = SM_FX_SEND,
                              .step = (uint8_t)step,
                              .action = (uint8_t)action,
                              .attempt = (uint16_t)attempt,
                              .at_ms = deadline});
  effect(out, (sm_effect_t){.type = SM_FX_TIMER,
                              .timer = SM_TIMER_DEADLINE,
                              .step = (uint8_t)step,
                              .action = (uint8_t)action,
                              .attempt = (uint16_t)attempt,
                              .at_ms = deadline});
}

static void backoff_effect(sm_output_t *out, uint32_t step,
                           sm_action_t action, uint32_t attempt,
                           int64_t at) {
  effect(out, (sm_effect_t){.type = SM_FX_TIMER,
                              .timer = SM_TIMER_BACKOFF,
                              .step = (uint8_t)step,
                              .action = (uint8_t)action,
                              .attempt = (uint16_t)attempt,
                              .at_ms = at});
}

static void dispatch(run_t *r, uint32_t step, sm_action_t action,
                     uint32_t attempt) {
  const saga_step_def_t *d = &r->saga->def->steps[step];
  int64_t deadline =
      r->now + (action == SM_DO ? d->timeout_ms : d->comp_timeout_ms);
  emit(r, (sm_event_t){.type = SM_EV_DISPATCHED,
                         .step = (uint8_t)step,
                         .action = (uint8_t)action,
                         .attempt = (uint16_t)attempt,
                         .until_ms = deadline});
  send_effects(r->out, step, action, attempt, deadline);
}

static void dispatch_block(run_t *r, uint32_t start) {
  uint32_t n = saga_def_block_len(r->saga->def, start);
  for (uint32_t i = start; i < start + n; i++)
    dispatch(r, i, SM_DO, 1);
}

/* Delay before the retry that follows the k-th failed attempt of the
 * current budget (k >= 1): initial * multiplier^(k-1), capped, shortened
 * by up to jitter. At least 1 ms, so a retry time is never 0. */
static int64_t backoff_ms(const saga_retry_policy_t *p, uint32_t k,
                          sm_rng_t *rng) {
  double d = p->initial_backoff_ms;
  for (uint32_t i = 1; i < k && d < p->max_backoff_ms; i++)
    d *= p->multiplier;
  if (d > p->max_backoff_ms)
    d = p->max_backoff_ms;
  if (p->jitter > 0 && rng != NULL)
    d -= d * p->jitter * sm_rng_next(rng);
  int64_t ms = (int64_t)d;
  return ms < 1 ? 1 : ms;
}

static void progress(run_t *r);

static void attempt_failed(run_t *r, uint32_t step, sm_action_t action,
                           sm_outcome_t outcome) {
  sm_t *s = r->saga;
  const saga_step_def_t *d = &s->def->steps[step];
  sm_step_state_t *st = &s->steps[step];
  const saga_retry_policy_t *p = action == SM_DO ? &d->retry : &d->comp_retry;
  uint32_t used = (uint32_t)(st->attempt - st->budget_base);
  bool retry = p->max_attempts == 0 || used < p->max_attempts;
  if (action == SM_DO) {
    /* A business failure before the pivot is final; after the pivot the
     * saga only goes forward. A saga already compensating retries nothing
     * forward. */
    if (outcome == SM_OUTCOME_FAILURE && d->kind != SAGA_STEP_RETRIABLE)
      retry = false;
    if (s->status == SM_COMPENSATING)
      retry = false;
  }
  int64_t until = retry ? r->now + backoff_ms(p, used, r->rng) : 0;
  emit(r, (sm_event_t){.type = SM_EV_ATTEMPT_FAILED,
                         .step = (uint8_t)step,
                         .action = (uint8_t)action,
                         .attempt = st->attempt,
                         .outcome = (uint8_t)outcome,
                         .until_ms = until,
                         .reason = r->in ? r->in->reason : NULL});
  if (retry)
    backoff_effect(r->out, step, action, st->attempt, until);
  else
    notify(r, SM_NOTIFY_STEP_DONE, step, action, outcome);
  progress(r);
}

static void succeeded(run_t *r, uint32_t step, sm_action_t action) {
  const sm_input_t *in = r->in;
  emit(r, (sm_event_t){.type = SM_EV_SUCCEEDED,
                         .step = (uint8_t)step,
                         .action = (uint8_t)action,
                         .attempt = r->saga->steps[step].attempt,
                         .outcome = SM_OUTCOME_SUCCESS,
                         .payload = in->payload,
                         .payload_len = in->payload_len});
  notify(r, SM_NOTIFY_STEP_DONE, step, action, SM_OUTCOME_SUCCESS);
  progress(r);
}

/* The next step to compensate: the latest completed one (or the latest
 * whose outcome is unknown) that has a compensation and is not undone. */
static int next_to_compensate(const sm_t *s) {
  int best = -1;
  for (uint32_t i = 0; i < s->nsteps; i++) {
    const sm_step_state_t *st = &s->steps[i];
    bool applied = st->status == SM_STEP_DONE ||
                   (st->status == SM_STEP_FAILED &&
                    (st->flags & SM_SF_UNKNOWN));
    if (!applied || s->def->steps[i].comp_topic == NULL ||
        s->def->steps[i].kind == SAGA_STEP_RETRIABLE)
      continue;
    if (best < 0 || st->order > s->steps[best].order)
      best = (int)i;
  }
  return best;
}

static void progress_compensating(run_t *r) {
  sm_t *s = r->saga;
  for (uint32_t i = 0; i < s->nsteps; i++) {
    if (is_waiting(s->steps[i].status))
      return; /* drain forward attempts in flight; one compensation at a
                 time */
    if (s->steps[i].status == SM_STEP_COMP_FAILED) {
      emit(r, (sm_event_t){.type = SM_EV_PARKED, .step = (uint8_t)i});
      notify(r, SM_NOTIFY_COMPENSATION_FAILED, i, SM_COMPENSATE,
             SM_OUTCOME_FAILURE);
      return;
    }
  }
  int next = next_to_compensate(s);
  if (next >= 0) {
    dispatch(r, (uint32_t)next, SM_COMPENSATE, 1);
    return;
  }
  emit(r, (sm_event_t){.type = SM_EV_COMPENSATED});
  notify(r, SM_NOTIFY_COMPENSATED, 0, SM_COMPENSATE,
         SM_OUTCOME_SUCCESS);
}

static void progress(run_t *r) {
  sm_t *s = r->saga;
  if (s->status == SM_RUNNING) {
    uint32_t start = s->cursor;
    uint32_t n = saga_def_block_len(s->def, start);
    bool all_done = true;
    for (uint32_t i = start; i < start + n; i++) {
      if (s->steps[i].status == SM_STEP_FAILED) {
        emit(r, (sm_event_t){.type = SM_EV_COMPENSATING,
                               .step = (uint8_t)i});
        progress_compensating(r);
        return;
      }
      all_done = all_done && s->steps[i].status == SM_STEP_DONE;
    }
    if (!all_done)
      return;
    if (start + n < s->nsteps) {
      dispatch_block(r, start + n);
    } else {
      emit(r, (sm_event_t){.type = SM_EV_COMPLETED});
      notify(r, SM_NOTIFY_COMPLETED, 0, SM_DO, SM_OUTCOME_SUCCESS);
    }
  } else if (s->status == SM_COMPENSATING) {
    progress_compensating(r);
  }
}

static sm_verdict_t on_reply(run_t *r) {
  sm_t *s = r->saga;
  const sm_input_t *in = r->in;
  if (in->action > SM_COMPENSATE || in->outcome < SM_OUTCOME_SUCCESS ||
      in->outcome > SM_OUTCOME_RETRYABLE)
    return SM_V_UNEXPECTED;
  uint32_t step = (uint32_t)in->step;
  sm_step_state_t *st = &s->steps[step];
  sm_action_t cur = is_comp_status(st->status) ? SM_COMPENSATE : SM_DO;
  if (st->status == SM_STEP_PENDING || in->attempt == 0)
    return SM_V_UNEXPECTED;
  if (in->action != cur)
    return in->action == SM_DO ? SM_V_LATE : SM_V_UNEXPECTED;
  if (in->attempt > st->attempt)
    return SM_V_UNEXPECTED;
  if (in->attempt < st->attempt)
    return SM_V_LATE;
  if (st->status != SM_STEP_RUNNING && st->status != SM_STEP_COMP_RUNNING)
    return (st->flags & SM_SF_BY_TIMER) ? SM_V_LATE : SM_V_DUPLICATE;
  if (in->outcome == SM_OUTCOME_SUCCESS)
    succeeded(r, step, cur);
  else
    attempt_failed(r, step, cur, (sm_outcome_t)in->outcome);
  return SM_V_APPLIED;
}

static sm_verdict_t on_timer(run_t *r) {
  sm_t *s = r->saga;
  const sm_input_t *in = r->in;
  uint32_t step = (uint32_t)in->step;
  sm_step_state_t *st = &s->steps[step];
  uint8_t want;
  if (in->timer == SM_TIMER_DEADLINE)
    want = in->action == SM_DO ? SM_STEP_RUNNING : SM_STEP_COMP_RUNNING;
  else if (in->timer == SM_TIMER_BACKOFF)
    want = in->action == SM_DO ? SM_STEP_BACKOFF : SM_STEP_COMP_BACKOFF;
  else
    return SM_V_STALE_TIMER;
  if (st->status != want || in->attempt != st->attempt)
    return SM_V_STALE_TIMER;
  if (r->now < st->timer_ms) {
    /* Fired early: wait on. */
    effect(r->out, (sm_effect_t){.type = SM_FX_TIMER,
                                   .timer = in->timer,
                                   .step = (uint8_t)step,
                                   .action = in->action,
                                   .attempt = st->attempt,
                                   .at_ms = st->timer_ms});
    return SM_V_STALE_TIMER;
  }
  if (in->timer == SM_TIMER_DEADLINE)
    attempt_failed(r, step, (sm_action_t)in->action, SM_OUTCOME_TIMEOUT);
  else
    dispatch(r, step, (sm_action_t)in->action, st->attempt + 1u);
  return SM_V_APPLIED;
}

static sm_verdict_t on_operator(run_t *r) {
  sm_t *s = r->saga;
  const sm_input_t *in = r->in;
  if (s->status != SM_COMPENSATION_FAILED)
    return SM_V_REJECTED;
  if (in->type == SM_IN_OPERATOR_RESOLVE) {
    emit(r, (sm_event_t){.type = SM_EV_RESOLVED,
                           .reason = in->reason,
                           .who = in->who});
    notify(r, SM_NOTIFY_COMPENSATED, 0, SM_COMPENSATE,
           SM_OUTCOME_SUCCESS);
    return SM_V_APPLIED;
  }
  for (uint32_t i = 0; i < s->nsteps; i++)
    if (s->steps[i].status == SM_STEP_COMP_FAILED) {
      emit(r, (sm_event_t){.type = SM_EV_OPERATOR_RETRY,
                             .step = (uint8_t)i,
                             .action = SM_COMPENSATE,
                             .reason = in->reason,
                             .who = in->who});
      dispatch(r, i, SM_COMPENSATE, s->steps[i].attempt + 1u);
      return SM_V_APPLIED;
    }
  return SM_V_REJECTED;
}

/* The pivot step has been dispatched (or the saga is past it): from then
 * on the saga only goes forward. */
static bool past_pivot(const sm_t *s) {
  int p = s->def->pivot;
  return p >= 0 && p < s->nsteps && s->steps[p].status != SM_STEP_PENDING;
}

/* A cancel: before the pivot, the saga stops going forward, drains the
 * attempts in flight and compensates what is done or unknown, like a
 * failure (progress_compensating). */
static sm_verdict_t on_cancel(run_t *r) {
  sm_t *s = r->saga;
  if (sm_is_terminal(s))
    return SM_V_FINISHED;
  if (s->flags & SM_F_CANCELLED)
    return SM_V_DUPLICATE;
  if (s->status != SM_RUNNING || past_pivot(s))
    return SM_V_REJECTED;
  emit(r, (sm_event_t){.type = SM_EV_CANCEL_REQUESTED,
                         .reason = r->in->reason,
                         .who = r->in->who});
  progress_compensating(r);
  return SM_V_APPLIED;
}

int sm_step(sm_t *saga, const sm_input_t *in, int64_t now,
              sm_rng_t *rng, sm_output_t *out) {
  if (saga == NULL || in == NULL || out == NULL || now < 0)
    return SAGA_CORE_EINVAL;
  out->n_events = 0;
  out->n_effects = 0;
  run_t r = {saga, now, rng, out, in};
  sm_verdict_t v;
  if (in->type == SM_IN_START) {
    if (saga->status != SM_NEW) {
      v = SM_V_DUPLICATE_START;
    } else {
      emit(&r, (sm_event_t){.type = SM_EV_STARTED,
                              .def_name = saga->def->name,
                              .def_version = saga->def->version,
                              .payload = in->payload,
                              .payload_len = in->payload_len,
                              .correlation_id = in->correlation_id});
      notify(&r, SM_NOTIFY_STARTED, 0, SM_DO, SM_OUTCOME_SUCCESS);
      dispatch_block(&r, 0);
      v = SM_V_APPLIED;
    }
  } else if (saga->status == SM_NEW) {
    v = SM_V_UNKNOWN_SAGA;
  } else if (in->type == SM_IN_OPERATOR_RETRY ||
             in->type == SM_IN_OPERATOR_RESOLVE) {
    v = on_operator(&r);
  } else if (in->type == SM_IN_CANCEL) {
    v = on_cancel(&r);
  } else if (in->type != SM_IN_REPLY && in->type != SM_IN_TIMER) {
    return SAGA_CORE_EINVAL;
  } else if (in->step < 0 || (uint32_t)in->step >= saga->nsteps) {
    v = SM_V_UNKNOWN_STEP;
  } else {
    v = in->type == SM_IN_REPLY ? on_reply(&r) : on_timer(&r);
  }
  out->verdict = (uint8_t)v;
  if (out->n_events > 0)
    sm_end_transition(saga);
  return SAGA_CORE_OK;
}

/* ---- recovery and queries ---- */

void sm_resume(const sm_t *saga, sm_output_t *out) {
  out->verdict = SM_V_APPLIED;
  out->n_events = 0;
  out->n_effects = 0;
  for (uint32_t i = 0; i < saga->nsteps; i++) {
    const sm_step_state_t *st = &saga->steps[i];
    sm_action_t a = is_comp_status(st->status) ? SM_COMPENSATE : SM_DO;
    if (st->status == SM_STEP_RUNNING ||
        st->status == SM_STEP_COMP_RUNNING)
      send_effects(out, i, a, st->attempt, st->timer_ms);
    else if (st->status == SM_STEP_BACKOFF ||
             st->status == SM_STEP_COMP_BACKOFF)
      backoff_effect(out, i, a, st->attempt, st->timer_ms);
  }
}

int sm_idempotency_key(const sm_t *saga, uint32_t step,
                         sm_action_t action, uint32_t attempt, char *buf,
                         size_t len) {
  if (step >= saga->nsteps)
    return -1;
  return snprintf(buf, len, "%.*s/%s/%s/%u", (int)saga->id_len, saga->id,
                  saga->def->steps[step].name,
                  action == SM_DO ? "DO" : "COMPENSATE", attempt);
}

const char *sm_cancel_refusal(const sm_t *saga, char *buf, size_t len) {
  if (buf == NULL || len == 0)
    return "";
  buf[0] = '\0';
  /* The step parked on, else the first step that failed for good. */
  int failed = -1;
  for (uint32_t i = 0; i < saga->nsteps; i++) {
    const sm_step_state_t *st = &saga->steps[i];
    if (st->status == SM_STEP_COMP_FAILED) {
      failed = (int)i;
      break;
    }
    if (st->status == SM_STEP_FAILED &&
        (failed < 0 || st->order < saga->steps[failed].order))
      failed = (int)i;
  }
  switch ((sm_status_t)saga->status) {
  case SM_NEW:
    snprintf(buf, len, "no such saga");
    break;
  case SM_COMPLETED:
    snprintf(buf, len, "already completed: nothing to cancel");
    break;
  case SM_COMPENSATED:
    snprintf(buf, len, "already compensated%s: nothing to cancel",
             saga->flags & SM_F_CANCELLED  ? " (cancelled)"
             : saga->flags & SM_F_RESOLVED ? " (resolved by an operator)"
                                           : "");
    break;
  case SM_COMPENSATION_FAILED:
    snprintf(buf, len,
             "compensation failed%s%s: parked for an operator (retry or "
             "resolve it)",
             failed >= 0 ? " at step " : "",
             failed >= 0 ? saga->def->steps[failed].name : "");
    break;
  case SM_COMPENSATING:
    if (!(saga->flags & SM_F_CANCELLED))
      snprintf(buf, len, "already compensating after step %s failed",
               failed >= 0 ? saga->def->steps[failed].name : "?");
    break;
  case SM_RUNNING:
    if (past_pivot(saga))
      snprintf(buf, len, "after the pivot step %s",
               saga->def->steps[saga->def->pivot].name);
    break;
  }
  return buf;
}

bool sm_is_stuck(const sm_t *saga, int64_t now) {
  if (saga->status == SM_COMPENSATION_FAILED)
    return true;
  if (saga->status != SM_RUNNING && saga->status != SM_COMPENSATING)
    return false;
  for (uint32_t i = 0; i < saga->nsteps; i++)
    if (is_waiting(saga->steps[i].status) &&
        now - saga->updated_ms > saga->def->steps[i].stuck_after_ms)
      return true;
  return false;
}

int64_t sm_stuck_at(const sm_t *saga) {
  if (saga->status == SM_COMPENSATION_FAILED)
    return saga->updated_ms;
  if (saga->status != SM_RUNNING && saga->status != SM_COMPENSATING)
    return 0;
  int64_t at = 0;
  for (uint32_t i = 0; i < saga->nsteps; i++) {
    int64_t t = saga->updated_ms + saga->def->steps[i].stuck_after_ms;
    if (is_waiting(saga->steps[i].status) && (at == 0 || t < at))
      at = t;
  }
  return at;
}

int64_t sm_next_timer(const sm_t *saga) {
  int64_t t = 0;
  for (uint32_t i = 0; i < saga->nsteps; i++) {
    const sm_step_state_t *st = &saga->steps[i];
    if (is_waiting(st->status) && (t == 0 || st->timer_ms < t))
      t = st->timer_ms;
  }
  return t;
}

bool sm_equal(const sm_t *a, const sm_t *b) {
  if (a->def != b->def || a->started_ms != b->started_ms ||
      a->updated_ms != b->updated_ms || a->version != b->version ||
      a->status != b->status || a->flags != b->flags ||
      a->cursor != b->cursor || a->nsteps != b->nsteps || a->seq != b->seq ||
      a->id_len != b->id_len || memcmp(a->id, b->id, a->id_len) != 0)
    return false;
  for (uint32_t i = 0; i < a->nsteps; i++) {
    const sm_step_state_t *x = &a->steps[i];
    const sm_step_state_t *y = &b->steps[i];
    if (x->status != y->status || x->flags != y->flags ||
        x->attempt != y->attempt || x->budget_base != y->budget_base ||
        x->order != y->order || x->timer_ms != y->timer_ms)
      return false;
  }
  return true;
}

int sm_current_step(const sm_t *saga) {
  if (sm_is_terminal(saga))
    return -1;
  uint8_t want[2] = {SM_STEP_RUNNING, SM_STEP_BACKOFF};
  if (saga->status == SM_COMPENSATION_FAILED) {
    want[0] = want[1] = SM_STEP_COMP_FAILED;
  } else if (saga->status == SM_COMPENSATING) {
    want[0] = SM_STEP_COMP_RUNNING;
    want[1] = SM_STEP_COMP_BACKOFF;
  }
  for (uint32_t i = 0; i < saga->nsteps; i++)
    if (saga->steps[i].status == want[0] || saga->steps[i].status == want[1])
      return (int)i;
  /* Between attempts (a compensation not dispatched yet while forward
   * attempts drain): the first step still waited on, else the cursor. */
  for (uint32_t i = 0; i < saga->nsteps; i++)
    if (is_waiting(saga->steps[i].status))
      return (int)i;
  return saga->cursor < saga->nsteps ? (int)saga->cursor : -1;
}
