/* Internal: librdkafka driven from a libuv loop, for the client library and
 * the coordinator daemon (target saga_kafka_loop). librdkafka's threads never
 * touch caller state: its queues signal a non-blocking pipe watched by a
 * uv_poll_t, and every callback below runs on the loop thread. It owns up to
 * two rd_kafka_t handles: a consumer (group member or hand-assigned reader)
 * and a producer. It never logs: logs arrive through on_log. */
#ifndef SAGA_CLIENT_KAFKA_LOOP_H
#define SAGA_CLIENT_KAFKA_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

typedef struct saga_kloop saga_kloop_t;

/* One consumed message awaiting its acknowledgement. Offsets are committed
 * in order per partition: a message's offset is committed once it and every
 * earlier message of its partition have been acknowledged. */
typedef struct saga_kloop_ack saga_kloop_ack_t;

/* All callbacks run on the loop thread; any may be NULL. */
typedef struct saga_kloop_callbacks {
  void *opaque; /* passed to every callback */
  /* A consumed message. `m` is borrowed for the call; `ack` must be given
   * to saga_kloop_ack or saga_kloop_release exactly once (now or later)
   * unless the loop closes first. m->err is never set here (consumer errors go to on_error). */
  void (*on_message)(saga_kloop_t *kl, const rd_kafka_message_t *m,
                     saga_kloop_ack_t *ack, void *opaque);
  /* After partitions were assigned (group rebalance). */
  void (*on_assign)(saga_kloop_t *kl,
                    const rd_kafka_topic_partition_list_t *parts,
                    void *opaque);
  /* Before partitions are taken away. Acks still outstanding for them
   * remain valid but commit nothing. */
  void (*on_revoke)(saga_kloop_t *kl,
                    const rd_kafka_topic_partition_list_t *parts,
                    void *opaque);
  /* Exactly once per successful saga_kloop_produce: m->err says whether
   * the broker acknowledged it (RD_KAFKA_RESP_ERR__PURGE_QUEUE when the
   * loop closed first). `msg_opaque` is the produce call's. */
  void (*on_delivery)(saga_kloop_t *kl, const rd_kafka_message_t *m,
                      void *msg_opaque, void *opaque);
  /* An offset commit finished (err 0 or not), with its offsets. */
  void (*on_commit)(saga_kloop_t *kl, rd_kafka_resp_err_t err,
                    const rd_kafka_topic_partition_list_t *offsets,
                    void *opaque);
  /* A client-level error; fatal != 0 means the handle is unusable.
   * saga_kloop_error_handle says which handle it is about. */
  void (*on_error)(saga_kloop_t *kl, rd_kafka_resp_err_t err, int fatal,
                   const char *reason, void *opaque);
  /* librdkafka's log lines (syslog levels), except the broker failures
   * that also arrive through on_error (facility "FAIL"): each failure is
   * reported once. */
  void (*on_log)(saga_kloop_t *kl, int level, const char *fac,
                 const char *line, void *opaque);
  /* Back-pressure (saga_kloop_config_t.max_held): consumption paused
   * (paused 1) because `held` messages are held unacknowledged, or
   * resumed (paused 0) once at most half of max_held are. */
  void (*on_flow)(saga_kloop_t *kl, int paused, size_t held, void *opaque);
} saga_kloop_callbacks_t;

typedef struct saga_kloop_config {
  const char *bootstrap_servers; /* required */
  /* NULL or NULL-terminated name, value, ... pairs for both handles, then
   * for the consumer only and the producer only (applied in that order). */
  const char *const *properties;
  const char *const *consumer_properties;
  const char *const *producer_properties;
  int want_consumer;     /* create a consumer handle */
  int want_producer;     /* create a producer handle (idempotent, acks=all) */
  const char *group_id;  /* consumer group; NULL: assign by hand only, and
                            acknowledgements commit nothing */
  int commit_interval_ms; /* batch acknowledged offsets; 0 = 50 ms */
  int close_timeout_ms;   /* wait this long for deliveries at close;
                             0 = 5000 ms, then the rest is purged */
  /* Back-pressure: when this many consumed messages are held (handed to
   * on_message, not yet acknowledged) on the assigned partitions, pause
   * fetching every assigned partition (and those assigned later) until at
   * most half of them are; messages fetched but not handed over meanwhile
   * are fetched again on resume, none is lost or skipped. 0 = never. */
  size_t max_held;
} saga_kloop_config_t;

/* 1 when the NULL-terminated name, value, ... pairs `p` (NULL: none) name
 * the property `name`, else 0: for a default that a caller's own setting
 * must win over. Any thread. */
