/* Actions by query: retry, resolve and cancel of every saga a saga_index
 * query matches (the filters of `list`, through index/, every page of
 * it). The matches are listed first (--dry-run stops there); on a
 * terminal the operator confirms unless --yes, and without a terminal
 * nothing is sent without --yes. Each saga's status is read again right
 * before its message leaves, and the messages are the very ones the
 * single-id commands send (cli_operator_send, cli_cancel_send): the
 * coordinator cannot tell a bulk action from many single ones. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli_cmds.h"
#include "cli_db.h"

/* Rows read per saga_index page, and messages sent per batch. */
#define BULK_PAGE 500
#define BULK_BATCH 1000

static const char *const ACT_NAME[] = {"retry", "resolve", "cancel"};

typedef enum {
  R_TOUCH,   /* eligible: to be sent (dry run: would be) */
  R_TOUCHED, /* sent, acknowledged by Kafka */
  R_REFUSED, /* the action does not apply to its status */
  R_FAILED,  /* could not be sent */
} result_t;

typedef struct {
  cli_index_row_t *rows; /* every match, in the query's order */
  size_t n, cap;
  result_t *res;
  char **why; /* malloc'd reason of a refusal or failure, or NULL */
  uint64_t total;
  size_t unreachable; /* failed because Kafka could not be reached */
} bulk_t;

static const cli_opt_t QUERY_OPTS[] = {CLI_OPT_STATE, CLI_OPT_TYPE,
                                       CLI_OPT_SINCE, CLI_OPT_UNTIL,
                                       CLI_OPT_STUCK};

int cli_bulk_wanted(const cli_args_t *a) {
  if (a->npos == 0)
    return 1;
  for (size_t i = 0; i < sizeof QUERY_OPTS / sizeof *QUERY_OPTS; i++)
    if (a->opt[QUERY_OPTS[i]] != NULL)
      return 1;
  return 0;
}

int cli_single_check(const cli_args_t *a, const char *cmd) {
  if (a->opt[CLI_OPT_OUTPUT] != NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "%s: --output applies to an action by query (--state, "
                    "--type, --since, --until, --stuck), not to one saga id",
                    cmd);
  /* One saga id prints a line of text; cancel --wait has its JSON. */
  if (a->opt[CLI_OPT_JSON] != NULL && strcmp(cmd, "cancel") != 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "%s: --json applies to an action by query (--state, "
                    "--type, --since, --until, --stuck), not to one saga id",
                    cmd);
  if (a->opt[CLI_OPT_JSON] != NULL && a->opt[CLI_OPT_WAIT] == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "cancel: --json applies to cancel --wait or to an action "
                    "by query (--state, --type, --since, --until, --stuck), "
                    "not to one saga id without --wait");
  return CLI_EXIT_OK;
}

const char *cli_action_refusal(cli_action_t action, const char *status,
                               char *buf, size_t len) {
  if (action != CLI_ACT_CANCEL) {
    if (strcmp(status, "compensation_failed") == 0)
      return NULL;
    snprintf(buf, len, "%s, not parked in compensation_failed", status);
  } else if (strcmp(status, "running") == 0) {
    return NULL;
  } else if (strcmp(status, "compensation_failed") == 0) {
    snprintf(buf, len, "parked in compensation_failed: retry or resolve it");
  } else {
    snprintf(buf, len, "already %s: nothing to cancel", status);
  }
  return buf;
}

static void bulk_clear(bulk_t *b) {
  for (size_t i = 0; i < b->n; i++) {
    cli_index_row_clear(&b->rows[i]);
    free(b->why[i]);
  }
  free(b->rows);
  free(b->res);
  free(b->why);
  memset(b, 0, sizeof *b);
}

