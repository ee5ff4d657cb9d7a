/* sagad --probe (probe.h): one HTTP/1.1 GET /healthz over a blocking
 * socket, bounded by a deadline. */
#include "probe.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events or the deadline: 0, or -1. */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0)
      return -1;
    struct pollfd p = {fd, events, 0};
    int n = poll(&p, 1, (int)left);
    if (n > 0)
      return 0;
    if (n < 0 && errno != EINTR)
      return -1;
  }
}

/* Split "host:port" / "[v6]:port" into host (the wildcard as loopback)
 * and port: 0, or -1. */
static int split(const char *listen, char *host, size_t hlen, char *port,
                 size_t plen) {
  const char *colon = strrchr(listen, ':');
  if (!colon || !colon[1] || strlen(colon + 1) >= plen)
    return -1;
  const char *h = listen;
  size_t n = (size_t)(colon - listen);
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
    h++;
    n -= 2;
  }
  if (n == 0 || n >= hlen)
    return -1;
  memcpy(host, h, n);
  host[n] = '\0';
  if (!strcmp(host, "0.0.0.0"))
    snprintf(host, hlen, "127.0.0.1");
  else if (!strcmp(host, "::"))
    snprintf(host, hlen, "::1");
  snprintf(port, plen, "%s", colon + 1);
  return 0;
}

int sagad_probe_health(const char *listen, int timeout_ms, char *why,
                       size_t len) {
  char host[256], port[16];
  if (!listen || !*listen) {
    snprintf(why, len, "the admin endpoint is off (admin.listen is empty)");
    return -1;
  }
  if (split(listen, host, sizeof host, port, sizeof port)) {
    snprintf(why, len, "admin.listen: expected host:port, got \"%s\"",
             listen);
    return -1;
  }
  int64_t deadline = now_ms() + timeout_ms;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  int gai = getaddrinfo(host, port, &hints, &ai);
  if (gai) {
    snprintf(why, len, "admin.listen \"%s\": %s", listen, gai_strerror(gai));
    return -1;
  }
  int rc = -1;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (fd < 0) {
    snprintf(why, len, "socket: %s", strerror(errno));
    goto out;
  }
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
      errno != EINPROGRESS) {
    snprintf(why, len, "could not connect to %s:%s: %s", host, port,
             strerror(errno));
    goto out;
  }
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (wait_fd(fd, POLLOUT, deadline) ||
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
    snprintf(why, len, "could not connect to %s:%s: %s", host, port,
             soerr ? strerror(soerr) : "timed out");
    goto out;
  }
  /* the Host a loopback-bound endpoint answers (admin.allowed_hosts) */
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET /healthz HTTP/1.1\r\nHost: %s%s%s:%s\r\n"
                   "Connection: close\r\n\r\n",
                   strchr(host, ':') ? "[" : "", host,
                   strchr(host, ':') ? "]" : "", port);
  for (int sent = 0; sent < n;) {
    ssize_t w = send(fd, req + sent, (size_t)(n - sent), MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (wait_fd(fd, POLLOUT, deadline))
        break;
      continue;
    }
    if (w <= 0) {
      snprintf(why, len, "could not send to %s:%s: %s", host, port,
               strerror(errno));
      goto out;
    }
    sent += (int)w;
  }
  char resp[64];
  size_t got = 0;
  while (got < 12) {
    if (wait_fd(fd, POLLIN, deadline)) {
      snprintf(why, len, "no answer from %s:%s within %d ms", host, port,
               timeout_ms);
      goto out;
    }
    ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (r <= 0) {
      snprintf(why, len, "%s:%s closed the connection without an answer",
               host, port);
      goto out;
    }
    got += (size_t)r;
  }
  resp[got] = '\0';
  if (strncmp(resp, "HTTP/1.", 7) || strncmp(resp + 8, " 200", 4)) {
    for (char *c = resp; *c; c++) /* shown on one line */
      if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
        *c = '?';
    snprintf(why, len, "GET /healthz on %s:%s answered \"%.12s\"", host,
             port, resp);
    goto out;
  }
  rc = 0;
out:
  if (fd >= 0)
    close(fd);
  freeaddrinfo(ai);
  return rc;
}
