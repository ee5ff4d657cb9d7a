/* The libuv face against the embedded PostgreSQL: batch and reads with
 * callbacks called exactly once (also on close), a racing writer's abort
 * classified stream by stream, reconnecting after a lost connection, and
 * a subscription that catches up, goes live and resumes after its
 * connection is terminated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>
#include <uv.h>

#include "es_test.h"
#include "test_support.h"

static char *db;
static uv_loop_t loop;

struct calls {
  int n, status[8];
  size_t pages[8];
  int closed_after;
};

static void on_batch(es_async_t *as, es_batch_t *b, int status, void *arg) {
  (void)as;
  (void)b;
  struct calls *c = arg;
  c->status[c->n++] = status;
}

static void on_read(es_async_t *as, int status, es_page_t *page, void *arg) {
  (void)as;
  struct calls *c = arg;
  assert_true(c->n < 8);
  c->pages[c->n] = page ? page->n : 0;
  c->status[c->n++] = status;
  assert_true(status == 0 ? page != NULL : page == NULL);
  es_page_free(page);
}

static void on_closed(es_async_t *as, void *arg) {
  (void)as;
  struct calls *c = arg;
  c->closed_after = c->n;
}

/* Run the loop until *count reaches want (or fail after the timeout). */
static void run_until(const int *count, int want) {
  int64_t deadline = ts_now_ms() + ts_timeout_ms(20000);
  while (*count < want) {
    assert_true(ts_now_ms() < deadline);
    uv_run(&loop, UV_RUN_ONCE);
  }
}

static void test_async_batch_and_read_call_back_exactly_once(void **state) {
  (void)state;
  es_async_t *as = NULL;
  assert_int_equal(es_async_open(&loop, db, NULL, &as, NULL, 0), 0);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t e[2] = {est_event("A", "1"), est_event("B", "2")};
  assert_int_equal(es_batch_add(b, "as-1", ES_NO_STREAM, e, 2), 0);
  struct calls c = {0};
  assert_int_equal(es_async_batch(as, b, on_batch, &c), 0);
  assert_int_equal(es_async_read_stream(as, "as-1", 1, 10, on_read, &c), 0);
  assert_int_equal(es_async_read_all(as, (es_pos_t){0, 0}, NULL, 10, on_read,
                                     &c),
                   0);
  assert_int_equal(c.n, 0); /* never inside the submit call */
  run_until(&c.n, 3);
  assert_int_equal(c.status[0], 0);
  assert_int_equal(es_batch_result(b, 0)->version, 2);
  assert_int_equal(c.status[1], 0);
  assert_int_equal(c.pages[1], 2);
  assert_int_equal(c.status[2], 0);
  /* A global read may not see a commit that is a moment old while other
   * sessions are busy (est_wait_global); once visible, it sees both. */
  assert_true(c.pages[2] <= 2);
  es_store_t *s = est_open(db);
  est_wait_global(s, 2);
  es_store_close(s);
  assert_int_equal(es_async_read_all(as, (es_pos_t){0, 0}, NULL, 10, on_read,
                                     &c),
                   0);
  run_until(&c.n, 4);
  assert_int_equal(c.status[3], 0);
  assert_int_equal(c.pages[3], 2);
  c.n = 3; /* the sequence below reuses the extra read's slot */
  /* a conflict through the async face */
  assert_int_equal(es_async_batch(as, b, on_batch, &c), 0);
  run_until(&c.n, 4);
  assert_int_equal(c.status[3], 0);
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_DUPLICATE);
  assert_int_equal(es_async_read_stream(as, "", 1, 10, on_read, &c),
                   ES_ERR_INVALID);
  es_async_close(as, on_closed, &c);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(c.n, 4);
  es_batch_free(b);
}

/* Commits the rival's transaction once the batch waits on its key. */
static void *commit_rival(void *arg) {
  est_wait_lock_waiter(db);
  est_scalar(arg, "COMMIT");
  return NULL;
}

