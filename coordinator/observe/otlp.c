/* OTLP/HTTP JSON trace exporter (otlp.h). One request at a time: a batch
 * is taken from the queue, rendered once, and posted until the collector
 * takes it (2xx), refuses it for good (4xx but 429), or the exporter
 * closes; spans keep queueing behind it up to max_queue.
 *
 * Why libcurl's multi interface on the loop rather than a worker thread:
 * the loop already owns the queue, the flush and retry timers, and every
 * caller (sagad's engine hooks) is on it, so no lock and no thread handoff
 * is needed; curl resolves names on its own resolver thread, connects and
 * does TLS without blocking, and tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION -> uv_poll) and when to call it back
 * (CURLMOPT_TIMERFUNCTION -> uv_timer). The engine only ever copies a span
 * into the ring (otlp_emit), which never waits: a full ring drops. */
#include "otlp.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "abuf.h"
#include "text.h"

typedef struct {
  char trace_id[SAGA_TRACE_ID_SIZE], span_id[SAGA_SPAN_ID_SIZE],
      parent_id[SAGA_SPAN_ID_SIZE];
  char name[96], saga_id[256] /* ids up to 255 bytes */, saga_type[65],
      saga_step[65], saga_action[16];
  char status_message[128];
  bool has_id, has_type, has_step, has_action;
  int status;
  int64_t start_us, end_us;
} qspan_t;

/* A socket curl asked us to watch. */
typedef struct sock {
  uv_poll_t poll;
  curl_socket_t fd;
  struct otlp *x;
  struct sock *next, **prev; /* x->socks */
} sock_t;

struct otlp {
  uv_loop_t *loop;
  otlp_opts_t opts;
  char *service;
  char *resource; /* the resource's attributes after service.name, JSON */
  qspan_t *q;     /* ring of max_queue */
  size_t qhead, qlen;
  char *batch; /* rendered body in flight or waiting for its retry */
  size_t batch_len, batch_spans;
  uint64_t backoff_ms;
  CURLM *multi;
  CURL *easy; /* one handle, reused: its connection is kept */
  struct curl_slist *hdrs;
  bool busy;   /* easy is added to multi */
  bool global; /* curl_global_init succeeded */
  sock_t *socks;
  uv_timer_t flush, retry, curl_timer;
  int open_handles;
  bool closing;
  bool draining; /* otlp_flush_close: sending what is queued, then close */
  void (*close_cb)(void *);
  void *close_arg;
  otlp_stats_t stats;
  char curl_err[CURL_ERROR_SIZE]; /* CURLOPT_ERRORBUFFER of easy */
  char last_error[CURL_ERROR_SIZE + 64];
};

void otlp_opts_init(otlp_opts_t *o) {
  *o = (otlp_opts_t){.service_name = "sagad",
                     .max_queue = 2048,
                     .max_batch = 256,
                     .flush_ms = 1000,
                     .timeout_ms = 10000,
                     .backoff_min_ms = 200,
                     .backoff_max_ms = 30000};
}

/* ---- queue and rendering -------------------------------------------- */

static void attr(abuf_t *b, bool *first, const char *k, const char *v) {
  abuf_printf(b, "%s{\"key\":\"%s\",\"value\":{\"stringValue\":\"",
              *first ? "" : ",", k);
  abuf_json_str(b, v);
  abuf_puts(b, "\"}}");
  *first = false;
}

static void render_span(abuf_t *b, const qspan_t *s) {
  abuf_printf(b,
              "{\"traceId\":\"%s\",\"spanId\":\"%s\",\"parentSpanId\":\"%s\","
              "\"name\":\"",
              s->trace_id, s->span_id, s->parent_id);
  abuf_json_str(b, s->name);
  abuf_printf(b,
              "\",\"kind\":1,\"startTimeUnixNano\":\"%" PRId64
              "000\",\"endTimeUnixNano\":\"%" PRId64 "000\",\"attributes\":[",
              s->start_us, s->end_us);
  bool first = true;
  if (s->has_id)
    attr(b, &first, "saga.id", s->saga_id);
  if (s->has_type)
    attr(b, &first, "saga.type", s->saga_type);
  if (s->has_step)
    attr(b, &first, "saga.step", s->saga_step);
  if (s->has_action)
    attr(b, &first, "saga.action", s->saga_action);
  abuf_printf(b, "],\"status\":{\"code\":%d", s->status);
  if (s->status_message[0]) {
    abuf_puts(b, ",\"message\":\"");
    abuf_json_str(b, s->status_message);
    abuf_add(b, "\"", 1);
  }
  abuf_puts(b, "}}");
}

