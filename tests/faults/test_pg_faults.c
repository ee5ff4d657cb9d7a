/* PostgreSQL faults against a real sagad, on a PRIVATE cluster made for
 * this test (tests/faults/private_pg.sh: initdb into a temporary folder,
 * fsync on), so restarting it or filling its disk touches no other test:
 * sagad's sessions terminated with pg_terminate_backend again and again;
 * statements cancelled by a low statement_timeout while saga_index is
 * locked; the server stopped (immediate, i.e. crashed) and started mid-run;
 * the disk full (the data folder on a small tmpfs, filled up; skipped when
 * it cannot be mounted). Each test starts a batch of sagas (successes,
 * failures, timeouts), injects its fault while they run, lifts it, and
 * checks every saga terminal with each effect applied once and each
 * compensated effect undone once. sagad must reconnect by itself. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "faults.h"
#include "test_support.h"

#define N 40
#define NAME "flt_pg"

typedef struct {
  const char *name; /* the harness's name for this cluster's sagad */
  char dir[128];
  char base[512]; /* conninfo of the private cluster */
  e2e_t *t;
  PGconn *ctl;    /* the test's own session in sagad's database */
  int batch;
} fx_t;

static fx_t M, D; /* the main cluster, the disk-full one */
static fx_t *X = &M; /* the one the helpers work on */
static long terminated, lock_windows, restarts, disk_full, append_retries;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static long count_in(const char *text, const char *needle) {
  long n = 0;
  for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

/* How many times sagad's log holds needle. */
static long log_count(const char *needle) {
  char *log = faults_sagad_log(X->name, 0);
  long n = count_in(log, needle);
  free(log);
  return n;
}

/* How many times the private server's log holds needle: the fault's
 * evidence from PostgreSQL's side. */
static long server_log_count(const char *needle) {
  char path[192];
  snprintf(path, sizeof path, "%s/server.log", X->dir);
  FILE *f = fopen(path, "r");
  long n = 0;
  char line[4096];
  while (f && fgets(line, sizeof line, f))
    n += count_in(line, needle);
  if (f)
    fclose(f);
  return n;
}

static PGresult *ctl_exec(const char *sql) {
  if (PQstatus(X->ctl) != CONNECTION_OK)
    PQreset(X->ctl);
  return PQexec(X->ctl, sql);
}

static void ctl_ok(const char *sql) {
  PGresult *r = ctl_exec(sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(X->ctl));
  PQclear(r);
}

/* Terminate every session in sagad's database but the test's and the
 * harness's; returns how many. */
static long terminate_sagad_sessions(void) {
  PGresult *r = ctl_exec(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
      " WHERE datname = current_database() AND pid <> pg_backend_pid()"
      " AND application_name <> 'e2e-harness'");
  long n = 0;
  if (PQresultStatus(r) == PGRES_TUPLES_OK)
    n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return n;
}

/* Start N sagas, half before the fault and half while it holds; the
 * server's log must show `evidence` (unless NULL) more often afterwards
 * (the fault hit sagad's statements). */
static void run_batch(const char *tag, void (*inject)(void),
                      void (*lift)(void), const char *evidence) {
  long retries0 = log_count("append failed, retrying");
  long hits0 = evidence ? server_log_count(evidence) : 0;
  faults_ids_t s;
  char name[64];
  snprintf(name, sizeof name, "%s%d", tag, X->batch++);
  faults_ids_make(&s, N, name, NULL, NULL);
  faults_start(X->t, &s, 0, N / 2);
  e2e_pump(X->t, 300);
  inject();
  faults_start(X->t, &s, N / 2, N);
  lift();
  assert_int_equal(e2e_wait_terminal(X->t, s.ids, N, 180000), N);
  size_t fx = faults_check_ledger(X->t, &s);
  size_t cmds = faults_check_appended(X->t, &s);
  long retries = log_count("append failed, retrying") - retries0;
  long hits = evidence ? server_log_count(evidence) - hits0 : 0;
  append_retries += retries;
  printf("# %s: %d sagas terminal, %zu effects checked, %zu commands "
         "matched to appended decisions; server logged \"%s\" %ld times, "
         "sagad resubmitted %ld batches\n",
         tag, N, fx, cmds, evidence ? evidence : "-", hits, retries);
  assert_true(!evidence || hits > 0);
  faults_ids_free(&s);
}

/* ---- terminated sessions ---- */

static void inject_terminate(void) {
  /* every 100 ms for 3 s: sagad reconnects each time */
  for (int i = 0; i < 30; i++) {
    terminated += terminate_sagad_sessions();
    e2e_pump(X->t, 100);
  }
}
static void lift_nothing(void) {}

static void test_terminated_sessions_lose_and_double_no_effect(void **state) {
  (void)state;
  long before = terminated;
  run_batch("term", inject_terminate, lift_nothing,
            "terminating connection due to administrator command");
  assert_true(terminated - before >= 3);
}

/* sagad's recovery read runs on its own session, idle from the start-up
 * migration until partitions are assigned (the group join takes seconds):
 * terminated in between, the read must reconnect rather than give up and
 * shut sagad down. */
static void test_recovery_reconnects_after_its_session_was_terminated(
    void **state) {
  (void)state;
  /* up and coordinating first: SIGTERM then means a clean stop */
  assert_true(faults_wait_log(X->t, X->name, 0, "recovered ", 30000));
  assert_int_equal(e2e_sagad_stop(X->t, 0, SIGTERM), 0);
  long recovered = log_count("recovered ");
  long started = log_count("started: sagad");
  e2e_sagad_start(X->t, 0);
  int64_t until = ts_now_ms() + ts_timeout_ms(30000);
  while (log_count("started: sagad") == started && ts_now_ms() < until)
    e2e_pump(X->t, 20);
  assert_true(log_count("started: sagad") > started);
  long n = 0;
  while ((n = terminate_sagad_sessions()) == 0)
    e2e_pump(X->t, 20); /* until its sessions are open */
  terminated += n;
  until = ts_now_ms() + ts_timeout_ms(30000);
  while (log_count("recovered ") == recovered && ts_now_ms() < until)
    e2e_pump(X->t, 50);
  assert_true(log_count("recovered ") > recovered);
  assert_int_equal(log_count("could not recover"), 0);
  /* and it goes on coordinating */
  run_batch("recover", lift_nothing, lift_nothing, NULL);
}

/* ---- statement timeouts ---- */

static void inject_statement_timeout(void) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "ALTER DATABASE \"%s\" SET statement_timeout = '200ms'",
           PQdb(X->ctl));
  ctl_ok(sql);
  /* new sessions take the setting */
  terminated += terminate_sagad_sessions();
  e2e_pump(X->t, 500);
  /* every statement on saga_index now waits for the lock and is cancelled
   * after 200 ms, for 3 s */
  ctl_ok("BEGIN");
  ctl_ok("LOCK TABLE saga_index IN ACCESS EXCLUSIVE MODE");
  lock_windows++;
}
static void lift_statement_timeout(void) {
  e2e_pump(X->t, 3000);
  ctl_ok("COMMIT");
  char sql[256];
  snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" RESET statement_timeout",
           PQdb(X->ctl));
  ctl_ok(sql);
}

