/* The saga state machine: a pure function (saga, input, now, rng) ->
 * (events to append, effects to perform). No I/O, no clock, no randomness
 * of its own, no allocation. Every change of a saga goes through
 * saga_apply(event): the live path applies the events it decides, replay
 * applies stored events, so both reach the same state by construction.
 * The shell must append a transition's events before performing its
 * effects (design.md invariant 1). */
#ifndef SAGA_MACHINE_H
#define SAGA_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core_error.h"
#include "definition.h"

#define SAGA_ID_MAX 63 /* bytes of a saga id, without the NUL */
/* Upper bound of events and effects one transition produces. */
#define SAGA_MAX_OUT (3 * SAGA_DEF_MAX_STEPS + 8)

typedef enum {
  SAGA_NEW = 0,              /* initialised, not started */
  SAGA_RUNNING = 1,          /* going forward */
  SAGA_COMPENSATING = 2,     /* a step failed for good: undoing */
  SAGA_COMPLETED = 3,        /* terminal: every step done */
  SAGA_COMPENSATED = 4,      /* terminal: failed and undone */
  SAGA_COMPENSATION_FAILED = 5, /* parked: a compensation's retries are
                                   spent; waits for an operator */
} saga_status_t;

typedef enum {
  SAGA_STEP_PENDING = 0,     /* not dispatched yet */
  SAGA_STEP_RUNNING = 1,     /* DO sent, waiting for reply or deadline */
  SAGA_STEP_BACKOFF = 2,     /* DO attempt failed, retry at timer_ms */
  SAGA_STEP_DONE = 3,        /* DO succeeded */
  SAGA_STEP_FAILED = 4,      /* DO failed for good */
  SAGA_STEP_COMP_RUNNING = 5, /* COMPENSATE sent */
  SAGA_STEP_COMP_BACKOFF = 6, /* COMPENSATE attempt failed, retry later */
  SAGA_STEP_COMPENSATED = 7,
  SAGA_STEP_COMP_FAILED = 8, /* compensation retries spent (parked) */
} saga_step_status_t;

typedef enum { SAGA_DO = 0, SAGA_COMPENSATE = 1 } saga_action_t;

typedef enum {
  SAGA_OUTCOME_SUCCESS = 1,
  SAGA_OUTCOME_FAILURE = 2,   /* business failure: compensate (before the
                                 pivot) */
  SAGA_OUTCOME_RETRYABLE = 3, /* transient: retry */
  SAGA_OUTCOME_TIMEOUT = 4,   /* no reply by the deadline (internal) */
} saga_outcome_t;

/* Step flags. */
#define SAGA_SF_UNKNOWN 0x01   /* some DO attempt timed out: the effect may
                                  have been applied, so it is compensated */
#define SAGA_SF_BY_TIMER 0x02  /* the current attempt was decided by its
                                  deadline, not by a reply */
/* Saga flags. */
#define SAGA_F_RESOLVED 0x01   /* an operator resolved it by hand */

/* 16 bytes per step. */
typedef struct {
  uint8_t status;      /* saga_step_status_t */
  uint8_t flags;       /* SAGA_SF_* */
  uint16_t attempt;    /* current attempt of the current action, 1-based */
  uint16_t budget_base; /* attempts before the current retry budget (an
                           operator retry grants a fresh budget) */
  uint16_t order;      /* completion order, 1-based; 0 = not completed */
  int64_t timer_ms;    /* absolute deadline (RUNNING) or retry time
                          (BACKOFF); 0 = none */
} saga_step_state_t;

/* One in-flight saga: about 112 bytes + 16 per step, allocated by the
 * caller with saga_size(def). It points at its definition (pinned
 * version), never copies it. */
typedef struct {
  const saga_def_t *def;
  int64_t started_ms;
  int64_t updated_ms;  /* time of the last transition (progress) */
  uint32_t version;    /* transitions applied = the stream version */
  uint8_t status;      /* saga_status_t */
  uint8_t flags;       /* SAGA_F_* */
  uint8_t cursor;      /* first step of the forward block in progress */
  uint8_t nsteps;
  uint16_t seq;        /* completion counter, for step order */
  uint8_t id_len;
  char id[SAGA_ID_MAX + 1];
  saga_step_state_t steps[];
} saga_t;

