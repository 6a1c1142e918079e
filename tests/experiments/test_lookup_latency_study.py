"""The lookup study's latency variants (issue 15 item 3): RoutingSettings overrides, urgent
lookups and round trips loaded for the fast bootstrap (`rtt_known`), without touching the plain
study's summary (its pinned digest covers every key)."""

from itertools import zip_longest

import pytest

from kadtalk.experiments.lookup import LookupStudy, run_lookup_study

SMALL = dict(nodes=300, lookups=60, seed=2, bootstrap="fast")


def test_the_plain_study_reports_no_latency_variant_figures():
    summary = run_lookup_study(LookupStudy(**SMALL)).summary
    assert "rtt_measured_share" not in summary


def test_round_trips_loaded_for_the_sources_steer_the_choice():
    plain = run_lookup_study(LookupStudy(**SMALL, routing=(("rtt_choice_bits", 2),)))
    known = run_lookup_study(LookupStudy(**SMALL, routing=(("rtt_choice_bits", 2),),
                                         rtt_known=1.0))
    # nothing measured before a source's first lookup in a fast-bootstrapped network; with
    # rtt_known the loaded round trips are what it starts with (read before loading: 0.0)
    assert plain.summary["rtt_measured_share"] == 0.0
    assert known.summary["rtt_measured_share"] == 1.0
    # the loaded round trips change which contacts are asked, so some lookups differ
    assert [r["latency_ms"] for r in plain.rows] != [r["latency_ms"] for r in known.rows]
    assert known.summary["median_ms"] < plain.summary["median_ms"]
    assert known.summary["success_rate"] == plain.summary["success_rate"] == 1.0


def test_the_measured_share_counts_the_round_trips_loaded_for_a_share():
    # each entry loaded with probability 0.6: 0.597-0.617 over seeds 1-5 (deterministic per
    # seed); the table's model round trips are not touched by the loading
    study = dict(SMALL, routing=(("rtt_choice_bits", 2),))
    known = run_lookup_study(LookupStudy(**study, rtt_known=0.6)).summary
    plain = run_lookup_study(LookupStudy(**study)).summary
    assert 0.5 < known["rtt_measured_share"] < 0.7
    assert known["table_rtt_ms"] == plain["table_rtt_ms"]


def test_urgent_lookups_ask_more():
    plain = run_lookup_study(LookupStudy(**SMALL)).summary
    urgent = run_lookup_study(LookupStudy(**SMALL, urgent=True)).summary
    assert urgent["rpcs_mean"] > plain["rpcs_mean"]


def test_rtt_known_is_a_share():
    with pytest.raises(ValueError):
        LookupStudy(**SMALL, rtt_known=1.5)


# PNS tests set cache_probes = 20 (replacement_cache): the node probes, and PNS considers, the
# newcomers of a full bucket only while its cache holds fewer than cache_probes.


def near_world(keep: int, jitter: float = 0.0, monkeypatch=None):
    """A 600-peer world (k = 8) built with `near` 30, and the newcomers each node met."""
    from dataclasses import replace

    from kadtalk.experiments import lookup

    study = LookupStudy(nodes=600, lookups=10, seed=3, bootstrap="fast", k=8, near=30,
                        jitter=jitter, routing=(("proximity", True), ("proximity_keep", keep),
                                                   ("cache_probes", 20)))
    world = lookup.ProximityWorld(study)
    world.settings = replace(world.settings, **dict(study.routing))
    met = {}  # node -> its newcomers per bucket, and (address, round trip) as it met them
    meet = lookup.meet_newcomers

    def recording(routing, buckets, round_trip, now, asks=0):
        seen = met[world.ids.index(routing.node_id)] = (buckets, [])

        def measured(addr):
            seen[1].append((addr, round_trip(addr)))
            return seen[1][-1][1]

        meet(routing, buckets, measured, now, asks=asks)

    monkeypatch.setattr(lookup, "meet_newcomers", recording)
    world.converge()
    return study, world, met


