/* The engine's broker port on Kafka through saga_kafka_loop: the inbox
 * consumer (group member), one producer for commands, notifications and
 * dead letters, rebalance callbacks turned into engine assign/revoke calls.
 * librdkafka's logs and errors arrive on the loop thread and are logged
 * here. Must not hold saga state. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_loop.h"
#include "log.h"
#include "shell.h"
#include "wire_kafka.h"

/* Whether the brokers answer: a metadata request every PROBE_EVERY_MS in
 * libuv's thread pool, bounded by PROBE_TIMEOUT_MS; Kafka counts as up
 * while the last success is at most PROBE_FRESH_MS old and no "all brokers
 * down" error came since. */
#define PROBE_EVERY_MS 1000
#define PROBE_TIMEOUT_MS 2000
#define PROBE_FRESH_MS 4000

struct sagad_broker_kafka {
  saga_kloop_t *kl;
  sagad_engine_t *engine;
  const sagad_config_t *cfg;
  uv_loop_t *loop;
  void (*on_fatal)(void *, const char *);
  void *fatal_arg;
  const char **props; /* name, value, ..., NULL */
  void (*close_cb)(void *);
  void *close_arg;
  /* the probe */
  uv_timer_t probe_timer;
  uv_work_t probe_work;
  bool probing, closing;
  int pending; /* closes outstanding: the timer and the Kafka loop */
  rd_kafka_resp_err_t probe_err; /* set in the pool, read after it */
  uint64_t up_at; /* uv_now of the last answered probe; 0 = none */
  char why[200];  /* why Kafka counts as down */
};

static void k_on_message(saga_kloop_t *kl, const rd_kafka_message_t *m,
                         saga_kloop_ack_t *ack, void *opaque) {
  sagad_broker_kafka_t *b = opaque;
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
    h = NULL;
  sagad_inmsg_t in = {
      .topic = rd_kafka_topic_name(m->rkt),
      .partition = m->partition,
      .offset = m->offset,
      .key = m->key,
      .key_len = m->key_len,
      .value = m->payload,
      .value_len = m->len,
      .hdrs = saga__kafka_hdr_view(h),
      .ack = ack,
      .received_us = (int64_t)(uv_hrtime() / 1000),
  };
  if (b->engine)
    sagad_engine_on_message(b->engine, &in);
  else
    saga_kloop_ack(kl, ack);
}

static size_t inbox_parts(const sagad_broker_kafka_t *b,
                          const rd_kafka_topic_partition_list_t *parts,
                          int32_t *out) {
  size_t n = 0;
  for (int i = 0; i < parts->cnt; i++)
    if (!strcmp(parts->elems[i].topic, b->cfg->topic_inbox))
      out[n++] = parts->elems[i].partition;
  return n;
}

/* Hand the inbox partitions of a rebalance to the engine. */
static void rebalance(sagad_broker_kafka_t *b,
                      const rd_kafka_topic_partition_list_t *parts,
                      int assign) {
  int32_t *p = calloc((size_t)parts->cnt + 1, sizeof *p);
  if (!p || !b->engine) {
    free(p);
    return;
  }
  size_t n = inbox_parts(b, parts, p);
  LOG_INFO("%s %zu inbox partitions", assign ? "assigned" : "revoked", n);
  if (!assign)
    sagad_engine_on_revoke(b->engine, p, n);
  else if (sagad_engine_on_assign(b->engine, p, n) != 0 && b->on_fatal)
    b->on_fatal(b->fatal_arg, "could not recover the assigned partitions");
  free(p);
}

static void k_on_assign(saga_kloop_t *kl,
                        const rd_kafka_topic_partition_list_t *parts,
                        void *opaque) {
  (void)kl;
  rebalance(opaque, parts, 1);
}

static void k_on_revoke(saga_kloop_t *kl,
                        const rd_kafka_topic_partition_list_t *parts,
                        void *opaque) {
  (void)kl;
  rebalance(opaque, parts, 0);
}

sagad_delivery_t sagad_broker_kafka_status(rd_kafka_resp_err_t err) {
  switch (err) {
  case RD_KAFKA_RESP_ERR_NO_ERROR:
    return SAGAD_DELIVERY_OK;
  case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
  case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    return SAGAD_DELIVERY_TOO_LARGE;
  case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
  case RD_KAFKA_RESP_ERR__TIMED_OUT:
  case RD_KAFKA_RESP_ERR__TRANSPORT:
  case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
  case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
  case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
  case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
  case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
  case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
  case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
  case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
  case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    return SAGAD_DELIVERY_RETRIABLE;
  default:
    return SAGAD_DELIVERY_FATAL;
  }
}

