/* Consumer group members on a libuv loop (es_group_sub_t) against the
 * embedded PostgreSQL: two members share a category, each page's counts
 * commit with its acknowledgement, one member closes (leaves) and the
 * other takes its buckets from their checkpoints; every event is counted
 * exactly once, a stream's events in version order. Also the async
 * group reads and join/renew/leave with their callbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "es_test.h"
#include "test_support.h"

enum { STREAMS = 60 };
static uv_loop_t loop;

static void append_round(es_store_t *s, int per_stream) {
  est_append_round(s, "order", STREAMS, per_stream);
}

struct member {
  int pages, closed, live;
  int invalid, not_found, joined_again; /* on_state news; a page after a
                                           NOT_FOUND under a new id */
  int64_t lost;                         /* the id the group forgot */
};

/* The read model: per stream, the last version counted; the statement
 * refuses (aborting the batch) any event that is not the next one. */
#define COUNT_SQL                                                             \
  "INSERT INTO counted AS c (stream_id, version) VALUES ($1, $2::int8)"       \
  " ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version"         \
  " WHERE c.version + 1 = EXCLUDED.version"

static int on_events(es_group_sub_t *gs, const es_page_t *page,
                     es_batch_t *batch, void *arg) {
  struct member *m = arg;
  m->pages++;
  /* a page reaches on_events only while the member is one */
  assert_true(es_group_sub_member(gs) > 0);
  if (m->lost && es_group_sub_member(gs) != m->lost)
    m->joined_again = 1;
  for (size_t i = 0; i < page->n; i++) {
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)page->events[i].version);
    const char *p[2] = {page->events[i].stream_id, v};
    assert_true(es_batch_add_statement(batch, COUNT_SQL, 2, p) >= 0);
    /* and a row per event, whose key refuses a second count */
    assert_true(es_batch_add_statement(
                    batch,
                    "INSERT INTO each_event (stream_id, version)"
                    " VALUES ($1, $2::int8)",
                    2, p) >= 0);
  }
  return 0;
}

static void on_state(es_group_sub_t *gs, int status, int live, void *arg) {
  (void)gs;
  struct member *m = arg;
  m->live = live;
  if (status == ES_ERR_INVALID)
    m->invalid++;
  if (status == ES_ERR_NOT_FOUND)
    m->not_found++;
}

static void on_closed(es_group_sub_t *gs, void *arg) {
  (void)gs;
  ((struct member *)arg)->closed = 1;
}

static es_group_sub_t *start_leased(const char *db, struct member *m,
                                    unsigned lease_ms) {
  es_group_sub_opts_t o;
  es_group_sub_opts_init(&o);
  o.group = "counter";
  o.category = "order";
  o.page_size = 25;
  o.lease_ms = lease_ms;
  o.poll_ms = 100;
  o.on_events = on_events;
  o.on_state = on_state;
  o.arg = m;
  es_group_sub_t *gs = NULL;
  char err[ES_ERRBUF_SIZE];
  assert_int_equal(es_group_sub_start(&loop, db, &o, &gs, err, sizeof err),
                   0);
  return gs;
}

static es_group_sub_t *start(const char *db, struct member *m) {
  return start_leased(db, m, 30000);
}

static void on_tick(uv_timer_t *t) { (void)t; }

