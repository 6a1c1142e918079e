"""The simulated world of a study: one builder for every study and for the testbed comparison.

`SimWorld(spec)` draws from `Random(spec.seed)` in one fixed order, so a seed reproduces a run
and a study can draw what another draws without running it (`Plan`):

1. node IDs (`unique_ids`), 2. each node's place in the latency model, 3. the network's
generator (loss), 4. the nodes' shared generator, 5. with the fast bootstrap, the tables' seed;
after that the study's workload (experiments/harness/workload.py), and during a run with
protocol joins, each newcomer's choice of a bootstrap node. Realism features (churn, NAT,
jitter, traffic) draw from generators of their own (experiments/realism.py).

`spec` is a study's parameters (a LookupStudy, a CallStudy...): nodes, seed, k, alpha,
request_timeout, latency, loss, wire_mode, join_interval, settle, refresh_on_join, bootstrap
and the realism fields. Every node is the real `Node` on the SimPy driver.
"""

from __future__ import annotations

from random import Random
from typing import Any, Callable

import simpy

from kadtalk.experiments import realism
from kadtalk.experiments.harness.recorder import Progress
from kadtalk.node.routing.events import Joined
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node
from kadtalk.node.upkeep import JOIN_RETRY_DELAY
from kadtalk.sim.bootstrap import ConvergedTables
from kadtalk.sim.environment import CountingEnvironment
from kadtalk.sim.lazy import LazyDriver, attach_lazily
from kadtalk.sim.network import make_network
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver

# How tables converge: every node joins through the protocol, or tables are computed by
# sim/bootstrap.py as the protocol's join leaves them ("fast") or as uptime alone would.
BOOTSTRAPS = ("protocol", "fast", "fast-uptime")

EventHandler = Callable[[int, Any], None]


def unique_ids(count: int, rng: Random) -> list[int]:
    """`count` distinct random 160-bit IDs (stand-ins for SHA-1 of public keys)."""
    seen: set[int] = set()
    ids = []
    while len(ids) < count:
        node_id = rng.getrandbits(160)
        if node_id not in seen:
            seen.add(node_id)
            ids.append(node_id)
    return ids


# Above this many nodes a study hands message objects across instead of encoded datagrams
# (transport/sim.py `wire`: the same results, less time and memory).
BYTES_UP_TO = 2000


def wire_mode(nodes: int, wire: str = "auto") -> str:
    """The driver's wire form for a world of `nodes`: `wire` unless it is "auto"."""
    if wire != "auto":
        return wire
    return "bytes" if nodes <= BYTES_UP_TO else "objects"


def simulated_network(
    latency: Any,
    rng: Random,
    on_event: EventHandler | None,
    wire: str,
    loss: float = 0.0,
    hook: Any = None,
    nat: Any = None,
    tap: Any = None,
    traversal: bool = False,
) -> tuple[CountingEnvironment, Any, SimDriver]:
    """The environment, network (sim/network.py `make_network`) and driver of a world whose
    nodes are placed in `latency` already; `rng` draws the network's losses."""
    env = CountingEnvironment()
    network = make_network(env, latency, rng, loss=loss, hook=hook, nat=nat, tap=tap)
    return env, network, SimDriver(env, network, on_event, wire=wire, traversal=traversal)


def at(env: simpy.Environment, when: float, action: Callable[[], None]) -> None:
    """Run `action` at simulated time `when`."""
    event = simpy.Timeout(env, when - env.now)
    event.callbacks.append(lambda _e: action())


JOIN_RTT_SAMPLES = 4  # round trips a loaded node starts with (`load_converged`)


def bucket_bits(settings: Any) -> int:
    """The b of b bits a hop (RoutingSettings.bucket_bits) the converged tables must be built
    with for nodes of these routing settings (1, the paper's table, where a setting has none)."""
    return getattr(settings, "bucket_bits", 1)


