/* A growable array (target saga_common): the one way the tree grows an
 * array of n used elements inside cap allocated ones. The array stays a
 * plain pointer, a count and a capacity in the caller's struct:
 *
 *   if (SAGA_GROW(e->heap, e->cheap, e->nheap + 1, 256) != 0)
 *     return -1;                      // out of memory: nothing changed
 *   e->heap[e->nheap++] = t;
 *
 * No I/O; one thread at a time per array. Internal: not a public header. */
#ifndef SAGA_COMMON_GROW_H
#define SAGA_COMMON_GROW_H

#include <stddef.h>

/* Make room for at least need elements of elem bytes in the array whose
 * pointer is at arrp (a T ** passed as void *; the pointer may be NULL with
 * *cap 0). When need > *cap the array is reallocated to first elements
 * (when *cap is 0) or twice *cap, doubling until need fits, and *cap is
 * updated; the elements already there are kept. Returns 0, or -1 when out
 * of memory or the size would overflow: then the array and *cap are
 * unchanged. */
int saga__grow(void *arrp, size_t *cap, size_t need, size_t elem,
               size_t first);

/* saga__grow for an array pointer lvalue arr and its size_t capacity. */
#define SAGA_GROW(arr, cap, need, first)                                       \
  saga__grow(&(arr), &(cap), (need), sizeof *(arr), (first))

#endif
