/* Definitions in the store, with a real sagad and the real sagactl: sagad
 * records the definitions it loads (saga_definitions) and refuses to start
 * on a changed body under a recorded version; sagactl names steps from the
 * recorded version with no --definitions (history, describe), describes a
 * parked saga with its failure and operator trail, and checks a new
 * definitions folder against the running sagas (replay --dry-run). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <libpq-fe.h>

#include "definition.h"
#include "e2e.h"
#include "run_sagactl.h"
#include "test_support.h"

/* 0: every compensation of "park-*" fails; 1: the participant was fixed. */
static int fixed;

/* "park-*": s1 and s2 succeed, s3 fails, their undo fails until `fixed`.
 * "hold-*": s1 is never answered. Anything else succeeds. */
static e2e_answer_t script(const char *saga_id, int step, int compensate,
                           uint32_t attempt) {
  (void)attempt;
  if (!strncmp(saga_id, "hold-", 5))
    return step == 0 && !compensate ? E2E_NO_REPLY : E2E_SUCCESS;
  if (strncmp(saga_id, "park-", 5) != 0)
    return E2E_SUCCESS;
  if (compensate)
    return fixed ? E2E_SUCCESS : E2E_FAILURE;
  return step == E2E_STEPS - 1 ? E2E_FAILURE : E2E_SUCCESS;
}

typedef sagactl_result_t result_t;

static void pump(void *t) { e2e_pump(t, 20); }

/* sagactl as the tests run it: SAGA_DEFINITIONS unset, the harness's
 * database, the participant pumped while it runs. */
static sagactl_how_t how_for(e2e_t *t) {
  return (sagactl_how_t){.bin = SAGACTL_BIN,
                         .dir = e2e_dir(t),
                         .conninfo = e2e_conninfo(t),
                         .pump = pump,
                         .pump_arg = t};
}

#define run(t, r, ...)                                                         \
  do {                                                                         \
    sagactl_how_t how_ = how_for(t);                                           \
    sagactl_rerun(&how_, (r), __VA_ARGS__);                                    \
  } while (0)
#define expect(r, rc, in_out) sagactl_expect((r), (rc), (in_out), NULL)
#define wait_status e2e_wait_status

static cJSON *json_of(const result_t *r) {
  cJSON *j = cJSON_Parse(r->out);
  if (j == NULL)
    fail_msg("not JSON: %s", r->out);
  return j;
}

