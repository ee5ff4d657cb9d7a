/* The log port (log_sink.h): the threshold, the installed sink, and the
 * formatting of a record's message into a bounded stack buffer. */
#include "log_sink.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

sagad_log_level_t sagad_log__threshold = SAGAD_LOG_INFO;

static sagad_log_sink_t sink;

void sagad_log_set_sink(const sagad_log_sink_t *s,
                        sagad_log_level_t threshold) {
  sink = s ? *s : (sagad_log_sink_t){0};
  sagad_log__threshold = threshold;
}

int sagad_log_wanted(sagad_log_level_t level, int component) {
  if (component < (int)SAGAD_LOG_ERROR || component > (int)SAGAD_LOG_DEBUG)
    return level <= sagad_log__threshold;
  return (int)level <= component;
}

void sagad_log__write(sagad_log_level_t level, const char *saga,
                      const char *step, const char *fmt, ...) {
  if (!sink.write)
    return;
  char msg[SAGAD_LOG_LINE_MAX];
  int saved = errno; /* callers often log right before reading errno */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sink.write(sink.arg, level, saga, step, msg);
  errno = saved;
}
