/* Sagas for tests, driven through the pure machine (saga_seed.h). */
#include "saga_seed.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_codec.h"

#define SEED_MAX_PENDING 256

static void die(const char *what) {
  fprintf(stderr, "saga_seed: %s\n", what);
  abort();
}

typedef struct {
  sm_effect_t fx[SEED_MAX_PENDING];
  size_t n;
} pending_t;

static void push(pending_t *p, const sm_effect_t *e) {
  if (p->n == SEED_MAX_PENDING)
    die("too many pending effects");
  p->fx[p->n++] = *e;
}

static sm_effect_t take(pending_t *p, size_t i) {
  sm_effect_t e = p->fx[i];
  memmove(&p->fx[i], &p->fx[i + 1], (p->n - i - 1) * sizeof e);
  p->n--;
  return e;
}

static void record(const sm_t *s, const sm_output_t *out, int64_t at,
                   seed_record_fn fn, void *arg) {
  static uint8_t buf[65536];
  size_t len = 0;
  if (out->n_events == 0)
    return;
  /* sagad records the saga's output (its definition's "output" mapping)
   * in the Completed event: SEED_OUTPUT here */
  static sm_event_t ev[SM_MAX_OUT];
  memcpy(ev, out->events, out->n_events * sizeof *ev);
  for (size_t i = 0; i < out->n_events; i++)
    if (ev[i].type == SM_EV_COMPLETED) {
      ev[i].payload = (const uint8_t *)SEED_OUTPUT;
      ev[i].payload_len = strlen(SEED_OUTPUT);
    }
  if (saga_codec_encode(ev, out->n_events, at, buf, sizeof buf, &len) !=
      SAGA_CORE_OK)
    die("encode");
  fn(arg, s, buf, len, saga_codec_record_type(ev, out->n_events), at);
}

const char *seed_step_output;

sm_t *seed_drive(const saga_def_t *def, const char *id, int64_t t0,
                   int64_t reply_ms, const uint8_t *script, size_t n,
                   seed_record_fn fn, void *arg) {
  sm_t *s = malloc(sm_size(def, strlen(id)));
  if (!s || sm_init(s, id, def) != SAGA_CORE_OK)
    die("init");
  static sm_output_t out;
  pending_t sends = {0}, timers = {0};
  int64_t now = t0;
  const char *input = "{\"order\":42,\"ref\":9007199254740993}";
  sm_input_t in = {.type = SM_IN_START,
                     .payload = (const uint8_t *)input,
                     .payload_len = strlen(input)};
  size_t k = 0;
  for (;;) {
    if (sm_step(s, &in, now, NULL, &out) != SAGA_CORE_OK ||
        out.verdict != SM_V_APPLIED)
      die("step not applied");
    record(s, &out, now, fn, arg);
    for (size_t i = 0; i < out.n_effects; i++) {
      if (out.effects[i].type == SM_FX_SEND)
        push(&sends, &out.effects[i]);
      else if (out.effects[i].type == SM_FX_TIMER)
        push(&timers, &out.effects[i]);
    }
    if (sends.n > 0 && k < n) {
      sm_effect_t c = take(&sends, 0);
      uint8_t what = script[k++];
      if (what == SEED_TIMEOUT) {
        size_t i = 0;
        while (i < timers.n &&
               !(timers.fx[i].timer == SM_TIMER_DEADLINE &&
                 timers.fx[i].step == c.step &&
                 timers.fx[i].action == c.action &&
                 timers.fx[i].attempt == c.attempt))
          i++;
        if (i == timers.n)
          die("no deadline for the command");
        sm_effect_t t = take(&timers, i);
        now = t.at_ms > now ? t.at_ms : now;
        in = (sm_input_t){.type = SM_IN_TIMER, .step = t.step,
                            .action = t.action, .attempt = t.attempt,
                            .timer = t.timer};
      } else {
        now += reply_ms;
        in = (sm_input_t){.type = SM_IN_REPLY, .step = c.step,
                            .action = c.action, .attempt = c.attempt,
                            .outcome = what,
                            .payload = what == SM_OUTCOME_SUCCESS &&
                                               c.action == SM_DO &&
                                               seed_step_output
                                           ? (const uint8_t *)
                                                 seed_step_output
                                           : NULL,
                            .payload_len = what == SM_OUTCOME_SUCCESS &&
                                                   c.action == SM_DO &&
                                                   seed_step_output
                                               ? strlen(seed_step_output)
                                               : 0,
                            .reason = what == SM_OUTCOME_SUCCESS
                                          ? NULL
                                          : "declined"};
      }
      continue;
    }
    /* No reply to give: fire the next backoff timer, if any. */
    size_t b = 0;
    while (b < timers.n && timers.fx[b].timer != SM_TIMER_BACKOFF)
      b++;
    if (sends.n > 0 || b == timers.n)
      break;
    sm_effect_t t = take(&timers, b);
    now = t.at_ms > now ? t.at_ms : now;
    in = (sm_input_t){.type = SM_IN_TIMER, .step = t.step,
                        .action = t.action, .attempt = t.attempt,
                        .timer = t.timer};
  }
  return s;
}

