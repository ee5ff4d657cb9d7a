/* History timeline rows from decoded saga events. A command's duration is
 * the time from its Dispatched record to the record that decided that
 * attempt (Succeeded or AttemptFailed for the same step, action and
 * attempt). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_timeline.h"
#include "grow.h"
#include "json_exact.h"
#include "text.h"

static const char *action_name(uint8_t a) {
  return a == SM_COMPENSATE ? "COMPENSATE" : "DO";
}

static const char *outcome_name(uint8_t o) {
  switch (o) {
  case SM_OUTCOME_SUCCESS:
    return "SUCCESS";
  case SM_OUTCOME_FAILURE:
    return "FAILURE";
  case SM_OUTCOME_RETRYABLE:
    return "RETRYABLE";
  case SM_OUTCOME_TIMEOUT:
    return "TIMEOUT";
  default:
    return "";
  }
}

static void step_name(const saga_def_t *def, uint8_t step, char *buf,
                      size_t len) {
  if (def != NULL && step < def->nsteps)
    snprintf(buf, len, "%s", def->steps[step].name);
  else
    snprintf(buf, len, "#%u", (unsigned)step);
}

/* Time of the dispatch of (step, action, attempt), forgotten once used. */
static int64_t take_sent(cli_timeline_t *tl, const sm_event_t *ev) {
  for (size_t i = 0; i < tl->nsent; i++) {
    cli_tl_sent_t *s = &tl->sent[i];
    if (s->step == ev->step && s->action == ev->action &&
        s->attempt == ev->attempt) {
      int64_t at = s->at_ms;
      tl->sent[i] = tl->sent[--tl->nsent];
      return at;
    }
  }
  return -1;
}

static int add_sent(cli_timeline_t *tl, const sm_event_t *ev,
                    int64_t at_ms) {
  (void)take_sent(tl, ev); /* a re-dispatch replaces an older entry */
  if (SAGA_GROW(tl->sent, tl->capsent, tl->nsent + 1, 16) != 0)
    return -1;
  tl->sent[tl->nsent++] = (cli_tl_sent_t){.step = ev->step,
                                          .action = ev->action,
                                          .attempt = ev->attempt,
                                          .at_ms = at_ms};
  return 0;
}

