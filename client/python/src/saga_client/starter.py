"""The starter side of docs/protocol.md, as the C library's
(client/starter.c) does it: StartSaga to the inbox (key = saga id), and a
reader of every partition of the notifications topic from the end it had
when the starter was made -- without a consumer group, so no join delays
it and no outcome produced after that is missed."""

import collections
import dataclasses
import os
import time
import uuid

from . import _kafka, _pb, wire
from .wire import NotificationKind, SagaError

_OUTCOMES_KEPT = 4096
# cancels kept for their answer (a refusal not awaited yet, or none yet),
# as many as outcomes, as in C
_CANCELS_KEPT = 4096


def uuid7():
    """A new time-ordered UUID (version 7, RFC 9562) as text: the Unix time
    in milliseconds in its first 48 bits, then 74 random bits, as the C
    starter generates saga ids, so ids started later sort after earlier ones
    and the saga index and event streams keyed by them grow at their
    indexes' right edge instead of at random pages."""
    b = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big")
                  + os.urandom(10))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


def _saga_id(saga_id):
    """A saga id given to start() or cancel(), as the C starter takes it:
    a str (SAGA_EINVAL otherwise; None and "" go on to be refused as
    missing by the wire check), never cut (SAGA_ETOOBIG past MAX_ID
    bytes)."""
    saga_id = wire.as_text("saga_id", saga_id)
    n = len(saga_id.encode("utf-8", "surrogatepass"))
    if n > wire.MAX_ID:
        raise SagaError("SAGA_ETOOBIG", f"saga_id is {n} bytes long, the "
                        f"ceiling is {wire.MAX_ID} (an id is never cut)")
    return saga_id


@dataclasses.dataclass(frozen=True)
class Notification:
    """A saga lifecycle notification. ``kind.is_outcome`` is true for the
    ends a starter awaits: COMPLETED, COMPENSATED, COMPENSATION_FAILED and
    REJECTED. ``payload`` is the saga's output on COMPLETED (if any);
    ``reason`` says why for failures and rejections."""
    saga_id: str
    kind: NotificationKind
    saga_type: str
    definition_version: int
    step: str
    action: int
    outcome: int
    payload: bytes
    reason: str
    at_ms: int
    correlation_id: str


