/* The real sagactl program against the embedded PostgreSQL and Kafka: a
 * scratch database holds the event store schema, a saga_index table and
 * saga streams written with the coordinator's codec (driven through the
 * pure machine), and each test runs the binary and checks its output and
 * exit code. start and retry are checked by consuming what they produced. */
#include <fcntl.h>
#include <setjmp.h>
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

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "es_internal.h" /* the archive writer of saga-es-archive */
#include "saga.pb-c.h"
#include "saga/eventstore.h"
#include "saga_codec.h"
#include "run_sagactl.h"
#include "saga_machine.h"
#include "test_support.h"
#include "timetext.h"
#include "wire_kafka.h" /* the coordinator's answer to cancel --wait */

static const char *ORDER_DEF =
    "{\"name\":\"order\",\"version\":1,\"defaults\":{\"timeout_ms\":5000,"
    "\"retry\":{\"max_attempts\":2},\"compensation_retry\":"
    "{\"max_attempts\":1}},\"steps\":["
    "{\"name\":\"reserve_inventory\",\"topic\":\"inventory.commands\","
    "\"compensation\":{\"action\":\"release\"}},"
    "{\"name\":\"charge_payment\",\"topic\":\"payment.commands\","
    "\"kind\":\"pivot\"},"
    "{\"name\":\"ship\",\"topic\":\"shipping.commands\",\"kind\":"
    "\"retriable\"}]}";

static char *conninfo;
/* A database with saga_index but no event store (made in setup, so that
 * teardown drops it whatever the test did). */
static char *noes_conninfo;
static char tmpdir[64];
static char defs_dir[128];
static saga_def_t *def;

/* ---- running the program ---------------------------------------------- */

typedef sagactl_result_t result_t;

/* Run sagactl with args (NULL-terminated) and SAGA_PG_CONNINFO set to the
 * scratch database, HOME to an empty folder. */
static result_t run(const char *first, ...) {
  const sagactl_how_t how = {.bin = SAGACTL_BIN,
                             .dir = tmpdir,
                             .conninfo = conninfo,
                             .unset_kafka = 1}; /* tests pass --kafka */
  va_list ap;
  va_start(ap, first);
  result_t r = sagactl_vrun(&how, first, ap);
  va_end(ap);
  return r;
}

/* As run, with SAGA_PG_CONNINFO set to pg ("": no PostgreSQL configured,
 * as sagactl takes an empty variable for an unset one). */
static result_t run_on(const char *pg, const char *first, ...) {
  const sagactl_how_t how = {.bin = SAGACTL_BIN,
                             .dir = tmpdir,
                             .conninfo = pg,
                             .unset_kafka = 1};
  va_list ap;
  va_start(ap, first);
  result_t r = sagactl_vrun(&how, first, ap);
  va_end(ap);
  return r;
}

static void result_free(result_t *r) { sagactl_result_free(r); }

static void expect(result_t *r, int rc, const char *in_out,
                   const char *in_err) {
  if (r->rc != rc || (in_out != NULL && strstr(r->out, in_out) == NULL) ||
      (in_err != NULL && strstr(r->err, in_err) == NULL))
    fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout "
             "\"%s\", stderr \"%s\"",
             r->rc, rc, r->out, r->err, in_out ? in_out : "",
             in_err ? in_err : "");
}

/* Every line on stderr is sagactl's own ("sagactl: ..."), at most max of
 * them: no library writes its log there behind sagactl's back. */
static void expect_own_lines(const result_t *r, int max) {
  int n = 0;
  for (const char *p = r->err; *p != '\0'; n++) {
    if (strncmp(p, "sagactl: ", 9) != 0)
      fail_msg("stderr line %d is not sagactl's own:\n%s", n + 1, r->err);
    const char *nl = strchr(p, '\n');
    p = nl != NULL ? nl + 1 : p + strlen(p);
  }
  if (n > max)
    fail_msg("%d lines on stderr, at most %d wanted:\n%s", n, max, r->err);
}

static cJSON *json_of(const result_t *r) {
  cJSON *j = cJSON_Parse(r->out);
  if (j == NULL)
    fail_msg("not JSON: %s", r->out);
  return j;
}

/* ---- seeding ------------------------------------------------------------ */

static void exec_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
}

static void append_record(es_store_t *st, const sm_t *s, sm_output_t *out,
                          int64_t at) {
  if (out->n_events == 0)
    return;
  /* sagad records the saga's output (its definition's "output" mapping)
   * in the Completed event */
  static const char output[] = "{\"shipment\":\"ship-1\"}";
  for (size_t i = 0; i < out->n_events; i++)
    if (out->events[i].type == SM_EV_COMPLETED) {
      out->events[i].payload = (const uint8_t *)output;
      out->events[i].payload_len = sizeof output - 1;
    }
  uint8_t buf[8192];
  size_t len = 0;
  assert_int_equal(saga_codec_encode(out->events, out->n_events, at, buf,
                                     sizeof buf, &len),
                   SAGA_CORE_OK);
  char stream[96];
  snprintf(stream, sizeof stream, "saga-%s", s->id);
  es_event_t ev = {.type = saga_codec_record_type(out->events, out->n_events),
                   .data = buf,
                   .data_len = len};
  assert_int_equal(es_append(st, stream, (int64_t)s->version - 1, &ev, 1,
                             NULL),
                   ES_ERR_OK);
}

/* Drive a saga through the machine: start at t0, then (when cancel is
 * not NULL) cancel it 50 ms later, answer each command with the next
 * scripted outcome 100 ms later, fire backoff timers; store every
 * transition and the saga's index row. */
static void seed_with(PGconn *c, es_store_t *st, const char *id, int64_t t0,
                      const uint8_t *script, size_t nscript,
                      const sm_input_t *cancel) {
  sm_t *s = malloc(sm_size(def, strlen(id)));
  assert_non_null(s);
  assert_int_equal(sm_init(s, id, def), SAGA_CORE_OK);
  sm_output_t out;
  int64_t now = t0;
  const char *input = "{\"order\":42}";
  sm_input_t in = {.type = SM_IN_START,
                     .payload = (const uint8_t *)input,
                     .payload_len = strlen(input)};
  assert_int_equal(sm_step(s, &in, now, NULL, &out), SAGA_CORE_OK);
  append_record(st, s, &out, now);
  size_t k = 0;
  if (cancel != NULL) {
    /* the command in flight is drained: answered after the cancel */
    sm_effect_t sent = {0};
    for (size_t i = 0; i < out.n_effects; i++)
      if (out.effects[i].type == SM_FX_SEND)
        sent = out.effects[i];
    now += 50;
    assert_int_equal(sm_step(s, cancel, now, NULL, &out), SAGA_CORE_OK);
    assert_int_equal(out.verdict, SM_V_APPLIED);
    append_record(st, s, &out, now);
    assert_true(sent.type == SM_FX_SEND && k < nscript);
    now += 100;
    in = (sm_input_t){.type = SM_IN_REPLY,
                      .step = sent.step,
                      .action = sent.action,
                      .attempt = sent.attempt,
                      .outcome = script[k++]};
    assert_int_equal(sm_step(s, &in, now, NULL, &out), SAGA_CORE_OK);
    assert_int_equal(out.verdict, SM_V_APPLIED);
    append_record(st, s, &out, now);
  }
  for (;;) {
    const sm_effect_t *send = NULL, *backoff = NULL;
    for (size_t i = 0; i < out.n_effects; i++) {
      if (out.effects[i].type == SM_FX_SEND && send == NULL)
        send = &out.effects[i];
      if (out.effects[i].type == SM_FX_TIMER &&
          out.effects[i].timer == SM_TIMER_BACKOFF)
        backoff = &out.effects[i];
    }
    if (send != NULL && k < nscript) {
      now += 100;
      in = (sm_input_t){.type = SM_IN_REPLY,
                          .step = send->step,
                          .action = send->action,
                          .attempt = send->attempt,
                          .outcome = script[k++],
                          .reason = "declined"};
    } else if (send == NULL && backoff != NULL) {
      now = backoff->at_ms;
      in = (sm_input_t){.type = SM_IN_TIMER,
                          .step = backoff->step,
                          .action = backoff->action,
                          .attempt = backoff->attempt,
                          .timer = backoff->timer};
    } else {
      break;
    }
    assert_int_equal(sm_step(s, &in, now, NULL, &out), SAGA_CORE_OK);
    assert_int_equal(out.verdict, SM_V_APPLIED);
    append_record(st, s, &out, now);
  }
  const char *step = NULL;
  for (uint32_t i = 0; i < def->nsteps && step == NULL; i++)
    if (s->steps[i].status == SM_STEP_RUNNING ||
        s->steps[i].status == SM_STEP_COMP_RUNNING)
      step = def->steps[i].name;
  char version[16], started[32], updated[32], deadline[32];
  snprintf(version, sizeof version, "%u", s->version);
  snprintf(started, sizeof started, "%.3f", (double)t0 / 1000.0);
  snprintf(updated, sizeof updated, "%.3f", (double)s->updated_ms / 1000.0);
  int64_t next = sm_next_timer(s);
  snprintf(deadline, sizeof deadline, "%.3f", (double)next / 1000.0);
  const char *params[7] = {id,      sm_status_name((sm_status_t)s->status),
                           version, started,
                           updated, next > 0 ? deadline : NULL,
                           step};
  PGresult *r = PQexecParams(
      c,
      "INSERT INTO saga_index (saga_id, saga_type, definition_version, "
      "status, partition, version, started_at, updated_at, "
      "next_deadline_at, current_step) VALUES ($1, 'order', 1, $2, 0, $3, "
      "to_timestamp($4::float8), to_timestamp($5::float8), "
      "to_timestamp($6::float8), $7)",
      7, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    fail_msg("insert: %s", PQerrorMessage(c));
  PQclear(r);
  free(s);
}

static void seed(PGconn *c, es_store_t *st, const char *id, int64_t t0,
                 const uint8_t *script, size_t nscript) {
  seed_with(c, st, id, t0, script, nscript, NULL);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sagactl-it-XXXXXX");
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  snprintf(defs_dir, sizeof defs_dir, "%s/defs", tmpdir);
  if (mkdir(defs_dir, 0700) != 0)
    return -1;
  char path[192];
  snprintf(path, sizeof path, "%s/order.v1.json", defs_dir);
  write_file(path, ORDER_DEF);
  if (saga_def_parse(ORDER_DEF, strlen(ORDER_DEF), "order", &def, NULL) != 0)
    return -1;

  conninfo = ts_pg_create_database("sagactl");
  noes_conninfo = ts_pg_create_database("sagactl_noes");
  char err[ES_ERRBUF_SIZE];
  if (es_migrate(conninfo, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "migrate: %s\n", err);
    return -1;
  }
  PGconn *c = PQconnectdb(conninfo);
  es_store_t *st = NULL;
  if (PQstatus(c) != CONNECTION_OK ||
      es_store_open(conninfo, NULL, &st, err, sizeof err) != 0)
    return -1;
  exec_ok(c, "CREATE TABLE saga_index (saga_id text PRIMARY KEY, "
             "saga_type text NOT NULL, definition_version int NOT NULL, "
             "status text NOT NULL, partition int NOT NULL, "
             "version bigint NOT NULL, started_at timestamptz NOT NULL, "
             "updated_at timestamptz NOT NULL, next_deadline_at timestamptz, "
             "current_step text, stuck_at timestamptz)"); /* NULL: judged
                                                 by the definitions */
  int64_t now = ts_now_ms(); /* monotonic: use the database's clock */
  PGresult *r = PQexec(c, "SELECT (extract(epoch from now()) * 1000)::bigint");
  now = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  const uint8_t done[] = {SM_OUTCOME_SUCCESS, SM_OUTCOME_SUCCESS,
                          SM_OUTCOME_SUCCESS};
  const uint8_t park[] = {SM_OUTCOME_SUCCESS, SM_OUTCOME_FAILURE,
                          SM_OUTCOME_FAILURE};
  const uint8_t one[] = {SM_OUTCOME_SUCCESS};
  seed(c, st, "s-done", now - 3 * 3600000, done, 3);
  seed(c, st, "s-run", now - 2 * 3600000, NULL, 0);
  seed(c, st, "s-park", now - 600000, park, 3);
  seed(c, st, "s-new", now - 60000, one, 1);
  es_store_close(st);
  PQfinish(c);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ts_pg_drop_database(conninfo);
  ts_pg_drop_database(noes_conninfo);
  saga_def_free(def);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- tests ------------------------------------------------------------- */

static void test_status_shows_a_saga_and_exits_1_for_an_unknown_one(
    void **state) {
  (void)state;
  result_t r = run("status", "s-done", NULL);
  expect(&r, 0, "completed", NULL);
  assert_non_null(strstr(r.out, "order (definition v1)"));
  assert_non_null(strstr(r.out, "output:        {\"shipment\":\"ship-1\"}"));
  result_free(&r);
  r = run("status", "s-done", "--json", NULL);
  expect(&r, 0, NULL, NULL);
  cJSON *o = json_of(&r);
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "output"),
                                          "shipment")->valuestring,
                      "ship-1");
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "cancelled")));
  cJSON_Delete(o);
  result_free(&r);
  r = run("status", "s-run", NULL);
  expect(&r, 0, "reserve_inventory", NULL);
  result_free(&r);
  r = run("status", "nope", NULL);
  expect(&r, 1, NULL, "saga \"nope\" not found in saga_index");
  result_free(&r);
  r = run("status", "s-park", "--json", NULL);
  expect(&r, 0, NULL, NULL);
  cJSON *j = json_of(&r);
  assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring,
                      "compensation_failed");
  assert_string_equal(cJSON_GetObjectItem(j, "type")->valuestring, "order");
  cJSON_Delete(j);
  result_free(&r);
  r = run("status", NULL);
  expect(&r, 2, NULL, "expected one saga id");
  result_free(&r);
}