/* Control characters as spaces, so a table row stays one line. */
static void flatten(char *s) {
  for (char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      *p = ' ';
}

/* The operator trail of e into r (who, why), and "by WHO: WHY" (flat)
 * into buf. */
static const char *trail(cli_tl_row_t *r, const sm_event_t *e, char *buf,
                         size_t len) {
  snprintf(r->who, sizeof r->who, "%s", e->who != NULL ? e->who : "");
  snprintf(r->why, sizeof r->why, "%s", e->reason != NULL ? e->reason : "");
  /* A long reason is cut in the table; --json has it whole. */
  if (snprintf(buf, len, "by %s%s%s",
               *r->who ? r->who : "an unnamed operator", *r->why ? ": " : "",
               r->why) >= (int)len && len > 4)
    memcpy(buf + len - 4, "...", 4);
  flatten(buf);
  return buf;
}

/* The reason of the saga's cancel, from its CancelRequested row; NULL
 * when it was not cancelled. */
static const cli_tl_row_t *cancel_row(const cli_timeline_t *tl) {
  for (size_t i = 0; i < tl->n; i++)
    if (!strcmp(tl->rows[i].event,
                sm_event_type_name(SM_EV_CANCEL_REQUESTED)))
      return &tl->rows[i];
  return NULL;
}

int cli_timeline_add(cli_timeline_t *tl, const saga_def_t *def,
                     int64_t version, int64_t at_ms, const sm_event_t *ev,
                     size_t n) {
  if (SAGA_GROW(tl->rows, tl->cap, tl->n + n, 16) != 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    const sm_event_t *e = &ev[i];
    cli_tl_row_t *r = &tl->rows[tl->n];
    memset(r, 0, sizeof *r);
    r->at_ms = at_ms;
    r->version = version;
    r->event = sm_event_type_name((sm_event_type_t)e->type);
    if (r->event == NULL)
      r->event = "?";
    r->action = "";
    r->outcome = "";
    r->duration_ms = -1;
    char t[40], by[sizeof r->detail];
    const cli_tl_row_t *c;
    switch (e->type) {
    case SM_EV_STARTED:
      snprintf(r->detail, sizeof r->detail, "definition %s v%" PRIu32
               ", input %zu bytes", e->def_name != NULL ? e->def_name : "?",
               e->def_version, e->payload_len);
      break;
    case SM_EV_DISPATCHED:
      step_name(def, e->step, r->step, sizeof r->step);
      r->action = action_name(e->action);
      r->attempt = e->attempt;
      if (e->until_ms > 0)
        snprintf(r->detail, sizeof r->detail, "deadline %s",
                 cli_format_time(e->until_ms, t, sizeof t));
      if (add_sent(tl, e, at_ms) != 0)
        return -1;
      break;
    case SM_EV_SUCCEEDED:
      step_name(def, e->step, r->step, sizeof r->step);
      r->action = action_name(e->action);
      r->attempt = e->attempt;
      r->outcome = "SUCCESS";
      if (e->payload_len > 0)
        snprintf(r->detail, sizeof r->detail, "output %zu bytes",
                 e->payload_len);
      break;
    case SM_EV_ATTEMPT_FAILED: {
      step_name(def, e->step, r->step, sizeof r->step);
      r->action = action_name(e->action);
      r->attempt = e->attempt;
      r->outcome = outcome_name(e->outcome);
      const char *why = e->reason != NULL && *e->reason != '\0' ? e->reason
                                                                 : NULL;
      if (e->until_ms > 0)
        snprintf(r->detail, sizeof r->detail, "%s%sretry at %s",
                 why != NULL ? why : "", why != NULL ? "; " : "",
                 cli_format_time(e->until_ms, t, sizeof t));
      else
        snprintf(r->detail, sizeof r->detail, "%s%sfor good",
                 why != NULL ? why : "", why != NULL ? "; " : "");
      break;
    }
    case SM_EV_COMPENSATING:
      step_name(def, e->step, r->step, sizeof r->step);
      snprintf(r->detail, sizeof r->detail, "step failed: undoing");
      break;
    case SM_EV_PARKED:
      step_name(def, e->step, r->step, sizeof r->step);
      snprintf(r->detail, sizeof r->detail,
               "compensation retries spent: waiting for an operator");
      break;
    case SM_EV_OPERATOR_RETRY:
      step_name(def, e->step, r->step, sizeof r->step);
      r->action = action_name(e->action);
      snprintf(r->detail, sizeof r->detail, "operator retry %s; fresh budget",
               trail(r, e, by, sizeof by));
      break;
    case SM_EV_RESOLVED:
      snprintf(r->detail, sizeof r->detail, "resolved %s",
               trail(r, e, by, sizeof by));
      break;
    case SM_EV_CANCEL_REQUESTED:
      snprintf(r->detail, sizeof r->detail,
               "cancelled %s; no step goes forward, what is done is undone",
               trail(r, e, by, sizeof by));
      break;
    case SM_EV_COMPENSATED:
      if ((c = cancel_row(tl)) != NULL) {
        snprintf(r->detail, sizeof r->detail, "cancelled: %s",
                 *c->why ? c->why : "(no reason given)");
        flatten(r->detail);
      }
      break;
    default:
      break;
    }
    if (tl->keep_payloads && e->payload_len > 0 &&
        (e->type == SM_EV_STARTED || e->type == SM_EV_SUCCEEDED ||
         e->type == SM_EV_COMPLETED)) {
      if ((r->payload = malloc(e->payload_len + 1)) == NULL)
        return -1;
      memcpy(r->payload, e->payload, e->payload_len);
      r->payload[e->payload_len] = '\0';
      r->payload_len = e->payload_len;
    }
    if (e->type == SM_EV_SUCCEEDED || e->type == SM_EV_ATTEMPT_FAILED) {
      int64_t sent = take_sent(tl, e);
      if (sent >= 0 && at_ms >= sent)
        r->duration_ms = at_ms - sent;
    }
    tl->n++;
  }
  return 0;
}

void cli_timeline_free(cli_timeline_t *tl) {
  if (tl == NULL)
    return;
  for (size_t i = 0; i < tl->n; i++)
    free(tl->rows[i].payload);
  free(tl->rows);
  free(tl->sent);
  memset(tl, 0, sizeof *tl);
}

void cli_timeline_print(const cli_timeline_t *tl, FILE *out) {
  /* the step and event columns as wide as their longest value (an
   * event's name is up to 15: CancelRequested) */
  int wstep = 4, wevent = 13;
  for (size_t i = 0; i < tl->n; i++) {
    int l = (int)strlen(tl->rows[i].step);
    if (l > wstep)
      wstep = l;
    l = (int)strlen(tl->rows[i].event);
    if (l > wevent)
      wevent = l;
  }
  fprintf(out, "%-24s %4s  %-*s  %-*s  %-10s  %7s  %-9s  %9s  %s\n", "TIME",
          "VER", wevent, "EVENT", wstep, "STEP", "ACTION", "ATTEMPT",
          "OUTCOME", "DURATION", "DETAIL");
  for (size_t i = 0; i < tl->n; i++) {
    const cli_tl_row_t *r = &tl->rows[i];
    /* a row is one line: a participant's reason (AttemptFailed) may hold
     * a newline or a tab (--json has it as it is) */
    char t[40], d[32], a[16], detail[sizeof r->detail];
    if (r->attempt > 0)
      snprintf(a, sizeof a, "%u", r->attempt);
    else
      snprintf(a, sizeof a, "-");
    fprintf(out, "%-24s %4" PRId64 "  %-*s  %-*s  %-10s  %7s  %-9s  %9s  %s\n",
            cli_format_time(r->at_ms, t, sizeof t), r->version, wevent,
            r->event, wstep, *r->step != '\0' ? r->step : "-",
            *r->action != '\0' ? r->action : "-", a,
            *r->outcome != '\0' ? r->outcome : "-",
            cli_format_duration(r->duration_ms, d, sizeof d),
            cli_flat(r->detail, detail, sizeof detail));
    if (r->payload != NULL)
      fprintf(out, "%24s %4s  %s: %.*s\n", "", "",
              strcmp(r->event, "Started") == 0 ? "input" : "output",
              (int)r->payload_len, r->payload);
  }
}

cJSON *cli_payload_json(const char *p, size_t n) {
  if (p == NULL)
    return cJSON_CreateNull();
  /* the whole payload a JSON document, its numbers as written (a cJSON
   * parse took the JSON start of "12abc" for 12 and printed an id past
   * 2^53 from a double); with a \u0000 in a string cJSON would show it
   * cut: taken as text */
  cJSON *v = saga__json_nul_escape_at(p, n) == n ? saga_json_parse_exact(p, n)
                                                  : NULL;
  if (v != NULL)
    return v;
  /* text as a string; bytes that are not UTF-8, or a NUL, which a JSON
   * string cannot carry as they are, as {"$base64": ...} */
  if (saga__utf8_bad_at(p, n) < n || memchr(p, '\0', n) != NULL)
    return saga_json_base64(p, n);
  char *text = malloc(n + 1);
  if (text == NULL)
    return NULL;
  memcpy(text, p, n);
  text[n] = '\0';
  v = cJSON_CreateString(text);
  free(text);
  return v;
}

static int add_str_or_null(cJSON *o, const char *k, const char *v) {
  cJSON *x = v != NULL && *v != '\0' ? cJSON_CreateString(v)
                                     : cJSON_CreateNull();
  return x != NULL && cJSON_AddItemToObject(o, k, x) ? 0 : -1;
}

cJSON *cli_timeline_json(const cli_timeline_t *tl) {
  cJSON *arr = cJSON_CreateArray();
  if (arr == NULL)
    return NULL;
  for (size_t i = 0; i < tl->n; i++) {
    const cli_tl_row_t *r = &tl->rows[i];
    char t[40];
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || !cJSON_AddItemToArray(arr, o))
      goto oom;
    int bad = add_str_or_null(o, "time", cli_format_time(r->at_ms, t,
                                                         sizeof t)) |
              (cJSON_AddNumberToObject(o, "at_ms", (double)r->at_ms) == NULL) |
              (cJSON_AddNumberToObject(o, "version", (double)r->version) ==
               NULL) |
              add_str_or_null(o, "event", r->event) |
              add_str_or_null(o, "step", r->step) |
              add_str_or_null(o, "action", r->action) |
              add_str_or_null(o, "outcome", r->outcome) |
              add_str_or_null(o, "detail", r->detail) |
              add_str_or_null(o, "operator", r->who) |
              add_str_or_null(o, "reason", r->why);
    cJSON *att = r->attempt > 0 ? cJSON_CreateNumber(r->attempt)
                                : cJSON_CreateNull();
    cJSON *dur = r->duration_ms >= 0
                     ? cJSON_CreateNumber((double)r->duration_ms)
                     : cJSON_CreateNull();
    if (att == NULL || !cJSON_AddItemToObject(o, "attempt", att)) {
      cJSON_Delete(att);
      cJSON_Delete(dur);
      goto oom;
    }
    if (dur == NULL || !cJSON_AddItemToObject(o, "duration_ms", dur)) {
      cJSON_Delete(dur);
      goto oom;
    }
    if (tl->keep_payloads) {
      cJSON *pl = cli_payload_json(r->payload, r->payload_len);
      if (pl == NULL || !cJSON_AddItemToObject(o, "payload", pl)) {
        cJSON_Delete(pl);
        goto oom;
      }
    }
    if (bad)
      goto oom;
  }
  return arr;
oom:
  cJSON_Delete(arr);
  return NULL;
}
