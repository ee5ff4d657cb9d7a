/* saga-es-archive: retention for the event store. For every era that
 * ended longer ago than the retention period and whose streams are all
 * finished (closed, or the streams of terminal sagas), write its events
 * to an archive file, read the file back to verify it, then detach and
 * drop the era's table with es_archive_drop() (one audited transaction,
 * the role es_admin). It never deletes an event row; the database decides
 * again, under its lock, that the era may go. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "es_internal.h"
#include "saga/eventstore.h"
#include "saga/version.h"
#include "timetext.h"

#define FETCH 5000 /* rows per FETCH: the same number as FETCH_SQL */
#define FETCH_SQL "FETCH 5000 FROM es_archive_c"

static const char *prog = "saga-es-archive";

/* The longest retention period: PostgreSQL computes now() minus it, and
 * that must stay a timestamp it can hold (4713 BC at the earliest). */
#define OLDER_THAN_MAX_MS (INT64_C(100000) * 86400000)

static void usage(FILE *f) {
  fputs(
      "usage: saga-es-archive CONNINFO --older-than DURATION --dir DIR\n"
      "                       [--dry-run] [--lock-wait DURATION]\n"
      "       saga-es-archive --verify FILE\n"
      "       saga-es-archive --version\n"
      "Archive and drop the event store's old eras. An era (a partition of\n"
      "es_events) is archived when it ended more than --older-than ago and\n"
      "every stream in it is finished: closed by its owner (es_close_stream)\n"
      "or the stream of a saga that saga_index shows completed or\n"
      "compensated with its final notification delivered. A saga still\n"
      "running keeps its era, whatever its age. Each such era is written to\n"
      "DIR/es_events_e<ERA>.archive.gz (gzip: a header, every event with its\n"
      "position, ids, type, metadata and data, a manifest with the counts\n"
      "and a CRC-32), read back and checked, then its table is detached and\n"
      "dropped in one transaction that writes a row to es_archive_log, with\n"
      "the saga_index rows and snapshots of the streams that have no event\n"
      "left. CONNINFO is a libpq conninfo or postgresql:// URI of a login\n"
      "role granted es_admin.\n\n"
      "Options:\n"
      "  --older-than DURATION  retention period, e.g. 90d (units ms, s, m,\n"
      "                         h, d; 0ms to 100000d)\n"
      "  --dir DIR              where the archive files go: an existing,\n"
      "                         writable directory (not needed with\n"
      "                         --dry-run)\n"
      "  --dry-run              list the eras and what would be done; change\n"
      "                         nothing\n"
      "  --lock-wait DURATION   longest wait for the lock on es_events before\n"
      "                         giving up on an era (default 5s; 0ms: no\n"
      "                         limit; an era switch in progress is waited\n"
      "                         for)\n"
      "  --verify FILE          check an archive file and print its "
      "manifest\n\n"
      "Each option is given at most once.\n\n"
      "Exit codes: 0 done (also when nothing was due), 1 an era could not\n"
      "be archived, a file is damaged, or the database could not be\n"
      "reached, read or is at another schema version, 2 usage error (an\n"
      "--older-than or --dir that cannot be used included).\n",
      f);
}

static int parse_duration(const char *opt, const char *text, int64_t *ms) {
  if (saga__duration_parse(text, ms) == SAGA_DURATION_OK)
    return 0;
  char why[160];
  fprintf(stderr, "%s: %s: %s\n", prog, opt,
          saga__duration_explain(text, why, sizeof why));
  return -1;
}

static void print_info(const char *path, const es_archive_info_t *in) {
  printf("%s: era %d (%s), %" PRId64 " events in %" PRId64
         " streams, positions %" PRId64 " to %" PRId64
         ", written %s, checksum crc32:%08" PRIx32 "\n",
         path, in->era, in->table, in->events, in->streams, in->first_position,
         in->last_position, in->created_at, in->checksum);
}

static int verify_file(const char *path) {
  es_archive_info_t in;
  char err[ES_ERRBUF_SIZE] = "";
  int rc = es_archive_verify(path, &in, err, sizeof err);
  if (rc) {
    fprintf(stderr, "%s: %s (%s)\n", prog, err, es_err_name(rc));
    return 1;
  }
  print_info(path, &in);
  return 0;
}

