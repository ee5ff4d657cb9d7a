/* Internal to the client library: the text a participant or starter keeps
 * for its last_error when the Kafka client itself reports a failure (the
 * error callback: brokers down, a fatal error; a failed offset commit), in
 * librdkafka's words and naming which part said it. Pure formatting; the
 * caller decides what it counts. */
#ifndef SAGA_CLIENT_KAFKA_ERRTEXT_H
#define SAGA_CLIENT_KAFKA_ERRTEXT_H

#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "kafka_loop.h"

/* From inside on_error: "kafka: [fatal error: ]<code's text>[: <reason>]
 * (consumer|producer)" into buf; the reason is left out when it only
 * repeats the code's text. */
static inline void saga__kafka_error_text(char *buf, size_t len,
                                          saga_kloop_t *kl,
                                          rd_kafka_resp_err_t err, int fatal,
                                          const char *reason) {
  const char *code = rd_kafka_err2str(err);
  int more = reason && *reason && strcmp(reason, code) != 0;
  rd_kafka_t *rk = saga_kloop_error_handle(kl);
  snprintf(buf, len, "kafka: %s%s%s%s (%s)", fatal ? "fatal error: " : "", code,
           more ? ": " : "", more ? reason : "",
           rk && rk == saga_kloop_producer(kl) ? "producer" : "consumer");
}

/* From inside on_commit: 1 with "kafka: <code's text>[: "<topic>"
 * [<partition>]] (offset commit)" in buf when the commit failed as a whole
 * or for a partition, 0 when it did not (nothing to commit is no failure). */
static inline int
saga__kafka_commit_text(char *buf, size_t len, rd_kafka_resp_err_t err,
                        const rd_kafka_topic_partition_list_t *offsets) {
  const rd_kafka_topic_partition_t *bad = NULL;
  for (int i = 0; offsets && i < offsets->cnt && !bad; i++)
    if (offsets->elems[i].err)
      bad = &offsets->elems[i];
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET || (!err && !bad))
    return 0;
  if (bad)
    snprintf(buf, len, "kafka: %s: \"%s\" [%d] (offset commit)",
             rd_kafka_err2str(bad->err), bad->topic, (int)bad->partition);
  else
    snprintf(buf, len, "kafka: %s (offset commit)", rd_kafka_err2str(err));
  return 1;
}

#endif
