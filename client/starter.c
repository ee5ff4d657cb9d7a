/* The starter side of the protocol (saga/client.h): StartSaga to the inbox,
 * and a group-less reader of every notification partition from the end it
 * had when the starter was created, so no outcome produced afterwards is
 * missed and no consumer-group join delays it. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids.h"
#include "kafka_errtext.h"
#include "kafka_limits.h"
#include "kafka_loop.h"
#include "saga/client.h"
#include "text.h"
#include "wire_kafka.h"

#define OUTCOME_CACHE_MAX 4096
/* Cancels kept for their answer (see cancel_t), as many as outcomes. */
#define CANCEL_KEPT_MAX 4096

typedef struct outcome {
  char saga_id[SAGA_WIRE_MAX_ID + 1];
  Saga__V1__Notification *n; /* owned */
  saga__wire_meta_t meta;
  struct outcome *next;
} outcome_t;

typedef struct await {
  saga_starter_t *s;
  char saga_id[SAGA_WIRE_MAX_ID + 1];
  saga_outcome_cb cb;
  void *arg;
  uv_timer_t timer;
  uint64_t deadline; /* uv_now() of the loop when timeout_ms is up */
  int done;
  struct await *prev, *next;
} await_t;

/* A cancel this starter sent whose answer has not come: a CANCEL_REFUSED
 * for its saga ends that saga's awaits (kept here when none waits yet);
 * the saga's outcome drops it. At most CANCEL_KEPT_MAX are kept, oldest
 * first: a refusal nobody awaits, or a cancel never answered, is dropped
 * when that many newer ones came after it. */
typedef struct cancel {
  struct cancel *next;
  Saga__V1__Notification *refusal; /* owned; NULL until it comes */
  saga__wire_meta_t meta;
  char saga_id[SAGA_WIRE_MAX_ID + 1];
} cancel_t;

typedef struct start_job {
  saga_starter_t *s;
  const char *what; /* "StartSaga" or "CancelSaga" */
  char saga_id[SAGA_WIRE_MAX_ID + 1];
  saga_started_cb cb;
  void *arg;
} start_job_t;

struct saga_starter {
  uv_loop_t *loop;
  saga_kloop_t *kl;
  char *inbox, *notifications;
  size_t max_bytes;
  size_t producer_max; /* librdkafka's message.max.bytes; 0 = unknown */
  outcome_t *outcomes, *outcomes_tail;
  size_t n_outcomes;
  await_t *awaits;
  cancel_t *cancels, *cancels_tail; /* oldest first */
  size_t n_cancels;
  saga_notification_cb sub;
  void *sub_arg;
  char last_error[1024]; /* the last failure to send or Kafka client
                            error, "" before */
  int closing;
  int timers_open;
  int kloop_open;
  void (*close_cb)(void *);
  void *close_arg;
};

/* Keep the text of a failure to send for saga_starter_last_error. */
static void note(saga_starter_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(saga_starter_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->last_error, sizeof s->last_error, fmt, ap);
  va_end(ap);
}

/* A Kafka client-level error (brokers down, a fatal error): kept for
 * saga_starter_last_error. A start it holds up fails, if it does, through
 * its own delivery report. */
static void on_error(saga_kloop_t *kl, rd_kafka_resp_err_t err, int fatal,
                     const char *reason, void *opaque) {
  saga_starter_t *s = opaque;
  saga__kafka_error_text(s->last_error, sizeof s->last_error, kl, err, fatal,
                         reason);
}

const char *saga_starter_last_error(const saga_starter_t *s) {
  return s ? s->last_error : NULL;
}

static void notification_view(const Saga__V1__Notification *n,
                              const saga__wire_meta_t *meta,
                              saga_notification_t *v) {
  *v = (saga_notification_t){
      .saga_id = n->saga_id,
      .saga_type = n->saga_type,
      .kind = (saga_notification_kind_t)n->kind,
      .step = n->step,
      .action = n->action,
      .outcome = n->outcome,
      .payload = n->payload.data,
      .payload_len = n->payload.len,
      .reason = n->reason,
      .at_ms = n->at_ms,
      .meta = saga__wire_meta_view(meta),
  };
}

/* The newest remembered outcome of saga_id (the list runs oldest first):
 * a saga parked in COMPENSATION_FAILED and compensated after an
 * operator's retry has two, and an await answers with its latest word. */
static const outcome_t *find_outcome(const saga_starter_t *s,
                                     const char *saga_id) {
  const outcome_t *found = NULL;
  for (const outcome_t *o = s->outcomes; o; o = o->next)
    if (!strcmp(o->saga_id, saga_id))
      found = o;
  return found;
}

/* Unlink the cancel of saga_id from the list (the caller frees it with
 * cancel_free, or keeps it again with cancel_keep), or NULL. */
