/* librdkafka on a libuv loop (see kafka_loop.h). Both handles' queues signal
 * one non-blocking pipe; the loop thread drains them with a budget per turn
 * and re-arms itself through the same pipe. Offsets are committed in order
 * per partition, only up to the first unacknowledged message. */
#include "kafka_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DRAIN_BUDGET 512

struct kpart {
  char *topic;
  int32_t partition;
  int revoked;
  size_t held; /* messages handed to on_message, neither acknowledged nor
                  released */
  saga_kloop_ack_t *head, *tail;
  struct kpart *next;
};

struct saga_kloop_ack {
  int64_t offset;
  int done; /* acknowledged; a released one never is: commits stop there */
  struct kpart *part;
  saga_kloop_ack_t *next;
};

struct saga_kloop {
  uv_loop_t *loop;
  saga_kloop_callbacks_t cb;
  rd_kafka_t *consumer, *producer;
  rd_kafka_queue_t *cq, *pq;
  int fds[2];
  uv_poll_t poll;
  uv_timer_t commit_timer, close_timer, poll_timer;
  int handles_open;
  int commit_interval_ms, close_timeout_ms;
  int commit_dirty;
  int no_group; /* hand-assigned reader: acks commit nothing */
  int outq; /* produced, not yet reported */
  struct kpart *parts;   /* assigned (live) partitions */
  struct kpart *revoked; /* revoked, with acks still outstanding */
  size_t max_held; /* pause the assignment at this many held; 0 = never */
  size_t held;     /* sum of the live partitions' held */
  int paused;      /* the assignment is paused for back-pressure */
  int closing;       /* 1 consumer closing, 2 producer draining, 3 done */
  rd_kafka_t *err_rk; /* inside on_error: the handle it is about */
  uint64_t close_deadline;
  void (*close_cb)(void *);
  void *close_arg;
};

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *errbuf, size_t errlen, const char *fmt, ...) {
  if (errbuf && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static int set_props(rd_kafka_conf_t *conf, const char *const *p,
                     char *errbuf, size_t errlen) {
  char e[256];
  for (; p && p[0]; p += 2) {
    if (!p[1])
      return fail(errbuf, errlen, "kafka property \"%s\" has no value", p[0]);
    if (rd_kafka_conf_set(conf, p[0], p[1], e, sizeof e) != RD_KAFKA_CONF_OK)
      return fail(errbuf, errlen, "kafka property \"%s\": %s", p[0], e);
  }
  return 0;
}

/* ---- which handle a property is for ----
 * A property given to both handles (cfg->properties: sagad's kafka.*, the
 * client library's saga_kafka_config_t.properties) is set only on the
 * handle it is for: librdkafka logs a warning ("CONFWARN ... is a producer
 * property and will be ignored by this consumer instance") for every
 * other one, and an operator who set kafka.linger.ms saw one at every
 * start. The scope comes from librdkafka's own table
 * (rd_kafka_conf_properties_show: C consumer, P producer, * both), read
 * once; a property not in it goes to both, for librdkafka to judge. */
struct prop_scope {
  char *name;
  char scope; /* 'C' or 'P' */
};
static struct prop_scope *scopes;
static size_t n_scopes;
static pthread_once_t scopes_once = PTHREAD_ONCE_INIT;

/* The trimmed text of a table cell [b, e) into out (outlen bytes). */
static void cell_text(const char *b, const char *e, char *out,
                      size_t outlen) {
  while (b < e && *b == ' ')
    b++;
  while (e > b && (e[-1] == ' ' || e[-1] == '\n'))
    e--;
  size_t n = (size_t)(e - b) < outlen - 1 ? (size_t)(e - b) : outlen - 1;
  memcpy(out, b, n);
  out[n] = '\0';
}

static void read_scopes(void) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f)
    return;
  rd_kafka_conf_properties_show(f);
  if (fclose(f) != 0 || !text) {
    free(text);
    return;
  }
  size_t cap = 0;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    char *bar1 = strchr(line, '|');
    char *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
    if (!bar2)
      continue;
    char name[128], scope[8];
    cell_text(line, bar1, name, sizeof name);
    cell_text(bar1 + 1, bar2, scope, sizeof scope);
    if ((strcmp(scope, "C") && strcmp(scope, "P")) || !name[0])
      continue;
    if (n_scopes == cap) {
      size_t ncap = cap ? cap * 2 : 128;
      struct prop_scope *g = realloc(scopes, ncap * sizeof *g);
      if (!g)
        break;
      scopes = g;
      cap = ncap;
    }
    if (!(scopes[n_scopes].name = strdup(name)))
      break;
    scopes[n_scopes++].scope = scope[0];
  }
  free(text);
}

