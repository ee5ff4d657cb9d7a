/* The participant side of the protocol (saga/client.h): decode a command,
 * answer it from the store when its effect key (saga, step, action -- any
 * attempt) has a recorded reply to the same attempt or a recorded SUCCESS,
 * else call the handler; record the reply under the effect key, produce it
 * addressed to the command's own attempt, and only when its delivery is
 * acknowledged acknowledge the command's offset. A COMPENSATE whose DO was
 * never applied is voided without the handler, and a DO arriving after
 * that is refused. Undecodable
 * input is dead-lettered and its offset moves on once the dead letter is
 * delivered. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "kafka_errtext.h"
#include "kafka_limits.h"
#include "kafka_loop.h"
#include "saga/client.h"
#include "text.h"
#include "wire_kafka.h"

typedef struct handler {
  char *topic;
  saga_handler_fn fn;
  void *arg;
  struct handler *next;
} handler_t;

enum job_kind { JOB_COMMAND, JOB_DLQ };

/* The default dead-letter topic of a command topic: "<topic>.dlq". */
#define DLQ_SUFFIX ".dlq"

/* One consumed input on its way to an acknowledged reply or dead letter. */
struct saga_pending {
  enum job_kind kind;
  saga_participant_t *p;
  saga_kloop_ack_t *ack;
  Saga__V1__Command *cmd;
  saga__wire_meta_t meta;
  saga_command_t view;
  char topic[SAGA_WIRE_MAX_ID + 1];
  /* "<saga_id>/<step>/<DO|COMPENSATE>": the same for every attempt */
  char effect_key[2 * SAGA_WIRE_MAX_ID + 16];
  int in_handler;             /* handler called (or being voided), done()
                                 not yet */
  int recording;              /* done() called, its record not answered
                                 yet: the effect's command still, so the
                                 same effect waits behind it */
  int do_refused;             /* a COMPENSATE: its DO's refusal is
                                 recorded (see on_recorded) */
  int with_user;              /* handed to the handler, done() not yet:
                                 outlives a close (then j->p is NULL) */
  /* done()'s reply, owned: a store may answer the record later */
  saga_recorded_reply_t reply;
  void *reply_payload;
  char *reply_reason;
  /* that reply encoded (checked against the ceilings before it is
   * recorded), produced once the record succeeds */
  void *out;
  size_t out_len;
  rd_kafka_headers_t *out_hdrs;
  saga_pending_t *dups;       /* same effect (or its step's DO behind a
                                 COMPENSATE), arrived while this was in
                                 flight */
  int dup_of_inflight;
  saga_pending_t *prev, *next; /* p->jobs */
};

struct saga_participant {
  uv_loop_t *loop;
  saga_kloop_t *kl;
  saga_kloop_config_t kcfg;
  char **props;
  size_t max_bytes;
  size_t producer_max; /* librdkafka's message.max.bytes; 0 = unknown */
  char *group_id, *dlq_topic;
  saga_idem_store_t store;
  handler_t *handlers;
  saga_pending_t *jobs;
  int started, closing;
  saga_participant_stats_t stats;
  char last_error[1024]; /* why stats.errors last grew, or a later Kafka
                            client error; "" before */
  void (*close_cb)(void *);
  void *close_arg;
};

static void job_unlink(saga_pending_t *j) {
  saga_participant_t *p = j->p;
  if (j->prev)
    j->prev->next = j->next;
  else if (p && p->jobs == j)
    p->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  j->prev = j->next = NULL;
}

static void job_free(saga_pending_t *j) {
  if (!j)
    return;
  job_unlink(j);
  if (j->cmd)
    saga__wire_free(&j->cmd->base);
  if (j->out_hdrs)
    rd_kafka_headers_destroy(j->out_hdrs);
  free(j->out);
  free(j->reply_payload);
  free(j->reply_reason);
  free(j);
}

static saga_pending_t *job_new(saga_participant_t *p, enum job_kind kind,
                               saga_kloop_ack_t *ack) {
  saga_pending_t *j = calloc(1, sizeof *j);
  if (!j)
    return NULL;
  j->kind = kind;
  j->p = p;
  j->ack = ack;
  j->next = p->jobs;
  if (p->jobs)
    p->jobs->prev = j;
  p->jobs = j;
  return j;
}

/* Keep the text of a failure for saga_participant_last_error: the
 * library never logs, so this is where the reason for an errors count
 * is read. */
static void note(saga_participant_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(saga_participant_t *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->last_error, sizeof p->last_error, fmt, ap);
  va_end(ap);
}

/* A store callback reported err: note what failed in the store's own
 * words (asked for now, inside the callback, as saga_idem_store_t.
 * last_error says), or the code's text from a store that has none. */
static void note_store(saga_participant_t *p, const char *what,
                       const char *key, int err) {
  const char *t =
      p->store.last_error ? p->store.last_error(p->store.ctx) : NULL;
  note(p, "store %s of \"%s\" failed: %s: %s", what, key, saga_err_name(err),
       t && *t ? t : saga_strerror(err));
}

