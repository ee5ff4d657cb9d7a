"""The participant side of docs/protocol.md, as the C library's
(client/participant.c) does it:

1. consume the command topics in a consumer group, offsets committed by
   hand, in offset order per partition;
2. refuse what does not decode (type header, ceiling, parse, required
   fields, idempotency key): the message goes to ``<topic>.dlq`` with
   ``saga-dlq-reason`` and ``saga-dlq-source``, and its offset moves on
   once the dead letter is delivered;
3. answer a command whose effect key has a recorded reply that answers its
   attempt (store.RecordedReply.answers) with that reply, addressed to the
   command's own attempt, without running the handler;
3a. a COMPENSATE whose DO the store never saw applied (no record, or
   FAILURE or RETRYABLE) and that is not in the handler now: record it as
   voided and reply SUCCESS without the handler, and record a refusal
   under the DO's effect key, so that a DO arriving after its own
   compensation (3b) gets FAILURE without the handler;
4. otherwise run the handler, record effect key -> reply, produce the
   reply to the command's ``reply_topic``;
5. commit the command's offset only after the reply's delivery report.

A store or Kafka failure leaves the command unacknowledged: it is
redelivered after a restart or rebalance, and step 3 makes that safe."""

import collections
import dataclasses
import logging
import queue

from . import _kafka, _pb, wire
from .store import RecordedReply, StoreError
from .wire import Action, Outcome, SagaError

log = logging.getLogger("saga_client")

# docs/protocol.md, 3a/3b, with the C library's texts. The refusal answers
# every attempt of the DO (RecordedReply.answers) and fits PostgreSQL's
# integer attempt column.
VOID_ATTEMPT = 2**31 - 1
VOID_DO_REASON = ("refused: the step was compensated before this command "
                  "arrived")
VOID_COMP_REASON = "voided: the step was never applied"


@dataclasses.dataclass(frozen=True)
class Result:
    """What a handler answers: SUCCESS with the step's output, FAILURE (a
    business "no": the saga compensates) or RETRYABLE (transient: the
    coordinator retries the step), with a human-readable reason.

    ``payload`` is bytes (bytearray and memoryview are copied, a str is
    sent as UTF-8, None is empty), JSON by convention; ``reason`` a str
    without NUL bytes (None is empty). Anything else -- a dict, a number,
    an exception as the reason -- raises SagaError(SAGA_EINVAL) here, where
    the result is made: serialise an object first
    (``json.dumps(obj).encode()``)."""
    outcome: Outcome
    payload: bytes = b""
    reason: str = ""

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "outcome", wire.as_outcome(self.outcome))
        set_(self, "payload", wire.as_bytes("payload", self.payload))
        set_(self, "reason", wire.as_text("reason", self.reason))

    @classmethod
    def success(cls, payload=b""):
        """The step is done; payload is its output."""
        return cls(Outcome.SUCCESS, payload)

    @classmethod
    def failure(cls, reason, payload=b""):
        """A business failure: the saga compensates."""
        return cls(Outcome.FAILURE, payload, reason)

    @classmethod
    def retryable(cls, reason):
        """Transient: nothing was applied, the coordinator retries."""
        return cls(Outcome.RETRYABLE, b"", reason)


@dataclasses.dataclass(frozen=True)
class Command:
    """A decoded command, as the handler sees it.

    ``effect_key`` (``<saga_id>/<step>/<DO|COMPENSATE>``) names the effect
    across attempts: key a business record of the effect by it (see
    store.record_in_transaction). ``action_name`` is the definition's
    action name ("charge", "refund") when the command carries one (a newer
    protocol field), else None."""
    topic: str
    partition: int
    offset: int
    saga_id: str
    saga_type: str
    definition_version: int
    step: str
    action: Action
    action_name: object
    attempt: int
    idempotency_key: str
    effect_key: str
    deadline_ms: int
    payload: bytes
    reply_topic: str
    correlation_id: str
    causation_id: str
    traceparent: str