/* Run sql with text params, results in text (binary: 1 for binary);
 * NULL (message printed) unless status. */
static PGresult *run_as(PGconn *c, const char *sql, int n,
                        const char *const *params, ExecStatusType status,
                        const char *what, int binary) {
  PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, binary);
  if (PQresultStatus(r) == status)
    return r;
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  fprintf(stderr, "%s: %s: %s", prog, what, PQerrorMessage(c));
  if (state && !strcmp(state, "42501"))
    fprintf(stderr,
            "%s: the login role needs the role es_admin (GRANT "
            "es_admin TO <role>)\n",
            prog);
  PQclear(r);
  return NULL;
}

static PGresult *run(PGconn *c, const char *sql, int n,
                     const char *const *params, ExecStatusType status,
                     const char *what) {
  return run_as(c, sql, n, params, status, what, 0);
}

/* The rows of one FETCH into the archive: binary columns in the order of
 * the cursor (see archive_era). */
static int put_rows(es__arw_t *w, PGresult *r, int64_t *lo, int64_t *hi,
                    char *msg, size_t msglen) {
  int rows = PQntuples(r);
  for (int i = 0; i < rows; i++) {
    es_recorded_t e = {0};
    e.global_position = es__get_be64(PQgetvalue(r, i, 0));
    e.at.pos = e.global_position;
    e.at.tx = (uint64_t)es__get_be64(PQgetvalue(r, i, 1));
    e.version = es__get_be64(PQgetvalue(r, i, 2));
    /* timestamptz binary: microseconds since 2000-01-01 */
    e.recorded_at_us =
        es__get_be64(PQgetvalue(r, i, 3)) + INT64_C(946684800000000);
    memcpy(e.id, PQgetvalue(r, i, 4), 16);
    e.stream_id = PQgetvalue(r, i, 5);
    e.type = PQgetvalue(r, i, 6);
    e.data = PQgetvalue(r, i, 7);
    e.data_len = (size_t)PQgetlength(r, i, 7);
    const char **opt[] = {&e.correlation_id, &e.causation_id, &e.traceparent,
                          &e.meta_json};
    for (int k = 0; k < 4; k++)
      *opt[k] = PQgetisnull(r, i, 8 + k) ? NULL : PQgetvalue(r, i, 8 + k);
    if (*lo < 0 || e.global_position < *lo)
      *lo = e.global_position;
    if (e.global_position > *hi)
      *hi = e.global_position;
    int rc = es__archive_put(w, &e, msg, msglen);
    if (rc)
      return rc;
  }
  return 0;
}

/* One era's events to tmp, in a read-only snapshot, in the gap-safe
 * order. *streams, *lo, *hi receive the counts the drop is checked
 * against (lo and hi -1 when the era holds no event). */
static int write_era(PGconn *c, const es_archive_info_t *hdr, const char *tmp,
                     es_archive_info_t *out, int64_t *lo, int64_t *hi) {
  char era[16], msg[ES_ERRBUF_SIZE] = "";
  snprintf(era, sizeof era, "%d", hdr->era);
  const char *p[] = {era};
  *lo = *hi = -1;
  PGresult *r = run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0,
                    NULL, PGRES_COMMAND_OK, "could not start the read");
  if (!r)
    return ES_ERR_DB;
  PQclear(r);
  int rc = ES_ERR_DB;
  es__arw_t *w = NULL;
  int64_t streams = 0;
  r = run(c, "SELECT count(DISTINCT stream_id) FROM es_events WHERE era = $1",
          1, p, PGRES_TUPLES_OK, "could not count the era's streams");
  if (!r)
    goto out;
  streams = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  r = run(c,
          "DECLARE es_archive_c NO SCROLL CURSOR FOR"
          " SELECT global_position, tx_id, stream_version, recorded_at,"
          " event_id, stream_id, event_type, data, correlation_id,"
          " causation_id, traceparent, metadata::text FROM es_events"
          " WHERE era = $1 ORDER BY tx_id, global_position",
          1, p, PGRES_COMMAND_OK, "could not read the era");
  if (!r)
    goto out;
  PQclear(r);
  if ((rc = es__archive_create(tmp, hdr, &w, msg, sizeof msg)))
    goto out;
  for (;;) {
    /* binary: the extended protocol's choice, whatever the cursor says */
    r = run_as(c, FETCH_SQL, 0, NULL, PGRES_TUPLES_OK, "could not read the era",
               1);
    if (!r) {
      rc = ES_ERR_DB;
      goto out;
    }
    int rows = PQntuples(r);
    rc = put_rows(w, r, lo, hi, msg, sizeof msg);
    PQclear(r);
    if (rc)
      goto out;
    if (rows < FETCH)
      break;
  }
  rc = es__archive_finish(w, streams, out, msg, sizeof msg);
  w = NULL;
