"""The participant's protocol logic (docs/protocol.md, "What a participant
must do") against stand-in Kafka clients: de-duplication by effect key,
record before reply, offsets committed in order after the reply's delivery,
dead letters with the C library's reasons, the reply's headers."""
import unittest


from fakes import FakeConsumer, FakeMessage, FakeProducer, headers_dict
from saga_client import (Action, Command, MemoryStore, Outcome,
                         Participant, RecordedReply, Result, SagaError,
                         StoreError)
from saga_client._pb import saga_pb2 as pb

TOPIC = "payment.commands"
TRACE = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


def command_msg(offset, saga="o-1", step="charge", action=1, attempt=1,
                partition=0, payload=b'{"amount":5}', headers=None, cls=None,
                topic=TOPIC, **fields):
    c = (cls or pb.Command)(
        saga_id=saga, step=step, action=action, attempt=attempt,
        idempotency_key=f"{saga}/{step}/{'DO' if action == 1 else 'COMPENSATE'}"
                        f"/{attempt}",
        reply_topic="saga.inbox", payload=payload, **fields)
    h = headers if headers is not None else [
        ("saga-message-type", b"saga.v1.Command"), ("saga-id", saga.encode()),
        ("correlation-id", b"order-9"), ("traceparent", TRACE.encode())]
    return FakeMessage(topic, partition, offset, c.SerializeToString(), h,
                       key=saga.encode())


class Recorder:
    """A handler that answers what the test says (raising what is an
    exception) and logs its calls."""

    def __init__(self, *results):
        self.results = list(results)
        self.calls = []

    def __call__(self, cmd):
        self.calls.append(cmd)
        r = self.results.pop(0) if self.results else Result.success(b"ok")
        if isinstance(r, BaseException):
            raise r
        return r


class Base(unittest.TestCase):
    def setUp(self):
        self.consumer, self.producer = FakeConsumer(), FakeProducer()
        self.store = MemoryStore()
        self.p = Participant(None, "payment", self.store,
                             consumer=self.consumer, producer=self.producer)

    def start(self, handler):
        self.p.handle(TOPIC, handler)
        self.p.poll(0)
        self.consumer.assign_all([(TOPIC, 0), (TOPIC, 1)])

    def feed(self, *msgs):
        """Deliver msgs, one poll each (delivery reports come in it too)."""
        self.consumer.inbox.extend(msgs)
        for _ in msgs:
            self.p.poll(0)

    def replies(self):
        return [(pb.Reply.FromString(m["value"]), headers_dict(m["headers"]))
                for m in self.producer.produced if m["topic"] == "saga.inbox"]


class Replies(Base):
    def test_reply_is_recorded_first_then_produced_then_committed(self):
        order = []
        self.producer.before_produce = lambda topic: order.append(
            ("produce", self.store.lookup("o-1/charge/DO")))
        h = Recorder(Result.success(b'{"charged":5}'))
        self.start(h)
        self.consumer.inbox.append(command_msg(7))
        # one turn: handler, record, produce; the delivery report comes in
        # the same turn's producer poll, and only then the commit
        self.p.poll(0)
        self.assertEqual(len(h.calls), 1)
        self.assertEqual(order, [("produce", RecordedReply(
            Outcome.SUCCESS, b'{"charged":5}', "", 1))])
        self.assertEqual(self.consumer.commits, [(TOPIC, 0, 8)])
        self.assertEqual(self.p.stats.replies_acked, 1)

    def test_no_commit_before_the_delivery_report(self):
        self.start(Recorder())
        self.producer.poll = lambda timeout=0: 0  # reports held back
        self.feed(command_msg(3))
        self.assertEqual(len(self.producer.produced), 1)
        self.assertEqual(self.consumer.commits, [])

    def test_reply_copies_the_command_and_carries_the_headers(self):
        h = Recorder(Result.failure("card declined"))
        self.start(h)
        self.feed(command_msg(0, attempt=2))
        cmd = h.calls[0]
        self.assertEqual((cmd.saga_id, cmd.step, cmd.action, cmd.attempt),
                         ("o-1", "charge", Action.DO, 2))
        self.assertEqual(cmd.effect_key, "o-1/charge/DO")
        self.assertEqual(cmd.idempotency_key, "o-1/charge/DO/2")
        self.assertEqual(cmd.payload, b'{"amount":5}')
        self.assertIsNone(cmd.action_name)
        [(rep, hdr)] = self.replies()
        self.assertEqual((rep.saga_id, rep.step, rep.action, rep.attempt,
                          rep.idempotency_key, rep.outcome, rep.reason),
                         ("o-1", "charge", 1, 2, "o-1/charge/DO/2", 2,
                          "card declined"))
        self.assertEqual(hdr["saga-message-type"], "saga.v1.Reply")
        self.assertEqual(hdr["saga-id"], "o-1")
        self.assertEqual(hdr["correlation-id"], "order-9")
        self.assertEqual(hdr["causation-id"], "o-1/charge/DO/2")
        self.assertEqual(hdr["traceparent"][:36], TRACE[:36])
        self.assertNotEqual(hdr["traceparent"], TRACE)
        self.assertEqual(self.producer.produced[0]["key"], b"o-1")

    def test_correlation_defaults_to_the_saga_id(self):
        self.start(Recorder())
        self.feed(command_msg(0, headers=[("saga-message-type",
                                           b"saga.v1.Command")]))
        [(_, hdr)] = self.replies()
        self.assertEqual(hdr["correlation-id"], "o-1")

    def test_action_name_reaches_the_handler(self):
        # Command.action_name (field 11): the definition's action
        h = Recorder()
        self.start(h)
        self.feed(command_msg(0, action_name="charge"))
        self.assertEqual(h.calls[0].action_name, "charge")


