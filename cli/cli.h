/* sagactl internals shared by its commands: exit codes, the command line
 * (options table, parser), settings resolved from flags > environment >
 * config file, durations and time formatting. Pure except where a function
 * says it reads a file. Nothing here includes the coordinator's core
 * headers: command files that need them include them themselves (client.h
 * and saga_machine.h cannot share a translation unit). */
#ifndef SAGACTL_CLI_H
#define SAGACTL_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes (docs/sagactl.md). */
enum {
  CLI_EXIT_OK = 0,          /* done */
  CLI_EXIT_FAIL = 1,        /* operation failed, not found, mismatch */
  CLI_EXIT_USAGE = 2,       /* usage, configuration or input error */
  CLI_EXIT_UNREACHABLE = 3, /* PostgreSQL or Kafka could not be reached */
};

/* Every option: X(id, "long name", takes a value, help). */
#define CLI_OPTION_MAP(X)                                                    \
  X(HELP, "help", 0, "show help for the command")                           \
  X(VERSION, "version", 0, "print sagactl's version")                       \
  X(JSON, "json", 0, "print JSON instead of text")                          \
  X(CONFIG, "config", 1, "configuration file (default ~/.config/sagactl.conf)") \
  X(PG, "pg", 1, "PostgreSQL conninfo of the event store")                  \
  X(KAFKA, "kafka", 1, "Kafka bootstrap servers")                           \
  X(INBOX, "inbox", 1, "coordinator inbox topic")                           \
  X(NOTIFICATIONS, "notifications", 1, "notifications topic")               \
  X(DEFINITIONS, "definitions", 1, "folder of saga definitions (*.json)")   \
  X(TIMEOUT, "timeout", 1, "bound on connecting and waiting for a service") \
  X(MAX_INPUT, "max-input", 1, "ceiling on a start input, bytes")           \
  X(OPERATOR, "operator", 1, "operator name recorded with retry/resolve/cancel") \
  X(INPUT, "input", 1, "saga input: JSON text or @file (@- = stdin)")       \
  X(ID, "id", 1, "saga id (default: generated)")                            \
  X(DEF_VERSION, "def-version", 1, "pin a definition version")              \
  X(WAIT, "wait", 1, "await the outcome for at most DURATION")              \
  X(STATE, "state", 1, "only sagas in this status")                         \
  X(TYPE, "type", 1, "only sagas of this type")                             \
  X(SINCE, "since", 1, "only sagas started at or after TIME (RFC 3339 or a duration ago: 1h)") \
  X(UNTIL, "until", 1, "only sagas started before TIME (RFC 3339 or a duration ago: 30m)") \
  X(STUCK, "stuck", 0, "only stuck sagas: parked, or no progress past their step's stuck_after_ms") \
  X(OLDEST_FIRST, "oldest-first", 0, "oldest first (default: newest first)") \
  X(AFTER, "after", 1, "the next page: the TOKEN the previous page printed") \
  X(LIMIT, "limit", 1, "at most N sagas, 1..1000000 (list: default 100; replay --all: default 1000000)") \
  X(OUTPUT, "output", 1, "table, json or jsonl (default table; describe: table or json)") \
  X(ALL, "all", 0, "every saga in the index")                               \
  X(REASON, "reason", 1, "why, recorded with the action")                   \
  X(ARCHIVE, "archive", 1, "read from an archive file of saga-es-archive") \
  X(DRY_RUN, "dry-run", 0, "check or list what would be touched; change nothing") \
  X(YES, "yes", 0, "act on every saga a query matches without asking")      \
  X(PAYLOADS, "payloads", 0, "show input and outputs in full")

typedef enum {
#define CLI_OPT_ENUM_(id, name, val, help) CLI_OPT_##id,
  CLI_OPTION_MAP(CLI_OPT_ENUM_)
#undef CLI_OPT_ENUM_
      CLI_OPT_COUNT_
} cli_opt_t;
/* A command's options are a 32-bit mask of CLI_OPT_BIT. */
_Static_assert(CLI_OPT_COUNT_ <= 32, "more options than mask bits");

#define CLI_OPT_BIT(id) ((uint32_t)1 << CLI_OPT_##id)
/* Options every command accepts. */
#define CLI_COMMON_OPTS                                                      \
  (CLI_OPT_BIT(HELP) | CLI_OPT_BIT(VERSION) | CLI_OPT_BIT(CONFIG) |          \
   CLI_OPT_BIT(PG) |                                                         \
   CLI_OPT_BIT(KAFKA) | CLI_OPT_BIT(INBOX) | CLI_OPT_BIT(NOTIFICATIONS) |    \
   CLI_OPT_BIT(DEFINITIONS) | CLI_OPT_BIT(TIMEOUT) | CLI_OPT_BIT(MAX_INPUT) | \
   CLI_OPT_BIT(OPERATOR))

