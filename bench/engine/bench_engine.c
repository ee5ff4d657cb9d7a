/* bench-engine: sagad's CPU per saga, in instructions, without the world
 * around it. The real engine with sagad's observer hooks (observe.c, no
 * span exporter) over fake ports that commit every batch and deliver
 * every message at once, driven by this program alone: no PostgreSQL, no
 * Kafka, no other process, so valgrind's callgrind can count the
 * instructions the engine spends, which a shared, loaded machine does
 * not change (its wall-clock times it does). Two phases, the saga
 * benchmark's shapes (bench/saga):
 *
 *   steady    N sagas of 3 steps through their whole life: StartSaga, 3
 *             commands, 3 replies (each with a 200-byte output), the
 *             completion notification, the batch that clears its
 *             notify_pending mark; SAGAS_PER_ROUND sagas in flight.
 *   recovery  N sagas taken to their third step (not measured), their
 *             stored records handed to a second engine as a recovery load
 *             (load_partitions -> saga_codec_apply -> saga_resume -> the
 *             third step's command produced).
 *
 * Run without arguments it runs itself under
 *   valgrind --tool=callgrind --collect-atstart=no
 * (only the calls into the engine are counted, not the encoding of the
 * test's own messages), reads the two dumps and prints the instructions
 * per saga of each phase and a last JSON line. Knobs (environment):
 *   BENCH_ENGINE_SAGAS   sagas per phase (default 5000)
 *   BENCH_ENGINE_OUT     directory for the callgrind dumps, kept for
 *                        callgrind_annotate --inclusive=yes (default: a
 *                        temporary one, removed)
 * `bench-engine --child` runs the phases without valgrind (no figures). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>
#include <valgrind/callgrind.h>

#include "config.h"
#include "engine.h"
#include "engine_fakes.h"
#include "observe.h"
#include "wire.h"

#define NSTEPS 3
#define SAGAS_PER_ROUND 512

static void die(const char *what, const char *why) {
  fprintf(stderr, "bench-engine: %s: %s\n", what, why);
  exit(1);
}

/* ---- the store's records, kept for the recovery ------------------------ */

typedef struct {
  uint8_t *data[NSTEPS + 2];
  size_t len[NSTEPS + 2];
  size_t n;
} stream_t;

static struct {
  stream_t *streams; /* per saga, the records appended */
  size_t nstreams;
} K;

static void keep_records(const char *id, const sagad_record_t *recs,
                         size_t n) {
  size_t k = (size_t)atol(id + 1);
  if (k >= K.nstreams)
    return; /* the warm-up saga */
  stream_t *s = &K.streams[k];
  for (size_t i = 0; i < n; i++) {
    if (s->n == NSTEPS + 2)
      die("store", "more records than a saga of the benchmark makes");
    s->data[s->n] = malloc(recs[i].len);
    if (!s->data[s->n])
      die("store", "out of memory");
    memcpy(s->data[s->n], recs[i].data, recs[i].len);
    s->len[s->n++] = recs[i].len;
  }
}

/* ---- the inbox messages, encoded before the engine sees them ---------- */

typedef struct {
  void *buf;
  size_t len;
  saga__hdrs_t h;
  char id[24];
} msg_t;

/* pb names its saga by m->id: the headers borrow it until m is freed. */
static void encode(msg_t *m, const ProtobufCMessage *pb) {
  char err[256];
  saga_meta_t meta = {.saga_id = m->id, .correlation_id = m->id};
  if (saga__wire_pack(pb, &meta, 0, &m->buf, &m->len, &m->h, err,
                      sizeof err) != 0)
    die("encode", err);
}

/* StartSaga of saga i, as bench-saga's starter sends it. */
static void encode_start(msg_t *m, size_t i) {
  char *id = m->id, type[] = "bench", input[96];
  snprintf(m->id, sizeof m->id, "s%zu", i);
  snprintf(input, sizeof input, "{\"order\":\"%s\",\"amount\":4200}", id);
  Saga__V1__StartSaga s;
  saga__v1__start_saga__init(&s);
  s.saga_id = id;
  s.saga_type = type;
  s.input.data = (uint8_t *)input;
  s.input.len = strlen(input);
  encode(m, &s.base);
}

/* The success of step (0-based) of saga i with bench-saga's output. */
static void encode_reply(msg_t *m, size_t i, int step) {
  ef_reply_t b;
  ef_reply(&b, i, step);
  snprintf(m->id, sizeof m->id, "%s", b.id);
  b.r.saga_id = m->id; /* the headers borrow m->id */
  encode(m, &b.r.base);
}

