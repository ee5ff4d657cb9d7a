/* Saga definitions: JSON -> validated saga_def_t, and the versioned
 * registry. Validation reports every problem it finds, each with the file,
 * the JSON path and what was expected; it never stops at the first one and
 * never crashes on bad input. Only a text that is not one strict JSON
 * document in UTF-8 stops it, at the first problem, with its line and
 * column. */
#include "definition.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "sha256.h"
#include "text.h"

#define MAX_FILE_BYTES (1024 * 1024)
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_STUCK_MS 300000

static const saga_retry_policy_t default_retry = {3, 200, 2.0, 10000, 0.2};
static const saga_retry_policy_t default_comp_retry = {10, 1000, 2.0, 60000,
                                                       0.2};

/* ---- diagnostics ---- */

void saga_diags_clear(saga_diags_t *d) {
  if (d == NULL)
    return;
  for (size_t i = 0; i < d->n; i++)
    free(d->items[i]);
  free(d->items);
  d->items = NULL;
  d->n = 0;
  d->cap = 0;
}

typedef struct {
  const char *source;
  saga_diags_t *diags;
  int errors;
  bool oom;
} ctx_t;

__attribute__((format(printf, 3, 4))) static void
fail(ctx_t *c, const char *path, const char *fmt, ...) {
  c->errors++;
  if (c->diags == NULL)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t need = strlen(c->source) + strlen(path) + strlen(msg) + 8;
  char *line = malloc(need);
  if (line == NULL) {
    c->oom = true;
    return;
  }
  if (path[0] != '\0')
    snprintf(line, need, "%s: %s: %s", c->source, path, msg);
  else
    snprintf(line, need, "%s: %s", c->source, msg);
  saga_diags_t *d = c->diags;
  if (d->n == d->cap) {
    size_t ncap = d->cap ? d->cap * 2 : 8;
    char **items = realloc(d->items, ncap * sizeof *items);
    if (items == NULL) {
      free(line);
      c->oom = true;
      return;
    }
    d->items = items;
    d->cap = ncap;
  }
  d->items[d->n++] = line;
}

/* Integers print as integers, fractions as %g. */
static void fmt_num(double x, char *buf, size_t len) {
  if (x == floor(x) && fabs(x) < 1e15)
    snprintf(buf, len, "%.0f", x);
  else
    snprintf(buf, len, "%g", x);
}

/* Append s[0..n) to out (cap bytes, *used of them used, NUL-terminated)
 * so that a message stays one line of UTF-8: control characters are
 * escaped as in JSON (and " and \ too when quoted), a byte that is not
 * UTF-8 as \xNN, and it stops before a character that does not fit
 * whole. False when it stopped. */
static bool put_text(char *out, size_t cap, size_t *used, const char *s,
                     size_t n, bool quoted) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    char esc[8] = "";
    size_t k = 1;
    unsigned char ch = u[i];
    if (ch == '\n')
      snprintf(esc, sizeof esc, "\\n");
    else if (ch == '\t')
      snprintf(esc, sizeof esc, "\\t");
    else if (ch == '\r')
      snprintf(esc, sizeof esc, "\\r");
    else if (ch < 0x20 || ch == 0x7f)
      snprintf(esc, sizeof esc, "\\u%04x", ch);
    else if (quoted && (ch == '"' || ch == '\\'))
      snprintf(esc, sizeof esc, "\\%c", ch);
    else if (ch >= 0x80 && (k = saga__utf8_seq_len(u + i, n - i)) == 0)
      snprintf(esc, sizeof esc, "\\x%02x", ch);
    const char *add = esc[0] != '\0' ? esc : s + i;
    size_t m = esc[0] != '\0' ? strlen(esc) : k;
    if (k == 0)
      k = 1;
    if (*used + m + 1 > cap)
      return false;
    memcpy(out + *used, add, m);
    *used += m;
    out[*used] = '\0';
    i += k;
  }
  return true;
}

/* s[0..n) in double quotes for a message, cut to what fits in len (at
 * least 3). */
static void quote(char *buf, size_t len, const char *s, size_t n) {
  size_t used = 1;
  buf[0] = '"';
  buf[1] = '\0';
  put_text(buf, len - 1, &used, s, n, true);
  buf[used++] = '"';
  buf[used] = '\0';
}

/* What a JSON value is, for "got ..." in messages. */
static void describe(const cJSON *v, char *buf, size_t len) {
  if (cJSON_IsNumber(v)) {
    fmt_num(v->valuedouble, buf, len);
  } else if (cJSON_IsString(v)) {
    /* at most 60 bytes of it */
    quote(buf, len < 63 ? len : 63, v->valuestring, strlen(v->valuestring));
  } else if (cJSON_IsBool(v)) {
    snprintf(buf, len, "%s", cJSON_IsTrue(v) ? "true" : "false");
  } else if (cJSON_IsNull(v)) {
    snprintf(buf, len, "null");
  } else if (cJSON_IsArray(v)) {
    snprintf(buf, len, "an array");
  } else {
    snprintf(buf, len, "an object");
  }
}

/* Append key to the JSON path out[0..*used) (cap bytes): .key (key alone
 * at the top), or ["key"], quoted as in JSON, when the key is empty or
 * holds '.' or '[', so that a path is never empty and never reads as
 * another one. Made safe for a message; false when it did not fit. */
static bool put_key(char *out, size_t cap, size_t *used, const char *key) {
  size_t n = strlen(key);
  if (n == 0 || strpbrk(key, ".[") != NULL)
    return put_text(out, cap, used, "[\"", 2, false) &&
           put_text(out, cap, used, key, n, true) &&
           put_text(out, cap, used, "\"]", 2, false);
  return (*used == 0 || put_text(out, cap, used, ".", 1, false)) &&
         put_text(out, cap, used, key, n, false);
}

/* path and key, as put_key joins them. */
static void join(char *out, size_t len, const char *path, const char *key) {
  size_t used = 0;
  out[0] = '\0';
  if (put_text(out, len, &used, path, strlen(path), false))
    put_key(out, len, &used, key);
}

/* An optional member that must be a string (free text). */
static void check_string(ctx_t *c, const cJSON *obj, const char *key,
                         const char *path) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL || cJSON_IsString(v))
    return;
  char p[256];
  char got[96];
  join(p, sizeof p, path, key);
  describe(v, got, sizeof got);
  fail(c, p, "must be a string, got %s", got);
}

