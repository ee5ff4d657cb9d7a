/* bench-saga: the whole stack on this machine, fsync on -- a real sagad
 * process, in-process participants that answer every command at once, and
 * a closed-loop starter, all on the embedded PostgreSQL and Kafka mock.
 * Measures saga throughput (0% and 20% failures), latency at concurrency 1
 * and at load, per-step coordinator overhead, events and bytes per saga,
 * resident memory per in-flight saga, recovery after kill -9, and the raw
 * multi-row INSERT baseline in the same run. Uses a scratch database and
 * fresh topics. Prints figures and a last JSON line.
 * Usage: bench-saga [--quick] (needs SAGA_PG_CONNINFO, SAGA_KAFKA_BOOTSTRAP)
 * Environment knobs (each described where it is read): BENCH_ONLY_MEMORY=1
 * runs only the resident memory and recovery phases, BENCH_NO_MEMORY=1
 * skips them, BENCH_C1_ONLY=1 runs only the concurrency-1 half and the
 * floor; BENCH_MEMORY_PAUSE_S, BENCH_RECOVERY_ROUNDS, BENCH_KEEP,
 * BENCH_ADMIN, BENCH_LOG_LEVEL and BENCH_LIBRARY_TRACE (bench_library.c)
 * are for profiling; BENCH_CONCURRENCY,
 * BENCH_BATCH_MAX_EVENTS and the BENCH_*_FETCH_WAIT_MS / _LINGER_MS ones
 * change what is measured. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "wire_kafka.h"

#include "../bench_raw.h"
#include "bench_library.h"

#define NSTEPS 3
#define MAXSAGAS 400000
#define OUTPUT_BYTES 200 /* of every step's output (issue figures: 200) */

/* ---- small helpers -------------------------------------------------- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* sagad processes started, stopped by die() too */
static pid_t children[8];

static void die(const char *what, const char *detail) {
  fprintf(stderr, "bench-saga: %s: %s\n", what, detail ? detail : "");
  for (int i = 0; i < 8; i++)
    if (children[i] > 0)
      kill(children[i], SIGKILL);
  exit(1);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
  if (!n)
    return 0;
  qsort(v, n, sizeof *v, cmp_d);
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

static PGresult *q(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK)
    die(sql, PQerrorMessage(c));
  return r;
}

static double q_num(PGconn *c, const char *sql) {
  PGresult *r = q(c, sql);
  double v = PQntuples(r) && !PQgetisnull(r, 0, 0)
                 ? atof(PQgetvalue(r, 0, 0))
                 : 0;
  PQclear(r);
  return v;
}

/* ---- state ---------------------------------------------------------- */

typedef struct {
  double t_start, t_reply[NSTEPS];
  unsigned char fail, done;
} slot_t;

/* The topics of one half of the run: the saga type (its definition names
 * the step topics), the step topics, notifications, and the topic of the
 * Kafka hop measurement. */
typedef struct {
  char type[16];
  char steps[NSTEPS][64];
  char notify[64], ping[64];
} topics_t;

static struct {
  char base_ci[1024], ci[1200], db[64], dir[128], bootstrap[512];
  /* the mock's brokers without the long-poll relay, for the load half
   * (see C1_FETCH_WAIT_MS); bs: the list of the half being run */
  char bootstrap_load[512];
  const char *bs;
  /* the recovery phase's sagad (inbox2) is another deployment, which
   * runs beside the load phase's: a database of its own */
  char ci2[1200], db2[72]; /* inbox2's deployment: memory and recovery */
  char ci1[1200], db1[72]; /* inbox1's deployment: concurrency 1 */
  const char *control; /* the mock's control socket, or NULL */
  char inbox[64], dlq[64], group[64];
  topics_t t_c1, t_load, *t; /* t: the running half's */
  /* the library line's saga type and step topics (its notifications are
   * t_c1's, sagad has one notifications topic) */
  topics_t t_lib;
  char stuck[64], inbox2[64], group2[64], inbox1[64], group1[64];
  /* prod is the producer of the running phase: prod_c1 (linger.ms 0) for
   * concurrency 1, prod_load after; cons is the participants' consumer,
   * reopened between the two with another fetch.wait.max.ms */
  rd_kafka_t *prod, *prod_c1, *prod_load, *cons;
  slot_t *slots;
  char phase; /* id prefix of the running phase */
  const char *start_inbox; /* the inbox of the sagad of the running phase */
  size_t inflight, completed;
  /* concurrency-1 measurements */
  int record_gaps;
  double *gaps;
  size_t ngaps;
  double *hops;
  size_t nhops;
  double *lat;
  size_t nlat;
} B;

static void set(rd_kafka_conf_t *cf, const char *k, const char *v) {
  char err[256];
  if (rd_kafka_conf_set(cf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
    die(k, err);
}

/* The Kafka settings of the two halves of the run. At concurrency 1 every
 * client -- the participants, the starter and a sagad of its own -- runs
 * with linger.ms 0 (the default of sagad and of the client library, which
 * run with their defaults here; the hand-made participants set it) and
 * fetch.wait.max.ms 10 (sagad's and the library's default). The embedded
 * Kafka's long-poll relay answers a waiting fetch as soon as a produce
 * lands, as a broker does (docs/internals/embedded-stack.md); the mock
 * alone held an empty fetch for the whole wait, so this half used to run
 * at fetch.wait.max.ms 0, every (consumer, broker) pair polling without
 * pause, which on 2 cores took the CPU from PostgreSQL and sagad
 * (SAGA_KAFKA_MOCK_ARGS=--no-long-poll BENCH_C1_FETCH_WAIT_MS=0 measures
 * that way again). That half's topics have one partition each, all led by
 * broker 1 (set through the mock's control socket, SAGA_KAFKA_CONTROL):
 * one fetcher per consumer. The load phases' clients talk to the mock's
 * brokers directly (the control socket's bootstrap-direct): under load a
 * fetch finds data, so holding it saves nothing, and the relay's copying
 * took CPU from the coordinator (docs/benchmarks.md, "The embedded Kafka
 * answers fetches when data lands"). They use fetch.wait.max.ms 1 and
 * linger.ms 5 (librdkafka's default, set here: sagad's and the library's
 * is 0, docs/client.md "Kafka settings"): the mock finds a fetch's offset by
 * walking the partition's message sets from the oldest, so the fewer and
 * larger the sets, the less its fetches cost as the logs grow (full run,
 * 512 in flight: 3204 sagas/s with linger.ms 1, 3773 with 5).
 * BENCH_C1_FETCH_WAIT_MS, BENCH_C1_LINGER_MS, BENCH_FETCH_WAIT_MS and
 * BENCH_LINGER_MS override them, to compare. */
static const char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return v && *v ? v : dflt;
}
#define C1_FETCH_WAIT_MS env_or("BENCH_C1_FETCH_WAIT_MS", "10")
/* The concurrency-1 half's warm-up (group joins, metadata, connections,
 * plans). Not more: the embedded Kafka finds a fetch's offset by walking
 * the partition's message sets from the oldest, so every saga of the
 * warm-up makes each later fetch on the same topics slower -- with 5000
 * (2026-12-06) the hand-made line's p50 went from 5.2 to 10.0 ms, the
 * opposite of a warm store. The effect store's table gets its history
 * directly (bench_library_opts_t.store_history). */
#define C1_WARM_SAGAS 100
#define C1_LINGER_MS env_or("BENCH_C1_LINGER_MS", "0")
#define LOAD_FETCH_WAIT_MS env_or("BENCH_FETCH_WAIT_MS", "1")
#define LOAD_LINGER_MS env_or("BENCH_LINGER_MS", "5")

static rd_kafka_t *producer_open(const char *bootstrap, const char *linger) {
  char err[512];
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  set(pc, "bootstrap.servers", bootstrap);
  set(pc, "linger.ms", linger);
  set(pc, "socket.nagle.disable", "true");
  set(pc, "queue.buffering.max.messages", "1000000");
  set(pc, "queue.buffering.max.kbytes", "1048576");
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
  if (!p)
    die("producer", err);
  return p;
}

/* The participants' consumer (one group for the whole run, so the second
 * one goes on from the offsets the first committed). */
static void consumer_open(const char *fetch_wait) {
  char err[512];
  rd_kafka_conf_t *cc = rd_kafka_conf_new();
  set(cc, "bootstrap.servers", B.bs);
  char g[96];
  snprintf(g, sizeof g, "bench.part.%d", (int)getpid());
  set(cc, "group.id", g);
  set(cc, "fetch.wait.max.ms", fetch_wait);
  set(cc, "socket.nagle.disable", "true");
  set(cc, "auto.offset.reset", "earliest");
  set(cc, "session.timeout.ms", "6000");
  set(cc, "topic.metadata.refresh.interval.ms", "1000");
  set(cc, "allow.auto.create.topics", "true");
  B.cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err);
  if (!B.cons)
    die("consumer", err);
  rd_kafka_poll_set_consumer(B.cons);
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(5);
  for (int i = 0; i < NSTEPS; i++)
    rd_kafka_topic_partition_list_add(sub, B.t->steps[i],
                                      RD_KAFKA_PARTITION_UA);
  rd_kafka_topic_partition_list_add(sub, B.t->notify, RD_KAFKA_PARTITION_UA);
  rd_kafka_topic_partition_list_add(sub, B.t->ping, RD_KAFKA_PARTITION_UA);
  if (rd_kafka_subscribe(B.cons, sub))
    die("subscribe", "participant topics");
  rd_kafka_topic_partition_list_destroy(sub);
}

