/* sagad's metrics as Prometheus and Grafana see them. One real sagad (the
 * coordinator e2e harness: PostgreSQL, the Kafka mock, a scripted
 * participant) runs sagas that replay, repeat and recover: a saga resumed
 * by a restarted sagad, duplicate starts and replies, a timeout, a
 * failure, a retry, a batch whose append fails (its backend terminated
 * while it waits on a lock) and a dead letter. Then:
 * - saga_finished_total counts each saga once, saga_started_total each
 *   start once;
 * - `promtool check metrics` has nothing to say about a real scrape;
 * - a real Prometheus scrapes sagad, and every query of the Grafana
 *   dashboard deploy/grafana/saga.json (panels and variables) returns data.
 * promtool and prometheus come with the Debian package prometheus
 * (scripts/deps.sh); the tests that need them skip without it, unless
 * SAGA_PROM_TESTS=1, which installs it. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <libpq-fe.h>

#include "abuf.h"
#include "e2e.h"
#include "http_client.h"
#include "test_support.h"

static e2e_t *t;
static int admin_port = -1;

/* ---- the participant's script ------------------------------------------ */

static int hold_recover = 1; /* m-recover's first step waits for a restart */
static PGconn *blocker;      /* holds saga_index for m-append's last reply */
static int append_locked;

static e2e_answer_t script(const char *id, int step, int compensate,
                           uint32_t attempt) {
  if (compensate)
    return E2E_SUCCESS;
  if (!strcmp(id, "m-recover") && step == 0 && hold_recover)
    return E2E_NO_REPLY;
  if (!strcmp(id, "m-timeout") && step == 1)
    return E2E_NO_REPLY; /* decided by the deadline, then compensated */
  if (!strcmp(id, "m-fail") && step == 2)
    return E2E_FAILURE;
  if (!strcmp(id, "m-twice"))
    return E2E_REPLY_TWICE;
  if (!strcmp(id, "m-retry") && step == 2 && attempt == 1)
    return E2E_RETRYABLE;
  if (!strcmp(id, "m-append") && step == 2 && blocker && !append_locked) {
    /* sagad's append of the saga's last transition will wait on this */
    PGresult *r = PQexec(blocker, "BEGIN; LOCK TABLE saga_index IN "
                                  "EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    append_locked = 1;
  }
  return E2E_SUCCESS;
}

/* ---- helpers ------------------------------------------------------------ */

/* Start sagad 0 and wait for its admin endpoint. */
static void start_sagad(void) {
  admin_port = e2e_sagad_start_admin(t, 0, NULL, ts_timeout_ms(30000));
  assert_true(admin_port > 0);
}

static char *scrape(void) {
  char *b = http_get_body(admin_port, "/metrics");
  assert_non_null(b);
  return b;
}

/* The sum of every sample of family name in a scrape (lines "name{...} v"
 * or "name v"). */
static double family_sum(const char *text, const char *name) {
  double sum = 0;
  size_t n = strlen(name);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
    if (strncmp(p, name, n) != 0 || (p[n] != '{' && p[n] != ' '))
      continue;
    const char *sp = strchr(p, ' ');
    const char *nl = strchr(p, '\n');
    if (sp && (!nl || sp < nl))
      sum += atof(sp + 1);
  }
  return sum;
}

static void need_prometheus(void) {
  if (system("command -v prometheus >/dev/null 2>&1 && "
             "command -v promtool >/dev/null 2>&1") == 0)
    return;
  const char *want = getenv("SAGA_PROM_TESTS");
  if (!want || strcmp(want, "1") != 0) {
    printf("skipped: prometheus is not installed (SAGA_PROM_TESTS=1 "
           "installs it)\n");
    skip();
  }
  assert_int_equal(system("DEBIAN_FRONTEND=noninteractive apt-get install "
                          "-y --no-install-recommends prometheus >/dev/null"),
                   0);
}

/* ---- set-up -------------------------------------------------------------- */

