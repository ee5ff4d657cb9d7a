/* The deterministic simulator of the coordinator (docs/reliability.md,
 * "Deterministic simulation"): the real engine (engine.c, linked as
 * saga_engine) driven through its three ports by in-memory, seeded fakes
 * of the event store, the broker and the clock, with participants, a
 * starter, an operator, crashes and rebalances. Everything that varies is
 * drawn from one seed, so a seed replays a run exactly. Test-only code. */
#ifndef SAGA_SIM_H
#define SAGA_SIM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>


#include "definition.h"
#include "engine.h"
#include "saga_machine.h"

#define SIM_PARTS 4     /* inbox partitions */
#define SIM_NODES 2     /* coordinator instances in the group */
#define SIM_MAX_SAGAS 256
#define SIM_MAX_STEPS 8
#define SIM_TRACE 48    /* events kept for a failure report */
#define SIM_T0 1700000000000LL /* virtual epoch ms at the start */

/* ---- seeded randomness ---------------------------------------------- */

typedef struct {
  uint64_t s;
} sim_rng_t;

static inline uint64_t sim_u64(sim_rng_t *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static inline int64_t sim_range(sim_rng_t *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)(sim_u64(r) % (uint64_t)(hi - lo + 1));
}

/* True with probability permille / 1000. */
static inline int sim_chance(sim_rng_t *r, int permille) {
  return permille > 0 && (int)(sim_u64(r) % 1000) < permille;
}

/* ---- faults, counted by kind ---------------------------------------- */

#define SIM_FAULTS(X)                                                          \
  X(APPEND_FAIL, "append fails (not committed)")                               \
  X(APPEND_LOST_ACK, "append commits, acknowledgement lost")                   \
  X(APPEND_ABORT, "batch aborted by a racing writer (conflict + retry)")       \
  X(SUBMIT_REFUSED, "batch refused at submit")                                 \
  X(APPEND_SLOW, "append slow (> 50 ms)")                                      \
  X(LOAD_SLOW, "recovery read slow")                                           \
  X(LOAD_FAIL, "recovery read fails")                                          \
  X(LOAD_FAIL_LATE, "recovery read fails after it started")                    \
  X(PRODUCE_FAIL, "produce refused before the ack")                            \
  X(DELIVERY_FAIL, "produce fails on delivery")                                \
  X(LOST_ON_CRASH, "produced message lost with the crashed producer")          \
  X(INBOX_DELAY, "inbox message delayed")                                      \
  X(DUP_START, "StartSaga sent twice")                                         \
  X(GARBAGE, "malformed inbox message (dead letter)")                          \
  X(REPLY_LOST, "participant never replies")                                   \
  X(REPLY_LOST_APPLIED, "participant applies, reply lost")                     \
  X(REPLY_TWICE, "participant replies twice")                                  \
  X(REPLY_LATE, "participant replies after the deadline")                      \
  X(REPLY_RETRYABLE, "participant answers RETRYABLE")                          \
  X(CMD_DUP, "command delivered twice")                                        \
  X(CRASH, "coordinator crash and restart")                                    \
  X(CRASH_IN_FLIGHT, "crash with a batch in flight")                           \
  X(REBALANCE, "partition moved to the other instance")                        \
  X(ZOMBIE, "old owner keeps running after losing a partition")                \
  X(OPERATOR_RETRY, "operator retries a parked saga")                         \
  X(CANCEL, "operator cancels a running saga")

typedef enum {
#define X(n, d) SIM_F_##n,
  SIM_FAULTS(X)
#undef X
      SIM_F_N
} sim_fault_t;

/* ---- the world ------------------------------------------------------ */

typedef struct sim sim_t;

/* One stored saga stream (the store's truth) and its replayed shadow. */
typedef struct {
  char id[SM_ID_MAX + 1];
  size_t n, cap;
  struct sim_rec {
    uint64_t eid; /* event id: a resubmitted batch carries the same ids */
    uint8_t *data;
    size_t len;
  } *recs;
  sm_t *shadow;          /* replay of the committed records */
  /* the committed events, for the effect checks */
  size_t nfacts, cfacts;
  struct sim_fact {
    uint8_t type, step, action, outcome;
    uint16_t attempt;
  } *facts;
  /* saga_index row */
  int has_index;
  int64_t ix_version;
  int32_t ix_partition;
  char ix_status[32];
  int ix_notify_pending;
} sim_stream_t;

