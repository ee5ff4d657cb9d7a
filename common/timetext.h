/* Times and durations as text (target saga_common): RFC 3339 timestamps
 * for logs, the admin API and sagactl, and the one duration syntax of every
 * program (sagad's config, sagactl, the example starter). Pure functions,
 * no allocation; any thread. Internal: not a public header. */
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

/* Parse an RFC 3339 timestamp, "2025-01-31T12:00:00Z",
 * "2025-01-31T12:00:00.250+02:00" (a 't' or ' ' for the 'T', a 'z' for
 * the 'Z' accepted; fractions past milliseconds are cut), into *unix_ms
 * (unchanged on error). A date alone or a time without a zone is refused:
 * the zone must be said. Years 0000..9999. Returns 0 or -1. */
int saga__rfc3339_parse(const char *text, int64_t *unix_ms);

/* The duration syntax: one or more <digits><unit>, no blanks or signs, with
 * the units ms, s, m (minutes), h and d (days): "250ms", "30s", "1h30m",
 * "2d". A bare number is refused: it has no unit. */
#define SAGA_DURATION_UNITS "ms, s, m, h or d"

/* What saga__duration_parse returns. */
enum {
  SAGA_DURATION_OK = 0,
  SAGA_DURATION_ENOUNIT = -1, /* a bare number */
  SAGA_DURATION_EINVAL = -2,  /* empty, unknown unit, sign, overflow */
};

/* Parse text (the syntax above) into *ms (unchanged on error). Returns
 * SAGA_DURATION_OK, SAGA_DURATION_ENOUNIT or SAGA_DURATION_EINVAL. */
int saga__duration_parse(const char *text, int64_t *ms);

/* Why text is not a duration, for an error message, into buf: "\"500\" has
 * no unit: use ms, s, m, h or d (e.g. 500ms, 30s, 1h30m)" or "\"5x\" is not a
 * duration: ...". Returns buf. */
char *saga__duration_explain(const char *text, char *buf, size_t len);

/* ms in the duration syntax, exact, largest units first: "0ms", "250ms",
 * "10s", "1h30m", "1d2h3m4s5ms" (a negative value gets a '-' in front,
 * which the parser refuses). Fits in 32 bytes. Returns buf. */
char *saga__duration_format(char *buf, size_t len, int64_t ms);

#endif