/* Abandon an input after a store or Kafka failure (noted before): its
 * offset stays unacknowledged, so it is redelivered after a restart or
 * rebalance. */
static void job_abandon(saga_pending_t *j) {
  j->p->stats.errors++;
  job_free(j);
}

/* Note that j was on its way when the participant began to close. */
static void note_closing(saga_pending_t *j) {
  note(j->p, "command \"%s\" abandoned: the participant is closing",
       j->cmd->idempotency_key);
}

/* Abandon j, which was on its way when the participant began to close. */
static void job_abandon_closing(saga_pending_t *j) {
  note_closing(j);
  job_abandon(j);
}

/* ---- replies ---- */

/* Encode r as the reply to j's command into *buf (free) and *h
 * (rd_kafka_headers_destroy, or a produce takes it): 0, SAGA_ETOOBIG when
 * it is past max_message_bytes or the producer's message.max.bytes (it
 * could never be sent), or another encode error, with the text in errbuf. */
static int encode_reply(saga_pending_t *j, const saga_recorded_reply_t *r,
                        void **buf, size_t *len, rd_kafka_headers_t **h,
                        char *errbuf, size_t errlen) {
  saga_participant_t *p = j->p;
  const Saga__V1__Command *c = j->cmd;
  Saga__V1__Reply rep;
  saga__wire_reply_to(&rep, c, (Saga__V1__Outcome)r->outcome, r->reason,
                      r->payload, r->payload_len);
  /* Same trace, new span: the reply is a child of the command. */
  char tp[SAGA_TRACEPARENT_SIZE];
  (void)saga__traceparent_child(tp, j->meta.traceparent); /* "" = none */
  saga_meta_t meta = {
      .correlation_id =
          j->meta.correlation_id[0] ? j->meta.correlation_id : c->saga_id,
      .causation_id = c->idempotency_key,
      .traceparent = tp,
  };
  int rc = saga__wire_encode(&rep.base, &meta, p->max_bytes, buf, len, h,
                             errbuf, errlen);
  if (rc)
    return rc;
  if (!saga__producer_fits(p->producer_max, strlen(c->saga_id), *len, *h)) {
    rd_kafka_headers_destroy(*h);
    free(*buf);
    *h = NULL;
    *buf = NULL;
    return saga__errf(SAGA_ETOOBIG, errbuf, errlen,
                      "the encoded Reply of %zu bytes is past the producer's "
                      "message.max.bytes (%zu)",
                      *len, p->producer_max);
  }
  return 0;
}

/* Produce an encoded reply to j's reply topic. buf is freed; h is taken
 * on success only. 0 or SAGA_EKAFKA (noted). */
static int send_reply(saga_pending_t *j, void *buf, size_t len,
                      rd_kafka_headers_t *h) {
  const Saga__V1__Command *c = j->cmd;
  char err[512];
  int rc = saga_kloop_produce(j->p->kl, c->reply_topic, RD_KAFKA_PARTITION_UA,
                              c->saga_id, strlen(c->saga_id), buf, len, h, j,
                              err, sizeof err);
  free(buf);
  if (rc)
    note(j->p, "reply to \"%s\" not sent: %s", c->idempotency_key, err);
  return rc ? SAGA_EKAFKA : 0;
}

/* Encode and produce r as the reply to j's command: 0 or an error
 * (noted). */
static int produce_reply(saga_pending_t *j, const saga_recorded_reply_t *r) {
  void *buf;
  size_t len;
  rd_kafka_headers_t *h;
  char err[512];
  int rc = encode_reply(j, r, &buf, &len, &h, err, sizeof err);
  if (rc)
    note(j->p, "reply to \"%s\" not sent: %s: %s", j->cmd->idempotency_key,
         saga_err_name(rc), err);
  else if ((rc = send_reply(j, buf, len, h)) != 0)
    rd_kafka_headers_destroy(h);
  return rc;
}

static void dispatch(saga_pending_t *j);
static void on_lookup(void *arg, int err, int found,
                      const saga_recorded_reply_t *r);

/* A COMPENSATE that finds its step's DO never applied (no record, or a
 * FAILURE or RETRYABLE: nothing done) records this under the DO's effect
 * key before it answers: a DO that arrives later -- overtaken by its own
 * compensation -- gets this FAILURE and never reaches the handler.
 * INT32_MAX answers every attempt (see answers) and fits the PostgreSQL
 * store's integer column. */
#define VOID_ATTEMPT ((uint32_t)INT32_MAX)
static const char VOID_DO_REASON[] =
    "refused: the step was compensated before this command arrived";
static const char VOID_COMP_REASON[] = "voided: the step was never applied";

/* A recorded reply answers a command without the handler when the effect
 * was applied (SUCCESS) by any attempt, or when it answered that very
 * attempt (a redelivery) or a later one (the command is stale: running it
 * now could apply what the coordinator was told was not). A FAILURE or
 * RETRYABLE applied nothing, and a later attempt means the coordinator
 * retries: the step runs again. */
