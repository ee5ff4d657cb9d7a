/* The admin API's saga reads over PostgreSQL: get_saga and list_sagas of
 * admin_source_t, answered from saga_index (the coordinator's derived
 * table) and the event store (a saga's history, decoded with saga_codec).
 * Blocking libpq runs on a dedicated connection in libuv's thread pool
 * (uv_queue_work), one request at a time from a bounded FIFO, so the loop
 * never waits on the database; answers go out through admin_reply on the
 * loop thread. A lost connection is reopened on the next request (and a
 * read that lost it is tried once more). Never logs or exits. */
#ifndef SAGAD_ADMIN_PG_H
#define SAGAD_ADMIN_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "admin_api.h"
#include "abuf.h"
#include "definition.h"

#define ADMIN_PG_HISTORY_MAX 100000 /* largest max_history accepted */

typedef struct {
  const char *conninfo;          /* libpq conninfo (copied); required */
  int64_t stuck_after_ms;        /* default threshold of rows without
                                    stuck_at (default 300000) */
  uint32_t statement_timeout_ms; /* per statement, as options' -c
                                    statement_timeout unless conninfo sets
                                    options (default 5000) */
  uint32_t connect_timeout_s;    /* unless conninfo says (default 5) */
  size_t max_history;            /* records read per saga (default 1000;
                                    more: "history_truncated": true) */
  size_t max_queue;              /* requests waiting (default 64; more get
                                    503 at once) */
  /* Optional: names a saga's steps in its history (saga type and
   * definition_version looked up on the loop thread) when the store has
   * no recorded definition for it (saga_definitions, read first).
   * Borrowed; must outlive the handle. */
  const saga_registry_t *registry;
} admin_pg_opts_t;

/* Defaults for every field (conninfo NULL). */
void admin_pg_opts_init(admin_pg_opts_t *opts);

typedef struct admin_pg admin_pg_t;

/* New reader on loop; connects lazily on the first request (in the thread
 * pool). NULL when out of memory or opts are invalid (no conninfo,
 * stuck_after_ms < 1, max_history 1..ADMIN_PG_HISTORY_MAX, max_queue < 1).
 * Loop thread. */
admin_pg_t *admin_pg_new(uv_loop_t *loop, const admin_pg_opts_t *opts);

/* A saga is stuck once now passes the stuck_at the coordinator wrote in
 * its saga_index row (the thresholds of the steps it waits on, from the
 * definition version it runs). The thresholds below judge only rows
 * written before that column existed (stuck_at NULL).
 *
 * Stuck threshold override for sagas of type waiting on step (NULL or ""
 * = any step of the type; an exact step wins over the type's). Replaces
 * an earlier value for the same pair; applies to requests queued from now
 * on. Returns 0, or -1 when out of memory or ms < 1. Loop thread. */
int admin_pg_set_stuck(admin_pg_t *pg, const char *type, const char *step,
                       int64_t ms);

/* Every step's stuck_after_ms of def as overrides for def->name (a saga
 * that waits on a step is stuck when its last progress is older than that
 * step's threshold, as saga_is_stuck decides). Returns 0 or -1 (out of
 * memory). Loop thread. */
int admin_pg_stuck_from_def(admin_pg_t *pg, const saga_def_t *def);

/* A lookup's answer, on the loop thread: status 200 with the saga's
 * saga_index row (valid during the call only), 404 when saga_index has no
 * such saga (row NULL), or 503 with err (the store could not be read, too
 * many requests wait, or the reader is closing). */
typedef void (*admin_pg_lookup_cb_t)(void *arg, int status,
                                     const admin_saga_row_t *row,
                                     const char *err);

/* Look saga id up in saga_index (no history), queued with the reads; cb
 * runs exactly once, possibly before this returns (refused at once).
 * POST /sagas/{type} asks it whether an id is taken, whatever the saga's
 * state. Loop thread. */
void admin_pg_lookup(admin_pg_t *pg, const char *id, admin_pg_lookup_cb_t cb,
                     void *arg);

/* The answer to admin_pg_traceparents, on the loop thread: status 200 and
 * tps[i] the W3C traceparent the first event of ids[i]'s stream was
 * stored with (its StartSaga's header; "" when it had none or there is no
 * such stream), valid during the call only; or 503 with err and tps NULL
 * (the store could not be read, too many requests wait, out of memory or
 * closing). */
typedef void (*admin_pg_traces_cb_t)(void *arg, int status,
                                     const char *const *tps, size_t n,
                                     const char *err);

/* Read the traceparent of the first event of each of the n sagas ids
 * (copied) from the event store, as one request queued with the reads:
 * sagad continues a saga it recovers in the trace its starter began.
 * cb runs exactly once, possibly before this returns (refused at once).
 * Loop thread. */
void admin_pg_traceparents(admin_pg_t *pg, const char *const *ids, size_t n,
                           admin_pg_traces_cb_t cb, void *arg);

/* Point src's get_saga and list_sagas (and arg) at pg; start_saga and
 * readiness are left as they were, for the engine to set. */
void admin_pg_source(admin_pg_t *pg, admin_source_t *src);

/* Counters: requests answered, failed (503), refused (queue full),
 * reconnects. */
typedef struct {
  uint64_t answered, failed, refused, reconnects;
  size_t queued;
} admin_pg_stats_t;
void admin_pg_stats(const admin_pg_t *pg, admin_pg_stats_t *out);

/* Answer every queued request 503, let the running one finish, close the
 * connections (in the pool), then call close_cb(arg) (may be NULL) on the
 * loop thread and free pg. Close the admin HTTP server first (its close
 * callback is a good place for this): the source must outlive it. NULL pg
 * is accepted. */
void admin_pg_close(admin_pg_t *pg, void (*close_cb)(void *arg), void *arg);

/* Append the events of one stored saga record (data[0..len), stream
 * version `version`) to b as JSON objects separated by commas, a comma
 * first unless *first; *first becomes false. Each object:
 * {"version", "time" (RFC 3339 UTC, ms), "time_ms", "event" (Started,
 * Dispatched, Succeeded, AttemptFailed, ...), "step" (name from def, or
 * "#i" without it; null when the event has none), "step_index", "action"
 * ("do"/"compensate" or null), "attempt" (or null), "outcome" ("success",
 * "failure", "retryable", "timeout" or null), "reason" (or null),
 * "operator" (who retried, resolved or cancelled, or null), "until"
 * and "until_ms" (a deadline or retry time, or null)}; Started adds
 * "definition", "definition_version" and "input" (the saga's input),
 * Completed "output" (the saga's output), a Succeeded with a reply payload
 * "output" (the step's); a payload is its JSON, or a string when it is not
 * JSON, or null when empty. An undecodable record becomes one
 * {"version", "event": "undecodable"} object. def may be NULL. Returns 0
 * or -1 when b failed. Pure; any thread. */
int admin_pg_history_record(abuf_t *b, bool *first, const saga_def_t *def,
                            int64_t version, const void *data, size_t len);

#endif