class Dedup(Base):
    def test_redelivery_gets_the_recorded_reply_without_the_handler(self):
        h = Recorder(Result.success(b"first"))
        self.start(h)
        self.feed(command_msg(0), command_msg(1))
        self.assertEqual(len(h.calls), 1)
        self.assertEqual([r.payload for r, _ in self.replies()],
                         [b"first", b"first"])
        self.assertEqual(self.p.stats.duplicates, 1)
        self.assertEqual(self.consumer.commits[-1], (TOPIC, 0, 2))

    def test_later_attempt_of_an_applied_effect_gets_it_addressed_to_itself(
            self):
        h = Recorder(Result.success(b"charged"))
        self.start(h)
        self.feed(command_msg(0, attempt=1), command_msg(1, attempt=2))
        self.assertEqual(len(h.calls), 1)
        second, hdr = self.replies()[1]
        self.assertEqual((second.attempt, second.idempotency_key,
                          second.payload), (2, "o-1/charge/DO/2", b"charged"))
        self.assertEqual(hdr["causation-id"], "o-1/charge/DO/2")

    def test_after_retryable_or_failure_a_later_attempt_runs_again(self):
        for first in (Result.retryable("busy"), Result.failure("no")):
            with self.subTest(first=first.outcome):
                self.setUp()
                h = Recorder(first, Result.success(b"done"))
                self.start(h)
                self.feed(command_msg(0, attempt=1), command_msg(1, attempt=2))
                self.assertEqual([c.attempt for c in h.calls], [1, 2])
                self.assertEqual(self.store.lookup("o-1/charge/DO"),
                                 RecordedReply(Outcome.SUCCESS, b"done", "",
                                               2))

    def test_stale_attempt_after_a_later_one_is_answered_not_run(self):
        h = Recorder(Result.failure("no"))
        self.start(h)
        self.feed(command_msg(0, attempt=2), command_msg(1, attempt=1))
        self.assertEqual(len(h.calls), 1)
        self.assertEqual(self.replies()[1][0].idempotency_key,
                         "o-1/charge/DO/1")

    def test_compensate_is_another_effect(self):
        h = Recorder()
        self.start(h)
        self.feed(command_msg(0), command_msg(1, action=2))
        self.assertEqual([c.effect_key for c in h.calls],
                         ["o-1/charge/DO", "o-1/charge/COMPENSATE"])

    def test_a_compensation_of_an_unapplied_step_is_voided_then_its_do_refused(
            self):
        h = Recorder()
        self.start(h)
        self.feed(command_msg(0, action=2), command_msg(1, action=1),
                  command_msg(2, action=1, attempt=2))
        self.assertEqual(h.calls, [])
        self.assertEqual([(r.action, r.attempt, r.outcome, r.reason)
                          for r, _ in self.replies()],
                         [(2, 1, 1, "voided: the step was never applied"),
                          (1, 1, 2, "refused: the step was compensated "
                                    "before this command arrived"),
                          (1, 2, 2, "refused: the step was compensated "
                                    "before this command arrived")])

    def test_a_compensation_of_a_failed_or_applied_do(self):
        h = Recorder(Result.failure("card declined"), Result.success(b"c"),
                     Result.success(b"refunded"))
        self.start(h)
        self.feed(command_msg(0, saga="o-f"), command_msg(1, saga="o-f",
                                                          action=2),
                  command_msg(2, saga="o-a"), command_msg(3, saga="o-a",
                                                          action=2))
        # o-f: FAILURE applied nothing, its compensation is voided;
        # o-a: applied, its compensation reaches the handler
        self.assertEqual([c.effect_key for c in h.calls],
                         ["o-f/charge/DO", "o-a/charge/DO",
                          "o-a/charge/COMPENSATE"])
        self.assertEqual(self.replies()[1][0].reason,
                         "voided: the step was never applied")
        self.assertEqual(self.replies()[3][0].payload, b"refunded")

    def test_a_compensation_while_its_do_is_in_the_handler_goes_there(self):
        h = Recorder(None)  # the DO answers later
        self.start(h)
        self.feed(command_msg(0), command_msg(1, action=2))
        self.assertEqual([c.effect_key for c in h.calls],
                         ["o-1/charge/DO", "o-1/charge/COMPENSATE"])

    def test_a_do_after_a_handled_compensation_is_refused(self):
        # 3b for a compensation the handler made while its DO was in the
        # handler too: the DO ends RETRYABLE, and attempt 2, arriving
        # after the compensation, is refused, never applied (it was).
        h = Recorder(None, Result.success(b"undone"))
        self.start(h)
        self.feed(command_msg(0), command_msg(1, action=2))
        self.p.complete(h.calls[0], Result.retryable("busy"))
        self.p.poll(0)
        self.feed(command_msg(2, attempt=2))
        self.assertEqual(len(h.calls), 2)
        last, _ = self.replies()[-1]
        self.assertEqual((last.action, last.attempt, last.outcome),
                         (1, 2, int(Outcome.FAILURE)))
        self.assertIn("compensated before", last.reason)

    def test_a_do_waits_for_its_compensation_in_the_handler(self):
        # as in C: DO attempt 2, released while the step's compensation is
        # in the handler, waits for it, and is then refused
        h = Recorder(None, None)
        self.start(h)
        self.feed(command_msg(0), command_msg(1, action=2),
                  command_msg(2, attempt=2))
        self.p.complete(h.calls[0], Result.retryable("busy"))
        self.p.poll(0)
        self.assertEqual(len(h.calls), 2)  # not DO attempt 2
        self.p.complete(h.calls[1], Result.success(b"undone"))
        self.p.poll(0)
        self.assertEqual(len(h.calls), 2)
        last, _ = self.replies()[-1]
        self.assertEqual((last.action, last.attempt, last.outcome),
                         (1, 2, int(Outcome.FAILURE)))

    def test_same_effect_waits_for_the_one_in_the_handler(self):
        h = Recorder(None)  # the first answers later
        self.start(h)
        self.feed(command_msg(0, attempt=1), command_msg(1, attempt=2))
        self.assertEqual(len(h.calls), 1)
        self.assertEqual(self.producer.produced, [])
        self.p.complete(h.calls[0], Result.success(b"late"))
        self.p.poll(0)
        self.assertEqual([(r.attempt, r.payload) for r, _ in self.replies()],
                         [(1, b"late"), (2, b"late")])
        self.assertEqual(len(h.calls), 1)
        self.assertEqual(self.consumer.commits[-1], (TOPIC, 0, 2))

    def test_copies_behind_a_retryable_apply_the_effect_once(self):
        # Two copies of attempt 2 wait behind attempt 1 in the handler.
        # Attempt 1's RETRYABLE hands the first copy to the handler, which
        # applies the effect at once; the second copy gets that reply. It
        # reached the handler again (the effect applied twice).
        h = Recorder(None, Result.success(b"applied"),
                     Result.success(b"again"))
        self.start(h)
        self.feed(command_msg(0, attempt=1), command_msg(1, attempt=2),
                  command_msg(2, attempt=2))
        self.assertEqual(len(h.calls), 1)
        self.p.complete(h.calls[0], Result.retryable("busy"))
        self.p.poll(0)
        self.assertEqual(len(h.calls), 2)
        self.assertEqual([(r.attempt, r.payload) for r, _ in self.replies()],
                         [(1, b""), (2, b"applied"), (2, b"applied")])
        self.assertEqual(self.p.stats.duplicates, 1)

    def waiting_behind_a_retryable(self, h):
        """Attempt 1 in the handler; attempt 2, a copy of attempt 1 and a
        copy of attempt 2 wait for it; attempt 1 answers RETRYABLE and the
        handler's fault for attempt 2 leaves poll()."""
        self.start(h)
        self.feed(command_msg(0, attempt=1), command_msg(1, attempt=2),
                  command_msg(2, attempt=1), command_msg(3, attempt=2))
        self.assertEqual(len(h.calls), 1)
        self.p.complete(h.calls[0], Result.retryable("busy"))
        with self.assertLogs("saga_client", "WARNING") as logs:
            with self.assertRaises((RuntimeError, SagaError)):
                self.p.poll(0)
        self.assertIn(f"command {TOPIC}/0/1 left unacknowledged",
                      logs.output[0])

    def test_a_handler_fault_leaves_no_command_waiting_behind_it(self):
        # The faulty attempt 2 is left unacknowledged (redelivered after a
        # restart); the commands that waited with it are not: the copy of
        # attempt 1 gets its reply, the copy of attempt 2 reaches the
        # handler on the next turn, as any delivery after a fault does.
        for fault in (RuntimeError("bug"), "not a Result"):
            with self.subTest(fault=fault):
                self.setUp()
                h = Recorder(None, fault, Result.success(b"done"))
                self.waiting_behind_a_retryable(h)
                self.assertEqual([(r.attempt, r.outcome)
                                  for r, _ in self.replies()],
                                 [(1, Outcome.RETRYABLE),
                                  (1, Outcome.RETRYABLE)])
                self.p.poll(0)
                self.assertEqual([c.attempt for c in h.calls], [1, 2, 2])
                self.assertEqual([(r.attempt, r.outcome, r.payload)
                                  for r, _ in self.replies()][2:],
                                 [(2, Outcome.SUCCESS, b"done")])
                self.assertEqual(self.store.lookup("o-1/charge/DO"),
                                 RecordedReply(Outcome.SUCCESS, b"done", "",
                                               2))
                self.assertEqual((self.p.stats.errors,
                                  self.p.stats.duplicates), (1, 1))
                # offset 1 holds the commit position until a restart
                self.assertEqual(self.consumer.commits[-1], (TOPIC, 0, 1))

    def test_a_command_left_waiting_by_a_fault_is_judged_afresh(self):
        # The handler recorded the effect of attempt 2 (as
        # record_in_transaction does) before it raised: the copy of
        # attempt 2 that waited gets that record, not the handler.
        store = self.store

        class AppliedThenRaised(Recorder):
            def __call__(self, cmd):
                r = super().__call__(cmd)
                if len(self.calls) == 2:
                    store.record(cmd.effect_key, RecordedReply(
                        Outcome.SUCCESS, b"applied", "", cmd.attempt))
                    raise RuntimeError("bug after the commit")
                return r
        h = AppliedThenRaised(None)
        self.waiting_behind_a_retryable(h)
        self.p.poll(0)
        self.assertEqual([c.attempt for c in h.calls], [1, 2])
        self.assertEqual([(r.attempt, r.outcome, r.payload)
                          for r, _ in self.replies()][2:],
                         [(2, Outcome.SUCCESS, b"applied")])

    def test_a_command_left_waiting_by_a_fault_goes_with_its_partition(self):
        h = Recorder(None, RuntimeError("bug"))
        self.waiting_behind_a_retryable(h)
        self.consumer.revoke([(TOPIC, 0)])
        self.p.poll(0)
        self.assertEqual(len(h.calls), 2)  # the next owner answers it
        self.assertEqual(len(self.replies()), 2)


