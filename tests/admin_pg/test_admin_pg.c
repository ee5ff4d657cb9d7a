/* admin_pg against the embedded PostgreSQL: a scratch database with the
 * event store schema, the coordinator's saga_index migration and saga
 * streams written by the pure machine; the admin API served over HTTP
 * reads them back (rows, decoded histories, filters, stuck thresholds,
 * keyset pages) and survives a lost connection and a locked table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "admin_api.h"
#include "admin_pg.h"
#include "http_client.h"
#include "saga_seed.h"
#include "test_support.h"

/* order: reserve (compensatable), charge (the pivot), ship (retried
 * forward); two attempts a step, one for a compensation. */
static const char *ORDER_DEF =
    "{\"name\": \"order\", \"version\": 1, \"defaults\": {"
    "\"timeout_ms\": 5000, \"retry\": {\"max_attempts\": 2}, "
    "\"compensation_retry\": {\"max_attempts\": 1}}, \"steps\": ["
    "{\"name\": \"reserve\", \"topic\": \"inventory\", "
    "\"compensation\": {\"action\": \"release\"}}, "
    "{\"name\": \"charge\", \"topic\": \"payment\", \"kind\": \"pivot\", "
    "\"stuck_after_ms\": 30000}, "
    "{\"name\": \"ship\", \"topic\": \"shipping\", "
    "\"kind\": \"retriable\"}]}";
static const char *REFUND_DEF =
    "{\"name\": \"refund\", \"version\": 1, \"steps\": [{\"name\": "
    "\"credit\", \"kind\": \"pivot\", \"topic\": \"payment\", "
    "\"stuck_after_ms\": 36000000}]}";
/* Two versions of one type: its step is stuck after 1 min in v1, 10 h in
 * v2 (test_each_saga_is_judged_by_its_own_version_of_the_step). */
static const char *CREDIT_V1_DEF =
    "{\"name\": \"credit\", \"version\": 1, \"steps\": [{\"name\": "
    "\"book\", \"kind\": \"pivot\", \"topic\": \"ledger\", "
    "\"stuck_after_ms\": 60000}]}";
static const char *CREDIT_V2_DEF =
    "{\"name\": \"credit\", \"version\": 2, \"steps\": [{\"name\": "
    "\"book\", \"kind\": \"pivot\", \"topic\": \"ledger\", "
    "\"stuck_after_ms\": 36000000}]}";

static char *conninfo;
static saga_registry_t *reg;
static admin_http_t *srv;
static admin_pg_t *pg;
static admin_source_t src;
static int port;
static loop_thread_t *lt;

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *s = calloc(1, 1 << 16);
  size_t n = fread(s, 1, (1 << 16) - 1, f);
  s[n] = '\0';
  fclose(f);
  return s;
}

static void on_loop(uv_loop_t *loop, void *arg) {
  (void)arg;
  admin_pg_opts_t o;
  admin_pg_opts_init(&o);
  o.conninfo = conninfo;
  o.registry = reg;
  o.statement_timeout_ms = 1000;
  pg = admin_pg_new(loop, &o);
  assert_non_null(pg);
  /* Thresholds for rows written before saga_index.stuck_at (the
   * definitions' own, as sagad hands them over): order waits on charge:
   * 30 s; refund, any step: 10 h; the rest: the 5 min default. */
  assert_int_equal(admin_pg_set_stuck(pg, "order", "charge", 30000),
                   0);
  assert_int_equal(admin_pg_set_stuck(pg, "refund", NULL, 36000000), 0);
  admin_pg_source(pg, &src);
  srv = admin_http_new(loop, NULL);
  assert_non_null(srv);
  assert_int_equal(admin_api_register(srv, &src, NULL), 0);
  assert_int_equal(admin_http_start(srv, NULL, 0), 0);
  port = admin_http_port(srv);
}

static void pg_closed(void *arg) { (void)arg; }

static void http_closed(void *arg) {
  (void)arg;
  admin_pg_close(pg, pg_closed, NULL);
}

static void on_stop(void *arg) {
  (void)arg;
  admin_http_close(srv, http_closed, NULL);
}

static void seed(PGconn *c, es_store_t *st, const char *type, const char *id,
                 int64_t t0, const uint8_t *script, size_t n) {
  sm_t *s = seed_drive(saga_registry_find(reg, type, 1), id, t0, 100,
                         script, n, seed_pg_append, st);
  seed_pg_index(c, s);
  free(s);
}

