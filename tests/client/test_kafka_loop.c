/* The librdkafka-on-libuv bridge against the Kafka mock: deliveries report
 * their opaque on the loop, a group member is assigned and consumes, offsets
 * are committed only up to the first unacknowledged message, and the next
 * member of the group resumes there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client_test.h"
#include "kafka_loop.h"

#define N 20

typedef struct ctx {
  uv_thread_t loop_thread;
  int delivered, delivery_errors;
  int opaque_seen[N];
  int assigned;
  int received;
  int64_t first_offset;
  saga_kloop_ack_t *acks[2 * N];
  int64_t committed; /* highest committed offset on partition 0 */
  int closed;
  int pauses, resumes; /* on_flow */
  size_t held_at_pause;
  int acked; /* acks[0 .. acked - 1] given back (ack_all_received) */
  int revoked;      /* on_revoke */
  int poll_errors;  /* on_error: max.poll.interval.ms exceeded */
  saga_kloop_t *kl;
} ctx_t;

static void on_delivery(saga_kloop_t *kl, const rd_kafka_message_t *m,
                        void *msg_opaque, void *opaque) {
  (void)kl;
  ctx_t *c = opaque;
  /* Callbacks run on the loop thread, never on librdkafka's. */
  uv_thread_t self = uv_thread_self();
  assert_true(uv_thread_equal(&self, &c->loop_thread));
  if (m->err)
    c->delivery_errors++;
  else
    c->opaque_seen[(intptr_t)msg_opaque]++;
  c->delivered++;
}

static void on_assign(saga_kloop_t *kl,
                      const rd_kafka_topic_partition_list_t *parts,
                      void *opaque) {
  (void)kl;
  (void)parts;
  ((ctx_t *)opaque)->assigned = 1;
}

static void on_message(saga_kloop_t *kl, const rd_kafka_message_t *m,
                       saga_kloop_ack_t *ack, void *opaque) {
  (void)kl;
  ctx_t *c = opaque;
  uv_thread_t self = uv_thread_self();
  assert_true(uv_thread_equal(&self, &c->loop_thread));
  assert_int_equal(m->partition, 0);
  if (c->received == 0)
    c->first_offset = m->offset;
  /* in order, none skipped or handed over twice */
  assert_int_equal(m->offset, c->first_offset + c->received);
  assert_int_equal(saga_kloop_ack_offset(ack), m->offset);
  assert_true(c->received < 2 * N);
  c->acks[c->received++] = ack;
}

static void on_commit(saga_kloop_t *kl, rd_kafka_resp_err_t err,
                      const rd_kafka_topic_partition_list_t *offsets,
                      void *opaque) {
  (void)kl;
  ctx_t *c = opaque;
  if (err || !offsets)
    return;
  for (int i = 0; i < offsets->cnt; i++)
    if (offsets->elems[i].partition == 0 && !offsets->elems[i].err &&
        offsets->elems[i].offset > c->committed)
      c->committed = offsets->elems[i].offset;
}

static void on_closed(void *arg) {
  ((ctx_t *)arg)->closed = 1;
}

static void on_closed_flag(void *arg) { *(int *)arg = 1; }

static void on_flow(saga_kloop_t *kl, int paused, size_t held, void *opaque) {
  (void)kl;
  ctx_t *c = opaque;
  if (paused) {
    c->pauses++;
    c->held_at_pause = held;
  } else {
    c->resumes++;
  }
}

static saga_kloop_t *open_loop_held(uv_loop_t *loop, ctx_t *c,
                                    const char *group, size_t max_held) {
  saga_kloop_config_t cfg = {
      .bootstrap_servers = ts_kafka_bootstrap(),
      .consumer_properties = ct_consumer_props,
      .producer_properties = ct_producer_props,
      .want_consumer = group != NULL,
      .want_producer = 1,
      .group_id = group,
      .max_held = max_held,
  };
  saga_kloop_callbacks_t cb = {.opaque = c,
                               .on_message = on_message,
                               .on_assign = on_assign,
                               .on_delivery = on_delivery,
                               .on_commit = on_commit,
                               .on_flow = on_flow};
  saga_kloop_t *kl = NULL;
  char err[256];
  int rc = saga_kloop_new(loop, &cfg, &cb, &kl, err, sizeof err);
  if (rc)
    fail_msg("%s", err);
  return kl;
}

