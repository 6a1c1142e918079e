"""Routing targets (0x00-0x01, 0x0b): the message codecs; a routing-only Node with lookups in
flight, answering marked requests with ROUTE6_RES (IPv6 contacts, docs/protocol.md section 23)."""

from __future__ import annotations

import ipaddress
from collections import deque
from random import Random
from typing import Any

from hypothesis import strategies as st

from benchmarks.fuzz.core import Target, Violation, mutated, typed_bytes
from kadtalk.node.addresses import to_wire
from kadtalk.node.routing.contacts import ContactRegistry, ipv4_from_wire, ipv4_to_wire
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import (
    REQUEST_SIZE,
    MalformedMessage,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.routing.route6 import (
    MARKER,
    MAX_ROUTE6_SIZE,
    ROUTE6_REQUEST_SIZE,
    decode_response,
    mark,
)
from kadtalk.node.routing.route6 import encode_response as encode_response6
from kadtalk.node.stack import Node

ID = st.integers(0, (1 << 160) - 1)
WIRE_ADDR = st.binary(min_size=6, max_size=6)


def _request_bytes() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda o, t, pad: encode_request(RouteRequest(o, t), pad), ID, ID, st.integers(0, 560)
    )


def _response_bytes() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda r, t, cs: (
            bytes([1])
            + r.to_bytes(20, "big")
            + t.to_bytes(20, "big")
            + b"".join(i.to_bytes(20, "big") + a for i, a in cs)
        ),
        ID,
        ID,
        st.lists(st.tuples(ID, WIRE_ADDR), max_size=22),
    )


def routing_seeds() -> list[bytes]:
    rng = Random(7)
    contacts = [(rng.getrandbits(160), ("10.0.%d.%d" % (i, i + 1), 5004)) for i in range(20)]
    return [
        encode_request(RouteRequest(rng.getrandbits(160), rng.getrandbits(160)), 146),
        encode_request(RouteRequest(rng.getrandbits(160), rng.getrandbits(160)), 0),
        encode_response(
            RouteResponse(rng.getrandbits(160), rng.getrandbits(160), contacts), ipv4_to_wire
        ),
        encode_response(
            RouteResponse(rng.getrandbits(160), rng.getrandbits(160), contacts[:3]), ipv4_to_wire
        ),
    ]


WIRE_ADDR6 = st.one_of(
    st.builds(lambda a, p: b"\x04" + a + p, st.binary(min_size=4, max_size=4),
              st.binary(min_size=2, max_size=2)),
    st.builds(lambda a, p: b"\x06" + a + p, st.binary(min_size=16, max_size=16),
              st.binary(min_size=2, max_size=2)),
)


def _route6_bytes() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda r, t, cs: (bytes([0x0B]) + r.to_bytes(20, "big") + t.to_bytes(20, "big")
                          + b"".join(i.to_bytes(20, "big") + a for i, a in cs)),
        ID, ID, st.lists(st.tuples(ID, WIRE_ADDR6), max_size=22),
    )


def _marked_request_bytes() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda o, t, pad: encode_request(RouteRequest(o, t), 0) + MARKER + bytes(pad), ID, ID,
        st.integers(0, 516),
    )


def route6_seeds() -> list[bytes]:
    rng = Random(8)
    contacts = [(rng.getrandbits(160), ("2001:db8:%x::1" % (i + 1), 5004)) for i in range(10)]
    contacts += [(rng.getrandbits(160), ("10.0.%d.%d" % (i, i + 1), 5004)) for i in range(10)]
    return [encode_response6(RouteResponse(rng.getrandbits(160), rng.getrandbits(160), contacts)),
            encode_response6(RouteResponse(rng.getrandbits(160), rng.getrandbits(160), ()))]


def routing_strategy(_state: Any = None) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=700),
        typed_bytes([0, 1, 0x0B]),
        mutated(routing_seeds() + route6_seeds()),
        _request_bytes(),
        _marked_request_bytes(),
        _response_bytes(),
        _route6_bytes(),
    )