/* Run list --json with up to 8 more arguments; the page's rows (JSON
 * array, owned by *doc) and the document. */
static cJSON *list_json(cJSON **doc, const char *first, ...) {
  const char *args[11] = {"list", "--json"};
  size_t n = 2;
  va_list ap;
  va_start(ap, first);
  for (const char *a = first; a != NULL && n < 10; a = va_arg(ap, const char *))
    args[n++] = a;
  va_end(ap);
  result_t r = run(args[0], args[1], args[2], args[3], args[4], args[5],
                   args[6], args[7], args[8], args[9], NULL);
  expect(&r, 0, NULL, NULL);
  *doc = json_of(&r);
  result_free(&r);
  cJSON *rows = cJSON_GetObjectItem(*doc, "sagas");
  assert_true(cJSON_IsArray(rows));
  assert_true(cJSON_IsNumber(cJSON_GetObjectItem(*doc, "total")));
  return rows;
}

/* The ids of a page, space-separated, and its total. */
static void list_ids(char *buf, size_t len, double *total, const char *a1,
                     const char *a2, const char *a3, const char *a4) {
  cJSON *doc;
  cJSON *rows = list_json(&doc, a1, a2, a3, a4, NULL);
  buf[0] = '\0';
  cJSON *row;
  cJSON_ArrayForEach(row, rows) {
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, "%s%s", n ? " " : "",
             cJSON_GetObjectItem(row, "saga_id")->valuestring);
  }
  if (total != NULL)
    *total = cJSON_GetObjectItem(doc, "total")->valuedouble;
  cJSON_Delete(doc);
}

static void expect_ids(const char *want, double want_total, const char *a1,
                       const char *a2, const char *a3, const char *a4) {
  char got[512];
  double total = -1;
  list_ids(got, sizeof got, &total, a1, a2, a3, a4);
  if (strcmp(got, want) != 0 || total != want_total)
    fail_msg("list %s %s %s %s: got [%s] of %g, want [%s] of %g",
             a1 ? a1 : "", a2 ? a2 : "", a3 ? a3 : "", a4 ? a4 : "", got,
             total, want, want_total);
}

static void test_list_filters_by_state_type_time_and_stuck(void **state) {
  (void)state;
  /* Newest first by start time; the total counts every match. */
  expect_ids("s-new s-park s-run s-done", 4, NULL, NULL, NULL, NULL);
  expect_ids("s-done s-run s-park s-new", 4, "--oldest-first", NULL, NULL,
             NULL);
  expect_ids("s-done", 1, "--state", "completed", NULL, NULL);
  expect_ids("s-park", 1, "--state", "compensation_failed", NULL, NULL);
  expect_ids("s-new s-park s-run s-done", 4, "--type", "order", NULL, NULL);
  expect_ids("", 0, "--type", "refund", NULL, NULL);
  /* --until: started before; --since: started at or after. */
  expect_ids("s-run s-done", 2, "--until", "1h", NULL, NULL);
  expect_ids("s-new s-park", 2, "--since", "1h", NULL, NULL);
  expect_ids("s-run", 1, "--since", "150m", "--until", "1h");
  expect_ids("s-new s-park s-run", 4, "--limit", "3", NULL, NULL);
  /* Stuck as sagad judges it: parked, or waiting on a step past its
   * stuck_after_ms (the definition's default, 5 min): s-run waits for 2 h,
   * s-new for a minute. */
  expect_ids("s-park s-run", 2, "--stuck", NULL, NULL, NULL);
  expect_ids("s-park s-run", 2, "--stuck", "--definitions", defs_dir, NULL);
  /* The definitions' per-step thresholds: reserve_inventory may wait 3 h,
   * so s-run (2 h on it) is not stuck by them; parked s-park still is. */
  char slow_dir[160], path[200];
  snprintf(slow_dir, sizeof slow_dir, "%s/slow-defs", tmpdir);
  assert_int_equal(mkdir(slow_dir, 0700), 0);
  snprintf(path, sizeof path, "%s/order.v1.json", slow_dir);
  char *slow = strdup(ORDER_DEF);
  const char *at = "\"name\":\"reserve_inventory\",";
  char *p = strstr(slow, at);
  assert_non_null(p);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "%.*s\"stuck_after_ms\":10800000,%s", (int)(p - slow + strlen(at)),
          slow, p + strlen(at));
  fclose(f);
  free(slow);
  expect_ids("s-park", 1, "--stuck", "--definitions", slow_dir, NULL);
  expect_ids("s-run", 1, "--stuck", "--state", "running", NULL);
  /* An absolute window: everything started in the last day, RFC 3339. */
  char since[SAGA_RFC3339_MS_SIZE];
  saga__rfc3339_ms(since, sizeof since, (int64_t)time(NULL) * 1000 - 86400000);
  expect_ids("s-new s-park s-run s-done", 4, "--since", since, NULL, NULL);
  expect_ids("", 0, "--until", since, NULL, NULL);

  result_t r = run("list", NULL);
  expect(&r, 0, "SAGA", NULL);
  assert_non_null(strstr(r.out, "shown 4 of 4 sagas (newest first); last "
                                "page\n"));
  result_free(&r);
  r = run("list", "--stuck", "--output", "jsonl", NULL);
  expect(&r, 0, NULL, "shown 2 of 2 sagas (newest first); last page");
  char *nl = strchr(r.out, '\n');
  assert_non_null(nl);
  assert_non_null(strstr(r.out, "\"saga_id\":\"s-park\""));
  assert_non_null(strstr(nl + 1, "\"saga_id\":\"s-run\""));
  assert_non_null(strstr(nl + 1, "\"stuck\":true"));
  result_free(&r);
}

static void test_list_bad_values_name_the_flag(void **state) {
  (void)state;
  static const struct {
    const char *flag, *value, *says;
  } bad[] = {
      {"--state", "stuck", "--state: unknown status \"stuck\" (running, "},
      {"--since", "soon", "--since: \"soon\" is neither an RFC 3339 time"},
      {"--until", "90", "--until: \"90\" is neither an RFC 3339 time"},
      {"--since", "2025-01-31", "--since: \"2025-01-31\" is neither"},
      {"--limit", "0", "--limit: expected a number between 1 and 1000000, "
                       "got \"0\""},
      {"--after", "s-run", "--after: \"s-run\" is not a list token"},
      {"--output", "yaml", "--output: expected table, json or jsonl, got "
                           "\"yaml\""},
      {"--type", "", "--type: expected a saga type of 1 to 64 bytes"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    result_t r = run("list", bad[i].flag, bad[i].value, NULL);
    expect(&r, 2, NULL, bad[i].says);
    result_free(&r);
  }
  result_t r = run("list", "--json", "--output", "table", NULL);
  expect(&r, 2, NULL, "--json and --output table disagree");
  result_free(&r);
  r = run("list", "--stuck", "5m", NULL);
  expect(&r, 2, NULL, "list: unexpected argument \"5m\"");
  result_free(&r);
  /* --output means the same on status and history, checked first. */
  static const char *const one[] = {"status", "history"};
  for (size_t i = 0; i < 2; i++) {
    r = run(one[i], "s-nobody", "--output", "yaml", NULL);
    expect(&r, 2, NULL, "--output: expected table, json or jsonl, got "
                        "\"yaml\"");
    result_free(&r);
    r = run(one[i], "s-nobody", "--json", "--output", "jsonl", NULL);
    expect(&r, 2, NULL, "--json and --output jsonl disagree");
    result_free(&r);
  }
}

/* Page through n sagas of type walk with every page size 1..limit: each
 * saga shows exactly once, in order, and every page says the same total. */
static void walk(size_t n, const char *limit, const char *order,
                 char seen[][8]) {
  char after[512] = "";
  size_t got = 0;
  for (int pages = 0; pages < 200; pages++) {
    cJSON *doc;
    cJSON *rows = after[0] != '\0'
                      ? list_json(&doc, "--type", "walk", "--limit", limit,
                                  "--after", after, order, NULL)
                      : list_json(&doc, "--type", "walk", "--limit", limit,
                                  order, NULL);
    assert_int_equal((int)cJSON_GetObjectItem(doc, "total")->valuedouble, n);
    cJSON *row;
    cJSON_ArrayForEach(row, rows) {
      assert_true(got < n);
      snprintf(seen[got++], 8, "%s",
               cJSON_GetObjectItem(row, "saga_id")->valuestring);
    }
    cJSON *next = cJSON_GetObjectItem(doc, "next");
    if (cJSON_IsNull(next)) {
      cJSON_Delete(doc);
      break;
    }
    assert_true(cJSON_IsString(next));
    snprintf(after, sizeof after, "%s", next->valuestring);
    cJSON_Delete(doc);
  }
  assert_int_equal(got, n);
}

static void test_list_pages_walk_every_saga_exactly_once(void **state) {
  (void)state;
  PGconn *c = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  /* 23 sagas; w-00..w-04 share one start time (ties broken by id), the
   * rest a microsecond-apart ladder. */
  exec_ok(c, "INSERT INTO saga_index (saga_id, saga_type, "
             "definition_version, status, partition, version, started_at, "
             "updated_at) SELECT format('w-%s', lpad(g::text, 2, '0')), "
             "'walk', 1, 'completed', 0, 3, "
             "timestamptz '2024-03-01 10:00:00.000001Z' + "
             "greatest(g - 4, 0) * interval '1 microsecond', now() "
             "FROM generate_series(0, 22) g");
  char want[23][8], seen[23][8];
  for (int i = 0; i < 23; i++)
    snprintf(want[i], 8, "w-%02d", 22 - i);
  static const char *const limits[] = {"1", "4", "5", "22", "23", "100"};
  for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
    memset(seen, 0, sizeof seen);
    walk(23, limits[l], NULL, seen);
    for (int i = 0; i < 23; i++)
      assert_string_equal(seen[i], want[i]);
    memset(seen, 0, sizeof seen);
    walk(23, limits[l], "--oldest-first", seen);
    for (int i = 0; i < 23; i++)
      assert_string_equal(seen[i], want[22 - i]);
  }
  /* The table prints the token of the next page. */
  result_t r = run("list", "--type", "walk", "--limit", "20", NULL);
  expect(&r, 0, "shown 20 of 23 sagas (newest first); next page: --after ",
         NULL);
  char token[512];
  assert_int_equal(sscanf(strstr(r.out, "--after ") + 8, "%511s", token), 1);
  result_free(&r);
  /* A saga that starts between two pages neither shifts the next page
   * nor shows in it: it sorts before the walk's position. */
  exec_ok(c, "INSERT INTO saga_index (saga_id, saga_type, "
             "definition_version, status, partition, version, started_at, "
             "updated_at) VALUES ('w-late', 'walk', 1, 'running', 0, 1, "
             "now(), now())");
  r = run("list", "--type", "walk", "--limit", "20", "--after", token, NULL);
  expect(&r, 0, "shown 3 of 24 sagas (newest first); last page", NULL);
  assert_null(strstr(r.out, "w-late"));
  assert_non_null(strstr(r.out, "w-02"));
  assert_non_null(strstr(r.out, "w-00"));
  assert_null(strstr(r.out, "w-03"));
  result_free(&r);
  exec_ok(c, "DELETE FROM saga_index WHERE saga_type = 'walk'");
  PQfinish(c);
}

