/* The engine's store port on PostgreSQL: batches through the event store's
 * libuv face, and recovery reads on a worker thread (uv_queue_work) over a
 * blocking connection of their own, so the loop is never blocked by them;
 * recovery lists every record of a partition's open sagas in one query
 * (saga_index joined to es_events) rather than one query per saga,
 * streamed and handed to the engine LOAD_CHUNK_ROWS at a time. A
 * batch larger than LANE_BLOCK streams is split over LANES connections, by
 * blocks of LANE_BLOCK streams, which append at the same time (two PostgreSQL
 * backends, two cores): each lane is one transaction and one round trip,
 * with the saga_index upserts of its own sagas. The engine sees one batch:
 * it completes when every lane has, and if any lane's outcome is unknown
 * the whole batch is submitted again (the lanes that committed answer
 * DUPLICATE). Must not decide anything: it translates store outcomes for
 * the engine. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "grow.h"
#include "saga/eventstore.h"
#include "shell.h"

extern const char *const sagad__sql_migrations[];
extern const char *const sagad__sql_migration_names[];
extern const size_t sagad__n_sql_migrations;

#define IDX_NCOLS 12
#define LANES 2
#define LANE_BLOCK 16

/* One connection and its part of the batch. */
typedef struct lane {
  sagad_store_pg_t *s;
  es_async_t *as;
  es_batch_t *batch;
  /* the lane's saga_index rows, one PostgreSQL array literal per column,
   * sent as ONE statement when the batch is submitted */
  struct idx_col {
    char *p;
    size_t len, cap;
  } idx[IDX_NCOLS];
  size_t nidx;
  /* the first row's values as they are, each followed by a NUL, at
   * one_at[c] (-1: NULL): a lane of one row sends UPSERT_ONE_SQL */
  struct idx_col one;
  long one_at[IDX_NCOLS];
  int idx_added; /* the statement is in the batch (a resubmit reuses it) */
  struct idx_col marks; /* ids of batch_notified (lane 0 only) */
  size_t nmarks;
  char mark1[ES_MAX_STREAM_ID + 1]; /* the first of them, as it is */
  int status; /* sagad_store_status_t of its last submission */
} lane_t;

struct sagad_store_pg {
  lane_t lanes[LANES];
  int pending;   /* lanes of the submitted batch not yet done */
  int closing_n; /* lanes (and a running load) still closing */
  uv_loop_t *loop;
  /* loads: the one on the worker thread, the queued ones in order */
  struct pg_load *load_running, *load_head, *load_tail;
  /* engine stream i -> (lane, index in that lane's batch) */
  struct where {
    uint8_t lane;
    uint32_t idx;
  } *map;
  size_t nmap, cmap;
  int last_lane; /* lane of the stream added last (its index row's) */
  PGconn *sync;
  char *conninfo;
  sagad_engine_t *engine;
  int closing;
  void (*close_cb)(void *);
  void *close_arg;
  char err[512];
};

#define UPSERT_COLUMNS                                                         \
  "INSERT INTO saga_index AS i (saga_id, saga_type, definition_version, "      \
  "status, partition, version, started_at, updated_at, next_deadline_at, "     \
  "current_step, notify_pending, stuck_at) "
/* An existing row takes a newer version's columns (started_at stays), and
 * only a version the stream holds: a stream of the batch that conflicted
 * wrote nothing, its row must not either (found by tests/sim, seed 42). */
#define UPSERT_CONFLICT                                                        \
  "ON CONFLICT (saga_id) DO UPDATE SET status = excluded.status, "             \
  "partition = excluded.partition, version = excluded.version, "               \
  "updated_at = excluded.updated_at, "                                         \
  "next_deadline_at = excluded.next_deadline_at, "                             \
  "current_step = excluded.current_step, "                                     \
  "notify_pending = excluded.notify_pending, "                                 \
  "stuck_at = excluded.stuck_at "                                              \
  "WHERE i.version < excluded.version "                                        \
  "AND EXISTS (SELECT 1 FROM es_events e WHERE e.stream_id = 'saga-' || "      \
  "excluded.saga_id AND e.stream_version = excluded.version)"

/* Every saga_index row of a batch in one statement (parsed and planned
 * once per batch, not once per saga): the columns come as arrays. */
static const char UPSERT_SQL[] =
    UPSERT_COLUMNS "SELECT u.id, u.t, u.dv, u.st, "
    "u.p, u.v, to_timestamp(u.s / 1000.0), to_timestamp(u.up / 1000.0), "
    "CASE WHEN u.dl = 0 THEN NULL ELSE to_timestamp(u.dl / 1000.0) END, u.cs, "
    "u.np, CASE WHEN u.sa = 0 THEN 'infinity'::timestamptz "
    "ELSE to_timestamp(u.sa / 1000.0) END "
    "FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], "
    "$5::int[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], "
    "$10::text[], $11::boolean[], $12::bigint[]) "
    "AS u(id, t, dv, st, p, v, s, up, dl, cs, np, sa) " UPSERT_CONFLICT;
/* The same for a lane's one row, the usual batch at low load (one saga
 * stepped per turn): scalar parameters. The twelve arrays' parsing and the
 * unnest cost about 0.09 ms of server CPU per transaction on this
 * machine's PostgreSQL (docs/benchmarks.md, "One saga's index row without
 * arrays"), on the critical path of every step at concurrency 1. */
static const char UPSERT_ONE_SQL[] =
    UPSERT_COLUMNS "VALUES ($1, $2, $3::int, $4, $5::int, $6::bigint, "
    "to_timestamp($7::bigint / 1000.0), to_timestamp($8::bigint / 1000.0), "
    "CASE WHEN $9::bigint = 0 THEN NULL "
    "ELSE to_timestamp($9::bigint / 1000.0) END, $10, $11::boolean, "
    "CASE WHEN $12::bigint = 0 THEN 'infinity'::timestamptz "
    "ELSE to_timestamp($12::bigint / 1000.0) END) " UPSERT_CONFLICT;

/* Recovery's read: the open sagas of some partitions, each with its
 * records. Stream by stream without sorting the sagas: a LATERAL subquery
 * with an ORDER BY of its own is never flattened into the join, so it can
 * only be the inner side of a nested loop, run once per saga_index row --
 * each saga's records come together, in version order, and saga_index is
 * read in the order of its pages. The reads' connection plans without
 * parallel workers (ensure_sync), whose rows a Gather would interleave.
 * It used to be a join ORDER BY saga_id, stream_version read through a
 * cursor: a walk of saga_index's primary key (a heap page per saga, the
 * HOT chains of its updates followed at each) under an incremental sort,
 * and every FETCH's rows copied into a tuplestore before they were sent
 * (FETCH is a utility statement) -- 1.58 s of backend CPU for 100,000
 * sagas, 3 records each (docs/benchmarks.md, "Recovery's read streamed"). */
