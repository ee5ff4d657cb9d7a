/* The frame of the order example's participant services (service.h).
 *
 * Each service keeps its ledger in its own schema of one PostgreSQL
 * database: <schema>.ledger, one row per effect applied, undone or voided,
 * written in the same transaction as the idempotency record (by effect key)
 * of the command that caused it. So after any crash either both are there or neither, and
 * a redelivered command gets its recorded reply without touching the
 * ledger again. The ledger is also keyed by (saga, step, effect): a later
 * attempt of a step whose earlier attempt was applied (its reply was late
 * or lost) applies nothing twice, and a compensation that arrives before
 * the step it undoes "voids" it, so the late DO is refused.
 *
 * Data flows between the services through the saga (the definition's
 * "input" mappings): a DO command carries {"order": <the saga's input>,
 * "reservation": ..., "charge": ...} with the references the earlier steps
 * replied with, and a COMPENSATE carries {"command": <that>, "output":
 * <what the DO replied>}. Each effect's row keeps its reference (a DO's
 * own, a COMPENSATE's the one it was handed: the refund names the charge)
 * and the references it received, so the ledger check can tell that every
 * service saw what the earlier ones replied. */
#include "service.h"

#include "args.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <uv.h>

#define MAX_PROPS 64

typedef struct svc {
  const svc_spec_t *spec;
  char prog[64]; /* "order-<name>" */
  const char *bootstrap, *conninfo, *topic, *group, *schema;
  const char *props[MAX_PROPS * 2 + 1];
  size_t n_props;
  int verbose;
  uv_loop_t *loop;
  PGconn *pg;
  saga_participant_t *p;
  uv_signal_t sigint, sigterm;
  char search_path[200]; /* "SET search_path TO <schema>" */
  unsigned long applied, undone, voided, refused, held;
  /* the commands whose replies are withheld: each still owed its
   * saga_participant_done, given after close (SAGA_ECANCELED, freed) */
  saga_pending_t **withheld;
  size_t n_withheld, cap_withheld;
} svc_t;

