/* sagactl's reads of saga_index (the coordinator's derived table, see
 * docs/internals/coordinator.md) over libpq, with bounded connect and
 * statement timeouts. Blocking; sagactl only reads the table. */
#ifndef SAGACTL_CLI_DB_H
#define SAGACTL_CLI_DB_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cli.h"

/* One saga_index row; strings owned by the row (cli_index_row_clear). */
typedef struct cli_index_row {
  char *saga_id, *saga_type, *status, *current_step; /* current_step may be
                                                         NULL */
  int def_version, partition;
  int64_t version;
  int64_t started_ms, updated_ms, deadline_ms; /* deadline 0 = none */
  int64_t stuck_at_ms; /* stuck after this (its step's own stuck_after_ms);
                          0 = never as it stands, or not recorded */
  int stuck;           /* stuck now (parked, or past stuck_at) */
} cli_index_row_t;

void cli_index_row_clear(cli_index_row_t *r);

/* Connect to settings' pg within its timeout and set a statement timeout.
 * Returns CLI_EXIT_OK with *out, CLI_EXIT_USAGE (no conninfo configured),
 * or CLI_EXIT_UNREACHABLE; the error line is printed. */
int cli_db_connect(const cli_settings_t *s, PGconn **out);

/* What sagactl connects to PostgreSQL with: settings' pg conninfo, and
 * libpq defaults under it as keyword/value pairs ending with NULL
 * (es_store_opts_t.conn_defaults' form): connect_timeout from the timeout
 * setting. The conninfo's own settings win (PQconnectdbParams with
 * expand_dbname): nothing rewrites the conninfo. */
typedef struct {
  const char *conninfo;
  char connect_timeout[24];
  const char *defaults[3];
} cli_pg_t;

/* Fill pg from settings. Returns CLI_EXIT_OK, or CLI_EXIT_USAGE when no
 * conninfo is configured (line printed). */
int cli_pg(const cli_settings_t *s, cli_pg_t *pg);

/* Connect, read saga_id's row, disconnect. Returns CLI_EXIT_OK with *row
 * filled (cli_index_row_clear), or an exit code with the line printed
 * (CLI_EXIT_FAIL when the saga is not in the index). */
int cli_db_fetch(const cli_settings_t *s, const char *saga_id,
                 cli_index_row_t *row);

/* The row of saga_id. Returns 0 (found), 1 (no such saga) or -1 (error
 * printed). */
int cli_db_get(PGconn *c, const char *saga_id, cli_index_row_t *row);

typedef struct cli_list_filter {
  const char *state;       /* NULL = any */
  const char *type;        /* NULL = any */
  int64_t older_than_ms;   /* started more than this ago; -1 = any */
  int64_t stuck_ms;        /* non-terminal, no progress for this; -1 = any */
  int stuck_own;           /* only sagas stuck by their own step's
                              threshold (row.stuck) */
  uint64_t limit;          /* rows */
} cli_list_filter_t;

/* Rows matching f, oldest progress first, into *rows (malloc'd array of
 * *n rows; free each with cli_index_row_clear, then the array). Returns 0
 * or -1 (error printed). */
int cli_db_list(PGconn *c, const cli_list_filter_t *f, cli_index_row_t **rows,
                size_t *n);

/* True for the status names the coordinator writes. */
int cli_status_is_known(const char *status);
/* True for completed and compensated. */
int cli_status_is_terminal(const char *status);

#endif
