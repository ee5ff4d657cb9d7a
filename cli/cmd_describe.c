/* describe: one saga as an operator wants to see it during an incident --
 * its saga_index row, the definition it runs on (recorded in the store),
 * each step's state, attempts, last failure and output, the step it is
 * parked on with the reason, the pending deadline, its input and outputs
 * (sizes, or whole with --payloads) and the operator trail. Read-only:
 * saga_index, saga_definitions and the saga's stream. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "definition.h"
#include "saga_codec.h"
#include "saga_machine.h"

#include "cli_cmds.h"
#include "cli_db.h"
#include "cli_defs.h"
#include "cli_records.h"
#include "cli_timeline.h"

/* A copied payload (NULL = none). */
typedef struct {
  char *p;
  size_t n;
} blob_t;

/* The last failed attempt of a step. */
typedef struct {
  int set;
  uint8_t action, outcome;
  uint16_t attempt;
  int64_t at_ms, retry_ms; /* retry_ms 0 = failed for good */
  char reason[SAGA_CODEC_MAX_REASON + 1];
} failure_t;

/* One line of the operator trail. */
typedef struct {
  const char *event; /* static */
  int64_t at_ms;
  int step; /* -1 = none */
  uint8_t action;
  char who[SM_ID_MAX + 1];
  char why[SAGA_CODEC_MAX_REASON + 1];
} trail_t;

typedef struct {
  const cli_defs_t *defs;
  const char *id;
  const saga_def_t *def;
  cli_def_from_t from;
  char type[SAGA_DEF_MAX_NAME + 1];
  uint32_t version;
  sm_t *saga; /* replayed, when the definition is known */
  int replay_failed;
  blob_t input;
  blob_t output[SAGA_DEF_MAX_STEPS];
  failure_t failure[SAGA_DEF_MAX_STEPS];
  int nsteps_seen; /* 1 + the highest step index an event names */
  int parked_step; /* -1 = none */
  trail_t *trail;
  size_t ntrail;
} describe_t;

static int copy_blob(blob_t *b, const uint8_t *p, size_t n) {
  free(b->p);
  b->p = NULL;
  b->n = 0;
  if (p == NULL || n == 0)
    return 0;
  if ((b->p = malloc(n + 1)) == NULL)
    return -1;
  memcpy(b->p, p, n);
  b->p[n] = '\0';
  b->n = n;
  return 0;
}

static int add_trail(describe_t *d, const sm_event_t *e, int64_t at_ms) {
  trail_t *t = realloc(d->trail, (d->ntrail + 1) * sizeof *t);
  if (t == NULL)
    return -1;
  d->trail = t;
  t = &d->trail[d->ntrail++];
  memset(t, 0, sizeof *t);
  t->event = sm_event_type_name((sm_event_type_t)e->type);
  t->at_ms = at_ms;
  t->step = e->type == SM_EV_OPERATOR_RETRY ? e->step : -1;
  t->action = e->action;
  snprintf(t->who, sizeof t->who, "%s", e->who != NULL ? e->who : "");
  snprintf(t->why, sizeof t->why, "%s", e->reason != NULL ? e->reason : "");
  return 0;
}

static int start_saga(describe_t *d, const sm_event_t *e) {
  snprintf(d->type, sizeof d->type, "%s", e->def_name ? e->def_name : "");
  d->version = e->def_version;
  d->def = cli_defs_find(d->defs, d->type, d->version, &d->from);
  if (d->def == NULL)
    return 0;
  if ((d->saga = malloc(sm_size(d->def, strlen(d->id)))) == NULL)
    return -1;
  if (sm_init(d->saga, d->id, d->def) != SAGA_CORE_OK)
    d->replay_failed = 1;
  return 0;
}

