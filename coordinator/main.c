/* sagad: read the configuration, then hand over to the daemon shell.
 * Kept small on purpose: policy lives in config.c, the loop and shutdown
 * sequencing in daemon.c. Exit status 2 means a bad configuration. */
#include <stdio.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "config.h"
#include "daemon.h"
#include "log.h"

#ifndef SAGA_VERSION
#define SAGA_VERSION "unknown"
#endif

extern char **environ;

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
    return SAGAD_EXIT_USAGE;
  }
  switch (mode) {
  case SAGAD_MODE_HELP:
    sagad_config_write_usage(stdout, "sagad");
    break;
  case SAGAD_MODE_VERSION:
    printf("sagad %s (librdkafka %s, libuv %s, libpq %d)\n", SAGA_VERSION,
           rd_kafka_version_str(), uv_version_string(), PQlibVersion());
    break;
  case SAGAD_MODE_REFERENCE:
    sagad_config_write_reference(stdout);
    break;
  case SAGAD_MODE_CHECK:
    sagad_config_write(cfg, stdout);
    break;
  case SAGAD_MODE_RUN:
    sagad_log_setup_from_config(cfg, 2);
    /* The Kafka and store bridges plug in here as sagad_hooks_t. */
    status = sagad_daemon_run(cfg, NULL);
    break;
  }
  if (fflush(stdout) != 0 && status == SAGAD_EXIT_OK)
    status = SAGAD_EXIT_FAILURE;
  sagad_config_free(cfg);
  return status;
}
