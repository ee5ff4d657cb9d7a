/* sagactl's settings: each from its flag, else the environment, else the
 * config file ("name = value" lines read by common/conffile.h, the same
 * syntax as sagad's), else its default.
 * Every error names its place: the flag, the variable or file:line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "conffile.h"
#include "text.h"
#include "timetext.h"

static const struct {
  const char *name, *env;
  cli_opt_t opt;
  const char *def, *help;
} SETS[] = {
#define CLI_SET_ROW_(id, name, env, opt, def, help)                          \
  {name, env, CLI_OPT_##opt, def, help},
    CLI_SETTING_MAP(CLI_SET_ROW_)
#undef CLI_SET_ROW_
};

const char *cli_setting_name(cli_setting_t s) { return SETS[s].name; }
const char *cli_setting_env(cli_setting_t s) { return SETS[s].env; }
const char *cli_setting_help(cli_setting_t s) { return SETS[s].help; }
const char *cli_setting_default(cli_setting_t s) { return SETS[s].def; }

const char *cli_get(const cli_settings_t *s, cli_setting_t id) {
  return s->value[id];
}

void cli_settings_free(cli_settings_t *s) {
  if (s == NULL)
    return;
  for (int i = 0; i < CLI_SET_COUNT_; i++) {
    free(s->value[i]);
    free(s->source[i]);
  }
  for (size_t i = 0; i < 2 * s->n_kafka_props; i++)
    free(s->kafka_props[i]);
  memset(s, 0, sizeof *s);
}

static int set(cli_settings_t *s, int id, const char *value,
               const char *source) {
  char *v = strdup(value);
  char *src = strdup(source);
  if (v == NULL || src == NULL) {
    free(v);
    free(src);
    return -1;
  }
  free(s->value[id]);
  free(s->source[id]);
  s->value[id] = v;
  s->source[id] = src;
  return 0;
}

typedef struct {
  cli_settings_t *s;
  const int *fixed;
  char kafka_at[160]; /* the line that named the brokers */
  int kafka_alias;    /* that line used librdkafka's name for them */
} file_ctx_t;

/* Whether librdkafka takes property name = value (set on a throwaway
 * configuration): a bad kafka.* line is the file's error, found when the
 * file is read, whatever the command. 0, or -1 with err naming where. */
static int check_kafka_prop(const char *name, const char *value,
                            const char *where, char *err, size_t errlen) {
  char why[256] = "";
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (conf == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, name, value, why,
                                              sizeof why);
  rd_kafka_conf_destroy(conf);
  if (res == RD_KAFKA_CONF_OK)
    return 0;
  char shown[CLI_SHOW_SIZE];
  snprintf(err, errlen, "%s: kafka.%s: %s", where,
           cli_show(name, shown, sizeof shown), why);
  return -1;
}

/* One `name = value` line of the config file; a setting already given by
 * a flag or the environment stays (file values only fill what is unset). */
