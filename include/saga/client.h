/* The saga client library: participant services and starters talk to the
 * saga coordinator over Kafka through it (wire contract: docs/protocol.md).
 * Everything runs on the caller's libuv loop; the library starts no thread of
 * its own (librdkafka's threads never touch caller state), never logs, exits
 * or reads the environment. A small blocking layer sits on top for programs
 * without a loop. Usage: docs/client.md. */
#ifndef SAGA_CLIENT_H
#define SAGA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "saga/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How to reach Kafka. `properties` is NULL or a NULL-terminated list of
 * name, value, name, value, ... librdkafka properties passed through
 * unchanged (TLS, SASL, tuning); one librdkafka refuses, or a name
 * without a value, is SAGA_EKAFKA from the _new call, naming it. All
 * strings are copied by the _new call. A message the library sends must
 * also fit librdkafka's own message.max.bytes (1000000 unless set, below
 * the default max_message_bytes): one that does not is SAGA_ETOOBIG too. */
typedef struct saga_kafka_config {
  const char *bootstrap_servers;   /* required, not "" */
  const char *const *properties;   /* optional */
  size_t max_message_bytes;        /* decode/encode ceiling; 0 = 1 MiB */
} saga_kafka_config_t;

/* ------------------------------------------------------------------------
 * Idempotency store: remembers the last reply given for each effect key
 * ("<saga_id>/<step>/<DO|COMPENSATE>", the same for every attempt;
 * docs/protocol.md) and the attempt it answered, so a redelivered command
 * (same attempt) gets its reply again and a later attempt of an effect
 * already applied (SUCCESS) never reaches the handler again: the recorded
 * reply is sent instead, addressed to the new attempt. Calls are made on
 * the loop thread; each calls its callback exactly once, synchronously or
 * later on the loop.
 * ------------------------------------------------------------------------ */
typedef struct saga_recorded_reply {
  saga_outcome_t outcome;
  const void *payload; /* borrowed for the duration of the callback */
  size_t payload_len;
  const char *reason;  /* borrowed; may be NULL */
  uint32_t attempt;    /* the command's attempt this reply answered */
} saga_recorded_reply_t;

/* found: 1 with `reply` set, 0 when the key is unknown; err < 0 on failure. */
typedef void (*saga_store_lookup_cb)(void *arg, int err, int found,
                                     const saga_recorded_reply_t *reply);
typedef void (*saga_store_record_cb)(void *arg, int err);

/* `key` and `r` of lookup and record are borrowed for the call only: a
 * store that answers later copies what it needs. */
typedef struct saga_idem_store {
  void *ctx;
  void (*lookup)(void *ctx, const char *key, saga_store_lookup_cb cb,
                 void *arg);
  /* Record key -> reply, and succeed. A key already present keeps its
   * reply when that is SUCCESS (the effect was applied) or answered the
   * same or a later attempt; a FAILURE or RETRYABLE of an earlier attempt
   * (nothing applied, the coordinator retried) is replaced. */
  void (*record)(void *ctx, const char *key, const saga_recorded_reply_t *r,
                 saga_store_record_cb cb, void *arg);
  /* May be NULL. Called once the participant has stopped: a callback still
   * owed must run before destroy returns (the command is then abandoned)
   * or never. */
  void (*destroy)(void *ctx);
  /* May be NULL. The text of the failure a lookup or record callback is
   * reporting (err < 0), e.g. the database's "permission denied for table
   * saga_idempotency": the participant asks for it from inside that
   * callback and keeps a copy (saga_participant_last_error). The text
   * stays valid until the store's next call; NULL or "" says nothing more
   * than the code. Both stores of this library fill it in. */
  const char *(*last_error)(void *ctx);
} saga_idem_store_t;

/* An in-memory store (tests, or participants whose effects are naturally
 * idempotent). Returns 0, SAGA_EINVAL (out NULL) or SAGA_ENOMEM; free with
 * store->destroy(ctx), which saga_participant_close does for the store it
 * was given. Its record answers SAGA_EINVAL for a NULL payload with a
 * length, and SAGA_ENOMEM when it cannot copy the reply (its last_error
 * says which). */
SAGA_CLIENT_EXPORT int saga_idem_store_memory(saga_idem_store_t *out);

