/* Admin API handlers (admin_api.h): validate, call the source, answer. */
#include "admin_api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "json_exact.h"
#include "timetext.h"
#include "text.h"

typedef struct {
  const admin_source_t *src;
  metrics_t *metrics;
} api_t;

void admin_reply(admin_reply_t *r, int status, const char *json, size_t len) {
  if (!json && status >= 400)
    admin_http_respond_error(r, status, admin_http_reason(status));
  else
    admin_http_respond(r, status, "application/json", json ? json : "{}",
                       json ? len : 2);
}

static void put_time(abuf_t *b, const char *key, int64_t ms) {
  if (ms <= 0) {
    abuf_printf(b, ",\"%s\":null", key);
    return;
  }
  char iso[SAGA_RFC3339_MS_SIZE];
  abuf_printf(b, ",\"%s\":\"%s\"", key,
              saga__rfc3339_ms(iso, sizeof iso, ms));
}

static void put_str(abuf_t *b, const char *key, const char *v) {
  if (!v) {
    abuf_printf(b, ",\"%s\":null", key);
    return;
  }
  abuf_printf(b, ",\"%s\":\"", key);
  abuf_json_str(b, v);
  abuf_add(b, "\"", 1);
}

int admin_json_saga_row(abuf_t *b, const admin_saga_row_t *row) {
  abuf_puts(b, "{\"saga_id\":\"");
  abuf_json_str(b, row->saga_id);
  abuf_add(b, "\"", 1);
  put_str(b, "saga_type", row->saga_type);
  abuf_printf(b, ",\"definition_version\":%d", row->definition_version);
  put_str(b, "status", row->status);
  abuf_printf(b, ",\"partition\":%d,\"version\":%lld", row->partition,
              (long long)row->version);
  put_time(b, "started_at", row->started_ms);
  put_time(b, "updated_at", row->updated_ms);
  put_time(b, "next_deadline_at", row->next_deadline_ms);
  put_str(b, "current_step", row->current_step);
  abuf_printf(b, ",\"stuck\":%s}", row->stuck ? "true" : "false");
  return b->failed ? -1 : 0;
}

/* 1 to max bytes of UTF-8 without spaces or control characters: what an
 * id or a type may be (PostgreSQL refuses anything but UTF-8 as a text
 * parameter, which answered 503 for a bad id instead of 400). */
static bool text_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max)
    return false;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x21 || *p == 0x7f)
      return false;
  return saga__utf8_bad_at(s, n) == n;
}

/* An id of a saga that may exist: what the wire takes (1 to max bytes of
 * UTF-8, no control character, no '/'), spaces included -- a saga the
 * client library started as "order 42" is listed, and was refused when
 * read or acted on. */
static bool saga_id_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max || strchr(s, '/'))
    return false;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return false;
  return saga__utf8_bad_at(s, n) == n;
}

static void h_metrics(admin_http_req_t *req, void *arg) {
  api_t *api = arg;
  char *text = NULL;
  size_t len = 0;
  if (api->metrics && metrics_render(api->metrics, &text, &len) != 0) {
    admin_http_respond_error(req, 500, "out of memory");
    return;
  }
  admin_http_respond(req, 200, METRICS_CONTENT_TYPE, text ? text : "", len);
  free(text);
}

static void h_healthz(admin_http_req_t *req, void *arg) {
  (void)arg;
  static const char ok[] = "{\"status\":\"ok\"}";
  admin_http_respond(req, 200, "application/json", ok, sizeof ok - 1);
}

static void h_readyz(admin_http_req_t *req, void *arg) {
  api_t *api = arg;
  admin_readiness_t r = {0};
  if (!api->src->readiness) {
    admin_http_respond_error(req, 501, "readiness not provided");
    return;
  }
  api->src->readiness(api->src->arg, &r);
  bool ready = r.store && r.kafka && r.partitions && !r.dlq_blocked;
  abuf_t b = ABUF_INIT;
  abuf_printf(&b,
              "{\"ready\":%s,\"store\":%s,\"kafka\":%s,\"partitions\":%s",
              ready ? "true" : "false", r.store ? "true" : "false",
              r.kafka ? "true" : "false", r.partitions ? "true" : "false");
  r.detail[sizeof r.detail - 1] = '\0';
  put_str(&b, "detail", r.detail[0] ? r.detail : NULL);
  abuf_add(&b, "}", 1);
  if (b.failed)
    admin_http_respond_error(req, 500, "out of memory");
  else
    admin_reply(req, ready ? 200 : 503, b.data, b.len);
  abuf_free(&b);
}