def reference_node(study, world, index, seen):
    """A real node holding the join's table of `index`, fed the same newcomers by messages: each
    answers a request of ours after its round trip, a lookup's for an entry, else a join's
    (which asks the newcomer's address directly; its answer admits it as a probe's does).
    Nothing else answers, so no other round trip is measured."""
    from random import Random

    from kadtalk.experiments.harness.world import JOIN_RTT_SAMPLES
    from kadtalk.node.routing.messages import RouteResponse
    from kadtalk.node.stack import Node
    from kadtalk.sim.bootstrap import ConvergedTables
    from kadtalk.sim.registry import SharedRegistry

    ids, delay = world.ids, world.base_latency.delay
    tables = ConvergedTables(ids, study.k, rule="join", spread=min(study.alpha, study.k),
                             seed=world.plan.tables_seed)
    node = Node(ids[index], SharedRegistry(ids), Random(1), world.settings, 0.0)
    entries = tables.entries(index)
    node.routing.table.load(entries, tables.sizes(index), 0.0)
    for handle in entries[-JOIN_RTT_SAMPLES:]:
        node.routing.observe_round_trip(delay(index, handle) + delay(handle, index))
    now = 0.0
    for addr, rtt in seen:
        if addr in node.routing.table:  # an entry: a lookup for its ID asks it first
            target = ids[addr]
            node.find_closest(target, now)
        else:  # a join asks the address as given (its answer admits it, as a probe's does)
            target = ids[index]
            # An earlier join's lookup may have asked this address too and, since only the
            # newcomers answer and no timer runs here, still wait: the answer would be taken
            # for that request and measured from its send time. Forget it first (by now it
            # would have timed out; the model's newcomer answers one request of ours).
            if node.routing._pending:
                node.routing._pending.pop((addr, target), None)
            node.join([addr], now)
        node.messages_to_send(now)
        now += rtt
        node.receive_message(RouteResponse(ids[addr], target, ()), addr, now)
        node.messages_to_send(now)
    return node


@pytest.mark.parametrize("keep,jitter", [(0, 0.0), (3, 0.3)])
def test_near_tables_are_what_a_real_routing_layer_leaves_after_the_same_newcomers(
        keep, jitter, monkeypatch):
    study, world, met = near_world(keep, jitter, monkeypatch)
    delay = world.base_latency.delay
    compared = oracle_wrong = 0
    for index in range(0, 600, 17):
        buckets, seen = met[index]
        if not buckets:
            continue
        assert [a for a, _ in seen] == [a for round_ in zip_longest(*buckets) for a in round_
                                        if a is not None]  # round robin over the buckets
        built = world.driver.nodes[index].routing.table
        node = reference_node(study, world, index, seen)
        table = node.routing.table
        assert table.bucket_count() == built.bucket_count()
        for c in range(table.bucket_count()):
            assert table.bucket(c) == built.bucket(c)  # same entries, same order
            assert table.replacements(c) == built.replacements(c)
        compared += 1
        for c in range(table.bucket_count()):  # the oracle kept the truly fastest; the node may
            kept = table.bucket(c)[keep:]      # drop a fast entry it never measured
            dropped = [h for h in table.replacements(c) if h not in table.bucket(c)]
            rtt = lambda h: delay(index, h) + delay(h, index)  # noqa: E731
            if kept and dropped and min(map(rtt, dropped)) < max(map(rtt, kept)):
                oracle_wrong += 1
    assert compared > 20
    assert oracle_wrong > 10
    if jitter:  # a measured round trip is the model's plus the run's jitter
        model = [delay(i, a) + delay(a, i) for i in met for a, _ in met[i][1]]
        measured = [r for i in met for _, r in met[i][1]]
        assert sum(measured) > 1.1 * sum(model) and all(m >= o for m, o in zip(measured, model))


def test_proximity_tables_shorten_lookups():
    # 2,000 peers: at 300 most lookups end in the source's own table, where nothing changes
    study = dict(nodes=2000, lookups=300, seed=2, bootstrap="fast", rtt_known=1.0,
                 routing=(("proximity", True), ("cache_probes", 20)))
    plain = run_lookup_study(LookupStudy(**study)).summary
    near = run_lookup_study(LookupStudy(**study, near=20)).summary
    assert near["median_ms"] < 0.9 * plain["median_ms"]
    assert near["success_rate"] == 1.0
    with pytest.raises(ValueError):
        LookupStudy(nodes=300, lookups=60, near=5)  # the protocol's joins build their own