/* The recorded sha256 of (name, version), "" when none. */
static void recorded_sha(e2e_t *t, const char *name, const char *version,
                         char out[65]) {
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  const char *p[2] = {name, version};
  PGresult *r = PQexecParams(c,
                             "SELECT sha256 FROM saga_definitions WHERE "
                             "name = $1 AND version = $2::int",
                             2, NULL, p, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  snprintf(out, 65, "%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "");
  PQclear(r);
  PQfinish(c);
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  static char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strdup(buf);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* text with its first `from` replaced by `to` (malloc'd). */
static char *replace(const char *text, const char *from, const char *to) {
  const char *at = strstr(text, from);
  assert_non_null(at);
  size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
  char *s = malloc(n);
  assert_non_null(s);
  snprintf(s, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  return s;
}

/* A folder dir/name holding the given files (name, text pairs, NULL
 * ended); its path into out. */
static void make_folder(e2e_t *t, const char *name, char *out, size_t len,
                        ...) {
  snprintf(out, len, "%s/%s", e2e_dir(t), name);
  assert_int_equal(mkdir(out, 0700), 0);
  va_list ap;
  va_start(ap, len);
  for (const char *f = va_arg(ap, const char *); f != NULL;
       f = va_arg(ap, const char *)) {
    const char *text = va_arg(ap, const char *);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out, f);
    write_text(path, text);
  }
  va_end(ap);
}

static void test_sagactl_names_steps_from_the_store_and_describes_a_parked_saga(
    void **state) {
  (void)state;
  fixed = 0;
  e2e_t *t = e2e_new("defs", 5000, script);
  e2e_sagad_start(t, 0);
  e2e_start(t, "fast", "ok-1");
  e2e_start(t, "fast", "park-1");
  wait_status(t, "ok-1", "completed");
  wait_status(t, "park-1", "compensation_failed");

  /* sagad recorded both definitions it loaded, with their hashes */
  char sha[65];
  recorded_sha(t, "fast", "1", sha);
  assert_int_equal(strlen(sha), 64);
  recorded_sha(t, "slow", "1", sha);
  assert_int_equal(strlen(sha), 64);

  result_t r = {0};
  /* no --definitions: the steps have their names all the same */
  run(t, &r, "history", "ok-1", NULL);
  expect(&r, 0, "definition as recorded in the store");
  assert_non_null(strstr(r.out, "  s3  "));
  assert_null(strstr(r.out, "#0"));
  run(t, &r, "history", "park-1", "--payloads", NULL);
  expect(&r, 0, "input: {\"order\":\"park-1\"}");

  /* describe: the parked step and its failure in plain sight */
  run(t, &r, "describe", "park-1", NULL);
  expect(&r, 0, "parked step:   s2");
  assert_non_null(strstr(r.out, "status:        compensation_failed"));
  assert_non_null(strstr(r.out, "COMPENSATE attempt 5: FAILURE \"scripted\""));
  assert_non_null(strstr(r.out, "bytes (--payloads shows it)"));
  assert_non_null(strstr(r.out, "operator trail: none"));
  run(t, &r, "describe", "park-1", "--output", "json", NULL);
  expect(&r, 0, NULL);
  cJSON *j = json_of(&r);
  assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring,
                      "compensation_failed");
  cJSON *parked = cJSON_GetObjectItem(j, "parked");
  assert_string_equal(cJSON_GetObjectItem(parked, "name")->valuestring, "s2");
  cJSON *lf = cJSON_GetObjectItem(parked, "last_failure");
  assert_string_equal(cJSON_GetObjectItem(lf, "reason")->valuestring,
                      "scripted");
  assert_string_equal(cJSON_GetObjectItem(lf, "action")->valuestring,
                      "COMPENSATE");
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "input")));
  assert_true(cJSON_GetObjectItem(j, "input_bytes")->valueint > 0);
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "definition"), "from")
          ->valuestring,
      "store");
  cJSON *steps = cJSON_GetObjectItem(j, "steps");
  assert_int_equal(cJSON_GetArraySize(steps), 3);
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 2), "status")->valuestring,
      "failed");
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 1), "status")->valuestring,
      "compensation_failed");
  cJSON_Delete(j);
  run(t, &r, "describe", "park-1", "--payloads", "--json", NULL);
  expect(&r, 0, NULL);
  j = json_of(&r);
  assert_false(cJSON_IsNull(cJSON_GetObjectItem(j, "input")));
  cJSON_Delete(j);
  run(t, &r, "describe", "nope", NULL);
  sagactl_expect(&r, 1, NULL, "saga \"nope\" not found in saga_index");

  /* the operator's retry shows in the trail: who and why */
  fixed = 1;
  run(t, &r, "retry", "park-1", "--kafka", ts_kafka_bootstrap(), "--inbox",
      e2e_inbox(t), "--operator", "alice", "--reason", "warehouse API back",
      NULL);
  expect(&r, 0, "retry sent for saga park-1");
  wait_status(t, "park-1", "compensated");
  run(t, &r, "describe", "park-1", NULL);
  expect(&r, 0,
         "OperatorRetry   by alice (COMPENSATE s2): warehouse API "
         "back");
  run(t, &r, "describe", "park-1", "--output", "json", NULL);
  j = json_of(&r);
  cJSON *trail =
      cJSON_GetArrayItem(cJSON_GetObjectItem(j, "operator_trail"), 0);
  assert_string_equal(cJSON_GetObjectItem(trail, "operator")->valuestring,
                      "alice");
  assert_string_equal(cJSON_GetObjectItem(trail, "reason")->valuestring,
                      "warehouse API back");
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "parked")));
  cJSON_Delete(j);
  sagactl_result_free(&r);
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  e2e_free(t);
}

