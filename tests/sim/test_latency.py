"""Latency models."""

import statistics
from random import Random

import math

import networkx as nx
import pytest

from kadtalk.sim.latency import (
    MODELS,
    ConstantLatency,
    CoordinateLatency,
    JitteredLatency,
    TopologyLatency,
    shortest_delays,
)


def test_constant():
    model = ConstantLatency(0.02)
    model.add_node(Random(1))
    assert model.delay(0, 5) == model.delay(5, 0) == 0.02
    assert ConstantLatency().delay(1, 2) == 0.05


def test_models_registry():
    assert set(MODELS) == {"constant", "coordinate", "sphere", "topology", "site-matrix"}
    assert MODELS["constant"] is ConstantLatency and MODELS["coordinate"] is CoordinateLatency
    assert MODELS["topology"] is TopologyLatency
    sphere = MODELS["sphere"]()
    assert isinstance(sphere, CoordinateLatency) and sphere.surface == "sphere"


def _coords(n, seed=1):
    model = CoordinateLatency()
    rng = Random(seed)
    for _ in range(n):
        model.add_node(rng)
    return model


def test_coordinate_is_symmetric_positive_and_reproducible():
    a, b = _coords(50), _coords(50)
    for i in range(50):
        for j in range(0, 50, 7):
            assert a.delay(i, j) == a.delay(j, i) == b.delay(i, j)
            assert a.delay(i, j) > 0
    c = _coords(50, seed=2)
    assert any(a.delay(i, 0) != c.delay(i, 0) for i in range(50))


def test_coordinate_triangle_inequality_on_the_distance_part():
    model = _coords(30)
    span = model.span
    for i in range(30):
        for j in range(30):
            # delay - access = distance * span; at most sqrt(2) * span
            part = model.delay(i, j) - model._access[i] - model._access[j]
            assert -1e-12 <= part <= 2 ** 0.5 * span + 1e-12


def test_coordinate_median_rtt_about_100_ms():
    model = _coords(2000)
    rng = Random(9)
    rtts = []
    for _ in range(5000):
        i, j = rng.randrange(2000), rng.randrange(2000)
        if i != j:
            rtts.append(2 * model.delay(i, j))
    assert 0.080 <= statistics.median(rtts) <= 0.120


def _median_rtt(model, n=2000, pairs=5000, seed=1):
    rng = Random(seed)
    for _ in range(n):
        model.add_node(rng)
    pick = Random(9)
    rtts = []
    for _ in range(pairs):
        i, j = pick.randrange(n), pick.randrange(n)
        if i != j:
            rtts.append(2 * model.delay(i, j))
    return statistics.median(rtts)


def test_plane_draws_what_it_always_drew():
    """The plane's placement must not change: a study's rows depend on it."""
    model = _coords(3)
    rng = Random(1)
    x, y, a = rng.random(), rng.random(), rng.expovariate(1 / 0.005)
    assert (model._x[0], model._y[0], model._access[0]) == (x, y, a)


# -- sphere ----------------------------------------------------------------------------------------


def _sphere(n, seed=1, **kw):
    model = CoordinateLatency(surface="sphere", **kw)
    rng = Random(seed)
    for _ in range(n):
        model.add_node(rng)
    return model


def test_sphere_median_rtt_about_100_ms():
    assert 0.090 <= _median_rtt(CoordinateLatency(surface="sphere")) <= 0.110


def test_sphere_points_are_unit_vectors_and_uniform():
    model = _sphere(4000)
    zs = list(model._z)
    for i in range(0, 4000, 97):
        assert math.isclose(model._x[i] ** 2 + model._y[i] ** 2 + model._z[i] ** 2, 1.0, abs_tol=1e-12)
    # uniform on the sphere: z uniform on [-1, 1] (Archimedes), mean 0, variance 1/3
    assert abs(statistics.fmean(zs)) < 0.03
    assert abs(statistics.pvariance(zs) - 1 / 3) < 0.02
    # the median great-circle angle between random points is pi/2
    rng = Random(3)
    angles = [model.angle(rng.randrange(4000), rng.randrange(4000)) for _ in range(4000)]
    assert abs(statistics.median(angles) - math.pi / 2) < 0.06


def test_sphere_delay_is_great_circle_plus_access():
    model = _sphere(2, span=0.1, access_mean=0.004)
    model._x[0], model._y[0], model._z[0] = 1.0, 0.0, 0.0
    model._x[1], model._y[1], model._z[1] = -1.0, 0.0, 0.0  # antipodes
    access = model._access[0] + model._access[1]
    assert model.delay(0, 1) == pytest.approx(access + 0.1)
    model._x[1], model._y[1], model._z[1] = 0.0, 1.0, 0.0  # a quarter circle
    assert model.delay(0, 1) == pytest.approx(access + 0.05)
    assert model.delay(0, 0) == pytest.approx(2 * model._access[0])


def test_sphere_is_symmetric_and_obeys_the_triangle_inequality():
    model = _sphere(40)
    for i in range(40):
        for j in range(40):
            assert model.delay(i, j) == pytest.approx(model.delay(j, i))
            for m in range(0, 40, 13):
                assert model.angle(i, j) <= model.angle(i, m) + model.angle(m, j) + 1e-9


def test_surface_must_be_known():
    with pytest.raises(ValueError):
        CoordinateLatency(surface="torus")


