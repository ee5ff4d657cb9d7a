/* bench-idem: the participant's PostgreSQL effect store
 * (saga_idem_store_pg) as the participant drives it, per command, against
 * a raw baseline in the same rounds. Per round, in turns:
 *   new      a command seen for the first time: lookup (a miss), then the
 *            record of its reply (SUCCESS, a 200-byte output), a durable
 *            commit;
 *   redeliv  the same commands again: a lookup that finds the reply;
 *   raw      the floor: a prepared SELECT of a missing key, then a prepared
 *            one-row INSERT of the same shape in its own commit, on a plain
 *            table.
 * Reports per operation the wall-time median and p99, the PostgreSQL
 * backend's CPU time per command (/proc/PID/schedstat: CPU time, not the
 * fsync waited for) and the client's, and from a libpq trace of one round
 * the protocol per command: round trips (a Sync or a simple Query each),
 * Parse messages and bytes both ways. The backend must run on this
 * machine. Uses a scratch database it creates and drops; the store is
 * used only through the public API, so the same program measures any
 * version of the library. Usage: bench-idem [CONNINFO] [ROUNDS] (default
 * $SAGA_PG_CONNINFO, 40 rounds of 50 commands). Prints a last JSON
 * line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "saga/client.h"

#include "../bench_measure.h"

#define PER_ROUND 50
#define OUTPUT 200

static char output[OUTPUT];

static void die(const char *what, const char *detail) {
  fprintf(stderr, "bench-idem: %s: %s\n", what, detail);
  exit(1);
}

static double now_ms(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Any statement's result r on c, which must have succeeded: freed. */
static void ok(PGconn *c, PGresult *r, const char *what) {
  ExecStatusType st = PQresultStatus(r);
  PQclear(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    die(what, PQerrorMessage(c));
}

/* The backend's time on a CPU so far, in ms. */
static double backend_cpu_ms(int pid) {
  double ms = bench_cpu_ms_of(pid);
  if (ms < 0)
    die("/proc/PID/schedstat", "unreadable: the backend must run here");
  return ms;
}

/* ---- the store through its public callbacks ---- */

typedef struct {
  int err, found;
} got_t;

static void on_lookup(void *arg, int err, int found,
                      const saga_recorded_reply_t *r) {
  got_t *g = arg;
  g->err = err;
  g->found = found && r && r->payload_len == OUTPUT;
}

static void on_record(void *arg, int err) { ((got_t *)arg)->err = err; }

static void store_lookup(saga_idem_store_t *s, const char *key, int want) {
  got_t g = {-1, -1};
  s->lookup(s->ctx, key, on_lookup, &g);
  if (g.err || g.found != want)
    die("lookup", key);
}

static void store_record(saga_idem_store_t *s, const char *key) {
  saga_recorded_reply_t r = {SAGA_OUTCOME_SUCCESS, output, OUTPUT, NULL, 1};
  got_t g = {-1, 0};
  s->record(s->ctx, key, &r, on_record, &g);
  if (g.err)
    die("record", key);
}

/* ---- the raw baseline ---- */

static void raw_lookup(PGconn *c, const char *key) {
  const char *v[1] = {key};
  PGresult *r = PQexecPrepared(c, "raw_get", 1, v, NULL, NULL, 1);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 0)
    die("raw lookup", PQerrorMessage(c));
  PQclear(r);
}

