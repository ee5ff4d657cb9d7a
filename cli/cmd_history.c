/* history and replay: read a saga's stream ("saga-" + id) from the event
 * store, decode each record with the coordinator's codec, and either show
 * it as a timeline or rebuild the saga through the pure machine and
 * compare it with its saga_index row. Read-only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "definition.h"
#include "mem.h"
#include "saga/eventstore.h"
#include "saga_codec.h"
#include "saga_machine.h"

#include "cli_cmds.h"
#include "cli_db.h"
#include "cli_timeline.h"

#define PAGE 1000

/* Load the definitions folder; NULL with the line printed when it cannot
 * be read or holds a bad file (*rc = CLI_EXIT_USAGE). */
static saga_registry_t *load_defs(const cli_settings_t *s, int *rc) {
  const char *dir = cli_get(s, CLI_SET_DEFINITIONS);
  saga_registry_t *reg = saga_registry_new();
  saga_diags_t d = {0};
  *rc = CLI_EXIT_OK;
  if (reg == NULL) {
    *rc = cli_fail(CLI_EXIT_FAIL, "out of memory");
    return NULL;
  }
  size_t loaded = 0;
  int err = saga_registry_load_dir(reg, dir, &d, &loaded);
  if (err == SAGA_CORE_EIO || (err == SAGA_CORE_OK && loaded == 0)) {
    *rc = cli_fail(CLI_EXIT_USAGE,
                   "could not load saga definitions from \"%s\" (%s): %s", dir,
                   cli_get(s, CLI_SET_DEFINITIONS) != NULL
                       ? s->source[CLI_SET_DEFINITIONS]
                       : "unset",
                   err == SAGA_CORE_EIO ? "folder cannot be read"
                                        : "no *.json definition in it");
  } else if (err != SAGA_CORE_OK) {
    *rc = cli_fail(CLI_EXIT_USAGE, "%s",
                   d.n > 0 ? d.items[0] : saga_core_strerror(err));
  }
  saga_diags_clear(&d);
  if (*rc != CLI_EXIT_OK) {
    saga_registry_free(reg);
    return NULL;
  }
  return reg;
}

int cli_defs_has_type(const cli_settings_t *s, const char *type,
                      uint32_t version, int *found) {
  int rc;
  saga_registry_t *reg = load_defs(s, &rc);
  if (reg == NULL)
    return rc;
  *found = saga_registry_find(reg, type, version) != NULL;
  saga_registry_free(reg);
  return CLI_EXIT_OK;
}

int cli_defs_stuck_thresholds(const cli_settings_t *s, char **json) {
  *json = NULL;
  if (cli_get(s, CLI_SET_DEFINITIONS) == NULL)
    return CLI_EXIT_OK;
  int rc;
  saga_registry_t *reg = load_defs(s, &rc);
  if (reg == NULL)
    return rc;
  cJSON *arr = cJSON_CreateArray();
  const saga_def_t *d;
  for (size_t i = 0; arr != NULL && (d = saga_registry_at(reg, i)); i++)
    for (uint32_t k = 0; arr != NULL && k < d->nsteps; k++) {
      cJSON *o = cJSON_CreateObject();
      if (o == NULL || !cJSON_AddStringToObject(o, "t", d->name) ||
          !cJSON_AddStringToObject(o, "s", d->steps[k].name) ||
          !cJSON_AddNumberToObject(o, "ms", d->steps[k].stuck_after_ms) ||
          !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        cJSON_Delete(arr);
        arr = NULL;
      }
    }
  saga_registry_free(reg);
  *json = arr != NULL ? cJSON_PrintUnformatted(arr) : NULL;
  cJSON_Delete(arr);
  return *json != NULL ? CLI_EXIT_OK : cli_fail(CLI_EXIT_FAIL, "out of memory");
}

