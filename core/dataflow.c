/* Data flow between steps (dataflow.h): payloads built with cJSON from the
 * input and the recorded outputs. cJSON keeps object members in insertion
 * order, and numbers keep the text they were written with
 * (json_exact.h), so equal inputs give equal bytes and a number is passed
 * on as it came. */
#include "dataflow.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "definition.h"
#include "json_exact.h"
#include "text.h"

/* ---- values ---- */

/* The JSON value of a payload: parsed, {"$base64"} when not JSON (or
 * JSON that cJSON would not read back whole: a \u0000 in a string), null
 * when empty. NULL only when out of memory. */
static cJSON *payload_value(const uint8_t *p, size_t n) {
  if (p == NULL || n == 0)
    return cJSON_CreateNull();
  if (saga__json_nul_escape_at(p, n) < n)
    return saga_json_base64(p, n);
  cJSON *v = saga_json_parse_exact((const char *)p, n);
  return v != NULL ? v : saga_json_base64(p, n);
}

/* An array index as RFC 6901 writes it: "0" or digits without a leading
 * zero (no sign, no space), at most INT_MAX; -1 otherwise. */
static int array_index(const char *tok, size_t n) {
  if (n == 0 || n > 10 || (n > 1 && tok[0] == '0'))
    return -1;
  long long i = 0;
  for (size_t k = 0; k < n; k++) {
    if (tok[k] < '0' || tok[k] > '9')
      return -1;
    i = i * 10 + (tok[k] - '0');
  }
  return i <= INT_MAX ? (int)i : -1;
}

/* Follow an RFC 6901 pointer ("" = the value itself) inside v; NULL when
 * it names nothing. ~1 is '/', ~0 is '~'; array indexes are decimal.
 * tok has room for strlen(ptr) + 1 bytes (a key of any length). */
static const cJSON *resolve(const cJSON *v, const char *ptr, char *tok) {
  while (v != NULL && *ptr == '/') {
    ptr++;
    size_t n = 0;
    while (*ptr != '\0' && *ptr != '/') {
      char ch = *ptr++;
      if (ch == '~' && (*ptr == '0' || *ptr == '1'))
        ch = *ptr++ == '0' ? '~' : '/';
      tok[n++] = ch;
    }
    tok[n] = '\0';
    if (cJSON_IsObject(v)) {
      v = cJSON_GetObjectItemCaseSensitive(v, tok);
    } else if (cJSON_IsArray(v)) {
      int i = array_index(tok, n);
      v = i >= 0 ? cJSON_GetArrayItem(v, i) : NULL;
    } else {
      return NULL;
    }
  }
  return *ptr == '\0' ? v : NULL;
}

/* ---- building ---- */

typedef struct {
  const saga_def_t *def;
  const saga_flow_value_t *outputs;
  cJSON *input;                      /* parsed once */
  cJSON *out[SAGA_DEF_MAX_STEPS];    /* parsed on first use */
} docs_t;

static void docs_free(docs_t *d) {
  cJSON_Delete(d->input);
  for (size_t i = 0; i < SAGA_DEF_MAX_STEPS; i++)
    cJSON_Delete(d->out[i]);
}

static const cJSON *doc_output(docs_t *d, uint32_t step) {
  if (!d->outputs[step].done)
    return NULL;
  if (d->out[step] == NULL)
    d->out[step] =
        payload_value(d->outputs[step].data, d->outputs[step].len);
  return d->out[step];
}

/* A copy of what the entry names, JSON null when it names nothing; NULL
 * out of memory. */
static cJSON *entry_value(docs_t *d, const saga_flow_entry_t *e) {
  const cJSON *doc = e->step < 0 ? d->input
                                 : doc_output(d, (uint32_t)e->step);
  char *tok = malloc(strlen(e->rest) + 1);
  if (tok == NULL)
    return NULL;
  const cJSON *v = doc != NULL ? resolve(doc, e->rest, tok) : NULL;
  free(tok);
  return v != NULL ? cJSON_Duplicate(v, true) : cJSON_CreateNull();
}

