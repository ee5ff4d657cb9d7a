/* Times and durations as text (target saga_common): RFC 3339 timestamps
 * for logs, the admin API and sagactl. Pure functions, no allocation; any
 * thread. Internal: not a public header. */
#ifndef SAGA_COMMON_TIMETEXT_H
#define SAGA_COMMON_TIMETEXT_H

#include <stddef.h>
#include <stdint.h>

/* "2025-01-31T12:00:00.250Z": 24 characters and the NUL, for the years
 * 0000 to 9999. */
#define SAGA_RFC3339_MS_SIZE 25

/* unix_ms (milliseconds since the Unix epoch; before 1970 when negative)
 * as an RFC 3339 UTC timestamp with milliseconds, "YYYY-MM-DDTHH:MM:SS.mmmZ",
 * into buf of len bytes (cut short, still NUL-terminated, when len is
 * under SAGA_RFC3339_MS_SIZE). Returns buf. */
char *saga__rfc3339_ms(char *buf, size_t len, int64_t unix_ms);

#endif
