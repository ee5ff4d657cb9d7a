/* The participant against the Kafka mock: a redelivered command (same
 * idempotency key) never reaches the handler twice and gets the first
 * reply again; a later attempt of an effect already applied (its reply came
 * too late) gets the recorded reply addressed to the new attempt, while a
 * RETRYABLE attempt lets the next one run; poison input lands in the
 * dead-letter topic with its reason and the partition moves on; the
 * PostgreSQL store remembers keys across participant instances. A reply
 * Kafka could not carry is refused unrecorded, a store may answer later,
 * a handler may answer after close, and configuration mistakes are
 * refused at once. A command abandoned for a store or Kafka failure, or a
 * reply refused, is named with its cause by saga_participant_last_error,
 * and so is a Kafka client error (a failed commit, brokers down). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "client_test.h"
#include "kafka_loop.h"
#include "saga/client.h"
#include "wire_kafka.h"

#include <librdkafka/rdkafka_mock.h> /* after rdkafka.h (kafka_loop.h) */

#define MAX_SEEN 16

typedef struct seen {
  char key[128];
  uint32_t attempt;
  int outcome;
  char payload[64];
  char reason[64];
  char dlq_reason[512];
  char dlq_source[128];
  char dlq_truncated[128]; /* saga-dlq-truncated, "" when whole */
  size_t value_len;
  char correlation[64];
} seen_t;

typedef struct fixture {
  uv_loop_t loop;
  saga_kloop_t *peer; /* the test's producer + reader of replies/DLQ */
  int delivered;
  int want; /* replies or dead letters awaited */
  seen_t seen[MAX_SEEN];
  int n_seen;
  int handler_calls;
  saga_pending_t *held; /* a command whose handler answers later */
  uv_timer_t later;
  int closed;
} fixture_t;

static void peer_delivery(saga_kloop_t *kl, const rd_kafka_message_t *m,
                          void *mo, void *opaque) {
  (void)kl;
  (void)mo;
  assert_int_equal(m->err, 0);
  ((fixture_t *)opaque)->delivered++;
}

static void copy_hdr(const rd_kafka_message_t *m, const char *name, char *dst,
                     size_t len) {
  rd_kafka_headers_t *h = NULL;
  const void *v;
  size_t n;
  dst[0] = '\0';
  if (rd_kafka_message_headers(m, &h) == 0 && h &&
      rd_kafka_header_get_last(h, name, &v, &n) == 0 && v)
    snprintf(dst, len, "%.*s", (int)n, (const char *)v);
}

/* Reads replies (decoded) and dead letters (headers) alike. */
static void peer_message(saga_kloop_t *kl, const rd_kafka_message_t *m,
                         saga_kloop_ack_t *ack, void *opaque) {
  fixture_t *f = opaque;
  assert_true(f->n_seen < MAX_SEEN);
  seen_t *s = &f->seen[f->n_seen++];
  memset(s, 0, sizeof *s);
  copy_hdr(m, SAGA_HDR_DLQ_REASON, s->dlq_reason, sizeof s->dlq_reason);
  copy_hdr(m, SAGA_HDR_DLQ_SOURCE, s->dlq_source, sizeof s->dlq_source);
  copy_hdr(m, SAGA_HDR_DLQ_TRUNCATED, s->dlq_truncated,
           sizeof s->dlq_truncated);
  s->value_len = m->len;
  if (!s->dlq_reason[0]) {
    rd_kafka_headers_t *h = NULL;
    rd_kafka_message_headers(m, &h);
    ProtobufCMessage *msg;
    saga__wire_meta_t meta;
    char err[256];
    int rc = saga__wire_decode(&saga__v1__reply__descriptor, m->payload,
                               m->len, h, 0, &msg, &meta, err, sizeof err);
    if (rc)
      fail_msg("reply did not decode: %s", err);
    Saga__V1__Reply *r = (Saga__V1__Reply *)msg;
    snprintf(s->key, sizeof s->key, "%s", r->idempotency_key);
    s->attempt = r->attempt;
    s->outcome = r->outcome;
    snprintf(s->payload, sizeof s->payload, "%.*s", (int)r->payload.len,
             (const char *)r->payload.data);
    snprintf(s->reason, sizeof s->reason, "%s", r->reason);
    snprintf(s->correlation, sizeof s->correlation, "%.63s", meta.correlation_id);
    saga__wire_free(msg);
  }
  saga_kloop_ack(kl, ack);
}

/* The Kafka the peer and the participant use; NULL = the embedded one. */
static const char *bootstrap;

static void open_peer(fixture_t *f, const char *const *topics, size_t n) {
  char group[128], err[256];
  snprintf(group, sizeof group, "%s", ts_unique_name("peer"));
  saga_kloop_config_t cfg = {.bootstrap_servers =
                                 bootstrap ? bootstrap : ts_kafka_bootstrap(),
                             .consumer_properties = ct_consumer_props,
                             .producer_properties = ct_producer_props,
                             .want_consumer = 1,
                             .want_producer = 1,
                             .group_id = group};
  saga_kloop_callbacks_t cb = {.opaque = f,
                               .on_message = peer_message,
                               .on_delivery = peer_delivery};
  assert_int_equal(saga_kloop_new(&f->loop, &cfg, &cb, &f->peer, err,
                                  sizeof err),
                   0);
  assert_int_equal(saga_kloop_subscribe(f->peer, topics, n, err, sizeof err),
                   0);
}

static void send_raw(fixture_t *f, const char *topic, const void *v,
                     size_t len, const char *type) {
  char err[256];
  rd_kafka_headers_t *h = rd_kafka_headers_new(1);
  if (type)
    rd_kafka_header_add(h, SAGA_HDR_TYPE, -1, type, -1);
  assert_int_equal(saga_kloop_produce(f->peer, topic, 0, "k", 1, v, len, h,
                                      NULL, err, sizeof err),
                   0);
}

/* Produce msg (encoded with its headers, or without any when bare) to
 * partition 0 of topic: every message lands behind the previous one. */
static void send_msg(fixture_t *f, const char *topic, const char *key,
                     const ProtobufCMessage *msg, int bare) {
  char err[256];
  saga_meta_t meta = {.correlation_id = "corr-1"};
  void *buf;
  size_t len;
  rd_kafka_headers_t *h;
  assert_int_equal(saga__wire_encode(msg, &meta, 0, &buf, &len, &h, err,
                                     sizeof err),
                   0);
  if (bare) {
    rd_kafka_headers_destroy(h);
    h = NULL;
  }
  assert_int_equal(saga_kloop_produce(f->peer, topic, 0, key, strlen(key),
                                      buf, len, h, NULL, err, sizeof err),
                   0);
  free(buf);
}

/* A command (DO or COMPENSATE) for step "reserve" of saga with the given
 * payload. */
static void send_action_with(fixture_t *f, const char *topic,
                             const char *saga, const char *reply_topic,
                             saga_action_t action, uint32_t attempt,
                             const void *payload, size_t payload_len,
                             int bare) {
  char key[128];
  assert_int_equal(saga__idempotency_key(key, sizeof key, saga, "reserve",
                                         action, attempt),
                   0);
  Saga__V1__Command c;
  saga__v1__command__init(&c);
  c.saga_id = SAGA_MUT(saga);
  c.saga_type = SAGA_MUT("order");
  c.step = SAGA_MUT("reserve");
  c.action = (Saga__V1__Action)action;
  c.action_name = SAGA_MUT(action == SAGA_ACTION_DO ? "reserve-stock"
                                                    : "release-stock");
  c.attempt = attempt;
  c.idempotency_key = key;
  c.reply_topic = SAGA_MUT(reply_topic);
  c.payload.data = (uint8_t *)SAGA_MUT(payload);
  c.payload.len = payload_len;
  send_msg(f, topic, saga, &c.base, bare);
}

static void send_command_with(fixture_t *f, const char *topic,
                              const char *saga, const char *reply_topic,
                              uint32_t attempt, const void *payload,
                              size_t payload_len, int bare) {
  send_action_with(f, topic, saga, reply_topic, SAGA_ACTION_DO, attempt,
                   payload, payload_len, bare);
}

static void send_command(fixture_t *f, const char *topic, const char *saga,
                         const char *reply_topic, uint32_t attempt) {
  send_command_with(f, topic, saga, reply_topic, attempt, "sku-1", 5, 0);
}

static void answer_later(uv_timer_t *t) {
  fixture_t *f = t->data;
  saga_pending_t *p = f->held;
  f->held = NULL;
  assert_int_equal(saga_participant_done(p, SAGA_OUTCOME_SUCCESS, "held", 4,
                                         NULL),
                   0);
}

/* saga "s-fail" fails, "s-retry" is retryable, "s-flaky" is retryable at
 * its first attempt only, the first command of any other saga is answered
 * a little later (so its duplicate arrives while it is still in the
 * handler), the rest at once. */