static int setup(void **state) {
  (void)state;
  ts_require_pg();
  ts_require_kafka();
  /* fast: 3 s step deadline, one attempt; retry: s3 retriable, 3 attempts */
  t = e2e_new("metrics", 3000, script);
  e2e_write_pivot_def(t, "retry", 30000, 3);
  start_sagad();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  int rc = e2e_sagad_stop(t, 0, SIGTERM);
  if (blocker)
    PQfinish(blocker);
  char def[300];
  snprintf(def, sizeof def, "%s/defs/retry.json", e2e_dir(t));
  unlink(def);
  e2e_free(t);
  return rc == 0 ? 0 : -1;
}

/* ---- tests --------------------------------------------------------------- */

/* The append of m-append's last transition waits on the lock the script
 * took; terminate the backend that waits, then let go: the batch fails, and
 * sagad reads the saga back and steps the same reply again. */
static void fail_the_held_append(void) {
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  int killed = 0;
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (!killed && ts_now_ms() < until) {
    e2e_pump(t, 50);
    if (!append_locked)
      continue;
    PGresult *r = PQexec(c, "SELECT pg_terminate_backend(l.pid) FROM "
                            "pg_locks l JOIN pg_class k ON k.oid = "
                            "l.relation WHERE k.relname = 'saga_index' AND "
                            "NOT l.granted");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    killed = PQntuples(r) > 0;
    PQclear(r);
  }
  PQfinish(c);
  assert_true(killed);
  PGresult *r = PQexec(blocker, "COMMIT");
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
}

static void test_each_saga_finishes_once_whatever_replays(void **s) {
  (void)s;
  /* a saga in flight when sagad dies, resumed by the next one */
  e2e_start(t, "slow", "m-recover");
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_commands(t, "m-recover", 0) < 1 && ts_now_ms() < until)
    e2e_pump(t, 50);
  assert_true(e2e_commands(t, "m-recover", 0) >= 1);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);
  hold_recover = 0;
  start_sagad();
  /* every dead-letter class is exported from the start, at 0: an alert on
   * increase() sees the first dead letter after a restart */
  char *fresh = scrape();
  static const char *const classes[] = {"undecodable", "unknown_type",
                                        "input_too_large"};
  for (size_t i = 0; i < 3; i++) {
    char want[96];
    snprintf(want, sizeof want, "saga_dead_letters_total{reason=\"%s\"} 0\n",
             classes[i]);
    if (!strstr(fresh, want))
      fail_msg("a fresh sagad's scrape lacks %s", want);
  }
  free(fresh);

  blocker = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(blocker), CONNECTION_OK);
  static const char *const fast[] = {"m-ok1",  "m-ok2",     "m-twice",
                                     "m-fail", "m-timeout", "m-append"};
  for (size_t i = 0; i < sizeof fast / sizeof fast[0]; i++)
    e2e_start(t, "fast", fast[i]);
  e2e_start(t, "fast", "m-ok1"); /* a duplicate start */
  e2e_start(t, "retry", "m-retry");
  e2e_produce_raw(t, NULL, "m-garbage", "\x01\x02not a message", 15);
  fail_the_held_append();
  const char *ids[] = {"m-recover", "m-ok1",     "m-ok2",    "m-twice",
                       "m-fail",    "m-timeout", "m-append", "m-retry"};
  size_t n = sizeof ids / sizeof ids[0];
  assert_int_equal(e2e_wait_terminal(t, ids, n, ts_timeout_ms(90000)), n);
  e2e_start(t, "fast", "m-ok2"); /* a start for a finished saga */
  e2e_pump(t, 1000);
  assert_string_equal(e2e_status(t, "m-fail"), "compensated");
  assert_string_equal(e2e_status(t, "m-timeout"), "compensated");
  assert_string_equal(e2e_status(t, "m-append"), "completed");

  char *m = scrape();
  /* every saga once, m-recover included (resumed, not started, here) */
  assert_int_equal((int)family_sum(m, "saga_finished_total"), (int)n);
  assert_non_null(strstr(m, "saga_finished_total{saga_type=\"fast\","
                            "outcome=\"compensated\"} 2\n"));
  assert_non_null(strstr(m, "saga_finished_total{saga_type=\"fast\","
                            "outcome=\"completed\"} 4\n"));
  assert_non_null(strstr(m, "saga_finished_total{saga_type=\"slow\","
                            "outcome=\"completed\"} 1\n"));
  assert_int_equal((int)family_sum(m, "saga_started_total"), (int)n - 1);
  assert_non_null(strstr(m, "saga_step_retries_total{saga_type=\"retry\","
                            "step=\"s3\"} 1\n"));
  assert_non_null(strstr(m, "saga_step_timeouts_total{saga_type=\"fast\","
                            "step=\"s2\"} 1\n"));
  assert_true(family_sum(m, "saga_dead_letters_total") >= 1);
  free(m);
}