static int answers(const saga_recorded_reply_t *r, uint32_t attempt) {
  return r->outcome == SAGA_OUTCOME_SUCCESS || r->attempt >= attempt;
}

/* Answer the commands that queued behind j (same effect) with its reply,
 * each addressed to its own attempt. Those the reply does not answer (see
 * answers) are judged afresh against the store, as a new command is: the
 * first of them may apply the effect before the next is judged, and the
 * next must then get that reply, not the handler. */
static void answer_dups(saga_pending_t *j, const saga_recorded_reply_t *r) {
  saga_pending_t *d = j->dups;
  j->dups = NULL;
  while (d) {
    saga_pending_t *n = d->dups;
    d->dups = NULL;
    if (strcmp(d->effect_key, j->effect_key) != 0 ||
        !answers(r, d->cmd->attempt)) {
      /* The step's other action (a COMPENSATE behind its DO, a DO behind
       * its COMPENSATE), or a later attempt after a FAILURE or RETRYABLE:
       * judged afresh against what is recorded now. */
      d->p->store.lookup(d->p->store.ctx, d->effect_key, on_lookup, d);
    } else {
      d->p->stats.duplicates++;
      if (produce_reply(d, r) != 0)
        job_abandon(d);
    }
    d = n;
  }
}

static void abandon_dups(saga_pending_t *j) {
  saga_pending_t *d = j->dups;
  j->dups = NULL;
  while (d) {
    saga_pending_t *n = d->dups;
    job_abandon(d);
    d = n;
  }
}

/* ---- done ---- */

static void send_recorded(saga_pending_t *j);
static void other_key(const saga_pending_t *j, char *buf, size_t len);

/* After a COMPENSATE's store call `op` ("lookup", "record") under the
 * other action's key (its DO's): on err or a close, say why, abandon j and
 * those waiting behind it, and return 1; else 0. */
static int other_action_failed(saga_pending_t *j, const char *op, int err) {
  if (!err && !j->p->closing)
    return 0;
  if (err) {
    char key[sizeof j->effect_key];
    other_key(j, key, sizeof key);
    note_store(j->p, op, key, err);
  } else {
    note_closing(j);
  }
  abandon_dups(j);
  job_abandon(j);
  return 1;
}

/* A compensated step's DO refusal is recorded (or could not be). */
static void on_do_refused(void *arg, int err) {
  saga_pending_t *j = arg;
  j->recording = 0;
  if (!other_action_failed(j, "record", err))
    send_recorded(j);
}

static void on_recorded(void *arg, int err) {
  saga_pending_t *j = arg;
  j->recording = 0;
  if (err || j->p->closing) {
    if (err)
      note_store(j->p, "record", j->effect_key, err);
    else
      note_closing(j);
    abandon_dups(j);
    job_abandon(j);
    return;
  }
  if (j->cmd->action == SAGA__V1__ACTION__ACTION_COMPENSATE &&
      j->reply.outcome == SAGA_OUTCOME_SUCCESS && !j->do_refused) {
    /* docs/protocol.md 3b: once its step is compensated, a DO that comes
     * later is never applied, whatever its attempt. A voided compensation
     * recorded this first (on_do_lookup); one the handler made, while its
     * DO was in the handler too, records it now, before its reply and
     * before the commands waiting behind it are judged. The store keeps a
     * recorded SUCCESS of the DO (its redeliveries get that). */
    char key[sizeof j->effect_key];
    other_key(j, key, sizeof key);
    saga_recorded_reply_t t = {SAGA_OUTCOME_FAILURE, NULL, 0, VOID_DO_REASON,
                               VOID_ATTEMPT};
    j->do_refused = 1;
    j->recording = 1;
    j->p->store.record(j->p->store.ctx, key, &t, on_do_refused, j);
    return;
  }
  send_recorded(j);
}

/* Send j's recorded reply, then answer those waiting behind it. */
static void send_recorded(saga_pending_t *j) {
  void *buf = j->out;
  rd_kafka_headers_t *h = j->out_hdrs;
  j->out = NULL;
  j->out_hdrs = NULL;
  if (send_reply(j, buf, j->out_len, h) != 0) {
    rd_kafka_headers_destroy(h);
    abandon_dups(j);
    job_abandon(j);
    return;
  }
  answer_dups(j, &j->reply);
}

/* Keep a copy of the reply in j (the store may answer the record later)
 * and encode it: 0, SAGA_ENOMEM or encode_reply's error, with the text in
 * errbuf. */