class Later(Base):
    def test_complete_from_another_thread_replies_on_the_polling_thread(self):
        import threading
        h = Recorder(None)
        self.start(h)
        self.feed(command_msg(0))
        replier = threading.Thread(target=self.p.complete, args=(
            h.calls[0], Result.success(b"from a worker")))
        replier.start()
        replier.join()
        self.assertEqual(self.producer.produced, [])  # not until a poll
        self.p.poll(0)
        self.assertEqual([r.payload for r, _ in self.replies()],
                         [b"from a worker"])
        self.assertEqual(self.consumer.commits, [(TOPIC, 0, 1)])

    def test_a_second_complete_changes_nothing_and_says_so(self):
        h = Recorder(None)
        self.start(h)
        self.feed(command_msg(0))
        self.p.complete(h.calls[0], Result.success(b"one"))
        self.p.complete(h.calls[0], Result.failure("two"))
        with self.assertLogs("saga_client", "WARNING") as logs:
            self.p.poll(0)
        self.assertIn("complete() for o-1/charge/DO/1 ignored", logs.output[0])
        self.assertEqual([r.payload for r, _ in self.replies()], [b"one"])

    def test_complete_after_close_is_cancelled_as_in_c(self):
        # it was queued and dropped without a word
        h = Recorder(None)
        self.start(h)
        self.feed(command_msg(0))
        self.p.close()
        with self.assertRaises(SagaError) as e:
            self.p.complete(h.calls[0], Result.success(b"late"))
        self.assertEqual(e.exception.code, "SAGA_ECANCELED")
        self.assertIn("o-1/charge/DO/1", str(e.exception))
        self.assertEqual(self.producer.produced, [])

    def test_close_sends_the_answers_complete_already_took(self):
        # complete() accepted them (from a worker thread) and close() came
        # before the next poll: they were queued and dropped, the commands
        # redelivered although their answers were in hand
        import threading
        h = Recorder(None, None)
        self.start(h)
        self.feed(command_msg(0, saga="a"), command_msg(1, saga="b"))
        workers = [threading.Thread(target=self.p.complete, args=(
            cmd, Result.success(cmd.saga_id.encode()))) for cmd in h.calls]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.p.close()
        self.assertEqual(sorted(r.payload for r, _ in self.replies()),
                         [b"a", b"b"])
        self.assertEqual(self.store.lookup("a/charge/DO").payload, b"a")
        self.assertEqual(self.store.lookup("b/charge/DO").payload, b"b")
        self.assertEqual(self.consumer.commits[-1], (TOPIC, 0, 2))
        self.assertTrue(self.consumer.closed)
        self.assertEqual(self.p.stats.errors, 0)

    def test_close_runs_no_handler_for_the_commands_waiting_behind(self):
        # a later attempt waited behind a RETRYABLE completed at close():
        # it is left for the next member, not handed to the handler
        h = Recorder(None, Result.success(b"no"))
        self.start(h)
        self.feed(command_msg(0), command_msg(1, attempt=2))
        self.p.complete(h.calls[0], Result.retryable("busy"))
        self.p.close()
        self.assertEqual(len(h.calls), 1)
        self.assertEqual([r.outcome for r, _ in self.replies()],
                         [Outcome.RETRYABLE])
        self.assertEqual(self.consumer.commits[-1], (TOPIC, 0, 1))

    def test_complete_takes_a_command_and_a_result(self):
        self.start(Recorder())
        with self.assertRaisesRegex(Exception, "SAGA_EINVAL"):
            self.p.complete("o-1/charge/DO/1", Result.success())


class FaultyStore(MemoryStore):
    """A MemoryStore whose lookup or record of one key raises what the
    test says."""

    def __init__(self, key, exc, on="lookup"):
        super().__init__()
        self.key, self.exc, self.on = key, exc, on

    def lookup(self, effect_key):
        if self.on == "lookup" and effect_key == self.key and self.exc:
            raise self.exc
        return super().lookup(effect_key)

    def record(self, effect_key, reply):
        if self.on == "record" and effect_key == self.key and self.exc:
            raise self.exc
        return super().record(effect_key, reply)