@dataclasses.dataclass
class Stats:
    """Counters of a participant's life."""
    handled: int = 0         # commands handed to a handler
    duplicates: int = 0      # answered from the store, handler not run
    replies_acked: int = 0   # replies whose delivery Kafka acknowledged
    dead_lettered: int = 0   # undecodable commands sent to the dead letters
    errors: int = 0          # commands left unacknowledged after a failure


class _Partition:
    """Offsets of one assigned partition in consumption order; the commit
    position moves over the acknowledged prefix only."""

    def __init__(self):
        self._open = collections.deque()  # [offset, acked]
        self._by_offset = {}
        self.position = None  # next offset to commit, once one is acked

    def add(self, offset):
        entry = [offset, False]
        self._open.append(entry)
        self._by_offset[offset] = entry

    def ack(self, offset):
        """Mark offset acknowledged. Returns the new commit position (the
        offset after the acknowledged prefix) when it moved, else None."""
        entry = self._by_offset.get(offset)
        if entry is None:
            return None
        entry[1] = True
        moved = None
        while self._open and self._open[0][1]:
            done = self._open.popleft()
            del self._by_offset[done[0]]
            moved = done[0] + 1
        if moved is not None:
            self.position = moved
        return moved


class _Job:
    """One consumed input on its way to an acknowledged reply or dead
    letter."""
    __slots__ = ("msg", "part", "pb", "meta", "cmd", "dups")

    def __init__(self, msg, part):
        self.msg = msg
        self.part = part
        self.pb = None
        self.meta = None
        self.cmd = None
        self.dups = []


def _source(msg):
    return f"{msg.topic()}/{msg.partition()}/{msg.offset()}"


# The default dead-letter topic of a command topic: "<topic>.dlq".
_DLQ_SUFFIX = ".dlq"

# Room a reply's other fields and headers take beside its payload, at
# most: its saga id, step, idempotency key and reason, the correlation,
# causation, traceparent and type headers, the record's key and framing.
_REPLY_OVERHEAD_MAX = 4096