/* Apply the coordinator's saga_index migrations as they are, in order. */
static int apply_migrations(PGconn *c) {
  for (int i = 1; i < 100; i++) {
    char pattern[16];
    snprintf(pattern, sizeof pattern, "%04d_", i);
    DIR *d = opendir(SAGA_INDEX_SQL_DIR);
    if (!d)
      return -1;
    int found = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
      char path[512];
      if (strncmp(e->d_name, pattern, 5) != 0)
        continue;
      snprintf(path, sizeof path, "%s/%s", SAGA_INDEX_SQL_DIR, e->d_name);
      char *sql = slurp(path);
      if (!sql) {
        closedir(d);
        return -1;
      }
      seed_pg_exec(c, sql);
      free(sql);
      found = 1;
    }
    closedir(d);
    if (!found)
      return i > 1 ? 0 : -1;
  }
  return 0;
}

static int setup(void **state) {
  (void)state;
  ts_require_pg();
  conninfo = ts_pg_create_database("admin_pg");
  char err[ES_ERRBUF_SIZE];
  if (es_migrate(conninfo, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "migrate: %s\n", err);
    return -1;
  }
  reg = saga_registry_new();
  if (saga_registry_add(reg, seed_def(ORDER_DEF), NULL) != 0 ||
      saga_registry_add(reg, seed_def(REFUND_DEF), NULL) != 0)
    return -1;
  PGconn *c = PQconnectdb(conninfo);
  es_store_t *st = NULL;
  if (PQstatus(c) != CONNECTION_OK ||
      es_store_open(conninfo, NULL, &st, err, sizeof err) != 0)
    return -1;
  if (apply_migrations(c) != 0)
    return -1;
  int64_t now = seed_pg_now_ms(c);
  const uint8_t done[] = {SM_OUTCOME_SUCCESS, SM_OUTCOME_SUCCESS,
                          SM_OUTCOME_SUCCESS};
  const uint8_t comp[] = {SM_OUTCOME_SUCCESS, SM_OUTCOME_FAILURE,
                          SM_OUTCOME_SUCCESS};
  const uint8_t park[] = {SM_OUTCOME_SUCCESS, SM_OUTCOME_FAILURE,
                          SM_OUTCOME_FAILURE};
  const uint8_t late[] = {SEED_TIMEOUT, SM_OUTCOME_SUCCESS};
  const uint8_t one[] = {SM_OUTCOME_SUCCESS};
  seed(c, st, "order", "a-done", now - 3 * 3600000, done, 3);
  seed_step_output = "\xff\xfe"; /* a step output that is not text */
  seed(c, st, "order", "a-comp", now - 3 * 3600000, comp, 3);
  seed_step_output = NULL;
  seed(c, st, "order", "a-park", now - 600000, park, 3);
  seed(c, st, "order", "a-run", now - 2 * 3600000, NULL, 0);
  seed(c, st, "order", "a-new", now - 60000, one, 1);
  seed(c, st, "order", "a-late", now - 3600000, late, 2);
  seed(c, st, "refund", "b-1", now - 2 * 3600000, NULL, 0);
  es_store_close(st);
  PQfinish(c);
  lt = loop_thread_start(on_loop, on_stop, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  loop_thread_stop(lt);
  saga_registry_free(reg);
  ts_pg_drop_database(conninfo);
  return 0;
}

static cJSON *get(const char *path, int *status) {
  char req[512];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
  char *resp = http_roundtrip(port, req, status);
  assert_non_null(resp);
  const char *body = strstr(resp, "\r\n\r\n");
  assert_non_null(body);
  cJSON *doc = cJSON_Parse(body + 4);
  if (!doc)
    fail_msg("not JSON: %s", resp);
  free(resp);
  return doc;
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* "id1,id2,..." of a list answer. */
static void ids_of(const cJSON *doc, char *out, size_t n) {
  out[0] = '\0';
  const cJSON *row;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(doc, "sagas")) {
    if (out[0])
      strncat(out, ",", n - strlen(out) - 1);
    strncat(out, str(row, "saga_id"), n - strlen(out) - 1);
  }
}

static void test_a_compensated_saga_reads_back_with_its_decoded_history(
    void **state) {
  (void)state;
  int status = 0;
  cJSON *doc = get("/sagas/a-comp", &status);
  assert_int_equal(status, 200);
  const cJSON *saga = cJSON_GetObjectItem(doc, "saga");
  assert_string_equal(str(saga, "status"), "compensated");
  assert_string_equal(str(saga, "saga_type"), "order");
  assert_true(cJSON_IsFalse(cJSON_GetObjectItem(saga, "stuck")));
  assert_true(cJSON_IsFalse(cJSON_GetObjectItem(doc, "history_truncated")));
  /* event/step/action/outcome of each history entry, in order */
  char seen[1024] = "";
  const cJSON *h;
  cJSON_ArrayForEach(h, cJSON_GetObjectItem(doc, "history")) {
    char line[160];
    snprintf(line, sizeof line, "%s %s %s %s|", str(h, "event"),
             str(h, "step") ? str(h, "step") : "-",
             str(h, "action") ? str(h, "action") : "-",
             str(h, "outcome") ? str(h, "outcome") : "-");
    strncat(seen, line, sizeof seen - strlen(seen) - 1);
    assert_non_null(str(h, "time"));
  }
  assert_string_equal(
      seen, "Started - - -|Dispatched reserve do -|"
            "Succeeded reserve do success|"
            "Dispatched charge do -|"
            "AttemptFailed charge do failure|"
            "Compensating charge - -|"
            "Dispatched reserve compensate -|"
            "Succeeded reserve compensate success|"
            "Compensated - - -|");
  /* the saga's input, as JSON, on its Started event; its numbers as
   * written (read into a double, the ref came back 9.00719925474099e+15) */
  const cJSON *started =
      cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "history"), 0);
  assert_true(cJSON_IsObject(cJSON_GetObjectItem(started, "input")));
  char req[128];
  snprintf(req, sizeof req, "GET /sagas/a-comp HTTP/1.1\r\nHost: t\r\n\r\n");
  char *resp = http_roundtrip(port, req, &status);
  assert_non_null(resp);
  assert_non_null(strstr(resp, "\"input\":{\"order\":42,\"ref\":"
                               "9007199254740993}"));
  /* bytes that are not UTF-8 as {"$base64"} (they went into a JSON
   * string as they were: an answer that was not UTF-8) */
  assert_non_null(strstr(resp, "\"output\":{\"$base64\":\"//4=\"}"));
  free(resp);
  const cJSON *failed = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "history"),
                                           4);
  assert_string_equal(str(failed, "reason"), "declined");
  assert_int_equal(cJSON_GetObjectItem(failed, "attempt")->valueint, 1);
  cJSON_Delete(doc);
}

