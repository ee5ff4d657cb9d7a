/* The partitioned events table against the embedded PostgreSQL: migration
 * 0003 keeps every event of a populated table and its gap-safe order (read
 * by the library and by the plain SQL of docs/eventstore.md alike), the
 * roll forward starts a new era with the next partition ready, stream
 * versions and event ids stay unique across partitions, and neither the
 * writer role nor the owner can change a partition's rows (the writer
 * cannot drop or detach one either). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "es_test.h"
#include "test_support.h"

/* Every column of every event, in the gap-safe order, as one digest. */
#define FINGERPRINT_SQL                                                       \
  "SELECT md5(string_agg(concat_ws('|', tx_id, global_position, stream_id,"   \
  " stream_version, category, event_id, event_type, encode(data, 'hex'),"     \
  " correlation_id, causation_id, traceparent, metadata::text, recorded_at)," \
  " ',' ORDER BY tx_id, global_position)) FROM es_events"

/* Run sql on c and copy the first column of the first row into out. */
static void text_of(PGconn *c, const char *sql, char *out, size_t len) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_int_equal(PQntuples(r), 1);
  snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
}

static void insert_raw(PGconn *c, const char *stream, int version,
                       const char *data) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "INSERT INTO es_events (stream_id, stream_version, event_id,"
           " event_type, data, correlation_id, metadata) VALUES ('%s', %d,"
           " gen_random_uuid(), 'Old', '%s', 'corr-%s', '{\"k\": \"v\"}')",
           stream, version, data, stream);
  est_scalar(c, sql);
}

/* Global positions in (tx_id, global_position) order as read by the
 * library from the start, into pos (at most max); returns the count. */
static size_t read_order(es_store_t *s, int64_t *pos, size_t max) {
  es_pos_t at = {0, 0};
  size_t n = 0;
  for (;;) {
    es_page_t *p = NULL;
    assert_int_equal(es_read_all(s, at, NULL, 100, &p), 0);
    for (size_t i = 0; i < p->n; i++) {
      assert_true(n < max);
      pos[n++] = p->events[i].global_position;
    }
    at = p->next;
    size_t got = p->n;
    es_page_free(p);
    if (got < 100)
      return n;
  }
}

/* The same, read with the plain SQL of docs/eventstore.md ("Reading from
 * any language"): one statement per page, the checkpoint as a pair, the
 * transaction id as text cast to xid8. */
static size_t read_order_sql(PGconn *c, int64_t *pos, size_t max) {
  char tx[32] = "0", gp[32] = "0";
  size_t n = 0;
  for (;;) {
    const char *v[2] = {tx, gp};
    PGresult *r = PQexecParams(
        c,
        "SELECT tx_id::text, global_position FROM es_events"
        " WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)"
        " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"
        " ORDER BY tx_id, global_position LIMIT 100",
        2, NULL, v, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
      assert_true(n < max);
      pos[n++] = atoll(PQgetvalue(r, i, 1));
    }
    if (rows) {
      snprintf(tx, sizeof tx, "%s", PQgetvalue(r, rows - 1, 0));
      snprintf(gp, sizeof gp, "%s", PQgetvalue(r, rows - 1, 1));
    }
    PQclear(r);
    if (rows < 100)
      return n;
  }
}

