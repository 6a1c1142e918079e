"""The in-memory datagram network: delivery order and times, route hooks, timers, counters, NAT."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.transport.memory import FilteringNat, Link, MemoryNet, Packet, direct


class Recorder:
    """A layer that logs what it receives (into a log shared by all) and, while a datagram's
    first byte (hops) is not zero, sends it on with one hop less to the address its second byte
    spells (a one-letter name). Its timer fires at each deadline in `deadlines`; receiving adds
    one at now + `after` when the third byte asks for it."""

    def __init__(self, addr, log, fired=None, after=0.0):
        self.addr, self.log, self.fired, self.after = addr, log, fired, after
        self.outbox: list = []
        self.deadlines: set[float] = set()
        self.timer_calls = 0

    def receive_datagram(self, data, addr, now):
        self.log.append((self.addr, data, addr, now))
        if data[0]:
            self.outbox.append((bytes((data[0] - 1,)) + data[1:], chr(data[1])))
        if len(data) > 2 and data[2]:
            self.deadlines.add(now + self.after)

    def datagrams_to_send(self, now):
        out, self.outbox = self.outbox, []
        return out

    def next_event(self):
        return None

    def get_timer(self):
        return min(self.deadlines) if self.deadlines else None

    def handle_timer(self, now):
        self.timer_calls += 1
        due = {t for t in self.deadlines if t <= now}
        self.deadlines -= due
        if due and self.fired is not None:
            self.fired.append((self.addr, now, min(due)))


class Ticker(Recorder):
    """Reports an event for every datagram it receives."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.pending: list = []

    def receive_datagram(self, data, addr, now):
        super().receive_datagram(data, addr, now)
        self.pending.append(("got", data))

    def next_event(self):
        return self.pending.pop(0) if self.pending else None


def test_a_packet_is_frozen():
    p = Packet(1, 2, b"x")
    with pytest.raises(AttributeError):
        p.dst = 3
    assert p._replace(dst=3) == Packet(1, 3, b"x") and p.dst == 2
    assert hash(p) == hash(Packet(1, 2, b"x"))


def test_delivery_after_the_delay_with_events_and_counters():
    log: list = []
    net = MemoryNet(lambda p, now: [(0.25, p)])
    a, b = Ticker("a", log), Ticker("b", log)
    net.attach("a", a)
    net.attach("b", b)
    a.outbox.append((b"\x01a", "b"))  # one hop more: b sends it on to "a"
    net.service("a")
    assert net.sent == 1 and net.in_flight == 1 and log == []
    net.run_until(0.2)
    assert log == [] and net.now == 0.2
    net.run_until(0.5)
    assert log == [("b", b"\x01a", "a", 0.25), ("a", b"\x00a", "b", 0.5)]
    assert net.events["b"] == [("got", b"\x01a")] and net.of("a", tuple) == [("got", b"\x00a")]
    assert (net.sent, net.delivered, net.dropped, net.unroutable, net.in_flight) == (2, 2, 0, 0, 0)


def test_unroutable_dropped_and_injected_packets_are_counted():
    log: list = []
    net = MemoryNet(lambda p, now: [] if p.payload == b"drop" else [(0.0, p)])
    net.attach(1, Recorder(1, log))
    net.send(Packet("forged", 1, b"\x00"))
    net.send(Packet(1, 2, b"\x00"))
    net.send(Packet(1, 1, b"drop"))
    net.run()
    assert log == [(1, b"\x00", "forged", 0.0)]
    assert (net.sent, net.delivered, net.dropped, net.unroutable) == (3, 1, 1, 1)
    net.detach(1)
    net.send(Packet(2, 1, b"\x00"))
    net.run()
    assert net.unroutable == 2 and len(log) == 1


def test_time_runs_forward_only_and_payloads_are_bytes():
    net = MemoryNet(now=5.0)
    with pytest.raises(ValueError):
        net.run_until(4.0)
    r = Recorder(0, [])
    net.attach(0, r)
    r.outbox.append((bytearray(b"x"), 0))
    with pytest.raises(TypeError):
        net.service(0)
    with pytest.raises(ValueError):
        MemoryNet(lambda p, now: [(-1.0, p)]).send(Packet(0, 0, b""))
    with pytest.raises(ValueError):
        net.attach(0, r)


