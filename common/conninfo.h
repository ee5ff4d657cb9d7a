/* Checks of libpq connection settings that libpq itself makes only when it
 * connects (PQconninfoParse takes any text as a value), so that sagad's
 * --check-config and sagactl can refuse them up front. Pure: no libpq, no
 * I/O. Internal: not a public header. */
#ifndef SAGA_COMMON_CONNINFO_H
#define SAGA_COMMON_CONNINFO_H

#include <stddef.h>

/* Check the value val of connection keyword key: sslmode, gssencmode,
 * channel_binding and target_session_attrs must be one of libpq's words,
 * port a comma-separated list of items each empty or 1..65535, and
 * libpq's integer options (connect_timeout, keepalives...) whole numbers.
 * Other keywords pass. Returns 0, or -1 with libpq's own sentence for it
 * in why (e.g. `invalid sslmode value: "bogus"`). Any thread. */
int saga__conninfo_value_check(const char *key, const char *val, char *why,
                               size_t len);

#endif
