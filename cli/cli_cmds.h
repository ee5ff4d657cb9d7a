/* The sagactl commands. Each returns an exit code (cli.h) and prints its
 * own error line. */
#ifndef SAGACTL_CLI_CMDS_H
#define SAGACTL_CLI_CMDS_H

#include <stdint.h>

#include "cli.h"
#include "cli_output.h"
#include "index_query.h"

int cli_cmd_start(const cli_args_t *a, const cli_settings_t *s);
int cli_cmd_status(const cli_args_t *a, const cli_settings_t *s);
int cli_cmd_list(const cli_args_t *a, const cli_settings_t *s);
int cli_cmd_history(const cli_args_t *a, const cli_settings_t *s);
int cli_cmd_replay(const cli_args_t *a, const cli_settings_t *s);
int cli_cmd_retry(const cli_args_t *a, const cli_settings_t *s);
int cli_cmd_resolve(const cli_args_t *a, const cli_settings_t *s);
int cli_cmd_cancel(const cli_args_t *a, const cli_settings_t *s);
int cli_cmd_describe(const cli_args_t *a, const cli_settings_t *s);

/* How a finished saga ended, from its stream: saga_index says only
 * completed or compensated. */
typedef struct {
  int resolved;      /* an operator's Resolved event: closed by hand */
  char *cancelled;   /* the CancelRequested reason ("" none given), or
                        NULL when it was not cancelled; malloc'd */
  char *cancelled_by; /* its operator, or NULL; malloc'd */
  char *output;      /* the saga's output (its Completed event's payload,
                        from the definition's "output" mapping), or NULL;
                        malloc'd, output_len bytes */
  size_t output_len;
} cli_ending_t;

/* Read how saga_id ended (see cli_ending_t) into *e. Returns an exit code
 * (line printed when not CLI_EXIT_OK); free e with cli_ending_clear. */
int cli_saga_ending(const cli_settings_t *s, const char *saga_id,
                    cli_ending_t *e);

/* Free what cli_saga_ending allocated. NULL-safe. */
void cli_ending_clear(cli_ending_t *e);

/* Whether the definitions folder of s holds saga type `type` (any version
 * when version is 0). Returns CLI_EXIT_OK with *found set, or
 * CLI_EXIT_USAGE when the folder cannot be loaded (line printed). */
int cli_defs_has_type(const cli_settings_t *s, const char *type,
                      uint32_t version, int *found);

/* The per-step stuck thresholds of the definitions folder of s, as
 * iq_stuck_t.thresholds_json wants them (every step of every loaded
 * definition with its stuck_after_ms), into *json (free it); NULL when no
 * folder is configured. Returns CLI_EXIT_OK, or an exit code with the line
 * printed (the folder cannot be loaded). */
int cli_defs_stuck_thresholds(const cli_settings_t *s, char **json);

/* The saga_index query of a's filters (--state, --type, --since, --until,
 * --stuck, --oldest-first, --limit, --after; index_query.h), as `list`
 * and the actions by query read them; after holds the decoded --after.
 * Returns CLI_EXIT_OK, or CLI_EXIT_USAGE with the line printed (a
 * positional argument, an unknown status, a bad time or token). */
int cli_query_filter(const cli_args_t *a, const char *cmd, iq_filter_t *f,
                     iq_cursor_t *after);

/* Actions by query (cmd_bulk.c): `retry`, `resolve` and `cancel` given
 * filters instead of a saga id. */
typedef enum {
  CLI_ACT_RETRY,
  CLI_ACT_RESOLVE,
  CLI_ACT_CANCEL,
} cli_action_t;

/* Whether a asks for an action by query: no saga id, or one of the query
 * filters (--state, --type, --since, --until, --stuck). --dry-run and --yes
 * alone do not: with one saga id they belong to the single-id command. */
int cli_bulk_wanted(const cli_args_t *a);

/* What the single-id form of cmd refuses of a's options (--output, which
 * is the query's, and --json but for cancel --wait: one saga id prints a
 * line of text). Returns CLI_EXIT_OK, or CLI_EXIT_USAGE with the line
 * printed. */
int cli_single_check(const cli_args_t *a, const char *cmd);

/* Why action does not apply to a saga in status ("completed, not parked
 * in compensation_failed", "parked in compensation_failed: retry or
 * resolve it", "already compensated: nothing to cancel") into buf, which
 * it returns; NULL when it applies (retry and resolve: parked in
 * compensation_failed; cancel: running). The single-id commands and the
 * actions by query refuse with the same words. */
const char *cli_action_refusal(cli_action_t action, const char *status,
                               char *buf, size_t len);

/* Run action on every saga a's query matches, all pages of it: list them
 * (--dry-run stops there), ask on a terminal unless --yes (refuse without
 * one), re-check each saga's status, send the same inbox messages as the
 * single-id command, print one line per saga and a summary. Returns an
 * exit code (docs/sagactl.md, "Actions by query"). */
int cli_bulk_run(const cli_args_t *a, const cli_settings_t *s,
                 cli_action_t action);

/* One saga of a batch of operator messages and what became of it. */
typedef struct {
  const char *saga_id; /* borrowed */
  int rc;              /* CLI_EXIT_OK once Kafka acknowledged it; else
                          CLI_EXIT_FAIL / CLI_EXIT_UNREACHABLE / USAGE */
  char why[512];       /* when rc is not CLI_EXIT_OK */
  int done;            /* the acknowledgement (or failure) arrived */
} cli_send_t;

/* Send an OperatorAction of kind (retry: 1, resolve: 2, as
 * Saga__V1__OperatorActionKind) with reason and the configured operator
 * for each of items[0..n) to the inbox, through one producer, waiting at
 * most the timeout for the acknowledgements (cmd_operator.c). Returns
 * CLI_EXIT_OK with each item's rc and why set, or an exit code with the
 * line printed when no producer could be made (nothing sent). */
int cli_operator_send(const cli_settings_t *s, int kind, const char *reason,
                      cli_send_t *items, size_t n);

/* Whether the --reason and the configured operator of an action (retry,
 * resolve, cancel) are ones its message can carry (the wire's rules:
 * UTF-8, no control characters but tab and newline, at most 1024 and 255
 * bytes), checked before anything is looked up, confirmed or sent.
 * Returns CLI_EXIT_OK, or CLI_EXIT_USAGE with the line printed
 * ("cmd: reason ..."). */
int cli_action_text_check(const cli_settings_t *s, cli_action_t action,
                          const char *cmd, const char *reason);

/* Send a CancelSaga with reason and the configured operator for each of
 * items[0..n) through one starter, as `cancel ID` does (cmd_start.c).
 * Returns as cli_operator_send. */
int cli_cancel_send(const cli_settings_t *s, const char *reason,
                    cli_send_t *items, size_t n);

#endif