const char *svc_order_str(const cJSON *order, const char *name) {
  const cJSON *v = order ? cJSON_GetObjectItemCaseSensitive(order, name) : NULL;
  return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

static long long order_amount(const cJSON *order) {
  const cJSON *v =
      order ? cJSON_GetObjectItemCaseSensitive(order, "amount") : NULL;
  return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0;
}

static void usage(const svc_spec_t *s, FILE *f) {
  fprintf(f,
          "usage: order-%s [options]\n"
          "%s\n\n"
          "  -b, --bootstrap SERVERS  Kafka bootstrap servers "
          "(default $SAGA_KAFKA_BOOTSTRAP)\n"
          "  -d, --conninfo CONNINFO  PostgreSQL of the ledger "
          "(default $SAGA_PG_CONNINFO)\n"
          "  -t, --topic TOPIC        command topic (default %s)\n"
          "  -g, --group GROUP        consumer group (default order-%s)\n"
          "  -s, --schema NAME        schema of the ledger and idempotency "
          "table (default %s)\n"
          "  -X NAME=VALUE            librdkafka property (repeatable)\n"
          "  -v, --verbose            log every command\n"
          "  -h, --help               this text\n\n"
          "Ledger: %s.ledger -- one row per effect: '%s' applied, '%s' "
          "undone,\nor voided (compensated before it arrived).\n"
          "%s",
          s->name, s->about, s->topic, s->name, s->name, s->name,
          s->do_action, s->undo_action, s->behaviour);
}

/* ---- PostgreSQL ---- */

static PGresult *exec(svc_t *s, const char *sql, int n, const char *const *v) {
  return PQexecParams(s->pg, sql, n, NULL, v, NULL, NULL, 0);
}

static int exec_ok(svc_t *s, const char *sql, int n, const char *const *v,
                   int *rows) {
  PGresult *r = exec(s, sql, n, v);
  ExecStatusType st = PQresultStatus(r);
  int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  if (!ok)
    fprintf(stderr, "order-%s: %s", s->spec->name, PQerrorMessage(s->pg));
  else if (rows)
    *rows = st == PGRES_TUPLES_OK ? PQntuples(r) : atoi(PQcmdTuples(r));
  PQclear(r);
  return ok;
}

static int pg_setup(svc_t *s) {
  s->pg = PQconnectdb(s->conninfo);
  if (PQstatus(s->pg) != CONNECTION_OK) {
    fprintf(stderr, "order-%s: could not connect to PostgreSQL: %s",
            s->spec->name, PQerrorMessage(s->pg));
    return -1;
  }
  char *ident = PQescapeIdentifier(s->pg, s->schema, strlen(s->schema));
  if (!ident)
    return -1;
  snprintf(s->search_path, sizeof s->search_path, "SET search_path TO %s",
           ident);
  char sql[1024];
  snprintf(sql, sizeof sql,
           "CREATE SCHEMA IF NOT EXISTS %s; %s;"
           "CREATE TABLE IF NOT EXISTS ledger ("
           " idempotency_key text PRIMARY KEY,"
           " saga_id text NOT NULL, step text NOT NULL, action text NOT NULL,"
           " effect text NOT NULL CHECK (effect IN "
           "('applied', 'undone', 'voided')),"
           " order_id text, amount bigint,"
           " at timestamptz NOT NULL DEFAULT clock_timestamp(),"
           " UNIQUE (saga_id, step, effect));"
           "ALTER TABLE ledger ADD COLUMN IF NOT EXISTS reference text;"
           "ALTER TABLE ledger ADD COLUMN IF NOT EXISTS received text",
           ident, s->search_path);
  PQfreemem(ident);
  PGresult *r = PQexec(s->pg, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok)
    fprintf(stderr, "order-%s: could not create the ledger: %s",
            s->spec->name, PQerrorMessage(s->pg));
  PQclear(r);
  return ok ? 0 : -1;
}

static void rollback(svc_t *s) {
  PQclear(PQexec(s->pg, "ROLLBACK"));
  if (PQstatus(s->pg) != CONNECTION_OK) {
    /* a new session: the next command finds its schema again */
    PQreset(s->pg);
    PQclear(PQexec(s->pg, s->search_path));
  }
}

/* ---- commands ---- */

static const char insert_sql[] =
    "INSERT INTO ledger (idempotency_key, saga_id, step, action, effect,"
    " order_id, amount, reference, received)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7::bigint, $8, nullif($9, ''))"
    " ON CONFLICT DO NOTHING";

/* The effect a COMPENSATE writes: undo what was applied, else void it. */
static const char undo_sql[] =
    "INSERT INTO ledger (idempotency_key, saga_id, step, action, effect,"
    " order_id, amount, reference)"
    " SELECT $1, $2, $3, $4,"
    "  CASE WHEN EXISTS (SELECT 1 FROM ledger WHERE saga_id = $2 AND"
    "   step = $3 AND effect = 'applied') THEN 'undone' ELSE 'voided' END,"
    "  $5, $6::bigint, nullif($7, '')"
    " ON CONFLICT DO NOTHING RETURNING effect";

/* What a command carries, taken apart (see the comment at the top). */
typedef struct parts {
  cJSON *doc;          /* the parsed payload, owned; NULL: not JSON */
  const cJSON *order;  /* the saga's input; NULL: not an object */
  const char *handed;  /* COMPENSATE: the reference its DO replied, or "" */
  char reference[320]; /* DO: this effect's own reference: an action's
                          name, '-', a saga id of up to 255 bytes */
  char received[2 * 320 + 2]; /* DO: the earlier steps' references (two at
                                 most), '+'-joined, never cut: the ledger
                                 check compares them whole */
} parts_t;

static const cJSON *member(const cJSON *obj, const char *name) {
  return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name)
                             : NULL;
}

