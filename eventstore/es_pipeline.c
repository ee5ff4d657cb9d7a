/* The operations both faces run: what each sends in one pipeline (ending
 * with a sync, so one round trip) and how each result is read back. Every
 * statement is prepared once per connection and parameterised; results come
 * in binary format so event data is never hex-encoded. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "es_internal.h"

#define OID_INT8 "20"
enum { O_INT4 = 23, O_INT8 = 20, O_TEXT = 25, O_BYTEA = 17, O_XID8 = 5069 };
enum { O_UUID = 2950, O_JSONB = 3802 };
enum { O_UUIDA = 2951, O_TEXTA = 1009, O_BYTEAA = 1001, O_JSONBA = 3807 };
enum { O_INT8A = 1016, O_BOOLA = 1000 };

/* The era every append writes: read once per statement (an uncorrelated
 * subquery), after the statement has locked es_events, so an append never
 * straddles an era switch (es_roll_forward waits for it). */
#define ERA_SQL "(SELECT era FROM es_era)"

/* One stream's append (a batch of one stream, or several events): cur, its
 * current version; dup, how many of the event ids are stored, and how many
 * of those in this stream, looked up id by id (a scalar subquery per id,
 * an index probe whatever the table's size when the generic plan was made:
 * an `event_id = ANY($3)` scan planned on a young table stayed a
 * sequential scan of es_events as it grew, MULTI_SQL below); ins, the
 * events, if no id is stored and the version is the expected one. */
#define APPEND_DUP                                                            \
  " dup AS (SELECT count(f.found) AS n, count(*) FILTER (WHERE f.found = $1)" \
  " AS mine FROM (SELECT (SELECT x.stream_id FROM es_events x"                \
  " WHERE x.event_id = u.id) AS found FROM unnest($3) AS u(id)) f),"
/* Ids the library drew and never sent (es__stream_t.fresh_ids): no stored
 * event carries one, so the statements skip the probes, which cost one
 * index probe per id and attached partition. */
#define APPEND_DUP_FRESH " dup AS (SELECT 0::int8 AS n, 0::int8 AS mine),"
#define APPEND_SQL(dup, extra)                                                \
  "WITH cur AS (SELECT coalesce((SELECT stream_version FROM es_events"        \
  " WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1), 0) AS v),"    \
  dup                                                                         \
  " ins AS (INSERT INTO es_append (stream_id, stream_version, event_id,"      \
  " event_type, data, correlation_id, causation_id, traceparent, metadata,"   \
  " era) SELECT $1, cur.v + u.ord, u.id, u.t, u.d, u.c, u.k, u.tp, u.m, "     \
  ERA_SQL                                                                     \
  " FROM cur, dup, unnest($3, $4, $5, $6, $7, $8, $9) WITH ORDINALITY"        \
  " AS u(id, t, d, c, k, tp, m, ord)"                                         \
  " WHERE dup.n = 0 AND ($2 < 0 OR cur.v = $2) ORDER BY u.ord"                \
  " RETURNING global_position)"                                               \
  " SELECT cur.v, dup.n, dup.mine, (SELECT count(*) FROM ins),"               \
  " (SELECT coalesce(min(global_position), 0) FROM ins),"                     \
  " (SELECT coalesce(max(global_position), 0) FROM ins)" extra                \
  " FROM cur, dup"

/* One event, exact expected version (ES_NO_STREAM or a version): the
 * common single append, as close to a bare INSERT as the checks allow. The
 * new version is computed, not read: the event goes in only if the
 * stream's last version is $2 and no partition holds the event id (one
 * index probe each per partition: the unique keys hold within an era's
 * partition only), and, through the partition's unique keys, if no racing
 * writer of the same era committed version $2 + 1 or the id first. It
 * answers the new row's position, or no row when a check refused it, or
 * raises 23505 for a racing writer that committed first; only then does a
 * second round trip (APPEND_CHECK_SQL) tell CONFLICT, DUPLICATE and
 * ID_REUSED apart. No ON CONFLICT (its speculative insertion costs a probe
 * of every unique index and a WAL record per row) and no CTE: the common
 * path pays one insert and two probes per partition. One row cannot be
 * half written. */
#define APPEND_ONE_DUP " AND NOT EXISTS (SELECT 1 FROM es_events WHERE event_id = $3)"
#define APPEND_ONE_SQL(dup, extra)                                            \
  "INSERT INTO es_append (stream_id, stream_version, event_id, event_type,"   \
  " data, correlation_id, causation_id, traceparent, metadata, era)"          \
  " SELECT $1, $2 + 1, $3, $4, $5, $6, $7, $8, $9, " ERA_SQL                  \
  " WHERE coalesce((SELECT stream_version FROM es_events WHERE"               \
  " stream_id = $1 ORDER BY stream_version DESC LIMIT 1), 0) = $2"            \
  dup " RETURNING global_position, era" extra

/* One event whose expected version $2 this connection wrote itself into
 * era $10 (es__heads_t): no version probe and no era read, the row routed
 * to era $10's partition. It goes in only while $10 is the current era: an
 * ended era's table refuses rows (ES003, migration 0008, its trigger made
 * under the switch's lock, which every append waits for) and an archived
 * era has no table (23514). Then every version the stream has past $2 is
 * in that era's partition, whose unique key raises 23505 for a second row
 * of version $2 + 1, as for a racing writer; and no version is missing
 * below $2 + 1, $2 being written. Refused for its era, the append is sent
 * again, probed (APPEND_ONE_SQL). Only for ids the library drew: an id
 * stored in an earlier era would go unseen. */
#define APPEND_ONE_HEAD_SQL(extra)                                            \
  "INSERT INTO es_append (stream_id, stream_version, event_id, event_type,"   \
  " data, correlation_id, causation_id, traceparent, metadata, era)"          \
  " VALUES ($1, $2 + 1, $3, $4, $5, $6, $7, $8, $9, $10)"                     \
  " RETURNING global_position, era" extra

/* One event appended by a batch (or an append with any expected version),
 * answering APPEND_SQL's columns, so a refusal is told apart in the same
 * round trip. Its parameters are scalars: APPEND_SQL's unnest is estimated
 * at 10 rows in a generic plan and at the array's size in a custom one, so
 * for one event the plan cache kept planning it afresh at every execution
 * (0.5 ms of planning per commit in the saga benchmark's concurrency-1
 * half); here generic and custom plans cost the same and the generic one
 * is kept. Each check is one index probe by a unique key. */
#define APPEND_ROW_DUP                                                        \
  " dup AS (SELECT (SELECT x.stream_id FROM es_events x"                      \
  " WHERE x.event_id = $3) AS found),"
#define APPEND_ROW_DUP_FRESH " dup AS (SELECT NULL::text AS found),"
#define APPEND_ROW_SQL(dup, extra)                                            \
  "WITH cur AS (SELECT coalesce((SELECT stream_version FROM es_events"        \
  " WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1), 0) AS v),"    \
  dup                                                                         \
  " ins AS (INSERT INTO es_append (stream_id, stream_version, event_id,"      \
  " event_type, data, correlation_id, causation_id, traceparent, metadata,"   \
  " era) SELECT $1, cur.v + 1, $3, $4, $5, $6, $7, $8, $9, " ERA_SQL          \
  " FROM cur, dup WHERE dup.found IS NULL AND ($2 < 0 OR cur.v = $2)"         \
  " RETURNING global_position)"                                               \
  " SELECT cur.v, (dup.found IS NOT NULL)::int::int8,"                        \
  " coalesce((dup.found = $1)::int, 0)::int8, (SELECT count(*) FROM ins),"    \
  " (SELECT coalesce(min(global_position), 0) FROM ins),"                     \
  " (SELECT coalesce(max(global_position), 0) FROM ins)" extra                \
  " FROM cur, dup"

/* Why a single append did not go in: the stream's current version, how
 * many events carry the id, how many of those in this stream; columns as
 * APPEND_SQL's (nothing written). */
#define APPEND_CHECK_SQL                                                      \
  "SELECT coalesce(max(stream_version), 0),"                                  \
  " (SELECT count(*) FROM es_events WHERE event_id = $2),"                    \
  " (SELECT count(*) FROM es_events WHERE event_id = $2 AND stream_id = $1)," \
  " 0::int8, 0::int8, 0::int8 FROM es_events WHERE stream_id = $1"

/* The NOTIFY column of the _notify variants: when something went in (a
 * statement with an ins CTE), or always (es_append_one, which answers no
 * row when nothing went in). */
#define NOTIFY_IF_INS                                                         \
  ", (SELECT " ES__NOTIFY_UNLESS_ALONE " AND EXISTS (SELECT 1 FROM ins))"