/* Take up to max_batch spans into x->batch as one request body. */
static int take_batch(otlp_t *x) {
  size_t n = x->qlen < x->opts.max_batch ? x->qlen : x->opts.max_batch;
  abuf_t body = ABUF_INIT;
  abuf_puts(&body, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{"
                   "\"key\":\"service.name\",\"value\":{\"stringValue\":\"");
  abuf_json_str(&body, x->service);
  abuf_puts(&body, "\"}}");
  abuf_puts(&body, x->resource);
  abuf_puts(&body, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"sagad\"},"
                   "\"spans\":[");
  for (size_t i = 0; i < n; i++) {
    if (i)
      abuf_add(&body, ",", 1);
    render_span(&body, &x->q[(x->qhead + i) % x->opts.max_queue]);
  }
  abuf_puts(&body, "]}]}]}");
  if (body.failed) {
    abuf_free(&body);
    return -1;
  }
  x->batch = abuf_take(&body, &x->batch_len);
  if (!x->batch)
    return -1;
  x->batch_spans = n;
  x->qhead = (x->qhead + n) % x->opts.max_queue;
  x->qlen -= n;
  return 0;
}

/* ---- headers (OTEL_EXPORTER_OTLP_HEADERS syntax) --------------------- */

static int hexval(int c) {
  return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

/* Copy s[0..n) trimmed of blanks into dst (size n + 1), percent-decoded
 * when decode. Returns the length, or -1 on a bad %XX. */
static int trim_decode(const char *s, size_t n, char *dst, bool decode) {
  while (n && isspace((unsigned char)*s))
    s++, n--;
  while (n && isspace((unsigned char)s[n - 1]))
    n--;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (decode && s[i] == '%') {
      int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
      int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return -1;
      dst[k++] = (char)(hi * 16 + lo);
      i += 2;
      continue;
    }
    dst[k++] = s[i];
  }
  dst[k] = '\0';
  return (int)k;
}

static bool token_char(int c) {
  return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One entry of a key=value list; returns 0, or -1 to stop (out of memory:
 * set msg). */
typedef int (*kv_fn)(const char *key, const char *val, void *arg, char *msg,
                     size_t len);

/* Walk "k=v,k2=v2" (OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES
 * syntax: blanks trimmed, values percent-decoded, empty entries skipped),
 * calling fn (may be NULL: check only) for each entry. Returns 0 or -1
 * with msg saying what is wrong (values withheld: they often are
 * credentials). */
static int parse_kv(const char *spec, kv_fn fn, void *arg, char *msg,
                    size_t len) {
  size_t total = strlen(spec);
  char *buf = malloc(2 * total + 8);
  if (!buf) {
    snprintf(msg, len, "out of memory");
    return -1;
  }
  int rc = 0, nth = 0;
  for (const char *p = spec; *p && rc == 0;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    nth++;
    const char *eq = memchr(p, '=', n);
    char *key = buf, *val = buf + total + 2;
    int kl = eq ? trim_decode(p, (size_t)(eq - p), key, false) : -1;
    int vl = eq ? trim_decode(eq + 1, n - (size_t)(eq + 1 - p), val, true) : -1;
    if (!eq && trim_decode(p, n, key, false) == 0) {
      /* an empty member (a trailing comma) is allowed */
    } else if (!eq || kl <= 0) {
      snprintf(msg, len, "entry %d: expected key=value", nth);
      rc = -1;
    } else if (vl < 0) {
      snprintf(msg, len, "entry %d (%s): bad %%XX escape in its value", nth,
               key);
      rc = -1;
    } else {
      for (int i = 0; i < kl && rc == 0; i++)
        if (!token_char((unsigned char)key[i])) {
          snprintf(msg, len, "entry %d: \"%s\" is not a valid name", nth, key);
          rc = -1;
        }
      for (int i = 0; i < vl && rc == 0; i++)
        if ((unsigned char)val[i] < 0x20 && val[i] != '\t') {
          snprintf(msg, len,
                   "entry %d (%s): its value holds a control character", nth,
                   key);
          rc = -1;
        }
      if (rc == 0 && fn)
        rc = fn(key, val, arg, msg, len);
    }
    p += n;
    if (*p == ',')
      p++;
  }
  free(buf);
  return rc;
}

/* kv_fn: a "key: value" request header appended to the curl_slist *arg. */
static int add_header(const char *key, const char *val, void *arg, char *msg,
                      size_t len) {
  struct curl_slist **list = arg;
  size_t ll = strlen(key) + strlen(val) + 3;
  char *line = malloc(ll);
  struct curl_slist *nl = NULL;
  if (line) {
    snprintf(line, ll, "%s: %s", key, val);
    nl = curl_slist_append(*list, line);
    free(line);
  }
  if (!nl) {
    snprintf(msg, len, "out of memory");
    return -1;
  }
  *list = nl;
  return 0;
}

/* kv_fn: a resource attribute rendered into the abuf arg (service.name is
 * rendered on its own). */
static int add_attr(const char *key, const char *val, void *arg, char *msg,
                    size_t len) {
  (void)msg;
  (void)len;
  abuf_t *b = arg;
  if (strcmp(key, "service.name") != 0) {
    abuf_puts(b, ",{\"key\":\"");
    abuf_json_str(b, key);
    abuf_puts(b, "\",\"value\":{\"stringValue\":\"");
    abuf_json_str(b, val);
    abuf_puts(b, "\"}}");
  }
  return 0;
}

/* kv_fn: a copy of service.name's value into *arg. */
static int find_service(const char *key, const char *val, void *arg, char *msg,
                        size_t len) {
  char **out = arg;
  if (strcmp(key, "service.name") != 0)
    return 0;
  free(*out);
  if (!(*out = strdup(val))) {
    snprintf(msg, len, "out of memory");
    return -1;
  }
  return 0;
}

/* ---- resolving the target ---------------------------------------------- */

static const char *env_get(otlp_env_fn env, const void *arg, const char *name) {
  const char *v = env ? env(name, arg) : NULL;
  return v && *v ? v : NULL;
}

/* The first of two variables set (the signal-specific one first). */
static const char *env_pair(otlp_env_fn env, const void *arg,
                            const char *traces, const char *all,
                            const char **which) {
  const char *v = env_get(env, arg, traces);
  *which = traces;
  if (!v) {
    v = env_get(env, arg, all);
    *which = all;
  }
  return v;
}

/* Check url (an http or https URL with a host); with append, add
 * "v1/traces" to its path as the OTLP/HTTP spec says of a base URL. The
 * full URL goes to *out (malloc'd). Returns 0 or -1 with msg. */
static int build_url(const char *url, bool append, char **out, char *msg,
                     size_t len) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *path = NULL, *full = NULL;
  int rc = -1;
  CURLUcode uc;
  if (!u) {
    snprintf(msg, len, "out of memory");
    return -1;
  }
  uc = curl_url_set(u, CURLUPART_URL, url, CURLU_DISALLOW_USER);
  if (uc == CURLUE_USER_NOT_ALLOWED) {
    /* it would be logged and printed: credentials go in headers */
    snprintf(msg, len,
             "a user or password in the URL is not accepted (give "
             "credentials in OTEL_EXPORTER_OTLP_HEADERS)");
    goto out;
  }
  if (uc != CURLUE_OK) {
    snprintf(msg, len, "\"%s\" is not a URL: %s", url, curl_url_strerror(uc));
    goto out;
  }
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
    snprintf(msg, len, "\"%s\": only http:// and https:// are supported", url);
    goto out;
  }
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
    snprintf(msg, len, "\"%s\" has no host", url);
    goto out;
  }
  if (curl_url_get(u, CURLUPART_PORT, &path, 0) == CURLUE_OK &&
      !strcmp(path, "0")) { /* no collector listens on "any free port" */
    snprintf(msg, len, "\"%s\": the port must be 1..65535", url);
    goto out;
  }
  curl_free(path);
  path = NULL;
  if (append) {
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
      snprintf(msg, len, "\"%s\": could not read its path", url);
      goto out;
    }
    size_t pl = strlen(path);
    /* a full traces URL where a base is meant: it went to
     * .../v1/traces/v1/traces, and every span was refused (404) */
    size_t tl = pl && path[pl - 1] == '/' ? pl - 1 : pl;
    if (tl >= 10 && !memcmp(path + tl - 10, "/v1/traces", 10)) {
      snprintf(msg, len,
               "\"%s\" ends in /v1/traces, which is appended to a base "
               "URL: give the base (the URL without /v1/traces), or the "
               "full URL in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
               url);
      goto out;
    }
    char *np = malloc(pl + 12);
    if (!np) {
      snprintf(msg, len, "out of memory");
      goto out;
    }
    snprintf(np, pl + 12, "%s%sv1/traces", path,
             pl && path[pl - 1] == '/' ? "" : "/");
    uc = curl_url_set(u, CURLUPART_PATH, np, 0);
    free(np);
    if (uc != CURLUE_OK) {
      snprintf(msg, len, "\"%s\": %s", url, curl_url_strerror(uc));
      goto out;
    }
  }
  if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK ||
      !(*out = strdup(full))) {
    snprintf(msg, len, "out of memory");
    goto out;
  }
  rc = 0;
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(path);
  curl_free(full);
  curl_url_cleanup(u);
  return rc;
}

