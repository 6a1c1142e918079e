"""node/addresses.py: the per-host and per-network keys (an IPv6 /64 counts as one host, a /48
as one network) and the family-tagged address encoding of the IPv6 extension."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.addresses import from_wire, host_key, prefix, subnet_key, text, to_wire
from kadtalk.transport.udp import parse_hostport
from kadtalk.node.ratelimit import FloodGuard
from kadtalk.node.routing.contacts import ContactRegistry

v6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))


@given(v6, v6, st.integers(0, 128))
def test_two_ipv6_hosts_share_a_prefix_key_exactly_when_they_share_those_bits(a, b, bits):
    shift = 128 - bits
    same = int(ipaddress.IPv6Address(a)) >> shift == int(ipaddress.IPv6Address(b)) >> shift
    assert (prefix(a, bits) == prefix(b, bits)) == same


@given(v6, st.integers(0, 128))
def test_the_prefix_key_names_the_network(host, bits):
    expected = ipaddress.IPv6Network((host, bits), strict=False)
    assert ipaddress.IPv6Network(prefix(host, bits)) == expected


def test_a_host_is_an_ipv6_64_and_a_subnet_an_ipv6_48_or_an_ipv4_24():
    assert host_key("2001:db8:1:2:aaaa::1") == host_key("2001:db8:1:2:bbbb::9") \
        == "2001:db8:1:2::/64"
    assert host_key("2001:db8:1:3::1") != host_key("2001:db8:1:2::1")
    assert subnet_key("2001:db8:1:ffff::1") == subnet_key("2001:db8:1::2") == "2001:db8:1::/48"
    assert subnet_key("2001:db8:2::1") != subnet_key("2001:db8:1::1")
    assert host_key("192.0.2.7") == "192.0.2.7" and subnet_key("192.0.2.7") == "192.0.2"
    assert ContactRegistry.subnet(("2001:db8:1:9::5", 5004)) == "2001:db8:1::/48"
    assert ContactRegistry.subnet(("192.0.2.7", 5004)) == "192.0.2"


@pytest.mark.parametrize("junk", ["fe80::1%eth0", "::zz", "", 17, None, (1, 2), "1:2:3"])
def test_keys_of_anything_else_are_the_thing_itself_never_an_error(junk):
    assert host_key(junk) == junk


def test_a_flood_from_one_64_shares_one_source_budget_however_many_addresses():
    guard = FloodGuard(1000, 1000, 1, 5, 0.0, always=True)
    verdicts = [guard.check(f"2001:db8:0:1::{i:x}", 0.0) for i in range(1, 8)]
    assert verdicts == [None] * 5 + ["rate_limited_source"] * 2
    assert guard.check("2001:db8:0:2::1", 0.0) is None  # another /64: its own budget
    assert guard.tracked_sources == 2
    assert not guard.ready("2001:db8:0:1::ffff", 0.0)


@pytest.mark.parametrize("addr, wire", [
    (("192.0.2.7", 5004), "04c0000207138c"),
    (("2001:db8::7", 5004), "0620010db8000000000000000000000007138c"),
    (("::1", 1), "06000000000000000000000000000000010001"),
])
def test_the_wire_encoding_of_both_families(addr, wire):
    assert to_wire(addr).hex() == wire
    assert from_wire(bytes.fromhex(wire)) == (addr, len(wire) // 2)


@pytest.mark.parametrize("addr", [
    ("::", 5004), ("ff02::1", 5004), ("fe80::1", 5004), ("::ffff:192.0.2.7", 5004),
    ("2001:db8::1", 0), ("0.0.0.0", 5004), ("255.255.255.255", 1), ("224.0.0.1", 1),
    ("2001:db8::1%2", 5), ("nonsense", 5), (5, 5), ("192.0.2.1", 70000), ("192.0.2.1",),
])
def test_unusable_or_malformed_addresses_have_no_encoding(addr):
    assert to_wire(addr) is None


@given(st.binary(max_size=40), st.integers(0, 40))
def test_decoding_any_bytes_gives_an_address_none_or_value_error(data, offset):
    try:
        addr, end = from_wire(data, offset)
    except ValueError:
        return
    assert end in (offset + 7, offset + 19) and end <= len(data)
    if addr is not None:
        assert to_wire(addr) == data[offset:end]  # one spelling per address


@given(st.ip_addresses(), st.integers(1, 65535))
def test_an_address_as_text_reads_back_the_same(ip, port):
    """IPv6 in brackets, so the port stays apart; parse_hostport reads either back (an
    IPv4-mapped ::ffff:a.b.c.d as the IPv4 address it stands for, as the driver normalises
    every address: transport.udp.normalise)."""
    addr = (str(ip), port)
    shown = text(addr)
    assert shown.startswith("[") == (ip.version == 6)
    mapped = ip.ipv4_mapped if ip.version == 6 else None
    assert parse_hostport(shown) == (addr if mapped is None else (str(mapped), port))
