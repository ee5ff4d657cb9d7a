/* Which memory allocator this sagad runs on: jemalloc in the builds that
 * link it (the default, see the top-level CMakeLists.txt, SAGA_JEMALLOC),
 * the sanitizer's under SAGA_SANITIZE, else the C library's. */
#ifndef SAGAD_ALLOCATOR_H
#define SAGAD_ALLOCATOR_H

#include <stddef.h>

/* The allocator's name and version ("jemalloc 5.3.0", "AddressSanitizer's
 * malloc", "glibc malloc") into buf (len bytes, NUL-terminated, cut if
 * short); returns buf. jemalloc is named only when malloc goes to it (one
 * 4 KiB allocation, counted by jemalloc's per-thread statistics); linked
 * but passed over, it says so. */
const char *sagad_allocator(char *buf, size_t len);

/* Hand the heap's free pages back to the system: jemalloc purges every
 * arena; glibc's malloc_trim(0) otherwise (nothing where neither). For the
 * engine's trim_heap, after a backlog; the loop thread. */
void sagad_allocator_trim(void);

#endif
