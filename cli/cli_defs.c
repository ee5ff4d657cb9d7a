/* sagactl's definitions: the folder (files) and the store's recorded
 * versions (one query, parsed with the coordinator's own parser). */
#include "cli_defs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index_query.h"

saga_registry_t *cli_defs_load_folder(const cli_settings_t *s, int *rc) {
  const char *dir = cli_get(s, CLI_SET_DEFINITIONS);
  saga_registry_t *reg = saga_registry_new();
  saga_diags_t d = {0};
  *rc = CLI_EXIT_OK;
  if (reg == NULL) {
    *rc = cli_fail(CLI_EXIT_FAIL, "out of memory");
    return NULL;
  }
  size_t loaded = 0;
  int err = saga_registry_load_dir(reg, dir, &d, &loaded);
  /* every failure names the folder and the setting it came from, then
   * why: the folder's, or the first definition's (its file and place) */
  const char *src = dir != NULL ? s->source[CLI_SET_DEFINITIONS] : "unset";
  if (err == SAGA_CORE_EIO || (err == SAGA_CORE_OK && loaded == 0))
    *rc = cli_fail(CLI_EXIT_USAGE,
                   "could not load saga definitions from \"%s\" (%s): %s", dir,
                   src,
                   err == SAGA_CORE_EIO ? "folder cannot be read"
                                        : "no *.json definition in it");
  else if (err != SAGA_CORE_OK)
    *rc = cli_fail(CLI_EXIT_USAGE,
                   "could not load saga definitions from \"%s\" (%s): %s", dir,
                   src, d.n > 0 ? d.items[0] : saga_core_strerror(err));
  saga_diags_clear(&d);
  if (*rc != CLI_EXIT_OK) {
    saga_registry_free(reg);
    return NULL;
  }
  return reg;
}

/* Parse one recorded row into reg; a body this sagactl cannot read is
 * skipped with a warning. 0, or -1 when out of memory. */
static int add_recorded(saga_registry_t *reg, PGresult *r, int i) {
  const char *name = PQgetvalue(r, i, IQ_DEF_COL_NAME);
  const char *version = PQgetvalue(r, i, IQ_DEF_COL_VERSION);
  char label[160];
  snprintf(label, sizeof label, "saga_definitions %.64s v%s (from %.60s)", name,
           version, PQgetvalue(r, i, IQ_DEF_COL_SOURCE));
  saga_diags_t d = {0};
  saga_def_t *def = NULL;
  const char *body = PQgetvalue(r, i, IQ_DEF_COL_BODY);
  int e = saga_def_parse(body, strlen(body), label, &def, &d);
  if (e == SAGA_CORE_OK) {
    /* the hash the store holds, whatever this parser would print */
    snprintf(def->sha256, sizeof def->sha256, "%s",
             PQgetvalue(r, i, IQ_DEF_COL_SHA256));
    e = saga_registry_add(reg, def, &d);
    if (e != SAGA_CORE_OK)
      saga_def_free(def);
  }
  if (e != SAGA_CORE_OK && e != SAGA_CORE_ENOMEM)
    fprintf(stderr,
            "sagactl: warning: recorded definition %s v%s skipped: "
            "%s\n",
            name, version, d.n > 0 ? d.items[0] : saga_core_strerror(e));
  saga_diags_clear(&d);
  return e == SAGA_CORE_ENOMEM ? -1 : 0;
}

int cli_defs_read_recorded(PGconn *c, saga_registry_t **out, char *why,
                           size_t len) {
  *out = saga_registry_new();
  if (*out == NULL) {
    snprintf(why, len, "out of memory");
    return CLI_EXIT_FAIL;
  }
  iq_stmt_t q;
  (void)iq_definition(NULL, 0, &q);
  PGresult *r =
      PQexecParams(c, q.sql, q.nparams, NULL, q.params, NULL, NULL, 0);
  int rc = CLI_EXIT_OK;
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r) && rc == CLI_EXIT_OK; i++)
      if (add_recorded(*out, r, i) != 0) {
        snprintf(why, len, "out of memory");
        rc = CLI_EXIT_FAIL;
      }
  } else {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state == NULL || strcmp(state, IQ_SQLSTATE_NO_TABLE) != 0) {
      char msg[512];
      snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
      msg[strcspn(msg, "\n")] = '\0';
      snprintf(why, len,
               "could not read the recorded definitions "
               "(saga_definitions): %s",
               msg);
      rc = CLI_EXIT_FAIL;
    }
  }
  PQclear(r);
  if (rc != CLI_EXIT_OK) {
    saga_registry_free(*out);
    *out = NULL;
  }
  return rc;
}

int cli_defs_load_recorded(PGconn *c, saga_registry_t **out) {
  char why[768];
  int rc = cli_defs_read_recorded(c, out, why, sizeof why);
  if (rc != CLI_EXIT_OK)
    cli_fail(rc, "%s", why);
  return rc;
}

int cli_defs_open(const cli_settings_t *s, PGconn *c, int want_folder,
                  cli_defs_t *d) {
  memset(d, 0, sizeof *d);
  int rc = CLI_EXIT_OK;
  if (want_folder && cli_get(s, CLI_SET_DEFINITIONS) != NULL &&
      (d->folder = cli_defs_load_folder(s, &rc)) == NULL)
    return rc;
  if (c != NULL &&
      (rc = cli_defs_load_recorded(c, &d->recorded)) != CLI_EXIT_OK)
    cli_defs_clear(d);
  return rc;
}

const saga_def_t *cli_defs_find(const cli_defs_t *d, const char *name,
                                uint32_t version, cli_def_from_t *from) {
  const saga_def_t *def = NULL;
  cli_def_from_t where = CLI_DEF_NONE;
  if (version > 0 && d->recorded != NULL &&
      (def = saga_registry_find(d->recorded, name, version)) != NULL)
    where = CLI_DEF_RECORDED;
  else if (version > 0 && d->folder != NULL &&
           (def = saga_registry_find(d->folder, name, version)) != NULL)
    where = CLI_DEF_FOLDER;
  if (from != NULL)
    *from = where;
  return def;
}

void cli_defs_clear(cli_defs_t *d) {
  if (d == NULL)
    return;
  saga_registry_free(d->recorded);
  saga_registry_free(d->folder);
  memset(d, 0, sizeof *d);
}
