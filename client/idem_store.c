/* Idempotency stores for the participant (saga/client.h): in memory, and a
 * table in the participant's own PostgreSQL database. Both answer their
 * callbacks synchronously on the calling (loop) thread, and a failure's
 * text waits in the store for last_error until its next call. A key keeps a
 * SUCCESS, and any reply to the same or a later attempt; a FAILURE or
 * RETRYABLE of an earlier attempt (nothing applied) gives way to the new
 * one. The PostgreSQL store prepares its two statements once per session
 * of its connection: a command costs two round trips (lookup, then the
 * record's durable commit) and no parsing or planning. */
#include <stdarg.h>
#include <stdint.h>
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
  char msg[320]; /* the last call's failure, "" when it succeeded */
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
  ((mem_store_t *)ctx)->msg[0] = '\0';
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
  m->msg[0] = '\0';
  if (!key || !r || (!r->payload && r->payload_len)) {
    /* a length without bytes: nothing to copy */
    snprintf(m->msg, sizeof m->msg,
             "could not record idempotency key \"%.200s\": %s",
             key ? key : "(null)",
             !r ? "no reply given" : "payload is NULL with a length");
    cb(arg, SAGA_EINVAL);
    return;
  }
  mem_entry_t *old = mem_find(m, key);
  if (old) {
    int keep = old->outcome == SAGA_OUTCOME_SUCCESS ||
               old->attempt >= r->attempt;
    int rc = keep ? 0 : mem_entry_set(old, r);
    if (rc)
      snprintf(m->msg, sizeof m->msg,
               "could not record idempotency key \"%.200s\": out of memory",
               key);
    cb(arg, rc);
    return;
  }
  mem_entry_t *e = calloc(1, sizeof *e);
  if (!e || !(e->key = strdup(key)) || mem_entry_set(e, r) != 0) {
    mem_entry_free(e);
    snprintf(m->msg, sizeof m->msg,
             "could not record idempotency key \"%.200s\": out of memory",
             key);
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

static const char *mem_last_error(void *ctx) {
  return ((mem_store_t *)ctx)->msg;
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
                             .destroy = mem_destroy,
                             .last_error = mem_last_error};
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

/* The store's two statements. Their numbers and bytes go binary, with
 * the types named here: no text rendering and no cast. */
enum { PG_LOOKUP, PG_RECORD, PG_NSTMT };

static const char *const stmt_sql[PG_NSTMT] = {
    "SELECT outcome, payload, reason, attempt FROM saga_idempotency"
    " WHERE key = $1",
    "INSERT INTO saga_idempotency (key, outcome, payload, reason, attempt)"
    " VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (key) DO UPDATE SET"
    " outcome = EXCLUDED.outcome, payload = EXCLUDED.payload,"
    " reason = EXCLUDED.reason, attempt = EXCLUDED.attempt,"
    " recorded_at = now()"
    /* SUCCESS (1) stays: the effect was applied */
    " WHERE saga_idempotency.outcome <> 1"
    " AND saga_idempotency.attempt < EXCLUDED.attempt"};

#define OID_BYTEA 17
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
static const Oid lookup_types[1] = {OID_TEXT};
/* key, outcome, payload, reason, attempt */
static const Oid record_types[5] = {OID_TEXT, OID_INT2, OID_BYTEA, OID_TEXT,
                                    OID_INT4};
static const int stmt_nparams[PG_NSTMT] = {1, 5};
static const Oid *const stmt_types[PG_NSTMT] = {lookup_types, record_types};

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

/* The parameters of a record, pointing into the struct itself. */
typedef struct record_params {
  const char *v[5];
  int len[5];
  int fmt[5];
  unsigned char outcome[2], attempt[4];
} record_params_t;

/* Fill p for key -> r: 0, or SAGA_ESTORE (text in errbuf) for a reply
 * that has no place in the table (an outcome that is not one, an attempt
 * past the integer column). */
static int record_params(record_params_t *p, const char *key,
                         const saga_recorded_reply_t *r, char *errbuf,
                         size_t errlen) {
  if (r->outcome < SAGA_OUTCOME_SUCCESS || r->outcome > SAGA_OUTCOME_RETRYABLE)
    return pg_fail(errbuf, errlen,
                   "could not record idempotency key \"%s\": outcome %d is "
                   "not SUCCESS, FAILURE or RETRYABLE",
                   key, (int)r->outcome);
  if (!r->payload && r->payload_len)
    return pg_fail(errbuf, errlen,
                   "could not record idempotency key \"%s\": payload is NULL "
                   "with a length of %zu bytes",
                   key, r->payload_len);
  if (r->payload_len > INT32_MAX)
    return pg_fail(errbuf, errlen,
                   "could not record idempotency key \"%s\": payload of %zu "
                   "bytes is past what one parameter can carry (%d)",
                   key, r->payload_len, INT32_MAX);
  if (r->attempt > INT32_MAX)
    return pg_fail(errbuf, errlen,
                   "could not record idempotency key \"%s\": attempt %u is "
                   "past the attempt column's range (%d)",
                   key, r->attempt, INT32_MAX);
  uint32_t o = (uint32_t)r->outcome, a = r->attempt;
  *p = (record_params_t){
      .len = {0, 2, (int)r->payload_len, 0, 4},
      .fmt = {0, 1, 1, 0, 1},
      .outcome = {(unsigned char)(o >> 8), (unsigned char)o},
      .attempt = {(unsigned char)(a >> 24), (unsigned char)(a >> 16),
                  (unsigned char)(a >> 8), (unsigned char)a},
  };
  p->v[0] = key;
  p->v[1] = (const char *)p->outcome;
  p->v[2] = r->payload ? r->payload : "";
  p->v[3] = r->reason;
  p->v[4] = (const char *)p->attempt;
  return 0;
}

/* A store: its connection (borrowed) and its statements, prepared in the
 * connection's session on first use. */
typedef struct pg_store {
  PGconn *conn;
  int session; /* PQbackendPID of the session prepared[] is about */
  int unnamed; /* the session cannot keep our statements: never
                  prepare again */
  int prepared[PG_NSTMT];
  char name[PG_NSTMT][48];
  char msg[1024]; /* the last call's failure, "" when it succeeded */
} pg_store_t;

static int sqlstate_is(const PGresult *r, const char *code) {
  const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return st && !strcmp(st, code);
}

/* Run statement `which` on the store's connection. Outside a transaction
 * block it runs prepared, preparing it first in a session that has not
 * got it (a new store, a connection reset since); a session that lost it
 * (DEALLOCATE, a new session under a recycled process id) prepares it
 * again, once. Inside a transaction block (one a caller left open) it
 * runs unnamed, as a one-off: no error of the store's own can abort that
 * transaction. A store whose statement is gone right after it prepared
 * it, or whose name is taken (a pooler that moves the session between
 * server connections), runs unnamed from then on. */
static PGresult *pg_exec(pg_store_t *s, int which, const char *const *v,
                         const int *len, const int *fmt, int binary) {
  PGconn *c = s->conn;
  for (int fresh = 0;; fresh = 1) {
    if (s->unnamed || PQtransactionStatus(c) != PQTRANS_IDLE)
      return PQexecParams(c, stmt_sql[which], stmt_nparams[which],
                          stmt_types[which], v, len, fmt, binary);
    int pid = PQbackendPID(c);
    if (s->session != pid) {
      memset(s->prepared, 0, sizeof s->prepared);
      s->session = pid;
    }
    int just = 0;
    if (!s->prepared[which]) {
      PGresult *r = PQprepare(c, s->name[which], stmt_sql[which],
                              stmt_nparams[which], stmt_types[which]);
      int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      if (!ok && !sqlstate_is(r, "42P05")) /* duplicate_prepared_statement */
        return r;
      PQclear(r);
      if (!ok) { /* the name is taken */
        s->unnamed = 1;
        continue;
      }
      s->prepared[which] = just = 1;
    }
    PGresult *r = PQexecPrepared(c, s->name[which], stmt_nparams[which], v, len,
                                 fmt, binary);
    if (!sqlstate_is(r, "26000") /* invalid_sql_statement_name */ ||
        PQtransactionStatus(c) != PQTRANS_IDLE)
      return r;
    PQclear(r);
    s->prepared[which] = 0;
    if (just || fresh)
      s->unnamed = 1;
  }
}

static void pg_lookup(void *ctx, const char *key, saga_store_lookup_cb cb,
                      void *arg) {
  pg_store_t *s = ctx;
  s->msg[0] = '\0';
  const char *params[1] = {key};
  PGresult *r = pg_exec(s, PG_LOOKUP, params, NULL, NULL, 1);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    (void)pg_fail(s->msg, sizeof s->msg,
                  "could not look up idempotency key \"%s\": %s", key,
                  PQerrorMessage(s->conn));
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

/* The end of a record on c: 0, or SAGA_ESTORE with the server's word. */
static int record_result(PGconn *c, PGresult *r, const char *key, char *errbuf,
                         size_t errlen) {
  int rc = 0;
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    rc = pg_fail(errbuf, errlen, "could not record idempotency key \"%s\": %s",
                 key, PQerrorMessage(c));
  PQclear(r);
  return rc;
}

int saga_pg_record_in_transaction(void *pgconn, const char *key,
                                  const saga_recorded_reply_t *reply,
                                  char *errbuf, size_t errlen) {
  if (!pgconn || !key || !reply)
    return pg_fail(errbuf, errlen,
                   "could not record idempotency key: no %s given",
                   !pgconn ? "connection" : !key ? "key" : "reply");
  record_params_t p;
  if (record_params(&p, key, reply, errbuf, errlen) != 0)
    return SAGA_ESTORE;
  /* Unnamed: the caller's session may not have the store's statements
   * (nothing here says which store, if any, prepared them). */
  PGresult *r = PQexecParams(pgconn, stmt_sql[PG_RECORD], 5, record_types, p.v,
                             p.len, p.fmt, 0);
  return record_result(pgconn, r, key, errbuf, errlen);
}

static void pg_record(void *ctx, const char *key,
                      const saga_recorded_reply_t *reply,
                      saga_store_record_cb cb, void *arg) {
  pg_store_t *s = ctx;
  s->msg[0] = '\0';
  record_params_t p;
  if (record_params(&p, key, reply, s->msg, sizeof s->msg) != 0) {
    cb(arg, SAGA_ESTORE);
    return;
  }
  PGresult *r = pg_exec(s, PG_RECORD, p.v, p.len, p.fmt, 0);
  cb(arg, record_result(s->conn, r, key, s->msg, sizeof s->msg));
}

static void pg_destroy(void *ctx) { free(ctx); }

static const char *pg_last_error(void *ctx) {
  return ((pg_store_t *)ctx)->msg;
}

int saga_idem_store_pg(void *pgconn, saga_idem_store_t *out, char *errbuf,
                       size_t errlen) {
  if (!pgconn || !out) {
    (void)pg_fail(errbuf, errlen, "idempotency store needs %s",
                  !pgconn ? "a PostgreSQL connection"
                          : "a place for the store");
    return SAGA_EINVAL;
  }
  if (PQstatus(pgconn) != CONNECTION_OK)
    return pg_fail(errbuf, errlen,
                   "idempotency store needs an open PostgreSQL connection: %s",
                   PQerrorMessage(pgconn));
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
  pg_store_t *s = calloc(1, sizeof *s);
  if (!s) {
    (void)pg_fail(errbuf, errlen, "out of memory");
    return SAGA_ENOMEM;
  }
  /* Names of this store's own: two stores on one connection never meet
   * each other's statements, and a store never prepares a name twice in a
   * session. */
  static unsigned long stores;
  unsigned long n = __atomic_add_fetch(&stores, 1, __ATOMIC_RELAXED);
  snprintf(s->name[PG_LOOKUP], sizeof s->name[0], "saga_idem_lookup_%lu", n);
  snprintf(s->name[PG_RECORD], sizeof s->name[0], "saga_idem_record_%lu", n);
  s->conn = pgconn;
  *out = (saga_idem_store_t){.ctx = s,
                             .lookup = pg_lookup,
                             .record = pg_record,
                             .destroy = pg_destroy,
                             .last_error = pg_last_error};
  return 0;
}
