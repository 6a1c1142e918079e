"""Nodes built on first use: a converged network whose untouched nodes stay rows.

A lookup study on a converged network touches a small share of its nodes (10^4 lookups in
10^6 nodes: about one node in ten hears a datagram), yet building every `Node` with its
`RoutingTable` costs ~3 KB and ~100 µs a node. Here a node is a row of the fast bootstrap's
tables (sim/bootstrap.py, `store="rows"`: no table is held at all) until something reaches it:
a datagram, a command (a lookup starting at it), its first timer, or any other look at
`driver.nodes[addr]`. Then the real node is built from the row exactly as the eager path
(experiments/harness/world.py `load_converged`) builds it: the same constructor at the load
time, the same table, the same round trips of its join. The node code is untouched.

Results are identical to building every node first (tests/sim/test_lazy.py pins a seed's
lookups byte for byte). Building a node draws no random number and sends nothing, so when it
happens does not matter; what would differ is the event queue: eagerly, every node arms its
first timer (all at the same deadline, the hourly refresh) right after its build, one event
each, in address order. Here one event at that deadline stands for that whole block and fires,
in address order, every node whose timer is still armed for it, as the block's events would
have (each in turn, nothing else between them). Only the count of pending events differs
(`sim_queue`, no simulated result).
"""

from __future__ import annotations

import itertools
from array import array
from typing import Any, Callable, Iterator

from kadtalk.transport.sim import SimDriver


class _Dormant:
    """The marker of a slot whose node is not built yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DORMANT"


DORMANT = _Dormant()


class LazyNodes(list):
    """The driver's node list: a slot holding DORMANT builds its node when read (`wake(addr)`).

    Reads by index and iteration see built nodes only; `None` stays "offline", as in a list."""

    __slots__ = ("wake", "dormant")

    def __init__(self, count: int, wake: Callable[[int], Any]):
        super().__init__(itertools.repeat(DORMANT, count))
        self.wake = wake
        self.dormant = count  # slots still DORMANT

    def __getitem__(self, index: Any) -> Any:
        node = list.__getitem__(self, index)
        if node is DORMANT:
            if index < 0:
                index += len(self)
            node = self.wake(index)
            list.__setitem__(self, index, node)
            self.dormant -= 1
        elif index.__class__ is slice:
            return [self[i] for i in range(*index.indices(len(self)))]
        return node

    def __setitem__(self, index: Any, node: Any) -> None:
        if index.__class__ is not slice and list.__getitem__(self, index) is DORMANT:
            self.dormant -= 1  # placed (or taken offline) before it was built
        list.__setitem__(self, index, node)

    def __iter__(self) -> Iterator[Any]:
        for addr in range(len(self)):
            yield self[addr]

    def __reduce__(self) -> tuple:
        """Pickled as it stands (experiments/checkpoint.py): pickle would otherwise walk the
        list through `__iter__` and build every dormant node."""
        return _lazy_nodes, (list(list.__iter__(self)), self.wake, self.dormant)

    def built(self, addr: int) -> bool:
        """Whether the node at `addr` has been built (or the slot was set otherwise)."""
        return list.__getitem__(self, addr) is not DORMANT


class LazyDriver(SimDriver):
    """A SimDriver that can hold a converged population whose nodes are built on first use."""

    def add_dormant(self, count: int, wake: Callable[[int], Any], deadline: float) -> None:
        """Attach `count` nodes at addresses 0..count-1, each built by `wake(addr)` when first
        needed. Each must be as `add` leaves it: nothing to send, no event, its timer due at
        `deadline` (`wake` may check it). One event at `deadline` stands for their timers."""
        if self.nodes:
            raise ValueError("dormant nodes take the first addresses")
        self.nodes = LazyNodes(count, wake)
        self._armed = array("d", [deadline]) * count
        self._later(max(0.0, deadline - self.env.now), self._fire_block, count, deadline)

    def _fire_block(self, count: int, deadline: float) -> None:
        """The first timers of the dormant population, in address order (`_fire` each)."""
        armed = self._armed
        for addr in range(count):
            if armed[addr] == deadline:
                self._fire(addr, deadline)


def attach_lazily(
    driver: LazyDriver,
    tables: Any,
    make_node: Callable[[int], Any],
    round_trip: Callable[[int, int], float] | None = None,
    samples: int = 4,
) -> None:
    """`load_converged`'s nodes, built on first use: node i is `make_node(i)` with table
    `tables.row(i)` loaded at time 0 and the round trips to its `samples` last entries (the
    join's, `round_trip(a, b)` seconds). Node 0 is built once first to read the deadline of
    its timer, which every node shares (the table's refresh; `wake` checks it)."""

    def wake(index: int) -> Any:
        node = make_node(index)
        entries, sizes = tables.row(index)
        node.routing.table.load(entries, sizes, 0.0)
        if round_trip is not None:
            for handle in entries[-samples:]:
                node.routing.observe_round_trip(round_trip(index, handle))
        if node.get_timer() != deadline:
            raise RuntimeError(f"node {index} would arm its timer at {node.get_timer()}, "
                               f"not {deadline}: it cannot be built lazily")
        return node

    first = make_node(0)
    entries, sizes = tables.row(0)
    first.routing.table.load(entries, sizes, 0.0)
    deadline = first.get_timer()
    if deadline is None:
        raise ValueError("lazily built nodes need a timer (the table's refresh)")
    del first
    driver.add_dormant(len(tables), wake, deadline)


def _lazy_nodes(slots: list, wake: Callable[[int], Any], dormant: int) -> LazyNodes:
    nodes = LazyNodes(0, wake)
    list.extend(nodes, slots)
    nodes.dormant = dormant
    return nodes
