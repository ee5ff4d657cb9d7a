/* The projection example (examples/projection) against the embedded
 * PostgreSQL: a history of order sagas written as sagad writes it (one
 * stored event per transition, encoded by core/saga_codec.c, streams
 * saga-<id>), some completed, compensated, parked, resolved or still
 * running, plus sagas of another definition; two order-projection
 * processes share it as a consumer group, then the read model is reset
 * and rebuilt by one. Each time the read model (orders by status, revenue
 * by hour) must equal what the history says, and every event must have
 * been handled exactly once. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "es_test.h"
#include "saga_codec.h"
#include "test_support.h"

enum { SAGAS = 240, HOUR_MS = 3600000 };
static const int64_t BASE_MS = INT64_C(1767225600000); /* 2026-01-01 UTC */

static char work[] = "/tmp/test-projection.XXXXXX";

/* What saga i is: its definition, its records' events, and its end. */
enum kind { COMPLETED, COMPENSATED, PARKED, RESOLVED, RUNNING };
static enum kind kind_of(int i) {
  static const enum kind k[6] = {COMPLETED, COMPLETED,  COMPENSATED,
                                 PARKED,    COMPLETED, RUNNING};
  return i % 12 == 3 ? RESOLVED : k[i % 6];
}
static int is_order(int i) { return i % 25 != 7; }
static int64_t start_ms(int i) { return BASE_MS + (int64_t)i * 7 * 60000; }
static int64_t amount(int i) { return 100 + i; }

/* The events of record k of saga i into ev; returns how many (0: none). */
static size_t record(int i, int k, sm_event_t *ev, char *input,
                     size_t input_len) {
  memset(ev, 0, 2 * sizeof *ev);
  enum kind kd = kind_of(i);
  if (k == 0) {
    snprintf(input, input_len, "{\"order_id\":\"o-%d\",\"amount\":%lld}", i,
             (long long)amount(i));
    ev[0] = (sm_event_t){.type = SM_EV_STARTED,
                         .def_name = is_order(i) ? "order" : "refund",
                         .def_version = 1,
                         .payload = (const uint8_t *)input,
                         .payload_len = strlen(input)};
    ev[1] = (sm_event_t){.type = SM_EV_DISPATCHED, .step = 0, .attempt = 1};
    return 2;
  }
  sm_event_t ok = {.type = SM_EV_SUCCEEDED, .step = (uint8_t)(k - 1),
                   .attempt = 1};
  sm_event_t fail = {.type = SM_EV_ATTEMPT_FAILED, .step = (uint8_t)(k - 1),
                     .attempt = 1, .outcome = 2, .reason = "declined"};
  sm_event_t next = {.type = SM_EV_DISPATCHED, .step = (uint8_t)k,
                     .attempt = 1};
  switch (kd) {
  case COMPLETED:
    if (k > 3)
      return 0;
    ev[0] = ok;
    ev[1] = k < 3 ? next : (sm_event_t){.type = SM_EV_COMPLETED};
    return 2;
  case COMPENSATED:
    if (k > 2)
      return 0;
    if (k == 2) {
      ev[0] = (sm_event_t){.type = SM_EV_COMPENSATED};
      return 1;
    }
    ev[0] = fail;
    ev[1] = (sm_event_t){.type = SM_EV_COMPENSATING, .step = 0};
    return 2;
  case PARKED:
  case RESOLVED:
    if (k == 1) {
      ev[0] = ok;
      ev[1] = next;
      return 2;
    }
    if (k == 2) {
      ev[0] = fail;
      ev[1] = (sm_event_t){.type = SM_EV_COMPENSATING, .step = 1};
      return 2;
    }
    if (k == 3) {
      ev[0] = (sm_event_t){.type = SM_EV_PARKED, .step = 0};
      return 1;
    }
    if (k == 4 && kd == RESOLVED) {
      ev[0] = (sm_event_t){.type = SM_EV_RESOLVED, .reason = "refunded",
                           .who = "ops"};
      return 1;
    }
    return 0;
  case RUNNING:
    return 0;
  }
  return 0;
}

/* Write every saga's records, round k holding record k of each saga, as
 * sagad does (one event per transition, the record type as event type,
 * the saga id as correlation id). Returns the number of events. */
static long long write_history(es_store_t *s) {
  long long total = 0;
  for (int k = 0; k < 5; k++) {
    es_batch_t *b = es_batch_new(NULL);
    uint8_t buf[SAGAS][512];
    for (int i = 0; i < SAGAS; i++) {
      sm_event_t ev[2];
      char input[128], stream[32], id[16];
      size_t n = record(i, k, ev, input, sizeof input);
      if (!n)
        continue;
      int64_t at = start_ms(i) + k * 1000;
      size_t len = 0;
      assert_int_equal(
          saga_codec_encode(ev, n, at, buf[i], sizeof buf[i], &len), 0);
      snprintf(id, sizeof id, "s%04d", i);
      snprintf(stream, sizeof stream, "saga-%s", id);
      es_event_t e = {.type = saga_codec_record_type(ev, n),
                      .data = buf[i],
                      .data_len = len,
                      .correlation_id = id};
      assert_true(es_batch_add(b, stream, k, &e, 1) >= 0);
      total++;
    }
    assert_int_equal(es_batch_execute(s, b), 0);
    es_batch_free(b);
  }
  return total;
}

