/* Schema migrations: the numbered SQL files of eventstore/migrations,
 * compiled in, applied in order, each in its own transaction and recorded
 * in es_schema_version. An advisory lock makes concurrent runs safe. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_internal.h"

/* Advisory lock key: "es_migr" in ASCII. */
#define MIGRATE_LOCK "7310868361213554"

int es_schema_version(void) {
  return es__n_migrations ? es__migrations[es__n_migrations - 1].version : 0;
}

/* The length of libpq's message s without its closing newline(s). */
static int line_len(const char *s) {
  size_t n = strlen(s);
  while (n && s[n - 1] == '\n')
    n--;
  return (int)n;
}

static int exec_ok(PGconn *c, const char *sql, char *errbuf, size_t errlen,
                   const char *what) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  int rc = 0;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    rc = es__map_error(c, r);
    if (rc != ES_ERR_CONNECTION)
      rc = ES_ERR_SCHEMA;
    const char *why = PQresultErrorMessage(r);
    es__set_msg(errbuf, errlen, "%s: %.*s", what, line_len(why), why);
  }
  PQclear(r);
  return rc;
}

/* The database's schema version as es_schema_version records it, or -1
 * when that table is not there or cannot be read (the locked path then
 * says why). */
static int recorded_version(PGconn *c) {
  PGresult *r = PQexec(c, "SELECT to_regclass('es_schema_version') IS NOT "
                          "NULL");
  int there = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  if (!there)
    return -1;
  r = PQexec(c, "SELECT coalesce(max(version), 0) FROM es_schema_version");
  int v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
              ? atoi(PQgetvalue(r, 0, 0))
              : -1;
  PQclear(r);
  return v;
}

/* SCHEMA, saying that the database (at version have) is newer than this
 * library. */
static int newer_schema(int have, char *errbuf, size_t errlen) {
  es__set_msg(errbuf, errlen,
              "database schema version %d is newer than this library's %d",
              have, es_schema_version());
  return ES_ERR_SCHEMA;
}

/* The recorded version into *have: true when no migration is due, the
 * schema at target or past it, or newer than this library (*rc SCHEMA,
 * said at once: without the lock or any DDL, which a service's role would
 * be refused first, with the wrong reason); false with *have 0 when
 * migrations are due (or the version could not be read: the DDL that
 * follows says why). */
static bool nothing_due(PGconn *c, int target, int *have, int *rc,
                        char *errbuf, size_t errlen) {
  *have = recorded_version(c);
  if (*have > es_schema_version()) {
    *rc = newer_schema(*have, errbuf, errlen);
    return true;
  }
  if (*have >= target)
    return true;
  *have = 0;
  return false;
}

int es_migrate(const char *conninfo, int *version, char *errbuf,
               size_t errlen) {
  return es_migrate_to(conninfo, es_schema_version(), version, errbuf, errlen);
}

int es_migrate_to(const char *conninfo, int target, int *version,
                  char *errbuf, size_t errlen) {
  if (!conninfo) {
    es__set_msg(errbuf, errlen, "conninfo is required");
    return ES_ERR_INVALID;
  }
  if (target < 1 || target > es_schema_version()) {
    es__set_msg(errbuf, errlen,
                "schema version %d is not one of this library's (1 to %d)",
                target, es_schema_version());
    return ES_ERR_INVALID;
  }
  int rc = es__conninfo_check(conninfo, errbuf, errlen);
  if (rc) {
    if (version)
      *version = 0;
    return rc;
  }
  PGconn *c = PQconnectdb(conninfo);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    const char *why = c ? PQerrorMessage(c) : "out of memory";
    es__set_msg(errbuf, errlen, "could not connect to the database: %.*s",
                line_len(why), why);
    rc = c ? ES_ERR_CONNECTION : ES_ERR_NOMEM;
    if (version)
      *version = 0;
  } else {
    rc = es__migrate_on(c, target, version, errbuf, errlen);
  }
  PQfinish(c);
  return rc;
}

int es__migrate_on(PGconn *c, int target, int *version, char *errbuf,
                   size_t errlen) {
  es__quiet(c);
  int rc = 0, have = 0;
  bool locked = false;
  /* Up to date already: nothing to lock or create, so a role without the
   * right to create tables (es_writer's, a service's) may call this at
   * every start. Versions only grow, so no lock is needed to see it. */
  if (nothing_due(c, target, &have, &rc, errbuf, errlen))
    goto out;
  /* A migration waits for the lock and runs as long as it takes: a
   * statement or lock timeout the caller's conn_defaults set (es_store_open
   * migrates on its own connection) would cancel it half way. */
  if ((rc = exec_ok(c,
                    "SET client_min_messages = warning; "
                    "SET statement_timeout = 0; SET lock_timeout = 0",
                    errbuf, errlen, "could not configure the session")) ||
      (rc = exec_ok(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", errbuf,
                    errlen, "could not take the migration lock")))
    goto out;
  locked = true;
  /* Another run may have brought it up to date while this one waited for
   * the lock: then there is nothing to create either (a role that may not
   * create tables is refused CREATE TABLE IF NOT EXISTS too); or a newer
   * library may have, which is said as before the lock. */
  if (nothing_due(c, target, &have, &rc, errbuf, errlen))
    goto out;
  if ((rc = exec_ok(c,
                    "CREATE TABLE IF NOT EXISTS es_schema_version ("
                    " version int PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    errbuf, errlen, "could not create es_schema_version")))
    goto out;
  PGresult *r =
      PQexec(c, "SELECT coalesce(max(version), 0) FROM es_schema_version");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    const char *why = PQresultErrorMessage(r);
    es__set_msg(errbuf, errlen, "could not read the schema version: %.*s",
                line_len(why), why);
    rc = ES_ERR_SCHEMA;
    PQclear(r);
    goto out;
  }
  have = atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  if (have > es_schema_version()) {
    rc = newer_schema(have, errbuf, errlen);
    goto out;
  }
  for (size_t i = 0; i < es__n_migrations && !rc; i++) {
    const es__migration_t *m = &es__migrations[i];
    if (m->version <= have || m->version > target)
      continue;
    char what[128], rec[160];
    snprintf(what, sizeof what, "migration %s failed", m->name);
    snprintf(rec, sizeof rec,
             "INSERT INTO es_schema_version (version, name) VALUES (%d, '%s')",
             m->version, m->name);
    if ((rc = exec_ok(c, "BEGIN", errbuf, errlen, what)))
      break;
    if ((rc = exec_ok(c, m->sql, errbuf, errlen, what)) ||
        (rc = exec_ok(c, rec, errbuf, errlen, what)) ||
        (rc = exec_ok(c, "COMMIT", errbuf, errlen, what))) {
      PQclear(PQexec(c, "ROLLBACK"));
      break;
    }
    have = m->version;
  }
out:
  if (locked)
    PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")"));
  if (version)
    *version = have;
  return rc;
}
