/* The sagad property table and its sources (options, environment, file).
 * Every value goes through prop_set(), so defaults, file lines, environment
 * variables and options share one parser and one set of bounds. This file
 * must not log or exit: it returns codes and writes messages to errbuf. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "conffile.h"
#include "conninfo.h"
#include "text.h"
#include "timetext.h"

typedef enum { T_STRING, T_INT, T_DURATION, T_BOOL, T_ENUM } ptype_t;

/* Extra check of a value's text; writes the reason to msg on failure. */
typedef int (*validator_fn)(const char *value, char *msg, size_t len);

#define F_SECRET 1u   /* never printed or echoed in errors */
#define F_REQUIRED 2u /* finalize refuses an empty value */

typedef struct {
  const char *name;
  ptype_t type;
  size_t off; /* into sagad_config_t */
  int64_t min, max; /* numbers: bounds; strings: length bounds in bytes */
  const char *def;
  const char *const *choices; /* T_ENUM, index = stored value */
  const char *desc;
  validator_fn check;
  unsigned flags;
} prop_t;

static int check_conninfo(const char *value, char *msg, size_t len);
static int check_topic(const char *value, char *msg, size_t len);
static int check_topic_or_empty(const char *value, char *msg, size_t len);
static int check_hostport(const char *value, char *msg, size_t len);
static int check_listen(const char *value, char *msg, size_t len);
static int check_hosts(const char *value, char *msg, size_t len);
static int check_endpoint(const char *value, char *msg, size_t len);

/* Order matches sagad_log_level_t in log.h and sagad_log_format_t. */
static const char *const level_names[] = {"error", "warn", "info", "debug",
                                          NULL};
static const char *const format_names[] = {"auto", "text", "json", NULL};
/* log.level.kafka: the levels, then SAGAD_LOG_INHERIT. */
static const char *const component_level_names[] = {
    "error", "warn", "info", "debug", "inherit", NULL};

#define OFF(field) offsetof(sagad_config_t, field)
#define DAY_MS (24LL * 3600 * 1000)

static const prop_t props[] = {
    {"store.conninfo", T_STRING, OFF(store_conninfo), 0, 4096, "", NULL,
     "libpq connection string or postgresql:// URI of the event store; "
     "empty uses libpq's PG* environment variables. sagad opens three "
     "sessions with it (two for appends, one for recovery reads), plus the "
     "admin endpoint's. Masked when printed. The database belongs to one "
     "deployment (topic.inbox and group.id): the first sagad claims it, and "
     "a sagad of another deployment on it refuses to start (docs/deploy.md, "
     "\"One deployment per database\")",
     check_conninfo, F_SECRET},
    {"kafka.bootstrap.servers", T_STRING, OFF(kafka_bootstrap_servers), 0,
     4096, "", NULL, "Kafka brokers to start from, host:port[,host:port...]",
     NULL, F_REQUIRED},
    {"topic.inbox", T_STRING, OFF(topic_inbox), 1, 249, "saga.inbox", NULL,
     "topic the coordinators consume: start requests and participants' "
     "replies, keyed by saga id",
     check_topic, 0},
    {"topic.notifications", T_STRING, OFF(topic_notifications), 1, 249,
     "saga.notifications", NULL,
     "topic where saga outcomes are published for starters", check_topic, 0},
    {"topic.progress", T_STRING, OFF(topic_progress), 0, 249, "", NULL,
     "topic for the progress notes (STARTED when a saga starts, STEP_DONE "
     "when a step's action has an outcome); empty sends none. May be "
     "topic.notifications, which then carries them for starters' "
     "subscribers, at the cost of one note per step for every starter to "
     "read",
     check_topic_or_empty, 0},
    {"topic.dlq", T_STRING, OFF(topic_dlq), 1, 249, "saga.dlq", NULL,
     "dead-letter topic: malformed input, with the reason", check_topic, 0},
    {"group.id", T_STRING, OFF(group_id), 1, 255, "sagad", NULL,
     "Kafka consumer group of the coordinators; instances in one group "
     "share the sagas by inbox partition",
     NULL, 0},
    {"definitions.dir", T_STRING, OFF(definitions_dir), 0, 4096, "", NULL,
     "directory holding the saga definition files (*.json)", NULL,
     F_REQUIRED},
    {"log.level", T_ENUM, OFF(log_level), 0, 0, "info", level_names,
     "lowest level logged", NULL, 0},
    {"log.level.kafka", T_ENUM, OFF(log_level_kafka), 0, 0, "inherit",
     component_level_names,
     "lowest level logged of librdkafka's own records and Kafka client "
     "errors, above or below log.level (debug records also need "
     "kafka.debug); inherit follows log.level",
     NULL, 0},
    {"log.format", T_ENUM, OFF(log_format), 0, 0, "auto", format_names,
     "text for people, json for one JSON object per line; auto picks text "
     "when stderr is a terminal and json otherwise",
     NULL, 0},
    {"log.timestamps", T_BOOL, OFF(log_timestamps), 0, 0, "true", NULL,
     "start each log line with an RFC 3339 UTC timestamp (turn off under a "
     "supervisor that stamps lines itself)",
     NULL, 0},
    {"batch.max_events", T_INT, OFF(batch_max_events), 1, 100000, "1024",
     NULL,
     "most saga transitions appended in one transaction (group commit)",
     NULL, 0},
    {"input.max_held", T_INT, OFF(input_max_held), 0, 10000000, "50000",
     NULL,
     "inbox messages held in memory, taken and not yet done (queued, or in "
     "the batch being appended); at this many sagad pauses fetching its "
     "inbox partitions until half of them are done, so a slow store bounds "
     "its memory and the rest waits in Kafka (logged when it pauses and "
     "resumes); 0 = no bound",
     NULL, 0},
    {"admin.listen", T_STRING, OFF(admin_listen), 1, 300, "127.0.0.1:8080",
     NULL,
     "host:port of the admin HTTP endpoint (metrics, health, saga reads and "
     "starts, the timeline page); port 0 picks a free port and logs it; the "
     "host is an address (127.0.0.1, 0.0.0.0, [::1]), not a name",
     check_listen, 0},
    {"admin.allowed_hosts", T_STRING, OFF(admin_allowed_hosts), 0, 1000, "",
     NULL,
     "Host header names the admin endpoint answers besides 127.0.0.1, "
     "[::1] and localhost, comma-separated (sagad.internal,ops.example), or "
     "* for any; empty: any when admin.listen is not a loopback address, "
     "none besides those when it is, so a web page the operator visits "
     "cannot reach a loopback-bound endpoint through a name it points at "
     "127.0.0.1 (DNS rebinding): others get 403",
     check_hosts, 0},
    {"shutdown.timeout_ms", T_DURATION, OFF(shutdown_timeout_ms), 100,
     600000, "10s", NULL,
     "bound on a graceful shutdown (stop input, flush appends, commit "
     "offsets) after SIGTERM or SIGINT",
     NULL, 0},
    {"outputs.cache_bytes", T_INT, OFF(output_cache_bytes), 65536,
     17179869184, "268435456", NULL,
     "bytes of step outputs kept in memory across the running sagas (they "
     "build the later steps' commands); past it, those of the sagas least "
     "recently used are dropped and read back from the store when needed "
     "(counted by saga_outputs_read_back_total): one store read, which its "
     "saga's input waits for, per step of such a saga, so size it above the "
     "outputs of the sagas that move; "
     "only sagas that wait long (days for an approval) should fall out",
     NULL, 0},
    {"payload.max_bytes", T_INT, OFF(payload_max_bytes), 1024, 67108864,
     "1048576", NULL,
     "largest saga payload accepted; larger input goes to the dead-letter "
     "topic. A command carries its payload (the input and earlier steps' "
     "outputs, docs/definitions.md) plus up to 8192 bytes, so a "
     "StartSaga may carry the smaller of this and kafka.message.max.bytes "
     "- 8192 (librdkafka's default message.max.bytes is 1000000: 991808 "
     "bytes unless it is raised, with the brokers' and topics' limits); "
     "sagad logs that limit at start when it is lower, and refuses a larger "
     "StartSaga with a REJECTED notification naming it and a dead letter "
     "(reason class input_too_large)",
     NULL, 0},
    {"stuck.default_ms", T_DURATION, OFF(stuck_default_ms), 1000, 30 * DAY_MS,
     "1h", NULL,
     "stuck threshold of the admin endpoint's list for saga_index rows "
     "written by a sagad older than their stuck_at column (every other "
     "saga is judged by its step's own stuck_after_ms)",
     NULL, 0},
    {"otlp.endpoint", T_STRING, OFF(otlp_endpoint), 0, 300, "", NULL,
     "OpenTelemetry collector taking OTLP/HTTP JSON: a base URL "
     "(http://otel-collector:4318, https://...; /v1/traces is appended to "
     "its path) or host:port meaning http://host:port; sagad sends saga, "
     "step and compensation spans there. Set, it wins over "
     "OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; "
     "empty uses them, and with neither sends none (docs/tracing.md)",
     check_endpoint, 0},
    {"start.wait_for_dependencies_ms", T_DURATION, OFF(start_wait_ms), 0,
     3600000, "0s", NULL,
     "how long sagad waits at start for PostgreSQL and Kafka to answer, "
     "retrying (for start ordering, e.g. in Kubernetes); 0 exits with "
     "status 1 at once when either is unreachable",
     NULL, 0},
};

