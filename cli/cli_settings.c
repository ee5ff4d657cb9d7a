/* sagactl's settings: each from its flag, else the environment, else the
 * config file ("name = value" lines, '#' comments), else its default.
 * Every error names its place: the flag, the variable or file:line. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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

static char *trim(char *p) {
  while (isspace((unsigned char)*p))
    p++;
  size_t n = strlen(p);
  while (n > 0 && isspace((unsigned char)p[n - 1]))
    p[--n] = '\0';
  return p;
}

/* Read the config file; a setting already given by a flag or the
 * environment stays (file values only fill what is unset). */
static int read_file(cli_settings_t *s, const char *path, const int *fixed,
                     char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "could not open config file \"%s\": %s", path,
             strerror(errno));
    return -1;
  }
  char line[4096];
  int lineno = 0, rc = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    lineno++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n') {
      snprintf(err, errlen, "%s:%d: line longer than %zu bytes", path, lineno,
               sizeof line - 2);
      rc = -1;
      break;
    }
    char *p = trim(line);
    if (*p == '\0' || *p == '#')
      continue;
    char *eq = strchr(p, '=');
    if (eq == NULL) {
      snprintf(err, errlen, "%s:%d: expected \"name = value\"", path, lineno);
      rc = -1;
      break;
    }
    *eq = '\0';
    char *name = trim(p);
    char *value = trim(eq + 1);
    if (strncmp(name, "kafka.", 6) == 0 && name[6] != '\0') {
      if (s->n_kafka_props == CLI_MAX_KAFKA_PROPS) {
        snprintf(err, errlen, "%s:%d: more than %d kafka.* properties", path,
                 lineno, CLI_MAX_KAFKA_PROPS);
        rc = -1;
        break;
      }
      char *k = strdup(name + 6), *v = strdup(value);
      if (k == NULL || v == NULL) {
        free(k);
        free(v);
        snprintf(err, errlen, "out of memory");
        rc = -1;
        break;
      }
      s->kafka_props[2 * s->n_kafka_props] = k;
      s->kafka_props[2 * s->n_kafka_props + 1] = v;
      s->n_kafka_props++;
      continue;
    }
    int id = -1;
    for (int i = 0; i < CLI_SET_COUNT_; i++)
      if (strcmp(SETS[i].name, name) == 0)
        id = i;
    if (id < 0) {
      snprintf(err, errlen, "%s:%d: unknown setting \"%s\"", path, lineno,
               name);
      rc = -1;
      break;
    }
    if (fixed[id])
      continue;
    char src[4200];
    snprintf(src, sizeof src, "%s:%d", path, lineno);
    if (set(s, id, value, src) != 0) {
      snprintf(err, errlen, "out of memory");
      rc = -1;
      break;
    }
  }
  if (rc == 0 && ferror(f)) {
    snprintf(err, errlen, "could not read config file \"%s\"", path);
    rc = -1;
  }
  fclose(f);
  return rc;
}

static int finalize(cli_settings_t *s, char *err, size_t errlen) {
  const char *t = s->value[CLI_SET_TIMEOUT];
  if (cli_parse_duration(t, &s->timeout_ms) != 0 || s->timeout_ms < 100 ||
      s->timeout_ms > 3600000) {
    snprintf(err, errlen,
             "%s: timeout must be a duration between 100ms and 1h, got "
             "\"%s\"",
             s->source[CLI_SET_TIMEOUT], t);
    return -1;
  }
  uint64_t n = 0;
  if (cli_parse_uint(s->value[CLI_SET_MAX_INPUT], 1, CLI_MAX_INPUT_CEILING,
                     &n) != 0) {
    snprintf(err, errlen,
             "%s: max_input must be a number of bytes between 1 and %d, got "
             "\"%s\"",
             s->source[CLI_SET_MAX_INPUT], CLI_MAX_INPUT_CEILING,
             s->value[CLI_SET_MAX_INPUT]);
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
