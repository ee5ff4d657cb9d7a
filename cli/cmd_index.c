/* status and list: read saga_index (through index/index_query.h), print
 * a table, JSON or JSON lines. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli_cmds.h"
#include "cli_db.h"
#include "cli_records.h"
#include "cli_timeline.h"
#include "text.h"
#include "timetext.h"

static void add_time(cJSON *o, const char *key, int64_t ms) {
  char t[40];
  if (ms > 0)
    cJSON_AddStringToObject(o, key, cli_format_time(ms, t, sizeof t));
  else
    cJSON_AddNullToObject(o, key);
}

cJSON *cli_index_row_json(const cli_index_row_t *r, int64_t now) {
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return NULL;
  cJSON_AddStringToObject(o, "saga_id", r->saga_id);
  cJSON_AddStringToObject(o, "type", r->saga_type);
  cJSON_AddNumberToObject(o, "definition_version", r->def_version);
  cJSON_AddStringToObject(o, "status", r->status);
  cJSON_AddNumberToObject(o, "version", (double)r->version);
  cJSON_AddNumberToObject(o, "partition", r->partition);
  if (r->current_step != NULL)
    cJSON_AddStringToObject(o, "current_step", r->current_step);
  else
    cJSON_AddNullToObject(o, "current_step");
  add_time(o, "started_at", r->started_ms);
  add_time(o, "updated_at", r->updated_ms);
  add_time(o, "next_deadline_at", r->deadline_ms);
  cJSON_AddNumberToObject(o, "idle_ms", (double)(now - r->updated_ms));
  return o;
}

/* A list's row: row_json and its stuck flag (judged by the definitions'
 * thresholds when they are configured). */
static cJSON *list_row_json(const cli_index_row_t *r, int64_t now) {
  cJSON *o = cli_index_row_json(r, now);
  if (o != NULL && !cJSON_AddBoolToObject(o, "stuck", r->stuck)) {
    cJSON_Delete(o);
    o = NULL;
  }
  return o;
}

static const char *need_id(const cli_args_t *a, const char *cmd) {
  if (a->npos != 1) {
    cli_fail(CLI_EXIT_USAGE, "%s: expected one saga id, got %zu arguments",
             cmd, a->npos);
    return NULL;
  }
  return a->pos[0];
}

/* "cancelled" {"reason", "operator"} or null, and "output": the saga's
 * output as JSON (a string when it is not JSON) or null. */
void cli_ending_add_json(cJSON *o, const cli_ending_t *e) {
  if (e->cancelled != NULL) {
    cJSON *c = cJSON_AddObjectToObject(o, "cancelled");
    if (c != NULL) {
      cJSON_AddStringToObject(c, "reason", e->cancelled);
      if (e->cancelled_by != NULL)
        cJSON_AddStringToObject(c, "operator", e->cancelled_by);
      else
        cJSON_AddNullToObject(c, "operator");
    }
  } else {
    cJSON_AddNullToObject(o, "cancelled");
  }
  cJSON *out = cli_payload_json(e->output, e->output_len);
  if (out == NULL)
    cJSON_AddNullToObject(o, "output");
  else
    cJSON_AddItemToObject(o, "output", out);
}

