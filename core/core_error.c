/* Text for the core's error codes, generated from SAGA_CORE_ERR_MAP. */
#include "core_error.h"

const char *saga_core_strerror(int err) {
  switch (err) {
#define SAGA_CORE_ERR_TEXT(name, val, text)                                    \
  case (val):                                                                  \
    return text;
    SAGA_CORE_ERR_MAP(SAGA_CORE_ERR_TEXT)
#undef SAGA_CORE_ERR_TEXT
  default:
    return "unknown error";
  }
}

const char *saga_core_err_name(int err) {
  switch (err) {
#define SAGA_CORE_ERR_NAME(name, val, text)                                    \
  case (val):                                                                  \
    return #name;
    SAGA_CORE_ERR_MAP(SAGA_CORE_ERR_NAME)
#undef SAGA_CORE_ERR_NAME
  default:
    return "UNKNOWN";
  }
}
