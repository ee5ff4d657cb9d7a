/* Helpers shared by the test programs: where the embedded services are,
 * how long to wait, and a scratch database per test program.
 * Test-only code: it may print and exit. */
#ifndef SAGA_TEST_SUPPORT_H
#define SAGA_TEST_SUPPORT_H

#include <stdint.h>
#include <sys/types.h>

/* Exit code ctest reads as "skipped" (SKIP_RETURN_CODE in SagaTest.cmake). */
#define TS_SKIP 77

/* The libpq conninfo of the embedded PostgreSQL (SAGA_PG_CONNINFO), or NULL
 * when unset. */
const char *ts_pg_conninfo(void);

/* The bootstrap list of the embedded Kafka (SAGA_KAFKA_BOOTSTRAP), or NULL. */
const char *ts_kafka_bootstrap(void);

/* Exit with TS_SKIP and a message when the named service is not configured. */
void ts_require_pg(void);
void ts_require_kafka(void);

/* SAGA_TEST_TIMEOUT_SCALE (default 1) times ms: every wait in a test goes
 * through this so sanitizer runs can be given more time. */
int64_t ts_timeout_ms(int64_t ms);

/* Monotonic clock in milliseconds. */
int64_t ts_now_ms(void);

/* Create a fresh database named after prefix, the pid and a counter; return
 * a malloc'd conninfo for it (free with ts_pg_drop_database). Exits on error. */
char *ts_pg_create_database(const char *prefix);

/* Drop the database made by ts_pg_create_database and free conninfo. */
void ts_pg_drop_database(char *conninfo);

/* The whole content of the file at path, NUL-terminated and malloc'd
 * (free it), or NULL when it cannot be read. */
char *ts_slurp(const char *path);

/* A unique name (topic, group) built from prefix, pid and a counter;
 * the result lives in a static ring of 8 buffers. */
const char *ts_unique_name(const char *prefix);

/* Start argv[0] (a path) with argv (NULL-terminated), its stdout and
 * stderr written to the file log_path (created or emptied); returns its
 * pid, or -1 when fork fails. The child exits 127 when the log cannot be
 * opened or the program not run. */
pid_t ts_spawn_logged(const char *log_path, const char *const argv[]);

/* Send one command line (without its newline) to the embedded Kafka's
 * control socket at socket_path and read its whole answer into out
 * (NUL-terminated, cut at outsz - 1). Returns 0, or -1 when the socket
 * cannot be reached (out ""), or -2 when the path does not fit a socket
 * address or the line could not be written. */
int ts_mock_exchange(const char *socket_path, const char *line, char *out,
                     size_t outsz);

#endif
