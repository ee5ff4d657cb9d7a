/* The coordinator engine (see engine.h and docs/internals/engine.md).
 * Order is everything here: an input is stepped through the machine, its
 * transition joins the turn's batch, and only when the store says the
 * batch is durable are its effects performed and its input acknowledged
 * (design.md invariants 1 and 2). One batch is in flight at a time; inputs
 * that arrive meanwhile wait in the queue and are stepped as soon as it
 * lands, so they join the next batch. Must not do I/O except through the
 * ports. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataflow.h"
#include "fault_point.h"
#include "grow.h"
#include "log_sink.h"
#include "wire.h"
#include "msg_codec.h"
#include "saga_codec.h"

/* ---- types ---------------------------------------------------------- */

typedef struct brec {
  struct brec *next;
  const char *type;
  char traceparent[SAGA_TRACEPARENT_SIZE]; /* of its input, "" = none */
  size_t len;
  uint8_t data[];
} brec_t;

/* One saga in memory; its sm_t follows in the same allocation. */
typedef struct entry {
  struct entry *hnext;
  uint32_t hash;
  int32_t partition;
  int64_t durable; /* stream version known to be stored */
  uint8_t *input;  /* the saga input (Started payload), owned */
  size_t input_len;
  uint8_t *outs;   /* the steps' outputs (their Succeeded DO payloads),
                      owned, NULL until one replies or while dropped from
                      the cache: see note_output */
  char *corr;      /* the starter's correlation-id (Started), owned; NULL
                      when it is the saga id */
  char *cancelled; /* "cancelled: <reason>" once a CancelRequested is
                      recorded (live or replayed), owned; else NULL: the
                      reason of its COMPENSATED notification */
  brec_t *rec_head, *rec_tail; /* records of the current batch */
  uint32_t nrec;
  uint8_t in_batch;
  uint8_t failed;  /* its stream did not commit */
  uint8_t revoked; /* partition taken away while in the batch */
  uint8_t outs_gone; /* outputs dropped from the cache: in the store only */
  uint8_t outs_used; /* outputs used since the cache's hand last passed */
  void *obs;       /* observer slot (sagad_engine_hooks_t) */
} entry_t;

#define ENTRY_SAGA(en) ((sm_t *)(void *)((en) + 1))
#define ENTRY_SAGA_C(en) ((const sm_t *)(const void *)((en) + 1))

enum { IN_MSG = 1, IN_TIMER = 2 };

typedef struct input {
  struct input *next;
  int kind;
  int32_t partition;
  void *ack;
  int64_t received_us;    /* IN_MSG: sagad_inmsg_t.received_us */
  sagad_msg_t msg;        /* IN_MSG */
  sm_input_t timer;     /* IN_TIMER */
  char id[SM_ID_MAX + 1]; /* saga id */
} input_t;

typedef struct {
  input_t *head, *tail;
} queue_t;

typedef struct {
  entry_t *en;
  sm_effect_t fx;
  int64_t reply_us; /* received_us of the reply that decided it, or 0 */
} bfx_t;

typedef struct {
  int64_t at;
  uint8_t step, action, timer;
  uint16_t attempt;
  char *id; /* owned by the heap: sized by the id, not by SM_ID_MAX */
} tmr_t;

/* A final notification (COMPLETED or COMPENSATED) on its way: the
 * saga_index row says notify_pending until its delivery is recorded, so a
 * crash before that re-sends it at recovery; a failed produce or delivery
 * sends it again after OUTBOX_RETRY_MS (at least once, never lost). */
typedef struct outbox {
  struct outbox *next; /* retry list */
  const saga_def_t *def;
  uint8_t kind;        /* sm_notify_t */
  int64_t at_ms;
  char *corr;          /* the starter's correlation-id, owned; NULL: none */
  uint8_t *output;     /* COMPLETED: the saga's output, owned; NULL: none */
  size_t output_len;
  char *reason;        /* COMPENSATED by a cancel: "cancelled: <reason>",
                          owned; NULL: none */
  char id[SM_ID_MAX + 1];
} outbox_t;

#define OUTBOX_RETRY_MS 1000
#define TMR_OUTBOX 0xff /* tmr_t.timer of the outbox's retry wake-up */
#define TMR_DLQ 0xfe    /* tmr_t.timer of the held dead letters' retry */

/* A dead letter: written before its input is acked (design.md invariant
 * 8). What does not fit the producer is cut (a prefix of the value, a
 * bounded key, the source's headers dropped when large) and says so in
 * saga-dlq-truncated; one that cannot be written is held and produced
 * again every second, its input not acked, so its offset is never
 * committed past it. */
typedef struct dletter {
  struct dletter *next; /* retry list */
  void *ack;
  saga__hdr_copy_t *h;  /* the source's headers (unless dropped), the
                           reason and the source; owned */
  uint8_t *key, *value;
  size_t key_len, value_len;
  int held;             /* counted in dead_letters_blocked */
  char where[96];       /* topic/partition/offset, for logs */
  char size[24];        /* saga-dlq-size when cut ("" = not cut) */
  char cut[256];        /* saga-dlq-truncated when cut */
} dletter_t;

#define DLQ_VALUE_PREFIX 65536 /* bytes of a cut value kept */
#define DLQ_KEY_MAX 1024       /* bytes of a long key kept */
#define DLQ_HEADERS_MAX 16384  /* source headers above this are dropped */
#define DLQ_SHRUNK_PREFIX 1024 /* after the broker refused the size */

/* Token of a dead letter: the input is acked once it is delivered; or of
 * a message produced for sagad_engine_produce (done set); or of a final
 * notification (ob set). */
typedef struct {
  void *ack;
  void (*done)(void *arg, int status);
  void *arg;
  outbox_t *ob;
  dletter_t *dl;
} dlq_token_t;

struct sagad_engine {
  sagad_engine_config_t cfg;
  char *inbox, *notify, *dlq;
  sagad_counters_t c;
  sagad_engine_hooks_t hooks;
  size_t input_max; /* sagad_engine_input_max */
  /* the output cache: bytes held by entries' outs, and the clock hand
   * (a bucket of the saga table) that drops the least recently used */
  size_t outs_bytes, outs_max, outs_hand;
  size_t nparts; /* inbox partitions assigned */
  sm_rng_t rng;
  /* saga table */
  entry_t **buckets;
  size_t nbuckets, nsagas;
  /* inputs */
  queue_t pending; /* not yet stepped */
  queue_t done;    /* stepped into the current batch */
  /* the current batch */
  entry_t **streams;
  size_t nstreams, cstreams;
  bfx_t *fx;
  size_t nfx, cfx;
  size_t nrecords;
  int in_flight;
  int retry_wait;
  int64_t backoff_ms;
  /* timers */
  tmr_t *heap;
  size_t nheap, cheap;
  int64_t armed_at;
  /* finished sagas to drop when the batch settles */
  char (*evict)[SM_ID_MAX + 1];
  size_t nevict, cevict;
  /* sagas dropped from memory whose read-back failed: read again before
   * any input is stepped (a timer of theirs finds no saga and is lost) */
  struct reload {
    char id[SM_ID_MAX + 1];
    int32_t partition;
  } *reload;
  size_t nreload, creload;
  /* final notifications: to send again, and delivered ones whose
   * notify_pending flag the next batch clears */
  outbox_t *ob_retry;
  int ob_armed;
  char (*marks)[SM_ID_MAX + 1];
  size_t nmarks, cmarks;
  /* dead letters that could not be written yet */
  dletter_t *dl_retry;
  int dl_armed;
  /* stop */
  int stopping;
  void (*stop_done)(void *);
  void *stop_arg;
  /* scratch */
  sm_output_t out;
  saga_record_t rec;
};

static void pump(sagad_engine_t *e);

/* ---- saga table ----------------------------------------------------- */

static uint32_t hash_id(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

static entry_t *lookup(const sagad_engine_t *e, const char *id) {
  uint32_t h = hash_id(id);
  for (entry_t *en = e->buckets[h & (e->nbuckets - 1)]; en; en = en->hnext)
    if (en->hash == h && !strcmp(ENTRY_SAGA(en)->id, id))
      return en;
  return NULL;
}

static void grow(sagad_engine_t *e) {
  size_t n = e->nbuckets * 2;
  entry_t **b = calloc(n, sizeof *b);
  if (!b)
    return; /* keep the longer chains */
  for (size_t i = 0; i < e->nbuckets; i++) {
    entry_t *en = e->buckets[i];
    while (en) {
      entry_t *next = en->hnext;
      en->hnext = b[en->hash & (n - 1)];
      b[en->hash & (n - 1)] = en;
      en = next;
    }
  }
  free(e->buckets);
  e->buckets = b;
  e->nbuckets = n;
}

static entry_t *entry_new(sagad_engine_t *e, const char *id,
                          const saga_def_t *def, int32_t partition) {
  entry_t *en = calloc(1, sizeof *en + sm_size(def, strlen(id)));
  if (!en)
    return NULL;
  if (sm_init(ENTRY_SAGA(en), id, def) != 0) {
    free(en);
    return NULL;
  }
  en->hash = hash_id(id);
  en->partition = partition;
  if (e->nsagas >= e->nbuckets)
    grow(e);
  size_t b = en->hash & (e->nbuckets - 1);
  en->hnext = e->buckets[b];
  e->buckets[b] = en;
  e->nsagas++;
  return en;
}

static void free_records(entry_t *en) {
  for (brec_t *r = en->rec_head, *n; r; r = n) {
    n = r->next;
    free(r);
  }
  en->rec_head = en->rec_tail = NULL;
  en->nrec = 0;
}

static size_t outs_size(const entry_t *en);

static void entry_free(sagad_engine_t *e, entry_t *en) {
  entry_t **p = &e->buckets[en->hash & (e->nbuckets - 1)];
  while (*p && *p != en)
    p = &(*p)->hnext;
  if (*p) {
    *p = en->hnext;
    e->nsagas--;
  }
  free_records(en);
  if (en->obs && e->hooks.on_forget)
    e->hooks.on_forget(e->hooks.arg, en->obs);
  free(en->input);
  if (en->outs)
    e->outs_bytes -= outs_size(en);
  free(en->outs);
  free(en->cancelled);
  free(en->corr);
  free(en);
}

static int set_input(entry_t *en, const uint8_t *p, size_t n) {
  free(en->input);
  en->input = NULL;
  en->input_len = 0;
  if (!n)
    return 0;
  en->input = malloc(n);
  if (!en->input)
    return -1;
  memcpy(en->input, p, n);
  en->input_len = n;
  return 0;
}

/* The outputs of a saga's steps live in one allocation (a saga in flight
 * costs one malloc for them, not one per step): nsteps slots of
 * {offset, length} (length OUT_NONE: not replied yet), then the bytes in
 * the order the replies came. */
typedef struct {
  uint32_t off, len;
} out_slot_t;
#define OUT_NONE UINT32_MAX

static size_t outs_size(const entry_t *en) {
  const sm_t *s = ENTRY_SAGA_C(en);
  size_t n = s->nsteps * sizeof(out_slot_t);
  const out_slot_t *slot = (const out_slot_t *)(const void *)en->outs;
  for (unsigned i = 0; en->outs && i < s->nsteps; i++)
    if (slot[i].len != OUT_NONE && slot[i].off + slot[i].len > n)
      n = slot[i].off + slot[i].len;
  return n;
}

/* Keep step's output (replay and the live path record the same ones, so
 * commands built from them are the same bytes). The saga's outputs must be
 * in memory (outs_ready). */
static int note_output(sagad_engine_t *e, entry_t *en, uint32_t step,
                       const uint8_t *p, size_t n) {
  const sm_t *s = ENTRY_SAGA(en);
  if (step >= s->nsteps || n >= OUT_NONE)
    return -1;
  size_t old = en->outs ? outs_size(en) : 0;
  size_t have = old ? old : s->nsteps * sizeof(out_slot_t);
  uint8_t *v = realloc(en->outs, have + n ? have + n : 1);
  if (!v)
    return -1;
  e->outs_bytes += have + n - old;
  out_slot_t *slot = (out_slot_t *)(void *)v;
  if (!en->outs)
    for (unsigned i = 0; i < s->nsteps; i++)
      slot[i] = (out_slot_t){0, OUT_NONE};
  if (n)
    memcpy(v + have, p, n);
  slot[step] = (out_slot_t){(uint32_t)have, (uint32_t)n};
  en->outs = v;
  return 0;
}

/* The outputs recorded by a transition's (or a stored record's) events. */
static int note_outputs(sagad_engine_t *e, entry_t *en, const sm_event_t *ev,
                        size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ev[i].type == SM_EV_SUCCEEDED && ev[i].action == SM_DO &&
        note_output(e, en, ev[i].step, ev[i].payload, ev[i].payload_len) != 0)
      return -1;
  return 0;
}

