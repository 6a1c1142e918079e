"""NAT traversal target (0x06: ADDR_REQ/RES, PUNCH_REQ/FWD, PUNCH, PUNCH_COOKIE and the relay
variants, with 6- and 18-byte relay addresses and IPv6 sources: §20 "Across address families";
PUNCH6_REQ/FWD: §20 "IPv6 hole punching") through a Node.

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
from kadtalk.node.relay import wire as relay_wire
from kadtalk.node.relay.addresses import IPV4, from_wire6, to_wire6
from kadtalk.node.traversal import (
    ADDR_REQ,
    ADDR_RES,
    COOKIE_SIZE,
    PUNCH,
    PUNCH_COOKIE,
    PUNCH_FWD,
    PUNCH_FWD_RELAY,
    PUNCH_REQ,
    PUNCH_REQ_RELAY,
    PUNCH6_FWD,
    PUNCH6_REQ,
    SIZES,
    TRAVERSAL,
    TraversalSettings,
    base_size,
)

FAST = TraversalSettings(
    keepalive_interval=2.0, cookie_lifetime=10.0, punch_wait=3.0, max_observers=4,
    max_sources=16, answer_rate=WIDE, answer_burst=WIDE, source_rate=WIDE, source_burst=WIDE,
    punch_rate=WIDE, punch_burst=WIDE,
)
ANSWERS = (ADDR_RES, PUNCH_COOKIE)  # what a node sends back to the sender of a request


def well_formed(data: bytes) -> bool:
    """The layout rule of node/traversal.py's table (the requests with or without a cookie,
    the relay variants with a 6- or 18-byte relay address)."""
    return base_size(data) is not None


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
        for i in range(4):  # IPv6 contacts: requests and forwards from them are taken
            node_id, addr = self.rng.getrandbits(160), ("2001:db8:6::%x" % (i + 1), 5004)
            self.node.add_contact(node_id, addr, 0.0)
            if self.node.routing.table.find(node_id) >= 0:
                self.contacts[addr] = node_id
        self.ids = list(self.contacts.values())
        self.now = 1.0
        self.punched: dict[Any, float] = {}  # rendezvous address -> when we last punched there
        self.cookies: dict[Any, list[bytes]] = {}  # every cookie the node sent, by address
        self.offers: set[Any] = set()  # relay addresses a contact's PUNCH_FWD_RELAY named
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
        relay4, relay6 = IPV4.to_wire(("198.51.100.7", 3478)), to_wire6(("2001:db8:9::9", 3478))
        alloc = bytes(range(8))
        relay_req = t + bytes([PUNCH_REQ_RELAY]) + punch_req[2:42]
        fwd_relay = t + bytes([PUNCH_FWD_RELAY]) + self.ids[4].to_bytes(20, "big")
        self.seeds = [
            t + bytes([ADDR_REQ]) + bytes(14),
            t + bytes([ADDR_RES]) + nonces[0] + wire,
            punch_req,
            punch_req + cookie[2:],
            t + bytes([PUNCH_FWD]) + self.ids[4].to_bytes(20, "big") + wire,
            t + bytes([PUNCH]) + self.ids[5].to_bytes(20, "big"),
            cookie,
            relay_req + relay4 + alloc, relay_req + relay6 + alloc,
            relay_req + relay6 + alloc + cookie[2:],
            fwd_relay + wire + relay4 + alloc, fwd_relay + bytes(6) + relay6 + alloc,
            fwd_relay + bytes(6) + to_wire6(("::1", 3478)) + alloc,  # special: no knock
            t + bytes([PUNCH6_REQ]) + punch_req[2:42],
            t + bytes([PUNCH6_REQ]) + punch_req[2:42] + cookie[2:],
            t + bytes([PUNCH6_FWD]) + self.ids[4].to_bytes(20, "big")
            + to_wire6(("2001:db8:5::5", 5004)),
            t + bytes([PUNCH6_FWD]) + self.ids[4].to_bytes(20, "big")
            + to_wire6(("ff02::1", 5004)),  # special: no PUNCH
        ]

    def punch(self, rendezvous: Any) -> None:
        target = self.rng.choice(self.ids)
        self.node.traversal.punch(target, [rendezvous], self.now)
        self.node.traversal.punch6(target, [rendezvous], self.now)  # an IPv6 one only
        self.punched[rendezvous] = self.now


def traversal_strategy(state: TraversalState) -> st.SearchStrategy:
    sized = st.builds(
        lambda op, body: bytes([TRAVERSAL, op]) + body, st.integers(0, 15), st.binary(max_size=90)
    )
    return st.tuples(
        st.one_of(datagrams(state.seeds, [TRAVERSAL], 100), sized),
        st.integers(0, 4),  # source: a stranger, a contact, any address, an IPv6 contact, any
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
    elif which == 2:
        addr = ("203.0.113.%d" % (len(data) % 250 + 1), 4000)
    elif which == 3:
        addr = ("2001:db8:6::%x" % (len(data) % 4 + 1), 5004)
    else:
        addr = ("2001:db8:7::%x" % (len(data) % 250 + 1), 4000)
    cookies = state.cookies.get(addr)
    base = base_size(data)
    if echo and cookies and base is not None and len(data) == base + COOKIE_SIZE:
        data = data[:base] + cookies[-1]  # the latest it was sent
    if punch:
        state.punch(addr)
    if base == len(data) and data[1] == PUNCH_FWD_RELAY and addr in state.contacts:
        field = data[28:-8]  # a contact's offer: the node may knock there (now or on its timer)
        state.offers.add(IPV4.from_wire(field) if len(field) == 6 else from_wire6(field))
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
        elif op in (PUNCH_REQ, PUNCH6_REQ) and now - state.punched.get(dst, -1e9) > FAST.punch_wait:
            raise Violation("a PUNCH_REQ / PUNCH6_REQ to an address we never punched through")
        elif out[0] == TRAVERSAL and op == PUNCH6_FWD:
            requester = int.from_bytes(out[2:22], "big")
            if out[22:40] != to_wire6(addr) or ":" not in dst[0]:
                raise Violation("PUNCH6_FWD names another address than the IPv6 requester's, "
                                "or goes to a target not held at IPv6")
            if state.contacts.get(addr) != requester and data[base:] not in state.cookies.get(
                addr, ()
            ):
                raise Violation("PUNCH6_FWD for a requester that never proved its address")
            if len(out) > len(data):
                raise Violation("a PUNCH6_FWD larger than the request it forwards")
        elif out[0] == TRAVERSAL and op in (PUNCH_FWD, PUNCH_FWD_RELAY):
            requester = int.from_bytes(out[2:22], "big")
            ipv6 = ":" in addr[0]
            if out[22:28] != (bytes(6) if ipv6 or ":" in dst[0] else ipv4_to_wire(addr)):
                raise Violation("PUNCH_FWD names another address than the requester's (or one "
                                "across address families)")
            if state.contacts.get(addr) != requester and data[base:] not in state.cookies.get(
                addr, ()
            ):
                raise Violation("PUNCH_FWD for a requester that never proved its address")
            if len(out) > len(data):
                raise Violation("a PUNCH_FWD larger than the request it forwards")
        elif out[0] == TRAVERSAL and op == PUNCH and addr not in state.contacts:
            raise Violation("a PUNCH on the word of a stranger")
        elif out[0] == TRAVERSAL and op == PUNCH and ":" in dst[0] and IPV4.forbidden(
                dst, None, (), True):
            raise Violation("a PUNCH to a special address")
        elif out[:2] == bytes((relay_wire.RELAY, relay_wire.KNOCK)) and (
                dst not in state.offers or IPV4.forbidden(dst, None, (), False) is not None):
            raise Violation("a KNOCK at a relay no contact offered, or at a special address")
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
