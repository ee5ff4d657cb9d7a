"""The wire rules of docs/protocol.md in saga_client.wire: keys, header
values, the checks and their order, with the C codec's error codes."""
import unittest

from saga_client import wire
from saga_client.wire import SagaError
from saga_client._pb import saga_pb2 as pb


def command(**kw):
    f = dict(saga_id="order-17", step="reserve", action=1, attempt=1,
             idempotency_key="order-17/reserve/DO/1",
             reply_topic="saga.inbox", payload=b"{}")
    f.update(kw)
    return pb.Command(**f)


def cmd_headers(**extra):
    h = [("saga-message-type", b"saga.v1.Command")]
    h += [(k.replace("_", "-"), v) for k, v in extra.items()]
    return h


class Keys(unittest.TestCase):
    def test_idempotency_key_names_the_attempt(self):
        self.assertEqual(wire.idempotency_key("order-17", "reserve", 1, 1),
                         "order-17/reserve/DO/1")
        self.assertEqual(wire.idempotency_key("o", "charge", 2, 3),
                         "o/charge/COMPENSATE/3")

    def test_effect_key_is_the_same_for_every_attempt(self):
        self.assertEqual(wire.effect_key("order-17", "reserve", 1),
                         "order-17/reserve/DO")
        self.assertEqual(wire.effect_key("o", "charge", wire.Action.COMPENSATE),
                         "o/charge/COMPENSATE")

    def test_unknown_action_is_refused(self):
        with self.assertRaises(SagaError) as e:
            wire.effect_key("o", "s", 0)
        self.assertEqual(e.exception.code, "SAGA_EINVAL")

    def test_a_refused_action_says_what_is_accepted(self):
        # 'action 'DO' is not DO or COMPENSATE' named what it refused only
        for bad in ("DO", "COMPENSATE", 3, None):
            with self.subTest(action=bad):
                with self.assertRaises(SagaError) as e:
                    wire.effect_key("s1", "charge", bad)
                self.assertIn("Action.DO or Action.COMPENSATE (or 1 or 2",
                              e.exception.detail)
                self.assertIn(f"not {bad!r}", e.exception.detail)
        with self.assertRaises(SagaError) as e:
            wire.idempotency_key("s1", "charge", "DO", 1)
        self.assertIn("Action.DO or Action.COMPENSATE", e.exception.detail)

    def test_a_key_is_never_made_of_something_else(self):
        # a None id would give "None/s/DO", a key of no saga
        for args in [(None, "s", 1), ("o", None, 2), ("o", 5, 1),
                     ("o", "s", "DO"), ("o", "s", None)]:
            with self.subTest(args=args):
                with self.assertRaises(SagaError) as e:
                    wire.effect_key(*args)
                self.assertEqual(e.exception.code, "SAGA_EINVAL")
        for attempt in ("x", 1.5, None, -1, True, 2**32):
            with self.subTest(attempt=attempt):
                with self.assertRaises(SagaError) as e:
                    wire.idempotency_key("o", "s", 1, attempt)
                self.assertEqual(e.exception.code, "SAGA_EINVAL")


class Headers(unittest.TestCase):
    def test_last_value_wins_and_absent_is_empty(self):
        h = [("correlation-id", b"a"), ("correlation-id", b"b")]
        self.assertEqual(wire.header_value(h, "correlation-id"), "b")
        self.assertEqual(wire.header_value(h, "traceparent"), "")
        self.assertEqual(wire.header_value(None, "traceparent"), "")

    def test_bad_values_are_refused_with_the_reason(self):
        cases = {
            b"x" * 256: 'header "h" is 256 bytes long, the ceiling is 255',
            b"a\0b": 'header "h" contains a NUL byte',
            b"a\nb": 'header "h" contains a control character at byte 1',
            b"ab\xff": 'header "h" is not valid UTF-8 at byte 2',
        }
        for raw, why in cases.items():
            with self.assertRaises(SagaError) as e:
                wire.header_value([("h", raw)], "h")
            self.assertEqual(e.exception.code, "SAGA_EMISSING")
            self.assertEqual(e.exception.detail, why)

    def test_255_bytes_pass(self):
        self.assertEqual(wire.header_value([("h", b"y" * 255)], "h"), "y" * 255)

    def test_causation_id_holds_an_idempotency_key_of_the_longest_ids(self):
        # docs/protocol.md, "Kafka headers": causation-id up to 542 bytes
        self.assertEqual(wire.header_value([("causation-id", b"k" * 542)],
                                           "causation-id"), "k" * 542)
        with self.assertRaises(SagaError) as e:
            wire.header_value([("causation-id", b"k" * 543)], "causation-id")
        self.assertEqual(e.exception.detail, 'header "causation-id" is 543 '
                         "bytes long, the ceiling is 542")
        key = wire.idempotency_key("i" * 255, "s" * 255, 2, 2**32 - 1)
        _, headers = wire.encode(pb.Reply(
            saga_id="i" * 255, step="s" * 255, action=2, attempt=2**32 - 1,
            idempotency_key=key, outcome=1), causation_id=key)
        self.assertEqual(dict(headers)["causation-id"], key.encode())


