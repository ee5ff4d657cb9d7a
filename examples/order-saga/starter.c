/* order-starter: starts a mix of orders through the client library's
 * starter, awaits every outcome and prints a table (saga, scenario,
 * expected, outcome, duration). Exits 1 when a saga did not finish in time
 * or ended otherwise than its input says it should; --results FILE writes
 * the same rows as tab-separated values for scripts and tests. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <uv.h>

#include "saga/client.h"

#include "args.h"
#include "timetext.h" /* the duration syntax every program takes */

/* What each kind of order asks of the services, and how it must end. */
typedef struct scenario {
  const char *name;
  const char *fields; /* extra JSON members of the order input */
  saga_notification_kind_t expect;
  int cancel;         /* cancelled by the starter once started */
} scenario_t;

static const scenario_t scenarios[] = {
    {"ok", "", SAGA_NOTIFY_COMPLETED, 0},
    {"declined", ",\"card\":\"declined\"", SAGA_NOTIFY_COMPENSATED, 0},
    {"slow", ",\"card\":\"slow\"", SAGA_NOTIFY_COMPENSATED, 0},
    {"out_of_stock", ",\"stock\":\"out\"", SAGA_NOTIFY_COMPENSATED, 0},
    {"flaky", ",\"shipping\":\"flaky\"", SAGA_NOTIFY_COMPLETED, 0},
    /* the stock is reserved but its answer held, so the order is still
     * before its pivot when the customer withdraws it: the saga stops,
     * waits out the reservation's deadline and releases it */
    {"cancelled", ",\"stock\":\"hold\"", SAGA_NOTIFY_COMPENSATED, 1},
};

#define CANCEL_REASON "the customer withdrew the order"
#define N_SCENARIOS (sizeof scenarios / sizeof scenarios[0])

typedef struct order {
  const scenario_t *sc;
  char saga_id[80];
  char order_id[48];
  int64_t started_ms, ended_ms;
  int err;  /* start or await error */
  int kind; /* outcome notification kind, 0 = none */
  char reason[128];
  char shipment[SAGA_MAX_ID + 8]; /* COMPLETED: from the saga's output */
} order_t;

typedef struct run {
  uv_loop_t *loop;
  saga_starter_t *st;
  order_t *orders;
  size_t n, finished;
  int64_t timeout_ms;
} run_t;

typedef struct ctx {
  run_t *run;
  order_t *o;
} ctx_t;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *kind_name(int kind) {
  switch (kind) {
  case SAGA_NOTIFY_COMPLETED: return "COMPLETED";
  case SAGA_NOTIFY_COMPENSATED: return "COMPENSATED";
  case SAGA_NOTIFY_COMPENSATION_FAILED: return "COMPENSATION_FAILED";
  case SAGA_NOTIFY_REJECTED: return "REJECTED";
  case SAGA_NOTIFY_CANCEL_REFUSED: return "CANCEL_REFUSED";
  default: return "-";
  }
}

static void finish(run_t *r, order_t *o) {
  o->ended_ms = now_ms();
  if (++r->finished == r->n)
    saga_starter_close(r->st, NULL, NULL);
}

static void on_outcome(saga_starter_t *s, int err,
                       const saga_notification_t *n, void *arg) {
  (void)s;
  ctx_t *c = arg;
  c->o->err = err;
  if (!err && n) {
    c->o->kind = n->kind;
    snprintf(c->o->reason, sizeof c->o->reason, "%s",
             n->reason ? n->reason : "");
    /* The saga's output (the definition's "output" mapping):
     * {"order_id": ..., "charge": ..., "shipment": ...} */
    cJSON *out = n->payload_len
                     ? cJSON_ParseWithLength(n->payload, n->payload_len)
                     : NULL;
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(out, "shipment");
    if (cJSON_IsString(sh))
      snprintf(c->o->shipment, sizeof c->o->shipment, "%s", sh->valuestring);
    cJSON_Delete(out);
  }
  finish(c->run, c->o);
}

static void on_cancel_sent(saga_starter_t *s, int err, const char *saga_id,
                           void *arg) {
  (void)s;
  (void)arg;
  if (err)
    fprintf(stderr, "order-starter: the cancel of %s was not delivered: %s\n",
            saga_id, saga_err_name(err));
}

