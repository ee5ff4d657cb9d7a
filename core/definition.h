/* Saga definitions: JSON documents (cJSON) parsed and validated into
 * immutable structs, and a registry that keeps several versions of each
 * definition side by side. A running saga holds a pointer to the exact
 * version it started with, so the registry must outlive every saga.
 * Only saga_registry_load_dir touches the file system. */
#ifndef SAGA_DEFINITION_H
#define SAGA_DEFINITION_H

#include <stddef.h>
#include <stdint.h>

#include "core_error.h"

/* Hard limits, so per-saga state stays small and fixed. */
#define SAGA_DEF_MAX_STEPS 32
#define SAGA_DEF_MAX_NAME 64 /* saga, step, action and group names */
#define SAGA_DEF_MAX_TOPIC 249 /* Kafka's own limit */

/* Bounds checked at load (inclusive). Deadlines, backoffs and stuck
 * thresholds go up to 30 days (a manual approval, a transfer that settles
 * tomorrow): 2592000000 ms still fits the uint32_t fields below, and every
 * absolute time computed from them is int64_t Unix epoch ms. */
#define SAGA_DEF_TIMEOUT_MIN_MS 10
#define SAGA_DEF_TIMEOUT_MAX_MS 2592000000u
#define SAGA_DEF_BACKOFF_MAX_MS 2592000000u
#define SAGA_DEF_ATTEMPTS_MAX 1000
#define SAGA_DEF_MULTIPLIER_MAX 10.0

typedef enum {
  SAGA_STEP_COMPENSATABLE = 0, /* undone by its compensation on failure */
  SAGA_STEP_PIVOT = 1,         /* the point of no return: once it succeeds
                                  the saga only goes forward */
  SAGA_STEP_RETRIABLE = 2,     /* after the pivot: retried until it
                                  succeeds, never compensated */
} saga_step_kind_t;

typedef struct {
  uint32_t max_attempts;       /* 0 = unlimited (retriable steps) */
  uint32_t initial_backoff_ms; /* delay after the first failed attempt */
  double multiplier;           /* delay grows by this factor per attempt */
  uint32_t max_backoff_ms;     /* cap on one delay */
  double jitter;               /* 0..1: a delay is shortened by up to this
                                  fraction, drawn from the caller's rng */
} saga_retry_policy_t;

/* Mappings of the data flow between steps ("input" of a step, "output"
 * of the saga), parsed and checked here and applied by dataflow.h. One
 * entry: "key": "/input/..." or "/steps/<name>/output...". */
typedef struct {
  char *key;      /* the field of the built object */
  char *pointer;  /* as written in the definition */
  int32_t step;   /* -1: into the input; else the step whose output */
  char *rest;     /* the pointer inside that document ("" = all of it) */
} saga_flow_entry_t;

typedef struct saga_flow_map {
  size_t n;
  saga_flow_entry_t *entries;
} saga_flow_map_t;


typedef struct {
  char *name;               /* unique within the definition */
  char *topic;              /* where the DO command goes */
  char *action;             /* participant's action name (default: name) */
  saga_step_kind_t kind;
  uint32_t timeout_ms;      /* deadline of one DO attempt */
  saga_retry_policy_t retry;
  char *group;              /* parallel group or NULL; consecutive steps of
                               one group are dispatched together */
  uint32_t stuck_after_ms;  /* no progress for this long = stuck */
  /* Compensation; comp_topic == NULL means "none". */
  char *comp_topic;
  char *comp_action;
  uint32_t comp_timeout_ms;
  saga_retry_policy_t comp_retry;
  /* What its commands carry ("input"); NULL = the default envelope
   * (dataflow.h). */
  saga_flow_map_t *input_map;
} saga_step_def_t;

