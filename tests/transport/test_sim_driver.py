"""The SimPy driver: real nodes on a SimNetwork (latency, loss, routing hook), and its timers."""

import math
from random import Random

import pytest
import simpy

from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import REQUEST_SIZE, ROUTE_REQ, RouteRequest, RouteResponse
from kadtalk.node.stack import Node
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.network import SimNetwork
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver

ONE_WAY = 0.05
SETTINGS = RoutingSettings(refresh_on_join=False)


def is_request(payload) -> bool:
    return payload[0] == ROUTE_REQ if type(payload) is bytes else type(payload) is RouteRequest


class World:
    """n nodes joining one by one (through a random node that finished joining), then lookups."""

    def __init__(self, n, seed=1, hook=None, loss=0.0, wire="bytes", settings=SETTINGS, join_interval=0.05,
                 retry_joins=False):
        self.retry_joins = retry_joins
        self.retries = 0
        self.rng = Random(seed)
        ids = set()
        while len(ids) < n:
            ids.add(self.rng.getrandbits(160))
        self.ids = sorted(ids, key=lambda _: self.rng.random())
        self.env = simpy.Environment()
        self.net = SimNetwork(self.env, ConstantLatency(ONE_WAY), Random(seed + 1), loss=loss, hook=hook)
        self.registry = SharedRegistry(list(self.ids))
        self.driver = SimDriver(self.env, self.net, self.on_event, wire=wire)
        self.joined_events: dict[int, Joined] = {}
        self.completed: dict[tuple[int, int], LookupCompleted] = {}
        self.ready = [0]
        self.settings = settings
        for i in range(n):
            self.at(i * join_interval, lambda i=i: self.start(i))
        self.env.run(until=n * join_interval + 5.0)

    def on_event(self, addr, event):
        if type(event) is Joined:
            self.joined_events[addr] = event
            if event.success:
                self.ready.append(addr)  # later nodes join through nodes that did join
            elif self.retry_joins:
                self.retries += 1
                self.driver.nodes[addr].join([self.ready[self.rng.randrange(len(self.ready))]], self.env.now)
                self.driver.service(addr)
        else:
            assert type(event) is LookupCompleted
            self.completed[(addr, event.lookup_id)] = event

    def at(self, when, action):
        event = simpy.Timeout(self.env, when - self.env.now)
        event.callbacks.append(lambda _e: action())

    def start(self, i):
        node = Node(self.ids[i], self.registry, Random(i), self.settings, self.env.now)
        addr = self.driver.add(node)
        assert addr == i
        if i:
            node.join([self.ready[self.rng.randrange(len(self.ready))]], self.env.now)
            self.driver.service(i)

    def lookups(self, pairs, mode="peer", spacing=0.01):
        """Start lookups source -> target at `spacing` intervals; run until all are done."""
        keys = []
        start = self.env.now

        def go(source, target):
            node = self.driver.nodes[source]
            if mode == "peer":
                lookup_id = node.find_peer(self.ids[target], self.env.now)
            else:
                lookup_id = node.find_closest(self.ids[target], self.env.now)
            keys.append((source, lookup_id, target))
            self.driver.service(source)

        for i, (source, target) in enumerate(pairs):
            self.at(start + i * spacing, lambda s=source, t=target: go(s, t))
        self.env.run(until=start + len(pairs) * spacing + 30.0)
        assert len(keys) == len(pairs)
        return [(s, t, self.completed[(s, lid)]) for s, lid, t in keys]

    def random_pairs(self, count, avoid=()):
        n = len(self.ids)
        pairs = []
        while len(pairs) < count:
            s, t = self.rng.randrange(n), self.rng.randrange(n)
            if s != t and s not in avoid and t not in avoid:
                pairs.append((s, t))
        return pairs

    def drops(self, reason):
        return sum(node.drop_counts()[reason] for node in self.driver.nodes if node is not None)


