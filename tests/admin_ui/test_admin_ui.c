/* The timeline page in headless Chromium: a fake admin source holds six
 * sagas driven through the pure machine (a compensated one with a retried
 * step, a timed-out attempt and two compensations; three parked in
 * compensation_failed; a running one; a completed one), the admin server
 * serves the API and the page, Chromium renders it (--dump-dom), and the
 * test finds what was drawn in the DOM: the bars, the filters, the counts,
 * the times in the browser's zone. Operator flows (clicking, typing a
 * reason, answering the confirmation, the "more" button, the search,
 * auto-refresh) run in a test-only harness page that drives the real page
 * in a frame; the fake applies an action through sm_step as the engine
 * does. Tests run in order: the actions change the sagas' states. One
 * screenshot is kept for the docs. Skips unless chromium is installed, or
 * SAGA_UI_TESTS=1 installs it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin_api.h"
#include "admin_pg.h"
#include "admin_ui.h"
#include "http_client.h"
#include "index_query.h"
#include "saga_codec.h"
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

/* The test-only page (GET /test/harness?t=SCENARIO&...) that drives the
 * real timeline page in a same-origin frame as an operator would: it types
 * into its fields, clicks its buttons, answers its confirmations (recorded)
 * and writes what it saw into <pre id="out">, which --dump-dom shows. */
