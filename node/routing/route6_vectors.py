"""Generate the IPv6 extension's test vectors (docs/vectors/ipv6.json, protocol section 23).

A node (carol) holding two contacts, erin at an IPv6 address and dave at an IPv4 one, answers
alice's lookup for bob twice: a ROUTE_REQ whose padding asks for ROUTE6_RES gets both
contacts; the same request unmarked (nanotalk's) gets ROUTE_RES with erin left out. The
datagrams come from carol's routing layer itself (alice's address is validated first, so no
address probe joins the answer); malformed ROUTE6_RES examples carry the drop reason a node
counts. The IDs are SHA-1 of the names, as in section 6.

`announce` (docs/vectors/route6-announce.json, section 23 "The other address"): carol's join asks
dave over IPv4 with a keyed target; dave, dual-stack, names himself at his IPv6 address, last,
in his ROUTE6_RES; carol, whose keyed target dave's answer echoed, probes that address, dave
answers from there, and carol then names dave at IPv6 to alice asking over IPv6, at IPv4 to
alice asking over IPv4. The same self-naming answer to a lookup request with an exact target
(not keyed), and session 11's announce after a request's marker, draw no probe.
Usage:

    python -m kadtalk.node.routing.route6_vectors [announce]               # print the JSON
    python -m kadtalk.node.routing.route6_vectors [announce] -o FILE       # write it
    python -m kadtalk.node.routing.route6_vectors [announce] --check FILE  # 1 if FILE differs
"""

from __future__ import annotations

import hashlib
import sys
from random import Random
from typing import Any

from .. import addresses, vectorfile
from .contacts import ContactRegistry
from .layer import RoutingLayer, RoutingSettings
from .messages import ROUTE_RES, MalformedMessage, RouteRequest, encode_request
from .route6 import ROUTE6_RES, decode_response
from .route6 import encode_request as encode_request6

ALICE_AT = ("2001:db8:a::1", 5004)
ERIN_AT = ("2001:db8:e::1", 5004)
DAVE_AT = ("192.168.1.7", 4000)


def nid(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest(), "big")


def _answer(carol: RoutingLayer, request: bytes) -> bytes:
    carol.receive_datagram(request, ALICE_AT, 1.0)
    [(reply, dst)] = carol.datagrams_to_send(1.0)
    assert dst == ALICE_AT
    return reply


def generate() -> dict[str, Any]:
    alice, bob, carol_id, dave, erin = (nid(n) for n in ("alice", "bob", "carol", "dave", "erin"))
    carol = RoutingLayer(carol_id, ContactRegistry(), Random(0), RoutingSettings(ipv6=True))
    carol.add_contact(erin, ERIN_AT, 0.0)
    carol.add_contact(dave, DAVE_AT, 0.0)
    carol.add_contact(alice, ALICE_AT, 0.0)  # alice is a contact: no probe, no amplification cap
    marked = encode_request6(RouteRequest(alice, bob, 187))
    plain = encode_request(RouteRequest(alice, bob, 187))
    route6_res = _answer(carol, marked)
    route_res = _answer(carol, plain)
    malformed = []
    for note, data in (
        ("cut inside an IPv6 address", route6_res[:41 + 20 + 10]),
        ("family 0x05", route6_res[:61] + b"\x05" + route6_res[62:]),
        ("an ID with no address after it", route6_res[:41] + bytes(20)),
    ):
        try:
            decode_response(data)
            raise AssertionError(note)
        except MalformedMessage as error:
            malformed.append({"note": note, "hex": data.hex(), "drop": error.reason})
    return {
        "description": "IPv6 routing extension (docs/protocol.md section 23): carol answers "
                       "alice's lookup for bob; IDs are SHA-1 of the names",
        "ids": {name: f"{value:040x}" for name, value in
                (("alice", alice), ("bob", bob), ("carol", carol_id), ("dave", dave),
                 ("erin", erin))},
        "contacts": {"erin": f"[{ERIN_AT[0]}]:{ERIN_AT[1]}", "dave": f"{DAVE_AT[0]}:{DAVE_AT[1]}"},
        "addresses": [{"address": f"{a[0]}:{a[1]}" if ":" not in a[0] else f"[{a[0]}]:{a[1]}",
                       "hex": addresses.to_wire(a).hex()} for a in (ERIN_AT, DAVE_AT)],
        "messages": [
            {"name": "ROUTE_REQ asking for ROUTE6_RES", "from": "alice", "to": "carol",
             "size": len(marked), "hex": marked.hex()},
            {"name": "ROUTE6_RES", "from": "carol", "to": "alice", "size": len(route6_res),
             "hex": route6_res.hex()},
            {"name": "ROUTE_REQ (unmarked, nanotalk's)", "from": "alice", "to": "carol",
             "size": len(plain), "hex": plain.hex()},
            {"name": "ROUTE_RES", "from": "carol", "to": "alice", "size": len(route_res),
             "hex": route_res.hex(), "note": "erin's IPv6 address cannot travel in ROUTE_RES"},
        ],
        "malformed": malformed,
    }


