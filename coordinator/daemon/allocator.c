/* sagad's allocator, named for --version. With SAGAD_JEMALLOC the program
 * is linked with jemalloc, which takes malloc and free for the whole
 * process (librdkafka's and libpq's allocations too); asking it for its
 * version also keeps the library in the link. */
#include "allocator.h"

#include <stdio.h>
#include <string.h>

#ifdef SAGAD_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

const char *sagad_allocator(char *buf, size_t len) {
  if (!buf || !len)
    return buf;
#ifdef SAGAD_JEMALLOC
  const char *v = NULL;
  size_t sz = sizeof v;
  if (mallctl("version", (void *)&v, &sz, NULL, 0) != 0 || !v)
    v = "?";
  /* "5.3.0-0-g54eaed1d...": the release, without the commit */
  size_t n = strcspn(v, "-");
  snprintf(buf, len, "jemalloc %.*s", (int)n, v);
#elif defined(__GLIBC__)
  snprintf(buf, len, "glibc malloc");
#else
  snprintf(buf, len, "the C library's malloc");
#endif
  return buf;
}