static void test_migration_keeps_every_event_and_the_gap_safe_order(
    void **state) {
  (void)state;
  char *db = ts_pg_create_database("es_part_mig");
  char err[ES_ERRBUF_SIZE] = "";
  int v = 0;
  assert_int_equal(es_migrate_to(db, 2, &v, err, sizeof err), 0);
  assert_int_equal(v, 2);

  /* A populated table of the old shape, with commits out of position
   * order: a takes a position, b takes the next and commits first. */
  PGconn *a = est_raw(db), *b = est_raw(db);
  est_scalar(a, "BEGIN");
  insert_raw(a, "late-1", 1, "\\x01");
  est_scalar(b, "BEGIN");
  insert_raw(b, "early-1", 1, "\\x02");
  est_scalar(b, "COMMIT");
  insert_raw(a, "late-1", 2, "\\x03");
  est_scalar(a, "COMMIT");
  est_scalar(a, "INSERT INTO es_events (stream_id, stream_version, event_id,"
                " event_type, data) SELECT 'bulk-' || (i % 50), i / 50 + 1,"
                " gen_random_uuid(), 'Bulk', '\\xabcd'"
                " FROM generate_series(0, 1499) AS i");
  /* a rolled-back append uses up positions that no later append reuses */
  est_scalar(a, "BEGIN");
  insert_raw(a, "gone-1", 1, "\\x04");
  est_scalar(a, "ROLLBACK");
  long long max_used = est_scalar(
      a, "SELECT last_value FROM es_events_global_position_seq");
  assert_int_equal(est_scalar(a, "SELECT count(*) FROM es_events"), 1503);
  /* the order is not the position order */
  assert_true(est_scalar(a, "SELECT count(*) FROM (SELECT global_position,"
                            " lag(global_position) OVER (ORDER BY tx_id,"
                            " global_position) AS prev FROM es_events) x"
                            " WHERE global_position < prev") > 0);
  char before[64], after[64];
  text_of(a, FINGERPRINT_SQL, before, sizeof before);
  PQfinish(b);

  es_store_t *old = NULL;
  /* the library of schema 3 refuses the database of schema 2 */
  assert_int_equal(es_store_open(db, NULL, &old, err, sizeof err),
                   ES_ERR_SCHEMA);
  assert_int_equal(es_migrate(db, &v, err, sizeof err), 0);
  assert_int_equal(v, es_schema_version());

  text_of(a, FINGERPRINT_SQL, after, sizeof after);
  assert_string_equal(before, after);
  assert_int_equal(est_scalar(a, "SELECT count(*) FROM es_events"), 1503);
  assert_int_equal(est_scalar(a, "SELECT count(*) FROM es_events_e0"), 1503);
  assert_int_equal(est_scalar(a, "SELECT (relkind = 'p')::int FROM pg_class"
                                 " WHERE relname = 'es_events'"),
                   1);
  assert_int_equal(
      est_scalar(a, "SELECT last_position FROM es_partitions WHERE era = 0"),
      max_used);

  /* The library reads the same order, then appends after it: positions
   * above every one used, versions continuing the old streams. */
  es_store_t *s = est_open(db);
  int64_t *pos = calloc(2000, sizeof *pos);
  assert_non_null(pos);
  int64_t *by_sql = calloc(2000, sizeof *by_sql);
  assert_non_null(by_sql);
  size_t n = read_order(s, pos, 2000);
  assert_int_equal(n, 1503);
  assert_int_equal(read_order_sql(a, by_sql, 2000), 1503);
  PGresult *r = PQexec(a, "SELECT global_position FROM es_events"
                          " ORDER BY tx_id, global_position");
  assert_int_equal(PQntuples(r), 1503);
  for (int i = 0; i < 1503; i++) {
    assert_int_equal(pos[i], atoll(PQgetvalue(r, i, 0)));
    assert_int_equal(by_sql[i], pos[i]);
  }
  PQclear(r);
  free(pos);
  free(by_sql);

  es_event_t ev = est_event("New", "n");
  es_append_result_t res;
  assert_int_equal(es_append(s, "late-1", 1, &ev, 1, &res), ES_ERR_CONFLICT);
  assert_int_equal(res.version, 2);
  ev = est_event("New", "n");
  assert_int_equal(es_append(s, "late-1", 2, &ev, 1, &res), 0);
  assert_int_equal(res.version, 3);
  assert_true(res.first_position > max_used);
  assert_int_equal(est_scalar(a, "SELECT era FROM es_events WHERE stream_id"
                                 " = 'late-1' AND stream_version = 3"),
                   1);
  /* category and bucket are derived by es_append's rule (migration
   * 0009), as the generated columns derived them before: none is left,
   * on es_events or on a table waiting for its era */
  assert_int_equal(est_scalar(a, "SELECT count(*) FROM es_events WHERE"
                                 " stream_id = 'late-1' AND category = 'late'"
                                 " AND bucket = (hashtextextended('late-1', 0)"
                                 " & 63)"),
                   3);
  assert_int_equal(
      est_scalar(a, "SELECT count(*) FROM pg_attribute a JOIN pg_class c"
                    " ON c.oid = a.attrelid WHERE a.attgenerated <> ''"
                    " AND (c.relname = 'es_events' OR c.relname IN"
                    " (SELECT table_name FROM es_partitions))"),
      0);
  /* an id stored before the migration is still recognised */
  r = PQexec(a, "SELECT encode(uuid_send(event_id), 'hex') FROM es_events"
                " WHERE stream_id = 'early-1'");
  assert_int_equal(PQntuples(r), 1);
  ev = est_event("New", "n");
  for (int i = 0; i < 16; i++) {
    unsigned x = 0;
    assert_int_equal(sscanf(PQgetvalue(r, 0, 0) + 2 * i, "%2x", &x), 1);
    ev.id[i] = (uint8_t)x;
  }
  PQclear(r);
  assert_int_equal(es_append(s, "early-1", 1, &ev, 1, &res),
                   ES_ERR_DUPLICATE);
  assert_int_equal(es_append(s, "other-1", 0, &ev, 1, &res),
                   ES_ERR_ID_REUSED);
  assert_int_equal(es_append(s, "early-1", 0, &ev, 1, &res),
                   ES_ERR_DUPLICATE);
  es_store_close(s);
  PQfinish(a);
  est_drop(db);
}

