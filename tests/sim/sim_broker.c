/* The simulated broker: the inbox topic as SIM_PARTS partitions keyed by
 * saga id, one consumer group of the coordinator instances (owner and
 * generation per partition, positions, in-order offset commits of acked
 * inputs, redelivery of everything after the committed offset on a crash
 * or a rebalance), and the producer side (commands to participants,
 * notifications, dead letters) with refused produces, failed deliveries
 * and messages lost with a crashed producer. Order is kept within a
 * partition and only there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga.pb-c.h"
#include "sim.h"

int32_t sim_partition_of(const char *id) {
  uint32_t h = 2166136261u;
  for (; *id; id++)
    h = (h ^ (uint8_t)*id) * 16777619u;
  return (int32_t)(h % SIM_PARTS);
}

static void schedule_fetch(sim_t *s, int32_t p, int64_t at) {
  sim_part_t *P = &s->parts[p];
  if (P->fetch_pending)
    return;
  P->fetch_pending = 1;
  sim_schedule(s, at, EV_FETCH, -1, p, NULL);
}

void sim_inbox_put(sim_t *s, int32_t p, int kind, int saga,
                   saga__hdr_copy_t *hdrs, void *value, size_t len,
                   int64_t delay) {
  sim_part_t *P = &s->parts[p];
  if (P->n == P->cap) {
    size_t k = P->cap ? P->cap * 2 : 64;
    sim_inmsg_t *v = realloc(P->m, k * sizeof *v);
    uint8_t *a = realloc(P->acked, k);
    if (!v || !a)
      abort();
    memset(a + P->cap, 0, k - P->cap);
    P->m = v;
    P->acked = a;
    P->cap = k;
  }
  int64_t vis = s->now + delay;
  if (P->n && P->m[P->n - 1].visible_at > vis)
    vis = P->m[P->n - 1].visible_at; /* in order within a partition */
  P->m[P->n++] = (sim_inmsg_t){.value = value,
                               .len = len,
                               .hdrs = hdrs,
                               .visible_at = vis,
                               .kind = kind,
                               .saga = saga};
  if ((int64_t)P->n - 1 == P->pos)
    schedule_fetch(s, p, vis);
}

static void *token_of(uint32_t gen, int32_t p, int64_t off) {
  return (void *)(uintptr_t)(((uint64_t)(gen & 0xffffu) << 48) |
                             ((uint64_t)p << 40) | (uint64_t)(off + 1));
}

void sim_fetch(sim_t *s, int32_t p) {
  sim_part_t *P = &s->parts[p];
  P->fetch_pending = 0;
  sim_node_t *n = &s->nodes[P->owner];
  if (!n->engine)
    return;
  int k = (int)sim_range(&s->rng, 1, 6);
  while (k-- > 0 && P->pos < (int64_t)P->n &&
         P->m[P->pos].visible_at <= s->now) {
    sim_inmsg_t *m = &P->m[P->pos];
    char key[16];
    snprintf(key, sizeof key, "%d", m->saga);
    sagad_inmsg_t in = {.topic = "sim.inbox",
                        .partition = p,
                        .offset = P->pos,
                        .key = key,
                        .key_len = strlen(key),
                        .value = m->value,
                        .value_len = m->len,
                        .hdrs = saga__hdr_copy_view(m->hdrs),
                        .ack = token_of(P->gen, p, P->pos)};
    sim_log(s, "node%d takes inbox %d/%lld (%s saga %d)", n->idx, (int)p,
            (long long)P->pos,
            m->kind == SIM_IN_START   ? "start"
            : m->kind == SIM_IN_REPLY ? "reply"
            : m->kind == SIM_IN_OPERATOR ? "operator"
                                         : "garbage",
            m->saga);
    P->pos++;
    sagad_engine_on_message(n->engine, &in);
  }
  if (P->pos < (int64_t)P->n) {
    int64_t at = P->m[P->pos].visible_at;
    schedule_fetch(s, p, at > s->now ? at : s->now + 1);
  }
}

void sim_reassign(sim_t *s, int32_t p, int to) {
  sim_part_t *P = &s->parts[p];
  P->owner = to;
  P->gen++;
  P->pos = P->committed;
  if (P->acked) /* none before the first message */
    memset(P->acked, 0, P->cap);
  if (P->pos < (int64_t)P->n)
    schedule_fetch(s, p, s->now + 1);
}