static const char *member_str(const cJSON *obj, const char *name) {
  const cJSON *v = member(obj, name);
  return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

static void take_apart(const svc_t *s, const saga_command_t *c, parts_t *p) {
  memset(p, 0, sizeof *p);
  p->handed = "";
  p->doc = cJSON_ParseWithLength(c->payload, c->payload_len);
  const cJSON *cmd =
      c->action == SAGA_ACTION_COMPENSATE ? member(p->doc, "command") : p->doc;
  p->order = member(cmd, "order");
  if (!cJSON_IsObject(p->order))
    p->order = NULL;
  if (c->action == SAGA_ACTION_COMPENSATE)
    p->handed = member_str(member(p->doc, "output"), "reference");
  const char *got[] = {member_str(cmd, "reservation"),
                       member_str(cmd, "charge")};
  for (size_t i = 0; i < sizeof got / sizeof *got; i++)
    if (*got[i]) {
      size_t n = strlen(p->received);
      snprintf(p->received + n, sizeof p->received - n, "%s%s",
               n ? "+" : "", got[i]);
    }
  snprintf(p->reference, sizeof p->reference, "%s-%s", s->spec->do_action,
           c->saga_id);
}

typedef struct decision {
  saga_outcome_t outcome;
  const char *reason;
  const char *what; /* for the log */
  int reply;        /* 0 = hold the command, never answer */
  char out[512];    /* the reply's output (JSON) */
} decision_t;

/* The step's output: what it did and, for an applied DO, its reference,
 * which the saga hands to the later steps and to its compensation. */
static void set_output(const svc_t *s, const saga_command_t *c,
                       const parts_t *p, decision_t *d) {
  int applied = c->action == SAGA_ACTION_DO &&
                d->outcome == SAGA_OUTCOME_SUCCESS;
  snprintf(d->out, sizeof d->out,
           "{\"service\":\"%s\",\"effect\":\"%s\"%s%s%s}", s->spec->name,
           d->what, applied ? ",\"reference\":\"" : "",
           applied ? p->reference : "", applied ? "\"" : "");
}

/* Write the ledger and, when answering, the idempotency record in one
 * transaction. Returns 0, or -1 when the database failed (rolled back). */
static int apply_command(svc_t *s, const saga_command_t *c, const parts_t *p,
                         decision_t *d) {
  const cJSON *order = p->order;
  char amount[32];
  snprintf(amount, sizeof amount, "%lld", order_amount(order));
  const char *order_id = svc_order_str(order, "order_id");
  int rows = 0;
  if (!exec_ok(s, "BEGIN", 0, NULL, NULL))
    goto fail;
  if (c->action == SAGA_ACTION_COMPENSATE) {
    const char *v[] = {c->idempotency_key, c->saga_id,
                       c->step, s->spec->undo_action,
                       order_id, amount, p->handed};
    PGresult *r = exec(s, undo_sql, 7, v);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      fprintf(stderr, "order-%s: %s", s->spec->name, PQerrorMessage(s->pg));
      PQclear(r);
      goto fail;
    }
    if (PQntuples(r) == 0) {
      d->what = "already compensated";
    } else if (!strcmp(PQgetvalue(r, 0, 0), "undone")) {
      d->what = "undone";
      s->undone++;
    } else {
      d->what = "voided (never applied)";
      s->voided++;
    }
    PQclear(r);
  } else {
    const char *v[] = {c->saga_id, c->step};
    if (!exec_ok(s,
                 "SELECT 1 FROM ledger WHERE saga_id = $1 AND step = $2"
                 " AND effect = 'voided'",
                 2, v, &rows))
      goto fail;
    if (rows) {
      /* compensated before this command arrived: never apply it now */
      *d = (decision_t){SAGA_OUTCOME_FAILURE, "already compensated",
                        "refused", 1, ""};
      s->refused++;
    } else {
      const char *iv[] = {c->idempotency_key, c->saga_id,    c->step,
                          s->spec->do_action, "applied",       order_id,
                          amount, p->reference, p->received};
      if (!exec_ok(s, insert_sql, 9, iv, &rows))
        goto fail;
      d->what = rows ? "applied" : "already applied by an earlier attempt";
      if (rows)
        s->applied++;
    }
  }
  if (d->reply) {
    char err[512];
    /* The output is recorded with the outcome: a redelivered command gets
     * the same reply, reference included. */
    set_output(s, c, p, d);
    saga_recorded_reply_t rec = {d->outcome, d->out, strlen(d->out),
                                 d->reason, c->attempt};
    if (saga_pg_record_in_transaction(s->pg, c->effect_key, &rec, err,
                                      sizeof err) != 0) {
      fprintf(stderr, "order-%s: %s\n", s->spec->name, err);
      goto fail;
    }
  }
  if (!exec_ok(s, "COMMIT", 0, NULL, NULL))
    goto fail;
  return 0;
fail:
  rollback(s);
  return -1;
}