#define NPROPS (sizeof props / sizeof props[0])

struct sagad_config_priv {
  char *origin[NPROPS];  /* NULL = default */
  char **kafka_origin;   /* parallel to cfg->kafka_props */
  size_t kafka_cap;
  rd_kafka_conf_t *scratch; /* checks passthrough properties at set time */
};

const char *sagad_config_strerror(int err) {
  switch (err) {
#define SAGAD_CONFIG_STR(name, code, text)                                     \
  case code:                                                                   \
    return text;
    SAGAD_CONFIG_ERRNO_MAP(SAGAD_CONFIG_STR)
#undef SAGAD_CONFIG_STR
  default:
    return "unknown error";
  }
}

const char *sagad_config_err_name(int err) {
  switch (err) {
#define SAGAD_CONFIG_NAME(name, code, text)                                    \
  case code:                                                                   \
    return #name;
    SAGAD_CONFIG_ERRNO_MAP(SAGAD_CONFIG_NAME)
#undef SAGAD_CONFIG_NAME
  default:
    return "UNKNOWN_CODE";
  }
}

/* Write "origin: message" to errbuf and return code. */
static int fail(char *errbuf, size_t errlen, int code, const char *origin,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(char *errbuf, size_t errlen, int code, const char *origin,
                const char *fmt, ...) {
  if (errbuf && errlen) {
    size_t n = 0;
    if (origin && *origin) {
      int w = snprintf(errbuf, errlen, "%s: ", origin);
      n = w < 0 ? 0 : (size_t)w < errlen ? (size_t)w : errlen - 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf + n, errlen - n, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* ---- validators ---- */

static int check_conninfo(const char *value, char *msg, size_t len) {
  char *err = NULL;
  PQconninfoOption *opts = PQconninfoParse(value, &err);
  if (opts) {
    int rc = 0;
    for (PQconninfoOption *o = opts; o->keyword && !rc; o++)
      if (o->val)
        rc = saga__conninfo_value_check(o->keyword, o->val, msg, len);
    PQconninfoFree(opts);
    return rc;
  }
  /* libpq quotes a fragment of the string; keep it out when the string may
   * hold a password. */
  if (!err)
    snprintf(msg, len, "out of memory parsing the connection string");
  else if (strstr(value, "password") || strchr(value, '@'))
    snprintf(msg, len, "invalid connection string (details withheld: it may "
                       "hold a password)");
  else {
    char *nl = strchr(err, '\n');
    if (nl)
      *nl = '\0';
    snprintf(msg, len, "invalid connection string: %s", err);
  }
  PQfreemem(err);
  return -1;
}

static int check_topic(const char *value, char *msg, size_t len) {
  if (saga__kafka_topic_ok(value))
    return 0;
  if (!strcmp(value, ".") || !strcmp(value, ".."))
    snprintf(msg, len, "\"%s\" is not a valid topic name", value);
  else
    snprintf(msg, len,
             "topic names use only letters, digits, '.', '_' and '-', "
             "got \"%s\"",
             value);
  return -1;
}

static int check_topic_or_empty(const char *value, char *msg, size_t len) {
  return *value ? check_topic(value, msg, len) : 0;
}

/* The port written from p to end: 1 to 5 digits making 0 to 65535, or
 * -1. */
static long port_digits(const char *p, const char *end) {
  if (p == end || end - p > 5)
    return -1;
  long port = 0;
  for (; p < end; p++) {
    if (!isdigit((unsigned char)*p))
      return -1;
    port = port * 10 + (*p - '0');
  }
  return port <= 65535 ? port : -1;
}

/* The port of host:port (the text after the last ':', up to end), or -1
 * when the host or the port is missing or the port not 0 to 65535. */
static long port_of(const char *value, const char *end) {
  const char *colon = NULL;
  for (const char *c = value; c < end; c++)
    if (*c == ':')
      colon = c;
  return colon && colon != value ? port_digits(colon + 1, end) : -1;
}

static int check_hostport(const char *value, char *msg, size_t len) {
  if (port_of(value, value + strlen(value)) < 0) {
    snprintf(msg, len, "expected host:port with a port from 0 (any free "
                       "port) to 65535, got \"%s\"",
             value);
    return -1;
  }
  return 0;
}

/* admin.allowed_hosts: "*", or comma-separated host names (letters,
 * digits, '.', '-', '_') or bracketed IPv6 addresses, no ports or
 * schemes. */
static int check_hosts(const char *value, char *msg, size_t len) {
  if (!strcmp(value, "*") || !*value)
    return 0;
  int i = 1;
  for (const char *p = value;; i++) {
    size_t n = strcspn(p, ",");
    const char *w = p;
    size_t wn = n;
    while (wn && *w == ' ')
      w++, wn--;
    while (wn && w[wn - 1] == ' ')
      wn--;
    size_t ok = 0;
    bool v6 = wn > 2 && w[0] == '[' && w[wn - 1] == ']'; /* [fd00::1] */
    if (v6)
      for (ok = 1; ok < wn - 1 && (isxdigit((unsigned char)w[ok]) ||
                                   w[ok] == ':' || w[ok] == '.');)
        ok++;
    if (v6 && ok == wn - 1)
      ok = wn;
    else if (!v6)
      while (ok < wn && (isalnum((unsigned char)w[ok]) || w[ok] == '.' ||
                         w[ok] == '-' || w[ok] == '_'))
        ok++;
    if (!wn || ok != wn) {
      snprintf(msg, len,
               "entry %d \"%.*s\": expected a host name (letters, digits, "
               ". - _) or a bracketed IPv6 address, without a port or "
               "scheme, or * alone for any",
               i, (int)(n > 100 ? 100 : n), p);
      return -1;
    }
    if (!p[n])
      return 0;
    p += n + 1;
  }
}

/* admin.listen: host:port whose host is an address, not a name (the
 * server binds it as given; a name would only fail at the start, without
 * the place it was set). IPv6 in brackets: [::1]:8080. */
static int check_listen(const char *value, char *msg, size_t len) {
  if (check_hostport(value, msg, len) != 0)
    return -1;
  const char *colon = strrchr(value, ':');
  size_t n = (size_t)(colon - value);
  const char *h = value;
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']')
    h++, n -= 2;
  /* as the server will bind it (uv_ip6_addr takes a zone: fe80::1%eth0) */
  char host[80];
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  if (n < sizeof host) {
    memcpy(host, h, n);
    host[n] = '\0';
    if (uv_ip4_addr(host, 0, &a4) == 0 || uv_ip6_addr(host, 0, &a6) == 0)
      return 0;
  }
  snprintf(msg, len,
           "\"%.*s\" is not an IPv4 or IPv6 address (names are not "
           "resolved: 127.0.0.1, 0.0.0.0 or [::1])",
           (int)(n < 64 ? n : 64), h);
  return -1;
}

/* Empty (off), an http(s) URL with a host (and a port of 1 to 65535 if it
 * names one), or host:port with a port of 1 to 65535: what the exporter
 * takes (sagad_observe_check checks the rest). */
static int check_endpoint(const char *value, char *msg, size_t len) {
  if (!*value)
    return 0;
  const char *sep = strstr(value, "://");
  if (!sep) {
    if (strchr(value, '/') || port_of(value, value + strlen(value)) < 1) {
      snprintf(msg, len,
               "expected host:port (port 1..65535) or an http:// or "
               "https:// URL, got \"%s\"",
               value);
      return -1;
    }
    return 0;
  }
  if (strncmp(value, "http://", 7) && strncmp(value, "https://", 8)) {
    snprintf(msg, len,
             "only http:// and https:// URLs are supported, got "
             "\"%s\"",
             value);
    return -1;
  }
  /* the authority: after "://", up to the path, query or fragment */
  const char *host = sep + 3, *end = host + strcspn(host, "/?#");
  if (memchr(host, '@', (size_t)(end - host))) {
    snprintf(msg, len,
             "a user or password in the URL is not accepted (give "
             "credentials in OTEL_EXPORTER_OTLP_HEADERS)");
    return -1;
  }
  const char *after_host = host;
  if (*host == '[') { /* [IPv6] */
    const char *close = memchr(host, ']', (size_t)(end - host));
    after_host = close ? close + 1 : end;
  } else {
    while (after_host < end && *after_host != ':')
      after_host++;
  }
  if (after_host == host || (*host == '[' && after_host == host + 2)) {
    snprintf(msg, len, "\"%s\" has no host", value);
    return -1;
  }
  if (after_host < end &&
      (*after_host != ':' || port_digits(after_host + 1, end) < 1)) {
    snprintf(msg, len, "\"%s\": the port must be 1..65535", value);
    return -1;
  }
  return 0;
}

/* ---- parsing typed values ---- */

static int parse_int(const char *s, int64_t *out) {
  if (!*s || isspace((unsigned char)*s))
    return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end)
    return -1;
  *out = v;
  return 0;
}

static int parse_bool(const char *s, bool *out) {
  static const char *const yes[] = {"true", "on", "yes", "1"};
  static const char *const no[] = {"false", "off", "no", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (!strcmp(s, yes[i])) {
      *out = true;
      return 0;
    }
    if (!strcmp(s, no[i])) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

static void join_choices(const char *const *choices, char *buf, size_t len) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; choices[i] && n < len; i++) {
    int w = snprintf(buf + n, len - n, "%s%s", i ? ", " : "", choices[i]);
    if (w < 0)
      break;
    n += (size_t)w;
  }
}

/* ---- names and hints ---- */

static const prop_t *find_prop(const char *name) {
  for (size_t i = 0; i < NPROPS; i++)
    if (!strcmp(props[i].name, name))
      return &props[i];
  return NULL;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return SIZE_MAX;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (tolower((unsigned char)a[i - 1]) !=
                            tolower((unsigned char)b[j - 1]));
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

static void env_name(const char *prop, char *buf, size_t len) {
  size_t n = (size_t)snprintf(buf, len, "SAGAD_");
  for (const char *p = prop; *p && n + 1 < len; p++)
    buf[n++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
  buf[n < len ? n : len - 1] = '\0';
}

/* The known name nearest to `name` (as a property, or as an environment
 * variable when env is true), or NULL when none is close. */
static const char *nearest(const char *name, bool env, char *buf,
                           size_t len) {
  size_t best = SIZE_MAX;
  const char *pick = NULL;
  char cand[128];
  for (size_t i = 0; i < NPROPS; i++) {
    const char *c = props[i].name;
    if (env) {
      env_name(c, cand, sizeof cand);
      c = cand;
    }
    size_t d = edit_distance(name, c);
    size_t limit = strlen(c) / 3 > 2 ? strlen(c) / 3 : 2;
    if (d <= limit && d < best) {
      best = d;
      snprintf(buf, len, "%s", c);
      pick = buf;
    }
  }
  return pick;
}

static int unknown(char *errbuf, size_t errlen, const char *origin,
                   const char *name, bool env) {
  char hint[128];
  if (nearest(name, env, hint, sizeof hint))
    return fail(errbuf, errlen, SAGAD_CONFIG_UNKNOWN, origin,
                "unknown property \"%s\" (did you mean \"%s\"?)", name, hint);
  return fail(errbuf, errlen, SAGAD_CONFIG_UNKNOWN, origin,
              "unknown property \"%s\" (sagad --help lists them)", name);
}

/* ---- setting values ---- */

static int set_origin(char **slot, const char *origin) {
  char *o = origin ? strdup(origin) : NULL;
  if (origin && !o)
    return SAGAD_CONFIG_NOMEM;
  free(*slot);
  *slot = o;
  return 0;
}

static int prop_set(sagad_config_t *cfg, const prop_t *p, const char *value,
                    const char *origin, char *errbuf, size_t errlen) {
  char msg[512];
  char *base = (char *)cfg + p->off;
  int64_t num = 0;
  bool b = false;
  int idx = -1;
  switch (p->type) {
  case T_STRING: {
    size_t len = strlen(value);
    if ((int64_t)len < p->min || (int64_t)len > p->max) {
      if (p->min > 0 && len == 0)
        return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                    "%s: must not be empty", p->name);
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                  "%s: must be at most %lld bytes long, got %zu", p->name,
                  (long long)p->max, len);
    }
    break;
  }
  case T_INT:
    if (parse_int(value, &num) != 0)
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                  "%s: must be an integer, got \"%s\"", p->name, value);
    if (num < p->min || num > p->max)
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                  "%s: must be between %lld and %lld, got %lld", p->name,
                  (long long)p->min, (long long)p->max, (long long)num);
    break;
  case T_DURATION:
    if (saga__duration_parse(value, &num) != SAGA_DURATION_OK)
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin, "%s: %s",
                  p->name, saga__duration_explain(value, msg, sizeof msg));
    if (num < p->min || num > p->max) {
      char lo[32], hi[32];
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                  "%s: must be between %s and %s, got %s", p->name,
                  saga__duration_format(lo, sizeof lo, p->min),
                  saga__duration_format(hi, sizeof hi, p->max), value);
    }
    break;
  case T_BOOL:
    if (parse_bool(value, &b) != 0)
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                  "%s: must be true or false, got \"%s\"", p->name, value);
    break;
  case T_ENUM:
    for (int i = 0; p->choices[i]; i++)
      if (!strcmp(p->choices[i], value))
        idx = i;
    if (idx < 0) {
      char list[128];
      join_choices(p->choices, list, sizeof list);
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                  "%s: must be one of %s, got \"%s\"", p->name, list, value);
    }
    break;
  }
  if (p->check && p->check(value, msg, sizeof msg) != 0)
    return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin, "%s: %s",
                p->name, msg);

  char *dup = NULL;
  if (p->type == T_STRING && !(dup = strdup(value)))
    return fail(errbuf, errlen, SAGAD_CONFIG_NOMEM, origin, "out of memory");
  if (cfg->priv && set_origin(&cfg->priv->origin[p - props], origin) != 0) {
    free(dup);
    return fail(errbuf, errlen, SAGAD_CONFIG_NOMEM, origin, "out of memory");
  }
  switch (p->type) {
  case T_STRING:
    free(*(char **)base);
    *(char **)base = dup;
    break;
  case T_INT:
  case T_DURATION:
    *(int64_t *)base = num;
    break;
  case T_BOOL:
    *(bool *)base = b;
    break;
  case T_ENUM:
    *(int *)base = idx;
    break;
  }
  return 0;
}

