/* Retention and archive against the embedded PostgreSQL: saga-es-archive
 * archives the eras whose streams are all finished and that ended before
 * the retention period, reads each file back, drops the era's table in one
 * audited step done by es_admin and removes the saga_index rows of the
 * sagas archived whole (the coordinator's own SQL makes the table); a
 * running saga's era is kept whatever its age; the file reads back equal
 * to the stored events, byte for byte; a changed file is refused; a dry
 * run changes nothing; the writer role can neither archive nor drop. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "es_test.h"
#include "test_support.h"

/* coordinator/io/sql, as sagad applies it (the generated sagad_sql.c) */
extern const char *const sagad__sql_migrations[];
extern const size_t sagad__n_sql_migrations;

typedef struct {
  char *db;
  char dir[128];
  char file[256];      /* the archive of era 1 */
  es_recorded_t *orig; /* era 1's events as stored, copied */
  size_t n_orig;
  es_page_t *pages[8];
  size_t n_pages;
} fixture_t;

/* Run saga-es-archive with the arguments (NULL-terminated); its stdout
 * and stderr together into out (static). Returns its exit code. */
static int run_tool(char *out, size_t len, ...) {
  const char *argv[16] = {ARCHIVE_BIN};
  int n = 1;
  va_list ap;
  va_start(ap, len);
  for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 15;)
    argv[n++] = a;
  va_end(ap);
  char path[] = "/tmp/es_archive_outXXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    execv(ARCHIVE_BIN, (char *const *)(void *)argv);
    _exit(127);
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  ssize_t got = pread(fd, out, len - 1, 0);
  out[got > 0 ? got : 0] = '\0';
  close(fd);
  unlink(path);
  fprintf(stderr, "saga-es-archive said:\n%s", out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void apply_coordinator_sql(const char *db) {
  PGconn *c = est_raw(db);
  for (size_t i = 0; i < sagad__n_sql_migrations; i++) {
    PGresult *r = PQexec(c, sagad__sql_migrations[i]);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
  }
  PQfinish(c);
}

static void index_saga(PGconn *c, const char *id, const char *status) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "INSERT INTO saga_index (saga_id, saga_type, definition_version,"
           " status, partition, version, started_at, updated_at) VALUES"
           " ('%s', 'order', 1, '%s', 0, 1, now(), now()) ON CONFLICT"
           " (saga_id) DO UPDATE SET status = excluded.status",
           id, status);
  est_scalar(c, sql);
}

static void append(es_store_t *s, const char *stream, int n) {
  static const es_kv_t meta[] = {{"tenant", "acme"}, {"k", "v\"q"}};
  for (int i = 0; i < n; i++) {
    unsigned char data[6] = {0, 1, 0xff, 0, (unsigned char)i, '\n'};
    es_event_t e = {0};
    e.type = i ? "StepDone" : "Started";
    e.data = data;
    e.data_len = sizeof data;
    e.correlation_id = i % 2 ? "corr-1" : NULL;
    e.causation_id = "cause";
    e.traceparent =
        i % 2 ? NULL
              : "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    e.meta = i % 2 ? meta : NULL;
    e.n_meta = i % 2 ? 2 : 0;
    assert_int_equal(es_append(s, stream, i, &e, 1, NULL), 0);
  }
}

/* Ended long ago: every ended era's end moved back by days. */
static void age_eras(PGconn *c, int days) {
  char sql[160];
  snprintf(sql, sizeof sql,
           "UPDATE es_partitions SET ended_at = now() - interval '%d days'"
           " WHERE ended_at IS NOT NULL",
           days);
  est_scalar(c, sql);
}

static int table_exists(PGconn *c, const char *t) {
  char sql[128];
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM pg_class WHERE relname ="
           " '%s'",
           t);
  return est_scalar(c, sql) == 1;
}

static int has(const char *out, const char *s) {
  if (strstr(out, s))
    return 1;
  fprintf(stderr, "expected \"%s\" in the output\n", s);
  return 0;
}

/* A store with era 1 (two completed sagas and a closed stream), era 2 (a
 * completed saga and a running one) and era 3 current, both old eras ended
 * 100 days ago. Keeps era 1's events as stored. */
