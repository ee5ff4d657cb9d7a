"""The saga.v1 wire contract of docs/protocol.md: keys, Kafka headers,
ceilings and the checks every receiver makes, as the C library's codec
(client/wire.c) makes them. Pure functions: no I/O.

Errors carry the C library's names (``SAGA_ETYPE``, ``SAGA_EDECODE``...),
so a dead letter's ``saga-dlq-reason`` reads the same whichever library
wrote it."""

import enum
import os

from google.protobuf import message as _pb_message

from . import _pb

MAX_ID = 255
"""Ceiling on ids, step names, topics and header values, in bytes."""
MAX_KEY = 2 * MAX_ID + 32
"""Ceiling on an idempotency key built from the longest ids
(``<saga_id>/<step>/COMPENSATE/<32-bit attempt>``), and so on the
``causation-id`` header that carries one (a reply's), in bytes."""
MAX_TEXT = 1024  # a CancelSaga's or OperatorAction's reason, in bytes
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
"""Default ceiling on a message value (1 MiB)."""
DEFAULT_INBOX_TOPIC = "saga.inbox"
DEFAULT_NOTIFICATIONS_TOPIC = "saga.notifications"

HDR_TYPE = "saga-message-type"
HDR_SAGA_ID = "saga-id"
HDR_CORRELATION = "correlation-id"
HDR_CAUSATION = "causation-id"
HDR_TRACEPARENT = "traceparent"
HDR_DLQ_REASON = "saga-dlq-reason"
HDR_DLQ_SOURCE = "saga-dlq-source"
HDR_DLQ_SIZE = "saga-dlq-size"
HDR_DLQ_TRUNCATED = "saga-dlq-truncated"

# The name of the Command field that carries the definition's action name
# ("charge", "refund") once the protocol has it; read only when present.
ACTION_NAME_FIELD = "action_name"


class Action(enum.IntEnum):
    """What a command asks for (schemas/saga.proto ``Action``)."""
    DO = 1
    COMPENSATE = 2


class Outcome(enum.IntEnum):
    """How a step ended (schemas/saga.proto ``Outcome``)."""
    SUCCESS = 1    # done; the saga moves on
    FAILURE = 2    # business failure: the saga compensates
    RETRYABLE = 3  # transient: the coordinator retries the step


class NotificationKind(enum.IntEnum):
    """Lifecycle notification kinds (schemas/saga.proto)."""
    STARTED = 1
    STEP_DONE = 2
    COMPLETED = 3
    COMPENSATED = 4
    COMPENSATION_FAILED = 5
    REJECTED = 6
    CANCEL_REFUSED = 7  # a cancel changed nothing; reason says why

    @property
    def is_outcome(self):
        """True for the kinds a starter awaits (a saga's end)."""
        return self in (NotificationKind.COMPLETED,
                        NotificationKind.COMPENSATED,
                        NotificationKind.COMPENSATION_FAILED,
                        NotificationKind.REJECTED)


class SagaError(Exception):
    """An error with the C library's code name.

    ``code`` is one of ``SAGA_EINVAL``, ``SAGA_ETOOBIG``, ``SAGA_EDECODE``,
    ``SAGA_ETYPE``, ``SAGA_EMISSING``, ``SAGA_EKAFKA``, ``SAGA_ETIMEDOUT``,
    ``SAGA_ECANCELED``, ``SAGA_ESTORE``, ``SAGA_ESTATE``, ``SAGA_EEXIST``;
    ``detail`` says what went wrong. ``str(e)`` is ``"<code>: <detail>"``,
    the form of a dead letter's reason."""

    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def action_name(action):
    """``"DO"`` or ``"COMPENSATE"`` for an action value, ``"?"`` otherwise."""
    if not _is_int(action):
        return "?"
    return {1: "DO", 2: "COMPENSATE"}.get(int(action), "?")