def test_timers_fire_at_their_deadlines_and_stale_ones_are_skipped():
    fired: list = []
    net = MemoryNet()
    r = Recorder("r", [], fired)
    r.deadlines.add(10.0)
    net.attach("r", r)
    r.deadlines.add(4.0)  # earlier: a new entry; the one at 10 stays live in the node
    net.service("r")
    r.deadlines.add(2.0)
    net.service("r")
    net.run_until(3.0)
    assert fired == [("r", 2.0, 2.0)]
    assert net.next_time() == 4.0
    net.run(limit=100.0)  # nothing in flight: idle at once, the timers wait
    assert len(fired) == 1
    net.run(until=lambda: False, limit=100.0)
    assert fired == [("r", 2.0, 2.0), ("r", 4.0, 4.0), ("r", 10.0, 10.0)]
    assert net.now == 10.0 and not net.step()
    assert r.timer_calls == 3  # the superseded entry at 10 did not call the node again
    r.deadlines.add(2.0)  # already past (a keep-alive overdue): due at once
    net.service("r")
    net.run_until(10.0)
    assert fired[-1] == ("r", 10.0, 2.0)


def test_a_node_taken_off_or_put_on_by_hand_is_handled():
    """Tests remove a node to make a peer vanish (nodes.pop) or put one on by hand."""
    fired: list = []
    net = MemoryNet()
    r = Recorder("r", [], fired)
    r.deadlines.add(1.0)
    net.attach("r", r)
    net.nodes.pop("r")
    net.run_until(2.0)  # its timer entry is stale
    assert fired == []
    net.nodes["s"], net.events["s"] = Recorder("s", [], fired), []
    net.nodes["s"].deadlines.add(3.0)
    net.service("s")
    net.run_until(3.0)
    assert fired == [("s", 3.0, 3.0)]


def test_settle_takes_what_nodes_were_told_to_send_and_delivers_what_is_due():
    log: list = []
    net = MemoryNet(lambda p, now: [(0.0 if p.payload[0] else 1.0, p)])
    a, b = Recorder("a", log), Recorder("b", log)
    net.attach("a", a)
    net.attach("b", b)
    a.outbox.append((b"\x02a", "b"))  # zero-delay hops to b, then a; the last one takes 1 s
    b.outbox.append((b"\x00", "a"))  # after 1 s
    net.settle(2.0)
    assert [(to, data, now) for to, data, _, now in log] == [("b", b"\x02a", 2.0),
                                                             ("a", b"\x01a", 2.0)]
    assert net.now == 2.0 and net.in_flight == 2
    net.run_until(3.0)  # both due at 3.0, in the order they were sent
    assert [data for _, data, _, _ in log[2:]] == [b"\x00", b"\x00a"]


def test_run_stops_when_the_condition_holds():
    log: list = []
    net = MemoryNet(lambda p, now: [(1.0, p)])
    net.attach("x", Recorder("x", log))
    net.send(Packet("y", "x", bytes((5,)) + b"x"))  # bounces x -> x five times, 1 s each
    net.run(until=lambda: len(log) == 3)
    assert len(log) == 3 and net.now == 3.0 and net.in_flight == 1
    net.run(limit=4.5)
    assert len(log) == 4
    net.run()
    assert len(log) == 6 and net.now == 6.0
    asked: list = []
    net.send(Packet("y", "x", b"\x00"))
    net.run(until=lambda: asked.append(len(log)) or False)
    assert asked == [6, 7]  # once more after the last delivery, though nothing is left