/* Events: the persisted facts. Pointers are borrowed (from the input or a
 * decoded record) and valid until the next machine call. */
typedef enum {
  SAGA_EV_STARTED = 1,        /* def_name, def_version, payload = input */
  SAGA_EV_DISPATCHED = 2,     /* step, action, attempt, until = deadline */
  SAGA_EV_SUCCEEDED = 3,      /* step, action, attempt, payload = output */
  SAGA_EV_ATTEMPT_FAILED = 4, /* step, action, attempt, outcome, reason,
                                 until = retry time (0 = failed for good) */
  SAGA_EV_COMPENSATING = 5,   /* step = the step that failed */
  SAGA_EV_COMPLETED = 6,
  SAGA_EV_COMPENSATED = 7,
  SAGA_EV_PARKED = 8,         /* step whose compensation is spent */
  SAGA_EV_OPERATOR_RETRY = 9, /* step, action: fresh retry budget */
  SAGA_EV_RESOLVED = 10,      /* operator closed a parked saga */
} saga_event_type_t;

typedef struct {
  uint8_t type;     /* saga_event_type_t */
  uint8_t step;
  uint8_t action;   /* saga_action_t */
  uint8_t outcome;  /* saga_outcome_t */
  uint16_t attempt;
  int64_t until_ms; /* absolute */
  const char *def_name;
  uint32_t def_version;
  const uint8_t *payload;
  size_t payload_len;
  const char *reason;  /* NUL-terminated or NULL */
} saga_event_t;

/* Effects: what the shell does after the events are durable. */
typedef enum {
  SAGA_FX_SEND = 1,   /* produce a Command: step, action, attempt,
                         at_ms = deadline; key from saga_idempotency_key */
  SAGA_FX_TIMER = 2,  /* arm a timer: step, action, attempt, timer, at_ms;
                         deliver it back as SAGA_IN_TIMER with the same
                         fields. A past time fires at once. Stale timers
                         are ignored, so none is ever cancelled. */
  SAGA_FX_NOTIFY = 3, /* lifecycle notification: notify, step, action,
                         outcome */
} saga_effect_type_t;

typedef enum { SAGA_TIMER_DEADLINE = 1, SAGA_TIMER_BACKOFF = 2 } saga_timer_t;

typedef enum {
  SAGA_NOTIFY_STARTED = 1,
  SAGA_NOTIFY_STEP_DONE = 2,     /* a step's action has a final outcome */
  SAGA_NOTIFY_COMPLETED = 3,
  SAGA_NOTIFY_COMPENSATED = 4,
  SAGA_NOTIFY_COMPENSATION_FAILED = 5,
} saga_notify_t;

typedef struct {
  uint8_t type;     /* saga_effect_type_t */
  uint8_t step;
  uint8_t action;   /* saga_action_t */
  uint8_t timer;    /* saga_timer_t */
  uint8_t notify;   /* saga_notify_t */
  uint8_t outcome;  /* saga_outcome_t, for STEP_DONE */
  uint16_t attempt;
  int64_t at_ms;
} saga_effect_t;

/* Inputs. */
typedef enum {
  SAGA_IN_START = 1,   /* payload = the saga's input */
  SAGA_IN_REPLY = 2,   /* step, action, attempt, outcome, payload, reason */
  SAGA_IN_TIMER = 3,   /* step, action, attempt, timer (from SAGA_FX_TIMER) */
  SAGA_IN_OPERATOR_RETRY = 4,   /* retry a compensation-failed saga */
  SAGA_IN_OPERATOR_RESOLVE = 5, /* close a parked saga as compensated */
} saga_input_type_t;

typedef struct {
  uint8_t type;     /* saga_input_type_t */
  uint8_t action;
  uint8_t outcome;  /* SUCCESS, FAILURE or RETRYABLE */
  uint8_t timer;
  int32_t step;     /* -1 or out of range = unknown step */
  uint32_t attempt;
  const uint8_t *payload;
  size_t payload_len;
  const char *reason;
} saga_input_t;

/* How an input was taken: everything but APPLIED changed nothing and is an
 * anomaly the shell counts. */
