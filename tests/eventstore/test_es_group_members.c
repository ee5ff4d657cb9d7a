/* Consumer groups with membership against the embedded PostgreSQL:
 * members join and get an id, the 64 buckets are shared among the live
 * ones, a newcomer takes some once their owners hand them over, a member
 * whose lease expired loses its buckets to the others (who read them from
 * its checkpoints) and its acknowledgement is refused, alone or with its
 * own writes. Across the whole run every event is acknowledged once, and a
 * stream's events in version order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "es_test.h"
#include "test_support.h"

enum { STREAMS = 100 };
static const char *const G = "orders-view";

/* Per stream: the next version a member must acknowledge. */
static int64_t next_version[STREAMS];
static long long acked;

static void append_round(es_store_t *s, int per_stream) {
  est_append_round(s, "order", STREAMS, per_stream);
}

static int bits(uint64_t m) { return __builtin_popcountll(m); }

/* Whether the buckets of m are one run of consecutive buckets (a member
 * reads its run as one index range). */
static int is_run(uint64_t m) {
  if (!m)
    return 0;
  uint64_t r = m >> __builtin_ctzll(m);
  return (r & (r + 1)) == 0;
}

/* Mark a page's events handled: each must be its stream's next version. */
static void handled(const es_page_t *p) {
  for (size_t i = 0; i < p->n; i++) {
    int k = atoi(p->events[i].stream_id + strlen("order-"));
    assert_true(k >= 0 && k < STREAMS);
    assert_int_equal(p->events[i].version, next_version[k] + 1);
    next_version[k]++;
    acked++;
  }
}

/* One page for member id: read, acknowledge, mark handled. Returns the
 * page's size; *mask receives the page's buckets. */
static size_t step(es_store_t *s, int64_t id, uint64_t *mask) {
  es_page_t *p = NULL;
  assert_int_equal(es_member_read(s, G, "order", id, 37, &p), 0);
  size_t n = p->n;
  if (mask)
    *mask = p->buckets;
  if (n) {
    assert_int_not_equal(p->buckets, 0);
    assert_int_equal(es_member_ack(s, G, id, p->buckets, p->next), 0);
    handled(p);
  }
  es_page_free(p);
  return n;
}

/* Read and acknowledge until every member's read is empty. */
static void drain(es_store_t **s, const int64_t *ids, int n) {
  for (;;) {
    size_t got = 0;
    for (int i = 0; i < n; i++)
      got += step(s[i], ids[i], NULL);
    if (!got)
      return;
  }
}

