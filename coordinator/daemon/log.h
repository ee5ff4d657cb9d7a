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

/* Order matches the log.level values in config.c. */
typedef enum {
  SAGAD_LOG_ERROR = 0,
  SAGAD_LOG_WARN = 1,
  SAGAD_LOG_INFO = 2,
  SAGAD_LOG_DEBUG = 3,
} sagad_log_level_t;

/* Longest record written; longer messages are cut and end with "...". */
#define SAGAD_LOG_LINE_MAX 4096

/* Current threshold; read by the macros. Change it with sagad_log_setup(). */
extern sagad_log_level_t sagad_log__threshold;

/* Set the threshold, the format (AUTO resolves to TEXT when fd is a
 * terminal, JSON otherwise), whether lines start with a timestamp, and the
 * output fd (normally 2; not owned). Call before the loop starts. */
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
 * escapes in JSON (invalid UTF-8 becomes U+FFFD), \n \t \xNN in text, where
 * a saga or step value holding spaces or quotes is double-quoted. Returns
 * the length written. Pure: used by sagad_log__write and by tests. */
size_t sagad_log_format_record(char *buf, size_t cap,
                               sagad_log_format_t format, int64_t unix_ms,
                               sagad_log_level_t level, const char *saga,
                               const char *step, const char *msg);

/* Format the record with the current settings and write it; use the macros
 * below instead, which skip the call below the threshold. */
void sagad_log__write(sagad_log_level_t level, const char *saga,
                      const char *step, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define SAGAD_LOG_AT(level, saga, step, ...)                                   \
  do {                                                                         \
    if ((level) <= sagad_log__threshold)                                       \
      sagad_log__write((level), (saga), (step), __VA_ARGS__);                  \
  } while (0)

/* Records not about one saga. */
#define LOG_ERROR(...) SAGAD_LOG_AT(SAGAD_LOG_ERROR, NULL, NULL, __VA_ARGS__)
#define LOG_WARN(...) SAGAD_LOG_AT(SAGAD_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define LOG_INFO(...) SAGAD_LOG_AT(SAGAD_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define LOG_DEBUG(...) SAGAD_LOG_AT(SAGAD_LOG_DEBUG, NULL, NULL, __VA_ARGS__)

/* Records about a saga: saga id and step name (step may be NULL). */
#define SLOG_ERROR(saga, step, ...)                                            \
  SAGAD_LOG_AT(SAGAD_LOG_ERROR, saga, step, __VA_ARGS__)
#define SLOG_WARN(saga, step, ...)                                             \
  SAGAD_LOG_AT(SAGAD_LOG_WARN, saga, step, __VA_ARGS__)
#define SLOG_INFO(saga, step, ...)                                             \
  SAGAD_LOG_AT(SAGAD_LOG_INFO, saga, step, __VA_ARGS__)
#define SLOG_DEBUG(saga, step, ...)                                            \
  SAGAD_LOG_AT(SAGAD_LOG_DEBUG, saga, step, __VA_ARGS__)

#endif
