/* start: send StartSaga through the client library's starter (idempotent
 * on the saga id) and print the id; with --wait, await the outcome
 * notification. Every wait is bounded: a Kafka that cannot be reached is
 * reported within the configured timeout. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "saga/client.h"

#include "cli_cmds.h"

/* One saga id ceiling everywhere (docs/protocol.md): the coordinator,
 * the client library and sagactl refuse a longer id, never cut it. */
#define START_ID_MAX SAGA_MAX_ID

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
  size_t n = fread(buf, 1, max + 1, f);
  int bad = ferror(f);
  if (f != stdin)
    fclose(f);
  if (bad) {
    free(buf);
    return cli_fail(CLI_EXIT_USAGE, "--input: could not read \"%s\"", path);
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
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
  if (j != NULL) {
    cJSON_Delete(j);
    return CLI_EXIT_OK;
  }
  size_t at = end != NULL && end >= text ? (size_t)(end - text) : 0;
  if (at > len)
    at = len;
  return cli_fail(CLI_EXIT_USAGE, "%s: malformed JSON at byte %zu: \"%.20s\"",
                  what, at, text + at);
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
  uint64_t def_version = 0;
  if (a->opt[CLI_OPT_DEF_VERSION] != NULL &&
      cli_parse_uint(a->opt[CLI_OPT_DEF_VERSION], 1, UINT32_MAX,
                     &def_version) != 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "--def-version: expected a version number, got \"%s\"",
                    a->opt[CLI_OPT_DEF_VERSION]);
  int64_t wait_ms = -1;
  if (a->opt[CLI_OPT_WAIT] != NULL &&
      (cli_parse_duration(a->opt[CLI_OPT_WAIT], &wait_ms) != 0 ||
       wait_ms <= 0))
    return cli_fail(CLI_EXIT_USAGE,
                    "--wait: invalid duration \"%s\" (e.g. 30s, 5m)",
                    a->opt[CLI_OPT_WAIT]);
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
  char err[512] = "", t[32];
  int e = saga_starter_new(&r->loop, &cfg, &r->starter, err, sizeof err);
  if (e != SAGA_OK) {
    r->starter = NULL;
    rc = cli_fail(e == SAGA_EINVAL || e == SAGA_ENOMEM ? CLI_EXIT_USAGE
                                                       : CLI_EXIT_UNREACHABLE,
                  "could not reach Kafka at %s: %s", bootstrap,
                  *err != '\0' ? err : saga_strerror(e));
    goto out;
  }
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
  run_until(r, &r->started, s->timeout_ms);
  if (!r->started) {
    rc = cli_fail(CLI_EXIT_UNREACHABLE,
                  "StartSaga for saga %s not acknowledged by Kafka at %s "
                  "within %s",
                  r->id, bootstrap,
                  cli_format_duration(s->timeout_ms, t, sizeof t));
    goto out;
  }
  if (r->start_err != SAGA_OK) {
    rc = cli_fail(CLI_EXIT_UNREACHABLE,
                  "could not deliver StartSaga for saga %s to \"%s\": %s",
                  r->id, cli_get(s, CLI_SET_INBOX),
                  saga_strerror(r->start_err));
    goto out;
  }
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
  } else {
    printf("%s %s%s%s\n", r->id, outcome, r->reason[0] != '\0' ? ": " : "",
           r->reason);
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
