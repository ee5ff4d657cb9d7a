/* The metrics registry renders exactly the Prometheus text format 0.0.4:
 * HELP/TYPE lines, escaped label values, cumulative histogram buckets; the
 * process_* families read this process's own figures. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "metrics.h"
#include "proc_metrics.h"

/* not inlined: GCC 12 at -O3 then took a sample's pointer into the text
 * for one to render's local `out` (-Wdangling-pointer) */
__attribute__((noinline)) static char *render(metrics_t *m) {
  char *out = NULL;
  size_t len = 0;
  assert_int_equal(metrics_render(m, &out, &len), 0);
  assert_non_null(out);
  assert_int_equal(strlen(out), len);
  return out;
}

static void test_counters_and_gauges_render_with_help_type_and_labels(
    void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  metric_family_t *started =
      metrics_counter(m, "saga_started_total", "Sagas started.", "saga_type");
  metric_family_t *inflight =
      metrics_gauge(m, "saga_in_flight", "Sagas not terminal.", NULL);
  metric_t *order = metric_series(started, "order");
  metric_t *refund = metric_series(started, "refund");
  metric_inc(order);
  metric_inc(order);
  metric_add(refund, 3);
  metric_t *g = metric_series(inflight);
  metric_set(g, 7);
  metric_dec(g);
  char *out = render(m);
  assert_string_equal(out, "# HELP saga_started_total Sagas started.\n"
                           "# TYPE saga_started_total counter\n"
                           "saga_started_total{saga_type=\"order\"} 2\n"
                           "saga_started_total{saga_type=\"refund\"} 3\n"
                           "# HELP saga_in_flight Sagas not terminal.\n"
                           "# TYPE saga_in_flight gauge\n"
                           "saga_in_flight 6\n");
  free(out);
  metrics_free(m);
}

static void test_same_label_values_give_the_same_series(void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  metric_family_t *f = metrics_counter(m, "x_total", "x", "a,b");
  metric_t *s1 = metric_series(f, "1", "2");
  const char *vals[] = {"1", "2"};
  assert_ptr_equal(metric_series_v(f, vals), s1);
  assert_ptr_not_equal(metric_series(f, "2", "1"), s1);
  metrics_free(m);
}

static void test_label_values_and_help_are_escaped(void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  metric_family_t *f =
      metrics_counter(m, "dead_letters_total", "Back\\slash\nnewline \"q\"",
                      "reason,topic");
  metric_inc(metric_series(f, "a \"quoted\"\nline\\end", "t"));
  char *out = render(m);
  assert_string_equal(
      out, "# HELP dead_letters_total Back\\\\slash\\nnewline \"q\"\n"
           "# TYPE dead_letters_total counter\n"
           "dead_letters_total{reason=\"a \\\"quoted\\\"\\nline\\\\end\","
           "topic=\"t\"} 1\n");
  free(out);
  metrics_free(m);
}

static void test_histogram_renders_cumulative_buckets_sum_and_count(
    void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  const double b[] = {0.005, 0.1, 1};
  metric_family_t *f = metrics_histogram(m, "step_seconds", "Step latency.",
                                         "saga_type,step", b, 3);
  metric_t *s = metric_series(f, "order", "pay");
  metric_observe(s, 0.005); /* on the bound: counted in le="0.005" */
  metric_observe(s, 0.05);
  metric_observe(s, 0.25);
  metric_observe(s, 7);
  metric_t *empty = metric_series(f, "order", "ship");
  (void)empty;
  char *out = render(m);
  assert_string_equal(
      out,
      "# HELP step_seconds Step latency.\n"
      "# TYPE step_seconds histogram\n"
      "step_seconds_bucket{saga_type=\"order\",step=\"pay\",le=\"0.005\"} 1\n"
      "step_seconds_bucket{saga_type=\"order\",step=\"pay\",le=\"0.1\"} 2\n"
      "step_seconds_bucket{saga_type=\"order\",step=\"pay\",le=\"1\"} 3\n"
      "step_seconds_bucket{saga_type=\"order\",step=\"pay\",le=\"+Inf\"} 4\n"
      "step_seconds_sum{saga_type=\"order\",step=\"pay\"} 7.305\n"
      "step_seconds_count{saga_type=\"order\",step=\"pay\"} 4\n"
      "step_seconds_bucket{saga_type=\"order\",step=\"ship\",le=\"0.005\"} 0\n"
      "step_seconds_bucket{saga_type=\"order\",step=\"ship\",le=\"0.1\"} 0\n"
      "step_seconds_bucket{saga_type=\"order\",step=\"ship\",le=\"1\"} 0\n"
      "step_seconds_bucket{saga_type=\"order\",step=\"ship\",le=\"+Inf\"} 0\n"
      "step_seconds_sum{saga_type=\"order\",step=\"ship\"} 0\n"
      "step_seconds_count{saga_type=\"order\",step=\"ship\"} 0\n");
  assert_int_equal(metric_count(s), 4);
  free(out);
  metrics_free(m);
}