sagad_persisted_t sagad_broker_kafka_persisted(rd_kafka_msg_status_t st) {
  switch (st) {
  case RD_KAFKA_MSG_STATUS_PERSISTED:
    return SAGAD_PERSISTED_YES;
  case RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED:
    return SAGAD_PERSISTED_MAYBE;
  case RD_KAFKA_MSG_STATUS_NOT_PERSISTED:
    return SAGAD_PERSISTED_NO;
  default:
    /* a status added later: whether it is there is not known */
    return SAGAD_PERSISTED_MAYBE;
  }
}

static void k_on_delivery(saga_kloop_t *kl, const rd_kafka_message_t *m,
                          void *msg_opaque, void *opaque) {
  (void)kl;
  sagad_broker_kafka_t *b = opaque;
  int status = (int)sagad_broker_kafka_status(m->err);
  int persisted = (int)sagad_broker_kafka_persisted(rd_kafka_message_status(m));
  if (m->err && m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE)
    LOG_WARN("could not deliver a message to %s: %s (%s)",
             rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err),
             sagad_persisted_text(persisted));
  if (!m->err && m->offset < 0) {
    /* success inferred, not acknowledged with an offset (ports.h) */
    LOG_WARN("a message to %s [%d] was reported delivered without an "
             "offset: not confirmed stored",
             rd_kafka_topic_name(m->rkt), (int)m->partition);
    status = SAGAD_DELIVERY_UNCONFIRMED;
  }
  if (b->engine)
    sagad_engine_on_delivery(b->engine, msg_opaque, status, persisted);
}

static void k_on_error(saga_kloop_t *kl, rd_kafka_resp_err_t err, int fatal,
                       const char *reason, void *opaque) {
  (void)kl;
  sagad_broker_kafka_t *b = opaque;
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    b->up_at = 0; /* down now, until a probe is answered again */
    snprintf(b->why, sizeof b->why, "all brokers down: %s", reason);
  }
  if (fatal) {
    LOG_ERROR("kafka: fatal error: %s: %s", rd_kafka_err2str(err), reason);
    if (b->on_fatal)
      b->on_fatal(b->fatal_arg, "fatal kafka error");
  } else if (sagad_log_wanted(SAGAD_LOG_WARN, b->cfg->log_level_kafka)) {
    sagad_log__write(SAGAD_LOG_WARN, NULL, NULL, "kafka: %s: %s",
                     rd_kafka_err2str(err), reason);
  }
}

static void k_on_log(saga_kloop_t *kl, int level, const char *fac,
                     const char *line, void *opaque) {
  (void)kl;
  sagad_broker_kafka_t *b = opaque;
  sagad_log_level_t lv = sagad_log_level_from_syslog(level);
  /* log.level.kafka decides for librdkafka's records (log_sink.h). */
  if (sagad_log_wanted(lv, b->cfg->log_level_kafka))
    sagad_log__write(lv, NULL, NULL, "kafka %s: %s", fac, line);
}

/* Back-pressure (input.max_held): the inbox paused or resumed. */
static void k_on_flow(saga_kloop_t *kl, int paused, size_t held,
                      void *opaque) {
  (void)kl;
  sagad_broker_kafka_t *b = opaque;
  if (paused)
    LOG_WARN("inbox paused: %zu inputs held, input.max_held is %lld; the "
             "store is slower than the input (they wait in Kafka until half "
             "of them are done)",
             held, (long long)b->cfg->input_max_held);
  else
    LOG_INFO("inbox resumed: %zu inputs held", held);
}

static int p_produce(void *self, const char *topic, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const saga__hdrs_t *hdrs, void *token) {
  sagad_broker_kafka_t *b = self;
  char err[256];
  rd_kafka_headers_t *h = NULL;
  if (hdrs && !(h = saga__kafka_hdrs(hdrs))) {
    LOG_WARN("could not produce to %s: out of memory", topic);
    return -1;
  }
  if (saga_kloop_produce(b->kl, topic, RD_KAFKA_PARTITION_UA, key, key_len,
                         value, value_len, h, token, err, sizeof err)) {
    LOG_WARN("could not produce to %s: %s", topic, err);
    if (h)
      rd_kafka_headers_destroy(h);
    return -1;
  }
  return 0;
}

static void p_ack(void *self, void *ack) {
  sagad_broker_kafka_t *b = self;
  saga_kloop_ack(b->kl, ack);
}

static void p_release(void *self, void *ack) {
  sagad_broker_kafka_t *b = self;
  saga_kloop_release(b->kl, ack);
}

