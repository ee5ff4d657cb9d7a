/* The OTLP exporter over mutual TLS, by host name: a CA, a server
 * certificate for "localhost" and a client certificate for "sagad", both
 * signed by it, are made at test time by the openssl program (skipped when
 * it is missing); a small HTTPS receiver (OpenSSL, on its own thread,
 * 127.0.0.1) that requires a client certificate from that CA takes the
 * POSTs. An exporter configured as sagad configures it --
 * OTEL_EXPORTER_OTLP_ENDPOINT=https://localhost:PORT,
 * OTEL_EXPORTER_OTLP_CERTIFICATE=the CA, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
 * and _CLIENT_KEY, OTEL_EXPORTER_OTLP_HEADERS -- delivers its span with the
 * header and its certificate; one without the CA file does not get past
 * the handshake (the server's certificate is verified), nor does one
 * without the client certificate (the receiver refuses it). */
#define _GNU_SOURCE /* strcasestr */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "http_client.h"
#include "otlp.h"
#include "otlp_test.h"
#include "test_support.h"

static char dir[64] = "/tmp/otlp-tls-XXXXXX";
static char ca[128], cert[128], key[128], ccert[128], ckey[128];
static int lfd = -1, port;
static SSL_CTX *ctx;
static pthread_t srv_thread;
static volatile int stop_srv;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int handshakes_failed, posts; /* under mu */
static int refused_no_cert; /* handshakes failed for want of a client cert */
static char got_auth[64], got_path[64], got_client[64];
static bool got_span, got_stranger; /* a span of an exporter that must fail */

static loop_thread_t *lt;
static otlp_t *good, *untrusted, *anonymous;

/* Read one request (head and Content-Length body) from ssl into buf. */
static int read_request(SSL *ssl, char *buf, size_t cap) {
  size_t n = 0;
  char *body = NULL;
  long want = -1;
  while (n + 1 < cap) {
    int r = SSL_read(ssl, buf + n, (int)(cap - 1 - n));
    if (r <= 0)
      return -1;
    n += (size_t)r;
    buf[n] = '\0';
    if (!body && (body = strstr(buf, "\r\n\r\n"))) {
      body += 4;
      const char *cl = strcasestr(buf, "\r\ncontent-length:");
      want = cl ? strtol(cl + 17, NULL, 10) : 0;
    }
    if (body && (long)(n - (size_t)(body - buf)) >= want)
      return 0;
  }
  return -1;
}

/* A header's value in the request head, copied to out. */
static void header(const char *req, const char *name, char *out, size_t len) {
  char pat[64];
  snprintf(pat, sizeof pat, "\r\n%s:", name);
  const char *p = strcasestr(req, pat);
  out[0] = '\0';
  if (!p)
    return;
  p += strlen(pat);
  while (*p == ' ')
    p++;
  size_t k = 0;
  while (p[k] && p[k] != '\r' && k + 1 < len)
    k++;
  memcpy(out, p, k);
  out[k] = '\0';
}

static void serve_one(int fd) {
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  static char req[1 << 16];
  if (SSL_accept(ssl) != 1) {
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    pthread_mutex_lock(&mu);
    if (ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
      refused_no_cert++;
    handshakes_failed++;
    pthread_mutex_unlock(&mu);
  } else if (read_request(ssl, req, sizeof req) == 0) {
    pthread_mutex_lock(&mu);
    posts++;
    if (strstr(req, "\"name\":\"tls span\"")) {
      got_span = true;
      header(req, "authorization", got_auth, sizeof got_auth);
      snprintf(got_path, sizeof got_path, "%.*s", (int)strcspn(req, "\r\n"),
               req);
      X509 *peer = SSL_get_peer_certificate(ssl);
      if (peer)
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
                                  NID_commonName, got_client,
                                  sizeof got_client);
      X509_free(peer);
    } else {
      got_stranger = true;
    }
    pthread_mutex_unlock(&mu);
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
    SSL_write(ssl, ok, (int)strlen(ok));
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  close(fd);
}

static void *server(void *arg) {
  (void)arg;
  while (!stop_srv) {
    struct pollfd p = {lfd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0)
      continue;
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0)
      serve_one(fd);
  }
  return NULL;
}