def summary(results):
    return [(s, t, e.peer, e.hops, e.rpcs, e.timeouts, round(e.latency, 9)) for s, t, e in results]


# -- a healthy network -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world():
    return World(250, seed=11)


def test_every_node_joins(world):
    assert len(world.joined_events) == 249
    assert all(e.success and e.timeouts == 0 for e in world.joined_events.values())


def test_lookups_succeed(world):
    results = world.lookups(world.random_pairs(100))
    for source, target, event in results:
        assert event.peer == (world.ids[target], target)
        assert event.timeouts == 0
        # every round trip on this network takes exactly 2 * ONE_WAY
        rounds = event.latency / (2 * ONE_WAY)
        assert abs(rounds - round(rounds)) < 1e-6
        assert round(rounds) <= event.rpcs
    assert sum(e.hops for *_, e in results) / len(results) < math.log2(250)
    assert world.drops("unsolicited") == 0


def test_find_closest_returns_the_true_k_closest(world):
    results = world.lookups(world.random_pairs(20), mode="closest")
    for source, target, event in results:
        others = [a for a in range(len(world.ids)) if a != source]  # a node never lists itself
        expected = sorted(others, key=lambda a: world.ids[a] ^ world.ids[target])[:20]
        assert [addr for _, addr in event.closest] == expected


def test_bytes_and_objects_give_the_same_results():
    def run(wire):
        w = World(120, seed=5, wire=wire)
        joins = sorted((a, e.table_size, e.rpcs, e.finished) for a, e in w.joined_events.items())
        return joins, summary(w.lookups(w.random_pairs(40))), w.net.sent

    assert run("bytes") == run("objects")


def test_wire_must_be_bytes_or_objects():
    env = simpy.Environment()
    with pytest.raises(ValueError):
        SimDriver(env, SimNetwork(env, ConstantLatency(), Random(1)), wire="json")


# -- the routing hook ------------------------------------------------------------------------------


def test_node_unreachable_after_convergence():
    """Everything to X is dropped. Lookups of others succeed; the k-closest lookups around X ask X
    and time out; a find-peer lookup of X reports X's last known entry without asking X (the
    design's stop rule: a call's lookup ends as soon as the target's entry is known)."""
    cut = {"on": False}
    to_x = []
    x = 17

    def hook(src, dst, payload, delay):
        if cut["on"] and dst == x:
            to_x.append(payload)
            return []
        return [delay]

    w = World(200, seed=3, hook=hook)
    cut["on"] = True
    others = w.lookups(w.random_pairs(60, avoid={x}))
    assert all(e.peer == (w.ids[t], t) for _, t, e in others)

    to_x.clear()
    sources = [s for s in range(0, 200, 13) if s != x]
    peer_x = w.lookups([(s, x) for s in sources])
    assert all(e.peer == (w.ids[x], x) for *_, e in peer_x)
    assert [p for p in to_x if is_request(p)] == []  # X itself was never asked

    closest_x = w.lookups([(s, x) for s in sources], mode="closest")
    for _, _, event in closest_x:
        assert event.timeouts >= 1
        assert x not in [addr for _, addr in event.closest]
        assert len(event.closest) == 20
    assert w.net.lost >= len(closest_x)


def test_isolated_node_is_never_found():
    x = 9

    def hook(src, dst, payload, delay):
        return [] if x in (src, dst) else [delay]

    w = World(150, seed=4, hook=hook)
    joined_x = w.joined_events[x]
    assert not joined_x.success and joined_x.timeouts == 1
    assert all(e.success for a, e in w.joined_events.items() if a != x)
    assert all(node.routing.table.find(w.ids[x]) == -1 for node in w.driver.nodes)
    sources = [s for s in range(0, 150, 11) if s != x]
    results = w.lookups([(s, x) for s in sources])
    assert all(e.peer is None for *_, e in results)
    others = w.lookups(w.random_pairs(40, avoid={x}))
    assert all(e.peer == (w.ids[t], t) for _, t, e in others)


