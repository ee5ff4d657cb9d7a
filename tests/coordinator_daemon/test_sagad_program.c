/* The real sagad binary: --help and --version exit 0, a bad config exits 2
 * with file:line, --check-config masks secrets, and SIGTERM after start
 * gives a clean exit. Each run gets a minimal environment of its own. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

static char tmpdir[64];
static char defs_opt[128];

/* One valid definition: sagad and --check-config need at least one. */
#define GOOD_DEF                                                             \
  "{\"name\": \"ok\", \"version\": 1, \"steps\": [{\"name\": \"a\", "   \
  "\"topic\": \"t.a\", \"compensation\": {\"action\": \"undo\"}}]}\n"

static void write_file(const char *dir, const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

typedef struct {
  pid_t pid;
  int out; /* read ends */
  int err;
} child_t;

/* One NAME=value the next spawned sagad gets besides PATH, or NULL. */
static const char *spawn_env;

static child_t spawn(const char *const *args) {
  int o[2], e[2];
  assert_int_equal(pipe(o), 0);
  assert_int_equal(pipe(e), 0);
  child_t c = {fork(), o[0], e[0]};
  assert_true(c.pid >= 0);
  if (c.pid == 0) {
    dup2(o[1], 1);
    dup2(e[1], 2);
    close(o[0]);
    close(e[0]);
    /* The child owns copies: exec wants mutable strings. */
    char *const env[] = {strdup("PATH=/usr/bin:/bin"),
                         spawn_env ? strdup(spawn_env) : NULL, NULL};
    char *argv[16];
    argv[0] = strdup(SAGAD_PATH);
    size_t i = 0;
    for (; args[i] && i < 14; i++)
      argv[i + 1] = strdup(args[i]);
    argv[i + 1] = NULL;
    execve(SAGAD_PATH, argv, env);
    _exit(127);
  }
  close(o[1]);
  close(e[1]);
  return c;
}

/* Append what fd has (waiting at most ms) to buf; false at end of file. */
static bool read_some(int fd, char *buf, size_t cap, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0)
    return true;
  size_t len = strlen(buf);
  ssize_t n = read(fd, buf + len, cap - len - 1);
  if (n <= 0)
    return false;
  buf[len + (size_t)n] = '\0';
  return true;
}

/* Wait for the child's exit within the test timeout; return its status. */
static int wait_exit(child_t *c) {
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  int st = 0;
  for (;;) {
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    if (r == c->pid)
      break;
    if (ts_now_ms() > until) {
      kill(c->pid, SIGKILL);
      waitpid(c->pid, &st, 0);
      fail_msg("sagad did not exit in time");
    }
    nanosleep(&(struct timespec){0, 5000000}, NULL);
  }
  assert_true(WIFEXITED(st));
  return WEXITSTATUS(st);
}

/* Run sagad to completion, collecting stdout and stderr. */
static int run(const char *const *args, char *out, char *err, size_t cap) {
  child_t c = spawn(args);
  out[0] = err[0] = '\0';
  bool o = true, e = true;
  while (o || e) {
    if (o)
      o = read_some(c.out, out, cap, 10);
    if (e)
      e = read_some(c.err, err, cap, 10);
  }
  close(c.out);
  close(c.err);
  return wait_exit(&c);
}

static char out[65536], err[65536];

static void test_help_and_version_exit_zero(void **state) {
  (void)state;
  const char *help[] = {"--help", NULL};
  assert_int_equal(run(help, out, err, sizeof out), 0);
  assert_non_null(strstr(out, "usage: sagad"));
  assert_non_null(strstr(out, "--check-config"));
  assert_non_null(strstr(out, "store.conninfo"));
  const char *version[] = {"--version", NULL};
  assert_int_equal(run(version, out, err, sizeof out), 0);
  assert_memory_equal(out, "sagad ", 6);
  /* the allocator the build links (jemalloc, unless under the sanitizers
   * or SAGA_JEMALLOC=OFF) is the one the program runs on: jemalloc is
   * named only when malloc goes to it */
  assert_non_null(strstr(out, ", " SAGAD_ALLOCATOR));
  assert_null(strstr(out, "but malloc is not its"));
}

static void test_bad_config_file_exits_2_naming_file_and_line(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/sagad.conf", tmpdir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("# orders\nkafka.bootstrap.servers = b:1\nbatch.max_events = 0\n", f);
  fclose(f);
  const char *args[] = {"--config", path, defs_opt, NULL};
  assert_int_equal(run(args, out, err, sizeof out), 2);
  char want[256];
  snprintf(want, sizeof want,
           "sagad: %s:3: batch.max_events: must be between 1 and 100000, "
           "got 0\n",
           path);
  assert_string_equal(err, want);

  const char *missing[] = {defs_opt, NULL};
  assert_int_equal(run(missing, out, err, sizeof out), 2);
  assert_non_null(strstr(err, "kafka.bootstrap.servers: must be set"));
}

