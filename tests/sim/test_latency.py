"""Latency models."""

import statistics
from random import Random

from kadtalk.sim.latency import MODELS, ConstantLatency, CoordinateLatency


def test_constant():
    model = ConstantLatency(0.02)
    model.add_node(Random(1))
    assert model.delay(0, 5) == model.delay(5, 0) == 0.02
    assert ConstantLatency().delay(1, 2) == 0.05


def test_models_registry():
    assert MODELS == {"constant": ConstantLatency, "coordinate": CoordinateLatency}


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
