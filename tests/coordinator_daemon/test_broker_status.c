/* sagad's Kafka port turns librdkafka's delivery errors into the broker
 * port's own status (ports.h), which is all the engine sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "shell.h"

static void test_delivery_errors_map_to_the_port_status(void **state) {
  (void)state;
  assert_int_equal(sagad_broker_kafka_status(RD_KAFKA_RESP_ERR_NO_ERROR),
                   SAGAD_DELIVERY_OK);
  assert_int_equal(
      sagad_broker_kafka_status(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE),
      SAGAD_DELIVERY_TOO_LARGE);
  assert_int_equal(
      sagad_broker_kafka_status(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT),
      SAGAD_DELIVERY_RETRIABLE);
  assert_int_equal(
      sagad_broker_kafka_status(RD_KAFKA_RESP_ERR__PURGE_QUEUE),
      SAGAD_DELIVERY_RETRIABLE);
  assert_int_equal(
      sagad_broker_kafka_status(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION),
      SAGAD_DELIVERY_RETRIABLE);
  assert_int_equal(
      sagad_broker_kafka_status(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED),
      SAGAD_DELIVERY_FATAL);
  assert_int_equal(
      sagad_broker_kafka_status(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC),
      SAGAD_DELIVERY_FATAL);
}

/* librdkafka's message status says whether a failed message may be in
 * its topic anyway; the port keeps it for the engine's log lines. */
static void test_message_status_maps_to_the_port_persistence(void **state) {
  (void)state;
  assert_int_equal(
      sagad_broker_kafka_persisted(RD_KAFKA_MSG_STATUS_NOT_PERSISTED),
      SAGAD_PERSISTED_NO);
  assert_int_equal(
      sagad_broker_kafka_persisted(RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED),
      SAGAD_PERSISTED_MAYBE);
  assert_int_equal(sagad_broker_kafka_persisted(RD_KAFKA_MSG_STATUS_PERSISTED),
                   SAGAD_PERSISTED_YES);
  assert_int_equal(sagad_broker_kafka_persisted((rd_kafka_msg_status_t)7),
                   SAGAD_PERSISTED_MAYBE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delivery_errors_map_to_the_port_status),
      cmocka_unit_test(test_message_status_maps_to_the_port_persistence),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
