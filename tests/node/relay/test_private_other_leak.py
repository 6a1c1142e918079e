"""Review R2 finding 3 (1e159a6): a relay with forward_private (a LAN relay, `[relay] forward_private = true`) that is
dual-stack with a public IPv6 address and a private IPv4 one (the common home host) names its
LAN address 192.168.1.5 in ALLOCATED to a remote, public IPv6 owner; the owner then hands that
address to its IPv4-only callee (PUNCH_FWD_RELAY), whose knocks go to whatever 192.168.1.5 is on
the callee's own LAN. The rule: a private other only for an owner that is private too
(the simulator's 10/8 relays and owners: tests/experiments/test_reach_families.py)."""
from kadtalk.node.relay import RelayLayer, RelaySettings
from kadtalk.transport.memory import MemoryNet

from tests.node.relay.conftest import identity
from tests.node.relay.test_families import Alias, Hops, V6, granted

LAN4, D6 = ("192.168.1.5", 5004), ("2001:db8:1::1", 5004)


def test_a_lan_relay_does_not_tell_a_remote_owner_its_private_address():
    net = MemoryNet(Hops())
    relay = RelayLayer(identity("relay"), RelaySettings(serve="always", forward_private=True))
    relay.set_public((LAN4, D6))
    net.attach(LAN4, relay)
    net.attach(D6, Alias(relay))
    net.attach(V6, RelayLayer(identity("owner6")))  # remote, public IPv6
    granted(net, V6, D6)
    assert net.nodes[V6].client.held[D6].other is None, net.nodes[V6].client.held[D6].other
