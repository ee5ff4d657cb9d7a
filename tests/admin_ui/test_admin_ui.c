/* The timeline page in headless Chromium: a fake admin source holds one
 * finished compensated saga (driven through the pure machine: a retried
 * step, a timed-out attempt, two compensations), the admin server serves
 * the API and the page, Chromium renders it (--dump-dom), and the test
 * finds the drawn steps in the DOM; one screenshot is kept for the docs.
 * Skips unless chromium is installed, or SAGA_UI_TESTS=1 installs it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin_api.h"
#include "admin_pg.h"
#include "admin_ui.h"
#include "http_client.h"
#include "saga_seed.h"
#include "test_support.h"

/* reserve and charge undo themselves; charge gets three attempts of 2 s. */
static const char *SHOP_DEF =
    "{\"name\": \"shop\", \"version\": 1, \"defaults\": {\"timeout_ms\": "
    "2000, \"retry\": {\"max_attempts\": 3, \"initial_backoff_ms\": 500}},"
    " \"steps\": [{\"name\": \"reserve\", \"topic\": \"inventory\", "
    "\"compensation\": {\"action\": \"release\"}}, {\"name\": \"charge\", "
    "\"topic\": \"payment\", \"compensation\": {\"action\": \"refund\"}}, "
    "{\"name\": \"ship\", \"topic\": \"shipping\", \"kind\": \"pivot\"}]}";

typedef struct {
  admin_source_t src;
  admin_saga_row_t row;
  abuf_t history;
  bool first;
  admin_http_t *srv;
  int port;
} fake_t;

static fake_t fake;
static loop_thread_t *lt;
static saga_def_t *def;
static char profile[64];

static void keep_record(void *arg, const sm_t *s, const uint8_t *rec,
                        size_t len, const char *type, int64_t at_ms) {
  (void)type;
  (void)at_ms;
  fake_t *f = arg;
  assert_int_equal(admin_pg_history_record(&f->history, &f->first, s->def,
                                           s->version, rec, len),
                   0);
}

static void get_saga(void *arg, const char *id, admin_reply_t *r) {
  fake_t *f = arg;
  if (strcmp(id, f->row.saga_id) != 0) {
    admin_reply(r, 404, NULL, 0);
    return;
  }
  abuf_t b = ABUF_INIT;
  abuf_puts(&b, "{\"saga\":");
  admin_json_saga_row(&b, &f->row);
  abuf_printf(&b, ",\"history\":[%s],\"history_truncated\":false}",
              abuf_cstr(&f->history));
  admin_reply(r, 200, b.data, b.len);
  abuf_free(&b);
}

static void list_sagas(void *arg, const admin_list_query_t *q,
                       admin_reply_t *r) {
  fake_t *f = arg;
  bool match = (!q->state || !strcmp(q->state, f->row.status)) &&
               (!q->type || !strcmp(q->type, f->row.saga_type)) && !q->stuck;
  abuf_t b = ABUF_INIT;
  abuf_puts(&b, "{\"sagas\":[");
  if (match)
    admin_json_saga_row(&b, &f->row);
  abuf_puts(&b, "],\"next\":null}");
  admin_reply(r, 200, b.data, b.len);
  abuf_free(&b);
}

static void on_loop(uv_loop_t *loop, void *arg) {
  fake_t *f = arg;
  f->srv = admin_http_new(loop, NULL);
  assert_non_null(f->srv);
  assert_int_equal(admin_api_register(f->srv, &f->src, NULL), 0);
  assert_int_equal(admin_ui_register(f->srv), 0);
  assert_int_equal(admin_http_start(f->srv, NULL, 0), 0);
  f->port = admin_http_port(f->srv);
}

static void on_stop(void *arg) {
  fake_t *f = arg;
  admin_http_close(f->srv, NULL, NULL);
}

static int have_chromium(void) {
  return system("command -v chromium >/dev/null 2>&1") == 0;
}

