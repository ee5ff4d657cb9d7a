/* Long waits survive restarts: a saga waits on a step whose deadline is
 * 30 days away (the most a definition may say); sagad is killed and
 * restarted, and the saga keeps the same absolute deadline (saga_index's
 * next_deadline_at, and the deadline_ms of the command re-sent with the
 * same attempt), and the same stuck_at (its step's own stuck_after_ms),
 * rather than starting a new wait. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "e2e.h"
#include "test_support.h"

#define DAY_MS 86400000LL

/* Unix epoch ms (deadlines are wall-clock times; ts_now_ms is monotonic). */
static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* s2 never answers (the saga waits on its deadline); s1 and s3 succeed. */
static e2e_answer_t script(const char *id, int step, int comp,
                           uint32_t attempt) {
  (void)id;
  (void)comp;
  (void)attempt;
  return step == 1 ? E2E_NO_REPLY : E2E_SUCCESS;
}

typedef struct {
  char status[32], step[32];
  int64_t version, updated_ms, deadline_ms, stuck_at_ms;
} row_t;

static row_t index_row(e2e_t *t, const char *id) {
  row_t row;
  memset(&row, 0, sizeof row);
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  const char *p[1] = {id};
  PGresult *r = PQexecParams(
      c,
      "SELECT status, coalesce(current_step, ''), version, "
      "(extract(epoch FROM updated_at) * 1000)::bigint, "
      "(extract(epoch FROM next_deadline_at) * 1000)::bigint, "
      "CASE WHEN isfinite(stuck_at) THEN "
      "(extract(epoch FROM stuck_at) * 1000)::bigint ELSE 0 END "
      "FROM saga_index WHERE saga_id = $1",
      1, NULL, p, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  if (PQntuples(r) == 1) {
    snprintf(row.status, sizeof row.status, "%s", PQgetvalue(r, 0, 0));
    snprintf(row.step, sizeof row.step, "%s", PQgetvalue(r, 0, 1));
    row.version = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    row.updated_ms = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    row.deadline_ms = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
    row.stuck_at_ms = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
  }
  PQclear(r);
  PQfinish(c);
  return row;
}

/* Pump until the participant has received n commands of id's step s2. */
static void wait_commands(e2e_t *t, const char *id, int n) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  while (e2e_commands(t, id, 1) < n && ts_now_ms() < until)
    e2e_pump(t, 50);
  assert_true(e2e_commands(t, id, 1) >= n);
}

static void test_a_thirty_day_deadline_is_the_same_after_a_restart(
    void **state) {
  (void)state;
  /* "fast": 30-day step and compensation timeouts, one attempt; the
   * default stuck_after_ms (5 min). */
  e2e_t *t = e2e_new("long_waits", (uint32_t)(30 * DAY_MS), script);
  e2e_sagad_start(t, 0);
  int64_t before = wall_ms();
  e2e_start(t, "fast", "lw-1");
  wait_commands(t, "lw-1", 1);
  int64_t after = wall_ms();
  row_t r1 = index_row(t, "lw-1");
  assert_string_equal(r1.status, "running");
  assert_string_equal(r1.step, "s2");
  int64_t deadline = e2e_command_deadline(t, "lw-1");
  /* s2 was dispatched between before and after, 30 days ahead. */
  assert_true(deadline >= before + 30 * DAY_MS);
  assert_true(deadline <= after + 30 * DAY_MS);
  assert_int_equal(r1.deadline_ms, deadline);
  assert_int_equal(r1.stuck_at_ms, r1.updated_ms + 300000);

  assert_int_equal(e2e_sagad_stop(t, 0, SIGKILL), 128 + SIGKILL);
  e2e_pump(t, 1000); /* the restart happens measurably later */
  e2e_sagad_start(t, 0);
  /* Recovery re-sends s2's command: the same attempt, the same deadline. */
  wait_commands(t, "lw-1", 2);
  assert_int_equal(e2e_attempts_received(t, "lw-1", 1, 0), 1u);
  assert_int_equal(e2e_command_deadline(t, "lw-1"), deadline);
  row_t r2 = index_row(t, "lw-1");
  assert_string_equal(r2.status, "running");
  assert_int_equal(r2.version, r1.version);
  assert_int_equal(r2.deadline_ms, deadline);
  assert_int_equal(r2.stuck_at_ms, r1.stuck_at_ms);
  /* The saga goes on from there: s2's success completes it. */
  e2e_reply(t, "lw-1", 1, 1, 1);
  const char *ids[1] = {"lw-1"};
  (void)e2e_wait_terminal_at_least(t, ids, 1, 1, 60000);
  assert_string_equal(e2e_status(t, "lw-1"), "completed");
  row_t r3 = index_row(t, "lw-1");
  assert_int_equal(r3.deadline_ms, 0);
  assert_int_equal(r3.stuck_at_ms, 0); /* 'infinity': never */
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_thirty_day_deadline_is_the_same_after_a_restart),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
