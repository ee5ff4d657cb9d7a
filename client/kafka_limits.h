/* Internal to the client library: Kafka's own limits, checked when the
 * caller hands a value over rather than found out later out of sight:
 * whether a message fits the producer's ceiling
 * (librdkafka's message.max.bytes, 1000000 by default, below the
 * library's default max_message_bytes of 1 MiB): the participant asks
 * before it records a reply it could never send, the starter to answer
 * SAGA_ETOOBIG rather than SAGA_EKAFKA. (A topic name is checked by
 * saga__kafka_topic_ok, common/text.h.) Pure functions; no I/O. */
#ifndef SAGA_CLIENT_KAFKA_LIMITS_H
#define SAGA_CLIENT_KAFKA_LIMITS_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

/* The producer's message.max.bytes, or 0 when it cannot be read (then
 * nothing is refused here and librdkafka judges). */
static inline size_t saga__producer_max_bytes(rd_kafka_t *rk) {
  char v[32];
  size_t n = sizeof v;
  if (!rk || rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", v,
                               &n) != RD_KAFKA_CONF_OK)
    return 0;
  long long max = atoll(v);
  return max > 0 ? (size_t)max : 0;
}

/* Whether a record of this key, value and headers is within `max`
 * (saga__producer_max_bytes; 0 = no limit known). Counts as librdkafka
 * does (record overhead, key, value, each header's name and value) with
 * every varint at its largest, so it never passes what librdkafka
 * refuses, and refuses at most a few dozen bytes early. */
static inline int saga__producer_fits(size_t max, size_t key_len,
                                      size_t value_len,
                                      const rd_kafka_headers_t *h) {
  if (!max)
    return 1;
  /* length, attributes, timestamp, offset, key, value, header count */
  size_t size = 5 + 1 + 10 + 5 + 5 + 5 + 5 + key_len + value_len;
  const char *name;
  const void *val;
  size_t len;
  for (size_t i = 0;
       h && rd_kafka_header_get_all(h, i, &name, &val, &len) ==
                RD_KAFKA_RESP_ERR_NO_ERROR;
       i++)
    size += 5 + strlen(name) + 5 + len;
  return size <= max;
}

#endif
