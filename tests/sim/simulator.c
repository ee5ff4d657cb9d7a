/* saga-sim: runs the real coordinator engine against the simulated store,
 * broker, clock and participants, one seed at a time, and checks the
 * invariants after every world event and at the end.
 *
 *   saga-sim --seed S [--sagas M] [--verbose]    replay one run exactly
 *   saga-sim --seeds N [--from S] [--sagas M]    sweep; first failing seed
 *            [--all] [--progress K]              every failing seed; a
 *                                                figures line every K seeds
 *
 * Exit status: 0 no violation, 1 a violation (its seed and trace printed),
 * 2 usage or set-up error. Output of --seed is the same bytes on every
 * run: nothing in it depends on the real clock or on addresses. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log_sink.h"
#include "sim.h"

#ifndef SIM_DEFINITIONS_DIR
#define SIM_DEFINITIONS_DIR "definitions"
#endif

static const char *const fault_desc[] = {
#define X(n, d) d,
    SIM_FAULTS(X)
#undef X
};
static const char *const fault_key[] = {
#define X(n, d) #n,
    SIM_FAULTS(X)
#undef X
};

void sim_fault(sim_t *s, sim_fault_t f) {
  s->faults[f]++;
  sim_log(s, "fault: %s", fault_desc[f]);
}

void sim_log(sim_t *s, const char *fmt, ...) {
  char *line = s->trace[s->ntrace++ % SIM_TRACE];
  int n = snprintf(line, sizeof s->trace[0], "%7lld ",
                   (long long)(s->now - SIM_T0));
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof s->trace[0] - (size_t)n, fmt, ap);
  va_end(ap);
  if (s->opt.verbose)
    printf("%s\n", line);
}

/* The engine's log sink (--verbose): its records in the trace's stream,
 * as sagad's text lines without a timestamp. */
static void engine_log(void *arg, sagad_log_level_t level, const char *saga,
                       const char *step, const char *msg) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  (void)arg;
  printf("%-5s ", names[level <= SAGAD_LOG_DEBUG ? level : SAGAD_LOG_DEBUG]);
  if (saga)
    printf("saga=%s%s", saga, step ? " " : ": ");
  if (step)
    printf("step=%s: ", step);
  printf("%s\n", msg);
}

/* ---- coordinator instances -------------------------------------------- */

static int owned(sim_t *s, int node, int32_t *parts) {
  int n = 0;
  for (int p = 0; p < SIM_PARTS; p++)
    if (s->parts[p].owner == node)
      parts[n++] = p;
  return n;
}

static void on_durable(void *arg, void *obs, const sm_t *sm) {
  (void)obs;
  (void)sim_check_durable(arg, sm->id, sm->version);
}

/* The engine's on_fatal: recovery read failed after it started; the
 * process exits (and restarts), as sagad does. */
static void node_fatal(void *arg, const char *why) {
  sim_node_t *n = arg;
  sim_log(n->sim, "node%d stops: %s", n->idx, why);
  sim_schedule(n->sim, n->sim->now + 20, EV_CRASH, n->idx, 0, NULL);
}

static void node_start(sim_t *s, int k) {
  sim_node_t *n = &s->nodes[k];
  n->sim = s;
  n->idx = k;
  sagad_engine_config_t cfg = {.registry = s->reg,
                               .on_fatal = node_fatal,
                               .fatal_arg = n,
                               .inbox_topic = "sim.inbox",
                               .notify_topic = "sim.notifications",
                               .progress_topic = s->progress_topic,
                               .dlq_topic = "sim.dlq",
                               .batch_max_events =
                                   (size_t)sim_range(&s->rng, 1, 64),
                               .rng_seed = sim_u64(&s->rng)};
  /* One seed in seven, an output cache too small for one saga's outputs:
   * they are dropped after every batch and read back from the store for
   * each command. Not drawn from the generator (the reads change a run,
   * so the seeds pinned before the cache, none 3 modulo 7, keep theirs;
   * seed 20786, pinned below, was found with it). */
  if (s->seed % 7 == 3)
    cfg.output_cache_bytes = 64;
  sim_store_port(n, &cfg.store);
  sim_broker_port(n, &cfg.broker);
  sim_clock_port(n, &cfg.clock);
  n->engine = sagad_engine_new(&cfg);
  if (!n->engine)
    abort();
  sagad_engine_hooks_t hk = {.arg = s, .on_durable = on_durable};
  sagad_engine_set_hooks(n->engine, &hk);
  int32_t parts[SIM_PARTS];
  int np = owned(s, k, parts);
  sim_log(s, "node%d starts with %d partitions", k, np);
  if (sagad_engine_on_assign(n->engine, parts, (size_t)np) != 0)
    sim_schedule(s, s->now + 20, EV_CRASH, k, 0, NULL); /* exits, restarts */
}

