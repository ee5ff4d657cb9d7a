/* saga_index reads, and what is wrong with a database whose tables are
 * missing or of another release. Every statement is bounded by
 * statement_timeout, and the connection by connect_timeout, so an
 * operator command never hangs on a dead server. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/eventstore.h"

#include "cli_db.h"

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
  /* an empty --pg or "pg =" is no setting, as an empty SAGA_PG_CONNINFO
   * is none: libpq would take it for its own defaults (whatever the PG*
   * variables or the local socket point at) */
  if (pg->conninfo != NULL && pg->conninfo[0] == '\0')
    return cli_fail(CLI_EXIT_USAGE,
                    "%s is empty: give a PostgreSQL conninfo (a \"host=... "
                    "dbname=...\" string or a postgresql:// URI)",
                    s->source[CLI_SET_PG]);
  if (pg->conninfo == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "no PostgreSQL configured: give --pg CONNINFO, "
                    "SAGA_PG_CONNINFO or \"pg = ...\" in the config file");
  /* What libpq refuses before connecting is the setting's fault, not an
   * unreachable server's. */
  char why[256];
  if (cli_conninfo_check(pg->conninfo, why, sizeof why) != 0)
    return cli_fail(CLI_EXIT_USAGE, "%s: not a usable conninfo: %s",
                    s->source[CLI_SET_PG], why);
  cli_connect_timeout(s->timeout_ms, pg->connect_timeout,
                      sizeof pg->connect_timeout);
  pg->defaults[0] = "connect_timeout";
  pg->defaults[1] = pg->connect_timeout;
  /* every statement bounded too, on the event store's connections as on
   * saga_index's (cli_db_connect_quiet) */
  snprintf(pg->options, sizeof pg->options, "-c statement_timeout=%" PRId64,
           s->timeout_ms);
  pg->defaults[2] = "options";
  pg->defaults[3] = pg->options;
  pg->defaults[4] = NULL;
  return CLI_EXIT_OK;
}

int cli_db_connect_quiet(const cli_settings_t *s, PGconn **out, char *why,
                         size_t len) {
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
    snprintf(why, len, "could not connect to PostgreSQL at %s: %s", where,
             first_line(PQerrorMessage(c)));
    PQfinish(c);
    return CLI_EXIT_UNREACHABLE;
  }
  char sql[96];
  snprintf(sql, sizeof sql, "SET statement_timeout = %" PRId64,
           s->timeout_ms);
  PGresult *r = PQexec(c, sql);
  PQclear(r);
  *out = c;
  return CLI_EXIT_OK;
}

int cli_db_connect(const cli_settings_t *s, PGconn **out) {
  char why[1024];
  int rc = cli_db_connect_quiet(s, out, why, sizeof why);
  if (rc == CLI_EXIT_UNREACHABLE)
    cli_fail(rc, "%s", why);
  return rc;
}

char *cli_db_where(PGconn *c, char *buf, size_t len) {
  const char *db = PQdb(c), *host = PQhost(c), *port = PQport(c);
  snprintf(buf, len, "database %s at %s%s%s", db != NULL ? db : "?",
           host != NULL && *host != '\0' ? host : "(default host)",
           port != NULL && *port != '\0' ? ":" : "",
           port != NULL ? port : "");
  return buf;
}

int cli_db_store_schema_problem(const cli_settings_t *s, char *why,
                                size_t len) {
  PGconn *c = NULL;
  char unreached[1024];
  if (cli_db_connect_quiet(s, &c, unreached, sizeof unreached) != CLI_EXIT_OK)
    return 0;
  char where[384];
  cli_db_where(c, where, sizeof where);
  const char *conninfo_from = s->source[CLI_SET_PG];
  int told = 0;
  PGresult *r = PQexec(c, "SELECT to_regclass('es_schema_version') IS NULL");
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
      PQgetvalue(r, 0, 0)[0] == 't') {
    snprintf(why, len,
             "%s has no event store (no table es_schema_version): create it "
             "with sagad --migrate (or saga-es-migrate), or check that "
             "%s names the database sagad writes to",
             where, conninfo_from != NULL ? conninfo_from : "the conninfo");
    told = 1;
  }
  PQclear(r);
  if (told) {
    PQfinish(c);
    return 1;
  }
  /* The table is there: its newest version says older or newer. Anything
   * else (a role that may not read it) is left to the store's own text. */
  r = PQexec(c, "SELECT max(version) FROM es_schema_version");
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    int want = es_schema_version();
    if (PQgetisnull(r, 0, 0)) {
      snprintf(why, len,
               "the event store in %s records no schema version "
               "(es_schema_version is empty): run sagad --migrate (or "
               "saga-es-migrate) against it",
               where);
      told = 1;
    } else {
      long have = strtol(PQgetvalue(r, 0, 0), NULL, 10);
      if (have < want)
        snprintf(why, len,
                 "the event store in %s has schema version %ld, older than "
                 "the %d this sagactl reads: upgrade it with sagad --migrate "
                 "of this release (or its saga-es-migrate)",
                 where, have, want);
      else if (have > want)
        snprintf(why, len,
                 "the event store in %s has schema version %ld, newer than "
                 "the %d this sagactl reads: use the sagactl of the release "
                 "that migrated it",
                 where, have, want);
      told = have != want;
    }
  }
  PQclear(r);
  PQfinish(c);
  return told;
}

