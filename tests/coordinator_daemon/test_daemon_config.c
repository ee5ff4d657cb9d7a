/* sagad configuration: every error path names the source and place, the
 * precedence is options > environment > file > defaults, secrets never
 * show, and docs/configuration.md is what the table prints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"

static char errbuf[2048];
static char tmpdir[64];

/* A fresh scratch folder holding a definitions/ directory. */
static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sagad-config-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  char defs[128];
  snprintf(defs, sizeof defs, "%s/definitions", tmpdir);
  assert_int_equal(mkdir(defs, 0700), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

static const char *write_file(const char *name, const char *text) {
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static int set(sagad_config_t *cfg, const char *name, const char *value) {
  errbuf[0] = '\0';
  return sagad_config_set(cfg, name, value, "option --x", errbuf,
                          sizeof errbuf);
}

static void test_defaults_match_the_table(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_non_null(cfg);
  assert_string_equal(cfg->topic_inbox, "saga.inbox");
  assert_string_equal(cfg->topic_notifications, "saga.notifications");
  assert_string_equal(cfg->topic_dlq, "saga.dlq");
  assert_string_equal(cfg->group_id, "sagad");
  assert_string_equal(cfg->admin_listen, "127.0.0.1:8080");
  assert_int_equal(cfg->log_level, SAGAD_LOG_INFO);
  assert_int_equal(cfg->log_format, SAGAD_LOG_FORMAT_AUTO);
  assert_true(cfg->log_timestamps);
  assert_int_equal(cfg->batch_max_events, 1024);
  assert_int_equal(cfg->shutdown_timeout_ms, 10000);
  assert_int_equal(cfg->kafka_nprops, 0);
  sagad_config_free(cfg);
  sagad_config_free(NULL);
}

static void test_bad_integer_is_refused_with_origin_and_value(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(set(cfg, "batch.max_events", "ten"), SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: batch.max_events: must be an "
                              "integer, got \"ten\"");
  assert_int_equal(set(cfg, "batch.max_events", "12abc"),
                   SAGAD_CONFIG_INVALID);
  assert_int_equal(set(cfg, "batch.max_events", ""), SAGAD_CONFIG_INVALID);
  assert_int_equal(set(cfg, "batch.max_events", "99999999999999999999"),
                   SAGAD_CONFIG_INVALID);
  assert_int_equal(cfg->batch_max_events, 1024);
  sagad_config_free(cfg);
}

static void test_out_of_bounds_values_are_refused(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(set(cfg, "batch.max_events", "0"), SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: batch.max_events: must be between "
                              "1 and 100000, got 0");
  assert_int_equal(set(cfg, "shutdown.timeout_ms", "11m"),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: shutdown.timeout_ms: must be "
                              "between 100ms and 10m, got 11m");
  assert_int_equal(set(cfg, "topic.inbox", ""), SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: topic.inbox: must not be empty");
  assert_int_equal(set(cfg, "batch.max_events", "100000"), 0);
  assert_int_equal(cfg->batch_max_events, 100000);
  sagad_config_free(cfg);
}

static void test_typed_values_parse_and_reject(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(set(cfg, "shutdown.timeout_ms", "5s"), 0);
  assert_int_equal(cfg->shutdown_timeout_ms, 5000);
  assert_int_equal(set(cfg, "stuck.default_ms", "2h"), 0);
  assert_int_equal(cfg->stuck_default_ms, 7200000);
  assert_int_equal(set(cfg, "shutdown.timeout_ms", "250ms"), 0);
  assert_int_equal(cfg->shutdown_timeout_ms, 250);
  assert_int_equal(set(cfg, "shutdown.timeout_ms", "5 s"),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: shutdown.timeout_ms: \"5 s\" is "
                              "not a duration: write a number and a unit, "
                              "ms, s, m, h or d, or several (e.g. 250ms, 30s, "
                              "1h30m)");
  /* A bare number has no unit, whatever the property's name says. */
  assert_int_equal(set(cfg, "shutdown.timeout_ms", "10000"),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: shutdown.timeout_ms: \"10000\" "
                              "has no unit: use ms, s, m, h or d (e.g. "
                              "10000ms, 30s, 1h30m)");
  assert_int_equal(set(cfg, "stuck.default_ms", "1d1h30m"), 0);
  assert_int_equal(cfg->stuck_default_ms, 91800000);
  assert_int_equal(set(cfg, "log.timestamps", "off"), 0);
  assert_false(cfg->log_timestamps);
  assert_int_equal(set(cfg, "log.timestamps", "maybe"), SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: log.timestamps: must be true or "
                              "false, got \"maybe\"");
  assert_int_equal(set(cfg, "log.level", "debug"), 0);
  assert_int_equal(cfg->log_level, SAGAD_LOG_DEBUG);
  assert_int_equal(set(cfg, "log.format", "json"), 0);
  assert_int_equal(cfg->log_format, SAGAD_LOG_FORMAT_JSON);
  assert_int_equal(set(cfg, "log.level", "verbose"), SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: log.level: must be one of error, "
                              "warn, info, debug, got \"verbose\"");
  assert_int_equal(set(cfg, "topic.dlq", "dead letters"),
                   SAGAD_CONFIG_INVALID);
  assert_non_null(strstr(errbuf, "topic names use only"));
  assert_int_equal(set(cfg, "admin.listen", "localhost"),
                   SAGAD_CONFIG_INVALID);
  assert_int_equal(set(cfg, "admin.listen", "[::1]:9090"), 0);
  /* host names, or * alone; a port or a scheme is refused, named */
  assert_int_equal(set(cfg, "admin.allowed_hosts", "sagad.internal, ops-1"),
                   0);
  assert_int_equal(set(cfg, "admin.allowed_hosts", "*"), 0);
  assert_int_equal(set(cfg, "admin.allowed_hosts", "a.b,http://c"),
                   SAGAD_CONFIG_INVALID);
  assert_non_null(strstr(errbuf, "entry 2 \"http://c\": expected a host "
                                 "name"));
  assert_int_equal(set(cfg, "admin.allowed_hosts", "a,,b"),
                   SAGAD_CONFIG_INVALID);
  assert_int_equal(set(cfg, "admin.allowed_hosts", "ops, [fd00::1]"), 0);
  assert_int_equal(set(cfg, "admin.allowed_hosts", "[fd00::zz]"),
                   SAGAD_CONFIG_INVALID);
  sagad_config_free(cfg);
}

static void test_unknown_name_is_refused_with_nearest_hint(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(set(cfg, "topic.inbx", "a"), SAGAD_CONFIG_UNKNOWN);
  assert_string_equal(errbuf, "option --x: unknown property \"topic.inbx\" "
                              "(did you mean \"topic.inbox\"?)");
  assert_int_equal(set(cfg, "batch_max_events", "1"), SAGAD_CONFIG_UNKNOWN);
  assert_non_null(strstr(errbuf, "did you mean \"batch.max_events\"?"));
  assert_int_equal(set(cfg, "completely.different", "1"),
                   SAGAD_CONFIG_UNKNOWN);
  assert_null(strstr(errbuf, "did you mean"));
  sagad_config_free(cfg);
}

static void test_kafka_properties_pass_through_in_order(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(set(cfg, "kafka.security.protocol", "SASL_SSL"), 0);
  assert_int_equal(set(cfg, "kafka.sasl.mechanisms", "SCRAM-SHA-512"), 0);
  assert_int_equal(set(cfg, "kafka.acks", "all"), 0);
  assert_int_equal(set(cfg, "kafka.security.protocol", "SSL"), 0);
  assert_int_equal(cfg->kafka_nprops, 3);
  assert_string_equal(cfg->kafka_props[0].name, "security.protocol");
  assert_string_equal(cfg->kafka_props[0].value, "SSL");
  assert_string_equal(cfg->kafka_props[1].name, "sasl.mechanisms");
  assert_string_equal(cfg->kafka_props[2].name, "acks");

  assert_int_equal(set(cfg, "kafka.no.such.thing", "1"), SAGAD_CONFIG_UNKNOWN);
  assert_string_equal(errbuf, "option --x: kafka.no.such.thing: librdkafka "
                              "has no such property");
  assert_int_equal(set(cfg, "kafka.security.protocol", "carrier-pigeon"),
                   SAGAD_CONFIG_INVALID);
  assert_non_null(strstr(errbuf, "kafka.security.protocol: "));
  assert_int_equal(set(cfg, "kafka.group.id", "g"), SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf,
                      "option --x: kafka.group.id: set group.id instead");
  /* offsets are sagad's to store and commit: with the automatic store on,
   * librdkafka refused sagad's and nothing was ever committed */
  assert_int_equal(set(cfg, "kafka.enable.auto.offset.store", "true"),
                   SAGAD_CONFIG_INVALID);
  assert_non_null(strstr(errbuf, "kafka.enable.auto.offset.store: sagad "
                                 "commits each input's offset itself"));
  assert_int_equal(set(cfg, "kafka.enable.auto.commit", "false"),
                   SAGAD_CONFIG_INVALID);
  assert_int_equal(cfg->kafka_nprops, 3);

  assert_int_equal(set(cfg, "kafka.bootstrap.servers", "h:1"), 0);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  assert_int_equal(sagad_config_kafka_apply(cfg, conf, errbuf, sizeof errbuf),
                   0);
  char value[64];
  size_t len = sizeof value;
  assert_int_equal(rd_kafka_conf_get(conf, "security.protocol", value, &len),
                   RD_KAFKA_CONF_OK);
  assert_string_equal(value, "ssl");
  len = sizeof value;
  assert_int_equal(rd_kafka_conf_get(conf, "bootstrap.servers", value, &len),
                   RD_KAFKA_CONF_OK);
  assert_string_equal(value, "h:1");
  rd_kafka_conf_destroy(conf);
  sagad_config_free(cfg);
}

static void test_conninfo_errors_never_show_a_password(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(set(cfg, "store.conninfo", "host"), SAGAD_CONFIG_INVALID);
  assert_non_null(strstr(errbuf, "store.conninfo: invalid connection string: "));
  assert_int_equal(set(cfg, "store.conninfo", "password=hunter2 oops"),
                   SAGAD_CONFIG_INVALID);
  assert_null(strstr(errbuf, "hunter2"));
  assert_null(strstr(errbuf, "oops"));
  assert_int_equal(set(cfg, "store.conninfo", "host=db password=hunter2"), 0);
  char buf[256];
  sagad_config_mask_conninfo(cfg->store_conninfo, buf, sizeof buf);
  assert_null(strstr(buf, "hunter2"));
  assert_non_null(strstr(buf, "password=********"));
  assert_non_null(strstr(buf, "host=db"));
  sagad_config_mask_conninfo("postgresql://saga:hunter2@db:5432/sagas", buf,
                             sizeof buf);
  assert_null(strstr(buf, "hunter2"));
  assert_non_null(strstr(buf, "dbname=sagas"));
  sagad_config_free(cfg);
}

/* Values libpq takes apart only when it connects are checked where
 * they are set too (a --check-config that passes must not meet them at
 * the start). */
static void test_conninfo_values_are_checked_before_connecting(
    void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  static const struct {
    const char *conninfo, *want;
  } bad[] = {
      {"host=db sslmode=bogus", "invalid sslmode value: \"bogus\""},
      {"host=db sslmode='prefer require'",
       "invalid sslmode value: \"prefer require\""},
      {"host=db port=abc", "invalid port number: \"abc\""},
      {"host=a,b port=5432,70000", "invalid port number: \"70000\""},
      {"postgresql://db:0/x", "invalid port number: \"0\""},
      {"host=db connect_timeout=soon",
       "invalid integer value \"soon\" for connection option "
       "\"connect_timeout\""},
      {"host=db target_session_attrs=any-thing",
       "invalid target_session_attrs value: \"any-thing\""}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char want[512];
    snprintf(want, sizeof want, "option --x: store.conninfo: %s",
             bad[i].want);
    assert_int_equal(set(cfg, "store.conninfo", bad[i].conninfo),
                     SAGAD_CONFIG_INVALID);
    assert_string_equal(errbuf, want);
  }
  static const char *const good[] = {
      "", "host=db port=5432 sslmode=verify-full connect_timeout=5",
      "host=a,b port=5432,", "postgresql://u@db:5433/x?sslmode=require",
      "host=db target_session_attrs=read-write gssencmode=disable"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (set(cfg, "store.conninfo", good[i]) != 0)
      fail_msg("%s: %s", good[i], errbuf);
  sagad_config_free(cfg);
}

/* Files librdkafka reads only when sagad creates its clients are checked
 * where they are set, so --check-config does not pass what a start
 * refuses. */
static void test_kafka_files_are_checked_where_they_are_set(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(
      set(cfg, "kafka.ssl.key.location", "/nonexistent/client.key"),
      SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: kafka.ssl.key.location: cannot "
                              "read \"/nonexistent/client.key\": No such "
                              "file or directory");
  const char *key = write_file("client.key", "not really a key\n");
  assert_int_equal(set(cfg, "kafka.ssl.key.location", key), 0);
  assert_int_equal(set(cfg, "kafka.ssl.ca.location", "probe"), 0);
  sagad_config_free(cfg);
}

static void test_file_lines_comments_and_quotes_are_read(void **state) {
  (void)state;
  const char *path = write_file("good.conf",
                                "# sagad test config\n"
                                "\n"
                                "  group.id   =  orders  \n"
                                "topic.dlq=orders.dlq\n"
                                "kafka.client.id = \" spaced # id \"\n"
                                "store.conninfo = \"\"\n");
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(sagad_config_load_file(cfg, path, errbuf, sizeof errbuf),
                   0);
  assert_string_equal(cfg->group_id, "orders");
  assert_string_equal(cfg->topic_dlq, "orders.dlq");
  assert_string_equal(cfg->kafka_props[0].value, " spaced # id ");
  assert_string_equal(cfg->store_conninfo, "");
  sagad_config_free(cfg);
}

/* Load text as a file and expect code and an error naming path:line. */
static void expect_file_error(const char *text, int code, unsigned line,
                              const char *tail) {
  const char *path = write_file("sagad.conf", text);
  char want[512];
  snprintf(want, sizeof want, "%s:%u: %s", path, line, tail);
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(sagad_config_load_file(cfg, path, errbuf, sizeof errbuf),
                   code);
  assert_string_equal(errbuf, want);
  sagad_config_free(cfg);
}

static void test_file_errors_name_the_file_and_line(void **state) {
  (void)state;
  expect_file_error("# c\ngroup.id = g\njust words\n", SAGAD_CONFIG_SYNTAX, 3,
                    "expected \"name = value\", got \"just words\"");
  expect_file_error("group.id = g\ntopic.inbx = x\n", SAGAD_CONFIG_UNKNOWN, 2,
                    "unknown property \"topic.inbx\" (did you mean "
                    "\"topic.inbox\"?)");
  expect_file_error("\n\n\nbatch.max_events = -5\n", SAGAD_CONFIG_INVALID, 4,
                    "batch.max_events: must be between 1 and 100000, got -5");
  expect_file_error("group.id = \"open\n", SAGAD_CONFIG_SYNTAX, 1,
                    "group.id: unterminated or trailing text after quoted "
                    "value");
  expect_file_error(" = x\n", SAGAD_CONFIG_SYNTAX, 1,
                    "expected a name before '='");
  /* a name where an address is wanted: at its line, not at the start */
  expect_file_error("\nadmin.listen = localhost:8080\n", SAGAD_CONFIG_INVALID,
                    2,
                    "admin.listen: \"localhost\" is not an IPv4 or IPv6 "
                    "address (names are not resolved: 127.0.0.1, 0.0.0.0 or "
                    "[::1])");

  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(sagad_config_load_file(cfg, "/nonexistent/sagad.conf",
                                          errbuf, sizeof errbuf),
                   SAGAD_CONFIG_FILE);
  assert_string_equal(errbuf, "could not open config file "
                              "\"/nonexistent/sagad.conf\": No such file or "
                              "directory");
  sagad_config_free(cfg);
}

static void test_environment_names_map_to_properties(void **state) {
  (void)state;
  const char *env[] = {"PATH=/bin",
                 "SAGAD_LOG_LEVEL=warn",
                 "SAGAD_KAFKA_BOOTSTRAP_SERVERS=b:9092",
                 "SAGAD_KAFKA_SASL_USERNAME=alice",
                 "SAGAD_CONFIG=/ignored/here",
                 NULL};
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(sagad_config_load_env(cfg, env, errbuf, sizeof errbuf), 0);
  assert_int_equal(cfg->log_level, SAGAD_LOG_WARN);
  assert_string_equal(cfg->kafka_bootstrap_servers, "b:9092");
  assert_int_equal(cfg->kafka_nprops, 1);
  assert_string_equal(cfg->kafka_props[0].name, "sasl.username");

  /* what Kubernetes gives a pod for Services named sagad and sagad-kafka
   * (enableServiceLinks): no property, no error */
  const char *links[] = {"SAGAD_SERVICE_HOST=10.0.0.7",
                         "SAGAD_SERVICE_PORT=8080",
                         "SAGAD_SERVICE_PORT_ADMIN=8080",
                         "SAGAD_PORT=tcp://10.0.0.7:8080",
                         "SAGAD_PORT_8080_TCP=tcp://10.0.0.7:8080",
                         "SAGAD_PORT_8080_TCP_PROTO=tcp",
                         "SAGAD_PORT_8080_TCP_PORT=8080",
                         "SAGAD_PORT_8080_TCP_ADDR=10.0.0.7",
                         "SAGAD_KAFKA_SERVICE_HOST=10.0.0.8",
                         "SAGAD_KAFKA_PORT=tcp://10.0.0.8:9092",
                         "SAGAD_KAFKA_PORT_9092_UDP_ADDR=10.0.0.8",
                         NULL};
  assert_int_equal(sagad_config_load_env(cfg, links, errbuf, sizeof errbuf),
                   0);
  assert_int_equal(cfg->kafka_nprops, 1);
  /* a name of that shape that is not one stays an error */
  const char *notlink[] = {"SAGAD_PORT=8080", NULL};
  assert_int_equal(sagad_config_load_env(cfg, notlink, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_UNKNOWN);
  const char *typo[] = {"SAGAD_BATCH_MAX_EVENT=5", NULL};
  assert_int_equal(sagad_config_load_env(cfg, typo, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_UNKNOWN);
  assert_string_equal(errbuf, "environment SAGAD_BATCH_MAX_EVENT: unknown "
                              "variable (did you mean SAGAD_BATCH_MAX_EVENTS?)");
  const char *bad[] = {"SAGAD_BATCH_MAX_EVENTS=lots", NULL};
  assert_int_equal(sagad_config_load_env(cfg, bad, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "environment SAGAD_BATCH_MAX_EVENTS: "
                              "batch.max_events: must be an integer, got "
                              "\"lots\"");
  sagad_config_free(cfg);
}

static int load(sagad_config_t *cfg, const char **argv, const char **envp,
                sagad_mode_t *mode) {
  int argc = 0;
  while (argv[argc])
    argc++;
  errbuf[0] = '\0';
  return sagad_config_load(cfg, argc, argv, envp, mode, errbuf,
                           sizeof errbuf);
}

static void test_options_beat_environment_beat_file(void **state) {
  (void)state;
  char defs[128], conf_env[300];
  snprintf(defs, sizeof defs, "definitions.dir = %s/definitions\n", tmpdir);
  char text[512];
  snprintf(text, sizeof text,
           "%sgroup.id = from-file\nbatch.max_events = 10\nlog.level = debug\n"
           "kafka.bootstrap.servers = file:1\n",
           defs);
  const char *path = write_file("prec.conf", text);
  snprintf(conf_env, sizeof conf_env, "SAGAD_CONFIG=%s", path);
  const char *envp[] = {"SAGAD_GROUP_ID=from-env", "SAGAD_BATCH_MAX_EVENTS=20",
                  conf_env, NULL};
  const char *argv[] = {"sagad", "--group.id=from-option", "--check-config", NULL};
  sagad_config_t *cfg = sagad_config_new();
  sagad_mode_t mode;
  assert_int_equal(load(cfg, argv, envp, &mode), 0);
  assert_int_equal(mode, SAGAD_MODE_CHECK);
  assert_string_equal(cfg->group_id, "from-option");
  assert_int_equal(cfg->batch_max_events, 20);
  assert_int_equal(cfg->log_level, SAGAD_LOG_DEBUG);
  assert_string_equal(cfg->kafka_bootstrap_servers, "file:1");
  sagad_config_free(cfg);

  /* --config beats SAGAD_CONFIG; --set is an option like --name=value. */
  const char *other = write_file("other.conf", "group.id = nope\n");
  char opt[300];
  snprintf(opt, sizeof opt, "--config=%s", other);
  const char *argv2[] = {"sagad", opt, "--set", "batch.max_events=30", NULL};
  cfg = sagad_config_new();
  assert_int_equal(load(cfg, argv2, envp, &mode), SAGAD_CONFIG_MISSING);
  assert_string_equal(cfg->group_id, "from-env");
  assert_int_equal(cfg->batch_max_events, 30);
  sagad_config_free(cfg);
}

static void test_option_errors_are_reported(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  sagad_mode_t mode;
  const char *empty[] = {NULL};
  const char *a1[] = {"sagad", "stray", NULL};
  assert_int_equal(load(cfg, a1, empty, &mode), SAGAD_CONFIG_SYNTAX);
  assert_non_null(strstr(errbuf, "unexpected argument \"stray\""));
  const char *a2[] = {"sagad", "--batch.max_events", NULL};
  assert_int_equal(load(cfg, a2, empty, &mode), SAGAD_CONFIG_SYNTAX);
  assert_string_equal(errbuf, "option --batch.max_events needs a value: "
                              "--batch.max_events=VALUE");
  const char *a3[] = {"sagad", "--chek-config", NULL};
  assert_int_equal(load(cfg, a3, empty, &mode), SAGAD_CONFIG_UNKNOWN);
  assert_non_null(strstr(errbuf, "unknown option \"--chek-config\""));
  const char *a4[] = {"sagad", "--topic.inbx=a", NULL};
  assert_int_equal(load(cfg, a4, empty, &mode), SAGAD_CONFIG_UNKNOWN);
  assert_string_equal(errbuf, "option --topic.inbx: unknown property "
                              "\"topic.inbx\" (did you mean \"topic.inbox\"?)");
  const char *a5[] = {"sagad", "--config", NULL};
  assert_int_equal(load(cfg, a5, empty, &mode), SAGAD_CONFIG_SYNTAX);
  /* --help wins over errors anywhere on the line; no source is read. */
  const char *a6[] = {"sagad", "stray", "--batch.max_events=0", "--help", NULL};
  assert_int_equal(load(cfg, a6, empty, &mode), 0);
  assert_int_equal(mode, SAGAD_MODE_HELP);
  const char *a7[] = {"sagad", "--config-reference", NULL};
  assert_int_equal(load(cfg, a7, empty, &mode), 0);
  assert_int_equal(mode, SAGAD_MODE_REFERENCE);
  sagad_config_free(cfg);
}

/* otlp.endpoint is checked where it is set, with the message of
 * docs/tracing.md: host:port takes a port of 1 to 65535 (0, "any free
 * port", is admin.listen's), and a URL needs a host and a valid port. */
static void test_otlp_endpoint_is_checked_where_it_is_set(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  static const char *const bad_hostport[] = {"otel-collector", "collector:0",
                                             "collector:65536", "c:4318/x"};
  for (size_t i = 0; i < 4; i++) {
    char want[256];
    snprintf(want, sizeof want,
             "option --x: otlp.endpoint: expected host:port (port 1..65535) "
             "or an http:// or https:// URL, got \"%s\"",
             bad_hostport[i]);
    assert_int_equal(set(cfg, "otlp.endpoint", bad_hostport[i]),
                     SAGAD_CONFIG_INVALID);
    assert_string_equal(errbuf, want);
  }
  assert_int_equal(set(cfg, "otlp.endpoint", "http://collector:0"),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: otlp.endpoint: "
                              "\"http://collector:0\": the port must be "
                              "1..65535");
  assert_int_equal(set(cfg, "otlp.endpoint", "https://"),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: otlp.endpoint: \"https://\" has "
                              "no host");
  assert_int_equal(set(cfg, "otlp.endpoint", "https://u:pw@collector:443"),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: otlp.endpoint: a user or password "
                              "in the URL is not accepted (give credentials "
                              "in OTEL_EXPORTER_OTLP_HEADERS)");
  static const char *const good[] = {
      "", "collector:4318", "[::1]:4318", "http://otel-collector:4318",
      "https://collector.example", "http://[::1]:4318/base/",
      "https://collector.example:443/otlp?x=1"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (set(cfg, "otlp.endpoint", good[i]) != 0)
      fail_msg("%s: %s", good[i], errbuf);
  sagad_config_free(cfg);
  /* from a file: the file and line come first */
  expect_file_error("group.id = g\notlp.endpoint = http://host:99999\n",
                    SAGAD_CONFIG_INVALID, 2,
                    "otlp.endpoint: \"http://host:99999\": the port must be "
                    "1..65535");
}

static void test_finalize_checks_rules_across_fields(void **state) {
  (void)state;
  char defs[128];
  snprintf(defs, sizeof defs, "%s/definitions", tmpdir);
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_MISSING);
  assert_string_equal(errbuf, "kafka.bootstrap.servers: must be set "
                              "(--kafka.bootstrap.servers=VALUE, "
                              "SAGAD_KAFKA_BOOTSTRAP_SERVERS or a config file "
                              "line)");
  assert_int_equal(set(cfg, "kafka.bootstrap.servers", "b:1"), 0);
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_MISSING);
  assert_non_null(strstr(errbuf, "definitions.dir: must be set"));
  const char *file = write_file("not-a-dir", "x");
  assert_int_equal(set(cfg, "definitions.dir", file), 0);
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_INVALID);
  assert_non_null(strstr(errbuf, "is not a directory"));
  /* where it was set comes first */
  assert_int_equal(strncmp(errbuf, "option --x: definitions.dir: ", 29), 0);
  /* the addresses the server binds, a zone-scoped one included */
  static const char *const listens[] = {"127.0.0.1:0", "0.0.0.0:8080",
                                        "[::1]:8080", "[fe80::1%lo]:8080"};
  for (size_t i = 0; i < 4; i++)
    if (set(cfg, "admin.listen", listens[i]) != 0)
      fail_msg("%s: %s", listens[i], errbuf);
  assert_int_equal(set(cfg, "definitions.dir", defs), 0);
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf), 0);

  assert_int_equal(set(cfg, "topic.dlq", "saga.inbox"), 0);
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: topic.dlq: must differ from "
                              "topic.inbox, both are \"saga.inbox\"");
  assert_int_equal(set(cfg, "topic.dlq", "saga.dlq"), 0);
  /* the one set is named, where it was set, not the default it meets */
  sagad_config_t *fresh = sagad_config_new();
  assert_int_equal(set(fresh, "kafka.bootstrap.servers", "b:1"), 0);
  assert_int_equal(set(fresh, "definitions.dir", defs), 0);
  assert_int_equal(set(fresh, "topic.inbox", fresh->topic_dlq), 0);
  assert_int_equal(sagad_config_finalize(fresh, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_INVALID);
  char want[256];
  snprintf(want, sizeof want,
           "option --x: topic.inbox: must differ from topic.dlq, both are "
           "\"%s\"",
           fresh->topic_dlq);
  assert_string_equal(errbuf, want);
  sagad_config_free(fresh);

  /* topic.progress: empty (no progress notes) by default; it may share
   * topic.notifications, not the inbox or the dead-letter topic. */
  assert_string_equal(cfg->topic_progress, "");
  assert_int_equal(set(cfg, "topic.progress", "saga.notifications"), 0);
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf), 0);
  assert_int_equal(set(cfg, "topic.progress", "saga.dlq"), 0);
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: topic.progress: must differ from "
                              "topic.dlq, both are \"saga.dlq\"");
  assert_int_equal(set(cfg, "topic.progress", "saga.inbox"), 0);
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf),
                   SAGAD_CONFIG_INVALID);
  assert_string_equal(errbuf, "option --x: topic.progress: must differ from "
                              "topic.inbox, both are \"saga.inbox\"");
  assert_int_equal(set(cfg, "topic.progress", "a b"), SAGAD_CONFIG_INVALID);
  assert_non_null(strstr(errbuf, "topic.progress: topic names use only"));
  assert_int_equal(set(cfg, "topic.progress", ""), 0);
  assert_int_equal(sagad_config_finalize(cfg, errbuf, sizeof errbuf), 0);

  /* A setting that nothing reads is no setting: batch.max_delay_ms went. */
  assert_int_equal(set(cfg, "batch.max_delay_ms", "5ms"),
                   SAGAD_CONFIG_UNKNOWN);
  sagad_config_free(cfg);
}

