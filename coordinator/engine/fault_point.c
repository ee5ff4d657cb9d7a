/* Fault points of the test build (fault_point.h). Compiled only into
 * sagad-faults, never into the product's sagad: reading the environment
 * here is test machinery, not library behaviour. */
#include "fault_point.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void sagad__fault_point(const char *name) {
  static int parsed;
  static char want[64];
  static unsigned long at = 1, hits, delay_ms;
  if (!parsed) {
    parsed = 1;
    const char *v = getenv("SAGA_FAULT_POINT");
    if (v && *v) {
      const char *colon = strchr(v, ':');
      size_t n = colon ? (size_t)(colon - v) : strlen(v);
      if (n < sizeof want) {
        memcpy(want, v, n);
        want[n] = '\0';
      }
      if (colon) {
        char *end = NULL;
        at = strtoul(colon + 1, &end, 10);
        if (end && *end == ':')
          delay_ms = strtoul(end + 1, NULL, 10);
      }
      if (at == 0)
        at = 1;
    }
  }
  if (!want[0] || strcmp(want, name) != 0)
    return;
  if (++hits < at)
    return;
  /* A pause first lets librdkafka's threads deliver what is queued: the
   * window then holds effects that left the process, not only decisions. */
  if (delay_ms) {
    struct timespec ts = {(time_t)(delay_ms / 1000),
                          (long)(delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  char msg[128];
  int len = snprintf(msg, sizeof msg, "sagad: fault point %s hit %lu: killed\n",
                     name, hits);
  if (len > 0)
    (void)!write(2, msg, (size_t)len < sizeof msg ? (size_t)len : sizeof msg);
  raise(SIGKILL);
}
