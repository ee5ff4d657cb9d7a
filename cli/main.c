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
/* The options of an action by query (cmd_bulk.c). */
#define BULK_OPTS                                                            \
  (B(STATE) | B(TYPE) | B(SINCE) | B(UNTIL) | B(STUCK) | B(DRY_RUN) |        \
   B(YES) | B(OUTPUT) | B(JSON))

static const struct command {
  const char *name;
  const char *usage;
  const char *summary;
  uint32_t opts;
  int (*run)(const cli_args_t *, const cli_settings_t *);
} COMMANDS[] = {
    {"start",
     "start TYPE --input JSON|@FILE [--id ID] [--def-version N] "
     "[--wait DURATION]",
     "start a saga through the coordinator's inbox (idempotent on --id) and "
     "print its id; with --wait, await its outcome",
     B(INPUT) | B(ID) | B(DEF_VERSION) | B(WAIT) | B(JSON), cli_cmd_start},
    {"status", "status ID [--output table|json|jsonl]",
     "show a saga's state from saga_index: type, version, status, step, "
     "times, next deadline",
     B(JSON) | B(OUTPUT), cli_cmd_status},
    {"list",
     "list [--state S] [--type T] [--since TIME] [--until TIME] [--stuck]\n"
     "                    [--oldest-first] [--limit N] [--after TOKEN]\n"
     "                    [--output table|json|jsonl]",
     "list sagas from saga_index, newest first, with the total that "
     "match and the next page's token",
     B(STATE) | B(TYPE) | B(SINCE) | B(UNTIL) | B(STUCK) | B(OLDEST_FIRST) |
         B(AFTER) | B(LIMIT) | B(OUTPUT) | B(JSON),
     cli_cmd_list},
    {"describe", "describe ID [--payloads] [--output table|json]",
     "show one saga for an incident: status, the current and parked step "
     "with its last failure, each step's state and output, the pending "
     "deadline, input and outputs (sizes; whole with --payloads), the "
     "operator trail",
     B(PAYLOADS) | B(OUTPUT) | B(JSON), cli_cmd_describe},
    {"history",
     "history ID [--payloads] [--archive FILE] [--output table|json|jsonl]",
     "show a saga's stored events as a timeline: time, step, action, "
     "attempt, outcome, duration (from an archive file with --archive, "
     "which needs no database); steps named by the definition recorded in "
     "the store",
     B(JSON) | B(ARCHIVE) | B(PAYLOADS) | B(OUTPUT), cli_cmd_history},
    {"replay",
     "replay ID|--all [--limit N] [--definitions DIR [--dry-run]]",
     "rebuild sagas from their events through the state machine, with the "
     "definitions recorded in the store, and compare with saga_index; exit "
     "1 on any mismatch, missing definition or history that cannot be read. "
     "With --dry-run, check whether "
     "a new definitions folder could take over each running saga",
     B(ALL) | B(JSON) | B(LIMIT) | B(DRY_RUN), cli_cmd_replay},
    {"retry",
     "retry ID [--reason TEXT] [--dry-run]\n"
     "       sagactl retry QUERY [--dry-run] [--yes] [--reason TEXT] "
     "[--output table|json|jsonl]",
     "ask the coordinator to retry the compensation of a saga parked in "
     "compensation_failed (of every one a query matches)",
     B(REASON) | BULK_OPTS, cli_cmd_retry},
    {"resolve",
     "resolve ID [--reason TEXT] [--dry-run]\n"
     "       sagactl resolve QUERY [--dry-run] [--yes] [--reason TEXT] "
     "[--output table|json|jsonl]",
     "close a saga parked in compensation_failed as compensated (the "
     "operator repaired it by hand; every one a query matches)",
     B(REASON) | BULK_OPTS, cli_cmd_resolve},
    {"cancel",
     "cancel ID --reason TEXT [--operator NAME] [--wait DURATION] "
     "[--dry-run]\n"
     "       sagactl cancel QUERY --reason TEXT [--dry-run] [--yes] "
     "[--output table|json|jsonl]",
     "cancel a running saga: before its pivot step is dispatched it stops "
     "and is compensated (COMPENSATED, exit 0 with --wait); after the "
     "pivot, or when it is finished or parked, nothing changes and the "
     "coordinator says why (CANCEL_REFUSED, exit 1). The reason and the "
     "operator are recorded in its history",
     B(REASON) | B(WAIT) | BULK_OPTS, cli_cmd_cancel},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof *COMMANDS)