def test_duplicated_datagrams_change_nothing_but_the_unsolicited_count():
    requests = {"n": 0}

    def duplicate(src, dst, payload, delay):
        size = len(payload) if type(payload) is bytes else getattr(payload, "size", 0)
        if is_request(payload) and size > REQUEST_SIZE:  # a lookup's padded request
            requests["n"] += 1
        return [delay, delay + 0.001]

    def run(hook):
        w = World(120, seed=8, hook=hook)
        joins = sorted((a, e.table_size, e.rpcs, e.timeouts, e.finished) for a, e in w.joined_events.items())
        return w, joins, summary(w.lookups(w.random_pairs(40)))

    clean, clean_joins, clean_results = run(None)
    dup, dup_joins, dup_results = run(duplicate)
    assert dup_joins == clean_joins
    assert dup_results == clean_results
    assert clean.drops("unsolicited") == 0
    # each lookup request arrives twice and is answered twice; each answer arrives twice: 1 of 4
    # matches. Address probes (bare requests) are matched by their keyed target, not by a pending
    # entry, so a copy of a probe's answer is taken again: it changes nothing and is no drop.
    assert requests["n"] > 0
    assert dup.drops("unsolicited") == 3 * requests["n"]
    assert sum(sum(n.drop_counts().values()) for n in dup.driver.nodes) == 3 * requests["n"]


def test_delay_below_the_timeout_only_slows_lookups_down():
    y = 21

    def slow(src, dst, payload, delay):
        return [delay + 0.4] if dst == y else [delay]

    w = World(150, seed=6, hook=slow)
    results = w.lookups([(y, t) for t in range(0, 150, 7) if t != y])
    assert all(e.peer == (w.ids[t], t) for _, t, e in results)
    assert all(e.timeouts == 0 for *_, e in results)
    asked = [e for *_, e in results if e.rpcs]
    assert asked
    assert all(e.latency >= 2 * ONE_WAY + 0.4 - 1e-9 for e in asked)


def test_delay_beyond_the_timeout_makes_answers_late():
    y = 21
    cut = {"on": False}

    def slow(src, dst, payload, delay):
        return [delay + 1.5] if cut["on"] and dst == y else [delay]

    w = World(150, seed=6, hook=slow)
    cut["on"] = True
    results = w.lookups([(y, t) for t in range(0, 150, 7) if t != y], spacing=0.5)
    w.env.run(until=w.env.now + 5.0)
    for _, t, event in results:
        if event.rpcs == 0:
            assert event.peer == (w.ids[t], t)  # in Y's own table
        else:
            assert event.peer is None
            assert event.timeouts == event.rpcs
    assert any(e.rpcs for *_, e in results)
    assert w.driver.nodes[y].drop_counts()["unsolicited"] > 0
    others = w.lookups(w.random_pairs(30, avoid={y}))
    assert all(e.peer == (w.ids[t], t) for _, t, e in others)


def test_random_loss():
    settings = RoutingSettings(refresh_on_join=False, request_timeout=0.5)
    w = World(150, seed=2, loss=0.1, settings=settings, retry_joins=True)
    assert w.retries > 0
    assert all(e.success for e in w.joined_events.values())
    assert w.net.lost > 0
    assert 0.05 * w.net.sent < w.net.lost < 0.15 * w.net.sent
    results = w.lookups(w.random_pairs(80))
    found = [e for _, t, e in results if e.peer == (w.ids[t], t)]
    assert len(found) >= 0.9 * len(results)
    assert all(e.peer is None for _, t, e in results if e.peer != (w.ids[t], t))
    assert sum(e.timeouts for *_, e in results) > 0


# -- driver mechanics with a scripted node --------------------------------------------------------