static const char HARNESS[] =
    "<!doctype html><html><body><pre id=\"out\">pending</pre>"
    "<iframe id=\"f\" style=\"width:1200px;height:800px\"></iframe><script>"
    "'use strict';\n"
    "const P = new URLSearchParams(location.search), log = [];\n"
    "const f = document.getElementById('f');\n"
    "let loads = 0; f.addEventListener('load', () => loads++);\n"
    "const sleep = ms => new Promise(r => setTimeout(r, ms));\n"
    "async function until(what, fn) {\n"
    "  for (let i = 0; i < 400; i++) {\n"
    "    let v = null; try { v = fn(); } catch (e) {}\n"
    "    if (v) return v; await sleep(50); }\n"
    "  throw new Error('gave up waiting for ' + what); }\n"
    "const d = () => f.contentDocument, $ = id => d().getElementById(id);\n"
    "const rows = () => [...d().querySelectorAll('tr.saga-row')]\n"
    "  .map(r => r.dataset.sagaId).join(',');\n"
    "const S = {\n"
    /* an action: no reason, then declined, then confirmed */
    " async act() {\n"
    "  for (const [id, a] of P.getAll('a').map(x => x.split(':'))) {\n"
    "  const l = s => log.push(a + ' ' + s);\n"
    "  f.src = '/ui/saga/' + id;\n"
    "  await until('the button', () => $('action-' + a) &&\n"
    "              $('saga-id').textContent === id);\n"
    "  const l0 = loads; let answer = false;\n"
    "  f.contentWindow.confirm = m => { l('confirm: ' + m);\n"
    "                                   return answer; };\n"
    "  $('action-' + a).click();\n"
    "  l('without reason: ' + $('action-result').textContent);\n"
    "  $('action-reason').value = 'ticket 42: ' + a + ' it';\n"
    "  $('action-operator').value = 'alice';\n"
    "  $('action-' + a).click();\n"
    "  l('declined: ' + $('action-result').textContent);\n"
    "  answer = true;\n"
    "  $('action-' + a).click();\n"
    "  await until('the reload', () => loads > l0 && $('trail'));\n"
    "  l('status after: ' + d().querySelector('.summary .badge')\n"
    "           .textContent);\n"
    "  l('trail: ' + $('trail').textContent);\n"
    " } },\n"
    /* pages, each copied into the report once drawn */
    " async pages() {\n"
    "  let i = 0;\n"
    "  for (const p of P.getAll('p')) {\n"
    "    const l0 = loads; f.src = p;\n"
    "    await until(p, () => loads > l0 && ($('results') ?\n"
    "      $('results').children.length > 0 :\n"
    "      !$('app').textContent.startsWith('loading')));\n"
    "    const div = document.createElement('div');\n"
    "    div.className = 'page'; div.dataset.i = i++;\n"
    "    div.innerHTML = $('app').innerHTML;\n"
    "    document.body.append(div);\n"
    "  }\n"
    " },\n"
    /* the "more" button appends the next page */
    " async more() {\n"
    "  f.src = '/ui?limit=2';\n"
    "  await until('page 1', () => $('sagas'));\n"
    "  log.push('page 1: ' + rows() + ' more ' + !$('more').hidden);\n"
    "  $('more').click();\n"
    "  await until('page 2', () => rows().split(',').length === 4);\n"
    "  log.push('page 2: ' + rows() + ' more ' + !$('more').hidden);\n"
    "  $('more').click();\n"
    "  await until('page 3', () => rows().split(',').length === 6);\n"
    "  log.push('page 3: ' + rows() + ' more ' + !$('more').hidden);\n"
    " },\n"
    /* the id search opens the saga */
    " async search() {\n"
    "  for (const id of P.getAll('id')) {\n"
    "  let l0 = loads; f.src = '/ui';\n"
    "  await until('the search', () => loads > l0 && $('f-id'));\n"
    "  l0 = loads;\n"
    "  $('f-id').value = id;\n"
    "  $('search').requestSubmit();\n"
    "  await until('the saga', () => loads > l0 && ($('saga-id') ||\n"
    "                                               $('not-found')));\n"
    "  log.push('opened: ' + f.contentWindow.location.pathname + ' ' +\n"
    "           ($('saga-id') || $('not-found')).textContent);\n"
    " } },\n"
    /* auto-refresh: p-3 is resolved behind the page's back */
    " async refresh() {\n"
    "  f.src = '/ui?state=compensation_failed&type=shop&refresh=1';\n"
    "  await until('the list', () => $('sagas'));\n"
    "  const l0 = loads;\n"
    "  log.push('before: ' + rows());\n"
    "  const r = await fetch('/sagas/p-3/resolve', { method: 'POST',\n"
    "    headers: { 'Content-Type': 'application/json' },\n"
    "    body: JSON.stringify({ reason: 'done by hand' }) });\n"
    "  log.push('resolve: ' + r.status);\n"
    "  await until('the refresh', () => !rows().includes('p-3'));\n"
    "  log.push('after: ' + rows() + ' reloads ' + (loads - l0));\n"
    "  log.push('filters: ' + $('f-state').value + ' ' + $('f-type').value +\n"
    "           ' ' + $('f-refresh').checked + ' ' +\n"
    "           f.contentWindow.location.search);\n"
    "  log.push('counts: ' + $('counts').textContent);\n"
    "  $('f-refresh').click();\n"
    "  log.push('toggled: ' + f.contentWindow.location.search);\n"
    " },\n"
    "};\n"
    "S[P.get('t')]().catch(e => log.push('error: ' + e.message))\n"
    "  .finally(() => { document.getElementById('out').textContent =\n"
    "                     'done\\n' + log.join('\\n'); });\n"
    "</script></body></html>";

/* One saga of the fake source: the machine (kept, so an operator action
 * goes through sm_step as sagad's engine does), its saga_index row and its
 * history as GET /sagas/{id} renders it. */
typedef struct {
  sm_t *s;
  admin_saga_row_t row;
  abuf_t history;
  bool first;
  int posts;              /* operator actions answered 202 */
  char reason[128], who[64]; /* the last action's */
} saga_t;

#define NSAGAS 6

typedef struct {
  admin_source_t src;
  saga_t sagas[NSAGAS];
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
  saga_t *g = arg;
  assert_int_equal(admin_pg_history_record(&g->history, &g->first, s->def,
                                           s->version, rec, len),
                   0);
}