# -- topology --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def waxman():
    model = TopologyLatency(routers=200)
    rng = Random(5)
    for _ in range(500):
        model.add_node(rng)
    return model


def test_topology_shortest_paths_match_networkx(waxman):
    graph = waxman.graph
    assert nx.is_connected(graph)
    assert waxman.paths.shape == (graph.number_of_nodes(),) * 2
    for source in range(0, graph.number_of_nodes(), 17):
        lengths = nx.single_source_dijkstra_path_length(graph, source, weight="delay")
        for target, length in lengths.items():
            assert waxman.paths[source, target] == pytest.approx(length, rel=1e-9, abs=1e-12)


def test_topology_delay_is_access_plus_router_path(waxman):
    for src, dst in ((0, 1), (7, 300), (499, 3)):
        expected = (waxman._access[src] + waxman._access[dst]
                    + waxman.paths[waxman.router_of(src), waxman.router_of(dst)])
        assert waxman.delay(src, dst) == pytest.approx(expected)
        assert waxman.delay(src, dst) == pytest.approx(waxman.delay(dst, src))
        assert type(waxman.delay(src, dst)) is float


def test_topology_is_seeded():
    def build(seed):
        model = TopologyLatency(routers=60)
        rng = Random(seed)
        for _ in range(20):
            model.add_node(rng)
        return model

    a, b, c = build(1), build(1), build(2)
    assert (a.paths == b.paths).all() and [a.delay(0, i) for i in range(20)] == [b.delay(0, i) for i in range(20)]
    assert a.paths.shape != c.paths.shape or not (a.paths == c.paths).all()


@pytest.mark.parametrize("graph", ["waxman", "barabasi_albert"])
def test_topology_median_rtt_about_100_ms(graph):
    assert 0.080 <= _median_rtt(TopologyLatency(routers=1000, graph=graph), n=1500, pairs=3000) <= 0.120


def test_topology_accepts_a_given_graph_and_keeps_its_largest_component():
    graph = nx.Graph()
    graph.add_edge("a", "b", delay=0.010)
    graph.add_edge("b", "c", delay=0.020)
    graph.add_edge("a", "c", delay=0.050)  # longer than a-b-c
    graph.add_edge("x", "y", delay=0.001)  # a separate island: dropped
    model = TopologyLatency(graph=graph, access_mean=1e-9)
    rng = Random(1)
    for _ in range(50):
        model.add_node(rng)
    assert model.graph.number_of_nodes() == 3
    assert sorted(model.paths.ravel().tolist()) == pytest.approx(sorted([0, 0, 0, .01, .01, .02, .02, .03, .03]))


def test_shortest_delays_rejects_a_disconnected_graph():
    graph = nx.Graph()
    graph.add_nodes_from([0, 1])
    with pytest.raises(ValueError):
        shortest_delays(graph)


def test_topology_validation():
    with pytest.raises(ValueError):
        TopologyLatency(graph="ring")
    with pytest.raises(ValueError):
        TopologyLatency(routers=1)


# -- jitter ----------------------------------------------------------------------------------------


def _jittered(seed, jitter=0.2):
    model = JitteredLatency(ConstantLatency(0.05), jitter, Random(seed))
    model.add_node(Random(1))
    return [model.delay(0, 1) for _ in range(20000)]


def test_jitter_is_deterministic_under_the_seed():
    assert _jittered(4) == _jittered(4)
    assert _jittered(4) != _jittered(5)


def test_jitter_distribution_is_exponential_relative_to_the_path():
    delays = _jittered(4, jitter=0.2)
    extra = [d / 0.05 - 1 for d in delays]
    assert min(extra) >= 0
    assert statistics.fmean(extra) == pytest.approx(0.2, rel=0.05)
    assert statistics.median(extra) == pytest.approx(0.2 * math.log(2), rel=0.05)


def test_jitter_reorders_datagrams_of_one_pair():
    """Independent delays per datagram: a later datagram can overtake an earlier one."""
    delays = _jittered(7)
    sent = [i * 0.001 for i in range(len(delays))]  # one datagram a millisecond
    arrivals = [s + d for s, d in zip(sent, delays)]
    assert any(a > b for a, b in zip(arrivals, arrivals[1:]))


def test_zero_jitter_is_the_base_model_and_negative_is_refused():
    base = _coords(5)
    model = JitteredLatency(base, 0.0, Random(1))
    assert model.delay(1, 2) == base.delay(1, 2)
    with pytest.raises(ValueError):
        JitteredLatency(base, -0.1, Random(1))


def test_site_matrix_latency_spreads_nodes_over_sites_round_robin():
    from kadtalk.sim.latency import SiteMatrixLatency

    model = SiteMatrixLatency([[9.0, 0.02, 0.03], [0.02, 9.0, 0.04], [0.03, 0.04, 9.0]], intra=1e-5)
    rng = Random(1)
    state = rng.getstate()
    for _ in range(7):
        model.add_node(rng)
    assert rng.getstate() == state  # draws nothing: the study's other draws stay the same
    assert model.delay(0, 1) == 0.02 and model.delay(4, 2) == 0.04  # node 4 sits at site 1
    assert model.delay(0, 3) == model.delay(2, 5) == 1e-5  # one site: the diagonal is `intra`
    with pytest.raises(ValueError):
        MODELS["site-matrix"]()  # needs its matrix