/* `completion bash`: not a command on the saga coordinator (no settings
 * are read), but placed and helped as the commands are. */
static const struct command COMPLETION = {
    "completion", "completion bash",
    "print a bash completion script for sagactl, made from the same tables "
    "as --help (load it with: . <(sagactl completion bash))",
    0, NULL};

/* More for `sagactl COMMAND --help` than the summary says. */
static const struct {
  const char *command, *text;
} DETAILS[] = {
    {"list",
     "Order: start time, then saga id (newest first unless --oldest-first).\n"
     "TIME: an RFC 3339 time with its zone (2025-01-31T12:00:00Z) or a "
     "duration before\nnow (90s, 15m, 1h, 2d); --since and --until bound "
     "the start time ([since, until)),\nand a duration is taken from the "
     "database's clock when each page is read.\n"
     "--stuck: parked in compensation_failed, or running/compensating with "
     "no progress\npast the stuck_after_ms of the step it waits on, in "
     "its own definition version\n(written by sagad with each transition; "
     "rows from an older sagad: --definitions'\nthresholds, 5m without "
     "them), as sagad judges it.\n"
     "Pages: each page ends with \"shown N of TOTAL sagas ...; next page: "
     "--after TOKEN\"\n(on stderr with --output jsonl; \"next\" in the "
     "JSON); repeat the same filters with\n--after TOKEN for the next one.\n"
     "--json is --output json.\n\nExamples:\n"
     "  sagactl list --state compensation_failed --since 1h\n"
     "  sagactl list --stuck --type order --output jsonl | jq -r .saga_id\n"
     "  sagactl list --since 2025-01-31T00:00:00Z --until 2025-02-01T00:00:00Z "
     "--oldest-first"},
    {"history",
     "--archive FILE: the saga's events from a file of saga-es-archive, "
     "checked to its end\nbefore anything is shown; no database is needed. "
     "Its steps are named by\n--definitions, else by the definitions "
     "recorded in the store when PostgreSQL is\nconfigured and can be "
     "reached, else shown by number with a note on stderr that\nsays why."},
    {"replay",
     "One line per saga: ok, MISMATCH, MISSING (no definition: not "
     "checked) or FAILED\n(its history cannot be read through; the others "
     "go on), then a summary.\n--all: the sagas of saga_index, oldest "
     "first, at most --limit of them (default and\nmost 1000000; a note on "
     "stderr says when it stopped there), and the saga streams\nthat have "
     "no index row.\n--dry-run: the running sagas only (neither completed "
     "nor compensated): one finished\nsaga id is SKIPPED, --all counts "
     "them in the summary.\n\nExamples:\n"
     "  sagactl replay --all\n"
     "  sagactl replay --all --dry-run --definitions ./definitions-next"},
    {"retry",
     "One saga id: refused unless saga_index shows it parked in "
     "compensation_failed;\n--dry-run stops after that check (exit 0 would "
     "send, 1 refused) and needs no Kafka."},
    {"resolve",
     "One saga id: refused unless saga_index shows it parked in "
     "compensation_failed;\n--dry-run stops after that check (exit 0 would "
     "send, 1 refused) and needs no Kafka."},
    {"cancel",
     "One saga id: refused unless saga_index shows it running (when "
     "PostgreSQL is\nconfigured); --dry-run stops after that check (exit 0 "
     "would send, 1 refused)\nand needs neither Kafka nor --reason. A "
     "query's --dry-run needs no --reason either."},
};

