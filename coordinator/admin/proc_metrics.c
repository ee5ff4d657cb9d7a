/* process_* metrics from /proc/self (proc_metrics.h), computed as the
 * Prometheus Go client's process collector computes them: CPU = (utime +
 * stime) / clock ticks, start time = boot time + starttime / clock ticks,
 * resident = rss pages * page size, open fds = entries of /proc/self/fd,
 * max fds = the soft RLIMIT_NOFILE. */
#include "proc_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct proc_metrics {
  metric_t *cpu, *rss, *vsize, *fds, *max_fds, *start;
  double cpu_seen; /* seconds already added to the counter */
};

proc_metrics_t *proc_metrics_new(metrics_t *m) {
  proc_metrics_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->cpu = metric_series(metrics_counter(
      m, "process_cpu_seconds_total",
      "Total user and system CPU time spent in seconds.", NULL));
  p->rss = metric_series(metrics_gauge(m, "process_resident_memory_bytes",
                                       "Resident memory size in bytes.", NULL));
  p->vsize =
      metric_series(metrics_gauge(m, "process_virtual_memory_bytes",
                                  "Virtual memory size in bytes.", NULL));
  p->fds = metric_series(metrics_gauge(
      m, "process_open_fds", "Number of open file descriptors.", NULL));
  p->max_fds = metric_series(metrics_gauge(
      m, "process_max_fds", "Maximum number of open file descriptors.", NULL));
  p->start = metric_series(metrics_gauge(
      m, "process_start_time_seconds",
      "Start time of the process since unix epoch in seconds.", NULL));
  if (!p->cpu || !p->rss || !p->vsize || !p->fds || !p->max_fds || !p->start) {
    free(p);
    return NULL;
  }
  proc_metrics_refresh(p);
  return p;
}

/* The system's boot time (btime of /proc/stat) in seconds, or -1. */
static double boot_time(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f)
    return -1;
  char line[256];
  double bt = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "btime ", 6) == 0) {
      bt = strtod(line + 6, NULL);
      break;
    }
  fclose(f);
  return bt;
}

/* /proc/self/stat: CPU, start time, virtual and resident size. */
static void read_stat(proc_metrics_t *p) {
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f)
    return;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name may hold blanks and parentheses: fields start after
   * the last ')'. Field 3 (state) is the first after it. */
  const char *q = strrchr(buf, ')');
  if (!q)
    return;
  unsigned long long utime, stime, start, vsize;
  long long rss;
  if (sscanf(q + 2,
             "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
             "%*d %*d %*d %*d %llu %llu %lld",
             &utime, &stime, &start, &vsize, &rss) != 5)
    return;
  long ticks = sysconf(_SC_CLK_TCK);
  long page = sysconf(_SC_PAGESIZE);
  if (ticks <= 0 || page <= 0)
    return;
  double cpu = (double)(utime + stime) / (double)ticks;
  if (cpu > p->cpu_seen) {
    metric_add(p->cpu, cpu - p->cpu_seen);
    p->cpu_seen = cpu;
  }
  metric_set(p->vsize, (double)vsize);
  metric_set(p->rss, (double)rss * (double)page);
  double bt = boot_time();
  if (bt >= 0)
    metric_set(p->start, bt + (double)start / (double)ticks);
}

void proc_metrics_refresh(proc_metrics_t *p) {
  if (!p)
    return;
  read_stat(p);
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
      if (e->d_name[0] != '.')
        n++;
    closedir(d);
    metric_set(p->fds, (double)(n > 0 ? n - 1 : 0)); /* not d's own fd */
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    metric_set(p->max_fds, (double)rl.rlim_cur); /* unlimited: 2^64-1 */
}

void proc_metrics_free(proc_metrics_t *p) { free(p); }