class StoreFaults(Base):
    """A store that raises something other than StoreError: the command
    is abandoned and counted as after a StoreError, with a warning, and
    the exception leaves poll(); it was neither, and the effect was
    never answered nor said to be left."""

    def use(self, store):
        self.store = store
        self.p = Participant(None, "payment", store,
                             consumer=self.consumer, producer=self.producer)

    def test_a_lookup_that_raises_is_abandoned_and_counted(self):
        self.use(FaultyStore("o-1/charge/DO", KeyError("boom")))
        h = Recorder()
        self.start(h)
        self.consumer.inbox.append(command_msg(0))
        with self.assertLogs("saga_client", "WARNING") as logs:
            with self.assertRaises(KeyError):
                self.p.poll(0)
        self.assertIn("left unacknowledged", logs.output[0])
        self.assertIn("KeyError", logs.output[0])
        self.assertEqual(self.p.stats.errors, 1)
        self.assertEqual(h.calls, [])
        self.assertEqual(self.producer.produced, [])
        # the store mended, the redelivery is answered
        self.store.exc = None
        self.feed(command_msg(1))
        self.assertEqual(len(h.calls), 1)
        self.assertEqual(self.consumer.commits, [])  # offset 0 still open

    def test_a_store_that_raises_while_voiding_is_abandoned_and_counted(self):
        # 3a: the COMPENSATE's own lookup works, the DO's record raises
        self.use(FaultyStore("o-1/charge/DO", TypeError("bad"), on="record"))
        h = Recorder()
        self.start(h)
        self.consumer.inbox.append(command_msg(0, action=2))
        with self.assertLogs("saga_client", "WARNING") as logs:
            with self.assertRaises(TypeError):
                self.p.poll(0)
        self.assertIn("TypeError", logs.output[0])
        self.assertEqual(self.p.stats.errors, 1)
        self.assertEqual((h.calls, self.producer.produced), ([], []))

    def test_a_store_that_raises_recording_the_refusal_of_the_do(self):
        # 3b after the handler compensated an applied DO: the DO's refusal
        # cannot be recorded
        store = FaultyStore("o-1/charge/DO", None, on="record")
        store.record("o-1/charge/DO", RecordedReply(Outcome.SUCCESS, b"",
                                                    "", 1))
        store.exc = TypeError("bad")
        self.use(store)
        h = Recorder(Result.success(b"refunded"))
        self.start(h)
        self.consumer.inbox.append(command_msg(0, action=2))
        with self.assertLogs("saga_client", "WARNING") as logs:
            with self.assertRaises(TypeError):
                self.p.poll(0)
        self.assertEqual(len(h.calls), 1)
        self.assertIn("TypeError", logs.output[0])
        self.assertEqual(self.p.stats.errors, 1)
        self.assertEqual(self.producer.produced, [])


class Offsets(Base):
    def test_commits_move_in_offset_order_per_partition(self):
        h = Recorder(None, Result.success(), Result.success())
        self.start(h)
        self.feed(command_msg(0, saga="a"), command_msg(1, saga="b"),
                  command_msg(0, saga="c", partition=1))
        # b is answered, but a (before it) is not: partition 0 stays;
        # partition 1 moves on its own
        self.assertEqual(self.consumer.commits, [(TOPIC, 1, 1)])
        self.p.complete(h.calls[0], Result.success())
        self.p.poll(0)
        self.assertEqual(self.consumer.commits[-1], (TOPIC, 0, 2))

    def test_a_failed_delivery_leaves_the_command_unacknowledged(self):
        self.start(Recorder())
        self.producer.fail_next = "broker down"
        with self.assertLogs("saga_client", "WARNING") as logs:
            self.feed(command_msg(0))
        self.assertIn("Kafka did not take the reply: broker down",
                      logs.output[0])
        self.assertEqual(self.consumer.commits, [])
        self.assertEqual(self.p.stats.errors, 1)

    def test_a_revoked_partition_is_not_committed(self):
        h = Recorder(None)
        self.start(h)
        self.feed(command_msg(0))
        self.consumer.revoke([(TOPIC, 0)])
        self.p.complete(h.calls[0], Result.success())
        self.p.poll(0)
        self.assertEqual(len(self.replies()), 1)  # harmless: a duplicate
        self.assertEqual(self.consumer.commits, [])

    def test_a_store_failure_replies_nothing_and_counts(self):
        class Broken(MemoryStore):
            def record(self, key, reply):
                raise StoreError("database is down")
        self.p.store = Broken()
        self.start(Recorder())
        with self.assertLogs("saga_client", "WARNING") as logs:
            self.feed(command_msg(0))
        self.assertIn("SAGA_ESTORE: database is down", logs.output[0])
        self.assertEqual(self.producer.produced, [])
        self.assertEqual(self.consumer.commits, [])
        self.assertEqual(self.p.stats.errors, 1)

    def test_a_store_raising_outside_its_contract_abandons_its_waiters(self):
        # A store of one's own that raises something else than StoreError
        # when it records: the exception leaves poll(), and the command
        # and the copy that waited for it are abandoned like after a
        # StoreError (counted, logged), not dropped without a word.
        class Broken(MemoryStore):
            def record(self, key, reply):
                raise ConnectionResetError("the cache went away")
        self.p.store = Broken()
        h = Recorder(None)
        self.start(h)
        self.feed(command_msg(0), command_msg(1))
        self.p.complete(h.calls[0], Result.success(b"late"))
        with self.assertLogs("saga_client", "WARNING") as logs:
            with self.assertRaises(ConnectionResetError):
                self.p.poll(0)
        self.assertEqual([line.split(" left ")[0].split()[-1]
                          for line in logs.output],
                         [f"{TOPIC}/0/0", f"{TOPIC}/0/1"])
        self.assertIn("the cache went away", logs.output[0])
        self.assertEqual(self.p.stats.errors, 2)
        self.assertEqual(self.producer.produced, [])
        self.assertEqual(self.consumer.commits, [])

    def test_a_handler_that_raises_stops_the_loop_unacknowledged(self):
        def boom(cmd):
            raise RuntimeError("bug")
        self.start(boom)
        self.consumer.inbox.append(command_msg(0))
        with self.assertLogs("saga_client", "WARNING"):
            with self.assertRaises(RuntimeError):
                self.p.poll(0)
        self.assertEqual(self.producer.produced, [])


