/* The coordinator engine: the in-memory saga table, every input through the
 * pure machine (saga_step), group commit of the turn's transitions into one
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
  uint64_t anomalies[SAGA_V_FINISHED + 1]; /* by saga_verdict_t */
  uint64_t batches;           /* batches committed */
  uint64_t records;           /* transitions committed */
  uint64_t append_retries;    /* batch resubmissions (connection lost) */
  uint64_t conflicts;         /* streams fenced by a version conflict */
  uint64_t recovered;         /* sagas rebuilt from the store and resumed */
  uint64_t commands_sent;
  uint64_t produce_errors;
} sagad_counters_t;

typedef struct {
  const saga_registry_t *registry; /* borrowed, outlives the engine */
  const char *inbox_topic;         /* reply_topic of every command */
  const char *notify_topic;        /* NULL or "" = no notifications */
  const char *dlq_topic;
  size_t batch_max_events;         /* 0 = 1024 */
  size_t payload_max_bytes;        /* 0 = 1 MiB */
  uint64_t rng_seed;               /* retry jitter */
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
/* A produce finished (broker): token from the produce call, err 0 or a
 * librdkafka error. */
void sagad_engine_on_delivery(sagad_engine_t *e, void *token, int err);
/* Inbox partitions assigned (broker): rebuild and resume their sagas from
 * the store, blocking. Returns 0 or < 0 when the store could not be read
 * (the caller should stop: it cannot own those sagas). */
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

/* The saga id in memory (in flight on this instance), or NULL. */
const saga_t *sagad_engine_find(const sagad_engine_t *e, const char *id);

const sagad_counters_t *sagad_engine_counters(const sagad_engine_t *e);
/* Sagas held in memory (in flight). */
size_t sagad_engine_sagas(const sagad_engine_t *e);

#endif
