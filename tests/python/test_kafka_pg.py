"""saga_client against the embedded PostgreSQL and Kafka: the PostgreSQL
effect store's rule and its transaction, and a participant that replies,
dead-letters, commits, and -- restarted on the same group and database --
answers a redelivered command and a later attempt from the store without
running its handler; after a crash between recording a reply and sending
it (crash_participant.py), the restarted participant answers from the
store."""
import unittest

import stack
from saga_client import (MemoryStore, Outcome, Participant, PgStore,
                         RecordedReply, Result, SagaError, StoreError,
                         record_in_transaction, wire)
from saga_client._pb import saga_pb2 as pb


class PgEffectStore(unittest.TestCase):
    def setUp(self):
        self.conninfo = stack.create_database("py_store")
        self.store = PgStore(self.conninfo)

    def tearDown(self):
        self.store.close()
        stack.drop_database(self.conninfo)

    def test_the_store_rule_in_postgresql(self):
        s = self.store
        s.record("k", RecordedReply(Outcome.RETRYABLE, b"", "busy", 1))
        s.record("k", RecordedReply(Outcome.FAILURE, b"", "no", 2))
        self.assertEqual(s.lookup("k"),
                         RecordedReply(Outcome.FAILURE, b"", "no", 2))
        s.record("k", RecordedReply(Outcome.SUCCESS, b"x", "", 1))  # stale
        self.assertEqual(s.lookup("k").outcome, Outcome.FAILURE)
        s.record("k", RecordedReply(Outcome.SUCCESS, b"\x00\xffout", "", 3))
        s.record("k", RecordedReply(Outcome.FAILURE, b"", "late", 4))
        self.assertEqual(s.lookup("k"),
                         RecordedReply(Outcome.SUCCESS, b"\x00\xffout", "", 3))
        self.assertIsNone(s.lookup("other"))

    def test_every_store_keeps_the_same_bytes(self):
        # a str payload is kept as UTF-8 in both stores (PostgreSQL's
        # driver refused it with a TypeError, the memory store kept a str
        # no reply could carry); what no reply can carry is refused when
        # the RecordedReply is made
        mem = MemoryStore()
        for s in (self.store, mem):
            s.record("t", RecordedReply(Outcome.SUCCESS, '{"café":1}', None,
                                        1))
            self.assertEqual(s.lookup("t"), RecordedReply(
                Outcome.SUCCESS, '{"café":1}'.encode(), "", 1))
        for bad in ({"payload": {"a": 1}}, {"reason": ValueError("x")},
                    {"reason": "a\0b"}):
            with self.assertRaises(SagaError) as e:
                RecordedReply(Outcome.FAILURE, **bad)
            self.assertEqual(e.exception.code, "SAGA_EINVAL")

    def test_a_role_that_may_not_create_tables_opens_the_store(self):
        # the table in place (setUp's store made it), a role with rights
        # on it only opens a store and records: nothing is created, so
        # PostgreSQL's refusal of CREATE TABLE IF NOT EXISTS to a role
        # without CREATE on the schema never comes up
        import psycopg
        import os
        role = f"py_store_writer_{os.getpid()}"
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")
            c.execute(f"CREATE ROLE {role} NOLOGIN")
            c.execute(f"GRANT SELECT, INSERT, UPDATE ON saga_idempotency "
                      f"TO {role}")
        try:
            writer = PgStore(self.conninfo + f" options='-c role={role}'")
            try:
                writer.record("w", RecordedReply(Outcome.SUCCESS, b"ok", "",
                                                 1))
                self.assertEqual(writer.lookup("w").payload, b"ok")
            finally:
                writer.close()
        finally:
            with psycopg.connect(self.conninfo, autocommit=True) as c:
                c.execute(f"DROP OWNED BY {role}")
                c.execute(f"DROP ROLE {role}")

    def test_the_table_is_the_c_librarys(self):
        cols = self.store.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE "
            "table_name = 'saga_idempotency' ORDER BY ordinal_position"
        ).fetchall()
        self.assertEqual([c[0] for c in cols], ["key", "outcome", "payload",
                                                "reason", "recorded_at",
                                                "attempt"])

    def test_record_in_transaction_is_one_fact_with_the_effect(self):
        import psycopg
        with psycopg.connect(self.conninfo) as conn:
            conn.execute("CREATE TABLE effect (k text)")
            conn.commit()
            conn.execute("INSERT INTO effect VALUES ('a')")
            record_in_transaction(conn, "s/charge/DO", RecordedReply(
                Outcome.SUCCESS, b"a", "", 1))
            conn.rollback()
            self.assertIsNone(self.store.lookup("s/charge/DO"))
            conn.execute("INSERT INTO effect VALUES ('b')")
            record_in_transaction(conn, "s/charge/DO", RecordedReply(
                Outcome.SUCCESS, b"b", "", 1))
            conn.commit()
        self.assertEqual(self.store.lookup("s/charge/DO").payload, b"b")

    def test_a_lost_session_is_opened_again(self):
        # a store that opened its own connection opens it again once when
        # the server ended its session (a restart, a failover, an
        # administrator's pg_terminate_backend), and the call goes on; it
        # used to fail every call from then on, until a restart
        import psycopg
        s = self.store
        s.record("s/a/DO", RecordedReply(Outcome.SUCCESS, b"x", "", 1))
        for _ in range(2):
            with psycopg.connect(self.conninfo, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)",
                              (s.conn.info.backend_pid,))
            self.assertEqual(s.lookup("s/a/DO").payload, b"x")
        with psycopg.connect(self.conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)",
                          (s.conn.info.backend_pid,))
        s.record("s/b/DO", RecordedReply(Outcome.FAILURE, b"", "no", 1))
        self.assertEqual(s.lookup("s/b/DO").reason, "no")

    def test_a_store_that_cannot_make_its_table_closes_its_connection(self):
        # the connection the store opened was left open when the table
        # could not be made
        import psycopg
        from unittest import mock
        self.store.conn.execute("DROP TABLE saga_idempotency")
        opened = []
        connect = psycopg.connect

        def spy(*a, **k):
            opened.append(connect(*a, **k))
            return opened[-1]
        with mock.patch.object(psycopg, "connect", spy):
            with self.assertRaises(StoreError) as e:
                PgStore(self.conninfo +
                        " options='-c default_transaction_read_only=on'")
        self.assertIn('could not create table "saga_idempotency"',
                      str(e.exception))
        self.assertEqual(len(opened), 1)
        self.assertTrue(opened[0].closed)

    def test_a_closed_store_stays_closed(self):
        # lookup() after close() opened a new connection without a word
        s = PgStore(self.conninfo)
        s.record("s/c/DO", RecordedReply(Outcome.SUCCESS, b"x", "", 1))
        s.close()
        for call in (lambda: s.lookup("s/c/DO"), lambda: s.record(
                "s/c/DO", RecordedReply(Outcome.SUCCESS, b"x", "", 1))):
            with self.assertRaises(StoreError) as e:
                call()
            self.assertIn("the store is closed", str(e.exception))
        self.assertTrue(s.conn.closed)
        s.close()  # harmless

    def test_a_broken_connection_says_what_failed(self):
        import psycopg
        conn = psycopg.connect(self.conninfo, autocommit=True)
        store = PgStore(conn)
        conn.close()
        with self.assertRaises(StoreError) as e:
            store.lookup("s/x/DO")
        self.assertEqual(e.exception.code, "SAGA_ESTORE")
        self.assertIn('could not look up idempotency key "s/x/DO"',
                      str(e.exception))
        with self.assertRaises(StoreError) as e:
            PgStore("host=/nonexistent dbname=none connect_timeout=2")
        self.assertIn("could not connect to PostgreSQL", str(e.exception))


