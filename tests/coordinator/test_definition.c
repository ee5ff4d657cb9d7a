/* Definition loading: every validation error names the file, the JSON path
 * and what was expected; versions live side by side; a directory with bad
 * files loads the good ones and reports every bad one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <cJSON.h>

#include "definition.h"

/* JSON written with single quotes for readability; ' becomes ". The len
 * bytes of s may hold NUL; the copy is NUL-terminated too. */
static char *dq_n(const char *s, size_t len) {
  char *r = malloc(len + 1);
  assert_non_null(r);
  memcpy(r, s, len);
  r[len] = '\0';
  for (size_t i = 0; i < len; i++)
    if (r[i] == '\'')
      r[i] = '"';
  return r;
}

static char *dq(const char *s) { return dq_n(s, strlen(s)); }

static int parse_n(const char *sq, size_t len, saga_def_t **def,
                   saga_diags_t *d) {
  char *j = dq_n(sq, len);
  int rc = saga_def_parse(j, len, "order.saga.json", def, d);
  free(j);
  return rc;
}

static int parse(const char *sq, saga_def_t **def, saga_diags_t *d) {
  return parse_n(sq, strlen(sq), def, d);
}

/* Parsing the len bytes of sq fails and one of the messages is exactly
 * want. */
static void expect_error_n(const char *sq, size_t len, const char *want) {
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  int rc = parse_n(sq, len, &def, &d);
  assert_int_equal(rc, SAGA_CORE_EDEF);
  assert_null(def);
  int found = 0;
  for (size_t i = 0; i < d.n; i++)
    if (strcmp(d.items[i], want) == 0)
      found = 1;
  if (!found) {
    for (size_t i = 0; i < d.n; i++)
      fprintf(stderr, "got: %s\n", d.items[i]);
    fprintf(stderr, "want: %s\n", want);
  }
  assert_true(found);
  saga_diags_clear(&d);
}

/* Parsing sq fails and one of the messages is exactly want. */
static void expect_error(const char *sq, const char *want) {
  expect_error_n(sq, strlen(sq), want);
}

/* A string literal with its NUL bytes, without the terminating one. */
#define LIT(s) (s), sizeof(s) - 1

#define HEAD "{'name':'order','version':1,'steps':["
#define S_RES                                                                 \
  "{'name':'reserve','topic':'inventory','compensation':{'action':"          \
  "'release'}}"
#define S_PAY                                                                 \
  "{'name':'charge','topic':'payment','kind':'pivot','compensation':"        \
  "{'action':'refund'}}"
#define S_SHIP "{'name':'ship','topic':'shipping','kind':'retriable'}"
#define ORDER HEAD S_RES "," S_PAY "," S_SHIP "]}"

static void test_valid_definition_loads_with_defaults(void **state) {
  (void)state;
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  assert_int_equal(parse(ORDER, &def, &d), SAGA_CORE_OK);
  assert_int_equal(d.n, 0);
  assert_string_equal(def->name, "order");
  assert_int_equal(def->version, 1);
  assert_int_equal(def->nsteps, 3);
  assert_int_equal(def->pivot, 1);
  const saga_step_def_t *r = &def->steps[0];
  assert_string_equal(r->action, "reserve");
  assert_string_equal(r->comp_topic, "inventory");
  assert_string_equal(r->comp_action, "release");
  assert_int_equal(r->timeout_ms, 30000);
  assert_int_equal(r->comp_timeout_ms, 30000);
  assert_int_equal(r->retry.max_attempts, 3);
  assert_int_equal(r->comp_retry.max_attempts, 10);
  assert_int_equal(def->steps[2].retry.max_attempts, 0);
  assert_null(def->steps[2].comp_topic);
  assert_int_equal(def->steps[2].kind, SAGA_STEP_RETRIABLE);
  assert_int_equal(saga_def_step_index(def, "ship"), 2);
  assert_int_equal(saga_def_step_index(def, "nope"), -1);
  saga_def_free(def);
}

static void test_defaults_object_applies_to_every_step(void **state) {
  (void)state;
  saga_def_t *def = NULL;
  assert_int_equal(
      parse("{'name':'o','version':2,'defaults':{'timeout_ms':500,"
            "'stuck_after_ms':9000,'retry':{'max_attempts':5,"
            "'initial_backoff_ms':10,'multiplier':3,'max_backoff_ms':100,"
            "'jitter':0},'compensation_retry':{'max_attempts':0}},'steps':["
            "{'name':'a','topic':'t','compensation':'none'},"
            "{'name':'b','topic':'t','compensation':null,'timeout_ms':700,"
            "'retry':{'max_attempts':2}}]}",
            &def, NULL),
      SAGA_CORE_OK);
  assert_int_equal(def->steps[0].timeout_ms, 500);
  assert_int_equal(def->steps[0].stuck_after_ms, 9000);
  assert_int_equal(def->steps[0].retry.max_attempts, 5);
  assert_int_equal(def->steps[0].retry.initial_backoff_ms, 10);
  assert_true(def->steps[0].retry.multiplier == 3.0);
  assert_int_equal(def->steps[1].timeout_ms, 700);
  assert_int_equal(def->steps[1].retry.max_attempts, 2);
  assert_int_equal(def->steps[1].retry.max_backoff_ms, 100);
  assert_null(def->steps[1].comp_topic);
  assert_int_equal(def->pivot, -1);
  saga_def_free(def);
}

static void test_parallel_group_blocks_are_found(void **state) {
  (void)state;
  saga_def_t *def = NULL;
  assert_int_equal(
      parse(HEAD "{'name':'a','topic':'t','compensation':'none'},"
                 "{'name':'b','topic':'t','group':'g','compensation':'none'},"
                 "{'name':'c','topic':'t','group':'g','compensation':'none'},"
                 "{'name':'d','topic':'t','compensation':'none'}]}",
            &def, NULL),
      SAGA_CORE_OK);
  assert_int_equal(saga_def_block_start(def, 0), 0);
  assert_int_equal(saga_def_block_len(def, 0), 1);
  assert_int_equal(saga_def_block_start(def, 2), 1);
  assert_int_equal(saga_def_block_len(def, 1), 2);
  assert_int_equal(saga_def_block_start(def, 3), 3);
  saga_def_free(def);
}

static void test_invalid_json_names_line_and_column(void **state) {
  (void)state;
  expect_error("{'name':'order',\n 'version': }",
               "order.saga.json: invalid JSON at line 2, column 13");
}

static void test_document_must_be_an_object(void **state) {
  (void)state;
  expect_error("[1]",
               "order.saga.json: the document must be an object, got an array");
}

static void test_missing_name_version_steps_are_each_reported(void **state) {
  (void)state;
  saga_diags_t d = {0};
  saga_def_t *def = NULL;
  assert_int_equal(parse("{}", &def, &d), SAGA_CORE_EDEF);
  assert_int_equal(d.n, 3);
  assert_string_equal(d.items[0], "order.saga.json: name: is required");
  assert_string_equal(d.items[1], "order.saga.json: version: is required");
  assert_string_equal(d.items[2], "order.saga.json: steps: is required");
  saga_diags_clear(&d);
}

static void test_bad_saga_name_is_refused(void **state) {
  (void)state;
  expect_error("{'name':'a b','version':1,'steps':[" S_RES "]}",
               "order.saga.json: name: must be 1 to 64 characters of A-Z "
               "a-z 0-9 _ . -, got \"a b\"");
  expect_error("{'name':7,'version':1,'steps':[" S_RES "]}",
               "order.saga.json: name: must be a string, got 7");
}

