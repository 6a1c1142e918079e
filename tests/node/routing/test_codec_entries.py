"""The remembered contact entries (messages.entry_cache): an answer encoded from the cache is
byte for byte the answer each contact's own encoding gives, IPv4 and IPv6, ROUTE_RES and
ROUTE6_RES, the simulator's addresses too, however often a contact is sent; the cache is bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node import addresses
from kadtalk.node.routing import messages, route6
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.messages import ID_BYTES, ROUTE_RES, RouteResponse, encode_response
from kadtalk.node.routing.route6 import ROUTE6_RES
from kadtalk.node.routing.route6 import encode_response as encode_response6
from kadtalk.sim.registry import SharedRegistry

TO_WIRE = ContactRegistry.addr_to_wire


def reference(kind: int, msg: RouteResponse, to_wire) -> bytes:
    """The encoding before the cache: every contact converted as it is sent."""
    parts = [bytes((kind,)), msg.responder.to_bytes(ID_BYTES, "big"),
             msg.target.to_bytes(ID_BYTES, "big")]
    for node_id, addr in msg.contacts:
        wire = to_wire(addr)
        if wire is not None:
            parts += [node_id.to_bytes(ID_BYTES, "big"), wire]
    return b"".join(parts)


ids = st.integers(0, 2**160 - 1)
v4 = st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535))
v6 = st.tuples(st.ip_addresses(v=6).map(str), st.integers(0, 65535))
# Few IDs and addresses, so that lists repeat contacts and later examples hit the cache.
contacts = st.lists(st.tuples(st.one_of(ids, st.integers(0, 3)),
                              st.one_of(v4, v6, st.sampled_from([("192.0.2.1", 5004),
                                                                 ("2001:db8::1", 5004)]))),
                    max_size=20)


@given(ids, ids, contacts)
def test_route_res_from_the_cache_is_the_per_contact_encoding(responder, target, entries):
    msg = RouteResponse(responder, target, entries)
    expected = reference(ROUTE_RES, msg, TO_WIRE)
    assert encode_response(msg, TO_WIRE) == expected
    assert encode_response(msg, TO_WIRE) == expected  # second time: every entry from the cache


@given(ids, ids, contacts)
def test_route6_res_from_the_cache_is_the_per_contact_encoding(responder, target, entries):
    msg = RouteResponse(responder, target, entries, True)
    expected = reference(ROUTE6_RES, msg, addresses.to_wire)
    assert encode_response6(msg) == expected
    assert encode_response6(msg) == expected


@given(ids, ids, st.lists(st.tuples(ids, st.integers(0, 1 << 30)), max_size=20))
def test_simulator_addresses_from_the_cache_are_the_per_contact_encoding(responder, target,
                                                                        entries):
    to_wire = SharedRegistry.addr_to_wire
    msg = RouteResponse(responder, target, entries)
    assert encode_response(msg, to_wire) == encode_response(msg, to_wire) == reference(
        ROUTE_RES, msg, to_wire)


def test_one_contact_in_both_formats_keeps_two_entries():
    contact = (7, ("192.0.2.9", 4000))
    encode_response(RouteResponse(1, 2, [contact]), TO_WIRE)
    encode_response6(RouteResponse(1, 2, [contact], True))
    assert messages.entry_cache(TO_WIRE)[contact] == (7).to_bytes(20, "big") + bytes(
        [192, 0, 2, 9, 0x0F, 0xA0])
    assert messages.entry_cache(route6._tagged(None))[contact] == (7).to_bytes(20, "big") + bytes(
        [4, 192, 0, 2, 9, 0x0F, 0xA0])


def test_the_cache_is_emptied_when_full(monkeypatch):
    monkeypatch.setattr(messages, "ENTRY_CACHE", 8)
    to_wire = SharedRegistry.addr_to_wire
    for i in range(30):
        msg = RouteResponse(1, 2, [(i, i)])
        assert encode_response(msg, to_wire) == reference(ROUTE_RES, msg, to_wire)
        assert len(messages.entry_cache(to_wire)) <= 8


def test_codecs_made_on_the_fly_do_not_pile_up():
    for i in range(100):
        encode_response(RouteResponse(1, 2, [(i, i)]), lambda addr: bytes(6))
    assert len(messages._entries) <= messages._CODECS