static cancel_t *cancel_take(saga_starter_t *s, const char *saga_id) {
  for (cancel_t *c = s->cancels, *prev = NULL; c; prev = c, c = c->next)
    if (!strcmp(c->saga_id, saga_id)) {
      if (prev)
        prev->next = c->next;
      else
        s->cancels = c->next;
      if (s->cancels_tail == c)
        s->cancels_tail = prev;
      c->next = NULL;
      s->n_cancels--;
      return c;
    }
  return NULL;
}

static cancel_t *cancel_find(const saga_starter_t *s, const char *saga_id) {
  for (cancel_t *c = s->cancels; c; c = c->next)
    if (!strcmp(c->saga_id, saga_id))
      return c;
  return NULL;
}

static void cancel_free(cancel_t *c) {
  if (c && c->refusal)
    saga__wire_free(&c->refusal->base);
  free(c);
}

/* Keep c (not in the list) as the newest cancel; past CANCEL_KEPT_MAX the
 * oldest goes, and an await of its saga waits for the outcome alone. */
static void cancel_keep(saga_starter_t *s, cancel_t *c) {
  c->next = NULL;
  if (s->cancels_tail)
    s->cancels_tail->next = c;
  else
    s->cancels = c;
  s->cancels_tail = c;
  if (++s->n_cancels > CANCEL_KEPT_MAX)
    cancel_free(cancel_take(s, s->cancels->saga_id));
}

static void maybe_free(saga_starter_t *s);

static void on_await_closed(uv_handle_t *h) {
  await_t *a = h->data;
  saga_starter_t *s = a->s;
  free(a);
  s->timers_open--;
  maybe_free(s);
}

static void await_finish(await_t *a, int err, const saga_notification_t *n) {
  saga_starter_t *s = a->s;
  if (a->done)
    return;
  a->done = 1;
  if (a->prev)
    a->prev->next = a->next;
  else
    s->awaits = a->next;
  if (a->next)
    a->next->prev = a->prev;
  uv_timer_stop(&a->timer);
  uv_close((uv_handle_t *)&a->timer, on_await_closed);
  a->cb(s, err, n, a->arg);
}

static void on_await_timer(uv_timer_t *t) {
  await_t *a = t->data;
  const cancel_t *c = cancel_find(a->s, a->saga_id);
  if (c && c->refusal) {
    /* The refusal of our cancel came before this await: it answers. */
    cancel_t *mine = cancel_take(a->s, a->saga_id);
    saga_notification_t v;
    notification_view(mine->refusal, &mine->meta, &v);
    await_finish(a, 0, &v);
    cancel_free(mine);
    return;
  }
  const outcome_t *o = find_outcome(a->s, a->saga_id);
  uint64_t now = uv_now(t->loop);
  if (o) {
    saga_notification_t v;
    notification_view(o->n, &o->meta, &v);
    await_finish(a, 0, &v);
  } else if (now < a->deadline) {
    /* Fired early for a refusal that is gone (another await of the saga
     * took it, or a new cancel cleared it): wait the rest of the time. */
    uv_timer_start(&a->timer, on_await_timer, a->deadline - now, 0);
  } else {
    await_finish(a, SAGA_ETIMEDOUT, NULL);
  }
}

/* Remember n, newest last (find_outcome answers with the newest of a
 * saga's); the oldest goes past OUTCOME_CACHE_MAX. Constant time: a
 * starter under load remembers thousands a second. */
static void remember(saga_starter_t *s, Saga__V1__Notification *n,
                     const saga__wire_meta_t *meta) {
  outcome_t *o = calloc(1, sizeof *o);
  if (!o) {
    saga__wire_free(&n->base);
    return;
  }
  snprintf(o->saga_id, sizeof o->saga_id, "%s", n->saga_id);
  o->n = n;
  o->meta = *meta;
  if (s->outcomes_tail)
    s->outcomes_tail->next = o;
  else
    s->outcomes = o;
  s->outcomes_tail = o;
  if (++s->n_outcomes > OUTCOME_CACHE_MAX) {
    outcome_t *old = s->outcomes;
    s->outcomes = old->next;
    saga__wire_free(&old->n->base);
    free(old);
    s->n_outcomes--;
  }
}