static int open_store(const cli_settings_t *s, es_store_t **out) {
  *out = NULL;
  cli_pg_t pg;
  int rc = cli_pg(s, &pg);
  if (rc != CLI_EXIT_OK)
    return rc;
  es_store_opts_t opts;
  es_store_opts_init(&opts);
  opts.conn_defaults = pg.defaults;
  char err[ES_ERRBUF_SIZE] = "", where[256];
  int e = es_store_open(pg.conninfo, &opts, out, err, sizeof err);
  if (e == ES_ERR_OK)
    return CLI_EXIT_OK;
  cli_conninfo_where(pg.conninfo, where, sizeof where);
  char *nl = strchr(err, '\n');
  if (nl != NULL)
    *nl = '\0';
  if (e == ES_ERR_CONNECTION)
    return cli_fail(CLI_EXIT_UNREACHABLE,
                    "could not connect to PostgreSQL at %s: %s", where,
                    *err != '\0' ? err : es_strerror(e));
  return cli_fail(CLI_EXIT_FAIL, "could not open the event store at %s: %s",
                  where, *err != '\0' ? err : es_strerror(e));
}

/* Calls fn for each decoded record of the saga's stream in order. Returns
 * the number of records, or -1 (line printed). */
typedef int (*record_fn)(void *arg, int64_t version,
                         const saga_record_t *rec);

/* Decode the events of page and call fn for each; *count grows, or
 * becomes -1 (line printed). */
static void page_records(const es_page_t *page, const char *stream,
                         saga_record_t *rec, record_fn fn, void *arg,
                         int64_t *count) {
  for (size_t i = 0; i < page->n && *count >= 0; i++) {
    const es_recorded_t *ev = &page->events[i];
    int d = saga_codec_decode(ev->data, ev->data_len, rec);
    if (d != SAGA_CORE_OK) {
      cli_fail(CLI_EXIT_FAIL,
               "could not decode event %" PRId64 " (%s) of stream \"%s\": "
               "%s",
               ev->version, ev->type, stream, saga_core_strerror(d));
      *count = -1;
    } else if (fn(arg, ev->version, rec) != 0) {
      *count = -1;
    } else {
      (*count)++;
    }
  }
}

static int saga_stream(const char *saga_id, char *stream, size_t len) {
  if (snprintf(stream, len, "saga-%s", saga_id) < (int)len)
    return 0;
  cli_fail(CLI_EXIT_USAGE, "saga id \"%s\" is too long", saga_id);
  return -1;
}

/* The same over an archive file (saga-es-archive): the saga's events are
 * collected and the file checked to its end (its manifest's count and
 * checksum) before any is decoded. */
static int each_archived_record(const char *path, const char *saga_id,
                                record_fn fn, void *arg) {
  char stream[ES_MAX_STREAM_ID + 1], err[ES_ERRBUF_SIZE] = "";
  if (saga_stream(saga_id, stream, sizeof stream) != 0)
    return -1;
  es_archive_t *ar = NULL;
  int e = es_archive_open(path, &ar, err, sizeof err);
  es_page_t **pages = NULL;
  size_t n = 0;
  int64_t count = 0;
  while (e == ES_ERR_OK) {
    es_page_t *page = NULL, **grown = NULL;
    e = es_archive_read(ar, stream, PAGE, &page);
    if (e == ES_ERR_OK && page->n == 0) {
      es_page_free(page);
      break;
    }
    if (e == ES_ERR_OK &&
        (grown = realloc(pages, (n + 1) * sizeof *pages)) == NULL) {
      es_page_free(page);
      e = ES_ERR_NOMEM;
    }
    if (grown != NULL) {
      pages = grown;
      pages[n++] = page;
    }
  }
  if (e != ES_ERR_OK) {
    cli_fail(CLI_EXIT_FAIL, "could not read archive \"%s\": %s", path,
             ar != NULL && *es_archive_last_error(ar) != '\0'
                 ? es_archive_last_error(ar)
             : *err != '\0' ? err
                            : es_strerror(e));
    count = -1;
  }
  saga_record_t rec = {0};
  for (size_t i = 0; i < n; i++) {
    if (count >= 0)
      page_records(pages[i], stream, &rec, fn, arg, &count);
    es_page_free(pages[i]);
  }
  free(pages);
  saga_record_clear(&rec);
  es_archive_close(ar);
  return count > INT32_MAX ? INT32_MAX : (int)count;
}