/* otlp.endpoint: a base URL, or host:port meaning http://host:port. */
static int endpoint_url(const char *ep, char **out, char *msg, size_t len) {
  if (strstr(ep, "://"))
    return build_url(ep, true, out, msg, len);
  const char *colon = strrchr(ep, ':');
  char *end = NULL;
  long port = colon && colon != ep ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || colon == ep || !colon[1] || *end || port < 1 || port > 65535 ||
      strchr(ep, '/')) {
    snprintf(msg, len,
             "expected host:port (port 1..65535) or an http:// or https:// "
             "URL, got \"%s\"",
             ep);
    return -1;
  }
  size_t n = strlen(ep) + 8;
  char *url = malloc(n);
  if (!url) {
    snprintf(msg, len, "out of memory");
    return -1;
  }
  snprintf(url, n, "http://%s", ep);
  int rc = build_url(url, true, out, msg, len);
  free(url);
  return rc;
}

/* A TLS file variable: a readable file (a folder would fail every
 * handshake later, out of sight), copied to *out; *from (may be NULL) the
 * variable it came from. */
static int tls_file(otlp_env_fn env, const void *arg, const char *traces,
                    const char *all, char **out, const char **from,
                    char *errbuf, size_t errlen) {
  const char *which;
  const char *v = env_pair(env, arg, traces, all, &which);
  if (!v)
    return 0;
  if (from)
    *from = which;
  struct stat st;
  if (access(v, R_OK) != 0 || stat(v, &st) != 0) {
    snprintf(errbuf, errlen, "%s: cannot read \"%s\"", which, v);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(errbuf, errlen, "%s: \"%s\" is not a file (a PEM file is "
             "expected)", which, v);
    return -1;
  }
  if (!(*out = strdup(v))) {
    snprintf(errbuf, errlen, "%s: out of memory", which);
    return -1;
  }
  return 0;
}