class Decode(unittest.TestCase):
    def decode_error(self, value, headers, max_bytes=1 << 20):
        with self.assertRaises(SagaError) as e:
            wire.decode(pb.Command, value, headers, max_bytes)
        return e.exception

    def test_a_good_command_decodes_with_its_headers(self):
        msg, meta = wire.decode(pb.Command, command().SerializeToString(),
                                cmd_headers(correlation_id=b"c-1",
                                            traceparent=b"00-x"))
        self.assertEqual(msg.step, "reserve")
        self.assertEqual(meta.correlation_id, "c-1")
        self.assertEqual(meta.saga_id, "order-17")  # from the body

    def test_type_header_missing_or_other(self):
        e = self.decode_error(command().SerializeToString(), [])
        self.assertEqual(str(e), 'SAGA_ETYPE: header "saga-message-type" is '
                         'missing, expected "saga.v1.Command"')
        e = self.decode_error(command().SerializeToString(),
                              [("saga-message-type", b"saga.v1.Reply")])
        self.assertEqual(str(e), 'SAGA_ETYPE: header "saga-message-type" is '
                         '"saga.v1.Reply", expected "saga.v1.Command"')

    def test_type_is_checked_before_size_and_size_before_parse(self):
        e = self.decode_error(b"\xff" * 100, [], max_bytes=10)
        self.assertEqual(e.code, "SAGA_ETYPE")
        e = self.decode_error(b"\xff" * 100, cmd_headers(), max_bytes=10)
        self.assertEqual(str(e), "SAGA_ETOOBIG: saga.v1.Command of 100 bytes "
                         "exceeds the ceiling of 10 bytes")

    def test_bytes_that_do_not_parse(self):
        e = self.decode_error(b"\x0a\x05ab", cmd_headers())
        self.assertEqual(str(e), "SAGA_EDECODE: saga.v1.Command of 4 bytes "
                         "could not be decoded (truncated or malformed)")

    def test_required_fields(self):
        cases = [
            (command(saga_id=""), "saga_id is missing"),
            (command(step=""), "step is missing"),
            (command(saga_id="a/b", idempotency_key="a/b/reserve/DO/1"),
             "saga_id contains a forbidden character at byte 1"),
            (command(action=0), "action must be DO or COMPENSATE, got 0"),
            (command(attempt=0), "attempt must be at least 1"),
            (command(idempotency_key="order-17/reserve/DO/2"),
             'idempotency_key "order-17/reserve/DO/2" does not match '
             '"order-17/reserve/DO/1"'),
            (command(reply_topic=""), "reply_topic is missing"),
            (command(step="s" * 256), "step is 256 bytes long, the ceiling "
             "is 255"),
            # as the C codec: the action name is an optional id, and no
            # string field may hold a NUL (protobuf-c would cut it there)
            (command(action_name="re\nfund"), "action_name contains a "
             "forbidden character at byte 2"),
            (command(saga_type="or\0der"), "saga_type contains a NUL byte "
             "at byte 2"),
        ]
        for msg, why in cases:
            e = self.decode_error(msg.SerializeToString(), cmd_headers())
            self.assertEqual((e.code, e.detail), ("SAGA_EMISSING", why))

    def test_saga_id_header_must_match_the_body(self):
        e = self.decode_error(command().SerializeToString(),
                              cmd_headers(saga_id=b"order-18"))
        self.assertEqual(e.detail, 'header "saga-id" is "order-18" but the '
                         'message is for saga "order-17"')

    def test_bad_header_is_missing_not_type(self):
        e = self.decode_error(command().SerializeToString(),
                              cmd_headers(causation_id=b"\x01"))
        self.assertEqual(e.code, "SAGA_EMISSING")


class Encode(unittest.TestCase):
    def test_headers_name_type_saga_and_meta(self):
        rep = pb.Reply(saga_id="o", step="s", action=1, attempt=1,
                       idempotency_key="o/s/DO/1", outcome=1)
        value, headers = wire.encode(rep, correlation_id="c",
                                     causation_id="o/s/DO/1")
        self.assertEqual(pb.Reply.FromString(value), rep)
        self.assertEqual(headers, [("saga-message-type", b"saga.v1.Reply"),
                                   ("saga-id", b"o"), ("correlation-id", b"c"),
                                   ("causation-id", b"o/s/DO/1")])

    def test_refuses_what_a_receiver_would(self):
        with self.assertRaises(SagaError) as e:
            wire.encode(pb.Reply(saga_id="o", step="s", action=1, attempt=1,
                                 idempotency_key="o/s/DO/1", outcome=0))
        self.assertEqual(e.exception.detail, "outcome must be SUCCESS, FAILURE"
                         " or RETRYABLE, got 0")
        with self.assertRaises(SagaError) as e:
            wire.encode(pb.StartSaga(saga_id="o", saga_type="t",
                                     input=b"x" * 100), max_bytes=50)
        self.assertEqual(e.exception.code, "SAGA_ETOOBIG")
        with self.assertRaises(SagaError) as e:
            wire.encode(pb.StartSaga(saga_id="o", saga_type="t"),
                        correlation_id="a\tb")
        self.assertEqual(e.exception.detail, "correlation_id contains a "
                         "forbidden character at byte 1")
        # sagad refuses a reply whose reason holds a NUL: never send one
        with self.assertRaises(SagaError) as e:
            wire.encode(pb.Reply(saga_id="o", step="s", action=1, attempt=1,
                                 idempotency_key="o/s/DO/1", outcome=2,
                                 reason="card\0declined"))
        self.assertEqual(str(e.exception), "SAGA_EMISSING: reason contains a "
                         "NUL byte at byte 4")


class Trace(unittest.TestCase):
    def test_child_keeps_the_trace_and_flags_with_a_new_span(self):
        parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        child = wire.child_traceparent(parent)
        self.assertEqual(len(child), 55)
        self.assertEqual(child[:36], parent[:36])
        self.assertEqual(child[52:], "-01")
        self.assertNotEqual(child[36:52], "b" * 16)

    def test_no_parent_gives_a_new_trace(self):
        t = wire.child_traceparent("")
        self.assertRegex(t, r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


if __name__ == "__main__":
    unittest.main()
