/* order-projection: a read model of the order sagas (orders by status,
 * revenue by hour) kept from the coordinator's events by a consumer group
 * of any number of these processes (docs/eventstore.md, "A projection").
 *
 *   order-projection CONNINFO [--group NAME] [--lease DURATION]
 *                    [--share N] [--until-idle DURATION]
 *   order-projection CONNINFO --reset [--group NAME]
 *
 * Each process joins the group, renews its lease, reads the pages of the
 * buckets it owns (category "saga": the streams saga-<id> sagad writes),
 * and commits each page's read model changes with the page's
 * acknowledgement in one transaction, so every event counts exactly once
 * whatever crashes or rebalances. --reset empties the read model and
 * forgets the group's checkpoints in one transaction: the next members
 * rebuild it from the first event (stop the members first). --share N
 * waits, before reading, until the group shares its buckets among N
 * members; --until-idle stops (leaving the group) once reads have been
 * empty that long. Prints "handled N events" when it stops.
 *
 * The events (core/saga_codec.c, schemas/saga_events.proto): each stored
 * event is one saga transition, a saga.v1.SagaTransition (at_ms and the
 * machine's events, the record's type that of its first event). A
 * Started event names the definition and carries the saga input (the
 * order example's {"order_id": ..., "amount": N}); Completed,
 * Compensating, Compensated, Parked, Resolved and CancelRequested change
 * the order's status. Revenue by hour counts completed orders' amounts
 * in the hour (UTC) of their Completed transition. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "saga/eventstore.h"
#include "saga_events.pb-c.h"
#include "timetext.h"

static const char *const SCHEMA_SQL =
    "SELECT pg_advisory_xact_lock(7310868361213555);"
    "CREATE TABLE IF NOT EXISTS proj_orders ("
    " saga_id text PRIMARY KEY, status text NOT NULL,"
    " amount bigint NOT NULL, started_at timestamptz NOT NULL,"
    " updated_at timestamptz NOT NULL);"
    "CREATE TABLE IF NOT EXISTS proj_revenue_by_hour ("
    " hour timestamptz PRIMARY KEY, revenue bigint NOT NULL,"
    " orders bigint NOT NULL);"
    "CREATE OR REPLACE VIEW proj_orders_by_status AS"
    " SELECT status, count(*) AS orders FROM proj_orders GROUP BY status;";

/* Statements of a page's batch: fixed texts (each prepared once per
 * connection), parameters per event. $1 saga id, times in ms. */
#define STARTED_SQL                                                           \
  "INSERT INTO proj_orders (saga_id, status, amount, started_at,"             \
  " updated_at) VALUES ($1, 'running', $2::int8,"                             \
  " to_timestamp($3::int8 / 1000.0), to_timestamp($3::int8 / 1000.0))"       \
  " ON CONFLICT (saga_id) DO NOTHING"
#define STATUS_SQL                                                            \
  "UPDATE proj_orders SET status = $2, updated_at ="                          \
  " to_timestamp($3::int8 / 1000.0) WHERE saga_id = $1"
#define REVENUE_SQL                                                           \
  "INSERT INTO proj_revenue_by_hour AS r (hour, revenue, orders)"             \
  " SELECT date_trunc('hour', to_timestamp($2::int8 / 1000.0)"                \
  " AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', amount, 1 FROM proj_orders"       \
  " WHERE saga_id = $1 ON CONFLICT (hour) DO UPDATE SET"                      \
  " revenue = r.revenue + EXCLUDED.revenue, orders = r.orders + 1"

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* The status an event gives the order, or NULL when it gives none. */
static const char *status_of(Saga__V1__SagaEventType t) {
  switch (t) {
  case SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_COMPLETED:
    return "completed";
  case SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_COMPENSATING:
    return "compensating";
  case SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_COMPENSATED:
    return "compensated";
  case SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_PARKED:
    return "parked";
  case SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_RESOLVED:
    return "resolved";
  case SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_CANCEL_REQUESTED:
    return "cancelling";
  default:
    return NULL;
  }
}