def command(saga, attempt, reply_topic):
    c = pb.Command(saga_id=saga, saga_type="order", step="charge", action=1,
                   attempt=attempt,
                   idempotency_key=wire.idempotency_key(saga, "charge", 1,
                                                        attempt),
                   reply_topic=reply_topic, payload=b'{"amount":5}')
    return wire.encode(c, correlation_id="order-9",
                       traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")


KAFKA = {"session.timeout.ms": 6000, "fetch.wait.max.ms": 5,
         "auto.offset.reset": "earliest", "allow.auto.create.topics": True}


class ParticipantOnKafka(unittest.TestCase):
    def setUp(self):
        from confluent_kafka import Consumer, Producer
        self.conninfo = stack.create_database("py_participant")
        self.topic = stack.unique_name("py.commands")
        self.replies_topic = stack.unique_name("py.replies")
        self.producer = Producer({"bootstrap.servers":
                                  stack.kafka_bootstrap()})
        self.reader = Consumer({"bootstrap.servers": stack.kafka_bootstrap(),
                                "group.id": stack.unique_name("py.reader"),
                                **KAFKA})
        self.reader.subscribe([self.replies_topic, self.topic + ".dlq"])
        self.seen = []
        self.group = stack.unique_name("py.payment")

    def tearDown(self):
        self.reader.close()
        stack.drop_database(self.conninfo)

    def send(self, value, headers, key=b"py-1"):
        self.producer.produce(self.topic, key=key, value=value, headers=headers)
        self.assertEqual(self.producer.flush(stack.seconds(10)), 0)

    def pump(self, p, until, what, within=30):
        def turn():
            p.poll(0.02)
            m = self.reader.poll(0.02)
            if m is not None and m.error() is None:
                self.seen.append(m)
            return until()
        stack.wait_until(turn, within, what)

    def replies(self):
        return [wire.decode(pb.Reply, m.value(), m.headers())
                for m in self.seen if m.topic() == self.replies_topic]

    def committed(self, p):
        from confluent_kafka import TopicPartition
        parts = p._consumer.list_topics(self.topic, timeout=10).topics[
            self.topic].partitions
        got = p._consumer.committed([TopicPartition(self.topic, i)
                                     for i in parts], timeout=10)
        return sorted(tp.offset for tp in got if tp.offset >= 0)

    def test_reply_dead_letter_commit_and_answers_after_a_restart(self):
        calls = []

        def charge(cmd):
            calls.append(cmd.idempotency_key)
            return Result.success(b'{"charged":5}')

        self.send(*command("py-1", 1, self.replies_topic))
        self.send(b"\x01\x02", [("x-mine", b"kept")])  # no type header
        p = Participant(stack.kafka_bootstrap(), self.group,
                        PgStore(self.conninfo), kafka_config=KAFKA)
        p.handle(self.topic, charge)
        self.pump(p, lambda: len(self.seen) >= 2 and
                  p.stats.replies_acked == 1 and p.stats.dead_lettered == 1,
                  "a reply and a dead letter")
        [(rep, meta)] = self.replies()
        self.assertEqual((rep.idempotency_key, rep.outcome, rep.payload),
                         ("py-1/charge/DO/1", 1, b'{"charged":5}'))
        self.assertEqual((meta.correlation_id, meta.causation_id),
                         ("order-9", "py-1/charge/DO/1"))
        self.assertEqual(meta.traceparent[:36], "00-" + "a" * 32 + "-")
        [dlq] = [m for m in self.seen if m.topic() == self.topic + ".dlq"]
        h = dict(dlq.headers())
        self.assertEqual(h["saga-dlq-reason"], b'SAGA_ETYPE: header '
                         b'"saga-message-type" is missing, expected '
                         b'"saga.v1.Command"')
        self.assertRegex(h["saga-dlq-source"].decode(),
                         f"^{self.topic}/\\d+/1$")
        self.assertEqual((h["x-mine"], dlq.value()), (b"kept", b"\x01\x02"))
        # both acknowledged: the partition's offset moves past them
        stack.wait_until(lambda: self.committed(p) == [2], 10,
                         "offsets committed after the reply and dead letter")
        p.close()

        # Restarted on the same group and database: a redelivered copy and
        # a later attempt (its reply came too late) are answered from the
        # store, each addressed to its own attempt, without the handler.
        self.send(*command("py-1", 1, self.replies_topic))
        self.send(*command("py-1", 2, self.replies_topic))
        p2 = Participant(stack.kafka_bootstrap(), self.group,
                         PgStore(self.conninfo), kafka_config=KAFKA)
        p2.handle(self.topic, charge)
        self.pump(p2, lambda: len(self.replies()) >= 3 and
                  p2.stats.replies_acked == 2, "two answers after a restart")
        self.assertEqual(calls, ["py-1/charge/DO/1"])
        self.assertEqual(p2.stats.duplicates, 2)
        self.assertEqual([(r.idempotency_key, r.payload)
                          for r, _ in self.replies()[1:]],
                         [("py-1/charge/DO/1", b'{"charged":5}'),
                          ("py-1/charge/DO/2", b'{"charged":5}')])
        stack.wait_until(lambda: self.committed(p2) == [4], 10,
                         "offsets committed after the answers")
        p2.close()

    def test_a_crash_between_record_and_reply_is_answered_from_the_store(
            self):
        import os
        import subprocess
        import sys
        self.send(*command("py-2", 1, self.replies_topic), key=b"py-2")
        child = subprocess.run(
            [sys.executable, os.path.join(os.path.dirname(__file__),
                                          "crash_participant.py"),
             stack.kafka_bootstrap(), self.conninfo, self.topic, self.group],
            timeout=stack.seconds(60), check=False, capture_output=True)
        self.assertEqual(child.returncode, 3, child.stderr.decode()[-2000:])
        calls = []

        def charge(cmd):
            calls.append(cmd.idempotency_key)
            return Result.success(b"again")

        p = Participant(stack.kafka_bootstrap(), self.group,
                        PgStore(self.conninfo), kafka_config=KAFKA)
        p.handle(self.topic, charge)
        # nothing was committed: the command comes again, and the reply
        # recorded before the crash answers it
        self.pump(p, lambda: any(r.saga_id == "py-2"
                                 for r, _ in self.replies()) and
                  p.stats.replies_acked >= 1, "the answer after the crash")
        self.assertEqual(calls, [])
        [rep] = [r for r, _ in self.replies() if r.saga_id == "py-2"]
        self.assertEqual((rep.idempotency_key, rep.payload),
                         ("py-2/charge/DO/1", b'{"charged":"before the crash"}'))
        p.close()

    def test_a_starter_without_its_topic_says_so(self):
        from saga_client import Starter
        with self.assertRaises(SagaError) as e:
            Starter("127.0.0.1:1", notifications="nowhere", setup_timeout=1)
        self.assertEqual(e.exception.code, "SAGA_ETIMEDOUT")
        self.assertIn('could not learn the partitions of topic "nowhere"',
                      str(e.exception))


if __name__ == "__main__":
    stack.require_stack()
    unittest.main()
