/* Fuzz target: saga_codec_decode, and saga_codec_apply of what decodes onto
 * a saga of a test definition. Layout of an input:
 *   byte 0   which definition (order, parallel group)
 *   then     records, each a 2-byte little-endian length and its bytes
 * Records are decoded and applied in turn until one does not decode or
 * does not fit (SAGA_CORE_EREPLAY: the saga is unusable after it). Nothing
 * a record holds may crash the machine; a decoded record must encode again
 * to a record that decodes, and the saga's queries must hold after every
 * applied record. */
#include <string.h>

#include "codec_defs.h"
#include "definition.h"
#include "fuzz.h"
#include "saga_codec.h"
#include "saga_machine.h"

#define NDEFS (sizeof codec_defs_json / sizeof codec_defs_json[0])

static saga_def_t *defs[NDEFS];

static void load_defs(void) {
  for (size_t i = 0; i < NDEFS; i++) {
    saga_diags_t d = {0};
    int rc = saga_def_parse(codec_defs_json[i], strlen(codec_defs_json[i]), "fuzz.json",
                            &defs[i], &d);
    for (size_t j = 0; j < d.n; j++)
      fprintf(stderr, "%s\n", d.items[j]);
    saga_diags_clear(&d);
    FUZZ_ASSERT(rc == SAGA_CORE_OK);
  }
}

/* A decoded record encodes again, and that decodes. */
static void check_reencode(const saga_record_t *rec) {
  size_t need = saga_codec_size(rec->events, rec->n, rec->at_ms);
  uint8_t *buf = malloc(need ? need : 1);
  FUZZ_ASSERT(buf != NULL);
  size_t len = 0;
  FUZZ_ASSERT(saga_codec_encode(rec->events, rec->n, rec->at_ms, buf, need,
                                &len) == SAGA_CORE_OK);
  FUZZ_ASSERT(len == need);
  saga_record_t again = {0};
  FUZZ_ASSERT(saga_codec_decode(buf, len, &again) == SAGA_CORE_OK);
  FUZZ_ASSERT(again.n == rec->n && again.at_ms == rec->at_ms);
  for (size_t i = 0; i < rec->n; i++)
    FUZZ_ASSERT(again.events[i].type == rec->events[i].type &&
                again.events[i].step == rec->events[i].step &&
                again.events[i].attempt == rec->events[i].attempt);
  saga_record_clear(&again);
  free(buf);
}

static void check_saga(const sm_t *s) {
  FUZZ_ASSERT(s->status <= SM_COMPENSATION_FAILED);
  FUZZ_ASSERT(s->cursor <= s->nsteps);
  sm_output_t *out = malloc(sizeof *out);
  FUZZ_ASSERT(out != NULL);
  sm_resume(s, out);
  FUZZ_ASSERT(out->n_events == 0 && out->n_effects <= SM_MAX_OUT);
  for (size_t i = 0; i < out->n_effects; i++)
    FUZZ_ASSERT(out->effects[i].step < s->nsteps);
  free(out);
  (void)sm_next_timer(s);
  (void)sm_is_stuck(s, s->updated_ms + 1);
  (void)sm_is_terminal(s);
  (void)sm_status_name((sm_status_t)s->status);
  char key[256];
  for (uint32_t i = 0; i < s->nsteps; i++)
    FUZZ_ASSERT(sm_idempotency_key(s, i, SM_DO, s->steps[i].attempt, key,
                                     sizeof key) > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!defs[0])
    load_defs();
  fuzz_in_t in = {data, size};
  const saga_def_t *def = defs[fuzz_byte(&in) % NDEFS];
  sm_t *s = malloc(sm_size(def, strlen("fuzz-1")));
  FUZZ_ASSERT(s != NULL);
  FUZZ_ASSERT(sm_init(s, "fuzz-1", def) == SAGA_CORE_OK);
  saga_record_t rec = {0};
  while (in.n > 0) {
    size_t len = fuzz_byte(&in);
    len |= (size_t)fuzz_byte(&in) << 8;
    const uint8_t *p = fuzz_bytes(&in, len, &len);
    /* An exact-size copy, so ASan sees reads past the record. */
    uint8_t *buf = malloc(len ? len : 1);
    FUZZ_ASSERT(buf != NULL);
    memcpy(buf, p, len);
    int rc = saga_codec_decode(buf, len, &rec);
    free(buf);
    if (rc != SAGA_CORE_OK) {
      FUZZ_ASSERT(rc == SAGA_CORE_EDECODE || rc == SAGA_CORE_ENOMEM);
      FUZZ_ASSERT(rec.n == 0);
      break;
    }
    FUZZ_ASSERT(rec.n >= 1 && rec.n <= SM_MAX_OUT);
    (void)saga_codec_record_type(rec.events, rec.n);
    check_reencode(&rec);
    rc = saga_codec_apply(s, &rec);
    if (rc != SAGA_CORE_OK) {
      FUZZ_ASSERT(rc == SAGA_CORE_EREPLAY);
      break;
    }
    check_saga(s);
  }
  saga_record_clear(&rec);
  free(s);
  return 0;
}