static void test_history_shows_a_timeline_with_durations(void **state) {
  (void)state;
  result_t r = run("history", "s-done", "--definitions", defs_dir, NULL);
  expect(&r, 0, "reserve_inventory", NULL);
  assert_non_null(strstr(r.out, "Started"));
  assert_non_null(strstr(r.out, "Succeeded"));
  assert_non_null(strstr(r.out, "SUCCESS"));
  assert_non_null(strstr(r.out, "100ms"));
  assert_non_null(strstr(r.out, "Completed"));
  result_free(&r);
  r = run("history", "s-park", "--json", "--definitions", defs_dir, NULL);
  expect(&r, 0, NULL, NULL);
  cJSON *j = json_of(&r);
  assert_string_equal(cJSON_GetObjectItem(j, "type")->valuestring, "order");
  cJSON *events = cJSON_GetObjectItem(j, "events");
  int parked = 0, failed = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, events) {
    const char *ev = cJSON_GetObjectItem(e, "event")->valuestring;
    parked += strcmp(ev, "Parked") == 0;
    if (strcmp(ev, "AttemptFailed") == 0) {
      failed++;
      assert_int_equal(cJSON_GetObjectItem(e, "duration_ms")->valueint, 100);
      assert_string_equal(cJSON_GetObjectItem(e, "outcome")->valuestring,
                          "FAILURE");
    }
  }
  assert_int_equal(parked, 1);
  assert_int_equal(failed, 2);
  cJSON_Delete(j);
  result_free(&r);
  r = run("history", "s-run", NULL); /* no definitions: steps by number */
  expect(&r, 0, "#0", "");
  result_free(&r);
  r = run("history", "nope", NULL);
  expect(&r, 1, NULL, "stream \"saga-nope\" has no events");
  result_free(&r);
}

/* start refuses an id or type the wire would refuse before Kafka is
 * reached, naming the field (it said "required field missing or invalid"
 * after the starter was up, or exit 3 with Kafka out of reach). */
static void test_start_refuses_what_the_wire_would_naming_the_field(
    void **state) {
  (void)state;
  static const struct {
    const char *type, *id, *says;
  } bad[] = {
      {"order", "a/b", "sagactl: start: saga_id contains a forbidden "
                       "character at byte 1"},
      {"order", "\xff", "sagactl: start: saga_id is not valid UTF-8 at "
                        "byte 0"},
      {"", NULL, "sagactl: start: saga_type is missing"},
      {"ord\x01er", NULL, "sagactl: start: saga_type contains a forbidden "
                          "character at byte 3"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    result_t r = bad[i].id
                     ? run("start", bad[i].type, "--input", "{}", "--id",
                           bad[i].id, "--kafka", "127.0.0.1:1", NULL)
                     : run("start", bad[i].type, "--input", "{}", "--kafka",
                           "127.0.0.1:1", NULL);
    expect(&r, 2, NULL, bad[i].says);
    expect_own_lines(&r, 1);
    result_free(&r);
  }
}

static void wait_a_little(void *arg) {
  (void)arg;
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
}

/* --timeout bounds every statement: a history read that waits for a lock
 * on the events table ends at it (the event store's connections had only
 * a connect_timeout, and the command waited for ever). */
static void test_a_blocked_event_store_read_ends_at_the_timeout(void **state) {
  (void)state;
  PGconn *locker = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(locker), CONNECTION_OK);
  PGresult *res =
      PQexec(locker, "BEGIN; LOCK TABLE es_events IN ACCESS EXCLUSIVE MODE");
  assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
  const sagactl_how_t how = {.bin = SAGACTL_BIN,
                             .dir = tmpdir,
                             .conninfo = conninfo,
                             .unset_kafka = 1,
                             .pump = wait_a_little};
  int64_t t0 = ts_now_ms();
  result_t r = {0};
  sagactl_rerun(&how, &r, "history", "s-done", "--timeout", "1s", NULL);
  int64_t took = ts_now_ms() - t0;
  printf("# history behind a lock, --timeout 1s: exit %d after %lld ms: %s",
         r.rc, (long long)took, r.err);
  res = PQexec(locker, "ROLLBACK");
  PQclear(res);
  PQfinish(locker);
  assert_true(r.rc == 1 || r.rc == 3);
  assert_non_null(strstr(r.err, "statement timeout"));
  expect_own_lines(&r, 2);
  result_free(&r);
}

/* An archive file holding the stored events of stream (era 1), written
 * with saga-es-archive's writer; the path goes to path. */
static void archive_stream(const char *stream, const char *path) {
  es_store_t *st = NULL;
  char err[ES_ERRBUF_SIZE] = "";
  assert_int_equal(es_store_open(conninfo, NULL, &st, err, sizeof err), 0);
  es_page_t *p = NULL;
  assert_int_equal(es_read_stream(st, stream, 1, 1000, &p), 0);
  assert_true(p->n > 0);
  es_archive_info_t hdr = {.era = 1, .table = "es_events_e1",
                           .created_at = "2026-01-01T00:00:00.000Z",
                           .first_position = 1, .last_position = INT64_MAX};
  es__arw_t *w = NULL;
  assert_int_equal(es__archive_create(path, &hdr, &w, err, sizeof err), 0);
  for (size_t i = 0; i < p->n; i++) {
    es_recorded_t e = p->events[i];
    e.at.tx = 1; /* one transaction, positions in order */
    assert_int_equal(es__archive_put(w, &e, err, sizeof err), 0);
  }
  assert_int_equal(es__archive_finish(w, 1, NULL, err, sizeof err), 0);
  es_page_free(p);
  es_store_close(st);
}

static void test_history_reads_an_archive_file_without_the_database(
    void **state) {
  (void)state;
  char file[160];
  snprintf(file, sizeof file, "%s/s-done.archive.gz", tmpdir);
  archive_stream("saga-s-done", file);
  result_t live = run("history", "s-done", "--definitions", defs_dir, NULL);
  expect(&live, 0, "Completed", NULL);
  /* the same timeline from the file, the database unreachable */
  result_t r = run("history", "s-done", "--archive", file, "--definitions",
                   defs_dir, "--pg", "host=127.0.0.1 port=1", NULL);
  expect(&r, 0, NULL, "");
  assert_string_equal(r.out, live.out);
  result_free(&r);
  result_free(&live);
  /* Without --definitions the step names come from the store when it can
   * be reached; when it cannot, or none is configured, the steps show by
   * number and one note says why and how to get their names. */
  r = run("history", "s-done", "--archive", file, "--pg",
          "host=127.0.0.1 port=1", NULL);
  expect(&r, 0, "Completed", "sagactl: note: steps shown by number: the "
                             "definitions recorded in the store could not "
                             "be read: could not connect to PostgreSQL at "
                             "127.0.0.1:1");
  assert_non_null(strstr(r.out, "(steps by number)"));
  assert_non_null(strstr(r.out, "#0"));
  assert_non_null(strstr(r.err, "; give --definitions DIR (a folder holding "
                                "order v1) for their names\n"));
  expect_own_lines(&r, 1);
  result_free(&r);
  r = run_on("", "history", "s-done", "--archive", file, "--json", NULL);
  expect(&r, 0, NULL, "sagactl: note: steps shown by number: no PostgreSQL "
                      "is configured to read the definitions recorded in "
                      "the store from; give --definitions DIR");
  expect_own_lines(&r, 1);
  cJSON *j = json_of(&r);
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "definition_from")));
  assert_string_equal(cJSON_GetObjectItem(j, "type")->valuestring, "order");
  cJSON_Delete(j);
  result_free(&r);
  /* reachable, but sagad recorded no definitions in this store */
  r = run("history", "s-done", "--archive", file, NULL);
  expect(&r, 0, "#0", "has no recorded definition order v1; give "
                      "--definitions DIR");
  assert_non_null(strstr(r.err, "sagactl: note: steps shown by number: "
                                "database sagactl"));
  result_free(&r);
  r = run("history", "s-run", "--archive", file, NULL);
  expect(&r, 1, NULL, "has no events in archive");
  result_free(&r);
  r = run("history", "s-done", "--archive", "/nonexistent.gz", NULL);
  expect(&r, 1, NULL, "could not read archive \"/nonexistent.gz\"");
  result_free(&r);
  /* a file cut short is refused before anything is shown */
  char cmd[400];
  snprintf(cmd, sizeof cmd, "head -c 200 '%s' > '%s.cut'", file, file);
  assert_int_equal(system(cmd), 0);
  strcat(file, ".cut");
  r = run("history", "s-done", "--archive", file, NULL);
  expect(&r, 1, NULL, "truncated");
  assert_null(strstr(r.out, "Started"));
  result_free(&r);
}

/* A file history --archive cannot read: exit 1 and one line that names
 * the file once and says why (a directory, a file that is not gzip). */
static void test_history_archive_errors_name_the_file_once(void **state) {
  (void)state;
  result_t r = run("history", "s-done", "--archive", tmpdir, "--definitions",
                   defs_dir, NULL);
  char want[256];
  snprintf(want, sizeof want,
           "sagactl: could not read archive \"%s\": could not read: Is a "
           "directory\n",
           tmpdir);
  expect(&r, 1, NULL, want);
  result_free(&r);
  char file[160];
  snprintf(file, sizeof file, "%s/plain.txt", tmpdir);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fputs("not gzip\n", f);
  fclose(f);
  r = run("history", "s-done", "--archive", file, "--definitions", defs_dir,
          NULL);
  snprintf(want, sizeof want,
           "sagactl: could not read archive \"%s\": not an event store "
           "archive (not a gzip file)\n",
           file);
  expect(&r, 1, NULL, want);
  result_free(&r);
  unlink(file);
}

