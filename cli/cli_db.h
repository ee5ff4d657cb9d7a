/* sagactl's reads of saga_index (the coordinator's derived table, see
 * docs/internals/coordinator.md) over libpq, with bounded connect and
 * statement timeouts, and the diagnosis of a database without the tables
 * of this release. Blocking; sagactl only reads. */
#ifndef SAGACTL_CLI_DB_H
#define SAGACTL_CLI_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cli.h"
#include "index_query.h"

/* One saga_index row; strings owned by the row (cli_index_row_clear). */
typedef struct cli_index_row {
  char *saga_id, *saga_type, *status, *current_step; /* current_step may be
                                                         NULL */
  int def_version, partition;
  int64_t version;
  int64_t started_ms, updated_ms, deadline_ms; /* deadline 0 = none */
  bool stuck; /* cli_db_list's: by its thresholds; cli_db_get's: by the
                 default threshold only */
} cli_index_row_t;

void cli_index_row_clear(cli_index_row_t *r);

/* Connect to settings' pg within its timeout and set a statement timeout.
 * Returns CLI_EXIT_OK with *out, CLI_EXIT_USAGE (no conninfo configured,
 * or one libpq refuses before connecting: cli_pg), or
 * CLI_EXIT_UNREACHABLE; the error line is printed. */
int cli_db_connect(const cli_settings_t *s, PGconn **out);

/* As cli_db_connect, but a server that cannot be reached is not printed:
 * CLI_EXIT_UNREACHABLE with why ("could not connect to PostgreSQL at
 * HOST:PORT database DB: ..."). A missing or unusable conninfo is still
 * printed (CLI_EXIT_USAGE): for a caller to whom the database is
 * optional (history --archive). */
int cli_db_connect_quiet(const cli_settings_t *s, PGconn **out, char *why,
                         size_t len);

/* "database DB at HOST:PORT" of c's connection, for messages, into buf.
 * Returns buf. */
char *cli_db_where(PGconn *c, char *buf, size_t len);

/* Why the event store of s could not be opened with ES_ERR_SCHEMA, in
 * words an operator can act on: the database has no event store (no
 * es_schema_version), or records none, or a schema version older or newer
 * than this sagactl reads -- naming the database and saying what to run
 * (saga-es-migrate). Connects to find out. Returns 1 with the line in why
 * (without "sagactl: "), or 0 when it cannot tell (why untouched). */
int cli_db_store_schema_problem(const cli_settings_t *s, char *why,
                                size_t len);

/* What sagactl connects to PostgreSQL with: settings' pg conninfo, and
 * libpq defaults under it as keyword/value pairs ending with NULL
 * (es_store_opts_t.conn_defaults' form): connect_timeout and (as libpq's
 * options) statement_timeout from the timeout setting. The conninfo's own settings win (PQconnectdbParams with
 * expand_dbname): nothing rewrites the conninfo. */
typedef struct {
  const char *conninfo;
  char connect_timeout[24];
  char options[48]; /* "-c statement_timeout=MS" */
  const char *defaults[5];
} cli_pg_t;

/* Fill pg from settings. Returns CLI_EXIT_OK, or CLI_EXIT_USAGE when no
 * conninfo is configured or it is not one (cli_conninfo_check; the line
 * names where it came from: "--pg: ..."), line printed. */
int cli_pg(const cli_settings_t *s, cli_pg_t *pg);

/* Connect, read saga_id's row, disconnect. Returns CLI_EXIT_OK with *row
 * filled (cli_index_row_clear), or an exit code with the line printed
 * (CLI_EXIT_FAIL when the saga is not in the index). */
int cli_db_fetch(const cli_settings_t *s, const char *saga_id,
                 cli_index_row_t *row);

/* The row of saga_id. Returns 0 (found), 1 (no such saga) or -1 (error
 * printed). */
int cli_db_get(PGconn *c, const char *saga_id, cli_index_row_t *row);

/* A page of a list: its rows (free with cli_list_clear), how many sagas
 * match whatever the page (when counted), and the token of the next page
 * ("" on the last one). */
typedef struct {
  cli_index_row_t *rows;
  size_t n;
  uint64_t total;
  char next[IQ_CURSOR_SIZE];
} cli_list_t;

/* The page f asks for (index_query.h: its filters, order, cursor and
 * limit), stuck judged by st (NULL: the default threshold), and with count
 * the total of f's matches. Returns 0 with *out filled, or -1 (error
 * printed). */
int cli_db_list(PGconn *c, const iq_filter_t *f, const iq_stuck_t *st,
                int count, cli_list_t *out);

/* Free a page's rows. NULL-safe. */
void cli_list_clear(cli_list_t *l);

#endif