def load_converged(
    driver: SimDriver,
    tables: ConvergedTables,
    make_node: Callable[[int], Any],
    table_of: Callable[[int, Any, bytearray], tuple[Any, bytearray]] | None = None,
    progress: Progress | None = None,
    by_address: bool = False,
    round_trip: Callable[[int, int], float] | None = None,
) -> None:
    """Attach nodes 0..N-1 (`make_node(index)`) with the converged tables of sim/bootstrap.py,
    in address order; `table_of(index, entries, sizes)` may change a table first (a defence's
    limit). Nodes are built in the tables' cheapest order, as memory allows at 10^6, or in
    address order (`by_address`: the order the attack studies' figures were drawn in).

    `round_trip(a, b)` (seconds between addresses a and b) leaves each node with what its join
    would have measured: the round trips to its JOIN_RTT_SAMPLES nearest contacts, the last a
    join hears from (the lookups' slow time starts from them, as after a real join)."""
    n = len(tables)
    nodes: list[Any] = [None] * n
    order = (((i, tables.entries(i), tables.sizes(i)) for i in range(n)) if by_address
             else tables.tables())
    for done, (index, entries, sizes) in enumerate(order, 1):
        node = make_node(index)
        if table_of is not None:
            entries, sizes = table_of(index, entries, sizes)
        node.routing.table.load(entries, sizes, 0.0)
        if round_trip is not None:
            for handle in entries[-JOIN_RTT_SAMPLES:]:
                node.routing.observe_round_trip(round_trip(index, handle))
        nodes[index] = node
        if progress and (done % 10_000 == 0 or done == n):
            progress("join", done, n)
    tables.release()
    for node in nodes:
        driver.add(node)


class Plan:
    """The draws a world makes before its simulation starts, in their one order (SimWorld
    builds itself from a Plan): `rng` is then where the study's workload is drawn from, so a
    Plan alone replays a study's workload without simulating it. `latency` (optional) is placed
    as the world places it; a model that draws nothing (site-matrix) may be left out."""

    def __init__(self, seed: int, nodes: int, latency: Any = None, fast_bootstrap: bool = False):
        self.rng = rng = Random(seed)
        self.ids = unique_ids(nodes, rng)
        if latency is not None:
            for _ in range(nodes):
                latency.add_node(rng)
        self.network_seed = rng.getrandbits(64)
        self.node_seed = rng.getrandbits(64)
        self.tables_seed = rng.getrandbits(32) if fast_bootstrap else None