static void on_loop(uv_loop_t *loop, void *arg) {
  (void)arg;
  char base[64];
  snprintf(base, sizeof base, "https://localhost:%d", port);
  const char *env_good[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                            base,
                            "OTEL_EXPORTER_OTLP_CERTIFICATE",
                            ca,
                            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                            ccert,
                            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                            ckey,
                            "OTEL_EXPORTER_OTLP_HEADERS",
                            "authorization=Bearer%20tls",
                            NULL};
  /* no CA: the server's certificate cannot be verified */
  const char *env_untrusted[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                                 base,
                                 "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                                 ccert,
                                 "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                                 ckey,
                                 NULL};
  /* no client certificate: the receiver refuses the handshake */
  const char *env_anonymous[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", base,
                                 "OTEL_EXPORTER_OTLP_CERTIFICATE", ca, NULL};
  good = otlp_test_exporter(loop, NULL, env_good);
  untrusted = otlp_test_exporter(loop, NULL, env_untrusted);
  anonymous = otlp_test_exporter(loop, NULL, env_anonymous);
  otlp_span_t s = {.name = "tls span", .trace_id = "1", .span_id = "2"};
  assert_int_equal(otlp_emit(good, &s), 0);
  s.name = "untrusted span";
  assert_int_equal(otlp_emit(untrusted, &s), 0);
  s.name = "anonymous span";
  assert_int_equal(otlp_emit(anonymous, &s), 0);
}

static void on_stop(void *arg) {
  (void)arg;
  otlp_close(good, NULL, NULL);
  otlp_close(untrusted, NULL, NULL);
  otlp_close(anonymous, NULL, NULL);
}

static void path_in(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", dir, name);
}

static int setup(void **state) {
  (void)state;
  if (!mkdtemp(dir))
    return -1;
  path_in(ca, sizeof ca, "ca.pem");
  path_in(cert, sizeof cert, "server.pem");
  path_in(key, sizeof key, "server.key");
  path_in(ccert, sizeof ccert, "client.pem");
  path_in(ckey, sizeof ckey, "client.key");
  if (system("command -v openssl >/dev/null 2>&1") != 0)
    return 0; /* no openssl program: the test skips */
  /* a CA; the server's certificate for localhost and the client's, both
   * signed by it */
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "cd %s && exec >/dev/null 2>&1 && "
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key "
           "-out ca.pem -days 1 -subj /CN=otlp-test-ca && "
           "echo subjectAltName=DNS:localhost > server.ext && "
           "openssl req -newkey rsa:2048 -nodes -keyout server.key "
           "-out server.csr -subj /CN=localhost && "
           "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
           "-CAcreateserial -days 1 -extfile server.ext -out server.pem && "
           "echo extendedKeyUsage=clientAuth > client.ext && "
           "openssl req -newkey rsa:2048 -nodes -keyout client.key "
           "-out client.csr -subj /CN=sagad && "
           "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
           "-CAcreateserial -days 1 -extfile client.ext -out client.pem",
           dir);
  if (system(cmd) != 0)
    return -1;
  ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
    return -1;
  /* mutual TLS: a client certificate from the CA or no handshake */
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     NULL);
  lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(lfd, 16) != 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
    return -1;
  port = ntohs(a.sin_port);
  if (pthread_create(&srv_thread, NULL, server, NULL) != 0)
    return -1;
  lt = loop_thread_start(on_loop, on_stop, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (lt)
    loop_thread_stop(lt);
  if (lfd >= 0) {
    stop_srv = 1;
    pthread_join(srv_thread, NULL);
    close(lfd);
  }
  SSL_CTX_free(ctx);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_spans_reach_a_mutual_tls_collector_by_name(void **state) {
  (void)state;
  if (!ctx)
    skip(); /* the openssl program is missing */
  int64_t until = ts_now_ms() + ts_timeout_ms(20000);
  bool done = false;
  while (!done && ts_now_ms() < until) {
    pthread_mutex_lock(&mu);
    done = got_span && refused_no_cert > 0 &&
           handshakes_failed > refused_no_cert;
    pthread_mutex_unlock(&mu);
    if (!done)
      nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
  }
  pthread_mutex_lock(&mu);
  assert_true(got_span);
  assert_string_equal(got_path, "POST /v1/traces HTTP/1.1");
  assert_string_equal(got_auth, "Bearer tls");
  assert_string_equal(got_client, "sagad"); /* its certificate was sent */
  /* the exporter without the CA refused the server's certificate, the one
   * without a client certificate was refused: neither span arrived */
  assert_true(refused_no_cert > 0);
  assert_true(handshakes_failed > refused_no_cert);
  assert_false(got_stranger);
  pthread_mutex_unlock(&mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spans_reach_a_mutual_tls_collector_by_name),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