/* Migration 0007: one index, (category, tx_id, global_position, bucket),
 * takes the place of the category index and of the groups' bucket index,
 * on the partitions in use and on the tables waiting for their era (made
 * from es_events before, they kept their own copies), so that every
 * partition attached later has the parent's indexes and no other. */
static void test_group_index_replaces_two_on_every_partition(void **state) {
  (void)state;
  char *db = ts_pg_create_database("es_part_idx");
  char err[ES_ERRBUF_SIZE] = "";
  int v = 0;
  assert_int_equal(es_migrate_to(db, 6, &v, err, sizeof err), 0);
  PGconn *c = est_raw(db);
  /* the old shape: eras 1 (in use) and 2 (waiting) with both indexes */
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM pg_indexes WHERE"
                                 " tablename IN ('es_events', 'es_events_e1')"
                                 " AND indexdef LIKE '%(category, %'"),
                   4);
  est_scalar(c, "INSERT INTO es_events (stream_id, stream_version, event_id,"
                " event_type, data) SELECT 'cat-' || i, 1,"
                " gen_random_uuid(), 'E', '\\x01'"
                " FROM generate_series(1, 100) AS i");
  assert_int_equal(es_migrate(db, &v, err, sizeof err), 0);
  assert_int_equal(v, es_schema_version());

  es_store_t *s = est_open(db);
  int era = 0;
  assert_int_equal(es_roll_forward(s, 0, 5000, &era), 0);
  assert_int_equal(era, 2); /* era 2's table, made by version 3, attached */
  assert_int_equal(es_roll_forward(s, 0, 5000, &era), 0);
  assert_int_equal(era, 3); /* era 3's, made by version 7 */
  /* every partition: the parent's five indexes, the new one among them,
   * neither old one */
  PGresult *r = PQexec(c, "SELECT p.relname::text, count(*),"
                          " count(*) FILTER (WHERE i.indexdef LIKE"
                          " '%(category, tx_id, global_position, bucket)'),"
                          " count(*) FILTER (WHERE i.indexdef LIKE"
                          " '%(category, tx_id, global_position)' OR"
                          " i.indexdef LIKE '%(category, bucket, %')"
                          " FROM pg_inherits h JOIN pg_class p"
                          " ON p.oid = h.inhrelid JOIN pg_indexes i"
                          " ON i.tablename = p.relname WHERE h.inhparent ="
                          " 'es_events'::regclass GROUP BY p.relname"
                          " ORDER BY p.relname");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_int_equal(PQntuples(r), 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(PQgetvalue(r, i, 1), "5");
    assert_string_equal(PQgetvalue(r, i, 2), "1");
    assert_string_equal(PQgetvalue(r, i, 3), "0");
  }
  PQclear(r);
  /* a category read still sees every event, across the eras (once no
   * transaction of the cluster older than the append is open) */
  es_event_t ev = est_event("E", "2");
  assert_int_equal(es_append(s, "cat-1", 1, &ev, 1, NULL), 0);
  est_wait_global(s, 101);
  es_filter_t f = {.category = "cat"};
  es_page_t *p = NULL;
  assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, &f, 1000, &p), 0);
  assert_int_equal(p->n, 101);
  es_page_free(p);
  es_store_close(s);
  PQfinish(c);
  est_drop(db);
}