typedef enum {
  SAGA_V_APPLIED = 0,
  SAGA_V_DUPLICATE = 1,      /* a reply for an attempt already decided by
                                a reply */
  SAGA_V_LATE = 2,           /* a reply for an earlier attempt, an earlier
                                action, or an attempt its deadline decided */
  SAGA_V_UNKNOWN_SAGA = 3,   /* input for a saga that was never started */
  SAGA_V_UNKNOWN_STEP = 4,   /* no such step in the definition */
  SAGA_V_UNEXPECTED = 5,     /* an attempt or action never sent */
  SAGA_V_STALE_TIMER = 6,    /* a timer whose wait is over or not yet due */
  SAGA_V_DUPLICATE_START = 7,
  SAGA_V_REJECTED = 8,       /* operator action not allowed in this state */
  SAGA_V_FINISHED = 9,       /* input for a saga in a terminal state */
} saga_verdict_t;

typedef struct {
  uint8_t verdict; /* saga_verdict_t */
  size_t n_events;
  size_t n_effects;
  saga_event_t events[SAGA_MAX_OUT];
  saga_effect_t effects[SAGA_MAX_OUT];
} saga_output_t;

/* A small deterministic generator (splitmix64) for jitter. The simulator
 * seeds it; the daemon seeds it from anything. Never shared across
 * threads. */
typedef struct {
  uint64_t state;
} saga_rng_t;

/* Next value in [0, 1). */
double saga_rng_next(saga_rng_t *rng);

/* Bytes to allocate for a saga of def. */
size_t saga_size(const saga_def_t *def);

/* Initialise mem (saga_size(def) bytes, any content) as a NEW saga with
 * this id (1..SAGA_ID_MAX bytes). def is borrowed and must outlive the
 * saga. Errors: SAGA_CORE_EINVAL. */
int saga_init(saga_t *saga, const char *id, const saga_def_t *def);

/* Take one input at time now (ms, the clock port's time). Decides the
 * events, applies them to saga, and lists the effects in out (overwritten;
 * events borrow pointers from in). On any verdict but APPLIED there are no
 * events and no changes (a stale timer may re-arm). rng feeds jitter and
 * may be NULL (no jitter). Errors: SAGA_CORE_EINVAL (bad arguments), never
 * for bad input, which is classified in out->verdict. */
int saga_step(saga_t *saga, const saga_input_t *in, int64_t now,
              saga_rng_t *rng, saga_output_t *out);

/* Apply one event (replay, and the live path inside saga_step). at_ms is
 * the time of its transition. Call saga_end_transition after the events of
 * one stored record. Errors: SAGA_CORE_EREPLAY when the event does not fit
 * the state (wrong step, definition mismatch); the saga is then unusable. */
int saga_apply(saga_t *saga, const saga_event_t *ev, int64_t at_ms);

/* Count one applied transition (one stored record): version++. */
void saga_end_transition(saga_t *saga);

/* After recovery (replay): the effects that resume the saga -- the pending
 * commands re-sent with their same idempotency keys and deadlines, and
 * every timer re-armed at its absolute time (a past one fires at once).
 * No events. */
void saga_resume(const saga_t *saga, saga_output_t *out);

/* "<saga id>/<step name>/<DO|COMPENSATE>/<attempt>" into buf; returns the
 * length it needs (snprintf style). */
int saga_idempotency_key(const saga_t *saga, uint32_t step,
                         saga_action_t action, uint32_t attempt, char *buf,
                         size_t len);

/* True when the saga is COMPLETED or COMPENSATED. */
bool saga_is_terminal(const saga_t *saga);

/* True when a non-terminal saga has made no progress for longer than the
 * stuck threshold of the step it waits on (parked sagas are always
 * stuck). */
bool saga_is_stuck(const saga_t *saga, int64_t now);

/* The earliest timer of the saga, or 0: for "next deadline" lists. */
int64_t saga_next_timer(const saga_t *saga);

/* Field-by-field equality (replay == live). */
bool saga_equal(const saga_t *a, const saga_t *b);

/* Names for logs and docs. */
const char *saga_status_name(saga_status_t s);
const char *saga_step_status_name(saga_step_status_t s);
const char *saga_event_type_name(saga_event_type_t t);
const char *saga_verdict_name(saga_verdict_t v);

#endif
