/* sagad logging: one line per record on stderr, as text for people or JSON
 * lines for machines. Records about a saga carry its id and step. The
 * macros skip all formatting below the threshold; a record is formatted into
 * a bounded stack buffer and written with one write(2), so logging never
 * allocates, takes no lock and blocks on nothing but the output fd. Only the
 * daemon logs: libraries return codes. Call from the loop thread (librdkafka
 * logs are forwarded to it, see style.md). */
#ifndef SAGAD_LOG_H
#define SAGAD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log_sink.h"

/* The daemon's writer behind the log port (engine/log_sink.h: levels,
 * LOG_* and SLOG_* macros), which every sagad file logs through. */

/* Install the writer as the log sink with this threshold, the format
 * (AUTO resolves to TEXT when fd is a terminal, JSON otherwise), whether
 * lines start with a timestamp, and the output fd (normally 2; not owned).
 * Call before the loop starts; records logged earlier are dropped. */
void sagad_log_setup(sagad_log_level_t level, sagad_log_format_t format,
                     bool timestamps, int fd);

/* sagad_log_setup() from log.level, log.format and log.timestamps. */
void sagad_log_setup_from_config(const sagad_config_t *cfg, int fd);

/* The format in use after sagad_log_setup() (TEXT or JSON). */
sagad_log_format_t sagad_log_format_in_use(void);

/* Map a syslog level (0 emerg .. 7 debug, as librdkafka's log callback
 * gives) to a sagad level. */
sagad_log_level_t sagad_log_level_from_syslog(int syslog_level);

/* The name of a level ("error", "warn", "info", "debug"). */
const char *sagad_log_level_name(sagad_log_level_t level);

/* Format one record into buf (cap bytes, NUL-terminated, ends with '\n').
 * unix_ms < 0 leaves the timestamp out. saga and step may be NULL. Control
 * characters and quotes are escaped so a record stays one line: JSON string
 * escapes in JSON (invalid UTF-8 becomes U+FFFD); in text a line break or
 * tab with the blanks around it becomes one space (none at the ends), other
 * control characters \xNN, and a saga or step value holding spaces or
 * quotes is double-quoted. Returns
 * the length written. Pure: used by the writer and by tests. */
size_t sagad_log_format_record(char *buf, size_t cap,
                               sagad_log_format_t format, int64_t unix_ms,
                               sagad_log_level_t level, const char *saga,
                               const char *step, const char *msg);

#endif
