/* The operator's round trip with a real sagad and the real sagactl: sagas
 * whose compensations keep failing park in compensation_failed; sagactl
 * shows and lists them, retry (with the participant answering again) makes
 * one finish compensated, resolve closes another; start --wait, history and
 * replay --all run against what sagad wrote; the same actions by query, for
 * every saga a query matches. The participant is the e2e
 * harness's scripted one (tests/coordinator_e2e/e2e.h). */
#define _GNU_SOURCE /* memmem, posix_openpt */
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
#include <libpq-fe.h>

#include "e2e.h"
#include "saga.pb-c.h"
#include "wire.h"
#include "http_client.h"
#include "run_sagactl.h"
#include "test_support.h"

/* 0: every compensation fails; 1: the participant was fixed. */
static int fixed;
/* 1: the pivot step of "late-*" sagas is answered. */
static int released;

/* "park-*": the first two steps succeed, the third fails, and the undo of
 * the first two fails until `fixed`. "hold-*": the first step is never
 * answered (each attempt times out), so the saga stays before its pivot.
 * "late-*": the pivot step (s2) is not answered until `released`.
 * Anything else succeeds. */
static e2e_answer_t script(const char *saga_id, int step, int compensate,
                           uint32_t attempt) {
  (void)attempt;
  if (!strncmp(saga_id, "hold-", 5))
    return step == 0 && !compensate ? E2E_NO_REPLY : E2E_SUCCESS;
  if (!strncmp(saga_id, "late-", 5))
    return step == 1 && !compensate && !released ? E2E_NO_REPLY
                                                 : E2E_SUCCESS;
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

/* sagactl's stdin: not a terminal, unless a test gives one. */
static const char *stdin_path = "/dev/null";

/* Run sagactl with args (NULL-terminated) while pumping the participant:
 * start --wait and retry need it answering while the program runs. The
 * previous result in *r is freed. */
static void vrun_as(e2e_t *t, const char *conninfo, result_t *r,
                    const char *first, va_list ap) {
  const sagactl_how_t how = {.bin = SAGACTL_BIN,
                             .dir = sa.dir,
                             .conninfo = conninfo,
                             .pump = pump,
                             .pump_arg = t,
                             .stdin_path = stdin_path};
  sagactl_result_free(r);
  *r = sagactl_vrun(&how, first, ap);
}

static void run(e2e_t *t, result_t *r, const char *first, ...) {
  va_list ap;
  va_start(ap, first);
  vrun_as(t, e2e_conninfo(t), r, first, ap);
  va_end(ap);
}

/* run, connected to PostgreSQL with conninfo instead of the harness's. */
static void run_as(e2e_t *t, const char *conninfo, result_t *r,
                   const char *first, ...) {
  va_list ap;
  va_start(ap, first);
  vrun_as(t, conninfo, r, first, ap);
  va_end(ap);
}

static void expect(const result_t *r, int rc, const char *in_out) {
  if (r->rc != rc || (in_out && !strstr(r->out, in_out)))
    fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout "
             "\"%s\"",
             r->rc, rc, r->out, r->err, in_out ? in_out : "");
}

static void expect_err(const result_t *r, int rc, const char *in_err) {
  if (r->rc != rc || !strstr(r->err, in_err))
    fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stderr "
             "\"%s\"",
             r->rc, rc, r->out, r->err, in_err);
}

static void exec_sql(e2e_t *t, const char *sql) {
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(res);
  PQfinish(c);
}

/* sagactl's reads as a role holding only the grants docs/sagactl.md names
 * (SELECT on the events, saga_index, saga_definitions and
 * es_schema_version): every read-only command works. */
