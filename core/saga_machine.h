/* The saga state machine: a pure function (saga, input, now, rng) ->
 * (events to append, effects to perform). No I/O, no clock, no randomness
 * of its own, no allocation. Every change of a saga goes through
 * sm_apply(event): the live path applies the events it decides, replay
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

/* Bytes of a saga id, without the NUL: the wire's and the event store's
 * ceiling (SAGA_WIRE_MAX_ID, ES_MAX_STREAM_ID), so every component takes
 * the same ids. A saga stores its id after its steps, sized by the id. */
#define SM_ID_MAX 255
/* Upper bound of events and effects one transition produces. */
#define SM_MAX_OUT (3 * SAGA_DEF_MAX_STEPS + 8)

/* Each enum below is one X-macro list, X(NAME, value, "name"): the enum
 * and its name table (sm_*_name) are generated from it, and the tests walk
 * the same lists. */

/* Saga status; the names are saga_index.status and the API's. */
#define SM_STATUS_LIST(X)                                                      \
  X(NEW, 0, "new")                 /* initialised, not started */             \
  X(RUNNING, 1, "running")         /* going forward */                        \
  X(COMPENSATING, 2, "compensating") /* a step failed for good: undoing */    \
  X(COMPLETED, 3, "completed")     /* terminal: every step done */            \
  X(COMPENSATED, 4, "compensated") /* terminal: failed and undone */          \
  X(COMPENSATION_FAILED, 5, "compensation_failed") /* parked: a              \
                compensation's retries are spent; waits for an operator */

typedef enum {
#define SM_ENUM_(name, value, text) SM_##name = value,
  SM_STATUS_LIST(SM_ENUM_)
#undef SM_ENUM_
} sm_status_t;

/* Step status. */
#define SM_STEP_STATUS_LIST(X)                                                 \
  X(PENDING, 0, "pending")          /* not dispatched yet */                  \
  X(RUNNING, 1, "running")          /* DO sent, waiting for reply/deadline */ \
  X(BACKOFF, 2, "backoff")          /* DO attempt failed, retry at timer_ms */\
  X(DONE, 3, "done")                /* DO succeeded */                        \
  X(FAILED, 4, "failed")            /* DO failed for good */                  \
  X(COMP_RUNNING, 5, "compensating") /* COMPENSATE sent */                    \
  X(COMP_BACKOFF, 6, "compensation_backoff") /* COMPENSATE attempt failed,   \
                                                retry later */                \
  X(COMPENSATED, 7, "compensated")                                            \
  X(COMP_FAILED, 8, "compensation_failed") /* compensation retries spent     \
                                              (parked) */

typedef enum {
#define SM_ENUM_(name, value, text) SM_STEP_##name = value,
  SM_STEP_STATUS_LIST(SM_ENUM_)
#undef SM_ENUM_
} sm_step_status_t;

typedef enum { SM_DO = 0, SM_COMPENSATE = 1 } sm_action_t;

typedef enum {
  SM_OUTCOME_SUCCESS = 1,
  SM_OUTCOME_FAILURE = 2,   /* business failure: compensate (before the
                                 pivot) */
  SM_OUTCOME_RETRYABLE = 3, /* transient: retry */
  SM_OUTCOME_TIMEOUT = 4,   /* no reply by the deadline (internal) */
} sm_outcome_t;

/* Step flags. */
#define SM_SF_UNKNOWN 0x01   /* some DO attempt timed out: the effect may
                                  have been applied, so it is compensated */
#define SM_SF_BY_TIMER 0x02  /* the current attempt was decided by its
                                  deadline, not by a reply */
/* Saga flags. */
#define SM_F_RESOLVED 0x01   /* an operator resolved it by hand */
#define SM_F_CANCELLED 0x02  /* an operator cancelled it before the pivot */

/* 16 bytes per step. */
typedef struct {
  uint8_t status;      /* sm_step_status_t */
  uint8_t flags;       /* SM_SF_* */
  uint16_t attempt;    /* current attempt of the current action, 1-based */
  uint16_t budget_base; /* attempts before the current retry budget (an
                           operator retry grants a fresh budget) */
  uint16_t order;      /* completion order, 1-based; 0 = not completed */
  int64_t timer_ms;    /* absolute deadline (RUNNING) or retry time
                          (BACKOFF); 0 = none */
} sm_step_state_t;