static int each_record(es_store_t *st, const char *saga_id, record_fn fn,
                       void *arg) {
  char stream[ES_MAX_STREAM_ID + 1];
  if (saga_stream(saga_id, stream, sizeof stream) != 0)
    return -1;
  saga_record_t rec = {0};
  int64_t from = 1, count = 0;
  for (;;) {
    es_page_t *page = NULL;
    int e = es_read_stream(st, stream, from, PAGE, &page);
    if (e != ES_ERR_OK) {
      cli_fail(CLI_EXIT_FAIL, "could not read stream \"%s\": %s", stream,
               *es_store_last_error(st) != '\0' ? es_store_last_error(st)
                                                : es_strerror(e));
      count = -1;
      break;
    }
    size_t n = page->n;
    page_records(page, stream, &rec, fn, arg, &count);
    if (n > 0)
      from = page->events[n - 1].version + 1;
    es_page_free(page);
    if (count < 0 || n < PAGE)
      break;
  }
  saga_record_clear(&rec);
  return count > INT32_MAX ? INT32_MAX : (int)count;
}

/* ---- resolved? -------------------------------------------------------- */

static int ending_record(void *arg, int64_t version,
                         const saga_record_t *rec) {
  cli_ending_t *e = arg;
  (void)version;
  for (size_t i = 0; i < rec->n; i++) {
    const sm_event_t *ev = &rec->events[i];
    if (ev->type == SM_EV_RESOLVED) {
      e->resolved = 1;
    } else if (ev->type == SM_EV_CANCEL_REQUESTED && e->cancelled == NULL) {
      e->cancelled = saga__memdup(ev->reason ? ev->reason : "",
                               ev->reason ? strlen(ev->reason) : 0);
      if (ev->who != NULL)
        e->cancelled_by = saga__memdup(ev->who, strlen(ev->who));
      if (e->cancelled == NULL || (ev->who != NULL && !e->cancelled_by))
        return cli_fail(CLI_EXIT_FAIL, "out of memory"), -1;
    } else if (ev->type == SM_EV_COMPLETED && ev->payload_len > 0) {
      free(e->output);
      if ((e->output = saga__memdup(ev->payload, ev->payload_len)) == NULL)
        return cli_fail(CLI_EXIT_FAIL, "out of memory"), -1;
      e->output_len = ev->payload_len;
    }
  }
  return 0;
}

void cli_ending_clear(cli_ending_t *e) {
  if (e == NULL)
    return;
  free(e->cancelled);
  free(e->cancelled_by);
  free(e->output);
  memset(e, 0, sizeof *e);
}

int cli_saga_ending(const cli_settings_t *s, const char *saga_id,
                    cli_ending_t *e) {
  memset(e, 0, sizeof *e);
  es_store_t *st = NULL;
  int rc = open_store(s, &st);
  if (rc != CLI_EXIT_OK)
    return rc;
  if (each_record(st, saga_id, ending_record, e) < 0) {
    cli_ending_clear(e);
    rc = CLI_EXIT_FAIL;
  }
  es_store_close(st);
  return rc;
}

/* ---- history --------------------------------------------------------- */

typedef struct {
  saga_registry_t *reg;
  const saga_def_t *def;
  cli_timeline_t tl;
  char type[SAGA_DEF_MAX_NAME + 1];
  uint32_t def_version;
} history_t;

static int history_record(void *arg, int64_t version,
                          const saga_record_t *rec) {
  history_t *h = arg;
  if (rec->n > 0 && rec->events[0].type == SM_EV_STARTED &&
      h->type[0] == '\0') {
    snprintf(h->type, sizeof h->type, "%s", rec->events[0].def_name);
    h->def_version = rec->events[0].def_version;
    if (h->reg != NULL)
      h->def = saga_registry_find(h->reg, h->type, h->def_version);
  }
  if (cli_timeline_add(&h->tl, h->def, version, rec->at_ms, rec->events,
                       rec->n) != 0) {
    cli_fail(CLI_EXIT_FAIL, "out of memory");
    return -1;
  }
  return 0;
}