static void test_version_out_of_range_is_refused(void **state) {
  (void)state;
  expect_error("{'name':'o','version':0,'steps':[" S_RES "]}",
               "order.saga.json: version: must be between 1 and 2147483647, "
               "got 0");
  expect_error("{'name':'o','version':'1','steps':[" S_RES "]}",
               "order.saga.json: version: must be an integer between 1 and "
               "2147483647, got \"1\"");
  expect_error("{'name':'o','version':1.5,'steps':[" S_RES "]}",
               "order.saga.json: version: must be an integer between 1 and "
               "2147483647, got 1.5");
}

static void test_unknown_key_is_refused_with_the_expected_keys(void **state) {
  (void)state;
  expect_error(HEAD "{'name':'a','topic':'t','compensation':'none',"
                    "'timout_ms':5}]}",
               "order.saga.json: steps[0].timout_ms: unknown key, expected "
               "one of name, topic, action, kind, timeout_ms, retry, group, "
               "compensation, stuck_after_ms, description, input");
  expect_error("{'name':'o','version':1,'stepz':[]}",
               "order.saga.json: stepz: unknown key, expected one of "
               "$schema, name, version, description, defaults, steps, output");
}

static void test_steps_must_be_a_non_empty_bounded_array(void **state) {
  (void)state;
  expect_error("{'name':'o','version':1,'steps':[]}",
               "order.saga.json: steps: must be an array of 1 to 32 steps, "
               "got 0 steps");
  expect_error("{'name':'o','version':1,'steps':{}}",
               "order.saga.json: steps: must be an array of 1 to 32 steps, "
               "got an object");
  char buf[8192] = "{'name':'o','version':1,'steps':[";
  for (int i = 0; i < 33; i++) {
    char s[96];
    snprintf(s, sizeof s, "%s{'name':'s%d','topic':'t','compensation':'none'}",
             i ? "," : "", i);
    strcat(buf, s);
  }
  strcat(buf, "]}");
  expect_error(buf, "order.saga.json: steps: must be an array of 1 to 32 "
                    "steps, got 33 steps");
}

static void test_step_must_be_an_object(void **state) {
  (void)state;
  expect_error(HEAD "'x']}",
               "order.saga.json: steps[0]: must be an object, got \"x\"");
}

static void test_step_name_and_topic_are_required(void **state) {
  (void)state;
  expect_error(HEAD "{'compensation':'none'}]}",
               "order.saga.json: steps[0].name: is required");
  expect_error(HEAD "{'name':'a','compensation':'none'}]}",
               "order.saga.json: steps[0].topic: is required");
  expect_error(HEAD "{'name':'a','topic':'bad topic','compensation':'none'}]}",
               "order.saga.json: steps[0].topic: must be 1 to 249 characters "
               "of A-Z a-z 0-9 _ . -, got \"bad topic\"");
  /* the right characters, and a name Kafka refuses all the same */
  expect_error(HEAD "{'name':'a','topic':'..','compensation':'none'}]}",
               "order.saga.json: steps[0].topic: must be a Kafka topic name, "
               "not \".\" or \"..\", got \"..\"");
  expect_error(HEAD "{'name':'a','topic':'t','compensation':"
                    "{'topic':'.','action':'undo'}}]}",
               "order.saga.json: steps[0].compensation.topic: must be a Kafka "
               "topic name, not \".\" or \"..\", got \".\"");
}

static void test_timeout_out_of_range_matches_the_documented_message(
    void **state) {
  (void)state;
  expect_error(HEAD S_RES "," S_PAY ","
                    "{'name':'ship','topic':'s','kind':'retriable',"
                    "'timeout_ms':0}]}",
               "order.saga.json: steps[2].timeout_ms: must be between 10 and "
               "2592000000, got 0");
}

static void test_stuck_threshold_out_of_range_is_refused(void **state) {
  (void)state;
  expect_error(HEAD "{'name':'a','topic':'t','compensation':'none',"
                    "'stuck_after_ms':-1}]}",
               "order.saga.json: steps[0].stuck_after_ms: must be between 10 "
               "and 2592000000, got -1");
}

/* Long waits: every deadline, backoff and stuck threshold may be 30 days
 * (2592000000 ms, beyond INT32_MAX) and loads exactly. */
static void test_waits_of_thirty_days_load(void **state) {
  (void)state;
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  assert_int_equal(
      parse(HEAD "{'name':'approve','topic':'t','timeout_ms':2592000000,"
                 "'stuck_after_ms':2592000000,"
                 "'retry':{'initial_backoff_ms':2592000000,"
                 "'max_backoff_ms':2592000000},"
                 "'compensation':{'action':'undo','timeout_ms':2592000000,"
                 "'retry':{'initial_backoff_ms':2592000000,"
                 "'max_backoff_ms':2592000000}}}]}",
            &def, &d),
      SAGA_CORE_OK);
  assert_int_equal(d.n, 0);
  const saga_step_def_t *s = &def->steps[0];
  assert_true(s->timeout_ms == 2592000000u);
  assert_true(s->stuck_after_ms == 2592000000u);
  assert_true(s->comp_timeout_ms == 2592000000u);
  assert_true(s->retry.initial_backoff_ms == 2592000000u);
  assert_true(s->retry.max_backoff_ms == 2592000000u);
  assert_true(s->comp_retry.initial_backoff_ms == 2592000000u);
  assert_true(s->comp_retry.max_backoff_ms == 2592000000u);
  saga_def_free(def);
}

/* 31 days is refused, each place by its own file and JSON path. */
static void test_waits_of_thirty_one_days_are_refused(void **state) {
  (void)state;
  const char *j =
      HEAD "{'name':'approve','topic':'t','timeout_ms':2678400000,"
           "'stuck_after_ms':2678400000,"
           "'retry':{'initial_backoff_ms':2678400000},"
           "'compensation':{'action':'undo','timeout_ms':2678400000,"
           "'retry':{'max_backoff_ms':2678400000}}}]}";
  expect_error(j, "order.saga.json: steps[0].timeout_ms: must be between 10 "
                  "and 2592000000, got 2678400000");
  expect_error(j, "order.saga.json: steps[0].stuck_after_ms: must be "
                  "between 10 and 2592000000, got 2678400000");
  expect_error(j, "order.saga.json: steps[0].retry.initial_backoff_ms: must "
                  "be between 0 and 2592000000, got 2678400000");
  expect_error(j, "order.saga.json: steps[0].compensation.timeout_ms: must "
                  "be between 10 and 2592000000, got 2678400000");
  expect_error(j, "order.saga.json: steps[0].compensation.retry."
                  "max_backoff_ms: must be between 0 and 2592000000, got "
                  "2678400000");
  expect_error("{'name':'order','version':1,'defaults':{'timeout_ms':"
               "2678400000},'steps':[{'name':'a','topic':'t',"
               "'compensation':'none'}]}",
               "order.saga.json: defaults.timeout_ms: must be between 10 "
               "and 2592000000, got 2678400000");
}

static void test_unknown_kind_is_refused(void **state) {
  (void)state;
  expect_error(HEAD "{'name':'a','topic':'t','kind':'maybe'}]}",
               "order.saga.json: steps[0].kind: must be one of "
               "\"compensatable\", \"pivot\", \"retriable\", got \"maybe\"");
}

