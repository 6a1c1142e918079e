"""Helpers: relay layers on the in-memory network (explicit time), identities, one allocation."""

from __future__ import annotations

from random import Random
from typing import Any

from kadtalk.experiments.harness.identities import derive_identity
from kadtalk.node.identity import Identity
from kadtalk.node.relay import AllocationGranted, RelayLayer, RelaySettings
from kadtalk.transport.memory import MemoryNet, Packet

R, A, B, C = ("198.51.100.1", 5004), ("203.0.113.1", 5004), ("203.0.113.2", 5004), \
    ("203.0.113.3", 5004)
SERVE = RelaySettings(serve="always")

_IDS: dict[str, Identity] = {}


def identity(name: str) -> Identity:
    """The same key for `name` in every run: node IDs, hence who is close to whom, and the
    traffic of a test network do not change between runs (keys generated per run made a
    figure of test_wireshark.py's real traffic vary, and failed CI at 9d397c1)."""
    if name not in _IDS:
        _IDS[name] = derive_identity(Random(name))
    return _IDS[name]


class World(MemoryNet):
    """A relay at R (serving with `settings`) and client layers at A, B, C; every datagram
    logged; `drop(packet)` returning True loses one."""

    def __init__(self, settings: RelaySettings = SERVE, drop=None):
        super().__init__(self._route)
        self.log: list[Packet] = []
        self.drop = drop
        self.attach(R, RelayLayer(identity("relay"), settings))
        for name, addr in (("a", A), ("b", B), ("c", C)):
            self.attach(addr, RelayLayer(identity(name), settings))

    def _route(self, packet: Packet, now: float) -> tuple:
        self.log.append(packet)
        return () if self.drop is not None and self.drop(packet) else ((0.0, packet),)

    def at(self, addr: Any) -> RelayLayer:
        return self.nodes[addr]

    @property
    def relay(self) -> RelayLayer:
        return self.nodes[R]

    def inject(self, data: bytes, src: Any, dst: Any = R, now: float | None = None) -> list:
        """Send `data` from `src` (forged, perhaps) and return what the network carried next."""
        start = len(self.log)
        self.send(Packet(src, dst, data))
        self.settle(self.now if now is None else now)
        return self.log[start:]

    def granted(self, addr: Any = A, now: float = 0.0) -> AllocationGranted:
        """`addr` allocates with the relay; its AllocationGranted."""
        self.at(addr).allocate(R, now)
        self.settle(now)
        (event,) = [e for e in self.events[addr] if type(e) is AllocationGranted][-1:]
        return event

    def knock(self, peer: Any, path: Any, now: float = 0.0) -> None:
        """`peer` knocks at `path` and echoes the relay's cookie: its address is proven there
        (the owner may permit it) and it accepts DATA through `path`."""
        self.at(peer).knock(path, now)
        self.settle(now)

    def linked(self, now: float = 0.0) -> AllocationGranted:
        """A holds an allocation with B permitted (B knocked first); B talks to it as its
        peer."""
        event = self.granted(A, now)
        self.knock(B, event.path, now)
        self.at(A).permit(event.path, B, now)
        self.settle(now)
        return event


def echo_limited(counts: Any) -> int:
    """Cookie echoes the relay metered away: by the allocation's cap or the source's bucket."""
    return counts["rate_limited_echo"] + counts["rate_limited_echo_source"]
