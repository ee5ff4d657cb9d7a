/* Output formats and JSON printing (cli_output.h). */
#include "cli_output.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

int cli_output_of(const cli_args_t *a, cli_output_t *out) {
  static const char *const names[] = {"table", "json", "jsonl"};
  const char *v = a->opt[CLI_OPT_OUTPUT];
  *out = a->opt[CLI_OPT_JSON] != NULL ? CLI_OUT_JSON : CLI_OUT_TABLE;
  if (v == NULL)
    return CLI_EXIT_OK;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (strcmp(v, names[i]) == 0) {
      if (a->opt[CLI_OPT_JSON] != NULL && i != CLI_OUT_JSON)
        return cli_fail(CLI_EXIT_USAGE,
                        "--json and --output %s disagree: give one of them",
                        v);
      *out = (cli_output_t)i;
      return CLI_EXIT_OK;
    }
  char shown[CLI_SHOW_SIZE];
  return cli_fail(CLI_EXIT_USAGE,
                  "--output: expected table, json or jsonl, got \"%s\"",
                  cli_show(v, shown, sizeof shown));
}

int cli_output_of_doc(const cli_args_t *a, cli_output_t *out) {
  int rc = cli_output_of(a, out);
  if (rc == CLI_EXIT_OK && *out == CLI_OUT_JSONL)
    return cli_fail(CLI_EXIT_USAGE,
                    "--output: expected table or json, got \"jsonl\"");
  return rc;
}

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
