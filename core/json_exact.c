/* JSON read with cJSON, its numbers kept as written (json_exact.h).
 *
 * cJSON keeps values in document order (duplicate keys included), and a
 * number is the only value that starts with '-' or a digit outside a
 * string, so the n-th number of the tree, walked in order, is the n-th
 * number token of the text. */
#include "json_exact.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *p, *end;
} scan_t;

static bool digit(char c) { return c >= '0' && c <= '9'; }

/* A character cJSON takes into a number (it then reads them with strtod;
 * in a text it parsed whole, the run is exactly the number). */
static bool number_char(char c) {
  return digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* The next number token outside strings: its first byte and *len, or NULL
 * when there is none. */
static const char *next_number(scan_t *s, size_t *len) {
  const char *p = s->p;
  while (p < s->end) {
    if (*p == '"') {
      for (p++; p < s->end && *p != '"'; p++)
        if (*p == '\\' && p + 1 < s->end)
          p++;
      if (p < s->end)
        p++;
      continue;
    }
    if (*p == '-' || digit(*p)) {
      const char *q = p;
      while (q < s->end && number_char(*q))
        q++;
      *len = (size_t)(q - p);
      s->p = q;
      return p;
    }
    p++;
  }
  s->p = p;
  return NULL;
}

bool saga_json_number(const char *p, size_t n) {
  const char *e = p + n;
  if (p < e && *p == '-')
    p++;
  if (p == e || !digit(*p))
    return false;
  if (*p++ != '0')
    while (p < e && digit(*p))
      p++;
  if (p < e && *p == '.') {
    if (++p == e || !digit(*p))
      return false;
    while (p < e && digit(*p))
      p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    if (++p < e && (*p == '+' || *p == '-'))
      p++;
    if (p == e || !digit(*p))
      return false;
    while (p < e && digit(*p))
      p++;
  }
  return p == e;
}

/* Turn the numbers of v, in document order, into raw items holding
 * their text. -1 out of memory, or when the text and the tree disagree
 * (cannot happen for a text cJSON parsed whole). */
static int keep_numbers(cJSON *v, scan_t *s) {
  if (cJSON_IsNumber(v)) {
    size_t n = 0;
    const char *t = next_number(s, &n);
    if (t == NULL)
      return -1;
    if (!saga_json_number(t, n))
      return 0; /* "01", "1.": cJSON's reading of it is printed */
    char *text = cJSON_malloc(n + 1);
    if (text == NULL)
      return -1;
    memcpy(text, t, n);
    text[n] = '\0';
    v->type = cJSON_Raw | (v->type & cJSON_StringIsConst);
    v->valuestring = text;
    return 0;
  }
  for (cJSON *c = v->child; c != NULL; c = c->next)
    if (keep_numbers(c, s) != 0)
      return -1;
  return 0;
}

cJSON *saga_json_parse_exact(const char *p, size_t n) {
  if (p == NULL)
    return NULL;
  const char *end = NULL;
  cJSON *v = cJSON_ParseWithLengthOpts(p, n, &end, false);
  if (v == NULL)
    return NULL;
  const char *stop = p + n;
  while (end < stop &&
         (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
    end++;
  scan_t s = {p, stop};
  if (end != stop || keep_numbers(v, &s) != 0) {
    cJSON_Delete(v);
    return NULL;
  }
  return v;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

cJSON *saga_json_base64(const void *data, size_t n) {
  const uint8_t *p = data;
  char *s = malloc((n + 2) / 3 * 4 + 1);
  if (s == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n)
      v |= p[i + 2];
    s[o++] = b64[(v >> 18) & 63];
    s[o++] = b64[(v >> 12) & 63];
    s[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    s[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  s[o] = '\0';
  cJSON *obj = cJSON_CreateObject();
  if (obj != NULL && cJSON_AddStringToObject(obj, "$base64", s) == NULL) {
    cJSON_Delete(obj);
    obj = NULL;
  }
  free(s);
  return obj;
}

size_t saga_json_strict_bad_at(const char *p, size_t n) {
  for (size_t i = 0; i < n;) {
    if (p[i] == '"') {
      for (i++; i < n && p[i] != '"'; i++) {
        if ((unsigned char)p[i] < 0x20)
          return i; /* a raw control character: JSON escapes it */
        if (p[i] == '\\' && i + 1 < n)
          i++;
      }
      i++;
      continue;
    }
    if (p[i] == '-' || digit(p[i])) {
      size_t j = i;
      while (j < n && number_char(p[j]))
        j++;
      if (!saga_json_number(p + i, j - i))
        return i;
      i = j;
      continue;
    }
    /* between tokens JSON's white space is tab, newline, return and
     * space; cJSON skips every byte up to 0x20 */
    if ((unsigned char)p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' &&
        p[i] != '\r')
      return i;
    i++;
  }
  return n;
}