static void b_ack(void *self, void *ack) {
  sim_node_t *n = self;
  sim_t *s = n->sim;
  uint64_t t = (uint64_t)(uintptr_t)ack;
  uint32_t gen = (uint32_t)(t >> 48);
  int32_t p = (int32_t)((t >> 40) & 0xff);
  int64_t off = (int64_t)(t & 0xffffffffffULL) - 1;
  sim_part_t *P = &s->parts[p];
  if (gen != (P->gen & 0xffffu) || P->owner != n->idx || off < 0 ||
      off >= (int64_t)P->n)
    return; /* a fenced commit: the group moved on */
  sim_check_ack(s, &P->m[off]);
  P->acked[off] = 1;
}

/* A released input commits nothing: the partition's next owner reads it
 * again from the committed position (sim_reassign). */
static void b_release(void *self, void *ack) { (void)self, (void)ack; }

void sim_commit_tick(sim_t *s) {
  for (int p = 0; p < SIM_PARTS; p++) {
    sim_part_t *P = &s->parts[p];
    while (P->committed < (int64_t)P->n && P->acked[P->committed])
      P->committed++;
  }
}

static int saga_index_of(sim_t *s, const char *id) {
  for (int i = 0; i < s->nsagas; i++)
    if (!strcmp(s->sagas[i].id, id))
      return i;
  return -1;
}

static void take_command(sim_node_t *n, const void *value, size_t len,
                         int deliver) {
  sim_t *s = n->sim;
  Saga__V1__Command *c = saga__v1__command__unpack(NULL, len, value);
  if (!c) {
    sim_violation(s, "node%d produced a command that does not decode",
                  n->idx);
    return;
  }
  sim_check_command(s, c->saga_id, c->step,
                    c->action == SAGA__V1__ACTION__ACTION_COMPENSATE,
                    c->attempt, c->payload.data, c->payload.len);
  int i = saga_index_of(s, c->saga_id);
  int step = i >= 0 ? saga_def_step_index(s->sagas[i].def, c->step) : -1;
  if (step < 0) {
    sim_violation(s, "command for an unknown saga or step %s/%s", c->saga_id,
                  c->step);
    goto out;
  }
  s->commands++;
  sim_log(s, "node%d sends %s%s", n->idx, c->idempotency_key,
          deliver ? "" : " (produce fails)");
  if (!deliver)
    goto out;
  int copies = 1;
  if (s->faults_on && sim_chance(&s->rng, 30)) {
    sim_fault(s, SIM_F_CMD_DUP);
    copies = 2;
  }
  int fragile = sim_chance(&s->rng, 500);
  for (int k = 0; k < copies; k++) {
    sim_cmd_t *cmd = calloc(1, sizeof *cmd);
    if (!cmd)
      abort();
    *cmd = (sim_cmd_t){.saga = i,
                       .step = step,
                       .action = c->action == SAGA__V1__ACTION__ACTION_COMPENSATE,
                       .attempt = c->attempt,
                       .deadline = c->deadline_ms,
                       .node = n->idx,
                       .gen = n->gen,
                       .fragile = fragile};
    snprintf(cmd->key, sizeof cmd->key, "%s", c->idempotency_key);
    sim_schedule(s, s->now + sim_range(&s->rng, 1, 8) + k * 30, EV_COMMAND,
                 -1, 0, cmd);
  }
out:
  saga__v1__command__free_unpacked(c, NULL);
}

/* Returns (saga index + 1) << 32 | kind << 48, the landing's tag. */
static int64_t take_notification(sim_node_t *n, const char *topic,
                                 const void *value, size_t len) {
  sim_t *s = n->sim;
  Saga__V1__Notification *m =
      saga__v1__notification__unpack(NULL, len, value);
  if (!m) {
    sim_violation(s, "node%d produced a notification that does not decode",
                  n->idx);
    return 0;
  }
  /* Progress notes go to the progress topic, or nowhere without one;
   * everything else to the notifications topic (docs/protocol.md). */
  int progress =
      m->kind == SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_STARTED ||
      m->kind == SAGA__V1__NOTIFICATION_KIND__NOTIFICATION_STEP_DONE;
  const char *want = progress ? s->progress_topic : "sim.notifications";
  if (!want || strcmp(topic, want))
    sim_violation(s, "node%d produced notification %d of saga %s to %s "
                  "(want %s)",
                  n->idx, (int)m->kind, m->saga_id, topic,
                  want ? want : "none: no progress topic");
  sim_check_notification(s, m->saga_id, (int)m->kind, m->step,
                         (int)m->action, m->payload.data, m->payload.len);
  int64_t tag = ((int64_t)(saga_index_of(s, m->saga_id) + 1) << 32) |
                ((int64_t)m->kind << 48);
  saga__v1__notification__free_unpacked(m, NULL);
  return tag;
}

