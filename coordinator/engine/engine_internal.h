/* What the engine's files share (not a public header): the saga table's
 * entries, the input queue, the batch, the timer heap, the outbox and dead
 * letters, the engine struct, and each file's functions for the others.
 * The engine is one module in several files, each doing one thing:
 *   engine.c       stepping inputs through the machine, the entry points,
 *                  life cycle (the core)
 *   saga_table.c   the saga table: entries, their input and output slots,
 *                  the output cache's bound
 *   timers.c       the timer heap and the wake-ups it arms
 *   batch.c        group commit: the turn's batch, its submit and settle
 *   load.c         recovery and read-backs: sagas rebuilt from the store
 *   effects.c      commands and notifications of durable transitions, the
 *                  final notification's outbox
 *   dead_letter.c  dead letters: cut to fit, held and retried
 * See docs/internals/engine.md. Single-threaded: every call on the loop
 * thread. */
#ifndef SAGAD_ENGINE_INTERNAL_H
#define SAGAD_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dataflow.h"
#include "engine.h"
#include "msg_codec.h"
#include "saga_codec.h"

/* ---- types ---------------------------------------------------------- */

typedef struct brec {
  struct brec *next;
  const char *type;
  char traceparent[SAGA_TRACEPARENT_SIZE]; /* of its input, "" = none */
  size_t len;
  uint8_t data[];
} brec_t;

/* How a saga's stream fared in the batch that settled (entry_t.failed). */
typedef enum {
  STREAM_OK = 0,     /* committed */
  STREAM_FAILED = 1, /* not committed (store error): read back, its inputs
                        stepped again after a backoff */
  STREAM_STALE = 2   /* the store may hold more than memory does (a version
                        conflict, or a commit whose answer was lost): read
                        back, its inputs stepped again at once */
} stream_fail_t;

/* The saga id the timer heap's entries of one saga share (timers.c): made
 * at its first timer, freed with the last reference (the entry's or a
 * pending timer's), so pushing a timer allocates nothing per push. */
typedef struct timer_id {
  uint32_t refs;
  char id[];
} timer_id_t;

/* One saga in memory, in one allocation: the entry, its machine (sm_t,
 * whose id follows its steps), then the saga input (input_len bytes) and,
 * when has_corr, the starter's correlation-id (NUL-terminated): a saga in
 * flight costs one allocation for all it keeps besides its outputs (which
 * grow as steps reply) and its timers' shared id. Pointers first, then the
 * 32-bit fields, then the flags: no padding between them. */
typedef struct entry {
  struct entry *hnext;
  uint8_t *outs;   /* the steps' outputs (their Succeeded DO payloads),
                      owned, NULL until one replies or while dropped from
                      the cache: see note_output */
  char *cancelled; /* "cancelled: <reason>" once a CancelRequested is
                      recorded (live or replayed), owned; else NULL: the
                      reason of its COMPENSATED notification */
  brec_t *rec_head, *rec_tail; /* records of the current batch */
  void *obs;                   /* observer slot (sagad_engine_hooks_t) */
  timer_id_t *tid; /* its id as its timers hold it, NULL until the first */
  uint32_t hash;
  int32_t partition;
  uint32_t durable;   /* stream version known to be stored (sm_t.version) */
  uint32_t input_len; /* bytes of the saga input (Started payload) */
  uint32_t outs_len;  /* bytes of outs (slots and outputs), 0 when NULL */
  uint32_t nrec;
  uint8_t in_batch;
  uint8_t failed;    /* stream_fail_t of its stream in the settled batch */
  uint8_t revoked;   /* partition taken away while in the batch */
  uint8_t outs_gone; /* outputs dropped from the cache: in the store only */
  uint8_t outs_used; /* outputs used since the cache's hand last passed */
  uint8_t has_corr;  /* a correlation-id follows the input */
} entry_t;

#define ENTRY_SAGA(en) ((sm_t *)(void *)((en) + 1))
#define ENTRY_SAGA_C(en) ((const sm_t *)(const void *)((en) + 1))

