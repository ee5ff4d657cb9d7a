/* How sagactl prints what it read: the --output formats and JSON on
 * stdout. Shared by every command that prints rows or documents, so no
 * command file depends on another for its printing. */
#ifndef SAGACTL_CLI_OUTPUT_H
#define SAGACTL_CLI_OUTPUT_H

#include "cli.h"

typedef enum {
  CLI_OUT_TABLE, /* aligned text for people (the default) */
  CLI_OUT_JSON,  /* one JSON document */
  CLI_OUT_JSONL, /* one JSON object per line, for streams and jq -c */
} cli_output_t;

/* The format a's --output (table, json or jsonl) and --json (= json) ask
 * for. Returns CLI_EXIT_OK with *out set, or CLI_EXIT_USAGE with the line
 * printed (an unknown format, or --json with another --output). */
int cli_output_of(const cli_args_t *a, cli_output_t *out);

/* cli_output_of for a command that prints one document and no lines of
 * them (describe): jsonl is refused too. */
int cli_output_of_doc(const cli_args_t *a, cli_output_t *out);

/* Print v as JSON on one line of stdout (cJSON * passed as void * so this
 * header needs no cJSON) and delete it; CLI_EXIT_OK, or CLI_EXIT_FAIL on
 * OOM. */
int cli_print_json(void *v);

#endif