class DeadLetters(Base):
    def dead_letter(self, msg):
        self.start(Recorder())
        self.feed(msg)
        [d] = self.producer.produced
        self.assertEqual(d["topic"], TOPIC + ".dlq")
        self.assertEqual(d["value"], msg.value())
        self.assertEqual(d["key"], msg.key())
        self.assertEqual(self.consumer.commits, [(TOPIC, 0, msg.offset() + 1)])
        self.assertEqual(self.p.stats.dead_lettered, 1)
        return headers_dict(d["headers"])

    def test_a_dead_letter_too_big_for_the_producer_says_what_it_dropped(
            self):
        # as in C: the headers stay, the value goes, and two headers say so
        tries = []

        def refuse_the_first(topic):
            from confluent_kafka import KafkaError, KafkaException
            tries.append(topic)
            if len(tries) == 1:  # the dead letter with its value
                raise KafkaException(KafkaError(
                    KafkaError.MSG_SIZE_TOO_LARGE))
        self.producer.before_produce = refuse_the_first
        self.start(Recorder())
        m = command_msg(4, headers=[("x-mine", b"kept")])
        self.feed(m)
        [d] = self.producer.produced
        self.assertIsNone(d["value"])
        h = headers_dict(d["headers"])
        self.assertEqual(h["x-mine"], "kept")
        self.assertEqual(h["saga-dlq-size"], str(len(m.value())))
        self.assertEqual(h["saga-dlq-truncated"],
                         f"value of {len(m.value())} bytes dropped: too "
                         "large for the producer")

    def test_a_dead_letter_refused_for_another_reason_keeps_its_input(self):
        # Only a message too large for the producer loses its value. Any
        # other refusal (a topic Kafka refuses, a queue that stays full)
        # leaves the input unacknowledged, whole, with the real reason, as
        # after a reply that could not be sent. It went out without its
        # value, "too large for the producer", and was committed.
        from confluent_kafka import KafkaError, KafkaException
        for why, refusal, times in [
                ("Unknown topic", KafkaException(KafkaError(
                    KafkaError._UNKNOWN_TOPIC)), 1),
                ("the producer queue stayed full", BufferError(), 100)]:
            with self.subTest(why=why):
                self.setUp()
                tries = []

                def refuse(topic):
                    tries.append(topic)
                    if len(tries) <= times:
                        raise refusal
                self.producer.before_produce = refuse
                self.start(Recorder())
                with self.assertLogs("saga_client", "WARNING") as logs:
                    self.feed(command_msg(4, headers=[("x-mine", b"kept")]))
                self.assertEqual(self.producer.produced, [])
                self.assertEqual(self.consumer.commits, [])
                self.assertEqual(self.p.stats.errors, 1)
                self.assertIn(why, logs.output[0])
                self.assertIn("could not dead-letter it", logs.output[0])
                self.assertNotIn("too large", logs.output[0])

    def test_a_dead_letter_kafka_did_not_take_says_so(self):
        self.producer.fail_next = "Broker: Topic authorization failed"
        self.start(Recorder())
        with self.assertLogs("saga_client", "WARNING") as logs:
            self.feed(command_msg(4, headers=[]))
        self.assertIn("Kafka did not take the dead letter: Broker: Topic "
                      "authorization failed", logs.output[0])
        self.assertEqual(self.consumer.commits, [])
        self.assertEqual(self.p.stats.errors, 1)

    def test_missing_type_header(self):
        h = self.dead_letter(command_msg(4, headers=[("x-mine", b"kept")]))
        self.assertEqual(h["saga-dlq-reason"], 'SAGA_ETYPE: header '
                         '"saga-message-type" is missing, expected '
                         '"saga.v1.Command"')
        self.assertEqual(h["saga-dlq-source"], TOPIC + "/0/4")
        self.assertEqual(h["x-mine"], "kept")

    def test_undecodable_bytes(self):
        m = FakeMessage(TOPIC, 0, 0, b"\x0a\x09abc", [("saga-message-type",
                                                     b"saga.v1.Command")])
        self.assertEqual(self.dead_letter(m)["saga-dlq-reason"],
                         "SAGA_EDECODE: saga.v1.Command of 5 bytes could not "
                         "be decoded (truncated or malformed)")

    def test_too_big(self):
        self.p._max = 64
        h = self.dead_letter(command_msg(0, payload=b"x" * 100))
        self.assertTrue(h["saga-dlq-reason"].startswith(
            "SAGA_ETOOBIG: saga.v1.Command of "), h["saga-dlq-reason"])

    def test_wrong_idempotency_key(self):
        m = command_msg(0)
        c = pb.Command.FromString(m.value())
        c.idempotency_key = "o-1/charge/DO/9"
        m._v = c.SerializeToString()
        self.assertEqual(self.dead_letter(m)["saga-dlq-reason"],
                         'SAGA_EMISSING: idempotency_key "o-1/charge/DO/9" '
                         'does not match "o-1/charge/DO/1"')

    def test_own_dlq_topic(self):
        self.p._dlq_topic = "all.dlq"
        self.start(Recorder())
        self.feed(command_msg(0, headers=[]))
        self.assertEqual(self.producer.produced[0]["topic"], "all.dlq")