static void test_members_share_take_over_and_fence(void **state) {
  (void)state;
  char *db = est_db("es_members");
  es_store_t *a = est_open(db), *b = est_open(db), *c = est_open(db);
  PGconn *raw = est_raw(db);
  est_scalar(raw, "CREATE TABLE seen (n int NOT NULL)");
  append_round(a, 3);
  est_wait_global(a, STREAMS * 3);

  /* A joins alone: every bucket. B joins: half of them wait for A's
   * hand-over, which A's next read makes. */
  int64_t ia = 0, ib = 0, ic = 0;
  uint64_t ma = 0, mb = 1, mc = 1;
  assert_int_equal(es_group_join(a, G, 60000, &ia, &ma), 0);
  assert_true(ia > 0);
  assert_true(ma == UINT64_MAX);
  assert_int_equal(es_group_join(b, G, 60000, &ib, &mb), 0);
  assert_true(ib > 0 && ib != ia);
  assert_true(mb == 0); /* still A's until it hands them over */
  assert_int_equal(es_group_renew(a, G, ia, 60000, &ma), 0);
  assert_int_equal(bits(ma), 32); /* the others wait for the hand-over */
  uint64_t page_mask = 0;
  assert_true(step(a, ia, &page_mask) > 0);
  assert_int_equal(bits(page_mask), 32);
  assert_int_equal(es_group_renew(b, G, ib, 60000, &mb), 0);
  assert_int_equal(bits(mb), 32);
  assert_true((page_mask & mb) == 0);
  {
    es_store_t *ss[2] = {a, b};
    int64_t is[2] = {ia, ib};
    drain(ss, is, 2);
  }
  assert_int_equal(acked, STREAMS * 3);

  /* A third joins and takes some of both. */
  assert_int_equal(es_group_join(c, G, 60000, &ic, &mc), 0);
  assert_true(mc == 0);
  append_round(a, 2);
  est_wait_global(a, STREAMS * 5);
  assert_true(step(a, ia, &ma) > 0); /* hands over, reads its own */
  assert_true(step(b, ib, &mb) > 0);
  assert_int_equal(es_group_renew(c, G, ic, 60000, &mc), 0);
  assert_true(bits(mc) >= 21 && bits(mc) <= 22);
  assert_true(bits(ma) >= 21 && bits(ma) <= 22);
  assert_true((ma & mb) == 0 && (ma & mc) == 0 && (mb & mc) == 0);
  assert_true((ma | mb | mc) == UINT64_MAX);
  assert_true(is_run(ma) && is_run(mb) && is_run(mc));
  uint64_t ma3 = ma, mc3 = mc;

  /* B reads a page and stops: its lease runs out (a renewal of 1 ms) and
   * the next renewal of A or C shares its buckets between them. */
  append_round(a, 1);
  est_wait_global(a, STREAMS * 6);
  es_page_t *stale = NULL;
  assert_int_equal(es_member_read(b, G, "order", ib, 37, &stale), 0);
  assert_true(stale->n > 0);
  assert_int_equal(es_group_renew(b, G, ib, 1, NULL), 0);
  int64_t deadline = ts_now_ms() + ts_timeout_ms(30000);
  for (;;) {
    assert_true(ts_now_ms() < deadline);
    nanosleep(&(struct timespec){0, 2000000}, NULL);
    assert_int_equal(es_group_renew(a, G, ia, 60000, &ma), 0);
    assert_int_equal(es_group_renew(c, G, ic, 60000, &mc), 0);
    if ((ma | mc) == UINT64_MAX)
      break;
  }
  assert_true((ma & mc) == 0);
  assert_true(bits(ma) == 32 && bits(mc) == 32);
  /* the runs grew over the gone member's buckets: none moved between the
   * live ones */
  assert_true(is_run(ma) && is_run(mc));
  assert_true((ma & ma3) == ma3 && (mc & mc3) == mc3);

  /* The stale member's acknowledgement is refused, alone and with its own
   * writes (which roll back), and its renewal says it is gone. */
  assert_int_equal(es_member_ack(b, G, ib, stale->buckets, stale->next),
                   ES_ERR_NOT_OWNER);
  assert_non_null(strstr(es_store_last_error(b), "no longer owns"));
  es_batch_t *w = es_batch_new(NULL);
  const char *one[1] = {"1"};
  assert_int_equal(
      es_batch_add_statement(w, "INSERT INTO seen VALUES ($1::int)", 1, one),
      0);
  assert_int_equal(
      es_batch_add_member_ack(w, G, ib, stale->buckets, stale->next), 1);
  assert_int_equal(es_batch_execute(b, w), ES_ERR_NOT_OWNER);
  assert_int_equal(est_scalar(raw, "SELECT count(*) FROM seen"), 0);
  es_batch_free(w);
  es_page_free(stale);
  assert_int_equal(es_group_renew(b, G, ib, 60000, NULL), ES_ERR_NOT_FOUND);
  es_page_t *none = NULL;
  assert_int_equal(es_member_read(b, G, "order", ib, 37, &none), 0);
  assert_int_equal(none->n, 0);
  es_page_free(none);

  /* A and C take B's buckets from B's checkpoints: B's unacknowledged
   * page goes to them, nothing B acknowledged comes again. */
  {
    es_store_t *ss[2] = {a, c};
    int64_t is[2] = {ia, ic};
    drain(ss, is, 2);
  }
  assert_int_equal(acked, STREAMS * 6);
  for (int i = 0; i < STREAMS; i++)
    assert_int_equal(next_version[i], 6);

  /* C leaves: A owns everything at once, its buckets at the different
   * checkpoints A and C left, and reads each from its own. */
  assert_int_equal(es_group_leave(c, G, ic), 0);
  assert_int_equal(es_group_renew(a, G, ia, 60000, &ma), 0);
  assert_true(ma == UINT64_MAX);
  append_round(a, 1);
  est_wait_global(a, STREAMS * 7);
  {
    es_store_t *ss[1] = {a};
    int64_t is[1] = {ia};
    drain(ss, is, 1);
  }
  assert_int_equal(acked, STREAMS * 7);

  /* Bad input is refused before anything is sent. */
  assert_int_equal(es_group_join(a, G, 0, &ic, NULL), ES_ERR_INVALID);
  assert_int_equal(es_group_join(a, "", 1000, &ic, NULL), ES_ERR_INVALID);
  assert_int_equal(es_group_renew(a, G, 0, 1000, NULL), ES_ERR_INVALID);
  assert_int_equal(es_member_read(a, G, "order", -1, 10, &none),
                   ES_ERR_INVALID);
  assert_int_equal(es_member_ack(a, G, ia, 1, (es_pos_t){0, -1}),
                   ES_ERR_INVALID);

  /* A reset forgets the group's checkpoints: everything comes again (a
   * lone owner of every bucket, all at one checkpoint: one range of the
   * category index per page). */
  assert_int_equal(es_checkpoint_reset(a, G), 0);
  memset(next_version, 0, sizeof next_version);
  acked = 0;
  {
    es_store_t *ss[1] = {a};
    int64_t is[1] = {ia};
    drain(ss, is, 1);
  }
  assert_int_equal(acked, STREAMS * 7);

  PQfinish(raw);
  es_store_close(a);
  es_store_close(b);
  es_store_close(c);
  est_drop(db);
}