static saga_t *find(fake_t *f, const char *id) {
  for (size_t i = 0; i < NSAGAS; i++)
    if (!strcmp(f->sagas[i].row.saga_id, id))
      return &f->sagas[i];
  return NULL;
}

static void get_saga(void *arg, const char *id, admin_reply_t *r) {
  saga_t *g = find(arg, id);
  if (!g) {
    admin_reply(r, 404, NULL, 0);
    return;
  }
  abuf_t b = ABUF_INIT;
  abuf_puts(&b, "{\"saga\":");
  admin_json_saga_row(&b, &g->row);
  abuf_printf(&b, ",\"history\":[%s],\"history_truncated\":false}",
              abuf_cstr(&g->history));
  admin_reply(r, 200, b.data, b.len);
  abuf_free(&b);
}

static bool within(iq_time_t t, int64_t ms, bool lower) {
  if (!t.set)
    return true;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t at = t.relative ? (int64_t)now.tv_sec * 1000 +
                                now.tv_nsec / 1000000 - t.ms
                          : t.ms;
  return lower ? ms >= at : ms < at;
}

/* The filters as saga_index applies them (index_query.c), but state: a
 * parked saga is the stuck one here. */
static bool matches(const admin_list_query_t *q, const saga_t *g) {
  return (!q->type || !strcmp(q->type, g->row.saga_type)) &&
         (!q->stuck || g->row.stuck) &&
         within(q->since, g->row.started_ms, true) &&
         within(q->until, g->row.started_ms, false);
}

/* Newest first, a page of q->limit past q->after, the total and the
 * counts, as admin_pg answers. */
static void list_sagas(void *arg, const admin_list_query_t *q,
                       admin_reply_t *r) {
  fake_t *f = arg;
  saga_t *order[NSAGAS];
  size_t n = 0;
  for (size_t i = 0; i < NSAGAS; i++)
    if (matches(q, &f->sagas[i]) &&
        (!q->state || !strcmp(q->state, f->sagas[i].row.status)))
      order[n++] = &f->sagas[i];
  for (size_t i = 1; i < n; i++) /* insertion sort, newest first */
    for (size_t k = i; k > 0 && order[k]->row.started_ms >
                                    order[k - 1]->row.started_ms; k--) {
      saga_t *t = order[k];
      order[k] = order[k - 1];
      order[k - 1] = t;
    }
  size_t from = 0;
  iq_cursor_t after;
  if (q->after) {
    assert_int_equal(iq_cursor_decode(q->after, &after), 0);
    while (from < n && strcmp(order[from]->row.saga_id, after.saga_id))
      from++;
    from++;
  }
  abuf_t b = ABUF_INIT;
  abuf_puts(&b, "{\"sagas\":[");
  size_t end = from;
  for (; end < n && end - from < q->limit; end++) {
    if (end > from)
      abuf_add(&b, ",", 1);
    admin_json_saga_row(&b, &order[end]->row);
  }
  abuf_printf(&b, "],\"total\":%zu", n);
  if (q->counts) {
    abuf_puts(&b, ",\"counts\":{");
    const char *name;
    for (size_t k = 0; (name = iq_status_name(k)) != NULL; k++) {
      int c = 0;
      for (size_t i = 0; i < NSAGAS; i++)
        c += matches(q, &f->sagas[i]) &&
             !strcmp(f->sagas[i].row.status, name);
      abuf_printf(&b, "%s\"%s\":%d", k ? "," : "", name, c);
    }
    abuf_add(&b, "}", 1);
  }
  char next[IQ_CURSOR_SIZE], us[32];
  if (end < n && end > from) {
    snprintf(us, sizeof us, "%lld",
             (long long)order[end - 1]->row.started_ms * 1000);
    assert_int_equal(iq_cursor_encode(us, order[end - 1]->row.saga_id, next,
                                      sizeof next),
                     0);
    abuf_printf(&b, ",\"next\":\"%s\"}", next);
  } else {
    abuf_puts(&b, ",\"next\":null}");
  }
  admin_reply(r, 200, b.data, b.len);
  abuf_free(&b);
}

