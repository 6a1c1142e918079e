"""Floods: allocations from many identities and hosts, and HELLOs from forged sources, leave the
relay's memory bounded by its caps, and signature checks bounded by its meter."""

from __future__ import annotations

import sys

from cryptography.hazmat.primitives.asymmetric import ed25519

from kadtalk.node.identity import Identity
from kadtalk.node.relay import RelayLayer, RelaySettings, wire

from .conftest import identity

R = ("198.51.100.1", 5004)


def allocate_from(relay: RelayLayer, me: Identity, src, now: float) -> bytes | None:
    """One client's HELLO then ALLOCATE, by hand: what the relay answered last."""
    nonce = me.node_id[:16]
    relay.receive_datagram(wire.hello(nonce), src, now)
    out = relay.datagrams_to_send(now)
    if not out:
        return None
    cookie = out[0][0][18:34]
    relay.receive_datagram(wire.allocate(nonce, cookie, 600, me.public_der,
                                         me.sign(wire.signed_part(nonce, cookie, 600))), src, now)
    out = relay.datagrams_to_send(now)
    return out[0][0] if out else None


def memory(relay: RelayLayer) -> tuple:
    server = relay.server
    return (len(server.allocations), len(server._by_nonce), len(server._per_identity),
            len(server._per_host), len(server._expiry), server._guard.tracked_sources,
            sys.getsizeof(server.allocations))


def test_allocations_from_many_identities_stop_at_the_cap():
    settings = RelaySettings(serve="always", max_allocations=64, verify_rate=1e9,
                             verify_burst=1e9, source_rate=1e9, source_burst=1e9,
                             max_sources=256)
    relay = RelayLayer(identity("relay"), settings)
    answers = []
    sizes = []
    for i in range(600):
        me = Identity.from_private_key(ed25519.Ed25519PrivateKey.generate())
        answers.append(allocate_from(relay, me, ("203.0.%d.%d" % (i // 250, i % 250 + 1), 4000),
                                     i * 0.01))
        if i in (299, 599):
            sizes.append(memory(relay))
    granted = [a for a in answers if a[1] == wire.ALLOCATED]
    refused = [a for a in answers if a[1] == wire.ERROR]
    assert len(granted) == 64 and len(refused) == 600 - 64
    assert all(a == wire.error(wire.ALLOCATE, wire.RELAY_FULL, a[4:12]) for a in refused)
    assert relay.drop_counts() == {"relay_full": 600 - 64}
    assert sizes[0] == sizes[1]  # twice the flood, the same memory
    assert sizes[1][:5] == (64, 64, 64, 64, 64) and sizes[1][5] <= 256


def test_signature_checks_are_bounded_by_the_meter():
    settings = RelaySettings(serve="always", max_allocations=10_000, max_per_host=10_000,
                             verify_rate=20, verify_burst=40, source_rate=1e9, source_burst=1e9)
    relay = RelayLayer(identity("relay"), settings)
    me = identity("a")
    for i in range(400):  # one second of ALLOCATEs with proven addresses and bad signatures
        src = ("203.0.113.%d" % (i % 200 + 1), 4000 + i)
        nonce = i.to_bytes(16, "big")
        relay.receive_datagram(wire.hello(nonce), src, 0.0)
        out = relay.datagrams_to_send(0.0)
        if out:
            cookie = out[0][0][18:34]
            relay.receive_datagram(wire.allocate(nonce, cookie, 600, me.public_der, b"\x30" * 70),
                                   src, 0.0)
            relay.datagrams_to_send(0.0)
    drops = relay.drop_counts()
    # HELLOs and ALLOCATEs share the meter: 40 in the burst, so at most 20 signature checks
    assert drops["bad_signature"] <= 20 and drops["rate_limited"] >= 360
    assert relay.server.allocations == {}


def test_hellos_from_forged_sources_leave_no_state():
    relay = RelayLayer(identity("relay"), RelaySettings(serve="always", max_sources=128))
    sent = 0
    for i in range(20_000):
        src = ("198.18.%d.%d" % (i // 250 % 250, i % 250 + 1), 1000 + i % 60000)
        relay.receive_datagram(wire.hello(i.to_bytes(16, "big")), src, i * 0.0001)
        for data, dst in relay.datagrams_to_send(i * 0.0001):
            assert dst == src and len(data) == 34
            sent += 1
    server = relay.server
    assert server.allocations == {} and server._per_host == {} and server._expiry == []
    assert server._guard.tracked_sources <= 128
    assert sent <= 40 + 20 * 2 + 1  # the meter: a burst of 40 and 20/s for 2 s
    assert relay.drop_counts()["rate_limited"] + relay.drop_counts()["rate_limited_source"] \
        == 20_000 - sent
