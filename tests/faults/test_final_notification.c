/* A saga's final notification is an effect of its last transition like any
 * command: it must reach the notification topic at least once whatever the
 * moment of a crash (issue 14, case 12). The window is widened with
 * kafka.linger.ms=2000: the final transition is committed, its notification
 * waits in the producer, and sagad is killed (SIGKILL) as soon as the saga
 * shows terminal in saga_index. The restarted sagad must send it. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "faults.h"
#include "test_support.h"

enum { WIRE_COMPLETED = 3, WIRE_COMPENSATED = 4 };

static void crash_after_the_final_transition(const char *name,
                                             const char *id, int kind,
                                             const char *status) {
  e2e_t *t = e2e_new(name, 3000, faults_script);
  faults_use_product();
  const char *const slow_producer[] = {"--kafka.linger.ms=2000", NULL};
  e2e_sagad_start_with(t, 0, slow_producer);
  e2e_start(t, "slow", id);
  int64_t until = ts_now_ms() + ts_timeout_ms(90000);
  while (strcmp(e2e_status(t, id), status) != 0 && ts_now_ms() < until)
    e2e_pump(t, 2);
  assert_string_equal(e2e_status(t, id), status);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);

  e2e_sagad_start(t, 0);
  until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_notifications_seen(t, id, kind) == 0 && ts_now_ms() < until)
    e2e_pump(t, 20);
  printf("# %s: %zu final notification(s) after the crash\n", id,
         e2e_notifications_seen(t, id, kind));
  assert_true(e2e_notifications_seen(t, id, kind) >= 1);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

static void test_a_completed_saga_is_notified_after_a_crash(void **state) {
  (void)state;
  crash_after_the_final_transition("flt_final_ok", "ok-final", WIRE_COMPLETED,
                                   "completed");
}

static void test_a_compensated_saga_is_notified_after_a_crash(void **state) {
  (void)state;
  crash_after_the_final_transition("flt_final_fail", "fail-final",
                                   WIRE_COMPENSATED, "compensated");
}

/* saga_index's notify_pending of id: "t", "f", or "" when no row. */
static void notify_pending(e2e_t *t, const char *id, char *out, size_t len) {
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  const char *p[1] = {id};
  PGresult *r = PQexecParams(
      c, "SELECT notify_pending FROM saga_index WHERE saga_id = $1", 1, NULL,
      p, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  snprintf(out, len, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
  PQclear(r);
  PQfinish(c);
}

/* A saga run to its COMPLETED notification, which the test's consumer
 * has read (so it was delivered), on a sagad that then gets no input. */
static e2e_t *one_saga_notified(const char *name, const char *id) {
  e2e_t *t = e2e_new(name, 3000, faults_script);
  faults_use_product();
  e2e_sagad_start(t, 0);
  e2e_start(t, "slow", id);
  int64_t until = ts_now_ms() + ts_timeout_ms(90000);
  while (e2e_notifications_seen(t, id, WIRE_COMPLETED) == 0 &&
         ts_now_ms() < until)
    e2e_pump(t, 5);
  assert_true(e2e_notifications_seen(t, id, WIRE_COMPLETED) >= 1);
  return t;
}

/* The delivery of the last saga's notification was recorded only by the
 * next batch: on a sagad that got no more input the flag stayed set, and
 * every start sent that notification again. An idle sagad records it on
 * its own within a second or so. */
static void test_an_idle_sagad_records_a_delivered_notification(void **state) {
  (void)state;
  e2e_t *t = one_saga_notified("flt_mark_idle", "idle-mark");
  char v[8] = "";
  int64_t until = ts_now_ms() + ts_timeout_ms(15000);
  do {
    e2e_pump(t, 50);
    notify_pending(t, "idle-mark", v, sizeof v);
  } while (strcmp(v, "f") != 0 && ts_now_ms() < until);
  printf("# notify_pending of an idle sagad's last saga: %s\n", v);
  assert_string_equal(v, "f");
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

/* And a sagad stopped right after the delivery records it before its
 * store closes: the next start does not send it again. */
static void test_a_graceful_stop_records_a_delivered_notification(
    void **state) {
  (void)state;
  e2e_t *t = one_saga_notified("flt_mark_stop", "stop-mark");
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  char v[8] = "";
  notify_pending(t, "stop-mark", v, sizeof v);
  printf("# notify_pending after a graceful stop: %s\n", v);
  assert_string_equal(v, "f");
  /* restarted: no second COMPLETED */
  size_t seen = e2e_notifications_seen(t, "stop-mark", WIRE_COMPLETED);
  e2e_sagad_start(t, 0);
  int64_t until = ts_now_ms() + ts_timeout_ms(5000);
  while (ts_now_ms() < until)
    e2e_pump(t, 50);
  assert_int_equal(e2e_notifications_seen(t, "stop-mark", WIRE_COMPLETED),
                   seen);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_completed_saga_is_notified_after_a_crash),
      cmocka_unit_test(test_a_compensated_saga_is_notified_after_a_crash),
      cmocka_unit_test(test_an_idle_sagad_records_a_delivered_notification),
      cmocka_unit_test(test_a_graceful_stop_records_a_delivered_notification),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