#define NOTIFY_ONE ", (SELECT " ES__NOTIFY_UNLESS_ALONE ")"

/* A batch's streams in one statement (one round of es__batch_plan, so each
 * stream id appears once). The plan must not depend on the number of
 * streams or events: after five executions the plan cache keeps the
 * generic plan, which estimates every unnest at 10 rows, so the statement
 * avoids joins whose method the planner would choose from that estimate.
 * v: each stream's current version (one index probe per stream), in an
 * array indexed by stream number; d: per event of a stream whose ids are
 * probed ($13: not when the library drew them all and never sent them,
 * es__stream_t.fresh_ids), the stream that already
 * stores its id, if any (one index probe per event: a scalar subquery is
 * never turned into a join, so a generic plan made while the table was
 * small cannot become a sequential scan of es_events -- an `= ANY` scan
 * did, in sagad's first minute on a fresh database); bad: per stream, how
 * many of its event ids are stored and how many of those in this stream;
 * ins writes the events of the streams with no stored id and a matching
 * version, looking up each event's stream by array subscript, in stream
 * then stream-version order, so global positions follow the versions. The
 * same checks as APPEND_SQL, stream by stream, without raising an error.
 * Answers one row per stream, ordered by i: i, then APPEND_SQL's columns.
 * A racing writer still raises 23505 and aborts the batch (es__op_result
 * then classifies the streams). */
#define MULTI_SQL                                                             \
  "WITH v AS (SELECT ARRAY(SELECT coalesce((SELECT x.stream_version"         \
  " FROM es_events x WHERE x.stream_id = s.id"                                \
  " ORDER BY x.stream_version DESC LIMIT 1), 0)"                              \
  " FROM unnest($1) AS s(id)) AS v),"                                         \
  " d AS (SELECT u.si, u.sid, (SELECT x.stream_id FROM es_events x"         \
  " WHERE x.event_id = u.id) AS found FROM unnest($3, $5, $12) AS u(si, id,"  \
  " sid) WHERE $13[u.si]),"                                                   \
  " bad AS (SELECT si, count(*) AS n, count(*) FILTER (WHERE found = sid)"    \
  " AS mine FROM d WHERE found IS NOT NULL GROUP BY si),"                     \
  " ins AS (INSERT INTO es_append (stream_id, stream_version, event_id,"      \
  " event_type, data, correlation_id, causation_id, traceparent, metadata,"   \
  " era) SELECT u.sid, v.v[u.si] + u.ord, u.id, u.t, u.d, u.c, u.k, u.tp,"   \
  " u.m, " ERA_SQL                                                            \
  " FROM v, unnest($3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"                \
  " AS u(si, ord, id, t, d, c, k, tp, m, sid)"                                \
  " WHERE ($2[u.si] < 0 OR v.v[u.si] = $2[u.si])"                             \
  " AND u.si NOT IN (SELECT si FROM bad) ORDER BY u.si, u.ord"                \
  " RETURNING stream_id, global_position),"                                   \
  " w AS (SELECT stream_id, count(*) AS n, min(global_position) AS lo,"       \
  " max(global_position) AS hi FROM ins GROUP BY stream_id)"                  \
  " SELECT s.i, s.cur, coalesce(bad.n, 0), coalesce(bad.mine, 0),"          \
  " coalesce(w.n, 0), coalesce(w.lo, 0), coalesce(w.hi, 0)"                   \
  " FROM unnest($1, (SELECT v FROM v)) WITH ORDINALITY AS s(id, cur, i)"      \
  " LEFT JOIN bad ON bad.si = s.i LEFT JOIN w ON w.stream_id = s.id"          \
  " ORDER BY s.i"

#define COLS                                                                  \
  "SELECT tx_id, global_position, stream_id, stream_version, event_id,"      \
  " event_type, data, correlation_id, causation_id, traceparent, metadata,"  \
  " recorded_at FROM es_events"

#define READ_ALL_SQL(filter)                                                  \
  COLS " WHERE (tx_id, global_position) > ($1, $2)"                           \
       " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())" filter          \
       " ORDER BY tx_id, global_position LIMIT $3"

/* Consumer group pages: one range of es_events_group_idx, (category,
 * tx_id, global_position, bucket), the category's events in the global
 * order with each one's bucket in its index entry. A reader's buckets
 * are contiguous (the static form's blocks; es_group_rebalance's runs),
 * so `bucket BETWEEN bmin AND bmax` is checked on the entry, and the
 * events of the other readers' buckets are passed over in the index,
 * never fetched (a member of n reads n entries per event it gets, at a
 * few tens of nanoseconds each). The mask check is for a member whose
 * buckets are not one run (while some wait for their hand-over). The
 * range starts at the earliest checkpoint of the reader's buckets (st);
 * an event of a bucket whose checkpoint stands further on is left out by
 * the row's own check against its bucket's checkpoint (ck: the 64
 * checkpoints as arrays by bucket, from the start when a bucket has
 * none). So a page is the first max events of the reader's buckets after
 * each bucket's checkpoint, and every event before the last one returned,
 * in any of those buckets, is in the page: the acknowledgement may
 * advance all of them to it. mk: the reader's buckets (mask, bmin,
 * bmax). */
#define GROUP_CTES                                                            \
  " ck AS (SELECT array_agg(coalesce(c.tx_id, '0'::xid8) ORDER BY b.b)"       \
  " AS tx, array_agg(coalesce(c.global_position, 0) ORDER BY b.b) AS gp"      \
  " FROM generate_series(0, 63) AS b(b) LEFT JOIN es_subscriptions c"         \
  " ON c.name = $1 AND c.bucket = b.b),"                                      \
  " st AS (SELECT t.tx, t.gp FROM ck, mk,"                                    \
  " unnest(ck.tx, ck.gp) WITH ORDINALITY AS t(tx, gp, i)"                     \
  " WHERE t.i - 1 BETWEEN mk.bmin AND mk.bmax"                                \
  " AND (mk.mask >> (t.i::int - 1)) & 1 = 1"                                  \
  " ORDER BY t.tx, t.gp LIMIT 1)"
#define GROUP_RANGE(max)                                                      \
  " WHERE category = $2"                                                      \
  " AND (tx_id, global_position) > ((SELECT tx FROM st), (SELECT gp FROM st))" \
  " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"                      \
  " AND bucket BETWEEN (SELECT bmin FROM mk) AND (SELECT bmax FROM mk)"       \
  " AND ((SELECT mask FROM mk) >> bucket) & 1 = 1"                            \
  " AND (tx_id, global_position) > ((SELECT tx FROM ck)[bucket + 1],"         \
  " (SELECT gp FROM ck)[bucket + 1])"                                         \
  " ORDER BY tx_id, global_position LIMIT " max
/* es_group_read ($1 group, $2 category, $3 member, $4 members, $5 max):
 * member $3 of $4 owns the block of buckets b with b * $4 / 64 = $3. */
#define READ_GROUP_SQL                                                        \
  "WITH mk AS (SELECT -1::int8 AS mask, ($3 * 64 + $4 - 1) / $4 AS bmin,"     \
  " (($3 + 1) * 64 + $4 - 1) / $4 - 1 AS bmax)," GROUP_CTES " " COLS          \
  GROUP_RANGE("$5")
/* es_member_read ($1 group, $2 category, $3 member id, $4 max): the
 * buckets member $3 owns and reads (es_group_buckets), read in the same
 * snapshot as their checkpoints, so a bucket that came from another member
 * is read from the checkpoint that member left. The mask of those buckets
 * follows each row (column 12), for the acknowledgement, then whether
 * the lone reader's statement below would have served the page (column
 * 13, f.fast). */
#define READ_MEMBER_HEAD                                                      \
  "WITH mk AS (SELECT coalesce(bit_or(1::int8 << bucket), 0) AS mask,"        \
  " min(bucket) AS bmin, max(bucket) AS bmax"                                 \
  " FROM es_group_buckets WHERE grp = $1 AND owner = $3"                      \
  " AND next_owner IS NULL), "
/* The lone reader's case: the member owns every bucket and they all stand
 * at one checkpoint (or none has one); then the page is the category's
 * events after that checkpoint, one range of the index in the global
 * order, as a plain category read (es_read_all) reads it. A lone member
 * that acknowledges its pages keeps its buckets together, so it stays in
 * this case. f.fast, f.tx, f.gp. */
