/* order-payment: charges the order's card (DO; the saga's pivot) and
 * refunds it (COMPENSATE). The card field of the order drives the demo's
 * failures: "declined" is a business failure; "slow" charges the card but
 * never answers, so the coordinator times the step out and, its attempts
 * spent, refunds a charge whose outcome it never learnt. */
#include <string.h>

#include "service.h"

static svc_verdict_t decide(const cJSON *order, const saga_command_t *cmd,
                            const char **reason) {
  (void)cmd;
  const char *card = svc_order_str(order, "card");
  if (!strcmp(card, "declined")) {
    *reason = "card declined";
    return SVC_FAIL;
  }
  if (!strcmp(card, "slow"))
    return SVC_APPLY_NO_REPLY;
  return SVC_APPLY;
}

int main(int argc, char **argv) {
  static const svc_spec_t spec = {
      .name = "payment",
      .topic = "payment.commands",
      .do_action = "charge",
      .undo_action = "refund",
      .about = "Payment service of the order example: charge the card (DO), "
               "refund it (COMPENSATE).",
      .behaviour =
          "Order input: \"card\": \"declined\" -> FAILURE (card declined);\n"
          "\"card\": \"slow\" -> the card is charged but no reply is ever "
          "sent\n(the coordinator times out, then refunds); otherwise the "
          "card is charged.\n",
      .decide = decide,
  };
  return svc_main(&spec, argc, argv);
}