static void test_roll_forward_starts_the_next_era_with_one_ready(
    void **state) {
  (void)state;
  char *db = est_db("es_part_roll");
  es_store_t *s = est_open(db);
  PGconn *c = est_raw(db);
  int era = -1;
  /* a fresh database: era 1 current, era 2 ready, no era 0 (the table
   * of the old shape was empty) */
  assert_int_equal(est_scalar(c, "SELECT (string_agg(era::text, ','"
                                 " ORDER BY era) = '1,2')::int"
                                 " FROM es_partitions"),
                   1);
  assert_int_equal(est_scalar(c, "SELECT era FROM es_era"), 1);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM pg_inherits WHERE"
                                 " inhparent = 'es_events'::regclass"),
                   1);

  es_event_t ev[3] = {est_event("A", "1"), est_event("B", "2"),
                      est_event("C", "3")};
  es_append_result_t res;
  assert_int_equal(es_append(s, "roll-1", ES_NO_STREAM, ev, 3, &res), 0);
  int64_t last_e1 = res.last_position;
  uint8_t reused[16];
  memcpy(reused, ev[0].id, 16);

  /* below the threshold: the tables of the next two eras made ready, no
   * switch */
  assert_int_equal(es_roll_forward(s, 1000000, 5000, &era), 0);
  assert_int_equal(era, 1);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_partitions"), 3);
  assert_int_equal(es_roll_forward(s, -1, 5000, &era), ES_ERR_INVALID);
  assert_non_null(strstr(es_store_last_error(s), "min_events"));

  assert_int_equal(es_roll_forward(s, 0, 5000, &era), 0);
  assert_int_equal(era, 2);
  assert_int_equal(est_scalar(c, "SELECT era FROM es_era"), 2);
  /* era 2's table is attached, era 3's is ready (attached when its era
   * starts), and era 1 ends at its last position */
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM pg_inherits WHERE"
                                 " inhparent = 'es_events'::regclass AND"
                                 " inhrelid = 'es_events_e2'::regclass"),
                   1);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM pg_inherits WHERE"
                                 " inhrelid = 'es_events_e3'::regclass"),
                   0);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_partitions WHERE"
                                 " era = 3 AND started_at IS NULL"),
                   1);
  assert_int_equal(
      est_scalar(c, "SELECT last_position FROM es_partitions WHERE era = 1"),
      last_e1);
  assert_int_equal(
      est_scalar(c, "SELECT first_position FROM es_partitions WHERE era = 2"),
      last_e1 + 1);

  /* the stream goes on in the new partition */
  es_event_t d = est_event("D", "4");
  assert_int_equal(es_append(s, "roll-1", 3, &d, 1, &res), 0);
  assert_true(res.first_position > last_e1);
  assert_int_equal(est_era_of(c, "roll-1", 3), 1);
  assert_int_equal(est_era_of(c, "roll-1", 4), 2);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_events_e2"), 1);
  es_page_t *p = NULL;
  assert_int_equal(es_read_stream(s, "roll-1", 1, 10, &p), 0);
  assert_int_equal(p->n, 4);
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(p->events[i].version, (int64_t)i + 1);
  es_page_free(p);

  /* versions and ids stay unique across partitions: a stale version whose
   * next one is in the older partition, an id stored there */
  es_event_t stale = est_event("X", "x");
  assert_int_equal(es_append(s, "roll-1", 2, &stale, 1, &res),
                   ES_ERR_CONFLICT);
  assert_int_equal(res.version, 4);
  es_event_t two[2] = {est_event("X", "x"), est_event("Y", "y")};
  assert_int_equal(es_append(s, "roll-1", 2, two, 2, &res), ES_ERR_CONFLICT);
  es_event_t again = est_event("X", "x");
  memcpy(again.id, reused, 16);
  assert_int_equal(es_append(s, "roll-2", 0, &again, 1, &res),
                   ES_ERR_ID_REUSED);
  es_batch_t *b = es_batch_new(NULL);
  es_event_t e1 = est_event("X", "x"), e2 = est_event("X", "x");
  memcpy(e2.id, reused, 16);
  assert_int_equal(es_batch_add(b, "roll-3", 0, &e1, 1), 0);
  assert_int_equal(es_batch_add(b, "roll-4", 0, &e2, 1), 1);
  es_event_t e3 = est_event("X", "x");
  assert_int_equal(es_batch_add(b, "roll-1", 1, &e3, 1), 2);
  assert_int_equal(es_batch_execute(s, b), 0);
  assert_int_equal(es_batch_result(b, 0)->status, 0);
  assert_int_equal(es_batch_result(b, 1)->status, ES_ERR_ID_REUSED);
  assert_int_equal(es_batch_result(b, 2)->status, ES_ERR_CONFLICT);
  es_batch_free(b);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM (SELECT stream_id,"
                                 " stream_version FROM es_events GROUP BY 1, 2"
                                 " HAVING count(*) > 1) x"),
                   0);

  /* global reads run across the partitions in the gap-safe order */
  est_wait_global(s, 5);
  int64_t got[5];
  es_pos_t at = {0, 0};
  assert_int_equal(es_read_all(s, at, NULL, 5, &p), 0);
  assert_int_equal(p->n, 5);
  for (size_t i = 0; i < 5; i++)
    got[i] = p->events[i].global_position;
  es_page_free(p);
  for (size_t i = 1; i < 5; i++)
    assert_true(got[i] > got[i - 1]);

  /* an append in flight holds the switch back; it gives up, unchanged */
  PGconn *rival = est_rival(db, "rival-1");
  assert_int_equal(es_roll_forward(s, 0, 50, &era), ES_ERR_RETRY);
  assert_non_null(strstr(es_store_last_error(s), "lock"));
  est_scalar(rival, "COMMIT");
  PQfinish(rival);
  assert_int_equal(est_scalar(c, "SELECT era FROM es_era"), 2);
  assert_int_equal(est_era_of(c, "rival-1", 1), 2);
  assert_int_equal(es_roll_forward(s, 0, 5000, &era), 0);
  assert_int_equal(era, 3);
  /* so does an archive's drop checking an era (it holds the switch's
   * advisory lock): within the same wait, not for as long as it takes */
  PGconn *holder = PQconnectdb(db);
  assert_int_equal(PQstatus(holder), CONNECTION_OK);
  est_scalar(holder, "SELECT 1 FROM pg_advisory_lock(7310868361213556)");
  assert_int_equal(es_roll_forward(s, 0, 50, &era), ES_ERR_RETRY);
  assert_non_null(strstr(es_store_last_error(s), "lock"));
  PQfinish(holder);
  assert_int_equal(es_roll_forward(s, 0, 5000, &era), 0);
  assert_int_equal(era, 4);
  es_store_close(s);
  PQfinish(c);
  est_drop(db);
}

