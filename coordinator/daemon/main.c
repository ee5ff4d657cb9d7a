/* sagad: read the configuration, then hand over to the daemon shell with
 * the coordinator plugged in through sagad_hooks_t: on_start loads the
 * definitions and opens the three ports and the engine; on_stop drains the
 * engine, then closes Kafka (committing offsets) and the store. Policy
 * lives in config.c, the loop and shutdown sequencing in daemon.c, the
 * logic in engine.c. Exit status 2 means a bad configuration. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "saga/version.h"
#include "allocator.h"
#include "config.h"
#include "daemon.h"
#include "engine.h"
#include "log.h"
#include "observe.h"
#include "probe.h"
#include "shell.h"


extern char **environ;

/* Everything the coordinator opens, owned by main for the daemon's life. */
typedef struct {
  sagad_daemon_t *d;
  saga_registry_t *registry;
  sagad_store_pg_t *store;
  sagad_broker_kafka_t *broker;
  sagad_clock_uv_t *clock;
  sagad_engine_t *engine;
  sagad_observe_t *observe; /* admin endpoint, metrics, traces */
} app_t;

static void on_fatal(void *arg, const char *why) {
  app_t *a = arg;
  sagad_daemon_shutdown(a->d, SAGAD_EXIT_FAILURE, why);
}

/* Load cfg's definitions into a->registry, logging each refused file.
 * At run time a refused file is logged and the others serve; strict
 * (--check-config) fails on it. */
static int load_definitions(app_t *a, const sagad_config_t *cfg,
                            bool strict) {
  saga_diags_t diags = {0};
  size_t loaded = 0;
  a->registry = saga_registry_new();
  if (!a->registry) {
    LOG_ERROR("out of memory loading definitions");
    return -1;
  }
  int rc = saga_registry_load_dir(a->registry, cfg->definitions_dir, &diags,
                                  &loaded);
  for (size_t i = 0; i < diags.n; i++)
    LOG_ERROR("%s", diags.items[i]);
  saga_diags_clear(&diags);
  if (rc != SAGA_CORE_OK && (strict || rc != SAGA_CORE_EDEF))
    return -1;
  if (!loaded) {
    LOG_ERROR("no saga definition loaded from \"%s\"", cfg->definitions_dir);
    return -1;
  }
  LOG_INFO("loaded %zu saga definitions from %s", loaded, cfg->definitions_dir);
  return 0;
}

/* Open the store; with start.wait_for_dependencies_ms, try again every
 * second until PostgreSQL answers or that much time has passed. */
static int open_store(uv_loop_t *loop, const sagad_config_t *cfg, app_t *a,
                      sagad_store_port_t *port, char *err, size_t errlen) {
  uint64_t until = uv_hrtime() / 1000000 + (uint64_t)cfg->start_wait_ms;
  for (;;) {
    int rc = sagad_store_pg_open(loop, cfg->store_conninfo, cfg->topic_inbox,
                                 cfg->group_id, &a->store, port, err, errlen);
    if (rc == 0)
      return 0;
    uint64_t now = uv_hrtime() / 1000000;
    if (rc == -2 || now >= until) /* -2: another deployment's database */
      return -1;
    LOG_WARN("waiting for PostgreSQL (%s), %llu ms left of "
             "start.wait_for_dependencies_ms",
             err, (unsigned long long)(until - now));
    uint64_t nap = until - now < 1000 ? until - now : 1000;
    nanosleep(&(struct timespec){(time_t)(nap / 1000),
                                 (long)(nap % 1000) * 1000000L},
              NULL);
  }
}

