"""A relay names as its other-family address (52-byte ALLOCATED) only an address its socket
carries (app/network.py `carried`, review R1 session 8): a daemon bound to one IPv4 address
(an AF_INET socket) on a dual-stack host named its IPv6 route source before, and the IPv6-only
callees of its IPv4-only owners knocked where nothing listens."""
from __future__ import annotations

import collections
import socket
from types import SimpleNamespace

import pytest

from kadtalk.app import network as app_network
from kadtalk.node.relay.server import RelayServer
from kadtalk.node.relay.settings import RelaySettings

V4, V6 = ("203.0.113.5", 5004), ("2001:db8:5::5", 5004)
OWNER4, OWNER6 = ("198.51.100.20", 5004), ("2001:db8:9::9", 5004)
WIRE4 = socket.inet_pton(socket.AF_INET, V4[0]) + V4[1].to_bytes(2, "big")
WIRE6 = socket.inet_pton(socket.AF_INET6, V6[0]) + V6[1].to_bytes(2, "big")


@pytest.mark.parametrize("bound, family, dual, public, to4, to6", [
    ("203.0.113.5", socket.AF_INET, False, V4, b"", None),  # bound to one IPv4 address
    ("0.0.0.0", socket.AF_INET, False, V4, b"", None),  # an IPv4 socket: no IPv6
    ("::", socket.AF_INET6, False, V6, None, b""),  # IPv6 only (the kernel refused dual-stack)
    ("2001:db8:5::5", socket.AF_INET6, True, V6, None, b""),  # bound to one IPv6 address
    ("::", socket.AF_INET6, True, V4, WIRE6, WIRE4),  # dual-stack: each family names the other
])
def test_a_relay_names_only_an_other_family_address_its_socket_carries(
        monkeypatch, bound, family, dual, public, to4, to6):
    """`to4` / `to6`: what an IPv4 / IPv6 owner is told (None: such an owner cannot reach
    this socket at all)."""
    monkeypatch.setattr(app_network, "route_sources", lambda towards: [V4[0], V6[0]])
    fake = SimpleNamespace(driver=SimpleNamespace(address=(bound, 5004), family=family,
                                                  dual_stack=dual))
    event = SimpleNamespace(public=public, observer=("198.51.100.1", 5004))
    own = app_network.Network.own_addresses(fake, event)
    assert public in own
    server = RelayServer(RelaySettings(serve="always"), collections.Counter(), lambda d, a: None,
                         lambda: own, 0.0)
    for owner, told in ((OWNER4, to4), (OWNER6, to6)):
        if told is not None:
            assert server._other_address(owner) == told


def test_the_addresses_named_at_start_are_the_sockets_families_only(tmp_path, monkeypatch):
    """At start (`Network.start` names `local_addresses` to the node: `set_nat(own=)`, which
    the relay's `own()` reads too), an AF_INET daemon names no IPv6 route source."""
    monkeypatch.setattr(app_network, "route_sources", lambda towards: [V4[0], V6[0]])
    fake = SimpleNamespace(driver=SimpleNamespace(address=("0.0.0.0", 5004),
                                                  family=socket.AF_INET, dual_stack=False))
    assert app_network.Network.local_addresses(fake) == [V4]
    fake.driver = SimpleNamespace(address=("::", 5004), family=socket.AF_INET6, dual_stack=True)
    assert app_network.Network.local_addresses(fake) == [V4, V6]