static void test_an_async_batch_aborted_by_a_racing_writer_names_the_culprit(
    void **state) {
  (void)state;
  PGconn *rival = est_rival(db, "as-r1");
  es_async_t *as = NULL;
  assert_int_equal(es_async_open(&loop, db, NULL, &as, NULL, 0), 0);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t e[3] = {est_event("A", "1"), est_event("B", "2"),
                     est_event("C", "3")};
  assert_int_equal(es_batch_add(b, "as-r0", ES_NO_STREAM, &e[0], 1), 0);
  assert_int_equal(es_batch_add(b, "as-r1", ES_NO_STREAM, &e[1], 1), 1);
  assert_int_equal(es_batch_add(b, "as-r2", ES_NO_STREAM, &e[2], 1), 2);
  struct calls c = {0};
  assert_int_equal(es_async_batch(as, b, on_batch, &c), 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, commit_rival, rival), 0);
  run_until(&c.n, 1);
  pthread_join(t, NULL);
  assert_int_equal(c.status[0], ES_ERR_BATCH_ABORTED);
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_BATCH_ABORTED);
  assert_int_equal(es_batch_result(b, 1)->status, ES_ERR_CONFLICT);
  assert_int_equal(es_batch_result(b, 2)->status, ES_ERR_BATCH_ABORTED);
  assert_int_equal(est_count_events(db, "as-r0"), 0);
  /* the same connection goes on: the retry commits the two others */
  assert_int_equal(es_async_batch(as, b, on_batch, &c), 0);
  run_until(&c.n, 2);
  assert_int_equal(c.status[1], 0);
  assert_int_equal(es_batch_result(b, 0)->status, 0);
  assert_int_equal(es_batch_result(b, 1)->status, ES_ERR_CONFLICT);
  assert_int_equal(es_batch_result(b, 2)->status, 0);
  assert_int_equal(est_count_events(db, "as-r2"), 1);
  es_async_close(as, on_closed, &c);
  uv_run(&loop, UV_RUN_DEFAULT);
  PQfinish(rival);
  es_batch_free(b);
}

static void test_close_cancels_every_pending_operation_once(void **state) {
  (void)state;
  es_async_t *as = NULL;
  assert_int_equal(es_async_open(&loop, db, NULL, &as, NULL, 0), 0);
  struct calls c = {0};
  c.closed_after = -1;
  for (int i = 0; i < 3; i++)
    assert_int_equal(es_async_read_stream(as, "as-1", 1, 10, on_read, &c), 0);
  es_async_close(as, on_closed, &c);
  assert_int_equal(c.n, 3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(c.status[i], ES_ERR_CANCELLED);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(c.n, 3);
  assert_int_equal(c.closed_after, 3);
}

/* Whether a session of db waits on a lock. */
static int lock_waiters(PGconn *watch) {
  return (int)est_scalar(watch, "SELECT count(*) FROM pg_stat_activity WHERE"
                                " datname = current_database() AND"
                                " wait_event_type = 'Lock'");
}

/* A batch the server has when the handle is closed may still commit after
 * the connection is gone: its callback says CONNECTION (outcome unknown),
 * never CANCELLED, which would tell the caller that nothing was written;
 * a batch queued behind it, never sent, is CANCELLED. Here the first
 * batch waits on a rival's key when the handle closes, and commits once
 * the rival rolls back. */
static void test_close_reports_a_running_batch_unknown_not_cancelled(
    void **state) {
  (void)state;
  PGconn *rival = est_rival(db, "as-c1");
  PGconn *watch = est_raw(db);
  es_async_t *as = NULL;
  assert_int_equal(es_async_open(&loop, db, NULL, &as, NULL, 0), 0);
  es_batch_t *b1 = es_batch_new(NULL), *b2 = es_batch_new(NULL);
  es_event_t e1 = est_event("A", "1"), e2 = est_event("B", "2");
  assert_int_equal(es_batch_add(b1, "as-c1", ES_NO_STREAM, &e1, 1), 0);
  assert_int_equal(es_batch_add(b2, "as-c2", ES_NO_STREAM, &e2, 1), 0);
  struct calls c = {0};
  c.closed_after = -1;
  assert_int_equal(es_async_batch(as, b1, on_batch, &c), 0);
  assert_int_equal(es_async_batch(as, b2, on_batch, &c), 0);
  int64_t deadline = ts_now_ms() + ts_timeout_ms(10000);
  while (!lock_waiters(watch)) { /* the first batch is at the server */
    assert_true(ts_now_ms() < deadline);
    uv_run(&loop, UV_RUN_NOWAIT);
    nanosleep(&(struct timespec){0, 2000000}, NULL);
  }
  es_async_close(as, on_closed, &c);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.status[0], ES_ERR_CONNECTION);
  assert_int_equal(c.status[1], ES_ERR_CANCELLED);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(c.closed_after, 2);
  /* what the first callback could not rule out: it commits */
  est_scalar(rival, "ROLLBACK");
  while (est_count_events(db, "as-c1") != 1) {
    assert_true(ts_now_ms() < deadline);
    nanosleep(&(struct timespec){0, 5000000}, NULL);
  }
  assert_int_equal(est_count_events(db, "as-c2"), 0);
  PQfinish(watch);
  PQfinish(rival);
  es_batch_free(b1);
  es_batch_free(b2);
}

