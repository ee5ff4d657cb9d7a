/* The sagactl commands. Each returns an exit code (cli.h) and prints its
 * own error line. */
#ifndef SAGACTL_CLI_CMDS_H
#define SAGACTL_CLI_CMDS_H

#include <stdint.h>

#include "cli.h"
#include "cli_output.h"

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

#endif
