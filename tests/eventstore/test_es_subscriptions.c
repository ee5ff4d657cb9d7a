/* Named subscriptions and consumer groups against the embedded PostgreSQL:
 * a checkpoint stored in the store that only moves forward and commits
 * with the subscriber's own writes or not at all; a group that splits a
 * category among its members by stream, each stream's events to one
 * member in order, every event once, and buckets that keep their
 * checkpoints when the number of members changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "es_test.h"
#include "test_support.h"

static void append_n(es_store_t *s, const char *stream, int64_t from, int n) {
  for (int i = 0; i < n; i++) {
    es_event_t e = est_event("Happened", "d");
    assert_int_equal(es_append(s, stream, from + i, &e, 1, NULL), 0);
  }
}

static void test_a_named_checkpoint_moves_forward_with_the_subscriber(
    void **state) {
  (void)state;
  char *db = est_db("es_sub_ckpt");
  es_store_t *s = est_open(db);
  PGconn *c = est_raw(db);
  est_scalar(c, "CREATE TABLE seen (n int NOT NULL CHECK (n > 0))");
  es_pos_t at = {1, 1};
  assert_int_equal(es_checkpoint_load(s, "proj", &at), 0);
  assert_true(at.tx == 0 && at.pos == 0);
  append_n(s, "order-1", 0, 5);
  est_wait_global(s, 5);

  es_page_t *p = NULL;
  assert_int_equal(es_read_all(s, at, NULL, 3, &p), 0);
  assert_int_equal(p->n, 3);
  es_pos_t first = p->next;
  es_page_free(p);
  assert_int_equal(es_checkpoint_save(s, "proj", first), 0);
  assert_int_equal(es_checkpoint_load(s, "proj", &at), 0);
  assert_true(at.tx == first.tx && at.pos == first.pos);
  /* never back */
  assert_int_equal(es_checkpoint_save(s, "proj", (es_pos_t){0, 0}), 0);
  assert_int_equal(es_checkpoint_load(s, "proj", &at), 0);
  assert_true(at.tx == first.tx && at.pos == first.pos);

  /* with the subscriber's own writes: both commit, or neither */
  assert_int_equal(es_read_all(s, at, NULL, 10, &p), 0);
  assert_int_equal(p->n, 2);
  es_pos_t second = p->next;
  es_page_free(p);
  es_batch_t *b = es_batch_new(NULL);
  const char *bad[1] = {"0"};
  assert_int_equal(
      es_batch_add_statement(b, "INSERT INTO seen VALUES ($1::int)", 1, bad),
      0);
  assert_int_equal(es_batch_add_checkpoint(b, "proj", second), 1);
  assert_int_equal(es_batch_execute(s, b), ES_ERR_BATCH_ABORTED);
  assert_int_equal(es_checkpoint_load(s, "proj", &at), 0);
  assert_true(at.tx == first.tx && at.pos == first.pos);
  es_batch_reset(b);
  const char *good[1] = {"2"};
  assert_int_equal(
      es_batch_add_statement(b, "INSERT INTO seen VALUES ($1::int)", 1, good),
      0);
  assert_int_equal(es_batch_add_checkpoint(b, "proj", second), 1);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_checkpoint_load(s, "proj", &at), 0);
  assert_true(at.tx == second.tx && at.pos == second.pos);
  assert_int_equal(est_scalar(c, "SELECT sum(n) FROM seen"), 2);

  /* bad input is refused before anything is sent */
  assert_int_equal(es_batch_add_checkpoint(b, "", second), ES_ERR_INVALID);
  assert_int_equal(es_batch_add_checkpoint(b, "p", (es_pos_t){1, -1}),
                   ES_ERR_INVALID);
  assert_int_equal(es_checkpoint_save(s, "\xff", second), ES_ERR_BAD_UTF8);
  assert_non_null(strstr(es_store_last_error(s), "subscription name"));
  es_batch_free(b);

  /* a reset starts it again from the beginning */
  assert_int_equal(es_checkpoint_reset(s, "proj"), 0);
  assert_int_equal(es_checkpoint_load(s, "proj", &at), 0);
  assert_true(at.tx == 0 && at.pos == 0);

  /* the writer role may keep checkpoints */
  est_scalar(c, "SET ROLE es_writer");
  est_scalar(c, "INSERT INTO es_subscriptions VALUES ('w', -1, '1', 1)");
  est_scalar(c, "UPDATE es_subscriptions SET global_position = 2"
                " WHERE name = 'w'");
  est_scalar(c, "DELETE FROM es_subscriptions WHERE name = 'w'");
  es_store_close(s);
  PQfinish(c);
  est_drop(db);
}