/* Whether property `name` applies to a handle of this type. */
static int prop_applies(const char *name, rd_kafka_type_t type) {
  pthread_once(&scopes_once, read_scopes);
  for (size_t i = 0; i < n_scopes; i++)
    if (!strcmp(scopes[i].name, name))
      return scopes[i].scope == (type == RD_KAFKA_CONSUMER ? 'C' : 'P');
  return 1;
}

/* set_props for the list given to both handles: each property only on the
 * handle it is for. */
static int set_shared_props(rd_kafka_conf_t *conf, rd_kafka_type_t type,
                            const char *const *p, char *errbuf,
                            size_t errlen) {
  for (; p && p[0]; p += 2) {
    if (p[1] && !prop_applies(p[0], type))
      continue;
    const char *const one[] = {p[0], p[1], NULL};
    if (set_props(conf, one, errbuf, errlen))
      return -1;
  }
  return 0;
}

int saga_kloop_prop_given(const char *const *p, const char *name) {
  for (; p && p[0] && p[1]; p += 2)
    if (!strcmp(p[0], name))
      return 1;
  return 0;
}

/* A consumer's heartbeat.interval.ms, unless configured, at most a third
 * of its session.timeout.ms (Kafka's advice). librdkafka keeps 3000 ms
 * whatever the session: with session.timeout.ms=3000 the consumer declared
 * its own session lost whenever one heartbeat answer came a little late,
 * and a member answering every heartbeat lost its partitions over and over
 * (docs/benchmarks.md, the saga benchmark's recovery phase). */
static int heartbeat_within_session(const saga_kloop_config_t *cfg,
                                    rd_kafka_conf_t *conf, char *errbuf,
                                    size_t errlen) {
  if (saga_kloop_prop_given(cfg->properties, "heartbeat.interval.ms") ||
      saga_kloop_prop_given(cfg->consumer_properties,
                            "heartbeat.interval.ms"))
    return 0;
  char sv[32], hv[32];
  size_t sl = sizeof sv, hl = sizeof hv;
  if (rd_kafka_conf_get(conf, "session.timeout.ms", sv, &sl) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_get(conf, "heartbeat.interval.ms", hv, &hl) !=
          RD_KAFKA_CONF_OK)
    return 0;
  long session = atol(sv), hb = atol(hv);
  if (session <= 0 || hb <= session / 3)
    return 0;
  snprintf(hv, sizeof hv, "%ld", session / 3 > 0 ? session / 3 : 1);
  const char *const p[] = {"heartbeat.interval.ms", hv, NULL};
  return set_props(conf, p, errbuf, errlen);
}