/* Every key of obj must be one of allowed (NULL-terminated). */
static void check_keys(ctx_t *c, const cJSON *obj, const char *path,
                       const char *const *allowed) {
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    bool ok = false;
    for (const char *const *a = allowed; *a != NULL; a++)
      if (it->string != NULL && strcmp(it->string, *a) == 0)
        ok = true;
    if (ok)
      continue;
    char list[256] = "";
    for (const char *const *a = allowed; *a != NULL; a++) {
      size_t used = strlen(list);
      snprintf(list + used, sizeof list - used, "%s%s",
               a == allowed ? "" : ", ", *a);
    }
    char p[256];
    join(p, sizeof p, path, it->string ? it->string : "?");
    fail(c, p, "unknown key, expected one of %s", list);
  }
}

static bool is_name_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

/* A string member made of name characters, 1..maxlen long. Absent: *out
 * stays NULL and, if required, an error. Returns false only on OOM. */
static bool get_name(ctx_t *c, const cJSON *obj, const char *key,
                     const char *path, size_t maxlen, bool required,
                     char **out) {
  char p[256];
  join(p, sizeof p, path, key);
  *out = NULL;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL) {
    if (required)
      fail(c, p, "is required");
    return true;
  }
  char got[96];
  describe(v, got, sizeof got);
  if (!cJSON_IsString(v)) {
    fail(c, p, "must be a string, got %s", got);
    return true;
  }
  size_t n = strlen(v->valuestring);
  bool ok = n >= 1 && n <= maxlen;
  for (size_t i = 0; ok && i < n; i++)
    ok = is_name_char(v->valuestring[i]);
  if (!ok) {
    fail(c, p, "must be 1 to %zu characters of A-Z a-z 0-9 _ . -, got %s",
         maxlen, got);
    return true;
  }
  /* Kafka refuses these two topic names, though their characters pass */
  if (!strcmp(key, "topic") && !saga__kafka_topic_ok(v->valuestring)) {
    fail(c, p, "must be a Kafka topic name, not \".\" or \"..\", got %s",
         got);
    return true;
  }
  *out = strdup(v->valuestring);
  return *out != NULL;
}

/* A number member in [min, max], integral unless allow_frac; note (""
 * or " for a ... step") follows the range in a message, and min == max
 * asks for that one value. Absent: *out keeps its default. */
static void get_num_for(ctx_t *c, const cJSON *obj, const char *key,
                        const char *path, double min, double max,
                        bool allow_frac, const char *note, double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL)
    return;
  char p[256];
  char got[96];
  join(p, sizeof p, path, key);
  describe(v, got, sizeof got);
  const char *what = allow_frac ? "a number" : "an integer";
  char lo[32];
  char hi[32];
  fmt_num(min, lo, sizeof lo);
  fmt_num(max, hi, sizeof hi);
  if (min == max) {
    if (!cJSON_IsNumber(v) || v->valuedouble != min)
      fail(c, p, "must be %s%s, got %s", lo, note, got);
    else
      *out = v->valuedouble;
    return;
  }
  if (!cJSON_IsNumber(v) ||
      (!allow_frac && v->valuedouble != floor(v->valuedouble))) {
    fail(c, p, "must be %s between %s and %s%s, got %s", what, lo, hi, note,
         got);
    return;
  }
  if (v->valuedouble < min || v->valuedouble > max) {
    fail(c, p, "must be between %s and %s%s, got %s", lo, hi, note, got);
    return;
  }
  *out = v->valuedouble;
}

static void get_num(ctx_t *c, const cJSON *obj, const char *key,
                    const char *path, double min, double max, bool allow_frac,
                    double *out) {
  get_num_for(c, obj, key, path, min, max, allow_frac, "", out);
}

static void get_u32_for(ctx_t *c, const cJSON *obj, const char *key,
                        const char *path, uint32_t min, uint32_t max,
                        const char *note, uint32_t *out) {
  double d = *out;
  get_num_for(c, obj, key, path, min, max, false, note, &d);
  *out = (uint32_t)d;
}

static void get_u32(ctx_t *c, const cJSON *obj, const char *key,
                    const char *path, uint32_t min, uint32_t max,
                    uint32_t *out) {
  get_u32_for(c, obj, key, path, min, max, "", out);
}

/* An optional object member; wrong type is an error. */
static const cJSON *get_obj(ctx_t *c, const cJSON *obj, const char *key,
                            const char *path) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL || cJSON_IsObject(v))
    return v;
  char p[256];
  char got[96];
  join(p, sizeof p, path, key);
  describe(v, got, sizeof got);
  fail(c, p, "must be an object, got %s", got);
  return NULL;
}

static const char *const retry_keys[] = {
    "max_attempts", "initial_backoff_ms", "multiplier", "max_backoff_ms",
    "jitter",       NULL};

/* Parse the retry object at obj.key over r. max_attempts is taken in
 * [min_attempts, max_attempts] (min 0 where "unlimited" is allowed),
 * note saying why in a message. */
static void get_retry(ctx_t *c, const cJSON *obj, const char *key,
                      const char *path, uint32_t min_attempts,
                      uint32_t max_attempts, const char *note,
                      saga_retry_policy_t *r) {
  const cJSON *o = get_obj(c, obj, key, path);
  if (o == NULL)
    return;
  char p[256];
  join(p, sizeof p, path, key);
  check_keys(c, o, p, retry_keys);
  get_u32_for(c, o, "max_attempts", p, min_attempts, max_attempts, note,
              &r->max_attempts);
  get_u32(c, o, "initial_backoff_ms", p, 0, SAGA_DEF_BACKOFF_MAX_MS,
          &r->initial_backoff_ms);
  get_num(c, o, "multiplier", p, 1.0, SAGA_DEF_MULTIPLIER_MAX, true,
          &r->multiplier);
  get_u32(c, o, "max_backoff_ms", p, 0, SAGA_DEF_BACKOFF_MAX_MS,
          &r->max_backoff_ms);
  get_num(c, o, "jitter", p, 0.0, 1.0, true, &r->jitter);
  if (r->max_backoff_ms < r->initial_backoff_ms) {
    /* named at the key this object wrote: the other one may be inherited
     * (from the saga's defaults or the built-in ones) */
    bool wrote_max = cJSON_GetObjectItemCaseSensitive(o, "max_backoff_ms");
    char q[300];
    join(q, sizeof q, p, wrote_max ? "max_backoff_ms" : "initial_backoff_ms");
    if (wrote_max)
      fail(c, q, "must be at least initial_backoff_ms (%u%s), got %u",
           r->initial_backoff_ms,
           cJSON_GetObjectItemCaseSensitive(o, "initial_backoff_ms")
               ? ""
               : ", inherited",
           r->max_backoff_ms);
    else
      fail(c, q,
           "must be at most max_backoff_ms (%u, inherited: set it here "
           "too), got %u",
           r->max_backoff_ms, r->initial_backoff_ms);
  }
}

