#!/usr/bin/python3
"""order-payment.py: the order example's payment service in Python, a twin
of order-payment (payment.c on service.c) on the Python client library
(client/python): charge the order's card (DO; the saga's pivot), refund it
(COMPENSATE), with the same ledger, the same idempotency table and the same
behaviour, so either can serve payment.commands.

The card field of the order drives the demo's failures: "declined" is a
business failure; "slow" charges the card but never answers, so the
coordinator times the step out and, its attempts spent, refunds a charge
whose outcome it never learnt.

Ledger: <schema>.ledger, one row per effect applied, undone or voided,
written in the same transaction as the idempotency record (by effect key)
of the command that caused it (docs/example.md)."""

import argparse
import json
import logging
import os
import signal
import sys

try:
    import psycopg
    from psycopg import sql
    from saga_client import (Action, Outcome, Participant, PgStore,
                             RecordedReply, Result, SagaError,
                             record_in_transaction)
except ImportError as e:
    print(f"order-payment.py: {e} (Debian: python3-psycopg, "
          "python3-confluent-kafka, python3-protobuf; the saga_client "
          "package: pip install client/python)", file=sys.stderr)
    sys.exit(1)

NAME, DO_ACTION, UNDO_ACTION = "payment", "charge", "refund"

LEDGER_SQL = (
    "CREATE TABLE IF NOT EXISTS ledger ("
    " idempotency_key text PRIMARY KEY,"
    " saga_id text NOT NULL, step text NOT NULL, action text NOT NULL,"
    " effect text NOT NULL CHECK (effect IN ('applied', 'undone', 'voided')),"
    " order_id text, amount bigint,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " UNIQUE (saga_id, step, effect));"
    "ALTER TABLE ledger ADD COLUMN IF NOT EXISTS reference text;"
    "ALTER TABLE ledger ADD COLUMN IF NOT EXISTS received text")

INSERT_SQL = (
    "INSERT INTO ledger (idempotency_key, saga_id, step, action, effect,"
    " order_id, amount, reference, received)"
    " VALUES (%s, %s, %s, %s, 'applied', %s, %s::bigint, %s, nullif(%s, ''))"
    " ON CONFLICT DO NOTHING")

# The effect a COMPENSATE writes: undo what was applied, else void it.
UNDO_SQL = (
    "INSERT INTO ledger (idempotency_key, saga_id, step, action, effect,"
    " order_id, amount, reference)"
    " SELECT %(key)s, %(saga)s, %(step)s, %(action)s,"
    "  CASE WHEN EXISTS (SELECT 1 FROM ledger WHERE saga_id = %(saga)s AND"
    "   step = %(step)s AND effect = 'applied') THEN 'undone' ELSE 'voided'"
    "  END, %(order)s, %(amount)s::bigint, nullif(%(handed)s, '')"
    " ON CONFLICT DO NOTHING RETURNING effect")

VOIDED_SQL = ("SELECT 1 FROM ledger WHERE saga_id = %s AND step = %s"
              " AND effect = 'voided'")