static void test_a_lost_connection_fails_the_operation_and_the_next_reconnects(
    void **state) {
  (void)state;
  es_async_t *as = NULL;
  assert_int_equal(es_async_open(&loop, db, NULL, &as, NULL, 0), 0);
  struct calls c = {0};
  /* the server ends this very session in the middle of the batch */
  es_batch_t *b = es_batch_new(NULL);
  es_event_t e = est_event("A", "1");
  assert_int_equal(es_batch_add(b, "as-lost", ES_NO_STREAM, &e, 1), 0);
  assert_int_equal(es_batch_add_statement(
                       b, "SELECT pg_terminate_backend(pg_backend_pid())", 0,
                       NULL),
                   0);
  assert_int_equal(es_async_batch(as, b, on_batch, &c), 0);
  run_until(&c.n, 1);
  assert_int_equal(c.status[0], ES_ERR_CONNECTION);
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_CONNECTION);
  assert_true(strlen(es_async_last_error(as)) > 0);
  assert_int_equal(es_async_read_stream(as, "as-lost", 1, 10, on_read, &c), 0);
  run_until(&c.n, 2);
  assert_int_equal(c.status[1], 0);
  assert_int_equal(c.pages[1], 0); /* the batch was rolled back */
  /* killed from outside while idle: the next call still succeeds */
  PGconn *admin = est_raw(db);
  assert_true(est_terminate_others(admin) >= 1);
  PQfinish(admin);
  assert_int_equal(es_async_read_stream(as, "as-1", 1, 10, on_read, &c), 0);
  run_until(&c.n, 3);
  if (c.status[2] != 0) {
    assert_int_equal(c.status[2], ES_ERR_CONNECTION);
    assert_int_equal(es_async_read_stream(as, "as-1", 1, 10, on_read, &c), 0);
    run_until(&c.n, 4);
    assert_int_equal(c.status[3], 0);
  }
  es_async_close(as, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  es_batch_free(b);
}

/* What each callback saw: its status and the handle's last error then. */
struct told {
  int n, status[4];
  char why[4][ES_ERRBUF_SIZE];
};

static void tell(es_async_t *as, int status, void *arg) {
  struct told *t = arg;
  assert_true(t->n < 4);
  snprintf(t->why[t->n], sizeof t->why[t->n], "%s", es_async_last_error(as));
  t->status[t->n++] = status;
}

static void told_batch(es_async_t *as, es_batch_t *b, int status, void *arg) {
  (void)b;
  tell(as, status, arg);
}

