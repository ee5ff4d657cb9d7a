/* JSON read with cJSON, its numbers kept as written. cJSON reads every
 * number into a double and prints it back from there, which changes an
 * integer past 2^53 (9007199254740993 comes back 9007199254740992 or
 * 9.00719925474099e+15), drops digits and turns 1e400 into null. Data
 * that is only passed on or shown -- a saga's input and its steps'
 * outputs, in commands and on screens -- must come back as it was sent. */
#ifndef SAGA_JSON_EXACT_H
#define SAGA_JSON_EXACT_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

/* The JSON value that is the whole of p[0..n) (white space around it
 * allowed), parsed by cJSON, with every number that JSON allows turned
 * into a cJSON_Raw item holding its own text: printing the tree gives the
 * number back byte for byte, and cJSON_IsNumber is false for it. A number
 * cJSON reads but JSON does not ("01", "1.") stays cJSON's number. NULL
 * when the text is not one JSON value (or has text after it) or out of
 * memory. The caller frees it with cJSON_Delete. */
cJSON *saga_json_parse_exact(const char *p, size_t n);

/* Where p[0..n), a text cJSON parses, breaks JSON where cJSON is lenient:
 * the offset of a raw control character (inside a string, or between
 * tokens other than tab, newline and return) or of a number JSON does
 * not allow ("01", "1.", "+1"); n when it breaks nothing there (UTF-8 is
 * not checked here). */
size_t saga_json_strict_bad_at(const char *p, size_t n);

/* {"$base64": "<data[0..n) in base64>"}: bytes that are not JSON (or
 * not text) carried or shown as JSON. NULL when out of memory. */
cJSON *saga_json_base64(const void *data, size_t n);

/* Whether p[0..n) is exactly one JSON number (RFC 8259:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?). */
bool saga_json_number(const char *p, size_t n);

#endif