static saga_kloop_t *open_loop(uv_loop_t *loop, ctx_t *c, const char *group) {
  return open_loop_held(loop, c, group, 0);
}

static void produce_n(saga_kloop_t *kl, const char *topic, int from, int n) {
  char err[256];
  for (int i = from; i < from + n; i++) {
    char v[32];
    int len = snprintf(v, sizeof v, "value-%d", i);
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "saga-id", -1, "s", -1);
    assert_int_equal(saga_kloop_produce(kl, topic, 0, "k", 1, v, (size_t)len,
                                        h, (void *)(intptr_t)(i % N), err,
                                        sizeof err),
                     0);
  }
}

static int all_delivered(void *arg) {
  ctx_t *c = arg;
  return c->delivered == N;
}

static int all_received(void *arg) {
  ctx_t *c = arg;
  return c->received == N;
}

static int four_committed(void *arg) {
  return ((ctx_t *)arg)->committed == 4;
}

static int committed_n(void *arg) {
  ctx_t *c = arg;
  return c->committed == N;
}

static void test_deliveries_are_reported_on_the_loop_with_their_opaque(
    void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ctx_t c = {.loop_thread = uv_thread_self()};
  saga_kloop_t *kl = open_loop(&loop, &c, NULL);
  const char *topic = ts_unique_name("kl_dr");
  produce_n(kl, topic, 0, N);
  assert_int_equal(saga_kloop_outq_len(kl), N);
  assert_true(ct_run_until_pred(&loop, all_delivered, &c, 20000));
  assert_int_equal(c.delivery_errors, 0);
  for (int i = 0; i < N; i++)
    assert_int_equal(c.opaque_seen[i], 1);
  assert_int_equal(saga_kloop_outq_len(kl), 0);
  saga_kloop_close(kl, on_closed, &c);
  ct_loop_finish(&loop);
  assert_true(c.closed);
}

static void
test_offsets_commit_only_up_to_the_first_unacknowledged_and_resume(
    void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *topic = ts_unique_name("kl_grp");
  char group[128];
  snprintf(group, sizeof group, "%s", ts_unique_name("kl_group"));
  ctx_t c = {.loop_thread = uv_thread_self(), .committed = -1};
  saga_kloop_t *kl = open_loop(&loop, &c, group);
  produce_n(kl, topic, 0, N);
  assert_true(ct_run_until_pred(&loop, all_delivered, &c, 20000));
  const char *topics[] = {topic};
  char err[256];
  assert_int_equal(saga_kloop_subscribe(kl, topics, 1, err, sizeof err), 0);
  assert_true(ct_run_until_pred(&loop, all_received, &c, 30000));
  assert_true(c.assigned);
  assert_int_equal(c.first_offset, 0);

  /* Acknowledge all but the fifth: only offsets 0-4 may be committed. */
  for (int i = N - 1; i >= 0; i--)
    if (i != 4)
      saga_kloop_ack(kl, c.acks[i]);
  assert_true(ct_run_until_pred(&loop, four_committed, &c, 10000));
  assert_int_equal(c.committed, 4);
  saga_kloop_ack(kl, c.acks[4]);
  assert_true(ct_run_until_pred(&loop, committed_n, &c, 10000));
  saga_kloop_close(kl, on_closed, &c);
  ct_loop_finish(&loop);
  assert_true(c.closed);

  /* The next member of the group starts after the committed offsets. */
  uv_loop_init(&loop);
  ctx_t c2 = {.loop_thread = uv_thread_self(), .committed = -1};
  kl = open_loop(&loop, &c2, group);
  produce_n(kl, topic, N, N);
  assert_true(ct_run_until_pred(&loop, all_delivered, &c2, 20000));
  assert_int_equal(saga_kloop_subscribe(kl, topics, 1, err, sizeof err), 0);
  assert_true(ct_run_until_pred(&loop, all_received, &c2, 30000));
  assert_int_equal(c2.first_offset, N);
  saga_kloop_close(kl, on_closed, &c2); /* outstanding acks are dropped */
  ct_loop_finish(&loop);
  assert_true(c2.closed);
}

