/* Helper of the engine's measurements (test_engine_memory.c and
 * bench/engine): fake ports over which every batch commits and every
 * produced message is delivered when the driver says, the saga
 * benchmark's definition and its steps' outputs (bench/saga).
 * Deterministic: the clock moves only when the driver moves it.
 * Header-only; one user per program (the fakes' state is EF). */
#ifndef TEST_ENGINE_FAKES_H
#define TEST_ENGINE_FAKES_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "wire.h"

/* The bytes of every step's output in the saga benchmark. */
#define EF_OUTPUT_BYTES 200

static struct {
  int submitted;
  void **tokens; /* delivery tokens of the produces not yet delivered */
  size_t ntokens, ctokens;
  int64_t now;
  size_t produced; /* produce calls */
  /* called for every stream added to a batch, when set */
  void (*on_add)(const char *id, const sagad_record_t *recs, size_t n);
  /* the last recovery load asked for (load_partitions) */
  sagad_load_cb load_cb;
  sagad_load_done_cb load_done;
  void *load_arg;
} EF;

static void ef_die(const char *what, const char *why) {
  fprintf(stderr, "engine fakes: %s: %s\n", what, why);
  abort();
}

static void ef_s_reset(void *self) { (void)self; }
static int ef_s_add(void *self, const char *id, int64_t expected,
                    const sagad_record_t *recs, size_t n) {
  (void)self, (void)expected;
  if (EF.on_add)
    EF.on_add(id, recs, n);
  return 0;
}
static int ef_s_index(void *self, const sagad_index_row_t *row) {
  (void)self, (void)row;
  return 0;
}
static int ef_s_notified(void *self, const char *id) {
  (void)self, (void)id;
  return 0;
}
static int ef_s_submit(void *self) {
  (void)self;
  EF.submitted = 1;
  return 0;
}
static int ef_s_status(void *self, size_t i) {
  (void)self, (void)i;
  return SAGAD_STORE_OK;
}
/* A recovery load: kept for the driver to hand its records over. */
static int ef_s_load_parts(void *self, const int32_t *parts, size_t n,
                           sagad_load_cb cb, sagad_load_done_cb done,
                           void *arg) {
  (void)self, (void)parts, (void)n;
  EF.load_cb = cb;
  EF.load_done = done;
  EF.load_arg = arg;
  return 0;
}
/* Never needed: every saga stays in memory. */
static int ef_s_load_saga(void *self, const char *id, int32_t partition,
                          sagad_load_cb cb, sagad_load_done_cb done,
                          void *arg) {
  (void)self, (void)id, (void)partition, (void)cb, (void)done, (void)arg;
  return -1;
}
static const char *ef_s_error(void *self) {
  (void)self;
  return "fake store";
}
static int ef_b_produce(void *self, const char *topic, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        const saga__hdrs_t *hdrs, void *token) {
  (void)self, (void)topic, (void)key, (void)key_len, (void)value;
  (void)value_len, (void)hdrs;
  EF.produced++;
  if (!token)
    return 0;
  if (EF.ntokens == EF.ctokens) {
    size_t c = EF.ctokens ? 2 * EF.ctokens : 4096;
    void **v = realloc(EF.tokens, c * sizeof *v);
    if (!v)
      ef_die("produce", "out of memory");
    EF.tokens = v;
    EF.ctokens = c;
  }
  EF.tokens[EF.ntokens++] = token;
  return 0;
}
static void ef_b_ack(void *self, void *ack) { (void)self, (void)ack; }
static int64_t ef_c_now(void *self) {
  (void)self;
  return EF.now;
}
static void ef_c_wake(void *self, int slot, int64_t at) {
  (void)self, (void)slot, (void)at;
}
static void ef_c_turn(void *self) { (void)self; }

/* An engine configuration on the fakes (EF reset, its clock at a fixed
 * date). */
static sagad_engine_config_t ef_config(const saga_registry_t *reg) {
  free(EF.tokens);
  memset(&EF, 0, sizeof EF);
  EF.now = 1700000000000LL;
  sagad_engine_config_t ec = {
      .registry = reg,
      .inbox_topic = "t.inbox",
      .notify_topic = "t.notifications",
      /* progress notes on (sagad's topic.progress set): the heavier case */
      .progress_topic = "t.progress",
      .dlq_topic = "t.dlq",
      .store = {.batch_reset = ef_s_reset,
                .batch_add = ef_s_add,
                .batch_index = ef_s_index,
                .batch_notified = ef_s_notified,
                .batch_submit = ef_s_submit,
                .batch_status = ef_s_status,
                .load_partitions = ef_s_load_parts,
                .load_saga = ef_s_load_saga,
                .last_error = ef_s_error},
      .broker = {.produce = ef_b_produce, .ack = ef_b_ack},
      .clock = {.now_ms = ef_c_now, .wake_at = ef_c_wake,
                .end_of_turn = ef_c_turn},
  };
  return ec;
}