static void build(fixture_t *f) {
  f->db = est_db("es_archive");
  apply_coordinator_sql(f->db);
  snprintf(f->dir, sizeof f->dir, "/tmp/es_archive_%d_XXXXXX", (int)getpid());
  assert_non_null(mkdtemp(f->dir));
  es_store_t *s = est_open(f->db);
  PGconn *c = est_raw(f->db);
  append(s, "saga-done1", 3);
  append(s, "saga-done2", 2);
  append(s, "order-7", 2);
  assert_int_equal(es_close_stream(s, "order-7"), 0);
  assert_int_equal(es_close_stream(s, "order-7"), 0);
  index_saga(c, "done1", "completed");
  index_saga(c, "done2", "compensated");
  int era = 0;
  assert_int_equal(es_roll_forward(s, 0, 0, &era), 0);
  assert_int_equal(era, 2);
  append(s, "saga-done3", 2);
  append(s, "saga-running", 2);
  index_saga(c, "done3", "completed");
  index_saga(c, "running", "running");
  assert_int_equal(es_roll_forward(s, 0, 0, &era), 0);
  assert_int_equal(era, 3);
  age_eras(c, 100);
  /* era 1's events as the library reads them */
  est_wait_global(s, 11);
  es_page_t *p = NULL;
  assert_int_equal(es_read_all(s, (es_pos_t){0, 0}, NULL, 100, &p), 0);
  assert_int_equal(p->n, 11);
  f->orig = p->events;
  f->n_orig = 7;
  f->pages[f->n_pages++] = p;
  snprintf(f->file, sizeof f->file, "%s/es_events_e1.archive.gz", f->dir);
  PQfinish(c);
  es_store_close(s);
}

static void teardown(fixture_t *f) {
  for (size_t i = 0; i < f->n_pages; i++)
    es_page_free(f->pages[i]);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  est_drop(f->db);
}

static char *as_admin(const char *db) {
  static char ci[1024];
  snprintf(ci, sizeof ci, "%s options='-c role=es_admin'", db);
  return ci;
}

static void assert_same_event(const es_recorded_t *a, const es_recorded_t *b) {
  assert_int_equal(a->global_position, b->global_position);
  assert_true(a->at.tx == b->at.tx);
  assert_string_equal(a->stream_id, b->stream_id);
  assert_int_equal(a->version, b->version);
  assert_memory_equal(a->id, b->id, 16);
  assert_string_equal(a->type, b->type);
  assert_int_equal(a->data_len, b->data_len);
  assert_memory_equal(a->data, b->data, a->data_len);
  const char *x[] = {a->correlation_id, a->causation_id, a->traceparent,
                     a->meta_json};
  const char *y[] = {b->correlation_id, b->causation_id, b->traceparent,
                     b->meta_json};
  for (int i = 0; i < 4; i++) {
    assert_true((x[i] == NULL) == (y[i] == NULL));
    if (x[i])
      assert_string_equal(x[i], y[i]);
  }
  assert_int_equal(a->recorded_at_us, b->recorded_at_us);
}

static void test_a_dry_run_lists_the_eras_and_changes_nothing(void **state) {
  (void)state;
  fixture_t f = {0};
  build(&f);
  PGconn *c = est_raw(f.db);
  long long events = est_scalar(c, "SELECT count(*) FROM es_events");
  char out[8192];
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "90d", "--dry-run", NULL),
                   0);
  assert_true(has(out, "era 1 (es_events_e1): 7 events in 3 streams"));
  assert_true(has(out, "would be archived"));
  assert_true(has(out, "era 2 (es_events_e2): kept: 1 of its 2 streams not "
                       "finished (first: \"saga-running\")"));
  /* within a longer retention period, nothing is due */
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "101d", "--dry-run", NULL),
                   0);
  assert_true(has(out, "era 1 (es_events_e1): kept: ended"));
  assert_true(has(out, "no era to archive"));
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_events"), events);
  assert_true(table_exists(c, "es_events_e1"));
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_archive_log"), 0);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index"), 4);
  assert_int_equal(access(f.file, F_OK), -1);
  PQfinish(c);
  teardown(&f);
}