def route6_strategy(_state: Any = None) -> st.SearchStrategy[bytes]:
    return st.one_of(typed_bytes([0x0B], 900), mutated(route6_seeds()), _route6_bytes())


def run_route6_decode(_state: Any, data: bytes) -> None:
    try:
        msg, skipped = decode_response(data)
    except MalformedMessage:
        return
    again = encode_response6(msg)
    if len(data) > MAX_ROUTE6_SIZE or again[:41] != data[:41] or (skipped == 0 and again != data):
        raise Violation("ROUTE6_RES does not re-encode")


def run_routing_decode(_state: Any, data: bytes) -> None:
    try:
        msg, skipped = decode(data, ipv4_from_wire)
    except MalformedMessage:
        return
    if type(msg) is RouteRequest:
        if msg.size != len(data) or encode_request(msg, 0) != data[:REQUEST_SIZE]:
            raise Violation("request does not re-encode")
    else:
        again = encode_response(msg, ipv4_to_wire)
        if len(again) + 26 * skipped != len(data) or again[:41] != data[:41]:
            raise Violation("response does not re-encode")


def answer_pending(
    node: Node, which: int, data: bytes, as_answer: bool
) -> tuple[Any, bytes] | None:
    """One of the node's requests in flight, `which`-th: (its address, `data` made to answer it
    when `as_answer` and `data` is a response); None when nothing is in flight."""
    pending = list(node.routing._pending or {})
    if not pending:
        return None
    addr, target = pending[which % len(pending)]
    if as_answer and len(data) >= 41 and data[0] in (1, 0x0B):
        data = data[:21] + target.to_bytes(20, "big") + data[41:]  # meets the pending request
    return addr, data


def amplification(node: Node, addr: Any, received: int, sent: int) -> None:
    """The 3x rule: at most 3x the bytes received from an address that has not answered us."""
    if sent > 3 * received and not (node.routing._validated or {}).get(addr, False):
        raise Violation(f"amplification: {sent} bytes to an unvalidated address for {received}")