/* The saga input, after the machine's id in the entry's allocation. */
static inline const uint8_t *entry_input(const entry_t *en) {
  const sm_t *s = ENTRY_SAGA_C(en);
  return (const uint8_t *)(s->id + s->id_len + 1);
}

/* The starter's correlation-id, or NULL when it is the saga id. */
static inline const char *entry_corr(const entry_t *en) {
  return en->has_corr ? (const char *)(entry_input(en) + en->input_len) : NULL;
}

typedef enum { IN_MSG = 1, IN_TIMER = 2 } input_kind_t;

typedef struct load_req load_req_t;

typedef struct input {
  struct input *next;
  struct load_req *load; /* the load it waits on (load.c), or NULL */
  uint8_t loaded;        /* load_mode_t of its last read-back that ended
                            well, 0 = none since it was queued */
  input_kind_t kind;
  int32_t partition;
  void *ack;
  int64_t received_us;    /* IN_MSG: sagad_inmsg_t.received_us */
  sagad_msg_t msg;        /* IN_MSG */
  sm_input_t timer;       /* IN_TIMER */
  char id[]; /* saga id, allocated to its length (input_new): a burst of
                inputs queued while a batch is in flight costs what they
                carry, not SM_ID_MAX bytes each */
} input_t;

typedef struct {
  input_t *head, *tail;
} queue_t;

typedef struct {
  entry_t *en;
  sm_effect_t fx;
  int64_t reply_us; /* received_us of the reply that decided it, or 0 */
  uint8_t *output;  /* a COMPLETED notification's saga output, built when
                       its transition was stepped (the bytes its Completed
                       event records), owned; NULL: none */
  size_t output_len;
} bfx_t;

typedef struct {
  int64_t at;
  uint8_t step, action, timer;
  uint16_t attempt;
  timer_id_t *id; /* a reference to its saga's id; NULL for a retry
                     list's wake-up (TMR_OUTBOX, TMR_DLQ) */
} tmr_t;

/* A final notification (COMPLETED or COMPENSATED) on its way: the
 * saga_index row says notify_pending until its delivery is recorded, so a
 * crash before that re-sends it at recovery; a failed produce or delivery
 * sends it again after OUTBOX_RETRY_MS (at least once, never lost). */
typedef struct outbox {
  struct outbox *next; /* retry list */
  const saga_def_t *def;
  uint8_t kind; /* sm_notify_t */
  int64_t at_ms;
  char *corr;      /* the starter's correlation-id, owned; NULL: none */
  uint8_t *output; /* COMPLETED: the saga's output, owned; NULL: none */
  size_t output_len;
  char *reason; /* COMPENSATED by a cancel: "cancelled: <reason>",
                   owned; NULL: none */
  char id[SM_ID_MAX + 1];
} outbox_t;

#define OUTBOX_RETRY_MS 1000
#define TMR_OUTBOX 0xff /* tmr_t.timer of the outbox's retry wake-up */
#define TMR_DLQ 0xfe    /* tmr_t.timer of the held dead letters' retry */
#define TMR_CMD 0xfd    /* tmr_t.timer of the undelivered commands' retry */
#define TMR_MARKS 0xfc  /* tmr_t.timer of the delivered notifications' record,
                           when no batch took it meanwhile */

/* A command on its way (in its delivery token): when its delivery fails
 * or is not confirmed (SAGAD_DELIVERY_UNCONFIRMED), the same attempt
 * (same idempotency key: a participant de-duplicates it) is produced
 * again after OUTBOX_RETRY_MS, and again after each failed delivery, for
 * as long as the saga in memory still waits for that attempt (its
 * Dispatched event is durable: design.md invariant 1 holds); once the
 * attempt is decided (a reply, its deadline) or the saga left memory, it
 * is dropped. */
typedef struct cmd_sent {
  struct cmd_sent *next; /* retry list */
  uint8_t step, action;
  uint16_t attempt;
  char id[]; /* the saga id */
} cmd_sent_t;

