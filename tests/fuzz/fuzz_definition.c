/* Fuzz target: saga_def_parse on arbitrary bytes. A definition it accepts
 * must keep the promises of definition.h (bounded steps, unique names, a
 * pivot that is a pivot, sane blocks) and must drive the state machine
 * without a crash: every accepted definition runs one saga whose replies
 * all succeed and one whose replies all fail. */
#include <string.h>

#include "definition.h"
#include "fuzz.h"
#include "saga_machine.h"

static void check_def(const saga_def_t *def) {
  FUZZ_ASSERT(def->name && def->name[0]);
  FUZZ_ASSERT(def->version >= 1);
  FUZZ_ASSERT(def->nsteps >= 1 && def->nsteps <= SAGA_DEF_MAX_STEPS);
  FUZZ_ASSERT(def->pivot >= -1 && def->pivot < (int32_t)def->nsteps);
  if (def->pivot >= 0)
    FUZZ_ASSERT(def->steps[def->pivot].kind == SAGA_STEP_PIVOT);
  for (uint32_t i = 0; i < def->nsteps; i++) {
    const saga_step_def_t *s = &def->steps[i];
    FUZZ_ASSERT(s->name && s->topic && s->action);
    FUZZ_ASSERT(strlen(s->name) <= SAGA_DEF_MAX_NAME);
    FUZZ_ASSERT(strlen(s->topic) <= SAGA_DEF_MAX_TOPIC);
    FUZZ_ASSERT(saga_def_step_index(def, s->name) == (int)i);
    FUZZ_ASSERT(s->timeout_ms >= SAGA_DEF_TIMEOUT_MIN_MS &&
                s->timeout_ms <= SAGA_DEF_TIMEOUT_MAX_MS);
    uint32_t start = saga_def_block_start(def, i);
    uint32_t len = saga_def_block_len(def, start);
    FUZZ_ASSERT(start <= i && len >= 1 && i < start + len);
    FUZZ_ASSERT(start + len <= def->nsteps);
    FUZZ_ASSERT(saga_step_kind_name(s->kind) != NULL);
  }
}

/* Start a saga and answer every command it sends with `outcome`, firing
 * backoff timers, until it is terminal, parked or 4096 inputs were fed. */
static void drive(const saga_def_t *def, uint8_t outcome) {
  sm_t *s = malloc(sm_size(def, strlen("fuzz-1")));
  FUZZ_ASSERT(s != NULL);
  FUZZ_ASSERT(sm_init(s, "fuzz-1", def) == SAGA_CORE_OK);
  sm_rng_t rng = {.state = 42};
  sm_output_t *out = malloc(sizeof *out);
  FUZZ_ASSERT(out != NULL);
  int64_t now = 1000;
  sm_input_t in = {.type = SM_IN_START};
  for (int n = 0; n < 4096; n++) {
    FUZZ_ASSERT(sm_step(s, &in, now, &rng, out) == SAGA_CORE_OK);
    if (sm_is_terminal(s) || s->status == SM_COMPENSATION_FAILED)
      break;
    /* Answer the first command, else fire the first timer. */
    const sm_effect_t *next = NULL;
    for (size_t i = 0; i < out->n_effects && !next; i++)
      if (out->effects[i].type == SM_FX_SEND)
        next = &out->effects[i];
    for (size_t i = 0; i < out->n_effects && !next; i++)
      if (out->effects[i].type == SM_FX_TIMER &&
          out->effects[i].timer == SM_TIMER_BACKOFF)
        next = &out->effects[i];
    if (!next) {
      /* Nothing to answer in this output: re-derive from the saga. */
      sm_resume(s, out);
      for (size_t i = 0; i < out->n_effects && !next; i++)
        if (out->effects[i].type == SM_FX_SEND ||
            out->effects[i].type == SM_FX_TIMER)
          next = &out->effects[i];
      if (!next)
        break;
    }
    sm_effect_t e = *next;
    memset(&in, 0, sizeof in);
    in.step = e.step;
    in.action = e.action;
    in.attempt = e.attempt;
    if (e.type == SM_FX_SEND) {
      in.type = SM_IN_REPLY;
      /* Compensations always succeed, so a failing saga still ends. */
      in.outcome = e.action == SM_COMPENSATE ? SM_OUTCOME_SUCCESS
                                               : outcome;
      in.reason = in.outcome == SM_OUTCOME_SUCCESS ? NULL : "declined";
    } else {
      in.type = SM_IN_TIMER;
      in.timer = e.timer;
      if (e.at_ms > now)
        now = e.at_ms;
    }
    now++;
  }
  (void)sm_next_timer(s);
  (void)sm_is_stuck(s, now);
  free(out);
  free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  saga_def_t *def = NULL;
  saga_diags_t diags = {0};
  int rc = saga_def_parse((const char *)data, size, "fuzz.json", &def,
                          &diags);
  if (rc == SAGA_CORE_OK) {
    FUZZ_ASSERT(def != NULL);
    check_def(def);
    drive(def, SM_OUTCOME_SUCCESS);
    drive(def, SM_OUTCOME_FAILURE);
    saga_def_free(def);
  } else {
    FUZZ_ASSERT(rc == SAGA_CORE_EDEF || rc == SAGA_CORE_ENOMEM ||
                rc == SAGA_CORE_EINVAL);
    FUZZ_ASSERT(rc != SAGA_CORE_EDEF || diags.n > 0);
    for (size_t i = 0; i < diags.n; i++)
      FUZZ_ASSERT(diags.items[i] && diags.items[i][0]);
  }
  saga_diags_clear(&diags);
  return 0;
}
