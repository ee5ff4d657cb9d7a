"""The order example end to end with the payment service in Python
(examples/order-saga/python/payment.py on the saga_client library) in
place of the C order-payment: the real sagad, the C inventory and shipping
services and order-starter as processes on the embedded PostgreSQL and
Kafka. Every order must end as its input says, and every ledger must hold
exactly the effects that outcome calls for
(examples/order-saga/ledger-check.sql). The Python Starter then runs two
more orders against the same sagad, checked by the same ledger check.

usage: test_order_saga_python.py SOURCE_DIR SAGAD INVENTORY SHIPPING STARTER"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import stack

ARGS = sys.argv[1:6]
del sys.argv[1:6]


class OrderSagaWithPythonPayment(unittest.TestCase):
    def setUp(self):
        if len(ARGS) != 5:
            self.fail(__doc__.strip().splitlines()[-1])
        self.src, self.sagad, self.inventory, self.shipping, self.starter = \
            ARGS
        self.work = tempfile.mkdtemp(prefix="test-order-saga-python.")
        self.conninfo = stack.create_database("order_saga_py")
        self.procs = {}

    def tearDown(self):
        self.stop_all()
        stack.drop_database(self.conninfo)
        shutil.rmtree(self.work, ignore_errors=True)

    # ---- processes --------------------------------------------------------

    def spawn(self, name, argv):
        log = open(os.path.join(self.work, f"{name}.log"), "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        log.close()

    def log_tail(self, name, n=3000):
        try:
            with open(os.path.join(self.work, f"{name}.log"), "rb") as f:
                data = f.read()
        except OSError:
            return f"---- {name}.log (none)"
        return f"---- {name}.log (last {n} bytes)\n" + \
            data[-n:].decode(errors="replace")

    def stop_all(self):
        """SIGTERM every process still running; returns the names of those
        that did not exit 0 (a sanitizer report makes a process exit
        non-zero)."""
        bad = []
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs.items():
            try:
                rc = p.wait(timeout=stack.seconds(15))
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            if rc != 0:
                print(f"{name} did not stop cleanly (exit {rc})\n"
                      f"{self.log_tail(name)}", file=sys.stderr)
                bad.append(name)
        self.procs = {}
        return bad

    def write_definition(self, ns):
        with open(os.path.join(self.src, "examples", "order-saga", "demo",
                               "order.v1.json")) as f:
            text = f.read()
        text = text.replace('"topic": "', f'"topic": "{ns}.')
        os.mkdir(os.path.join(self.work, "definitions"))
        with open(os.path.join(self.work, "definitions", "order.v1.json"),
                  "w") as f:
            f.write(text)

    def run_starter(self, name, ns, count, declined=0, slow=0, oos=0,
                    flaky=0):
        results = os.path.join(self.work, f"{name}.tsv")
        argv = [self.starter, "--bootstrap", stack.kafka_bootstrap(),
                "--count", str(count), "--declined", str(declined),
                "--slow", str(slow), "--out-of-stock", str(oos),
                "--flaky", str(flaky), "--inbox", f"{ns}.saga.inbox",
                "--notifications", f"{ns}.saga.notifications",
                "--timeout", f"{stack.seconds(40) * 1000}ms",
                "--results", results, "-X", "fetch.wait.max.ms=5"]
        with open(os.path.join(self.work, f"{name}.log"), "wb") as log:
            try:
                rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=stack.seconds(90),
                                    check=False).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        if rc != 0:
            logs = "\n".join(self.log_tail(n) for n in
                             [name, *self.procs])
            self.fail(f"order-starter {name} ended {rc}\n{logs}")
        with open(results) as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]

    # ---- the test ------------------------------------------------------------

    def test_every_order_ends_as_its_input_says_and_ledgers_agree(self):
        import psycopg
        from saga_client import NotificationKind, Starter
        ns = stack.unique_name("orderpy")
        self.write_definition(ns)
        boot = stack.kafka_bootstrap()
        sets = [f"store.conninfo={self.conninfo}",
                f"kafka.bootstrap.servers={boot}",
                f"definitions.dir={self.work}/definitions",
                f"topic.inbox={ns}.saga.inbox",
                f"topic.notifications={ns}.saga.notifications",
                # progress notes beside the outcomes, for the subscriber
                # below (off by default)
                f"topic.progress={ns}.saga.notifications",
                f"topic.dlq={ns}.saga.dlq", f"group.id={ns}.sagad",
                "admin.listen=127.0.0.1:0", "log.format=text",
                "kafka.fetch.wait.max.ms=5", "kafka.session.timeout.ms=6000",
                "kafka.auto.offset.reset=earliest"]
        self.spawn("sagad", [self.sagad] + [a for s in sets
                                            for a in ("--set", s)])
        for name, path in (("inventory", self.inventory),
                           ("shipping", self.shipping)):
            self.spawn(name, [path, "--bootstrap", boot, "--conninfo",
                              self.conninfo, "--topic",
                              f"{ns}.{name}.commands", "--group",
                              f"{ns}.{name}", "-X", "fetch.wait.max.ms=5"])
        payment = os.path.join(self.src, "examples", "order-saga", "python",
                               "payment.py")
        self.spawn("payment", [sys.executable, payment, "--bootstrap", boot,
                               "--conninfo", self.conninfo, "--topic",
                               f"{ns}.payment.commands", "--group",
                               f"{ns}.payment", "-X", "fetch.wait.max.ms=5"])

        # One order through every service first, so every consumer group
        # has joined before the mix starts (first joins take seconds).
        rows = self.run_starter("warmup", ns, 1)
        rows += self.run_starter("results", ns, 16, declined=4, slow=2,
                                 oos=2, flaky=2)
        self.assertEqual(len(rows), 17)
        for saga_id, _order, scenario, expected, outcome, _ms in rows:
            self.assertEqual(outcome, expected, f"saga {saga_id} ({scenario})")

        # The Python starter against the same sagad: one plain order, one
        # declined at payment.
        with Starter(boot, inbox=f"{ns}.saga.inbox",
                     notifications=f"{ns}.saga.notifications",
                     kafka_config={"fetch.wait.max.ms": 5}) as st:
            seen = []
            st.subscribe(seen.append)
            ok = st.run("order", json.dumps({"order_id": "py-1",
                                             "amount": 12}),
                        saga_id=f"{ns}-py-ok", timeout=stack.seconds(40))
            declined = st.run("order", json.dumps({"order_id": "py-2",
                                                   "amount": 7,
                                                   "card": "declined"}),
                              saga_id=f"{ns}-py-declined",
                              timeout=stack.seconds(40))
        self.assertEqual((ok.saga_id, ok.kind),
                         (f"{ns}-py-ok", NotificationKind.COMPLETED))
        self.assertEqual((declined.saga_id, declined.kind),
                         (f"{ns}-py-declined", NotificationKind.COMPENSATED))
        # its charge failed (the Python service's FAILURE), then the
        # reservation was released
        steps = [(n.step, n.action, n.outcome) for n in seen
                 if n.saga_id == declined.saga_id
                 and n.kind == NotificationKind.STEP_DONE]
        self.assertEqual(steps, [("reserve_inventory", 1, 1),
                                 ("charge_payment", 1, 2),
                                 ("reserve_inventory", 2, 1)])
        rows += [[ok.saga_id, "py-1", "ok", "", "", ""],
                 [declined.saga_id, "py-2", "declined", "", "", ""]]

        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute("CREATE TEMP TABLE order_run (saga_id text, order_id "
                      "text, scenario text, expected text, outcome text, "
                      "ms text)")
            with c.cursor() as cur:
                cur.executemany("INSERT INTO order_run VALUES "
                                "(%s, %s, %s, %s, %s, %s)", rows)
            with open(os.path.join(self.src, "examples", "order-saga",
                                   "ledger-check.sql")) as f:
                problems = c.execute(f.read()).fetchall()
            self.assertEqual(problems, [])
            # Each scenario really happened: 17 reservations (all but the 2
            # out of stock, with the Python starter's 2), 2 refunded charges
            # of payments that never answered, 10 orders shipped (warm-up,
            # ok, flaky and the Python starter's plain order); the payment
            # ledger and idempotency records were written by the Python
            # service.
            counts = c.execute(
                "SELECT (SELECT count(*) FROM inventory.ledger"
                "         WHERE effect = 'applied'),"
                " (SELECT count(*) FROM payment.ledger WHERE effect = 'undone'),"
                " (SELECT count(*) FROM shipping.ledger),"
                " (SELECT count(*) FROM payment.ledger WHERE effect = 'applied'),"
                " (SELECT count(*) FROM payment.saga_idempotency)").fetchone()
            self.assertEqual(counts[:3], (17, 2, 10))
            # charged: warm-up, 6 ok, 2 flaky, 2 slow, the Python ok order
            self.assertEqual(counts[3], 12)
            self.assertGreater(counts[4], 0)

        # Every program stops cleanly on SIGTERM; the Python service says
        # what it did.
        self.assertEqual(self.stop_all(), [])
        stopped = re.search(r"stopped: (\d+) applied, (\d+) undone, \d+ "
                            r"voided, \d+ refused, (\d+) replies withheld",
                            self.log_tail("payment", 600))
        self.assertIsNotNone(stopped, self.log_tail("payment"))
        applied, undone, held = map(int, stopped.groups())
        self.assertEqual((applied, undone), (12, 2))
        self.assertGreaterEqual(held, 2)  # each slow order's charge


if __name__ == "__main__":
    stack.require_stack()
    unittest.main()
