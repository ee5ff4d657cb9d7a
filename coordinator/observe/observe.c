/* sagad's observability glue (see observe.h): engine hooks -> metrics,
 * spans and stuck reports; the admin endpoint wired to the engine. Holds
 * per-saga observer state (trace ids, step send times) in the engine's
 * observer slots, never saga state; decides nothing about sagas. */
#include "observe.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_api.h"
#include "admin_pg.h"
#include "admin_ui.h"
#include "grow.h"
#include "log.h"
#include "metrics.h"
#include "msg_codec.h"
#include "otlp.h"
#include "proc_metrics.h"
#include "saga/version.h"
#include "saga_revision.h"
#include "text.h"

/* ---- per-saga observer state (the engine's observer slot) ---------- */

typedef struct {
  int64_t sent_us; /* 0 = no attempt in flight */
  uint16_t attempt;
  uint8_t action;
  uint8_t met; /* sent by the sagad before (h_met): a span, no latency */
  char span[SAGA_SPAN_ID_SIZE];
} sstep_t;

/* A span closed by a transition not yet durable: exported by h_durable
 * once the engine says the transition is committed (design.md invariant
 * 1: a span is an effect too), dropped with the slot if it never is. */
typedef struct pspan {
  struct pspan *next;
  char trace[SAGA_TRACE_ID_SIZE];
  char span[SAGA_SPAN_ID_SIZE], parent[SAGA_SPAN_ID_SIZE];
  char name[96], step[65], action[16], msg[160];
  bool has_step, has_action, has_msg;
  int status;
  int64_t start_us, end_us;
} pspan_t;

/* A metric update of a transition not yet durable: applied by h_durable
 * with the transition's spans, dropped with the slot if its append fails
 * (the engine then reads the saga back and steps, and reports, the same
 * transition again: counting at once would count it twice). */
typedef struct {
  metric_t *m;
  double v;
  bool observe; /* a histogram observation, else metric_add */
} pmetric_t;

typedef struct sobs {
  pspan_t *pending, **pending_tail; /* in the order they were closed */
  pmetric_t *pm;                    /* pending metric updates */
  size_t npm, cap_pm;
  char trace[SAGA_TRACE_ID_SIZE];
  char saga_span[SAGA_SPAN_ID_SIZE];
  char parent[SAGA_SPAN_ID_SIZE]; /* the starter's span, "" = root */
  char comp_span[SAGA_SPAN_ID_SIZE];
  /* the starter's trace flags, passed on with every command ("01",
   * sampled, when it sent no traceparent); a saga whose starter did not
   * sample its trace exports no span (W3C Trace Context: the caller's
   * sampling decision is kept downstream) */
  char flags[3];
  int64_t started_us, comp_us;
  uint32_t stuck_version; /* version + 1 when reported stuck, 0 = not */
  uint8_t saga_done;
  /* Met after a restart (or a reload): the trace its starter began is
   * being read from its first event (trace_ask). Its spans wait; the
   * first n_durable of them are of committed transitions and go once the
   * trace is known, even when the saga has left memory by then (the slot
   * then waits on the orphans list, with the saga's id and type). */
  uint8_t trace_wait;
  size_t n_durable;
  char *id, *type; /* while trace_wait */
  struct sobs *next_orphan;
  size_t nsteps;
  sstep_t steps[];
} sobs_t;

/* Per saga type: the series touched on every transition, and the scan's
 * counts. */
typedef struct {
  char *name;
  metric_t *started, *completed, *compensated, *parked;
  metric_t *in_flight, *stuck;
  size_t n_in_flight, n_stuck;
} stype_t;

#define NVERDICTS (SM_V_FINISHED + 1)

struct sagad_observe {
  sagad_observe_opts_t o;
  metrics_t *m;
  admin_http_t *http;
  admin_pg_t *pg;
  otlp_t *otlp;
  char *otlp_url;         /* where spans go, for the log */
  uint64_t otlp_said_ms;  /* when a failing export was last logged */
  bool otlp_said;         /* a failing export is logged, not its end */
  uint64_t stop_ms;       /* when sagad_observe_stop ran: the stop began */
  admin_source_t src;   /* what the API reads through (arg = this) */
  admin_source_t pgsrc; /* admin_pg's reads (arg = the admin_pg handle) */
  uv_timer_t scan;
  int scan_on;
  int stopped;
  int pending_closes; /* http (+ admin_pg), otlp, scan timer */
  void (*close_cb)(void *);
  void *close_arg;
  int store_ok;  /* the last batch did not fail for the store */
  /* The store probe: a saga_index read through admin_pg each scan. */
  int pinging;
  uint64_t store_seen; /* uv_now of the last answered probe */
  char store_why[96];  /* why the last probe failed, "" = it did not */
  char host[256];
  /* families */
  metric_family_t *f_started, *f_finished, *f_parked, *f_in_flight, *f_stuck;
  metric_family_t *f_step, *f_retries, *f_timeouts, *f_dlq, *f_anom;
  metric_family_t *f_append, *f_batch, *f_lag, *f_spans, *f_react;
  metric_t *append_s, *batch_n, *react_s;
  metric_t *anom[NVERDICTS];
  uint64_t anom_seen[NVERDICTS];
  metric_t *span_sent, *span_dropped, *span_rejected;
  uint64_t spans_sent_seen, spans_dropped_seen, spans_rejected_seen;
  metric_t *dlq_blocked, *dlq_cut;
  uint64_t dlq_cut_seen;
  metric_t *outs_read;
  uint64_t outs_read_seen;
  metric_t *cmd_resent;
  uint64_t cmd_resent_seen;
  metric_t **lag; /* by partition, as many as the highest one seen */
  size_t nlag, clag;
  proc_metrics_t *proc; /* process_* families */
  /* sagas whose trace is to be read from the store (trace_ask), and those
   * of the request in flight */
  char **want, **asked;
  size_t nwant, cap_want, nasked;
  int tracing;
  sobs_t *orphans; /* slots of sagas gone from memory, waiting for it */
  uint64_t batch_start; /* uv_hrtime of the batch in flight */
  stype_t *types;
  size_t ntypes;
};

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static stype_t *type_of(sagad_observe_t *o, const saga_def_t *def) {
  const char *name = def->name;
  for (size_t i = 0; i < o->ntypes; i++)
    if (!strcmp(o->types[i].name, name))
      return &o->types[i];
  /* First saga of this type here: the HTTP list judges its sagas stuck
   * with the definition's thresholds from now on. */
  if (o->pg)
    (void)admin_pg_stuck_from_def(o->pg, def);
  stype_t *v = realloc(o->types, (o->ntypes + 1) * sizeof *v);
  if (!v)
    return NULL;
  o->types = v;
  stype_t *t = &v[o->ntypes];
  memset(t, 0, sizeof *t);
  if (!(t->name = strdup(name)))
    return NULL;
  o->ntypes++;
  t->started = metric_series(o->f_started, name);
  t->completed = metric_series(o->f_finished, name, "completed");
  t->compensated = metric_series(o->f_finished, name, "compensated");
  t->parked = metric_series(o->f_parked, name);
  t->in_flight = metric_series(o->f_in_flight, name);
  t->stuck = metric_series(o->f_stuck, name);
  return t;
}

/* ---- trace ids that survive a restart ------------------------------- */

