/* The saga state machine. saga_step decides; saga_apply is the only code
 * that changes a saga. Decisions emit events one at a time and apply each
 * at once, so later decisions in the same transition see its effect, and
 * replaying the stored events walks through exactly the same states. */
#include "saga_machine.h"

#include <stdio.h>
#include <string.h>

/* ---- rng, names ---- */

double saga_rng_next(saga_rng_t *rng) {
  uint64_t z = (rng->state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1.0p-53;
}

#define NAME_OF(table, v)                                                      \
  ((unsigned)(v) < sizeof(table) / sizeof((table)[0]) && (table)[v]           \
       ? (table)[v]                                                            \
       : "unknown")

const char *saga_status_name(saga_status_t s) {
  static const char *const n[] = {"new",         "running",
                                  "compensating", "completed",
                                  "compensated", "compensation_failed"};
  return NAME_OF(n, s);
}

const char *saga_step_status_name(saga_step_status_t s) {
  static const char *const n[] = {
      "pending",     "running",       "backoff",
      "done",        "failed",        "compensating",
      "compensation_backoff", "compensated", "compensation_failed"};
  return NAME_OF(n, s);
}

const char *saga_event_type_name(saga_event_type_t t) {
  static const char *const n[] = {
      NULL,        "Started",      "Dispatched",    "Succeeded",
      "AttemptFailed", "Compensating", "Completed", "Compensated",
      "Parked",    "OperatorRetry", "Resolved"};
  return NAME_OF(n, t);
}

const char *saga_verdict_name(saga_verdict_t v) {
  static const char *const n[] = {
      "applied",       "duplicate",    "late",
      "unknown_saga",  "unknown_step", "unexpected",
      "stale_timer",   "duplicate_start", "rejected"};
  return NAME_OF(n, v);
}

/* ---- state ---- */

size_t saga_size(const saga_def_t *def) {
  return sizeof(saga_t) + def->nsteps * sizeof(saga_step_state_t);
}

int saga_init(saga_t *saga, const char *id, const saga_def_t *def) {
  if (saga == NULL || id == NULL || def == NULL || def->nsteps == 0 ||
      def->nsteps > SAGA_DEF_MAX_STEPS)
    return SAGA_CORE_EINVAL;
  size_t n = strlen(id);
  if (n == 0 || n > SAGA_ID_MAX)
    return SAGA_CORE_EINVAL;
  memset(saga, 0, saga_size(def));
  saga->def = def;
  saga->nsteps = (uint8_t)def->nsteps;
  saga->id_len = (uint8_t)n;
  memcpy(saga->id, id, n);
  return SAGA_CORE_OK;
}

bool saga_is_terminal(const saga_t *saga) {
  return saga->status == SAGA_COMPLETED || saga->status == SAGA_COMPENSATED;
}

static bool is_comp_status(uint8_t st) {
  return st == SAGA_STEP_COMP_RUNNING || st == SAGA_STEP_COMP_BACKOFF ||
         st == SAGA_STEP_COMPENSATED || st == SAGA_STEP_COMP_FAILED;
}

static bool is_waiting(uint8_t st) {
  return st == SAGA_STEP_RUNNING || st == SAGA_STEP_BACKOFF ||
         st == SAGA_STEP_COMP_RUNNING || st == SAGA_STEP_COMP_BACKOFF;
}

int saga_apply(saga_t *saga, const saga_event_t *ev, int64_t at_ms) {
  if (saga == NULL || ev == NULL)
    return SAGA_CORE_EINVAL;
  saga_step_state_t *st = NULL;
  switch (ev->type) {
  case SAGA_EV_DISPATCHED:
  case SAGA_EV_SUCCEEDED:
  case SAGA_EV_ATTEMPT_FAILED:
  case SAGA_EV_OPERATOR_RETRY:
  case SAGA_EV_PARKED:
  case SAGA_EV_COMPENSATING:
    if (ev->step >= saga->nsteps || ev->action > SAGA_COMPENSATE)
      return SAGA_CORE_EREPLAY;
    st = &saga->steps[ev->step];
    break;
  default:
    break;
  }
  if (ev->type != SAGA_EV_STARTED && saga->status == SAGA_NEW)
    return SAGA_CORE_EREPLAY;
  saga->updated_ms = at_ms;
  switch (ev->type) {
  case SAGA_EV_STARTED:
    if (saga->status != SAGA_NEW || ev->def_name == NULL ||
        strcmp(ev->def_name, saga->def->name) != 0 ||
        ev->def_version != saga->def->version)
      return SAGA_CORE_EREPLAY;
    saga->status = SAGA_RUNNING;
    saga->started_ms = at_ms;
    break;
  case SAGA_EV_DISPATCHED:
    if (ev->action == SAGA_DO) {
      st->status = SAGA_STEP_RUNNING;
      saga->cursor = (uint8_t)saga_def_block_start(saga->def, ev->step);
    } else {
      if (!is_comp_status(st->status))
        st->budget_base = 0;
      st->status = SAGA_STEP_COMP_RUNNING;
    }
    st->attempt = ev->attempt;
    st->timer_ms = ev->until_ms;
    st->flags &= (uint8_t)~SAGA_SF_BY_TIMER;
    break;
  case SAGA_EV_SUCCEEDED:
    if (ev->action == SAGA_DO) {
      st->status = SAGA_STEP_DONE;
      st->order = ++saga->seq;
    } else {
      st->status = SAGA_STEP_COMPENSATED;
    }
    st->timer_ms = 0;
    break;
  case SAGA_EV_ATTEMPT_FAILED:
    if (ev->outcome == SAGA_OUTCOME_TIMEOUT) {
      st->flags |= SAGA_SF_BY_TIMER;
      if (ev->action == SAGA_DO)
        st->flags |= SAGA_SF_UNKNOWN;
    }
    st->timer_ms = ev->until_ms;
    if (ev->until_ms != 0) {
      st->status =
          ev->action == SAGA_DO ? SAGA_STEP_BACKOFF : SAGA_STEP_COMP_BACKOFF;
    } else if (ev->action == SAGA_DO) {
      st->status = SAGA_STEP_FAILED;
      st->order = ++saga->seq;
    } else {
      st->status = SAGA_STEP_COMP_FAILED;
    }
    break;
  case SAGA_EV_COMPENSATING:
    /* Steps waiting to retry forward give up now; running ones drain. */
    saga->status = SAGA_COMPENSATING;
    for (uint32_t i = 0; i < saga->nsteps; i++)
      if (saga->steps[i].status == SAGA_STEP_BACKOFF) {
        saga->steps[i].status = SAGA_STEP_FAILED;
        saga->steps[i].timer_ms = 0;
        saga->steps[i].order = ++saga->seq;
      }
    break;
  case SAGA_EV_COMPLETED:
    saga->status = SAGA_COMPLETED;
    break;
  case SAGA_EV_COMPENSATED:
    saga->status = SAGA_COMPENSATED;
    break;
  case SAGA_EV_PARKED:
    saga->status = SAGA_COMPENSATION_FAILED;
    break;
  case SAGA_EV_OPERATOR_RETRY:
    st->budget_base = st->attempt;
    saga->status = SAGA_COMPENSATING;
    break;
  case SAGA_EV_RESOLVED:
    saga->status = SAGA_COMPENSATED;
    saga->flags |= SAGA_F_RESOLVED;
    break;
  default:
    return SAGA_CORE_EREPLAY;
  }
  return SAGA_CORE_OK;
}

void saga_end_transition(saga_t *saga) { saga->version++; }

/* ---- deciding ---- */

typedef struct {
  saga_t *saga;
  int64_t now;
  saga_rng_t *rng;
  saga_output_t *out;
  const saga_input_t *in;
} run_t;

static void emit(run_t *r, saga_event_t ev) {
  r->out->events[r->out->n_events++] = ev;
  /* Events built here always fit the state they were decided from. */
  (void)saga_apply(r->saga, &ev, r->now);
}

static void effect(saga_output_t *out, saga_effect_t fx) {
  out->effects[out->n_effects++] = fx;
}

static void notify(run_t *r, saga_notify_t what, uint32_t step,
                   saga_action_t action, saga_outcome_t outcome) {
  effect(r->out, (saga_effect_t){.type = SAGA_FX_NOTIFY,
                                 .notify = (uint8_t)what,
                                 .step = (uint8_t)step,
                                 .action = (uint8_t)action,
                                 .outcome = (uint8_t)outcome,
                                 .at_ms = r->now});
}

static void send_effects(saga_output_t *out, uint32_t step,
                         saga_action_t action, uint32_t attempt,
                         int64_t deadline) {
  effect(out, (saga_effect_t){.type = SAGA_FX_SEND,
                              .step = (uint8_t)step,
                              .action = (uint8_t)action,
                              .attempt = (uint16_t)attempt,
                              .at_ms = deadline});
  effect(out, (saga_effect_t){.type = SAGA_FX_TIMER,
                              .timer = SAGA_TIMER_DEADLINE,
                              .step = (uint8_t)step,
                              .action = (uint8_t)action,
                              .attempt = (uint16_t)attempt,
                              .at_ms = deadline});
}

static void backoff_effect(saga_output_t *out, uint32_t step,
                           saga_action_t action, uint32_t attempt,
                           int64_t at) {
  effect(out, (saga_effect_t){.type = SAGA_FX_TIMER,
                              .timer = SAGA_TIMER_BACKOFF,
                              .step = (uint8_t)step,
                              .action = (uint8_t)action,
                              .attempt = (uint16_t)attempt,
                              .at_ms = at});
}

static void dispatch(run_t *r, uint32_t step, saga_action_t action,
                     uint32_t attempt) {
  const saga_step_def_t *d = &r->saga->def->steps[step];
  int64_t deadline =
      r->now + (action == SAGA_DO ? d->timeout_ms : d->comp_timeout_ms);
  emit(r, (saga_event_t){.type = SAGA_EV_DISPATCHED,
                         .step = (uint8_t)step,
                         .action = (uint8_t)action,
                         .attempt = (uint16_t)attempt,
                         .until_ms = deadline});
  send_effects(r->out, step, action, attempt, deadline);
}

static void dispatch_block(run_t *r, uint32_t start) {
  uint32_t n = saga_def_block_len(r->saga->def, start);
  for (uint32_t i = start; i < start + n; i++)
    dispatch(r, i, SAGA_DO, 1);
}

/* Delay before the retry that follows the k-th failed attempt of the
 * current budget (k >= 1): initial * multiplier^(k-1), capped, shortened
 * by up to jitter. At least 1 ms, so a retry time is never 0. */
static int64_t backoff_ms(const saga_retry_policy_t *p, uint32_t k,
                          saga_rng_t *rng) {
  double d = p->initial_backoff_ms;
  for (uint32_t i = 1; i < k && d < p->max_backoff_ms; i++)
    d *= p->multiplier;
  if (d > p->max_backoff_ms)
    d = p->max_backoff_ms;
  if (p->jitter > 0 && rng != NULL)
    d -= d * p->jitter * saga_rng_next(rng);
  int64_t ms = (int64_t)d;
  return ms < 1 ? 1 : ms;
}

static void progress(run_t *r);

static void attempt_failed(run_t *r, uint32_t step, saga_action_t action,
                           saga_outcome_t outcome) {
  saga_t *s = r->saga;
  const saga_step_def_t *d = &s->def->steps[step];
  saga_step_state_t *st = &s->steps[step];
  const saga_retry_policy_t *p = action == SAGA_DO ? &d->retry : &d->comp_retry;
  uint32_t used = (uint32_t)(st->attempt - st->budget_base);
  bool retry = p->max_attempts == 0 || used < p->max_attempts;
  if (action == SAGA_DO) {
    /* A business failure before the pivot is final; after the pivot the
     * saga only goes forward. A saga already compensating retries nothing
     * forward. */
    if (outcome == SAGA_OUTCOME_FAILURE && d->kind != SAGA_STEP_RETRIABLE)
      retry = false;
    if (s->status == SAGA_COMPENSATING)
      retry = false;
  }
  int64_t until = retry ? r->now + backoff_ms(p, used, r->rng) : 0;
  emit(r, (saga_event_t){.type = SAGA_EV_ATTEMPT_FAILED,
                         .step = (uint8_t)step,
                         .action = (uint8_t)action,
                         .attempt = st->attempt,
                         .outcome = (uint8_t)outcome,
                         .until_ms = until,
                         .reason = r->in ? r->in->reason : NULL});
  if (retry)
    backoff_effect(r->out, step, action, st->attempt, until);
  else
    notify(r, SAGA_NOTIFY_STEP_DONE, step, action, outcome);
  progress(r);
}

static void succeeded(run_t *r, uint32_t step, saga_action_t action) {
  const saga_input_t *in = r->in;
  emit(r, (saga_event_t){.type = SAGA_EV_SUCCEEDED,
                         .step = (uint8_t)step,
                         .action = (uint8_t)action,
                         .attempt = r->saga->steps[step].attempt,
                         .outcome = SAGA_OUTCOME_SUCCESS,
                         .payload = in->payload,
                         .payload_len = in->payload_len});
  notify(r, SAGA_NOTIFY_STEP_DONE, step, action, SAGA_OUTCOME_SUCCESS);
  progress(r);
}

/* The next step to compensate: the latest completed one (or the latest
 * whose outcome is unknown) that has a compensation and is not undone. */
static int next_to_compensate(const saga_t *s) {
  int best = -1;
  for (uint32_t i = 0; i < s->nsteps; i++) {
    const saga_step_state_t *st = &s->steps[i];
    bool applied = st->status == SAGA_STEP_DONE ||
                   (st->status == SAGA_STEP_FAILED &&
                    (st->flags & SAGA_SF_UNKNOWN));
    if (!applied || s->def->steps[i].comp_topic == NULL ||
        s->def->steps[i].kind == SAGA_STEP_RETRIABLE)
      continue;
    if (best < 0 || st->order > s->steps[best].order)
      best = (int)i;
  }
  return best;
}

static void progress_compensating(run_t *r) {
  saga_t *s = r->saga;
  for (uint32_t i = 0; i < s->nsteps; i++) {
    if (is_waiting(s->steps[i].status))
      return; /* drain forward attempts in flight; one compensation at a
                 time */
    if (s->steps[i].status == SAGA_STEP_COMP_FAILED) {
      emit(r, (saga_event_t){.type = SAGA_EV_PARKED, .step = (uint8_t)i});
      notify(r, SAGA_NOTIFY_COMPENSATION_FAILED, i, SAGA_COMPENSATE,
             SAGA_OUTCOME_FAILURE);
      return;
    }
  }
  int next = next_to_compensate(s);
  if (next >= 0) {
    dispatch(r, (uint32_t)next, SAGA_COMPENSATE, 1);
    return;
  }
  emit(r, (saga_event_t){.type = SAGA_EV_COMPENSATED});
  notify(r, SAGA_NOTIFY_COMPENSATED, 0, SAGA_COMPENSATE,
         SAGA_OUTCOME_SUCCESS);
}

static void progress(run_t *r) {
  saga_t *s = r->saga;
  if (s->status == SAGA_RUNNING) {
    uint32_t start = s->cursor;
    uint32_t n = saga_def_block_len(s->def, start);
    bool all_done = true;
    for (uint32_t i = start; i < start + n; i++) {
      if (s->steps[i].status == SAGA_STEP_FAILED) {
        emit(r, (saga_event_t){.type = SAGA_EV_COMPENSATING,
                               .step = (uint8_t)i});
        progress_compensating(r);
        return;
      }
      all_done = all_done && s->steps[i].status == SAGA_STEP_DONE;
    }
    if (!all_done)
      return;
    if (start + n < s->nsteps) {
      dispatch_block(r, start + n);
    } else {
      emit(r, (saga_event_t){.type = SAGA_EV_COMPLETED});
      notify(r, SAGA_NOTIFY_COMPLETED, 0, SAGA_DO, SAGA_OUTCOME_SUCCESS);
    }
  } else if (s->status == SAGA_COMPENSATING) {
    progress_compensating(r);
  }
}

static saga_verdict_t on_reply(run_t *r) {
  saga_t *s = r->saga;
  const saga_input_t *in = r->in;
  if (in->action > SAGA_COMPENSATE || in->outcome < SAGA_OUTCOME_SUCCESS ||
      in->outcome > SAGA_OUTCOME_RETRYABLE)
    return SAGA_V_UNEXPECTED;
  uint32_t step = (uint32_t)in->step;
  saga_step_state_t *st = &s->steps[step];
  saga_action_t cur = is_comp_status(st->status) ? SAGA_COMPENSATE : SAGA_DO;
  if (st->status == SAGA_STEP_PENDING || in->attempt == 0)
    return SAGA_V_UNEXPECTED;
  if (in->action != cur)
    return in->action == SAGA_DO ? SAGA_V_LATE : SAGA_V_UNEXPECTED;
  if (in->attempt > st->attempt)
    return SAGA_V_UNEXPECTED;
  if (in->attempt < st->attempt)
    return SAGA_V_LATE;
  if (st->status != SAGA_STEP_RUNNING && st->status != SAGA_STEP_COMP_RUNNING)
    return (st->flags & SAGA_SF_BY_TIMER) ? SAGA_V_LATE : SAGA_V_DUPLICATE;
  if (in->outcome == SAGA_OUTCOME_SUCCESS)
    succeeded(r, step, cur);
  else
    attempt_failed(r, step, cur, (saga_outcome_t)in->outcome);
  return SAGA_V_APPLIED;
}

static saga_verdict_t on_timer(run_t *r) {
  saga_t *s = r->saga;
  const saga_input_t *in = r->in;
  uint32_t step = (uint32_t)in->step;
  saga_step_state_t *st = &s->steps[step];
  uint8_t want;
  if (in->timer == SAGA_TIMER_DEADLINE)
    want = in->action == SAGA_DO ? SAGA_STEP_RUNNING : SAGA_STEP_COMP_RUNNING;
  else if (in->timer == SAGA_TIMER_BACKOFF)
    want = in->action == SAGA_DO ? SAGA_STEP_BACKOFF : SAGA_STEP_COMP_BACKOFF;
  else
    return SAGA_V_STALE_TIMER;
  if (st->status != want || in->attempt != st->attempt)
    return SAGA_V_STALE_TIMER;
  if (r->now < st->timer_ms) {
    /* Fired early: wait on. */
    effect(r->out, (saga_effect_t){.type = SAGA_FX_TIMER,
                                   .timer = in->timer,
                                   .step = (uint8_t)step,
                                   .action = in->action,
                                   .attempt = st->attempt,
                                   .at_ms = st->timer_ms});
    return SAGA_V_STALE_TIMER;
  }
  if (in->timer == SAGA_TIMER_DEADLINE)
    attempt_failed(r, step, (saga_action_t)in->action, SAGA_OUTCOME_TIMEOUT);
  else
    dispatch(r, step, (saga_action_t)in->action, st->attempt + 1u);
  return SAGA_V_APPLIED;
}

static saga_verdict_t on_operator(run_t *r) {
  saga_t *s = r->saga;
  if (s->status != SAGA_COMPENSATION_FAILED)
    return SAGA_V_REJECTED;
  if (r->in->type == SAGA_IN_OPERATOR_RESOLVE) {
    emit(r, (saga_event_t){.type = SAGA_EV_RESOLVED});
    notify(r, SAGA_NOTIFY_COMPENSATED, 0, SAGA_COMPENSATE,
           SAGA_OUTCOME_SUCCESS);
    return SAGA_V_APPLIED;
  }
  for (uint32_t i = 0; i < s->nsteps; i++)
    if (s->steps[i].status == SAGA_STEP_COMP_FAILED) {
      emit(r, (saga_event_t){.type = SAGA_EV_OPERATOR_RETRY,
                             .step = (uint8_t)i,
                             .action = SAGA_COMPENSATE});
      dispatch(r, i, SAGA_COMPENSATE, s->steps[i].attempt + 1u);
      return SAGA_V_APPLIED;
    }
  return SAGA_V_REJECTED;
}

int saga_step(saga_t *saga, const saga_input_t *in, int64_t now,
              saga_rng_t *rng, saga_output_t *out) {
  if (saga == NULL || in == NULL || out == NULL || now < 0)
    return SAGA_CORE_EINVAL;
  out->n_events = 0;
  out->n_effects = 0;
  run_t r = {saga, now, rng, out, in};
  saga_verdict_t v;
  if (in->type == SAGA_IN_START) {
    if (saga->status != SAGA_NEW) {
      v = SAGA_V_DUPLICATE_START;
    } else {
      emit(&r, (saga_event_t){.type = SAGA_EV_STARTED,
                              .def_name = saga->def->name,
                              .def_version = saga->def->version,
                              .payload = in->payload,
                              .payload_len = in->payload_len});
      notify(&r, SAGA_NOTIFY_STARTED, 0, SAGA_DO, SAGA_OUTCOME_SUCCESS);
      dispatch_block(&r, 0);
      v = SAGA_V_APPLIED;
    }
  } else if (saga->status == SAGA_NEW) {
    v = SAGA_V_UNKNOWN_SAGA;
  } else if (in->type == SAGA_IN_OPERATOR_RETRY ||
             in->type == SAGA_IN_OPERATOR_RESOLVE) {
    v = on_operator(&r);
  } else if (in->type != SAGA_IN_REPLY && in->type != SAGA_IN_TIMER) {
    return SAGA_CORE_EINVAL;
  } else if (in->step < 0 || (uint32_t)in->step >= saga->nsteps) {
    v = SAGA_V_UNKNOWN_STEP;
  } else {
    v = in->type == SAGA_IN_REPLY ? on_reply(&r) : on_timer(&r);
  }
  out->verdict = (uint8_t)v;
  if (out->n_events > 0)
    saga_end_transition(saga);
  return SAGA_CORE_OK;
}

/* ---- recovery and queries ---- */

void saga_resume(const saga_t *saga, saga_output_t *out) {
  out->verdict = SAGA_V_APPLIED;
  out->n_events = 0;
  out->n_effects = 0;
  for (uint32_t i = 0; i < saga->nsteps; i++) {
    const saga_step_state_t *st = &saga->steps[i];
    saga_action_t a = is_comp_status(st->status) ? SAGA_COMPENSATE : SAGA_DO;
    if (st->status == SAGA_STEP_RUNNING ||
        st->status == SAGA_STEP_COMP_RUNNING)
      send_effects(out, i, a, st->attempt, st->timer_ms);
    else if (st->status == SAGA_STEP_BACKOFF ||
             st->status == SAGA_STEP_COMP_BACKOFF)
      backoff_effect(out, i, a, st->attempt, st->timer_ms);
  }
}

int saga_idempotency_key(const saga_t *saga, uint32_t step,
                         saga_action_t action, uint32_t attempt, char *buf,
                         size_t len) {
  if (step >= saga->nsteps)
    return -1;
  return snprintf(buf, len, "%.*s/%s/%s/%u", (int)saga->id_len, saga->id,
                  saga->def->steps[step].name,
                  action == SAGA_DO ? "DO" : "COMPENSATE", attempt);
}

bool saga_is_stuck(const saga_t *saga, int64_t now) {
  if (saga->status == SAGA_COMPENSATION_FAILED)
    return true;
  if (saga->status != SAGA_RUNNING && saga->status != SAGA_COMPENSATING)
    return false;
  for (uint32_t i = 0; i < saga->nsteps; i++)
    if (is_waiting(saga->steps[i].status) &&
        now - saga->updated_ms > saga->def->steps[i].stuck_after_ms)
      return true;
  return false;
}

int64_t saga_next_timer(const saga_t *saga) {
  int64_t t = 0;
  for (uint32_t i = 0; i < saga->nsteps; i++) {
    const saga_step_state_t *st = &saga->steps[i];
    if (is_waiting(st->status) && (t == 0 || st->timer_ms < t))
      t = st->timer_ms;
  }
  return t;
}

bool saga_equal(const saga_t *a, const saga_t *b) {
  if (a->def != b->def || a->started_ms != b->started_ms ||
      a->updated_ms != b->updated_ms || a->version != b->version ||
      a->status != b->status || a->flags != b->flags ||
      a->cursor != b->cursor || a->nsteps != b->nsteps || a->seq != b->seq ||
      a->id_len != b->id_len || memcmp(a->id, b->id, a->id_len) != 0)
    return false;
  for (uint32_t i = 0; i < a->nsteps; i++) {
    const saga_step_state_t *x = &a->steps[i];
    const saga_step_state_t *y = &b->steps[i];
    if (x->status != y->status || x->flags != y->flags ||
        x->attempt != y->attempt || x->budget_base != y->budget_base ||
        x->order != y->order || x->timer_ms != y->timer_ms)
      return false;
  }
  return true;
}