static void h_get_saga(admin_http_req_t *req, void *arg) {
  api_t *api = arg;
  const char *id = admin_http_param(req, "id");
  if (!api->src->get_saga) {
    admin_http_respond_error(req, 501, "saga reads not provided");
    return;
  }
  if (!saga_id_ok(id, ADMIN_ID_MAX)) {
    admin_http_respond_error(req, 400, "invalid saga id");
    return;
  }
  api->src->get_saga(api->src->arg, id, req);
}

/* A non-empty query parameter, or NULL. */
static const char *param(admin_http_req_t *req, const char *name) {
  const char *v = admin_http_query(req, name);
  return v && *v ? v : NULL;
}

/* since / until into *t; false with a 400 sent when it is not a time. */
static bool time_param(admin_http_req_t *req, const char *name,
                       iq_time_t *t) {
  const char *v = param(req, name);
  char why[256], msg[320];
  *t = (iq_time_t){0};
  if (!v || iq_time_parse(v, t, why, sizeof why) == 0)
    return true;
  snprintf(msg, sizeof msg, "%s: %s", name, why);
  admin_http_respond_error(req, 400, msg);
  return false;
}

/* A true/false query parameter into *out (absent: false; present empty,
 * "true" or "1": true; "false" or "0": false); false with a 400 sent for
 * anything else. */
static bool flag_param(admin_http_req_t *req, const char *name, bool *out) {
  const char *v = admin_http_query(req, name);
  *out = v && (!*v || !strcmp(v, "true") || !strcmp(v, "1"));
  if (!v || *out || !strcmp(v, "false") || !strcmp(v, "0"))
    return true;
  char msg[64];
  snprintf(msg, sizeof msg, "%s must be true or false", name);
  admin_http_respond_error(req, 400, msg);
  return false;
}

/* The parameters GET /sagas knows. */
static const char *const list_params[] = {"state", "type",  "after",
                                          "since", "until", "order",
                                          "stuck", "counts", "limit", NULL};

/* Every query parameter of req is one of known and given once; false
 * with a 400 naming the first that is not (a misspelt filter, or
 * status= for state=, would list every saga as if no filter were
 * asked). */
static bool params_known(admin_http_req_t *req, const char *const *known,
                         const char *list) {
  for (size_t i = 0; i < req->nquery; i++) {
    const char *name = req->query[i].name;
    size_t k = 0;
    while (known[k] && strcmp(known[k], name) != 0)
      k++;
    char msg[300];
    if (!known[k]) {
      snprintf(msg, sizeof msg, "unknown parameter \"%.64s\" (known: %s)",
               name, list);
      admin_http_respond_error(req, 400, msg);
      return false;
    }
    for (size_t j = 0; j < i; j++)
      if (!strcmp(req->query[j].name, name)) {
        snprintf(msg, sizeof msg, "parameter \"%s\" given twice", name);
        admin_http_respond_error(req, 400, msg);
        return false;
      }
    /* a filter given empty (state=$STATE, unset) is no filter: it listed
     * every saga (stuck and counts are flags, bare or with a value) */
    const char *v = req->query[i].value;
    if ((!v || !*v) && strcmp(name, "stuck") && strcmp(name, "counts")) {
      snprintf(msg, sizeof msg, "parameter \"%s\" is empty", name);
      admin_http_respond_error(req, 400, msg);
      return false;
    }
  }
  return true;
}

/* The media type of a Content-Type value is application/json (any case,
 * parameters after ';' allowed): application/jsonp or application/json5
 * is not. */