static const char LOAD_PARTS_SQL[] =
    "SELECT i.saga_id, i.partition, e.stream_version, e.data "
    "FROM saga_index i CROSS JOIN LATERAL ("
    "SELECT stream_version, data FROM es_events "
    "WHERE stream_id = 'saga-' || i.saga_id ORDER BY stream_version) e "
    "WHERE i.partition = ANY($1::int[]) "
    "AND (i.status NOT IN ('completed', 'compensated') OR i.notify_pending)";

/* The final notifications of these sagas were delivered (lane 0, after
 * the upserts: a saga finished in this very batch keeps its flag). Found
 * by id: `IS TRUE`, not the bare column, so that the planner cannot take
 * saga_index_notify_idx (the bare column implies its predicate). That
 * index keeps an entry for every saga finished since the last vacuum (a
 * cleared flag is a new row version); after an ANALYZE that saw few flags
 * set, the plan walked it, and the statement cost as many entries as
 * sagas had finished: 8.4 ms for 117 marks after 50,000 sagas, against
 * 0.24 ms by id (docs/benchmarks.md, "Delivered notifications found by
 * id, and what their clearing costs"). Planned for its ids at every run
 * (es_batch_add_statement_replanned), not prepared: a prepared
 * statement's generic plan is made once, and one made while saga_index
 * was a page or two (a fresh database's first sagas) was a sequential
 * scan testing every row against the whole array, kept as the table grew
 * -- 20-119 ms a call, 57-68 us a mark, in most saga benchmark runs
 * (docs/benchmarks.md, "Room on saga_index's pages ..."). */
static const char NOTIFIED_SQL[] =
    "UPDATE saga_index SET notify_pending = false "
    "WHERE saga_id = ANY($1::text[]) AND notify_pending IS TRUE";
/* The same for one saga, the usual case (one saga finishes between two
 * batches): its plan does not depend on a number of ids, so the plan cache
 * keeps one plan for it; NOTIFIED_SQL's generic plan estimates 10 ids, its
 * custom plans the array's count, and it was planned afresh at every
 * execution (0.1-0.2 ms, the saga benchmark's concurrency-1 half). */
static const char NOTIFIED_ONE_SQL[] =
    "UPDATE saga_index SET notify_pending = false "
    "WHERE saga_id = $1 AND notify_pending IS TRUE";

static const char LOAD_ONE_SQL[] =
    "SELECT $2::text, $3::int, stream_version, data FROM es_events "
    "WHERE stream_id = 'saga-' || $1 ORDER BY stream_version";

/* "what: detail" into err (errlen bytes), without libpq's final newline. */
static void set_err_in(char *err, size_t errlen, const char *what,
                       const char *detail) {
  snprintf(err, errlen, "%s: %s", what, detail ? detail : "");
  size_t n = strlen(err);
  while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
    err[--n] = '\0';
}

static void set_err(sagad_store_pg_t *s, const char *what, const char *detail) {
  set_err_in(s->err, sizeof s->err, what, detail);
}

/* ---- batches ------------------------------------------------------- */

static void p_batch_reset(void *self) {
  sagad_store_pg_t *s = self;
  for (int l = 0; l < LANES; l++) {
    lane_t *ln = &s->lanes[l];
    es_batch_reset(ln->batch);
    for (int c = 0; c < IDX_NCOLS; c++)
      ln->idx[c].len = 0;
    ln->nidx = 0;
    ln->idx_added = 0;
    ln->marks.len = 0;
    ln->nmarks = 0;
  }
  s->nmap = 0;
}

/* Append one element (NULL when v is NULL) to a column's array literal;
 * text is double-quoted with " and \ escaped. */
static int col_put(struct idx_col *c, const char *v, int quote) {
  size_t n = v ? strlen(v) : 4;
  if (SAGA_GROW(c->p, c->cap, c->len + 2 * n + 4, 256) != 0)
    return -1;
  char sep = c->len ? ',' : '{';
  c->p[c->len++] = sep;
  if (!v) {
    memcpy(c->p + c->len, "NULL", 4);
    c->len += 4;
    return 0;
  }
  if (quote)
    c->p[c->len++] = '"';
  for (; *v; v++) {
    if (quote && (*v == '"' || *v == '\\'))
      c->p[c->len++] = '\\';
    c->p[c->len++] = *v;
  }
  if (quote)
    c->p[c->len++] = '"';
  return 0;
}

/* Keep v as it is (NULL: -1) at the end of b, NUL-terminated: its
 * offset, or -2 when out of memory. */
static long raw_put(struct idx_col *b, const char *v) {
  if (!v)
    return -1;
  size_t n = strlen(v) + 1;
  if (SAGA_GROW(b->p, b->cap, b->len + n, 256) != 0)
    return -2;
  memcpy(b->p + b->len, v, n);
  b->len += n;
  return (long)(b->len - n);
}

static int p_batch_add(void *self, const char *saga_id, int64_t expected,
                       const sagad_record_t *recs, size_t n) {
  sagad_store_pg_t *s = self;
  if (SAGA_GROW(s->map, s->cmap, s->nmap + 1, 256) != 0) {
    set_err(s, "could not add to the batch", "out of memory");
    return -1;
  }
  int l = (int)((s->nmap / LANE_BLOCK) % LANES);
  lane_t *ln = &s->lanes[l];
  char stream[ES_MAX_STREAM_ID + 1];
  int sn = snprintf(stream, sizeof stream, "saga-%s", saga_id);
  if (sn < 0 || (size_t)sn >= sizeof stream) { /* never cut: another saga */
    set_err(s, "could not add to the batch", "saga id too long");
    return -1;
  }
  es_event_t evs[64];
  es_event_t *ev = n <= 64 ? evs : calloc(n, sizeof *ev);
  if (!ev)
    return -1;
  memset(ev, 0, n * sizeof *ev);
  for (size_t i = 0; i < n; i++) {
    ev[i].type = recs[i].type;
    ev[i].data = recs[i].data;
    ev[i].data_len = recs[i].len;
    ev[i].correlation_id = saga_id;
    ev[i].traceparent = recs[i].traceparent;
  }
  int rc = es_batch_add(ln->batch, stream, expected, ev, n);
  if (rc < 0)
    set_err(s, "could not add to the batch", es_strerror(rc));
  if (ev != evs)
    free(ev);
  if (rc < 0)
    return rc;
  s->map[s->nmap] = (struct where){(uint8_t)l, (uint32_t)rc};
  s->last_lane = l;
  return (int)s->nmap++;
}