class ScriptedNode:
    """Implements the node surface; timers are a list of deadlines, traffic is recorded."""

    def __init__(self):
        self.deadlines: list[float] = []
        self.fired: list[float] = []
        self.received: list[tuple] = []
        self.outbox: list[tuple] = []
        self.queued_events: list = []

    def receive_datagram(self, data, addr, now):
        self.received.append((now, addr, data))
        if data == b"wake-early":
            self.deadlines.append(now + 0.5)

    receive_message = receive_datagram

    def handle_timer(self, now):
        self.fired.append(now)
        self.deadlines = [d for d in self.deadlines if d > now]

    def get_timer(self):
        return min(self.deadlines) if self.deadlines else None

    def datagrams_to_send(self, now):
        out, self.outbox = self.outbox, []
        return out

    messages_to_send = datagrams_to_send

    def next_event(self):
        return self.queued_events.pop(0) if self.queued_events else None


def scripted(count=2, latency=0.1):
    env = simpy.Environment()
    net = SimNetwork(env, ConstantLatency(latency), Random(1))
    seen = []
    driver = SimDriver(env, net, lambda addr, event: seen.append((env.now, addr, event)))
    nodes = [ScriptedNode() for _ in range(count)]
    for n in nodes:
        driver.add(n)
    return env, net, driver, nodes, seen


def test_timer_fires_at_the_deadline_once():
    env, _, driver, (a, _b), _ = scripted()
    a.deadlines = [5.0]
    driver.service(0)
    driver.service(0)  # servicing again does not arm a second timer
    env.run(until=10)
    assert a.fired == [5.0]


def test_an_earlier_deadline_preempts_and_the_stale_timer_is_ignored():
    env, _, driver, (a, b), _ = scripted()
    a.deadlines = [5.0]
    driver.service(0)
    b.outbox = [(b"wake-early", 0)]
    driver.service(1)  # arrives at 0.1, asks for a timer at 0.6
    env.run(until=10)
    assert a.received == [(0.1, 1, b"wake-early")]
    assert a.fired == [0.6, 5.0]


def test_a_later_deadline_fires_early_harmlessly_and_rearms():
    env, _, driver, (a, _b), _ = scripted()
    a.deadlines = [1.0]
    driver.service(0)
    a.deadlines = [3.0]  # moved later (say a request was answered)
    env.run(until=10)
    assert a.fired == [1.0, 3.0]


def test_events_go_to_the_handler_and_datagrams_to_the_network():
    env, net, driver, (a, b), seen = scripted()
    a.queued_events = ["e1", "e2"]
    a.outbox = [(b"hello", 1)]
    driver.service(0)
    env.run(until=1)
    assert seen == [(0, 0, "e1"), (0, 0, "e2")]
    assert b.received == [(0.1, 0, b"hello")]
    assert net.sent == 1


def test_place_none_takes_a_node_offline_silently():
    env, _, driver, (a, b), _ = scripted()
    a.deadlines = [1.0]
    driver.service(0)
    driver.place(0, None)
    b.outbox = [(b"x", 0)]
    driver.service(1)
    env.run(until=5)
    assert a.fired == [] and a.received == []
    replacement = ScriptedNode()
    replacement.deadlines = [6.0]
    driver.place(0, replacement)
    env.run(until=10)
    assert replacement.fired == [6.0]


def test_datagram_to_an_address_without_a_node_is_lost_not_fatal():
    env = simpy.Environment()
    net = SimNetwork(env, ConstantLatency(0.05), Random(1))
    driver = SimDriver(env, net)
    registry = SharedRegistry([11, 22])
    for i in range(2):
        driver.add(Node(registry.ids[i], registry, Random(i), SETTINGS, 0.0))
    driver.nodes[0].add_contact(99, 500, 0.0)  # learned from some response: address 500
    driver.nodes[0].find_peer(12345, 0.0)
    driver.service(0)
    env.run(until=5)  # IndexError: list index out of range
    table = driver.nodes[0].routing.table
    assert table.failures(table.find(99)) == 1  # the request timed out like any lost one