class Participant:
    """A participant service: handlers per command topic, an effect store,
    a Kafka consumer group.

    ``store`` is a store.MemoryStore, store.PgStore or any object with
    their lookup/record methods (an instance: a class is SAGA_EINVAL).
    ``kafka_config`` holds librdkafka properties for both the consumer
    and the producer (TLS, SASL, tuning);
    they win over the library's defaults (manual commits, idempotent
    producer, ``acks=all``); a ``group.id`` there must be ``group_id``.
    ``dlq_topic`` replaces ``<topic>.dlq``.
    ``consumer`` and ``producer`` replace the confluent_kafka clients the
    participant would make (objects with the same methods: tests).

    ``max_message_bytes`` bounds a command and a reply (0 or None: 1 MiB,
    as in C).

    Everything runs on the thread that calls poll() or run(); handlers are
    called there. A participant is a context manager: leaving a ``with``
    block calls close(), also when run() raised. Raises
    SagaError(SAGA_EINVAL) for a missing or malformed argument (a store
    class, or an object without callable lookup and record, too) and
    SAGA_EKAFKA when a Kafka client cannot be made."""

    def __init__(self, bootstrap_servers, group_id, store, *,
                 kafka_config=None, dlq_topic=None,
                 max_message_bytes=wire.DEFAULT_MAX_MESSAGE_BYTES,
                 consumer=None, producer=None):
        if not group_id or not isinstance(group_id, str):
            raise SagaError("SAGA_EINVAL", "a participant needs a group id "
                            f"(a non-empty str), not {group_id!r}")
        if isinstance(store, type):
            raise SagaError("SAGA_EINVAL", "a participant needs an effect "
                            f"store object, not the class {store.__name__}: "
                            f"pass an instance ({store.__name__}(...))")
        if store is None or not callable(getattr(store, "lookup", None)) \
                or not callable(getattr(store, "record", None)):
            raise SagaError("SAGA_EINVAL", "a participant needs an effect "
                            "store (MemoryStore, PgStore, or an object with "
                            "lookup and record methods), not "
                            f"{type(store).__name__}")
        if (consumer is None or producer is None) and (
                not bootstrap_servers or not isinstance(bootstrap_servers,
                                                        str)):
            raise SagaError("SAGA_EINVAL", "a participant needs Kafka "
                            "bootstrap servers (a str such as "
                            f'"host:9092,host2:9092"), not '
                            f"{bootstrap_servers!r}")
        if dlq_topic is not None and not wire.is_topic(dlq_topic):
            raise SagaError("SAGA_EINVAL", "dlq_topic is a Kafka topic name "
                            f"(1 to {wire.MAX_TOPIC} of A-Z a-z 0-9 . _ -) "
                            f"or None, not {dlq_topic!r}")
        kafka_config = _kafka.check_config(kafka_config)
        if kafka_config.get("group.id", group_id) != group_id:
            raise SagaError("SAGA_EINVAL", "kafka_config's group.id "
                            f"{kafka_config['group.id']!r} is not group_id "
                            f"{group_id!r}: give the group once, as group_id")
        self.store = store
        self.stats = Stats()
        self._max = wire.as_max_bytes(max_message_bytes)
        self._producer_max = _kafka.producer_max_bytes(kafka_config)
        self._dlq_topic = dlq_topic
        self._handlers = {}
        self._parts = {}
        self._inflight = {}  # effect key -> job in a handler
        # jobs a handler fault left waiting, judged again on the next turn
        self._released = collections.deque()
        self._completions = queue.SimpleQueue()
        self._started = False
        self._stopping = False
        self._closed = False
        self._Command = _pb.saga_pb2.Command
        self._Reply = _pb.saga_pb2.Reply
        if consumer is None or producer is None:
            made = _kafka.make_clients(
                bootstrap_servers, {"group.id": group_id,
                                    "enable.auto.offset.store": False},
                kafka_config)
            consumer = consumer or made[0]
            producer = producer or made[1]
        self._consumer = consumer
        self._producer = producer

    # ---- set up --------------------------------------------------------

    def handle(self, topic, handler):
        """Route the commands of ``topic`` to ``handler(command)``, before
        the first poll()/run().

        The handler gets a Command and returns a Result, which is recorded
        and replied; or None, and then calls complete(command, result)
        later (from any thread) -- until then the command stays
        unacknowledged, and a command of the same effect key waits for it.
        A handler that raises lets the exception out of poll()/run():
        nothing is recorded or replied and the command is redelivered
        after a restart. So does one that returns anything but a Result or
        None (SagaError SAGA_EINVAL) or a Result whose payload is past
        max_message_bytes (SAGA_ETOOBIG). The commands of the same effect
        that waited with the faulty one (later attempts behind a
        RETRYABLE) are not lost with it: the next poll()/run() turn takes
        them up as new deliveries (the recorded reply, else the handler).
        Raises SagaError: SAGA_EINVAL
        (bad topic or handler; without ``dlq_topic``, a topic past 245
        characters, whose dead-letter topic ``<topic>.dlq`` would be past
        Kafka's 249), SAGA_EEXIST (topic already handled), SAGA_ESTATE
        (already started)."""
        if not wire.is_topic(topic) or not callable(handler):
            raise SagaError("SAGA_EINVAL", "handle() needs a Kafka topic "
                            f"name (1 to {wire.MAX_TOPIC} of A-Z a-z 0-9 . _ "
                            f"-), not {topic!r}, and a callable")
        if self._dlq_topic is None and \
                len(topic) + len(_DLQ_SUFFIX) > wire.MAX_TOPIC:
            raise SagaError("SAGA_EINVAL", f'topic "{topic[:64]}..." is '
                            f"{len(topic)} characters long: its dead-letter "
                            f'topic "<topic>{_DLQ_SUFFIX}" would be past '
                            f"Kafka's {wire.MAX_TOPIC}; give a topic of at "
                            f"most {wire.MAX_TOPIC - len(_DLQ_SUFFIX)}, or "
                            "set dlq_topic")
        if self._started or self._closed:
            raise SagaError("SAGA_ESTATE", "handlers are registered before "
                            "the participant starts")
        if topic in self._handlers:
            raise SagaError("SAGA_EEXIST", f'topic "{topic}" already has a '
                            "handler")
        self._handlers[topic] = handler

    def _start(self):
        if self._started:
            return
        if self._closed:
            raise SagaError("SAGA_ESTATE", "the participant is closed")
        if not self._handlers:
            raise SagaError("SAGA_EINVAL", "no handler registered")
        try:
            self._consumer.subscribe(list(self._handlers),
                                     on_assign=self._on_assign,
                                     on_revoke=self._on_revoke,
                                     on_lost=self._on_revoke)
        except Exception as e:
            raise SagaError("SAGA_EKAFKA", "could not subscribe to "
                            f"{', '.join(self._handlers)}: {e}") from e
        self._started = True

    def _on_assign(self, consumer, partitions):
        for tp in partitions:
            self._parts[(tp.topic, tp.partition)] = _Partition()

    def _on_revoke(self, consumer, partitions):
        # Jobs of a revoked partition may still reply, but their offsets
        # are no longer ours to commit: they point at the old tracker.
        for tp in partitions:
            self._parts.pop((tp.topic, tp.partition), None)

    # ---- the loop --------------------------------------------------------

    def poll(self, timeout=0.05):
        """One turn: commands a handler fault left waiting (see handle()),
        completions handed to complete(), at most one message (waiting up
        to ``timeout`` seconds, 0 or more, for it), delivery reports.
        Raises SagaError: SAGA_EINVAL for a negative timeout, SAGA_ESTATE
        once closed."""
        wire.as_seconds("timeout", timeout)
        if self._closed:
            raise SagaError("SAGA_ESTATE", "the participant is closed")
        self._turn(timeout)

    def _turn(self, timeout):
        self._start()
        self._take_up_released()
        self._drain_completions()
        msg = self._consumer.poll(timeout)
        if msg is not None:
            self._on_message(msg)
        self._producer.poll(0)
        self._drain_completions()

    def run(self):
        """Poll until stop() is called (for instance from a signal
        handler). Does not close the participant: close() does (or leave
        a ``with Participant(...) as p:`` block). A stop() is used up
        when run() returns for it: a later run() polls again. One that
        came before run() was called makes run() return at once (a signal
        between installing the handler and run() is not lost), and one
        pending when run() leaves with an exception stays for the next
        run(). Raises SagaError(SAGA_ESTATE) once closed."""
        if self._closed:
            raise SagaError("SAGA_ESTATE", "the participant is closed")
        self._start()
        while not self._stopping:
            self._turn(0.05)
        if not self._closed:  # close() keeps run() from running again
            self._stopping = False

    def stop(self):
        """Make run() return after its current turn, or the next run() at
        once when none is running. Safe from any thread and from signal
        handlers."""
        self._stopping = True

    def complete(self, command, result):
        """Answer a command whose handler returned None. Safe from any
        thread; the reply is recorded and produced on the polling thread.
        Raises SagaError: SAGA_EINVAL for an argument that is not a
        Command and a Result; SAGA_ECANCELED once close() was called
        (nothing is sent: the command is redelivered to the next member,
        as C's saga_participant_done answers); SAGA_ETOOBIG for a reply
        Kafka could not carry: the encoded Reply past max_message_bytes,
        or past the producer's message.max.bytes with its key and headers
        (the command still waits for its answer: complete() it again with
        a smaller one). An answer complete() accepted before close() was
        called is recorded and replied by close(); a complete() that races
        close() on another thread may be dropped with the participant, as
        after close()."""
        if not isinstance(command, Command) or not isinstance(result,
                                                              Result):
            raise SagaError("SAGA_EINVAL",
                            "complete() takes a Command and a Result")
        if self._closed:
            raise SagaError("SAGA_ECANCELED", f"complete() for "
                            f"{command.idempotency_key}: the participant is "
                            "closed, nothing is sent (the command is "
                            "redelivered to the next member)")
        encoded = self._encode_result(command, result)
        self._completions.put((command, result, encoded))

    def _encode_result(self, cmd, result):
        """The Reply to cmd carrying result, encoded: (value, headers).
        Raises SagaError(SAGA_ETOOBIG) when the reply could not be sent:
        its payload and reason past the ceilings (_check_size), the
        encoded Reply past max_message_bytes, or the record with its key
        and headers past the producer's message.max.bytes."""
        self._check_size(result)
        rep = self._Reply(saga_id=cmd.saga_id, step=cmd.step,
                          action=int(cmd.action), attempt=cmd.attempt,
                          idempotency_key=cmd.idempotency_key,
                          outcome=int(result.outcome),
                          payload=result.payload, reason=result.reason)
        value, headers = wire.encode(
            rep, correlation_id=cmd.correlation_id or cmd.saga_id,
            causation_id=cmd.idempotency_key,
            traceparent=wire.child_traceparent(cmd.traceparent),
            max_bytes=self._max)
        size = _kafka.record_size(cmd.saga_id.encode(), value, headers)
        if size > self._producer_max:
            raise SagaError("SAGA_ETOOBIG", f"the reply to "
                            f"{cmd.idempotency_key} is {size} bytes "
                            "encoded, past the producer's message.max.bytes "
                            f"({self._producer_max})")
        return value, headers

    def _check_size(self, result):
        """Refuse a payload the reply could not carry: past
        max_message_bytes, or too big for the producer's message.max.bytes
        (librdkafka's 1000000 by default, below the 1 MiB default) once the
        reply's ids and headers are added; such a reply, recorded, would be
        the answer to every redelivery and never reach the coordinator."""
        room = self._producer_max - _REPLY_OVERHEAD_MAX
        size = len(result.payload) + len(result.reason.encode())
        if size > self._max or size > room:
            limit = min(self._max, room)
            raise SagaError("SAGA_ETOOBIG", f"the reply's payload and reason "
                            f"of {size} bytes exceed the "
                            f"ceiling of {limit} bytes (max_message_bytes "
                            f"{self._max}, Kafka's message.max.bytes "
                            f"{self._producer_max} less room for the "
                            "reply's ids and headers)")

    def close(self, timeout=10.0):
        """Stop consuming: record and send the answers complete() already
        accepted, deliver the replies in flight (up to ``timeout``
        seconds, 0 or more), commit what they acknowledged, leave the
        group. Commands still in handlers, waiting behind one, or waiting
        to be taken up again after a handler fault, are abandoned
        (redelivered to the next member). The consumer is closed even
        when a step of this raises (a store fault, a flush error). A
        second close() does nothing. Raises SagaError(SAGA_EINVAL) for a
        timeout that is not a number of seconds, before anything is
        closed."""
        wire.as_seconds("timeout", timeout)
        if self._closed:
            return
        self._closed = True  # complete() refuses from here on
        self._stopping = True
        try:
            try:
                # Answers complete() took before the flag was set: recorded
                # and produced now, so the flush below delivers them.
                self._drain_completions()
            finally:
                self._producer.flush(timeout)
                self._commit_positions()
        finally:
            self._consumer.close()

    def _commit_positions(self):
        positions = []
        if self._started:
            positions = [_topic_partition(t, p, part.position)
                         for (t, p), part in self._parts.items()
                         if part.position is not None]
        if positions:
            try:
                self._consumer.commit(offsets=positions, asynchronous=False)
            except Exception as e:  # the group may be gone: say so
                log.warning("saga_client: final offset commit failed "
                            "(the last commands may be redelivered): %s", e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- intake ----------------------------------------------------------

    def _on_message(self, msg):
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise SagaError("SAGA_EKAFKA", f"fatal consumer error: {err}")
            return
        topic = msg.topic()
        if topic not in self._handlers:
            return  # not ours: leave it unacknowledged
        key = (topic, msg.partition())
        part = self._parts.get(key)
        if part is None:  # consumed before its assignment was reported
            part = self._parts[key] = _Partition()
        part.add(msg.offset())
        job = _Job(msg, part)
        try:
            job.pb, job.meta = wire.decode(self._Command, msg.value(),
                                           msg.headers(), self._max)
        except SagaError as e:
            self.stats.dead_lettered += 1
            self._dead_letter(job, str(e))
            return
        job.cmd = self._view(job)
        self._judge(job)

    def _judge(self, job):
        """Answer a decoded command from the store (3), void it (3a) or
        hand it to the handler (4): a new delivery, or one a handler fault
        left waiting."""
        try:
            rec = self.store.lookup(job.cmd.effect_key)
        except StoreError as e:
            self._abandon(job, str(e))
            return
        except BaseException as e:
            # A store fault (anything but StoreError): abandoned and
            # counted as after a StoreError, then out of poll() as in
            # _finish.
            self._abandon(job, f"the store raised {e!r}")
            raise
        if rec is not None and rec.answers(job.cmd.attempt):
            # A redelivery, or a retry of an applied effect whose reply
            # came too late: the recorded reply, without running the step.
            self.stats.duplicates += 1
            self._reply(job, rec)
            return
        if job.cmd.action == Action.COMPENSATE and self._void(job):
            return
        self._dispatch(job)

    def _void(self, job):
        """3a: answer a COMPENSATE whose DO was never applied, without the
        handler; True when answered (or abandoned). A duplicate of a
        COMPENSATE in the handler queues behind it (_dispatch), and one
        whose DO is still in the handler goes to the handler: no outcome is
        recorded yet, only the handler knows what it did."""
        c = job.cmd
        do_key = wire.effect_key(c.saga_id, c.step, Action.DO)
        if c.effect_key in self._inflight or do_key in self._inflight:
            return False
        try:
            done = self.store.lookup(do_key)
            if done is not None and done.outcome == Outcome.SUCCESS:
                return False  # applied: the handler undoes it
            self.store.record(do_key, RecordedReply(
                Outcome.FAILURE, b"", VOID_DO_REASON, VOID_ATTEMPT))
            voided = RecordedReply(Outcome.SUCCESS, b"", VOID_COMP_REASON,
                                   c.attempt)
            self.store.record(c.effect_key, voided)
        except StoreError as e:
            self._abandon(job, str(e))
            return True
        except BaseException as e:  # a store fault: as in _judge
            self._abandon(job, f"the store raised {e!r}")
            raise
        self._reply(job, voided)
        return True

    def _view(self, job):
        c, m, msg = job.pb, job.meta, job.msg
        field = c.DESCRIPTOR.fields_by_name.get(wire.ACTION_NAME_FIELD)
        name = getattr(c, wire.ACTION_NAME_FIELD) if field is not None \
            else None
        return Command(
            topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
            saga_id=c.saga_id, saga_type=c.saga_type,
            definition_version=c.definition_version, step=c.step,
            action=Action(c.action), action_name=name or None,
            attempt=c.attempt, idempotency_key=c.idempotency_key,
            effect_key=wire.effect_key(c.saga_id, c.step, c.action),
            deadline_ms=c.deadline_ms, payload=bytes(c.payload),
            reply_topic=c.reply_topic, correlation_id=m.correlation_id,
            causation_id=m.causation_id, traceparent=m.traceparent)

    def _dispatch(self, job):
        key = job.cmd.effect_key
        first = self._inflight.get(key)
        if first is None and job.cmd.action == Action.DO:
            # A DO waits for its step's compensation in the handler (as in
            # C): if that compensates the step, the DO is refused.
            c = job.cmd
            first = self._inflight.get(
                wire.effect_key(c.saga_id, c.step, Action.COMPENSATE))
        if first is not None:
            first.dups.append(job)  # answered when that one is done
            return
        self._inflight[key] = job
        self.stats.handled += 1
        handler = self._handlers[job.cmd.topic]
        try:
            result = handler(job.cmd)
        except BaseException:
            self._abandon(job, "the handler raised")
            raise
        if result is None:
            return  # answered later through complete()
        try:
            if not isinstance(result, Result):
                raise SagaError("SAGA_EINVAL", f'the handler of topic '
                                f'"{job.cmd.topic}" returned '
                                f"{type(result).__name__}, not a Result or "
                                "None")
            encoded = self._encode_result(job.cmd, result)
        except SagaError as e:
            # a handler fault, as if it raised: nothing recorded or replied
            self._abandon(job, str(e))
            raise
        self._finish(job, result, encoded)

    def _drain_completions(self):
        while True:
            try:
                cmd, result, encoded = self._completions.get_nowait()
            except queue.Empty:
                return
            job = self._inflight.get(cmd.effect_key)
            if job is None or job.cmd is not cmd:
                log.warning("saga_client: complete() for %s ignored: it is "
                            "not waiting for an answer (already answered, "
                            "or abandoned)", cmd.idempotency_key)
                continue
            self._finish(job, result, encoded)

    def _take_up_released(self):
        """Judge again, as new deliveries, the commands a handler fault
        left waiting (_finish). One whose partition was revoked meanwhile
        is left to its next owner. When the handler faults again, the
        exception leaves poll() and the rest wait for the next turn."""
        while self._released:
            job = self._released.popleft()
            if self._parts.get((job.msg.topic(), job.msg.partition())) \
                    is not job.part:
                continue
            self._judge(job)

    def _finish(self, job, result, encoded):
        """Record and send a checked Result, encoded as the reply to job's
        command (_encode_result). Result checks its fields, and the callers
        encode it before they hand it over: a reply the store kept but the
        wire could never carry would answer every redelivery with
        nothing."""
        del self._inflight[job.cmd.effect_key]
        rec = RecordedReply(result.outcome, result.payload, result.reason,
                            job.cmd.attempt)
        # Record before replying: a crash between the two re-sends the
        # recorded reply on redelivery instead of running the handler again.
        try:
            self.store.record(job.cmd.effect_key, rec)
        except StoreError as e:
            self._abandon(job, str(e))
            return
        except BaseException as e:
            # A store that raises something other than StoreError: a fault
            # of the store, out of poll() like a handler's, but the command
            # and those waiting for it are abandoned as after a StoreError.
            self._abandon(job, f"the store raised {e!r}")
            raise
        if job.cmd.action == Action.COMPENSATE and \
                rec.outcome == Outcome.SUCCESS:
            # 3b: once its step is compensated, a DO that comes later is
            # never applied. A voided compensation recorded this first;
            # one the handler made (its DO was in the handler too) records
            # it now. The store keeps a recorded SUCCESS of the DO.
            c = job.cmd
            try:
                self.store.record(
                    wire.effect_key(c.saga_id, c.step, Action.DO),
                    RecordedReply(Outcome.FAILURE, b"", VOID_DO_REASON,
                                  VOID_ATTEMPT))
            except StoreError as e:
                self._abandon(job, str(e))
                return
            except BaseException as e:  # a store fault: as above
                self._abandon(job, f"the store raised {e!r}")
                raise
        self._reply(job, rec, encoded)
        dups, job.dups = job.dups, []
        again = []
        for d in dups:
            if d.cmd.effect_key == job.cmd.effect_key and \
                    rec.answers(d.cmd.attempt):
                self.stats.duplicates += 1
                self._reply(d, rec)
            else:
                again.append(d)
        if self._closed:
            # close() drains the last completions: no handler runs after
            # it, the others stay unacknowledged (the next member).
            return
        # Judged afresh against the store, as new deliveries: the first of
        # them may apply the effect (a later attempt after a FAILURE or
        # RETRYABLE), and the next must then get that reply, not the
        # handler again.
        for i, d in enumerate(again):
            try:
                self._judge(d)
            except BaseException:
                # The handler faulted on d (d is abandoned) and the
                # exception leaves poll(): the commands after d waited for
                # the same effect and are not lost with it. The next turn
                # judges them as new deliveries.
                self._released.extend(again[i + 1:])
                raise

    # ---- output ------------------------------------------------------------

    def _produce(self, job, topic, key, value, headers):
        """Produce with job's delivery report; raises what produce raises
        after waiting out a full local queue."""
        def delivered(err, _msg):
            self._delivered(job, err)
        for _ in range(100):
            try:
                self._producer.produce(topic, key=key, value=value,
                                       headers=headers, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: let it drain
                self._producer.poll(0.1)
        raise SagaError("SAGA_EKAFKA", "the producer queue stayed full")

    def _encode_reply(self, job, rec):
        """The Reply to job's command carrying rec: (value, headers), or
        SagaError when it cannot be encoded within max_message_bytes."""
        c = job.pb
        rep = self._Reply(saga_id=c.saga_id, step=c.step,
                          action=c.action, attempt=c.attempt,
                          idempotency_key=c.idempotency_key,
                          outcome=int(rec.outcome), payload=rec.payload,
                          reason=rec.reason)
        return wire.encode(
            rep, correlation_id=job.meta.correlation_id or c.saga_id,
            causation_id=c.idempotency_key,
            traceparent=wire.child_traceparent(job.meta.traceparent),
            max_bytes=self._max)

    def _reply(self, job, rec, encoded=None):
        c = job.pb
        try:
            value, headers = encoded or self._encode_reply(job, rec)
            self._produce(job, c.reply_topic, c.saga_id.encode(), value,
                          headers)
        except Exception as e:  # SagaError, KafkaException
            self._abandon(job, f"could not send the reply: {e}")

    def _dead_letter(self, job, reason):
        m = job.msg
        headers = list(m.headers() or []) + [
            (wire.HDR_DLQ_REASON, reason.encode()),
            (wire.HDR_DLQ_SOURCE, _source(m).encode())]
        to = self._dlq_topic or f"{m.topic()}{_DLQ_SUFFIX}"
        try:
            self._produce(job, to, m.key(), m.value(), headers)
        except Exception as e:  # SagaError, KafkaException
            if not _too_large(e):
                # Any other failure (a full queue, a topic Kafka refuses):
                # the input stays unacknowledged, whole, as after a reply
                # that could not be sent.
                self._abandon(job, f"could not dead-letter it to {to} "
                              f"({reason}): {e}")
                return
            # Too big for the producer: keep the headers and say what was
            # dropped (as the C library and sagad do), never a silent cut.
            n = len(m.value() or b"")
            headers += [
                (wire.HDR_DLQ_SIZE, str(n).encode()),
                (wire.HDR_DLQ_TRUNCATED, f"value of {n} bytes dropped: too "
                 "large for the producer".encode())]
            try:
                self._produce(job, to, m.key(), None, headers)
            except Exception as e:
                self._abandon(job, f"could not dead-letter it to {to} "
                              f"({reason}): {e}")

    def _delivered(self, job, err):
        if err is not None:
            what = "reply" if job.cmd is not None else "dead letter"
            self._abandon(job, f"Kafka did not take the {what}: {err}")
            return
        if job.cmd is not None:
            self.stats.replies_acked += 1
        # The reply (or dead letter) is durable: now the input may go.
        if self._parts.get((job.msg.topic(), job.msg.partition())) \
                is not job.part:
            return  # revoked meanwhile: the next owner answers it again
        pos = job.part.ack(job.msg.offset())
        if pos is not None:
            try:
                self._consumer.commit(offsets=[_topic_partition(
                    job.msg.topic(), job.msg.partition(), pos)],
                    asynchronous=True)
            except Exception as e:  # the next commit covers it
                log.warning("saga_client: offset commit failed: %s", e)

    def _abandon(self, job, why):
        """Leave job's input unacknowledged (redelivered after a restart
        or rebalance), with the commands queued behind it."""
        self.stats.errors += 1
        if job.cmd is not None and \
                self._inflight.get(job.cmd.effect_key) is job:
            del self._inflight[job.cmd.effect_key]
        log.warning("saga_client: command %s left unacknowledged, it is "
                    "redelivered after a restart or rebalance: %s",
                    _source(job.msg), why)
        dups, job.dups = job.dups, []
        for d in dups:
            self._abandon(d, f"it waited for {_source(job.msg)}")


def _too_large(e):
    """Whether produce() raised for a message past the producer's
    message.max.bytes (KafkaError MSG_SIZE_TOO_LARGE)."""
    from confluent_kafka import KafkaError
    err = e.args[0] if getattr(e, "args", None) else None
    code = getattr(err, "code", None)
    return callable(code) and code() == KafkaError.MSG_SIZE_TOO_LARGE


def _topic_partition(topic, partition, offset):
    from confluent_kafka import TopicPartition
    return TopicPartition(topic, partition, offset)