static void handler(saga_participant_t *p, const saga_command_t *cmd,
                    saga_pending_t *pending, void *arg) {
  (void)p;
  fixture_t *f = arg;
  f->handler_calls++;
  assert_string_equal(cmd->step, "reserve");
  /* the definition's action name reaches the handler */
  assert_string_equal(cmd->action_name, "reserve-stock");
  assert_int_equal(cmd->payload_len, 5);
  assert_string_equal(cmd->meta.correlation_id, "corr-1");
  char effect[160];
  snprintf(effect, sizeof effect, "%s/reserve/DO", cmd->saga_id);
  assert_string_equal(cmd->effect_key, effect);
  if (strstr(cmd->saga_id, "flaky") && cmd->attempt == 1)
    saga_participant_done(pending, SAGA_OUTCOME_RETRYABLE, NULL, 0,
                          "warehouse busy");
  else if (strstr(cmd->saga_id, "fail"))
    saga_participant_done(pending, SAGA_OUTCOME_FAILURE, NULL, 0,
                          "out of stock");
  else if (strstr(cmd->saga_id, "retry"))
    saga_participant_done(pending, SAGA_OUTCOME_RETRYABLE, NULL, 0,
                          "warehouse busy");
  else if (!f->held && f->handler_calls == 1) {
    f->held = pending;
    uv_timer_start(&f->later, answer_later, 50, 0);
  } else
    saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, "ok", 2, NULL);
}

/* The participant's decode ceiling (0: the default, 1 MiB). */
static size_t max_message_bytes;
/* librdkafka's message.max.bytes for the participant, NULL = default */
static const char *producer_max;
/* librdkafka's message.timeout.ms for the participant, NULL = default */
static const char *message_timeout;
/* librdkafka's queue.buffering.max.kbytes for the participant, NULL =
 * default */
static const char *queue_kbytes;

static saga_participant_t *open_participant_with(fixture_t *f,
                                                 const char *topic,
                                                 const char *group,
                                                 saga_idem_store_t store,
                                                 saga_handler_fn fn) {
  const char *props[16] = {
      "session.timeout.ms", "6000", "heartbeat.interval.ms", "500",
      "fetch.wait.max.ms", "5", "auto.offset.reset", "earliest",
      "linger.ms", "1"};
  size_t n = 10;
  if (producer_max) {
    props[n++] = "message.max.bytes";
    props[n++] = producer_max;
  }
  if (message_timeout) {
    props[n++] = "message.timeout.ms";
    props[n++] = message_timeout;
  }
  if (queue_kbytes) {
    props[n++] = "queue.buffering.max.kbytes";
    props[n++] = queue_kbytes;
  }
  saga_participant_config_t cfg = {
      .kafka = {.bootstrap_servers =
                    bootstrap ? bootstrap : ts_kafka_bootstrap(),
                .properties = props,
                .max_message_bytes = max_message_bytes},
      .group_id = group,
      .store = store,
  };
  saga_participant_t *p;
  char err[256];
  int rc = saga_participant_new(&f->loop, &cfg, &p, err, sizeof err);
  if (rc)
    fail_msg("%s", err);
  assert_int_equal(saga_participant_handle(p, topic, fn, f), 0);
  assert_int_equal(saga_participant_handle(p, topic, fn, f), SAGA_EEXIST);
  assert_int_equal(saga_participant_start(p, err, sizeof err), 0);
  return p;
}

static saga_participant_t *open_participant(fixture_t *f, const char *topic,
                                            const char *group,
                                            saga_idem_store_t store) {
  return open_participant_with(f, topic, group, store, handler);
}

static void on_closed(void *arg) {
  ((fixture_t *)arg)->closed++;
}

static int seen_at_least(void *arg) {
  fixture_t *f = arg;
  return f->n_seen >= f->want;
}

static int wait_seen(fixture_t *f, int n) {
  f->want = n;
  int ok = ct_run_until_pred(&f->loop, seen_at_least, f, 30000);
  if (!ok)
    fprintf(stderr, "waited for %d replies, saw %d; handler called %d times\n",
            n, f->n_seen, f->handler_calls);
  return ok;
}

static const seen_t *find_key(const fixture_t *f, const char *key, int nth) {
  for (int i = 0; i < f->n_seen; i++)
    if (!strcmp(f->seen[i].key, key) && nth-- == 0)
      return &f->seen[i];
  return NULL;
}

static void setup_fixture(fixture_t *f) {
  memset(f, 0, sizeof *f);
  uv_loop_init(&f->loop);
  uv_timer_init(&f->loop, &f->later);
  f->later.data = f;
}

static void teardown_fixture(fixture_t *f, saga_participant_t *p) {
  saga_participant_close(p, on_closed, f);
  saga_kloop_close(f->peer, on_closed, f);
  uv_close((uv_handle_t *)&f->later, NULL);
  ct_loop_finish(&f->loop);
  assert_int_equal(f->closed, 2);
}

typedef struct acked_wait {
  saga_participant_t *p;
  uint64_t want;
} acked_wait_t;

static int replies_acked_at_least(void *arg) {
  acked_wait_t *w = arg;
  saga_participant_stats_t st;
  saga_participant_stats(w->p, &st);
  return st.replies_acked >= w->want;
}

/* The counters, once `acked` replies have been acknowledged (delivery
 * reports may come after the peer read the replies). */
static void check_stats(fixture_t *f, saga_participant_t *p, uint64_t handled,
                        uint64_t duplicates, uint64_t acked) {
  acked_wait_t aw = {p, acked};
  assert_true(ct_run_until_pred(&f->loop, replies_acked_at_least, &aw, 30000));
  saga_participant_stats_t st;
  saga_participant_stats(p, &st);
  assert_int_equal(st.handled, handled);
  assert_int_equal(st.duplicates, duplicates);
  assert_int_equal(st.replies_acked, acked);
  assert_int_equal(st.errors, 0);
}

static void test_redelivered_command_never_reaches_the_handler_twice(
    void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("inventory.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("inventory"));
  const char *reply_topics[] = {replies};
  open_peer(&f, reply_topics, 1);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  saga_participant_t *p = open_participant(&f, topic, group, store);

  send_command(&f, topic, "s-1", replies, 1);
  send_command(&f, topic, "s-1", replies, 1); /* while the first is held */
  send_command(&f, topic, "s-fail", replies, 1);
  send_command(&f, topic, "s-retry", replies, 1);
  assert_true(wait_seen(&f, 4));
  send_command(&f, topic, "s-1", replies, 1); /* after it was answered */
  send_command(&f, topic, "s-1", replies, 2); /* the same effect: recorded */
  assert_true(wait_seen(&f, 6));

  assert_int_equal(f.handler_calls, 3); /* s-1#1, s-fail, s-retry */
  for (int nth = 0; nth < 3; nth++) {
    const seen_t *s = find_key(&f, "s-1/reserve/DO/1", nth);
    assert_non_null(s);
    assert_int_equal(s->outcome, SAGA_OUTCOME_SUCCESS);
    assert_string_equal(s->payload, "held"); /* the first reply, again */
    assert_string_equal(s->correlation, "corr-1");
  }
  const seen_t *s = find_key(&f, "s-fail/reserve/DO/1", 0);
  assert_non_null(s);
  assert_int_equal(s->outcome, SAGA_OUTCOME_FAILURE);
  assert_string_equal(s->reason, "out of stock");
  s = find_key(&f, "s-retry/reserve/DO/1", 0);
  assert_non_null(s);
  assert_int_equal(s->outcome, SAGA_OUTCOME_RETRYABLE);
  s = find_key(&f, "s-1/reserve/DO/2", 0);
  assert_non_null(s);
  assert_int_equal(s->attempt, 2);
  assert_string_equal(s->payload, "held"); /* attempt 1's outcome */

  check_stats(&f, p, 3, 3, 6);
  teardown_fixture(&f, p);
}

/* Attempt 1 is held and answered RETRYABLE later; attempt 2, sent twice
 * while it is held, is answered SUCCESS at once. */
static void answer_retryable_later(uv_timer_t *t) {
  fixture_t *f = t->data;
  saga_pending_t *p = f->held;
  f->held = NULL;
  assert_int_equal(saga_participant_done(p, SAGA_OUTCOME_RETRYABLE, NULL, 0,
                                         "warehouse busy"),
                   0);
}

static void slow_retry_handler(saga_participant_t *p, const saga_command_t *cmd,
                               saga_pending_t *pending, void *arg) {
  (void)p;
  fixture_t *f = arg;
  f->handler_calls++;
  if (cmd->attempt == 1) {
    f->held = pending;
    uv_timer_start(&f->later, answer_retryable_later, 50, 0);
  } else {
    saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, "ok", 2, NULL);
  }
}

/* Two copies of attempt 2 queue behind attempt 1, which is in the handler.
 * Attempt 1's RETRYABLE hands the first copy to the handler, which applies
 * the effect (SUCCESS, answered at once); the second copy must get that
 * reply, not the handler: the first copy's record is still being written
 * when the second is judged. It reached the handler a second time. */