static int p_batch_index(void *self, const sagad_index_row_t *r) {
  sagad_store_pg_t *s = self;
  lane_t *ln = &s->lanes[s->last_lane];
  char ver[16], part[16], v[24], st[24], up[24], dl[24], sa[24];
  snprintf(ver, sizeof ver, "%u", (unsigned)r->definition_version);
  snprintf(part, sizeof part, "%d", (int)r->partition);
  snprintf(v, sizeof v, "%lld", (long long)r->version);
  snprintf(st, sizeof st, "%lld", (long long)r->started_ms);
  snprintf(up, sizeof up, "%lld", (long long)r->updated_ms);
  snprintf(dl, sizeof dl, "%lld", (long long)r->next_deadline_ms);
  snprintf(sa, sizeof sa, "%lld", (long long)r->stuck_at_ms);
  const char *vals[IDX_NCOLS] = {r->saga_id, r->saga_type, ver, r->status,
                                 part,       v,            st,  up,
                                 dl,         r->current_step,
                                 r->notify_pending ? "t" : "f", sa};
  static const int quoted[IDX_NCOLS] = {1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0};
  if (!ln->nidx)
    ln->one.len = 0;
  for (int c = 0; c < IDX_NCOLS; c++)
    if (col_put(&ln->idx[c], vals[c], quoted[c]) != 0 ||
        (!ln->nidx && (ln->one_at[c] = raw_put(&ln->one, vals[c])) == -2)) {
      set_err(s, "could not add the index upsert", "out of memory");
      return -1;
    }
  ln->nidx++;
  return 0;
}

static int p_batch_notified(void *self, const char *saga_id) {
  sagad_store_pg_t *s = self;
  lane_t *ln = &s->lanes[0];
  if (col_put(&ln->marks, saga_id, 1) != 0) {
    set_err(s, "could not add a delivered notification", "out of memory");
    return -1;
  }
  if (!ln->nmarks)
    snprintf(ln->mark1, sizeof ln->mark1, "%s", saga_id);
  ln->nmarks++;
  return 0;
}

/* The lane's one saga_index upsert: scalar parameters for one row, the
 * columns' array literals closed for several. */
static int add_upsert(sagad_store_pg_t *s, lane_t *ln) {
  const char *params[IDX_NCOLS];
  for (int c = 0; c < IDX_NCOLS && ln->nidx == 1; c++)
    params[c] = ln->one_at[c] < 0 ? NULL : ln->one.p + ln->one_at[c];
  for (int c = 0; c < IDX_NCOLS && ln->nidx > 1; c++) {
    if (col_put(&ln->idx[c], "", 0) != 0) { /* room for the closing brace */
      set_err(s, "could not add the index upsert", "out of memory");
      return -1;
    }
    ln->idx[c].p[ln->idx[c].len - 1] = '}';
    ln->idx[c].p[ln->idx[c].len] = '\0';
    params[c] = ln->idx[c].p;
  }
  int rc = es_batch_add_statement(ln->batch,
                                  ln->nidx == 1 ? UPSERT_ONE_SQL : UPSERT_SQL,
                                  IDX_NCOLS, params);
  if (rc < 0) {
    set_err(s, "could not add the index upsert", es_strerror(rc));
    return -1;
  }
  return 0;
}

/* The record of the lane's delivered final notifications. */
static int add_marks(sagad_store_pg_t *s, lane_t *ln) {
  if (col_put(&ln->marks, "", 0) != 0) {
    set_err(s, "could not add a delivered notification", "out of memory");
    return -1;
  }
  ln->marks.p[ln->marks.len - 1] = '}';
  ln->marks.p[ln->marks.len] = '\0';
  const char *mp[1] = {ln->nmarks == 1 ? ln->mark1 : ln->marks.p};
  int rc = ln->nmarks == 1
               ? es_batch_add_statement(ln->batch, NOTIFIED_ONE_SQL, 1, mp)
               : es_batch_add_statement_replanned(ln->batch, NOTIFIED_SQL, 1,
                                                  mp);
  if (rc < 0) {
    set_err(s, "could not add a delivered notification", es_strerror(rc));
    return -1;
  }
  return 0;
}

/* Whether the lane has anything to send: appends, or (lane 0) only the
 * record of delivered notifications (an idle engine's, or a stopping
 * one's last). */
static int lane_used(lane_t *ln) {
  return es_batch_size(ln->batch) || ln->nmarks;
}

/* Close a lane's arrays and add its one upsert after the appends, and the
 * record of delivered final notifications after it. */
static int add_index_statement(sagad_store_pg_t *s, lane_t *ln) {
  if ((!ln->nidx && !ln->nmarks) || ln->idx_added)
    return 0;
  if (ln->nidx && add_upsert(s, ln) != 0)
    return -1;
  if (ln->nmarks && add_marks(s, ln) != 0)
    return -1;
  ln->idx_added = 1;
  return 0;
}

static int map_status(int rc) {
  switch (rc) {
  case ES_ERR_OK:
    return SAGAD_STORE_OK;
  case ES_ERR_DUPLICATE:
    return SAGAD_STORE_DUPLICATE;
  case ES_ERR_CONFLICT:
    return SAGAD_STORE_CONFLICT;
  case ES_ERR_BATCH_ABORTED:
  case ES_ERR_CONNECTION:
  case ES_ERR_RETRY:
  case ES_ERR_CANCELLED:
    return SAGAD_STORE_RETRY;
  default:
    return SAGAD_STORE_FATAL;
  }
}

/* The batch is done when its last lane is: RETRY if any lane's outcome is
 * unknown, else FATAL if any lane failed whole, else OK (per stream). */
static void lane_done(sagad_store_pg_t *s) {
  if (--s->pending > 0 || s->closing || !s->engine)
    return;
  int st = SAGAD_STORE_OK;
  for (int l = 0; l < LANES; l++) {
    int ls = lane_used(&s->lanes[l]) ? s->lanes[l].status : SAGAD_STORE_OK;
    if (ls == SAGAD_STORE_RETRY || (ls == SAGAD_STORE_FATAL &&
                                    st != SAGAD_STORE_RETRY))
      st = ls;
  }
  sagad_engine_on_batch_done(s->engine, st);
}

static void on_batch(es_async_t *as, es_batch_t *b, int status, void *arg) {
  lane_t *ln = arg;
  sagad_store_pg_t *s = ln->s;
  if (status)
    set_err(s, es_strerror(status), es_async_last_error(as));
  /* A whole-batch CONNECTION loss has an unknown outcome: resubmit. An
   * aborted batch says per stream who is to blame. */
  /* a lane of statements alone (the record of delivered notifications)
   * names no stream to blame: its aborted batch is tried again */
  if (status == ES_ERR_BATCH_ABORTED && !es_batch_size(b))
    status = ES_ERR_RETRY;
  ln->status = status == ES_ERR_CONNECTION || status == ES_ERR_RETRY
                   ? SAGAD_STORE_RETRY
               : status == 0 || status == ES_ERR_BATCH_ABORTED
                   ? SAGAD_STORE_OK
                   : SAGAD_STORE_FATAL;
  lane_done(s);
}

