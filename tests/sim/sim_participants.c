/* The simulated world around the coordinator: the starter (StartSaga, now
 * and then twice, and now and then a malformed message), participants that
 * apply each step's effect at most once (a ledger per idempotency key for
 * final answers, and per saga step for the business effect, with a
 * tombstone once compensated), and that fail, answer RETRYABLE, never
 * answer, answer twice or answer late; and an operator who retries parked
 * sagas once the faults stop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga.pb-c.h"
#include "sim.h"

/* protobuf-c structs hold char * even for what they only read. */
#define MUT(s) ((char *)(uintptr_t)(const void *)(s))

static void put(sim_t *s, int i, int kind, const ProtobufCMessage *pb,
                saga__hdr_copy_t *extra_type, int64_t delay) {
  void *buf = NULL;
  size_t len = 0;
  saga__hdr_copy_t *h = extra_type;
  if (!h) {
    if (sim_wire_encode(pb, s->sagas[i].id, &buf, &len, &h) != 0)
      abort();
  } else {
    len = protobuf_c_message_get_packed_size(pb);
    buf = malloc(len ? len : 1);
    if (!buf)
      abort();
    protobuf_c_message_pack(pb, buf);
  }
  if (s->faults_on && sim_chance(&s->rng, 50)) {
    sim_fault(s, SIM_F_INBOX_DELAY);
    delay += sim_range(&s->rng, 20, 400);
  }
  sim_inbox_put(s, s->sagas[i].partition, kind, i, h, buf, len, delay);
}

/* One seed in seven (those 5 modulo 7; of the pinned seeds only 439, whose
 * pin was found with the cancels) has an operator who cancels about a third of its
 * sagas, from 0 to 500 ms after their start: before the pivot, during it,
 * after it, while compensating, after the end, sometimes twice. Drawn from
 * a generator of its own, so the faults of the seed stay the same. */
static void maybe_cancel(sim_t *s, int i) {
  if (s->seed % 7 != 5 || !sim_chance(&s->cancel_rng, 330))
    return;
  int times = sim_chance(&s->cancel_rng, 200) ? 2 : 1;
  for (int k = 0; k < times; k++) {
    Saga__V1__CancelSaga m;
    saga__v1__cancel_saga__init(&m);
    m.saga_id = s->sagas[i].id;
    m.reason = MUT("simulated cancel");
    m.operator_ = MUT("sim");
    m.requested_at_ms = s->now;
    void *buf = NULL;
    size_t len = 0;
    saga__hdr_copy_t *h = NULL;
    if (sim_wire_encode(&m.base, s->sagas[i].id, &buf, &len, &h) != 0)
      abort();
    sim_fault(s, SIM_F_CANCEL);
    sim_log(s, "operator: cancel %s", s->sagas[i].id);
    sim_inbox_put(s, s->sagas[i].partition, SIM_IN_OPERATOR, i, h, buf, len,
                  sim_range(&s->cancel_rng, 0, 500));
  }
}

void sim_start_saga(sim_t *s, int i, int dup) {
  sim_saga_t *sg = &s->sagas[i];
  Saga__V1__StartSaga m;
  saga__v1__start_saga__init(&m);
  char input[64];
  snprintf(input, sizeof input, "{\"n\":%d}", i);
  m.saga_id = sg->id;
  m.saga_type = sg->def->name;
  m.input.data = (uint8_t *)input;
  m.input.len = strlen(input);
  m.requested_at_ms = s->now;
  sg->started = 1;
  sim_log(s, "starter: %s %s%s", sg->def->name, sg->id, dup ? " (again)" : "");
  put(s, i, SIM_IN_START, &m.base, NULL, sim_range(&s->rng, 0, 3));
  if (!dup)
    maybe_cancel(s, i);
  if (s->faults_on && sim_chance(&s->rng, 20)) {
    sim_fault(s, SIM_F_GARBAGE);
    size_t n = (size_t)sim_range(&s->rng, 1, 40);
    uint8_t *junk = malloc(n);
    if (!junk)
      abort();
    for (size_t k = 0; k < n; k++)
      junk[k] = (uint8_t)sim_u64(&s->rng);
    sim_inbox_put(s, sg->partition, SIM_IN_GARBAGE, -1, NULL, junk, n, 0);
  }
}

/* The final answer already given for a key, or 0. */
static int key_outcome(sim_t *s, const char *key) {
  for (size_t i = 0; i < s->nkeys; i++)
    if (!strcmp(s->keys[i].key, key))
      return s->keys[i].outcome;
  return 0;
}

static void key_remember(sim_t *s, const char *key, int outcome) {
  if (s->nkeys == s->ckeys) {
    size_t n = s->ckeys ? s->ckeys * 2 : 128;
    struct sim_key *v = realloc(s->keys, n * sizeof *v);
    if (!v)
      abort();
    s->keys = v;
    s->ckeys = n;
  }
  snprintf(s->keys[s->nkeys].key, sizeof s->keys[0].key, "%s", key);
  s->keys[s->nkeys++].outcome = outcome;
}