static void test_check_config_prints_effective_config_masked(void **state) {
  (void)state;
  const char *args[] = {"--check-config", defs_opt,
                        "--kafka.bootstrap.servers=b:1",
                        "--store.conninfo=host=db password=hunter2",
                        "--kafka.sasl.password=hunter3", NULL};
  assert_int_equal(run(args, out, err, sizeof out), 0);
  assert_null(strstr(out, "hunter"));
  assert_non_null(strstr(out, "store.conninfo = password=******** host=db\n"));
  assert_non_null(strstr(out, "kafka.sasl.password = ********\n"));
  assert_non_null(strstr(out, "kafka.bootstrap.servers = b:1\n"));
}

/* With the coordinator wired in, sagad needs its store at start: an
 * unreachable store (or no definition) is a clear error and exit 1. (A
 * clean SIGTERM stop with the services up is in tests/coordinator_e2e.) */
static void test_unreachable_store_at_start_exits_one(void **state) {
  (void)state;
  const char *args[] = {defs_opt, "--kafka.bootstrap.servers=b:1",
                        "--store.conninfo=host=127.0.0.1 port=1 "
                        "connect_timeout=2",
                        "--log.format=json", NULL};
  child_t c = spawn(args);
  err[0] = '\0';
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  while (read_some(c.err, err, sizeof err, 50) && ts_now_ms() < until)
    ;
  assert_int_equal(wait_exit(&c), 1);
  assert_non_null(strstr(err, "error"));
  close(c.out);
  close(c.err);
}

/* Addresses: admin.listen names are not resolved, ports are numbers;
 * the span exporter's endpoint and OTEL_* variables are checked too; and
 * kafka.* settings librdkafka refuses only when it makes a client (they
 * passed --check-config, and a start failed on them with exit 1 after it
 * had opened the store). */
static const struct {
  const char *opt, *env, *want[2];
} bad_addr[] = {
    {"--otlp.endpoint=otel-collector:0",
     NULL,
     {"otlp.endpoint: ", "port 1..65535"}},
    {"--otlp.endpoint=otel-collector:4318",
     "OTEL_EXPORTER_OTLP_HEADERS=authorization",
     {"OTEL_EXPORTER_OTLP_HEADERS: ", "expected key=value"}},
    {"--admin.listen=localhost:38311",
     NULL,
     {"admin.listen: ", "is not an IPv4 or IPv6 address"}},
    {"--admin.listen=127.0.0.1:http",
     NULL,
     {"admin.listen: expected host:port", "127.0.0.1:http"}},
    {"--otlp.endpoint=http://otel-collector:4318/v1/traces",
     NULL,
     {"otlp.endpoint: ", "ends in /v1/traces, which is appended"}},
    /* a libpq variable, read for what store.conninfo leaves out */
    {"--log.format=text",
     "PGSSLMODE=bogus",
     {"environment PGSSLMODE: ", "invalid sslmode value: \"bogus\""}},
    {"--kafka.acks=1",
     NULL,
     {"kafka.*: could not create kafka producer: ", "`acks` must be set"}},
    {"--kafka.sasl.mechanisms=PLAIN",
     "SAGAD_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
     {"kafka.*: could not create kafka ", "sasl.username"}},
};

/* --check-config loads and checks what a start would, with the same
 * messages: a definitions folder with one refused file, a bad OTLP endpoint
 * or OTEL_* variable, an admin address that is a name, each exits 2 and
 * says why. */
