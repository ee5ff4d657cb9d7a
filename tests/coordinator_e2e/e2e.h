/* End-to-end harness for the coordinator: real sagad processes against the
 * embedded PostgreSQL and the Kafka mock, a scripted in-test participant
 * (on saga_kafka_loop) that keeps a ledger of applied and undone effects,
 * de-duplicated by effect key (saga, step, action) as the protocol requires,
 * and a starter. Test-only code: it may print and exit. */
#ifndef SAGA_E2E_H
#define SAGA_E2E_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

/* What the participant does with one command: reply with an outcome (wire
 * numbers 1 SUCCESS, 2 FAILURE, 3 RETRYABLE), not at all, or twice. */
typedef enum {
  E2E_SUCCESS = 1,
  E2E_FAILURE = 2,
  E2E_RETRYABLE = 3,
  E2E_NO_REPLY = 10,
  E2E_REPLY_TWICE = 11, /* success, then the same reply again */
} e2e_answer_t;

/* Script: how to answer (saga id, step index, compensate?, attempt). */
typedef e2e_answer_t (*e2e_script_fn)(const char *saga_id, int step,
                                      int compensate, uint32_t attempt);

#define E2E_STEPS 3

typedef struct e2e e2e_t;

/* Fresh database, unique topics and group, a definitions folder with two
 * 3-step definitions: "fast" (step timeout timeout_ms, one attempt) and
 * "slow" (60 s timeout). Starts the participant. */
e2e_t *e2e_new(const char *name, uint32_t timeout_ms, e2e_script_fn script);
void e2e_free(e2e_t *t);

/* Write one more definition, name, into the definitions folder (before
 * a sagad starts): s1 compensatable, s2 the pivot (compensatable too, so
 * a cancel that compensated it would show in the ledger), s3 retriable;
 * step timeout timeout_ms, attempts per step before the pivot. */
void e2e_write_pivot_def(e2e_t *t, const char *name, uint32_t timeout_ms,
                         uint32_t attempts);

/* Start one sagad (index 0..2) in the group; it logs to a file in the
 * test's folder. Returns its pid. */
pid_t e2e_sagad_start(e2e_t *t, int idx);
/* The same with extra options (NULL-terminated, may be NULL) after the
 * harness's own (the admin endpoint listens on a free port; its address is
 * in the log). */
pid_t e2e_sagad_start_with(e2e_t *t, int idx, const char *const *extra);
/* e2e_sagad_start_with, then wait for the admin endpoint of that sagad to
 * listen (up to timeout_ms, pumping the participant): its port, read from
 * the log (appended to across restarts: the newest line counts), or -1. */
int e2e_sagad_start_admin(e2e_t *t, int idx, const char *const *extra,
                          int64_t timeout_ms);
/* The test's folder: definitions in defs/, sagad<idx>.log. */
const char *e2e_dir(const e2e_t *t);
/* Send sig to sagad idx and wait for it (pumping the participant); returns
 * its exit status (128 + signal when killed). */
int e2e_sagad_stop(e2e_t *t, int idx, int sig);
/* Wait for sagad idx to exit by itself (pumping the participant); its exit
 * status (128 + signal when killed), or -1 when it still runs after
 * timeout_ms (it is left running). */
int e2e_sagad_wait(e2e_t *t, int idx, int64_t timeout_ms);
/* Run sagad with extra arguments to completion (start-up error tests). */
int e2e_sagad_run_once(e2e_t *t, const char *const *extra);

/* Produce a StartSaga for id of type ("fast"/"slow") to the inbox;
 * produced again should its delivery fail (StartSaga is idempotent by saga
 * id), as are the participant's replies. */
void e2e_start(e2e_t *t, const char *type, const char *id);
/* The same with a correlation-id header (NULL = none) and a definition
 * version (0 = the newest). */
void e2e_start_as(e2e_t *t, const char *type, const char *id,
                  const char *correlation_id, uint32_t version);
/* The correlation-id header of the last command the participant received
 * for id ("" when none). */
const char *e2e_command_correlation(e2e_t *t, const char *id);
/* The traceparent header of the last command the participant received
 * for id ("" when none). */
const char *e2e_command_traceparent(e2e_t *t, const char *id);
/* The deadline_ms (Unix epoch ms) of the last command the participant
 * received for id (0 when none). */
