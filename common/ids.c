/* Random identifiers and W3C trace context (see ids.h). */
#include "ids.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "text.h"

static const char HEX[] = "0123456789abcdef";

int saga__random(void *buf, size_t n) {
  unsigned char *p = buf;
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(p + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    got += (size_t)r;
  }
  return 0;
}

int saga__uuid_v4(uint8_t out[16]) {
  if (saga__random(out, 16) != 0)
    return -1;
  out[6] = (uint8_t)((out[6] & 0x0F) | 0x40); /* version 4 */
  out[8] = (uint8_t)((out[8] & 0x3F) | 0x80); /* variant 10xx */
  return 0;
}

int saga__uuid_v7(uint8_t out[16]) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || saga__random(out + 6, 10) != 0)
    return -1;
  uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  for (int i = 5; i >= 0; i--, ms >>= 8) /* 48 bits, big-endian */
    out[i] = (uint8_t)(ms & 0xFF);
  out[6] = (uint8_t)((out[6] & 0x0F) | 0x70); /* version 7 */
  out[8] = (uint8_t)((out[8] & 0x3F) | 0x80); /* variant 10xx */
  return 0;
}

void saga__uuid_format(const uint8_t id[16], char out[SAGA_UUID_SIZE]) {
  size_t o = 0;
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    out[o++] = HEX[id[i] >> 4];
    out[o++] = HEX[id[i] & 15];
  }
  out[o] = '\0';
}

int saga__uuid_text(char out[SAGA_UUID_SIZE]) {
  uint8_t id[16];
  if (saga__uuid_v7(id) != 0) {
    out[0] = '\0';
    return -1;
  }
  saga__uuid_format(id, out);
  return 0;
}

/* nbytes random bytes, not all zero, as 2*nbytes hex digits and a NUL. */
static int random_id(char *out, size_t nbytes) {
  uint8_t b[16];
  int nonzero = 0;
  do {
    if (saga__random(b, nbytes) != 0) {
      out[0] = '\0';
      return -1;
    }
    for (size_t i = 0; i < nbytes; i++)
      nonzero |= b[i];
  } while (!nonzero);
  for (size_t i = 0; i < nbytes; i++) {
    out[2 * i] = HEX[b[i] >> 4];
    out[2 * i + 1] = HEX[b[i] & 15];
  }
  out[2 * nbytes] = '\0';
  return 0;
}

int saga__trace_id_new(char out[SAGA_TRACE_ID_SIZE]) {
  return random_id(out, (SAGA_TRACE_ID_SIZE - 1) / 2);
}

int saga__span_id_new(char out[SAGA_SPAN_ID_SIZE]) {
  return random_id(out, (SAGA_SPAN_ID_SIZE - 1) / 2);
}

static int lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return 0;
  return 1;
}

int saga__traceparent_valid(const char *tp) {
  if (!tp)
    return 0;
  for (size_t i = 0; i < SAGA_TRACEPARENT_LEN; i++)
    if (!tp[i])
      return 0;
  return tp[SAGA_TRACEPARENT_LEN] == '\0' && tp[2] == '-' && tp[35] == '-' &&
         tp[52] == '-' && lower_hex(tp, 2) && lower_hex(tp + 3, 32) &&
         lower_hex(tp + 36, 16) && lower_hex(tp + 53, 2);
}

/* n hex digits of s into out, lower-cased, with a NUL; -1 when one is not
 * hex, or when all are zero and nonzero is asked for. */
static int hex_field(const char *s, size_t n, char *out, int nonzero) {
  int any = 0;
  for (size_t i = 0; i < n; i++) {
    int v = saga__hexval(s[i]);
    if (v < 0)
      return -1;
    any |= v;
    out[i] = HEX[v];
  }
  out[n] = '\0';
  return nonzero && !any ? -1 : 0;
}

int saga__traceparent_parse(const char *tp, char trace_id[SAGA_TRACE_ID_SIZE],
                            char span_id[SAGA_SPAN_ID_SIZE], char flags[3]) {
  if (!tp)
    return -1;
  for (size_t i = 0; i < SAGA_TRACEPARENT_LEN; i++)
    if (!tp[i])
      return -1;
  char v[3], t[SAGA_TRACE_ID_SIZE], s[SAGA_SPAN_ID_SIZE], f[3];
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-' ||
      (tp[SAGA_TRACEPARENT_LEN] != '\0' && tp[SAGA_TRACEPARENT_LEN] != '-') ||
      hex_field(tp, 2, v, 0) != 0 || !strcmp(v, "ff") ||
      hex_field(tp + 3, 32, t, 1) != 0 || hex_field(tp + 36, 16, s, 1) != 0 ||
      hex_field(tp + 53, 2, f, 0) != 0)
    return -1;
  if (trace_id)
    memcpy(trace_id, t, sizeof t);
  if (span_id)
    memcpy(span_id, s, sizeof s);
  if (flags)
    memcpy(flags, f, sizeof f);
  return 0;
}

void saga__traceparent_format(char out[SAGA_TRACEPARENT_SIZE],
                              const char *trace_id, const char *span_id,
                              const char *flags) {
  /* "00-%.32s-%.16s-%.2s" by hand: every command carries one */
  const char *f = flags ? flags : "01";
  size_t nt = strnlen(trace_id, 32), ns = strnlen(span_id, 16),
         nf = strnlen(f, 2);
  char *o = out;
  memcpy(o, "00-", 3);
  o += 3;
  memcpy(o, trace_id, nt);
  o += nt;
  *o++ = '-';
  memcpy(o, span_id, ns);
  o += ns;
  *o++ = '-';
  memcpy(o, f, nf);
  o[nf] = '\0';
}

int saga__traceparent_new(char out[SAGA_TRACEPARENT_SIZE]) {
  char t[SAGA_TRACE_ID_SIZE], s[SAGA_SPAN_ID_SIZE];
  if (saga__trace_id_new(t) != 0 || saga__span_id_new(s) != 0) {
    out[0] = '\0';
    return -1;
  }
  saga__traceparent_format(out, t, s, NULL);
  return 0;
}

int saga__traceparent_child(char out[SAGA_TRACEPARENT_SIZE],
                            const char *parent) {
  char t[SAGA_TRACE_ID_SIZE], s[SAGA_SPAN_ID_SIZE], f[3];
  if (saga__traceparent_parse(parent, t, NULL, f) != 0)
    return saga__traceparent_new(out);
  if (saga__span_id_new(s) != 0) {
    out[0] = '\0';
    return -1;
  }
  saga__traceparent_format(out, t, s, f);
  return 0;
}