/* ---- the output cache ------------------------------------------------
 * Outputs are kept with their saga while they fit output_cache_bytes; past
 * it, a clock hand over the saga table drops those of the sagas least
 * recently used (not in the batch: their outputs may not be stored yet),
 * and outs_ready reads them back from the Succeeded events of the stream
 * when a command or the saga's output needs them. A saga waiting a day on
 * a manual approval costs no output memory meanwhile; the store read is
 * blocking, like every read-back, and happens once per cold saga. */

typedef struct {
  sagad_engine_t *e;
  entry_t *en;
  int failed;
} outs_load_t;

static int outs_record(void *arg, const char *id, int32_t partition,
                       int64_t version, const uint8_t *data, size_t len) {
  outs_load_t *L = arg;
  saga_record_t rec = {0};
  (void)id;
  (void)partition;
  (void)version;
  if (saga_codec_decode(data, len, &rec) != 0 ||
      note_outputs(L->e, L->en, rec.events, rec.n) != 0)
    L->failed = 1;
  saga_record_clear(&rec);
  return L->failed ? -1 : 0;
}

static void outs_drop(sagad_engine_t *e, entry_t *en) {
  if (en->outs)
    e->outs_bytes -= outs_size(en);
  free(en->outs);
  en->outs = NULL;
  en->outs_gone = 1;
}

/* The saga's outputs in memory, read back when the cache dropped them.
 * Returns 0, or -1 when the store could not be read (they stay dropped). */
static int outs_ready(sagad_engine_t *e, entry_t *en) {
  en->outs_used = 1;
  if (!en->outs_gone)
    return 0;
  const sm_t *s = ENTRY_SAGA(en);
  outs_load_t L = {.e = e, .en = en};
  en->outs_gone = 0;
  int rc = e->cfg.store.load_saga(e->cfg.store.self, s->id, en->partition,
                                  outs_record, &L);
  if (rc != 0 || L.failed) {
    SLOG_WARN(s->id, NULL, "could not read the steps' outputs back: %s",
              rc != 0 ? e->cfg.store.last_error(e->cfg.store.self)
                      : "a stored record does not decode");
    outs_drop(e, en);
    return -1;
  }
  e->c.outputs_read_back++;
  SLOG_DEBUG(s->id, NULL, "steps' outputs read back from the store");
  return 0;
}

/* Bring the cache back under its bound: drop the outputs of sagas not used
 * since the hand last passed them, down to 7/8 of the bound. */
static void outs_trim(sagad_engine_t *e) {
  if (e->outs_bytes <= e->outs_max || !e->nbuckets)
    return;
  size_t low = e->outs_max - e->outs_max / 8;
  for (size_t k = 0; k < 2 * e->nbuckets && e->outs_bytes > low; k++) {
    size_t b = e->outs_hand++ & (e->nbuckets - 1);
    for (entry_t *en = e->buckets[b]; en; en = en->hnext) {
      if (!en->outs || en->in_batch)
        continue;
      if (en->outs_used)
        en->outs_used = 0;
      else
        outs_drop(e, en);
    }
  }
}

/* v[nsteps] from the recorded outputs, for core/dataflow. */
static void flow_values(const entry_t *en, saga_flow_value_t *v) {
  const sm_t *s = ENTRY_SAGA_C(en);
  const out_slot_t *slot = (const out_slot_t *)(const void *)en->outs;
  for (unsigned i = 0; i < s->nsteps; i++) {
    v[i] = (saga_flow_value_t){0};
    if (en->outs && slot[i].len != OUT_NONE)
      v[i] = (saga_flow_value_t){en->outs + slot[i].off, slot[i].len, true};
  }
}

/* Keep "cancelled: <reason>" from a transition's (or a stored record's)
 * CancelRequested, for the COMPENSATED notification it leads to. */
static int note_cancel(entry_t *en, const sm_event_t *ev, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ev[i].type != SM_EV_CANCEL_REQUESTED)
      continue;
    const char *why = ev[i].reason ? ev[i].reason : "(no reason given)";
    size_t len = sizeof "cancelled: " + strlen(why);
    char *v = malloc(len);
    if (!v)
      return -1;
    snprintf(v, len, "cancelled: %s", why);
    free(en->cancelled);
    en->cancelled = v;
  }
  return 0;
}

/* Keep the starter's correlation-id (NULL, "" or the saga id: none). */
static int set_corr(entry_t *en, const char *corr) {
  free(en->corr);
  en->corr = NULL;
  if (!corr || !*corr || !strcmp(corr, ENTRY_SAGA(en)->id))
    return 0;
  en->corr = strdup(corr);
  return en->corr ? 0 : -1;
}

/* ---- queues --------------------------------------------------------- */

static void q_push(queue_t *q, input_t *in) {
  in->next = NULL;
  if (q->tail)
    q->tail->next = in;
  else
    q->head = in;
  q->tail = in;
}

static input_t *q_pop(queue_t *q) {
  input_t *in = q->head;
  if (in) {
    q->head = in->next;
    if (!q->head)
      q->tail = NULL;
  }
  return in;
}

static void input_free(input_t *in) {
  if (!in)
    return;
  sagad_msg_free(&in->msg);
  free(in);
}

static void input_done(sagad_engine_t *e, input_t *in) {
  if (in->ack)
    e->cfg.broker.ack(e->cfg.broker.self, in->ack);
  input_free(in);
}

/* ---- timers (min-heap on the deadline) ------------------------------ */

static void heap_swap(tmr_t *a, tmr_t *b) {
  tmr_t t = *a;
  *a = *b;
  *b = t;
}

/* Push t with a copy of its saga's id (id NULL: a retry list's wake-up,
 * TMR_OUTBOX or TMR_DLQ, which has none). */
static void heap_push(sagad_engine_t *e, const tmr_t *t, const char *id) {
  char *copy = id ? strdup(id) : NULL;
  if ((id && !copy) || SAGA_GROW(e->heap, e->cheap, e->nheap + 1, 256) != 0) {
    free(copy);
    LOG_ERROR("out of memory arming a timer of %s%s", id ? "saga " : "",
              id ? id : "a retry list");
    return;
  }
  size_t i = e->nheap++;
  e->heap[i] = *t;
  e->heap[i].id = copy;
  while (i && e->heap[(i - 1) / 2].at > e->heap[i].at) {
    heap_swap(&e->heap[(i - 1) / 2], &e->heap[i]);
    i = (i - 1) / 2;
  }
}

static void heap_pop(sagad_engine_t *e) {
  e->heap[0] = e->heap[--e->nheap];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < e->nheap && e->heap[l].at < e->heap[m].at)
      m = l;
    if (r < e->nheap && e->heap[r].at < e->heap[m].at)
      m = r;
    if (m == i)
      break;
    heap_swap(&e->heap[m], &e->heap[i]);
    i = m;
  }
}

static void rearm(sagad_engine_t *e) {
  int64_t at = e->nheap ? e->heap[0].at : 0;
  if (at == e->armed_at)
    return;
  e->armed_at = at;
  e->cfg.clock.wake_at(e->cfg.clock.self, SAGAD_WAKE_TIMERS, at);
}

static void request_turn(sagad_engine_t *e) {
  e->cfg.clock.end_of_turn(e->cfg.clock.self);
}

/* ---- effects (only for durable transitions) ------------------------- */

static const char *step_name(const sm_t *s, unsigned i) {
  return i < s->def->nsteps ? s->def->steps[i].name : NULL;
}