out:
  es__archive_abort(w);
  if (rc && *msg)
    fprintf(stderr, "%s: %s\n", prog, msg);
  PQclear(PQexec(c, rc ? "ROLLBACK" : "COMMIT"));
  return rc;
}

/* fsync the directory holding path, so its rename survives a crash. */
static void sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}

/* Archive one eligible era: write, verify, rename into place, drop. */
static int archive_era(PGconn *c, const char *dir, PGresult *cand, int row,
                       unsigned lock_wait_ms) {
  es_archive_info_t hdr = {0};
  hdr.era = atoi(PQgetvalue(cand, row, 0));
  snprintf(hdr.table, sizeof hdr.table, "%s", PQgetvalue(cand, row, 1));
  hdr.first_position = atoll(PQgetvalue(cand, row, 3));
  hdr.last_position = atoll(PQgetvalue(cand, row, 4));
  struct timeval tv;
  gettimeofday(&tv, NULL);
  saga__rfc3339_ms(hdr.created_at, sizeof hdr.created_at,
                   (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000);
  char path[PATH_MAX], tmp[PATH_MAX + 8], full[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s.archive.gz", dir, hdr.table) >=
      (int)sizeof path) {
    fprintf(stderr, "%s: --dir \"%s\": path too long\n", prog, dir);
    return 1;
  }
  snprintf(tmp, sizeof tmp, "%s.part", path);
  es_archive_info_t wrote, read;
  int64_t lo = -1, hi = -1;
  if (write_era(c, &hdr, tmp, &wrote, &lo, &hi)) {
    unlink(tmp);
    fprintf(stderr, "%s: era %d kept: its archive could not be written\n", prog,
            hdr.era);
    return 1;
  }
  char err[ES_ERRBUF_SIZE] = "";
  int rc = es_archive_verify(tmp, &read, err, sizeof err);
  if (!rc && (read.events != wrote.events || read.checksum != wrote.checksum ||
              read.era != wrote.era)) {
    rc = ES_ERR_CORRUPT;
    snprintf(err, sizeof err,
             "archive \"%.200s\" reads back other than written", tmp);
  }
  if (rc) {
    fprintf(stderr, "%s: era %d kept: %s (%s)\n", prog, hdr.era, err,
            es_err_name(rc));
    unlink(tmp);
    return 1;
  }
  /* the audit names the file by an absolute path */
  char cwd[PATH_MAX] = "";
  if (path[0] != '/' && !getcwd(cwd, sizeof cwd))
    cwd[0] = '\0';
  if (snprintf(full, sizeof full, "%s%s%s", cwd, *cwd ? "/" : "", path) >=
      (int)sizeof full) {
    fprintf(stderr, "%s: era %d kept: path too long\n", prog, hdr.era);
    unlink(tmp);
    return 1;
  }
  if (rename(tmp, path)) {
    fprintf(stderr, "%s: era %d kept: could not move \"%s\" into place: %s\n",
            prog, hdr.era, tmp, strerror(errno));
    unlink(tmp); /* a whole era's copy */
    return 1;
  }
  sync_dir(dir);
  char era[16], n[24], s[24], first[24], last[24], sum[24], wait[16];
  snprintf(era, sizeof era, "%d", hdr.era);
  snprintf(n, sizeof n, "%" PRId64, wrote.events);
  snprintf(s, sizeof s, "%" PRId64, wrote.streams);
  snprintf(first, sizeof first, "%" PRId64, lo);
  snprintf(last, sizeof last, "%" PRId64, hi);
  snprintf(sum, sizeof sum, "crc32:%08" PRIx32, wrote.checksum);
  snprintf(wait, sizeof wait, "%u", lock_wait_ms);
  const char *p[] = {
      era, full, n, s, lo < 0 ? NULL : first, hi < 0 ? NULL : last, sum, wait};
  /* lock_timeout set first: the function's wait for the era switch's
   * advisory lock is bounded by --lock-wait too, not only its table locks
   * (0 ms: no bound, as lock_timeout 0 is none) */
  PGresult *r = run(c,
                    "SELECT es_archive_drop($1, $2, $3, $4, $5, $6, $7, $8) "
                    "FROM (SELECT set_config('lock_timeout', "
                    "$8::int::text || 'ms', true)) w",
                    8, p, PGRES_TUPLES_OK, "could not drop the era");
  if (!r) {
    fprintf(stderr,
            "%s: era %d kept in the store; \"%s\" is verified and "
            "the next run writes it again\n",
            prog, hdr.era, full);
    return 1;
  }
  printf("era %d: %s events of %s streams archived to %s (%s); table %s "
         "dropped, %s saga_index rows removed\n",
         hdr.era, n, s, full, sum, hdr.table, PQgetvalue(r, 0, 0));
  PQclear(r);
  return 0;
}

/* A usage error: one line saying what is wrong, then the usage. */
static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", prog);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  usage(stderr);
  return 2;
}

