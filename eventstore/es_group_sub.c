/* A consumer group member on a libuv loop: join, renew the lease on a
 * timer, and a cycle of read (es_async_member_read), hand the page to the
 * caller with an empty batch, commit the batch with the page's
 * acknowledgement, read again. One operation of the cycle is in flight at
 * a time; renewals queue on the same connection between them. Woken by
 * NOTIFY (es_async hooks) like es_sub_t, with quick re-reads after each
 * because a commit may reach the read watermark a moment after its
 * NOTIFY. */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "es_async_internal.h"

struct es_group_sub {
  es_async_t *as;
  es_group_sub_opts_t o;
  char *group, *category;
  int64_t member;
  int busy;     /* a join, read or batch of the cycle is in flight */
  int joining;  /* that one is a join */
  int renewing; /* a renewal is in flight */
  int dirty, live, paused, closing, handles;
  uint64_t settle_ms;
  uv_timer_t timer, renew;
  es_batch_t *batch;
  es_group_sub_close_cb close_cb;
  void *close_arg;
  char msg[ES_ERRBUF_SIZE];
};

enum { SETTLE_FIRST_MS = 10 };

void es_group_sub_opts_init(es_group_sub_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->lease_ms = 10000;
  o->page_size = 500;
  o->poll_ms = 1000;
  o->retry_ms = 200;
}

int64_t es_group_sub_member(const es_group_sub_t *gs) {
  return gs ? gs->member : 0;
}

const char *es_group_sub_last_error(const es_group_sub_t *gs) {
  return gs ? gs->msg : "";
}

static void next(es_group_sub_t *g);

static void state(es_group_sub_t *g, int status) {
  if (status)
    es__set_msg(g->msg, sizeof g->msg, "%s", es_async_last_error(g->as));
  if (g->o.on_state)
    g->o.on_state(g, status, g->live, g->o.arg);
}

static void on_timer(uv_timer_t *t) { next(t->data); }

static void retry_later(es_group_sub_t *g, int status) {
  g->live = 0;
  state(g, status);
  if (!g->closing)
    uv_timer_start(&g->timer, on_timer, g->o.retry_ms, 0);
}

static void shutdown_sub(es_group_sub_t *g);

static void on_left(es_async_t *as, int status, int64_t id, uint64_t b,
                    void *arg) {
  (void)as, (void)status, (void)id, (void)b;
  shutdown_sub(arg);
}

/* Closing: leave the group if a member (after whatever is in flight). */
static void leave_or_shut(es_group_sub_t *g) {
  if (g->member && es_async_group_leave(g->as, g->group, g->member, on_left,
                                        g) == 0)
    return;
  shutdown_sub(g);
}

static void on_joined(es_async_t *as, int status, int64_t id,
                      uint64_t buckets, void *arg) {
  (void)as, (void)buckets;
  es_group_sub_t *g = arg;
  g->busy = g->joining = 0;
  if (!status)
    g->member = id;
  if (g->closing) {
    leave_or_shut(g);
    return;
  }
  if (status) {
    retry_later(g, status);
    return;
  }
  next(g);
}

static void on_batch(es_async_t *as, es_batch_t *b, int status, void *arg) {
  (void)as, (void)b;
  es_group_sub_t *g = arg;
  g->busy = 0;
  if (g->closing)
    return;
  if (!status) {
    next(g);
  } else if (status == ES_ERR_NOT_OWNER) {
    state(g, status);
    next(g);
  } else {
    retry_later(g, status);
  }
}