static void told_read(es_async_t *as, int status, es_page_t *page, void *arg) {
  es_page_free(page);
  tell(as, status, arg);
}

static void told_member(es_async_t *as, int status, int64_t id,
                        uint64_t buckets, void *arg) {
  (void)id, (void)buckets;
  tell(as, status, arg);
}

/* es_async_last_error names what went wrong: in a callback, that
 * operation's failure (not an earlier one's, "" after a success); after a
 * refused submit, why. A statement with the wrong parameter count aborts
 * the batch; it is not a lost connection. */
static void test_an_async_failure_is_named_where_it_is_reported(void **state) {
  (void)state;
  es_async_t *as = NULL;
  assert_int_equal(es_async_open(&loop, db, NULL, &as, NULL, 0), 0);
  es_batch_t *b = es_batch_new(NULL);
  struct told t = {0};
  assert_int_equal(es_async_batch(as, b, told_batch, &t), ES_ERR_INVALID);
  assert_non_null(strstr(es_async_last_error(as), "empty batch"));
  assert_int_equal(es_async_read_stream(as, "tell-1", 1, 10, NULL, NULL),
                   ES_ERR_INVALID);
  assert_non_null(strstr(es_async_last_error(as), "callback is required"));
  es_event_t e = est_event("A", "1");
  assert_int_equal(es_batch_add(b, "tell-1", ES_NO_STREAM, &e, 1), 0);
  const char *p[1] = {"1"};
  assert_int_equal(es_batch_add_statement(b, "SELECT $1::int + $2::int", 1, p),
                   0);
  assert_int_equal(es_async_batch(as, b, told_batch, &t), 0);
  assert_int_equal(es_async_read_stream(as, "tell-1", 1, 10, told_read, &t), 0);
  assert_int_equal(
      es_async_group_renew(as, "tell-group", 777, 1000, told_member, &t), 0);
  run_until(&t.n, 3);
  assert_int_equal(t.status[0], ES_ERR_BATCH_ABORTED);
  assert_non_null(strstr(t.why[0], "bind message supplies"));
  assert_int_equal(es_batch_result(b, 0)->status, ES_ERR_BATCH_ABORTED);
  assert_int_equal(t.status[1], 0);
  assert_string_equal(t.why[1], "");
  assert_int_equal(t.status[2], ES_ERR_NOT_FOUND);
  assert_non_null(strstr(t.why[2], "member 777 is not a member"));
  es_async_close(as, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  es_batch_free(b);
}

static int on_events_never(es_sub_t *sub, const es_page_t *page, void *arg) {
  (void)sub, (void)page, (void)arg;
  return 0;
}

/* A filter or checkpoint that every read would refuse fails the start
 * with the code es_read_all answers and a reason, instead of a
 * subscription that never reads and never says why; so does a poll or
 * retry interval of 0, which would read in a tight loop. */
static void test_a_subscription_no_read_would_accept_is_refused_at_start(
    void **state) {
  (void)state;
  char longcat[ES_MAX_STREAM_ID + 2];
  memset(longcat, 'c', sizeof longcat - 1);
  longcat[sizeof longcat - 1] = '\0';
  static const struct {
    const char *category, *type;
    int64_t pos;
    unsigned poll_ms, retry_ms; /* 0: the defaults */
    int rc;
    const char *why;
  } bad[] = {
      {"", NULL, 0, 0, 0, ES_ERR_INVALID, "category is empty"},
      {NULL, "", 0, 0, 0, ES_ERR_INVALID, "event type is empty"},
      {"\xff", NULL, 0, 0, 0, ES_ERR_BAD_UTF8, "not valid UTF-8"},
      {NULL, NULL, -1, 0, 0, ES_ERR_INVALID, "position not negative"},
      {NULL, NULL, 0, 0, 0, ES_ERR_TOO_LARGE, "more than 511"},
      /* a category is the part of a stream id before its first '-' */
      {"order-42", NULL, 0, 0, 0, ES_ERR_INVALID,
       "category \"order-42\" holds a '-'"},
      /* a zero interval would read or reconnect in a tight loop */
      {NULL, NULL, 0, UINT_MAX, 0, ES_ERR_INVALID,
       "poll_ms and retry_ms must be at least 1 ms (got 0 and 200"},
      {NULL, NULL, 0, 0, UINT_MAX, ES_ERR_INVALID,
       "poll_ms and retry_ms must be at least 1 ms (got 1000 and 0"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    es_sub_opts_t o;
    es_sub_opts_init(&o);
    o.on_events = on_events_never;
    o.filter.category = i == 4 ? longcat : bad[i].category;
    o.filter.type = bad[i].type;
    o.from.pos = bad[i].pos;
    if (bad[i].poll_ms == UINT_MAX)
      o.poll_ms = 0;
    if (bad[i].retry_ms == UINT_MAX)
      o.retry_ms = 0;
    es_sub_t *sub = NULL;
    char err[ES_ERRBUF_SIZE] = "";
    assert_int_equal(es_sub_start(&loop, db, &o, &sub, err, sizeof err),
                     bad[i].rc);
    assert_null(sub);
    assert_non_null(strstr(err, bad[i].why));
  }
  /* a missing handler or a bad page size is named on its own */
  es_sub_opts_t o;
  es_sub_opts_init(&o);
  es_sub_t *sub = NULL;
  char err[ES_ERRBUF_SIZE] = "";
  assert_int_equal(es_sub_start(&loop, db, &o, &sub, err, sizeof err),
                   ES_ERR_INVALID);
  assert_string_equal(err, "subscription: opts->on_events is NULL");
  o.on_events = on_events_never;
  o.page_size = 10001;
  assert_int_equal(es_sub_start(&loop, db, &o, &sub, err, sizeof err),
                   ES_ERR_INVALID);
  assert_string_equal(err,
                      "subscription: page_size must be 1 to 10000 (got "
                      "10001)");
  es_async_t *as = NULL;
  assert_int_equal(es_async_open(&loop, NULL, NULL, &as, err, sizeof err),
                   ES_ERR_INVALID);
  assert_string_equal(err, "async store: conninfo is NULL");
}

struct follower {
  int64_t last_pos;
  int events, live, lost, bad_order;
};

static int on_events(es_sub_t *sub, const es_page_t *page, void *arg) {
  (void)sub;
  struct follower *f = arg;
  for (size_t i = 0; i < page->n; i++) {
    if (strncmp(page->events[i].stream_id, "sub-", 4))
      continue;
    if (page->events[i].global_position <= f->last_pos)
      f->bad_order++;
    f->last_pos = page->events[i].global_position;
    f->events++;
  }
  return 0;
}

static int on_events_any(es_sub_t *sub, const es_page_t *page, void *arg) {
  (void)sub;
  struct follower *f = arg;
  for (size_t i = 0; i < page->n; i++) {
    if (page->events[i].global_position <= f->last_pos)
      f->bad_order++;
    f->last_pos = page->events[i].global_position;
    f->events++;
  }
  return 0;
}

static void on_state(es_sub_t *sub, int status, int live, void *arg) {
  (void)sub;
  struct follower *f = arg;
  if (status == 0 && live)
    f->live++;
  if (status == ES_ERR_CONNECTION)
    f->lost++;
}

static void append_n(es_store_t *s, int from, int n) {
  for (int i = from; i < from + n; i++) {
    es_event_t e = est_event("Tick", "t");
    int rc = es_append(s, "sub-1", i, &e, 1, NULL);
    if (rc == ES_ERR_CONNECTION) /* terminated with the others */
      rc = es_append(s, "sub-1", i, &e, 1, NULL);
    assert_int_equal(rc, 0);
  }
}

static void test_a_subscription_catches_up_goes_live_and_resumes_after_reconnect(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  append_n(s, 0, 30);
  struct follower f = {0};
  es_sub_opts_t o;
  es_sub_opts_init(&o);
  o.page_size = 8;
  o.poll_ms = 60000; /* live delivery must come from NOTIFY */
  o.retry_ms = 20;
  o.filter.category = "sub";
  o.on_events = on_events;
  o.on_state = on_state;
  o.arg = &f;
  es_sub_t *sub = NULL;
  assert_int_equal(es_sub_start(&loop, db, &o, &sub, NULL, 0), 0);
  run_until(&f.live, 1);
  /* Live means caught up to the read watermark; events held behind it by
   * other sessions' open transactions arrive a moment later, in order. */
  run_until(&f.events, 30);
  append_n(s, 30, 5);
  run_until(&f.events, 35);
  PGconn *admin = est_raw(db);
  assert_true(est_terminate_others(admin) >= 1);
  PQfinish(admin);
  run_until(&f.lost, 1);
  run_until(&f.live, 2); /* reconnected and caught up */
  append_n(s, 35, 5);
  run_until(&f.events, 40);
  assert_int_equal(f.bad_order, 0);
  es_pos_t at = es_sub_position(sub);
  assert_true(at.pos == f.last_pos);
  int closed = 0;
  es_sub_close(sub, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  (void)closed;
  assert_int_equal(f.events, 40);
  es_store_close(s);
}

/* An older transaction held open elsewhere keeps fresh commits below the
 * read watermark; once it ends they must arrive without waiting for the
 * (here one minute) safety-net poll. */
static void test_a_subscription_delivers_events_held_back_by_an_open_transaction(
    void **state) {
  (void)state;
  es_store_t *s = est_open(db);
  PGconn *blocker = est_raw(db);
  est_scalar(blocker, "BEGIN");
  est_scalar(blocker, "SELECT txid_current()"); /* takes an xid: holds xmin */
  struct follower f = {0};
  es_sub_opts_t o;
  es_sub_opts_init(&o);
  o.poll_ms = 60000;
  o.filter.category = "held";
  o.on_events = on_events_any;
  o.on_state = on_state;
  o.arg = &f;
  es_sub_t *sub = NULL;
  assert_int_equal(es_sub_start(&loop, db, &o, &sub, NULL, 0), 0);
  run_until(&f.live, 1);
  for (int i = 0; i < 3; i++) {
    es_event_t e = est_event("Tick", "t");
    assert_int_equal(es_append(s, "held-1", i, &e, 1, NULL), 0);
  }
  /* Committed and notified, but behind the blocker's xid: not yet visible. */
  int64_t until = ts_now_ms() + 200;
  while (ts_now_ms() < until)
    uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(f.events, 0);
  est_scalar(blocker, "COMMIT");
  int64_t t0 = ts_now_ms();
  run_until(&f.events, 3);
  assert_true(ts_now_ms() - t0 < ts_timeout_ms(20000));
  assert_int_equal(f.bad_order, 0);
  es_sub_close(sub, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  PQfinish(blocker);
  es_store_close(s);
}

static int setup(void **state) {
  (void)state;
  db = est_db("es_async");
  uv_loop_init(&loop);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  est_drop(db);
  return 0;
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_async_batch_and_read_call_back_exactly_once),
      cmocka_unit_test(
          test_an_async_batch_aborted_by_a_racing_writer_names_the_culprit),
      cmocka_unit_test(test_close_cancels_every_pending_operation_once),
      cmocka_unit_test(test_close_reports_a_running_batch_unknown_not_cancelled),
      cmocka_unit_test(test_an_async_failure_is_named_where_it_is_reported),
      cmocka_unit_test(
          test_a_subscription_no_read_would_accept_is_refused_at_start),
      cmocka_unit_test(
          test_a_lost_connection_fails_the_operation_and_the_next_reconnects),
      cmocka_unit_test(
          test_a_subscription_delivers_events_held_back_by_an_open_transaction),
      cmocka_unit_test(
          test_a_subscription_catches_up_goes_live_and_resumes_after_reconnect),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