static const iq_stuck_t DEFAULT_STUCK = {.default_ms = IQ_STUCK_DEFAULT_MS};

static char *dup_or_null(PGresult *r, int row, int col) {
  if (PQgetisnull(r, row, col))
    return NULL;
  return strdup(PQgetvalue(r, row, col));
}

static int64_t col_i64(PGresult *r, int row, iq_col_t col) {
  return PQgetisnull(r, row, (int)col)
             ? 0
             : strtoll(PQgetvalue(r, row, (int)col), NULL, 10);
}

static int fill_row(PGresult *r, int i, cli_index_row_t *row) {
  memset(row, 0, sizeof *row);
  row->saga_id = dup_or_null(r, i, IQ_COL_SAGA_ID);
  row->saga_type = dup_or_null(r, i, IQ_COL_SAGA_TYPE);
  row->def_version = (int)col_i64(r, i, IQ_COL_DEFINITION_VERSION);
  row->status = dup_or_null(r, i, IQ_COL_STATUS);
  row->partition = (int)col_i64(r, i, IQ_COL_PARTITION);
  row->version = col_i64(r, i, IQ_COL_VERSION);
  row->started_ms = col_i64(r, i, IQ_COL_STARTED_MS);
  row->updated_ms = col_i64(r, i, IQ_COL_UPDATED_MS);
  row->deadline_ms = col_i64(r, i, IQ_COL_NEXT_DEADLINE_MS);
  row->current_step = dup_or_null(r, i, IQ_COL_CURRENT_STEP);
  row->stuck = PQgetvalue(r, i, IQ_COL_STUCK)[0] == 't';
  if (row->saga_id == NULL || row->saga_type == NULL || row->status == NULL) {
    cli_index_row_clear(row);
    return -1;
  }
  return 0;
}

static int query_failed(PGconn *c, PGresult *r, const char *what) {
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  char where[384];
  cli_db_where(c, where, sizeof where);
  if (state != NULL && strcmp(state, "42P01") == 0)
    cli_fail(CLI_EXIT_FAIL,
             "could not %s: %s has no table saga_index (has sagad run "
             "against it?)",
             what, where);
  else if (state != NULL && strcmp(state, "42703") == 0)
    /* a column added by a later migration of sagad (stuck_at) */
    cli_fail(CLI_EXIT_FAIL,
             "could not %s: table saga_index in %s is older than this "
             "sagactl reads (%s): start this release's sagad against it, "
             "which upgrades its tables at start",
             what, where, primary != NULL ? primary : "a column is missing");
  else
    cli_fail(CLI_EXIT_FAIL, "could not %s: %s", what,
             first_line(PQerrorMessage(c)));
  PQclear(r);
  return -1;
}

static PGresult *exec(PGconn *c, const iq_stmt_t *q) {
  return PQexecParams(c, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
}

int cli_db_get(PGconn *c, const char *saga_id, cli_index_row_t *row) {
  iq_stmt_t q;
  if (iq_get(saga_id, &DEFAULT_STUCK, &q) != 0)
    return 1; /* longer than any saga id: no such saga */
  PGresult *r = exec(c, &q);
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

void cli_list_clear(cli_list_t *l) {
  if (l == NULL)
    return;
  for (size_t i = 0; l->rows != NULL && i < l->n; i++)
    cli_index_row_clear(&l->rows[i]);
  free(l->rows);
  memset(l, 0, sizeof *l);
}

static int fill_list(PGresult *r, uint64_t limit, cli_list_t *out) {
  size_t nt = (size_t)PQntuples(r);
  size_t n = nt > limit ? (size_t)limit : nt;
  out->rows = calloc(n > 0 ? n : 1, sizeof *out->rows);
  if (out->rows == NULL)
    return -1;
  for (; out->n < n; out->n++)
    if (fill_row(r, (int)out->n, &out->rows[out->n]) != 0)
      return -1;
  if (nt > n && n > 0 &&
      iq_cursor_encode(PQgetvalue(r, (int)n - 1, IQ_COL_STARTED_US),
                       PQgetvalue(r, (int)n - 1, IQ_COL_SAGA_ID), out->next,
                       sizeof out->next) != 0)
    return -1;
  return 0;
}

int cli_db_list(PGconn *c, const iq_filter_t *f, const iq_stuck_t *st,
                int count, cli_list_t *out) {
  memset(out, 0, sizeof *out);
  iq_stmt_t q;
  if (iq_list(f, st != NULL ? st : &DEFAULT_STUCK, &q) != 0) {
    cli_fail(CLI_EXIT_USAGE, "list: invalid filter");
    return -1;
  }
  PGresult *r = exec(c, &q);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    return query_failed(c, r, "list saga_index");
  int rc = fill_list(r, f->limit, out);
  PQclear(r);
  if (rc != 0) {
    cli_list_clear(out);
    cli_fail(CLI_EXIT_FAIL, "out of memory");
    return -1;
  }
  if (!count)
    return 0;
  (void)iq_count(f, st != NULL ? st : &DEFAULT_STUCK, &q); /* iq_list took f */
  r = exec(c, &q);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    cli_list_clear(out);
    return query_failed(c, r, "count saga_index");
  }
  out->total = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
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
