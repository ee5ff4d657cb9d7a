/* The client library's error map and wire enum names (saga/client.h). */
#include "saga/client.h"

const char *saga_strerror(int err) {
  switch (err) {
#define SAGA_ERR_TEXT_(name, value, text)                                      \
  case value:                                                                  \
    return text;
    SAGA_ERRNO_MAP(SAGA_ERR_TEXT_)
#undef SAGA_ERR_TEXT_
  default:
    return "unknown error";
  }
}

const char *saga_err_name(int err) {
  switch (err) {
#define SAGA_ERR_NAME_(name, value, text)                                      \
  case value:                                                                  \
    return "SAGA_" #name;
    SAGA_ERRNO_MAP(SAGA_ERR_NAME_)
#undef SAGA_ERR_NAME_
  default:
    return "SAGA_EUNKNOWN";
  }
}

const char *saga_action_name(int action) {
  switch (action) {
  case SAGA_ACTION_DO:
    return "DO";
  case SAGA_ACTION_COMPENSATE:
    return "COMPENSATE";
  default:
    return "?";
  }
}

const char *saga_outcome_name(int outcome) {
  switch (outcome) {
  case SAGA_OUTCOME_SUCCESS:
    return "SUCCESS";
  case SAGA_OUTCOME_FAILURE:
    return "FAILURE";
  case SAGA_OUTCOME_RETRYABLE:
    return "RETRYABLE";
  default:
    return "?";
  }
}

const char *saga_notification_kind_name(int kind) {
  switch (kind) {
  case SAGA_NOTIFY_STARTED:
    return "STARTED";
  case SAGA_NOTIFY_STEP_DONE:
    return "STEP_DONE";
  case SAGA_NOTIFY_COMPLETED:
    return "COMPLETED";
  case SAGA_NOTIFY_COMPENSATED:
    return "COMPENSATED";
  case SAGA_NOTIFY_COMPENSATION_FAILED:
    return "COMPENSATION_FAILED";
  case SAGA_NOTIFY_REJECTED:
    return "REJECTED";
  case SAGA_NOTIFY_CANCEL_REFUSED:
    return "CANCEL_REFUSED";
  default:
    return "?";
  }
}

int saga_notification_is_outcome(int kind) {
  return kind == SAGA_NOTIFY_COMPLETED || kind == SAGA_NOTIFY_COMPENSATED ||
         kind == SAGA_NOTIFY_COMPENSATION_FAILED ||
         kind == SAGA_NOTIFY_REJECTED;
}
