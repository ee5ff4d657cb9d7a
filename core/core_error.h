/* Error codes of the coordinator's pure core (definitions, state machine,
 * event codec). One X-macro makes the enum, saga_core_strerror and
 * saga_core_err_name. 0 = OK, negative = failure; values are never reused. */
#ifndef SAGA_CORE_ERROR_H
#define SAGA_CORE_ERROR_H

#define SAGA_CORE_ERR_MAP(X)                                                \
  X(OK, 0, "success")                                                       \
  X(EINVAL, -1, "invalid argument")                                         \
  X(ENOMEM, -2, "out of memory")                                            \
  X(EDEF, -3, "invalid saga definition")                                    \
  X(EDUP, -4, "definition version already loaded")                         \
  X(EIO, -5, "could not read definition")                                   \
  X(EDECODE, -6, "malformed saga event record")                             \
  X(ETOOBIG, -7, "buffer too small")                                        \
  X(EREPLAY, -8, "event does not fit the saga state")                      \
  X(EUNKNOWNDEF, -9, "saga definition not loaded")

typedef enum {
#define SAGA_CORE_ERR_ENUM(name, val, text) SAGA_CORE_##name = (val),
  SAGA_CORE_ERR_MAP(SAGA_CORE_ERR_ENUM)
#undef SAGA_CORE_ERR_ENUM
} saga_core_err_t;

/* Human text for an error code; "unknown error" for a value not in the map.
 * Never NULL, static storage. Any thread. */
const char *saga_core_strerror(int err);

/* The code's name without prefix ("EDEF"); "UNKNOWN" for a value not in the
 * map. Never NULL, static storage. Any thread. */
const char *saga_core_err_name(int err);

#endif
