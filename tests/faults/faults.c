/* Shared pieces of the fault tests (see faults.h). */
#include "faults.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "saga_codec.h"
#include "test_support.h"

const char *faults_sagad_path = SAGAD_PRODUCT_PATH;

void faults_use_fault_point(const char *name, unsigned hit,
                            unsigned delay_ms) {
  char v[128];
  snprintf(v, sizeof v, "%s:%u:%u", name, hit, delay_ms);
  setenv("SAGA_FAULT_POINT", v, 1);
  faults_sagad_path = SAGAD_FAULTS_PATH;
}

void faults_use_product(void) {
  unsetenv("SAGA_FAULT_POINT");
  faults_sagad_path = SAGAD_PRODUCT_PATH;
}

faults_kind_t faults_kind(const char *id) {
  if (!strncmp(id, "fail-", 5))
    return FAULTS_FAIL;
  if (!strncmp(id, "tmo-", 4))
    return FAULTS_TIMEOUT;
  return FAULTS_OK;
}

e2e_answer_t faults_script(const char *id, int step, int comp,
                           uint32_t attempt) {
  (void)attempt;
  if (comp)
    return E2E_SUCCESS;
  if (step == 1 && faults_kind(id) == FAULTS_FAIL)
    return E2E_FAILURE;
  if (step == 1 && faults_kind(id) == FAULTS_TIMEOUT)
    return E2E_NO_REPLY;
  return E2E_SUCCESS;
}

static faults_kind_t default_pick(size_t i, void *arg) {
  (void)arg;
  if (i % 10 == 3)
    return FAULTS_TIMEOUT;
  if (i % 5 == 1)
    return FAULTS_FAIL;
  return FAULTS_OK;
}

void faults_ids_make(faults_ids_t *s, size_t n, const char *tag,
                     faults_kind_t (*pick)(size_t i, void *arg), void *arg) {
  static const char *const prefix[] = {"ok", "fail", "tmo"};
  s->buf = calloc(n, sizeof *s->buf);
  s->ids = calloc(n, sizeof *s->ids);
  assert_non_null(s->buf);
  assert_non_null(s->ids);
  s->n = n;
  for (size_t i = 0; i < n; i++) {
    faults_kind_t k = (pick ? pick : default_pick)(i, arg);
    snprintf(s->buf[i], sizeof s->buf[i], "%s-%s-%zu", prefix[k], tag, i);
    s->ids[i] = s->buf[i];
  }
}

void faults_ids_free(faults_ids_t *s) {
  free(s->buf);
  free(s->ids);
  memset(s, 0, sizeof *s);
}

void faults_start(e2e_t *t, const faults_ids_t *s, size_t from, size_t to) {
  for (size_t i = from; i < to && i < s->n; i++)
    e2e_start(t, faults_kind(s->ids[i]) == FAULTS_TIMEOUT ? "fast" : "slow",
              s->ids[i]);
}

size_t faults_check_ledger(e2e_t *t, const faults_ids_t *s) {
  size_t effects = 0;
  for (size_t i = 0; i < s->n; i++) {
    const char *id = s->ids[i];
    const char *st = e2e_status(t, id);
    int a[E2E_STEPS], u[E2E_STEPS];
    for (int k = 0; k < E2E_STEPS; k++) {
      a[k] = e2e_applied(t, id, k);
      u[k] = e2e_undone(t, id, k);
      effects += (size_t)(a[k] + u[k]);
    }
    int ok = 0;
    switch (faults_kind(id)) {
    case FAULTS_OK:
      ok = !strcmp(st, "completed") && a[0] == 1 && a[1] == 1 && a[2] == 1 &&
           u[0] == 0 && u[1] == 0 && u[2] == 0;
      break;
    case FAULTS_FAIL: /* step 2 refused: only step 1 to undo */
      ok = !strcmp(st, "compensated") && a[0] == 1 && u[0] == 1 &&
           a[1] == 0 && u[1] == 0 && a[2] == 0 && u[2] == 0;
      break;
    case FAULTS_TIMEOUT:
      /* Step 2 never answers; step 1 may have timed out too when the
       * participant was held. Whatever was applied is undone, once; a step
       * of unknown outcome may be undone without having been applied. */
      ok = !strcmp(st, "compensated") && a[0] <= 1 && u[0] == 1 &&
           a[1] == 0 && u[1] <= 1 && a[2] == 0 && u[2] == 0;
      break;
    }
    if (!ok)
      fail_msg("saga %s: status \"%s\", applied %d/%d/%d, undone %d/%d/%d",
               id, st, a[0], a[1], a[2], u[0], u[1], u[2]);
  }
  return effects;
}

