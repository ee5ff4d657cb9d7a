/* The one home of saga_index queries (target saga_index_query): the SQL
 * text and its parameters for listing, counting and reading sagas, the
 * meaning of "stuck" in SQL, the status names, the paging cursor, the
 * time bounds' syntax, and the reads of the definitions sagad recorded. sagactl (cli/) and the admin endpoint
 * (coordinator/admin/) both build their saga_index reads here and run them
 * with libpq themselves; this module does no I/O and includes no libpq.
 * Pure functions, no allocation; any thread.
 *
 * Every statement selects the same columns (iq_col_t), so a row reads the
 * same wherever it was fetched. Its parameters are text, in libpq's
 * PQexecParams form (NULL = SQL NULL); iq_stmt_t owns the text of each. */
#ifndef SAGA_INDEX_QUERY_H
#define SAGA_INDEX_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The status names saga_index holds, as a message lists them. */
#define IQ_STATUSES                                                          \
  "running, compensating, completed, compensated, compensation_failed"

/* True when name is one of IQ_STATUSES. */
bool iq_status_known(const char *name);

/* The i-th name of IQ_STATUSES (from 0), or NULL past the last. */
const char *iq_status_name(size_t i);

/* The columns of every statement's rows, in this order. Times are
 * milliseconds since the Unix epoch (next_deadline_ms NULL when none);
 * started_us is started_at in microseconds, for the cursor; stuck is 't'
 * or 'f'. current_step may be NULL. */
typedef enum {
  IQ_COL_SAGA_ID,
  IQ_COL_SAGA_TYPE,
  IQ_COL_DEFINITION_VERSION,
  IQ_COL_STATUS,
  IQ_COL_PARTITION,
  IQ_COL_VERSION,
  IQ_COL_STARTED_MS,
  IQ_COL_UPDATED_MS,
  IQ_COL_NEXT_DEADLINE_MS,
  IQ_COL_CURRENT_STEP,
  IQ_COL_STUCK,
  IQ_COL_STARTED_US,
  IQ_NCOLS
} iq_col_t;

/* A time bound: absolute (ms since the Unix epoch) or relative (ms before
 * the database's now(), evaluated when the statement runs). */
typedef struct {
  bool set;
  bool relative;
  int64_t ms;
} iq_time_t;

/* Parse a time bound: an RFC 3339 timestamp with its zone
 * ("2025-01-31T12:00:00Z", "...+02:00") or a duration in the one syntax
 * of common/timetext.h ("90s", "1h", "2d": that long before now). Returns
 * 0 with *out set, or -1 with the reason in why (a sentence naming the
 * value, without the parameter's name). */
int iq_time_parse(const char *text, iq_time_t *out, char *why,
                  size_t whylen);
/* The furthest back a duration reaches (1000 years): a longer one selects
 * the same sagas, and is cut to it. */
#define IQ_BACK_MAX_MS ((int64_t)1000 * 36525 * 864000)

/* Longest cursor token, with its NUL. */
#define IQ_CURSOR_SIZE 400
/* Longest saga id a cursor carries (SAGA_MAX_ID). */
#define IQ_ID_MAX 255
/* Most rows one list statement may ask for. */
#define IQ_LIMIT_MAX 1000000

/* A position in the list: the (started_at, saga_id) of the last row of a
 * page. */
typedef struct {
  int64_t started_us;
  char saga_id[IQ_ID_MAX + 1];
} iq_cursor_t;

/* The opaque token of a row's position (its IQ_COL_STARTED_US and
 * IQ_COL_SAGA_ID texts) into buf (IQ_CURSOR_SIZE bytes suffice): base64url
 * of "1:<started_us>:<saga_id>", without padding. Returns 0, or -1 when
 * the values are not a position (not a number, an id longer than
 * IQ_ID_MAX) or buf is too small. */
int iq_cursor_encode(const char *started_us, const char *saga_id, char *buf,
                     size_t len);

/* The started_at a cursor may carry, in µs since the Unix epoch: from
 * 0001-01-01 to before 10000-01-01, the years of RFC 3339. */
#define IQ_CURSOR_US_MIN ((int64_t)-62135596800 * 1000000)
#define IQ_CURSOR_US_END ((int64_t)253402300800 * 1000000)

/* Decode a token made by iq_cursor_encode. Returns 0, or -1 when token is
 * not one, or carries a time outside IQ_CURSOR_US_MIN..END or a saga id
 * that is not UTF-8 or holds a control character (no saga has one; the
 * caller says which parameter was wrong). */
