/* Data flow between a saga's steps: what each command carries, built from
 * the saga's input and the outputs its earlier steps replied with, by the
 * mappings of the definition (docs/definitions.md, "Passing data between
 * steps"). Pure and deterministic: the same input and outputs give the same
 * bytes, so a resent or replayed command is byte for byte the one first
 * sent (design.md invariant 9).
 *
 * A mapping is a JSON object whose values are JSON Pointers (RFC 6901) into
 * the document {"input": <the saga's input>, "steps": {"<step>":
 * {"output": <its output>}}}: "/input/order/id", "/steps/charge/output".
 * A step's mapping may name the input and steps of earlier blocks only (a
 * step of its own parallel group or a later one has not replied when it is
 * dispatched); the saga's output mapping may name any step. */
#ifndef SAGA_DATAFLOW_H
#define SAGA_DATAFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One entry of a mapping: "key": "/input/..." or "/steps/<name>/output...". */
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

/* A step's output as recorded (its Succeeded event's payload); len 0 with
 * done set is an empty output. */
typedef struct {
  const uint8_t *data;
  size_t len;
  bool done;
} saga_flow_value_t;

/* Free a mapping and its strings. NULL-safe. */
void saga_flow_map_free(saga_flow_map_t *m);

struct saga_def_s;

/* The payload of step's DO command: its mapping applied, or without one
 * the envelope {"input": ..., "steps": {"<name>": {"output": ...}}} of the
 * steps of every earlier block, in definition order. input may be empty.
 * outputs has def->nsteps entries. A value that is not JSON is carried as
 * {"$base64": "<its bytes>"}; an empty one, and a pointer that resolves to
 * nothing, as null. On 0, *out is malloc'd (free()) with *out_len bytes
 * (not NUL-terminated). Errors: -1 out of memory or bad arguments. */
int saga_flow_command(const struct saga_def_s *def, uint32_t step,
                      const uint8_t *input, size_t input_len,
                      const saga_flow_value_t *outputs, uint8_t **out,
                      size_t *out_len);

/* The payload of step's COMPENSATE command: {"command": <what its DO
 * carried>, "output": <what its DO replied, or null when it never
 * succeeded>}. Same conventions as saga_flow_command. */
int saga_flow_compensation(const struct saga_def_s *def, uint32_t step,
                           const uint8_t *input, size_t input_len,
                           const saga_flow_value_t *outputs, uint8_t **out,
                           size_t *out_len);

/* The saga's output (its "output" mapping), for the COMPLETED
 * notification: *out NULL and *out_len 0 when the definition declares
 * none. Same conventions as saga_flow_command. */
int saga_flow_saga_output(const struct saga_def_s *def, const uint8_t *input,
                          size_t input_len, const saga_flow_value_t *outputs,
                          uint8_t **out, size_t *out_len);

#endif