static int setup(void **state) {
  (void)state;
  if (!have_chromium()) {
    const char *want = getenv("SAGA_UI_TESTS");
    if (!want || strcmp(want, "1") != 0) {
      printf("skipped: chromium is not installed (set SAGA_UI_TESTS=1 to "
             "install it with apt-get for this test)\n");
      exit(TS_SKIP);
    }
    if (system("DEBIAN_FRONTEND=noninteractive apt-get install -y "
               "--no-install-recommends chromium >/dev/null") != 0 ||
        !have_chromium()) {
      fprintf(stderr, "could not install chromium\n");
      return -1;
    }
  }
  snprintf(profile, sizeof profile, "/tmp/saga-ui-XXXXXX");
  if (!mkdtemp(profile))
    return -1;
  def = seed_def(SHOP_DEF);
  fake.first = true;
  const uint8_t script[] = {SM_OUTCOME_SUCCESS,   SM_OUTCOME_RETRYABLE,
                            SEED_TIMEOUT,           SM_OUTCOME_FAILURE,
                            SM_OUTCOME_SUCCESS,   SM_OUTCOME_SUCCESS};
  sm_t *s = seed_drive(def, "u-1", 1700000000000, 400, script,
                         sizeof script, keep_record, &fake);
  assert_string_equal(sm_status_name((sm_status_t)s->status),
                      "compensated");
  fake.row = (admin_saga_row_t){.saga_id = "u-1",
                                .saga_type = "shop",
                                .definition_version = 1,
                                .status = "compensated",
                                .version = s->version,
                                .started_ms = s->started_ms,
                                .updated_ms = s->updated_ms};
  free(s);
  fake.src = (admin_source_t){.arg = &fake,
                              .get_saga = get_saga,
                              .list_sagas = list_sagas};
  lt = loop_thread_start(on_loop, on_stop, &fake);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  loop_thread_stop(lt);
  abuf_free(&fake.history);
  saga_def_free(def);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", profile);
  return system(cmd) == 0 ? 0 : -1;
}

/* Run chromium headless on path of the test server with extra flags;
 * its stdout as a malloc'd string. */
static char *chromium(const char *extra, const char *path) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "timeout %lld chromium --headless --no-sandbox --disable-gpu "
           "--disable-background-networking --disable-component-update "
           "--disable-sync --no-first-run --user-data-dir=%s "
           "--virtual-time-budget=10000 %s 'http://127.0.0.1:%d%s' "
           "2>/dev/null",
           (long long)(ts_timeout_ms(60000) / 1000), profile, extra,
           fake.port, path);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  abuf_t b = ABUF_INIT;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    abuf_add(&b, buf, n);
  int rc = pclose(p);
  if (rc != 0)
    fail_msg("chromium exited with %d", rc);
  char *out = abuf_take(&b, NULL);
  assert_non_null(out);
  return out;
}

static void test_the_timeline_draws_every_attempt_and_compensation(
    void **state) {
  (void)state;
  char *dom = chromium("--dump-dom", "/ui/saga/u-1");
  assert_non_null(strstr(dom, "id=\"timeline\""));
  static const char *const bars[] = {
      "data-step=\"reserve\" data-action=\"do\" data-attempt=\"1\" "
      "data-outcome=\"success\"",
      "data-step=\"charge\" data-action=\"do\" data-attempt=\"1\" "
      "data-outcome=\"retryable\"",
      "data-step=\"charge\" data-action=\"do\" data-attempt=\"2\" "
      "data-outcome=\"timeout\"",
      "data-step=\"charge\" data-action=\"do\" data-attempt=\"3\" "
      "data-outcome=\"failure\"",
      "data-step=\"charge\" data-action=\"compensate\" data-attempt=\"1\" "
      "data-outcome=\"success\"",
      "data-step=\"reserve\" data-action=\"compensate\" data-attempt=\"1\" "
      "data-outcome=\"success\"",
  };
  for (size_t i = 0; i < sizeof bars / sizeof bars[0]; i++)
    if (!strstr(dom, bars[i]))
      fail_msg("no bar with %s in the rendered page", bars[i]);
  /* ship never ran: no lane for it */
  assert_null(strstr(dom, "data-step=\"ship\""));
  assert_non_null(strstr(dom, "class=\"badge compensated\""));
  assert_non_null(strstr(dom, "<td>Compensated</td>"));
  /* The history has an operator column; a finished saga has no Cancel. */
  assert_non_null(strstr(dom, "<th>operator</th>"));
  assert_null(strstr(dom, "id=\"cancel\""));
  free(dom);
}

static void test_the_list_shows_the_saga_under_its_filter(void **state) {
  (void)state;
  char *dom = chromium("--dump-dom", "/ui?state=compensated");
  assert_non_null(strstr(dom, "data-saga-id=\"u-1\""));
  assert_non_null(strstr(dom, "href=\"/ui/saga/u-1\""));
  free(dom);
  dom = chromium("--dump-dom", "/ui?state=running");
  assert_null(strstr(dom, "data-saga-id=\"u-1\""));
  assert_non_null(strstr(dom, "no saga matches"));
  free(dom);
}

static void test_a_screenshot_of_the_timeline_is_written(void **state) {
  (void)state;
  unlink(SCREENSHOT);
  char flags[512];
  snprintf(flags, sizeof flags, "--window-size=1100,720 --screenshot=%s",
           SCREENSHOT);
  free(chromium(flags, "/ui/saga/u-1"));
  struct stat st;
  assert_int_equal(stat(SCREENSHOT, &st), 0);
  assert_true(st.st_size > 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_timeline_draws_every_attempt_and_compensation),
      cmocka_unit_test(test_the_list_shows_the_saga_under_its_filter),
      cmocka_unit_test(test_a_screenshot_of_the_timeline_is_written),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