/* A store in a table of the participant's own PostgreSQL database, created
 * (or given its attempt column) if missing:
 *   saga_idempotency(key text primary key, outcome smallint, payload bytea,
 *                    reason text, recorded_at timestamptz, attempt integer)
 * `conn` is a libpq PGconn * in CONNECTION_OK state, borrowed for the
 * store's life and used blocking on the loop thread: one round trip per
 * lookup, one per record (a commit of its own, durable before the callback
 * runs), both answered before the call returns, and one more to prepare
 * each statement on its first use in a session. The handlers may use the
 * same connection between calls (saga_pg_record_in_transaction). The
 * statements are named saga_idem_lookup_N and saga_idem_record_N (N one per
 * store in the process); after a PQreset, DISCARD ALL or DEALLOCATE the
 * store prepares them again by itself. Called while `conn` is inside a
 * transaction block, it runs its statement unprepared, inside that
 * transaction (a record is then durable when that commits). It stays on the
 * loop thread, not a worker: the connection is the caller's and its
 * handlers', and a hop to a thread and back would add to every command's
 * latency. Free with store->destroy(ctx) unless a participant took it
 * (saga_participant_close does it); destroy never touches `conn`. The
 * connection stays the caller's: when its session is lost (a server
 * restart, a terminated backend: PQstatus CONNECTION_BAD) every lookup and
 * record fails (SAGA_ESTORE: the command is abandoned, counted in
 * stats.errors) until the caller resets it (PQreset) or makes the
 * participant again; the store never reconnects on its own. A lookup or
 * record that fails (SAGA_ESTORE) names the key and the server's or
 * libpq's word through store->last_error, which the participant passes on
 * (saga_participant_last_error). Returns 0,
 * SAGA_EINVAL (pgconn or out NULL), SAGA_ENOMEM or SAGA_ESTORE (the
 * connection is not open, the table cannot be made; text in errbuf). To
 * record a key in the participant's own business transaction, see
 * saga_pg_record_in_transaction. */
SAGA_CLIENT_EXPORT int saga_idem_store_pg(void *pgconn, saga_idem_store_t *out,
                                          char *errbuf, size_t errlen);

/* Record key -> reply on `pgconn` inside the caller's open transaction
 * (the table must exist: create the store once first), with the rule of
 * saga_idem_store_t.record. `key` is the command's effect_key and
 * reply->attempt its attempt. The library's own record of the same reply
 * later keeps this one. The statement is sent unprepared (one round trip;
 * the caller's session need not have the store's statements). Returns 0
 * or SAGA_ESTORE: a database error, an outcome that is not SUCCESS,
 * FAILURE or RETRYABLE, a NULL payload with a length, or an attempt past
 * INT32_MAX (the PostgreSQL store's record refuses the same). */
SAGA_CLIENT_EXPORT int saga_pg_record_in_transaction(
    void *pgconn, const char *key, const saga_recorded_reply_t *reply,
    char *errbuf, size_t errlen);

/* ------------------------------------------------------------------------
 * Participant
 * ------------------------------------------------------------------------ */
typedef struct saga_participant saga_participant_t;

/* A decoded command, borrowed: valid until saga_participant_done() is
 * called for it. */
typedef struct saga_command {
  const char *topic;           /* the command topic it came from */
  const char *saga_id;
  const char *saga_type;
  uint32_t definition_version;
  const char *step;
  saga_action_t action;
  /* The definition's action name for this command: steps[].action for DO
   * (default: the step's name), compensation.action for COMPENSATE, e.g.
   * "charge" / "refund". One handler serves every action of its topic and
   * tells them apart by this. NULL from a coordinator older than 0.2. */
  const char *action_name;
  uint32_t attempt;
  const char *idempotency_key;
  int64_t deadline_ms;         /* Unix epoch ms, 0 = none */
  const void *payload;
  size_t payload_len;
  const char *reply_topic;
  saga_meta_t meta;
  /* "<saga_id>/<step>/<DO|COMPENSATE>": names the effect across attempts
   * (idempotency_key names this attempt). Key a business record of the
   * effect by it, e.g. saga_pg_record_in_transaction. */
  const char *effect_key;
} saga_command_t;

