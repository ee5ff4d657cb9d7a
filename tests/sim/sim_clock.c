/* Virtual time for the simulator: one min-heap of scheduled world events
 * ordered by (time, sequence), and the engine's clock port on top of it.
 * Nothing here reads a real clock. */
#include <stdlib.h>

#include "sim.h"

static int before(const sim_ev_t *a, const sim_ev_t *b) {
  return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void swap(sim_ev_t *a, sim_ev_t *b) {
  sim_ev_t t = *a;
  *a = *b;
  *b = t;
}

void sim_schedule(sim_t *s, int64_t at, int kind, int node, int64_t a,
                  void *p) {
  if (s->nheap == s->cheap) {
    size_t n = s->cheap ? s->cheap * 2 : 256;
    sim_ev_t *h = realloc(s->heap, n * sizeof *h);
    if (!h)
      abort();
    s->heap = h;
    s->cheap = n;
  }
  size_t i = s->nheap++;
  s->heap[i] = (sim_ev_t){.at = at < s->now ? s->now : at,
                          .seq = s->seq++,
                          .kind = kind,
                          .node = node,
                          .gen = node >= 0 ? s->nodes[node].gen : 0,
                          .a = a,
                          .p = p};
  while (i && before(&s->heap[i], &s->heap[(i - 1) / 2])) {
    swap(&s->heap[i], &s->heap[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
}

int sim_pop(sim_t *s, sim_ev_t *out) {
  if (!s->nheap)
    return 0;
  *out = s->heap[0];
  s->heap[0] = s->heap[--s->nheap];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < s->nheap && before(&s->heap[l], &s->heap[m]))
      m = l;
    if (r < s->nheap && before(&s->heap[r], &s->heap[m]))
      m = r;
    if (m == i)
      break;
    swap(&s->heap[m], &s->heap[i]);
    i = m;
  }
  return 1;
}

static int64_t c_now(void *self) { return ((sim_node_t *)self)->sim->now; }

static void c_wake_at(void *self, int slot, int64_t at) {
  sim_node_t *n = self;
  if (at && at < n->sim->now)
    at = n->sim->now; /* a past time fires at once */
  n->wake[slot] = at;
  if (at)
    sim_schedule(n->sim, at, EV_WAKE, n->idx, slot, NULL);
}

static void c_end_of_turn(void *self) { ((sim_node_t *)self)->turn = 1; }

void sim_clock_port(sim_node_t *n, sagad_clock_port_t *port) {
  *port = (sagad_clock_port_t){.self = n,
                               .now_ms = c_now,
                               .wake_at = c_wake_at,
                               .end_of_turn = c_end_of_turn};
}