/* Feed the machine an operator's input as the engine would and record
 * what it decided; 202, or 409 when the machine does not apply it. */
static void apply(saga_t *g, uint8_t type, const char *reason,
                  const char *who, admin_reply_t *r) {
  static sm_output_t out;
  static uint8_t rec[65536];
  sm_input_t in = {.type = type, .reason = reason, .who = who};
  int64_t now = g->row.updated_ms + 60000;
  assert_int_equal(sm_step(g->s, &in, now, NULL, &out), SAGA_CORE_OK);
  if (out.verdict != SM_V_APPLIED) {
    static const char no[] = "{\"error\":\"refused by the machine\"}";
    admin_reply(r, 409, no, sizeof no - 1);
    return;
  }
  size_t len = 0;
  assert_int_equal(saga_codec_encode(out.events, out.n_events, now, rec,
                                     sizeof rec, &len),
                   SAGA_CORE_OK);
  keep_record(g, g->s, rec, len, NULL, now);
  g->row.status = sm_status_name((sm_status_t)g->s->status);
  g->row.version = g->s->version;
  g->row.updated_ms = now;
  g->row.stuck = false;
  g->posts++;
  snprintf(g->reason, sizeof g->reason, "%s", reason);
  snprintf(g->who, sizeof g->who, "%s", who ? who : "");
  static const char sent[] = "{\"status\":\"sent\"}";
  admin_reply(r, 202, sent, sizeof sent - 1);
}

static void operate_saga(void *arg, admin_op_t op, const char *id,
                         const char *reason, const char *who,
                         admin_reply_t *r) {
  saga_t *g = find(arg, id);
  if (!g)
    admin_reply(r, 404, NULL, 0);
  else
    apply(g, op == ADMIN_OP_RETRY ? SM_IN_OPERATOR_RETRY
                                  : SM_IN_OPERATOR_RESOLVE,
          reason, who, r);
}

static void cancel_saga(void *arg, const char *id, const char *reason,
                        const char *who, admin_reply_t *r) {
  saga_t *g = find(arg, id);
  if (!g)
    admin_reply(r, 404, NULL, 0);
  else
    apply(g, SM_IN_CANCEL, reason, who, r);
}

/* Test-only: the page that drives the timeline page in a frame (H). */
static void harness(admin_http_req_t *req, void *arg) {
  (void)arg;
  admin_http_respond(req, 200, "text/html; charset=utf-8", HARNESS,
                     strlen(HARNESS));
}