/* Returns 1 when the command was handed to the broker. */
static int send_command(sagad_engine_t *e, entry_t *en,
                        const sm_effect_t *fx) {
  sm_t *s = ENTRY_SAGA(en);
  const saga_step_def_t *sd = &s->def->steps[fx->step];
  const char *topic = fx->action == SM_DO ? sd->topic : sd->comp_topic;
  if (!topic)
    return 0;
  if (outs_ready(e, en) != 0) {
    /* Not sent: the attempt's deadline retries it. */
    e->c.produce_errors++;
    return 0;
  }
  saga_flow_value_t outs[SAGA_DEF_MAX_STEPS];
  flow_values(en, outs);
  uint8_t *payload = NULL;
  size_t payload_len = 0;
  if ((fx->action == SM_DO
           ? saga_flow_command(s->def, fx->step, en->input, en->input_len,
                               outs, &payload, &payload_len)
           : saga_flow_compensation(s->def, fx->step, en->input,
                                    en->input_len, outs, &payload,
                                    &payload_len)) != 0) {
    /* Not sent: the attempt's deadline retries it. */
    SLOG_ERROR(s->id, sd->name, "out of memory building the command");
    e->c.produce_errors++;
    return 0;
  }
  if (payload_len > e->input_max) {
    /* Its outputs grew it past what the producer takes: the step's
     * deadline decides it, like a command the broker refused. */
    SLOG_ERROR(s->id, sd->name,
               "the %s command's payload is %zu bytes with the earlier "
               "steps' outputs, above the %zu a command can carry "
               "(kafka.message.max.bytes): not sent, its deadline decides "
               "the attempt; map fewer outputs into this step (\"input\" "
               "in the definition)",
               fx->action == SM_DO ? "DO" : "COMPENSATE", payload_len,
               e->input_max);
    e->c.produce_errors++;
    free(payload);
    return 0;
  }
  sagad_command_t c = {
      .saga_id = s->id,
      .saga_type = s->def->name,
      .def_version = s->def->version,
      .step = sd->name,
      .action = (sm_action_t)fx->action,
      .action_name = fx->action == SM_DO ? sd->action : sd->comp_action,
      .attempt = fx->attempt,
      .deadline_ms = fx->at_ms,
      .payload = payload,
      .payload_len = payload_len,
      .reply_topic = e->inbox,
      .correlation_id = en->corr,
  };
  char tp[SAGA_TRACEPARENT_SIZE] = "";
  if (e->hooks.on_command)
    e->hooks.on_command(e->hooks.arg, en->obs, s, fx->step, fx->action, tp);
  c.traceparent = tp[0] ? tp : NULL;
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  char err[256];
  int enc = sagad_msg_encode_command(&c, &buf, &len, &h, err, sizeof err);
  free(payload);
  if (enc != 0) {
    SLOG_ERROR(s->id, sd->name, "could not encode the command: %s", err);
    e->c.produce_errors++;
    return 0;
  }
  int rc = e->cfg.broker.produce(e->cfg.broker.self, topic, s->id,
                                 strlen(s->id), buf, len, &h, NULL);
  saga__hdrs_free(&h);
  if (rc != 0) {
    /* Not sent: the attempt's deadline retries it. */
    e->c.produce_errors++;
    SLOG_WARN(s->id, sd->name, "could not produce the command to %s", topic);
    free(buf);
    return 0;
  }
  e->c.commands_sent++;
  SLOG_DEBUG(s->id, sd->name, "sent %s attempt %u to %s",
             fx->action == SM_DO ? "DO" : "COMPENSATE",
             (unsigned)fx->attempt, topic);
  free(buf);
  return 1;
}

/* Wake up in OUTBOX_RETRY_MS for a retry list (kind TMR_OUTBOX or
 * TMR_DLQ), unless that wake-up is armed already. */
static void arm_retry(sagad_engine_t *e, int *armed, uint8_t kind) {
  if (*armed)
    return;
  tmr_t t = {.at = e->cfg.clock.now_ms(e->cfg.clock.self) + OUTBOX_RETRY_MS,
             .timer = kind};
  heap_push(e, &t, NULL);
  *armed = 1;
  rearm(e);
}

static void outbox_retry_later(sagad_engine_t *e, outbox_t *ob) {
  ob->next = e->ob_retry;
  e->ob_retry = ob;
  arm_retry(e, &e->ob_armed, TMR_OUTBOX);
}

static void outbox_free(outbox_t *ob) {
  if (ob) {
    free(ob->corr);
    free(ob->output);
    free(ob->reason);
  }
  free(ob);
}

/* Produce the final notification ob describes; it is freed once its
 * delivery is recorded, and sent again when it fails. */
static void outbox_send(sagad_engine_t *e, outbox_t *ob) {
  sagad_notification_t n = {
      .saga_id = ob->id,
      .saga_type = ob->def->name,
      .def_version = ob->def->version,
      .kind = (sm_notify_t)ob->kind,
      .action = ob->kind == SM_NOTIFY_COMPLETED ? SM_DO : SM_COMPENSATE,
      .outcome = SM_OUTCOME_SUCCESS,
      .at_ms = ob->at_ms,
      .correlation_id = ob->corr,
      .payload = ob->output,
      .payload_len = ob->output_len,
      .reason = ob->reason,
  };
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  char err[256];
  if (sagad_msg_encode_notification(&n, &buf, &len, &h, err, sizeof err)) {
    SLOG_ERROR(ob->id, NULL, "could not encode the final notification: %s",
               err);
    outbox_free(ob); /* cannot happen: the same fields encoded before */
    return;
  }
  dlq_token_t *t = calloc(1, sizeof *t);
  if (t) {
    t->ob = ob;
    int rc = e->cfg.broker.produce(e->cfg.broker.self, e->notify, ob->id,
                                   strlen(ob->id), buf, len, &h, t);
    if (rc == 0) {
      saga__hdrs_free(&h);
      free(buf);
      return;
    }
  }
  saga__hdrs_free(&h);
  free(t);
  free(buf);
  e->c.produce_errors++;
  SLOG_WARN(ob->id, NULL, "could not produce the final notification to %s: "
                          "sending it again in %d ms",
            e->notify, OUTBOX_RETRY_MS);
  outbox_retry_later(e, ob);
}

/* The final notification of a terminal saga (at the time of its last
 * transition when at_ms is 0: recovery). */
static void send_final(sagad_engine_t *e, entry_t *en, int64_t at_ms) {
  const sm_t *s = ENTRY_SAGA(en);
  outbox_t *ob = calloc(1, sizeof *ob);
  if (ob && en->corr && !(ob->corr = strdup(en->corr))) {
    free(ob);
    ob = NULL;
  }
  if (!ob) {
    SLOG_ERROR(s->id, NULL, "out of memory sending the final notification: "
                            "the next recovery sends it");
    return;
  }
  ob->def = s->def;
  ob->kind = s->status == SM_COMPLETED ? SM_NOTIFY_COMPLETED
                                       : SM_NOTIFY_COMPENSATED;
  if (ob->kind == SM_NOTIFY_COMPLETED && s->def->output_map) {
    /* The same bytes as its Completed event records (saga_output). */
    saga_flow_value_t outs[SAGA_DEF_MAX_STEPS];
    if (outs_ready(e, en) != 0) {
      outbox_free(ob);
      SLOG_ERROR(s->id, NULL, "the saga's output could not be built: the "
                              "next recovery sends the notification");
      return;
    }
    flow_values(en, outs);
    if (saga_flow_saga_output(s->def, en->input, en->input_len, outs,
                              &ob->output, &ob->output_len) != 0) {
      outbox_free(ob);
      SLOG_ERROR(s->id, NULL, "out of memory building the saga's output: "
                              "the next recovery sends the notification");
      return;
    }
  }
  if (ob->kind == SM_NOTIFY_COMPENSATED && en->cancelled &&
      !(ob->reason = strdup(en->cancelled))) {
    outbox_free(ob);
    SLOG_ERROR(s->id, NULL, "out of memory sending the final notification: "
                            "the next recovery sends it");
    return;
  }
  ob->at_ms = at_ms ? at_ms : s->updated_ms;
  memcpy(ob->id, s->id, strlen(s->id) + 1); /* at most SM_ID_MAX */
  outbox_send(e, ob);
}

/* Its delivery is recorded by the next batch. */
static void note_notified(sagad_engine_t *e, const char *id) {
  if (e->nmarks == e->cmarks) {
    size_t n = e->cmarks ? e->cmarks * 2 : 64;
    char(*v)[SM_ID_MAX + 1] = realloc(e->marks, n * sizeof *v);
    if (!v)
      return; /* the flag stays: a recovery sends it once more */
    e->marks = v;
    e->cmarks = n;
  }
  memcpy(e->marks[e->nmarks++], id, strlen(id) + 1);
}

/* Produce a notification that is sent once (not the final one: see
 * send_final): without a delivery report when done is NULL, else done(e,
 * status) runs on its delivery. */
static void produce_notification(sagad_engine_t *e,
                                 const sagad_notification_t *n,
                                 void (*done)(void *arg, int status)) {
  void *buf = NULL;
  size_t len = 0;
  saga__hdrs_t h;
  char err[256];
  if (sagad_msg_encode_notification(n, &buf, &len, &h, err, sizeof err)) {
    SLOG_ERROR(n->saga_id, NULL, "could not encode a notification: %s", err);
    return;
  }
  int rc = done ? sagad_engine_produce(e, e->notify, n->saga_id,
                                       strlen(n->saga_id), buf, len, &h,
                                       done, e)
                : e->cfg.broker.produce(e->cfg.broker.self, e->notify,
                                        n->saga_id, strlen(n->saga_id), buf,
                                        len, &h, NULL);
  if (rc != 0) {
    e->c.produce_errors++;
    SLOG_WARN(n->saga_id, NULL, "could not produce a notification to %s",
              e->notify);
  }
  saga__hdrs_free(&h);
  free(buf);
}

static void send_notification(sagad_engine_t *e, entry_t *en,
                              const sm_effect_t *fx, int64_t now) {
  if (!e->notify)
    return;
  sm_t *s = ENTRY_SAGA(en);
  if ((fx->notify == SM_NOTIFY_COMPLETED ||
       fx->notify == SM_NOTIFY_COMPENSATED) &&
      sm_is_terminal(s)) {
    send_final(e, en, now);
    return;
  }
  sagad_notification_t n = {
      .saga_id = s->id,
      .saga_type = s->def->name,
      .def_version = s->def->version,
      .kind = (sm_notify_t)fx->notify,
      .step = fx->notify == SM_NOTIFY_STEP_DONE ||
                      fx->notify == SM_NOTIFY_COMPENSATION_FAILED
                  ? step_name(s, fx->step)
                  : NULL,
      .action = (sm_action_t)fx->action,
      .outcome = (sm_outcome_t)fx->outcome,
      .reason = fx->outcome == SM_OUTCOME_TIMEOUT ? "timeout" : NULL,
      .at_ms = now,
      .correlation_id = en->corr,
  };
  produce_notification(e, &n, NULL);
}

/* Returns 1 when the effect was a command handed to the broker. */
static int perform(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx,
                   int64_t now) {
  switch (fx->type) {
  case SM_FX_SEND:
    return send_command(e, en, fx);
  case SM_FX_TIMER: {
    tmr_t t = {.at = fx->at_ms,
               .step = fx->step,
               .action = fx->action,
               .timer = fx->timer,
               .attempt = fx->attempt};
    heap_push(e, &t, ENTRY_SAGA(en)->id);
    break;
  }
  case SM_FX_NOTIFY:
    send_notification(e, en, fx, now);
    break;
  default:
    break;
  }
  return 0;
}

/* ---- loading sagas from the store ----------------------------------- */

/* What a load does with each saga it rebuilds. Every mode resumes a
 * running saga (sm_resume's commands and timers). */
