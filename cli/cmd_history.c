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
#include "cli_defs.h"
#include "cli_records.h"
#include "cli_timeline.h"

#define PAGE 1000

/* Room for why a record cannot be decoded, whole at the event store's
 * ceilings: "could not decode event N (TYPE) of stream "STREAM": REASON",
 * TYPE up to ES_MAX_TYPE bytes, STREAM up to ES_MAX_STREAM_ID, REASON
 * one of saga_core_strerror's. A replay line (what) holds it and more. */
#define DECODE_WHY_SIZE                                                      \
  (sizeof "could not decode event -9223372036854775808 () of stream \"\": " + \
   ES_MAX_TYPE + ES_MAX_STREAM_ID + 64)
#define REPLAY_WHAT_SIZE (DECODE_WHY_SIZE + 256)

int cli_defs_has_type(const cli_settings_t *s, const char *type,
                      uint32_t version, int *found) {
  int rc;
  saga_registry_t *reg = cli_defs_load_folder(s, &rc);
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
  saga_registry_t *reg = cli_defs_load_folder(s, &rc);
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
  /* A database without the event store, or with one of another release:
   * say which and what to run, not PostgreSQL's "relation does not
   * exist". */
  char why[1536];
  if (e == ES_ERR_SCHEMA && cli_db_store_schema_problem(s, why, sizeof why))
    return cli_fail(CLI_EXIT_FAIL, "%s", why);
  if (e == ES_ERR_CONNECTION)
    return cli_fail(CLI_EXIT_UNREACHABLE,
                    "could not connect to PostgreSQL at %s: %s", where,
                    *err != '\0' ? err : es_strerror(e));
  return cli_fail(CLI_EXIT_FAIL, "could not open the event store at %s: %s",
                  where, *err != '\0' ? err : es_strerror(e));
}

/* Called for each decoded record of a saga's stream (cli_records.h). */
typedef cli_record_fn record_fn;

/* Decode the events of page and call fn for each; *count grows, or
 * becomes -1 (line printed). A record that cannot be decoded ends the
 * read: with bad (DECODE_WHY_SIZE bytes hold it whole), its reason goes
 * there (nothing printed, *count kept); without, it is printed and *count
 * becomes -1. */
static void page_records(const es_page_t *page, const char *stream,
                         saga_record_t *rec, record_fn fn, void *arg,
                         int64_t *count, char *bad, size_t badlen) {
  for (size_t i = 0; i < page->n && *count >= 0; i++) {
    const es_recorded_t *ev = &page->events[i];
    int d = saga_codec_decode(ev->data, ev->data_len, rec);
    if (d != SAGA_CORE_OK) {
      char why[DECODE_WHY_SIZE];
      snprintf(why, sizeof why,
               "could not decode event %" PRId64 " (%s) of stream \"%s\": "
               "%s",
               ev->version, ev->type, stream, saga_core_strerror(d));
      if (bad != NULL) {
        snprintf(bad, badlen, "%s", why);
        return;
      }
      cli_fail(CLI_EXIT_FAIL, "%s", why);
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

/* The reason in a message of the archive reader, without its leading
 * 'archive "PATH": ', which the caller's message says already. */
static const char *archive_reason(const char *msg) {
  if (strncmp(msg, "archive \"", 9) == 0) {
    const char *end = strstr(msg + 9, "\": ");
    if (end != NULL)
      return end + 3;
  }
  return msg;
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
             archive_reason(ar != NULL && *es_archive_last_error(ar) != '\0'
                                ? es_archive_last_error(ar)
                            : *err != '\0' ? err
                                           : es_strerror(e)));
    count = -1;
  }
  saga_record_t rec = {0};
  for (size_t i = 0; i < n; i++) {
    if (count >= 0)
      page_records(pages[i], stream, &rec, fn, arg, &count, NULL, 0);
    es_page_free(pages[i]);
  }
  free(pages);
  saga_record_clear(&rec);
  es_archive_close(ar);
  return count > INT32_MAX ? INT32_MAX : (int)count;
}

/* Calls fn for each decoded record of the saga's stream in order.
 * Returns the number of records, or -1 (line printed). A record that
 * cannot be decoded ends the read: with bad, its reason goes there and the
 * records before it are counted; without, it is an error. */
static int each_record_or(es_store_t *st, const char *saga_id, record_fn fn,
                          void *arg, char *bad, size_t badlen) {
  char stream[ES_MAX_STREAM_ID + 1];
  if (saga_stream(saga_id, stream, sizeof stream) != 0)
    return -1;
  if (bad != NULL)
    bad[0] = '\0';
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
    page_records(page, stream, &rec, fn, arg, &count, bad, badlen);
    if (n > 0)
      from = page->events[n - 1].version + 1;
    es_page_free(page);
    if (count < 0 || n < PAGE || (bad != NULL && bad[0] != '\0'))
      break;
  }
  saga_record_clear(&rec);
  return count > INT32_MAX ? INT32_MAX : (int)count;
}