static void on_page(es_async_t *as, int status, es_page_t *page, void *arg) {
  (void)as;
  es_group_sub_t *g = arg;
  g->busy = 0;
  if (g->closing || status == ES_ERR_CANCELLED) {
    es_page_free(page);
    return;
  }
  if (status) {
    retry_later(g, status);
    return;
  }
  if (!g->member) {
    /* the group forgot the member (a renewal answered NOT_FOUND, already
     * reported) while this page was read under the old id: it cannot be
     * acknowledged; drop it and join again (the buckets are read again
     * from their checkpoints) */
    es_page_free(page);
    next(g);
    return;
  }
  size_t n = page->n;
  if (n) {
    es_batch_reset(g->batch);
    if (g->o.on_events(g, page, g->batch, g->o.arg)) {
      g->paused = 1;
      es_page_free(page);
      return;
    }
    int rc = es_batch_add_member_ack(g->batch, g->group, g->member,
                                     page->buckets, page->next);
    es_page_free(page);
    if (rc < 0) {
      /* the batch knows why, not the async handle (its read went well) */
      g->live = 0;
      es__set_msg(g->msg, sizeof g->msg, "%s", g->batch->msg);
      if (g->o.on_state)
        g->o.on_state(g, rc, g->live, g->o.arg);
      if (!g->closing)
        uv_timer_start(&g->timer, on_timer, g->o.retry_ms, 0);
      return;
    }
    if ((rc = es_async_batch(g->as, g->batch, on_batch, g))) {
      retry_later(g, rc);
      return;
    }
    g->busy = 1;
    return;
  }
  es_page_free(page);
  if (!g->live) {
    g->live = 1;
    state(g, 0);
    if (g->closing)
      return;
  }
  if (g->dirty) {
    g->dirty = 0;
    next(g);
  } else {
    uv_timer_start(&g->timer, on_timer,
                   es__settle_wait(&g->settle_ms, g->o.poll_ms), 0);
  }
}

/* The next step of the cycle: join when not a member, else read. */
static void next(es_group_sub_t *g) {
  if (g->closing || g->paused || g->busy)
    return;
  uv_timer_stop(&g->timer);
  int rc;
  if (!g->member) {
    rc = es_async_group_join(g->as, g->group, g->o.lease_ms, on_joined, g);
    g->joining = rc == 0;
  } else {
    rc = es_async_member_read(g->as, g->group, g->category, g->member,
                              g->o.page_size, on_page, g);
  }
  if (rc == 0)
    g->busy = 1;
  else
    retry_later(g, rc);
}

static void on_renewed(es_async_t *as, int status, int64_t id,
                       uint64_t buckets, void *arg) {
  (void)as, (void)buckets;
  es_group_sub_t *g = arg;
  g->renewing = 0;
  if (g->closing || status == ES_ERR_CANCELLED)
    return;
  if (status == ES_ERR_NOT_FOUND && g->member == id) {
    /* forgotten: the cycle joins again under a new id */
    g->member = 0;
    state(g, status);
    next(g);
  } else if (status) {
    state(g, status);
  }
}

static void on_renew_timer(uv_timer_t *t) {
  es_group_sub_t *g = t->data;
  if (g->closing || g->renewing || !g->member)
    return;
  if (es_async_group_renew(g->as, g->group, g->member, g->o.lease_ms,
                           on_renewed, g) == 0)
    g->renewing = 1;
}

static void on_notify(es_async_t *as, void *arg) {
  (void)as;
  es_group_sub_t *g = arg;
  g->settle_ms = SETTLE_FIRST_MS;
  if (g->busy)
    g->dirty = 1;
  else
    next(g);
}

static void on_lost(es_async_t *as, void *arg) {
  (void)as;
  es_group_sub_t *g = arg;
  if (!g->busy)
    retry_later(g, ES_ERR_CONNECTION);
  else
    g->live = 0;
}

static void free_sub(es_group_sub_t *g) {
  es_batch_free(g->batch);
  free(g->group);
  free(g->category);
  free(g);
}

