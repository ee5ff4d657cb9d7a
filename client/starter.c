/* The starter side of the protocol (saga/client.h): StartSaga to the inbox,
 * and a group-less reader of every notification partition from the end it
 * had when the starter was created, so no outcome produced afterwards is
 * missed and no consumer-group join delays it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids.h"
#include "kafka_loop.h"
#include "saga/client.h"
#include "wire_kafka.h"

#define OUTCOME_CACHE_MAX 4096

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
  int done;
  struct await *prev, *next;
} await_t;

/* A cancel this starter sent whose answer has not come: a CANCEL_REFUSED
 * for its saga ends that saga's awaits (kept here when none waits yet);
 * the saga's outcome drops it. */
typedef struct cancel {
  struct cancel *next;
  Saga__V1__Notification *refusal; /* owned; NULL until it comes */
  saga__wire_meta_t meta;
  char saga_id[SAGA_WIRE_MAX_ID + 1];
} cancel_t;

typedef struct start_job {
  saga_starter_t *s;
  char saga_id[SAGA_WIRE_MAX_ID + 1];
  saga_started_cb cb;
  void *arg;
} start_job_t;

struct saga_starter {
  uv_loop_t *loop;
  saga_kloop_t *kl;
  char *inbox, *notifications;
  size_t max_bytes;
  outcome_t *outcomes, *outcomes_tail;
  size_t n_outcomes;
  await_t *awaits;
  cancel_t *cancels;
  saga_notification_cb sub;
  void *sub_arg;
  int closing;
  int timers_open;
  int kloop_open;
  void (*close_cb)(void *);
  void *close_arg;
};

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

static const outcome_t *find_outcome(const saga_starter_t *s,
                                     const char *saga_id) {
  for (const outcome_t *o = s->outcomes; o; o = o->next)
    if (!strcmp(o->saga_id, saga_id))
      return o;
  return NULL;
}

/* Unlink the cancel of saga_id from the list (the caller frees it with
 * cancel_free), or NULL. */