/* One command awaiting its outcome; completed by saga_participant_done. */
typedef struct saga_pending saga_pending_t;

/* Called on the loop for each new command. The handler must call
 * saga_participant_done(pending, ...) exactly once, before returning or
 * later on the loop thread. */
typedef void (*saga_handler_fn)(saga_participant_t *p,
                                const saga_command_t *cmd,
                                saga_pending_t *pending, void *arg);

typedef struct saga_participant_config {
  /* kafka.properties may name group.id only as group_id does */
  saga_kafka_config_t kafka;
  const char *group_id;        /* required: the participant's consumer group */
  /* Dead-letter topic for undecodable commands (a Kafka topic name);
   * NULL = "<topic>.dlq", which takes command topics of at most 245
   * characters (saga_participant_handle). */
  const char *dlq_topic;
  saga_idem_store_t store;     /* required; owned by the participant */
} saga_participant_config_t;

/* Create a participant on `loop`. Takes ownership of cfg->store on success
 * only. Register handlers, then saga_participant_start. Returns 0,
 * SAGA_EINVAL (a NULL argument; bootstrap_servers or group_id NULL or "";
 * a store without lookup or record; a dlq_topic that is no Kafka topic
 * name; a group.id property other than group_id), SAGA_ENOMEM or
 * SAGA_EKAFKA (text in errbuf). Loop thread. */
SAGA_CLIENT_EXPORT int saga_participant_new(uv_loop_t *loop,
                                            const saga_participant_config_t *cfg,
                                            saga_participant_t **out,
                                            char *errbuf, size_t errlen);

/* Register `fn` for commands on `topic` (copied), a Kafka topic name: 1 to
 * 249 of A-Z a-z 0-9 . _ - (no regular expression); at most 245 when no
 * dlq_topic is configured, so that its dead-letter topic "<topic>.dlq" is
 * one too. Before start only. Returns 0, SAGA_EINVAL (a NULL argument, a
 * topic that is not such a name: for a non-NULL p,
 * saga_participant_last_error then names the topic and why, e.g.
 * "participant: topic \"^orders.*\" is not a Kafka topic name (...)"),
 * SAGA_EEXIST (the topic has a handler), SAGA_ESTATE (started or closing)
 * or SAGA_ENOMEM. */
SAGA_CLIENT_EXPORT int saga_participant_handle(saga_participant_t *p,
                                               const char *topic,
                                               saga_handler_fn fn, void *arg);

/* Join the consumer group on every registered topic. Commands are
 * decoded; a redelivered command gets its recorded reply again, and a
 * later attempt of an effect recorded as SUCCESS (its reply came too late)
 * gets that reply addressed to its own attempt and idempotency key, both
 * without reaching the handler; after a recorded FAILURE or RETRYABLE a
 * later attempt runs the handler again. A COMPENSATE whose DO this store
 * never saw applied (no record, or FAILURE/RETRYABLE) and that is not in
 * the handler now is recorded as voided and answered SUCCESS without the
 * handler, and a refusal is recorded for the DO: a DO that arrives later
 * gets FAILURE without the handler (the DO and COMPENSATE of a step must
 * share this store; docs/protocol.md, 3a/3b). Undecodable input goes to
 * the dead-letter topic with a `saga-dlq-reason` header (one past the
 * producer's message.max.bytes without its value, saying so in
 * `saga-dlq-truncated`; one Kafka refuses for another reason is not sent,
 * and its input is abandoned as after a reply that could not be sent);
 * the offset of a command is
 * committed only after its reply's delivery is acknowledged. Returns 0,
 * SAGA_ESTATE (started or closed already), SAGA_EINVAL (a NULL p, or no
 * handler registered), SAGA_ENOMEM or SAGA_EKAFKA (text in errbuf). */
SAGA_CLIENT_EXPORT int saga_participant_start(saga_participant_t *p,
                                              char *errbuf, size_t errlen);