static void check_read_only_role(e2e_t *t, result_t *r) {
  char role[64], sql[512], conninfo[1024];
  snprintf(role, sizeof role, "sagactl_ro_%ld", (long)getpid());
  snprintf(sql, sizeof sql,
           "DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN; GRANT SELECT ON "
           "es_events, saga_index, saga_definitions, es_schema_version TO "
           "%s",
           role, role, role);
  exec_sql(t, sql);
  snprintf(conninfo, sizeof conninfo, "%s user=%s", e2e_conninfo(t), role);
  run_as(t, conninfo, r, "status", "park-1", NULL);
  expect(r, 0, "compensated");
  run_as(t, conninfo, r, "list", "--stuck", NULL);
  expect(r, 0, "shown ");
  run_as(t, conninfo, r, "describe", "park-1", NULL);
  expect(r, 0, "OperatorRetry");
  run_as(t, conninfo, r, "history", "park-2", NULL);
  expect(r, 0, "Resolved");
  run_as(t, conninfo, r, "replay", "--all", NULL);
  expect(r, 0, "3 consistent");
  run_as(t, conninfo, r, "retry", "--state", "compensation_failed",
         "--dry-run", NULL);
  expect(r, 0, "dry run: retry would touch 0 of 0 matching sagas");
  snprintf(sql, sizeof sql, "DROP OWNED BY %s; DROP ROLE %s", role, role);
  exec_sql(t, sql);
}

static size_t count_of(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* Pump until id's saga_index status is want; fails with the last seen. */
#define wait_status e2e_wait_status

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
  check_read_only_role(t, r);

  sagactl_result_free(r);
  free(r);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

/* Pump until the participant has received a DO of id's step. */
static void wait_dispatched(e2e_t *t, const char *id, int step) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_attempts_received(t, id, step, 0) == 0 && ts_now_ms() < until)
    e2e_pump(t, 50);
  if (e2e_attempts_received(t, id, step, 0) == 0)
    fail_msg("step %d of saga %s was never dispatched", step, id);
}

/* POST /sagas/{id}/<action> with a JSON body; the answer's body, which
 * must have status want. */
static char *post_action(int port, const char *id, const char *action,
                         const char *body, int want) {
  char req[1024];
  snprintf(req, sizeof req,
           "POST /sagas/%s/%s HTTP/1.1\r\nContent-Type: "
           "application/json\r\nContent-Length: %zu\r\n\r\n%s",
           id, action, strlen(body), body);
  int st = 0;
  char *r = http_roundtrip(port, req, &st);
  assert_non_null(r);
  if (st != want)
    fail_msg("POST /sagas/%s/%s answered %d, want %d:\n%s", id, action, st,
             want, r);
  char *b = strdup(strstr(r, "\r\n\r\n") + 4);
  free(r);
  return b;
}

static char *post_cancel(int port, const char *id, const char *body,
                         int want) {
  return post_action(port, id, "cancel", body, want);
}

/* The timeline page's Retry and Resolve against a real sagad: POST
 * /sagas/{id}/retry and /resolve produce the OperatorAction sagactl
 * produces; the coordinator applies it and records who and why; a saga
 * that is not parked is refused (409, its state named), an unknown one is
 * 404. */
static void test_parked_sagas_are_retried_and_resolved_through_the_api(
    void **state) {
  (void)state;
  fixed = 0;
  e2e_t *t = e2e_new("operator_http", 5000, script);
  (void)e2e_sagad_start(t, 0);
  int port = admin_port_of(t);
  e2e_start(t, "fast", "park-h1");
  e2e_start(t, "fast", "park-h2");
  e2e_start(t, "fast", "ok-h1");
  wait_status(t, "park-h1", "compensation_failed");
  wait_status(t, "park-h2", "compensation_failed");
  wait_status(t, "ok-h1", "completed");

  char *b = post_action(port, "ok-h1", "retry", "{\"reason\":\"x\"}", 409);
  assert_non_null(strstr(b, "retry refused: the saga is completed, not "
                            "parked in compensation_failed"));
  free(b);
  free(post_action(port, "nobody-h", "resolve", "{\"reason\":\"x\"}", 404));

  fixed = 1;
  b = post_action(port, "park-h1", "retry",
                  "{\"reason\":\"inventory fixed\",\"operator\":\"web\"}",
                  202);
  assert_string_equal(b, "{\"saga_id\":\"park-h1\",\"action\":\"retry\","
                         "\"status\":\"sent\"}");
  free(b);
  wait_status(t, "park-h1", "compensated");
  assert_int_equal(e2e_undone(t, "park-h1", 0), 1);

  int undo_cmds = e2e_commands(t, "park-h2", 0);
  b = post_action(port, "park-h2", "resolve",
                  "{\"reason\":\"refunded by hand\",\"operator\":\"web\"}",
                  202);
  assert_non_null(strstr(b, "\"action\":\"resolve\""));
  free(b);
  wait_status(t, "park-h2", "compensated");
  assert_int_equal(e2e_commands(t, "park-h2", 0), undo_cmds);

  /* who and why, in each saga's history */
  b = http_get_body(port, "/sagas/park-h1");
  assert_non_null(b);
  assert_non_null(strstr(b, "\"event\":\"OperatorRetry\""));
  assert_non_null(strstr(b, "\"reason\":\"inventory fixed\",\"operator\":"
                            "\"web\""));
  free(b);
  b = http_get_body(port, "/sagas/park-h2");
  assert_non_null(b);
  assert_non_null(strstr(b, "\"event\":\"Resolved\""));
  assert_non_null(strstr(b, "\"reason\":\"refunded by hand\",\"operator\":"
                            "\"web\""));
  free(b);
  /* no longer parked: refused */
  b = post_action(port, "park-h2", "resolve", "{\"reason\":\"x\"}", 409);
  assert_non_null(strstr(b, "the saga is compensated"));
  free(b);

  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

/* Pump until id has n notifications of kind (wire number). */
static void wait_notified(e2e_t *t, const char *id, int kind, size_t n) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_notifications_seen(t, id, kind) < n && ts_now_ms() < until)
    e2e_pump(t, 50);
  if (e2e_notifications_seen(t, id, kind) < n)
    fail_msg("saga %s: fewer than %zu notifications of kind %d", id, n,
             kind);
}

