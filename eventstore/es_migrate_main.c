/* saga-es-migrate: apply the event store's schema migrations to the
 * database named by a libpq conninfo, then print the schema version. */
#include <stdio.h>
#include <string.h>

#include "saga/eventstore.h"

int main(int argc, char **argv) {
  if (argc != 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    fprintf(stderr, "usage: %s CONNINFO\n"
                    "Apply pending event store migrations (idempotent).\n",
            argv[0]);
    return 2;
  }
  char err[ES_ERRBUF_SIZE] = "";
  int version = 0;
  int rc = es_migrate(argv[1], &version, err, sizeof err);
  if (rc) {
    fprintf(stderr, "saga-es-migrate: %s (%s)\n", err, es_err_name(rc));
    return 1;
  }
  printf("event store schema version %d\n", version);
  return 0;
}
