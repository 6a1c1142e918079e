"""Latency models for the simulated network: one-way delay in seconds between two addresses.

Every model has the same small surface: `add_node(rng)` places the next address (0, 1, 2, ...)
and `delay(src, dst)` is the one-way delay of one datagram. Per-node state lives in flat arrays
(`array`/numpy), never in an object per node, so a million nodes cost a few tens of MB.

- `ConstantLatency`: every datagram takes the same time (unit tests).
- `CoordinateLatency`: nodes on a unit square (`surface="plane"`) or on a sphere
  (`surface="sphere"`, great-circle distance), each behind an access link.
- `TopologyLatency`: a router-level graph built with networkx (Waxman or Barabási–Albert, or
  one you pass); nodes hang off routers through access links; router-to-router delays are the
  shortest paths, computed once into a numpy matrix.
- `SiteMatrixLatency`: a given delay matrix between sites (e.g. measured on the namespace
  testbed), nodes spread over the sites round-robin, ~0 delay inside a site.
- `JitteredLatency`: wraps any model and adds a random extra delay to every datagram.

`MODELS` maps the names the study and the command line use to zero-argument factories. The
parameters and their sources are documented in docs/simulation.md.
"""

from __future__ import annotations

import functools
import math
from array import array
from random import Random
from typing import Any

import numpy as np


class ConstantLatency:
    """Every datagram takes the same time (the model of unit tests)."""

    def __init__(self, one_way: float = 0.05):
        self.one_way = one_way

    def add_node(self, rng: Random) -> None:  # nothing per node
        pass

    def add_median_node(self) -> None:  # every place is the median
        pass

    def delay(self, src: int, dst: int) -> float:
        return self.one_way


class CoordinateLatency:
    """Nodes on a unit square or a sphere, each with an access-link delay.

    one-way delay = access[src] + access[dst] + distance * span, where access delays are
    exponential with mean `access_mean` (last-mile links differ a lot: DSL, cable, fibre).

    - plane (the default): positions uniform on the unit square, distance Euclidean; `span` is
      the delay of one unit. Defaults (span 80 ms, access 5 ms) give a median RTT of about
      100 ms between random pairs (median distance ~0.52).
    - sphere: positions uniform on a sphere, distance the great-circle angle divided by pi, so
      `span` is the one-way delay between antipodes. Light in fibre (200,000 km/s) needs 100 ms
      for the 20,015 km to the antipode; the default of 80 ms (an effective 250,000 km/s)
      compensates for uniform placement, which puts more pairs on opposite sides of the earth
      than the real, clustered population of peers, and gives a median RTT of about 100 ms
      between random pairs (median angle pi/2). Set `span=0.1` for straight fibre.

    Storage: 24 bytes a node on the plane (x, y, access), 32 on the sphere (unit vector, access).
    """

    def __init__(self, span: float = 0.080, access_mean: float = 0.005, surface: str = "plane"):
        if surface not in ("plane", "sphere"):
            raise ValueError("surface must be 'plane' or 'sphere'")
        self.surface = surface
        self.span = span
        self.access_mean = access_mean
        self._x = array("d")
        self._y = array("d")
        self._z = array("d") if surface == "sphere" else None
        self._access = array("d")
        if surface == "sphere":
            self.delay = self._sphere_delay  # type: ignore[method-assign]

    def add_node(self, rng: Random) -> None:
        if self._z is None:
            self._x.append(rng.random())
            self._y.append(rng.random())
        else:
            # uniform on the sphere: z uniform in [-1, 1], longitude uniform (Archimedes)
            z = 2.0 * rng.random() - 1.0
            phi = 2.0 * math.pi * rng.random()
            r = math.sqrt(max(0.0, 1.0 - z * z))
            self._x.append(r * math.cos(phi))
            self._y.append(r * math.sin(phi))
            self._z.append(z)
        self._access.append(rng.expovariate(1.0 / self.access_mean))

    def position(self, node: int) -> tuple[float, ...]:
        """Where `node` sits: (x, y) on the plane, a unit vector (x, y, z) on the sphere."""
        if self._z is None:
            return (self._x[node], self._y[node])
        return (self._x[node], self._y[node], self._z[node])

    def add_median_node(self, access: float = 0.0) -> None:
        """Place the next address at the coordinate-wise median of the nodes placed so far
        (a server in a well-connected data centre: access delay `access`, default none).
        On the sphere the median vector is projected back onto the surface."""
        if not self._access:
            raise ValueError("place the nodes before their median")
        x, y = float(np.median(self._x)), float(np.median(self._y))
        if self._z is None:
            self._x.append(x)
            self._y.append(y)
        else:
            z = float(np.median(self._z))
            norm = math.sqrt(x * x + y * y + z * z) or 1.0
            self._x.append(x / norm)
            self._y.append(y / norm)
            self._z.append(z / norm)
        self._access.append(access)

    def delay(self, src: int, dst: int) -> float:
        x, y = self._x, self._y
        return (
            self._access[src]
            + self._access[dst]
            + math.hypot(x[src] - x[dst], y[src] - y[dst]) * self.span
        )

    def _sphere_delay(self, src: int, dst: int) -> float:
        return self._access[src] + self._access[dst] + self.angle(src, dst) / math.pi * self.span

    def angle(self, a: int, b: int) -> float:
        """Great-circle angle between two nodes on the sphere, in radians (0 .. pi)."""
        x, y, z = self._x, self._y, self._z
        dot = x[a] * x[b] + y[a] * y[b] + z[a] * z[b]
        return math.acos(1.0 if dot > 1.0 else -1.0 if dot < -1.0 else dot)


