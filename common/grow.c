/* A growable array (see grow.h). */
#include "grow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int saga__grow(void *arrp, size_t *cap, size_t need, size_t elem,
               size_t first) {
  if (need <= *cap)
    return 0;
  size_t c = *cap ? *cap : (first ? first : 1);
  while (c < need) {
    if (c > SIZE_MAX / 2)
      return -1;
    c *= 2;
  }
  if (elem && c > SIZE_MAX / elem)
    return -1;
  void *old;
  memcpy(&old, arrp, sizeof old);
  void *p = realloc(old, c * elem);
  if (!p)
    return -1;
  memcpy(arrp, &p, sizeof p);
  *cap = c;
  return 0;
}