typedef struct {
  char *name;
  uint32_t version;        /* >= 1 */
  char *source;            /* file (or label) it was loaded from */
  uint32_t nsteps;         /* 1..SAGA_DEF_MAX_STEPS */
  int32_t pivot;           /* index of the pivot step, -1 if none */
  saga_step_def_t *steps;
  saga_flow_map_t *output_map; /* the saga's "output"; NULL = none */
  /* The document in canonical form -- every object's members sorted by
   * key (a stable sort), no whitespace -- and its SHA-256 in hex: what
   * the store records for (name, version). Layout and member order do
   * not change them; any other change does. */
  char *body;
  size_t body_len;
  char sha256[65];
} saga_def_t;

/* A growing list of load errors, each a full line
 * "file: json.path: what was expected, got what". Zero-initialise it;
 * release with saga_diags_clear. */
typedef struct {
  size_t n;
  char **items;
  size_t cap;
} saga_diags_t;

/* Free every message and reset to empty. NULL-safe. */
void saga_diags_clear(saga_diags_t *d);

/* Parse and validate one definition from json[0..len). source names the
 * document in messages (a file name). Every problem found is appended to
 * diags (which may be NULL); the first is not the only one reported.
 * On success *out is a new definition owned by the caller (saga_def_free).
 * Errors: SAGA_CORE_EDEF (see diags), SAGA_CORE_ENOMEM, SAGA_CORE_EINVAL. */
int saga_def_parse(const char *json, size_t len, const char *source,
                   saga_def_t **out, saga_diags_t *diags);

/* Free a definition. NULL-safe. Never free one held by a registry. */
void saga_def_free(saga_def_t *def);

/* Index of the step named name, or -1. */
int saga_def_step_index(const saga_def_t *def, const char *name);

/* Index of the first step of the parallel block containing step i (i itself
 * when it has no group), and the number of steps in that block. */
uint32_t saga_def_block_start(const saga_def_t *def, uint32_t i);
uint32_t saga_def_block_len(const saga_def_t *def, uint32_t start);

/* Kind name as written in JSON ("compensatable", "pivot", "retriable"). */
const char *saga_step_kind_name(saga_step_kind_t kind);

typedef struct saga_registry saga_registry_t;

/* An empty registry, or NULL when out of memory. Single-threaded use. */
saga_registry_t *saga_registry_new(void);

/* Free the registry and every definition in it. NULL-safe. Sagas pointing
 * at its definitions must be gone first. */
void saga_registry_free(saga_registry_t *reg);

/* Add def, taking ownership on success. A second definition with the same
 * name and version is refused (SAGA_CORE_EDUP, message in diags naming both
 * sources) and stays the caller's. Errors: SAGA_CORE_EDUP, SAGA_CORE_ENOMEM,
 * SAGA_CORE_EINVAL. */
int saga_registry_add(saga_registry_t *reg, saga_def_t *def,
                      saga_diags_t *diags);

/* Parse every "*.json" file of dir (sorted by name, not recursive) and add
 * the valid ones. Every error of every file goes to diags; a bad file never
 * stops the others. Returns SAGA_CORE_OK when all loaded, SAGA_CORE_EDEF
 * when some file was refused (the rest are loaded), SAGA_CORE_EIO when dir
 * cannot be read, SAGA_CORE_ENOMEM. *loaded (may be NULL) gets the number
 * of definitions added. */
int saga_registry_load_dir(saga_registry_t *reg, const char *dir,
                           saga_diags_t *diags, size_t *loaded);

/* The definition name at version, or the newest loaded version when
 * version is 0; NULL when not loaded. Borrowed: valid while reg lives. */
const saga_def_t *saga_registry_find(const saga_registry_t *reg,
                                     const char *name, uint32_t version);

/* Number of definitions (all names, all versions). */
size_t saga_registry_count(const saga_registry_t *reg);

/* The i-th definition in the order they were added (0..count-1), or NULL
 * past the end. Borrowed: valid while reg lives. */
const saga_def_t *saga_registry_at(const saga_registry_t *reg, size_t i);

#endif
