"""The starter's side of docs/protocol.md against stand-in Kafka clients:
reading the notifications from their end, the StartSaga it sends, the
outcomes it remembers, and the errors it says."""
import time
import unittest

from fakes import FakeConsumer, FakeMessage, FakeProducer, headers_dict
from saga_client import NotificationKind, SagaError, Starter, wire
from saga_client._pb import saga_pb2 as pb


def note(saga, kind, offset=0, **fields):
    value, headers = wire.encode(pb.Notification(saga_id=saga, kind=kind,
                                                 **fields),
                                 correlation_id="corr-" + saga)
    return FakeMessage("saga.notifications", 0, offset, value, headers)


class Base(unittest.TestCase):
    def setUp(self):
        self.consumer, self.producer = FakeConsumer(), FakeProducer()
        self.consumer.partitions = {0: 5, 1: 7}
        self.s = Starter(None, consumer=self.consumer,
                         producer=self.producer)


class Setup(Base):
    def test_every_partition_is_read_from_its_end(self):
        self.assertEqual(self.consumer.assigned,
                         [("saga.notifications", 0, 5),
                          ("saga.notifications", 1, 7)])

    def test_a_topic_without_partitions_is_named_in_the_error(self):
        c = FakeConsumer()
        with self.assertRaises(SagaError) as e:
            Starter(None, notifications="n.t", setup_timeout=0.2,
                    consumer=c, producer=FakeProducer())
        self.assertEqual(e.exception.code, "SAGA_ETIMEDOUT")
        self.assertIn('could not learn the partitions of topic "n.t"',
                      str(e.exception))
        self.assertTrue(c.closed)


