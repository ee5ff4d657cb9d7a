/* What several sagactl commands read about one saga, shared so that
 * status, history, replay and describe read and print it one way: the
 * decoded records of its stream, its saga_index row as JSON, and how it
 * ended as JSON. */
#ifndef SAGACTL_CLI_RECORDS_H
#define SAGACTL_CLI_RECORDS_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "cli_cmds.h"
#include "cli_db.h"
#include "saga_codec.h"

/* Called for each decoded record of a stream, in order; nonzero stops
 * (the callback printed why). */
typedef int (*cli_record_fn)(void *arg, int64_t version,
                             const saga_record_t *rec);

/* Open the event store of s, call fn for each record of saga_id's stream
 * ("saga-" + id), close it. Returns the number of records (0: no such
 * stream), or -1 with the line printed (unreachable, undecodable record,
 * fn failed). */
int cli_each_saga_record(const cli_settings_t *s, const char *saga_id,
                         cli_record_fn fn, void *arg);

/* The row as a JSON object (saga_id, type, definition_version, status,
 * version, partition, current_step, started_at, updated_at,
 * next_deadline_at, idle_ms against now), or NULL when out of memory. */
cJSON *cli_index_row_json(const cli_index_row_t *r, int64_t now);

/* Add "cancelled" ({"reason", "operator"} or null) and "output" (the
 * saga's output as JSON, a string when it is not JSON, or null) of e to
 * o. */
void cli_ending_add_json(cJSON *o, const cli_ending_t *e);

#endif