static void on_message(saga_kloop_t *kl, const rd_kafka_message_t *m,
                       saga_kloop_ack_t *ack, void *opaque) {
  saga_starter_t *s = opaque;
  saga_kloop_ack(kl, ack);
  rd_kafka_headers_t *hdrs = NULL;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
    hdrs = NULL;
  ProtobufCMessage *msg;
  saga__wire_meta_t meta;
  if (s->closing ||
      saga__wire_decode(&saga__v1__notification__descriptor, m->payload,
                        m->len, hdrs, s->max_bytes, &msg, &meta, NULL,
                        0) != 0)
    return; /* not ours to dead-letter: the coordinator wrote it */
  Saga__V1__Notification *n = (Saga__V1__Notification *)msg;
  saga_notification_t v;
  notification_view(n, &meta, &v);
  if (s->sub)
    s->sub(s, &v, s->sub_arg);
  if (n->kind == SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_CANCEL_REFUSED) {
    /* The answer to a cancel of ours (another's is not our business). */
    cancel_t *c = cancel_take(s, n->saga_id);
    if (!c) {
      saga__wire_free(msg);
      return;
    }
    int answered = 0;
    for (await_t *a = s->awaits, *next; a; a = next) {
      next = a->next;
      if (!strcmp(a->saga_id, n->saga_id)) {
        await_finish(a, 0, &v);
        answered = 1;
      }
    }
    if (answered || s->closing) {
      cancel_free(c);
      saga__wire_free(msg);
      return;
    }
    if (c->refusal)
      saga__wire_free(&c->refusal->base);
    c->refusal = n;
    c->meta = meta;
    cancel_keep(s, c);
    return;
  }
  if (!saga_notification_is_outcome(n->kind)) {
    saga__wire_free(msg);
    return;
  }
  cancel_free(cancel_take(s, n->saga_id)); /* the saga's end answers it */
  for (await_t *a = s->awaits, *next; a; a = next) {
    next = a->next;
    if (!strcmp(a->saga_id, n->saga_id))
      await_finish(a, 0, &v);
  }
  remember(s, n, &meta);
}