/* ---- the probe ---- */

static void probe_run(uv_work_t *w) {
  sagad_broker_kafka_t *b = w->data;
  const struct rd_kafka_metadata *md = NULL;
  b->probe_err = rd_kafka_metadata(saga_kloop_producer(b->kl), 0, NULL, &md,
                                   PROBE_TIMEOUT_MS);
  if (md)
    rd_kafka_metadata_destroy(md);
}

static void close_kloop(sagad_broker_kafka_t *b);

static void probe_done(uv_work_t *w, int status) {
  sagad_broker_kafka_t *b = w->data;
  b->probing = false;
  if (status == 0 && b->probe_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    b->up_at = uv_now(b->loop);
    b->why[0] = '\0';
  } else if (status == 0) {
    snprintf(b->why, sizeof b->why,
             "no broker answered a metadata request within %d ms: %s",
             PROBE_TIMEOUT_MS, rd_kafka_err2str(b->probe_err));
  }
  if (b->closing)
    close_kloop(b); /* the close waited for the probe to leave the client */
}

static void on_probe_timer(uv_timer_t *t) {
  sagad_broker_kafka_t *b = t->data;
  if (b->probing || b->closing)
    return;
  b->probe_work.data = b;
  if (uv_queue_work(b->loop, &b->probe_work, probe_run, probe_done) == 0)
    b->probing = true;
}

bool sagad_broker_kafka_up(const sagad_broker_kafka_t *b, char *why,
                           size_t len) {
  if (!b || !b->kl) {
    snprintf(why, len, "kafka is not open");
    return false;
  }
  uint64_t now = uv_now(b->loop);
  if (b->up_at && now - b->up_at <= PROBE_FRESH_MS)
    return true;
  if (b->why[0])
    snprintf(why, len, "%s", b->why);
  else
    snprintf(why, len, "no broker answered for %d ms", PROBE_FRESH_MS);
  return false;
}

static int has_prop(const sagad_config_t *cfg, const char *name) {
  for (size_t i = 0; i < cfg->kafka_nprops; i++)
    if (!strcmp(cfg->kafka_props[i].name, name))
      return 1;
  return 0;
}

/* The kafka loop's configuration for cfg; *props (name, value, ...,
 * NULL: cfg's kafka.* properties) is malloc'd for the caller to free once
 * the handles are made. -1 out of memory. */
static int kloop_config(const sagad_config_t *cfg, saga_kloop_config_t *kc,
                        const char ***props) {
  const char **p = calloc(2 * cfg->kafka_nprops + 1, sizeof *p);
  if (!p)
    return -1;
  for (size_t i = 0; i < cfg->kafka_nprops; i++) {
    p[2 * i] = cfg->kafka_props[i].name;
    p[2 * i + 1] = cfg->kafka_props[i].value;
  }
  /* A new group starts at the beginning of the inbox, so no input sent
   * before the first join is lost; a configured value wins. */
  static const char *const earliest[] = {"auto.offset.reset", "earliest",
                                         NULL};
  *kc = (saga_kloop_config_t){
      .bootstrap_servers = cfg->kafka_bootstrap_servers,
      .properties = p,
      .consumer_properties =
          has_prop(cfg, "auto.offset.reset") ? NULL : earliest,
      .want_consumer = 1,
      .want_producer = 1,
      .group_id = cfg->group_id,
      .close_timeout_ms = (int)(cfg->shutdown_timeout_ms / 2),
      .max_held = (size_t)cfg->input_max_held,
  };
  *props = p;
  return 0;
}

int sagad_broker_kafka_check(const sagad_config_t *cfg, char *errbuf,
                             size_t errlen) {
  saga_kloop_config_t kc;
  const char **props = NULL;
  if (kloop_config(cfg, &kc, &props)) {
    snprintf(errbuf, errlen, "out of memory checking kafka.*");
    return -1;
  }
  char why[512];
  int rc = saga_kloop_check(&kc, why, sizeof why);
  free(props);
  if (rc)
    snprintf(errbuf, errlen, "kafka.*: %s", why);
  return rc;
}

