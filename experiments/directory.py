"""A central directory: the baseline the call study compares the DHT with (`--directory`).

Not part of kadtalk: a SIP-registrar-like server on the simulated network, placed at the latency
model's median location (`add_median_node`), with every node registered. It speaks a tiny
request/answer of its own (type bytes 0x70-0x73, which no kadtalk node uses):

| type | name | layout after the type byte | sent by |
| --- | --- | --- | --- |
| 0x70 | REGISTER | node ID (20) | a node, every keep-alive interval (keeps its NAT open to us) |
| 0x71 | QUERY | nonce (8), target ID (20) | a caller |
| 0x72 | ANSWER | nonce (8), found (1), target's address (6) | the directory, to the caller |
| 0x73 | INCOMING | caller's address (6) | the directory, to the callee (as a proxy forwards INVITE) |

A caller asks the directory (one round trip to it) instead of the DHT lookup; the directory
answers with the callee's registered address and, as a SIP proxy forwards the call, tells the
callee where the caller is, so the callee's application sends the same PUNCH a DHT rendezvous
would trigger (node/traversal.py's datagram) to open its NAT. Key exchange, ring and answer are
then the node's own, as in the DHT case. The client side (`DirectoryClient`) is application
code on each node's address, beside the node (the driver hands it these types).
"""

from __future__ import annotations

import collections
from typing import Any, Callable

from kadtalk.node.traversal import PUNCH, TRAVERSAL
from kadtalk.sim.registry import SharedRegistry

REGISTER, QUERY, ANSWER, INCOMING = 0x70, 0x71, 0x72, 0x73
CLIENT_TYPES = frozenset((ANSWER, INCOMING))  # what the directory sends to nodes' addresses
SIZES = {REGISTER: 21, QUERY: 29, ANSWER: 16, INCOMING: 7}
_to_wire, _from_wire = SharedRegistry.addr_to_wire, SharedRegistry.addr_from_wire


class DirectoryServer:
    """The registrar: node ID -> the address its REGISTERs come from. Sans-I/O, like a node."""

    def __init__(self, registrations: dict[int, int]):
        self.table = registrations  # every node registered before the study starts
        self.stats: collections.Counter[str] = collections.Counter()
        self._outbox: list[tuple[bytes, Any]] = []

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        kind = data[0] if data else -1
        if SIZES.get(kind) != len(data):
            self.stats["malformed"] += 1
            return
        if kind == REGISTER:
            self.table[int.from_bytes(data[1:21], "big")] = addr
            self.stats["register"] += 1
        elif kind == QUERY:
            where = self.table.get(int.from_bytes(data[9:29], "big"))
            found = where is not None
            self._outbox.append((bytes((ANSWER,)) + data[1:9] + bytes((found,))
                                 + (_to_wire(where) if found else bytes(6)), addr))
            if found:
                self._outbox.append((bytes((INCOMING,)) + _to_wire(addr), where))
            self.stats["query"] += 1
        else:
            self.stats["unexpected"] += 1

    def receive_message(self, msg: Any, addr: Any, now: float) -> None:
        if type(msg) is bytes:
            self.receive_datagram(msg, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out, self._outbox = self._outbox, []
        return out

    messages_to_send = datagrams_to_send

    def next_event(self) -> None:
        return None

    def get_timer(self) -> None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


class DirectoryClient:
    """The application side on every node's address: queries, registrations, and the callee's
    PUNCH when the directory forwards a call. `send(src, dst, payload)` puts a datagram on the
    network; `found(addr, target_addr or None, now)` reports an answer."""

    def __init__(self, server: int, ids: list[int], send: Callable[[int, int, bytes], None],
                 found: Callable[[int, int, Any, float], None]):
        self.server = server
        self.ids = ids
        self.send = send
        self.found = found
        self.stats: collections.Counter[str] = collections.Counter()
        self._nonce = 0
        self._asked: dict[tuple[int, bytes], int] = {}  # (caller, nonce) -> target ID

    def register(self, addr: int) -> None:
        self.send(addr, self.server, bytes((REGISTER,)) + self.ids[addr].to_bytes(20, "big"))

    def query(self, addr: int, target_id: int) -> None:
        self._nonce += 1
        nonce = self._nonce.to_bytes(8, "big")
        self._asked[(addr, nonce)] = target_id
        self.send(addr, self.server, bytes((QUERY,)) + nonce + target_id.to_bytes(20, "big"))

    def receive(self, dst: int, data: bytes, src: int, now: float) -> None:
        kind = data[0]
        if SIZES.get(kind) != len(data) or src != self.server:
            self.stats["dropped"] += 1
            return
        if kind == ANSWER:
            target = self._asked.pop((dst, data[1:9]), None)
            if target is None:
                self.stats["unsolicited"] += 1
                return
            self.found(dst, target, _from_wire(data[10:16]) if data[9] else None, now)
        elif kind == INCOMING:
            caller = _from_wire(data[1:7])
            if caller is not None:  # open our NAT towards the caller, as a rendezvous would
                punch = bytes((TRAVERSAL, PUNCH)) + self.ids[dst].to_bytes(20, "big")
                self.send(dst, caller, punch)
                self.send(dst, caller, punch)
                self.stats["punch_sent"] += 1
