/* saga_index reads. Every statement is bounded by statement_timeout, and
 * the connection by connect_timeout, so an operator command never hangs on
 * a dead server. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_db.h"

static const char *const STATUSES[] = {"running", "compensating",
                                       "completed", "compensated",
                                       "compensation_failed"};

int cli_status_is_known(const char *status) {
  for (size_t i = 0; i < sizeof STATUSES / sizeof *STATUSES; i++)
    if (strcmp(status, STATUSES[i]) == 0)
      return 1;
  return 0;
}

int cli_status_is_terminal(const char *status) {
  return strcmp(status, "completed") == 0 ||
         strcmp(status, "compensated") == 0;
}

void cli_index_row_clear(cli_index_row_t *r) {
  if (r == NULL)
    return;
  free(r->saga_id);
  free(r->saga_type);
  free(r->status);
  free(r->current_step);
  memset(r, 0, sizeof *r);
}

static char *first_line(const char *msg) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s", msg != NULL ? msg : "");
  char *nl = strchr(buf, '\n');
  if (nl != NULL)
    *nl = '\0';
  return buf;
}

int cli_pg(const cli_settings_t *s, cli_pg_t *pg) {
  memset(pg, 0, sizeof *pg);
  pg->conninfo = cli_get(s, CLI_SET_PG);
  if (pg->conninfo == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "no PostgreSQL configured: give --pg CONNINFO, "
                    "SAGA_PG_CONNINFO or \"pg = ...\" in the config file");
  cli_connect_timeout(s->timeout_ms, pg->connect_timeout,
                      sizeof pg->connect_timeout);
  pg->defaults[0] = "connect_timeout";
  pg->defaults[1] = pg->connect_timeout;
  pg->defaults[2] = NULL;
  return CLI_EXIT_OK;
}

int cli_db_connect(const cli_settings_t *s, PGconn **out) {
  *out = NULL;
  cli_pg_t pg;
  int rc = cli_pg(s, &pg);
  if (rc != CLI_EXIT_OK)
    return rc;
  char where[256];
  cli_conninfo_where(pg.conninfo, where, sizeof where);
  const char *const keys[] = {pg.defaults[0], "dbname", NULL};
  const char *const vals[] = {pg.defaults[1], pg.conninfo, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(c) != CONNECTION_OK) {
    rc = cli_fail(CLI_EXIT_UNREACHABLE,
                      "could not connect to PostgreSQL at %s: %s", where,
                      first_line(PQerrorMessage(c)));
    PQfinish(c);
    return rc;
  }
  char sql[96];
  snprintf(sql, sizeof sql, "SET statement_timeout = %" PRId64,
           s->timeout_ms);
  PGresult *r = PQexec(c, sql);
  PQclear(r);
  *out = c;
  return CLI_EXIT_OK;
}

/* Stuck by the saga's own step threshold: sagad writes stuck_at from the
 * stuck_after_ms of the steps it waits on ('infinity' = cannot be); a row
 * written before that column falls back to the definitions' default
 * threshold, 5 min. Parked sagas are stuck. */
#define STUCK_EXPR                                                           \
  "(status = 'compensation_failed' OR (status IN ('running', "              \
  "'compensating') AND coalesce(stuck_at, updated_at + interval "           \
  "'5 minutes') < now()))"

#define ROW_COLUMNS                                                          \
  "saga_id, saga_type, definition_version, status, partition, version, "   \
  "(extract(epoch from started_at) * 1000)::bigint, "                       \
  "(extract(epoch from updated_at) * 1000)::bigint, "                       \
  "coalesce((extract(epoch from next_deadline_at) * 1000)::bigint, 0), "    \
  "current_step, "                                                          \
  "CASE WHEN isfinite(stuck_at) THEN "                                      \
  "(extract(epoch from stuck_at) * 1000)::bigint ELSE 0 END, " STUCK_EXPR

static char *dup_or_null(PGresult *r, int row, int col) {
  if (PQgetisnull(r, row, col))
    return NULL;
  return strdup(PQgetvalue(r, row, col));
}

