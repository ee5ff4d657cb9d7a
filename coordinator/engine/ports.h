/* The coordinator engine's ports: event store, broker, clock here, and the
 * log sink (log_sink.h). The engine (engine.c) talks to the world only
 * through these tables, so the daemon plugs in PostgreSQL (io/store_pg.c),
 * librdkafka (io/broker_kafka.c) and libuv (io/clock_uv.c), and the
 * simulator plugs in seeded in-memory fakes. The types they carry are the
 * engine's own or the wire's (protocol/wire_headers.h): no I/O library's
 * header is included here. A port never calls back into the engine from
 * inside one of its own functions: completions arrive later, on the loop,
 * through the sagad_engine_on_* entry points (engine.h). */
#ifndef SAGAD_PORTS_H
#define SAGAD_PORTS_H

#include <stddef.h>
#include <stdint.h>

#include "wire_headers.h"

/* ---- event store -------------------------------------------------- */

/* Outcome of one stream of a batch, or of a whole batch. */
typedef enum {
  SAGAD_STORE_OK = 0,        /* committed */
  SAGAD_STORE_DUPLICATE = 1, /* an earlier try of this batch committed it */
  SAGAD_STORE_CONFLICT = 2,  /* wrong expected version: another owner */
  SAGAD_STORE_RETRY = 3,     /* not committed (connection lost, aborted by
                                another stream): submit the batch again */
  SAGAD_STORE_FATAL = 4,     /* refused for good (bad data, schema) */
} sagad_store_status_t;

/* One stored record of a saga stream (one transition). */
typedef struct {
  const char *type;    /* saga_codec_record_type() */
  const uint8_t *data; /* saga_codec_encode() output */
  size_t len;
  /* W3C traceparent of the input that caused the transition (kept in the
   * event's metadata), or NULL (timers, inputs without one). */
  const char *traceparent;
} sagad_record_t;

/* The saga_index row written in the same transaction as the events. */
typedef struct {
  const char *saga_id;
  const char *saga_type;
  uint32_t definition_version;
  const char *status;        /* saga_status_name() */
  int32_t partition;
  int64_t version;           /* stream version after this batch */
  int64_t started_ms;        /* Unix epoch ms */
  int64_t updated_ms;
  int64_t next_deadline_ms;  /* 0 = none */
  int64_t stuck_at_ms;       /* sm_stuck_at(): stuck after this; 0 = never */
  const char *current_step;  /* NULL = none */
  /* 1: the saga is terminal and its final notification (COMPLETED or
   * COMPENSATED) is not yet known to be delivered; recovery re-sends it
   * until batch_notified clears the flag (the outbox of that effect). */
  int notify_pending;
} sagad_index_row_t;

/* Called once per record of a stream, in version order, by the loaders. */
typedef int (*sagad_load_cb)(void *arg, const char *saga_id, int32_t partition,
                             int64_t version, const uint8_t *data, size_t len);
/* Called once when a load has ended, after its last record: status 0, or
 * < 0 when the store could not be read (the records delivered before it,
 * if any, are a prefix of what the load would have given). */
typedef void (*sagad_load_done_cb)(void *arg, int status);

typedef struct sagad_store_port {
  void *self;
  /* Start a new batch; the previous one must be done. */
  void (*batch_reset)(void *self);
  /* Add n records to "saga-<saga_id>" expecting `expected` (0 = new). The
   * port copies everything. Returns the stream's index or < 0 (no memory,
   * invalid). */
  int (*batch_add)(void *self, const char *saga_id, int64_t expected,
                   const sagad_record_t *recs, size_t n);
  /* Add the index upsert of one saga to the same transaction. 0 or < 0. */
  int (*batch_index)(void *self, const sagad_index_row_t *row);
  /* Add to the same transaction: the final notification of this terminal
   * saga was delivered, clear its notify_pending flag. 0 or < 0. */
  int (*batch_notified)(void *self, const char *saga_id);
  /* Submit the batch (again, after RETRY: the same event ids make a lost
   * commit show up as DUPLICATE). The engine's sagad_engine_on_batch_done
   * runs later with the batch status; 0 or < 0 (nothing will be called). */
  int (*batch_submit)(void *self);
  /* Status of stream i of the finished batch (sagad_store_status_t). */
  int (*batch_status)(void *self, size_t i);
  /* Loads: asynchronous, so the loop serves other work meanwhile. On 0,
   * the load runs later: cb(arg, ...) once per record, then done(arg,
   * status) exactly once (also when the port closes first: status < 0),
   * all on the loop and never from inside the port's own function; other
   * engine entry points may run between a load's records. On < 0 (no
   * memory, closing) neither is called. Several loads may be pending;
   * each delivers its records in order. cb's return value is ignored (a
   * broken saga is the engine's to skip).
   * load_partitions: every record of every saga of these inbox partitions
   * that is not terminal per saga_index, or terminal with notify_pending
   * set, stream by stream in version order (parts copied). */
  int (*load_partitions)(void *self, const int32_t *parts, size_t n,
                         sagad_load_cb cb, sagad_load_done_cb done, void *arg);
  /* load_saga: every record of one saga's stream (none = unknown saga). */
  int (*load_saga)(void *self, const char *saga_id, int32_t partition,
                   sagad_load_cb cb, sagad_load_done_cb done, void *arg);
  /* Text of the last error, for logs. */
  const char *(*last_error)(void *self);
} sagad_store_port_t;

