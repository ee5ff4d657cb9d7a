/* Subscriptions: catch-up reads in pages along the gap-safe global order,
 * then live, woken by NOTIFY on the subscription's own connection. A commit
 * can stay invisible to global reads for a moment after its NOTIFY (an older
 * transaction anywhere in the cluster still holds the read watermark back),
 * so after a start or a NOTIFY the subscription reads again after 10, 20,
 * 40 ... ms until poll_ms, the slow safety-net poll, is reached. After a lost
 * connection it waits retry_ms and resumes from the last delivered
 * position. */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "es_async_internal.h"

struct es_sub {
  es_async_t *as;
  es_sub_opts_t o;
  char *category, *type;
  es_pos_t pos;
  int reading, dirty, live, paused, closing, handles;
  uint64_t settle_ms; /* next quick re-read, 0 once poll_ms is reached */
  uv_timer_t timer;
  es_sub_close_cb close_cb;
  void *close_arg;
};

void es_sub_opts_init(es_sub_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->page_size = 500;
  o->poll_ms = 1000;
  o->retry_ms = 200;
}

es_pos_t es_sub_position(const es_sub_t *sub) {
  return sub ? sub->pos : (es_pos_t){0, 0};
}

static void on_page(es_async_t *as, int status, es_page_t *page, void *arg);

enum { SETTLE_FIRST_MS = 10 };

static void on_timer(uv_timer_t *t);

static void state(es_sub_t *s, int status) {
  if (s->o.on_state)
    s->o.on_state(s, status, s->live, s->o.arg);
}

static void read_next(es_sub_t *s) {
  if (s->closing || s->paused || s->reading)
    return;
  uv_timer_stop(&s->timer);
  es_filter_t f = {s->category, s->type};
  int rc = es_async_read_all(s->as, s->pos, &f, s->o.page_size, on_page, s);
  if (rc == 0) {
    s->reading = 1;
    return;
  }
  /* the input was checked at the start: out of memory; try again later
   * rather than stop without a word */
  s->live = 0;
  state(s, rc);
  if (!s->closing)
    uv_timer_start(&s->timer, on_timer, s->o.retry_ms, 0);
}

static void on_timer(uv_timer_t *t) { read_next(t->data); }

static void on_page(es_async_t *as, int status, es_page_t *page, void *arg) {
  (void)as;
  es_sub_t *s = arg;
  s->reading = 0;
  if (status == ES_ERR_CANCELLED || s->closing) {
    es_page_free(page);
    return;
  }
  if (status) {
    s->live = 0;
    state(s, status);
    if (!s->closing)
      uv_timer_start(&s->timer, on_timer, s->o.retry_ms, 0);
    return;
  }
  size_t n = page->n;
  if (n) {
    if (s->o.on_events(s, page, s->o.arg))
      s->paused = 1;
    s->pos = page->next;
  }
  es_page_free(page);
  if (s->closing || s->paused)
    return;
  if (n == s->o.page_size) {
    read_next(s);
    return;
  }
  if (!s->live) {
    s->live = 1;
    state(s, 0);
    if (s->closing)
      return;
  }
  if (s->dirty) {
    s->dirty = 0;
    read_next(s);
  } else {
    uv_timer_start(&s->timer, on_timer,
                   es__settle_wait(&s->settle_ms, s->o.poll_ms), 0);
  }
}

static void on_notify(es_async_t *as, void *arg) {
  (void)as;
  es_sub_t *s = arg;
  s->settle_ms = SETTLE_FIRST_MS;
  if (s->reading)
    s->dirty = 1;
  else
    read_next(s);
}

static void on_lost(es_async_t *as, void *arg) {
  (void)as;
  es_sub_t *s = arg;
  s->live = 0;
  state(s, ES_ERR_CONNECTION);
  if (!s->closing && !s->reading)
    uv_timer_start(&s->timer, on_timer, s->o.retry_ms, 0);
}

int es_sub_start(uv_loop_t *loop, const char *conninfo,
                 const es_sub_opts_t *opts, es_sub_t **out, char *errbuf,
                 size_t errlen) {
  const char *missing = !loop               ? "loop"
                        : !conninfo        ? "conninfo"
                        : !opts            ? "opts"
                        : !opts->on_events ? "opts->on_events"
                        : !out             ? "out"
                                           : NULL;
  if (missing) {
    es__set_msg(errbuf, errlen, "subscription: %s is NULL", missing);
    return ES_ERR_INVALID;
  }
  if (opts->page_size == 0 || opts->page_size > 10000) {
    es__set_msg(errbuf, errlen,
                "subscription: page_size must be 1 to 10000 (got %zu)",
                opts->page_size);
    return ES_ERR_INVALID;
  }
  /* 0 would read (or reconnect) in a tight loop, a query per turn */
  if (opts->poll_ms == 0 || opts->retry_ms == 0) {
    es__set_msg(errbuf, errlen,
                "subscription: poll_ms and retry_ms must be at least 1 ms"
                " (got %u and %u; es_sub_opts_init sets 1000 and 200)",
                opts->poll_ms, opts->retry_ms);
    return ES_ERR_INVALID;
  }
  /* malformed, it would be reconnected to every retry_ms for ever */
  char why[ES_ERRBUF_SIZE];
  int bad = es__conninfo_check(conninfo, why, sizeof why);
  if (bad) {
    es__set_msg(errbuf, errlen, "subscription: %s", why);
    return bad;
  }
  /* The checks each read makes, once here: a filter or position every
   * read would refuse must fail the start, not leave a subscription that
   * never reads and never says why. */
  es__op_t check = {0};
  int rc = es__op_read_all(&check, opts->from, &opts->filter, opts->page_size);
  if (rc)
    es__set_msg(errbuf, errlen, "subscription: %s", check.msg);
  es__op_free(&check);
  if (rc)
    return rc;
  es_sub_t *s = calloc(1, sizeof *s);
  if (!s)
    return ES_ERR_NOMEM;
  s->o = *opts;
  s->pos = opts->from;
  if ((opts->filter.category &&
       !(s->category = strdup(opts->filter.category))) ||
      (opts->filter.type && !(s->type = strdup(opts->filter.type)))) {
    free(s->category);
    free(s);
    return ES_ERR_NOMEM;
  }
  rc = es_async_open(loop, conninfo, NULL, &s->as, errbuf, errlen);
  if (rc) {
    free(s->category);
    free(s->type);
    free(s);
    return rc;
  }
  es__async_hooks_t h = {1, on_notify, on_lost, s};
  es__async_set_hooks(s->as, &h);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  s->settle_ms = SETTLE_FIRST_MS;
  read_next(s);
  *out = s;
  return 0;
}

static void maybe_free(es_sub_t *s) {
  if (--s->handles > 0)
    return;
  if (s->close_cb)
    s->close_cb(s, s->close_arg);
  free(s->category);
  free(s->type);
  free(s);
}

static void on_async_closed(es_async_t *as, void *arg) {
  (void)as;
  maybe_free(arg);
}

static void on_timer_closed(uv_handle_t *h) { maybe_free(h->data); }

void es_sub_close(es_sub_t *s, es_sub_close_cb close_cb, void *arg) {
  if (!s || s->closing)
    return;
  s->closing = 1;
  s->close_cb = close_cb;
  s->close_arg = arg;
  s->handles = 2;
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
  es_async_close(s->as, on_async_closed, s);
}