static int fill_row(PGresult *r, int i, cli_index_row_t *row) {
  memset(row, 0, sizeof *row);
  row->saga_id = dup_or_null(r, i, 0);
  row->saga_type = dup_or_null(r, i, 1);
  row->def_version = atoi(PQgetvalue(r, i, 2));
  row->status = dup_or_null(r, i, 3);
  row->partition = atoi(PQgetvalue(r, i, 4));
  row->version = strtoll(PQgetvalue(r, i, 5), NULL, 10);
  row->started_ms = strtoll(PQgetvalue(r, i, 6), NULL, 10);
  row->updated_ms = strtoll(PQgetvalue(r, i, 7), NULL, 10);
  row->deadline_ms = strtoll(PQgetvalue(r, i, 8), NULL, 10);
  row->current_step = dup_or_null(r, i, 9);
  row->stuck_at_ms = PQgetisnull(r, i, 10)
                         ? 0
                         : strtoll(PQgetvalue(r, i, 10), NULL, 10);
  row->stuck = PQgetvalue(r, i, 11)[0] == 't';
  if (row->saga_id == NULL || row->saga_type == NULL || row->status == NULL) {
    cli_index_row_clear(row);
    return -1;
  }
  return 0;
}

static int query_failed(PGconn *c, PGresult *r, const char *what) {
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (state != NULL && strcmp(state, "42P01") == 0)
    cli_fail(CLI_EXIT_FAIL,
             "could not %s: table saga_index does not exist in this database "
             "(has sagad run against it?)",
             what);
  else
    cli_fail(CLI_EXIT_FAIL, "could not %s: %s", what,
             first_line(PQerrorMessage(c)));
  PQclear(r);
  return -1;
}

int cli_db_get(PGconn *c, const char *saga_id, cli_index_row_t *row) {
  const char *params[1] = {saga_id};
  PGresult *r = PQexecParams(
      c, "SELECT " ROW_COLUMNS " FROM saga_index WHERE saga_id = $1", 1, NULL,
      params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    return query_failed(c, r, "read saga_index");
  int rc = 1;
  if (PQntuples(r) == 1) {
    rc = fill_row(r, 0, row) == 0 ? 0 : -1;
    if (rc < 0)
      cli_fail(CLI_EXIT_FAIL, "out of memory");
  }
  PQclear(r);
  return rc;
}

int cli_db_list(PGconn *c, const cli_list_filter_t *f, cli_index_row_t **rows,
                size_t *n) {
  *rows = NULL;
  *n = 0;
  char older[32], stuck[32], limit[32];
  snprintf(older, sizeof older, "%" PRId64, f->older_than_ms);
  snprintf(stuck, sizeof stuck, "%" PRId64, f->stuck_ms);
  snprintf(limit, sizeof limit, "%" PRIu64, f->limit);
  const char *params[6] = {f->state, f->type,
                           f->older_than_ms >= 0 ? older : NULL,
                           f->stuck_ms >= 0 ? stuck : NULL, limit,
                           f->stuck_own ? "t" : "f"};
  PGresult *r = PQexecParams(
      c,
      "SELECT " ROW_COLUMNS " FROM saga_index"
      " WHERE ($1::text IS NULL OR status = $1)"
      " AND ($2::text IS NULL OR saga_type = $2)"
      " AND ($3::bigint IS NULL OR"
      "      started_at < now() - make_interval(secs => $3::bigint / 1000.0))"
      " AND ($4::bigint IS NULL OR"
      "      (status NOT IN ('completed', 'compensated') AND"
      "       updated_at < now() - make_interval(secs => $4::bigint / 1000.0)))"
      " AND (NOT $6::bool OR " STUCK_EXPR ")"
      " ORDER BY updated_at, saga_id LIMIT $5::bigint",
      6, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    return query_failed(c, r, "list saga_index");
  int nt = PQntuples(r);
  cli_index_row_t *out = calloc(nt > 0 ? (size_t)nt : 1, sizeof *out);
  if (out == NULL) {
    PQclear(r);
    cli_fail(CLI_EXIT_FAIL, "out of memory");
    return -1;
  }
  for (int i = 0; i < nt; i++) {
    if (fill_row(r, i, &out[i]) != 0) {
      for (int j = 0; j < i; j++)
        cli_index_row_clear(&out[j]);
      free(out);
      PQclear(r);
      cli_fail(CLI_EXIT_FAIL, "out of memory");
      return -1;
    }
  }
  PQclear(r);
  *rows = out;
  *n = (size_t)nt;
  return 0;
}

int cli_db_fetch(const cli_settings_t *s, const char *saga_id,
                 cli_index_row_t *row) {
  PGconn *c = NULL;
  int rc = cli_db_connect(s, &c);
  if (rc != CLI_EXIT_OK)
    return rc;
  int found = cli_db_get(c, saga_id, row);
  PQfinish(c);
  if (found < 0)
    return CLI_EXIT_FAIL;
  if (found == 1)
    return cli_fail(CLI_EXIT_FAIL, "saga \"%s\" not found in saga_index",
                    saga_id);
  return CLI_EXIT_OK;
}