class RoutingState:
    """A routing-only dual-stack node with 60 contacts; lookups (user lookups and joins, whose
    requests are keyed) keep requests in flight to 8 of them. It names itself at its IPv6
    address in its ROUTE6_RES over IPv4 and takes, proves and names other addresses (protocol
    section 23, "The other address"): its IPv4 contacts answer as themselves (their own ID)
    requests it sent them (keyed lookup requests, the 288-byte query, probes), naming
    themselves at their IPv6 address (OTHER6) in a ROUTE6_RES, and that address answers the
    announce probe; they send it marked requests under their own ID (which draw the query once
    validated); a forger names an entry at a FORGED6 address in an answer that echoes no keyed
    target of ours: nothing may ever go there."""

    STRANGER = ("198.51.100.7", 9999)  # never asked anything: the amplification check
    STRANGER6 = ("2001:db8:bad::7", 9999)  # the same over IPv6 (ROUTE6_RES's bigger entries)
    OTHER6 = "2001:db8:eeee:%x::1"  # an IPv4 contact's own IPv6 address (its announce)
    FORGED6 = ipaddress.ip_network("2001:db8:ffff::/48")  # what a forger announces for one

    def __init__(self) -> None:
        self.rng = Random(3)
        self.node = Node(
            1 << 159, ContactRegistry(), self.rng,
            RoutingSettings(refresh_on_join=False, ipv6=True, other_addresses=True), 0.0
        )
        self.node.routing.announce(("2001:db8:1::1", 5004))
        self.ids: dict[Any, int] = {}  # the contacts' addresses (and IPv6 ones) -> their IDs
        self.other6: dict[Any, Any] = {}  # an IPv4 contact's address -> its IPv6 address
        self.entries4: list[Any] = []
        for i in range(60):
            addr = ("10.1.%d.%d" % (i // 200, i % 200 + 1), 5004) if i % 2 else \
                ("2001:db8:%x::1" % (i + 1), 5004)  # half IPv6: ROUTE6_RES has both
            node_id = self.rng.getrandbits(160)
            self.node.add_contact(node_id, addr, 0.0)
            self.ids[addr] = node_id
            if i % 2:
                self.entries4.append(addr)
                self.other6[addr] = (self.OTHER6 % i, 5004)
                self.ids[self.other6[addr]] = node_id
        self.sent: deque[tuple[Any, bytes]] = deque(maxlen=64)  # requests sent: (to, target)
        self.user_targets: deque[int] = deque(maxlen=16)  # the last user lookups' targets
        self.now = 0.0

    def id_at(self, addr: Any) -> int | None:
        """The ID that answers at `addr`: a contact's own, else one the node holds there."""
        node_id = self.ids.get(addr)
        if node_id is None:
            registry = self.node.routing.registry
            handles = registry.handles_at(addr)
            node_id = registry.ids[handles[-1]] if handles else None
        return node_id


def _as_response(data: bytes, kind: int, responder: int, target: bytes,
                 named: Any = None) -> bytes:
    """`data` made a response of `kind` (its body kept when it is one) from `responder` for
    `target`, naming `responder` last at `named` (its announce) when given."""
    body = data[41:] if len(data) >= 41 and data[0] in (1, 0x0B) else b""
    if named is not None:
        body += responder.to_bytes(20, "big") + (to_wire(named) or b"")
    return bytes([kind]) + responder.to_bytes(20, "big") + target + body


def echo_sent(state: RoutingState, data: bytes, pick: int) -> tuple[Any, bytes] | None:
    """A request the node sent (a lookup's, keyed or not, the query, a probe, the announce
    probe), `pick`-th of the last 64, answered from its address by the ID there with `data`'s
    contacts (`answer`); None when it sent nothing yet."""
    if not state.sent:
        return None
    addr, target = state.sent[-1 - pick % len(state.sent)]
    return addr, answer(state, addr, target, data, pick)


def answer(state: RoutingState, addr: Any, target: bytes, data: bytes, pick: int) -> bytes:
    """The answer of the ID at `addr` to our request for `target`, with `data`'s contacts; from
    an IPv4 contact, when `pick & 2`, a ROUTE6_RES naming it at its own IPv6 address, last (the
    announce the node takes from an answer echoing a keyed target of its own)."""
    responder = state.id_at(addr)
    if responder is None:
        return data
    other = state.other6.get(addr) if pick & 2 else None
    kind = 0x0B if other is not None else (data[0] if data[:1] in (b"\x01", b"\x0b") else 1)
    return _as_response(data, kind, responder, target, other)


def entry_request(state: RoutingState, data: bytes, pick: int) -> tuple[Any, bytes]:
    """A request from an IPv4 contact under its own ID: `data` if it is a request (any size,
    marked or not), else a marked ROUTE6_REQUEST_SIZE one (which draws the query)."""
    addr = state.entries4[pick % len(state.entries4)]
    origin = state.ids[addr].to_bytes(20, "big")
    if len(data) >= 41 and data[0] == 0:
        return addr, data[:1] + origin + data[21:]
    target = (data[1:21] if len(data) >= 21 else b"").rjust(20, b"\x00")
    return addr, mark(b"\x00" + origin + target + bytes(ROUTE6_REQUEST_SIZE - 41))


def forged_announce(state: RoutingState, data: bytes, pick: int) -> tuple[Any, bytes]:
    """A ROUTE6_RES from an IPv4 contact's address under its ID, naming it last at a FORGED6
    address, for a target that is no keyed one of ours (an unkeyed lookup request's in flight
    to such a contact, or `data`'s): what a forger of the entry's IPv4 source can send."""
    users = set(state.user_targets)  # a user lookup's requests carry its target, unkeyed
    unkeyed = [(a, t) for a, t in state.node.routing._pending or () if a in state.other6
               and t in users]
    if unkeyed:
        addr, wanted = unkeyed[pick % len(unkeyed)]
        target = wanted.to_bytes(20, "big")
    else:
        addr = state.entries4[pick % len(state.entries4)]
        target = (data[21:41] if len(data) >= 41 else b"").rjust(20, b"\x00")
    forged = (str(state.FORGED6[pick % 65536 + 1]), 5004)
    return addr, _as_response(data, 0x0B, state.ids[addr], target, forged)


def routing_layer_strategy(_state: RoutingState) -> st.SearchStrategy:
    # source: 0-7 contacts a lookup may be asking (answering as the ID asked when `pick` is
    # odd); 8, 10 a stranger (IPv4, IPv6); 9 random; 11 the addressee of a request the node
    # sent, answering it (echo_sent); 12-13 a conversation with an IPv4 contact (its request
    # under its own ID, then its answers, and its IPv6 address's, to what the node sends
    # them: the query, probes, the announce probe); 14 a forged announce
    source = st.integers(0, 14)
    return st.tuples(source, routing_strategy(), st.booleans(), st.booleans(),
                     st.integers(0, 1 << 16))


def drain(state: RoutingState, now: float) -> list[tuple[bytes, Any]]:
    """What the node sends: its requests kept for `echo_sent`; nothing to a FORGED6 address."""
    out = state.node.datagrams_to_send(now)
    for data, dst in out:
        if len(data) >= 41 and data[0] == 0:
            state.sent.append((dst, data[21:41]))
        if ":" in dst[0] and ipaddress.ip_address(dst[0]) in state.FORGED6:
            raise Violation(f"sent to {dst}, announced in an answer echoing no keyed target")
    return out


def run_routing_layer(state: RoutingState, item: tuple) -> None:
    which, data, as_answer, tick, pick = item
    node = state.node
    state.now += 0.05
    now = state.now
    if node.routing.lookups_running < 3:
        if tick and as_answer:
            node.routing.join([], now)  # keyed requests: their answers may announce
        else:
            state.user_targets.append(state.rng.getrandbits(160))
            node.find_closest(state.user_targets[-1], now)
    met = answer_pending(node, which, data, as_answer) if which < 8 else \
        echo_sent(state, data, pick) if which == 11 else \
        entry_request(state, data, pick) if which in (12, 13) else \
        forged_announce(state, data, pick) if which == 14 else None
    if met is not None:
        addr, data = met
        if which < 8 and pick & 1 and len(data) >= 41 and data[0] in (1, 0x0B):
            responder = state.id_at(addr)  # as the node asked: the answer is taken
            if responder is not None:
                data = data[:1] + responder.to_bytes(20, "big") + data[21:]
    elif which in (8, 10):
        addr = state.STRANGER if which == 8 else state.STRANGER6
    else:
        addr = ("203.0.113.%d" % (len(data) % 250 + 1), 4000 + len(data) % 7)
    node.receive_datagram(data, addr, now)
    if tick:
        node.handle_timer(now)
    out = drain(state, now)
    if addr in (state.STRANGER, state.STRANGER6):
        # every routing datagram counts: the answer and the probe of the requester's address
        amplification(node, addr, len(data), sum(len(d) for d, dst in out if dst == addr))
    if which in (12, 13):  # the contact, and its IPv6 address, answer what they are sent
        ours = (addr, state.other6[addr])
        for _ in range(3):
            asked = [(dst, d[21:41]) for d, dst in out if dst in ours and len(d) >= 41
                     and d[0] == 0]
            if not asked:
                break
            for dst, target in asked:
                node.receive_datagram(answer(state, dst, target, data, pick), dst, now)
            out = drain(state, now)


TARGETS = [
    Target(
        "routing-decode",
        "node/routing/messages.decode",
        lambda: None,
        routing_strategy,
        run_routing_decode,
    ),
    Target(
        "route6-decode",
        "node/routing/route6.decode_response (ROUTE6_RES)",
        lambda: None,
        route6_strategy,
        run_route6_decode,
    ),
    Target(
        "routing-layer",
        "Node.receive_datagram, routing (0x00, 0x01, 0x0b)",
        RoutingState,
        routing_layer_strategy,
        run_routing_layer,
    ),
]