static void test_retry_policy_fields_are_each_checked(void **state) {
  (void)state;
  const char *pre = HEAD "{'name':'a','topic':'t','compensation':'none',";
  char buf[512];
  snprintf(buf, sizeof buf, "%s'retry':{'max_attempts':1001}}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry.max_attempts: must be "
                    "between 1 and 1000 for a compensatable step, got 1001");
  snprintf(buf, sizeof buf, "%s'retry':{'max_attempts':0}}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry.max_attempts: must be "
                    "between 1 and 1000 for a compensatable step, got 0");
  snprintf(buf, sizeof buf, "%s'retry':{'multiplier':0.5}}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry.multiplier: must be "
                    "between 1 and 10, got 0.5");
  snprintf(buf, sizeof buf, "%s'retry':{'jitter':1.5}}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry.jitter: must be "
                    "between 0 and 1, got 1.5");
  snprintf(buf, sizeof buf, "%s'retry':{'initial_backoff_ms':-5}}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry.initial_backoff_ms: "
                    "must be between 0 and 2592000000, got -5");
  snprintf(buf, sizeof buf,
           "%s'retry':{'initial_backoff_ms':500,'max_backoff_ms':100}}]}",
           pre);
  expect_error(buf, "order.saga.json: steps[0].retry.max_backoff_ms: must be "
                    "at least initial_backoff_ms (500), got 100");
  /* one of the two inherited (the built-in 200 and 10000 here): the
   * error is at the key the file wrote, and says the other was inherited */
  snprintf(buf, sizeof buf, "%s'retry':{'initial_backoff_ms':20000}}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry.initial_backoff_ms: "
                    "must be at most max_backoff_ms (10000, inherited: set "
                    "it here too), got 20000");
  snprintf(buf, sizeof buf, "%s'retry':{'max_backoff_ms':50}}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry.max_backoff_ms: must be "
                    "at least initial_backoff_ms (200, inherited), got 50");
  snprintf(buf, sizeof buf, "%s'retry':{'tries':3}}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry.tries: unknown key, "
                    "expected one of max_attempts, initial_backoff_ms, "
                    "multiplier, max_backoff_ms, jitter");
  snprintf(buf, sizeof buf, "%s'retry':3}]}", pre);
  expect_error(buf, "order.saga.json: steps[0].retry: must be an object, "
                    "got 3");
}

static void test_defaults_are_validated(void **state) {
  (void)state;
  expect_error("{'name':'o','version':1,'defaults':{'timeout_ms':5,"
               "'bogus':1},'steps':[" S_RES "]}",
               "order.saga.json: defaults.timeout_ms: must be between 10 and "
               "2592000000, got 5");
  expect_error("{'name':'o','version':1,'defaults':{'bogus':1},'steps':["
               S_RES "]}",
               "order.saga.json: defaults.bogus: unknown key, expected one of "
               "timeout_ms, stuck_after_ms, retry, compensation_retry");
  expect_error("{'name':'o','version':1,'defaults':{'compensation_retry':"
               "{'jitter':-1}},'steps':[" S_RES "]}",
               "order.saga.json: defaults.compensation_retry.jitter: must be "
               "between 0 and 1, got -1");
}

static void test_compensatable_step_needs_a_compensation(void **state) {
  (void)state;
  expect_error(HEAD "{'name':'a','topic':'t'}]}",
               "order.saga.json: steps[0].compensation: is required for a "
               "compensatable step (write \"none\" if it has nothing to "
               "undo)");
}

static void test_compensation_shape_is_checked(void **state) {
  (void)state;
  expect_error(HEAD "{'name':'a','topic':'t','compensation':5}]}",
               "order.saga.json: steps[0].compensation: must be an object "
               "with topic and action, or \"none\", got 5");
  expect_error(HEAD "{'name':'a','topic':'t','compensation':{}}]}",
               "order.saga.json: steps[0].compensation.action: is required");
  expect_error(HEAD "{'name':'a','topic':'t','compensation':{'action':'x',"
                    "'timeout_ms':1}}]}",
               "order.saga.json: steps[0].compensation.timeout_ms: must be "
               "between 10 and 2592000000, got 1");
  expect_error(HEAD "{'name':'a','topic':'t','compensation':{'action':'x',"
                    "'when':1}}]}",
               "order.saga.json: steps[0].compensation.when: unknown key, "
               "expected one of topic, action, timeout_ms, retry");
}

static void test_retriable_step_is_never_compensated(void **state) {
  (void)state;
  expect_error(HEAD S_PAY ",{'name':'s','topic':'t','kind':'retriable',"
                    "'compensation':{'action':'undo'}}]}",
               "order.saga.json: steps[1].compensation: must be \"none\": a "
               "retriable step is never compensated");
  expect_error(HEAD S_PAY ",{'name':'s','topic':'t','kind':'retriable',"
                    "'retry':{'max_attempts':3}}]}",
               "order.saga.json: steps[1].retry.max_attempts: must be 0 "
               "(unlimited) for a retriable step, which is retried until it "
               "succeeds, got 3");
}

static void test_step_kinds_must_follow_the_pivot_rules(void **state) {
  (void)state;
  expect_error(HEAD S_PAY "," S_RES "]}",
               "order.saga.json: steps[1].kind: must be \"retriable\" after "
               "the pivot step \"charge\", got \"compensatable\"");
  expect_error(HEAD S_SHIP "]}",
               "order.saga.json: steps[0].kind: a retriable step must come "
               "after the pivot step, got \"retriable\" with no pivot before "
               "it");
  expect_error(HEAD S_PAY ",{'name':'p2','topic':'t','kind':'pivot'}]}",
               "order.saga.json: steps[1].kind: only one pivot step is "
               "allowed, steps[0] is already the pivot");
}

static void test_step_names_must_be_unique(void **state) {
  (void)state;
  expect_error(HEAD S_RES "," S_RES "]}",
               "order.saga.json: steps[1].name: must be unique, \"reserve\" "
               "is also steps[0].name");
}

static void test_groups_must_be_consecutive_and_exclude_the_pivot(
    void **state) {
  (void)state;
  expect_error(HEAD "{'name':'a','topic':'t','group':'g','compensation':'none'},"
                    "{'name':'b','topic':'t','compensation':'none'},"
                    "{'name':'c','topic':'t','group':'g','compensation':'none'}"
                    "]}",
               "order.saga.json: steps[2].group: steps of group \"g\" must be "
               "consecutive, steps[0] is in it too");
  expect_error(HEAD "{'name':'p','topic':'t','kind':'pivot','group':'g'}]}",
               "order.saga.json: steps[0].group: must be absent: the pivot "
               "step runs alone, not in a parallel group");
}

static void test_every_error_of_a_document_is_reported(void **state) {
  (void)state;
  saga_diags_t d = {0};
  saga_def_t *def = NULL;
  assert_int_equal(parse(HEAD "{'name':'a','topic':'t','timeout_ms':0},"
                              "{'name':'b','kind':'x','compensation':'none'}"
                              "]}",
                         &def, &d),
                   SAGA_CORE_EDEF);
  assert_true(d.n >= 4);
  saga_diags_clear(&d);
}

/* ---- the text itself: UTF-8, strict JSON, one document ---- */

static void test_invalid_utf8_is_refused_with_line_and_column(void **state) {
  (void)state;
  /* the bytes of the report: passed the loader, failed in PostgreSQL */
  expect_error("{'name':'order','version':1,'description':'a\xff\xfe',"
               "'steps':[" S_RES "]}",
               "order.saga.json: invalid UTF-8 at line 1, column 45");
  /* overlong; columns count characters, not bytes */
  expect_error("{'name':'order',\n 'description':'gr\xc3\xb6\xc3\x9f"
               "e \xc0\x80',\n 'version':1,'steps':[" S_RES "]}",
               "order.saga.json: invalid UTF-8 at line 2, column 23");
  /* a UTF-16 surrogate, past U+10FFFF, a cut sequence */
  expect_error("{'name':'order','version':1,'description':'\xed\xa0\x80',"
               "'steps':[" S_RES "]}",
               "order.saga.json: invalid UTF-8 at line 1, column 44");
  expect_error("{'name':'order','version':1,'description':'\xf4\x90\x80\x80',"
               "'steps':[" S_RES "]}",
               "order.saga.json: invalid UTF-8 at line 1, column 44");
  expect_error("{'name':'order','version':1,'description':'\xe2\x82',"
               "'steps':[" S_RES "]}",
               "order.saga.json: invalid UTF-8 at line 1, column 44");
  /* in a key */
  expect_error("{'na\xffme':'order'}",
               "order.saga.json: invalid UTF-8 at line 1, column 5");
  /* and at the very end */
  expect_error(ORDER "\xc3",
               "order.saga.json: invalid UTF-8 at line 1, column 254");
}