static cancel_t *cancel_take(saga_starter_t *s, const char *saga_id) {
  for (cancel_t **p = &s->cancels; *p; p = &(*p)->next)
    if (!strcmp((*p)->saga_id, saga_id)) {
      cancel_t *c = *p;
      *p = c->next;
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
  if (o) {
    saga_notification_t v;
    notification_view(o->n, &o->meta, &v);
    await_finish(a, 0, &v);
  } else {
    await_finish(a, SAGA_ETIMEDOUT, NULL);
  }
}

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
    c->next = s->cancels;
    s->cancels = c;
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
  int err = m->err ? (s->closing ? SAGA_ECANCELED : SAGA_EKAFKA) : 0;
  j->cb(s, err, j->saga_id, j->arg);
  free(j);
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
  /* A topic being auto-created has no partitions at first: ask again. */
  while (n == 0 && uv_now(s->loop) < deadline) {
    err = rd_kafka_metadata(rk, 0, t, &md, (int)timeout_ms);
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
    err = rd_kafka_query_watermark_offsets(rk, s->notifications, i, &lo, &hi,
                                           (int)timeout_ms);
    if (err)
      rc = saga__errf(SAGA_EKAFKA, errbuf, errlen,
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
  if (rd_kafka_metadata(rk, 0, t, &md, (int)timeout_ms) ==
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

int saga_starter_new(uv_loop_t *loop, const saga_starter_config_t *cfg,
                     saga_starter_t **out, char *errbuf, size_t errlen) {
  if (!loop || !cfg || !out || !cfg->kafka.bootstrap_servers)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "starter needs a loop and bootstrap servers");
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
  const char *const consumer_props[] = {"allow.auto.create.topics", "true",
                                        NULL};
  saga_kloop_config_t kc = {
      .bootstrap_servers = cfg->kafka.bootstrap_servers,
      .properties = cfg->kafka.properties,
      .consumer_properties = consumer_props,
      .want_consumer = 1,
      .want_producer = 1,
  };
  saga_kloop_callbacks_t cb = {
      .opaque = s, .on_message = on_message, .on_delivery = on_delivery};
  if (saga_kloop_new(loop, &kc, &cb, &s->kl, errbuf, errlen) != 0) {
    starter_free(s);
    return SAGA_EKAFKA;
  }
  s->kloop_open = 1;
  int64_t t = cfg->setup_timeout_ms > 0 ? cfg->setup_timeout_ms : 10000;
  int rc = assign_notifications(s, t, errbuf, errlen);
  if (!rc)
    warm_producer(s, t);
  if (rc) {
    saga_starter_close(s, NULL, NULL);
    return rc;
  }
  *out = s;
  return 0;
}

/* Unix epoch milliseconds, for requested_at_ms. */
static int64_t wall_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int saga_starter_start(saga_starter_t *s, const saga_start_request_t *req,
                       char *saga_id_out, size_t id_len, saga_started_cb cb,
                       void *arg) {
  if (!s || !req || !req->saga_type || !cb || s->closing)
    return SAGA_EINVAL;
  /* Never cut an id: a cut one would start another saga. */
  if (req->saga_id && strlen(req->saga_id) > SAGA_WIRE_MAX_ID)
    return SAGA_ETOOBIG;
  start_job_t *j = calloc(1, sizeof *j);
  if (!j)
    return SAGA_ENOMEM;
  j->s = s;
  j->cb = cb;
  j->arg = arg;
  if (req->saga_id)
    snprintf(j->saga_id, sizeof j->saga_id, "%s", req->saga_id);
  else
    (void)saga__uuid_text(j->saga_id); /* "" on failure: encode refuses */
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
  int rc = saga__wire_encode(&m.base, &meta, s->max_bytes, &buf, &len, &h,
                             NULL, 0);
  if (rc) {
    free(j);
    return rc;
  }
  if (saga_id_out && id_len && strlen(j->saga_id) >= id_len) {
    rd_kafka_headers_destroy(h);
    free(buf);
    free(j);
    return SAGA_ETOOBIG; /* the caller could not learn the id */
  }
  if (saga_kloop_produce(s->kl, s->inbox, RD_KAFKA_PARTITION_UA, j->saga_id,
                         strlen(j->saga_id), buf, len, h, j, NULL, 0) != 0) {
    rd_kafka_headers_destroy(h);
    free(buf);
    free(j);
    return SAGA_EKAFKA;
  }
  free(buf);
  if (saga_id_out && id_len)
    snprintf(saga_id_out, id_len, "%s", j->saga_id);
  return 0;
}

int saga_starter_cancel(saga_starter_t *s, const char *saga_id,
                        const char *reason, const char *who,
                        saga_started_cb cb, void *arg) {
  if (!s || !saga_id || !*saga_id || !cb || s->closing)
    return SAGA_EINVAL;
  if (strlen(saga_id) > SAGA_WIRE_MAX_ID)
    return SAGA_ETOOBIG;
  start_job_t *j = calloc(1, sizeof *j);
  cancel_t *c = cancel_find(s, saga_id) ? NULL : calloc(1, sizeof *c);
  if (!j || (!c && !cancel_find(s, saga_id))) {
    free(j);
    free(c);
    return SAGA_ENOMEM;
  }
  j->s = s;
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
  int rc = saga__wire_encode(&m.base, &meta, s->max_bytes, &buf, &len, &h,
                             NULL, 0);
  if (!rc && saga_kloop_produce(s->kl, s->inbox, RD_KAFKA_PARTITION_UA,
                                j->saga_id, strlen(j->saga_id), buf, len, h,
                                j, NULL, 0) != 0) {
    rd_kafka_headers_destroy(h);
    free(buf);
    rc = SAGA_EKAFKA;
  } else if (!rc) {
    free(buf);
  }
  if (rc) {
    free(j);
    free(c);
    return rc;
  }
  if (c) {
    snprintf(c->saga_id, sizeof c->saga_id, "%s", saga_id);
    c->next = s->cancels;
    s->cancels = c;
  } else if ((c = cancel_find(s, saga_id))->refusal) {
    /* An earlier cancel's refusal does not answer this one. */
    saga__wire_free(&c->refusal->base);
    c->refusal = NULL;
  }
  return 0;
}

int saga_starter_await(saga_starter_t *s, const char *saga_id,
                       int64_t timeout_ms, saga_outcome_cb cb, void *arg) {
  if (!s || !saga_id || !cb || s->closing || timeout_ms < 0 ||
      strlen(saga_id) > SAGA_WIRE_MAX_ID)
    return SAGA_EINVAL;
  await_t *a = calloc(1, sizeof *a);
  if (!a)
    return SAGA_ENOMEM;
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
  /* Known already: answer from the loop, never from inside this call. */
  const cancel_t *c = cancel_find(s, saga_id);
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
  int64_t timeout_ms;
  int err;
  int finished;
  saga_notification_kind_t kind;
  char *reason;
  size_t reason_len;
} run_ctx_t;

static void run_outcome(saga_starter_t *s, int err,
                        const saga_notification_t *n, void *arg) {
  (void)s;
  run_ctx_t *c = arg;
  c->err = err;
  if (!err) {
    c->kind = n->kind;
    if (c->reason && c->reason_len)
      snprintf(c->reason, c->reason_len, "%s", n->reason ? n->reason : "");
  }
  c->finished = 1;
  uv_stop(s->loop);
}

static void run_started(saga_starter_t *s, int err, const char *saga_id,
                        void *arg) {
  run_ctx_t *c = arg;
  if (!err)
    err = saga_starter_await(s, saga_id, c->timeout_ms, run_outcome, c);
  if (err) {
    c->err = err;
    c->finished = 1;
    uv_stop(s->loop);
  }
}

int saga_run_saga(const saga_starter_config_t *cfg,
                  const saga_start_request_t *req, int64_t timeout_ms,
                  char *saga_id_out, size_t id_len,
                  saga_notification_kind_t *kind_out, char *reason_out,
                  size_t reason_len, char *errbuf, size_t errlen) {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0)
    return saga__errf(SAGA_ENOMEM, errbuf, errlen, "could not create a loop");
  run_ctx_t c = {.timeout_ms = timeout_ms,
                 .reason = reason_out,
                 .reason_len = reason_len};
  char id[SAGA_WIRE_MAX_ID + 1];
  int rc = saga_starter_new(&loop, cfg, &c.s, errbuf, errlen);
  if (!rc) {
    rc = saga_starter_start(c.s, req, id, sizeof id, run_started, &c);
    if (rc)
      saga__errf(rc, errbuf, errlen, "could not start saga of type \"%s\": %s",
                 req && req->saga_type ? req->saga_type : "", saga_strerror(rc));
    else {
      while (!c.finished)
        uv_run(&loop, UV_RUN_DEFAULT);
      rc = c.err;
      if (rc)
        saga__errf(rc, errbuf, errlen, "saga \"%s\": %s", id,
                   saga_strerror(rc));
      else if (kind_out)
        *kind_out = c.kind;
      if (saga_id_out && id_len)
        snprintf(saga_id_out, id_len, "%s", id);
    }
    saga_starter_close(c.s, NULL, NULL);
  }
  while (uv_loop_alive(&loop))
    uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return rc;
}