static void test_copies_queued_behind_a_retryable_attempt_apply_once(
    void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("copies.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("copies"));
  const char *reply_topics[] = {replies};
  open_peer(&f, reply_topics, 1);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  saga_participant_t *p =
      open_participant_with(&f, topic, group, store, slow_retry_handler);
  send_command(&f, topic, "s-copy", replies, 1);
  send_command(&f, topic, "s-copy", replies, 2);
  send_command(&f, topic, "s-copy", replies, 2);
  assert_true(wait_seen(&f, 3));
  assert_int_equal(f.handler_calls, 2); /* attempt 1, attempt 2 once */
  const seen_t *s = find_key(&f, "s-copy/reserve/DO/1", 0);
  assert_non_null(s);
  assert_int_equal(s->outcome, SAGA_OUTCOME_RETRYABLE);
  for (int nth = 0; nth < 2; nth++) {
    s = find_key(&f, "s-copy/reserve/DO/2", nth);
    assert_non_null(s);
    assert_int_equal(s->outcome, SAGA_OUTCOME_SUCCESS);
    assert_string_equal(s->payload, "ok");
  }
  check_stats(&f, p, 2, 1, 3);
  teardown_fixture(&f, p);
}

/* Attempt 1 of s-lost is handled but its reply goes to a topic nobody
 * reads (it reached the coordinator after its deadline, or never); the
 * coordinator's attempt 2 must not apply the effect again. s-flaky's
 * attempt 1 is RETRYABLE: attempt 2 runs the step, and attempt 4 gets
 * attempt 2's recorded outcome. s-fail's attempt 1 is FAILURE (nothing
 * applied): its redelivery gets FAILURE again, its attempt 2 (a retriable
 * step, or a compensation retried) runs the step again, and attempt 1
 * delivered once more after that is answered with attempt 2's reply. */
static void later_attempts_follow_the_recorded_outcome(saga_idem_store_t store,
                                                       const char *tag) {
  fixture_t f;
  setup_fixture(&f);
  f.held = (saga_pending_t *)1; /* answer at once */
  char topic[128], replies[128], lost[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name(tag));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(lost, sizeof lost, "%s", ts_unique_name("lost"));
  snprintf(group, sizeof group, "%s", ts_unique_name("inventory"));
  const char *reply_topics[] = {replies};
  open_peer(&f, reply_topics, 1);
  saga_participant_t *p = open_participant(&f, topic, group, store);

  send_command(&f, topic, "s-lost", lost, 1);    /* applied, reply lost */
  send_command(&f, topic, "s-lost", replies, 2); /* the coordinator's retry */
  send_command(&f, topic, "s-flaky", replies, 1);
  send_command(&f, topic, "s-flaky", replies, 2);
  send_command(&f, topic, "s-flaky", lost, 3);
  send_command(&f, topic, "s-flaky", replies, 4);
  send_command(&f, topic, "s-fail", replies, 1);
  send_command(&f, topic, "s-fail", replies, 1); /* redelivered */
  send_command(&f, topic, "s-fail", replies, 2);
  send_command(&f, topic, "s-fail", replies, 1); /* stale */
  assert_true(wait_seen(&f, 8));

  /* s-lost#1, s-flaky#1 (RETRYABLE), s-flaky#2, s-fail#1, s-fail#2; never
   * s-lost#2, s-flaky#3/#4, s-fail#1 again */
  assert_int_equal(f.handler_calls, 5);
  const seen_t *s = find_key(&f, "s-lost/reserve/DO/2", 0);
  assert_non_null(s);
  assert_int_equal(s->attempt, 2); /* addressed to the new attempt */
  assert_int_equal(s->outcome, SAGA_OUTCOME_SUCCESS);
  assert_string_equal(s->payload, "ok");
  assert_string_equal(s->correlation, "corr-1");
  assert_null(find_key(&f, "s-lost/reserve/DO/1", 0));
  s = find_key(&f, "s-flaky/reserve/DO/1", 0);
  assert_non_null(s);
  assert_int_equal(s->outcome, SAGA_OUTCOME_RETRYABLE);
  s = find_key(&f, "s-flaky/reserve/DO/2", 0);
  assert_non_null(s);
  assert_int_equal(s->outcome, SAGA_OUTCOME_SUCCESS);
  s = find_key(&f, "s-flaky/reserve/DO/4", 0);
  assert_non_null(s);
  assert_int_equal(s->attempt, 4);
  assert_int_equal(s->outcome, SAGA_OUTCOME_SUCCESS);
  for (int nth = 0; nth < 3; nth++) {
    s = find_key(&f, "s-fail/reserve/DO/1", nth);
    assert_non_null(s);
    assert_int_equal(s->outcome, SAGA_OUTCOME_FAILURE);
  }
  assert_non_null(find_key(&f, "s-fail/reserve/DO/2", 0));

  /* duplicates: s-lost#2, s-flaky#3, s-flaky#4, s-fail#1 twice */
  check_stats(&f, p, 5, 5, 10);
  f.held = NULL;
  teardown_fixture(&f, p);
}

static void test_a_retry_of_an_applied_effect_gets_the_recorded_reply(
    void **state) {
  (void)state;
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  later_attempts_follow_the_recorded_outcome(store, "inventory.commands");
}

/* A PostgreSQL store in a new database named after db (*ci: its
 * conninfo, to drop). */
static PGconn *open_pg_store(const char *db, char **ci,
                             saga_idem_store_t *store) {
  ts_require_pg();
  *ci = ts_pg_create_database(db);
  PGconn *conn = PQconnectdb(*ci);
  assert_int_equal(PQstatus(conn), CONNECTION_OK);
  char err[256];
  assert_int_equal(saga_idem_store_pg(conn, store, err, sizeof err), 0);
  return conn;
}

static void test_a_retry_after_a_lost_reply_applies_nothing_with_postgres(
    void **state) {
  (void)state;
  char *ci;
  saga_idem_store_t store;
  PGconn *conn = open_pg_store("client_effect", &ci, &store);
  later_attempts_follow_the_recorded_outcome(store, "stock.commands");
  /* one row per effect, holding its outcome, not its RETRYABLE attempt */
  PGresult *r = PQexec(conn, "SELECT key, outcome, attempt"
                             " FROM saga_idempotency ORDER BY key");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_int_equal(PQntuples(r), 3);
  assert_string_equal(PQgetvalue(r, 0, 0), "s-fail/reserve/DO");
  assert_string_equal(PQgetvalue(r, 0, 1), "2");
  assert_string_equal(PQgetvalue(r, 0, 2), "2");
  assert_string_equal(PQgetvalue(r, 1, 0), "s-flaky/reserve/DO");
  assert_string_equal(PQgetvalue(r, 1, 1), "1");
  assert_string_equal(PQgetvalue(r, 1, 2), "2");
  assert_string_equal(PQgetvalue(r, 2, 0), "s-lost/reserve/DO");
  assert_string_equal(PQgetvalue(r, 2, 2), "1");
  PQclear(r);
  PQfinish(conn);
  ts_pg_drop_database(ci);
}

/* DO: "fail" sagas fail, the first "held" one is answered 50 ms later,
 * the rest succeed; COMPENSATE: undone. Counts each action's calls. */
static int do_calls, undo_calls;

static void step_handler(saga_participant_t *p, const saga_command_t *cmd,
                         saga_pending_t *pending, void *arg) {
  (void)p;
  fixture_t *f = arg;
  f->handler_calls++;
  if (cmd->action == SAGA_ACTION_COMPENSATE) {
    undo_calls++;
    assert_string_equal(cmd->action_name, "release-stock");
    saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, "undone", 6, NULL);
  } else if (do_calls++, strstr(cmd->saga_id, "fail")) {
    saga_participant_done(pending, SAGA_OUTCOME_FAILURE, NULL, 0,
                          "out of stock");
  } else if (strstr(cmd->saga_id, "held") && !f->held) {
    f->held = pending;
    uv_timer_start(&f->later, answer_later, 50, 0);
  } else if (strstr(cmd->saga_id, "late") && cmd->attempt == 1) {
    f->held = pending; /* RETRYABLE, 50 ms later */
    uv_timer_start(&f->later, answer_retryable_later, 50, 0);
  } else {
    saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, "ok", 2, NULL);
  }
}

/* docs/protocol.md, "What a participant must do": a COMPENSATE whose DO
 * was never applied (never seen, or answered FAILURE) is recorded as
 * voided and answered SUCCESS without the handler; a DO that arrives
 * after that -- overtaken by its own compensation -- is refused (FAILURE)
 * and never applied, whatever its attempt. A COMPENSATE of an applied DO
 * reaches the handler, and so does one that arrives while its DO is still
 * in the handler (no outcome recorded: only the handler knows). */
static void compensations_undo_only_what_was_applied(saga_idem_store_t store,
                                                     const char *tag) {
  fixture_t f;
  setup_fixture(&f);
  do_calls = undo_calls = 0;
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name(tag));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("inventory"));
  const char *reply_topics[] = {replies};
  open_peer(&f, reply_topics, 1);
  saga_participant_t *p =
      open_participant_with(&f, topic, group, store, step_handler);

  const saga_action_t DO = SAGA_ACTION_DO, UNDO = SAGA_ACTION_COMPENSATE;
  send_action_with(&f, topic, "s-void", replies, UNDO, 1, "x", 1, 0);
  send_action_with(&f, topic, "s-void", replies, DO, 1, "x", 1, 0);
  send_action_with(&f, topic, "s-void", replies, DO, 2, "x", 1, 0);
  send_action_with(&f, topic, "s-undo", replies, DO, 1, "x", 1, 0);
  send_action_with(&f, topic, "s-undo", replies, UNDO, 1, "x", 1, 0);
  send_action_with(&f, topic, "s-fail", replies, DO, 1, "x", 1, 0);
  send_action_with(&f, topic, "s-fail", replies, UNDO, 1, "x", 1, 0);
  send_action_with(&f, topic, "s-fail", replies, DO, 2, "x", 1, 0);
  send_action_with(&f, topic, "s-held", replies, DO, 1, "x", 1, 0);
  send_action_with(&f, topic, "s-held", replies, UNDO, 1, "x", 1, 0);
  assert_true(wait_seen(&f, 10));

  /* DO: s-undo, s-fail#1, s-held; COMPENSATE: s-undo, s-held */
  assert_int_equal(do_calls, 3);
  assert_int_equal(undo_calls, 2);
  const char *voided[] = {"s-void/reserve/COMPENSATE/1",
                          "s-fail/reserve/COMPENSATE/1"};
  for (int i = 0; i < 2; i++) {
    const seen_t *s = find_key(&f, voided[i], 0);
    assert_non_null(s);
    assert_int_equal(s->outcome, SAGA_OUTCOME_SUCCESS);
    assert_string_equal(s->reason, "voided: the step was never applied");
  }
  const char *refused[] = {"s-void/reserve/DO/1", "s-void/reserve/DO/2",
                           "s-fail/reserve/DO/2"};
  for (int i = 0; i < 3; i++) {
    const seen_t *s = find_key(&f, refused[i], 0);
    assert_non_null(s);
    assert_int_equal(s->outcome, SAGA_OUTCOME_FAILURE);
    assert_non_null(strstr(s->reason, "compensated before"));
  }
  const char *undone[] = {"s-undo/reserve/COMPENSATE/1",
                          "s-held/reserve/COMPENSATE/1"};
  for (int i = 0; i < 2; i++) {
    const seen_t *s = find_key(&f, undone[i], 0);
    assert_non_null(s);
    assert_string_equal(s->payload, "undone");
  }
  /* s-held's compensation went to the handler while its DO was still
   * there (no outcome recorded yet: only the handler knows), not voided;
   * the DO answered 50 ms later */
  const seen_t *held = find_key(&f, "s-held/reserve/DO/1", 0);
  assert_non_null(held);
  assert_string_equal(held->payload, "held");
  assert_true(held > find_key(&f, "s-held/reserve/COMPENSATE/1", 0));
  /* the refused DOs came from the store: duplicates */
  check_stats(&f, p, 5, 3, 10);
  teardown_fixture(&f, p);
}

