/* sagactl's pure parts: the command line, settings precedence (flags >
 * environment > config file > defaults) with errors that name their place,
 * durations, and the history timeline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "cli_timeline.h"

static cli_args_t parse_ok(int argc, const char *const *argv) {
  cli_args_t a;
  char err[256] = "";
  int rc = cli_args_parse(argc, argv, &a, err, sizeof err);
  if (rc != 0)
    fail_msg("parse failed: %s", err);
  return a;
}

static void expect_parse_error(int argc, const char *const *argv,
                               const char *want) {
  cli_args_t a;
  char err[256] = "";
  assert_int_equal(cli_args_parse(argc, argv, &a, err, sizeof err), -1);
  if (strstr(err, want) == NULL)
    fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_options_go_anywhere_in_both_forms(void **state) {
  (void)state;
  const char *argv[] = {"sagactl", "--pg=host=x", "list", "--state", "running",
                  "--json", "--", "--not-an-option"};
  cli_args_t a = parse_ok(8, argv);
  assert_string_equal(a.command, "list");
  assert_string_equal(a.opt[CLI_OPT_PG], "host=x");
  assert_string_equal(a.opt[CLI_OPT_STATE], "running");
  assert_string_equal(a.opt[CLI_OPT_JSON], "1");
  assert_int_equal(a.npos, 1);
  assert_string_equal(a.pos[0], "--not-an-option");
  assert_null(a.opt[CLI_OPT_TYPE]);
}

static void test_bad_command_lines_are_refused_with_the_reason(void **state) {
  (void)state;
  const char *unknown[] = {"sagactl", "list", "--frobnicate"};
  expect_parse_error(3, unknown, "unknown option \"--frobnicate\"");
  const char *missing[] = {"sagactl", "list", "--state"};
  expect_parse_error(3, missing, "\"--state\" needs a value");
  /* an option's value is never the next option: `--reason --dry-run`
   * would otherwise send the action the user asked to preview */
  const char *swallow[] = {"sagactl", "retry", "s-1", "--reason",
                           "--dry-run"};
  expect_parse_error(5, swallow,
                     "option \"--reason\" needs a value, and \"--dry-run\" "
                     "is an option");
  const char *dashval[] = {"sagactl", "retry", "s-1", "--reason=--dry-run"};
  cli_args_t dv = parse_ok(4, dashval);
  assert_string_equal(dv.opt[CLI_OPT_REASON], "--dry-run");
  assert_null(dv.opt[CLI_OPT_DRY_RUN]);
  const char *flagval[] = {"sagactl", "list", "--json=yes"};
  expect_parse_error(3, flagval, "takes no value");
  const char *twice[] = {"sagactl", "list", "--type", "a", "--type", "b"};
  expect_parse_error(6, twice, "given twice");
  const char *shortopt[] = {"sagactl", "-x"};
  expect_parse_error(2, shortopt, "unknown option \"-x\"");
  const char *many[] = {"sagactl", "status", "a", "b", "c", "d", "e"};
  expect_parse_error(7, many, "too many arguments");
  /* what the line repeats of the command line is shown as text: a
   * terminal's escape sequence is not sent to the terminal */
  const char *escape[] = {"sagactl", "list", "--x\x1b[2J=1"};
  expect_parse_error(3, escape, "unknown option \"--x\\x1b[2J\"");
  const char *escshort[] = {"sagactl", "-\x07"};
  expect_parse_error(2, escshort, "unknown option \"-\\x07\"");

  const char *wrong[] = {"sagactl", "status", "x", "--stuck", "1h"};
  cli_args_t a = parse_ok(5, wrong);
  char err[256];
  assert_int_equal(cli_args_check(&a, CLI_OPT_BIT(JSON) | CLI_COMMON_OPTS,
                                  "status", err, sizeof err),
                   -1);
  assert_non_null(strstr(err, "status: option \"--stuck\" does not apply"));
  assert_int_equal(cli_args_check(&a, CLI_OPT_BIT(STUCK) | CLI_COMMON_OPTS,
                                  "list", err, sizeof err),
                   0);
}

static void test_numbers_parse_within_bounds(void **state) {
  (void)state;
  uint64_t n = 0;
  assert_int_equal(cli_parse_uint("42", 1, 100, &n), 0);
  assert_int_equal(n, 42);
  assert_int_equal(cli_parse_uint("0", 1, 100, &n), -1);
  assert_int_equal(cli_parse_uint("4x", 1, 100, &n), -1);
  assert_int_equal(cli_parse_uint("-1", 0, 100, &n), -1);
}

/* A saga id no saga can have is told apart without the id; a value an
 * error line shows is short text, whatever the value. */
