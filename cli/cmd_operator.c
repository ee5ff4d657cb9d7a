/* retry and resolve: an OperatorAction for a saga parked in
 * compensation_failed, produced to the coordinator's inbox keyed by the
 * saga id (docs/protocol.md); the same messages for every saga of an
 * action by query (cmd_bulk.c), through one producer. The saga's status is checked in saga_index
 * first, so an action for a saga that is not parked is refused here with
 * its status rather than silently counted by the coordinator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cli_cmds.h"
#include "cli_db.h"

#include "wire_kafka.h"

/* What the producer's callbacks share (its opaque): the bootstrap list
 * and librdkafka's last error, for the one line a failure gets. */
typedef struct {
  const char *bootstrap;
  char last_error[256];
} producer_ctx_t;

/* librdkafka's log lines (a refused connection, "1/1 brokers are down")
 * stay off stderr: a failure is reported once, as sagactl's own line, by
 * the delivery report or the flush that gave up. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
  (void)rk;
  (void)level;
  (void)fac;
  (void)buf;
}

/* An error librdkafka raises (served by rd_kafka_poll/flush, on this
 * thread): kept to say why a message went undelivered. */
static void on_error(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
  (void)rk;
  (void)err;
  producer_ctx_t *p = opaque;
  snprintf(p->last_error, sizeof p->last_error, "%s", reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
  producer_ctx_t *p = opaque;
  cli_send_t *it = m->_private;
  it->done = 1;
  it->rc = CLI_EXIT_OK;
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
    return;
  (void)rk;
  it->rc = m->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ||
                   m->err == RD_KAFKA_RESP_ERR__TRANSPORT ||
                   m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
               ? CLI_EXIT_UNREACHABLE
               : CLI_EXIT_FAIL;
  snprintf(it->why, sizeof it->why,
           "could not deliver to topic \"%s\" at %s: %s%s%s%s",
           rd_kafka_topic_name(m->rkt), p->bootstrap,
           rd_kafka_err2str(m->err), p->last_error[0] != '\0' ? " (" : "",
           p->last_error, p->last_error[0] != '\0' ? ")" : "");
}

/* A producer on the configured Kafka (its opaque: ctx, which must outlive
 * it). Returns an exit code (line printed). */
static int open_producer(const cli_settings_t *s, producer_ctx_t *ctx,
                         rd_kafka_t **out) {
  char err[512], tmo[32];
  const char *bootstrap = cli_get(s, CLI_SET_KAFKA);
  *ctx = (producer_ctx_t){.bootstrap = bootstrap};
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  snprintf(tmo, sizeof tmo, "%lld", (long long)s->timeout_ms);
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err,
                        sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "message.timeout.ms", tmo, err, sizeof err) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "enable.idempotence", "true", err,
                        sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return cli_fail(CLI_EXIT_USAGE, "kafka configuration: %s", err);
  }
  for (size_t i = 0; i < s->n_kafka_props; i++) {
    if (rd_kafka_conf_set(conf, s->kafka_props[2 * i],
                          s->kafka_props[2 * i + 1], err,
                          sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return cli_fail(CLI_EXIT_USAGE, "kafka.%s: %s", s->kafka_props[2 * i],
                      err);
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_log_cb(conf, on_log);
  rd_kafka_conf_set_error_cb(conf, on_error);
  rd_kafka_conf_set_opaque(conf, ctx);
  *out = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (*out == NULL) {
    rd_kafka_conf_destroy(conf);
    return cli_fail(CLI_EXIT_USAGE, "could not create a Kafka producer: %s",
                    err);
  }
  return CLI_EXIT_OK;
}

/* Encode the OperatorAction for it and produce it to topic, keyed by the
 * saga id. On failure it->rc and it->why say why (done set). */
static void produce_action(rd_kafka_t *rk, const char *topic, int kind,
                           const char *reason, const char *op,
                           cli_send_t *it) {
  /* saga__wire_encode checks the message as the coordinator's decode does
   * (id form, UTF-8, ceilings) and writes the headers docs/protocol.md
   * names, so a bad --reason or --operator is refused here. */
  Saga__V1__OperatorAction msg;
  saga__v1__operator_action__init(&msg);
  msg.saga_id = SAGA_MUT(it->saga_id);
  msg.action = (Saga__V1__OperatorActionKind)kind;
  msg.reason = SAGA_MUT(reason);
  msg.operator_ = SAGA_MUT(op);
  saga_meta_t meta = {.saga_id = it->saga_id,
                      .correlation_id = it->saga_id};
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  char err[400];
  int wrc = saga__wire_encode(&msg.base, &meta, 0, &buf, &len, &h, err,
                              sizeof err);
  it->done = 1;
  if (wrc != 0) {
    it->rc = wrc == SAGA_ENOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
    snprintf(it->why, sizeof it->why, "%s",
             wrc == SAGA_ENOMEM ? "out of memory" : err);
    return;
  }
  it->done = 0;
  rd_kafka_resp_err_t e;
  /* A full local queue empties as acknowledgements arrive. */
  while ((e = rd_kafka_producev(
              rk, RD_KAFKA_V_TOPIC(topic),
              RD_KAFKA_V_KEY(it->saga_id, strlen(it->saga_id)),
              RD_KAFKA_V_VALUE(buf, len),
              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(it),
              RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
    rd_kafka_poll(rk, 100);
  free(buf);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_headers_destroy(h);
    it->done = 1;
    it->rc = CLI_EXIT_FAIL;
    snprintf(it->why, sizeof it->why, "could not produce to \"%s\": %s",
             topic, rd_kafka_err2str(e));
  }
}

int cli_operator_send(const cli_settings_t *s, int kind, const char *reason,
                      cli_send_t *items, size_t n) {
  rd_kafka_t *rk = NULL;
  producer_ctx_t ctx;
  int rc = open_producer(s, &ctx, &rk);
  if (rc != CLI_EXIT_OK)
    return rc;
  const char *topic = cli_get(s, CLI_SET_INBOX);
  for (size_t i = 0; i < n; i++) {
    items[i].done = 0;
    items[i].why[0] = '\0';
    produce_action(rk, topic, kind, reason != NULL ? reason : "",
                   cli_get(s, CLI_SET_OPERATOR), &items[i]);
  }
  /* message.timeout.ms bounds each delivery; the flush bound is a net. */
  rd_kafka_flush(rk, (int)s->timeout_ms + 1000);
  for (size_t i = 0; i < n; i++)
    if (!items[i].done) {
      items[i].rc = CLI_EXIT_UNREACHABLE;
      snprintf(items[i].why, sizeof items[i].why,
               "no acknowledgement from Kafka at %s for topic \"%s\"%s%s%s",
               cli_get(s, CLI_SET_KAFKA), topic,
               ctx.last_error[0] != '\0' ? " (" : "", ctx.last_error,
               ctx.last_error[0] != '\0' ? ")" : "");
    }
  rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_destroy(rk);
  return CLI_EXIT_OK;
}

int cli_action_text_check(const cli_settings_t *s, cli_action_t action,
                          const char *cmd, const char *reason) {
  char err[400];
  int rc;
  const char *op = cli_get(s, CLI_SET_OPERATOR);
  if (action == CLI_ACT_CANCEL) {
    Saga__V1__CancelSaga m;
    saga__v1__cancel_saga__init(&m);
    m.saga_id = SAGA_MUT("x");
    m.reason = SAGA_MUT(reason ? reason : "");
    m.operator_ = SAGA_MUT(op ? op : "");
    rc = saga__wire_check(&m.base, err, sizeof err);
  } else {
    Saga__V1__OperatorAction m;
    saga__v1__operator_action__init(&m);
    m.saga_id = SAGA_MUT("x");
    m.action = SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY;
    m.reason = SAGA_MUT(reason ? reason : "");
    m.operator_ = SAGA_MUT(op ? op : "");
    rc = saga__wire_check(&m.base, err, sizeof err);
  }
  if (rc == 0)
    return CLI_EXIT_OK;
  /* the wire names the field ("reason is 1025 bytes long, ..."): the
   * reason is the option's value; the operator may come from SAGA_OPERATOR
   * or the config file, named then */
  const char *src = s->source[CLI_SET_OPERATOR];
  if (strncmp(err, "operator", 8) == 0 && src != NULL &&
      strcmp(src, "--operator") != 0)
    return cli_fail(CLI_EXIT_USAGE, "%s: %s: %s", cmd, src, err);
  return cli_fail(CLI_EXIT_USAGE, "%s: --%s", cmd, err);
}

/* retry ID / resolve ID: refused unless saga_index shows the saga parked
 * in compensation_failed; --dry-run stops after that check (no Kafka
 * needed), --yes changes nothing (one id is never confirmed). */
static int operator_action(const cli_args_t *a, const cli_settings_t *s,
                           cli_action_t action,
                           Saga__V1__OperatorActionKind kind) {
  const char *cmd = action == CLI_ACT_RETRY ? "retry" : "resolve";
  int dry_run = a->opt[CLI_OPT_DRY_RUN] != NULL;
  if (a->npos != 1)
    return cli_fail(CLI_EXIT_USAGE, "%s: expected one saga id, got %zu "
                                    "arguments",
                    cmd, a->npos);
  const char *id = a->pos[0];
  int rc = cli_single_check(a, cmd);
  if (rc != CLI_EXIT_OK ||
      (rc = cli_action_text_check(s, action, cmd, a->opt[CLI_OPT_REASON])) !=
          CLI_EXIT_OK)
    return rc;
  if (!dry_run && cli_get(s, CLI_SET_KAFKA) == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "no Kafka configured: give --kafka BOOTSTRAP, "
                    "SAGA_KAFKA_BOOTSTRAP or \"kafka = ...\" in the config "
                    "file");
  cli_index_row_t row;
  rc = cli_db_fetch(s, id, &row);
  if (rc != CLI_EXIT_OK)
    return rc;
  char why[300];
  if (cli_action_refusal(action, row.status, why, sizeof why) != NULL)
    rc = cli_fail(CLI_EXIT_FAIL, "%s refused: saga \"%s\" is %s", cmd, id,
                  why);
  else if (dry_run)
    printf("dry run: %s would be sent for saga %s (%s); nothing was sent\n",
           cmd, id, row.status);
  cli_index_row_clear(&row);
  if (rc != CLI_EXIT_OK || dry_run)
    return rc;

  cli_send_t it = {.saga_id = id};
  rc = cli_operator_send(s, (int)kind, a->opt[CLI_OPT_REASON], &it, 1);
  if (rc != CLI_EXIT_OK)
    return rc;
  if (it.rc == CLI_EXIT_USAGE)
    return cli_fail(it.rc, "%s: %s", cmd, it.why);
  if (it.rc != CLI_EXIT_OK)
    return cli_fail(it.rc, "%s", it.why);
  printf("%s sent for saga %s (the coordinator applies it; check with "
         "'sagactl status %s')\n",
         cmd, id, id);
  return CLI_EXIT_OK;
}

int cli_cmd_retry(const cli_args_t *a, const cli_settings_t *s) {
  if (cli_bulk_wanted(a))
    return cli_bulk_run(a, s, CLI_ACT_RETRY);
  return operator_action(
      a, s, CLI_ACT_RETRY,
      SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY);
}

int cli_cmd_resolve(const cli_args_t *a, const cli_settings_t *s) {
  if (cli_bulk_wanted(a))
    return cli_bulk_run(a, s, CLI_ACT_RESOLVE);
  return operator_action(
      a, s, CLI_ACT_RESOLVE,
      SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RESOLVE);
}