int cli_cmd_status(const cli_args_t *a, const cli_settings_t *s) {
  const char *id = need_id(a, "status");
  if (id == NULL)
    return CLI_EXIT_USAGE;
  cli_output_t fmt;
  int rc = cli_output_of(a, &fmt);
  if (rc != CLI_EXIT_OK)
    return rc;
  cli_index_row_t row;
  rc = cli_db_fetch(s, id, &row);
  if (rc != CLI_EXIT_OK)
    return rc;
  int64_t now = cli_now_ms();
  /* saga_index says compensated for a saga an operator resolved by hand
   * or cancelled, and completed whatever its output: its stream tells. */
  cli_ending_t end = {0};
  if (strcmp(row.status, "compensated") == 0 ||
      strcmp(row.status, "completed") == 0) {
    rc = cli_saga_ending(s, id, &end);
    if (rc != CLI_EXIT_OK) {
      cli_index_row_clear(&row);
      return rc;
    }
  }
  int resolved = end.resolved;
  /* One saga: json and jsonl are the same one-line object. */
  if (fmt != CLI_OUT_TABLE) {
    cJSON *o = cli_index_row_json(&row, now);
    if (o != NULL) {
      cJSON_AddBoolToObject(o, "resolved_by_operator", resolved);
      cli_ending_add_json(o, &end);
    }
    rc = cli_print_json(o);
  } else {
    char t1[40], t2[40], t3[40], idle[32];
    printf("saga:          %s\n"
           "type:          %s (definition v%d)\n"
           "status:        %s%s\n"
           "current step:  %s\n"
           "version:       %" PRId64 "\n"
           "partition:     %d\n"
           "started:       %s\n"
           "last progress: %s (%s ago)\n"
           "next deadline: %s\n",
           row.saga_id, row.saga_type, row.def_version, row.status,
           resolved ? " (resolved by an operator)" : "", row.current_step != NULL ? row.current_step : "-", row.version,
           row.partition, cli_format_time(row.started_ms, t1, sizeof t1),
           cli_format_time(row.updated_ms, t2, sizeof t2),
           cli_format_duration(now - row.updated_ms, idle, sizeof idle),
           cli_format_time(row.deadline_ms, t3, sizeof t3));
    if (end.cancelled != NULL) {
      /* the operator's words on one line (--json has them as they are) */
      char why[CLI_FLAT_REASON], who[CLI_FLAT_NAME];
      printf("cancelled:     %s%s%s%s\n",
             *end.cancelled ? cli_flat(end.cancelled, why, sizeof why) : "-",
             end.cancelled_by ? " (by " : "",
             end.cancelled_by ? cli_flat(end.cancelled_by, who, sizeof who)
                              : "",
             end.cancelled_by ? ")" : "");
    }
    if (end.output != NULL)
      printf("output:        %.*s\n", (int)end.output_len, end.output);
  }
  cli_ending_clear(&end);
  cli_index_row_clear(&row);
  return rc;
}

/* --since / --until into *t (unset when not given). */
static int time_opt(const cli_args_t *a, cli_opt_t o, iq_time_t *t) {
  char why[CLI_SHOW_SIZE + 200], shown[CLI_SHOW_SIZE];
  iq_time_t unused;
  *t = (iq_time_t){0};
  if (a->opt[o] == NULL || iq_time_parse(a->opt[o], t, why, sizeof why) == 0)
    return CLI_EXIT_OK;
  /* The same reason, naming the value as a line may show it: what
   * cli_show changes (a control character, a long tail) parses as no time
   * either. */
  (void)iq_time_parse(cli_show(a->opt[o], shown, sizeof shown), &unused, why,
                      sizeof why);
  return cli_fail(CLI_EXIT_USAGE, "--%s: %s", cli_opt_name(o), why);
}