static void test_valid_utf8_loads_and_is_kept(void **state) {
  (void)state;
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  /* with a byte order mark, which RFC 8259 lets a parser ignore */
  assert_int_equal(
      parse("\xef\xbb\xbf{'name':'order','version':1,'description':"
            "'Bestellung \xe2\x80\x93 gr\xc3\xb6\xc3\x9f"
            "e \xf0\x9f\x93\xa6 \\u00e9 \\ud83d\\ude00','steps':[" S_RES "]}",
            &def, &d),
      SAGA_CORE_OK);
  assert_int_equal(d.n, 0);
  assert_non_null(strstr(def->body, "Bestellung \xe2\x80\x93 gr\xc3\xb6\xc3"
                                    "\x9f" "e \xf0\x9f\x93\xa6 \xc3\xa9 "
                                    "\xf0\x9f\x98\x80"));
  saga_def_free(def);
}

static void test_nul_in_a_string_is_refused(void **state) {
  (void)state;
  /* cJSON would cut the string there: the saga recorded as "o" */
  expect_error("{'name':'o\\u0000x','version':1,'steps':[" S_RES "]}",
               "order.saga.json: NUL character (\\u0000) in a string at line "
               "1, column 11");
  expect_error(HEAD "{'name':'a\\u0000','topic':'t','compensation':'none'}]}",
               "order.saga.json: NUL character (\\u0000) in a string at line "
               "1, column 48");
  expect_error(HEAD "{'name':'a','topic':'t\\u0000x','compensation':'none'}]}",
               "order.saga.json: NUL character (\\u0000) in a string at line "
               "1, column 60");
  /* a key cut to "name" would be a second name */
  expect_error("{'name':'o','name\\u0000x':'p','version':1,'steps':[" S_RES
               "]}",
               "order.saga.json: NUL character (\\u0000) in a string at line "
               "1, column 18");
  /* a raw NUL byte is a control character, which JSON wants escaped */
  expect_error_n(LIT("{'name':'o\0x','version':1,'steps':[" S_RES "]}"),
                 "order.saga.json: invalid JSON at line 1, column 11: "
                 "unescaped control character in a string");
}

static void test_duplicate_keys_are_refused_with_the_path(void **state) {
  (void)state;
  expect_error("{'name':'o','version':1,'name':'p','steps':[" S_RES "]}",
               "order.saga.json: name: duplicate key, each key may appear "
               "only once in an object");
  expect_error(HEAD "{'name':'a','topic':'t','compensation':{'action':'x',"
                    "'topic':'t','action':'y'}}]}",
               "order.saga.json: steps[0].compensation.action: duplicate "
               "key, each key may appear only once in an object");
  expect_error(HEAD S_RES ",{'name':'b','topic':'t','compensation':'none',"
                    "'input':{'x':'/input/a','x':'/input/b'}}]}",
               "order.saga.json: steps[1].input.x: duplicate key, each key "
               "may appear only once in an object");
  /* in the saga's output mapping */
  expect_error("{'name':'o','version':1,'description':'d','steps':[" S_RES
               "],'output':{'a':'/input','b':'/input','a':'/input/c'}}",
               "order.saga.json: output.a: duplicate key, each key may "
               "appear only once in an object");
}

static void test_text_after_the_document_is_refused(void **state) {
  (void)state;
  expect_error(ORDER " xyz",
               "order.saga.json: unexpected text after the JSON document at "
               "line 1, column 255");
  expect_error(ORDER "\n{}",
               "order.saga.json: unexpected text after the JSON document at "
               "line 2, column 1");
  expect_error_n(LIT(ORDER "\0x"),
                 "order.saga.json: unexpected text after the JSON document "
                 "at line 1, column 254");
  saga_def_t *def = NULL;
  assert_int_equal(parse(ORDER "\n \t\r\n", &def, NULL), SAGA_CORE_OK);
  saga_def_free(def);
}

static void test_json_syntax_is_strict(void **state) {
  (void)state;
  /* a raw tab in a string, a form feed between members */
  expect_error("{'name':'order','version':1,'description':'a\tb','steps':["
               S_RES "]}",
               "order.saga.json: invalid JSON at line 1, column 45: "
               "unescaped control character in a string");
  expect_error("{'name':'order',\x0c'version':1,'steps':[" S_RES "]}",
               "order.saga.json: invalid JSON at line 1, column 17");
  /* numbers: no leading zero, a digit after the point */
  expect_error("{'name':'order','version':01,'steps':[" S_RES "]}",
               "order.saga.json: invalid JSON at line 1, column 28");
  expect_error("{'name':'order','version':1.,'steps':[" S_RES "]}",
               "order.saga.json: invalid JSON at line 1, column 29");
  expect_error("", "order.saga.json: invalid JSON at line 1, column 1");
  /* a string left open is shown where it opens */
  expect_error("{'name':'order',\n 'description':'abc}",
               "order.saga.json: invalid JSON at line 2, column 16: "
               "unterminated string");
  /* half a UTF-16 pair, which cJSON refuses without saying why */
  expect_error("{'name':'o','version':1,'description':'\\ud83d x',"
               "'steps':[" S_RES "]}",
               "order.saga.json: invalid JSON at line 1, column 40: "
               "unpaired UTF-16 surrogate");
  expect_error("{'name':'o','version':1,'description':'\\ude00',"
               "'steps':[" S_RES "]}",
               "order.saga.json: invalid JSON at line 1, column 40: "
               "unpaired UTF-16 surrogate");
}

static void test_deep_nesting_says_too_deep(void **state) {
  (void)state;
  /* the report's document: 1000 arrays in the root object */
  char *buf = malloc(4096);
  assert_non_null(buf);
  strcpy(buf, "{'name':'o','version':1,'description':");
  size_t n = strlen(buf);
  memset(buf + n, '[', 1000);
  memset(buf + n + 1000, ']', 1000);
  strcpy(buf + n + 2000, "}");
  expect_error(buf, "order.saga.json: nesting too deep at line 1, column "
                    "1038, at most 1000 levels of objects and arrays");
  /* 999 arrays in it: 1000 levels, parsed */
  memset(buf + n + 999, ']', 999);
  strcpy(buf + n + 999 + 999, "}");
  expect_error(buf, "order.saga.json: description: must be a string, got an "
                    "array");
  free(buf);
}

static void test_description_and_schema_must_be_strings(void **state) {
  (void)state;
  expect_error("{'name':'o','version':1,'description':5,'steps':[" S_RES "]}",
               "order.saga.json: description: must be a string, got 5");
  expect_error("{'$schema':5,'name':'o','version':1,'steps':[" S_RES "]}",
               "order.saga.json: $schema: must be a string, got 5");
  expect_error(HEAD "{'name':'a','topic':'t','compensation':'none',"
                    "'description':true}]}",
               "order.saga.json: steps[0].description: must be a string, got "
               "true");
  saga_def_t *def = NULL;
  assert_int_equal(parse("{'$schema':'../schemas/saga-definition.schema.json',"
                         "'name':'o','version':1,'description':'',"
                         "'steps':[" S_RES "]}",
                         &def, NULL),
                   SAGA_CORE_OK);
  saga_def_free(def);
}