static int hold_reply(saga_pending_t *j, saga_outcome_t outcome,
                      const void *payload, size_t payload_len,
                      const char *reason, char *errbuf, size_t errlen) {
  if ((payload_len && !(j->reply_payload = malloc(payload_len))) ||
      (reason && !(j->reply_reason = strdup(reason))))
    return saga__errf(SAGA_ENOMEM, errbuf, errlen,
                      "out of memory for a copy of the reply");
  if (payload_len)
    memcpy(j->reply_payload, payload, payload_len);
  j->reply = (saga_recorded_reply_t){outcome, j->reply_payload, payload_len,
                                     j->reply_reason, j->cmd->attempt};
  return encode_reply(j, &j->reply, &j->out, &j->out_len, &j->out_hdrs,
                      errbuf, errlen);
}

int saga_participant_done(saga_pending_t *j, saga_outcome_t outcome,
                          const void *payload, size_t payload_len,
                          const char *reason) {
  if (!j || !j->in_handler)
    return SAGA_EINVAL;
  if (!j->p || j->p->closing) {
    /* The participant closed while the handler held it: nothing to
     * answer, the command is redelivered to the next one (those queued
     * behind it go with the participant). */
    job_free(j);
    return SAGA_ECANCELED;
  }
  j->in_handler = 0;
  j->with_user = 0;
  int rc = 0;
  char err[512];
  if (outcome < SAGA_OUTCOME_SUCCESS || outcome > SAGA_OUTCOME_RETRYABLE)
    rc = saga__errf(SAGA_EINVAL, err, sizeof err,
                    "outcome %d is not SUCCESS, FAILURE or RETRYABLE",
                    (int)outcome);
  else if (!payload && payload_len)
    rc = saga__errf(SAGA_EINVAL, err, sizeof err,
                    "payload is NULL with a length of %zu bytes", payload_len);
  else if (reason &&
           saga__utf8_bad_at(reason, strlen(reason)) < strlen(reason))
    rc = saga__errf(SAGA_EINVAL, err, sizeof err,
                    "reason is not UTF-8 (at byte %zu)",
                    saga__utf8_bad_at(reason, strlen(reason)));
  else if (payload_len > j->p->max_bytes)
    rc = saga__errf(SAGA_ETOOBIG, err, sizeof err,
                    "payload of %zu bytes is past max_message_bytes (%zu)",
                    payload_len, j->p->max_bytes);
  else
    rc = hold_reply(j, outcome, payload, payload_len, reason, err,
                    sizeof err);
  if (rc) {
    /* Nothing recorded: a reply the store kept but Kafka could never
     * take would answer every later attempt with nothing. */
    note(j->p, "reply to \"%s\" refused: %s: %s", j->cmd->idempotency_key,
         saga_err_name(rc), err);
    abandon_dups(j);
    job_abandon(j);
    return rc;
  }
  /* Record before replying: a crash between the two re-sends the recorded
   * reply on redelivery (or to a later attempt) instead of running the
   * handler again. */
  j->recording = 1;
  j->p->store.record(j->p->store.ctx, j->effect_key, &j->reply, on_recorded,
                     j);
  return 0;
}

/* ---- intake ---- */

/* A command in the handler (or being voided), or whose reply is being
 * recorded, with this effect key. */
static saga_pending_t *inflight_with_key(saga_participant_t *p,
                                         const saga_pending_t *self,
                                         const char *key) {
  for (saga_pending_t *j = p->jobs; j; j = j->next)
    if (j != self && j->kind == JOB_COMMAND &&
        (j->in_handler || j->recording) && !strcmp(j->effect_key, key))
      return j;
  return NULL;
}

/* The effect key of j's step with the other action. */
static void other_key(const saga_pending_t *j, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s/%s", j->cmd->saga_id, j->cmd->step,
           j->cmd->action == SAGA__V1__ACTION__ACTION_DO ? "COMPENSATE"
                                                         : "DO");
}

/* Queue j behind `first`: answered (same effect) or judged afresh
 * (the step's other action) when first is done. */
static void wait_behind(saga_pending_t *j, saga_pending_t *first) {
  j->dups = first->dups;
  first->dups = j;
}

static handler_t *find_handler(saga_participant_t *p, const char *topic) {
  for (handler_t *h = p->handlers; h; h = h->next)
    if (!strcmp(h->topic, topic))
      return h;
  return NULL;
}

/* Hand j to the handler, or queue it behind a command of the same effect
 * that is still there. */
static void dispatch(saga_pending_t *j) {
  saga_participant_t *p = j->p;
  if (p->closing) {
    /* a store that answered late: the handler is not called after close */
    job_abandon_closing(j);
    return;
  }
  saga_pending_t *first = inflight_with_key(p, j, j->effect_key);
  char other[sizeof j->effect_key];
  other_key(j, other, sizeof other);
  /* A DO waits for its step's compensation in progress: if that was
   * voided, the DO is refused. */
  if (!first && j->cmd->action == SAGA__V1__ACTION__ACTION_DO)
    first = inflight_with_key(p, j, other);
  if (first) {
    wait_behind(j, first);
    return;
  }
  handler_t *h = find_handler(p, j->topic);
  const Saga__V1__Command *c = j->cmd;
  j->view = (saga_command_t){
      .topic = j->topic,
      .saga_id = c->saga_id,
      .saga_type = c->saga_type,
      .definition_version = c->definition_version,
      .step = c->step,
      .action = (saga_action_t)c->action,
      .action_name = c->action_name && *c->action_name ? c->action_name : NULL,
      .attempt = c->attempt,
      .idempotency_key = c->idempotency_key,
      .deadline_ms = c->deadline_ms,
      .payload = c->payload.data,
      .payload_len = c->payload.len,
      .reply_topic = c->reply_topic,
      .meta = saga__wire_meta_view(&j->meta),
      .effect_key = j->effect_key,
  };
  j->in_handler = 1;
  j->with_user = 1;
  p->stats.handled++;
  h->fn(p, &j->view, j, h->arg);
}