/* Take the rows of page l (l keeps none). 0, or -1 out of memory. */
static int take_page(bulk_t *b, cli_list_t *l) {
  if (l->n == 0)
    return 0; /* an empty page has no rows array */
  if (b->n + l->n > b->cap) {
    size_t cap = (b->n + l->n) * 2;
    cli_index_row_t *rows = realloc(b->rows, cap * sizeof *rows);
    if (rows != NULL)
      b->rows = rows;
    result_t *res = realloc(b->res, cap * sizeof *res);
    if (res != NULL)
      b->res = res;
    char **why = realloc(b->why, cap * sizeof *why);
    if (why != NULL)
      b->why = why;
    if (rows == NULL || res == NULL || why == NULL)
      return -1;
    b->cap = cap;
  }
  memcpy(b->rows + b->n, l->rows, l->n * sizeof *l->rows);
  for (size_t i = 0; i < l->n; i++) {
    b->res[b->n + i] = R_TOUCH;
    b->why[b->n + i] = NULL;
  }
  b->n += l->n;
  l->n = 0; /* the strings are b's now */
  return 0;
}

/* Every row f matches, page after page through the cursor *cur (f->after
 * points to it from the second page on). Returns an exit code (line
 * printed). */
static int collect_pages(PGconn *c, iq_filter_t *f, const iq_stuck_t *st,
                         bulk_t *b, iq_cursor_t *cur) {
  /* Tests page through a handful of sagas with a smaller page. */
  const char *page = getenv("SAGACTL_TEST_PAGE_SIZE");
  uint64_t size = BULK_PAGE;
  if (page != NULL && cli_parse_uint(page, 1, BULK_PAGE, &size) != 0)
    size = BULK_PAGE;
  f->limit = size;
  f->after = NULL;
  for (int first = 1;; first = 0) {
    cli_list_t l;
    if (cli_db_list(c, f, st, first, &l) != 0)
      return CLI_EXIT_FAIL;
    if (first)
      b->total = l.total;
    int last = l.next[0] == '\0';
    int bad = !last && iq_cursor_decode(l.next, cur) != 0;
    int oom = take_page(b, &l) != 0;
    cli_list_clear(&l);
    if (oom)
      return cli_fail(CLI_EXIT_FAIL, "out of memory");
    if (bad)
      return cli_fail(CLI_EXIT_FAIL, "saga_index gave an unreadable cursor");
    if (last)
      return CLI_EXIT_OK;
    f->after = cur;
  }
}

/* collect_pages with a cursor of its own; f->after is NULL again after. */
static int collect(PGconn *c, iq_filter_t *f, const iq_stuck_t *st,
                   bulk_t *b) {
  iq_cursor_t cur;
  int rc = collect_pages(c, f, st, b, &cur);
  f->after = NULL;
  return rc;
}

static void set_why(bulk_t *b, size_t i, result_t r, const char *why) {
  b->res[i] = r;
  free(b->why[i]);
  b->why[i] = why != NULL ? strdup(why) : NULL;
}

static const char *result_name(result_t r, int dry_run) {
  switch (r) {
  case R_TOUCH:
    return dry_run ? "would_touch" : "not_sent";
  case R_TOUCHED:
    return "touched";
  case R_REFUSED:
    return "refused";
  default:
    return "failed";
  }
}

static void print_row(FILE *out, const bulk_t *b, size_t i, int dry_run) {
  const cli_index_row_t *r = &b->rows[i];
  fprintf(out, "%-12s %-36s %-16s %-19s %s\n",
          result_name(b->res[i], dry_run), r->saga_id, r->saga_type,
          r->status, b->why[i] != NULL ? b->why[i] : "");
}

static void print_header(FILE *out) {
  fprintf(out, "%-12s %-36s %-16s %-19s %s\n", "RESULT", "SAGA", "TYPE",
          "STATUS", "WHY");
}

