"""Punch requests and forwards across address families (docs/protocol.md §20, "Across address
families"): an 18-byte relay field (PUNCH_REQ_RELAY 68 [84], PUNCH_FWD_RELAY 54), requests and
forwards from IPv6 peers, no requester address across families; the parser under hypothesis,
the attacks played; docs/vectors/punch.json made here:

    python -m tests.node.test_traversal_families > docs/vectors/punch.json
"""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.traversal import (
    COOKIE_SIZE,
    PUNCH_COOKIE,
    PUNCH_FWD,
    PUNCH_FWD_RELAY,
    PUNCH_REQ,
    PUNCH_REQ_RELAY,
    SIZES,
    SIZES6,
    TRAVERSAL,
    Traversal,
    base_size,
)

VECTORS = Path(__file__).parents[2] / "docs" / "vectors" / "punch.json"
C, D4, D6 = ("203.0.113.21", 5004), ("198.51.100.1", 5004), ("2001:db8:1::1", 5004)
E6, F6, G4 = ("2001:db8:e::1", 5004), ("2001:db8:f::1", 5004), ("203.0.113.7", 5004)
RELAY4, RELAY6 = ("198.51.100.9", 3478), ("2001:db8:9::9", 3478)
ALLOC = bytes(range(8))
ID = {name: int.from_bytes(bytes((byte,)) * 20, "big")
      for name, byte in (("c", 0xC1), ("d", 0xD0), ("e", 0xE1), ("f", 0xF1), ("g", 0x71))}


class Table:
    """A routing table as traversal sees it (ContactView): fixed (ID, address) entries, the
    registry's wire form (IPv4 only, as ContactRegistry)."""

    def __init__(self, *entries: tuple[int, Any]):
        self.entries = dict(entries)
        self.registry = ContactRegistry()

    def address_of(self, node_id: int) -> Any | None:
        return self.entries.get(node_id)

    def is_contact(self, addr: Any) -> bool:
        return addr in self.entries.values()

    def rendezvous(self, target: int, count: int = 3) -> list[Any]:
        return list(self.entries.values())[:count]

    def round_trip(self, addr: Any, rtt: float) -> None:
        pass

    def addr_to_wire(self, addr: Any) -> bytes | None:
        return self.registry.addr_to_wire(addr)

    def addr_from_wire(self, data: bytes) -> Any | None:
        return self.registry.addr_from_wire(data)


def layer(name: str, *entries: tuple[int, Any]) -> tuple[Traversal, list]:
    """A node's traversal layer; the offers it obeyed are appended to the list returned."""
    t = Traversal(ID[name], random.Random(1), Table(*entries))
    offers: list = []
    t.offered = lambda *args: offers.append(args)
    return t, offers


def packed(addr: tuple[str, int]) -> bytes:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    return socket.inet_pton(family, addr[0]) + addr[1].to_bytes(2, "big")


def example() -> dict:
    """The §20 example through real layers: caller c (IPv4 only, 203.0.113.21:5004) offers its
    relay's IPv6 address to e (IPv6 only) through rendezvous d (dual-stack); f (IPv6 only)
    offers its relay's IPv4 address to g (IPv4 only) through d's IPv6 address."""
    c, _ = layer("c")
    f, _ = layer("f")
    d, _ = layer("d", (ID["c"], C), (ID["e"], E6), (ID["f"], F6), (ID["g"], G4))
    e, e_offers = layer("e", (ID["d"], D6))
    g, g_offers = layer("g", (ID["d"], D4))
    messages = []

    def hop(src: Traversal, src_addr: Any, dst: Traversal, dst_addr: Any, name: str) -> bytes:
        [(data, to)] = src.datagrams_to_send(0.0)
        assert to == dst_addr
        messages.append({"name": name, "from": _text(src_addr), "to": _text(dst_addr),
                         "size": len(data), "hex": data.hex()})
        dst.receive_datagram(data, src_addr, 0.0)
        return data

    c.punch(ID["e"], [D4], 0.0, relay=(RELAY6, ALLOC))
    hop(c, C, d, D4, "PUNCH_REQ_RELAY")
    hop(d, D6, e, E6, "PUNCH_FWD_RELAY")
    f.punch(ID["g"], [D6], 0.0, relay=(RELAY4, ALLOC))
    hop(f, F6, d, D6, "PUNCH_REQ_RELAY")
    hop(d, D4, g, G4, "PUNCH_FWD_RELAY")
    assert [o[1:4] for o in e_offers] == [(C, RELAY6, ALLOC)]  # an IPv4 requester's address
    assert [o[1:4] for o in g_offers] == [(None, RELAY4, ALLOC)]  # an IPv6 one's: none
    # e PUNCHes c (from its IPv4 side if it had one; an IPv6-only e's socket drops them)
    assert {to for _, to in e.datagrams_to_send(0.0)} == {C} and g.datagrams_to_send(0.0) == []
    return {"description": "docs/protocol.md §20, \"Across address families\": c (IPv4 only, "
                           f"{_text(C)}) offers its relay's IPv6 address {_text(RELAY6)} to e "
                           f"(IPv6 only, {_text(E6)}) through d (dual-stack, {_text(D4)} and "
                           f"{_text(D6)}); f (IPv6 only, {_text(F6)}) offers its relay's IPv4 "
                           f"address {_text(RELAY4)} to g (IPv4 only, {_text(G4)}); allocation "
                           f"{ALLOC.hex()}; IDs: each byte c1, d0, e1, f1, 71 "
                           "(tests/node/test_traversal_families.py)",
            "messages": messages}