static int describe_record(void *arg, int64_t version,
                           const saga_record_t *rec) {
  describe_t *d = arg;
  (void)version;
  for (size_t i = 0; i < rec->n; i++) {
    const sm_event_t *e = &rec->events[i];
    int step = e->step < SAGA_DEF_MAX_STEPS ? e->step : -1;
    int oom = 0;
    switch (e->type) {
    case SM_EV_STARTED:
      oom = (d->type[0] == '\0' && start_saga(d, e) != 0) ||
            copy_blob(&d->input, e->payload, e->payload_len) != 0;
      step = -1;
      break;
    case SM_EV_SUCCEEDED:
      if (step >= 0 && e->action == SM_DO)
        oom = copy_blob(&d->output[step], e->payload, e->payload_len) != 0;
      break;
    case SM_EV_ATTEMPT_FAILED:
      if (step >= 0) {
        failure_t *f = &d->failure[step];
        *f = (failure_t){.set = 1,
                         .action = e->action,
                         .outcome = e->outcome,
                         .attempt = e->attempt,
                         .at_ms = rec->at_ms,
                         .retry_ms = e->until_ms};
        snprintf(f->reason, sizeof f->reason, "%s",
                 e->reason != NULL ? e->reason : "");
      }
      break;
    case SM_EV_PARKED:
      d->parked_step = step;
      break;
    case SM_EV_OPERATOR_RETRY:
      d->parked_step = -1;
      oom = add_trail(d, e, rec->at_ms) != 0;
      break;
    case SM_EV_RESOLVED:
    case SM_EV_CANCEL_REQUESTED:
      oom = add_trail(d, e, rec->at_ms) != 0;
      step = -1;
      break;
    case SM_EV_COMPLETED:
    case SM_EV_COMPENSATED:
      step = -1;
      break;
    default:
      break;
    }
    if (oom) {
      cli_fail(CLI_EXIT_FAIL, "out of memory");
      return -1;
    }
    if (step >= d->nsteps_seen)
      d->nsteps_seen = step + 1;
  }
  if (d->saga != NULL && !d->replay_failed &&
      saga_codec_apply(d->saga, rec) != SAGA_CORE_OK)
    d->replay_failed = 1;
  return 0;
}

static void describe_clear(describe_t *d) {
  free(d->saga);
  free(d->input.p);
  for (int i = 0; i < SAGA_DEF_MAX_STEPS; i++)
    free(d->output[i].p);
  free(d->trail);
}

static int nsteps(const describe_t *d) {
  return d->def != NULL ? (int)d->def->nsteps : d->nsteps_seen;
}

static void step_label(const describe_t *d, int i, char *buf, size_t len) {
  if (d->def != NULL && i >= 0 && (uint32_t)i < d->def->nsteps)
    snprintf(buf, len, "%s", d->def->steps[i].name);
  else
    snprintf(buf, len, "#%d", i);
}

/* The state of step i as the replayed machine holds it, or NULL. */
static const sm_step_state_t *step_state(const describe_t *d, int i) {
  return d->saga != NULL && !d->replay_failed && i < d->saga->nsteps
             ? &d->saga->steps[i]
             : NULL;
}

static const char *action_name(uint8_t a) {
  return a == SM_COMPENSATE ? "COMPENSATE" : "DO";
}

static const char *outcome_name(uint8_t o) {
  static const char *const N[] = {"", "SUCCESS", "FAILURE", "RETRYABLE",
                                  "TIMEOUT"};
  return o < sizeof N / sizeof *N ? N[o] : "";
}

/* "COMPENSATE attempt 2: FAILURE \"declined\" at T; retry at T2" */
static char *failure_text(const failure_t *f, char *buf, size_t len) {
  char t[40], r[40];
  snprintf(buf, len, "%s attempt %u: %s%s%s%s at %s%s%s",
           action_name(f->action), (unsigned)f->attempt,
           outcome_name(f->outcome), *f->reason ? " \"" : "", f->reason,
           *f->reason ? "\"" : "", cli_format_time(f->at_ms, t, sizeof t),
           f->retry_ms > 0 ? "; retry at " : "; for good",
           f->retry_ms > 0 ? cli_format_time(f->retry_ms, r, sizeof r) : "");
  for (char *p = buf; *p; p++)
    if ((unsigned char)*p < 0x20)
      *p = ' ';
  return buf;
}

/* The step whose timer is the pending deadline, or -1. */
static int deadline_step(const describe_t *d, int64_t deadline_ms) {
  for (int i = 0; deadline_ms > 0 && i < nsteps(d); i++) {
    const sm_step_state_t *st = step_state(d, i);
    if (st != NULL && st->timer_ms == deadline_ms)
      return i;
  }
  return -1;
}

/* What the step's timer is for: a reply deadline or a retry. */
static const char *timer_kind(const sm_step_state_t *st) {
  switch (st->status) {
  case SM_STEP_RUNNING:
    return "reply deadline of DO";
  case SM_STEP_COMP_RUNNING:
    return "reply deadline of COMPENSATE";
  case SM_STEP_BACKOFF:
    return "retry of DO";
  case SM_STEP_COMP_BACKOFF:
    return "retry of COMPENSATE";
  default:
    return "timer";
  }
}

static int current_step(const describe_t *d, const cli_index_row_t *row) {
  if (row->current_step != NULL && d->def != NULL)
    return saga_def_step_index(d->def, row->current_step);
  return d->saga != NULL && !d->replay_failed ? sm_current_step(d->saga) : -1;
}