int es_group_sub_start(uv_loop_t *loop, const char *conninfo,
                       const es_group_sub_opts_t *opts, es_group_sub_t **out,
                       char *errbuf, size_t errlen) {
  const char *missing = !loop               ? "loop"
                        : !conninfo        ? "conninfo"
                        : !opts            ? "opts"
                        : !opts->on_events ? "opts->on_events"
                        : !opts->group     ? "opts->group"
                        : !opts->category  ? "opts->category"
                        : !out             ? "out"
                                           : NULL;
  if (missing) {
    es__set_msg(errbuf, errlen, "group member: %s is NULL", missing);
    return ES_ERR_INVALID;
  }
  if (opts->page_size == 0 || opts->page_size > 10000) {
    es__set_msg(errbuf, errlen,
                "group member: page_size must be 1 to 10000 (got %zu)",
                opts->page_size);
    return ES_ERR_INVALID;
  }
  if (opts->lease_ms < 1 || opts->lease_ms > ES_MAX_LEASE_MS) {
    es__set_msg(errbuf, errlen,
                "group member: lease_ms must be 1 to %d (got %u)",
                ES_MAX_LEASE_MS, opts->lease_ms);
    return ES_ERR_INVALID;
  }
  /* 0 would read (or retry) in a tight loop, a query per turn */
  if (opts->poll_ms == 0 || opts->retry_ms == 0) {
    es__set_msg(errbuf, errlen,
                "group member: poll_ms and retry_ms must be at least 1 ms"
                " (got %u and %u; es_group_sub_opts_init sets 1000 and 200)",
                opts->poll_ms, opts->retry_ms);
    return ES_ERR_INVALID;
  }
  /* malformed, it would be reconnected to every retry_ms for ever */
  char why[ES_ERRBUF_SIZE];
  int bad = es__conninfo_check(conninfo, why, sizeof why);
  if (bad) {
    es__set_msg(errbuf, errlen, "group member: %s", why);
    return bad;
  }
  char msg[ES_ERRBUF_SIZE];
  int rc = es__check_sub_name("group name", opts->group, msg, sizeof msg);
  if (!rc)
    rc = es__check_category(opts->category, msg, sizeof msg);
  if (rc) {
    es__set_msg(errbuf, errlen, "%s", msg);
    return rc;
  }
  es_group_sub_t *g = calloc(1, sizeof *g);
  if (!g)
    return ES_ERR_NOMEM;
  g->o = *opts;
  if (!(g->group = strdup(opts->group)) ||
      !(g->category = strdup(opts->category)) ||
      !(g->batch = es_batch_new(NULL))) {
    free_sub(g);
    return ES_ERR_NOMEM;
  }
  if ((rc = es_async_open(loop, conninfo, NULL, &g->as, errbuf, errlen))) {
    free_sub(g);
    return rc;
  }
  es__async_hooks_t h = {1, on_notify, on_lost, g};
  es__async_set_hooks(g->as, &h);
  uv_timer_init(loop, &g->timer);
  uv_timer_init(loop, &g->renew);
  g->timer.data = g->renew.data = g;
  unsigned every = g->o.lease_ms / 3 ? g->o.lease_ms / 3 : 1;
  uv_timer_start(&g->renew, on_renew_timer, every, every);
  g->settle_ms = SETTLE_FIRST_MS;
  next(g);
  *out = g;
  return 0;
}

static void maybe_free(es_group_sub_t *g) {
  if (--g->handles > 0)
    return;
  if (g->close_cb)
    g->close_cb(g, g->close_arg);
  free_sub(g);
}

static void on_async_closed(es_async_t *as, void *arg) {
  (void)as;
  maybe_free(arg);
}

static void on_timer_closed(uv_handle_t *h) { maybe_free(h->data); }

static void shutdown_sub(es_group_sub_t *g) {
  g->handles = 3;
  uv_close((uv_handle_t *)&g->timer, on_timer_closed);
  uv_close((uv_handle_t *)&g->renew, on_timer_closed);
  es_async_close(g->as, on_async_closed, g);
}

void es_group_sub_close(es_group_sub_t *g, es_group_sub_close_cb close_cb,
                        void *arg) {
  if (!g || g->closing)
    return;
  g->closing = 1;
  g->close_cb = close_cb;
  g->close_arg = arg;
  uv_timer_stop(&g->timer);
  uv_timer_stop(&g->renew);
  if (g->joining)
    return; /* on_joined leaves, then shuts down */
  leave_or_shut(g);
}
