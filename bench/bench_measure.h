/* Measuring helpers the benchmark programs share. */
#ifndef SAGA_BENCH_MEASURE_H
#define SAGA_BENCH_MEASURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The CPU time process pid has had so far, in ms (the first field of
 * /proc/PID/schedstat: time on a CPU, not time waited), or -1 when it
 * cannot be read (not a process of this machine). For a PostgreSQL
 * backend: PQbackendPID, the server on the same machine. */
static inline double bench_cpu_ms_of(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
  FILE *f = fopen(path, "r");
  unsigned long long ns = 0;
  int ok = f && fscanf(f, "%llu", &ns) == 1;
  if (f)
    fclose(f);
  return ok ? (double)ns / 1e6 : -1;
}

static inline int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of v[0..n-1] (the upper one for an even n); v is left as it
 * was. n at most 4096. */
static inline double bench_median(const double *v, size_t n) {
  double c[4096];
  if (n == 0 || n > sizeof c / sizeof c[0])
    return -1;
  memcpy(c, v, n * sizeof *v);
  qsort(c, n, sizeof c[0], bench_cmp_double);
  return c[n / 2];
}

#endif