static void on_started(saga_starter_t *s, int err, const char *saga_id,
                       void *arg) {
  ctx_t *c = arg;
  (void)saga_id;
  if (!err)
    err = saga_starter_await(s, c->o->saga_id, c->run->timeout_ms, on_outcome,
                             c);
  /* Its outcome (or a CANCEL_REFUSED) answers the await above. */
  if (!err && c->o->sc->cancel)
    err = saga_starter_cancel(s, c->o->saga_id, CANCEL_REASON,
                              "order-starter", on_cancel_sent, NULL);
  if (err) {
    c->o->err = err;
    finish(c->run, c->o);
  }
}

static void usage(FILE *f) {
  fputs("usage: order-starter [options]\n"
        "Start a mix of orders on the saga coordinator and await each "
        "outcome.\n\n"
        "  -b, --bootstrap SERVERS   Kafka bootstrap servers "
        "(default $SAGA_KAFKA_BOOTSTRAP)\n"
        "  -n, --count N             orders in all (default 30)\n"
        "      --declined N          of which with a declined card "
        "(default a fifth\n"
        "                            of --count: 6 of 30)\n"
        "      --slow N              with a card that never answers "
        "(default a tenth)\n"
        "      --out-of-stock N      out of stock (default a tenth)\n"
        "      --flaky N             with a carrier busy at first "
        "(default a tenth)\n"
        "      --cancelled N         withdrawn by the customer while the "
        "stock is\n"
        "                            being reserved: cancelled before the "
        "pivot,\n"
        "                            compensated (default 0)\n"
        "      --type NAME           saga type (default order)\n"
        "      --inbox TOPIC         coordinator inbox (default saga.inbox)\n"
        "      --notifications TOPIC (default saga.notifications)\n"
        "  -T, --timeout DURATION    await each outcome at most this long: "
        "a number\n"
        "                            and a unit, ms, s, m, h or d (default "
        "60s)\n"
        "      --seed N              order of the mix (default 1)\n"
        "  -r, --results FILE        also write tab-separated rows: saga_id,\n"
        "                            order_id, scenario, expected, outcome, "
        "ms\n"
        "  -X NAME=VALUE             librdkafka property (repeatable)\n"
        "  -q, --quiet               no table, only the summary\n"
        "  -h, --help                this text\n\n"
        "Exit status: 0 when every saga ended as its input says, 1 when one\n"
        "did not finish in time or ended otherwise, 2 for bad usage.\n",
        f);
}

#define MAX_PROPS 32

typedef struct opts {
  const char *bootstrap, *type, *inbox, *notifications, *results;
  long count, mix[N_SCENARIOS];
  int64_t timeout_ms;
  unsigned long seed;
  int quiet;
  const char *props[MAX_PROPS * 2 + 1];
  size_t n_props;
} opts_t;

