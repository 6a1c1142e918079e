"""Review R1 (session 8), small ones: the relay reads HELLO's WANT_OTHER as a bit (a later flag
beside it keeps it on), and a call waiting for a relay of its callee's family counts
`relay_offer_no_ipv6` once, not at every look (`Node._family_check`)."""

from __future__ import annotations

from kadtalk.node.relay import RelaySettings
from kadtalk.node.relay import wire as relay_wire

from .dht import Call
from .test_families import D4, D6, P4, V6, granted, relay_world, world


def test_a_later_flag_beside_want_other_keeps_it_on(monkeypatch):
    hello = relay_wire.hello
    monkeypatch.setattr(relay_wire, "hello", lambda nonce, flags=0: hello(nonce, flags | 0x02))
    net, _ = relay_world()
    granted(net, P4, D4)
    assert net.nodes[P4].client.held[D4].other == D6


def test_a_waiting_call_counts_no_ipv6_offer_once():
    net, hops = world()
    net.nodes[D4].set_relay_settings(RelaySettings(serve="never"))  # no dual-stack relay
    Call(net, a=P4, b=V6).connect(limit=20.0)
    stats = net.nodes[P4]._upper.paths.stats
    assert stats["family_relay_timeout"] == 1
    assert stats["relay_offer_no_ipv6"] == 1