static int p_batch_submit(void *self) {
  sagad_store_pg_t *s = self;
  s->pending = 0; /* lanes out */
  for (int l = 0; l < LANES; l++) {
    lane_t *ln = &s->lanes[l];
    if (!lane_used(ln))
      continue;
    int rc = add_index_statement(s, ln);
    if (!rc) {
      rc = es_async_batch(ln->as, ln->batch, on_batch, ln);
      if (rc)
        set_err(s, "could not submit the batch", es_strerror(rc));
    }
    if (rc && !s->pending)
      return -1; /* nothing submitted: nothing will be called */
    if (rc) {
      /* an earlier lane is out: the batch completes through it, and is
       * submitted again */
      ln->status = SAGAD_STORE_RETRY;
      continue;
    }
    s->pending++;
  }
  return s->pending ? 0 : -1;
}

static int p_batch_status(void *self, size_t i) {
  sagad_store_pg_t *s = self;
  if (i >= s->nmap)
    return SAGAD_STORE_FATAL;
  const es_append_result_t *r =
      es_batch_result(s->lanes[s->map[i].lane].batch, s->map[i].idx);
  return r ? map_status(r->status) : SAGAD_STORE_FATAL;
}

/* ---- blocking reads ------------------------------------------------ */

/* The reads' connection: used by one thread at a time (the loop's at open,
 * then the load worker's), errors into err. */
static void stream_abandon(PGconn *pg, bool cancel);

static int ensure_sync(sagad_store_pg_t *s, char *err, size_t errlen) {
  if (s->sync && PQstatus(s->sync) == CONNECTION_OK) {
    /* a load that ended without reading its query out, or in the middle
     * of its transaction, leaves nothing for the next one */
    if (PQtransactionStatus(s->sync) != PQTRANS_IDLE)
      stream_abandon(s->sync, PQtransactionStatus(s->sync) == PQTRANS_ACTIVE);
    if (PQstatus(s->sync) == CONNECTION_OK)
      return 0;
  }
  if (s->sync)
    PQreset(s->sync);
  else
    s->sync = PQconnectdb(s->conninfo);
  if (PQstatus(s->sync) != CONNECTION_OK) {
    set_err_in(err, errlen, "could not connect to the event store",
               PQerrorMessage(s->sync));
    return -1;
  }
  /* No JIT on this connection: its reads are index probes, however many
   * rows. Recovery's join over 100,000 open sagas is estimated far past
   * jit_above_cost and the inlining and optimisation thresholds; with
   * PostgreSQL's default (jit on) its first rows (then through a cursor)
   * took 0.31-0.32 s, 0.04-0.05 s without, the rest of the read the same
   * (docs/benchmarks.md, "Recovery's read without JIT"). A server without
   * the setting has no JIT: its error changes nothing. No parallel
   * workers either: recovery's rows must come stream by stream, and a
   * Gather interleaves its workers' rows (LOAD_PARTS_SQL). And no sorts:
   * every read here wants a stream's records in version order, which the
   * (stream_id, stream_version) index gives; planned on statistics older
   * than a burst of sagas (one stream's rows estimated in the thousands),
   * recovery's join took a bitmap scan and a sort per saga instead, 2.0 s
   * of backend CPU for 100,000 sagas against 1.3 s by the index
   * (docs/benchmarks.md, "Recovery's read streamed"). */
  PQclear(PQexec(s->sync, "SET jit = off"));
  PQclear(PQexec(s->sync, "SET max_parallel_workers_per_gather = 0"));
  PQclear(PQexec(s->sync, "SET enable_sort = off"));
  return 0;
}

int sagad_store_pg_reads_setting(sagad_store_pg_t *s, const char *name,
                                 char *out, size_t len) {
  if (!s || !name || !out || !len || ensure_sync(s, s->err, sizeof s->err))
    return -1;
  const char *p[1] = {name};
  PGresult *r = PQexecParams(s->sync, "SELECT current_setting($1)", 1, NULL,
                             p, NULL, NULL, 0);
  int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
  if (ok)
    snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  return ok ? 0 : -1;
}

static int32_t be32(const char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return (int32_t)ntohl(v);
}

static int64_t be64(const char *p) {
  uint32_t hi, lo;
  memcpy(&hi, p, 4);
  memcpy(&lo, p + 4, 4);
  return (int64_t)(((uint64_t)ntohl(hi) << 32) | ntohl(lo));
}

/* ---- loads ----------------------------------------------------------
 * A load runs on a libuv worker thread (uv_queue_work) on the blocking
 * reads' connection, so the loop keeps serving while it reads; one load at
 * a time (one connection), the others queued in order. A saga's load reads
 * its rows at once. A recovery load streams its query's rows (libpq's
 * single-row mode) and keeps LOAD_CHUNK_ROWS rows per trip to the worker,
 * the query still running between trips: back on the loop, the worker is
 * sent for the
 * next chunk first (into the load's other buffer), then the engine gets the
 * chunk record by record, so reading and replaying overlap and the memory
 * held is two chunks whatever the number of sagas; the loop serves other
 * events between chunks (inputs wait in its queue while a load is pending:
 * engine/load.c). A load pending at close ends with status -1. */

#define LOAD_CHUNK_ROWS 4096

typedef struct pg_row {
  int32_t partition;
  int64_t version;
  size_t off, len; /* of the data in its chunk's buffer */
  char id[SM_ID_MAX + 2];
} pg_row_t;

/* Rows read by one trip to the worker. */
typedef struct pg_chunk {
  pg_row_t *rows;
  size_t nrows, crows;
  uint8_t *data;
  size_t ndata, cdata;
} pg_chunk_t;

typedef struct pg_load {
  uv_work_t work;
  struct pg_load *next;
  sagad_store_pg_t *s;
  const char *sql;
  int nparams;
  char *params[3]; /* owned */
  sagad_load_cb cb;
  sagad_load_done_cb done;
  void *arg;
  int chunked; /* a recovery load: streamed, chunk by chunk */
  /* the worker's (between trips: the loop's) */
  int streaming; /* its query is sent and its rows not all read */
  int eof;       /* the last chunk is read (the query ended) */
  pg_chunk_t chunk[2];
  int fill; /* the chunk the worker fills; the other one is delivered */
  size_t rows_read; /* by the worker, all trips */
  int rc;
  char err[512];
} pg_load_t;

static void load_free(pg_load_t *L) {
  for (int i = 0; i < 3; i++)
    free(L->params[i]);
  for (int i = 0; i < 2; i++) {
    free(L->chunk[i].rows);
    free(L->chunk[i].data);
  }
  free(L);
}