static void test_statement_timeouts_lose_and_double_no_effect(void **state) {
  (void)state;
  run_batch("stmt", inject_statement_timeout, lift_statement_timeout,
            "canceling statement due to statement timeout");
}

/* ---- server restarted ---- */

static void inject_restart(void) {
  /* immediate: the server crashes, nothing is flushed on the way out */
  assert_int_equal(sh("%s stop %s immediate", PRIVATE_PG, X->dir), 0);
  restarts++;
  e2e_pump(X->t, 2000);
}
static void lift_restart(void) {
  assert_int_equal(sh("%s start %s", PRIVATE_PG, X->dir), 0);
}

static void test_a_restarted_server_loses_and_doubles_no_effect(
    void **state) {
  (void)state;
  run_batch("restart", inject_restart, lift_restart,
            "database system is ready to accept connections");
  /* and once more, a clean (fast) restart */
  restarts++;
  faults_ids_t s;
  faults_ids_make(&s, N, "restart-fast", NULL, NULL);
  faults_start(X->t, &s, 0, N);
  e2e_pump(X->t, 300);
  assert_int_equal(sh("%s stop %s fast", PRIVATE_PG, X->dir), 0);
  e2e_pump(X->t, 1000);
  assert_int_equal(sh("%s start %s", PRIVATE_PG, X->dir), 0);
  assert_int_equal(e2e_wait_terminal(X->t, s.ids, N, 180000), N);
  size_t fx = faults_check_ledger(X->t, &s);
  size_t cmds = faults_check_appended(X->t, &s);
  printf("# restart-fast: %d sagas terminal, %zu effects checked, %zu "
         "commands matched to appended decisions\n",
         N, fx, cmds);
  faults_ids_free(&s);
}

/* A private cluster (its data folder on a tmpfs of tmpfs_mb when not 0),
 * the harness's database and participant there, one sagad. Returns 0, or
 * 77 when the cluster cannot be made (tmpfs_mb: no mount). */
