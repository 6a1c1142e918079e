"""IPv6 hole punching (docs/protocol.md §20, "IPv6 hole punching"): PUNCH6_REQ (0x0d) and
PUNCH6_FWD (0x0e) between real traversal layers, the attacks played, the parser under
hypothesis; docs/vectors/punch6.json made here:

    python -m tests.node.test_traversal_punch6 > docs/vectors/punch6.json
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.relay.addresses import to_wire6
from kadtalk.node.traversal import (
    COOKIE_SIZE,
    PUNCH,
    PUNCH6_FWD,
    PUNCH6_REQ,
    PUNCH_COOKIE,
    PUNCH_FWD,
    PUNCH_REQ,
    SIZES,
    TRAVERSAL,
    Traversal,
    TraversalSettings,
    base_size,
)
from kadtalk.sim.nat import V6, DualStackNat
from tests.node.test_traversal_families import ID, Table, packed

VECTORS = Path(__file__).parents[2] / "docs" / "vectors" / "punch6.json"
C6, C4 = ("2001:db8:c::1", 5004), ("203.0.113.21", 5004)
D6, D4 = ("2001:db8:d::1", 5004), ("198.51.100.1", 5004)
E6, E4 = ("2001:db8:e::1", 5004), ("203.0.113.7", 5004)


def layer(name: str, *entries: tuple[int, Any], **kw: Any) -> Traversal:
    return Traversal(ID[name], random.Random(1), Table(*entries),
                     TraversalSettings(**kw) if kw else None)


def request(requester: str, target: str) -> bytes:
    return (bytes((TRAVERSAL, PUNCH6_REQ)) + ID[requester].to_bytes(20, "big")
            + ID[target].to_bytes(20, "big"))


def example() -> dict:
    """c (IPv6, 2001:db8:c::1) calls e (IPv6, behind a stateful firewall) through d, a
    rendezvous that holds both at their IPv6 addresses: PUNCH6_REQ, PUNCH6_FWD, then e's two
    PUNCHes to c's IPv6 address."""
    c = layer("c")
    d = layer("d", (ID["c"], C6), (ID["e"], E6))
    e = layer("e", (ID["d"], D6))
    messages = []

    def hop(src: Traversal, src_addr: Any, dst: Traversal | None, dst_addr: Any,
            name: str) -> None:
        out = src.datagrams_to_send(0.0)
        assert out and all(to == dst_addr for _, to in out)
        data = out[0][0]
        messages.append({"name": name, "from": _text(src_addr), "to": _text(dst_addr),
                         "size": len(data), "hex": data.hex()})
        if dst is not None:
            dst.receive_datagram(data, src_addr, 0.0)

    c.punch6(ID["e"], [D4, D6], 0.0)  # an IPv4 rendezvous is left out
    hop(c, C6, d, D6, "PUNCH6_REQ")
    hop(d, D6, e, E6, "PUNCH6_FWD")
    hop(e, E6, None, C6, "PUNCH")
    return {"description": "docs/protocol.md §20, \"IPv6 hole punching\": c "
                           f"({_text(C6)}) asks rendezvous d ({_text(D6)}), which holds c and "
                           f"e at their IPv6 addresses, to have e ({_text(E6)}) punch it; e "
                           "PUNCHes c (twice, the second copy not shown); IDs: each byte c1, "
                           "d0, e1 (tests/node/test_traversal_punch6.py)",
            "messages": messages}