/* --dir must name an existing directory the archive files can be created
 * in; checked before anything is read, so that a run with nothing due
 * finds a wrong --dir too. */
static int check_dir(const char *dir) {
  struct stat st;
  if (dir[0] == '\0')
    return usage_error("--dir is empty: give a directory");
  if (stat(dir, &st) != 0)
    return usage_error("--dir \"%s\": %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return usage_error("--dir \"%s\": not a directory", dir);
  if (access(dir, W_OK | X_OK) != 0)
    return usage_error("--dir \"%s\": cannot create files in it: %s", dir,
                       strerror(errno));
  /* the longest path written there: DIR/<table of up to 63 bytes, as
   * PostgreSQL names it>.archive.gz.part */
  /* a relative one from the working directory, as the files' paths are
   * made */
  size_t len = strlen(dir);
  char cwd[PATH_MAX];
  if (dir[0] != '/' && getcwd(cwd, sizeof cwd))
    len += strlen(cwd) + 1;
  if (len + 1 + 63 + strlen(".archive.gz.part") >= PATH_MAX)
    return usage_error("--dir is %zu bytes long from /: the archive files' "
                       "paths in it would pass PATH_MAX (%d); give a "
                       "shorter one",
                       len, PATH_MAX);
  return 0;
}

int main(int argc, char **argv) {
  const char *conninfo = NULL, *dir = NULL, *verify = NULL;
  int64_t older_ms = -1, wait_ms = 5000;
  int dry = 0, wait_given = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    int given = (!strcmp(a, "--dry-run") && dry) ||
                (!strcmp(a, "--older-than") && older_ms >= 0) ||
                (!strcmp(a, "--lock-wait") && wait_given) ||
                (!strcmp(a, "--dir") && dir) ||
                (!strcmp(a, "--verify") && verify);
    if (given)
      return usage_error("%s given twice", a);
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--version")) {
      printf("saga-es-archive %s\n", SAGA_VERSION);
      return 0;
    } else if (!strcmp(a, "--dry-run")) {
      dry = 1;
    } else if (!strcmp(a, "--older-than") && more) {
      if (parse_duration(a, argv[++i], &older_ms))
        return 2;
      if (older_ms > OLDER_THAN_MAX_MS)
        return usage_error("--older-than: \"%s\" is longer than the longest"
                           " retention period, 100000d",
                           argv[i]);
    } else if (!strcmp(a, "--lock-wait") && more) {
      if (parse_duration(a, argv[++i], &wait_ms))
        return 2;
      wait_given = 1;
    } else if (!strcmp(a, "--dir") && more) {
      dir = argv[++i];
    } else if (!strcmp(a, "--verify") && more) {
      verify = argv[++i];
    } else if (a[0] != '-' && !conninfo) {
      conninfo = a;
    } else {
      int needs = !more && (!strcmp(a, "--older-than") ||
                            !strcmp(a, "--lock-wait") ||
                            !strcmp(a, "--dir") || !strcmp(a, "--verify"));
      if (needs)
        return usage_error("%s needs a value (%s)", a,
                           !strcmp(a, "--dir")      ? "a directory"
                           : !strcmp(a, "--verify") ? "an archive file"
                                                    : "a duration, e.g. 90d");
      if (a[0] != '-')
        return usage_error("unexpected argument \"%s\" (the CONNINFO is"
                           " \"%s\"; quote a conninfo with spaces)",
                           a, conninfo);
      return usage_error("unknown option \"%s\"", a);
    }
  }
  if (verify && (conninfo || dir || dry || older_ms >= 0 || wait_given))
    return usage_error("--verify FILE takes no CONNINFO, --dir or --dry-run,"
                       " and no --older-than or --lock-wait");
  if (verify)
    return verify_file(verify);
  if (wait_ms > INT32_MAX) {
    char most[32];
    saga__duration_format(most, sizeof most, INT32_MAX);
    return usage_error("--lock-wait is too long: at most %s", most);
  }
  if (!conninfo || older_ms < 0 || (!dir && !dry))
    return usage_error("%s", !conninfo      ? "a CONNINFO is required"
                             : older_ms < 0 ? "--older-than is required"
                                 : "--dir is required (or --dry-run)");
  if (dir && check_dir(dir))
    return 2;
  /* libpq's parse error quotes the text, a password with it: not in a
   * cron job's log */
  char why[ES_ERRBUF_SIZE];
  if (es__conninfo_check(conninfo, why, sizeof why))
    return usage_error("%s", why);
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "%s: could not connect: %s", prog, PQerrorMessage(c));
    PQfinish(c);
    return 1;
  }
  int rc = 1;
  PGresult *cand = NULL;
  PGresult *r = run(c, "SELECT max(version) FROM es_schema_version", 0, NULL,
                    PGRES_TUPLES_OK, "could not read the schema version");
  if (!r)
    goto out;
  int have = atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  if (have != es_schema_version()) {
    fprintf(stderr,
            "%s: the database's event store schema is version %d, "
            "this program's %d: run saga-es-migrate\n",
            prog, have, es_schema_version());
    goto out;
  }
  char older[24];
  snprintf(older, sizeof older, "%" PRId64, older_ms);
  const char *p[] = {older};
  cand = run(c,
             "SELECT era, table_name, ended_at, first_position,"
             " last_position, events, streams, open_streams, first_open,"
             " old_enough, eligible FROM es_archive_candidates($1)",
             1, p, PGRES_TUPLES_OK, "could not list the eras");
  if (!cand)
    goto out;
  rc = 0;
  int rows = PQntuples(cand), due = 0;
  char retention[32];
  saga__duration_format(retention, sizeof retention, older_ms);
  for (int i = 0; i < rows; i++) {
    const char *era = PQgetvalue(cand, i, 0), *table = PQgetvalue(cand, i, 1),
               *ended = PQgetvalue(cand, i, 2);
    const char *events = PQgetvalue(cand, i, 5),
               *streams = PQgetvalue(cand, i, 6);
    if (PQgetvalue(cand, i, 10)[0] == 't') {
      due++;
      printf("era %s (%s): %s events in %s streams, ended %s: %s\n", era, table,
             events, streams, ended, dry ? "would be archived" : "archiving");
      if (!dry)
        rc |= archive_era(c, dir, cand, i, (unsigned)wait_ms);
    } else if (PQgetvalue(cand, i, 9)[0] != 't') {
      printf("era %s (%s): kept: ended %s, within the retention period "
             "(%s)\n",
             era, table, ended, retention);
    } else {
      printf("era %s (%s): kept: %s of its %s streams not finished "
             "(first: \"%s\")\n",
             era, table, PQgetvalue(cand, i, 7), streams,
             PQgetvalue(cand, i, 8));
    }
  }
  if (due == 0)
    printf("no era to archive (%d ended eras in the store)\n", rows);
out:
  PQclear(cand);
  PQfinish(c);
  return rc;
}