static void on_command(saga_participant_t *p, const saga_command_t *c,
                       saga_pending_t *pending, void *arg) {
  (void)p;
  svc_t *s = arg;
  parts_t parts;
  take_apart(s, c, &parts);
  const cJSON *order = parts.order;
  decision_t d = {SAGA_OUTCOME_SUCCESS, NULL, "", 1, ""};
  int touch_ledger = 1;
  if (c->action == SAGA_ACTION_DO) {
    const char *reason = NULL;
    switch (s->spec->decide(order, c, &reason)) {
    case SVC_APPLY:
      break;
    case SVC_APPLY_NO_REPLY:
      d.reply = 0;
      break;
    case SVC_FAIL:
      d = (decision_t){SAGA_OUTCOME_FAILURE, reason, "refused", 1, ""};
      touch_ledger = 0;
      break;
    case SVC_RETRY:
      d = (decision_t){SAGA_OUTCOME_RETRYABLE, reason, "not now", 1, ""};
      touch_ledger = 0;
      break;
    }
  }
  if (touch_ledger && apply_command(s, c, &parts, &d) != 0)
    d = (decision_t){SAGA_OUTCOME_RETRYABLE, "ledger unavailable",
                     "ledger unavailable", 1, ""};
  if (s->verbose || !d.reply)
    fprintf(stderr, "order-%s: saga=%s step=%s %s attempt=%u: %s%s%s%s\n",
            s->spec->name, c->saga_id, c->step, saga_action_name(c->action),
            c->attempt, d.what, d.reason ? " (" : "",
            d.reason ? d.reason : "", d.reason ? ")" : "");
  if (!d.out[0])
    set_output(s, c, &parts, &d);
  cJSON_Delete(parts.doc);
  if (!d.reply) {
    /* Held until the service stops: the library then abandons it, and a
     * restarted service finds the effect already in the ledger. The
     * pending stays ours until we give it back (after close). */
    if (s->n_withheld == s->cap_withheld) {
      size_t cap = s->cap_withheld ? s->cap_withheld * 2 : 16;
      saga_pending_t **w = realloc(s->withheld, cap * sizeof *w);
      if (!w) { /* cannot keep it: answer now, as retryable */
        (void)saga_participant_done(pending, SAGA_OUTCOME_RETRYABLE, NULL,
                                    0, "out of memory");
        return;
      }
      s->withheld = w;
      s->cap_withheld = cap;
    }
    s->withheld[s->n_withheld++] = pending;
    s->held++;
    fprintf(stderr, "order-%s: saga=%s step=%s: reply withheld\n",
            s->spec->name, c->saga_id, c->step);
    return;
  }
  if (saga_participant_done(pending, d.outcome, d.out, strlen(d.out),
                            d.reason) != 0)
    fprintf(stderr, "order-%s: saga=%s: could not send the reply\n",
            s->spec->name, c->saga_id);
}

/* ---- life cycle ---- */

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void on_participant_closed(void *arg) {
  svc_t *s = arg;
  uv_close((uv_handle_t *)&s->sigint, on_handle_closed);
  uv_close((uv_handle_t *)&s->sigterm, on_handle_closed);
}

static void on_signal(uv_signal_t *h, int signum) {
  svc_t *s = h->data;
  (void)signum;
  uv_signal_stop(&s->sigint);
  uv_signal_stop(&s->sigterm);
  saga_participant_close(s->p, on_participant_closed, s);
  s->p = NULL;
}