static int kafka_set(sagad_config_t *cfg, const char *kname, const char *value,
                     const char *origin, char *errbuf, size_t errlen) {
  sagad_config_priv_t *pv = cfg->priv;
  if (!strcmp(kname, "group.id"))
    return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                "kafka.group.id: set group.id instead");
  /* sagad stores and commits each input's offset once its outcome is
   * durable: stored by librdkafka at consumption, an input not yet handled
   * would be committed (lost at a restart); and with the automatic store
   * on, librdkafka refuses sagad's own, so nothing was ever committed */
  if (!strcmp(kname, "enable.auto.offset.store") ||
      !strcmp(kname, "enable.auto.commit"))
    return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                "kafka.%s: sagad commits each input's offset itself once "
                "its outcome is durable; this property cannot be set",
                kname);
  if (!*kname)
    return fail(errbuf, errlen, SAGAD_CONFIG_UNKNOWN, origin,
                "kafka.: missing librdkafka property name");
  if (!pv->scratch && !(pv->scratch = rd_kafka_conf_new()))
    return fail(errbuf, errlen, SAGAD_CONFIG_NOMEM, origin, "out of memory");
  char kerr[512];
  rd_kafka_conf_res_t res =
      rd_kafka_conf_set(pv->scratch, kname, value, kerr, sizeof kerr);
  if (res == RD_KAFKA_CONF_UNKNOWN)
    return fail(errbuf, errlen, SAGAD_CONFIG_UNKNOWN, origin,
                "kafka.%s: librdkafka has no such property", kname);
  if (res != RD_KAFKA_CONF_OK)
    return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin, "kafka.%s: %s",
                kname, kerr);
  /* A file (ssl.key.location, ssl.ca.location, ...) librdkafka reads only
   * when the client is created, after --check-config would have passed. */
  size_t kl = strlen(kname);
  if (kl > 9 && !strcmp(kname + kl - 9, ".location") && *value &&
      strcmp(value, "probe") && access(value, R_OK) != 0)
    return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, origin,
                "kafka.%s: cannot read \"%s\": %s", kname, value,
                strerror(errno));

  size_t i = 0;
  while (i < cfg->kafka_nprops && strcmp(cfg->kafka_props[i].name, kname))
    i++;
  char *v = strdup(value);
  char *o = origin ? strdup(origin) : NULL;
  char *n = i == cfg->kafka_nprops ? strdup(kname) : NULL;
  if (!v || (origin && !o) || (i == cfg->kafka_nprops && !n))
    goto nomem;
  if (i == cfg->kafka_nprops) {
    if (cfg->kafka_nprops == pv->kafka_cap) {
      size_t cap = pv->kafka_cap ? pv->kafka_cap * 2 : 8;
      sagad_kafka_prop_t *np =
          realloc(cfg->kafka_props, cap * sizeof *cfg->kafka_props);
      if (!np)
        goto nomem;
      cfg->kafka_props = np;
      char **no = realloc(pv->kafka_origin, cap * sizeof *pv->kafka_origin);
      if (!no)
        goto nomem;
      pv->kafka_origin = no;
      pv->kafka_cap = cap;
    }
    cfg->kafka_props[i].name = n;
    cfg->kafka_props[i].value = NULL;
    pv->kafka_origin[i] = NULL;
    cfg->kafka_nprops++;
  }
  free(cfg->kafka_props[i].value);
  cfg->kafka_props[i].value = v;
  free(pv->kafka_origin[i]);
  pv->kafka_origin[i] = o;
  return 0;
