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
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "saga.pb-c.h"
#include "saga/eventstore.h"
#include "saga_codec.h"
#include "run_sagactl.h"
#include "saga_machine.h"
#include "test_support.h"

static const char *ORDER_DEF =
    "{\"name\":\"order\",\"version\":1,\"defaults\":{\"timeout_ms\":5000,"
    "\"retry\":{\"max_attempts\":2},\"compensation_retry\":"
    "{\"max_attempts\":1}},\"steps\":["
    "{\"name\":\"reserve_inventory\",\"topic\":\"inventory.commands\","
    "\"stuck_after_ms\":10800000,"
    "\"compensation\":{\"action\":\"release\"}},"
    "{\"name\":\"charge_payment\",\"topic\":\"payment.commands\","
    "\"kind\":\"pivot\",\"stuck_after_ms\":30000},"
    "{\"name\":\"ship\",\"topic\":\"shipping.commands\",\"kind\":"
    "\"retriable\"}]}";

static char *conninfo;
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

static void append_record(es_store_t *st, const sm_t *s,
                          const sm_output_t *out, int64_t at) {
  if (out->n_events == 0)
    return;
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

/* Drive a saga through the machine: start at t0, answer each command
 * with the next scripted outcome 100 ms later, fire backoff timers; store
 * every transition and the saga's index row. */
static void seed(PGconn *c, es_store_t *st, const char *id, int64_t t0,
                 const uint8_t *script, size_t nscript) {
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
  char version[16], started[32], updated[32], deadline[32], stuck[32];
  snprintf(version, sizeof version, "%u", s->version);
  snprintf(started, sizeof started, "%.3f", (double)t0 / 1000.0);
  snprintf(updated, sizeof updated, "%.3f", (double)s->updated_ms / 1000.0);
  int64_t next = sm_next_timer(s);
  snprintf(deadline, sizeof deadline, "%.3f", (double)next / 1000.0);
  /* stuck_at as sagad writes it (0 = 'infinity') */
  int64_t sa = sm_stuck_at(s);
  if (sa)
    snprintf(stuck, sizeof stuck, "%.3f", (double)sa / 1000.0);
  else
    snprintf(stuck, sizeof stuck, "infinity");
  const char *params[8] = {id,      sm_status_name((sm_status_t)s->status),
                           version, started,
                           updated, next > 0 ? deadline : NULL,
                           step,    stuck};
  PGresult *r = PQexecParams(
      c,
      "INSERT INTO saga_index (saga_id, saga_type, definition_version, "
      "status, partition, version, started_at, updated_at, "
      "next_deadline_at, current_step, stuck_at) VALUES ($1, 'order', 1, "
      "$2, 0, $3, to_timestamp($4::float8), to_timestamp($5::float8), "
      "to_timestamp($6::float8), $7, to_timestamp($8::float8))",
      8, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    fail_msg("insert: %s", PQerrorMessage(c));
  PQclear(r);
  free(s);
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
             "current_step text, stuck_at timestamptz)");
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

static size_t list_count(const char *first, ...) {
  const char *args[8] = {"list", "--json"};
  size_t n = 2;
  va_list ap;
  va_start(ap, first);
  for (const char *a = first; a != NULL && n < 7; a = va_arg(ap, const char *))
    args[n++] = a;
  va_end(ap);
  result_t r = run(args[0], args[1], args[2], args[3], args[4], args[5],
                   args[6], NULL);
  expect(&r, 0, NULL, NULL);
  cJSON *j = json_of(&r);
  size_t count = (size_t)cJSON_GetArraySize(j);
  cJSON_Delete(j);
  result_free(&r);
  return count;
}

static void test_list_filters_by_state_type_age_and_stuck(void **state) {
  (void)state;
  assert_int_equal(list_count(NULL), 4);
  assert_int_equal(list_count("--state", "completed", NULL), 1);
  assert_int_equal(list_count("--state", "compensation_failed", NULL), 1);
  assert_int_equal(list_count("--type", "order", NULL), 4);
  assert_int_equal(list_count("--type", "refund", NULL), 0);
  assert_int_equal(list_count("--older-than", "1h", NULL), 2);
  assert_int_equal(list_count("--limit", "3", NULL), 3);
  /* Non-terminal without progress for an hour: only s-run. */
  result_t r = run("list", "--stuck", "1h", "--json", NULL);
  expect(&r, 0, NULL, NULL);
  cJSON *j = json_of(&r);
  assert_int_equal(cJSON_GetArraySize(j), 1);
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "saga_id")->valuestring,
      "s-run");
  cJSON_Delete(j);
  result_free(&r);
  r = run("list", "--stuck", "5m", NULL);
  expect(&r, 0, "SAGA", NULL);
  assert_non_null(strstr(r.out, "s-park"));
  assert_null(strstr(r.out, "s-new"));
  assert_null(strstr(r.out, "s-done"));
  result_free(&r);
  r = run("list", "--state", "stuck", NULL);
  expect(&r, 2, NULL, "unknown status \"stuck\"");
  result_free(&r);
  r = run("list", "--stuck", "soon", NULL);
  expect(&r, 2, NULL, "--stuck: \"soon\" is not a duration");
  result_free(&r);
  r = run("list", "--stuck", "90", NULL);
  expect(&r, 2, NULL, "--stuck: \"90\" has no unit: use ms, s, m, h or d");
  result_free(&r);
}