static void test_unreachable_postgres_exits_3_and_bad_input_exits_2(
    void **state) {
  (void)state;
  result_t r = run("status", "s-done", "--pg", "host=127.0.0.1 port=1", NULL);
  expect(&r, 3, NULL, "could not connect to PostgreSQL at 127.0.0.1:1");
  result_free(&r);
  r = run("history", "s-done", "--pg", "host=127.0.0.1 port=1", NULL);
  expect(&r, 3, NULL, "could not connect to PostgreSQL at 127.0.0.1:1");
  result_free(&r);
  r = run("start", "order", "--input", "{\"a\":", "--kafka", "127.0.0.1:1",
          NULL);
  expect(&r, 2, NULL, "--input: malformed JSON");
  result_free(&r);
  /* the saga would see the string cut at the NUL */
  r = run("start", "order", "--input", "{\"a\":\"x\\u0000y\"}", "--kafka",
          "127.0.0.1:1", NULL);
  expect(&r, 2, NULL, "--input: a \\u0000 (NUL) in a string, at byte 7");
  result_free(&r);
  r = run("start", "order", "--input", "{\"a\":\"0123456789\"}",
          "--max-input", "10", "--kafka", "127.0.0.1:1", NULL);
  expect(&r, 2, NULL, "past the ceiling of 10 bytes");
  result_free(&r);
  r = run("start", "order", "--input", "@/nonexistent/input.json", "--kafka",
          "127.0.0.1:1", NULL);
  expect(&r, 2, NULL, "could not open \"/nonexistent/input.json\"");
  result_free(&r);
  r = run("start", "refund", "--input", "{}", "--kafka", "127.0.0.1:1",
          "--definitions", defs_dir, NULL);
  expect(&r, 2, NULL, "unknown saga type \"refund\"");
  result_free(&r);
  r = run("start", "order", "--input", "{}", NULL);
  expect(&r, 2, NULL, "no Kafka configured");
  result_free(&r);
  /* One saga id ceiling everywhere: 255 bytes pass the check (then Kafka
   * is unreachable, exit 3); 256 are refused, not cut. */
  char longid[SM_ID_MAX + 2];
  memset(longid, 'l', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  r = run("start", "order", "--input", "{}", "--id", longid, "--kafka",
          "127.0.0.1:1", NULL);
  expect(&r, 2, NULL, "--id: saga_id is 256 bytes long, the ceiling is 255");
  result_free(&r);
  longid[SM_ID_MAX] = '\0';
  r = run("start", "order", "--input", "{}", "--id", longid, "--kafka",
          "127.0.0.1:1", "--timeout", "200ms", NULL);
  expect(&r, 3, NULL, "Kafka");
  result_free(&r);
  r = run("list", "--bogus", NULL);
  expect(&r, 2, NULL, "unknown option \"--bogus\"");
  result_free(&r);
  r = run("retry", "s-done", "--kafka", "127.0.0.1:1", NULL);
  expect(&r, 1, NULL, "saga \"s-done\" is completed, not parked");
  result_free(&r);
}

/* ---- Kafka -------------------------------------------------------------- */

static const char *header(const rd_kafka_message_t *m, const char *name,
                          char *buf, size_t len) {
  rd_kafka_headers_t *h = NULL;
  const void *v = NULL;
  size_t n = 0;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return "";
  snprintf(buf, len, "%.*s", (int)n, (const char *)v);
  return buf;
}

typedef struct {
  int found;
  uint8_t *payload; /* malloc'd */
  size_t len;
  char type[128]; /* saga-message-type header */
} got_t;

static void got_free(got_t *g) { free(g->payload); }

/* Read every partition of topic from the beginning until a message keyed
 * `key` appears; a copy of it in *g (the consumer is gone on return: it
 * cannot be destroyed while a message of it lives). */
static void consume_keyed(const char *topic, const char *key, got_t *g) {
  memset(g, 0, sizeof *g);
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", ts_kafka_bootstrap(), err,
                    sizeof err);
  rd_kafka_conf_set(conf, "group.id", ts_unique_name("sagactl-test"), err,
                    sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  assert_non_null(rk);
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  const rd_kafka_metadata_t *md = NULL;
  assert_int_equal(rd_kafka_metadata(rk, 0, t, &md,
                                     (int)ts_timeout_ms(10000)),
                   RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(md->topic_cnt, 1);
  int np = md->topics[0].partition_cnt;
  assert_true(np > 0);
  rd_kafka_topic_partition_list_t *parts =
      rd_kafka_topic_partition_list_new(np);
  for (int p = 0; p < np; p++)
    rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_message_t *found = NULL;
  int64_t deadline = ts_now_ms() + ts_timeout_ms(15000);
  while (found == NULL && ts_now_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (m == NULL)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->key_len == strlen(key) &&
        memcmp(m->key, key, m->key_len) == 0)
      found = m;
    else
      rd_kafka_message_destroy(m);
  }
  if (found != NULL) {
    g->found = 1;
    g->len = found->len;
    g->payload = malloc(found->len + 1);
    assert_non_null(g->payload);
    memcpy(g->payload, found->payload, found->len);
    header(found, "saga-message-type", g->type, sizeof g->type);
    rd_kafka_message_destroy(found);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}


static void test_start_lands_a_start_saga_in_the_inbox(void **state) {
  (void)state;
  if (ts_kafka_bootstrap() == NULL)
    skip();
  char inbox[96], notes[96], id[96], in_path[192];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("sagactl.inbox"));
  snprintf(notes, sizeof notes, "%s", ts_unique_name("sagactl.notes"));
  snprintf(id, sizeof id, "%s", ts_unique_name("cli-start"));
  snprintf(in_path, sizeof in_path, "@%s/input.json", tmpdir);
  write_file(in_path + 1, "{\"order\": 7, \"items\": [1, 2]}\n");
  result_t r = run("start", "order", "--input", in_path, "--id", id,
                   "--inbox", inbox, "--notifications", notes, "--kafka",
                   ts_kafka_bootstrap(), "--definitions", defs_dir, NULL);
  expect(&r, 0, id, NULL);
  result_free(&r);
  got_t m;
  consume_keyed(inbox, id, &m);
  assert_true(m.found);
  assert_string_equal(m.type, "saga.v1.StartSaga");
  Saga__V1__StartSaga *s = saga__v1__start_saga__unpack(NULL, m.len,
                                                       m.payload);
  assert_non_null(s);
  assert_string_equal(s->saga_id, id);
  assert_string_equal(s->saga_type, "order");
  assert_int_equal(s->input.len, strlen("{\"order\": 7, \"items\": [1, 2]}\n"));
  saga__v1__start_saga__free_unpacked(s, NULL);
  got_free(&m);
}

static void test_unreachable_kafka_exits_3_within_the_timeout(void **state) {
  (void)state;
  result_t r = run("start", "order", "--input", "{}", "--kafka",
                   "127.0.0.1:1", "--timeout", "2s", NULL);
  expect(&r, 3, NULL, "127.0.0.1:1");
  result_free(&r);
}

static void test_retry_of_a_parked_saga_sends_an_operator_action(
    void **state) {
  (void)state;
  if (ts_kafka_bootstrap() == NULL)
    skip();
  char inbox[96];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("sagactl.ops"));
  result_t r = run("retry", "s-park", "--reason", "stock fixed", "--operator",
                   "alice", "--inbox", inbox, "--kafka", ts_kafka_bootstrap(),
                   NULL);
  expect(&r, 0, "retry sent for saga s-park", NULL);
  result_free(&r);
  got_t m;
  consume_keyed(inbox, "s-park", &m);
  assert_true(m.found);
  assert_string_equal(m.type, "saga.v1.OperatorAction");
  Saga__V1__OperatorAction *a =
      saga__v1__operator_action__unpack(NULL, m.len, m.payload);
  assert_non_null(a);
  assert_string_equal(a->saga_id, "s-park");
  assert_int_equal(a->action,
                   SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY);
  assert_string_equal(a->reason, "stock fixed");
  assert_string_equal(a->operator_, "alice");
  saga__v1__operator_action__free_unpacked(a, NULL);
  got_free(&m);
}

/* A reason or operator the message cannot carry is the command line's
 * fault (exit 2), found before anything is looked up, confirmed or sent:
 * an action by query marked every saga failed (exit 1) after its
 * confirmation, and a dry run said the action "would be sent". */
static void test_a_reason_no_message_can_carry_is_refused_first(
    void **state) {
  (void)state;
  static char longreason[2001];
  memset(longreason, 'x', sizeof longreason - 1);
  static const char *const cmds[] = {"retry", "resolve", "cancel"};
  for (size_t c = 0; c < 3; c++) {
    char want[96];
    snprintf(want, sizeof want, "sagactl: %s: --reason is 2000 bytes long",
             cmds[c]);
    /* by query, confirmed */
    result_t r = run(cmds[c], "--type", "order", "--yes", "--reason",
                     longreason, "--kafka", "127.0.0.1:1", NULL);
    expect(&r, 2, NULL, want);
    assert_null(strstr(r.out, "matched"));
    expect_own_lines(&r, 1);
    result_free(&r);
    /* one saga, a dry run */
    r = run(cmds[c], "s-park", "--dry-run", "--reason", longreason, NULL);
    expect(&r, 2, NULL, want);
    assert_null(strstr(r.out, "would be sent"));
    result_free(&r);
  }
  /* an operator with a control character */
  result_t r = run("retry", "s-park", "--dry-run", "--reason", "ok",
                   "--operator", "a\x01b", NULL);
  expect(&r, 2, NULL, "sagactl: retry: --operator contains a forbidden character at byte 1");
  result_free(&r);
  /* from the config file: named as its line */
  char conf[200], confarg[220];
  snprintf(conf, sizeof conf, "%s/op.conf", tmpdir);
  FILE *f = fopen(conf, "w");
  assert_non_null(f);
  fputs("operator = a\x01b\n", f);
  fclose(f);
  snprintf(confarg, sizeof confarg, "--config=%s", conf);
  r = run("retry", "s-park", "--dry-run", "--reason", "ok", confarg, NULL);
  expect(&r, 2, NULL, "op.conf:1: operator contains a forbidden character");
  result_free(&r);
}

/* resolve by query: the parked saga gets the very OperatorAction of
 * `resolve ID`, the others are refused with why; cancel by query with
 * Kafka out of reach fails each running saga, touches none, exits 3. */
static void test_actions_by_query_send_each_saga_its_message_or_say_why(
    void **state) {
  (void)state;
  if (ts_kafka_bootstrap() == NULL)
    skip();
  char inbox[96];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("sagactl.bulk"));
  result_t r = run("resolve", "--type", "order", "--yes", "--reason",
                   "refunded by hand", "--operator", "bob", "--inbox", inbox,
                   "--kafka", ts_kafka_bootstrap(), NULL);
  expect(&r, 1, "resolve: 4 sagas matched: 1 touched, 3 refused, 0 failed",
         NULL);
  assert_non_null(strstr(r.out, "s-run"));
  assert_non_null(strstr(r.out, "running, not parked in "
                                "compensation_failed"));
  assert_non_null(strstr(r.out, "completed, not parked in "
                                "compensation_failed"));
  result_free(&r);
  got_t m;
  consume_keyed(inbox, "s-park", &m);
  assert_true(m.found);
  assert_string_equal(m.type, "saga.v1.OperatorAction");
  Saga__V1__OperatorAction *a =
      saga__v1__operator_action__unpack(NULL, m.len, m.payload);
  assert_non_null(a);
  assert_int_equal(a->action,
                   SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RESOLVE);
  assert_string_equal(a->reason, "refunded by hand");
  assert_string_equal(a->operator_, "bob");
  saga__v1__operator_action__free_unpacked(a, NULL);
  got_free(&m);

  r = run("cancel", "--type", "order", "--yes", "--reason", "x", "--kafka",
          "127.0.0.1:1", "--timeout", "2s", "--output", "jsonl", NULL);
  expect(&r, 3, NULL, "cancel: 4 sagas matched: 0 touched, 2 refused, 2 "
                      "failed");
  assert_non_null(strstr(r.out, "{\"saga_id\":\"s-new\",\"type\":"
                                "\"order\",\"status\":\"running\","
                                "\"result\":\"failed\""));
  assert_non_null(strstr(r.out, "\"saga_id\":\"s-park\",\"type\":"
                                "\"order\",\"status\":"
                                "\"compensation_failed\",\"result\":"
                                "\"refused\",\"reason\":\"parked in "
                                "compensation_failed: retry or resolve "
                                "it\"}"));
  result_free(&r);
}

/* cancel sends a CancelSaga with the reason and the operator; it needs a
 * reason, and a saga the index shows finished is refused here. */
static void test_cancel_sends_a_cancel_saga_or_says_why_not(void **state) {
  (void)state;
  if (ts_kafka_bootstrap() == NULL)
    skip();
  char inbox[96];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("sagactl.cancel"));
  result_t r = run("cancel", "s-run", "--inbox", inbox, "--kafka",
                   ts_kafka_bootstrap(), NULL);
  expect(&r, 2, NULL, "--reason TEXT is required");
  result_free(&r);
  r = run("cancel", "s-done", "--reason", "too late", "--inbox", inbox,
          "--kafka", ts_kafka_bootstrap(), NULL);
  expect(&r, 1, NULL, "already completed: nothing to cancel");
  result_free(&r);
  r = run("cancel", "s-nosuch", "--reason", "x", "--inbox", inbox, "--kafka",
          ts_kafka_bootstrap(), NULL);
  expect(&r, 1, NULL, "s-nosuch");
  result_free(&r);
  /* a reason the coordinator would dead-letter is refused before it is
   * sent (docs/reliability.md): past 1024 bytes, or a control character */
  char longreason[1026];
  memset(longreason, 'r', 1025);
  longreason[1025] = '\0';
  r = run("cancel", "s-run", "--reason", longreason, "--inbox", inbox,
          "--kafka", ts_kafka_bootstrap(), NULL);
  expect(&r, 2, NULL,
         "sagactl: cancel: --reason is 1025 bytes long, the ceiling is 1024");
  result_free(&r);
  r = run("cancel", "s-run", "--reason", "a\001b", "--inbox", inbox,
          "--kafka", ts_kafka_bootstrap(), NULL);
  expect(&r, 2, NULL,
         "sagactl: cancel: --reason contains a forbidden character at byte 1");
  result_free(&r);
  r = run("cancel", "s-run", "--reason", "customer called", "--operator",
          "carol", "--inbox", inbox, "--kafka", ts_kafka_bootstrap(), NULL);
  expect(&r, 0, "cancel sent for saga s-run", NULL);
  result_free(&r);
  got_t m;
  consume_keyed(inbox, "s-run", &m);
  assert_true(m.found);
  assert_string_equal(m.type, "saga.v1.CancelSaga");
  Saga__V1__CancelSaga *c =
      saga__v1__cancel_saga__unpack(NULL, m.len, m.payload);
  assert_non_null(c);
  assert_string_equal(c->saga_id, "s-run");
  assert_string_equal(c->reason, "customer called");
  assert_string_equal(c->operator_, "carol");
  assert_true(c->requested_at_ms > 0);
  saga__v1__cancel_saga__free_unpacked(c, NULL);
  got_free(&m);
  r = run("cancel", "--help", NULL);
  expect(&r, 0, "before its pivot step", NULL);
  result_free(&r);
}