/* ---- compensation of an effect never applied ---- */

static void on_tombstone(void *arg, int err) {
  saga_pending_t *j = arg;
  if (other_action_failed(j, "record", err))
    return;
  /* Recorded and answered like a handler's SUCCESS (in_handler is set);
   * the DO's refusal is recorded already. */
  j->do_refused = 1;
  (void)saga_participant_done(j, SAGA_OUTCOME_SUCCESS, NULL, 0,
                              VOID_COMP_REASON);
}

static void on_do_lookup(void *arg, int err, int found,
                         const saga_recorded_reply_t *r) {
  saga_pending_t *j = arg;
  if (err || j->p->closing)
    j->in_handler = 0;
  if (other_action_failed(j, "lookup", err))
    return;
  if (found && r->outcome == SAGA_OUTCOME_SUCCESS) {
    /* Applied: the handler undoes it. */
    j->in_handler = 0;
    dispatch(j); /* those that queued behind j stay queued */
    return;
  }
  char key[sizeof j->effect_key];
  other_key(j, key, sizeof key); /* its DO's */
  saga_recorded_reply_t t = {SAGA_OUTCOME_FAILURE, NULL, 0, VOID_DO_REASON,
                             VOID_ATTEMPT};
  j->p->store.record(j->p->store.ctx, key, &t, on_tombstone, j);
}

/* A COMPENSATE not answered from the store: undo through the handler
 * only what its DO applied. A DO still in the handler has no recorded
 * outcome yet (and may never answer): only the handler knows what it did,
 * so the compensation goes to it. Otherwise the store decides; meanwhile
 * the command counts as in the handler, so the step's DO waits for the
 * verdict. */
static void judge_compensation(saga_pending_t *j) {
  saga_participant_t *p = j->p;
  saga_pending_t *first = inflight_with_key(p, j, j->effect_key);
  if (first) {
    wait_behind(j, first);
    return;
  }
  char key[sizeof j->effect_key];
  other_key(j, key, sizeof key);
  if (inflight_with_key(p, j, key)) {
    dispatch(j);
    return;
  }
  j->in_handler = 1;
  p->store.lookup(p->store.ctx, key, on_do_lookup, j);
}

static void on_lookup(void *arg, int err, int found,
                      const saga_recorded_reply_t *r) {
  saga_pending_t *j = arg;
  if (err) {
    note_store(j->p, "lookup", j->effect_key, err);
    job_abandon(j);
    return;
  }
  if (j->p->closing) {
    job_abandon_closing(j);
    return;
  }
  if (found && answers(r, j->cmd->attempt)) {
    /* A redelivery, or a retry of an applied effect whose earlier reply
     * came too late: the recorded reply, without running the step. */
    j->p->stats.duplicates++;
    if (produce_reply(j, r) != 0)
      job_abandon(j);
    return;
  }
  /* Unknown, or an earlier attempt that applied nothing: the step runs
   * (again). `r` is not used past this point (recording may replace it). */
  if (j->cmd->action == SAGA__V1__ACTION__ACTION_COMPENSATE)
    judge_compensation(j);
  else
    dispatch(j);
}

/* Whether saga_kloop_produce's refusal, whose text (err) ends in
 * librdkafka's word for the code, is RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
 * the message is past the producer's message.max.bytes. */