/* Saga-wide defaults that steps inherit. */
typedef struct {
  uint32_t timeout_ms;
  uint32_t stuck_after_ms;
  saga_retry_policy_t retry;
  saga_retry_policy_t comp_retry;
} defaults_t;

static const char *const defaults_keys[] = {
    "timeout_ms", "stuck_after_ms", "retry", "compensation_retry", NULL};

static void get_defaults(ctx_t *c, const cJSON *root, defaults_t *d) {
  d->timeout_ms = DEFAULT_TIMEOUT_MS;
  d->stuck_after_ms = DEFAULT_STUCK_MS;
  d->retry = default_retry;
  d->comp_retry = default_comp_retry;
  const cJSON *o = get_obj(c, root, "defaults", "");
  if (o == NULL)
    return;
  check_keys(c, o, "defaults", defaults_keys);
  get_u32(c, o, "timeout_ms", "defaults", SAGA_DEF_TIMEOUT_MIN_MS,
          SAGA_DEF_TIMEOUT_MAX_MS, &d->timeout_ms);
  get_u32(c, o, "stuck_after_ms", "defaults", SAGA_DEF_TIMEOUT_MIN_MS,
          SAGA_DEF_TIMEOUT_MAX_MS, &d->stuck_after_ms);
  get_retry(c, o, "retry", "defaults", 1, SAGA_DEF_ATTEMPTS_MAX, "", &d->retry);
  get_retry(c, o, "compensation_retry", "defaults", 0, SAGA_DEF_ATTEMPTS_MAX,
            "", &d->comp_retry);
}

static const char *const comp_keys[] = {"topic", "action", "timeout_ms",
                                        "retry", NULL};

/* "compensation": an object, or "none"/null. Absent leaves comp_topic NULL
 * and sets *present = false. */
static bool get_compensation(ctx_t *c, const cJSON *so, const char *path,
                             const defaults_t *d, saga_step_def_t *s,
                             bool *present) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(so, "compensation");
  char p[256];
  join(p, sizeof p, path, "compensation");
  *present = v != NULL;
  if (v == NULL || cJSON_IsNull(v) ||
      (cJSON_IsString(v) && strcmp(v->valuestring, "none") == 0))
    return true;
  if (!cJSON_IsObject(v)) {
    char got[96];
    describe(v, got, sizeof got);
    fail(c, p, "must be an object with topic and action, or \"none\", got %s",
         got);
    return true;
  }
  check_keys(c, v, p, comp_keys);
  if (!get_name(c, v, "topic", p, SAGA_DEF_MAX_TOPIC, false, &s->comp_topic))
    return false;
  if (s->comp_topic == NULL &&
      cJSON_GetObjectItemCaseSensitive(v, "topic") == NULL &&
      s->topic != NULL && (s->comp_topic = strdup(s->topic)) == NULL)
    return false;
  if (!get_name(c, v, "action", p, SAGA_DEF_MAX_NAME, true, &s->comp_action))
    return false;
  s->comp_timeout_ms = s->timeout_ms;
  get_u32(c, v, "timeout_ms", p, SAGA_DEF_TIMEOUT_MIN_MS,
          SAGA_DEF_TIMEOUT_MAX_MS, &s->comp_timeout_ms);
  s->comp_retry = d->comp_retry;
  get_retry(c, v, "retry", p, 0, SAGA_DEF_ATTEMPTS_MAX, "", &s->comp_retry);
  if (s->comp_topic == NULL || s->comp_action == NULL) {
    /* Reported already; keep the definition consistent for the checks
     * that follow. */
    free(s->comp_topic);
    free(s->comp_action);
    s->comp_topic = NULL;
    s->comp_action = NULL;
  }
  return true;
}

static const char *const kind_names[] = {"compensatable", "pivot",
                                         "retriable"};

const char *saga_step_kind_name(saga_step_kind_t kind) {
  if ((unsigned)kind < sizeof kind_names / sizeof kind_names[0])
    return kind_names[kind];
  return "unknown";
}

static void get_kind(ctx_t *c, const cJSON *so, const char *path,
                     saga_step_kind_t *kind) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(so, "kind");
  *kind = SAGA_STEP_COMPENSATABLE;
  if (v == NULL)
    return;
  if (cJSON_IsString(v))
    for (unsigned k = 0; k < 3; k++)
      if (strcmp(v->valuestring, kind_names[k]) == 0) {
        *kind = (saga_step_kind_t)k;
        return;
      }
  char p[256];
  char got[96];
  join(p, sizeof p, path, "kind");
  describe(v, got, sizeof got);
  fail(c, p,
       "must be one of \"compensatable\", \"pivot\", \"retriable\", got %s",
       got);
}

static const char *const step_keys[] = {
    "name",  "topic",          "action", "kind",        "timeout_ms",
    "retry", "group",          "compensation", "stuck_after_ms",
    "description", "input", NULL};

/* ---- data flow: "input" of a step, "output" of the saga ---- */

static void flow_map_free(saga_flow_map_t *m) {
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->n; i++) {
    free(m->entries[i].key);
    free(m->entries[i].pointer);
    free(m->entries[i].rest);
  }
  free(m->entries);
  free(m);
}


/* Read a mapping object at obj[key] (absent: *out stays NULL). Pointers
 * are split here; which steps they may name is checked by check_flow once
 * every step is known. */
static bool get_map(ctx_t *c, const cJSON *obj, const char *key,
                    const char *path, saga_flow_map_t **out) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (m == NULL)
    return true;
  char p[320];
  join(p, sizeof p, path, key);
  if (!cJSON_IsObject(m) || cJSON_GetArraySize(m) < 1) {
    char got[96];
    describe(m, got, sizeof got);
    fail(c, p,
         "must be an object of fields to JSON Pointers, e.g. {\"order\": "
         "\"/input/order\"}, got %s",
         got);
    return true;
  }
  saga_flow_map_t *map = calloc(1, sizeof *map);
  if (map == NULL ||
      (map->entries = calloc((size_t)cJSON_GetArraySize(m),
                             sizeof *map->entries)) == NULL) {
    free(map);
    return false;
  }
  *out = map;
  const cJSON *e;
  cJSON_ArrayForEach(e, m) {
    char ep[400];
    join(ep, sizeof ep, p, e->string);
    bool rooted = cJSON_IsString(e) && e->valuestring[0] == '/';
    /* RFC 6901: ~ only as ~0 or ~1 */
    const char *tilde = rooted ? e->valuestring : NULL;
    while (tilde != NULL && (tilde = strchr(tilde, '~')) != NULL &&
           (tilde[1] == '0' || tilde[1] == '1'))
      tilde += 2;
    if (!rooted || tilde != NULL) {
      char got[96];
      describe(e, got, sizeof got);
      fail(c, ep,
           !rooted ? "must be a JSON Pointer starting with \"/input\" or "
                     "\"/steps/<step>/output\", got %s"
                   : "must be a valid JSON Pointer (RFC 6901), where ~ is "
                     "followed by 0 or 1, got %s",
           got);
      continue;
    }
    saga_flow_entry_t *fe = &map->entries[map->n++];
    fe->step = -1;
    if ((fe->key = strdup(e->string)) == NULL ||
        (fe->pointer = strdup(e->valuestring)) == NULL)
      return false;
  }
  return true;
}

