/* Data flow between steps (core/dataflow.h): the default envelope, the
 * mappings of docs/definitions.md, what a compensation and the saga's
 * output carry, byte-for-byte determinism, and the load errors for a
 * mapping that names an unknown, a later or a same-group step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dataflow.h"
#include "mem.h"

/* JSON written with single quotes for readability; ' becomes ". */
static char *dq(const char *s) {
  char *r = strdup(s);
  assert_non_null(r);
  for (char *p = r; *p; p++)
    if (*p == '\'')
      *p = '"';
  return r;
}

static saga_def_t *load(const char *sq) {
  char *j = dq(sq);
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  int rc = saga_def_parse(j, strlen(j), "order.json", &def, &d);
  for (size_t i = 0; i < d.n; i++)
    fprintf(stderr, "diag: %s\n", d.items[i]);
  saga_diags_clear(&d);
  free(j);
  assert_int_equal(rc, SAGA_CORE_OK);
  return def;
}

/* Loading sq fails with exactly the message want among its diagnostics. */
static void expect_error(const char *sq, const char *want) {
  char *j = dq(sq);
  char *w = dq(want);
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  assert_int_equal(saga_def_parse(j, strlen(j), "order.json", &def, &d),
                   SAGA_CORE_EDEF);
  int found = 0;
  for (size_t i = 0; i < d.n; i++)
    found |= strcmp(d.items[i], w) == 0;
  if (!found) {
    for (size_t i = 0; i < d.n; i++)
      fprintf(stderr, "got:  %s\n", d.items[i]);
    fprintf(stderr, "want: %s\n", w);
  }
  assert_true(found);
  saga_diags_clear(&d);
  free(j);
  free(w);
}

#define RES                                                                    \
  "{'name':'reserve','topic':'inv','compensation':{'action':'release'}}"
#define PAY_MAPPED                                                             \
  "{'name':'charge','topic':'pay','kind':'pivot','compensation':"              \
  "{'action':'refund'},'input':{'amount':'/input/total','reservation':"        \
  "'/steps/reserve/output/id','first_line':'/input/lines/0/sku',"              \
  "'missing':'/steps/reserve/output/nope','slashed':'/input/a~1b'}}"
#define SHIP                                                                   \
  "{'name':'ship','topic':'ship','kind':'retriable','compensation':'none'}"

static const char *INPUT = "{'total':42,'lines':[{'sku':'a-1'}],'a/b':true}";

/* The command payload of step as a string (compared, then freed). */
static char *command(const saga_def_t *def, uint32_t step, const char *input,
                     const saga_flow_value_t *outs) {
  uint8_t *p = NULL;
  size_t n = 0;
  assert_int_equal(saga_flow_command(def, step, (const uint8_t *)input,
                                     strlen(input), outs, &p, &n),
                   0);
  char *s = saga__memdup(p, n);
  assert_non_null(s);
  free(p);
  return s;
}

static void expect_str(char *got, const char *want_sq) {
  char *w = dq(want_sq);
  assert_string_equal(got, w);
  free(w);
  free(got);
}

static void test_without_a_mapping_a_step_gets_the_envelope(void **state) {
  (void)state;
  saga_def_t *def = load("{'name':'o','version':1,'steps':[" RES
                         ",{'name':'charge','topic':'pay','kind':'pivot',"
                         "'compensation':'none'}," SHIP "]}");
  char *in = dq(INPUT);
  saga_flow_value_t outs[3] = {
      {(const uint8_t *)"{\"id\":\"r-7\"}", 12, true},
      {(const uint8_t *)"{\"charge_id\":\"c-9\"}", 19, true},
      {NULL, 0, false}};
  /* the first step: the input and no step yet */
  expect_str(command(def, 0, in, outs),
             "{'input':{'total':42,'lines':[{'sku':'a-1'}],'a/b':true},"
             "'steps':{}}");
  /* the last: every step before it, in definition order */
  expect_str(command(def, 2, in, outs),
             "{'input':{'total':42,'lines':[{'sku':'a-1'}],'a/b':true},"
             "'steps':{'reserve':{'output':{'id':'r-7'}},"
             "'charge':{'output':{'charge_id':'c-9'}}}}");
  free(in);
  saga_def_free(def);
}