static void on_delivery(saga_kloop_t *kl, const rd_kafka_message_t *m,
                        void *msg_opaque, void *opaque) {
  (void)kl;
  saga_starter_t *s = opaque;
  start_job_t *j = msg_opaque;
  /* A purge is the close giving up on it (docs/client.md); any other
   * failure, during a close too, is Kafka's word on it. */
  int err = !m->err                                      ? 0
            : m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                    m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT
                ? SAGA_ECANCELED
                : SAGA_EKAFKA;
  if (err == SAGA_EKAFKA)
    note(s, "%s of saga \"%s\" not delivered to \"%s\": %s", j->what,
         j->saga_id, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
  j->cb(s, err, j->saga_id, j->arg);
  free(j);
}

/* A wait in ms for librdkafka, which takes an int (-1 = forever): a
 * larger one is cut to INT_MAX, never wrapped. */
static int wait_ms(int64_t ms) {
  return ms > INT_MAX ? INT_MAX : ms < 0 ? 0 : (int)ms;
}

/* Assign every partition of the notifications topic at its current end. */
static int assign_notifications(saga_starter_t *s, int64_t timeout_ms,
                                char *errbuf, size_t errlen) {
  rd_kafka_t *rk = saga_kloop_consumer(s->kl);
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, s->notifications, NULL);
  if (!t)
    return saga__errf(SAGA_ENOMEM, errbuf, errlen, "out of memory");
  const struct rd_kafka_metadata *md = NULL;
  int n = 0, rc = 0;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  uv_update_time(s->loop);
  uint64_t deadline = uv_now(s->loop) + (uint64_t)timeout_ms;
  /* A topic being auto-created has no partitions at first: ask again,
   * within what is left of the time. */
  while (n == 0 && uv_now(s->loop) < deadline) {
    err = rd_kafka_metadata(rk, 0, t, &md,
                            wait_ms((int64_t)(deadline - uv_now(s->loop))));
    if (!err && md->topic_cnt == 1 && !md->topics[0].err)
      n = md->topics[0].partition_cnt;
    if (md)
      rd_kafka_metadata_destroy(md);
    md = NULL;
    uv_update_time(s->loop);
  }
  rd_kafka_topic_destroy(t);
  if (n == 0)
    return saga__errf(SAGA_ETIMEDOUT, errbuf, errlen,
                      "could not learn the partitions of topic \"%s\": %s",
                      s->notifications, rd_kafka_err2str(err));
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
  for (int i = 0; i < n && !rc; i++) {
    int64_t lo, hi;
    uv_update_time(s->loop);
    uint64_t now = uv_now(s->loop);
    /* each partition within what is left of the one timeout (a query
     * given none still waits for its answer) */
    err = now < deadline ? rd_kafka_query_watermark_offsets(
                               rk, s->notifications, i, &lo, &hi,
                               wait_ms((int64_t)(deadline - now)))
                         : RD_KAFKA_RESP_ERR__TIMED_OUT;
    if (err)
      rc = saga__errf(err == RD_KAFKA_RESP_ERR__TIMED_OUT ? SAGA_ETIMEDOUT
                                                          : SAGA_EKAFKA,
                      errbuf, errlen,
                      "could not read the end of \"%s\" partition %d: %s",
                      s->notifications, i, rd_kafka_err2str(err));
    else
      rd_kafka_topic_partition_list_add(l, s->notifications, i)->offset = hi;
  }
  if (!rc && saga_kloop_assign(s->kl, l, errbuf, errlen) != 0)
    rc = SAGA_EKAFKA;
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

/* Learn the inbox topic's partitions and leaders on the producer now, so
 * the first StartSaga leaves at once instead of waiting for the producer's
 * first metadata round (about a second on the embedded mock: every order
 * of a fresh order-starter took a second more than its saga). Best
 * effort: a failure only leaves that wait to the first start. */
static void warm_producer(saga_starter_t *s, int64_t timeout_ms) {
  rd_kafka_t *rk = saga_kloop_producer(s->kl);
  rd_kafka_topic_t *t = rk ? rd_kafka_topic_new(rk, s->inbox, NULL) : NULL;
  if (!t)
    return;
  const struct rd_kafka_metadata *md = NULL;
  if (rd_kafka_metadata(rk, 0, t, &md, wait_ms(timeout_ms)) ==
          RD_KAFKA_RESP_ERR_NO_ERROR &&
      md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
}

static void starter_free(saga_starter_t *s) {
  while (s->cancels)
    cancel_free(cancel_take(s, s->cancels->saga_id));
  while (s->outcomes) {
    outcome_t *o = s->outcomes;
    s->outcomes = o->next;
    saga__wire_free(&o->n->base);
    free(o);
  }
  free(s->inbox);
  free(s->notifications);
  free(s);
}

/* saga_starter_new, with both waits (the notification partitions, then
 * the producer's warm-up) within budget_ms in all (INT64_MAX: none). */
static int starter_new(uv_loop_t *loop, const saga_starter_config_t *cfg,
                       int64_t budget_ms, saga_starter_t **out, char *errbuf,
                       size_t errlen) {
  if (!loop || !cfg || !out)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "starter needs a loop, a configuration and a place for "
                      "the handle");
  if (!cfg->kafka.bootstrap_servers || !*cfg->kafka.bootstrap_servers)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "starter: kafka.bootstrap_servers is missing");
  const char *const topics[2] = {cfg->inbox_topic, cfg->notifications_topic};
  const char *const topic_field[2] = {"inbox_topic", "notifications_topic"};
  for (int i = 0; i < 2; i++)
    if (topics[i] && !saga__kafka_topic_ok(topics[i]))
      return saga__errf(SAGA_EINVAL, errbuf, errlen,
                        "starter: %s \"%.64s\" is not a Kafka topic name (1 "
                        "to 249 of A-Z a-z 0-9 . _ -)",
                        topic_field[i], topics[i]);
  if (cfg->setup_timeout_ms < 0)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "starter: setup_timeout_ms is %lld, must be 0 (the "
                      "default, 10000) or more",
                      (long long)cfg->setup_timeout_ms);
  saga_starter_t *s = calloc(1, sizeof *s);
  if (!s)
    return saga__errf(SAGA_ENOMEM, errbuf, errlen, "out of memory");
  s->loop = loop;
  s->max_bytes = cfg->kafka.max_message_bytes
                     ? cfg->kafka.max_message_bytes
                     : SAGA_DEFAULT_MAX_MESSAGE_BYTES;
  s->inbox = strdup(cfg->inbox_topic ? cfg->inbox_topic
                                     : SAGA_DEFAULT_INBOX_TOPIC);
  s->notifications =
      strdup(cfg->notifications_topic ? cfg->notifications_topic
                                      : SAGA_DEFAULT_NOTIFICATIONS_TOPIC);
  if (!s->inbox || !s->notifications) {
    starter_free(s);
    return saga__errf(SAGA_ENOMEM, errbuf, errlen, "out of memory");
  }
  /* The notifications topic is created on first use, unless the caller
   * says otherwise (its properties win, docs/client.md). */
  const char *const consumer_props[] = {"allow.auto.create.topics", "true",
                                        NULL};
  saga_kloop_config_t kc = {
      .bootstrap_servers = cfg->kafka.bootstrap_servers,
      .properties = cfg->kafka.properties,
      .consumer_properties =
          saga_kloop_prop_given(cfg->kafka.properties,
                                "allow.auto.create.topics")
              ? NULL
              : consumer_props,
      .want_consumer = 1,
      .want_producer = 1,
      /* Within a budget (saga_run_saga) the close that follows its end
       * does not wait 5 s more for a StartSaga still unacknowledged. */
      .close_timeout_ms = budget_ms < INT64_MAX ? 1 : 0,
  };
  saga_kloop_callbacks_t cb = {.opaque = s,
                               .on_message = on_message,
                               .on_delivery = on_delivery,
                               .on_error = on_error};
  if (saga_kloop_new(loop, &kc, &cb, &s->kl, errbuf, errlen) != 0) {
    starter_free(s);
    return SAGA_EKAFKA;
  }
  s->kloop_open = 1;
  s->producer_max = saga__producer_max_bytes(saga_kloop_producer(s->kl));
  int64_t t = cfg->setup_timeout_ms > 0 ? cfg->setup_timeout_ms : 10000;
  if (t > budget_ms)
    t = budget_ms;
  uv_update_time(loop);
  uint64_t began = uv_now(loop);
  int rc = assign_notifications(s, t, errbuf, errlen);
  if (!rc) {
    uv_update_time(loop);
    int64_t left = budget_ms - (int64_t)(uv_now(loop) - began);
    if (left > 0)
      warm_producer(s, left < t ? left : t);
  }
  if (rc) {
    saga_starter_close(s, NULL, NULL);
    return rc;
  }
  *out = s;
  return 0;
}