static void
test_finished_eras_are_archived_and_read_back_byte_for_byte(void **state) {
  (void)state;
  fixture_t f = {0};
  build(&f);
  PGconn *c = est_raw(f.db);
  char out[8192];
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "90d", "--dir", f.dir, NULL),
                   0);
  assert_true(has(out, "era 1: 7 events of 3 streams archived to"));
  assert_true(has(out, "2 saga_index rows removed"));
  /* era 1 is gone from the store, with its sagas' index rows; era 2 holds
   * a running saga and stays */
  assert_false(table_exists(c, "es_events_e1"));
  assert_true(table_exists(c, "es_events_e2"));
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_events"), 4);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index WHERE"
                                 " saga_id IN ('done1', 'done2')"),
                   0);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index"), 2);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_partitions WHERE"
                                 " era = 1 AND archived_at IS NOT NULL"),
                   1);
  /* the audit: who, which era, which file, the counts and the checksum */
  assert_int_equal(
      est_scalar(c, "SELECT count(*) FROM es_archive_log WHERE era = 1 AND"
                    " archived_by = session_user AND events = 7 AND"
                    " streams = 3 AND sagas = 2 AND table_name ="
                    " 'es_events_e1' AND file LIKE '%/es_events_e1.archive.gz'"
                    " AND checksum LIKE 'crc32:%'"),
      1);

  /* read back: the same events, in the same order, every byte */
  es_archive_t *ar = NULL;
  char err[ES_ERRBUF_SIZE] = "";
  assert_int_equal(es_archive_open(f.file, &ar, err, sizeof err), 0);
  assert_int_equal(es_archive_info(ar)->era, 1);
  assert_string_equal(es_archive_info(ar)->table, "es_events_e1");
  size_t seen = 0;
  for (;;) {
    es_page_t *p = NULL;
    assert_int_equal(es_archive_read(ar, NULL, 3, &p), 0);
    for (size_t i = 0; i < p->n; i++) {
      assert_true(seen < f.n_orig);
      assert_same_event(&p->events[i], &f.orig[seen++]);
    }
    size_t n = p->n;
    es_page_free(p);
    if (n == 0)
      break;
  }
  assert_int_equal(seen, f.n_orig);
  const es_archive_info_t *in = es_archive_info(ar);
  assert_int_equal(in->complete, 1);
  assert_int_equal(in->events, 7);
  assert_int_equal(in->streams, 3);
  char sum[128];
  snprintf(sum, sizeof sum,
           "SELECT count(*) FROM es_archive_log WHERE checksum ="
           " 'crc32:%08x'",
           (unsigned)in->checksum);
  assert_int_equal(est_scalar(c, sum), 1);
  es_archive_close(ar);

  /* one stream's events, in version order */
  assert_int_equal(es_archive_open(f.file, &ar, err, sizeof err), 0);
  es_page_t *p = NULL;
  assert_int_equal(es_archive_read(ar, "saga-done1", 100, &p), 0);
  assert_int_equal(p->n, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_string_equal(p->events[i].stream_id, "saga-done1");
    assert_int_equal(p->events[i].version, (int64_t)i + 1);
  }
  es_page_free(p);
  assert_int_equal(es_archive_read(ar, "saga-done1", 100, &p), 0);
  assert_int_equal(p->n, 0);
  es_page_free(p);
  es_archive_close(ar);

  /* the running saga's era is kept however old, until the saga ends */
  age_eras(c, 10000);
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "0ms", "--dir", f.dir, NULL),
                   0);
  assert_true(has(out, "era 2 (es_events_e2): kept: 1 of its 2 streams"));
  assert_true(table_exists(c, "es_events_e2"));
  index_saga(c, "running", "completed");
  /* terminal, but its final notification not yet delivered: still kept */
  est_scalar(c, "UPDATE saga_index SET notify_pending = true WHERE saga_id"
                " = 'running'");
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "0ms", "--dir", f.dir, NULL),
                   0);
  assert_true(table_exists(c, "es_events_e2"));
  est_scalar(c, "UPDATE saga_index SET notify_pending = false");
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "0ms", "--dir", f.dir, NULL),
                   0);
  assert_true(has(out, "era 2: 4 events of 2 streams archived"));
  assert_false(table_exists(c, "es_events_e2"));
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index"), 0);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_archive_log"), 2);
  /* appends go on in the current era */
  es_store_t *s = est_open(f.db);
  append(s, "saga-later", 1);
  es_store_close(s);
  PQfinish(c);
  teardown(&f);
}

/* Decompress path, change the byte at offset from the end of what holds
 * the events, compress it again as a well-formed gzip file. */
static void tamper(const char *path, long from_end) {
  gzFile in = gzopen(path, "rb");
  assert_non_null(in);
  static char buf[1 << 16];
  int n = gzread(in, buf, sizeof buf);
  assert_true(n > 100);
  gzclose(in);
  buf[n - from_end] ^= 0x20;
  gzFile out = gzopen(path, "wb");
  assert_non_null(out);
  assert_int_equal(gzwrite(out, buf, (unsigned)n), n);
  assert_int_equal(gzclose(out), Z_OK);
}

/* ---- archives made by hand, to damage them in ways the tool never does */

static void put_be(unsigned char *p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)(v & 0xff);
}

/* An archive of era 1 with one event of stream "s-1" into buf (its
 * length); the manifest ends with extra (a line or ""); body_len, when
 * not 0, replaces the event record's length and cuts the file there. */
static const char *craft_era = "era: 1\n"; /* "": a header without it */

