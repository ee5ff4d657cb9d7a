/* order-shipping: ships the order (DO). The step comes after the pivot, so
 * it is retried until it succeeds and never compensated. An order with
 * "shipping": "flaky" gets RETRYABLE on its first attempt, to show the
 * coordinator's forward retry. */
#include <string.h>

#include "service.h"

static svc_verdict_t decide(const cJSON *order, const saga_command_t *cmd,
                            const char **reason) {
  if (!strcmp(svc_order_str(order, "shipping"), "flaky") && cmd->attempt < 2) {
    *reason = "carrier busy";
    return SVC_RETRY;
  }
  return SVC_APPLY;
}

int main(int argc, char **argv) {
  static const svc_spec_t spec = {
      .name = "shipping",
      .topic = "shipping.commands",
      .do_action = "ship",
      .undo_action = "unship",
      .about = "Shipping service of the order example: ship the order (DO; "
               "after the pivot, never compensated).",
      .behaviour = "Order input: \"shipping\": \"flaky\" -> RETRYABLE on the "
                   "first attempt (carrier busy),\nthen shipped.\n",
      .decide = decide,
  };
  return svc_main(&spec, argc, argv);
}