#define FAST_CTE                                                              \
  "f AS (SELECT (SELECT mask FROM mk) = -1 AND (s.n = 0 OR (s.n = 64 AND"     \
  " (lo.tx_id, lo.global_position) = (hi.tx_id, hi.global_position)))"       \
  " AS fast, coalesce(lo.tx_id, '0'::xid8) AS tx,"                            \
  " coalesce(lo.global_position, 0) AS gp FROM (SELECT count(*) AS n"         \
  " FROM es_subscriptions WHERE name = $1 AND bucket >= 0) s"                 \
  " LEFT JOIN LATERAL (SELECT tx_id, global_position FROM es_subscriptions"   \
  " WHERE name = $1 AND bucket >= 0 ORDER BY tx_id, global_position"          \
  " LIMIT 1) lo ON true"                                                      \
  " LEFT JOIN LATERAL (SELECT tx_id, global_position FROM es_subscriptions"   \
  " WHERE name = $1 AND bucket >= 0 ORDER BY tx_id DESC,"                     \
  " global_position DESC LIMIT 1) hi ON true)"
#define READ_MEMBER_SQL                                                       \
  READ_MEMBER_HEAD FAST_CTE "," GROUP_CTES                                    \
  " SELECT tx_id, global_position, stream_id, stream_version, event_id,"     \
  " event_type, data, correlation_id, causation_id, traceparent, metadata,"  \
  " recorded_at, (SELECT mask FROM mk), (SELECT fast FROM f) FROM es_events" \
  GROUP_RANGE("$4")

/* The lone reader's statement (es_read_member_lone): in the lone
 * reader's case a page needs neither the checkpoint arrays nor the row's
 * checks against them: the same mk and f, then the category's range after
 * f's one position under a one-time filter, shaped as the raw keyset
 * statement. It answers no row when the case does not apply, or when the
 * member is caught up; the face then sends the full statement in a second
 * round trip, which decides afresh. The face sends it while the member's
 * pages are in that case (the last column of each row says whether they
 * are). */
#define READ_MEMBER_LONE_SQL                                                  \
  READ_MEMBER_HEAD FAST_CTE                                                   \
  " SELECT tx_id, global_position, stream_id, stream_version, event_id,"     \
  " event_type, data, correlation_id, causation_id, traceparent, metadata,"  \
  " recorded_at, (SELECT mask FROM mk), true FROM es_events"                  \
  " WHERE (SELECT fast FROM f) AND category = $2"                             \
  " AND (tx_id, global_position) > ((SELECT tx FROM f), (SELECT gp FROM f))"  \
  " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"                      \
  " ORDER BY tx_id, global_position LIMIT $4"

static const Oid append_types[] = {O_TEXT,  O_INT8,  O_UUIDA,
                                   O_TEXTA, O_BYTEAA, O_TEXTA,
                                   O_TEXTA, O_TEXTA, O_JSONBA};
static const Oid append_one_types[] = {O_TEXT, O_INT8, O_UUID,  O_TEXT, O_BYTEA,
                                       O_TEXT, O_TEXT, O_TEXT, O_JSONB};
static const Oid append_head_types[] = {O_TEXT, O_INT8, O_UUID, O_TEXT,
                                        O_BYTEA, O_TEXT, O_TEXT, O_TEXT,
                                        O_JSONB, O_INT4};
static const Oid append_check_types[] = {O_TEXT, O_UUID};
static const Oid multi_types[] = {O_TEXTA,  O_INT8A, O_INT8A, O_INT8A,
                                  O_UUIDA,  O_TEXTA, O_BYTEAA, O_TEXTA,
                                  O_TEXTA,  O_TEXTA, O_JSONBA, O_TEXTA,
                                  O_BOOLA};
static const Oid read_all_types[] = {O_XID8, O_INT8, O_INT8, O_TEXT, O_TEXT};
static const Oid read_stream_types[] = {O_TEXT, O_INT8, O_INT8};
static const Oid read_group_types[] = {O_TEXT, O_TEXT, 23, 23, O_INT8};
static const Oid read_member_types[] = {O_TEXT, O_TEXT, O_INT8, O_INT8};
static const Oid handoff_types[] = {O_TEXT, O_INT8};
static const Oid ckpt_load_types[] = {O_TEXT};
static const Oid snap_save_types[] = {O_TEXT, O_INT8, O_TEXT, O_BYTEA};
static const Oid snap_load_types[] = {O_TEXT};

static const struct {
  const char *name, *sql;
  int n;
  const Oid *types;
} stmts[] = {
    {"es_append", APPEND_SQL(APPEND_DUP, ""), 9, append_types},
    {"es_append_notify", APPEND_SQL(APPEND_DUP, NOTIFY_IF_INS), 9,
     append_types},
    {"es_append_fresh", APPEND_SQL(APPEND_DUP_FRESH, ""), 9, append_types},
    {"es_append_fresh_notify", APPEND_SQL(APPEND_DUP_FRESH, NOTIFY_IF_INS), 9,
     append_types},
    {"es_append_one", APPEND_ONE_SQL(APPEND_ONE_DUP, ""), 9, append_one_types},
    {"es_append_one_notify", APPEND_ONE_SQL(APPEND_ONE_DUP, NOTIFY_ONE), 9,
     append_one_types},
    {"es_append_one_fresh", APPEND_ONE_SQL("", ""), 9, append_one_types},
    {"es_append_one_fresh_notify", APPEND_ONE_SQL("", NOTIFY_ONE), 9,
     append_one_types},
    {"es_append_one_head", APPEND_ONE_HEAD_SQL(""), 10, append_head_types},
    {"es_append_one_head_notify", APPEND_ONE_HEAD_SQL(NOTIFY_ONE), 10,
     append_head_types},
    {"es_append_row", APPEND_ROW_SQL(APPEND_ROW_DUP, ""), 9, append_one_types},
    {"es_append_row_notify", APPEND_ROW_SQL(APPEND_ROW_DUP, NOTIFY_IF_INS), 9,
     append_one_types},
    {"es_append_row_fresh", APPEND_ROW_SQL(APPEND_ROW_DUP_FRESH, ""), 9,
     append_one_types},
    {"es_append_row_fresh_notify",
     APPEND_ROW_SQL(APPEND_ROW_DUP_FRESH, NOTIFY_IF_INS), 9, append_one_types},
    {"es_append_multi", MULTI_SQL, ES__MULTI_NPARAMS, multi_types},
    {"es_append_check", APPEND_CHECK_SQL, 2, append_check_types},
    {"es_read_stream",
     COLS " WHERE stream_id = $1 AND stream_version >= $2"
          " ORDER BY stream_version LIMIT $3",
     3, read_stream_types},
    {"es_read_all", READ_ALL_SQL(""), 5, read_all_types},
    {"es_read_cat", READ_ALL_SQL(" AND category = $4"), 5, read_all_types},
    {"es_read_type", READ_ALL_SQL(" AND event_type = $5"), 5, read_all_types},
    {"es_read_cat_type", READ_ALL_SQL(" AND category = $4 AND event_type = $5"),
     5, read_all_types},
    {"es_read_group", READ_GROUP_SQL, 5, read_group_types},
    {"es_read_member", READ_MEMBER_SQL, 4, read_member_types},
    {"es_read_member_lone", READ_MEMBER_LONE_SQL, 4, read_member_types},
    {"es_handoff", "SELECT es_group_handoff($1, $2)", 2, handoff_types},
    {"es_generic",
     "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)", 0,
     NULL},
    {"es_ckpt_load",
     "SELECT tx_id, global_position FROM es_subscriptions"
     " WHERE name = $1 AND bucket = -1",
     1, ckpt_load_types},
    {"es_snap_save",
     "INSERT INTO es_snapshots AS s (stream_id, version, snapshot_type, data)"
     " VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id) DO UPDATE SET"
     " version = EXCLUDED.version, snapshot_type = EXCLUDED.snapshot_type,"
     " data = EXCLUDED.data, taken_at = now()"
     " WHERE s.version <= EXCLUDED.version RETURNING version",
     4, snap_save_types},
    {"es_snap_load",
     "SELECT version, snapshot_type, data FROM es_snapshots"
     " WHERE stream_id = $1",
     1, snap_load_types},
};
#define N_STMTS (sizeof stmts / sizeof stmts[0])

static int expect(es__op_t *op, es__rkind_t kind, size_t index) {
  if (op->n_expect % 64 == 0) {
    es__expect_t *e =
        realloc(op->expect, (op->n_expect + 64) * sizeof *op->expect);
    if (!e)
      return ES_ERR_NOMEM;
    op->expect = e;
  }
  op->expect[op->n_expect++] = (es__expect_t){kind, index};
  return 0;
}

