"""[relay] settings (config.toml) reach the node, the daemon tells the node its NAT kind (a public
node relays, a NATed one holds relays for its calls), and `kadtalk status` says which."""

from __future__ import annotations

from random import Random
from types import SimpleNamespace

import pytest

from kadtalk.app.cli import _format_status
from kadtalk.app.config import ConfigError, load_config
from kadtalk.app.network import Network
from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.traversal import AddressObserved

PORT = 5004


def config_with(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, tmp_path)


def network(config) -> Network:
    me = Identity.generate()
    node = Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(1), identity=me,
                traversal=True)
    net = Network(config, callers=None, broadcast=lambda event: None)
    net.start(SimpleNamespace(node=node, address=("0.0.0.0", PORT)), 0.0)
    return net


def test_relay_section_becomes_the_nodes_relay_settings(tmp_path):
    config = config_with(tmp_path, '[relay]\nserve = "always"\nmax_allocations = 8\n'
                                   'allocation_rate = 20000\ncall_relays = 1\n')
    settings = config.relay_settings
    assert (settings.serve, settings.max_allocations, settings.allocation_rate,
            settings.call_relays, settings.enabled) == ("always", 8, 20000.0, 1, True)
    net = network(config)
    assert net.driver.node.relay.settings == settings
    assert net.relay_status()["serving"]  # always: even before it knows it is public


@pytest.mark.parametrize("text", ['serve = "sometimes"', "max_allocations = 0",
                                  "call_relays = 9", 'enabled = "no"', "total_rate = 1.5",
                                  "colour = 1"])
def test_bad_relay_settings_name_the_file(tmp_path, text):
    with pytest.raises(ConfigError, match=r"config\.toml"):
        config_with(tmp_path, "[relay]\n" + text + "\n")


def test_the_off_switch_leaves_the_node_without_relays(tmp_path):
    net = network(config_with(tmp_path, "[relay]\nenabled = false\n"))
    assert net.driver.node.relay is None
    assert net.status()["relay"] == {"enabled": False, "needed": False, "held": [],
                                     "serving": False, "relayed_for": 0}
    assert "relay    off" in _format_status(status(net))


def observed(public, symmetric: bool) -> AddressObserved:
    return AddressObserved(("127.0.0.1", 6000), public, public, symmetric, 1.0)


def status(net: Network) -> dict:
    return {"node_id": "00" * 20, "network": net.status(), "contacts": 0,
            "audio": {"capture": "none", "playback": "none"}}


def test_a_public_daemon_relays_by_default_and_a_natted_one_does_not(tmp_path):
    """Since a relayed peer proves its address (knock cookies, docs/protocol.md §21), `serve`
    is `auto` by default: a daemon relays, within the [relay] caps, once its NAT check finds it
    at its own address, and stops when that changes; `never` is the off switch."""
    config = config_with(tmp_path, "")
    assert config.relay_serve == "auto" and config.relay_settings.serve == "auto"
    public = network(config)
    assert not public.relay_status()["serving"]  # not before it knows
    public.on_event(observed(("127.0.0.1", PORT), symmetric=False))
    assert public.nat == "none" and public.relay_status()["serving"]
    settings = public.driver.node.relay.settings
    assert (settings.max_allocations, settings.allocation_rate, settings.total_rate) == (
        64, 40_000.0, 1_000_000.0)  # the caps a user can change
    public.on_event(observed(("198.51.100.7", 40001), symmetric=False))  # now behind a NAT
    assert public.nat != "none" and not public.relay_status()["serving"]
    natted = network(config)
    natted.on_event(observed(("198.51.100.7", 40001), symmetric=False))
    assert not natted.relay_status()["serving"]
    never = network(config_with(tmp_path, '[relay]\nserve = "never"\n'))
    never.on_event(observed(("127.0.0.1", PORT), symmetric=False))
    assert never.nat == "none" and not never.relay_status()["serving"]


def test_a_public_node_relays_and_a_symmetric_one_needs_relays(tmp_path):
    config = config_with(tmp_path, '[relay]\nserve = "auto"\n')
    public = network(config)
    assert not public.relay_status()["serving"]  # auto: not before it knows
    assert "not known yet whether calls need one" in _format_status(status(public))
    public.on_event(observed(("127.0.0.1", PORT), symmetric=False))  # seen at our own address
    assert public.nat == "none"
    assert public.relay_status()["serving"] and not public.relay_status()["needed"]
    assert "calls need none, relaying for 0" in _format_status(status(public))
    natted = network(config)
    natted.on_event(observed(("198.51.100.7", 40001), symmetric=True))
    assert natted.nat == "symmetric"
    assert natted.relay_status()["needed"] and not natted.relay_status()["serving"]
    assert "calls may need one; none found yet" in _format_status(status(natted))


def test_a_lost_relay_is_logged_in_plain_words(tmp_path, caplog):
    from kadtalk.node.relay import RelayLost, RelayPath
    net = network(config_with(tmp_path, ""))
    net.on_event(RelayLost(3, RelayPath(("198.51.100.1", 5004), bytes(8)), False, 1.0))
    assert "call 3: its relay 198.51.100.1:5004 went silent; no other relay" in caplog.text


def test_a_relayed_peer_address_reads_as_the_relay_for_people():
    """A relayed incoming call carries a RelayPath as its address: the daemon's call events and
    hooks show it as text instead of failing on it (a relayed call never rang before)."""
    from kadtalk.app.calls import address_text
    from kadtalk.node.relay import RelayPath

    assert address_text(("192.0.2.7", 5004)) == "192.0.2.7:5004"
    assert address_text(RelayPath(("198.51.100.1", 3478), bytes(8))) == "relay 198.51.100.1:3478"


def test_a_public_dual_stack_daemon_tells_its_relay_each_address_of_its_own(tmp_path,
                                                                           monkeypatch):
    """Seen over IPv4 at its own address, a daemon also bound to IPv6 names both to its node
    (the routes' source addresses, `route_sources`): its relay refuses a peer anywhere in its
    IPv6 /64 and at its IPv4, not only at the one address the probe saw."""
    import kadtalk.app.network as network_module

    routes = {"8.8.8.8": "127.0.0.1", "2001:4860:4860::8888": "2001:db8:7::2"}
    monkeypatch.setattr(network_module, "route_sources", lambda towards: [
        routes[a[0]] for a in towards if a[0] in routes])
    net = network(config_with(tmp_path, ""))
    net.on_event(observed(("127.0.0.1", PORT), symmetric=False))
    relay = net.driver.node.relay
    assert net.nat == "none" and relay.serving
    assert relay.public == (("127.0.0.1", PORT), ("2001:db8:7::2", PORT))
    forbidden = relay.codec.forbidden
    assert forbidden(("2001:db8:7::99", 80), ("203.0.113.5", 5004), relay.public, False) == \
        "forbidden_self"
    assert forbidden(("2001:db8:8::99", 80), ("203.0.113.5", 5004), relay.public, False) is None