DAVE_AT6 = ("2001:db8:d::1", 4000)  # dave's other address
ALICE_AT4 = ("203.0.113.9", 5004)  # alice again, asking over IPv4 (a dual-stack alice)
CAROL_AT4 = ("192.0.2.1", 5004)  # where carol's requests to dave come from
CAROL_AT6 = ("2001:db8:c::1", 5004)  # where carol's probe comes from


def _hex(data: bytes) -> str:
    return data.hex()


def _dave() -> RoutingLayer:
    """dave, dual-stack, knowing his IPv6 address; he holds carol (no probe of her) and erin."""
    alice, bob, carol_id, dave, erin = (nid(n) for n in ("alice", "bob", "carol", "dave", "erin"))
    node = RoutingLayer(dave, ContactRegistry(), Random(1), RoutingSettings(ipv6=True))
    node.announce(DAVE_AT6)
    node.add_contact(carol_id, CAROL_AT4, 0.0)
    node.add_contact(erin, ERIN_AT, 0.0)
    return node


def _carol() -> RoutingLayer:
    """carol, dual-stack, other addresses on, holding dave at IPv4 (IPv4 taught it) and alice."""
    alice, carol_id, dave = (nid(n) for n in ("alice", "carol", "dave"))
    carol = RoutingLayer(carol_id, ContactRegistry(), Random(0),
                         RoutingSettings(ipv6=True, other_addresses=True, refresh_on_join=False))
    carol.add_contact(dave, DAVE_AT, 0.0)
    carol.add_contact(alice, ALICE_AT, 0.0)  # alice is a contact: no probe, no amplification cap
    return carol


def _to(out: list[tuple[bytes, Any]], dst: Any) -> list[bytes]:
    return [d for d, to in out if to == dst]


