/* The sagad process shell: one libuv loop, SIGTERM/SIGINT handling and the
 * graceful-shutdown sequence. The daemon's real work (Kafka consumer and
 * producer, event store, state machine) plugs in through two hooks:
 * on_start opens it, on_stop drains it. This module knows nothing about
 * sagas; it owns only the loop, the signal handles and the shutdown
 * deadline. Everything here runs on the one loop thread. */
#ifndef SAGAD_DAEMON_H
#define SAGAD_DAEMON_H

#include <stdbool.h>

#include <uv.h>

#include "config.h"

/* Exit status of sagad: a clean stop, a runtime failure (including a start
 * hook that failed and a shutdown that overran shutdown.timeout_ms), and a
 * bad configuration or command line. */
#define SAGAD_EXIT_OK 0
#define SAGAD_EXIT_FAILURE 1
#define SAGAD_EXIT_USAGE 2

typedef struct sagad_daemon sagad_daemon_t;

typedef struct {
  /* Called once on the loop thread before the loop runs: open connections,
   * start handles on sagad_daemon_loop(d). Return 0, or non-zero when the
   * daemon cannot start (log why first): the daemon then begins the
   * shutdown with status SAGAD_EXIT_FAILURE. NULL = nothing to start. */
  int (*on_start)(sagad_daemon_t *d, void *arg);
  /* Called once on the loop thread when the shutdown begins (signal,
   * sagad_daemon_shutdown(), or a failed on_start, so whatever on_start
   * opened can be released). In this order: stop taking input, flush the
   * pending appends, commit the offsets of what is appended, close the
   * handles -- then call sagad_daemon_stop_done(d), now or from a later
   * callback. The whole sequence is bounded by shutdown.timeout_ms; past it
   * the daemon stops the loop and exits with SAGAD_EXIT_FAILURE. NULL =
   * nothing to stop. */
  void (*on_stop)(sagad_daemon_t *d, void *arg);
  void *arg;
} sagad_hooks_t;

/* Run the daemon until it stops: set up the loop and signal handlers, call
 * on_start, log "started", run the loop; on SIGTERM or SIGINT begin the
 * graceful shutdown (a second signal stops at once). cfg is borrowed for the
 * whole call; hooks may be NULL. Logging must be set up before (log.h).
 * Returns the exit status for main: SAGAD_EXIT_OK after a clean stop,
 * SAGAD_EXIT_FAILURE otherwise (or the status given to
 * sagad_daemon_shutdown()). */
int sagad_daemon_run(const sagad_config_t *cfg, const sagad_hooks_t *hooks);

/* The loop all of the daemon's handles live on. Valid inside the hooks and
 * callbacks until sagad_daemon_run() returns. */
uv_loop_t *sagad_daemon_loop(sagad_daemon_t *d);

/* The configuration sagad_daemon_run() was given. */
const sagad_config_t *sagad_daemon_config(const sagad_daemon_t *d);

/* Begin the graceful shutdown from inside the daemon (e.g. a fatal error from
 * librdkafka), with the exit status to return and a reason for the log.
 * Calls on_stop. Does nothing when a shutdown is already under way. */
void sagad_daemon_shutdown(sagad_daemon_t *d, int exit_status,
                           const char *reason);

/* on_stop's work is done: the daemon closes its own handles and the loop
 * ends once the hooks' handles are closed too. Idempotent. */
void sagad_daemon_stop_done(sagad_daemon_t *d);

/* True once the shutdown has begun: hooks stop taking new input. */
bool sagad_daemon_stopping(const sagad_daemon_t *d);

#endif
