/* Test helper: run the real sagactl program (run_sagactl.h). */
#include "run_sagactl.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

/* The whole file as a malloc'd string, then the file is removed. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (len + n + 1 > cap) {
      cap = (len + n + 1) * 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    memcpy(buf + len, chunk, n);
    len += n;
  }
  fclose(f);
  remove(path);
  if (buf == NULL)
    buf = calloc(1, 1);
  else
    buf[len] = '\0';
  assert_non_null(buf);
  return buf;
}

sagactl_result_t sagactl_vrun(const sagactl_how_t *how, const char *first,
                              va_list ap) {
  const char *argv[40] = {how->bin, first};
  size_t n = 2;
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 39)
    argv[n++] = a;
  argv[n] = NULL;
  char out_path[512], err_path[512];
  snprintf(out_path, sizeof out_path, "%s/sagactl.out", how->dir);
  snprintf(err_path, sizeof err_path, "%s/sagactl.err", how->dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (o < 0 || e < 0)
      _exit(127);
    dup2(o, 1);
    dup2(e, 2);
    if (how->stdin_path != NULL) {
      int in = open(how->stdin_path, O_RDWR | O_NOCTTY);
      if (in < 0)
        _exit(127);
      dup2(in, 0);
    }
    setenv("SAGA_PG_CONNINFO", how->conninfo, 1);
    setenv("HOME", how->dir, 1);
    unsetenv("SAGA_DEFINITIONS");
    if (how->unset_kafka)
      unsetenv("SAGA_KAFKA_BOOTSTRAP");
    execv(how->bin, (char *const *)(uintptr_t)argv);
    _exit(127);
  }
  int status = 0;
  if (!how->pump) {
    assert_int_equal(waitpid(pid, &status, 0), pid);
  } else {
    int64_t until = ts_now_ms() + ts_timeout_ms(60000);
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && ts_now_ms() < until)
      how->pump(how->pump_arg);
    if (w == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail_msg("sagactl %s did not finish in time", first);
    }
  }
  sagactl_result_t r = {.rc = WIFEXITED(status) ? WEXITSTATUS(status)
                                                : 128 + WTERMSIG(status),
                        .out = slurp(out_path),
                        .err = slurp(err_path)};
  return r;
}

void sagactl_result_free(sagactl_result_t *r) {
  if (!r)
    return;
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

void sagactl_rerun(const sagactl_how_t *how, sagactl_result_t *r,
                   const char *first, ...) {
  sagactl_result_free(r);
  va_list ap;
  va_start(ap, first);
  *r = sagactl_vrun(how, first, ap);
  va_end(ap);
}

void sagactl_expect(const sagactl_result_t *r, int rc, const char *in_out,
                    const char *in_err) {
  if (r->rc == rc && (in_out == NULL || strstr(r->out, in_out) != NULL) &&
      (in_err == NULL || strstr(r->err, in_err) != NULL))
    return;
  fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout \"%s\", "
           "stderr \"%s\"",
           r->rc, rc, r->out, r->err, in_out ? in_out : "",
           in_err ? in_err : "");
}