static char *written(const sagad_config_t *cfg) {
  char *mem = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&mem, &len);
  assert_non_null(f);
  sagad_config_write(cfg, f);
  fclose(f);
  return mem;
}

static void test_effective_config_reads_back_and_masks_secrets(void **state) {
  (void)state;
  sagad_config_t *cfg = sagad_config_new();
  assert_int_equal(set(cfg, "group.id", "g1"), 0);
  assert_int_equal(set(cfg, "kafka.client.id", " padded "), 0);
  assert_int_equal(set(cfg, "kafka.sasl.password", "hunter2"), 0);
  assert_int_equal(set(cfg, "store.conninfo", "dbname=s password=hunter2"), 0);
  char *text = written(cfg);
  assert_null(strstr(text, "hunter2"));
  assert_non_null(strstr(text, "# from option --x\ngroup.id = g1\n"));
  assert_non_null(strstr(text, "kafka.client.id = \" padded \"\n"));

  const char *path = write_file("effective.conf", text);
  sagad_config_t *back = sagad_config_new();
  assert_int_equal(sagad_config_load_file(back, path, errbuf, sizeof errbuf),
                   0);
  assert_string_equal(back->group_id, "g1");
  assert_string_equal(back->kafka_props[0].value, " padded ");
  assert_non_null(strstr(back->store_conninfo, "password=********"));
  assert_non_null(strstr(back->store_conninfo, "dbname=s"));
  free(text);
  sagad_config_free(back);
  sagad_config_free(cfg);
}