static void test_a_timed_out_attempt_shows_as_a_timeout_then_a_retry(
    void **state) {
  (void)state;
  int status = 0;
  cJSON *doc = get("/sagas/a-late", &status);
  assert_int_equal(status, 200);
  bool timeout = false, second = false;
  const cJSON *h;
  cJSON_ArrayForEach(h, cJSON_GetObjectItem(doc, "history")) {
    const char *o = str(h, "outcome");
    timeout |= o && !strcmp(o, "timeout");
    second |= !strcmp(str(h, "event"), "Dispatched") &&
              cJSON_GetObjectItem(h, "attempt")->valueint == 2;
  }
  assert_true(timeout);
  assert_true(second);
  cJSON_Delete(doc);
}

static void test_an_unknown_saga_answers_404(void **state) {
  (void)state;
  int status = 0;
  cJSON *doc = get("/sagas/nope", &status);
  assert_int_equal(status, 404);
  assert_non_null(strstr(str(doc, "error"), "nope"));
  cJSON_Delete(doc);
}

/* The ids of path's answer, newest first unless it says, and its total. */
static void expect_list(const char *path, const char *want_ids,
                        double want_total) {
  int status = 0;
  char ids[512];
  cJSON *doc = get(path, &status);
  if (status != 200)
    fail_msg("%s: status %d", path, status);
  ids_of(doc, ids, sizeof ids);
  const cJSON *total = cJSON_GetObjectItem(doc, "total");
  if (strcmp(ids, want_ids) != 0 || !cJSON_IsNumber(total) ||
      total->valuedouble != want_total)
    fail_msg("%s: [%s] of %g, want [%s] of %g", path, ids,
             cJSON_IsNumber(total) ? total->valuedouble : -1.0, want_ids,
             want_total);
  cJSON_Delete(doc);
}