int iq_cursor_decode(const char *token, iq_cursor_t *out);

/* What to list. Strings are borrowed until iq_list / iq_count return
 * (the statement copies what it needs). */
typedef struct {
  const char *state;     /* NULL = any; else one of IQ_STATUSES */
  const char *type;      /* NULL = any saga type */
  iq_time_t since;       /* started_at >= since (unset = no bound) */
  iq_time_t until;       /* started_at <  until (unset = no bound) */
  bool stuck;            /* only stuck sagas (see iq_stuck_t) */
  bool oldest_first;     /* default: newest first (started_at, saga_id) */
  const iq_cursor_t *after; /* NULL = first page; else rows past it */
  uint64_t limit;        /* rows wanted, 1..IQ_LIMIT_MAX */
} iq_filter_t;

/* How "stuck" is judged, as sm_is_stuck judges a saga in memory: a saga in
 * compensation_failed is stuck; a running or compensating one is once
 * now() passes its stuck_at, which sagad writes from the stuck_after_ms of
 * the steps it waits on (sm_stuck_at). A row written before that column
 * (stuck_at NULL) is stuck when its updated_at is older than the threshold
 * of the step it waits on (current_step): a threshold for (type, step),
 * else for (type, ""), else default_ms. The database's now() decides. thresholds_json is a JSON
 * array of {"t": type, "s": step or "", "ms": threshold} (NULL = none). */
typedef struct {
  const char *thresholds_json;
  int64_t default_ms; /* >= 1 */
} iq_stuck_t;

/* The default threshold: a definition step's stuck_after_ms default and
 * sagad's stuck.default_ms default (5 min). */
#define IQ_STUCK_DEFAULT_MS 300000

#define IQ_MAX_PARAMS 12

/* A statement ready for PQexecParams(conn, sql, nparams, NULL, params,
 * NULL, NULL, 0). Keep it alive (and unmoved) while params are used. */
typedef struct {
  const char *sql;
  int nparams;
  const char *params[IQ_MAX_PARAMS];
  char num[8][24]; /* the numbers' text */
  char id[IQ_ID_MAX + 1];
} iq_stmt_t;

/* The rows of f, in f's order, at most f->limit + 1 of them: one more than
 * asked tells that a next page exists (its cursor is that of row
 * f->limit - 1). Returns 0, or -1 when f is invalid (unknown state, limit
 * out of range, default_ms < 1). */
int iq_list(const iq_filter_t *f, const iq_stuck_t *stuck, iq_stmt_t *out);

/* One row, one column: how many sagas match f, whatever its cursor and
 * limit (bigint). Returns 0 or -1 as iq_list. */
int iq_count(const iq_filter_t *f, const iq_stuck_t *stuck, iq_stmt_t *out);

/* Rows (status text, count bigint): how many sagas of each status match
 * f with its state ignored, whatever its cursor and limit; a status no
 * saga has is absent. Returns 0 or -1 as iq_list. */
int iq_counts(const iq_filter_t *f, const iq_stuck_t *stuck, iq_stmt_t *out);

/* The row of saga_id (zero or one row). Returns 0, or -1 when saga_id is
 * longer than IQ_ID_MAX or default_ms < 1. */
int iq_get(const char *saga_id, const iq_stuck_t *stuck, iq_stmt_t *out);

/* The definitions sagad recorded (coordinator/io/sql, saga_definitions):
 * each row's columns, in this order. version is an integer; body the
 * canonical JSON, sha256 its hash in hex; source the file sagad loaded it
 * from. */
typedef enum {
  IQ_DEF_COL_NAME,
  IQ_DEF_COL_VERSION,
  IQ_DEF_COL_BODY,
  IQ_DEF_COL_SHA256,
  IQ_DEF_COL_SOURCE,
  IQ_DEF_NCOLS
} iq_def_col_t;

/* SQLSTATE of a read of saga_definitions in a database no sagad with
 * definitions in the store has migrated yet (undefined_table): readers
 * take it as "nothing recorded". */
#define IQ_SQLSTATE_NO_TABLE "42P01"

/* The recorded definition name at version (zero or one row), or with name
 * NULL every recorded definition ordered by name and version. Returns 0,
 * or -1 when name is longer than IQ_ID_MAX. */
int iq_definition(const char *name, uint32_t version, iq_stmt_t *out);

#endif