/* A store connection (one per coordinator instance): its current batch. */
typedef struct {
  sim_t *sim;
  int node;
  int busy;        /* a batch is built and not yet settled by the engine */
  int in_flight;   /* submitted, completion scheduled */
  uint64_t token;  /* matches the scheduled completion */
  size_t n, cap;
  struct sim_bstream {
    char id[SM_ID_MAX + 1];
    int64_t expected;
    size_t nrec;
    uint8_t **data;
    size_t *len;
    uint64_t eid0;
    int status;
  } *s;
  size_t nix, cix;
  struct sim_ixrow {
    char id[SM_ID_MAX + 1];
    char status[32];
    int32_t partition;
    int64_t version;
    int notify_pending;
  } *ix;
  /* sagas whose final notification's delivery the batch records */
  size_t nmarks, cmarks;
  char (*marks)[SM_ID_MAX + 1];
  char err[128];
  /* loads started and not yet ended (completed by EV_LOAD_DONE) */
  struct sim_load *loads;
  uint64_t load_token;
} sim_conn_t;

/* One inbox message. */
typedef struct {
  uint8_t *value;
  size_t len;
  saga__hdr_copy_t *hdrs; /* owned (free()); NULL for garbage */
  int64_t visible_at;
  int kind;      /* SIM_IN_* */
  int saga;      /* index into sim->sagas, -1 = none */
} sim_inmsg_t;

enum { SIM_IN_START = 1, SIM_IN_REPLY, SIM_IN_OPERATOR, SIM_IN_GARBAGE };

typedef struct {
  sim_inmsg_t *m;
  size_t n, cap;
  int owner;        /* node */
  uint32_t gen;     /* bumped on every assignment: fences old acks */
  int64_t pos;      /* next offset to deliver */
  int64_t committed;
  uint8_t *acked;   /* per offset, current generation */
  int fetch_pending;
  int zombie;       /* a node that lost it and has not been told yet */
} sim_part_t;

/* A coordinator instance: engine + its ports' state. */
typedef struct {
  sim_t *sim;
  int idx;
  uint32_t gen;       /* bumped on every restart */
  sagad_engine_t *engine;
  sim_conn_t conn;
  int64_t wake[SAGAD_WAKE_N];
  int turn;           /* end_of_turn requested */
  int64_t crashed_at;
} sim_node_t;

/* What a participant did for one (saga, step). */
typedef struct {
  uint8_t do_applied, comp_applied;
  uint8_t comp_seen;         /* a COMPENSATE arrived (tombstone) */
  uint8_t comp_noop;         /* compensated while never applied */
  uint32_t do_seq, comp_seq; /* global order of application */
  uint8_t outcome;           /* scripted business outcome of DO */
} sim_effect_t;

/* A command on its way to a participant. */
typedef struct {
  int saga, step, action;
  uint32_t attempt;
  int64_t deadline;
  int node;
  uint32_t gen;
  int fragile; /* lost if its producer crashes before it lands */
  char key[160];
} sim_cmd_t;

typedef struct {
  char id[SM_ID_MAX + 1];
  const saga_def_t *def;
  int32_t partition;
  int started;               /* StartSaga produced */
  sim_effect_t fx[SIM_MAX_STEPS];
  uint32_t operator_sent;    /* OperatorAction RETRY messages sent */
  uint32_t final_landed;     /* final notifications (COMPLETED or
                                COMPENSATED) that reached the topic */
} sim_saga_t;

/* Scheduled events of the world. */
enum {
  EV_STORE_DONE = 1, EV_WAKE, EV_FETCH, EV_DELIVERY, EV_COMMAND, EV_START,
  EV_CRASH, EV_REBALANCE, EV_REVOKE, EV_COMMIT, EV_OPERATOR, EV_NOTIFY,
  EV_LOAD_DONE
};

typedef struct {
  int64_t at;
  uint64_t seq;
  int kind;
  int node;
  uint32_t gen;
  int64_t a;
  void *p;
} sim_ev_t;

typedef struct {
  /* sweep-wide options */
  int nsagas;
  int verbose;
  int break_expected; /* the engine is the deliberately broken build */
} sim_opts_t;