def idempotency_key(saga_id, step, action, attempt):
    """The key naming one attempt: ``<saga_id>/<step>/<DO|COMPENSATE>/<attempt>``.

    Raises SagaError(SAGA_EINVAL) as effect_key() does, and for an attempt
    that is not an int from 0 to 4294967295 (the wire's uint32)."""
    if not _is_int(attempt) or not 0 <= attempt < 2**32:
        raise SagaError("SAGA_EINVAL", "attempt must be an int from 0 to "
                        f"4294967295, not {attempt!r}")
    return f"{effect_key(saga_id, step, action)}/{int(attempt)}"


def effect_key(saga_id, step, action):
    """The key naming the effect whatever the attempt:
    ``<saga_id>/<step>/<DO|COMPENSATE>``. A participant applies an effect at
    most once per effect key (docs/protocol.md).

    ``action`` is Action.DO or Action.COMPENSATE, or their numbers 1 and
    2, as the C library's saga_action_t (not the names "DO" and
    "COMPENSATE"). Raises SagaError(SAGA_EINVAL) for a saga_id or step
    that is not a str, or any other action, saying what is accepted."""
    for what, v in (("saga_id", saga_id), ("step", step)):
        if not isinstance(v, str):
            raise SagaError("SAGA_EINVAL", f"{what} must be a str, not "
                            f"{type(v).__name__}")
    name = action_name(action)
    if name == "?":
        raise SagaError("SAGA_EINVAL", f"action must be Action.DO or "
                        "Action.COMPENSATE (or 1 or 2, as saga_action_t), "
                        f"not {action!r}")
    return f"{saga_id}/{step}/{name}"


# ---- arguments -------------------------------------------------------------