def generate_announce() -> dict[str, Any]:
    alice, bob, carol_id, dave = (nid(n) for n in ("alice", "bob", "carol", "dave"))
    carol, dave_node = _carol(), _dave()
    carol.join([], 0.0)  # her join asks dave (and alice) with keyed targets
    [keyed] = _to(carol.datagrams_to_send(0.0), DAVE_AT)
    dave_node.receive_datagram(keyed, CAROL_AT4, 0.5)
    [announcing] = _to(dave_node.datagrams_to_send(0.5), CAROL_AT4)
    carol.receive_datagram(announcing, DAVE_AT, 1.0)
    [probe] = _to(carol.datagrams_to_send(1.0), DAVE_AT6)
    dave_node.receive_datagram(probe, CAROL_AT6, 1.0)
    [answer] = [d for d in _to(dave_node.datagrams_to_send(1.0), CAROL_AT6) if d[0] == ROUTE_RES]
    carol.receive_datagram(answer, DAVE_AT6, 1.0)
    carol.datagrams_to_send(1.0)
    marked = encode_request6(RouteRequest(alice, bob, 187))
    over6 = _answer(carol, marked)  # from ALICE_AT, IPv6
    carol.receive_datagram(marked, ALICE_AT4, 1.0)
    [over4] = [d for d, _ in carol.datagrams_to_send(1.0) if d[0] == ROUTE6_RES]  # (+ a probe)
    # Drawing no probe: dave's self-naming answer to a lookup request of carol's with an exact
    # target (a user's lookup: whoever dave's address was named by knows the target and could
    # forge it), and session 11's announce in a request's padding.
    carol, dave_node = _carol(), _dave()
    carol.find_closest(bob, 0.0)
    [exact] = _to(carol.datagrams_to_send(0.0), DAVE_AT)
    dave_node.receive_datagram(exact, CAROL_AT4, 0.5)
    [unkeyed] = _to(dave_node.datagrams_to_send(0.5), CAROL_AT4)
    carol.receive_datagram(unkeyed, DAVE_AT, 1.0)
    assert not _to(carol.datagrams_to_send(1.0), DAVE_AT6)
    padded = encode_request6(RouteRequest(dave, bob, 288))
    padded = padded[:45] + addresses.to_wire(DAVE_AT6) + padded[45 + 19:]
    carol.receive_datagram(padded, DAVE_AT, 2.0)
    assert [to for _, to in carol.datagrams_to_send(2.0)] == [DAVE_AT]  # the answer only
    return {
        "description": "A dual-stack node's other address (docs/protocol.md section 23, \"The "
                       "other address\"): dave names himself at his IPv6 address in his "
                       "ROUTE6_RES to carol's keyed request over IPv4; carol proves it and "
                       "names dave there to alice asking over IPv6; IDs are SHA-1 of the names",
        "ids": {name: f"{value:040x}" for name, value in
                (("alice", alice), ("bob", bob), ("carol", carol_id), ("dave", dave),
                 ("erin", nid("erin")))},
        "addresses": {"dave": addresses.text(DAVE_AT), "dave_ipv6": addresses.text(DAVE_AT6),
                      "erin_ipv6": addresses.text(ERIN_AT),
                      "alice_ipv6": addresses.text(ALICE_AT),
                      "alice_ipv4": addresses.text(ALICE_AT4),
                      "carol_ipv4": addresses.text(CAROL_AT4),
                      "carol_ipv6": addresses.text(CAROL_AT6)},
        "messages": [
            {"name": "ROUTE_REQ with a keyed target", "from": "carol (IPv4)",
             "to": "dave (IPv4)", "size": len(keyed), "hex": _hex(keyed),
             "note": "her join's request: carol's ID with its last 64 bits keyed"},
            {"name": "ROUTE6_RES announcing the responder's IPv6 address", "from": "dave (IPv4)",
             "to": "carol", "size": len(announcing), "hex": _hex(announcing),
             "note": "erin, then dave himself at his IPv6 address, last"},
            {"name": "address probe of the announced address", "from": "carol",
             "to": "dave (IPv6)", "size": len(probe), "hex": _hex(probe)},
            {"name": "ROUTE_RES answering the probe", "from": "dave (IPv6)", "to": "carol",
             "size": len(answer), "hex": _hex(answer)},
            {"name": "ROUTE_REQ asking for ROUTE6_RES", "from": "alice", "to": "carol",
             "size": len(marked), "hex": _hex(marked)},
            {"name": "ROUTE6_RES to a request over IPv6", "from": "carol", "to": "alice (IPv6)",
             "size": len(over6), "hex": _hex(over6), "note": "dave at his IPv6 address"},
            {"name": "ROUTE6_RES to the same request over IPv4", "from": "carol",
             "to": "alice (IPv4)", "size": len(over4), "hex": _hex(over4),
             "note": "dave at the IPv4 address carol holds him at (and alice at the IPv6 one: "
                     "her entry, not this requester's address)"},
        ],
        "ignored": [
            {"note": "the same self-naming answer to a request with the lookup's exact target "
                     "(not keyed): no probe", "request": _hex(exact), "answer": _hex(unkeyed)},
            {"note": "session 11's announce after a request's marker: padding, no probe",
             "request": _hex(padded)},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["announce"]:
        return vectorfile.main("IPv6 other-address", generate_announce,
                               "The other address's test vectors", args[1:])
    return vectorfile.main("IPv6 extension", generate, __doc__.splitlines()[0], args)


if __name__ == "__main__":
    sys.exit(main())
