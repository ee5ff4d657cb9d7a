/* Test helper: sagas driven through the pure machine by a script of
 * replies and timeouts, each transition handed to a callback as an
 * encoded saga_codec record -- to seed an event store and saga_index
 * (seed_pg_*) or to build a history in memory. Shared by the admin tests;
 * test-only code: it aborts on errors. */
#ifndef SAGA_TEST_SEED_H
#define SAGA_TEST_SEED_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "saga/eventstore.h"
#include "saga_machine.h"

/* Script entries: a reply outcome (SM_OUTCOME_SUCCESS, _FAILURE,
 * _RETRYABLE) for the oldest command in flight, or SEED_TIMEOUT to let
 * its deadline fire. Backoff timers fire by themselves when no command is
 * in flight. */
#define SEED_TIMEOUT 0xff

/* The output a seeded saga's Completed event records (sagad puts its
 * definition's "output" mapping there). */
#define SEED_OUTPUT "{\"shipment\":\"ship-1\"}"

/* One stored record: the saga after the transition, its bytes, its event
 * type, the time it was decided. */
typedef void (*seed_record_fn)(void *arg, const sm_t *s, const uint8_t *rec,
                               size_t len, const char *type, int64_t at_ms);

/* The payload of every successful reply to a step's command (its
 * output); NULL (the default) = none. */
extern const char *seed_step_output;

/* Start a saga of def with id at t0 and play script (replies come
 * reply_ms after their command). Returns the saga (free it) in the state
 * the script leaves it. */
sm_t *seed_drive(const saga_def_t *def, const char *id, int64_t t0,
                   int64_t reply_ms, const uint8_t *script, size_t n,
                   seed_record_fn fn, void *arg);

/* A seed_record_fn appending to stream "saga-<id>" of the es_store_t arg. */
void seed_pg_append(void *store, const sm_t *s, const uint8_t *rec,
                    size_t len, const char *type, int64_t at_ms);

/* Insert the saga's saga_index row (partition 0) as the coordinator
 * writes it. */
void seed_pg_index(PGconn *c, const sm_t *s);

/* Run sql (several statements allowed) or abort. */
void seed_pg_exec(PGconn *c, const char *sql);

/* The database's clock, ms since the epoch. */
int64_t seed_pg_now_ms(PGconn *c);

/* Definition from JSON, or abort. */
saga_def_t *seed_def(const char *json);

#endif