static void expect_state(PGconn *c, const char *sql, const char *state) {
  const char *got = est_sqlstate(c, sql);
  if (strcmp(got, state))
    fprintf(stderr, "%s: expected %s, got %s\n", sql, state, got);
  assert_string_equal(got, state);
}

/* Statements about a partition: %1$s is its table name. */
static const char *const row_changes[] = {
    "UPDATE %1$s SET event_type = 'x'", "DELETE FROM %1$s", "TRUNCATE %1$s",
    NULL};
static const char *const writer_refused[] = {
    "DROP TABLE %1$s",
    "ALTER TABLE es_events DETACH PARTITION %1$s",
    "ALTER TABLE %1$s NO INHERIT es_events",
    "INSERT INTO %1$s (global_position, stream_id, stream_version, event_id,"
    " event_type, data, era) VALUES (1, 'x', 1, gen_random_uuid(), 'x',"
    " '\\x00', 1)",
    NULL};

/* Each statement of stmts, about each of the tables the current era's
 * partition and the table ready for the next, fails with state. */
static void expect_on_partitions(PGconn *c, const char *const *stmts,
                                 const char *state) {
  static const char *const parts[] = {"es_events_e1", "es_events_e2"};
  char sql[256];
  for (size_t i = 0; i < 2; i++)
    for (size_t k = 0; stmts[k]; k++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
      snprintf(sql, sizeof sql, stmts[k], parts[i]);
#pragma GCC diagnostic pop
      expect_state(c, sql, state);
    }
}

/* Insert stream late-N's first event into era `era` by hand, into
 * `table` (es_events before migration 0009, es_append after); the
 * statement ends with SQLSTATE state ("" for success). */
