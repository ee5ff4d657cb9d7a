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

/* Whether saga_id's stream holds an operator's Resolved event (a saga
 * closed by hand shows in saga_index as compensated). Returns an exit
 * code; on CLI_EXIT_OK *resolved is 0 or 1 (line printed otherwise). */
int cli_saga_was_resolved(const cli_settings_t *s, const char *saga_id,
                          int *resolved);

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