static int on_start(sagad_daemon_t *d, void *arg) {
  app_t *a = arg;
  const sagad_config_t *cfg = sagad_daemon_config(d);
  uv_loop_t *loop = sagad_daemon_loop(d);
  char err[2048];
  a->d = d;
  if (!a->registry && load_definitions(a, cfg, false)) /* main loaded them */
    return -1;
  sagad_engine_config_t ec = {
      .registry = a->registry,
      .inbox_topic = cfg->topic_inbox,
      .notify_topic = cfg->topic_notifications,
      .progress_topic = cfg->topic_progress,
      .dlq_topic = cfg->topic_dlq,
      .batch_max_events = (size_t)cfg->batch_max_events,
      .payload_max_bytes = (size_t)cfg->payload_max_bytes,
      .output_cache_bytes = (size_t)cfg->output_cache_bytes,
      .rng_seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)a,
      .on_fatal = on_fatal, /* recovery could not read the store */
      .fatal_arg = a,
      .trim_heap = sagad_allocator_trim, /* after a backlog */
  };
  if (open_store(loop, cfg, a, &ec.store, err, sizeof err)) {
    LOG_ERROR("%s", err);
    return -1;
  }
  /* Before any saga runs: the store then holds every definition its
   * sagas run on, and a changed body under a recorded version stops us. */
  if (sagad_store_pg_record_definitions(
          a->store, a->registry, cfg->definitions_dir, err, sizeof err)) {
    LOG_ERROR("%s", err);
    return -1;
  }
  if (sagad_broker_kafka_open(loop, cfg, on_fatal, a, &a->broker, &ec.broker,
                              err, sizeof err)) {
    LOG_ERROR("%s", err);
    return -1;
  }
  ec.produce_max_bytes = sagad_broker_kafka_max_message(a->broker);
  if (sagad_clock_uv_open(loop, &a->clock, &ec.clock) ||
      !(a->engine = sagad_engine_new(&ec))) {
    LOG_ERROR("out of memory starting the coordinator");
    return -1;
  }
  sagad_store_pg_attach(a->store, a->engine);
  sagad_clock_uv_attach(a->clock, a->engine);
  sagad_observe_opts_t oo = {.loop = loop,
                             .cfg = cfg,
                             .registry = a->registry,
                             .engine = a->engine,
                             .broker = a->broker};
  if (sagad_observe_start(&oo, &a->observe, err, sizeof err)) {
    LOG_ERROR("%s", err);
    return -1;
  }
  if (sagad_broker_kafka_start(a->broker, a->engine, err, sizeof err)) {
    LOG_ERROR("could not subscribe to %s: %s", cfg->topic_inbox, err);
    return -1;
  }
  LOG_INFO("coordinating: inbox %s, group %s, notifications %s, progress "
           "notes %s%s",
           cfg->topic_inbox, cfg->group_id, cfg->topic_notifications,
           *cfg->topic_progress ? "to " : "off (topic.progress is empty)",
           cfg->topic_progress);
  return 0;
}

static void observe_closed(void *arg) {
  app_t *a = arg;
  sagad_daemon_stop_done(a->d);
}

static void store_closed(void *arg) {
  app_t *a = arg;
  a->store = NULL;
  /* Last: metrics and spans were recorded until the engine drained. */
  sagad_observe_t *o = a->observe;
  a->observe = NULL;
  sagad_observe_close(o, observe_closed, a);
}

static void marks_flushed(void *arg) {
  app_t *a = arg;
  sagad_store_pg_close(a->store, store_closed, a);
}

static void broker_closed(void *arg) {
  app_t *a = arg;
  a->broker = NULL;
  /* No wake-up from here on: a retry list's (outbox, dead letters,
   * commands) would produce through the broker just freed. */
  sagad_clock_uv_close(a->clock);
  a->clock = NULL;
  /* The close's last delivery reports are in: the final notifications
   * they confirmed are recorded before the store closes, or the next
   * start would send them again (one batch, no timer needed). */
  if (a->engine && a->store)
    sagad_engine_flush_marks(a->engine, marks_flushed, a);
  else
    marks_flushed(a);
}

static void engine_drained(void *arg) {
  app_t *a = arg;
  if (a->engine) {
    const sagad_counters_t *c = sagad_engine_counters(a->engine);
    LOG_INFO("drained: %llu started, %llu completed, %llu compensated, "
             "%llu compensation failed, %llu dead letters",
             (unsigned long long)c->started, (unsigned long long)c->completed,
             (unsigned long long)c->compensated,
             (unsigned long long)c->compensation_failed,
             (unsigned long long)c->dead_lettered);
    /* Inputs the machine judged and ignored, by verdict (the fault tests
     * read this line). */
    char an[512];
    size_t used = 0;
    for (int v = SM_V_DUPLICATE; v <= SM_V_FINISHED && used < sizeof an;
         v++) {
      int n = snprintf(an + used, sizeof an - used, "%s%s=%llu",
                       used ? " " : "",
                       sm_verdict_name((sm_verdict_t)v),
                       (unsigned long long)c->anomalies[v]);
      if (n < 0)
        break;
      used += (size_t)n;
    }
    LOG_INFO("anomalies: %s", an);
  }
  /* Offsets of what is appended are committed by the close. */
  sagad_broker_kafka_close(a->broker, broker_closed, a);
}

static void on_stop(sagad_daemon_t *d, void *arg) {
  app_t *a = arg;
  a->d = d;
  sagad_observe_stop(a->observe); /* no more admin requests */
  if (a->engine)
    sagad_engine_stop(a->engine, engine_drained, a);
  else
    engine_drained(a);
}

