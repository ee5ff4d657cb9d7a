/* sagactl: the operator's command line for the saga coordinator. It
 * starts sagas, reads saga_index and the saga streams of the event store,
 * replays histories through the coordinator's pure machine, and sends
 * operator actions. Usage and exit codes: docs/sagactl.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "saga/version.h"
#include "cli_cmds.h"

#define B(id) CLI_OPT_BIT(id)

static const struct command {
  const char *name;
  const char *usage;
  const char *summary;
  uint32_t opts;
  int (*run)(const cli_args_t *, const cli_settings_t *);
} COMMANDS[] = {
    {"start", "start TYPE --input JSON|@FILE [--id ID] [--wait DURATION]",
     "start a saga through the coordinator's inbox (idempotent on --id) and "
     "print its id; with --wait, await its outcome",
     B(INPUT) | B(ID) | B(DEF_VERSION) | B(WAIT) | B(JSON), cli_cmd_start},
    {"status", "status ID",
     "show a saga's state from saga_index: type, version, status, step, "
     "times, next deadline",
     B(JSON), cli_cmd_status},
    {"list",
     "list [--state S] [--type T] [--older-than D] [--stuck D] [--limit N]",
     "list sagas from saga_index, oldest progress first",
     B(STATE) | B(TYPE) | B(OLDER_THAN) | B(STUCK) | B(LIMIT) | B(JSON),
     cli_cmd_list},
    {"history", "history ID",
     "show a saga's stored events as a timeline: time, step, action, "
     "attempt, outcome, duration",
     B(JSON), cli_cmd_history},
    {"replay", "replay ID|--all --definitions DIR",
     "rebuild sagas from their events through the state machine and compare "
     "with saga_index; exit 1 on any mismatch",
     B(ALL) | B(JSON) | B(LIMIT), cli_cmd_replay},
    {"retry", "retry ID [--reason TEXT]",
     "ask the coordinator to retry the compensation of a saga parked in "
     "compensation_failed",
     B(REASON), cli_cmd_retry},
    {"resolve", "resolve ID [--reason TEXT]",
     "close a saga parked in compensation_failed as compensated (the "
     "operator repaired it by hand)",
     B(REASON), cli_cmd_resolve},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof *COMMANDS)

static void print_options(FILE *out, uint32_t mask) {
  for (int i = 0; i < CLI_OPT_COUNT_; i++) {
    if ((mask & ((uint32_t)1 << i)) == 0)
      continue;
    char left[48];
    snprintf(left, sizeof left, "--%s%s", cli_opt_name((cli_opt_t)i),
             cli_opt_takes_value((cli_opt_t)i) ? " VALUE" : "");
    fprintf(out, "  %-22s %s\n", left, cli_opt_help((cli_opt_t)i));
  }
}

static void print_exit_codes(FILE *out) {
  fputs("\nExit codes: 0 ok, 1 operation failed or not found, 2 usage or "
        "configuration error,\n3 PostgreSQL or Kafka unreachable.\n",
        out);
}

static void usage(FILE *out) {
  fputs("usage: sagactl COMMAND [ARGS] [OPTIONS]\n"
        "       sagactl --version\n\nCommands:\n", out);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  fputs("\nOptions for every command:\n", out);
  print_options(out, CLI_COMMON_OPTS);
  fputs("\nSettings come from flags, then environment (", out);
  for (int i = 0; i < CLI_SET_COUNT_; i++)
    fprintf(out, "%s%s", i > 0 ? ", " : "",
            cli_setting_env((cli_setting_t)i));
  fputs("),\nthen the config file (\"name = value\" lines, kafka.<property> "
        "passed to librdkafka).\n'sagactl COMMAND --help' describes one "
        "command.\n",
        out);
  print_exit_codes(out);
}

static void command_help(const struct command *c) {
  printf("usage: sagactl %s\n\n%s.\n\nOptions:\n", c->usage, c->summary);
  print_options(stdout, c->opts);
  puts("\nCommon options:");
  print_options(stdout, CLI_COMMON_OPTS & ~CLI_OPT_BIT(HELP));
  print_exit_codes(stdout);
}

static const char *env_lookup(const char *name, void *arg) {
  (void)arg;
  return getenv(name);
}

int main(int argc, char **argv) {
  cli_args_t args;
  char err[1024];
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    printf("sagactl %s\n", SAGA_VERSION);
    return CLI_EXIT_OK;
  }
  if (cli_args_parse(argc, (const char *const *)argv, &args, err, sizeof err) != 0) {
    cli_fail(CLI_EXIT_USAGE, "%s", err);
    fputs("Try 'sagactl --help'.\n", stderr);
    return CLI_EXIT_USAGE;
  }
  if (args.command == NULL || strcmp(args.command, "help") == 0) {
    if (args.command == NULL && args.opt[CLI_OPT_HELP] == NULL) {
      usage(stderr);
      return CLI_EXIT_USAGE;
    }
    if (args.command != NULL && args.npos == 1) {
      args.command = args.pos[0];
      args.npos = 0;
      args.opt[CLI_OPT_HELP] = "1";
    } else {
      usage(stdout);
      return CLI_EXIT_OK;
    }
  }
  const struct command *cmd = NULL;
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(COMMANDS[i].name, args.command) == 0)
      cmd = &COMMANDS[i];
  if (cmd == NULL) {
    cli_fail(CLI_EXIT_USAGE, "unknown command \"%s\"", args.command);
    fputs("Try 'sagactl --help'.\n", stderr);
    return CLI_EXIT_USAGE;
  }
  if (args.opt[CLI_OPT_HELP] != NULL) {
    command_help(cmd);
    return CLI_EXIT_OK;
  }
  if (cli_args_check(&args, cmd->opts | CLI_COMMON_OPTS, cmd->name, err,
                     sizeof err) != 0)
    return cli_fail(CLI_EXIT_USAGE, "%s", err);
  cli_settings_t settings;
  if (cli_settings_resolve(&args, env_lookup, NULL, &settings, err,
                           sizeof err) != 0) {
    cli_settings_free(&settings);
    return cli_fail(CLI_EXIT_USAGE, "%s", err);
  }
  int rc = cmd->run(&args, &settings);
  cli_settings_free(&settings);
  return rc;
}