static size_t craft(unsigned char *buf, size_t cap, const char *extra,
                    uint32_t body_len) {
  size_t n = (size_t)snprintf((char *)buf, cap,
                              "saga-es-archive 1\n%stable: es_events_e1"
                              "\ncreated-at: 2024-01-01T00:00:00Z\n"
                              "first-position: 1\nlast-position: 9\n\n",
                              craft_era);
  unsigned char *r = buf + n;
  r[0] = 'E';
  size_t at = 5;
  put_be(r + at, 1, 8);      /* global position */
  put_be(r + at + 8, 7, 8);  /* tx */
  put_be(r + at + 16, 1, 8); /* version */
  put_be(r + at + 24, 0, 8); /* recorded at */
  memset(r + at + 32, 0x11, 16);
  at += 48;
  const char *fields[7] = {"s-1", "T", "d", NULL, NULL, NULL, NULL};
  for (int i = 0; i < 7; i++) {
    size_t len = fields[i] ? strlen(fields[i]) : 0;
    put_be(r + at, fields[i] ? len : 0xffffffffu, 4);
    memcpy(r + at + 4, fields[i] ? fields[i] : "", len);
    at += 4 + len;
  }
  put_be(r + 1, at - 5, 4);
  if (body_len) {
    put_be(r + 1, body_len, 4);
    return n + 5 + 10; /* ends inside the record */
  }
  n += at;
  uint32_t crc = (uint32_t)crc32(0, buf, (uInt)n);
  char man[256];
  int m = snprintf(man, sizeof man,
                   "events: 1\nstreams: 1\nchecksum: crc32:%08x\n%s",
                   (unsigned)crc, extra);
  buf[n] = 'M';
  put_be(buf + n + 1, (uint64_t)m, 4);
  memcpy(buf + n + 5, man, (size_t)m);
  assert_true(n + 5 + (size_t)m < cap);
  return n + 5 + (size_t)m;
}

/* Write raw to path, gzip-compressed or as it is, then junk (may be
 * NULL) after it. */
static void write_file(const char *path, const unsigned char *raw, size_t len,
                       int gz, const char *junk) {
  if (gz) {
    gzFile out = gzopen(path, "wb");
    assert_non_null(out);
    assert_int_equal(gzwrite(out, raw, (unsigned)len), (int)len);
    assert_int_equal(gzclose(out), Z_OK);
  } else {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(raw, 1, len, f), len);
    fclose(f);
  }
  if (junk) {
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fputs(junk, f);
    fclose(f);
  }
}

/* What the reader promises of a damaged file: a read error is IO, and the
 * end is verified -- the gzip stream ended whole and nothing follows it --
 * so bytes after the stream, or a file that is not gzip at all, are
 * CORRUPT; the manifest, outside the checksum, cannot change what the
 * header said; a record length damaged into a huge one fails as a
 * truncation. */
static void test_a_damaged_archive_file_answers_the_documented_code(
    void **state) {
  (void)state;
  char dir[] = "/tmp/es_archive_craft_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128], err[ES_ERRBUF_SIZE];
  snprintf(path, sizeof path, "%s/a.gz", dir);
  static unsigned char raw[4096];
  es_archive_info_t in;
  size_t n = craft(raw, sizeof raw, "", 0);
  write_file(path, raw, n, 1, NULL);
  assert_int_equal(es_archive_verify(path, &in, err, sizeof err), 0);
  assert_int_equal(in.events, 1);

  write_file(path, raw, n, 1, "left over\n");
  assert_int_equal(es_archive_verify(path, NULL, err, sizeof err),
                   ES_ERR_CORRUPT);
  assert_non_null(strstr(err, "after the end of the gzip stream"));

  write_file(path, raw, n, 0, NULL);
  assert_int_equal(es_archive_verify(path, NULL, err, sizeof err),
                   ES_ERR_CORRUPT);
  assert_non_null(strstr(err, "not a gzip file"));

  n = craft(raw, sizeof raw, "era: 99\ntable: es_events_e99\n", 0);
  write_file(path, raw, n, 1, NULL);
  assert_int_equal(es_archive_verify(path, &in, err, sizeof err), 0);
  assert_int_equal(in.era, 1);
  assert_string_equal(in.table, "es_events_e1");

  /* no era in the header: CORRUPT (it read as era 0, a real era) */
  craft_era = "";
  n = craft(raw, sizeof raw, "", 0);
  craft_era = "era: 1\n";
  write_file(path, raw, n, 1, NULL);
  assert_int_equal(es_archive_verify(path, &in, err, sizeof err),
                   ES_ERR_CORRUPT);
  assert_non_null(strstr(err, "header lacks the era"));

  n = craft(raw, sizeof raw, "", UINT32_C(1) << 30);
  write_file(path, raw, n, 1, NULL);
  assert_int_equal(es_archive_verify(path, NULL, err, sizeof err),
                   ES_ERR_CORRUPT);
  assert_non_null(strstr(err, "truncated"));

  /* a directory opens, then cannot be read */
  assert_int_equal(es_archive_verify(dir, NULL, err, sizeof err), ES_ERR_IO);
  assert_non_null(strstr(err, "Is a directory"));
  es_archive_t *ar = NULL;
  assert_int_equal(es_archive_open(dir, &ar, err, sizeof err), ES_ERR_IO);
  assert_null(ar);

  unlink(path);
  assert_int_equal(rmdir(dir), 0);
}

