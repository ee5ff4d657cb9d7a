/* Test helper: a server loop on its own thread and a blocking socket
 * client, so tests talk HTTP to the admin server as a real client does. */
#ifndef SAGA_TEST_HTTP_CLIENT_H
#define SAGA_TEST_HTTP_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

#include <uv.h>

/* The loop thread: setup(loop, arg) runs on it first (create the server,
 * routes, start); the loop then runs until loop_thread_stop, which calls
 * teardown(arg) on the loop thread and waits for the loop to end. */
typedef struct loop_thread loop_thread_t;
loop_thread_t *loop_thread_start(void (*setup)(uv_loop_t *loop, void *arg),
                                 void (*teardown)(void *arg), void *arg);
void loop_thread_stop(loop_thread_t *t);

/* Connect to 127.0.0.1:port (receive timeout from ts_timeout_ms(5000)). */
int http_connect(int port);
/* Send all bytes. */
void http_send(int fd, const char *data, size_t len);
/* Read one response (head + Content-Length body) into a malloc'd string;
 * NULL on EOF before any byte. *status gets the status code. */
char *http_read_response(int fd, int *status);
/* True when the peer has closed (read returns 0 within the timeout). */
int http_peer_closed(int fd);
/* Connect, send request, read one response, close. */
char *http_roundtrip(int port, const char *request, int *status);

/* A TCP port on 127.0.0.1 free at the time of the call; -1 on error. */
int http_free_port(void);
/* GET path from 127.0.0.1:port over HTTP/1.0 (no chunking: read to EOF);
 * the body as a malloc'd string, or NULL when nothing listens there yet or
 * the answer has no body. */
char *http_get_body(int port, const char *path);

/* A real Prometheus scraping 127.0.0.1:target_port every second as job
 * "sagad": writes dir/prometheus.yml (dir must exist, its data goes to
 * dir/data), picks a free port for its HTTP API into *prom_port and forks
 * it with stdout and stderr to /dev/null. The child's pid (the caller
 * SIGTERMs and reaps it), or -1 on error. */
pid_t prometheus_start(const char *dir, int target_port, int *prom_port);

#endif