static void deliver(sagad_engine_t *e, msg_t *m) {
  sagad_inmsg_t in = {.topic = "t.inbox",
                      .partition = 0,
                      .key = m->id,
                      .key_len = strlen(m->id),
                      .value = m->buf,
                      .value_len = m->len,
                      .hdrs = saga__hdrs_view(&m->h),
                      .ack = (void *)1};
  sagad_engine_on_message(e, &in);
}

static void msg_free(msg_t *m) {
  saga__hdrs_free(&m->h);
  free(m->buf);
}

/* ---- driving the engine ------------------------------------------------ */

static bool measuring;

/* Count the engine's instructions from here (under callgrind). */
static void on(void) {
  if (measuring)
    CALLGRIND_TOGGLE_COLLECT;
}
static void off(void) {
  if (measuring)
    CALLGRIND_TOGGLE_COLLECT;
}

/* Sagas [from, to) from their start to after `replies` steps answered;
 * measured (the engine's calls only) when `measure`. */
static void drive(sagad_engine_t *e, size_t from, size_t to, int replies,
                  bool measure) {
  size_t n = to - from;
  msg_t *m = calloc(n ? n : 1, sizeof *m);
  if (!m)
    die("drive", "out of memory");
  for (int round = 0; round <= replies; round++) {
    for (size_t i = 0; i < n; i++)
      if (round == 0)
        encode_start(&m[i], from + i);
      else
        encode_reply(&m[i], from + i, round - 1);
    if (measure)
      on();
    for (size_t i = 0; i < n; i++)
      deliver(e, &m[i]);
    ef_settle(e, NULL);
    if (measure)
      off();
    for (size_t i = 0; i < n; i++)
      msg_free(&m[i]);
  }
  free(m);
}

typedef struct {
  sagad_engine_t *e;
  sagad_config_t *cfg;
  uv_loop_t loop;
  sagad_observe_t *o;
} rig_t;

static void rig_open(rig_t *r, saga_registry_t *reg) {
  int64_t now = EF.now;
  size_t produced = EF.produced;
  sagad_engine_config_t ec = ef_config(reg);
  EF.now = now > EF.now ? now : EF.now; /* the clock never goes back */
  EF.produced = produced;
  char err[512];
  r->e = sagad_engine_new(&ec);
  r->cfg = sagad_config_new();
  if (!r->e || !r->cfg ||
      sagad_config_set(r->cfg, "admin.listen", "127.0.0.1:0", "bench", err,
                       sizeof err) != 0 ||
      uv_loop_init(&r->loop) != 0)
    die("engine", "could not set up");
  sagad_observe_opts_t oo = {
      .loop = &r->loop, .cfg = r->cfg, .registry = reg, .engine = r->e};
  if (sagad_observe_start(&oo, &r->o, err, sizeof err) != 0)
    die("observer", err);
  /* one saga through first: the type's metric series are made once */
  drive(r->e, 999999999, 1000000000, NSTEPS, false);
}

static void closed(void *arg) { *(int *)arg = 1; }

static void rig_close(rig_t *r) {
  sagad_engine_stop(r->e, NULL, NULL);
  int done = 0;
  sagad_observe_close(r->o, closed, &done);
  while (!done)
    uv_run(&r->loop, UV_RUN_ONCE);
  sagad_engine_free(r->e);
  uv_loop_close(&r->loop);
  sagad_config_free(r->cfg);
}

/* N sagas through their whole life, SAGAS_PER_ROUND at a time. */
static void phase_steady(saga_registry_t *reg, size_t nsagas) {
  rig_t r;
  rig_open(&r, reg);
  size_t produced = EF.produced;
  if (measuring)
    CALLGRIND_ZERO_STATS;
  for (size_t c = 0; c < nsagas; c += SAGAS_PER_ROUND)
    drive(r.e, c, c + SAGAS_PER_ROUND < nsagas ? c + SAGAS_PER_ROUND : nsagas,
          NSTEPS, true);
  if (measuring)
    CALLGRIND_DUMP_STATS_AT("steady");
  /* per saga: 3 commands; notifications STARTED, 3 STEP_DONE, COMPLETED */
  if (EF.produced - produced != (2 * NSTEPS + 2) * nsagas ||
      sagad_engine_sagas(r.e) != 0)
    die("steady", "the sagas did not all complete");
  rig_close(&r);
}