static void consumer_close(void) {
  rd_kafka_consumer_close(B.cons);
  rd_kafka_destroy(B.cons);
  B.cons = NULL;
}

static void produce(const char *topic, const char *key, void *buf, size_t len,
                    rd_kafka_headers_t *h) {
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        B.prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (!e)
      return;
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      die("produce", rd_kafka_err2str(e));
    rd_kafka_poll(B.prod, 10);
  }
}

static void encode_produce(const ProtobufCMessage *m, const char *topic,
                           const char *id) {
  saga_meta_t meta = {.saga_id = id};
  void *buf = NULL;
  size_t len = 0;
  rd_kafka_headers_t *h = NULL;
  char err[256];
  if (saga__wire_encode(m, &meta, 0, &buf, &len, &h, err, sizeof err))
    die("encode", err);
  produce(topic, id, buf, len, h);
  free(buf);
}

static void start_saga(const char *type, size_t n, int fail) {
  char id[48];
  snprintf(id, sizeof id, "%c%zu", B.phase, n);
  Saga__V1__StartSaga s;
  saga__v1__start_saga__init(&s);
  s.saga_id = id;
  s.saga_type = SAGA_MUT(type);
  char input[96];
  snprintf(input, sizeof input, "{\"order\":\"%s\",\"amount\":4200}", id);
  s.input.data = (uint8_t *)input;
  s.input.len = strlen(input);
  if (n < MAXSAGAS) {
    slot_t *sl = &B.slots[n];
    memset(sl, 0, sizeof *sl);
    sl->fail = (unsigned char)fail;
    sl->t_start = now_ms();
  }
  encode_produce(&s.base, !strcmp(type, "stuck") ? B.inbox2 : B.start_inbox,
                 id);
}

/* Slot of a saga id of the running phase, or NULL. */
static slot_t *slot_of(const char *id) {
  if (id[0] != B.phase)
    return NULL;
  char *end = NULL;
  unsigned long n = strtoul(id + 1, &end, 10);
  return end && !*end && n < MAXSAGAS ? &B.slots[n] : NULL;
}

static void on_command(const rd_kafka_message_t *m, int step) {
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h))
    h = NULL;
  ProtobufCMessage *pb = NULL;
  saga__wire_meta_t meta;
  char err[256];
  if (saga__wire_decode(&saga__v1__command__descriptor, m->payload, m->len, h,
                        0, &pb, &meta, err, sizeof err))
    return; /* the topic-creating dummy */
  const Saga__V1__Command *c = (const Saga__V1__Command *)pb;
  double t = now_ms();
  slot_t *sl = slot_of(c->saga_id);
  int comp = c->action == SAGA__V1__ACTION__ACTION_COMPENSATE;
  if (sl && !comp && B.record_gaps && step > 0 && sl->t_reply[step - 1] > 0)
    B.gaps[B.ngaps++] = t - sl->t_reply[step - 1];
  int fail = sl && sl->fail && !comp && step == 1;
  /* A step's output: OUTPUT_BYTES of JSON, which the coordinator keeps
   * and hands on to the later steps' commands (the default envelope). */
  char out[OUTPUT_BYTES + 1];
  int n = fail || comp ? 0
                       : snprintf(out, sizeof out, "{\"ref\":\"%.60s/%d\","
                                  "\"pad\":\"", c->saga_id, step);
  if (n > 0 && n < OUTPUT_BYTES - 2) {
    memset(out + n, 'x', (size_t)(OUTPUT_BYTES - 2 - n));
    memcpy(out + OUTPUT_BYTES - 2, "\"}", 3);
    n = OUTPUT_BYTES;
  } else {
    n = 0;
  }
  Saga__V1__Reply r;
  saga__wire_reply_to(&r, c,
                      fail ? SAGA__V1__OUTCOME__OUTCOME_FAILURE
                           : SAGA__V1__OUTCOME__OUTCOME_SUCCESS,
                      fail ? "card declined" : "", n ? out : NULL,
                      (size_t)n);
  encode_produce(&r.base, c->reply_topic, c->saga_id);
  if (sl && !comp)
    sl->t_reply[step] = now_ms();
  saga__wire_free(pb);
}

static void on_notification(const rd_kafka_message_t *m) {
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h))
    h = NULL;
  ProtobufCMessage *pb = NULL;
  saga__wire_meta_t meta;
  char err[256];
  if (saga__wire_decode(&saga__v1__notification__descriptor, m->payload,
                        m->len, h, 0, &pb, &meta, err, sizeof err))
    return;
  const Saga__V1__Notification *n = (const Saga__V1__Notification *)pb;
  if (n->kind == SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPLETED ||
      n->kind == SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_COMPENSATED) {
    slot_t *sl = slot_of(n->saga_id);
    if (sl && !sl->done && sl->t_start > 0) {
      sl->done = 1;
      B.completed++;
      B.inflight--;
      B.lat[B.nlat++] = now_ms() - sl->t_start;
    }
  }
  saga__wire_free(pb);
}

/* One turn: every message waiting (up to a cap), then deliveries. Between
 * two phases' consumers (B.cons NULL) only the deliveries. */
static void turn(int wait_ms) {
  for (int k = 0; B.cons && k < 4096; k++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(B.cons, k ? 0 : wait_ms);
    if (!m)
      break;
    if (!m->err) {
      const char *tn = rd_kafka_topic_name(m->rkt);
      int step = -1;
      for (int i = 0; i < NSTEPS; i++)
        if (!strcmp(tn, B.t->steps[i]))
          step = i;
      if (step >= 0)
        on_command(m, step);
      else if (!strcmp(tn, B.t->notify))
        on_notification(m);
      else if (!strcmp(tn, B.t->ping) && m->len == sizeof(double)) {
        double t0;
        memcpy(&t0, m->payload, sizeof t0);
        B.hops[B.nhops++] = now_ms() - t0;
      }
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_poll(B.prod, B.cons ? 0 : wait_ms);
}

/* ---- sagad ---------------------------------------------------------- */

static pid_t sagad_start(const char *inbox, const char *group, const char *log,
                         const char *session_ms, const char *fetch_wait,
                         const char *linger) {
  pid_t pid = fork();
  if (pid < 0)
    die("fork", strerror(errno));
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    static char a[22][1400];
    int n = 0;
    snprintf(a[n++], sizeof a[0], "%s", SAGAD_PATH);
    /* a database belongs to one deployment (inbox, group) */
    snprintf(a[n++], sizeof a[0], "--store.conninfo=%s",
             strcmp(inbox, B.inbox2) == 0   ? B.ci2
             : strcmp(inbox, B.inbox1) == 0 ? B.ci1
                                            : B.ci);
    snprintf(a[n++], sizeof a[0], "--kafka.bootstrap.servers=%s", B.bs);
    snprintf(a[n++], sizeof a[0], "--definitions.dir=%s/defs", B.dir);
    snprintf(a[n++], sizeof a[0], "--topic.inbox=%s", inbox);
    snprintf(a[n++], sizeof a[0], "--topic.notifications=%s", B.t->notify);
    snprintf(a[n++], sizeof a[0], "--topic.dlq=%s", B.dlq);
    snprintf(a[n++], sizeof a[0], "--group.id=%s", group);
    /* Static membership, as docs/deploy.md advises for a coordinator with
     * a stable name: one sagad per group at a time here, so the group's
     * name serves. A sagad restarted after kill -9 takes the killed one's
     * place (the embedded Kafka keeps it for the instance id:
     * tools/kafka-mock/static_members.h) instead of joining beside it. */
    snprintf(a[n++], sizeof a[0], "--kafka.group.instance.id=bench-%s",
             group);
    snprintf(a[n++], sizeof a[0], "--kafka.session.timeout.ms=%s", session_ms);
    snprintf(a[n++], sizeof a[0], "--kafka.fetch.wait.max.ms=%s", fetch_wait);
    snprintf(a[n++], sizeof a[0], "--kafka.allow.auto.create.topics=true");
    snprintf(a[n++], sizeof a[0], "--kafka.topic.metadata.refresh.interval.ms=1000");
    if (linger) /* else sagad's default */
      snprintf(a[n++], sizeof a[0], "--kafka.linger.ms=%s", linger);
    /* BENCH_BATCH_MAX_EVENTS: sagad's batch.max_events, to compare sizes */
    snprintf(a[n++], sizeof a[0], "--batch.max_events=%s",
             getenv("BENCH_BATCH_MAX_EVENTS") ? getenv("BENCH_BATCH_MAX_EVENTS")
                                              : "1024");
    /* BENCH_ADMIN (a fixed admin address, to scrape /metrics during a
     * run) and BENCH_LOG_LEVEL (debug: a line per command) are for
     * profiling; BENCH_KEEP=1 keeps the logs in /tmp/bench-saga-PID. */
    snprintf(a[n++], sizeof a[0], "--admin.listen=%s",
             getenv("BENCH_ADMIN") && !strcmp(inbox, B.inbox)
                 ? getenv("BENCH_ADMIN")
                 : "127.0.0.1:0");
    /* The memory phase starts its 100,000 sagas in one burst. With
     * sagad's back-pressure the part it does not hold waits in the inbox,
     * and the Kafka mock keeps only about 5 MiB per partition
     * (docs/internals/embedded-stack.md), dropping what sagad had not
     * read yet; a real broker keeps it. So the burst is taken whole, as
     * before there was back-pressure. */
    if (!strcmp(inbox, B.inbox2))
      snprintf(a[n++], sizeof a[0], "--input.max_held=0");
    snprintf(a[n++], sizeof a[0], "--log.format=text");
    snprintf(a[n++], sizeof a[0], "--log.level=%s",
             getenv("BENCH_LOG_LEVEL") ? getenv("BENCH_LOG_LEVEL") : "info");
    char *argv[23];
    for (int i = 0; i < n; i++)
      argv[i] = a[i];
    argv[n] = NULL;
    execv(SAGAD_PATH, argv);
    _exit(127);
  }
  for (int i = 0; i < 8; i++)
    if (children[i] <= 0) {
      children[i] = pid;
      break;
    }
  return pid;
}

static void sagad_stop(pid_t pid, int sig) {
  kill(pid, sig);
  int st;
  for (int i = 0; i < 3000; i++) {
    if (waitpid(pid, &st, WNOHANG) == pid)
      return;
    turn(1);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
}

static long rss_bytes(pid_t pid) {
  char p[64], line[256];
  snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
  FILE *f = fopen(p, "r");
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6))
      kb = atol(line + 6);
  if (f)
    fclose(f);
  return kb * 1024;
}

