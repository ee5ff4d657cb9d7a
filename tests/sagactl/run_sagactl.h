/* Test helper: run the real sagactl program in a child process and capture
 * its exit code, stdout and stderr (the program tests and the operator's
 * end-to-end test). Test-only code: it fails the calling cmocka test. */
#ifndef SAGA_TEST_RUN_SAGACTL_H
#define SAGA_TEST_RUN_SAGACTL_H

#include <stdarg.h>

typedef struct {
  int rc;          /* exit code, or 128 + the signal that ended it */
  char *out, *err; /* all it wrote, malloc'd and NUL-terminated */
} sagactl_result_t;

/* How to run it. */
typedef struct {
  const char *bin;      /* the sagactl program */
  const char *dir;      /* its HOME, and where its output files go */
  const char *conninfo; /* its SAGA_PG_CONNINFO */
  int unset_kafka;      /* run it without SAGA_KAFKA_BOOTSTRAP */
  /* NULL: wait for it; otherwise called while it runs, and the test fails
   * when it has not finished within ts_timeout_ms(60000). */
  void (*pump)(void *arg);
  void *pump_arg;
  /* NULL: its stdin is the test's; else the file (a terminal's path, or
   * /dev/null) opened as its stdin. */
  const char *stdin_path;
} sagactl_how_t;

/* Run bin with first and the arguments of ap (ended by NULL, 38 at most),
 * SAGA_DEFINITIONS unset; stdout and stderr go to dir/sagactl.out and
 * dir/sagactl.err, read back and removed. Free with sagactl_result_free. */
sagactl_result_t sagactl_vrun(const sagactl_how_t *how, const char *first,
                              va_list ap);
/* Free out and err (and set them to NULL); NULL-safe. */
void sagactl_result_free(sagactl_result_t *r);

/* Free *r, then run as sagactl_vrun with first and the arguments after it
 * (ended by NULL) into *r. */
void sagactl_rerun(const sagactl_how_t *how, sagactl_result_t *r,
                   const char *first, ...);

/* Fail the test, showing the whole run, unless it exited rc and its
 * stdout holds in_out and its stderr in_err (each NULL = anything). */
void sagactl_expect(const sagactl_result_t *r, int rc, const char *in_out,
                    const char *in_err);

#endif