static void test_json_pointer_escapes_are_checked(void **state) {
  (void)state;
  expect_error(HEAD "{'name':'a','topic':'t','compensation':'none',"
                    "'input':{'x':'/input/~2'}}]}",
               "order.saga.json: steps[0].input.x: must be a valid JSON "
               "Pointer (RFC 6901), where ~ is followed by 0 or 1, got "
               "\"/input/~2\"");
  expect_error(HEAD "{'name':'a','topic':'t','compensation':'none'}],"
                    "'output':{'y':'/steps/a/output/b~'}}",
               "order.saga.json: output.y: must be a valid JSON Pointer (RFC "
               "6901), where ~ is followed by 0 or 1, got "
               "\"/steps/a/output/b~\"");
  saga_def_t *def = NULL;
  assert_int_equal(parse(HEAD "{'name':'a','topic':'t','compensation':'none',"
                              "'input':{'x':'/input/~0a~1b'}}]}",
                         &def, NULL),
                   SAGA_CORE_OK);
  assert_string_equal(def->steps[0].input_map->entries[0].rest, "/~0a~1b");
  saga_def_free(def);
}

/* A message is one line of valid UTF-8 whatever the document holds. */
static void test_messages_quote_values_safely(void **state) {
  (void)state;
  expect_error("{'name':'a\\nb','version':1,'steps':[" S_RES "]}",
               "order.saga.json: name: must be 1 to 64 characters of A-Z "
               "a-z 0-9 _ . -, got \"a\\nb\"");
  /* 'a' and 40 e-acute: cut after 29 of them, not inside the 30th */
  char name[512] = "{'name':'a";
  for (int i = 0; i < 40; i++)
    strcat(name, "\xc3\xa9");
  strcat(name, "','version':1,'steps':[" S_RES "]}");
  char want[256] = "order.saga.json: name: must be 1 to 64 characters of A-Z "
                   "a-z 0-9 _ . -, got \"a";
  for (int i = 0; i < 29; i++)
    strcat(want, "\xc3\xa9");
  strcat(want, "\"");
  expect_error(name, want);
}

static void write_file(const char *dir, const char *name, const char *sq) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  char *j = dq(sq);
  fputs(j, f);
  free(j);
  fclose(f);
}

static void test_registry_keeps_versions_side_by_side(void **state) {
  (void)state;
  saga_registry_t *reg = saga_registry_new();
  saga_def_t *v1 = NULL;
  saga_def_t *v2 = NULL;
  saga_def_t *v1b = NULL;
  saga_diags_t d = {0};
  assert_int_equal(parse(ORDER, &v1, NULL), SAGA_CORE_OK);
  assert_int_equal(
      parse("{'name':'order','version':2,'steps':[" S_RES "]}", &v2, NULL),
      SAGA_CORE_OK);
  assert_int_equal(parse(ORDER, &v1b, NULL), SAGA_CORE_OK);
  assert_int_equal(saga_registry_add(reg, v2, &d), SAGA_CORE_OK);
  assert_int_equal(saga_registry_add(reg, v1, &d), SAGA_CORE_OK);
  assert_int_equal(saga_registry_add(reg, v1b, &d), SAGA_CORE_EDUP);
  assert_int_equal(d.n, 1);
  assert_string_equal(d.items[0],
                      "order.saga.json: version: definition \"order\" "
                      "version 1 is already loaded from order.saga.json");
  saga_def_free(v1b);
  assert_ptr_equal(saga_registry_find(reg, "order", 1), v1);
  assert_ptr_equal(saga_registry_find(reg, "order", 2), v2);
  assert_ptr_equal(saga_registry_find(reg, "order", 0), v2);
  assert_null(saga_registry_find(reg, "order", 3));
  assert_null(saga_registry_find(reg, "other", 0));
  assert_int_equal(saga_registry_count(reg), 2);
  assert_ptr_equal(saga_registry_at(reg, 0), v2); /* in the order added */
  assert_ptr_equal(saga_registry_at(reg, 1), v1);
  assert_null(saga_registry_at(reg, 2));
  assert_null(saga_registry_at(NULL, 0));
  saga_diags_clear(&d);
  saga_registry_free(reg);
}

static void test_directory_load_reports_every_bad_file_and_keeps_good(
    void **state) {
  (void)state;
  char dir[] = "/tmp/saga-defs-XXXXXX";
  assert_non_null(mkdtemp(dir));
  write_file(dir, "a.json", ORDER);
  write_file(dir, "b.json", "{'name':'order','version':1,'steps':[" S_RES
                            "]}");
  write_file(dir, "c.json", "{'a': }");
  write_file(dir, "d.json", HEAD "{'name':'x','topic':'t','timeout_ms':0,"
                                 "'compensation':'none'}]}");
  write_file(dir, "e.json", "{'name':'order','version':2,'steps':[" S_RES
                            "]}");
  write_file(dir, "notes.txt", "ignored");
  saga_registry_t *reg = saga_registry_new();
  saga_diags_t d = {0};
  size_t loaded = 0;
  assert_int_equal(saga_registry_load_dir(reg, dir, &d, &loaded),
                   SAGA_CORE_EDEF);
  assert_int_equal(loaded, 2);
  assert_int_equal(d.n, 3);
  assert_string_equal(d.items[0], "b.json: version: definition \"order\" "
                                  "version 1 is already loaded from a.json");
  assert_string_equal(d.items[1],
                      "c.json: invalid JSON at line 1, column 7");
  assert_string_equal(d.items[2], "d.json: steps[0].timeout_ms: must be "
                                  "between 10 and 2592000000, got 0");
  assert_non_null(saga_registry_find(reg, "order", 2));
  saga_diags_clear(&d);
  saga_registry_free(reg);
  const char *names[] = {"a.json", "b.json", "c.json",
                         "d.json", "e.json", "notes.txt"};
  for (size_t i = 0; i < 6; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    unlink(p);
  }
  rmdir(dir);
}

/* What --check-config reads: the file is named, and a file name that is
 * not UTF-8 (it is recorded in the store with the definition) is refused
 * before its content is read. */
static void test_directory_load_names_files_with_bad_text(void **state) {
  (void)state;
  char dir[] = "/tmp/saga-defs-XXXXXX";
  assert_non_null(mkdtemp(dir));
  write_file(dir, "f.json", "{'name':'order','version':1,'description':"
                            "'\xff\xfe','steps':[" S_RES "]}");
  write_file(dir, "g.json", ORDER " xyz");
  write_file(dir, "h\xff.json", ORDER);
  write_file(dir, "i.json", ORDER);
  saga_registry_t *reg = saga_registry_new();
  saga_diags_t d = {0};
  size_t loaded = 0;
  assert_int_equal(saga_registry_load_dir(reg, dir, &d, &loaded),
                   SAGA_CORE_EDEF);
  assert_int_equal(loaded, 1);
  for (size_t i = 0; i < d.n; i++)
    fprintf(stderr, "%s\n", d.items[i]);
  assert_int_equal(d.n, 3);
  assert_string_equal(d.items[0],
                      "f.json: invalid UTF-8 at line 1, column 44");
  assert_string_equal(d.items[1], "g.json: unexpected text after the JSON "
                                  "document at line 1, column 255");
  char want[256];
  snprintf(want, sizeof want,
           "%s: file name \"h\\xff.json\" is not valid UTF-8", dir);
  assert_string_equal(d.items[2], want);
  saga_diags_clear(&d);
  saga_registry_free(reg);
  const char *names[] = {"f.json", "g.json", "h\xff.json", "i.json"};
  for (size_t i = 0; i < 4; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    unlink(p);
  }
  rmdir(dir);
}

static void test_missing_directory_is_an_io_error(void **state) {
  (void)state;
  saga_registry_t *reg = saga_registry_new();
  saga_diags_t d = {0};
  assert_int_equal(
      saga_registry_load_dir(reg, "/nonexistent/saga-defs", &d, NULL),
      SAGA_CORE_EIO);
  assert_int_equal(d.n, 1);
  assert_string_equal(d.items[0], "/nonexistent/saga-defs: could not open "
                                  "definitions directory: No such file or "
                                  "directory");
  saga_diags_clear(&d);
  saga_registry_free(reg);
}