int cli_cmd_history(const cli_args_t *a, const cli_settings_t *s) {
  if (a->npos != 1)
    return cli_fail(CLI_EXIT_USAGE,
                    "history: expected one saga id, got %zu arguments",
                    a->npos);
  const char *id = a->pos[0];
  history_t h = {0};
  int rc = CLI_EXIT_OK;
  if (cli_get(s, CLI_SET_DEFINITIONS) != NULL &&
      (h.reg = load_defs(s, &rc)) == NULL)
    return rc;
  es_store_t *st = NULL;
  const char *archive = a->opt[CLI_OPT_ARCHIVE];
  if (archive == NULL && (rc = open_store(s, &st)) != CLI_EXIT_OK)
    goto out;
  int n = archive != NULL
              ? each_archived_record(archive, id, history_record, &h)
              : each_record(st, id, history_record, &h);
  if (n < 0) {
    rc = CLI_EXIT_FAIL;
    goto out;
  }
  if (n == 0) {
    rc = cli_fail(CLI_EXIT_FAIL, "saga \"%s\" not found: stream \"saga-%s\" "
                                 "has no events%s%s%s",
                  id, id, archive != NULL ? " in archive \"" : "",
                  archive != NULL ? archive : "", archive != NULL ? "\"" : "");
    goto out;
  }
  if (a->opt[CLI_OPT_JSON] != NULL) {
    cJSON *o = cJSON_CreateObject();
    cJSON *events = cli_timeline_json(&h.tl);
    if (o == NULL || events == NULL) {
      cJSON_Delete(o);
      cJSON_Delete(events);
      rc = cli_fail(CLI_EXIT_FAIL, "out of memory");
      goto out;
    }
    cJSON_AddStringToObject(o, "saga_id", id);
    cJSON_AddStringToObject(o, "type", h.type);
    cJSON_AddNumberToObject(o, "definition_version", h.def_version);
    cJSON_AddNumberToObject(o, "records", n);
    cJSON_AddItemToObject(o, "events", events);
    rc = cli_print_json(o);
  } else {
    printf("saga %s: %s v%" PRIu32 ", %d records%s\n\n", id, h.type,
           h.def_version, n,
           h.def == NULL ? " (steps by number: give --definitions for names)"
                         : "");
    cli_timeline_print(&h.tl, stdout);
  }
out:
  es_store_close(st);
  cli_timeline_free(&h.tl);
  saga_registry_free(h.reg);
  return rc;
}

/* ---- replay ---------------------------------------------------------- */

typedef struct {
  const saga_registry_t *reg;
  const char *id;
  sm_t *saga;
  char problem[256]; /* set when the events cannot be replayed */
} replay_t;

static int replay_record(void *arg, int64_t version,
                         const saga_record_t *rec) {
  replay_t *r = arg;
  if (r->problem[0] != '\0')
    return 0;
  if (r->saga == NULL) {
    if (rec->n == 0 || rec->events[0].type != SM_EV_STARTED) {
      snprintf(r->problem, sizeof r->problem,
               "first record is %s, not Started",
               saga_codec_record_type(rec->events, rec->n));
      return 0;
    }
    const sm_event_t *st = &rec->events[0];
    const saga_def_t *def =
        saga_registry_find(r->reg, st->def_name, st->def_version);
    if (def == NULL) {
      snprintf(r->problem, sizeof r->problem,
               "definition %s v%" PRIu32 " is not in the definitions folder",
               st->def_name, st->def_version);
      return 0;
    }
    r->saga = malloc(sm_size(def, strlen(r->id)));
    if (r->saga == NULL) {
      cli_fail(CLI_EXIT_FAIL, "out of memory");
      return -1;
    }
    if (sm_init(r->saga, r->id, def) != SAGA_CORE_OK) {
      snprintf(r->problem, sizeof r->problem, "saga id cannot be replayed");
      return 0;
    }
  }
  int e = saga_codec_apply(r->saga, rec);
  if (e != SAGA_CORE_OK)
    snprintf(r->problem, sizeof r->problem,
             "record %" PRId64 " (%s) does not fit the saga: %s", version,
             saga_codec_record_type(rec->events, rec->n),
             saga_core_strerror(e));
  return 0;
}