class HandlerResults(Base):
    """What a handler hands back is checked where it is made: a Result
    holds bytes (a str is sent as UTF-8), a text reason without NUL and an
    Outcome; anything else is SAGA_EINVAL, and a handler that returns
    something other than a Result or None is a handler fault like a raise:
    out of poll(), nothing recorded or replied, the effect free for the
    next delivery."""

    def test_a_result_holds_bytes_and_takes_text_as_utf8(self):
        self.assertEqual(Result.success('{"room":"12é"}').payload,
                         '{"room":"12é"}'.encode())
        self.assertEqual(Result.success(bytearray(b"ab")).payload, b"ab")
        self.assertEqual(Result.success(memoryview(b"cd")).payload, b"cd")
        self.assertEqual(Result.success(None).payload, b"")
        self.assertEqual(Result.failure(None).reason, "")
        self.assertIs(Result(2).outcome, Outcome.FAILURE)

    def test_a_result_that_cannot_be_sent_is_refused_where_it_is_made(self):
        for make, what in [
                (lambda: Result.success(5), "payload"),
                (lambda: Result.success([1, 2]), "payload"),
                (lambda: Result.success({"room": "12"}), "payload"),
                (lambda: Result.failure(ValueError("no")), "reason"),
                (lambda: Result.failure("a\0b"), "reason"),
                (lambda: Result(9), "outcome"),
                (lambda: RecordedReply(Outcome.SUCCESS, {"a": 1}), "payload"),
                (lambda: RecordedReply(Outcome.SUCCESS, b"", "", -1),
                 "attempt")]:
            with self.assertRaises(SagaError) as e:
                make()
            self.assertEqual(e.exception.code, "SAGA_EINVAL")
            self.assertIn(what, e.exception.detail)
        self.assertEqual(RecordedReply(Outcome.SUCCESS, "t").payload, b"t")

    def test_a_handler_returning_something_else_is_a_handler_fault(self):
        for wrong in ("ok", {"ok": True}, True, (Outcome.SUCCESS, b"")):
            with self.subTest(wrong=wrong):
                self.setUp()
                h = Recorder(wrong, Result.success(b"fixed"))
                self.start(h)
                self.consumer.inbox.append(command_msg(0))
                with self.assertLogs("saga_client", "WARNING"):
                    with self.assertRaises(SagaError) as e:
                        self.p.poll(0)
                self.assertEqual(e.exception.code, "SAGA_EINVAL")
                self.assertIn(f'handler of topic "{TOPIC}" returned '
                              f"{type(wrong).__name__}", str(e.exception))
                self.assertEqual(self.producer.produced, [])
                self.assertIsNone(self.store.lookup("o-1/charge/DO"))
                # the effect is not left held: its redelivery runs
                self.feed(command_msg(1))
                self.assertEqual(len(h.calls), 2)
                self.assertEqual([r.payload for r, _ in self.replies()],
                                 [b"fixed"])

    def test_a_reply_past_kafkas_message_limit_is_refused_not_recorded(self):
        # 999,000 bytes is within the 1 MiB max_message_bytes but not within
        # librdkafka's message.max.bytes (1000000) with the reply's ids and
        # headers: recorded, it was the answer to every redelivery and was
        # never sent
        h = Recorder(Result.success(b"x" * 999000), None)
        self.start(h)
        self.consumer.inbox.append(command_msg(0))
        with self.assertLogs("saga_client", "WARNING"):
            with self.assertRaises(SagaError) as e:
                self.p.poll(0)
        self.assertEqual(e.exception.code, "SAGA_ETOOBIG")
        self.assertIn("message.max.bytes 1000000", str(e.exception))
        self.assertEqual(self.producer.produced, [])
        self.assertIsNone(self.store.lookup("o-1/charge/DO"))

    def test_a_reply_too_big_to_send_is_a_handler_fault_too(self):
        self.p._max = 64
        h = Recorder(Result.success(b"x" * 100), None)
        self.start(h)
        self.consumer.inbox.append(command_msg(0))
        with self.assertLogs("saga_client", "WARNING"):
            with self.assertRaises(SagaError) as e:
                self.p.poll(0)
        self.assertEqual(e.exception.code, "SAGA_ETOOBIG")
        self.assertEqual(self.producer.produced, [])
        self.assertIsNone(self.store.lookup("o-1/charge/DO"))
        # complete() says so to its caller, and a smaller answer goes
        self.feed(command_msg(1))
        with self.assertRaises(SagaError) as e:
            self.p.complete(h.calls[1], Result.success(b"y" * 100))
        self.assertEqual(e.exception.code, "SAGA_ETOOBIG")
        self.p.complete(h.calls[1], Result.success(b"small"))
        self.p.poll(0)
        self.assertEqual([r.payload for r, _ in self.replies()], [b"small"])

    def test_a_reason_too_big_to_send_is_refused_nothing_recorded(self):
        # the reason counts as the payload does (it was recorded, and every
        # redelivery then failed to send it)
        h = Recorder(Result.failure("r" * 999000), None)
        self.start(h)
        self.consumer.inbox.append(command_msg(0))
        with self.assertLogs("saga_client", "WARNING"):
            with self.assertRaises(SagaError) as e:
                self.p.poll(0)
        self.assertEqual(e.exception.code, "SAGA_ETOOBIG")
        self.assertEqual(self.producer.produced, [])
        self.assertIsNone(self.store.lookup("o-1/charge/DO"))

    def test_topics_are_kafka_topic_names(self):
        for bad in ("^orders.*", "a b", ".", "t" * 250):
            with self.assertRaises(SagaError) as e:
                self.p.handle(bad, Recorder())
            self.assertEqual(e.exception.code, "SAGA_EINVAL")

    def test_a_topic_whose_dead_letter_topic_kafka_refuses(self):
        # "<topic>.dlq" of a topic of 246 to 249 characters is past Kafka's
        # 249: refused unless dlq_topic names another; it was taken, and
        # every dead letter of it was refused by Kafka
        with self.assertRaises(SagaError) as e:
            self.p.handle("t" * 246, Recorder())
        self.assertEqual(e.exception.code, "SAGA_EINVAL")
        self.assertIn("246 characters long", str(e.exception))
        self.assertIn("<topic>.dlq", str(e.exception))
        self.assertIn("dlq_topic", str(e.exception))
        self.p.handle("t" * 245, Recorder())
        p = Participant(None, "payment", MemoryStore(), dlq_topic="all.dlq",
                        consumer=FakeConsumer(), producer=FakeProducer())
        p.handle("t" * 249, Recorder())

    def test_a_reply_past_the_ceiling_once_encoded_is_refused_to_its_caller(
            self):
        # a payload within max_message_bytes whose encoded Reply is past
        # it: complete() raises SAGA_ETOOBIG and the command still waits
        # (it was queued, then abandoned with only a log line); a handler
        # that returns it faults as with a payload past the ceiling
        self.p._max = 64
        h = Recorder(None, Result.success(b"x" * 60))
        self.start(h)
        self.feed(command_msg(0, saga="a"))
        with self.assertRaises(SagaError) as e:
            self.p.complete(h.calls[0], Result.success(b"x" * 60))
        self.assertEqual(e.exception.code, "SAGA_ETOOBIG")
        self.p.poll(0)
        self.assertEqual(self.producer.produced, [])
        self.assertEqual(self.p.stats.errors, 0)
        self.p.complete(h.calls[0], Result.success(b"small"))
        self.p.poll(0)
        self.assertEqual([r.payload for r, _ in self.replies()], [b"small"])
        self.consumer.inbox.append(command_msg(1, saga="b"))
        with self.assertLogs("saga_client", "WARNING"):
            with self.assertRaises(SagaError) as e:
                self.p.poll(0)
        self.assertEqual(e.exception.code, "SAGA_ETOOBIG")
        self.assertIsNone(self.store.lookup("b/charge/DO"))
        self.assertEqual(len(self.replies()), 1)

    def test_a_reason_that_is_not_text_is_refused_where_it_is_made(self):
        with self.assertRaises(SagaError) as e:
            Result.failure("half a pair \ud800")
        self.assertEqual(e.exception.code, "SAGA_EINVAL")


class LongIds(Base):
    def test_a_long_saga_id_gets_its_reply(self):
        # an idempotency key past 255 bytes (the causation-id of the reply)
        # is within the protocol's 542 (docs/protocol.md, "Kafka headers")
        saga = "s" * 250
        key = f"{saga}/charge/COMPENSATE/1"
        h = Recorder(Result.success(b"charged"), Result.success(b"refunded"))
        self.start(h)
        self.feed(command_msg(0, saga=saga),
                  command_msg(1, saga=saga, action=2, headers=[
                      ("saga-message-type", b"saga.v1.Command"),
                      ("causation-id", ("c" * 400).encode())]))
        self.assertEqual(len(h.calls), 2)
        self.assertEqual([(r.payload, hdr["causation-id"])
                          for r, hdr in self.replies()],
                         [(b"charged", f"{saga}/charge/DO/1"),
                          (b"refunded", key)])
        self.assertEqual(self.p.stats.errors, 0)


