/* The coordinator engine: the in-memory saga table, every input through the
 * pure machine (sm_step), group commit of the turn's transitions into one
 * store batch, effects and input acks only after that batch is durable,
 * saga timers, recovery on partition assignment, fencing on version
 * conflicts, dead letters. It does no I/O of its own: everything goes
 * through the three ports (ports.h), so the daemon and the simulator drive
 * the same code. Single-threaded: every call on the loop thread. */
#ifndef SAGAD_ENGINE_H
#define SAGAD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "definition.h"
#include "ids.h"
#include "ports.h"
#include "saga_machine.h"

typedef struct sagad_engine sagad_engine_t;

/* Simple counters for logs and the admin endpoint. */
typedef struct {
  uint64_t inputs;            /* inbox messages taken */
  uint64_t started;
  uint64_t completed;
  uint64_t compensated;
  uint64_t compensation_failed; /* parked: alert on this */
  uint64_t dead_lettered;
  uint64_t dead_letters_truncated; /* written with a prefix of the value */
  uint64_t dead_letters_blocked;   /* now: not yet written, retried; their
                                      inputs' offsets wait (a gauge) */
  uint64_t anomalies[SM_V_FINISHED + 1]; /* by sm_verdict_t */
  uint64_t batches;           /* batches committed */
  uint64_t records;           /* transitions committed */
  uint64_t append_retries;    /* batch resubmissions (connection lost) */
  uint64_t conflicts;         /* streams fenced by a version conflict */
  uint64_t recovered;         /* sagas rebuilt from the store and resumed */
  uint64_t commands_sent;
  uint64_t commands_resent; /* attempts produced again after a failed
                               delivery (fx_command_delivered) */
  uint64_t produce_errors;
  uint64_t outputs_read_back; /* sagas whose outputs the cache had dropped,
                                 read back from the store */
} sagad_counters_t;

typedef struct {
  const saga_registry_t *registry; /* borrowed, outlives the engine */
  const char *inbox_topic;         /* reply_topic of every command */
  /* Outcomes, REJECTED, CANCEL_REFUSED, COMPENSATION_FAILED; NULL or ""
   * = none of them */
  const char *notify_topic;
  /* Where the progress notes (STARTED, STEP_DONE) go; NULL or "" = they
   * are not sent. May equal notify_topic. */
  const char *progress_topic;
  const char *dlq_topic;
  size_t batch_max_events;         /* 0 = 1024 */
  size_t payload_max_bytes;        /* 0 = 1 MiB */
  /* Largest message the producer sends (its message.max.bytes); 0 =
   * librdkafka's default 1,000,000. A dead letter is cut to fit it. */
  size_t produce_max_bytes;
  /* Bytes of step outputs kept in memory across the running sagas; past
   * it, the outputs of the sagas least recently used are dropped and read
   * back from the store when a command needs them. 0 = 256 MiB. */
  size_t output_cache_bytes;
  uint64_t rng_seed;               /* retry jitter */
  /* Called on the loop when the sagas of assigned partitions could not be
   * read from the store (the load failed): this instance cannot own them
   * and should stop. NULL: only logged. */
  void (*on_fatal)(void *arg, const char *why);
  void *fatal_arg;
  /* Hands the heap's free pages back to the system, called on the loop
   * once the engine is idle after a backlog (4096 inputs stepped with more
   * queued), so that a burst does not stay resident. NULL: glibc's
   * malloc_trim(0), where the C library is glibc. sagad passes its
   * allocator's (daemon/allocator.h). */
  void (*trim_heap)(void);
  sagad_store_port_t store;
  sagad_broker_port_t broker;
  sagad_clock_port_t clock;
} sagad_engine_config_t;

/* A new engine (strings in cfg are copied, ports borrowed), or NULL when
 * out of memory. Free with sagad_engine_free once the ports are closed. */
sagad_engine_t *sagad_engine_new(const sagad_engine_config_t *cfg);
void sagad_engine_free(sagad_engine_t *e); /* NULL-safe */

/* ---- entry points for the ports ---------------------------------- */

/* An inbox message (broker). Decoded now; bad input is dead-lettered. */
void sagad_engine_on_message(sagad_engine_t *e, const sagad_inmsg_t *m);
/* A produce finished (broker): token from the produce call, status a
 * sagad_delivery_t, persisted a sagad_persisted_t (ports.h; only logged,
 * with a command or final notification not delivered). */
void sagad_engine_on_delivery(sagad_engine_t *e, void *token, int status,
                              int persisted);
/* Inbox partitions assigned (broker): rebuild and resume their sagas from
 * the store. The load is asynchronous (ports.h): inputs wait until it has
 * ended (none is dropped, their order kept). Returns 0, or < 0 when the
 * load could not be started (the caller should stop: it cannot own those
 * sagas); a load that fails later calls cfg.on_fatal. */
int sagad_engine_on_assign(sagad_engine_t *e, const int32_t *parts, size_t n);
/* Inbox partitions revoked (broker): forget their sagas and inputs. */
void sagad_engine_on_revoke(sagad_engine_t *e, const int32_t *parts, size_t n);
/* The submitted batch finished (store), sagad_store_status_t. */
void sagad_engine_on_batch_done(sagad_engine_t *e, int status);
/* A wake-up slot fired (clock). */
void sagad_engine_on_wake(sagad_engine_t *e, int slot);
/* The end of a loop turn (clock): step the queued inputs, append. */
void sagad_engine_on_turn_end(sagad_engine_t *e);