static void test_filters_select_by_state_type_time_and_stuck_thresholds(
    void **state) {
  (void)state;
  static const struct {
    const char *path, *ids;
    double total;
  } cases[] = {
      /* Newest start first; a-run and b-1 started together, as did
       * a-done and a-comp: the id breaks the tie. */
      {"/sagas", "a-new,a-park,a-late,b-1,a-run,a-done,a-comp", 7},
      {"/sagas?order=oldest", "a-comp,a-done,a-run,b-1,a-late,a-park,a-new",
       7},
      {"/sagas?state=compensated", "a-comp", 1},
      {"/sagas?type=refund", "b-1", 1},
      {"/sagas?limit=2", "a-new,a-park", 7},
      /* By each saga's stuck_at: a-park: parked; a-run: 2 h on reserve
       * (default 5 min); a-new: 1 min on charge (30 s); a-late: progress
       * 1 h ago on charge; b-1 is within credit's 10 h. */
      {"/sagas?stuck=true", "a-new,a-park,a-late,a-run", 4},
      {"/sagas?state=running&stuck=true&type=order", "a-new,a-late,a-run", 3},
      /* started_at bounds: since inclusive, until exclusive; a duration
       * is taken back from the database's clock. */
      {"/sagas?since=90m", "a-new,a-park,a-late", 3},
      {"/sagas?until=90m", "b-1,a-run,a-done,a-comp", 4},
      {"/sagas?since=150m&until=90m&order=oldest", "a-run,b-1", 2},
      {"/sagas?since=2999-01-01T00:00:00Z", "", 0},
      {"/sagas?until=2000-01-01T00:00:00%2B02:00", "", 0},
      {"/sagas?since=2000-01-01T00:00:00Z&type=order&limit=1", "a-new", 6},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    expect_list(cases[i].path, cases[i].ids, cases[i].total);
}

/* counts=true: each state's count under the other filters is what the
 * list filtered by that state totals (two statements, one answer), and
 * the counts add up to the unfiltered total; without it, no counts. */
static void test_counts_per_state_agree_with_the_filtered_totals(
    void **state) {
  (void)state;
  static const char *const filters[] = {"", "&type=refund", "&stuck=true",
                                        "&since=90m",
                                        "&state=running&type=order"};
  for (size_t i = 0; i < sizeof filters / sizeof *filters; i++) {
    char path[256];
    int status = 0;
    snprintf(path, sizeof path, "/sagas?counts=true&limit=1%s", filters[i]);
    cJSON *doc = get(path, &status);
    assert_int_equal(status, 200);
    const cJSON *counts = cJSON_GetObjectItem(doc, "counts");
    if (!cJSON_IsObject(counts))
      fail_msg("%s: no counts", path);
    assert_int_equal(cJSON_GetArraySize(counts), 5);
    /* the filters but state */
    char others[128];
    snprintf(others, sizeof others, "%s", filters[i]);
    char *st = strstr(others, "&state=running");
    if (st)
      memmove(st, st + 14, strlen(st + 14) + 1);
    double sum = 0;
    const char *name;
    for (size_t k = 0; (name = iq_status_name(k)) != NULL; k++) {
      const cJSON *c = cJSON_GetObjectItem(counts, name);
      assert_true(cJSON_IsNumber(c));
      sum += c->valuedouble;
      char one[320];
      snprintf(one, sizeof one, "/sagas?limit=1&state=%s%s", name, others);
      cJSON *d = get(one, &status);
      assert_int_equal(status, 200);
      if (cJSON_GetObjectItem(d, "total")->valuedouble != c->valuedouble)
        fail_msg("%s: %s counts %g, the list totals %g", path, name,
                 c->valuedouble,
                 cJSON_GetObjectItem(d, "total")->valuedouble);
      cJSON_Delete(d);
    }
    snprintf(path, sizeof path, "/sagas?limit=1%s", others);
    cJSON *all = get(path, &status);
    assert_null(cJSON_GetObjectItem(all, "counts"));
    assert_true(cJSON_GetObjectItem(all, "total")->valuedouble == sum);
    assert_true(sum > 0);
    cJSON_Delete(all);
    cJSON_Delete(doc);
  }
}

/* Walk every page of query with limit 2: the ids, in order; every page
 * says the same total. */
static void walk(const char *query, char *all, size_t n, int *pages) {
  char path[640];
  snprintf(path, sizeof path, "/sagas?limit=2%s", query);
  all[0] = '\0';
  *pages = 0;
  for (;;) {
    int status = 0;
    cJSON *doc = get(path, &status);
    assert_int_equal(status, 200);
    assert_int_equal((int)cJSON_GetObjectItem(doc, "total")->valuedouble, 7);
    char ids[256];
    ids_of(doc, ids, sizeof ids);
    if (all[0] && ids[0])
      strncat(all, ",", n - strlen(all) - 1);
    strncat(all, ids, n - strlen(all) - 1);
    (*pages)++;
    const char *next = str(doc, "next");
    if (!next) {
      assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "next")));
      cJSON_Delete(doc);
      break;
    }
    /* base64url: goes into a query string as it is */
    assert_int_equal(strspn(next, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                                  "opqrstuvwxyz0123456789-_"),
                     strlen(next));
    snprintf(path, sizeof path, "/sagas?limit=2%s&after=%s", query, next);
    cJSON_Delete(doc);
  }
}