static void test_a_changed_or_truncated_archive_is_refused(void **state) {
  (void)state;
  fixture_t f = {0};
  build(&f);
  char out[8192];
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "90d", "--dir", f.dir, NULL),
                   0);
  char err[ES_ERRBUF_SIZE] = "";
  es_archive_info_t in;
  assert_int_equal(es_archive_verify(f.file, &in, err, sizeof err), 0);
  assert_int_equal(run_tool(out, sizeof out, "--verify", f.file, NULL), 0);
  assert_true(has(out, "era 1 (es_events_e1), 7 events in 3 streams"));

  char copy[300], cmd[700];
  snprintf(copy, sizeof copy, "%s/copy.gz", f.dir);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", f.file, copy);
  assert_int_equal(system(cmd), 0);
  /* a byte of the last event's metadata, inside a valid gzip stream: only
   * the archive's own checksum can tell */
  tamper(copy, 70);
  assert_int_equal(es_archive_verify(copy, NULL, err, sizeof err),
                   ES_ERR_CORRUPT);
  assert_non_null(strstr(err, "checksum mismatch"));
  assert_int_equal(run_tool(out, sizeof out, "--verify", copy, NULL), 1);
  assert_true(has(out, "checksum mismatch"));
  /* a reader stops at the same place */
  es_archive_t *ar = NULL;
  assert_int_equal(es_archive_open(copy, &ar, err, sizeof err), 0);
  es_page_t *p = NULL;
  assert_int_equal(es_archive_read(ar, NULL, 100, &p), ES_ERR_CORRUPT);
  assert_null(p);
  assert_non_null(strstr(es_archive_last_error(ar), "checksum mismatch"));
  assert_int_equal(es_archive_read(ar, NULL, 100, &p), ES_ERR_CORRUPT);
  es_archive_close(ar);

  /* truncated: the compressed file cut in half */
  struct stat st;
  assert_int_equal(stat(f.file, &st), 0);
  assert_int_equal(truncate(copy, 0), 0);
  snprintf(cmd, sizeof cmd, "head -c %lld '%s' > '%s'",
           (long long)st.st_size / 2, f.file, copy);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(es_archive_verify(copy, NULL, err, sizeof err),
                   ES_ERR_CORRUPT);
  /* not an archive; no file */
  assert_int_equal(es_archive_verify(ARCHIVE_BIN, NULL, err, sizeof err),
                   ES_ERR_CORRUPT);
  assert_non_null(strstr(err, "not an event store archive"));
  assert_int_equal(
      es_archive_verify("/nonexistent/x.gz", NULL, err, sizeof err), ES_ERR_IO);
  teardown(&f);
}

static void test_the_writer_can_neither_archive_nor_drop(void **state) {
  (void)state;
  fixture_t f = {0};
  build(&f);
  char out[8192], ci[1024];
  snprintf(ci, sizeof ci, "%s options='-c role=es_writer'", f.db);
  assert_int_equal(run_tool(out, sizeof out, ci, "--older-than", "90d", "--dir",
                            f.dir, NULL),
                   1);
  assert_true(has(out, "es_admin"));
  PGconn *c = est_raw(f.db);
  est_scalar(c, "SET ROLE es_writer");
  static const char *const refused[] = {
      "SELECT es_archive_drop(1, '/x', 7, 3, 1, 7, 'crc32:00000000', 0)",
      "SELECT * FROM es_archive_candidates(0)",
      "ALTER TABLE es_events DETACH PARTITION es_events_e1",
      "DROP TABLE es_events_e1",
      "SELECT count(*) FROM es_archive_log",
      "DELETE FROM es_closed_streams",
      "UPDATE es_partitions SET archived_at = now()",
  };
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
    assert_string_equal(est_sqlstate(c, refused[i]), "42501");
  /* es_admin drops only through es_archive_drop, and only what the
   * archive holds; nobody changes the audit */
  est_scalar(c, "RESET ROLE");
  est_scalar(c, "SET ROLE es_admin");
  assert_string_equal(est_sqlstate(c, "DROP TABLE es_events_e1"), "42501");
  assert_string_equal(
      est_sqlstate(c, "ALTER TABLE es_events DETACH PARTITION es_events_e1"),
      "42501");
  assert_string_equal(est_sqlstate(c,
                                   "SELECT es_archive_drop(1, '/x', 6, 3, 1, 7,"
                                   " 'crc32:00000000', 0)"),
                      "55000");
  assert_string_equal(
      est_sqlstate(c, "SELECT es_archive_drop(2, '/x', 4, 2, 8, 11,"
                      " 'crc32:00000000', 0)"),
      "55000"); /* a running saga */
  assert_string_equal(
      est_sqlstate(c, "SELECT es_archive_drop(3, '/x', 0, 0, NULL, NULL,"
                      " 'crc32:00000000', 0)"),
      "55000"); /* the current era */
  assert_string_equal(est_sqlstate(c, "DELETE FROM es_archive_log"), "42501");
  est_scalar(c, "RESET ROLE");
  assert_string_equal(est_sqlstate(c, "DELETE FROM es_archive_log"), "ES001");
  assert_true(table_exists(c, "es_events_e1"));
  assert_true(table_exists(c, "es_events_e2"));
  PQfinish(c);
  teardown(&f);
}

