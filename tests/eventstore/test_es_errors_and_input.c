/* Unit tests of the event store that need no database: the error map,
 * UUID generation and the input checks a batch applies before anything
 * is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "saga/eventstore.h"

static void test_every_error_code_has_a_name_and_a_message(void **state) {
  (void)state;
  int n = 0;
#define CHECK_(name, value, msg)                                              \
  assert_string_equal(es_err_name(value), #name);                            \
  assert_string_equal(es_strerror(value), msg);                              \
  assert_true((value) <= 0);                                                 \
  n++;
  ES_ERRNO_MAP(CHECK_)
#undef CHECK_
  assert_int_equal(n, 19);
  assert_string_equal(es_err_name(-999), "UNKNOWN");
  assert_string_equal(es_strerror(-999), "unknown error");
  assert_true(es_err_is_retriable(ES_ERR_CONNECTION));
  assert_true(es_err_is_retriable(ES_ERR_BATCH_ABORTED));
  assert_false(es_err_is_retriable(ES_ERR_CONFLICT));
  assert_false(es_err_is_retriable(ES_ERR_INVALID));
}

static void test_generated_uuids_are_version_4_and_distinct(void **state) {
  (void)state;
  uint8_t a[16], b[16];
  char s[37];
  assert_int_equal(es_uuid_v4(a), 0);
  assert_int_equal(es_uuid_v4(b), 0);
  assert_memory_not_equal(a, b, 16);
  assert_int_equal(a[6] >> 4, 4);
  assert_int_equal(a[8] & 0xC0, 0x80);
  es_uuid_format(a, s);
  assert_int_equal(strlen(s), 36);
  assert_int_equal(s[14], '4');
  assert_int_equal(s[8], '-');
}

/* The Unix time in milliseconds a version-7 id carries. */
static uint64_t v7_ms(const uint8_t id[16]) {
  uint64_t ms = 0;
  for (int i = 0; i < 6; i++)
    ms = (ms << 8) | id[i];
  return ms;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_time_ordered_uuids_carry_the_time_and_sort_by_it(
    void **state) {
  (void)state;
  uint8_t a[16], b[16], c[16];
  uint64_t t0 = wall_ms();
  assert_int_equal(es_uuid_v7(a), 0);
  assert_int_equal(es_uuid_v7(b), 0);
  assert_memory_not_equal(a, b, 16);
  assert_int_equal(a[6] >> 4, 7);
  assert_int_equal(a[8] & 0xC0, 0x80);
  assert_true(v7_ms(a) >= t0 && v7_ms(a) <= wall_ms());
  char s[37];
  es_uuid_format(a, s);
  assert_int_equal(s[14], '7');
  /* drawn in a later millisecond: greater as bytes, which is how
   * PostgreSQL orders uuid values (and how the event id index grows) */
  struct timespec two_ms = {0, 2000000};
  nanosleep(&two_ms, NULL);
  assert_int_equal(es_uuid_v7(c), 0);
  assert_true(v7_ms(c) > v7_ms(a));
  assert_true(memcmp(a, c, 16) < 0 && memcmp(b, c, 16) < 0);
}

static void test_batch_add_fills_nil_ids_and_keeps_given_ones(void **state) {
  (void)state;
  es_batch_t *b = es_batch_new(NULL);
  es_event_t ev[2];
  memset(ev, 0, sizeof ev);
  ev[0].type = ev[1].type = "Created";
  memset(ev[1].id, 7, 16);
  assert_int_equal(es_batch_add(b, "order-1", ES_NO_STREAM, ev, 2), 0);
  static const uint8_t nil[16];
  assert_memory_not_equal(ev[0].id, nil, 16);
  /* a drawn id is time-ordered (es_uuid_v7), drawn just now */
  assert_int_equal(ev[0].id[6] >> 4, 7);
  assert_true(v7_ms(ev[0].id) + 60000 >= wall_ms());
  assert_memory_equal(es_batch_event_id(b, 0, 0), ev[0].id, 16);
  assert_memory_equal(es_batch_event_id(b, 0, 1), ev[1].id, 16);
  assert_null(es_batch_event_id(b, 0, 2));
  assert_int_equal(es_batch_add(b, "order-2", ES_ANY_VERSION, ev, 1), 1);
  assert_int_equal(es_batch_size(b), 2);
  es_batch_reset(b);
  assert_int_equal(es_batch_size(b), 0);
  es_batch_free(b);
  es_batch_free(NULL);
}

static void test_bad_input_is_refused_with_a_clear_code(void **state) {
  (void)state;
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.max_payload = 16;
  es_batch_t *b = es_batch_new(&o);
  char longid[ES_MAX_STREAM_ID + 2];
  memset(longid, 'a', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  es_event_t e;
  memset(&e, 0, sizeof e);
  e.type = "Created";
  assert_int_equal(es_batch_add(b, NULL, 0, &e, 1), ES_ERR_INVALID);
  assert_int_equal(es_batch_add(b, "", 0, &e, 1), ES_ERR_INVALID);
  assert_int_equal(es_batch_add(b, longid, 0, &e, 1), ES_ERR_TOO_LARGE);
  assert_int_equal(es_batch_add(b, "bad-\xc3\x28", 0, &e, 1), ES_ERR_BAD_UTF8);
  assert_int_equal(es_batch_add(b, "s-1", 0, NULL, 1), ES_ERR_INVALID);
  assert_int_equal(es_batch_add(b, "s-1", 0, &e, 0), ES_ERR_INVALID);
  assert_int_equal(es_batch_add(b, "s-1", -5, &e, 1), ES_ERR_INVALID);
  es_event_t x = e;
  x.type = NULL;
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_INVALID);
  x.type = "";
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_INVALID);
  x.type = longid;
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_TOO_LARGE);
  x = e;
  x.data = "0123456789abcdefX";
  x.data_len = 17;
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_TOO_LARGE);
  x.data = NULL;
  x.data_len = 3;
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_INVALID);
  x = e;
  x.correlation_id = "\xff";
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_BAD_UTF8);
  x = e;
  x.causation_id = "\xed\xa0\x80"; /* a UTF-16 surrogate */
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_BAD_UTF8);
  x = e;
  x.traceparent = "00-abc";
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_INVALID);
  x.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), 0);
  x = e;
  es_kv_t kv = {"tenant", "\xc0\xaf"}; /* overlong '/' */
  x.meta = &kv;
  x.n_meta = 1;
  assert_int_equal(es_batch_add(b, "s-1", 0, &x, 1), ES_ERR_BAD_UTF8);
  assert_int_equal(es_batch_add_statement(b, NULL, 0, NULL), ES_ERR_INVALID);
  assert_int_equal(es_batch_add_statement(b, "SELECT $1", 1, NULL),
                   ES_ERR_INVALID);
  /* only the one good append was added */
  assert_int_equal(es_batch_size(b), 1);
  es_batch_free(b);
}