static int refused_too_large(const char *err) {
  const char *w = rd_kafka_err2str(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  size_t n = strlen(err), k = strlen(w);
  return n > k + 2 && !strcmp(err + n - k, w) &&
         !strncmp(err + n - k - 2, ": ", 2);
}

/* Send m, undecodable, to the dead-letter topic with its reason; its
 * offset is acknowledged once that is delivered. One too large for the
 * producer goes without its value; any other failure to produce leaves
 * the input unacknowledged (abandoned, noted). */
static void dead_letter(saga_participant_t *p, const rd_kafka_message_t *m,
                        saga_kloop_ack_t *ack, const char *reason) {
  saga_pending_t *j = job_new(p, JOB_DLQ, ack);
  if (!j) {
    note(p, "dead letter not sent: out of memory");
    p->stats.errors++;
    return;
  }
  const char *topic = rd_kafka_topic_name(m->rkt);
  char dlq[SAGA_KAFKA_MAX_TOPIC + 1]; /* fits: saga_participant_handle */
  snprintf(dlq, sizeof dlq, "%s" DLQ_SUFFIX, topic);
  char source[SAGA_WIRE_MAX_ID + 64];
  snprintf(source, sizeof source, "%s/%d/%lld", topic, (int)m->partition,
           (long long)m->offset);
  rd_kafka_headers_t *in = NULL, *h;
  if (rd_kafka_message_headers(m, &in) == RD_KAFKA_RESP_ERR_NO_ERROR && in)
    h = rd_kafka_headers_copy(in);
  else
    h = rd_kafka_headers_new(2);
  if (!h || saga__hdr_add(h, SAGA_HDR_DLQ_REASON, reason) ||
      saga__hdr_add(h, SAGA_HDR_DLQ_SOURCE, source)) {
    if (h)
      rd_kafka_headers_destroy(h);
    note(p, "dead letter of %s not sent: out of memory for its headers",
         source);
    job_abandon(j);
    return;
  }
  const char *to = p->dlq_topic ? p->dlq_topic : dlq;
  char err[512];
  if (saga_kloop_produce(p->kl, to, RD_KAFKA_PARTITION_UA, m->key, m->key_len,
                         m->payload, m->len, h, j, err, sizeof err) == 0)
    return;
  if (!refused_too_large(err)) {
    /* Any other refusal (a full queue, the participant closing): the
     * input stays unacknowledged, whole, as after a reply that could not
     * be sent, and is redelivered after a restart or rebalance. */
    rd_kafka_headers_destroy(h);
    note(p, "dead letter of %s not sent: %s", source, err);
    job_abandon(j);
    return;
  }
  /* Too big for the producer: keep the headers and say what was dropped
   * (as sagad's dead letters do), never a silent cut. */
  char size[32], cut[96];
  snprintf(size, sizeof size, "%zu", m->len);
  snprintf(cut, sizeof cut,
           "value of %zu bytes dropped: too large for the producer", m->len);
  if (saga__hdr_add(h, SAGA_HDR_DLQ_SIZE, size) ||
      saga__hdr_add(h, SAGA_HDR_DLQ_TRUNCATED, cut) ||
      saga_kloop_produce(p->kl, to, RD_KAFKA_PARTITION_UA, m->key, m->key_len,
                         NULL, 0, h, j, err, sizeof err) != 0) {
    rd_kafka_headers_destroy(h);
    note(p, "dead letter of %s not sent: %s", source, err);
    job_abandon(j);
  }
}

static void on_message(saga_kloop_t *kl, const rd_kafka_message_t *m,
                       saga_kloop_ack_t *ack, void *opaque) {
  (void)kl;
  saga_participant_t *p = opaque;
  const char *topic = rd_kafka_topic_name(m->rkt);
  if (p->closing || !find_handler(p, topic))
    return; /* not ours: leave it unacknowledged */
  char err[512];
  rd_kafka_headers_t *hdrs = NULL;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
    hdrs = NULL;
  saga_pending_t *j = job_new(p, JOB_COMMAND, ack);
  if (!j) {
    note(p, "message at %s/%d/%lld not taken: out of memory", topic,
         (int)m->partition, (long long)m->offset);
    p->stats.errors++;
    return;
  }
  ProtobufCMessage *msg = NULL;
  int rc = saga__wire_decode(&saga__v1__command__descriptor, m->payload,
                             m->len, hdrs, p->max_bytes, &msg, &j->meta, err,
                             sizeof err);
  if (rc) {
    job_free(j);
    p->stats.dead_lettered++;
    char reason[600];
    snprintf(reason, sizeof reason, "%s: %s", saga_err_name(rc), err);
    dead_letter(p, m, ack, reason);
    return;
  }
  j->cmd = (Saga__V1__Command *)msg;
  snprintf(j->topic, sizeof j->topic, "%s", topic);
  snprintf(j->effect_key, sizeof j->effect_key, "%s/%s/%s", j->cmd->saga_id,
           j->cmd->step, saga_action_name((int)j->cmd->action));
  p->store.lookup(p->store.ctx, j->effect_key, on_lookup, j);
}

static void on_delivery(saga_kloop_t *kl, const rd_kafka_message_t *m,
                        void *msg_opaque, void *opaque) {
  saga_participant_t *p = opaque;
  saga_pending_t *j = msg_opaque;
  if (m->err) {
    if (j->kind == JOB_COMMAND)
      note(p, "reply to \"%s\" not delivered to \"%s\": %s",
           j->cmd->idempotency_key, rd_kafka_topic_name(m->rkt),
           rd_kafka_err2str(m->err));
    else
      note(p, "dead letter of %s/%d/%lld not delivered to \"%s\": %s",
           saga_kloop_ack_topic(j->ack), (int)saga_kloop_ack_partition(j->ack),
           (long long)saga_kloop_ack_offset(j->ack),
           rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    job_abandon(j);
    return;
  }
  if (j->kind == JOB_COMMAND)
    p->stats.replies_acked++;
  /* The reply (or dead letter) is durable: now the input may go. */
  saga_kloop_ack(kl, j->ack);
  job_free(j);
}

/* A Kafka client-level error (brokers down, a fatal error): kept for
 * saga_participant_last_error, not counted in stats.errors, since no
 * input is abandoned for it (librdkafka retries by itself, and what then
 * fails is counted where it fails). */
static void on_error(saga_kloop_t *kl, rd_kafka_resp_err_t err, int fatal,
                     const char *reason, void *opaque) {
  saga_participant_t *p = opaque;
  saga__kafka_error_text(p->last_error, sizeof p->last_error, kl, err, fatal,
                         reason);
}

/* A failed offset commit: kept like on_error's; the offsets stay stored
 * and go with the next commit, or the inputs are redelivered and answered
 * from the store. */
static void on_commit(saga_kloop_t *kl, rd_kafka_resp_err_t err,
                      const rd_kafka_topic_partition_list_t *offsets,
                      void *opaque) {
  (void)kl;
  saga_participant_t *p = opaque;
  saga__kafka_commit_text(p->last_error, sizeof p->last_error, err, offsets);
}

/* ---- life cycle ---- */

static char **copy_props(const char *const *src) {
  size_t n = 0;
  while (src && src[n])
    n++;
  char **d = calloc(n + 1, sizeof *d);
  if (!d)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (!(d[i] = strdup(src[i]))) {
      for (size_t k = 0; k < i; k++)
        free(d[k]);
      free(d);
      return NULL;
    }
  return d;
}

static void free_props(char **p) {
  for (size_t i = 0; p && p[i]; i++)
    free(p[i]);
  free(p);
}

static void participant_free(saga_participant_t *p) {
  /* First the store: a store that answers later calls back now or never
   * (see saga_idem_store_t.destroy), while its jobs still exist. */
  if (p->store.destroy)
    p->store.destroy(p->store.ctx);
  while (p->jobs) {
    saga_pending_t *j = p->jobs;
    if (j->with_user) {
      /* The handler still holds it: it stays valid until
       * saga_participant_done, which frees it (SAGA_ECANCELED). Those
       * queued behind it are freed here. */
      job_unlink(j);
      j->p = NULL;
      j->dups = NULL;
      j->ack = NULL;
    } else {
      job_free(j);
    }
  }
  while (p->handlers) {
    handler_t *h = p->handlers;
    p->handlers = h->next;
    free(h->topic);
    free(h);
  }
  free_props(p->props);
  free(p->group_id);
  free(p->dlq_topic);
  free(p);
}

/* The configuration's mistakes that would show only later (a group
 * that never joins, dead letters that never leave): SAGA_EINVAL naming
 * the field, or 0. */
static int check_config(const saga_participant_config_t *cfg, char *errbuf,
                        size_t errlen) {
  if (!cfg->kafka.bootstrap_servers || !*cfg->kafka.bootstrap_servers)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "participant: kafka.bootstrap_servers is missing");
  if (!cfg->group_id || !*cfg->group_id)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "participant: group_id is missing");
  if (!cfg->store.lookup || !cfg->store.record)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "participant: store has no lookup or record function "
                      "(saga_idem_store_memory or saga_idem_store_pg makes "
                      "one)");
  if (cfg->dlq_topic && !saga__kafka_topic_ok(cfg->dlq_topic))
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "participant: dlq_topic \"%.64s\" is not a Kafka topic "
                      "name (1 to 249 of A-Z a-z 0-9 . _ -)",
                      cfg->dlq_topic);
  for (const char *const *q = cfg->kafka.properties; q && q[0] && q[1];
       q += 2)
    if (!strcmp(q[0], "group.id") && strcmp(q[1], cfg->group_id) != 0)
      return saga__errf(SAGA_EINVAL, errbuf, errlen,
                        "participant: kafka property group.id \"%.64s\" is "
                        "not group_id \"%.64s\": give the group once, as "
                        "group_id",
                        q[1], cfg->group_id);
  return 0;
}

