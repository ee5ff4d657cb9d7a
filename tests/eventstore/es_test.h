/* Helpers for the event store tests: a migrated scratch database, a raw
 * libpq connection to it, and small event builders. Test-only code. */
#ifndef SAGA_ES_TEST_H
#define SAGA_ES_TEST_H

#include <stdint.h>

#include <libpq-fe.h>

#include "saga/eventstore.h"

/* Create a fresh database and migrate it; returns its conninfo. */
char *est_db(const char *prefix);
/* Drop a database made by est_db and free its conninfo. */
void est_drop(char *conninfo);
/* Open a store on conninfo or fail the test. */
es_store_t *est_open(const char *conninfo);
/* A raw connection (fails the test on error). */
PGconn *est_raw(const char *conninfo);
/* Run sql on c, return the first column of the first row as a long long
 * (0 when there are no rows); fails the test on an SQL error. */
long long est_scalar(PGconn *c, const char *sql);
/* Run sql, return its SQLSTATE ("" when it succeeded); static buffer. */
const char *est_sqlstate(PGconn *c, const char *sql);
/* An event with type and text data (borrowed). */
es_event_t est_event(const char *type, const char *data);
/* Append per_stream (1 to 8) events to each of streams streams
 * "<category>-<i>" (i from 0) in one batch, or fail the test. */
void est_append_round(es_store_t *s, const char *category, int streams,
                      int per_stream);
/* Terminate every other backend connected to the database of c, waiting
 * until they are gone. Returns how many were terminated. */
long long est_terminate_others(PGconn *c);
/* Wait until a global read from the start sees `want` events. Global reads
 * stop below the oldest transaction still open anywhere in the cluster
 * (docs/internals/eventstore.md), so with other sessions busy -- tests run
 * in parallel -- a commit becomes visible to them a moment later. */
void est_wait_global(es_store_t *s, size_t want);
/* The era of version `version` of stream (0 when there is none). */
long long est_era_of(PGconn *c, const char *stream, int version);
/* How many events stream holds in the database at conninfo. */
long long est_count_events(const char *conninfo, const char *stream);
/* Wait (within ts_timeout_ms) until a session of the database at conninfo
 * waits on a lock. */
void est_wait_lock_waiter(const char *conninfo);
/* A rival writer: a raw connection with an open transaction that has
 * inserted version 1 of stream (uncommitted). COMMIT or ROLLBACK it, then
 * PQfinish. */
PGconn *est_rival(const char *conninfo, const char *stream);

#endif