/* Sagas sagad said it recovered (a "recovered N sagas of M assigned"
 * line with M > 0), or -1 before such a line. */
static long log_recovered(const char *log) {
  FILE *f = fopen(log, "r");
  char line[2048];
  long got = -1;
  while (f && fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "recovered ");
    unsigned long n = 0, parts = 0;
    if (p && sscanf(p, "recovered %lu sagas of %lu assigned", &n, &parts) ==
                 2 && parts > 0)
      got = (long)n;
  }
  if (f)
    fclose(f);
  return got;
}

/* Seconds from sagad's last "assigned N inbox partitions" line to its
 * last "recovered" line (its log's timestamps), or -1: the recovery's own
 * part, without the restart and the group rejoin. */
static double log_assign_to_recovered_s(const char *log) {
  FILE *f = fopen(log, "r");
  char line[2048];
  double assigned = -1, recovered = -1;
  while (f && fgets(line, sizeof line, f)) {
    int h, m;
    double sec;
    if (sscanf(line, "%*4d-%*2d-%*2dT%d:%d:%lfZ", &h, &m, &sec) != 3)
      continue;
    double t = h * 3600.0 + m * 60.0 + sec;
    if (strstr(line, " inbox partitions") && strstr(line, "info  assigned "))
      assigned = t;
    else if (strstr(line, "info  recovered "))
      recovered = t;
  }
  if (f)
    fclose(f);
  return assigned >= 0 && recovered >= assigned ? recovered - assigned : -1;
}

/* The admin port sagad logged ("admin endpoint listening on
 * http://127.0.0.1:PORT"), or 0. */
static int log_admin_port(const char *log) {
  FILE *f = fopen(log, "r");
  char line[2048];
  int port = 0;
  while (f && fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "listening on http://127.0.0.1:");
    if (p)
      port = atoi(p + strlen("listening on http://127.0.0.1:"));
  }
  if (f)
    fclose(f);
  return port;
}

/* A histogram's cumulative bucket counts from sagad's /metrics: le[i],
 * cum[i] for i < *n (the +Inf bucket last, le = INFINITY). */
#define MAX_LE 40
static void scrape_histogram(int port, const char *name, double *le,
                             double *cum, int *n) {
  *n = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    die("metrics", strerror(errno));
  const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n\r\n";
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
    die("metrics", "could not send the request");
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap + 1);
  ssize_t r;
  while (buf && len < cap && (r = read(fd, buf + len, cap - len)) > 0)
    len += (size_t)r;
  close(fd);
  if (!buf)
    die("metrics", "out of memory");
  buf[len] = '\0';
  char key[160];
  snprintf(key, sizeof key, "\n%s_bucket{le=\"", name);
  for (char *p = strstr(buf, key); p && *n < MAX_LE;
       p = strstr(p + 1, key)) {
    char *v = p + strlen(key);
    le[*n] = !strncmp(v, "+Inf", 4) ? INFINITY : strtod(v, NULL);
    char *sp = strchr(v, ' ');
    cum[(*n)++] = sp ? strtod(sp + 1, NULL) : 0;
  }
  free(buf);
  if (*n == 0)
    die("metrics", "sagad's /metrics has no such histogram");
}

/* The q-quantile of the observations between two scrapes, interpolated
 * within its bucket as Prometheus's histogram_quantile() does. */
static double histogram_quantile(double q, const double *le,
                                 const double *c0, const double *c1, int n) {
  double total = c1[n - 1] - c0[n - 1];
  if (total <= 0)
    return 0;
  double rank = q * total, below = 0, lo = 0;
  for (int i = 0; i < n; i++) {
    double cnt = c1[i] - c0[i];
    if (cnt >= rank) {
      if (isinf(le[i]))
        return lo;
      double in = cnt - below;
      return lo + (le[i] - lo) * (in > 0 ? (rank - below) / in : 1);
    }
    below = cnt;
    lo = le[i];
  }
  return lo;
}

/* sagad's two histograms of a step, scraped together: reply consumed ->
 * next command produced (the step's append and commit included), and its
 * appends (submit -> durable). */
typedef struct {
  double le[MAX_LE], cum[MAX_LE]; /* saga_reply_to_command_duration_seconds */
  double ale[MAX_LE], acum[MAX_LE]; /* saga_eventstore_append_duration_... */
  int n, na;
} sagad_hists_t;

static void sagad_hists_scrape(int port, sagad_hists_t *h) {
  scrape_histogram(port, "saga_reply_to_command_duration_seconds", h->le,
                   h->cum, &h->n);
  scrape_histogram(port, "saga_eventstore_append_duration_seconds", h->ale,
                   h->acum, &h->na);
}

/* What happened between two scrapes, in ms: the steps' p50 and p99
 * (*ov), their appends' (*cm), and how many steps. */
typedef struct {
  double ov50, ov99, cm50, cm99, steps;
} sagad_steps_t;

static sagad_steps_t sagad_steps_between(const sagad_hists_t *h0,
                                         const sagad_hists_t *h1) {
  if (h0->n != h1->n || h0->na != h1->na)
    die("metrics", "a histogram changed its buckets");
  sagad_steps_t st = {
      .ov50 = histogram_quantile(0.50, h1->le, h0->cum, h1->cum, h1->n) * 1e3,
      .ov99 = histogram_quantile(0.99, h1->le, h0->cum, h1->cum, h1->n) * 1e3,
      .cm50 =
          histogram_quantile(0.50, h1->ale, h0->acum, h1->acum, h1->na) * 1e3,
      .cm99 =
          histogram_quantile(0.99, h1->ale, h0->acum, h1->acum, h1->na) * 1e3,
      .steps = h1->cum[h1->n - 1] - h0->cum[h1->n - 1]};
  return st;
}

/* Prints what sagad_steps_between(h0, h1) gave, and the steps'
 * distribution over the buckets. */
static void print_steps(const sagad_hists_t *h0, const sagad_hists_t *h1,
                        const sagad_steps_t *st) {
  printf("  per-step coordinator overhead, sagad's own histogram (reply "
         "consumed -> next command produced, append and commit included, "
         "%.0f steps): p50 %.2f ms, p99 %.2f ms\n",
         st->steps, st->ov50, st->ov99);
  printf("  its distribution:");
  for (int i = 0, prev = 0; i < h1->n; i++) {
    double d = (h1->cum[i] - h0->cum[i]) -
               (i ? h1->cum[i - 1] - h0->cum[i - 1] : 0);
    if (d > 0 || (i == h1->n - 1 && prev)) {
      if (isinf(h1->le[i]))
        printf(" >%g ms: %.0f", h1->le[i - 1] * 1e3, d);
      else
        printf(" <=%g ms: %.0f", h1->le[i] * 1e3, d);
    }
    prev = d > 0;
  }
  printf("\n");
  printf("  of which sagad's commits (its append histogram, submit -> "
         "durable, the starts' included): p50 %.2f ms, p99 %.2f ms\n",
         st->cm50, st->cm99);
}

/* ---- set-up --------------------------------------------------------- */

static void write_def(const char *name, const char *const *topics,
                      unsigned timeout_ms) {
  char path[256];
  snprintf(path, sizeof path, "%s/defs/%s.json", B.dir, name);
  FILE *f = fopen(path, "w");
  if (!f)
    die("definition", path);
  fprintf(f,
          "{\"name\": \"%s\", \"version\": 1, \"defaults\": {\"timeout_ms\": "
          "%u, \"retry\": {\"max_attempts\": 1}},\n\"steps\": [",
          name, timeout_ms);
  for (int i = 0; i < NSTEPS; i++)
    fprintf(f,
            "%s{\"name\": \"s%d\", \"topic\": \"%s\", \"kind\": "
            "\"compensatable\", \"compensation\": {\"topic\": \"%s\", "
            "\"action\": \"undo\"}}",
            i ? ",\n" : "", i + 1, topics[i], topics[i]);
  fprintf(f, "]}\n");
  fclose(f);
}

