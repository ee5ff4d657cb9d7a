/* Text helpers (see text.h). */
#include "text.h"

#include <stdint.h>
#include <string.h>

size_t saga__utf8_seq_len(const void *bytes, size_t n) {
  const unsigned char *v = bytes;
  if (n == 0)
    return 0;
  unsigned c = v[0];
  size_t k;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if ((c & 0xE0) == 0xC0) {
    k = 1;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    k = 2;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    k = 3;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n <= k)
    return 0;
  for (size_t j = 1; j <= k; j++) {
    if ((v[j] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (v[j] & 0x3F);
  }
  if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
      (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return k + 1;
}

size_t saga__utf8_bad_at(const void *bytes, size_t n) {
  const unsigned char *v = bytes;
  size_t i = 0;
  while (i < n) {
    size_t k = saga__utf8_seq_len(v + i, n - i);
    if (k == 0)
      return i;
    i += k;
  }
  return n;
}

void saga__text_clean(char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
      s[i] = '?';
  }
  for (size_t at = 0; at < n;) {
    size_t bad = saga__utf8_bad_at(s + at, n - at);
    if (bad >= n - at)
      break;
    s[at + bad] = '?';
    at += bad + 1;
  }
}

int saga__hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

size_t saga__json_nul_escape_at(const void *v, size_t n) {
  const char *s = v;
  int in_string = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"') {
      in_string = !in_string;
    } else if (in_string && s[i] == '\\' && i + 1 < n) {
      if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4))
        return i;
      i++; /* the escaped character: \" does not end the string */
    }
  }
  return n;
}

int saga__kafka_topic_ok(const char *t) {
  size_t n = t ? strlen(t) : 0;
  if (n == 0 || n > SAGA_KAFKA_MAX_TOPIC || !strcmp(t, ".") ||
      !strcmp(t, ".."))
    return 0;
  return strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789._-") == n;
}