/* Keep one row (worker thread). */
static int keep_row(pg_chunk_t *c, const char *id, size_t idl, int32_t part,
                    int64_t version, const char *data, size_t len) {
  if (SAGA_GROW(c->rows, c->crows, c->nrows + 1, 64) != 0 ||
      SAGA_GROW(c->data, c->cdata, c->ndata + len + 1, 4096) != 0)
    return -1;
  pg_row_t *r = &c->rows[c->nrows++];
  memcpy(r->id, id, idl);
  r->id[idl] = '\0';
  r->partition = part;
  r->version = version;
  r->off = c->ndata;
  r->len = len;
  memcpy(c->data + c->ndata, data, len);
  c->ndata += len;
  return 0;
}

/* Keep row `row` of result r, a (saga_id, partition, version, data) row in
 * binary (worker thread). */
static int keep_result_row(pg_load_t *L, pg_chunk_t *c, const PGresult *r,
                           int row) {
  /* One byte more than an id may have: the engine refuses (and logs) such
   * an id rather than taking a cut one for another saga's. */
  int idl = PQgetlength(r, row, 0);
  if (idl > SM_ID_MAX + 1)
    idl = SM_ID_MAX + 1;
  if (keep_row(c, PQgetvalue(r, row, 0), (size_t)idl,
               be32(PQgetvalue(r, row, 1)), be64(PQgetvalue(r, row, 2)),
               PQgetvalue(r, row, 3), (size_t)PQgetlength(r, row, 3)) == 0) {
    L->rows_read++;
    return 0;
  }
  set_err_in(L->err, sizeof L->err, "could not read the event store",
             "out of memory");
  return -1;
}

/* Run a saga load's query in single-row mode and keep each row (worker
 * thread). */
static int read_rows_once(pg_load_t *L) {
  sagad_store_pg_t *s = L->s;
  pg_chunk_t *c = &L->chunk[L->fill];
  if (ensure_sync(s, L->err, sizeof L->err))
    return -1;
  if (!PQsendQueryParams(s->sync, L->sql, L->nparams, NULL,
                         (const char *const *)L->params, NULL, NULL, 1) ||
      !PQsetSingleRowMode(s->sync)) {
    set_err_in(L->err, sizeof L->err, "could not read the event store",
               PQerrorMessage(s->sync));
    return -1;
  }
  int rc = 0;
  PGresult *r;
  while ((r = PQgetResult(s->sync))) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_SINGLE_TUPLE && rc == 0) {
      rc = keep_result_row(L, c, r, 0);
    } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK) {
      set_err_in(L->err, sizeof L->err, "could not read the event store",
                 PQresultErrorMessage(r));
      rc = -1;
    }
    PQclear(r);
  }
  return rc;
}

/* End a streamed read early (worker thread): ask the server to cancel the
 * query when it still runs (cancel), read what is left and end the read's
 * transaction, so that the connection can take the next query. A lost
 * connection ends the reading at once. */
static void stream_abandon(PGconn *pg, bool cancel) {
  PGcancel *c = cancel ? PQgetCancel(pg) : NULL;
  char ignored[256];
  if (c) {
    PQcancel(c, ignored, (int)sizeof ignored);
    PQfreeCancel(c);
  }
  PGresult *r;
  while ((r = PQgetResult(pg)))
    PQclear(r);
  if (PQstatus(pg) == CONNECTION_OK &&
      PQtransactionStatus(pg) != PQTRANS_IDLE)
    PQclear(PQexec(pg, "ROLLBACK"));
}

/* What a recovery read's transaction sets for itself: LOCAL, so that they
 * hold for the backend that runs the query even behind a pool that hands
 * out a backend per transaction (a session's SET would not). The same as
 * ensure_sync's (see there), and no statement timeout: the read is one
 * statement that lasts as long as the replay of what it reads, which a
 * role's statement_timeout must not cut (the cursor's FETCHes were short
 * statements of their own). */
static const char READ_TX_SQL[] =
    "BEGIN; SET LOCAL jit = off; "
    "SET LOCAL max_parallel_workers_per_gather = 0; "
    "SET LOCAL enable_sort = off; SET LOCAL statement_timeout = 0";

/* Run sql (BEGIN ... or COMMIT) for a recovery read on the reads'
 * connection: 0, or -1 with the error in L->err and the read's
 * transaction ended (worker thread). */
static int read_tx(pg_load_t *L, const char *sql) {
  PGconn *pg = L->s->sync;
  PGresult *r = PQexec(pg, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok)
    set_err_in(L->err, sizeof L->err, "could not read the event store",
               r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
  PQclear(r);
  if (ok)
    return 0;
  stream_abandon(pg, false);
  return -1;
}

/* The next chunk of a recovery load (worker thread): the first trip opens
 * a transaction (READ_TX_SQL) and sends the load's query in single-row
 * mode; every trip keeps its rows until it has LOAD_CHUNK_ROWS or the
 * result has ended (then the transaction is committed and L->eof set).
 * The query runs on between trips, the server waiting on the socket when
 * the rows are not read; nothing else uses the reads' connection meanwhile
 * (one load at a time). A failure abandons the query and its transaction. */
static int read_chunk(pg_load_t *L) {
  sagad_store_pg_t *s = L->s;
  pg_chunk_t *c = &L->chunk[L->fill];
  bool running = true; /* the query may still run (a failure cancels it) */
  if (!L->streaming) {
    if (ensure_sync(s, L->err, sizeof L->err) || read_tx(L, READ_TX_SQL))
      return -1;
    if (!PQsendQueryParams(s->sync, L->sql, L->nparams, NULL,
                           (const char *const *)L->params, NULL, NULL, 1)) {
      set_err_in(L->err, sizeof L->err, "could not read the event store",
                 PQerrorMessage(s->sync));
      stream_abandon(s->sync, false);
      return -1;
    }
    L->streaming = 1;
    if (!PQsetSingleRowMode(s->sync)) {
      set_err_in(L->err, sizeof L->err, "could not read the event store",
                 "single-row mode refused");
      goto fail;
    }
  }
  while (c->nrows < LOAD_CHUNK_ROWS) {
    PGresult *r = PQgetResult(s->sync);
    if (!r) { /* the query's end: its transaction's too */
      L->streaming = 0;
      if (read_tx(L, "COMMIT"))
        return -1;
      L->eof = 1;
      return 0;
    }
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st == PGRES_SINGLE_TUPLE)
      rc = keep_result_row(L, c, r, 0);
    else if (st != PGRES_TUPLES_OK) { /* TUPLES_OK: the rows' end */
      set_err_in(L->err, sizeof L->err, "could not read the event store",
                 PQresultErrorMessage(r));
      rc = -1;
      running = false; /* the server ended it */
    }
    PQclear(r);
    if (rc != 0)
      goto fail;
  }
  return 0;
fail:
  L->streaming = 0;
  stream_abandon(s->sync, running);
  return -1;
}

/* A trip to the worker: a saga load's rows, or a recovery load's next
 * chunk. Either is tried again (on a new session when the first one was
 * lost) while it fails before any row of the load was read -- a terminated
 * session, a restarted server, a statement timeout: found by
 * tests/faults/test_pg_faults -- up to 5 times with a short backoff (3 s in
 * all, on the worker thread); a read that failed half way is not repeated
 * (its first rows were kept, or handed over, already). */
