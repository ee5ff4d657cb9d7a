/* wire.h's header types to and from librdkafka's (see wire_kafka.h). */
#include "wire_kafka.h"

#include <stdlib.h>

static int kafka_at(const void *src, size_t i, saga__hdr_t *out) {
  const void *v = NULL;
  size_t n = 0;
  const char *name = NULL;
  if (rd_kafka_header_get_all(src, i, &name, &v, &n) !=
      RD_KAFKA_RESP_ERR_NO_ERROR)
    return -1;
  *out = (saga__hdr_t){.name = name, .value = v, .len = v ? n : 0};
  return 0;
}

saga__hdr_view_t saga__kafka_hdr_view(const rd_kafka_headers_t *hdrs) {
  return (saga__hdr_view_t){.src = hdrs, .at = hdrs ? kafka_at : NULL};
}

rd_kafka_headers_t *saga__kafka_hdrs(const saga__hdrs_t *h) {
  rd_kafka_headers_t *k = rd_kafka_headers_new(h->n ? h->n : 1);
  if (!k)
    return NULL;
  const saga__hdr_t *v = saga__hdrs_items(h);
  for (size_t i = 0; i < h->n; i++)
    if (rd_kafka_header_add(k, v[i].name, -1, v[i].value,
                            v[i].value ? (ssize_t)v[i].len : 0) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_destroy(k);
      return NULL;
    }
  return k;
}

int saga__wire_encode(const ProtobufCMessage *msg, const saga_meta_t *meta,
                      size_t max_bytes, void **out, size_t *out_len,
                      rd_kafka_headers_t **out_hdrs, char *errbuf,
                      size_t errlen) {
  if (!out_hdrs)
    return saga__errf(SAGA_EINVAL, errbuf, errlen,
                      "invalid argument to encode");
  saga__hdrs_t h;
  int rc = saga__wire_pack(msg, meta, max_bytes, out, out_len, &h, errbuf,
                           errlen);
  if (rc)
    return rc;
  *out_hdrs = saga__kafka_hdrs(&h);
  saga__hdrs_free(&h);
  if (!*out_hdrs) {
    free(*out);
    *out = NULL;
    return saga__errf(SAGA_ENOMEM, errbuf, errlen,
                      "out of memory encoding %s", msg->descriptor->name);
  }
  return 0;
}

int saga__wire_decode(const ProtobufCMessageDescriptor *want,
                      const void *value, size_t len,
                      const rd_kafka_headers_t *hdrs, size_t max_bytes,
                      ProtobufCMessage **out, saga__wire_meta_t *meta,
                      char *errbuf, size_t errlen) {
  saga__hdr_view_t v = saga__kafka_hdr_view(hdrs);
  return saga__wire_unpack(want, value, len, &v, max_bytes, out, meta, errbuf,
                           errlen);
}

const ProtobufCMessageDescriptor *
saga__wire_type_of(const rd_kafka_headers_t *hdrs) {
  saga__hdr_view_t v = saga__kafka_hdr_view(hdrs);
  return saga__wire_type_in(&v);
}

int saga__hdr_add(rd_kafka_headers_t *h, const char *name, const char *value) {
  if (!value || !*value)
    return 0;
  return rd_kafka_header_add(h, name, -1, value, -1) ? SAGA_ENOMEM : 0;
}