/* One in-flight saga: 48 bytes + 16 per step + the id and its NUL,
 * allocated by the caller with sm_size(def, id_len). It points at its
 * definition (pinned version), never copies it. `id` points into the same
 * allocation, after steps[]: copy a saga with sm_copy, not memcpy. */
typedef struct {
  const saga_def_t *def;
  int64_t started_ms;
  int64_t updated_ms;  /* time of the last transition (progress) */
  uint32_t version;    /* transitions applied = the stream version */
  uint8_t status;      /* sm_status_t */
  uint8_t flags;       /* SM_F_* */
  uint8_t cursor;      /* first step of the forward block in progress */
  uint8_t nsteps;
  uint16_t seq;        /* completion counter, for step order */
  uint8_t id_len;      /* 1..SM_ID_MAX */
  const char *id;      /* NUL-terminated, stored after steps[] */
  sm_step_state_t steps[];
} sm_t;

/* Events: the persisted facts. Pointers are borrowed (from the input or a
 * decoded record) and valid until the next machine call. */
#define SM_EVENT_TYPE_LIST(X)                                                  \
  X(STARTED, 1, "Started")         /* def_name, def_version, payload=input, \
                                      correlation_id */                       \
  X(DISPATCHED, 2, "Dispatched")   /* step, action, attempt, until=deadline */\
  X(SUCCEEDED, 3, "Succeeded")     /* step, action, attempt, payload=output */\
  X(ATTEMPT_FAILED, 4, "AttemptFailed") /* step, action, attempt, outcome,   \
                           reason, until = retry time (0 = failed for good) */\
  X(COMPENSATING, 5, "Compensating") /* step = the step that failed */        \
  X(COMPLETED, 6, "Completed")                                                \
  X(COMPENSATED, 7, "Compensated")                                            \
  X(PARKED, 8, "Parked")           /* step whose compensation is spent */     \
  X(OPERATOR_RETRY, 9, "OperatorRetry") /* step, action, reason, who:      \
                                           fresh budget */                    \
  X(RESOLVED, 10, "Resolved")      /* reason, who: an operator closed a      \
                                      parked saga */                          \
  X(CANCEL_REQUESTED, 11, "CancelRequested") /* reason, who: an operator    \
                cancelled a running saga before its pivot; it compensates */

typedef enum {
#define SM_ENUM_(name, value, text) SM_EV_##name = value,
  SM_EVENT_TYPE_LIST(SM_ENUM_)
#undef SM_ENUM_
} sm_event_type_t;

typedef struct {
  uint8_t type;     /* sm_event_type_t */
  uint8_t step;
  uint8_t action;   /* sm_action_t */
  uint8_t outcome;  /* sm_outcome_t */
  uint16_t attempt;
  int64_t until_ms; /* absolute */
  const char *def_name;
  uint32_t def_version;
  const uint8_t *payload;
  size_t payload_len;
  const char *reason;  /* NUL-terminated or NULL */
  const char *who;     /* OperatorRetry, Resolved, CancelRequested: the
                          operator who asked (at most SM_ID_MAX bytes), or
                          NULL */
  const char *correlation_id; /* Started: the starter's correlation-id when
                                 it is not the saga id, else NULL; kept for
                                 the shell (later messages carry it), not
                                 part of the machine's state */
} sm_event_t;

/* Effects: what the shell does after the events are durable. */
typedef enum {
  SM_FX_SEND = 1,   /* produce a Command: step, action, attempt,
                         at_ms = deadline; key from sm_idempotency_key */
  SM_FX_TIMER = 2,  /* arm a timer: step, action, attempt, timer, at_ms;
                         deliver it back as SM_IN_TIMER with the same
                         fields. A past time fires at once. Stale timers
                         are ignored, so none is ever cancelled. */
  SM_FX_NOTIFY = 3, /* lifecycle notification: notify, step, action,
                         outcome */
} sm_effect_type_t;

typedef enum { SM_TIMER_DEADLINE = 1, SM_TIMER_BACKOFF = 2 } sm_timer_t;

