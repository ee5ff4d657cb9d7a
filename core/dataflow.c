/* Data flow between steps (dataflow.h): payloads built with cJSON from the
 * input and the recorded outputs. cJSON keeps object members in insertion
 * order and prints numbers one way, so equal inputs give equal bytes. */
#include "dataflow.h"

#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "definition.h"

/* ---- values ---- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* {"$base64": "..."} for bytes that are not JSON. */
static cJSON *base64_value(const uint8_t *p, size_t n) {
  char *s = malloc((n + 2) / 3 * 4 + 1);
  if (s == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n)
      v |= p[i + 2];
    s[o++] = b64[(v >> 18) & 63];
    s[o++] = b64[(v >> 12) & 63];
    s[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    s[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  s[o] = '\0';
  cJSON *obj = cJSON_CreateObject();
  if (obj != NULL && cJSON_AddStringToObject(obj, "$base64", s) == NULL) {
    cJSON_Delete(obj);
    obj = NULL;
  }
  free(s);
  return obj;
}

/* The JSON value of a payload: parsed, {"$base64"} when not JSON, null
 * when empty. NULL only when out of memory. */
static cJSON *payload_value(const uint8_t *p, size_t n) {
  if (p == NULL || n == 0)
    return cJSON_CreateNull();
  const char *end = NULL;
  cJSON *v = cJSON_ParseWithLengthOpts((const char *)p, n, &end, false);
  if (v != NULL) {
    /* only white space may follow the value */
    const char *stop = (const char *)p + n;
    while (end < stop && (*end == ' ' || *end == '\t' || *end == '\n' ||
                          *end == '\r'))
      end++;
    if (end == stop)
      return v;
    cJSON_Delete(v);
  }
  return base64_value(p, n);
}

/* Follow an RFC 6901 pointer ("" = the value itself) inside v; NULL when
 * it names nothing. ~1 is '/', ~0 is '~'; array indexes are decimal. */
static const cJSON *resolve(const cJSON *v, const char *ptr) {
  char tok[256];
  while (v != NULL && *ptr == '/') {
    ptr++;
    size_t n = 0;
    while (*ptr != '\0' && *ptr != '/') {
      char ch = *ptr++;
      if (ch == '~' && (*ptr == '0' || *ptr == '1'))
        ch = *ptr++ == '0' ? '~' : '/';
      if (n + 1 >= sizeof tok)
        return NULL;
      tok[n++] = ch;
    }
    tok[n] = '\0';
    if (cJSON_IsObject(v)) {
      v = cJSON_GetObjectItemCaseSensitive(v, tok);
    } else if (cJSON_IsArray(v)) {
      char *e = NULL;
      long i = strtol(tok, &e, 10);
      if (n == 0 || *e != '\0' || i < 0 || (n > 1 && tok[0] == '0'))
        return NULL;
      v = cJSON_GetArrayItem(v, (int)i);
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

/* A copy of what the entry names, JSON null when it names nothing. */
static cJSON *entry_value(docs_t *d, const saga_flow_entry_t *e) {
  const cJSON *doc = e->step < 0 ? d->input
                                 : doc_output(d, (uint32_t)e->step);
  const cJSON *v = doc != NULL ? resolve(doc, e->rest) : NULL;
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
      docs_open(&d, def, input, input_len, outputs) != 0)
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