int saga_starter_new(uv_loop_t *loop, const saga_starter_config_t *cfg,
                     saga_starter_t **out, char *errbuf, size_t errlen) {
  return starter_new(loop, cfg, INT64_MAX, out, errbuf, errlen);
}

/* Unix epoch milliseconds, for requested_at_ms. */
static int64_t wall_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Refuse a call to s: note why (saga_starter_last_error) and return rc. */
static int refuse(saga_starter_t *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(saga_starter_t *s, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->last_error, sizeof s->last_error, fmt, ap);
  va_end(ap);
  return rc;
}

/* The checks of a start request that need no starter, shared by
 * saga_starter_start and saga_run_saga (which makes them before its Kafka
 * setup): 0, or the code with the text in errbuf. */
static int check_request(const saga_start_request_t *req, int have_cb,
                         char *errbuf, size_t errlen) {
  if (!req || !req->saga_type || !have_cb)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "StartSaga not sent: no %s given",
                      !req ? "request" : !have_cb ? "callback" : "saga_type");
  if (!req->input && req->input_len)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "StartSaga not sent: input is NULL with a length of "
                      "%zu bytes",
                      req->input_len);
  /* Never cut an id: a cut one would start another saga. */
  if (req->saga_id && strlen(req->saga_id) > SAGA_WIRE_MAX_ID)
    return saga__errf(SAGA_ETOOBIG, errbuf, errlen,
                      "StartSaga not sent: saga_id is %zu bytes long, the "
                      "ceiling is %d (an id is never cut)",
                      strlen(req->saga_id), SAGA_MAX_ID);
  return 0;
}

int saga_starter_start(saga_starter_t *s, const saga_start_request_t *req,
                       char *saga_id_out, size_t id_len, saga_started_cb cb,
                       void *arg) {
  if (!s)
    return SAGA_EINVAL;
  int bad = check_request(req, cb != NULL, s->last_error,
                          sizeof s->last_error);
  if (bad)
    return bad;
  if (s->closing)
    return refuse(s, SAGA_ESTATE,
                  "StartSaga not sent: the starter is closing");
  start_job_t *j = calloc(1, sizeof *j);
  if (!j)
    return refuse(s, SAGA_ENOMEM, "StartSaga not sent: out of memory");
  j->s = s;
  j->what = "StartSaga";
  j->cb = cb;
  j->arg = arg;
  if (req->saga_id)
    snprintf(j->saga_id, sizeof j->saga_id, "%s", req->saga_id);
  else
    (void)saga__uuid_text(j->saga_id); /* "" on failure: encode refuses */
  if (saga_id_out && strlen(j->saga_id) >= id_len) {
    /* the caller could not learn the id (id_len 0 takes none) */
    refuse(s, SAGA_ETOOBIG,
           "StartSaga of saga \"%s\" not sent: the id of %zu bytes does "
           "not fit saga_id_out of %zu bytes (an id is never cut)",
           j->saga_id, strlen(j->saga_id), id_len);
    free(j);
    return SAGA_ETOOBIG;
  }
  Saga__V1__StartSaga m;
  saga__v1__start_saga__init(&m);
  m.saga_id = j->saga_id;
  m.saga_type = SAGA_MUT(req->saga_type);
  if (req->definition_version) {
    m.definition_version_present_case =
        SAGA__V1__START_SAGA__DEFINITION_VERSION_PRESENT_DEFINITION_VERSION;
    m.definition_version = req->definition_version;
  }
  m.input.data = (uint8_t *)(uintptr_t)req->input;
  m.input.len = req->input ? req->input_len : 0;
  m.requested_at_ms = wall_ms();
  char tp[SAGA_TRACEPARENT_SIZE];
  saga_meta_t meta = req->meta;
  if (!meta.traceparent && saga__traceparent_new(tp) == 0)
    meta.traceparent = tp;
  if (!meta.correlation_id)
    meta.correlation_id = j->saga_id;
  void *buf;
  size_t len;
  rd_kafka_headers_t *h;
  char err[512];
  int rc = saga__wire_encode(&m.base, &meta, s->max_bytes, &buf, &len, &h,
                             err, sizeof err);
  if (rc) {
    note(s, "StartSaga of saga \"%s\" not sent: %s: %s", j->saga_id,
         saga_err_name(rc), err);
    free(j);
    return rc;
  }
  if (!saga__producer_fits(s->producer_max, strlen(j->saga_id), len, h)) {
    /* Kafka could never take it */
    note(s,
         "StartSaga of saga \"%s\" not sent: SAGA_ETOOBIG: %zu bytes "
         "encoded, past the producer's message.max.bytes (%zu)",
         j->saga_id, len, s->producer_max);
    rd_kafka_headers_destroy(h);
    free(buf);
    free(j);
    return SAGA_ETOOBIG;
  }
  if (saga_kloop_produce(s->kl, s->inbox, RD_KAFKA_PARTITION_UA, j->saga_id,
                         strlen(j->saga_id), buf, len, h, j, err,
                         sizeof err) != 0) {
    note(s, "StartSaga of saga \"%s\" not sent: %s", j->saga_id, err);
    rd_kafka_headers_destroy(h);
    free(buf);
    free(j);
    return SAGA_EKAFKA;
  }
  free(buf);
  if (saga_id_out)
    snprintf(saga_id_out, id_len, "%s", j->saga_id);
  return 0;
}