static void test_a_mapping_picks_fields_of_the_input_and_earlier_outputs(
    void **state) {
  (void)state;
  saga_def_t *def =
      load("{'name':'o','version':1,'steps':[" RES "," PAY_MAPPED "]}");
  char *in = dq(INPUT);
  saga_flow_value_t outs[2] = {
      {(const uint8_t *)"{\"id\":\"r-7\"}", 12, true}, {NULL, 0, false}};
  expect_str(command(def, 1, in, outs),
             "{'amount':42,'reservation':'r-7','first_line':'a-1',"
             "'missing':null,'slashed':true}");
  /* the same inputs give the same bytes (a resent command) */
  char *a = command(def, 1, in, outs);
  char *b = command(def, 1, in, outs);
  assert_string_equal(a, b);
  free(a);
  free(b);
  free(in);
  saga_def_free(def);
}

static void test_a_compensation_carries_the_command_and_the_output(
    void **state) {
  (void)state;
  saga_def_t *def =
      load("{'name':'o','version':1,'steps':[" RES "," PAY_MAPPED "]}");
  char *in = dq(INPUT);
  saga_flow_value_t outs[2] = {
      {(const uint8_t *)"{\"id\":\"r-7\"}", 12, true},
      {(const uint8_t *)"{\"charge_id\":\"c-9\"}", 19, true}};
  uint8_t *p = NULL;
  size_t n = 0;
  assert_int_equal(saga_flow_compensation(def, 1, (const uint8_t *)in,
                                          strlen(in), outs, &p, &n),
                   0);
  char *want = dq("{'command':{'amount':42,'reservation':'r-7','first_line':"
                  "'a-1','missing':null,'slashed':true},"
                  "'output':{'charge_id':'c-9'}}");
  assert_int_equal(n, strlen(want));
  assert_memory_equal(p, want, n);
  free(p);
  free(want);
  /* a step whose DO never succeeded (its outcome unknown): output null */
  outs[1].done = false;
  assert_int_equal(saga_flow_compensation(def, 1, (const uint8_t *)in,
                                          strlen(in), outs, &p, &n),
                   0);
  assert_non_null(memmem(p, n, "\"output\":null", 13));
  free(p);
  free(in);
  saga_def_free(def);
}

static void test_the_saga_output_and_bytes_that_are_not_json(void **state) {
  (void)state;
  saga_def_t *def = load("{'name':'o','version':1,'steps':[" RES ","
                         "{'name':'charge','topic':'pay','kind':'pivot',"
                         "'compensation':'none'}],"
                         "'output':{'charge':'/steps/charge/output',"
                         "'reservation':'/steps/reserve/output/id'}}");
  saga_flow_value_t outs[2] = {
      {(const uint8_t *)"{\"id\":\"r-7\"}", 12, true},
      {(const uint8_t *)"\x01\x02\xff", 3, true}};
  uint8_t *p = NULL;
  size_t n = 0;
  assert_int_equal(
      saga_flow_saga_output(def, (const uint8_t *)"", 0, outs, &p, &n), 0);
  char *want = dq("{'charge':{'$base64':'AQL/'},'reservation':'r-7'}");
  assert_int_equal(n, strlen(want));
  assert_memory_equal(p, want, n);
  free(p);
  free(want);
  saga_def_free(def);
  /* no "output": nothing */
  def = load("{'name':'o','version':1,'steps':[" RES "]}");
  assert_int_equal(
      saga_flow_saga_output(def, (const uint8_t *)"{}", 2, outs, &p, &n), 0);
  assert_null(p);
  assert_int_equal(n, 0);
  saga_def_free(def);
}