typedef struct {
  size_t checked, mismatched;
  cJSON *json; /* array of results, or NULL for text */
} replay_report_t;

static void report(replay_report_t *rep, const char *id, const char *what,
                   int ok) {
  rep->checked++;
  if (!ok)
    rep->mismatched++;
  if (rep->json != NULL) {
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
      return;
    cJSON_AddStringToObject(o, "saga_id", id);
    cJSON_AddBoolToObject(o, "consistent", ok);
    cJSON_AddStringToObject(o, "detail", what);
    cJSON_AddItemToArray(rep->json, o);
  } else {
    printf("%-8s %s: %s\n", ok ? "ok" : "MISMATCH", id, what);
  }
}

/* Replay one saga and compare with its index row (row may be NULL when
 * the index has none). Returns 0 or -1 on a fatal error (printed). */
static int replay_one(es_store_t *st, const saga_registry_t *reg,
                      const char *id, const cli_index_row_t *row,
                      replay_report_t *rep) {
  replay_t r = {.reg = reg, .id = id};
  int n = each_record(st, id, replay_record, &r);
  if (n < 0) {
    free(r.saga);
    return -1;
  }
  char what[768];
  int ok = 0;
  if (n == 0 && row == NULL) {
    snprintf(what, sizeof what, "not found: no saga_index row and no events");
  } else if (n == 0) {
    snprintf(what, sizeof what, "in saga_index (status %s) but stream "
                                "\"saga-%s\" has no events",
             row != NULL ? row->status : "?", id);
  } else if (r.problem[0] != '\0') {
    snprintf(what, sizeof what, "cannot replay: %s", r.problem);
  } else if (row == NULL) {
    snprintf(what, sizeof what, "%d events (status %s) but no saga_index row",
             n, sm_status_name((sm_status_t)r.saga->status));
  } else {
    const char *status = sm_status_name((sm_status_t)r.saga->status);
    size_t w = 0;
    what[0] = '\0';
#define DIFF(...)                                                           \
  w += (size_t)snprintf(what + w, w < sizeof what ? sizeof what - w : 0,    \
                        __VA_ARGS__)
    if (strcmp(status, row->status) != 0)
      DIFF("%sstatus: index %s, events %s", w ? "; " : "", row->status,
           status);
    if ((int64_t)r.saga->version != row->version)
      DIFF("%sversion: index %" PRId64 ", events %" PRIu32, w ? "; " : "",
           row->version, r.saga->version);
    if (strcmp(r.saga->def->name, row->saga_type) != 0)
      DIFF("%stype: index %s, events %s", w ? "; " : "", row->saga_type,
           r.saga->def->name);
    if ((int64_t)r.saga->def->version != row->def_version)
      DIFF("%sdefinition version: index %d, events %" PRIu32, w ? "; " : "",
           row->def_version, r.saga->def->version);
#undef DIFF
    ok = w == 0;
    if (ok)
      snprintf(what, sizeof what, "%s at version %" PRIu32, status,
               r.saga->version);
  }
  report(rep, id, what, ok);
  free(r.saga);
  return 0;
}