def test_near_tables_built_on_first_use_give_the_same_run(monkeypatch):
    # Above SimWorld.lazy_above (10^5) a node is built, and meets its newcomers, when the run
    # first reaches it: each node's draws are its own, so the run is the eager one to the byte.
    from kadtalk.experiments.harness.world import SimWorld
    from kadtalk.experiments.lookup import WALL_CLOCK_FIELDS

    study = LookupStudy(nodes=1500, lookups=40, seed=4, bootstrap="fast", near=10, jitter=0.1,
                        rtt_known=0.6, routing=(("proximity", True), ("proximity_keep", 3),
                                                ("cache_probes", 20), ("rtt_choice_bits", 2),
                                                ("contact_slow", True)))
    monkeypatch.setattr(SimWorld, "lazy_above", 10**9)
    eager = run_lookup_study(study)
    monkeypatch.setattr(SimWorld, "lazy_above", 0)
    lazy = run_lookup_study(study)
    assert lazy.rows == eager.rows
    simulated = lambda s: {k: v for k, v in s.items()  # noqa: E731
                           if k not in WALL_CLOCK_FIELDS | {"sim_queue", "nodes_built"}}
    assert simulated(lazy.summary) == simulated(eager.summary)
    assert eager.summary["nodes_built"] == 1500
    assert 40 < lazy.summary["nodes_built"] < 1500  # only the nodes the lookups reached
    assert lazy.summary["median_ms"] > 0 and lazy.summary["success_rate"] == 1.0


def test_near_asks_measure_the_entries_a_lookup_into_the_range_asks_first():
    # With proximity_measured an entry never measured is never displaced: the sessions 7-9
    # build (no asks) measures an entry of the join's table only when it is drawn as a
    # newcomer, so it leaves that table nearly as it was; asking the bucket's 3 entries nearest
    # each lookup's target measures them as a running node does, and the slow ones go.
    from kadtalk.experiments.lookup import ProximityWorld
    from dataclasses import replace

    def tables(asks, proximity=True):
        study = LookupStudy(nodes=600, lookups=10, seed=3, bootstrap="fast", k=8, near=30,
                            near_asks=asks, routing=(("proximity", proximity),
                                                     ("proximity_measured", True),
                                                     ("cache_probes", 20)))
        world = ProximityWorld(study)
        world.settings = replace(world.settings, **dict(study.routing))
        world.converge()
        tables = [world.driver.nodes[i].routing.table for i in range(0, 600, 7)]
        return [[h for c in range(t.bucket_count()) for h in t.bucket(c)] for t in tables]

    join = tables(0, proximity=False)  # the newcomers go to the replacement caches only
    changed = [sum(len(set(j) - set(t)) for t, j in zip(tables(asks), join)) for asks in (0, 3)]
    assert changed[1] > 2 * changed[0]
    with pytest.raises(ValueError):
        LookupStudy(nodes=600, lookups=10, bootstrap="fast", near_asks=3)  # asks need near


def test_near_asks_ask_the_entries_nearest_each_lookups_target_first():
    from random import Random

    from kadtalk.experiments.lookup import NEAR_PER_LOOKUP, meet_newcomers
    from kadtalk.node.routing.layer import RoutingSettings
    from kadtalk.node.stack import Node
    from kadtalk.sim.registry import SharedRegistry

    own, far = 0, 1 << 159  # every other ID below sits in bucket 0
    ids = [own] + [far | (i << 100) for i in range(1, 40)]
    node = Node(own, SharedRegistry(ids), Random(1), RoutingSettings(k=8), 0.0)
    entries = list(range(1, 9))
    from array import array
    node.routing.table.load(array("l", entries), bytearray([8]), 0.0)
    newcomers = list(range(9, 9 + 2 * NEAR_PER_LOOKUP))
    asked = []

    def round_trip(addr):
        asked.append(addr)
        return 0.1

    meet_newcomers(node.routing, [newcomers], round_trip, 0.0, asks=2)
    nearest = lambda t: sorted(entries, key=lambda h: ids[h] ^ ids[t])[:2]  # noqa: E731
    first, second = newcomers[0], newcomers[NEAR_PER_LOOKUP]
    assert asked[:3] == nearest(first) + [first]
    at = 2 + NEAR_PER_LOOKUP
    assert asked[at:at + 3] == nearest(second) + [second]
    assert len(asked) == 4 + len(newcomers)