static void on_loop(uv_loop_t *loop, void *arg) {
  fake_t *f = arg;
  f->srv = admin_http_new(loop, NULL);
  assert_non_null(f->srv);
  assert_int_equal(admin_api_register(f->srv, &f->src, NULL), 0);
  assert_int_equal(admin_ui_register(f->srv), 0);
  assert_int_equal(
      admin_http_route(f->srv, "GET", "/test/harness", harness, NULL), 0);
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

/* Drive saga id through script from t0 into slot i of the fake. */
static void seed(size_t i, const char *id, int64_t t0, const uint8_t *script,
                 size_t n, const char *want) {
  saga_t *g = &fake.sagas[i];
  g->first = true;
  g->s = seed_drive(def, id, t0, 400, script, n, keep_record, g);
  assert_string_equal(sm_status_name((sm_status_t)g->s->status), want);
  g->row = (admin_saga_row_t){.saga_id = g->s->id,
                              .saga_type = "shop",
                              .definition_version = 1,
                              .status = want,
                              .version = g->s->version,
                              .started_ms = g->s->started_ms,
                              .updated_ms = g->s->updated_ms,
                              .stuck = !strcmp(want, "compensation_failed")};
}

/* 2023-11-14T22:13:20Z: u-1 starts; the others before it, newest first:
 * r-1 21:20, p-2 21:10, p-1 21:00, p-3 20:50, c-1 20:40 (UTC). */
#define T0 1700000000000LL
#define MINUTE 60000LL

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
  /* compensated: a retried step, a timed-out attempt, two compensations */
  const uint8_t undone[] = {SM_OUTCOME_SUCCESS,   SM_OUTCOME_RETRYABLE,
                            SEED_TIMEOUT,         SM_OUTCOME_FAILURE,
                            SM_OUTCOME_SUCCESS,   SM_OUTCOME_SUCCESS};
  seed(0, "u-1", T0, undone, sizeof undone, "compensated");
  /* parked: charge fails, its refund keeps failing */
  uint8_t parked[12];
  memset(parked, SM_OUTCOME_FAILURE, sizeof parked);
  parked[0] = SM_OUTCOME_SUCCESS;
  seed_step_output = "{\"reservation\":\"r-77\"}";
  seed(1, "p-1", T0 - 73 * MINUTE - 20000, parked, sizeof parked,
       "compensation_failed");
  seed(2, "p-2", T0 - 63 * MINUTE - 20000, parked, sizeof parked,
       "compensation_failed");
  seed(3, "p-3", T0 - 83 * MINUTE - 20000, parked, sizeof parked,
       "compensation_failed");
  /* running: reserve done, charge in flight */
  const uint8_t running[] = {SM_OUTCOME_SUCCESS};
  seed(4, "r-1", T0 - 53 * MINUTE - 20000, running, sizeof running, "running");
  const uint8_t done[] = {SM_OUTCOME_SUCCESS, SM_OUTCOME_SUCCESS,
                          SM_OUTCOME_SUCCESS};
  seed(5, "c-1", T0 - 93 * MINUTE - 20000, done, sizeof done, "completed");
  /* and a record this reader cannot decode (a newer sagad's), last */
  assert_int_equal(admin_pg_history_record(&fake.sagas[5].history,
                                           &fake.sagas[5].first, def,
                                           fake.sagas[5].s->version + 1,
                                           "\xff\xff\xff", 3),
                   0);
  seed_step_output = NULL;
  fake.src = (admin_source_t){.arg = &fake,
                              .get_saga = get_saga,
                              .list_sagas = list_sagas,
                              .cancel_saga = cancel_saga,
                              .operate_saga = operate_saga};
  lt = loop_thread_start(on_loop, on_stop, &fake);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  loop_thread_stop(lt);
  for (size_t i = 0; i < NSAGAS; i++) {
    abuf_free(&fake.sagas[i].history);
    free(fake.sagas[i].s);
  }
  saga_def_free(def);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", profile);
  return system(cmd) == 0 ? 0 : -1;
}

/* Run chromium headless on path of the test server with extra flags, in
 * the zone Asia/Kolkata (UTC+05:30, so a local time differs from UTC);
 * its stdout as a malloc'd string. */
static char *chromium(const char *extra, const char *path) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "TZ=Asia/Kolkata timeout %lld chromium --headless --no-sandbox "
           "--disable-gpu "
           "--disable-background-networking --disable-component-update "
           "--disable-sync --no-first-run --user-data-dir=%s "
           "--virtual-time-budget=30000 %s 'http://127.0.0.1:%d%s' "
           "2>/dev/null",
           (long long)(ts_timeout_ms(90000) / 1000), profile, extra,
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

/* (cmocka cuts long messages: the page goes to stderr whole.) */
static void has(const char *dom, const char *want) {
  if (!strstr(dom, want)) {
    fprintf(stderr, "the page:\n%s\n", dom);
    fail_msg("the page has no %s", want);
  }
}

static void has_not(const char *dom, const char *want) {
  if (strstr(dom, want)) {
    fprintf(stderr, "the page:\n%s\n", dom);
    fail_msg("the page has %s", want);
  }
}