/* A value with a \u0000 in a string is carried as bytes: cJSON would cut
 * the string at the NUL, and the step would see another value than the
 * one stored, without a sign. */
static void test_a_nul_in_a_string_is_carried_as_bytes(void **state) {
  (void)state;
  saga_def_t *def = load("{'name':'o','version':1,'steps':[" RES "]}");
  const char *in = "{\"a\":\"x\\u0000y\"}";
  saga_flow_value_t outs[1] = {{NULL, 0, false}};
  char *got = command(def, 0, in, outs);
  /* base64 of the 16 input bytes */
  expect_str(got, "{'input':{'$base64':'eyJhIjoieFx1MDAwMHkifQ=='},"
                  "'steps':{}}");
  saga_def_free(def);
}

/* Without a mapping, a command whose values are already what cJSON
 * prints is written without parsing them (dataflow.c): its bytes must be
 * those of the cJSON path, which a compensation's "command" member still
 * takes, for every kind of value, canonical or not. */
static void test_the_direct_envelope_is_byte_for_byte_the_cjson_one(
    void **state) {
  (void)state;
  saga_def_t *def = load("{'name':'o','version':1,'steps':[" RES ","
                         "{'name':'charge','topic':'pay','compensation':"
                         "{'action':'refund'}}]}");
  char deep[260];
  memset(deep, '[', 100);
  memset(deep + 100, ']', 100);
  deep[200] = '\0';
  const char *const values[] = {
      "{\"order\":\"s1\",\"amount\":4200}", "{}", "[]", "[1,-2,0,\"x\"]",
      "\"str\"", "true", "false", "null", "123456789", "-123456789",
      "1234567890", "2147483648", "-2147483649", "99999999999999999999",
      "-0", "01", "1.5", "1e3", "1E3", " {\"a\":1}", "{\"a\":1} ",
      /* 63 and 64 characters: cJSON reads at most 63 */
      "123456789012345678901234567890123456789012345678901234567890123",
      "1234567890123456789012345678901234567890123456789012345678901234",
      "{\"a\" : 1}", "[1, 2]", "\"\\u00e9\"", "\"a\\/b\"", "\"tab\\there\"",
      "\"q\\\"q\\\\b\\b\\f\\n\\r\"", "\"a\x01z\"", "\"caf\xc3\xa9\"",
      "\"\x7f\xff\"", "abc", "\x01\x02\xff", "{\"a\":1,\"a\":2}", "[1,]",
      "{\"a\":}", "nul", "truex", "{\"x\":[{\"y\":{\"z\":[true,false,null]}}]}",
      "\"unterminated", "{\"k\":\"v\"", "[\"\\", deep, ""};
  size_t nvalues = sizeof values / sizeof values[0];
  for (size_t i = 0; i < nvalues; i++)
    for (size_t j = 0; j < nvalues; j++)
      for (int done = 0; done < 2; done++) {
        const uint8_t *in = (const uint8_t *)values[i];
        size_t in_len = strlen(values[i]);
        saga_flow_value_t outs[2] = {
            {(const uint8_t *)values[j], strlen(values[j]), done != 0},
            {NULL, 0, false}};
        uint8_t *cmd = NULL, *comp = NULL;
        size_t cmd_len = 0, comp_len = 0;
        assert_int_equal(
            saga_flow_command(def, 1, in, in_len, outs, &cmd, &cmd_len), 0);
        assert_int_equal(saga_flow_compensation(def, 1, in, in_len, outs,
                                                &comp, &comp_len),
                         0);
        /* {"command":<the cJSON path's bytes>,"output":null} */
        static const char head[] = "{\"command\":", tail[] = ",\"output\":null}";
        if (comp_len != sizeof head - 1 + cmd_len + sizeof tail - 1 ||
            memcmp(comp + sizeof head - 1, cmd, cmd_len) != 0)
          fail_msg("input %zu, output %zu (done %d): the command is\n%.*s\n"
                   "the cJSON path gives\n%.*s",
                   i, j, done, (int)cmd_len, (const char *)cmd,
                   (int)comp_len, (const char *)comp);
        free(cmd);
        free(comp);
      }
  /* strings scanned a word at a time: each special byte at every offset */
  const char *const specials[] = {"\\n", "\\/", "\x01", "\x1f", "\xc3\xa9",
                                  "\x7f", "\\\"", "\\u0041", "\xff\xfe",
                                  " ", "\"", "\\"};
  for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++)
    for (size_t at = 0; at < 20; at++) {
      char in[64];
      snprintf(in, sizeof in, "[\"%.*s%s%.*s\"]", (int)at,
               "aaaaaaaaaaaaaaaaaaaa", specials[k], 12,
               "bbbbbbbbbbbbbbbbbbbb");
      saga_flow_value_t outs[2] = {{NULL, 0, false}, {NULL, 0, false}};
      uint8_t *cmd = NULL, *comp = NULL;
      size_t cmd_len = 0, comp_len = 0;
      assert_int_equal(saga_flow_command(def, 1, (const uint8_t *)in,
                                         strlen(in), outs, &cmd, &cmd_len),
                       0);
      assert_int_equal(saga_flow_compensation(def, 1, (const uint8_t *)in,
                                              strlen(in), outs, &comp,
                                              &comp_len),
                       0);
      if (comp_len != 11 + cmd_len + 15 || memcmp(comp + 11, cmd, cmd_len))
        fail_msg("input %s: the command is\n%.*s\nthe cJSON path gives\n%.*s",
                 in, (int)cmd_len, (const char *)cmd, (int)comp_len,
                 (const char *)comp);
      free(cmd);
      free(comp);
    }
  saga_def_free(def);
}