int saga_starter_cancel(saga_starter_t *s, const char *saga_id,
                        const char *reason, const char *who,
                        saga_started_cb cb, void *arg) {
  if (!s)
    return SAGA_EINVAL;
  if (!saga_id || !cb)
    return refuse(s, SAGA_EINVAL, "CancelSaga not sent: no %s given",
                  !saga_id ? "saga_id" : "callback");
  if (s->closing)
    return refuse(s, SAGA_ESTATE,
                  "CancelSaga not sent: the starter is closing");
  if (strlen(saga_id) > SAGA_WIRE_MAX_ID)
    return refuse(s, SAGA_ETOOBIG,
                  "CancelSaga not sent: saga_id is %zu bytes long, the "
                  "ceiling is %d (an id is never cut)",
                  strlen(saga_id), SAGA_MAX_ID);
  if (!*saga_id) /* as saga_starter_start's "" */
    return refuse(s, SAGA_EMISSING,
                  "CancelSaga not sent: saga_id is missing");
  start_job_t *j = calloc(1, sizeof *j);
  cancel_t *c = cancel_find(s, saga_id) ? NULL : calloc(1, sizeof *c);
  if (!j || (!c && !cancel_find(s, saga_id))) {
    free(j);
    free(c);
    return refuse(s, SAGA_ENOMEM, "CancelSaga not sent: out of memory");
  }
  j->s = s;
  j->what = "CancelSaga";
  j->cb = cb;
  j->arg = arg;
  snprintf(j->saga_id, sizeof j->saga_id, "%s", saga_id);
  Saga__V1__CancelSaga m;
  saga__v1__cancel_saga__init(&m);
  m.saga_id = j->saga_id;
  m.reason = SAGA_MUT(reason ? reason : "");
  m.operator_ = SAGA_MUT(who ? who : "");
  m.requested_at_ms = wall_ms();
  char tp[SAGA_TRACEPARENT_SIZE];
  saga_meta_t meta = {.correlation_id = j->saga_id};
  if (saga__traceparent_new(tp) == 0)
    meta.traceparent = tp;
  void *buf;
  size_t len;
  rd_kafka_headers_t *h;
  char err[512];
  int rc = saga__wire_encode(&m.base, &meta, s->max_bytes, &buf, &len, &h,
                             err, sizeof err);
  if (rc) {
    note(s, "CancelSaga of saga \"%s\" not sent: %s: %s", j->saga_id,
         saga_err_name(rc), err);
  } else if (!saga__producer_fits(s->producer_max, strlen(j->saga_id), len,
                                  h)) {
    /* Kafka could never take it */
    note(s,
         "CancelSaga of saga \"%s\" not sent: SAGA_ETOOBIG: %zu bytes "
         "encoded, past the producer's message.max.bytes (%zu)",
         j->saga_id, len, s->producer_max);
    rd_kafka_headers_destroy(h);
    free(buf);
    rc = SAGA_ETOOBIG;
  } else if (saga_kloop_produce(s->kl, s->inbox, RD_KAFKA_PARTITION_UA,
                                j->saga_id, strlen(j->saga_id), buf, len, h,
                                j, err, sizeof err) != 0) {
    note(s, "CancelSaga of saga \"%s\" not sent: %s", j->saga_id, err);
    rd_kafka_headers_destroy(h);
    free(buf);
    rc = SAGA_EKAFKA;
  } else {
    free(buf);
  }
  if (rc) {
    free(j);
    free(c);
    return rc;
  }
  if (c) {
    snprintf(c->saga_id, sizeof c->saga_id, "%s", saga_id);
    cancel_keep(s, c);
  } else if ((c = cancel_find(s, saga_id))->refusal) {
    /* An earlier cancel's refusal does not answer this one. */
    saga__wire_free(&c->refusal->base);
    c->refusal = NULL;
  }
  return 0;
}

