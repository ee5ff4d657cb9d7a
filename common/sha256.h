/* SHA-256 (FIPS 180-4) of a byte range, for content hashes such as a saga
 * definition's (the store records it with the definition's body). Pure:
 * no allocation, no I/O; any thread. Internal: not a public header. */
#ifndef SAGA_COMMON_SHA256_H
#define SAGA_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SAGA_SHA256_SIZE 32
#define SAGA_SHA256_HEX_SIZE 65 /* 64 lower-case hex digits and the NUL */

/* The SHA-256 digest of p[0..n) into out. p may be NULL when n is 0. */
void saga__sha256(const void *p, size_t n, uint8_t out[SAGA_SHA256_SIZE]);

/* The same as 64 lower-case hex digits and a NUL into hex. Returns hex. */
char *saga__sha256_hex(const void *p, size_t n, char hex[SAGA_SHA256_HEX_SIZE]);

#endif