/* Split each pointer into the document it reads and the rest, and check
 * that a step's mapping names only the input and steps of earlier blocks
 * (limit = the step's block start; the saga's output: nsteps). */
static void check_map(ctx_t *c, const saga_def_t *def, saga_flow_map_t *m,
                      const char *path, uint32_t step, uint32_t limit) {
  for (size_t i = 0; m != NULL && i < m->n; i++) {
    saga_flow_entry_t *e = &m->entries[i];
    char p[400];
    join(p, sizeof p, path, e->key);
    const char *ptr = e->pointer;
    const char *rest = NULL;
    if (strncmp(ptr, "/input", 6) == 0 && (ptr[6] == '\0' || ptr[6] == '/')) {
      e->step = -1;
      rest = ptr + 6;
    } else if (strncmp(ptr, "/steps/", 7) == 0) {
      const char *name = ptr + 7;
      const char *slash = strchr(name, '/');
      size_t n = slash ? (size_t)(slash - name) : strlen(name);
      char sname[SAGA_DEF_MAX_NAME + 1];
      int k = -1;
      if (n <= SAGA_DEF_MAX_NAME) {
        memcpy(sname, name, n);
        sname[n] = '\0';
        k = saga_def_step_index(def, sname);
      }
      if (k < 0) {
        char q[67];
        quote(q, sizeof q, name, n);
        fail(c, p, "names the step %s, which the definition does not have", q);
        continue;
      }
      if (slash == NULL || strncmp(slash, "/output", 7) != 0 ||
          (slash[7] != '\0' && slash[7] != '/')) {
        fail(c, p, "must continue \"/steps/%s/output\": the output is all "
                   "that is recorded of a step",
             sname);
        continue;
      }
      if ((uint32_t)k >= limit) {
        if ((uint32_t)k == step)
          fail(c, p,
               "names \"%s\", the step itself: it has not replied when its "
               "command is sent",
               sname);
        else if (def->steps[step].group != NULL &&
                 saga_def_block_start(def, (uint32_t)k) == limit)
          fail(c, p,
               "names \"%s\", a step of the same parallel group \"%s\": it "
               "has not replied when this step is sent",
               sname, def->steps[step].group);
        else
          fail(c, p,
               "names \"%s\", a later step: it has not replied when this "
               "step is sent",
               sname);
        continue;
      }
      e->step = k;
      rest = slash + 7;
    } else {
      char q[67];
      quote(q, sizeof q, ptr, strlen(ptr));
      fail(c, p,
           "must start with \"/input\" or \"/steps/<step>/output\", got %s", q);
      continue;
    }
    if ((e->rest = strdup(rest)) == NULL)
      c->oom = true;
  }
}

static void check_flow(ctx_t *c, saga_def_t *def) {
  for (uint32_t i = 0; i < def->nsteps; i++) {
    char p[32];
    snprintf(p, sizeof p, "steps[%u].input", i);
    check_map(c, def, def->steps[i].input_map, p, i,
              saga_def_block_start(def, i));
  }
  check_map(c, def, def->output_map, "output", 0, def->nsteps);
}

static bool parse_step(ctx_t *c, const cJSON *so, const char *path,
                       const defaults_t *d, saga_step_def_t *s) {
  if (!cJSON_IsObject(so)) {
    char got[96];
    describe(so, got, sizeof got);
    fail(c, path, "must be an object, got %s", got);
    return true;
  }
  check_keys(c, so, path, step_keys);
  if (!get_name(c, so, "name", path, SAGA_DEF_MAX_NAME, true, &s->name) ||
      !get_name(c, so, "topic", path, SAGA_DEF_MAX_TOPIC, true, &s->topic) ||
      !get_name(c, so, "action", path, SAGA_DEF_MAX_NAME, false, &s->action) ||
      !get_name(c, so, "group", path, SAGA_DEF_MAX_NAME, false, &s->group) ||
      !get_map(c, so, "input", path, &s->input_map))
    return false;
  if (s->action == NULL && s->name != NULL &&
      (s->action = strdup(s->name)) == NULL)
    return false;
  check_string(c, so, "description", path);
  get_kind(c, so, path, &s->kind);
  s->timeout_ms = d->timeout_ms;
  get_u32(c, so, "timeout_ms", path, SAGA_DEF_TIMEOUT_MIN_MS,
          SAGA_DEF_TIMEOUT_MAX_MS, &s->timeout_ms);
  s->stuck_after_ms = d->stuck_after_ms;
  get_u32(c, so, "stuck_after_ms", path, SAGA_DEF_TIMEOUT_MIN_MS,
          SAGA_DEF_TIMEOUT_MAX_MS, &s->stuck_after_ms);
  s->retry = d->retry;
  if (s->kind == SAGA_STEP_RETRIABLE) {
    /* Forward only: a retriable step is retried until it succeeds. */
    get_retry(c, so, "retry", path, 0, 0,
              " (unlimited) for a retriable step, which is retried until it "
              "succeeds",
              &s->retry);
    s->retry.max_attempts = 0;
  } else {
    /* unlimited attempts are for retriable steps only */
    char note[48];
    snprintf(note, sizeof note, " for a %s step",
             saga_step_kind_name(s->kind));
    get_retry(c, so, "retry", path, 1, SAGA_DEF_ATTEMPTS_MAX, note,
              &s->retry);
  }

  char p[256];
  bool present = false;
  if (!get_compensation(c, so, path, d, s, &present))
    return false;
  join(p, sizeof p, path, "compensation");
  if (s->kind == SAGA_STEP_COMPENSATABLE && !present)
    fail(c, p,
         "is required for a compensatable step (write \"none\" if it has "
         "nothing to undo)");
  if (s->kind == SAGA_STEP_RETRIABLE && s->comp_topic != NULL)
    fail(c, p, "must be \"none\": a retriable step is never compensated");
  return true;
}