static cJSON *row_json(const bulk_t *b, size_t i, int dry_run) {
  const cli_index_row_t *r = &b->rows[i];
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return NULL;
  cJSON_AddStringToObject(o, "saga_id", r->saga_id);
  cJSON_AddStringToObject(o, "type", r->saga_type);
  cJSON_AddStringToObject(o, "status", r->status);
  cJSON_AddStringToObject(o, "result", result_name(b->res[i], dry_run));
  if (b->why[i] != NULL)
    cJSON_AddStringToObject(o, "reason", b->why[i]);
  else
    cJSON_AddNullToObject(o, "reason");
  return o;
}

typedef struct {
  size_t touch, touched, refused, failed;
} counts_t;

static counts_t count(const bulk_t *b) {
  counts_t k = {0};
  for (size_t i = 0; i < b->n; i++) {
    k.touch += b->res[i] == R_TOUCH;
    k.touched += b->res[i] == R_TOUCHED;
    k.refused += b->res[i] == R_REFUSED;
    k.failed += b->res[i] == R_FAILED;
  }
  return k;
}

/* "retry: 3 sagas matched: 2 touched, 1 refused, 0 failed" */
static void print_summary(FILE *out, const bulk_t *b, cli_action_t action,
                          int dry_run) {
  counts_t k = count(b);
  if (dry_run)
    fprintf(out,
            "dry run: %s would touch %zu of %zu matching sagas (%zu "
            "refused); nothing was sent\n",
            ACT_NAME[action], k.touch, b->n, k.refused);
  else
    fprintf(out,
            "%s: %zu sagas matched: %zu touched, %zu refused, %zu failed%s\n",
            ACT_NAME[action], b->n, k.touched, k.refused, k.failed,
            k.touched > 0 ? " (the coordinator applies each message; "
                            "follow with 'sagactl list')"
                          : "");
}

/* Print every row and the summary in fmt. Returns an exit code. */
static int report(const bulk_t *b, cli_action_t action, int dry_run,
                  cli_output_t fmt) {
  int rc = CLI_EXIT_OK;
  if (fmt == CLI_OUT_TABLE) {
    if (b->n > 0)
      print_header(stdout);
    for (size_t i = 0; i < b->n; i++)
      print_row(stdout, b, i, dry_run);
    print_summary(stdout, b, action, dry_run);
  } else if (fmt == CLI_OUT_JSONL) {
    for (size_t i = 0; i < b->n && rc == CLI_EXIT_OK; i++)
      rc = cli_print_json(row_json(b, i, dry_run));
    print_summary(stderr, b, action, dry_run);
  } else {
    counts_t k = count(b);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o != NULL ? cJSON_AddArrayToObject(o, "sagas") : NULL;
    for (size_t i = 0; arr != NULL && i < b->n; i++) {
      cJSON *row = row_json(b, i, dry_run);
      if (row == NULL || !cJSON_AddItemToArray(arr, row)) {
        cJSON_Delete(row);
        arr = NULL;
      }
    }
    if (arr == NULL ||
        !cJSON_AddStringToObject(o, "action", ACT_NAME[action]) ||
        !cJSON_AddBoolToObject(o, "dry_run", dry_run) ||
        !cJSON_AddNumberToObject(o, "matched", (double)b->n) ||
        !cJSON_AddNumberToObject(o, "touched",
                                 (double)(dry_run ? k.touch : k.touched)) ||
        !cJSON_AddNumberToObject(o, "refused", (double)k.refused) ||
        !cJSON_AddNumberToObject(o, "failed", (double)k.failed)) {
      cJSON_Delete(o);
      o = NULL;
    }
    rc = cli_print_json(o);
  }
  return rc;
}

/* Ask on the terminal whether to act on the eligible sagas (listed on
 * stderr first). 1 yes, 0 no. */