static bool is_true(const char *v) { return v && !strcasecmp(v, "true"); }

/* Longest export timeout accepted from the environment: an hour. */
#define TIMEOUT_MAX_MS 3600000

/* OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT: whole milliseconds, 1..an hour,
 * into *out (left alone when neither is set). Returns 0 or -1 with
 * errbuf. */
static int timeout_var(otlp_env_fn env, const void *arg, uint64_t *out,
                       char *errbuf, size_t errlen) {
  const char *which;
  const char *v = env_pair(env, arg, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                           "OTEL_EXPORTER_OTLP_TIMEOUT", &which);
  if (!v)
    return 0;
  char *end = NULL;
  unsigned long long ms = strtoull(v, &end, 10);
  if (!isdigit((unsigned char)v[0]) || *end || ms < 1 ||
      ms > TIMEOUT_MAX_MS) {
    snprintf(errbuf, errlen,
             "%s: expected whole milliseconds from 1 to %d, got \"%s\"",
             which, TIMEOUT_MAX_MS, v);
    return -1;
  }
  *out = ms;
  return 0;
}

/* Everything otlp_resolve reads but the off switches, into *out (zeroed):
 * 0, or -1 with the fault in errbuf and *out freed. */
static int resolve_target(const otlp_settings_t *cfg, otlp_env_fn env,
                          const void *env_arg, otlp_target_t *out,
                          char *errbuf, size_t errlen) {
  char msg[512] = "out of memory"; /* what a failed strdup says */
  const char *v, *which;
  v = env_pair(env, env_arg, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
               "OTEL_EXPORTER_OTLP_PROTOCOL", &which);
  if (v && strcmp(v, "http/json") && strcmp(v, "http/protobuf")) {
    snprintf(errbuf, errlen,
             "%s: sagad speaks OTLP/HTTP (JSON, which every OTLP/HTTP "
             "receiver takes), not \"%s\"",
             which, v);
    return -1;
  }
  int rc = 0;
  if (cfg && cfg->endpoint && *cfg->endpoint) {
    out->url_from = "otlp.endpoint";
    rc = endpoint_url(cfg->endpoint, &out->url, msg, sizeof msg);
  } else if ((v = env_get(env, env_arg,
                          "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))) {
    out->url_from = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    rc = build_url(v, false, &out->url, msg, sizeof msg);
  } else if ((v = env_get(env, env_arg, "OTEL_EXPORTER_OTLP_ENDPOINT"))) {
    out->url_from = "OTEL_EXPORTER_OTLP_ENDPOINT";
    rc = build_url(v, true, &out->url, msg, sizeof msg);
  }
  if (rc != 0) {
    snprintf(errbuf, errlen, "%s: %s", out->url_from, msg);
    otlp_target_free(out);
    return -1;
  }
  v = env_pair(env, env_arg, "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
               "OTEL_EXPORTER_OTLP_HEADERS", &which);
  if (v && (parse_kv(v, NULL, NULL, msg, sizeof msg) != 0 ||
            !(out->headers = strdup(v)))) {
    snprintf(errbuf, errlen, "%s: %s", which, msg);
    otlp_target_free(out);
    return -1;
  }
  const char *cert_from = NULL, *key_from = NULL;
  if (tls_file(env, env_arg, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
               "OTEL_EXPORTER_OTLP_CERTIFICATE", &out->ca_file, NULL, errbuf,
               errlen) ||
      tls_file(env, env_arg, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
               "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &out->cert_file,
               &cert_from, errbuf, errlen) ||
      tls_file(env, env_arg, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
               "OTEL_EXPORTER_OTLP_CLIENT_KEY", &out->key_file, &key_from,
               errbuf, errlen)) {
    otlp_target_free(out);
    return -1;
  }
  if (!out->cert_file != !out->key_file) {
    /* named as the user set it: the variable given, the one missing */
    snprintf(errbuf, errlen,
             "%s is set but %s is not: a client certificate and its key "
             "go together (give both or neither)",
             cert_from ? cert_from : key_from,
             cert_from ? "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY (or "
                         "OTEL_EXPORTER_OTLP_CLIENT_KEY)"
                       : "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE (or "
                         "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)");
    otlp_target_free(out);
    return -1;
  }
  if (timeout_var(env, env_arg, &out->timeout_ms, errbuf, errlen) != 0) {
    otlp_target_free(out);
    return -1;
  }
  v = env_get(env, env_arg, "OTEL_RESOURCE_ATTRIBUTES");
  if (v &&
      (parse_kv(v, find_service, &out->service_name, msg, sizeof msg) != 0 ||
       !(out->resource_attributes = strdup(v)))) {
    snprintf(errbuf, errlen, "OTEL_RESOURCE_ATTRIBUTES: %s", msg);
    otlp_target_free(out);
    return -1;
  }
  const char *svc = env_get(env, env_arg, "OTEL_SERVICE_NAME");
  if (svc) {
    free(out->service_name);
    out->service_name = strdup(svc);
  } else if (!out->service_name) {
    out->service_name = strdup("sagad");
  }
  if (!out->service_name) {
    snprintf(errbuf, errlen, "out of memory");
    otlp_target_free(out);
    return -1;
  }
  return 0;
}


/* Appends a sentence to the target's warning. */
static void warn_add(otlp_target_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn_add(otlp_target_t *out, const char *fmt, ...) {
  size_t n = strlen(out->warning);
  if (n && n + 2 < sizeof out->warning) {
    memcpy(out->warning + n, "; ", 3);
    n += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->warning + n, sizeof out->warning - n, fmt, ap);
  va_end(ap);
}

/* OTEL_TRACES_EXPORTER, a comma-separated list as the spec has it: true
 * when it names otlp or names nothing; false when it names none (an off
 * switch wins) or only exporters sagad does not have (the warning says
 * so). Others beside otlp are ignored, with a warning. */
static bool exporter_wanted(const char *v, otlp_target_t *out) {
  bool otlp = false, none = false, named = false;
  char others[160] = "";
  for (const char *p = v; p && *p;) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    while (n && isspace((unsigned char)*p))
      p++, n--;
    while (n && isspace((unsigned char)p[n - 1]))
      n--;
    if (n) {
      named = true;
      if (n == 4 && !strncasecmp(p, "otlp", 4))
        otlp = true;
      else if (n == 4 && !strncasecmp(p, "none", 4))
        none = true;
      else {
        size_t used = strlen(others);
        snprintf(others + used, sizeof others - used, "%s%.*s",
                 used ? ", " : "", (int)n, p);
      }
    }
    p = e ? e + 1 : NULL;
  }
  if (none)
    return false;
  if (*others)
    warn_add(out,
             otlp ? "OTEL_TRACES_EXPORTER: sagad exports only otlp; %s "
                    "ignored"
                  : "OTEL_TRACES_EXPORTER: sagad exports only otlp, and "
                    "\"%s\" does not name it: no spans are exported",
             others);
  return otlp || !named;
}

int otlp_resolve(const otlp_settings_t *cfg, otlp_env_fn env,
                 const void *env_arg, otlp_target_t *out, char *errbuf,
                 size_t errlen) {
  memset(out, 0, sizeof *out);
  char warning[sizeof out->warning] = "";
  /* the off switches first: they win over any endpoint. As the spec
   * says, only true (in any case) disables the SDK; any other value is
   * false, with a warning unless it is false or empty. */
  const char *v = env_get(env, env_arg, "OTEL_SDK_DISABLED");
  bool off = is_true(v);
  if (!off) {
    if (v && *v && strcasecmp(v, "false"))
      warn_add(out,
               "OTEL_SDK_DISABLED: \"%s\" is not true (only true, in any "
               "case, turns the SDK off): taken as false",
               v);
    off = !exporter_wanted(env_get(env, env_arg, "OTEL_TRACES_EXPORTER"), out);
  }
  memcpy(warning, out->warning, sizeof warning);
  /* With export off nothing else is used, so nothing else is judged:
   * OTEL_SDK_DISABLED=true is the way out of a bad OTEL_* value too. */
  if (resolve_target(cfg, env, env_arg, out, errbuf, errlen) != 0) {
    if (!off)
      return -1;
    memset(out, 0, sizeof *out);
    if (errlen)
      errbuf[0] = '\0';
    /* but sagad's own setting is judged, export on or off */
    if (cfg && cfg->endpoint && *cfg->endpoint) {
      char msg[512] = "out of memory", *url = NULL;
      int bad = endpoint_url(cfg->endpoint, &url, msg, sizeof msg);
      free(url);
      if (bad) {
        snprintf(errbuf, errlen, "otlp.endpoint: %s", msg);
        return -1;
      }
    }
  }
  memcpy(out->warning, warning, sizeof warning);
  out->enabled = out->url && !off;
  return 0;
}

void otlp_target_free(otlp_target_t *t) {
  if (!t)
    return;
  free(t->url);
  free(t->headers);
  free(t->ca_file);
  free(t->cert_file);
  free(t->key_file);
  free(t->service_name);
  free(t->resource_attributes);
  memset(t, 0, sizeof *t);
}

void otlp_opts_from_target(otlp_opts_t *o, const otlp_target_t *t) {
  o->url = t->url;
  o->headers = t->headers;
  o->ca_file = t->ca_file;
  o->cert_file = t->cert_file;
  o->key_file = t->key_file;
  o->service_name = t->service_name;
  o->resource_attributes = t->resource_attributes;
  if (t->timeout_ms)
    o->timeout_ms = t->timeout_ms;
}

/* ---- libcurl on the loop ------------------------------------------------ */

static void pump(otlp_t *x);

/* One handle closed; the last one after otlp_close frees x. */
static void release(otlp_t *x) {
  if (--x->open_handles > 0 || !x->closing)
    return;
  void (*cb)(void *) = x->close_cb;
  void *arg = x->close_arg;
  free(x->q);
  free(x->batch);
  free(x->service);
  free(x->resource);
  free(x);
  if (cb)
    cb(arg);
}

static void handle_closed(uv_handle_t *h) { release(h->data); }

static void sock_closed(uv_handle_t *h) {
  sock_t *k = h->data;
  otlp_t *x = k->x;
  free(k);
  release(x);
}

static void sock_drop(sock_t *k) {
  *k->prev = k->next;
  if (k->next)
    k->next->prev = k->prev;
  k->poll.data = k;
  uv_close((uv_handle_t *)&k->poll, sock_closed);
}

static void on_retry(uv_timer_t *t) { pump(t->data); }

static void on_drain_end(uv_timer_t *t) {
  otlp_t *x = t->data;
  otlp_close(x, x->close_cb, x->close_arg);
}

/* While draining: once the queue is sent, or a request failed (no retry
 * at a stop), close -- from the loop, never inside curl's callbacks. */
static void drain_check(otlp_t *x, bool failed) {
  if (x->draining && (failed || (!x->busy && !x->batch && x->qlen == 0)))
    uv_timer_start(&x->flush, on_drain_end, 0, 0);
}

/* The request ended: status = HTTP status, or 0 for a transport error. */
static void finish(otlp_t *x, int status) {
  if (!x->busy)
    return;
  x->busy = false;
  curl_multi_remove_handle(x->multi, x->easy);
  if (x->closing)
    return;
  bool refused = status != 0 && status != 429 && status < 500;
  if (status >= 200 && status < 300) {
    x->stats.failing = 0;
  } else {
    x->stats.failed++;
    x->stats.failing++;
    if (status != 0)
      snprintf(x->last_error, sizeof x->last_error, "HTTP %d (%s)", status,
               refused ? "refused, spans dropped" : "retried");
  }
  if (status >= 200 && status < 300) {
    x->stats.sent += x->batch_spans;
  } else if (refused) {
    /* refused for good: a 4xx other than 429, and any 1xx or 3xx (curl
     * follows no redirect: retried, a redirect would come back forever
     * while the queue behind it filled) */
    x->stats.rejected += x->batch_spans;
  } else if (x->draining) {
    drain_check(x, true);
    return;
  } else {
    x->stats.retries++;
    x->backoff_ms = x->backoff_ms ? x->backoff_ms * 2 : x->opts.backoff_min_ms;
    if (x->backoff_ms > x->opts.backoff_max_ms)
      x->backoff_ms = x->opts.backoff_max_ms;
    uv_timer_start(&x->retry, on_retry, x->backoff_ms, 0);
    return;
  }
  free(x->batch);
  x->batch = NULL;
  x->backoff_ms = 0;
  pump(x);
  drain_check(x, false);
}

/* Collect what curl finished. */
static void check_done(otlp_t *x) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(x->multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    long code = 0;
    if (m->data.result == CURLE_OK)
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    else
      snprintf(x->last_error, sizeof x->last_error, "%s (retried)",
               x->curl_err[0] ? x->curl_err
                              : curl_easy_strerror(m->data.result));
    x->curl_err[0] = '\0';
    finish(x, (int)code);
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_t *k = p->data;
  otlp_t *x = k->x;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(x->multi, k->fd, flags, &running);
  check_done(x);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl wants. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *sockp) {
  (void)easy;
  otlp_t *x = userp;
  sock_t *k = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (k) {
      curl_multi_assign(x->multi, s, NULL);
      sock_drop(k);
    }
    return 0;
  }
  if (x->closing)
    return 0;
  if (!k) {
    k = calloc(1, sizeof *k);
    if (!k || uv_poll_init_socket(x->loop, &k->poll, s) != 0) {
      free(k);
      return -1; /* curl fails the transfer */
    }
    x->open_handles++;
    k->fd = s;
    k->x = x;
    k->poll.data = k;
    k->next = x->socks;
    k->prev = &x->socks;
    if (x->socks)
      x->socks->prev = &k->next;
    x->socks = k;
    curl_multi_assign(x->multi, s, k);
  }
  int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) |
           (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
  uv_poll_start(&k->poll, ev, on_poll);
  return 0;
}

static void on_curl_timer(uv_timer_t *t) {
  otlp_t *x = t->data;
  int running;
  curl_multi_socket_action(x->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(x);
}

/* CURLMOPT_TIMERFUNCTION: call curl back in timeout_ms (-1: never). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  otlp_t *x = userp;
  if (x->closing)
    return 0;
  if (timeout_ms < 0)
    uv_timer_stop(&x->curl_timer);
  else
    uv_timer_start(&x->curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

/* The collector's answer body is not needed. */
static size_t discard(char *p, size_t size, size_t n, void *arg) {
  (void)p;
  (void)arg;
  return size * n;
}

static void start_request(otlp_t *x) {
  curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->batch);
  curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                   (curl_off_t)x->batch_len);
  x->stats.requests++;
  if (curl_multi_add_handle(x->multi, x->easy) != CURLM_OK) {
    uv_timer_start(&x->retry, on_retry, x->opts.backoff_min_ms, 0);
    return;
  }
  x->busy = true;
}

