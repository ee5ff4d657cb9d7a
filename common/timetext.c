/* Times and durations as text (see timetext.h). */
#include "timetext.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
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

/* Exactly n digits at *p (advanced); -1 when not. */
static int digits(const char **p, int n) {
  int v = 0;
  for (int i = 0; i < n; i++, (*p)++) {
    if (**p < '0' || **p > '9')
      return -1;
    v = v * 10 + (**p - '0');
  }
  return v;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int saga__rfc3339_parse(const char *text, int64_t *unix_ms) {
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (!text)
    return -1;
  const char *p = text;
  int y = digits(&p, 4);
  if (y < 0 || *p++ != '-')
    return -1;
  int mo = digits(&p, 2);
  if (mo < 1 || mo > 12 || *p++ != '-')
    return -1;
  int d = digits(&p, 2);
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
    return -1;
  if (*p != 'T' && *p != 't' && *p != ' ')
    return -1;
  p++;
  int h = digits(&p, 2);
  if (h < 0 || h > 23 || *p++ != ':')
    return -1;
  int mi = digits(&p, 2);
  if (mi < 0 || mi > 59 || *p++ != ':')
    return -1;
  int s = digits(&p, 2);
  if (s < 0 || s > 60) /* 60: a leap second, counted as the next one */
    return -1;
  int ms = 0;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9')
      return -1;
    for (int scale = 100; *p >= '0' && *p <= '9'; p++, scale /= 10)
      ms += (*p - '0') * scale;
  }
  int offset_min = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1;
    int oh = digits(&p, 2);
    if (oh < 0 || oh > 23 || *p++ != ':')
      return -1;
    int om = digits(&p, 2);
    if (om < 0 || om > 59)
      return -1;
    offset_min = sign * (oh * 60 + om);
  } else {
    return -1;
  }
  if (*p)
    return -1;
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s -
                 (int64_t)offset_min * 60;
  *unix_ms = secs * 1000 + ms;
  return 0;
}

static const struct {
  const char *name;
  int64_t ms;
} UNITS[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000},
             {"s", 1000},     {"ms", 1}};
#define NUNITS (sizeof UNITS / sizeof UNITS[0])

int saga__duration_parse(const char *text, int64_t *ms) {
  if (!text || !*text)
    return SAGA_DURATION_EINVAL;
  const char *p = text;
  int64_t total = 0;
  while (*p) {
    if (*p < '0' || *p > '9')
      return SAGA_DURATION_EINVAL;
    int64_t n = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
      if (n > (INT64_MAX - (*p - '0')) / 10)
        return SAGA_DURATION_EINVAL;
      n = n * 10 + (*p - '0');
    }
    if (!*p) /* digits at the end: no unit */
      return strspn(text, "0123456789") == strlen(text) ? SAGA_DURATION_ENOUNIT
                                                         : SAGA_DURATION_EINVAL;
    size_t best = NUNITS, best_len = 0;
    for (size_t i = 0; i < NUNITS; i++) {
      size_t l = strlen(UNITS[i].name);
      if (l > best_len && !strncmp(p, UNITS[i].name, l))
        best = i, best_len = l;
    }
    if (best == NUNITS)
      return SAGA_DURATION_EINVAL;
    p += best_len;
    if (n > (INT64_MAX - total) / UNITS[best].ms)
      return SAGA_DURATION_EINVAL;
    total += n * UNITS[best].ms;
  }
  *ms = total;
  return SAGA_DURATION_OK;
}

char *saga__duration_explain(const char *text, char *buf, size_t len) {
  int64_t ms;
  if (saga__duration_parse(text, &ms) == SAGA_DURATION_ENOUNIT)
    snprintf(buf, len,
             "\"%s\" has no unit: use " SAGA_DURATION_UNITS
             " (e.g. %sms, 30s, 1h30m)",
             text, text);
  else
    snprintf(buf, len,
             "\"%s\" is not a duration: write a number and a unit, "
             SAGA_DURATION_UNITS ", or several (e.g. 250ms, 30s, 1h30m)",
             text ? text : "");
  return buf;
}

char *saga__duration_format(char *buf, size_t len, int64_t ms) {
  if (len == 0)
    return buf;
  size_t n = 0;
  buf[0] = '\0';
  uint64_t left = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
  if (ms < 0 && len > 1) {
    buf[0] = '-';
    buf[1] = '\0';
    n = 1;
  }
  if (left == 0)
    snprintf(buf + n, len - n, "0ms");
  for (size_t i = 0; i < NUNITS && left && n < len; i++) {
    uint64_t q = left / (uint64_t)UNITS[i].ms;
    if (!q)
      continue;
    left -= q * (uint64_t)UNITS[i].ms;
    int w = snprintf(buf + n, len - n, "%llu%s", (unsigned long long)q,
                     UNITS[i].name);
    if (w < 0 || (size_t)w >= len - n)
      break; /* cut short */
    n += (size_t)w;
  }
  return buf;
}