/* ---- broker ------------------------------------------------------- */

/* One consumed inbox message. Borrowed for the sagad_engine_on_message
 * call; `ack` is the broker's token, handed back exactly once through
 * ack() or release(). */
typedef struct {
  const char *topic;
  int32_t partition;
  int64_t offset;
  const void *key;
  size_t key_len;
  const void *value;
  size_t value_len;
  saga__hdr_view_t hdrs; /* hdrs.at NULL: no headers */
  void *ack;
  /* when it was consumed, on a monotonic microsecond clock (0: unknown);
   * only handed back to the on_reply_command hook */
  int64_t received_us;
} sagad_inmsg_t;

/* How a produce ended, as the broker port reports it to
 * sagad_engine_on_delivery: X(name, value, text). UNCONFIRMED: the
 * producer reported success without the offset the broker stored it at
 * (an idempotent producer that inferred it from a later batch's
 * acknowledgement; the Kafka mock was seen to have stored nothing then):
 * commands and final notifications are sent again, a dead letter or a
 * sagad_engine_produce message counts it delivered. */
#define SAGAD_DELIVERY_MAP(X)                                                  \
  X(OK, 0, "delivered")                                                        \
  X(TOO_LARGE, 1, "message too large for the broker")                          \
  X(RETRIABLE, 2, "not delivered: broker unreachable or timed out")            \
  X(FATAL, 3, "not delivered: refused by the broker")                          \
  X(UNCONFIRMED, 4, "delivered without an offset: not confirmed")

typedef enum {
#define SAGAD_DELIVERY_ENUM_(name, value, text) SAGAD_DELIVERY_##name = value,
  SAGAD_DELIVERY_MAP(SAGAD_DELIVERY_ENUM_)
#undef SAGAD_DELIVERY_ENUM_
} sagad_delivery_t;

/* Text of a sagad_delivery_t ("delivered", ...); "unknown delivery
 * status" for other values. Static storage. */
const char *sagad_delivery_text(int status);

/* Whether a reported message is in its topic, as far as the producer
 * knows (librdkafka's rd_kafka_message_status), handed to
 * sagad_engine_on_delivery with the status: X(name, value, text). NO: it
 * never reached a broker, or a broker refused it; MAYBE: it was sent and no
 * answer came back (timed out in flight, connection lost), so it may be
 * in the topic and reach its consumer anyway; YES: a broker stored it
 * (also for UNCONFIRMED: an idempotent producer's inference). The engine
 * only logs it: what it sends again does not depend on it. */
#define SAGAD_PERSISTED_MAP(X)                                                 \
  X(NO, 0, "not persisted: not in the topic")                                  \
  X(MAYBE, 1, "possibly persisted: it may be in the topic anyway")             \
  X(YES, 2, "persisted")

typedef enum {
#define SAGAD_PERSISTED_ENUM_(name, value, text) SAGAD_PERSISTED_##name = value,
  SAGAD_PERSISTED_MAP(SAGAD_PERSISTED_ENUM_)
#undef SAGAD_PERSISTED_ENUM_
} sagad_persisted_t;

/* Text of a sagad_persisted_t ("not persisted: not in the topic", ...);
 * "persistence unknown" for other values. Static storage. */
const char *sagad_persisted_text(int persisted);

typedef struct sagad_broker_port {
  void *self;
  /* Produce a copy of key/value and of the headers hdrs (may be NULL; only
   * borrowed for the call) to topic, partitioned by key. On 0, the
   * engine's sagad_engine_on_delivery(token, status, persisted) runs
   * later exactly once, status a sagad_delivery_t, persisted a
   * sagad_persisted_t. */
  int (*produce)(void *self, const char *topic, const void *key,
                 size_t key_len, const void *value, size_t value_len,
                 const saga__hdrs_t *hdrs, void *token);
  /* The input is done with: its offset may be committed (in order). */
  void (*ack)(void *self, void *ack);
  /* The input is given up, not done (its partition was revoked): nothing
   * is committed for it, the partition's next owner reads it again. Each
   * ack token goes to exactly one of ack() and release(). May be NULL. */
  void (*release)(void *self, void *ack);
} sagad_broker_port_t;

/* ---- clock and timers --------------------------------------------- */

typedef enum {
  SAGAD_WAKE_TIMERS = 0, /* the earliest saga timer */
  SAGAD_WAKE_RETRY = 1,  /* backoff before resubmitting a failed append */
  SAGAD_WAKE_N = 2
} sagad_wake_t;

typedef struct sagad_clock_port {
  void *self;
  /* Unix epoch milliseconds. */
  int64_t (*now_ms)(void *self);
  /* Call sagad_engine_on_wake(slot) at or after at_ms (replaces that
   * slot's earlier request); at_ms 0 cancels it. */
  void (*wake_at)(void *self, int slot, int64_t at_ms);
  /* Call sagad_engine_on_turn_end once at the end of this loop turn, after
   * the inputs that are ready now have been delivered. */
  void (*end_of_turn)(void *self);
} sagad_clock_port_t;

#endif