/* A dead letter: written before its input is acked (design.md invariant
 * 8). What does not fit the producer is cut (a prefix of the value, a
 * bounded key, the source's headers dropped when large) and says so in
 * saga-dlq-truncated; one that cannot be written is held and produced
 * again every second, its input not acked, so its offset is never
 * committed past it. */
typedef struct dletter {
  struct dletter *next; /* retry list */
  void *ack;
  saga__hdr_copy_t *h; /* the source's headers (unless dropped), the
                          reason and the source; owned */
  uint8_t *key, *value;
  size_t key_len, value_len;
  bool held;      /* counted in dead_letters_blocked */
  bool headers_dropped; /* the source's were over DLQ_HEADERS_MAX */
  char where[96]; /* topic/partition/offset, for logs */
  char size[24];  /* saga-dlq-size when cut ("" = not cut) */
  char cut[256];  /* saga-dlq-truncated when cut */
} dletter_t;

#define DLQ_VALUE_PREFIX 65536 /* bytes of a cut value kept */
#define DLQ_KEY_MAX 1024       /* bytes of a long key kept */
#define DLQ_HEADERS_MAX 16384  /* source headers above this are dropped */
#define DLQ_SHRUNK_PREFIX 1024 /* after the broker refused the size */

/* Token of a dead letter: the input is acked once it is delivered; or of
 * a message produced for sagad_engine_produce (done set); or of a final
 * notification (ob set); or of a command (cmd set). */
typedef struct {
  void *ack;
  void (*done)(void *arg, int status);
  void *arg;
  outbox_t *ob;
  dletter_t *dl;
  cmd_sent_t *cmd;
} dlq_token_t;

/* What the engine waits for after a failed batch (sagad_engine_t). */
typedef enum {
  RETRY_NONE = 0,    /* not waiting */
  RETRY_RESTEP = 1,  /* a backoff, then step the waiting inputs again */
  RETRY_RESUBMIT = 2 /* a backoff, then submit the same batch again (its
                        outcome is unknown: connection lost) */
} retry_wait_t;

struct sagad_engine {
  sagad_engine_config_t cfg;
  char *inbox, *notify, *dlq;
  char *progress; /* NULL: no progress notes */
  sagad_counters_t c;
  sagad_engine_hooks_t hooks;
  size_t input_max; /* sagad_engine_input_max */
  /* the output cache: bytes held by entries' outs, and the clock hand
   * (a bucket of the saga table) that drops the least recently used */
  size_t outs_bytes, outs_max, outs_hand;
  size_t nparts; /* inbox partitions assigned */
  sm_rng_t rng;
  /* saga table */
  entry_t **buckets;
  size_t nbuckets, nsagas;
  /* inputs */
  queue_t pending; /* not yet stepped */
  queue_t done;    /* stepped into the current batch */
  size_t backlog_stepped; /* stepped with more still queued, since the
                             engine was last idle (eng_pump) */
  /* the current batch */
  entry_t **streams;
  size_t nstreams, cstreams;
  bfx_t *fx;
  size_t nfx, cfx;
  size_t nrecords;
  bool in_flight;
  retry_wait_t retry_wait;
  int64_t backoff_ms;
  /* timers */
  tmr_t *heap;
  size_t nheap, cheap;
  int64_t armed_at;
  /* finished sagas to drop when the batch settles */
  char (*evict)[SM_ID_MAX + 1];
  size_t nevict, cevict;
  /* sagas dropped from memory whose read-back failed: read again before
   * any input is stepped (a timer of theirs finds no saga and is lost) */
  struct reload {
    char id[SM_ID_MAX + 1];
    int32_t partition;
  } * reload;
  size_t nreload, creload;
  /* loads the store has not finished (load.c): no input is stepped while
   * one is pending */
  struct load_req *loads;
  size_t nloads;
  /* final notifications: to send again, and delivered ones whose
   * notify_pending flag the next batch clears */
  outbox_t *ob_retry;
  bool ob_armed;
  /* commands whose delivery failed: produced again (cmd_sent_t) */
  cmd_sent_t *cmd_retry;
  bool cmd_armed;
  char (*marks)[SM_ID_MAX + 1];
  size_t nmarks, cmarks;
  bool marks_armed;      /* TMR_MARKS is in the heap */
  void (*marks_done)(void *); /* sagad_engine_flush_marks's callback */
  void *marks_arg;
  /* dead letters that could not be written yet */
  dletter_t *dl_retry;
  bool dl_armed;
  /* stop */
  bool stopping;
  bool drained; /* stop's done called: the ports are closing, a load that
                   ends now changes nothing */
  void (*stop_done)(void *);
  void *stop_arg;
  /* scratch */
  sm_output_t out;
  saga_record_t rec;
};

