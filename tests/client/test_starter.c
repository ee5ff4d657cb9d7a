/* The starter against a fake coordinator running in this test (its own
 * thread and loop): it consumes the inbox and answers each StartSaga with
 * STARTED then COMPLETED (a sagad whose topic.progress is the
 * notifications topic), or REJECTED for the type "unknown" (for the
 * type "noise", a CANCEL_REFUSED comes first: someone else's cancel); a
 * CancelSaga with COMPENSATED, or CANCEL_REFUSED when its saga id begins
 * with "refuse", or not at all when it begins with "silent". Kafka's own failures (a refused send, brokers down) reach
 * the caller's errbuf and saga_starter_last_error. */
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
#include "saga/client.h"
#include "wire_kafka.h"

#include <librdkafka/rdkafka_mock.h> /* after rdkafka.h (kafka_loop.h) */

typedef struct fake {
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t stop;
  saga_kloop_t *kl;
  char inbox[128], notifications[128], group[128];
  char last_input[64];
  int starts; /* StartSaga messages seen (loop thread of the fake only) */
} fake_t;

static void notify_of(fake_t *f, const char *saga_id, const char *type,
                      ProtobufCBinaryData payload, int kind,
                      const char *reason) {
  Saga__V1__Notification n;
  saga__v1__notification__init(&n);
  n.saga_id = SAGA_MUT(saga_id);
  n.saga_type = SAGA_MUT(type);
  n.kind = (Saga__V1__NotificationKind)kind;
  n.reason = SAGA_MUT(reason);
  n.payload = payload;
  void *buf;
  size_t len;
  rd_kafka_headers_t *h;
  char err[256];
  saga_meta_t meta = {.correlation_id = saga_id};
  assert_int_equal(saga__wire_encode(&n.base, &meta, 0, &buf, &len, &h, err,
                                     sizeof err),
                   0);
  assert_int_equal(saga_kloop_produce(f->kl, f->notifications,
                                      RD_KAFKA_PARTITION_UA, saga_id,
                                      strlen(saga_id), buf, len, h, NULL,
                                      err, sizeof err),
                   0);
  free(buf);
}

static void notify(fake_t *f, const Saga__V1__StartSaga *s, int kind,
                   const char *reason) {
  /* echo the input as the output */
  notify_of(f, s->saga_id, s->saga_type, s->input, kind, reason);
}

static void fake_cancel(fake_t *f, const rd_kafka_message_t *m,
                        rd_kafka_headers_t *h) {
  ProtobufCMessage *msg;
  saga__wire_meta_t meta;
  char err[256];
  if (saga__wire_decode(&saga__v1__cancel_saga__descriptor, m->payload,
                        m->len, h, 0, &msg, &meta, err, sizeof err) != 0)
    fail_msg("fake coordinator could not decode a CancelSaga: %s", err);
  const Saga__V1__CancelSaga *c = (const Saga__V1__CancelSaga *)msg;
  ProtobufCBinaryData none = {0};
  if (!strncmp(c->saga_id, "silent", 6))
    ; /* never answered */
  else if (!strncmp(c->saga_id, "refuse", 6))
    notify_of(f, c->saga_id, "order", none,
              SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_CANCEL_REFUSED,
              "after the pivot step charge");
  else
    notify_of(f, c->saga_id, "order", none,
              SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATED,
              c->reason);
  saga__wire_free(msg);
}

static void fake_message(saga_kloop_t *kl, const rd_kafka_message_t *m,
                         saga_kloop_ack_t *ack, void *opaque) {
  fake_t *f = opaque;
  rd_kafka_headers_t *h = NULL;
  rd_kafka_message_headers(m, &h);
  ProtobufCMessage *msg;
  saga__wire_meta_t meta;
  char err[256];
  if (saga__wire_type_of(h) == &saga__v1__cancel_saga__descriptor) {
    fake_cancel(f, m, h);
    saga_kloop_ack(kl, ack);
    return;
  }
  if (saga__wire_decode(&saga__v1__start_saga__descriptor, m->payload, m->len,
                        h, 0, &msg, &meta, err, sizeof err) != 0)
    fail_msg("fake coordinator could not decode a StartSaga: %s", err);
  Saga__V1__StartSaga *s = (Saga__V1__StartSaga *)msg;
  f->starts++;
  snprintf(f->last_input, sizeof f->last_input, "%.*s", (int)s->input.len,
           (const char *)s->input.data);
  if (!strcmp(s->saga_type, "unknown")) {
    notify(f, s, SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_REJECTED,
           "unknown saga type \"unknown\"");
  } else if (!strcmp(s->saga_type, "parked")) {
    /* parked, then compensated after an operator's retry */
    notify(f, s,
           SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATION_FAILED,
           "refund: card network down");
    notify(f, s, SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATED, "");
  } else {
    if (!strcmp(s->saga_type, "noise"))
      notify(f, s, SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_CANCEL_REFUSED,
             "someone else's cancel");
    notify(f, s, SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_STARTED, "");
    notify(f, s, SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPLETED, "");
  }
  saga__wire_free(msg);
  saga_kloop_ack(kl, ack);
}

static void fake_stop(uv_async_t *a) {
  fake_t *f = a->data;
  saga_kloop_close(f->kl, NULL, NULL);
  uv_close((uv_handle_t *)&f->stop, NULL);
}

