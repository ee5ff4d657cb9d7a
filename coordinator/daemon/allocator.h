/* Which memory allocator this sagad runs on: jemalloc in the builds that
 * link it (the default, see the top-level CMakeLists.txt, SAGA_JEMALLOC),
 * else the C library's. */
#ifndef SAGAD_ALLOCATOR_H
#define SAGAD_ALLOCATOR_H

#include <stddef.h>

/* The allocator's name and version ("jemalloc 5.3.0", "glibc malloc")
 * into buf (len bytes, NUL-terminated, cut if short); returns buf. */
const char *sagad_allocator(char *buf, size_t len);

#endif
