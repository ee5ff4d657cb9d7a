/* The engine's dead letters (see engine_internal.h): an input that cannot
 * be taken (undecodable, invalid id, unknown saga type, too large) is
 * written to the dead-letter topic with its reason and source, cut to fit
 * the producer when large (saying so in its headers), and acked only once
 * written (design.md invariant 8); one that cannot be written is held and
 * produced again every OUTBOX_RETRY_MS, its offset never committed past.
 * I/O only through the broker port. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "log_sink.h"
#include "wire.h"

void dlq_free(dletter_t *dl) {
  free(dl->h);
  free(dl->key);
  free(dl->value);
  free(dl);
}

static void dletter_send(sagad_engine_t *e, dletter_t *dl);

static void dletter_hold(sagad_engine_t *e, dletter_t *dl, const char *why) {
  if (!dl->held) {
    dl->held = true;
    e->c.dead_letters_blocked++;
    LOG_ERROR("dead letter of %s could not be written to %s (%s): its "
              "offset is not committed; retrying every %d ms",
              dl->where, e->dlq, why, OUTBOX_RETRY_MS);
  }
  dl->next = e->dl_retry;
  e->dl_retry = dl;
  timers_arm_retry(e, &e->dl_armed, TMR_DLQ);
}

static void dletter_send(sagad_engine_t *e, dletter_t *dl) {
  /* The kept headers, then the cut's own (the port copies the list). */
  saga__hdrs_t h;
  saga__hdrs_init(&h);
  int ok = 1;
  for (size_t i = 0; ok && i < dl->h->n; i++)
    ok = saga__hdrs_add(&h, dl->h->h[i].name, dl->h->h[i].value,
                        dl->h->h[i].len) == 0;
  if (ok && dl->size[0])
    ok = saga__hdrs_add_text(&h, SAGA_HDR_DLQ_SIZE, dl->size) == 0 &&
         saga__hdrs_add_text(&h, SAGA_HDR_DLQ_TRUNCATED, dl->cut) == 0;
  dlq_token_t *t = ok ? calloc(1, sizeof *t) : NULL;
  if (t) {
    t->dl = dl;
    int rc =
        e->cfg.broker.produce(e->cfg.broker.self, e->dlq, dl->key, dl->key_len,
                              dl->value, dl->value_len, &h, t);
    saga__hdrs_free(&h);
    if (rc == 0)
      return; /* acked once the dead letter is delivered */
  }
  saga__hdrs_free(&h);
  free(t);
  dletter_hold(e, dl, "could not produce");
}

static size_t headers_size(const saga__hdr_view_t *v) {
  size_t n = 0;
  saga__hdr_t h;
  for (size_t i = 0; v->at && v->at(v->src, i, &h) == 0; i++)
    n += strlen(h.name) + h.len + 8;
  return n;
}

static dletter_t *dletter_new(sagad_engine_t *e, const sagad_inmsg_t *m,
                              const char *reason, size_t value_keep,
                              size_t key_keep, int drop_headers) {
  dletter_t *dl = calloc(1, sizeof *dl);
  if (!dl)
    return NULL;
  snprintf(dl->where, sizeof dl->where, "%.60s/%d/%lld", m->topic,
           (int)m->partition, (long long)m->offset);
  dl->ack = m->ack;
  dl->headers_dropped = drop_headers != 0;
  dl->key_len = key_keep;
  dl->value_len = value_keep;
  dl->key = malloc(key_keep ? key_keep : 1);
  dl->value = malloc(value_keep ? value_keep : 1);
  saga__hdrs_t h;
  char where[512];
  if (sagad_msg_dlq_headers(drop_headers ? NULL : &m->hdrs, reason, m->topic,
                            m->partition, m->offset, where, sizeof where,
                            &h) == 0) {
    saga__hdr_view_t v = saga__hdrs_view(&h);
    dl->h = saga__hdr_copy(&v); /* owned: h borrows from m and where */
    saga__hdrs_free(&h);
  }
  if (!dl->key || !dl->value || !dl->h) {
    dlq_free(dl);
    return NULL;
  }
  if (key_keep)
    memcpy(dl->key, m->key, key_keep);
  if (value_keep)
    memcpy(dl->value, m->value, value_keep);
  if (value_keep < m->value_len || key_keep < m->key_len || drop_headers) {
    snprintf(dl->size, sizeof dl->size, "%zu", m->value_len);
    snprintf(dl->cut, sizeof dl->cut,
             "value: first %zu of %zu bytes kept; key: %zu of %zu bytes; "
             "source headers: %s",
             value_keep, m->value_len, key_keep, m->key_len,
             drop_headers ? "dropped" : "kept");
    e->c.dead_letters_truncated++;
    LOG_WARN("dead letter of %s cut to fit the producer's %zu bytes: %s",
             dl->where, e->cfg.produce_max_bytes, dl->cut);
  }
  return dl;
}