/* Run the loop until the query's answer reaches want. */
static void run_until(PGconn *raw, const char *sql, long long want) {
  int64_t deadline = ts_now_ms() + ts_timeout_ms(30000);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  for (;;) {
    assert_true(ts_now_ms() < deadline);
    if (est_scalar(raw, sql) >= want)
      break;
    uv_timer_start(&t, on_tick, 20, 0);
    uv_run(&loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* Run the loop until the read model counted want events. */
static void run_until_counted(PGconn *raw, long long want) {
  run_until(raw, "SELECT count(*) FROM each_event", want);
}

static void test_two_members_count_every_event_once(void **state) {
  (void)state;
  char *db = est_db("es_group_sub");
  es_store_t *s = est_open(db);
  PGconn *raw = est_raw(db);
  est_scalar(raw, "CREATE TABLE counted (stream_id text PRIMARY KEY,"
                  " version bigint NOT NULL)");
  est_scalar(raw, "CREATE TABLE each_event (stream_id text, version bigint,"
                  " PRIMARY KEY (stream_id, version))");
  uv_loop_init(&loop);

  /* Both join and the buckets are shared (no hand-over pending) before
   * the events come, so neither can read them all alone first. */
  struct member ma = {0}, mb = {0};
  es_group_sub_t *a = start(db, &ma), *b = start(db, &mb);
  run_until(raw,
            "SELECT count(DISTINCT owner) FROM es_group_buckets"
            " WHERE grp = 'counter' AND next_owner IS NULL"
            " HAVING count(*) = 64",
            2);
  append_round(s, 3);
  est_wait_global(s, STREAMS * 3);
  run_until_counted(raw, STREAMS * 3);
  assert_true(es_group_sub_member(a) > 0 && es_group_sub_member(b) > 0);
  assert_true(ma.pages > 0 && mb.pages > 0); /* both had buckets */

  /* B closes and leaves: A takes its buckets from their checkpoints. */
  es_group_sub_close(b, on_closed, &mb);
  int64_t deadline = ts_now_ms() + ts_timeout_ms(30000);
  while (!mb.closed) {
    assert_true(ts_now_ms() < deadline);
    uv_run(&loop, UV_RUN_ONCE);
  }
  assert_int_equal(est_scalar(raw, "SELECT count(*) FROM es_group_members"),
                   1);
  append_round(s, 2);
  run_until_counted(raw, STREAMS * 5);
  /* nothing twice (the key would have aborted it), nothing skipped */
  assert_int_equal(est_scalar(raw, "SELECT count(*) FROM counted"
                                   " WHERE version <> 5"),
                   0);
  assert_int_equal(est_scalar(raw, "SELECT count(*) FROM each_event"),
                   STREAMS * 5);

  struct member done = {0};
  es_group_sub_close(a, on_closed, &done);
  deadline = ts_now_ms() + ts_timeout_ms(30000);
  while (!done.closed) {
    assert_true(ts_now_ms() < deadline);
    uv_run(&loop, UV_RUN_ONCE);
  }
  assert_int_equal(est_scalar(raw, "SELECT count(*) FROM es_group_members"),
                   0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  PQfinish(raw);
  es_store_close(s);
  est_drop(db);
}

/* Run the loop for ms milliseconds. */
static void run_for(int64_t ms) {
  int64_t until = ts_now_ms() + ms;
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  while (ts_now_ms() < until) {
    uv_timer_start(&t, on_tick, 10, 0);
    uv_run(&loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* The group forgets the member while a page read is queued behind its
 * renewal: a raw transaction deletes the member's row (its buckets keep
 * naming it), so the renewal waits on the row; a read queues behind it on
 * the member's connection; the commit makes the renewal answer NOT_FOUND
 * and the read then returns the buckets' events under the old id. The
 * page cannot be acknowledged: it is dropped, not refused as INVALID (the
 * member id 0), and the member joins again and counts every event once. */
static void test_a_page_read_while_the_membership_was_lost_is_dropped(
    void **state) {
  (void)state;
  char *db = est_db("es_group_lost");
  es_store_t *s = est_open(db);
  PGconn *raw = est_raw(db), *watch = est_raw(db);
  est_scalar(raw, "CREATE TABLE counted (stream_id text PRIMARY KEY,"
                  " version bigint NOT NULL)");
  est_scalar(raw, "CREATE TABLE each_event (stream_id text, version bigint,"
                  " PRIMARY KEY (stream_id, version))");
  uv_loop_init(&loop);
  struct member m = {0};
  /* renewals every 200 ms */
  es_group_sub_t *gs = start_leased(db, &m, 600);
  run_until(watch,
            "SELECT count(*) FROM es_group_buckets WHERE grp = 'counter'"
            " AND next_owner IS NULL HAVING count(*) = 64",
            64);
  append_round(s, 1);
  est_wait_global(s, STREAMS);
  run_until_counted(watch, STREAMS);
  m.lost = es_group_sub_member(gs);
  assert_true(m.lost > 0);

  est_scalar(raw, "BEGIN");
  est_scalar(raw, "DELETE FROM es_group_members WHERE grp = 'counter'");
  /* the next renewal waits on the deleted row */
  run_until(watch,
            "SELECT count(*) FROM pg_stat_activity WHERE"
            " datname = current_database() AND wait_event_type = 'Lock'",
            1);
  append_round(s, 1);
  run_for(300); /* the NOTIFY or the poll queues a read behind it */
  est_scalar(raw, "COMMIT");
  run_until_counted(watch, STREAMS * 2);
  assert_true(m.not_found > 0);
  assert_int_equal(m.invalid, 0);
  assert_true(m.joined_again);
  assert_true(es_group_sub_member(gs) > 0 &&
              es_group_sub_member(gs) != m.lost);
  assert_int_equal(est_scalar(watch, "SELECT count(*) FROM counted"
                                     " WHERE version <> 2"),
                   0);

  struct member done = {0};
  es_group_sub_close(gs, on_closed, &done);
  int64_t deadline = ts_now_ms() + ts_timeout_ms(30000);
  while (!done.closed) {
    assert_true(ts_now_ms() < deadline);
    uv_run(&loop, UV_RUN_ONCE);
  }
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  PQfinish(raw);
  PQfinish(watch);
  es_store_close(s);
  est_drop(db);
}

struct got {
  int n, status;
  int64_t id;
  uint64_t buckets;
  size_t events;
};

static void on_member(es_async_t *as, int status, int64_t id,
                      uint64_t buckets, void *arg) {
  (void)as;
  struct got *g = arg;
  g->n++;
  g->status = status;
  g->id = id;
  g->buckets = buckets;
}

static void on_read(es_async_t *as, int status, es_page_t *page, void *arg) {
  (void)as;
  struct got *g = arg;
  g->n++;
  g->status = status;
  g->events = page ? page->n : 0;
  g->buckets = page ? page->buckets : 0;
  es_page_free(page);
}

static void wait_n(const struct got *g, int want) {
  int64_t deadline = ts_now_ms() + ts_timeout_ms(20000);
  while (g->n < want) {
    assert_true(ts_now_ms() < deadline);
    uv_run(&loop, UV_RUN_ONCE);
  }
}

static void on_async_closed(es_async_t *as, void *arg) {
  (void)as;
  (*(int *)arg)++;
}

static void test_async_group_calls(void **state) {
  (void)state;
  char *db = est_db("es_group_async");
  es_store_t *s = est_open(db);
  append_round(s, 1);
  est_wait_global(s, STREAMS);
  uv_loop_init(&loop);
  es_async_t *as = NULL;
  char err[ES_ERRBUF_SIZE];
  assert_int_equal(es_async_open(&loop, db, NULL, &as, err, sizeof err), 0);

  struct got g = {0};
  assert_int_equal(es_async_group_join(as, "g", 5000, on_member, &g), 0);
  wait_n(&g, 1);
  assert_int_equal(g.status, 0);
  assert_true(g.id > 0 && g.buckets == UINT64_MAX);
  int64_t id = g.id;
  assert_int_equal(es_async_group_renew(as, "g", id, 5000, on_member, &g), 0);
  wait_n(&g, 2);
  assert_int_equal(g.status, 0);
  assert_int_equal(es_async_member_read(as, "g", "order", id, 1000, on_read,
                                        &g),
                   0);
  wait_n(&g, 3);
  assert_int_equal(g.status, 0);
  assert_int_equal(g.events, STREAMS);
  assert_true(g.buckets == UINT64_MAX);
  assert_int_equal(es_async_group_read(as, "static", "order", 0, 1, 1000,
                                       on_read, &g),
                   0);
  wait_n(&g, 4);
  assert_int_equal(g.status, 0);
  assert_int_equal(g.events, STREAMS);
  assert_int_equal(es_async_group_leave(as, "g", id, on_member, &g), 0);
  wait_n(&g, 5);
  assert_int_equal(g.status, 0);
  assert_int_equal(es_async_group_renew(as, "g", id, 5000, on_member, &g), 0);
  wait_n(&g, 6);
  assert_int_equal(g.status, ES_ERR_NOT_FOUND);
  /* refused before anything is queued: no callback */
  assert_int_equal(es_async_group_join(as, "g", 0, on_member, &g),
                   ES_ERR_INVALID);
  assert_int_equal(es_async_member_read(as, "g", "order", 0, 10, on_read, &g),
                   ES_ERR_INVALID);

  int closed = 0;
  es_async_close(as, on_async_closed, &closed);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(closed, 1);
  assert_int_equal(g.n, 6);
  assert_int_equal(uv_loop_close(&loop), 0);
  es_store_close(s);
  est_drop(db);
}

/* A member whose every read would match nothing (a category holding a
 * '-') or that would poll or retry in a tight loop (an interval of 0) is
 * refused at its start, with the reason. */
static void test_a_member_that_could_not_work_is_refused_at_start(
    void **state) {
  (void)state;
  static const struct {
    const char *category;
    int zero; /* 1: poll_ms 0, 2: retry_ms 0 */
    const char *why;
  } bad[] = {
      {"order-1", 0, "category \"order-1\" holds a '-'"},
      {"order", 1, "poll_ms and retry_ms must be at least 1 ms (got 0 and"},
      {"order", 2, "poll_ms and retry_ms must be at least 1 ms (got 1000"
                   " and 0"},
  };
  uv_loop_init(&loop);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    es_group_sub_opts_t o;
    es_group_sub_opts_init(&o);
    o.group = "counter";
    o.category = bad[i].category;
    if (bad[i].zero == 1)
      o.poll_ms = 0;
    if (bad[i].zero == 2)
      o.retry_ms = 0;
    o.on_events = on_events;
    es_group_sub_t *gs = NULL;
    char err[ES_ERRBUF_SIZE] = "";
    assert_int_equal(
        es_group_sub_start(&loop, "dbname=unused", &o, &gs, err, sizeof err),
        ES_ERR_INVALID);
    assert_null(gs);
    assert_non_null(strstr(err, bad[i].why));
  }
  /* each bad argument is named on its own (one sentence listed them all:
   * "group member needs a loop, conninfo, group, ...") */
  static const struct {
    int which; /* 0 group NULL, 1 page_size 0, 2 lease 0, 3 no on_events */
    const char *why;
  } args[] = {
      {0, "group member: opts->group is NULL"},
      {1, "group member: page_size must be 1 to 10000 (got 0)"},
      {2, "group member: lease_ms must be 1 to "},
      {3, "group member: opts->on_events is NULL"},
  };
  for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
    es_group_sub_opts_t o;
    es_group_sub_opts_init(&o);
    o.group = args[i].which == 0 ? NULL : "counter";
    o.category = "order";
    o.on_events = args[i].which == 3 ? NULL : on_events;
    if (args[i].which == 1)
      o.page_size = 0;
    if (args[i].which == 2)
      o.lease_ms = 0;
    es_group_sub_t *gs = NULL;
    char err[ES_ERRBUF_SIZE] = "";
    assert_int_equal(
        es_group_sub_start(&loop, "dbname=unused", &o, &gs, err, sizeof err),
        ES_ERR_INVALID);
    assert_null(gs);
    if (!strstr(err, args[i].why))
      fail_msg("got \"%s\", want \"%s\"", err, args[i].why);
  }
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_members_count_every_event_once),
      cmocka_unit_test(test_async_group_calls),
      cmocka_unit_test(
          test_a_page_read_while_the_membership_was_lost_is_dropped),
      cmocka_unit_test(test_a_member_that_could_not_work_is_refused_at_start),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