static void test_example_definitions_load(void **state) {
  (void)state;
  saga_registry_t *reg = saga_registry_new();
  saga_diags_t d = {0};
  size_t loaded = 0;
  int rc = saga_registry_load_dir(reg, SAGA_EXAMPLE_DEFS, &d, &loaded);
  for (size_t i = 0; i < d.n; i++)
    fprintf(stderr, "%s\n", d.items[i]);
  assert_int_equal(rc, SAGA_CORE_OK);
  assert_true(loaded >= 1);
  const saga_def_t *o = saga_registry_find(reg, "order", 0);
  assert_non_null(o);
  assert_int_equal(o->pivot, 1);
  saga_diags_clear(&d);
  saga_registry_free(reg);
}

static void test_error_map_is_complete(void **state) {
  (void)state;
#define CHECK(name, val, text)                                                 \
  assert_string_equal(saga_core_err_name(val), #name);                         \
  assert_string_equal(saga_core_strerror(val), text);
  SAGA_CORE_ERR_MAP(CHECK)
#undef CHECK
  assert_string_equal(saga_core_err_name(-999), "UNKNOWN");
  assert_string_equal(saga_core_strerror(-999), "unknown error");
}

/* The body the store records: members sorted by key at every depth, no
 * whitespace; its hash changes with any edit but layout and order. */
static void test_canonical_body_ignores_layout_and_member_order(
    void **state) {
  (void)state;
  static const char *const same[] = {
      ORDER,
      "{'version':1,'steps':[" S_RES "," S_PAY "," S_SHIP "],'name':'order'}",
      "{ 'name' : 'order' ,\n\t'version' : 1 , 'steps' : [ {'topic':"
      "'inventory','name':'reserve','compensation':{'action':'release'}}, "
      S_PAY ", " S_SHIP " ] }\n",
  };
  saga_def_t *def[3] = {NULL};
  for (int i = 0; i < 3; i++)
    assert_int_equal(parse(same[i], &def[i], NULL), SAGA_CORE_OK);
  char *want = dq("{'name':'order','steps':[{'compensation':{'action':"
                  "'release'},'name':'reserve','topic':'inventory'},"
                  "{'compensation':{'action':'refund'},'kind':'pivot',"
                  "'name':'charge','topic':'payment'},{'kind':'retriable',"
                  "'name':'ship','topic':'shipping'}],'version':1}");
  assert_string_equal(def[0]->body, want);
  assert_int_equal(def[0]->body_len, strlen(want));
  free(want);
  assert_int_equal(strlen(def[0]->sha256), 64);
  for (int i = 1; i < 3; i++) {
    assert_string_equal(def[i]->body, def[0]->body);
    assert_string_equal(def[i]->sha256, def[0]->sha256);
  }
  /* any other edit is another body: a value, the order of the steps */
  saga_def_t *other = NULL;
  assert_int_equal(parse(HEAD S_RES "," S_PAY ","
                              "{'name':'ship','topic':'shipping2','kind':"
                              "'retriable'}]}",
                         &other, NULL),
                   SAGA_CORE_OK);
  assert_string_not_equal(other->sha256, def[0]->sha256);
  saga_def_free(other);
  for (int i = 0; i < 3; i++)
    saga_def_free(def[i]);
}

/* ---- the JSON path of a message ---- */

/* A key that is empty or holds '.' or '[' is quoted in brackets, so a
 * path is never empty and never reads as another one. */
static void test_paths_quote_empty_and_dotted_keys(void **state) {
  (void)state;
  expect_error("{'name':'a','version':1,'':1,'steps':[" S_RES "]}",
               "order.saga.json: [\"\"]: unknown key, expected one of "
               "$schema, name, version, description, defaults, steps, output");
  expect_error("{'name':'a','version':1,'a.b':1,'steps':[" S_RES "]}",
               "order.saga.json: [\"a.b\"]: unknown key, expected one of "
               "$schema, name, version, description, defaults, steps, output");
  expect_error("{'name':'a','version':1,'':1,'':2,'steps':[" S_RES "]}",
               "order.saga.json: [\"\"]: duplicate key, each key may appear "
               "only once in an object");
  expect_error(HEAD "{'name':'s','topic':'t','compensation':'none',"
                    "'input':{'a.b':'/x'}}]}",
               "order.saga.json: steps[0].input[\"a.b\"]: must start with "
               "\"/input\" or \"/steps/<step>/output\", got \"/x\"");
  expect_error(HEAD "{'name':'s','topic':'t','compensation':'none',"
                    "'input':{'x[0]':'/input/~2'}}]}",
               "order.saga.json: steps[0].input[\"x[0]\"]: must be a valid "
               "JSON Pointer (RFC 6901), where ~ is followed by 0 or 1, got "
               "\"/input/~2\"");
  expect_error(HEAD "{'name':'s','topic':'t','compensation':'none',"
                    "'input':{'':'/input','':'/input'}}]}",
               "order.saga.json: steps[0].input[\"\"]: duplicate key, each "
               "key may appear only once in an object");
  /* a quote or backslash in a quoted key is escaped as in JSON */
  expect_error("{'name':'a','version':1,'a.\\\\\\'':1,'steps':[" S_RES "]}",
               "order.saga.json: [\"a.\\\\\\\"\"]: unknown key, expected one "
               "of $schema, name, version, description, defaults, steps, "
               "output");
  /* other keys as before */
  expect_error(HEAD "{'name':'s','topic':'t','compensation':'none',"
                    "'input':{'a b':'/x'}}]}",
               "order.saga.json: steps[0].input.a b: must start with "
               "\"/input\" or \"/steps/<step>/output\", got \"/x\"");
}

/* Every problem is reported: the saga's output is checked whatever the
 * steps are; only which steps its pointers name waits for valid steps. */
static void test_output_is_checked_when_the_steps_are_not_valid(
    void **state) {
  (void)state;
  saga_diags_t d = {0};
  saga_def_t *def = NULL;
  assert_int_equal(parse("{'name':'a','version':1,'steps':5,'output':7}",
                         &def, &d),
                   SAGA_CORE_EDEF);
  assert_int_equal(d.n, 2);
  assert_string_equal(d.items[0], "order.saga.json: steps: must be an array "
                                  "of 1 to 32 steps, got 5");
  assert_string_equal(d.items[1],
                      "order.saga.json: output: must be an object of fields "
                      "to JSON Pointers, e.g. {\"order\": \"/input/order\"}, "
                      "got 7");
  saga_diags_clear(&d);
  expect_error("{'name':'a','version':1,'output':{'x':'/input/~2'}}",
               "order.saga.json: output.x: must be a valid JSON Pointer (RFC "
               "6901), where ~ is followed by 0 or 1, got \"/input/~2\"");
  /* a step it names may be one of the steps that are missing */
  assert_int_equal(parse("{'name':'a','version':1,'output':{'x':"
                         "'/steps/nope/output'}}",
                         &def, &d),
                   SAGA_CORE_EDEF);
  assert_int_equal(d.n, 1);
  assert_string_equal(d.items[0], "order.saga.json: steps: is required");
  saga_diags_clear(&d);
}

static void test_mapping_naming_its_own_step_says_so(void **state) {
  (void)state;
  expect_error(HEAD "{'name':'s','topic':'t','compensation':'none',"
                    "'input':{'x':'/steps/s/output'}}]}",
               "order.saga.json: steps[0].input.x: names \"s\", the step "
               "itself: it has not replied when its command is sent");
  expect_error(HEAD "{'name':'a','topic':'t','group':'g','compensation':"
                    "'none','input':{'x':'/steps/a/output/id'}},"
                    "{'name':'b','topic':'t','group':'g','compensation':"
                    "'none'}]}",
               "order.saga.json: steps[0].input.x: names \"a\", the step "
               "itself: it has not replied when its command is sent");
  expect_error(HEAD "{'name':'a','topic':'t','compensation':'none','input':"
                    "{'x':'/steps/b/output'}},{'name':'b','topic':'t',"
                    "'compensation':'none'}]}",
               "order.saga.json: steps[0].input.x: names \"b\", a later "
               "step: it has not replied when this step is sent");
}

/* One message per place, with the range of the step's kind. */
static void test_max_attempts_messages_follow_the_kind(void **state) {
  (void)state;
  expect_error(HEAD "{'name':'a','topic':'t','compensation':'none',"
                    "'retry':{'max_attempts':-1}}]}",
               "order.saga.json: steps[0].retry.max_attempts: must be "
               "between 1 and 1000 for a compensatable step, got -1");
  expect_error(HEAD "{'name':'a','topic':'t','kind':'pivot',"
                    "'retry':{'max_attempts':1.5}}]}",
               "order.saga.json: steps[0].retry.max_attempts: must be an "
               "integer between 1 and 1000 for a pivot step, got 1.5");
  const char *j = HEAD S_PAY ",{'name':'s','topic':'t','kind':'retriable',"
                  "'retry':{'max_attempts':2000}}]}";
  expect_error(j, "order.saga.json: steps[1].retry.max_attempts: must be 0 "
                  "(unlimited) for a retriable step, which is retried until "
                  "it succeeds, got 2000");
  saga_diags_t d = {0};
  saga_def_t *def = NULL;
  assert_int_equal(parse(j, &def, &d), SAGA_CORE_EDEF);
  assert_int_equal(d.n, 1);
  saga_diags_clear(&d);
  expect_error(HEAD S_PAY ",{'name':'s','topic':'t','kind':'retriable',"
                    "'retry':{'max_attempts':'x'}}]}",
               "order.saga.json: steps[1].retry.max_attempts: must be 0 "
               "(unlimited) for a retriable step, which is retried until "
               "it succeeds, got \"x\"");
  /* unlimited compensations stay allowed */
  assert_int_equal(parse(HEAD "{'name':'a','topic':'t','compensation':"
                              "{'action':'u','retry':{'max_attempts':0}}}]}",
                         &def, NULL),
                   SAGA_CORE_OK);
  assert_int_equal(def->steps[0].comp_retry.max_attempts, 0);
  saga_def_free(def);
}

/* ---- the schema (schemas/saga-definition.schema.json) ---- */

#define SCHEMA_FILE SAGA_EXAMPLE_DEFS "/../../../schemas/saga-definition.schema.json"

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  char *b = malloc((size_t)n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = '\0';
  fclose(f);
  return b;
}

/* The default of field in the object schema s: its own properties first,
 * then what its "$ref" (#/$defs/...) points at. */
static double schema_default(const cJSON *root, const cJSON *s,
                             const char *field) {
  while (s != NULL) {
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(s, "properties"), field),
        "default");
    if (dv != NULL) {
      assert_true(cJSON_IsNumber(dv));
      return dv->valuedouble;
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (!cJSON_IsString(ref))
      break;
    assert_true(strncmp(ref->valuestring, "#/$defs/", 8) == 0);
    s = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "$defs"),
        ref->valuestring + 8);
  }
  return -1;
}