/* One command to the mock's control socket; dies unless it answers ok.
 * Its answer (the lines before "ok") into out (outlen bytes) when out is
 * not NULL. */
static void mock_control_answer(const char *cmd, char *out, size_t outlen);
static void mock_control(const char *cmd) {
  mock_control_answer(cmd, NULL, 0);
}

static void mock_control_answer(const char *cmd, char *out, size_t outlen) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", B.control);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    die("kafka mock control socket", strerror(errno));
  char line[200], ans[1024] = "";
  int n = snprintf(line, sizeof line, "%s\n", cmd);
  ssize_t r = write(fd, line, (size_t)n) == n ? read(fd, ans, sizeof ans - 1)
                                               : -1;
  close(fd);
  char *ok = r > 0 ? strstr(ans, "ok\n") : NULL;
  if (!ok || (ok != ans && ok[-1] != '\n'))
    die(cmd, r > 0 ? ans : "no answer from the kafka mock");
  if (out) {
    size_t len = (size_t)(ok - ans);
    while (len && ans[len - 1] == '\n')
      len--;
    snprintf(out, outlen, "%.*s", (int)len, ans);
  }
}

/* The topics and saga type of one half of the run ("c1" or "load"). */
static void topics_init(topics_t *t, const char *half, int pid) {
  snprintf(t->type, sizeof t->type, "fast_%s", half);
  for (int i = 0; i < NSTEPS; i++)
    snprintf(t->steps[i], sizeof t->steps[i], "bench.%s.step%d.%d", half,
             i + 1, pid);
  snprintf(t->notify, sizeof t->notify, "bench.%s.notify.%d", half, pid);
  snprintf(t->ping, sizeof t->ping, "bench.%s.ping.%d", half, pid);
  const char *const st[NSTEPS] = {t->steps[0], t->steps[1], t->steps[2]};
  write_def(t->type, st, 60000);
}

static void setup(void) {
  int pid = (int)getpid();
  const char *ci = getenv("SAGA_PG_CONNINFO");
  const char *bs = getenv("SAGA_KAFKA_BOOTSTRAP");
  if (!ci || !bs)
    die("environment", "SAGA_PG_CONNINFO and SAGA_KAFKA_BOOTSTRAP must be set "
                       "(scripts/bench.sh saga sets them)");
  snprintf(B.base_ci, sizeof B.base_ci, "%s", ci);
  snprintf(B.bootstrap, sizeof B.bootstrap, "%s", bs);
  snprintf(B.bootstrap_load, sizeof B.bootstrap_load, "%s", bs);
  B.bs = B.bootstrap;
  snprintf(B.db, sizeof B.db, "bench_saga_%d", pid);
  PGconn *c = PQconnectdb(B.base_ci);
  if (PQstatus(c) != CONNECTION_OK)
    die("connect", PQerrorMessage(c));
  char sql[256];
  snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", B.db);
  PQclear(q(c, sql));
  /* A database belongs to one deployment (inbox and group): each phase's
   * sagad gets its own. */
  snprintf(B.db1, sizeof B.db1, "%s_1", B.db);
  snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", B.db1);
  PQclear(q(c, sql));
  snprintf(B.db2, sizeof B.db2, "%s_2", B.db);
  snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", B.db2);
  PQclear(q(c, sql));
  PQfinish(c);
  snprintf(B.ci, sizeof B.ci, "%s dbname=%s", B.base_ci, B.db);
  snprintf(B.ci2, sizeof B.ci2, "%s dbname=%s", B.base_ci, B.db2);
  snprintf(B.ci1, sizeof B.ci1, "%s dbname=%s", B.base_ci, B.db1);
  snprintf(B.dir, sizeof B.dir, "/tmp/bench-saga-%d", pid);
  mkdir(B.dir, 0700);
  char defs[160];
  snprintf(defs, sizeof defs, "%s/defs", B.dir);
  mkdir(defs, 0700);
  snprintf(B.inbox, 64, "bench.inbox.%d", pid);
  snprintf(B.inbox2, 64, "bench.inbox2.%d", pid);
  snprintf(B.dlq, 64, "bench.dlq.%d", pid);
  snprintf(B.group, 64, "bench.sagad.%d", pid);
  snprintf(B.group2, 64, "bench.sagad2.%d", pid);
  snprintf(B.inbox1, 64, "bench.inbox1.%d", pid);
  snprintf(B.group1, 64, "bench.sagad1.%d", pid);
  snprintf(B.stuck, 64, "bench.stuck.%d", pid);
  topics_init(&B.t_c1, "c1", pid);
  topics_init(&B.t_load, "load", pid);
  /* The library line's own step topics: its participants are a new group
   * that starts at the earliest offset (so that the first saga's command,
   * sent before the group was assigned its partitions, is not skipped);
   * on t_c1's topics it first took every command of the hand-made line
   * and the warm-up, about 1,200, and sagad loaded each reply's finished
   * saga from the store, which held up the first 90 measured sagas of
   * the line (15.7-17.1 ms on average per 30 sagas, 11.3-13.6 after). */
  topics_init(&B.t_lib, "lib", pid);
  B.t = &B.t_c1;
  /* Its first two steps answered (each with an OUTPUT_BYTES output that
   * the saga keeps), the third never. */
  const char *const ts[NSTEPS] = {B.t_load.steps[0], B.t_load.steps[1],
                                  B.stuck};
  write_def("stuck", ts, 3600000);
  B.slots = calloc(MAXSAGAS, sizeof *B.slots);
  B.gaps = calloc(MAXSAGAS, sizeof *B.gaps);
  B.hops = calloc(MAXSAGAS, sizeof *B.hops);
  B.lat = calloc(MAXSAGAS, sizeof *B.lat);
  if (!B.slots || !B.gaps || !B.hops || !B.lat)
    die("memory", "out of memory");
  B.control = getenv("SAGA_KAFKA_CONTROL");
  if (B.control && !*B.control)
    B.control = NULL;
  if (B.control) /* the load half's clients bypass the long-poll relay */
    mock_control_answer("bootstrap-direct", B.bootstrap_load,
                        sizeof B.bootstrap_load);
  B.prod_c1 = producer_open(B.bootstrap, C1_LINGER_MS);
  B.prod_load = producer_open(B.bootstrap_load, LOAD_LINGER_MS);
  B.prod = B.prod_c1;
  /* The concurrency-1 topics: one partition each, all led by broker 1
   * (see C1_FETCH_WAIT_MS), when the mock's control socket is known. */
  const char *c1[] = {B.inbox1,          B.t_c1.steps[0],  B.t_c1.steps[1],
                      B.t_c1.steps[2],  B.t_c1.notify,    B.t_c1.ping,
                      B.t_lib.steps[0], B.t_lib.steps[1], B.t_lib.steps[2],
                      NULL};
  for (int i = 0; c1[i] && B.control; i++) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "topic-create %s 1 1", c1[i]);
    mock_control(cmd);
    snprintf(cmd, sizeof cmd, "partition-leader %s 0 1", c1[i]);
    mock_control(cmd);
  }
  /* Create every topic up front (a dummy message each), so subscriptions
   * find them. */
  const char *all[] = {B.inbox,          B.dlq,           B.stuck,
                       B.inbox2,         B.t_load.steps[0], B.t_load.steps[1],
                       B.t_load.steps[2], B.t_load.notify, B.t_load.ping,
                       NULL};
  static char dummy[1] = "x";
  for (int i = 0; all[i]; i++)
    produce(all[i], "x", dummy, 1, NULL);
  for (int i = 0; c1[i]; i++)
    produce(c1[i], "x", dummy, 1, NULL);
  rd_kafka_flush(B.prod, 10000);
  consumer_open(C1_FETCH_WAIT_MS);
}

static void teardown(void) {
  const char *keep = getenv("BENCH_KEEP");
  if (B.cons) /* none after the concurrency-1 half alone (BENCH_C1_ONLY) */
    consumer_close();
  rd_kafka_flush(B.prod_c1, 2000);
  rd_kafka_destroy(B.prod_c1);
  rd_kafka_flush(B.prod_load, 2000);
  rd_kafka_destroy(B.prod_load);
  PGconn *c = PQconnectdb(B.base_ci);
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE \"%s\" WITH (FORCE)", B.db);
  PQclear(PQexec(c, sql));
  snprintf(sql, sizeof sql, "DROP DATABASE \"%s\" WITH (FORCE)", B.db2);
  PQclear(PQexec(c, sql));
  snprintf(sql, sizeof sql, "DROP DATABASE \"%s\" WITH (FORCE)", B.db1);
  PQclear(PQexec(c, sql));
  PQfinish(c);
  char p[256];
  snprintf(p, sizeof p, "%s/defs/%s.json", B.dir, B.t_c1.type);
  remove(p);
  snprintf(p, sizeof p, "%s/defs/%s.json", B.dir, B.t_load.type);
  remove(p);
  snprintf(p, sizeof p, "%s/defs/%s.json", B.dir, B.t_lib.type);
  remove(p);
  snprintf(p, sizeof p, "%s/defs/stuck.json", B.dir);
  remove(p);
  snprintf(p, sizeof p, "%s/defs", B.dir);
  remove(p);
  for (int i = 0; i < 4 && !(keep && *keep == '1'); i++) {
    snprintf(p, sizeof p, "%s/sagad%d.log", B.dir, i);
    remove(p);
  }
  remove(B.dir);
}

