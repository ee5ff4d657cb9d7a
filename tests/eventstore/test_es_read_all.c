/* Global reads against the embedded PostgreSQL: pages in global order,
 * category and type filters, and gap safety: a reader following the
 * global order while several writers commit out of order sees every event
 * exactly once, in one stable order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "es_test.h"
#include "test_support.h"

static void test_read_all_pages_in_order_and_filters_by_category_and_type(
    void **state) {
  (void)state;
  char *db = est_db("es_readall");
  es_store_t *s = est_open(db);
  const char *streams[3] = {"order-1", "payment-1", "order-2"};
  for (int round = 0; round < 4; round++)
    for (int i = 0; i < 3; i++) {
      es_event_t e = est_event(round % 2 ? "Odd" : "Even", "d");
      assert_int_equal(es_append(s, streams[i], round, &e, 1, NULL), 0);
    }
  est_wait_global(s, 12);
  es_pos_t at = {0, 0};
  int total = 0;
  int64_t last = 0;
  for (;;) {
    es_page_t *p = NULL;
    assert_int_equal(es_read_all(s, at, NULL, 5, &p), 0);
    for (size_t i = 0; i < p->n; i++) {
      assert_true(p->events[i].global_position > last);
      last = p->events[i].global_position;
    }
    total += (int)p->n;
    size_t n = p->n;
    at = p->next;
    es_page_free(p);
    if (n < 5)
      break;
  }
  assert_int_equal(total, 12);
  es_page_t *p = NULL;
  es_filter_t orders = {"order", NULL};
  assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, &orders, 100, &p), 0);
  assert_int_equal(p->n, 8);
  for (size_t i = 0; i < p->n; i++)
    assert_int_equal(strncmp(p->events[i].stream_id, "order-", 6), 0);
  es_page_free(p);
  es_filter_t odd_payments = {"payment", "Odd"};
  assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, &odd_payments, 100, &p),
                   0);
  assert_int_equal(p->n, 2);
  assert_string_equal(p->events[0].type, "Odd");
  es_page_free(p);
  es_filter_t even = {NULL, "Even"};
  assert_int_equal(es_read_all(s, at, &even, 100, &p), 0);
  assert_int_equal(p->n, 0); /* nothing after the end */
  assert_int_equal(p->next.pos, at.pos);
  es_page_free(p);
  es_store_close(s);
  est_drop(db);
}

#define WRITERS 4
#define ROUNDS 40
#define PER_ROUND 4 /* events per batch: 2 streams x 2 */
#define TOTAL (WRITERS * ROUNDS * PER_ROUND)

struct writer {
  const char *db;
  int n;
  int failed;
};

static void *write_many(void *arg) {
  struct writer *w = arg;
  es_store_t *s = NULL;
  if (es_store_open(w->db, NULL, &s, NULL, 0)) {
    w->failed = 1;
    return NULL;
  }
  es_batch_t *b = es_batch_new(NULL);
  unsigned seed = (unsigned)w->n * 7919u;
  for (int r = 0; r < ROUNDS && !w->failed; r++) {
    es_batch_reset(b);
    for (int k = 0; k < 2; k++) {
      char stream[64];
      snprintf(stream, sizeof stream, "gap-%d-%d", w->n, k);
      es_event_t ev[2] = {est_event("G", "x"), est_event("G", "y")};
      if (es_batch_add(b, stream, r * 2, ev, 2) < 0)
        w->failed = 1;
    }
    /* hold the transaction open a little after its positions were taken,
     * so transactions commit out of position order */
    char sleep_s[32];
    snprintf(sleep_s, sizeof sleep_s, "0.00%u", rand_r(&seed) % 4);
    const char *p[1] = {sleep_s};
    es_batch_add_statement(b, "SELECT pg_sleep($1::float8)", 1, p);
    if (es_batch_execute(s, b) != 0)
      w->failed = 1;
  }
  es_batch_free(b);
  es_store_close(s);
  return NULL;
}