static int each_record(es_store_t *st, const char *saga_id, record_fn fn,
                       void *arg) {
  return each_record_or(st, saga_id, fn, arg, NULL, 0);
}

int cli_each_saga_record(const cli_settings_t *s, const char *saga_id,
                         cli_record_fn fn, void *arg) {
  es_store_t *st = NULL;
  if (open_store(s, &st) != CLI_EXIT_OK)
    return -1;
  int n = each_record(st, saga_id, fn, arg);
  es_store_close(st);
  return n;
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
  cli_defs_t defs;
  const saga_def_t *def;
  cli_def_from_t from;
  cli_timeline_t tl;
  char type[SAGA_DEF_MAX_NAME + 1];
  uint32_t def_version;
  /* An archive's step names: why the definitions recorded in the store
   * were not read ("" when they were, or --definitions was given; room
   * for a lead-in, store and a reason of up to 1024 bytes), and the
   * database they were read from (cli_db_where). */
  char unnamed[1536];
  char store[384];
} history_t;

static int history_record(void *arg, int64_t version,
                          const saga_record_t *rec) {
  history_t *h = arg;
  if (rec->n > 0 && rec->events[0].type == SM_EV_STARTED &&
      h->type[0] == '\0') {
    snprintf(h->type, sizeof h->type, "%s", rec->events[0].def_name);
    h->def_version = rec->events[0].def_version;
    h->def = cli_defs_find(&h->defs, h->type, h->def_version, &h->from);
  }
  if (cli_timeline_add(&h->tl, h->def, version, rec->at_ms, rec->events,
                       rec->n) != 0) {
    cli_fail(CLI_EXIT_FAIL, "out of memory");
    return -1;
  }
  return 0;
}

/* Where the step names came from, for the header line. An archive's
 * missing names are explained by archive_unnamed_note instead. */
static const char *names_from(const history_t *h, int archive, char *buf,
                              size_t len) {
  if (h->from == CLI_DEF_NONE && archive)
    snprintf(buf, len, " (steps by number)");
  else if (h->from == CLI_DEF_RECORDED)
    snprintf(buf, len,
             " (definition as recorded in the store, sha256 "
             "%.12s)",
             h->def->sha256);
  else if (h->from == CLI_DEF_FOLDER)
    snprintf(buf, len, " (definition from the definitions folder)");
  else
    snprintf(buf, len,
             " (steps by number: the store has no recorded "
             "definition %s v%" PRIu32 "; give --definitions "
             "for names)",
             h->type, h->def_version);
  return buf;
}

/* The step names of an archive: from --definitions when given, else
 * from the definitions recorded in the store when PostgreSQL is
 * configured and reachable, else none, and h->unnamed says why: an
 * archive is read on another machine, years later, where the database may
 * be gone, so that is a note, not an error. Returns an exit code (a
 * definitions folder or a conninfo that cannot be used at all; line
 * printed). */