static int parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) {
    fprintf(stderr, "order-starter: \"%s\": expected a number between %ld "
                    "and %ld\n", s, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(opts_t *o, int argc, char **argv) {
  enum { O_DECLINED = 256, O_SLOW, O_OOS, O_FLAKY, O_CANCELLED, O_TYPE,
         O_INBOX, O_NOTIF, O_SEED };
  static const struct option lo[] = {
      {"bootstrap", required_argument, NULL, 'b'},
      {"count", required_argument, NULL, 'n'},
      {"declined", required_argument, NULL, O_DECLINED},
      {"slow", required_argument, NULL, O_SLOW},
      {"out-of-stock", required_argument, NULL, O_OOS},
      {"flaky", required_argument, NULL, O_FLAKY},
      {"cancelled", required_argument, NULL, O_CANCELLED},
      {"type", required_argument, NULL, O_TYPE},
      {"inbox", required_argument, NULL, O_INBOX},
      {"notifications", required_argument, NULL, O_NOTIF},
      {"timeout", required_argument, NULL, 'T'},
      {"seed", required_argument, NULL, O_SEED},
      {"results", required_argument, NULL, 'r'},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int c;
  long v;
  while ((c = getopt_long(argc, argv, "b:n:T:r:X:qh", lo, NULL)) != -1) {
    switch (c) {
    case 'b': o->bootstrap = optarg; break;
    case 'n':
      if (parse_long(optarg, 1, 100000, &o->count))
        return 2;
      break;
    case O_DECLINED: case O_SLOW: case O_OOS: case O_FLAKY: case O_CANCELLED:
      if (parse_long(optarg, 0, 100000, &o->mix[c - O_DECLINED + 1]))
        return 2;
      break;
    case O_TYPE: o->type = optarg; break;
    case O_INBOX: o->inbox = optarg; break;
    case O_NOTIF: o->notifications = optarg; break;
    case 'T': {
      char why[256];
      if (saga__duration_parse(optarg, &o->timeout_ms) != SAGA_DURATION_OK) {
        fprintf(stderr, "order-starter: --timeout: %s\n",
                saga__duration_explain(optarg, why, sizeof why));
        return 2;
      }
      if (o->timeout_ms < 1 || o->timeout_ms > 86400000) {
        fprintf(stderr, "order-starter: --timeout: must be between 1ms and "
                        "1d, got \"%s\"\n", optarg);
        return 2;
      }
      break;
    }
    case O_SEED:
      if (parse_long(optarg, 0, 1L << 30, &v))
        return 2;
      o->seed = (unsigned long)v;
      break;
    case 'r': o->results = optarg; break;
    case 'q': o->quiet = 1; break;
    case 'X':
      if (order_add_property(o->props, &o->n_props, MAX_PROPS, optarg,
                             "order-starter") != 0)
        return 2;
      break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "order-starter: unexpected argument \"%s\"\n",
            argv[optind]);
    return 2;
  }
  if (!o->bootstrap || !*o->bootstrap) {
    fputs("order-starter: no Kafka bootstrap servers: give --bootstrap or "
          "set SAGA_KAFKA_BOOTSTRAP\n", stderr);
    return 2;
  }
  /* the special orders not given are shares of --count (6, 3, 3, 3 of
   * 30), so --count alone makes a mix of any size */
  static const long share_of_30[N_SCENARIOS] = {0, 6, 3, 3, 3, 0};
  long failing = 0;
  for (size_t i = 1; i < N_SCENARIOS; i++) {
    if (o->mix[i] < 0)
      o->mix[i] = o->count * share_of_30[i] / 30;
    failing += o->mix[i];
  }
  if (failing > o->count) {
    fprintf(stderr, "order-starter: the mix asks for %ld special orders "
                    "(--declined, --slow, --out-of-stock, --flaky, "
                    "--cancelled) out of --count %ld\n", failing, o->count);
    return 2;
  }
  o->mix[0] = o->count - failing;
  return -1;
}

/* The mix, shuffled with a fixed seed so a run can be repeated. */
static void plan(order_t *orders, const opts_t *o) {
  size_t k = 0;
  for (size_t s = 0; s < N_SCENARIOS; s++)
    for (long i = 0; i < o->mix[s]; i++)
      orders[k++].sc = &scenarios[s];
  uint64_t x = o->seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = k; i > 1; i--) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t j = (size_t)(x % i);
    const scenario_t *t = orders[i - 1].sc;
    orders[i - 1].sc = orders[j].sc;
    orders[j].sc = t;
  }
}

static int report(const run_t *r, const opts_t *o) {
  FILE *res = NULL;
  if (o->results && !(res = fopen(o->results, "w"))) {
    perror(o->results);
    return 1;
  }
  if (!o->quiet)
    printf("%-40s %-13s %-12s %-20s %8s  %s\n", "saga", "order", "scenario",
           "outcome", "ms", "shipment");
  size_t bad = 0, by_kind[8] = {0};
  for (size_t i = 0; i < r->n; i++) {
    const order_t *d = &r->orders[i];
    const char *outcome =
        d->err ? saga_err_name(d->err) : kind_name(d->kind);
    int ok = !d->err && d->kind == (int)d->sc->expect;
    /* A cancelled order ends compensated because of the cancel. */
    if (d->sc->cancel)
      ok = ok && !strcmp(d->reason, "cancelled: " CANCEL_REASON);
    /* A completed order's output names the shipment that the shipping
     * service replied with: "ship-<saga id>". */
    char want[sizeof d->shipment];
    snprintf(want, sizeof want, "ship-%s", d->saga_id);
    int output_ok = d->kind != SAGA_NOTIFY_COMPLETED ||
                    !strcmp(d->shipment, want);
    ok = ok && output_ok;
    bad += !ok;
    if (!d->err && d->kind > 0 && d->kind < 8)
      by_kind[d->kind]++;
    long long ms = (long long)(d->ended_ms - d->started_ms);
    if (!o->quiet)
      printf("%-40s %-13s %-12s %-20s %8lld  %s%s%s%s\n", d->saga_id,
             d->order_id, d->sc->name, outcome, ms,
             d->shipment[0] ? d->shipment : "-", ok ? "" : "  expected ",
             ok ? "" : kind_name(d->sc->expect),
             output_ok ? "" : " with the shipment in its output");
    if (res)
      fprintf(res, "%s\t%s\t%s\t%s\t%s\t%lld\n", d->saga_id, d->order_id,
              d->sc->name, kind_name(d->sc->expect), outcome, ms);
  }
  if (res && fclose(res) != 0) {
    perror(o->results);
    bad++;
  }
  printf("%zu orders: %zu completed, %zu compensated, %zu compensation "
         "failed, %zu rejected, %zu not finished; %zu not as expected\n",
         r->n, by_kind[SAGA_NOTIFY_COMPLETED],
         by_kind[SAGA_NOTIFY_COMPENSATED],
         by_kind[SAGA_NOTIFY_COMPENSATION_FAILED],
         by_kind[SAGA_NOTIFY_REJECTED],
         r->n - by_kind[SAGA_NOTIFY_COMPLETED] -
             by_kind[SAGA_NOTIFY_COMPENSATED] -
             by_kind[SAGA_NOTIFY_COMPENSATION_FAILED] -
             by_kind[SAGA_NOTIFY_REJECTED],
         bad);
  return bad ? 1 : 0;
}

int main(int argc, char **argv) {
  opts_t o = {.bootstrap = getenv("SAGA_KAFKA_BOOTSTRAP"),
              .type = "order",
              .count = 30,
              .mix = {0, -1, -1, -1, -1, 0}, /* -1: a share of count */
              .timeout_ms = 60000,
              .seed = 1};
  int rc = parse_args(&o, argc, argv);
  if (rc >= 0)
    return rc;

  run_t r = {.n = (size_t)o.count, .timeout_ms = o.timeout_ms};
  r.orders = calloc(r.n, sizeof *r.orders);
  ctx_t *ctx = calloc(r.n, sizeof *ctx);
  if (!r.orders || !ctx) {
    fputs("order-starter: out of memory\n", stderr);
    free(r.orders);
    free(ctx);
    return 1;
  }
  plan(r.orders, &o);

  uv_loop_t loop;
  uv_loop_init(&loop);
  r.loop = &loop;
  char err[512];
  saga_starter_config_t cfg = {
      .kafka = {.bootstrap_servers = o.bootstrap, .properties = o.props},
      .inbox_topic = o.inbox,
      .notifications_topic = o.notifications,
  };
  rc = saga_starter_new(&loop, &cfg, &r.st, err, sizeof err);
  if (rc) {
    fprintf(stderr, "order-starter: %s\n", err);
    rc = 1;
    goto out;
  }
  /* One run's order ids differ from another's: the saga ids derive from
   * them, and a saga id started twice starts one saga. */
  unsigned run_id = (unsigned)(now_ms() ^ ((int64_t)getpid() << 16)) & 0xffffff;
  for (size_t i = 0; i < r.n; i++) {
    order_t *d = &r.orders[i];
    ctx[i] = (ctx_t){&r, d};
    snprintf(d->order_id, sizeof d->order_id, "%06x-%04zu", run_id, i + 1);
    snprintf(d->saga_id, sizeof d->saga_id, "order-%s", d->order_id);
    char input[256];
    int len = snprintf(input, sizeof input,
                       "{\"order_id\":\"%s\",\"amount\":%zu%s}", d->order_id,
                       20 + (i * 37) % 480, d->sc->fields);
    saga_start_request_t req = {.saga_type = o.type,
                                .saga_id = d->saga_id,
                                .input = input,
                                .input_len = (size_t)len};
    char id[80];
    d->started_ms = now_ms();
    int e = saga_starter_start(r.st, &req, id, sizeof id, on_started, &ctx[i]);
    if (e) {
      d->err = e;
      finish(&r, d);
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = report(&r, &o);
out:
  uv_loop_close(&loop);
  free(r.orders);
  free(ctx);
  return rc;
}
