/* sd_notify(3) without libsystemd (sd_notify.h). */
#include "sd_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sagad_sd_notify(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path)
    return 0;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(path);
  if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path) {
    errno = EINVAL;
    return -1;
  }
  memcpy(sa.sun_path, path, n);
  if (path[0] == '@')
    sa.sun_path[0] = '\0'; /* abstract namespace */
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                     (const struct sockaddr *)&sa, len);
  int saved = errno;
  close(fd);
  errno = saved;
  return w < 0 ? -1 : 1;
}

static int parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s)
    return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return 0;
}

uint64_t sagad_sd_watchdog_usec(void) {
  uint64_t usec = 0, pid = 0;
  if (parse_u64(getenv("WATCHDOG_USEC"), &usec) != 0)
    return 0;
  const char *p = getenv("WATCHDOG_PID");
  if (p && (parse_u64(p, &pid) != 0 || pid != (uint64_t)getpid()))
    return 0;
  return usec;
}