/* sagactl status --json of id says stuck (or not) and has a stuck_at time
 * (or null). */
static void expect_status_stuck(const char *id, int stuck, int has_time) {
  result_t r = run("status", id, "--json", NULL);
  expect(&r, 0, NULL, NULL);
  cJSON *j = json_of(&r);
  assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(j, "stuck")), stuck);
  assert_int_equal(cJSON_IsString(cJSON_GetObjectItem(j, "stuck_at")),
                   has_time);
  cJSON_Delete(j);
  result_free(&r);
}

/* --stuck step judges each saga by the stuck_after_ms of the step it waits
 * on (saga_index.stuck_at), as sagad's gauge and GET /sagas?stuck=true
 * do: s-new, 1 min on charge_payment (30 s), is stuck; s-run, 2 h on
 * reserve_inventory (3 h), is not, though --stuck 1h lists it. */
static void test_stuck_follows_the_threshold_of_the_step_waited_on(
    void **state) {
  (void)state;
  result_t r = run("list", "--stuck", "step", "--json", NULL);
  expect(&r, 0, NULL, NULL);
  cJSON *j = json_of(&r);
  char ids[128] = "";
  cJSON *e;
  cJSON_ArrayForEach(e, j) {
    if (ids[0])
      strcat(ids, ",");
    strcat(ids, cJSON_GetObjectItem(e, "saga_id")->valuestring);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(e, "stuck")));
  }
  assert_string_equal(ids, "s-park,s-new");
  cJSON_Delete(j);
  result_free(&r);
  expect_status_stuck("s-run", 0, 1);
  expect_status_stuck("s-done", 0, 0); /* terminal: never */
  r = run("status", "s-new", NULL);
  expect(&r, 0, "stuck:         yes, since ", NULL);
  result_free(&r);
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

/* ---- replay (last: it corrupts the index) ------------------------------ */

static void test_replay_agrees_then_reports_a_corrupted_index_row(
    void **state) {
  (void)state;
  result_t r = run("replay", "--all", "--definitions", defs_dir, NULL);
  expect(&r, 0, "replayed 4 sagas: 4 consistent, 0 mismatched", NULL);
  result_free(&r);
  r = run("replay", "--all", NULL);
  expect(&r, 2, NULL, "replay needs the saga definitions");
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

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_status_shows_a_saga_and_exits_1_for_an_unknown_one),
      cmocka_unit_test(test_list_filters_by_state_type_age_and_stuck),
      cmocka_unit_test(test_stuck_follows_the_threshold_of_the_step_waited_on),
      cmocka_unit_test(test_history_shows_a_timeline_with_durations),
      cmocka_unit_test(
          test_unreachable_postgres_exits_3_and_bad_input_exits_2),
      cmocka_unit_test(test_start_lands_a_start_saga_in_the_inbox),
      cmocka_unit_test(test_unreachable_kafka_exits_3_within_the_timeout),
      cmocka_unit_test(test_retry_of_a_parked_saga_sends_an_operator_action),
      cmocka_unit_test(test_replay_agrees_then_reports_a_corrupted_index_row),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