/* The read model the history calls for, as the test's queries print it. */
static void expected(char *status, size_t slen, char *revenue, size_t rlen) {
  static const char *const names[] = {"completed", "compensated", "parked",
                                      "resolved", "running"};
  int count[5] = {0};
  int64_t rev[SAGAS * 7 / 60 + 2] = {0}, orders[SAGAS * 7 / 60 + 2] = {0};
  for (int i = 0; i < SAGAS; i++) {
    if (!is_order(i))
      continue;
    enum kind kd = kind_of(i);
    count[kd]++;
    if (kd == COMPLETED) {
      int64_t h = (start_ms(i) + 3000 - BASE_MS) / HOUR_MS;
      rev[h] += amount(i);
      orders[h]++;
    }
  }
  /* ORDER BY status: alphabetical */
  static const int order[5] = {COMPENSATED, COMPLETED, PARKED, RESOLVED,
                               RUNNING};
  size_t o = 0;
  status[0] = '\0';
  for (int j = 0; j < 5; j++)
    if (count[order[j]])
      o += (size_t)snprintf(status + o, slen - o, "%s=%d ", names[order[j]],
                            count[order[j]]);
  o = 0;
  revenue[0] = '\0';
  for (size_t h = 0; h < sizeof rev / sizeof rev[0]; h++)
    if (orders[h])
      o += (size_t)snprintf(revenue + o, rlen - o, "%lld:%lld/%lld ",
                            (long long)((BASE_MS + (int64_t)h * HOUR_MS) /
                                        1000),
                            (long long)rev[h], (long long)orders[h]);
}

/* Rows of sql printed as the expectation is: "a=b " for two columns,
 * "a:b/c " for three. */
static void actual(PGconn *c, const char *sql, char *out, size_t len) {
  PGresult *r = PQexec(c, sql);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  size_t o = 0;
  out[0] = '\0';
  for (int i = 0; i < PQntuples(r); i++)
    o += PQnfields(r) > 2
             ? (size_t)snprintf(out + o, len - o, "%s:%s/%s ",
                                PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                                PQgetvalue(r, i, 2))
             : (size_t)snprintf(out + o, len - o, "%s=%s ",
                                PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
  PQclear(r);
}

static void check_read_model(const char *db) {
  char want_s[512], want_r[8192], got_s[512], got_r[8192];
  expected(want_s, sizeof want_s, want_r, sizeof want_r);
  PGconn *c = est_raw(db);
  actual(c,
         "SELECT status, orders FROM proj_orders_by_status ORDER BY status",
         got_s, sizeof got_s);
  actual(c,
         "SELECT extract(epoch FROM hour)::int8, revenue, orders"
         " FROM proj_revenue_by_hour ORDER BY hour",
         got_r, sizeof got_r);
  PQfinish(c);
  assert_string_equal(got_s, want_s);
  assert_string_equal(got_r, want_r);
}

/* Run order-projection with args (NULL-terminated after the conninfo),
 * output to work/<log>; returns its pid. */
static pid_t spawn(const char *log, const char *db, const char *const *args) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", work, log);
  const char *argv[16] = {PROJECTION_PATH, db};
  for (size_t n = 2; args[n - 2] && n < 15; n++)
    argv[n] = args[n - 2];
  pid_t pid = ts_spawn_logged(path, argv);
  assert_true(pid >= 0);
  return pid;
}

/* Wait for pid to exit 0 (within the test timeout); returns the events it
 * says it handled. */
static long long finish(pid_t pid, const char *log) {
  int64_t until = ts_now_ms() + ts_timeout_ms(60000);
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      break;
    assert_true(r == 0 || errno == EINTR);
    if (ts_now_ms() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      fail_msg("order-projection (%s) did not stop", log);
    }
    nanosleep(&(struct timespec){0, 20000000}, NULL);
  }
  char path[128], text[4096] = "";
  snprintf(path, sizeof path, "%s/%s", work, log);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = '\0';
  fclose(f);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail_msg("order-projection (%s) failed:\n%s", log, text);
  const char *h = strstr(text, "handled ");
  return h ? atoll(h + strlen("handled ")) : -1;
}

static void test_two_members_keep_the_read_model_and_a_reset_rebuilds_it(
    void **state) {
  (void)state;
  assert_non_null(mkdtemp(work));
  char *db = est_db("projection");
  es_store_t *s = est_open(db);
  long long total = write_history(s);
  est_wait_global(s, (size_t)total);

  const char *const member[] = {"--group", "orders", "--share", "2",
                                "--lease", "5s", "--until-idle", "1500ms",
                                NULL};
  pid_t a = spawn("a.log", db, member), b = spawn("b.log", db, member);
  long long ha = finish(a, "a.log"), hb = finish(b, "b.log");
  assert_true(ha > 0 && hb > 0); /* shared */
  assert_int_equal(ha + hb, total); /* each event once */
  check_read_model(db);

  const char *const reset[] = {"--reset", "--group", "orders", NULL};
  assert_int_equal(finish(spawn("reset.log", db, reset), "reset.log"), -1);
  PGconn *c = est_raw(db);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM proj_orders"), 0);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM proj_revenue_by_hour"),
                   0);
  PQfinish(c);
  const char *const alone[] = {"--group", "orders", "--until-idle", "1500ms",
                               NULL};
  assert_int_equal(finish(spawn("c.log", db, alone), "c.log"), total);
  check_read_model(db);

  es_store_close(s);
  est_drop(db);
  static const char *const logs[] = {"a.log", "b.log", "reset.log", "c.log"};
  for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", work, logs[i]);
    unlink(path);
  }
  rmdir(work);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_two_members_keep_the_read_model_and_a_reset_rebuilds_it),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