int saga_participant_new(uv_loop_t *loop, const saga_participant_config_t *cfg,
                         saga_participant_t **out, char *errbuf,
                         size_t errlen) {
  if (!loop || !cfg || !out)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "participant needs a loop, a configuration and a place "
                      "for the handle");
  int bad = check_config(cfg, errbuf, errlen);
  if (bad)
    return bad;
  saga_participant_t *p = calloc(1, sizeof *p);
  if (!p)
    return saga__errf(SAGA_ENOMEM, errbuf, errlen, "out of memory");
  p->loop = loop;
  p->max_bytes = cfg->kafka.max_message_bytes
                     ? cfg->kafka.max_message_bytes
                     : SAGA_DEFAULT_MAX_MESSAGE_BYTES;
  p->props = copy_props(cfg->kafka.properties);
  p->group_id = strdup(cfg->group_id);
  p->dlq_topic = cfg->dlq_topic ? strdup(cfg->dlq_topic) : NULL;
  if (!p->props || !p->group_id || (cfg->dlq_topic && !p->dlq_topic)) {
    free_props(p->props);
    free(p->group_id);
    free(p->dlq_topic);
    free(p);
    return saga__errf(SAGA_ENOMEM, errbuf, errlen, "out of memory");
  }
  saga_kloop_config_t kc = {
      .bootstrap_servers = cfg->kafka.bootstrap_servers,
      .properties = (const char *const *)p->props,
      .want_consumer = 1,
      .want_producer = 1,
      .group_id = p->group_id,
  };
  saga_kloop_callbacks_t cb = {.opaque = p,
                               .on_message = on_message,
                               .on_delivery = on_delivery,
                               .on_commit = on_commit,
                               .on_error = on_error};
  if (saga_kloop_new(loop, &kc, &cb, &p->kl, errbuf, errlen) != 0) {
    free_props(p->props);
    free(p->group_id);
    free(p->dlq_topic);
    free(p);
    return SAGA_EKAFKA;
  }
  p->producer_max = saga__producer_max_bytes(saga_kloop_producer(p->kl));
  p->store = cfg->store;
  *out = p;
  return 0;
}

