/* The wire codec (wire.h) on librdkafka's header lists: the client
 * library, sagactl and sagad's Kafka port (coordinator/io/broker_kafka.c)
 * encode into and decode from rd_kafka_headers_t through here, while the
 * codec itself stays free of the broker library (target saga_wire_kafka,
 * linking saga_wire and librdkafka). Pure functions: no I/O, no logging. */
#ifndef SAGA_WIRE_KAFKA_H
#define SAGA_WIRE_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "wire.h"

/* A read view of a librdkafka header list (NULL: an empty view), for
 * saga__wire_unpack and the coordinator's inbox messages: no copy, no
 * allocation. hdrs must outlive the view. */
saga__hdr_view_t saga__kafka_hdr_view(const rd_kafka_headers_t *hdrs);

/* A new librdkafka header list holding copies of h's headers, in order
 * (rd_kafka_headers_destroy, or hand it to a produce call). NULL when out
 * of memory. */
rd_kafka_headers_t *saga__kafka_hdrs(const saga__hdrs_t *h);

/* saga__wire_pack with the headers as a new librdkafka list (*out_hdrs;
 * rd_kafka_headers_destroy, or hand it to a produce call). Same returns. */
int saga__wire_encode(const ProtobufCMessage *msg, const saga_meta_t *meta,
                      size_t max_bytes, void **out, size_t *out_len,
                      rd_kafka_headers_t **out_hdrs, char *errbuf,
                      size_t errlen);

/* saga__wire_unpack over a librdkafka header list (NULL: none, then
 * SAGA_ETYPE). Same returns. */
int saga__wire_decode(const ProtobufCMessageDescriptor *want,
                      const void *value, size_t len,
                      const rd_kafka_headers_t *hdrs, size_t max_bytes,
                      ProtobufCMessage **out, saga__wire_meta_t *meta,
                      char *errbuf, size_t errlen);

/* saga__wire_type_in over a librdkafka header list (may be NULL). */
const ProtobufCMessageDescriptor *
saga__wire_type_of(const rd_kafka_headers_t *hdrs);

/* Append a text header; nothing when value is NULL or "". 0 or
 * SAGA_ENOMEM. */
int saga__hdr_add(rd_kafka_headers_t *h, const char *name, const char *value);

#endif