static rd_kafka_t *make_handle(const saga_kloop_config_t *cfg,
                               rd_kafka_type_t type, char *errbuf,
                               size_t errlen) {
  char e[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* Small requests on a round trip path: Nagle would hold one back until
   * the previous one is acknowledged. Configured properties still win. */
  const char *const base[] = {"bootstrap.servers", cfg->bootstrap_servers,
                              "log.queue",         "true",
                              "socket.nagle.disable", "true", NULL};
  /* fetch.wait.max.ms: a saga is a chain of round trips, and a broker
   * that holds a fetch while it has nothing to return (the embedded mock
   * holds it the whole time even when data arrives meanwhile) can add that
   * wait to every hop: librdkafka's 500 ms made each step of a saga take
   * 500 ms. 10 ms costs an idle consumer about 100 small fetch requests a
   * second per broker; set it higher to trade latency for fewer requests. */
  const char *const cons[] = {"enable.auto.commit", "false",
                              "enable.auto.offset.store", "false",
                              "enable.partition.eof", "false",
                              "fetch.wait.max.ms", "10", NULL};
  /* linger.ms 0, not librdkafka's 5: a saga is a chain of single
   * messages, and each would wait the whole linger (a 3-step saga holds
   * 8 produces on its critical path: 40 ms of waiting with 5). Batching
   * still happens under load: while the idempotent producer's 5 requests
   * per broker are in flight, what is produced meanwhile goes out together
   * in the next one. Set it higher to trade latency for larger batches. */
  const char *const prod[] = {"enable.idempotence", "true", "acks", "all",
                              "linger.ms", "0", NULL};
  const char *const *own = type == RD_KAFKA_CONSUMER ? cons : prod;
  const char *const *more = type == RD_KAFKA_CONSUMER
                                ? cfg->consumer_properties
                                : cfg->producer_properties;
  if (set_props(conf, base, errbuf, errlen) ||
      set_props(conf, own, errbuf, errlen) ||
      set_shared_props(conf, type, cfg->properties, errbuf, errlen) ||
      set_props(conf, more, errbuf, errlen))
    goto err;
  if (type == RD_KAFKA_CONSUMER && heartbeat_within_session(cfg, conf, errbuf,
                                                            errlen))
    goto err;
  if (type == RD_KAFKA_CONSUMER) {
    /* librdkafka wants a group.id even to assign by hand; such a reader
     * never joins it and never commits to it (see saga_kloop_ack). */
    char gid[64];
    snprintf(gid, sizeof gid, "saga-reader-%ld-%p", (long)getpid(),
             (const void *)cfg);
    const char *const g[] = {"group.id", cfg->group_id ? cfg->group_id : gid,
                             NULL};
    if (set_props(conf, g, errbuf, errlen))
      goto err;
  }
  int events = RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG;
  events |= type == RD_KAFKA_CONSUMER
                ? RD_KAFKA_EVENT_REBALANCE | RD_KAFKA_EVENT_OFFSET_COMMIT
                : RD_KAFKA_EVENT_DR;
  rd_kafka_conf_set_events(conf, events);
  rd_kafka_t *rk = rd_kafka_new(type, conf, e, sizeof e);
  if (!rk) {
    fail(errbuf, errlen, "could not create kafka %s: %s",
         type == RD_KAFKA_CONSUMER ? "consumer" : "producer", e);
    goto err;
  }
  return rk;
err:
  rd_kafka_conf_destroy(conf);
  return NULL;
}

int saga_kloop_check(const saga_kloop_config_t *cfg, char *errbuf,
                     size_t errlen) {
  if (!cfg)
    return fail(errbuf, errlen, "no kafka configuration");
  /* no broker to connect to, set last so that no property (such as
   * metadata.broker.list, its alias) puts one back */
  saga_kloop_config_t c = *cfg;
  c.bootstrap_servers = "";
  for (int t = 0; t < 2; t++) {
    rd_kafka_type_t type = t ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER;
    if (!(t ? c.want_producer : c.want_consumer))
      continue;
    const char *const *more =
        t ? cfg->producer_properties : cfg->consumer_properties;
    size_t n = 0;
    while (more && more[n]) { /* a name without a value is kept: refused */
      n += 2;
      if (!more[n - 1])
        break;
    }
    const char **last = calloc(n + 3, sizeof *last);
    if (!last)
      return fail(errbuf, errlen, "out of memory");
    for (size_t i = 0; i < n; i++)
      last[i] = more[i];
    last[n] = "bootstrap.servers";
    last[n + 1] = "";
    if (t)
      c.producer_properties = last;
    else
      c.consumer_properties = last;
    rd_kafka_t *rk = make_handle(&c, type, errbuf, errlen);
    free(last);
    if (!rk)
      return -1;
    rd_kafka_destroy(rk);
  }
  return 0;
}

static void wake(saga_kloop_t *kl) {
  ssize_t n = write(kl->fds[1], "1", 1);
  (void)n; /* a full pipe already means "wake up" */
}

/* on_error about handle rk (saga_kloop_error_handle answers it meanwhile). */
static void report(saga_kloop_t *kl, rd_kafka_t *rk, rd_kafka_resp_err_t err,
                   int fatal, const char *reason) {
  if (!kl->cb.on_error)
    return;
  rd_kafka_t *was = kl->err_rk;
  kl->err_rk = rk;
  kl->cb.on_error(kl, err, fatal, reason, kl->cb.opaque);
  kl->err_rk = was;
}

rd_kafka_t *saga_kloop_error_handle(const saga_kloop_t *kl) {
  return kl ? kl->err_rk : NULL;
}

/* ---- acknowledgement tracking ---- */

static struct kpart *find_part(saga_kloop_t *kl, const char *topic,
                               int32_t partition) {
  for (struct kpart *p = kl->parts; p; p = p->next)
    if (p->partition == partition && !strcmp(p->topic, topic))
      return p;
  struct kpart *p = calloc(1, sizeof *p);
  if (!p || !(p->topic = strdup(topic))) {
    free(p);
    return NULL;
  }
  p->partition = partition;
  p->next = kl->parts;
  kl->parts = p;
  return p;
}

static void free_part(struct kpart *p) {
  saga_kloop_ack_t *a = p->head;
  while (a) {
    saga_kloop_ack_t *n = a->next;
    free(a);
    a = n;
  }
  free(p->topic);
  free(p);
}

static void unlink_part(struct kpart **list, struct kpart *p) {
  for (struct kpart **pp = list; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  p->next = NULL;
}

/* Move p to the revoked list (its acks may still come) or free it: once
 * no message of it is held, what is left of its list (released messages,
 * acknowledged ones behind them) commits nothing any more. */
static void detach_part(saga_kloop_t *kl, struct kpart *p) {
  unlink_part(&kl->parts, p);
  p->revoked = 1;
  kl->held -= p->held; /* the next owner reads them again */
  if (!p->held) {
    free_part(p);
    return;
  }
  p->next = kl->revoked;
  kl->revoked = p;
}

static void commit_now(saga_kloop_t *kl, int async) {
  if (!kl->commit_dirty || !kl->consumer)
    return;
  kl->commit_dirty = 0;
  /* Async results come back as OFFSET_COMMIT events on our own queue. */
  rd_kafka_resp_err_t err =
      async ? rd_kafka_commit_queue(kl->consumer, NULL, kl->cq, NULL, NULL)
            : rd_kafka_commit(kl->consumer, NULL, 0);
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
    report(kl, kl->consumer, err, 0, "could not commit offsets");
}

static void on_commit_timer(uv_timer_t *t) {
  commit_now(t->data, 1);
}

/* Pause (or resume) fetching of parts, or of the whole assignment when
 * parts is NULL. Fetched messages of a paused partition that were not yet
 * handed over are dropped by librdkafka and fetched again on resume, from
 * the last one handed over. */
static void set_paused(saga_kloop_t *kl,
                       const rd_kafka_topic_partition_list_t *parts,
                       int pause) {
  rd_kafka_topic_partition_list_t *all = NULL;
  if (!parts) {
    if (rd_kafka_assignment(kl->consumer, &all) != RD_KAFKA_RESP_ERR_NO_ERROR)
      return;
    parts = all;
  }
  rd_kafka_topic_partition_list_t *l =
      rd_kafka_topic_partition_list_copy(parts);
  rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(kl->consumer, l)
                                  : rd_kafka_resume_partitions(kl->consumer, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (all)
    rd_kafka_topic_partition_list_destroy(all);
  if (err)
    report(kl, kl->consumer, err, 0,
           pause ? "could not pause the consumer's partitions"
                 : "could not resume the consumer's partitions");
}

/* Back-pressure: pause at max_held messages held, resume at half. */
static void flow(saga_kloop_t *kl) {
  if (!kl->max_held || !kl->consumer || kl->closing)
    return;
  int want = kl->paused ? kl->held > kl->max_held / 2
                        : kl->held >= kl->max_held;
  if (want == kl->paused)
    return;
  kl->paused = want;
  set_paused(kl, NULL, want);
  if (kl->cb.on_flow)
    kl->cb.on_flow(kl, want, kl->held, kl->cb.opaque);
}

void saga_kloop_ack(saga_kloop_t *kl, saga_kloop_ack_t *ack) {
  if (!kl || !ack)
    return;
  struct kpart *p = ack->part;
  ack->done = 1;
  p->held--;
  if (!p->revoked) {
    kl->held--;
    flow(kl);
  }
  int64_t next = -1;
  while (p->head && p->head->done) {
    saga_kloop_ack_t *a = p->head;
    next = a->offset + 1;
    p->head = a->next;
    if (!p->head)
      p->tail = NULL;
    free(a);
  }
  if (p->revoked) {
    if (!p->held) {
      unlink_part(&kl->revoked, p);
      free_part(p);
    }
    return;
  }
  if (next < 0 || !kl->consumer || kl->no_group)
    return;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = next;
  rd_kafka_resp_err_t err = rd_kafka_offsets_store(kl->consumer, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (err)
    return; /* no longer assigned: the next owner sees it again */
  kl->commit_dirty = 1;
  if (!uv_is_active((uv_handle_t *)&kl->commit_timer) && !kl->closing)
    uv_timer_start(&kl->commit_timer, on_commit_timer,
                   (uint64_t)kl->commit_interval_ms, 0);
}

void saga_kloop_release(saga_kloop_t *kl, saga_kloop_ack_t *ack) {
  if (!kl || !ack)
    return;
  struct kpart *p = ack->part;
  /* it stays in the list, never done: commits stop here */
  p->held--;
  if (!p->revoked) {
    kl->held--;
    flow(kl);
  } else if (!p->held) {
    unlink_part(&kl->revoked, p);
    free_part(p);
  }
}

void saga_kloop_outstanding(const saga_kloop_t *kl, size_t *live,
                            size_t *revoked) {
  size_t n = 0;
  for (const struct kpart *p = kl->revoked; p; p = p->next)
    n += p->held;
  if (live)
    *live = kl->held;
  if (revoked)
    *revoked = n;
}

const char *saga_kloop_ack_topic(const saga_kloop_ack_t *ack) {
  return ack->part->topic;
}
int32_t saga_kloop_ack_partition(const saga_kloop_ack_t *ack) {
  return ack->part->partition;
}
int64_t saga_kloop_ack_offset(const saga_kloop_ack_t *ack) {
  return ack->offset;
}

/* ---- event dispatch ---- */

static void handle_message(saga_kloop_t *kl, const rd_kafka_message_t *m) {
  if (m->err) {
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
      report(kl, kl->consumer, m->err, 0, rd_kafka_message_errstr(m));
    return;
  }
  const char *topic = rd_kafka_topic_name(m->rkt);
  struct kpart *p = find_part(kl, topic, m->partition);
  saga_kloop_ack_t *a = p ? calloc(1, sizeof *a) : NULL;
  if (!a) {
    /* Out of memory: leave it unacknowledged, so it is redelivered. */
    report(kl, kl->consumer, RD_KAFKA_RESP_ERR__FAIL, 0,
           "out of memory tracking a consumed message");
    return;
  }
  a->offset = m->offset;
  a->part = p;
  p->held++;
  kl->held++;
  if (p->tail)
    p->tail->next = a;
  else
    p->head = a;
  p->tail = a;
  if (kl->cb.on_message)
    kl->cb.on_message(kl, m, a, kl->cb.opaque);
  else
    saga_kloop_ack(kl, a);
  flow(kl);
}

static void handle_rebalance(saga_kloop_t *kl, rd_kafka_event_t *ev) {
  rd_kafka_t *rk = kl->consumer;
  const rd_kafka_topic_partition_list_t *parts =
      rd_kafka_event_topic_partition_list(ev);
  int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
  rd_kafka_error_t *error = NULL;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (coop)
      error = rd_kafka_incremental_assign(rk, parts);
    else
      err = rd_kafka_assign(rk, parts);
    if (!err && !error && kl->paused)
      set_paused(kl, parts, 1); /* still held back: new ones wait too */
    if (!err && !error && kl->cb.on_assign)
      kl->cb.on_assign(kl, parts, kl->cb.opaque);
  } else {
    if (kl->cb.on_revoke)
      kl->cb.on_revoke(kl, parts, kl->cb.opaque);
    /* Acknowledged offsets go out before the partitions do. */
    commit_now(kl, 0);
    for (int i = 0; i < parts->cnt; i++) {
      for (struct kpart *p = kl->parts; p; p = p->next)
        if (p->partition == parts->elems[i].partition &&
            !strcmp(p->topic, parts->elems[i].topic)) {
          detach_part(kl, p);
          break;
        }
    }
    if (coop)
      error = rd_kafka_incremental_unassign(rk, parts);
    else
      err = rd_kafka_assign(rk, NULL);
    flow(kl); /* what the revoked partitions held is let go */
  }
  if (error) {
    err = rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
  }
  if (err)
    report(kl, rk, err, 0, "could not apply a rebalance assignment");
}

/* An event from the queue of handle rk. */
static void handle_event(saga_kloop_t *kl, rd_kafka_t *rk,
                         rd_kafka_event_t *ev) {
  const rd_kafka_message_t *m;
  switch (rd_kafka_event_type(ev)) {
  case RD_KAFKA_EVENT_FETCH:
    while ((m = rd_kafka_event_message_next(ev)))
      handle_message(kl, m);
    break;
  case RD_KAFKA_EVENT_DR:
    while ((m = rd_kafka_event_message_next(ev))) {
      kl->outq--;
      if (kl->cb.on_delivery)
        kl->cb.on_delivery(kl, m, m->_private, kl->cb.opaque);
    }
    break;
  case RD_KAFKA_EVENT_REBALANCE:
    handle_rebalance(kl, ev);
    break;
  case RD_KAFKA_EVENT_OFFSET_COMMIT:
    if (kl->cb.on_commit)
      kl->cb.on_commit(kl, rd_kafka_event_error(ev),
                       rd_kafka_event_topic_partition_list(ev),
                       kl->cb.opaque);
    break;
  case RD_KAFKA_EVENT_ERROR:
    report(kl, rk, rd_kafka_event_error(ev),
           rd_kafka_event_error_is_fatal(ev), rd_kafka_event_error_string(ev));
    break;
  case RD_KAFKA_EVENT_LOG: {
    const char *fac = "", *str = "";
    int level = 7;
    /* librdkafka logs a broker failure ("FAIL", above debug) and raises
     * the same text as an error event, which on_error reports: passing
     * both would report each failure twice. */
    if (rd_kafka_event_log(ev, &fac, &str, &level) == 0 && kl->cb.on_log &&
        !(level < 7 && strcmp(fac, "FAIL") == 0))
      kl->cb.on_log(kl, level, fac, str, kl->cb.opaque);
    break;
  }
  default:
    break;
  }
}

/* Drain up to `budget` events from q; returns how many were left unserved
 * (>0 means more may be waiting). */
static int drain_queue(saga_kloop_t *kl, rd_kafka_queue_t *q, int budget) {
  while (q && budget > 0) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 0);
    if (!ev)
      return 0;
    handle_event(kl, q == kl->cq ? kl->consumer : kl->producer, ev);
    rd_kafka_event_destroy(ev);
    budget--;
  }
  return q ? 1 : 0;
}

static void drain(saga_kloop_t *kl) {
  char buf[64];
  while (read(kl->fds[0], buf, sizeof buf) > 0) {
  }
  int more = drain_queue(kl, kl->cq, DRAIN_BUDGET);
  more |= drain_queue(kl, kl->pq, DRAIN_BUDGET);
  if (more)
    wake(kl); /* let other handles run, then continue */
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  drain(h->data);
}

/* librdkafka takes a consumer that has not polled its queue for
 * max.poll.interval.ms for a stuck one and leaves the group (its
 * partitions go to the others, or are revoked and assigned again); the
 * pipe wakes the loop only when an event is queued, so a member with
 * nothing to read polls on this timer instead. */
#define IDLE_POLL_MS 1000

static void on_poll_timer(uv_timer_t *t) {
  drain(t->data);
}

/* ---- life cycle ---- */

static rd_kafka_queue_t *attach_queue(saga_kloop_t *kl, rd_kafka_t *rk,
                                      int consumer) {
  if (consumer)
    rd_kafka_poll_set_consumer(rk);
  rd_kafka_queue_t *q =
      consumer ? rd_kafka_queue_get_consumer(rk) : rd_kafka_queue_get_main(rk);
  rd_kafka_set_log_queue(rk, q);
  rd_kafka_queue_io_event_enable(q, kl->fds[1], "1", 1);
  return q;
}

int saga_kloop_new(uv_loop_t *loop, const saga_kloop_config_t *cfg,
                   const saga_kloop_callbacks_t *cb, saga_kloop_t **out,
                   char *errbuf, size_t errlen) {
  if (!loop || !cfg || !out || !cfg->bootstrap_servers ||
      (!cfg->want_consumer && !cfg->want_producer))
    return fail(errbuf, errlen, "invalid kafka loop configuration");
  saga_kloop_t *kl = calloc(1, sizeof *kl);
  if (!kl)
    return fail(errbuf, errlen, "out of memory");
  kl->loop = loop;
  kl->no_group = cfg->group_id == NULL;
  kl->fds[0] = kl->fds[1] = -1;
  if (cb)
    kl->cb = *cb;
  kl->commit_interval_ms = cfg->commit_interval_ms > 0 ? cfg->commit_interval_ms : 50;
  kl->max_held = cfg->max_held;
  kl->close_timeout_ms = cfg->close_timeout_ms > 0 ? cfg->close_timeout_ms : 5000;
  if (pipe(kl->fds) != 0) {
    fail(errbuf, errlen, "could not create a pipe: %s", strerror(errno));
    goto err;
  }
  for (int i = 0; i < 2; i++) {
    fcntl(kl->fds[i], F_SETFL, fcntl(kl->fds[i], F_GETFL) | O_NONBLOCK);
    fcntl(kl->fds[i], F_SETFD, FD_CLOEXEC);
  }
  if (cfg->want_consumer &&
      !(kl->consumer = make_handle(cfg, RD_KAFKA_CONSUMER, errbuf, errlen)))
    goto err;
  if (cfg->want_producer &&
      !(kl->producer = make_handle(cfg, RD_KAFKA_PRODUCER, errbuf, errlen)))
    goto err;
  if (uv_poll_init(loop, &kl->poll, kl->fds[0]) != 0) {
    fail(errbuf, errlen, "could not watch the kafka wake-up pipe");
    goto err;
  }
  kl->poll.data = kl;
  uv_timer_init(loop, &kl->commit_timer);
  uv_timer_init(loop, &kl->close_timer);
  uv_timer_init(loop, &kl->poll_timer);
  kl->commit_timer.data = kl->close_timer.data = kl->poll_timer.data = kl;
  kl->handles_open = 4;
  uv_poll_start(&kl->poll, UV_READABLE, on_poll);
  if (kl->consumer)
    uv_timer_start(&kl->poll_timer, on_poll_timer, IDLE_POLL_MS,
                   IDLE_POLL_MS);
  if (kl->consumer)
    kl->cq = attach_queue(kl, kl->consumer, 1);
  if (kl->producer)
    kl->pq = attach_queue(kl, kl->producer, 0);
  wake(kl); /* serve anything queued before the pipe was attached */
  *out = kl;
  return 0;
err:
  if (kl->consumer)
    rd_kafka_destroy(kl->consumer);
  if (kl->producer)
    rd_kafka_destroy(kl->producer);
  for (int i = 0; i < 2; i++)
    if (kl->fds[i] >= 0)
      close(kl->fds[i]);
  free(kl);
  return -1;
}

int saga_kloop_subscribe(saga_kloop_t *kl, const char *const *topics,
                         size_t n_topics, char *errbuf, size_t errlen) {
  if (!kl || !kl->consumer || !topics || !n_topics || kl->closing)
    return fail(errbuf, errlen, "cannot subscribe: no consumer or no topics");
  rd_kafka_topic_partition_list_t *l =
      rd_kafka_topic_partition_list_new((int)n_topics);
  for (size_t i = 0; i < n_topics; i++)
    rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(kl->consumer, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (err)
    return fail(errbuf, errlen, "could not subscribe to \"%s\": %s", topics[0],
                rd_kafka_err2str(err));
  return 0;
}

int saga_kloop_assign(saga_kloop_t *kl,
                      const rd_kafka_topic_partition_list_t *parts,
                      char *errbuf, size_t errlen) {
  if (!kl || !kl->consumer || kl->closing)
    return fail(errbuf, errlen, "cannot assign: no consumer");
  rd_kafka_resp_err_t err = rd_kafka_assign(kl->consumer, parts);
  if (err)
    return fail(errbuf, errlen, "could not assign partitions: %s",
                rd_kafka_err2str(err));
  if (kl->paused)
    set_paused(kl, parts, 1);
  return 0;
}

int saga_kloop_produce(saga_kloop_t *kl, const char *topic, int32_t partition,
                       const void *key, size_t key_len, const void *value,
                       size_t value_len, rd_kafka_headers_t *hdrs,
                       void *msg_opaque, char *errbuf, size_t errlen) {
  if (!kl || !kl->producer || !topic || kl->closing)
    return fail(errbuf, errlen, "cannot produce to \"%s\": %s",
                topic ? topic : "(null)",
                kl && kl->closing ? "closing" : "no producer");
  rd_kafka_resp_err_t err;
  if (hdrs)
    err = rd_kafka_producev(
        kl->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY((void *)(uintptr_t)key, key_len),
        RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value_len),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(msg_opaque),
        RD_KAFKA_V_END);
  else
    err = rd_kafka_producev(
        kl->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY((void *)(uintptr_t)key, key_len),
        RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value_len),
        RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
  if (err)
    return fail(errbuf, errlen, "could not produce to \"%s\": %s", topic,
                rd_kafka_err2str(err));
  kl->outq++;
  return 0;
}

int saga_kloop_outq_len(const saga_kloop_t *kl) {
  return kl ? kl->outq : 0;
}

rd_kafka_t *saga_kloop_consumer(saga_kloop_t *kl) {
  return kl ? kl->consumer : NULL;
}

rd_kafka_t *saga_kloop_producer(saga_kloop_t *kl) {
  return kl ? kl->producer : NULL;
}

static void on_handle_closed(uv_handle_t *h) {
  saga_kloop_t *kl = h->data;
  if (--kl->handles_open > 0)
    return;
  void (*cb)(void *) = kl->close_cb;
  void *arg = kl->close_arg;
  free(kl);
  if (cb)
    cb(arg);
}

static void finish_close(saga_kloop_t *kl) {
  kl->closing = 3;
  uv_timer_stop(&kl->close_timer);
  uv_timer_stop(&kl->commit_timer);
  uv_timer_stop(&kl->poll_timer);
  uv_poll_stop(&kl->poll);
  if (kl->cq) {
    rd_kafka_queue_io_event_enable(kl->cq, -1, NULL, 0);
    rd_kafka_queue_destroy(kl->cq);
  }
  if (kl->pq) {
    rd_kafka_queue_io_event_enable(kl->pq, -1, NULL, 0);
    rd_kafka_queue_destroy(kl->pq);
  }
  if (kl->consumer)
    rd_kafka_destroy(kl->consumer);
  if (kl->producer)
    rd_kafka_destroy(kl->producer);
  kl->consumer = kl->producer = NULL;
  kl->cq = kl->pq = NULL;
  struct kpart *lists[2] = {kl->parts, kl->revoked};
  for (int i = 0; i < 2; i++)
    while (lists[i]) {
      struct kpart *p = lists[i];
      lists[i] = p->next;
      free_part(p);
    }
  kl->parts = kl->revoked = NULL;
  close(kl->fds[0]);
  close(kl->fds[1]);
  uv_close((uv_handle_t *)&kl->poll, on_handle_closed);
  uv_close((uv_handle_t *)&kl->commit_timer, on_handle_closed);
  uv_close((uv_handle_t *)&kl->close_timer, on_handle_closed);
  uv_close((uv_handle_t *)&kl->poll_timer, on_handle_closed);
}

static void on_close_timer(uv_timer_t *t) {
  saga_kloop_t *kl = t->data;
  drain(kl);
  if (kl->closing == 1) {
    if (kl->consumer && !rd_kafka_consumer_closed(kl->consumer))
      return;
    kl->closing = 2;
  }
  if (kl->closing == 2) {
    if (kl->outq > 0 && uv_now(kl->loop) < kl->close_deadline)
      return;
    if (kl->outq > 0 && kl->producer) {
      rd_kafka_purge(kl->producer,
                     RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      /* Purged messages report through the queue: serve them now. */
      for (int i = 0; i < 100 && kl->outq > 0; i++) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(kl->pq, 10);
        if (ev) {
          handle_event(kl, kl->producer, ev);
          rd_kafka_event_destroy(ev);
        }
      }
    }
    finish_close(kl);
  }
}

void saga_kloop_close(saga_kloop_t *kl, void (*cb)(void *arg), void *arg) {
  if (!kl || kl->closing)
    return;
  kl->closing = 1;
  kl->close_cb = cb;
  kl->close_arg = arg;
  kl->close_deadline = uv_now(kl->loop) + (uint64_t)kl->close_timeout_ms;
  uv_timer_stop(&kl->commit_timer);
  if (kl->consumer) {
    commit_now(kl, 0);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(kl->consumer, kl->cq);
    if (e) {
      rd_kafka_error_destroy(e);
      kl->closing = 2; /* could not close politely: go on */
    }
  } else {
    kl->closing = 2;
  }
  uv_timer_start(&kl->close_timer, on_close_timer, 0, 5);
}