/* ---- errors: one line each, and exit codes that say whose fault ------- */

/* Kafka out of reach: each command says so once, in its own words, and
 * librdkafka's log lines stay off stderr. */
static void test_unreachable_kafka_is_one_line_of_sagactl_not_a_log(
    void **state) {
  (void)state;
  result_t r = run("retry", "s-park", "--kafka", "127.0.0.1:1", "--timeout",
                   "2s", NULL);
  expect(&r, 3, NULL, "127.0.0.1:1");
  expect_own_lines(&r, 1);
  result_free(&r);
  r = run("resolve", "--state", "compensation_failed", "--yes", "--kafka",
          "127.0.0.1:1", "--timeout", "2s", NULL);
  expect(&r, 3, "resolve: 1 sagas matched: 0 touched, 0 refused, 1 failed",
         NULL);
  expect_own_lines(&r, 1);
  result_free(&r);
  r = run("cancel", "s-run", "--reason", "x", "--kafka", "127.0.0.1:1",
          "--timeout", "2s", NULL);
  expect(&r, 3, NULL, "127.0.0.1:1");
  expect_own_lines(&r, 1);
  result_free(&r);
  r = run("start", "order", "--input", "{}", "--kafka", "127.0.0.1:1",
          "--timeout", "2s", "--definitions", defs_dir, NULL);
  expect(&r, 3, NULL, "127.0.0.1:1");
  expect_own_lines(&r, 1);
  result_free(&r);
}

/* cancel ID checks the saga's state first, as cancel by query does: a
 * parked saga is refused at once, without Kafka. */
static void test_cancel_of_a_parked_saga_is_refused_before_kafka(
    void **state) {
  (void)state;
  result_t r = run("cancel", "s-park", "--reason", "x", "--kafka",
                   "127.0.0.1:1", "--timeout", "2s", NULL);
  expect(&r, 1, NULL,
         "sagactl: cancel refused: saga s-park parked in "
         "compensation_failed: retry or resolve it\n");
  expect_own_lines(&r, 1);
  result_free(&r);
  r = run("cancel", "s-done", "--reason", "x", "--kafka", "127.0.0.1:1",
          NULL);
  expect(&r, 1, NULL, "cancel refused: saga s-done already completed: "
                      "nothing to cancel");
  result_free(&r);
}

/* A kafka.* property librdkafka refuses is a configuration error of the
 * file's line, whatever the command. */
static void test_a_bad_kafka_property_names_its_file_line(void **state) {
  (void)state;
  char conf[160], arg[200];
  snprintf(conf, sizeof conf, "%s/bad-kafka.conf", tmpdir);
  snprintf(arg, sizeof arg, "--config=%s", conf);
  write_file(conf, "# kafka tuning\nkafka.linger.ms = abc\n");
  static const char *const cmds[][4] = {
      {"start", "order", "--input", "{}"},
      {"cancel", "s-run", "--reason", "x"},
      {"retry", "s-park", "--reason", "x"},
      {"resolve", "--state", "compensation_failed", "--yes"},
      {"list", "--state", "running", NULL},
      {"status", "s-run", NULL, NULL},
  };
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
    result_t r = run(cmds[i][0], arg, "--kafka", "127.0.0.1:1", "--timeout",
                     "2s", cmds[i][1], cmds[i][2], cmds[i][3], NULL);
    expect(&r, 2, NULL, "bad-kafka.conf:2: kafka.linger.ms: ");
    expect_own_lines(&r, 1);
    result_free(&r);
  }
  write_file(conf, "kafka.no.such.property = 1\n");
  result_t r = run("retry", "s-park", arg, "--kafka", "127.0.0.1:1", NULL);
  expect(&r, 2, NULL, "bad-kafka.conf:1: kafka.no.such.property: ");
  result_free(&r);
}

/* A conninfo libpq cannot parse is a configuration error (exit 2, naming
 * where it came from), not an unreachable server. */
static void test_a_malformed_conninfo_is_a_configuration_error(void **state) {
  (void)state;
  static const char *const bad[] = {"garbage=1", "host=x port=abc",
                                    "host=x connect_timeout=soon"};
  static const char *const cmds[][2] = {{"status", "s-done"},
                                        {"list", NULL},
                                        {"history", "s-done"},
                                        {"describe", "s-done"},
                                        {"replay", "s-done"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++) {
      result_t r = run(cmds[k][0], "--pg", bad[i], cmds[k][1], NULL);
      expect(&r, 2, NULL, "sagactl: --pg: ");
      expect_own_lines(&r, 1);
      result_free(&r);
    }
  result_t r = run("cancel", "s-run", "--reason", "x", "--kafka",
                   "127.0.0.1:1", "--pg", "garbage=1", NULL);
  expect(&r, 2, NULL, "--pg: ");
  result_free(&r);
  /* an empty one (an unset shell variable) is not libpq's defaults */
  for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++) {
    r = run(cmds[k][0], "--pg", "", cmds[k][1], NULL);
    expect(&r, 2, NULL, "sagactl: --pg is empty");
    expect_own_lines(&r, 1);
    result_free(&r);
  }
}

/* Times the database cannot hold: a duration further back than any saga
 * selects what it would (every saga as a lower bound, none as an upper
 * one; index_query cuts it to 1000 years, where now() minus it was out of
 * PostgreSQL's range); a token of such a time is no token, a bad value of
 * its flag. */
static void test_out_of_range_times_name_the_flag(void **state) {
  (void)state;
  result_t r = run("list", "--since", "100000000d", "--state", "completed",
                   NULL);
  expect(&r, 0, "s-done", NULL);
  result_free(&r);
  r = run("list", "--until", "100000000d", NULL);
  expect(&r, 0, NULL, NULL);
  assert_null(strstr(r.out, "s-done"));
  result_free(&r);
  r = run("retry", "--since", "100000000d", "--dry-run", NULL);
  assert_int_not_equal(r.rc, 2);
  assert_null(strstr(r.err, "out of range"));
  result_free(&r);
  /* base64url of "1:9000000000000000000:s-run" and of the same negative:
   * well-formed tokens of a time no saga started at */
  static const char *const forged[] = {
      "MTo5MDAwMDAwMDAwMDAwMDAwMDAwOnMtcnVu",
      "MTotOTAwMDAwMDAwMDAwMDAwMDAwMDpzLXJ1bg"};
  for (size_t i = 0; i < 2; i++) {
    r = run("list", "--after", forged[i], NULL);
    expect(&r, 2, NULL, "sagactl: --after: ");
    expect_own_lines(&r, 1);
    result_free(&r);
  }
  /* a wait the timers cannot hold */
  r = run("start", "order", "--input", "{}", "--wait", "100000000000d",
          "--kafka", "127.0.0.1:1", NULL);
  expect(&r, 2, NULL, "sagactl: --wait: ");
  result_free(&r);
  r = run("cancel", "s-run", "--reason", "x", "--wait", "31d", "--kafka",
          "127.0.0.1:1", NULL);
  expect(&r, 2, NULL, "sagactl: --wait: ");
  result_free(&r);
  /* a long way back that the database holds is fine */
  r = run("list", "--since", "3650d", "--state", "completed", NULL);
  expect(&r, 0, "s-done", NULL);
  result_free(&r);
}

/* One saga id takes the single-id command: --dry-run checks it, --yes
 * changes nothing; only a query with an id is "both". A dry run needs
 * no reason. */
static void test_one_saga_id_with_dry_run_or_yes_is_not_a_query(
    void **state) {
  (void)state;
  result_t r = run("retry", "s-park", "--dry-run", NULL);
  expect(&r, 0, "dry run: retry would be sent for saga s-park", NULL);
  result_free(&r);
  r = run("retry", "s-done", "--dry-run", NULL);
  expect(&r, 1, NULL, "retry refused: saga \"s-done\" is completed, not "
                      "parked in compensation_failed");
  assert_null(strstr(r.err, "not both"));
  result_free(&r);
  r = run("resolve", "s-done", "--yes", "--kafka", "127.0.0.1:1", NULL);
  expect(&r, 1, NULL, "resolve refused: saga \"s-done\" is completed");
  result_free(&r);
  r = run("cancel", "s-run", "--dry-run", NULL);
  expect(&r, 0, "dry run: cancel would be sent for saga s-run", NULL);
  result_free(&r);
  r = run("cancel", "s-park", "--dry-run", NULL);
  expect(&r, 1, NULL, "cancel refused: saga s-park parked in "
                      "compensation_failed");
  result_free(&r);
  r = run("cancel", "--type", "order", "--dry-run", NULL);
  expect(&r, 0, "dry run: cancel would touch 2 of 4 matching sagas", NULL);
  result_free(&r);
  r = run("cancel", "--type", "order", "--yes", "--kafka", "127.0.0.1:1",
          NULL);
  expect(&r, 2, NULL, "cancel: --reason TEXT is required");
  result_free(&r);
  r = run("retry", "s-park", "--state", "compensation_failed", NULL);
  expect(&r, 2, NULL, "give one saga id or a query");
  result_free(&r);
  r = run("retry", "s-park", "--output", "json", NULL);
  expect(&r, 2, NULL, "retry: --output applies to an action by query");
  result_free(&r);
}

/* A saga id given to a command is checked before anything is read: one
 * no saga can have (empty, past 255 bytes, not UTF-8, a control
 * character) is a usage error naming the command and what is wrong, in a
 * short line that does not echo the value back, never a PostgreSQL error
 * or a "not found". Spaces are no control characters: a saga started by a
 * participant library may hold them, and cancel looks it up. */
static void test_an_impossible_saga_id_is_refused_naming_the_command(
    void **state) {
  (void)state;
  static char longid[10241];
  memset(longid, 'x', sizeof longid - 1);
  static const struct {
    const char *cmd, *flag;
  } cmds[] = {{"status", NULL},           {"describe", NULL},
              {"replay", NULL},           {"retry", "--dry-run"},
              {"resolve", "--dry-run"},   {"cancel", "--dry-run"},
              {"history", NULL}};
  static const struct {
    const char *id, *says;
  } bad[] = {
      {"", "saga id is empty"},
      {longid, "saga id is 10240 bytes long, the ceiling is 255"},
      {"\xff", "saga id is not valid UTF-8 at byte 0"},
      {"ab\xc3", "saga id is not valid UTF-8 at byte 2"},
      {"a\x01" "b", "saga id holds a control character at byte 1"},
      {"a\x1b[31mb", "saga id holds a control character at byte 1"},
  };
  for (size_t c = 0; c < sizeof cmds / sizeof *cmds; c++)
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
      char want[128];
      snprintf(want, sizeof want, "sagactl: %s: %s", cmds[c].cmd,
               bad[i].says);
      result_t r = run(cmds[c].cmd, bad[i].id, cmds[c].flag, NULL);
      expect(&r, 2, NULL, want);
      expect_own_lines(&r, 1);
      if (strlen(r.err) > 200)
        fail_msg("%s: %zu bytes on stderr", cmds[c].cmd, strlen(r.err));
      result_free(&r);
    }
  /* cancel ID is no --id, and a space is no reason to refuse it */
  result_t r = run("cancel", "a b", "--dry-run", NULL);
  expect(&r, 1, NULL, "sagactl: saga \"a b\" not found in saga_index");
  assert_null(strstr(r.err, "--id"));
  result_free(&r);
  /* the longest id is looked up */
  longid[255] = '\0';
  r = run("status", longid, NULL);
  expect(&r, 1, NULL, "not found in saga_index");
  result_free(&r);
}

