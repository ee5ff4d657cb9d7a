/* The operator's round trip with a real sagad and the real sagactl: sagas
 * whose compensations keep failing park in compensation_failed; sagactl
 * shows and lists them, retry (with the participant answering again) makes
 * one finish compensated, resolve closes another; start --wait, history and
 * replay --all run against what sagad wrote. The participant is the e2e
 * harness's scripted one (tests/coordinator_e2e/e2e.h). */
#define _GNU_SOURCE /* memmem */
#include <fcntl.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "e2e.h"
#include "http_client.h"
#include "run_sagactl.h"
#include "test_support.h"

/* 0: every compensation fails; 1: the participant was fixed. */
static int fixed;

/* "park-*": the first two steps succeed, the third fails, and the undo of
 * the first two fails until `fixed`. Anything else succeeds. */
static e2e_answer_t script(const char *saga_id, int step, int compensate,
                           uint32_t attempt) {
  (void)attempt;
  if (strncmp(saga_id, "park-", 5) != 0)
    return E2E_SUCCESS;
  if (compensate)
    return fixed ? E2E_SUCCESS : E2E_FAILURE;
  return step == E2E_STEPS - 1 ? E2E_FAILURE : E2E_SUCCESS;
}

/* sagad's own command line gives the test the topics and the definitions
 * folder the harness chose (--topic.inbox=..., --definitions.dir=...). */
typedef struct {
  char inbox[128], notify[128], defs[256], dir[256]; /* dir: defs' parent */
} sagad_args_t;

static sagad_args_t sa;

static void read_sagad_args(pid_t pid, sagad_args_t *a) {
  char path[64], buf[8192];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  /* Right after the fork the child may not have exec'd sagad yet. */
  ssize_t n = 0;
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  for (;;) {
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if ((n > 0 && memmem(buf, (size_t)n, "--topic.inbox=", 14)) ||
        ts_now_ms() >= until)
      break;
    usleep(10000);
  }
  assert_true(n > 0);
  buf[n] = '\0';
  memset(a, 0, sizeof *a);
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
    const char *arg = buf + i;
    if (!strncmp(arg, "--topic.inbox=", 14))
      snprintf(a->inbox, sizeof a->inbox, "%s", arg + 14);
    else if (!strncmp(arg, "--topic.notifications=", 22))
      snprintf(a->notify, sizeof a->notify, "%s", arg + 22);
    else if (!strncmp(arg, "--definitions.dir=", 18))
      snprintf(a->defs, sizeof a->defs, "%s", arg + 18);
  }
  assert_true(a->inbox[0] && a->notify[0] && a->defs[0]);
  snprintf(a->dir, sizeof a->dir, "%s", a->defs);
  char *slash = strrchr(a->dir, '/');
  assert_non_null(slash);
  *slash = '\0';
}

typedef sagactl_result_t result_t;

static void pump(void *t) { e2e_pump(t, 20); }

/* Run sagactl with args (NULL-terminated) while pumping the participant:
 * start --wait and retry need it answering while the program runs. The
 * previous result in *r is freed. */
static void run(e2e_t *t, result_t *r, const char *first, ...) {
  const sagactl_how_t how = {.bin = SAGACTL_BIN,
                             .dir = sa.dir,
                             .conninfo = e2e_conninfo(t),
                             .pump = pump,
                             .pump_arg = t};
  sagactl_result_free(r);
  va_list ap;
  va_start(ap, first);
  *r = sagactl_vrun(&how, first, ap);
  va_end(ap);
}

static void expect(const result_t *r, int rc, const char *in_out) {
  if (r->rc != rc || (in_out && !strstr(r->out, in_out)))
    fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout "
             "\"%s\"",
             r->rc, rc, r->out, r->err, in_out ? in_out : "");
}

/* Pump until id's saga_index status is want; fails with the last seen. */
static void wait_status(e2e_t *t, const char *id, const char *want) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (strcmp(e2e_status(t, id), want) != 0 && ts_now_ms() < until)
    e2e_pump(t, 50);
  if (strcmp(e2e_status(t, id), want) != 0)
    fail_msg("saga %s is \"%s\", expected \"%s\"", id, e2e_status(t, id),
             want);
}

/* sagad's admin port, from the line its log has once it listens. */
static int admin_port_of(e2e_t *t) {
  char path[512], buf[65536];
  snprintf(path, sizeof path, "%s/sagad0.log", e2e_dir(t));
  static const char tag[] = "admin endpoint listening on http://127.0.0.1:";
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  while (ts_now_ms() < until) {
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
      fclose(f);
    buf[n] = '\0';
    const char *p = strstr(buf, tag);
    if (p)
      return atoi(p + sizeof tag - 1);
    e2e_pump(t, 50);
  }
  fail_msg("sagad never logged its admin address");
  return -1;
}

/* Pump until GET /metrics holds line (a whole "name{labels} value"). */
static void wait_metric(e2e_t *t, int port, const char *line) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  char want[256];
  snprintf(want, sizeof want, "\n%s\n", line);
  for (;;) {
    char *m = http_get_body(port, "/metrics");
    bool found = m && strstr(m, want);
    if (!found && ts_now_ms() >= until)
      fail_msg("metrics never showed \"%s\":\n%s", line, m ? m : "");
    free(m);
    if (found)
      return;
    e2e_pump(t, 50);
  }
}