static int cluster_open(fx_t *f, const char *name, int tmpfs_mb) {
  f->name = name;
  snprintf(f->dir, sizeof f->dir, "/tmp/saga-%s-%d", name, (int)getpid());
  char cmd[512];
  snprintf(cmd, sizeof cmd, "%s init %s %d", PRIVATE_PG, f->dir, tmpfs_mb);
  if (!tmpfs_mb)
    snprintf(cmd, sizeof cmd, "%s init %s", PRIVATE_PG, f->dir);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  int got = fgets(f->base, sizeof f->base, p) != NULL;
  int st = pclose(p);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
    sh("%s destroy %s", PRIVATE_PG, f->dir);
    return 77;
  }
  assert_true(got && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  f->base[strcspn(f->base, "\n")] = '\0';
  /* the harness makes its database there */
  setenv("SAGA_PG_CONNINFO", f->base, 1);
  f->t = e2e_new(name, 2000, faults_script);
  f->ctl = PQconnectdb(e2e_conninfo(f->t));
  assert_int_equal(PQstatus(f->ctl), CONNECTION_OK);
  e2e_sagad_start(f->t, 0);
  return 0;
}

static void cluster_close(fx_t *f) {
  assert_int_equal(e2e_sagad_stop(f->t, 0, SIGTERM), 0);
  PQfinish(f->ctl);
  e2e_free(f->t);
  f->t = NULL;
  sh("%s destroy %s", PRIVATE_PG, f->dir);
}

/* ---- disk full ---- */

#define DISK_FULL "No space left on device"
static long disk_hits0; /* DISK_FULL lines in the server log before */

static void fill_disk(void) {
  /* WAL goes on in a segment made before the disk fills (a new segment
   * could not be made: the server would stop), while tables and indexes
   * cannot grow: their statements fail */
  ctl_ok("SELECT pg_switch_wal()");
  ctl_ok("CHECKPOINT");
  ctl_ok("CREATE TABLE IF NOT EXISTS flt_touch (x int); "
         "INSERT INTO flt_touch VALUES (1)");
  disk_hits0 = server_log_count(DISK_FULL);
  sh("dd if=/dev/zero of=%s/data/filler bs=64k >/dev/null 2>&1", X->dir);
  disk_full++;
  e2e_pump(X->t, 3000);
}
static void free_disk(void) {
  /* The second half of the batch was started on the full disk: keep it
   * full until sagad's appends have met it (the server logged it), so a
   * first half that finished before dd did cannot make the fault miss;
   * bounded, and the batch's assertion says if it never hit. */
  for (int i = 0; i < 150 && server_log_count(DISK_FULL) == disk_hits0; i++)
    e2e_pump(X->t, 100);
  char p[192];
  snprintf(p, sizeof p, "%s/data/filler", X->dir);
  assert_int_equal(unlink(p), 0);
  /* should a WAL write have failed the server stops: start it again */
  if (sh("%s running %s", PRIVATE_PG, X->dir) != 0)
    assert_int_equal(sh("%s start %s", PRIVATE_PG, X->dir), 0);
}

static void test_a_full_disk_loses_and_doubles_no_effect(void **state) {
  (void)state;
  X = &D;
  if (cluster_open(&D, "flt_pgdisk", 192) == 77) {
    X = &M;
    setenv("SAGA_PG_CONNINFO", M.base, 1);
    skip(); /* a tmpfs could not be mounted (needs root) */
  }
  run_batch("disk", fill_disk, free_disk, DISK_FULL);
  cluster_close(&D);
  X = &M;
  setenv("SAGA_PG_CONNINFO", M.base, 1);
}

static int setup(void **state) {
  (void)state;
  ts_require_pg();
  ts_require_kafka();
  if (cluster_open(&M, NAME, 0) == 77) {
    printf("# skipped: no private PostgreSQL cluster could be made\n");
    exit(77);
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (D.t) /* the disk-full test failed half way */
    cluster_close(&D);
  cluster_close(&M);
  printf("# PostgreSQL faults: %ld sessions terminated, %ld lock windows "
         "under a statement timeout, %ld restarts, %ld disk-full windows; "
         "%ld appends failed and were retried\n",
         terminated, lock_windows, restarts, disk_full, append_retries);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_recovery_reconnects_after_its_session_was_terminated),
      cmocka_unit_test(test_terminated_sessions_lose_and_double_no_effect),
      cmocka_unit_test(test_statement_timeouts_lose_and_double_no_effect),
      cmocka_unit_test(test_a_restarted_server_loses_and_doubles_no_effect),
      cmocka_unit_test(test_a_full_disk_loses_and_doubles_no_effect),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