static uint64_t fnv1a(uint64_t h, const char *s) {
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* A saga's own trace id when its starter gave none, and its saga span's
 * id in a trace: functions of the saga id (and the trace), so the sagad
 * that recovers the saga names them as the one that started it did, and
 * the spans of both join one trace under one saga span. */
/* v as 16 lower-case hex digits ("%016llx", without snprintf: every
 * saga derives its ids). */
static void hex16(uint64_t v, char *out) {
  for (int i = 15; i >= 0; i--, v >>= 4)
    out[i] = "0123456789abcdef"[v & 15];
}

static void derive_trace(const char *id, char out[SAGA_TRACE_ID_SIZE]) {
  uint64_t a = fnv1a(fnv1a(0xcbf29ce484222325ULL, "saga trace:"), id);
  uint64_t b = fnv1a(fnv1a(0x84222325cbf29ce4ULL, "saga trace 2:"), id);
  hex16(a, out);
  hex16(a || b ? b : 1, out + 16);
  out[32] = '\0';
}

static void derive_span(const char *trace, const char *id,
                        char out[SAGA_SPAN_ID_SIZE]) {
  uint64_t h = fnv1a(fnv1a(fnv1a(0xcbf29ce484222325ULL, "saga span:"), trace),
                     id);
  hex16(h ? h : 1, out);
  out[16] = '\0';
}

/* Queue id for trace_ask. Out of memory: the saga keeps its own trace. */
static bool want_trace(sagad_observe_t *o, const char *id) {
  if (SAGA_GROW(o->want, o->cap_want, o->nwant + 1, 64) != 0)
    return false;
  if (!(o->want[o->nwant] = strdup(id)))
    return false;
  o->nwant++;
  return true;
}

/* The slot of a saga, created on first use. starting: the saga is being
 * started by this transition (its Started event sets the trace); else it
 * was met after a restart, a reload or a rebalance, and its starter's
 * trace is read back from the store when spans are exported. */
static sobs_t *obs_get(sagad_observe_t *o, void **slot, const sm_t *s,
                       bool starting) {
  if (!*slot) {
    sobs_t *b = calloc(1, sizeof *b + s->nsteps * sizeof(sstep_t));
    if (!b)
      return NULL;
    b->nsteps = s->nsteps;
    memcpy(b->flags, "01", sizeof b->flags);
    derive_trace(s->id, b->trace);
    derive_span(b->trace, s->id, b->saga_span);
    b->started_us = s->started_ms * 1000;
    if (!starting && o->otlp && o->pg && !o->stopped) {
      b->id = strdup(s->id);
      b->type = strdup(s->def->name);
      b->trace_wait = b->id && b->type && want_trace(o, s->id);
    }
    *slot = b;
  }
  return *slot;
}

/* ---- metric updates held until the transition is durable ------------ */

/* Hold an update of m (metric_add of v, or an observation) until h_durable.
 * Out of memory: the update is lost, as a failed registration loses its
 * series. */
static void defer(sobs_t *b, metric_t *m, double v, bool observe) {
  if (!m)
    return;
  if (b->npm == b->cap_pm) {
    size_t cap = b->cap_pm ? 2 * b->cap_pm : 8;
    pmetric_t *pm = realloc(b->pm, cap * sizeof *pm);
    if (!pm)
      return;
    b->pm = pm;
    b->cap_pm = cap;
  }
  b->pm[b->npm++] = (pmetric_t){m, v, observe};
}

static void count(sobs_t *b, metric_t *m) { defer(b, m, 1, false); }

/* Apply the held updates (apply false: drop them). Their array is freed:
 * a saga waiting between transitions holds none (200 bytes less per saga
 * in flight). */
static void flush_metrics(sobs_t *b, bool apply) {
  for (size_t i = 0; apply && i < b->npm; i++) {
    if (b->pm[i].observe)
      metric_observe(b->pm[i].m, b->pm[i].v);
    else
      metric_add(b->pm[i].m, b->pm[i].v);
  }
  free(b->pm);
  b->pm = NULL;
  b->npm = b->cap_pm = 0;
}

/* ---- spans ------------------------------------------------------------ */

/* Whether the saga's trace is sampled: bit 0 of its flags. */
static bool sampled(const sobs_t *b) {
  return (saga__hexval(b->flags[1]) & 1) != 0;
}

/* A span ends now: kept in the saga's slot until its transition is
 * durable (h_durable). Out of memory: the span is lost, like a full
 * exporter queue would lose it; so is a span of a saga whose starter did
 * not sample its trace. */
static void emit(sagad_observe_t *o, sobs_t *b, const char *name,
                 const char *span, const char *parent, int64_t start_us,
                 const char *step, const char *action, int status,
                 const char *msg) {
  if (!o->otlp || !b->trace[0] || !span[0])
    return; /* no ids: randomness failed */
  if (!sampled(b))
    return;
  pspan_t *p = calloc(1, sizeof *p);
  if (!p)
    return;
  memcpy(p->trace, b->trace, sizeof p->trace);
  memcpy(p->span, span, sizeof p->span);
  memcpy(p->parent, parent, sizeof p->parent);
  snprintf(p->name, sizeof p->name, "%s", name);
  snprintf(p->step, sizeof p->step, "%s", step ? step : "");
  snprintf(p->action, sizeof p->action, "%s", action ? action : "");
  snprintf(p->msg, sizeof p->msg, "%s", msg ? msg : "");
  p->has_step = step != NULL;
  p->has_action = action != NULL;
  p->has_msg = msg != NULL;
  p->status = status;
  p->start_us = start_us;
  p->end_us = wall_us();
  if (!b->pending_tail)
    b->pending_tail = &b->pending;
  *b->pending_tail = p;
  b->pending_tail = &p->next;
}

/* Free the first max spans a slot holds, exporting them first when o
 * (saga id and type for their attributes). */
static void flush_pending(sagad_observe_t *o, sobs_t *b, const char *id,
                          const char *type, size_t max) {
  pspan_t *p = b->pending, *next;
  for (; p && max > 0; p = next, max--) {
    next = p->next;
    if (o && o->otlp) {
      otlp_span_t sp = {.name = p->name,
                        .start_us = p->start_us,
                        .end_us = p->end_us,
                        .saga_id = id,
                        .saga_type = type,
                        .saga_step = p->has_step ? p->step : NULL,
                        .saga_action = p->has_action ? p->action : NULL,
                        .status = p->status,
                        .status_message = p->has_msg ? p->msg : NULL};
      memcpy(sp.trace_id, p->trace, sizeof sp.trace_id);
      memcpy(sp.span_id, p->span, sizeof sp.span_id);
      memcpy(sp.parent_id, p->parent, sizeof sp.parent_id);
      (void)otlp_emit(o->otlp, &sp);
    }
    free(p);
  }
  b->pending = p;
  if (!p)
    b->pending_tail = &b->pending;
}

/* Free a slot and whatever it still holds (nothing is exported). */
static void slot_free(sobs_t *b) {
  flush_pending(NULL, b, NULL, NULL, SIZE_MAX);
  free(b->pm);
  free(b->id);
  free(b->type);
  free(b);
}

static void saga_span(sagad_observe_t *o, sobs_t *b, int status,
                      const char *msg) {
  if (b->saga_done)
    return;
  b->saga_done = 1;
  emit(o, b, "saga", b->saga_span, b->parent, b->started_us, NULL, NULL, status,
       msg);
}

static void comp_span(sagad_observe_t *o, sobs_t *b, int status,
                      const char *msg) {
  if (!b->comp_span[0])
    return;
  emit(o, b, "compensation", b->comp_span, b->saga_span, b->comp_us, NULL, NULL,
       status, msg);
  b->comp_span[0] = '\0';
}

static const char *outcome_text(int outcome) {
  switch (outcome) {
  case SM_OUTCOME_FAILURE:
    return "failure";
  case SM_OUTCOME_RETRYABLE:
    return "retryable";
  case SM_OUTCOME_TIMEOUT:
    return "timeout";
  default:
    return "success";
  }
}

/* An attempt was decided: latency, timeouts, its span. */
static void attempt_done(sagad_observe_t *o, sobs_t *b, const sm_t *s,
                         const sm_event_t *ev) {
  if (ev->step >= b->nsteps)
    return;
  sstep_t *st = &b->steps[ev->step];
  const char *step = s->def->steps[ev->step].name;
  const char *action = ev->action == SM_COMPENSATE ? "compensate" : "do";
  if (ev->type == SM_EV_ATTEMPT_FAILED &&
      ev->outcome == SM_OUTCOME_TIMEOUT)
    count(b, metric_series(o->f_timeouts, s->def->name, step));
  if (!st->sent_us || st->attempt != ev->attempt || st->action != ev->action)
    return; /* sent before a restart and not met: no start time */
  int64_t now = wall_us();
  /* the step's latency is this sagad's: an attempt the one before sent
   * (its time from that sagad's clock, the downtime in it) gets its span
   * alone */
  if (!st->met)
    defer(b, metric_series(o->f_step, s->def->name, step, action),
          (double)(now - st->sent_us) / 1e6, true);
  int64_t sent_us = st->sent_us;
  st->sent_us = 0;
  if (!o->otlp)
    return; /* no exporter: the span would be dropped (emit) */
  char name[96];
  snprintf(name, sizeof name, "%s %s",
           ev->action == SM_COMPENSATE ? "compensate" : "step", step);
  int ok = ev->type == SM_EV_SUCCEEDED;
  char msg[160];
  snprintf(msg, sizeof msg, "%s%s%s", outcome_text(ev->outcome),
           ev->reason ? ": " : "", ev->reason ? ev->reason : "");
  emit(o, b, name, st->span,
       ev->action == SM_COMPENSATE && b->comp_span[0] ? b->comp_span
                                                      : b->saga_span,
       sent_us, step, action, ok ? OTLP_STATUS_OK : OTLP_STATUS_ERROR,
       ok ? NULL : msg);
}

/* ---- engine hooks ------------------------------------------------------ */

static void h_events(void *arg, void **slot, const sm_t *s,
                     const sm_event_t *ev, size_t n, int64_t now,
                     const char *tp) {
  (void)now;
  sagad_observe_t *o = arg;
  stype_t *t = type_of(o, s->def);
  int fresh = !*slot;
  bool starting = false;
  for (size_t i = 0; i < n; i++)
    starting |= ev[i].type == SM_EV_STARTED;
  sobs_t *b = obs_get(o, slot, s, starting);
  if (!b || !t)
    return;
  for (size_t i = 0; i < n; i++) {
    const sm_event_t *e = &ev[i];
    switch (e->type) {
    case SM_EV_STARTED:
      count(b, t->started);
      if (fresh) {
        b->started_us = wall_us();
        if (!tp ||
            saga__traceparent_parse(tp, b->trace, b->parent, b->flags) != 0)
          b->parent[0] = '\0';
        derive_span(b->trace, s->id, b->saga_span);
      }
      break;
    case SM_EV_DISPATCHED:
      if (e->step < b->nsteps) {
        sstep_t *st = &b->steps[e->step];
        st->sent_us = wall_us();
        st->met = 0;
        st->attempt = e->attempt;
        st->action = e->action;
        (void)saga__span_id_new(st->span);
        if (e->attempt > 1)
          count(b, metric_series(o->f_retries, s->def->name,
                                 s->def->steps[e->step].name));
      }
      break;
    case SM_EV_SUCCEEDED:
    case SM_EV_ATTEMPT_FAILED:
      attempt_done(o, b, s, e);
      break;
    case SM_EV_COMPENSATING:
    case SM_EV_CANCEL_REQUESTED:
      if (!b->comp_span[0]) {
        (void)saga__span_id_new(b->comp_span);
        b->comp_us = wall_us();
      }
      break;
    case SM_EV_COMPLETED:
      count(b, t->completed);
      saga_span(o, b, OTLP_STATUS_OK, NULL);
      break;
    case SM_EV_COMPENSATED:
      count(b, t->compensated);
      comp_span(o, b, OTLP_STATUS_OK, NULL);
      saga_span(o, b, OTLP_STATUS_ERROR, "compensated");
      break;
    case SM_EV_RESOLVED:
      /* An operator closed a parked saga: it finishes now, compensated. */
      count(b, t->compensated);
      saga_span(o, b, OTLP_STATUS_ERROR, "compensated");
      break;
    case SM_EV_PARKED:
      /* Parked is not finished: an operator retry or resolve ends it. */
      count(b, t->parked);
      comp_span(o, b, OTLP_STATUS_ERROR, "compensation failed");
      saga_span(o, b, OTLP_STATUS_ERROR, "compensation failed");
      break;
    default:
      break;
    }
  }
}

/* A saga met from the store (recovery, a rebalance, a read-back) before
 * it resumes: its attempts in flight get their spans, started when they
 * were sent -- a deadline less the step's timeout, as the machine set it
 * -- and a compensating saga its compensation span, started with its
 * first compensation still in flight (else now). Their ends come with
 * their replies or deadlines, as for attempts this sagad sent. */
static void h_met(void *arg, void **slot, const sm_t *s) {
  sagad_observe_t *o = arg;
  sobs_t *b = obs_get(o, slot, s, false);
  if (!b)
    return;
  int64_t comp_us = 0;
  for (size_t i = 0; i < b->nsteps && i < s->nsteps; i++) {
    const sm_step_state_t *ss = &s->steps[i];
    bool comp = ss->status == SM_STEP_COMP_RUNNING;
    if ((ss->status != SM_STEP_RUNNING && !comp) || ss->timer_ms <= 0 ||
        b->steps[i].sent_us)
      continue;
    int64_t timeout = comp ? s->def->steps[i].comp_timeout_ms
                           : s->def->steps[i].timeout_ms;
    int64_t sent_ms = ss->timer_ms - timeout;
    if (sent_ms < s->started_ms || sent_ms > ss->timer_ms)
      continue; /* a deadline the definition's timeout does not explain */
    sstep_t *st = &b->steps[i];
    st->sent_us = sent_ms * 1000;
    st->attempt = ss->attempt;
    st->action = comp ? SM_COMPENSATE : SM_DO;
    st->met = 1;
    (void)saga__span_id_new(st->span);
    if (comp && (!comp_us || st->sent_us < comp_us))
      comp_us = st->sent_us;
  }
  if (s->status == SM_COMPENSATING && !b->comp_span[0]) {
    (void)saga__span_id_new(b->comp_span);
    b->comp_us = comp_us ? comp_us : wall_us();
  }
}

static void h_command(void *arg, void *slot, const sm_t *s, unsigned step,
                      int action, char tp[SAGA_TRACEPARENT_SIZE]) {
  (void)arg;
  (void)s;
  (void)action;
  const sobs_t *b = slot;
  /* the trace is not known yet: no traceparent rather than a wrong one */
  if (b && !b->trace_wait && step < b->nsteps && b->steps[step].span[0])
    saga__traceparent_format(tp, b->trace, b->steps[step].span, b->flags);
}

/* The saga's transitions are committed: their counts and spans may go. */
static void h_durable(void *arg, void *slot, const sm_t *s) {
  if (!slot)
    return;
  sobs_t *b = slot;
  flush_metrics(b, true);
  if (b->trace_wait) { /* the spans go once the trace is known */
    b->n_durable = 0;
    for (const pspan_t *p = b->pending; p; p = p->next)
      b->n_durable++;
  } else {
    flush_pending(arg, b, s->id, s->def->name, SIZE_MAX);
  }
}

static void h_forget(void *arg, void *slot) {
  sagad_observe_t *o = arg;
  sobs_t *b = slot;
  if (!b)
    return;
  flush_metrics(b, false); /* never durable: not counted */
  if (o && !o->stopped && b->trace_wait && b->n_durable) {
    /* committed spans waiting for the saga's trace outlive it; the rest
     * were never durable */
    pspan_t **pp = &b->pending;
    for (size_t i = 0; *pp && i < b->n_durable; i++)
      pp = &(*pp)->next;
    for (pspan_t *p = *pp, *next; p; p = next) {
      next = p->next;
      free(p);
    }
    *pp = NULL;
    b->pending_tail = pp;
    b->next_orphan = o->orphans;
    o->orphans = b;
    return;
  }
  slot_free(b);
}

static void h_dead_letter(void *arg, const char *reason) {
  sagad_observe_t *o = arg;
  metric_inc(metric_series(o->f_dlq, reason));
}

static void h_submit(void *arg, size_t streams, size_t records) {
  (void)records;
  sagad_observe_t *o = arg;
  o->batch_start = uv_hrtime();
  metric_observe(o->batch_n, (double)streams);
}

static void h_reply_command(void *arg, int64_t received_us) {
  sagad_observe_t *o = arg;
  int64_t d = (int64_t)(uv_hrtime() / 1000) - received_us;
  metric_observe(o->react_s, (double)(d > 0 ? d : 0) / 1e6);
}

static void h_batch_done(void *arg, int status) {
  sagad_observe_t *o = arg;
  o->store_ok = status != SAGAD_STORE_RETRY;
  if (o->batch_start)
    metric_observe(o->append_s,
                   (double)(uv_hrtime() - o->batch_start) / 1e9);
  o->batch_start = 0;
}

/* ---- stuck scan, gauges computed on demand ----------------------------- */

typedef struct {
  sagad_observe_t *o;
  int64_t now_ms;
} scan_t;

static void scan_one(void *arg, const sm_t *s, int32_t partition,
                     void **slot) {
  (void)partition;
  scan_t *c = arg;
  if (sm_is_terminal(s))
    return;
  stype_t *t = type_of(c->o, s->def);
  if (!t)
    return;
  t->n_in_flight++;
  if (!sm_is_stuck(s, c->now_ms))
    return;
  t->n_stuck++;
  sobs_t *b = obs_get(c->o, slot, s, false);
  if (!b || b->stuck_version == s->version + 1)
    return; /* reported once until it moves */
  b->stuck_version = s->version + 1;
  int cur = sm_current_step(s);
  const char *step = cur >= 0 ? s->def->steps[cur].name : NULL;
  SLOG_WARN(s->id, step, "stuck: no progress for %lld ms (%s)",
            (long long)(c->now_ms - s->updated_ms),
            sm_status_name((sm_status_t)s->status));
}

static void scan(sagad_observe_t *o) {
  for (size_t i = 0; i < o->ntypes; i++)
    o->types[i].n_in_flight = o->types[i].n_stuck = 0;
  scan_t c = {o, wall_us() / 1000};
  sagad_engine_foreach(o->o.engine, scan_one, &c);
  for (size_t i = 0; i < o->ntypes; i++) {
    metric_set(o->types[i].in_flight, (double)o->types[i].n_in_flight);
    metric_set(o->types[i].stuck, (double)o->types[i].n_stuck);
  }
}

/* A saga_index read answered or not: 404 (no saga "") is an answer. */
static void ping_done(void *arg, int status, const admin_saga_row_t *row,
                      const char *err) {
  (void)row;
  sagad_observe_t *o = arg;
  o->pinging = 0;
  if (status != 503) {
    o->store_seen = uv_now(o->o.loop);
    o->store_why[0] = '\0';
  } else {
    snprintf(o->store_why, sizeof o->store_why, "%s",
             err ? err : "no answer");
  }
}

/* ---- the trace of a saga met after a restart ------------------------- */

/* The trace of saga s is known: tp, the traceparent its first event was
 * stored with ("" or NULL: the starter gave none, or the store could not
 * say; the saga's own trace stays). Its held spans move into that trace
 * and go if their transitions are durable. */
static void trace_known(sagad_observe_t *o, sobs_t *b, const char *tp) {
  char old[SAGA_SPAN_ID_SIZE];
  memcpy(old, b->saga_span, sizeof old);
  if (tp && *tp &&
      saga__traceparent_parse(tp, b->trace, b->parent, b->flags) == 0)
    derive_span(b->trace, b->id, b->saga_span);
  for (pspan_t *p = b->pending; p; p = p->next) {
    memcpy(p->trace, b->trace, sizeof p->trace);
    if (!strcmp(p->span, old)) { /* the saga span itself */
      memcpy(p->span, b->saga_span, sizeof p->span);
      memcpy(p->parent, b->parent, sizeof p->parent);
    } else if (!strcmp(p->parent, old)) {
      memcpy(p->parent, b->saga_span, sizeof p->parent);
    }
  }
  b->trace_wait = 0;
  /* held spans of a trace its starter did not sample are only freed */
  flush_pending(sampled(b) ? o : NULL, b, b->id, b->type, b->n_durable);
  b->n_durable = 0;
}

typedef struct {
  sagad_observe_t *o;
  const char *const *tps; /* NULL: unknown */
  bool all;               /* every waiting saga, asked or not */
} trace_fill_t;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* b's trace, if f answers it: true when it did. */
static bool fill(trace_fill_t *f, sobs_t *b) {
  if (!b || !b->trace_wait)
    return false;
  const char *key = b->id;
  char **hit = f->o->nasked ? bsearch(&key, f->o->asked, f->o->nasked,
                                      sizeof(char *), cmp_str)
                            : NULL;
  if (!hit && !f->all)
    return false;
  trace_known(f->o, b, hit && f->tps ? f->tps[hit - f->o->asked] : NULL);
  return true;
}

static void fill_one(void *arg, const sm_t *s, int32_t partition,
                     void **slot) {
  (void)s;
  (void)partition;
  (void)fill(arg, *slot);
}

/* Every saga of f in memory, then those gone from it. */
static void fill_all(trace_fill_t *f) {
  if (f->o->o.engine)
    sagad_engine_foreach(f->o->o.engine, fill_one, f);
  for (sobs_t **pp = &f->o->orphans; *pp;) {
    sobs_t *b = *pp;
    if (fill(f, b)) {
      *pp = b->next_orphan;
      slot_free(b);
    } else {
      pp = &b->next_orphan;
    }
  }
}

static void trace_ask(sagad_observe_t *o);

/* admin_pg_traceparents answered: tps[i] is asked[i]'s (asked was sorted
 * before the request). */
static void traces_done(void *arg, int status, const char *const *tps,
                        size_t n, const char *err) {
  sagad_observe_t *o = arg;
  o->tracing = 0;
  if (status != 200)
    LOG_DEBUG("could not read the traces of %zu recovered sagas: %s",
              o->nasked, err ? err : "");
  trace_fill_t f = {o, status == 200 && n == o->nasked ? tps : NULL, false};
  if (!o->stopped)
    fill_all(&f);
  for (size_t i = 0; i < o->nasked; i++)
    free(o->asked[i]);
  free(o->asked);
  o->asked = NULL;
  o->nasked = 0;
  if (status == 200)
    trace_ask(o); /* the next ones at once (after a refusal: next scan) */
}

/* Ask the store for the traces of up to 256 wanted sagas (one request at
 * a time; from the scan timer or the previous answer, never inside an
 * engine hook, since the answer walks the engine's sagas). */
static void trace_ask(sagad_observe_t *o) {
  if (o->tracing || !o->nwant || !o->pg || o->stopped)
    return;
  size_t n = o->nwant < 256 ? o->nwant : 256;
  o->asked = malloc(n * sizeof *o->asked);
  if (!o->asked)
    return;
  memcpy(o->asked, o->want + (o->nwant - n), n * sizeof *o->asked);
  o->nasked = n;
  o->nwant -= n;
  qsort(o->asked, n, sizeof *o->asked, cmp_str);
  o->tracing = 1;
  admin_pg_traceparents(o->pg, (const char *const *)o->asked, n, traces_done,
                        o);
}

static void otlp_watch(sagad_observe_t *o);

static void on_scan(uv_timer_t *h) {
  sagad_observe_t *o = h->data;
  scan(o);
  otlp_watch(o);
  trace_ask(o);
  if (!o->pinging && o->pg) {
    o->pinging = 1;
    admin_pg_lookup(o->pg, "", ping_done, o);
  }
}

static void add_delta(metric_t *m, uint64_t now, uint64_t *seen) {
  if (now > *seen)
    metric_add(m, (double)(now - *seen));
  *seen = now;
}

/* Consumer lag from librdkafka's cached high watermarks and positions:
 * no broker round trip, so it can run on the loop at every scrape. A
 * partition nothing was taken from since its assignment shows 0. */
static void refresh_lag(sagad_observe_t *o) {
  rd_kafka_t *rk = sagad_broker_kafka_consumer(o->o.broker);
  rd_kafka_topic_partition_list_t *parts = NULL;
  if (!rk || rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      !parts) {
    if (parts)
      rd_kafka_topic_partition_list_destroy(parts);
    return;
  }
  for (size_t i = 0; i < o->nlag; i++)
    metric_set(o->lag[i], 0);
  rd_kafka_position(rk, parts);
  for (int i = 0; i < parts->cnt; i++) {
    rd_kafka_topic_partition_t *p = &parts->elems[i];
    int64_t lo = -1, hi = -1;
    if (p->partition < 0 ||
        rd_kafka_get_watermark_offsets(rk, p->topic, p->partition, &lo,
                                       &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0)
      continue;
    size_t need = (size_t)p->partition + 1;
    if (need > o->nlag) {
      if (SAGA_GROW(o->lag, o->clag, need, 64) != 0)
        continue; /* out of memory: that partition's series waits */
      memset(o->lag + o->nlag, 0, (need - o->nlag) * sizeof *o->lag);
      o->nlag = need;
    }
    /* No position yet: nothing taken from the partition since it was
     * assigned, so its committed offset (not read here: a broker round
     * trip) is where it stands. A quiet partition after a restart is not
     * behind by all that retention holds (lo, as it was counted, set off
     * SagaNoProgress on an idle system); one with a backlog has a position
     * as soon as its first message is taken. */
    int64_t pos = p->offset >= 0 ? p->offset : hi;
    if (!o->lag[p->partition]) {
      char label[16];
      snprintf(label, sizeof label, "%d", (int)p->partition);
      o->lag[p->partition] = metric_series(o->f_lag, label);
    }
    metric_set(o->lag[p->partition], (double)(hi > pos ? hi - pos : 0));
  }
  rd_kafka_topic_partition_list_destroy(parts);
}

static void on_collect(metrics_t *m, void *arg) {
  (void)m;
  sagad_observe_t *o = arg;
  scan(o);
  const sagad_counters_t *c = sagad_engine_counters(o->o.engine);
  for (int v = 1; v < NVERDICTS; v++)
    add_delta(o->anom[v], c->anomalies[v], &o->anom_seen[v]);
  metric_set(o->dlq_blocked, (double)c->dead_letters_blocked);
  add_delta(o->dlq_cut, c->dead_letters_truncated, &o->dlq_cut_seen);
  add_delta(o->outs_read, c->outputs_read_back, &o->outs_read_seen);
  add_delta(o->cmd_resent, c->commands_resent, &o->cmd_resent_seen);
  if (o->otlp) {
    otlp_stats_t st;
    otlp_stats(o->otlp, &st);
    add_delta(o->span_sent, st.sent, &o->spans_sent_seen);
    add_delta(o->span_dropped, st.dropped, &o->spans_dropped_seen);
    add_delta(o->span_rejected, st.rejected, &o->spans_rejected_seen);
  }
  refresh_lag(o);
  proc_metrics_refresh(o->proc);
}

static const double batch_bounds[] = {1,  2,   5,   10,  20,
                                      50, 100, 200, 500, 1000};
/* Fine around a durable commit and the coordinator's own reaction time (a
 * commit is ~0.2-2 ms with fsync on a local disk), so histogram_quantile
 * reads p50 and p99 closely: with metrics_latency_buckets, whose first
 * bound is 1 ms, every commit fell in one bucket and its quantiles were
 * interpolated, not measured. */
static const double fine_bounds[] = {
    0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008,
    0.0009, 0.001,  0.00125, 0.0015, 0.00175, 0.002, 0.0025, 0.003,
    0.004,  0.005,  0.0075, 0.01,   0.025,  0.05,  0.1,    0.25,
    0.5,    1,      2.5,    10};

static int register_metrics(sagad_observe_t *o) {
  metrics_t *m = o->m;
  o->f_started = metrics_counter(m, "saga_started_total",
                                 "Sagas started, by type.", "saga_type");
  o->f_finished = metrics_counter(
      m, "saga_finished_total",
      "Sagas that reached their end, once each: completed or compensated "
      "(an operator's resolve included).",
      "saga_type,outcome");
  o->f_parked = metrics_counter(
      m, "saga_parked_total",
      "Times a saga parked in compensation_failed for an operator (a saga "
      "retried and parked again counts again; it is not finished).",
      "saga_type");
  o->f_in_flight = metrics_gauge(m, "saga_in_flight",
                                 "Sagas in memory not in a terminal state.",
                                 "saga_type");
  o->f_stuck = metrics_gauge(
      m, "saga_stuck",
      "Sagas without progress past their step's stuck threshold, and "
      "parked sagas.",
      "saga_type");
  o->f_step = metrics_histogram(
      m, "saga_step_duration_seconds",
      "Command sent to the reply or deadline that decided the attempt.",
      "saga_type,step,action", metrics_latency_buckets,
      metrics_latency_nbuckets);
  o->f_retries = metrics_counter(m, "saga_step_retries_total",
                                 "Attempts after the first, by step.",
                                 "saga_type,step");
  o->f_timeouts = metrics_counter(m, "saga_step_timeouts_total",
                                  "Attempts decided by their deadline.",
                                  "saga_type,step");
  o->f_dlq = metrics_counter(m, "saga_dead_letters_total",
                             "Inputs sent to the dead-letter topic.",
                             "reason");
  /* each class at 0 from the start: a series born at its first increment
   * is first seen at 1, and increase() over it is 0 (the first dead letter
   * after a restart would raise no alert) */
  static const char *const dlq_classes[] = {"undecodable", "unknown_type",
                                            "input_too_large"};
  for (size_t i = 0; i < sizeof dlq_classes / sizeof *dlq_classes; i++)
    metric_series(o->f_dlq, dlq_classes[i]);
  o->dlq_blocked = metric_series(metrics_gauge(
      m, "saga_dead_letters_blocked",
      "Dead letters not yet written (the dead-letter topic refuses them): "
      "their inputs' offsets are not committed; alert on > 0.",
      NULL));
  o->dlq_cut = metric_series(metrics_counter(
      m, "saga_dead_letters_truncated_total",
      "Dead letters written with only a prefix of the input (it did not "
      "fit the producer or the broker).",
      NULL));
  o->outs_read = metric_series(metrics_counter(
      m, "saga_outputs_read_back_total",
      "Sagas whose step outputs the output cache had dropped "
      "(outputs.cache_bytes), read back from the store to build a "
      "command: a steady rise means the cache is too small for the sagas "
      "that move.",
      NULL));
  o->cmd_resent = metric_series(metrics_counter(
      m, "saga_commands_resent_total",
      "Commands produced again, the same attempt, after the producer "
      "reported their delivery failed (the saga still waited for that "
      "attempt).",
      NULL));
  o->f_anom = metrics_counter(
      m, "saga_anomalies_total",
      "Inputs that changed nothing (duplicates, late replies, ...), by "
      "verdict.",
      "verdict");
  o->f_append = metrics_histogram(m,
                                  "saga_eventstore_append_duration_seconds",
                                  "One group-commit batch, submit to "
                                  "durable.",
                                  NULL, fine_bounds,
                                  sizeof fine_bounds / sizeof fine_bounds[0]);
  o->f_batch = metrics_histogram(
      m, "saga_eventstore_batch_sagas", "Sagas per group-commit batch.", NULL,
      batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
  o->f_react = metrics_histogram(
      m, "saga_reply_to_command_duration_seconds",
      "A reply consumed to the next command produced (stepping, the "
      "durable append and its commit included).",
      NULL, fine_bounds, sizeof fine_bounds / sizeof fine_bounds[0]);
  o->f_lag = metrics_gauge(m, "saga_inbox_lag_messages",
                           "Inbox messages behind the high watermark, by "
                           "partition this sagad consumes.",
                           "partition");
  o->f_spans = metrics_counter(m, "saga_trace_spans_total",
                               "Trace spans exported (sent), dropped, or "
                               "refused by the collector (rejected).",
                               "result");
  if (!o->f_started || !o->f_finished || !o->f_parked || !o->f_in_flight ||
      !o->f_stuck || !o->f_step || !o->f_retries || !o->f_timeouts ||
      !o->f_dlq || !o->f_anom || !o->f_append || !o->f_batch || !o->f_lag ||
      !o->f_spans || !o->f_react)
    return -1;
  o->react_s = metric_series(o->f_react);
  o->append_s = metric_series(o->f_append);
  o->batch_n = metric_series(o->f_batch);
  for (int v = 1; v < NVERDICTS; v++)
    o->anom[v] =
        metric_series(o->f_anom, sm_verdict_name((sm_verdict_t)v));
  /* The usual build-info gauge: constant 1, the version and the source
   * revision it was built from as labels. */
  metric_family_t *build = metrics_gauge(
      m, "saga_build_info",
      "The running sagad's version and source revision (always 1).",
      "version,revision");
  metric_t *build_s =
      build ? metric_series(build, SAGA_VERSION, SAGA_REVISION) : NULL;
  if (!build_s || !(o->proc = proc_metrics_new(m)))
    return -1;
  metric_set(build_s, 1);
  o->span_sent = metric_series(o->f_spans, "sent");
  o->span_dropped = metric_series(o->f_spans, "dropped");
  o->span_rejected = metric_series(o->f_spans, "rejected");
  metrics_on_collect(m, on_collect, o);
  return 0;
}

/* ---- admin source: readiness and POST /sagas/{type} -------------------- */

/* A store probe answered longer ago than this: the store counts as down
 * (the probe runs each scan, bounded by admin_pg's 5 s timeouts). */
#define STORE_FRESH_MS 6000

static void src_readiness(void *arg, admin_readiness_t *r) {
  sagad_observe_t *o = arg;
  char why[sizeof r->detail - 8];
  /* The store answers: the last batch did not fail for it and a probe was
   * answered within STORE_FRESH_MS. */
  bool fresh = uv_now(o->o.loop) - o->store_seen <= STORE_FRESH_MS;
  r->store = o->store_ok && fresh;
  r->kafka = sagad_broker_kafka_up(o->o.broker, why, sizeof why);
  r->partitions = sagad_engine_partitions(o->o.engine) > 0;
  uint64_t blocked = sagad_engine_counters(o->o.engine)->dead_letters_blocked;
  r->dlq_blocked = blocked > 0;
  if (!r->kafka)
    snprintf(r->detail, sizeof r->detail, "kafka: %s", why);
  else if (!r->store)
    snprintf(r->detail, sizeof r->detail, "store: %s",
             o->store_why[0] ? o->store_why
             : fresh         ? "the last batch failed"
                             : "no answer from saga_index");
  else if (blocked)
    snprintf(r->detail, sizeof r->detail,
             "%llu dead letters cannot be written to %s: their inbox "
             "offsets wait",
             (unsigned long long)blocked, o->o.cfg->topic_dlq);
  else
    snprintf(r->detail, sizeof r->detail, "%zu inbox partitions assigned",
             sagad_engine_partitions(o->o.engine));
}

static void reply_text(admin_reply_t *r, int status, const char *json) {
  admin_reply(r, status, json, strlen(json));
}

/* How long POST /sagas/{type} waits for Kafka to confirm its StartSaga
 * before answering 503 (the start may still happen later; a retry with
 * the same id is safe). */
#define START_CONFIRM_MS 4000

/* A start (or a cancel) waiting for its saga_index lookup, then for its
 * delivery. */
typedef struct {
  sagad_observe_t *o;
  admin_reply_t *r; /* NULL once answered */
  uv_timer_t timer; /* bounds the wait for the delivery */
  const char *what; /* "StartSaga" or "CancelSaga" */
  int cancel;       /* a cancel: input holds reason NUL operator NUL */
  int op;           /* 1 retry, 2 resolve (input as a cancel's) */
  char id[ADMIN_ID_MAX + 1];
  char type[ADMIN_TYPE_MAX + 1];
  char tp[56]; /* the request's valid traceparent, "" = none */
  size_t input_len;
  char input[]; /* input_len bytes */
} start_t;

static void start_free(uv_handle_t *h) { free(h->data); }

/* Kafka did not confirm in time: answer now; the delivery report still
 * comes (success or librdkafka's message timeout) and frees st. */
static void start_timed_out(uv_timer_t *t) {
  start_t *st = t->data;
  if (!st->r)
    return;
  LOG_WARN("POST /sagas/%s?id=%s: kafka did not confirm the %s to %s "
           "within %d ms",
           st->type, st->id, st->what, st->o->o.cfg->topic_inbox,
           START_CONFIRM_MS);
  char msg[160];
  snprintf(msg, sizeof msg,
           "kafka did not confirm the %s within %d ms; it may still "
           "arrive: retry with the same id",
           st->what, START_CONFIRM_MS);
  admin_http_respond_error(st->r, 503, msg);
  st->r = NULL;
}

static void started(void *arg, int status) {
  start_t *st = arg;
  uv_timer_stop(&st->timer);
  if (!st->r) {
    /* answered 503 already */
  } else if (status != SAGAD_DELIVERY_OK) {
    LOG_WARN("POST /sagas/%s?id=%s: could not produce the %s to %s: %s",
             st->type, st->id, st->what, st->o->o.cfg->topic_inbox,
             sagad_delivery_text(status));
    abuf_t b = ABUF_INIT;
    abuf_printf(&b, "could not produce the %s to %s: %s", st->what,
                st->o->o.cfg->topic_inbox, sagad_delivery_text(status));
    admin_http_respond_error(st->r, 503, b.failed ? "broker unavailable"
                                                  : abuf_cstr(&b));
    abuf_free(&b);
  } else {
    abuf_t b = ABUF_INIT;
    abuf_puts(&b, "{\"saga_id\":\"");
    abuf_json_str(&b, st->id);
    abuf_puts(&b, st->op == 1   ? "\",\"action\":\"retry\",\"status\":\"sent\"}"
                  : st->op == 2 ? "\",\"action\":\"resolve\",\"status\":"
                                  "\"sent\"}"
                  : st->cancel  ? "\",\"cancel\":\"sent\"}"
                                : "\",\"created\":true}");
    if (b.failed)
      admin_reply(st->r, 503, NULL, 0);
    else
      admin_reply(st->r, st->cancel || st->op ? 202 : 201, abuf_cstr(&b),
                  b.len);
    abuf_free(&b);
  }
  uv_close((uv_handle_t *)&st->timer, start_free);
}

/* The saga id is taken: 200 with its status when it is of this type, 409
 * naming the other type otherwise. */
static void reply_exists(admin_reply_t *r, const char *id, const char *type,
                         const char *its_type, const char *status) {
  abuf_t b = ABUF_INIT;
  int code = 200;
  if (strcmp(its_type, type) != 0) {
    code = 409;
    abuf_puts(&b, "{\"error\":\"saga id \\\"");
    abuf_json_str(&b, id);
    abuf_puts(&b, "\\\" is used by a saga of type \\\"");
    abuf_json_str(&b, its_type);
    abuf_puts(&b, "\\\"\",\"saga_type\":\"");
    abuf_json_str(&b, its_type);
    abuf_puts(&b, "\"}");
  } else {
    abuf_puts(&b, "{\"saga_id\":\"");
    abuf_json_str(&b, id);
    abuf_puts(&b, "\",\"created\":false,\"status\":\"");
    abuf_json_str(&b, status);
    abuf_puts(&b, "\"}");
  }
  admin_reply(r, b.failed ? 503 : code, b.failed ? NULL : abuf_cstr(&b),
              b.failed ? 0 : b.len);
  abuf_free(&b);
}

/* A StartSaga (or CancelSaga) through the inbox like any starter's: the
 * engine decides (a second start of a known id is a duplicate there,
 * idempotently; so is a second cancel). */
static void produce_start(start_t *st) {
  sagad_observe_t *o = st->o;
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  char err[256];
  /* A cancel's input is "reason\0operator\0"; a start's is its body, not
   * NUL-terminated. */
  const char *who = st->cancel || st->op
                        ? st->input + strlen(st->input) + 1
                        : NULL;
  if (who && !*who)
    who = NULL;
  int rc = st->op ? sagad_msg_encode_operator(
                        st->id, st->op == 1, st->input, who,
                        st->tp[0] ? st->tp : NULL, &buf, &len, &h, err,
                        sizeof err)
           : st->cancel
               ? sagad_msg_encode_cancel(st->id, st->input, who,
                                         wall_us() / 1000,
                                         st->tp[0] ? st->tp : NULL, &buf,
                                         &len, &h, err, sizeof err)
               : sagad_msg_encode_start(st->id, st->type, 0,
                                        (const uint8_t *)st->input,
                                        st->input_len,
                                        st->tp[0] ? st->tp : NULL, &buf,
                                        &len, &h, err, sizeof err);
  if (rc != 0) {
    /* The wire's own checks (UTF-8, forbidden bytes, sizes): the request's
     * fault, named as the wire names the field. */
    admin_http_respond_error(st->r, 400, err);
    free(st);
    return;
  }
  uv_timer_init(o->o.loop, &st->timer);
  st->timer.data = st;
  uv_timer_start(&st->timer, start_timed_out, START_CONFIRM_MS, 0);
  rc = sagad_engine_produce(o->o.engine, o->o.cfg->topic_inbox, st->id,
                            strlen(st->id), buf, len, &h, started, st);
  saga__hdrs_free(&h);
  free(buf);
  if (rc != 0) {
    LOG_WARN("POST /sagas/%s?id=%s: could not queue the %s for %s",
             st->type, st->id, st->what, o->o.cfg->topic_inbox);
    char msg[80];
    snprintf(msg, sizeof msg, "could not queue the %s for the inbox",
             st->what);
    admin_http_respond_error(st->r, 503, msg);
    uv_timer_stop(&st->timer);
    uv_close((uv_handle_t *)&st->timer, start_free);
  }
}

/* Produce st's message, unless Kafka is known to be down: nothing would
 * confirm it, so say so now, not after a timeout. */
static void send_when_kafka_up(start_t *st) {
  char why[160];
  if (!sagad_broker_kafka_up(st->o->o.broker, why, sizeof why)) {
    char msg[200];
    snprintf(msg, sizeof msg, "kafka unavailable: %s", why);
    admin_http_respond_error(st->r, 503, msg);
    free(st);
    return;
  }
  produce_start(st);
}

static void looked_up(void *arg, int status, const admin_saga_row_t *row,
                      const char *err) {
  start_t *st = arg;
  if (status == 200) {
    reply_exists(st->r, st->id, st->type, row->saga_type, row->status);
    free(st);
  } else if (status == 404) {
    send_when_kafka_up(st);
  } else {
    LOG_WARN("POST /sagas/%s?id=%s: %s", st->type, st->id,
             err ? err : "saga_index lookup failed");
    admin_http_respond_error(st->r, 503,
                             err ? err : "saga_index lookup failed");
    free(st);
  }
}

static void request_init(start_t *st, sagad_observe_t *o, admin_reply_t *r,
                         const char *id, const char *type, const char *what) {
  st->o = o;
  st->r = r;
  st->what = what;
  snprintf(st->id, sizeof st->id, "%s", id);
  snprintf(st->type, sizeof st->type, "%s", type);
  const char *tp = admin_http_header(r, "traceparent");
  if (tp && strlen(tp) < sizeof st->tp &&
      saga__traceparent_parse(tp, NULL, NULL, NULL) == 0)
    snprintf(st->tp, sizeof st->tp, "%s", tp);
}

static void src_start(void *arg, const char *type, const char *id,
                      const char *input, size_t input_len,
                      admin_reply_t *r) {
  sagad_observe_t *o = arg;
  const saga_def_t *def = saga_registry_find(o->o.registry, type, 0);
  if (!def) {
    reply_text(r, 404, "{\"error\":\"unknown saga type\"}");
    return;
  }
  if (input_len > sagad_engine_input_max(o->o.engine)) {
    /* The engine would refuse it (REJECTED): say so now. */
    char msg[256];
    snprintf(msg, sizeof msg,
             "input of %zu bytes is over the %zu bytes a command can carry "
             "(kafka.message.max.bytes, payload.max_bytes)",
             input_len, sagad_engine_input_max(o->o.engine));
    admin_http_respond_error(r, 413, msg);
    return;
  }
  const sm_t *s = sagad_engine_find(o->o.engine, id);
  if (s) {
    /* In flight here: the same start again changes nothing. */
    reply_exists(r, id, type, s->def->name,
                 sm_status_name((sm_status_t)s->status));
    return;
  }
  start_t *st = calloc(1, sizeof *st + input_len);
  if (!st) {
    admin_http_respond_error(r, 503, "out of memory");
    return;
  }
  request_init(st, o, r, id, type, "StartSaga");
  memcpy(st->input, input, input_len);
  st->input_len = input_len;
  /* A finished saga is no longer in memory: saga_index says whether the
   * id is taken, whatever the saga's state. */
  admin_pg_lookup(o->pg, id, looked_up, st);
}

static void reply_refused(admin_reply_t *r, const char *id, const char *verb,
                          const char *why) {
  abuf_t b = ABUF_INIT;
  abuf_puts(&b, "{\"error\":\"");
  abuf_puts(&b, verb);
  abuf_puts(&b, " refused: ");
  abuf_json_str(&b, why);
  abuf_puts(&b, "\",\"saga_id\":\"");
  abuf_json_str(&b, id);
  abuf_puts(&b, "\"}");
  admin_reply(r, b.failed ? 503 : 409, b.failed ? NULL : abuf_cstr(&b),
              b.failed ? 0 : b.len);
  abuf_free(&b);
}

/* An operator's request whose saga_index lookup found no saga (404) or
 * failed (503): answered, and st freed. */
static void lookup_failed(start_t *st, int status, const char *err,
                          const char *verb) {
  if (status == 404) {
    admin_http_respond_error(st->r, 404, "no such saga");
  } else {
    LOG_WARN("POST /sagas/%s/%s: %s", st->id, verb,
             err ? err : "saga_index lookup failed");
    admin_http_respond_error(st->r, 503,
                             err ? err : "saga_index lookup failed");
  }
  free(st);
}

/* A saga of another instance, or finished: saga_index says which. */
static void cancel_looked_up(void *arg, int status,
                             const admin_saga_row_t *row, const char *err) {
  start_t *st = arg;
  if (status == 200) {
    char why[128] = "";
    if (!strcmp(row->status, "completed") ||
        !strcmp(row->status, "compensated"))
      snprintf(why, sizeof why, "already %s: nothing to cancel",
               row->status);
    else if (!strcmp(row->status, "compensation_failed"))
      snprintf(why, sizeof why,
               "compensation failed: parked for an operator (retry or "
               "resolve it)");
    if (why[0]) {
      reply_refused(st->r, st->id, "cancel", why);
      free(st);
      return;
    }
    send_when_kafka_up(st);
  } else {
    lookup_failed(st, status, err, "cancel");
  }
}

/* An operator's request (a cancel or an OperatorAction) for id, its input
 * "reason\0operator\0"; NULL with 503 sent when out of memory. */
static start_t *operator_request_new(sagad_observe_t *o, admin_reply_t *r,
                                     const char *id, const char *what,
                                     const char *reason, const char *who) {
  size_t rn = strlen(reason), wn = who ? strlen(who) : 0;
  start_t *st = calloc(1, sizeof *st + rn + wn + 2);
  if (!st) {
    admin_http_respond_error(r, 503, "out of memory");
    return NULL;
  }
  request_init(st, o, r, id, "", what);
  memcpy(st->input, reason, rn + 1);
  if (who)
    memcpy(st->input + rn + 1, who, wn + 1);
  st->input_len = rn + wn + 2;
  return st;
}

static void src_cancel(void *arg, const char *id, const char *reason,
                       const char *who, admin_reply_t *r) {
  sagad_observe_t *o = arg;
  const sm_t *s = sagad_engine_find(o->o.engine, id);
  char why[256];
  if (s && *sm_cancel_refusal(s, why, sizeof why)) {
    /* Ours: the machine's own judgement, now. */
    reply_refused(r, id, "cancel", why);
    return;
  }
  start_t *st = operator_request_new(o, r, id, "CancelSaga", reason, who);
  if (!st)
    return;
  st->cancel = 1;
  if (s)
    send_when_kafka_up(st);
  else
    admin_pg_lookup(o->pg, id, cancel_looked_up, st);
}

/* 409: verb (retry, resolve) applies only to a parked saga. */
static void refuse_not_parked(admin_reply_t *r, const char *id,
                              const char *verb, const char *status) {
  char why[128];
  snprintf(why, sizeof why,
           "the saga is %s, not parked in compensation_failed", status);
  reply_refused(r, id, verb, why);
}

/* A retry or resolve of a saga another instance holds, or not in memory:
 * saga_index says whether it is parked. */
static void operate_looked_up(void *arg, int status,
                              const admin_saga_row_t *row, const char *err) {
  start_t *st = arg;
  const char *verb = st->op == 1 ? "retry" : "resolve";
  if (status == 200 && strcmp(row->status, "compensation_failed") != 0) {
    refuse_not_parked(st->r, st->id, verb, row->status);
    free(st);
  } else if (status == 200) {
    send_when_kafka_up(st);
  } else {
    lookup_failed(st, status, err, verb);
  }
}

/* POST /sagas/{id}/retry and /resolve: an OperatorAction through the inbox,
 * as sagactl retry / resolve produce it, once the saga is known to be
 * parked (in memory here, else in saga_index). */
static void src_operate(void *arg, admin_op_t op, const char *id,
                        const char *reason, const char *who,
                        admin_reply_t *r) {
  sagad_observe_t *o = arg;
  const char *verb = op == ADMIN_OP_RETRY ? "retry" : "resolve";
  const sm_t *s = sagad_engine_find(o->o.engine, id);
  if (s && s->status != SM_COMPENSATION_FAILED) {
    refuse_not_parked(r, id, verb, sm_status_name((sm_status_t)s->status));
    return;
  }
  start_t *st =
      operator_request_new(o, r, id, "OperatorAction", reason, who);
  if (!st)
    return;
  st->op = op == ADMIN_OP_RETRY ? 1 : 2;
  if (s)
    send_when_kafka_up(st);
  else
    admin_pg_lookup(o->pg, id, operate_looked_up, st);
}

/* Saga reads go to admin_pg, whose source shares one arg for every
 * function: ours stays this observer's. */
static void src_get(void *arg, const char *id, admin_reply_t *r) {
  sagad_observe_t *o = arg;
  o->pgsrc.get_saga(o->pgsrc.arg, id, r);
}

static void src_list(void *arg, const admin_list_query_t *q,
                     admin_reply_t *r) {
  sagad_observe_t *o = arg;
  o->pgsrc.list_sagas(o->pgsrc.arg, q, r);
}

/* ---- life cycle ---------------------------------------------------------- */

static int split_listen(const char *listen, char *host, size_t hlen,
                        int *port) {
  const char *colon = strrchr(listen, ':');
  if (!colon)
    return -1;
  const char *h = listen;
  size_t n = (size_t)(colon - listen);
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
    h++;
    n -= 2;
  }
  if (n >= hlen)
    return -1;
  memcpy(host, h, n);
  host[n] = '\0';
  const char *p = colon + 1;
  size_t digits = strspn(p, "0123456789");
  if (digits == 0 || digits > 5 || p[digits] != '\0' || atoi(p) > 65535)
    return -1;
  *port = atoi(p);
  return 0;
}

static const char *process_env(const char *name, const void *arg) {
  (void)arg;
  return getenv(name);
}

/* otlp.endpoint and the OTEL_* variables (otlp.h, otlp_resolve). */
static int resolve_otlp(const sagad_config_t *cfg, otlp_target_t *t,
                        char *errbuf, size_t errlen) {
  otlp_settings_t st = {.endpoint = cfg->otlp_endpoint};
  return otlp_resolve(&st, process_env, NULL, t, errbuf, errlen);
}

static int check(const sagad_config_t *cfg, bool warn, char *errbuf,
                 size_t errlen);

int sagad_observe_check(const sagad_config_t *cfg, char *errbuf,
                        size_t errlen) {
  return check(cfg, true, errbuf, errlen);
}

/* sagad_observe_check; warn: log what was taken other than as written
 * (a start checks twice: before it connects, and here) */
static int check(const sagad_config_t *cfg, bool warn, char *errbuf,
                 size_t errlen) {
  char host[256];
  int port = 0;
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  if (split_listen(cfg->admin_listen, host, sizeof host, &port) != 0) {
    snprintf(errbuf, errlen,
             "admin.listen: expected host:port (port 0..65535), got \"%s\"",
             cfg->admin_listen);
    return -1;
  }
  if (uv_ip4_addr(host, port, &a4) != 0 && uv_ip6_addr(host, port, &a6) != 0) {
    snprintf(errbuf, errlen,
             "admin.listen: \"%s\" is not an IPv4 or IPv6 address (names "
             "are not resolved: 127.0.0.1, 0.0.0.0 or ::1)",
             host);
    return -1;
  }
  otlp_target_t t;
  if (resolve_otlp(cfg, &t, errbuf, errlen) != 0)
    return -1;
  if (warn && t.warning[0])
    LOG_WARN("%s", t.warning);
  otlp_target_free(&t);
  return 0;
}

static int start_otlp(sagad_observe_t *o, char *errbuf, size_t errlen) {
  otlp_target_t t;
  if (resolve_otlp(o->o.cfg, &t, errbuf, errlen) != 0)
    return -1;
  if (!t.enabled) {
    if (t.url)
      LOG_INFO("span export to %s (%s) is off: OTEL_SDK_DISABLED or "
               "OTEL_TRACES_EXPORTER",
               t.url, t.url_from);
    otlp_target_free(&t);
    return 0;
  }
  otlp_opts_t oo;
  otlp_opts_init(&oo);
  otlp_opts_from_target(&oo, &t);
  o->otlp = otlp_new(o->o.loop, &oo);
  if (!o->otlp) {
    snprintf(errbuf, errlen,
             "%s: could not set up the span exporter for %s (out of memory "
             "or libcurl refused it)",
             t.url_from, t.url);
    otlp_target_free(&t);
    return -1;
  }
  LOG_INFO("exporting spans to %s (from %s) as service %s", t.url, t.url_from,
           t.service_name);
  o->otlp_url = strdup(t.url); /* NULL: the log says "the collector" */
  otlp_target_free(&t);
  return 0;
}

/* The longest wait at a graceful stop for the queued spans to go (less
 * when shutdown.timeout_ms leaves less: half of what is left). */
#define OTLP_STOP_FLUSH_MS 2000

/* How often a span export that keeps failing is logged again. */
#define OTLP_SAY_AGAIN_MS (5 * 60 * 1000)

/* The exporter logs nothing: say here when its requests fail (once, then
 * every OTLP_SAY_AGAIN_MS while they do) and when one works again. A
 * wrong host, a TLS or credential problem would otherwise show only in
 * saga_trace_spans_total. Scan timer. */
static void otlp_watch(sagad_observe_t *o) {
  if (!o->otlp)
    return;
  otlp_stats_t st;
  otlp_stats(o->otlp, &st);
  uint64_t now = uv_now(o->o.loop);
  const char *url = o->otlp_url ? o->otlp_url : "the collector";
  if (st.failing > 0 &&
      (!o->otlp_said || now - o->otlp_said_ms >= OTLP_SAY_AGAIN_MS)) {
    LOG_WARN("span export to %s failing: %s (%" PRIu64
             " requests in a row; %zu spans queued, %" PRIu64
             " dropped and %" PRIu64 " refused since the start)",
             url, st.last_error, st.failing, st.queued, st.dropped,
             st.rejected);
    o->otlp_said = true;
    o->otlp_said_ms = now;
  } else if (st.failing == 0 && o->otlp_said) {
    LOG_INFO("span export to %s works again", url);
    o->otlp_said = false;
  }
}

/* Whether the admin endpoint's address is a loopback one (127.0.0.0/8,
 * ::1): reached from this machine alone. */
static bool listen_is_loopback(const char *host) {
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  if (uv_ip4_addr(host, 0, &a4) == 0)
    return (ntohl(a4.sin_addr.s_addr) >> 24) == 127;
  if (uv_ip6_addr(host, 0, &a6) == 0)
    return IN6_IS_ADDR_LOOPBACK(&a6.sin6_addr);
  return false;
}

int sagad_observe_start(const sagad_observe_opts_t *opts,
                        sagad_observe_t **out, char *errbuf, size_t errlen) {
  sagad_observe_t *o = calloc(1, sizeof *o);
  *out = o;
  if (!o || !(o->m = metrics_new())) {
    snprintf(errbuf, errlen, "out of memory starting the admin endpoint");
    return -1;
  }
  o->o = *opts;
  o->store_ok = 1;
  o->store_seen = uv_now(opts->loop); /* the store was opened just now */
  /* The addresses first, with the messages --check-config gives. */
  if (check(opts->cfg, false, errbuf, errlen) != 0)
    return -1;
  if (register_metrics(o) != 0) {
    snprintf(errbuf, errlen, "out of memory registering metrics");
    return -1;
  }
  sagad_engine_hooks_t hk = {.arg = o,
                             .on_events = h_events,
                             .on_command = h_command,
                             .on_forget = h_forget,
                             .on_met = h_met,
                             .on_dead_letter = h_dead_letter,
                             .on_batch_submit = h_submit,
                             .on_batch_done = h_batch_done,
                             .on_durable = h_durable,
                             .on_reply_command = h_reply_command};
  sagad_engine_set_hooks(o->o.engine, &hk);
  if (start_otlp(o, errbuf, errlen) != 0)
    return -1;

  int port = 0;
  if (split_listen(opts->cfg->admin_listen, o->host, sizeof o->host,
                   &port) != 0) {
    snprintf(errbuf, errlen, "admin.listen: expected host:port, got \"%s\"",
             opts->cfg->admin_listen);
    return -1;
  }
  admin_http_opts_t ho;
  admin_http_opts_init(&ho);
  ho.host = o->host;
  ho.port = port;
  /* admin.allowed_hosts; empty: the loopback names alone on a loopback
   * address (no page can reach it through a name it points here), any
   * Host on others */
  const char *ah = opts->cfg->admin_allowed_hosts;
  ho.allowed_hosts = ah && *ah ? ah : listen_is_loopback(o->host) ? "" : "*";
  /* room for any input a command can carry, and one byte more, so that a
   * start larger than that reaches src_start and its 413 names the limit
   * (payload.max_bytes and kafka.message.max.bytes may allow far more
   * than the server's default 1 MiB) */
  size_t body_max = sagad_engine_input_max(o->o.engine) + 1;
  if (body_max > ho.limits.max_body)
    ho.limits.max_body = body_max < ((size_t)1 << 30) ? body_max
                                                       : (size_t)1 << 30;
  admin_pg_opts_t po;
  admin_pg_opts_init(&po);
  po.conninfo = opts->cfg->store_conninfo;
  po.registry = opts->registry;
  po.stuck_after_ms = opts->cfg->stuck_default_ms;
  o->src = (admin_source_t){.arg = o,
                            .get_saga = src_get,
                            .list_sagas = src_list,
                            .start_saga = src_start,
                            .cancel_saga = src_cancel,
                            .operate_saga = src_operate,
                            .readiness = src_readiness};
  o->http = admin_http_new(opts->loop, &ho);
  o->pg = admin_pg_new(opts->loop, &po);
  if (!o->http || !o->pg || admin_api_register(o->http, &o->src, o->m) ||
      admin_ui_register(o->http) != 0) {
    snprintf(errbuf, errlen, "could not set up the admin endpoint on %s",
             opts->cfg->admin_listen);
    return -1;
  }
  admin_pg_source(o->pg, &o->pgsrc);
  char err[256] = "";
  if (admin_http_start(o->http, err, sizeof err) != 0) {
    snprintf(errbuf, errlen, "could not listen on %s: %s",
             opts->cfg->admin_listen, err);
    return -1;
  }
  LOG_INFO("admin endpoint listening on http://%s%s%s:%d", 
           strchr(o->host, ':') ? "[" : "", o->host,
           strchr(o->host, ':') ? "]" : "", admin_http_port(o->http));
  uv_timer_init(opts->loop, &o->scan);
  o->scan.data = o;
  o->scan_on = 1;
  uv_unref((uv_handle_t *)&o->scan);
  uint64_t every = opts->scan_ms ? opts->scan_ms : 1000;
  uv_timer_start(&o->scan, on_scan, every, every);
  return 0;
}

int sagad_observe_admin_port(const sagad_observe_t *o) {
  return o && o->http ? admin_http_port(o->http) : -1;
}

static void maybe_freed(sagad_observe_t *o) {
  if (--o->pending_closes > 0)
    return;
  void (*cb)(void *) = o->close_cb;
  void *arg = o->close_arg;
  metrics_free(o->m);
  proc_metrics_free(o->proc);
  free(o->otlp_url);
  for (size_t i = 0; i < o->nwant; i++)
    free(o->want[i]);
  free(o->want);
  for (size_t i = 0; i < o->nasked; i++)
    free(o->asked[i]);
  free(o->asked);
  while (o->orphans) {
    sobs_t *b = o->orphans;
    o->orphans = b->next_orphan;
    slot_free(b);
  }
  for (size_t i = 0; i < o->ntypes; i++)
    free(o->types[i].name);
  free(o->types);
  free(o->lag);
  free(o);
  if (cb)
    cb(arg);
}

static void pg_closed(void *arg) { maybe_freed(arg); }

static void http_closed(void *arg) {
  sagad_observe_t *o = arg;
  o->http = NULL;
  /* The server is gone, so nothing reads through admin_pg any more. */
  admin_pg_close(o->pg, pg_closed, o);
  o->pg = NULL;
}

static void scan_closed(uv_handle_t *h) { maybe_freed(h->data); }

static void otlp_closed(void *arg) { maybe_freed(arg); }

void sagad_observe_stop(sagad_observe_t *o) {
  if (!o || o->stopped)
    return;
  /* spans still waiting for their saga's trace go in the saga's own */
  trace_fill_t f = {o, NULL, true};
  fill_all(&f);
  o->stopped = 1;
  o->stop_ms = uv_now(o->o.loop);
  o->pending_closes++; /* the final close's own hold */
  if (o->http) {
    o->pending_closes++;
    admin_http_close(o->http, http_closed, o);
  } else if (o->pg) {
    o->pending_closes++;
    admin_pg_close(o->pg, pg_closed, o);
    o->pg = NULL;
  }
  if (o->scan_on) {
    o->pending_closes++;
    uv_close((uv_handle_t *)&o->scan, scan_closed);
    o->scan_on = 0;
  }
}

void sagad_observe_close(sagad_observe_t *o, void (*cb)(void *arg),
                         void *arg) {
  if (!o) {
    if (cb)
      cb(arg);
    return;
  }
  sagad_observe_stop(o);
  o->close_cb = cb;
  o->close_arg = arg;
  if (o->o.engine) {
    sagad_engine_hooks_t hk = {.on_forget = h_forget};
    sagad_engine_set_hooks(o->o.engine, &hk);
  }
  if (o->otlp) {
    o->pending_closes++;
    /* the drained engine's last spans are queued: sent before the exit,
     * within half of what is left of shutdown.timeout_ms */
    uint64_t spent = uv_now(o->o.loop) - o->stop_ms;
    uint64_t budget = (uint64_t)o->o.cfg->shutdown_timeout_ms;
    uint64_t wait = budget > spent ? (budget - spent) / 2 : 0;
    if (wait > OTLP_STOP_FLUSH_MS)
      wait = OTLP_STOP_FLUSH_MS;
    if (wait)
      otlp_flush_close(o->otlp, wait, otlp_closed, o);
    else
      otlp_close(o->otlp, otlp_closed, o);
    o->otlp = NULL;
  }
  maybe_freed(o);
}
