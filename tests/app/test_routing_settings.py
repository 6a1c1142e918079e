"""The daemon's [routing] section (config.toml): `other_addresses` (docs/protocol.md §23 "The
other address") reaches the node's routing settings, its default is the node's own, and a bad
value is an error naming the file."""

from __future__ import annotations

import asyncio

import pytest

from kadtalk.app.config import ConfigError, load_config
from kadtalk.node.routing.layer import RoutingSettings

from .conftest import start_daemon


def config_with(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, tmp_path)


def test_the_default_is_the_nodes_own(tmp_path):
    config = config_with(tmp_path, "")
    assert config.routing_other_addresses is RoutingSettings().other_addresses
    assert config.routing_settings == RoutingSettings()


@pytest.mark.parametrize("value", [True, False])
def test_other_addresses_reaches_the_routing_settings(tmp_path, value):
    config = config_with(tmp_path, f"[routing]\nother_addresses = {str(value).lower()}\n")
    assert config.routing_settings.other_addresses is value
    assert config.routing_settings == RoutingSettings(other_addresses=value)


@pytest.mark.parametrize("text", ['other_addresses = "yes"', "other_addresses = 1", "k = 8"])
def test_bad_routing_settings_name_the_file(tmp_path, text):
    with pytest.raises(ConfigError, match=r"config\.toml"):
        config_with(tmp_path, "[routing]\n" + text + "\n")


@pytest.mark.parametrize("value", [True, False])
def test_the_daemons_node_runs_with_the_section(sock_root, value):
    async def scenario():
        daemon = await start_daemon(sock_root, "d", routing_other_addresses=value)
        try:
            return daemon.driver.node.routing.settings.other_addresses
        finally:
            await daemon.stop()

    assert asyncio.run(scenario()) is value
