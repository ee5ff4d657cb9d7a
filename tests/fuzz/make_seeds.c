/* Writes the binary seed corpora of the wire, codec and eventstore fuzz
 * targets (in their input layouts, see each fuzz_<name>.c) from real
 * encoded messages and a real saga's stored records. Run once by hand:
 *   fuzz_make_seeds tests/fuzz/corpus
 * The definition and config seeds are plain text files, kept by hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_defs.h"
#include "definition.h"
#include "saga_codec.h"
#include "saga_machine.h"
#include "seeds.h"

static const char *outdir;

void seeds_put(const char *sub, const char *name, const void *p, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s/%s", outdir, sub, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
    fprintf(stderr, "could not write \"%s\"\n", path);
    exit(1);
  }
}

/* ---- codec ---- */

typedef struct {
  sm_t *s;
  sm_output_t out;
  int64_t now;
  buf_t b;
} walk_t;

/* Feed one input; append its transition, if any, as a framed record. */
static void feed(walk_t *w, sm_input_t in) {
  w->now += 10;
  if (sm_step(w->s, &in, w->now, NULL, &w->out) != SAGA_CORE_OK)
    abort();
  if (w->out.n_events == 0)
    return;
  uint8_t rec[8192];
  size_t len;
  if (saga_codec_encode(w->out.events, w->out.n_events, w->now, rec,
                        sizeof rec, &len) != SAGA_CORE_OK)
    abort();
  add_byte(&w->b, (uint8_t)(len & 0xff));
  add_byte(&w->b, (uint8_t)(len >> 8));
  add(&w->b, rec, len);
}

static sm_input_t reply(int step, int action, unsigned attempt,
                          int outcome) {
  return (sm_input_t){.type = SM_IN_REPLY,
                        .step = step,
                        .action = (uint8_t)action,
                        .attempt = attempt,
                        .outcome = (uint8_t)outcome,
                        .payload = (const uint8_t *)"{}",
                        .payload_len = 2,
                        .reason = outcome == SM_OUTCOME_SUCCESS
                                      ? NULL
                                      : "declined"};
}

static void walk(const saga_def_t *def, const char *name, int kind) {
  walk_t *w = calloc(1, sizeof *w);
  w->s = malloc(sm_size(def, strlen("order-1001")));
  if (sm_init(w->s, "order-1001", def) != SAGA_CORE_OK)
    abort();
  w->now = 1700000000000;
  add_byte(&w->b, 0); /* definition 0: order */
  feed(w, (sm_input_t){.type = SM_IN_START,
                         .payload = (const uint8_t *)"{\"sku\":\"A\"}",
                         .payload_len = 11});
  switch (kind) {
  case 0: /* every step succeeds */
    feed(w, reply(0, SM_DO, 1, SM_OUTCOME_SUCCESS));
    feed(w, reply(1, SM_DO, 1, SM_OUTCOME_SUCCESS));
    feed(w, reply(2, SM_DO, 1, SM_OUTCOME_SUCCESS));
    break;
  case 1: /* the pivot fails: the reservation is released */
    feed(w, reply(0, SM_DO, 1, SM_OUTCOME_SUCCESS));
    feed(w, reply(1, SM_DO, 1, SM_OUTCOME_FAILURE));
    feed(w, reply(0, SM_COMPENSATE, 1, SM_OUTCOME_SUCCESS));
    break;
  case 2: /* the first step times out, is retried, then succeeds */
    w->now = w->s->steps[0].timer_ms;
    feed(w, (sm_input_t){.type = SM_IN_TIMER, .step = 0,
                           .action = SM_DO, .attempt = 1,
                           .timer = SM_TIMER_DEADLINE});
    w->now = w->s->steps[0].timer_ms;
    feed(w, (sm_input_t){.type = SM_IN_TIMER, .step = 0,
                           .action = SM_DO, .attempt = 1,
                           .timer = SM_TIMER_BACKOFF});
    feed(w, reply(0, SM_DO, 2, SM_OUTCOME_RETRYABLE));
    break;
  }
  seeds_put("codec", name, w->b.b, w->b.n);
  free(w->s);
  free(w);
}

static void make_codec(void) {
  saga_def_t *def = NULL;
  saga_diags_t d = {0};
  if (saga_def_parse(codec_defs_json[0], strlen(codec_defs_json[0]), "order.json", &def, &d) !=
      SAGA_CORE_OK)
    abort();
  walk(def, "order-completes", 0);
  walk(def, "order-compensates", 1);
  walk(def, "order-times-out-and-retries", 2);
  saga_def_free(def);
}

/* ---- eventstore ---- */

static void make_eventstore(void) {
  buf_t *b = calloc(1, sizeof *b);
  add_byte(b, 0x01); /* one metadata pair, expected version 0 */
  add_field(b, "order-1001");
  add_field(b, "Started");
  add_field(b, "corr-1");
  add_field(b, "cause-1");
  add_field(b, SEEDS_TP);
  add_field(b, "source");
  add_field(b, "sagad");
  add(b, "{\"sku\":\"A\"}", 11);
  seeds_put("eventstore", "full-event", b->b, b->n);
  b->n = 0;
  add_byte(b, 0x08); /* any version, every optional field absent */
  add_field(b, "order-1002");
  add_field(b, "Dispatched");
  add_byte(b, 255);
  add_byte(b, 255);
  add_byte(b, 255);
  add_byte(b, 255);
  add_byte(b, 255);
  seeds_put("eventstore", "bare-event", b->b, b->n);
  b->n = 0;
  add_byte(b, 0x06); /* own id, 16-byte ceiling on the data */
  add_field(b, "payment-7");
  add_field(b, "Succeeded\xc3\xa9");
  add_byte(b, 255);
  add_byte(b, 255);
  add_field(b, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
  add_byte(b, 255);
  add_byte(b, 255);
  add(b, "0123456789abcdefXYZ", 19);
  seeds_put("eventstore", "data-past-ceiling", b->b, b->n);
  free(b);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  outdir = argv[1];
  seeds_make_wire();
  make_codec();
  make_eventstore();
  return 0;
}