static void test_a_reader_following_concurrent_writers_sees_every_event_once_in_a_stable_order(
    void **state) {
  (void)state;
  char *db = est_db("es_gap");
  es_store_t *reader = est_open(db);
  pthread_t t[WRITERS];
  struct writer w[WRITERS];
  for (int i = 0; i < WRITERS; i++) {
    w[i] = (struct writer){db, i, 0};
    assert_int_equal(pthread_create(&t[i], NULL, write_many, &w[i]), 0);
  }
  int64_t *seen = calloc(TOTAL, sizeof *seen);
  char *hit = calloc(TOTAL * 4 + 1, 1);
  size_t n = 0;
  int inversions = 0;
  es_pos_t at = {0, 0};
  int64_t deadline = ts_now_ms() + ts_timeout_ms(60000);
  while (n < TOTAL) {
    assert_true(ts_now_ms() < deadline);
    es_page_t *p = NULL;
    assert_int_equal(es_read_all(reader, at, NULL, 50, &p), 0);
    for (size_t i = 0; i < p->n; i++) {
      int64_t pos = p->events[i].global_position;
      assert_true(pos > 0 && pos <= TOTAL * 4);
      assert_int_equal(hit[pos], 0); /* never twice */
      hit[pos] = 1;
      assert_true(n < TOTAL);
      if (n && pos < seen[n - 1])
        inversions++;
      seen[n++] = pos;
    }
    at = p->next;
    es_page_free(p);
  }
  for (int i = 0; i < WRITERS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].failed, 0);
  }
  /* nothing more, and a fresh read from the start gives the same order */
  es_page_t *p = NULL;
  assert_int_equal(es_read_all(reader, at, NULL, 50, &p), 0);
  assert_int_equal(p->n, 0);
  es_page_free(p);
  size_t k = 0;
  at = (es_pos_t){0, 0};
  while (k < TOTAL) {
    assert_int_equal(es_read_all(reader, at, NULL, 1000, &p), 0);
    assert_true(p->n > 0);
    for (size_t i = 0; i < p->n; i++, k++)
      assert_int_equal(p->events[i].global_position, seen[k]);
    at = p->next;
    es_page_free(p);
  }
  printf("# %d events, %d seen out of position order (late commits)\n",
         TOTAL, inversions);
  free(seen);
  free(hit);
  es_store_close(reader);
  est_drop(db);
}

/* A stream's category is the part of its id before the first '-': a
 * category holding one would match nothing, so the reads that name a
 * category refuse it and say why, before any query. */
static void test_a_category_holding_a_dash_is_refused_with_a_reason(
    void **state) {
  (void)state;
  char *db = est_db("es_readall_dash");
  es_store_t *s = est_open(db);
  es_event_t e = est_event("Placed", "d");
  assert_int_equal(es_append(s, "order-1", ES_NO_STREAM, &e, 1, NULL), 0);
  es_page_t *p = NULL;
  es_filter_t f = {.category = "order-1"};
  assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, &f, 10, &p),
                   ES_ERR_INVALID);
  assert_null(p);
  assert_non_null(strstr(es_store_last_error(s),
                         "category \"order-1\" holds a '-'"));
  assert_int_equal(es_group_read(s, "g", "order-1", 0, 1, 10, &p),
                   ES_ERR_INVALID);
  assert_null(p);
  assert_non_null(strstr(es_store_last_error(s), "holds a '-'"));
  assert_int_equal(es_member_read(s, "g", "order-1", 1, 10, &p),
                   ES_ERR_INVALID);
  assert_null(p);
  assert_non_null(strstr(es_store_last_error(s), "holds a '-'"));
  /* the category itself reads the event */
  est_wait_global(s, 1);
  f.category = "order";
  assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, &f, 10, &p), 0);
  assert_int_equal(p->n, 1);
  es_page_free(p);
  es_store_close(s);
  est_drop(db);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_read_all_pages_in_order_and_filters_by_category_and_type),
      cmocka_unit_test(
          test_a_reader_following_concurrent_writers_sees_every_event_once_in_a_stable_order),
      cmocka_unit_test(
          test_a_category_holding_a_dash_is_refused_with_a_reason),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
