/* order-inventory: reserves stock for an order (DO) and releases it
 * (COMPENSATE). An order with "stock": "out" is refused: a business
 * failure, so the saga compensates with nothing to undo. With "stock":
 * "hold" the stock is reserved but the answer held back, as a slow
 * warehouse would: the order stays before its pivot (the demo cancels
 * one such order). */
#include <string.h>

#include "service.h"

static svc_verdict_t decide(const cJSON *order, const saga_command_t *cmd,
                            const char **reason) {
  (void)cmd;
  if (!strcmp(svc_order_str(order, "stock"), "out")) {
    *reason = "out of stock";
    return SVC_FAIL;
  }
  if (!strcmp(svc_order_str(order, "stock"), "hold"))
    return SVC_APPLY_NO_REPLY;
  return SVC_APPLY;
}

int main(int argc, char **argv) {
  static const svc_spec_t spec = {
      .name = "inventory",
      .topic = "inventory.commands",
      .do_action = "reserve",
      .undo_action = "release",
      .about = "Inventory service of the order example: reserve stock (DO), "
               "release it (COMPENSATE).",
      .behaviour = "Order input: \"stock\": \"out\" -> FAILURE (out of "
                   "stock); \"stock\": \"hold\" -> the stock is reserved "
                   "but no reply is\never sent (the coordinator times out); "
                   "otherwise the stock is reserved.\n",
      .decide = decide,
  };
  return svc_main(&spec, argc, argv);
}