int sagad_broker_kafka_open(uv_loop_t *loop, const sagad_config_t *cfg,
                            void (*on_fatal)(void *, const char *),
                            void *fatal_arg, sagad_broker_kafka_t **out,
                            sagad_broker_port_t *port, char *errbuf,
                            size_t errlen) {
  sagad_broker_kafka_t *b = calloc(1, sizeof *b);
  saga_kloop_config_t kc;
  if (!b || kloop_config(cfg, &kc, &b->props)) {
    free(b);
    snprintf(errbuf, errlen, "out of memory opening kafka");
    return -1;
  }
  b->cfg = cfg;
  b->on_fatal = on_fatal;
  b->fatal_arg = fatal_arg;
  saga_kloop_callbacks_t cb = {
      .opaque = b,
      .on_message = k_on_message,
      .on_assign = k_on_assign,
      .on_revoke = k_on_revoke,
      .on_delivery = k_on_delivery,
      .on_error = k_on_error,
      .on_log = k_on_log,
      .on_flow = k_on_flow,
  };
  if (saga_kloop_new(loop, &kc, &cb, &b->kl, errbuf, errlen))
    goto fail;
  /* librdkafka connects lazily: ask for metadata now, so unreachable
   * brokers are a clear error at start rather than silence -- or, with
   * start.wait_for_dependencies_ms, are waited for that long. */
  uint64_t until = uv_hrtime() / 1000000 + (uint64_t)cfg->start_wait_ms;
  for (;;) {
    uint64_t tried = uv_hrtime() / 1000000;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(saga_kloop_producer(b->kl), 0, NULL, &md, 5000);
    if (!err) {
      rd_kafka_metadata_destroy(md);
      break;
    }
    uint64_t now = uv_hrtime() / 1000000;
    if (now >= until) {
      snprintf(errbuf, errlen, "could not reach kafka at %s: %s%s",
               cfg->kafka_bootstrap_servers, rd_kafka_err2str(err),
               cfg->start_wait_ms ? " (start.wait_for_dependencies_ms "
                                    "passed)"
                                  : "");
      saga_kloop_close(b->kl, NULL, NULL);
      b->kl = NULL;
      goto fail;
    }
    LOG_WARN("waiting for kafka at %s (%s), %llu ms left of "
             "start.wait_for_dependencies_ms",
             cfg->kafka_bootstrap_servers, rd_kafka_err2str(err),
             (unsigned long long)(until - now));
    if (now - tried < 1000) /* failed fast: at most one try a second */
      nanosleep(&(struct timespec){1, 0}, NULL);
  }
  b->loop = loop;
  b->up_at = uv_now(loop);
  uv_timer_init(loop, &b->probe_timer);
  b->probe_timer.data = b;
  uv_timer_start(&b->probe_timer, on_probe_timer, PROBE_EVERY_MS,
                 PROBE_EVERY_MS);
  *port = (sagad_broker_port_t){
      .self = b, .produce = p_produce, .ack = p_ack, .release = p_release};
  *out = b;
  return 0;
fail:
  free(b->props);
  free(b);
  return -1;
}

rd_kafka_t *sagad_broker_kafka_consumer(sagad_broker_kafka_t *b) {
  return b ? saga_kloop_consumer(b->kl) : NULL;
}

size_t sagad_broker_kafka_max_message(sagad_broker_kafka_t *b) {
  rd_kafka_t *rk = b ? saga_kloop_producer(b->kl) : NULL;
  char v[32];
  size_t n = sizeof v;
  if (!rk || rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", v,
                               &n) != RD_KAFKA_CONF_OK)
    return 0;
  return (size_t)strtoull(v, NULL, 10);
}

int sagad_broker_kafka_start(sagad_broker_kafka_t *b, sagad_engine_t *e,
                             char *errbuf, size_t errlen) {
  b->engine = e;
  const char *topics[1] = {b->cfg->topic_inbox};
  return saga_kloop_subscribe(b->kl, topics, 1, errbuf, errlen) ? -1 : 0;
}

static void closed_one(sagad_broker_kafka_t *b) {
  if (--b->pending > 0)
    return;
  void (*cb)(void *) = b->close_cb;
  void *cb_arg = b->close_arg;
  free(b->props);
  free(b);
  if (cb)
    cb(cb_arg);
}

static void on_kl_closed(void *arg) { closed_one(arg); }

static void on_timer_closed(uv_handle_t *h) { closed_one(h->data); }

static void close_kloop(sagad_broker_kafka_t *b) {
  saga_kloop_close(b->kl, on_kl_closed, b);
}

void sagad_broker_kafka_close(sagad_broker_kafka_t *b, void (*cb)(void *),
                              void *arg) {
  if (!b) {
    if (cb)
      cb(arg);
    return;
  }
  b->close_cb = cb;
  b->close_arg = arg;
  b->closing = true;
  b->pending = 2;
  uv_close((uv_handle_t *)&b->probe_timer, on_timer_closed);
  /* A probe in the pool uses the producer: the client closes after it. */
  if (!b->probing)
    close_kloop(b);
}