size_t faults_check_appended(e2e_t *t, const faults_ids_t *s) {
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  size_t checked = 0;
  for (size_t i = 0; i < s->n; i++) {
    char stream[64];
    snprintf(stream, sizeof stream, "saga-%s", s->ids[i]);
    const char *p[1] = {stream};
    PGresult *r = PQexecParams(c,
                               "SELECT data FROM es_events WHERE stream_id ="
                               " $1 ORDER BY stream_version",
                               1, NULL, p, NULL, NULL, 1);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    uint32_t dispatched[E2E_STEPS][2] = {{0}};
    for (int row = 0; row < PQntuples(r); row++) {
      saga_record_t rec;
      memset(&rec, 0, sizeof rec);
      assert_int_equal(
          saga_codec_decode((const uint8_t *)PQgetvalue(r, row, 0),
                            (size_t)PQgetlength(r, row, 0), &rec),
          0);
      for (size_t e = 0; e < rec.n; e++) {
        const sm_event_t *ev = &rec.events[e];
        if (ev->type == SM_EV_DISPATCHED && ev->step < E2E_STEPS &&
            ev->attempt >= 1 && ev->attempt <= 32)
          dispatched[ev->step][ev->action == SM_COMPENSATE] |=
              1u << (ev->attempt - 1);
      }
      saga_record_clear(&rec);
    }
    PQclear(r);
    for (int k = 0; k < E2E_STEPS; k++)
      for (int comp = 0; comp < 2; comp++) {
        uint32_t got = e2e_attempts_received(t, s->ids[i], k, comp);
        if (got & ~dispatched[k][comp])
          fail_msg("saga %s: step %d %s: attempts received 0x%x, appended "
                   "0x%x -- a command was sent before its decision was "
                   "durable",
                   s->ids[i], k, comp ? "COMPENSATE" : "DO", got,
                   dispatched[k][comp]);
        for (uint32_t b = got; b; b &= b - 1)
          checked++;
      }
  }
  PQfinish(c);
  return checked;
}

char *faults_sagad_log(const char *test_name, int idx) {
  char path[256];
  snprintf(path, sizeof path, "/tmp/sagad-e2e-%s-%d/sagad%d.log", test_name,
           (int)getpid(), idx);
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  size_t r;
  while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n < 4096) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  buf[n] = '\0';
  fclose(f);
  return buf;
}

int faults_wait_log(e2e_t *t, const char *test_name, int idx,
                    const char *needle, int64_t timeout_ms) {
  int64_t until = ts_now_ms() + ts_timeout_ms(timeout_ms);
  for (;;) {
    char *log = faults_sagad_log(test_name, idx);
    int found = log && strstr(log, needle);
    free(log);
    if (found)
      return 1;
    if (ts_now_ms() > until)
      return 0;
    e2e_pump(t, 20);
  }
}

long faults_log_count(const char *test_name, int idx, const char *needle) {
  char *log = faults_sagad_log(test_name, idx);
  long n = 0;
  for (const char *p = log; p && (p = strstr(p, needle)); p += strlen(needle))
    n++;
  free(log);
  return n;
}

long faults_log_counter(const char *test_name, int idx, const char *key) {
  char *log = faults_sagad_log(test_name, idx);
  if (!log)
    return -1;
  char pat[96];
  snprintf(pat, sizeof pat, "%s=", key);
  long v = -1;
  for (const char *p = log; (p = strstr(p, pat)) != NULL; p += strlen(pat))
    if (p == log || p[-1] == ' ' || p[-1] == ',')
      v = strtol(p + strlen(pat), NULL, 10);
  free(log);
  return v;
}

/* ---- a private Kafka mock ------------------------------------------- */

struct faults_mock {
  pid_t pid;
  char dir[128];
  char control[160];
  char bootstrap[512];
};

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