static void test_parked_sagas_are_shown_retried_and_resolved_by_sagactl(
    void **state) {
  (void)state;
  fixed = 0;
  e2e_t *t = e2e_new("operator", 5000, script);
  pid_t pid = e2e_sagad_start(t, 0);
  read_sagad_args(pid, &sa);
  const char *kafka = ts_kafka_bootstrap();
  result_t *r = calloc(1, sizeof *r);
  assert_non_null(r);

  /* Two sagas whose compensations fail past their budget (5 attempts). */
  e2e_start(t, "fast", "park-1");
  e2e_start(t, "fast", "park-2");
  wait_status(t, "park-1", "compensation_failed");
  wait_status(t, "park-2", "compensation_failed");
  assert_int_equal(e2e_applied(t, "park-1", 0), 1);
  assert_int_equal(e2e_undone(t, "park-1", 0), 0);
  assert_int_equal(e2e_applied(t, "park-1", 2), 0);

  run(t, r, "status", "park-1", NULL);
  expect(r, 0, "compensation_failed");
  /* s3 failed; the undo of s2 (the first to undo) is the one spent. */
  expect(r, 0, "current step:  s2\n");
  int port = admin_port_of(t);
  wait_metric(t, port, "saga_parked_total{saga_type=\"fast\"} 2");
  run(t, r, "list", "--state", "compensation_failed", NULL);
  expect(r, 0, "park-1");
  expect(r, 0, "park-2");

  /* The participant is fixed; retry gives the compensations a new budget. */
  fixed = 1;
  run(t, r, "retry", "park-1", "--kafka", kafka, "--inbox", sa.inbox,
      "--reason", "inventory service fixed", "--operator", "e2e", NULL);
  expect(r, 0, "retry sent for saga park-1");
  wait_status(t, "park-1", "compensated");
  assert_int_equal(e2e_undone(t, "park-1", 0), 1);
  assert_int_equal(e2e_undone(t, "park-1", 1), 1);
  run(t, r, "status", "park-1", NULL);
  expect(r, 0, "compensated");

  /* The other is retried while the participant is still broken: it parks
   * again, and is then closed by hand. Parking is not finishing: the saga
   * finishes once, compensated, however often it parked. */
  fixed = 0;
  run(t, r, "retry", "park-2", "--kafka", kafka, "--inbox", sa.inbox,
      "--reason", "try again", "--operator", "e2e", NULL);
  expect(r, 0, "retry sent for saga park-2");
  wait_metric(t, port, "saga_parked_total{saga_type=\"fast\"} 3");
  wait_status(t, "park-2", "compensation_failed");
  fixed = 1;

  /* Closed by hand: nothing more is sent to the participant. */
  int undo_cmds = e2e_commands(t, "park-2", 0);
  run(t, r, "resolve", "park-2", "--kafka", kafka, "--inbox", sa.inbox,
      "--reason", "refunded by hand", "--operator", "e2e", NULL);
  expect(r, 0, "resolve sent for saga park-2");
  wait_status(t, "park-2", "compensated");
  run(t, r, "status", "park-2", NULL);
  expect(r, 0, "resolved");
  assert_int_equal(e2e_undone(t, "park-2", 0), 0);
  assert_int_equal(e2e_commands(t, "park-2", 0), undo_cmds);
  /* Neither is parked any more: a second retry is refused by sagactl. */
  run(t, r, "retry", "park-2", "--kafka", kafka, "--inbox", sa.inbox, NULL);
  expect(r, 1, NULL);
  run(t, r, "list", "--state", "compensation_failed", NULL);
  expect(r, 0, NULL);
  assert_null(strstr(r->out, "park-"));
  wait_metric(t, port,
              "saga_finished_total{saga_type=\"fast\",outcome=\"compensated\"} "
              "2");
  char *m = http_get_body(port, "/metrics");
  assert_non_null(m);
  assert_null(strstr(m, "outcome=\"compensation_failed\""));
  free(m);

  /* A saga started by sagactl completes against sagad. */
  run(t, r, "start", "fast", "--input", "{\"sku\": 7}", "--id", "ok-1",
      "--wait", "30s", "--kafka", kafka, "--inbox", sa.inbox,
      "--notifications", sa.notify, "--definitions", sa.defs, NULL);
  expect(r, 0, "ok-1 completed");
  assert_string_equal(e2e_status(t, "ok-1"), "completed");

  /* The retried saga's timeline: parked, the operator's retry, the undo. */
  run(t, r, "history", "park-1", "--definitions", sa.defs, NULL);
  expect(r, 0, "s3");
  expect(r, 0, "Parked");
  expect(r, 0, "OperatorRetry");
  run(t, r, "history", "park-2", "--definitions", sa.defs, NULL);
  expect(r, 0, "Resolved");

  /* Replaying every stream agrees with what sagad indexed. */
  run(t, r, "replay", "--all", "--definitions", sa.defs, NULL);
  expect(r, 0, "3 consistent");

  sagactl_result_free(r);
  free(r);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_parked_sagas_are_shown_retried_and_resolved_by_sagactl),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