/* The harness's report (the text of its <pre id="out">) for query. */
static char *drive(const char *query) {
  char path[256];
  snprintf(path, sizeof path, "/test/harness?%s", query);
  char *dom = chromium("--dump-dom", path);
  has(dom, "<pre id=\"out\">done\n");
  has_not(dom, "\nerror: ");
  return dom;
}

static void test_the_timeline_draws_every_attempt_and_compensation(
    void **state) {
  (void)state;
  /* an address whose escape is not UTF-8 is said so (the page stayed at
   * "loading..." with nothing said) */
  char *bad = chromium("--dump-dom", "/ui/saga/%C3");
  if (!strstr(bad, "could not read saga %C3: its address is not UTF-8"))
    fail_msg("%s", bad);
  free(bad);
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
  /* The history has an operator column; a finished saga has no action. */
  assert_non_null(strstr(dom, "<th>operator</th>"));
  assert_null(strstr(dom, "id=\"actions\""));
  free(dom);
}

/* Times in the browser's zone (Asia/Kolkata here), UTC on hover. */
/* Draw each of paths (NULL-terminated) in one Chromium run; the markup
 * of each page's #app (malloc'd, in order) into out[]. */
static void draw(const char *const *paths, char **out) {
  abuf_t q = ABUF_INIT;
  abuf_puts(&q, "t=pages");
  for (const char *const *p = paths; *p; p++) {
    abuf_puts(&q, "&p=");
    for (const unsigned char *c = (const unsigned char *)*p; *c; c++)
      if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || strchr("-_./", *c))
        abuf_add(&q, (const char *)c, 1);
      else
        abuf_printf(&q, "%%%02X", *c);
  }
  char *dom = drive(abuf_cstr(&q));
  abuf_free(&q);
  size_t n = 0;
  for (; paths[n]; n++) {
    char mark[48];
    snprintf(mark, sizeof mark, "<div class=\"page\" data-i=\"%zu\">", n);
    const char *at = strstr(dom, mark);
    if (at == NULL) {
      fprintf(stderr, "the report:\n%s\n", dom);
      fail_msg("no page drawn for %s", paths[n]);
      return;
    }
    const char *stop =
        strstr(at + strlen(mark), "<div class=\"page\" data-i=");
    out[n] = strndup(at, stop ? (size_t)(stop - at) : strlen(at));
  }
  free(dom);
}

static void free_pages(char **pages, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(pages[i]);
}

/* Times in the browser's zone (Asia/Kolkata here), UTC on hover. */
static void test_times_are_local_with_utc_on_hover(void **state) {
  (void)state;
  static const char *const paths[] = {"/ui/saga/u-1", "/ui", NULL};
  char *pg[2];
  draw(paths, pg);
  has(pg[0], "<time datetime=\"2023-11-14T22:13:20.000Z\" title=\"2023-11-14 "
             "22:13:20.000 UTC\">2023-11-15 03:43:20.000 +05:30</time>");
  has(pg[1], "title=\"2023-11-14 22:13:20.000 UTC\">2023-11-15 03:43:20.000 "
             "+05:30</time>");
  free_pages(pg, 2);
}