static void test_error_codes_have_names_and_texts(void **state) {
  (void)state;
  static const int codes[] = {SAGAD_CONFIG_OK,      SAGAD_CONFIG_UNKNOWN,
                              SAGAD_CONFIG_INVALID, SAGAD_CONFIG_SYNTAX,
                              SAGAD_CONFIG_FILE,    SAGAD_CONFIG_MISSING,
                              SAGAD_CONFIG_NOMEM};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    assert_string_not_equal(sagad_config_strerror(codes[i]), "unknown error");
    assert_string_not_equal(sagad_config_err_name(codes[i]), "UNKNOWN_CODE");
  }
  assert_string_equal(sagad_config_err_name(SAGAD_CONFIG_UNKNOWN), "UNKNOWN");
  assert_string_equal(sagad_config_strerror(-999), "unknown error");
}

static void test_configuration_reference_in_docs_is_current(void **state) {
  (void)state;
  char *want = NULL;
  size_t want_len = 0;
  FILE *f = open_memstream(&want, &want_len);
  assert_non_null(f);
  sagad_config_write_reference(f);
  fclose(f);

  FILE *doc = fopen(SAGA_SOURCE_DIR "/docs/configuration.md", "r");
  assert_non_null(doc);
  char *have = calloc(1, want_len + 2);
  size_t have_len = fread(have, 1, want_len + 1, doc);
  fclose(doc);
  if (have_len != want_len || memcmp(have, want, want_len) != 0)
    fail_msg("docs/configuration.md differs from the property table; "
             "regenerate it: sagad --config-reference > "
             "docs/configuration.md");
  free(have);
  free(want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_match_the_table),
      cmocka_unit_test(test_bad_integer_is_refused_with_origin_and_value),
      cmocka_unit_test(test_out_of_bounds_values_are_refused),
      cmocka_unit_test(test_typed_values_parse_and_reject),
      cmocka_unit_test(test_unknown_name_is_refused_with_nearest_hint),
      cmocka_unit_test(test_kafka_properties_pass_through_in_order),
      cmocka_unit_test(test_conninfo_errors_never_show_a_password),
      cmocka_unit_test(test_conninfo_values_are_checked_before_connecting),
      cmocka_unit_test(test_kafka_files_are_checked_where_they_are_set),
      cmocka_unit_test(test_file_lines_comments_and_quotes_are_read),
      cmocka_unit_test(test_file_errors_name_the_file_and_line),
      cmocka_unit_test(test_environment_names_map_to_properties),
      cmocka_unit_test(test_options_beat_environment_beat_file),
      cmocka_unit_test(test_option_errors_are_reported),
      cmocka_unit_test(test_otlp_endpoint_is_checked_where_it_is_set),
      cmocka_unit_test(test_finalize_checks_rules_across_fields),
      cmocka_unit_test(test_effective_config_reads_back_and_masks_secrets),
      cmocka_unit_test(test_error_codes_have_names_and_texts),
      cmocka_unit_test(test_configuration_reference_in_docs_is_current),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
