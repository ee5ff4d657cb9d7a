/* saga-es-migrate: apply the event store's schema migrations to the
 * database named by a libpq conninfo, then print the schema version. */
#include <stdio.h>
#include <string.h>

#include "saga/eventstore.h"
#include "saga/version.h"

static void usage(FILE *f) {
  fputs("usage: saga-es-migrate CONNINFO\n"
        "       saga-es-migrate --version\n"
        "Apply the event store's pending schema migrations to the PostgreSQL\n"
        "database named by CONNINFO (a libpq conninfo string or a\n"
        "postgresql:// URI), then print the schema version. Idempotent: a\n"
        "database already up to date is left as it is. sagad applies the same\n"
        "migrations itself at start; this program is for a separate migration\n"
        "step run by a role that may create tables.\n\n"
        "Exit codes: 0 migrated or up to date, 1 the migration failed,\n"
        "2 usage error (a CONNINFO libpq cannot parse included).\n",
        f);
}

int main(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    usage(stdout);
    return 0;
  }
  if (argc == 2 && !strcmp(argv[1], "--version")) {
    printf("saga-es-migrate %s\n", SAGA_VERSION);
    return 0;
  }
  if (argc != 2 || argv[1][0] == '-') {
    /* the first option says more than the count of arguments */
    const char *opt = NULL;
    for (int i = 1; i < argc && !opt; i++)
      if (argv[i][0] == '-')
        opt = argv[i];
    int known = opt && (!strcmp(opt, "-h") || !strcmp(opt, "--help") ||
                        !strcmp(opt, "--version"));
    if (argc < 2)
      fputs("saga-es-migrate: a CONNINFO is required\n", stderr);
    else if (known)
      fprintf(stderr, "saga-es-migrate: %s takes no other argument\n", opt);
    else if (opt)
      fprintf(stderr, "saga-es-migrate: unknown option \"%s\"\n", opt);
    else
      fprintf(stderr,
              "saga-es-migrate: one CONNINFO only, got %d arguments (quote a"
              " conninfo with spaces)\n",
              argc - 1);
    usage(stderr);
    return 2;
  }
  char err[ES_ERRBUF_SIZE] = "";
  int version = 0;
  int rc = es_migrate(argv[1], &version, err, sizeof err);
  if (rc) {
    fprintf(stderr, "saga-es-migrate: %s (%s)\n", err, es_err_name(rc));
    return rc == ES_ERR_INVALID ? 2 : 1; /* a CONNINFO libpq cannot parse */
  }
  printf("event store schema version %d\n", version);
  return 0;
}
