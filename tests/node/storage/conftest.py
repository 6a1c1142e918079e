"""Helpers: identities, storage layers with explicit time, whole nodes on the in-memory net."""

from __future__ import annotations

from random import Random
from typing import Any

from kadtalk.experiments.harness.identities import derive_identity
from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.storage import StorageLayer, StorageSettings, records, wire
from kadtalk.transport.memory import MemoryNet

WALL = 1_767_225_600.0  # 2026-01-01, Unix seconds at now = 0
A, B, C = ("203.0.113.1", 5004), ("203.0.113.2", 5004), ("203.0.113.3", 5004)

_IDS: dict[str, Identity] = {}


def identity(name: str) -> Identity:
    """The same key for `name` in every run: node IDs, hence who is close to whom, and the
    traffic of a test network do not change between runs."""
    if name not in _IDS:
        _IDS[name] = derive_identity(Random(name))
    return _IDS[name]


def storer(settings: StorageSettings | None = None, validated=None) -> StorageLayer:
    """A storage layer with no routing behind it (the storer role needs none)."""
    return StorageLayer(identity("storer"), settings, WALL, validated=validated)


def mailbox_record(author: Identity, recipient: Identity, sequence: int = 1,
                   body: bytes = b"\x01ciphertext", now: float = 0.0, ttl: int = 3600,
                   epoch: int | None = None) -> tuple[bytes, bytes]:
    """(key, record) of a mailbox value from `author` for `recipient`."""
    epoch = records.epoch_of(WALL + now, 86_400) if epoch is None else epoch
    key = records.mailbox_key(recipient.node_id, epoch)
    return key, records.make(author, key, wire.MAILBOX, int(WALL + now + ttl), sequence, body)


def answers(layer: StorageLayer, now: float = 0.0) -> list[tuple[bytes, Any]]:
    return layer.datagrams_to_send(now)


def node(name: str, settings: StorageSettings | None = None) -> Node:
    me = identity(name)
    return Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(name),
                identity=me, clock_offset=WALL, storage_settings=settings)


def swarm(count: int, settings: StorageSettings | None = None) -> tuple[MemoryNet, list[Any]]:
    """`count` joined nodes at 10.0.0.1 ... (the first is everyone's bootstrap)."""
    net = MemoryNet()
    addrs = [(f"10.0.0.{i + 1}", 5004) for i in range(count)]
    for i, addr in enumerate(addrs):
        net.attach(addr, node(f"swarm{i}", settings))
    for addr in addrs[1:]:
        net.nodes[addr].join([addrs[0]], net.now)
        net.service(addr)
        net.run(limit=net.now + 5.0)
    net.run_until(net.now + 5.0)
    return net, addrs