/* docs/protocol.md 3b, for a compensation the handler made: DO attempt 1
 * is in the handler when its COMPENSATE arrives, which then goes to the
 * handler too (no outcome recorded yet) and undoes the step; DO attempt 1
 * ends RETRYABLE. DO attempt 2, arriving after the compensation, must be
 * refused, never applied. It reached the handler: only a voided
 * compensation recorded the DO's refusal. */
static void test_a_do_after_a_handled_compensation_is_refused(void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  do_calls = undo_calls = 0;
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("late.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("late"));
  const char *reply_topics[] = {replies};
  open_peer(&f, reply_topics, 1);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  saga_participant_t *p =
      open_participant_with(&f, topic, group, store, step_handler);
  const saga_action_t DO = SAGA_ACTION_DO, UNDO = SAGA_ACTION_COMPENSATE;
  send_action_with(&f, topic, "s-late", replies, DO, 1, "x", 1, 0);
  send_action_with(&f, topic, "s-late", replies, UNDO, 1, "x", 1, 0);
  assert_true(wait_seen(&f, 2));
  send_action_with(&f, topic, "s-late", replies, DO, 2, "x", 1, 0);
  assert_true(wait_seen(&f, 3));
  assert_int_equal(do_calls, 1);
  assert_int_equal(undo_calls, 1);
  const seen_t *s = find_key(&f, "s-late/reserve/COMPENSATE/1", 0);
  assert_non_null(s);
  assert_string_equal(s->payload, "undone");
  s = find_key(&f, "s-late/reserve/DO/1", 0);
  assert_non_null(s);
  assert_int_equal(s->outcome, SAGA_OUTCOME_RETRYABLE);
  s = find_key(&f, "s-late/reserve/DO/2", 0);
  assert_non_null(s);
  assert_int_equal(s->outcome, SAGA_OUTCOME_FAILURE);
  assert_non_null(strstr(s->reason, "compensated before"));
  check_stats(&f, p, 2, 1, 3);
  teardown_fixture(&f, p);
}

static void test_a_compensation_of_an_unapplied_step_is_voided_memory(
    void **state) {
  (void)state;
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  compensations_undo_only_what_was_applied(store, "inventory.commands");
}

static void test_a_compensation_of_an_unapplied_step_is_voided_postgres(
    void **state) {
  (void)state;
  char *ci;
  saga_idem_store_t store;
  PGconn *conn = open_pg_store("client_void", &ci, &store);
  compensations_undo_only_what_was_applied(store, "stock.commands");
  PQfinish(conn);
  ts_pg_drop_database(ci);
}

/* Every kind of poison on a command topic (docs/protocol.md, "What a
 * participant must do", 2): each lands in the dead-letter topic with its
 * reason and source, is counted, and the command behind it is handled. */
static void test_poison_messages_land_in_the_dead_letter_topic(void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128], dlq[160];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("payment.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("payment"));
  snprintf(dlq, sizeof dlq, "%s.dlq", topic);
  const char *topics[] = {replies, dlq};
  open_peer(&f, topics, 2);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  max_message_bytes = 2048;
  saga_participant_t *p = open_participant(&f, topic, group, store);
  max_message_bytes = 0;

  static const struct {
    const char *what, *reason; /* reason: a part of saga-dlq-reason */
  } poison[] = {
      {"undecodable protobuf", "SAGA_EDECODE"},
      {"no headers, not protobuf", "is missing"},
      {"an empty Reply", "\"saga.v1.Reply\""},
      {"a valid Reply", "SAGA_ETYPE"},
      {"a valid StartSaga", "\"saga.v1.StartSaga\""},
      {"a valid Command without headers", "is missing"},
      {"a Command past the ceiling", "SAGA_ETOOBIG"},
  };
  const size_t npoison = sizeof poison / sizeof poison[0];
  const uint8_t garbage[] = {0x0a, 0x7f, 'x'};
  send_raw(&f, topic, garbage, sizeof garbage, "saga.v1.Command");
  send_raw(&f, topic, "{}", 2, NULL);
  send_raw(&f, topic, "", 0, "saga.v1.Reply");
  Saga__V1__Reply rep;
  saga__v1__reply__init(&rep);
  rep.saga_id = SAGA_MUT("s-p");
  rep.step = SAGA_MUT("reserve");
  rep.action = SAGA__V1__ACTION__ACTION_DO;
  rep.attempt = 1;
  rep.idempotency_key = SAGA_MUT("s-p/reserve/DO/1");
  rep.outcome = SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  send_msg(&f, topic, "s-p", &rep.base, 0);
  Saga__V1__StartSaga start;
  saga__v1__start_saga__init(&start);
  start.saga_id = SAGA_MUT("s-p");
  start.saga_type = SAGA_MUT("order");
  send_msg(&f, topic, "s-p", &start.base, 0);
  send_command_with(&f, topic, "s-bare", replies, 1, "sku-1", 5, 1);
  static char big[4096];
  memset(big, 'x', sizeof big);
  send_command_with(&f, topic, "s-big", replies, 1, big, sizeof big, 0);
  send_command(&f, topic, "s-after", replies, 1); /* the partition moves on */
  assert_true(wait_seen(&f, (int)npoison + 1));

  int dead = 0;
  for (int i = 0; i < f.n_seen; i++) {
    const seen_t *s = &f.seen[i];
    if (!s->dlq_reason[0])
      continue;
    dead++;
    assert_non_null(strstr(s->dlq_source, topic));
    /* <topic>/0/<offset>: the offset says which poison it was */
    const char *off = strrchr(s->dlq_source, '/');
    assert_non_null(off);
    long k = strtol(off + 1, NULL, 10);
    assert_true(k >= 0 && (size_t)k < npoison);
    printf("# %s: %s\n", poison[k].what, s->dlq_reason);
    if (!strstr(s->dlq_reason, poison[k].reason))
      fail_msg("%s: reason \"%s\" lacks \"%s\"", poison[k].what,
               s->dlq_reason, poison[k].reason);
  }
  assert_int_equal(dead, (int)npoison);
  assert_non_null(find_key(&f, "s-after/reserve/DO/1", 0));
  saga_participant_stats_t st;
  saga_participant_stats(p, &st);
  assert_int_equal(st.dead_lettered, npoison);
  assert_int_equal(st.handled, 1);
  assert_int_equal(st.errors, 0);
  teardown_fixture(&f, p);
}


/* A poison larger than the participant's producer may send: its dead
 * letter keeps the headers, drops the value and says so (size and
 * saga-dlq-truncated), and the partition moves on -- never a silent cut,
 * never a lost input. */
static void test_a_poison_too_large_to_forward_is_dead_lettered_cut(
    void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128], dlq[160];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("payment.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("payment"));
  snprintf(dlq, sizeof dlq, "%s.dlq", topic);
  const char *topics[] = {replies, dlq};
  open_peer(&f, topics, 2);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  max_message_bytes = 2048; /* the 8 KiB command is past the ceiling */
  producer_max = "4096";    /* and too large to forward whole */
  saga_participant_t *p = open_participant(&f, topic, group, store);
  max_message_bytes = 0;
  producer_max = NULL;
  static char big[8192];
  memset(big, 'x', sizeof big);
  send_command_with(&f, topic, "s-huge", replies, 1, big, sizeof big, 0);
  send_command(&f, topic, "s-after", replies, 1); /* the partition moves on */
  assert_true(wait_seen(&f, 2));
  int dead = 0;
  for (int i = 0; i < f.n_seen; i++) {
    const seen_t *s = &f.seen[i];
    if (!s->dlq_reason[0])
      continue;
    dead++;
    assert_non_null(strstr(s->dlq_reason, "SAGA_ETOOBIG"));
    assert_int_equal(s->value_len, 0);
    assert_non_null(strstr(s->dlq_truncated, "dropped"));
  }
  assert_int_equal(dead, 1);
  assert_non_null(find_key(&f, "s-after/reserve/DO/1", 0));
  saga_participant_stats_t st;
  saga_participant_stats(p, &st);
  assert_int_equal(st.dead_lettered, 1);
  teardown_fixture(&f, p);
}
static const char *wait_last_error(fixture_t *f, saga_participant_t *p,
                                   const char *needle);

static int a_dead_letter_seen(void *arg) {
  const fixture_t *f = arg;
  for (int i = 0; i < f->n_seen; i++)
    if (f->seen[i].dlq_reason[0])
      return 1;
  return 0;
}

static int reply_to_after_seen(void *arg) {
  return find_key(arg, "s-after/reserve/DO/1", 0) != NULL;
}

/* A dead letter Kafka refuses for any reason but its size -- here a
 * poison of 2000 bytes past the producer's local queue of 1 KiB
 * (queue.buffering.max.kbytes): "Local: Queue full" -- keeps its input:
 * nothing goes to the dead letters, the input is abandoned (counted, the
 * real reason in the last error) and redelivered whole to the next
 * member, which dead-letters it with its value. Before, the dead letter
 * went out without its value, saying "too large for the producer", and
 * the input was committed: its bytes were lost for a false reason. */
static void test_a_dead_letter_kafka_refuses_keeps_its_input(void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128], dlq[160];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("payment.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("payment"));
  snprintf(dlq, sizeof dlq, "%s.dlq", topic);
  const char *topics[] = {replies, dlq};
  open_peer(&f, topics, 2);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  queue_kbytes = "1";
  saga_participant_t *p = open_participant(&f, topic, group, store);
  queue_kbytes = NULL;
  static uint8_t poison[2000];
  memset(poison, 0x7f, sizeof poison); /* no protobuf: SAGA_EDECODE */
  send_raw(&f, topic, poison, sizeof poison, "saga.v1.Command");
  send_command(&f, topic, "s-after", replies, 1); /* the partition moves on */
  assert_true(ct_run_until_pred(&f.loop, reply_to_after_seen, &f, 30000));
  const char *why = wait_last_error(
      &f, p, rd_kafka_err2str(RD_KAFKA_RESP_ERR__QUEUE_FULL));
  printf("# %s\n", why);
  assert_non_null(strstr(why, "dead letter of "));
  assert_null(strstr(why, "too large"));
  saga_participant_stats_t st;
  saga_participant_stats(p, &st);
  assert_int_equal(st.dead_lettered, 1);
  assert_int_equal(st.errors, 1);
  /* (a dead letter sent would have come with the reply) */
  assert_false(ct_run_until_pred(&f.loop, a_dead_letter_seen, &f, 500));

  /* The next member of the group gets the input again, whole. */
  saga_participant_close(p, on_closed, &f);
  assert_true(ct_run_until(&f.loop, &f.closed, 10000));
  f.closed = 0;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  p = open_participant(&f, topic, group, store);
  assert_true(ct_run_until_pred(&f.loop, a_dead_letter_seen, &f, 30000));
  for (int i = 0; i < f.n_seen; i++) {
    const seen_t *s = &f.seen[i];
    if (!s->dlq_reason[0])
      continue;
    printf("# %s: %s\n", s->dlq_source, s->dlq_reason);
    assert_non_null(strstr(s->dlq_reason, "SAGA_EDECODE"));
    assert_int_equal(s->value_len, sizeof poison);
    assert_string_equal(s->dlq_truncated, "");
    assert_non_null(strstr(s->dlq_source, "/0/0"));
  }
  teardown_fixture(&f, p);
}

/* ---- arguments and replies that cannot go as given ---- */

/* What the edge handler did with each command, by saga id. */
static int edge_rc[8];
static int edge_found[8]; /* the store's record of the effect, after done */
static saga_idem_store_t edge_store; /* the participant's, to look into */

static void edge_found_cb(void *arg, int err, int found,
                          const saga_recorded_reply_t *r) {
  (void)r;
  assert_int_equal(err, 0);
  *(int *)arg = found;
}

/* saga "s-big" answers with a payload the size of the participant's
 * ceiling (the encoded Reply is past it), "s-kafka" with one past the
 * producer's message.max.bytes, "s-nullpay" with a NULL payload of 5
 * bytes, "s-utf8" with a reason that is not UTF-8; the rest succeed. */
static void edge_handler(saga_participant_t *p, const saga_command_t *cmd,
                         saga_pending_t *pending, void *arg) {
  (void)p;
  fixture_t *f = arg;
  static char big[8192];
  memset(big, 'x', sizeof big);
  int k = f->handler_calls++;
  assert_true(k < 8);
  char key[128]; /* cmd is gone once done() refused it */
  snprintf(key, sizeof key, "%s", cmd->effect_key);
  if (!strcmp(cmd->saga_id, "s-big"))
    edge_rc[k] = saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, big,
                                       max_message_bytes, NULL);
  else if (!strcmp(cmd->saga_id, "s-kafka"))
    edge_rc[k] = saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, big,
                                       4096, NULL);
  else if (!strcmp(cmd->saga_id, "s-nullpay"))
    edge_rc[k] = saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, NULL, 5,
                                       NULL);
  else if (!strcmp(cmd->saga_id, "s-utf8"))
    edge_rc[k] = saga_participant_done(pending, SAGA_OUTCOME_FAILURE, NULL, 0,
                                       "declined \xff\xfe");
  else
    edge_rc[k] = saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, "ok", 2,
                                       NULL);
  edge_store.lookup(edge_store.ctx, key, edge_found_cb, &edge_found[k]);
}

