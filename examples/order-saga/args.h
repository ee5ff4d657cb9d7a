/* Command-line helpers shared by the order example's programs. */
#ifndef ORDER_ARGS_H
#define ORDER_ARGS_H

#include <stddef.h>

/* Split a -X NAME=VALUE argument in place into props[2*n], props[2*n+1]
 * (props keeps a NULL after the last pair; room for max pairs). Returns 0,
 * or -1 after printing what is wrong, prefixed with prog. */
int order_add_property(const char **props, size_t *n, size_t max, char *arg,
                       const char *prog);

#endif