static int five_received(void *arg) {
  return ((ctx_t *)arg)->received == 5;
}

static int never(void *arg) {
  (void)arg;
  return 0;
}

/* Acknowledge what came so far; done when all N came. */
static int ack_all_received(void *arg) {
  ctx_t *c = arg;
  while (c->acked < c->received)
    saga_kloop_ack(c->kl, c->acks[c->acked++]);
  return c->received == N;
}

/* Back-pressure: with max_held 5, five messages held unacknowledged pause
 * the assignment, so the fifteen produced after them wait in Kafka; once
 * they are acknowledged consumption resumes, and every message comes, in
 * order, none skipped or twice (on_message checks the offsets). */
static void test_held_messages_pause_consumption_until_acknowledged(
    void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *topic = ts_unique_name("kl_held");
  char group[128];
  snprintf(group, sizeof group, "%s", ts_unique_name("kl_held_group"));
  ctx_t c = {.loop_thread = uv_thread_self(), .committed = -1};
  saga_kloop_t *kl = open_loop_held(&loop, &c, group, 5);
  c.kl = kl;
  produce_n(kl, topic, 0, 5);
  const char *topics[] = {topic};
  char err[256];
  assert_int_equal(saga_kloop_subscribe(kl, topics, 1, err, sizeof err), 0);
  assert_true(ct_run_until_pred(&loop, five_received, &c, 30000));
  assert_int_equal(c.pauses, 1);
  assert_int_equal(c.held_at_pause, 5);
  produce_n(kl, topic, 5, N - 5);
  (void)ct_run_until_pred(&loop, never, &c, 1500); /* delivered, fetchable */
  assert_int_equal(c.delivered, N);
  assert_int_equal(c.received, 5); /* paused: none of them came */
  assert_true(ct_run_until_pred(&loop, ack_all_received, &c, 30000));
  assert_true(c.resumes >= 1);
  assert_int_equal(c.first_offset, 0);
  assert_true(ct_run_until_pred(&loop, committed_n, &c, 10000));
  saga_kloop_close(kl, on_closed, &c);
  ct_loop_finish(&loop);
  assert_true(c.closed);
}

static void count_revoke(saga_kloop_t *kl,
                         const rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
  (void)kl;
  (void)parts;
  ((ctx_t *)opaque)->revoked++;
}

static void count_poll_error(saga_kloop_t *kl, rd_kafka_resp_err_t err,
                             int fatal, const char *reason, void *opaque) {
  (void)kl;
  (void)fatal;
  (void)reason;
  if (err == RD_KAFKA_RESP_ERR__MAX_POLL_EXCEEDED)
    ((ctx_t *)opaque)->poll_errors++;
}

static int one_received(void *arg) {
  return ((ctx_t *)arg)->received == 1;
}

/* A group member with nothing to read stays in its group: librdkafka
 * counts a consumer that has not polled its queue for
 * max.poll.interval.ms as stuck and leaves the group, and an idle loop's
 * queue has no event to wake it. Here the interval is 6 s and the member
 * idles 9 s after its one message: no MAX_POLL_EXCEEDED, no revoke. */