/* A reader in an open transaction holds off the detach: the drop gives
 * up after --lock-wait, nothing changes, and the next run archives. */
static void test_a_drop_that_cannot_get_its_lock_changes_nothing(void **state) {
  (void)state;
  fixture_t f = {0};
  build(&f);
  PGconn *c = est_raw(f.db), *reader = est_raw(f.db);
  est_scalar(reader, "BEGIN");
  est_scalar(reader, "SELECT count(*) FROM es_events");
  char out[8192];
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "90d", "--dir", f.dir, "--lock-wait", "200ms",
                            NULL),
                   1);
  assert_true(has(out, "lock timeout"));
  assert_true(has(out, "era 1 kept in the store"));
  assert_true(table_exists(c, "es_events_e1"));
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_archive_log"), 0);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM saga_index"), 4);
  assert_int_equal(est_scalar(c, "SELECT count(*) FROM es_partitions WHERE"
                                 " archived_at IS NOT NULL"),
                   0);
  est_scalar(reader, "COMMIT");
  PQfinish(reader);
  /* and so does an era switch in progress (its advisory lock): within
   * --lock-wait too, not for as long as the switch takes */
  PGconn *holder = est_raw(f.db);
  est_scalar(holder, "SELECT 1 FROM pg_advisory_lock(7310868361213556)");
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "90d", "--dir", f.dir, "--lock-wait", "200ms",
                            NULL),
                   1);
  assert_true(has(out, "lock timeout"));
  assert_true(table_exists(c, "es_events_e1"));
  PQfinish(holder);
  assert_int_equal(run_tool(out, sizeof out, as_admin(f.db), "--older-than",
                            "90d", "--dir", f.dir, NULL),
                   0);
  assert_true(has(out, "era 1: 7 events of 3 streams archived"));
  assert_false(table_exists(c, "es_events_e1"));
  char err[ES_ERRBUF_SIZE] = "";
  assert_int_equal(es_archive_verify(f.file, NULL, err, sizeof err), 0);
  PQfinish(c);
  teardown(&f);
}

/* Usage errors exit 2 with one line saying what is wrong, then the
 * usage: an option without its value, an unknown option, --verify with
 * what only an archive run takes. */