class Starter:
    """Starts sagas and awaits their outcomes.

    ``inbox`` and ``notifications`` name the coordinator's topics;
    ``kafka_config`` holds librdkafka properties for both clients;
    ``max_message_bytes`` bounds a StartSaga and a notification (0 or
    None: 1 MiB, as in C). Construction learns the partitions of the
    notifications topic and their ends, waiting up to ``setup_timeout``
    seconds (the topic may be being created; 0 asks once); raises
    SagaError(SAGA_ETIMEDOUT) naming the topic when it cannot,
    SAGA_EKAFKA when a Kafka client cannot be made, SAGA_EINVAL for a
    malformed argument; then (best effort, up to as long again) the inbox
    topic's metadata on the producer, so the first start leaves at once.
    ``consumer`` and ``producer`` replace the confluent_kafka clients it
    would make (tests). Not thread-safe: use one starter per thread.

    Timeouts are seconds, 0 or more (SAGA_EINVAL otherwise, before
    anything is sent); a closed starter refuses every call with
    SAGA_ESTATE."""

    def __init__(self, bootstrap_servers, *, inbox=wire.DEFAULT_INBOX_TOPIC,
                 notifications=wire.DEFAULT_NOTIFICATIONS_TOPIC,
                 kafka_config=None, setup_timeout=10.0,
                 max_message_bytes=wire.DEFAULT_MAX_MESSAGE_BYTES,
                 consumer=None, producer=None):
        if (consumer is None or producer is None) and (
                not bootstrap_servers or not isinstance(bootstrap_servers,
                                                        str)):
            raise SagaError("SAGA_EINVAL", "a starter needs Kafka bootstrap "
                            "servers (a str such as \"host:9092\"), not "
                            f"{bootstrap_servers!r}")
        for what, topic in (("inbox", inbox),
                            ("notifications", notifications)):
            if not wire.is_topic(topic):
                raise SagaError("SAGA_EINVAL", f"{what} is a Kafka topic "
                                f"name (1 to {wire.MAX_TOPIC} of A-Z a-z 0-9 "
                                f". _ -), not {topic!r}")
        wire.as_seconds("setup_timeout", setup_timeout)
        self._max = wire.as_max_bytes(max_message_bytes)
        kafka_config = _kafka.check_config(kafka_config)
        self._producer_max = _kafka.producer_max_bytes(kafka_config)
        self._closed = True  # until the clients exist: close() is a no-op
        if consumer is None or producer is None:
            # librdkafka wants a group.id even to assign by hand; this
            # reader never joins it and never commits.
            made = _kafka.make_clients(
                bootstrap_servers, {"group.id": f"saga-reader-{uuid.uuid4()}",
                                    "allow.auto.create.topics": True},
                kafka_config)
            consumer, producer = consumer or made[0], producer or made[1]
        self._consumer, self._producer = consumer, producer
        self._closed = False
        self.inbox = inbox
        self.notifications = notifications
        self._outcomes = collections.OrderedDict()
        # saga ids this starter asked to cancel, oldest first -> their
        # CANCEL_REFUSED until awaited (None until it comes); the saga's
        # outcome drops one, and past _CANCELS_KEPT the oldest goes
        self._cancels = collections.OrderedDict()
        self._subscribers = []
        self._pb = _pb.saga_pb2
        try:
            self._assign_at_end(setup_timeout)
        except BaseException:
            self.close()
            raise
        self._warm_producer(setup_timeout)

    def _warm_producer(self, timeout):
        """Learn the inbox topic's metadata on the producer now, as the C
        starter does, so the first start does not wait for the producer's
        first metadata round (about a second on the embedded mock). Best
        effort: a failure leaves that wait to the first start."""
        list_topics = getattr(self._producer, "list_topics", None)
        if list_topics is None:
            return
        try:
            list_topics(self.inbox, timeout=timeout)
        except Exception:  # KafkaException: timed out, transport
            pass

    def _assign_at_end(self, timeout):
        from confluent_kafka import KafkaError, KafkaException, TopicPartition
        deadline = time.monotonic() + timeout
        partitions, why = [], "no answer"
        # A topic being auto-created has no partitions at first: ask again
        # (at least once, whatever the timeout).
        asked = False
        while not partitions and (not asked or time.monotonic() < deadline):
            asked = True
            try:
                md = self._consumer.list_topics(
                    self.notifications,
                    timeout=max(0.1, deadline - time.monotonic()))
                t = md.topics.get(self.notifications)
                if t is not None and t.error is None:
                    partitions = sorted(t.partitions)
                elif t is not None:
                    why = str(t.error)
            except Exception as e:  # KafkaException: timed out, transport
                why = str(e)
            if not partitions and time.monotonic() < deadline:
                time.sleep(0.05)
        if not partitions:
            raise SagaError("SAGA_ETIMEDOUT", "could not learn the partitions "
                            f'of topic "{self.notifications}": {why}')
        assignment = []
        for p in partitions:
            try:
                _lo, hi = self._consumer.get_watermark_offsets(
                    TopicPartition(self.notifications, p),
                    timeout=max(0.1, deadline - time.monotonic()))
            except Exception as e:
                timed_out = isinstance(e, KafkaException) and \
                    e.args[0].code() == KafkaError._TIMED_OUT
                raise SagaError("SAGA_ETIMEDOUT" if timed_out
                                else "SAGA_EKAFKA", "could not read the end "
                                f'of "{self.notifications}" partition {p}: '
                                f"{e}") from e
            assignment.append(TopicPartition(self.notifications, p, hi))
        self._consumer.assign(assignment)

    def subscribe(self, callback):
        """Call ``callback(notification)`` for every notification read
        (every kind, every saga), from within poll()/wait(). Progress
        notes (STARTED, STEP_DONE) are among them only when sagad's
        ``topic.progress`` is this starter's notifications topic (sagad
        sends none by default). Raises SagaError: SAGA_EINVAL when
        callback is not callable, SAGA_ESTATE once closed."""
        self._check_open()
        if not callable(callback):
            raise SagaError("SAGA_EINVAL", "subscribe() takes a callable, "
                            f"not {type(callback).__name__}")
        self._subscribers.append(callback)

    def start(self, saga_type, input=b"", *, saga_id=None,
              definition_version=None, correlation_id=None, traceparent=None,
              timeout=10.0):
        """Produce a StartSaga and wait (up to timeout seconds) for Kafka to
        acknowledge it. Returns the saga id: ``saga_id`` when given
        (starting the same id twice starts one saga), else (None) a new
        time-ordered UUID (``uuid7()``).
        ``input`` is bytes (bytearray, memoryview), or a str sent as UTF-8
        (JSON by convention); ``definition_version`` None or 0 means the
        newest loaded version. ``correlation_id`` defaults to the saga id,
        ``traceparent`` to a new trace. Raises SagaError, before anything
        is sent: SAGA_EMISSING for a missing or malformed field (an empty
        ``saga_id`` included), SAGA_ETOOBIG for a ``saga_id`` past 255
        bytes or a message past max_message_bytes, SAGA_EINVAL for an
        argument of the wrong type or a negative timeout, SAGA_ESTATE once
        closed; SAGA_EKAFKA when Kafka refused it, SAGA_ETIMEDOUT when no
        acknowledgement came in time (the saga may start all the same)."""
        self._check_open()
        wire.as_seconds("timeout", timeout)
        saga_id = uuid7() if saga_id is None else _saga_id(saga_id)
        saga_type = wire.as_text("saga_type", saga_type)
        input = wire.as_bytes("input", input)
        correlation_id = wire.as_text("correlation_id", correlation_id)
        traceparent = wire.as_text("traceparent", traceparent)
        m = self._pb.StartSaga(saga_id=saga_id, saga_type=saga_type,
                               input=input,
                               requested_at_ms=int(time.time() * 1000))
        if definition_version is not None:
            if not isinstance(definition_version, int) \
                    or isinstance(definition_version, bool) \
                    or not 0 <= definition_version < 2**32:
                raise SagaError("SAGA_EINVAL", "definition_version is an int "
                                "from 1 to 4294967295 (None or 0: the "
                                f"newest), not {definition_version!r}")
            if definition_version:
                m.definition_version = definition_version
        value, headers = wire.encode(
            m, correlation_id=correlation_id or saga_id,
            traceparent=traceparent or wire.new_traceparent(),
            max_bytes=self._max)
        self._produce_acked(saga_id, value, headers, timeout, "start",
                            f'start saga "{saga_id}" of type "{saga_type}"')
        return saga_id

    def cancel(self, saga_id, reason="", *, operator="", timeout=10.0):
        """Produce a CancelSaga for saga_id (reason and operator are recorded
        in the saga's history) and wait (up to timeout seconds) for Kafka
        to acknowledge it. Before the saga's pivot step it is compensated
        (wait() then returns its COMPENSATED); otherwise the coordinator
        answers CANCEL_REFUSED with the reason (``after the pivot step
        charge``, ``already completed: nothing to cancel``), which wait()
        returns for this starter's cancels only: the last 4096 are kept
        for their answer, as in C (past that, the oldest cancel's refusal
        is forgotten and wait() waits for the saga's outcome alone). Raises
        SagaError:
        SAGA_EMISSING for a bad id, reason (over 1024 bytes) or operator,
        SAGA_ETOOBIG for an id past 255 bytes, SAGA_EINVAL / SAGA_ESTATE /
        SAGA_EKAFKA / SAGA_ETIMEDOUT as start() does."""
        self._check_open()
        wire.as_seconds("timeout", timeout)
        saga_id = _saga_id(saga_id)
        m = self._pb.CancelSaga(saga_id=saga_id,
                                reason=wire.as_text("reason", reason),
                                operator=wire.as_text("operator", operator),
                                requested_at_ms=int(time.time() * 1000))
        value, headers = wire.encode(m, correlation_id=saga_id,
                                     traceparent=wire.new_traceparent(),
                                     max_bytes=self._max)
        if self._cancels.get(saga_id) is not None:
            del self._cancels[saga_id]  # an earlier cancel's refusal
        self._produce_acked(saga_id, value, headers, timeout, "cancel",
                            f'cancel saga "{saga_id}"')
        self._keep_cancel(saga_id, None)

    def _keep_cancel(self, saga_id, refusal):
        """Keep saga_id's cancel (with its refusal, or None) as the newest;
        past _CANCELS_KEPT the oldest goes, and wait() on its saga waits
        for the outcome alone."""
        self._cancels[saga_id] = refusal
        self._cancels.move_to_end(saga_id)
        while len(self._cancels) > _CANCELS_KEPT:
            self._cancels.popitem(last=False)

    def _produce_acked(self, saga_id, value, headers, timeout, what, doing):
        """Produce to the inbox keyed by saga_id; wait for the ack. what
        ("start") and doing ('start saga "x"') name it in errors. A message
        the producer's message.max.bytes cannot take (with its key and
        headers) is SAGA_ETOOBIG, as in C, before anything is sent."""
        size = _kafka.record_size(saga_id.encode(), value, headers)
        if size > self._producer_max:
            raise SagaError("SAGA_ETOOBIG", f"could not {doing}: {size} "
                            "bytes encoded, past the producer's "
                            f"message.max.bytes ({self._producer_max})")
        report = []
        try:
            self._producer.produce(self.inbox, key=saga_id.encode(),
                                   value=value, headers=headers,
                                   on_delivery=lambda e, _m: report.append(e))
        except Exception as e:
            raise SagaError("SAGA_EKAFKA", f"could not {doing}: {e}") from e
        deadline = time.monotonic() + timeout
        while not report and time.monotonic() < deadline:
            self._producer.poll(0.05)
        if not report:
            raise SagaError("SAGA_ETIMEDOUT", f'saga "{saga_id}": Kafka did '
                            f"not acknowledge the {what} within {timeout} s")
        if report[0] is not None:
            raise SagaError("SAGA_EKAFKA", f'saga "{saga_id}": the {what} '
                            f"was not delivered to {self.inbox}: {report[0]}")

    def poll(self, timeout=0.05):
        """Read at most one notification, waiting up to timeout seconds.
        Returns it (or None). Outcomes are remembered (the last 4096), so
        waiting for a saga that already ended still answers. Raises
        SagaError: SAGA_EINVAL for a negative timeout, SAGA_ESTATE once
        closed."""
        self._check_open()
        wire.as_seconds("timeout", timeout)
        return self._poll(timeout)

    def _poll(self, timeout):
        msg = self._consumer.poll(timeout)
        if msg is None or msg.error() is not None:
            return None
        try:
            n, meta = wire.decode(self._pb.Notification, msg.value(),
                                  msg.headers(), self._max)
        except SagaError:
            return None  # not ours to dead-letter: the coordinator wrote it
        note = Notification(
            saga_id=n.saga_id, kind=NotificationKind(n.kind),
            saga_type=n.saga_type, definition_version=n.definition_version,
            step=n.step, action=n.action, outcome=n.outcome,
            payload=bytes(n.payload), reason=n.reason, at_ms=n.at_ms,
            correlation_id=meta.correlation_id)
        if note.kind == NotificationKind.CANCEL_REFUSED:
            if note.saga_id in self._cancels:  # this starter's cancel
                self._keep_cancel(note.saga_id, note)
        elif note.kind.is_outcome:
            self._cancels.pop(note.saga_id, None)
            self._outcomes[note.saga_id] = note
            self._outcomes.move_to_end(note.saga_id)
            while len(self._outcomes) > _OUTCOMES_KEPT:
                self._outcomes.popitem(last=False)
        for cb in self._subscribers:
            cb(note)
        return note

    def outcome(self, saga_id):
        """The remembered outcome notification of saga_id, or None. Raises
        SagaError(SAGA_ESTATE) once closed."""
        self._check_open()
        return self._outcomes.get(saga_id)

    def wait(self, saga_id, timeout):
        """Wait up to timeout seconds for the saga's outcome; returns the
        Notification (COMPLETED, COMPENSATED, COMPENSATION_FAILED or
        REJECTED), or CANCEL_REFUSED when this starter's cancel of it was
        refused (returned once). Raises SagaError: SAGA_ETIMEDOUT when none
        came, SAGA_EINVAL for a saga id that is not a str of 1 to 255
        bytes or a timeout that is not 0 or more seconds (as
        saga_starter_await), SAGA_ESTATE once closed."""
        self._check_open()
        wire.as_seconds("timeout", timeout)
        if not isinstance(saga_id, str) or not saga_id \
                or len(saga_id.encode("utf-8", "surrogatepass")) > wire.MAX_ID:
            raise SagaError("SAGA_EINVAL", "wait() needs a saga id of 1 to "
                            f"{wire.MAX_ID} bytes, not {saga_id!r:.80}")
        deadline = time.monotonic() + timeout
        while True:
            # A refusal of this starter's cancel first, as the C starter:
            # a cancel of a saga that had ended answers with its refusal.
            if self._cancels.get(saga_id) is not None:
                return self._cancels.pop(saga_id)
            if saga_id in self._outcomes:
                return self._outcomes[saga_id]
            left = deadline - time.monotonic()
            if left <= 0:
                raise SagaError("SAGA_ETIMEDOUT", f'saga "{saga_id}" has no '
                                f"outcome after {timeout} s")
            self._poll(min(left, 0.1))

    def run(self, saga_type, input=b"", *, timeout=30.0, **start_args):
        """start() then wait(), within ``timeout`` seconds in all: the
        saga's outcome Notification. (saga_run_saga's timeout also covers
        the setup, which a Starter did when it was made.) Raises what they
        raise; SAGA_ETIMEDOUT names the whole timeout."""
        wire.as_seconds("timeout", timeout)
        deadline = time.monotonic() + timeout
        saga_id = self.start(saga_type, input, timeout=timeout, **start_args)
        try:
            return self.wait(saga_id, max(0.0, deadline - time.monotonic()))
        except SagaError as e:
            if e.code != "SAGA_ETIMEDOUT":
                raise
            raise SagaError("SAGA_ETIMEDOUT", f'saga "{saga_id}" has no '
                            f"outcome after {timeout} s") from None

    def close(self):
        """Flush what is in flight and close both clients. A second call
        does nothing."""
        if self._closed:
            return
        self._closed = True
        self._producer.flush(5)
        self._consumer.close()

    def _check_open(self):
        if self._closed:
            raise SagaError("SAGA_ESTATE", "the starter is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