/* Send the pending batch, or a new one when spans wait. */
static void pump(otlp_t *x) {
  if (x->closing || x->busy || uv_is_active((uv_handle_t *)&x->retry))
    return;
  if (!x->batch && x->qlen > 0 && take_batch(x) != 0)
    return; /* out of memory: the flush timer tries again */
  if (x->batch)
    start_request(x);
}

static void on_flush(uv_timer_t *t) { pump(t->data); }

/* ---- public ---------------------------------------------------------- */

/* Set up x's curl handles from opts. Returns 0 or -1. */
static int curl_setup(otlp_t *x, const otlp_opts_t *o) {
  char msg[256];
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return -1;
  x->global = true;
  x->multi = curl_multi_init();
  x->easy = curl_easy_init();
  if (!x->multi || !x->easy)
    return -1;
  char *url = NULL;
  if (build_url(o->url, false, &url, msg, sizeof msg) != 0)
    return -1;
  free(url);
  x->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  if (!x->hdrs || !(x->hdrs = curl_slist_append(x->hdrs, "Expect:")) ||
      (o->headers &&
       parse_kv(o->headers, add_header, &x->hdrs, msg, sizeof msg)))
    return -1;
  CURL *e = x->easy;
  int bad = 0;
  bad |= curl_easy_setopt(e, CURLOPT_URL, o->url) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->curl_err) != CURLE_OK;
  bad |=
      curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard) != CURLE_OK;
  if (o->ca_file)
    bad |= curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file) != CURLE_OK;
  if (o->cert_file)
    bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, o->cert_file) != CURLE_OK;
  if (o->key_file)
    bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, o->key_file) != CURLE_OK;
  bad |= curl_multi_setopt(x->multi, CURLMOPT_SOCKETFUNCTION, on_socket) !=
         CURLM_OK;
  bad |= curl_multi_setopt(x->multi, CURLMOPT_SOCKETDATA, x) != CURLM_OK;
  bad |=
      curl_multi_setopt(x->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK;
  bad |= curl_multi_setopt(x->multi, CURLMOPT_TIMERDATA, x) != CURLM_OK;
  return bad ? -1 : 0;
}