static void raw_record(PGconn *c, const char *key) {
  const char *v[2] = {key, output};
  int len[2] = {0, OUTPUT}, fmt[2] = {0, 1};
  PGresult *r = PQexecPrepared(c, "raw_put", 2, v, len, fmt, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    die("raw record", PQerrorMessage(c));
  PQclear(r);
}

/* ---- samples ---- */

enum {
  NEW_LOOKUP,
  NEW_RECORD,
  NEW_CMD,
  REDELIVERY,
  RAW_LOOKUP,
  RAW_RECORD,
  RAW_CMD,
  NSERIES
};
static const char *const series_name[NSERIES] = {
    "lookup (miss)",     "record (commit)",   "new command",
    "redelivery lookup", "raw SELECT (miss)", "raw INSERT (commit)",
    "raw command"};

typedef struct {
  double *v;
  size_t n;
} series_t;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(series_t *s, double p) {
  qsort(s->v, s->n, sizeof *s->v, cmp_double);
  size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
  return s->v[i];
}

/* CPU ms per command, summed over the rounds: [0] store new, [1] store
 * redelivery, [2] raw; backend and client. */
static double srv_cpu[3], cli_cpu[3];

typedef enum { KIND_NEW, KIND_REDELIVERY, KIND_RAW } kind_t;

static void run_kind(kind_t k, saga_idem_store_t *s, PGconn *store_conn,
                     PGconn *raw, int round, series_t *ser) {
  PGconn *c = k == KIND_RAW ? raw : store_conn;
  int pid = PQbackendPID(c);
  double s0 = backend_cpu_ms(pid), c0 = now_ms(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < PER_ROUND; i++) {
    char key[96];
    snprintf(key, sizeof key, "saga-%06d/step-%d/DO", round * PER_ROUND + i,
             i % 3);
    double t0 = now_ms(CLOCK_MONOTONIC), t1, t2;
    if (k == KIND_NEW) {
      store_lookup(s, key, 0);
      t1 = now_ms(CLOCK_MONOTONIC);
      store_record(s, key);
    } else if (k == KIND_REDELIVERY) {
      store_lookup(s, key, 1);
      t1 = now_ms(CLOCK_MONOTONIC);
    } else {
      raw_lookup(c, key);
      t1 = now_ms(CLOCK_MONOTONIC);
      raw_record(c, key);
    }
    t2 = now_ms(CLOCK_MONOTONIC);
    if (k == KIND_REDELIVERY) {
      series_t *r = &ser[REDELIVERY];
      r->v[r->n++] = t1 - t0;
      continue;
    }
    int base = k == KIND_NEW ? NEW_LOOKUP : RAW_LOOKUP;
    ser[base].v[ser[base].n++] = t1 - t0;
    ser[base + 1].v[ser[base + 1].n++] = t2 - t1;
    ser[base + 2].v[ser[base + 2].n++] = t2 - t0;
  }
  srv_cpu[k] += backend_cpu_ms(pid) - s0;
  cli_cpu[k] += now_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
}

/* ---- the protocol, from a libpq trace ---- */

typedef struct {
  double round_trips, parses, bytes_out, bytes_in;
} proto_t;

/* Trace lines: direction (F to the server, B back), length, type, ... */
static proto_t count_trace(char *buf, double per) {
  proto_t p = {0};
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char dir;
    long len;
    char type[32];
    if (sscanf(line, "%c\t%ld\t%31s", &dir, &len, type) != 3)
      continue;
    if (dir == 'F') {
      p.bytes_out += (double)len + 1; /* + the type byte */
      if (!strcmp(type, "Sync") || !strcmp(type, "Query"))
        p.round_trips++;
      if (!strcmp(type, "Parse"))
        p.parses++;
    } else if (dir == 'B') {
      p.bytes_in += (double)len + 1;
    }
  }
  p.round_trips /= per;
  p.parses /= per;
  p.bytes_out /= per;
  p.bytes_in /= per;
  return p;
}

static proto_t traced(kind_t k, saga_idem_store_t *s, PGconn *store_conn,
                      PGconn *raw, int round, series_t *scratch) {
  PGconn *c = k == KIND_RAW ? raw : store_conn;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    die("trace", "out of memory");
  PQtrace(c, f);
  PQsetTraceFlags(c, PQTRACE_SUPPRESS_TIMESTAMPS);
  run_kind(k, s, store_conn, raw, round, scratch);
  PQuntrace(c);
  fclose(f);
  proto_t p = count_trace(buf, PER_ROUND);
  free(buf);
  return p;
}