/* Numbers are passed on as they were written: cJSON reads them into a
 * double, which changed an id past 2^53, dropped digits and turned 1e400
 * into null, in every command built through a mapping or from an input
 * with a blank in it. */
static void test_numbers_are_passed_on_as_written(void **state) {
  (void)state;
  saga_def_t *def = load(
      "{'name':'o','version':1,'steps':[" RES ",{'name':'charge','topic':"
      "'pay','kind':'pivot','compensation':'none','input':{'id':'/input/id',"
      "'big':'/input/big','frac':'/input/frac','huge':'/input/huge',"
      "'out':'/steps/reserve/output/n'}}],'output':{'id':'/input/id'}}");
  const char *in = "{\"id\": 9007199254740993, \"big\": "
                   "123456789012345678901234567890, \"frac\": 1.50, "
                   "\"huge\": 1e400}";
  saga_flow_value_t outs[2] = {
      {(const uint8_t *)"{\"n\": -0.000000000000000000001}", 31, true},
      {NULL, 0, false}};
  expect_str(command(def, 1, in, outs),
             "{'id':9007199254740993,'big':123456789012345678901234567890,"
             "'frac':1.50,'huge':1e400,'out':-0.000000000000000000001}");
  /* the envelope, on its cJSON path (the blanks) and on its direct one */
  expect_str(command(def, 0, in, outs),
             "{'input':{'id':9007199254740993,'big':"
             "123456789012345678901234567890,'frac':1.50,'huge':1e400},"
             "'steps':{}}");
  expect_str(command(def, 0, "[9007199254740993,1.50,1e400,-0]", outs),
             "{'input':[9007199254740993,1.50,1e400,-0],'steps':{}}");
  uint8_t *o = NULL;
  size_t n = 0;
  assert_int_equal(saga_flow_saga_output(def, (const uint8_t *)in,
                                         strlen(in), outs, &o, &n),
                   0);
  char *got = saga__memdup(o, n);
  free(o);
  expect_str(got, "{'id':9007199254740993}");
  saga_def_free(def);
}

/* An array index is "0" or digits without a leading zero, as RFC 6901
 * writes it: 4294967296 named element 0 (cut to an int), and "+1", " 1"
 * and "-0" were read as numbers. A key longer than 255 bytes named
 * nothing. */