static int sent(PGconn *c, es__op_t *op, int ok, es__rkind_t kind,
                size_t index) {
  if (!ok) {
    es__set_msg(op->msg, sizeof op->msg, "could not send to the database: %s",
                PQerrorMessage(c));
    return ES_ERR_CONNECTION;
  }
  return expect(op, kind, index);
}

static int send_plain(PGconn *c, es__op_t *op, const char *sql,
                      es__rkind_t kind) {
  return sent(c, op, PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0),
              kind, 0);
}

/* The element of a one-element binary array (as es_batch_add encodes
 * them: a 20-byte header, then the element's length, -1 for NULL, and its
 * bytes): *v and *len as a scalar parameter of the same type. */
static void only_elem(const char *arr, const char **v, int *len) {
  int32_t n = es__get_be32(arr + 20);
  *v = n < 0 ? NULL : arr + 24;
  *len = n < 0 ? 0 : n;
}

static int send_append(PGconn *c, es__op_t *op, size_t i, int notify) {
  es__stream_t *s = &op->batch->streams[i];
  const char *values[ES__APPEND_NPARAMS + 1]; /* + 1: the head's era */
  int lens[ES__APPEND_NPARAMS + 1], fmts[ES__APPEND_NPARAMS + 1];
  /* one event in the array encoding: es_append_row, its elements */
  int row = !s->one && s->n_events == 1;
  static const char *const names[3][2][2] = {
      {{"es_append", "es_append_notify"},
       {"es_append_fresh", "es_append_fresh_notify"}},
      {{"es_append_one", "es_append_one_notify"},
       {"es_append_one_fresh", "es_append_one_fresh_notify"}},
      {{"es_append_row", "es_append_row_notify"},
       {"es_append_row_fresh", "es_append_row_fresh_notify"}}};
  /* ids the library drew skip the probes once: sent again (the batch
   * executed again), they are probed and answer DUPLICATE */
  int fresh = s->fresh_ids != 0;
  s->fresh_ids = 0;
  for (int k = 0; k < ES__APPEND_NPARAMS; k++) {
    values[k] = s->lens[k] < 0 ? NULL : s->params.p + s->offs[k];
    lens[k] = s->lens[k];
    fmts[k] = 1;
    if (row && k >= 2)
      only_elem(values[k], &values[k], &lens[k]);
  }
  /* a version this connection wrote, into an era that may still be the
   * current one: no probe (APPEND_ONE_HEAD_SQL) */
  int32_t era = s->one && fresh && !op->head_missed
                    ? es__heads_era(op->heads, values[0], (size_t)lens[0],
                                    s->expected)
                    : -1;
  op->head_used = era >= 0;
  op->head_era = -1;
  if (op->head_used) {
    char be[4];
    for (int k = 0; k < 4; k++)
      be[k] = (char)(((uint32_t)era >> (8 * (3 - k))) & 0xFF);
    values[ES__APPEND_NPARAMS] = be;
    lens[ES__APPEND_NPARAMS] = 4;
    fmts[ES__APPEND_NPARAMS] = 1;
    int ok = PQsendQueryPrepared(
        c, notify ? "es_append_one_head_notify" : "es_append_one_head",
        ES__APPEND_NPARAMS + 1, values, lens, fmts, 1);
    return sent(c, op, ok, ES__R_ONE, i);
  }
  int ok = PQsendQueryPrepared(c, names[row ? 2 : s->one][fresh][notify != 0],
                               ES__APPEND_NPARAMS, values, lens, fmts, 1);
  return sent(c, op, ok, s->one ? ES__R_ONE : ES__R_APPEND, i);
}

/* After a single append went in nowhere: why, in a second round trip. */
static int send_check(PGconn *c, es__op_t *op) {
  es__stream_t *s = &op->batch->streams[0];
  const char *values[2] = {s->params.p + s->offs[0], s->params.p + s->offs[2]};
  int lens[2] = {s->lens[0], s->lens[2]}, fmts[2] = {1, 1};
  int rc = sent(c, op,
                PQsendQueryPrepared(c, "es_append_check", 2, values, lens,
                                    fmts, 1),
                ES__R_APPEND, 0);
  if (!rc && !PQpipelineSync(c))
    rc = sent(c, op, 0, ES__R_COMMIT, 0);
  if (rc == ES_ERR_NOMEM)
    es__set_msg(op->msg, sizeof op->msg, "out of memory");
  return rc;
}

/* A batch's streams: one statement per round of the plan (usually one),
 * or one per stream for a single stream or a round too large to encode in
 * one message; none for a batch of statements only. A single stream's
 * statement carries the batch's NOTIFY when `notify` (*notified then set):
 * one statement fewer in the transaction. */
static int send_streams(PGconn *c, es__op_t *op, int notify, int *notified) {
  es_batch_t *b = op->batch;
  if (b->n_streams == 0)
    return 0;
  if (b->n_streams == 1) {
    *notified = notify;
    return send_append(c, op, 0, notify);
  }
  int rc = es__batch_plan(b);
  for (size_t k = 0; k < b->n_rounds && !rc; k++) {
    const char *values[ES__MULTI_NPARAMS];
    int lens[ES__MULTI_NPARAMS], fmts[ES__MULTI_NPARAMS];
    rc = es__batch_encode_round(b, k, values, lens);
    if (rc == ES_ERR_TOO_LARGE) {
      /* the streams of this round and the later ones, in round order */
      rc = 0;
      for (size_t j = b->round_start[k]; j < b->n_streams && !rc; j++)
        rc = send_append(c, op, b->order[j], 0);
      return rc;
    }
    for (int a = 0; a < ES__MULTI_NPARAMS; a++)
      fmts[a] = 1;
    if (!rc)
      rc = sent(c, op,
                PQsendQueryPrepared(c, "es_append_multi", ES__MULTI_NPARAMS,
                                    values, lens, fmts, 1),
                ES__R_MULTI, k);
  }
  return rc;
}

/* After a multi-stream statement raised an error: the batch's streams
 * through the per-stream statement, in batch order, in a transaction that
 * is always rolled back (BEGIN, appends, sync, ROLLBACK, sync: after an
 * error the ROLLBACK still runs, past the first sync). Each stream then
 * answers as it would have in the per-stream batch: CONFLICT, DUPLICATE or
 * ID_REUSED found in its statement, or the error it raises; the others
 * report BATCH_ABORTED. */
static int send_classify(PGconn *c, es__op_t *op) {
  es_batch_t *b = op->batch;
  int rc = send_plain(c, op, "BEGIN", ES__R_BEGIN);
  for (size_t i = 0; i < b->n_streams; i++)
    b->results[i] = (es_append_result_t){0, 0, 0, 0};
  for (size_t i = 0; i < b->n_streams && !rc; i++)
    rc = send_append(c, op, i, 0);
  if (!rc && !PQpipelineSync(c))
    rc = sent(c, op, 0, ES__R_COMMIT, 0);
  if (!rc)
    rc = send_plain(c, op, "ROLLBACK", ES__R_BEGIN);
  if (!rc && !PQpipelineSync(c))
    rc = sent(c, op, 0, ES__R_COMMIT, 0);
  op->syncs = 2;
  if (rc == ES_ERR_NOMEM)
    es__set_msg(op->msg, sizeof op->msg, "out of memory");
  return rc;
}

static void put_be64(char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (char)(v & 0xFF);
}

static int send_read(PGconn *c, es__op_t *op) {
  char b1[8], b2[8], b3[8];
  const char *values[5] = {b1, b2, b3, op->category, op->type};
  int lens[5] = {8, 8, 8, op->category ? (int)strlen(op->category) : 0,
                 op->type ? (int)strlen(op->type) : 0};
  int fmts[5] = {1, 1, 1, 1, 1};
  const char *name;
  int n;
  put_be64(b3, op->max);
  if (op->kind == ES__OP_READ_STREAM) {
    values[0] = op->stream_id;
    lens[0] = (int)strlen(op->stream_id);
    put_be64(b2, (uint64_t)op->from_version);
    values[2] = b3;
    name = "es_read_stream";
    n = 3;
  } else {
    put_be64(b1, op->from.tx);
    put_be64(b2, (uint64_t)op->from.pos);
    name = op->category ? (op->type ? "es_read_cat_type" : "es_read_cat")
                        : (op->type ? "es_read_type" : "es_read_all");
    n = 5;
  }
  return sent(c, op, PQsendQueryPrepared(c, name, n, values, lens, fmts, 1),
              ES__R_READ, 0);
}

