/* The log port: the engine (and everything else in sagad) logs records of
 * a level, an optional saga id and step, and a message through one sink
 * that the program installs -- the daemon's writer (daemon/log.h: text or
 * JSON lines on stderr), the simulator's trace. Nothing here formats a
 * line or touches a file: no configuration, no I/O library. The macros
 * skip all formatting below the threshold; a message is formatted into a
 * bounded stack buffer, so logging never allocates. Records before a sink
 * is installed are dropped. Loop thread only (one sink per process). */
#ifndef SAGAD_LOG_SINK_H
#define SAGAD_LOG_SINK_H

/* Order matches the log.level values in daemon/config.c. */
typedef enum {
  SAGAD_LOG_ERROR = 0,
  SAGAD_LOG_WARN = 1,
  SAGAD_LOG_INFO = 2,
  SAGAD_LOG_DEBUG = 3,
} sagad_log_level_t;

/* A component's own threshold (log.level.kafka) when it has none: the
 * global one. Follows the levels in log.level.<component>'s values. */
#define SAGAD_LOG_INHERIT 4

/* Whether a record of `level` from a component whose own threshold is
 * `component` (a sagad_log_level_t, or SAGAD_LOG_INHERIT) is written. A
 * component threshold decides alone, above or below the global one: its
 * records are written with sagad_log__write, not the macros. */
int sagad_log_wanted(sagad_log_level_t level, int component);

/* Longest message; longer ones are cut. */
#define SAGAD_LOG_LINE_MAX 4096

/* Where records go: write(arg, level, saga, step, msg) with saga and step
 * NULL when the record is not about one, msg NUL-terminated. Must not
 * log. */
typedef struct sagad_log_sink {
  void *arg;
  void (*write)(void *arg, sagad_log_level_t level, const char *saga,
                const char *step, const char *msg);
} sagad_log_sink_t;

/* Current threshold; read by the macros. Set with sagad_log_set_sink(). */
extern sagad_log_level_t sagad_log__threshold;

/* Install the sink (copied; NULL drops every record) and the threshold:
 * records above it are skipped before any formatting. */
void sagad_log_set_sink(const sagad_log_sink_t *sink,
                        sagad_log_level_t threshold);

/* Format the message and hand the record to the sink; use the macros
 * below instead, which skip the call below the threshold. errno is kept. */
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