/* ---- text ------------------------------------------------------------- */

static void print_payload(const char *label, const blob_t *b, int whole) {
  if (b->p == NULL)
    printf("%-15s-\n", label);
  else if (whole)
    printf("%-15s%.*s\n", label, (int)b->n, b->p);
  else
    printf("%-15s%zu bytes (--payloads shows it)\n", label, b->n);
}

static void print_text(const describe_t *d, const cli_index_row_t *row,
                       const cli_ending_t *end, int whole) {
  char t1[40], t2[40], idle[32], buf[1024], name[SAGA_DEF_MAX_NAME + 8];
  int64_t now = cli_now_ms();
  printf("saga:          %s\n", row->saga_id);
  if (d->from == CLI_DEF_RECORDED)
    printf("type:          %s v%d (definition recorded in the store, "
           "sha256 %.12s)\n",
           row->saga_type, row->def_version, d->def->sha256);
  else if (d->from == CLI_DEF_FOLDER)
    printf("type:          %s v%d (definition from the definitions "
           "folder)\n",
           row->saga_type, row->def_version);
  else
    printf("type:          %s v%d (no recorded definition: steps by "
           "number)\n",
           row->saga_type, row->def_version);
  printf("status:        %s%s\n", row->status,
         end->resolved ? " (resolved by an operator)"
         : !strcmp(row->status, "compensation_failed")
             ? " (parked: waiting for an operator's retry or resolve)"
             : "");
  int cur = current_step(d, row);
  if (cur >= 0) {
    step_label(d, cur, name, sizeof name);
    printf("current step:  %s\n", name);
    if (cur < SAGA_DEF_MAX_STEPS && d->failure[cur].set &&
        cur != d->parked_step)
      printf("  last failure: %s\n",
             failure_text(&d->failure[cur], buf, sizeof buf));
  } else {
    printf("current step:  -\n");
  }
  if (d->parked_step >= 0) {
    step_label(d, d->parked_step, name, sizeof name);
    printf("parked step:   %s: its compensation's retries are spent\n", name);
    if (d->failure[d->parked_step].set)
      printf("  last failure: %s\n",
             failure_text(&d->failure[d->parked_step], buf, sizeof buf));
  }
  if (row->deadline_ms > 0) {
    int ds = deadline_step(d, row->deadline_ms);
    char what[160] = "";
    if (ds >= 0) {
      step_label(d, ds, name, sizeof name);
      snprintf(what, sizeof what, " (%s %s, attempt %u)",
               timer_kind(step_state(d, ds)), name,
               (unsigned)step_state(d, ds)->attempt);
    }
    char in[32];
    printf("pending:       %s%s, %s%s\n",
           cli_format_time(row->deadline_ms, t1, sizeof t1), what,
           row->deadline_ms >= now ? "in " : "due",
           row->deadline_ms >= now
               ? cli_format_duration(row->deadline_ms - now, in, sizeof in)
               : "");
  } else {
    printf("pending:       no deadline\n");
  }
  printf("started:       %s\n"
         "last progress: %s (%s ago)\n",
         cli_format_time(row->started_ms, t1, sizeof t1),
         cli_format_time(row->updated_ms, t2, sizeof t2),
         cli_format_duration(now - row->updated_ms, idle, sizeof idle));
  print_payload("input:", &d->input, whole);
  if (end->output != NULL) {
    blob_t o = {end->output, end->output_len};
    print_payload("output:", &o, whole);
  }
  /* the operators' words and names on one line each (--json has them as
   * they are) */
  char why[CLI_FLAT_REASON], who[CLI_FLAT_NAME];
  if (end->cancelled != NULL)
    printf("cancelled:     %s%s%s%s\n",
           *end->cancelled ? cli_flat(end->cancelled, why, sizeof why) : "-",
           end->cancelled_by ? " (by " : "",
           end->cancelled_by ? cli_flat(end->cancelled_by, who, sizeof who)
                             : "",
           end->cancelled_by ? ")" : "");
  printf("\n%-3s %-24s %-21s %7s  %-14s %s\n", "#", "STEP", "STATUS", "ATTEMPT",
         "OUTPUT", "LAST FAILURE");
  for (int i = 0; i < nsteps(d); i++) {
    const sm_step_state_t *st = step_state(d, i);
    char att[16] = "-", out[32] = "-";
    if (st != NULL && st->attempt > 0)
      snprintf(att, sizeof att, "%u", (unsigned)st->attempt);
    if (d->output[i].p != NULL)
      snprintf(out, sizeof out, "%zu bytes", d->output[i].n);
    step_label(d, i, name, sizeof name);
    printf("%-3d %-24s %-21s %7s  %-14s %s\n", i, name,
           st != NULL ? sm_step_status_name((sm_step_status_t)st->status) : "?",
           att, out,
           d->failure[i].set ? failure_text(&d->failure[i], buf, sizeof buf)
                             : "-");
    if (whole && d->output[i].p != NULL)
      printf("    output: %.*s\n", (int)d->output[i].n, d->output[i].p);
  }
  printf("\noperator trail:%s\n", d->ntrail == 0 ? " none" : "");
  for (size_t i = 0; i < d->ntrail; i++) {
    const trail_t *t = &d->trail[i];
    char step[SAGA_DEF_MAX_NAME + 32] = "";
    if (t->step >= 0) {
      step_label(d, t->step, name, sizeof name);
      snprintf(step, sizeof step, " (%s %s)", action_name(t->action), name);
    }
    printf("  %s  %-15s by %s%s%s%s\n",
           cli_format_time(t->at_ms, t1, sizeof t1), t->event,
           *t->who ? cli_flat(t->who, who, sizeof who) : "an unnamed operator",
           step, *t->why ? ": " : "", cli_flat(t->why, why, sizeof why));
  }
}