/* A reply that Kafka could never carry (past max_message_bytes once
 * encoded, or past the producer's message.max.bytes) is SAGA_ETOOBIG from
 * saga_participant_done and is not recorded; a NULL payload with a length
 * or a reason that is not UTF-8 is SAGA_EINVAL. Before, done() said 0, the
 * reply was recorded and never sent: every redelivery and every later
 * attempt got the recorded reply, which could not be sent either. */
static void test_a_reply_kafka_cannot_carry_is_refused_not_recorded(
    void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  memset(edge_rc, 0x7f, sizeof edge_rc);
  memset(edge_found, 0x7f, sizeof edge_found);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("edge.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("edge"));
  const char *topics[] = {replies};
  open_peer(&f, topics, 1);
  assert_int_equal(saga_idem_store_memory(&edge_store), 0);
  max_message_bytes = 2048;
  producer_max = "4000"; /* message.max.bytes, below max_message_bytes */
  saga_participant_t *p =
      open_participant_with(&f, topic, group, edge_store, edge_handler);
  send_command(&f, topic, "s-big", replies, 1);
  send_command(&f, topic, "s-nullpay", replies, 1);
  send_command(&f, topic, "s-utf8", replies, 1);
  send_command(&f, topic, "s-after", replies, 1);
  assert_true(wait_seen(&f, 1));
  max_message_bytes = 0;
  producer_max = NULL;
  assert_int_equal(f.handler_calls, 4);
  assert_int_equal(edge_rc[0], SAGA_ETOOBIG);
  assert_int_equal(edge_rc[1], SAGA_EINVAL);
  assert_int_equal(edge_rc[2], SAGA_EINVAL);
  assert_int_equal(edge_rc[3], 0);
  assert_int_equal(edge_found[0], 0);
  assert_int_equal(edge_found[1], 0);
  assert_int_equal(edge_found[2], 0);
  assert_int_equal(edge_found[3], 1);
  /* only s-after was answered; the others wait for the next attempt */
  assert_int_equal(f.n_seen, 1);
  assert_string_equal(f.seen[0].key, "s-after/reserve/DO/1");
  saga_participant_stats_t st;
  saga_participant_stats(p, &st);
  assert_int_equal(st.errors, 3);
  /* the last refusal says which reply and why */
  assert_non_null(
      strstr(saga_participant_last_error(p), "\"s-utf8/reserve/DO/1\""));
  assert_non_null(strstr(saga_participant_last_error(p),
                         "SAGA_EINVAL: reason is not UTF-8"));
  teardown_fixture(&f, p);

  /* The producer's own ceiling (4000 bytes here) is below the library's
   * (1 MiB): a 4096-byte reply is refused the same way. */
  setup_fixture(&f);
  snprintf(topic, sizeof topic, "%s", ts_unique_name("edge.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("edge"));
  open_peer(&f, topics, 1);
  assert_int_equal(saga_idem_store_memory(&edge_store), 0);
  producer_max = "4000";
  p = open_participant_with(&f, topic, group, edge_store, edge_handler);
  producer_max = NULL;
  send_command(&f, topic, "s-kafka", replies, 1);
  send_command(&f, topic, "s-after2", replies, 1);
  assert_true(wait_seen(&f, 1));
  assert_int_equal(edge_rc[0], SAGA_ETOOBIG);
  assert_int_equal(edge_found[0], 0);
  assert_string_equal(f.seen[0].key, "s-after2/reserve/DO/1");
  assert_non_null(
      strstr(saga_participant_last_error(p), "\"s-kafka/reserve/DO/1\""));
  assert_non_null(
      strstr(saga_participant_last_error(p), "message.max.bytes (4000)"));
  teardown_fixture(&f, p);
}

/* A store that answers later, as saga_idem_store_t allows: the memory
 * store with every record's callback deferred to a timer. */
typedef struct later_store {
  saga_idem_store_t inner;
  uv_loop_t *loop;
} later_store_t;

typedef struct later_call {
  uv_timer_t timer;
  saga_store_record_cb cb;
  void *arg;
  int err;
} later_call_t;

static void later_fire(uv_timer_t *t) {
  later_call_t *c = t->data;
  c->cb(c->arg, c->err);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void later_note(void *arg, int err) {
  *(int *)arg = err;
}

static void later_record(void *ctx, const char *key,
                         const saga_recorded_reply_t *r,
                         saga_store_record_cb cb, void *arg) {
  later_store_t *s = ctx;
  later_call_t *c = calloc(1, sizeof *c);
  assert_non_null(c);
  s->inner.record(s->inner.ctx, key, r, later_note, &c->err);
  c->cb = cb;
  c->arg = arg;
  uv_timer_init(s->loop, &c->timer);
  c->timer.data = c;
  uv_timer_start(&c->timer, later_fire, 20, 0);
}

static void later_lookup(void *ctx, const char *key, saga_store_lookup_cb cb,
                         void *arg) {
  later_store_t *s = ctx;
  s->inner.lookup(s->inner.ctx, key, cb, arg);
}

static void later_destroy(void *ctx) {
  later_store_t *s = ctx;
  s->inner.destroy(s->inner.ctx);
  free(s);
}

/* The payload comes from the handler's stack and is gone (overwritten)
 * when the record is answered. */
static void stack_handler(saga_participant_t *p, const saga_command_t *cmd,
                          saga_pending_t *pending, void *arg) {
  (void)p;
  (void)cmd;
  fixture_t *f = arg;
  f->handler_calls++;
  char out[16], why[16];
  snprintf(out, sizeof out, "from-stack");
  snprintf(why, sizeof why, "stack-reason");
  assert_int_equal(saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, out,
                                         strlen(out), why),
                   0);
  memset(out, 'Z', sizeof out);
  memset(why, 'Z', sizeof why - 1);
}

/* Before, the participant passed its record callback a context on
 * saga_participant_done's stack: a store answering later crashed it. */
static void test_a_store_that_answers_later_gets_the_reply_it_was_given(
    void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("later.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("later"));
  const char *topics[] = {replies};
  open_peer(&f, topics, 1);
  later_store_t *ls = calloc(1, sizeof *ls);
  assert_non_null(ls);
  ls->loop = &f.loop;
  assert_int_equal(saga_idem_store_memory(&ls->inner), 0);
  saga_idem_store_t store = {.ctx = ls,
                             .lookup = later_lookup,
                             .record = later_record,
                             .destroy = later_destroy};
  saga_participant_t *p =
      open_participant_with(&f, topic, group, store, stack_handler);
  send_command(&f, topic, "s-later", replies, 1);
  send_command(&f, topic, "s-later", replies, 1); /* a redelivery */
  assert_true(wait_seen(&f, 2));
  assert_int_equal(f.handler_calls, 1);
  for (int i = 0; i < 2; i++) {
    assert_string_equal(f.seen[i].key, "s-later/reserve/DO/1");
    assert_string_equal(f.seen[i].payload, "from-stack");
    assert_string_equal(f.seen[i].reason, "stack-reason");
  }
  teardown_fixture(&f, p);
}

static void hold_handler(saga_participant_t *p, const saga_command_t *cmd,
                         saga_pending_t *pending, void *arg) {
  (void)p;
  (void)cmd;
  fixture_t *f = arg;
  f->handler_calls++;
  f->held = pending;
}

/* A handler that answers after the participant closed: its pending (and
 * the command it borrows) stay valid, and saga_participant_done says
 * SAGA_ECANCELED and frees it. Before, close freed the pending under the
 * handler: the late done() used freed memory. */
static void test_a_command_held_across_close_is_cancelled_not_freed(
    void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("held.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("held"));
  const char *topics[] = {replies};
  open_peer(&f, topics, 1);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  saga_participant_t *p =
      open_participant_with(&f, topic, group, store, hold_handler);
  send_command(&f, topic, "s-held", replies, 1);
  send_command(&f, topic, "s-held", replies, 1); /* queued behind it */
  assert_true(ct_run_until(&f.loop, &f.handler_calls, 30000));
  saga_pending_t *held = f.held;
  f.held = NULL;
  saga_participant_close(p, on_closed, &f);
  assert_true(ct_run_until(&f.loop, &f.closed, 30000));
  assert_int_equal(saga_participant_done(held, SAGA_OUTCOME_SUCCESS, "late",
                                         4, NULL),
                   SAGA_ECANCELED);
  assert_int_equal(f.handler_calls, 1);
  saga_kloop_close(f.peer, on_closed, &f);
  uv_close((uv_handle_t *)&f.later, NULL);
  ct_loop_finish(&f.loop);
  assert_int_equal(f.closed, 2);
  assert_int_equal(f.n_seen, 0);
}

static void never_called(saga_participant_t *p, const saga_command_t *cmd,
                         saga_pending_t *pending, void *arg) {
  (void)p;
  (void)cmd;
  (void)pending;
  (void)arg;
  fail_msg("no command was sent");
}

/* A configuration whose mistake would only show later -- a group that
 * never joins, dead letters that never leave, a topic librdkafka reads as
 * a regular expression so that no command reaches its handler -- is
 * SAGA_EINVAL at once, naming the field; the store is not taken. */
static void test_a_participant_configuration_mistake_is_refused_at_once(
    void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  const char *const other_group[] = {"group.id", "someone-else", NULL};
  const char *const same_group[] = {"group.id", "payments", NULL};
  const struct {
    const char *bootstrap, *group, *dlq;
    const char *const *props;
    const char *says; /* a part of the error text; NULL: accepted */
  } cases[] = {
      {"", "payments", NULL, NULL, "bootstrap_servers"},
      {"127.0.0.1:9", "", NULL, NULL, "group_id"},
      {"127.0.0.1:9", "payments", "", NULL, "dlq_topic"},
      {"127.0.0.1:9", "payments", "dead letters", NULL, "dlq_topic"},
      {"127.0.0.1:9", "payments", NULL, other_group, "group.id"},
      {"127.0.0.1:9", "payments", "payments.dlq", same_group, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    saga_participant_config_t cfg = {
        .kafka = {.bootstrap_servers = cases[i].bootstrap,
                  .properties = cases[i].props},
        .group_id = cases[i].group,
        .dlq_topic = cases[i].dlq,
        .store = store,
    };
    saga_participant_t *p = NULL;
    char err[256] = "";
    int rc = saga_participant_new(&loop, &cfg, &p, err, sizeof err);
    printf("# case %zu: %s %s\n", i, saga_err_name(rc), err);
    if (!cases[i].says) {
      assert_int_equal(rc, 0);
      /* a topic Kafka cannot have is refused; a regular expression too */
      assert_int_equal(saga_participant_handle(p, "^payment.*", never_called,
                                               NULL),
                       SAGA_EINVAL);
      assert_int_equal(saga_participant_handle(p, "payment commands",
                                               never_called, NULL),
                       SAGA_EINVAL);
      assert_int_equal(saga_participant_handle(p, "payment.commands-2_x",
                                               never_called, NULL),
                       0);
      saga_participant_close(p, NULL, NULL); /* destroys the store */
      continue;
    }
    assert_int_equal(rc, SAGA_EINVAL);
    assert_non_null(strstr(err, cases[i].says));
  }
  saga_participant_config_t zeroed = {0};
  saga_participant_t *none = NULL;
  assert_int_equal(saga_participant_new(&loop, &zeroed, &none, NULL, 0),
                   SAGA_EINVAL);
  assert_int_equal(saga_participant_done(NULL, SAGA_OUTCOME_SUCCESS, NULL, 0,
                                         NULL),
                   SAGA_EINVAL);
  ct_loop_finish(&loop);
}

/* A topic saga_participant_handle refuses says which and why through
 * saga_participant_last_error (it was a bare SAGA_EINVAL), and so does a
 * missing argument. A topic of 246 to 249 characters is a Kafka topic, but
 * its default dead-letter topic "<topic>.dlq" is not: refused unless a
 * dlq_topic is configured (before, it was taken, and every poison on it
 * was abandoned, its dead letter refused by Kafka). */
static void test_a_topic_handle_refuses_is_named_with_the_reason(
    void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char t245[246], t246[247], t249[250];
  memset(t245, 't', sizeof t245 - 1);
  t245[sizeof t245 - 1] = '\0';
  memset(t246, 't', sizeof t246 - 1);
  t246[sizeof t246 - 1] = '\0';
  memset(t249, 't', sizeof t249 - 1);
  t249[sizeof t249 - 1] = '\0';
  for (int with_dlq = 0; with_dlq < 2; with_dlq++) {
    saga_idem_store_t store;
    assert_int_equal(saga_idem_store_memory(&store), 0);
    saga_participant_config_t cfg = {
        .kafka = {.bootstrap_servers = "127.0.0.1:9"},
        .group_id = "payments",
        .dlq_topic = with_dlq ? "payments.dlq" : NULL,
        .store = store,
    };
    saga_participant_t *p = NULL;
    char err[256] = "";
    if (saga_participant_new(&loop, &cfg, &p, err, sizeof err))
      fail_msg("%s", err);
    const char *why;
    assert_int_equal(saga_participant_handle(p, "^payment.*", never_called,
                                             NULL),
                     SAGA_EINVAL);
    why = saga_participant_last_error(p);
    printf("# %s\n", why);
    assert_non_null(strstr(why, "\"^payment.*\""));
    assert_non_null(strstr(why, "is not a Kafka topic name"));
    assert_int_equal(saga_participant_handle(p, "", never_called, NULL),
                     SAGA_EINVAL);
    assert_non_null(strstr(saga_participant_last_error(p),
                           "is not a Kafka topic name"));
    assert_int_equal(saga_participant_handle(p, NULL, never_called, NULL),
                     SAGA_EINVAL);
    assert_non_null(strstr(saga_participant_last_error(p), "topic"));
    assert_int_equal(saga_participant_handle(p, "payments", NULL, NULL),
                     SAGA_EINVAL);
    assert_non_null(strstr(saga_participant_last_error(p), "handler"));
    assert_int_equal(saga_participant_handle(p, t245, never_called, NULL), 0);
    int rc = saga_participant_handle(p, t246, never_called, NULL);
    why = saga_participant_last_error(p);
    printf("# dlq_topic %s: %s %s\n", cfg.dlq_topic ? cfg.dlq_topic : "NULL",
           saga_err_name(rc), why);
    if (with_dlq) {
      assert_int_equal(rc, 0);
      assert_int_equal(saga_participant_handle(p, t249, never_called, NULL),
                       0);
    } else {
      assert_int_equal(rc, SAGA_EINVAL);
      assert_non_null(strstr(why, "246 characters"));
      assert_non_null(strstr(why, ".dlq"));
      assert_non_null(strstr(why, "dlq_topic"));
      assert_int_equal(saga_participant_handle(p, t249, never_called, NULL),
                       SAGA_EINVAL);
    }
    assert_int_equal(saga_participant_handle(p, t245, never_called, NULL),
                     SAGA_EEXIST);
    saga_participant_close(p, NULL, NULL); /* destroys the store */
  }
  ct_loop_finish(&loop);
}

static void test_postgres_store_remembers_keys_across_participants(
    void **state) {
  (void)state;
  ts_require_pg();
  char *ci = ts_pg_create_database("client_idem");
  PGconn *conn = PQconnectdb(ci);
  assert_int_equal(PQstatus(conn), CONNECTION_OK);
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("shipping.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  const char *reply_topics[] = {replies};
  open_peer(&f, reply_topics, 1);
  f.held = (saga_pending_t *)1; /* answer at once */
  char err[256];
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_pg(conn, &store, err, sizeof err), 0);
  snprintf(group, sizeof group, "%s", ts_unique_name("shipping"));
  saga_participant_t *p = open_participant(&f, topic, group, store);
  send_command(&f, topic, "s-pg", replies, 1);
  assert_true(wait_seen(&f, 1));
  saga_participant_close(p, on_closed, &f);
  assert_true(ct_run_until(&f.loop, &f.closed, 10000));
  assert_int_equal(f.handler_calls, 1);

  /* A new participant in a new group reads the command again. */
  assert_int_equal(saga_idem_store_pg(conn, &store, err, sizeof err), 0);
  snprintf(group, sizeof group, "%s", ts_unique_name("shipping"));
  f.closed = 0;
  p = open_participant(&f, topic, group, store);
  assert_true(wait_seen(&f, 2));
  assert_int_equal(f.handler_calls, 1);
  assert_string_equal(f.seen[1].key, "s-pg/reserve/DO/1");
  /* and a later attempt of the same effect, too */
  send_command(&f, topic, "s-pg", replies, 2);
  assert_true(wait_seen(&f, 3));
  assert_int_equal(f.handler_calls, 1);
  assert_string_equal(f.seen[2].key, "s-pg/reserve/DO/2");
  assert_string_equal(f.seen[1].payload, "ok");
  f.held = NULL;
  teardown_fixture(&f, p);
  PQfinish(conn);
  ts_pg_drop_database(ci);
}

static void count_notice(void *arg, const PGresult *r) {
  (void)r;
  (*(int *)arg)++;
}

/* Issue 14 case 11: the library promises never to log, but libpq printed
 * PostgreSQL's NOTICE "column \"attempt\" ... already exists, skipping"
 * on stderr every time a participant opened the store. */
static void test_postgres_store_opens_without_a_notice(void **state) {
  (void)state;
  ts_require_pg();
  char *ci = ts_pg_create_database("client_idem_quiet");
  PGconn *conn = PQconnectdb(ci);
  assert_int_equal(PQstatus(conn), CONNECTION_OK);
  int notices = 0;
  PQsetNoticeReceiver(conn, count_notice, &notices);
  char err[256];
  saga_idem_store_t store;
  for (int i = 0; i < 2; i++) { /* a store no participant took: ours */
    assert_int_equal(saga_idem_store_pg(conn, &store, err, sizeof err), 0);
    store.destroy(store.ctx);
  }
  assert_int_equal(notices, 0);
  /* A table of an older release, without "attempt", is upgraded. */
  PQclear(PQexec(conn, "ALTER TABLE saga_idempotency DROP COLUMN attempt"));
  for (int i = 0; i < 2; i++) { /* a store no participant took: ours */
    assert_int_equal(saga_idem_store_pg(conn, &store, err, sizeof err), 0);
    store.destroy(store.ctx);
  }
  assert_int_equal(notices, 0);
  PGresult *r = PQexec(conn, "SELECT attempt FROM saga_idempotency");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  PQclear(r);
  /* The receiver does count notices: the test can fail. */
  PQclear(PQexec(conn, "DO $$ BEGIN RAISE NOTICE 'counted'; END $$"));
  assert_int_equal(notices, 1);
  PQfinish(conn);
  ts_pg_drop_database(ci);
}

/* ---- a failure's text reaches the caller ---- */

/* A store of the caller's own that fails as a database would: a lookup of
 * a "s-nolookup" saga, a record of a "s-norecord" one, with a text of its
 * own through last_error (or none, when last_error is NULL); the rest goes
 * to the memory store inside. */
typedef struct failing_store {
  saga_idem_store_t inner;
  char msg[128];
} failing_store_t;

static void failing_lookup(void *ctx, const char *key, saga_store_lookup_cb cb,
                           void *arg) {
  failing_store_t *s = ctx;
  s->msg[0] = '\0';
  if (strstr(key, "s-nolookup")) {
    snprintf(s->msg, sizeof s->msg, "connection to server refused (%s)", key);
    cb(arg, SAGA_ESTORE, 0, NULL);
    return;
  }
  s->inner.lookup(s->inner.ctx, key, cb, arg);
}

static void failing_record(void *ctx, const char *key,
                           const saga_recorded_reply_t *r,
                           saga_store_record_cb cb, void *arg) {
  failing_store_t *s = ctx;
  s->msg[0] = '\0';
  if (strstr(key, "s-norecord")) {
    snprintf(s->msg, sizeof s->msg, "disk full while writing %s", key);
    cb(arg, SAGA_ESTORE);
    return;
  }
  s->inner.record(s->inner.ctx, key, r, cb, arg);
}

static const char *failing_last_error(void *ctx) {
  return ((failing_store_t *)ctx)->msg;
}

static void failing_destroy(void *ctx) {
  failing_store_t *s = ctx;
  s->inner.destroy(s->inner.ctx);
  free(s);
}

typedef struct errors_wait {
  saga_participant_t *p;
  uint64_t want;
} errors_wait_t;

static int errors_at_least(void *arg) {
  errors_wait_t *w = arg;
  saga_participant_stats_t st;
  saga_participant_stats(w->p, &st);
  return st.errors >= w->want;
}

/* Run until stats.errors reaches want; the last error's text then. */
static const char *wait_errors(fixture_t *f, saga_participant_t *p,
                               uint64_t want) {
  errors_wait_t w = {p, want};
  assert_true(ct_run_until_pred(&f->loop, errors_at_least, &w, 30000));
  saga_participant_stats_t st;
  saga_participant_stats(p, &st);
  assert_int_equal(st.errors, want);
  const char *why = saga_participant_last_error(p);
  assert_non_null(why);
  return why;
}

/* One participant on a failing store of the caller's (with_text: with
 * its last_error) gets a command whose lookup fails, then one whose
 * record fails; both are abandoned, and saga_participant_last_error says
 * which key, which call and the store's words. */
static void a_store_failure_is_named(int with_text) {
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("why.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("why"));
  const char *topics[] = {replies};
  open_peer(&f, topics, 1);
  failing_store_t *fs = calloc(1, sizeof *fs);
  assert_non_null(fs);
  assert_int_equal(saga_idem_store_memory(&fs->inner), 0);
  saga_idem_store_t store = {.ctx = fs,
                             .lookup = failing_lookup,
                             .record = failing_record,
                             .destroy = failing_destroy,
                             .last_error =
                                 with_text ? failing_last_error : NULL};
  saga_participant_t *p = open_participant(&f, topic, group, store);
  assert_string_equal(saga_participant_last_error(p), "");
  assert_null(saga_participant_last_error(NULL));

  send_command(&f, topic, "s-nolookup", replies, 1);
  const char *why = wait_errors(&f, p, 1);
  assert_non_null(strstr(why, "lookup"));
  assert_non_null(strstr(why, "\"s-nolookup/reserve/DO\""));
  assert_non_null(strstr(why, "SAGA_ESTORE"));
  if (with_text)
    assert_non_null(
        strstr(why, "connection to server refused (s-nolookup/reserve/DO)"));
  else
    assert_non_null(strstr(why, saga_strerror(SAGA_ESTORE)));
  assert_int_equal(f.handler_calls, 0);

  send_command(&f, topic, "s-norecord", replies, 1);
  why = wait_errors(&f, p, 2);
  assert_non_null(strstr(why, "record"));
  assert_non_null(strstr(why, "\"s-norecord/reserve/DO\""));
  if (with_text)
    assert_non_null(strstr(why, "disk full while writing s-norecord"));
  assert_int_equal(f.handler_calls, 1);
  assert_int_equal(f.n_seen, 0); /* nothing recorded, nothing sent */
  teardown_fixture(&f, p);
}

/* Before, a store's failure only grew stats.errors: the store had no way
 * to say why, and the participant none to pass it on. */
static void test_a_store_failure_reaches_the_caller_with_its_text(
    void **state) {
  (void)state;
  a_store_failure_is_named(1);
  a_store_failure_is_named(0); /* a store without last_error: the code */
}

/* The PostgreSQL store on a session whose role may not read the table
 * (the wrong database user): the command is abandoned and the
 * participant's last error carries the server's "permission denied". */
static void test_a_postgres_store_failure_reaches_the_caller(void **state) {
  (void)state;
  char *ci;
  saga_idem_store_t store;
  PGconn *conn = open_pg_store("client_why", &ci, &store);
  char role[64], sql[160];
  snprintf(role, sizeof role, "saga_part_noaccess_%ld", (long)getpid());
  snprintf(sql, sizeof sql, "CREATE ROLE %s NOLOGIN", role);
  PQclear(PQexec(conn, sql));
  snprintf(sql, sizeof sql, "SET ROLE %s", role);
  PGresult *r = PQexec(conn, sql);
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("whypg.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("whypg"));
  const char *topics[] = {replies};
  open_peer(&f, topics, 1);
  saga_participant_t *p = open_participant(&f, topic, group, store);
  send_command(&f, topic, "s-denied", replies, 1);
  const char *why = wait_errors(&f, p, 1);
  assert_non_null(strstr(why, "\"s-denied/reserve/DO\""));
  assert_non_null(strstr(why, "permission denied for table saga_idempotency"));
  assert_int_equal(f.handler_calls, 0);
  teardown_fixture(&f, p);
  PQclear(PQexec(conn, "RESET ROLE"));
  snprintf(sql, sizeof sql, "DROP ROLE %s", role);
  r = PQexec(conn, sql);
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  PQfinish(conn);
  ts_pg_drop_database(ci);
}

/* A reply the broker never takes (its topic is not authorized, set up
 * through the embedded Kafka's control socket) fails its delivery once
 * message.timeout.ms has passed: the command is abandoned and the last
 * error names the reply, its topic and librdkafka's word. Before, only
 * stats.errors grew. */
static void test_a_reply_kafka_refuses_reaches_the_caller_with_its_text(
    void **state) {
  (void)state;
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("deny.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("denied"));
  snprintf(group, sizeof group, "%s", ts_unique_name("deny"));
  /* TOPIC_AUTHORIZATION_FAILED */
  if (ct_kafka_ctl("topic-error %s 29", replies) != 0) {
    uv_close((uv_handle_t *)&f.later, NULL);
    ct_loop_finish(&f.loop);
    skip();
  }
  char quiet[128]; /* the peer only sends here: nothing comes back */
  snprintf(quiet, sizeof quiet, "%s", ts_unique_name("quiet"));
  const char *topics[] = {quiet};
  open_peer(&f, topics, 1);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  message_timeout = "1500";
  saga_participant_t *p = open_participant_with(&f, topic, group, store,
                                                stack_handler);
  message_timeout = NULL;
  send_command(&f, topic, "s-denied", replies, 1);
  const char *why = wait_errors(&f, p, 1);
  assert_non_null(strstr(why, "reply to \"s-denied/reserve/DO/1\""));
  assert_non_null(strstr(why, replies));
  assert_non_null(strstr(why, "Message timed out"));
  assert_int_equal(f.handler_calls, 1);
  teardown_fixture(&f, p);
  assert_int_equal(ct_kafka_ctl("topic-error %s 0", replies), 0);
}

typedef struct text_wait {
  saga_participant_t *p;
  const char *needle;
} text_wait_t;

static int last_error_has(void *arg) {
  text_wait_t *w = arg;
  return strstr(saga_participant_last_error(w->p), w->needle) != NULL;
}

/* Run until the last error holds needle (or, when also is not NULL,
 * also); that text then. */
static int last_error_has_either(void *arg) {
  text_wait_t *w = arg;
  return last_error_has(&w[0]) || (w[1].needle && last_error_has(&w[1]));
}

static const char *wait_last_error_of(fixture_t *f, saga_participant_t *p,
                                      const char *needle, const char *also) {
  text_wait_t w[2] = {{p, needle}, {p, also}};
  if (!ct_run_until_pred(&f->loop, last_error_has_either, w, 30000))
    fail_msg("last error \"%s\" never held \"%s\"%s%s%s",
             saga_participant_last_error(p), needle, also ? " or \"" : "",
             also ? also : "", also ? "\"" : "");
  return saga_participant_last_error(p);
}

static const char *wait_last_error(fixture_t *f, saga_participant_t *p,
                                   const char *needle) {
  return wait_last_error_of(f, p, needle, NULL);
}

/* Errors of the Kafka client itself reach saga_participant_last_error in
 * librdkafka's words, naming the part that said it, and are not counted
 * in stats.errors (no input is abandoned for them): a failed offset
 * commit, then the only broker going down. On a private mock cluster
 * (librdkafka's, in this process), so no other test loses its brokers.
 * Before, the text stayed "" and the user had no reason at all. */
static void test_kafka_client_errors_reach_the_caller_with_their_text(
    void **state) {
  (void)state;
  rd_kafka_t *owner = NULL;
  rd_kafka_mock_cluster_t *mc = ct_mock_cluster(1, &owner);
  bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
  fixture_t f;
  setup_fixture(&f);
  char topic[128], replies[128], group[128];
  snprintf(topic, sizeof topic, "%s", ts_unique_name("kerr.commands"));
  snprintf(replies, sizeof replies, "%s", ts_unique_name("inbox"));
  snprintf(group, sizeof group, "%s", ts_unique_name("kerr"));
  assert_int_equal(rd_kafka_mock_topic_create(mc, topic, 1, 1), 0);
  assert_int_equal(rd_kafka_mock_topic_create(mc, replies, 1, 1), 0);
  const char *topics[] = {replies};
  open_peer(&f, topics, 1);
  saga_idem_store_t store;
  assert_int_equal(saga_idem_store_memory(&store), 0);
  saga_participant_t *p = open_participant(&f, topic, group, store);
  assert_string_equal(saga_participant_last_error(p), "");
  /* Every commit fails for a while (the peer's too: enough for both);
   * 8 is OffsetCommit's API key (librdkafka names it only internally). */
  rd_kafka_mock_push_request_errors(
      mc, 8, 8, RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
      RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
      RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
      RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
      RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
      RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
      RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
      RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE);
  send_command(&f, topic, "s-kerr", replies, 1);
  const char *why = wait_last_error(&f, p, "(offset commit)");
  printf("# %s\n", why);
  assert_true(strncmp(why, "kafka: ", 7) == 0);
  assert_non_null(strstr(
      why, rd_kafka_err2str(RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE)));
  check_stats(&f, p, 1, 0, 1); /* the reply went out; errors stays 0 */

  rd_kafka_mock_broker_set_down(mc, 1);
  /* librdkafka reports the lost broker ("Broker transport failure",
   * again at each reconnect) and that all brokers are down; the last
   * error is the newest of them, and a slow run (ASan) can find the
   * second overwritten by the first's next report before it looks */
  why = wait_last_error_of(&f, p, "brokers are down",
                           "Broker transport failure");
  printf("# %s\n", why);
  assert_true(strncmp(why, "kafka: ", 7) == 0);
  assert_true(strstr(why, " (consumer)") || strstr(why, " (producer)"));
  saga_participant_stats_t st;
  saga_participant_stats(p, &st);
  assert_int_equal(st.errors, 0);
  rd_kafka_mock_broker_set_up(mc, 1);
  teardown_fixture(&f, p);
  bootstrap = NULL;
  rd_kafka_destroy(owner);
}

int main(void) {
  ts_require_kafka();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_redelivered_command_never_reaches_the_handler_twice),
      cmocka_unit_test(
          test_a_retry_of_an_applied_effect_gets_the_recorded_reply),
      cmocka_unit_test(
          test_copies_queued_behind_a_retryable_attempt_apply_once),
      cmocka_unit_test(test_a_do_after_a_handled_compensation_is_refused),
      cmocka_unit_test(
          test_a_retry_after_a_lost_reply_applies_nothing_with_postgres),
      cmocka_unit_test(
          test_a_compensation_of_an_unapplied_step_is_voided_memory),
      cmocka_unit_test(
          test_a_compensation_of_an_unapplied_step_is_voided_postgres),
      cmocka_unit_test(test_poison_messages_land_in_the_dead_letter_topic),
      cmocka_unit_test(
          test_a_poison_too_large_to_forward_is_dead_lettered_cut),
      cmocka_unit_test(test_a_dead_letter_kafka_refuses_keeps_its_input),
      cmocka_unit_test(test_postgres_store_remembers_keys_across_participants),
      cmocka_unit_test(test_postgres_store_opens_without_a_notice),
      cmocka_unit_test(
          test_a_reply_kafka_cannot_carry_is_refused_not_recorded),
      cmocka_unit_test(
          test_a_store_that_answers_later_gets_the_reply_it_was_given),
      cmocka_unit_test(
          test_a_command_held_across_close_is_cancelled_not_freed),
      cmocka_unit_test(
          test_a_participant_configuration_mistake_is_refused_at_once),
      cmocka_unit_test(test_a_topic_handle_refuses_is_named_with_the_reason),
      cmocka_unit_test(
          test_a_store_failure_reaches_the_caller_with_its_text),
      cmocka_unit_test(test_a_postgres_store_failure_reaches_the_caller),
      cmocka_unit_test(
          test_a_reply_kafka_refuses_reaches_the_caller_with_its_text),
      cmocka_unit_test(
          test_kafka_client_errors_reach_the_caller_with_their_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