nomem:
  free(v);
  free(o);
  free(n);
  return fail(errbuf, errlen, SAGAD_CONFIG_NOMEM, origin, "out of memory");
}

int sagad_config_set(sagad_config_t *cfg, const char *name, const char *value,
                     const char *origin, char *errbuf, size_t errlen) {
  const prop_t *p = find_prop(name);
  if (p)
    return prop_set(cfg, p, value, origin, errbuf, errlen);
  if (!strncmp(name, "kafka.", 6))
    return kafka_set(cfg, name + 6, value, origin, errbuf, errlen);
  return unknown(errbuf, errlen, origin, name, false);
}

/* ---- life cycle ---- */

sagad_config_t *sagad_config_new(void) {
  sagad_config_t *cfg = calloc(1, sizeof *cfg);
  if (!cfg)
    return NULL;
  for (size_t i = 0; i < NPROPS; i++) {
    /* Defaults go through the same parser as every other source. */
    if (prop_set(cfg, &props[i], props[i].def, NULL, NULL, 0) != 0) {
      sagad_config_free(cfg);
      return NULL;
    }
  }
  cfg->priv = calloc(1, sizeof *cfg->priv);
  if (!cfg->priv) {
    sagad_config_free(cfg);
    return NULL;
  }
  return cfg;
}

void sagad_config_free(sagad_config_t *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < NPROPS; i++) {
    if (props[i].type == T_STRING)
      free(*(char **)((char *)cfg + props[i].off));
    if (cfg->priv)
      free(cfg->priv->origin[i]);
  }
  for (size_t i = 0; i < cfg->kafka_nprops; i++) {
    free(cfg->kafka_props[i].name);
    free(cfg->kafka_props[i].value);
    free(cfg->priv->kafka_origin[i]);
  }
  free(cfg->kafka_props);
  if (cfg->priv) {
    free(cfg->priv->kafka_origin);
    if (cfg->priv->scratch)
      rd_kafka_conf_destroy(cfg->priv->scratch);
    free(cfg->priv);
  }
  free(cfg);
}

/* ---- the config file ---- */

typedef struct {
  sagad_config_t *cfg;
  int rc;
} file_ctx_t;

static int file_line(void *arg, const char *name, const char *value,
                     const char *where, char *errbuf, size_t errlen) {
  file_ctx_t *c = arg;
  return c->rc = sagad_config_set(c->cfg, name, value, where, errbuf, errlen);
}

int sagad_config_load_file(sagad_config_t *cfg, const char *path,
                           char *errbuf, size_t errlen) {
  file_ctx_t c = {cfg, 0};
  switch (saga__conf_read(path, file_line, &c, errbuf, errlen)) {
  case SAGA_CONF_OK:
    return 0;
  case SAGA_CONF_EFILE:
    return SAGAD_CONFIG_FILE;
  case SAGA_CONF_ESYNTAX:
    return SAGAD_CONFIG_SYNTAX;
  case SAGA_CONF_ESTOP:
    break;
  }
  return c.rc;
}