def _text(addr: tuple[str, int]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def test_the_hex_example_and_the_vectors_file():
    made = example()
    assert json.loads(VECTORS.read_text()) == made  # regenerate: python -m tests.node...
    req6, fwd6, req4, fwd4 = (bytes.fromhex(m["hex"]) for m in made["messages"])
    c, d, e, f, g = (bytes((b,)) * 20 for b in (0xC1, 0xD0, 0xE1, 0xF1, 0x71))
    assert req6 == bytes((6, 7)) + c + e + packed(RELAY6) + ALLOC and len(req6) == 68
    assert fwd6 == bytes((6, 8)) + c + packed(C) + packed(RELAY6) + ALLOC and len(fwd6) == 54
    assert req4 == bytes((6, 7)) + f + g + packed(RELAY4) + ALLOC and len(req4) == 56
    assert fwd4 == bytes((6, 8)) + f + bytes(6) + packed(RELAY4) + ALLOC and len(fwd4) == 42


def test_between_ipv4_peers_the_requester_address_travels_as_ever():
    c, _ = layer("c")
    d, _ = layer("d", (ID["c"], C), (ID["g"], G4))
    g, offers = layer("g", (ID["d"], D4))
    c.punch(ID["g"], [D4], 0.0, relay=(RELAY6, ALLOC))  # an IPv6 relay, both ends IPv4
    [(req, _)] = c.datagrams_to_send(0.0)
    d.receive_datagram(req, C, 0.0)
    [(fwd, to)] = d.datagrams_to_send(0.0)
    assert to == G4 and len(fwd) == 54 and fwd[22:28] == packed(C)
    g.receive_datagram(fwd, D4, 0.0)
    assert [o[1:4] for o in offers] == [(C, RELAY6, ALLOC)]
    punches = g.datagrams_to_send(0.0)
    assert len(punches) == 2 and {to for _, to in punches} == {C}  # the two PUNCHes


def test_an_unvalidated_ipv6_requester_gets_a_cookie_keyed_on_its_18_bytes_then_is_forwarded():
    f, _ = layer("f")
    d, _ = layer("d", (ID["g"], G4))  # f is not in d's table: its address is not validated
    f.punch(ID["g"], [D6], 0.0, relay=(RELAY4, ALLOC))
    [(req, _)] = f.datagrams_to_send(0.0)
    d.receive_datagram(req, F6, 0.0)
    [(cookie, to)] = d.datagrams_to_send(0.0)
    assert to == F6 and cookie[:2] == bytes((TRAVERSAL, PUNCH_COOKIE)) and len(cookie) == 18
    assert d.stats["punch_unvalidated"] == 1
    d.receive_datagram(req + cookie[2:], ("2001:db8:f::2", 5004), 0.0)  # another address: no
    [(again, to)] = d.datagrams_to_send(0.0)
    assert again[1] == PUNCH_COOKIE and to == ("2001:db8:f::2", 5004)
    f.receive_datagram(cookie, D6, 0.0)
    [(echo, _)] = f.datagrams_to_send(0.0)
    assert len(echo) == 56 + COOKIE_SIZE
    d.receive_datagram(echo, F6, 0.0)
    [(fwd, to)] = d.datagrams_to_send(0.0)
    assert to == G4 and fwd[1] == PUNCH_FWD_RELAY and fwd[22:28] == bytes(6)


def test_the_attack_a_plain_punch_from_an_ipv6_requester_is_not_forwarded():
    """A PUNCH_REQ from an IPv6 requester could only be forwarded with no address: nothing the
    target could do, so nothing goes."""
    d, _ = layer("d", (ID["c"], C), (ID["e"], E6), (ID["f"], F6), (ID["g"], G4))
    for src, target in ((F6, "g"), (F6, "e")):
        req = bytes((TRAVERSAL, PUNCH_REQ)) + bytes(20) + ID[target].to_bytes(20, "big")
        d.receive_datagram(req, src, 0.0)
    assert d.datagrams_to_send(0.0) == [] and d.stats["punch_no_path"] == 2


def test_an_ipv4_callers_punch_reaches_a_dual_stack_callee_held_at_ipv6():
    """Review R1 (session 8): the rendezvous holds a dual-stack callee behind an IPv4 NAT at its
    IPv6 address; an IPv4 caller's PUNCH_REQ is forwarded with the caller's address (before:
    dropped, `punch_no_path`, so a call that could go direct was relayed or failed), no larger
    than before (28 bytes for 42), and the callee PUNCHes the caller, opening its IPv4 NAT."""
    c, _ = layer("c")
    d, _ = layer("d", (ID["c"], C), (ID["e"], E6))  # c is in d's table: validated
    e, _ = layer("e", (ID["d"], D6))
    c.punch(ID["e"], [D4], 0.0)
    [(req, _)] = c.datagrams_to_send(0.0)
    d.receive_datagram(req, C, 0.0)
    [(fwd, to)] = d.datagrams_to_send(0.0)
    assert to == E6 and fwd[1] == PUNCH_FWD and fwd[22:28] == packed(C)
    assert len(fwd) == 28 <= len(req) and d.stats["punch_no_path"] == 0
    e.receive_datagram(fwd, D6, 0.0)
    punches = e.datagrams_to_send(0.0)
    assert len(punches) == 2 and {to for _, to in punches} == {C}


def test_the_attack_a_forward_from_an_ipv6_stranger_is_dropped():
    e, offers = layer("e", (ID["d"], D6))
    fwd = bytes((TRAVERSAL, PUNCH_FWD_RELAY)) + bytes(20) + bytes(6) + packed(RELAY6) + ALLOC
    e.receive_datagram(fwd, ("2001:db8:666::1", 5004), 0.0)
    assert e.stats["punch_fwd_stranger"] == 1 and offers == []
    plain = bytes((TRAVERSAL, PUNCH_FWD)) + bytes(20) + bytes(6)  # no address: no PUNCH
    e.receive_datagram(plain, D6, 0.0)
    assert e.stats["punch_refused"] == 1 and e.datagrams_to_send(0.0) == []


def test_the_attack_ipv6_sources_get_no_address_answers():
    """PROBE_REQ carries a 6-byte address: from IPv6 it stays unusable. ADDR_REQ from IPv6 is
    a keep-alive (it opens its sender's IPv6 firewall): answered with the same 16 bytes, six
    of them zero (no IPv4 view), metered as any answer."""
    e, _ = layer("e", (ID["d"], D6))
    e.receive_datagram(bytes((TRAVERSAL, 0x01)) + bytes(range(1, 9)) + bytes(6), D6, 0.0)
    e.receive_datagram(bytes((TRAVERSAL, 0x09)) + bytes(18), D6, 0.0)
    assert e.datagrams_to_send(0.0) == [(bytes((TRAVERSAL, 0x02)) + bytes(range(1, 9))
                                         + bytes(6), D6)]
    assert e.stats["unusable_source"] == 1
    for i in range(200):  # a flood from one IPv6 host: metered per source
        e.receive_datagram(bytes((TRAVERSAL, 0x01)) + bytes(14), D6, 1.0)
    assert len(e.datagrams_to_send(1.0)) <= 10 and e.stats["rate_limited_source"] >= 190


OPS = st.sampled_from([PUNCH_REQ, PUNCH_FWD, PUNCH_REQ_RELAY, PUNCH_FWD_RELAY, PUNCH_COOKIE,
                       0x05, 0x01, 0x02, 0x00, 0x0D, 0xFF])
SOURCES = st.sampled_from([C, D4, D6, E6, F6, G4, ("2001:DB8::1", 1), ("::1", 0), 7])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(OPS, st.binary(max_size=90), SOURCES, st.booleans()), max_size=20))
def test_the_parser_never_raises_and_sizes_say_the_layout(datagrams):
    d, _ = layer("d", (ID["c"], C), (ID["e"], E6), (ID["f"], F6), (ID["g"], G4))
    e, _ = layer("e", (ID["d"], D6))
    for op, body, src, sized in datagrams:
        if sized:
            size = (SIZES6 if body[:1] == b"\x06" else SIZES).get(op, SIZES.get(op, 2))
            body = (body + bytes(90))[: size - 2]
        data = bytes((TRAVERSAL, op)) + body
        base = base_size(data)
        assert base is None or len(data) in (base, base + COOKIE_SIZE)
        for t in (d, e):
            before = t.stats.total()
            t.receive_datagram(data, src, 0.0)
            out = t.datagrams_to_send(0.0)
            assert t.stats.total() > before or out == []  # every datagram counted somewhere
            # no answer to the source larger than what it sent; two PUNCHes at most elsewhere
            assert sum(len(o) for o, to in out if to == src) <= len(data)
            assert all(len(o) <= len(data) or o[1] == 0x05 for o, _ in out)


if __name__ == "__main__":  # python -m tests.node.test_traversal_families > docs/vectors/punch.json
    print(json.dumps(example(), indent=2))