static void test_saga_ids_are_checked_and_values_shown_safely(void **state) {
  (void)state;
  char why[128], b[CLI_SHOW_SIZE];
  assert_int_equal(cli_saga_id_check("order-42", why, sizeof why), 0);
  assert_int_equal(cli_saga_id_check("with space \xc3\xa9", why, sizeof why),
                   0);
  assert_int_equal(cli_saga_id_check("", why, sizeof why), -1);
  assert_string_equal(why, "saga id is empty");
  assert_int_equal(cli_saga_id_check("a\xff", why, sizeof why), -1);
  assert_string_equal(why, "saga id is not valid UTF-8 at byte 1");
  assert_int_equal(cli_saga_id_check("ab\tc", why, sizeof why), -1);
  assert_string_equal(why, "saga id holds a control character at byte 2");
  char id[CLI_SAGA_ID_MAX + 2];
  memset(id, 'i', sizeof id - 1);
  id[sizeof id - 1] = '\0';
  assert_int_equal(cli_saga_id_check(id, why, sizeof why), -1);
  assert_string_equal(why, "saga id is 256 bytes long, the ceiling is 255");
  id[CLI_SAGA_ID_MAX] = '\0';
  assert_int_equal(cli_saga_id_check(id, why, sizeof why), 0);

  assert_string_equal(cli_show("running", b, sizeof b), "running");
  assert_string_equal(cli_show("\x1b[2Jx\xff\xc2\x85", b, sizeof b),
                      "\\x1b[2Jx\\xff\\xc2\\x85");
  assert_string_equal(cli_show("\xc3\xa9t\xc3\xa9", b, sizeof b),
                      "\xc3\xa9t\xc3\xa9");
  char big[10241];
  memset(big, 'v', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cli_show(big, b, sizeof b);
  assert_int_equal(strncmp(b, big, 64), 0);
  assert_string_equal(b + 64, "... (10240 bytes)");
  /* a UTF-8 sequence is never cut */
  memset(big, 'v', 63);
  memcpy(big + 63, "\xc3\xa9", 2);
  cli_show(big, b, sizeof b);
  assert_string_equal(b + 63, "... (10240 bytes)");
}

static void test_times_and_durations_format_readably(void **state) {
  (void)state;
  char b[40];
  assert_string_equal(cli_format_time(1700000000250, b, sizeof b),
                      "2023-11-14T22:13:20.250Z");
  assert_string_equal(cli_format_time(0, b, sizeof b), "-");
  assert_string_equal(cli_format_duration(850, b, sizeof b), "850ms");
  assert_string_equal(cli_format_duration(1250, b, sizeof b), "1.250s");
  assert_string_equal(cli_format_duration(185000, b, sizeof b), "3m05s");
  assert_string_equal(cli_format_duration(7800000, b, sizeof b), "2h10m");
  assert_string_equal(cli_format_duration(273600000, b, sizeof b), "3d4h");
  assert_string_equal(cli_format_duration(-1, b, sizeof b), "-");
}

static void test_the_connect_timeout_is_whole_seconds_at_least_two(
    void **state) {
  (void)state;
  char b[24];
  assert_string_equal(cli_connect_timeout(1500, b, sizeof b), "2");
  assert_string_equal(cli_connect_timeout(100, b, sizeof b), "2");
  assert_string_equal(cli_connect_timeout(10000, b, sizeof b), "10");
  assert_string_equal(cli_connect_timeout(10001, b, sizeof b), "11");
  char w[128];
  assert_string_equal(cli_conninfo_where("host=db port=6543 dbname=s", w,
                                         sizeof w),
                      "db:6543 database s");
}

/* What libpq can tell of a conninfo before connecting: its syntax, its
 * keywords, its port numbers, integer options and enumerated words. */
static void test_a_conninfo_is_checked_before_connecting(void **state) {
  (void)state;
  char why[256];
  static const char *const good[] = {
      "host=db port=5432 dbname=s", "postgresql://u@db:6543/s?sslmode=prefer",
      "sagas", "host=a,b port=5432,5433", "host=db port=", "connect_timeout=5",
      "host=db keepalives_idle=30"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    if (cli_conninfo_check(good[i], why, sizeof why) != 0)
      fail_msg("\"%s\" refused: %s", good[i], why);
  static const struct {
    const char *conninfo, *says;
  } bad[] = {
      {"garbage=1", "invalid connection option \"garbage\""},
      {"host=x port=abc", "invalid port number: \"abc\""},
      {"host=a,b port=5432,x", "invalid port number: \"x\""},
      {"host=x port=70000", "invalid port number: \"70000\""},
      {"host=x connect_timeout=soon",
       "invalid integer value \"soon\" for connection option "
       "\"connect_timeout\""},
      {"host='x", "unterminated quoted string"},
      {"host=x sslmode=bogus", "invalid sslmode value: \"bogus\""},
      {"postgresql://db:abc/s", "invalid"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    why[0] = '\0';
    assert_int_equal(cli_conninfo_check(bad[i].conninfo, why, sizeof why), -1);
    if (strstr(why, bad[i].says) == NULL)
      fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].conninfo, why,
               bad[i].says);
    assert_null(strchr(why, '\n'));
  }
}

/* ---- settings --------------------------------------------------------- */

typedef struct {
  const char *names[8], *values[8];
} env_t;

static const char *env_get(const char *name, void *arg) {
  env_t *e = arg;
  for (size_t i = 0; i < 8 && e->names[i] != NULL; i++)
    if (strcmp(e->names[i], name) == 0)
      return e->values[i];
  return NULL;
}

static char tmpdir[64];

static int make_tmpdir(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sagactl-unit-XXXXXX");
  return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int remove_tmpdir(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static const char *write_conf(const char *name, const char *text) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static int resolve(const char **argv, int argc, env_t *env, cli_settings_t *s,
                   char *err, size_t errlen) {
  cli_args_t a = parse_ok(argc, argv);
  return cli_settings_resolve(&a, env_get, env, s, err, errlen);
}

static void test_flags_beat_environment_beats_file_beats_defaults(
    void **state) {
  (void)state;
  const char *conf = write_conf("a.conf",
                                "# sagactl settings\n"
                                "pg = host=from-file\n"
                                "kafka = file:9092\n"
                                "\n"
                                "inbox = file.inbox\n"
                                "timeout = 3s\n"
                                "kafka.security.protocol = SASL_SSL\n");
  char confarg[160];
  snprintf(confarg, sizeof confarg, "--config=%s", conf);
  const char *argv[] = {"sagactl", "list", confarg, "--pg", "host=from-flag"};
  env_t env = {{"SAGA_PG_CONNINFO", "SAGA_KAFKA_BOOTSTRAP", "USER"},
               {"host=from-env", "env:9092", "alice"}};
  cli_settings_t s;
  char err[256] = "";
  assert_int_equal(resolve(argv, 5, &env, &s, err, sizeof err), 0);
  assert_string_equal(cli_get(&s, CLI_SET_PG), "host=from-flag");
  assert_string_equal(s.source[CLI_SET_PG], "--pg");
  assert_string_equal(cli_get(&s, CLI_SET_KAFKA), "env:9092");
  assert_string_equal(s.source[CLI_SET_KAFKA], "SAGA_KAFKA_BOOTSTRAP");
  assert_string_equal(cli_get(&s, CLI_SET_INBOX), "file.inbox");
  assert_non_null(strstr(s.source[CLI_SET_INBOX], "a.conf:5"));
  assert_string_equal(cli_get(&s, CLI_SET_NOTIFICATIONS),
                      "saga.notifications");
  assert_string_equal(cli_get(&s, CLI_SET_OPERATOR), "alice");
  assert_int_equal(s.timeout_ms, 3000);
  assert_int_equal(s.max_input, 262144);
  assert_int_equal(s.n_kafka_props, 1);
  assert_string_equal(s.kafka_props[0], "security.protocol");
  assert_string_equal(s.kafka_props[1], "SASL_SSL");
  assert_null(s.kafka_props[2]);
  cli_settings_free(&s);

  /* librdkafka's name for the brokers is the kafka setting, at the file's
   * place in the order: not a property that beats the flag */
  const char *bconf = write_conf("b.conf",
                                 "kafka.bootstrap.servers = file:9092\n");
  snprintf(confarg, sizeof confarg, "--config=%s", bconf);
  const char *kargv[] = {"sagactl", "list", confarg, "--kafka", "flag:9092"};
  env_t none = {{NULL}, {NULL}};
  assert_int_equal(resolve(kargv, 5, &none, &s, err, sizeof err), 0);
  assert_string_equal(cli_get(&s, CLI_SET_KAFKA), "flag:9092");
  assert_int_equal(s.n_kafka_props, 0);
  cli_settings_free(&s);
  assert_int_equal(resolve(kargv, 3, &none, &s, err, sizeof err), 0);
  assert_string_equal(cli_get(&s, CLI_SET_KAFKA), "file:9092");
  assert_non_null(strstr(s.source[CLI_SET_KAFKA], "b.conf:1"));
  assert_int_equal(s.n_kafka_props, 0);
  cli_settings_free(&s);
  /* both names in one file: which is meant is not clear */
  const char *tconf = write_conf("two.conf", "kafka = a:9092\n"
                                             "kafka.bootstrap.servers = b:1\n");
  snprintf(confarg, sizeof confarg, "--config=%s", tconf);
  const char *targv[] = {"sagactl", "list", confarg};
  assert_int_equal(resolve(targv, 3, &none, &s, err, sizeof err), -1);
  cli_settings_free(&s);
  if (!strstr(err, "two.conf:2: kafka.bootstrap.servers: the brokers are "
                   "named already, at ") ||
      !strstr(err, "two.conf:1"))
    fail_msg("unexpected error \"%s\"", err);
}

static void test_home_config_is_read_when_no_config_flag_is_given(
    void **state) {
  (void)state;
  char dir[160];
  snprintf(dir, sizeof dir, "%s/.config", tmpdir);
  if (access(dir, F_OK) != 0)
    assert_int_equal(mkdir(dir, 0700), 0);
  write_conf(".config/sagactl.conf", "definitions = /defs\n");
  const char *argv[] = {"sagactl", "list"};
  env_t env = {{"HOME"}, {tmpdir}};
  cli_settings_t s;
  char err[256] = "";
  assert_int_equal(resolve(argv, 2, &env, &s, err, sizeof err), 0);
  assert_string_equal(cli_get(&s, CLI_SET_DEFINITIONS), "/defs");
  assert_string_equal(cli_get(&s, CLI_SET_OPERATOR), "sagactl");
  cli_settings_free(&s);
}

static void expect_settings_error(const char *file_text, const char **argv,
                                  int argc, env_t *env, const char *want) {
  if (file_text != NULL)
    write_conf("bad.conf", file_text);
  cli_settings_t s;
  char err[512] = "";
  assert_int_equal(resolve(argv, argc, env, &s, err, sizeof err), -1);
  cli_settings_free(&s);
  if (strstr(err, want) == NULL)
    fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_settings_errors_name_the_file_line_or_variable(
    void **state) {
  (void)state;
  char conf[160];
  snprintf(conf, sizeof conf, "--config=%s/bad.conf", tmpdir);
  const char *argv[] = {"sagactl", "list", conf};
  env_t none = {{NULL}, {NULL}};
  expect_settings_error("pg = x\nfrobnicate = 1\n", argv, 3, &none,
                        "bad.conf:2: unknown setting \"frobnicate\"");
  expect_settings_error("# c\n\njust words\n", argv, 3, &none,
                        "bad.conf:3: expected \"name = value\"");
  expect_settings_error("timeout = forever\n", argv, 3, &none,
                        "bad.conf:1: timeout must be a duration");
  expect_settings_error("timeout = 30\n", argv, 3, &none,
                        "bad.conf:1: timeout must be a duration between "
                        "100ms and 1h: \"30\" has no unit: use ms, s, m, h "
                        "or d (e.g. 30ms, 30s, 1h30m)");
  expect_settings_error("max_input = 2000000\n", argv, 3, &none,
                        "bad.conf:1: max_input must be a number of bytes");
  env_t bad_env = {{"SAGA_TIMEOUT"}, {"5x"}};
  const char *plain[] = {"sagactl", "list"};
  expect_settings_error(NULL, plain, 2, &bad_env,
                        "SAGA_TIMEOUT: timeout must be a duration");
  const char *flag[] = {"sagactl", "list", "--max-input", "0"};
  expect_settings_error(NULL, flag, 4, &none, "--max-input: max_input");
  /* a topic name Kafka refuses is the setting's error, not Kafka's */
  const char *topic[] = {"sagactl", "start", "--inbox", "saga inbox"};
  expect_settings_error(NULL, topic, 4, &none,
                        "--inbox: inbox must be a Kafka topic name");
  expect_settings_error("notifications = \"\"\n", argv, 3, &none,
                        "bad.conf:1: notifications must be a Kafka topic "
                        "name");
  /* "." and ".." are made of the right characters, and Kafka refuses
   * them all the same */
  const char *dots[] = {"sagactl", "start", "--inbox", ".."};
  expect_settings_error(NULL, dots, 4, &none,
                        "--inbox: inbox must be a Kafka topic name");
  /* kafka.* lines are checked by librdkafka when the file is read */
  expect_settings_error("# tuning\nkafka.linger.ms = abc\n", argv, 3, &none,
                        "bad.conf:2: kafka.linger.ms: ");
  expect_settings_error("kafka.no.such.property = 1\n", argv, 3, &none,
                        "bad.conf:1: kafka.no.such.property: ");
  const char *missing[] = {"sagactl", "list", "--config", "/nonexistent/x.conf"};
  expect_settings_error(NULL, missing, 4, &none,
                        "could not open config file \"/nonexistent/x.conf\"");
}

/* What an error repeats of a value (a flag's, a variable's, a config file
 * line's) is one line of text: a newline, an escape sequence or a byte
 * that is not UTF-8 shows as \xNN (docs/sagactl.md: "Every error is one
 * line on stderr"). They went out as they were. */
static void test_settings_errors_show_values_as_one_line_of_text(
    void **state) {
  (void)state;
  char conf[160];
  snprintf(conf, sizeof conf, "--config=%s/bad.conf", tmpdir);
  const char *argv[] = {"sagactl", "list", conf};
  env_t none = {{NULL}, {NULL}};
  const char *inbox[] = {"sagactl", "list", "--inbox", "a\nb"};
  expect_settings_error(NULL, inbox, 4, &none,
                        "--inbox: inbox must be a Kafka topic name (1 to 249 "
                        "of a-z, A-Z, 0-9, '.', '_', '-', not \".\" or "
                        "\"..\"), got \"a\\x0ab\"");
  const char *timeout[] = {"sagactl", "list", "--timeout", "5\nx"};
  expect_settings_error(NULL, timeout, 4, &none,
                        "--timeout: timeout must be a duration between "
                        "100ms and 1h: \"5\\x0ax\" is not a duration");
  env_t esc = {{"SAGA_MAX_INPUT"}, {"\x1b[2J"}};
  const char *plain[] = {"sagactl", "list"};
  expect_settings_error(NULL, plain, 2, &esc,
                        "SAGA_MAX_INPUT: max_input must be a number of bytes "
                        "between 1 and 1000000, got \"\\x1b[2J\"");
  expect_settings_error("\xff\xfe = 1\n", argv, 3, &none,
                        "bad.conf:1: unknown setting \"\\xff\\xfe\"");
  expect_settings_error("kafka.\x1b[2J = 1\n", argv, 3, &none,
                        "bad.conf:1: kafka.\\x1b[2J: ");
  expect_settings_error("notifications = \"a\\\"\tb\"\n", argv, 3, &none,
                        "name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-', "
                        "not \".\" or \"..\"), got \"a\"\\x09b\"");
  /* whatever the value, the line holds no control character */
  static const char *const bad[] = {"a\nb", "x\ty", "\x1b[2J", "\xff\xfe"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    const char *opts[] = {"--inbox", "--timeout", "--max-input"};
    for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) {
      const char *av[] = {"sagactl", "list", opts[k], bad[i]};
      cli_settings_t s;
      char err[512] = "";
      assert_int_equal(resolve(av, 4, &none, &s, err, sizeof err), -1);
      cli_settings_free(&s);
      for (const char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
          fail_msg("%s %s: error \"%s\" holds byte 0x%02x", opts[k],
                   bad[i], err, (unsigned char)*p);
    }
  }
  /* the helpers behind them */
  char b[CLI_SHOW_SIZE + 160];
  assert_string_equal(cli_duration_why("1\x1b[2J", b, sizeof b),
                      "\"1\\x1b[2J\" is not a duration: write a number and "
                      "a unit, ms, s, m, h or d, or several (e.g. 250ms, "
                      "30s, 1h30m)");
  assert_non_null(strstr(cli_duration_why("30", b, sizeof b),
                         "\"30\" has no unit"));
  assert_string_equal(cli_flat("customer called\nticket\t7\x7f\xc2\x85!",
                               b, sizeof b),
                      "customer called ticket 7  !");
  assert_string_equal(cli_flat("caf\xc3\xa9 \xff", b, sizeof b),
                      "caf\xc3\xa9 ?");
  char small[5];
  assert_string_equal(cli_flat("ab\xc3\xa9\xc3\xa9", small, sizeof small),
                      "ab\xc3\xa9"); /* a UTF-8 sequence is never cut */
}

/* --payloads --json shows a payload as what it is: the whole of it as
 * JSON, its numbers as written; other text as a string; bytes that are
 * not UTF-8 as {"$base64"}. cJSON's parse took the JSON start of "12abc"
 * for 12, printed an id past 2^53 from a double, and put bytes that are
 * not UTF-8 into a string as they were (output that was not JSON). */
static void test_a_payload_is_shown_as_what_it_is(void **state) {
  (void)state;
  static const struct {
    const char *in;
    size_t n;
    const char *want;
  } cases[] = {
      {"{\"id\": 9007199254740993, \"x\": 1.50}", 0,
       "{\"id\":9007199254740993,\"x\":1.50}"},
      {"12abc", 0, "\"12abc\""},
      {"{\"a\":1} junk", 0, "\"{\\\"a\\\":1} junk\""},
      {"\xff\xfe", 0, "{\"$base64\":\"//4=\"}"},
      {"a\0b", 3, "{\"$base64\":\"YQBi\"}"},
      {"caf\xc3\xa9", 0, "\"caf\xc3\xa9\""},
      {NULL, 0, "null"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = cases[i].n ? cases[i].n : cases[i].in ? strlen(cases[i].in) : 0;
    cJSON *v = cli_payload_json(cases[i].in, n);
    assert_non_null(v);
    char *text = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    assert_non_null(text);
    if (strcmp(text, cases[i].want) != 0)
      fail_msg("case %zu: got %s, want %s", i, text, cases[i].want);
    cJSON_free(text);
  }
}

/* An empty kafka setting is refused naming where it came from, as an
 * empty --pg is: it was taken for brokers at "" ("could not reach Kafka
 * at : ..."). An empty SAGA_KAFKA_BOOTSTRAP is unset, as every empty
 * variable is. */
static void test_an_empty_kafka_setting_is_refused_naming_where(
    void **state) {
  (void)state;
  char conf[160];
  snprintf(conf, sizeof conf, "--config=%s/bad.conf", tmpdir);
  const char *argv[] = {"sagactl", "start", conf};
  env_t none = {{NULL}, {NULL}};
  const char *flag[] = {"sagactl", "start", "--kafka", ""};
  expect_settings_error(NULL, flag, 4, &none,
                        "--kafka is empty: give Kafka's bootstrap servers");
  const char *eq[] = {"sagactl", "list", "--kafka="};
  expect_settings_error(NULL, eq, 3, &none, "--kafka is empty");
  expect_settings_error("# brokers\nkafka =\n", argv, 3, &none,
                        "bad.conf:2: kafka is empty: give Kafka's bootstrap "
                        "servers");
  expect_settings_error("kafka.bootstrap.servers = \"\"\n", argv, 3, &none,
                        "bad.conf:1: kafka is empty");
  env_t empty = {{"SAGA_KAFKA_BOOTSTRAP"}, {""}};
  const char *plain[] = {"sagactl", "start"};
  cli_settings_t s;
  char err[256] = "";
  assert_int_equal(resolve(plain, 2, &empty, &s, err, sizeof err), 0);
  assert_null(cli_get(&s, CLI_SET_KAFKA));
  cli_settings_free(&s);
  /* a flag still beats the file's empty line */
  write_conf("bad.conf", "kafka =\n");
  const char *beat[] = {"sagactl", "start", conf, "--kafka", "k:9092"};
  assert_int_equal(resolve(beat, 5, &none, &s, err, sizeof err), 0);
  assert_string_equal(cli_get(&s, CLI_SET_KAFKA), "k:9092");
  cli_settings_free(&s);
}

/* ---- timeline ----------------------------------------------------------- */

static const char *DEF =
    "{\"name\":\"order\",\"version\":2,\"defaults\":{\"timeout_ms\":1000},"
    "\"steps\":[{\"name\":\"reserve\",\"topic\":\"t\",\"compensation\":"
    "{\"action\":\"release\"}},{\"name\":\"charge\",\"topic\":\"t\","
    "\"kind\":\"pivot\"}]}";

/* The operator trail: who cancelled, retried or resolved, and why, in the
 * table (one line per row) and in --json; the cancelled saga's
 * Compensated row says "cancelled: <reason>". */
static void test_timeline_shows_the_operator_trail(void **state) {
  (void)state;
  const int64_t t0 = 1700000000000;
  sm_event_t started[] = {
      {.type = SM_EV_STARTED, .def_name = "order", .def_version = 2}};
  sm_event_t cancel[] = {{.type = SM_EV_CANCEL_REQUESTED,
                          .reason = "customer called\nticket 7",
                          .who = "alice"}};
  sm_event_t retry[] = {{.type = SM_EV_OPERATOR_RETRY, .step = 0,
                         .action = SM_COMPENSATE, .reason = "service back",
                         .who = "bob"}};
  sm_event_t resolved[] = {{.type = SM_EV_RESOLVED}};
  sm_event_t done[] = {{.type = SM_EV_COMPENSATED}};
  cli_timeline_t tl = {0};
  assert_int_equal(cli_timeline_add(&tl, NULL, 1, t0, started, 1), 0);
  assert_int_equal(cli_timeline_add(&tl, NULL, 2, t0 + 1, cancel, 1), 0);
  assert_int_equal(cli_timeline_add(&tl, NULL, 3, t0 + 2, retry, 1), 0);
  assert_int_equal(cli_timeline_add(&tl, NULL, 4, t0 + 3, resolved, 1), 0);
  assert_int_equal(cli_timeline_add(&tl, NULL, 5, t0 + 4, done, 1), 0);
  assert_string_equal(tl.rows[1].event, "CancelRequested");
  assert_string_equal(tl.rows[1].who, "alice");
  assert_string_equal(tl.rows[1].why, "customer called\nticket 7");
  assert_non_null(strstr(tl.rows[1].detail,
                         "cancelled by alice: customer called ticket 7"));
  assert_non_null(strstr(tl.rows[2].detail,
                         "operator retry by bob: service back"));
  assert_string_equal(tl.rows[3].detail,
                      "resolved by an unnamed operator");
  assert_string_equal(tl.rows[4].detail,
                      "cancelled: customer called ticket 7");
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  cli_timeline_print(&tl, f);
  fclose(f);
  size_t lines = 0;
  for (const char *p = text; *p; p++)
    lines += *p == '\n';
  assert_int_equal(lines, 6); /* header + 5 rows, the reason's newline
                                  flattened */
  /* the columns line up past the longest event name: every line's STEP
   * column starts where the header's does */
  const char *hdr_step = strstr(text, "STEP");
  assert_non_null(hdr_step);
  size_t step_col = (size_t)(hdr_step - text);
  for (const char *line = strchr(text, '\n') + 1; *line;
       line = strchr(line, '\n') + 1) {
    assert_true(line[step_col - 1] == ' ' && line[step_col - 2] == ' ');
    assert_true(line[step_col] != ' ');
  }
  free(text);
  cJSON *j = cli_timeline_json(&tl);
  cJSON *row = cJSON_GetArrayItem(j, 1);
  assert_string_equal(cJSON_GetObjectItem(row, "operator")->valuestring,
                      "alice");
  assert_string_equal(cJSON_GetObjectItem(row, "reason")->valuestring,
                      "customer called\nticket 7");
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 3),
                                               "operator")));
  cJSON_Delete(j);
  cli_timeline_free(&tl);
}

static void test_timeline_shows_steps_outcomes_and_command_durations(
    void **state) {
  (void)state;
  saga_def_t *def = NULL;
  assert_int_equal(saga_def_parse(DEF, strlen(DEF), "def", &def, NULL), 0);
  const int64_t t0 = 1700000000000;
  sm_event_t started[] = {
      {.type = SM_EV_STARTED, .def_name = "order", .def_version = 2},
      {.type = SM_EV_DISPATCHED, .step = 0, .action = SM_DO,
       .attempt = 1, .until_ms = t0 + 1000}};
  sm_event_t retry[] = {{.type = SM_EV_ATTEMPT_FAILED, .step = 0,
                           .action = SM_DO, .attempt = 1,
                           .outcome = SM_OUTCOME_RETRYABLE,
                           .reason = "db busy", .until_ms = t0 + 400}};
  sm_event_t again[] = {{.type = SM_EV_DISPATCHED, .step = 0,
                           .action = SM_DO, .attempt = 2}};
  sm_event_t ok[] = {{.type = SM_EV_SUCCEEDED, .step = 0,
                        .action = SM_DO, .attempt = 2},
                       {.type = SM_EV_DISPATCHED, .step = 1,
                        .action = SM_DO, .attempt = 1}};
  cli_timeline_t tl = {0};
  assert_int_equal(cli_timeline_add(&tl, def, 1, t0, started, 2), 0);
  assert_int_equal(cli_timeline_add(&tl, def, 2, t0 + 250, retry, 1), 0);
  assert_int_equal(cli_timeline_add(&tl, def, 3, t0 + 400, again, 1), 0);
  assert_int_equal(cli_timeline_add(&tl, def, 4, t0 + 1650, ok, 2), 0);
  assert_int_equal(tl.n, 6);
  assert_string_equal(tl.rows[0].event, "Started");
  assert_non_null(strstr(tl.rows[0].detail, "order v2"));
  assert_string_equal(tl.rows[1].step, "reserve");
  assert_string_equal(tl.rows[1].action, "DO");
  assert_int_equal(tl.rows[1].duration_ms, -1);
  assert_string_equal(tl.rows[2].outcome, "RETRYABLE");
  assert_int_equal(tl.rows[2].duration_ms, 250);
  assert_non_null(strstr(tl.rows[2].detail, "db busy; retry at"));
  assert_string_equal(tl.rows[4].outcome, "SUCCESS");
  assert_int_equal(tl.rows[4].attempt, 2);
  assert_int_equal(tl.rows[4].duration_ms, 1250); /* attempt 2 only */
  assert_string_equal(tl.rows[5].step, "charge");

  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  cli_timeline_print(&tl, f);
  fclose(f);
  assert_non_null(strstr(text, "TIME"));
  assert_non_null(strstr(text, "DURATION"));
  assert_non_null(strstr(text, "2023-11-14T22:13:20.250Z"));
  assert_non_null(strstr(text, "1.250s"));
  assert_non_null(strstr(text, "reserve"));
  free(text);

  cJSON *j = cli_timeline_json(&tl);
  assert_non_null(j);
  assert_int_equal(cJSON_GetArraySize(j), 6);
  cJSON *row = cJSON_GetArrayItem(j, 4);
  assert_string_equal(cJSON_GetObjectItem(row, "step")->valuestring,
                      "reserve");
  assert_int_equal(cJSON_GetObjectItem(row, "duration_ms")->valueint, 1250);
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0),
                                               "attempt")));
  cJSON_Delete(j);
  cli_timeline_free(&tl);

  /* Without the definition, steps show by number. */
  assert_int_equal(cli_timeline_add(&tl, NULL, 1, t0, started, 2), 0);
  assert_string_equal(tl.rows[1].step, "#0");
  cli_timeline_free(&tl);
  saga_def_free(def);
}