/* Invariant 10 against a real sagad: a cancel before the pivot (the first
 * step held by the participant) compensates what was done or may have
 * been, and sagactl cancel --wait exits 0; after the pivot it is refused
 * with the reason (sagactl exits 1) and the saga completes; a finished
 * saga's cancel changes nothing; the same through POST /sagas/{id}/cancel;
 * who and why are in the history. */
static void test_cancel_before_the_pivot_compensates_after_it_is_refused(
    void **state) {
  (void)state;
  released = 0;
  e2e_t *t = e2e_new("cancel", 5000, script);
  /* s1 is retried every 2 s for as long as the test needs it held. */
  e2e_write_pivot_def(t, "piv", 2000, 1000);
  pid_t pid = e2e_sagad_start(t, 0);
  read_sagad_args(pid, &sa);
  const char *kafka = ts_kafka_bootstrap();
  result_t *r = calloc(1, sizeof *r);
  assert_non_null(r);
  int port = admin_port_of(t);

  /* Before the pivot: s1 in flight, never answered. */
  e2e_start(t, "piv", "hold-1");
  wait_dispatched(t, "hold-1", 0);
  run(t, r, "cancel", "hold-1", "--reason", "customer called\nticket 7",
      "--operator", "alice", "--wait", "60s", "--kafka", kafka, "--inbox",
      sa.inbox, "--notifications", sa.notify, NULL);
  expect(r, 0, "hold-1 compensated: cancelled: customer called");
  assert_string_equal(e2e_status(t, "hold-1"), "compensated");
  /* s1's outcome was unknown (timed out): undone; the pivot never sent. */
  assert_int_equal(e2e_undone(t, "hold-1", 0), 1);
  assert_int_equal(e2e_commands(t, "hold-1", 1), 0);
  run(t, r, "history", "hold-1", "--definitions", sa.defs, NULL);
  expect(r, 0, "CancelRequested");
  expect(r, 0, "cancelled by alice: customer called ticket 7");
  expect(r, 0, "cancelled: customer called ticket 7");
  run(t, r, "history", "hold-1", "--json", NULL);
  expect(r, 0, "\"operator\":\"alice\"");
  run(t, r, "status", "hold-1", NULL);
  expect(r, 0, "cancelled:     customer called");
  expect(r, 0, "(by alice)");
  /* Cancelling it again: finished, said by sagactl from saga_index ... */
  run(t, r, "cancel", "hold-1", "--reason", "again", "--kafka", kafka,
      "--inbox", sa.inbox, NULL);
  expect(r, 1, NULL);
  assert_non_null(strstr(r->err, "already compensated: nothing to cancel"));
  /* ... and by sagad to a CancelSaga that reaches it (CANCEL_REFUSED). */
  Saga__V1__CancelSaga c;
  saga__v1__cancel_saga__init(&c);
  c.saga_id = SAGA_MUT("hold-1");
  c.reason = SAGA_MUT("raw");
  uint8_t raw[256];
  size_t n = saga__v1__cancel_saga__pack(&c, raw);
  e2e_produce_raw(t, "saga.v1.CancelSaga", "hold-1", raw, n);
  wait_notified(t, "hold-1", SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_CANCEL_REFUSED, 1);
  /* A saga never started is answered too. */
  c.saga_id = SAGA_MUT("nobody-1");
  n = saga__v1__cancel_saga__pack(&c, raw);
  e2e_produce_raw(t, "saga.v1.CancelSaga", "nobody-1", raw, n);
  wait_notified(t, "nobody-1", SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_CANCEL_REFUSED, 1);

  /* After the pivot: s2 dispatched, not answered. Refused, named. */
  e2e_start(t, "piv", "late-1");
  wait_dispatched(t, "late-1", 1);
  run(t, r, "cancel", "late-1", "--reason", "too late", "--operator", "bob",
      "--wait", "60s", "--kafka", kafka, "--inbox", sa.inbox,
      "--notifications", sa.notify, NULL);
  expect(r, 1, NULL);
  if (!strstr(r->err, "cancel refused: saga late-1: after the pivot step s2"))
    fail_msg("stderr: %s", r->err);
  /* The admin endpoint refuses it too, from sagad's own state. */
  char *b = post_cancel(port, "late-1", "{\"reason\":\"x\"}", 409);
  assert_non_null(strstr(b, "after the pivot step s2"));
  free(b);
  /* The saga goes on: the pivot answers, s3 runs, it completes. */
  released = 1;
  wait_status(t, "late-1", "completed");
  assert_int_equal(e2e_undone(t, "late-1", 0), 0);
  assert_int_equal(e2e_undone(t, "late-1", 1), 0);
  run(t, r, "history", "late-1", NULL);
  assert_null(strstr(r->out, "CancelRequested"));
  b = post_cancel(port, "late-1", "{\"reason\":\"x\"}", 409);
  assert_non_null(strstr(b, "already completed: nothing to cancel"));
  free(b);

  /* Through the admin endpoint before the pivot. */
  e2e_start(t, "piv", "hold-2");
  wait_dispatched(t, "hold-2", 0);
  b = post_cancel(port, "hold-2",
                  "{\"reason\":\"via the admin API\",\"operator\":\"carol\"}",
                  202);
  assert_non_null(strstr(b, "\"cancel\":\"sent\""));
  free(b);
  wait_status(t, "hold-2", "compensated");
  assert_int_equal(e2e_undone(t, "hold-2", 0), 1);
  b = http_get_body(port, "/sagas/hold-2");
  assert_non_null(b);
  assert_non_null(strstr(b, "\"event\":\"CancelRequested\""));
  assert_non_null(strstr(b, "\"reason\":\"via the admin API\""));
  assert_non_null(strstr(b, "\"operator\":\"carol\""));
  free(b);
  b = post_cancel(port, "nobody-2", "{\"reason\":\"x\"}", 404);
  free(b);

  /* Replaying every stream agrees with what sagad indexed. */
  run(t, r, "replay", "--all", "--definitions", sa.defs, NULL);
  expect(r, 0, "3 consistent");

  sagactl_result_free(r);
  free(r);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  char path[512];
  snprintf(path, sizeof path, "%s/defs/piv.json", e2e_dir(t));
  unlink(path);
  e2e_free(t);
}

