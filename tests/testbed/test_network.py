"""Delay, loss and NAT behaviour of the testbed, measured with plain UDP sockets."""

from __future__ import annotations

import json
import math
import statistics
import subprocess

import pytest

from kadtalk.experiments.testbed import CoordinateDelays

from .conftest import standard_nat_layout

# The relay holds each datagram at least its delay; scheduling and Python on both ends add a
# little more, and more on a loaded machine (+0.9 ms a direction idle, +1.5 ms seen under load).
EARLY_MS = 0.5  # a round trip may not be shorter than configured (clock granularity aside)
LATE_MS = 10.0  # nor longer by more than this: the delay is applied once, not twice or lost


def _three_hosts(tb):
    for name in ("a", "b", "c"):
        tb.public(name)


def test_round_trip_time_matches_the_configured_delays(make_testbed):
    model = CoordinateDelays(seed=7)
    tb = make_testbed(delay=model, build=_three_hosts)
    servers = [tb.popen(n, tb.python_argv("-m", "kadtalk.experiments.testbed", "echo", "--port", "9000"),
                        stdout=subprocess.PIPE, text=True) for n in ("b", "c")]
    for server in servers:
        assert server.stdout.readline().strip() == "ready"
    targets = [f"{tb.host(n).address}:9000" for n in ("b", "c")]
    out = tb.run("a", tb.python_argv("-m", "kadtalk.experiments.testbed", "probe", "--count", "15",
                                     *sum((["--to", t] for t in targets), [])))
    rtts = json.loads(out.stdout)
    for site, target in ((1, targets[0]), (2, targets[1])):
        expected = (tb.delays[0][site] + tb.delays[site][0]) * 1000
        measured = statistics.median(r for r in rtts[target] if r is not None)
        assert expected - EARLY_MS <= measured <= expected + LATE_MS, (expected, rtts[target])
        assert expected > 10  # the model gives real delays, not ~0


def test_loss_rate_matches_the_configured_probability(make_testbed):
    loss, count = 0.1, 2000
    tb = make_testbed(loss=loss, build=_three_hosts)
    sender, sink = tb.agent("a"), tb.agent("b")
    sink.bind(9100)
    sender.bind(9101)
    sender.ask("blast", port=9101, to=f"{tb.host('b').address}:9100", count=count)
    received = sink.ask("sink", port=9100, first=5.0, idle=0.5)["count"]
    lost = (count - received) / count
    sd = math.sqrt(loss * (1 - loss) / count)
    assert abs(lost - loss) < 5 * sd, (lost, loss)  # five standard deviations: ~1 in 10^6 flakes


def test_filtering_nat_admits_only_replies_from_contacted_endpoints(nat_testbed):
    tb = nat_testbed
    inside, pub1, pub2 = tb.agent("hf"), tb.agent("pub1"), tb.agent("pub2")
    inside.bind(5000)
    pub1.bind(6000)
    pub1.bind(6001)
    pub2.bind(6000)
    inside.send(5000, f"{tb.host('pub1').address}:6000", "out")
    source, data = pub1.recv(6000, timeout=5)
    assert data == "out"
    assert source.split(":")[0] == tb.nats["natf"].address  # seen as the NAT's outside address
    pub1.send(6000, source, "reply")
    assert inside.recv(5000, timeout=5) == (f"{tb.host('pub1').address}:6000", "reply")
    pub2.send(6000, source, "stranger")  # another host: filtered
    pub1.send(6001, source, "other port")  # the contacted host, another port: filtered
    pub1.send(6000, source, "again")  # sent last: the only one that arrives
    assert inside.recv(5000, timeout=5) == (f"{tb.host('pub1').address}:6000", "again")
    assert inside.recv(5000, timeout=0.3) is None


def test_full_cone_nat_admits_anyone_after_the_host_sent_once(nat_testbed):
    tb = nat_testbed
    inside, pub1, pub2, other = tb.agent("hc"), tb.agent("pub1"), tb.agent("pub2"), tb.agent("hf")
    inside.bind(5000)
    pub1.bind(6000)
    pub2.bind(6000)
    other.bind(5001)
    inside.send(5000, f"{tb.host('pub1').address}:6000", "out")
    source, data = pub1.recv(6000, timeout=5)
    assert data == "out" and source == f"{tb.nats['natc'].address}:5000"  # port preserved
    pub2.send(6000, source, "stranger")
    assert inside.recv(5000, timeout=5) == (f"{tb.host('pub2').address}:6000", "stranger")
    other.send(5001, source, "from behind the other NAT")
    got = inside.recv(5000, timeout=5)
    assert got is not None and got[0].split(":")[0] == tb.nats["natf"].address
