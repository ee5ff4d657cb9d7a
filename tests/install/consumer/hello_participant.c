/* A participant built outside the project's tree against the installed
 * client library: it serves one command topic, answers every DO and
 * COMPENSATE with SUCCESS (the DO's output names the step), and stops on
 * SIGTERM or SIGINT. Usage: hello-participant BOOTSTRAP TOPIC GROUP */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <saga/client.h>
#include <saga/version.h>

static saga_participant_t *participant;
static uv_signal_t sigterm, sigint;

static void handle(saga_participant_t *p, const saga_command_t *cmd,
                   saga_pending_t *pending, void *arg) {
  (void)p;
  (void)arg;
  char out[300];
  int n = snprintf(out, sizeof out, "{\"done\":\"%s\"}", cmd->step);
  saga_participant_done(pending, SAGA_OUTCOME_SUCCESS, out, (size_t)n, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)signum;
  uv_signal_stop(&sigterm);
  uv_signal_stop(&sigint);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_close((uv_handle_t *)&sigint, NULL);
  (void)s;
  saga_participant_close(participant, NULL, NULL);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: hello-participant BOOTSTRAP TOPIC GROUP\n");
    return 2;
  }
  static const char *const props[] = {"auto.offset.reset", "earliest",
                                      "allow.auto.create.topics", "true",
                                      "session.timeout.ms", "6000", NULL};
  saga_participant_config_t cfg = {
      .kafka = {.bootstrap_servers = argv[1], .properties = props},
      .group_id = argv[3]};
  if (saga_idem_store_memory(&cfg.store) != 0)
    return 1;
  char err[512] = "";
  uv_loop_t *loop = uv_default_loop();
  if (saga_participant_new(loop, &cfg, &participant, err, sizeof err) != 0 ||
      saga_participant_handle(participant, argv[2], handle, NULL) != 0 ||
      saga_participant_start(participant, err, sizeof err) != 0) {
    fprintf(stderr, "hello-participant: %s\n", err);
    return 1;
  }
  uv_signal_init(loop, &sigterm);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  printf("hello-participant (saga %s) serving %s\n", SAGA_VERSION, argv[2]);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