/* Free the curl side (after the socket handles are closed or given up). */
static void curl_teardown(otlp_t *x) {
  if (x->easy && x->busy)
    curl_multi_remove_handle(x->multi, x->easy);
  x->busy = false;
  curl_easy_cleanup(x->easy);
  curl_multi_cleanup(x->multi);
  curl_slist_free_all(x->hdrs);
  x->easy = NULL;
  x->multi = NULL;
  x->hdrs = NULL;
  if (x->global)
    curl_global_cleanup();
  x->global = false;
}

otlp_t *otlp_new(uv_loop_t *loop, const otlp_opts_t *opts) {
  if (!loop || !opts || !opts->url || !opts->max_queue || !opts->max_batch)
    return NULL;
  otlp_t *x = calloc(1, sizeof *x);
  if (!x)
    return NULL;
  x->loop = loop;
  x->opts = *opts;
  x->opts.url = x->opts.headers = x->opts.ca_file = NULL;
  x->opts.cert_file = x->opts.key_file = x->opts.service_name = NULL;
  x->service = strdup(opts->service_name ? opts->service_name : "sagad");
  x->q = calloc(opts->max_queue, sizeof *x->q);
  /* the resource's other attributes, rendered once */
  abuf_t res = ABUF_INIT;
  char msg[256];
  bool res_ok =
      !opts->resource_attributes ||
      parse_kv(opts->resource_attributes, add_attr, &res, msg, sizeof msg) == 0;
  x->resource = res_ok ? abuf_take(&res, NULL) : NULL;
  abuf_free(&res);
  x->opts.resource_attributes = NULL;
  if (!x->service || !x->q || !x->resource || curl_setup(x, opts) != 0) {
    curl_teardown(x);
    free(x->resource);
    free(x->service);
    free(x->q);
    free(x);
    return NULL;
  }
  uv_timer_t *timers[3] = {&x->flush, &x->retry, &x->curl_timer};
  for (int i = 0; i < 3; i++) {
    uv_timer_init(loop, timers[i]);
    timers[i]->data = x;
    x->open_handles++;
  }
  uv_timer_start(&x->flush, on_flush, opts->flush_ms, opts->flush_ms);
  return x;
}