/* What a load does with each saga it rebuilds (load.c). Every mode resumes
 * a running saga (sm_resume's commands and timers). */
typedef enum {
  LOAD_RECOVER = 1,   /* recovery of assigned partitions: a terminal saga's
                         final notification is sent, the saga dropped */
  LOAD_READ_BACK = 2, /* a saga read back for an input: a terminal saga is
                         kept (the input is judged against it) */
  LOAD_READ_BACK_UNACTED = 3, /* a read-back of a saga whose last transition
                         may be a commit no one acted on (ours whose answer
                         was lost, or a fenced owner's): as LOAD_READ_BACK,
                         and a terminal saga's final notification is sent */
  LOAD_OUTPUTS = 4 /* the steps' outputs of a saga in memory whose outputs
                      the cache dropped */
} load_mode_t;

/* ---- engine.c: the stepping core ------------------------------------ */

/* Step the queued inputs into a batch and submit it, unless a batch is in
 * flight or a retry is waiting; calls the stop callback once idle. */
void eng_pump(sagad_engine_t *e);
/* Ask the clock for sagad_engine_on_turn_end at the end of this turn. */
void eng_request_turn(sagad_engine_t *e);
/* A zeroed input for saga id (at most SM_ID_MAX bytes), or NULL when out
 * of memory. */
input_t *eng_input_new(const char *id);
/* Free an input without acking it (NULL-safe). */
void eng_input_free(input_t *in);
/* Ack an input (when it has a broker token) and free it. */
void eng_input_done(sagad_engine_t *e, input_t *in);

/* ---- saga_table.c --------------------------------------------------- */

/* Allocate the table's buckets. 0 or -1 (out of memory). */
int table_init(sagad_engine_t *e);
/* Free every entry without the table's bookkeeping (engine free). */
void table_free_all(sagad_engine_t *e);
/* The saga id in memory, or NULL. */
entry_t *table_lookup(const sagad_engine_t *e, const char *id);
/* A new entry for saga id of def in the table, its machine initialised,
 * a copy of its input (input_len bytes; 0: none) and of the starter's
 * correlation-id (NULL, "" or the saga id: none) in the same allocation;
 * NULL when out of memory (or an input of 4 GiB or more). */
entry_t *table_add(sagad_engine_t *e, const char *id, const saga_def_t *def,
                   int32_t partition, const uint8_t *input, size_t input_len,
                   const char *corr);
/* The same, not in the table yet (a saga being rebuilt by a load):
 * table_insert puts it there, table_discard frees it. */
entry_t *table_new_detached(sagad_engine_t *e, const char *id,
                            const saga_def_t *def, int32_t partition,
                            const uint8_t *input, size_t input_len,
                            const char *corr);
void table_insert(sagad_engine_t *e, entry_t *en);
void table_discard(sagad_engine_t *e, entry_t *en);
/* Take en out of the table and free it (its observer slot through
 * on_forget, its outputs out of the cache's count). */
void table_remove(sagad_engine_t *e, entry_t *en);
/* Free the records en has in the current batch. */
void table_free_records(entry_t *en);
/* Keep the outputs that a transition's (or a stored record's) events
 * record. The saga's outputs must be in memory. 0 or -1. */
int table_note_outputs(sagad_engine_t *e, entry_t *en, const sm_event_t *ev,
                       size_t n);