int saga_starter_await(saga_starter_t *s, const char *saga_id,
                       int64_t timeout_ms, saga_outcome_cb cb, void *arg) {
  if (!s)
    return SAGA_EINVAL;
  if (!saga_id || !cb)
    return refuse(s, SAGA_EINVAL, "await refused: no %s given",
                  !saga_id ? "saga_id" : "callback");
  if (!*saga_id || strlen(saga_id) > SAGA_WIRE_MAX_ID)
    return refuse(s, SAGA_EINVAL,
                  "await refused: saga_id is %zu bytes long, it is 1 to %d",
                  strlen(saga_id), SAGA_MAX_ID);
  if (timeout_ms < 0)
    return refuse(s, SAGA_EINVAL,
                  "await of saga \"%s\" refused: timeout_ms is %lld, must be "
                  "0 or more",
                  saga_id, (long long)timeout_ms);
  if (s->closing)
    return refuse(s, SAGA_ESTATE,
                  "await of saga \"%s\" refused: the starter is closing",
                  saga_id);
  await_t *a = calloc(1, sizeof *a);
  if (!a)
    return refuse(s, SAGA_ENOMEM, "await of saga \"%s\" refused: out of "
                                  "memory",
                  saga_id);
  a->s = s;
  snprintf(a->saga_id, sizeof a->saga_id, "%s", saga_id);
  a->cb = cb;
  a->arg = arg;
  uv_timer_init(s->loop, &a->timer);
  a->timer.data = a;
  s->timers_open++;
  a->next = s->awaits;
  if (s->awaits)
    s->awaits->prev = a;
  s->awaits = a;
  /* Known already: answer from the loop, never from inside this call
   * (and if it is gone by then, on_await_timer waits the rest). */
  const cancel_t *c = cancel_find(s, saga_id);
  uint64_t now = uv_now(s->loop);
  a->deadline = (uint64_t)timeout_ms > UINT64_MAX - now
                    ? UINT64_MAX
                    : now + (uint64_t)timeout_ms;
  uv_timer_start(&a->timer, on_await_timer,
                 find_outcome(s, saga_id) || (c && c->refusal)
                     ? 0
                     : (uint64_t)timeout_ms,
                 0);
  return 0;
}

int saga_starter_subscribe(saga_starter_t *s, saga_notification_cb cb,
                           void *arg) {
  if (!s)
    return SAGA_EINVAL;
  s->sub = cb;
  s->sub_arg = arg;
  return 0;
}

static void maybe_free(saga_starter_t *s) {
  if (!s->closing || s->timers_open || s->kloop_open)
    return;
  void (*cb)(void *) = s->close_cb;
  void *arg = s->close_arg;
  starter_free(s);
  if (cb)
    cb(arg);
}

static void on_kloop_closed(void *arg) {
  saga_starter_t *s = arg;
  s->kloop_open = 0;
  maybe_free(s);
}

void saga_starter_close(saga_starter_t *s, void (*cb)(void *arg), void *arg) {
  if (!s || s->closing)
    return;
  s->closing = 1;
  s->close_cb = cb;
  s->close_arg = arg;
  while (s->awaits)
    await_finish(s->awaits, SAGA_ECANCELED, NULL);
  saga_kloop_close(s->kl, on_kloop_closed, s);
}

/* ---- blocking layer ---- */

typedef struct run_ctx {
  saga_starter_t *s;
  uv_timer_t timer;    /* the whole call's deadline */
  uint64_t deadline;   /* uv_now() of the loop */
  int err;
  int started;         /* the StartSaga was acknowledged */
  int finished;
  saga_notification_kind_t kind;
  char *reason;
  size_t reason_len;
} run_ctx_t;

static void run_finish(run_ctx_t *c, int err) {
  c->err = err;
  c->finished = 1;
  uv_timer_stop(&c->timer);
  uv_stop(c->timer.loop);
}