/* Finish a command: record the reply under its effect key, produce it
 * to the command's reply_topic, then commit the command's offset. `payload`
 * and `reason` (UTF-8, may be NULL) are copied. `pending` is invalid after
 * this call, even on error. Returns 0; SAGA_EINVAL for an outcome that is
 * not one, a NULL payload with a length, or a reason that is not UTF-8;
 * SAGA_ETOOBIG for a reply Kafka could not carry (the encoded Reply past
 * max_message_bytes or the producer's message.max.bytes). On either,
 * nothing is recorded or sent and the command is abandoned, as on a store
 * failure (the coordinator's next attempt runs the handler again).
 * SAGA_ENOMEM when the reply could not be held for its record: the
 * command is abandoned as above. SAGA_ECANCELED when the participant was
 * closed while the handler held `pending`: nothing is sent, and this call
 * frees it. */
SAGA_CLIENT_EXPORT int saga_participant_done(saga_pending_t *pending,
                                             saga_outcome_t outcome,
                                             const void *payload,
                                             size_t payload_len,
                                             const char *reason);

/* Counters, for metrics and tests. */
typedef struct saga_participant_stats {
  uint64_t handled;        /* handler calls */
  uint64_t duplicates;     /* commands answered from the store: redelivered,
                              or a later attempt of an applied effect */
  uint64_t dead_lettered;  /* undecodable inputs sent to the DLQ */
  uint64_t replies_acked;  /* replies whose delivery was acknowledged */
  uint64_t errors;         /* store or Kafka failures (input redelivered);
                              saga_participant_last_error says why. Kafka
                              client errors (brokers down, a failed
                              commit) abandon no input: not counted */
} saga_participant_stats_t;

/* Copy p's counters to *out; does nothing when either is NULL. Loop
 * thread (or after the loop stopped). */
SAGA_CLIENT_EXPORT void saga_participant_stats(const saga_participant_t *p,
                                               saga_participant_stats_t *out);

/* Text of the participant's last failure ("" when none). Either why
 * saga_participant_handle answered SAGA_EINVAL, or the failure
 * that last grew stats.errors: which command or input was abandoned and
 * why, e.g. "store lookup of \"o-17/reserve/DO\" failed: SAGA_ESTORE: could
 * not look up idempotency key \"o-17/reserve/DO\": ERROR:  permission denied
 * for table saga_idempotency" (a store failure, in the store's words when
 * it has a last_error), librdkafka's word for a reply or dead letter that
 * could not be produced or was not delivered, or why
 * saga_participant_done refused a reply; or an error the Kafka client
 * reported on its own since, which abandons no input and is not counted:
 * "kafka: " and librdkafka's words, then which part said it, "(consumer)",
 * "(producer)" or "(offset commit)", e.g. "kafka: Local: All broker
 * connections are down: 1/1 brokers are down (consumer)" (librdkafka
 * retries by itself; "kafka: fatal error: ..." means that handle is
 * unusable and the participant must be made again). A failed commit's
 * offsets go with the next commit, or the inputs are redelivered and
 * answered from the store. The library never logs: read it when errors
 * grows or Kafka seems unreachable. Owned by the participant, rewritten
 * by the next failure; NULL for a NULL p. Loop thread. */
SAGA_CLIENT_EXPORT const char *saga_participant_last_error(
    const saga_participant_t *p);

/* Leave the group and release everything; `cb` (may be NULL) runs on the
 * loop when memory is freed. Unlike the other calls this one blocks the
 * loop thread: it commits the acknowledged offsets synchronously before
 * it returns. The loop then runs on while the replies and dead letters
 * still queued get up to 5 s to be delivered (a command whose reply is
 * delivered then is not committed: the next member answers it from the
 * store); those left are purged, their inputs redelivered, and the loop
 * is blocked again to serve the purge's reports (up to about a second)
 * and destroy the Kafka handles. So `cb` may run some 6 s later: call it
 * when the loop may wait, e.g. at shutdown. Commands still pending are
 * abandoned (their
 * offsets stay uncommitted, so they are redelivered); one a handler still
 * holds stays valid, with its saga_command_t, until the
 * saga_participant_done it is still owed (which answers SAGA_ECANCELED).
 * NULL-safe; a second call does nothing. */
SAGA_CLIENT_EXPORT void saga_participant_close(saga_participant_t *p,
                                               void (*cb)(void *arg),
                                               void *arg);

/* ------------------------------------------------------------------------
 * Starter
 * ------------------------------------------------------------------------ */
typedef struct saga_starter saga_starter_t;