/* Graceful stop: take no more input, append what was taken, perform its
 * effects and acks, then call done(arg) once (possibly at once). */
void sagad_engine_stop(sagad_engine_t *e, void (*done)(void *arg), void *arg);

/* After sagad_engine_stop's done, once the broker has closed (the last
 * delivery reports are in): record the final notifications delivered
 * since the last batch (their notify_pending flags cleared) in one last
 * batch, then done(arg) -- at once when there are none. The store port
 * must still be open. Not retried: a flag left set makes a recovery send
 * that notification once more. */
void sagad_engine_flush_marks(sagad_engine_t *e, void (*done)(void *arg),
                              void *arg);

/* ---- observation hooks (observe.c: metrics, traces, stuck sagas) -- */

/* Small calls at the points where the engine learns something; any field
 * may be NULL. Each saga in memory has an observer slot (a void *, NULL at
 * first) the hooks may fill; on_forget frees it when the saga leaves
 * memory. Hooks run on the loop thread and must not call back into the
 * engine. */
typedef struct {
  void *arg;
  /* A transition was stepped: its events join the turn's batch (not yet
   * durable: anything it makes leave the process waits for on_durable).
   * tp is the input's W3C traceparent header, or NULL. */
  void (*on_events)(void *arg, void **obs, const sm_t *s,
                    const sm_event_t *ev, size_t n, int64_t now,
                    const char *tp);
  /* A command of a durable transition is being produced: write the
   * traceparent it carries into tp, or leave tp "". */
  void (*on_command)(void *arg, void *obs, const sm_t *s, unsigned step,
                     int action, char tp[SAGA_TRACEPARENT_SIZE]);
  void (*on_forget)(void *arg, void *obs);
  /* Saga s, not terminal, came into memory from the store (recovery, a
   * rebalance, a read-back), before it resumes: the hook may fill its
   * slot from the state (an attempt in flight: its dispatch time is its
   * deadline less the step's timeout). */
  void (*on_met)(void *arg, void **obs, const sm_t *s);
  /* A command decided by a reply was handed to the broker; received_us is
   * the reply's sagad_inmsg_t.received_us (nonzero), so the hook can time
   * reply received -> next command produced, durable append included. */
  void (*on_reply_command)(void *arg, int64_t received_us);
  /* An input went to the dead-letter topic; reason is a short class
   * (undecodable, unknown_type, input_too_large). */
  void (*on_dead_letter)(void *arg, const char *reason);
  /* A batch of `streams` sagas and `records` transitions was submitted;
   * it finished with a sagad_store_status_t. */
  void (*on_batch_submit)(void *arg, size_t streams, size_t records);
  void (*on_batch_done)(void *arg, int status);
  /* Every transition stepped for saga s since its last durable batch
   * (each on_events call) is committed: once per saga of a batch whose
   * stream was appended (or found already appended), before the batch's
   * effects are performed. A saga whose append failed gets no call: its
   * observer slot is freed (on_forget) and it is read back, so its
   * transitions are stepped, and reported, again. */
  void (*on_durable)(void *arg, void *obs, const sm_t *s);
} sagad_engine_hooks_t;

/* Install hooks (copied); NULL removes them. */
void sagad_engine_set_hooks(sagad_engine_t *e, const sagad_engine_hooks_t *h);

/* Call fn for every saga in memory with its partition and observer slot.
 * fn must not change the engine. */
void sagad_engine_foreach(sagad_engine_t *e,
                          void (*fn)(void *arg, const sm_t *s,
                                     int32_t partition, void **obs),
                          void *arg);

/* The saga id in memory (in flight on this instance), or NULL. */
const sm_t *sagad_engine_find(const sagad_engine_t *e, const char *id);

/* Produce a message through the engine's broker (POST /sagas/{type}
 * produces StartSaga to the inbox): as the broker port's produce (hdrs
 * only borrowed for the call); done(arg, status) runs once on delivery,
 * status a sagad_delivery_t. Returns 0 or < 0 (done never called). */
int sagad_engine_produce(sagad_engine_t *e, const char *topic,
                         const void *key, size_t key_len, const void *value,
                         size_t value_len, const saga__hdrs_t *hdrs,
                         void (*done)(void *arg, int status), void *arg);

/* Free a delivery token that will never be delivered, without acting on
 * it: the simulator's producer that died with its process (a real one's
 * tokens die with the process). */
void sagad_engine_forget_token(void *token);

/* The largest saga input a StartSaga may carry: the payload ceiling, or
 * less when the producer's message.max.bytes could not carry a command
 * with that input (SAGAD_COMMAND_ENVELOPE bytes besides the input). A
 * larger one is refused with a REJECTED notification and a dead letter. */
#define SAGAD_COMMAND_ENVELOPE 8192
size_t sagad_engine_input_max(const sagad_engine_t *e);

/* Inbox partitions currently assigned to this instance. */
size_t sagad_engine_partitions(const sagad_engine_t *e);

const sagad_counters_t *sagad_engine_counters(const sagad_engine_t *e);
/* Sagas held in memory (in flight). */
size_t sagad_engine_sagas(const sagad_engine_t *e);

#endif
