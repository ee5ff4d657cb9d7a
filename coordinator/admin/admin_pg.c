/* Saga reads for the admin API over PostgreSQL (admin_pg.h); their
 * saga_index statements come from index/index_query.h, as sagactl's. The loop
 * thread owns the queue and every answer; the pool thread owns the two
 * connections (libpq for saga_index, the event store for histories) and
 * only ever runs one job at a time, so neither needs a lock. */
#include "admin_pg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "ids.h"
#include "index_query.h"
#include "json_exact.h"
#include "mem.h"
#include "saga/eventstore.h"
#include "saga_codec.h"
#include "saga_machine.h"
#include "text.h"
#include "timetext.h"

#define PAGE_MAX 1000 /* events per event-store read */

typedef enum {
  JOB_GET,
  JOB_LIST,
  JOB_LOOKUP,
  JOB_TRACES,
  JOB_CLOSE
} job_kind_t;

typedef struct job {
  uv_work_t work;
  struct job *next;
  admin_pg_t *pg;
  job_kind_t kind;
  admin_reply_t *reply;              /* NULL for a lookup */
  admin_pg_lookup_cb_t lookup_cb;    /* a lookup's answer */
  admin_pg_traces_cb_t traces_cb;    /* a traceparents request's answer */
  void *lookup_arg;                  /* either's argument */
  char **ids;                        /* a traceparents request's sagas */
  char (*tps)[SAGA_TRACEPARENT_SIZE]; /* and their answers */
  size_t nids;
  /* request, copied on the loop thread */
  char id[ADMIN_ID_MAX + 1];
  char state[32], type[ADMIN_TYPE_MAX + 1];
  iq_cursor_t after;
  iq_filter_t filter; /* a list's, pointing into the fields above */
  char *thresholds; /* JSON [{"t","s","ms"}...] */
  /* result, filled in the pool */
  int status; /* 0 = done, else the HTTP status to fail with */
  char err[ADMIN_ID_MAX + 64];
  PGresult *res;
  uint64_t total; /* a list's: every saga the filter matches */
  bool counts;          /* a list's: count each state too */
  PGresult *counts_res; /* (status, count) rows */
  es_page_t **pages;
  size_t npages;
  saga_def_t *def; /* a get's: the definition recorded for the saga */
  bool reconnected;
} job_t;

typedef struct {
  char *type, *step; /* step "" = any */
  int64_t ms;
} threshold_t;

struct admin_pg {
  uv_loop_t *loop;
  admin_pg_opts_t opts;
  char *conninfo; /* the caller's, as it is */
  /* libpq defaults under it (conninfo settings win): the statement timeout
   * in options, connect_timeout, application_name; "key", "value" pairs
   * ending with NULL, for PQconnectdbParams and es_store_opts_t. */
  char stmt_opt[48], connect_s[16];
  const char *defaults[7];
  /* pool side: touched only inside a running job */
  PGconn *conn;
  es_store_t *store;
  /* loop side */
  job_t *head, *tail, *running;
  size_t queued;
  threshold_t *th;
  size_t nth;
  job_t *close_job; /* allocated up front: closing cannot fail */
  bool closing;
  void (*close_cb)(void *);
  void *close_arg;
  admin_pg_stats_t stats;
};

void admin_pg_opts_init(admin_pg_opts_t *opts) {
  *opts = (admin_pg_opts_t){.stuck_after_ms = 300000,
                            .statement_timeout_ms = 5000,
                            .connect_timeout_s = 5,
                            .max_history = 1000,
                            .max_queue = 64};
}

/* ---- conninfo ----------------------------------------------------------- */

static void set_defaults(admin_pg_t *pg) {
  snprintf(pg->stmt_opt, sizeof pg->stmt_opt, "-c statement_timeout=%" PRIu32,
           pg->opts.statement_timeout_ms);
  snprintf(pg->connect_s, sizeof pg->connect_s, "%" PRIu32,
           pg->opts.connect_timeout_s);
  const char *d[] = {"options",          pg->stmt_opt, "connect_timeout",
                     pg->connect_s,      "application_name", "sagad-admin",
                     NULL};
  memcpy(pg->defaults, d, sizeof d);
}

