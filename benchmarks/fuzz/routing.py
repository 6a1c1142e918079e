"""Routing targets (0x00-0x01, 0x0b): the message codecs; a routing-only Node with lookups in
flight, answering marked requests with ROUTE6_RES (IPv6 contacts, docs/protocol.md section 23)."""

from __future__ import annotations

from random import Random
from typing import Any

from hypothesis import strategies as st

from benchmarks.fuzz.core import Target, Violation, mutated, typed_bytes
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
from kadtalk.node.routing.route6 import MARKER, MAX_ROUTE6_SIZE, decode_response
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
    section 23, "The other address")."""

    STRANGER = ("198.51.100.7", 9999)  # never asked anything: the amplification check
    STRANGER6 = ("2001:db8:bad::7", 9999)  # the same over IPv6 (ROUTE6_RES's bigger entries)

    def __init__(self) -> None:
        self.rng = Random(3)
        self.node = Node(
            1 << 159, ContactRegistry(), self.rng,
            RoutingSettings(refresh_on_join=False, ipv6=True, other_addresses=True), 0.0
        )
        self.node.routing.announce(("2001:db8:1::1", 5004))
        for i in range(60):
            addr = ("10.1.%d.%d" % (i // 200, i % 200 + 1), 5004) if i % 2 else \
                ("2001:db8:%x::1" % (i + 1), 5004)  # half IPv6: ROUTE6_RES has both
            self.node.add_contact(self.rng.getrandbits(160), addr, 0.0)
        self.now = 0.0


def routing_layer_strategy(_state: RoutingState) -> st.SearchStrategy:
    source = st.integers(0, 10)  # 0-7: contacts a lookup may be asking; 8, 10: a stranger
    # (IPv4, IPv6); 9: random
    return st.tuples(source, routing_strategy(), st.booleans(), st.booleans())


def run_routing_layer(state: RoutingState, item: tuple) -> None:
    which, data, as_answer, tick = item
    node = state.node
    state.now += 0.05
    now = state.now
    if node.routing.lookups_running < 3:
        if tick and as_answer:
            node.routing.join([], now)  # keyed requests: their answers may announce
        else:
            node.find_closest(state.rng.getrandbits(160), now)
    met = answer_pending(node, which, data, as_answer) if which < 8 else None
    if met is not None:
        addr, data = met
    elif which in (8, 10):
        addr = state.STRANGER if which == 8 else state.STRANGER6
    else:
        addr = ("203.0.113.%d" % (len(data) % 250 + 1), 4000 + len(data) % 7)
    node.receive_datagram(data, addr, now)
    if tick:
        node.handle_timer(now)
    # every routing datagram counts: the answer and the probe of the requester's address
    sent = sum(len(out) for out, dst in node.datagrams_to_send(now) if dst == addr)
    if addr in (state.STRANGER, state.STRANGER6):
        amplification(node, addr, len(data), sent)


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
