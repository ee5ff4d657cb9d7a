/* Memory helpers (see mem.h). */
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

char *saga__memdup(const void *p, size_t n) {
  if (n == SIZE_MAX)
    return NULL;
  char *d = malloc(n + 1);
  if (d == NULL)
    return NULL;
  if (n)
    memcpy(d, p, n);
  d[n] = '\0';
  return d;
}