static int archive_defs(const cli_settings_t *s, history_t *h) {
  int rc = cli_defs_open(s, NULL, 1, &h->defs);
  if (rc != CLI_EXIT_OK || h->defs.folder != NULL)
    return rc;
  if (cli_get(s, CLI_SET_PG) == NULL) {
    snprintf(h->unnamed, sizeof h->unnamed,
             "no PostgreSQL is configured to read the definitions recorded "
             "in the store from");
    return CLI_EXIT_OK;
  }
  PGconn *c = NULL;
  char why[1024];
  rc = cli_db_connect_quiet(s, &c, why, sizeof why);
  if (rc == CLI_EXIT_UNREACHABLE) {
    snprintf(h->unnamed, sizeof h->unnamed,
             "the definitions recorded in the store could not be read: %s",
             why);
    return CLI_EXIT_OK;
  }
  if (rc != CLI_EXIT_OK)
    return rc;
  cli_db_where(c, h->store, sizeof h->store);
  if (cli_defs_read_recorded(c, &h->defs.recorded, why, sizeof why) !=
      CLI_EXIT_OK)
    snprintf(h->unnamed, sizeof h->unnamed, "%s: %s", h->store, why);
  PQfinish(c);
  return CLI_EXIT_OK;
}

/* One note on stderr when an archive's steps show by number: why, and
 * how to get their names. */
static void archive_unnamed_note(const history_t *h, const char *id) {
  if (h->from != CLI_DEF_NONE)
    return;
  if (h->type[0] == '\0') {
    fprintf(stderr,
            "sagactl: note: steps shown by number: the archive holds no "
            "Started event of saga \"%s\", which names its definition (it "
            "may be in an older archive)\n",
            id);
    return;
  }
  char missing[sizeof h->store + sizeof h->type + 64];
  const char *why = h->unnamed;
  if (h->unnamed[0] == '\0') {
    why = missing;
    if (h->defs.folder != NULL)
      snprintf(missing, sizeof missing,
               "the definitions folder has no %s v%" PRIu32, h->type,
               h->def_version);
    else
      snprintf(missing, sizeof missing,
               "%s has no recorded definition %s v%" PRIu32, h->store,
               h->type, h->def_version);
  }
  fprintf(stderr,
          "sagactl: note: steps shown by number: %s; give --definitions DIR "
          "(a folder holding %s v%" PRIu32 ") for their names\n",
          why, h->type, h->def_version);
}

int cli_cmd_history(const cli_args_t *a, const cli_settings_t *s) {
  if (a->npos != 1)
    return cli_fail(CLI_EXIT_USAGE,
                    "history: expected one saga id, got %zu arguments",
                    a->npos);
  const char *id = a->pos[0];
  history_t h = {0};
  h.tl.keep_payloads = a->opt[CLI_OPT_PAYLOADS] != NULL;
  cli_output_t fmt;
  int rc = cli_output_of(a, &fmt);
  if (rc != CLI_EXIT_OK)
    return rc;
  es_store_t *st = NULL;
  PGconn *c = NULL;
  const char *archive = a->opt[CLI_OPT_ARCHIVE];
  /* An archive needs no database: the store only names its steps when it
   * can be reached (archive_defs). */
  if (archive != NULL) {
    if ((rc = archive_defs(s, &h)) != CLI_EXIT_OK)
      goto out;
  } else if ((rc = cli_db_connect(s, &c)) != CLI_EXIT_OK ||
             (rc = cli_defs_open(s, c, 1, &h.defs)) != CLI_EXIT_OK) {
    goto out;
  }
  PQfinish(c);
  c = NULL;
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
  if (archive != NULL)
    archive_unnamed_note(&h, id);
  if (fmt == CLI_OUT_JSONL) { /* one event per line */
    cJSON *events = cli_timeline_json(&h.tl);
    cJSON *e = events != NULL ? events->child : NULL;
    rc = events == NULL ? cli_fail(CLI_EXIT_FAIL, "out of memory")
                        : CLI_EXIT_OK;
    for (; e != NULL && rc == CLI_EXIT_OK; e = e->next)
      rc = cli_print_json(cJSON_Duplicate(e, 1));
    cJSON_Delete(events);
  } else if (fmt == CLI_OUT_JSON) {
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
    static const char *const FROM[] = {NULL, "store", "folder"};
    if (h.from != CLI_DEF_NONE) {
      cJSON_AddStringToObject(o, "definition_from", FROM[h.from]);
      cJSON_AddStringToObject(o, "definition_sha256", h.def->sha256);
    } else {
      cJSON_AddNullToObject(o, "definition_from");
      cJSON_AddNullToObject(o, "definition_sha256");
    }
    cJSON_AddNumberToObject(o, "records", n);
    cJSON_AddItemToObject(o, "events", events);
    rc = cli_print_json(o);
  } else {
    char from[256];
    printf("saga %s: %s v%" PRIu32 ", %d records%s\n\n", id, h.type,
           h.def_version, n,
           names_from(&h, archive != NULL, from, sizeof from));
    cli_timeline_print(&h.tl, stdout);
  }
out:
  PQfinish(c);
  es_store_close(st);
  cli_timeline_free(&h.tl);
  cli_defs_clear(&h.defs);
  return rc;
}