int cli_query_filter(const cli_args_t *a, const char *cmd, iq_filter_t *f,
                     iq_cursor_t *after) {
  *f = (iq_filter_t){.state = a->opt[CLI_OPT_STATE],
                     .type = a->opt[CLI_OPT_TYPE],
                     .stuck = a->opt[CLI_OPT_STUCK] != NULL,
                     .oldest_first = a->opt[CLI_OPT_OLDEST_FIRST] != NULL,
                     .limit = 100};
  char shown[CLI_SHOW_SIZE];
  if (a->npos != 0)
    return cli_fail(CLI_EXIT_USAGE, "%s: unexpected argument \"%s\"", cmd,
                    cli_show(a->pos[0], shown, sizeof shown));
  if (f->state != NULL && !iq_status_known(f->state))
    return cli_fail(CLI_EXIT_USAGE,
                    "--state: unknown status \"%s\" (" IQ_STATUSES ")",
                    cli_show(f->state, shown, sizeof shown));
  if (f->type != NULL) {
    /* A saga type is a definition's name: no longer than
     * SAGA_DEF_MAX_NAME, and text PostgreSQL can compare. */
    size_t n = strlen(f->type);
    size_t bad = saga__utf8_bad_at(f->type, n);
    for (size_t i = 0; i < n && bad == n; i++)
      if ((unsigned char)f->type[i] < 0x20 || f->type[i] == 0x7f)
        bad = i;
    if (n > 64)
      return cli_fail(CLI_EXIT_USAGE,
                      "--type: expected a saga type of 1 to 64 bytes, got "
                      "%zu bytes",
                      n);
    if (n == 0 || bad < n)
      return cli_fail(CLI_EXIT_USAGE,
                      "--type: expected a saga type of 1 to 64 bytes of "
                      "UTF-8 without control characters, got \"%s\"",
                      cli_show(f->type, shown, sizeof shown));
  }
  if (time_opt(a, CLI_OPT_SINCE, &f->since) != CLI_EXIT_OK ||
      time_opt(a, CLI_OPT_UNTIL, &f->until) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  if (a->opt[CLI_OPT_LIMIT] != NULL &&
      cli_parse_uint(a->opt[CLI_OPT_LIMIT], 1, IQ_LIMIT_MAX, &f->limit) != 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "--limit: expected a number between 1 and %d, got \"%s\"",
                    IQ_LIMIT_MAX,
                    cli_show(a->opt[CLI_OPT_LIMIT], shown, sizeof shown));
  if (a->opt[CLI_OPT_AFTER] != NULL) {
    if (iq_cursor_decode(a->opt[CLI_OPT_AFTER], after) != 0)
      return cli_fail(CLI_EXIT_USAGE,
                      "--after: \"%s\" is not a list token: give the token "
                      "the previous page printed (\"next page: --after "
                      "TOKEN\")",
                      cli_show(a->opt[CLI_OPT_AFTER], shown, sizeof shown));
    f->after = after;
  }
  return CLI_EXIT_OK;
}

static void print_table(const cli_list_t *l, int64_t now) {
  printf("%-36s %-16s %3s %-19s %-20s %-24s %9s  %s\n", "SAGA", "TYPE", "V",
         "STATUS", "STEP", "STARTED", "IDLE", "NEXT DEADLINE");
  for (size_t i = 0; i < l->n; i++) {
    const cli_index_row_t *r = &l->rows[i];
    char t1[40], t2[40], idle[32];
    printf("%-36s %-16s %3d %-19s %-20s %-24s %9s  %s\n", r->saga_id,
           r->saga_type, r->def_version, r->status,
           r->current_step != NULL ? r->current_step : "-",
           cli_format_time(r->started_ms, t1, sizeof t1),
           cli_format_duration(now - r->updated_ms, idle, sizeof idle),
           cli_format_time(r->deadline_ms, t2, sizeof t2));
  }
}

/* "shown N of TOTAL sagas (newest first); next page: --after TOKEN" */
static void print_count(FILE *out, const cli_list_t *l, const iq_filter_t *f) {
  fprintf(out, "shown %zu of %" PRIu64 " sagas (%s first); ", l->n, l->total,
          f->oldest_first ? "oldest" : "newest");
  if (l->next[0] != '\0')
    fprintf(out, "next page: --after %s\n", l->next);
  else
    fputs("last page\n", out);
}

static int print_json(const cli_list_t *l, int64_t now) {
  cJSON *o = cJSON_CreateObject();
  cJSON *arr = cJSON_AddArrayToObject(o, "sagas");
  for (size_t i = 0; arr != NULL && i < l->n; i++) {
    cJSON *row = list_row_json(&l->rows[i], now);
    if (row == NULL || !cJSON_AddItemToArray(arr, row)) {
      cJSON_Delete(row);
      arr = NULL;
    }
  }
  if (arr == NULL ||
      !cJSON_AddNumberToObject(o, "total", (double)l->total) ||
      !(l->next[0] != '\0' ? cJSON_AddStringToObject(o, "next", l->next)
                           : cJSON_AddNullToObject(o, "next"))) {
    cJSON_Delete(o);
    o = NULL;
  }
  return cli_print_json(o);
}

int cli_cmd_list(const cli_args_t *a, const cli_settings_t *s) {
  iq_filter_t f;
  iq_cursor_t after;
  cli_output_t fmt;
  int rc = cli_query_filter(a, "list", &f, &after);
  if (rc != CLI_EXIT_OK || (rc = cli_output_of(a, &fmt)) != CLI_EXIT_OK)
    return rc;
  iq_stuck_t st = {.default_ms = IQ_STUCK_DEFAULT_MS};
  char *thresholds = NULL;
  if ((rc = cli_defs_stuck_thresholds(s, &thresholds)) != CLI_EXIT_OK)
    return rc;
  st.thresholds_json = thresholds;
  PGconn *c = NULL;
  cli_list_t l;
  rc = cli_db_connect(s, &c);
  if (rc == CLI_EXIT_OK && cli_db_list(c, &f, &st, 1, &l) != 0)
    rc = CLI_EXIT_FAIL;
  PQfinish(c);
  cJSON_free(thresholds);
  if (rc != CLI_EXIT_OK)
    return rc;
  int64_t now = cli_now_ms();
  if (fmt == CLI_OUT_JSON) {
    rc = print_json(&l, now);
  } else if (fmt == CLI_OUT_JSONL) {
    for (size_t i = 0; i < l.n && rc == CLI_EXIT_OK; i++)
      rc = cli_print_json(list_row_json(&l.rows[i], now));
    print_count(stderr, &l, &f);
  } else {
    print_table(&l, now);
    print_count(stdout, &l, &f);
  }
  cli_list_clear(&l);
  return rc;
}