/* Keep "cancelled: <reason>" of a CancelRequested among ev. 0 or -1. */
int table_note_cancel(entry_t *en, const sm_event_t *ev, size_t n);
/* v[nsteps] from the recorded outputs, for core/dataflow. */
void table_flow_values(const entry_t *en, saga_flow_value_t *v);
/* Drop en's outputs from memory (the cache's bound): in the store only. */
void table_outs_drop(sagad_engine_t *e, entry_t *en);
/* The saga's outputs are in memory (not dropped by the cache); marks
 * them used. 0, or -1 when they are not (read them back first: load.c). */
int table_outs_ready(entry_t *en);
/* Bring the output cache back under its bound. */
void table_outs_trim(sagad_engine_t *e);

/* ---- timers.c ------------------------------------------------------- */

/* Push timer t of saga en (NULL: a retry list's wake-up, t->timer
 * TMR_OUTBOX, TMR_DLQ or TMR_CMD). Logged and lost when out of memory. */
void timers_push(sagad_engine_t *e, const tmr_t *t, entry_t *en);
/* Arm the clock's timer wake-up at the earliest deadline. */
void timers_rearm(sagad_engine_t *e);
/* Wake up in OUTBOX_RETRY_MS for a retry list (kind TMR_OUTBOX, TMR_DLQ
 * or TMR_CMD), unless that wake-up is armed already. */
void timers_arm_retry(sagad_engine_t *e, bool *armed, uint8_t kind);
/* Fire every timer due at now: a saga's becomes a queued input (when the
 * saga is in memory), a retry list's sends its list again. */
void timers_fire_due(sagad_engine_t *e, int64_t now);
/* Release en's reference to its timer id (entry freed). */
void timers_forget_entry(entry_t *en);
/* Free the heap (engine free). */
void timers_free(sagad_engine_t *e);

/* ---- batch.c -------------------------------------------------------- */

/* en's stream joins the batch. 0 or -1 (out of memory). */
int batch_add_stream(sagad_engine_t *e, entry_t *en);
/* An effect to perform once the batch is durable; output (a COMPLETED
 * notification's saga output, output_len bytes, or NULL) is taken, and
 * freed if the effect is never performed. 0 or -1 (output freed). */
int batch_add_fx(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx,
                 int64_t reply_us, uint8_t *output, size_t output_len);
/* A finished saga read back only to judge an input: dropped when the
 * batch settles unless it joined the batch. */
void batch_note_evict(sagad_engine_t *e, const char *id);
/* Hand the batch to the store. 0 or -1 (nothing submitted). */
int batch_start(sagad_engine_t *e);
/* The delivered notifications' record (marks) in a batch of its own, when
 * no batch took it within OUTBOX_RETRY_MS of the first (an idle engine):
 * 0 submitted or nothing to record, 1 busy (a batch in flight or waiting
 * to be resubmitted: the wake-up is armed again). */
int batch_flush_marks(sagad_engine_t *e);
/* Submit the marks alone (no batch in flight): 0, or -1 with them kept. */
int batch_submit_marks(sagad_engine_t *e);
/* Submit the same batch again after RETRY_RESUBMIT's backoff. */
void batch_resubmit(sagad_engine_t *e);
/* Wait a growing backoff (SAGAD_WAKE_RETRY) before stepping again. */
void batch_schedule_retry(sagad_engine_t *e);
/* Perform the effects of the streams that committed, ack their inputs;
 * streams that did not are read back and their inputs queued again. */
void batch_settle(sagad_engine_t *e);

/* ---- load.c --------------------------------------------------------- */

/* Start reading saga id back from the store (mode: LOAD_READ_BACK,
 * LOAD_READ_BACK_UNACTED, or LOAD_OUTPUTS for a saga in memory). When it
 * ends, waiter (an input, or NULL) learns it (input_t.loaded), a failed
 * read-back is noted for a later one when reload is set, and the engine
 * pumps again. 0, or -1 when it could not start (logged). */
int load_start(sagad_engine_t *e, const char *id, int32_t partition,
               load_mode_t mode, input_t *waiter, bool reload);