/* A filter value that PostgreSQL cannot compare with text (not UTF-8) or
 * no saga can have is a bad value of its flag (exit 2), never a query that
 * fails in the database; a forged token carrying such an id is no token;
 * a long value is not echoed back whole. */
static void test_list_refuses_values_no_saga_has_naming_the_flag(
    void **state) {
  (void)state;
  static char longtype[10241];
  memset(longtype, 't', sizeof longtype - 1);
  static const struct {
    const char *flag, *value, *says;
  } bad[] = {
      {"--type", "\xff", "--type: expected a saga type of 1 to 64 bytes"},
      {"--type", "a\x01", "--type: expected a saga type of 1 to 64 bytes"},
      {"--type", longtype, "--type: expected a saga type of 1 to 64 bytes, "
                           "got 10240 bytes"},
      /* base64url of "1:0:\xff" and of "1:0:a\x01" */
      {"--after", "MTowOv8", "--after: \"MTowOv8\" is not a list token"},
      {"--after", "MTowOmEB", "--after: \"MTowOmEB\" is not a list token"},
      {"--after", longtype, "--after: \"tttt"},
      {"--state", longtype, "--state: unknown status \"tttt"},
      {"--state", "\x1b[31m", "--state: unknown status \"\\x1b[31m\""},
      {"--since", longtype, "--since: \"tttt"},
      {"--limit", longtype, "--limit: expected a number between 1 and "
                            "1000000, got \"tttt"},
      {"--output", longtype, "--output: expected table, json or jsonl, "
                             "got \"tttt"},
  };
  static const char *const cmds[] = {"list", "retry"};
  for (size_t c = 0; c < 2; c++)
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
      if (c == 1 && strcmp(bad[i].flag, "--after") == 0)
        continue; /* an action by query reads every page itself */
      if (c == 1 && (strcmp(bad[i].flag, "--limit") == 0 ||
                     strcmp(bad[i].flag, "--output") == 0))
        continue; /* no --limit; --output is no filter of the query */
      result_t r = c == 0 ? run("list", bad[i].flag, bad[i].value, NULL)
                          : run("retry", bad[i].flag, bad[i].value,
                                "--dry-run", NULL);
      expect(&r, 2, NULL, bad[i].says);
      expect_own_lines(&r, 1);
      if (strlen(r.err) > 400)
        fail_msg("%s %s: %zu bytes on stderr", cmds[c], bad[i].flag,
                 strlen(r.err));
      result_free(&r);
    }
}

/* The output formats each command documents, and no other: one saga id of
 * retry, resolve and cancel (without --wait) prints text, so --json is
 * refused there as --output is, not ignored; describe is table or json. */
static void test_an_output_format_a_command_cannot_print_is_refused(
    void **state) {
  (void)state;
  result_t r = run("retry", "s-park", "--dry-run", "--json", NULL);
  expect(&r, 2, NULL, "retry: --json applies to an action by query");
  result_free(&r);
  r = run("resolve", "s-park", "--dry-run", "--json", NULL);
  expect(&r, 2, NULL, "resolve: --json applies to an action by query");
  result_free(&r);
  r = run("cancel", "s-run", "--dry-run", "--json", NULL);
  expect(&r, 2, NULL, "cancel: --json applies to cancel --wait or to an "
                      "action by query");
  result_free(&r);
  r = run("retry", "--state", "compensation_failed", "--dry-run", "--json",
          NULL);
  expect(&r, 0, "\"action\":\"retry\"", NULL);
  result_free(&r);
  r = run("describe", "s-done", "--output", "jsonl", NULL);
  expect(&r, 2, NULL, "--output: expected table or json, got \"jsonl\"");
  result_free(&r);
  r = run("describe", "s-done", "--output", "json", NULL);
  expect(&r, 0, "\"saga_id\":\"s-done\"", NULL);
  result_free(&r);
  r = run("describe", "--help", NULL);
  expect(&r, 0, "describe: table or json", NULL);
  result_free(&r);
}

/* --help says what the parser takes. */
static void test_help_shows_every_option_a_command_takes(void **state) {
  (void)state;
  result_t r = run("start", "--help", NULL);
  expect(&r, 0,
         "usage: sagactl start TYPE --input JSON|@FILE [--id ID] "
         "[--def-version N] [--wait DURATION]",
         NULL);
  result_free(&r);
  r = run("replay", "--help", NULL);
  expect(&r, 0, "[--limit N]", NULL);
  assert_non_null(strstr(r.out, "replay --all: default 1000000"));
  result_free(&r);
}

/* What the completion script of `sagactl completion bash` offers for the
 * words `line` (a bash array's body) with the cursor on word `cword`. */
static void complete(const char *script, const char *line, int cword,
                     char *out, size_t cap) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "bash --norc --noprofile -c '. %s; COMP_WORDS=(%s); "
           "COMP_CWORD=%d; _sagactl; echo \"${COMPREPLY[*]}\"'",
           script, line, cword);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  out[0] = '\0';
  if (!fgets(out, (int)cap, p))
    out[0] = '\0';
  out[strcspn(out, "\n")] = '\0';
  assert_int_equal(pclose(p), 0);
}

/* The completion script finds the command after options given before it
 * (docs/sagactl.md: options may come before or after the command), with
 * their values as `--name VALUE` or `--name=VALUE` (which bash splits at
 * the '='). It read the second word as the command, so these offered
 * nothing. */
static void test_completion_finds_the_command_after_options(void **state) {
  (void)state;
  result_t r = run("completion", "bash", NULL);
  expect(&r, 0, "complete -o default -F _sagactl sagactl", NULL);
  char script[160];
  snprintf(script, sizeof script, "%s/completion.bash", tmpdir);
  FILE *f = fopen(script, "w");
  assert_non_null(f);
  fputs(r.out, f);
  fclose(f);
  result_free(&r);
  char got[2048];
  complete(script, "sagactl list --st", 2, got, sizeof got);
  assert_string_equal(got, "--state --stuck");
  complete(script, "sagactl --pg host=db list --st", 4, got, sizeof got);
  assert_string_equal(got, "--state --stuck");
  complete(script, "sagactl --pg = host list --oldest --st", 6, got,
           sizeof got);
  assert_string_equal(got, "--state --stuck");
  complete(script, "sagactl --json status --out", 3, got, sizeof got);
  assert_string_equal(got, "--output");
  complete(script, "sagactl --timeout 5s h", 3, got, sizeof got);
  assert_string_equal(got, "help history");
  complete(script, "sagactl help li", 2, got, sizeof got);
  assert_string_equal(got, "list");
  unlink(script);
}

/* ---- replay (last: it corrupts the index) ------------------------------ */

static void test_replay_agrees_then_reports_a_corrupted_index_row(
    void **state) {
  (void)state;
  result_t r = run("replay", "--all", "--definitions", defs_dir, NULL);
  expect(&r, 0, "replayed 4 sagas: 4 consistent, 0 mismatched", NULL);
  result_free(&r);
  /* no folder, and no definition recorded in this store: each saga is
   * "missing" its definition, never a mismatch */
  r = run("replay", "--all", NULL);
  expect(&r, 1,
         "replayed 4 sagas: 0 consistent, 0 mismatched, 4 missing a "
         "definition",
         NULL);
  assert_non_null(strstr(r.out, "MISSING  s-done: not checked: definition "
                                "order v1 is neither recorded"));
  assert_null(strstr(r.out, "MISMATCH"));
  result_free(&r);
  /* --limit bounds the index rows read; the sagas past it are not
   * checked (and not taken for streams without a row), and it says so */
  r = run("replay", "--all", "--limit", "2", "--definitions", defs_dir,
          NULL);
  expect(&r, 0, "replayed 2 sagas: 2 consistent, 0 mismatched",
         "sagactl: note: replay --all stopped at --limit 2 sagas");
  assert_null(strstr(r.out, "s-park"));
  assert_null(strstr(r.out, "no saga_index row"));
  expect_own_lines(&r, 1);
  result_free(&r);
  r = run("replay", "--all", "--limit", "2", "--json", "--definitions",
          defs_dir, NULL);
  expect(&r, 0, NULL, "stopped at --limit 2");
  cJSON *lj = json_of(&r);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(lj, "limit_reached")));
  cJSON_Delete(lj);
  result_free(&r);
  r = run("replay", "s-done", "--limit", "2", NULL);
  expect(&r, 2, NULL, "replay: --limit applies to --all");
  result_free(&r);
  /* the dry run checks the sagas a new folder would carry on: a finished
   * one is said to be finished, not called CANNOT */
  r = run("replay", "s-done", "--dry-run", "--definitions", defs_dir, NULL);
  expect(&r, 0, "SKIPPED  s-done: order v1 (completed): finished, not "
                "checked",
         NULL);
  assert_non_null(strstr(r.out, "(1 finished saga not checked)"));
  assert_null(strstr(r.out, "CANNOT"));
  result_free(&r);
  r = run("replay", "--all", "--dry-run", "--definitions", defs_dir, NULL);
  expect(&r, 0, "against 3 sagas: 3 could be taken over, 0 could not (1 "
                "finished saga not checked)",
         NULL);
  assert_null(strstr(r.out, "s-done"));
  result_free(&r);

  PGconn *c = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  exec_ok(c, "UPDATE saga_index SET status = 'running', version = 2 "
             "WHERE saga_id = 's-done'");
  exec_ok(c, "DELETE FROM saga_index WHERE saga_id = 's-new'");
  PQfinish(c);

  r = run("replay", "s-done", "--definitions", defs_dir, NULL);
  expect(&r, 1, "MISMATCH", NULL);
  assert_non_null(strstr(r.out, "status: index running, events completed"));
  assert_non_null(strstr(r.out, "version: index 2"));
  result_free(&r);
  r = run("replay", "s-park", "--definitions", defs_dir, NULL);
  expect(&r, 0, "compensation_failed", NULL);
  result_free(&r);
  r = run("replay", "--all", "--json", "--definitions", defs_dir, NULL);
  expect(&r, 1, NULL, NULL);
  cJSON *j = json_of(&r);
  assert_int_equal(cJSON_GetObjectItem(j, "checked")->valueint, 4);
  assert_int_equal(cJSON_GetObjectItem(j, "mismatched")->valueint, 2);
  int orphan = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "sagas")) {
    if (strcmp(cJSON_GetObjectItem(e, "saga_id")->valuestring, "s-new") == 0)
      orphan = strstr(cJSON_GetObjectItem(e, "detail")->valuestring,
                      "no saga_index row") != NULL;
  }
  assert_true(orphan);
  cJSON_Delete(j);
  result_free(&r);
}

/* A stream that cannot be decoded fails its saga, not the whole replay:
 * one line for it, the others checked, the summary, exit 1. */
static void test_replay_goes_on_past_an_undecodable_stream(void **state) {
  (void)state;
  char err[ES_ERRBUF_SIZE];
  es_store_t *st = NULL;
  assert_int_equal(es_store_open(conninfo, NULL, &st, err, sizeof err), 0);
  static const char junk[] = "not a saga record";
  es_event_t ev = {.type = "Started",
                   .data = (const uint8_t *)junk,
                   .data_len = sizeof junk - 1};
  assert_int_equal(es_append(st, "saga-s-bad", 0, &ev, 1, NULL), ES_ERR_OK);
  es_store_close(st);
  PGconn *c = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  exec_ok(c, "INSERT INTO saga_index (saga_id, saga_type, "
             "definition_version, status, partition, version, started_at, "
             "updated_at) VALUES ('s-bad', 'order', 1, 'running', 0, 1, "
             "now(), now())");
  PQfinish(c);

  result_t r = run("replay", "--all", "--definitions", defs_dir, NULL);
  expect(&r, 1, "FAILED   s-bad: could not decode event 1 (Started) of "
                "stream \"saga-s-bad\"",
         NULL);
  assert_non_null(strstr(r.out, "ok       s-run: "));
  assert_non_null(strstr(r.out, "s-new: "));
  assert_non_null(strstr(r.out, "replayed 5 sagas: 2 consistent, 2 "
                                "mismatched, 0 missing a definition, 1 "
                                "failed"));
  expect_own_lines(&r, 0);
  result_free(&r);
  r = run("replay", "--all", "--json", "--definitions", defs_dir, NULL);
  expect(&r, 1, NULL, NULL);
  cJSON *j = json_of(&r);
  assert_int_equal(cJSON_GetObjectItem(j, "checked")->valueint, 5);
  assert_int_equal(cJSON_GetObjectItem(j, "failed")->valueint, 1);
  int bad = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "sagas")) {
    if (strcmp(cJSON_GetObjectItem(e, "saga_id")->valuestring, "s-bad") == 0)
      bad = strcmp(cJSON_GetObjectItem(e, "result")->valuestring,
                   "failed") == 0;
  }
  assert_true(bad);
  cJSON_Delete(j);
  result_free(&r);
  r = run("replay", "--all", "--dry-run", "--definitions", defs_dir, NULL);
  expect(&r, 1, "FAILED   s-bad: ", NULL);
  assert_non_null(strstr(r.out, "ok       s-run: "));
  assert_non_null(strstr(r.out, "dry run of \""));
  result_free(&r);
  r = run("replay", "s-bad", "--definitions", defs_dir, NULL);
  expect(&r, 1, "FAILED   s-bad: ", NULL);
  result_free(&r);
}

