"""A hypothesis state machine over allocation lifecycles: three clients allocate, knock at each
other's allocations, permit, send, release and go silent while time passes, and forged knocks
guess cookies; the relay's books always match the clients' and the caps, a permission needs a
knock whose cookie came back (within `proof_lifetime`), and DATA reaches exactly the one
permitted, proven peer, and from the owner only while the peer consents (heard within
`consent`)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kadtalk.node.relay import (
    AllocationGranted,
    PermissionRefused,
    RelayedData,
    RelaySettings,
    wire,
)

from .conftest import A, B, C, R, World

SETTINGS = RelaySettings(serve="always", lifetime=60, min_lifetime=30, default_lifetime=60,
                         max_lifetime=120, max_allocations=2, max_per_host=1,
                         verify_rate=1000, verify_burst=1000, source_rate=1000,
                         source_burst=1000, echo_rate=1000, echo_burst=1000)
CLIENTS = st.sampled_from([A, B, C])
FORGED = ("203.0.113.66", 5004)  # no node: a victim's address, used as a forged source
FORGERS = st.sampled_from([FORGED, B])  # B: forged while B is a real node (it drops cookies)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World(SETTINGS)
        self.silent: set = set()  # clients that stopped answering (their timers do not run)

    def held(self, addr):
        if addr in self.silent:
            return None
        held = self.world.at(addr).client.held.get(R)
        return held if held is not None and held.state == "granted" else None

    @rule(who=CLIENTS)
    def allocate(self, who):
        if who in self.silent:
            return
        self.world.at(who).allocate(R, self.world.now)
        self.world.settle(self.world.now)

    @rule(who=CLIENTS, peer=CLIENTS)
    def knock(self, who, peer):
        """`peer` knocks at `who`'s allocation and echoes the relay's cookie."""
        held = self.held(who)
        if held is None or peer in self.silent or peer == who:
            return
        self.world.at(peer).knock(held.path, self.world.now)
        self.world.settle(self.world.now)
        alloc = self.world.relay.server.allocations.get(held.path.allocation)
        if alloc is not None:
            assert peer in alloc.proven

    @rule(who=CLIENTS, peer=CLIENTS)
    def knock_and_permit(self, who, peer):
        """The call set-up's order: the peer knocks, then the owner permits it."""
        self.knock(who, peer)
        self.permit(who, peer)

    @rule(who=CLIENTS, cookie=st.binary(min_size=6, max_size=6), forger=FORGERS)
    def forged_knock(self, who, cookie, forger):
        """A KNOCK from an address that never gets the relay's answers, guessing a cookie."""
        held = self.held(who)
        if held is None:
            return
        self.world.inject(wire.knock(held.path.allocation, cookie), forger)

    @rule(who=CLIENTS, peer=st.sampled_from([A, B, C, FORGED]))
    def permit(self, who, peer):
        held = self.held(who)
        if held is None or who in self.silent or peer == who:
            return
        alloc = self.world.relay.server.allocations[held.path.allocation]
        now = self.world.now
        proven = alloc.proven.get(peer)
        allowed = (peer == alloc.peer and now - alloc.heard < SETTINGS.consent) or (
            proven is not None and now - proven < SETTINGS.proof_lifetime)
        self.world.at(who).permit(held.path, peer, self.world.now)
        self.world.settle(self.world.now)
        assert (alloc.peer == peer) == allowed
        if not allowed:
            assert self.world.of(who, PermissionRefused)[-1].reason == "unproven_peer"

    @rule(who=CLIENTS)
    def release(self, who):
        held = self.held(who)
        if held is None or who in self.silent:
            return
        self.world.at(who).release(held.path, self.world.now)
        self.world.settle(self.world.now)
        assert held.path.allocation not in self.world.relay.server.allocations

    @rule(who=CLIENTS, to_peer=st.booleans(), payload=st.binary(max_size=30))
    def send(self, who, to_peer, payload):
        """The owner sends to its peer, or its peer (whoever was permitted) back."""
        held = self.held(who)
        if held is None or who in self.silent:
            return
        alloc = self.world.relay.server.allocations[held.path.allocation]
        sender, receiver = (who, alloc.peer) if to_peer else (alloc.peer, who)
        if sender is None or receiver is None or sender in self.silent:
            return
        before = len(self.world.of(receiver, RelayedData))
        consenting = not to_peer or self.world.now - alloc.heard < SETTINGS.consent
        sent = self.world.at(sender).send(held.path, payload, self.world.now)
        self.world.settle(self.world.now)
        got = self.world.of(receiver, RelayedData)[before:]
        if sent and receiver not in self.silent:  # to a peer silent for 30 s: nothing (RFC 7675)
            assert [(e.path, e.payload) for e in got] == ([(held.path, payload)] if consenting
                                                          else [])

    @rule(who=CLIENTS)
    def go_silent(self, who):
        """The client's node stops (no refreshes): the relay must forget it at its lifetime."""
        if who not in self.silent:
            self.silent.add(who)
            self.world.detach(who)

    @rule(dt=st.floats(0.1, 45.0))
    def advance(self, dt):
        self.world.settle(self.world.now + dt)

    @invariant()
    def only_proven_peers_get_data(self):
        """Every address the relay sent DATA to is an allocation's owner or an address that was
        sent a KNOCK_COOKIE for that allocation and echoed it; the victim gets cookies only."""
        cookies, echoes = set(), set()
        for p in self.world.log:
            if p.src == R and p.payload[1] == wire.KNOCK_COOKIE:
                cookies.add((p.dst, p.payload[2:16]))
            elif p.dst == R and p.payload[1] == wire.KNOCK:
                echoes.add((p.src, p.payload[2:16]))
        proven = cookies & echoes
        owners = {(e.path.allocation, addr) for addr in (A, B, C)
                  for e in self.world.of(addr, AllocationGranted)}
        for p in self.world.log:
            if p.src == R and p.payload[1] == wire.DATA:
                number = p.payload[2:10]
                assert (number, p.dst) in owners or any(
                    addr == p.dst and key[:8] == number for addr, key in proven)
            if p.dst == FORGED:
                assert p.src == R and p.payload[1] == wire.KNOCK_COOKIE

    @invariant()
    def books_match(self):
        world = self.world
        server = world.relay.server
        if server is None:
            return
        allocs = server.allocations
        now = world.now
        assert len(allocs) <= SETTINGS.max_allocations
        hosts = [a.host for a in allocs.values()]
        assert all(hosts.count(h) <= SETTINGS.max_per_host for h in hosts)
        assert dict(server._per_host) == {h: hosts.count(h) for h in hosts}
        assert all(a.expires > now for a in allocs.values())  # the expired are gone
        assert len(server._expiry) <= 2 * len(allocs) + 17
        for addr in (A, B, C):
            held = self.held(addr)
            if addr in self.silent:
                continue
            if held is not None:  # a live client's allocation is the relay's, and vice versa
                alloc = allocs[held.path.allocation]
                assert alloc.owner == addr and alloc.peer == held.peer
        for number, alloc in allocs.items():
            if alloc.owner not in self.silent:
                assert self.held(alloc.owner).path.allocation == number
        for addr in (A, B, C):
            if addr not in self.silent:
                for e in world.of(addr, AllocationGranted):
                    assert e.path.relay == R


Lifecycle.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                       suppress_health_check=list(HealthCheck))
TestLifecycle = Lifecycle.TestCase