static void fake_run(void *arg) {
  fake_t *f = arg;
  uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void fake_start(fake_t *f) {
  memset(f, 0, sizeof *f);
  snprintf(f->inbox, sizeof f->inbox, "%s", ts_unique_name("saga.inbox"));
  snprintf(f->notifications, sizeof f->notifications, "%s",
           ts_unique_name("saga.notifications"));
  snprintf(f->group, sizeof f->group, "%s", ts_unique_name("coordinator"));
  uv_loop_init(&f->loop);
  uv_async_init(&f->loop, &f->stop, fake_stop);
  f->stop.data = f;
  saga_kloop_config_t cfg = {.bootstrap_servers = ts_kafka_bootstrap(),
                             .consumer_properties = ct_consumer_props,
                             .producer_properties = ct_producer_props,
                             .want_consumer = 1,
                             .want_producer = 1,
                             .group_id = f->group};
  saga_kloop_callbacks_t cb = {.opaque = f, .on_message = fake_message};
  char err[256];
  assert_int_equal(saga_kloop_new(&f->loop, &cfg, &cb, &f->kl, err,
                                  sizeof err),
                   0);
  const char *topics[] = {f->inbox};
  assert_int_equal(saga_kloop_subscribe(f->kl, topics, 1, err, sizeof err), 0);
  uv_thread_create(&f->thread, fake_run, f);
}

static void fake_finish(fake_t *f) {
  uv_async_send(&f->stop);
  uv_thread_join(&f->thread);
  assert_int_equal(uv_loop_close(&f->loop), 0);
}

static saga_starter_config_t starter_config(const fake_t *f) {
  static const char *const props[] = {"fetch.wait.max.ms", "5", "linger.ms",
                                      "1", NULL};
  saga_starter_config_t cfg = {
      .kafka = {.bootstrap_servers = ts_kafka_bootstrap(),
                .properties = props},
      .inbox_topic = f->inbox,
      .notifications_topic = f->notifications,
  };
  return cfg;
}

typedef struct watch {
  int started_err, started;
  char started_id[64];
  int outcomes;
  int outcome_err;
  saga_notification_kind_t kind;
  char payload[64];
  char reason[64];
  int kinds_seen[8];
  int closed;
} watch_t;

static void on_started(saga_starter_t *s, int err, const char *id, void *a) {
  (void)s;
  watch_t *w = a;
  w->started++;
  w->started_err = err;
  snprintf(w->started_id, sizeof w->started_id, "%s", id);
}

static void on_outcome(saga_starter_t *s, int err,
                       const saga_notification_t *n, void *a) {
  (void)s;
  watch_t *w = a;
  w->outcomes++;
  w->outcome_err = err;
  if (n) {
    w->kind = n->kind;
    snprintf(w->payload, sizeof w->payload, "%.*s", (int)n->payload_len,
             (const char *)n->payload);
    snprintf(w->reason, sizeof w->reason, "%s", n->reason ? n->reason : "");
  }
}

static void on_notification(saga_starter_t *s, const saga_notification_t *n,
                            void *a) {
  (void)s;
  watch_t *w = a;
  if (n->kind > 0 && n->kind < 8)
    w->kinds_seen[n->kind]++;
}

static void on_closed(void *a) {
  ((watch_t *)a)->closed = 1;
}

static void test_started_saga_outcome_is_awaited_and_notifications_seen(
    void **state) {
  (void)state;
  fake_t f;
  fake_start(&f);
  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_starter_config_t cfg = starter_config(&f);
  saga_starter_t *s;
  char err[256];
  int rc = saga_starter_new(&loop, &cfg, &s, err, sizeof err);
  if (rc)
    fail_msg("%s", err);
  watch_t w = {0};
  assert_int_equal(saga_starter_subscribe(s, on_notification, &w), 0);
  saga_start_request_t req = {.saga_type = "order",
                              .input = "{\"sku\":7}",
                              .input_len = 9};
  /* Issue 14 case 5: an id past 255 bytes was cut with snprintf, so
   * another saga started. It is refused, as is one the caller's buffer
   * cannot take back. */
  char longid[SAGA_MAX_ID + 2];
  memset(longid, 'l', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  char id[64];
  req.saga_id = longid;
  assert_int_equal(saga_starter_start(s, &req, NULL, 0, on_started, &w),
                   SAGA_ETOOBIG);
  longid[SAGA_MAX_ID] = '\0';
  assert_int_equal(saga_starter_start(s, &req, id, sizeof id, on_started, &w),
                   SAGA_ETOOBIG);
  req.saga_id = NULL;
  assert_int_equal(saga_starter_start(s, &req, id, sizeof id, on_started, &w),
                   0);
  assert_int_equal(strlen(id), 36); /* a generated UUID, time-ordered */
  assert_int_equal(id[14], '7');
  assert_int_equal(saga_starter_await(s, id, ts_timeout_ms(30000), on_outcome,
                                      &w),
                   0);
  assert_true(ct_run_until(&loop, &w.outcomes, 40000));
  assert_int_equal(w.started, 1);
  assert_int_equal(w.started_err, 0);
  assert_string_equal(w.started_id, id);
  assert_int_equal(w.outcome_err, 0);
  assert_int_equal(w.kind, SAGA_NOTIFY_COMPLETED);
  assert_string_equal(w.payload, "{\"sku\":7}");
  assert_int_equal(w.kinds_seen[SAGA_NOTIFY_STARTED], 1);
  assert_int_equal(w.kinds_seen[SAGA_NOTIFY_COMPLETED], 1);

  /* Awaiting a saga already finished answers from what was seen. */
  w.outcomes = 0;
  assert_int_equal(saga_starter_await(s, id, 0, on_outcome, &w), 0);
  assert_true(ct_run_until(&loop, &w.outcomes, 5000));
  assert_int_equal(w.outcome_err, 0);
  assert_int_equal(w.kind, SAGA_NOTIFY_COMPLETED);

  /* A saga parked in COMPENSATION_FAILED, then compensated after an
   * operator's retry: an await after both answers with the latest. It
   * answered with the first, the stale COMPENSATION_FAILED. */
  req.saga_type = "parked";
  req.saga_id = "parked-1";
  assert_int_equal(saga_starter_start(s, &req, NULL, 0, on_started, &w), 0);
  assert_true(
      ct_run_until(&loop, &w.kinds_seen[SAGA_NOTIFY_COMPENSATED], 40000));
  assert_int_equal(w.kinds_seen[SAGA_NOTIFY_COMPENSATION_FAILED], 1);
  w.outcomes = 0;
  assert_int_equal(saga_starter_await(s, "parked-1", 0, on_outcome, &w), 0);
  assert_true(ct_run_until(&loop, &w.outcomes, 5000));
  assert_int_equal(w.outcome_err, 0);
  assert_int_equal(w.kind, SAGA_NOTIFY_COMPENSATED);

  /* An unknown saga id times out; a pending await is cancelled on close. */
  w.outcomes = 0;
  assert_int_equal(saga_starter_await(s, "never-started", 1, on_outcome, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.outcomes, 5000));
  assert_int_equal(w.outcome_err, SAGA_ETIMEDOUT);
  w.outcomes = 0;
  assert_int_equal(saga_starter_await(s, "never-started", 600000, on_outcome,
                                      &w),
                   0);
  saga_starter_close(s, on_closed, &w);
  assert_int_equal(w.outcomes, 1);
  assert_int_equal(w.outcome_err, SAGA_ECANCELED);
  ct_loop_finish(&loop);
  assert_true(w.closed);
  fake_finish(&f);
}

/* A cancel's answer is the saga's outcome or a CANCEL_REFUSED; await
 * reports either, the refusal even when it came before the await, and
 * never another starter's refusal. */
static void test_cancel_is_answered_by_the_outcome_or_its_refusal(
    void **state) {
  (void)state;
  fake_t f;
  fake_start(&f);
  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_starter_config_t cfg = starter_config(&f);
  saga_starter_t *s;
  char err[256];
  if (saga_starter_new(&loop, &cfg, &s, err, sizeof err))
    fail_msg("%s", err);
  watch_t w = {0};
  assert_int_equal(saga_starter_subscribe(s, on_notification, &w), 0);
  char longid[SAGA_MAX_ID + 2];
  memset(longid, 'l', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  assert_int_equal(saga_starter_cancel(s, longid, "x", "y", on_started, &w),
                   SAGA_ETOOBIG);
  assert_int_equal(saga_starter_cancel(s, "a/b", "x", "y", on_started, &w),
                   SAGA_EMISSING);
  assert_int_equal(saga_starter_cancel(s, "c-1", "x", "bad\x01name",
                                       on_started, &w),
                   SAGA_EMISSING);
  /* "" is a missing id, as saga_starter_start and Python's cancel() say
   * (it was SAGA_EINVAL, which the header keeps for NULL arguments) */
  assert_int_equal(saga_starter_cancel(s, "", "x", "y", on_started, &w),
                   SAGA_EMISSING);
  assert_int_equal(w.started, 0);

  /* Taken: the saga's COMPENSATED answers. */
  assert_int_equal(saga_starter_cancel(s, "ok-1", "customer called", "alice",
                                       on_started, &w),
                   0);
  assert_int_equal(saga_starter_await(s, "ok-1", ts_timeout_ms(30000),
                                      on_outcome, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.outcomes, 40000));
  assert_int_equal(w.started, 1);
  assert_int_equal(w.started_err, 0);
  assert_string_equal(w.started_id, "ok-1");
  assert_int_equal(w.outcome_err, 0);
  assert_int_equal(w.kind, SAGA_NOTIFY_COMPENSATED);
  assert_string_equal(w.reason, "customer called");

  /* Refused before anyone awaits: the next await gets the refusal, the
   * one after it waits for the outcome again. */
  w.outcomes = 0;
  assert_int_equal(saga_starter_cancel(s, "refuse-1", "please", NULL,
                                       on_started, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.kinds_seen[SAGA_NOTIFY_CANCEL_REFUSED],
                           40000));
  assert_int_equal(saga_starter_await(s, "refuse-1", ts_timeout_ms(30000),
                                      on_outcome, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.outcomes, 5000));
  assert_int_equal(w.outcome_err, 0);
  assert_int_equal(w.kind, SAGA_NOTIFY_CANCEL_REFUSED);
  assert_string_equal(w.reason, "after the pivot step charge");
  w.outcomes = 0;
  assert_int_equal(saga_starter_await(s, "refuse-1", 1, on_outcome, &w), 0);
  assert_true(ct_run_until(&loop, &w.outcomes, 5000));
  assert_int_equal(w.outcome_err, SAGA_ETIMEDOUT);

  /* Another starter's refused cancel is not this await's answer. */
  w.outcomes = 0;
  saga_start_request_t req = {.saga_type = "noise", .saga_id = "noisy-1"};
  char id[64];
  assert_int_equal(saga_starter_start(s, &req, id, sizeof id, on_started, &w),
                   0);
  assert_int_equal(saga_starter_await(s, id, ts_timeout_ms(30000), on_outcome,
                                      &w),
                   0);
  assert_true(ct_run_until(&loop, &w.outcomes, 40000));
  assert_int_equal(w.kind, SAGA_NOTIFY_COMPLETED);
  assert_int_equal(w.kinds_seen[SAGA_NOTIFY_CANCEL_REFUSED], 2);
  saga_starter_close(s, on_closed, &w);
  ct_loop_finish(&loop);
  assert_true(w.closed);
  fake_finish(&f);
}

/* An await that finds its saga's refusal stored answers from the loop at
 * once; one that then finds nothing (another await of the saga took the
 * refusal first, or a second cancel cleared it) waits on for the rest of
 * its own timeout, for the outcome or the new cancel's answer. Before,
 * it ended with SAGA_ETIMEDOUT on the next loop turn, whatever its
 * timeout_ms. */
static void test_an_await_that_finds_no_stored_refusal_keeps_its_timeout(
    void **state) {
  (void)state;
  fake_t f;
  fake_start(&f);
  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_starter_config_t cfg = starter_config(&f);
  saga_starter_t *s;
  char err[256];
  if (saga_starter_new(&loop, &cfg, &s, err, sizeof err))
    fail_msg("%s", err);
  watch_t w = {0}, first = {0}, second = {0}, third = {0};
  assert_int_equal(saga_starter_subscribe(s, on_notification, &w), 0);
  assert_int_equal(saga_starter_cancel(s, "refuse-twice", NULL, NULL,
                                       on_started, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.kinds_seen[SAGA_NOTIFY_CANCEL_REFUSED],
                           40000));
  /* two awaits, one refusal: the first gets it, the second waits */
  assert_int_equal(saga_starter_await(s, "refuse-twice", ts_timeout_ms(30000),
                                      on_outcome, &first),
                   0);
  assert_int_equal(saga_starter_await(s, "refuse-twice", ts_timeout_ms(30000),
                                      on_outcome, &second),
                   0);
  assert_true(ct_run_until(&loop, &first.outcomes, 5000));
  assert_int_equal(first.outcome_err, 0);
  assert_int_equal(first.kind, SAGA_NOTIFY_CANCEL_REFUSED);
  assert_int_equal(second.outcomes, 0); /* both were due on that turn */
  saga_start_request_t req = {.saga_type = "order",
                              .saga_id = "refuse-twice"};
  assert_int_equal(saga_starter_start(s, &req, NULL, 0, on_started, &w), 0);
  assert_true(ct_run_until(&loop, &second.outcomes, 40000));
  assert_int_equal(second.outcome_err, 0);
  assert_int_equal(second.kind, SAGA_NOTIFY_COMPLETED);

  /* a second cancel before the await's turn: its refusal answers */
  w.kinds_seen[SAGA_NOTIFY_CANCEL_REFUSED] = 0;
  assert_int_equal(saga_starter_cancel(s, "refuse-again", NULL, NULL,
                                       on_started, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.kinds_seen[SAGA_NOTIFY_CANCEL_REFUSED],
                           40000));
  assert_int_equal(saga_starter_await(s, "refuse-again", ts_timeout_ms(30000),
                                      on_outcome, &third),
                   0);
  assert_int_equal(saga_starter_cancel(s, "refuse-again", NULL, NULL,
                                       on_started, &w),
                   0);
  assert_true(ct_run_until(&loop, &third.outcomes, 40000));
  assert_int_equal(third.outcome_err, 0);
  assert_int_equal(third.kind, SAGA_NOTIFY_CANCEL_REFUSED);
  assert_int_equal(w.kinds_seen[SAGA_NOTIFY_CANCEL_REFUSED], 2);
  saga_starter_close(s, on_closed, &w);
  ct_loop_finish(&loop);
  assert_true(w.closed);
  fake_finish(&f);
}

typedef struct started_wait {
  const watch_t *w;
  int want;
} started_wait_t;

static int started_at_least(void *arg) {
  const started_wait_t *sw = arg;
  return sw->w->started >= sw->want;
}

/* The cancels a starter keeps for their answer are bounded as its
 * outcomes are (4096, the oldest dropped): a refusal nobody awaits, or a
 * cancel never answered, no longer stays for the starter's life. After
 * 4096 newer cancels an old refusal is gone (the await waits for the
 * outcome and times out), while a new one still answers. Before, every
 * such cancel was kept until its saga's outcome came, which for a saga
 * already finished is never. */
static void test_cancels_kept_for_their_answer_are_bounded(void **state) {
  (void)state;
  fake_t f;
  fake_start(&f);
  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_starter_config_t cfg = starter_config(&f);
  saga_starter_t *s;
  char err[256];
  if (saga_starter_new(&loop, &cfg, &s, err, sizeof err))
    fail_msg("%s", err);
  watch_t w = {0};
  assert_int_equal(saga_starter_subscribe(s, on_notification, &w), 0);
  assert_int_equal(saga_starter_cancel(s, "refuse-old", NULL, NULL,
                                       on_started, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.kinds_seen[SAGA_NOTIFY_CANCEL_REFUSED],
                           40000));
  for (int i = 0; i < 4096; i++) {
    char id[32];
    snprintf(id, sizeof id, "silent-%d", i);
    assert_int_equal(saga_starter_cancel(s, id, NULL, NULL, on_started, &w),
                     0);
  }
  started_wait_t sw = {&w, 4097};
  assert_true(ct_run_until_pred(&loop, started_at_least, &sw, 60000));
  assert_int_equal(w.started_err, 0);
  assert_int_equal(saga_starter_await(s, "refuse-old", 1, on_outcome, &w), 0);
  assert_true(ct_run_until(&loop, &w.outcomes, 5000));
  assert_int_equal(w.outcome_err, SAGA_ETIMEDOUT);
  /* within the bound, a refusal still answers */
  w.outcomes = 0;
  assert_int_equal(saga_starter_cancel(s, "refuse-new", NULL, NULL,
                                       on_started, &w),
                   0);
  assert_int_equal(saga_starter_await(s, "refuse-new", ts_timeout_ms(30000),
                                      on_outcome, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.outcomes, 40000));
  assert_int_equal(w.outcome_err, 0);
  assert_int_equal(w.kind, SAGA_NOTIFY_CANCEL_REFUSED);
  saga_starter_close(s, on_closed, &w);
  ct_loop_finish(&loop);
  assert_true(w.closed);
  fake_finish(&f);
}

/* Each refusal of saga_starter_start, _cancel and _await says which
 * argument and why through saga_starter_last_error. Before, an id past
 * 255 bytes, one that did not fit saga_id_out, an input NULL with a
 * length, a bad await or a call after close returned a bare code and
 * left the text "". */
static void test_a_starter_refusal_says_which_and_why(void **state) {
  (void)state;
  fake_t f;
  fake_start(&f);
  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_starter_config_t cfg = starter_config(&f);
  /* librdkafka's least message.max.bytes: a CancelSaga can pass it */
  static const char *const props[] = {"fetch.wait.max.ms", "5", "linger.ms",
                                      "1", "message.max.bytes", "1000", NULL};
  cfg.kafka.properties = props;
  saga_starter_t *s;
  char err[256];
  if (saga_starter_new(&loop, &cfg, &s, err, sizeof err))
    fail_msg("%s", err);
  watch_t w = {0};
  char longid[SAGA_MAX_ID + 2];
  memset(longid, 'l', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  char id[8];
  static char big[4096];
  memset(big, ' ', sizeof big);
  const struct {
    const char *saga_id, *saga_type;
    const void *input;
    size_t input_len;
    int rc;
    const char *says;
  } starts[] = {
      {longid, "order", NULL, 0, SAGA_ETOOBIG,
       "saga_id is 256 bytes long, the ceiling is 255"},
      {"arg-long-1", "order", NULL, 0, SAGA_ETOOBIG,
       "does not fit saga_id_out of 8 bytes"},
      {"arg-1", "order", big, sizeof big, SAGA_ETOOBIG,
       "message.max.bytes (1000)"},
      {"arg-1", "order", NULL, 3, SAGA_EINVAL,
       "input is NULL with a length of 3 bytes"},
      {"arg-1", NULL, NULL, 0, SAGA_EINVAL, "saga_type"},
  };
  for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
    saga_start_request_t req = {.saga_type = starts[i].saga_type,
                                .saga_id = starts[i].saga_id,
                                .input = starts[i].input,
                                .input_len = starts[i].input_len};
    assert_int_equal(saga_starter_start(s, &req, id, sizeof id, on_started,
                                        &w),
                     starts[i].rc);
    printf("# start %zu: %s\n", i, saga_starter_last_error(s));
    assert_non_null(strstr(saga_starter_last_error(s), starts[i].says));
  }
  /* A saga_id_out of 0 bytes can take no id: SAGA_ETOOBIG, nothing
   * sent. Before, the saga started and the caller never got its id. */
  saga_start_request_t fine = {.saga_type = "order", .saga_id = "arg-2"};
  assert_int_equal(saga_starter_start(s, &fine, id, 0, on_started, &w),
                   SAGA_ETOOBIG);
  printf("# start, id_len 0: %s\n", saga_starter_last_error(s));
  assert_non_null(
      strstr(saga_starter_last_error(s), "does not fit saga_id_out of 0"));
  fine.saga_id = NULL; /* a generated id neither */
  assert_int_equal(saga_starter_start(s, &fine, id, 0, on_started, &w),
                   SAGA_ETOOBIG);
  assert_int_equal(saga_starter_cancel(s, longid, NULL, NULL, on_started, &w),
                   SAGA_ETOOBIG);
  assert_non_null(strstr(saga_starter_last_error(s), "256 bytes long"));
  /* A CancelSaga past the producer's message.max.bytes is SAGA_ETOOBIG,
   * as a StartSaga is (was SAGA_EKAFKA, librdkafka's refusal). */
  char why[1001];
  memset(why, 'w', sizeof why - 1);
  why[sizeof why - 1] = '\0';
  assert_int_equal(saga_starter_cancel(s, "arg-1", why, NULL, on_started, &w),
                   SAGA_ETOOBIG);
  printf("# cancel: %s\n", saga_starter_last_error(s));
  assert_non_null(strstr(saga_starter_last_error(s),
                         "CancelSaga of saga \"arg-1\" not sent"));
  assert_non_null(
      strstr(saga_starter_last_error(s), "message.max.bytes (1000)"));
  assert_int_equal(saga_starter_await(s, "", 1000, on_outcome, &w),
                   SAGA_EINVAL);
  assert_non_null(strstr(saga_starter_last_error(s), "0 bytes long"));
  assert_int_equal(saga_starter_await(s, longid, 1000, on_outcome, &w),
                   SAGA_EINVAL);
  assert_non_null(strstr(saga_starter_last_error(s), "256 bytes long"));
  assert_int_equal(saga_starter_await(s, "arg-1", -1, on_outcome, &w),
                   SAGA_EINVAL);
  assert_non_null(strstr(saga_starter_last_error(s), "timeout_ms is -1"));
  saga_starter_close(s, on_closed, &w);
  saga_start_request_t req = {.saga_type = "order", .saga_id = "arg-1"};
  assert_int_equal(saga_starter_start(s, &req, NULL, 0, on_started, &w),
                   SAGA_ESTATE);
  assert_non_null(strstr(saga_starter_last_error(s), "closing"));
  assert_int_equal(saga_starter_await(s, "arg-1", 10, on_outcome, &w),
                   SAGA_ESTATE);
  assert_non_null(strstr(saga_starter_last_error(s), "closing"));
  ct_loop_finish(&loop);
  assert_true(w.closed);
  assert_int_equal(w.started, 0);
  fake_finish(&f);
}

static void test_blocking_run_reports_a_rejected_start(void **state) {
  (void)state;
  fake_t f;
  fake_start(&f);
  saga_starter_config_t cfg = starter_config(&f);
  saga_start_request_t req = {.saga_type = "unknown", .saga_id = "s-fixed"};
  saga_notification_kind_t kind = 0;
  char id[64], reason[128], err[256];
  int rc = saga_run_saga(&cfg, &req, ts_timeout_ms(40000), id, sizeof id,
                         &kind, reason, sizeof reason, err, sizeof err);
  if (rc)
    fail_msg("%s", err);
  assert_string_equal(id, "s-fixed");
  assert_int_equal(kind, SAGA_NOTIFY_REJECTED);
  assert_string_equal(reason, "unknown saga type \"unknown\"");
  fake_finish(&f);
}

/* A configuration or argument the starter cannot use gets the documented
 * answer at once, before anything is sent: bootstrap servers "" (was a
 * 10 s wait ending in SAGA_ETIMEDOUT "Broker transport failure"), a topic
 * Kafka cannot have, a negative setup_timeout_ms (was taken as 10000), an
 * input NULL with a length (was sent empty), an await of "" (was a wait
 * for nothing until the timeout), an input past the producer's
 * message.max.bytes (was SAGA_EKAFKA); after close, SAGA_ESTATE. */
static void test_a_starter_argument_mistake_gets_the_documented_answer(
    void **state) {
  (void)state;
  fake_t f;
  fake_start(&f);
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[256];
  saga_starter_t *s = NULL;
  saga_starter_config_t bad = starter_config(&f);
  bad.kafka.bootstrap_servers = "";
  int64_t t0 = ts_now_ms();
  assert_int_equal(saga_starter_new(&loop, &bad, &s, err, sizeof err),
                   SAGA_EINVAL);
  assert_true(ts_now_ms() - t0 < 1000);
  assert_non_null(strstr(err, "bootstrap_servers"));
  bad = starter_config(&f);
  bad.inbox_topic = "";
  assert_int_equal(saga_starter_new(&loop, &bad, &s, err, sizeof err),
                   SAGA_EINVAL);
  assert_non_null(strstr(err, "inbox_topic"));
  bad = starter_config(&f);
  bad.notifications_topic = "^saga.*";
  assert_int_equal(saga_starter_new(&loop, &bad, &s, err, sizeof err),
                   SAGA_EINVAL);
  assert_non_null(strstr(err, "notifications_topic"));
  bad = starter_config(&f);
  bad.setup_timeout_ms = -1;
  assert_int_equal(saga_starter_new(&loop, &bad, &s, err, sizeof err),
                   SAGA_EINVAL);
  assert_non_null(strstr(err, "setup_timeout_ms"));
  ct_loop_finish(&loop);

  uv_loop_init(&loop);
  saga_starter_config_t cfg = starter_config(&f);
  static const char *const props[] = {"fetch.wait.max.ms", "5", "linger.ms",
                                      "1", "message.max.bytes", "4000", NULL};
  cfg.kafka.properties = props;
  if (saga_starter_new(&loop, &cfg, &s, err, sizeof err))
    fail_msg("%s", err);
  watch_t w = {0};
  char id[64];
  saga_start_request_t req = {.saga_type = "order", .saga_id = "arg-1",
                              .input = NULL, .input_len = 3};
  assert_int_equal(saga_starter_start(s, &req, id, sizeof id, on_started, &w),
                   SAGA_EINVAL);
  static char big[4096];
  memset(big, ' ', sizeof big);
  req.input = big;
  req.input_len = sizeof big; /* fits max_message_bytes, not the producer */
  assert_int_equal(saga_starter_start(s, &req, id, sizeof id, on_started, &w),
                   SAGA_ETOOBIG);
  assert_int_equal(saga_starter_await(s, "", 1000, on_outcome, &w),
                   SAGA_EINVAL);
  assert_int_equal(saga_starter_await(s, "arg-1", -1, on_outcome, &w),
                   SAGA_EINVAL);
  /* not JSON, or JSON with a \u0000: bytes the library carries as they
   * are (the coordinator hands them on as {"$base64": ...}) */
  req.input = "{\"note\":\"a\\u0000b\"}";
  req.input_len = strlen(req.input);
  assert_int_equal(saga_starter_start(s, &req, id, sizeof id, on_started, &w),
                   0);
  assert_true(ct_run_until(&loop, &w.started, 30000));
  assert_int_equal(w.started_err, 0);
  saga_starter_close(s, on_closed, &w);
  req.input = "{}";
  req.input_len = 2;
  assert_int_equal(saga_starter_start(s, &req, id, sizeof id, on_started, &w),
                   SAGA_ESTATE);
  assert_int_equal(saga_starter_cancel(s, "arg-1", NULL, NULL, on_started,
                                       &w),
                   SAGA_ESTATE);
  assert_int_equal(saga_starter_await(s, "arg-1", 10, on_outcome, &w),
                   SAGA_ESTATE);
  ct_loop_finish(&loop);
  assert_true(w.closed);
  assert_int_equal(w.started, 1);
  assert_int_equal(w.outcomes, 0);
  fake_finish(&f);
}

/* saga_run_saga checks what it can before it sends anything: a negative
 * timeout (was: the saga started, then SAGA_EINVAL), an id that does not
 * fit saga_id_out (was: started, and the id given back cut); and
 * timeout_ms bounds the whole call, setup included (was: the setup's own
 * 10 s first). */
static void test_blocking_run_checks_first_and_keeps_to_its_timeout(
    void **state) {
  (void)state;
  fake_t f;
  fake_start(&f);
  saga_starter_config_t cfg = starter_config(&f);
  saga_start_request_t req = {.saga_type = "order",
                              .saga_id = "run-long-id-1"};
  saga_notification_kind_t kind = 0;
  char id[8] = "unset", reason[64], err[256];
  assert_int_equal(saga_run_saga(&cfg, &req, -1, id, sizeof id, &kind, reason,
                                 sizeof reason, err, sizeof err),
                   SAGA_EINVAL);
  assert_non_null(strstr(err, "timeout_ms"));
  assert_int_equal(saga_run_saga(&cfg, &req, ts_timeout_ms(30000), id,
                                 sizeof id, &kind, reason, sizeof reason, err,
                                 sizeof err),
                   SAGA_ETOOBIG);
  assert_string_equal(id, "unset"); /* never a cut id */
  assert_non_null(strstr(err, "saga_id_out"));
  /* the one start the fake coordinator sees is this one */
  char whole[64];
  req.saga_id = "run-ok-1";
  int rc = saga_run_saga(&cfg, &req, ts_timeout_ms(40000), whole,
                         sizeof whole, &kind, reason, sizeof reason, err,
                         sizeof err);
  if (rc)
    fail_msg("%s", err);
  assert_string_equal(whole, "run-ok-1");
  assert_int_equal(kind, SAGA_NOTIFY_COMPLETED);
  fake_finish(&f);
  assert_int_equal(f.starts, 1);

  /* nothing listens there: the setup gives up within the call's time */
  saga_starter_config_t nowhere = {
      .kafka = {.bootstrap_servers = "127.0.0.1:9"}};
  int64_t t0 = ts_now_ms();
  assert_int_equal(saga_run_saga(&nowhere, &req, 1500, NULL, 0, &kind, NULL,
                                 0, err, sizeof err),
                   SAGA_ETIMEDOUT);
  int64_t took = ts_now_ms() - t0;
  printf("# %lld ms: %s\n", (long long)took, err);
  assert_true(took < 5000);
  /* an id that does not fit is refused before that setup: SAGA_ETOOBIG,
   * not SAGA_ETIMEDOUT after the brokers' silence */
  assert_int_equal(saga_run_saga(&nowhere, &req, 1500, id, sizeof id, &kind,
                                 NULL, 0, err, sizeof err),
                   SAGA_ETOOBIG);
  assert_non_null(strstr(err, "saga_id_out"));
  req.saga_id = NULL; /* a generated id: 36 characters */
  assert_int_equal(saga_run_saga(&nowhere, &req, 1500, id, sizeof id, &kind,
                                 NULL, 0, err, sizeof err),
                   SAGA_ETOOBIG);
}

/* saga_run_saga checks the request as saga_starter_start does, before the
 * Kafka setup: with no broker to answer, each mistake gets its own code
 * at once. Before, a NULL request or saga_type, an input NULL with a
 * length and an id past 255 bytes waited out the setup and came back
 * SAGA_ETIMEDOUT; a saga_id_out of 0 bytes too (and with a broker, the
 * saga started and the caller never got its id). */
static void test_blocking_run_checks_the_request_before_the_setup(
    void **state) {
  (void)state;
  saga_starter_config_t nowhere = {
      .kafka = {.bootstrap_servers = "127.0.0.1:9"}};
  char longid[301];
  memset(longid, 'l', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  char out[64] = "unset";
  const struct {
    int no_req;
    const char *saga_type, *saga_id;
    const void *input;
    size_t input_len, id_len;
    int rc;
    const char *says;
  } runs[] = {
      {1, "order", "r-1", NULL, 0, sizeof out, SAGA_EINVAL, "no request"},
      {0, NULL, "r-1", NULL, 0, sizeof out, SAGA_EINVAL, "no saga_type"},
      {0, "order", "r-1", NULL, 3, sizeof out, SAGA_EINVAL,
       "input is NULL with a length of 3 bytes"},
      {0, "order", longid, NULL, 0, sizeof out, SAGA_ETOOBIG,
       "saga_id is 300 bytes long"},
      {0, "order", "r-1", NULL, 0, 0, SAGA_ETOOBIG,
       "does not fit saga_id_out of 0 bytes"},
      {0, "order", NULL, NULL, 0, 0, SAGA_ETOOBIG,
       "does not fit saga_id_out of 0 bytes"},
  };
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
    saga_start_request_t req = {.saga_type = runs[i].saga_type,
                                .saga_id = runs[i].saga_id,
                                .input = runs[i].input,
                                .input_len = runs[i].input_len};
    char err[256] = "";
    int64_t t0 = ts_now_ms();
    int rc = saga_run_saga(&nowhere, runs[i].no_req ? NULL : &req, 3000, out,
                           runs[i].id_len, NULL, NULL, 0, err, sizeof err);
    int64_t took = ts_now_ms() - t0;
    printf("# run %zu: %s after %lld ms: %s\n", i, saga_err_name(rc),
           (long long)took, err);
    assert_int_equal(rc, runs[i].rc);
    assert_non_null(strstr(err, runs[i].says));
    assert_true(took < 1000);
    assert_string_equal(out, "unset");
  }
}

/* What a saga_started_cb was told, with the starter's last error then. */
typedef struct sent {
  int calls, err;
  char why[512];
} sent_t;

static void on_sent(saga_starter_t *s, int err, const char *saga_id,
                    void *arg) {
  (void)saga_id;
  sent_t *d = arg;
  d->calls++;
  d->err = err;
  snprintf(d->why, sizeof d->why, "%s", saga_starter_last_error(s));
}

/* A StartSaga or CancelSaga the broker never takes (the inbox topic is
 * not authorized, set up through the embedded Kafka's control socket)
 * fails its delivery once message.timeout.ms has passed: saga_run_saga's
 * errbuf and saga_starter_last_error carry librdkafka's word and name the
 * saga and the topic. Before, errbuf said only "kafka error" and the
 * callback had nothing but SAGA_EKAFKA. */
static void test_a_start_kafka_refuses_reaches_the_caller_with_its_text(
    void **state) {
  (void)state;
  char inbox[128], notes[128];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("denied.inbox"));
  snprintf(notes, sizeof notes, "%s", ts_unique_name("denied.notes"));
  /* TOPIC_AUTHORIZATION_FAILED */
  if (ct_kafka_ctl("topic-error %s 29", inbox) != 0)
    skip();
  static const char *const props[] = {"linger.ms", "1", "message.timeout.ms",
                                      "1500", NULL};
  saga_starter_config_t cfg = {
      .kafka = {.bootstrap_servers = ts_kafka_bootstrap(),
                .properties = props},
      .inbox_topic = inbox,
      .notifications_topic = notes,
      .setup_timeout_ms = ts_timeout_ms(3000),
  };
  saga_start_request_t req = {.saga_type = "order", .saga_id = "s-denied-1"};
  saga_notification_kind_t kind = 0;
  char err[512] = "";
  int rc = saga_run_saga(&cfg, &req, ts_timeout_ms(30000), NULL, 0, &kind,
                         NULL, 0, err, sizeof err);
  printf("# %s: %s\n", saga_err_name(rc), err);
  assert_int_equal(rc, SAGA_EKAFKA);
  assert_non_null(strstr(err, "\"s-denied-1\""));
  assert_non_null(strstr(err, inbox));
  assert_non_null(strstr(err, "Message timed out"));

  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_starter_t *s;
  rc = saga_starter_new(&loop, &cfg, &s, err, sizeof err);
  if (rc)
    fail_msg("%s", err);
  assert_string_equal(saga_starter_last_error(s), "");
  assert_null(saga_starter_last_error(NULL));
  sent_t started = {0}, cancelled = {0};
  req.saga_id = "s-denied-2";
  assert_int_equal(saga_starter_start(s, &req, NULL, 0, on_sent, &started), 0);
  assert_true(ct_run_until(&loop, &started.calls, 30000));
  assert_int_equal(started.err, SAGA_EKAFKA);
  assert_non_null(strstr(started.why, "StartSaga of saga \"s-denied-2\""));
  assert_non_null(strstr(started.why, inbox));
  assert_non_null(strstr(started.why, "Message timed out"));
  assert_int_equal(saga_starter_cancel(s, "s-denied-3", "test", "tester",
                                       on_sent, &cancelled),
                   0);
  assert_true(ct_run_until(&loop, &cancelled.calls, 30000));
  assert_int_equal(cancelled.err, SAGA_EKAFKA);
  assert_non_null(
      strstr(cancelled.why, "CancelSaga of saga \"s-denied-3\""));
  assert_non_null(strstr(cancelled.why, "Message timed out"));
  watch_t w = {0};
  saga_starter_close(s, on_closed, &w);
  ct_loop_finish(&loop);
  assert_true(w.closed);
  assert_int_equal(ct_kafka_ctl("topic-error %s 0", inbox), 0);
}

/* While a starter closes, a start Kafka refuses within the close's 5 s
 * is still SAGA_EKAFKA with librdkafka's word in saga_starter_last_error;
 * only one still unanswered then, purged, is SAGA_ECANCELED. Before,
 * every delivery failure during the close was SAGA_ECANCELED, with no
 * text. */
static void test_a_close_cancels_only_the_starts_kafka_never_answered(
    void **state) {
  (void)state;
  char inbox[128], notes[128];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("closing.inbox"));
  snprintf(notes, sizeof notes, "%s", ts_unique_name("closing.notes"));
  if (ct_kafka_ctl("topic-error %s 29", inbox) != 0) /* not authorized */
    skip();
  static const char *const quick[] = {"linger.ms", "1", "message.timeout.ms",
                                      "1500", NULL};
  static const char *const patient[] = {"linger.ms", "1",
                                        "message.timeout.ms", "120000", NULL};
  const char *const *props[] = {quick, patient};
  const int want[] = {SAGA_EKAFKA, SAGA_ECANCELED};
  for (int i = 0; i < 2; i++) {
    saga_starter_config_t cfg = {
        .kafka = {.bootstrap_servers = ts_kafka_bootstrap(),
                  .properties = props[i]},
        .inbox_topic = inbox,
        .notifications_topic = notes,
        .setup_timeout_ms = ts_timeout_ms(3000),
    };
    uv_loop_t loop;
    uv_loop_init(&loop);
    saga_starter_t *s;
    char err[512];
    if (saga_starter_new(&loop, &cfg, &s, err, sizeof err))
      fail_msg("%s", err);
    saga_start_request_t req = {.saga_type = "order",
                                .saga_id = i ? "s-closing-2" : "s-closing-1"};
    sent_t started = {0};
    assert_int_equal(saga_starter_start(s, &req, NULL, 0, on_sent, &started),
                     0);
    watch_t w = {0};
    saga_starter_close(s, on_closed, &w);
    ct_loop_finish(&loop);
    assert_true(w.closed);
    printf("# %s: %s\n", saga_err_name(started.err), started.why);
    assert_int_equal(started.calls, 1);
    assert_int_equal(started.err, want[i]);
    if (want[i] == SAGA_EKAFKA) {
      assert_non_null(strstr(started.why, "\"s-closing-1\""));
      assert_non_null(strstr(started.why, "Message timed out"));
    }
  }
  assert_int_equal(ct_kafka_ctl("topic-error %s 0", inbox), 0);
}

static int starter_error_has_brokers_down(void *arg) {
  return strstr(saga_starter_last_error(arg), "brokers are down") != NULL;
}

/* Errors of the Kafka client itself reach the starter's caller in
 * librdkafka's words, naming the part that said it: saga_run_saga's
 * errbuf, when the inbox's leader cannot be reached and the start is
 * never acknowledged, and saga_starter_last_error, when every broker goes
 * down. On a private mock cluster (librdkafka's, in this process), so no
 * other test loses its brokers. Before, the errbuf said only that Kafka
 * did not acknowledge, and the last error stayed "". */
static void test_kafka_client_errors_reach_the_starter_with_their_text(
    void **state) {
  (void)state;
  char e[512];
  rd_kafka_t *owner = NULL;
  rd_kafka_mock_cluster_t *mc = ct_mock_cluster(2, &owner);
  char inbox[128], notes[128];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("kerr.inbox"));
  snprintf(notes, sizeof notes, "%s", ts_unique_name("kerr.notes"));
  assert_int_equal(rd_kafka_mock_topic_create(mc, inbox, 1, 1), 0);
  assert_int_equal(rd_kafka_mock_topic_create(mc, notes, 1, 1), 0);
  assert_int_equal(rd_kafka_mock_partition_set_leader(mc, notes, 0, 1), 0);
  assert_int_equal(rd_kafka_mock_partition_set_leader(mc, inbox, 0, 2), 0);
  static const char *const props[] = {"linger.ms", "1", NULL};
  saga_starter_config_t cfg = {
      .kafka = {.bootstrap_servers = rd_kafka_mock_cluster_bootstraps(mc),
                .properties = props},
      .inbox_topic = inbox,
      .notifications_topic = notes,
      .setup_timeout_ms = ts_timeout_ms(3000),
  };

  /* The inbox's leader is down: the setup succeeds, the start waits. */
  rd_kafka_mock_broker_set_down(mc, 2);
  saga_start_request_t req = {.saga_type = "order", .saga_id = "s-kerr-1"};
  saga_notification_kind_t kind = 0;
  int rc = saga_run_saga(&cfg, &req, ts_timeout_ms(3000), NULL, 0, &kind,
                         NULL, 0, e, sizeof e);
  printf("# %s: %s\n", saga_err_name(rc), e);
  assert_int_equal(rc, SAGA_ETIMEDOUT);
  assert_non_null(strstr(e, "did not acknowledge the start"));
  assert_non_null(strstr(e, "; last error: kafka: "));
  /* the part that said it last: the producer, for the inbox's leader, or
   * the consumer, when the down broker also coordinates its group */
  assert_true(strstr(e, " (producer)") || strstr(e, " (consumer)"));
  rd_kafka_mock_broker_set_up(mc, 2);

  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_starter_t *s;
  rc = saga_starter_new(&loop, &cfg, &s, e, sizeof e);
  if (rc)
    fail_msg("%s", e);
  rd_kafka_mock_broker_set_down(mc, 1);
  rd_kafka_mock_broker_set_down(mc, 2);
  assert_true(
      ct_run_until_pred(&loop, starter_error_has_brokers_down, s, 30000));
  const char *why = saga_starter_last_error(s);
  printf("# %s\n", why);
  assert_true(strncmp(why, "kafka: ", 7) == 0);
  assert_true(strstr(why, " (consumer)") || strstr(why, " (producer)"));
  rd_kafka_mock_broker_set_up(mc, 1);
  rd_kafka_mock_broker_set_up(mc, 2);
  watch_t w = {0};
  saga_starter_close(s, on_closed, &w);
  ct_loop_finish(&loop);
  assert_true(w.closed);
  rd_kafka_destroy(owner);
}

