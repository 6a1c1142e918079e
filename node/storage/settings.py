"""Every number of value storage (storer and client roles)."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400


@dataclass(frozen=True, slots=True)
class StorageSettings:
    enabled: bool = True  # off: the node speaks no STORAGE (0x0a is an unknown type)
    replicas: int = 20  # nodes a value is stored at: the k closest to its key
    ttl: int = 7 * DAY  # s a message is kept (the expiry its author signs); storers cap it
    clock_skew: int = 3600  # s an expiry may lie beyond ttl (authors' clocks differ)
    epoch_length: int = DAY  # s per mailbox epoch (the key moves each epoch)
    republish_interval: float = 3600.0  # s between a storer's republications of a value
    # the last part of that interval a storer that received a value (a first copy or another's
    # republication) arms its own at random; one that republished re-arms at the part's start
    # (store.py: only about one storer of a value looks its key up an interval, not all k)
    republish_spread: float = 0.25
    max_republish_lookups: int = 8  # republish lookups running at once
    request_timeout: float = 2.0  # s a client waits for STORED / FOUND / DELETED
    # storer quotas: they bound memory whoever floods
    max_values: int = 10_000  # values held in all
    max_bytes: int = 4_000_000  # bytes of records held in all
    max_per_author: int = 64  # values held per author ID
    max_author_bytes: int = 64_000  # bytes held per author ID
    max_per_key: int = 256  # values held under one key
    max_tombstones: int = 8192  # ids of deleted values remembered (so no republish revives one)
    # meters (token buckets, node/ratelimit.py)
    verify_rate: float = 200.0  # signature checks a second (STORE, DELETE), in all
    verify_burst: float = 400.0
    source_rate: float = 20.0  # ... and per source host
    source_burst: float = 50.0
    find_rate: float = 500.0  # FIND_VALUEs answered a second, in all (per host: source_*)
    find_burst: float = 1000.0
    max_sources: int = 1024
    # client
    find_padding: int = 300  # bytes of a first FIND_VALUE (an unproven answer is no larger)
    prekey_rotation: float = DAY  # s between our prekeys
    mailbox_interval: float = 300.0  # s between fetches of our own mailbox (and at each join)
    # s between fetches of every epoch of our mailbox (and at each join); the fetches between
    # ask only for the epochs a box stored since the previous fetch can be under (1, near
    # midnight 2): a sender stores under its clock's current epoch
    mailbox_sweep: float = DAY
    max_mail_waiting: int = 256  # messages waiting for one recipient's prekey fetch
    max_operations: int = 64  # stores, fetches and deletes of ours at once

    def __post_init__(self) -> None:
        if min(self.replicas, self.max_values, self.max_per_author, self.max_per_key,
               self.max_republish_lookups, self.max_tombstones, self.max_sources,
               self.max_operations, self.max_mail_waiting) < 1:
            raise ValueError("storage counts must be at least 1")
        if min(self.ttl, self.epoch_length, self.republish_interval, self.request_timeout,
               self.prekey_rotation, self.mailbox_interval, self.mailbox_sweep) <= 0 \
                or self.clock_skew < 0:
            raise ValueError("storage times must be positive")
        if min(self.verify_rate, self.source_rate, self.find_rate) <= 0 \
                or min(self.verify_burst, self.source_burst, self.find_burst) < 1:
            raise ValueError("storage rates must be positive and bursts at least 1")
        if not 0.0 <= self.republish_spread < 1.0:
            raise ValueError("republish_spread must be in [0, 1)")

    @property
    def prekey_keep(self) -> float:
        """s a prekey's private half is kept after it was made: boxes sealed to it may still
        arrive until its successor's rotation plus a message's lifetime have passed."""
        return self.prekey_rotation + self.ttl + self.clock_skew


DEFAULT_SETTINGS = StorageSettings()