static cJSON *apply_map(docs_t *d, const saga_flow_map_t *m) {
  cJSON *obj = cJSON_CreateObject();
  for (size_t i = 0; obj != NULL && i < m->n; i++) {
    cJSON *v = entry_value(d, &m->entries[i]);
    if (v == NULL || !cJSON_AddItemToObject(obj, m->entries[i].key, v)) {
      cJSON_Delete(v);
      cJSON_Delete(obj);
      return NULL;
    }
  }
  return obj;
}

/* Move v into obj under key; false (v freed) when v is NULL or out of
 * memory. */
static bool put(cJSON *obj, const char *key, cJSON *v) {
  if (v != NULL && cJSON_AddItemToObject(obj, key, v))
    return true;
  cJSON_Delete(v);
  return false;
}

/* A copy of a step's output, JSON null when it has none. */
static cJSON *output_copy(docs_t *d, uint32_t step) {
  const cJSON *o = doc_output(d, step);
  return o != NULL ? cJSON_Duplicate(o, true) : cJSON_CreateNull();
}

/* {"input": ..., "steps": {...}} of the steps before `before`. */
static cJSON *envelope(docs_t *d, uint32_t before) {
  cJSON *obj = cJSON_CreateObject();
  if (obj == NULL || !put(obj, "input", cJSON_Duplicate(d->input, true)))
    goto fail;
  cJSON *steps = cJSON_AddObjectToObject(obj, "steps");
  if (steps == NULL)
    goto fail;
  for (uint32_t i = 0; i < before; i++) {
    cJSON *one = cJSON_AddObjectToObject(steps, d->def->steps[i].name);
    if (one == NULL || !put(one, "output", output_copy(d, i)))
      goto fail;
  }
  return obj;
fail:
  cJSON_Delete(obj);
  return NULL;
}

static cJSON *command_value(docs_t *d, uint32_t step) {
  const saga_flow_map_t *m = d->def->steps[step].input_map;
  return m != NULL ? apply_map(d, m)
                   : envelope(d, saga_def_block_start(d->def, step));
}

static int print(cJSON *v, uint8_t **out, size_t *out_len) {
  char *s = v != NULL ? cJSON_PrintUnformatted(v) : NULL;
  cJSON_Delete(v);
  if (s == NULL)
    return -1;
  *out = (uint8_t *)s;
  *out_len = strlen(s);
  return 0;
}

/* ---- the default envelope without a JSON round trip ----
 * Without a mapping a command carries {"input": ..., "steps": {...}}: its
 * values parsed by cJSON and printed again. When every value is already
 * what cJSON would print (canonical below), the printed envelope is the
 * values' own bytes around a fixed frame, so it is written directly, byte
 * for byte what the cJSON path gives (tests/coordinator/test_dataflow.c
 * compares the two); any other value takes the cJSON path. Canonical:
 * no white space, strings whose only escapes are those cJSON prints
 * (\" \\ \b \f \n \r \t) and no raw byte below 0x20, JSON numbers
 * (the cJSON path keeps them as written: json_exact.h), literals, and at
 * most CANON_DEPTH levels of nesting. */

#define CANON_DEPTH 64

static bool canon_value(const uint8_t **pp, const uint8_t *end, int depth);

/* None of the 8 bytes at p is a control character, '"' or '\\' (the
 * bytes a string's scan stops at), tested a word at a time. */
static bool plain8(const uint8_t *p) {
  const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  uint64_t x, q, b;
  memcpy(&x, p, 8);
  q = x ^ (ones * '"');
  b = x ^ (ones * '\\');
  uint64_t hit = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) |
                 ((b - ones) & ~b);
  return (hit & high) == 0;
}