/* Whether key=value is one of the variables Kubernetes gives a pod for
 * each Service of its namespace (enableServiceLinks, on by default): for a
 * Service named sagad or sagad-admin, SAGAD_SERVICE_HOST,
 * SAGAD_ADMIN_SERVICE_PORT[_NAME], SAGAD_PORT=tcp://ADDR:PORT and
 * SAGAD_PORT_8080_TCP[_PROTO|_PORT|_ADDR]. They name no property, and
 * refusing them would stop every pod started after such a Service. */
static bool service_link(const char *key, const char *value) {
  size_t n = strlen(key);
  if ((n > 13 && !strcmp(key + n - 13, "_SERVICE_HOST")) ||
      (n > 13 && !strcmp(key + n - 13, "_SERVICE_PORT")) ||
      strstr(key, "_SERVICE_PORT_"))
    return true;
  if (n > 5 && !strcmp(key + n - 5, "_PORT") &&
      (!strncmp(value, "tcp://", 6) || !strncmp(value, "udp://", 6) ||
       !strncmp(value, "sctp://", 7)))
    return true;
  /* ..._PORT_<number>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR] */
  for (const char *p = strstr(key, "_PORT_"); p; p = strstr(p + 1, "_PORT_")) {
    const char *d = p + 6, *q = d;
    while (*q >= '0' && *q <= '9')
      q++;
    if (q == d)
      continue;
    static const char *const protos[] = {"_TCP", "_UDP", "_SCTP"};
    static const char *const tails[] = {"", "_PROTO", "_PORT", "_ADDR"};
    for (size_t i = 0; i < 3; i++) {
      size_t pl = strlen(protos[i]);
      if (strncmp(q, protos[i], pl))
        continue;
      for (size_t t = 0; t < 4; t++)
        if (!strcmp(q + pl, tails[t]))
          return true;
    }
  }
  return false;
}

/* ---- the environment ---- */

int sagad_config_load_env(sagad_config_t *cfg, const char *const *envp,
                          char *errbuf, size_t errlen) {
  char key[256], origin[300], name[256], want[128];
  for (size_t i = 0; envp && envp[i]; i++) {
    const char *kv = envp[i];
    const char *eq = strchr(kv, '=');
    if (strncmp(kv, "SAGAD_", 6) || !eq || (size_t)(eq - kv) >= sizeof key)
      continue;
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    const char *value = eq + 1;
    if (!strcmp(key, "SAGAD_CONFIG") || service_link(key, value))
      continue;
    snprintf(origin, sizeof origin, "environment %s", key);
    const prop_t *p = NULL;
    for (size_t j = 0; j < NPROPS && !p; j++) {
      env_name(props[j].name, want, sizeof want);
      if (!strcmp(want, key))
        p = &props[j];
    }
    int rc;
    if (p) {
      rc = prop_set(cfg, p, value, origin, errbuf, errlen);
    } else if (!strncmp(key, "SAGAD_KAFKA_", 12)) {
      size_t n = 0;
      for (const char *c = key + 12; *c && n + 1 < sizeof name; c++)
        name[n++] = *c == '_' ? '.' : (char)tolower((unsigned char)*c);
      name[n] = '\0';
      rc = kafka_set(cfg, name, value, origin, errbuf, errlen);
    } else {
      char hint[128];
      if (nearest(key, true, hint, sizeof hint))
        rc = fail(errbuf, errlen, SAGAD_CONFIG_UNKNOWN, origin,
                  "unknown variable (did you mean %s?)", hint);
      else
        rc = fail(errbuf, errlen, SAGAD_CONFIG_UNKNOWN, origin,
                  "unknown variable (sagad --help lists the properties)");
    }
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- cross-field rules ---- */

/* Where property name was set ("FILE:LINE", "option --x", ...), or NULL
 * when it has its default. */
static const char *origin_of(const sagad_config_t *cfg, const char *name) {
  const prop_t *p = find_prop(name);
  return p && cfg->priv ? cfg->priv->origin[p - props] : NULL;
}

/* libpq's PG* variables (PGSSLMODE, PGPORT, ...) fill what conninfo
 * leaves out, and libpq reads their values only when it connects: a bad
 * one passed --check-config, and a start failed on it at connect (exit 1,
 * the variable not named; retried for ever with
 * start.wait_for_dependencies_ms). Checked as conninfo's own values are. */
static int check_pg_environment(const char *conninfo, char *errbuf,
                                size_t errlen) {
  PQconninfoOption *given = PQconninfoParse(conninfo, NULL);
  PQconninfoOption *defs = PQconndefaults();
  int rc = 0;
  for (PQconninfoOption *o = defs; o && o->keyword && !rc; o++) {
    const char *env = o->envvar ? getenv(o->envvar) : NULL;
    if (!env || !o->val || strcmp(env, o->val))
      continue; /* not from the environment */
    bool overridden = false;
    for (PQconninfoOption *g = given; g && g->keyword; g++)
      if (!strcmp(g->keyword, o->keyword) && g->val)
        overridden = true;
    char why[256];
    if (!overridden &&
        saga__conninfo_value_check(o->keyword, o->val, why, sizeof why)) {
      char where[96];
      snprintf(where, sizeof where, "environment %s", o->envvar);
      rc = fail(errbuf, errlen, SAGAD_CONFIG_INVALID, where,
                "%s (libpq reads it for store.conninfo's %s)", why,
                o->keyword);
    }
  }
  PQconninfoFree(defs);
  PQconninfoFree(given);
  return rc;
}

int sagad_config_finalize(sagad_config_t *cfg, char *errbuf, size_t errlen) {
  char env[128];
  for (size_t i = 0; i < NPROPS; i++) {
    const prop_t *p = &props[i];
    if (!(p->flags & F_REQUIRED) || **(char **)((char *)cfg + p->off))
      continue;
    /* set, but to nothing: where (an empty variable overrides the file's
     * line, which the message would otherwise send one to) */
    const char *from = cfg->priv ? cfg->priv->origin[i] : NULL;
    if (from)
      return fail(errbuf, errlen, SAGAD_CONFIG_MISSING, from,
                  "%s is empty: it must be set", p->name);
    env_name(p->name, env, sizeof env);
    return fail(errbuf, errlen, SAGAD_CONFIG_MISSING, NULL,
                "%s: must be set (--%s=VALUE, %s or a config file line)",
                p->name, p->name, env);
  }
  struct stat st;
  /* named where it was set: a file's line, a variable, an option */
  const char *dir_from = origin_of(cfg, "definitions.dir");
  if (stat(cfg->definitions_dir, &st) != 0)
    return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, dir_from,
                "definitions.dir: could not access \"%s\": %s",
                cfg->definitions_dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, dir_from,
                "definitions.dir: \"%s\" is not a directory",
                cfg->definitions_dir);
  /* topic.progress (last) may be topic.notifications, or empty */
  const char *topics[4][2] = {{"topic.inbox", cfg->topic_inbox},
                              {"topic.notifications", cfg->topic_notifications},
                              {"topic.dlq", cfg->topic_dlq},
                              {"topic.progress", cfg->topic_progress}};
  for (int a = 0; a < 4; a++)
    for (int b = a + 1; b < 4; b++) {
      if (strcmp(topics[a][1], topics[b][1]) || !*topics[b][1] ||
          (a == 1 && b == 3))
        continue;
      /* name the one that was set, where it was set (the other may be
       * its default) */
      const char *oa = origin_of(cfg, topics[a][0]);
      const char *ob = origin_of(cfg, topics[b][0]);
      int x = ob || !oa ? b : a, y = x == b ? a : b;
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, x == b ? ob : oa,
                  "%s: must differ from %s, both are \"%s\"", topics[x][0],
                  topics[y][0], topics[a][1]);
    }
  return check_pg_environment(cfg->store_conninfo, errbuf, errlen);
}

