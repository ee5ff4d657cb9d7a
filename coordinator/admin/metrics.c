/* Metrics registry and Prometheus text rendering (metrics.h). Families and
 * series are linked lists in registration order; a series keeps its label
 * values as one copied block and, for histograms, one count per bucket
 * (not cumulative: the renderer sums). Nothing here allocates after a
 * series exists. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuf.h"

const double metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                          0.05,  0.1,    0.25,  0.5,  1,
                                          2.5,   5,      10,    30,   60};
const size_t metrics_latency_nbuckets =
    sizeof metrics_latency_buckets / sizeof metrics_latency_buckets[0];

struct metric {
  metric_family_t *family;
  struct metric *next;
  char **values; /* nlabels copied label values */
  double value;  /* counter / gauge value; histogram sum */
  uint64_t count;
  uint64_t *buckets; /* nbounds + 1 (the last is +Inf) */
};

struct metric_family {
  metrics_t *owner;
  struct metric_family *next;
  metric_kind_t kind;
  char name[METRICS_MAX_NAME + 1];
  char *help;
  size_t nlabels;
  char labels[METRICS_MAX_LABELS][METRICS_MAX_NAME + 1];
  size_t nbounds;
  double bounds[METRICS_MAX_BUCKETS];
  metric_t *first, *last;
};

struct metrics {
  metric_family_t *first, *last;
  void (*collect)(metrics_t *m, void *arg);
  void *collect_arg;
};

metrics_t *metrics_new(void) { return calloc(1, sizeof(metrics_t)); }

static void series_free(metric_t *s) {
  for (size_t i = 0; i < s->family->nlabels; i++)
    free(s->values[i]);
  free(s->values);
  free(s->buckets);
  free(s);
}

void metrics_free(metrics_t *m) {
  if (!m)
    return;
  for (metric_family_t *f = m->first, *fn; f; f = fn) {
    fn = f->next;
    for (metric_t *s = f->first, *sn; s; s = sn) {
      sn = s->next;
      series_free(s);
    }
    free(f->help);
    free(f);
  }
  free(m);
}

static bool name_ok(const char *s, size_t n, bool colon) {
  if (n == 0 || n > METRICS_MAX_NAME)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 c == '_' || (colon && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
      return false;
  }
  return true;
}

/* Split "a,b" into f->labels; false when a name is invalid. */
static bool parse_labels(metric_family_t *f, const char *labels) {
  if (!labels || !*labels)
    return true;
  const char *p = labels;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (f->nlabels == METRICS_MAX_LABELS || !name_ok(p, n, false) ||
        (n >= 2 && p[0] == '_' && p[1] == '_'))
      return false;
    memcpy(f->labels[f->nlabels], p, n);
    f->labels[f->nlabels][n] = '\0';
    if (f->kind == METRIC_HISTOGRAM && strcmp(f->labels[f->nlabels], "le") == 0)
      return false;
    for (size_t i = 0; i < f->nlabels; i++)
      if (strcmp(f->labels[i], f->labels[f->nlabels]) == 0)
        return false;
    f->nlabels++;
    if (!end)
      return true;
    p = end + 1;
  }
}

static metric_family_t *family_new(metrics_t *m, metric_kind_t kind,
                                   const char *name, const char *help,
                                   const char *labels, const double *bounds,
                                   size_t nbounds) {
  if (!m || !name || !name_ok(name, strlen(name), true))
    return NULL;
  for (metric_family_t *f = m->first; f; f = f->next)
    if (strcmp(f->name, name) == 0)
      return NULL;
  if (kind == METRIC_HISTOGRAM) {
    if (!bounds || nbounds == 0 || nbounds > METRICS_MAX_BUCKETS)
      return NULL;
    for (size_t i = 0; i < nbounds; i++)
      if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
        return NULL;
  }
  metric_family_t *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->owner = m;
  f->kind = kind;
  strcpy(f->name, name);
  f->help = strdup(help ? help : "");
  if (!f->help || !parse_labels(f, labels)) {
    free(f->help);
    free(f);
    return NULL;
  }
  if (kind == METRIC_HISTOGRAM) {
    memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
    f->nbounds = nbounds;
  }
  if (m->last)
    m->last->next = f;
  else
    m->first = f;
  m->last = f;
  return f;
}