static int confirm(const bulk_t *b, cli_action_t action, size_t n) {
  print_header(stderr);
  for (size_t i = 0; i < b->n; i++)
    print_row(stderr, b, i, 1);
  fprintf(stderr, "%s %zu saga%s? [y/N] ", ACT_NAME[action], n,
          n == 1 ? "" : "s");
  fflush(stderr);
  char line[64];
  if (fgets(line, sizeof line, stdin) == NULL)
    return 0;
  for (char *p = line; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  line[strcspn(line, "\r\n")] = '\0';
  return strcmp(line, "y") == 0 || strcmp(line, "yes") == 0;
}

/* Re-read each saga of b[from, to) still to be touched; those whose
 * status no longer lets the action apply are refused ("now ..."). Then
 * send the rest. Returns an exit code when nothing could be sent (line
 * printed; those items are failed), else CLI_EXIT_OK. */
static int act_batch(PGconn *c, const cli_settings_t *s, const char *reason,
                     cli_action_t action, bulk_t *b, size_t from,
                     size_t to) {
  cli_send_t *items = calloc(to - from, sizeof *items);
  size_t *idx = calloc(to - from, sizeof *idx);
  if (items == NULL || idx == NULL) {
    free(items);
    free(idx);
    return cli_fail(CLI_EXIT_FAIL, "out of memory");
  }
  size_t n = 0;
  char why[300], now[320];
  for (size_t i = from; i < to; i++) {
    if (b->res[i] != R_TOUCH)
      continue;
    cli_index_row_t row;
    int found = cli_db_get(c, b->rows[i].saga_id, &row);
    if (found != 0) {
      set_why(b, i, R_FAILED,
              found > 0 ? "no longer in saga_index"
                        : "could not read its status again");
      continue;
    }
    if (cli_action_refusal(action, row.status, why, sizeof why) != NULL) {
      snprintf(now, sizeof now, "now %s", why);
      set_why(b, i, R_REFUSED, now);
      free(b->rows[i].status);
      b->rows[i].status = row.status;
      row.status = NULL;
    } else {
      items[n] = (cli_send_t){.saga_id = b->rows[i].saga_id};
      idx[n++] = i;
    }
    cli_index_row_clear(&row);
  }
  int rc = CLI_EXIT_OK;
  if (n > 0)
    rc = action == CLI_ACT_CANCEL
             ? cli_cancel_send(s, reason, items, n)
             : cli_operator_send(s, action == CLI_ACT_RETRY ? 1 : 2, reason,
                                 items, n);
  for (size_t k = 0; k < n; k++) {
    if (rc != CLI_EXIT_OK)
      set_why(b, idx[k], R_FAILED, "not sent: see the error above");
    else if (items[k].rc == CLI_EXIT_OK)
      set_why(b, idx[k], R_TOUCHED, NULL);
    else {
      set_why(b, idx[k], R_FAILED, items[k].why);
      b->unreachable += items[k].rc == CLI_EXIT_UNREACHABLE;
    }
  }
  free(items);
  free(idx);
  return rc;
}

/* The query's part of a's checks: an action by query needs at least one
 * filter and no saga id, and --wait is for one saga. */
static int check_query(const cli_args_t *a, const char *cmd) {
  if (a->npos != 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "%s: give one saga id or a query (--state, --type, "
                    "--since, --until, --stuck), not both",
                    cmd);
  int filters = 0;
  for (size_t i = 0; i < sizeof QUERY_OPTS / sizeof *QUERY_OPTS; i++)
    filters += a->opt[QUERY_OPTS[i]] != NULL;
  if (filters == 0)
    return cli_fail(CLI_EXIT_USAGE,
                    "%s: expected a saga id, or a query of at least one of "
                    "--state, --type, --since, --until, --stuck",
                    cmd);
  if (a->opt[CLI_OPT_WAIT] != NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "%s: --wait applies to one saga id, not to a query "
                    "(follow a bulk %s with 'sagactl list')",
                    cmd, cmd);
  return CLI_EXIT_OK;
}

int cli_bulk_run(const cli_args_t *a, const cli_settings_t *s,
                 cli_action_t action) {
  const char *cmd = ACT_NAME[action];
  int dry_run = a->opt[CLI_OPT_DRY_RUN] != NULL;
  const char *reason = a->opt[CLI_OPT_REASON];
  cli_output_t fmt;
  iq_filter_t f;
  iq_cursor_t after;
  int rc = check_query(a, cmd);
  if (rc != CLI_EXIT_OK || (rc = cli_output_of(a, &fmt)) != CLI_EXIT_OK ||
      (rc = cli_query_filter(a, cmd, &f, &after)) != CLI_EXIT_OK)
    return rc;
  if (action == CLI_ACT_CANCEL && !dry_run &&
      (reason == NULL || *reason == '\0'))
    return cli_fail(CLI_EXIT_USAGE, "cancel: --reason TEXT is required (it "
                                    "is recorded in each saga's history)");
  /* before any saga is looked up or a confirmation asked for: the same
   * text goes to every saga */
  if ((rc = cli_action_text_check(s, action, cmd, reason)) != CLI_EXIT_OK)
    return rc;
  if (!dry_run && cli_get(s, CLI_SET_KAFKA) == NULL)
    return cli_fail(CLI_EXIT_USAGE,
                    "no Kafka configured: give --kafka BOOTSTRAP, "
                    "SAGA_KAFKA_BOOTSTRAP or \"kafka = ...\" in the config "
                    "file");
  char *thresholds = NULL;
  if ((rc = cli_defs_stuck_thresholds(s, &thresholds)) != CLI_EXIT_OK)
    return rc;
  iq_stuck_t st = {.default_ms = IQ_STUCK_DEFAULT_MS,
                   .thresholds_json = thresholds};
  PGconn *c = NULL;
  bulk_t b = {0};
  if ((rc = cli_db_connect(s, &c)) != CLI_EXIT_OK ||
      (rc = collect(c, &f, &st, &b)) != CLI_EXIT_OK)
    goto out;
  char why[300];
  size_t eligible = 0;
  for (size_t i = 0; i < b.n; i++) {
    if (cli_action_refusal(action, b.rows[i].status, why, sizeof why) != NULL)
      set_why(&b, i, R_REFUSED, why);
    else
      eligible++;
  }
  if (!dry_run && eligible > 0 && a->opt[CLI_OPT_YES] == NULL) {
    if (!isatty(STDIN_FILENO)) {
      rc = cli_fail(CLI_EXIT_USAGE,
                    "%s: %zu of %zu matching sagas would be touched; not "
                    "acting without a confirmation and stdin is not a "
                    "terminal: give --yes to act on all of them (--dry-run "
                    "lists them)",
                    cmd, eligible, b.n);
      goto out;
    }
    if (!confirm(&b, action, eligible)) {
      rc = cli_fail(CLI_EXIT_FAIL, "%s: not confirmed: nothing was sent",
                    cmd);
      goto out;
    }
  }
  for (size_t from = 0; !dry_run && from < b.n; from += BULK_BATCH) {
    size_t to = from + BULK_BATCH < b.n ? from + BULK_BATCH : b.n;
    int src = act_batch(c, s, reason, action, &b, from, to);
    if (src != CLI_EXIT_OK) {
      for (size_t i = to; i < b.n; i++)
        if (b.res[i] == R_TOUCH)
          set_why(&b, i, R_FAILED, "not sent: see the error above");
      if (count(&b).touched == 0)
        rc = src;
      break;
    }
  }
  int prc = report(&b, action, dry_run, fmt);
  counts_t k = count(&b);
  if (rc == CLI_EXIT_OK && prc != CLI_EXIT_OK)
    rc = prc;
  else if (rc == CLI_EXIT_OK && !dry_run && k.touched == 0 && k.failed > 0 &&
           b.unreachable == k.failed)
    rc = CLI_EXIT_UNREACHABLE; /* Kafka was never reached */
  else if (rc == CLI_EXIT_OK && !dry_run && (k.refused || k.failed))
    rc = CLI_EXIT_FAIL;
out:
  bulk_clear(&b);
  PQfinish(c);
  cJSON_free(thresholds);
  return rc;
}
