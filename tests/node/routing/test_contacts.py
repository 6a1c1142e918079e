"""IPv4 wire addresses and the real node's ContactRegistry (handles recycled by `retain`)."""

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kadtalk.node.routing.contacts import (
    ContactRegistry,
    ipv4_from_wire,
    ipv4_to_wire,
    usable_ipv4,
)


@pytest.mark.parametrize(
    "addr",
    [
        ("0.0.0.0", 5004),
        ("10.0.0.1", 0),
        ("255.255.255.255", 5004),
        ("224.0.0.1", 5004),
        ("239.0.0.0", 5004),
        ("239.1.2.3", 5004),
        ("239.255.255.255", 1),
        ("230.4.5.6", 80),
    ],
)
def test_unusable_addresses_on_the_wire(addr):
    assert ipv4_from_wire(ipv4_to_wire(addr)) is None
    assert usable_ipv4(addr) is False


@pytest.mark.parametrize(
    "addr", [("10.0.0.1", 5004), ("192.168.1.2", 1), ("1.2.3.4", 65535), ("223.255.255.254", 9)]
)
def test_usable_addresses_round_trip(addr):
    assert ipv4_from_wire(ipv4_to_wire(addr)) == addr
    assert usable_ipv4(addr) is True


def test_wire_layout_is_ip_then_big_endian_port():
    assert ipv4_to_wire(("10.0.0.1", 5004)) == bytes.fromhex("0a000001138c")
    assert ipv4_from_wire(bytes.fromhex("c0a801020102")) == ("192.168.1.2", 258)


@pytest.mark.parametrize("addr", [("not an ip", 5004), ("10.0.0.1", 70000), ("10.0.0.1", -1), ("::1", 5), None])
def test_usable_ipv4_rejects_nonsense_without_raising(addr):
    assert usable_ipv4(addr) is False


@given(st.binary(min_size=6, max_size=6))
def test_from_wire_never_raises_and_is_consistent(data):
    addr = ipv4_from_wire(data)
    port = int.from_bytes(data[4:], "big")
    first = data[0]
    if port == 0 or data[:4] in (bytes(4), b"\xff" * 4) or 224 <= first <= 239:
        assert addr is None
    else:
        assert addr == (socket.inet_ntoa(data[:4]), port)
        assert ipv4_to_wire(addr) == data


# -- ContactRegistry -------------------------------------------------------------------------------


def test_intern_is_stable_and_distinguishes_addresses():
    reg = ContactRegistry()
    a = reg.intern(1, ("10.0.0.1", 5004))
    b = reg.intern(2, ("10.0.0.1", 5004))
    c = reg.intern(1, ("10.0.0.2", 5004))
    assert len({a, b, c}) == 3
    assert reg.intern(1, ("10.0.0.1", 5004)) == a
    assert (reg.ids[a], reg.addrs[a]) == (1, ("10.0.0.1", 5004))
    assert (reg.ids[c], reg.addrs[c]) == (1, ("10.0.0.2", 5004))
    assert len(reg) == 3


def test_retain_frees_unreferenced_and_reuses_handles():
    reg = ContactRegistry()
    handles = [reg.intern(i, ("10.0.0.1", 1000 + i)) for i in range(10)]
    assert reg.retain(handles[:3]) == 7
    assert len(reg) == 3
    for h in handles[3:]:
        assert reg.addrs[h] is None
    # the kept ones are untouched
    for i, h in enumerate(handles[:3]):
        assert reg.intern(i, ("10.0.0.1", 1000 + i)) == h
    # new contacts reuse freed handles: the handle lists do not grow
    size = len(reg.ids)
    new = [reg.intern(100 + i, ("10.0.0.9", 2000 + i)) for i in range(7)]
    assert sorted(new) == sorted(handles[3:])
    assert len(reg.ids) == len(reg.addrs) == size
    for i, h in enumerate(new):
        assert (reg.ids[h], reg.addrs[h]) == (100 + i, ("10.0.0.9", 2000 + i))
    # an interned pair that was freed comes back under some handle, consistently
    again = reg.intern(5, ("10.0.0.1", 1005))
    assert (reg.ids[again], reg.addrs[again]) == (5, ("10.0.0.1", 1005))
    assert len(reg) == 11


def test_len_stays_bounded_when_retained_periodically():
    reg = ContactRegistry()
    keep = [reg.intern(i, ("10.0.0.1", 1 + i)) for i in range(5)]
    for i in range(10_000):
        reg.intern(10_000 + i, ("10.1.0.1", 1 + i % 60000))
        if len(reg) > 100:
            reg.retain(keep)
        assert len(reg) <= 101
    assert len(reg.ids) <= 101
    assert all(reg.ids[h] == i for i, h in enumerate(keep))


class RegistryMachine(RuleBasedStateMachine):
    """Model: a dict (id, addr) -> handle; retain keeps exactly the live handles."""

    def __init__(self):
        super().__init__()
        self.reg = ContactRegistry()
        self.model: dict = {}

    @rule(node_id=st.integers(0, 7), port=st.integers(1, 4))
    def intern(self, node_id, port):
        key = (node_id, ("10.0.0.1", port))
        handle = self.reg.intern(*key)
        if key in self.model:
            assert handle == self.model[key]
        else:
            assert handle not in self.model.values()
            self.model[key] = handle

    @rule(data=st.data())
    def retain(self, data):
        live = data.draw(st.sets(st.sampled_from(sorted(self.model.values()) or [0])))
        live &= set(self.model.values())
        freed = self.reg.retain(live)
        before = len(self.model)
        self.model = {k: h for k, h in self.model.items() if h in live}
        assert freed == before - len(self.model)

    @invariant()
    def consistent(self):
        assert len(self.reg) == len(self.model)
        for (node_id, addr), handle in self.model.items():
            assert self.reg.ids[handle] == node_id
            assert self.reg.addrs[handle] == addr
        # handles are recycled: never more slots than pairs ever alive at once (8 * 4 possible)
        assert len(self.reg.ids) <= 32
        for port in range(1, 5):  # the address index agrees with the pairs
            addr = ("10.0.0.1", port)
            assert sorted(self.reg.handles_at(addr)) == sorted(
                h for (_, a), h in self.model.items() if a == addr)


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
