/* Scale-out: three sagad processes in one consumer group share the inbox's
 * partitions; one is killed with SIGKILL mid-run and the others take its
 * partitions over. Every saga ends as scripted (one in five compensated
 * after failing at step 2), the participant's ledger shows each effect
 * applied once and each compensated effect undone once, and no saga was
 * driven by two owners: every stream has versions 1..n with no gap, and no
 * transition (the same event for the same step, action and attempt) is
 * stored twice. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "e2e.h"
#include "saga_codec.h"
#include "test_support.h"

#define N 600
#define FIRST_WAVE 400

static char ids[N][E2E_FAIL2_ID_LEN];
static const char *idp[N];

static void check_ledger(e2e_t *t) {
  for (int i = 0; i < N; i++) {
    const char *st = e2e_status(t, idp[i]);
    int fail = !strncmp(idp[i], "fail2-", 6);
    assert_string_equal(st, fail ? "compensated" : "completed");
    for (int s = 0; s < E2E_STEPS; s++) {
      int applied = fail ? s == 0 : 1;
      assert_int_equal(e2e_applied(t, idp[i], s), applied);
      assert_int_equal(e2e_undone(t, idp[i], s), fail && s == 0);
    }
  }
}

/* One transition's identity: what a second owner would repeat. */
typedef struct {
  uint8_t type, step, action;
  uint16_t attempt;
} mark_t;

static void check_streams(e2e_t *t) {
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexecParams(
      c,
      "SELECT stream_id, stream_version, data FROM es_events "
      "WHERE stream_id LIKE 'saga-%' ORDER BY stream_id, stream_version",
      0, NULL, NULL, NULL, NULL, 1);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  int rows = PQntuples(r);
  int streams = 0;
  mark_t marks[64];
  size_t nmarks = 0;
  int64_t expect = 1;
  for (int i = 0; i < rows; i++) {
    const char *sid = PQgetvalue(r, i, 0);
    if (i == 0 || strcmp(sid, PQgetvalue(r, i - 1, 0)) != 0) {
      streams++;
      expect = 1;
      nmarks = 0;
    }
    /* binary int8, network order */
    const uint8_t *vb = (const uint8_t *)PQgetvalue(r, i, 1);
    int64_t v = 0;
    for (int k = 0; k < 8; k++)
      v = (v << 8) | vb[k];
    if (v != expect)
      fail_msg("stream %s: version %lld where %lld was expected", sid,
               (long long)v, (long long)expect);
    expect++;
    saga_record_t rec;
    memset(&rec, 0, sizeof rec);
    assert_int_equal(
        saga_codec_decode((const uint8_t *)PQgetvalue(r, i, 2),
                          (size_t)PQgetlength(r, i, 2), &rec),
        0);
    for (size_t e = 0; e < rec.n; e++) {
      mark_t m = {rec.events[e].type, rec.events[e].step,
                  rec.events[e].action, rec.events[e].attempt};
      for (size_t k = 0; k < nmarks; k++)
        if (!memcmp(&marks[k], &m, sizeof m))
          fail_msg("stream %s: %s for step %u action %u attempt %u stored "
                   "twice",
                   sid, sm_event_type_name((sm_event_type_t)m.type),
                   m.step, m.action, m.attempt);
      assert_true(nmarks < sizeof marks / sizeof marks[0]);
      marks[nmarks++] = m;
    }
    saga_record_clear(&rec);
  }
  assert_int_equal(streams, N);
  PQclear(r);
  PQfinish(c);
}

/* True once sagad idx has logged taking at least one partition. */
static int owns_partitions(e2e_t *t, int idx) {
  char path[256], line[1024];
  snprintf(path, sizeof path, "%s/sagad%d.log", e2e_dir(t), idx);
  FILE *f = fopen(path, "r");
  int owns = 0;
  while (f && fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "recovered ");
    unsigned long sagas = 0, parts = 0;
    if (p && sscanf(p, "recovered %lu sagas of %lu assigned", &sagas,
                    &parts) == 2 && parts > 0)
      owns = 1;
  }
  if (f)
    fclose(f);
  return owns;
}

static void
test_three_coordinators_one_killed_finish_every_saga_with_one_owner_each(
    void **state) {
  (void)state;
  e2e_t *t = e2e_new("coord_scaleout", 60000, e2e_fail2_script);
  e2e_fail2_ids(ids, idp, N);
  for (int i = 0; i < 3; i++)
    e2e_sagad_start(t, i);
  /* All three in the group, each with partitions of its own. */
  int64_t joined = ts_now_ms() + ts_timeout_ms(60000);
  while (!(owns_partitions(t, 0) && owns_partitions(t, 1) &&
           owns_partitions(t, 2)) &&
         ts_now_ms() < joined)
    e2e_pump(t, 100);
  assert_true(owns_partitions(t, 0) && owns_partitions(t, 1) &&
              owns_partitions(t, 2));
  for (int i = 0; i < FIRST_WAVE; i++)
    e2e_start(t, "slow", idp[i]);
  /* Kill one owner once the group is driving sagas. */
  size_t done =
      e2e_wait_terminal_at_least(t, idp, FIRST_WAVE, FIRST_WAVE / 5, 120000);
  assert_int_equal(e2e_sagad_stop(t, 1, SIGKILL), 128 + SIGKILL);
  printf("# killed sagad 1 with %zu of %d sagas finished\n", done, N);
  /* More sagas while the group rebalances: some land on the dead owner's
   * partitions and wait for their new owner. */
  for (int i = FIRST_WAVE; i < N; i++)
    e2e_start(t, "slow", idp[i]);
  done = e2e_wait_terminal(t, idp, N, 240000);
  assert_int_equal(done, N);
  /* Let any late duplicate from the rebalance reach the store. */
  e2e_pump(t, 500);
  check_ledger(t);
  check_streams(t);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  assert_int_equal(e2e_sagad_stop(t, 2, SIGTERM), 0);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_three_coordinators_one_killed_finish_every_saga_with_one_owner_each),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