ADDRS = ("a", "b", "c")
SEND_TO = ADDRS + ("n",)  # nobody at "n"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_route_hooks_keep_time_order_fifo_and_lose_nothing_they_keep(data):
    """Whatever the hook does (drop, delay, duplicate, redirect, rewrite the source), deliveries
    happen at send time + delay, in time order, first in first out among equal times, each one
    exactly once; the counters add up."""
    scheduled: list = []  # (time, order, packet) for every delivery the hook returned
    hook_calls = [0, 0]  # calls, empty answers

    def route(packet: Packet, now: float):
        hook_calls[0] += 1
        copies = data.draw(st.integers(0, 2), label="copies")
        out = []
        for _ in range(copies):
            delay = data.draw(st.sampled_from([0.0, 0.0, 0.5, 1.0, 1.5]), label="delay")
            if data.draw(st.booleans(), label="redirect"):
                packet = packet._replace(dst=data.draw(st.sampled_from(SEND_TO)))
            if data.draw(st.booleans(), label="respoof"):
                packet = packet._replace(src=data.draw(st.sampled_from(SEND_TO)))
            out.append((delay, packet))
            scheduled.append((now + delay, len(scheduled), packet))
        hook_calls[1] += not out
        return out

    log: list = []
    fired: list = []
    net = MemoryNet(route)
    nodes = {a: Recorder(a, log, fired, after=data.draw(st.sampled_from([0.0, 0.5, 2.0])))
             for a in ADDRS}
    for a, node in nodes.items():
        net.attach(a, node)
    first = data.draw(st.lists(st.tuples(st.sampled_from(ADDRS), st.integers(0, 3),
                                         st.sampled_from(SEND_TO), st.booleans()),
                               min_size=1, max_size=6))
    for src, hops, to, timer in first:
        nodes[src].outbox.append((bytes((hops,)) + to[0].encode() + bytes((timer,)), to))
    net.service()
    net.run(until=lambda: False, limit=1000.0)

    expected = [(p.dst, p.payload, p.src, t) for t, _, p in sorted(scheduled) if p.dst in nodes]
    assert log == expected
    assert (net.sent, net.dropped) == tuple(hook_calls)
    assert net.delivered == len(log) and net.in_flight == 0
    assert net.delivered + net.unroutable == len(scheduled)
    # every deadline asked for fired, exactly then, and no more often than it was asked for
    asked = [(a, t + nodes[a].after) for a, d, _, t in log if d[2]]
    assert {(a, deadline) for a, _, deadline in fired} == set(asked)
    assert len(fired) <= len(asked)
    assert all(now == deadline for _, now, deadline in fired)
    assert not any(node.deadlines for node in nodes.values())


def test_a_filtering_nat_admits_only_the_endpoints_its_host_sent_to():
    log: list = []
    nat = FilteringNat(timeout=30.0)
    net = MemoryNet(nat)
    inside, server, other = ("10.0.0.1", 1), ("192.0.2.1", 2), ("192.0.2.2", 3)
    for addr in (inside, server, other):
        net.attach(addr, Recorder(addr, log))
    nat.add(inside)
    net.send(Packet(server, inside, b"\x00"))  # unsolicited
    net.send(Packet(inside, server, b"\x00"))
    net.send(Packet(server, inside, b"\x00"))  # a reply
    net.send(Packet(other, inside, b"\x00"))   # someone else: filtered
    net.run()
    assert [(to, frm) for to, _, frm, _ in log] == [(server, inside), (inside, server)]
    assert nat.filtered == 2 and net.dropped == 2
    net.run_until(31.0)  # the mapping expired
    net.send(Packet(server, inside, b"\x00"))
    net.run()
    assert nat.filtered == 3 and len(log) == 2


def test_a_nat_hook_composes_with_a_link():
    link = Link(delay=0.1)
    nat = FilteringNat(link)
    net = MemoryNet(nat)
    log: list = []
    net.attach(1, Recorder(1, log))
    net.attach(2, Recorder(2, log))
    nat.add(2)
    net.send(Packet(1, 2, b"\x00"))
    net.send(Packet(2, 1, b"\x00"))
    net.run()
    assert log == [(1, b"\x00", 2, 0.1)] and nat.filtered == 1


def test_a_link_loses_only_what_it_selects_and_jitters_within_bounds():
    link = Link(delay=0.03, jitter=0.02, loss=0.5, rng=Random(3), lossy=lambda p: p.payload[0] == 4)
    kept = [link(Packet(0, 1, bytes((k % 5,))), 0.0) for k in range(1000)]
    assert all(out for k, out in enumerate(kept) if k % 5 != 4)  # never a non-media packet
    assert 60 < link.lost < 140 and link.lost == sum(1 for out in kept if not out)
    delays = [d for out in kept for d, _ in out]
    assert all(0.03 <= d <= 0.05 for d in delays) and max(delays) - min(delays) > 0.015
    assert direct(Packet(0, 1, b""), 5.0) == ((0.0, Packet(0, 1, b"")),)