class Start(Base):
    def test_start_saga_with_its_headers(self):
        sid = self.s.start("order", '{"amount":5}', saga_id="o-1",
                           definition_version=2)
        self.assertEqual(sid, "o-1")
        [m] = self.producer.produced
        self.assertEqual((m["topic"], m["key"]), ("saga.inbox", b"o-1"))
        msg, meta = wire.decode(pb.StartSaga, m["value"], m["headers"])
        self.assertEqual((msg.saga_type, msg.input, msg.definition_version),
                         ("order", b'{"amount":5}', 2))
        self.assertTrue(msg.HasField("definition_version"))
        self.assertGreater(msg.requested_at_ms, 0)
        self.assertEqual(meta.correlation_id, "o-1")
        self.assertRegex(meta.traceparent, r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")

    def test_no_id_gives_a_uuid_and_no_version_means_the_newest(self):
        sid = self.s.start("order", correlation_id="c-9")
        # time-ordered (version 7), as the C starter's
        self.assertRegex(sid, r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-"
                         r"[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertLessEqual(abs(int(sid.replace("-", "")[:12], 16)
                                 - time.time_ns() // 1_000_000), 60_000)
        time.sleep(0.002)
        self.assertLess(sid, self.s.start("order"))
        msg, meta = wire.decode(pb.StartSaga, self.producer.produced[0][
            "value"], self.producer.produced[0]["headers"])
        self.assertFalse(msg.HasField("definition_version"))
        self.assertEqual(meta.correlation_id, "c-9")

    def test_errors_say_what_went_wrong(self):
        with self.assertRaises(SagaError) as e:
            self.s.start("")
        self.assertEqual(str(e.exception), "SAGA_EMISSING: saga_type is "
                         "missing")
        self.producer.fail_next = "topic authorization failed"
        with self.assertRaises(SagaError) as e:
            self.s.start("order", saga_id="o-2")
        self.assertEqual(str(e.exception), 'SAGA_EKAFKA: saga "o-2": the '
                         "start was not delivered to saga.inbox: topic "
                         "authorization failed")


class BadRequests(Base):
    """A request the library cannot send as asked is refused before
    anything is produced, with a SagaError whose code is the C library's
    (client.h: saga_starter_start, _cancel, _await)."""

    def refused(self, code, call, want=None):
        with self.assertRaises(SagaError) as e:
            call()
        self.assertEqual(e.exception.code, code, str(e.exception))
        if want:
            self.assertIn(want, str(e.exception))
        self.assertEqual(self.producer.produced, [])

    def test_an_empty_saga_id_is_missing_not_a_new_saga(self):
        # only None generates an id: "" would start another saga each time
        self.refused("SAGA_EMISSING", lambda: self.s.start(
            "order", b"{}", saga_id=""), "saga_id is missing")

    def test_a_saga_id_past_255_bytes_is_too_big(self):
        self.refused("SAGA_ETOOBIG", lambda: self.s.start(
            "order", saga_id="x" * 256), "saga_id is 256 bytes long")
        self.refused("SAGA_ETOOBIG", lambda: self.s.cancel("x" * 256))
        self.refused("SAGA_EINVAL", lambda: self.s.wait("x" * 256, 5))
        self.assertEqual(self.s.start("order", saga_id="x" * 255), "x" * 255)

    def test_input_is_bytes_or_text(self):
        for bad in (5, [1, 2], {"amount": 5}, 1.5):
            with self.subTest(input=bad):
                self.refused("SAGA_EINVAL", lambda: self.s.start("order", bad),
                             "input")
        for good, sent in (("é", "é".encode()), (bytearray(b"[1]"), b"[1]"),
                           (memoryview(b"{}"), b"{}"), (None, b"")):
            self.s.start("order", good, saga_id="o-in")
            msg, _ = wire.decode(pb.StartSaga,
                                 self.producer.produced[-1]["value"],
                                 self.producer.produced[-1]["headers"])
            self.assertEqual(msg.input, sent)

    def test_arguments_of_the_wrong_type(self):
        for kw in ({"saga_id": 17}, {"correlation_id": 5},
                   {"traceparent": b"00-x"}, {"definition_version": -1},
                   {"definition_version": "abc"}, {"definition_version": 1.5},
                   {"definition_version": True},
                   {"definition_version": 2**32}):
            with self.subTest(kw=kw):
                self.refused("SAGA_EINVAL", lambda: self.s.start("order",
                                                                 **kw))
        self.refused("SAGA_EINVAL", lambda: self.s.start(17))
        self.refused("SAGA_EINVAL", lambda: self.s.cancel(5))
        self.refused("SAGA_EINVAL", lambda: self.s.cancel("o-1", reason=5))
        self.refused("SAGA_EINVAL", lambda: self.s.wait(None, 1))

    def test_subscribe_takes_a_callable(self):
        self.refused("SAGA_EINVAL", lambda: self.s.subscribe("print"))

    def test_definition_version_zero_is_the_newest_as_in_c(self):
        self.s.start("order", saga_id="o-v", definition_version=0)
        msg, _ = wire.decode(pb.StartSaga, self.producer.produced[0]["value"],
                             self.producer.produced[0]["headers"])
        self.assertFalse(msg.HasField("definition_version"))

    def test_timeouts_are_seconds_not_below_zero(self):
        # a start whose timeout is refused must not be sent: the caller
        # would be told it failed while the saga runs
        self.refused("SAGA_EINVAL", lambda: self.s.start(
            "order", saga_id="o-t", timeout=-1), "timeout")
        self.refused("SAGA_EINVAL", lambda: self.s.cancel("o-t", timeout=-1))
        for t in (-1, None, "5", float("nan")):
            with self.subTest(timeout=t):
                self.refused("SAGA_EINVAL", lambda: self.s.wait("o-t", t),
                             "timeout")
        self.refused("SAGA_EINVAL", lambda: self.s.poll(-1))
        self.refused("SAGA_EINVAL", lambda: self.s.run("order", timeout=-1))
        with self.assertRaises(SagaError) as e:
            Starter(None, setup_timeout=-1, consumer=self.consumer,
                    producer=FakeProducer())
        self.assertEqual(e.exception.code, "SAGA_EINVAL")

    def test_a_zero_setup_timeout_still_asks_once(self):
        s = Starter(None, setup_timeout=0, consumer=self.consumer,
                    producer=FakeProducer())
        self.assertEqual(self.consumer.assigned[0], ("saga.notifications", 0,
                                                     5))
        s.close()

    def test_run_bounds_the_start_and_the_wait_together(self):
        self.producer.poll = lambda timeout=0: time.sleep(timeout) or 0
        t0 = time.monotonic()
        with self.assertRaises(SagaError) as e:
            self.s.run("order", saga_id="o-r", timeout=0.3)
        self.assertEqual(e.exception.code, "SAGA_ETIMEDOUT")
        self.assertLess(time.monotonic() - t0, 2)

    def test_max_message_bytes_zero_is_the_default_as_in_c(self):
        s = Starter(None, max_message_bytes=0, consumer=self.consumer,
                    producer=self.producer)
        s.start("order", b'{"amount":5}', saga_id="o-m")
        self.consumer.inbox.append(note("o-m", NotificationKind.COMPLETED))
        self.assertEqual(s.wait("o-m", 5).kind, NotificationKind.COMPLETED)
        for bad in (-1, "1M"):
            with self.assertRaises(SagaError) as e:
                Starter(None, max_message_bytes=bad, consumer=self.consumer,
                        producer=self.producer)
            self.assertEqual(e.exception.code, "SAGA_EINVAL")

    def test_a_closed_starter_says_so(self):
        self.s.close()
        self.s.close()  # harmless
        for call in (lambda: self.s.start("order", saga_id="o-c"),
                     lambda: self.s.cancel("o-c"),
                     lambda: self.s.wait("o-c", 1),
                     lambda: self.s.poll(0),
                     lambda: self.s.outcome("o-c"),
                     lambda: self.s.subscribe(print)):
            self.refused("SAGA_ESTATE", call, "closed")


class Outcomes(Base):
    def test_outcomes_are_remembered_and_every_kind_is_seen(self):
        seen = []
        self.s.subscribe(seen.append)
        self.consumer.inbox += [
            note("o-1", NotificationKind.STEP_DONE, step="charge", action=1,
                 outcome=2),
            FakeMessage("saga.notifications", 0, 1, b"junk", []),
            note("o-1", NotificationKind.COMPENSATED, 2, reason="declined")]
        n = self.s.wait("o-1", 5)
        self.assertEqual((n.kind, n.reason, n.correlation_id),
                         (NotificationKind.COMPENSATED, "declined",
                          "corr-o-1"))
        self.assertEqual([(x.kind, x.step, x.outcome) for x in seen],
                         [(NotificationKind.STEP_DONE, "charge", 2),
                          (NotificationKind.COMPENSATED, "", 0)])
        self.assertIs(self.s.wait("o-1", 0), n)  # already known

    def test_the_last_4096_outcomes_are_kept(self):
        self.consumer.inbox += [note(f"s-{i}", NotificationKind.COMPLETED, i)
                                for i in range(4097)]
        while self.consumer.inbox:
            self.s.poll(0)
        self.assertIsNone(self.s.outcome("s-0"))
        self.assertEqual(self.s.outcome("s-4096").kind,
                         NotificationKind.COMPLETED)
        self.assertIsNotNone(self.s.outcome("s-1"))

    def test_no_outcome_in_time_says_which_saga(self):
        with self.assertRaises(SagaError) as e:
            self.s.wait("o-7", 0.1)
        self.assertEqual(str(e.exception), 'SAGA_ETIMEDOUT: saga "o-7" has '
                         "no outcome after 0.1 s")

    def test_run_names_its_whole_timeout(self):
        with self.assertRaises(SagaError) as e:
            self.s.run("order", saga_id="o-t", timeout=0.2)
        self.assertEqual(str(e.exception), 'SAGA_ETIMEDOUT: saga "o-t" has '
                         "no outcome after 0.2 s")

    def test_a_start_the_producer_cannot_take_is_too_big(self):
        # as in C: past message.max.bytes (librdkafka's 1000000 by default,
        # below the 1 MiB max_message_bytes) it is SAGA_ETOOBIG, not sent
        with self.assertRaises(SagaError) as e:
            self.s.start("order", b'"' + b"x" * 999990 + b'"', saga_id="o-b")
        self.assertEqual(e.exception.code, "SAGA_ETOOBIG")
        self.assertIn("message.max.bytes (1000000)", str(e.exception))
        self.assertEqual(self.producer.produced, [])

    def test_topics_are_kafka_topic_names(self):
        # librdkafka takes a name starting with '^' as a pattern
        for bad in ("^orders.*", "a b", ".", "..", "t" * 250, ""):
            with self.assertRaises(SagaError) as e:
                Starter(None, inbox=bad, consumer=self.consumer,
                        producer=self.producer)
            self.assertEqual(e.exception.code, "SAGA_EINVAL")
        Starter(None, inbox="t" * 249, consumer=self.consumer,
                producer=self.producer)

    def test_run_starts_and_waits(self):
        self.consumer.inbox.append(note("o-3", NotificationKind.COMPLETED,
                                        payload=b'{"shipped":true}'))
        n = self.s.run("order", b"{}", saga_id="o-3", timeout=5)
        self.assertEqual(n.payload, b'{"shipped":true}')
        self.assertEqual(headers_dict(self.producer.produced[0]["headers"])[
            "saga-id"], "o-3")


class Cancel(Base):
    def test_cancel_saga_with_reason_and_operator(self):
        self.s.cancel("o-5", "customer called\nticket 7", operator="alice")
        [m] = self.producer.produced
        self.assertEqual((m["topic"], m["key"]), ("saga.inbox", b"o-5"))
        msg, meta = wire.decode(pb.CancelSaga, m["value"], m["headers"])
        self.assertEqual((msg.saga_id, msg.reason, msg.operator),
                         ("o-5", "customer called\nticket 7", "alice"))
        self.assertGreater(msg.requested_at_ms, 0)
        self.assertEqual(meta.saga_id, "o-5")

    def test_a_bad_cancel_is_refused_before_it_is_sent(self):
        for sid, reason, who, want in [
                ("", "x", "", "saga_id is missing"),
                ("a/b", "x", "", "saga_id contains a forbidden character"),
                ("o-1", "r" * 1025, "", "reason is 1025 bytes long"),
                ("o-1", "a\x01b", "", "reason contains a forbidden "
                 "character at byte 1"),
                ("o-1", "x", "w" * 256, "operator is 256 bytes long")]:
            with self.assertRaises(SagaError) as e:
                self.s.cancel(sid, reason, operator=who)
            self.assertEqual(e.exception.code, "SAGA_EMISSING")
            self.assertIn(want, str(e.exception))
        self.assertEqual(self.producer.produced, [])

    def test_wait_reports_the_refusal_of_its_own_cancel_once(self):
        self.s.cancel("o-6", "too late")
        self.consumer.inbox += [
            note("o-9", NotificationKind.CANCEL_REFUSED, 1,
                 reason="someone else's"),
            note("o-6", NotificationKind.CANCEL_REFUSED, 2,
                 reason="after the pivot step charge")]
        n = self.s.wait("o-6", 5)
        self.assertEqual((n.kind, n.reason),
                         (NotificationKind.CANCEL_REFUSED,
                          "after the pivot step charge"))
        with self.assertRaises(SagaError):
            self.s.wait("o-6", 0.1)  # answered once; the saga goes on
        with self.assertRaises(SagaError):
            self.s.wait("o-9", 0.1)  # not this starter's cancel
        self.consumer.inbox.append(note("o-6", NotificationKind.COMPLETED, 3))
        self.assertEqual(self.s.wait("o-6", 5).kind,
                         NotificationKind.COMPLETED)

    def test_a_cancel_of_an_ended_saga_is_answered_by_its_refusal(self):
        # as in C: the refusal, though the outcome is remembered
        self.consumer.inbox.append(note("o-8", NotificationKind.COMPLETED, 1))
        self.assertEqual(self.s.wait("o-8", 5).kind,
                         NotificationKind.COMPLETED)
        self.s.cancel("o-8", "changed my mind")
        self.consumer.inbox.append(
            note("o-8", NotificationKind.CANCEL_REFUSED, 2,
                 reason="already completed: nothing to cancel"))
        self.s.poll(0)
        n = self.s.wait("o-8", 5)
        self.assertEqual((n.kind, n.reason),
                         (NotificationKind.CANCEL_REFUSED,
                          "already completed: nothing to cancel"))


    def test_cancels_kept_for_their_answer_are_bounded_as_in_c(self):
        # a refusal nobody waits for, or a cancel never answered, stayed
        # for the starter's life: now the last 4096 are kept, as outcomes
        self.s.cancel("o-old")
        self.consumer.inbox.append(
            note("o-old", NotificationKind.CANCEL_REFUSED, 1,
                 reason="already completed: nothing to cancel"))
        self.s.poll(0)
        for i in range(4096):
            self.s.cancel(f"silent-{i}")
        self.assertEqual(len(self.s._cancels), 4096)
        with self.assertRaises(SagaError) as e:
            self.s.wait("o-old", 0)  # forgotten: waits for the outcome
        self.assertEqual(e.exception.code, "SAGA_ETIMEDOUT")
        # within the bound a refusal still answers
        self.s.cancel("o-new")
        self.consumer.inbox.append(
            note("o-new", NotificationKind.CANCEL_REFUSED, 2,
                 reason="after the pivot step charge"))
        self.assertEqual(self.s.wait("o-new", 5).kind,
                         NotificationKind.CANCEL_REFUSED)
        self.assertLessEqual(len(self.s._cancels), 4096)


class KafkaDefaults(unittest.TestCase):
    """The settings a user gets without tuning are the C library's
    low-latency ones (docs/client.md "Kafka settings"), and a caller's own
    property wins, on the client it is for."""

    def clients(self, extra):
        from unittest import mock
        from saga_client import _kafka
        made = {}
        with mock.patch("confluent_kafka.Consumer",
                        lambda conf: made.setdefault("c", conf)), \
                mock.patch("confluent_kafka.Producer",
                           lambda conf: made.setdefault("p", conf)):
            _kafka.make_clients("127.0.0.1:1", {}, extra)
        return made["c"], made["p"]

    def test_the_defaults_are_the_low_latency_ones(self):
        c, p = self.clients({})
        self.assertEqual(p["linger.ms"], 0)
        self.assertEqual(c["fetch.wait.max.ms"], 10)
        self.assertTrue(p["socket.nagle.disable"])
        self.assertTrue(c["socket.nagle.disable"])
        self.assertTrue(p["enable.idempotence"])
        self.assertNotIn("linger.ms", c)
        self.assertNotIn("fetch.wait.max.ms", p)

    def test_the_callers_properties_win(self):
        c, p = self.clients({"linger.ms": 5, "fetch.wait.max.ms": 100})
        self.assertEqual(p["linger.ms"], 5)
        self.assertEqual(c["fetch.wait.max.ms"], 100)

    def test_each_property_goes_to_the_client_it_is_for(self):
        # librdkafka's consumer-only (C) and producer-only (P) properties
        # and confluent_kafka's own callbacks: given to the other client,
        # the first draw a warning, the callbacks make it fail
        def cb(*_):
            pass
        consumer_only = {"max.partition.fetch.bytes": 2 << 20,
                         "offset_commit_cb": cb, "on_commit": cb,
                         "consume.callback.max.messages": 10,
                         "group.instance.id": "a"}
        producer_only = {"delivery.report.only.error": True,
                         "on_delivery": cb, "dr_msg_cb": cb,
                         "queuing.strategy": "fifo",
                         "queue.buffering.max.ms": 2}
        both = {"client.id": "me", "error_cb": cb, "statistics.interval.ms":
                1000, "security.protocol": "plaintext"}
        c, p = self.clients({**consumer_only, **producer_only, **both})
        for k in consumer_only:
            self.assertIn(k, c)
            self.assertNotIn(k, p)
        for k in producer_only:
            self.assertIn(k, p)
            self.assertNotIn(k, c)
        for k in both:
            self.assertIn(k, c)
            self.assertIn(k, p)

    def test_kafka_config_is_a_mapping(self):
        from saga_client import _kafka
        with self.assertRaises(SagaError) as e:
            _kafka.make_clients("127.0.0.1:1", {}, "linger.ms=5")
        self.assertEqual(e.exception.code, "SAGA_EINVAL")

    def test_the_consumer_is_closed_when_the_producer_is_refused(self):
        # the consumer was made, the producer refused ("acks": "bogus"),
        # and the consumer was left open
        from unittest import mock
        from saga_client import _kafka
        import confluent_kafka
        consumers = []

        class Consumer:
            def __init__(self, conf):
                self.closed = False
                consumers.append(self)

            def close(self):
                self.closed = True
        with mock.patch.object(confluent_kafka, "Consumer", Consumer):
            with self.assertRaises(SagaError) as e:
                _kafka.make_clients("127.0.0.1:1", {"group.id": "g"},
                                    {"acks": "bogus"})
        self.assertEqual(e.exception.code, "SAGA_EKAFKA")
        self.assertIn("acks", str(e.exception))
        self.assertEqual([c.closed for c in consumers], [True])

    def test_real_clients_take_each_property(self):
        # the real confluent_kafka classes: no broker is contacted
        from saga_client import _kafka
        c, p = _kafka.make_clients("127.0.0.1:1", {"group.id": "g"}, {
            "on_commit": lambda *_: None, "on_delivery": lambda *_: None,
            "log_level": 0})
        c.close()
        p.flush(0)

if __name__ == "__main__":
    unittest.main()