static void test_pages_follow_the_cursor_without_gaps_or_repeats(
    void **state) {
  (void)state;
  char all[1024];
  int pages = 0;
  walk("", all, sizeof all, &pages);
  assert_string_equal(all, "a-new,a-park,a-late,b-1,a-run,a-done,a-comp");
  assert_int_equal(pages, 4);
  walk("&order=oldest", all, sizeof all, &pages);
  assert_string_equal(all, "a-comp,a-done,a-run,b-1,a-late,a-park,a-new");
  assert_int_equal(pages, 4);
}

static void test_a_lost_connection_is_reopened_for_the_next_request(
    void **state) {
  (void)state;
  int status = 0;
  cJSON *doc = get("/sagas/a-done", &status); /* the connection exists */
  assert_int_equal(status, 200);
  cJSON_Delete(doc);
  PGconn *c = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, "SELECT count(pg_terminate_backend(pid)) FROM "
                          "pg_stat_activity WHERE application_name = "
                          "'sagad-admin' AND datname = current_database()");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_true(atoi(PQgetvalue(r, 0, 0)) >= 1);
  PQclear(r);
  PQfinish(c);
  doc = get("/sagas/a-done", &status);
  assert_int_equal(status, 200);
  assert_string_equal(str(cJSON_GetObjectItem(doc, "saga"), "status"),
                      "completed");
  /* its Completed event shows the saga's output, as JSON */
  const cJSON *h, *output = NULL;
  cJSON_ArrayForEach(h, cJSON_GetObjectItem(doc, "history"))
    if (!strcmp(str(h, "event"), "Completed"))
      output = cJSON_GetObjectItem(h, "output");
  assert_non_null(output);
  assert_string_equal(str(output, "shipment"), "ship-1");
  cJSON_Delete(doc);
  doc = get("/sagas?state=completed", &status);
  assert_int_equal(status, 200);
  cJSON_Delete(doc);
}

static void test_a_locked_table_answers_503_within_the_statement_timeout(
    void **state) {
  (void)state;
  PGconn *c = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  seed_pg_exec(c, "BEGIN; LOCK TABLE saga_index IN ACCESS EXCLUSIVE MODE");
  int status = 0;
  cJSON *doc = get("/sagas/a-done", &status);
  assert_int_equal(status, 503);
  assert_non_null(strstr(str(doc, "error"), "timed out"));
  cJSON_Delete(doc);
  seed_pg_exec(c, "ROLLBACK");
  PQfinish(c);
  doc = get("/sagas/a-done", &status);
  assert_int_equal(status, 200);
  cJSON_Delete(doc);
}

/* Each saga by the threshold of its own definition version's step
 * (saga_index.stuck_at), not by one per type and step: c-v1 waits 2 h on
 * v1's book (1 min), c-v2 as long on v2's (10 h); c-old's row has no
 * stuck_at (a sagad before that column) and is judged by the type's
 * thresholds, here the 5 min default. Its rows are removed afterwards. */