typedef struct saga_starter_config {
  saga_kafka_config_t kafka;
  /* Kafka topic names (1 to 249 of A-Z a-z 0-9 . _ -) or NULL */
  const char *inbox_topic;          /* NULL = "saga.inbox" */
  const char *notifications_topic;  /* NULL = "saga.notifications" */
  /* Wait at most this long in saga_starter_new for the notification
   * topic's partitions and end offsets, all of them together (then the
   * producer's best-effort warm-up, up to as long again); 0 = 10000 ms,
   * negative is SAGA_EINVAL. */
  int64_t setup_timeout_ms;
} saga_starter_config_t;

typedef struct saga_start_request {
  const char *saga_type;          /* required */
  const char *saga_id;            /* NULL = generate one: a time-ordered
                                     UUID (version 7, RFC 9562) */
  uint32_t definition_version;    /* 0 = newest */
  /* Bytes, sent as they are (NULL only with input_len 0). JSON by
   * convention; the library does not check it: the coordinator hands
   * input that is not JSON, or holds a \u0000 in a string, to the steps
   * as {"$base64": "..."} (docs/protocol.md). */
  const void *input;
  size_t input_len;
  saga_meta_t meta;               /* saga_id ignored; the rest optional:
                                     traceparent generated when NULL,
                                     correlation_id the saga id when
                                     NULL, causation_id absent when
                                     NULL */
} saga_start_request_t;

/* A decoded lifecycle notification, borrowed for the callback's duration. */
typedef struct saga_notification {
  const char *saga_id;
  const char *saga_type;
  saga_notification_kind_t kind;
  const char *step;
  int action;   /* saga_action_t, 0 when absent */
  int outcome;  /* saga_outcome_t, 0 when absent */
  const void *payload;
  size_t payload_len;
  const char *reason;
  int64_t at_ms;
  saga_meta_t meta;
} saga_notification_t;

/* True for kinds that end what a starter awaits: COMPLETED, COMPENSATED,
 * COMPENSATION_FAILED (parked for an operator) and REJECTED. */
SAGA_CLIENT_EXPORT int saga_notification_is_outcome(int kind);

/* Create a starter on `loop`: a producer to the inbox and a reader of every
 * partition of the notifications topic from its current end (no consumer
 * group, so no join delay). Blocks up to setup_timeout_ms to learn those
 * partitions, then (best effort, up to as long again) the inbox topic's
 * partitions on the producer, so the first start does not wait for them.
 * Every notification produced after this returns is seen.
 * On failure nothing is returned, but the half-made starter releases its
 * handles on `loop`: run the loop until it has no more to do.
 * Returns 0, SAGA_EINVAL (a NULL argument, bootstrap_servers NULL or "",
 * a topic that is no Kafka topic name, a negative setup_timeout_ms),
 * SAGA_ENOMEM, SAGA_EKAFKA or SAGA_ETIMEDOUT (text in errbuf). */
SAGA_CLIENT_EXPORT int saga_starter_new(uv_loop_t *loop,
                                        const saga_starter_config_t *cfg,
                                        saga_starter_t **out, char *errbuf,
                                        size_t errlen);

/* Called once when the StartSaga's delivery to the inbox is acknowledged
 * (err 0) or failed (err < 0): SAGA_ECANCELED when saga_starter_close
 * gave up waiting for Kafka's answer; SAGA_EKAFKA when Kafka refused it,
 * during a close too, and saga_starter_last_error says why. */
typedef void (*saga_started_cb)(saga_starter_t *s, int err,
                                const char *saga_id, void *arg);

