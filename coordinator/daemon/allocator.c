/* sagad's allocator, named for --version, and its trim after a backlog.
 * With SAGAD_JEMALLOC the program carries jemalloc (linked in statically:
 * Debian's shared build would bring the C++ runtime into the image), which
 * takes malloc and free for the whole process, librdkafka's and libpq's
 * allocations too. */
#include "allocator.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GLIBC__) && !defined(SAGAD_JEMALLOC)
#include <malloc.h>
#endif

#ifdef SAGAD_JEMALLOC
#include <jemalloc/jemalloc.h>

/* The bytes this thread has allocated through jemalloc into *n: 0, or -1
 * when jemalloc keeps no such count (built without statistics). */
static int thread_allocated(uint64_t *n) {
  size_t sz = sizeof *n;
  return mallctl("thread.allocated", n, &sz, NULL, 0) == 0 ? 0 : -1;
}
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
  int n = (int)strcspn(v, "-");
  /* linked is not enough: malloc must be jemalloc's (taken on trust when
   * jemalloc counts no bytes) */
  uint64_t before = 0, after = 0;
  int ours = 1;
  if (thread_allocated(&before) == 0) {
    void *volatile p = malloc(4096);
    ours = p && thread_allocated(&after) == 0 && after >= before + 4096;
    free(p);
  }
  if (ours)
    snprintf(buf, len, "jemalloc %.*s", n, v);
  else
    snprintf(buf, len, "jemalloc %.*s linked, but malloc is not its", n, v);
#elif defined(__SANITIZE_ADDRESS__)
  snprintf(buf, len, "AddressSanitizer's malloc");
#elif defined(__GLIBC__)
  snprintf(buf, len, "glibc malloc");
#else
  snprintf(buf, len, "the C library's malloc");
#endif
  return buf;
}

/* jemalloc returns freed pages as they age (10 s), but only on its own
 * allocation paths: an idle sagad would keep a burst's pages. Its
 * background thread would purge them, but it held 130-200 more bytes per
 * saga in flight (docs/benchmarks.md, "sagad on jemalloc"); the engine asks
 * instead, once, after a backlog. */
void sagad_allocator_trim(void) {
#ifdef SAGAD_JEMALLOC
  char cmd[64];
  snprintf(cmd, sizeof cmd, "arena.%u.purge", (unsigned)MALLCTL_ARENAS_ALL);
  (void)mallctl(cmd, NULL, NULL, NULL, 0);
#elif defined(__GLIBC__)
  malloc_trim(0);
#endif
}
