/* Shared pieces of the fault tests (tests/faults): the scripted mix of
 * sagas (succeed, fail at step 2, time out at step 2), the exactly-once
 * ledger check, which sagad program the e2e harness runs (the product's or
 * the fault-point build), a private Kafka mock per test, and reading
 * sagad's log. Test-only code: it may print and exit. */
#ifndef SAGA_FAULTS_H
#define SAGA_FAULTS_H

#include <stddef.h>
#include <stdint.h>

#include "e2e.h"

/* The program e2e_sagad_start runs (the harness is compiled here with
 * SAGAD_PATH naming this variable). */
extern const char *faults_sagad_path;

/* Run the next sagad starts as sagad-faults, killed at the hit-th hit of
 * fault point name after delay_ms; or as the product's sagad again. */
void faults_use_fault_point(const char *name, unsigned hit, unsigned delay_ms);
void faults_use_product(void);

/* Saga ids by kind: "ok-N" completes, "fail-N" fails at step 2 and is
 * compensated, "tmo-N" gets no reply at step 2, times out and is
 * compensated (run as type "fast"). */
typedef enum { FAULTS_OK, FAULTS_FAIL, FAULTS_TIMEOUT } faults_kind_t;
faults_kind_t faults_kind(const char *id);
e2e_answer_t faults_script(const char *id, int step, int comp,
                           uint32_t attempt);

/* n ids: kind i picked by pick(i, arg) (NULL: one in 5 fails, one in 10
 * times out); the table lives until faults_ids_free. */
typedef struct {
  char (*buf)[40];
  const char **ids;
  size_t n;
} faults_ids_t;
void faults_ids_make(faults_ids_t *s, size_t n, const char *tag,
                     faults_kind_t (*pick)(size_t i, void *arg), void *arg);
void faults_ids_free(faults_ids_t *s);
/* Produce a StartSaga for each of ids [from, to). */
void faults_start(e2e_t *t, const faults_ids_t *s, size_t from, size_t to);

/* Every saga terminal with the status its kind asks for, every effect
 * applied at most once and as its kind asks, every compensated effect undone
 * exactly once. Fails the test at the first saga that does not hold;
 * returns the number of effects applied + undone checked. */
size_t faults_check_ledger(e2e_t *t, const faults_ids_t *s);

/* sagad acted on nothing it had not appended: every command the
 * participant received for the sagas of s has its DISPATCHED event (same
 * step, action and attempt) in the saga's stream. Fails the test at the
 * first that has not; returns the number of (step, action, attempt)
 * commands checked. */
size_t faults_check_appended(e2e_t *t, const faults_ids_t *s);

/* sagad idx's log as the harness writes it, or NULL; caller frees. */
char *faults_sagad_log(const char *test_name, int idx);
/* Wait until sagad idx's log contains needle; 1 when it did. */
int faults_wait_log(e2e_t *t, const char *test_name, int idx,
                    const char *needle, int64_t timeout_ms);
/* How many times sagad idx's log holds needle (0 without a log). */
long faults_log_count(const char *test_name, int idx, const char *needle);
/* The value of "key=N" in the last line of sagad idx's log holding key, or
 * -1. */
long faults_log_counter(const char *test_name, int idx, const char *key);

/* A private saga-kafka-mock for one test (faults injected cluster-wide
 * there touch no other test): started with a control socket, its bootstrap
 * list put into SAGA_KAFKA_BOOTSTRAP for the harness. */
typedef struct faults_mock faults_mock_t;
faults_mock_t *faults_mock_start(void);
/* Send one control command ("push-errors 0 6 5"); fails the test on an
 * answer other than ok. */
void faults_mock_ctl(faults_mock_t *m, const char *fmt, ...);
/* Send one control command that answers a number before ok
 * ("broker-errors-left 3 0") and return that number; fails the test on
 * any other answer. */
long faults_mock_count(faults_mock_t *m, const char *fmt, ...);
void faults_mock_stop(faults_mock_t *m);
/* Lead each of the first `partitions` partitions of t's inbox from broker
 * 1 and of its step topics from broker `only` (not 1), then pump 1.5 s
 * (metadata.refresh 1 s: every client follows): `only` then takes
 * Produce requests from sagad alone (the inbox is the one topic the
 * starter and the participant write). */
void faults_lead_apart(faults_mock_t *m, e2e_t *t, int partitions, int only);
/* Coordinate t's sagad consumer group from broker (the mock picks one by
 * the group id's hash otherwise). Call before sagad starts: a test taking
 * a broker down then knows whether sagad's heartbeats and offset commits
 * go there (its session times out after kafka.session.timeout.ms and its
 * partitions are revoked and assigned again). */
void faults_coordinate_from(faults_mock_t *m, e2e_t *t, int broker);

#endif