/* Turns until the queued inputs are stepped, their batches committed and
 * their messages delivered; on_batch (may be NULL) runs before each batch
 * is answered. */
static void ef_settle(sagad_engine_t *e, void (*on_batch)(void)) {
  for (;;) {
    EF.now++;
    sagad_engine_on_turn_end(e); /* a batch submitted before waits too */
    while (EF.submitted) {
      EF.submitted = 0;
      if (on_batch)
        on_batch();
      sagad_engine_on_batch_done(e, SAGAD_STORE_OK); /* pumps again */
    }
    if (!EF.ntokens)
      return;
    size_t n = EF.ntokens;
    EF.ntokens = 0;
    for (size_t i = 0; i < n; i++)
      sagad_engine_on_delivery(e, EF.tokens[i], SAGAD_DELIVERY_OK,
                               SAGAD_PERSISTED_YES);
  }
}

/* The registry of bench/saga's definition `name`: 3 compensatable steps
 * s1..s3, one attempt each, timeout_ms each. */
static saga_registry_t *ef_registry(const char *name, unsigned timeout_ms) {
  char dir[128], path[300];
  snprintf(dir, sizeof dir, "/tmp/engine-fakes.%d", (int)getpid());
  if (mkdir(dir, 0700) != 0)
    ef_die(dir, strerror(errno));
  snprintf(path, sizeof path, "%s/%s.json", dir, name);
  FILE *f = fopen(path, "w");
  if (!f)
    ef_die(path, strerror(errno));
  fprintf(f,
          "{\"name\": \"%s\", \"version\": 1, \"defaults\": "
          "{\"timeout_ms\": %u, \"retry\": {\"max_attempts\": 1}},\n"
          "\"steps\": [",
          name, timeout_ms);
  for (int i = 0; i < 3; i++)
    fprintf(f,
            "%s{\"name\": \"s%d\", \"topic\": \"t.s%d\", \"kind\": "
            "\"compensatable\", \"compensation\": {\"topic\": \"t.s%d\", "
            "\"action\": \"undo\"}}",
            i ? ",\n" : "", i + 1, i + 1, i + 1);
  fprintf(f, "]}\n");
  fclose(f);
  saga_registry_t *reg = saga_registry_new();
  saga_diags_t d = {0};
  size_t loaded = 0;
  if (!reg || saga_registry_load_dir(reg, dir, &d, &loaded) != SAGA_CORE_OK ||
      loaded != 1)
    ef_die(path, "the definition does not load");
  saga_diags_clear(&d);
  remove(path);
  remove(dir);
  return reg;
}

/* The output of step (0-based) of saga id as bench-saga's participants
 * reply it: EF_OUTPUT_BYTES of JSON into out (EF_OUTPUT_BYTES + 1). */
static void ef_output(char *out, const char *id, int step) {
  int n = snprintf(out, EF_OUTPUT_BYTES + 1, "{\"ref\":\"%.60s/%d\",\"pad\":\"",
                   id, step);
  memset(out + n, 'x', (size_t)(EF_OUTPUT_BYTES - 2 - n));
  memcpy(out + EF_OUTPUT_BYTES - 2, "\"}", 3);
}

/* The success of step (0-based) of saga "s<i>" with ef_output's output,
 * and the texts it points into: valid while the ef_reply_t lives. */
typedef struct {
  char id[24], name[16], key[96], out[EF_OUTPUT_BYTES + 1];
  Saga__V1__Reply r;
} ef_reply_t;

static void ef_reply(ef_reply_t *b, size_t i, int step) {
  snprintf(b->id, sizeof b->id, "s%zu", i);
  snprintf(b->name, sizeof b->name, "s%d", step + 1);
  snprintf(b->key, sizeof b->key, "%s/%s/DO/1", b->id, b->name);
  ef_output(b->out, b->id, step);
  saga__v1__reply__init(&b->r);
  b->r.saga_id = b->id;
  b->r.step = b->name;
  b->r.action = SAGA__V1__ACTION__ACTION_DO;
  b->r.attempt = 1;
  b->r.idempotency_key = b->key;
  b->r.outcome = SAGA__V1__OUTCOME__OUTCOME_SUCCESS;
  b->r.payload.data = (uint8_t *)b->out;
  b->r.payload.len = EF_OUTPUT_BYTES;
}

#endif
