"""The UDP routing benchmark against bmuller's kademlia: every adapter provides the common
interface, the plan's port ranges hold, and a small run of both parts reports every figure
(a smoke run on loopback, not timed)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from benchmarks.common import busy_udp_ports
from benchmarks.udp_routing import main
from benchmarks.udp_routing.config import HOST, SYSTEMS, build_parser, make_plan
from benchmarks.udp_routing.lookups import lookup_modes
from benchmarks.udp_routing.system import Client, System, adapter

pytest.importorskip("kademlia")


def free_port_base(plan_args: list[str]) -> int:
    """A --port-base whose whole range is free now (other tests bind loopback ports too)."""
    for base in range(30000, 60000, 1500):
        plan = make_plan(build_parser().parse_args([*plan_args, "--port-base", str(base)]))
        if not any(busy_udp_ports(HOST, plan.ports(system)) for system in SYSTEMS):
            return base
    pytest.skip("no free UDP port range on loopback")


def test_every_adapter_provides_the_interface():
    for system in SYSTEMS:
        module = adapter(system)
        assert isinstance(module, System), system
        assert module.LOOKUP_MODES and all(n >= 1 for n in module.LOOKUP_MODES.values())
        spec = module.load_spec(random.Random(1), [1, 2, 3])
        assert spec.system == system
        assert len({key for _, key in spec.requests}) == len(spec.requests)  # answers matchable
    assert [label for label, *_ in lookup_modes()] == [
        "kadtalk find_peer", "kadtalk find_closest", "kademlia crawl"]


def test_clients_provide_the_client_interface():
    async def started() -> list:
        clients = [await adapter(system).start_client() for system in SYSTEMS]
        for client in clients:
            client.close()
        return clients

    for system, client in zip(SYSTEMS, asyncio.run(started())):
        assert isinstance(client, Client), system


def test_plan_gives_each_system_its_own_port_range():
    plan = make_plan(build_parser().parse_args(["--port-base", "21000", "--nodes", "64"]))
    ranges = [set(plan.ports(system)) for system in SYSTEMS]
    assert not ranges[0] & ranges[1]
    # two servers, contacts, swarm; the floor's server in the first system's range
    assert [len(r) for r in ranges] == [2 + 200 + 64 + 1, 2 + 200 + 64]
    assert plan.floor_port() in ranges[0]
    with pytest.raises(SystemExit):
        make_plan(build_parser().parse_args(["--port-base", "65000"]))


def test_small_run_of_both_parts_reports_every_figure(tmp_path, capsys):
    sizes = ["--quick", "--repeat", "1", "--nodes", "16", "--lookups", "4"]
    out = tmp_path / "udp_routing.json"
    assert main([*sizes, "--port-base", str(free_port_base(sizes)), "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    figures = payload["figures"]
    assert list(figures) == [
        "(a) find-node answers/s, limits lifted",
        "(a) answers per server CPU-second, limits lifted",
        "(a) server CPU per answer, limits lifted",
        "(a) the floor: CPU per answer of kadtalk's UDP driver alone",
        "(a) CPU per answer above the floor, limits lifted", "(a) server CPU, limits lifted",
        "(a) load-generator CPU, limits lifted", "(a) contacts per answer, limits lifted",
        "(a) find-node answers/s, limits lifted, many IDs at one address",
        "(a) server CPU, many IDs at one address",
        "(a) find-node answers/s, default limits, many sources",
        "(a) share of what the limits allow", "(a) requests offered/s, many sources",
        "(a) contacts per answer, default limits", "(a) server CPU, default limits",
        *(f"(b) {mode} {row}" for mode in ("find_peer", "find_closest")
          for row in ("median time", "p90 time", "mean RPCs", "success")),
        "(b) client table after join",
    ]
    answers = figures["(a) find-node answers/s, limits lifted"]
    assert answers["ours"] > 0 and answers["baseline"] > 0
    assert figures["(a) contacts per answer, limits lifted"] == {
        **figures["(a) contacts per answer, limits lifted"], "ours": 20, "baseline": 20}
    # default limits: no more than the node's budget is answered: 1,000/s over the window plus
    # at most its burst (2,000), which the lead-in spends unless other processes keep the
    # server off the cores meanwhile (the bucket refills while it waits); 0.1 s for answers
    # already on the way
    from benchmarks.udp_routing.kadtalk_adapter import settings

    limited = figures["(a) find-node answers/s, default limits, many sources"]
    assert limited["ours"] > 0 and limited["baseline"] > 0
    budget = settings()
    reps = payload["details"]["throughput"]["limits"]["kadtalk"]["reps"]
    for rep in reps:
        assert 0 < rep["answered"] <= (budget.request_burst
                                       + budget.request_rate * (rep["seconds"] + 0.1))
    # every source answers the server's probes: the ones it probes for its cache (2 a full
    # bucket since 04aea03) and, for the rest, the validation probe its second cut answer
    # draws (protocol.md 5.4); the warm-up goes on until every source gets full answers, so
    # the row measures validated peers: 20 contacts (3 and 4.3-4.8 before the validation probe)
    warmup = payload["details"]["throughput"]["limits"]["kadtalk"]["warmup"]
    assert warmup["sources_full"] == payload["config"]["sources"]
    assert figures["(a) contacts per answer, default limits"] == {
        **figures["(a) contacts per answer, default limits"], "ours": 20, "baseline": 20}
    # 4,000/s offered against a 1,000/s budget: the excess is refused by the limits (counted
    # drops) or, on a host busy enough to starve the server, lost at its full socket buffer
    end = payload["details"]["throughput"]["limits"]["kadtalk"]["server_at_end"]
    refused = end["drops"].get("rate_limited", 0) + end["drops"].get("rate_limited_source", 0)
    assert refused + (end["socket_drops"] or 0) > 0
    assert payload["machine"]["heapq_events_per_s"] > 0
    # the floor: kadtalk's driver around a stand-in node, full 20-contact answers, and
    # "above the floor" is kadtalk's CPU per answer less the floor's, repetition by repetition
    floor = details_floor = payload["details"]["throughput"]["lifted"]["floor"]
    assert details_floor["contacts_per_answer"] == [20] * 8
    assert floor["reps"][0]["answered"] > 0 and floor["server_at_end"]["answered"] > 0
    floor_us = figures["(a) the floor: CPU per answer of kadtalk's UDP driver alone"]["ours"]
    above = figures["(a) CPU per answer above the floor, limits lifted"]
    per_answer = figures["(a) server CPU per answer, limits lifted"]
    assert floor_us > 0 and above["ours"] == pytest.approx(per_answer["ours"] - floor_us)
    assert figures["(b) find_closest success"]["ours"] == 100
    assert figures["(b) find_closest success"]["baseline"] == 0  # kademlia leaves out the key
    assert figures["(b) find_closest mean RPCs"]["baseline"] > 0
    details = payload["details"]
    assert set(details["throughput"]) == {"lifted", "many_ids", "limits"}
    assert set(details["lookups"]) == {"kadtalk find_peer", "kadtalk find_closest",
                                       "kademlia crawl", "swarms"}
    assert len(details["lookups"]["kademlia crawl"]["tables"]) == 2  # two crawl clients
    assert payload["config"]["nodes"] == 16 and payload["ratio"] == "kadtalk/kademlia"
    assert "UDP routing on 127.0.0.1" in capsys.readouterr().out


def test_node_cost_measures_the_node_and_the_encoding_it_compares(monkeypatch):
    """benchmarks.udp_routing.node_cost: positive CPU figures, and the kept-bytes encoding it
    times gives the very bytes of the node's encoder (it asserts that before timing)."""
    from benchmarks.udp_routing import node_cost

    monkeypatch.setattr(node_cost, "ROUNDS", 1)
    monkeypatch.setattr(node_cost, "PER_ROUND", 50)
    figures = asyncio.run(node_cost.measure())
    assert set(figures) == {"node_us_per_answer", "encode_us", "encode_kept_bytes_us"}
    assert all(0 < value < 1e6 for value in figures.values())
