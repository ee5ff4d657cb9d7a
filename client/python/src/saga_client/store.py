"""Effect stores: what a participant remembers of the replies it gave, by
effect key (``<saga_id>/<step>/<DO|COMPENSATE>``, the same for every
attempt; docs/protocol.md). One rule for every store, the C library's:

* a recorded SUCCESS stays (the effect was applied);
* otherwise a record is replaced only by a reply to a later attempt
  (a FAILURE or RETRYABLE applied nothing, and the coordinator retried).

A store is any object with ``lookup(effect_key)`` and
``record(effect_key, reply)``; both raise StoreError when they cannot
work, which leaves the command unacknowledged (it is redelivered)."""

import dataclasses
import threading

from . import wire
from .wire import Outcome, SagaError


class StoreError(SagaError):
    """The store could not read or write (code ``SAGA_ESTORE``)."""

    def __init__(self, detail):
        super().__init__("SAGA_ESTORE", detail)


@dataclasses.dataclass(frozen=True)
class RecordedReply:
    """The reply given for an effect: its outcome, payload and reason, and
    the attempt it answered. Checked as Result is: the payload is bytes (a
    str is kept as UTF-8), the reason a str without NUL, the attempt an int
    of 0 or more (0: a record of a table from before attempts); anything
    else raises SagaError(SAGA_EINVAL), so every store keeps the same
    bytes."""
    outcome: Outcome
    payload: bytes = b""
    reason: str = ""
    attempt: int = 1

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "outcome", wire.as_outcome(self.outcome))
        set_(self, "payload", wire.as_bytes("payload", self.payload))
        set_(self, "reason", wire.as_text("reason", self.reason))
        if not isinstance(self.attempt, int) or isinstance(self.attempt,
                                                           bool) \
                or self.attempt < 0:
            raise SagaError("SAGA_EINVAL", "attempt must be an int, 0 or "
                            f"more, not {self.attempt!r}")

    def answers(self, attempt):
        """True when this record is the answer to a command of ``attempt``
        without running the step: a SUCCESS answers every attempt (the
        effect was applied); any outcome answers its own attempt (a
        redelivery) and earlier ones (stale commands). A FAILURE or
        RETRYABLE of an earlier attempt does not: the step runs again.
        The same test says whether this record stays when a reply to
        ``attempt`` is recorded."""
        return self.outcome == Outcome.SUCCESS or self.attempt >= attempt


class MemoryStore:
    """Effect records in this process's memory: for tests, and for
    participants whose effects are naturally idempotent (records are lost
    when the process ends). Safe to share between threads."""

    def __init__(self):
        self._records = {}
        self._lock = threading.Lock()

    def lookup(self, effect_key):
        """The RecordedReply for effect_key, or None."""
        with self._lock:
            return self._records.get(effect_key)

    def record(self, effect_key, reply):
        """Record effect_key -> reply under the store rule (module doc)."""
        _check_reply("MemoryStore.record", reply)
        with self._lock:
            old = self._records.get(effect_key)
            if old is None or not old.answers(reply.attempt):
                self._records[effect_key] = reply

    def __len__(self):
        with self._lock:
            return len(self._records)


# The table and statements of the C library's PostgreSQL store
# (client/idem_store.c): a C and a Python participant can share a database.
# As the C store, look first and run only the DDL that has work to do: a
# role that may not create tables (a service's least-privilege role, with
# rights on the table only) opens a store on a database where the table
# is in place; PostgreSQL refuses it even CREATE TABLE IF NOT EXISTS.
EXISTS_SQL = (
    "SELECT t.oid IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute a"
    " WHERE a.attrelid = t.oid AND a.attname = 'attempt'"
    " AND NOT a.attisdropped)"
    " FROM (SELECT to_regclass('saga_idempotency') AS oid) t")

CREATE_SQL = (
    "CREATE TABLE IF NOT EXISTS saga_idempotency ("
    " key text PRIMARY KEY,"
    " outcome smallint NOT NULL CHECK (outcome BETWEEN 1 AND 3),"
    " payload bytea NOT NULL DEFAULT ''::bytea,"
    " reason text,"
    " recorded_at timestamptz NOT NULL DEFAULT now(),"
    " attempt integer NOT NULL DEFAULT 0)")

# a table made before replies were recorded by effect and attempt
UPGRADE_SQL = (
    "ALTER TABLE saga_idempotency"
    " ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0")

RECORD_SQL = (
    "INSERT INTO saga_idempotency (key, outcome, payload, reason, attempt)"
    " VALUES (%s, %s::smallint, %s, %s, %s::integer)"
    " ON CONFLICT (key) DO UPDATE SET"
    " outcome = EXCLUDED.outcome, payload = EXCLUDED.payload,"
    " reason = EXCLUDED.reason, attempt = EXCLUDED.attempt,"
    " recorded_at = now()"
    " WHERE saga_idempotency.outcome <> 1"
    " AND saga_idempotency.attempt < EXCLUDED.attempt")

LOOKUP_SQL = ("SELECT outcome, payload, reason, attempt FROM saga_idempotency"
              " WHERE key = %s")


def _first_line(e):
    return str(e).strip().splitlines()[0] if str(e).strip() else repr(e)