static void test_an_idle_member_stays_in_its_group(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *topic = ts_unique_name("kl_idle");
  char group[128];
  snprintf(group, sizeof group, "%s", ts_unique_name("kl_idle_group"));
  ctx_t c = {.loop_thread = uv_thread_self(), .committed = -1};
  static const char *const idle_props[] = {"session.timeout.ms", "6000",
                                           "max.poll.interval.ms", "6000",
                                           NULL};
  saga_kloop_config_t cfg = {
      .bootstrap_servers = ts_kafka_bootstrap(),
      .properties = ct_consumer_props,
      .consumer_properties = idle_props,
      .producer_properties = ct_producer_props,
      .want_consumer = 1,
      .want_producer = 1,
      .group_id = group,
  };
  saga_kloop_callbacks_t cb = {.opaque = &c,
                               .on_message = on_message,
                               .on_assign = on_assign,
                               .on_revoke = count_revoke,
                               .on_delivery = on_delivery,
                               .on_error = count_poll_error};
  saga_kloop_t *kl = NULL;
  char err[256];
  if (saga_kloop_new(&loop, &cfg, &cb, &kl, err, sizeof err))
    fail_msg("%s", err);
  produce_n(kl, topic, 0, 1);
  const char *topics[] = {topic};
  assert_int_equal(saga_kloop_subscribe(kl, topics, 1, err, sizeof err), 0);
  assert_true(ct_run_until_pred(&loop, one_received, &c, 30000));
  saga_kloop_ack(kl, c.acks[0]);
  (void)ct_run_until_pred(&loop, never, &c, 9000);
  printf("# after 9 s idle: %d max.poll.interval.ms errors, %d revokes\n",
         c.poll_errors, c.revoked);
  assert_int_equal(c.poll_errors, 0);
  assert_int_equal(c.revoked, 0);
  saga_kloop_close(kl, on_closed, &c);
  ct_loop_finish(&loop);
  assert_true(c.closed);
}

/* Two members of one group on one loop: what each was handed, and the
 * first member gives up what it holds when its partition is revoked. */
typedef struct {
  saga_kloop_t *kl;
  saga_kloop_ack_t *held[N];
  int nheld;
  int got_offset0; /* times offset 0 was handed over */
  int revokes;
  size_t revoked_outstanding; /* after the rebalance, on a revoked partition */
} member_t;

static void m_on_message(saga_kloop_t *kl, const rd_kafka_message_t *m,
                         saga_kloop_ack_t *ack, void *opaque) {
  (void)kl;
  member_t *mb = opaque;
  if (m->offset == 0)
    mb->got_offset0++;
  assert_true(mb->nheld < N);
  mb->held[mb->nheld++] = ack;
}

static void m_on_revoke(saga_kloop_t *kl,
                        const rd_kafka_topic_partition_list_t *parts,
                        void *opaque) {
  (void)parts;
  member_t *mb = opaque;
  mb->revokes++;
  for (int i = 0; i < mb->nheld; i++)
    saga_kloop_release(kl, mb->held[i]);
  mb->nheld = 0;
}

static saga_kloop_t *open_member(uv_loop_t *loop, member_t *mb,
                                 const char *group) {
  saga_kloop_config_t cfg = {
      .bootstrap_servers = ts_kafka_bootstrap(),
      .consumer_properties = ct_consumer_props,
      .producer_properties = ct_producer_props,
      .want_consumer = 1,
      .want_producer = 1,
      .group_id = group,
  };
  saga_kloop_callbacks_t cb = {
      .opaque = mb, .on_message = m_on_message, .on_revoke = m_on_revoke};
  char err[256];
  if (saga_kloop_new(loop, &cfg, &cb, &mb->kl, err, sizeof err))
    fail_msg("%s", err);
  return mb->kl;
}

static int a_holds_five(void *arg) {
  return ((member_t *)arg)->nheld == 5;
}

/* Once the first member was revoked and one of the two was handed offset 0
 * again: the released messages were not committed. */
static int read_again(void *arg) {
  member_t *m = arg;
  return m[0].revokes > 0 && m[0].got_offset0 + m[1].got_offset0 >= 2;
}

/* A member holding five messages when its partition is revoked releases
 * them: nothing is committed for them, so the partition's next owner (a
 * member that joined, or the same one assigned it again) reads them from
 * offset 0 again, and the revoked partition's tracking is freed at once
 * (it used to stay until the loop closed). */