static int send_snap(PGconn *c, es__op_t *op) {
  /* op->snap holds: version (8), then stream id, type, data; lengths in
   * op->max (stream id) and op->from_version (type). */
  const char *p = op->snap.p;
  size_t sl = op->max, tl = (size_t)op->from_version;
  if (op->kind == ES__OP_SNAP_LOAD) {
    const char *v[1] = {p + 8};
    int l[1] = {(int)sl}, f[1] = {1};
    return sent(c, op, PQsendQueryPrepared(c, "es_snap_load", 1, v, l, f, 1),
                ES__R_SNAP, 0);
  }
  const char *v[4] = {p + 8, p, p + 8 + sl, p + 8 + sl + tl};
  int l[4] = {(int)sl, 8, (int)tl, (int)(op->snap.len - 8 - sl - tl)};
  int f[4] = {1, 1, 1, 1};
  return sent(c, op, PQsendQueryPrepared(c, "es_snap_save", 4, v, l, f, 1),
              ES__R_SNAP, 0);
}

/* A consumer group member's page, or a named checkpoint: text
 * parameters, binary results. */
static int send_group(PGconn *c, es__op_t *op) {
  char member[16], members[16], max[24];
  snprintf(member, sizeof member, "%d", op->member);
  snprintf(members, sizeof members, "%d", op->members);
  snprintf(max, sizeof max, "%zu", op->max);
  const char *v[5] = {op->stream_id, op->category, member, members, max};
  if (op->kind == ES__OP_CKPT_LOAD)
    return sent(c, op,
                PQsendQueryPrepared(c, "es_ckpt_load", 1, v, NULL, NULL, 1),
                ES__R_CKPT, 0);
  char id[24], lease[24];
  snprintf(id, sizeof id, "%" PRId64, op->from_version);
  snprintf(lease, sizeof lease, "%zu", op->max);
  const char *mv[4] = {op->stream_id, op->category, id, max};
  int rc = 0;
  if (op->kind == ES__OP_READ_MEMBER || op->kind == ES__OP_READ_GROUP)
    rc = sent(c, op, PQsendQueryPrepared(c, "es_generic", 0, NULL, NULL, NULL,
                                         1),
              ES__R_GENERIC, 0);
  if (rc)
    return rc;
  if (op->kind == ES__OP_READ_MEMBER) {
    const char *hv[2] = {op->stream_id, id};
    rc = sent(c, op,
              PQsendQueryPrepared(c, "es_handoff", 2, hv, NULL, NULL, 1),
              ES__R_HANDOFF, 0);
    int lone = !op->member_full;
    return rc ? rc
              : sent(c, op,
                     PQsendQueryPrepared(c,
                                         lone ? "es_read_member_lone"
                                              : "es_read_member",
                                         4, mv, NULL, NULL, 1),
                     lone ? ES__R_READ_LONE : ES__R_READ, 0);
  }
  if (op->kind == ES__OP_MEMBER) {
    static const char *const sql[] = {
        "SELECT es_group_join($1, $2, $3, true)",
        "SELECT es_group_join($1, $2, $3, false)",
        "SELECT es_group_leave($1, $2)"};
    static const Oid types[3] = {O_TEXT, O_INT8, 23 /* int4 */};
    const char *jv[3] = {op->stream_id, id, lease};
    return sent(c, op,
                PQsendQueryParams(c, sql[op->member], op->member == 2 ? 2 : 3,
                                  types, jv, NULL, NULL, 1),
                ES__R_MEMBER, 0);
  }
  return sent(c, op,
              PQsendQueryPrepared(c, "es_read_group", 5, v, NULL, NULL, 1),
              ES__R_READ, 0);
}

/* Roll the partitions forward (the SQL function of migrations 0003 and
 * 0008). The transaction's lock_timeout is lock_wait_ms before the call
 * (the subquery runs first: its volatile set_config keeps it from being
 * pulled up), so the function's first wait, for the era switch's advisory
 * lock (which es_archive_drop holds while it checks an era), is bounded
 * too, not only its table locks. */
static const char ROLL_SQL[] =
    "SELECT es_roll_forward($1, $2) FROM (SELECT set_config('lock_timeout', "
    "$2::text || 'ms', true)) w";
static int send_roll(PGconn *c, es__op_t *op) {
  char b1[8], b2[8];
  const char *v[2] = {b1, b2};
  int l[2] = {8, 4}, f[2] = {1, 1};
  static const Oid types[2] = {O_INT8, 23 /* int4 */};
  put_be64(b1, (uint64_t)op->from_version);
  for (int i = 0; i < 4; i++)
    b2[i] = (char)((op->max >> (8 * (3 - i))) & 0xFF);
  return sent(c, op,
              PQsendQueryParams(c, ROLL_SQL, 2, types, v, l, f, 1),
              ES__R_ROLL, 0);
}

void es__xcache_clear(es__xcache_t *xc) {
  for (size_t i = 0; xc && i < xc->n; i++)
    free(xc->sql[i]);
  if (xc)
    xc->n = 0;
}

/* A batch statement: prepared on this connection the first time its text
 * is seen (up to ES__XCACHE_MAX texts), then executed by name; a
 * replanned one is sent as it is, planned for its parameters. */
static int send_stmt(PGconn *c, es__op_t *op, size_t j) {
  es__stmt_t *s = &op->batch->stmts[j];
  es__xcache_t *xc = op->xc;
  size_t k = 0;
  while (xc && !s->replanned && k < xc->n &&
         (xc->nparams[k] != s->nparams || strcmp(xc->sql[k], s->sql) != 0))
    k++;
  if (!xc || s->replanned || (k == xc->n && k == ES__XCACHE_MAX))
    return sent(c, op,
                PQsendQueryParams(c, s->sql, s->nparams, NULL,
                                  (const char *const *)s->params, NULL, NULL,
                                  0),
                ES__R_STMT, j);
  if (k == xc->n) {
    if (!(xc->sql[k] = strdup(s->sql)))
      return ES_ERR_NOMEM;
    snprintf(xc->name[k], sizeof xc->name[k], "es_stmt_%u", ++xc->serial);
    xc->nparams[k] = s->nparams;
    xc->n++;
    int rc = sent(c, op, PQsendPrepare(c, xc->name[k], s->sql, s->nparams,
                                       NULL),
                  ES__R_XPREP, j);
    if (rc)
      return rc;
  }
  return sent(c, op,
              PQsendQueryPrepared(c, xc->name[k], s->nparams,
                                  (const char *const *)s->params, NULL, NULL,
                                  0),
              ES__R_STMT, j);
}

int es__op_send(PGconn *c, es__op_t *op, int prepare, int listen) {
  int rc = 0, notified = 0;
  op->n_expect = op->next = 0;
  op->status = 0;
  op->aborted_by = -1;
  op->syncs = 1;
  if (op->classify && op->kind == ES__OP_APPEND)
    return send_check(c, op);
  if (op->classify)
    return send_classify(c, op); /* keeps the first round's message */
  op->prep_failed = 0;
  op->member_retry = 0;
  op->multi_failed = 0;
  op->recheck = 0;
  op->msg[0] = '\0';
  op->xprep_failed = 0;
  /* After a failed preparation some statements may exist: start clean. */
  if (prepare) {
    rc = send_plain(c, op, "DEALLOCATE ALL", ES__R_PREPARE);
    es__xcache_clear(op->xc);
    es__heads_clear(op->heads); /* a new connection: maybe a new database */
  }
  for (size_t i = 0; prepare && i < N_STMTS && !rc; i++)
    rc = sent(c, op,
              PQsendPrepare(c, stmts[i].name, stmts[i].sql, stmts[i].n,
                            stmts[i].types),
              ES__R_PREPARE, i);
  /* The lock first: from then on writers notify (ES__LISTENER_LOCK). */
  if (!rc && listen)
    rc = send_plain(c, op,
                    "SELECT pg_advisory_lock_shared(" ES__LISTENER_LOCK ")",
                    ES__R_LISTEN);
  if (!rc && listen)
    rc = send_plain(c, op, "LISTEN " ES__CHANNEL, ES__R_LISTEN);
  switch (op->kind) {
  case ES__OP_APPEND:
    if (!rc)
      rc = send_append(c, op, 0, op->notify);
    break;
  case ES__OP_BATCH:
    /* No BEGIN/COMMIT: everything up to the sync is one implicit
     * transaction, committed at the sync or rolled back whole on the first
     * error. (An explicit block would stay open and aborted after the sync
     * when a statement fails, since the queued COMMIT is skipped.) */
    if (!rc)
      rc = send_streams(c, op, op->notify, &notified);
    for (size_t j = 0; j < op->batch->n_stmts && !rc; j++)
      rc = send_stmt(c, op, j);
    /* One NOTIFY per batch: its commit-time lock is paid once per batch
     * (none for a batch that appends nothing). */
    if (!rc && op->notify && op->batch->n_streams && !notified)
      rc = send_plain(c, op, "SELECT " ES__NOTIFY_UNLESS_ALONE,
                      ES__R_NOTIFY);
    break;
  case ES__OP_READ_STREAM:
  case ES__OP_READ_ALL:
    if (!rc)
      rc = send_read(c, op);
    break;
  case ES__OP_SNAP_SAVE:
  case ES__OP_SNAP_LOAD:
    if (!rc)
      rc = send_snap(c, op);
    break;
  case ES__OP_ROLL:
    if (!rc)
      rc = send_roll(c, op);
    break;
  case ES__OP_READ_GROUP:
  case ES__OP_READ_MEMBER:
  case ES__OP_MEMBER:
  case ES__OP_CKPT_LOAD:
    if (!rc)
      rc = send_group(c, op);
    break;
  }
  if (!rc && !PQpipelineSync(c))
    rc = sent(c, op, 0, ES__R_COMMIT, 0);
  if (rc == ES_ERR_NOMEM)
    es__set_msg(op->msg, sizeof op->msg, "out of memory");
  return rc;
}