faults_mock_t *faults_mock_start(void) {
  faults_mock_t *m = calloc(1, sizeof *m);
  assert_non_null(m);
  snprintf(m->dir, sizeof m->dir, "/tmp/saga-faults-mock-%d", (int)getpid());
  mkdir(m->dir, 0700);
  char bsfile[192];
  snprintf(bsfile, sizeof bsfile, "%s/bootstrap", m->dir);
  snprintf(m->control, sizeof m->control, "%s/control.sock", m->dir);
  unlink(bsfile);
  unlink(m->control);
  m->pid = fork();
  assert_true(m->pid >= 0);
  if (m->pid == 0) {
    char log[192];
    snprintf(log, sizeof log, "%s/mock.log", m->dir);
    if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
      _exit(127);
    execl(KAFKA_MOCK_PATH, KAFKA_MOCK_PATH, "--brokers", "3",
          "--bootstrap-file", bsfile, "--control", m->control, (char *)NULL);
    _exit(127);
  }
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  for (;;) {
    FILE *f = fopen(bsfile, "r");
    if (f) {
      int got = fgets(m->bootstrap, sizeof m->bootstrap, f) != NULL;
      fclose(f);
      if (got) {
        m->bootstrap[strcspn(m->bootstrap, "\r\n")] = '\0';
        if (m->bootstrap[0])
          break;
      }
    }
    if (ts_now_ms() > until)
      fail_msg("saga-kafka-mock wrote no bootstrap list");
    sleep_ms(20);
  }
  setenv("SAGA_KAFKA_BOOTSTRAP", m->bootstrap, 1);
  faults_mock_ctl(m, "ping");
  return m;
}

/* Send the command fmt/ap, put the answer into out and fail the test
 * unless its last line is ok. */
static void mock_vctl(faults_mock_t *m, char *out, size_t outsz,
                      const char *fmt, va_list ap) {
  char line[512];
  int n = vsnprintf(line, sizeof line, fmt, ap);
  assert_true(n > 0 && n < (int)sizeof line);
  int64_t until = ts_now_ms() + ts_timeout_ms(5000);
  int rc;
  while ((rc = ts_mock_exchange(m->control, line, out, outsz)) == -1) {
    if (ts_now_ms() > until)
      fail_msg("could not connect to the mock's control socket %s: %s",
               m->control, strerror(errno));
    sleep_ms(20);
  }
  assert_int_equal(rc, 0);
  size_t got = strlen(out);
  if (strcmp(out, "ok\n") != 0 &&
      (got < 4 || strcmp(out + got - 4, "\nok\n") != 0))
    fail_msg("mock command \"%s\": %s", line, out);
}

void faults_mock_ctl(faults_mock_t *m, const char *fmt, ...) {
  char out[512];
  va_list ap;
  va_start(ap, fmt);
  mock_vctl(m, out, sizeof out, fmt, ap);
  va_end(ap);
}

long faults_mock_count(faults_mock_t *m, const char *fmt, ...) {
  char out[512];
  va_list ap;
  va_start(ap, fmt);
  mock_vctl(m, out, sizeof out, fmt, ap);
  va_end(ap);
  char *end = NULL;
  long v = strtol(out, &end, 10);
  if (end == out || *end != '\n')
    fail_msg("mock answered \"%s\" where a number was due", out);
  return v;
}

void faults_mock_stop(faults_mock_t *m) {
  if (!m)
    return;
  kill(m->pid, SIGTERM);
  int st = 0;
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  while (waitpid(m->pid, &st, WNOHANG) != m->pid) {
    if (ts_now_ms() > until) {
      kill(m->pid, SIGKILL);
      waitpid(m->pid, &st, 0);
      break;
    }
    sleep_ms(10);
  }
  char p[256];
  snprintf(p, sizeof p, "%s/bootstrap", m->dir);
  unlink(p);
  snprintf(p, sizeof p, "%s/mock.log", m->dir);
  unlink(p);
  unlink(m->control);
  rmdir(m->dir);
  free(m);
}

void faults_lead_apart(faults_mock_t *m, e2e_t *t, int partitions, int only) {
  for (int p = 0; p < partitions; p++) {
    faults_mock_ctl(m, "partition-leader %s %d 1", e2e_inbox(t), p);
    for (int i = 0; i < E2E_STEPS; i++)
      faults_mock_ctl(m, "partition-leader %s %d %d", e2e_step_topic(t, i), p,
                      only);
  }
  e2e_pump(t, 1500);
}

void faults_coordinate_from(faults_mock_t *m, e2e_t *t, int broker) {
  faults_mock_ctl(m, "coordinator-set group %s %d", e2e_group(t), broker);
}
