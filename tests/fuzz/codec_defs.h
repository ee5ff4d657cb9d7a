/* The definitions the codec fuzz target applies records to, by index
 * (the first byte of an input); make_seeds.c walks sagas of the first. */
#ifndef SAGA_FUZZ_CODEC_DEFS_H
#define SAGA_FUZZ_CODEC_DEFS_H

static const char *const codec_defs_json[] = {
    /* examples/order-saga/definitions/order.v1.json, shortened */
    "{\"name\":\"order\",\"version\":1,\"defaults\":{\"timeout_ms\":1000,"
    "\"retry\":{\"max_attempts\":3},\"compensation_retry\":{"
    "\"max_attempts\":3}},\"steps\":["
    "{\"name\":\"reserve_inventory\",\"topic\":\"inventory.commands\","
    "\"action\":\"reserve\",\"compensation\":{\"action\":\"release\"}},"
    "{\"name\":\"charge_payment\",\"topic\":\"payment.commands\","
    "\"action\":\"charge\",\"kind\":\"pivot\",\"compensation\":{"
    "\"action\":\"refund\"}},"
    "{\"name\":\"ship\",\"topic\":\"shipping.commands\","
    "\"kind\":\"retriable\"}]}",
    /* a parallel block between two plain steps */
    "{\"name\":\"group\",\"version\":2,\"defaults\":{\"retry\":{"
    "\"max_attempts\":2},\"timeout_ms\":1000,\"compensation_retry\":{"
    "\"max_attempts\":2}},\"steps\":["
    "{\"name\":\"a\",\"topic\":\"t\",\"compensation\":{\"action\":\"undo\"}},"
    "{\"name\":\"b\",\"topic\":\"t\",\"group\":\"g\",\"compensation\":{"
    "\"action\":\"undo\"}},"
    "{\"name\":\"c\",\"topic\":\"t\",\"group\":\"g\",\"compensation\":"
    "\"none\"},"
    "{\"name\":\"d\",\"topic\":\"t\",\"kind\":\"pivot\"}]}",
};
#endif