class SimWorld:
    """IDs, latency, realism, network, driver and nodes of one study.

    Build it, `attach(handler)` the study's event handler, `converge()` (schedules the joins or
    loads converged tables), draw the workload from `rng`, then run `env`.

    `ids_hook(ids)` may replace IDs after they are drawn (the call study gives the nodes that
    place or take calls the IDs of their key pairs). `new_node(addr, now)` builds the node at an
    address (default: a routing-only `Node`); it is used for the first start and for every
    return after churn. `traversal` lets NAT traversal datagrams carry wire addresses
    (transport/sim.py).

    Above `lazy_above` routing-only nodes on the fast bootstrap's join-rule tables, without
    churn or NAT (their bookkeeping reads every node), nodes are built on first use
    (sim/lazy.py: the same results). Below, 10^4 lookups reach most nodes anyway, and building
    them all at once is cheaper (at 10^5 they reached 59 %; at 10^6, 11 %).
    """

    lazy_above = 100_000

    def __init__(
        self,
        spec: Any,
        latency_model: Any = None,
        ids_hook: Callable[[list[int]], list[int]] | None = None,
        new_node: Callable[[int, float], Any] | None = None,
        traversal: bool = False,
    ):
        self.spec = spec
        latency = latency_model if latency_model is not None else realism.make_latency(spec)
        self.plan = plan = Plan(spec.seed, spec.nodes, latency, spec.bootstrap != "protocol")
        self.rng = plan.rng  # the workload's and the protocol joins' draws come next
        self.ids = ids_hook(plan.ids) if ids_hook is not None else plan.ids
        self.env = env = CountingEnvironment()
        self.base_latency = latency  # before jitter: where nodes sit
        self.latency = realism.with_jitter(spec, latency)
        self.realism = realism.World(spec, env, self.ids)  # only what the study switched on
        self.network = make_network(env, self.latency, Random(plan.network_seed), loss=spec.loss,
                                    nat=self.realism.nat, tap=self.realism.tap)
        self.registry = SharedRegistry(self.ids)
        self.settings = RoutingSettings(
            k=spec.k,
            alpha=spec.alpha,
            request_timeout=spec.request_timeout,
            refresh_on_join=spec.refresh_on_join,
        )
        self.handlers: list[EventHandler] = []
        self.lazy = (spec.nodes > self.lazy_above and new_node is None and spec.bootstrap == "fast"
                     and not self.realism.churning and self.realism.nat is None)
        self.driver = (LazyDriver if self.lazy else SimDriver)(
            env, self.network, self._on_event, wire=spec.wire_mode, traversal=traversal)
        # One generator for all nodes: the event order is deterministic, so runs still
        # reproduce, and a Random per node would cost 2.5 KB each.
        self.node_rng = Random(plan.node_seed)
        self.new_node = new_node or self.routing_node
        self.joined: list[int] = [0]  # addresses that finished joining; node 0 starts the network
        self.progress: Progress | None = None
        self.start = 0.0  # when the workload may begin (tables converged, settled)

    # -- nodes ----------------------------------------------------------------------------------

    def routing_node(self, addr: int, now: float) -> Node:
        return Node(self.ids[addr], self.registry, self.node_rng, self.settings, now)

    def attach(self, handler: EventHandler) -> None:
        """Every event goes to `handler` (a Joined after the world has recorded it)."""
        self.handlers.append(handler)

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` at simulated time `when`."""
        at(self.env, when, action)

    def command(self, addr: int, action: Callable[[Any, float], Any]) -> Any:
        """Give the node at `addr` a command (`action(node, now)`) and send what it queued."""
        result = action(self.driver.nodes[addr], self.env.now)
        self.driver.service(addr)
        return result

    # -- convergence ----------------------------------------------------------------------------

    def converge(self, progress: Progress | None = None, running: dict | None = None) -> float:
        """Schedule the protocol joins or load converged tables; start churn. Returns when the
        workload may begin. `running` is the study's table of unfinished work keyed by
        (address, ...) that a departing node's entries leave (churn)."""
        spec = self.spec
        self.progress = progress
        self.realism.attach(self.driver, lambda addr: self.new_node(addr, self.env.now),
                            running if running is not None else {}, self.joined, self.registry)
        if spec.bootstrap != "protocol":
            self._converge_fast(self.plan.tables_seed)
            self.joined[:] = range(spec.nodes)
            self.start = max(1.0, spec.settle)  # churn, if any, runs from 0: tables meet it first
        else:
            for index in range(spec.nodes):
                self.at(index * spec.join_interval, lambda index=index: self._start_node(index))
            self.start = (spec.nodes - 1) * spec.join_interval + spec.settle
        self.realism.start_churn(self.start - spec.settle)
        return self.start

    def _converge_fast(self, seed: int) -> None:
        """Attach every node with the converged table of sim/bootstrap.py (node i joined i-th)."""
        spec = self.spec
        rule = "uptime" if spec.bootstrap == "fast-uptime" else "join"
        tables = ConvergedTables(self.ids, spec.k, rule=rule, spread=min(spec.alpha, spec.k),
                                 seed=seed, store="rows" if self.lazy else "flat",
                                 bucket_bits=bucket_bits(self.settings))
        latency = self.base_latency
        if self.lazy:
            attach_lazily(self.driver, tables, lambda index: self.new_node(index, 0.0),
                          round_trip=lambda a, b: latency.delay(a, b) + latency.delay(b, a),
                          samples=JOIN_RTT_SAMPLES)
            if self.progress:
                self.progress("join", len(tables), len(tables))
            return
        load_converged(self.driver, tables, lambda index: self.new_node(index, 0.0),
                       progress=self.progress,
                       round_trip=lambda a, b: latency.delay(a, b) + latency.delay(b, a))

    def _start_node(self, index: int) -> None:
        addr = self.driver.add(self.new_node(index, self.env.now))
        if index:
            self.join_through_known(addr)

    def join_through_known(self, addr: int) -> None:
        """Join through a random node that has finished joining (as a newcomer is told of one)."""
        node = self.driver.nodes[addr]
        if node is None:
            return  # it left (churn) before trying again; it joins afresh when it comes back
        node.join([self.joined[self.rng.randrange(len(self.joined))]], self.env.now)
        self.driver.service(addr)

    def _on_event(self, addr: int, event: Any) -> None:
        if type(event) is Joined:
            self._joined(addr, event.success)  # the world's bookkeeping first; then the study's
        for handler in self.handlers:
            handler(addr, event)

    def _joined(self, addr: int, success: bool) -> None:
        if self.realism.handles_join(addr, success):
            return  # churn runs: the realism world keeps track of who is up and joined
        if not success:
            # Nobody answered (the bootstrap's reply was lost, say): a real newcomer tries
            # again through another known node; it never serves as a bootstrap meanwhile.
            self.at(self.env.now + JOIN_RETRY_DELAY, lambda: self.join_through_known(addr))
            return
        self.joined.append(addr)
        progress, nodes = self.progress, self.spec.nodes
        if progress and (len(self.joined) % 100 == 0 or len(self.joined) == nodes):
            progress("join", len(self.joined), nodes)

    # -- running --------------------------------------------------------------------------------

    def run_until(self, done: Callable[[], bool]) -> None:
        """Step the simulation until `done()` (or nothing is left to happen)."""
        self.env.run_while(lambda: not done())

    def extra_address(self, node: Any) -> int:
        """Attach a node beyond the population (a server): a public address, placed by the
        caller in the latency model first."""
        if self.realism.nat is not None:
            self.realism.nat.kinds.append(0)
        return self.driver.add(node)
