/* The error map: es_strerror, es_err_name and the retry predicate, all
 * generated from ES_ERRNO_MAP so codes and texts never drift apart. */
#include "es_internal.h"

const char *es_strerror(int err) {
  switch (err) {
#define ES_MSG_(name, value, msg)                                             \
  case (value):                                                              \
    return msg;
    ES_ERRNO_MAP(ES_MSG_)
#undef ES_MSG_
  default:
    return "unknown error";
  }
}

const char *es_err_name(int err) {
  switch (err) {
#define ES_NAME_(name, value, msg)                                            \
  case (value):                                                              \
    return #name;
    ES_ERRNO_MAP(ES_NAME_)
#undef ES_NAME_
  default:
    return "UNKNOWN";
  }
}

int es_err_is_retriable(int err) {
  return err == ES_ERR_CONNECTION || err == ES_ERR_BATCH_ABORTED ||
         err == ES_ERR_RETRY;
}