#define STREAMS 40
#define PER_STREAM 3

typedef struct {
  int member[STREAMS];  /* the member that got the stream, or -1 */
  int64_t next[STREAMS]; /* the next version expected from each stream */
  int events;
} seen_t;

/* Read the group to its end as member of members, acknowledging each
 * page; record and check what arrives. Returns how many events. */
static int drain(es_store_t *s, int member, int members, seen_t *seen) {
  int got = 0;
  for (;;) {
    es_page_t *p = NULL;
    assert_int_equal(
        es_group_read(s, "orders", "order", member, members, 7, &p), 0);
    size_t n = p->n;
    for (size_t i = 0; i < n; i++) {
      const es_recorded_t *e = &p->events[i];
      int k = -1;
      assert_int_equal(sscanf(e->stream_id, "order-%d", &k), 1);
      assert_true(k >= 0 && k < STREAMS);
      /* one member per stream, its events in order, each once */
      if (seen->member[k] < 0)
        seen->member[k] = member;
      assert_int_equal(seen->member[k], member);
      assert_int_equal(e->version, seen->next[k]);
      seen->next[k]++;
      got++;
    }
    if (n)
      assert_int_equal(es_group_ack(s, "orders", member, members, p->next),
                       0);
    es_page_free(p);
    if (n == 0)
      return got;
  }
}

