"""NAT traversal target (0x06: ADDR_REQ/RES, PUNCH_REQ/FWD, PUNCH, PUNCH_COOKIE) through a Node.

The node runs its own keep-alive timer (short intervals, rates opened wide so that every input
reaches the checks behind them), punches through some of the senders (so their PUNCH_COOKIEs
are solicited), and a sender may echo the last cookie the node sent it.
"""

from __future__ import annotations

from random import Random
from typing import Any

from hypothesis import strategies as st

from benchmarks.fuzz.core import WIDE, Target, Violation, datagrams
from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry, ipv4_to_wire
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node
from kadtalk.node.traversal import (
    ADDR_REQ,
    ADDR_RES,
    COOKIE_SIZE,
    PUNCH,
    PUNCH_COOKIE,
    PUNCH_FWD,
    PUNCH_REQ,
    SIZES,
    TRAVERSAL,
    TraversalSettings,
)

FAST = TraversalSettings(
    keepalive_interval=2.0, cookie_lifetime=10.0, punch_wait=3.0, max_observers=4,
    max_sources=16, answer_rate=WIDE, answer_burst=WIDE, source_rate=WIDE, source_burst=WIDE,
    punch_rate=WIDE, punch_burst=WIDE,
)
ANSWERS = (ADDR_RES, PUNCH_COOKIE)  # what a node sends back to the sender of a request


def well_formed(data: bytes) -> bool:
    """The layout rule of node/traversal.py's table (PUNCH_REQ with or without a cookie)."""
    op = data[1] if len(data) > 1 else -1
    size = SIZES.get(op)
    return size == len(data) or (op == PUNCH_REQ and len(data) == size + COOKIE_SIZE)


class TraversalState:
    """A node with an identity and NAT traversal on, 30 contacts in its table (rendezvous
    targets for PUNCH_REQ and keep-alive peers), probing two of them (so ADDR_RES meets its
    nonces); it remembers whom it punched through and the cookies it sent."""

    SOURCE = ("198.51.100.9", 7777)

    def __init__(self) -> None:
        identity = Identity.generate()
        self.rng = Random(5)
        self.node = Node(
            int.from_bytes(identity.node_id, "big"), ContactRegistry(), self.rng,
            RoutingSettings(refresh_on_join=False), 0.0, identity=identity, traversal=True,
            traversal_settings=FAST,
        )
        self.contacts: dict[Any, int] = {}  # address -> ID
        for i in range(30):
            node_id, addr = self.rng.getrandbits(160), ("10.2.0.%d" % (i + 1), 5004)
            self.node.add_contact(node_id, addr, 0.0)
            self.contacts[addr] = node_id
        self.ids = list(self.contacts.values())
        self.now = 1.0
        self.punched: dict[Any, float] = {}  # rendezvous address -> when we last punched there
        self.cookies: dict[Any, list[bytes]] = {}  # every cookie the node sent, by address
        self.node.traversal.start_keepalives(self.now)
        self.node.probe_address([("10.2.0.1", 5004), ("10.2.0.2", 5004)], self.now)
        self.punch(self.SOURCE)
        out = self.node.datagrams_to_send(self.now)
        nonces = [d[2:10] for d, _ in out if d[:2] == bytes([TRAVERSAL, ADDR_REQ])] or [bytes(8)]
        t = bytes([TRAVERSAL])
        wire = ipv4_to_wire(("203.0.113.5", 4000))
        punch_req = (t + bytes([PUNCH_REQ]) + self.rng.getrandbits(160).to_bytes(20, "big")
                     + self.ids[3].to_bytes(20, "big"))
        self.node.receive_datagram(punch_req, self.SOURCE, self.now)
        ((cookie, _),) = self.node.datagrams_to_send(self.now)
        self.cookies[self.SOURCE] = [cookie[2:]]
        self.seeds = [
            t + bytes([ADDR_REQ]) + bytes(14),
            t + bytes([ADDR_RES]) + nonces[0] + wire,
            punch_req,
            punch_req + cookie[2:],
            t + bytes([PUNCH_FWD]) + self.ids[4].to_bytes(20, "big") + wire,
            t + bytes([PUNCH]) + self.ids[5].to_bytes(20, "big"),
            cookie,
        ]

    def punch(self, rendezvous: Any) -> None:
        self.node.traversal.punch(self.rng.choice(self.ids), [rendezvous], self.now)
        self.punched[rendezvous] = self.now


def traversal_strategy(state: TraversalState) -> st.SearchStrategy:
    sized = st.builds(
        lambda op, body: bytes([TRAVERSAL, op]) + body, st.integers(0, 7), st.binary(max_size=60)
    )
    return st.tuples(
        st.one_of(datagrams(state.seeds, [TRAVERSAL], 80), sized),
        st.integers(0, 2),  # source: a stranger, a contact, any address
        st.booleans(),  # echo the last cookie sent to the source
        st.booleans(),  # punch through the source first
    )


def run_traversal(state: TraversalState, item: tuple) -> None:
    data, which, echo, punch = item
    node = state.node
    state.now += 0.01
    now = state.now
    if which == 0:
        addr = state.SOURCE
    elif which == 1:
        addr = ("10.2.0.%d" % (len(data) % 30 + 1), 5004)
    else:
        addr = ("203.0.113.%d" % (len(data) % 250 + 1), 4000)
    cookies = state.cookies.get(addr)
    if echo and cookies and len(data) == SIZES[PUNCH_REQ] + COOKIE_SIZE:
        data = data[: SIZES[PUNCH_REQ]] + cookies[-1]  # the latest it was sent
    if punch:
        state.punch(addr)
    drops = sum(node.drop_counts().values())
    node.receive_datagram(data, addr, now)
    malformed = data[:1] == bytes([TRAVERSAL]) and not well_formed(data)
    if malformed and sum(node.drop_counts().values()) != drops + 1:
        raise Violation("a malformed traversal datagram is not one counted drop")
    timer = node.get_timer()
    if timer is not None and timer <= now:
        node.handle_timer(now)
    back = 0
    for out, dst in node.datagrams_to_send(now):
        op = out[1]
        if op == PUNCH_COOKIE:
            state.cookies.setdefault(dst, []).append(out[2:])
        if dst == addr and op in ANSWERS:
            back += len(out)
        elif op == PUNCH_REQ and now - state.punched.get(dst, -1e9) > FAST.punch_wait:
            raise Violation("a PUNCH_REQ to an address we never punched through")
        elif op == PUNCH_FWD:
            requester = int.from_bytes(out[2:22], "big")
            if out[22:28] != ipv4_to_wire(addr):
                raise Violation("PUNCH_FWD names another address than the requester's")
            if state.contacts.get(addr) != requester and data[42:] not in state.cookies.get(
                addr, ()
            ):
                raise Violation("PUNCH_FWD for a requester that never proved its address")
        elif op == PUNCH and addr not in state.contacts:
            raise Violation("a PUNCH on the word of a stranger")
    if back > len(data):
        raise Violation("a traversal answer larger than its request")
    while node.next_event() is not None:
        pass


TARGETS = [
    Target(
        "traversal",
        "NAT traversal (0x06) through Node.receive_datagram, with keep-alive timers",
        TraversalState,
        traversal_strategy,
        run_traversal,
    ),
]