static void ignore_notice(void *arg, const char *message) {
  (void)arg, (void)message;
}

void es__quiet(PGconn *c) {
  if (c)
    PQsetNoticeProcessor(c, ignore_notice, NULL);
}

int es__map_error(PGconn *c, const PGresult *r) {
  const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if ((c && PQstatus(c) == CONNECTION_BAD) || !st)
    return ES_ERR_CONNECTION;
  /* A protocol violation the server answers as a plain ERROR leaves the
   * session as it was: a statement's parameters that do not match its
   * text ("bind message supplies 1 parameters, but prepared statement
   * requires 2"). Mapped to CONNECTION it would drop a good connection
   * and tell the caller to repeat a call that can never succeed. */
  const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (!strcmp(st, "08P01") && sev && !strcmp(sev, "ERROR"))
    return ES_ERR_DB;
  if (!strncmp(st, "08", 2) || !strcmp(st, "57P01") || !strcmp(st, "57P02") ||
      !strcmp(st, "57P03"))
    return ES_ERR_CONNECTION;
  if (!strcmp(st, "40001") || !strcmp(st, "40P01") || !strcmp(st, "55P03"))
    return ES_ERR_RETRY;
  if (!strcmp(st, "42P01") || !strcmp(st, "42703") || !strcmp(st, "26000"))
    return ES_ERR_SCHEMA;
  if (!strcmp(st, "23505")) {
    const char *k = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    /* a partition's key is named after its table and columns */
    return (k && strstr(k, "event_id")) ? ES_ERR_ID_REUSED : ES_ERR_CONFLICT;
  }
  if (!strcmp(st, "22021"))
    return ES_ERR_BAD_UTF8;
  /* es_group_member_ack: buckets moved (in a batch, only from a member's
   * acknowledgement: es__op_result) */
  if (!strcmp(st, "ES001"))
    return ES_ERR_NOT_OWNER;
  if (!strcmp(st, "ES002")) /* es_group_join: no longer a member */
    return ES_ERR_NOT_FOUND;
  if (!strcmp(st, "54000") || !strcmp(st, "22001"))
    return ES_ERR_TOO_LARGE;
  return ES_ERR_DB;
}

void es__op_fail(es__op_t *op, int status, const char *msg) {
  if (!op->status)
    op->status = status;
  if (msg && !op->msg[0])
    es__set_msg(op->msg, sizeof op->msg, "%s", msg);
  if (op->batch && (op->kind == ES__OP_BATCH || op->kind == ES__OP_APPEND))
    for (size_t i = 0; i < op->batch->n_streams; i++) {
      op->batch->results[i].status = status;
      op->batch->results[i].first_position = 0;
      op->batch->results[i].last_position = 0;
    }
}

/* Stream i's answer: row `row` of r, APPEND_SQL's columns from column c. */
static void append_result(es__op_t *op, size_t i, const PGresult *r, int row,
                          int c) {
  es_append_result_t *res = &op->batch->results[i];
  size_t n = op->batch->streams[i].n_events;
  int64_t v = es__get_be64(PQgetvalue(r, row, c));
  int64_t dups = es__get_be64(PQgetvalue(r, row, c + 1));
  int64_t mine = es__get_be64(PQgetvalue(r, row, c + 2));
  int64_t wrote = es__get_be64(PQgetvalue(r, row, c + 3));
  res->first_position = es__get_be64(PQgetvalue(r, row, c + 4));
  res->last_position = es__get_be64(PQgetvalue(r, row, c + 5));
  if (wrote == (int64_t)n) {
    res->status = 0;
    res->version = v + wrote;
    return;
  }
  res->version = v;
  if (dups == 0)
    res->status = ES_ERR_CONFLICT;
  else
    res->status = mine == (int64_t)n ? ES_ERR_DUPLICATE : ES_ERR_ID_REUSED;
  if (op->kind == ES__OP_APPEND) {
    op->status = res->status;
    const es__stream_t *st = &op->batch->streams[i];
    if (!op->msg[0] && res->status == ES_ERR_CONFLICT)
      es__set_msg(op->msg, sizeof op->msg,
                  "stream \"%.*s\" is at version %lld, not the expected "
                  "%lld: nothing appended",
                  st->lens[0], st->params.p + st->offs[0], (long long)v,
                  (long long)st->expected);
    else if (!op->msg[0])
      es__set_msg(op->msg, sizeof op->msg, "stream \"%.*s\": %s",
                  st->lens[0], st->params.p + st->offs[0],
                  res->status == ES_ERR_DUPLICATE
                      ? "these events are stored already: nothing appended"
                      : "an event id is stored already with other content");
  }
}

/* The single-event statement's answer: the new row's position, or no row
 * when the expected version is missing (es_append_check then says why). */
static void one_result(es__op_t *op, size_t i, const PGresult *r) {
  es_append_result_t *res = &op->batch->results[i];
  if (PQntuples(r) != 1) {
    op->recheck = 1;
    return;
  }
  res->status = 0;
  res->version = op->batch->streams[i].expected + 1;
  res->first_position = res->last_position =
      es__get_be64(PQgetvalue(r, 0, 0));
  op->head_era = es__get_be32(PQgetvalue(r, 0, 1));
}

/* Whether r refused a row for its era: ended (ES003, migration 0008) or
 * archived (no partition for it, 23514). */
static int era_refused(const PGresult *r) {
  const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return st && (!strcmp(st, "ES003") || !strcmp(st, "23514"));
}

/* A single append complete: remember the version it wrote and the row's
 * era, or forget the stream when nothing was written. */
static void note_head(es__op_t *op) {
  const es__stream_t *s = &op->batch->streams[0];
  const char *stream = s->params.p + s->offs[0];
  if (op->status || op->batch->results[0].status || op->head_era < 0)
    es__heads_forget(op->heads, stream, (size_t)s->lens[0]);
  else
    es__heads_put(op->heads, stream, (size_t)s->lens[0],
                  op->batch->results[0].version, op->head_era);
}

/* One round's rows: stream number (1-based in the round), then
 * APPEND_SQL's columns. */
static int multi_result(es__op_t *op, size_t k, const PGresult *r) {
  es_batch_t *b = op->batch;
  size_t first = b->round_start[k], m = b->round_start[k + 1] - first;
  if ((size_t)PQntuples(r) != m || PQnfields(r) != 7) {
    es__set_msg(op->msg, sizeof op->msg,
                "multi-stream append answered %d rows for %zu streams",
                PQntuples(r), m);
    return ES_ERR_DB;
  }
  for (int row = 0; row < (int)m; row++) {
    int64_t j = es__get_be64(PQgetvalue(r, row, 0));
    if (j < 1 || (size_t)j > m) {
      es__set_msg(op->msg, sizeof op->msg,
                  "multi-stream append answered stream %lld of %zu",
                  (long long)j, m);
      return ES_ERR_DB;
    }
    append_result(op, b->order[first + (size_t)j - 1], r, row, 1);
  }
  return 0;
}