static void test_usage_errors_say_what_is_wrong(void **state) {
  (void)state;
  static const struct {
    const char *args[4], *want;
  } cases[] = {
      {{"--verify", NULL}, "--verify needs a value (an archive file)"},
      {{"dbname=x", "--older-than", "1d", "--dir"},
       "--dir needs a value (a directory)"},
      {{"dbname=x", "--older-than", NULL},
       "--older-than needs a value (a duration, e.g. 90d)"},
      {{"--bogus", NULL}, "unknown option \"--bogus\""},
      {{"dbname=x", "stray", NULL},
       "unexpected argument \"stray\" (the CONNINFO is \"dbname=x\";"},
      {{"--verify", "a.gz", "dbname=x", NULL},
       "--verify FILE takes no CONNINFO, --dir or --dry-run"},
      {{NULL}, "a CONNINFO is required"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[8192], want[256];
    const char *const *a = cases[i].args;
    assert_int_equal(run_tool(out, sizeof out, a[0], a[0] ? a[1] : NULL,
                              a[0] && a[1] ? a[2] : NULL,
                              a[0] && a[1] && a[2] ? a[3] : NULL, NULL),
                     2);
    snprintf(want, sizeof want, "saga-es-archive: %s", cases[i].want);
    assert_true(strncmp(out, want, strlen(want)) == 0);
    assert_non_null(strstr(out, "usage: saga-es-archive"));
  }
  /* a --dir so long that the files' paths would pass PATH_MAX is refused
   * with the others, before anything is read (it failed at each era,
   * exit 1, after the candidates were read) */
  char deep[PATH_MAX];
  snprintf(deep, sizeof deep, "/tmp/es_archive_deep_%ld", (long)getpid());
  assert_int_equal(mkdir(deep, 0700), 0);
  char seg[201];
  memset(seg, 'd', 200);
  seg[200] = '\0';
  while (strlen(deep) + 201 < PATH_MAX - 40) {
    size_t n = strlen(deep);
    snprintf(deep + n, sizeof deep - n, "/%s", seg);
    assert_int_equal(mkdir(deep, 0700), 0);
  }
  char out[8192];
  assert_int_equal(run_tool(out, sizeof out, "dbname=x", "--older-than",
                            "1d", "--dir", deep, NULL),
                   2);
  if (!strstr(out, "--dir is ") || !strstr(out, "would pass PATH_MAX"))
    fail_msg("%s", out);
  char cmd[64];
  snprintf(cmd, sizeof cmd, "rm -rf /tmp/es_archive_deep_%ld", (long)getpid());
  assert_int_equal(system(cmd), 0);
}

/* The manifest is outside the checksum, so the reader checks each of its
 * lines: a stream count that differs from the file's, a key given twice,
 * a NUL that would hide the lines after it, a number or checksum spelled
 * otherwise than the writer prints it: all CORRUPT. */
static void test_a_damaged_manifest_is_refused(void **state) {
  (void)state;
  char dir[] = "/tmp/es_archive_man_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128], err[ES_ERRBUF_SIZE];
  snprintf(path, sizeof path, "%s/a.gz", dir);
  static unsigned char raw[4096];
  size_t n = craft(raw, sizeof raw, "", 0);
  unsigned char *man = NULL;
  for (size_t i = 0; i + 9 < n && !man; i++)
    if (!memcmp(raw + i, "events: 1", 9))
      man = raw + i;
  assert_non_null(man);
  uint32_t crc = (uint32_t)crc32(0, raw, (uInt)(man - 5 - raw));
  static const struct {
    const char *lines, *want;
  } cases[] = {
      {"events: 1\nstreams: 2\nchecksum: crc32:@\n",
       "the manifest counts 2 streams, the file holds 1"},
      {"events: 1\nstreams: 0\nchecksum: crc32:@\n",
       "the manifest counts 0 streams, the file holds 1"},
      {"events: 1\nevents: 1\nstreams: 1\nchecksum: crc32:@\n",
       "manifest has \"events\" twice"},
      {"events: +1\nstreams: 1\nchecksum: crc32:@\n",
       "manifest has a bad \"events\": \"+1\""},
      {"events: 1\nstreams:  1\nchecksum: crc32:@\n",
       "manifest has a bad \"streams\""},
      {"events: 1\nstreams: 1\nchecksum: crc32:0x@\n",
       "manifest has a bad \"checksum\""},
      {"events: 1\nstreams: 1\nchecksum: crc32:@\n",
       "manifest holds a NUL byte"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[256], hex[16];
    snprintf(hex, sizeof hex, "%08x", (unsigned)crc);
    const char *at = strchr(cases[i].lines, '@'); /* where the crc goes */
    assert_non_null(at);
    int m = snprintf(text, sizeof text, "%.*s%s%s",
                     (int)(at - cases[i].lines), cases[i].lines, hex, at + 1);
    if (strstr(cases[i].want, "NUL")) { /* the bytes after the NUL */
      memcpy(text + m, "\0junk\n", 6);
      m += 6;
    }
    put_be(man - 4, (uint64_t)m, 4);
    memcpy(man, text, (size_t)m);
    write_file(path, raw, (size_t)(man - raw) + (size_t)m, 1, NULL);
    fprintf(stderr, "case %zu: %s\n", i, cases[i].want);
    es_archive_info_t in;
    assert_int_equal(es_archive_verify(path, &in, err, sizeof err),
                     ES_ERR_CORRUPT);
    assert_non_null(strstr(err, cases[i].want));
  }
  unlink(path);
  assert_int_equal(rmdir(dir), 0);
}

/* A path longer than the error buffer: the message keeps the reason and
 * the file's name, and shortens the path's start. */
static void test_a_long_path_keeps_the_reason_in_the_message(void **state) {
  (void)state;
  char top[64], dir[600], path[700], err[ES_ERRBUF_SIZE];
  snprintf(top, sizeof top, "/tmp/es_archive_long_%d", (int)getpid());
  assert_int_equal(mkdir(top, 0700), 0);
  snprintf(dir, sizeof dir, "%s", top);
  while (strlen(dir) < 400) { /* components of 100 bytes */
    strcat(dir, "/");
    for (int i = 0; i < 99; i++)
      strcat(dir, "d");
    assert_int_equal(mkdir(dir, 0700), 0);
  }
  snprintf(path, sizeof path, "%s/not-an-archive.gz", dir);
  write_file(path, (const unsigned char *)"plain text\n", 11, 0, NULL);
  assert_int_equal(es_archive_verify(path, NULL, err, sizeof err),
                   ES_ERR_CORRUPT);
  assert_non_null(strstr(err, "not-an-archive.gz\": not an event store "
                              "archive (not a gzip file)"));
  char out[8192];
  assert_int_equal(run_tool(out, sizeof out, "--verify", path, NULL), 1);
  assert_true(has(out, "not-an-archive.gz\": not an event store archive"));
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
  assert_int_equal(system(cmd), 0);
}

/* A --dir that cannot take the files is a usage error before anything is
 * read (a run with nothing due finds it too; an empty one is not the
 * root directory); an option given twice, a --verify with what only an
 * archive run takes and a retention period PostgreSQL cannot subtract
 * are usage errors too. saga-es-migrate names an unknown option. */
static void test_a_bad_dir_or_option_is_a_usage_error(void **state) {
  (void)state;
  char file[] = "/tmp/es_archive_file_XXXXXX";
  int fd = mkstemp(file);
  assert_true(fd >= 0);
  close(fd);
  static const char *const ok[] = {"dbname=x", "--older-than", "1d", NULL};
  struct {
    const char *args[4], *want;
  } cases[] = {
      {{"--dir", "/nonexistent/es-archive", NULL},
       "--dir \"/nonexistent/es-archive\": No such file or directory"},
      {{"--dir", file, NULL}, "not a directory"},
      {{"--dir", "", NULL}, "--dir is empty"},
      {{"--dir", "/tmp", "--dir", "/tmp"}, "--dir given twice"},
      {{"--dry-run", "--older-than", "2d"}, "--older-than given twice"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[8192];
    const char *const *a = cases[i].args;
    assert_int_equal(run_tool(out, sizeof out, ok[0], ok[1], ok[2], a[0], a[1],
                              a[2], a[3], NULL),
                     2);
    assert_true(has(out, cases[i].want));
    assert_true(strncmp(out, "saga-es-archive: ", 17) == 0);
    assert_non_null(strstr(out, "usage: saga-es-archive"));
  }
  char out[8192];
  assert_int_equal(run_tool(out, sizeof out, "--verify", "a.gz",
                            "--older-than", "1d", NULL),
                   2);
  assert_true(has(out, "--verify FILE takes no CONNINFO"));
  assert_int_equal(run_tool(out, sizeof out, "--verify", "a.gz", "--verify",
                            "b.gz", NULL),
                   2);
  assert_true(has(out, "--verify given twice"));
  assert_int_equal(run_tool(out, sizeof out, "dbname=x", "--older-than",
                            "100001d", "--dry-run", NULL),
                   2);
  assert_true(has(out, "longer than the longest retention period, 100000d"));
  assert_int_equal(run_tool(out, sizeof out, "dbname=x", "--older-than", "1d",
                            "--dry-run", "--lock-wait", "25d", NULL),
                   2);
  assert_true(has(out, "--lock-wait is too long: at most 24d20h31m23s647ms"));
  /* a CONNINFO libpq cannot parse is a usage error, and its password is
   * not printed (libpq's message quoted the text: exit 1, password in the
   * log) */
  assert_int_equal(run_tool(out, sizeof out, "postgresql://u:s3cret@[::1",
                            "--older-than", "1d", "--dry-run", NULL),
                   2);
  assert_true(has(out, "invalid conninfo (details withheld"));
  assert_null(strstr(out, "s3cret"));
  unlink(file);

  /* saga-es-migrate, next to saga-es-archive */
  char bin[512], cmd[700];
  snprintf(bin, sizeof bin, "%s", ARCHIVE_BIN);
  char *slash = strrchr(bin, '/');
  assert_non_null(slash);
  snprintf(slash + 1, sizeof bin - (size_t)(slash + 1 - bin),
           "saga-es-migrate");
  snprintf(cmd, sizeof cmd, "'%s' --bogus dbname=x 2>&1 | head -1", bin);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char line[256] = "";
  assert_non_null(fgets(line, sizeof line, p));
  pclose(p);
  fprintf(stderr, "saga-es-migrate said: %s", line);
  assert_non_null(strstr(line, "saga-es-migrate: unknown option \"--bogus\""));
  snprintf(cmd, sizeof cmd, "'%s' --bogus dbname=x >/dev/null 2>&1", bin);
  int st = system(cmd);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

int main(void) {
  ts_require_pg();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_dry_run_lists_the_eras_and_changes_nothing),
      cmocka_unit_test(
          test_finished_eras_are_archived_and_read_back_byte_for_byte),
      cmocka_unit_test(test_a_changed_or_truncated_archive_is_refused),
      cmocka_unit_test(
          test_a_damaged_archive_file_answers_the_documented_code),
      cmocka_unit_test(test_the_writer_can_neither_archive_nor_drop),
      cmocka_unit_test(test_a_drop_that_cannot_get_its_lock_changes_nothing),
      cmocka_unit_test(test_usage_errors_say_what_is_wrong),
      cmocka_unit_test(test_a_damaged_manifest_is_refused),
      cmocka_unit_test(test_a_long_path_keeps_the_reason_in_the_message),
      cmocka_unit_test(test_a_bad_dir_or_option_is_a_usage_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