static void test_the_list_filters_by_state_type_stuck_and_time(
    void **state) {
  (void)state;
  static const char *const paths[] = {
      "/ui?state=compensated", "/ui?state=running", "/ui?type=trip",
      "/ui?stuck=true",
      /* 03:00 in Kolkata is 21:30 UTC: only u-1 (22:13 UTC) started since */
      "/ui?since=2023-11-15T03:00",
      /* a time with its zone is taken as it is */
      "/ui?until=2023-11-14T21:05:00Z&since=2023-11-14T20:45:00Z",
      "/ui?since=yesterday", NULL};
  char *pg[7];
  draw(paths, pg);
  has(pg[0], "data-saga-id=\"u-1\"");
  has(pg[0], "href=\"/ui/saga/u-1\"");
  has_not(pg[0], "data-saga-id=\"p-1\"");
  has(pg[1], "data-saga-id=\"r-1\"");
  has_not(pg[1], "data-saga-id=\"u-1\"");
  has(pg[2], "no saga matches");
  has(pg[3], "data-saga-id=\"p-1\"");
  has(pg[3], "data-saga-id=\"p-2\"");
  has(pg[3], "data-saga-id=\"p-3\"");
  has_not(pg[3], "data-saga-id=\"u-1\"");
  has_not(pg[3], "data-saga-id=\"r-1\"");
  has(pg[4], "data-saga-id=\"u-1\"");
  has_not(pg[4], "data-saga-id=\"r-1\"");
  has(pg[4], "1 of 1 matching");
  has(pg[5], "data-saga-id=\"p-1\"");
  has(pg[5], "data-saga-id=\"p-3\"");
  has_not(pg[5], "data-saga-id=\"p-2\"");
  has_not(pg[5], "data-saga-id=\"c-1\"");
  has(pg[6], "since: \"yesterday\" is neither a duration");
  has_not(pg[6], "saga-row");
  free_pages(pg, 7);
}

static void test_the_counts_per_state_follow_the_other_filters(
    void **state) {
  (void)state;
  static const char *const paths[] = {"/ui?type=shop&state=running",
                                      "/ui?stuck=true", NULL};
  char *pg[2];
  draw(paths, pg);
  has(pg[0], "data-state=\"any\" href=\"/ui?type=shop\">any <b>6</b>");
  has(pg[0], "data-state=\"running\" href=\"/ui?type=shop&amp;state="
             "running\">running <b>1</b>");
  has(pg[0], "class=\"count current\" data-state=\"running\"");
  has(pg[0], "data-state=\"compensation_failed\" href=\"/ui?type=shop&amp;"
             "state=compensation_failed\">compensation failed <b>3</b>");
  has(pg[0], ">completed <b>1</b>");
  has(pg[0], ">compensated <b>1</b>");
  has(pg[0], ">compensating <b>0</b>");
  has(pg[1], ">any <b>3</b>");
  has(pg[1], ">running <b>0</b>");
  has(pg[1], ">compensation failed <b>3</b>");
  free_pages(pg, 2);
}

static void test_more_appends_the_next_page_newest_first(void **state) {
  (void)state;
  char *dom = drive("t=more");
  has(dom, "page 1: u-1,r-1 more true\n");
  has(dom, "page 2: u-1,r-1,p-2,p-1 more true\n");
  has(dom, "page 3: u-1,r-1,p-2,p-1,p-3,c-1 more false");
  free(dom);
}

static void test_the_search_opens_a_saga_by_id(void **state) {
  (void)state;
  char *dom = drive("t=search&id=p-2&id=nobody");
  has(dom, "opened: /ui/saga/p-2 p-2\n");
  has(dom, "opened: /ui/saga/nobody could not read saga nobody: ");
  free(dom);
}

/* A parked saga: the failure on top, payloads collapsed, retry and
 * resolve offered (not cancel); a completed one: its output. */