typedef enum {
  LOAD_RECOVER = 1,   /* recovery of assigned partitions: a terminal saga's
                         final notification is sent, the saga dropped */
  LOAD_READ_BACK = 2, /* a saga read back for an input: a terminal saga is
                         kept (the input is judged against it) */
  LOAD_READ_BACK_UNACTED = 3 /* a read-back of a saga whose last transition
                         may be a commit no one acted on (ours whose answer
                         was lost, or a fenced owner's): as LOAD_READ_BACK,
                         and a terminal saga's final notification is sent */
} load_mode_t;

typedef struct {
  sagad_engine_t *e;
  load_mode_t mode;
  entry_t *cur;     /* saga being rebuilt */
  int skip;         /* records of a saga already in memory or broken */
  char id[SM_ID_MAX + 1];
  size_t loaded;
} loader_t;

static void loader_finish(loader_t *L) {
  sagad_engine_t *e = L->e;
  entry_t *en = L->cur;
  L->cur = NULL;
  if (!en)
    return;
  sm_t *s = ENTRY_SAGA(en);
  en->durable = s->version;
  L->loaded++;
  if (sm_is_terminal(s)) {
    if (L->mode == LOAD_RECOVER) {
      /* Listed by recovery only while its final notification is not
       * known to be delivered (saga_index.notify_pending): send it. */
#ifndef SAGA_SIM_BREAK_LOSE_FINAL_NOTIFY /* test-only bug that tests/sim catches */
      if (e->notify)
        send_final(e, en, 0);
#endif
      entry_free(e, en);
    } else if (L->mode == LOAD_READ_BACK_UNACTED && e->notify) {
      send_final(e, en, 0);
    }
    return;
  }
  /* The state is durable: resuming effects are safe to perform now. */
  sm_resume(s, &e->out);
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  for (size_t i = 0; i < e->out.n_effects; i++)
    perform(e, en, &e->out.effects[i], now);
  /* A parked saga's COMPENSATION_FAILED may have died with the process
   * that parked it: a starter awaits it, so every recovery repeats it. */
  for (unsigned i = 0;
       L->mode == LOAD_RECOVER && s->status == SM_COMPENSATION_FAILED &&
                       i < s->nsteps;
       i++)
    if (s->steps[i].status == SM_STEP_COMP_FAILED) {
      sm_effect_t fx = {.type = SM_FX_NOTIFY,
                        .notify = SM_NOTIFY_COMPENSATION_FAILED,
                        .step = (uint8_t)i,
                        .action = SM_COMPENSATE,
                        .outcome = SM_OUTCOME_FAILURE};
      send_notification(e, en, &fx, s->updated_ms);
      break;
    }
  FAULT_POINT("during_recovery"); /* some sagas resumed, others not yet */
  e->c.recovered++;
  SLOG_DEBUG(s->id, step_name(s, s->cursor), "recovered at version %u (%s)",
             (unsigned)s->version,
             sm_status_name((sm_status_t)s->status));
}

static int loader_record(void *arg, const char *id, int32_t partition,
                         int64_t version, const uint8_t *data, size_t len) {
  loader_t *L = arg;
  sagad_engine_t *e = L->e;
  if (strcmp(id, L->id) != 0) {
    loader_finish(L);
    snprintf(L->id, sizeof L->id, "%s", id);
    L->skip = strlen(id) > SM_ID_MAX || lookup(e, id) != NULL;
    if (strlen(id) > SM_ID_MAX)
      LOG_ERROR("stored saga id \"%.64s...\" is longer than %d bytes: saga "
                "left alone",
                id, SM_ID_MAX);
  }
  if (L->skip)
    return 0;
  if (saga_codec_decode(data, len, &e->rec) != 0) {
    SLOG_ERROR(id, NULL, "could not decode stored record %lld: skipping the "
                         "saga",
               (long long)version);
    goto broken;
  }
  if (!L->cur) {
    const sm_event_t *ev = &e->rec.events[0];
    if (e->rec.n < 1 || ev->type != SM_EV_STARTED || !ev->def_name) {
      SLOG_ERROR(id, NULL, "stored stream does not begin with Started");
      goto broken;
    }
    const saga_def_t *def =
        saga_registry_find(e->cfg.registry, ev->def_name, ev->def_version);
    if (!def) {
      SLOG_ERROR(id, NULL,
                 "definition %s version %u is not loaded: saga left alone",
                 ev->def_name, (unsigned)ev->def_version);
      goto broken;
    }
    L->cur = entry_new(e, id, def, partition);
    if (!L->cur || set_input(L->cur, ev->payload, ev->payload_len) != 0 ||
        set_corr(L->cur, ev->correlation_id) != 0) {
      SLOG_ERROR(id, NULL, "out of memory rebuilding the saga");
      goto broken;
    }
  }
  if (saga_codec_apply(ENTRY_SAGA(L->cur), &e->rec) != 0) {
    SLOG_ERROR(id, NULL, "stored record %lld does not replay",
               (long long)version);
    goto broken;
  }
#ifndef SAGA_SIM_BREAK_FORGET_OUTPUTS /* test-only bug that tests/sim catches */
  if (note_outputs(e, L->cur, e->rec.events, e->rec.n) != 0) {
    SLOG_ERROR(id, NULL, "out of memory rebuilding the saga's outputs");
    goto broken;
  }
#endif
  if (note_cancel(L->cur, e->rec.events, e->rec.n) != 0) {
    SLOG_ERROR(id, NULL, "out of memory rebuilding the saga's cancel");
    goto broken;
  }
  saga_record_clear(&e->rec);
  return 0;
broken:
  saga_record_clear(&e->rec);
  if (L->cur)
    entry_free(e, L->cur);
  L->cur = NULL;
  L->skip = 1;
  return -1;
}

/* Read one saga back from the store (blocking). NULL when it has no stream
 * (or the store failed: then the input waits for a later try). */
static entry_t *load_one(sagad_engine_t *e, const char *id, int32_t partition,
                         load_mode_t mode, int *failed) {
  loader_t L = {.e = e, .mode = mode};
  *failed = e->cfg.store.load_saga(e->cfg.store.self, id, partition,
                                   loader_record, &L) != 0;
  loader_finish(&L);
  SLOG_DEBUG(id, NULL, "read back from the store: %zu", L.loaded);
  if (*failed)
    SLOG_WARN(id, NULL, "could not read the saga back: %s",
              e->cfg.store.last_error(e->cfg.store.self));
  return lookup(e, id);
}

/* Remember a saga of ours that is no longer in memory and could not be
 * read back. Nothing else would bring it back: its timers went with it,
 * and an input may never come (found by tests/sim, seed 781: a timer's
 * transition conflicted, the read-back failed, the saga stalled). */
static void note_reload(sagad_engine_t *e, const char *id,
                        int32_t partition) {
  for (size_t i = 0; i < e->nreload; i++)
    if (!strcmp(e->reload[i].id, id))
      return;
  if (SAGA_GROW(e->reload, e->creload, e->nreload + 1, 16) != 0) {
    LOG_ERROR("out of memory noting saga %s for a read-back", id);
    return;
  }
  memcpy(e->reload[e->nreload].id, id, strlen(id) + 1);
  e->reload[e->nreload++].partition = partition;
}

/* Read the noted sagas back and resume them. Returns how many still could
 * not be read. */
static size_t reload_noted(sagad_engine_t *e) {
  size_t keep = 0;
  for (size_t i = 0; i < e->nreload; i++) {
    struct reload *r = &e->reload[i];
    int failed = 0;
    if (!lookup(e, r->id))
      (void)load_one(e, r->id, r->partition, LOAD_READ_BACK_UNACTED,
                     &failed);
    if (failed)
      e->reload[keep++] = *r;
  }
  e->nreload = keep;
  return keep;
}

/* ---- stepping inputs ------------------------------------------------ */

static int add_stream(sagad_engine_t *e, entry_t *en) {
  if (en->in_batch)
    return 0;
  if (SAGA_GROW(e->streams, e->cstreams, e->nstreams + 1, 256) != 0)
    return -1;
  e->streams[e->nstreams++] = en;
  en->in_batch = 1;
  return 0;
}

static int add_fx(sagad_engine_t *e, entry_t *en, const sm_effect_t *fx,
                  int64_t reply_us) {
#ifdef SAGA_SIM_BREAK_APPEND_BEFORE_ACT /* test-only bug that tests/sim catches */
  return perform(e, en, fx, e->cfg.clock.now_ms(e->cfg.clock.self)), 0;
#endif
  if (SAGA_GROW(e->fx, e->cfx, e->nfx + 1, 256) != 0)
    return -1;
  e->fx[e->nfx].en = en;
  e->fx[e->nfx].fx = *fx;
  e->fx[e->nfx].reply_us = reply_us;
  e->nfx++;
  return 0;
}

static void count_events(sagad_engine_t *e, const sm_t *s) {
  for (size_t i = 0; i < e->out.n_events; i++) {
    const sm_event_t *ev = &e->out.events[i];
    switch (ev->type) {
    case SM_EV_STARTED:
      e->c.started++;
      SLOG_INFO(s->id, NULL, "started %s v%u", s->def->name,
                (unsigned)s->def->version);
      break;
    case SM_EV_COMPLETED:
      e->c.completed++;
      SLOG_INFO(s->id, NULL, "completed");
      break;
    case SM_EV_COMPENSATING:
      SLOG_INFO(s->id, step_name(s, ev->step), "compensating");
      break;
    case SM_EV_COMPENSATED:
      e->c.compensated++;
      SLOG_INFO(s->id, NULL, "compensated");
      break;
    case SM_EV_PARKED:
      e->c.compensation_failed++;
      SLOG_WARN(s->id, step_name(s, ev->step),
                "compensation failed: parked for an operator");
      break;
    default:
      break;
    }
  }
}

static void note_evict(sagad_engine_t *e, const char *id) {
  if (SAGA_GROW(e->evict, e->cevict, e->nevict + 1, 64) != 0)
    return; /* it stays in memory: harmless */
  memcpy(e->evict[e->nevict++], id, strlen(id) + 1);
}

/* Drop the finished sagas noted while stepping, unless they joined the
 * batch since. Runs before failed streams are read back, so those stay
 * until their inputs are stepped again. */
static void evict_noted(sagad_engine_t *e) {
  for (size_t i = 0; i < e->nevict; i++) {
    entry_t *en = lookup(e, e->evict[i]);
    if (en && !en->in_batch && sm_is_terminal(ENTRY_SAGA(en)))
      entry_free(e, en);
  }
  e->nevict = 0;
}

/* A transition that records an output or completes the saga needs the
 * saga's outputs in memory. */
static bool flow_needs_outputs(const sm_output_t *out) {
  for (size_t i = 0; i < out->n_events; i++)
    if ((out->events[i].type == SM_EV_SUCCEEDED &&
         out->events[i].action == SM_DO) ||
        out->events[i].type == SM_EV_COMPLETED)
      return true;
  return false;
}