/* ---- the command line ---- */

typedef struct {
  const char *name;
  const char *value;
  char origin[300];
} pending_t;

static bool is_bool_prop(const char *name) {
  const prop_t *p = find_prop(name);
  return p && p->type == T_BOOL;
}

/* Split "name=value" (from --name=value or --set name=value) into *pend. */
static int split_setting(const char *arg, pending_t *pend, char *buf,
                         size_t buflen, bool via_set) {
  const char *eq = strchr(arg, '=');
  size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
  if (n == 0 || n >= buflen)
    return -1;
  memcpy(buf, arg, n);
  buf[n] = '\0';
  pend->name = buf;
  pend->value = eq ? eq + 1 : NULL;
  snprintf(pend->origin, sizeof pend->origin, "option --%s%s",
           via_set ? "set " : "", buf);
  return 0;
}

int sagad_config_load(sagad_config_t *cfg, int argc, const char *const *argv,
                      const char *const *envp, sagad_mode_t *mode, char *errbuf,
                      size_t errlen) {
  int rc = 0;
  const char *file = NULL;
  int nset = 0;
  pending_t *pend = calloc((size_t)(argc > 0 ? argc : 1), sizeof *pend);
  char *names = malloc((size_t)(argc > 0 ? argc : 1) * 256);
  if (!pend || !names) {
    rc = fail(errbuf, errlen, SAGAD_CONFIG_NOMEM, NULL, "out of memory");
    goto out;
  }
  *mode = SAGAD_MODE_RUN;
  int first_err = 0;
  char err1[1024] = "";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *setting = NULL;
    bool via_set = false;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      *mode = SAGAD_MODE_HELP;
      goto out; /* --help wins over anything else on the line */
    } else if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
      *mode = SAGAD_MODE_VERSION;
    } else if (!strcmp(a, "--config-reference")) {
      *mode = SAGAD_MODE_REFERENCE;
    } else if (!strcmp(a, "--check-config") || !strcmp(a, "--migrate") ||
               !strcmp(a, "--probe")) {
      sagad_mode_t m = a[2] == 'c'   ? SAGAD_MODE_CHECK
                       : a[2] == 'm' ? SAGAD_MODE_MIGRATE
                                     : SAGAD_MODE_PROBE;
      if (*mode == SAGAD_MODE_RUN)
        *mode = m;
      else if ((*mode == SAGAD_MODE_CHECK || *mode == SAGAD_MODE_MIGRATE ||
                *mode == SAGAD_MODE_PROBE) &&
               *mode != m && !first_err)
        first_err = fail(err1, sizeof err1, SAGAD_CONFIG_SYNTAX, NULL,
                         "--check-config, --migrate and --probe cannot be "
                         "combined: give one");
    } else if (!strcmp(a, "--config") || !strcmp(a, "--set")) {
      if (i + 1 >= argc) {
        if (!first_err)
          first_err = fail(err1, sizeof err1, SAGAD_CONFIG_SYNTAX, NULL,
                           "option %s needs an argument", a);
        continue;
      }
      if (a[2] == 'c')
        file = argv[++i];
      else
        setting = argv[++i], via_set = true;
    } else if (!strncmp(a, "--config=", 9)) {
      file = a + 9;
    } else if (!strncmp(a, "--set=", 6)) {
      setting = a + 6, via_set = true;
    } else if (!strncmp(a, "--", 2)) {
      setting = a + 2;
    } else if (!first_err) {
      first_err = fail(err1, sizeof err1, SAGAD_CONFIG_SYNTAX, NULL,
                       "unexpected argument \"%s\" (options look like "
                       "--name=value)",
                       a);
    }
    if (!setting)
      continue;
    pending_t *p = &pend[nset];
    if (split_setting(setting, p, names + (size_t)nset * 256, 256,
                      via_set) != 0) {
      if (!first_err)
        first_err = fail(err1, sizeof err1, SAGAD_CONFIG_SYNTAX, NULL,
                         "option \"%s\": expected name=value", a);
      continue;
    }
    if (!p->value) {
      if (is_bool_prop(p->name)) {
        p->value = "true";
      } else if (!find_prop(p->name) && strncmp(p->name, "kafka.", 6)) {
        if (!first_err) {
          char hint[128];
          if (nearest(p->name, false, hint, sizeof hint))
            first_err = fail(err1, sizeof err1, SAGAD_CONFIG_UNKNOWN, NULL,
                             "unknown option \"%s\" (did you mean --%s?)", a,
                             hint);
          else
            first_err = fail(err1, sizeof err1, SAGAD_CONFIG_UNKNOWN, NULL,
                             "unknown option \"%s\" (see sagad --help)", a);
        }
        continue;
      } else {
        if (!first_err)
          first_err = fail(err1, sizeof err1, SAGAD_CONFIG_SYNTAX, NULL,
                           "option %s needs a value: --%s=VALUE", a, p->name);
        continue;
      }
    }
    nset++;
  }
  if (*mode == SAGAD_MODE_VERSION || *mode == SAGAD_MODE_REFERENCE)
    goto out;
  if (first_err) {
    rc = fail(errbuf, errlen, first_err, NULL, "%s", err1);
    goto out;
  }
  /* Lowest precedence first: each later source overrides. */
  if (!file && envp)
    for (size_t i = 0; envp[i]; i++)
      if (!strncmp(envp[i], "SAGAD_CONFIG=", 13))
        file = envp[i] + 13;
  if (file && (rc = sagad_config_load_file(cfg, file, errbuf, errlen)))
    goto out;
  if ((rc = sagad_config_load_env(cfg, envp, errbuf, errlen)))
    goto out;
  for (int i = 0; i < nset; i++)
    if ((rc = sagad_config_set(cfg, pend[i].name, pend[i].value,
                               pend[i].origin, errbuf, errlen)))
      goto out;
  /* --migrate reads store.conninfo alone, --probe admin.listen alone: a
   * migration job or a health check needs no brokers or definitions */
  if (*mode != SAGAD_MODE_MIGRATE && *mode != SAGAD_MODE_PROBE)
    rc = sagad_config_finalize(cfg, errbuf, errlen);
out:
  free(pend);
  free(names);
  return rc;
}

/* ---- printing ---- */

static bool kafka_is_secret(const char *name) {
  return strstr(name, "password") || strstr(name, "secret") ||
         strstr(name, "key.pem") || strstr(name, "oauthbearer.config");
}

static void put_conninfo_value(FILE *out, const char *v) {
  fputc('\'', out);
  for (; *v; v++) {
    if (*v == '\'' || *v == '\\')
      fputc('\\', out);
    fputc(*v, out);
  }
  fputc('\'', out);
}

/* A keyword value libpq reads back only when quoted: empty, or holding a
 * quote, a backslash, any byte libpq's parser takes for white space
 * (isspace: also \f, \v, \r, \n) or any other byte outside printable
 * ASCII, so the written form always parses to the same value. */
static bool conninfo_needs_quotes(const char *v) {
  if (!*v)
    return true;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++)
    if (*p <= ' ' || *p >= 0x7f || *p == '\'' || *p == '\\')
      return true;
  return false;
}

