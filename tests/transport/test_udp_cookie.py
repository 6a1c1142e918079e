"""Issue 17, attack 4 on real sockets: a node flooded at 20,000 datagrams/s with valid KEY_REQs
from forged 127.0.0.0/8 source addresses (a raw IPPROTO_RAW socket, hand-made IPv4 + UDP
headers, in another process: benchmarks/flood.py) while an honest caller on 127.0.0.1 calls it.
The call rings during the flood; the flood drew only cookie replies."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import flood

pytestmark = pytest.mark.skipif(
    not flood.can_spoof(), reason="forging source addresses needs a raw socket: run as root "
    "(or with CAP_NET_RAW)")


def test_an_honest_call_rings_during_a_spoofed_key_req_flood_on_loopback():
    run = asyncio.run(flood.run_key_req_flood(count=3, rate=20_000, seed=1, seconds=1.0,
                                              distinct=2000))
    assert all(ok for ok, _ in run["baseline"])
    rang = [ok for ok, _ in run["flooded"]]
    # a Python node reads 10,000-20,000 datagrams a second here (less when the shared cores are
    # busy); the kernel drops the rest of the flood, honest datagrams among them, before any
    # rule applies: a call may then run out of its five tries. Never more than one of three.
    assert sum(rang) >= 2, run
    if not all(rang):
        assert run["kernel_drops_per_s"], "a call failed although the kernel dropped nothing"
    assert run["offered_per_s"] > 15_000  # the kernel took the flood ...
    drops = run["drops"]
    # ... and the node answered much of it with a cookie (the flood lasts at least 1 s: honest
    # calls ring within milliseconds, so a flood as long as three calls would be too short to tell)
    assert drops["cookie_sent"] > 5_000
    # a signature is checked for at most the burst's first half, before the load is noticed
    assert drops.get("handshake_evicted", 0) + drops.get("handshake_timeout", 0) <= 200