void seed_pg_append(void *store, const sm_t *s, const uint8_t *rec,
                    size_t len, const char *type, int64_t at_ms) {
  (void)at_ms;
  char stream[96];
  snprintf(stream, sizeof stream, "saga-%s", s->id);
  es_event_t ev = {.type = type, .data = rec, .data_len = len};
  if (es_append(store, stream, (int64_t)s->version - 1, &ev, 1, NULL) != 0)
    die(es_store_last_error(store));
}

static const char *waiting_step(const sm_t *s) {
  for (uint32_t i = 0; i < s->nsteps; i++)
    switch (s->steps[i].status) {
    case SM_STEP_RUNNING:
    case SM_STEP_BACKOFF:
    case SM_STEP_COMP_RUNNING:
    case SM_STEP_COMP_BACKOFF:
    case SM_STEP_COMP_FAILED:
      return s->def->steps[i].name;
    default:
      break;
    }
  return NULL;
}

void seed_pg_index(PGconn *c, const sm_t *s) {
  char ver[24], dv[24], started[32], updated[32], deadline[32], stuck[32];
  snprintf(ver, sizeof ver, "%" PRIu32, s->version);
  snprintf(dv, sizeof dv, "%" PRIu32, s->def->version);
  snprintf(started, sizeof started, "%.3f", (double)s->started_ms / 1000.0);
  snprintf(updated, sizeof updated, "%.3f", (double)s->updated_ms / 1000.0);
  int64_t next = sm_next_timer(s);
  snprintf(deadline, sizeof deadline, "%.3f", (double)next / 1000.0);
  const char *p[8] = {s->id, s->def->name, dv,
                      sm_status_name((sm_status_t)s->status), ver,
                      started, updated, next > 0 ? deadline : NULL};
  const char *step = waiting_step(s);
  /* stuck_at as the coordinator writes it: 0 = 'infinity' */
  int64_t sa = sm_stuck_at(s);
  if (sa)
    snprintf(stuck, sizeof stuck, "%.3f", (double)sa / 1000.0);
  else
    snprintf(stuck, sizeof stuck, "infinity");
  const char *params[10] = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
                            step, stuck};
  PGresult *r = PQexecParams(
      c,
      "INSERT INTO saga_index (saga_id, saga_type, definition_version, "
      "status, partition, version, started_at, updated_at, "
      "next_deadline_at, current_step, stuck_at) VALUES ($1, $2, $3, $4, 0, "
      "$5, to_timestamp($6::float8), to_timestamp($7::float8), "
      "to_timestamp($8::float8), $9, to_timestamp($10::float8))",
      10, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    die(PQerrorMessage(c));
  PQclear(r);
}

void seed_pg_exec(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK)
    die(PQerrorMessage(c));
  PQclear(r);
}

int64_t seed_pg_now_ms(PGconn *c) {
  PGresult *r = PQexec(c, "SELECT (extract(epoch FROM now()) * 1000)::bigint");
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    die(PQerrorMessage(c));
  int64_t now = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return now;
}

saga_def_t *seed_def(const char *json) {
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  if (saga_def_parse(json, strlen(json), "seed.json", &def, &d) !=
      SAGA_CORE_OK) {
    for (size_t i = 0; i < d.n; i++)
      fprintf(stderr, "%s\n", d.items[i]);
    die("definition");
  }
  saga_diags_clear(&d);
  return def;
}
