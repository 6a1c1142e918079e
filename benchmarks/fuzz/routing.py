"""Routing targets (0x00-0x01): the message codec; a routing-only Node with lookups in flight."""

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


def routing_strategy(_state: Any = None) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=700),
        typed_bytes([0, 1]),
        mutated(routing_seeds()),
        _request_bytes(),
        _response_bytes(),
    )


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
    if as_answer and len(data) >= 41 and data[0] == 1:
        data = data[:21] + target.to_bytes(20, "big") + data[41:]  # meets the pending request
    return addr, data


def amplification(node: Node, addr: Any, received: int, sent: int) -> None:
    """The 3x rule: at most 3x the bytes received from an address that has not answered us."""
    if sent > 3 * received and not (node.routing._validated or {}).get(addr, False):
        raise Violation(f"amplification: {sent} bytes to an unvalidated address for {received}")


class RoutingState:
    """A routing-only node with 60 contacts; lookups keep requests in flight to 8 of them."""

    STRANGER = ("198.51.100.7", 9999)  # never asked anything: the amplification check

    def __init__(self) -> None:
        self.rng = Random(3)
        self.node = Node(
            1 << 159, ContactRegistry(), self.rng, RoutingSettings(refresh_on_join=False), 0.0
        )
        for i in range(60):
            addr = ("10.1.%d.%d" % (i // 200, i % 200 + 1), 5004)
            self.node.add_contact(self.rng.getrandbits(160), addr, 0.0)
        self.now = 0.0


def routing_layer_strategy(_state: RoutingState) -> st.SearchStrategy:
    source = st.integers(0, 9)  # 0-7: contacts a lookup may be asking; 8: a stranger; 9: random
    return st.tuples(source, routing_strategy(), st.booleans(), st.booleans())


def run_routing_layer(state: RoutingState, item: tuple) -> None:
    which, data, as_answer, tick = item
    node = state.node
    state.now += 0.05
    now = state.now
    if node.routing.lookups_running < 3:
        node.find_closest(state.rng.getrandbits(160), now)
    met = answer_pending(node, which, data, as_answer) if which < 8 else None
    if met is not None:
        addr, data = met
    elif which == 8:
        addr = state.STRANGER
    else:
        addr = ("203.0.113.%d" % (len(data) % 250 + 1), 4000 + len(data) % 7)
    node.receive_datagram(data, addr, now)
    if tick:
        node.handle_timer(now)
    # every routing datagram counts: the answer and the probe of the requester's address
    sent = sum(len(out) for out, dst in node.datagrams_to_send(now) if dst == state.STRANGER)
    if addr == state.STRANGER:
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
        "routing-layer",
        "Node.receive_datagram, routing (0x00, 0x01)",
        RoutingState,
        routing_layer_strategy,
        run_routing_layer,
    ),
]