/* setup_timeout_ms is one timeout for the notification topic's end
 * offsets, not one per partition: with every ListOffsets answered 1.5 s
 * late, a starter on a topic of 4 partitions and a 2 s setup timeout
 * answers SAGA_ETIMEDOUT after about those 2 s (librdkafka notices a
 * timed-out request within a second). Before, each partition had the
 * whole timeout, and this one took over 6 s and succeeded. */
static void test_the_setup_timeout_holds_for_all_partitions_together(
    void **state) {
  (void)state;
  char e[512] = "";
  rd_kafka_t *owner = NULL;
  rd_kafka_mock_cluster_t *mc = ct_mock_cluster(1, &owner);
  char inbox[128], notes[128];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("slow.inbox"));
  snprintf(notes, sizeof notes, "%s", ts_unique_name("slow.notes"));
  assert_int_equal(rd_kafka_mock_topic_create(mc, inbox, 1, 1), 0);
  assert_int_equal(rd_kafka_mock_topic_create(mc, notes, 4, 1), 0);
  /* ListOffsets (API key 2): no error, each answer 1.5 s late */
  for (int i = 0; i < 16; i++)
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                         mc, 1, 2, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 1500),
                     0);
  saga_starter_config_t cfg = {
      .kafka = {.bootstrap_servers = rd_kafka_mock_cluster_bootstraps(mc)},
      .inbox_topic = inbox,
      .notifications_topic = notes,
      .setup_timeout_ms = 2000,
  };
  uv_loop_t loop;
  uv_loop_init(&loop);
  saga_starter_t *s = NULL;
  int64_t t0 = ts_now_ms();
  int rc = saga_starter_new(&loop, &cfg, &s, e, sizeof e);
  int64_t took = ts_now_ms() - t0;
  printf("# %s after %lld ms: %s\n", saga_err_name(rc), (long long)took, e);
  if (rc == 0) {
    watch_t w = {0};
    saga_starter_close(s, on_closed, &w);
    ct_loop_finish(&loop);
    rd_kafka_destroy(owner);
    fail_msg("set up after %lld ms with a 2000 ms setup timeout",
             (long long)took);
  }
  ct_loop_finish(&loop);
  assert_int_equal(rc, SAGA_ETIMEDOUT);
  assert_non_null(strstr(e, notes));
  assert_true(took < 5000);
  rd_kafka_destroy(owner);
}

int main(void) {
  ts_require_kafka();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_started_saga_outcome_is_awaited_and_notifications_seen),
      cmocka_unit_test(test_cancel_is_answered_by_the_outcome_or_its_refusal),
      cmocka_unit_test(
          test_an_await_that_finds_no_stored_refusal_keeps_its_timeout),
      cmocka_unit_test(test_cancels_kept_for_their_answer_are_bounded),
      cmocka_unit_test(test_a_starter_refusal_says_which_and_why),
      cmocka_unit_test(test_blocking_run_reports_a_rejected_start),
      cmocka_unit_test(
          test_a_starter_argument_mistake_gets_the_documented_answer),
      cmocka_unit_test(
          test_blocking_run_checks_first_and_keeps_to_its_timeout),
      cmocka_unit_test(test_blocking_run_checks_the_request_before_the_setup),
      cmocka_unit_test(
          test_a_start_kafka_refuses_reaches_the_caller_with_its_text),
      cmocka_unit_test(
          test_a_close_cancels_only_the_starts_kafka_never_answered),
      cmocka_unit_test(
          test_kafka_client_errors_reach_the_starter_with_their_text),
      cmocka_unit_test(
          test_the_setup_timeout_holds_for_all_partitions_together),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
