/* Internals shared by the event store's files: the growable buffer, input
 * validation and binary encoding, batches, and the pipelined operations
 * that both faces (blocking and libuv) send and consume. Not installed. */
#ifndef SAGA_ES_INTERNAL_H
#define SAGA_ES_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "saga/eventstore.h"

/* ---- migrations (es_migrations.c is generated) ---- */
typedef struct {
  int version;
  const char *name;
  const char *sql;
} es__migration_t;
extern const es__migration_t es__migrations[];
extern const size_t es__n_migrations;
/* es_migrate_to on a connection of the caller's (connected; left open,
 * the migration lock released): for a store that connects with
 * conn_defaults. target is checked by the caller. */
int es__migrate_on(PGconn *c, int target, int *version, char *errbuf,
                   size_t errlen);

/* ---- growable byte buffer with a ceiling ---- */
typedef struct {
  char *p;
  size_t len, cap;
} es__buf_t;

int es__buf_put(es__buf_t *b, const void *src, size_t n);
int es__buf_be32(es__buf_t *b, int32_t v);
int es__buf_be64(es__buf_t *b, int64_t v);
void es__buf_free(es__buf_t *b);
int64_t es__get_be64(const char *p);
int32_t es__get_be32(const char *p);

/* ---- archive files: the writer (es_archive.c; saga-es-archive) ---- */
typedef struct es__arw es__arw_t;
/* Create path (truncated if it exists) and write the header of hdr (era,
 * table, created_at, first and last position). */
int es__archive_create(const char *path, const es_archive_info_t *hdr,
                       es__arw_t **out, char *msg, size_t msglen);
/* Write one event (in the gap-safe order: the reader checks it). */
int es__archive_put(es__arw_t *w, const es_recorded_t *ev, char *msg,
                    size_t msglen);
/* Write the manifest, close and fsync the file, free w (in every case);
 * *info (optional) receives what the file says about itself. */
int es__archive_finish(es__arw_t *w, int64_t streams, es_archive_info_t *info,
                       char *msg, size_t msglen);
/* Close and free w without a manifest (NULL accepted). */
void es__archive_abort(es__arw_t *w);

/* ---- validation ---- */
/* The largest value PostgreSQL takes in one field (MaxAllocSize): event
 * and snapshot data above it are TOO_LARGE whatever max_payload says. */
#define ES__MAX_VALUE ((size_t)0x3fffffff)
int es__utf8_valid(const char *s, size_t n);
/* Check a required/optional text value; sets msg on failure. */
int es__check_text(const char *what, const char *s, int required,
                   size_t max, char *msg, size_t msglen);
int es__check_event(const es_event_t *ev, size_t max_payload, char *msg,
                    size_t msglen);
