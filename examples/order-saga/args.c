/* Command-line helpers shared by the order example's programs (args.h). */
#include "args.h"

#include <stdio.h>
#include <string.h>

int order_add_property(const char **props, size_t *n, size_t max, char *arg,
                       const char *prog) {
  char *eq = strchr(arg, '=');
  if (!eq || eq == arg || *n >= max) {
    fprintf(stderr, "%s: -X wants NAME=VALUE (at most %zu), got \"%s\"\n",
            prog, max, arg);
    return -1;
  }
  *eq = '\0';
  props[2 * *n] = arg;
  props[2 * *n + 1] = eq + 1;
  props[2 * *n + 2] = NULL;
  (*n)++;
  return 0;
}