static void node_crash(sim_t *s, int k) {
  sim_node_t *n = &s->nodes[k];
  sim_log(s, "node%d crashes", k);
  sim_store_crash(n);
  sagad_engine_free(n->engine);
  n->engine = NULL;
  n->gen++;
  n->crashed_at = s->now;
  memset(n->wake, 0, sizeof n->wake);
  n->turn = 0;
  for (int p = 0; p < SIM_PARTS; p++) {
    if (s->parts[p].zombie == k)
      s->parts[p].zombie = -1;
    if (s->parts[p].owner == k)
      sim_reassign(s, p, k); /* redelivered from the committed offset */
  }
  node_start(s, k);
}

static void rebalance(sim_t *s) {
  int32_t p = (int32_t)sim_range(&s->rng, 0, SIM_PARTS - 1);
  sim_part_t *P = &s->parts[p];
  if (P->zombie >= 0)
    return; /* the old owner must hear of the last move first */
  int from = P->owner, to = 1 - from;
  sim_fault(s, SIM_F_REBALANCE);
  sim_log(s, "rebalance: partition %d node%d -> node%d", (int)p, from, to);
  if (sim_chance(&s->rng, 500)) {
    sim_fault(s, SIM_F_ZOMBIE); /* told late: both run for a while */
    P->zombie = from;
    sim_schedule(s, s->now + sim_range(&s->rng, 1, 400), EV_REVOKE, from, p,
                 NULL);
  } else if (s->nodes[from].engine) {
    sagad_engine_on_revoke(s->nodes[from].engine, &p, 1);
  }
  sim_reassign(s, p, to);
  if (sagad_engine_on_assign(s->nodes[to].engine, &p, 1) != 0)
    sim_schedule(s, s->now + 20, EV_CRASH, to, 0, NULL);
}

/* ---- one run ------------------------------------------------------------ */

static int all_terminal(sim_t *s) {
  for (int i = 0; i < s->nsagas; i++) {
    sim_stream_t *st = sim_store_find(s, s->sagas[i].id);
    if (!s->sagas[i].started || !st || !st->shadow ||
        !sm_is_terminal(st->shadow) || !s->sagas[i].final_landed)
      return 0;
  }
  return 1;
}

static void run_turns(sim_t *s) {
  for (int again = 1; again;) {
    again = 0;
    for (int k = 0; k < SIM_NODES; k++) {
      sim_node_t *n = &s->nodes[k];
      if (n->engine && n->turn) {
        n->turn = 0;
        sagad_engine_on_turn_end(n->engine);
        again = 1;
      }
    }
  }
}

static void handle(sim_t *s, sim_ev_t *ev) {
  sim_node_t *n = ev->node >= 0 ? &s->nodes[ev->node] : NULL;
  int live = n && n->gen == ev->gen && n->engine;
  switch (ev->kind) {
  case EV_STORE_DONE:
    if (live)
      sim_store_complete(n, (uint64_t)ev->a);
    break;
  case EV_LOAD_DONE:
    if (live)
      sim_store_load_done(n, (uint64_t)ev->a);
    break;
  case EV_WAKE:
    if (live && n->wake[ev->a] == ev->at) {
      n->wake[ev->a] = 0;
      sagad_engine_on_wake(n->engine, (int)ev->a);
    }
    break;
  case EV_FETCH:
    sim_fetch(s, (int32_t)ev->a);
    break;
  case EV_DELIVERY:
    sim_delivery(s, ev);
    break;
  case EV_NOTIFY:
    sim_notify_lands(s, ev);
    break;
  case EV_COMMAND:
    sim_command(s, ev);
    break;
  case EV_START:
    sim_start_saga(s, (int)ev->a, 0);
    if (s->faults_on && sim_chance(&s->rng, 100)) {
      sim_fault(s, SIM_F_DUP_START);
      sim_start_saga(s, (int)ev->a, 1);
    }
    break;
  case EV_CRASH:
    if ((ev->a && s->faults_on) || (!ev->a && n->gen == ev->gen)) {
      if (ev->a)
        sim_fault(s, SIM_F_CRASH);
      node_crash(s, ev->node);
    }
    break;
  case EV_REBALANCE:
    if (s->faults_on)
      rebalance(s);
    break;
  case EV_REVOKE:
    if (live && s->parts[ev->a].zombie == ev->node) {
      int32_t p = (int32_t)ev->a;
      s->parts[p].zombie = -1;
      sim_log(s, "node%d is told it lost partition %d", ev->node, (int)p);
      sagad_engine_on_revoke(n->engine, &p, 1);
    }
    break;
  case EV_COMMIT:
    sim_commit_tick(s);
    sim_schedule(s, s->now + sim_range(&s->rng, 10, 100), EV_COMMIT, -1, 0,
                 NULL);
    break;
  case EV_OPERATOR:
    sim_operator_tick(s);
    sim_schedule(s, s->now + 500, EV_OPERATOR, -1, 0, NULL);
    break;
  default:
    break;
  }
}

