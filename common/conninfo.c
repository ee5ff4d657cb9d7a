/* libpq connection settings checked before connecting (see conninfo.h). */
#include "conninfo.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether s[0..n) is a whole decimal number within [min, max], blanks
 * after it allowed (as libpq's parse_int_param takes it). */
static int whole(const char *s, size_t n, long min, long max) {
  char buf[32];
  if (n == 0 || n >= sizeof buf)
    return 0;
  memcpy(buf, s, n);
  buf[n] = '\0';
  char *end = NULL;
  errno = 0;
  long v = strtol(buf, &end, 10);
  if (end == buf || errno != 0 || v < min || v > max)
    return 0;
  while (*end == ' ' || *end == '\t')
    end++;
  return *end == '\0';
}

int saga__conninfo_value_check(const char *key, const char *val, char *why,
                               size_t len) {
  static const struct {
    const char *key, *words;
  } enums[] = {
      {"sslmode", " disable allow prefer require verify-ca verify-full "},
      {"gssencmode", " disable prefer require "},
      {"channel_binding", " disable prefer require "},
      {"target_session_attrs",
       " any read-write read-only primary standby prefer-standby "}};
  static const char *const ints[] = {"connect_timeout", "keepalives",
                                     "keepalives_idle", "keepalives_interval",
                                     "keepalives_count", "tcp_user_timeout"};
  for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++) {
    if (strcmp(key, enums[i].key) != 0)
      continue;
    const char *w = strstr(enums[i].words, val);
    size_t n = strlen(val);
    if (n > 0 && strchr(val, ' ') == NULL && w != NULL && w[-1] == ' ' &&
        w[n] == ' ')
      return 0;
    snprintf(why, len, "invalid %s value: \"%s\"", key, val);
    return -1;
  }
  if (strcmp(key, "port") == 0) { /* one per host */
    for (const char *p = val;;) {
      size_t n = strcspn(p, ",");
      if (n > 0 && !whole(p, n, 1, 65535)) {
        snprintf(why, len, "invalid port number: \"%.*s\"", (int)n, p);
        return -1;
      }
      if (p[n] == '\0')
        return 0;
      p += n + 1;
    }
  }
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if (strcmp(key, ints[i]) == 0 && *val != '\0' &&
        !whole(val, strlen(val), INT_MIN, INT_MAX)) {
      snprintf(why, len,
               "invalid integer value \"%s\" for connection option \"%s\"",
               val, key);
      return -1;
    }
  return 0;
}