static void test_released_messages_are_read_again_and_not_tracked(
    void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *topic = ts_unique_name("kl_release");
  char group[128];
  snprintf(group, sizeof group, "%s", ts_unique_name("kl_release_group"));
  member_t m[2] = {{0}};
  saga_kloop_t *a = open_member(&loop, &m[0], group);
  produce_n(a, topic, 0, 5);
  const char *topics[] = {topic};
  char err[256];
  assert_int_equal(saga_kloop_subscribe(a, topics, 1, err, sizeof err), 0);
  assert_true(ct_run_until_pred(&loop, a_holds_five, &m[0], 30000));
  size_t live = 0, revoked = 0;
  saga_kloop_outstanding(a, &live, &revoked);
  assert_int_equal(live, 5);
  assert_int_equal(revoked, 0);

  saga_kloop_t *b = open_member(&loop, &m[1], group); /* a rebalance */
  assert_int_equal(saga_kloop_subscribe(b, topics, 1, err, sizeof err), 0);
  assert_true(ct_run_until_pred(&loop, read_again, m, 60000));
  saga_kloop_outstanding(a, NULL, &revoked);
  assert_int_equal(revoked, 0);
  saga_kloop_outstanding(b, NULL, &revoked);
  assert_int_equal(revoked, 0);
  int closed[2] = {0, 0};
  saga_kloop_close(a, on_closed_flag, &closed[0]);
  saga_kloop_close(b, on_closed_flag, &closed[1]);
  ct_loop_finish(&loop);
  assert_true(closed[0] && closed[1]);
}

/* A message released on a live partition holds the committed offset
 * before it: acknowledging every other one commits offsets 0-3 only. */
static void test_a_released_message_stops_the_commits_before_it(
    void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *topic = ts_unique_name("kl_release_live");
  char group[128];
  snprintf(group, sizeof group, "%s", ts_unique_name("kl_rl_group"));
  ctx_t c = {.loop_thread = uv_thread_self(), .committed = -1};
  saga_kloop_t *kl = open_loop(&loop, &c, group);
  produce_n(kl, topic, 0, N);
  const char *topics[] = {topic};
  char err[256];
  assert_int_equal(saga_kloop_subscribe(kl, topics, 1, err, sizeof err), 0);
  assert_true(ct_run_until_pred(&loop, all_received, &c, 30000));
  for (int i = 0; i < N; i++)
    if (i == 4)
      saga_kloop_release(kl, c.acks[i]);
    else
      saga_kloop_ack(kl, c.acks[i]);
  assert_true(ct_run_until_pred(&loop, four_committed, &c, 10000));
  (void)ct_run_until_pred(&loop, never, &c, 1000); /* no later commit */
  assert_int_equal(c.committed, 4);
  size_t live = 1;
  saga_kloop_outstanding(kl, &live, NULL);
  assert_int_equal(live, 0);
  saga_kloop_close(kl, on_closed, &c);
  ct_loop_finish(&loop);
  assert_true(c.closed);
}

/* Broker failures seen through on_error and the log lines on_log got. */
typedef struct {
  int errors;
  char reason[512];
  int nlogs;
  char logs[64][512];
} failures_t;

static void fail_on_error(saga_kloop_t *kl, rd_kafka_resp_err_t err,
                          int fatal, const char *reason, void *opaque) {
  (void)kl;
  (void)fatal;
  failures_t *f = opaque;
  if (err == RD_KAFKA_RESP_ERR__TRANSPORT && f->errors++ == 0)
    snprintf(f->reason, sizeof f->reason, "%s", reason);
}

static void fail_on_log(saga_kloop_t *kl, int level, const char *fac,
                        const char *line, void *opaque) {
  (void)kl;
  (void)level;
  failures_t *f = opaque;
  if (f->nlogs < 64)
    snprintf(f->logs[f->nlogs++], sizeof f->logs[0], "%s %s", fac, line);
}

/* Closes kl, runs its loop to the end, frees f. */
static void close_and_free(saga_kloop_t *kl, uv_loop_t *loop, failures_t *f) {
  int closed = 0;
  saga_kloop_close(kl, on_closed_flag, &closed);
  ct_loop_finish(loop);
  assert_true(closed);
  free(f);
}

static int transport_failed(void *arg) {
  return ((failures_t *)arg)->errors > 0;
}

/* A broker that refuses connections: librdkafka logs the failure and
 * raises it as an error event with the same text; the loop reports it
 * once, through on_error. */