static void test_pointers_follow_rfc_6901_indexes_and_keys_of_any_length(
    void **state) {
  (void)state;
  char key[301];
  memset(key, 'k', 300);
  key[300] = '\0';
  char sq[1200];
  snprintf(sq, sizeof sq,
           "{'name':'o','version':1,'steps':[{'name':'a','topic':'t',"
           "'kind':'pivot','compensation':'none','input':{"
           "'wrap':'/input/a/4294967296','plus':'/input/a/+1',"
           "'space':'/input/a/ 1','neg':'/input/a/-0','one':'/input/a/1',"
           "'long':'/input/%s'}}]}",
           key);
  saga_def_t *def = load(sq);
  char in[600];
  snprintf(in, sizeof in, "{\"a\":[\"first\",\"second\"],\"%s\":42}",
           key);
  saga_flow_value_t outs[1] = {{NULL, 0, false}};
  expect_str(command(def, 0, in, outs),
             "{'wrap':null,'plus':null,'space':null,'neg':null,"
             "'one':'second','long':42}");
  saga_def_free(def);
}

static void test_a_mapping_naming_a_step_not_yet_done_is_a_load_error(
    void **state) {
  (void)state;
  expect_error("{'name':'o','version':1,'steps':[{'name':'reserve','topic':"
               "'inv','compensation':'none','input':{'x':'/steps/nosuch/"
               "output'}}]}",
               "order.json: steps[0].input.x: names the step 'nosuch', "
               "which the definition does not have");
  expect_error("{'name':'o','version':1,'steps':[{'name':'reserve','topic':"
               "'inv','compensation':'none','input':{'x':'/steps/charge/"
               "output/id'}},{'name':'charge','topic':'pay','kind':'pivot',"
               "'compensation':'none'}]}",
               "order.json: steps[0].input.x: names 'charge', a later step: "
               "it has not replied when this step is sent");
  expect_error("{'name':'o','version':1,'steps':["
               "{'name':'a','topic':'t','group':'g','compensation':'none'},"
               "{'name':'b','topic':'t','group':'g','compensation':'none',"
               "'input':{'x':'/steps/a/output'}}]}",
               "order.json: steps[1].input.x: names 'a', a step of the same "
               "parallel group 'g': it has not replied when this step is "
               "sent");
  expect_error("{'name':'o','version':1,'steps':[" RES "],'output':{'x':"
               "'/steps/reserve/input'}}",
               "order.json: output.x: must continue '/steps/reserve/output': "
               "the output is all that is recorded of a step");
  expect_error("{'name':'o','version':1,'steps':[" RES "],'output':{'x':"
               "'input/total'}}",
               "order.json: output.x: must be a JSON Pointer starting with "
               "'/input' or '/steps/<step>/output', got 'input/total'");
  expect_error("{'name':'o','version':1,'steps':[" RES "],'output':[]}",
               "order.json: output: must be an object of fields to JSON "
               "Pointers, e.g. {'order': '/input/order'}, got an array");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_without_a_mapping_a_step_gets_the_envelope),
      cmocka_unit_test(
          test_a_mapping_picks_fields_of_the_input_and_earlier_outputs),
      cmocka_unit_test(test_a_compensation_carries_the_command_and_the_output),
      cmocka_unit_test(test_the_saga_output_and_bytes_that_are_not_json),
      cmocka_unit_test(test_a_nul_in_a_string_is_carried_as_bytes),
      cmocka_unit_test(test_numbers_are_passed_on_as_written),
      cmocka_unit_test(
          test_pointers_follow_rfc_6901_indexes_and_keys_of_any_length),
      cmocka_unit_test(
          test_the_direct_envelope_is_byte_for_byte_the_cjson_one),
      cmocka_unit_test(
          test_a_mapping_naming_a_step_not_yet_done_is_a_load_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