class GuideExample(unittest.TestCase):
    """The participant of docs/getting-started-python.md, step 5, as
    written: its handlers get commands whose payload is what
    docs/protocol.md says ("What payload holds": the envelope of the
    saga's input and the earlier steps' outputs), and the trip whose
    flight is full must end COMPENSATED, as the guide says."""

    def handlers(self):
        import os
        import re
        guide = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "..", "..", "docs", "getting-started-python.md")
        with open(guide, encoding="utf-8") as f:
            text = f.read()
        m = re.search(r"`trip/travel\.py`.*?```python\n(.*?)```", text,
                      re.S)
        self.assertIsNotNone(m, "no trip/travel.py in the guide")
        code = m.group(1).split("\nstore = PgStore(")[0]
        scope = {}
        exec(compile(code, guide, "exec"), scope)
        return scope["hotel"], scope["flight"]

    def do(self, step, payload):
        import json
        return Command(
            topic="flight.commands", partition=0, offset=0, saga_id="t-1",
            saga_type="trip", definition_version=1, step=step,
            action=Action.DO, action_name="book", attempt=1,
            idempotency_key=f"t-1/{step}/DO/1", effect_key=f"t-1/{step}/DO",
            deadline_ms=0, payload=json.dumps(payload).encode(),
            reply_topic="saga.inbox", correlation_id="t-1", causation_id="",
            traceparent="")

    def test_a_full_flight_fails_and_a_free_one_books(self):
        hotel, flight = self.handlers()
        room = {"book_hotel": {"output": {"room": "12"}}}
        full = flight(self.do("book_flight", {
            "input": {"city": "Oslo", "flight": "full"}, "steps": room}))
        self.assertEqual((full.outcome, full.reason),
                         (Outcome.FAILURE, "flight full"))
        free = flight(self.do("book_flight", {"input": {"city": "Lyon"},
                                              "steps": room}))
        self.assertEqual(free.outcome, Outcome.SUCCESS)


