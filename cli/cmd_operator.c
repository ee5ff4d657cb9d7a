/* retry and resolve: an OperatorAction for a saga parked in
 * compensation_failed, produced to the coordinator's inbox keyed by the
 * saga id (docs/protocol.md). The saga's status is checked in saga_index
 * first, so an action for a saga that is not parked is refused here with
 * its status rather than silently counted by the coordinator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cli_cmds.h"
#include "cli_db.h"

#include "wire_kafka.h"

typedef struct {
  int done;
  rd_kafka_resp_err_t err;
} delivery_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
  (void)rk;
  (void)opaque;
  delivery_t *d = m->_private;
  d->done = 1;
  d->err = m->err;
}

/* Produce value to topic with key and headers; waits at most timeout_ms
 * for the acknowledgement. Returns an exit code (line printed). */
static int produce(const cli_settings_t *s, const char *topic,
                   const char *key, const void *value, size_t len,
                   rd_kafka_headers_t *hdrs) {
  char err[512], tmo[32];
  const char *bootstrap = cli_get(s, CLI_SET_KAFKA);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  snprintf(tmo, sizeof tmo, "%lld", (long long)s->timeout_ms);
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err,
                        sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "message.timeout.ms", tmo, err, sizeof err) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "enable.idempotence", "true", err,
                        sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    rd_kafka_headers_destroy(hdrs);
    return cli_fail(CLI_EXIT_USAGE, "kafka configuration: %s", err);
  }
  for (size_t i = 0; i < s->n_kafka_props; i++) {
    if (rd_kafka_conf_set(conf, s->kafka_props[2 * i],
                          s->kafka_props[2 * i + 1], err,
                          sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      rd_kafka_headers_destroy(hdrs);
      return cli_fail(CLI_EXIT_USAGE, "kafka.%s: %s", s->kafka_props[2 * i],
                      err);
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == NULL) {
    rd_kafka_conf_destroy(conf);
    rd_kafka_headers_destroy(hdrs);
    return cli_fail(CLI_EXIT_USAGE, "could not create a Kafka producer: %s",
                    err);
  }
  delivery_t d = {0};
  rd_kafka_resp_err_t e = rd_kafka_producev(
      rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
      RD_KAFKA_V_VALUE((void *)(uintptr_t)value, len),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
      RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
  int rc = CLI_EXIT_OK;
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_headers_destroy(hdrs);
    rc = cli_fail(CLI_EXIT_FAIL, "could not produce to \"%s\": %s", topic,
                  rd_kafka_err2str(e));
  } else {
    /* message.timeout.ms bounds the delivery; the flush bound is a net. */
    rd_kafka_flush(rk, (int)s->timeout_ms + 1000);
    if (!d.done)
      rc = cli_fail(CLI_EXIT_UNREACHABLE,
                    "no acknowledgement from Kafka at %s for topic \"%s\"",
                    bootstrap, topic);
    else if (d.err != RD_KAFKA_RESP_ERR_NO_ERROR)
      rc = cli_fail(d.err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ||
                            d.err == RD_KAFKA_RESP_ERR__TRANSPORT ||
                            d.err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
                        ? CLI_EXIT_UNREACHABLE
                        : CLI_EXIT_FAIL,
                    "could not deliver to topic \"%s\" at %s: %s", topic,
                    bootstrap, rd_kafka_err2str(d.err));
  }
  rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_destroy(rk);
  return rc;
}

static int operator_action(const cli_args_t *a, const cli_settings_t *s,
                           const char *cmd, Saga__V1__OperatorActionKind kind) {
  if (a->npos != 1)
    return cli_fail(CLI_EXIT_USAGE, "%s: expected one saga id, got %zu "
                                    "arguments",
                    cmd, a->npos);
  const char *id = a->pos[0];
  if (cli_get(s, CLI_SET_KAFKA) == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "no Kafka configured: give --kafka BOOTSTRAP, "
                    "SAGA_KAFKA_BOOTSTRAP or \"kafka = ...\" in the config "
                    "file");
  cli_index_row_t row;
  int rc = cli_db_fetch(s, id, &row);
  if (rc != CLI_EXIT_OK)
    return rc;
  if (strcmp(row.status, "compensation_failed") != 0) {
    rc = cli_fail(CLI_EXIT_FAIL,
                  "%s refused: saga \"%s\" is %s, not parked in "
                  "compensation_failed",
                  cmd, id, row.status);
    cli_index_row_clear(&row);
    return rc;
  }
  cli_index_row_clear(&row);

  /* saga__wire_encode checks the message as the coordinator's decode does
   * (id form, UTF-8, ceilings) and writes the headers docs/protocol.md
   * names, so a bad --reason or --operator is refused here. */
  Saga__V1__OperatorAction msg;
  saga__v1__operator_action__init(&msg);
  msg.saga_id = SAGA_MUT(id);
  msg.action = kind;
  msg.reason = SAGA_MUT(a->opt[CLI_OPT_REASON] != NULL
                            ? a->opt[CLI_OPT_REASON]
                            : "");
  msg.operator_ = SAGA_MUT(cli_get(s, CLI_SET_OPERATOR));
  saga_meta_t meta = {.saga_id = id, .correlation_id = id};
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  char err[512];
  int wrc = saga__wire_encode(&msg.base, &meta, 0, &buf, &len, &h, err,
                              sizeof err);
  if (wrc == SAGA_ENOMEM)
    return cli_fail(CLI_EXIT_FAIL, "out of memory");
  if (wrc != 0)
    return cli_fail(CLI_EXIT_USAGE, "%s: %s", cmd, err);
  rc = produce(s, cli_get(s, CLI_SET_INBOX), id, buf, len, h);
  free(buf);
  if (rc == CLI_EXIT_OK)
    printf("%s sent for saga %s (the coordinator applies it; check with "
           "'sagactl status %s')\n",
           cmd, id, id);
  return rc;
}

int cli_cmd_retry(const cli_args_t *a, const cli_settings_t *s) {
  return operator_action(a, s, "retry", SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY);
}

int cli_cmd_resolve(const cli_args_t *a, const cli_settings_t *s) {
  return operator_action(a, s, "resolve", SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RESOLVE);
}