int saga_participant_handle(saga_participant_t *p, const char *topic,
                            saga_handler_fn fn, void *arg) {
  if (!p)
    return SAGA_EINVAL;
  if (!topic || !fn) {
    note(p, "participant: handle needs a topic and a handler function");
    return SAGA_EINVAL;
  }
  if (!saga__kafka_topic_ok(topic)) {
    note(p,
         "participant: topic \"%.64s%s\" is not a Kafka topic name (1 to %d "
         "of A-Z a-z 0-9 . _ -, no regular expression)",
         topic, strlen(topic) > 64 ? "..." : "", SAGA_KAFKA_MAX_TOPIC);
    return SAGA_EINVAL;
  }
  if (!p->dlq_topic &&
      strlen(topic) + strlen(DLQ_SUFFIX) > SAGA_KAFKA_MAX_TOPIC) {
    note(p,
         "participant: topic \"%.64s...\" is %zu characters long: its "
         "dead-letter topic \"<topic>" DLQ_SUFFIX "\" would be past Kafka's "
         "%d; give a topic of at most %d, or set dlq_topic",
         topic, strlen(topic), SAGA_KAFKA_MAX_TOPIC,
         SAGA_KAFKA_MAX_TOPIC - (int)strlen(DLQ_SUFFIX));
    return SAGA_EINVAL;
  }
  /* The other refusals have one cause each, which the code says. */
  if (p->started || p->closing)
    return SAGA_ESTATE;
  if (find_handler(p, topic))
    return SAGA_EEXIST;
  handler_t *h = calloc(1, sizeof *h);
  if (!h || !(h->topic = strdup(topic))) {
    free(h);
    return SAGA_ENOMEM;
  }
  h->fn = fn;
  h->arg = arg;
  h->next = p->handlers;
  p->handlers = h;
  return 0;
}

int saga_participant_start(saga_participant_t *p, char *errbuf,
                           size_t errlen) {
  if (!p)
    return saga__errf(SAGA_EINVAL, errbuf, errlen, "no participant to start");
  if (p->started || p->closing)
    return saga__errf(SAGA_ESTATE, errbuf, errlen, "participant %s",
                      p->closing ? "is closing" : "already started");
  size_t n = 0;
  for (handler_t *h = p->handlers; h; h = h->next)
    n++;
  if (!n)
    return saga__errf(SAGA_EINVAL, errbuf, errlen, "no handler registered");
  const char **topics = calloc(n, sizeof *topics);
  if (!topics)
    return saga__errf(SAGA_ENOMEM, errbuf, errlen, "out of memory");
  n = 0;
  for (handler_t *h = p->handlers; h; h = h->next)
    topics[n++] = h->topic;
  int rc = saga_kloop_subscribe(p->kl, topics, n, errbuf, errlen);
  free(topics);
  if (rc)
    return SAGA_EKAFKA;
  p->started = 1;
  return 0;
}

void saga_participant_stats(const saga_participant_t *p,
                            saga_participant_stats_t *out) {
  if (p && out)
    *out = p->stats;
}

const char *saga_participant_last_error(const saga_participant_t *p) {
  return p ? p->last_error : NULL;
}

static void on_kloop_closed(void *arg) {
  saga_participant_t *p = arg;
  void (*cb)(void *) = p->close_cb;
  void *cb_arg = p->close_arg;
  participant_free(p);
  if (cb)
    cb(cb_arg);
}

void saga_participant_close(saga_participant_t *p, void (*cb)(void *arg),
                            void *arg) {
  if (!p || p->closing)
    return;
  p->closing = 1;
  p->close_cb = cb;
  p->close_arg = arg;
  saga_kloop_close(p->kl, on_kloop_closed, p);
}