/* Add the read model changes of one stored event to b. Returns 0, or -1
 * after saying why (a record that does not decode, or no memory). */
static int project(es_batch_t *b, const es_recorded_t *e) {
  Saga__V1__SagaTransition *tx = saga__v1__saga_transition__unpack(
      NULL, e->data_len, (const uint8_t *)e->data);
  if (!tx) {
    fprintf(stderr,
            "order-projection: event %" PRId64 " of stream \"%s\" is not a"
            " saga transition; skipped\n",
            e->version, e->stream_id);
    return 0; /* not ours: a read model skips what it does not know */
  }
  const char *saga_id = e->stream_id + strlen("saga-");
  char at[24], amount[24];
  snprintf(at, sizeof at, "%" PRId64, tx->at_ms);
  int rc = 0;
  for (size_t i = 0; i < tx->n_events && rc >= 0; i++) {
    const Saga__V1__SagaEvent *ev = tx->events[i];
    if (ev->type == SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_STARTED) {
      if (!ev->definition || strcmp(ev->definition, "order"))
        continue;
      cJSON *in = cJSON_ParseWithLength((const char *)ev->payload.data,
                                        ev->payload.len);
      const cJSON *a = cJSON_GetObjectItemCaseSensitive(in, "amount");
      snprintf(amount, sizeof amount, "%lld",
               cJSON_IsNumber(a) ? (long long)a->valuedouble : 0LL);
      cJSON_Delete(in);
      const char *p[3] = {saga_id, amount, at};
      rc = es_batch_add_statement(b, STARTED_SQL, 3, p);
      continue;
    }
    const char *st = status_of(ev->type);
    if (!st)
      continue;
    const char *p[3] = {saga_id, st, at};
    rc = es_batch_add_statement(b, STATUS_SQL, 3, p);
    if (rc >= 0 && ev->type == SAGA__V1__SAGA_EVENT_TYPE__SAGA_EVENT_COMPLETED) {
      const char *r[2] = {saga_id, at};
      rc = es_batch_add_statement(b, REVENUE_SQL, 2, r);
    }
  }
  saga__v1__saga_transition__free_unpacked(tx, NULL);
  if (rc < 0)
    fprintf(stderr, "order-projection: %s\n", es_strerror(rc));
  return rc < 0 ? -1 : 0;
}

static int setup(const char *conninfo) {
  PGconn *c = PQconnectdb(conninfo);
  int ok = PQstatus(c) == CONNECTION_OK;
  if (!ok)
    fprintf(stderr, "order-projection: could not connect: %s",
            PQerrorMessage(c));
  PGresult *r = ok ? PQexec(c, SCHEMA_SQL) : NULL;
  if (ok && PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "order-projection: could not create the read model: %s",
            PQresultErrorMessage(r));
    ok = 0;
  }
  PQclear(r);
  PQfinish(c);
  return ok ? 0 : -1;
}