static int parse_args(svc_t *s, int argc, char **argv) {
  static const struct option opts[] = {
      {"bootstrap", required_argument, NULL, 'b'},
      {"conninfo", required_argument, NULL, 'd'},
      {"topic", required_argument, NULL, 't'},
      {"group", required_argument, NULL, 'g'},
      {"schema", required_argument, NULL, 's'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "b:d:t:g:s:X:vh", opts, NULL)) != -1) {
    switch (o) {
    case 'b': s->bootstrap = optarg; break;
    case 'd': s->conninfo = optarg; break;
    case 't': s->topic = optarg; break;
    case 'g': s->group = optarg; break;
    case 's': s->schema = optarg; break;
    case 'v': s->verbose = 1; break;
    case 'X':
      if (order_add_property(s->props, &s->n_props, MAX_PROPS, optarg,
                             s->prog) != 0)
        return 2;
      break;
    case 'h': usage(s->spec, stdout); return 0;
    default: usage(s->spec, stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "order-%s: unexpected argument \"%s\"\n", s->spec->name,
            argv[optind]);
    return 2;
  }
  if (!s->bootstrap || !*s->bootstrap) {
    fprintf(stderr, "order-%s: no Kafka bootstrap servers: give --bootstrap "
                    "or set SAGA_KAFKA_BOOTSTRAP\n", s->spec->name);
    return 2;
  }
  if (!s->conninfo) {
    fprintf(stderr, "order-%s: no PostgreSQL: give --conninfo or set "
                    "SAGA_PG_CONNINFO\n", s->spec->name);
    return 2;
  }
  return -1;
}

int svc_main(const svc_spec_t *spec, int argc, char **argv) {
  char group[128];
  snprintf(group, sizeof group, "order-%s", spec->name);
  /* Defaults first: a later -X of the same name wins. A new group reads
   * its topic from the start, so commands sent before it joined count. */
  svc_t s = {.spec = spec,
             .bootstrap = getenv("SAGA_KAFKA_BOOTSTRAP"),
             .conninfo = getenv("SAGA_PG_CONNINFO"),
             .topic = spec->topic,
             .group = group,
             .schema = spec->name,
             .props = {"auto.offset.reset", "earliest",
                       "allow.auto.create.topics", "true",
                       "fetch.wait.max.ms", "10",
                       "session.timeout.ms", "6000"},
             .n_props = 4};
  snprintf(s.prog, sizeof s.prog, "order-%s", spec->name);
  int rc = parse_args(&s, argc, argv);
  if (rc >= 0)
    return rc;
  rc = 1;
  char err[512];
  uv_loop_t loop;
  uv_loop_init(&loop);
  s.loop = &loop;
  saga_idem_store_t store;
  if (pg_setup(&s) != 0)
    goto out;
  if (saga_idem_store_pg(s.pg, &store, err, sizeof err) != 0) {
    fprintf(stderr, "order-%s: %s\n", spec->name, err);
    goto out;
  }
  saga_participant_config_t cfg = {
      .kafka = {.bootstrap_servers = s.bootstrap, .properties = s.props},
      .group_id = s.group,
      .store = store,
  };
  if (saga_participant_new(&loop, &cfg, &s.p, err, sizeof err) != 0) {
    fprintf(stderr, "order-%s: %s\n", spec->name, err);
    store.destroy(store.ctx); /* not taken */
    goto out;
  }
  if (saga_participant_handle(s.p, s.topic, on_command, &s) != 0 ||
      saga_participant_start(s.p, err, sizeof err) != 0) {
    fprintf(stderr, "order-%s: could not consume \"%s\": %s\n", spec->name,
            s.topic, err);
    saga_participant_close(s.p, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    goto out;
  }
  uv_signal_init(&loop, &s.sigint);
  uv_signal_init(&loop, &s.sigterm);
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  fprintf(stderr, "order-%s: consuming %s as group %s, ledger %s.ledger\n",
          spec->name, s.topic, s.group, s.schema);
  uv_run(&loop, UV_RUN_DEFAULT);
  /* closed: the withheld commands were abandoned (redelivered to the next
   * consumer); each pending is given back, which frees it */
  for (size_t i = 0; i < s.n_withheld; i++)
    (void)saga_participant_done(s.withheld[i], SAGA_OUTCOME_RETRYABLE, NULL,
                                0, NULL);
  free(s.withheld);
  fprintf(stderr,
          "order-%s: stopped: %lu applied, %lu undone, %lu voided, "
          "%lu refused, %lu replies withheld\n",
          spec->name, s.applied, s.undone, s.voided, s.refused, s.held);
  rc = 0;
out:
  uv_loop_close(&loop);
  PQfinish(s.pg);
  return rc;
}