static void test_check_config_refuses_what_a_start_would(void **state) {
  (void)state;
  static const struct {
    const char *file, *text, *want;
  } bad_defs[] = {
      {"syntax.json", "{\"name\": \"broken\", \"version\": 1,", "syntax.json"},
      {"kind.json",
       "{\"name\": \"k\", \"version\": 1, \"steps\": [{\"name\": \"a\", "
       "\"topic\": \"t\", \"kind\": \"sometimes\"}]}",
       "sometimes"},
      {"dup.json",
       "{\"name\": \"d\", \"version\": 1, \"steps\": [{\"name\": \"a\", "
       "\"topic\": \"t\", \"compensation\": {\"action\": \"u\"}}, "
       "{\"name\": \"a\", \"topic\": \"t\", \"compensation\": {\"action\": "
       "\"u\"}}]}",
       "dup.json"},
  };
  for (size_t i = 0; i < sizeof bad_defs / sizeof bad_defs[0]; i++) {
    char dir[128], opt[160];
    snprintf(dir, sizeof dir, "%s/bad%zu", tmpdir, i);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "good.json", GOOD_DEF);
    write_file(dir, bad_defs[i].file, bad_defs[i].text);
    snprintf(opt, sizeof opt, "--definitions.dir=%s", dir);
    const char *args[] = {"--check-config", opt,
                          "--kafka.bootstrap.servers=b:1", NULL};
    int rc = run(args, out, err, sizeof out);
    if (rc != 2 || !strstr(err, bad_defs[i].want))
      fail_msg("%s: exit %d\nstderr: %s", bad_defs[i].file, rc, err);
    assert_string_equal(out, "");
    char path[256];
    snprintf(path, sizeof path, "%s/good.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s", dir, bad_defs[i].file);
    unlink(path);
    rmdir(dir);
  }
  /* Addresses (bad_addr) are checked too. */
  for (size_t i = 0; i < sizeof bad_addr / sizeof bad_addr[0]; i++) {
    const char *args[] = {"--check-config", defs_opt,
                          "--kafka.bootstrap.servers=b:1", bad_addr[i].opt,
                          NULL};
    spawn_env = bad_addr[i].env;
    int rc = run(args, out, err, sizeof out);
    spawn_env = NULL;
    if (rc != 2 || !strstr(err, bad_addr[i].want[0]) ||
        !strstr(err, bad_addr[i].want[1]))
      fail_msg("%s: exit %d\nstderr: %s", bad_addr[i].opt, rc, err);
  }
  /* A collector by name or URL is accepted. */
  const char *good_ep[] = {"--otlp.endpoint=otel-collector:4318",
                           "--otlp.endpoint=https://otel-collector:4318"};
  for (size_t i = 0; i < 2; i++) {
    const char *args[] = {"--check-config", defs_opt,
                          "--kafka.bootstrap.servers=b:1", good_ep[i], NULL};
    int rc = run(args, out, err, sizeof out);
    if (rc != 0)
      fail_msg("%s: exit %d\nstderr: %s", good_ep[i], rc, err);
  }
}

/* Asked to wait for its dependencies, sagad retries the store, saying so
 * each time, and still exits 1 once the wait is over. */
/* A start refuses the same addresses and OTEL_* variables as
 * --check-config, with the same messages and exit 2, before it connects
 * to anything: the store here is unreachable, which a start that checked
 * them only after connecting reported instead, with exit 1. */
static void test_a_start_refuses_bad_addresses_before_it_connects(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_addr / sizeof bad_addr[0]; i++) {
    const char *args[] = {defs_opt, "--kafka.bootstrap.servers=b:1",
                          "--store.conninfo=host=127.0.0.1 port=1 "
                          "connect_timeout=2",
                          bad_addr[i].opt, NULL};
    spawn_env = bad_addr[i].env;
    int rc = run(args, out, err, sizeof out);
    spawn_env = NULL;
    if (rc != 2 || !strstr(err, bad_addr[i].want[0]) ||
        !strstr(err, bad_addr[i].want[1]) || strstr(err, "port=1") ||
        strstr(err, "127.0.0.1:1"))
      fail_msg("%s: exit %d\nstderr: %s", bad_addr[i].opt, rc, err);
  }
}

/* A required property set to nothing is named where it was set: an empty
 * variable overrides a file's line, and the message sent one to give it
 * "--x, SAGAD_X or a config file line" while the file had it. */
static void test_an_empty_required_property_names_where_it_was_set(
    void **state) {
  (void)state;
  write_file(tmpdir, "a.conf", "kafka.bootstrap.servers = h:1\n");
  char conf[160];
  snprintf(conf, sizeof conf, "--config=%s/a.conf", tmpdir);
  const char *args[] = {"--check-config", conf, defs_opt, NULL};
  spawn_env = "SAGAD_KAFKA_BOOTSTRAP_SERVERS=";
  int rc = run(args, out, err, sizeof out);
  spawn_env = NULL;
  if (rc != 2 || !strstr(err, "environment SAGAD_KAFKA_BOOTSTRAP_SERVERS: "
                              "kafka.bootstrap.servers is empty"))
    fail_msg("exit %d\nstderr: %s", rc, err);
  char path[256];
  snprintf(path, sizeof path, "%s/a.conf", tmpdir);
  unlink(path);
}

