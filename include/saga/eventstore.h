/* saga event store: an append-only PostgreSQL event store (libpq).
 *
 * Two faces over one schema: a blocking face (es_store_t) for tools and
 * tests, and a non-blocking face (es_async_t, es_sub_t) driven by a caller's
 * libuv loop. The library never logs, exits, reads the environment, or
 * starts threads; it reads and writes files only in the archive calls
 * (es_archive_*), which say so. Every call returns an es_err_t (0 = OK, negative = error);
 * detail text goes to an optional errbuf (ES_ERRBUF_SIZE bytes is enough).
 *
 * Versions: the first event of a stream has version 1; a stream's version is
 * the version of its last event (0 = no stream). Global positions grow with
 * each insert but commit out of order; global reads follow an es_pos_t
 * (transaction id, position) that is gap-safe (docs/internals/eventstore.md).
 */
#ifndef SAGA_EVENTSTORE_H
#define SAGA_EVENTSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SAGA_ES_BUILDING)
#define ES_EXPORT __attribute__((visibility("default")))
#else
#define ES_EXPORT
#endif

/* ---- errors -------------------------------------------------------- */

/* X(name, value, message). Values are never reused or redefined. */
#define ES_ERRNO_MAP(X)                                                       \
  X(OK, 0, "success")                                                         \
  X(CONFLICT, -1, "wrong expected stream version")                            \
  X(DUPLICATE, -2, "events already stored by an earlier append")              \
  X(ID_REUSED, -3, "event id already stored by a different append")           \
  X(BATCH_ABORTED, -4, "batch transaction aborted by another statement")      \
  X(CONNECTION, -5, "connection to the database lost")                        \
  X(INVALID, -6, "invalid argument")                                          \
  X(TOO_LARGE, -7, "value larger than the configured ceiling")                \
  X(BAD_UTF8, -8, "invalid UTF-8 in a text value")                            \
  X(DB, -9, "database error")                                                 \
  X(NOMEM, -10, "out of memory")                                              \
  X(CANCELLED, -11, "operation cancelled by close")                           \
  X(SCHEMA, -12, "database schema missing or newer than this library")        \
  X(BUSY, -13, "handle is closing or has an operation it cannot queue")       \
  X(NOT_FOUND, -14, "not found")                                              \
  X(RETRY, -15, "transient database error, retry")                           \
  X(CORRUPT, -16, "archive file damaged, truncated or not an archive")        \
  X(IO, -17, "file could not be opened, read or written")                    \
  X(NOT_OWNER, -18, "consumer group member no longer owns the buckets read")

typedef enum {
#define ES_ERR_ENUM_(name, value, msg) ES_ERR_##name = (value),
  ES_ERRNO_MAP(ES_ERR_ENUM_)
#undef ES_ERR_ENUM_
} es_err_t;

#define ES_ERRBUF_SIZE 256

/* Static message for err ("unknown error" for a value not in the map). */
ES_EXPORT const char *es_strerror(int err);
/* Static enum name without prefix, e.g. "CONFLICT" ("UNKNOWN" otherwise). */
ES_EXPORT const char *es_err_name(int err);
/* True when the same call may succeed if repeated unchanged: CONNECTION
 * (after the automatic reconnect; a lost commit shows up as DUPLICATE),
 * BATCH_ABORTED and RETRY. */
ES_EXPORT int es_err_is_retriable(int err);

/* ---- plain values -------------------------------------------------- */

/* Expected version for appends: any version, or an exact one (0 = the
 * stream must not exist yet). */
#define ES_ANY_VERSION ((int64_t)-1)
#define ES_NO_STREAM ((int64_t)0)