def _waxman(routers: int, seed: int) -> Any:
    """A Waxman graph (the GT-ITM/BRITE style of router-level topology) on the unit square:
    edge probability beta * exp(-d / (alpha * L)), about 4 links per router."""
    import networkx as nx

    return nx.waxman_graph(routers, beta=0.12, alpha=0.06, seed=seed)


def _barabasi_albert(routers: int, seed: int) -> Any:
    """A Barabási–Albert graph (preferential attachment, 2 links per new router: the
    power-law degrees of the AS-level internet), routers placed uniformly on the unit square."""
    import networkx as nx

    graph = nx.barabasi_albert_graph(routers, 2, seed=seed)
    place = Random(seed)
    for router in graph.nodes:
        graph.nodes[router]["pos"] = (place.random(), place.random())
    return graph


GRAPHS = {"waxman": _waxman, "barabasi_albert": _barabasi_albert}
# seconds per unit of link length, calibrated to a median RTT of ~100 ms between random pairs at
# 1,000 routers (Barabási–Albert links join routers anywhere on the square, so paths are longer)
GRAPH_SPANS = {"waxman": 0.048, "barabasi_albert": 0.021}


def shortest_delays(graph: Any, weight: str = "delay") -> np.ndarray:
    """All-pairs shortest-path delays of a connected graph with nodes 0 .. n-1, as an n x n
    float64 matrix (Floyd–Warshall, vectorised: ~0.1 s for 500 routers, ~1 s for 1,000)."""
    n = graph.number_of_nodes()
    matrix = np.full((n, n), np.inf)
    np.fill_diagonal(matrix, 0.0)
    for u, v, d in graph.edges(data=weight):
        if d < matrix[u, v]:
            matrix[u, v] = matrix[v, u] = d
    for k in range(n):
        np.minimum(matrix, matrix[:, k, None] + matrix[None, k, :], out=matrix)
    if np.isinf(matrix).any():
        raise ValueError("the router graph is not connected")
    return matrix


class TopologyLatency:
    """A router-level graph: nodes hang off routers; delay follows shortest router paths.

    one-way delay = access[src] + access[dst] + paths[router[src], router[dst]]

    The graph is built on the first `add_node` (seeded from the study's generator, so a seed
    reproduces it) unless one is given: `graph` is "waxman", "barabasi_albert", or a networkx
    graph whose edges carry a `delay` attribute (seconds), e.g. a measured topology. Generated
    graphs place routers on the unit square; a link's delay is its length * `span` plus
    `hop_delay` (forwarding and queueing in the router); `span` defaults to the graph's entry in
    GRAPH_SPANS. Only the largest connected component
    is kept. Nodes attach to a router chosen uniformly at random, through an access link with
    exponential delay (mean `access_mean`). Defaults give a median RTT of about 100 ms.

    Storage: the routers x routers matrix once (8 MB for 1,000 routers), then 12 bytes a node.
    """

    def __init__(
        self,
        routers: int = 1000,
        graph: Any = "waxman",
        span: float | None = None,
        hop_delay: float = 0.0005,
        access_mean: float = 0.005,
    ):
        if isinstance(graph, str) and graph not in GRAPHS:
            raise ValueError(f"graph must be one of {', '.join(GRAPHS)} or a networkx graph")
        if routers < 2:
            raise ValueError("a topology needs at least 2 routers")
        self.routers = routers
        self.graph: Any = graph
        if span is None:
            span = GRAPH_SPANS.get(graph if isinstance(graph, str) else "", GRAPH_SPANS["waxman"])
        self.span = span
        self.hop_delay = hop_delay
        self.access_mean = access_mean
        self.paths: np.ndarray | None = None  # router x router one-way delays, seconds
        self._flat: Any = None
        self._n = 0
        self._router = array("i")
        self._access = array("d")

    def build(self, seed: int) -> None:
        """Make the router graph (unless given) and precompute its shortest paths."""
        import networkx as nx

        graph = self.graph
        if isinstance(graph, str):
            graph = GRAPHS[graph](self.routers, seed)
            span, hop = self.span, self.hop_delay
            for u, v in graph.edges:
                (x1, y1), (x2, y2) = graph.nodes[u]["pos"], graph.nodes[v]["pos"]
                graph.edges[u, v]["delay"] = math.hypot(x1 - x2, y1 - y2) * span + hop
        if graph.number_of_nodes() and not nx.is_connected(graph):
            graph = graph.subgraph(max(nx.connected_components(graph), key=len))
        self.graph = nx.convert_node_labels_to_integers(graph, ordering="sorted")
        self.paths = shortest_delays(self.graph)
        self._n = self.paths.shape[0]
        self._flat = memoryview(self.paths.reshape(-1))  # indexing yields Python floats

    def add_node(self, rng: Random) -> None:
        if self.paths is None:
            self.build(rng.getrandbits(32))
        self._router.append(rng.randrange(self._n))
        self._access.append(rng.expovariate(1.0 / self.access_mean))

    def router_of(self, node: int) -> int:
        return self._router[node]

    def add_median_node(self, access: float = 0.0) -> None:
        """Place the next address at the router whose median delay to the nodes' routers is
        least (the graph's 1-median over the population), with access delay `access`."""
        if not self._router:
            raise ValueError("place the nodes before their median")
        used = np.asarray(self._router, dtype=np.int64)
        best = int(np.argmin(np.median(self.paths[:, used], axis=1)))
        self._router.append(best)
        self._access.append(access)

    def delay(self, src: int, dst: int) -> float:
        router = self._router
        return (
            self._access[src]
            + self._access[dst]
            + self._flat[router[src] * self._n + router[dst]]
        )