/* src into dst[n], cut (when longer) where a UTF-8 character starts, so
 * that a cut never leaves half of one for the JSON body: a collector
 * refuses the whole batch for a string that is not UTF-8. */
static void copy(char *dst, size_t n, const char *src, bool *has) {
  if (has)
    *has = src != NULL;
  size_t len = (size_t)snprintf(dst, n, "%s", src ? src : "");
  if (len < n)
    return;
  size_t end = n - 1, start = end;
  while (start > 0 && ((unsigned char)dst[start - 1] & 0xC0) == 0x80)
    start--;
  /* dst[start - 1] leads the last character: keep it only when whole */
  if (start > 0 && (unsigned char)dst[start - 1] >= 0xC0 &&
      saga__utf8_seq_len(dst + start - 1, end - (start - 1)) == 0)
    dst[start - 1] = '\0';
}

int otlp_emit(otlp_t *x, const otlp_span_t *s) {
  if (x->closing || x->qlen == x->opts.max_queue) {
    x->stats.dropped++;
    return -1;
  }
  qspan_t *q = &x->q[(x->qhead + x->qlen) % x->opts.max_queue];
  copy(q->trace_id, sizeof q->trace_id, s->trace_id, NULL);
  copy(q->span_id, sizeof q->span_id, s->span_id, NULL);
  copy(q->parent_id, sizeof q->parent_id, s->parent_id, NULL);
  copy(q->name, sizeof q->name, s->name ? s->name : "span", NULL);
  copy(q->saga_id, sizeof q->saga_id, s->saga_id, &q->has_id);
  copy(q->saga_type, sizeof q->saga_type, s->saga_type, &q->has_type);
  copy(q->saga_step, sizeof q->saga_step, s->saga_step, &q->has_step);
  copy(q->saga_action, sizeof q->saga_action, s->saga_action, &q->has_action);
  copy(q->status_message, sizeof q->status_message, s->status_message, NULL);
  q->status = s->status;
  q->start_us = s->start_us;
  q->end_us = s->end_us;
  x->qlen++;
  x->stats.emitted++;
  if (x->qlen >= x->opts.max_batch)
    pump(x);
  return 0;
}