static void load_work(uv_work_t *w) {
  pg_load_t *L = w->data;
  long wait_ms = 100;
  for (int tries = 0;; tries++) {
    L->rc = L->chunked ? read_chunk(L) : read_rows_once(L);
    if (L->rc == 0 || L->rows_read > 0 || tries == 5)
      return;
    struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    wait_ms *= 2;
  }
}

static void load_next(sagad_store_pg_t *s);
static void close_step(sagad_store_pg_t *s);

/* Back on the loop: the worker sent for the next chunk, if any, then the
 * rows to the engine, then (after the last chunk) the load's end. The
 * load stays s->load_running until it has ended, so that a close meanwhile
 * waits for it. */
static void load_after(uv_work_t *w, int status) {
  pg_load_t *L = w->data;
  sagad_store_pg_t *s = L->s;
  if (status != 0 || s->closing) {
    L->done(L->arg, -1);
  } else {
    pg_chunk_t *c = &L->chunk[L->fill];
    int more = L->chunked && L->rc == 0 && !L->eof;
    if (more) {
      L->fill ^= 1;
      L->chunk[L->fill].nrows = L->chunk[L->fill].ndata = 0;
      if (uv_queue_work(s->loop, &L->work, load_work, load_after) != 0) {
        more = 0;
        L->rc = -1;
        set_err_in(L->err, sizeof L->err, "could not read the event store",
                   "no worker thread");
      }
    }
    for (size_t i = 0; i < c->nrows; i++) {
      const pg_row_t *r = &c->rows[i];
      L->cb(L->arg, r->id, r->partition, r->version, c->data + r->off,
            r->len);
    }
    c->nrows = c->ndata = 0;
    if (more)
      return; /* load_after again with the next chunk */
    if (L->rc != 0)
      snprintf(s->err, sizeof s->err, "%s", L->err);
    L->done(L->arg, L->rc);
  }
  s->load_running = NULL;
  load_free(L);
  if (s->closing)
    close_step(s);
  else
    load_next(s);
}

/* Start the next queued load unless one runs (on the loop, in a load's
 * completion: a load that cannot start ends at once, with -1). */
static void load_next(sagad_store_pg_t *s) {
  while (!s->load_running && s->load_head) {
    pg_load_t *L = s->load_head;
    s->load_head = L->next;
    if (!s->load_head)
      s->load_tail = NULL;
    L->work.data = L;
    if (uv_queue_work(s->loop, &L->work, load_work, load_after) == 0) {
      s->load_running = L;
      return;
    }
    set_err(s, "could not read the event store", "no worker thread");
    L->done(L->arg, -1);
    load_free(L);
  }
}

/* Run L now, or after the loads before it. 0, or -1 (L freed, none of its
 * callbacks called: never from inside the port's function). */
static int load_queue(sagad_store_pg_t *s, pg_load_t *L) {
  L->s = s;
  L->work.data = L;
  bool now = !s->load_running && !s->load_head;
  if (s->closing ||
      (now && uv_queue_work(s->loop, &L->work, load_work, load_after) != 0)) {
    set_err(s, "could not read the event store",
            s->closing ? "the store is closing" : "no worker thread");
    load_free(L);
    return -1;
  }
  if (now) {
    s->load_running = L;
    return 0;
  }
  if (s->load_tail)
    s->load_tail->next = L;
  else
    s->load_head = L;
  s->load_tail = L;
  return 0;
}

static int p_load_partitions(void *self, const int32_t *parts, size_t n,
                             sagad_load_cb cb, sagad_load_done_cb done,
                             void *arg) {
  sagad_store_pg_t *s = self;
  pg_load_t *L = calloc(1, sizeof *L);
  size_t cap = 2 + n * 12;
  char *arr = L ? malloc(cap) : NULL;
  if (!arr) {
    free(L);
    set_err(s, "could not read the event store", "out of memory");
    return -1;
  }
  size_t k = (size_t)snprintf(arr, cap, "{");
  for (size_t i = 0; i < n; i++)
    k += (size_t)snprintf(arr + k, cap - k, "%s%d", i ? "," : "",
                          (int)parts[i]);
  snprintf(arr + k, cap - k, "}");
  L->sql = LOAD_PARTS_SQL;
  L->chunked = 1;
  L->nparams = 1;
  L->params[0] = arr;
  L->cb = cb;
  L->done = done;
  L->arg = arg;
  return load_queue(s, L);
}

static int p_load_saga(void *self, const char *saga_id, int32_t partition,
                       sagad_load_cb cb, sagad_load_done_cb done, void *arg) {
  sagad_store_pg_t *s = self;
  pg_load_t *L = calloc(1, sizeof *L);
  char part[16];
  snprintf(part, sizeof part, "%d", (int)partition);
  if (L) {
    L->params[0] = strdup(saga_id);
    L->params[1] = strdup(saga_id);
    L->params[2] = strdup(part);
  }
  if (!L || !L->params[0] || !L->params[1] || !L->params[2]) {
    if (L)
      load_free(L);
    set_err(s, "could not read the event store", "out of memory");
    return -1;
  }
  L->sql = LOAD_ONE_SQL;
  L->nparams = 3;
  L->cb = cb;
  L->done = done;
  L->arg = arg;
  return load_queue(s, L);
}

static const char *p_last_error(void *self) {
  return ((sagad_store_pg_t *)self)->err;
}

/* ---- open / close -------------------------------------------------- */

/* Advisory lock key of the coordinator's migrations (the event store's
 * are under a key of their own). */
#define SAGAD_MIGRATE_LOCK "7253001"

/* What a refusal for want of rights adds to its message. */
static const char *const no_rights_hint =
    " (this role may not create or change these tables: run `sagad "
    "--migrate` once as a role that may -- the tables' owner on a database "
    "an older sagad made --, then start sagad: docs/deploy.md)";

/* Whether the event store's migration text (es_migrate gives no SQLSTATE)
 * is a refusal to create or alter, not one to connect. */
static int es_refused_ddl(const char *esb) {
  return strstr(esb, "permission denied for schema") != NULL ||
         strstr(esb, "must be owner of") != NULL;
}

/* The version sagad_schema_version records on c, or -1 when the table is
 * not there or cannot be read. */
static int sagad_recorded_version(PGconn *c) {
  PGresult *r = PQexec(c, "SELECT to_regclass('sagad_schema_version') IS "
                          "NOT NULL");
  int there = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  if (!there)
    return -1;
  r = PQexec(c, "SELECT coalesce(max(version), 0) FROM sagad_schema_version");
  int v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
              ? atoi(PQgetvalue(r, 0, 0))
              : -1;
  PQclear(r);
  return v;
}

