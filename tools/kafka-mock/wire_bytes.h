/* Big-endian integers of the Kafka wire protocol, as the relay reads and
 * writes them in frames it passes on (long_poll.c, static_members.c). */
#ifndef SAGA_KAFKA_MOCK_WIRE_BYTES_H
#define SAGA_KAFKA_MOCK_WIRE_BYTES_H

#include <stdint.h>

static inline int16_t wire_rd16(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (int16_t)(uint16_t)((u[0] << 8) | u[1]);
}

static inline int32_t wire_rd32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (int32_t)(((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) |
                   ((uint32_t)u[2] << 8) | u[3]);
}

static inline void wire_wr16(char *p, int16_t v) {
  uint16_t u = (uint16_t)v;
  p[0] = (char)(u >> 8);
  p[1] = (char)u;
}

static inline void wire_wr32(char *p, int32_t v) {
  uint32_t u = (uint32_t)v;
  p[0] = (char)(u >> 24);
  p[1] = (char)(u >> 16);
  p[2] = (char)(u >> 8);
  p[3] = (char)u;
}

#endif