static int b_produce(void *self, const char *topic, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const saga__hdrs_t *hdrs, void *token) {
  (void)key;
  (void)hdrs; /* only borrowed: nothing keeps them */
  (void)key_len;
  sim_node_t *n = self;
  sim_t *s = n->sim;
  int is_dlq = !strcmp(topic, "sim.dlq");
  int is_notify = !strcmp(topic, "sim.notifications") ||
                  !strcmp(topic, "sim.progress");
  /* What the engine hands the producer must already be allowed to leave
   * the process: checked before any fault decides its fate. */
  int64_t tag = is_notify ? take_notification(n, topic, value, value_len) : 0;
  if (s->faults_on && sim_chance(&s->rng, 15)) {
    sim_fault(s, SIM_F_PRODUCE_FAIL);
    if (!is_dlq && !is_notify)
      take_command(n, value, value_len, 0);
    return -1;
  }
  int err = SAGAD_DELIVERY_OK;
  if (s->faults_on && sim_chance(&s->rng, 15)) {
    sim_fault(s, SIM_F_DELIVERY_FAIL);
    err = SAGAD_DELIVERY_RETRIABLE;
  }
  if (!is_dlq && !is_notify)
    take_command(n, value, value_len, !err);
  if (is_notify) {
    /* Lands after a fixed delay (no draw: the seeds' streams stay as they
     * were), or is lost with a producer that crashes first. */
    sim_schedule(s, s->now + 3, EV_NOTIFY, n->idx,
                 tag | (int64_t)(uint32_t)err, token);
    return 0;
  }
  if (token && !is_dlq)
    /* a command's report: after a fixed delay, no draw (the seeds'
     * streams stay as they were before commands carried a token) */
    sim_schedule(s, s->now + 3, EV_DELIVERY, n->idx, err, token);
  else if (token)
    sim_schedule(s, s->now + sim_range(&s->rng, 1, 5), EV_DELIVERY, n->idx,
                 err, token);
  return 0;
}

void sim_delivery(sim_t *s, sim_ev_t *ev) {
  /* The token is the engine's; a restarted instance's engine frees it
   * the same way (its ack is fenced by the generation). */
  sim_node_t *n = &s->nodes[ev->node];
  if (n->engine)
    /* a failed command was not taken by any participant (b_produce) */
    sagad_engine_on_delivery(n->engine, ev->p, (int)ev->a,
                             ev->a == SAGAD_DELIVERY_OK ? SAGAD_PERSISTED_YES
                                                        : SAGAD_PERSISTED_NO);
  else
    sagad_engine_forget_token(ev->p); /* no instance to report it to */
}

void sim_notify_lands(sim_t *s, sim_ev_t *ev) {
  sim_node_t *n = &s->nodes[ev->node];
  int err = (int)(int32_t)(uint32_t)(ev->a & 0xffffffff);
  int saga = (int)((ev->a >> 32) & 0xffff) - 1;
  int kind = (int)(ev->a >> 48);
  if (n->gen != ev->gen || !n->engine) {
    sim_fault(s, SIM_F_LOST_ON_CRASH);
    sim_log(s, "notification %d of saga %d lost with node%d's producer",
            kind, saga, ev->node);
    sagad_engine_forget_token(ev->p);
    return;
  }
  if (!err && saga >= 0 &&
      (kind == SM_NOTIFY_COMPLETED || kind == SM_NOTIFY_COMPENSATED))
    s->sagas[saga].final_landed++;
  if (ev->p)
    sagad_engine_on_delivery(n->engine, ev->p, err,
                             err == SAGAD_DELIVERY_OK ? SAGAD_PERSISTED_YES
                                                      : SAGAD_PERSISTED_NO);
}

void sim_broker_port(sim_node_t *n, sagad_broker_port_t *port) {
  *port = (sagad_broker_port_t){
      .self = n, .produce = b_produce, .ack = b_ack, .release = b_release};
}

void sim_broker_free(sim_t *s) {
  for (int p = 0; p < SIM_PARTS; p++) {
    sim_part_t *P = &s->parts[p];
    for (size_t i = 0; i < P->n; i++) {
      free(P->m[i].value);
      free(P->m[i].hdrs);
    }
    free(P->m);
    free(P->acked);
    memset(P, 0, sizeof *P);
  }
}
