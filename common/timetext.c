/* Times and durations as text (see timetext.h). */
#include "timetext.h"

#include <stdio.h>
#include <time.h>

char *saga__rfc3339_ms(char *buf, size_t len, int64_t unix_ms) {
  if (len == 0)
    return buf;
  int64_t ms = unix_ms % 1000, secs = unix_ms / 1000;
  if (ms < 0) { /* floor: -1 ms is 23:59:59.999 of 1969-12-31 */
    ms += 1000;
    secs--;
  }
  time_t t = (time_t)secs;
  struct tm tm;
  if (!gmtime_r(&t, &tm)) {
    buf[0] = '\0';
    return buf;
  }
  snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)ms);
  return buf;
}