/* A database with the coordinator's saga_index but no event store, or an
 * event store or saga_index of another release: every command that reads
 * them names the database and says what to run, exit 1, never
 * PostgreSQL's "relation ... does not exist". */
static void test_a_database_without_the_event_store_says_what_to_run(
    void **state) {
  (void)state;
  const char *pg = noes_conninfo;
  PGconn *c = PQconnectdb(pg);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *q = PQexec(c, "SELECT current_database()");
  char where[160];
  snprintf(where, sizeof where, "database %s at ", PQgetvalue(q, 0, 0));
  PQclear(q);
  exec_ok(c, "CREATE TABLE saga_index (saga_id text PRIMARY KEY, "
             "saga_type text NOT NULL, definition_version int NOT NULL, "
             "status text NOT NULL, partition int NOT NULL, "
             "version bigint NOT NULL, started_at timestamptz NOT NULL, "
             "updated_at timestamptz NOT NULL, next_deadline_at timestamptz, "
             "current_step text, stuck_at timestamptz)");
  exec_ok(c, "INSERT INTO saga_index VALUES ('s-old', 'order', 1, "
             "'completed', 0, 9, now(), now(), NULL, NULL, 'infinity')");
  static const char *const cmds[][3] = {
      {"status", "s-old", NULL},    {"describe", "s-old", NULL},
      {"history", "s-old", NULL},   {"replay", "s-old", NULL},
      {"replay", "--all", NULL},
  };
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
    result_t r = run_on(pg, cmds[i][0], cmds[i][1], cmds[i][2]);
    expect(&r, 1, NULL, where);
    if (strstr(r.err, "has no event store (no table es_schema_version): "
                      "create it with sagad --migrate") == NULL ||
        strstr(r.err, "does not exist") != NULL)
      fail_msg("%s %s: %s", cmds[i][0], cmds[i][1], r.err);
    expect_own_lines(&r, 1);
    result_free(&r);
  }
  /* an event store older, then newer, than this sagactl */
  char sql[160];
  exec_ok(c, "CREATE TABLE es_schema_version (version int PRIMARY KEY, "
             "name text)");
  result_t r = run_on(pg, "status", "s-old", NULL);
  expect(&r, 1, NULL, "records no schema version (es_schema_version is "
                      "empty): run sagad --migrate");
  result_free(&r);
  exec_ok(c, "INSERT INTO es_schema_version VALUES (1, 'events')");
  r = run_on(pg, "history", "s-old", NULL);
  char want[160];
  snprintf(want, sizeof want,
           "has schema version 1, older than the %d this sagactl reads: "
           "upgrade it with sagad --migrate",
           es_schema_version());
  expect(&r, 1, NULL, want);
  assert_non_null(strstr(r.err, where));
  result_free(&r);
  snprintf(sql, sizeof sql,
           "INSERT INTO es_schema_version VALUES (%d, 'future')",
           es_schema_version() + 1);
  exec_ok(c, sql);
  r = run_on(pg, "describe", "s-old", NULL);
  snprintf(want, sizeof want,
           "has schema version %d, newer than the %d this sagactl reads",
           es_schema_version() + 1, es_schema_version());
  expect(&r, 1, NULL, want);
  result_free(&r);
  /* a saga_index of a sagad before stuck_at, then none at all */
  exec_ok(c, "ALTER TABLE saga_index DROP COLUMN stuck_at");
  r = run_on(pg, "list", NULL);
  expect(&r, 1, NULL, "could not list saga_index: table saga_index in ");
  assert_non_null(strstr(r.err, "is older than this sagactl reads (column "
                                "i.stuck_at does not exist): start this "
                                "release's sagad against it"));
  result_free(&r);
  exec_ok(c, "DROP TABLE saga_index");
  r = run_on(pg, "status", "s-old", NULL);
  expect(&r, 1, NULL, "has no table saga_index (has sagad run against it?)");
  assert_non_null(strstr(r.err, where));
  result_free(&r);
  PQfinish(c);
}

/* Why a record cannot be decoded is said whole, even with an event type
 * and a saga id at their ceilings (the message outgrew a 512-byte buffer
 * and lost its end). */
static void test_an_undecodable_record_is_reported_whole_at_the_ceilings(
    void **state) {
  (void)state;
  char id[SM_ID_MAX + 1], type[ES_MAX_TYPE + 1], stream[300];
  memset(id, 'i', sizeof id - 1);
  id[sizeof id - 1] = '\0';
  memset(type, 'T', sizeof type - 1);
  type[sizeof type - 1] = '\0';
  snprintf(stream, sizeof stream, "saga-%s", id);
  char err[ES_ERRBUF_SIZE];
  es_store_t *st = NULL;
  assert_int_equal(es_store_open(conninfo, NULL, &st, err, sizeof err), 0);
  static const char junk[] = "not a saga record";
  es_event_t ev = {.type = type,
                   .data = (const uint8_t *)junk,
                   .data_len = sizeof junk - 1};
  assert_int_equal(es_append(st, stream, 0, &ev, 1, NULL), ES_ERR_OK);
  es_store_close(st);
  char want[1024];
  snprintf(want, sizeof want,
           "could not decode event 1 (%s) of stream \"%s\": %s", type,
           stream, saga_core_strerror(SAGA_CORE_EDECODE));
  result_t r = run("history", id, NULL);
  char line[1100];
  snprintf(line, sizeof line, "sagactl: %s\n", want);
  expect(&r, 1, NULL, line);
  result_free(&r);
  r = run("replay", id, "--definitions", defs_dir, NULL);
  snprintf(line, sizeof line, "FAILED   %.32s", id);
  expect(&r, 1, line, NULL);
  assert_non_null(strstr(r.out, want));
  result_free(&r);
}

/* ---- what sagactl repeats of a value or a stored text ----------------- */

/* Run sagactl with up to 9 arguments (NULL where there are fewer). */
static result_t run_args(const char *const a[9]) {
  return run(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], NULL);
}

/* An error repeats a value as one line of text (docs/sagactl.md: "Every
 * error is one line on stderr"): a newline, an escape sequence or a byte
 * that is not UTF-8 as \xNN, and a malformed input's text from where it
 * went wrong without a UTF-8 sequence cut. They went out as they were. */