class DocExamplesClose(unittest.TestCase):
    """The participant programs of docs/getting-started-python.md (step 5)
    and docs/client.md ("Participant"), run whole on stand-ins: a handler
    that raises out of run() still closes the participant (its consumer
    leaves the group) and the store's connection. They called close()
    after run() returned, which a raise skipped."""

    def example(self, doc, pattern):
        import os
        import re
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "..", "..", "docs", doc)
        with open(path, encoding="utf-8") as f:
            m = re.search(pattern, f.read(), re.S)
        self.assertIsNotNone(m, f"no participant example in {doc}")
        return compile(m.group(1), path, "exec")

    def run_example(self, code, topic, payload):
        import os
        import psycopg
        import saga_client
        from unittest import mock
        made = {}

        class Store(MemoryStore):
            closed = False

            def __init__(self, conn):
                super().__init__()
                made["store"] = self

            def close(self):
                self.closed = True

        class Conn:
            closed = False

            def close(self):
                self.closed = True

        class StandIn(Participant):
            def __init__(self, bootstrap, group, store, **kw):
                made["consumer"] = c = FakeConsumer()
                c.inbox.append(command_msg(0, topic=topic, payload=payload))
                super().__init__(bootstrap, group, store, consumer=c,
                                 producer=FakeProducer(), **kw)
        made["conn"] = Conn()
        with mock.patch.object(saga_client, "Participant", StandIn), \
                mock.patch.object(saga_client, "PgStore", Store), \
                mock.patch.object(psycopg, "connect",
                                  lambda *a, **k: made["conn"]), \
                mock.patch("signal.signal"), \
                mock.patch.dict(os.environ, {
                    "SAGA_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                    "SAGA_PG_CONNINFO": "dbname=none"}), \
                self.assertLogs("saga_client", "WARNING"):
            with self.assertRaises(Exception) as e:
                exec(code, {"__name__": "example"})
        return made, e.exception

    def test_the_guide_closes_the_participant_when_a_handler_raises(self):
        code = self.example("getting-started-python.md",
                            r"`trip/travel\.py`.*?```python\n(.*?)```")
        # flight() reads payload["input"]: a payload without it raises
        made, e = self.run_example(code, "flight.commands", b"{}")
        self.assertIsInstance(e, KeyError)
        self.assertTrue(made["consumer"].closed)
        self.assertTrue(made["store"].closed)

    def test_client_md_closes_the_participant_when_a_handler_raises(self):
        code = self.example("client.md",
                            r"### Participant\n\n```python\n(.*?)```")
        # charge() calls declined(), which the example leaves undefined
        made, e = self.run_example(code, "payment.commands", b"{}")
        self.assertIsInstance(e, NameError)
        self.assertTrue(made["consumer"].closed)
        self.assertTrue(made["conn"].closed)


class Api(unittest.TestCase):
    def test_arguments_are_checked_with_a_reason(self):
        c, p = FakeConsumer(), FakeProducer()
        with self.assertRaisesRegex(Exception, "needs a group id"):
            Participant(None, "", MemoryStore(), consumer=c, producer=p)
        with self.assertRaisesRegex(Exception, "needs an effect store"):
            Participant(None, "g", None, consumer=c, producer=p)
        part = Participant(None, "g", MemoryStore(), consumer=c, producer=p)
        with self.assertRaisesRegex(Exception, "no handler registered"):
            part.poll(0)
        part.handle("t", print)
        with self.assertRaisesRegex(Exception, 'SAGA_EEXIST: topic "t"'):
            part.handle("t", print)
        part.poll(0)
        with self.assertRaisesRegex(Exception, "SAGA_ESTATE"):
            part.handle("u", print)

    def test_bad_arguments_are_saga_errors(self):
        c, p = FakeConsumer(), FakeProducer()

        def make(**kw):
            return Participant(None, "g", MemoryStore(), consumer=c,
                               producer=p, **kw)
        for kw in ({"max_message_bytes": -1}, {"max_message_bytes": "1M"},
                   {"dlq_topic": 5}, {"kafka_config": "linger.ms=5"},
                   {"kafka_config": {"group.id": "other"}}):
            with self.subTest(kw=kw):
                with self.assertRaises(SagaError) as e:
                    make(**kw)
                self.assertEqual(e.exception.code, "SAGA_EINVAL")
        part = make()
        with self.assertRaises(SagaError) as e:
            part.handle(5, print)
        self.assertEqual(e.exception.code, "SAGA_EINVAL")
        part.handle("t", print)
        with self.assertRaises(SagaError) as e:
            part.poll(-1)  # would block for good in confluent_kafka
        self.assertEqual(e.exception.code, "SAGA_EINVAL")

    def test_max_message_bytes_zero_is_the_default_as_in_c(self):
        c, p = FakeConsumer(), FakeProducer()
        part = Participant(None, "g", MemoryStore(), consumer=c, producer=p,
                           max_message_bytes=0)
        part.handle(TOPIC, Recorder())
        part.poll(0)
        c.assign_all([(TOPIC, 0)])
        c.inbox.append(command_msg(0))
        part.poll(0)
        self.assertEqual([m["topic"] for m in p.produced], ["saga.inbox"])
        self.assertEqual(part.stats.dead_lettered, 0)

    def test_the_store_is_an_object_with_lookup_and_record(self):
        # the class MemoryStore was taken (it has the attributes) and the
        # first command failed with a bare TypeError
        class NoMethods:
            lookup = None
            record = "x"
        for bad, what in ((MemoryStore, "not the class MemoryStore"),
                          (NoMethods(), "NoMethods"), (object(), "object")):
            with self.subTest(store=bad):
                with self.assertRaises(SagaError) as e:
                    Participant(None, "g", bad, consumer=FakeConsumer(),
                                producer=FakeProducer())
                self.assertEqual(e.exception.code, "SAGA_EINVAL")
                self.assertIn("effect store", str(e.exception))
                self.assertIn(what, str(e.exception))

    def test_close_checks_its_timeout_before_closing_anything(self):
        # close(-1) blocked for message.timeout.ms; close(None) raised a
        # TypeError out of flush() with the participant marked closed and
        # its consumer open for good
        c, p = FakeConsumer(), FakeProducer()
        flushed = []
        p.flush = lambda timeout=None: flushed.append(timeout) or 0
        part = Participant(None, "g", MemoryStore(), consumer=c, producer=p)
        part.handle(TOPIC, Recorder())
        part.poll(0)
        for bad in (-1, None, "5", float("nan")):
            with self.subTest(timeout=bad):
                with self.assertRaises(SagaError) as e:
                    part.close(bad)
                self.assertEqual(e.exception.code, "SAGA_EINVAL")
                self.assertIn("timeout", str(e.exception))
                self.assertFalse(c.closed)
                self.assertEqual(flushed, [])
        part.poll(0)  # still open
        part.close(0.5)
        self.assertEqual(flushed, [0.5])
        self.assertTrue(c.closed)

    def test_close_closes_the_consumer_when_flush_raises(self):
        c, p = FakeConsumer(), FakeProducer()

        def flush(timeout=None):
            raise RuntimeError("flush failed")
        p.flush = flush
        part = Participant(None, "g", MemoryStore(), consumer=c, producer=p)
        part.handle(TOPIC, Recorder())
        part.poll(0)
        with self.assertRaises(RuntimeError):
            part.close()
        self.assertTrue(c.closed)

    def test_run_after_a_stop_runs_again(self):
        # stop() was for good: every later run() returned at once
        c, p = FakeConsumer(), FakeProducer()
        part = Participant(None, "g", MemoryStore(), consumer=c, producer=p)
        calls = []

        def handler(cmd):
            calls.append(cmd.offset)
            part.stop()
            return Result.success()
        part.handle(TOPIC, handler)
        idle = []
        poll = c.poll

        def guarded_poll(timeout):  # no test hangs: stop when idle long
            msg = poll(timeout)
            if msg is None:
                idle.append(1)
                if len(idle) > 1000:
                    part.stop()
            return msg
        c.poll = guarded_poll
        part.stop()  # before run(): that run() returns at once
        part.run()
        self.assertEqual(calls, [])
        c.inbox.append(command_msg(0, saga="a"))
        part.run()  # returns once the handler stopped it
        self.assertEqual(calls, [0])
        c.inbox.append(command_msg(1, saga="b"))
        part.run()
        self.assertEqual(calls, [0, 1])
        self.assertEqual(len(p.produced), 2)
        self.assertLessEqual(len(idle), 1000)

    def test_a_stop_pending_when_run_raises_stays_for_the_next_run(self):
        c, p = FakeConsumer(), FakeProducer()
        part = Participant(None, "g", MemoryStore(), consumer=c, producer=p)

        def handler(cmd):
            part.stop()  # a signal during the faulty turn
            raise ValueError("handler fault")
        part.handle(TOPIC, handler)
        c.inbox.append(command_msg(0))
        with self.assertLogs("saga_client", "WARNING"):
            with self.assertRaises(ValueError):
                part.run()
        c.inbox.append(command_msg(1))
        part.run()  # at once: the stop was not lost
        self.assertEqual(len(c.inbox), 1)

    def test_a_participant_is_a_context_manager(self):
        c, p = FakeConsumer(), FakeProducer()
        with self.assertRaises(ValueError):
            with Participant(None, "g", MemoryStore(), consumer=c,
                             producer=p) as part:
                self.assertIsInstance(part, Participant)
                raise ValueError("out of run()")
        self.assertTrue(c.closed)

    def test_a_closed_participant_says_so(self):
        c, p = FakeConsumer(), FakeProducer()
        part = Participant(None, "g", MemoryStore(), consumer=c, producer=p)
        part.handle(TOPIC, Recorder())
        part.poll(0)
        part.close()
        part.close()  # harmless
        for call in (lambda: part.poll(0), part.run):
            with self.assertRaises(SagaError) as e:
                call()
            self.assertEqual(e.exception.code, "SAGA_ESTATE")


class Memory(unittest.TestCase):
    def test_the_store_rule(self):
        s = MemoryStore()
        s.record("k", RecordedReply(Outcome.RETRYABLE, b"", "busy", 1))
        s.record("k", RecordedReply(Outcome.FAILURE, b"", "no", 2))
        self.assertEqual(s.lookup("k").outcome, Outcome.FAILURE)
        s.record("k", RecordedReply(Outcome.SUCCESS, b"", "", 1))  # stale
        self.assertEqual(s.lookup("k").outcome, Outcome.FAILURE)
        s.record("k", RecordedReply(Outcome.SUCCESS, b"a", "", 3))
        s.record("k", RecordedReply(Outcome.FAILURE, b"", "", 4))
        self.assertEqual(s.lookup("k"), RecordedReply(Outcome.SUCCESS, b"a",
                                                      "", 3))
        self.assertIsNone(s.lookup("other"))

    def test_a_reply_to_record_is_a_recorded_reply(self):
        # record_in_transaction(conn, key, Result.success(b'{}')) said
        # SAGA_ESTORE "'Result' object has no attribute 'attempt'"
        from saga_client import record_in_transaction

        class NoConn:
            def cursor(self):
                raise AssertionError("nothing is sent")
        for bad in (Result.success(b"{}"), None, (Outcome.SUCCESS, b"")):
            for what, call in (
                    ("record_in_transaction", lambda r: record_in_transaction(
                        NoConn(), "s/charge/DO", r)),
                    ("MemoryStore.record", lambda r: MemoryStore().record(
                        "s/charge/DO", r))):
                with self.subTest(reply=bad, call=what):
                    with self.assertRaises(SagaError) as e:
                        call(bad)
                    self.assertEqual(e.exception.code, "SAGA_EINVAL")
                    self.assertIn(what, e.exception.detail)
                    self.assertIn("RecordedReply", e.exception.detail)
                    self.assertIn(type(bad).__name__, e.exception.detail)


if __name__ == "__main__":
    unittest.main()
