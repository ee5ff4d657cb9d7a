/* Names of the ports' status values (ports.h). */
#include "ports.h"

#include <stddef.h>

typedef struct {
  int value;
  const char *text;
} named_t;

/* The text of value in the n pairs of names, or unknown. */
static const char *name_of(const named_t *names, size_t n, int value,
                           const char *unknown) {
  for (size_t i = 0; i < n; i++)
    if (names[i].value == value)
      return names[i].text;
  return unknown;
}

const char *sagad_delivery_text(int status) {
  static const named_t texts[] = {
#define SAGAD_DELIVERY_TEXT_(name, value, text) {value, text},
      SAGAD_DELIVERY_MAP(SAGAD_DELIVERY_TEXT_)
#undef SAGAD_DELIVERY_TEXT_
  };
  return name_of(texts, sizeof texts / sizeof texts[0], status,
                 "unknown delivery status");
}

const char *sagad_persisted_text(int persisted) {
  static const named_t texts[] = {
#define SAGAD_PERSISTED_TEXT_(name, value, text) {value, text},
      SAGAD_PERSISTED_MAP(SAGAD_PERSISTED_TEXT_)
#undef SAGAD_PERSISTED_TEXT_
  };
  return name_of(texts, sizeof texts / sizeof texts[0], persisted,
                 "persistence unknown");
}