/* Runs sql on c; 0, or -1 with errbuf "what: the server's message", or
 * -2 when the refusal is for want of rights (the hint added). */
static int migrate_exec(PGconn *c, const char *sql, const char *what,
                        char *errbuf, size_t errlen) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    PQclear(r);
    return 0;
  }
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  char msg[512];
  snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
  msg[strcspn(msg, "\n")] = '\0';
  int rights = state && !strcmp(state, "42501");
  snprintf(errbuf, errlen, "%s: %s%s", what, msg, rights ? no_rights_hint : "");
  PQclear(r);
  return rights ? -2 : -1;
}

/* The coordinator's own tables on c, under the lock: each migration newer
 * than sagad_schema_version's record, in its own transaction with its
 * record. */
static int sagad_migrate_locked(PGconn *c, int *version, char *errbuf,
                                size_t errlen) {
  /* another run may have brought them up to date while this one waited
   * for the lock: nothing to create then (a role that may not create
   * tables is refused even CREATE TABLE IF NOT EXISTS) */
  int have = sagad_recorded_version(c);
  if (have >= (int)sagad__n_sql_migrations) {
    *version = have;
    return 0;
  }
  const char *what = "could not create the coordinator's tables";
  /* es_writer, which the event store's migrations made, reads it at
   * every start */
  int rc = migrate_exec(c,
                        "CREATE TABLE IF NOT EXISTS sagad_schema_version ("
                        " version int PRIMARY KEY, name text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now());"
                        " GRANT SELECT ON sagad_schema_version TO es_writer",
                        what, errbuf, errlen);
  if (rc)
    return rc;
  have = sagad_recorded_version(c);
  if (have < 0) {
    snprintf(errbuf, errlen, "could not read sagad_schema_version: %s",
             PQerrorMessage(c));
    return -1;
  }
  *version = have;
  for (size_t i = 0; i < sagad__n_sql_migrations; i++) {
    int v = atoi(sagad__sql_migration_names[i]);
    if (v <= have)
      continue;
    char rec[200], step[160];
    snprintf(step, sizeof step, "migration %s of the coordinator's tables",
             sagad__sql_migration_names[i]);
    snprintf(rec, sizeof rec,
             "INSERT INTO sagad_schema_version (version, name) VALUES (%d, "
             "'%s')",
             v, sagad__sql_migration_names[i]);
    if ((rc = migrate_exec(c, "BEGIN", step, errbuf, errlen)))
      return rc;
    if ((rc = migrate_exec(c, sagad__sql_migrations[i], step, errbuf,
                           errlen)) ||
        (rc = migrate_exec(c, rec, step, errbuf, errlen)) ||
        (rc = migrate_exec(c, "COMMIT", step, errbuf, errlen))) {
      PQclear(PQexec(c, "ROLLBACK"));
      return rc;
    }
    *version = have = v;
  }
  return 0;
}

int sagad_store_pg_migrate(const char *conninfo, int *es_version,
                           int *version, char *errbuf, size_t errlen) {
  int esv = 0, v = 0, rc = -1;
  char esb[ES_ERRBUF_SIZE] = "";
  if (es_migrate(conninfo, &esv, esb, sizeof esb)) {
    int rights = es_refused_ddl(esb);
    esb[strcspn(esb, "\n")] = '\0'; /* the server's LINE 1: and caret */
    snprintf(errbuf, errlen, "could not prepare the event store: %s%s", esb,
             rights ? no_rights_hint : "");
    rc = rights ? -2 : -1;
    goto out;
  }
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    set_err_in(errbuf, errlen, "could not connect to the event store",
               PQerrorMessage(c));
    PQfinish(c);
    goto out;
  }
  /* Up to date (or newer, from a later sagad: its migrations only add):
   * nothing to lock or create, so a role without the right to create
   * tables starts sagad. */
  if ((v = sagad_recorded_version(c)) >= (int)sagad__n_sql_migrations) {
    rc = 0;
  } else {
    v = v < 0 ? 0 : v;
    /* "already exists, skipping" from the files' IF NOT EXISTS is no
     * news: only warnings */
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    if (!(rc = migrate_exec(c,
                            "SELECT pg_advisory_lock(" SAGAD_MIGRATE_LOCK ")",
                            "could not take the migration lock", errbuf,
                            errlen))) {
      rc = sagad_migrate_locked(c, &v, errbuf, errlen);
      PQclear(PQexec(c, "SELECT pg_advisory_unlock(" SAGAD_MIGRATE_LOCK ")"));
    }
  }
  PQfinish(c);
out:
  if (es_version)
    *es_version = esv;
  if (version)
    *version = v;
  return rc;
}

/* The database holds one deployment's sagas: claim it for (inbox, group),
 * or refuse when another deployment did. */
static int claim(sagad_store_pg_t *s, const char *inbox, const char *group,
                 char *errbuf, size_t errlen) {
  const char *p[2] = {inbox ? inbox : "", group ? group : ""};
  PGresult *r = PQexecParams(
      s->sync,
      "INSERT INTO sagad_deployment (inbox_topic, group_id) VALUES ($1, $2) "
      "ON CONFLICT (one) DO NOTHING",
      2, NULL, p, NULL, NULL, 0);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok)
    snprintf(errbuf, errlen, "could not claim the event store: %s",
             PQresultErrorMessage(r));
  PQclear(r);
  if (!ok)
    return -1;
  r = PQexec(s->sync, "SELECT inbox_topic, group_id FROM sagad_deployment");
  ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
  if (!ok) {
    snprintf(errbuf, errlen, "could not read sagad_deployment: %s",
             PQresultErrorMessage(r));
  } else if (strcmp(PQgetvalue(r, 0, 0), p[0]) != 0 ||
             strcmp(PQgetvalue(r, 0, 1), p[1]) != 0) {
    snprintf(errbuf, errlen,
             "store.conninfo: this database holds the sagas of another "
             "deployment (topic.inbox \"%.100s\", group.id \"%.100s\"; "
             "this one: \"%.100s\", \"%.100s\"): two deployments on one "
             "database would take each other's sagas. Give each deployment "
             "its own database; if this deployment was renamed, run "
             "\"DELETE FROM sagad_deployment\" with every sagad stopped",
             PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), p[0], p[1]);
    PQclear(r);
    return -2; /* for good: waiting will not change it */
  }
  PQclear(r);
  return ok ? 0 : -1;
}

/* Record one definition, or compare it with the body recorded under its
 * name and version. 0 recorded or the same, 1 another body (why in
 * errbuf), -1 the database failed. */
