/* The one reader of `name = value` config files (target saga_common), used
 * by sagad's config and sagactl's settings, so both take the same syntax:
 *
 *   - one `name = value` per line; blanks around name and value are
 *     dropped; the name holds no blanks;
 *   - empty lines and lines whose first non-blank is '#' are skipped; there
 *     are no inline comments, so '#' may appear in a value;
 *   - a value in double quotes keeps leading and trailing blanks or may be
 *     empty; inside, \" and \\ stand for " and \;
 *   - a line holds at most SAGA_CONF_MAX_LINE bytes.
 *
 * What a name means is the caller's: the reader hands each line to a
 * callback. Reads the file; no other I/O, no logging. Any thread. */
#ifndef SAGA_COMMON_CONFFILE_H
#define SAGA_COMMON_CONFFILE_H

#include <stddef.h>

#define SAGA_CONF_MAX_LINE 65536

/* What saga__conf_read returns. */
typedef enum {
  SAGA_CONF_OK = 0,
  SAGA_CONF_EFILE = 1,   /* could not open or read the file */
  SAGA_CONF_ESYNTAX = 2, /* a line that is not `name = value` */
  SAGA_CONF_ESTOP = 3,   /* the callback refused a line */
} saga_conf_rc_t;

/* Called for each `name = value` line in file order. where is "path:line"
 * for messages. Return 0 to go on; anything else stops the reading (the
 * callback writes its message to err, of errlen bytes, itself). */
typedef int (*saga_conf_line_fn)(void *arg, const char *name,
                                 const char *value, const char *where,
                                 char *err, size_t errlen);

/* Read path line by line, calling fn(arg, ...) for each setting. Returns
 * SAGA_CONF_OK, or SAGA_CONF_EFILE ("could not open config file \"path\":
 * <reason>"), SAGA_CONF_ESYNTAX ("path:line: expected \"name = value\",
 * got ...", "... expected a name before '='", "... <name>: unterminated or
 * trailing text after quoted value", "... line longer than N bytes") with
 * that message in err (may be NULL), or SAGA_CONF_ESTOP when fn returned
 * non-zero. */
saga_conf_rc_t saga__conf_read(const char *path, saga_conf_line_fn fn,
                               void *arg, char *err, size_t errlen);

#endif