/* Remember a saga of ours no longer in memory whose read-back failed. */
void load_note_reload(sagad_engine_t *e, const char *id, int32_t partition);
/* Start reading the noted sagas back; returns how many could not start. */
size_t load_reload_noted(sagad_engine_t *e);
/* Inbox partitions revoked: pending loads skip their sagas. */
void load_revoke(sagad_engine_t *e, const int32_t *parts, size_t n);
/* The input is freed: the load it waits on forgets it. */
void load_forget_waiter(input_t *in);
/* Free the pending loads' state (engine free, after the ports closed). */
void load_free_all(sagad_engine_t *e);

/* ---- effects.c ------------------------------------------------------ */

/* Perform an effect of a durable transition; 1 when it was a command
 * handed to the broker, else 0. output: as fx_send_final's. */
int fx_perform(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx,
               int64_t now, uint8_t *output, size_t output_len);
/* Send the final notification of terminal saga en (at the time of its
 * last transition when at_ms is 0: recovery), through the outbox. output
 * (output_len bytes, taken) is the saga's output built when its Completed
 * transition was stepped; NULL: built here from its input and outputs
 * (recovery, or a saga without an output mapping). */
void fx_send_final(sagad_engine_t *e, entry_t *en, int64_t at_ms,
                   uint8_t *output, size_t output_len);
/* A notification effect (a final one goes through the outbox; output:
 * as fx_send_final's, freed when the notification is not final). */
void fx_send_notification(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx,
                          int64_t now, uint8_t *output, size_t output_len);
/* Produce a notification sent once to `topic` (the notifications or the
 * progress topic): without a delivery report when done is NULL, else
 * done(e, status) runs on its delivery. */
void fx_produce_notification(sagad_engine_t *e, const char *topic,
                             const sagad_notification_t *n,
                             void (*done)(void *arg, int status));
/* A final notification's produce finished: recorded, or sent again
 * (persisted, a sagad_persisted_t, only logged). */
void fx_outbox_delivered(sagad_engine_t *e, outbox_t *ob, int status,
                         int persisted);
/* Send the outbox's retry list again. */
void fx_outbox_retry(sagad_engine_t *e);
/* A command's produce finished: forgotten (delivered, or the engine is
 * stopping), or, when it failed or is unconfirmed, produced again later
 * if its saga still waits for that attempt (persisted, a
 * sagad_persisted_t, only logged). */
void fx_command_delivered(sagad_engine_t *e, cmd_sent_t *c, int status,
                          int persisted);
/* Produce the undelivered commands again (those still waited for); one
 * no longer waited for is logged and dropped. */
void fx_command_retry(sagad_engine_t *e);
void fx_command_free_list(cmd_sent_t *c); /* a retry list; NULL-safe */
void fx_outbox_free(outbox_t *ob); /* NULL-safe */

/* ---- dead_letter.c -------------------------------------------------- */

/* Write input m to the dead-letter topic (reason: the text; why: the
 * class), acking it once written. */
void dlq_write(sagad_engine_t *e, const sagad_inmsg_t *m, const char *reason,
               const char *why);
/* A dead letter's produce finished: acked, cut shorter, or held. */
void dlq_delivered(sagad_engine_t *e, dletter_t *dl, int status);
/* Send the held dead letters again. */
void dlq_retry(sagad_engine_t *e);
void dlq_free(dletter_t *dl);

/* ---- small shared helpers ------------------------------------------- */

static inline void q_push(queue_t *q, input_t *in) {
  in->next = NULL;
  if (q->tail)
    q->tail->next = in;
  else
    q->head = in;
  q->tail = in;
}

static inline input_t *q_pop(queue_t *q) {
  input_t *in = q->head;
  if (in) {
    q->head = in->next;
    if (!q->head)
      q->tail = NULL;
  }
  return in;
}

static inline const char *step_name(const sm_t *s, unsigned i) {
  return i < s->def->nsteps ? s->def->steps[i].name : NULL;
}

static inline int part_in(int32_t p, const int32_t *parts, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (parts[i] == p)
      return 1;
  return 0;
}

#endif
