/* Names of the ports' status values (ports.h). */
#include "ports.h"

#include <stddef.h>

const char *sagad_delivery_text(int status) {
  static const struct {
    int value;
    const char *text;
  } texts[] = {
#define SAGAD_DELIVERY_TEXT_(name, value, text) {value, text},
      SAGAD_DELIVERY_MAP(SAGAD_DELIVERY_TEXT_)
#undef SAGAD_DELIVERY_TEXT_
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
    if (texts[i].value == status)
      return texts[i].text;
  return "unknown delivery status";
}
