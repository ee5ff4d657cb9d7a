/* Test harness for the saga state machine: one saga driven by inputs, a
 * log of every transition's events, and a replay check after each step.
 * Test-only code, included by the machine test programs. */
#ifndef SAGA_MACHINE_HARNESS_H
#define SAGA_MACHINE_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "definition.h"
#include "saga_machine.h"

#define H_MAX_TX 512

/* Definition fixtures shared by the machine tests (JSON with ' for ", as
 * h_def takes it). The step lists: each test writes the name and the
 * defaults it needs before them. */
/* a, b, c compensatable (undo_a, undo_b, undo_c), d pivot. */
#define H_FOUR_STEPS                                                           \
  "'steps':["                                                                  \
  "{'name':'a','topic':'t','compensation':{'action':'undo_a'}},"               \
  "{'name':'b','topic':'t','compensation':{'action':'undo_b'}},"               \
  "{'name':'c','topic':'t','compensation':{'action':'undo_c'}},"               \
  "{'name':'d','topic':'t','kind':'pivot'}]}"
/* a, then group g = b, c, d, then pivot e; every undo is "undo". */
#define H_GROUP_STEPS                                                          \
  "'steps':["                                                                  \
  "{'name':'a','topic':'t','compensation':{'action':'undo'}},"                 \
  "{'name':'b','topic':'t','group':'g','compensation':{'action':'undo'}},"     \
  "{'name':'c','topic':'t','group':'g','compensation':{'action':'undo'}},"     \
  "{'name':'d','topic':'t','group':'g','compensation':{'action':'undo'}},"     \
  "{'name':'e','topic':'t','kind':'pivot'}]}"
/* H_GROUP_STEPS with two attempts a step, no jitter. */
#define H_GROUP                                                                \
  "{'name':'group','version':1,'defaults':{'retry':{'max_attempts':2,"         \
  "'jitter':0},'timeout_ms':1000}," H_GROUP_STEPS

/* Short names for the tests' input lists. */
#define DO SM_DO
#define COMP SM_COMPENSATE
#define OK SM_OUTCOME_SUCCESS
#define FAIL SM_OUTCOME_FAILURE
#define RETRY SM_OUTCOME_RETRYABLE

typedef struct {
  int64_t at;
  size_t n;
  sm_event_t ev[SM_MAX_OUT];
} h_tx_t;

typedef struct {
  saga_def_t *def;
  sm_t *saga;
  sm_rng_t rng;
  int64_t now;
  sm_output_t out;
  size_t ntx;
  h_tx_t *tx; /* H_MAX_TX transitions */
} h_t;

/* Definition from JSON written with ' for ". Aborts on error. */
static inline saga_def_t *h_def(const char *sq) {
  char *j = strdup(sq);
  for (char *p = j; *p; p++)
    if (*p == '\'')
      *p = '"';
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  if (saga_def_parse(j, strlen(j), "test.json", &def, &d) != SAGA_CORE_OK) {
    for (size_t i = 0; i < d.n; i++)
      fprintf(stderr, "%s\n", d.items[i]);
    abort();
  }
  saga_diags_clear(&d);
  free(j);
  return def;
}

static inline sm_t *h_new_saga(const saga_def_t *def, const char *id) {
  sm_t *s = malloc(sm_size(def, strlen(id)));
  if (s == NULL || sm_init(s, id, def) != SAGA_CORE_OK)
    abort();
  return s;
}

static inline h_t *h_new(const char *sq, uint64_t seed) {
  h_t *h = calloc(1, sizeof *h);
  h->def = h_def(sq);
  h->saga = h_new_saga(h->def, "s-1");
  h->rng.state = seed;
  h->now = 1000;
  h->tx = calloc(H_MAX_TX, sizeof *h->tx);
  return h;
}

static inline void h_free(h_t *h) {
  free(h->saga);
  saga_def_free(h->def);
  free(h->tx);
  free(h);
}

/* Rebuild the saga from the logged events alone. */
static inline sm_t *h_replay(const h_t *h) {
  sm_t *r = h_new_saga(h->def, "s-1");
  for (size_t t = 0; t < h->ntx; t++) {
    for (size_t i = 0; i < h->tx[t].n; i++)
      if (sm_apply(r, &h->tx[t].ev[i], h->tx[t].at) != SAGA_CORE_OK)
        abort();
    sm_end_transition(r);
  }
  return r;
}

/* Feed one input; log its events; check replay == live. Returns the
 * verdict. */
static inline int h_in(h_t *h, sm_input_t in) {
  if (sm_step(h->saga, &in, h->now, &h->rng, &h->out) != SAGA_CORE_OK)
    abort();
  if (h->out.n_events > 0) {
    if (h->ntx == H_MAX_TX)
      abort();
    h_tx_t *tx = &h->tx[h->ntx++];
    tx->at = h->now;
    tx->n = h->out.n_events;
    memcpy(tx->ev, h->out.events, tx->n * sizeof tx->ev[0]);
  }
  sm_t *r = h_replay(h);
  if (!sm_equal(r, h->saga)) {
    fprintf(stderr, "replay differs from live state\n");
    abort();
  }
  free(r);
  return h->out.verdict;
}

static inline int h_start(h_t *h) {
  return h_in(h, (sm_input_t){.type = SM_IN_START,
                                .payload = (const uint8_t *)"{\"o\":1}",
                                .payload_len = 7});
}

static inline int h_reply(h_t *h, int step, int action, unsigned attempt,
                          int outcome) {
  return h_in(h, (sm_input_t){.type = SM_IN_REPLY,
                                .step = step,
                                .action = (uint8_t)action,
                                .attempt = attempt,
                                .outcome = (uint8_t)outcome,
                                .payload = (const uint8_t *)"ok",
                                .payload_len = 2,
                                .reason = outcome == SM_OUTCOME_SUCCESS
                                              ? NULL
                                              : "declined"});
}

/* Fire the timer the machine armed for (step, action) at its time. */
static inline int h_fire(h_t *h, int step, int action, int timer) {
  const sm_step_state_t *st = &h->saga->steps[step];
  if (st->timer_ms > h->now)
    h->now = st->timer_ms;
  return h_in(h, (sm_input_t){.type = SM_IN_TIMER,
                                .step = step,
                                .action = (uint8_t)action,
                                .attempt = st->attempt,
                                .timer = (uint8_t)timer});
}

static inline int h_op(h_t *h, int type) {
  return h_in(h, (sm_input_t){.type = (uint8_t)type});
}

/* Number of SEND effects of the last input, and the i-th one. */
static inline size_t h_sends(const h_t *h, sm_effect_t *first) {
  size_t n = 0;
  for (size_t i = 0; i < h->out.n_effects; i++)
    if (h->out.effects[i].type == SM_FX_SEND) {
      if (n == 0 && first != NULL)
        *first = h->out.effects[i];
      n++;
    }
  return n;
}

/* The last input sent exactly one command, this one. */
static inline int h_sent_one(const h_t *h, int step, int action,
                             unsigned attempt) {
  sm_effect_t fx;
  return h_sends(h, &fx) == 1 && fx.step == step && fx.action == action &&
         fx.attempt == attempt;
}

static inline int h_has_notify(const h_t *h, int what) {
  for (size_t i = 0; i < h->out.n_effects; i++)
    if (h->out.effects[i].type == SM_FX_NOTIFY &&
        h->out.effects[i].notify == what)
      return 1;
  return 0;
}

#endif
