/* start and cancel, through the client library's starter. start sends
 * StartSaga (idempotent on the saga id) and prints the id; cancel sends
 * CancelSaga. With --wait, both await the answer notification. Every wait
 * is bounded: a Kafka that cannot be reached is reported within the
 * configured timeout. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "saga/client.h"

#include "cli_cmds.h"
#include "cli_db.h"
#include "json_exact.h"
#include "text.h"
#include "timetext.h"
#include "wire.h"

/* One saga id ceiling everywhere (docs/protocol.md): the coordinator,
 * the client library and sagactl refuse a longer id, never cut it. */
#define START_ID_MAX SAGA_MAX_ID
_Static_assert(CLI_SAGA_ID_MAX == SAGA_MAX_ID,
               "one saga id ceiling for every command");

/* Read --input: inline JSON text, or @file, @- for stdin, at most max
 * bytes. Returns CLI_EXIT_OK with a malloc'd NUL-terminated *out. */
static int read_input(const char *arg, size_t max, char **out, size_t *len) {
  *out = NULL;
  if (arg[0] != '@') {
    size_t n = strlen(arg);
    if (n > max)
      return cli_fail(CLI_EXIT_USAGE,
                      "--input: %zu bytes, past the ceiling of %zu bytes "
                      "(max_input)",
                      n, max);
    *out = strdup(arg);
    *len = n;
    return *out != NULL ? CLI_EXIT_OK : cli_fail(CLI_EXIT_FAIL, "out of memory");
  }
  const char *path = arg + 1;
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (f == NULL)
    return cli_fail(CLI_EXIT_USAGE, "--input: could not open \"%s\": %s", path,
                    strerror(errno));
  char *buf = malloc(max + 2);
  if (buf == NULL) {
    if (f != stdin)
      fclose(f);
    return cli_fail(CLI_EXIT_FAIL, "out of memory");
  }
  errno = 0;
  size_t n = fread(buf, 1, max + 1, f);
  int bad = ferror(f), why = errno;
  if (f != stdin)
    fclose(f);
  if (bad) {
    free(buf);
    /* a folder opens, and its read fails */
    return cli_fail(CLI_EXIT_USAGE, "--input: could not read \"%s\": %s",
                    path,
                    why == EISDIR ? "it is a directory (give a file, or @- "
                                    "for stdin)"
                    : why != 0    ? strerror(why)
                                  : "read error");
  }
  if (n > max) {
    free(buf);
    return cli_fail(CLI_EXIT_USAGE,
                    "--input: \"%s\" is larger than the ceiling of %zu bytes "
                    "(max_input)",
                    path, max);
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return CLI_EXIT_OK;
}

static int check_json(const char *text, size_t len, const char *what) {
  if (memchr(text, '\0', len) != NULL)
    return cli_fail(CLI_EXIT_USAGE, "%s: malformed JSON: NUL byte", what);
  /* the saga would see the string cut there (the coordinator's JSON
   * reader) */
  size_t nul = saga__json_nul_escape_at(text, len);
  if (nul < len)
    return cli_fail(CLI_EXIT_USAGE,
                    "%s: a \\u0000 (NUL) in a string, at byte %zu, is not "
                    "supported",
                    what, nul);
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
  if (j != NULL) {
    cJSON_Delete(j);
    /* what cJSON takes but JSON does not (the admin endpoint refuses the
     * same): bytes that are not UTF-8, a raw control character in a
     * string, a number such as 01 */
    size_t bad = saga__utf8_bad_at(text, len);
    const char *why = "a byte that is not UTF-8";
    if (bad == len) {
      bad = saga_json_strict_bad_at(text, len);
      why = bad < len && (unsigned char)text[bad] < 0x20
                ? "a raw control character (a string escapes it)"
                : "a number JSON does not allow";
    }
    if (bad < len)
      return cli_fail(CLI_EXIT_USAGE, "%s: malformed JSON: %s at byte %zu",
                      what, why, bad);
    return CLI_EXIT_OK;
  }
  size_t at = end != NULL && end >= text ? (size_t)(end - text) : 0;
  if (at > len)
    at = len;
  /* the text from there: 20 bytes, and the rest of a UTF-8 sequence they
   * cut, shown as cli_show shows a value (a newline as \x0a) */
  char snippet[24], shown[CLI_SHOW_SIZE];
  size_t n = len - at < 20 ? len - at : 20;
  while (n < len - at && n < sizeof snippet - 1 &&
         ((unsigned char)text[at + n] & 0xc0) == 0x80)
    n++;
  memcpy(snippet, text + at, n);
  snippet[n] = '\0';
  return cli_fail(CLI_EXIT_USAGE, "%s: malformed JSON at byte %zu: \"%s\"",
                  what, at, cli_show(snippet, shown, sizeof shown));
}

static int check_id(const char *id) {
  size_t n = strlen(id);
  if (n == 0)
    return cli_fail(CLI_EXIT_USAGE, "--id: saga_id is missing");
  if (n > START_ID_MAX)
    return cli_fail(CLI_EXIT_USAGE,
                    "--id: saga_id is %zu bytes long, the ceiling is %d", n,
                    START_ID_MAX);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)id[i] <= ' ' || id[i] == 0x7f)
      return cli_fail(CLI_EXIT_USAGE,
                      "--id: no spaces or control characters in a saga id");
  return CLI_EXIT_OK;
}