#define ES_MAX_STREAM_ID 511 /* bytes, stream ids: a prefix and an id of
                                255 bytes (a saga's "saga-<id>") fit */
#define ES_MAX_TYPE 255      /* bytes, event types and snapshot types */
#define ES_MAX_TEXT 1024     /* bytes, correlation/causation/metadata text */
#define ES_MAX_SUB_NAME 255  /* bytes, subscription and group names */

/* A free key/value pair of event metadata (stored as a jsonb object, so
 * the keys of one event must differ: a key given twice is INVALID). */
typedef struct {
  const char *key;
  const char *value;
} es_kv_t;

/* One event to append. All pointers are borrowed for the duration of the
 * call that takes the event; the library copies what it keeps. A nil id
 * (16 zero bytes) makes the library generate a time-ordered version-7 UUID
 * (es_uuid_v7) and write it back into id, so callers that retry should set
 * ids themselves (es_uuid_v7 or es_uuid_v4) to make the retry recognisable
 * as a duplicate. */
typedef struct {
  uint8_t id[16];
  const char *type;           /* required, UTF-8, 1..ES_MAX_TYPE bytes */
  const void *data;           /* may be NULL when data_len == 0 */
  size_t data_len;            /* at most es_store_opts_t.max_payload */
  const char *correlation_id; /* optional, UTF-8 */
  const char *causation_id;   /* optional, UTF-8 */
  const char *traceparent;    /* optional, W3C "00-<32hex>-<16hex>-<2hex>" */
  const es_kv_t *meta;        /* optional free key/values */
  size_t n_meta;
} es_event_t;

/* A gap-safe global read position: (transaction id, global position).
 * {0, 0} is the start. */
typedef struct {
  uint64_t tx;
  int64_t pos;
} es_pos_t;

/* One stored event as read back. Every pointer points into the page that
 * holds it and lives until es_page_free. Text fields are NUL-terminated;
 * absent optional ones are NULL. meta_json is the metadata object as JSON. */
typedef struct {
  es_pos_t at;
  int64_t global_position;
  const char *stream_id;
  int64_t version;
  uint8_t id[16];
  const char *type;
  const void *data;
  size_t data_len;
  const char *correlation_id;
  const char *causation_id;
  const char *traceparent;
  const char *meta_json;
  int64_t recorded_at_us; /* microseconds since the Unix epoch */
} es_recorded_t;

/* A page of events read in one round trip. next is where to continue a
 * global read (equal to the request's from when the page is empty). */
typedef struct es_page {
  size_t n;
  es_recorded_t *events;
  es_pos_t next;
  /* A group member's page (es_member_read): the buckets it was read from,
   * bit b for bucket b, to acknowledge with es_member_ack; 0 otherwise. */
  uint64_t buckets;
  void *priv_; /* library-owned */
} es_page_t;

/* Free a page and every event in it. NULL is accepted. */
ES_EXPORT void es_page_free(es_page_t *page);

/* Fill out with a random (version 4) UUID from getrandom(2). Returns 0 or
 * ES_ERR_INVALID when no randomness could be read. Thread-safe. */
ES_EXPORT int es_uuid_v4(uint8_t out[16]);
/* Fill out with a time-ordered (version 7, RFC 9562) UUID: the Unix time in
 * milliseconds in its first 48 bits, then 74 random bits from getrandom(2).
 * Ids drawn in a later millisecond sort after earlier ones, so the event id
 * index takes them at its right edge instead of at random pages (the ids the
 * library draws are of this kind; they reveal when they were drawn). Returns
 * 0 or ES_ERR_INVALID when the clock or randomness could not be read.
 * Thread-safe. */
ES_EXPORT int es_uuid_v7(uint8_t out[16]);
/* Format a UUID as 36 characters + NUL into out (37 bytes). */
ES_EXPORT void es_uuid_format(const uint8_t id[16], char out[37]);

/* ---- options ------------------------------------------------------- */

typedef struct {
  /* Largest event data / snapshot data accepted, bytes (default 1 MiB;
   * above 1 GiB - 1, the most PostgreSQL takes in one value, data is
   * TOO_LARGE whatever this says). */
  size_t max_payload;
  /* Send a NOTIFY on the store's channel with each append or committed
   * batch while a subscription (es_sub_start, any process) listens, so it
   * wakes at once (default 1); with none listening the NOTIFY is skipped.
   * NOTIFY takes a cluster-wide lock at commit; writers that batch pay it
   * once per batch. With 0, subscriptions fall back to their poll
   * interval. */
  int notify;
  /* es_store_open only: apply pending migrations on open (default 0:
   * es_migrate does it). es_async_open, es_sub_start and
   * es_group_sub_start ignore it; they need the schema in place. */
  int migrate;
  /* libpq connection defaults for the store's connections, as keyword and
   * value pairs ending with a NULL keyword, e.g. {"connect_timeout", "5",
   * "application_name", "sagactl", NULL}. The conninfo's own settings win
   * over them (libpq's PQconnectdbParams with expand_dbname), so nobody
   * rewrites a conninfo to add one. Copied by es_store_open; es_async_open,
   * es_sub_start and es_group_sub_start ignore it (put such settings in
   * their conninfo). Default NULL: none. */
  const char *const *conn_defaults;
  /* Whether es_checkpoint_save, es_group_ack and es_member_ack wait until
   * their commit is flushed to disk (default 0: they return once it is
   * committed and visible, and PostgreSQL flushes it within about three
   * wal_writer_delay, 600 ms by default, without a flush of its own per
   * acknowledgement). These are the at-least-once acknowledgements: a
   * checkpoint lost to a crash of the database server only means the
   * events after the last flushed one are read again, as after a crash of
   * the reader. 1 makes each of them wait for its flush. The statements a
   * caller puts in its own batch (es_batch_add_checkpoint and the other
   * es_batch_add_*_ack) commit with that batch as it is, and a reset
   * (es_checkpoint_reset) always waits. */
  int durable_acks;
} es_store_opts_t;

/* Defaults for every field. */
ES_EXPORT void es_store_opts_init(es_store_opts_t *opts);

/* ---- schema -------------------------------------------------------- */

/* Apply every migration newer than the database's recorded schema version,
 * in order, each in its own transaction, under an advisory lock (safe to run
 * from several processes at once). Creates the NOLOGIN roles es_writer
 * (reads the events and appends them through the es_append view, keeps
 * subscriptions, groups and snapshots; never updates or deletes an event)
 * and es_admin (archives and drops old eras) if missing, so the role that
 * runs it needs CREATEROLE the first time, and the right to create
 * tables. A database already up to date is only read (its version, before
 * the lock and again after it), so a role without those rights -- a
 * service's, a member of es_writer -- may call it at every start.
 * Blocking. *version (optional) receives the schema version now in
 * place. */
ES_EXPORT int es_migrate(const char *conninfo, int *version, char *errbuf,
                         size_t errlen);
/* As es_migrate, but only up to schema version target (1 to
 * es_schema_version()): for an upgrade in steps, e.g. to run migration 3
 * (the events table becomes partitioned, which rebuilds its keys) in a
 * window of its own. A database already past target is left as it is.
 * Errors: INVALID (no conninfo, one libpq cannot parse, target out of
 * range), CONNECTION, SCHEMA
 * (a migration failed, or the database is newer than this library;
 * errbuf says which and why), NOMEM. */
ES_EXPORT int es_migrate_to(const char *conninfo, int target, int *version,
                            char *errbuf, size_t errlen);
/* Schema version this library expects (the newest migration). */
ES_EXPORT int es_schema_version(void);

/* ---- blocking face ------------------------------------------------- */

typedef struct es_store es_store_t;

/* Connect (blocking) and check the schema. opts may be NULL (defaults).
 * On success *out owns a connection; free it with es_store_close. Errors:
 * CONNECTION, SCHEMA (run es_migrate), NOMEM, INVALID (also a conninfo
 * libpq cannot parse: retrying it cannot help). One store per thread
 * at a time; stores share nothing. */
ES_EXPORT int es_store_open(const char *conninfo, const es_store_opts_t *opts,
                            es_store_t **out, char *errbuf, size_t errlen);
/* Close the connection and free the store. NULL is accepted. */
ES_EXPORT void es_store_close(es_store_t *store);
/* Text of the last error on store ("" when none); valid until the next call
 * on store. */
ES_EXPORT const char *es_store_last_error(const es_store_t *store);

/* Per-stream outcome of an append. version is the stream's version after
 * the call (for CONFLICT and DUPLICATE: its current version; for
 * BATCH_ABORTED: the version the batch found, or 0 when an error raised
 * before the stream was looked at left it unknown); positions are those of
 * the first and last event written (0 when none was written). */
typedef struct {
  int status;
  int64_t version;
  int64_t first_position;
  int64_t last_position;
} es_append_result_t;

/* Append n (1 to 100000) events to stream_id if its version equals
 * expected (or expected is ES_ANY_VERSION), in one round trip (a second
 * tells a refusal apart, or repeats a single event appended at a version
 * this store wrote before an era switch) and one transaction. The store
 * remembers the version its last single-event append wrote to each of
 * its recent streams, and appends the next at that version without
 * reading the stream's version (docs/internals/eventstore.md). Returns 0, CONFLICT (nothing written; also for an expected
 * version the stream cannot have, up to INT64_MAX), DUPLICATE (every
 * event id is already stored in this stream: an earlier call committed;
 * nothing written), ID_REUSED (some id is stored elsewhere; nothing
 * written), INVALID / TOO_LARGE / BAD_UTF8 (nothing sent; expected below -1 is
 * INVALID), NOMEM, CONNECTION (outcome unknown: repeat the call, it
 * reconnects and answers DUPLICATE if the first one committed), DB.
 * result may be NULL; it is filled in for every answer (for refused
 * input: that status, version and positions 0). Nil ids in events are
 * filled in. */
ES_EXPORT int es_append(es_store_t *store, const char *stream_id,
                        int64_t expected, es_event_t *events, size_t n,
                        es_append_result_t *result);

/* ---- partitions ---------------------------------------------------- */

/* es_events is partitioned by era: each era's events live in a table of
 * their own (es_events_e<N>, listed in es_partitions with the range of
 * global positions each holds), so old history can be archived and
 * detached without deleting a row (docs/internals/eventstore.md).
 *
 * Roll the partitions forward (blocking): make sure the partitions of the
 * next two eras exist, and if the current era holds at least min_events
 * global positions, switch appends to the next era. The switch waits for
 * the appends in flight to commit and holds new ones back until it
 * commits, at most lock_wait_ms (0: no limit) before giving up with RETRY
 * and nothing switched. Call it from a maintenance timer (any process,
 * the writer role may); appends never fail for want of a partition, the
 * current one only grows. *era (optional) receives the current era after
 * the call. Errors: INVALID (min_events negative, lock_wait_ms above
 * INT32_MAX), RETRY, CONNECTION, DB. */
ES_EXPORT int es_roll_forward(es_store_t *store, int64_t min_events,
                              unsigned lock_wait_ms, int *era);

/* ---- retention: closed streams -------------------------------------- */

/* Declare stream_id closed: its owner will append nothing to it again, so
 * an era whose streams are all finished (closed, or the streams of
 * terminal sagas in the coordinator's saga_index) may be archived and
 * dropped by saga-es-archive once it is older than the retention period
 * (docs/internals/eventstore.md, "Archives"). Closing twice is harmless.
 * Nothing refuses a later append: it lands in the current era and counts
 * as finished too, so do not append after closing. The writer role may
 * call it. Errors: INVALID, TOO_LARGE, BAD_UTF8, CONNECTION, DB. */
ES_EXPORT int es_close_stream(es_store_t *store, const char *stream_id);

/* ---- batch append (group commit) ----------------------------------- */

/* A batch: many streams' appends plus optional parameterised statements,
 * executed in ONE transaction and, as a rule, ONE round trip (libpq
 * pipeline mode): the streams' appends go in one statement (one more per
 * repeated appearance of a stream id, which sees the earlier ones), then
 * the statements. The batch copies everything it is given; it is a plain
 * object, not tied to a store, reusable after es_batch_reset. Not
 * thread-safe.
 *
 * Outcome, per stream: a stale expected version or already-stored ids are
 * detected inside the statement without raising an error, so that stream
 * reports CONFLICT / DUPLICATE / ID_REUSED, writes nothing, and the others
 * commit. When a statement raises an error instead (a concurrent writer
 * won the race on a (stream, version) key, one event id given to two
 * streams of the batch, or an extra statement failed), the whole
 * transaction rolls back and the call returns BATCH_ABORTED. If the append
 * statement raised it, a second round trip classifies the streams (each
 * through its own statement, rolled back): the culprit reports CONFLICT
 * (ID_REUSED when the race was on an event id), so does any other stream
 * found stale or stored (CONFLICT / DUPLICATE / ID_REUSED), and every
 * stream that would have written reports BATCH_ABORTED. A stream is never
 * half written. */
typedef struct es_batch es_batch_t;

/* New empty batch, or NULL when out of memory. opts may be NULL; only
 * max_payload is used. */
ES_EXPORT es_batch_t *es_batch_new(const es_store_opts_t *opts);
/* Free a batch. NULL is accepted. Never while an async call holds it. */
ES_EXPORT void es_batch_free(es_batch_t *batch);
/* Forget every stream and statement, keeping allocated memory. */
ES_EXPORT void es_batch_reset(es_batch_t *batch);

/* Add an append of n (1 to 100000) events to stream_id with its expected
 * version, their data at most 1 GiB in all (INT32_MAX / 2 bytes: what
 * one append can encode; past it TOO_LARGE before anything is copied).
 * Validates and copies the input now: on error nothing is added.
 * Returns the stream's index (>= 0) for es_batch_result, or INVALID /
 * TOO_LARGE / BAD_UTF8 / NOMEM. Nil ids in events are filled in. */
ES_EXPORT int es_batch_add(es_batch_t *batch, const char *stream_id,
                           int64_t expected, es_event_t *events, size_t n);

/* Add a statement run after the appends, in the same transaction (e.g. an
 * upsert into a derived index table). params are text values (NULL = SQL
 * NULL), copied now; sql is copied too: one statement, whose $1..$nparams
 * are params (a count that does not match the text fails the batch with
 * BATCH_ABORTED when it runs). Statements run in the order added. Each
 * connection prepares the first 8 distinct statement texts it runs and
 * reuses them (parsed and planned once, not once per batch), so keep the
 * text fixed and vary the params. Returns its index (>= 0) or NOMEM, or
 * INVALID: no text, nparams not 0 to 65535, params NULL with nparams
 * above 0, or a statement that would end the batch's transaction or
 * change the library's session (BEGIN, START, COMMIT, END, ROLLBACK,
 * ABORT, SAVEPOINT, RELEASE, PREPARE TRANSACTION, DEALLOCATE, DISCARD,
 * RESET, LISTEN, UNLISTEN, and SET but SET LOCAL, SET TRANSACTION and SET
 * CONSTRAINTS). */
ES_EXPORT int es_batch_add_statement(es_batch_t *batch, const char *sql,
                                     int nparams,
                                     const char *const *params);

/* As es_batch_add_statement, but the statement is never prepared: it is
 * sent with its parameters and PostgreSQL plans it for them at every run.
 * For a statement whose best plan depends on its parameters or on a
 * table that grows: a prepared statement's generic plan is made once, on
 * the table as it was then, and kept (a scan of the whole table chosen
 * while it was small stays when it is large). Same returns. */
ES_EXPORT int es_batch_add_statement_replanned(es_batch_t *batch,
                                               const char *sql, int nparams,
                                               const char *const *params);

/* Number of streams added. */
ES_EXPORT size_t es_batch_size(const es_batch_t *batch);
/* Why the last es_batch_add* call on batch that failed was refused, naming
 * the argument and the fault ("event 3 of 5: event type is empty",
 * "metadata key \"k\" is given twice"); "" when none failed since the
 * batch was made or
 * reset. Valid until the next call on the batch. NULL batch: "no batch".
 * (es_batch_execute's failures are the store's: es_store_last_error,
 * es_async_last_error.) */
ES_EXPORT const char *es_batch_last_error(const es_batch_t *batch);
/* Outcome of stream i after execution (NULL when i is out of range).
 * Valid until the batch is added to, reset, freed or executed again. */
ES_EXPORT const es_append_result_t *es_batch_result(const es_batch_t *batch,
                                                    size_t i);
/* The id of event j of stream i as stored (generated ids included), 16
 * bytes; NULL when i or j is out of range. Valid until the batch is added
 * to, reset or freed. */
ES_EXPORT const uint8_t *es_batch_event_id(const es_batch_t *batch, size_t i,
                                           size_t j);

/* Execute the batch on store (blocking). Returns 0 when the transaction
 * committed (look at each stream's status), BATCH_ABORTED (nothing
 * committed; see per-stream status), CONNECTION (outcome unknown; every
 * stream reports CONNECTION; execute again to learn it: committed streams
 * then report DUPLICATE), DB, INVALID (empty batch). */
ES_EXPORT int es_batch_execute(es_store_t *store, es_batch_t *batch);

/* ---- reads (blocking) --------------------------------------------- */

/* Events of stream_id with version >= from_version, in version order, at
 * most max (1..10000). *out receives a page (possibly empty; free it with
 * es_page_free). Errors: INVALID (also a negative from_version),
 * TOO_LARGE / BAD_UTF8 (the stream id), CONNECTION, DB, NOMEM. */
ES_EXPORT int es_read_stream(es_store_t *store, const char *stream_id,
                             int64_t from_version, size_t max,
                             es_page_t **out);

/* Filter for global reads: NULL fields match everything. category matches
 * the part of the stream id before its first '-' ("order" for
 * "order-42"), so a category holding a '-' is INVALID (it would match
 * nothing). */
typedef struct {
  const char *category;
  const char *type;
} es_filter_t;

/* Up to max (1..10000) events after position from (exclusive) in global
 * order, that are committed and can no longer be preceded by a later
 * commit (see the internals page). Continue from page->next. filter may
 * be NULL; its strings, when given, are 1 to ES_MAX_STREAM_ID (category)
 * or ES_MAX_TYPE (type) bytes of UTF-8. Errors: INVALID (also from.pos
 * negative, an empty filter string or a category holding a '-'),
 * TOO_LARGE, BAD_UTF8, CONNECTION, DB, NOMEM. */
ES_EXPORT int es_read_all(es_store_t *store, es_pos_t from,
                          const es_filter_t *filter, size_t max,
                          es_page_t **out);

/* ---- named subscriptions and consumer groups (blocking) ------------- */

/* A named subscription keeps its checkpoint in the store (table
 * es_subscriptions), so a subscriber that restarts resumes where it left,
 * whatever process it runs in. The subscriber advances it after handling
 * events: with es_batch_add_checkpoint in the same transaction as its own
 * writes when they go to this database (each event then takes effect
 * exactly once), or with es_checkpoint_save afterwards (at least once: a
 * crash in between replays the events since the last save). A checkpoint
 * never moves back: saving an older position changes nothing. Names: 1 to
 * ES_MAX_SUB_NAME bytes of UTF-8; subscriptions and groups share one
 * name space. Every function taking a subscription or group name answers
 * TOO_LARGE for a longer one (errbuf or es_store_last_error says so). */

/* The checkpoint of subscription name into *pos ({0, 0}, the start, when
 * none was saved). Read from it with es_read_all or es_sub_start. Errors:
 * INVALID, BAD_UTF8, CONNECTION, DB. */
ES_EXPORT int es_checkpoint_load(es_store_t *store, const char *name,
                                 es_pos_t *pos);
/* Advance subscription name to pos (a page's next) in a transaction of its
 * own. Errors: INVALID, BAD_UTF8, CONNECTION, DB. */
ES_EXPORT int es_checkpoint_save(es_store_t *store, const char *name,
                                 es_pos_t pos);
/* The same advance as a statement of batch: it commits with the batch's
 * appends and statements or not at all. Returns the statement's index
 * (>= 0) or INVALID / BAD_UTF8 / NOMEM. */
ES_EXPORT int es_batch_add_checkpoint(es_batch_t *batch, const char *name,
                                      es_pos_t pos);

/* Forget the checkpoints of name, a subscription or every bucket of a
 * group, in a transaction of its own: its next read starts from the
 * beginning (to rebuild a read model from zero). Errors: INVALID,
 * BAD_UTF8, CONNECTION, DB. */
ES_EXPORT int es_checkpoint_reset(es_store_t *store, const char *name);
/* The same as a statement of batch, e.g. with the statements that empty
 * the read model, so both happen or neither. Returns the statement's
 * index or INVALID / BAD_UTF8 / NOMEM. */
ES_EXPORT int es_batch_add_checkpoint_reset(es_batch_t *batch,
                                            const char *name);

/* A consumer group shares the events of one category among members
 * processes: each stream falls in one of ES_GROUP_BUCKETS buckets (a hash
 * of its id stored with every event and indexed with the category), and
 * member m (0 <= m < members) handles the block of buckets b with
 * b * members / ES_GROUP_BUCKETS == m (before schema version 7: b %
 * members == m; stop every member of a static group before upgrading),
 * so every event of a stream goes to one member, in order. Each bucket
 * keeps its own checkpoint, so changing the number of members moves whole
 * buckets with their checkpoints. Members are numbered by the caller;
 * stop them all before changing members (no member may run with another
 * count: two members could then hold one bucket). For members that come
 * and go, with leases kept by the store, see es_group_join below. */
#define ES_GROUP_BUCKETS 64

/* Up to max (1..10000) events of category for member of group: its
 * buckets' events after each bucket's checkpoint, committed and no longer
 * preceded by a later commit, in the global order. *out receives a page
 * (free with es_page_free). Errors: INVALID (members not 1 to
 * ES_GROUP_BUCKETS, member out of range, a category holding a '-'),
 * TOO_LARGE (a group name past ES_MAX_SUB_NAME bytes, a category past
 * 511), BAD_UTF8, CONNECTION, DB. */
ES_EXPORT int es_group_read(es_store_t *store, const char *group,
                            const char *category, int member, int members,
                            size_t max, es_page_t **out);
/* After handling a non-empty page of es_group_read: advance every bucket
 * of member to pos (the page's next), in a transaction of its own. Every
 * event of those buckets up to pos was in the page. Errors as
 * es_group_read. */
ES_EXPORT int es_group_ack(es_store_t *store, const char *group, int member,
                           int members, es_pos_t pos);
/* The same advance as a statement of batch (exactly once with the
 * member's own writes in this database). Returns the statement's index or
 * INVALID / BAD_UTF8 / NOMEM. */
ES_EXPORT int es_batch_add_group_ack(es_batch_t *batch, const char *group,
                                     int member, int members, es_pos_t pos);

/* ---- consumer groups with membership (blocking) ---------------------- */

/* Members that come and go: a member joins a group and gets an id, holds
 * a lease it renews (es_group_renew, well within the lease), and the
 * store shares the group's ES_GROUP_BUCKETS buckets among the live
 * members (tables es_group_members and es_group_buckets; the database's
 * clock). When a member joins, some buckets of the others move to it;
 * when one leaves or its lease expires (no renewal in lease_ms), its
 * buckets move to the others at the next join or renewal of any member; a bucket
 * moves with its checkpoint. A bucket has one owner at a time: one taken
 * from a live member is handed over at that member's next es_member_read
 * (it stops reading it at once), and a member's acknowledgement checks,
 * in its own transaction, that it still owns the buckets it read, so a
 * member whose lease expired cannot advance them (NOT_OWNER). Every event
 * of a stream thus goes to one member at a time, in order; with the
 * acknowledgement in the same transaction as the member's own writes
 * (es_batch_add_member_ack) each event takes effect exactly once. Do not
 * mix these calls with es_group_read / es_group_ack on one group name. */
#define ES_MAX_LEASE_MS 3600000 /* one hour */

/* Join group (created by the first member) with a lease of lease_ms (1 to
 * ES_MAX_LEASE_MS). *member_id receives the member's id (positive, random,
 * for every later call); *buckets (optional) the buckets it owns now
 * (often none until the others hand theirs over). Errors: INVALID,
 * BAD_UTF8, CONNECTION, DB. */
ES_EXPORT int es_group_join(es_store_t *store, const char *group,
                            unsigned lease_ms, int64_t *member_id,
                            uint64_t *buckets);
/* Renew member_id's lease for lease_ms from now, and rebalance the group
 * (this is when the buckets of members whose lease expired move). Call it
 * well within the lease, e.g. every lease_ms / 3. *buckets (optional)
 * receives the buckets the member owns now. Errors: NOT_FOUND (the member
 * is gone: its lease has expired, even if no other member has acted
 * since, or it left; it owns nothing and must join again under a new
 * id), INVALID, BAD_UTF8, CONNECTION, DB. */
ES_EXPORT int es_group_renew(es_store_t *store, const char *group,
                             int64_t member_id, unsigned lease_ms,
                             uint64_t *buckets);
/* Leave group: member_id's buckets move to the other members at once.
 * Leaving twice is harmless. Errors: INVALID, BAD_UTF8, CONNECTION, DB. */
ES_EXPORT int es_group_leave(es_store_t *store, const char *group,
                             int64_t member_id);
/* Up to max (1..10000) events of category for member_id of group: the
 * events of the buckets it owns after each bucket's checkpoint, committed
 * and no longer preceded by a later commit, in the global order; first
 * it hands over the buckets due to a newcomer, so call it only once the
 * previous page was acknowledged (or given up). (*out)->buckets says
 * which buckets the page covers (for es_member_ack; 0 when empty).
 * Errors: INVALID, TOO_LARGE (a group name or category too long),
 * BAD_UTF8, CONNECTION, DB, NOMEM. */
ES_EXPORT int es_member_read(es_store_t *store, const char *group,
                             const char *category, int64_t member_id,
                             size_t max, es_page_t **out);
/* After handling a non-empty page of es_member_read: advance the buckets
 * of the page (buckets = page->buckets) to pos (page->next), in a
 * transaction of its own, if member_id still owns all of them. Errors:
 * NOT_OWNER (some moved to another member, which reads them from their
 * checkpoint: nothing was advanced; read again), INVALID, BAD_UTF8,
 * CONNECTION, DB. */
ES_EXPORT int es_member_ack(es_store_t *store, const char *group,
                            int64_t member_id, uint64_t buckets,
                            es_pos_t pos);
/* The same advance as a statement of batch, to commit with the member's
 * own writes (exactly once). Returns the statement's index or INVALID /
 * BAD_UTF8 / NOMEM. When the member no longer owns the buckets, executing
 * the batch returns NOT_OWNER (not BATCH_ABORTED) and commits nothing. */
ES_EXPORT int es_batch_add_member_ack(es_batch_t *batch, const char *group,
                                      int64_t member_id, uint64_t buckets,
                                      es_pos_t pos);

/* ---- snapshots ---------------------------------------------------- */

/* Store (replace) the snapshot of stream_id taken at version. Snapshots
 * live in a derived table; an older version never replaces a newer one
 * (returns CONFLICT). Errors as for es_append, plus TOO_LARGE. */
ES_EXPORT int es_snapshot_save(es_store_t *store, const char *stream_id,
                               int64_t version, const char *type,
                               const void *data, size_t len);

/* A snapshot read back; free with es_snapshot_free. */
typedef struct {
  int64_t version;
  char *type;
  void *data;
  size_t len;
} es_snapshot_t;

/* Latest snapshot of stream_id into *out, or NOT_FOUND. Other errors:
 * INVALID, TOO_LARGE / BAD_UTF8 (the stream id), CONNECTION, DB, NOMEM. */
ES_EXPORT int es_snapshot_load(es_store_t *store, const char *stream_id,
                               es_snapshot_t **out);
/* Free a snapshot es_snapshot_load returned. NULL is accepted. */
ES_EXPORT void es_snapshot_free(es_snapshot_t *snap);

/* ---- archive files ------------------------------------------------- */

/* An archive file holds the events of one era, as written by
 * saga-es-archive before the era's table is dropped: a gzip stream with a
 * text header, the events in the gap-safe order (each with its global
 * position, transaction id, stream id, version, id, type, data,
 * correlation, causation, traceparent, metadata and time) and a manifest
 * with the counts and a CRC-32 of everything before it (the format:
 * docs/internals/eventstore.md, "Archive files"). Reading one needs no
 * database. */
typedef struct es_archive es_archive_t;

/* What an archive says about itself. The header fields are known after
 * es_archive_open; events, streams and checksum once the manifest was
 * read and checked (complete = 1). */
typedef struct {
  int format_version;     /* 1 */
  int era;                /* the era archived */
  char table[64];         /* its table, "es_events_e<era>" */
  char created_at[40];    /* RFC 3339, when the file was written */
  int64_t first_position; /* the era's range of global positions */
  int64_t last_position;
  int64_t events; /* events in the file */
  int64_t streams;
  uint32_t checksum; /* CRC-32 of the uncompressed bytes before the
                        manifest */
  int complete;      /* 1 once the manifest was read and checked */
} es_archive_info_t;

/* Open the archive file at path and read its header (blocking file I/O).
 * On success *out owns the open file; free it with es_archive_close.
 * Errors: INVALID (NULL path or out), IO (cannot open or read, a
 * directory say: errbuf has the reason), CORRUPT (not a gzip file, not an
 * archive of a version this library reads, or a damaged header), NOMEM. */
ES_EXPORT int es_archive_open(const char *path, es_archive_t **out,
                              char *errbuf, size_t errlen);
/* Read on: up to max (1..10000) events of stream_id (NULL: of every
 * stream) from where the last call stopped, in the file's order (the
 * gap-safe global order; a stream's events in version order). *out
 * receives a page (free with es_page_free); an empty page means the end,
 * which was reached and verified: the manifest's counts of events and
 * streams and its checksum match what was read (a manifest line given
 * twice, or a count or checksum that does not parse, is damage; unknown
 * keys are skipped and hex digits may be upper case), the
 * gzip stream ended whole, and nothing follows it in the file. The events of a page are checked only when the
 * end is reached, so a caller that must not act on a damaged file reads
 * to the end before using them (sagactl history does). Errors: INVALID,
 * CORRUPT (damaged, truncated, or its checksum or counts do not match:
 * es_archive_last_error says where, the path shortened at its start when
 * the message would not hold it whole), IO, NOMEM; after an error every later
 * call answers the same. */
ES_EXPORT int es_archive_read(es_archive_t *ar, const char *stream_id,
                              size_t max, es_page_t **out);
/* What the archive says about itself; valid until es_archive_close. */
ES_EXPORT const es_archive_info_t *es_archive_info(const es_archive_t *ar);
/* Text of the last error on ar ("" when none); valid until the next call
 * on ar. */
ES_EXPORT const char *es_archive_last_error(const es_archive_t *ar);
/* Close the file and free ar. NULL is accepted. */
ES_EXPORT void es_archive_close(es_archive_t *ar);
/* Read the whole archive at path and check it as es_archive_read does at
 * its end; *info (optional) receives what it says about itself. Returns
 * 0 when the file is whole, or the errors of es_archive_open and
 * es_archive_read, with the reason in errbuf (*info is then what was read
 * before the error, all zero when the file did not open). */
ES_EXPORT int es_archive_verify(const char *path, es_archive_info_t *info,
                                char *errbuf, size_t errlen);

/* ---- non-blocking face on a libuv loop ------------------------------ */

struct uv_loop_s;

/* An async store: one connection driven by uv_poll_t on the loop. All its
 * calls and callbacks happen on the loop thread. Operations queue and run
 * one at a time in submission order. A submit call that returns an error
 * never calls its callback; otherwise the callback runs exactly once: with
 * the outcome, with CONNECTION when the connection drops (the next submit
 * reconnects) or the handle is closed while the operation ran (its outcome
 * is unknown: a batch may have committed), or with CANCELLED from
 * es_async_close for one that had not started. Every submit call
 * (es_async_batch, _read_stream, _read_all, _group_read, _member_read,
 * _group_join, _group_renew, _group_leave) returns 0 when queued, else
 * INVALID (a NULL handle, a missing callback or argument, a value out of
 * range), TOO_LARGE or BAD_UTF8 (a name or id the store refuses, as the
 * blocking call would), BUSY (the handle is closing) or NOMEM;
 * es_async_last_error says why. */
typedef struct es_async es_async_t;

/* Create the handle; connecting starts at once, without waiting for the
 * server (but libpq resolves a `host` name at connect, here and at every
 * reconnect, and that lookup blocks: give `hostaddr`, or a name the
 * resolver answers at once, where the loop must never wait). A failed
 * connect is reported to the first operations (CONNECTION). */
ES_EXPORT int es_async_open(struct uv_loop_s *loop, const char *conninfo,
                            const es_store_opts_t *opts, es_async_t **out,
                            char *errbuf, size_t errlen);

typedef void (*es_async_close_cb)(es_async_t *as, void *arg);
/* End every operation: the running one's callback runs with CONNECTION
 * (it was sent and may still be carried out: its outcome is unknown), the
 * queued ones' with CANCELLED, all before close_cb; close the connection
 * and free the handle once the loop has released it; close_cb (may be
 * NULL) runs after. */
ES_EXPORT void es_async_close(es_async_t *as, es_async_close_cb close_cb,
                              void *arg);
/* Text of the last error on the handle: inside a callback, that of its
 * operation ("" when it succeeded); after a submit call that failed, why.
 * Valid until the next call or callback on the handle. */
ES_EXPORT const char *es_async_last_error(const es_async_t *as);

/* Batch done: status as es_batch_execute returns; per-stream results in
 * the batch. The batch is borrowed from submit until the callback. */
typedef void (*es_batch_cb)(es_async_t *as, es_batch_t *batch, int status,
                            void *arg);
ES_EXPORT int es_async_batch(es_async_t *as, es_batch_t *batch,
                             es_batch_cb cb, void *arg);

/* Read done: on 0, page is owned by the callback (es_page_free); else NULL. */
typedef void (*es_read_cb)(es_async_t *as, int status, es_page_t *page,
                           void *arg);
ES_EXPORT int es_async_read_stream(es_async_t *as, const char *stream_id,
                                   int64_t from_version, size_t max,
                                   es_read_cb cb, void *arg);
ES_EXPORT int es_async_read_all(es_async_t *as, es_pos_t from,
                                const es_filter_t *filter, size_t max,
                                es_read_cb cb, void *arg);

/* A consumer group's reads on the loop: es_group_read's (members numbered
 * by the caller) and es_member_read's (members with a lease); the page
 * goes to cb as for es_async_read_all. */
ES_EXPORT int es_async_group_read(es_async_t *as, const char *group,
                                  const char *category, int member,
                                  int members, size_t max, es_read_cb cb,
                                  void *arg);
ES_EXPORT int es_async_member_read(es_async_t *as, const char *group,
                                   const char *category, int64_t member_id,
                                   size_t max, es_read_cb cb, void *arg);

/* Join, renewal or leave done: status as es_group_join / es_group_renew /
 * es_group_leave answer; member_id the member's (the new one for a join);
 * buckets those it owns now (0 on error or after a leave). The
 * acknowledgement goes in a batch (es_batch_add_member_ack,
 * es_async_batch). */
typedef void (*es_member_cb)(es_async_t *as, int status, int64_t member_id,
                             uint64_t buckets, void *arg);
ES_EXPORT int es_async_group_join(es_async_t *as, const char *group,
                                  unsigned lease_ms, es_member_cb cb,
                                  void *arg);
ES_EXPORT int es_async_group_renew(es_async_t *as, const char *group,
                                   int64_t member_id, unsigned lease_ms,
                                   es_member_cb cb, void *arg);
ES_EXPORT int es_async_group_leave(es_async_t *as, const char *group,
                                   int64_t member_id, es_member_cb cb,
                                   void *arg);

/* ---- subscriptions -------------------------------------------------- */

/* A subscription follows the global order from a checkpoint: catch-up in
 * pages, then live, woken by NOTIFY on its own connection (plus a poll
 * every poll_ms as a safety net). "Live" means caught up to the read
 * watermark: a commit held behind it by an older open transaction elsewhere
 * in the cluster is delivered a moment later, in order, by quick re-reads
 * (10, 20, 40 ... ms) after the start and after each NOTIFY. On a lost
 * connection it reconnects after retry_ms and resumes from the last event it
 * delivered. */
typedef struct es_sub es_sub_t;

/* Called for each page of events, in order; page is borrowed for the call.
 * Return 0 to continue, non-zero to pause delivery (es_sub_close next). */
typedef int (*es_sub_event_cb)(es_sub_t *sub, const es_page_t *page,
                               void *arg);
/* Called on state changes: status 0 when caught up (live); an error
 * (CONNECTION when the connection dropped; DB, RETRY, SCHEMA or NOMEM when
 * a read failed) with live 0, and the subscription tries again after
 * retry_ms. Optional. */
typedef void (*es_sub_state_cb)(es_sub_t *sub, int status, int live,
                                void *arg);

typedef struct {
  es_pos_t from;             /* checkpoint: deliver events after it */
  es_filter_t filter;        /* borrowed strings are copied */
  size_t page_size;          /* default 500 */
  unsigned poll_ms;          /* safety-net poll when live, default 1000 */
  unsigned retry_ms;         /* reconnect delay, default 200 */
  es_sub_event_cb on_events; /* required */
  es_sub_state_cb on_state;  /* optional */
  void *arg;
} es_sub_opts_t;

/* Fill *opts with the defaults above (from the start, page_size 500,
 * poll_ms 1000, retry_ms 200), no filter and no callbacks. */
ES_EXPORT void es_sub_opts_init(es_sub_opts_t *opts);
/* Start the subscription (non-blocking; its first read is queued).
 * Errors, with errbuf saying which: INVALID (no loop, conninfo, opts or
 * on_events, page_size not 1 to 10000, poll_ms or retry_ms 0, from.pos
 * negative, a filter es_read_all refuses), TOO_LARGE / BAD_UTF8 (a
 * filter string, as es_read_all checks it), NOMEM. */
ES_EXPORT int es_sub_start(struct uv_loop_s *loop, const char *conninfo,
                           const es_sub_opts_t *opts, es_sub_t **out,
                           char *errbuf, size_t errlen);
/* Where the subscription stands (after the last delivered event). */
ES_EXPORT es_pos_t es_sub_position(const es_sub_t *sub);
typedef void (*es_sub_close_cb)(es_sub_t *sub, void *arg);
/* Stop and free once the loop released its handles; close_cb may be NULL. */
ES_EXPORT void es_sub_close(es_sub_t *sub, es_sub_close_cb close_cb,
                            void *arg);

/* ---- a consumer group member on the loop ----------------------------- */

/* A member of a consumer group with membership (es_group_join and the
 * calls after it) run on the loop over a connection of its own: it joins,
 * renews its lease every lease_ms / 3 (joining again under a new id if
 * the group forgot it), reads the pages of the buckets it owns, hands
 * each to on_events with an empty batch of its own, adds the page's
 * acknowledgement to that batch and executes it: what on_events put in
 * the batch (appends, statements on this database) commits with the
 * acknowledgement or not at all, so each event takes effect once (work
 * done elsewhere is at least once). A page whose batch fails is read
 * again from the checkpoints (NOT_OWNER: the buckets moved; the new owner
 * reads them). Woken by NOTIFY like es_sub_t, with quick re-reads after
 * one and a poll every poll_ms. es_group_sub_close leaves the group. */
typedef struct es_group_sub es_group_sub_t;

/* A page of the member's buckets, in order; page is borrowed for the call;
 * batch is the member's (empty, reset after the call; do not free it).
 * Return 0 to commit the batch with the acknowledgement and go on,
 * non-zero to pause without acknowledging (es_group_sub_close next). */
typedef int (*es_group_sub_event_cb)(es_group_sub_t *gs,
                                     const es_page_t *page,
                                     es_batch_t *batch, void *arg);
/* News, optional: status 0 with live 1 when caught up; CONNECTION (it
 * retries after retry_ms); NOT_OWNER (a page's batch refused: read
 * again); NOT_FOUND (the group forgot the member: it joins again, and a
 * page read under the old id meanwhile is dropped unacknowledged);
 * BATCH_ABORTED or DB (the batch failed: es_group_sub_last_error says
 * why; the page is read again after retry_ms). */
typedef void (*es_group_sub_state_cb)(es_group_sub_t *gs, int status,
                                      int live, void *arg);

typedef struct {
  const char *group;    /* required, copied */
  const char *category; /* required, copied */
  unsigned lease_ms;    /* default 10000 */
  size_t page_size;     /* default 500 */
  unsigned poll_ms;     /* safety-net poll when live, default 1000 */
  unsigned retry_ms;    /* after an error, default 200 */
  es_group_sub_event_cb on_events; /* required */
  es_group_sub_state_cb on_state;  /* optional */
  void *arg;
} es_group_sub_opts_t;

/* Fill *opts with the defaults above (lease_ms 10000, page_size 500,
 * poll_ms 1000, retry_ms 200), no group, category or callbacks. */
ES_EXPORT void es_group_sub_opts_init(es_group_sub_opts_t *opts);
/* Start the member (non-blocking; the join is its first operation).
 * Errors: INVALID (a required field missing, page_size not 1 to 10000,
 * lease_ms not 1 to ES_MAX_LEASE_MS, poll_ms or retry_ms 0, or a
 * category holding a '-': errbuf says which), TOO_LARGE (a group name past
 * ES_MAX_SUB_NAME bytes, a category past 511), BAD_UTF8, NOMEM. */
ES_EXPORT int es_group_sub_start(struct uv_loop_s *loop, const char *conninfo,
                                 const es_group_sub_opts_t *opts,
                                 es_group_sub_t **out, char *errbuf,
                                 size_t errlen);
/* The member's id (0 until it joined). */
ES_EXPORT int64_t es_group_sub_member(const es_group_sub_t *gs);
/* Text of the last error ("" when none); valid until the next callback. */
ES_EXPORT const char *es_group_sub_last_error(const es_group_sub_t *gs);
typedef void (*es_group_sub_close_cb)(es_group_sub_t *gs, void *arg);
/* Leave the group (after the operation in flight), then stop and free
 * once the loop released its handles; close_cb may be NULL. */
ES_EXPORT void es_group_sub_close(es_group_sub_t *gs,
                                  es_group_sub_close_cb close_cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