int saga_kloop_prop_given(const char *const *p, const char *name);

/* The handles saga_kloop_new would create, made and freed without a
 * broker (no broker is connected to; a SASL mechanism that fetches a
 * token at creation, such as OAUTHBEARER with OIDC, still does): 0, or -1
 * with errbuf saying what
 * librdkafka refuses only when a handle is made (properties that clash,
 * such as acks=1 with the idempotent producer, a SASL mechanism without
 * its credentials, a certificate file it cannot load). Any thread. */
int saga_kloop_check(const saga_kloop_config_t *cfg, char *errbuf,
                     size_t errlen);

/* Create the handles (not yet consuming). Returns 0 or -1 with errbuf
 * saying what (bad property, handle creation). Loop thread. */
int saga_kloop_new(uv_loop_t *loop, const saga_kloop_config_t *cfg,
                   const saga_kloop_callbacks_t *cb, saga_kloop_t **out,
                   char *errbuf, size_t errlen);

/* Join the group on `topics` (group_id required). 0 or -1 (errbuf). */
int saga_kloop_subscribe(saga_kloop_t *kl, const char *const *topics,
                         size_t n_topics, char *errbuf, size_t errlen);

/* Read exactly `parts` (with their offsets) without a group. 0 or -1. */
int saga_kloop_assign(saga_kloop_t *kl,
                      const rd_kafka_topic_partition_list_t *parts,
                      char *errbuf, size_t errlen);

/* Produce a copy of key/value to topic (partition RD_KAFKA_PARTITION_UA =
 * by key). `hdrs` (may be NULL) is taken over on success only. On 0,
 * on_delivery is called exactly once with msg_opaque. Returns 0 or -1 with
 * errbuf (queue full, unknown topic, closing). */
int saga_kloop_produce(saga_kloop_t *kl, const char *topic, int32_t partition,
                       const void *key, size_t key_len, const void *value,
                       size_t value_len, rd_kafka_headers_t *hdrs,
                       void *msg_opaque, char *errbuf, size_t errlen);

/* Acknowledge a consumed message: its offset (and those before it) become
 * committable and are committed within commit_interval_ms. NULL-safe. */
void saga_kloop_ack(saga_kloop_t *kl, saga_kloop_ack_t *ack);

/* Give a consumed message up without acknowledging it, when its work is
 * dropped rather than done (typically in on_revoke: the partition's next
 * owner reads it again). No offset at or after it is committed while its
 * partition stays assigned; once the partition is revoked, the message
 * no longer keeps the partition's tracking alive. Give each ack to
 * exactly one of saga_kloop_ack and saga_kloop_release. NULL-safe. */
void saga_kloop_release(saga_kloop_t *kl, saga_kloop_ack_t *ack);

/* Messages handed to on_message and neither acknowledged nor released:
 * on the assigned partitions into *live, on partitions revoked since into
 * *revoked (either pointer may be NULL). A revoked partition's tracking
 * is freed when its last such message is acknowledged or released. */
void saga_kloop_outstanding(const saga_kloop_t *kl, size_t *live,
                            size_t *revoked);

/* Topic, partition and offset of an unacknowledged message. */
const char *saga_kloop_ack_topic(const saga_kloop_ack_t *ack);
int32_t saga_kloop_ack_partition(const saga_kloop_ack_t *ack);
int64_t saga_kloop_ack_offset(const saga_kloop_ack_t *ack);

/* Messages produced but not yet reported by on_delivery. */
int saga_kloop_outq_len(const saga_kloop_t *kl);

/* The raw handles, for metadata queries and extra settings (never poll
 * them: the loop does). NULL when not created. */
rd_kafka_t *saga_kloop_consumer(saga_kloop_t *kl);
rd_kafka_t *saga_kloop_producer(saga_kloop_t *kl);

/* Inside on_error: the handle the error is about (the consumer, for its
 * fetches, commits and rebalances, or the handle whose queue raised the
 * error event); NULL outside on_error. */
rd_kafka_t *saga_kloop_error_handle(const saga_kloop_t *kl);

/* Commit acknowledged offsets, leave the group, wait for outstanding
 * deliveries up to close_timeout_ms (then purge them: their on_delivery
 * reports RD_KAFKA_RESP_ERR__PURGE_QUEUE), release everything and call
 * `cb` (may be NULL) on the loop. Unacknowledged acks become invalid.
 * Callbacks may still run until `cb`. Blocks the loop only for the final
 * commit and handle destruction. NULL-safe; a second call does nothing. */
void saga_kloop_close(saga_kloop_t *kl, void (*cb)(void *arg), void *arg);

#endif