static bool is_json_type(const char *ct) {
  size_t n = strcspn(ct, "; \t");
  if (n != 16 || strncasecmp(ct, "application/json", 16) != 0)
    return false;
  ct += n + strspn(ct + n, " \t");
  return !*ct || *ct == ';'; /* then parameters only */
}

static void h_list(admin_http_req_t *req, void *arg) {
  api_t *api = arg;
  admin_list_query_t q = {.limit = ADMIN_LIST_DEFAULT};
  if (!api->src->list_sagas) {
    admin_http_respond_error(req, 501, "saga listing not provided");
    return;
  }
  if (!params_known(req, list_params,
                    "state, type, after, since, until, order, stuck, "
                    "counts, limit"))
    return;
  q.state = param(req, "state");
  if (q.state && !iq_status_known(q.state)) {
    admin_http_respond_error(req, 400,
                             "state must be one of " IQ_STATUSES);
    return;
  }
  q.type = param(req, "type");
  if (q.type && !text_ok(q.type, ADMIN_TYPE_MAX)) {
    admin_http_respond_error(req, 400, "invalid type");
    return;
  }
  q.after = param(req, "after");
  iq_cursor_t cursor;
  if (q.after && iq_cursor_decode(q.after, &cursor) != 0) {
    admin_http_respond_error(req, 400,
                             "after: not a token of this list (give the "
                             "\"next\" of the previous page)");
    return;
  }
  if (!time_param(req, "since", &q.since) ||
      !time_param(req, "until", &q.until))
    return;
  const char *order = param(req, "order");
  if (order && strcmp(order, "newest") != 0 && strcmp(order, "oldest") != 0) {
    admin_http_respond_error(req, 400, "order must be newest or oldest");
    return;
  }
  q.oldest_first = order && !strcmp(order, "oldest");
  if (!flag_param(req, "stuck", &q.stuck) ||
      !flag_param(req, "counts", &q.counts))
    return;
  const char *limit = param(req, "limit");
  if (limit) {
    char *end;
    long v = strtol(limit, &end, 10);
    /* digits alone: strtol would take " 5" (a '+' decodes to a space) */
    if (!isdigit((unsigned char)limit[0]) || *end || v < 1 ||
        v > ADMIN_LIST_MAX) {
      admin_http_respond_error(req, 400, "limit must be between 1 and 1000");
      return;
    }
    q.limit = (size_t)v;
  }
  api->src->list_sagas(api->src->arg, &q, req);
}

/* A browser sends Origin with every POST; one from another site (a page
 * that posts here behind the operator's back) does not name this server.
 * False with 403 sent when Origin is present and is not http://<Host>.
 * Clients that send no Origin (sagactl, curl) are not browsers' pages. */
static bool same_origin(admin_http_req_t *req) {
  const char *origin = admin_http_header(req, "Origin");
  const char *host = admin_http_header(req, "Host");
  if (!origin)
    return true;
  if (host && !strncmp(origin, "http://", 7) && !strcmp(origin + 7, host))
    return true;
  admin_http_respond_error(req, 403,
                           "cross-origin request refused: Origin does not "
                           "name this server");
  return false;
}

/* A request body that must be one JSON value, parsed; NULL with a 400
 * sent when it is not: not JSON (the answer not_json), text after the
 * value, or a \u0000 in a string (cJSON would cut the string there: the
 * saga would see another value than the one sent). */