metric_family_t *metrics_counter(metrics_t *m, const char *name,
                                 const char *help, const char *labels) {
  return family_new(m, METRIC_COUNTER, name, help, labels, NULL, 0);
}

metric_family_t *metrics_gauge(metrics_t *m, const char *name,
                               const char *help, const char *labels) {
  return family_new(m, METRIC_GAUGE, name, help, labels, NULL, 0);
}

metric_family_t *metrics_histogram(metrics_t *m, const char *name,
                                   const char *help, const char *labels,
                                   const double *bounds, size_t nbounds) {
  return family_new(m, METRIC_HISTOGRAM, name, help, labels, bounds,
                    nbounds);
}

metric_t *metric_series_v(metric_family_t *f, const char *const *values) {
  if (!f)
    return NULL;
  for (size_t i = 0; i < f->nlabels; i++)
    if (!values || !values[i])
      return NULL;
  for (metric_t *s = f->first; s; s = s->next) {
    size_t i = 0;
    while (i < f->nlabels && strcmp(s->values[i], values[i]) == 0)
      i++;
    if (i == f->nlabels)
      return s;
  }
  metric_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->family = f;
  s->values = calloc(f->nlabels ? f->nlabels : 1, sizeof(char *));
  if (f->kind == METRIC_HISTOGRAM)
    s->buckets = calloc(f->nbounds + 1, sizeof(uint64_t));
  bool ok = s->values && (f->kind != METRIC_HISTOGRAM || s->buckets);
  for (size_t i = 0; ok && i < f->nlabels; i++)
    ok = (s->values[i] = strdup(values[i])) != NULL;
  if (!ok) {
    if (s->values)
      series_free(s);
    else
      free(s);
    return NULL;
  }
  if (f->last)
    f->last->next = s;
  else
    f->first = s;
  f->last = s;
  return s;
}

metric_t *metric_series(metric_family_t *f, ...) {
  if (!f)
    return NULL;
  const char *values[METRICS_MAX_LABELS];
  va_list ap;
  va_start(ap, f);
  for (size_t i = 0; i < f->nlabels; i++)
    values[i] = va_arg(ap, const char *);
  va_end(ap);
  return metric_series_v(f, values);
}

void metric_add(metric_t *s, double v) {
  if (!s || s->family->kind == METRIC_HISTOGRAM)
    return;
  if (s->family->kind == METRIC_COUNTER && !(v >= 0))
    return;
  s->value += v;
}

void metric_inc(metric_t *s) { metric_add(s, 1); }

void metric_set(metric_t *s, double v) {
  if (s && s->family->kind == METRIC_GAUGE)
    s->value = v;
}

void metric_dec(metric_t *s) {
  if (s && s->family->kind == METRIC_GAUGE)
    s->value -= 1;
}

void metric_observe(metric_t *s, double v) {
  if (!s || s->family->kind != METRIC_HISTOGRAM)
    return;
  const metric_family_t *f = s->family;
  /* Bucket i counts bounds[i-1] < v <= bounds[i]; binary search keeps the
   * cost at log2(32) comparisons. NaN lands in +Inf. */
  size_t lo = 0, hi = f->nbounds;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (v <= f->bounds[mid])
      hi = mid;
    else
      lo = mid + 1;
  }
  s->buckets[lo]++;
  s->count++;
  s->value += v;
}

double metric_value(const metric_t *s) { return s ? s->value : 0; }

uint64_t metric_count(const metric_t *s) {
  return s && s->family->kind == METRIC_HISTOGRAM ? s->count : 0;
}