/* ---- JSON ------------------------------------------------------------- */

static cJSON *str_or_null(const char *s) {
  return s != NULL && *s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *time_json(int64_t ms) {
  char t[40];
  return ms > 0 ? cJSON_CreateString(cli_format_time(ms, t, sizeof t))
                : cJSON_CreateNull();
}

/* "KEY_bytes": size and, with whole, "KEY": the payload (else null). */
static void add_payload(cJSON *o, const char *key, const blob_t *b, int whole) {
  char k[64];
  snprintf(k, sizeof k, "%s_bytes", key);
  cJSON_AddNumberToObject(o, k, (double)b->n);
  cJSON_AddItemToObject(
      o, key, whole ? cli_payload_json(b->p, b->n) : cJSON_CreateNull());
}

static cJSON *failure_json(const failure_t *f) {
  if (!f->set)
    return cJSON_CreateNull();
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return NULL;
  cJSON_AddStringToObject(o, "action", action_name(f->action));
  cJSON_AddNumberToObject(o, "attempt", f->attempt);
  cJSON_AddStringToObject(o, "outcome", outcome_name(f->outcome));
  cJSON_AddItemToObject(o, "reason", str_or_null(f->reason));
  cJSON_AddItemToObject(o, "at", time_json(f->at_ms));
  cJSON_AddItemToObject(o, "retry_at", time_json(f->retry_ms));
  return o;
}

/* {"index", "name", "last_failure"} of step i, or null. */
static cJSON *step_ref_json(const describe_t *d, int i) {
  if (i < 0)
    return cJSON_CreateNull();
  char name[SAGA_DEF_MAX_NAME + 8];
  step_label(d, i, name, sizeof name);
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return NULL;
  cJSON_AddNumberToObject(o, "index", i);
  cJSON_AddStringToObject(o, "name", name);
  cJSON_AddItemToObject(o, "last_failure",
                        i < SAGA_DEF_MAX_STEPS ? failure_json(&d->failure[i])
                                               : cJSON_CreateNull());
  return o;
}

static int print_json(const describe_t *d, const cli_index_row_t *row,
                      const cli_ending_t *end, int whole) {
  static const char *const FROM[] = {NULL, "store", "folder"};
  cJSON *o = cli_index_row_json(row, cli_now_ms());
  if (o == NULL)
    return cli_fail(CLI_EXIT_FAIL, "out of memory");
  cJSON_AddBoolToObject(o, "resolved_by_operator", end->resolved);
  cli_ending_add_json(o, end);
  if (!whole) /* collapsed like the rest: its size only */
    cJSON_ReplaceItemInObject(o, "output", cJSON_CreateNull());
  cJSON_AddNumberToObject(o, "output_bytes", (double)end->output_len);
  cJSON *def = cJSON_AddObjectToObject(o, "definition");
  if (def != NULL) {
    cJSON_AddItemToObject(def, "from", str_or_null(FROM[d->from]));
    cJSON_AddItemToObject(def, "sha256",
                          str_or_null(d->def ? d->def->sha256 : NULL));
  }
  cJSON_AddItemToObject(o, "current", step_ref_json(d, current_step(d, row)));
  cJSON_AddItemToObject(o, "parked", step_ref_json(d, d->parked_step));
  cJSON *pend = cJSON_CreateNull();
  if (row->deadline_ms > 0 && (pend = cJSON_CreateObject()) != NULL) {
    int ds = deadline_step(d, row->deadline_ms);
    char name[SAGA_DEF_MAX_NAME + 8] = "";
    if (ds >= 0)
      step_label(d, ds, name, sizeof name);
    cJSON_AddItemToObject(pend, "at", time_json(row->deadline_ms));
    cJSON_AddNumberToObject(pend, "at_ms", (double)row->deadline_ms);
    cJSON_AddItemToObject(pend, "step", str_or_null(name));
    cJSON_AddItemToObject(
        pend, "kind",
        str_or_null(ds >= 0 ? timer_kind(step_state(d, ds)) : NULL));
  }
  cJSON_AddItemToObject(o, "pending_deadline", pend);
  add_payload(o, "input", &d->input, whole);
  cJSON *steps = cJSON_AddArrayToObject(o, "steps");
  for (int i = 0; steps != NULL && i < nsteps(d); i++) {
    const sm_step_state_t *st = step_state(d, i);
    char name[SAGA_DEF_MAX_NAME + 8];
    step_label(d, i, name, sizeof name);
    cJSON *s = cJSON_CreateObject();
    if (s == NULL || !cJSON_AddItemToArray(steps, s)) {
      cJSON_Delete(s);
      break;
    }
    cJSON_AddNumberToObject(s, "index", i);
    cJSON_AddStringToObject(s, "name", name);
    cJSON_AddItemToObject(
        s, "status",
        str_or_null(st ? sm_step_status_name((sm_step_status_t)st->status)
                       : NULL));
    if (st != NULL && st->attempt > 0)
      cJSON_AddNumberToObject(s, "attempt", st->attempt);
    else
      cJSON_AddNullToObject(s, "attempt");
    add_payload(s, "output", &d->output[i], whole);
    cJSON_AddItemToObject(s, "last_failure", failure_json(&d->failure[i]));
  }
  cJSON *trail = cJSON_AddArrayToObject(o, "operator_trail");
  for (size_t i = 0; trail != NULL && i < d->ntrail; i++) {
    const trail_t *t = &d->trail[i];
    cJSON *x = cJSON_CreateObject();
    if (x == NULL || !cJSON_AddItemToArray(trail, x)) {
      cJSON_Delete(x);
      break;
    }
    char name[SAGA_DEF_MAX_NAME + 8] = "";
    if (t->step >= 0)
      step_label(d, t->step, name, sizeof name);
    cJSON_AddItemToObject(x, "time", time_json(t->at_ms));
    cJSON_AddStringToObject(x, "event", t->event);
    cJSON_AddItemToObject(x, "operator", str_or_null(t->who));
    cJSON_AddItemToObject(x, "reason", str_or_null(t->why));
    cJSON_AddItemToObject(x, "step", str_or_null(name));
  }
  return cli_print_json(o);
}

int cli_cmd_describe(const cli_args_t *a, const cli_settings_t *s) {
  if (a->npos != 1)
    return cli_fail(CLI_EXIT_USAGE,
                    "describe: expected one saga id, got %zu arguments",
                    a->npos);
  cli_output_t fmt;
  int rc = cli_output_of_doc(a, &fmt);
  if (rc != CLI_EXIT_OK)
    return rc;
  const char *id = a->pos[0];
  int whole = a->opt[CLI_OPT_PAYLOADS] != NULL;
  PGconn *c = NULL;
  cli_index_row_t row = {0};
  cli_defs_t defs = {0};
  cli_ending_t end = {0};
  describe_t d = {.defs = &defs, .id = id, .parked_step = -1};
  if ((rc = cli_db_connect(s, &c)) != CLI_EXIT_OK)
    return rc;
  int found = cli_db_get(c, id, &row);
  if (found != 0) {
    rc = found > 0 ? cli_fail(CLI_EXIT_FAIL,
                              "saga \"%s\" not found in saga_index", id)
                   : CLI_EXIT_FAIL;
    goto out;
  }
  if ((rc = cli_defs_open(s, c, 1, &defs)) != CLI_EXIT_OK)
    goto out;
  PQfinish(c);
  c = NULL;
  if (cli_each_saga_record(s, id, describe_record, &d) < 0) {
    rc = CLI_EXIT_FAIL;
    goto out;
  }
  if ((rc = cli_saga_ending(s, id, &end)) != CLI_EXIT_OK)
    goto out;
  if (fmt == CLI_OUT_TABLE)
    print_text(&d, &row, &end, whole);
  else
    rc = print_json(&d, &row, &end, whole);
out:
  PQfinish(c);
  describe_clear(&d);
  cli_ending_clear(&end);
  cli_defs_clear(&defs);
  cli_index_row_clear(&row);
  return rc;
}