/* ---- phases --------------------------------------------------------- */

static void phase_begin(char phase) {
  B.phase = phase;
  B.inflight = 0;
  B.completed = 0;
  B.nlat = 0;
}

/* Closed loop: keep `conc` sagas in flight for dur_ms (or until `count`
 * have started), then drain. Returns completed per second over the
 * measured window. fail_every: every n-th saga fails at step 2 (0 none). */
static double closed_loop(char phase, size_t conc, double dur_ms,
                          size_t count, int fail_every, double *p50,
                          double *p99) {
  phase_begin(phase);
  size_t started = 0;
  double t0 = now_ms(), deadline = t0 + dur_ms;
  while ((count ? started < count : now_ms() < deadline) &&
         started < MAXSAGAS) {
    while (B.inflight < conc && started < (count ? count : MAXSAGAS) &&
           started < MAXSAGAS) {
      start_saga(B.t->type, started,
                 fail_every && started % (size_t)fail_every == 0);
      started++;
      B.inflight++;
    }
    if (conc == 1 && B.record_gaps && B.inflight == 0)
      continue;
    turn(1);
    if (now_ms() - t0 > dur_ms + 120000)
      die("closed loop", "sagas stopped completing");
  }
  double drain_until = now_ms() + 60000;
  while (B.inflight && now_ms() < drain_until)
    turn(1);
  if (B.inflight)
    die("closed loop", "sagas did not finish within 60 s of the window");
  /* Every saga started, over the time from the first start to the last
   * completion: counting only completions inside the window would round
   * to whole waves when a saga takes longer than the window. */
  *p50 = pct(B.lat, B.nlat, 0.50);
  *p99 = pct(B.lat, B.nlat, 0.99);
  return (double)B.completed / ((now_ms() - t0) / 1e3);
}

/* Saga n of the running phase alone: start it, turn until it finishes
 * (die with `why` after limit_ms). */
static void one_saga(size_t n, int wait_ms, double limit_ms, const char *why) {
  start_saga(B.t->type, n, 0);
  B.inflight = 1;
  double until = now_ms() + limit_ms;
  while (B.inflight && now_ms() < until)
    turn(wait_ms);
  if (B.inflight)
    die("bench", why);
}

/* Warm up: group joins, topic metadata, connections: one saga alone, then
 * `n` at concurrency 64; their ids start with the letters p1 and p2. */
static void warm_up(char p1, char p2, size_t n) {
  phase_begin(p1);
  one_saga(0, 5, 60000, "warm-up: the first saga did not finish within 60 s");
  double a, b;
  closed_loop(p2, 64, 0, n, 0, &a, &b);
}

/* The sagad of a phase: started on its inbox with these Kafka settings,
 * made the starter's target, warmed up. */
static pid_t phase_sagad(const char *name, const char *inbox,
                         const char *group, const char *log,
                         const char *fetch_wait, const char *linger, char p1,
                         char p2, size_t n) {
  printf("%s: fetch.wait.max.ms %s, linger.ms %s (every client)\n", name,
         fetch_wait, linger ? linger : "0 (the default)");
  pid_t pid = sagad_start(inbox, group, log, "6000", fetch_wait, linger);
  B.start_inbox = inbox;
  warm_up(p1, p2, n);
  return pid;
}

/* Concurrency 1 with a Kafka hop measured between sagas. */
static void latency_c1(size_t n, double *p50, double *p99, double *gap50,
                       double *gap99, double *hop50, double *hop99) {
  phase_begin('l');
  B.ngaps = 0;
  B.nhops = 0;
  B.record_gaps = 1;
  for (size_t i = 0; i < n; i++) {
    one_saga(i, 1, 30000, "latency: a saga did not finish within 30 s");
    /* one Kafka hop (produce -> consume), as the participant sees it */
    double t = now_ms();
    produce(B.t->ping, "ping", &t, sizeof t, NULL);
    size_t h = B.nhops;
    while (B.nhops == h && now_ms() < t + 5000)
      turn(1);
  }
  B.record_gaps = 0;
  *p50 = pct(B.lat, B.nlat, 0.50);
  *p99 = pct(B.lat, B.nlat, 0.99);
  *gap50 = pct(B.gaps, B.ngaps, 0.50);
  *gap99 = pct(B.gaps, B.ngaps, 0.99);
  *hop50 = pct(B.hops, B.nhops, 0.50);
  *hop99 = pct(B.hops, B.nhops, 0.99);
}

/* The physical floor of one saga at concurrency 1, measured, not assumed:
 * n durable commits of one event row each (the statement shape of an
 * append, one WAL flush per commit, into the raw table), and the Kafka
 * hops latency_c1 measured with the same producer and consumer settings.
 * A 3-step saga's critical path holds 4 of sagad's commits (start, then
 * each reply) and 8 hops (StartSaga, a command and a reply per step, the
 * COMPLETED notification); through the client library each step adds the
 * participant's own commit (its effect store records the reply before it
 * is sent: FLOOR_LIB_COMMITS). A floor's distribution is drawn by summing
 * that many random measured commits and hops (a fixed seed, 20000 draws).
 * Each commit comes FLOOR_COMMIT_GAP_MS after the one before, as a saga's
 * commits are spaced by its hops, and as the hops are measured (one
 * between two sagas): back to back, the server and the disk never go
 * idle and a commit is 2-3 times cheaper than in a chain of single ones
 * (pgbench, one INSERT per transaction, this machine: 0.17-0.21 ms back
 * to back, 0.25 ms at 1000 a second, 0.46-0.49 ms at 300 a second, the
 * schedule's lag taken out). The back-to-back figure is printed too. */
#define FLOOR_COMMIT_GAP_MS 1
#define FLOOR_COMMITS (1 + NSTEPS)
#define FLOOR_LIB_COMMITS (1 + 2 * NSTEPS)
#define FLOOR_HOPS (2 + 2 * NSTEPS)
/* One durable one-row commit into raw_events, stream sid: its ms. */
static double floor_commit(PGconn *c, const char *sid) {
  const char *v[] = {sid, "1"};
  double t0 = now_ms();
  PGresult *r = PQexecParams(
      c,
      "INSERT INTO raw_events (stream_id, stream_version, event_id, "
      "event_type, data) VALUES ($1, $2::bigint, gen_random_uuid(), "
      "'Succeeded', '\\x0801')",
      2, NULL, v, NULL, NULL, 0);
  double ms = now_ms() - t0;
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    die("floor", PQerrorMessage(c));
  PQclear(r);
  return ms;
}

/* n commits into cm[0..n), gap_ms apart; `from` numbers their streams. */
static void floor_commits_into(PGconn *c, double *cm, size_t n, size_t from,
                               long gap_ms) {
  for (size_t i = 0; i < n; i++) {
    if (gap_ms > 0)
      sleep_ms(gap_ms);
    char sid[64];
    snprintf(sid, sizeof sid, "floor-%ld-%zu", gap_ms, from + i);
    cm[i] = floor_commit(c, sid);
  }
}

static double *floor_commits(PGconn *c, size_t n, long gap_ms) {
  double *cm = calloc(n, sizeof *cm);
  if (!cm)
    die("floor", "out of memory");
  floor_commits_into(c, cm, n, 0, gap_ms);
  return cm;
}

/* The floor's commits in FLOOR_BLOCKS blocks spread over the library
 * line's time: at each of its pauses (bench_library_opts_t.pause: after
 * its warm-up, then within it), and after it. */
#define FLOOR_BLOCKS 4
#define FLOOR_REWARM 5 /* unmeasured sagas after each pause of the line */
typedef struct {
  PGconn *c;
  double *cm;
  size_t n, have, nblocks;
  int last;                 /* the next block is the one after the line */
  double p50[FLOOR_BLOCKS]; /* each block's p50 */
  double *after;            /* the last block's commits, sorted */
  size_t nafter;
  int port;                 /* sagad's admin port: scraped at the first */
  sagad_hists_t *at_first;  /* pause, after the line's warm-up */
} floor_blocks_t;

/* One block: n / FLOOR_BLOCKS commits, or, for the block after the line,
 * the rest of the n. */
static void floor_block(void *arg) {
  floor_blocks_t *f = arg;
  int last = f->last || f->nblocks == FLOOR_BLOCKS - 1;
  if (f->nblocks == FLOOR_BLOCKS || f->have == f->n)
    die("floor", "more blocks than FLOOR_BLOCKS");
  if (f->nblocks == 0 && f->at_first)
    sagad_hists_scrape(f->port, f->at_first);
  size_t k = last ? f->n - f->have : f->n / FLOOR_BLOCKS;
  floor_commits_into(f->c, f->cm + f->have, k, f->have, FLOOR_COMMIT_GAP_MS);
  double *copy = malloc(k * sizeof *copy);
  if (!copy)
    die("floor", "out of memory");
  memcpy(copy, f->cm + f->have, k * sizeof *copy);
  f->p50[f->nblocks++] = pct(copy, k, 0.50); /* sorts the copy */
  if (last) { /* kept for the comparison (floor_draw draws at random) */
    f->after = copy;
    f->nafter = k;
  } else {
    free(copy);
  }
  f->have += k;
}