void dlq_write(sagad_engine_t *e, const sagad_inmsg_t *m, const char *reason,
               const char *why) {
  e->c.dead_lettered++;
  if (e->hooks.on_dead_letter)
    e->hooks.on_dead_letter(e->hooks.arg, why);
  LOG_WARN("dead letter from %s/%d offset %lld: %s", m->topic,
           (int)m->partition, (long long)m->offset, reason);
  /* What fits the producer's message.max.bytes, with room for our own
   * headers and the record's framing. */
  size_t max = e->cfg.produce_max_bytes;
  size_t room = max > 4 * DLQ_HEADERS_MAX ? max - 2 * DLQ_HEADERS_MAX : max / 2;
  size_t hsize = headers_size(&m->hdrs);
  int drop = hsize > DLQ_HEADERS_MAX;
  size_t key_keep = m->key_len > DLQ_KEY_MAX ? DLQ_KEY_MAX : m->key_len;
  size_t value_keep = m->value_len;
  if (drop || key_keep < m->key_len || m->value_len + key_keep + hsize > room)
    value_keep =
        m->value_len < DLQ_VALUE_PREFIX ? m->value_len : DLQ_VALUE_PREFIX;
  if (value_keep > room / 2)
    value_keep = room / 2;
  /* saga-dlq-reason: "<class>: <text>", the class being the reason label
   * of saga_dead_letters_total (docs/protocol.md lists them). */
  char header[640];
  snprintf(header, sizeof header, "%s: %s", why, reason);
  dletter_t *dl = dletter_new(e, m, header, value_keep, key_keep, drop);
  if (!dl) {
    /* Not acked: the input comes back after a restart. */
    e->c.dead_letters_blocked++;
    LOG_ERROR("out of memory writing the dead letter of %s/%d offset %lld: "
              "its offset is not committed",
              m->topic, (int)m->partition, (long long)m->offset);
    return;
  }
  dletter_send(e, dl);
}

void dlq_delivered(sagad_engine_t *e, dletter_t *dl, int status) {
  if (status != SAGAD_DELIVERY_OK) {
    if (status == SAGAD_DELIVERY_TOO_LARGE &&
        dl->value_len > DLQ_SHRUNK_PREFIX) {
      /* The broker's limit is below the producer's: keep less. */
      if (!dl->size[0])
        snprintf(dl->size, sizeof dl->size, "%zu", dl->value_len);
      snprintf(dl->cut, sizeof dl->cut,
               "the broker refused %zu bytes: value cut to %d bytes, "
               "source headers %s",
               dl->value_len, DLQ_SHRUNK_PREFIX,
               dl->headers_dropped ? "dropped" : "kept");
      dl->value_len = DLQ_SHRUNK_PREFIX;
      e->c.dead_letters_truncated++;
      LOG_WARN("dead letter of %s: %s", dl->where, dl->cut);
      dletter_send(e, dl);
      return;
    }
    dletter_hold(e, dl, sagad_delivery_text(status));
    return;
  }
  if (dl->held) {
    e->c.dead_letters_blocked--;
    LOG_INFO("dead letter of %s written to %s at last", dl->where, e->dlq);
  }
  e->cfg.broker.ack(e->cfg.broker.self, dl->ack);
  dlq_free(dl);
}

void dlq_retry(sagad_engine_t *e) {
  dletter_t *dl = e->dl_retry, *n;
  e->dl_retry = NULL;
  e->dl_armed = false;
  for (; dl; dl = n)
    n = dl->next, dletter_send(e, dl);
}