/* A transition that completes the saga records the saga's output (the
 * definition's "output" mapping) in its Completed event, so every reader
 * of the history sees it; *output owns the bytes until the record is
 * encoded. The final notification carries the same bytes (send_final). */
static int saga_output(entry_t *en, sm_output_t *out, uint8_t **output) {
  const sm_t *s = ENTRY_SAGA(en);
  *output = NULL;
  for (size_t i = 0; s->def->output_map && i < out->n_events; i++)
    if (out->events[i].type == SM_EV_COMPLETED) {
      saga_flow_value_t outs[SAGA_DEF_MAX_STEPS];
      size_t n = 0;
      flow_values(en, outs);
      if (saga_flow_saga_output(s->def, en->input, en->input_len, outs,
                                output, &n) != 0)
        return -1;
      out->events[i].payload = *output;
      out->events[i].payload_len = n;
    }
  return 0;
}

static int is_cancel(const input_t *in) {
  return in->kind == IN_MSG && in->msg.kind == SAGAD_MSG_OPERATOR &&
         in->msg.op == SM_IN_CANCEL;
}

/* A CancelSaga that changed nothing: a CANCEL_REFUSED notification says
 * why (sm_cancel_refusal; s NULL: the saga was never started), so
 * whoever waits on the cancel (sagactl cancel --wait, saga_starter_await)
 * gets an answer. Nothing was decided, so nothing waits for the store. */
static void cancel_refused(sagad_engine_t *e, const char *id, const sm_t *s,
                           const char *corr, int64_t now) {
  char why[256];
  sagad_notification_t n = {
      .saga_id = id,
      .saga_type = s ? s->def->name : "",
      .def_version = s ? s->def->version : 0,
      .kind = SM_NOTIFY_CANCEL_REFUSED,
      .reason = s ? sm_cancel_refusal(s, why, sizeof why) : "no such saga",
      .at_ms = now,
      .correlation_id = corr,
  };
  SLOG_INFO(id, NULL, "cancel refused: %s", n.reason);
  if (e->notify)
    produce_notification(e, &n, NULL);
}

/* Step one input; the transition joins the batch. Returns 1 when the input
 * must wait (store unreadable), else 0 (it joined the done list). */
static int step_input(sagad_engine_t *e, input_t *in, int64_t now) {
  entry_t *en = lookup(e, in->id);
  sm_input_t si = {0};
#ifdef SAGA_SIM_BREAK_ACK_BEFORE_APPEND /* test-only bug that tests/sim catches */
  if (in->kind == IN_MSG && in->msg.kind != SAGAD_MSG_START && in->ack) {
    e->cfg.broker.ack(e->cfg.broker.self, in->ack);
    in->ack = NULL;
  }
#endif
  if (in->kind == IN_TIMER) {
    if (!en) { /* saga finished or moved away: the timer is stale */
      input_free(in);
      return 0;
    }
    si = in->timer;
  } else if (in->msg.kind == SAGAD_MSG_START) {
    if (!en) {
      const saga_def_t *def = saga_registry_find(
          e->cfg.registry, in->msg.saga_type, in->msg.def_version);
      en = def ? entry_new(e, in->id, def, in->partition) : NULL;
      if (!en || set_input(en, in->msg.payload, in->msg.payload_len) != 0 ||
          set_corr(en, in->msg.correlation_id) != 0) {
        LOG_ERROR("out of memory starting saga %s", in->id);
        if (en)
          entry_free(e, en);
        return 1;
      }
    }
    si.type = SM_IN_START;
    si.payload = in->msg.payload;
    si.payload_len = in->msg.payload_len;
    si.correlation_id = en->corr; /* kept in Started: survives recovery */
  } else {
    if (!en) {
      int failed = 0;
      /* Resumed: a saga of ours not in memory lost its timers. */
      en = load_one(e, in->id, in->partition, LOAD_READ_BACK, &failed);
      if (failed && !en)
        return 1;
    }
    if (in->msg.kind == SAGAD_MSG_REPLY) {
      si.type = SM_IN_REPLY;
      si.step = en ? saga_def_step_index(ENTRY_SAGA(en)->def, in->msg.step)
                   : -1;
      si.action = (uint8_t)in->msg.action;
      si.attempt = in->msg.attempt;
      si.outcome = (uint8_t)in->msg.outcome;
      si.payload = in->msg.payload;
      si.payload_len = in->msg.payload_len;
      si.reason = in->msg.reason;
    } else {
      /* Who and why go into the transition's event (the history). */
      si.type = (uint8_t)in->msg.op;
      si.reason = in->msg.reason && *in->msg.reason ? in->msg.reason : NULL;
      si.who = in->msg.who && *in->msg.who ? in->msg.who : NULL;
      if (en)
        SLOG_INFO(in->id, NULL, "operator %s asks %s: %s",
                  in->msg.who ? in->msg.who : "",
                  in->msg.op == SM_IN_CANCEL           ? "cancel"
                  : in->msg.op == SM_IN_OPERATOR_RETRY ? "retry"
                                                       : "resolve",
                  in->msg.reason ? in->msg.reason : "");
    }
    if (!en) {
      e->c.anomalies[SM_V_UNKNOWN_SAGA]++;
      SLOG_DEBUG(in->id, NULL, "input for an unknown saga ignored");
      if (is_cancel(in))
        cancel_refused(e, in->id, NULL, NULL, now);
      q_push(&e->done, in);
      return 0;
    }
  }
  sm_t *s = ENTRY_SAGA(en);
  /* Only a successful DO records an output or completes the saga: its
   * outputs are read back first, before the machine changes the saga, so
   * a store that cannot be read leaves the input waiting and nothing
   * half done. */
  if (si.type == SM_IN_REPLY && si.action == SM_DO &&
      si.outcome == SM_OUTCOME_SUCCESS && outs_ready(e, en) != 0)
    return 1;
  if (sm_step(s, &si, now, &e->rng, &e->out) != 0) {
    SLOG_ERROR(s->id, NULL, "the machine refused an input");
    q_push(&e->done, in);
    return 0;
  }
  if (in->kind == IN_MSG && !en->in_batch &&
      (e->out.verdict == SM_V_UNEXPECTED ||
       e->out.verdict == SM_V_REJECTED)) {
    /* The input names an attempt or a state this saga never reached here:
     * another owner may have advanced it (a fenced owner appends until it
     * learns of the revoke). Judge it against the store before acking it,
     * or a reply that store would take is lost (found by tests/sim, seed
     * 243). Nothing of ours is pending, so a read-back loses nothing. */
    int32_t part = en->partition;
    int failed = 0;
    SLOG_DEBUG(in->id, in->msg.step, "input %s here: reading the saga back",
               sm_verdict_name((sm_verdict_t)e->out.verdict));
    entry_free(e, en);
    en = load_one(e, in->id, part, LOAD_READ_BACK_UNACTED, &failed);
    if (!en) {
      if (failed)
        return 1; /* the store is unreadable: the input waits */
      q_push(&e->done, in); /* cannot happen: it was stored */
      return 0;
    }
    s = ENTRY_SAGA(en);
    if (sm_step(s, &si, now, &e->rng, &e->out) != 0) {
      SLOG_ERROR(s->id, NULL, "the machine refused an input");
      q_push(&e->done, in);
      return 0;
    }
  }
  if (e->out.verdict != SM_V_APPLIED) {
    e->c.anomalies[e->out.verdict]++;
    if (in->kind != IN_TIMER)
      SLOG_DEBUG(s->id, in->msg.step, "input ignored: %s",
                 sm_verdict_name((sm_verdict_t)e->out.verdict));
    /* A second cancel waits on the first one's outcome; any other cancel
     * that changed nothing is answered. */
    if (is_cancel(in) && e->out.verdict != SM_V_DUPLICATE)
      cancel_refused(e, in->id, s, en->corr, now);
  } else {
    uint8_t *output = NULL;
    /* The outputs are in memory (read back above; a read-back for an
     * unexpected reply rebuilt them), so this fails only out of memory. */
    int flow_ok = (!flow_needs_outputs(&e->out) || !en->outs_gone) &&
                  note_outputs(e, en, e->out.events, e->out.n_events) == 0 &&
                  saga_output(en, &e->out, &output) == 0 &&
                  note_cancel(en, e->out.events, e->out.n_events) == 0;
    size_t need =
        saga_codec_size(e->out.events, e->out.n_events, now);
    brec_t *r = flow_ok ? malloc(sizeof *r + need) : NULL;
    size_t len = 0;
    if (!r || saga_codec_encode(e->out.events, e->out.n_events, now, r->data,
                                need, &len) != 0 ||
        add_stream(e, en) != 0) {
      /* Cannot record the decision: forget it, the input comes back. */
      free(r);
      free(output);
      SLOG_ERROR(s->id, NULL, "could not encode a transition: reloading");
      note_reload(e, s->id, en->partition);
      entry_free(e, en);
      return 1;
    }
    r->next = NULL;
    r->type = saga_codec_record_type(e->out.events, e->out.n_events);
    r->traceparent[0] = '\0';
    if (in->kind == IN_MSG)
      memcpy(r->traceparent, in->msg.traceparent, sizeof r->traceparent);
    r->len = len;
    if (en->rec_tail)
      en->rec_tail->next = r;
    else
      en->rec_head = r;
    en->rec_tail = r;
    en->nrec++;
    e->nrecords++;
    count_events(e, s);
    if (e->hooks.on_events)
      e->hooks.on_events(e->hooks.arg, &en->obs, s, e->out.events,
                         e->out.n_events, now,
                         in->kind == IN_MSG && in->msg.traceparent[0]
                             ? in->msg.traceparent
                             : NULL);
    free(output);
  }
  for (size_t i = 0; i < e->out.n_effects; i++)
    if (add_fx(e, en, &e->out.effects[i],
               in->kind == IN_MSG && in->msg.kind == SAGAD_MSG_REPLY
                   ? in->received_us
                   : 0) != 0)
      LOG_ERROR("out of memory queueing an effect of saga %s", s->id);
  q_push(&e->done, in);
  /* A finished saga read back only to judge this input need not stay; it
   * goes when the batch settles (later inputs of this turn may need it). */
  if (!en->in_batch && sm_is_terminal(s))
    note_evict(e, s->id);
  return 0;
}

