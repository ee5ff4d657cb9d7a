/* Idempotency stores for the participant (saga/client.h): in memory, and a
 * table in the participant's own PostgreSQL database. Both answer their
 * callbacks synchronously on the calling (loop) thread. A key keeps a
 * SUCCESS, and any reply to the same or a later attempt; a FAILURE or
 * RETRYABLE of an earlier attempt (nothing applied) gives way to the new
 * one. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "saga/client.h"

/* ---- in memory: a chained hash table ---- */

typedef struct mem_entry {
  char *key;
  saga_outcome_t outcome;
  void *payload;
  size_t payload_len;
  char *reason;
  uint32_t attempt;
  struct mem_entry *next;
} mem_entry_t;

#define MEM_BUCKETS 1024

typedef struct mem_store {
  mem_entry_t *b[MEM_BUCKETS];
} mem_store_t;

static size_t hash(const char *s) {
  size_t h = 1469598103934665603u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h % MEM_BUCKETS;
}

static mem_entry_t *mem_find(mem_store_t *m, const char *key) {
  for (mem_entry_t *e = m->b[hash(key)]; e; e = e->next)
    if (!strcmp(e->key, key))
      return e;
  return NULL;
}

static void mem_lookup(void *ctx, const char *key, saga_store_lookup_cb cb,
                       void *arg) {
  mem_entry_t *e = mem_find(ctx, key);
  if (!e) {
    cb(arg, 0, 0, NULL);
    return;
  }
  saga_recorded_reply_t r = {e->outcome, e->payload, e->payload_len,
                             e->reason, e->attempt};
  cb(arg, 0, 1, &r);
}

static void mem_entry_free(mem_entry_t *e) {
  if (!e)
    return;
  free(e->key);
  free(e->payload);
  free(e->reason);
  free(e);
}

/* Copy r's reply into e, freeing what e held; 0 or SAGA_ENOMEM (e as it
 * was). */
static int mem_entry_set(mem_entry_t *e, const saga_recorded_reply_t *r) {
  void *payload = NULL;
  char *reason = NULL;
  if ((r->payload_len && !(payload = malloc(r->payload_len))) ||
      (r->reason && !(reason = strdup(r->reason)))) {
    free(payload);
    return SAGA_ENOMEM;
  }
  if (r->payload_len)
    memcpy(payload, r->payload, r->payload_len);
  free(e->payload);
  free(e->reason);
  e->payload = payload;
  e->payload_len = r->payload_len;
  e->reason = reason;
  e->outcome = r->outcome;
  e->attempt = r->attempt;
  return 0;
}

static void mem_record(void *ctx, const char *key,
                       const saga_recorded_reply_t *r, saga_store_record_cb cb,
                       void *arg) {
  mem_store_t *m = ctx;
  mem_entry_t *old = mem_find(m, key);
  if (old) {
    int keep = old->outcome == SAGA_OUTCOME_SUCCESS ||
               old->attempt >= r->attempt;
    cb(arg, keep ? 0 : mem_entry_set(old, r));
    return;
  }
  mem_entry_t *e = calloc(1, sizeof *e);
  if (!e || !(e->key = strdup(key)) || mem_entry_set(e, r) != 0) {
    mem_entry_free(e);
    cb(arg, SAGA_ENOMEM);
    return;
  }
  size_t h = hash(key);
  e->next = m->b[h];
  m->b[h] = e;
  cb(arg, 0);
}

static void mem_destroy(void *ctx) {
  mem_store_t *m = ctx;
  for (size_t i = 0; i < MEM_BUCKETS; i++) {
    mem_entry_t *e = m->b[i];
    while (e) {
      mem_entry_t *n = e->next;
      mem_entry_free(e);
      e = n;
    }
  }
  free(m);
}

int saga_idem_store_memory(saga_idem_store_t *out) {
  if (!out)
    return SAGA_EINVAL;
  mem_store_t *m = calloc(1, sizeof *m);
  if (!m)
    return SAGA_ENOMEM;
  *out = (saga_idem_store_t){.ctx = m,
                             .lookup = mem_lookup,
                             .record = mem_record,
                             .destroy = mem_destroy};
  return 0;
}

/* ---- PostgreSQL ---- */

/* The library never logs, and PostgreSQL answers "IF NOT EXISTS" on an
 * existing table or column with a NOTICE that libpq prints on stderr: so
 * look first, and run only the DDL that has work to do. */
static const char exists_sql[] =
    "SELECT t.oid IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute a"
    " WHERE a.attrelid = t.oid AND a.attname = 'attempt'"
    " AND NOT a.attisdropped)"
    " FROM (SELECT to_regclass('saga_idempotency') AS oid) t";

static const char create_sql[] =
    "CREATE TABLE IF NOT EXISTS saga_idempotency ("
    " key text PRIMARY KEY,"
    " outcome smallint NOT NULL CHECK (outcome BETWEEN 1 AND 3),"
    " payload bytea NOT NULL DEFAULT ''::bytea,"
    " reason text,"
    " recorded_at timestamptz NOT NULL DEFAULT now(),"
    " attempt integer NOT NULL DEFAULT 0)";