#define CLI_MAX_POSITIONAL 4

/* A parsed command line. Strings are borrowed from argv. */
typedef struct cli_args {
  const char *command;                  /* NULL when none was given */
  const char *pos[CLI_MAX_POSITIONAL];  /* positional arguments */
  size_t npos;
  const char *opt[CLI_OPT_COUNT_];      /* value, "1" for flags, or NULL */
} cli_args_t;

/* Long name of an option ("older-than"), its help text, whether it takes a
 * value. */
const char *cli_opt_name(cli_opt_t o);
const char *cli_opt_help(cli_opt_t o);
int cli_opt_takes_value(cli_opt_t o);

/* Parse argv (argv[0] is the program). Options may come before or after
 * the command, as --name VALUE or --name=VALUE; "--" ends options. Returns
 * 0, or -1 with a message in err (unknown option, missing value, a value
 * given to a flag, too many arguments, an option given twice). */
int cli_args_parse(int argc, const char *const argv[], cli_args_t *out, char *err,
                   size_t errlen);

/* -1 with a message in err when args holds an option outside `allowed`
 * (a mask of CLI_OPT_BIT) for `command`; else 0. */
int cli_args_check(const cli_args_t *args, uint32_t allowed,
                   const char *command, char *err, size_t errlen);

/* Settings: X(id, "name in the file", "ENV", option, default, help). */
#define CLI_SETTING_MAP(X)                                                   \
  X(PG, "pg", "SAGA_PG_CONNINFO", PG, NULL,                                  \
    "libpq conninfo of the event store and saga_index")                      \
  X(KAFKA, "kafka", "SAGA_KAFKA_BOOTSTRAP", KAFKA, NULL,                     \
    "Kafka bootstrap.servers")                                               \
  X(INBOX, "inbox", "SAGA_INBOX_TOPIC", INBOX, "saga.inbox",                 \
    "the coordinator's inbox topic")                                         \
  X(NOTIFICATIONS, "notifications", "SAGA_NOTIFICATIONS_TOPIC",              \
    NOTIFICATIONS, "saga.notifications", "the lifecycle notifications topic") \
  X(DEFINITIONS, "definitions", "SAGA_DEFINITIONS", DEFINITIONS, NULL,       \
    "folder of saga definitions, for start checks, history and replay")      \
  X(TIMEOUT, "timeout", "SAGA_TIMEOUT", TIMEOUT, "10s",                      \
    "bound on connecting to and waiting for PostgreSQL or Kafka")            \
  X(MAX_INPUT, "max_input", "SAGA_MAX_INPUT", MAX_INPUT, "262144",           \
    "ceiling on a start input, bytes (at most 1000000)")                     \
  X(OPERATOR, "operator", "SAGA_OPERATOR", OPERATOR, NULL,                   \
    "operator name sent with retry/resolve (default: $USER)")

typedef enum {
#define CLI_SET_ENUM_(id, name, env, opt, def, help) CLI_SET_##id,
  CLI_SETTING_MAP(CLI_SET_ENUM_)
#undef CLI_SET_ENUM_
      CLI_SET_COUNT_
} cli_setting_t;

#define CLI_MAX_INPUT_CEILING 1000000
#define CLI_MAX_KAFKA_PROPS 32

/* Resolved settings; strings owned (cli_settings_free). */
typedef struct cli_settings {
  char *value[CLI_SET_COUNT_];   /* NULL when unset everywhere */
  char *source[CLI_SET_COUNT_];  /* "--pg", "SAGA_PG_CONNINFO", "f.conf:3" */
  int64_t timeout_ms;
  size_t max_input;
  /* "kafka.<property> = value" lines of the config file, passed through to
   * librdkafka: name, value, name, value, ..., NULL. */
  char *kafka_props[2 * CLI_MAX_KAFKA_PROPS + 1];
  size_t n_kafka_props;
} cli_settings_t;

const char *cli_setting_name(cli_setting_t s);
const char *cli_setting_env(cli_setting_t s);
const char *cli_setting_help(cli_setting_t s);
const char *cli_setting_default(cli_setting_t s);

/* An environment lookup (getenv, or a table in tests). */
typedef const char *(*cli_getenv_fn)(const char *name, void *arg);