static void floor_draw(const double *cm, size_t n, int commits,
                       double *floor50, double *floor99) {
  size_t ndraw = 20000;
  double *fl = calloc(ndraw, sizeof *fl);
  if (!fl)
    die("floor", "out of memory");
  uint64_t x = 0x9e3779b97f4a7c15u; /* splitmix64, fixed seed */
  for (size_t d = 0; d < ndraw; d++) {
    double sum = 0;
    for (int k = 0; k < commits + FLOOR_HOPS; k++) {
      uint64_t z = (x += 0x9e3779b97f4a7c15u);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
      z ^= z >> 31;
      sum += k < commits ? cm[z % n] : B.hops[z % B.nhops];
    }
    fl[d] = sum;
  }
  *floor50 = pct(fl, ndraw, 0.50);
  *floor99 = pct(fl, ndraw, 0.99);
  free(fl);
}

/* Multi-row INSERTs of `n` event rows identical to the saga's (same
 * types and payloads, cycled) into a plain table shaped as es_events
 * before its partitions (bench_raw.h). */
static double raw_insert(PGconn *c, size_t n, const char *like) {
  PQclear(q(c, BENCH_RAW_EVENTS_SQL));
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT event_type, encode(data, 'hex'), correlation_id FROM "
           "es_events WHERE stream_id = 'saga-%s' ORDER BY stream_version",
           like);
  PGresult *r = q(c, sql);
  int k = PQntuples(r);
  if (k == 0)
    die("raw baseline", "no saga events to copy");
  size_t rows_per = 1000, cap = rows_per * 600 + 256;
  char *buf = malloc(cap);
  double t0 = now_ms();
  for (size_t done = 0; done < n;) {
    size_t len = (size_t)snprintf(
        buf, cap,
        "INSERT INTO raw_events (stream_id, stream_version, event_id, "
        "event_type, data, correlation_id) VALUES ");
    size_t m = n - done < rows_per ? n - done : rows_per;
    for (size_t i = 0; i < m; i++, done++) {
      int j = (int)(done % (size_t)k);
      len += (size_t)snprintf(
          buf + len, cap - len,
          "%s('saga-r%zu',%d,gen_random_uuid(),'%s','\\x%s','%s')",
          i ? "," : "", done / (size_t)k, j + 1, PQgetvalue(r, j, 0),
          PQgetvalue(r, j, 1), PQgetvalue(r, j, 2));
    }
    PQclear(q(c, buf));
  }
  double rate = (double)n / ((now_ms() - t0) / 1e3);
  free(buf);
  PQclear(r);
  return rate;
}

/* Resident memory: a second sagad on its own inbox (the load phase's
 * participants answer the first two steps of its "stuck" sagas, the third
 * is held), n_stuck sagas taken to their third step, its RSS growth per
 * saga into *per; then recovery after kill -9, its time into *rec_s.
 * BENCH_MEMORY_PAUSE_S=N (profiling): wait N s after the RSS is read,
 * sagad's pid printed, to look into its heap before it is killed. */
