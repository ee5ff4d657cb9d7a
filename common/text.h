/* Text helpers shared across the tree (target saga_common): pure functions
 * on byte ranges, no allocation, no I/O. Internal: not a public header. */
#ifndef SAGA_COMMON_TEXT_H
#define SAGA_COMMON_TEXT_H

#include <stddef.h>

/* Byte offset of the first byte that breaks UTF-8 in v[0..n): a bad lead
 * or continuation byte, a truncated sequence, an overlong form, a
 * surrogate or a code point past U+10FFFF. n when all of it is valid.
 * NUL bytes are valid UTF-8; callers that refuse them check separately.
 * Any thread. */
size_t saga__utf8_bad_at(const void *v, size_t n);

/* Length (1 to 4) of the valid UTF-8 sequence that starts v[0..n), or 0
 * when there is none: n is 0, or a bad lead or continuation byte, a
 * sequence cut short by n, an overlong form, a surrogate or a code point
 * past U+10FFFF. A NUL byte is a sequence of length 1. For a NUL-terminated
 * string, n = strnlen(s, 4) is enough (a NUL is never a continuation). */
size_t saga__utf8_seq_len(const void *v, size_t n);

/* Make the NUL-terminated s valid text in place, its length kept: each
 * byte that breaks UTF-8 (saga__utf8_bad_at) and each control character
 * but tab and newline becomes '?'. For free text a peer sent (a reply's
 * reason), kept in proto3 strings that other languages' decoders refuse
 * unless they are UTF-8. Any thread. */
void saga__text_clean(char *s);

/* The value of hex digit c (0-9, a-f, A-F), or -1. */
int saga__hexval(char c);

/* Byte offset of the first \u0000 escape inside a JSON string of
 * v[0..n), or n when there is none. cJSON, which parses every JSON value
 * here, ends a string at a NUL and drops the rest of it, so a value with
 * one cannot be read back as it was written. Follows strings by their
 * quotes and backslash escapes; v need not be valid JSON. Any thread. */
size_t saga__json_nul_escape_at(const void *v, size_t n);

/* The longest Kafka topic name. */
#define SAGA_KAFKA_MAX_TOPIC 249

/* Whether t can name a Kafka topic: 1 to SAGA_KAFKA_MAX_TOPIC of A-Z a-z
 * 0-9 . _ -, and not "." or "..". librdkafka takes anything else as a
 * regular expression (a leading ^) or refuses it later, out of the
 * caller's sight. 0 for NULL. Any thread. */
int saga__kafka_topic_ok(const char *t);

#endif
