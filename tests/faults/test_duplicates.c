/* Duplicates and reordering: a participant that replies twice, replies
 * late after a retry was sent, replies to an attempt never sent, replies
 * for steps of finished sagas and for sagas that do not exist. Nothing
 * changes twice (each saga's status and ledger are exact, no saga appears
 * from a stray reply), and sagad counts each kind of anomaly. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "faults.h"
#include "test_support.h"

#define N 20
#define NAME "flt_dups"

static e2e_t *T;
static int late_sent;

/* twice-*: every DO answered twice. late-* (type "retry"): step 1's first
 * attempt unanswered until the second arrives, then both answered, the
 * first late. hold-*: step 3 unanswered (the test answers it). */
static e2e_answer_t script(const char *id, int step, int comp,
                           uint32_t attempt) {
  if (comp)
    return E2E_SUCCESS;
  if (!strncmp(id, "twice-", 6))
    return E2E_REPLY_TWICE;
  if (!strncmp(id, "late-", 5) && step == 0) {
    if (attempt == 1)
      return E2E_NO_REPLY;
    e2e_reply(T, id, 0, 1, E2E_SUCCESS); /* the late one, after attempt 2 */
    late_sent++;
    return E2E_SUCCESS;
  }
  if (!strncmp(id, "hold-", 5) && step == 2)
    return E2E_NO_REPLY;
  return E2E_SUCCESS;
}

/* A third definition, "retry": slow's steps with a 1 s timeout and three
 * attempts, written next to the harness's own. */
static void write_retry_def(void) {
  char dir[160], src[200], dst[200];
  snprintf(dir, sizeof dir, "/tmp/sagad-e2e-%s-%d/defs", NAME, (int)getpid());
  snprintf(src, sizeof src, "%s/slow.json", dir);
  snprintf(dst, sizeof dst, "%s/retry.json", dir);
  FILE *f = fopen(src, "r");
  assert_non_null(f);
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char out[8300];
  char *p = strstr(buf, "\"slow\"");
  char *q = strstr(buf, "\"timeout_ms\": 60000");
  char *r = strstr(buf, "\"max_attempts\": 1");
  assert_true(p && q && r && p < q && q < r);
  snprintf(out, sizeof out, "%.*s\"retry\"%.*s\"timeout_ms\": 1000%.*s"
           "\"max_attempts\": 3%s",
           (int)(p - buf), buf, (int)(q - p - 6), p + 6,
           (int)(r - q - 19), q + 19, r + 17);
  f = fopen(dst, "w");
  assert_non_null(f);
  fputs(out, f);
  fclose(f);
}

static void ids(char (*buf)[32], const char **ptr, const char *prefix) {
  for (int i = 0; i < N; i++) {
    snprintf(buf[i], 32, "%s-%d", prefix, i);
    ptr[i] = buf[i];
  }
}

static void
test_duplicate_late_stray_and_unknown_replies_change_nothing_and_are_counted(
    void **state) {
  (void)state;
  T = e2e_new(NAME, 60000, script);
  write_retry_def();
  e2e_sagad_start(T, 0);
  static char tb[N][32], lb[N][32], hb[N][32], gb[N][32];
  const char *tw[N], *la[N], *ho[N], *gh[N];
  ids(tb, tw, "twice");
  ids(lb, la, "late");
  ids(hb, ho, "hold");
  ids(gb, gh, "ghost");
  for (int i = 0; i < N; i++) {
    e2e_start(T, "slow", tw[i]);
    e2e_start(T, "retry", la[i]);
    e2e_start(T, "slow", ho[i]);
  }
  assert_int_equal(e2e_wait_terminal(T, tw, N, 60000), N);
  assert_int_equal(e2e_wait_terminal(T, la, N, 60000), N);
  /* hold-*: wait until each has sent step 3, then answer an attempt never
   * sent, repeat step 1's reply, and finally answer the real attempt. */
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  for (int i = 0; i < N; i++)
    while (e2e_commands(T, ho[i], 2) < 1 && ts_now_ms() < until)
      e2e_pump(T, 20);
  for (int i = 0; i < N; i++) {
    assert_int_equal(e2e_commands(T, ho[i], 2), 1);
    e2e_reply(T, ho[i], 2, 7, E2E_SUCCESS); /* wrong attempt */
    e2e_reply(T, ho[i], 0, 1, E2E_SUCCESS); /* step 1 again */
  }
  e2e_pump(T, 1000);
  for (int i = 0; i < N; i++)
    assert_string_equal(e2e_status(T, ho[i]), "running");
  for (int i = 0; i < N; i++) {
    e2e_reply(T, ho[i], 2, 1, E2E_SUCCESS);
    e2e_reply(T, gh[i], 0, 1, E2E_SUCCESS); /* no such saga */
  }
  assert_int_equal(e2e_wait_terminal(T, ho, N, 60000), N);
  for (int i = 0; i < N; i++) /* after the end */
    e2e_reply(T, tw[i], 1, 1, E2E_FAILURE);
  e2e_pump(T, 1500);

  for (int i = 0; i < N; i++) {
    assert_string_equal(e2e_status(T, tw[i]), "completed");
    assert_string_equal(e2e_status(T, la[i]), "completed");
    assert_string_equal(e2e_status(T, ho[i]), "completed");
    assert_string_equal(e2e_status(T, gh[i]), "");
    for (int s = 0; s < E2E_STEPS; s++) {
      assert_int_equal(e2e_applied(T, tw[i], s), 1);
      assert_int_equal(e2e_undone(T, tw[i], s), 0);
      assert_int_equal(e2e_applied(T, la[i], s), 1);
      assert_int_equal(e2e_undone(T, ho[i], s), 0);
    }
    assert_int_equal(e2e_commands(T, la[i], 0), 2); /* attempts 1 and 2 */
    assert_int_equal(e2e_applied(T, ho[i], 2), 0);  /* answered by the test */
  }
  assert_int_equal(late_sent, N);
  assert_int_equal(e2e_sagad_stop(T, 0, SIGTERM), 0);
  long dup = faults_log_counter(NAME, 0, "duplicate");
  long late = faults_log_counter(NAME, 0, "late");
  long unexpected = faults_log_counter(NAME, 0, "unexpected");
  long unknown = faults_log_counter(NAME, 0, "unknown_saga");
  long finished = faults_log_counter(NAME, 0, "finished");
  printf("# anomalies counted: duplicate=%ld late=%ld unexpected=%ld "
         "unknown_saga=%ld finished=%ld\n",
         dup, late, unexpected, unknown, finished);
  /* twice-*: 3 second replies each; hold-*: step 1 repeated; the replies
   * after the end (an attempt already answered: judged a duplicate, or
   * "finished" when the saga's end is all that is known). */
  assert_true(dup + finished >= 3 * N + N + N);
  assert_true(late >= N);
  assert_true(unexpected >= N);
  assert_int_equal(unknown, N);
  e2e_free(T);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_duplicate_late_stray_and_unknown_replies_change_nothing_and_are_counted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