/* Send StartSaga. The saga id (given or generated) is copied to
 * `saga_id_out` (at least 64 bytes are enough for generated ids,
 * SAGA_MAX_ID + 1 for any; with id_len 0 it takes none: SAGA_ETOOBIG).
 * Starting the same saga id again is harmless: the coordinator starts it
 * once. An id is never cut: a given id past
 * SAGA_MAX_ID bytes, or one that does not fit saga_id_out, is
 * SAGA_ETOOBIG; "" or one with a control character or '/' is
 * SAGA_EMISSING. A StartSaga past max_message_bytes or the producer's
 * message.max.bytes is SAGA_ETOOBIG. If this returns an error, `cb` is
 * never called; otherwise exactly once. Returns 0, SAGA_EINVAL (a NULL
 * s, req, saga_type or cb, input NULL with a length; saga_id_out may be
 * NULL, and then id_len is ignored), SAGA_ETOOBIG, SAGA_EMISSING (also
 * an empty saga_type, or a meta field too long for its header or
 * holding a control character), SAGA_ENOMEM, SAGA_EKAFKA, or SAGA_ESTATE once saga_starter_close was
 * called. On every error but a NULL s, saga_starter_last_error says which
 * (e.g. "StartSaga not sent: saga_id is 300 bytes long, the ceiling is
 * 255 (an id is never cut)"). */
SAGA_CLIENT_EXPORT int saga_starter_start(saga_starter_t *s,
                                          const saga_start_request_t *req,
                                          char *saga_id_out, size_t id_len,
                                          saga_started_cb cb, void *arg);

/* Ask the coordinator to cancel saga `saga_id` (a CancelSaga on the
 * inbox), with the operator's reason and name (NULL = none), both
 * recorded in the saga's history. Before the saga's pivot step is
 * dispatched it stops going forward and is compensated: its outcome is
 * COMPENSATED. After the pivot, or when the saga is finished, parked or
 * unknown, nothing changes and the coordinator answers with a
 * CANCEL_REFUSED notification whose reason says why ("after the pivot step
 * charge", "already completed: nothing to cancel"). saga_starter_await
 * on the saga reports that refusal (kind SAGA_NOTIFY_CANCEL_REFUSED) as
 * well as the outcome, whichever comes first, even when the refusal came
 * before the await; other starters' refusals are not reported. Cancelling
 * twice is harmless. The last 4096 cancels are kept for their answer
 * (a refusal nobody awaits yet, or a cancel not answered yet): an await
 * of a saga whose cancel has been pushed out waits for its outcome alone.
 * `cb` is called once when the CancelSaga's delivery is
 * acknowledged (err 0) or failed (err < 0, as for saga_started_cb), unless
 * this returns an error. A saga id past SAGA_MAX_ID bytes, or a
 * CancelSaga past max_message_bytes or the producer's message.max.bytes,
 * is SAGA_ETOOBIG;
 * "" or one with a control character or '/', a reason past 1024 bytes or
 * a name past SAGA_MAX_ID bytes (or either not UTF-8) is SAGA_EMISSING.
 * Returns 0, SAGA_EINVAL (a NULL s, saga_id or cb), SAGA_ETOOBIG,
 * SAGA_EMISSING, SAGA_ENOMEM, SAGA_EKAFKA, or SAGA_ESTATE once
 * saga_starter_close was called; on every error but a NULL s,
 * saga_starter_last_error says which. */
SAGA_CLIENT_EXPORT int saga_starter_cancel(saga_starter_t *s,
                                           const char *saga_id,
                                           const char *reason,
                                           const char *who,
                                           saga_started_cb cb, void *arg);

/* Called once with the saga's outcome notification (err 0), or err
 * SAGA_ETIMEDOUT / SAGA_ECANCELED and n == NULL. */
typedef void (*saga_outcome_cb)(saga_starter_t *s, int err,
                                const saga_notification_t *n, void *arg);

/* Await the outcome (saga_notification_is_outcome) of `saga_id`, at most
 * timeout_ms; after saga_starter_cancel of that saga, a CANCEL_REFUSED
 * answers too (n->kind says which). The last 4096 outcomes seen since the
 * starter was created (of any saga on its notifications topic) are
 * remembered, so awaiting a saga that finished since still answers;
 * awaiting one whose outcome has been pushed out, or could not be kept
 * for want of memory, waits for a later one and may end with
 * SAGA_ETIMEDOUT although the saga has ended. Returns 0, SAGA_EINVAL (a
 * NULL argument, a saga id that is not 1 to SAGA_MAX_ID bytes, a negative
 * timeout), SAGA_ENOMEM, or SAGA_ESTATE once saga_starter_close was
 * called (on every error but a NULL s, saga_starter_last_error says
 * which); on 0 `cb` is called exactly once. */
