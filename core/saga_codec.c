/* sm_event_t <-> saga.v1.SagaTransition (protobuf-c). Times inside a
 * record are stored relative to its at_ms, so they stay short varints and
 * replay gets back the exact absolute values. */
#include "saga_codec.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_events.pb-c.h"

#define MAX_DELTA_MS (400LL * 86400000LL) /* far beyond any timeout */

/* The protobuf view of one transition, built on the stack. */
typedef struct {
  Saga__V1__SagaTransition tx;
  Saga__V1__SagaEvent ev[SM_MAX_OUT];
  Saga__V1__SagaEvent *ptr[SM_MAX_OUT];
  char reason[SM_MAX_OUT][SAGA_CODEC_MAX_REASON + 1];
} view_t;

/* A reason cut at SAGA_CODEC_MAX_REASON bytes may end inside a UTF-8
 * sequence: drop that partial character, so the stored text stays valid
 * UTF-8 (the history and the admin API show it as JSON text). */
static void cut_at_char(char *s) {
  size_t n = strlen(s);
  if (n < SAGA_CODEC_MAX_REASON)
    return;
  size_t k = n;
  while (k > 0 && ((unsigned char)s[k - 1] & 0xC0) == 0x80)
    k--;
  if (k > 0 && ((unsigned char)s[k - 1] & 0x80)) {
    unsigned char lead = (unsigned char)s[k - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (k - 1) < want)
      s[k - 1] = '\0';
  }
}

static int build(view_t *v, const sm_event_t *ev, size_t n, int64_t at_ms) {
  if (ev == NULL || n == 0 || n > SM_MAX_OUT)
    return SAGA_CORE_EINVAL;
  saga__v1__saga_transition__init(&v->tx);
  v->tx.at_ms = at_ms;
  v->tx.n_events = n;
  v->tx.events = v->ptr;
  for (size_t i = 0; i < n; i++) {
    const sm_event_t *e = &ev[i];
    Saga__V1__SagaEvent *p = &v->ev[i];
    saga__v1__saga_event__init(p);
    v->ptr[i] = p;
    p->type = (Saga__V1__SagaEventType)e->type;
    p->step = e->step;
    p->compensate = e->action == SM_COMPENSATE;
    p->attempt = e->attempt;
    p->outcome = (Saga__V1__SagaEventOutcome)e->outcome;
    p->until_delta_ms = e->until_ms ? (uint64_t)(e->until_ms - at_ms) : 0;
    if (e->def_name != NULL)
      p->definition = (char *)(uintptr_t)e->def_name;
    p->definition_version = e->def_version;
    p->payload.data = (uint8_t *)(uintptr_t)e->payload;
    p->payload.len = e->payload ? e->payload_len : 0;
    if (e->reason != NULL) {
      snprintf(v->reason[i], sizeof v->reason[i], "%s", e->reason);
      cut_at_char(v->reason[i]);
      p->reason = v->reason[i];
    }
    if (e->correlation_id != NULL)
      p->correlation_id = (char *)(uintptr_t)e->correlation_id;
    if (e->who != NULL) {
      if (strlen(e->who) > SM_ID_MAX)
        return SAGA_CORE_EINVAL; /* the wire bounds it: cannot happen */
      p->operator_ = (char *)(uintptr_t)e->who;
    }
  }
  return SAGA_CORE_OK;
}

int saga_codec_encode_into(const sm_event_t *ev, size_t n, int64_t at_ms,
                           uint8_t *(*place)(void *arg, size_t len),
                           void *arg, uint8_t **out, size_t *len) {
  view_t v;
  int rc = build(&v, ev, n, at_ms);
  if (rc != SAGA_CORE_OK || place == NULL || out == NULL || len == NULL)
    return rc != SAGA_CORE_OK ? rc : SAGA_CORE_EINVAL;
  size_t size = saga__v1__saga_transition__get_packed_size(&v.tx);
  uint8_t *buf = place(arg, size);
  if (buf == NULL)
    return SAGA_CORE_ENOMEM;
  *len = saga__v1__saga_transition__pack(&v.tx, buf);
  *out = buf;
  return SAGA_CORE_OK;
}

size_t saga_codec_size(const sm_event_t *ev, size_t n, int64_t at_ms) {
  view_t v;
  if (build(&v, ev, n, at_ms) != SAGA_CORE_OK)
    return 0;
  return saga__v1__saga_transition__get_packed_size(&v.tx);
}

int saga_codec_encode(const sm_event_t *ev, size_t n, int64_t at_ms,
                      uint8_t *buf, size_t cap, size_t *len) {
  view_t v;
  int rc = build(&v, ev, n, at_ms);
  if (rc != SAGA_CORE_OK || buf == NULL || len == NULL)
    return rc != SAGA_CORE_OK ? rc : SAGA_CORE_EINVAL;
  if (saga__v1__saga_transition__get_packed_size(&v.tx) > cap)
    return SAGA_CORE_ETOOBIG;
  *len = saga__v1__saga_transition__pack(&v.tx, buf);
  return SAGA_CORE_OK;
}

/* ---- the record's buffer: protobuf-c allocates from it ----------------
 * A bump allocator over rec->buf; what does not fit goes to malloc'd
 * blocks chained on rec->spill (the unpacked message is never freed piece
 * by piece: a reset drops it all). */

#define BUF_ALIGN 16
#define BUF_FIRST 2048

typedef struct spill {
  struct spill *next;
  max_align_t pad[];
} spill_t;

