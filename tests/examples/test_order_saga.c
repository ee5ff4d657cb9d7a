/* The order example end to end, as the demo runs it: the real sagad, the
 * three participant services and order-starter as separate processes on
 * the embedded PostgreSQL and Kafka mock. Every order must end as its input
 * says (COMPLETED, or COMPENSATED when declined, never answered by payment
 * or out of stock), and every service ledger must hold exactly the effects
 * that outcome calls for (examples/order-saga/ledger-check.sql). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "test_support.h"

#define N_PROCS 4 /* sagad and the three services */

static char work[] = "/tmp/test-order-saga.XXXXXX";
static char *conninfo;
static pid_t procs[N_PROCS];
static const char *proc_names[N_PROCS] = {"sagad", "inventory", "payment",
                                          "shipping"};

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  if (s)
    s[n] = '\0';
  fclose(f);
  return s;
}

/* Start argv with stdout and stderr in work/<log>. */
static pid_t spawn(const char *log, const char *const args[]) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", work, log);
  pid_t pid = ts_spawn_logged(path, args);
  assert_true(pid >= 0);
  return pid;
}

/* Wait for pid within ms; SIGKILL it past that. Returns the wait status. */
static int wait_for(pid_t pid, int64_t ms) {
  int64_t until = ts_now_ms() + ms;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return st;
    if (r < 0 && errno != EINTR)
      return -1;
    if (ts_now_ms() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

static void print_log(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s.log", work, name);
  char *s = read_file(path);
  size_t n = s ? strlen(s) : 0;
  fprintf(stderr, "---- %s.log (last 3000 bytes)\n%s\n", name,
          s ? s + (n > 3000 ? n - 3000 : 0) : "(none)");
  free(s);
}

/* The demo definition with this test's own topics. */
static void write_definition(const char *ns) {
  char *tpl = read_file(SAGA_SOURCE_DIR "/examples/order-saga/demo/order.v1.json");
  assert_non_null(tpl);
  char dir[128], path[160];
  snprintf(dir, sizeof dir, "%s/definitions", work);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(path, sizeof path, "%s/order.v1.json", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  const char *key = "\"topic\": \"";
  for (const char *p = tpl;;) {
    const char *q = strstr(p, key);
    if (!q) {
      fputs(p, f);
      break;
    }
    q += strlen(key);
    fprintf(f, "%.*s%s.", (int)(q - p), p, ns);
    p = q;
  }
  assert_int_equal(fclose(f), 0);
  free(tpl);
}

static int setup(void **state) {
  (void)state;
  ts_require_pg();
  ts_require_kafka();
  assert_non_null(mkdtemp(work));
  conninfo = ts_pg_create_database("order_saga");
  return 0;
}

/* SIGTERM every process still running; returns how many did not exit 0
 * (a sanitizer report makes a process exit non-zero). */
static int stop_all(void) {
  int bad = 0;
  for (int i = 0; i < N_PROCS; i++)
    if (procs[i] > 0)
      kill(procs[i], SIGTERM);
  for (int i = 0; i < N_PROCS; i++) {
    if (procs[i] <= 0)
      continue;
    int st = wait_for(procs[i], ts_timeout_ms(15000));
    procs[i] = 0;
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "%s did not stop cleanly (wait status %d)\n",
              proc_names[i], st);
      print_log(proc_names[i]);
      bad++;
    }
  }
  return bad;
}

static int teardown(void **state) {
  (void)state;
  stop_all();
  ts_pg_drop_database(conninfo);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", work);
  return 0;
}

static void load_results(PGconn *c, const char *path, int *n_rows) {
  PGresult *r = PQexec(c, "CREATE TEMP TABLE IF NOT EXISTS order_run (saga_id text,"
                          " order_id text, scenario text, expected text,"
                          " outcome text, ms bigint)");
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[512];
  while (fgets(line, sizeof line, f)) {
    char *v[6];
    char *save = NULL, *tok = strtok_r(line, "\t\n", &save);
    int n = 0;
    for (; tok && n < 6; tok = strtok_r(NULL, "\t\n", &save))
      v[n++] = tok;
    assert_int_equal(n, 6);
    /* the starter's own verdict, checked again here */
    if (strcmp(v[3], v[4]) != 0)
      fprintf(stderr, "saga %s (%s): %s, expected %s\n", v[0], v[2], v[4],
              v[3]);
    assert_string_equal(v[4], v[3]);
    r = PQexecParams(c, "INSERT INTO order_run VALUES ($1,$2,$3,$4,$5,$6)", 6,
                     NULL, (const char *const *)v, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    (*n_rows)++;
  }
  fclose(f);
}

/* Run order-starter to its end: `count` orders, of which declined, slow,
 * out of stock, flaky and cancelled as given; rows in work/<name>.tsv. */
static void run_starter(const char *name, int count, int declined, int slow,
                        int oos, int flaky, int cancelled, const char *ns) {
  char results[128], inbox[128], notif[128], timeout[32], log[64];
  char n[5][12], total[12];
  snprintf(results, sizeof results, "%s/%s.tsv", work, name);
  snprintf(log, sizeof log, "%s.log", name);
  snprintf(inbox, sizeof inbox, "%s.saga.inbox", ns);
  snprintf(notif, sizeof notif, "%s.saga.notifications", ns);
  snprintf(timeout, sizeof timeout, "%lldms", (long long)ts_timeout_ms(40000));
  snprintf(total, sizeof total, "%d", count);
  snprintf(n[0], sizeof n[0], "%d", declined);
  snprintf(n[1], sizeof n[1], "%d", slow);
  snprintf(n[2], sizeof n[2], "%d", oos);
  snprintf(n[3], sizeof n[3], "%d", flaky);
  snprintf(n[4], sizeof n[4], "%d", cancelled);
  const char *argv[] = {STARTER_PATH, "--bootstrap", ts_kafka_bootstrap(),
                        "--count", total, "--declined", n[0], "--slow", n[1],
                        "--out-of-stock", n[2], "--flaky", n[3],
                        "--cancelled", n[4], "--inbox",
                        inbox, "--notifications", notif, "--timeout",
                        timeout, "--results", results, "-X",
                        "fetch.wait.max.ms=5", NULL};
  int st = wait_for(spawn(log, argv), ts_timeout_ms(90000));
  int ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  if (!ok) {
    print_log(name);
    for (int i = 0; i < N_PROCS; i++)
      print_log(proc_names[i]);
  }
  assert_true(ok);
}

static void test_every_order_ends_as_its_input_says_and_ledgers_agree(
    void **state) {
  (void)state;
  const char *ns = ts_unique_name("order");
  write_definition(ns);
  const char *boot = ts_kafka_bootstrap();
  char defs[160], inbox[128], notif[128], dlq[128], group[128], store[512],
      kafka[512], admin[64];
  snprintf(defs, sizeof defs, "definitions.dir=%s/definitions", work);
  snprintf(inbox, sizeof inbox, "topic.inbox=%s.saga.inbox", ns);
  snprintf(notif, sizeof notif, "topic.notifications=%s.saga.notifications",
           ns);
  snprintf(dlq, sizeof dlq, "topic.dlq=%s.saga.dlq", ns);
  snprintf(group, sizeof group, "group.id=%s.sagad", ns);
  snprintf(store, sizeof store, "store.conninfo=%s", conninfo);
  snprintf(kafka, sizeof kafka, "kafka.bootstrap.servers=%s", boot);
  snprintf(admin, sizeof admin, "admin.listen=127.0.0.1:%d",
           20000 + (int)(getpid() % 40000));
  const char *sagad[] = {SAGAD_PATH, "--set", store, "--set", kafka, "--set", defs,
                   "--set", inbox, "--set", notif, "--set", dlq, "--set",
                   group, "--set", admin, "--set", "log.format=text",
                   "--set", "kafka.fetch.wait.max.ms=5", "--set",
                   "kafka.session.timeout.ms=6000", "--set",
                   "kafka.auto.offset.reset=earliest", NULL};
  procs[0] = spawn("sagad.log", sagad);

  static const char *const paths[] = {INVENTORY_PATH, PAYMENT_PATH,
                                      SHIPPING_PATH};
  for (int i = 1; i < N_PROCS; i++) {
    char topic[128], grp[128], log[64];
    snprintf(topic, sizeof topic, "%s.%s.commands", ns, proc_names[i]);
    snprintf(grp, sizeof grp, "%s.%s", ns, proc_names[i]);
    snprintf(log, sizeof log, "%s.log", proc_names[i]);
    const char *argv[] = {paths[i - 1], "--bootstrap", boot,
                    "--conninfo", conninfo, "--topic", topic, "--group", grp,
                    "-X", "fetch.wait.max.ms=5", NULL};
    procs[i] = spawn(log, argv);
  }

  /* One order through every service first, so every consumer group has
   * joined before the mix starts (first joins take seconds on the mock). */
  run_starter("warmup", 1, 0, 0, 0, 0, 0, ns);
  run_starter("results", 16, 4, 2, 2, 2, 1, ns);

  PGconn *c = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  int n_rows = 0;
  char results[128];
  snprintf(results, sizeof results, "%s/warmup.tsv", work);
  load_results(c, results, &n_rows);
  snprintf(results, sizeof results, "%s/results.tsv", work);
  load_results(c, results, &n_rows);
  assert_int_equal(n_rows, 17);
  char *check = read_file(SAGA_SOURCE_DIR "/examples/order-saga/ledger-check.sql");
  assert_non_null(check);
  PGresult *r = PQexec(c, check);
  free(check);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  for (int i = 0; i < PQntuples(r); i++)
    fprintf(stderr, "ledger: saga %s (%s): %s\n", PQgetvalue(r, i, 0),
            PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
  assert_int_equal(PQntuples(r), 0);
  PQclear(r);

  /* Each scenario really happened: 15 reservations (all but the 2 out of
   * stock), 7 of them released (4 declined, 2 slow, 1 cancelled), 2
   * refunded charges of payments that never answered, 8 orders shipped
   * (warm-up, 5 ok and 2 flaky). */
  r = PQexec(c, "SELECT (SELECT count(*) FROM inventory.ledger"
                " WHERE effect = 'applied'),"
                " (SELECT count(*) FROM payment.ledger WHERE effect = 'undone'),"
                " (SELECT count(*) FROM shipping.ledger),"
                " (SELECT count(*) FROM inventory.ledger"
                " WHERE effect = 'undone')");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_string_equal(PQgetvalue(r, 0, 0), "15");
  assert_string_equal(PQgetvalue(r, 0, 1), "2");
  assert_string_equal(PQgetvalue(r, 0, 2), "8");
  assert_string_equal(PQgetvalue(r, 0, 3), "7");
  PQclear(r);
  PQfinish(c);

  /* Every program stops cleanly on SIGTERM. */
  assert_int_equal(stop_all(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test_setup_teardown(
      test_every_order_ends_as_its_input_says_and_ledgers_agree, setup,
      teardown)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