static void test_unlabelled_histogram_has_only_le(void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  const double b[] = {10, 100};
  metric_t *s = metric_series(
      metrics_histogram(m, "batch_size", "Events per batch.", "", b, 2));
  metric_observe(s, 100);
  metric_observe(s, NAN); /* lands in +Inf, sum becomes NaN */
  char *out = render(m);
  assert_string_equal(out, "# HELP batch_size Events per batch.\n"
                           "# TYPE batch_size histogram\n"
                           "batch_size_bucket{le=\"10\"} 0\n"
                           "batch_size_bucket{le=\"100\"} 1\n"
                           "batch_size_bucket{le=\"+Inf\"} 2\n"
                           "batch_size_sum NaN\n"
                           "batch_size_count 2\n");
  free(out);
  metrics_free(m);
}

static void test_values_print_shortest_exact_form(void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  metric_family_t *f = metrics_gauge(m, "g", "", "k");
  metric_set(metric_series(f, "a"), 0.1);
  metric_set(metric_series(f, "b"), 1e21);
  metric_set(metric_series(f, "c"), -INFINITY);
  metric_set(metric_series(f, "d"), 123456789012.0);
  char *out = render(m);
  assert_string_equal(out, "# HELP g \n# TYPE g gauge\n"
                           "g{k=\"a\"} 0.1\ng{k=\"b\"} 1e+21\n"
                           "g{k=\"c\"} -Inf\ng{k=\"d\"} 123456789012\n");
  free(out);
  metrics_free(m);
}

static void test_counters_refuse_to_go_down_and_kinds_ignore_wrong_calls(
    void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  metric_t *c = metric_series(metrics_counter(m, "c_total", "c", NULL));
  metric_add(c, -5);
  metric_add(c, NAN);
  metric_set(c, 9);
  metric_dec(c);
  metric_observe(c, 1);
  assert_true(metric_value(c) == 0);
  metric_inc(NULL); /* a failed registration never crashes the hot path */
  metric_observe(NULL, 1);
  metrics_free(m);
}

static void test_invalid_registrations_are_refused(void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  const double ok[] = {1, 2};
  const double bad[] = {2, 1};
  assert_non_null(metrics_counter(m, "a:b_total", "", "x"));
  assert_null(metrics_counter(m, "a:b_total", "", NULL)); /* duplicate */
  assert_null(metrics_counter(m, "1abc", "", NULL));
  assert_null(metrics_counter(m, "a-b", "", NULL));
  assert_null(metrics_counter(m, "", "", NULL));
  assert_null(metrics_gauge(m, "g1", "", "a:b"));
  assert_null(metrics_gauge(m, "g2", "", "__reserved"));
  assert_null(metrics_gauge(m, "g3", "", "a,,b"));
  assert_null(metrics_gauge(m, "g4", "", "a,a"));
  assert_null(metrics_gauge(m, "g5", "", "a,b,c,d,e,f,g,h,i"));
  assert_null(metrics_histogram(m, "h1", "", "le", ok, 2));
  assert_null(metrics_histogram(m, "h2", "", NULL, bad, 2));
  assert_null(metrics_histogram(m, "h3", "", NULL, ok, 0));
  assert_non_null(metrics_histogram(m, "h4", "", NULL,
                                    metrics_latency_buckets,
                                    metrics_latency_nbuckets));
  metric_family_t *two = metrics_gauge(m, "g6", "", "a,b");
  const char *vals[] = {"x", NULL};
  assert_null(metric_series_v(two, vals));
  assert_null(metric_series(NULL));
  metrics_free(m);
}

