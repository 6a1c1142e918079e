"""The daemon's [routing] section (config.toml): `other_addresses` (docs/protocol.md §23 "The
other address"), `bucket_bits` (b bits a hop) and `refresh_groups` reach the node's routing settings, their
defaults are the node's own, and a bad value is an error naming the file."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.app.config import ConfigError, load_config
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.table import MAX_BUCKET_BITS

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


# -- [routing] bucket_bits: Kademlia's b bits a hop (docs/design-decisions.md "Lookup latency: b
# bits a hop (bucket_bits)") --------------------------------------------------------------------


def test_bucket_bits_defaults_to_the_nodes_own(tmp_path):
    assert config_with(tmp_path, "").routing_settings.bucket_bits == RoutingSettings().bucket_bits == 1


@pytest.mark.parametrize("value", [1, 3, MAX_BUCKET_BITS])
def test_bucket_bits_reaches_the_routing_settings(tmp_path, value):
    config = config_with(tmp_path, f"[routing]\nbucket_bits = {value}\nother_addresses = false\n")
    assert config.routing_settings == RoutingSettings(bucket_bits=value, other_addresses=False)


@pytest.mark.parametrize("value, shown", [
    ("0", "0"), ("-1", "-1"), (str(MAX_BUCKET_BITS + 1), str(MAX_BUCKET_BITS + 1)),
    ("10000000000000000000", "10000000000000000000"),  # beyond any C integer: still no traceback
    ('"3"', '"3"'), ("3.0", "3.0"), ("true", "true"), ("[3]", "[3]"),
])
def test_a_bad_bucket_bits_names_the_setting_the_value_and_the_range(tmp_path, value, shown):
    with pytest.raises(ConfigError) as error:
        config_with(tmp_path, f"[routing]\nbucket_bits = {value}\n")
    message = str(error.value)
    assert "config.toml" in message and "[routing] bucket_bits" in message
    assert f"from 1 to {MAX_BUCKET_BITS}" in message
    assert message.endswith(f"got {shown}")


@given(st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=5)))
@settings(max_examples=60, deadline=None)
def test_any_bucket_bits_is_taken_or_refused_clearly(tmp_path_factory, value):
    directory = tmp_path_factory.mktemp("b")
    path = directory / "config.toml"
    path.write_text(f"[routing]\nbucket_bits = {json.dumps(value)}\n")
    try:
        config = load_config(path, directory)
    except ConfigError as error:
        assert "[routing] bucket_bits" in str(error) or "not valid TOML" in str(error)
        assert not (type(value) is int and 1 <= value <= MAX_BUCKET_BITS)
    else:
        assert type(value) is int and config.routing_settings.bucket_bits == value


def test_the_daemons_node_runs_with_bucket_bits(sock_root):
    async def scenario():
        daemon = await start_daemon(sock_root, "d", routing_bucket_bits=3)
        try:
            return daemon.driver.node.routing.settings.bucket_bits
        finally:
            await daemon.stop()

    assert asyncio.run(scenario()) == 3


# -- [routing] refresh_groups: the hourly refresh by prefix group (docs/design-decisions.md "A
# join and hourly refresh by prefix group") ------------------------------------------------------


def test_refresh_groups_defaults_to_the_nodes_own(tmp_path):
    assert config_with(tmp_path, "").routing_settings.refresh_groups is False
    assert RoutingSettings().refresh_groups is False


def test_refresh_groups_reaches_the_routing_settings(tmp_path):
    config = config_with(tmp_path, "[routing]\nbucket_bits = 3\nrefresh_groups = true\n")
    assert config.routing_settings == RoutingSettings(bucket_bits=3, refresh_groups=True)