int main(int argc, char **argv) {
  const char *base = argc > 1 ? argv[1] : getenv("SAGA_PG_CONNINFO");
  int rounds = argc > 2 ? atoi(argv[2]) : 40;
  if (!base || !*base)
    die("no database", "pass a conninfo or set SAGA_PG_CONNINFO");
  if (rounds < 1)
    die("rounds", "must be at least 1");
  for (int i = 0; i < OUTPUT; i++)
    output[i] = (char)('a' + i % 26);

  char name[64], ci[1024], sql[256], err[512];
  snprintf(name, sizeof name, "idem_bench_%ld", (long)getpid());
  PGconn *admin = PQconnectdb(base);
  if (PQstatus(admin) != CONNECTION_OK)
    die("connect", PQerrorMessage(admin));
  snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", name);
  ok(admin, PQexec(admin, sql), sql);
  snprintf(ci, sizeof ci, "%s dbname=%s", base, name);
  PGconn *sc = PQconnectdb(ci), *raw = PQconnectdb(ci);
  if (PQstatus(sc) != CONNECTION_OK || PQstatus(raw) != CONNECTION_OK)
    die("connect", PQerrorMessage(sc));
  saga_idem_store_t store;
  if (saga_idem_store_pg(sc, &store, err, sizeof err) != 0)
    die("store", err);
  ok(raw,
     PQexec(raw, "CREATE TABLE raw_idem (key text PRIMARY KEY,"
                 " outcome smallint NOT NULL, payload bytea NOT NULL,"
                 " reason text,"
                 " recorded_at timestamptz NOT NULL DEFAULT now(),"
                 " attempt integer NOT NULL)"),
     "raw table");
  ok(raw,
     PQprepare(raw, "raw_get",
               "SELECT outcome, payload, reason, attempt FROM raw_idem"
               " WHERE key = $1",
               1, NULL),
     "raw_get");
  ok(raw,
     PQprepare(raw, "raw_put",
               "INSERT INTO raw_idem (key, outcome, payload, attempt)"
               " VALUES ($1, 1, $2, 1)",
               2, NULL),
     "raw_put");
  PGresult *fs = PQexec(raw, "SHOW fsync");
  printf("fsync=%s, %d rounds of %d commands each: new (lookup + record of "
         "a %d-byte reply), redelivery (lookup), raw (prepared SELECT + "
         "INSERT)\n",
         PQgetvalue(fs, 0, 0), rounds, PER_ROUND, OUTPUT);
  PQclear(fs);

  series_t ser[NSERIES];
  size_t cap = (size_t)(rounds + 1) * PER_ROUND;
  for (int i = 0; i < NSERIES; i++) {
    ser[i].v = calloc(cap, sizeof(double));
    ser[i].n = 0;
    if (!ser[i].v)
      die("samples", "out of memory");
  }
  /* Round 0 warms up (and, traced, counts the protocol) */
  proto_t pn = traced(KIND_NEW, &store, sc, raw, 0, ser);
  proto_t pr = traced(KIND_REDELIVERY, &store, sc, raw, 0, ser);
  proto_t pw = traced(KIND_RAW, &store, sc, raw, 0, ser);
  for (int i = 0; i < NSERIES; i++)
    ser[i].n = 0;
  memset(srv_cpu, 0, sizeof srv_cpu);
  memset(cli_cpu, 0, sizeof cli_cpu);
  for (int r = 1; r <= rounds; r++) {
    /* the new commands first (the redeliveries need them), the raw
     * baseline before or after them in turn */
    if (r % 2)
      run_kind(KIND_RAW, &store, sc, raw, r, ser);
    run_kind(KIND_NEW, &store, sc, raw, r, ser);
    run_kind(KIND_REDELIVERY, &store, sc, raw, r, ser);
    if (!(r % 2))
      run_kind(KIND_RAW, &store, sc, raw, r, ser);
  }
  double n = (double)rounds * PER_ROUND;
  double p50[NSERIES], p99[NSERIES];
  printf("%-22s %8s %8s  (ms)\n", "operation", "p50", "p99");
  for (int i = 0; i < NSERIES; i++) {
    p50[i] = pct(&ser[i], 0.50);
    p99[i] = pct(&ser[i], 0.99);
    printf("%-22s %8.3f %8.3f\n", series_name[i], p50[i], p99[i]);
  }
  printf("per command: %-12s %6s %6s %8s %8s %10s %10s\n", "", "trips",
         "parses", "out B", "in B", "server us", "client us");
  const char *kn[3] = {"new", "redelivery", "raw"};
  proto_t *pp[3] = {&pn, &pr, &pw};
  for (int k = 0; k < 3; k++)
    printf("             %-12s %6.2f %6.2f %8.0f %8.0f %10.1f %10.1f\n", kn[k],
           pp[k]->round_trips, pp[k]->parses, pp[k]->bytes_out, pp[k]->bytes_in,
           srv_cpu[k] * 1e3 / n, cli_cpu[k] * 1e3 / n);
  printf("{\"bench\": \"idem\", \"rounds\": %d, \"commands_per_round\": %d,"
         " \"new_p50_ms\": %.3f, \"new_p99_ms\": %.3f,"
         " \"lookup_p50_ms\": %.3f, \"record_p50_ms\": %.3f,"
         " \"redelivery_p50_ms\": %.3f, \"raw_p50_ms\": %.3f,"
         " \"raw_p99_ms\": %.3f, \"new_vs_raw_p50\": %.2f,"
         " \"new_round_trips\": %.2f, \"new_parses\": %.2f,"
         " \"redelivery_round_trips\": %.2f,"
         " \"new_server_cpu_us\": %.1f, \"redelivery_server_cpu_us\": %.1f,"
         " \"raw_server_cpu_us\": %.1f, \"new_client_cpu_us\": %.1f,"
         " \"raw_client_cpu_us\": %.1f}\n",
         rounds, PER_ROUND, p50[NEW_CMD], p99[NEW_CMD], p50[NEW_LOOKUP],
         p50[NEW_RECORD], p50[REDELIVERY], p50[RAW_CMD], p99[RAW_CMD],
         p50[NEW_CMD] / p50[RAW_CMD], pn.round_trips, pn.parses, pr.round_trips,
         srv_cpu[KIND_NEW] * 1e3 / n, srv_cpu[KIND_REDELIVERY] * 1e3 / n,
         srv_cpu[KIND_RAW] * 1e3 / n, cli_cpu[KIND_NEW] * 1e3 / n,
         cli_cpu[KIND_RAW] * 1e3 / n);
  if (store.destroy)
    store.destroy(store.ctx);
  PQfinish(sc);
  PQfinish(raw);
  snprintf(sql, sizeof sql, "DROP DATABASE \"%s\"", name);
  ok(admin, PQexec(admin, sql), sql);
  PQfinish(admin);
  for (int i = 0; i < NSERIES; i++)
    free(ser[i].v);
  return 0;
}