static void expect_schema_defaults(const cJSON *root, const cJSON *s,
                                   const saga_retry_policy_t *want,
                                   const char *where) {
  assert_non_null(s);
  fprintf(stderr, "%s\n", where);
  assert_true(schema_default(root, s, "initial_backoff_ms") ==
              want->initial_backoff_ms);
  assert_true(schema_default(root, s, "max_backoff_ms") ==
              want->max_backoff_ms);
  assert_true(schema_default(root, s, "multiplier") == want->multiplier);
  assert_true(schema_default(root, s, "jitter") == want->jitter);
  double ma = schema_default(root, s, "max_attempts");
  assert_true(ma < 0 || ma == want->max_attempts);
}

/* The defaults the schema shows editors are the loader's: the steps'
 * retry and the compensations' differ. */
static void test_schema_retry_defaults_are_the_loaders(void **state) {
  (void)state;
  saga_def_t *def = NULL;
  assert_int_equal(parse(ORDER, &def, NULL), SAGA_CORE_OK);
  const saga_retry_policy_t *step = &def->steps[0].retry;
  const saga_retry_policy_t *comp = &def->steps[0].comp_retry;
  char *text = read_all(SCHEMA_FILE);
  cJSON *root = cJSON_Parse(text);
  free(text);
  assert_non_null(root);
  const cJSON *defs = cJSON_GetObjectItemCaseSensitive(root, "$defs");
  const cJSON *dflt = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(
          cJSON_GetObjectItemCaseSensitive(root, "properties"), "defaults"),
      "properties");
#define PROP(obj, name)                                                       \
  cJSON_GetObjectItemCaseSensitive(                                           \
      cJSON_GetObjectItemCaseSensitive(                                       \
          cJSON_GetObjectItemCaseSensitive(defs, obj), "properties"),         \
      name)
  expect_schema_defaults(root, PROP("step", "retry"), step, "steps[].retry");
  expect_schema_defaults(root, cJSON_GetObjectItemCaseSensitive(dflt, "retry"),
                         step, "defaults.retry");
  expect_schema_defaults(root, PROP("compensation", "retry"), comp,
                         "steps[].compensation.retry");
  expect_schema_defaults(
      root, cJSON_GetObjectItemCaseSensitive(dflt, "compensation_retry"),
      comp, "defaults.compensation_retry");
#undef PROP
  cJSON_Delete(root);
  saga_def_free(def);
}

/* The schema takes what the loader takes, and refuses what it refuses,
 * for the retry limits and the pointers of a mapping. Checked with
 * Debian's python3-jsonschema (scripts/deps.sh installs it; skipped where
 * it is missing). */
