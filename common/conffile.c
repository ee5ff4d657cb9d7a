/* The `name = value` config file reader (see conffile.h). */
#include "conffile.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static saga_conf_rc_t failf(saga_conf_rc_t rc, char *err, size_t errlen,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static saga_conf_rc_t failf(saga_conf_rc_t rc, char *err, size_t errlen,
                            const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return rc;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1]))
    *--e = '\0';
  return s;
}

/* Unquote "..." in place (\" and \\ escapes). Returns -1 on a bad quote. */
static int unquote(char *v) {
  if (*v != '"')
    return 0;
  char *w = v;
  char *r = v + 1;
  for (; *r && *r != '"'; r++) {
    if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
      r++;
    *w++ = *r;
  }
  if (*r != '"' || r[1] != '\0')
    return -1;
  *w = '\0';
  return 0;
}

saga_conf_rc_t saga__conf_read(const char *path, saga_conf_line_fn fn,
                               void *arg, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f)
    return failf(SAGA_CONF_EFILE, err, errlen,
                 "could not open config file \"%s\": %s", path,
                 strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  saga_conf_rc_t rc = SAGA_CONF_OK;
  char where[4200];
  for (unsigned lineno = 1; (got = getline(&line, &cap, f)) >= 0; lineno++) {
    snprintf(where, sizeof where, "%s:%u", path, lineno);
    if ((size_t)got > SAGA_CONF_MAX_LINE) {
      rc = failf(SAGA_CONF_ESYNTAX, err, errlen,
                 "%s: line longer than %d bytes", where, SAGA_CONF_MAX_LINE);
      break;
    }
    char *s = trim(line);
    if (!*s || *s == '#')
      continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      rc = failf(SAGA_CONF_ESYNTAX, err, errlen,
                 "%s: expected \"name = value\", got \"%.60s\"", where, s);
      break;
    }
    *eq = '\0';
    char *name = trim(s);
    char *value = trim(eq + 1);
    if (!*name || strpbrk(name, " \t")) {
      rc = failf(SAGA_CONF_ESYNTAX, err, errlen,
                 "%s: expected a name before '='", where);
      break;
    }
    if (unquote(value) != 0) {
      rc = failf(SAGA_CONF_ESYNTAX, err, errlen,
                 "%s: %s: unterminated or trailing text after quoted value",
                 where, name);
      break;
    }
    if (fn(arg, name, value, where, err, errlen) != 0) {
      rc = SAGA_CONF_ESTOP;
      break;
    }
  }
  if (rc == SAGA_CONF_OK && ferror(f))
    rc = failf(SAGA_CONF_EFILE, err, errlen,
               "could not read config file \"%s\": %s", path,
               strerror(errno));
  free(line);
  fclose(f);
  return rc;
}