/* --check-config: what on_start checks before it connects -- every
 * definition (any refused file fails here), admin.listen, otlp.endpoint
 * -- logged with the messages a start would log, then the effective
 * configuration on stdout. Returns the exit status. */
static int check_config(const sagad_config_t *cfg) {
  app_t a = {0};
  char err[1024];
  int bad = load_definitions(&a, cfg, true) != 0;
  saga_registry_free(a.registry);
  if (sagad_observe_check(cfg, err, sizeof err) != 0) {
    LOG_ERROR("%s", err);
    bad = 1;
  }
  if (sagad_broker_kafka_check(cfg, err, sizeof err) != 0) {
    LOG_ERROR("%s", err);
    bad = 1;
  }
  if (bad) {
    fputs("sagad: the configuration would not start\n", stderr);
    return SAGAD_EXIT_USAGE;
  }
  sagad_config_write(cfg, stdout);
  return SAGAD_EXIT_OK;
}

/* --migrate: the event store's and the coordinator's migrations on
 * store.conninfo, logged; nothing else is connected. Returns the exit
 * status. */
static int migrate(const sagad_config_t *cfg) {
  char err[1024];
  int esv = 0, v = 0;
  if (sagad_store_pg_migrate(cfg->store_conninfo, &esv, &v, err,
                             sizeof err)) {
    LOG_ERROR("store.conninfo: %s", err);
    return SAGAD_EXIT_FAILURE;
  }
  LOG_INFO("schema up to date: event store version %d, coordinator version "
           "%d",
           esv, v);
  return SAGAD_EXIT_OK;
}

int main(int argc, char **argv) {
  char err[2048];
  sagad_mode_t mode = SAGAD_MODE_RUN;
  int status = SAGAD_EXIT_OK;
  sagad_config_t *cfg = sagad_config_new();
  if (!cfg) {
    fputs("sagad: out of memory\n", stderr);
    return SAGAD_EXIT_FAILURE;
  }
  if (sagad_config_load(cfg, argc, (const char *const *)argv,
                        (const char *const *)environ, &mode, err, sizeof err)) {
    fprintf(stderr, "sagad: %s\n", err);
    sagad_config_free(cfg);
    /* a health check knows 0 and 1 (Docker reserves 2) */
    return mode == SAGAD_MODE_PROBE ? SAGAD_EXIT_FAILURE : SAGAD_EXIT_USAGE;
  }
  switch (mode) {
  case SAGAD_MODE_HELP:
    sagad_config_write_usage(stdout, "sagad");
    break;
  case SAGAD_MODE_VERSION: {
    char alloc[64];
    printf("sagad %s (librdkafka %s, libuv %s, libpq %d, %s)\n",
           SAGA_VERSION, rd_kafka_version_str(), uv_version_string(),
           PQlibVersion(), sagad_allocator(alloc, sizeof alloc));
    break;
  }
  case SAGAD_MODE_REFERENCE:
    sagad_config_write_reference(stdout);
    break;
  case SAGAD_MODE_CHECK:
    sagad_log_setup_from_config(cfg, 2);
    status = check_config(cfg);
    break;
  case SAGAD_MODE_MIGRATE:
    sagad_log_setup_from_config(cfg, 2);
    status = migrate(cfg);
    break;
  case SAGAD_MODE_PROBE:
    if (sagad_probe_health(cfg->admin_listen, 3000, err, sizeof err) != 0) {
      fprintf(stderr, "sagad: unhealthy: %s\n", err);
      status = SAGAD_EXIT_FAILURE;
    }
    break;
  case SAGAD_MODE_RUN:
    sagad_log_setup_from_config(cfg, 2);
    /* What --check-config checks that the configuration's own load does
     * not, refused here as it refuses them (exit 2, the same message),
     * before anything is connected. */
    if (sagad_observe_check(cfg, err, sizeof err) != 0 ||
        sagad_broker_kafka_check(cfg, err, sizeof err) != 0) {
      LOG_ERROR("%s", err);
      status = SAGAD_EXIT_USAGE;
      break;
    }
  {
    app_t app = {0};
    /* the definitions too: none that loads is a bad configuration */
    if (load_definitions(&app, cfg, false)) {
      saga_registry_free(app.registry);
      status = SAGAD_EXIT_USAGE;
      break;
    }
    sagad_hooks_t hooks = {.on_start = on_start, .on_stop = on_stop,
                           .arg = &app};
    status = sagad_daemon_run(cfg, &hooks);
    sagad_engine_free(app.engine);
    saga_registry_free(app.registry);
    break;
  }
  }
  if (fflush(stdout) != 0 && status == SAGAD_EXIT_OK)
    status = SAGAD_EXIT_FAILURE;
  sagad_config_free(cfg);
  return status;
}
