/* status and list: read saga_index, print a table or JSON. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli_cmds.h"
#include "cli_db.h"
#include "timetext.h"

int cli_print_json(void *v) {
  cJSON *j = v;
  char *text = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  if (text == NULL)
    return cli_fail(CLI_EXIT_FAIL, "out of memory");
  puts(text);
  cJSON_free(text);
  return CLI_EXIT_OK;
}

static void add_time(cJSON *o, const char *key, int64_t ms) {
  char t[40];
  if (ms > 0)
    cJSON_AddStringToObject(o, key, cli_format_time(ms, t, sizeof t));
  else
    cJSON_AddNullToObject(o, key);
}

static cJSON *row_json(const cli_index_row_t *r, int64_t now) {
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
  add_time(o, "stuck_at", r->stuck_at_ms);
  cJSON_AddBoolToObject(o, "stuck", r->stuck);
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

int cli_cmd_status(const cli_args_t *a, const cli_settings_t *s) {
  const char *id = need_id(a, "status");
  if (id == NULL)
    return CLI_EXIT_USAGE;
  cli_index_row_t row;
  int rc = cli_db_fetch(s, id, &row);
  if (rc != CLI_EXIT_OK)
    return rc;
  int64_t now = cli_now_ms();
  /* saga_index says compensated for a saga an operator resolved by hand;
   * its stream tells the two apart. */
  int resolved = 0;
  if (strcmp(row.status, "compensated") == 0) {
    rc = cli_saga_was_resolved(s, id, &resolved);
    if (rc != CLI_EXIT_OK) {
      cli_index_row_clear(&row);
      return rc;
    }
  }
  if (a->opt[CLI_OPT_JSON] != NULL) {
    cJSON *o = row_json(&row, now);
    if (o != NULL)
      cJSON_AddBoolToObject(o, "resolved_by_operator", resolved);
    rc = cli_print_json(o);
  } else {
    char t1[40], t2[40], t3[40], t4[40], idle[32];
    printf("saga:          %s\n"
           "type:          %s (definition v%d)\n"
           "status:        %s%s\n"
           "current step:  %s\n"
           "version:       %" PRId64 "\n"
           "partition:     %d\n"
           "started:       %s\n"
           "last progress: %s (%s ago)\n"
           "next deadline: %s\n"
           "stuck:         %s%s%s\n",
           row.saga_id, row.saga_type, row.def_version, row.status,
           resolved ? " (resolved by an operator)" : "", row.current_step != NULL ? row.current_step : "-", row.version,
           row.partition, cli_format_time(row.started_ms, t1, sizeof t1),
           cli_format_time(row.updated_ms, t2, sizeof t2),
           cli_format_duration(now - row.updated_ms, idle, sizeof idle),
           cli_format_time(row.deadline_ms, t3, sizeof t3),
           row.stuck ? "yes" : "no",
           row.stuck_at_ms > 0 ? (row.stuck ? ", since " : ", after ") : "",
           row.stuck_at_ms > 0
               ? cli_format_time(row.stuck_at_ms, t4, sizeof t4)
               : "");
  }
  cli_index_row_clear(&row);
  return rc;
}

static int duration_opt(const cli_args_t *a, cli_opt_t o, int64_t *ms) {
  *ms = -1;
  const char *v = a->opt[o];
  char why[256];
  if (v != NULL && saga__duration_parse(v, ms) != SAGA_DURATION_OK)
    return cli_fail(CLI_EXIT_USAGE, "--%s: %s", cli_opt_name(o),
                    saga__duration_explain(v, why, sizeof why));
  return CLI_EXIT_OK;
}

int cli_cmd_list(const cli_args_t *a, const cli_settings_t *s) {
  if (a->npos != 0)
    return cli_fail(CLI_EXIT_USAGE, "list: unexpected argument \"%s\"",
                    a->pos[0]);
  cli_list_filter_t f = {.state = a->opt[CLI_OPT_STATE],
                         .type = a->opt[CLI_OPT_TYPE],
                         .limit = 100};
  if (f.state != NULL && !cli_status_is_known(f.state))
    return cli_fail(CLI_EXIT_USAGE,
                    "--state: unknown status \"%s\" (running, compensating, "
                    "completed, compensated, compensation_failed)",
                    f.state);
  /* --stuck step: by each saga's own step threshold, as sagad judges */
  const char *stuck = a->opt[CLI_OPT_STUCK];
  f.stuck_own = stuck != NULL && strcmp(stuck, "step") == 0;
  if (duration_opt(a, CLI_OPT_OLDER_THAN, &f.older_than_ms) != CLI_EXIT_OK ||
      (!f.stuck_own &&
       duration_opt(a, CLI_OPT_STUCK, &f.stuck_ms) != CLI_EXIT_OK))
    return CLI_EXIT_USAGE;
  if (a->opt[CLI_OPT_LIMIT] != NULL &&
      cli_parse_uint(a->opt[CLI_OPT_LIMIT], 1, 1000000, &f.limit) != 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "--limit: expected a number between 1 and 1000000, got "
                    "\"%s\"",
                    a->opt[CLI_OPT_LIMIT]);
  PGconn *c = NULL;
  int rc = cli_db_connect(s, &c);
  if (rc != CLI_EXIT_OK)
    return rc;
  cli_index_row_t *rows = NULL;
  size_t n = 0;
  int q = cli_db_list(c, &f, &rows, &n);
  PQfinish(c);
  if (q != 0)
    return CLI_EXIT_FAIL;
  int64_t now = cli_now_ms();
  if (a->opt[CLI_OPT_JSON] != NULL) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr != NULL && i < n; i++) {
      cJSON *o = row_json(&rows[i], now);
      if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        cJSON_Delete(arr);
        arr = NULL;
      }
    }
    rc = cli_print_json(arr);
  } else {
    printf("%-36s %-16s %3s %-19s %-20s %-24s %9s  %s\n", "SAGA", "TYPE", "V",
           "STATUS", "STEP", "STARTED", "IDLE", "NEXT DEADLINE");
    for (size_t i = 0; i < n; i++) {
      const cli_index_row_t *r = &rows[i];
      char t1[40], t2[40], idle[32];
      printf("%-36s %-16s %3d %-19s %-20s %-24s %9s  %s\n", r->saga_id,
             r->saga_type, r->def_version, r->status,
             r->current_step != NULL ? r->current_step : "-",
             cli_format_time(r->started_ms, t1, sizeof t1),
             cli_format_duration(now - r->updated_ms, idle, sizeof idle),
             cli_format_time(r->deadline_ms, t2, sizeof t2));
    }
    if (n == f.limit)
      fprintf(stderr, "sagactl: showing the first %zu sagas (--limit)\n", n);
  }
  for (size_t i = 0; i < n; i++)
    cli_index_row_clear(&rows[i]);
  free(rows);
  return rc;
}
