"""Value storage (issue 14 item 2): Kademlia STORE / FIND_VALUE for offline messages and prekeys.

Modules: `wire` (STORAGE 0x0a layouts, docs/protocol.md §22), `records` (storage keys, value
ids, signed records), `store` (what a storer holds: quotas, expiry, republication, tombstones),
`sealed` (sealed boxes to a signed prekey), `layer` (storer and client behind the node/layer.py
surface), `events`, `settings`, `vectors` (docs/vectors/storage.json).
"""

from .events import (
    MailFailed,
    MailStored,
    MessageReceived,
    PrekeyMade,
    PrekeyFound,
    StorageEvent,
    StoreFailed,
    ValuesDeleted,
    ValuesFound,
    ValueStored,
)
from .layer import DROPS, StorageLayer
from .records import Value, epoch_of, mailbox_key, prekey_key
from .settings import StorageSettings
from .wire import STORAGE

__all__ = [
    "DROPS", "MailFailed", "MailStored", "MessageReceived", "PrekeyFound", "PrekeyMade",
    "STORAGE", "StorageEvent", "StorageLayer", "StorageSettings", "StoreFailed", "Value",
    "ValueStored", "ValuesDeleted", "ValuesFound", "epoch_of", "mailbox_key", "prekey_key",
]
