/* The history timeline: a saga's stored transitions (decoded saga_codec
 * records) turned into readable rows -- time, event, step, action,
 * attempt, outcome, duration (from a command to its reply or deadline) and
 * detail -- printed as a table or as JSON. Pure: no I/O but the FILE it
 * is given. */
#ifndef SAGACTL_CLI_TIMELINE_H
#define SAGACTL_CLI_TIMELINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "definition.h"
#include "saga_codec.h"
#include "saga_machine.h"

typedef struct cli_tl_row {
  int64_t at_ms;        /* when the transition was decided */
  int64_t version;      /* stream version of its record */
  const char *event;    /* "Started", "Dispatched", ... (static) */
  char step[SAGA_DEF_MAX_NAME + 1]; /* name, "#3" without a definition, "" */
  const char *action;   /* "DO", "COMPENSATE" or "" (static) */
  unsigned attempt;     /* 0 = none */
  const char *outcome;  /* "SUCCESS", "FAILURE", "RETRYABLE", "TIMEOUT", "" */
  int64_t duration_ms;  /* command to outcome; -1 = none */
  char detail[256];     /* reason, deadline, retry time, definition */
  /* The operator trail: who asked and why, for OperatorRetry, Resolved
   * and CancelRequested ("" = not given). */
  char who[SM_ID_MAX + 1];
  char why[SAGA_CODEC_MAX_REASON + 1];
  /* With keep_payloads: the saga's input (Started), a step's output
   * (Succeeded) or the saga's output (Completed), malloc'd; else NULL. */
  char *payload;
  size_t payload_len;
} cli_tl_row_t;

typedef struct cli_tl_sent {
  uint8_t step, action;
  uint16_t attempt;
  int64_t at_ms;
} cli_tl_sent_t;

/* Zero-initialise; release with cli_timeline_free. */
typedef struct cli_timeline {
  cli_tl_row_t *rows;
  size_t n, cap;
  cli_tl_sent_t *sent; /* dispatch times, for durations */
  size_t nsent, capsent;
  int keep_payloads; /* set before the first add: copy payloads into rows,
                        print them (a line under their row) and put them in
                        the JSON ("payload") */
} cli_timeline_t;

/* Add the n events of one record (stream version `version`, decided at
 * at_ms). def (may be NULL) names the steps. Returns 0 or -1 when out of
 * memory. */
int cli_timeline_add(cli_timeline_t *tl, const saga_def_t *def,
                     int64_t version, int64_t at_ms, const sm_event_t *ev,
                     size_t n);

void cli_timeline_free(cli_timeline_t *tl);

/* Print the rows as an aligned table with a header line. */
void cli_timeline_print(const cli_timeline_t *tl, FILE *out);

/* The rows as a JSON array of objects (cJSON_Delete), or NULL on OOM.
 * Absent fields are null. */
cJSON *cli_timeline_json(const cli_timeline_t *tl);

/* A payload as JSON: the document p[0..n) holds (all of it; its numbers
 * as written), a string when it is other text, {"$base64": ...} when it
 * is not UTF-8 or holds a NUL, null when p is NULL; NULL when out of
 * memory. */
cJSON *cli_payload_json(const char *p, size_t n);

#endif
