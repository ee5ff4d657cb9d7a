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

#include "definition.h"

/* A step's output as recorded (its Succeeded event's payload); len 0 with
 * done set is an empty output. */
typedef struct {
  const uint8_t *data;
  size_t len;
  bool done;
} saga_flow_value_t;

/* The payload of step's DO command: its mapping applied, or without one
 * the envelope {"input": ..., "steps": {"<name>": {"output": ...}}} of the
 * steps of every earlier block, in definition order. input may be empty.
 * outputs has def->nsteps entries. A value that is not JSON is carried as
 * {"$base64": "<its bytes>"}; an empty one, and a pointer that resolves to
 * nothing, as null. On 0, *out is malloc'd (free()) with *out_len bytes
 * (not NUL-terminated). Errors: -1 out of memory or bad arguments. */
int saga_flow_command(const saga_def_t *def, uint32_t step,
                      const uint8_t *input, size_t input_len,
                      const saga_flow_value_t *outputs, uint8_t **out,
                      size_t *out_len);

/* The payload of step's COMPENSATE command: {"command": <what its DO
 * carried>, "output": <what its DO replied, or null when it never
 * succeeded>}. Same conventions as saga_flow_command. */
int saga_flow_compensation(const saga_def_t *def, uint32_t step,
                           const uint8_t *input, size_t input_len,
                           const saga_flow_value_t *outputs, uint8_t **out,
                           size_t *out_len);

/* The saga's output (its "output" mapping), for the COMPLETED
 * notification: *out NULL and *out_len 0 when the definition declares
 * none. Same conventions as saga_flow_command. */
int saga_flow_saga_output(const saga_def_t *def, const uint8_t *input,
                          size_t input_len, const saga_flow_value_t *outputs,
                          uint8_t **out, size_t *out_len);

#endif
