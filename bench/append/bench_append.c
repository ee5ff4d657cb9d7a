/* bench-append: a single append taken apart. Where bench-eventstore's
 * single_vs_raw says how far the library's one-event append is from a raw
 * INSERT+COMMIT, this program says what makes up the difference, with eight
 * kinds of one-row commit in the same rounds, each on its own connection:
 *   raw        INSERT into the raw baseline table (bench_raw.h);
 *   partition  INSERT into the partitioned es_events through es_append,
 *              era as a literal (tuple routing, the era column, category
 *              and bucket derived by es_append's rule, the group index);
 *   era        the same with the era read by the statement, as the
 *              library's statements read it;
 *   check      the library's one-event statement written out by hand
 *              (es_pipeline.c's APPEND_ONE_SQL for an id the library drew:
 *              the era read, the stream's version checked, the position
 *              returned), without the library's client side;
 *   direct     the same into the era's partition, with the era as a
 *              literal and the position, category and bucket given by the
 *              statement (no tuple routing, no era read; the version still
 *              checked over es_events);
 *   direct_nocheck  direct without the version check (what the check
 *              costs);
 *   lib        es_append with NOTIFY off (the library's statement: the
 *              stream's version checked, the position returned);
 *   lib_notify es_append with NOTIFY on and nobody listening (the
 *              listener probe).
 * Each kind appends 50 events per round to 100 streams; the kinds take
 * turns at each place of a round. Per kind: the median rate, the median of
 * its per-round ratio to the raw insert, the PostgreSQL backend's CPU time
 * per append (/proc/PID/schedstat: CPU, not the fsync waited for; the
 * backend must run on this machine) and the WAL written per append. Uses a
 * scratch database it creates and drops. Usage: bench-append [CONNINFO]
 * [ROUNDS] (default $SAGA_PG_CONNINFO, 120 rounds). Prints a last JSON
 * line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "saga/eventstore.h"

#include "../bench_measure.h"
#include "../bench_raw.h"

#define PER_ROUND 50
#define STREAMS 100
#define PAYLOAD 300
#define MAX_ROUNDS 1000

enum {
  RAW,
  PARTITION,
  ERA,
  CHECK,
  DIRECT,
  DIRECT_NOCHECK,
  LIB,
  LIB_NOTIFY,
  KINDS
};
#define HAND_KINDS (DIRECT_NOCHECK + 1) /* the kinds written out by hand */
static const char *const kind_name[KINDS] = {
    "raw",    "partition",      "era", "check",
    "direct", "direct_nocheck", "lib", "lib_notify"};

static char payload[PAYLOAD];