def as_bytes(what, value):
    """``value`` as bytes: bytes, bytearray or memoryview as they are, a str
    as UTF-8, None as ``b""``. Raises SagaError(SAGA_EINVAL) naming
    ``what`` for anything else (a dict, a list, a number: serialise it
    first, e.g. ``json.dumps(obj).encode()``), never turning it into other
    bytes (``bytes(5)`` would be five NUL bytes)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise SagaError("SAGA_EINVAL", f"{what} is not valid text at "
                            f"character {e.start}") from None
    raise SagaError("SAGA_EINVAL", f"{what} must be bytes or str (JSON "
                    f"text), not {type(value).__name__}: serialise it first, "
                    "e.g. json.dumps(value).encode()")


def as_text(what, value):
    """``value`` as a str for a text field (a reason, a name, an id):
    None as ``""``; a str without NUL bytes (a receiver in C would refuse
    the message). Raises SagaError(SAGA_EINVAL) naming ``what``
    otherwise."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SagaError("SAGA_EINVAL", f"{what} must be a str, not "
                        f"{type(value).__name__}")
    if "\0" in value:
        raise SagaError("SAGA_EINVAL", f"{what} contains a NUL byte at byte "
                        f"{_nul_at(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: no UTF-8 for it
        raise SagaError("SAGA_EINVAL", f"{what} is not valid text at "
                        f"character {e.start}") from None
    return value


MAX_TOPIC = 249
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789._-")


def is_topic(value):
    """True for a name Kafka takes as a topic: 1 to 249 of A-Z a-z 0-9 .
    _ -, not "." or ".." (the C library's rule). librdkafka would take a
    name starting with '^' as a pattern to subscribe to."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_TOPIC
            and value not in (".", "..")
            and all(ch in _TOPIC_CHARS for ch in value))


def _nul_at(text):
    """Byte offset (UTF-8) of the first NUL in text."""
    return len(text[:text.index("\0")].encode("utf-8", "surrogatepass"))


def as_outcome(value):
    """``value`` as an Outcome (SUCCESS, FAILURE or RETRYABLE, or their
    numbers). Raises SagaError(SAGA_EINVAL) otherwise."""
    if not isinstance(value, bool):
        try:
            return Outcome(value)
        except (ValueError, TypeError):
            pass
    raise SagaError("SAGA_EINVAL", f"outcome must be Outcome.SUCCESS, "
                    f"FAILURE or RETRYABLE, not {value!r}")


def as_seconds(what, value):
    """A timeout in seconds: a number, 0 or more. Raises
    SagaError(SAGA_EINVAL) naming ``what`` otherwise (None, a str, NaN, a
    negative number, which confluent_kafka would take as "wait for good"),
    as the C library refuses a negative timeout."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and value >= 0:
        return value
    raise SagaError("SAGA_EINVAL", f"{what} must be a number of seconds, 0 "
                    f"or more, not {value!r}")


def as_max_bytes(value):
    """A max_message_bytes argument: a positive int; None or 0 mean
    DEFAULT_MAX_MESSAGE_BYTES (the C library's rule). Raises
    SagaError(SAGA_EINVAL) otherwise."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return DEFAULT_MAX_MESSAGE_BYTES
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise SagaError("SAGA_EINVAL", "max_message_bytes must be a positive "
                    f"number of bytes (0 or None: 1 MiB), not {value!r}")


# ---- strings and headers -------------------------------------------------

def _forbidden_at(text, allow_slash, allow_tab_newline=False):
    """Byte offset of the first forbidden character of text, or None."""
    pos = 0
    for ch in text:
        c = ord(ch)
        ok = c >= 0x20 and c != 0x7F
        if ch == "/" and not allow_slash:
            ok = False
        if ch in "\t\n" and allow_tab_newline:
            ok = True
        if not ok:
            return pos
        pos += len(ch.encode("utf-8", "surrogatepass"))
    return None


def check_id(what, value, *, required=True, allow_slash=False,
             max_bytes=MAX_ID):
    """Check an id-like string: non-empty (when required), at most
    max_bytes (MAX_ID) of UTF-8, no control characters, no ``/`` unless
    allow_slash. Raises SagaError(SAGA_EMISSING) naming the field and the
    fault."""
    if not value:
        if required:
            raise SagaError("SAGA_EMISSING", f"{what} is missing")
        return
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SagaError("SAGA_EMISSING",
                        f"{what} is not valid UTF-8 at byte {e.start}") from None
    if len(raw) > max_bytes:
        raise SagaError("SAGA_EMISSING", f"{what} is {len(raw)} bytes long, "
                        f"the ceiling is {max_bytes}")
    bad = _forbidden_at(value, allow_slash)
    if bad is not None:
        raise SagaError("SAGA_EMISSING",
                        f"{what} contains a forbidden character at byte {bad}")


def check_text(what, value, max_bytes):
    """Check free text (a reason, an operator's name): at most max_bytes of
    UTF-8, no control characters but tab and newline. Raises
    SagaError(SAGA_EMISSING) naming the field and the fault."""
    try:
        raw = (value or "").encode("utf-8")
    except UnicodeEncodeError as e:
        raise SagaError("SAGA_EMISSING",
                        f"{what} is not valid UTF-8 at byte {e.start}") from None
    if len(raw) > max_bytes:
        raise SagaError("SAGA_EMISSING", f"{what} is {len(raw)} bytes long, "
                        f"the ceiling is {max_bytes}")
    bad = _forbidden_at(value or "", True, allow_tab_newline=True)
    if bad is not None:
        raise SagaError("SAGA_EMISSING",
                        f"{what} contains a forbidden character at byte {bad}")


def header_max(name):
    """The ceiling on header ``name``'s value in bytes: MAX_ID, MAX_KEY for
    ``causation-id`` (a reply's carries its command's idempotency key)."""
    return MAX_KEY if name == HDR_CAUSATION else MAX_ID


def header_value(headers, name):
    """The last value of header ``name`` in a Kafka header list (pairs of
    name and bytes, as confluent_kafka gives them), decoded; ``""`` when
    absent. Raises SagaError(SAGA_EMISSING) for a value past header_max()
    bytes, holding a NUL or other control character, or not UTF-8."""
    raw = None
    for k, v in headers or ():
        if k == name:
            raw = v
    if raw is None:
        return ""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > header_max(name):
        raise SagaError("SAGA_EMISSING", f'header "{name}" is {len(raw)} bytes '
                        f"long, the ceiling is {header_max(name)}")
    if b"\0" in raw:
        raise SagaError("SAGA_EMISSING", f'header "{name}" contains a NUL byte')
    for i, c in enumerate(raw):
        if c < 0x20 or c == 0x7F:
            raise SagaError("SAGA_EMISSING", f'header "{name}" contains a '
                            f"control character at byte {i}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SagaError("SAGA_EMISSING", f'header "{name}" is not valid UTF-8 '
                        f"at byte {e.start}") from None


def _check_action(action):
    if action not in (1, 2):
        raise SagaError("SAGA_EMISSING",
                        f"action must be DO or COMPENSATE, got {int(action)}")


def _check_key(key, saga_id, step, action, attempt):
    if attempt < 1:
        raise SagaError("SAGA_EMISSING", "attempt must be at least 1")
    want = idempotency_key(saga_id, step, action, attempt)
    if key != want:
        raise SagaError("SAGA_EMISSING", f'idempotency_key "{key[:64]}" does '
                        f'not match "{want}"')


def _check_no_nul(msg):
    """The C codec refuses a string field holding a NUL byte (protobuf-c
    would cut the string there): a receiver in C would dead-letter it."""
    for field, value in msg.ListFields():
        if field.type == field.TYPE_STRING and "\0" in value:
            raise SagaError("SAGA_EMISSING", f"{field.name} contains a NUL "
                            f"byte at byte {_nul_at(value)}")


def check(msg):
    """Check the required fields and ceilings of a saga.v1 message (the
    generated protobuf classes), as the C codec does: no string field holds
    a NUL byte, then the type's own fields. Raises SagaError(SAGA_EMISSING)
    naming the field, or SAGA_EINVAL for a type that is not saga.v1's."""
    name = msg.DESCRIPTOR.full_name
    if name.startswith("saga.v1."):
        _check_no_nul(msg)
    if name == "saga.v1.StartSaga":
        check_id("saga_id", msg.saga_id)
        check_id("saga_type", msg.saga_type, allow_slash=True)
    elif name == "saga.v1.CancelSaga":
        check_id("saga_id", msg.saga_id)
        check_text("reason", msg.reason, MAX_TEXT)
        check_id("operator", msg.operator, required=False, allow_slash=True)
    elif name == "saga.v1.Command":
        check_id("saga_id", msg.saga_id)
        check_id("saga_type", msg.saga_type, required=False, allow_slash=True)
        check_id("step", msg.step)
        _check_action(msg.action)
        _check_key(msg.idempotency_key, msg.saga_id, msg.step, msg.action,
                   msg.attempt)
        check_id("reply_topic", msg.reply_topic, allow_slash=True)
        if ACTION_NAME_FIELD in msg.DESCRIPTOR.fields_by_name:
            check_id(ACTION_NAME_FIELD, getattr(msg, ACTION_NAME_FIELD),
                     required=False, allow_slash=True)
    elif name == "saga.v1.Reply":
        check_id("saga_id", msg.saga_id)
        check_id("step", msg.step)
        _check_action(msg.action)
        _check_key(msg.idempotency_key, msg.saga_id, msg.step, msg.action,
                   msg.attempt)
        if msg.outcome not in (1, 2, 3):
            raise SagaError("SAGA_EMISSING", "outcome must be SUCCESS, "
                            f"FAILURE or RETRYABLE, got {msg.outcome}")
    elif name == "saga.v1.Notification":
        check_id("saga_id", msg.saga_id)
        check_id("saga_type", msg.saga_type, required=False, allow_slash=True)
        if not 1 <= msg.kind <= 7:
            raise SagaError("SAGA_EMISSING",
                            f"notification kind {msg.kind} is unknown")
    else:
        raise SagaError("SAGA_EINVAL", f"message type {name} is not one this "
                        "library sends or receives")


class Meta:
    """The saga headers of a message (``""`` for those absent)."""
    __slots__ = ("saga_id", "correlation_id", "causation_id", "traceparent")

    def __init__(self, saga_id="", correlation_id="", causation_id="",
                 traceparent=""):
        self.saga_id = saga_id
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.traceparent = traceparent


def decode(cls, value, headers, max_bytes=DEFAULT_MAX_MESSAGE_BYTES):
    """Decode a Kafka message value into the saga.v1 class ``cls``, in the
    C codec's order of checks. Returns (message, Meta).

    Raises SagaError: SAGA_ETYPE when the ``saga-message-type`` header is
    missing or names another type; SAGA_ETOOBIG for a value past
    max_bytes; SAGA_EDECODE when the bytes do not parse; SAGA_EMISSING for
    a bad header value, a missing or invalid field, or a ``saga-id`` header
    that disagrees with the body."""
    want = cls.DESCRIPTOR.full_name
    mtype = header_value(headers, HDR_TYPE)
    if not mtype:
        raise SagaError("SAGA_ETYPE", f'header "{HDR_TYPE}" is missing, '
                        f'expected "{want}"')
    if mtype != want:
        raise SagaError("SAGA_ETYPE", f'header "{HDR_TYPE}" is "{mtype}", '
                        f'expected "{want}"')
    value = value or b""
    if len(value) > max_bytes:
        raise SagaError("SAGA_ETOOBIG", f"{want} of {len(value)} bytes exceeds "
                        f"the ceiling of {max_bytes} bytes")
    meta = Meta(header_value(headers, HDR_SAGA_ID),
                header_value(headers, HDR_CORRELATION),
                header_value(headers, HDR_CAUSATION),
                header_value(headers, HDR_TRACEPARENT))
    msg = cls()
    try:
        msg.ParseFromString(value)
    except (_pb_message.DecodeError, ValueError, UnicodeDecodeError):
        raise SagaError("SAGA_EDECODE", f"{want} of {len(value)} bytes could "
                        "not be decoded (truncated or malformed)") from None
    check(msg)
    if meta.saga_id and meta.saga_id != msg.saga_id:
        raise SagaError("SAGA_EMISSING", f'header "{HDR_SAGA_ID}" is '
                        f'"{meta.saga_id}" but the message is for saga '
                        f'"{msg.saga_id}"')
    if not meta.saga_id:
        meta.saga_id = msg.saga_id
    return msg, meta


def encode(msg, *, correlation_id="", causation_id="", traceparent="",
           max_bytes=DEFAULT_MAX_MESSAGE_BYTES):
    """Check and serialise a saga.v1 message. Returns (value, headers), the
    headers a list of (name, bytes) pairs: the type, the message's saga id
    and the given correlation, causation and trace headers (those not
    empty). Raises SagaError (SAGA_EMISSING, SAGA_ETOOBIG)."""
    check(msg)
    for what, v, hdr in (("correlation_id", correlation_id, HDR_CORRELATION),
                         ("causation_id", causation_id, HDR_CAUSATION),
                         ("traceparent", traceparent, HDR_TRACEPARENT)):
        check_id(what, v, required=False, allow_slash=True,
                 max_bytes=header_max(hdr))
    value = msg.SerializeToString()
    if len(value) > max_bytes:
        raise SagaError("SAGA_ETOOBIG", f"{msg.DESCRIPTOR.full_name} of "
                        f"{len(value)} bytes exceeds the ceiling of "
                        f"{max_bytes} bytes")
    headers = [(HDR_TYPE, msg.DESCRIPTOR.full_name.encode()),
               (HDR_SAGA_ID, msg.saga_id.encode())]
    for name, v in ((HDR_CORRELATION, correlation_id),
                    (HDR_CAUSATION, causation_id),
                    (HDR_TRACEPARENT, traceparent)):
        if v:
            headers.append((name, v.encode()))
    return value, headers


# ---- identifiers -----------------------------------------------------------

def new_traceparent():
    """A fresh W3C trace context ``00-<32 hex>-<16 hex>-01``."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def child_traceparent(parent):
    """Same trace, new span: the traceparent of a message caused by one
    carrying ``parent``; a fresh one when parent is not a W3C traceparent."""
    fresh = new_traceparent()
    if (parent and len(parent) == 55 and parent[2] == "-"
            and parent[35] == "-"):
        return parent[:36] + fresh[36:52] + parent[52:]
    return fresh


def message_classes():
    """The generated classes: dict of ``"StartSaga"``, ``"Command"``,
    ``"Reply"``, ``"Notification"``, ``"CancelSaga"`` to the protobuf
    message class."""
    return {n: getattr(_pb.saga_pb2, n)
            for n in ("StartSaga", "Command", "Reply", "Notification",
                      "CancelSaga")}
