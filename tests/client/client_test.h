/* Helpers shared by the client tests: run a loop until a condition holds
 * (bounded by ts_timeout_ms), and the Kafka settings the mock needs. */
#ifndef SAGA_CLIENT_TEST_H
#define SAGA_CLIENT_TEST_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <uv.h>

#include "test_support.h"

/* Run `loop` until *flag is non-zero or timeout_ms (scaled) passes.
 * Returns *flag. */
int ct_run_until(uv_loop_t *loop, const volatile int *flag,
                 int64_t timeout_ms);

/* Run until `pred(arg)` is true or timeout_ms (scaled) passes. */
int ct_run_until_pred(uv_loop_t *loop, int (*pred)(void *), void *arg,
                      int64_t timeout_ms);

/* Consumer settings for the mock: short session timeout, 5 ms fetch wait,
 * read from the beginning. NULL-terminated name, value pairs. */
extern const char *const ct_consumer_props[];
/* Producer settings: no lingering. */
extern const char *const ct_producer_props[];

/* Drain and close a loop whose handles are all closing. */
void ct_loop_finish(uv_loop_t *loop);

/* Send one command to the embedded Kafka's control socket
 * (SAGA_KAFKA_CONTROL; scripts/kafka.sh, "ctl"), e.g. "topic-error T 29":
 * 0 when it answered ok, -1 when there is no control socket to ask.
 * Fails the test on any other answer. */
int ct_kafka_ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A private Kafka mock cluster of `brokers` brokers in this process
 * (librdkafka's), for a test that takes brokers down without taking them
 * from the other tests: its owning handle in *owner (rd_kafka_destroy it
 * to stop the cluster). Fails the test if it cannot be made. */
rd_kafka_mock_cluster_t *ct_mock_cluster(int brokers, rd_kafka_t **owner);

#endif