/* Saga ids that have a Started record but are not in `rows`. */
static int replay_orphans(es_store_t *st, const saga_registry_t *reg,
                          const cli_index_row_t *rows, size_t nrows,
                          replay_report_t *rep) {
  es_filter_t f = {.category = "saga", .type = "Started"};
  es_pos_t from = {0, 0};
  for (;;) {
    es_page_t *page = NULL;
    int e = es_read_all(st, from, &f, PAGE, &page);
    if (e != ES_ERR_OK) {
      cli_fail(CLI_EXIT_FAIL, "could not read the saga streams: %s",
               es_strerror(e));
      return -1;
    }
    size_t n = page->n;
    for (size_t i = 0; i < n; i++) {
      const char *id = page->events[i].stream_id + 5; /* after "saga-" */
      int indexed = 0;
      for (size_t j = 0; j < nrows && !indexed; j++)
        indexed = strcmp(rows[j].saga_id, id) == 0;
      if (!indexed && replay_one(st, reg, id, NULL, rep) != 0) {
        es_page_free(page);
        return -1;
      }
    }
    from = page->next;
    es_page_free(page);
    if (n == 0)
      return 0;
  }
}

int cli_cmd_replay(const cli_args_t *a, const cli_settings_t *s) {
  int all = a->opt[CLI_OPT_ALL] != NULL;
  if ((all && a->npos != 0) || (!all && a->npos != 1))
    return cli_fail(CLI_EXIT_USAGE, "replay: give one saga id or --all");
  if (cli_get(s, CLI_SET_DEFINITIONS) == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "replay needs the saga definitions: give --definitions "
                    "DIR, SAGA_DEFINITIONS or \"definitions = ...\"");
  uint64_t limit = 1000000;
  if (a->opt[CLI_OPT_LIMIT] != NULL &&
      cli_parse_uint(a->opt[CLI_OPT_LIMIT], 1, 1000000, &limit) != 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "--limit: expected a number between 1 and 1000000, got "
                    "\"%s\"",
                    a->opt[CLI_OPT_LIMIT]);
  int rc = CLI_EXIT_OK;
  saga_registry_t *reg = load_defs(s, &rc);
  if (reg == NULL)
    return rc;
  PGconn *c = NULL;
  es_store_t *st = NULL;
  cli_list_t list = {0};
  cli_index_row_t *rows = NULL;
  size_t nrows = 0;
  replay_report_t rep = {0};
  if ((rc = cli_db_connect(s, &c)) != CLI_EXIT_OK ||
      (rc = open_store(s, &st)) != CLI_EXIT_OK)
    goto out;
  rc = CLI_EXIT_FAIL;
  if (all) {
    iq_filter_t f = {.oldest_first = true, .limit = limit};
    if (cli_db_list(c, &f, NULL, 0, &list) != 0)
      goto out;
    rows = list.rows;
    nrows = list.n;
    list.rows = NULL;
  } else {
    rows = calloc(1, sizeof *rows);
    if (rows == NULL)
      goto out;
    int found = cli_db_get(c, a->pos[0], rows);
    if (found < 0)
      goto out;
    nrows = found == 0 ? 1 : 0;
  }
  if (a->opt[CLI_OPT_JSON] != NULL && (rep.json = cJSON_CreateArray()) == NULL)
    goto out;
  for (size_t i = 0; i < nrows; i++)
    if (replay_one(st, reg, rows[i].saga_id, &rows[i], &rep) != 0)
      goto out;
  if (all ? replay_orphans(st, reg, rows, nrows, &rep) != 0
          : (nrows == 0 && replay_one(st, reg, a->pos[0], NULL, &rep) != 0))
    goto out;
  if (rep.json != NULL) {
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
      goto out;
    cJSON_AddNumberToObject(o, "checked", (double)rep.checked);
    cJSON_AddNumberToObject(o, "mismatched", (double)rep.mismatched);
    cJSON_AddItemToObject(o, "sagas", rep.json);
    rep.json = NULL;
    if (cli_print_json(o) != CLI_EXIT_OK)
      goto out;
  } else {
    printf("replayed %zu sagas: %zu consistent, %zu mismatched\n",
           rep.checked, rep.checked - rep.mismatched, rep.mismatched);
  }
  rc = rep.mismatched > 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
out:
  cJSON_Delete(rep.json);
  for (size_t i = 0; i < nrows; i++)
    cli_index_row_clear(&rows[i]);
  free(rows);
  es_store_close(st);
  PQfinish(c);
  saga_registry_free(reg);
  return rc;
}