static void index_row(const sagad_engine_t *e, const sm_t *s,
                      int32_t partition, sagad_index_row_t *row) {
  row->saga_id = s->id;
  row->saga_type = s->def->name;
  row->definition_version = s->def->version;
  row->status = sm_status_name((sm_status_t)s->status);
  row->partition = partition;
  row->version = s->version;
  row->started_ms = s->started_ms;
  row->updated_ms = s->updated_ms;
  row->next_deadline_ms = sm_next_timer(s);
  row->stuck_at_ms = sm_stuck_at(s);
  int cur = sm_current_step(s);
  row->current_step = cur < 0 ? NULL : step_name(s, (unsigned)cur);
  row->notify_pending = e->notify && sm_is_terminal(s);
}

static int submit(sagad_engine_t *e) {
  sagad_store_port_t *st = &e->cfg.store;
  st->batch_reset(st->self);
  for (size_t i = 0; i < e->nstreams; i++) {
    entry_t *en = e->streams[i];
    sagad_record_t recs[64];
    sagad_record_t *rv = en->nrec <= 64 ? recs : malloc(en->nrec * sizeof *rv);
    if (!rv)
      return -1;
    size_t k = 0;
    for (brec_t *r = en->rec_head; r; r = r->next, k++)
      rv[k] = (sagad_record_t){
          .type = r->type,
          .data = r->data,
          .len = r->len,
          .traceparent = r->traceparent[0] ? r->traceparent : NULL};
    sagad_index_row_t row;
    index_row(e, ENTRY_SAGA(en), en->partition, &row);
    int rc = st->batch_add(st->self, ENTRY_SAGA(en)->id, en->durable, rv, k);
    if (rv != recs)
      free(rv);
    if (rc < 0 || st->batch_index(st->self, &row) < 0)
      return -1;
  }
  for (size_t i = 0; i < e->nmarks; i++)
    if (st->batch_notified && st->batch_notified(st->self, e->marks[i]) < 0)
      return -1;
  if (st->batch_submit(st->self) != 0)
    return -1;
  e->nmarks = 0; /* resubmitted with the batch after RETRY */
  e->in_flight = 1;
  if (e->hooks.on_batch_submit)
    e->hooks.on_batch_submit(e->hooks.arg, e->nstreams, e->nrecords);
  return 0;
}

static void schedule_retry(sagad_engine_t *e) {
  e->backoff_ms = e->backoff_ms ? e->backoff_ms * 2 : 50;
  if (e->backoff_ms > 2000)
    e->backoff_ms = 2000;
  e->retry_wait = 1;
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  e->cfg.clock.wake_at(e->cfg.clock.self, SAGAD_WAKE_RETRY,
                       now + e->backoff_ms);
}

/* The batch is settled: perform the effects of the streams that committed,
 * ack their inputs; streams that did not commit are dropped and read back,
 * and their inputs stepped again (design.md invariant 5). */
static void settle(sagad_engine_t *e) {
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  int any_failed = 0;
  for (size_t i = 0; i < e->nfx; i++) {
    if (i == e->nfx / 2 && i > 0)
      FAULT_POINT("mid_batch"); /* half of the batch's effects are out */
    if (!e->fx[i].en->failed &&
        perform(e, e->fx[i].en, &e->fx[i].fx, now) && e->fx[i].reply_us &&
        e->hooks.on_reply_command)
      e->hooks.on_reply_command(e->hooks.arg, e->fx[i].reply_us);
  }
  if (e->nfx)
    FAULT_POINT("after_produce_before_ack"); /* inputs not yet acked */
  e->nfx = 0;
  rearm(e);
  /* Inputs of failed sagas go back to the front of the queue, in order. */
  queue_t again = {0};
  input_t *in;
  while ((in = q_pop(&e->done))) {
    entry_t *en = lookup(e, in->id);
    if (en && en->failed)
      q_push(&again, in);
    else
      input_done(e, in);
  }
  if (again.head) {
    again.tail->next = e->pending.head;
    if (!e->pending.head)
      e->pending.tail = again.tail;
    e->pending.head = again.head;
  }
  evict_noted(e);
  for (size_t i = 0; i < e->nstreams; i++) {
    entry_t *en = e->streams[i];
    if (en->failed) {
      char id[SM_ID_MAX + 1];
      int32_t part = en->partition;
      int conflict = en->failed == 2;
      memcpy(id, ENTRY_SAGA(en)->id, strlen(ENTRY_SAGA(en)->id) + 1);
      entry_free(e, en);
      int failed = 0;
      /* Resumed, kept even if terminal, with its final notification
       * sent: the store may hold transitions whose effects no one
       * performed -- our own commit whose answer was lost, or a fenced
       * owner's (found by tests/sim, seeds 16 and 401). */
      (void)load_one(e, id, part, LOAD_READ_BACK_UNACTED, &failed);
      if (failed)
        note_reload(e, id, part);
      if (!conflict || failed)
        any_failed = 1;
      continue;
    }
    free_records(en);
    en->in_batch = 0;
    en->durable = ENTRY_SAGA(en)->version;
    if (en->revoked || sm_is_terminal(ENTRY_SAGA(en)))
      entry_free(e, en);
  }
  e->nstreams = 0;
  e->nrecords = 0;
  outs_trim(e);
  if (any_failed)
    schedule_retry(e); /* do not spin on a stream that keeps failing */
  else
    e->backoff_ms = 0;
}

static void maybe_stopped(sagad_engine_t *e) {
  if (e->stopping && e->stop_done && !e->in_flight && !e->retry_wait &&
      !e->pending.head && !e->nstreams) {
    void (*cb)(void *) = e->stop_done;
    e->stop_done = NULL;
    cb(e->stop_arg);
  }
}

static void pump(sagad_engine_t *e) {
  if (e->in_flight || e->retry_wait) {
    maybe_stopped(e);
    return;
  }
  if (e->stopping)
    e->nreload = 0; /* the next owner recovers them */
  if (e->nreload && reload_noted(e)) {
    schedule_retry(e); /* the store is unreadable: inputs wait too */
    return;
  }
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  size_t max = e->cfg.batch_max_events;
  input_t *in;
  int waiting = 0;
  while (e->nrecords < max && (in = q_pop(&e->pending))) {
    if (step_input(e, in, now)) {
      /* Store unreadable: put it back and try again later. */
      in->next = e->pending.head;
      e->pending.head = in;
      if (!e->pending.tail)
        e->pending.tail = in;
      waiting = 1;
      break;
    }
  }
  if (e->nstreams) {
    if (submit(e) != 0) {
      LOG_ERROR("could not build the append batch: %s",
                e->cfg.store.last_error(e->cfg.store.self));
      schedule_retry(e);
    }
  } else {
    settle(e); /* nothing to append: effects (re-armed timers), acks */
    if (waiting)
      schedule_retry(e);
  }
  if (!e->in_flight && !e->retry_wait && e->pending.head)
    request_turn(e); /* batch.max_events reached with input left */
  maybe_stopped(e);
}

/* ---- entry points --------------------------------------------------- */

static void dletter_free(dletter_t *dl) {
  free(dl->h);
  free(dl->key);
  free(dl->value);
  free(dl);
}

static void dletter_send(sagad_engine_t *e, dletter_t *dl);

static void dletter_hold(sagad_engine_t *e, dletter_t *dl, const char *why) {
  if (!dl->held) {
    dl->held = 1;
    e->c.dead_letters_blocked++;
    LOG_ERROR("dead letter of %s could not be written to %s (%s): its "
              "offset is not committed; retrying every %d ms",
              dl->where, e->dlq, why, OUTBOX_RETRY_MS);
  }
  dl->next = e->dl_retry;
  e->dl_retry = dl;
  arm_retry(e, &e->dl_armed, TMR_DLQ);
}

static void dletter_send(sagad_engine_t *e, dletter_t *dl) {
  /* The kept headers, then the cut's own (the port copies the list). */
  saga__hdrs_t h;
  saga__hdrs_init(&h);
  int ok = 1;
  for (size_t i = 0; ok && i < dl->h->n; i++)
    ok = saga__hdrs_add(&h, dl->h->h[i].name, dl->h->h[i].value,
                        dl->h->h[i].len) == 0;
  if (ok && dl->size[0])
    ok = saga__hdrs_add_text(&h, SAGA_HDR_DLQ_SIZE, dl->size) == 0 &&
         saga__hdrs_add_text(&h, SAGA_HDR_DLQ_TRUNCATED, dl->cut) == 0;
  dlq_token_t *t = ok ? calloc(1, sizeof *t) : NULL;
  if (t) {
    t->dl = dl;
    int rc = e->cfg.broker.produce(e->cfg.broker.self, e->dlq, dl->key,
                                   dl->key_len, dl->value, dl->value_len,
                                   &h, t);
    saga__hdrs_free(&h);
    if (rc == 0)
      return; /* acked once the dead letter is delivered */
  }
  saga__hdrs_free(&h);
  free(t);
  dletter_hold(e, dl, "could not produce");
}

static size_t headers_size(const saga__hdr_view_t *v) {
  size_t n = 0;
  saga__hdr_t h;
  for (size_t i = 0; v->at && v->at(v->src, i, &h) == 0; i++)
    n += strlen(h.name) + h.len + 8;
  return n;
}

static dletter_t *dletter_new(sagad_engine_t *e, const sagad_inmsg_t *m,
                              const char *reason, size_t value_keep,
                              size_t key_keep, int drop_headers) {
  dletter_t *dl = calloc(1, sizeof *dl);
  if (!dl)
    return NULL;
  snprintf(dl->where, sizeof dl->where, "%.60s/%d/%lld", m->topic,
           (int)m->partition, (long long)m->offset);
  dl->ack = m->ack;
  dl->key_len = key_keep;
  dl->value_len = value_keep;
  dl->key = malloc(key_keep ? key_keep : 1);
  dl->value = malloc(value_keep ? value_keep : 1);
  saga__hdrs_t h;
  char where[512];
  if (sagad_msg_dlq_headers(drop_headers ? NULL : &m->hdrs, reason,
                            m->topic, m->partition, m->offset, where,
                            sizeof where, &h) == 0) {
    saga__hdr_view_t v = saga__hdrs_view(&h);
    dl->h = saga__hdr_copy(&v); /* owned: h borrows from m and where */
    saga__hdrs_free(&h);
  }
  if (!dl->key || !dl->value || !dl->h) {
    dletter_free(dl);
    return NULL;
  }
  if (key_keep)
    memcpy(dl->key, m->key, key_keep);
  if (value_keep)
    memcpy(dl->value, m->value, value_keep);
  if (value_keep < m->value_len || key_keep < m->key_len || drop_headers) {
    snprintf(dl->size, sizeof dl->size, "%zu", m->value_len);
    snprintf(dl->cut, sizeof dl->cut,
             "value: first %zu of %zu bytes kept; key: %zu of %zu bytes; "
             "source headers: %s",
             value_keep, m->value_len, key_keep, m->key_len,
             drop_headers ? "dropped" : "kept");
    e->c.dead_letters_truncated++;
    LOG_WARN("dead letter of %s cut to fit the producer's %zu bytes: %s",
             dl->where, e->cfg.produce_max_bytes, dl->cut);
  }
  return dl;
}

