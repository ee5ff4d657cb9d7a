/* Test helper: loop thread and blocking HTTP client (http_client.h). */
#include "http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "test_support.h"

struct loop_thread {
  uv_loop_t loop;
  uv_async_t stop;
  uv_sem_t ready;
  pthread_t thread;
  void (*setup)(uv_loop_t *, void *);
  void (*teardown)(void *);
  void *arg;
};

static void on_stop(uv_async_t *a) {
  loop_thread_t *t = a->data;
  t->teardown(t->arg);
  uv_close((uv_handle_t *)a, NULL);
}

static void *run(void *p) {
  loop_thread_t *t = p;
  t->setup(&t->loop, t->arg);
  uv_sem_post(&t->ready);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  return NULL;
}

loop_thread_t *loop_thread_start(void (*setup)(uv_loop_t *, void *),
                                 void (*teardown)(void *), void *arg) {
  loop_thread_t *t = calloc(1, sizeof *t);
  uv_loop_init(&t->loop);
  uv_async_init(&t->loop, &t->stop, on_stop);
  t->stop.data = t;
  uv_sem_init(&t->ready, 0);
  t->setup = setup;
  t->teardown = teardown;
  t->arg = arg;
  pthread_create(&t->thread, NULL, run, t);
  uv_sem_wait(&t->ready);
  return t;
}

void loop_thread_stop(loop_thread_t *t) {
  uv_async_send(&t->stop);
  pthread_join(t->thread, NULL);
  if (uv_loop_close(&t->loop) != 0) {
    fprintf(stderr, "loop still has handles after teardown\n");
    abort();
  }
  uv_sem_destroy(&t->ready);
  free(t);
}

int http_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    abort();
  }
  int64_t ms = ts_timeout_ms(5000);
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void http_send(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n <= 0)
      return; /* the server may have closed: tests look at the answer */
    data += n;
    len -= (size_t)n;
  }
}

char *http_read_response(int fd, int *status) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap + 1);
  long want = -1;
  for (;;) {
    if (len == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end && want < 0) {
      const char *cl = strstr(buf, "\r\nContent-Length:");
      want = (long)(end + 4 - buf) + (cl && cl < end ? atol(cl + 17) : 0);
    }
    if (want >= 0 && (long)len >= want)
      break;
    ssize_t n = recv(fd, buf + len, want >= 0 ? (size_t)(want - (long)len) : 1,
                     0);
    if (n <= 0) {
      if (len == 0) {
        free(buf);
        return NULL;
      }
      break;
    }
    len += (size_t)n;
  }
  buf[len] = '\0';
  *status = len > 12 ? atoi(buf + 9) : 0;
  return buf;
}

int http_peer_closed(int fd) {
  char c;
  return recv(fd, &c, 1, 0) == 0;
}

char *http_roundtrip(int port, const char *request, int *status) {
  int fd = http_connect(port);
  http_send(fd, request, strlen(request));
  char *r = http_read_response(fd, status);
  close(fd);
  return r;
}

int http_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &n) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

char *http_get_body(int port, const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return NULL;
  }
  char req[512];
  snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
           path);
  http_send(fd, req, strlen(req));
  size_t len = 0, cap = 4096;
  char *all = malloc(cap + 1);
  ssize_t n;
  while (all && (n = read(fd, all + len, cap - len)) > 0) {
    len += (size_t)n;
    if (len == cap) {
      char *more = realloc(all, 2 * cap + 1);
      if (!more) {
        free(all);
        all = NULL;
        break;
      }
      all = more;
      cap *= 2;
    }
  }
  close(fd);
  if (!all)
    return NULL;
  all[len] = '\0';
  char *body = strstr(all, "\r\n\r\n");
  char *out = body ? strdup(body + 4) : NULL;
  free(all);
  return out;
}

pid_t prometheus_start(const char *dir, int target_port, int *prom_port) {
  char path[512];
  snprintf(path, sizeof path, "%s/prometheus.yml", dir);
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fprintf(f,
          "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
          "scrape_configs:\n  - job_name: sagad\n    static_configs:\n"
          "      - targets: ['127.0.0.1:%d']\n",
          target_port);
  fclose(f);
  *prom_port = http_free_port();
  if (*prom_port < 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    char cfg[600], data[600], listen[64];
    snprintf(cfg, sizeof cfg, "--config.file=%s", path);
    snprintf(data, sizeof data, "--storage.tsdb.path=%s/data", dir);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d",
             *prom_port);
    if (!freopen("/dev/null", "w", stderr) ||
        !freopen("/dev/null", "w", stdout))
      _exit(126);
    execlp("prometheus", "prometheus", cfg, data, listen, (char *)NULL);
    _exit(127);
  }
  return pid;
}