static void test_an_error_shows_a_value_as_one_line_of_text(void **state) {
  (void)state;
  static const struct {
    const char *args[9];
    const char *says;
  } cases[] = {
      {{"start", "order", "--input", "{}", "--wait", "1\x1b[2J", "--kafka",
        "127.0.0.1:1"},
       "sagactl: --wait: \"1\\x1b[2J\" is not a duration: write a number "
       "and a unit"},
      {{"cancel", "s-run", "--reason", "x", "--wait", "2\n", "--kafka",
        "127.0.0.1:1"},
       "sagactl: --wait: \"2\\x0a\" is not a duration"},
      {{"start", "order", "--input", "{}", "--def-version", "x\ny",
        "--kafka", "127.0.0.1:1"},
       "sagactl: --def-version: expected a version number, got "
       "\"x\\x0ay\"\n"},
      {{"start", "order", "--input", "{\"a\": x\n}", "--kafka",
        "127.0.0.1:1"},
       "sagactl: --input: malformed JSON at byte 6: \"x\\x0a}\"\n"},
      /* 20 bytes from the x cut the 7th e-acute: it is shown whole */
      {{"start", "order", "--input",
        "{\"a\":\n x,\"b\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\"}",
        "--kafka", "127.0.0.1:1"},
       "sagactl: --input: malformed JSON at byte 7: \"x,\"b\":\""
       "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"\n"},
      /* what cJSON takes but JSON does not, as the admin endpoint
       * refuses it (sagactl started the saga with it) */
      {{"start", "order", "--input", "{\"n\":01}", "--kafka", "127.0.0.1:1"},
       "sagactl: --input: malformed JSON: a number JSON does not allow at "
       "byte 5\n"},
      {{"start", "order", "--input", "{\"s\":\"a\x01" "b\"}", "--kafka",
        "127.0.0.1:1"},
       "sagactl: --input: malformed JSON: a raw control character (a string "
       "escapes it) at byte 7\n"},
      {{"replay", "--all", "--limit", "x\ny"},
       "sagactl: --limit: expected a number between 1 and 1000000, got "
       "\"x\\x0ay\"\n"},
      {{"list", "--inbox", "a\nb"}, "got \"a\\x0ab\"\n"},
      {{"status", "s-run", "--timeout", "5\nx"},
       "sagactl: --timeout: timeout must be a duration between 100ms and "
       "1h: \"5\\x0ax\" is not a duration"},
      {{"list", "--max-input", "\xff\xfe"},
       "sagactl: --max-input: max_input must be a number of bytes between "
       "1 and 1000000, got \"\\xff\\xfe\"\n"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    result_t r = run_args(cases[i].args);
    expect(&r, 2, NULL, cases[i].says);
    expect_own_lines(&r, 1);
    result_free(&r);
  }
  /* a config file's line, and what the reader repeats of one */
  char conf[160], arg[200];
  snprintf(conf, sizeof conf, "%s/escapes.conf", tmpdir);
  snprintf(arg, sizeof arg, "--config=%s", conf);
  write_file(conf, "\xff\xfe = 1\n");
  result_t r = run("list", arg, NULL);
  expect(&r, 2, NULL, "escapes.conf:1: unknown setting \"\\xff\\xfe\"\n");
  expect_own_lines(&r, 1);
  result_free(&r);
  write_file(conf, "# ok\nwords \x1b[2J\r\n");
  r = run("list", arg, NULL);
  expect(&r, 2, NULL, "escapes.conf:2: expected \"name = value\", got "
                      "\"words \\x1b[2J");
  expect_own_lines(&r, 1);
  result_free(&r);
  unlink(conf);
}

/* `completion` and `--version` take options anywhere, as every command
 * and --help do (docs/sagactl.md); they worked as the first argument
 * only: `sagactl --timeout 1s completion bash` was an unknown command,
 * `sagactl --pg X --version` an unknown option. */
static void test_completion_and_version_take_options_anywhere(void **state) {
  (void)state;
  result_t r = run("--timeout", "1s", "completion", "bash", NULL);
  expect(&r, 0, "complete -o default -F _sagactl sagactl", NULL);
  result_free(&r);
  r = run("completion", "--pg", "host=x", "bash", NULL);
  expect(&r, 0, "complete -o default -F _sagactl sagactl", NULL);
  result_free(&r);
  r = run("--pg", "X", "--version", NULL);
  expect(&r, 0, "sagactl ", NULL);
  assert_string_equal(r.err, "");
  result_free(&r);
  r = run("list", "--version", NULL);
  expect(&r, 0, "sagactl ", NULL);
  result_free(&r);
  r = run("--version", NULL);
  expect(&r, 0, "sagactl ", NULL);
  result_free(&r);
  r = run("help", "completion", NULL);
  expect(&r, 0, "usage: sagactl completion bash", NULL);
  result_free(&r);
  r = run("completion", "--help", NULL);
  expect(&r, 0, "usage: sagactl completion bash", NULL);
  result_free(&r);
  r = run("completion", "zsh", NULL);
  expect(&r, 2, NULL, "sagactl: usage: sagactl completion bash\n");
  result_free(&r);
  r = run("completion", "bash", "--json", NULL);
  expect(&r, 2, NULL, "completion: option \"--json\" does not apply");
  result_free(&r);
  r = run("--help", NULL);
  expect(&r, 0, "--version", NULL);
  result_free(&r);
}

/* An empty kafka setting is refused as an empty --pg is, naming where it
 * came from: it was taken for brokers at "" ("could not reach Kafka at :
 * starter: kafka.bootstrap_servers is missing"). */
static void test_an_empty_kafka_is_refused_naming_where(void **state) {
  (void)state;
  result_t r = run("start", "order", "--input", "{}", "--kafka", "", NULL);
  expect(&r, 2, NULL, "sagactl: --kafka is empty: give Kafka's bootstrap "
                      "servers");
  expect_own_lines(&r, 1);
  result_free(&r);
  r = run("cancel", "s-run", "--reason", "x", "--kafka=", NULL);
  expect(&r, 2, NULL, "sagactl: --kafka is empty");
  expect_own_lines(&r, 1);
  result_free(&r);
  char conf[160], arg[200];
  snprintf(conf, sizeof conf, "%s/empty-kafka.conf", tmpdir);
  snprintf(arg, sizeof arg, "--config=%s", conf);
  write_file(conf, "inbox = saga.inbox\nkafka =\n");
  r = run("start", "order", "--input", "{}", arg, NULL);
  expect(&r, 2, NULL, "empty-kafka.conf:2: kafka is empty: give Kafka's "
                      "bootstrap servers");
  expect_own_lines(&r, 1);
  result_free(&r);
  unlink(conf);
}

/* An --input @FILE that cannot be read says why: a folder opens, and its
 * read failed with `could not read "DIR"` and nothing more. */
static void test_an_input_file_that_cannot_be_read_says_why(void **state) {
  (void)state;
  char at[96], want[200];
  snprintf(at, sizeof at, "@%s", tmpdir);
  snprintf(want, sizeof want,
           "sagactl: --input: could not read \"%s\": it is a directory "
           "(give a file, or @- for stdin)\n",
           tmpdir);
  result_t r = run("start", "order", "--input", at, "--kafka", "127.0.0.1:1",
                   NULL);
  expect(&r, 2, NULL, want);
  expect_own_lines(&r, 1);
  result_free(&r);
  snprintf(at, sizeof at, "@%s/no-such-input.json", tmpdir);
  r = run("start", "order", "--input", at, "--kafka", "127.0.0.1:1", NULL);
  expect(&r, 2, NULL, "no-such-input.json\": No such file or directory\n");
  result_free(&r);
}

/* A definitions folder with a bad file is named, with the setting it came
 * from, as a folder that cannot be read is: the line said only
 * `x.json: invalid JSON at line 2, column 1`. */
static void test_a_bad_definitions_folder_is_named_with_its_setting(
    void **state) {
  (void)state;
  char dir[128], file[160], conf[160], arg[200], want[400];
  snprintf(dir, sizeof dir, "%s/bad-defs", tmpdir);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(file, sizeof file, "%s/x.json", dir);
  write_file(file, "{\n");
  snprintf(want, sizeof want,
           "sagactl: could not load saga definitions from \"%s\" "
           "(--definitions): x.json: invalid JSON at line 2, column 1\n",
           dir);
  result_t r = run("start", "order", "--input", "{}", "--kafka",
                   "127.0.0.1:1", "--definitions", dir, NULL);
  expect(&r, 2, NULL, want);
  expect_own_lines(&r, 1);
  result_free(&r);
  r = run("replay", "s-run", "--dry-run", "--definitions", dir, NULL);
  expect(&r, 2, NULL, want);
  result_free(&r);
  snprintf(conf, sizeof conf, "%s/defs.conf", tmpdir);
  snprintf(arg, sizeof arg, "--config=%s", conf);
  snprintf(want, sizeof want, "definitions = %s\n", dir);
  write_file(conf, want);
  snprintf(want, sizeof want,
           "sagactl: could not load saga definitions from \"%s\" (%s:1): "
           "x.json: invalid JSON at line 2, column 1\n",
           dir, conf);
  r = run("start", "order", "--input", "{}", "--kafka", "127.0.0.1:1", arg,
          NULL);
  expect(&r, 2, NULL, want);
  result_free(&r);
  unlink(conf);
  unlink(file);
  rmdir(dir);
}

/* The pump of a cancel --wait: the coordinator's answer, COMPENSATED with
 * sagad's "cancelled: <reason>", produced again and again until sagactl
 * has read it (it reads from the end of the topic). */
typedef struct {
  rd_kafka_t *rk;
  const char *topic, *saga_id, *reason;
  int64_t next_ms;
} answer_t;

static void answer_compensated(void *arg) {
  answer_t *a = arg;
  if (ts_now_ms() >= a->next_ms) {
    Saga__V1__Notification n;
    saga__v1__notification__init(&n);
    n.saga_id = SAGA_MUT(a->saga_id);
    n.saga_type = SAGA_MUT("order");
    n.kind = SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATED;
    n.reason = SAGA_MUT(a->reason);
    void *buf = NULL;
    size_t len = 0;
    rd_kafka_headers_t *h = NULL;
    char err[256];
    saga_meta_t meta = {.correlation_id = a->saga_id};
    assert_int_equal(saga__wire_encode(&n.base, &meta, 0, &buf, &len, &h, err,
                                       sizeof err),
                     0);
    assert_int_equal(
        rd_kafka_producev(a->rk, RD_KAFKA_V_TOPIC(a->topic),
                          RD_KAFKA_V_KEY(a->saga_id, strlen(a->saga_id)),
                          RD_KAFKA_V_VALUE(buf, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    free(buf);
    rd_kafka_flush(a->rk, 2000);
    a->next_ms = ts_now_ms() + 200;
  }
  wait_a_little(NULL);
}

/* Text output keeps a stored reason on its line (a newline or a tab in it
 * as a space): status's and describe's "cancelled:", describe's operator
 * trail and cancel --wait's result broke the output into lines; --json
 * keeps the reason as it is. (Last: it adds a saga.) */
static void test_text_output_keeps_a_reason_on_its_line(void **state) {
  (void)state;
  PGconn *c = PQconnectdb(conninfo);
  es_store_t *st = NULL;
  char err[ES_ERRBUF_SIZE];
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  assert_int_equal(es_store_open(conninfo, NULL, &st, err, sizeof err), 0);
  const uint8_t ok[] = {SM_OUTCOME_SUCCESS, SM_OUTCOME_SUCCESS};
  sm_input_t cancel = {.type = SM_IN_CANCEL,
                       .reason = "customer called\nticket 7\tnow",
                       .who = "alice"};
  PGresult *now = /* the database's clock, as setup's */
      PQexec(c, "SELECT (extract(epoch from now()) * 1000)::bigint");
  assert_int_equal(PQresultStatus(now), PGRES_TUPLES_OK);
  int64_t t0 = strtoll(PQgetvalue(now, 0, 0), NULL, 10) - 30000;
  PQclear(now);
  seed_with(c, st, "s-cancelled", t0, ok, 2, &cancel);
  es_store_close(st);
  PQfinish(c);
  result_t r = run("status", "s-cancelled", NULL);
  expect(&r, 0,
         "\ncancelled:     customer called ticket 7 now (by alice)\n", NULL);
  result_free(&r);
  r = run("status", "s-cancelled", "--json", NULL);
  expect(&r, 0, "\"reason\":\"customer called\\nticket 7\\tnow\"", NULL);
  result_free(&r);
  r = run("describe", "s-cancelled", "--definitions", defs_dir, NULL);
  expect(&r, 0,
         "\ncancelled:     customer called ticket 7 now (by alice)\n", NULL);
  if (strstr(r.out, "by alice: customer called ticket 7 now\n") == NULL ||
      strchr(r.out, '\t') != NULL)
    fail_msg("describe:\n%s", r.out);
  result_free(&r);
  r = run("history", "s-cancelled", NULL);
  expect(&r, 0, "cancelled by alice: customer called ticket 7 now", NULL);
  result_free(&r);

  if (ts_kafka_bootstrap() == NULL)
    return;
  char inbox[96], notes[96], e[512];
  snprintf(inbox, sizeof inbox, "%s", ts_unique_name("sagactl.cw.inbox"));
  snprintf(notes, sizeof notes, "%s", ts_unique_name("sagactl.cw.notes"));
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", ts_kafka_bootstrap(), e,
                    sizeof e);
  rd_kafka_conf_set(conf, "linger.ms", "0", e, sizeof e);
  answer_t a = {.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e),
                .topic = notes,
                .saga_id = "s-run",
                .reason = "cancelled: customer called\nticket 7"};
  assert_non_null(a.rk);
  const sagactl_how_t how = {.bin = SAGACTL_BIN,
                             .dir = tmpdir,
                             .conninfo = conninfo,
                             .unset_kafka = 1,
                             .pump = answer_compensated,
                             .pump_arg = &a};
  r = (result_t){0};
  sagactl_rerun(&how, &r, "cancel", "s-run", "--reason",
                "customer called\nticket 7", "--wait", "30s", "--kafka",
                ts_kafka_bootstrap(), "--inbox", inbox, "--notifications",
                notes, NULL);
  expect(&r, 0, NULL, NULL);
  assert_string_equal(r.out,
                      "s-run compensated: cancelled: customer called ticket "
                      "7\n");
  result_free(&r);
  rd_kafka_destroy(a.rk);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_status_shows_a_saga_and_exits_1_for_an_unknown_one),
      cmocka_unit_test(test_list_filters_by_state_type_time_and_stuck),
      cmocka_unit_test(test_list_bad_values_name_the_flag),
      cmocka_unit_test(test_list_pages_walk_every_saga_exactly_once),
      cmocka_unit_test(test_history_shows_a_timeline_with_durations),
      cmocka_unit_test(test_a_blocked_event_store_read_ends_at_the_timeout),
      cmocka_unit_test(test_a_reason_no_message_can_carry_is_refused_first),
      cmocka_unit_test(
          test_start_refuses_what_the_wire_would_naming_the_field),
      cmocka_unit_test(
          test_history_reads_an_archive_file_without_the_database),
      cmocka_unit_test(test_history_archive_errors_name_the_file_once),
      cmocka_unit_test(
          test_unreachable_postgres_exits_3_and_bad_input_exits_2),
      cmocka_unit_test(test_start_lands_a_start_saga_in_the_inbox),
      cmocka_unit_test(test_unreachable_kafka_exits_3_within_the_timeout),
      cmocka_unit_test(test_retry_of_a_parked_saga_sends_an_operator_action),
      cmocka_unit_test(test_cancel_sends_a_cancel_saga_or_says_why_not),
      cmocka_unit_test(
          test_actions_by_query_send_each_saga_its_message_or_say_why),
      cmocka_unit_test(
          test_unreachable_kafka_is_one_line_of_sagactl_not_a_log),
      cmocka_unit_test(test_cancel_of_a_parked_saga_is_refused_before_kafka),
      cmocka_unit_test(test_a_bad_kafka_property_names_its_file_line),
      cmocka_unit_test(test_a_malformed_conninfo_is_a_configuration_error),
      cmocka_unit_test(test_out_of_range_times_name_the_flag),
      cmocka_unit_test(test_one_saga_id_with_dry_run_or_yes_is_not_a_query),
      cmocka_unit_test(
          test_an_impossible_saga_id_is_refused_naming_the_command),
      cmocka_unit_test(
          test_list_refuses_values_no_saga_has_naming_the_flag),
      cmocka_unit_test(
          test_an_output_format_a_command_cannot_print_is_refused),
      cmocka_unit_test(test_help_shows_every_option_a_command_takes),
      cmocka_unit_test(test_completion_finds_the_command_after_options),
      cmocka_unit_test(test_replay_agrees_then_reports_a_corrupted_index_row),
      cmocka_unit_test(test_replay_goes_on_past_an_undecodable_stream),
      cmocka_unit_test(
          test_a_database_without_the_event_store_says_what_to_run),
      cmocka_unit_test(
          test_an_undecodable_record_is_reported_whole_at_the_ceilings),
      cmocka_unit_test(test_an_error_shows_a_value_as_one_line_of_text),
      cmocka_unit_test(test_completion_and_version_take_options_anywhere),
      cmocka_unit_test(test_an_empty_kafka_is_refused_naming_where),
      cmocka_unit_test(test_an_input_file_that_cannot_be_read_says_why),
      cmocka_unit_test(
          test_a_bad_definitions_folder_is_named_with_its_setting),
      cmocka_unit_test(test_text_output_keeps_a_reason_on_its_line),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