static void test_a_group_splits_a_category_by_stream_in_order(void **state) {
  (void)state;
  char *db = est_db("es_sub_group");
  es_store_t *s = est_open(db);
  PGconn *c = est_raw(db);
  char id[32];
  for (int round = 0; round < PER_STREAM; round++)
    for (int k = 0; k < STREAMS; k++) {
      snprintf(id, sizeof id, "order-%d", k);
      append_n(s, id, round, 1);
      if (k % 10 == 0) {
        snprintf(id, sizeof id, "payment-%d", k);
        append_n(s, id, round, 1);
      }
    }
  est_wait_global(s, STREAMS * PER_STREAM + 4 * PER_STREAM);
  /* the bucket is stored with each event, from the stream id */
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_events WHERE"
                                 " bucket <> (hashtextextended(stream_id, 0)"
                                 " & 63)"),
                   0);

  seen_t seen;
  for (int k = 0; k < STREAMS; k++) {
    seen.member[k] = -1;
    seen.next[k] = 1;
  }
  int total = 0, busy = 0;
  for (int m = 0; m < 3; m++) {
    int got = drain(s, m, 3, &seen);
    total += got;
    busy += got > 0;
  }
  assert_int_equal(total, STREAMS * PER_STREAM);
  assert_true(busy >= 2);
  for (int k = 0; k < STREAMS; k++) {
    assert_int_equal(seen.next[k], PER_STREAM + 1);
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT DISTINCT bucket * 3 / 64 FROM es_events WHERE stream_id ="
             " 'order-%d'",
             k);
    assert_int_equal(est_scalar(c, sql), seen.member[k]);
  }
  /* acknowledged: nothing more until new events come */
  for (int m = 0; m < 3; m++)
    assert_int_equal(drain(s, m, 3, &seen), 0);

  /* two members now: each bucket goes on from its own checkpoint, and a
   * stream's new events go to the member that now holds its bucket */
  for (int k = 0; k < STREAMS; k += 4) {
    snprintf(id, sizeof id, "order-%d", k);
    append_n(s, id, PER_STREAM, 1);
    seen.member[k] = -1;
  }
  est_wait_global(s, STREAMS * PER_STREAM + 4 * PER_STREAM + STREAMS / 4);
  total = drain(s, 0, 2, &seen) + drain(s, 1, 2, &seen);
  assert_int_equal(total, STREAMS / 4);
  for (int k = 0; k < STREAMS; k++)
    assert_int_equal(seen.next[k], PER_STREAM + 1 + (k % 4 == 0));

  /* reset, one member reads the whole category again, once */
  es_batch_t *b = es_batch_new(NULL);
  assert_int_equal(es_batch_add_checkpoint_reset(b, "orders"), 0);
  assert_int_equal(es_batch_execute(s, b), 0);
  es_batch_free(b);
  for (int k = 0; k < STREAMS; k++) {
    seen.member[k] = -1;
    seen.next[k] = 1;
  }
  assert_int_equal(drain(s, 0, 1, &seen),
                   STREAMS * PER_STREAM + STREAMS / 4);

  /* bad membership is refused with the reason */
  es_page_t *p = NULL;
  assert_int_equal(es_group_read(s, "orders", "order", 2, 2, 10, &p),
                   ES_ERR_INVALID);
  assert_null(p);
  assert_non_null(strstr(es_store_last_error(s), "member 2 of 2"));
  assert_int_equal(es_group_read(s, "orders", "order", 0, 65, 10, &p),
                   ES_ERR_INVALID);
  assert_int_equal(es_group_ack(s, "orders", 0, 0, (es_pos_t){1, 1}),
                   ES_ERR_INVALID);
  es_store_close(s);
  PQfinish(c);
  est_drop(db);
}

/* The at-least-once acknowledgements (es_checkpoint_save, es_group_ack,
 * es_member_ack) commit without waiting for the WAL flush unless the
 * store was opened with durable_acks; the same checkpoint in a caller's
 * batch, with the caller's writes, and a reset keep the server's setting
 * (on). A trigger on es_subscriptions writes down the setting each
 * checkpoint's transaction runs with. */