void metrics_on_collect(metrics_t *m, void (*fn)(metrics_t *m, void *arg),
                        void *arg) {
  m->collect = fn;
  m->collect_arg = arg;
}

/* ---- rendering ------------------------------------------------------ */

/* Prometheus floats: shortest of %.15g / %.17g that reads back exactly,
 * and +Inf, -Inf, NaN spelled as the format wants. */
static void fmt_double(char tmp[40], double v) {
  if (isnan(v))
    strcpy(tmp, "NaN");
  else if (isinf(v))
    strcpy(tmp, v > 0 ? "+Inf" : "-Inf");
  else {
    snprintf(tmp, 40, "%.15g", v);
    if (strtod(tmp, NULL) != v)
      snprintf(tmp, 40, "%.17g", v);
  }
}

static void put_double(abuf_t *b, double v) {
  char tmp[40];
  fmt_double(tmp, v);
  abuf_puts(b, tmp);
}

/* Escape \ and newline (HELP); also " in label values. */
static void put_escaped(abuf_t *b, const char *s, bool quote) {
  for (; *s; s++) {
    if (*s == '\\')
      abuf_add(b, "\\\\", 2);
    else if (*s == '\n')
      abuf_add(b, "\\n", 2);
    else if (quote && *s == '"')
      abuf_add(b, "\\\"", 2);
    else
      abuf_add(b, s, 1);
  }
}

/* {a="x",b="y"[,le="..."]}, nothing when there are no labels at all. */
static void put_labels(abuf_t *b, const metric_t *s, const char *le) {
  const metric_family_t *f = s->family;
  if (f->nlabels == 0 && !le)
    return;
  abuf_add(b, "{", 1);
  for (size_t i = 0; i < f->nlabels; i++) {
    abuf_printf(b, "%s%s=\"", i ? "," : "", f->labels[i]);
    put_escaped(b, s->values[i], true);
    abuf_add(b, "\"", 1);
  }
  if (le)
    abuf_printf(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
  abuf_add(b, "}", 1);
}

static void put_sample(abuf_t *b, const metric_t *s, const char *suffix,
                       const char *le, double v) {
  abuf_printf(b, "%s%s", s->family->name, suffix);
  put_labels(b, s, le);
  abuf_add(b, " ", 1);
  put_double(b, v);
  abuf_add(b, "\n", 1);
}

static const char *kind_name(metric_kind_t k) {
  return k == METRIC_COUNTER ? "counter"
         : k == METRIC_GAUGE ? "gauge"
                             : "histogram";
}

static void put_histogram(abuf_t *b, const metric_t *s) {
  const metric_family_t *f = s->family;
  uint64_t cum = 0;
  for (size_t i = 0; i <= f->nbounds; i++) {
    char le[40];
    fmt_double(le, i < f->nbounds ? f->bounds[i] : INFINITY);
    cum += s->buckets[i];
    put_sample(b, s, "_bucket", le, (double)cum);
  }
  put_sample(b, s, "_sum", NULL, s->value);
  put_sample(b, s, "_count", NULL, (double)s->count);
}

int metrics_render(metrics_t *m, char **out, size_t *len) {
  *out = NULL;
  if (m->collect)
    m->collect(m, m->collect_arg);
  abuf_t b = ABUF_INIT;
  for (const metric_family_t *f = m->first; f; f = f->next) {
    abuf_printf(&b, "# HELP %s ", f->name);
    put_escaped(&b, f->help, false);
    abuf_printf(&b, "\n# TYPE %s %s\n", f->name, kind_name(f->kind));
    for (const metric_t *s = f->first; s; s = s->next) {
      if (f->kind == METRIC_HISTOGRAM)
        put_histogram(&b, s);
      else
        put_sample(&b, s, "", NULL, s->value);
    }
  }
  *out = abuf_take(&b, len);
  abuf_free(&b);
  return *out ? 0 : -1;
}