static void insert_late(PGconn *c, const char *table, int n, int era,
                        const char *state) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "INSERT INTO %s (stream_id, stream_version, event_id,"
           " event_type, data, era) VALUES ('late-%d', 1, gen_random_uuid(),"
           " 'E', '\\x01', %d)",
           table, n, era);
  expect_state(c, sql, state);
}

/* Migration 0008: an era that has ended takes no more rows, whether it
 * ended before the migration or at a switch after it (ES003, for the
 * owner too); the current era takes them, and an insert without an era
 * goes to the current one. */
static void test_an_ended_era_refuses_new_rows(void **state) {
  (void)state;
  char *db = ts_pg_create_database("es_part_ended");
  char err[ES_ERRBUF_SIZE] = "";
  int v = 0;
  assert_int_equal(es_migrate_to(db, 7, &v, err, sizeof err), 0);
  PGconn *c = est_raw(db);
  assert_int_equal(est_scalar(c, "SELECT es_roll_forward(0, 5000)"), 2);
  /* before the migration, era 1 still took a row after it ended */
  insert_late(c, "es_events", 1, 1, "");
  assert_int_equal(es_migrate(db, &v, err, sizeof err), 0);
  assert_int_equal(v, es_schema_version());
  insert_late(c, "es_append", 2, 1, "ES003");
  insert_late(c, "es_append", 3, 2, "");
  /* a switch after the migration ends era 2 the same way */
  assert_int_equal(est_scalar(c, "SELECT es_roll_forward(0, 5000)"), 3);
  insert_late(c, "es_append", 4, 2, "ES003");
  insert_late(c, "es_append", 5, 3, "");
  expect_state(c,
               "INSERT INTO es_append (stream_id, stream_version, event_id,"
               " event_type, data) VALUES ('late-6', 1, gen_random_uuid(),"
               " 'E', '\\x01')",
               "");
  assert_int_equal(est_scalar(c, "SELECT era FROM es_events"
                                 " WHERE stream_id = 'late-6'"),
                   3);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_events"), 4);
  PQfinish(c);
  est_drop(db);
}

static void test_no_role_changes_a_partition_and_the_writer_cannot_drop(
    void **state) {
  (void)state;
  char *db = est_db("es_part_roles");
  es_store_t *s = est_open(db);
  es_event_t ev = est_event("A", "1");
  assert_int_equal(es_append(s, "keep-1", ES_NO_STREAM, &ev, 1, NULL), 0);
  PGconn *c = est_raw(db);
  /* the owner: every partition refuses a change of its rows */
  expect_on_partitions(c, row_changes, "ES001");
  expect_state(c, "DELETE FROM es_events", "ES001");
  expect_state(c, "TRUNCATE es_events", "ES001");

  /* the writer: no change, no drop, no detach, not even a direct insert */
  est_scalar(c, "SET ROLE es_writer");
  expect_on_partitions(c, row_changes, "42501");
  expect_on_partitions(c, writer_refused, "42501");
  expect_state(c, "DROP TABLE es_events", "42501");
  expect_state(c, "UPDATE es_era SET era = 7", "42501");
  expect_state(c, "DELETE FROM es_partitions", "42501");
  expect_state(c, "SELECT es_create_partition(9)", "42501");
  /* it may roll forward; what that creates is the owner's */
  expect_state(c, "SELECT es_roll_forward(0, 5000)", "");
  expect_state(c, "ALTER TABLE es_events DETACH PARTITION es_events_e2",
               "42501");
  expect_state(c, "DROP TABLE es_events_e3", "42501");
  expect_state(c, "DELETE FROM es_events_e3", "42501");
  est_scalar(c, "RESET ROLE");
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_events"), 1);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM pg_tables WHERE"
                                 " tablename LIKE 'es_events_e%' AND"
                                 " tableowner = 'es_writer'"),
                   0);
  es_store_close(s);
  PQfinish(c);
  est_drop(db);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_migration_keeps_every_event_and_the_gap_safe_order),
      cmocka_unit_test(test_roll_forward_starts_the_next_era_with_one_ready),
      cmocka_unit_test(test_an_ended_era_refuses_new_rows),
      cmocka_unit_test(test_group_index_replaces_two_on_every_partition),
      cmocka_unit_test(
          test_no_role_changes_a_partition_and_the_writer_cannot_drop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