/* A participant's reason may hold a newline or a tab: in the table its
 * AttemptFailed row stays one line (it broke the row in two), in --json
 * the detail keeps it as it is. */
static void test_timeline_keeps_a_failure_reason_on_its_row(void **state) {
  (void)state;
  saga_def_t *def = NULL;
  assert_int_equal(saga_def_parse(DEF, strlen(DEF), "def", &def, NULL), 0);
  const int64_t t0 = 1700000000000;
  sm_event_t started[] = {
      {.type = SM_EV_STARTED, .def_name = "order", .def_version = 2},
      {.type = SM_EV_DISPATCHED, .step = 0, .action = SM_DO, .attempt = 1}};
  sm_event_t failed[] = {{.type = SM_EV_ATTEMPT_FAILED, .step = 0,
                          .action = SM_DO, .attempt = 1,
                          .outcome = SM_OUTCOME_FAILURE,
                          .reason = "card declined\ncode 51\tretry later"}};
  cli_timeline_t tl = {0};
  assert_int_equal(cli_timeline_add(&tl, def, 1, t0, started, 2), 0);
  assert_int_equal(cli_timeline_add(&tl, def, 2, t0 + 250, failed, 1), 0);
  assert_int_equal(tl.n, 3);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  cli_timeline_print(&tl, f);
  fclose(f);
  size_t lines = 0;
  for (const char *p = text; *p; p++) {
    lines += *p == '\n';
    if (*p == '\t')
      fail_msg("a tab in the table:\n%s", text);
  }
  if (lines != 4) /* the header and 3 rows */
    fail_msg("%zu lines, want 4:\n%s", lines, text);
  assert_non_null(
      strstr(text, "card declined code 51 retry later; for good\n"));
  free(text);
  cJSON *j = cli_timeline_json(&tl);
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetArrayItem(j, 2), "detail")->valuestring,
      "card declined\ncode 51\tretry later; for good");
  cJSON_Delete(j);
  cli_timeline_free(&tl);
  saga_def_free(def);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options_go_anywhere_in_both_forms),
      cmocka_unit_test(test_bad_command_lines_are_refused_with_the_reason),
      cmocka_unit_test(test_numbers_parse_within_bounds),
      cmocka_unit_test(test_saga_ids_are_checked_and_values_shown_safely),
      cmocka_unit_test(test_times_and_durations_format_readably),
      cmocka_unit_test(
          test_the_connect_timeout_is_whole_seconds_at_least_two),
      cmocka_unit_test(test_a_conninfo_is_checked_before_connecting),
      cmocka_unit_test(test_flags_beat_environment_beats_file_beats_defaults),
      cmocka_unit_test(
          test_home_config_is_read_when_no_config_flag_is_given),
      cmocka_unit_test(test_settings_errors_name_the_file_line_or_variable),
      cmocka_unit_test(
          test_timeline_shows_steps_outcomes_and_command_durations),
      cmocka_unit_test(test_timeline_shows_the_operator_trail),
      cmocka_unit_test(test_settings_errors_show_values_as_one_line_of_text),
      cmocka_unit_test(test_a_payload_is_shown_as_what_it_is),
      cmocka_unit_test(test_an_empty_kafka_setting_is_refused_naming_where),
      cmocka_unit_test(test_timeline_keeps_a_failure_reason_on_its_row),
  };
  return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