static void test_a_parked_saga_shows_its_failure_and_payloads(void **state) {
  (void)state;
  static const char *const paths[] = {"/ui/saga/p-1", "/ui/saga/c-1", NULL};
  char *pg[2];
  draw(paths, pg);
  has(pg[0], "id=\"failure\" class=\"failure parked\"");
  has(pg[0], "<span class=\"k\">parked: compensation failed</span><b>reserve"
             "</b> compensation #");
  has(pg[0], "<span id=\"failure-reason\">declined</span>");
  /* the failure comes before the timeline */
  assert_true(strstr(pg[0], "id=\"failure\"") <
              strstr(pg[0], "id=\"timeline\""));
  has(pg[0], "<details class=\"payload\" data-payload=\"input\"><summary>"
             "input <span class=\"muted\">35 bytes</span></summary><pre>{\n"
             "  \"order\": 42,\n  \"ref\": 9007199254740993\n}</pre>"
             "</details>");
  has(pg[0], "<details class=\"payload\" data-payload=\"step:reserve\">"
             "<summary>output of reserve <span class=\"muted\">22 bytes"
             "</span></summary><pre>{\n  \"reservation\": \"r-77\"\n}</pre>");
  has(pg[0], "id=\"action-retry\"");
  has(pg[0], "id=\"action-resolve\"");
  has_not(pg[0], "id=\"action-cancel\"");
  has(pg[1], "data-payload=\"output\"><summary>saga output");
  /* an undecodable record has no time: listed, off the axis (every bar
   * was placed at NaN%) */
  has(pg[1], "<td>undecodable</td>");
  has_not(pg[1], "NaN");
  has_not(pg[1], "<details class=\"payload\" open");
  has_not(pg[1], "id=\"failure\"");
  has_not(pg[1], "id=\"actions\"");
  free_pages(pg, 2);
}

/* Each action: refused without a reason, not sent when the confirmation
 * is declined, sent once confirmed; the reason and operator are in the
 * history and the trail, and the saga's state changed. */
static void check_action(const char *dom, const char *id, const char *action,
                         const char *asked, const char *status,
                         const char *did) {
  char want[256];
  snprintf(want, sizeof want, "%s without reason: a reason is required",
           action);
  has(dom, want);
  snprintf(want, sizeof want, "%s confirm: %s", action, asked);
  has(dom, want);
  snprintf(want, sizeof want, "%s declined: %s not sent", action, action);
  has(dom, want);
  snprintf(want, sizeof want, "%s status after: %s\n", action, status);
  has(dom, want);
  snprintf(want, sizeof want, "%s by alice: ticket 42: %s it", did, action);
  has(dom, want);
  saga_t *g = find(&fake, id);
  assert_int_equal(g->posts, 1);
  snprintf(want, sizeof want, "ticket 42: %s it", action);
  assert_string_equal(g->reason, want);
  assert_string_equal(g->who, "alice");
  assert_string_equal(g->row.status, status);
}

static void test_retry_resolve_and_cancel_confirm_and_record_a_reason(
    void **state) {
  (void)state;
  char *dom = drive("t=act&a=p-1:retry&a=p-2:resolve&a=r-1:cancel");
  check_action(dom, "p-1", "retry",
               "Retry the failed compensation of saga p-1?", "compensating",
               "retried");
  check_action(dom, "p-2", "resolve", "Resolve saga p-2?", "compensated",
               "resolved");
  check_action(dom, "r-1", "cancel", "Cancel saga r-1?", "compensating",
               "cancelled");
  free(dom);
}

static void test_auto_refresh_keeps_the_filters(void **state) {
  (void)state;
  char *dom = drive("t=refresh");
  has(dom, "before: p-3\n");
  has(dom, "resolve: 202\n");
  /* refreshed in place, without reloading the page */
  has(dom, "after:  reloads 0\n");
  has(dom, "filters: compensation_failed shop true "
           "?state=compensation_failed&amp;type=shop&amp;refresh=1\n");
  has(dom, "toggled: ?state=compensation_failed&amp;type=shop</pre>");
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
      cmocka_unit_test(test_times_are_local_with_utc_on_hover),
      cmocka_unit_test(test_the_list_filters_by_state_type_stuck_and_time),
      cmocka_unit_test(test_the_counts_per_state_follow_the_other_filters),
      cmocka_unit_test(test_more_appends_the_next_page_newest_first),
      cmocka_unit_test(test_the_search_opens_a_saga_by_id),
      cmocka_unit_test(test_a_parked_saga_shows_its_failure_and_payloads),
      cmocka_unit_test(
          test_retry_resolve_and_cancel_confirm_and_record_a_reason),
      cmocka_unit_test(test_auto_refresh_keeps_the_filters),
      cmocka_unit_test(test_a_screenshot_of_the_timeline_is_written),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
