"""The routing layer's probe secret keys admission, validation and announce probes, keyed
lookup requests and the other-address query: whoever knows it can forge their answers (plant an
entry's IPv6 address from its IPv4 source, docs/protocol.md section 23). Peers see the rng's
draws in clear (refresh targets, traversal's ADDR_REQ and PROBE_REQ nonces) and can rebuild a
Mersenne Twister's state from them (review R1, session 12), so a real node draws the key from
the OS (`random_bytes=os.urandom`, transport/udp.py); the simulator keeps the rng, so a seed
replays the same run."""

from __future__ import annotations

import asyncio
import hashlib
import os
from random import Random

from kadtalk.node.routing import route6
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingLayer, RoutingSettings
from kadtalk.node.routing.messages import ROUTE_REQ, RouteRequest
from kadtalk.node.routing.route6 import encode_request as encode_request6
from kadtalk.transport.udp import start_node

R_ID, P_ID = 0x1 << 156, 0x2 << 156
P4 = ("198.51.100.2", 5004)


def responder(random_bytes=None, **kw) -> RoutingLayer:
    """A dual-stack layer holding P at a validated IPv4 address (so P's marked request draws
    the keyed query)."""
    r = RoutingLayer(R_ID, ContactRegistry(), Random(7),
                     RoutingSettings(refresh_on_join=False, ipv6=True, other_addresses=True, **kw),
                     random_bytes=random_bytes)
    assert r.add_contact(P_ID, P4, 0.0)
    r._answered_from(P4)
    return r


def query_to_p(r: RoutingLayer, now: float = 1.0) -> bytes:
    r.receive_datagram(encode_request6(RouteRequest(P_ID, 0x55, 187)), P4, now)
    [query] = [d for d, to in r.datagrams_to_send(now) if to == P4 and d[0] == ROUTE_REQ]
    return query


def test_the_probe_key_comes_from_random_bytes_and_the_rng_is_not_drawn_for_it():
    key = bytes(range(16))
    r = responder(lambda n: key[:n])
    state = r.rng.getstate()
    query = query_to_p(r)
    keyed = r.registry.addr_to_wire(P4) + P_ID.to_bytes(20, "big") + b"Q"
    expected = hashlib.blake2b(keyed, key=key, digest_size=20).digest()
    assert query[21:41] == expected
    assert r.rng.getstate() == state  # nothing a peer sees tells the key
    # without random_bytes (the simulator): the rng's draw, the same for the same seed
    a, b = query_to_p(responder()), query_to_p(responder())
    assert a[21:41] == b[21:41] != expected


def test_the_query_is_no_larger_than_what_draws_it_whatever_our_padding():
    for padding in (0, 146, 247, 300, 520):
        assert len(query_to_p(responder(request_padding=padding))) == route6.ROUTE6_REQUEST_SIZE


def test_a_real_node_draws_its_probe_keys_from_the_os():
    async def main():
        driver = await start_node(host="127.0.0.1")
        try:
            return driver.node.routing._random_bytes
        finally:
            driver.close()
    assert asyncio.run(main()) is os.urandom