/* A connection on the caller's conninfo over pg's defaults. */
static PGconn *connect_db(const admin_pg_t *pg) {
  const char *keys[sizeof pg->defaults / sizeof *pg->defaults];
  const char *vals[sizeof pg->defaults / sizeof *pg->defaults];
  size_t n = 0;
  for (; pg->defaults[2 * n]; n++) {
    keys[n] = pg->defaults[2 * n];
    vals[n] = pg->defaults[2 * n + 1];
  }
  keys[n] = "dbname";
  vals[n++] = pg->conninfo;
  keys[n] = vals[n] = NULL;
  return PQconnectdbParams(keys, vals, 1);
}

/* ---- pool side ------------------------------------------------------------ */

static void set_err(job_t *j, int status, const char *what, const char *why) {
  j->status = status;
  snprintf(j->err, sizeof j->err, "%s: %s", what, why);
  size_t n = strlen(j->err);
  while (n > 0 && (j->err[n - 1] == '\n' || j->err[n - 1] == ' '))
    j->err[--n] = '\0';
}

static bool conn_ready(job_t *j) {
  admin_pg_t *pg = j->pg;
  if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
    return true;
  if (pg->conn) {
    PQfinish(pg->conn);
    j->reconnected = true;
  }
  pg->conn = connect_db(pg);
  if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
    return true;
  set_err(j, 503, "could not connect to the saga store",
          pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
  return false;
}

/* Run the job's query; one more try on a fresh connection when the
 * connection was lost (reads are safe to repeat). */
static void query_index(job_t *j, const char *sql, int n,
                        const char *const *params) {
  for (int tries = 0; tries < 2; tries++) {
    if (!conn_ready(j))
      return;
    PGresult *r = PQexecParams(j->pg->conn, sql, n, NULL, params, NULL, NULL,
                               0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      j->res = r;
      j->status = 0;
      return;
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    bool timeout = state && !strcmp(state, "57014");
    set_err(j, 503,
            timeout ? "saga index read timed out"
                    : "could not read saga_index",
            PQerrorMessage(j->pg->conn));
    PQclear(r);
    if (PQstatus(j->pg->conn) == CONNECTION_OK)
      return;
  }
}

static bool store_ready(job_t *j) {
  admin_pg_t *pg = j->pg;
  if (pg->store)
    return true;
  char err[ES_ERRBUF_SIZE] = "";
  es_store_opts_t o;
  es_store_opts_init(&o);
  o.conn_defaults = pg->defaults;
  int rc = es_store_open(pg->conninfo, &o, &pg->store, err, sizeof err);
  if (rc == 0)
    return true;
  set_err(j, 503, "could not open the event store", err);
  return false;
}

static void read_history(job_t *j, int64_t index_version) {
  admin_pg_t *pg = j->pg;
  char stream[ADMIN_ID_MAX + 8];
  snprintf(stream, sizeof stream, "saga-%s", j->id);
  size_t total = 0, cap = 0;
  int64_t from = 1;
  int retried = 0;
  while (total < pg->opts.max_history && from <= index_version) {
    if (!store_ready(j))
      return;
    size_t want = pg->opts.max_history - total;
    es_page_t *page = NULL;
    int rc = es_read_stream(pg->store, stream, from,
                            want < PAGE_MAX ? want : PAGE_MAX, &page);
    if (rc == ES_ERR_CONNECTION && !retried++) {
      j->reconnected = true;
      continue; /* the store reconnects on its next call */
    }
    if (rc != 0) {
      set_err(j, 503, "could not read the saga's history",
              es_store_last_error(pg->store));
      return;
    }
    if (page->n == 0) {
      es_page_free(page);
      return;
    }
    if (j->npages == cap) {
      size_t c = cap ? 2 * cap : 4;
      es_page_t **p = realloc(j->pages, c * sizeof *p);
      if (!p) {
        es_page_free(page);
        set_err(j, 503, "could not read the saga's history", "out of memory");
        return;
      }
      j->pages = p;
      cap = c;
    }
    j->pages[j->npages++] = page;
    total += page->n;
    from = page->events[page->n - 1].version + 1;
  }
}

/* The definition recorded for the saga of the job's row (NULL when none
 * is recorded, or the table is not there yet): its steps' names for the
 * history, whatever the definitions folder holds now. Best effort: a
 * failed read leaves steps by number. */
static void read_definition(job_t *j) {
  const char *type = PQgetvalue(j->res, 0, IQ_COL_SAGA_TYPE);
  uint32_t version = (uint32_t)strtoul(
      PQgetvalue(j->res, 0, IQ_COL_DEFINITION_VERSION), NULL, 10);
  iq_stmt_t q;
  if (iq_definition(type, version, &q) != 0)
    return;
  PGresult *r = PQexecParams(j->pg->conn, q.sql, q.nparams, NULL, q.params,
                             NULL, NULL, 0);
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    const char *body = PQgetvalue(r, 0, IQ_DEF_COL_BODY);
    if (saga_def_parse(body, strlen(body), "saga_definitions", &j->def, NULL) ==
        SAGA_CORE_OK)
      snprintf(j->def->sha256, sizeof j->def->sha256, "%s",
               PQgetvalue(r, 0, IQ_DEF_COL_SHA256));
  }
  PQclear(r);
}

/* Each saga's first event: its traceparent into j->tps (pool side). */
static void read_traceparents(job_t *j) {
  for (size_t i = 0; i < j->nids; i++) {
    char stream[ADMIN_ID_MAX + 8];
    snprintf(stream, sizeof stream, "saga-%s", j->ids[i]);
    es_page_t *page = NULL;
    int rc = -1;
    for (int tries = 0; tries < 2 && rc != 0; tries++) {
      if (!store_ready(j))
        return;
      rc = es_read_stream(j->pg->store, stream, 1, 1, &page);
      if (rc == ES_ERR_CONNECTION)
        j->reconnected = true; /* the store reconnects on its next call */
      else if (rc != 0)
        break;
    }
    if (rc != 0) {
      set_err(j, 503, "could not read a saga's first event",
              es_store_last_error(j->pg->store));
      return;
    }
    const char *tp = page->n ? page->events[0].traceparent : NULL;
    snprintf(j->tps[i], sizeof j->tps[i], "%s",
             tp && saga__traceparent_valid(tp) ? tp : "");
    es_page_free(page);
  }
}

static void work(uv_work_t *w) {
  job_t *j = w->data;
  admin_pg_t *pg = j->pg;
  iq_stuck_t stuck = {.thresholds_json = j->thresholds,
                      .default_ms = pg->opts.stuck_after_ms};
  iq_stmt_t q;
  switch (j->kind) {
  case JOB_GET:
  case JOB_LOOKUP:
    if (iq_get(j->id, &stuck, &q) != 0) {
      set_err(j, 503, "could not read saga_index", "invalid request");
      break;
    }
    query_index(j, q.sql, q.nparams, q.params);
    if (j->kind == JOB_GET && j->status == 0 && PQntuples(j->res) == 1) {
      read_definition(j);
      read_history(j, strtoll(PQgetvalue(j->res, 0, IQ_COL_VERSION), NULL,
                              10));
    }
    break;
  case JOB_LIST:
    /* the total first, then the page: the answer's rows are the page's */
    if (iq_count(&j->filter, &stuck, &q) != 0) {
      set_err(j, 503, "could not read saga_index", "invalid request");
      break;
    }
    query_index(j, q.sql, q.nparams, q.params);
    if (j->status != 0)
      break;
    j->total = strtoull(PQgetvalue(j->res, 0, 0), NULL, 10);
    PQclear(j->res);
    j->res = NULL;
    if (j->counts) {
      (void)iq_counts(&j->filter, &stuck, &q);
      query_index(j, q.sql, q.nparams, q.params);
      if (j->status != 0)
        break;
      j->counts_res = j->res;
      j->res = NULL;
    }
    (void)iq_list(&j->filter, &stuck, &q); /* iq_count took the filter */
    query_index(j, q.sql, q.nparams, q.params);
    break;
  case JOB_TRACES:
    read_traceparents(j);
    break;
  case JOB_CLOSE:
    PQfinish(pg->conn);
    pg->conn = NULL;
    es_store_close(pg->store);
    pg->store = NULL;
    break;
  }
}

/* ---- history JSON ---------------------------------------------------------- */

/* ,"key":"text" or ,"key":null */
static void put_text(abuf_t *b, const char *key, const char *v) {
  abuf_printf(b, ",\"%s\":", key);
  if (!v) {
    abuf_puts(b, "null");
    return;
  }
  abuf_add(b, "\"", 1);
  abuf_json_str(b, v);
  abuf_add(b, "\"", 1);
}

/* ,"key":"<RFC 3339>","key_ms":ms, or nulls when ms is 0 */
static void put_time(abuf_t *b, const char *key, int64_t ms) {
  char iso[SAGA_RFC3339_MS_SIZE] = "";
  if (ms > 0)
    saga__rfc3339_ms(iso, sizeof iso, ms);
  put_text(b, key, ms > 0 ? iso : NULL);
  abuf_printf(b, ",\"%s_ms\":", key);
  if (ms > 0)
    abuf_printf(b, "%" PRId64, ms);
  else
    abuf_puts(b, "null");
}

/* ,"key":<payload>: the JSON it holds (its numbers as written), the text
 * when it is other text (or JSON holding a \u0000 that cJSON would cut a
 * string at), {"$base64": ...} when it is not UTF-8 or holds a NUL (bytes
 * a JSON string cannot carry as they are), or null when empty. */
static void put_payload(abuf_t *b, const char *key, const uint8_t *p,
                        size_t n) {
  abuf_printf(b, ",\"%s\":", key);
  if (!p || !n) {
    abuf_puts(b, "null");
    return;
  }
  bool text = saga__utf8_bad_at(p, n) == n && !memchr(p, '\0', n);
  cJSON *v = !text ? saga_json_base64(p, n)
             : saga__json_nul_escape_at(p, n) == n
                 ? saga_json_parse_exact((const char *)p, n)
                 : NULL;
  if (!v) {
    char *s = saga__memdup(p, n);
    v = s ? cJSON_CreateString(s) : NULL;
    free(s);
  }
  char *json = v ? cJSON_PrintUnformatted(v) : NULL;
  cJSON_Delete(v);
  if (!json) {
    b->failed = 1;
    return;
  }
  abuf_puts(b, json);
  cJSON_free(json);
}

static const char *outcome_name(uint8_t o) {
  static const char *const n[] = {NULL, "success", "failure", "retryable",
                                  "timeout"};
  return o < sizeof n / sizeof n[0] ? n[o] : NULL;
}

static void put_event(abuf_t *b, const saga_def_t *def, int64_t version,
                      int64_t at_ms, const sm_event_t *ev) {
  sm_event_type_t t = (sm_event_type_t)ev->type;
  bool has_step = t == SM_EV_DISPATCHED || t == SM_EV_SUCCEEDED ||
                  t == SM_EV_ATTEMPT_FAILED || t == SM_EV_COMPENSATING ||
                  t == SM_EV_PARKED || t == SM_EV_OPERATOR_RETRY;
  bool has_action = has_step && t != SM_EV_COMPENSATING &&
                    t != SM_EV_PARKED;
  bool has_attempt = t == SM_EV_DISPATCHED || t == SM_EV_SUCCEEDED ||
                     t == SM_EV_ATTEMPT_FAILED;
  abuf_printf(b, "{\"version\":%" PRId64, version);
  put_time(b, "time", at_ms);
  put_text(b, "event", sm_event_type_name(t));
  if (has_step) {
    char step[16];
    snprintf(step, sizeof step, "#%u", (unsigned)ev->step);
    put_text(b, "step",
             def && ev->step < def->nsteps ? def->steps[ev->step].name
                                           : step);
    abuf_printf(b, ",\"step_index\":%u", (unsigned)ev->step);
  } else {
    abuf_puts(b, ",\"step\":null,\"step_index\":null");
  }
  put_text(b, "action",
           has_action ? (ev->action == SM_COMPENSATE ? "compensate" : "do")
                      : NULL);
  if (has_attempt)
    abuf_printf(b, ",\"attempt\":%u", (unsigned)ev->attempt);
  else
    abuf_puts(b, ",\"attempt\":null");
  const char *outcome = t == SM_EV_SUCCEEDED ? "success"
                        : t == SM_EV_ATTEMPT_FAILED
                            ? outcome_name(ev->outcome)
                            : NULL;
  put_text(b, "outcome", outcome);
  put_text(b, "reason", ev->reason);
  put_text(b, "operator", ev->who);
  put_time(b, "until",
           t == SM_EV_DISPATCHED || t == SM_EV_ATTEMPT_FAILED ? ev->until_ms
                                                                   : 0);
  if (t == SM_EV_STARTED) {
    put_text(b, "definition", ev->def_name);
    abuf_printf(b, ",\"definition_version\":%" PRIu32, ev->def_version);
  }
  /* the saga's input, a step's output, the saga's output (its
   * definition's "output" mapping) */
  if (t == SM_EV_STARTED)
    put_payload(b, "input", ev->payload, ev->payload_len);
  if (t == SM_EV_COMPLETED || (t == SM_EV_SUCCEEDED && ev->payload_len))
    put_payload(b, "output", ev->payload, ev->payload_len);
  abuf_add(b, "}", 1);
}

int admin_pg_history_record(abuf_t *b, bool *first, const saga_def_t *def,
                            int64_t version, const void *data, size_t len) {
  saga_record_t rec = {0};
  int rc = saga_codec_decode(data, len, &rec);
  if (rc != SAGA_CORE_OK) {
    abuf_printf(b, "%s{\"version\":%" PRId64 ",\"event\":\"undecodable\"}",
                *first ? "" : ",", version);
    *first = false;
    return b->failed ? -1 : 0;
  }
  for (size_t i = 0; i < rec.n; i++) {
    if (!*first)
      abuf_add(b, ",", 1);
    *first = false;
    put_event(b, def, version, rec.at_ms, &rec.events[i]);
  }
  saga_record_clear(&rec);
  return b->failed ? -1 : 0;
}

/* ---- loop side ------------------------------------------------------------ */

static int64_t col_i64(const PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? 0
                                  : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void row_of(const PGresult *r, int i, admin_saga_row_t *row) {
  *row = (admin_saga_row_t){
      .saga_id = PQgetvalue(r, i, IQ_COL_SAGA_ID),
      .saga_type = PQgetvalue(r, i, IQ_COL_SAGA_TYPE),
      .definition_version = (int)col_i64(r, i, IQ_COL_DEFINITION_VERSION),
      .status = PQgetvalue(r, i, IQ_COL_STATUS),
      .partition = (int)col_i64(r, i, IQ_COL_PARTITION),
      .version = col_i64(r, i, IQ_COL_VERSION),
      .started_ms = col_i64(r, i, IQ_COL_STARTED_MS),
      .updated_ms = col_i64(r, i, IQ_COL_UPDATED_MS),
      .next_deadline_ms = col_i64(r, i, IQ_COL_NEXT_DEADLINE_MS),
      .current_step = PQgetisnull(r, i, IQ_COL_CURRENT_STEP)
                          ? NULL
                          : PQgetvalue(r, i, IQ_COL_CURRENT_STEP),
      .stuck = PQgetvalue(r, i, IQ_COL_STUCK)[0] == 't'};
}

static void render_get(admin_pg_t *pg, job_t *j, abuf_t *b) {
  admin_saga_row_t row;
  row_of(j->res, 0, &row);
  /* The recorded version first: what the saga ran on, even when the
   * definitions folder no longer holds it. */
  const saga_def_t *def =
      j->def != NULL      ? j->def
      : pg->opts.registry ? saga_registry_find(pg->opts.registry, row.saga_type,
                                               (uint32_t)row.definition_version)
                          : NULL;
  abuf_puts(b, "{\"saga\":");
  admin_json_saga_row(b, &row);
  abuf_puts(b, ",\"history\":[");
  bool first = true;
  int64_t last = 0;
  for (size_t p = 0; p < j->npages; p++)
    for (size_t k = 0; k < j->pages[p]->n; k++) {
      const es_recorded_t *e = &j->pages[p]->events[k];
      admin_pg_history_record(b, &first, def, e->version, e->data,
                              e->data_len);
      last = e->version;
    }
  abuf_printf(b, "],\"history_truncated\":%s,\"definition_sha256\":",
              last < row.version ? "true" : "false");
  if (def != NULL)
    abuf_printf(b, "\"%s\"}", def->sha256); /* hex: nothing to escape */
  else
    abuf_puts(b, "null}");
}

static void render_list(job_t *j, abuf_t *b) {
  int n = PQntuples(j->res);
  bool more = (uint64_t)n > j->filter.limit;
  if (more)
    n = (int)j->filter.limit;
  abuf_puts(b, "{\"sagas\":[");
  for (int i = 0; i < n; i++) {
    admin_saga_row_t row;
    row_of(j->res, i, &row);
    if (i)
      abuf_add(b, ",", 1);
    admin_json_saga_row(b, &row);
  }
  char next[IQ_CURSOR_SIZE];
  abuf_printf(b, "],\"total\":%" PRIu64, j->total);
  if (j->counts_res) {
    /* every status, 0 included, in IQ_STATUSES' order */
    abuf_puts(b, ",\"counts\":{");
    const char *name;
    for (size_t k = 0; (name = iq_status_name(k)) != NULL; k++) {
      int64_t c = 0;
      for (int i = 0; i < PQntuples(j->counts_res); i++)
        if (!strcmp(PQgetvalue(j->counts_res, i, 0), name))
          c = col_i64(j->counts_res, i, 1);
      abuf_printf(b, "%s\"%s\":%" PRId64, k ? "," : "", name, c);
    }
    abuf_add(b, "}", 1);
  }
  abuf_puts(b, ",\"next\":");
  if (more && n > 0 &&
      iq_cursor_encode(PQgetvalue(j->res, n - 1, IQ_COL_STARTED_US),
                       PQgetvalue(j->res, n - 1, IQ_COL_SAGA_ID), next,
                       sizeof next) == 0)
    abuf_printf(b, "\"%s\"}", next); /* base64url: nothing to escape */
  else
    abuf_puts(b, "null}");
}

/* Answer j's request, or its lookup, with an error. */
static void job_error(job_t *j, int status, const char *msg) {
  if (j->traces_cb)
    j->traces_cb(j->lookup_arg, status, NULL, 0, msg);
  else if (j->lookup_cb)
    j->lookup_cb(j->lookup_arg, status, NULL, msg);
  else
    admin_http_respond_error(j->reply, status, msg);
}

static void job_free(job_t *j) {
  PQclear(j->res);
  PQclear(j->counts_res);
  for (size_t i = 0; i < j->npages; i++)
    es_page_free(j->pages[i]);
  free(j->pages);
  free(j->thresholds);
  saga_def_free(j->def);
  for (size_t i = 0; i < j->nids; i++)
    free(j->ids[i]);
  free(j->ids);
  free(j->tps);
  free(j);
}

static void pump(admin_pg_t *pg);

static void finish_close(admin_pg_t *pg) {
  void (*cb)(void *) = pg->close_cb;
  void *arg = pg->close_arg;
  for (size_t i = 0; i < pg->nth; i++) {
    free(pg->th[i].type);
    free(pg->th[i].step);
  }
  free(pg->th);
  free(pg->conninfo);
  free(pg);
  if (cb)
    cb(arg);
}

static void after_work(uv_work_t *w, int status) {
  job_t *j = w->data;
  admin_pg_t *pg = j->pg;
  pg->running = NULL;
  if (j->reconnected)
    pg->stats.reconnects++;
  if (j->kind == JOB_CLOSE) {
    job_free(j);
    finish_close(pg);
    return;
  }
  if (j->kind == JOB_TRACES) {
    if (status != 0)
      set_err(j, 503, "saga store request cancelled", uv_strerror(status));
    if (j->status == 0) {
      const char **tps = malloc((j->nids ? j->nids : 1) * sizeof *tps);
      for (size_t i = 0; tps && i < j->nids; i++)
        tps[i] = j->tps[i];
      if (!tps)
        set_err(j, 503, "could not answer", "out of memory");
      else
        j->traces_cb(j->lookup_arg, 200, tps, j->nids, NULL);
      free(tps);
    }
    if (j->status) {
      pg->stats.failed++;
      job_error(j, j->status, j->err);
    } else {
      pg->stats.answered++;
    }
    job_free(j);
    pump(pg);
    return;
  }
  abuf_t b = ABUF_INIT;
  if (status != 0) {
    set_err(j, 503, "saga store request cancelled", uv_strerror(status));
  } else if (j->status == 0 && j->kind != JOB_LIST &&
             PQntuples(j->res) == 0) {
    j->status = 404;
    snprintf(j->err, sizeof j->err, "no saga with id \"%s\"", j->id);
  } else if (j->status == 0 && j->kind == JOB_LOOKUP) {
    admin_saga_row_t row;
    row_of(j->res, 0, &row);
    pg->stats.answered++;
    j->lookup_cb(j->lookup_arg, 200, &row, NULL);
    job_free(j);
    pump(pg);
    return;
  } else if (j->status == 0) {
    if (j->kind == JOB_GET)
      render_get(pg, j, &b);
    else
      render_list(j, &b);
    if (b.failed)
      set_err(j, 503, "could not render the answer", "out of memory");
  }
  if (j->status) {
    if (j->status != 404)
      pg->stats.failed++;
    job_error(j, j->status, j->err);
  } else {
    pg->stats.answered++;
    admin_reply(j->reply, 200, b.data, b.len);
  }
  abuf_free(&b);
  job_free(j);
  pump(pg);
}

static void pump(admin_pg_t *pg) {
  while (!pg->running && pg->head) {
    job_t *j = pg->head;
    pg->head = j->next;
    if (!pg->head)
      pg->tail = NULL;
    pg->queued--;
    j->work.data = j;
    int rc = uv_queue_work(pg->loop, &j->work, work, after_work);
    if (rc == 0) {
      pg->running = j;
      return;
    }
    if (j->kind == JOB_CLOSE) { /* cannot happen with a live loop */
      job_free(j);
      finish_close(pg);
      return;
    }
    pg->stats.failed++;
    job_error(j, 503, uv_strerror(rc));
    job_free(j);
  }
}

/* The overrides as a JSON array for jsonb_to_recordset. */
static char *thresholds_json(const admin_pg_t *pg) {
  abuf_t b = ABUF_INIT;
  abuf_add(&b, "[", 1);
  for (size_t i = 0; i < pg->nth; i++) {
    abuf_puts(&b, i ? ",{\"t\":\"" : "{\"t\":\"");
    abuf_json_str(&b, pg->th[i].type);
    abuf_puts(&b, "\",\"s\":\"");
    abuf_json_str(&b, pg->th[i].step);
    abuf_printf(&b, "\",\"ms\":%" PRId64 "}", pg->th[i].ms);
  }
  abuf_add(&b, "]", 1);
  return abuf_take(&b, NULL);
}

/* A new job answering r, or (r NULL) cb(arg, ...) or tcb(arg, ...); NULL
 * when refused or out of memory, answered already. */
static job_t *job_new(admin_pg_t *pg, job_kind_t kind, admin_reply_t *r,
                      admin_pg_lookup_cb_t cb, admin_pg_traces_cb_t tcb,
                      void *arg) {
  job_t fail = {
      .reply = r, .lookup_cb = cb, .traces_cb = tcb, .lookup_arg = arg};
  if (pg->closing || pg->queued >= pg->opts.max_queue) {
    pg->stats.refused++;
    job_error(&fail, 503,
              pg->closing ? "saga store reader is closing"
                          : "too many saga store requests waiting");
    return NULL;
  }
  job_t *j = calloc(1, sizeof *j);
  if (j)
    j->thresholds = thresholds_json(pg);
  if (!j || !j->thresholds) {
    free(j);
    pg->stats.failed++;
    job_error(&fail, 503, "out of memory");
    return NULL;
  }
  j->pg = pg;
  j->kind = kind;
  j->reply = r;
  j->lookup_cb = cb;
  j->traces_cb = tcb;
  j->lookup_arg = arg;
  return j;
}

static void enqueue(admin_pg_t *pg, job_t *j) {
  if (pg->tail)
    pg->tail->next = j;
  else
    pg->head = j;
  pg->tail = j;
  pg->queued++;
  pump(pg);
}

static void src_get(void *arg, const char *id, admin_reply_t *r) {
  admin_pg_t *pg = arg;
  job_t *j = job_new(pg, JOB_GET, r, NULL, NULL, NULL);
  if (!j)
    return;
  snprintf(j->id, sizeof j->id, "%s", id);
  enqueue(pg, j);
}

void admin_pg_lookup(admin_pg_t *pg, const char *id, admin_pg_lookup_cb_t cb,
                     void *arg) {
  job_t *j = job_new(pg, JOB_LOOKUP, NULL, cb, NULL, arg);
  if (!j)
    return;
  snprintf(j->id, sizeof j->id, "%s", id);
  enqueue(pg, j);
}

void admin_pg_traceparents(admin_pg_t *pg, const char *const *ids, size_t n,
                           admin_pg_traces_cb_t cb, void *arg) {
  job_t *j = job_new(pg, JOB_TRACES, NULL, NULL, cb, arg);
  if (!j)
    return;
  j->ids = calloc(n ? n : 1, sizeof *j->ids);
  j->tps = calloc(n ? n : 1, sizeof *j->tps);
  bool ok = j->ids && j->tps;
  for (size_t i = 0; ok && i < n; i++, j->nids++)
    ok = (j->ids[i] = strdup(ids[i])) != NULL;
  if (!ok) {
    pg->stats.failed++;
    job_error(j, 503, "out of memory");
    job_free(j);
    return;
  }
  enqueue(pg, j);
}

/* Copy v (NULL = any) into dst; the copy, or NULL. */
static const char *copy_opt(char *dst, size_t n, const char *v) {
  if (!v)
    return NULL;
  snprintf(dst, n, "%s", v);
  return dst;
}

static void src_list(void *arg, const admin_list_query_t *q,
                     admin_reply_t *r) {
  admin_pg_t *pg = arg;
  iq_cursor_t after;
  if (q->after && iq_cursor_decode(q->after, &after) != 0) {
    admin_http_respond_error(r, 400, "after: not a token of this list");
    return;
  }
  job_t *j = job_new(pg, JOB_LIST, r, NULL, NULL, NULL);
  if (!j)
    return;
  j->filter = (iq_filter_t){
      .state = copy_opt(j->state, sizeof j->state, q->state),
      .type = copy_opt(j->type, sizeof j->type, q->type),
      .since = q->since,
      .until = q->until,
      .stuck = q->stuck,
      .oldest_first = q->oldest_first,
      .limit = q->limit < 1               ? ADMIN_LIST_DEFAULT
               : q->limit > ADMIN_LIST_MAX ? ADMIN_LIST_MAX
                                           : q->limit};
  if (q->after) {
    j->after = after;
    j->filter.after = &j->after;
  }
  j->counts = q->counts;
  enqueue(pg, j);
}

admin_pg_t *admin_pg_new(uv_loop_t *loop, const admin_pg_opts_t *opts) {
  if (!loop || !opts || !opts->conninfo || opts->stuck_after_ms < 1 ||
      opts->max_history < 1 || opts->max_history > ADMIN_PG_HISTORY_MAX ||
      opts->max_queue < 1)
    return NULL;
  admin_pg_t *pg = calloc(1, sizeof *pg);
  if (!pg)
    return NULL;
  pg->loop = loop;
  pg->opts = *opts;
  pg->conninfo = strdup(opts->conninfo);
  pg->opts.conninfo = pg->conninfo;
  set_defaults(pg);
  pg->close_job = calloc(1, sizeof *pg->close_job);
  if (!pg->conninfo || !pg->close_job) {
    free(pg->conninfo);
    free(pg->close_job);
    free(pg);
    return NULL;
  }
  pg->close_job->pg = pg;
  pg->close_job->kind = JOB_CLOSE;
  return pg;
}

int admin_pg_set_stuck(admin_pg_t *pg, const char *type, const char *step,
                       int64_t ms) {
  if (!pg || !type || ms < 1)
    return -1;
  if (!step)
    step = "";
  for (size_t i = 0; i < pg->nth; i++)
    if (!strcmp(pg->th[i].type, type) && !strcmp(pg->th[i].step, step)) {
      pg->th[i].ms = ms;
      return 0;
    }
  threshold_t *th = realloc(pg->th, (pg->nth + 1) * sizeof *th);
  if (!th)
    return -1;
  pg->th = th;
  threshold_t t = {strdup(type), strdup(step), ms};
  if (!t.type || !t.step) {
    free(t.type);
    free(t.step);
    return -1;
  }
  pg->th[pg->nth++] = t;
  return 0;
}

int admin_pg_stuck_from_def(admin_pg_t *pg, const saga_def_t *def) {
  for (uint32_t i = 0; i < def->nsteps; i++)
    if (def->steps[i].stuck_after_ms > 0 &&
        admin_pg_set_stuck(pg, def->name, def->steps[i].name,
                           def->steps[i].stuck_after_ms) != 0)
      return -1;
  return 0;
}

void admin_pg_source(admin_pg_t *pg, admin_source_t *src) {
  src->arg = pg;
  src->get_saga = src_get;
  src->list_sagas = src_list;
}

void admin_pg_stats(const admin_pg_t *pg, admin_pg_stats_t *out) {
  *out = pg->stats;
  out->queued = pg->queued;
}

void admin_pg_close(admin_pg_t *pg, void (*close_cb)(void *arg), void *arg) {
  if (!pg || pg->closing)
    return;
  pg->closing = true;
  pg->close_cb = close_cb;
  pg->close_arg = arg;
  while (pg->head) {
    job_t *j = pg->head;
    pg->head = j->next;
    pg->stats.refused++;
    job_error(j, 503, "saga store reader is closing");
    job_free(j);
  }
  pg->tail = NULL;
  pg->queued = 0;
  /* The connections are closed in the pool: PQfinish may wait on the
   * network. */
  job_t *c = pg->close_job;
  pg->close_job = NULL;
  pg->head = pg->tail = c;
  pg->queued = 1;
  pump(pg);
}
