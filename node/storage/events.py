"""The storage layer's events (frozen dataclasses on one base, as every layer's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..layer import Event
from .records import Value


class StorageEvent(Event):
    """Base of the storage layer's events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ValueStored(StorageEvent):
    """Our value is held by `stored` nodes (`duplicate` of them already had it)."""

    key: bytes
    vid: bytes
    stored: int
    duplicate: int
    refused: int
    at: float


@dataclass(frozen=True, slots=True)
class StoreFailed(StorageEvent):
    """No node took our value: `reason` is `no_nodes` (the lookup found none), `busy` (too many
    lookups or operations), `timeout`, or a STORED status name (`quota`, `full`, ...)."""

    key: bytes
    vid: bytes
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class ValuesFound(StorageEvent):
    """A fetch ended: every valid value `answered` of `asked` nodes returned under `key`."""

    key: bytes
    values: tuple[Value, ...]
    asked: int
    answered: int
    at: float


@dataclass(frozen=True, slots=True)
class PrekeyFound(StorageEvent):
    """`node_id`'s newest prekey (None: none found); seal messages for it with `prekey`."""

    node_id: bytes
    prekey: bytes | None
    expiry: int
    at: float


@dataclass(frozen=True, slots=True)
class MessageReceived(StorageEvent):
    """A mailbox value for us, opened: `sender` (a node ID) signed `plaintext` inside the box.
    Acknowledge it with `acknowledge(epoch, [vid])` once it is kept (then the copies go), or
    call `not_kept(vid)` so that it is reported again at the next fetch."""

    vid: bytes
    epoch: int
    sender: bytes
    plaintext: bytes
    sent_sequence: int
    at: float


@dataclass(frozen=True, slots=True)
class ValuesDeleted(StorageEvent):
    """Our DELETE of `vids` was confirmed by `confirmed` of `asked` nodes."""

    key: bytes
    vids: tuple[bytes, ...]
    asked: int
    confirmed: int
    at: float


@dataclass(frozen=True, slots=True)
class PrekeyMade(StorageEvent):
    """We made (and are publishing) a new prekey: its owner keeps `private` (32 bytes, X25519)
    across restarts, as boxes sealed to it may arrive for `settings.prekey_keep` s after `made`
    (Unix seconds); `StorageLayer.keep_mailbox` takes the kept ones back. With keep_mailbox's
    `keep`, the prekey was kept (`keep` said so) before it was published."""

    public: bytes
    private: bytes = field(repr=False)
    made: float
    at: float


@dataclass(frozen=True, slots=True)
class MailStored(StorageEvent):
    """A message given to `mail` is sealed to `recipient`'s prekey and held by `stored` nodes
    in its mailbox (value `vid`); `tag` is the caller's name for it."""

    recipient: bytes
    tag: Any
    vid: bytes
    stored: int
    at: float


@dataclass(frozen=True, slots=True)
class MailFailed(StorageEvent):
    """A message given to `mail` is not stored: `reason` is `no_prekey` (the nodes asked hold
    none signed by the recipient), `no_answer` (no node answered the prekey fetch), `bad_prekey`,
    `busy`, or a StoreFailed reason (`no_nodes`, `timeout`, `quota`, ...)."""

    recipient: bytes
    tag: Any
    reason: str
    at: float