static const char *opt_text(const PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int make_page(es__op_t *op, PGresult *r) {
  size_t n = (size_t)PQntuples(r);
  es_page_t *pg = calloc(1, sizeof *pg);
  if (!pg || (n && !(pg->events = calloc(n, sizeof *pg->events)))) {
    free(pg);
    PQclear(r);
    return ES_ERR_NOMEM;
  }
  pg->n = n;
  pg->priv_ = r;
  pg->next = op->from;
  for (size_t i = 0; i < n; i++) {
    es_recorded_t *e = &pg->events[i];
    int row = (int)i;
    e->at.tx = (uint64_t)es__get_be64(PQgetvalue(r, row, 0));
    e->at.pos = es__get_be64(PQgetvalue(r, row, 1));
    e->global_position = e->at.pos;
    e->stream_id = PQgetvalue(r, row, 2);
    e->version = es__get_be64(PQgetvalue(r, row, 3));
    memcpy(e->id, PQgetvalue(r, row, 4), 16);
    e->type = PQgetvalue(r, row, 5);
    e->data = PQgetvalue(r, row, 6);
    e->data_len = (size_t)PQgetlength(r, row, 6);
    e->correlation_id = opt_text(r, row, 7);
    e->causation_id = opt_text(r, row, 8);
    e->traceparent = opt_text(r, row, 9);
    /* jsonb binary: a version byte, then the text */
    e->meta_json = PQgetisnull(r, row, 10) ? NULL : PQgetvalue(r, row, 10) + 1;
    /* timestamptz binary: microseconds since 2000-01-01 */
    e->recorded_at_us =
        es__get_be64(PQgetvalue(r, row, 11)) + INT64_C(946684800000000);
  }
  if (n)
    pg->next = pg->events[n - 1].at;
  if (n && PQnfields(r) > 12) /* a member's read: its buckets' mask */
    pg->buckets = (uint64_t)es__get_be64(PQgetvalue(r, 0, 12));
  op->page = pg;
  return 0;
}

static int make_snapshot(es__op_t *op, const PGresult *r) {
  if (PQntuples(r) == 0)
    return op->kind == ES__OP_SNAP_LOAD ? ES_ERR_NOT_FOUND : ES_ERR_CONFLICT;
  if (op->kind == ES__OP_SNAP_SAVE)
    return 0;
  es_snapshot_t *s = calloc(1, sizeof *s);
  size_t len = (size_t)PQgetlength(r, 0, 2);
  if (!s || !(s->type = strdup(PQgetvalue(r, 0, 1))) ||
      !(s->data = malloc(len ? len : 1))) {
    es_snapshot_free(s);
    return ES_ERR_NOMEM;
  }
  s->version = es__get_be64(PQgetvalue(r, 0, 0));
  memcpy(s->data, PQgetvalue(r, 0, 2), len);
  s->len = len;
  op->snapshot = s;
  return 0;
}

int es__op_result(es__op_t *op, PGresult *r) {
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_PIPELINE_SYNC) {
    PQclear(r);
    if (--op->syncs > 0)
      return 0;
    if (op->kind == ES__OP_BATCH && op->multi_failed && !op->classify &&
        !op->prep_failed) {
      op->classify = 1;
      return ES__OP_AGAIN;
    }
    if (op->kind == ES__OP_APPEND && op->head_used && op->head_missed &&
        !op->status && !op->prep_failed)
      return ES__OP_AGAIN; /* the same append, probed */
    if (op->kind == ES__OP_APPEND && op->recheck && !op->classify &&
        !op->prep_failed) {
      /* the single append's refusal is answered, not reported as an error */
      op->classify = 1;
      op->msg[0] = '\0';
      return ES__OP_AGAIN;
    }
    if (op->kind == ES__OP_READ_MEMBER && op->member_retry && !op->status &&
        !op->prep_failed) {
      op->member_full = 1; /* the full statement, in a second round trip */
      return ES__OP_AGAIN;
    }
    if (op->classify && op->kind == ES__OP_BATCH)
      op->status = ES_ERR_BATCH_ABORTED;
    if ((op->kind == ES__OP_BATCH || op->kind == ES__OP_APPEND) &&
        op->status)
      for (size_t i = 0; i < op->batch->n_streams; i++) {
        es_append_result_t *res = &op->batch->results[i];
        int64_t n = (int64_t)op->batch->streams[i].n_events;
        /* A stream that would have written rolled back with the rest (or
         * with a failed commit): its version is the one the call found,
         * not the one it would have had. */
        if ((int)i != op->aborted_by && res->status == 0) {
          res->status = op->kind == ES__OP_BATCH ? ES_ERR_BATCH_ABORTED
                                                 : op->status;
          if (res->version >= n)
            res->version -= n;
        }
        res->first_position = res->last_position = 0;
      }
    if (op->kind == ES__OP_APPEND && op->batch->n_streams == 1)
      note_head(op);
    return 1;
  }
  if (op->next >= op->n_expect) {
    /* Only the implicit commit at the sync can answer here. */
    if (st == PGRES_FATAL_ERROR && !op->status) {
      es__set_msg(op->msg, sizeof op->msg, "could not commit: %s",
                  PQresultErrorMessage(r));
      op->status = op->kind == ES__OP_BATCH && !op->own
                       ? ES_ERR_BATCH_ABORTED
                       : es__map_error(NULL, r);
    }
    PQclear(r);
    return 0;
  }
  es__expect_t e = op->expect[op->next++];
  int failed = st == PGRES_FATAL_ERROR;
  if ((failed || st == PGRES_PIPELINE_ABORTED) &&
      (e.kind == ES__R_PREPARE || e.kind == ES__R_LISTEN))
    op->prep_failed = 1;
  /* Not prepared after all (its error, or an earlier one aborted it): the
   * face prepares everything again before its next op. */
  if ((failed || st == PGRES_PIPELINE_ABORTED) && e.kind == ES__R_XPREP)
    op->xprep_failed = 1;
  if (st == PGRES_PIPELINE_ABORTED) {
    if (e.kind == ES__R_APPEND || e.kind == ES__R_ONE)
      op->batch->results[e.index].status = ES_ERR_BATCH_ABORTED;
    PQclear(r);
    return 0;
  }
  if (failed && e.kind == ES__R_ONE && op->head_used && era_refused(r)) {
    op->head_missed = 1; /* its era ended: probe, in a second round trip */
    PQclear(r);
    return 0;
  }
  if (failed) {
    int code = es__map_error(NULL, r);
    const char *m = PQresultErrorMessage(r);
    size_t ml = strlen(m);
    while (ml && m[ml - 1] == '\n')
      ml--;
    if (!op->msg[0]) {
      if (e.kind == ES__R_MULTI)
        es__set_msg(op->msg, sizeof op->msg,
                    "could not append the batch's %zu streams: %.*s",
                    op->batch->n_streams, (int)ml, m);
      else if (e.kind == ES__R_APPEND || e.kind == ES__R_ONE)
        es__set_msg(op->msg, sizeof op->msg,
                    "could not append to stream \"%.*s\": %.*s",
                    op->batch->streams[e.index].lens[0],
                    op->batch->streams[e.index].params.p, (int)ml, m);
      else if ((e.kind == ES__R_STMT || e.kind == ES__R_XPREP) && !op->own)
        es__set_msg(op->msg, sizeof op->msg,
                    "batch statement %zu failed: %.*s", e.index + 1, (int)ml,
                    m);
      else
        es__set_msg(op->msg, sizeof op->msg, "%.*s", (int)ml, m);
    }
    if (e.kind == ES__R_ONE &&
        (code == ES_ERR_CONFLICT || code == ES_ERR_ID_REUSED))
      op->recheck = 1; /* a unique key refused it: ask why */
    if (e.kind == ES__R_APPEND || e.kind == ES__R_ONE) {
      op->batch->results[e.index].status = code;
      if (op->kind == ES__OP_BATCH) {
        op->aborted_by = (int)e.index;
        code = ES_ERR_BATCH_ABORTED;
      }
    } else if (e.kind == ES__R_MULTI) {
      op->multi_failed = 1;
      code = ES_ERR_BATCH_ABORTED;
    } else if (e.kind == ES__R_STMT || e.kind == ES__R_XPREP) {
      /* A member's acknowledgement refused keeps its own answer; the same
       * SQLSTATE from any other statement is the append-only refusal. A
       * caller's batch answers BATCH_ABORTED for the rest; the store's own
       * statements answer their code. */
      int ack_refused = code == ES_ERR_NOT_OWNER &&
                        op->batch->stmts[e.index].member_ack;
      if (code == ES_ERR_NOT_OWNER && !ack_refused)
        code = ES_ERR_DB;
      if (!op->own && !ack_refused)
        code = ES_ERR_BATCH_ABORTED;
    } else if (e.kind == ES__R_PREPARE && code == ES_ERR_DB) {
      code = ES_ERR_SCHEMA;
    }
    if (!op->status)
      op->status = code;
    PQclear(r);
    return 0;
  }
  int rc = 0;
  switch (e.kind) {
  case ES__R_APPEND:
    append_result(op, e.index, r, 0, 0);
    break;
  case ES__R_ONE:
    one_result(op, e.index, r);
    break;
  case ES__R_MULTI:
    rc = multi_result(op, e.index, r);
    break;
  case ES__R_READ_LONE:
    if (PQntuples(r) == 0) {
      op->member_retry = 1; /* not the lone reader's case, or caught up */
      break;
    }
    /* fall through */
  case ES__R_READ:
    /* a member's read: whether its rows took the fast path */
    if (op->kind == ES__OP_READ_MEMBER && PQntuples(r) > 0 &&
        PQnfields(r) > 13)
      op->member_full = *PQgetvalue(r, 0, 13) == 0;
    rc = make_page(op, r);
    r = NULL; /* owned by the page (or cleared on failure) */
    break;
  case ES__R_SNAP:
    rc = make_snapshot(op, r);
    break;
  case ES__R_ROLL:
    op->from_version = es__get_be32(PQgetvalue(r, 0, 0));
    break;
  case ES__R_MEMBER:
    op->from.tx = (uint64_t)es__get_be64(PQgetvalue(r, 0, 0));
    break;
  case ES__R_CKPT:
    op->from = (es_pos_t){0, 0};
    if (PQntuples(r) == 1)
      op->from = (es_pos_t){(uint64_t)es__get_be64(PQgetvalue(r, 0, 0)),
                            es__get_be64(PQgetvalue(r, 0, 1))};
    break;
  default:
    break;
  }
  if (rc && !op->status)
    op->status = rc;
  PQclear(r);
  return 0;
}