class JitteredLatency:
    """Any model plus per-datagram jitter: delay = base.delay(src, dst) * (1 + X), where X is
    exponential with mean `jitter` (0.1: on average 10% more than the path's delay).

    The extra delay scales with the pair's path (a longer path crosses more queues), and every
    datagram draws its own, so two datagrams between one pair can arrive out of order; the
    routing layer does not care (each request has its own response), a media stream's jitter
    buffer does. Draws come from their own generator, seeded by the study: a seed reproduces
    every delay, and the rest of the run draws the same numbers as without jitter.
    """

    def __init__(self, base: Any, jitter: float, rng: Random):
        if jitter < 0:
            raise ValueError("jitter must be >= 0")
        self.base = base
        self.jitter = jitter
        self.rng = rng
        self._rate = 1.0 / jitter if jitter else math.inf

    def add_node(self, rng: Random) -> None:
        self.base.add_node(rng)

    def add_median_node(self) -> None:
        self.base.add_median_node()

    def delay(self, src: int, dst: int) -> float:
        # rng.expovariate(rate), inline (random.Random's formula, so the same draws and
        # floats): one call less for every datagram (issue 15 item 2)
        return self.base.delay(src, dst) * (1.0 - math.log(1.0 - self.rng.random()) / self._rate)


class SiteMatrixLatency:
    """Nodes grouped into sites with a given one-way delay matrix between sites, e.g. the delays
    measured between the namespaces of a testbed (kadtalk.experiments.testbed), where several
    nodes share one host: node i sits at site i % sites, and datagrams between two nodes of one
    site take `intra` (a host's loopback: ~0).

    `matrix[a][b]` is the one-way delay in seconds from site a to site b (the diagonal is
    ignored). No randomness: `add_node` draws nothing from the study's generator.
    """

    def __init__(self, matrix: Any = None, intra: float = 0.0):
        if matrix is None:
            raise ValueError("the site-matrix model needs a delay matrix: pass "
                             "run_lookup_study(..., latency_model=SiteMatrixLatency(matrix))")
        self.matrix = np.asarray(matrix, dtype=float)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != self.matrix.shape[1] or not len(self.matrix):
            raise ValueError("the delay matrix must be square and non-empty")
        self.sites = self.matrix.shape[0]
        self.intra = intra
        self._rows = [list(map(float, row)) for row in self.matrix]
        for site in range(self.sites):
            self._rows[site][site] = intra
        self._n = 0

    def add_node(self, rng: Random) -> None:  # node i sits at site i % sites: nothing drawn
        self._n += 1

    def site_of(self, node: int) -> int:
        return node % self.sites

    def delay(self, src: int, dst: int) -> float:
        return self._rows[src % self.sites][dst % self.sites]


MODELS = {
    "constant": ConstantLatency,
    "coordinate": CoordinateLatency,
    "sphere": functools.partial(CoordinateLatency, surface="sphere"),
    "topology": TopologyLatency,
    "site-matrix": SiteMatrixLatency,  # needs its matrix: run_lookup_study(latency_model=...)
}