def _text(addr: tuple[str, int]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def test_the_hex_example_and_the_vectors_file():
    made = example()
    assert json.loads(VECTORS.read_text()) == made  # regenerate: python -m tests.node...
    req, fwd, punch = (bytes.fromhex(m["hex"]) for m in made["messages"])
    c, e = bytes((0xC1,)) * 20, bytes((0xE1,)) * 20
    assert req == bytes((6, 0x0D)) + c + e and len(req) == 42
    assert fwd == bytes((6, 0x0E)) + c + packed(C6) and len(fwd) == 40 <= len(req)
    assert punch == bytes((6, 0x05)) + e and len(punch) == 22


def test_the_ipv4_messages_are_unchanged():
    """nanotalk's peers never see the new operations: PUNCH_REQ and PUNCH_FWD keep their
    sizes, and a caller's IPv4 punch is the same bytes as before."""
    assert (SIZES[PUNCH_REQ], SIZES[PUNCH_FWD], SIZES[PUNCH]) == (42, 28, 22)
    c = layer("c")
    c.punch(ID["e"], [D4, D6], 0.0)  # a plain PUNCH_REQ goes to IPv4 rendezvous only
    assert c.datagrams_to_send(0.0) == [(bytes((6, 3)) + bytes((0xC1,)) * 20
                                         + bytes((0xE1,)) * 20, D4)]


def test_an_unvalidated_requester_proves_its_ipv6_address_with_a_cookie():
    c = layer("c")
    d = layer("d", (ID["e"], E6))  # c is not in d's table
    c.punch6(ID["e"], [D6], 0.0)
    [(req, _)] = c.datagrams_to_send(0.0)
    d.receive_datagram(req, C6, 0.0)
    [(cookie, to)] = d.datagrams_to_send(0.0)
    assert to == C6 and cookie[1] == PUNCH_COOKIE and d.stats["punch_unvalidated"] == 1
    d.receive_datagram(req + cookie[2:], ("2001:db8:c::2", 5004), 0.0)  # another address
    [(again, _)] = d.datagrams_to_send(0.0)
    assert again[1] == PUNCH_COOKIE and d.stats["bad_cookie"] == 1
    c.receive_datagram(cookie, D6, 0.0)
    [(echo, to)] = c.datagrams_to_send(0.0)
    assert to == D6 and echo == req + cookie[2:] and len(echo) == 42 + COOKIE_SIZE
    d.receive_datagram(echo, C6, 0.0)
    assert d.datagrams_to_send(0.0) == [(bytes((6, PUNCH6_FWD)) + req[2:22] + packed(C6), E6)]


def test_the_attack_no_forward_without_an_ipv6_path():
    """From an IPv4 source (the forward would name no IPv6 address) or for a target held at
    IPv4 (no IPv6 firewall entry our way): dropped, counted, nothing sent."""
    d = layer("d", (ID["c"], C4), (ID["e"], E6), (ID["g"], E4))
    d.receive_datagram(request("c", "e"), C4, 0.0)
    d.receive_datagram(request("c", "g"), C6, 0.0)
    d.receive_datagram(request("c", "f"), C6, 0.0)  # not in the table
    assert d.datagrams_to_send(0.0) == []
    assert d.stats["punch_no_path"] == 2 and d.stats["punch_unknown_target"] == 1


def test_the_attack_a_forward_from_a_stranger_or_naming_a_special_address_is_refused():
    e = layer("e", (ID["d"], D6))
    fwd = bytes((6, PUNCH6_FWD)) + bytes((0xC1,)) * 20
    e.receive_datagram(fwd + packed(C6), ("2001:db8:666::1", 5004), 0.0)
    assert e.stats["punch_fwd_stranger"] == 1
    for special in ("::1", "ff02::1", "fe80::1", "::ffff:192.0.2.1", "::", "64:ff9b::7f00:1"):
        e.receive_datagram(fwd + to_wire6((special, 5004)), D6, 0.0)
    e.receive_datagram(fwd + packed(C6)[:16] + bytes(2), D6, 0.0)  # port 0
    assert e.datagrams_to_send(0.0) == [] and e.stats["punch_refused"] == 7


PRIVATE_TARGETS = [("fd00::53", 53), ("64:ff9b::a00:1", 161), ("64:ff9b::c0a8:101", 80)]


def test_the_attack_a_forward_naming_a_private_or_own_address_is_refused():
    """R1 (session 10): a contact, or whoever forges one's source, named a ULA address, a NAT64
    one embedding RFC 1918, or any port of our own address: a public node PUNCHed into its
    own site (before: all four sent 2 x 22 bytes)."""
    e = layer("e", (ID["d"], D6))
    e.own = lambda: (E4, E6)
    fwd = bytes((6, PUNCH6_FWD)) + bytes((0xC1,)) * 20
    for i, target in enumerate(PRIVATE_TARGETS + [(E6[0], 22), ("2001:db8:e::99", 5)]):
        e.receive_datagram(fwd + to_wire6(target), D6, 0.1 * i)
    assert e.datagrams_to_send(1.0) == [] and e.stats["punch_refused"] == 5
    e.receive_datagram(fwd + packed(C6), D6, 1.0)  # a public caller still gets its PUNCHes
    assert [to for _, to in e.datagrams_to_send(1.0)] == [C6, C6]


def test_private_forwards_are_obeyed_inside_private_space():
    """A site's hosts (the simulator's fd00::/8 ones): PUNCHes to a private caller go when the
    contact that forwards, or an own IPv6 address, is private; an own private IPv4 address
    (a LAN behind an IPv4 NAT) says nothing of the IPv6 scope."""
    fwd = bytes((6, PUNCH6_FWD)) + bytes((0xC1,)) * 20
    site = ("fd00::d", 5004)
    e = layer("e", (ID["d"], site))
    for i, target in enumerate(PRIVATE_TARGETS):
        e.receive_datagram(fwd + to_wire6(target), site, 0.1 * i)
    assert {to for _, to in e.datagrams_to_send(1.0)} == set(PRIVATE_TARGETS)
    e = layer("e", (ID["d"], D6))
    e.own = lambda: (("10.0.0.7", 5004),)
    e.receive_datagram(fwd + to_wire6(PRIVATE_TARGETS[0]), D6, 0.0)
    assert e.datagrams_to_send(0.0) == [] and e.stats["punch_refused"] == 1
    e.own = lambda: (("fd00:0:0:e::1", 5004),)  # another /64 of the site
    e.receive_datagram(fwd + to_wire6(PRIVATE_TARGETS[0]), D6, 0.0)
    assert [to for _, to in e.datagrams_to_send(0.0)] == [PRIVATE_TARGETS[0]] * 2


def test_the_attack_forwards_are_metered_and_never_amplified_much():
    """A contact (or one forging a contact's address) can draw at most `punch_burst` rounds of
    PUNCHes at once, then `punch_rate` a second: 2 x 22 bytes for 40, as PUNCH_FWD's 44 for 28."""
    peers = [("2001:db8:d%x::1" % i, 5004) for i in range(1, 6)]  # five /64s
    e = layer("e", *((i, p) for i, p in enumerate(peers, 1)), punch_rate=10.0,
              punch_burst=20.0)
    fwd = bytes((6, PUNCH6_FWD)) + bytes((0xC1,)) * 20 + packed(C6)
    for i in range(100):
        e.receive_datagram(fwd, peers[i % 5], 0.0)  # 10 a source pass the source meter
    out = e.datagrams_to_send(0.0)
    assert len(out) == 2 * 20 and {to for _, to in out} == {C6}
    assert e.stats["punch_refused"] == 30 and e.stats["rate_limited_source"] == 50
    assert e.stats["punch6_sent"] == 20
    e.receive_datagram(fwd, peers[0], 0.5)  # half a second later: 5 more tokens
    assert len(e.datagrams_to_send(0.5)) == 2
    assert sum(len(d) for d, _ in out) / (20 * len(fwd)) == 44 / 40


def test_a_rendezvous_answers_a_flood_of_requests_within_its_rates():
    d = layer("d", (ID["e"], E6))
    for i in range(500):
        d.receive_datagram(request("c", "e"), ("2001:db8:c%x::1" % (i % 7 + 1), 5004), 0.0)
    out = d.datagrams_to_send(0.0)
    assert len(out) <= 7 * 10 and all(len(o) <= 42 for o, _ in out)  # source burst 10 each
    assert d.stats["rate_limited_source"] >= 500 - 70


def test_simultaneous_open_through_two_stateful_firewalls():
    """The firewalls of sim/nat.py (RFC 6092: inbound only from a peer sent to lately): the
    caller's first KEY_REQ is dropped at the callee's firewall but opens the caller's; the
    callee's PUNCH passes it and opens the callee's; the caller's next KEY_REQ gets in."""
    nat = DualStackNat()
    rng = random.Random(3)
    for _ in range(3):
        nat.add_node(rng, 0.0, 0.0)
        nat.add_family(rng, 1.0, 0.0, 1.0)  # IPv6-only, firewalled
    caller, rendezvous, callee = V6 | 0, V6 | 1, V6 | 2
    nat.outbound(callee, rendezvous, 0.0)  # the callee's keep-alive to its neighbour
    nat.outbound(caller, rendezvous, 0.0)
    nat.outbound(caller, callee, 1.0, b"\x02")  # KEY_REQ
    assert not nat.admits(callee, caller, 1.0)  # dropped: the callee never sent to the caller
    assert nat.admits(callee, rendezvous, 1.0)  # PUNCH6_FWD: its keep-alives keep it open
    nat.outbound(callee, caller, 1.1)  # PUNCH
    assert nat.admits(caller, callee, 1.1)  # the caller's own KEY_REQ opened its firewall
    assert nat.admits(callee, caller, 1.5, b"\x02")  # the KEY_REQ sent again gets in


PUNCH6_OPS = st.sampled_from([PUNCH6_REQ, PUNCH6_FWD, PUNCH6_REQ, PUNCH6_FWD, PUNCH, 0x0F])
SOURCES = st.sampled_from([C6, C4, D6, D4, E6, ("2001:DB8::1", 1), ("::1", 0), 7, "x"])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(PUNCH6_OPS, st.binary(max_size=80), SOURCES, st.booleans(),
                          st.booleans()), max_size=20))