/* Rules across steps: names unique, one pivot, kinds in order, groups
 * consecutive, the pivot alone. */
static void check_steps(ctx_t *c, saga_def_t *def) {
  def->pivot = -1;
  char p[64];
  for (uint32_t i = 0; i < def->nsteps; i++) {
    saga_step_def_t *s = &def->steps[i];
    for (uint32_t j = 0; j < i && s->name != NULL; j++)
      if (def->steps[j].name != NULL &&
          strcmp(def->steps[j].name, s->name) == 0) {
        snprintf(p, sizeof p, "steps[%u].name", i);
        fail(c, p, "must be unique, \"%s\" is also steps[%u].name", s->name,
             j);
      }
    snprintf(p, sizeof p, "steps[%u].kind", i);
    if (s->kind == SAGA_STEP_PIVOT) {
      if (def->pivot >= 0)
        fail(c, p, "only one pivot step is allowed, steps[%d] is already the "
                   "pivot",
             def->pivot);
      else
        def->pivot = (int32_t)i;
    } else if (s->kind == SAGA_STEP_COMPENSATABLE && def->pivot >= 0) {
      fail(c, p,
           "must be \"retriable\" after the pivot step \"%s\", got "
           "\"compensatable\"",
           def->steps[def->pivot].name ? def->steps[def->pivot].name : "?");
    } else if (s->kind == SAGA_STEP_RETRIABLE && def->pivot < 0) {
      fail(c, p,
           "a retriable step must come after the pivot step, got "
           "\"retriable\" with no pivot before it");
    }
    if (s->group == NULL)
      continue;
    snprintf(p, sizeof p, "steps[%u].group", i);
    if (s->kind == SAGA_STEP_PIVOT)
      fail(c, p, "must be absent: the pivot step runs alone, not in a "
                 "parallel group");
    bool contiguous = i > 0 && def->steps[i - 1].group != NULL &&
                      strcmp(def->steps[i - 1].group, s->group) == 0;
    for (uint32_t j = 0; j + 1 < i && !contiguous; j++)
      if (def->steps[j].group != NULL &&
          strcmp(def->steps[j].group, s->group) == 0) {
        fail(c, p,
             "steps of group \"%s\" must be consecutive, steps[%u] is in it "
             "too",
             s->group, j);
        break;
      }
  }
}

static const char *const root_keys[] = {"$schema", "name",  "version",
                                        "description", "defaults", "steps",
                                        "output", NULL};

/* Line and column of json[off], both from 1; a column counts characters
 * (UTF-8 sequences), as an editor does, and a leading byte order mark is
 * not one. */
static void line_col(const char *json, size_t off, int *line, int *col) {
  *line = 1;
  *col = 1;
  size_t i = off >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
  for (; i < off; i++) {
    unsigned char ch = (unsigned char)json[i];
    if (ch == '\n') {
      (*line)++;
      *col = 1;
    } else if ((ch & 0xc0) != 0x80) {
      (*col)++;
    }
  }
}

/* ---- the text: strict JSON (RFC 8259) in UTF-8, before cJSON ----
 *
 * cJSON takes bytes that are not UTF-8 (PostgreSQL refuses the body
 * later), ends a string at \u0000, skips any control character as blank,
 * accepts 01 and 1., stops at the end of the first value and says only
 * "invalid JSON" when nesting is too deep. The text is checked here first,
 * with the place of the first problem; cJSON then only builds the tree. */

typedef enum {
  TEXT_OK,
  TEXT_SYNTAX,   /* why: NULL or a detail */
  TEXT_NUL,      /* \u0000 in a string */
  TEXT_DEPTH,    /* deeper than cJSON parses */
  TEXT_TRAILING, /* something after the document */
} text_err_t;

typedef struct {
  const char *s;
  size_t len;
  size_t pos; /* of the problem, once err is set */
  text_err_t err;
  const char *why;
} scan_t;

static bool scan_fail(scan_t *t, text_err_t err, const char *why) {
  t->err = err;
  t->why = why;
  return false;
}

static int scan_peek(const scan_t *t) {
  return t->pos < t->len ? (unsigned char)t->s[t->pos] : -1;
}