/* Resolve every setting: flag, else environment, else config file, else
 * default. The file is args' --config (which must exist), else
 * $HOME/.config/sagactl.conf when it exists. Reads that file. Returns 0, or
 * -1 with one line in err naming the place ("sagactl.conf:3: unknown
 * setting \"x\"", "SAGA_TIMEOUT: timeout must be a duration between 100ms
 * and 1h: \"5\" has no unit: ..."). *out is filled
 * either way; free it with cli_settings_free. */
int cli_settings_resolve(const cli_args_t *args, cli_getenv_fn getenv_fn,
                         void *env_arg, cli_settings_t *out, char *err,
                         size_t errlen);
void cli_settings_free(cli_settings_t *s);

/* Get a setting's value, or NULL. */
const char *cli_get(const cli_settings_t *s, cli_setting_t id);

/* Parse a non-negative integer within [min, max]; 0 or -1. */
int cli_parse_uint(const char *text, uint64_t min, uint64_t max,
                   uint64_t *out);

/* The longest saga id (the coordinator's SAGA_MAX_ID). */
#define CLI_SAGA_ID_MAX 255

/* Whether id can name a saga: 1 to CLI_SAGA_ID_MAX bytes of UTF-8 without
 * control characters, as every saga in saga_index is (the coordinator
 * refuses anything else). Returns 0, or -1 with what is wrong in why,
 * without the id itself ("saga id is empty", "saga id is 300 bytes long,
 * the ceiling is 255", "saga id is not valid UTF-8 at byte 2", "saga id
 * holds a control character at byte 1"). */
int cli_saga_id_check(const char *id, char *why, size_t len);

/* Size of a buffer for cli_show. */
#define CLI_SHOW_SIZE 320

/* A value as an error line may show it (without quotes): its first 64
 * bytes, a control character or a byte that is not UTF-8 as \xNN, and
 * "... (N bytes)" when it is longer, so that a line stays one short line
 * of text whatever the value. Returns buf (CLI_SHOW_SIZE bytes). */
const char *cli_show(const char *v, char *buf, size_t len);

/* A free text (a reason, an operator's name) as a line of text output may
 * hold it: v whole (cut at len - 1 bytes), each control character (C0,
 * DEL, C1) as a space, so that a table row or a result line stays one line.
 * --json prints such a text as it is. Returns buf. */
const char *cli_flat(const char *v, char *buf, size_t len);
/* Buffers for cli_flat that hold a reason (1024 bytes on the wire) and an
 * operator's name (255) whole. */
#define CLI_FLAT_REASON 1025
#define CLI_FLAT_NAME 256

/* Why text is not a duration (saga__duration_explain), naming the value as
 * cli_show shows it. Returns buf (CLI_SHOW_SIZE + 160 bytes are enough). */
const char *cli_duration_why(const char *text, char *buf, size_t len);

/* Format Unix epoch ms as UTC "2025-01-31T12:00:00.250Z" into buf (at
 * least 32 bytes); "-" for 0. Returns buf. */
char *cli_format_time(int64_t ms, char *buf, size_t len);

/* Format a duration compactly: "850ms", "1.250s", "3m05s", "2h10m",
 * "3d4h"; "-" for a negative value. Returns buf. */
char *cli_format_duration(int64_t ms, char *buf, size_t len);

/* libpq's connect_timeout for a timeout: whole seconds rounded up, at
 * least 2 (libpq's least), as text into buf. Returns buf. */
char *cli_connect_timeout(int64_t timeout_ms, char *buf, size_t len);

/* "host:port" (or socket folder) of a conninfo for messages, best effort,
 * into buf. Returns buf. */
char *cli_conninfo_where(const char *conninfo, char *buf, size_t len);

/* Check a conninfo (key=value or URI) as far as libpq can before
 * connecting: its syntax and keywords (PQconninfoParse), its port numbers
 * and integer options. Text without '=' that is not a URI is a database
 * name, as PQconnectdbParams' expand_dbname takes it. Returns 0, or -1
 * with libpq's reason (one line) in why. */
int cli_conninfo_check(const char *conninfo, char *why, size_t len);

/* Current time, Unix epoch ms. */
int64_t cli_now_ms(void);

/* Print an error line "sagactl: <text>" to stderr and return code. The
 * line stays one line whatever the text holds: a control character or a
 * byte that is not UTF-8 is written as \xNN (values are best shown with
 * cli_show, which also cuts a long one). */
int cli_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