static void test_acknowledgements_wait_for_the_flush_only_when_asked(
    void **state) {
  (void)state;
  char *db = est_db("es_sub_lazy");
  PGconn *c = est_raw(db);
  est_scalar(c, "CREATE TABLE ack_sync (what text, sync text)");
  est_scalar(c, "CREATE FUNCTION note_sync() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN INSERT INTO ack_sync VALUES (TG_OP || ' '"
                " || coalesce(NEW.name, OLD.name),"
                " current_setting('synchronous_commit')); RETURN NULL; END $$");
  est_scalar(c, "CREATE TRIGGER note_sync AFTER INSERT OR UPDATE OR DELETE ON"
                " es_subscriptions FOR EACH ROW EXECUTE FUNCTION note_sync()");
  es_store_t *lazy = est_open(db);
  es_store_opts_t o;
  es_store_opts_init(&o);
  assert_int_equal(o.durable_acks, 0);
  o.durable_acks = 1;
  es_store_t *durable = NULL;
  char err[ES_ERRBUF_SIZE];
  assert_int_equal(es_store_open(db, &o, &durable, err, sizeof err), 0);
  append_n(lazy, "order-1", 0, 3);
  est_wait_global(lazy, 3);
  es_page_t *p = NULL;
  assert_int_equal(es_read_all(lazy, (es_pos_t){0, 0}, NULL, 2, &p), 0);
  es_pos_t at = p->next;
  es_page_free(p);

  assert_int_equal(es_checkpoint_save(lazy, "p-lazy", at), 0);
  assert_int_equal(es_checkpoint_save(durable, "p-durable", at), 0);
  assert_int_equal(es_group_ack(lazy, "g-lazy", 0, 1, at), 0);
  int64_t id = 0;
  assert_int_equal(es_group_join(lazy, "m-lazy", 60000, &id, NULL), 0);
  assert_int_equal(es_member_read(lazy, "m-lazy", "order", id, 10, &p), 0);
  assert_true(p->n == 3 && p->buckets != 0);
  assert_int_equal(es_member_ack(lazy, "m-lazy", id, p->buckets, p->next),
                   0);
  es_page_free(p);
  es_batch_t *b = es_batch_new(NULL);
  assert_int_equal(es_batch_add_checkpoint(b, "p-batch", at), 0);
  assert_int_equal(es_batch_execute(lazy, b), 0);
  es_batch_free(b);
  assert_int_equal(es_checkpoint_reset(lazy, "p-lazy"), 0);

  /* one row per checkpoint row written: the group's for its 64 buckets */
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM ack_sync"),
                   1 + 1 + 64 + 64 + 1 + 1);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM ack_sync WHERE"
                                 " sync = 'off' AND what IN ('INSERT p-lazy',"
                                 " 'INSERT g-lazy', 'INSERT m-lazy')"),
                   1 + 64 + 64);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM ack_sync WHERE"
                                 " sync = 'on' AND what IN ('INSERT"
                                 " p-durable', 'INSERT p-batch',"
                                 " 'DELETE p-lazy')"),
                   3);
  es_store_close(lazy);
  es_store_close(durable);
  PQfinish(c);
  est_drop(db);
}

/* Subscription and group names are 1 to ES_MAX_SUB_NAME bytes, as the
 * schema keeps them: a longer one is refused before it is sent
 * (TOO_LARGE, the error naming the limit), not by the database. */
static void test_names_longer_than_the_schema_keeps_are_refused(
    void **state) {
  (void)state;
  char *db = est_db("es_sub_names");
  es_store_t *s = est_open(db);
  char name[ES_MAX_SUB_NAME + 2];
  memset(name, 'n', sizeof name - 1);
  name[ES_MAX_SUB_NAME] = '\0'; /* the longest kept */
  es_pos_t at = {0, 0};
  assert_int_equal(es_checkpoint_save(s, name, (es_pos_t){1, 1}), 0);
  assert_int_equal(es_checkpoint_load(s, name, &at), 0);
  assert_true(at.tx == 1 && at.pos == 1);
  int64_t id = 0;
  assert_int_equal(es_group_join(s, name, 60000, &id, NULL), 0);
  assert_int_equal(es_group_leave(s, name, id), 0);

  name[ES_MAX_SUB_NAME] = 'n'; /* one byte more */
  name[ES_MAX_SUB_NAME + 1] = '\0';
  assert_int_equal(es_checkpoint_save(s, name, (es_pos_t){1, 1}),
                   ES_ERR_TOO_LARGE);
  assert_non_null(strstr(es_store_last_error(s), "more than 255"));
  assert_int_equal(es_checkpoint_load(s, name, &at), ES_ERR_TOO_LARGE);
  assert_int_equal(es_group_join(s, name, 60000, &id, NULL), ES_ERR_TOO_LARGE);
  es_batch_t *b = es_batch_new(NULL);
  assert_int_equal(es_batch_add_checkpoint(b, name, (es_pos_t){1, 1}),
                   ES_ERR_TOO_LARGE);
  es_batch_free(b);
  es_store_close(s);
  est_drop(db);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_a_named_checkpoint_moves_forward_with_the_subscriber),
      cmocka_unit_test(test_a_group_splits_a_category_by_stream_in_order),
      cmocka_unit_test(
          test_acknowledgements_wait_for_the_flush_only_when_asked),
      cmocka_unit_test(test_names_longer_than_the_schema_keeps_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