static void reply(sim_t *s, const sim_cmd_t *c, int outcome, int64_t delay) {
  sim_saga_t *sg = &s->sagas[c->saga];
  Saga__V1__Reply m;
  saga__v1__reply__init(&m);
  m.saga_id = sg->id;
  m.step = sg->def->steps[c->step].name;
  m.action = c->action ? SAGA__V1__ACTION__ACTION_COMPENSATE
                       : SAGA__V1__ACTION__ACTION_DO;
  m.attempt = c->attempt;
  m.idempotency_key = MUT(c->key);
  m.outcome = (Saga__V1__Outcome)outcome;
  m.reason = MUT(outcome == SM_OUTCOME_SUCCESS ? "" : "simulated");
  /* A DO's output names its key, so the outputs that flow on (and the
   * checks of invariant 9) tell attempts apart; every third is not JSON,
   * which the coordinator carries as {"$base64": ...}. */
  char out[SM_ID_MAX + 96];
  if (outcome == SM_OUTCOME_SUCCESS && !c->action) {
    int n = c->attempt % 3 == 0
                ? snprintf(out, sizeof out, "raw:%s", c->key)
                : snprintf(out, sizeof out, "{\"ref\":\"%s\"}", c->key);
    m.payload.data = (uint8_t *)out;
    m.payload.len = (size_t)n;
  }
  s->replies++;
  put(s, c->saga, SIM_IN_REPLY, &m.base, NULL, delay);
}

/* Apply the command's business effect (at most once) and say how it
 * ended: SUCCESS or FAILURE. */
static int apply(sim_t *s, const sim_cmd_t *c) {
  sim_effect_t *fx = &s->sagas[c->saga].fx[c->step];
  if (c->action) { /* COMPENSATE */
    fx->comp_seen = 1;
    if (fx->do_applied && !fx->comp_applied) {
      fx->comp_applied = 1;
      fx->comp_seq = ++s->effect_seq;
    } else if (!fx->do_applied) {
      fx->comp_noop = 1;
    }
    return SM_OUTCOME_SUCCESS;
  }
  if (fx->do_applied)
    return SM_OUTCOME_SUCCESS;
  if (fx->comp_seen || fx->outcome == SM_OUTCOME_FAILURE)
    return SM_OUTCOME_FAILURE; /* refused: compensated, or by business */
  fx->do_applied = 1;
  fx->do_seq = ++s->effect_seq;
  return SM_OUTCOME_SUCCESS;
}

void sim_command(sim_t *s, sim_ev_t *ev) {
  sim_cmd_t *c = ev->p;
  sim_node_t *n = &s->nodes[c->node];
  if (c->fragile && n->gen != c->gen) {
    sim_fault(s, SIM_F_LOST_ON_CRASH);
    free(c);
    return;
  }
  int64_t delay = sim_range(&s->rng, 1, 10);
  int known = key_outcome(s, c->key);
  if (known) { /* the same key again: the same answer, no new effect */
    reply(s, c, known, delay);
    free(c);
    return;
  }
  int roll = s->faults_on ? (int)sim_range(&s->rng, 0, 999) : 1000;
  if (roll < 30) {
    sim_fault(s, SIM_F_REPLY_LOST);
  } else if (roll < 80 &&
             (c->action || !s->sagas[c->saga].fx[c->step].do_applied)) {
    /* A RETRYABLE answer is an answer (docs/protocol.md, "What a
     * participant must do", 3-4): recorded under the key, so a redelivered
     * copy of this command answers RETRYABLE again and never runs the
     * step. Not recording it let a duplicate apply an effect the
     * coordinator had already written off (seed 678). */
    sim_fault(s, SIM_F_REPLY_RETRYABLE);
    key_remember(s, c->key, SM_OUTCOME_RETRYABLE);
    reply(s, c, SM_OUTCOME_RETRYABLE, delay);
  } else {
    int out = apply(s, c);
    key_remember(s, c->key, out);
    if (roll < 110) {
      sim_fault(s, SIM_F_REPLY_LOST_APPLIED);
    } else if (roll < 140) {
      sim_fault(s, SIM_F_REPLY_LATE);
      int64_t late = c->deadline - s->now;
      reply(s, c, out, (late > 0 ? late : 0) + sim_range(&s->rng, 1, 200));
    } else if (roll < 170) {
      sim_fault(s, SIM_F_REPLY_TWICE);
      reply(s, c, out, delay);
      reply(s, c, out, delay + sim_range(&s->rng, 0, 300));
    } else {
      reply(s, c, out, delay);
    }
  }
  free(c);
}

void sim_operator_tick(sim_t *s) {
  if (s->faults_on)
    return;
  for (int i = 0; i < s->nsagas; i++) {
    sim_stream_t *st = sim_store_find(s, s->sagas[i].id);
    if (!st || !st->shadow ||
        st->shadow->status != SM_COMPENSATION_FAILED)
      continue;
    Saga__V1__OperatorAction m;
    saga__v1__operator_action__init(&m);
    m.saga_id = s->sagas[i].id;
    m.action = SAGA__V1__OPERATOR_ACTION_KIND__OPERATOR_ACTION_RETRY;
    m.reason = MUT("simulated operator");
    m.operator_ = MUT("sim");
    saga__hdr_copy_t *h = sim_wire_operator_headers();
    if (!h)
      abort();
    sim_fault(s, SIM_F_OPERATOR_RETRY);
    s->sagas[i].operator_sent++;
    sim_log(s, "operator: retry %s", s->sagas[i].id);
    put(s, i, SIM_IN_OPERATOR, &m.base, h, 1);
  }
}

void sim_participants_free(sim_t *s) {
  free(s->keys);
  s->keys = NULL;
  s->nkeys = s->ckeys = 0;
}