static void test_schema_agrees_with_the_loader(void **state) {
  (void)state;
  if (system("/usr/bin/python3 -c 'from jsonschema import "
             "Draft202012Validator' "
             ">/dev/null 2>&1") != 0) {
    fprintf(stderr, "python3 with jsonschema not found: skipped\n");
    skip();
  }
#define ST(x) HEAD "{'name':'s','topic':'t'," x "}]}"
#define PV(x) HEAD S_PAY ",{'name':'s','topic':'t','kind':'retriable'," x "}]}"
#define IN(p) ST("'compensation':'none','input':{'x':'" p "'}")
  static const struct {
    const char *doc;
    bool ok;
  } cases[] = {
      {ST("'compensation':'none','retry':{'max_attempts':0}"), false},
      {ST("'kind':'pivot','retry':{'max_attempts':0}"), false},
      {ST("'kind':'compensatable','compensation':'none','retry':"
          "{'max_attempts':0}"),
       false},
      {ST("'compensation':'none','retry':{'max_attempts':1}"), true},
      {PV("'retry':{'max_attempts':0}"), true},
      {PV("'retry':{'max_attempts':1}"), false},
      {ST("'compensation':{'action':'u','retry':{'max_attempts':0}}"), true},
      {"{'name':'o','version':1,'defaults':{'compensation_retry':"
       "{'max_attempts':0}},'steps':[" S_RES "]}",
       true},
      {"{'name':'o','version':1,'defaults':{'retry':{'max_attempts':0}},"
       "'steps':[" S_RES "]}",
       false},
      {IN("/input/~2"), false},
      {IN("/input/a~"), false},
      {IN("/input/~0a~1b"), true},
      {IN("/input/a\\nb"), true},
      {IN("/input/\\n"), true},
      {IN("/input"), true},
      {IN("/input/"), true},
      {IN("/inputs"), false},
      {IN("input"), false},
      {HEAD S_RES "],'output':{'x':'/steps/reserve/output/a\\nb~1'}}", true},
      {HEAD S_RES "],'output':{'x':'/steps/reserve/output'}}", true},
      {HEAD S_RES "],'output':{'x':'/steps/reserve'}}", false},
      {HEAD S_RES "],'output':{'x':'/steps/reserve/output/~'}}", false},
  };
  size_t n = sizeof cases / sizeof cases[0];
  char dir[] = "/tmp/saga-schema-XXXXXX";
  assert_non_null(mkdtemp(dir));
  for (size_t i = 0; i < n; i++) {
    saga_def_t *def = NULL;
    char *j = dq(cases[i].doc);
    int rc = saga_def_parse(j, strlen(j), "case.json", &def, NULL);
    free(j);
    saga_def_free(def);
    if ((rc == SAGA_CORE_OK) != cases[i].ok)
      fprintf(stderr, "loader: case %zu: %s\n", i, cases[i].doc);
    assert_int_equal(rc == SAGA_CORE_OK, cases[i].ok);
    char name[32];
    snprintf(name, sizeof name, "c%02zu.json", i);
    write_file(dir, name, cases[i].doc);
  }
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c 'import json, sys\n"
           "from jsonschema import Draft202012Validator as V\n"
           "v = V(json.load(open(sys.argv[1])))\n"
           "for f in sys.argv[2:]:\n"
           "    print(\"ok\" if v.is_valid(json.load(open(f))) else "
           "\"refused\")' %s %s/c*.json %s/*.json",
           SCHEMA_FILE, dir, SAGA_EXAMPLE_DEFS);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char line[64];
  size_t i = 0;
  int wrong = 0;
  while (fgets(line, sizeof line, p) != NULL) {
    bool ok = strcmp(line, "ok\n") == 0;
    bool want = i < n ? cases[i].ok : true; /* then the examples */
    if (ok != want) {
      fprintf(stderr, "schema: %s: %s", i < n ? cases[i].doc : "example",
              line);
      wrong++;
    }
    i++;
  }
  assert_int_equal(pclose(p), 0);
  assert_true(i > n);
  assert_int_equal(wrong, 0);
  for (i = 0; i < n; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/c%02zu.json", dir, i);
    unlink(path);
  }
  rmdir(dir);
#undef ST
#undef PV
#undef IN
}

/* The canonical body is what the store records: a definition recorded
 * before keeps its SHA-256, and a large mapping comes out sorted. */
static void test_canonical_body_is_stable(void **state) {
  (void)state;
  char *text = read_all(SAGA_EXAMPLE_DEFS "/order.v1.json");
  saga_def_t *def = NULL;
  assert_int_equal(saga_def_parse(text, strlen(text), "order.v1.json", &def,
                                  NULL),
                   SAGA_CORE_OK);
  free(text);
  assert_string_equal(
      def->sha256,
      "3f8fe00e82544167ad9eacba7fd451b19785bee14dabcb393396bdd303c34b43");
  saga_def_free(def);
  /* 3000 fields written last first: k0000 .. k2999 in the body */
  enum { N = 3000 };
  size_t cap = 64 * N + 256;
  char *doc = malloc(cap);
  char *want = malloc(cap);
  assert_non_null(doc);
  assert_non_null(want);
  strcpy(doc, "{'steps':[{'topic':'t','name':'s','compensation':'none',"
              "'input':{");
  strcpy(want, "{'name':'o','steps':[{'compensation':'none','input':{");
  size_t dl = strlen(doc);
  size_t wl = strlen(want);
  for (int i = 0; i < N; i++) {
    dl += (size_t)snprintf(doc + dl, cap - dl, "%s'k%04d':'/input/%d'",
                           i ? "," : "", N - 1 - i, i);
    wl += (size_t)snprintf(want + wl, cap - wl, "%s'k%04d':'/input/%d'",
                           i ? "," : "", i, N - 1 - i);
  }
  snprintf(doc + dl, cap - dl, "}}],'version':1,'name':'o'}");
  snprintf(want + wl, cap - wl, "},'name':'s','topic':'t'}],'version':1}");
  assert_int_equal(parse(doc, &def, NULL), SAGA_CORE_OK);
  char *w = dq(want);
  assert_string_equal(def->body, w);
  free(w);
  saga_def_free(def);
  free(doc);
  free(want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_canonical_body_ignores_layout_and_member_order),
      cmocka_unit_test(test_valid_definition_loads_with_defaults),
      cmocka_unit_test(test_defaults_object_applies_to_every_step),
      cmocka_unit_test(test_parallel_group_blocks_are_found),
      cmocka_unit_test(test_invalid_json_names_line_and_column),
      cmocka_unit_test(test_document_must_be_an_object),
      cmocka_unit_test(test_missing_name_version_steps_are_each_reported),
      cmocka_unit_test(test_bad_saga_name_is_refused),
      cmocka_unit_test(test_version_out_of_range_is_refused),
      cmocka_unit_test(test_unknown_key_is_refused_with_the_expected_keys),
      cmocka_unit_test(test_steps_must_be_a_non_empty_bounded_array),
      cmocka_unit_test(test_step_must_be_an_object),
      cmocka_unit_test(test_step_name_and_topic_are_required),
      cmocka_unit_test(
          test_timeout_out_of_range_matches_the_documented_message),
      cmocka_unit_test(test_stuck_threshold_out_of_range_is_refused),
      cmocka_unit_test(test_waits_of_thirty_days_load),
      cmocka_unit_test(test_waits_of_thirty_one_days_are_refused),
      cmocka_unit_test(test_unknown_kind_is_refused),
      cmocka_unit_test(test_retry_policy_fields_are_each_checked),
      cmocka_unit_test(test_defaults_are_validated),
      cmocka_unit_test(test_compensatable_step_needs_a_compensation),
      cmocka_unit_test(test_compensation_shape_is_checked),
      cmocka_unit_test(test_retriable_step_is_never_compensated),
      cmocka_unit_test(test_step_kinds_must_follow_the_pivot_rules),
      cmocka_unit_test(test_step_names_must_be_unique),
      cmocka_unit_test(test_groups_must_be_consecutive_and_exclude_the_pivot),
      cmocka_unit_test(test_every_error_of_a_document_is_reported),
      cmocka_unit_test(test_registry_keeps_versions_side_by_side),
      cmocka_unit_test(
          test_directory_load_reports_every_bad_file_and_keeps_good),
      cmocka_unit_test(test_missing_directory_is_an_io_error),
      cmocka_unit_test(test_example_definitions_load),
      cmocka_unit_test(test_error_map_is_complete),
      cmocka_unit_test(test_invalid_utf8_is_refused_with_line_and_column),
      cmocka_unit_test(test_valid_utf8_loads_and_is_kept),
      cmocka_unit_test(test_nul_in_a_string_is_refused),
      cmocka_unit_test(test_duplicate_keys_are_refused_with_the_path),
      cmocka_unit_test(test_text_after_the_document_is_refused),
      cmocka_unit_test(test_json_syntax_is_strict),
      cmocka_unit_test(test_deep_nesting_says_too_deep),
      cmocka_unit_test(test_description_and_schema_must_be_strings),
      cmocka_unit_test(test_json_pointer_escapes_are_checked),
      cmocka_unit_test(test_messages_quote_values_safely),
      cmocka_unit_test(test_directory_load_names_files_with_bad_text),
      cmocka_unit_test(test_paths_quote_empty_and_dotted_keys),
      cmocka_unit_test(test_output_is_checked_when_the_steps_are_not_valid),
      cmocka_unit_test(test_mapping_naming_its_own_step_says_so),
      cmocka_unit_test(test_max_attempts_messages_follow_the_kind),
      cmocka_unit_test(test_schema_retry_defaults_are_the_loaders),
      cmocka_unit_test(test_schema_agrees_with_the_loader),
      cmocka_unit_test(test_canonical_body_is_stable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