def test_the_parser_never_raises_every_datagram_counts_and_nothing_is_amplified(datagrams):
    d = layer("d", (ID["c"], C6), (ID["e"], E6), (ID["g"], E4))
    e = layer("e", (ID["d"], D6))
    for op, body, src, sized, cookie in datagrams:
        if sized:
            size = SIZES.get(op, 2) + (COOKIE_SIZE if cookie and op == PUNCH6_REQ else 0)
            body = (body + bytes(80))[: size - 2]
        data = bytes((TRAVERSAL, op)) + body
        base = base_size(data)
        assert base is None or len(data) in (base, base + COOKIE_SIZE)
        for t in (d, e):
            before = t.stats.total()
            t.receive_datagram(data, src, 0.0)
            out = t.datagrams_to_send(0.0)
            assert t.stats.total() > before  # every datagram counted somewhere
            assert sum(len(o) for o, to in out if to == src) <= len(data)
            for o, to in out:
                assert len(o) <= len(data) or o[1] == PUNCH
                if o[1] == PUNCH6_FWD:  # only naming the IPv6 source, to an IPv6 target
                    assert o[22:40] == packed(src) and to == E6
                if o[1] == PUNCH:
                    assert data[1] == PUNCH6_FWD and src == D6 and t is e


if __name__ == "__main__":  # python -m tests.node.test_traversal_punch6 > docs/vectors/punch6.json
    print(json.dumps(example(), indent=2))