void es_page_free(es_page_t *page) {
  if (!page)
    return;
  PQclear(page->priv_);
  free(page->events);
  free(page);
}

void es_snapshot_free(es_snapshot_t *snap) {
  if (!snap)
    return;
  free(snap->type);
  free(snap->data);
  free(snap);
}

int es__op_read_stream(es__op_t *op, const char *stream_id, int64_t from,
                       size_t max) {
  int rc = es__check_text("stream id", stream_id, 1, ES_MAX_STREAM_ID,
                          op->msg, sizeof op->msg);
  if (rc)
    return rc;
  if (max == 0 || max > 10000 || from < 0) {
    es__set_msg(op->msg, sizeof op->msg,
                "read of stream \"%s\": max must be 1 to 10000 and the"
                " version not negative",
                stream_id);
    return ES_ERR_INVALID;
  }
  op->kind = ES__OP_READ_STREAM;
  op->from_version = from;
  op->max = max;
  return (op->stream_id = strdup(stream_id)) ? 0 : ES_ERR_NOMEM;
}

int es__op_read_all(es__op_t *op, es_pos_t from, const es_filter_t *filter,
                    size_t max) {
  int rc;
  op->kind = ES__OP_READ_ALL;
  op->from = from;
  op->max = max;
  if (max == 0 || max > 10000 || from.pos < 0) {
    es__set_msg(op->msg, sizeof op->msg,
                "global read: max must be 1 to 10000 and the position not"
                " negative");
    return ES_ERR_INVALID;
  }
  if (filter && filter->category) {
    if ((rc = es__check_category(filter->category, op->msg,
                                 sizeof op->msg)))
      return rc;
    if (!(op->category = strdup(filter->category)))
      return ES_ERR_NOMEM;
  }
  if (filter && filter->type) {
    if ((rc = es__check_text("event type", filter->type, 1, ES_MAX_TYPE,
                             op->msg, sizeof op->msg)))
      return rc;
    if (!(op->type = strdup(filter->type)))
      return ES_ERR_NOMEM;
  }
  return 0;
}

int es__check_category(const char *category, char *msg, size_t msglen) {
  int rc = es__check_text("category", category, 1, ES_MAX_STREAM_ID, msg,
                          msglen);
  if (!rc && strchr(category, '-')) {
    es__set_msg(msg, msglen,
                "category \"%s\" holds a '-': a stream's category is the"
                " part of its id before the first '-' (\"order\" for"
                " \"order-42\"), so it would match nothing",
                category);
    rc = ES_ERR_INVALID;
  }
  return rc;
}

int es__check_sub_name(const char *what, const char *name, char *msg,
                       size_t msglen) {
  return es__check_text(what, name, 1, ES_MAX_SUB_NAME, msg, msglen);
}

/* The common part of a group read, after the caller checked the names
 * and its own member arguments (so a message names only the arguments of
 * the call made): max 1 to 10000. */
static int read_group_op(es__op_t *op, const char *group,
                         const char *category, int member, int members,
                         size_t max) {
  if (max == 0 || max > 10000) {
    es__set_msg(op->msg, sizeof op->msg,
                "group \"%s\": max must be 1 to 10000 (got %zu)", group,
                max);
    return ES_ERR_INVALID;
  }
  op->kind = ES__OP_READ_GROUP;
  op->member = member;
  op->members = members;
  op->max = max;
  op->from = (es_pos_t){0, 0};
  if (!(op->stream_id = strdup(group)) || !(op->category = strdup(category)))
    return ES_ERR_NOMEM;
  return 0;
}

int es__op_read_group(es__op_t *op, const char *group, const char *category,
                      int member, int members, size_t max) {
  int rc = es__check_sub_name("group name", group, op->msg, sizeof op->msg);
  if (!rc)
    rc = es__check_category(category, op->msg, sizeof op->msg);
  if (rc)
    return rc;
  if (members < 1 || members > ES_GROUP_BUCKETS) {
    es__set_msg(op->msg, sizeof op->msg,
                "group \"%s\": members must be 1 to %d (got %d)", group,
                ES_GROUP_BUCKETS, members);
    return ES_ERR_INVALID;
  }
  if (member < 0 || member >= members) {
    es__set_msg(op->msg, sizeof op->msg,
                "group \"%s\": member must be 0 to members - 1 (got member"
                " %d of %d)",
                group, member, members);
    return ES_ERR_INVALID;
  }
  return read_group_op(op, group, category, member, members, max);
}

int es__op_read_member(es__op_t *op, const char *group, const char *category,
                       int64_t member_id, size_t max) {
  int rc = es__check_sub_name("group name", group, op->msg, sizeof op->msg);
  if (!rc)
    rc = es__check_category(category, op->msg, sizeof op->msg);
  if (rc)
    return rc;
  if (member_id <= 0) {
    es__set_msg(op->msg, sizeof op->msg,
                "group \"%s\": member id must be positive (got %" PRId64
                "): use the id es_group_join gave",
                group, member_id);
    return ES_ERR_INVALID;
  }
  if ((rc = read_group_op(op, group, category, 0, 1, max)))
    return rc;
  op->kind = ES__OP_READ_MEMBER;
  op->from_version = member_id;
  return 0;
}

int es__op_member(es__op_t *op, int which, const char *group,
                  int64_t member_id, unsigned lease_ms) {
  int rc = es__check_sub_name("group name", group, op->msg, sizeof op->msg);
  if (rc)
    return rc;
  /* a join's id is drawn here, not given: name only what the caller
   * gave */
  if (which != 0 && member_id <= 0) {
    es__set_msg(op->msg, sizeof op->msg,
                "group \"%s\": member id must be positive (got %" PRId64
                "): use the id es_group_join gave",
                group, member_id);
    return ES_ERR_INVALID;
  }
  if (which != 2 && (lease_ms < 1 || lease_ms > ES_MAX_LEASE_MS)) {
    es__set_msg(op->msg, sizeof op->msg,
                "group \"%s\": the lease must be 1 to %d ms, got %u", group,
                ES_MAX_LEASE_MS, lease_ms);
    return ES_ERR_INVALID;
  }
  if (member_id <= 0) {
    es__set_msg(op->msg, sizeof op->msg,
                "group \"%s\": no randomness for a member id", group);
    return ES_ERR_INVALID;
  }
  op->kind = ES__OP_MEMBER;
  op->member = which;
  op->from_version = member_id;
  op->max = lease_ms;
  if (!(op->stream_id = strdup(group)))
    return ES_ERR_NOMEM;
  return 0;
}

void es__op_free(es__op_t *op) {
  if (!op)
    return;
  free(op->expect);
  free(op->stream_id);
  free(op->category);
  free(op->type);
  es__buf_free(&op->snap);
  es_page_free(op->page);
  es_snapshot_free(op->snapshot);
  op->expect = NULL;
  op->stream_id = op->category = op->type = NULL;
  op->page = NULL;
  op->snapshot = NULL;
}