static void die(const char *what, const char *detail) {
  fprintf(stderr, "bench-append: %s: %s\n", what, detail);
  exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A statement on c that must succeed; its first value as a number, or 0. */
static double q(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    die(sql, PQerrorMessage(c));
  double v = st == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0
                 ? atof(PQgetvalue(r, 0, 0))
                 : 0;
  PQclear(r);
  return v;
}

static PGconn *connect_to(const char *ci) {
  PGconn *c = PQconnectdb(ci);
  if (PQstatus(c) != CONNECTION_OK)
    die("connect", PQerrorMessage(c));
  return c;
}

/* The backend's time on a CPU so far, in µs. */
static double backend_cpu_us(int pid) {
  double ms = bench_cpu_ms_of(pid);
  if (ms < 0)
    die("/proc/PID/schedstat", "unreadable: the backend must run here");
  return ms * 1e3;
}

/* This process's CPU time so far, in µs. */
static double client_cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* A random (version 4) uuid in text, as gen_random_uuid() gives (xorshift:
 * a benchmark's ids need only be distinct). */
static void uuid_v4(char out[37]) {
  static uint64_t x = 88172645463325252u;
  unsigned char u[16];
  for (int i = 0; i < 16; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    u[i] = (unsigned char)(x >> 24);
  }
  u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
  u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
  for (int i = 0, o = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    o += sprintf(out + o, "%02x", u[i]);
  }
}

/* One round of a hand-written INSERT (statement "ins" on c): 50 rows, each
 * its own commit. $2 is the new row's version, or with expected set the
 * stream's version expected before it (the statement answers a row then).
 * Answers rows per second. */
static double run_sql(PGconn *c, const char *prefix, int expected,
                      int round) {
  double t0 = now_s();
  for (int i = round * PER_ROUND; i < (round + 1) * PER_ROUND; i++) {
    char stream[64], version[32], id[37];
    uuid_v4(id);
    snprintf(stream, sizeof stream, "%s-%d", prefix, i % STREAMS);
    snprintf(version, sizeof version, "%d", i / STREAMS + !expected);
    const char *v[6] = {stream, version, id, "OrderPlaced", payload,
                        "saga-0000000000000001"};
    int len[6] = {0, 0, 0, 0, PAYLOAD, 0}, fmt[6] = {0, 0, 0, 0, 1, 0};
    PGresult *r = PQexecPrepared(c, "ins", 6, v, len, fmt, 0);
    if (expected ? PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1
                 : PQresultStatus(r) != PGRES_COMMAND_OK)
      die(prefix, PQresultStatus(r) == PGRES_TUPLES_OK
                      ? "the version check refused the row"
                      : PQerrorMessage(c));
    PQclear(r);
  }
  return PER_ROUND / (now_s() - t0);
}

/* One round of es_append: 50 single-event appends, each its own commit. */
static double run_lib(es_store_t *s, const char *prefix, int round) {
  double t0 = now_s();
  for (int i = round * PER_ROUND; i < (round + 1) * PER_ROUND; i++) {
    char stream[64];
    snprintf(stream, sizeof stream, "%s-%d", prefix, i % STREAMS);
    es_event_t e = {.type = "OrderPlaced", .data = payload,
                    .data_len = PAYLOAD,
                    .correlation_id = "saga-0000000000000001"};
    if (es_append(s, stream, i / STREAMS, &e, 1, NULL))
      die("append", es_store_last_error(s));
  }
  return PER_ROUND / (now_s() - t0);
}

/* The statement of hand-written kind k into out, era the current one
 * (its partition is es_events_e<era>). */
#define COLUMNS                                                               \
  "stream_id, stream_version, event_id, event_type, data, correlation_id"
#define VERSION_CHECK                                                         \
  " WHERE coalesce((SELECT stream_version FROM es_events WHERE"              \
  " stream_id = $1 ORDER BY stream_version DESC LIMIT 1), 0) = $2"
static void hand_sql(char *out, size_t size, int k, int era) {
  switch (k) {
  case RAW:
    snprintf(out, size, "INSERT INTO raw_events (" COLUMNS ")"
             " VALUES ($1, $2, $3, $4, $5, $6)");
    break;
  case PARTITION:
    snprintf(out, size, "INSERT INTO es_append (" COLUMNS ", era)"
             " VALUES ($1, $2, $3, $4, $5, $6, %d)", era);
    break;
  case ERA:
    snprintf(out, size, "INSERT INTO es_append (" COLUMNS ", era)"
             " VALUES ($1, $2, $3, $4, $5, $6, (SELECT era FROM es_era))");
    break;
  case CHECK:
    snprintf(out, size, "INSERT INTO es_append (" COLUMNS ", era)"
             " SELECT $1, $2 + 1, $3, $4, $5, $6, (SELECT era FROM es_era)"
             VERSION_CHECK " RETURNING global_position");
    break;
  default: /* DIRECT, DIRECT_NOCHECK */
    snprintf(out, size, "INSERT INTO es_events_e%d (global_position, "
             COLUMNS ", era, category, bucket) SELECT"
             " nextval('es_events_global_position_seq'), $1, $2 + 1, $3, $4,"
             " $5, $6, %d, split_part($1, '-', 1),"
             " (hashtextextended($1, 0) & 63)::smallint%s"
             " RETURNING global_position",
             era, era, k == DIRECT ? VERSION_CHECK : "");
  }
}

/* The backend pid of the connection named app (application_name). */
static int pid_of(PGconn *mon, const char *app) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT pid FROM pg_stat_activity WHERE application_name = '%s'",
           app);
  int pid = (int)q(mon, sql);
  if (pid <= 0)
    die(app, "its backend is not in pg_stat_activity");
  return pid;
}