/* ---- replay ---------------------------------------------------------- */

typedef struct {
  const cli_defs_t *defs; /* where the saga's definition is looked up */
  const saga_def_t *use;  /* or this one (a dry run's candidate) */
  const char *id;
  sm_t *saga;
  int missing;         /* no definition for it: not replayed */
  uint64_t steps_seen; /* bit i: an event names step i */
  char problem[256];   /* set when the events cannot be replayed */
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
        r->use != NULL
            ? r->use
            : cli_defs_find(r->defs, st->def_name, st->def_version, NULL);
    if (def == NULL) {
      r->missing = 1;
      snprintf(r->problem, sizeof r->problem,
               "definition %s v%" PRIu32 " is neither recorded in the store "
               "nor in a definitions folder",
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
  for (size_t i = 0; i < rec->n; i++)
    if (rec->events[i].type != SM_EV_STARTED &&
        rec->events[i].type != SM_EV_COMPLETED &&
        rec->events[i].type != SM_EV_COMPENSATED &&
        rec->events[i].type != SM_EV_RESOLVED &&
        rec->events[i].type != SM_EV_CANCEL_REQUESTED &&
        rec->events[i].step < 64)
      r->steps_seen |= (uint64_t)1 << rec->events[i].step;
  int e = saga_codec_apply(r->saga, rec);
  if (e != SAGA_CORE_OK)
    snprintf(r->problem, sizeof r->problem,
             "record %" PRId64 " (%s) does not fit the saga: %s", version,
             saga_codec_record_type(rec->events, rec->n),
             saga_core_strerror(e));
  return 0;
}

typedef enum {
  REP_OK,
  REP_MISMATCH,
  REP_MISSING,
  REP_CHANGED,
  REP_CANNOT,
  REP_FAILED,  /* its stream cannot be read through: not replayed */
  REP_SKIPPED, /* a dry run's finished saga: not checked, not counted */
} rep_kind_t;

typedef struct {
  size_t checked, by_kind[REP_SKIPPED + 1];
  cJSON *json; /* array of results, or NULL for text */
  int limit_reached; /* --all read --limit index rows and there are more */
} replay_report_t;

static void report(replay_report_t *rep, const char *id, const char *what,
                   rep_kind_t kind) {
  static const char *const LABEL[] = {"ok",     "MISMATCH", "MISSING",
                                      "CHANGED", "CANNOT",  "FAILED",
                                      "SKIPPED"};
  static const char *const RESULT[] = {"ok",     "mismatch", "missing",
                                       "changed", "cannot",  "failed",
                                       "skipped"};
  rep->checked += kind != REP_SKIPPED;
  rep->by_kind[kind]++;
  if (rep->json != NULL) {
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
      return;
    cJSON_AddStringToObject(o, "saga_id", id);
    if (kind == REP_SKIPPED)
      cJSON_AddNullToObject(o, "consistent");
    else
      cJSON_AddBoolToObject(o, "consistent", kind == REP_OK);
    cJSON_AddStringToObject(o, "result", RESULT[kind]);
    cJSON_AddStringToObject(o, "detail", what);
    cJSON_AddItemToArray(rep->json, o);
  } else {
    printf("%-8s %s: %s\n", LABEL[kind], id, what);
  }
}

/* Replay one saga and compare with its index row (row may be NULL when
 * the index has none). Returns 0 or -1 on a fatal error (printed). */
static int replay_one(es_store_t *st, const cli_defs_t *defs, const char *id,
                      const cli_index_row_t *row, replay_report_t *rep) {
  replay_t r = {.defs = defs, .id = id};
  char bad[DECODE_WHY_SIZE];
  int n = each_record_or(st, id, replay_record, &r, bad, sizeof bad);
  if (n < 0) {
    free(r.saga);
    return -1;
  }
  char what[REPLAY_WHAT_SIZE];
  rep_kind_t kind = REP_MISMATCH;
  if (bad[0] != '\0') {
    kind = REP_FAILED;
    snprintf(what, sizeof what, "%s", bad);
  } else if (n == 0 && row == NULL) {
    snprintf(what, sizeof what, "not found: no saga_index row and no events");
  } else if (n == 0) {
    snprintf(what, sizeof what, "in saga_index (status %s) but stream "
                                "\"saga-%s\" has no events",
             row != NULL ? row->status : "?", id);
  } else if (r.missing) {
    kind = REP_MISSING;
    snprintf(what, sizeof what, "not checked: %s", r.problem);
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
    if (w == 0) {
      kind = REP_OK;
      snprintf(what, sizeof what, "%s at version %" PRIu32, status,
               r.saga->version);
    }
  }
  report(rep, id, what, kind);
  free(r.saga);
  return 0;
}

/* The first step the saga reached (a bit of seen) that is named
 * differently, or missing, in cand than in rec; -1 when none is. */
static int renamed_step(const saga_def_t *rec, const saga_def_t *cand,
                        uint64_t seen) {
  for (uint32_t i = 0; i < rec->nsteps && i < 64; i++)
    if ((seen >> i & 1) &&
        (i >= cand->nsteps || strcmp(rec->steps[i].name, cand->steps[i].name)))
      return (int)i;
  return -1;
}

/* The dry run of a new folder for one saga: could the folder's version
 * of its type -- its own version when the folder has it, else the
 * newest -- take the saga over? Its history must replay through that
 * version, and every step it reached must have the same name there as in
 * the recorded version. Returns 0 or -1 on a fatal error (printed). */
static int dry_run_one(es_store_t *st, const cli_defs_t *defs,
                       const saga_registry_t *folder, const char *dir,
                       const cli_index_row_t *row, replay_report_t *rep) {
  uint32_t v = (uint32_t)row->def_version;
  const saga_def_t *rec = cli_defs_find(defs, row->saga_type, v, NULL);
  const saga_def_t *same = saga_registry_find(folder, row->saga_type, v);
  const saga_def_t *cand =
      same != NULL ? same : saga_registry_find(folder, row->saga_type, 0);
  char what[REPLAY_WHAT_SIZE];
  if (cand == NULL) {
    snprintf(what, sizeof what,
             "%s v%" PRIu32 " (%s): \"%s\" has no definition of type %s: "
             "a sagad on it would leave this saga alone",
             row->saga_type, v, row->status, dir, row->saga_type);
    report(rep, row->saga_id, what, REP_MISSING);
    return 0;
  }
  if (same != NULL && rec != NULL && strcmp(same->sha256, rec->sha256)) {
    snprintf(what, sizeof what,
             "%s v%" PRIu32 " in \"%s\" (%s, sha256 %.12s) differs from the "
             "recorded v%" PRIu32 " (sha256 %.12s): sagad would refuse to "
             "start; give the changed definition a new version",
             row->saga_type, v, dir, same->source, same->sha256, v,
             rec->sha256);
    report(rep, row->saga_id, what, REP_CHANGED);
    return 0;
  }
  /* The candidate under the saga's own version number: the machine
   * checks the Started event against it, the rest is the new layout. */
  saga_def_t shadow = *cand;
  shadow.version = v;
  replay_t r = {.use = &shadow, .id = row->saga_id};
  char unread[DECODE_WHY_SIZE];
  int n = each_record_or(st, row->saga_id, replay_record, &r, unread,
                         sizeof unread);
  free(r.saga);
  if (n < 0)
    return -1;
  char to[96];
  snprintf(to, sizeof to, "v%" PRIu32 " in \"%.40s\"", cand->version, dir);
  rep_kind_t kind = REP_CANNOT;
  int bad;
  if (unread[0] != '\0') {
    kind = REP_FAILED;
    snprintf(what, sizeof what, "%s", unread);
  } else if (n == 0) {
    snprintf(what, sizeof what, "stream \"saga-%s\" has no events",
             row->saga_id);
  } else if (r.problem[0] != '\0') {
    snprintf(what, sizeof what,
             "%s v%" PRIu32 " (%s): %s cannot take it "
             "over: %s",
             row->saga_type, v, row->status, to, r.problem);
  } else if (rec != NULL &&
             (bad = renamed_step(rec, cand, r.steps_seen)) >= 0) {
    snprintf(what, sizeof what,
             "%s v%" PRIu32 " (%s): %s cannot take it over: its step %d"
             " is \"%s\" in v%" PRIu32 " but %s%s%s in v%" PRIu32,
             row->saga_type, v, row->status, to, bad, rec->steps[bad].name, v,
             (uint32_t)bad < cand->nsteps ? "\"" : "missing",
             (uint32_t)bad < cand->nsteps ? cand->steps[bad].name : "",
             (uint32_t)bad < cand->nsteps ? "\"" : "", cand->version);
  } else {
    kind = REP_OK;
    if (same != NULL)
      snprintf(what, sizeof what,
               "%s v%" PRIu32 " (%s): %s %s; its %d records replay",
               row->saga_type, v, row->status, to,
               rec != NULL ? "is the recorded body"
                           : "(no recorded body to compare)",
               n);
    else
      snprintf(what, sizeof what,
               "%s v%" PRIu32 " (%s): %s could take it over: its %d records "
               "replay and the steps it reached keep their names (sagad "
               "runs a saga only on its own version: keep v%" PRIu32
               " while sagas run on it)",
               row->saga_type, v, row->status, to, n, v);
  }
  report(rep, row->saga_id, what, kind);
  return 0;
}

/* A finished saga a dry run does not check (its folder will never carry
 * it on): said for one saga id, counted for --all. */
static void dry_run_skip(const cli_index_row_t *row, replay_report_t *rep,
                         int quiet) {
  char what[512];
  if (quiet) {
    rep->by_kind[REP_SKIPPED]++;
    return;
  }
  snprintf(what, sizeof what,
           "%s v%d (%s): finished, not checked: the dry run checks the "
           "sagas a new folder would carry on",
           row->saga_type, row->def_version, row->status);
  report(rep, row->saga_id, what, REP_SKIPPED);
}

static int cmp_id(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Saga ids that have a Started record but no saga_index row: not among
 * `rows` and, when they are not the whole index (the limit was reached),
 * not in it either. Returns 0, or -1 on a fatal error (printed). */
static int replay_orphans(PGconn *c, es_store_t *st, const cli_defs_t *defs,
                          const cli_index_row_t *rows, size_t nrows,
                          replay_report_t *rep) {
  const char **ids = malloc((nrows > 0 ? nrows : 1) * sizeof *ids);
  if (ids == NULL)
    return cli_fail(CLI_EXIT_FAIL, "out of memory"), -1;
  for (size_t j = 0; j < nrows; j++)
    ids[j] = rows[j].saga_id;
  qsort(ids, nrows, sizeof *ids, cmp_id);
  es_filter_t f = {.category = "saga", .type = "Started"};
  es_pos_t from = {0, 0};
  int rc = 0;
  for (size_t n = 1; rc == 0 && n > 0;) {
    es_page_t *page = NULL;
    int e = es_read_all(st, from, &f, PAGE, &page);
    if (e != ES_ERR_OK) {
      cli_fail(CLI_EXIT_FAIL, "could not read the saga streams: %s",
               *es_store_last_error(st) != '\0' ? es_store_last_error(st)
                                                : es_strerror(e));
      rc = -1;
      break;
    }
    n = page->n;
    for (size_t i = 0; rc == 0 && i < n; i++) {
      const char *id = page->events[i].stream_id + 5; /* after "saga-" */
      if (bsearch(&id, ids, nrows, sizeof *ids, cmp_id) != NULL)
        continue;
      cli_index_row_t row;
      int found = rep->limit_reached ? cli_db_get(c, id, &row) : 1;
      if (found == 0)
        cli_index_row_clear(&row); /* indexed past the limit */
      else if (found < 0 || replay_one(st, defs, id, NULL, rep) != 0)
        rc = -1;
    }
    from = page->next;
    es_page_free(page);
  }
  free(ids);
  return rc;
}

/* Print the report and its summary; the JSON array passes to the printed
 * document (rep->json becomes NULL). The exit code: 1 when any saga
 * checked is not ok. */
static int print_replay(replay_report_t *rep, int dry, const char *dir) {
  size_t bad = rep->checked - rep->by_kind[REP_OK];
  size_t failed = rep->by_kind[REP_FAILED];
  size_t skipped = rep->by_kind[REP_SKIPPED];
  if (rep->json != NULL) {
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
      return cli_fail(CLI_EXIT_FAIL, "out of memory");
    cJSON_AddNumberToObject(o, "checked", (double)rep->checked);
    if (dry) {
      cJSON_AddBoolToObject(o, "dry_run", 1);
      cJSON_AddStringToObject(o, "definitions", dir);
      cJSON_AddNumberToObject(o, "could", (double)rep->by_kind[REP_OK]);
      cJSON_AddNumberToObject(o, "could_not", (double)bad);
      cJSON_AddNumberToObject(o, "finished_not_checked", (double)skipped);
    } else {
      cJSON_AddNumberToObject(o, "mismatched",
                              (double)rep->by_kind[REP_MISMATCH]);
      cJSON_AddNumberToObject(o, "missing", (double)rep->by_kind[REP_MISSING]);
    }
    cJSON_AddNumberToObject(o, "failed", (double)failed);
    cJSON_AddBoolToObject(o, "limit_reached", rep->limit_reached);
    cJSON_AddItemToObject(o, "sagas", rep->json);
    rep->json = NULL;
    if (cli_print_json(o) != CLI_EXIT_OK)
      return CLI_EXIT_FAIL;
  } else if (dry) {
    printf("dry run of \"%s\" against %zu sagas: %zu could be taken over, "
           "%zu could not",
           dir, rep->checked, rep->by_kind[REP_OK], bad);
    if (skipped > 0)
      printf(" (%zu finished saga%s not checked)", skipped,
             skipped == 1 ? "" : "s");
    putchar('\n');
  } else {
    printf("replayed %zu sagas: %zu consistent, %zu mismatched, %zu missing "
           "a definition",
           rep->checked, rep->by_kind[REP_OK], rep->by_kind[REP_MISMATCH],
           rep->by_kind[REP_MISSING]);
    if (failed > 0)
      printf(", %zu failed", failed);
    putchar('\n');
  }
  return bad > 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cli_cmd_replay(const cli_args_t *a, const cli_settings_t *s) {
  int all = a->opt[CLI_OPT_ALL] != NULL;
  int dry = a->opt[CLI_OPT_DRY_RUN] != NULL;
  const char *dir = cli_get(s, CLI_SET_DEFINITIONS);
  if ((all && a->npos != 0) || (!all && a->npos != 1))
    return cli_fail(CLI_EXIT_USAGE, "replay: give one saga id or --all");
  if (dry && dir == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "replay --dry-run checks a new definitions folder "
                    "against the recorded histories: give --definitions "
                    "NEW_DIR");
  uint64_t limit = IQ_LIMIT_MAX;
  if (a->opt[CLI_OPT_LIMIT] != NULL && !all)
    return cli_fail(CLI_EXIT_USAGE, "replay: --limit applies to --all");
  char shown[CLI_SHOW_SIZE];
  if (a->opt[CLI_OPT_LIMIT] != NULL &&
      cli_parse_uint(a->opt[CLI_OPT_LIMIT], 1, IQ_LIMIT_MAX, &limit) != 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "--limit: expected a number between 1 and %d, got "
                    "\"%s\"",
                    IQ_LIMIT_MAX,
                    cli_show(a->opt[CLI_OPT_LIMIT], shown, sizeof shown));
  int rc = CLI_EXIT_OK;
  PGconn *c = NULL;
  es_store_t *st = NULL;
  cli_defs_t defs = {0};
  saga_registry_t *folder = NULL;
  cli_list_t list = {0};
  cli_index_row_t *rows = NULL;
  size_t nrows = 0;
  replay_report_t rep = {0};
  /* A dry run compares the folder with the recorded definitions; a
   * replay takes the recorded ones, the folder for what is not recorded. */
  if ((dry && (folder = cli_defs_load_folder(s, &rc)) == NULL) ||
      (rc = cli_db_connect(s, &c)) != CLI_EXIT_OK ||
      (rc = cli_defs_open(s, c, !dry, &defs)) != CLI_EXIT_OK ||
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
    /* the index holds more than --limit rows: say so, and do not take
     * the streams of the rest for streams without a row */
    rep.limit_reached = list.next[0] != '\0';
    if (rep.limit_reached)
      fprintf(stderr,
              "sagactl: note: replay --all stopped at --limit %" PRIu64
              " sagas of saga_index (oldest first): the rest were not "
              "checked (--limit: 1 to %d, default %d)\n",
              limit, IQ_LIMIT_MAX, IQ_LIMIT_MAX);
  } else {
    rows = calloc(1, sizeof *rows);
    if (rows == NULL)
      goto out;
    int found = cli_db_get(c, a->pos[0], rows);
    if (found < 0)
      goto out;
    nrows = found == 0 ? 1 : 0;
    if (dry && nrows == 0) {
      rc = cli_fail(CLI_EXIT_FAIL, "saga \"%s\" not found in saga_index",
                    a->pos[0]);
      goto out;
    }
  }
  if (a->opt[CLI_OPT_JSON] != NULL && (rep.json = cJSON_CreateArray()) == NULL)
    goto out;
  for (size_t i = 0; i < nrows; i++) {
    const cli_index_row_t *row = &rows[i];
    /* a dry run is about the sagas a new folder would have to carry on */
    if (dry && (!strcmp(row->status, "completed") ||
                !strcmp(row->status, "compensated")))
      dry_run_skip(row, &rep, all);
    else if (dry ? dry_run_one(st, &defs, folder, dir, row, &rep) != 0
                 : replay_one(st, &defs, row->saga_id, row, &rep) != 0)
      goto out;
  }
  if (!dry &&
      (all ? replay_orphans(c, st, &defs, rows, nrows, &rep) != 0
           : (nrows == 0 && replay_one(st, &defs, a->pos[0], NULL, &rep) != 0)))
    goto out;
  rc = print_replay(&rep, dry, dir);
out:
  cJSON_Delete(rep.json);
  for (size_t i = 0; i < nrows; i++)
    cli_index_row_clear(&rows[i]);
  free(rows);
  es_store_close(st);
  PQfinish(c);
  cli_defs_clear(&defs);
  saga_registry_free(folder);
  return rc;
}