static cJSON *json_body(admin_http_req_t *req, const char *body, size_t len,
                        const char *not_json) {
  char msg[160];
  size_t nul = saga__json_nul_escape_at(body, len);
  if (nul < len) {
    snprintf(msg, sizeof msg,
             "body: a \\u0000 (NUL) in a string, at byte %zu, is not "
             "supported",
             nul);
    admin_http_respond_error(req, 400, msg);
    return NULL;
  }
  /* what cJSON would take but JSON does not: bytes that are not UTF-8,
   * a raw control character in a string, a number such as 01 (it was
   * started, its input passed on as it was) */
  size_t bad = saga__utf8_bad_at(body, len);
  if (bad == len)
    bad = saga_json_strict_bad_at(body, len);
  if (bad < len) {
    snprintf(msg, sizeof msg,
             "body is not valid JSON: %s at byte %zu",
             saga__utf8_bad_at(body, len) < len ? "a byte that is not UTF-8"
             : (unsigned char)body[bad] < 0x20
                 ? "a raw control character (a string escapes it)"
                 : "a number JSON does not allow",
             bad);
    admin_http_respond_error(req, 400, msg);
    return NULL;
  }
  const char *end = NULL;
  cJSON *doc = cJSON_ParseWithLengthOpts(body, len, &end, false);
  while (doc && end < body + len &&
         (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
    end++;
  if (doc && end == body + len)
    return doc;
  if (doc)
    snprintf(msg, sizeof msg,
             "body is not valid JSON: text after the value, at byte %zu",
             (size_t)(end - body));
  else
    snprintf(msg, sizeof msg, "%s", not_json);
  cJSON_Delete(doc);
  admin_http_respond_error(req, 400, msg);
  return NULL;
}

static void h_start(admin_http_req_t *req, void *arg) {
  api_t *api = arg;
  const char *type = admin_http_param(req, "type");
  if (!api->src->start_saga) {
    admin_http_respond_error(req, 501, "starting sagas not provided");
    return;
  }
  const char *id = admin_http_query(req, "id");
  const char *field = "query parameter id";
  if (!id) {
    id = admin_http_header(req, "Idempotency-Key");
    field = "header Idempotency-Key";
  }
  if (!text_ok(type, ADMIN_TYPE_MAX)) {
    admin_http_respond_error(req, 400, "invalid saga type");
    return;
  }
  if (!id) {
    admin_http_respond_error(
        req, 400,
        "a saga id is required (query id= or header Idempotency-Key), "
        "1 to 255 printable bytes");
    return;
  }
  /* '/' separates the parts of the idempotency key built from the id. */
  if (!text_ok(id, ADMIN_ID_MAX) || strchr(id, '/')) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "%s: a saga id is 1 to %d printable bytes of UTF-8 without "
             "spaces or '/'",
             field, ADMIN_ID_MAX);
    admin_http_respond_error(req, 400, msg);
    return;
  }
  if (!same_origin(req))
    return;
  const char *ct = admin_http_header(req, "Content-Type");
  if (ct && !is_json_type(ct)) {
    admin_http_respond_error(req, 415, "body must be application/json");
    return;
  }
  const char *body = req->body_len ? req->body : "{}";
  size_t len = req->body_len ? req->body_len : 2;
  cJSON *doc = json_body(req, body, len, "body is not valid JSON");
  if (!doc)
    return;
  cJSON_Delete(doc);
  api->src->start_saga(api->src->arg, type, id, body, len, req);
}

/* A JSON string member of doc within max bytes: *out = its text, or NULL
 * when absent or null. Returns false (400 sent) when it is another type,
 * too long or holds a control character other than tab or newline. */