static void dead_letter(sagad_engine_t *e, const sagad_inmsg_t *m,
                        const char *reason, const char *why) {
  e->c.dead_lettered++;
  if (e->hooks.on_dead_letter)
    e->hooks.on_dead_letter(e->hooks.arg, why);
  LOG_WARN("dead letter from %s/%d offset %lld: %s", m->topic,
           (int)m->partition, (long long)m->offset, reason);
  /* What fits the producer's message.max.bytes, with room for our own
   * headers and the record's framing. */
  size_t max = e->cfg.produce_max_bytes;
  size_t room = max > 4 * DLQ_HEADERS_MAX ? max - 2 * DLQ_HEADERS_MAX
                                          : max / 2;
  size_t hsize = headers_size(&m->hdrs);
  int drop = hsize > DLQ_HEADERS_MAX;
  size_t key_keep = m->key_len > DLQ_KEY_MAX ? DLQ_KEY_MAX : m->key_len;
  size_t value_keep = m->value_len;
  if (drop || key_keep < m->key_len ||
      m->value_len + key_keep + hsize > room)
    value_keep = m->value_len < DLQ_VALUE_PREFIX ? m->value_len
                                                 : DLQ_VALUE_PREFIX;
  if (value_keep > room / 2)
    value_keep = room / 2;
  /* saga-dlq-reason: "<class>: <text>", the class being the reason label
   * of saga_dead_letters_total (docs/protocol.md lists them). */
  char header[640];
  snprintf(header, sizeof header, "%s: %s", why, reason);
  dletter_t *dl = dletter_new(e, m, header, value_keep, key_keep, drop);
  if (!dl) {
    /* Not acked: the input comes back after a restart. */
    e->c.dead_letters_blocked++;
    LOG_ERROR("out of memory writing the dead letter of %s/%d offset %lld: "
              "its offset is not committed",
              m->topic, (int)m->partition, (long long)m->offset);
    return;
  }
  dletter_send(e, dl);
}

static void rejected_delivered(void *arg, int status) {
  sagad_engine_t *e = arg;
  if (status == SAGAD_DELIVERY_OK)
    return;
  e->c.produce_errors++;
  LOG_ERROR("a REJECTED notification was not delivered to %s: %s", e->notify,
            sagad_delivery_text(status));
}

/* Tell the starter that its StartSaga is refused (docs/protocol.md: a
 * REJECTED notification carrying its correlation-id), as well as
 * dead-lettering it: an unknown saga type or version, an input no command
 * can carry. */
static void reject(sagad_engine_t *e, const sagad_msg_t *msg,
                   const char *reason) {
  if (!e->notify)
    return;
  sagad_notification_t n = {
      .saga_id = msg->saga_id,
      .saga_type = msg->saga_type,
      .def_version = msg->def_version,
      .kind = SM_NOTIFY_REJECTED,
      .reason = reason,
      .at_ms = e->cfg.clock.now_ms(e->cfg.clock.self),
      .correlation_id = msg->correlation_id,
  };
  SLOG_WARN(msg->saga_id, NULL, "start refused: %s", reason);
  produce_notification(e, &n, rejected_delivered);
}

void sagad_engine_on_message(sagad_engine_t *e, const sagad_inmsg_t *m) {
  if (e->stopping)
    return; /* not acked: redelivered to whoever runs next */
  e->c.inputs++;
  input_t *in = calloc(1, sizeof *in);
  char err[512];
  const char *why = "invalid";
  if (!in) {
    LOG_ERROR("out of memory taking an input");
    return;
  }
  if (sagad_msg_decode(m->value, m->value_len, &m->hdrs,
                       e->cfg.payload_max_bytes, &in->msg, err,
                       sizeof err) != 0) {
    free(in);
    dead_letter(e, m, err, "undecodable");
    return;
  }
  if (strlen(in->msg.saga_id) > SM_ID_MAX) { /* the wire's ceiling too */
    snprintf(err, sizeof err, "saga_id is %zu bytes long, the ceiling is %d",
             strlen(in->msg.saga_id), SM_ID_MAX);
    why = "invalid_id";
    goto dlq;
  }
  if (in->msg.kind == SAGAD_MSG_START &&
      !saga_registry_find(e->cfg.registry, in->msg.saga_type,
                          in->msg.def_version)) {
    if (in->msg.def_version &&
        saga_registry_find(e->cfg.registry, in->msg.saga_type, 0))
      snprintf(err, sizeof err,
               "saga type \"%s\" has no definition version %u loaded",
               in->msg.saga_type, (unsigned)in->msg.def_version);
    else
      snprintf(err, sizeof err, "unknown saga type \"%s\"%s",
               in->msg.saga_type,
               in->msg.def_version ? " (no version of it is loaded)" : "");
    why = "unknown_type";
    reject(e, &in->msg, err);
    goto dlq;
  }
  if (in->msg.kind == SAGAD_MSG_START &&
      in->msg.payload_len > e->input_max) {
    snprintf(err, sizeof err,
             "input of %zu bytes: its commands could never be sent (a "
             "command carries the input plus up to %d bytes, "
             "kafka.message.max.bytes is %zu): inputs up to %zu bytes are "
             "taken",
             in->msg.payload_len, SAGAD_COMMAND_ENVELOPE,
             e->cfg.produce_max_bytes, e->input_max);
    why = "input_too_large";
    reject(e, &in->msg, err);
    goto dlq;
  }
  memcpy(in->id, in->msg.saga_id, strlen(in->msg.saga_id) + 1);
  in->kind = IN_MSG;
  in->partition = m->partition;
  in->ack = m->ack;
  in->received_us = m->received_us;
  q_push(&e->pending, in);
  request_turn(e);
  return;
dlq:
  input_free(in);
  dead_letter(e, m, err, why);
}

void sagad_engine_on_delivery(sagad_engine_t *e, void *token, int status) {
  if (!token)
    return;
  dlq_token_t *t = token;
  if (t->dl) {
    dletter_t *dl = t->dl;
    free(t);
    if (status != SAGAD_DELIVERY_OK) {
      if (status == SAGAD_DELIVERY_TOO_LARGE &&
          dl->value_len > DLQ_SHRUNK_PREFIX) {
        /* The broker's limit is below the producer's: keep less. */
        if (!dl->size[0])
          snprintf(dl->size, sizeof dl->size, "%zu", dl->value_len);
        snprintf(dl->cut, sizeof dl->cut,
                 "the broker refused %zu bytes: value cut to %d bytes, "
                 "source headers kept",
                 dl->value_len, DLQ_SHRUNK_PREFIX);
        dl->value_len = DLQ_SHRUNK_PREFIX;
        e->c.dead_letters_truncated++;
        LOG_WARN("dead letter of %s: %s", dl->where, dl->cut);
        dletter_send(e, dl);
        return;
      }
      dletter_hold(e, dl, sagad_delivery_text(status));
      return;
    }
    if (dl->held) {
      e->c.dead_letters_blocked--;
      LOG_INFO("dead letter of %s written to %s at last", dl->where, e->dlq);
    }
    e->cfg.broker.ack(e->cfg.broker.self, dl->ack);
    dletter_free(dl);
    return;
  }
  if (t->ob) {
    outbox_t *ob = t->ob;
    free(t);
    if (status != SAGAD_DELIVERY_OK) {
      SLOG_WARN(ob->id, NULL, "final notification not delivered to %s (%s): "
                              "sending it again in %d ms",
                e->notify, sagad_delivery_text(status), OUTBOX_RETRY_MS);
      e->c.produce_errors++;
      outbox_retry_later(e, ob);
      return;
    }
    note_notified(e, ob->id);
    outbox_free(ob);
    return;
  }
  if (t->done) {
    t->done(t->arg, status);
    free(t);
    return;
  }
  if (status != SAGAD_DELIVERY_OK)
    LOG_ERROR("dead letter not delivered to %s: %s", e->dlq,
              sagad_delivery_text(status));
  e->cfg.broker.ack(e->cfg.broker.self, t->ack);
  free(t);
}

static int part_in(int32_t p, const int32_t *parts, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (parts[i] == p)
      return 1;
  return 0;
}

int sagad_engine_on_assign(sagad_engine_t *e, const int32_t *parts, size_t n) {
  e->nparts += n;
  if (!n)
    return 0;
  /* A saga of a partition revoked while its batch was in flight is still
   * here, marked to go when the batch settles; the loader skips it as in
   * memory. Keep it: the batch's outcome brings it up to date (a conflict
   * reads it back), or no one would drive it (found by tests/sim, seed
   * 354186, now pinned as 156: revoked, assigned back before its slow
   * batch landed). */
  for (size_t b = 0; b < e->nbuckets; b++)
    for (entry_t *en = e->buckets[b]; en; en = en->hnext)
      if (en->revoked && part_in(en->partition, parts, n)) {
        en->revoked = 0;
        SLOG_DEBUG(ENTRY_SAGA(en)->id, NULL,
                   "assigned back while its batch is in flight: kept");
      }
  loader_t L = {.e = e, .mode = LOAD_RECOVER};
  int rc = e->cfg.store.load_partitions(e->cfg.store.self, parts, n,
                                        loader_record, &L);
  loader_finish(&L);
  rearm(e);
  outs_trim(e);
  LOG_INFO("recovered %zu sagas of %zu assigned partitions", L.loaded, n);
  if (rc != 0)
    LOG_ERROR("could not recover the sagas of assigned partitions: %s",
              e->cfg.store.last_error(e->cfg.store.self));
  return rc;
}

void sagad_engine_on_revoke(sagad_engine_t *e, const int32_t *parts,
                            size_t n) {
  e->nparts = e->nparts > n ? e->nparts - n : 0;
  /* Queued inputs of those partitions belong to the next owner now. */
  queue_t keep = {0};
  input_t *in;
  while ((in = q_pop(&e->pending))) {
    int32_t p = in->partition;
    if (in->kind == IN_TIMER) {
      entry_t *en = lookup(e, in->id);
      p = en ? en->partition : -1;
    }
    if (part_in(p, parts, n))
      input_free(in); /* not acked: kafka_loop still commits acks made
                         during the revoke, and this input is not durable;
                         the next owner reads it again (found by tests/sim,
                         seed 13) */
    else
      q_push(&keep, in);
  }
  e->pending = keep;
  size_t kept = 0;
  for (size_t i = 0; i < e->nreload; i++)
    if (!part_in(e->reload[i].partition, parts, n))
      e->reload[kept++] = e->reload[i];
  e->nreload = kept;
  size_t dropped = 0;
  for (size_t b = 0; b < e->nbuckets; b++) {
    entry_t *en = e->buckets[b];
    while (en) {
      entry_t *next = en->hnext;
      if (part_in(en->partition, parts, n)) {
        dropped++;
        if (en->in_batch)
          en->revoked = 1; /* freed once its batch settles */
        else
          entry_free(e, en);
      }
      en = next;
    }
  }
  LOG_INFO("released %zu sagas of %zu revoked partitions", dropped, n);
}

