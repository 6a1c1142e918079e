"""The remembered decoded entries (messages.decoded_entries): a ROUTE_RES decoded through the
cache gives the message and the skipped count that reading every entry gives, however often an
entry comes back, unusable addresses included (IPv4 and the simulator's); the cache is bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.routing import messages
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.messages import (
    CONTACT_SIZE,
    ID_BYTES,
    RESPONSE_HEADER,
    ROUTE_RES,
    RouteResponse,
    decode,
)
from kadtalk.sim.registry import SharedRegistry


def reference(data: bytes, from_wire) -> tuple[RouteResponse, int]:
    """The decoding before the cache: every entry read as it comes."""
    contacts, skipped = [], 0
    for offset in range(RESPONSE_HEADER, len(data), CONTACT_SIZE):
        addr = from_wire(data[offset + ID_BYTES:offset + CONTACT_SIZE])
        if addr is None:
            skipped += 1
        else:
            contacts.append((int.from_bytes(data[offset:offset + ID_BYTES], "big"), addr))
    return RouteResponse(int.from_bytes(data[1:21], "big"), int.from_bytes(data[21:41], "big"),
                         tuple(contacts)), skipped


# Few IDs and addresses (port 0 and 0.0.0.0 are unusable), so entries repeat and hit the cache.
ids = st.one_of(st.integers(0, 2**160 - 1), st.integers(0, 3))
wires = st.one_of(st.binary(min_size=6, max_size=6),
                  st.sampled_from([bytes([10, 0, 0, 7, 0x13, 0x8C]), bytes([10, 0, 0, 7, 0, 0]),
                                   bytes([0, 0, 0, 0, 0x13, 0x8C]), bytes([192, 0, 2, 1, 0, 80])]))
entries = st.lists(st.tuples(ids, wires), max_size=20)


def datagram(responder: int, target: int, body: list[tuple[int, bytes]]) -> bytes:
    return bytes((ROUTE_RES,)) + responder.to_bytes(20, "big") + target.to_bytes(20, "big") + \
        b"".join(node_id.to_bytes(20, "big") + wire for node_id, wire in body)


@given(st.lists(entries, min_size=1, max_size=4), ids, ids)
def test_cached_decoding_is_the_plain_decoding(answers, responder, target):
    for from_wire in (ContactRegistry.addr_from_wire, SharedRegistry.addr_from_wire):
        for body in answers + answers:  # every answer twice: the second one from the cache
            data = datagram(responder, target, body)
            msg, skipped = decode(data, from_wire)
            expected, expected_skipped = reference(data, from_wire)
            assert msg == expected and msg.contacts == expected.contacts
            assert skipped == expected_skipped


def test_the_decoded_entries_are_bounded(monkeypatch):
    monkeypatch.setattr(messages, "ENTRY_CACHE", 4)
    from_wire = ContactRegistry.addr_from_wire
    messages._decoded.pop(from_wire, None)
    for i in range(10):
        decode(datagram(1, 2, [(i, bytes([192, 0, 2, 1, 0, 80]))]), from_wire)
        assert len(messages.decoded_entries(from_wire)) <= 4
    msg, _ = decode(datagram(1, 2, [(9, bytes([192, 0, 2, 1, 0, 80]))]), from_wire)
    assert msg.contacts == ((9, ("192.0.2.1", 80)),)
    messages._decoded.pop(from_wire, None)