static void scan_blank(scan_t *t) {
  int ch;
  while ((ch = scan_peek(t)) == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
    t->pos++;
}

static bool scan_digits(scan_t *t) {
  size_t start = t->pos;
  int ch;
  while ((ch = scan_peek(t)) >= '0' && ch <= '9')
    t->pos++;
  return t->pos > start || scan_fail(t, TEXT_SYNTAX, NULL);
}

static bool scan_number(scan_t *t) {
  if (scan_peek(t) == '-')
    t->pos++;
  if (scan_peek(t) == '0')
    t->pos++;
  else if (!scan_digits(t))
    return false;
  if (scan_peek(t) == '.') {
    t->pos++;
    if (!scan_digits(t))
      return false;
  }
  if (scan_peek(t) == 'e' || scan_peek(t) == 'E') {
    t->pos++;
    if (scan_peek(t) == '+' || scan_peek(t) == '-')
      t->pos++;
    if (!scan_digits(t))
      return false;
  }
  return true;
}

/* The 4 hex digits of a \u escape at t->pos. */
static bool scan_hex4(scan_t *t, unsigned *out) {
  *out = 0;
  for (int i = 0; i < 4; i++) {
    int d = scan_peek(t) < 0 ? -1 : saga__hexval((char)scan_peek(t));
    if (d < 0)
      return scan_fail(t, TEXT_SYNTAX, NULL);
    *out = *out * 16 + (unsigned)d;
    t->pos++;
  }
  return true;
}

static bool scan_string(scan_t *t) {
  size_t open = t->pos++;
  for (;;) {
    int ch = scan_peek(t);
    if (ch < 0) {
      t->pos = open;
      return scan_fail(t, TEXT_SYNTAX, "unterminated string");
    }
    if (ch == '"') {
      t->pos++;
      return true;
    }
    if (ch < 0x20)
      return scan_fail(t, TEXT_SYNTAX,
                       "unescaped control character in a string");
    if (ch != '\\') {
      t->pos++;
      continue;
    }
    size_t at = t->pos++;
    ch = scan_peek(t);
    if (ch < 0 || strchr("\"\\/bfnrtu", ch) == NULL || ch == '\0')
      return scan_fail(t, TEXT_SYNTAX, NULL);
    t->pos++;
    if (ch != 'u')
      continue;
    unsigned cp;
    if (!scan_hex4(t, &cp))
      return false;
    if (cp == 0) {
      t->pos = at;
      return scan_fail(t, TEXT_NUL, NULL);
    }
    if (cp >= 0xdc00 && cp <= 0xdfff) {
      t->pos = at;
      return scan_fail(t, TEXT_SYNTAX, "unpaired UTF-16 surrogate");
    }
    if (cp >= 0xd800 && cp <= 0xdbff) {
      unsigned lo = 0;
      bool paired = t->len - t->pos >= 2 && t->s[t->pos] == '\\' &&
                    t->s[t->pos + 1] == 'u';
      if (paired) {
        t->pos += 2;
        paired = scan_hex4(t, &lo) && lo >= 0xdc00 && lo <= 0xdfff;
      }
      if (!paired) {
        t->pos = at;
        return scan_fail(t, TEXT_SYNTAX, "unpaired UTF-16 surrogate");
      }
    }
  }
}

static bool scan_value(scan_t *t, int depth);

/* An object or an array at depth (the document is at 0): cJSON refuses
 * the one at CJSON_NESTING_LIMIT. */
static bool scan_container(scan_t *t, int depth) {
  int close = t->s[t->pos] == '{' ? '}' : ']';
  if (depth >= CJSON_NESTING_LIMIT)
    return scan_fail(t, TEXT_DEPTH, NULL);
  t->pos++;
  scan_blank(t);
  if (scan_peek(t) == close) {
    t->pos++;
    return true;
  }
  for (;;) {
    if (close == '}') {
      if (scan_peek(t) != '"')
        return scan_fail(t, TEXT_SYNTAX, NULL);
      if (!scan_string(t))
        return false;
      scan_blank(t);
      if (scan_peek(t) != ':')
        return scan_fail(t, TEXT_SYNTAX, NULL);
      t->pos++;
      scan_blank(t);
    }
    if (!scan_value(t, depth + 1))
      return false;
    scan_blank(t);
    int ch = scan_peek(t);
    if (ch != ',' && ch != close)
      return scan_fail(t, TEXT_SYNTAX, NULL);
    t->pos++;
    if (ch == close)
      return true;
    scan_blank(t);
  }
}

static bool scan_value(scan_t *t, int depth) {
  static const char *const literals[] = {"true", "false", "null"};
  int ch = scan_peek(t);
  if (ch == '{' || ch == '[')
    return scan_container(t, depth);
  if (ch == '"')
    return scan_string(t);
  if (ch == '-' || (ch >= '0' && ch <= '9'))
    return scan_number(t);
  for (size_t i = 0; i < 3; i++) {
    size_t n = strlen(literals[i]);
    if (t->len - t->pos >= n && memcmp(t->s + t->pos, literals[i], n) == 0) {
      t->pos += n;
      return true;
    }
  }
  return scan_fail(t, TEXT_SYNTAX, NULL);
}

/* The text of json[0..len) is one JSON value in UTF-8 that cJSON reads
 * whole; else report the first problem with its line and column. */
static bool check_text(ctx_t *c, const char *json, size_t len) {
  int line;
  int col;
  size_t bad = saga__utf8_bad_at(json, len);
  if (bad < len) {
    line_col(json, bad, &line, &col);
    fail(c, "", "invalid UTF-8 at line %d, column %d", line, col);
    return false;
  }
  scan_t t = {json, len, 0, TEXT_OK, NULL};
  if (len >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0)
    t.pos = 3; /* a byte order mark, which cJSON skips too */
  scan_blank(&t);
  if (scan_value(&t, 0)) {
    scan_blank(&t);
    if (t.pos == len)
      return true;
    t.err = TEXT_TRAILING;
  }
  line_col(json, t.pos, &line, &col);
  switch (t.err) {
  case TEXT_NUL:
    fail(c, "", "NUL character (\\u0000) in a string at line %d, column %d",
         line, col);
    break;
  case TEXT_DEPTH:
    fail(c, "",
         "nesting too deep at line %d, column %d, at most %d levels of "
         "objects and arrays",
         line, col, CJSON_NESTING_LIMIT);
    break;
  case TEXT_TRAILING:
    fail(c, "", "unexpected text after the JSON document at line %d, column %d",
         line, col);
    break;
  default:
    if (t.why != NULL)
      fail(c, "", "invalid JSON at line %d, column %d: %s", line, col, t.why);
    else
      fail(c, "", "invalid JSON at line %d, column %d", line, col);
    break;
  }
  return false;
}

typedef struct {
  const char *key;
  size_t i;
  cJSON *item;
} member_t;

static int cmp_member(const void *a, const void *b) {
  const member_t *x = a;
  const member_t *y = b;
  int r = strcmp(x->key, y->key);
  return r != 0 ? r : (x->i > y->i) - (x->i < y->i);
}

/* Keys that an object of v (at any depth) has twice: cJSON keeps both and
 * finds the first, so a second "name" would be ignored. Each later one is
 * an error at its path; path[0..used) is v's, cap the buffer's size. */
static void check_dup_keys(ctx_t *c, const cJSON *v, char *path, size_t used,
                           size_t cap) {
  if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
    return;
  bool obj = cJSON_IsObject(v);
  size_t n = 0;
  for (const cJSON *e = v->child; e != NULL; e = e->next)
    n++;
  bool *dup = NULL;
  if (obj && n > 1) {
    /* sorted, so that a large object costs n log n */
    member_t *m = malloc(n * sizeof *m);
    dup = calloc(n, sizeof *dup);
    if (m == NULL || dup == NULL) {
      free(m);
      free(dup);
      c->oom = true;
      return;
    }
    size_t i = 0;
    for (const cJSON *e = v->child; e != NULL; e = e->next, i++) {
      m[i].key = e->string != NULL ? e->string : "";
      m[i].i = i;
    }
    qsort(m, n, sizeof *m, cmp_member);
    for (i = 1; i < n; i++)
      if (strcmp(m[i - 1].key, m[i].key) == 0)
        dup[m[i].i] = true;
    free(m);
  }
  size_t i = 0;
  for (const cJSON *e = v->child; e != NULL; e = e->next, i++) {
    size_t u = used;
    bool fits;
    path[u] = '\0';
    if (obj) {
      fits = put_key(path, cap, &u, e->string != NULL ? e->string : "");
    } else {
      char idx[32];
      snprintf(idx, sizeof idx, "[%zu]", i);
      fits = put_text(path, cap, &u, idx, strlen(idx), false);
    }
    if (dup != NULL && dup[i])
      fail(c, path,
           "duplicate key, each key may appear only once in an object");
    /* a path cut short gets nothing more appended */
    check_dup_keys(c, e, path, fits ? u : cap - 1, cap);
  }
  path[used] = '\0';
  free(dup);
}

void saga_def_free(saga_def_t *def) {
  if (def == NULL)
    return;
  for (uint32_t i = 0; def->steps != NULL && i < def->nsteps; i++) {
    saga_step_def_t *s = &def->steps[i];
    free(s->name);
    free(s->topic);
    free(s->action);
    free(s->group);
    free(s->comp_topic);
    free(s->comp_action);
    flow_map_free(s->input_map);
  }
  free(def->steps);
  flow_map_free(def->output_map);
  free(def->name);
  free(def->source);
  free(def->body);
  free(def);
}

/* Sort the members of every object of v by key (bytewise), keeping the
 * order of equal keys: the canonical body, whose hash identifies a
 * recorded definition, so this order must never change. False on OOM. */
static bool sort_members(cJSON *v) {
  if (v == NULL || (!cJSON_IsObject(v) && !cJSON_IsArray(v)))
    return true;
  size_t n = 0;
  for (cJSON *c = v->child; c != NULL; c = c->next) {
    if (!sort_members(c))
      return false;
    n++;
  }
  if (!cJSON_IsObject(v) || n < 2)
    return true;
  member_t *m = malloc(n * sizeof *m);
  if (m == NULL)
    return false;
  size_t i = 0;
  for (cJSON *c = v->child; c != NULL; c = c->next, i++) {
    m[i].key = c->string != NULL ? c->string : "";
    m[i].i = i;
    m[i].item = c;
  }
  qsort(m, n, sizeof *m, cmp_member); /* the index breaks ties: stable */
  for (i = 0; i < n; i++) {
    m[i].item->prev = i > 0 ? m[i - 1].item : m[n - 1].item;
    m[i].item->next = i + 1 < n ? m[i + 1].item : NULL;
  }
  v->child = m[0].item; /* cJSON: the head's prev is the tail */
  free(m);
  return true;
}

/* def->body and def->sha256 from the parsed document (sorted in place). */
static int set_body(saga_def_t *def, cJSON *root) {
  if (!sort_members(root))
    return SAGA_CORE_ENOMEM;
  char *text = cJSON_PrintUnformatted(root);
  if (text != NULL)
    def->body = strdup(text);
  cJSON_free(text);
  if (def->body == NULL)
    return SAGA_CORE_ENOMEM;
  def->body_len = strlen(def->body);
  saga__sha256_hex(def->body, def->body_len, def->sha256);
  return SAGA_CORE_OK;
}

int saga_def_parse(const char *json, size_t len, const char *source,
                   saga_def_t **out, saga_diags_t *diags) {
  if (json == NULL || out == NULL)
    return SAGA_CORE_EINVAL;
  *out = NULL;
  ctx_t c = {source ? source : "<definition>", diags, 0, false};
  if (!check_text(&c, json, len))
    return c.oom ? SAGA_CORE_ENOMEM : SAGA_CORE_EDEF;
  const char *end = NULL;
  /* Only out of memory, or a number cJSON reads differently. */
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
  if (root == NULL) {
    int line;
    int col;
    size_t off = end != NULL && end >= json ? (size_t)(end - json) : 0;
    line_col(json, off > len ? len : off, &line, &col);
    fail(&c, "", "invalid JSON at line %d, column %d", line, col);
    return c.oom ? SAGA_CORE_ENOMEM : SAGA_CORE_EDEF;
  }
  int rc = SAGA_CORE_ENOMEM;
  saga_def_t *def = calloc(1, sizeof *def);
  if (def == NULL || (def->source = strdup(c.source)) == NULL)
    goto out;
  if (!cJSON_IsObject(root)) {
    char got[96];
    describe(root, got, sizeof got);
    fail(&c, "", "the document must be an object, got %s", got);
    rc = SAGA_CORE_EDEF;
    goto out;
  }
  char path[512] = "";
  check_dup_keys(&c, root, path, 0, sizeof path);
  check_keys(&c, root, "", root_keys);
  check_string(&c, root, "$schema", "");
  check_string(&c, root, "description", "");
  if (!get_name(&c, root, "name", "", SAGA_DEF_MAX_NAME, true, &def->name))
    goto out;
  if (cJSON_GetObjectItemCaseSensitive(root, "version") == NULL)
    fail(&c, "version", "is required");
  get_u32(&c, root, "version", "", 1, INT32_MAX, &def->version);
  defaults_t d;
  get_defaults(&c, root, &d);

  const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
  int n = cJSON_GetArraySize(steps);
  if (steps == NULL) {
    fail(&c, "steps", "is required");
  } else if (!cJSON_IsArray(steps) || n < 1 || n > SAGA_DEF_MAX_STEPS) {
    char got[96];
    describe(steps, got, sizeof got);
    if (cJSON_IsArray(steps))
      snprintf(got, sizeof got, "%d steps", n);
    fail(&c, "steps", "must be an array of 1 to %d steps, got %s",
         SAGA_DEF_MAX_STEPS, got);
  } else {
    def->steps = calloc((size_t)n, sizeof *def->steps);
    if (def->steps == NULL)
      goto out;
    def->nsteps = (uint32_t)n;
    for (int i = 0; i < n; i++) {
      char p[32];
      snprintf(p, sizeof p, "steps[%d]", i);
      if (!parse_step(&c, cJSON_GetArrayItem(steps, i), p, &d,
                      &def->steps[i]))
        goto out;
    }
    check_steps(&c, def);
  }
  /* checked whatever the steps are; which steps its pointers may name
   * only once they are valid */
  if (!get_map(&c, root, "output", "", &def->output_map))
    goto out;
  if (def->steps != NULL && c.errors == 0)
    check_flow(&c, def);
  rc = c.oom ? SAGA_CORE_ENOMEM
       : c.errors > 0 ? SAGA_CORE_EDEF
                      : set_body(def, root);
out:
  cJSON_Delete(root);
  if (rc == SAGA_CORE_OK)
    *out = def;
  else
    saga_def_free(def);
  return rc;
}

int saga_def_step_index(const saga_def_t *def, const char *name) {
  if (def == NULL || name == NULL)
    return -1;
  for (uint32_t i = 0; i < def->nsteps; i++)
    if (strcmp(def->steps[i].name, name) == 0)
      return (int)i;
  return -1;
}

static bool same_group(const saga_def_t *def, uint32_t a, uint32_t b) {
  const char *ga = def->steps[a].group;
  const char *gb = def->steps[b].group;
  return ga != NULL && gb != NULL && strcmp(ga, gb) == 0;
}

uint32_t saga_def_block_start(const saga_def_t *def, uint32_t i) {
  while (i > 0 && same_group(def, i - 1, i))
    i--;
  return i;
}

uint32_t saga_def_block_len(const saga_def_t *def, uint32_t start) {
  uint32_t n = 1;
  while (start + n < def->nsteps && same_group(def, start, start + n))
    n++;
  return n;
}

/* ---- registry ---- */

struct saga_registry {
  saga_def_t **defs;
  size_t n;
  size_t cap;
};

saga_registry_t *saga_registry_new(void) {
  return calloc(1, sizeof(saga_registry_t));
}

void saga_registry_free(saga_registry_t *reg) {
  if (reg == NULL)
    return;
  for (size_t i = 0; i < reg->n; i++)
    saga_def_free(reg->defs[i]);
  free(reg->defs);
  free(reg);
}

size_t saga_registry_count(const saga_registry_t *reg) {
  return reg ? reg->n : 0;
}

const saga_def_t *saga_registry_at(const saga_registry_t *reg, size_t i) {
  return reg && i < reg->n ? reg->defs[i] : NULL;
}

const saga_def_t *saga_registry_find(const saga_registry_t *reg,
                                     const char *name, uint32_t version) {
  const saga_def_t *best = NULL;
  if (reg == NULL || name == NULL)
    return NULL;
  for (size_t i = 0; i < reg->n; i++) {
    const saga_def_t *d = reg->defs[i];
    if (strcmp(d->name, name) != 0)
      continue;
    if (version != 0 && d->version == version)
      return d;
    if (version == 0 && (best == NULL || d->version > best->version))
      best = d;
  }
  return best;
}

int saga_registry_add(saga_registry_t *reg, saga_def_t *def,
                      saga_diags_t *diags) {
  if (reg == NULL || def == NULL)
    return SAGA_CORE_EINVAL;
  const saga_def_t *old = saga_registry_find(reg, def->name, def->version);
  if (old != NULL) {
    ctx_t c = {def->source, diags, 0, false};
    fail(&c, "version",
         "definition \"%s\" version %u is already loaded from %s", def->name,
         def->version, old->source);
    return SAGA_CORE_EDUP;
  }
  if (reg->n == reg->cap) {
    size_t ncap = reg->cap ? reg->cap * 2 : 8;
    saga_def_t **defs = realloc(reg->defs, ncap * sizeof *defs);
    if (defs == NULL)
      return SAGA_CORE_ENOMEM;
    reg->defs = defs;
    reg->cap = ncap;
  }
  reg->defs[reg->n++] = def;
  return SAGA_CORE_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read a whole file (at most MAX_FILE_BYTES) into a malloc'd buffer. */
static int read_file(ctx_t *c, const char *path, char **buf, size_t *len) {
  *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fail(c, "", "could not open file: %s", strerror(errno));
    return SAGA_CORE_EIO;
  }
  int rc = SAGA_CORE_ENOMEM;
  char *b = malloc(MAX_FILE_BYTES + 1);
  if (b == NULL)
    goto out;
  size_t n = fread(b, 1, MAX_FILE_BYTES + 1, f);
  if (ferror(f)) {
    fail(c, "", "could not read file: %s", strerror(errno));
    rc = SAGA_CORE_EIO;
  } else if (n > MAX_FILE_BYTES) {
    fail(c, "", "file too large, expected at most %d bytes", MAX_FILE_BYTES);
    rc = SAGA_CORE_EDEF;
  } else {
    *buf = b;
    *len = n;
    b = NULL;
    rc = SAGA_CORE_OK;
  }
out:
  free(b);
  fclose(f);
  return rc;
}

static bool has_json_suffix(const char *name) {
  size_t n = strlen(name);
  return n > 5 && strcmp(name + n - 5, ".json") == 0 && name[0] != '.';
}

int saga_registry_load_dir(saga_registry_t *reg, const char *dir,
                           saga_diags_t *diags, size_t *loaded) {
  if (loaded != NULL)
    *loaded = 0;
  if (reg == NULL || dir == NULL)
    return SAGA_CORE_EINVAL;
  ctx_t dc = {dir, diags, 0, false};
  DIR *dh = opendir(dir);
  if (dh == NULL) {
    fail(&dc, "", "could not open definitions directory: %s",
         strerror(errno));
    return SAGA_CORE_EIO;
  }
  char **names = NULL;
  size_t n = 0;
  size_t cap = 0;
  int rc = SAGA_CORE_OK;
  struct dirent *e;
  while ((e = readdir(dh)) != NULL) {
    if (!has_json_suffix(e->d_name))
      continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      char **nn = realloc(names, ncap * sizeof *nn);
      if (nn == NULL) {
        rc = SAGA_CORE_ENOMEM;
        goto out;
      }
      names = nn;
      cap = ncap;
    }
    if ((names[n] = strdup(e->d_name)) == NULL) {
      rc = SAGA_CORE_ENOMEM;
      goto out;
    }
    n++;
  }
  if (n > 0)
    qsort(names, n, sizeof *names, cmp_str);
  for (size_t i = 0; i < n; i++) {
    size_t nlen = strlen(names[i]);
    if (saga__utf8_bad_at(names[i], nlen) < nlen) {
      /* every message names the file, and the store records the name */
      char q[300];
      quote(q, sizeof q, names[i], nlen);
      fail(&dc, "", "file name %s is not valid UTF-8", q);
      rc = SAGA_CORE_EDEF;
      continue;
    }
    size_t plen = strlen(dir) + nlen + 2;
    char *path = malloc(plen);
    if (path == NULL) {
      rc = SAGA_CORE_ENOMEM;
      goto out;
    }
    snprintf(path, plen, "%s/%s", dir, names[i]);
    ctx_t fc = {names[i], diags, 0, false};
    char *buf = NULL;
    size_t len = 0;
    int frc = read_file(&fc, path, &buf, &len);
    free(path);
    saga_def_t *def = NULL;
    if (frc == SAGA_CORE_OK)
      frc = saga_def_parse(buf, len, names[i], &def, diags);
    free(buf);
    if (frc == SAGA_CORE_OK) {
      frc = saga_registry_add(reg, def, diags);
      if (frc != SAGA_CORE_OK)
        saga_def_free(def);
      else if (loaded != NULL)
        (*loaded)++;
    }
    if (frc == SAGA_CORE_ENOMEM) {
      rc = frc;
      goto out;
    }
    if (frc != SAGA_CORE_OK)
      rc = SAGA_CORE_EDEF;
  }
out:
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  closedir(dh);
  return rc;
}