/* What `retry|resolve|cancel --help` adds about actions by query. */
static const char BULK_HELP[] =
    "QUERY: the filters of 'sagactl list' (--state, --type, --since, "
    "--until, --stuck;\nat least one), every page of them. The matches "
    "are listed with what would\nhappen to each; --dry-run stops there "
    "and sends nothing. Otherwise sagactl asks\nfor a confirmation on a "
    "terminal, or acts at once with --yes; without a terminal\nand "
    "without --yes it refuses (exit 2). Each saga's status is read again "
    "just\nbefore its message is sent, the same message as for one id, "
    "with --reason and\n--operator; a saga whose status does not allow "
    "the action is refused with why.\nThe summary counts touched, refused "
    "and failed sagas. Exit 0 when every match\nwas touched (or none "
    "matched, or with --dry-run), 1 when one was refused or\nfailed or "
    "the prompt was not confirmed, 3 when Kafka could not be reached for\n"
    "any of them.\n\n"
    "Examples:\n"
    "  sagactl retry --state compensation_failed --type order --since 1h "
    "--dry-run\n"
    "  sagactl retry --state compensation_failed --type order --since 1h "
    "--yes \\\n      --reason \"inventory back after the outage\"";

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

/* `sagactl completion bash`: a bash completion script made from the same
 * tables as --help, so a new command or option completes at once. The
 * command is the first word that is neither an option nor an option's
 * value (options may come before it: `sagactl --pg X list --<TAB>`). */
static void print_bash_completion(FILE *out) {
  fputs("# bash completion for sagactl (generated by `sagactl completion "
        "bash`)\n_sagactl() {\n"
        "  local cur=${COMP_WORDS[COMP_CWORD]} opts cmd= i w\n"
        "  local valopts=\"",
        out);
  for (int o = 0; o < CLI_OPT_COUNT_; o++)
    if (cli_opt_takes_value((cli_opt_t)o))
      fprintf(out, " --%s", cli_opt_name((cli_opt_t)o));
  fputs(" \"\n"
        "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
        "    w=${COMP_WORDS[i]}\n"
        "    case $w in\n"
        "      --) break ;;\n"
        "      -*) if [[ $valopts == *\" $w \"* ]]; then\n"
        "            # --name VALUE, or --name = VALUE (bash splits at '=')\n"
        "            if [ \"${COMP_WORDS[i+1]}\" = \"=\" ]; then ((i += 2)); "
        "else ((i++)); fi\n"
        "          fi ;;\n"
        "      =) ((i++)) ;;\n"
        "      *) cmd=$w; break ;;\n"
        "    esac\n"
        "  done\n"
        "  if [ -z \"$cmd\" ]; then\n"
        "    opts=\"--help --version help completion",
        out);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, " %s", COMMANDS[i].name);
  fputs("\"\n  else\n    case $cmd in\n", out);
  for (size_t i = 0; i < NCOMMANDS; i++) {
    fprintf(out, "      %s) opts=\"", COMMANDS[i].name);
    uint32_t mask = COMMANDS[i].opts | CLI_COMMON_OPTS;
    const char *sep = "";
    for (int o = 0; o < CLI_OPT_COUNT_; o++)
      if (mask & ((uint32_t)1 << o)) {
        fprintf(out, "%s--%s", sep, cli_opt_name((cli_opt_t)o));
        sep = " ";
      }
    fputs("\" ;;\n", out);
  }
  fputs("      completion) opts=\"bash\" ;;\n", out);
  fputs("      help) opts=\"", out);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "%s ", COMMANDS[i].name);
  fputs(COMPLETION.name, out);
  fputs("\" ;;\n"
        "      *) opts=\"\" ;;\n    esac\n  fi\n"
        "  COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n}\n"
        "complete -o default -F _sagactl sagactl\n",
        out);
}