/* N sagas to their third step, then recovered by a second engine. */
static void phase_recovery(saga_registry_t *reg, size_t nsagas) {
  K.streams = calloc(nsagas, sizeof *K.streams);
  if (!K.streams)
    die("recovery", "out of memory");
  K.nstreams = nsagas;
  rig_t r;
  rig_open(&r, reg);
  EF.on_add = keep_records;
  for (size_t c = 0; c < nsagas; c += SAGAS_PER_ROUND)
    drive(r.e, c, c + SAGAS_PER_ROUND < nsagas ? c + SAGAS_PER_ROUND : nsagas,
          NSTEPS - 1, false);
  EF.on_add = NULL;
  rig_close(&r);

  rig_open(&r, reg);
  size_t produced = EF.produced;
  int32_t part = 0;
  char id[24];
  if (measuring)
    CALLGRIND_ZERO_STATS;
  on();
  if (sagad_engine_on_assign(r.e, &part, 1) != 0)
    die("recovery", "the load did not start");
  for (size_t k = 0; k < nsagas; k++) {
    off();
    snprintf(id, sizeof id, "s%zu", k);
    on();
    for (size_t i = 0; i < K.streams[k].n; i++)
      EF.load_cb(EF.load_arg, id, 0, (int64_t)i + 1, K.streams[k].data[i],
                K.streams[k].len[i]);
  }
  EF.load_done(EF.load_arg, 0);
  ef_settle(r.e, NULL);
  off();
  if (measuring)
    CALLGRIND_DUMP_STATS_AT("recovery");
  if (EF.produced - produced != nsagas || sagad_engine_sagas(r.e) != nsagas)
    die("recovery", "the sagas were not all resumed");
  rig_close(&r);
  for (size_t k = 0; k < nsagas; k++)
    for (size_t i = 0; i < K.streams[k].n; i++)
      free(K.streams[k].data[i]);
  free(K.streams);
  K.streams = NULL;
  K.nstreams = 0;
}

static size_t nsagas(void) {
  const char *s = getenv("BENCH_ENGINE_SAGAS");
  long n = s && *s ? atol(s) : 5000;
  if (n < 1 || n > 10000000)
    die("BENCH_ENGINE_SAGAS", "not a number of sagas (1..10000000)");
  return (size_t)n;
}

/* "totals: N" (or "summary: N") of a callgrind dump. */
static double dump_total(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    die(path, strerror(errno));
  char line[512];
  double v = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "totals:", 7) || !strncmp(line, "summary:", 8))
      v = atof(strchr(line, ':') + 1);
  fclose(f);
  if (v < 0)
    die(path, "no totals in the callgrind dump");
  return v;
}

static int run_under_callgrind(const char *self) {
  size_t n = nsagas();
  const char *keep = getenv("BENCH_ENGINE_OUT");
  char dir[256];
  if (keep && *keep) {
    snprintf(dir, sizeof dir, "%s", keep);
    mkdir(dir, 0755);
  } else {
    snprintf(dir, sizeof dir, "/tmp/bench-engine-cg.%d", (int)getpid());
    if (mkdir(dir, 0700) != 0)
      die(dir, strerror(errno));
  }
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "valgrind --tool=callgrind --collect-atstart=no --compress-strings=no "
           "--callgrind-out-file=%s/callgrind.out '%s' --child",
           dir, self);
  fprintf(stderr, "bench-engine: %s (%zu sagas per phase)\n", cmd, n);
  int rc = system(cmd);
  if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
    die("valgrind", "did not run to the end (is valgrind installed?)");
  char p1[300], p2[300], p3[300];
  snprintf(p1, sizeof p1, "%s/callgrind.out.1", dir);
  snprintf(p2, sizeof p2, "%s/callgrind.out.2", dir);
  snprintf(p3, sizeof p3, "%s/callgrind.out", dir);
  double steady = dump_total(p1) / (double)n;
  double recovery = dump_total(p2) / (double)n;
  if (!(keep && *keep)) {
    remove(p1);
    remove(p2);
    remove(p3);
    remove(dir);
  } else {
    fprintf(stderr, "bench-engine: dumps kept in %s (callgrind_annotate)\n",
            dir);
  }
  printf("instructions per saga, steady state (start, 3 commands, 3 replies, "
         "completion): %.0f\n",
         steady);
  printf("instructions per saga, recovery (replayed from 3 records, resumed, "
         "its command produced): %.0f\n",
         recovery);
  printf("{\"bench\": \"engine\", \"sagas\": %zu, \"instr_per_saga_steady\": "
         "%.0f, \"instr_per_saga_recovery\": %.0f}\n",
         n, steady, recovery);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--child") != 0)
    return run_under_callgrind(argv[0]);
  measuring = RUNNING_ON_VALGRIND != 0;
  saga_registry_t *reg = ef_registry("bench", 30000);
  size_t n = nsagas();
  phase_steady(reg, n);
  phase_recovery(reg, n);
  saga_registry_free(reg);
  free(EF.tokens);
  return 0;
}
