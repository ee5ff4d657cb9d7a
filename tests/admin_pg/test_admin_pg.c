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
/* Two versions of refund: credit is stuck after 1 min in v1, 10 h in v2. */
static const char *REFUND_DEF =
    "{\"name\": \"refund\", \"version\": 1, \"steps\": [{\"name\": "
    "\"credit\", \"kind\": \"pivot\", \"topic\": \"payment\", "
    "\"stuck_after_ms\": 60000}]}";
static const char *REFUND2_DEF =
    "{\"name\": \"refund\", \"version\": 2, \"steps\": [{\"name\": "
    "\"credit\", \"kind\": \"pivot\", \"topic\": \"payment\", "
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
  /* The thresholds sagad hands over from its definitions (for rows
   * written before saga_index.stuck_at): order waits on charge 30 s, on
   * the rest the 5 min default; refund's credit: the version registered
   * last, 10 h. */
  assert_int_equal(
      admin_pg_stuck_from_def(pg, saga_registry_find(reg, "order", 1)), 0);
  assert_int_equal(
      admin_pg_stuck_from_def(pg, saga_registry_find(reg, "refund", 1)), 0);
  assert_int_equal(
      admin_pg_stuck_from_def(pg, saga_registry_find(reg, "refund", 2)), 0);
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

static void seed_v(PGconn *c, es_store_t *st, const char *type,
                   uint32_t version, const char *id, int64_t t0,
                   const uint8_t *script, size_t n) {
  sm_t *s = seed_drive(saga_registry_find(reg, type, version), id, t0, 100,
                         script, n, seed_pg_append, st);
  seed_pg_index(c, s);
  free(s);
}

static void seed(PGconn *c, es_store_t *st, const char *type, const char *id,
                 int64_t t0, const uint8_t *script, size_t n) {
  seed_v(c, st, type, 1, id, t0, script, n);
}

/* Apply the coordinator's saga_index migrations as they are, in order. */
static int apply_migrations(PGconn *c) {
  for (int i = 1; i < 100; i++) {
    char pattern[16], path[512] = "";
    snprintf(pattern, sizeof pattern, "%04d_", i);
    DIR *d = opendir(SAGA_INDEX_SQL_DIR);
    if (!d)
      return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
      if (!strncmp(e->d_name, pattern, 5))
        snprintf(path, sizeof path, "%s/%s", SAGA_INDEX_SQL_DIR, e->d_name);
    closedir(d);
    if (!path[0])
      return i > 1 ? 0 : -1;
    char *sql = slurp(path);
    if (!sql)
      return -1;
    seed_pg_exec(c, sql);
    free(sql);
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
      saga_registry_add(reg, seed_def(REFUND_DEF), NULL) != 0 ||
      saga_registry_add(reg, seed_def(REFUND2_DEF), NULL) != 0)
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
  seed(c, st, "order", "a-comp", now - 3 * 3600000, comp, 3);
  seed(c, st, "order", "a-park", now - 600000, park, 3);
  seed(c, st, "order", "a-run", now - 2 * 3600000, NULL, 0);
  seed(c, st, "order", "a-new", now - 60000, one, 1);
  seed(c, st, "order", "a-late", now - 3600000, late, 2);
  seed(c, st, "refund", "b-1", now - 2 * 3600000, NULL, 0);
  seed_v(c, st, "refund", 2, "b-2", now - 2 * 3600000, NULL, 0);
  /* a-run's row as a sagad without saga_index.stuck_at wrote it. */
  seed_pg_exec(c, "UPDATE saga_index SET stuck_at = NULL "
                  "WHERE saga_id = 'a-run'");
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

static void test_filters_select_by_state_type_and_stuck_thresholds(
    void **state) {
  (void)state;
  int status = 0;
  char ids[512];
  cJSON *doc = get("/sagas?state=compensated", &status);
  assert_int_equal(status, 200);
  ids_of(doc, ids, sizeof ids);
  assert_string_equal(ids, "a-comp");
  cJSON_Delete(doc);
  doc = get("/sagas?type=refund", &status);
  ids_of(doc, ids, sizeof ids);
  assert_string_equal(ids, "b-1,b-2");
  cJSON_Delete(doc);
  /* Each by its own step's stuck_after_ms (saga_index.stuck_at):
   * a-park: parked; a-new: 1 min on charge (30 s); a-late: progress 1 h
   * ago on charge; b-1: 2 h on v1's credit (1 min), though v2, registered
   * last, gives credit 10 h, and b-2 on v2 is within them. a-run has no
   * stuck_at (an older sagad's row): 2 h on reserve, past the threshold
   * taken from the definition (the 5 min default). */
  doc = get("/sagas?stuck=true", &status);
  ids_of(doc, ids, sizeof ids);
  assert_string_equal(ids, "a-late,a-new,a-park,a-run,b-1");
  cJSON_Delete(doc);
  doc = get("/sagas?state=running&stuck=true&type=order", &status);
  ids_of(doc, ids, sizeof ids);
  assert_string_equal(ids, "a-late,a-new,a-run");
  cJSON_Delete(doc);
}

static void test_pages_follow_the_cursor_without_gaps_or_repeats(
    void **state) {
  (void)state;
  char all[1024] = "", path[128] = "/sagas?limit=2";
  int pages = 0;
  for (;;) {
    int status = 0;
    cJSON *doc = get(path, &status);
    assert_int_equal(status, 200);
    char ids[256];
    ids_of(doc, ids, sizeof ids);
    if (all[0] && ids[0])
      strcat(all, ",");
    strcat(all, ids);
    pages++;
    const char *next = str(doc, "next");
    if (!next) {
      assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "next")));
      cJSON_Delete(doc);
      break;
    }
    snprintf(path, sizeof path, "/sagas?limit=2&after=%s", next);
    cJSON_Delete(doc);
  }
  assert_string_equal(all, "a-comp,a-done,a-late,a-new,a-park,a-run,b-1,b-2");
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_a_compensated_saga_reads_back_with_its_decoded_history),
      cmocka_unit_test(
          test_a_timed_out_attempt_shows_as_a_timeout_then_a_retry),
      cmocka_unit_test(test_an_unknown_saga_answers_404),
      cmocka_unit_test(test_filters_select_by_state_type_and_stuck_thresholds),
      cmocka_unit_test(test_pages_follow_the_cursor_without_gaps_or_repeats),
      cmocka_unit_test(
          test_a_lost_connection_is_reopened_for_the_next_request),
      cmocka_unit_test(
          test_a_locked_table_answers_503_within_the_statement_timeout),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