void sagad_engine_on_batch_done(sagad_engine_t *e, int status) {
  e->in_flight = 0;
  if (e->hooks.on_batch_done)
    e->hooks.on_batch_done(e->hooks.arg, status);
  if (status == SAGAD_STORE_RETRY) {
    /* Outcome unknown (connection lost): nothing is acted on; submit the
     * same batch again, a lost commit then answers DUPLICATE. */
    e->c.append_retries++;
    LOG_WARN("append failed, retrying: %s",
             e->cfg.store.last_error(e->cfg.store.self));
    schedule_retry(e);
    e->retry_wait = 2; /* resubmit, not restep */
    return;
  }
  size_t ok = 0;
  for (size_t i = 0; i < e->nstreams; i++) {
    int st = e->cfg.store.batch_status(e->cfg.store.self, i);
    entry_t *en = e->streams[i];
    if (st == SAGAD_STORE_OK) {
      ok += en->nrec;
      if (e->hooks.on_durable)
        e->hooks.on_durable(e->hooks.arg, en->obs, ENTRY_SAGA(en));
      continue;
    }
    if (st == SAGAD_STORE_DUPLICATE) {
      /* Committed before, its acknowledgement lost. The stream may have
       * moved on since -- by another owner, if the partition went away
       * and came back meanwhile (tests/sim, seed 20786: the saga was kept
       * at the version of its batch and waited for ever) -- so it is read
       * back like a conflict, and resumed from what the store holds. */
      ok += en->nrec;
      if (e->hooks.on_durable) /* committed, before it is read back */
        e->hooks.on_durable(e->hooks.arg, en->obs, ENTRY_SAGA(en));
      en->failed = 2;
      SLOG_DEBUG(ENTRY_SAGA(en)->id, NULL,
                 "already committed (its acknowledgement was lost): "
                 "reading it back");
      continue;
    }
    en->failed = st == SAGAD_STORE_CONFLICT ? 2 : 1;
    if (st == SAGAD_STORE_CONFLICT) {
      e->c.conflicts++;
      SLOG_WARN(ENTRY_SAGA(en)->id, NULL,
                "version conflict: another owner advanced the saga, "
                "reloading it");
    } else if (st == SAGAD_STORE_FATAL) {
      SLOG_ERROR(ENTRY_SAGA(en)->id, NULL, "the store refused the append: %s",
                 e->cfg.store.last_error(e->cfg.store.self));
    }
  }
  if (ok) {
    e->c.batches++;
    e->c.records += ok;
    FAULT_POINT("after_append"); /* durable, nothing performed or acked */
  }
  settle(e);
  pump(e);
}

/* Send again everything on the retry list of kind (TMR_DLQ, TMR_OUTBOX). */
static void retry_fire(sagad_engine_t *e, uint8_t kind) {
  if (kind == TMR_DLQ) {
    dletter_t *dl = e->dl_retry, *n;
    e->dl_retry = NULL;
    e->dl_armed = 0;
    for (; dl; dl = n)
      n = dl->next, dletter_send(e, dl);
  } else {
    outbox_t *ob = e->ob_retry, *n;
    e->ob_retry = NULL;
    e->ob_armed = 0;
    for (; ob; ob = n)
      n = ob->next, outbox_send(e, ob);
  }
}

void sagad_engine_on_wake(sagad_engine_t *e, int slot) {
  if (slot == SAGAD_WAKE_RETRY) {
    int resubmit = e->retry_wait == 2;
    e->retry_wait = 0;
    if (resubmit) {
      if (e->cfg.store.batch_submit(e->cfg.store.self) == 0)
        e->in_flight = 1;
      else
        schedule_retry(e), e->retry_wait = 2;
      return;
    }
    pump(e);
    return;
  }
  e->armed_at = 0;
  int64_t now = e->cfg.clock.now_ms(e->cfg.clock.self);
  while (e->nheap && e->heap[0].at <= now) {
    tmr_t t = e->heap[0];
    heap_pop(e);
    if (t.timer == TMR_DLQ || t.timer == TMR_OUTBOX) { /* no id */
      retry_fire(e, t.timer);
      continue;
    }
    if (!t.id || !lookup(e, t.id)) {
      free(t.id);
      continue;
    }
    input_t *in = calloc(1, sizeof *in);
    if (!in) {
      free(t.id);
      break;
    }
    in->kind = IN_TIMER;
    memcpy(in->id, t.id, strlen(t.id) + 1);
    free(t.id);
    in->timer.type = SM_IN_TIMER;
    in->timer.step = t.step;
    in->timer.action = t.action;
    in->timer.attempt = t.attempt;
    in->timer.timer = t.timer;
    q_push(&e->pending, in);
  }
  rearm(e);
  pump(e);
}

void sagad_engine_on_turn_end(sagad_engine_t *e) { pump(e); }

void sagad_engine_stop(sagad_engine_t *e, void (*done)(void *), void *arg) {
  e->stopping = 1;
  e->stop_done = done;
  e->stop_arg = arg;
  pump(e);
}

/* ---- life cycle ----------------------------------------------------- */

static char *dup_or_null(const char *s) {
  return s && *s ? strdup(s) : NULL;
}

sagad_engine_t *sagad_engine_new(const sagad_engine_config_t *cfg) {
  sagad_engine_t *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  e->cfg = *cfg;
  if (!e->cfg.batch_max_events)
    e->cfg.batch_max_events = 1024;
  if (!e->cfg.payload_max_bytes)
    e->cfg.payload_max_bytes = (size_t)1 << 20;
  if (!e->cfg.produce_max_bytes)
    e->cfg.produce_max_bytes = 1000000;
  e->outs_max = e->cfg.output_cache_bytes ? e->cfg.output_cache_bytes
                                           : (size_t)256 << 20;
  e->input_max = e->cfg.payload_max_bytes;
  size_t room = e->cfg.produce_max_bytes > SAGAD_COMMAND_ENVELOPE
                    ? e->cfg.produce_max_bytes - SAGAD_COMMAND_ENVELOPE
                    : 0;
  if (room < e->input_max) {
    e->input_max = room;
    LOG_WARN("kafka.message.max.bytes is %zu: a command carries the saga "
             "input plus up to %d bytes, so StartSaga inputs above %zu bytes "
             "are refused (payload.max_bytes is %zu); raise "
             "kafka.message.max.bytes, and the brokers' and topics' limits, "
             "to take inputs up to the ceiling",
             e->cfg.produce_max_bytes, SAGAD_COMMAND_ENVELOPE, room,
             e->cfg.payload_max_bytes);
  }
  e->rng.state = cfg->rng_seed;
  e->inbox = dup_or_null(cfg->inbox_topic);
  e->notify = dup_or_null(cfg->notify_topic);
  e->dlq = dup_or_null(cfg->dlq_topic);
  e->nbuckets = 1024;
  e->buckets = calloc(e->nbuckets, sizeof *e->buckets);
  if (!e->inbox || !e->dlq || !e->buckets) {
    sagad_engine_free(e);
    return NULL;
  }
  return e;
}

void sagad_engine_free(sagad_engine_t *e) {
  if (!e)
    return;
  input_t *in;
  while ((in = q_pop(&e->pending)))
    input_free(in);
  while ((in = q_pop(&e->done)))
    input_free(in);
  if (e->buckets)
    for (size_t b = 0; b < e->nbuckets; b++)
      for (entry_t *en = e->buckets[b], *n; en; en = n) {
        n = en->hnext;
        free_records(en);
        if (en->obs && e->hooks.on_forget)
          e->hooks.on_forget(e->hooks.arg, en->obs);
        free(en->input);
        free(en->outs);
        free(en->cancelled);
        free(en->corr);
        free(en);
      }
  free(e->buckets);
  for (size_t i = 0; i < e->nheap; i++)
    free(e->heap[i].id);
  free(e->streams);
  free(e->fx);
  free(e->heap);
  free(e->evict);
  free(e->reload);
  free(e->marks);
  for (outbox_t *ob = e->ob_retry, *n; ob; ob = n) {
    n = ob->next;
    outbox_free(ob);
  }
  for (dletter_t *dl = e->dl_retry, *n; dl; dl = n) {
    n = dl->next;
    dletter_free(dl);
  }
  saga_record_clear(&e->rec);
  free(e->inbox);
  free(e->notify);
  free(e->dlq);
  free(e);
}

const sagad_counters_t *sagad_engine_counters(const sagad_engine_t *e) {
  return &e->c;
}

size_t sagad_engine_sagas(const sagad_engine_t *e) { return e->nsagas; }

void sagad_engine_set_hooks(sagad_engine_t *e, const sagad_engine_hooks_t *h) {
  if (h)
    e->hooks = *h;
  else
    memset(&e->hooks, 0, sizeof e->hooks);
}

void sagad_engine_foreach(sagad_engine_t *e,
                          void (*fn)(void *arg, const sm_t *s,
                                     int32_t partition, void **obs),
                          void *arg) {
  for (size_t b = 0; b < e->nbuckets; b++)
    for (entry_t *en = e->buckets[b]; en; en = en->hnext)
      fn(arg, ENTRY_SAGA(en), en->partition, &en->obs);
}

const sm_t *sagad_engine_find(const sagad_engine_t *e, const char *id) {
  entry_t *en = lookup(e, id);
  return en ? ENTRY_SAGA(en) : NULL;
}

int sagad_engine_produce(sagad_engine_t *e, const char *topic,
                         const void *key, size_t key_len, const void *value,
                         size_t value_len, const saga__hdrs_t *hdrs,
                         void (*done)(void *arg, int status), void *arg) {
  dlq_token_t *t = calloc(1, sizeof *t);
  if (!t)
    return -1;
  t->done = done;
  t->arg = arg;
  if (e->cfg.broker.produce(e->cfg.broker.self, topic, key, key_len, value,
                            value_len, hdrs, t) != 0) {
    free(t);
    return -1;
  }
  return 0;
}

size_t sagad_engine_partitions(const sagad_engine_t *e) { return e->nparts; }

size_t sagad_engine_input_max(const sagad_engine_t *e) {
  return e->input_max;
}

void sagad_engine_forget_token(void *token) {
  dlq_token_t *t = token;
  if (t) {
    outbox_free(t->ob);
    if (t->dl)
      dletter_free(t->dl);
  }
  free(t);
}