static void test_a_broker_failure_is_reported_once_not_also_as_a_log_line(
    void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  failures_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  saga_kloop_config_t cfg = {.bootstrap_servers = "127.0.0.1:1",
                             .want_producer = 1};
  saga_kloop_callbacks_t cb = {
      .opaque = f, .on_error = fail_on_error, .on_log = fail_on_log};
  saga_kloop_t *kl = NULL;
  char err[256];
  if (saga_kloop_new(&loop, &cfg, &cb, &kl, err, sizeof err))
    fail_msg("%s", err);
  assert_true(ct_run_until_pred(&loop, transport_failed, f, 20000));
  /* The log line comes first on the same queue: all are in by now. */
  for (int i = 0; i < f->nlogs; i++)
    if (strstr(f->logs[i], f->reason) != NULL)
      fail_msg("reported twice: on_error \"%s\" and on_log \"%s\"",
               f->reason, f->logs[i]);
  close_and_free(kl, &loop, f);
}

/* The value of property `name` as handle rk runs with, into v[64]. */
static void prop_of(rd_kafka_t *rk, const char *name, char v[64]) {
  size_t n = 64;
  assert_int_equal(rd_kafka_conf_get(rd_kafka_conf(rk), name, v, &n),
                   RD_KAFKA_CONF_OK);
}

static void expect_prop(rd_kafka_t *rk, const char *name, const char *want) {
  char v[64];
  prop_of(rk, name, v);
  if (strcmp(v, want) != 0)
    fail_msg("%s is \"%s\", expected \"%s\"", name, v, want);
}

/* The settings a user gets without tuning are the low-latency ones
 * (docs/client.md "Kafka settings"): no linger before a produce, a short
 * fetch wait, Nagle off, the idempotent producer; and a caller's own
 * property wins over each of them. */
static void test_the_default_settings_are_the_low_latency_ones(void **state) {
  (void)state;
  static const char *const mine[] = {"linger.ms", "5", "fetch.wait.max.ms",
                                     "100", NULL};
  for (int own = 0; own < 2; own++) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    saga_kloop_config_t cfg = {.bootstrap_servers = "127.0.0.1:1",
                               .want_producer = 1,
                               .want_consumer = 1,
                               .group_id = "defaults",
                               .properties = own ? mine : NULL};
    saga_kloop_callbacks_t cb = {0};
    saga_kloop_t *kl = NULL;
    char err[256];
    if (saga_kloop_new(&loop, &cfg, &cb, &kl, err, sizeof err))
      fail_msg("%s", err);
    rd_kafka_t *p = saga_kloop_producer(kl), *c = saga_kloop_consumer(kl);
    expect_prop(p, "linger.ms", own ? "5" : "0");
    expect_prop(c, "fetch.wait.max.ms", own ? "100" : "10");
    expect_prop(p, "socket.nagle.disable", "true");
    expect_prop(c, "socket.nagle.disable", "true");
    expect_prop(p, "enable.idempotence", "true");
    int closed = 0;
    saga_kloop_close(kl, on_closed_flag, &closed);
    ct_loop_finish(&loop);
    assert_true(closed);
  }
}

/* Whether on_log got a line holding `text` (fail_on_log's record). */
static int logged(const failures_t *f, const char *text) {
  for (int i = 0; i < f->nlogs; i++)
    if (strstr(f->logs[i], text))
      return 1;
  return 0;
}

static int both_controls_logged(void *arg) {
  const failures_t *f = arg;
  return logged(f, "queue.buffering.max.messages") &&
         logged(f, "fetch.min.bytes");
}

/* A property given to both handles is set only on the one it is for: an
 * operator who set kafka.linger.ms (a producer property) or
 * kafka.session.timeout.ms (a consumer one) got a librdkafka warning at
 * every start that the other handle ignores it. A property given to one
 * handle by name still goes there, warning and all: those two are the
 * controls that show the warnings reach on_log. */