void otlp_stats(const otlp_t *x, otlp_stats_t *out) {
  *out = x->stats;
  out->queued = x->qlen;
  out->last_error = x->last_error;
}

void otlp_flush_close(otlp_t *x, uint64_t max_wait_ms,
                      void (*close_cb)(void *arg), void *arg) {
  if (!x || x->closing || x->draining)
    return;
  if (!x->busy && !x->batch && x->qlen == 0) {
    otlp_close(x, close_cb, arg);
    return;
  }
  x->draining = true;
  x->close_cb = close_cb;
  x->close_arg = arg;
  /* the flush timer now bounds the wait; a batch waiting for its retry
   * goes at once */
  uv_timer_start(&x->flush, on_drain_end, max_wait_ms, 0);
  uv_timer_stop(&x->retry);
  pump(x);
}

void otlp_close(otlp_t *x, void (*close_cb)(void *arg), void *arg) {
  if (!x || x->closing)
    return;
  x->closing = true;
  x->close_cb = close_cb;
  x->close_arg = arg;
  x->stats.dropped += x->qlen + (x->batch ? x->batch_spans : 0);
  x->qlen = 0;
  /* Our watches go first (curl may close their sockets during cleanup),
   * then curl, which calls back no more. */
  while (x->socks) {
    curl_multi_assign(x->multi, x->socks->fd, NULL);
    sock_drop(x->socks);
  }
  curl_teardown(x);
  uv_close((uv_handle_t *)&x->flush, handle_closed);
  uv_close((uv_handle_t *)&x->retry, handle_closed);
  uv_close((uv_handle_t *)&x->curl_timer, handle_closed);
}
