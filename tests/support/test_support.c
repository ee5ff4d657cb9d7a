/* Shared helpers for the test programs (see test_support.h). */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <libpq-fe.h>

static int name_counter;

const char *ts_pg_conninfo(void) {
  const char *v = getenv("SAGA_PG_CONNINFO");
  return (v && *v) ? v : NULL;
}

const char *ts_kafka_bootstrap(void) {
  const char *v = getenv("SAGA_KAFKA_BOOTSTRAP");
  return (v && *v) ? v : NULL;
}

void ts_require_pg(void) {
  if (!ts_pg_conninfo()) {
    fprintf(stderr, "skipped: SAGA_PG_CONNINFO is not set "
                    "(run through scripts/test.sh)\n");
    exit(TS_SKIP);
  }
}

void ts_require_kafka(void) {
  if (!ts_kafka_bootstrap()) {
    fprintf(stderr, "skipped: SAGA_KAFKA_BOOTSTRAP is not set "
                    "(run through scripts/test.sh)\n");
    exit(TS_SKIP);
  }
}

int64_t ts_timeout_ms(int64_t ms) {
  const char *v = getenv("SAGA_TEST_TIMEOUT_SCALE");
  long scale = v ? strtol(v, NULL, 10) : 1;
  if (scale < 1)
    scale = 1;
  return ms * scale;
}

int64_t ts_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *ts_unique_name(const char *prefix) {
  static char ring[8][128];
  static int slot;
  char *buf = ring[slot++ % 8];
  snprintf(buf, sizeof(ring[0]), "%s_%ld_%d_%ld", prefix, (long)getpid(),
           name_counter++, (long)time(NULL) % 100000);
  return buf;
}

static PGconn *admin_connect(void) {
  ts_require_pg();
  PGconn *c = PQconnectdb(ts_pg_conninfo());
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "could not connect to %s: %s", ts_pg_conninfo(),
            PQerrorMessage(c));
    exit(1);
  }
  return c;
}

static void admin_exec(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    exit(1);
  }
  PQclear(r);
}

char *ts_pg_create_database(const char *prefix) {
  PGconn *c = admin_connect();
  const char *name = ts_unique_name(prefix);
  char sql[256];
  snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", name);
  admin_exec(c, sql);
  PQfinish(c);
  size_t n = strlen(ts_pg_conninfo()) + strlen(name) + 16;
  char *ci = malloc(n);
  if (!ci)
    abort();
  /* A later dbname= overrides an earlier one in a libpq conninfo string. */
  snprintf(ci, n, "%s dbname=%s", ts_pg_conninfo(), name);
  return ci;
}

void ts_pg_drop_database(char *conninfo) {
  if (!conninfo)
    return;
  /* The base conninfo has its own dbname=: ours is the last one. */
  const char *p = NULL;
  for (const char *q = conninfo; (q = strstr(q, " dbname=")) != NULL; q++)
    p = q;
  if (p) {
    PGconn *c = admin_connect();
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)",
             p + 8);
    admin_exec(c, sql);
    PQfinish(c);
  }
  free(conninfo);
}

char *ts_slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);
  while (buf) {
    if (len + 1 == cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    if (n == 0)
      break;
    len += n;
  }
  fclose(f);
  if (buf)
    buf[len] = '\0';
  return buf;
}

pid_t ts_spawn_logged(const char *log_path, const char *const argv[]) {
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    _exit(127);
  dup2(fd, 1);
  dup2(fd, 2);
  close(fd);
  /* exec wants mutable strings: the child owns copies */
  char *copy[64];
  size_t i = 0;
  for (; argv[i] && i < 63; i++)
    copy[i] = strdup(argv[i]);
  copy[i] = NULL;
  execv(copy[0], copy);
  _exit(127);
}

int ts_mock_exchange(const char *socket_path, const char *line, char *out,
                     size_t outsz) {
  out[0] = '\0';
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(socket_path) >= sizeof sa.sun_path)
    return -2;
  memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  size_t n = strlen(line);
  if (write(fd, line, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
    close(fd);
    return -2;
  }
  shutdown(fd, SHUT_WR);
  size_t got = 0;
  ssize_t r;
  while (got < outsz - 1 && (r = read(fd, out + got, outsz - 1 - got)) > 0)
    got += (size_t)r;
  out[got] = '\0';
  close(fd);
  return 0;
}