static void *rec_alloc(void *arg, size_t size) {
  saga_record_t *rec = arg;
  size_t n = (size + BUF_ALIGN - 1) & ~(size_t)(BUF_ALIGN - 1);
  if (n < size)
    return NULL;
  rec->buf_want += n;
  if (rec->buf != NULL && rec->buf_cap - rec->buf_used >= n) {
    void *p = rec->buf + rec->buf_used;
    rec->buf_used += n;
    return p;
  }
  if (n > SIZE_MAX - sizeof(spill_t))
    return NULL;
  spill_t *b = malloc(sizeof *b + n);
  if (b == NULL)
    return NULL;
  b->next = rec->spill;
  rec->spill = b;
  return b->pad;
}

static void rec_free(void *arg, void *p) {
  (void)arg, (void)p; /* dropped at the next reset */
}

void saga_record_reset(saga_record_t *rec) {
  if (rec == NULL)
    return;
  bool spilled = rec->spill != NULL;
  for (spill_t *b = rec->spill, *next; b != NULL; b = next) {
    next = b->next;
    free(b);
  }
  rec->spill = NULL;
  if (spilled || rec->buf == NULL) {
    /* room for everything the last decode asked for, at the next one */
    size_t cap = rec->buf_cap ? rec->buf_cap : BUF_FIRST;
    while (cap < rec->buf_want && cap <= SIZE_MAX / 2)
      cap *= 2;
    uint8_t *buf = malloc(cap);
    if (buf != NULL) {
      free(rec->buf);
      rec->buf = buf;
      rec->buf_cap = cap;
    }
  }
  rec->buf_used = 0;
  rec->buf_want = 0;
  rec->pb = NULL;
  rec->n = 0;
  rec->at_ms = 0;
}

void saga_record_clear(saga_record_t *rec) {
  if (rec == NULL)
    return;
  for (spill_t *b = rec->spill, *next; b != NULL; b = next) {
    next = b->next;
    free(b);
  }
  free(rec->buf);
  memset(rec, 0, sizeof *rec);
}

static bool valid(const Saga__V1__SagaEvent *p) {
  if (p->type < SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_STARTED ||
      p->type > SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_CANCEL_REQUESTED)
    return false;
  if (p->step >= SAGA_DEF_MAX_STEPS || p->attempt > UINT16_MAX ||
      (unsigned)p->outcome > SM_OUTCOME_TIMEOUT ||
      p->until_delta_ms > (uint64_t)MAX_DELTA_MS)
    return false;
  if (p->type == SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_STARTED &&
      (p->definition == NULL || p->definition[0] == '\0'))
    return false;
  if (p->correlation_id != NULL && strlen(p->correlation_id) > SM_ID_MAX)
    return false;
  if (p->operator_ != NULL && strlen(p->operator_) > SM_ID_MAX)
    return false;
  return true;
}

int saga_codec_decode(const uint8_t *buf, size_t len, saga_record_t *rec) {
  if (rec == NULL || (buf == NULL && len > 0))
    return SAGA_CORE_EINVAL;
  saga_record_reset(rec);
  ProtobufCAllocator a = {.alloc = rec_alloc, .free = rec_free,
                          .allocator_data = rec};
  Saga__V1__SagaTransition *tx =
      saga__v1__saga_transition__unpack(&a, len, buf);
  if (tx == NULL) {
    saga_record_clear(rec); /* as before: nothing left to free */
    return SAGA_CORE_EDECODE;
  }
  if (tx->n_events == 0 || tx->n_events > SM_MAX_OUT || tx->at_ms < 0 ||
      tx->at_ms > INT64_MAX - MAX_DELTA_MS)
    goto bad;
  for (size_t i = 0; i < tx->n_events; i++) {
    const Saga__V1__SagaEvent *p = tx->events[i];
    if (!valid(p))
      goto bad;
    sm_event_t *e = &rec->events[i];
    memset(e, 0, sizeof *e);
    e->type = (uint8_t)p->type;
    e->step = (uint8_t)p->step;
    e->action = p->compensate ? SM_COMPENSATE : SM_DO;
    e->attempt = (uint16_t)p->attempt;
    e->outcome = (uint8_t)p->outcome;
    e->until_ms = p->until_delta_ms ? tx->at_ms + (int64_t)p->until_delta_ms
                                    : 0;
    e->def_name = p->definition && p->definition[0] ? p->definition : NULL;
    e->def_version = p->definition_version;
    e->payload = p->payload.len ? p->payload.data : NULL;
    e->payload_len = p->payload.len;
    e->reason = p->reason && p->reason[0] ? p->reason : NULL;
    e->correlation_id =
        p->correlation_id && p->correlation_id[0] ? p->correlation_id : NULL;
    e->who = p->operator_ && p->operator_[0] ? p->operator_ : NULL;
  }
  rec->pb = tx;
  rec->n = tx->n_events;
  rec->at_ms = tx->at_ms;
  return SAGA_CORE_OK;
bad:
  saga_record_clear(rec);
  return SAGA_CORE_EDECODE;
}

int saga_codec_apply(sm_t *saga, const saga_record_t *rec) {
  if (saga == NULL || rec == NULL || rec->n == 0)
    return SAGA_CORE_EINVAL;
  for (size_t i = 0; i < rec->n; i++) {
    int rc = sm_apply(saga, &rec->events[i], rec->at_ms);
    if (rc != SAGA_CORE_OK)
      return rc;
  }
  sm_end_transition(saga);
  return SAGA_CORE_OK;
}

const char *saga_codec_record_type(const sm_event_t *ev, size_t n) {
  if (ev == NULL || n == 0)
    return "unknown";
  return sm_event_type_name((sm_event_type_t)ev[0].type);
}