static void run_outcome(saga_starter_t *s, int err,
                        const saga_notification_t *n, void *arg) {
  (void)s;
  run_ctx_t *c = arg;
  if (c->finished)
    return; /* cancelled by the close after the deadline */
  if (!err) {
    c->kind = n->kind;
    if (c->reason && c->reason_len)
      snprintf(c->reason, c->reason_len, "%s", n->reason ? n->reason : "");
  }
  run_finish(c, err);
}

static void run_started(saga_starter_t *s, int err, const char *saga_id,
                        void *arg) {
  run_ctx_t *c = arg;
  if (c->finished)
    return;
  c->started = 1;
  if (!err) {
    uint64_t now = uv_now(c->timer.loop);
    err = saga_starter_await(s, saga_id,
                             now < c->deadline ? (int64_t)(c->deadline - now)
                                               : 0,
                             run_outcome, c);
  }
  if (err)
    run_finish(c, err);
}

static void run_deadline(uv_timer_t *t) {
  run_finish(t->data, SAGA_ETIMEDOUT);
}

int saga_run_saga(const saga_starter_config_t *cfg,
                  const saga_start_request_t *req, int64_t timeout_ms,
                  char *saga_id_out, size_t id_len,
                  saga_notification_kind_t *kind_out, char *reason_out,
                  size_t reason_len, char *errbuf, size_t errlen) {
  if (timeout_ms < 0)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "timeout_ms is %lld, must be 0 or more",
                      (long long)timeout_ms);
  /* A request saga_starter_start would refuse, and an id the caller could
   * not be given back, are refused before the Kafka setup, which may take
   * the whole timeout when the brokers do not answer (a generated id is a
   * UUID of 36 characters; id_len 0 takes none). */
  int bad = check_request(req, 1, errbuf, errlen);
  if (bad)
    return bad;
  size_t want = req->saga_id ? strlen(req->saga_id) : 36;
  if (saga_id_out && want >= id_len)
    return saga__errf(SAGA_ETOOBIG, errbuf, errlen,
                      "StartSaga not sent: the id of %zu bytes does not fit "
                      "saga_id_out of %zu bytes (an id is never cut)",
                      want, id_len);
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0)
    return saga__errf(SAGA_ENOMEM, errbuf, errlen, "could not create a loop");
  run_ctx_t c = {.reason = reason_out, .reason_len = reason_len};
  uv_timer_init(&loop, &c.timer);
  c.timer.data = &c;
  uv_update_time(&loop);
  c.deadline = uv_now(&loop) + (uint64_t)timeout_ms;
  /* The id must fit the caller's buffer before anything is sent: it is
   * never cut. */
  char id[SAGA_WIRE_MAX_ID + 1];
  size_t fit = saga_id_out && id_len < sizeof id ? id_len : sizeof id;
  int rc = starter_new(&loop, cfg, timeout_ms, &c.s, errbuf, errlen);
  if (!rc) {
    uv_update_time(&loop);
    uint64_t now = uv_now(&loop);
    uv_timer_start(&c.timer, run_deadline,
                   now < c.deadline ? c.deadline - now : 0, 0);
    rc = saga_starter_start(c.s, req, id, fit, run_started, &c);
    if (rc) /* the start's refusal says which argument and why */
      saga__errf(rc, errbuf, errlen, "could not start saga of type \"%s\": %s",
                 req->saga_type,
                 *c.s->last_error ? c.s->last_error : saga_strerror(rc));
    else {
      while (!c.finished)
        uv_run(&loop, UV_RUN_DEFAULT);
      rc = c.err;
      if (rc == SAGA_ETIMEDOUT && !c.started)
        saga__errf(rc, errbuf, errlen,
                   "saga \"%s\": Kafka did not acknowledge the start within "
                   "%lld ms%s%s",
                   id, (long long)timeout_ms,
                   *c.s->last_error ? "; last error: " : "",
                   c.s->last_error);
      else if (rc == SAGA_ETIMEDOUT)
        saga__errf(rc, errbuf, errlen,
                   "saga \"%s\" has no outcome after %lld ms", id,
                   (long long)timeout_ms);
      else if (rc == SAGA_EKAFKA && *c.s->last_error)
        saga__errf(rc, errbuf, errlen, "saga \"%s\": %s", id,
                   c.s->last_error);
      else if (rc)
        saga__errf(rc, errbuf, errlen, "saga \"%s\": %s", id,
                   saga_strerror(rc));
      else if (kind_out)
        *kind_out = c.kind;
      if (saga_id_out)
        snprintf(saga_id_out, id_len, "%s", id); /* fits: checked above */
    }
    saga_starter_close(c.s, NULL, NULL);
  }
  uv_close((uv_handle_t *)&c.timer, NULL);
  while (uv_loop_alive(&loop))
    uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return rc;
}