def _check_reply(what, reply):
    """Refuse a reply that is not a RecordedReply (a Result, None) with
    SagaError(SAGA_EINVAL) naming the argument, before any I/O."""
    if not isinstance(reply, RecordedReply):
        raise SagaError("SAGA_EINVAL", f"{what}'s reply must be a "
                        "RecordedReply(outcome, payload, reason, attempt), "
                        f"not {type(reply).__name__}")


def _record_params(effect_key, reply):
    return (effect_key, int(reply.outcome), bytes(reply.payload or b""),
            reply.reason or None, int(reply.attempt))


def record_in_transaction(conn, effect_key, reply):
    """Record effect_key -> reply on ``conn`` (a psycopg connection) inside
    the caller's open transaction, under the store rule: call it in the
    transaction that applies the step's effect, so "effect applied" and
    "reply recorded" are one fact. The table must exist (create a PgStore
    once first). Raises StoreError saying what failed; the caller's
    transaction is then aborted and must be rolled back. A reply that is
    not a RecordedReply (a Result: make a RecordedReply of its outcome,
    payload and reason, and cmd.attempt) raises SagaError(SAGA_EINVAL)
    before anything is sent."""
    _check_reply("record_in_transaction", reply)
    try:
        with conn.cursor() as cur:
            cur.execute(RECORD_SQL, _record_params(effect_key, reply))
    except Exception as e:  # the driver's own error classes vary
        raise StoreError(f'could not record idempotency key "{effect_key}": '
                         f"{_first_line(e)}") from e


class PgStore:
    """Effect records in the table ``saga_idempotency`` of the
    participant's own PostgreSQL database (the C library's table: key,
    outcome, payload, reason, recorded_at, attempt), created if missing.

    ``conn`` is a psycopg (3) connection, or a conninfo string for which
    the store opens its own connection (autocommit), and opens it again
    once when it finds it lost (a server restart, a terminated session):
    the lookup or record is then run again (both are safe to repeat). With
    a connection given, each lookup and record is its own short
    transaction, committed unless the connection is in autocommit mode: do
    not hand the store a connection while your own transaction on it is
    open; a lost one stays lost (StoreError each time).

    When the table cannot be checked or created, the constructor closes
    the connection it opened and raises StoreError. After close(), lookup
    and record raise StoreError (the store never opens a connection
    again)."""

    def __init__(self, conn):
        self._closed = False
        if isinstance(conn, str):
            try:
                import psycopg
            except ImportError as e:
                raise StoreError("the PostgreSQL store needs psycopg 3 "
                                 "(Debian: python3-psycopg)") from e
            self._conninfo = conn
            conn = self._connect()
            self._owned = True
        else:
            self._conninfo = None
            self._owned = False
        self.conn = conn
        try:
            table, attempt = self._run(EXISTS_SQL, (),
                                       'could not look for table '
                                       '"saga_idempotency"', fetch=True)
            if not table:
                self._run(CREATE_SQL, (),
                          'could not create table "saga_idempotency"')
            elif not attempt:
                self._run(UPGRADE_SQL, (),
                          'could not add column "attempt" to table '
                          '"saga_idempotency"')
        except BaseException:
            self.close()  # the connection it opened, not a caller's
            raise

    def _connect(self):
        import psycopg
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except Exception as e:
            raise StoreError("could not connect to PostgreSQL: "
                             f"{_first_line(e)}") from e

    def _lost(self):
        """Whether the connection is gone (closed, or broken by a lost
        session)."""
        return bool(getattr(self.conn, "closed", False) or
                    getattr(self.conn, "broken", False))

    def _run(self, sql, params, what, fetch=False):
        if self._closed:
            raise StoreError(f"{what}: the store is closed")
        for again in (False, True):
            try:
                with self.conn.cursor() as cur:
                    cur.execute(sql, params)
                    row = cur.fetchone() if fetch else None
                if not self.conn.autocommit:
                    self.conn.commit()
                return row
            except Exception as e:
                if self._owned and not again and self._lost():
                    try:
                        self.conn.close()
                    except Exception:  # already gone
                        pass
                    try:
                        self.conn = self._connect()
                    except StoreError as e2:
                        raise StoreError(f"{what}: the connection was lost "
                                         f"and {e2.detail}") from e
                    continue
                try:
                    if not self.conn.autocommit:
                        self.conn.rollback()
                except Exception:  # the connection may be gone: say the first
                    pass
                raise StoreError(f"{what}: {_first_line(e)}") from e

    def lookup(self, effect_key):
        """The RecordedReply for effect_key, or None."""
        row = self._run(LOOKUP_SQL, (effect_key,),
                        f'could not look up idempotency key "{effect_key}"',
                        fetch=True)
        if row is None:
            return None
        outcome, payload, reason, attempt = row
        return RecordedReply(Outcome(outcome), bytes(payload or b""),
                             reason or "", int(attempt))

    def record(self, effect_key, reply):
        """Record effect_key -> reply under the store rule (module doc)."""
        _check_reply("PgStore.record", reply)
        self._run(RECORD_SQL, _record_params(effect_key, reply),
                  f'could not record idempotency key "{effect_key}"')

    def close(self):
        """Close the connection if the store opened it (a connection the
        caller gave stays the caller's). From then on lookup and record
        raise StoreError. A second close() does nothing."""
        self._closed = True
        if self._owned:
            self.conn.close()