static void print_exit_codes(FILE *out) {
  fputs("\nExit codes: 0 ok, 1 operation failed or not found, 2 usage or "
        "configuration error,\n3 PostgreSQL or Kafka unreachable.\n",
        out);
}

static void usage(FILE *out) {
  fputs("usage: sagactl COMMAND [ARGS] [OPTIONS]\n"
        "       sagactl --version\n"
        "       sagactl help [COMMAND]   (the same as --help, -h)\n"
        "       sagactl completion bash   (a bash completion script)\n"
        "\nCommands:\n", out);
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
  printf("usage: sagactl %s\n\n%s.\n", c->usage, c->summary);
  if (c->opts != 0) {
    puts("\nOptions:");
    print_options(stdout, c->opts);
  }
  for (size_t i = 0; i < sizeof DETAILS / sizeof *DETAILS; i++)
    if (strcmp(DETAILS[i].command, c->name) == 0)
      printf("\n%s\n", DETAILS[i].text);
  if (c->opts & B(YES)) /* the actions by query */
    printf("\n%s\n", BULK_HELP);
  puts("\nCommon options:");
  print_options(stdout, CLI_COMMON_OPTS & ~CLI_OPT_BIT(HELP));
  print_exit_codes(stdout);
}

/* The commands whose one argument is a saga id. */
static int takes_saga_id(const char *command) {
  static const char *const IDS[] = {"status",  "describe", "replay", "retry",
                                    "resolve", "cancel",   "history"};
  for (size_t i = 0; i < sizeof IDS / sizeof *IDS; i++)
    if (strcmp(IDS[i], command) == 0)
      return 1;
  return 0;
}

static const char *env_lookup(const char *name, void *arg) {
  (void)arg;
  return getenv(name);
}

/* sagactl completion bash, with options anywhere, as every command. */
static int run_completion(const cli_args_t *args) {
  char err[256];
  if (args->opt[CLI_OPT_HELP] != NULL) {
    command_help(&COMPLETION);
    return CLI_EXIT_OK;
  }
  if (cli_args_check(args, CLI_COMMON_OPTS, COMPLETION.name, err,
                     sizeof err) != 0)
    return cli_fail(CLI_EXIT_USAGE, "%s", err);
  if (args->npos != 1 || strcmp(args->pos[0], "bash") != 0)
    return cli_fail(CLI_EXIT_USAGE, "usage: sagactl completion bash");
  print_bash_completion(stdout);
  return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
  cli_args_t args;
  char err[1024];
  if (cli_args_parse(argc, (const char *const *)argv, &args, err, sizeof err) != 0) {
    cli_fail(CLI_EXIT_USAGE, "%s", err);
    fputs("Try 'sagactl --help'.\n", stderr);
    return CLI_EXIT_USAGE;
  }
  /* --version anywhere, as --help: `sagactl --pg X --version` */
  if (args.opt[CLI_OPT_VERSION] != NULL) {
    printf("sagactl %s\n", SAGA_VERSION);
    return CLI_EXIT_OK;
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
  if (strcmp(args.command, COMPLETION.name) == 0)
    return run_completion(&args);
  const struct command *cmd = NULL;
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(COMMANDS[i].name, args.command) == 0)
      cmd = &COMMANDS[i];
  if (cmd == NULL) {
    char shown[CLI_SHOW_SIZE];
    cli_fail(CLI_EXIT_USAGE, "unknown command \"%s\"",
             cli_show(args.command, shown, sizeof shown));
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
  /* One saga id: an id no saga can have is refused here, before it reaches
   * a query PostgreSQL would fail on (not UTF-8) or a "not found". */
  if (takes_saga_id(cmd->name) && args.npos == 1 &&
      cli_saga_id_check(args.pos[0], err, sizeof err) != 0)
    return cli_fail(CLI_EXIT_USAGE, "%s: %s", cmd->name, err);
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