/* After a restart with nothing new on the inbox, no partition is behind:
 * the lag of a partition nothing was taken from yet counted from the
 * oldest offset retention holds, so an idle system looked stuck
 * (SagaNoProgress). Runs last: the restart resets the counters. */
static void test_a_quiet_inbox_shows_no_lag_after_a_restart(void **s) {
  (void)s;
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  start_sagad();
  char *m = NULL;
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  for (;;) { /* until the partitions are assigned: their series appear */
    free(m);
    m = scrape();
    if (strstr(m, "saga_inbox_lag_messages{") || ts_now_ms() > until)
      break;
    e2e_pump(t, 200);
  }
  assert_non_null(strstr(m, "saga_inbox_lag_messages{"));
  e2e_pump(t, 1000);
  free(m);
  m = scrape();
  printf("# inbox lag after a restart on a quiet inbox: %g\n",
         family_sum(m, "saga_inbox_lag_messages"));
  assert_true(family_sum(m, "saga_inbox_lag_messages") == 0);
  free(m);
}

static void test_promtool_finds_nothing_to_fix_in_a_scrape(void **s) {
  (void)s;
  need_prometheus();
  char path[300], cmd[700];
  snprintf(path, sizeof path, "%s/scrape.txt", e2e_dir(t));
  char *m = scrape();
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(m, f);
  fclose(f);
  free(m);
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char out[4096];
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  int rc = pclose(p);
  unlink(path);
  if (rc != 0 || n > 0)
    fail_msg("promtool check metrics (exit %d) says:\n%s", rc, out);
}

/* ---- the dashboard against a real Prometheus ----------------------------- */

static void url_encode(abuf_t *b, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || strchr("-_.~", c))
      abuf_add(b, s, 1);
    else
      abuf_printf(b, "%%%02X", c);
  }
}

/* expr with the dashboard's variables as a user choosing "All" (and job
 * "sagad") gets them from Grafana. malloc'd. */
static char *expand(const char *expr) {
  static const char *const vars[][2] = {{"$__rate_interval", "1m"},
                                        {"$job", "sagad"},
                                        {"$instance", ".*"},
                                        {"$saga_type", ".*"}};
  abuf_t b = ABUF_INIT;
  for (const char *p = expr; *p;) {
    size_t i = 0, nv = sizeof vars / sizeof vars[0];
    while (i < nv && strncmp(p, vars[i][0], strlen(vars[i][0])) != 0)
      i++;
    if (i < nv) {
      abuf_puts(&b, vars[i][1]);
      p += strlen(vars[i][0]);
    } else {
      abuf_add(&b, p++, 1);
    }
  }
  return abuf_take(&b, NULL);
}

/* The API path answering query q: an instant query, or for a variable's
 * label_values(selector, label) the label's values among the series the
 * selector matches. malloc'd. */
static char *api_path(const char *q) {
  abuf_t b = ABUF_INIT;
  char *e = expand(q);
  if (!strncmp(e, "label_values(", 13)) {
    char *sel = e + 13;
    char *comma = strrchr(sel, ',');
    char *close = strrchr(sel, ')');
    assert_non_null(comma);
    assert_non_null(close);
    *comma = *close = '\0';
    char *label = comma + 1;
    while (*label == ' ')
      label++;
    abuf_printf(&b, "/api/v1/label/%s/values?match[]=", label);
    url_encode(&b, sel);
  } else {
    abuf_puts(&b, "/api/v1/query?query=");
    url_encode(&b, e);
  }
  free(e);
  return abuf_take(&b, NULL);
}