typedef enum {
  SM_NOTIFY_STARTED = 1,
  SM_NOTIFY_STEP_DONE = 2,     /* a step's action has a final outcome */
  SM_NOTIFY_COMPLETED = 3,
  SM_NOTIFY_COMPENSATED = 4,
  SM_NOTIFY_COMPENSATION_FAILED = 5,
  SM_NOTIFY_REJECTED = 6, /* the start was refused (sent by the shell,
                             never a machine effect) */
  SM_NOTIFY_CANCEL_REFUSED = 7, /* a cancel changed nothing; the reason is
                                   sm_cancel_refusal (sent by the shell,
                                   never a machine effect) */
} sm_notify_t;

typedef struct {
  uint8_t type;     /* sm_effect_type_t */
  uint8_t step;
  uint8_t action;   /* sm_action_t */
  uint8_t timer;    /* sm_timer_t */
  uint8_t notify;   /* sm_notify_t */
  uint8_t outcome;  /* sm_outcome_t, for STEP_DONE */
  uint16_t attempt;
  int64_t at_ms;
} sm_effect_t;

/* Inputs. */
typedef enum {
  SM_IN_START = 1,   /* payload = the saga's input, correlation_id */
  SM_IN_REPLY = 2,   /* step, action, attempt, outcome, payload, reason */
  SM_IN_TIMER = 3,   /* step, action, attempt, timer (from SM_FX_TIMER) */
  SM_IN_OPERATOR_RETRY = 4,   /* retry a compensation-failed saga */
  SM_IN_OPERATOR_RESOLVE = 5, /* close a parked saga as compensated */
  SM_IN_CANCEL = 6,  /* stop a running saga before its pivot and
                        compensate it (design.md invariant 10) */
} sm_input_type_t;

typedef struct {
  uint8_t type;     /* sm_input_type_t */
  uint8_t action;
  uint8_t outcome;  /* SUCCESS, FAILURE or RETRYABLE */
  uint8_t timer;
  int32_t step;     /* -1 or out of range = unknown step */
  uint32_t attempt;
  const uint8_t *payload;
  size_t payload_len;
  const char *reason; /* REPLY: the participant's; OPERATOR_*, CANCEL: the
                         operator's, recorded in the event */
  const char *who;    /* OPERATOR_*, CANCEL: the operator (at most
                         SM_ID_MAX bytes), recorded in the event; NULL =
                         unnamed */
  const char *correlation_id; /* START: recorded in Started; NULL = none */
} sm_input_t;

/* How an input was taken: everything but APPLIED changed nothing and is an
 * anomaly the shell counts. */
#define SM_VERDICT_LIST(X)                                                     \
  X(APPLIED, 0, "applied")                                                    \
  X(DUPLICATE, 1, "duplicate") /* a reply for an attempt already decided by  \
                                  a reply, or a cancel of a saga already     \
                                  cancelled */                                \
  X(LATE, 2, "late") /* a reply for an earlier attempt, an earlier action,   \
                        or an attempt its deadline decided */                 \
  X(UNKNOWN_SAGA, 3, "unknown_saga") /* input for a saga never started */     \
  X(UNKNOWN_STEP, 4, "unknown_step") /* no such step in the definition */     \
  X(UNEXPECTED, 5, "unexpected")     /* an attempt or action never sent */    \
  X(STALE_TIMER, 6, "stale_timer")   /* a timer whose wait is over or not    \
                                        yet due */                            \
  X(DUPLICATE_START, 7, "duplicate_start")                                    \
  X(REJECTED, 8, "rejected") /* operator action or cancel not allowed in    \
                                this state (a cancel after the pivot) */     \
  X(FINISHED, 9, "finished") /* input for a saga in a terminal state */

typedef enum {
#define SM_ENUM_(name, value, text) SM_V_##name = value,
  SM_VERDICT_LIST(SM_ENUM_)
#undef SM_ENUM_
} sm_verdict_t;

typedef struct {
  uint8_t verdict; /* sm_verdict_t */
  size_t n_events;
  size_t n_effects;
  sm_event_t events[SM_MAX_OUT];
  sm_effect_t effects[SM_MAX_OUT];
} sm_output_t;

/* A small deterministic generator (splitmix64) for jitter. The simulator
 * seeds it; the daemon seeds it from anything. Never shared across
 * threads. */
typedef struct {
  uint64_t state;
} sm_rng_t;

/* Next value in [0, 1). */
double sm_rng_next(sm_rng_t *rng);

/* Bytes to allocate for a saga of def whose id has id_len bytes. */
size_t sm_size(const saga_def_t *def, size_t id_len);