static void test_each_saga_is_judged_by_its_own_version_of_the_step(
    void **state) {
  (void)state;
  saga_def_t *v1 = seed_def(CREDIT_V1_DEF), *v2 = seed_def(CREDIT_V2_DEF);
  PGconn *c = PQconnectdb(conninfo);
  es_store_t *st = NULL;
  char err[ES_ERRBUF_SIZE];
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  assert_int_equal(es_store_open(conninfo, NULL, &st, err, sizeof err), 0);
  int64_t now = seed_pg_now_ms(c);
  const char *ids[] = {"c-v1", "c-v2", "c-old"};
  saga_def_t *defs[] = {v1, v2, v2};
  for (int i = 0; i < 3; i++) {
    sm_t *s = seed_drive(defs[i], ids[i], now - 2 * 3600000, 100, NULL, 0,
                         seed_pg_append, st);
    seed_pg_index(c, s);
    free(s);
  }
  seed_pg_exec(c, "UPDATE saga_index SET stuck_at = NULL "
                  "WHERE saga_id = 'c-old'");
  expect_list("/sagas?stuck=true&type=credit", "c-v1,c-old", 2);
  expect_list("/sagas?type=credit", "c-v2,c-v1,c-old", 3);
  seed_pg_exec(c, "DELETE FROM saga_index WHERE saga_type = 'credit'");
  es_store_close(st);
  PQfinish(c);
  saga_def_free(v1);
  saga_def_free(v2);
}

/* A saga whose definition sagad has not loaded: its steps by number,
 * until the store has its recorded version -- then by name, with the
 * recorded hash. */
static void test_steps_are_named_by_the_recorded_definition(void **state) {
  (void)state;
  saga_def_t *v1 = seed_def(CREDIT_V1_DEF);
  PGconn *c = PQconnectdb(conninfo);
  es_store_t *st = NULL;
  char err[ES_ERRBUF_SIZE];
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  assert_int_equal(es_store_open(conninfo, NULL, &st, err, sizeof err), 0);
  sm_t *s = seed_drive(v1, "c-rec", seed_pg_now_ms(c) - 60000, 100, NULL, 0,
                       seed_pg_append, st);
  seed_pg_index(c, s);
  free(s);
  int status = 0;
  cJSON *doc = get("/sagas/c-rec", &status);
  assert_int_equal(status, 200);
  cJSON *dispatched = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "history"),
                                         1);
  assert_string_equal(str(dispatched, "step"), "#0");
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "definition_sha256")));
  cJSON_Delete(doc);
  const char *p[3] = {v1->body, v1->sha256, "credit.json"};
  PGresult *r = PQexecParams(c,
                             "INSERT INTO saga_definitions (name, version, "
                             "body, sha256, source) VALUES ('credit', 1, $1, "
                             "$2, $3)",
                             3, NULL, p, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  doc = get("/sagas/c-rec", &status);
  assert_int_equal(status, 200);
  dispatched = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "history"), 1);
  assert_string_equal(str(dispatched, "step"), "book");
  assert_string_equal(str(doc, "definition_sha256"), v1->sha256);
  cJSON_Delete(doc);
  seed_pg_exec(c, "DELETE FROM saga_index WHERE saga_id = 'c-rec'");
  seed_pg_exec(c, "DELETE FROM saga_definitions");
  es_store_close(st);
  PQfinish(c);
  saga_def_free(v1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_a_compensated_saga_reads_back_with_its_decoded_history),
      cmocka_unit_test(
          test_a_timed_out_attempt_shows_as_a_timeout_then_a_retry),
      cmocka_unit_test(test_an_unknown_saga_answers_404),
      cmocka_unit_test(
          test_filters_select_by_state_type_time_and_stuck_thresholds),
      cmocka_unit_test(test_pages_follow_the_cursor_without_gaps_or_repeats),
      cmocka_unit_test(test_counts_per_state_agree_with_the_filtered_totals),
      cmocka_unit_test(
          test_a_lost_connection_is_reopened_for_the_next_request),
      cmocka_unit_test(
          test_a_locked_table_answers_503_within_the_statement_timeout),
      cmocka_unit_test(
          test_each_saga_is_judged_by_its_own_version_of_the_step),
      cmocka_unit_test(test_steps_are_named_by_the_recorded_definition),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