typedef struct {
  uint64_t sagas, completed, compensated, steps, commands, commits;
  uint64_t faults[SIM_F_N];
} totals_t;

static int run_seed(const saga_registry_t *reg, const saga_def_t *const *defs,
                    size_t ndefs, uint64_t seed, const sim_opts_t *opt,
                    sim_t *s, totals_t *tot) {
  memset(s, 0, sizeof *s);
  s->seed = seed;
  /* Progress notes (topic.progress): a topic of their own, beside the
   * outcomes (4 modulo 6), or none (5 modulo 6). Not drawn: none of the
   * pinned seeds is 5 modulo 6, so the fewer produces (and fault draws)
   * of a seed without notes change no pinned run. */
  s->progress_topic = seed % 6 == 5   ? NULL
                      : seed % 6 == 4 ? "sim.notifications"
                                      : "sim.progress";
  s->rng.s = seed * 0x2545f4914f6cdd1dULL + 1;
  s->cancel_rng.s = seed * 0x9e3779b97f4a7c15ULL + 7;
  s->load_rng.s = seed * 0xd1b54a32d192ed03ULL + 11;
  s->opt = *opt;
  s->reg = reg;
  s->now = SIM_T0;
  s->faults_on = 1;
  s->fault_until = SIM_T0 + sim_range(&s->rng, 500, 5000);
  for (int p = 0; p < SIM_PARTS; p++) {
    s->parts[p].owner = p % SIM_NODES;
    s->parts[p].zombie = -1;
  }
  s->nsagas = opt->nsagas;
  for (int i = 0; i < s->nsagas; i++) {
    sim_saga_t *sg = &s->sagas[i];
    snprintf(sg->id, sizeof sg->id, "s%04d", i);
    sg->def = defs[sim_range(&s->rng, 0, (int64_t)ndefs - 1)];
    sg->partition = sim_partition_of(sg->id);
    for (uint32_t k = 0; k < sg->def->nsteps; k++)
      sg->fx[k].outcome =
          sg->def->steps[k].kind != SAGA_STEP_RETRIABLE &&
                  sim_chance(&s->rng, 80)
              ? SM_OUTCOME_FAILURE
              : SM_OUTCOME_SUCCESS;
    sim_schedule(s, SIM_T0 + sim_range(&s->rng, 0, 3000), EV_START, -1, i,
                 NULL);
  }
  int crashes = (int)sim_range(&s->rng, 0, 3);
  for (int i = 0; i < crashes; i++)
    sim_schedule(s, SIM_T0 + sim_range(&s->rng, 1, s->fault_until - SIM_T0),
                 EV_CRASH, (int)sim_range(&s->rng, 0, SIM_NODES - 1), 1,
                 NULL);
  int moves = (int)sim_range(&s->rng, 0, 4);
  for (int i = 0; i < moves; i++)
    sim_schedule(s, SIM_T0 + sim_range(&s->rng, 1, s->fault_until - SIM_T0),
                 EV_REBALANCE, -1, 0, NULL);
  sim_schedule(s, SIM_T0 + 10, EV_COMMIT, -1, 0, NULL);
  sim_schedule(s, SIM_T0 + 500, EV_OPERATOR, -1, 0, NULL);
  /* Crash events name a node generation: start the nodes after them. */
  for (int k = 0; k < SIM_NODES; k++)
    node_start(s, k);
  const int64_t settle_ms = 300000;
  sim_ev_t ev;
  while (!s->violated && sim_pop(s, &ev)) {
    if (ev.at > s->now)
      s->now = ev.at;
    if (s->faults_on && s->now >= s->fault_until) {
      s->faults_on = 0;
      sim_log(s, "faults stop");
    }
    handle(s, &ev);
    run_turns(s);
    s->steps++;
    if (s->violated || sim_check_step(s))
      break;
    if (!s->faults_on && all_terminal(s))
      break;
    if (s->now > s->fault_until + settle_ms) {
      sim_check_end(s); /* reports the saga that did not finish */
      if (!s->violated)
        sim_violation(s, "liveness: not every saga finished");
      break;
    }
  }
  if (!s->violated)
    sim_check_end(s);
  if (tot) {
    tot->sagas += (uint64_t)s->nsagas;
    tot->steps += s->steps;
    tot->commands += s->commands;
    tot->commits += s->commits;
    for (int f = 0; f < SIM_F_N; f++)
      tot->faults[f] += s->faults[f];
    for (int i = 0; i < s->nsagas; i++) {
      sim_stream_t *st = sim_store_find(s, s->sagas[i].id);
      if (st && st->shadow && st->shadow->status == SM_COMPLETED)
        tot->completed++;
      else if (st && st->shadow && st->shadow->status == SM_COMPENSATED)
        tot->compensated++;
    }
  }
  for (int k = 0; k < SIM_NODES; k++) {
    sagad_engine_free(s->nodes[k].engine);
    s->nodes[k].engine = NULL;
  }
  while (sim_pop(s, &ev))
    if (ev.kind == EV_COMMAND)
      free(ev.p);
    else if (ev.kind == EV_NOTIFY || ev.kind == EV_DELIVERY)
      sagad_engine_forget_token(ev.p);
  free(s->heap);
  sim_store_free(s);
  sim_broker_free(s);
  sim_participants_free(s);
  return s->violated;
}