/* A definitions folder where no definition loads is a bad configuration
 * at a start as under --check-config: exit 2, before anything is
 * connected (a start loaded them after its daemon had started, and exited
 * 1). */
static void test_a_start_without_definitions_exits_2(void **state) {
  (void)state;
  char dir[128], opt[160];
  snprintf(dir, sizeof dir, "%s/nodefs", tmpdir);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(opt, sizeof opt, "--definitions.dir=%s", dir);
  const char *args[] = {opt, "--kafka.bootstrap.servers=b:1",
                        "--store.conninfo=host=127.0.0.1 port=1 "
                        "connect_timeout=2",
                        NULL};
  int rc = run(args, out, err, sizeof out);
  if (rc != 2 || !strstr(err, "no saga definition loaded from") ||
      strstr(err, "port=1"))
    fail_msg("exit %d\nstderr: %s", rc, err);
  rmdir(dir);
}

static void test_unreachable_store_is_waited_for_when_asked(void **state) {
  (void)state;
  const char *args[] = {defs_opt, "--kafka.bootstrap.servers=b:1",
                        "--store.conninfo=host=127.0.0.1 port=1 "
                        "connect_timeout=2",
                        "--start.wait_for_dependencies_ms=2500ms",
                        "--log.format=text", NULL};
  assert_int_equal(run(args, out, err, sizeof out), 1);
  const char *w = strstr(err, "waiting for PostgreSQL");
  assert_non_null(w);
  assert_non_null(strstr(w, "ms left of start.wait_for_dependencies_ms"));
}

/* SIGHUP neither reloads nor stops sagad (its default action killed
 * sagad without a graceful stop: an operator's "reload", or the terminal
 * that started it closing), even while a start waits for its
 * dependencies. The warning a running sagad logs is in
 * tests/coordinator_e2e/test_coordinator_sagas.c. */
static void test_sighup_during_a_start_does_not_kill_sagad(void **state) {
  (void)state;
  const char *args[] = {defs_opt, "--kafka.bootstrap.servers=b:1",
                        "--store.conninfo=host=127.0.0.1 port=1 "
                        "connect_timeout=2",
                        "--start.wait_for_dependencies_ms=1500ms",
                        "--log.format=text", NULL};
  child_t c = spawn(args);
  err[0] = '\0';
  int64_t until = ts_now_ms() + ts_timeout_ms(10000);
  while (!strstr(err, "waiting for PostgreSQL") && ts_now_ms() < until)
    read_some(c.err, err, sizeof err, 50);
  assert_non_null(strstr(err, "waiting for PostgreSQL"));
  assert_int_equal(kill(c.pid, SIGHUP), 0);
  while (read_some(c.err, err, sizeof err, 50) && ts_now_ms() < until)
    ;
  /* exits as it would have (the store never answered), not by SIGHUP */
  assert_int_equal(wait_exit(&c), 1);
  assert_non_null(strstr(err, "ms left of start.wait_for_dependencies_ms"));
  close(c.out);
  close(c.err);
}

static void test_config_reference_is_markdown(void **state) {
  (void)state;
  const char *args[] = {"--config-reference", NULL};
  assert_int_equal(run(args, out, err, sizeof out), 0);
  assert_memory_equal(out, "# sagad configuration reference\n", 32);
  assert_non_null(strstr(out, "| `topic.inbox` | string | `saga.inbox` |"));
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sagad-program-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  snprintf(defs_opt, sizeof defs_opt, "--definitions.dir=%s", tmpdir);
  write_file(tmpdir, "ok.json", GOOD_DEF);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/sagad.conf", tmpdir);
  unlink(path);
  snprintf(path, sizeof path, "%s/ok.json", tmpdir);
  unlink(path);
  rmdir(tmpdir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help_and_version_exit_zero),
      cmocka_unit_test(test_bad_config_file_exits_2_naming_file_and_line),
      cmocka_unit_test(test_check_config_prints_effective_config_masked),
      cmocka_unit_test(test_unreachable_store_at_start_exits_one),
      cmocka_unit_test(test_check_config_refuses_what_a_start_would),
      cmocka_unit_test(test_a_start_refuses_bad_addresses_before_it_connects),
      cmocka_unit_test(test_a_start_without_definitions_exits_2),
      cmocka_unit_test(test_an_empty_required_property_names_where_it_was_set),
      cmocka_unit_test(test_sighup_during_a_start_does_not_kill_sagad),
      cmocka_unit_test(test_unreachable_store_is_waited_for_when_asked),
      cmocka_unit_test(test_config_reference_is_markdown),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
