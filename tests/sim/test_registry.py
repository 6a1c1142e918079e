"""The simulator's shared contact registry: honest handle = address, extras past the end."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.routing.messages import RouteResponse, decode, encode_response
from kadtalk.sim.registry import FLOW_PORTS, MAX_NODES, SIM_PORT, SharedRegistry, flow_address


def test_honest_contacts_intern_to_their_address():
    reg = SharedRegistry([10, 20, 30])
    assert [reg.intern(i, a) for i, a in ((10, 0), (20, 1), (30, 2))] == [0, 1, 2]
    assert len(reg) == 3


def test_other_pairs_get_stable_extra_handles():
    reg = SharedRegistry([10, 20, 30])
    spoof = reg.intern(20, 2)  # ID 20 claimed at address 2
    assert spoof == 3
    assert (reg.ids[spoof], reg.addrs[spoof]) == (20, 2)
    assert reg.intern(20, 2) == spoof
    far = reg.intern(99, 1000)  # an address no node has
    assert far == 4 and reg.intern(99, 1000) == 4
    assert reg.intern(20, 1) == 1  # honest ones unaffected
    assert len(reg) == 5
    # the handle list did not give the extra handle's index to an honest pair
    assert reg.intern(77, 3) not in (0, 1, 2, 3, 4)
    # every handle at an address: the node's own and the IDs claimed there
    assert reg.handles_at(2) == [2, spoof]
    assert reg.handles_at(1000) == [far] and reg.handles_at(0) == [0]


def test_too_many_nodes_is_refused():
    class Long(list):
        def __len__(self):
            return MAX_NODES + 1

    with pytest.raises(ValueError):
        SharedRegistry(Long())


def test_wire_layout_is_10_0_0_0_plus_address_port_5004():
    assert SharedRegistry.addr_to_wire(0) == bytes.fromhex("0a000000138c")
    assert SharedRegistry.addr_to_wire(0x010203) == bytes.fromhex("0a010203138c")
    assert SIM_PORT == 5004


@given(st.integers(0, MAX_NODES - 1))
def test_wire_round_trip(addr):
    assert SharedRegistry.addr_from_wire(SharedRegistry.addr_to_wire(addr)) == addr


@given(st.binary(min_size=6, max_size=6))
def test_from_wire_never_raises(data):
    addr = SharedRegistry.addr_from_wire(data)
    ip, port = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big")
    if ip >> 24 != 10 or (port != SIM_PORT and port not in FLOW_PORTS):
        assert addr is None
    elif port == SIM_PORT:
        assert addr == ip - (10 << 24)
    else:  # a symmetric NAT's flow (sim/nat.py)
        assert addr == flow_address(ip - (10 << 24), port)


@given(st.integers(0, MAX_NODES - 1), st.sampled_from(FLOW_PORTS))
def test_flow_addresses_round_trip_with_their_port(addr, port):
    wire = SharedRegistry.addr_to_wire(flow_address(addr, port))
    assert wire[4:] == port.to_bytes(2, "big") and wire[:4] == SharedRegistry.addr_to_wire(addr)[:4]
    assert SharedRegistry.addr_from_wire(wire) == flow_address(addr, port)


def test_codec_with_sim_addresses():
    reg = SharedRegistry([1, 2])
    msg = RouteResponse(1, 5, ((2, 1), (7, 12345)))
    data = encode_response(msg, reg.addr_to_wire)
    assert decode(data, reg.addr_from_wire) == (msg, 0)
    bad = data[:-2] + b"\x00\x01"  # last contact on another port
    decoded, skipped = decode(bad, reg.addr_from_wire)
    assert decoded.contacts == ((2, 1),) and skipped == 1


def _reference_intern(ids: list[int], addrs: list[int], extra: dict, node_id: int, addr: int) -> int:
    """The rule before session 14 (an honest node's handle checked by its address)."""
    if addr < len(ids) and ids[addr] == node_id and addrs[addr] == addr:
        return addr
    if (node_id, addr) not in extra:
        extra[(node_id, addr)] = len(ids)
        ids.append(node_id)
        addrs.append(addr)
    return extra[(node_id, addr)]


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 12)), max_size=40))
def test_intern_gives_the_handles_of_the_rule_it_replaced(claims):
    """Claims of IDs 10..15 at addresses 0..12 (4 honest nodes, 10..13 at 0..3): extra handles
    land on numbers that are addresses too (4, 5, ...), where an address check alone would
    take a claim there for the node's own."""
    reg = SharedRegistry([10, 11, 12, 13])
    ids, addrs, extra = [10, 11, 12, 13], [0, 1, 2, 3], {}
    for node, addr in claims:
        assert reg.intern(10 + node, addr) == _reference_intern(ids, addrs, extra, 10 + node, addr)
    assert reg.ids == ids and reg.addrs == addrs