static int collected;
static void collect(metrics_t *m, void *arg) {
  (void)m;
  collected++;
  metric_set(arg, 42);
}

static void test_collect_hook_refreshes_gauges_before_rendering(void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  metric_t *lag = metric_series(
      metrics_gauge(m, "saga_inbox_lag_messages", "Messages behind.", NULL));
  metrics_on_collect(m, collect, lag);
  char *out = render(m);
  assert_int_equal(collected, 1);
  assert_non_null(strstr(out, "saga_inbox_lag_messages 42\n"));
  free(out);
  metrics_free(m);
}

static void test_empty_registry_renders_empty_text(void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  char *out = render(m);
  assert_string_equal(out, "");
  free(out);
  metrics_free(m);
  metrics_free(NULL);
}

/* The value of the unlabelled sample name in text (fails when absent). */
static double sample(const char *text, const char *name) {
  char pat[96];
  snprintf(pat, sizeof pat, "\n%s ", name);
  const char *p = strstr(text, pat);
  if (!p)
    fail_msg("no sample %s in:\n%s", name, text);
  return strtod(p + strlen(pat), NULL);
}

static void test_process_metrics_read_this_process(void **state) {
  (void)state;
  metrics_t *m = metrics_new();
  proc_metrics_t *p = proc_metrics_new(m);
  assert_non_null(p);
  assert_null(proc_metrics_new(m)); /* the names are taken */
  /* use 50 ms of CPU (clock(): this process's CPU time), more than a
   * clock tick of /proc/self/stat */
  volatile double x = 0;
  while (clock() < CLOCKS_PER_SEC / 20)
    x += 1;
  (void)x;
  proc_metrics_refresh(p);
  char *out = render(m);
  assert_non_null(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
  assert_non_null(strstr(out, "# TYPE process_open_fds gauge\n"));
  assert_true(sample(out, "process_cpu_seconds_total") > 0);
  assert_true(sample(out, "process_resident_memory_bytes") > 1 << 16);
  assert_true(sample(out, "process_virtual_memory_bytes") >=
              sample(out, "process_resident_memory_bytes"));
  double fds = sample(out, "process_open_fds");
  assert_true(fds >= 3); /* stdin, stdout, stderr */
  assert_true(sample(out, "process_max_fds") >= fds);
  double start = sample(out, "process_start_time_seconds");
  assert_true(start > 1.5e9 && start <= (double)time(NULL) + 1);
  free(out);
  proc_metrics_free(p);
  metrics_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_counters_and_gauges_render_with_help_type_and_labels),
      cmocka_unit_test(test_same_label_values_give_the_same_series),
      cmocka_unit_test(test_label_values_and_help_are_escaped),
      cmocka_unit_test(test_histogram_renders_cumulative_buckets_sum_and_count),
      cmocka_unit_test(test_unlabelled_histogram_has_only_le),
      cmocka_unit_test(test_values_print_shortest_exact_form),
      cmocka_unit_test(
          test_counters_refuse_to_go_down_and_kinds_ignore_wrong_calls),
      cmocka_unit_test(test_invalid_registrations_are_refused),
      cmocka_unit_test(test_collect_hook_refreshes_gauges_before_rendering),
      cmocka_unit_test(test_empty_registry_renders_empty_text),
      cmocka_unit_test(test_process_metrics_read_this_process),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