static int file_line(void *arg, const char *name, const char *value,
                     const char *where, char *err, size_t errlen) {
  file_ctx_t *c = arg;
  cli_settings_t *s = c->s;
  /* librdkafka's own name for the brokers is the `kafka` setting: passed
   * through, it would beat --kafka and SAGA_KAFKA_BOOTSTRAP */
  if (strcmp(name, "kafka") == 0 ||
      strcmp(name, "kafka.bootstrap.servers") == 0 ||
      strcmp(name, "kafka.metadata.broker.list") == 0) {
    /* the brokers under both names: which one is meant is not clear */
    int alias = strcmp(name, "kafka") != 0;
    if (c->kafka_at[0] != '\0' && (alias || c->kafka_alias)) {
      snprintf(err, errlen, "%s: %s: the brokers are named already, at %s",
               where, name, c->kafka_at);
      return -1;
    }
    snprintf(c->kafka_at, sizeof c->kafka_at, "%s", where);
    c->kafka_alias = alias;
    name = "kafka";
  }
  if (strncmp(name, "kafka.", 6) == 0 && name[6] != '\0') {
    if (s->n_kafka_props == CLI_MAX_KAFKA_PROPS) {
      snprintf(err, errlen, "%s: more than %d kafka.* properties", where,
               CLI_MAX_KAFKA_PROPS);
      return -1;
    }
    if (check_kafka_prop(name + 6, value, where, err, errlen) != 0)
      return -1;
    char *k = strdup(name + 6), *v = strdup(value);
    if (k == NULL || v == NULL) {
      free(k);
      free(v);
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    s->kafka_props[2 * s->n_kafka_props] = k;
    s->kafka_props[2 * s->n_kafka_props + 1] = v;
    s->n_kafka_props++;
    return 0;
  }
  int id = -1;
  for (int i = 0; i < CLI_SET_COUNT_; i++)
    if (strcmp(SETS[i].name, name) == 0)
      id = i;
  if (id < 0) {
    char shown[CLI_SHOW_SIZE];
    snprintf(err, errlen, "%s: unknown setting \"%s\"", where,
             cli_show(name, shown, sizeof shown));
    return -1;
  }
  if (c->fixed[id])
    return 0;
  if (set(s, id, value, where) != 0) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

/* Read the config file (common/conffile.h has the syntax). */
static int read_file(cli_settings_t *s, const char *path, const int *fixed,
                     char *err, size_t errlen) {
  file_ctx_t c = {s, fixed, "", 0};
  return saga__conf_read(path, file_line, &c, err, errlen) == SAGA_CONF_OK
             ? 0
             : -1;
}

/* Check the values the settings ended with, naming where each came from:
 * the brokers (an empty value would be reported as a Kafka at "" that
 * could not be reached), the topics (a name Kafka refuses would come back
 * as a Kafka sagactl could not reach), the timeout and max_input. A value
 * is shown as cli_show shows it. 0, or -1 with err set. */
static int finalize(cli_settings_t *s, char *err, size_t errlen) {
  char shown[CLI_SHOW_SIZE];
  /* as an empty --pg is refused (cli_db.c); an empty SAGA_KAFKA_BOOTSTRAP
   * is unset, as every empty variable is */
  const char *k = s->value[CLI_SET_KAFKA];
  if (k != NULL && k[0] == '\0') {
    const char *src = s->source[CLI_SET_KAFKA];
    snprintf(err, errlen,
             "%s%s is empty: give Kafka's bootstrap servers "
             "(host:port[,host:port...])",
             src, strncmp(src, "--", 2) == 0 ? "" : ": kafka");
    return -1;
  }
  static const cli_setting_t topics[] = {CLI_SET_INBOX,
                                         CLI_SET_NOTIFICATIONS};
  for (size_t i = 0; i < sizeof topics / sizeof *topics; i++)
    if (!saga__kafka_topic_ok(s->value[topics[i]])) {
      snprintf(err, errlen,
               "%s: %s must be a Kafka topic name (1 to 249 of a-z, A-Z, "
               "0-9, '.', '_', '-', not \".\" or \"..\"), got \"%s\"",
               s->source[topics[i]], SETS[topics[i]].name,
               cli_show(s->value[topics[i]], shown, sizeof shown));
      return -1;
    }
  const char *t = s->value[CLI_SET_TIMEOUT];
  char why[CLI_SHOW_SIZE + 160];
  if (saga__duration_parse(t, &s->timeout_ms) != SAGA_DURATION_OK) {
    snprintf(err, errlen, "%s: timeout must be a duration between 100ms and "
                          "1h: %s",
             s->source[CLI_SET_TIMEOUT], cli_duration_why(t, why, sizeof why));
    return -1;
  }
  if (s->timeout_ms < 100 || s->timeout_ms > 3600000) {
    snprintf(err, errlen,
             "%s: timeout must be a duration between 100ms and 1h, got "
             "\"%s\"",
             s->source[CLI_SET_TIMEOUT], cli_show(t, shown, sizeof shown));
    return -1;
  }
  uint64_t n = 0;
  if (cli_parse_uint(s->value[CLI_SET_MAX_INPUT], 1, CLI_MAX_INPUT_CEILING,
                     &n) != 0) {
    snprintf(err, errlen,
             "%s: max_input must be a number of bytes between 1 and %d, got "
             "\"%s\"",
             s->source[CLI_SET_MAX_INPUT], CLI_MAX_INPUT_CEILING,
             cli_show(s->value[CLI_SET_MAX_INPUT], shown, sizeof shown));
    return -1;
  }
  s->max_input = (size_t)n;
  return 0;
}

int cli_settings_resolve(const cli_args_t *args, cli_getenv_fn getenv_fn,
                         void *env_arg, cli_settings_t *out, char *err,
                         size_t errlen) {
  memset(out, 0, sizeof *out);
  int fixed[CLI_SET_COUNT_] = {0};
  for (int i = 0; i < CLI_SET_COUNT_; i++) {
    const char *v = args->opt[SETS[i].opt];
    char src[64];
    if (v != NULL) {
      snprintf(src, sizeof src, "--%s", cli_opt_name(SETS[i].opt));
    } else if ((v = getenv_fn(SETS[i].env, env_arg)) != NULL && *v != '\0') {
      snprintf(src, sizeof src, "%s", SETS[i].env);
    } else {
      continue;
    }
    if (set(out, i, v, src) != 0)
      goto oom;
    fixed[i] = 1;
  }
  const char *path = args->opt[CLI_OPT_CONFIG];
  char home_conf[4096];
  if (path == NULL) {
    const char *home = getenv_fn("HOME", env_arg);
    if (home != NULL && *home != '\0') {
      snprintf(home_conf, sizeof home_conf, "%s/.config/sagactl.conf", home);
      FILE *f = fopen(home_conf, "r");
      if (f != NULL) {
        fclose(f);
        path = home_conf;
      }
    }
  }
  if (path != NULL && read_file(out, path, fixed, err, errlen) != 0)
    return -1;
  for (int i = 0; i < CLI_SET_COUNT_; i++) {
    if (out->value[i] == NULL && SETS[i].def != NULL &&
        set(out, i, SETS[i].def, "default") != 0)
      goto oom;
  }
  if (out->value[CLI_SET_OPERATOR] == NULL) {
    const char *user = getenv_fn("USER", env_arg);
    if (set(out, CLI_SET_OPERATOR,
            user != NULL && *user != '\0' ? user : "sagactl", "USER") != 0)
      goto oom;
  }
  return finalize(out, err, errlen);
oom:
  snprintf(err, errlen, "out of memory");
  return -1;
}