int64_t e2e_command_deadline(e2e_t *t, const char *id);
/* The topics the harness chose. */
const char *e2e_inbox(const e2e_t *t);
const char *e2e_notifications(const e2e_t *t);
/* The consumer group every sagad of t joins (--group.id). */
const char *e2e_group(const e2e_t *t);
/* Step i's (0..E2E_STEPS-1) command topic: only sagad produces to it. */
const char *e2e_step_topic(const e2e_t *t, int i);
/* Produce raw bytes with the given type header (NULL = none) to the inbox. */
void e2e_produce_raw(e2e_t *t, const char *type_header, const char *key,
                     const void *value, size_t len);
/* Produce a Reply for (id, step, DO, attempt) with outcome. */
void e2e_reply(e2e_t *t, const char *id, int step, uint32_t attempt,
               int outcome);

/* Status of id in saga_index ("" when absent); static buffer. */
const char *e2e_status(e2e_t *t, const char *id);
/* Pump the participant until id's saga_index status is want; fails the
 * test with the last status seen after ts_timeout_ms(60000). */
void e2e_wait_status(e2e_t *t, const char *id, const char *want);
/* Pump the participant until every id of ids has a terminal status, or the
 * timeout passes. Returns how many are terminal. */
size_t e2e_wait_terminal(e2e_t *t, const char *const *ids, size_t n,
                         int64_t timeout_ms);
/* Pump the participant until at least want of ids (n of them) have a
 * terminal status; fails the test when timeout_ms passes first. Returns
 * how many are terminal. */
size_t e2e_wait_terminal_at_least(e2e_t *t, const char *const *ids, size_t n,
                                  size_t want, int64_t timeout_ms);
/* Pump the participant for ms. */
void e2e_pump(e2e_t *t, int64_t ms);
/* Messages read from the dead-letter topic so far (a reader is started on
 * first call), and the reason header of the last one. */
size_t e2e_dead_letters(e2e_t *t, char *reason, size_t len);

/* The value size of the last dead letter read, and its saga-dlq-truncated
 * header into cut ("" when it was written whole). */
size_t e2e_dead_letter_last(e2e_t *t, char *cut, size_t len);

/* Notifications of saga id with this kind (wire number: 3 COMPLETED, 4
 * COMPENSATED) read from the notification topic so far (a reader that
 * starts at the topic's beginning is started on first call). */
size_t e2e_notifications_seen(e2e_t *t, const char *id, int kind);

/* Ledger: DO effects applied for (id, step), compensations applied,
 * commands received in total for it. The participant applies an effect at
 * most once by construction (effect key), so the ledger shows effects lost
 * or applied against the saga's outcome; e2e_answered_from_record counts the
 * commands (any saga) that a recorded reply answered -- redeliveries and
 * retries of effects already applied. */
int e2e_applied(e2e_t *t, const char *id, int step);
int e2e_undone(e2e_t *t, const char *id, int step);
int e2e_commands(e2e_t *t, const char *id, int step);
size_t e2e_answered_from_record(const e2e_t *t);
/* StartSagas and Replies the harness produced again because their
 * delivery failed (the producer gave up on them). */
size_t e2e_resent(const e2e_t *t);
/* Commands the participant received (any saga), and those whose
 * action_name was not the definition's action (DO: the step's name,
 * COMPENSATE: "undo"). */
size_t e2e_commands_seen(const e2e_t *t);
size_t e2e_action_mismatches(const e2e_t *t);
/* Attempts of (id, step, DO or COMPENSATE) the participant received: bit
 * a-1 set for attempt a (attempts 1..32). */
uint32_t e2e_attempts_received(e2e_t *t, const char *id, int step,
                               int compensate);
const char *e2e_conninfo(const e2e_t *t);

/* The crash workload of the kill and scale-out tests: every fifth saga,
 * "fail2-<i>", fails at step 2 and is compensated; the others, "ok-<i>",
 * complete. e2e_fail2_script is its participant script (pass it to
 * e2e_new); e2e_fail2_ids writes the i-th id into ids[i] and points idp[i]
 * at it, for i < n. */
#define E2E_FAIL2_ID_LEN 32
e2e_answer_t e2e_fail2_script(const char *saga_id, int step, int compensate,
                              uint32_t attempt);
void e2e_fail2_ids(char (*ids)[E2E_FAIL2_ID_LEN], const char **idp,
                   size_t n);

#endif