void es__set_msg(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A conninfo libpq can parse: 0, or INVALID with why in msg (libpq's
 * words, withheld when the text may hold a password). A malformed one
 * was CONNECTION, which es_err_is_retriable calls retriable: a caller
 * retried it for ever. */
int es__conninfo_check(const char *conninfo, char *msg, size_t msglen);

/* ---- batches ---- */
#define ES__APPEND_NPARAMS 9

typedef struct {
  int64_t expected;
  size_t n_events;
  size_t ids_off; /* offset of n_events * 16 id bytes in the batch's ids */
  int one;        /* scalar parameters for es_append_one (lens -1: NULL) */
  /* Every id of the stream was drawn by the library when it was added
   * (the caller gave none) and has not been sent yet: no stored event can
   * carry it, so the multi-stream statement skips the stored-id probe.
   * Cleared when the stream is encoded for sending, so executing the batch
   * again (after a lost connection, say) probes and answers DUPLICATE. */
  int fresh_ids;
  es__buf_t params;
  int offs[ES__APPEND_NPARAMS];
  int lens[ES__APPEND_NPARAMS];
} es__stream_t;

typedef struct {
  char *sql;
  int nparams;
  char **params;
  /* es_batch_add_member_ack's: its refusal (SQLSTATE ES001, which the
   * append-only triggers raise too) answers ES_ERR_NOT_OWNER */
  int member_ack;
  /* es_batch_add_statement_replanned's: sent unprepared, so that
   * PostgreSQL plans it for its parameters at every run */
  int replanned;
} es__stmt_t;

struct es_batch {
  size_t max_payload;
  es__stream_t *streams;
  size_t n_streams, cap_streams;
  es_append_result_t *results;
  es__stmt_t *stmts;
  size_t n_stmts, cap_stmts;
  es__buf_t ids;
  /* The plan of es__batch_plan: streams in round order (order), where each
   * round starts (round_start, n_rounds + 1 entries), the occurrence of
   * each stream's id in the batch (rank); and the encoded parameters of
   * the round being sent (multi). */
  size_t *order, *rank, *round_start;
  size_t n_rounds, cap_plan;
  es__buf_t multi;
  char msg[ES_ERRBUF_SIZE];
};

/* Parameters of the multi-stream statement: per stream (stream id text[],
 * expected int8[]), per event (stream number int8[], ordinal in its stream
 * int8[], then the seven arrays of ES__APPEND_NPARAMS, then its stream's id
 * text[]), then per stream whether its ids are probed (bool[]: not for
 * fresh_ids). */
#define ES__MULTI_NPARAMS 13
/* A round's parameters above this many bytes: per-stream statements. */
#define ES__MULTI_MAX_BYTES ((size_t)256 << 20)

/* Split the batch's streams into rounds: round k holds the k-th appends
 * to each stream id, in batch order, so a round names a stream once and a
 * later round sees the earlier rounds' rows. Usually one round. 0 or
 * NOMEM. */
int es__batch_plan(es_batch_t *b);
/* Encode round k of the plan into b->multi; values and lens (of
 * ES__MULTI_NPARAMS) point into it until the next call. 0, NOMEM, or
 * TOO_LARGE when it would exceed ES__MULTI_MAX_BYTES. */
int es__batch_encode_round(es_batch_t *b, size_t k, const char **values,
                           int *lens);

/* Add one event with an exact expected version (>= 0) as the scalar
 * parameters of the single-event statement; same checks and answers as
 * es_batch_add. Only for a batch sent alone (es_append): in a group commit
 * the array statement keeps a racing writer's error aborting the batch. */
int es__batch_add_one(es_batch_t *b, const char *stream_id, int64_t expected,
                      es_event_t *ev);

/* ---- pipelined operations ---- */
typedef enum {
  ES__OP_BATCH,      /* appends, statements, NOTIFY: one implicit transaction */
  ES__OP_APPEND,     /* one append in the pipeline's implicit transaction */
  ES__OP_READ_STREAM,
  ES__OP_READ_ALL,
  ES__OP_SNAP_SAVE,
  ES__OP_SNAP_LOAD,
  ES__OP_ROLL, /* es_roll_forward(): min events in from_version, lock wait
                  in max; the era comes back in from_version */
  ES__OP_READ_GROUP, /* a consumer group member's page: group name in
                        stream_id, member and members */
  ES__OP_CKPT_LOAD,  /* a named checkpoint (stream_id) into from */
  ES__OP_READ_MEMBER, /* a group member's page after its hand-over: group
                         in stream_id, member id in from_version */
  ES__OP_MEMBER, /* join (member 0), renew (1) or leave (2) group
                    stream_id as member from_version, lease ms in max; the
                    buckets it owns come back in from.tx */
} es__op_kind_t;

typedef enum {
  ES__R_PREPARE,
  ES__R_LISTEN,
  ES__R_BEGIN,
  ES__R_APPEND,
  ES__R_ONE,   /* the single-event statement: a position or no row */
  ES__R_MULTI, /* one round of a batch's streams in one statement */
  ES__R_STMT,
  ES__R_XPREP, /* preparing a batch's statement for this connection */
  ES__R_NOTIFY,
  ES__R_COMMIT,
  ES__R_READ,
  ES__R_SNAP,
  ES__R_ROLL,
  ES__R_CKPT,
  ES__R_HANDOFF, /* es_group_handoff() before a member's read */
  ES__R_GENERIC, /* set_config() of the generic plan before a group read */
  ES__R_READ_LONE, /* a member's page by the lone reader's statement */
  ES__R_MEMBER,  /* es_group_join() / es_group_leave(): an int8 */
} es__rkind_t;

typedef struct {
  es__rkind_t kind;
  size_t index;
} es__expect_t;

/* The batch statements (es_batch_add_statement) a connection has
 * prepared, by text and parameter count: each is parsed and planned once per connection, not
 * once per batch. Cleared with the connection's other statements; past
 * ES__XCACHE_MAX texts the others go unprepared. */
#define ES__XCACHE_MAX 8
typedef struct {
  char *sql[ES__XCACHE_MAX];
  char name[ES__XCACHE_MAX][24];
  int nparams[ES__XCACHE_MAX];
  size_t n;
  unsigned serial; /* names are never reused on a connection */
} es__xcache_t;

/* Forget every entry (the statements are gone or about to be). */
void es__xcache_clear(es__xcache_t *xc);

/* The stream heads a connection wrote (es_heads.c): per stream, the
 * version its last single append on this connection wrote and the era
 * that row went into. A committed fact about the store, kept as a hint: a
 * single append whose expected version is the one remembered, into the
 * same era, needs no version probe, because every later version of the
 * stream would be in that era's partition, where its unique key refuses
 * a second row of the version (docs/internals/eventstore.md, "A single
 * append that skips the version probe"). ES__HEADS streams at most, a
 * new one taking the least recently used slot of its set; forgotten when
 * the connection is made again. */
#define ES__HEADS 512
#define ES__HEADS_WAYS 8 /* the slots a stream may take (one set) */
typedef struct {
  char *stream; /* its bytes (not NUL-terminated), or NULL: an empty slot */
  size_t len;
  int64_t version;
  int32_t era;
  uint64_t used; /* the tick of its last use, for eviction */
} es__head_t;
typedef struct {
  es__head_t slot[ES__HEADS];
  uint64_t tick;
} es__heads_t;

/* The era of the row that wrote version `version` of the stream, when it
 * is the version remembered for it; -1 otherwise (h NULL too). */
int32_t es__heads_era(es__heads_t *h, const char *stream, size_t len,
                      int64_t version);
/* Remember that version `version` (>= 1) of the stream went into era
 * `era` (>= 0), committed. Out of memory, the stream is not remembered. */
void es__heads_put(es__heads_t *h, const char *stream, size_t len,
                   int64_t version, int32_t era);
/* Forget the stream (an append to it failed or was refused). */
void es__heads_forget(es__heads_t *h, const char *stream, size_t len);
/* Forget every stream (h NULL: nothing). */
void es__heads_clear(es__heads_t *h);

typedef struct es__op {
  es__op_kind_t kind;
  int notify;
  es_batch_t *batch;
  /* read parameters */
  char *stream_id;
  int64_t from_version;
  es_pos_t from;
  char *category;
  char *type;
  size_t max;
  int member, members; /* consumer group reads */
  /* snapshot */
  es__buf_t snap;
  /* result tracking */
  es__expect_t *expect;
  size_t n_expect, next;
  int status;
  int aborted_by; /* stream index that raised an error, or -1 */
  int prep_failed; /* a preparation (or LISTEN) did not succeed */
  int xprep_failed; /* a batch statement's preparation did not succeed:
                       the face must prepare everything again */
  es__xcache_t *xc; /* the connection's prepared batch statements, set by
                       the face before es__op_send (NULL: none) */
  es__heads_t *heads; /* the connection's stream heads, set by the face
                         (NULL: single appends always probe the version) */
  int head_used;   /* the single append was sent without a version probe */
  int head_missed; /* ... and its era had ended or gone: send it again,
                      probed */
  int32_t head_era; /* the era the single append's row went into, or -1 */
  int multi_failed; /* a multi-stream statement raised an error */
  int recheck;      /* the single-event statement wrote nothing */
  int classify;     /* sending the classification round (per-stream
                       statements for a batch, es_append_check for a
                       single append) */
  int syncs;        /* syncs still to come before the op is complete */
  int member_full;  /* a member's read: in, send the full statement (not
                       the lone reader's); out, whether the next read of
                       this connection should (the face keeps it) */
  int member_retry; /* the lone reader's statement did not apply: send
                       the full one in a second round trip */
  int own;          /* a batch of the store's own statements (a checkpoint
                       saved, a stream closed): a failure answers its own
                       code, not BATCH_ABORTED, which is the answer of a
                       caller's batch only */
  char msg[ES_ERRBUF_SIZE];
  es_page_t *page;
  es_snapshot_t *snapshot;
  /* async face */
  es_batch_cb batch_cb;
  es_read_cb read_cb;
  es_member_cb member_cb;
  void *arg;
  struct es__op *qnext;
} es__op_t;

/* Send op's queries and a sync on c (pipeline mode must be on). prepare
 * adds the statement preparations first; listen a LISTEN. Returns 0 or
 * CONNECTION with op->msg set. */
int es__op_send(PGconn *c, es__op_t *op, int prepare, int listen);
/* Consume one non-NULL result of op (takes ownership of r). Returns 1 when
 * the op is complete (the sync arrived), 0 otherwise, or ES__OP_AGAIN when
 * the face must call es__op_send again (prepare and listen 0) for a second
 * round trip and keep reading: a batch whose multi-stream statement
 * raised an error is classified by the per-stream statements, and a single
 * append that wrote nothing by es_append_check. */
#define ES__OP_AGAIN 2
int es__op_result(es__op_t *op, PGresult *r);
/* Set op as failed with status (all batch streams too). */
void es__op_fail(es__op_t *op, int status, const char *msg);
void es__op_free(es__op_t *op);
/* Fill a freshly zeroed op for each kind; 0 or an error code. */
int es__op_read_stream(es__op_t *op, const char *stream_id, int64_t from,
                       size_t max);
int es__op_read_all(es__op_t *op, es_pos_t from, const es_filter_t *filter,
                    size_t max);
int es__op_read_group(es__op_t *op, const char *group, const char *category,
                      int member, int members, size_t max);
/* A member's page (ES__OP_READ_MEMBER) or join / renew / leave
 * (ES__OP_MEMBER, which 0, 1, 2). */
int es__op_read_member(es__op_t *op, const char *group, const char *category,
                       int64_t member_id, size_t max);
int es__op_member(es__op_t *op, int which, const char *group,
                  int64_t member_id, unsigned lease_ms);
/* A new consumer group member id: random, positive; -1 when no
 * randomness could be read. */
int64_t es__member_id(void);
/* Check a category a read names: text as es__check_text takes it (1 to
 * ES_MAX_STREAM_ID bytes), and no '-', since a stream's category is the
 * part of its id before the first '-' and a name holding one would match
 * nothing. 0 or INVALID / TOO_LARGE / BAD_UTF8 with msg set. */
int es__check_category(const char *category, char *msg, size_t msglen);
/* Check a subscription or group name; sets msg on failure. */
int es__check_sub_name(const char *what, const char *name, char *msg,
                       size_t msglen);

/* Statements that advance checkpoints (text parameters: name, tx, pos for
 * a subscription; name, member, members, tx, pos for a group). */
#define ES__CKPT_UPSERT                                                       \
  " ON CONFLICT (name, bucket) DO UPDATE SET tx_id = EXCLUDED.tx_id,"         \
  " global_position = EXCLUDED.global_position, updated_at = now()"           \
  " WHERE (s.tx_id, s.global_position)"                                       \
  " < (EXCLUDED.tx_id, EXCLUDED.global_position)"
#define ES__CKPT_SAVE_SQL                                                     \
  "INSERT INTO es_subscriptions AS s (name, bucket, tx_id, global_position)"  \
  " VALUES ($1, -1, $2::xid8, $3::int8)" ES__CKPT_UPSERT
#define ES__CKPT_RESET_SQL "DELETE FROM es_subscriptions WHERE name = $1"
#define ES__GROUP_ACK_SQL                                                     \
  "INSERT INTO es_subscriptions AS s (name, bucket, tx_id, global_position)"  \
  " SELECT $1, b, $4::xid8, $5::int8 FROM generate_series(0, 63) AS b"        \
  " WHERE b * $3::int / 64 = $2::int" ES__CKPT_UPSERT
/* Map a failed result or lost connection to a code. */
int es__map_error(PGconn *c, const PGresult *r);
/* Drop the server's notices and warnings on c (NULL accepted): libpq's
 * default prints them to stderr, and the library never logs. */
void es__quiet(PGconn *c);

#define ES__CHANNEL "es_events"
/* Advisory lock held shared by every subscription session from before its
 * LISTEN until it ends. A writer that can take it exclusively for its
 * transaction (pg_try_advisory_xact_lock) knows that no subscription
 * listens and skips its NOTIFY, whose commit-time work was the whole gap
 * between a single append and a bare INSERT. A subscription that starts
 * meanwhile waits for that writer's commit before its LISTEN and its
 * catch-up read, so it reads the event; a writer that cannot take the lock
 * (a subscription holds it or waits for it, or another writer has it)
 * notifies as before. */
#define ES__LISTENER_LOCK "7310868361213555"
#define ES__NOTIFY_UNLESS_ALONE                                               \
  "pg_notify('" ES__CHANNEL "', '') WHERE NOT pg_try_advisory_xact_lock("    \
  ES__LISTENER_LOCK ")"

#endif