int main(int argc, char **argv) {
  const char *base = argc > 1 ? argv[1] : getenv("SAGA_PG_CONNINFO");
  int rounds = argc > 2 ? atoi(argv[2]) : 120;
  if (!base || !*base)
    die("no database", "pass a conninfo or set SAGA_PG_CONNINFO");
  if (rounds < 1 || rounds > MAX_ROUNDS)
    die("rounds", "between 1 and 1000");
  for (int i = 0; i < PAYLOAD; i++)
    payload[i] = (char)('a' + i % 26);

  char name[64], ci[1024], sql[1024], err[ES_ERRBUF_SIZE];
  snprintf(name, sizeof name, "es_bench_append_%ld", (long)getpid());
  PGconn *admin = connect_to(base);
  snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", name);
  q(admin, sql);
  snprintf(ci, sizeof ci, "%s dbname=%s", base, name);
  if (es_migrate(ci, NULL, err, sizeof err))
    die("migrate", err);
  PGconn *mon = connect_to(ci);
  q(mon, BENCH_RAW_EVENTS_SQL);
  int era = (int)q(mon, "SELECT era FROM es_era");

  /* the hand-written kinds, one connection each */
  static const Oid types[6] = {25 /* text */, 20 /* int8 */, 2950 /* uuid */,
                               25, 17 /* bytea */, 25};
  PGconn *conn[HAND_KINDS];
  int pid[KINDS];
  for (int k = RAW; k < HAND_KINDS; k++) {
    conn[k] = connect_to(ci);
    hand_sql(sql, sizeof sql, k, era);
    PGresult *r = PQprepare(conn[k], "ins", sql, 6, types);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      die("prepare", PQerrorMessage(conn[k]));
    PQclear(r);
    pid[k] = PQbackendPID(conn[k]);
  }
  /* the library's kinds: found by their application_name */
  es_store_t *store[2];
  for (int j = 0; j < 2; j++) {
    char lci[1200], app[64];
    snprintf(app, sizeof app, "bench_append_%s", kind_name[LIB + j]);
    snprintf(lci, sizeof lci, "%s application_name=%s", ci, app);
    es_store_opts_t o;
    es_store_opts_init(&o);
    o.notify = j;
    if (es_store_open(lci, &o, &store[j], err, sizeof err))
      die("open", err);
    es_event_t e = {.type = "Warm", .data = "{}", .data_len = 2};
    if (es_append(store[j], "warm-1", ES_ANY_VERSION, &e, 1, NULL))
      die("append", es_store_last_error(store[j]));
    pid[LIB + j] = pid_of(mon, app);
  }

  static double rate[KINDS][MAX_ROUNDS], ratio[KINDS][MAX_ROUNDS];
  double cpu[KINDS] = {0}, ccpu[KINDS] = {0}, wal[KINDS] = {0};
  for (int k = 0; k < rounds; k++) {
    for (int j = 0; j < KINDS; j++) {
      int kind = (k + j) % KINDS;
      double lsn0 = q(mon, "SELECT pg_current_wal_insert_lsn() - '0/0'");
      double cpu0 = backend_cpu_us(pid[kind]), ccpu0 = client_cpu_us();
      rate[kind][k] =
          kind < HAND_KINDS
              ? run_sql(conn[kind], kind_name[kind], kind >= CHECK, k)
              : run_lib(store[kind - LIB], kind_name[kind], k);
      ccpu[kind] += client_cpu_us() - ccpu0;
      cpu[kind] += backend_cpu_us(pid[kind]) - cpu0;
      wal[kind] += q(mon, "SELECT pg_current_wal_insert_lsn() - '0/0'") - lsn0;
    }
    for (int j = 0; j < KINDS; j++)
      ratio[j][k] = rate[j][k] / rate[RAW][k];
  }

  double n = (double)rounds * PER_ROUND;
  printf("%d rounds of %d one-row commits per kind, kinds in turns, payload"
         " %d bytes\n", rounds, PER_ROUND, PAYLOAD);
  printf("%-14s %9s %7s %14s %13s %14s\n", "kind", "rows/s", "of raw",
         "backend µs/row", "client µs/row", "WAL bytes/row");
  for (int j = 0; j < KINDS; j++)
    printf("%-14s %9.0f %7.2f %14.1f %13.1f %14.0f\n", kind_name[j],
           bench_median(rate[j], (size_t)rounds), bench_median(ratio[j], (size_t)rounds), cpu[j] / n,
           ccpu[j] / n, wal[j] / n);
  printf("{\"bench\": \"append\", \"rounds\": %d", rounds);
  for (int j = 0; j < KINDS; j++)
    printf(", \"%s\": {\"per_s\": %.0f, \"vs_raw\": %.3f, \"backend_us\":"
           " %.1f, \"client_us\": %.1f, \"wal_bytes\": %.0f}",
           kind_name[j], bench_median(rate[j], (size_t)rounds), bench_median(ratio[j], (size_t)rounds),
           cpu[j] / n, ccpu[j] / n, wal[j] / n);
  printf("}\n");

  for (int j = 0; j < 2; j++)
    es_store_close(store[j]);
  for (int k = RAW; k < HAND_KINDS; k++)
    PQfinish(conn[k]);
  PQfinish(mon);
  snprintf(sql, sizeof sql, "DROP DATABASE \"%s\"", name);
  q(admin, sql);
  PQfinish(admin);
  return 0;
}