static void
test_a_new_folder_is_checked_against_running_sagas_and_a_changed_body_is_refused(
    void **state) {
  (void)state;
  e2e_t *t = e2e_new("defs-dry", 5000, script);
  e2e_sagad_start(t, 0);
  e2e_start(t, "slow", "hold-1"); /* s1 never answered: stays running */
  e2e_start(t, "fast", "ok-2");
  wait_status(t, "ok-2", "completed");
  wait_status(t, "hold-1", "running");

  char path[512], recorded[65];
  snprintf(path, sizeof path, "%s/defs/slow.json", e2e_dir(t));
  char *slow = read_text(path);
  char *v2 = replace(slow, "\"version\": 1", "\"version\": 2");
  char *renamed = replace(v2, "\"name\": \"s1\"", "\"name\": \"reserve\"");
  char *changed = replace(slow, "60000", "60001");
  char same_dir[512], v2_dir[512], renamed_dir[512], changed_dir[512],
      none_dir[512];
  make_folder(t, "new-same", same_dir, sizeof same_dir, "slow.json", slow,
              NULL);
  make_folder(t, "new-v2", v2_dir, sizeof v2_dir, "slow2.json", v2, NULL);
  make_folder(t, "new-renamed", renamed_dir, sizeof renamed_dir, "slow2.json",
              renamed, NULL);
  make_folder(t, "new-changed", changed_dir, sizeof changed_dir, "slow.json",
              changed, NULL);
  char *other = replace(v2, "\"name\": \"slow\"", "\"name\": \"other\"");
  make_folder(t, "new-none", none_dir, sizeof none_dir, "other.json", other,
              NULL);

  result_t r = {0};
  /* a running saga: the deadline it waits for, and for what */
  run(t, &r, "describe", "hold-1", NULL);
  expect(&r, 0, "(reply deadline of DO s1, attempt 1), in ");
  assert_non_null(strstr(r.out, "current step:  s1\n"));
  assert_non_null(strstr(r.out, "0   s1                       running"));
  /* only the running saga is checked; the same body carries on */
  run(t, &r, "replay", "--all", "--dry-run", "--definitions", same_dir, NULL);
  expect(&r, 0, "is the recorded body");
  assert_non_null(strstr(r.out, "hold-1"));
  assert_null(strstr(r.out, "ok-2"));
  assert_non_null(strstr(r.out, "1 could be taken over, 0 could not"));
  /* v2 with the same steps could take it over */
  run(t, &r, "replay", "--all", "--dry-run", "--definitions", v2_dir, NULL);
  expect(&r, 0, "could take it over");
  /* v2 renames the step the saga waits on: it could not */
  run(t, &r, "replay", "hold-1", "--dry-run", "--definitions", renamed_dir,
      NULL);
  expect(&r, 1, "CANNOT");
  assert_non_null(strstr(r.out, "its step 0 is \"s1\" in v1 but \"reserve\" "
                                "in v2"));
  /* a changed body under v1: sagad would refuse it */
  run(t, &r, "replay", "--all", "--dry-run", "--definitions", changed_dir,
      "--json", NULL);
  expect(&r, 1, NULL);
  cJSON *j = json_of(&r);
  cJSON *one = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "sagas"), 0);
  assert_string_equal(cJSON_GetObjectItem(one, "result")->valuestring,
                      "changed");
  assert_non_null(strstr(cJSON_GetObjectItem(one, "detail")->valuestring,
                         "sagad would refuse to start"));
  cJSON_Delete(j);
  /* no definition of its type at all */
  run(t, &r, "replay", "--all", "--dry-run", "--definitions", none_dir, NULL);
  expect(&r, 1, "MISSING");
  /* the dry run needs the folder to check */
  run(t, &r, "replay", "--all", "--dry-run", NULL);
  sagactl_expect(&r, 2, NULL, "give --definitions NEW_DIR");
  /* a replay needs no folder at all now */
  run(t, &r, "replay", "--all", NULL);
  expect(&r, 0, "replayed 2 sagas: 2 consistent, 0 mismatched, 0 missing");

  /* sagad refuses to start on the changed body of a recorded version,
   * naming the file, the definition, its version and both hashes */
  assert_int_equal(e2e_sagad_stop(t, 0, SIGTERM), 0);
  recorded_sha(t, "slow", "1", recorded);
  assert_int_equal(strlen(recorded), 64);
  saga_def_t *def = NULL;
  assert_int_equal(
      saga_def_parse(changed, strlen(changed), "slow.json", &def, NULL),
      SAGA_CORE_OK);
  assert_string_not_equal(def->sha256, recorded);
  write_text(path, changed);
  e2e_sagad_start(t, 0);
  assert_int_equal(e2e_sagad_wait(t, 0, 30000), 1);
  char log_path[512];
  snprintf(log_path, sizeof log_path, "%s/sagad0.log", e2e_dir(t));
  char *log = read_text(log_path);
  char want[768];
  snprintf(want, sizeof want,
           "/defs/slow.json: definition \"slow\" version 1 is already "
           "recorded in the store with another body (recorded sha256 %s, "
           "from slow.json at ",
           recorded);
  if (!strstr(log, want) || !strstr(log, def->sha256))
    fail_msg("sagad's log lacks the refusal \"%s\" with sha256 %s:\n%s", want,
             def->sha256, log);
  saga_def_free(def);
  free(log);

  /* a definition neither recorded nor in a folder is "missing" */
  PGconn *c = PQconnectdb(e2e_conninfo(t));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PQclear(PQexec(c, "DELETE FROM saga_definitions WHERE name = 'slow'"));
  PQfinish(c);
  run(t, &r, "replay", "--all", NULL);
  expect(&r, 1,
         "MISSING  hold-1: not checked: definition slow v1 is "
         "neither recorded in the store nor in a definitions folder");
  assert_null(strstr(r.out, "MISMATCH"));
  assert_non_null(strstr(r.out, "1 consistent, 0 mismatched, 1 missing"));
  /* the folder fills in what the store lacks */
  run(t, &r, "replay", "--all", "--definitions", same_dir, NULL);
  expect(&r, 0, "2 consistent, 0 mismatched, 0 missing");
  sagactl_result_free(&r);
  free(slow);
  free(v2);
  free(renamed);
  free(changed);
  free(other);
  e2e_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_sagactl_names_steps_from_the_store_and_describes_a_parked_saga),
      cmocka_unit_test(
          test_a_new_folder_is_checked_against_running_sagas_and_a_changed_body_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