log = logging.getLogger("order-payment")


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="order-payment.py",
        description="Payment service of the order example (Python twin of "
        "order-payment): charge the card (DO), refund it (COMPENSATE).",
        epilog="Order input: \"card\": \"declined\" -> FAILURE (card "
        "declined); \"card\": \"slow\" -> the card is charged but no reply "
        "is ever sent (the coordinator times out, then refunds); otherwise "
        "the card is charged. Ledger: <schema>.ledger -- one row per effect: "
        "'charge' applied, 'refund' undone, or voided (compensated before it "
        "arrived).")
    ap.add_argument("-b", "--bootstrap",
                    default=os.environ.get("SAGA_KAFKA_BOOTSTRAP"),
                    help="Kafka bootstrap servers (default "
                    "$SAGA_KAFKA_BOOTSTRAP)")
    ap.add_argument("-d", "--conninfo",
                    default=os.environ.get("SAGA_PG_CONNINFO"),
                    help="PostgreSQL of the ledger (default $SAGA_PG_CONNINFO)")
    ap.add_argument("-t", "--topic", default="payment.commands",
                    help="command topic (default payment.commands)")
    ap.add_argument("-g", "--group", default="order-payment",
                    help="consumer group (default order-payment)")
    ap.add_argument("-s", "--schema", default=NAME,
                    help="schema of the ledger and idempotency table "
                    "(default payment)")
    ap.add_argument("-X", dest="props", action="append", default=[],
                    metavar="NAME=VALUE", help="librdkafka property "
                    "(repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="log every command")
    a = ap.parse_args(argv)
    if not a.bootstrap:
        ap.error("no Kafka bootstrap servers: give --bootstrap or set "
                 "SAGA_KAFKA_BOOTSTRAP")
    if a.conninfo is None:
        ap.error("no PostgreSQL: give --conninfo or set SAGA_PG_CONNINFO")
    # Defaults first: a later -X of the same name wins. A new group reads
    # its topic from the start, so commands sent before it joined count.
    a.kafka = {"auto.offset.reset": "earliest",
               "allow.auto.create.topics": True, "fetch.wait.max.ms": 10,
               "session.timeout.ms": 6000}
    for p in a.props:
        name, eq, value = p.partition("=")
        if not eq or not name:
            ap.error(f'-X wants NAME=VALUE, got "{p}"')
        a.kafka[name] = value
    return a


def parts_of(cmd):
    """What a command carries, taken apart: (order, handed, received). A DO
    carries {"order": <the saga's input>, "reservation": ...} (the
    definition's "input" mapping); a COMPENSATE {"command": <that>,
    "output": <what the DO replied>}. order is {} when absent; handed is
    the reference the DO replied with ("" when unknown); received the
    earlier steps' references, '+'-joined."""
    try:
        doc = json.loads(cmd.payload)
    except ValueError:
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    handed = ""
    if cmd.action == Action.COMPENSATE:
        out = doc.get("output")
        ref = out.get("reference") if isinstance(out, dict) else None
        handed = ref if isinstance(ref, str) else ""
        doc = doc.get("command") if isinstance(doc.get("command"),
                                               dict) else {}
    order = doc.get("order") if isinstance(doc.get("order"), dict) else {}
    got = [doc.get(k) for k in ("reservation", "charge")]
    received = "+".join(g for g in got if isinstance(g, str) and g)
    return order, handed, received


class Payment:
    def __init__(self, args):
        self.args = args
        self.counts = dict(applied=0, undone=0, voided=0, refused=0, held=0)
        self.conn = None
        self.store = None
        self.connect()

    def connect(self):
        """A session on the ledger's schema, the ledger and the idempotency
        table created if missing. Raises what psycopg or PgStore raise."""
        if self.conn is not None:
            self.conn.close()
        self.conn = psycopg.connect(self.args.conninfo, autocommit=True)
        schema = sql.Identifier(self.args.schema)
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            schema))
        self.conn.execute(sql.SQL("SET search_path TO {}").format(schema))
        self.conn.execute(LEDGER_SQL)
        if self.store is None:
            self.store = PgStore(self.conn)
        self.store.conn = self.conn

    def decide(self, order):
        """(outcome, reason, reply?) of a DO for this order."""
        card = order.get("card") if isinstance(order.get("card"), str) else ""
        if card == "declined":
            return Outcome.FAILURE, "card declined", True
        if card == "slow":
            return Outcome.SUCCESS, "", False
        return Outcome.SUCCESS, "", True

    def apply(self, cmd, parts, outcome, reason, reply):
        """Write the ledger and, when answering, the idempotency record in
        one transaction. Returns (outcome, reason, what)."""
        order, handed, received = parts
        amount = order.get("amount")
        amount = int(amount) if isinstance(amount, (int, float)) else 0
        order_id = order.get("order_id") if isinstance(
            order.get("order_id"), str) else ""
        with self.conn.transaction():
            if cmd.action == Action.COMPENSATE:
                row = self.conn.execute(UNDO_SQL, dict(
                    key=cmd.idempotency_key, saga=cmd.saga_id, step=cmd.step,
                    action=UNDO_ACTION, order=order_id,
                    amount=amount, handed=handed)).fetchone()
                what = "already compensated" if row is None else (
                    "undone" if row[0] == "undone" else
                    "voided (never applied)")
                if row is not None:
                    self.counts["undone" if row[0] == "undone"
                                else "voided"] += 1
            elif self.conn.execute(VOIDED_SQL, (cmd.saga_id,
                                                cmd.step)).fetchone():
                # compensated before this command arrived: never apply it
                outcome, reason, what, reply = (Outcome.FAILURE,
                                                "already compensated",
                                                "refused", True)
                self.counts["refused"] += 1
            else:
                n = self.conn.execute(INSERT_SQL, (
                    cmd.idempotency_key, cmd.saga_id, cmd.step, DO_ACTION,
                    order_id, amount, self.reference(cmd),
                    received)).rowcount
                what = "applied" if n else \
                    "already applied by an earlier attempt"
                self.counts["applied"] += n
            if reply:
                # The output is recorded with the outcome: a redelivered
                # command gets the same reply, reference included.
                record_in_transaction(self.conn, cmd.effect_key, RecordedReply(
                    outcome, self.output(cmd, outcome, what), reason,
                    cmd.attempt))
        return outcome, reason, what, reply

    @staticmethod
    def reference(cmd):
        """This effect's own reference, which the saga hands on."""
        return f"{DO_ACTION}-{cmd.saga_id}"

    @classmethod
    def output(cls, cmd, outcome, what):
        """The step's output: what it did and, for an applied DO, its
        reference (the same bytes as the C services)."""
        out = {"service": NAME, "effect": what}
        if cmd.action == Action.DO and outcome == Outcome.SUCCESS:
            out["reference"] = cls.reference(cmd)
        return json.dumps(out, separators=(",", ":")).encode()

    def on_command(self, cmd):
        parts = parts_of(cmd)
        order = parts[0]
        outcome, reason, reply = Outcome.SUCCESS, "", True
        touch_ledger = True
        what = ""
        if cmd.action == Action.DO:
            outcome, reason, reply = self.decide(order)
            if outcome != Outcome.SUCCESS:
                what, touch_ledger = "refused", False
        if touch_ledger:
            try:
                outcome, reason, what, reply = self.apply(cmd, parts, outcome,
                                                          reason, reply)
            except (psycopg.Error, SagaError) as e:
                log.warning("%s", str(e).strip().splitlines()[0])
                outcome, reason, what, reply = (Outcome.RETRYABLE,
                                                "ledger unavailable",
                                                "ledger unavailable", True)
                if self.conn.broken:
                    try:  # a new session: the next command finds its schema
                        self.connect()
                    except (psycopg.Error, SagaError) as e2:
                        log.warning("could not reconnect: %s", e2)
        if self.args.verbose or not reply:
            log.info("saga=%s step=%s %s attempt=%d: %s%s", cmd.saga_id,
                     cmd.step, cmd.action.name, cmd.attempt, what,
                     f" ({reason})" if reason else "")
        if not reply:
            # Held until the service stops: the library then abandons it,
            # and a restarted service finds the effect in the ledger.
            self.counts["held"] += 1
            log.info("saga=%s step=%s: reply withheld", cmd.saga_id, cmd.step)
            return None
        return Result(outcome, self.output(cmd, outcome, what), reason)


def main(argv):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="order-payment.py: %(message)s")
    try:
        svc = Payment(args)
    except (psycopg.Error, SagaError) as e:
        log.error("could not set up the ledger: %s",
                  str(e).strip().splitlines()[0])
        return 1
    try:
        p = Participant(args.bootstrap, args.group, svc.store,
                        kafka_config=args.kafka)
        p.handle(args.topic, svc.on_command)
    except SagaError as e:
        log.error('could not consume "%s": %s', args.topic, e)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: p.stop())
    signal.signal(signal.SIGINT, lambda *_: p.stop())
    log.info("consuming %s as group %s, ledger %s.ledger", args.topic,
             args.group, args.schema)
    try:
        p.run()
    finally:
        # also when a handler raises out of run(): the group hears at once
        p.close()
        svc.conn.close()
    c = svc.counts
    log.info("stopped: %d applied, %d undone, %d voided, %d refused, "
             "%d replies withheld", c["applied"], c["undone"], c["voided"],
             c["refused"], c["held"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
