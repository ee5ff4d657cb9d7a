/* order-inventory: reserves stock for an order (DO) and releases it
 * (COMPENSATE). An order with "stock": "out" is refused: a business
 * failure, so the saga compensates with nothing to undo. */
#include <string.h>

#include "service.h"

static svc_verdict_t decide(const cJSON *order, const saga_command_t *cmd,
                            const char **reason) {
  (void)cmd;
  if (!strcmp(svc_order_str(order, "stock"), "out")) {
    *reason = "out of stock";
    return SVC_FAIL;
  }
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
                   "stock); otherwise the stock is reserved.\n",
      .decide = decide,
  };
  return svc_main(&spec, argc, argv);
}
