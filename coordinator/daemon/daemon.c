/* The sagad loop, signals and shutdown sequencing. The order matters:
 * a signal only begins the shutdown; on_stop drains input and appends
 * before the loop may end, and a deadline bounds the whole of it. */
#include "daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "saga/version.h"
#include "sd_notify.h"


struct sagad_daemon {
  uv_loop_t loop;
  const sagad_config_t *cfg;
  sagad_hooks_t hooks;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  uv_signal_t sighup;
  uv_timer_t deadline;
  uv_timer_t watchdog; /* WATCHDOG=1 to systemd, when it asks for them */
  int status;
  bool stopping;
  bool stop_done;
  bool forced;
};

uv_loop_t *sagad_daemon_loop(sagad_daemon_t *d) { return &d->loop; }

const sagad_config_t *sagad_daemon_config(const sagad_daemon_t *d) {
  return d->cfg;
}

bool sagad_daemon_stopping(const sagad_daemon_t *d) { return d->stopping; }

static void close_own_handles(sagad_daemon_t *d) {
  uv_handle_t *own[] = {(uv_handle_t *)&d->sigterm, (uv_handle_t *)&d->sigint,
                        (uv_handle_t *)&d->sighup,
                        (uv_handle_t *)&d->deadline,
                        (uv_handle_t *)&d->watchdog};
  for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
    if (!uv_is_closing(own[i]))
      uv_close(own[i], NULL);
}

/* Past this point the hooks' remaining work is abandoned: stop the loop now
 * rather than hang. Inputs not yet appended are redelivered after restart
 * (their offsets were never committed). */
static void force_stop(sagad_daemon_t *d, const char *why) {
  LOG_ERROR("%s: stopping without finishing the shutdown", why);
  d->status = SAGAD_EXIT_FAILURE;
  d->forced = true;
  uv_stop(&d->loop);
}

static void on_deadline(uv_timer_t *t) {
  sagad_daemon_t *d = t->data;
  char why[96];
  snprintf(why, sizeof why, "shutdown did not finish within %lld ms",
           (long long)d->cfg->shutdown_timeout_ms);
  force_stop(d, why);
}

void sagad_daemon_stop_done(sagad_daemon_t *d) {
  if (d->stop_done)
    return;
  d->stop_done = true;
  close_own_handles(d);
}

void sagad_daemon_shutdown(sagad_daemon_t *d, int exit_status,
                           const char *reason) {
  if (d->stopping)
    return;
  d->stopping = true;
  d->status = exit_status;
  if (sagad_sd_notify("STOPPING=1") < 0)
    LOG_WARN("could not tell the service manager that sagad is stopping");
  LOG_INFO("shutting down (%s), within %lld ms", reason,
           (long long)d->cfg->shutdown_timeout_ms);
  uv_timer_start(&d->deadline, on_deadline,
                 (uint64_t)d->cfg->shutdown_timeout_ms, 0);
  if (d->hooks.on_stop)
    d->hooks.on_stop(d, d->hooks.arg);
  else
    sagad_daemon_stop_done(d);
}

/* Kept alive by the loop itself: a loop that hangs stops the pings and
 * systemd restarts sagad (WatchdogSec= in deploy/systemd/sagad.service). */
static void on_watchdog(uv_timer_t *t) {
  (void)t;
  (void)sagad_sd_notify("WATCHDOG=1");
}

static void on_signal(uv_signal_t *h, int signum) {
  sagad_daemon_t *d = h->data;
  if (d->stopping) {
    char why[64];
    snprintf(why, sizeof why, "second signal (%s)",
             signum == SIGINT ? "SIGINT" : "SIGTERM");
    force_stop(d, why);
    return;
  }
  sagad_daemon_shutdown(d, SAGAD_EXIT_OK,
                        signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* SIGHUP: no reload (the configuration is read at start only) and no
 * stop -- killed by its default action, sagad stopped without flushing
 * or committing, when an operator asked for a reload or the terminal
 * that started it closed. */
static void on_hup(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  LOG_WARN("SIGHUP ignored: sagad reads its configuration only at start; "
           "restart it to apply a change (SIGTERM stops it gracefully)");
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

int sagad_daemon_run(const sagad_config_t *cfg, const sagad_hooks_t *hooks) {
  sagad_daemon_t *d = calloc(1, sizeof *d);
  if (!d) {
    LOG_ERROR("could not start: out of memory");
    return SAGAD_EXIT_FAILURE;
  }
  d->cfg = cfg;
  if (hooks)
    d->hooks = *hooks;
  int rc = uv_loop_init(&d->loop);
  if (rc) {
    LOG_ERROR("could not start the event loop: %s", uv_strerror(rc));
    free(d);
    return SAGAD_EXIT_FAILURE;
  }
  /* librdkafka and libpq write to sockets a peer may close. */
  signal(SIGPIPE, SIG_IGN);
  uv_signal_init(&d->loop, &d->sigterm);
  uv_signal_init(&d->loop, &d->sigint);
  uv_signal_init(&d->loop, &d->sighup);
  uv_timer_init(&d->loop, &d->deadline);
  uv_timer_init(&d->loop, &d->watchdog);
  d->sigterm.data = d->sigint.data = d->deadline.data = d;
  if ((rc = uv_signal_start(&d->sigterm, on_signal, SIGTERM)) ||
      (rc = uv_signal_start(&d->sigint, on_signal, SIGINT)) ||
      (rc = uv_signal_start(&d->sighup, on_hup, SIGHUP))) {
    LOG_ERROR("could not install signal handlers: %s", uv_strerror(rc));
    d->status = SAGAD_EXIT_FAILURE;
    close_own_handles(d);
    goto run;
  }

  if (d->hooks.on_start && d->hooks.on_start(d, d->hooks.arg) != 0) {
    sagad_daemon_shutdown(d, SAGAD_EXIT_FAILURE, "start failed");
  } else {
    LOG_INFO("started: sagad %s, pid %ld, group %s, inbox %s", SAGA_VERSION,
             (long)getpid(), cfg->group_id, cfg->topic_inbox);
    if (sagad_sd_notify("READY=1\nSTATUS=consuming the inbox") < 0)
      LOG_WARN("could not tell the service manager that sagad is ready");
    uint64_t wd = sagad_sd_watchdog_usec();
    if (wd >= 2000) /* ping at half the interval, as sd_watchdog_enabled(3) */
      uv_timer_start(&d->watchdog, on_watchdog, wd / 2000, wd / 2000);
  }

run:
  uv_run(&d->loop, UV_RUN_DEFAULT);
  if (!d->forced)
    LOG_INFO("stopped");
  /* Release whatever is left (after a forced stop, the hooks' handles). */
  uv_walk(&d->loop, close_any, NULL);
  uv_run(&d->loop, UV_RUN_NOWAIT);
  if (uv_loop_close(&d->loop) != 0)
    LOG_WARN("event loop still busy at exit");
  int status = d->status;
  free(d);
  return status;
}
