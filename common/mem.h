/* Memory helpers (target saga_common): the one copy-a-byte-range function
 * of the tree. No I/O; any thread. Internal: not a public header. */
#ifndef SAGA_COMMON_MEM_H
#define SAGA_COMMON_MEM_H

#include <stddef.h>

/* A malloc'ed copy of p[0..n) followed by one NUL byte, so that text comes
 * back as a C string (a payload that holds NUL bytes keeps its length
 * with the caller). p may be NULL when n is 0: the copy is then "". The
 * caller frees it. NULL when out of memory or n + 1 would overflow. */
char *saga__memdup(const void *p, size_t n);

#endif