static void memory_and_recovery(size_t n_stuck, const char *log1,
                                const char *log2, double *per, double *rec_s) {
  /* session.timeout.ms 4 s: short, so that the killed member's place is
   * still its own when the restarted sagad comes back (the relay lets it
   * back at once then), and not 3 s, the embedded Kafka's wait before it
   * elects a new group's first leader: with the two equal, the mock's
   * session check could drop the joining member at that instant and its
   * JoinGroup was never answered (one full run stopped with "the second
   * sagad did not join its group"). sagad heartbeats within a third of the
   * session (with librdkafka's 3 s heartbeat the group rebalanced over and
   * over: docs/benchmarks.md, "Recovery after kill -9"). */
  /* These two sagads reach Kafka through the relay, whatever the phase's
   * own clients use: it is the relay that keeps a restarted member's place
   * for its group.instance.id, as a broker does (the mock's brokers alone
   * do not: tools/kafka-mock/static_members.h). */
  const char *phase_bs = B.bs;
  B.bs = B.bootstrap;
  pid_t s2 = sagad_start(B.inbox2, B.group2, log1, "4000", LOAD_FETCH_WAIT_MS,
                         LOAD_LINGER_MS);
  double until = now_ms() + 60000;
  while (log_recovered(log1) < 0 && now_ms() < until)
    turn(20);
  if (log_recovered(log1) < 0)
    die("memory", "the second sagad did not join its group");
  sleep_ms(500);
  long rss0 = rss_bytes(s2);
  phase_begin('s');
  for (size_t i = 0; i < n_stuck; i++) {
    start_saga("stuck", i, 0);
    if (i % 1000 == 0)
      turn(0);
  }
  rd_kafka_flush(B.prod, 30000);
  until = now_ms() + 300000;
  char cnt[128];
  /* Every stuck saga at its third step: both answers stepped (before,
   * only started: the memory was measured, and sagad killed, with most
   * answers still unread, and the restarted sagad recovered sagas at
   * their first step and then read the answers) */
  snprintf(cnt, sizeof cnt,
           "SELECT count(*) FROM saga_index WHERE saga_type = 'stuck' "
           "AND current_step = 's3'");
  PGconn *pg2 = PQconnectdb(B.ci2); /* inbox2's deployment */
  if (PQstatus(pg2) != CONNECTION_OK)
    die("connect", PQerrorMessage(pg2));
  while (q_num(pg2, cnt) < (double)n_stuck && now_ms() < until)
    turn(200);
  if (q_num(pg2, cnt) < (double)n_stuck)
    die("memory", "the stuck sagas did not all reach their third step");
  PQfinish(pg2);
  turn(500);
  sleep_ms(500);
  long rss1 = rss_bytes(s2);
  *per = (double)(rss1 - rss0) / (double)n_stuck;
  printf("resident memory: %ld -> %ld bytes with %zu sagas in flight: %.0f "
         "bytes per saga\n",
         rss0, rss1, n_stuck, *per);
  int pause_s = atoi(env_or("BENCH_MEMORY_PAUSE_S", "0"));
  if (pause_s > 0) {
    printf("  sagad (pid %d) holds them for %d s\n", (int)s2, pause_s);
    for (double t_end = now_ms() + pause_s * 1e3; now_ms() < t_end;)
      turn(100);
  }

  /* Recovery: kill -9, restart, time until sagad reports them resumed.
   * BENCH_RECOVERY_ROUNDS=N (profiling, e.g. perf on the restarted sagad):
   * N rounds, each killing the sagad the round before restarted; the
   * figure is the first round's. */
  int rounds = atoi(env_or("BENCH_RECOVERY_ROUNDS", "1"));
  pid_t victim = s2;
  for (int r = 0; r < (rounds > 0 ? rounds : 1); r++) {
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    for (int i = 0; i < 8; i++)
      if (children[i] == victim)
        children[i] = 0;
    remove(log2); /* the round before's "recovered" line */
    double tr = now_ms();
    victim = sagad_start(B.inbox2, B.group2, log2, "4000", LOAD_FETCH_WAIT_MS,
                         LOAD_LINGER_MS);
    until = now_ms() + 120000;
    long rec;
    while ((rec = log_recovered(log2)) < (long)n_stuck && now_ms() < until)
      turn(10);
    double s = (now_ms() - tr) / 1e3;
    if (r == 0)
      *rec_s = s;
    if (rec < (long)n_stuck)
      die("recovery", "the restarted sagad did not recover every saga");
    printf("recovery after kill -9%s: %ld sagas resumed (commands re-sent) "
           "%.2f s after restart (group rejoin included, session.timeout.ms "
           "4000; %.2f s of it from the assignment to the last saga "
           "resumed)\n",
           rounds > 1 ? (r ? " (again)" : " (round 1)") : "", rec, s,
           log_assign_to_recovered_s(log2));
  }
  sagad_stop(victim, SIGTERM);
  B.bs = phase_bs;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int quick = argc > 1 && !strcmp(argv[1], "--quick");
  if (argc > 1 && !quick) {
    fprintf(stderr, "usage: bench-saga [--quick]\n");
    return 2;
  }
  size_t n_c1 = quick ? 100 : 300;
  double dur = quick ? 5000 : 15000;
  /* sagas in flight in the closed loops: BENCH_CONCURRENCY, default 4096
   * (the target asks for at least 256). Throughput is the coordinator's
   * capacity, so the loop keeps enough in flight that the coordinator,
   * not the loop's wait on each saga, sets the pace: at 1024 a group
   * commit carried about 380 sagas, at 4096 about 650 and a fifth more
   * sagas/s, and 8192 gave no more (docs/benchmarks.md, "Sagas in flight:
   * the throughput figure at capacity"). */
  size_t conc = (size_t)atol(env_or("BENCH_CONCURRENCY", "4096"));
  if (conc < 1 || conc > 100000)
    die("BENCH_CONCURRENCY", "must be 1 to 100000");
  size_t n_stuck = quick ? 20000 : 100000;
  setup();
  char log0[200], log1[200], log2[200], log3[200];
  snprintf(log0, sizeof log0, "%s/sagad0.log", B.dir);
  snprintf(log1, sizeof log1, "%s/sagad1.log", B.dir);
  snprintf(log2, sizeof log2, "%s/sagad2.log", B.dir);
  snprintf(log3, sizeof log3, "%s/sagad3.log", B.dir);
  printf("bench-saga: sagad %s, %s, 4 inbox partitions, fsync on%s\n",
         SAGAD_PATH, B.db, quick ? " (quick)" : "");

  /* BENCH_ONLY_MEMORY=1: only the resident memory and recovery phases (on
   * the load half's participants and settings), to measure them alone. */
  const char *only_mem = getenv("BENCH_ONLY_MEMORY");
  if (only_mem && *only_mem == '1') {
    B.t = &B.t_load;
    B.bs = B.bootstrap_load;
    consumer_close();
    consumer_open(LOAD_FETCH_WAIT_MS);
    B.prod = B.prod_load;
    double per = -1, rec_s = -1;
    memory_and_recovery(n_stuck, log1, log2, &per, &rec_s);
    teardown();
    printf("{\"bench\": \"saga\", \"quick\": %s, \"only_memory\": true, "
           "\"rss_bytes_per_inflight_saga\": %.0f, \"recovery_s_100k\": "
           "%.2f, \"inflight_sagas\": %zu}\n",
           quick ? "true" : "false", per, rec_s, n_stuck);
    return 0;
  }

  /* Concurrency 1, on a sagad of its own with the low-latency settings
   * (C1_FETCH_WAIT_MS and C1_LINGER_MS for every client, see above),
   * warmed up with C1_WARM_SAGAS sagas. */
  pid_t sc = phase_sagad("concurrency 1", B.inbox1, B.group1, log3,
                         C1_FETCH_WAIT_MS, env_or("BENCH_C1_LINGER_MS", NULL),
                         'a', 'b', C1_WARM_SAGAS);
  /* Dirty pages of earlier runs flushed now, not by a checkpoint in the
   * middle of the latency measurement (it needs pg_checkpoint rights; the
   * embedded cluster's user has them). */
  {
    PGconn *c = PQconnectdb(B.ci);
    PGresult *r = PQexec(c, "CHECKPOINT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      printf("  (no CHECKPOINT before the latency phase: %s)\n",
             PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
  }
  int port = log_admin_port(log3);
  if (port <= 0)
    die("metrics", "sagad did not log its admin port");
  sagad_hists_t hm0, hm1;
  sagad_hists_scrape(port, &hm0);
  double l50, l99, g50, g99, h50, h99;
  latency_c1(n_c1, &l50, &l99, &g50, &g99, &h50, &h99);
  sagad_hists_scrape(port, &hm1);
  /* the same transitions' group commits (submit -> durable), the start's
   * included: how much of a step's overhead, and of its tail, the
   * commit is */
  sagad_steps_t hms = sagad_steps_between(&hm0, &hm1);
  double gov50 = g50 - 2 * h50, gov99 = g99 - 2 * h50;
  printf("concurrency 1, hand-made participants (%zu sagas): latency p50 "
         "%.2f ms, p99 %.2f ms\n",
         n_c1, l50, l99);
  print_steps(&hm0, &hm1, &hms);
  printf("  seen by the participant: reply sent -> next command received "
         "p50 %.2f ms, p99 %.2f ms; one Kafka hop p50 %.2f ms, p99 %.2f ms; "
         "gap - 2 hops p50: p50 %.2f ms, p99 %.2f ms\n",
         g50, g99, h50, h99, gov50, gov99);

  /* The same sagas through what users link: the public starter and the
   * public participant library with the PostgreSQL effect store, on the
   * same sagad and settings, with step topics of their own (B.t_lib; the
   * hand-made participants stop first all the same). */
  consumer_close();
  double hm50 = l50, hm99 = l99;
  sagad_hists_t lib0, lib1;
  sagad_steps_t libs = {0}; /* sagad's steps over the library line */
  struct {
    double commit, sagad, store, store99, kafka, rest;
  } bd = {0};
  size_t n_floor = quick ? 300 : 1000;
  double *floor_cm = NULL, *bb_cm = NULL; /* the floor's commits */
  floor_blocks_t fb = {0};
  {
    /* earliest: the participants' new group also takes the first saga's
     * command, sent before it was assigned its partitions (the example
     * services do the same) */
    const char *const props[] = {"fetch.wait.max.ms", C1_FETCH_WAIT_MS,
                                 "auto.offset.reset", "earliest", NULL};
    const char *steps[NSTEPS];
    for (int i = 0; i < NSTEPS; i++)
      steps[i] = B.t_lib.steps[i];
    char group[64], err[600];
    snprintf(group, sizeof group, "bench.lib.%d", (int)getpid());
    bench_library_opts_t lo = {.bootstrap = B.bootstrap,
                               .kafka_props = props,
                               .inbox = B.inbox1,
                               .notifications = B.t_c1.notify,
                               .saga_type = B.t_lib.type,
                               .step_topics = steps,
                               .nsteps = NSTEPS,
                               .group = group,
                               .pg_conninfo = B.ci1,
                               .output_bytes = OUTPUT_BYTES,
                               .id_prefix = "L",
                               .store_history = 15000};
    double *ll = calloc(n_c1, sizeof *ll), *ls = calloc(n_c1, sizeof *ls);
    if (!ll || !ls)
      die("library", "out of memory");
    /* The floor's commits, on the concurrency-1 database, in blocks
     * spread over the line (floor_block): between its warm-up and its
     * first measured saga, at two pauses in it (each pause followed by
     * FLOOR_REWARM unmeasured sagas) and after it, so that the floor and
     * the line share their time. Measured after the load phases, as
     * before 2026-12-06, a commit's p50 ran 0.1-0.4 ms above the line's
     * own and flattered the ratio by up to a third; and
     * within one run the blocks' p50s differ by up to half (0.38 and
     * 0.57 ms on 2026-12-07), which one block after the line cannot see.
     * (Taken between every two of the line's sagas, they slowed the line
     * itself by 1-1.5 ms.) */
    fb.c = PQconnectdb(B.ci1);
    if (PQstatus(fb.c) != CONNECTION_OK)
      die("connect", PQerrorMessage(fb.c));
    PQclear(q(fb.c, BENCH_RAW_EVENTS_SQL)); /* the floor's table */
    fb.n = n_floor;
    fb.cm = calloc(n_floor, sizeof *fb.cm);
    if (!fb.cm)
      die("floor", "out of memory");
    lo.pause = floor_block;
    lo.pause_arg = &fb;
    lo.pause_every = (n_c1 + FLOOR_BLOCKS - 2) / (FLOOR_BLOCKS - 1);
    lo.rewarm = FLOOR_REWARM;
    /* sagad's steps over the line's measured sagas (and the FLOOR_REWARM
     * after each pause): from the first pause, after the warm-up */
    fb.port = port;
    fb.at_first = &lib0;
    if (bench_library_c1(&lo, 20, n_c1, ll, ls, err, sizeof err) != 0)
      die("library", err);
    sagad_hists_scrape(port, &lib1);
    if (!fb.nblocks)
      die("library", "the line never paused after its warm-up");
    libs = sagad_steps_between(&lib0, &lib1);
    l50 = pct(ll, n_c1, 0.50);
    l99 = pct(ll, n_c1, 0.99);
    /* Where a median saga's time goes, each part's p50 from its own
     * measurement over this line: sagad, from its histograms -- the 3
     * reply -> command transitions (their commit included) and the start
     * (one group commit, submit to durable), of which its 4 commits; the
     * participant's effect store (lookups and records, timed around the
     * store); the 8 Kafka hops at the hop p50 measured above; the rest
     * is the client library, loop wake-ups and waiting. */
    bd.sagad = NSTEPS * libs.ov50 + libs.cm50;
    bd.commit = FLOOR_COMMITS * libs.cm50;
    bd.store = pct(ls, n_c1, 0.50);
    bd.store99 = pct(ls, n_c1, 0.99);
    bd.kafka = FLOOR_HOPS * h50;
    bd.rest = l50 - bd.sagad - bd.store - bd.kafka;
    free(ll);
    free(ls);
    fb.last = 1;
    floor_block(&fb);
    floor_cm = fb.cm;
    bb_cm = floor_commits(fb.c, n_floor, 0); /* back to back, to compare */
    PQfinish(fb.c);
  }
  printf("  a median saga through the library: %.2f ms = sagad %.2f (its %d "
         "transitions, of which %d commits %.2f) + the participant's effect "
         "store %.2f + %d Kafka hops %.2f + the rest (client library, "
         "wake-ups, waiting) %.2f; the effect store's time per saga p99 "
         "%.2f ms\n",
         l50, bd.sagad, FLOOR_COMMITS, FLOOR_COMMITS, bd.commit, bd.store,
         FLOOR_HOPS, bd.kafka, bd.rest, bd.store99);
  printf("concurrency 1 through the public client library (starter, "
         "participant with the PostgreSQL effect store; %zu sagas): latency "
         "p50 %.2f ms, p99 %.2f ms (hand-made participants above: %.2fx, "
         "%.2fx)\n",
         n_c1, l50, l99, hm50 > 0 ? l50 / hm50 : 0, hm99 > 0 ? l99 / hm99 : 0);
  print_steps(&lib0, &lib1, &libs);
  sagad_stop(sc, SIGTERM);

  /* BENCH_C1_ONLY=1 (profiling the latency): the concurrency-1 half and
   * the floor only; the load, raw, memory and recovery figures are -1. */
  const char *c1_only_env = getenv("BENCH_C1_ONLY");
  int c1_only = c1_only_env && *c1_only_env == '1';
  PGconn *pg = NULL; /* the load phases' database, with their es_events */
  if (!c1_only && PQstatus(pg = PQconnectdb(B.ci)) != CONNECTION_OK)
    die("connect", PQerrorMessage(pg));
  pid_t sd = 0;
  double sps = -1, sps20 = -1, t50 = -1, t99 = -1, ev_per = -1, by_per = -1;
  double wal_per = -1, raw = -1, vs = -1;
  if (c1_only)
    goto c1_floor;

  /* The load phases: the settings for throughput. */
  B.t = &B.t_load;
  B.bs = B.bootstrap_load;
  consumer_open(LOAD_FETCH_WAIT_MS);
  rd_kafka_flush(B.prod_c1, 10000);
  B.prod = B.prod_load;
  sd = phase_sagad("load", B.inbox, B.group, log0, LOAD_FETCH_WAIT_MS,
                   LOAD_LINGER_MS, 'w', 'v', 500);

  double wal0 = q_num(pg, "SELECT pg_current_wal_lsn() - '0/0'");
  sps = closed_loop('t', conc, dur, 0, 0, &t50, &t99);
  double wal1 = q_num(pg, "SELECT pg_current_wal_lsn() - '0/0'");
  size_t t_done = B.completed;
  printf("closed loop, %zu in flight, 0%% failures: %.0f sagas/s, latency "
         "p50 %.1f ms, p99 %.1f ms (%zu sagas)\n",
         conc, sps, t50, t99, t_done);
  double f50, f99;
  sps20 = closed_loop('f', conc, dur, 0, 5, &f50, &f99);
  printf("closed loop, %zu in flight, 20%% failures: %.0f sagas/s, latency "
         "p50 %.1f ms, p99 %.1f ms\n",
         conc, sps20, f50, f99);

  double nev = q_num(pg, "SELECT count(*) FROM es_events WHERE stream_id "
                         "LIKE 'saga-t%'");
  double nstreams = q_num(pg, "SELECT count(DISTINCT stream_id) FROM "
                              "es_events WHERE stream_id LIKE 'saga-t%'");
  double bytes = q_num(pg, "SELECT sum(pg_column_size(e.*)) FROM es_events "
                           "e WHERE stream_id LIKE 'saga-t%'");
  ev_per = nstreams > 0 ? nev / nstreams : 0;
  by_per = nstreams > 0 ? bytes / nstreams : 0;
  wal_per = t_done ? (wal1 - wal0) / (double)t_done : 0;
  printf("per completed saga: %.2f events, %.0f bytes of event rows, %.0f "
         "bytes of WAL (event rows, saga_index, indexes)\n",
         ev_per, by_per, wal_per);
  raw = raw_insert(pg, (size_t)nev, "t1");
  vs = sps * ev_per / raw;
  printf("raw multi-row INSERT (1000 rows per statement) of %.0f identical "
         "event rows: %.0f events/s; the coordinator's %.0f events/s are "
         "%.2f of it\n",
         nev, raw, sps * ev_per, vs);
c1_floor:;
  double cm50 = 0, cm99 = 0, fl50 = 0, fl99 = 0, fc50 = 0, fc99 = 0;
  double bb50 = 0, bb99 = 0, fa50 = 0, fa99 = 0;
  if (B.nhops > 0 && floor_cm && bb_cm) {
    bb50 = pct(bb_cm, n_floor, 0.50);
    bb99 = pct(bb_cm, n_floor, 0.99);
    floor_draw(floor_cm, n_floor, FLOOR_COMMITS, &fc50, &fc99);
    floor_draw(floor_cm, n_floor, FLOOR_LIB_COMMITS, &fl50, &fl99);
    if (fb.after)
      floor_draw(fb.after, fb.nafter, FLOOR_LIB_COMMITS, &fa50, &fa99);
    cm50 = pct(floor_cm, n_floor, 0.50);
    cm99 = pct(floor_cm, n_floor, 0.99);
    printf("floor of a %d-step saga at concurrency 1 (durable one-row "
           "commits %d ms apart, in %zu blocks over the library line, "
           "p50 %.2f ms, p99 %.2f ms, the blocks' p50",
           NSTEPS, FLOOR_COMMIT_GAP_MS, fb.nblocks, cm50, cm99);
    for (size_t b = 0; b < fb.nblocks; b++)
      printf(" %.2f", fb.p50[b]);
    printf(" ms; back to back p50 %.2f ms, p99 %.2f ms; %d Kafka hops "
           "between the hand-made line's sagas, p50 %.2f ms, p99 %.2f "
           "ms):\n"
           "  through the client library (%d commits, the participant's "
           "included): p50 %.2f ms, p99 %.2f ms; the saga's latency is "
           "%.2fx its p50 and %.2fx its p99\n"
           "  the same from the block after the line alone (the floor "
           "before 2026-12-07): p50 %.2f ms, p99 %.2f ms; %.2fx and %.2fx\n"
           "  sagad's path alone (%d commits; the hand-made participants "
           "store nothing): p50 %.2f ms, p99 %.2f ms; their latency is "
           "%.2fx and %.2fx\n",
           bb50, bb99, FLOOR_HOPS, h50, h99, FLOOR_LIB_COMMITS, fl50,
           fl99, fl50 > 0 ? l50 / fl50 : 0, fl99 > 0 ? l99 / fl99 : 0,
           fa50, fa99, fa50 > 0 ? l50 / fa50 : 0, fa99 > 0 ? l99 / fa99 : 0,
           FLOOR_COMMITS, fc50, fc99, fc50 > 0 ? hm50 / fc50 : 0,
           fc99 > 0 ? hm99 / fc99 : 0);
  }

  /* Resident memory and recovery. BENCH_NO_MEMORY=1 skips both phases
   * (figures -1), for quick profiling of the rest; BENCH_ONLY_MEMORY=1
   * (above) runs only them. */
  double per = -1, rec_s = -1;
  const char *no_mem = getenv("BENCH_NO_MEMORY");
  if (!c1_only && (!no_mem || *no_mem != '1'))
    memory_and_recovery(n_stuck, log1, log2, &per, &rec_s);
  if (sd > 0)
    sagad_stop(sd, SIGTERM);
  PQfinish(pg);
  free(floor_cm);
  free(fb.after);
  free(bb_cm);
  teardown();
  printf("{\"bench\": \"saga\", \"quick\": %s, \"sagas_per_s\": %.0f, "
         "\"sagas_per_s_20pct_fail\": %.0f, \"load_inflight\": %zu, "
         "\"latency_p50_ms_c1\": %.2f, "
         "\"latency_p99_ms_c1\": %.2f, \"latency_p50_ms_load\": %.1f, "
         "\"latency_p99_ms_load\": %.1f, \"step_overhead_p50_ms\": %.2f, "
         "\"step_overhead_p99_ms\": %.2f, \"step_commit_p50_ms\": %.2f, "
         "\"step_commit_p99_ms\": %.2f, "
         "\"step_overhead_p50_ms_handmade\": %.2f, "
         "\"step_overhead_p99_ms_handmade\": %.2f, "
         "\"step_commit_p50_ms_handmade\": %.2f, "
         "\"step_commit_p99_ms_handmade\": %.2f, "
         "\"step_gap_minus_hops_p50_ms\": %.2f, "
         "\"step_gap_minus_hops_p99_ms\": %.2f, \"kafka_hop_p50_ms\": %.2f, "
         "\"events_per_saga\": %.2f, \"bytes_per_saga\": %.0f, "
         "\"wal_bytes_per_saga\": %.0f, \"rss_bytes_per_inflight_saga\": "
         "%.0f, \"recovery_s_100k\": %.2f, \"raw_insert_events_per_s\": %.0f, "
         "\"saga_events_vs_raw\": %.2f, \"inflight_sagas\": %zu, "
         "\"commit_p50_ms\": %.2f, \"commit_p99_ms\": %.2f, "
         "\"commit_b2b_p50_ms\": %.2f, \"commit_b2b_p99_ms\": %.2f, "
         "\"floor_p50_ms_c1\": %.2f, \"floor_p99_ms_c1\": %.2f, "
         "\"latency_vs_floor_p50\": %.2f, \"latency_vs_floor_p99\": %.2f, "
         "\"latency_vs_floor_after_p50\": %.2f, "
         "\"latency_p50_ms_c1_handmade\": %.2f, "
         "\"latency_p99_ms_c1_handmade\": %.2f, "
         "\"floor_sagad_p50_ms_c1\": %.2f, \"floor_sagad_p99_ms_c1\": %.2f, "
         "\"median_saga_ms\": {\"sagad\": %.2f, \"sagad_commits\": %.2f, "
         "\"participant_store\": %.2f, "
         "\"kafka\": %.2f, \"rest\": %.2f}}\n",
         quick ? "true" : "false", sps, sps20, conc, l50, l99, t50, t99,
         libs.ov50, libs.ov99, libs.cm50, libs.cm99, hms.ov50, hms.ov99,
         hms.cm50, hms.cm99, gov50, gov99, h50, ev_per, by_per, wal_per, per, rec_s, raw, vs, n_stuck,
         cm50, cm99, bb50, bb99, fl50, fl99, fl50 > 0 ? l50 / fl50 : 0,
         fl99 > 0 ? l99 / fl99 : 0, fa50 > 0 ? l50 / fa50 : 0, hm50, hm99,
         fc50, fc99, bd.sagad,
         bd.commit, bd.store, bd.kafka, bd.rest);
  return 0;
}