struct sim {
  uint64_t seed;
  /* where the coordinators send progress notes (STARTED, STEP_DONE):
   * "sim.progress", "sim.notifications" or NULL (none), by seed */
  const char *progress_topic;
  sim_rng_t rng;
  sim_rng_t cancel_rng; /* the operator's cancels: a stream of their own */
  sim_rng_t load_rng;   /* when loads end and late load failures: their own
                           stream, so the seeds pinned before loads were
                           asynchronous keep their other draws */
  sim_opts_t opt;
  const saga_registry_t *reg;
  const saga_def_t *defs[8];
  size_t ndefs;
  int64_t now;
  int64_t fault_until; /* faults stop here */
  int faults_on;
  uint64_t seq;
  /* events */
  sim_ev_t *heap;
  size_t nheap, cheap;
  /* store */
  sim_stream_t *streams;
  size_t nstreams, cstreams;
  uint64_t next_eid;
  /* broker */
  sim_part_t parts[SIM_PARTS];
  /* coordinator instances */
  sim_node_t nodes[SIM_NODES];
  /* participants, starter */
  sim_saga_t sagas[SIM_MAX_SAGAS];
  int nsagas;
  uint32_t effect_seq;
  /* keyed command ledger (idempotency keys seen, with the reply given) */
  struct sim_key {
    char key[160];
    int outcome;
  } *keys;
  size_t nkeys, ckeys;
  /* results */
  uint64_t faults[SIM_F_N];
  uint64_t steps;
  uint64_t commands, replies, commits;
  int violated;
  char violation[512];
  /* trace ring */
  char trace[SIM_TRACE][160];
  size_t ntrace;
};

/* ---- simulator.c ---------------------------------------------------- */
void sim_log(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_fault(sim_t *s, sim_fault_t f);
int sim_fault_name_count(void);
const char *sim_fault_desc(int f);
const char *sim_fault_key(int f);

/* ---- sim_clock.c: events and the clock port -------------------------- */
void sim_schedule(sim_t *s, int64_t at, int kind, int node, int64_t a,
                  void *p);
int sim_pop(sim_t *s, sim_ev_t *out);
void sim_clock_port(sim_node_t *n, sagad_clock_port_t *port);

/* ---- sim_store.c ---------------------------------------------------- */
void sim_store_port(sim_node_t *n, sagad_store_port_t *port);
sim_stream_t *sim_store_find(sim_t *s, const char *id);
/* Finish node's in-flight batch (crash: commit or not at random). */
void sim_store_crash(sim_node_t *n);
void sim_store_complete(sim_node_t *n, uint64_t token);
/* A load of node n ends (EV_LOAD_DONE): its records, then its done. */
void sim_store_load_done(sim_node_t *n, uint64_t token);
void sim_store_free(sim_t *s);

/* ---- sim_broker.c --------------------------------------------------- */
void sim_broker_port(sim_node_t *n, sagad_broker_port_t *port);
int32_t sim_partition_of(const char *id);
/* Append to inbox partition p (value and hdrs taken over), visible after
 * delay ms (never before an earlier message of p). */
void sim_inbox_put(sim_t *s, int32_t p, int kind, int saga,
                   saga__hdr_copy_t *hdrs, void *value, size_t len,
                   int64_t delay);
/* Move partition p to node `to` (consumer position back to the committed
 * offset, new generation). */
void sim_reassign(sim_t *s, int32_t p, int to);
void sim_fetch(sim_t *s, int32_t p);
void sim_commit_tick(sim_t *s);
void sim_delivery(sim_t *s, sim_ev_t *ev);
/* A notification reaches the topic, unless its producer crashed first. */
void sim_notify_lands(sim_t *s, sim_ev_t *ev);
void sim_broker_free(sim_t *s);

/* ---- sim_participants.c --------------------------------------------- */
void sim_start_saga(sim_t *s, int i, int dup);
void sim_command(sim_t *s, sim_ev_t *ev);
void sim_operator_tick(sim_t *s);
void sim_participants_free(sim_t *s);

/* ---- sim_wire.c ------------------------------------------------------ */
struct ProtobufCMessage;
int sim_wire_encode(const struct ProtobufCMessage *pb, const char *saga_id,
                    void **buf, size_t *len, saga__hdr_copy_t **h);
saga__hdr_copy_t *sim_wire_operator_headers(void);

/* ---- invariants.c --------------------------------------------------- */
/* Each returns 0, or 1 after recording the violation in s->violation. */
int sim_violation(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sim_check_command(sim_t *s, const char *saga, const char *step,
                      int action, uint32_t attempt, const uint8_t *payload,
                      size_t payload_len);
int sim_check_notification(sim_t *s, const char *saga, int kind,
                           const char *step, int action,
                           const uint8_t *payload, size_t payload_len);
int sim_check_ack(sim_t *s, const sim_inmsg_t *m);
int sim_check_commit(sim_t *s, sim_stream_t *st);
/* The engine's on_durable hook: saga (at version) is reported committed. */
int sim_check_durable(sim_t *s, const char *saga, uint32_t version);
int sim_check_step(sim_t *s);
int sim_check_end(sim_t *s);

#endif