static int record_def(sagad_store_pg_t *s, const saga_def_t *d, const char *dir,
                      char *errbuf, size_t errlen) {
  char version[16];
  snprintf(version, sizeof version, "%" PRIu32, d->version);
  const char *p[5] = {d->name, version, d->body, d->sha256, d->source};
  /* Insert, then read back what is recorded in a statement of its own: its
   * snapshot sees a row another sagad committed while we inserted. */
  PGresult *r = PQexecParams(
      s->sync,
      "INSERT INTO saga_definitions (name, version, body, sha256, source) "
      "VALUES ($1, $2::int, $3, $4, $5) ON CONFLICT (name, version) "
      "DO NOTHING",
      5, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) == PGRES_COMMAND_OK) {
    PQclear(r);
    r = PQexecParams(s->sync,
                     "SELECT sha256, source, to_char(recorded_at AT TIME "
                     "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM "
                     "saga_definitions WHERE name = $1 AND version = $2::int",
                     2, NULL, p, NULL, NULL, 0);
  }
  int rc = 0;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    snprintf(errbuf, errlen,
             "could not record definition \"%s\" version %" PRIu32
             " in saga_definitions: %s",
             d->name, d->version, PQresultErrorMessage(r));
    rc = -1;
  } else if (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), d->sha256)) {
    snprintf(errbuf, errlen,
             "definitions.dir: %s/%s: definition \"%s\" version %" PRIu32
             " is already recorded in the store with another body "
             "(recorded sha256 %s, from %s at %s; this file's sha256 %s): "
             "a version names one body for good, so that the sagas which "
             "ran on it replay the same way. Give the changed definition a "
             "new \"version\" (sagas keep the version they started with)",
             dir, d->source, d->name, d->version, PQgetvalue(r, 0, 0),
             PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), d->sha256);
    rc = 1;
  }
  PQclear(r);
  return rc;
}

int sagad_store_pg_record_definitions(sagad_store_pg_t *s,
                                      const saga_registry_t *reg,
                                      const char *dir, char *errbuf,
                                      size_t errlen) {
  if (ensure_sync(s, s->err, sizeof s->err)) {
    snprintf(errbuf, errlen, "%s", s->err);
    return -1;
  }
  int rc = 0;
  size_t changed = 0;
  const saga_def_t *d;
  for (size_t i = 0; (d = saga_registry_at(reg, i)) != NULL; i++) {
    char why[1024];
    int one = record_def(s, d, dir, why, sizeof why);
    if (one < 0) {
      snprintf(errbuf, errlen, "%s", why);
      return -1;
    }
    if (one > 0 && changed++ == 0) {
      snprintf(errbuf, errlen, "%s", why);
      rc = -2;
    }
  }
  if (changed > 1) {
    size_t n = strlen(errbuf);
    snprintf(errbuf + n, errlen - n, " (and %zu more changed definitions)",
             changed - 1);
  }
  return rc;
}

static void free_store(sagad_store_pg_t *s) {
  for (int l = 0; l < LANES; l++) {
    es_batch_free(s->lanes[l].batch);
    for (int c = 0; c < IDX_NCOLS; c++)
      free(s->lanes[l].idx[c].p);
    free(s->lanes[l].marks.p);
    free(s->lanes[l].one.p);
  }
  if (s->sync)
    PQfinish(s->sync);
  free(s->map);
  free(s->conninfo);
  free(s);
}

/* One more part (a lane, the running load) has closed; the last one
 * frees the store. */
static void close_step(sagad_store_pg_t *s) {
  if (--s->closing_n > 0)
    return;
  void (*cb)(void *) = s->close_cb;
  void *cb_arg = s->close_arg;
  free_store(s);
  if (cb)
    cb(cb_arg);
}

static void on_closed(es_async_t *as, void *arg) {
  (void)as;
  close_step(arg);
}

int sagad_store_pg_open(uv_loop_t *loop, const char *conninfo,
                        const char *inbox, const char *group,
                        sagad_store_pg_t **out, sagad_store_port_t *port,
                        char *errbuf, size_t errlen) {
  int rc = -1;
  sagad_store_pg_t *s = calloc(1, sizeof *s);
  if (s)
    s->loop = loop;
  if (!s || !(s->conninfo = strdup(conninfo ? conninfo : ""))) {
    snprintf(errbuf, errlen, "out of memory opening the event store");
    goto fail;
  }
  for (int l = 0; l < LANES; l++) {
    s->lanes[l].s = s;
    if (!(s->lanes[l].batch = es_batch_new(NULL))) {
      snprintf(errbuf, errlen, "out of memory opening the event store");
      goto fail;
    }
  }
  /* A role that may not make the missing tables fails as an unreachable
   * store does: with start.wait_for_dependencies_ms the start waits, as
   * a migration job may be under way. */
  if (sagad_store_pg_migrate(s->conninfo, NULL, NULL, errbuf, errlen) ||
      ensure_sync(s, errbuf, errlen))
    goto fail;
  if ((rc = claim(s, inbox, group, errbuf, errlen)) != 0)
    goto fail;
  char esb[ES_ERRBUF_SIZE] = "";
  for (int l = 0; l < LANES; l++)
    if (es_async_open(loop, s->conninfo, NULL, &s->lanes[l].as, esb,
                      sizeof esb)) {
      snprintf(errbuf, errlen, "could not open the event store: %s", esb);
      goto fail;
    }
  *port = (sagad_store_port_t){
      .self = s,
      .batch_reset = p_batch_reset,
      .batch_add = p_batch_add,
      .batch_index = p_batch_index,
      .batch_notified = p_batch_notified,
      .batch_submit = p_batch_submit,
      .batch_status = p_batch_status,
      .load_partitions = p_load_partitions,
      .load_saga = p_load_saga,
      .last_error = p_last_error,
  };
  *out = s;
  return 0;
fail:
  if (s) {
    int opened = 0;
    for (int l = 0; l < LANES; l++)
      opened += s->lanes[l].as != NULL;
    if (opened) { /* freed once the open lanes have closed */
      s->closing = 1;
      s->closing_n = opened;
      for (int l = 0; l < LANES; l++)
        if (s->lanes[l].as)
          es_async_close(s->lanes[l].as, on_closed, s);
      return rc;
    }
    free_store(s);
  }
  return rc;
}

void sagad_store_pg_attach(sagad_store_pg_t *s, sagad_engine_t *e) {
  s->engine = e;
}

void sagad_store_pg_close(sagad_store_pg_t *s, void (*cb)(void *), void *arg) {
  if (!s) {
    if (cb)
      cb(arg);
    return;
  }
  s->closing = 1;
  s->close_cb = cb;
  s->close_arg = arg;
  s->closing_n = LANES + (s->load_running != NULL);
  /* Queued loads end now; the running one when its worker returns. */
  for (pg_load_t *L = s->load_head, *n; L; L = n) {
    n = L->next;
    L->done(L->arg, -1);
    load_free(L);
  }
  s->load_head = s->load_tail = NULL;
  if (s->load_running)
    uv_cancel((uv_req_t *)&s->load_running->work);
  for (int l = 0; l < LANES; l++)
    es_async_close(s->lanes[l].as, on_closed, s);
}
