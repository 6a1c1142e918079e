"""Generate the IPv6 extension's test vectors (docs/vectors/ipv6.json, protocol section 23).

A node (carol) holding two contacts, erin at an IPv6 address and dave at an IPv4 one, answers
alice's lookup for bob twice: a ROUTE_REQ whose padding asks for ROUTE6_RES gets both
contacts; the same request unmarked (nanotalk's) gets ROUTE_RES with erin left out. The
datagrams come from carol's routing layer itself (alice's address is validated first, so no
address probe joins the answer); malformed ROUTE6_RES examples carry the drop reason a node
counts. The IDs are SHA-1 of the names, as in section 6. Usage:

    python -m kadtalk.node.routing.route6_vectors                 # print the JSON
    python -m kadtalk.node.routing.route6_vectors -o FILE         # write it
    python -m kadtalk.node.routing.route6_vectors --check FILE    # exit 1 if FILE differs
"""

from __future__ import annotations

import hashlib
import sys
from random import Random
from typing import Any

from .. import addresses, vectorfile
from .contacts import ContactRegistry
from .layer import RoutingLayer, RoutingSettings
from .messages import MalformedMessage, RouteRequest, encode_request
from .route6 import decode_response
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


def main(argv: list[str] | None = None) -> int:
    return vectorfile.main("IPv6 extension", generate, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