static bool canon_string(const uint8_t **pp, const uint8_t *end) {
  const uint8_t *p = *pp;
  if (p == end || *p++ != '"')
    return false;
  while (p < end && *p != '"') {
    /* the plain run first, eight bytes a turn (the usual long values) */
    while (end - p >= 8 && plain8(p))
      p += 8;
    if (p == end || *p == '"')
      break;
    if (*p < 0x20)
      return false;
    if (*p == '\\') {
      if (++p == end || !memchr("\"\\bfnrt", *p, 7))
        return false;
    }
    p++;
  }
  if (p == end)
    return false;
  *pp = p + 1;
  return true;
}

/* Any JSON number cJSON reads: the cJSON path prints it as written too.
 * cJSON refuses a number of more than 63 characters (its buffer), which
 * makes that path carry the payload as {"$base64"}: so must this one. */
static bool canon_number(const uint8_t **pp, const uint8_t *end) {
  const uint8_t *p = *pp;
  while (p < end && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' ||
                     *p == '.' || *p == 'e' || *p == 'E'))
    p++;
  if (p - *pp > 63 || !saga_json_number((const char *)*pp, (size_t)(p - *pp)))
    return false;
  *pp = p;
  return true;
}

static bool canon_literal(const uint8_t **pp, const uint8_t *end,
                          const char *word) {
  size_t n = strlen(word);
  if ((size_t)(end - *pp) < n || memcmp(*pp, word, n) != 0)
    return false;
  *pp += n;
  return true;
}

/* The members (object) or elements (array) up to `close`. */
static bool canon_members(const uint8_t **pp, const uint8_t *end, int depth,
                          bool object, uint8_t close) {
  const uint8_t *p = *pp + 1;
  if (p < end && *p == close) {
    *pp = p + 1;
    return true;
  }
  for (;;) {
    if (object && (!canon_string(&p, end) || p == end || *p++ != ':'))
      return false;
    if (!canon_value(&p, end, depth + 1) || p == end)
      return false;
    if (*p == close) {
      *pp = p + 1;
      return true;
    }
    if (*p++ != ',')
      return false;
  }
}

static bool canon_value(const uint8_t **pp, const uint8_t *end, int depth) {
  if (*pp == end || depth > CANON_DEPTH)
    return false;
  switch (**pp) {
  case '{':
    return canon_members(pp, end, depth, true, '}');
  case '[':
    return canon_members(pp, end, depth, false, ']');
  case '"':
    return canon_string(pp, end);
  case 't':
    return canon_literal(pp, end, "true");
  case 'f':
    return canon_literal(pp, end, "false");
  case 'n':
    return canon_literal(pp, end, "null");
  default:
    return canon_number(pp, end);
  }
}

/* The bytes cJSON would print for payload_value(p, n), or false when
 * they may differ. An empty payload prints as null. */
static bool canon_payload(const uint8_t *p, size_t n, const uint8_t **v,
                          size_t *vlen) {
  if (p == NULL || n == 0) {
    *v = (const uint8_t *)"null";
    *vlen = 4;
    return true;
  }
  const uint8_t *q = p;
  if (!canon_value(&q, p + n, 0) || q != p + n)
    return false;
  *v = p;
  *vlen = n;
  return true;
}

/* A name cJSON prints as is between quotes. */
static bool canon_name(const char *s) {
  for (; *s != '\0'; s++)
    if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\')
      return false;
  return true;
}

static uint8_t *put_bytes(uint8_t *o, const void *p, size_t n) {
  memcpy(o, p, n);
  return o + n;
}

/* The envelope of the steps before `before`, written directly: 1 done
 * (*out malloc'd, NUL-terminated), 0 when a value is not canonical (take
 * the cJSON path), -1 out of memory. */