static void test_a_shared_property_is_set_only_where_it_applies(
    void **state) {
  (void)state;
  static const char *const shared[] = {"linger.ms", "3",
                                       "session.timeout.ms", "6000", NULL};
  static const char *const to_consumer[] = {"queue.buffering.max.messages",
                                            "1000", NULL};
  static const char *const to_producer[] = {"fetch.min.bytes", "1", NULL};
  saga_kloop_config_t cfg = {.bootstrap_servers = "127.0.0.1:1",
                             .want_producer = 1,
                             .want_consumer = 1,
                             .group_id = "shared-props",
                             .properties = shared,
                             .consumer_properties = to_consumer,
                             .producer_properties = to_producer};
  uv_loop_t loop;
  uv_loop_init(&loop);
  failures_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  saga_kloop_callbacks_t cb = {.opaque = f, .on_log = fail_on_log};
  saga_kloop_t *kl = NULL;
  char err[256];
  if (saga_kloop_new(&loop, &cfg, &cb, &kl, err, sizeof err))
    fail_msg("%s", err);
  expect_prop(saga_kloop_producer(kl), "linger.ms", "3");
  expect_prop(saga_kloop_consumer(kl), "session.timeout.ms", "6000");
  assert_true(ct_run_until_pred(&loop, both_controls_logged, f, 20000));
  for (int i = 0; i < f->nlogs; i++)
    if (strstr(f->logs[i], "linger.ms") ||
        strstr(f->logs[i], "session.timeout.ms"))
      fail_msg("a warning for a shared property: \"%s\"", f->logs[i]);
  close_and_free(kl, &loop, f);
}

/* The heartbeat interval of a consumer opened with these consumer
 * properties (a group member, not yet subscribed). */
static long heartbeat_of(const char *const *props) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_kloop_config_t cfg = {.bootstrap_servers = ts_kafka_bootstrap(),
                             .consumer_properties = props,
                             .want_consumer = 1,
                             .group_id = "test-kloop-heartbeat"};
  saga_kloop_callbacks_t cb = {0};
  saga_kloop_t *kl = NULL;
  char err[256], v[64];
  if (saga_kloop_new(&loop, &cfg, &cb, &kl, err, sizeof err))
    fail_msg("%s", err);
  prop_of(saga_kloop_consumer(kl), "heartbeat.interval.ms", v);
  int closed = 0;
  saga_kloop_close(kl, on_closed_flag, &closed);
  ct_loop_finish(&loop);
  assert_true(closed);
  return atol(v);
}

/* A member heartbeats at least three times per session: with librdkafka's
 * 3000 ms heartbeat and session.timeout.ms=3000 the consumer declared its
 * own session lost whenever one answer came a little late, and gave its
 * partitions up over and over (the saga benchmark's memory phase). A
 * heartbeat.interval.ms that is configured is kept. */
static void test_a_short_session_heartbeats_three_times_per_session(
    void **state) {
  (void)state;
  const char *const short_session[] = {"session.timeout.ms", "3000", NULL};
  assert_true(heartbeat_of(short_session) <= 1000);
  const char *const long_session[] = {"session.timeout.ms", "45000", NULL};
  assert_int_equal(heartbeat_of(long_session), 3000);
  const char *const both[] = {"session.timeout.ms", "3000",
                              "heartbeat.interval.ms", "2000", NULL};
  assert_int_equal(heartbeat_of(both), 2000);
}

int main(void) {
  ts_require_kafka();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_deliveries_are_reported_on_the_loop_with_their_opaque),
      cmocka_unit_test(
          test_offsets_commit_only_up_to_the_first_unacknowledged_and_resume),
      cmocka_unit_test(
          test_a_broker_failure_is_reported_once_not_also_as_a_log_line),
      cmocka_unit_test(test_the_default_settings_are_the_low_latency_ones),
      cmocka_unit_test(
          test_held_messages_pause_consumption_until_acknowledged),
      cmocka_unit_test(test_an_idle_member_stays_in_its_group),
      cmocka_unit_test(test_released_messages_are_read_again_and_not_tracked),
      cmocka_unit_test(test_a_released_message_stops_the_commits_before_it),
      cmocka_unit_test(test_a_short_session_heartbeats_three_times_per_session),
      cmocka_unit_test(test_a_shared_property_is_set_only_where_it_applies),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
