/* The saga definitions sagactl names steps and replays histories with:
 * the versions sagad recorded in the store (saga_definitions), and the
 * folder of --definitions when one is given. A saga's own recorded
 * version comes first -- it is what the saga ran on --, the folder after
 * (sagas started before sagad recorded definitions). */
#ifndef SAGACTL_CLI_DEFS_H
#define SAGACTL_CLI_DEFS_H

#include <stdint.h>

#include <libpq-fe.h>

#include "cli.h"
#include "definition.h"

typedef struct {
  saga_registry_t *recorded; /* NULL when the store was not read */
  saga_registry_t *folder;   /* NULL without a definitions folder */
} cli_defs_t;

/* Where cli_defs_find found a definition. */
typedef enum {
  CLI_DEF_NONE = 0,
  CLI_DEF_RECORDED, /* the store's saga_definitions */
  CLI_DEF_FOLDER,   /* the definitions folder */
} cli_def_from_t;

/* Load the definitions folder of s (every *.json file; a bad file or an
 * empty folder is an error). Returns a registry (saga_registry_free), or
 * NULL with the line printed and *rc set (CLI_EXIT_USAGE, or
 * CLI_EXIT_FAIL when out of memory). Reads files. */
saga_registry_t *cli_defs_load_folder(const cli_settings_t *s, int *rc);

/* Every definition recorded in the store over c into a new registry
 * (*out; each definition's sha256 is the recorded one). An unreadable
 * recorded body is skipped with a warning line on stderr; a database
 * without saga_definitions yields an empty registry. Returns CLI_EXIT_OK,
 * or CLI_EXIT_FAIL with the line printed (the query failed, out of
 * memory). */
int cli_defs_load_recorded(PGconn *c, saga_registry_t **out);

/* As cli_defs_load_recorded, but the error line goes to why, not stderr
 * (the warnings of skipped bodies still go to stderr): for a caller to
 * whom the recorded definitions are optional (history --archive). */
int cli_defs_read_recorded(PGconn *c, saga_registry_t **out, char *why,
                           size_t len);

/* Fill d: the recorded definitions over c (when c is not NULL) and the
 * folder of s (when one is configured and want_folder). Returns
 * CLI_EXIT_OK, or an exit code with the line printed; d is cleared either
 * way first. Free with cli_defs_clear. */
int cli_defs_open(const cli_settings_t *s, PGconn *c, int want_folder,
                  cli_defs_t *d);

/* The definition name at version: the recorded one, else the folder's;
 * NULL when neither has it. *from (may be NULL) says where. Borrowed:
 * valid until cli_defs_clear. */
const saga_def_t *cli_defs_find(const cli_defs_t *d, const char *name,
                                uint32_t version, cli_def_from_t *from);

/* Free both registries. NULL-safe. */
void cli_defs_clear(cli_defs_t *d);

#endif