static const char *const PARKED[] = {"park-1", "park-2", "park-3", "park-4",
                                     "park-5"};
#define NPARKED (sizeof PARKED / sizeof *PARKED)

/* Operator actions by query: after an "outage" of the participant, every
 * saga it left parked is retried with one command, paging through the
 * whole query (pages of 2 rows); a dry run, a refusal without --yes and an
 * unconfirmed prompt on a terminal send nothing; a saga the action does
 * not apply to is refused with why; resolve and cancel by query go the
 * same way, with reason and operator in each history; --output on list,
 * status and history. */
static void test_parked_sagas_are_retried_by_query_after_an_outage(
    void **state) {
  (void)state;
  fixed = 0;
  e2e_t *t = e2e_new("bulk", 5000, script);
  /* s1 of "piv" is retried every 2 s while the test holds it. */
  e2e_write_pivot_def(t, "piv", 2000, 1000);
  read_sagad_args(e2e_sagad_start(t, 0), &sa);
  const char *kafka = ts_kafka_bootstrap();
  const char *inbox = sa.inbox;
  setenv("SAGACTL_TEST_PAGE_SIZE", "2", 1); /* pages of 2 rows */
  result_t *r = calloc(1, sizeof *r);
  assert_non_null(r);

  /* The outage: every undo fails; five sagas park. One completes. */
  for (size_t i = 0; i < NPARKED; i++)
    e2e_start(t, "fast", PARKED[i]);
  e2e_start(t, "fast", "ok-1");
  for (size_t i = 0; i < NPARKED; i++)
    wait_status(t, PARKED[i], "compensation_failed");
  wait_status(t, "ok-1", "completed");
  int undo_cmds = e2e_commands(t, "park-1", 0);

  /* Usage: a query needs a filter; not both an id and a query; cancel
   * needs its reason; --wait is for one saga. Nothing reaches Kafka. */
  run(t, r, "retry", "--kafka", kafka, "--inbox", inbox, NULL);
  expect_err(r, 2, "expected a saga id, or a query");
  run(t, r, "retry", "park-1", "--state", "compensation_failed", NULL);
  expect_err(r, 2, "not both");
  run(t, r, "retry", "--state", "parked", NULL);
  expect_err(r, 2, "--state: unknown status \"parked\"");
  run(t, r, "cancel", "--type", "fast", "--yes", "--kafka", kafka, NULL);
  expect_err(r, 2, "--reason TEXT is required");
  run(t, r, "cancel", "--type", "fast", "--reason", "x", "--wait", "5s", NULL);
  expect_err(r, 2, "--wait applies to one saga id");

  /* Without a terminal and without --yes: refused, nothing sent. */
  run(t, r, "retry", "--state", "compensation_failed", "--type", "fast",
      "--kafka", kafka, "--inbox", inbox, NULL);
  expect_err(r, 2, "5 of 5 matching sagas would be touched; not acting "
                   "without a confirmation");

  /* A dry run lists every page of the query and sends nothing. */
  run(t, r, "retry", "--state", "compensation_failed", "--type", "fast",
      "--since", "1h", "--dry-run", NULL);
  expect(r, 0, "dry run: retry would touch 5 of 5 matching sagas (0 "
               "refused); nothing was sent");
  for (size_t i = 0; i < NPARKED; i++)
    assert_non_null(strstr(r->out, PARKED[i]));
  assert_int_equal(count_of(r->out, "would_touch "), NPARKED);
  /* The same as JSON lines: one object per saga, the summary on stderr. */
  run(t, r, "retry", "--type", "fast", "--dry-run", "--output", "jsonl", NULL);
  expect(r, 0, NULL);
  assert_int_equal(count_of(r->out, "\n"), NPARKED + 1);
  assert_int_equal(count_of(r->out, "\"result\":\"would_touch\""), NPARKED);
  assert_non_null(strstr(r->out, "{\"saga_id\":\"ok-1\",\"type\":\"fast\","
                                 "\"status\":\"completed\",\"result\":"
                                 "\"refused\",\"reason\":\"completed, not "
                                 "parked in compensation_failed\"}\n"));
  assert_non_null(strstr(r->err, "would touch 5 of 6 matching sagas"));

  /* On a terminal the operator is asked; "n" sends nothing. */
  int pt = posix_openpt(O_RDWR | O_NOCTTY);
  assert_true(pt >= 0);
  assert_int_equal(grantpt(pt), 0);
  assert_int_equal(unlockpt(pt), 0);
  stdin_path = ptsname(pt);
  assert_non_null(stdin_path);
  assert_int_equal(write(pt, "n\n", 2), 2);
  run(t, r, "retry", "--state", "compensation_failed", "--kafka", kafka,
      "--inbox", inbox, NULL);
  expect_err(r, 1, "retry 5 sagas? [y/N] ");
  expect_err(r, 1, "retry: not confirmed: nothing was sent");
  stdin_path = "/dev/null";
  close(pt);
  assert_int_equal(e2e_commands(t, "park-1", 0), undo_cmds);

  /* The participant is back: one command retries every parked saga of
   * the type, page after page; the completed one is refused with why. */
  fixed = 1;
  run(t, r, "retry", "--type", "fast", "--since", "1h", "--yes", "--reason",
      "inventory back after the outage", "--operator", "oncall", "--kafka",
      kafka, "--inbox", inbox, NULL);
  expect(r, 1, "retry: 6 sagas matched: 5 touched, 1 refused, 0 failed");
  assert_int_equal(count_of(r->out, "touched "), NPARKED);
  assert_non_null(strstr(r->out, "completed, not parked in "
                                 "compensation_failed"));
  for (size_t i = 0; i < NPARKED; i++)
    wait_status(t, PARKED[i], "compensated");
  /* Each saga got exactly one retry: the dry run, the refusal and the
   * unconfirmed prompt sent none (they would be earlier in its partition,
   * so applied before this one). Reason and operator are recorded. */
  for (size_t i = 0; i < NPARKED; i++) {
    run(t, r, "history", PARKED[i], "--output", "jsonl", NULL);
    expect(r, 0, NULL);
    assert_int_equal(count_of(r->out, "\"OperatorRetry\""), 1);
    assert_non_null(strstr(r->out, "oncall"));
    assert_non_null(strstr(r->out, "inventory back after the outage"));
    assert_int_equal(e2e_undone(t, PARKED[i], 0), 1);
  }
  /* Nothing parked is left: a query that matches nothing touches nothing. */
  run(t, r, "retry", "--state", "compensation_failed", "--yes", "--kafka",
      kafka, "--inbox", inbox, NULL);
  expect(r, 0, "retry: 0 sagas matched: 0 touched, 0 refused, 0 failed");

  /* Resolve by query: two more park while the participant is down. */
  fixed = 0;
  e2e_start(t, "fast", "park-6");
  e2e_start(t, "fast", "park-7");
  wait_status(t, "park-6", "compensation_failed");
  wait_status(t, "park-7", "compensation_failed");
  run(t, r, "resolve", "--state", "compensation_failed", "--yes", "--reason",
      "refunded by hand", "--output", "json", "--kafka", kafka, "--inbox",
      inbox, NULL);
  expect(r, 0, "\"action\":\"resolve\",\"dry_run\":false,\"matched\":2,"
               "\"touched\":2,\"refused\":0,\"failed\":0}");
  wait_status(t, "park-6", "compensated");
  wait_status(t, "park-7", "compensated");
  run(t, r, "status", "park-6", "--output", "jsonl", NULL);
  expect(r, 0, "\"resolved_by_operator\":true");
  assert_int_equal(count_of(r->out, "\n"), 1);

  /* Cancel by query: two sagas held before their pivot are compensated;
   * the reason and the operator are in each history. */
  e2e_start(t, "piv", "hold-1");
  e2e_start(t, "piv", "hold-2");
  wait_dispatched(t, "hold-1", 0);
  wait_dispatched(t, "hold-2", 0);
  run(t, r, "cancel", "--type", "piv", "--state", "running", "--yes",
      "--reason", "bad batch", "--operator", "alice", "--kafka", kafka,
      "--inbox", inbox, "--notifications", sa.notify, NULL);
  expect(r, 0, "cancel: 2 sagas matched: 2 touched, 0 refused, 0 failed");
  wait_status(t, "hold-1", "compensated");
  wait_status(t, "hold-2", "compensated");
  run(t, r, "history", "hold-2", "--output", "json", NULL);
  expect(r, 0, "\"operator\":\"alice\"");
  assert_int_equal(count_of(r->out, "\n"), 1);
  /* list as JSON lines: one object per saga, for jq. */
  run(t, r, "list", "--type", "piv", "--output", "jsonl", NULL);
  expect(r, 0, "\"saga_id\":\"hold-1\"");
  assert_int_equal(count_of(r->out, "\n"), 2);

  sagactl_result_free(r);
  free(r);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  char path[600];
  snprintf(path, sizeof path, "%s/defs/piv.json", e2e_dir(t));
  unlink(path);
  e2e_free(t);
  unsetenv("SAGACTL_TEST_PAGE_SIZE");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_parked_sagas_are_shown_retried_and_resolved_by_sagactl),
      cmocka_unit_test(
          test_cancel_before_the_pivot_compensates_after_it_is_refused),
      cmocka_unit_test(
          test_parked_sagas_are_retried_and_resolved_through_the_api),
      cmocka_unit_test(
          test_parked_sagas_are_retried_by_query_after_an_outage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