SAGA_CLIENT_EXPORT int saga_starter_await(saga_starter_t *s,
                                          const char *saga_id,
                                          int64_t timeout_ms,
                                          saga_outcome_cb cb, void *arg);

/* Called for every notification (any saga) of the starter's notifications
 * topic while subscribed. Progress notes (STARTED, STEP_DONE) are among
 * them only when sagad's topic.progress is that topic (it sends none by
 * default; docs/protocol.md). */
typedef void (*saga_notification_cb)(saga_starter_t *s,
                                     const saga_notification_t *n, void *arg);

/* Set (or clear with NULL) the notification subscriber. Returns 0, or
 * SAGA_EINVAL for a NULL s. */
SAGA_CLIENT_EXPORT int saga_starter_subscribe(saga_starter_t *s,
                                              saga_notification_cb cb,
                                              void *arg);

/* Text of the starter's last failure ("" when none): why
 * saga_starter_start, saga_starter_cancel or saga_starter_await refused a
 * call (which argument and why, e.g. "StartSaga of saga \"o-17\" not
 * sent: the id of 4 bytes does not fit saga_id_out of 4 bytes (an id is
 * never cut)"), answered SAGA_EKAFKA or an encoding error, or why a
 * delivery reported to a saga_started_cb failed
 * (librdkafka's word, e.g. "Broker: Topic authorization failed"), naming
 * the saga and the topic; or an error the Kafka client reported on its
 * own: "kafka: " and librdkafka's words, then which part said it,
 * "(consumer)" or "(producer)", e.g. "kafka: Local: All broker connections
 * are down: 1/1 brokers are down (producer)" (librdkafka retries by
 * itself; a start it holds up fails, if it does, through its own
 * delivery report; "kafka: fatal error: ..." means that handle is
 * unusable). Inside a saga_started_cb with SAGA_EKAFKA it is that
 * callback's failure. Owned by the starter, rewritten by the next
 * failure; NULL for a NULL s. Loop thread. */
SAGA_CLIENT_EXPORT const char *saga_starter_last_error(const saga_starter_t *s);

/* Pending awaits are called back with SAGA_ECANCELED at once. Starts and
 * cancels still in flight get up to 5 s for Kafka's answer (0 for one
 * acknowledged then, SAGA_EKAFKA for one refused then; within
 * saga_run_saga, none), and the rest are called back with
 * SAGA_ECANCELED. Then memory is released and `cb`
 * (may be NULL) runs on the loop, so it may run up to those 5 s later.
 * Until then start, cancel and await answer SAGA_ESTATE; after it, `s` is
 * gone. NULL-safe; a second call does nothing. */
SAGA_CLIENT_EXPORT void saga_starter_close(saga_starter_t *s,
                                           void (*cb)(void *arg), void *arg);

/* Blocking layer: runs a private loop. Start a saga and wait for its
 * outcome, at most timeout_ms in all: the setup (setup_timeout_ms when
 * shorter), the StartSaga's acknowledgement and the wait together. On 0,
 * *kind_out holds the outcome kind and, when reason_out is given, the
 * reason (or "") is copied, cut to reason_len. The saga id is copied to
 * saga_id_out (may be NULL): one that would not fit (a generated id has
 * 36 characters; id_len 0 fits none) is SAGA_ETOOBIG before anything is
 * sent or the Kafka setup begins, as a negative timeout_ms is
 * SAGA_EINVAL, and so is what saga_starter_start refuses of `req` before
 * its encoding (a NULL req or saga_type, input NULL with a length:
 * SAGA_EINVAL; a saga_id past SAGA_MAX_ID bytes: SAGA_ETOOBIG).
 * Returns 0 or any error above (SAGA_ETIMEDOUT when the time ran out: the
 * saga may still run), with the text in errbuf (for a StartSaga Kafka
 * refused, librdkafka's word; for one Kafka never acknowledged, the last
 * error the Kafka client reported, as saga_starter_last_error words it).
 * Not for use on a loop thread. */
SAGA_CLIENT_EXPORT int saga_run_saga(const saga_starter_config_t *cfg,
                                     const saga_start_request_t *req,
                                     int64_t timeout_ms, char *saga_id_out,
                                     size_t id_len,
                                     saga_notification_kind_t *kind_out,
                                     char *reason_out, size_t reason_len,
                                     char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