char *sagad_config_mask_conninfo(const char *conninfo, char *buf, size_t len) {
  if (!len)
    return buf;
  char *err = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
  PQfreemem(err);
  if (!opts) {
    snprintf(buf, len, "********");
    return buf;
  }
  char *mem = NULL;
  size_t memlen = 0;
  FILE *f = open_memstream(&mem, &memlen);
  if (!f) {
    PQconninfoFree(opts);
    snprintf(buf, len, "********");
    return buf;
  }
  bool first = true;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val)
      continue;
    fprintf(f, "%s%s=", first ? "" : " ", o->keyword);
    first = false;
    if (!strcmp(o->keyword, "password"))
      fputs("********", f);
    else if (conninfo_needs_quotes(o->val))
      put_conninfo_value(f, o->val);
    else
      fputs(o->val, f);
  }
  fclose(f);
  PQconninfoFree(opts);
  snprintf(buf, len, "%s", mem ? mem : "");
  free(mem);
  return buf;
}

/* Write value so that sagad_config_load_file reads it back unchanged. */
static void put_value(FILE *out, const char *v) {
  size_t n = strlen(v);
  if (n && !isspace((unsigned char)v[0]) &&
      !isspace((unsigned char)v[n - 1]) && v[0] != '"') {
    fputs(v, out);
    return;
  }
  fputc('"', out);
  for (; *v; v++) {
    if (*v == '"' || *v == '\\')
      fputc('\\', out);
    fputc(*v, out);
  }
  fputc('"', out);
}

static void prop_text(const sagad_config_t *cfg, const prop_t *p, char *buf,
                      size_t len) {
  const char *base = (const char *)cfg + p->off;
  switch (p->type) {
  case T_STRING:
    if (p->flags & F_SECRET)
      sagad_config_mask_conninfo(*(char *const *)base, buf, len);
    else
      snprintf(buf, len, "%s", *(char *const *)base);
    break;
  case T_INT:
    snprintf(buf, len, "%lld", (long long)*(const int64_t *)base);
    break;
  case T_DURATION:
    saga__duration_format(buf, len, *(const int64_t *)base);
    break;
  case T_BOOL:
    snprintf(buf, len, "%s", *(const bool *)base ? "true" : "false");
    break;
  case T_ENUM:
    snprintf(buf, len, "%s", p->choices[*(const int *)base]);
    break;
  }
}

void sagad_config_write(const sagad_config_t *cfg, FILE *out) {
  char buf[4200];
  fputs("# effective sagad configuration (secrets masked)\n", out);
  for (size_t i = 0; i < NPROPS; i++) {
    const char *origin = cfg->priv ? cfg->priv->origin[i] : NULL;
    if (origin)
      fprintf(out, "# from %s\n", origin);
    prop_text(cfg, &props[i], buf, sizeof buf);
    fprintf(out, "%s = ", props[i].name);
    put_value(out, buf);
    fputc('\n', out);
  }
  for (size_t i = 0; i < cfg->kafka_nprops; i++) {
    const sagad_kafka_prop_t *k = &cfg->kafka_props[i];
    fprintf(out, "# from %s\nkafka.%s = ", cfg->priv->kafka_origin[i],
            k->name);
    put_value(out, kafka_is_secret(k->name) ? "********" : k->value);
    fputc('\n', out);
  }
}

static const char *type_name(ptype_t t) {
  static const char *const names[] = {"string", "integer", "duration", "bool",
                                      "enum"};
  return names[t];
}

void sagad_config_write_usage(FILE *out, const char *argv0) {
  fprintf(out,
          "usage: %s [options]\n"
          "\n"
          "The saga coordinator daemon. Runs until SIGTERM or SIGINT, then "
          "shuts down\ngracefully. SIGHUP is logged and ignored: the "
          "configuration is read at start\nonly.\n"
          "\n"
          "options:\n"
          "  --config FILE         read name = value lines from FILE "
          "(default: $SAGAD_CONFIG)\n"
          "  --NAME=VALUE          set a property (overrides environment "
          "and file)\n"
          "  --set NAME=VALUE      the same\n"
          "  --check-config        validate, print the effective "
          "configuration, exit\n"
          "  --migrate             create or update the event store's and "
          "sagad's tables\n"
          "                        in store.conninfo, exit (a role that may "
          "create tables;\n"
          "                        sagad itself then runs as a member of "
          "es_writer)\n"
          "  --probe               GET /healthz from the admin endpoint at "
          "admin.listen\n"
          "                        (a wildcard host asked on loopback): "
          "exit 0 when it\n"
          "                        answers 200 within 3 s, else 1 (a "
          "container's health\n"
          "                        check)\n"
          "  --config-reference    print the configuration reference "
          "(Markdown), exit\n"
          "  --version, -V         print the version, exit\n"
          "  --help, -h            print this help, exit\n"
          "\n"
          "Precedence: options > environment (SAGAD_<NAME>, e.g. "
          "SAGAD_LOG_LEVEL) > file >\ndefaults. kafka.<property> passes any "
          "librdkafka property through.\n"
          "\n"
          "properties:\n",
          argv0);
  for (size_t i = 0; i < NPROPS; i++)
    fprintf(out, "  %-24s %s%s%s%s\n", props[i].name,
            type_name(props[i].type), *props[i].def ? ", default " : "",
            props[i].def, props[i].flags & F_REQUIRED ? ", required" : "");
  fputs("\nexit status: 0 clean stop, 1 runtime failure, 2 bad configuration "
        "or usage\n",
        out);
}

