"""Python participants and starters for the saga coordinator.

The wire contract is docs/protocol.md; this package implements it as the C
library does (docs/client.md, "Python"):

* Participant -- consume a command topic, answer each effect once (effect
  key de-duplication in a pluggable store), reply before committing the
  offset, dead-letter what does not decode;
* Starter -- produce StartSaga, await the saga's outcome notification;
* MemoryStore, PgStore, record_in_transaction -- the effect stores.
"""

from .participant import Command, Participant, Result, Stats
from .starter import Notification, Starter
from .store import (MemoryStore, PgStore, RecordedReply, StoreError,
                    record_in_transaction)
from .wire import (Action, NotificationKind, Outcome, SagaError, effect_key,
                   idempotency_key)

__all__ = [
    "Action", "Command", "MemoryStore", "Notification", "NotificationKind",
    "Outcome", "Participant", "PgStore", "RecordedReply", "Result",
    "SagaError", "Starter", "Stats", "StoreError", "effect_key",
    "idempotency_key", "record_in_transaction",
]
__version__ = "0.1.0"