/* True when Prometheus's answer at path holds data: a non-empty result
 * (query) or non-empty data (label values). */
static bool has_data(int port, const char *path) {
  char *body = http_get_body(port, path);
  bool ok = body && strstr(body, "\"status\":\"success\"") &&
            (strstr(body, "\"result\":[{") || strstr(body, "\"data\":[\""));
  free(body);
  return ok;
}

typedef struct {
  char *what; /* panel title / variable name */
  char *expr;
  char *path;
  bool ok;
} query_t;

/* Every query of the dashboard: each panel target's expr and each query
 * variable's definition. */
static size_t dashboard_queries(query_t *qs, size_t cap) {
  char *text = ts_slurp(DASHBOARD);
  assert_non_null(text);
  cJSON *d = cJSON_Parse(text);
  free(text);
  assert_non_null(d);
  size_t n = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(d, "panels")) {
    const cJSON *tg;
    cJSON_ArrayForEach(tg, cJSON_GetObjectItem(p, "targets")) {
      const cJSON *e = cJSON_GetObjectItem(tg, "expr");
      assert_true(cJSON_IsString(e));
      assert_true(n < cap);
      qs[n].what = strdup(cJSON_GetObjectItem(p, "title")->valuestring);
      qs[n].expr = strdup(e->valuestring);
      qs[n].path = api_path(e->valuestring);
      qs[n++].ok = false;
    }
  }
  const cJSON *v;
  cJSON_ArrayForEach(
      v, cJSON_GetObjectItem(cJSON_GetObjectItem(d, "templating"), "list")) {
    const cJSON *type = cJSON_GetObjectItem(v, "type");
    if (strcmp(type->valuestring, "query") != 0)
      continue;
    const cJSON *q =
        cJSON_GetObjectItem(cJSON_GetObjectItem(v, "query"), "query");
    assert_true(cJSON_IsString(q));
    assert_true(n < cap);
    qs[n].what = strdup(cJSON_GetObjectItem(v, "name")->valuestring);
    qs[n].expr = strdup(q->valuestring);
    qs[n].path = api_path(q->valuestring);
    qs[n++].ok = false;
  }
  cJSON_Delete(d);
  return n;
}

static void test_every_dashboard_query_returns_data(void **s) {
  (void)s;
  need_prometheus();
  query_t qs[64];
  size_t n = dashboard_queries(qs, 64);
  assert_true(n >= 20);
  char dir[300], cmd[700];
  snprintf(dir, sizeof dir, "%s/prom", e2e_dir(t));
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  assert_int_equal(system(cmd), 0);
  int prom_port;
  pid_t prom = prometheus_start(dir, admin_port, &prom_port);
  assert_true(prom > 0);
  /* one more saga while Prometheus watches, so rates move */
  e2e_start(t, "fast", "m-watched");
  size_t left = n;
  int64_t until = ts_now_ms() + ts_timeout_ms(90000);
  while (left > 0 && ts_now_ms() < until) {
    for (size_t i = 0; i < n; i++)
      if (!qs[i].ok && has_data(prom_port, qs[i].path)) {
        qs[i].ok = true;
        left--;
      }
    if (left > 0)
      e2e_pump(t, 500);
  }
  kill(prom, SIGTERM);
  waitpid(prom, NULL, 0);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  for (size_t i = 0; i < n; i++) {
    if (!qs[i].ok)
      printf("no data: %s: %s\n", qs[i].what, qs[i].expr);
    free(qs[i].what);
    free(qs[i].expr);
    free(qs[i].path);
  }
  assert_int_equal(left, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_each_saga_finishes_once_whatever_replays),
      cmocka_unit_test(test_promtool_finds_nothing_to_fix_in_a_scrape),
      cmocka_unit_test(test_every_dashboard_query_returns_data),
      cmocka_unit_test(test_a_quiet_inbox_shows_no_lag_after_a_restart),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