/* a table made before replies were recorded by effect and attempt */
static const char upgrade_sql[] =
    "ALTER TABLE saga_idempotency"
    " ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0";

static const char insert_sql[] =
    "INSERT INTO saga_idempotency (key, outcome, payload, reason, attempt)"
    " VALUES ($1, $2::smallint, $3, $4, $5::integer)"
    " ON CONFLICT (key) DO UPDATE SET"
    " outcome = EXCLUDED.outcome, payload = EXCLUDED.payload,"
    " reason = EXCLUDED.reason, attempt = EXCLUDED.attempt,"
    " recorded_at = now()"
    /* SUCCESS (1) stays: the effect was applied */
    " WHERE saga_idempotency.outcome <> 1"
    " AND saga_idempotency.attempt < EXCLUDED.attempt";

static int pg_fail(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int pg_fail(char *errbuf, size_t errlen, const char *fmt, ...) {
  if (errbuf && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    /* libpq messages end in a newline: one line is enough */
    char *nl = strchr(errbuf, '\n');
    if (nl)
      *nl = '\0';
  }
  return SAGA_ESTORE;
}

static void pg_lookup(void *ctx, const char *key, saga_store_lookup_cb cb,
                      void *arg) {
  const char *params[1] = {key};
  PGresult *r = PQexecParams(
      ctx,
      "SELECT outcome, payload, reason, attempt FROM saga_idempotency"
      " WHERE key = $1",
      1, NULL, params, NULL, NULL, 1 /* binary results */);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    cb(arg, SAGA_ESTORE, 0, NULL);
    return;
  }
  if (PQntuples(r) == 0) {
    PQclear(r);
    cb(arg, 0, 0, NULL);
    return;
  }
  const unsigned char *o = (const unsigned char *)PQgetvalue(r, 0, 0);
  const unsigned char *a = (const unsigned char *)PQgetvalue(r, 0, 3);
  saga_recorded_reply_t rep = {
      .outcome = (saga_outcome_t)((o[0] << 8) | o[1]),
      .payload = PQgetvalue(r, 0, 1),
      .payload_len = (size_t)PQgetlength(r, 0, 1),
      .reason = PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2),
      .attempt = ((uint32_t)a[0] << 24) | ((uint32_t)a[1] << 16) |
                 ((uint32_t)a[2] << 8) | a[3],
  };
  cb(arg, 0, 1, &rep);
  PQclear(r);
}

int saga_pg_record_in_transaction(void *pgconn, const char *key,
                                  const saga_recorded_reply_t *reply,
                                  char *errbuf, size_t errlen) {
  if (!pgconn || !key || !reply)
    return pg_fail(errbuf, errlen, "invalid argument");
  char outcome[8], attempt[16];
  snprintf(outcome, sizeof outcome, "%d", (int)reply->outcome);
  snprintf(attempt, sizeof attempt, "%u", reply->attempt);
  const char *params[5] = {key, outcome,
                           reply->payload ? reply->payload : "",
                           reply->reason, attempt};
  int lengths[5] = {0, 0, (int)reply->payload_len, 0, 0};
  int formats[5] = {0, 0, 1, 0, 0};
  PGresult *r = PQexecParams(pgconn, insert_sql, 5, NULL, params, lengths,
                             formats, 0);
  int rc = 0;
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    rc = pg_fail(errbuf, errlen,
                 "could not record idempotency key \"%s\": %s", key,
                 PQerrorMessage(pgconn));
  PQclear(r);
  return rc;
}

static void pg_record(void *ctx, const char *key,
                      const saga_recorded_reply_t *reply,
                      saga_store_record_cb cb, void *arg) {
  cb(arg, saga_pg_record_in_transaction(ctx, key, reply, NULL, 0));
}

int saga_idem_store_pg(void *pgconn, saga_idem_store_t *out, char *errbuf,
                       size_t errlen) {
  if (!pgconn || !out || PQstatus(pgconn) != CONNECTION_OK)
    return pg_fail(errbuf, errlen, "idempotency store needs an open "
                                   "PostgreSQL connection");
  PGresult *r = PQexec(pgconn, exists_sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    int rc = pg_fail(errbuf, errlen,
                     "could not look for table \"saga_idempotency\": %s",
                     PQerrorMessage(pgconn));
    PQclear(r);
    return rc;
  }
  int have_table = PQgetvalue(r, 0, 0)[0] == 't';
  int have_attempt = PQgetvalue(r, 0, 1)[0] == 't';
  PQclear(r);
  const char *ddl = !have_table     ? create_sql
                    : !have_attempt ? upgrade_sql
                                    : NULL;
  if (ddl) {
    r = PQexec(pgconn, ddl);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      rc = pg_fail(errbuf, errlen,
                   "could not %s table \"saga_idempotency\": %s",
                   ddl == create_sql ? "create" : "upgrade",
                   PQerrorMessage(pgconn));
    PQclear(r);
    if (rc)
      return rc;
  }
  *out = (saga_idem_store_t){
      .ctx = pgconn, .lookup = pg_lookup, .record = pg_record, .destroy = NULL};
  return 0;
}