typedef struct run {
  uv_loop_t loop;
  uv_timer_t timer;
  saga_starter_t *starter;
  int started, start_err;
  int awaited, await_err;
  saga_notification_kind_t kind;
  char reason[1024]; /* a REJECTED reason names a type of up to 255 bytes */
  int timed_out, closed;
  char id[SAGA_MAX_ID + 1];
} run_t;

static void on_started(saga_starter_t *s, int err, const char *saga_id,
                       void *arg) {
  (void)s;
  (void)saga_id;
  run_t *r = arg;
  r->started = 1;
  r->start_err = err;
}

static void on_outcome(saga_starter_t *s, int err,
                       const saga_notification_t *n, void *arg) {
  (void)s;
  run_t *r = arg;
  r->awaited = 1;
  r->await_err = err;
  if (err == SAGA_OK && n != NULL) {
    r->kind = n->kind;
    snprintf(r->reason, sizeof r->reason, "%s",
             n->reason != NULL ? n->reason : "");
  }
}

static void on_timer(uv_timer_t *t) {
  run_t *r = t->data;
  r->timed_out = 1;
}

static void on_closed(void *arg) {
  run_t *r = arg;
  r->closed = 1;
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

/* Run the loop until *flag is set or the timer fires. */
static void run_until(run_t *r, const int *flag, int64_t ms) {
  r->timed_out = 0;
  uv_timer_start(&r->timer, on_timer, (uint64_t)ms, 0);
  while (!*flag && !r->timed_out)
    uv_run(&r->loop, UV_RUN_ONCE);
  uv_timer_stop(&r->timer);
}

static void finish(run_t *r) {
  if (r->starter != NULL) {
    saga_starter_close(r->starter, on_closed, r);
    while (!r->closed)
      uv_run(&r->loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&r->timer, on_handle_closed);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  uv_loop_close(&r->loop);
}

static const char *kind_status(saga_notification_kind_t k) {
  switch (k) {
  case SAGA_NOTIFY_COMPLETED:
    return "completed";
  case SAGA_NOTIFY_COMPENSATED:
    return "compensated";
  case SAGA_NOTIFY_COMPENSATION_FAILED:
    return "compensation_failed";
  case SAGA_NOTIFY_REJECTED:
    return "rejected";
  default:
    return saga_notification_kind_name((int)k);
  }
}

/* Set up r's loop and its starter on the configured Kafka. Returns an
 * exit code (line printed); finish(r) in every case. */
static int open_starter(run_t *r, const cli_settings_t *s) {
  const char *bootstrap = cli_get(s, CLI_SET_KAFKA);
  uv_loop_init(&r->loop);
  uv_timer_init(&r->loop, &r->timer);
  r->timer.data = r;
  saga_starter_config_t cfg = {
      .kafka = {.bootstrap_servers = bootstrap,
                .properties = (const char *const *)s->kafka_props},
      .inbox_topic = cli_get(s, CLI_SET_INBOX),
      .notifications_topic = cli_get(s, CLI_SET_NOTIFICATIONS),
      .setup_timeout_ms = s->timeout_ms,
  };
  char err[512] = "";
  int e = saga_starter_new(&r->loop, &cfg, &r->starter, err, sizeof err);
  if (e == SAGA_OK)
    return CLI_EXIT_OK;
  r->starter = NULL;
  return cli_fail(e == SAGA_EINVAL || e == SAGA_ENOMEM ? CLI_EXIT_USAGE
                                                       : CLI_EXIT_UNREACHABLE,
                  "could not reach Kafka at %s: %s", bootstrap,
                  *err != '\0' ? err : saga_strerror(e));
}

/* Wait for the acknowledgement of the message r->id was sent with
 * (`what`: "StartSaga", "CancelSaga"). Returns an exit code (line
 * printed). */
static int await_sent(run_t *r, const cli_settings_t *s, const char *what) {
  char t[32];
  run_until(r, &r->started, s->timeout_ms);
  if (!r->started)
    return cli_fail(CLI_EXIT_UNREACHABLE,
                    "%s for saga %s not acknowledged by Kafka at %s within %s",
                    what, r->id, cli_get(s, CLI_SET_KAFKA),
                    cli_format_duration(s->timeout_ms, t, sizeof t));
  if (r->start_err != SAGA_OK)
    return cli_fail(CLI_EXIT_UNREACHABLE,
                    "could not deliver %s for saga %s to \"%s\": %s", what,
                    r->id, cli_get(s, CLI_SET_INBOX),
                    saga_strerror(r->start_err));
  return CLI_EXIT_OK;
}

/* The longest --wait: a bound the timers' arithmetic never overflows,
 * well past any saga an operator waits on at a terminal. */
#define WAIT_MAX_MS (30LL * 86400000)

/* --wait DURATION into *ms (-1 when absent). Returns an exit code. */
static int wait_option(const cli_args_t *a, int64_t *ms) {
  char why[CLI_SHOW_SIZE + 160], shown[CLI_SHOW_SIZE];
  *ms = -1;
  if (a->opt[CLI_OPT_WAIT] == NULL)
    return CLI_EXIT_OK;
  if (saga__duration_parse(a->opt[CLI_OPT_WAIT], ms) != 0)
    return cli_fail(CLI_EXIT_USAGE, "--wait: %s",
                    cli_duration_why(a->opt[CLI_OPT_WAIT], why, sizeof why));
  if (*ms <= 0 || *ms > WAIT_MAX_MS)
    return cli_fail(CLI_EXIT_USAGE,
                    "--wait: must be longer than 0ms and at most 30d, got "
                    "\"%s\"",
                    cli_show(a->opt[CLI_OPT_WAIT], shown, sizeof shown));
  return CLI_EXIT_OK;
}

int cli_cmd_start(const cli_args_t *a, const cli_settings_t *s) {
  if (a->npos != 1)
    return cli_fail(CLI_EXIT_USAGE,
                    "start: expected one saga type, got %zu arguments",
                    a->npos);
  const char *type = a->pos[0];
  if (a->opt[CLI_OPT_INPUT] == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "start: --input JSON|@FILE is required (use '{}' for "
                    "none)");
  const char *id = a->opt[CLI_OPT_ID];
  if (id != NULL && check_id(id) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  /* the rest of the wire's rules for the two (UTF-8, '/' in an id, a
   * type's length and characters), before Kafka is reached: the message
   * names the field */
  Saga__V1__StartSaga probe;
  saga__v1__start_saga__init(&probe);
  probe.saga_id = SAGA_MUT(id != NULL ? id : "x");
  probe.saga_type = SAGA_MUT(type);
  char why[300];
  if (saga__wire_check(&probe.base, why, sizeof why) != 0)
    return cli_fail(CLI_EXIT_USAGE, "start: %s", why);
  uint64_t def_version = 0;
  char shown[CLI_SHOW_SIZE];
  if (a->opt[CLI_OPT_DEF_VERSION] != NULL &&
      cli_parse_uint(a->opt[CLI_OPT_DEF_VERSION], 1, UINT32_MAX,
                     &def_version) != 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "--def-version: expected a version number, got \"%s\"",
                    cli_show(a->opt[CLI_OPT_DEF_VERSION], shown,
                             sizeof shown));
  int64_t wait_ms;
  if (wait_option(a, &wait_ms) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  const char *bootstrap = cli_get(s, CLI_SET_KAFKA);
  if (bootstrap == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "no Kafka configured: give --kafka BOOTSTRAP, "
                    "SAGA_KAFKA_BOOTSTRAP or \"kafka = ...\" in the config "
                    "file");
  char *input = NULL;
  size_t input_len = 0;
  int rc = read_input(a->opt[CLI_OPT_INPUT], s->max_input, &input,
                      &input_len);
  if (rc != CLI_EXIT_OK)
    return rc;
  if ((rc = check_json(input, input_len, "--input")) != CLI_EXIT_OK) {
    free(input);
    return rc;
  }
  if (cli_get(s, CLI_SET_DEFINITIONS) != NULL) {
    int found = 0;
    rc = cli_defs_has_type(s, type, (uint32_t)def_version, &found);
    if (rc == CLI_EXIT_OK && !found)
      rc = cli_fail(CLI_EXIT_USAGE,
                    "unknown saga type \"%s\"%s: not in the definitions in "
                    "\"%s\"",
                    type, def_version > 0 ? " at that version" : "",
                    cli_get(s, CLI_SET_DEFINITIONS));
    if (rc != CLI_EXIT_OK) {
      free(input);
      return rc;
    }
  } else {
    fprintf(stderr,
            "sagactl: note: saga type \"%s\" not checked (no --definitions); "
            "the coordinator rejects an unknown type (REJECTED "
            "notification)\n",
            type);
  }

  run_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    free(input);
    return cli_fail(CLI_EXIT_FAIL, "out of memory");
  }
  char t[32];
  int e;
  if ((rc = open_starter(r, s)) != CLI_EXIT_OK)
    goto out;
  saga_start_request_t req = {.saga_type = type,
                              .saga_id = id,
                              .definition_version = (uint32_t)def_version,
                              .input = input,
                              .input_len = input_len};
  e = saga_starter_start(r->starter, &req, r->id, sizeof r->id, on_started,
                         r);
  if (e != SAGA_OK) {
    rc = cli_fail(e == SAGA_EKAFKA ? CLI_EXIT_UNREACHABLE : CLI_EXIT_USAGE,
                  "could not send StartSaga to \"%s\": %s",
                  cli_get(s, CLI_SET_INBOX), saga_strerror(e));
    goto out;
  }
  if ((rc = await_sent(r, s, "StartSaga")) != CLI_EXIT_OK)
    goto out;
  if (wait_ms < 0) {
    if (a->opt[CLI_OPT_JSON] != NULL) {
      cJSON *o = cJSON_CreateObject();
      if (o != NULL)
        cJSON_AddStringToObject(o, "saga_id", r->id);
      rc = cli_print_json(o);
    } else {
      printf("%s\n", r->id);
    }
    goto out;
  }
  e = saga_starter_await(r->starter, r->id, wait_ms, on_outcome, r);
  if (e != SAGA_OK) {
    rc = cli_fail(CLI_EXIT_FAIL, "could not await saga %s: %s", r->id,
                  saga_strerror(e));
    goto out;
  }
  /* The starter's own timer ends the await; ours is a safety net. */
  run_until(r, &r->awaited, wait_ms + 1000);
  const char *outcome = !r->awaited || r->await_err == SAGA_ETIMEDOUT
                            ? "timeout"
                        : r->await_err != SAGA_OK ? "error"
                                                  : kind_status(r->kind);
  if (a->opt[CLI_OPT_JSON] != NULL) {
    cJSON *o = cJSON_CreateObject();
    if (o != NULL) {
      cJSON_AddStringToObject(o, "saga_id", r->id);
      cJSON_AddStringToObject(o, "outcome", outcome);
      if (r->reason[0] != '\0')
        cJSON_AddStringToObject(o, "reason", r->reason);
    }
    rc = cli_print_json(o);
  } else { /* the reason on the line: flat */
    char flat[sizeof r->reason];
    printf("%s %s%s%s\n", r->id, outcome, r->reason[0] != '\0' ? ": " : "",
           cli_flat(r->reason, flat, sizeof flat));
  }
  if (strcmp(outcome, "timeout") == 0)
    fprintf(stderr,
            "sagactl: no outcome for saga %s within %s (it may still be "
            "running: sagactl status %s)\n",
            r->id, cli_format_duration(wait_ms, t, sizeof t), r->id);
  if (rc == CLI_EXIT_OK && strcmp(outcome, "completed") != 0)
    rc = CLI_EXIT_FAIL;
out:
  finish(r);
  free(r);
  free(input);
  return rc;
}

/* cancel ID --reason TEXT [--operator NAME] [--wait DURATION]: a
 * CancelSaga to the inbox. A saga that saga_index shows anything but
 * running (finished, compensating, parked) is refused here, with the words
 * of cancel by query, when PostgreSQL is configured; the coordinator
 * decides the rest: with --wait, COMPENSATED is the cancel done (exit 0),
 * a CANCEL_REFUSED says why not (exit 1). --dry-run stops after the check
 * (it needs PostgreSQL, and neither Kafka nor a reason). */
int cli_cmd_cancel(const cli_args_t *a, const cli_settings_t *s) {
  if (cli_bulk_wanted(a))
    return cli_bulk_run(a, s, CLI_ACT_CANCEL);
  int dry_run = a->opt[CLI_OPT_DRY_RUN] != NULL;
  if (a->npos != 1)
    return cli_fail(CLI_EXIT_USAGE,
                    "cancel: expected one saga id, got %zu arguments",
                    a->npos);
  const char *id = a->pos[0];
  const char *reason = a->opt[CLI_OPT_REASON];
  int rc = cli_single_check(a, "cancel");
  if (rc != CLI_EXIT_OK ||
      (rc = cli_action_text_check(s, CLI_ACT_CANCEL, "cancel", reason)) !=
          CLI_EXIT_OK)
    return rc;
  if (!dry_run && (reason == NULL || *reason == '\0'))
    return cli_fail(CLI_EXIT_USAGE, "cancel: --reason TEXT is required (it "
                                    "is recorded in the saga's history)");
  if (dry_run && a->opt[CLI_OPT_WAIT] != NULL)
    return cli_fail(CLI_EXIT_USAGE, "cancel: --wait does not apply to a dry "
                                    "run: nothing is sent");
  /* The id was checked as every command's saga id is (main.c): --id's
   * rule for a new saga refuses spaces, which a saga started through the
   * client library may hold. */
  int64_t wait_ms;
  if (wait_option(a, &wait_ms) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  if (!dry_run && cli_get(s, CLI_SET_KAFKA) == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "no Kafka configured: give --kafka BOOTSTRAP, "
                    "SAGA_KAFKA_BOOTSTRAP or \"kafka = ...\" in the config "
                    "file");
  if (dry_run || cli_get(s, CLI_SET_PG) != NULL) {
    cli_index_row_t row;
    char why[300];
    if ((rc = cli_db_fetch(s, id, &row)) != CLI_EXIT_OK)
      return rc;
    if (cli_action_refusal(CLI_ACT_CANCEL, row.status, why, sizeof why))
      rc = cli_fail(CLI_EXIT_FAIL, "cancel refused: saga %s %s", id, why);
    else if (dry_run)
      printf("dry run: cancel would be sent for saga %s (%s); nothing was "
             "sent\n",
             id, row.status);
    cli_index_row_clear(&row);
    if (rc != CLI_EXIT_OK || dry_run)
      return rc;
  }
  run_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return cli_fail(CLI_EXIT_FAIL, "out of memory");
  snprintf(r->id, sizeof r->id, "%s", id);
  char t[32];
  if ((rc = open_starter(r, s)) != CLI_EXIT_OK)
    goto out;
  int e = saga_starter_cancel(r->starter, id, reason,
                              cli_get(s, CLI_SET_OPERATOR), on_started, r);
  if (e != SAGA_OK) {
    rc = cli_fail(e == SAGA_EKAFKA ? CLI_EXIT_UNREACHABLE : CLI_EXIT_USAGE,
                  "could not send CancelSaga for saga %s: %s%s", id,
                  saga_strerror(e),
                  e == SAGA_EMISSING ? " (--reason: at most 1024 bytes of "
                                       "UTF-8; --operator: at most 255)"
                                     : "");
    goto out;
  }
  /* Await before the loop runs: the answer cannot come earlier. */
  if (wait_ms > 0 &&
      (e = saga_starter_await(r->starter, id, wait_ms, on_outcome, r)) !=
          SAGA_OK) {
    rc = cli_fail(CLI_EXIT_FAIL, "could not await saga %s: %s", id,
                  saga_strerror(e));
    goto out;
  }
  if ((rc = await_sent(r, s, "CancelSaga")) != CLI_EXIT_OK)
    goto out;
  if (wait_ms < 0) {
    printf("cancel sent for saga %s (the coordinator compensates it if its "
           "pivot step was not dispatched; check with 'sagactl status "
           "%s')\n",
           id, id);
    goto out;
  }
  run_until(r, &r->awaited, wait_ms + 1000);
  const char *outcome = !r->awaited || r->await_err == SAGA_ETIMEDOUT
                            ? "timeout"
                        : r->await_err != SAGA_OK ? "error"
                        : r->kind == SAGA_NOTIFY_CANCEL_REFUSED
                            ? "cancel_refused"
                            : kind_status(r->kind);
  if (a->opt[CLI_OPT_JSON] != NULL) {
    cJSON *o = cJSON_CreateObject();
    if (o != NULL) {
      cJSON_AddStringToObject(o, "saga_id", id);
      cJSON_AddStringToObject(o, "outcome", outcome);
      if (r->reason[0] != '\0')
        cJSON_AddStringToObject(o, "reason", r->reason);
    }
    rc = cli_print_json(o);
  }
  /* the reason (the operator's, or the coordinator's) on a line: flat */
  char flat[sizeof r->reason];
  cli_flat(r->reason, flat, sizeof flat);
  if (!strcmp(outcome, "compensated")) {
    if (a->opt[CLI_OPT_JSON] == NULL) /* sagad says "cancelled: <reason>" */
      printf("%s compensated: %s\n", id,
             flat[0] != '\0' ? flat : "cancelled");
  } else if (!strcmp(outcome, "cancel_refused")) {
    rc = cli_fail(CLI_EXIT_FAIL, "cancel refused: saga %s: %s", id, flat);
  } else if (!strcmp(outcome, "completed")) {
    rc = cli_fail(CLI_EXIT_FAIL,
                  "cancel refused: saga %s already completed: nothing to "
                  "cancel",
                  id);
  } else if (!strcmp(outcome, "compensation_failed")) {
    rc = cli_fail(CLI_EXIT_FAIL,
                  "saga %s: a compensation failed and the saga is parked "
                  "for an operator (sagactl retry or resolve)",
                  id);
  } else if (!strcmp(outcome, "error")) {
    /* the wait itself failed: not a timeout, and said at once */
    rc = cli_fail(r->await_err == SAGA_EKAFKA ? CLI_EXIT_UNREACHABLE
                                              : CLI_EXIT_FAIL,
                  "could not await the answer to the cancel of saga %s: %s "
                  "(check with 'sagactl status %s')",
                  id, saga_strerror(r->await_err), id);
  } else if (!strcmp(outcome, "timeout")) {
    rc = cli_fail(CLI_EXIT_FAIL,
                  "no answer to the cancel of saga %s within %s (it may "
                  "still be compensating: sagactl status %s)",
                  id, cli_format_duration(wait_ms, t, sizeof t), id);
  } else {
    rc = cli_fail(CLI_EXIT_FAIL, "cancel of saga %s: the saga is %s%s%s", id,
                  outcome, flat[0] != '\0' ? ": " : "", flat);
  }
out:
  finish(r);
  free(r);
  return rc;
}

/* A batch of cancels: how many acknowledgements are still awaited. */
typedef struct {
  cli_send_t *it;
  size_t *pending;
  int *all_done;
} cancel_item_t;

static void on_cancel_sent(saga_starter_t *st, int err, const char *saga_id,
                           void *arg) {
  (void)st;
  (void)saga_id;
  cancel_item_t *c = arg;
  if (c->it->done)
    return; /* given up on already: closing the starter cancels it */
  c->it->done = 1;
  c->it->rc = err == SAGA_OK ? CLI_EXIT_OK : CLI_EXIT_UNREACHABLE;
  if (err != SAGA_OK)
    snprintf(c->it->why, sizeof c->it->why,
             "could not deliver CancelSaga: %s", saga_strerror(err));
  if (--*c->pending == 0)
    *c->all_done = 1;
}

int cli_cancel_send(const cli_settings_t *s, const char *reason,
                    cli_send_t *items, size_t n) {
  run_t *r = calloc(1, sizeof *r);
  cancel_item_t *c = calloc(n > 0 ? n : 1, sizeof *c);
  if (r == NULL || c == NULL) {
    free(r);
    free(c);
    return cli_fail(CLI_EXIT_FAIL, "out of memory");
  }
  size_t pending = 0;
  int rc = open_starter(r, s);
  for (size_t i = 0; rc == CLI_EXIT_OK && i < n; i++) {
    cli_send_t *it = &items[i];
    c[i] = (cancel_item_t){it, &pending, &r->started};
    it->done = 0;
    it->why[0] = '\0';
    pending++;
    int e = saga_starter_cancel(r->starter, it->saga_id, reason,
                                cli_get(s, CLI_SET_OPERATOR), on_cancel_sent,
                                &c[i]);
    if (e != SAGA_OK) {
      pending--;
      it->done = 1;
      it->rc = e == SAGA_EKAFKA ? CLI_EXIT_UNREACHABLE : CLI_EXIT_USAGE;
      snprintf(it->why, sizeof it->why, "could not send CancelSaga: %s%s",
               saga_strerror(e),
               e == SAGA_EMISSING ? " (--reason: at most 1024 bytes of "
                                    "UTF-8; --operator: at most 255)"
                                  : "");
    }
  }
  if (rc == CLI_EXIT_OK && pending > 0)
    run_until(r, &r->started, s->timeout_ms + 1000);
  char t[32];
  for (size_t i = 0; rc == CLI_EXIT_OK && i < n; i++)
    if (!items[i].done) {
      items[i].rc = CLI_EXIT_UNREACHABLE;
      snprintf(items[i].why, sizeof items[i].why,
               "CancelSaga not acknowledged by Kafka at %s within %s",
               cli_get(s, CLI_SET_KAFKA),
               cli_format_duration(s->timeout_ms, t, sizeof t));
    }
  finish(r);
  free(r);
  free(c);
  return rc;
}