void sagad_config_write_reference(FILE *out) {
  char env[128], allowed[256];
  fputs(
      "# sagad configuration reference\n"
      "\n"
      "<!-- Generated by `sagad --config-reference` from the property table "
      "in\n     coordinator/daemon/config.c. Do not edit: a unit test fails when "
      "this page and\n     the table differ. -->\n"
      "\n"
      "Every property can be set three ways. From highest precedence to "
      "lowest:\n"
      "\n"
      "1. a command-line option: `--name=value` or `--set name=value`;\n"
      "2. an environment variable: `SAGAD_` and the name upper-cased with "
      "dots and\n   dashes as underscores (`log.level` -> "
      "`SAGAD_LOG_LEVEL`);\n"
      "3. a config file given by `--config FILE` or `SAGAD_CONFIG`: one "
      "`name = value`\n   per line, `#` starts a comment line. There are "
      "no inline comments, so `#`\n   may appear in a value; a value in "
      "double quotes keeps leading or trailing\n   spaces (`\\\"` and "
      "`\\\\` escape inside quotes).\n"
      "\n"
      "Then the default applies. Each value is checked when it is set and "
      "errors say\nwhere it came from (`sagad.conf:12: batch.max_events: "
      "must be between 1 and\n100000, got 0`); unknown names are errors "
      "with a hint of the nearest known one.\n"
      "The variables Kubernetes sets for a Service whose name starts with "
      "`sagad`\n(`SAGAD_SERVICE_HOST`, `SAGAD_PORT=tcp://...`, "
      "`SAGAD_PORT_8080_TCP_ADDR`, ...)\nare skipped, not taken for "
      "unknown names.\n"
      "`sagad --check-config` validates everything a start checks before "
      "it connects\n(these values, with the `store.conninfo` settings "
      "libpq reads only when it\nconnects, the `PG*` variables it reads for "
      "what `store.conninfo` leaves out,\nthe files `kafka.*.location` "
      "names, every definition file,\n`admin.listen`, `otlp.endpoint`, "
      "the `OTEL_*` variables of docs/tracing.md and\nthe Kafka clients "
      "made from the `kafka.*` properties without a broker),\nwith the same "
      "messages, and prints the effective configuration with secrets\n"
      "masked; it exits 2 when a start would fail on any of them.\n"
      "`sagad --migrate` creates or updates the event store's and sagad's "
      "tables in\n`store.conninfo` and exits (0 done or up to date, 1 "
      "failed): run it as a role\nthat may create tables, and sagad itself "
      "as a member of `es_writer`, which\nneeds no such right once the "
      "schema is up to date (docs/deploy.md).\n"
      "\n"
      "Durations are a number and a unit, `ms`, `s`, `m` (minutes), `h` or "
      "`d` (days),\nor several (`250ms`, `30s`, `1h30m`, `2d`), the same "
      "syntax as sagactl's; a\nbare number is refused, as it has no unit "
      "(names ending in `_ms` do not make\none). Booleans take "
      "`true`/`false` (also `on`/`off`, `yes`/`no`, `1`/`0`).\n"
      "\n"
      "## Properties\n"
      "\n"
      "| name | type | default | allowed | description |\n"
      "| --- | --- | --- | --- | --- |\n",
      out);
  for (size_t i = 0; i < NPROPS; i++) {
    const prop_t *p = &props[i];
    switch (p->type) {
    case T_ENUM:
      join_choices(p->choices, allowed, sizeof allowed);
      break;
    case T_BOOL:
      snprintf(allowed, sizeof allowed, "true, false");
      break;
    case T_STRING:
      if (p->flags & F_REQUIRED)
        snprintf(allowed, sizeof allowed, "required");
      else if (p->min > 0)
        snprintf(allowed, sizeof allowed, "%lld to %lld bytes",
                 (long long)p->min, (long long)p->max);
      else
        snprintf(allowed, sizeof allowed, "up to %lld bytes",
                 (long long)p->max);
      break;
    case T_DURATION: {
      char lo[32], hi[32];
      snprintf(allowed, sizeof allowed, "%s to %s",
               saga__duration_format(lo, sizeof lo, p->min),
               saga__duration_format(hi, sizeof hi, p->max));
      break;
    }
    default:
      snprintf(allowed, sizeof allowed, "%lld to %lld", (long long)p->min,
               (long long)p->max);
    }
    env_name(p->name, env, sizeof env);
    fprintf(out, "| `%s` | %s | %s%s%s | %s | %s (`%s`) |\n", p->name,
            type_name(p->type), *p->def ? "`" : "", *p->def ? p->def : "-",
            *p->def ? "`" : "", allowed, p->desc, env);
  }
  fputs(
      "\n"
      "## Kafka client properties\n"
      "\n"
      "Any other `kafka.<property>` is a librdkafka property passed through "
      "as-is, in\nthe order given, to the coordinator's producer and "
      "consumer (TLS, SASL,\ntuning), e.g. `kafka.security.protocol = "
      "SASL_SSL`: each to the handles it\napplies to by librdkafka's own "
      "table, so `kafka.linger.ms` goes to the\nproducer only and "
      "`kafka.session.timeout.ms` to the consumer only, with no\n"
      "warning from the other. It is checked by librdkafka when set, and the\n"
      "whole set when a start (or `--check-config`) makes the clients without "
      "a\nbroker, before anything connects: `kafka.acks=1` (the producer is "
      "idempotent)\nor a SASL mechanism without `kafka.sasl.username` is "
      "refused there, exit 2.\nFrom the environment, "
      "`SAGAD_KAFKA_SASL_USERNAME` sets\n"
      "`kafka.sasl.username` (lower-cased, underscores as dots). "
      "`kafka.group.id` is\nrefused: use `group.id`. So are "
      "`kafka.enable.auto.offset.store` and\n`kafka.enable.auto.commit`: "
      "sagad commits each input's offset itself, once its\noutcome is "
      "durable.\n"
      "\n"
      "Without them sagad starts from librdkafka's defaults with these "
      "changed for\nlatency (docs/client.md, \"Kafka settings\", says "
      "why): `linger.ms` 0,\n`fetch.wait.max.ms` 10, "
      "`socket.nagle.disable` true, `enable.idempotence` true,\n`acks` "
      "all, and the inbox consumer's `auto.offset.reset` earliest (a new "
      "group\nstarts at the beginning of the inbox, so no start sent "
      "before its first join is\nlost); offsets are committed by sagad "
      "after each message is handled.\n"
      "Unless `kafka.heartbeat.interval.ms` is set, the consumer heartbeats "
      "at most\nevery third of `kafka.session.timeout.ms` (librdkafka keeps "
      "3000 ms whatever\nthe session, so `kafka.session.timeout.ms = 3000` "
      "lost the group whenever one\nheartbeat answer came late, and the "
      "partitions went back and forth). The same\nholds for every consumer "
      "of the client library (protocol/kafka_loop.c).\n"
      "\n"
      "## Secrets\n"
      "\n"
      "The password of `store.conninfo` and every Kafka property whose name "
      "holds\n`password`, `secret`, `key.pem` or `oauthbearer.config` are "
      "printed as\n`********` and never appear in error messages or logs. "
      "Prefer `~/.pgpass` or\n`PGPASSWORD` to a password in the conninfo.\n"
      "\n"
      "## Rules across properties\n"
      "\n"
      "- `kafka.bootstrap.servers` and `definitions.dir` must be set, and "
      "`definitions.dir`\n  must be a directory.\n"
      "- `topic.inbox`, `topic.notifications` and `topic.dlq` must be three "
      "different topics.\n"
      "- `topic.progress`, when set, must differ from `topic.inbox` and "
      "`topic.dlq`;\n  it may be `topic.notifications`.\n"
      "\n"
      "## Logging\n"
      "\n"
      "`log.format = auto` (the default) writes text when stderr is a "
      "terminal and JSON\nlines otherwise, so a supervisor or container "
      "runtime gets machine-readable logs\nwithout configuration. Text "
      "lines look like\n"
      "`2025-01-02T03:04:05.678Z info  saga=8f2c step=charge: reply "
      "received`; JSON lines\ncarry the same as `ts`, `level`, `msg`, "
      "`saga` and `step` fields.\n"
      "A text record is always one line: a message that spans lines (a "
      "libpq error\nwith its `DETAIL:`, a librdkafka message) has each line "
      "break or tab, with the\nblanks around it, written as one space, "
      "never as a literal `\\n` or `\\t`;\nother control characters show "
      "as `\\xNN`. JSON lines keep them as JSON string\nescapes. A "
      "librdkafka broker failure is logged once, as\n`kafka: <error>: "
      "<broker>: <text>`, not also as librdkafka's own `FAIL` log\nline "
      "with the same text. `log.level.kafka = warn` keeps librdkafka's "
      "notices out\nof an info log; `log.level.kafka = debug` with "
      "`kafka.debug = broker,topic`\nshows its debug records while the rest "
      "of sagad stays at `log.level`.\n"
      "\n"
      "## Exit status\n"
      "\n"
      "`0` after a clean stop, `1` on a runtime failure (including a "
      "graceful shutdown\nthat overran `shutdown.timeout_ms`), `2` for a "
      "bad configuration or usage.\n",
      out);
}

int sagad_config_kafka_apply(const sagad_config_t *cfg, rd_kafka_conf_t *conf,
                             char *errbuf, size_t errlen) {
  char kerr[512];
  if (rd_kafka_conf_set(conf, "bootstrap.servers",
                        cfg->kafka_bootstrap_servers, kerr,
                        sizeof kerr) != RD_KAFKA_CONF_OK)
    return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, NULL,
                "kafka.bootstrap.servers: %s", kerr);
  for (size_t i = 0; i < cfg->kafka_nprops; i++) {
    const sagad_kafka_prop_t *k = &cfg->kafka_props[i];
    if (rd_kafka_conf_set(conf, k->name, k->value, kerr, sizeof kerr) !=
        RD_KAFKA_CONF_OK)
      return fail(errbuf, errlen, SAGAD_CONFIG_INVALID, NULL, "kafka.%s: %s",
                  k->name, kerr);
  }
  return 0;
}