static int envelope_direct(const saga_def_t *def, uint32_t before,
                           const uint8_t *input, size_t input_len,
                           const saga_flow_value_t *outputs, uint8_t **out,
                           size_t *out_len) {
  static const char head[] = "{\"input\":", mid[] = ",\"steps\":{",
                    pre[] = "\":{\"output\":";
  const uint8_t *in, *ov[SAGA_DEF_MAX_STEPS];
  size_t in_len, ol[SAGA_DEF_MAX_STEPS];
  if (!canon_payload(input, input_len, &in, &in_len))
    return 0;
  size_t size = sizeof head - 1 + in_len + sizeof mid - 1 + 2 + 1;
  for (uint32_t i = 0; i < before; i++) {
    const saga_flow_value_t *o = &outputs[i];
    if (!canon_name(def->steps[i].name) ||
        !canon_payload(o->done ? o->data : NULL, o->done ? o->len : 0, &ov[i],
                       &ol[i]))
      return 0;
    size += 1 + strlen(def->steps[i].name) + sizeof pre - 1 + ol[i] + 1 + 1;
  }
  uint8_t *buf = malloc(size), *o = buf;
  if (buf == NULL)
    return -1;
  o = put_bytes(o, head, sizeof head - 1);
  o = put_bytes(o, in, in_len);
  o = put_bytes(o, mid, sizeof mid - 1);
  for (uint32_t i = 0; i < before; i++) {
    if (i > 0)
      *o++ = ',';
    *o++ = '"';
    o = put_bytes(o, def->steps[i].name, strlen(def->steps[i].name));
    o = put_bytes(o, pre, sizeof pre - 1);
    o = put_bytes(o, ov[i], ol[i]);
    *o++ = '}';
  }
  *o++ = '}';
  *o++ = '}';
  *o = '\0';
  *out = buf;
  *out_len = (size_t)(o - buf);
  return 1;
}

static int docs_open(docs_t *d, const saga_def_t *def, const uint8_t *input,
                     size_t input_len, const saga_flow_value_t *outputs) {
  memset(d, 0, sizeof *d);
  if (def == NULL || outputs == NULL)
    return -1;
  d->def = def;
  d->outputs = outputs;
  d->input = payload_value(input, input_len);
  return d->input != NULL ? 0 : -1;
}

int saga_flow_command(const saga_def_t *def, uint32_t step,
                      const uint8_t *input, size_t input_len,
                      const saga_flow_value_t *outputs, uint8_t **out,
                      size_t *out_len) {
  docs_t d;
  if (out == NULL || out_len == NULL || def == NULL || step >= def->nsteps ||
      outputs == NULL)
    return -1;
  if (def->steps[step].input_map == NULL) {
    int direct = envelope_direct(def, saga_def_block_start(def, step), input,
                                 input_len, outputs, out, out_len);
    if (direct != 0)
      return direct > 0 ? 0 : -1;
  }
  if (docs_open(&d, def, input, input_len, outputs) != 0)
    return -1;
  int rc = print(command_value(&d, step), out, out_len);
  docs_free(&d);
  return rc;
}

int saga_flow_compensation(const saga_def_t *def, uint32_t step,
                           const uint8_t *input, size_t input_len,
                           const saga_flow_value_t *outputs, uint8_t **out,
                           size_t *out_len) {
  docs_t d;
  if (out == NULL || out_len == NULL || def == NULL || step >= def->nsteps ||
      docs_open(&d, def, input, input_len, outputs) != 0)
    return -1;
  cJSON *obj = cJSON_CreateObject();
  if (obj == NULL || !put(obj, "command", command_value(&d, step)) ||
      !put(obj, "output", output_copy(&d, step))) {
    cJSON_Delete(obj);
    obj = NULL;
  }
  int rc = print(obj, out, out_len);
  docs_free(&d);
  return rc;
}

int saga_flow_saga_output(const saga_def_t *def, const uint8_t *input,
                          size_t input_len, const saga_flow_value_t *outputs,
                          uint8_t **out, size_t *out_len) {
  if (out == NULL || out_len == NULL || def == NULL)
    return -1;
  *out = NULL;
  *out_len = 0;
  if (def->output_map == NULL)
    return 0;
  docs_t d;
  if (docs_open(&d, def, input, input_len, outputs) != 0)
    return -1;
  int rc = print(apply_map(&d, def->output_map), out, out_len);
  docs_free(&d);
  return rc;
}