static bool body_text(admin_http_req_t *req, const cJSON *doc,
                      const char *key, size_t max, const char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
  *out = NULL;
  if (!v || cJSON_IsNull(v))
    return true;
  char msg[128];
  bool ok = cJSON_IsString(v) && strlen(v->valuestring) <= max;
  for (const unsigned char *p = ok ? (const unsigned char *)v->valuestring
                                   : NULL;
       p && *p; p++)
    if ((*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7f)
      ok = false;
  if (!ok) {
    snprintf(msg, sizeof msg,
             "\"%s\" must be a string of at most %zu bytes without control "
             "characters",
             key, max);
    admin_http_respond_error(req, 400, msg);
    return false;
  }
  *out = v->valuestring;
  return true;
}

/* The common part of the operator actions (cancel, retry, resolve): the
 * saga id, the same-origin check, and the JSON body {"reason" (required),
 * "operator"}. True with *id, *reason, *who (NULL = none) set and *doc
 * to free; false with the error sent. */
static bool operator_request(admin_http_req_t *req, const char **id,
                             cJSON **doc, const char **reason,
                             const char **who) {
  *id = admin_http_param(req, "id");
  *doc = NULL;
  if (!saga_id_ok(*id, ADMIN_ID_MAX)) {
    admin_http_respond_error(req, 400, "invalid saga id");
    return false;
  }
  if (!same_origin(req))
    return false;
  const char *ct = admin_http_header(req, "Content-Type");
  if (ct && !is_json_type(ct)) {
    admin_http_respond_error(req, 415, "body must be application/json");
    return false;
  }
  static const char not_object[] = "body must be a JSON object "
                                   "{\"reason\": \"...\", \"operator\": "
                                   "\"...\"}";
  *doc = req->body_len
             ? json_body(req, req->body, req->body_len, not_object)
             : NULL;
  if (req->body_len && !*doc)
    return false;
  if (!cJSON_IsObject(*doc)) {
    admin_http_respond_error(req, 400, not_object);
    return false;
  }
  if (!body_text(req, *doc, "reason", ADMIN_REASON_MAX, reason) ||
      !body_text(req, *doc, "operator", ADMIN_OPERATOR_MAX, who))
    return false;
  /* blanks alone are no reason (the page trims; the API took them) */
  if (!*reason || !(*reason)[strspn(*reason, " \t\n\r")]) {
    admin_http_respond_error(req, 400,
                             "\"reason\" is required: it is recorded in "
                             "the saga's history");
    return false;
  }
  /* a name is one line: the wire refuses a tab or newline in it, which
   * was found only after the saga was looked up (a 404 or 409 first) */
  if (*who && strpbrk(*who, "\t\n")) {
    admin_http_respond_error(req, 400,
                             "\"operator\" must be one line: no tab or "
                             "newline");
    return false;
  }
  if (*who && !**who)
    *who = NULL;
  return true;
}

static void h_cancel(admin_http_req_t *req, void *arg) {
  api_t *api = arg;
  if (!api->src->cancel_saga) {
    admin_http_respond_error(req, 501, "cancelling sagas not provided");
    return;
  }
  const char *id, *reason, *who;
  cJSON *doc;
  if (operator_request(req, &id, &doc, &reason, &who))
    api->src->cancel_saga(api->src->arg, id, reason, who, req);
  cJSON_Delete(doc);
}

static void operate(admin_http_req_t *req, api_t *api, admin_op_t op) {
  if (!api->src->operate_saga) {
    admin_http_respond_error(req, 501, "operator actions not provided");
    return;
  }
  const char *id, *reason, *who;
  cJSON *doc;
  if (operator_request(req, &id, &doc, &reason, &who))
    api->src->operate_saga(api->src->arg, op, id, reason, who, req);
  cJSON_Delete(doc);
}

static void h_retry(admin_http_req_t *req, void *arg) {
  operate(req, arg, ADMIN_OP_RETRY);
}

static void h_resolve(admin_http_req_t *req, void *arg) {
  operate(req, arg, ADMIN_OP_RESOLVE);
}

static void api_free(void *arg) { free(arg); }

int admin_api_register(admin_http_t *s, const admin_source_t *src,
                       metrics_t *metrics) {
  api_t *api = calloc(1, sizeof *api);
  if (!api)
    return -1;
  api->src = src;
  api->metrics = metrics;
  if (admin_http_on_free(s, api_free, api) != 0) {
    free(api);
    return -1;
  }
  int rc = admin_http_route(s, "GET", "/metrics", h_metrics, api);
  rc |= admin_http_route(s, "GET", "/healthz", h_healthz, api);
  rc |= admin_http_route(s, "GET", "/readyz", h_readyz, api);
  rc |= admin_http_route(s, "GET", "/sagas/{id}", h_get_saga, api);
  rc |= admin_http_route(s, "GET", "/sagas", h_list, api);
  rc |= admin_http_route(s, "POST", "/sagas/{type}", h_start, api);
  rc |= admin_http_route(s, "POST", "/sagas/{id}/cancel", h_cancel, api);
  rc |= admin_http_route(s, "POST", "/sagas/{id}/retry", h_retry, api);
  rc |= admin_http_route(s, "POST", "/sagas/{id}/resolve", h_resolve, api);
  return rc ? -1 : 0;
}