/* Bytes a saga occupies (sm_size of its definition and id). */
size_t sm_bytes(const sm_t *saga);

/* Copy src into dst (sm_bytes(src) bytes), its id included. */
void sm_copy(sm_t *dst, const sm_t *src);

/* Initialise mem (sm_size(def, strlen(id)) bytes, any content) as a NEW
 * saga with this id (1..SM_ID_MAX bytes). def is borrowed and must
 * outlive the saga. Errors: SAGA_CORE_EINVAL. */
int sm_init(sm_t *saga, const char *id, const saga_def_t *def);

/* Take one input at time now (ms, the clock port's time). Decides the
 * events, applies them to saga, and lists the effects in out (overwritten;
 * events borrow pointers from in). On any verdict but APPLIED there are no
 * events and no changes (a stale timer may re-arm). rng feeds jitter and
 * may be NULL (no jitter). Errors: SAGA_CORE_EINVAL (bad arguments), never
 * for bad input, which is classified in out->verdict. */
int sm_step(sm_t *saga, const sm_input_t *in, int64_t now,
              sm_rng_t *rng, sm_output_t *out);

/* Apply one event (replay, and the live path inside sm_step). at_ms is
 * the time of its transition. Call sm_end_transition after the events of
 * one stored record. Errors: SAGA_CORE_EREPLAY when the event does not fit
 * the state (wrong step, definition mismatch); the saga is then unusable. */
int sm_apply(sm_t *saga, const sm_event_t *ev, int64_t at_ms);

/* Count one applied transition (one stored record): version++. */
void sm_end_transition(sm_t *saga);

/* After recovery (replay): the effects that resume the saga -- the pending
 * commands re-sent with their same idempotency keys and deadlines, and
 * every timer re-armed at its absolute time (a past one fires at once).
 * No events. */
void sm_resume(const sm_t *saga, sm_output_t *out);

/* "<saga id>/<step name>/<DO|COMPENSATE>/<attempt>" into buf; returns the
 * length it needs (snprintf style). */
int sm_idempotency_key(const sm_t *saga, uint32_t step,
                         sm_action_t action, uint32_t attempt, char *buf,
                         size_t len);

/* Why a cancel of this saga is refused, as text for the operator
 * ("after the pivot step charge", "already completed: nothing to
 * cancel"), written into buf (len bytes, cut to fit) and returned; ""
 * when a cancel would be taken or is already under way (a second cancel
 * changes nothing). A cancel is taken while the saga runs and its pivot
 * step (if it has one) has not been dispatched. */
const char *sm_cancel_refusal(const sm_t *saga, char *buf, size_t len);

/* True when the saga is COMPLETED or COMPENSATED. */
bool sm_is_terminal(const sm_t *saga);

/* True when a non-terminal saga has made no progress for longer than the
 * stuck threshold of the step it waits on (parked sagas are always
 * stuck). */
bool sm_is_stuck(const sm_t *saga, int64_t now);

/* When sm_is_stuck turns true without a further transition, for
 * saga_index's stuck_at (so every reader judges a saga by its own step's
 * stuck_after_ms): a running or compensating saga is stuck at any now >
 * the result (its last progress plus the smallest threshold of the steps
 * it waits on); a parked saga returns its last progress (stuck since it
 * parked); 0 = it cannot become stuck as it stands (terminal, or waiting
 * on no step). */
int64_t sm_stuck_at(const sm_t *saga);

/* The step a non-terminal saga is at, for saga_index's current_step and
 * operators: a parked saga's step whose compensation is spent, a
 * compensating saga's step being compensated, a running saga's step in
 * flight or backing off; else (between attempts) the first step waited on,
 * else the cursor. -1 for a terminal saga. */
int sm_current_step(const sm_t *saga);

/* The earliest timer of the saga, or 0: for "next deadline" lists. */
int64_t sm_next_timer(const sm_t *saga);

/* Field-by-field equality (replay == live). */
bool sm_equal(const sm_t *a, const sm_t *b);

/* Names for logs, metrics and docs, from the lists above; "unknown" for a
 * value not in its list. */
const char *sm_status_name(sm_status_t s);
const char *sm_step_status_name(sm_step_status_t s);
const char *sm_event_type_name(sm_event_type_t t);
const char *sm_verdict_name(sm_verdict_t v);

#endif