/* A lone member reads by a statement of one index range, and falls back
 * to the full statement (in the same call) when it is no longer alone or
 * its buckets' checkpoints differ; when it is alone again with its
 * buckets together it returns to the short one. Whichever statement
 * answers, every event comes once, in order per stream, and each page's
 * mask is the member's buckets. */
static void test_lone_member_falls_back_and_returns(void **state) {
  (void)state;
  memset(next_version, 0, sizeof next_version);
  acked = 0;
  char *db = est_db("es_lone");
  es_store_t *a = est_open(db), *b = est_open(db);
  append_round(a, 2);
  est_wait_global(a, STREAMS * 2);
  int64_t ia = 0, ib = 0;
  uint64_t m = 0;
  assert_int_equal(es_group_join(a, G, 60000, &ia, NULL), 0);
  assert_true(step(a, ia, &m) > 0); /* alone: the short statement */
  assert_true(m == UINT64_MAX);
  assert_true(step(a, ia, &m) > 0);
  assert_true(m == UINT64_MAX);

  /* B joins: A's next read is not the lone reader's any more (it hands
   * half over first); the full statement answers in the same call. */
  assert_int_equal(es_group_join(b, G, 60000, &ib, NULL), 0);
  assert_true(step(a, ia, &m) > 0);
  assert_int_equal(bits(m), 32);
  {
    es_store_t *ss[2] = {a, b};
    int64_t is[2] = {ia, ib};
    drain(ss, is, 2);
  }
  assert_int_equal(acked, STREAMS * 2);

  /* B leaves: A owns every bucket, at the two checkpoints A and B left
   * (the full statement); once one page has covered them all they stand
   * together and the short statement serves A again. */
  assert_int_equal(es_group_leave(b, G, ib), 0);
  append_round(a, 3);
  est_wait_global(a, STREAMS * 5);
  uint64_t seen = 0;
  for (size_t n = 1; n;) {
    n = step(a, ia, &m);
    seen |= m;
  }
  assert_true(seen == UINT64_MAX);
  assert_int_equal(acked, STREAMS * 5);
  append_round(a, 1);
  est_wait_global(a, STREAMS * 6);
  assert_true(step(a, ia, &m) > 0);
  assert_true(m == UINT64_MAX);
  {
    es_store_t *ss[1] = {a};
    int64_t is[1] = {ia};
    drain(ss, is, 1);
  }
  assert_int_equal(acked, STREAMS * 6);
  for (int i = 0; i < STREAMS; i++)
    assert_int_equal(next_version[i], 6);

  es_store_close(a);
  es_store_close(b);
  est_drop(db);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_members_share_take_over_and_fence),
      cmocka_unit_test(test_lone_member_falls_back_and_returns),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