static void print_trace(const sim_t *s) {
  size_t n = s->ntrace < SIM_TRACE ? s->ntrace : SIM_TRACE;
  printf("last %zu events (virtual ms since start):\n", n);
  for (size_t i = s->ntrace - n; i < s->ntrace; i++)
    printf("  %s\n", s->trace[i % SIM_TRACE]);
}

static void print_totals(const totals_t *t) {
  printf("sagas %llu (completed %llu, compensated %llu), world events %llu, "
         "commands %llu, committed appends %llu\n",
         (unsigned long long)t->sagas, (unsigned long long)t->completed,
         (unsigned long long)t->compensated, (unsigned long long)t->steps,
         (unsigned long long)t->commands, (unsigned long long)t->commits);
  printf("faults injected:\n");
  for (int f = 0; f < SIM_F_N; f++)
    printf("  %-20s %12llu  %s\n", fault_key[f],
           (unsigned long long)t->faults[f], fault_desc[f]);
}

static double elapsed(const struct timespec *a, const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) +
         (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void usage(void) {
  fprintf(stderr,
          "usage: saga-sim --seed S [--sagas M] [--verbose]\n"
          "       saga-sim --seeds N [--from S] [--sagas M] [--all]\n"
          "                [--progress K]\n"
          "       [--definitions DIR]\n");
}

/* v as a whole number from lo to hi into *out; else says so, naming the
 * option, and returns -1. */
static int number(const char *opt, const char *v, uint64_t lo, uint64_t hi,
                  uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (!*v || *end || errno || v[0] == '-' || n < lo || n > hi) {
    fprintf(stderr,
            "saga-sim: %s: expected a whole number from %" PRIu64
            " to %" PRIu64 ", got \"%s\"\n",
            opt, lo, hi, v);
    return -1;
  }
  *out = n;
  return 0;
}

int main(int argc, char **argv) {
  uint64_t seed = 0, from = 1, nseeds = 0, progress = 0, nsagas = 8;
  int one = 0, all = 0;
  sim_opts_t opt = {.nsagas = 8};
  const char *dir = SIM_DEFINITIONS_DIR;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--verbose")) {
      opt.verbose = 1;
      continue;
    }
    if (!strcmp(a, "--all")) {
      all = 1;
      continue;
    }
    if (!v) {
      usage();
      return 2;
    }
    i++;
    int bad = 0;
    if (!strcmp(a, "--seed")) {
      bad = number(a, v, 0, UINT64_MAX, &seed);
      one = 1;
    } else if (!strcmp(a, "--seeds")) {
      bad = number(a, v, 1, UINT64_MAX / 2, &nseeds);
    } else if (!strcmp(a, "--from")) {
      bad = number(a, v, 0, UINT64_MAX / 2, &from);
    } else if (!strcmp(a, "--progress")) {
      bad = number(a, v, 0, UINT64_MAX, &progress);
    } else if (!strcmp(a, "--sagas")) {
      bad = number(a, v, 1, SIM_MAX_SAGAS, &nsagas);
      opt.nsagas = (int)nsagas;
    } else if (!strcmp(a, "--definitions")) {
      dir = v;
    } else {
      usage();
      return 2;
    }
    if (bad)
      return 2;
  }
  if ((!one && !nseeds) || opt.nsagas < 1 || opt.nsagas > SIM_MAX_SAGAS) {
    usage();
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* engine log lines interleave in order */
  sagad_log_sink_t sink = {.write = engine_log};
  sagad_log_set_sink(opt.verbose ? &sink : NULL,
                     opt.verbose ? SAGAD_LOG_DEBUG : SAGAD_LOG_ERROR);
  saga_registry_t *reg = saga_registry_new();
  saga_diags_t d = {0};
  size_t loaded = 0;
  if (!reg || saga_registry_load_dir(reg, dir, &d, &loaded) != SAGA_CORE_OK ||
      !loaded) {
    for (size_t i = 0; i < d.n; i++)
      fprintf(stderr, "saga-sim: %s\n", d.items[i]);
    fprintf(stderr, "saga-sim: could not load definitions from %s\n", dir);
    return 2;
  }
  saga_diags_clear(&d);
  const saga_def_t *defs[8];
  size_t ndefs = 0;
  const char *names[] = {"order", "trip", "transfer"};
  for (size_t i = 0; i < 3; i++)
    if ((defs[ndefs] = saga_registry_find(reg, names[i], 0)))
      ndefs++;
  if (!ndefs) {
    fprintf(stderr, "saga-sim: definitions order, trip, transfer missing\n");
    return 2;
  }
  sim_t *s = malloc(sizeof *s);
  if (!s)
    return 2;
  totals_t tot = {0};
  int rc = 0;
  if (one) {
    rc = run_seed(reg, defs, ndefs, seed, &opt, s, &tot);
    printf("seed %llu: %s\n", (unsigned long long)seed,
           rc ? s->violation : "ok");
    print_totals(&tot);
    if (rc)
      print_trace(s);
  } else {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t done = 0, failed = 0;
    for (uint64_t k = 0; k < nseeds; k++) {
      const uint64_t this_seed = from + k;
      done++;
      if (run_seed(reg, defs, ndefs, this_seed, &opt, s, &tot)) {
        rc = 1;
        failed++;
        printf("violation at seed %llu: %s\n",
               (unsigned long long)this_seed, s->violation);
        if (!all) {
          print_trace(s);
          printf("replay: saga-sim --seed %llu --sagas %d --verbose\n",
                 (unsigned long long)this_seed, opt.nsagas);
          break;
        }
      }
      if (progress && done % progress == 0) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("progress: %llu seeds (to %llu), %llu violations, %llu "
               "sagas, %.0f s\n",
               (unsigned long long)done, (unsigned long long)this_seed,
               (unsigned long long)failed, (unsigned long long)tot.sagas,
               elapsed(&t0, &t1));
      }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = elapsed(&t0, &t1);
    printf("seeds %llu..%llu: %llu run, %llu violation%s, %.1f s, %.0f "
           "seeds/s\n",
           (unsigned long long)from,
           (unsigned long long)(from + nseeds - 1),
           (unsigned long long)done, (unsigned long long)failed,
           failed == 1 ? "" : "s", secs,
           secs > 0 ? (double)done / secs : 0.0);
    print_totals(&tot);
  }
  free(s);
  saga_registry_free(reg);
  return rc;
}