/* Empty the read model and forget the group's checkpoints, together. */
static int reset(es_store_t *s, const char *group) {
  es_batch_t *b = es_batch_new(NULL);
  int rc = b ? 0 : ES_ERR_NOMEM;
  if (!rc && (rc = es_batch_add_statement(b, "DELETE FROM proj_orders", 0,
                                           NULL)) >= 0)
    rc = es_batch_add_statement(b, "DELETE FROM proj_revenue_by_hour", 0,
                                NULL);
  if (rc >= 0)
    rc = es_batch_add_checkpoint_reset(b, group);
  if (rc >= 0)
    rc = es_batch_execute(s, b);
  if (rc)
    fprintf(stderr, "order-projection: could not reset: %s\n",
            es_store_last_error(s));
  es_batch_free(b);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  const char *conninfo = NULL, *group = "order-projection";
  int64_t lease_ms = 10000, idle_ms = -1;
  int share = 0, do_reset = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--reset")) {
      do_reset = 1;
    } else if (!strcmp(a, "--group") && v) {
      group = v, i++;
    } else if (!strcmp(a, "--lease") && v) {
      if (saga__duration_parse(v, &lease_ms) || lease_ms < 1 ||
          lease_ms > ES_MAX_LEASE_MS)
        goto usage;
      i++;
    } else if (!strcmp(a, "--until-idle") && v) {
      if (saga__duration_parse(v, &idle_ms))
        goto usage;
      i++;
    } else if (!strcmp(a, "--share") && v) {
      share = atoi(v), i++;
      if (share < 1 || share > ES_GROUP_BUCKETS)
        goto usage;
    } else if (a[0] != '-' && !conninfo) {
      conninfo = a;
    } else {
      goto usage;
    }
  }
  if (!conninfo)
    goto usage;
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if (setup(conninfo))
    return 1;
  es_store_t *s = NULL;
  char err[ES_ERRBUF_SIZE];
  if (es_store_open(conninfo, NULL, &s, err, sizeof err)) {
    fprintf(stderr, "order-projection: %s\n", err);
    return 1;
  }
  if (do_reset) {
    int rc = reset(s, group);
    es_store_close(s);
    return rc;
  }
  es_batch_t *b = es_batch_new(NULL);
  int64_t me = 0, handled = 0;
  uint64_t mine = 0;
  int64_t renewed = 0, idle_since = -1;
  if (!b) {
    es_store_close(s);
    return 1;
  }
  int rc = 0;
  while (!stop) {
    int64_t now = now_ms();
    if (!me || now - renewed >= lease_ms / 3) {
      rc = me ? es_group_renew(s, group, me, (unsigned)lease_ms, &mine)
              : es_group_join(s, group, (unsigned)lease_ms, &me, &mine);
      if (rc == ES_ERR_NOT_FOUND) {
        me = 0; /* forgotten (a long pause): join again */
        continue;
      }
      if (rc) {
        fprintf(stderr, "order-projection: %s\n", es_store_last_error(s));
        sleep_ms(500);
        continue;
      }
      renewed = now;
    }
    if (share && (!mine || __builtin_popcountll(mine) >
                                (ES_GROUP_BUCKETS + share - 1) / share)) {
      es_page_t *p = NULL; /* hands over what the newcomers wait for */
      if (!es_member_read(s, group, "saga", me, 1, &p))
        es_page_free(p);
      sleep_ms(20);
      renewed = 0;
      continue;
    }
    share = 0;
    es_page_t *p = NULL;
    if ((rc = es_member_read(s, group, "saga", me, 500, &p))) {
      fprintf(stderr, "order-projection: %s\n", es_store_last_error(s));
      sleep_ms(500);
      continue;
    }
    if (p->n == 0) {
      es_page_free(p);
      if (idle_since < 0)
        idle_since = now;
      if (idle_ms >= 0 && now - idle_since >= idle_ms)
        break;
      sleep_ms(100);
      continue;
    }
    idle_since = -1;
    es_batch_reset(b);
    int bad = 0;
    for (size_t i = 0; i < p->n && !bad; i++)
      bad = project(b, &p->events[i]);
    if (!bad && es_batch_add_member_ack(b, group, me, p->buckets, p->next) <
                    0)
      bad = 1;
    rc = bad ? ES_ERR_NOMEM : es_batch_execute(s, b);
    if (rc == 0)
      handled += (int64_t)p->n;
    else if (rc != ES_ERR_NOT_OWNER) /* NOT_OWNER: moved; read again */
      fprintf(stderr, "order-projection: %s\n", es_store_last_error(s));
    es_page_free(p);
  }
  if (me)
    es_group_leave(s, group, me);
  printf("handled %" PRId64 " events\n", handled);
  es_batch_free(b);
  es_store_close(s);
  return 0;
usage:
  fprintf(stderr,
          "usage: order-projection CONNINFO [--group NAME] [--lease DURATION]"
          " [--share N] [--until-idle DURATION]\n"
          "       order-projection CONNINFO --reset [--group NAME]\n");
  return 2;
}
