/* A starter built outside the project's tree against the installed client
 * library: starts one saga and waits for its outcome, printing it.
 * Usage: hello-starter BOOTSTRAP INBOX NOTIFICATIONS TYPE ID
 * Exit 0 when the saga COMPLETED, 1 otherwise. */
#include <stdio.h>
#include <string.h>

#include <saga/client.h>

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr,
            "usage: hello-starter BOOTSTRAP INBOX NOTIFICATIONS TYPE ID\n");
    return 2;
  }
  saga_starter_config_t cfg = {.kafka = {.bootstrap_servers = argv[1]},
                               .inbox_topic = argv[2],
                               .notifications_topic = argv[3]};
  const char *input = "{\"hello\":\"world\"}";
  saga_start_request_t req = {.saga_type = argv[4],
                              .saga_id = argv[5],
                              .input = input,
                              .input_len = strlen(input)};
  char id[256], reason[256], err[512] = "";
  saga_notification_kind_t kind = 0;
  int rc = saga_run_saga(&cfg, &req, 60000, id, sizeof id, &kind, reason,
                         sizeof reason, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "hello-starter: %s: %s\n", saga_strerror(rc), err);
    return 1;
  }
  printf("saga %s: %s%s%s\n", id, saga_notification_kind_name((int)kind),
         reason[0] ? ": " : "", reason);
  return kind == SAGA_NOTIFY_COMPLETED ? 0 : 1;
}