static void test_a_metadata_key_given_twice_is_refused(void **state) {
  (void)state;
  es_batch_t *b = es_batch_new(NULL);
  es_event_t e;
  memset(&e, 0, sizeof e);
  e.type = "Created";
  /* jsonb keeps one value per key: the first would be lost unsaid */
  es_kv_t two[3] = {{"tenant", "a"}, {"user", "u"}, {"tenant", "b"}};
  e.meta = two;
  e.n_meta = 3;
  assert_int_equal(es_batch_add(b, "s-1", 0, &e, 1), ES_ERR_INVALID);
  /* many pairs (sorted, not compared pair by pair) */
  char keys[40][8];
  es_kv_t many[40];
  for (int i = 0; i < 40; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    many[i] = (es_kv_t){keys[i], "v"};
  }
  e.meta = many;
  e.n_meta = 40;
  assert_int_equal(es_batch_add(b, "s-1", 0, &e, 1), 0);
  many[39].key = "k7";
  assert_int_equal(es_batch_add(b, "s-1", 0, &e, 1), ES_ERR_INVALID);
  assert_int_equal(es_batch_size(b), 1);
  es_batch_free(b);
}

static void test_a_statement_that_would_end_the_batch_is_refused(
    void **state) {
  (void)state;
  es_batch_t *b = es_batch_new(NULL);
  /* a batch is one transaction: these would leave it open for good, end
   * it half way, or drop the library's prepared statements */
  static const char *const refused[] = {
      "BEGIN",
      "begin isolation level serializable",
      "  START TRANSACTION",
      "COMMIT",
      "end",
      "ROLLBACK",
      "-- say why\n rollback",
      "/* a /* nested */ comment */ABORT",
      "SAVEPOINT a",
      "RELEASE SAVEPOINT a",
      "PREPARE TRANSACTION 'x'",
      "prepare\ttransaction 'x'",
      "DEALLOCATE ALL",
      "DISCARD ALL",
      /* they would outlive the batch on the library's connection */
      "SET search_path TO other",
      "set role intruder",
      "SET SESSION AUTHORIZATION x",
      "SET localtime = 1", /* not LOCAL */
      "RESET ALL",
      "LISTEN x",
      "UNLISTEN *",
      /* after an empty statement, which PostgreSQL drops: a COMMIT */
      ";COMMIT",
      " ; ;\n-- x\nROLLBACK",
      "PREPARE /* x */ TRANSACTION 'x'",
  };
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
    assert_int_equal(es_batch_add_statement(b, refused[i], 0, NULL),
                     ES_ERR_INVALID);
  static const char *const allowed[] = {
      "SELECT 1",
      "-- a comment\nINSERT INTO t VALUES (1)",
      "DO $$BEGIN PERFORM 1; END$$",
      "PREPARE q AS SELECT 1",
      "WITH beginning AS (SELECT 1) SELECT * FROM beginning",
      "ENDLESS",
      /* for the batch's transaction alone */
      "SET LOCAL statement_timeout = '5s'",
      "set transaction isolation level serializable",
      "SET CONSTRAINTS ALL DEFERRED",
      "SETTLE",
      "SET /* for this batch */ LOCAL work_mem = '64MB'",
  };
  for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
    assert_int_equal(es_batch_add_statement(b, allowed[i], 0, NULL), (int)i);
  assert_int_equal(es_batch_add_statement(b, "", 0, NULL), ES_ERR_INVALID);
  assert_int_equal(es_batch_add_statement(b, "SELECT 1", -1, NULL),
                   ES_ERR_INVALID);
  es_batch_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_error_code_has_a_name_and_a_message),
      cmocka_unit_test(test_generated_uuids_are_version_4_and_distinct),
      cmocka_unit_test(test_time_ordered_uuids_carry_the_time_and_sort_by_it),
      cmocka_unit_test(test_batch_add_fills_nil_ids_and_keeps_given_ones),
      cmocka_unit_test(test_bad_input_is_refused_with_a_clear_code),
      cmocka_unit_test(test_a_metadata_key_given_twice_is_refused),
      cmocka_unit_test(test_a_statement_that_would_end_the_batch_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
