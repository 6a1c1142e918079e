"""The call set-up study: whole nodes place calls between random pairs (issue 12).

N simulated peers run the real `Node` (routing, NAT traversal, session) on the SimPy driver.
`calls` calls between random pairs start at Poisson times; each goes as the daemon's would:
find-peer lookup of the callee, hole punching through the rendezvous peers nearest it (in
parallel with the key exchange), signed key exchange, RING, ANSWER (the callee answers after
`answer_delay`), and the caller's first media packet, after which the caller hangs up. One row
per call gives the set-up time split by phase, success and the end reason.

Phases of a call started at t0 (the caller's events; a phase is 0 when it was not needed):
- lookup: t0 -> the callee's address is known (the session enters KEY_EXCHANGE);
- punch: -> the callee's PUNCH reaches the caller, for callees behind a filtering NAT (the only
  ones that need a hole: docs/testbed.md);
- key exchange: -> RINGING (the KEY_RES arrived: the callee rings);
- ring/answer: -> TALKING (the callee's ANSWER arrived);
- first media: -> the callee receives the caller's first MEDIA packet.
set-up time is their sum: from the call to the first media heard. `rendezvous_overlap` (DHT
mode) counts the caller's rendezvous peers that are among the callee's keep-alive peers when the
lookup ends: a callee behind a filtering NAT can be punched only through those.

Reachable pairs (`reachable`; docs/testbed.md, the NAT combination table): a caller behind a
symmetric NAT cannot reach a callee behind a filtering or a symmetric NAT without a relay;
every other combination connects directly (a symmetric callee through the peer-reflexive
address its PUNCH shows the caller, docs/protocol.md §20). With relays, a caller that holds
relays by the node's rule (`Node.needs_relay` when it calls) reaches anyone. Under churn, a call whose caller or callee is offline when it
starts is not placed (end reason `offline`: under churn, pairs are drawn among the peers online
(and joined, for the caller) when the call starts, as the lookup study does, so this is rare);
nor is one whose caller or callee is in another
call of the workload (`engaged`); neither counts as a reachable pair, nor does a call the callee
answered BUSY (its hang-up of an earlier call had not arrived): none of them tested the network.

Identities: every node has a key pair (ECDSA P-256, derived from the seed so runs reproduce)
and its ID is the key's: a node runs NAT traversal only with an identity, and every node must
be able to serve as a rendezvous. The summary gives how many keys were made and how long it
took (about 0.1 ms each: 10^5 keys cost ~11 s).

Keep-alives are the node's own, as the daemon runs them: every node's upkeep is on
(`Node.keep_joined`: rejoining while its table is empty or after a failed join, and traversal's keep-alive timer,
address probes to the contacts nearest its ID by `Traversal.keepalive_plan`). It is turned on
after a node's first successful join, or, for tables loaded by the fast bootstrap, at a random
phase in the first interval, as daemons started at different times do. As the daemon, the
study tells each node's traversal layer its NAT kind from its first address probe's answer
(`nat_kind` with the node's local address: `_nat_found`).

Relays (`relays=True`, issue 13): every node runs its relay layer with the daemon's rule
(`Node.set_nat` from the first address probe's answer, node/stack.py): a public node relays for
others within the default caps (`[relay] serve = auto`), a NATed one holds `call_relays`
allocations with contacts that serve and offers one in each call's punch; the callee knocks
there and the call runs through the relay when no direct path opens. Simulated addresses are
10.0.0.0/8 (sim/registry.py), so the relays run with `forward_private` (the LAN setting); every
other cap is the default. Without `relays` the relay layer is off (`enabled=False`): the node
as the study ran before relays. Each row then also names the relay a call went through (None:
direct), and the summary gives the relays' load: calls per relay, allocations held, datagrams
and bytes forwarded (`relay_load`).

IPv6 (`v6_only`, `dual_stack`, `v6_firewall`; issue 13): hosts have address families, IPv6-only
and dual-stack ones beside the IPv4-only (experiments/harness/dualstack.py, sim/nat.py
`DualStackNat`, sim/dualstack.py): node code sees real IPv6 addresses and runs its own IPv6
rules (ROUTE6_RES, traversal over IPv4 only, relays' 18-byte fields); a share `v6_firewall` of
the hosts with IPv6 (not those on public IPv4 addresses) sit behind a stateful IPv6 firewall.
Such studies need the byte codec and protocol joins. Rows then give each end's family, and
`path`: whether the network lets any path join the pair (`path_exists`), which the node may not
find. A dual-stack public node is told its IPv6 address among its own (`Node.set_nat(own=)`,
as app/network.py does).

Talking (`relayed_talk`, seconds; 0 by default: the caller hangs up at the first media packet):
a relayed call then carries media both ways for that long after its first packet, a packet each
way every `MEDIA_INTERVAL` (20 ms, an Opus frame, `MEDIA_PAYLOAD`), before the caller hangs up,
so that the relays' bytes, their rate and their caps show (the row is the same: set-up ends at
the first media heard). Direct calls still hang up at once: their media touches no relay and
would cost the simulator 100 datagrams a second each. Both ends stay engaged while they talk.
Each relay's load then also gives the most relayed calls it carried at once (`peak_calls`), its
most bytes forwarded in one second of simulated time (`peak_bytes_per_s`, sampled every second
while any relayed call talks) and the DATA it dropped over its caps (`over_rate`: the
allocation's and the relay's rate, `[relay] allocation_rate`, `total_rate`).

`directory=True` runs the same workload (same nodes, NATs, churn, pairs and times) against a
central directory (experiments/directory.py) instead of the DHT lookup.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kadtalk.experiments import realism
from kadtalk.experiments.directory import CLIENT_TYPES, QUERY, DirectoryClient, DirectoryServer
from kadtalk.experiments.harness.identities import derive_identity
from kadtalk.experiments.harness.recorder import Progress, environment, peak_rss_mb, percentile
from kadtalk.experiments.harness.workload import poisson_pairs
from kadtalk.experiments.harness.dualstack import DualStackWorld
from kadtalk.experiments.harness.world import BOOTSTRAPS, SimWorld, wire_mode
from kadtalk.node.identity import Identity
from kadtalk.node.relay import AllocationGranted, RelayPath, RelaySettings
from kadtalk.node.routing.events import Joined
from kadtalk.node.session import CallEnded, CallProgress, CallState, IncomingCall, MediaReceived
from kadtalk.node.stack import Node
from kadtalk.node.traversal import PUNCH, AddressObserved, TraversalSettings, nat_kind
from kadtalk.sim import dualstack
from kadtalk.sim.latency import MODELS
from kadtalk.sim.nat import FAMILY_NAMES, FILTERING, KIND_NAMES, OPEN, SYMMETRIC, V4_ONLY, V6_ONLY

KEEPALIVE_INTERVAL = TraversalSettings().keepalive_interval  # s between NAT keep-alives
MEDIA_PAYLOAD = bytes(80)  # one 20 ms Opus frame's worth
MEDIA_INTERVAL = 0.02  # s between two media packets each way while a relayed call talks
# A NATed node's local address: a private one, which no peer sees it at (simulated addresses
# are the outside ones)
PRIVATE = ("192.168.0.2", 5004)

ROW_FIELDS = ("start", "caller", "callee", "caller_nat", "callee_nat", "reachable", "success",
              "end_reason", "rendezvous_overlap", "setup_ms", "lookup_ms", "punch_ms",
              "key_exchange_ms", "ring_ms", "first_media_ms")
TIMES = ROW_FIELDS[9:]
# rows of a study with relays: the relay's address (None: direct), and how many relay
# allocations the caller held when it called (a NATed caller offers one in its punch)
RELAY_FIELDS = ("relay", "caller_relays")
PER_RELAY_FIELDS = ("addr", "calls", "allocations", "forwarded", "forwarded_bytes")
# ... and with `relayed_talk`: the most relayed calls at once, bytes forwarded in the busiest
# second, DATA dropped over the caps
TALK_RELAY_FIELDS = ("peak_calls", "peak_bytes_per_s", "over_rate")
# rows of a study with IPv6 hosts: each end's family, and whether any path can join them
FAMILY_FIELDS = ("caller_family", "callee_family", "path")

# The relay layer of a simulated node: off (the study without relays), or the daemon's defaults
# with forwarding to 10.0.0.0/8, the simulator's addresses (sim/registry.py)
RELAYS_OFF = RelaySettings(enabled=False)
SIM_RELAYS = RelaySettings(forward_private=True)

# Calls that never tested the network: a peer offline (churn), or already on another call of
# the workload (placed a moment after a call of its own, or still ringing), or answered BUSY.
NOT_PLACED = frozenset({"offline", "engaged", "busy"})

# Summary fields measured on the wall clock: they differ between runs of the same study.
WALL_CLOCK_FIELDS = frozenset({"wall_s", "peak_rss_mb", "build_s", "calls_s", "identity_s"})


@dataclass(frozen=True)
class CallStudy:
    nodes: int = 1000
    calls: int = 100
    seed: int = 1
    k: int = 20
    alpha: int = 3
    request_timeout: float = 1.0
    latency: str = "coordinate"
    loss: float = 0.0
    wire: str = "auto"  # bytes | objects | auto (bytes up to 2,000 nodes)
    bootstrap: str = "fast"  # see harness/world.py BOOTSTRAPS
    join_interval: float = 0.02  # protocol bootstrap: seconds between two nodes' joins
    settle: float = 30.0  # s before the first call (keep-alives have run once)
    refresh_on_join: bool = True
    call_rate: float = 10.0  # Poisson arrivals of calls per simulated second
    answer_delay: float = 0.0  # s the callee lets it ring
    call_timeout: float = 60.0  # s after which a call not set up counts as failed
    relayed_talk: float = 0.0  # s a relayed call carries media both ways (0: hang up at once)
    directory: bool = False  # the central-directory baseline instead of the DHT lookup
    relays: bool = False  # every node's relay layer on (issue 13): relayed calls, relay load
    # realism (experiments/realism.py)
    routers: int = 1000
    topology: str = "waxman"
    jitter: float = 0.0
    churn: str = "none"
    session: float = 2544.0
    session_shape: float = 0.38
    offline: float = 2544.0
    offline_shape: float = 0.38
    nat_full_cone: float = 0.0
    nat_filtering: float = 0.0
    nat_symmetric: float = 0.0
    nat_timeout: float = 120.0
    traffic: bool = False
    # address families (issue 13): shares of IPv6-only and dual-stack hosts (the rest IPv4-only),
    # and of the hosts with IPv6 (not on public IPv4) behind a stateful IPv6 firewall
    v6_only: float = 0.0
    dual_stack: float = 0.0
    v6_firewall: float = 1.0

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise ValueError("a call study needs at least 2 nodes")
        if self.calls < 0:
            raise ValueError("calls must be >= 0")
        if self.latency not in MODELS or self.latency == "site-matrix":
            raise ValueError("latency must be one of coordinate, sphere, topology, constant")
        if self.wire not in ("bytes", "objects", "auto"):
            raise ValueError("wire must be bytes, objects or auto")
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(f"bootstrap must be one of {', '.join(BOOTSTRAPS)}")
        if not self.call_rate > 0:
            raise ValueError("call_rate must be positive")
        if self.answer_delay < 0 or self.call_timeout <= 0:
            raise ValueError("answer_delay must be >= 0 and call_timeout positive")
        if self.relayed_talk < 0 or (self.relayed_talk and not self.relays):
            raise ValueError("relayed_talk must be >= 0, and needs relays")
        if self.relays and self.directory:
            raise ValueError("relays run with the DHT's call set-up, not the directory baseline")
        realism.check(self)
        if not (0 <= self.v6_only and 0 <= self.dual_stack and self.v6_only + self.dual_stack <= 1
                and 0 <= self.v6_firewall <= 1):
            raise ValueError("v6_only + dual_stack must be in [0, 1], v6_firewall in [0, 1]")
        if self.families and self.directory:
            raise ValueError("IPv6 hosts are not modelled with the directory baseline")

    @property
    def families(self) -> bool:
        """Whether hosts have address families (some IPv6-only or dual-stack)."""
        return self.v6_only > 0 or self.dual_stack > 0

    @property
    def wire_mode(self) -> str:
        return "bytes" if self.families and self.wire == "auto" else wire_mode(self.nodes, self.wire)


@dataclass
class CallResult:
    study: CallStudy
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    relays: list[dict[str, Any]] = field(default_factory=list)  # per serving relay (`relay_load`)


def reachable(caller_kind: int, callee_kind: int, caller_relays: bool = False) -> bool:
    """Whether a direct path exists (the simulator's NAT model, docs/testbed.md's table): a
    symmetric caller's datagrams come from a port the callee's PUNCH never reaches, so it
    cannot reach a filtering or a symmetric callee; every other pair connects (a symmetric
    callee through the peer-reflexive address its PUNCH shows the caller, docs/protocol.md
    §20); or else whether the caller offers a relay: `caller_relays` is the node's own rule,
    `Node.needs_relay` of the caller when it called (with relays on), not restated here."""
    direct = not (caller_kind == SYMMETRIC and callee_kind in (FILTERING, SYMMETRIC))
    return direct or caller_relays


def path_exists(nat: Any, caller: int, callee: int, relays: bool) -> bool:
    """Whether the simulated network lets any path join a pair of hosts with address families
    (sim/nat.py `DualStackNat`), whatever the node can find: with relays always (node 0, a
    public dual-stack host, can relay between the families; each host reaches it as any public
    host); without, IPv4 by `reachable`'s rule when both have IPv4, or IPv6 when both have it
    (a firewall filters by address and port without translating: two hosts that send to each
    other at once open both, the textbook hole punch, which node code does not do over IPv6)."""
    if relays:
        return True
    families = nat.families
    both_v4 = families[caller] != V6_ONLY and families[callee] != V6_ONLY
    both_v6 = families[caller] != V4_ONLY and families[callee] != V4_ONLY
    return both_v6 or (both_v4 and reachable(nat.kinds[caller], nat.kinds[callee]))


class _Call:
    __slots__ = ("index", "start", "caller", "callee", "session_id", "found", "punched", "ringing",
                 "talking", "media", "reason", "done", "punch_needed", "overlap", "relay",
                 "held", "offers", "callee_session")

    def __init__(self, index: int, start: float, caller: int, callee: int):
        self.index, self.start, self.caller, self.callee = index, start, caller, callee
        self.session_id: int | None = None
        self.found = self.punched = self.ringing = self.talking = self.media = None
        self.reason: str | None = None
        self.done = False
        self.punch_needed = False
        self.overlap: int | None = None
        self.relay: int | None = None  # the relay the caller talks through, when TALKING
        self.held: int | None = None  # relay allocations the caller held when it called
        self.offers = False  # the caller's node would offer a relay (`Node.needs_relay`)
        self.callee_session: int | None = None  # the callee's session id (relayed_talk)


class _CallStudyRun:
    def __init__(self, study: CallStudy, progress: Progress | None):
        self.study = study
        self.progress = progress
        self.wall_start = time.perf_counter()
        arrivals = poisson_pairs(realism.feature_rng(study.seed, "calls"), study.nodes,
                                 study.calls, 0.0, study.call_rate)
        self.arrivals = arrivals
        self.identities: dict[int, Identity] = {}
        if study.families:
            self.world = DualStackWorld(study, study.v6_only, study.dual_stack, study.v6_firewall,
                                        ids_hook=self._with_identities, new_node=self._new_node,
                                        traversal=True)
        else:
            self.world = SimWorld(study, ids_hook=self._with_identities, new_node=self._new_node,
                                  traversal=True)
        self.keepalive_interval = KEEPALIVE_INTERVAL
        self.client: DirectoryClient | None = None
        self.server_addr = -1
        self.upkeep_rng = realism.feature_rng(study.seed, "upkeep")
        self.by_id = {node_id: addr for addr, node_id in enumerate(self.world.ids)}
        self.calls: list[_Call] = []
        self.active: dict[tuple[int, int], _Call] = {}  # (caller, callee) -> call in progress
        # address -> {session id -> call} of the node there now (a node back from churn is a new
        # node whose session ids start afresh: its address's map is dropped)
        self._by_session: dict[int, dict[int, _Call]] = {}
        self._placing: _Call | None = None
        self.engaged: dict[int, int] = {}  # address -> calls of the workload it is in now
        # relays: when each NATed node first learnt its NAT kind, and first held a relay
        self.nat_told: dict[int, float] = {}
        self.first_grant: dict[int, float] = {}
        self.finished = 0
        # relayed_talk: calls talking now, relay -> its calls talking now / the most at once /
        # its most bytes forwarded in a sampled second, and its bytes at the last sample
        self.talking = 0
        self.relay_now: dict[int, int] = {}
        self.peak_calls: dict[int, int] = {}
        self.peak_rate: dict[int, int] = {}
        self._sampled: dict[int, int] = {}
        self._sampling = False

    # -- nodes ----------------------------------------------------------------------------------

    def _with_identities(self, ids: list[int]) -> list[int]:
        """A key pair for every node (each can be a rendezvous, which NAT traversal needs, and
        the Node runs traversal only with an identity); their IDs replace the drawn ones."""
        started = time.perf_counter()
        rng = realism.feature_rng(self.study.seed, "identity")
        taken: set[int] = set()
        for addr in range(len(ids)):
            identity = derive_identity(rng)
            node_id = int.from_bytes(identity.node_id, "big")
            if node_id in taken:  # two SHA-1s colliding: never seen, but never a silent mix-up
                raise ValueError("two nodes drew the same ID")
            taken.add(node_id)
            ids[addr] = node_id
            self.identities[addr] = identity
        self.identity_s = time.perf_counter() - started
        return ids

    def _new_node(self, addr: int, now: float) -> Node:
        world = self.world
        settings = world.settings_for(addr) if self.study.families else world.settings
        node = Node(world.ids[addr], world.registry, world.node_rng, settings, now,
                    identity=self.identities[addr], traversal=True,
                    relay_settings=SIM_RELAYS if self.study.relays else RELAYS_OFF)
        self._by_session.pop(addr, None)  # the sessions of the node that was here are gone
        if self.client is not None and world.realism.started:
            world.at(now, lambda: self.client.register(addr))  # back online: register at once
        return node

    def _upkeep_for_loaded_tables(self) -> None:
        """Tables loaded by the fast bootstrap: turn each node's upkeep on at a random phase, as
        daemons started at different times do; with a table already full, it joins nobody and
        starts the NAT keep-alives at once (`Node.keep_joined`)."""
        rng = realism.feature_rng(self.study.seed, "keepalive")
        for addr in range(self.study.nodes):
            self.world.at(rng.random() * self.keepalive_interval, lambda a=addr: self._upkeep(a))

    def _upkeep(self, addr: int) -> None:
        """The daemon's network upkeep (`Node.keep_joined`): rejoining while the table is empty or after a failed join,
        NAT keep-alives (address probes to the contacts nearest our ID) while it is not."""
        world = self.world
        node = world.driver.nodes[addr]
        if node is None or node.rejoin is not None:
            return
        bootstrap = [self.upkeep_rng.randrange(self.study.nodes) for _ in range(3)]
        if self.study.families:  # addresses of a family it has (node 0 has both)
            bootstrap = [a for a in (world.address_for(b, addr) for b in bootstrap)
                         if a is not None] or [world.address_for(0, addr)]
        world.command(addr, lambda n, now: n.keep_joined(bootstrap, now))

    def _register(self, addr: int) -> None:
        """Directory baseline: a node behind a NAT refreshes its registration every keep-alive
        interval (a SIP REGISTER refresh), which keeps its NAT open towards the directory.
        (A public node's registration stays as made at the start: its address never changes.)"""
        world = self.world
        if world.driver.nodes[addr] is not None:
            self.client.register(addr)
        world.at(world.env.now + self.keepalive_interval, lambda: self._register(addr))

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> CallResult:
        study, world = self.study, self.world
        if study.directory:
            self._place_directory()
        world.attach(self._on_event)
        world.driver.traversal_tap = self._on_traversal
        start = world.converge(self.progress)
        if study.bootstrap != "protocol":
            self._upkeep_for_loaded_tables()
        if study.directory:  # after the population's addresses 0..N-1 (joins end at start - settle)
            world.at(start - study.settle / 2, self._attach_directory)
            rng, nat = realism.feature_rng(study.seed, "register"), world.realism.nat
            for addr in range(study.nodes) if nat is not None else ():
                if nat.kinds[addr] != OPEN:  # only a NAT's mapping needs refreshing
                    world.at(start - study.settle / 2 + rng.random() * self.keepalive_interval,
                             lambda a=addr: self._register(a))
        for index, (when, caller, callee) in enumerate(self.arrivals):
            world.at(start + when, lambda i=index, c=caller, e=callee: self._place(i, c, e))
        env = world.env
        env.run(until=start)
        converged = time.perf_counter()
        world.realism.measure_from(env.now)
        env.run_while(lambda: self.finished < study.calls or len(self.calls) < study.calls
                      or self.talking)
        rows = [self._row(call) for call in self.calls]
        rows.sort(key=lambda r: r["start"])
        wall = time.perf_counter() - self.wall_start
        summary = summarize(study, rows, wall) | {
            "identities": len(self.identities),
            "identity_s": round(self.identity_s, 3),
            "build_s": round(converged - self.wall_start, 3),
            "calls_s": round(time.perf_counter() - converged, 3),
            "sim_s": round(env.now - start, 3),
            "misaddressed": world.driver.misaddressed,
        } | world.realism.summary(world.network)
        if study.families:
            summary |= dualstack.summary(world.driver)
        per_relay: list[dict[str, Any]] = []
        if study.relays:
            talk = (self.peak_calls, self.peak_rate) if study.relayed_talk else None
            load = relay_load(world.driver.nodes, rows, talk)
            per_relay = load.pop("per_relay")
            waits = sorted(self.first_grant.get(a, math.inf) - t for a, t in self.nat_told.items())
            natted = [r for r in rows
                      if r["caller_nat"] != "open" and r["caller_relays"] is not None]
            summary |= load | {
                # nearest rank: a node that never held one waits for ever (inf)
                "relay_wait_median_s": waits[len(waits) // 2] if waits else math.nan,
                "relay_wait_p90_s": waits[int(0.9 * (len(waits) - 1))] if waits else math.nan,
                "relay_never_held": sum(w == math.inf for w in waits),
                "natted_callers_without_relay": (sum(r["caller_relays"] == 0 for r in natted)
                                                 / len(natted) if natted else math.nan),
            }
        return CallResult(study, rows, summary, environment(), per_relay)

    def _place_directory(self) -> None:
        world = self.world
        world.base_latency.add_median_node()
        registrations = {world.ids[a]: a for a in range(self.study.nodes)}
        self.server_addr = len(world.ids)  # the next address after the population
        self.client = DirectoryClient(self.server_addr, world.ids, world.driver.send, self._found)
        world.driver.application_types = CLIENT_TYPES
        world.driver.relayed_types = frozenset((QUERY,))  # it relays the caller's address
        world.driver.application = lambda dst, data, src: self.client.receive(
            dst, data, src, world.env.now)
        self._server = DirectoryServer(registrations)

    def _attach_directory(self) -> None:
        if self.world.extra_address(self._server) != self.server_addr:
            raise RuntimeError("the directory must sit right after the population")

    def _place(self, index: int, caller: int, callee: int) -> None:
        world = self.world
        if world.realism.started:  # churn: a user who is online calls someone online now
            caller, callee = world.realism.pick_pair(caller, callee)
        call = _Call(index, world.env.now, caller, callee)
        self.calls.append(call)
        if caller < 0:
            self._end(call, "offline")  # nobody online (and joined) to call from or to
            return
        nodes = world.driver.nodes
        if nodes[caller] is None or nodes[callee] is None:
            self._end(call, "offline")
            return
        if self.engaged.get(caller) or self.engaged.get(callee):
            self._end(call, "engaged")  # one of them is still on another call of the workload
            return
        nat, tap = world.realism.nat, world.realism.tap
        call.punch_needed = nat is not None and nat.kinds[callee] == FILTERING
        if tap is not None:
            tap.user_targets.add(world.ids[callee])  # --traffic: the call's lookup is a user's
        self.active[(caller, callee)] = call
        for addr in (caller, callee):
            self.engaged[addr] = self.engaged.get(addr, 0) + 1
        callee_id = world.ids[callee]
        if self.study.relays:
            call.held = len(nodes[caller].relays_held())
            call.offers = nodes[caller].needs_relay
        if self.client is not None:
            self.client.query(caller, callee_id)
        else:
            self._dial(call, callee_id)
        world.at(world.env.now + self.study.call_timeout, lambda: self._expire(call))

    def _found(self, caller: int, callee_id: int, addr: Any, now: float) -> None:
        """The directory answered: call the address it gave (or fail as a lookup would)."""
        callee = self.by_id.get(callee_id)
        call = self.active.get((caller, callee)) if callee is not None else None
        if call is None or call.done:
            return
        if addr is None:
            self._end(call, "unreachable")
            return
        self._dial(call, callee_id, addr)

    def _expire(self, call: _Call) -> None:
        if call.done:
            return
        node = self.world.driver.nodes[call.caller]
        if node is not None and call.session_id is not None:
            self.world.command(call.caller, lambda n, now: n.hang_up(now, call.session_id))
        self._end(call, "timeout")

    def _end(self, call: _Call, reason: str) -> None:
        if call.done:
            return
        call.done = True
        call.reason = reason
        if self.active.get((call.caller, call.callee)) is call:
            del self.active[(call.caller, call.callee)]
            for addr in (call.caller, call.callee):
                self.engaged[addr] -= 1
        self.finished += 1
        if self.progress:
            self.progress("calls", self.finished, self.study.calls)

    # -- events ---------------------------------------------------------------------------------

    def _on_traversal(self, dst: int, payload: bytes, src: int) -> None:
        if len(payload) > 1 and payload[1] == PUNCH:
            call = self.active.get((dst, src))
            if call is not None and call.punched is None and call.found is not None:
                call.punched = self.world.env.now

    def _on_event(self, addr: int, event: Any) -> None:
        kind = type(event)
        world = self.world
        if kind is Joined:
            if event.success:  # a protocol join, or a return after churn: the upkeep takes over
                self._upkeep(addr)
        elif kind is AddressObserved:
            self._nat_found(addr, event)
        elif kind is AllocationGranted:
            self.first_grant.setdefault(addr, world.env.now)
        elif kind is CallProgress:
            call = self._caller_call(addr, event.session_id)
            if call is None:
                return
            state = event.state
            if state is CallState.KEY_EXCHANGE:
                call.found = event.at
                if self.client is None:
                    call.overlap = self._overlap(call)
            elif state is CallState.RINGING:
                call.ringing = event.at
            elif state is CallState.TALKING:
                call.talking = event.at
                if self.study.relays and addr == call.caller:
                    path = world.driver.nodes[addr].session.sessions[event.session_id].addr
                    call.relay = path.relay if type(path) is RelayPath else None
                    if call.relay is not None and self.study.families:
                        call.relay = world.driver.node_of(call.relay)  # its number, either family
                world.command(addr, lambda n, now: n.send_media(call.session_id, MEDIA_PAYLOAD, now))
        elif kind is IncomingCall:
            caller = self.by_id.get(event.peer_id)
            call = self.active.get((caller, addr)) if caller is not None else None
            if call is None:
                return
            session_id = call.callee_session = event.session_id
            self._sessions_of(addr)[session_id] = call
            world.at(world.env.now + self.study.answer_delay,
                     lambda: world.driver.nodes[addr] is not None
                     and world.command(addr, lambda n, now: n.answer(now, session_id)))
        elif kind is MediaReceived:
            call = self._sessions_of(addr).get(event.session_id)
            if call is None or call.done or call.callee != addr or call.talking is None:
                return
            call.media = event.at
            self._end(call, "talking")
            if self.study.relayed_talk and call.relay is not None:
                self._talk(call)
            elif world.driver.nodes[call.caller] is not None:  # it may have left since it sent
                world.command(call.caller, lambda n, now: n.hang_up(now, call.session_id))
        elif kind is CallEnded:
            call = self._sessions_of(addr).get(event.session_id)
            if call is not None and call.caller == addr:
                self._end(call, event.reason.value)

    # -- relayed_talk ---------------------------------------------------------------------------

    def _talk(self, call: _Call) -> None:
        """A relayed call set up: media both ways every MEDIA_INTERVAL for `relayed_talk`
        seconds, then the caller hangs up; both ends stay engaged meanwhile."""
        world, relay = self.world, call.relay
        for addr in (call.caller, call.callee):
            self.engaged[addr] = self.engaged.get(addr, 0) + 1
        self.talking += 1
        if not self._sampling:
            self._sampling = True
            world.at(world.env.now, self._sample)
        now = self.relay_now[relay] = self.relay_now.get(relay, 0) + 1
        self.peak_calls[relay] = max(self.peak_calls.get(relay, 0), now)
        end = world.env.now + self.study.relayed_talk
        ends = ((call.caller, call.session_id), (call.callee, call.callee_session))

        def packet() -> None:
            nodes = world.driver.nodes
            if world.env.now >= end or None in (nodes[call.caller], nodes[call.callee]):
                if nodes[call.caller] is not None:
                    world.command(call.caller, lambda n, now: n.hang_up(now, call.session_id))
                for addr in (call.caller, call.callee):
                    self.engaged[addr] -= 1
                self.talking -= 1
                self.relay_now[relay] -= 1
                return
            for addr, session_id in ends:
                world.command(addr, lambda n, now, s=session_id: n.send_media(s, MEDIA_PAYLOAD, now))
            world.at(world.env.now + MEDIA_INTERVAL, packet)

        world.at(world.env.now + MEDIA_INTERVAL, packet)

    def _sample(self) -> None:
        """Every simulated second while relayed calls talk: each relay with a call talking,
        its bytes forwarded since the last sample (its busiest second: `peak_rate`)."""
        nodes = self.world.driver.nodes
        for relay, count in self.relay_now.items():
            node = nodes[relay]
            if node is None or (count == 0 and relay not in self._sampled):
                continue
            total = node.relay.stats["forwarded_bytes"]
            before = self._sampled.get(relay)
            if before is not None:
                self.peak_rate[relay] = max(self.peak_rate.get(relay, 0), total - before)
            self._sampled[relay] = total
            if count == 0:  # its last call ended within the second just sampled
                del self._sampled[relay]
        if not self.talking:
            self._sampling = False
            self._sampled.clear()
            return
        self.world.at(self.world.env.now + 1.0, self._sample)

    def _nat_found(self, addr: int, event: AddressObserved) -> None:
        """What the daemon does with an address probe's answer (app/network.py): `nat_kind`
        given its local address (the node's own on a public address, a private one behind a
        NAT) goes to `Node.set_nat` with the public address seen (a public node relays for
        others, a NATed one holds relays for its calls; the keep-alive plan follows it). Without
        relays, to the keep-alive plan alone (`Traversal.set_nat`), as before relays."""
        nat = self.world.realism.nat
        local = addr if nat is None or nat.kinds[addr] == OPEN else PRIVATE
        node = self.world.driver.nodes[addr]
        if node is None or node.traversal is None:
            return
        kind = nat_kind(event, local)
        if self.study.relays:
            if kind != "none":
                self.nat_told.setdefault(addr, self.world.env.now)
            v6 = self.world.driver.v6_of(addr) if self.study.families else None
            node.set_nat(kind, event.public, own=() if v6 is None else (v6,))
        else:
            node.traversal.set_nat(kind)

    def _caller_call(self, addr: int, session_id: int) -> _Call | None:
        """The call a caller's session belongs to (bound at its first event, which comes while
        `call` runs, before its session id is returned)."""
        sessions = self._sessions_of(addr)
        call = sessions.get(session_id)
        if call is None and self._placing is not None and self._placing.caller == addr:
            call = sessions[session_id] = self._placing
            self._placing = None
        return call

    def _overlap(self, call: _Call) -> int | None:
        """How many of the rendezvous the caller asked for a punch (`Traversal.last_rendezvous`)
        are among the peers the callee keeps its NAT open to (`Traversal.keepalive_peers`):
        only those can forward a PUNCH_FWD through a filtering NAT."""
        nodes = self.world.driver.nodes
        caller, callee = nodes[call.caller], nodes[call.callee]
        if caller is None or callee is None:
            return None
        asked = caller.traversal.last_rendezvous
        return len(set(asked) & set(callee.traversal.keepalive_peers()))

    def _dial(self, call: _Call, callee_id: int, addr: Any = None) -> None:
        self._placing = call
        call.session_id = self.world.command(call.caller, lambda n, now: n.call(callee_id, now, addr))
        self._placing = None
        self._sessions_of(call.caller)[call.session_id] = call

    def _sessions_of(self, addr: int) -> dict[int, _Call]:
        sessions = self._by_session.get(addr)
        if sessions is None:
            sessions = self._by_session[addr] = {}
        return sessions

    def _row(self, call: _Call) -> dict[str, Any]:
        nat = self.world.realism.nat
        kinds = ((nat.kinds[call.caller], nat.kinds[call.callee]) if nat is not None and call.caller >= 0
                 else (OPEN, OPEN))
        success = call.reason == "talking"
        if success and None in (call.found, call.ringing, call.talking, call.media):
            success, call.reason = False, "incomplete"  # a phase unseen: never expected; counted
        row = {
            "start": call.start,
            "caller": call.caller,
            "callee": call.callee,
            "caller_nat": KIND_NAMES[kinds[0]],
            "callee_nat": KIND_NAMES[kinds[1]],
            "reachable": call.reason not in NOT_PLACED and reachable(*kinds),
            "success": success,
            "end_reason": call.reason,
            "rendezvous_overlap": call.overlap,
        }
        if self.study.relays:
            row["reachable"] = call.reason not in NOT_PLACED and reachable(*kinds, call.offers)
            row["relay"] = call.relay if success else None
            row["caller_relays"] = call.held
        if self.study.families:
            families = nat.families
            row["caller_family"] = FAMILY_NAMES[families[call.caller]]
            row["callee_family"] = FAMILY_NAMES[families[call.callee]]
            row["path"] = call.reason not in NOT_PLACED and path_exists(
                nat, call.caller, call.callee, self.study.relays)
        if not success:
            return row | dict.fromkeys(TIMES, math.nan)
        punched = call.punched if call.punch_needed and call.punched is not None else None
        after_punch = max(call.found, punched) if punched is not None else call.found
        ms = 1000.0
        return row | {
            "setup_ms": (call.media - call.start) * ms,
            "lookup_ms": (call.found - call.start) * ms,
            "punch_ms": (punched - call.found) * ms if punched is not None else 0.0,
            "key_exchange_ms": (call.ringing - after_punch) * ms,
            "ring_ms": (call.talking - call.ringing) * ms,
            "first_media_ms": (call.media - call.talking) * ms,
        }


def summarize(study: CallStudy, rows: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    ok = [r for r in rows if r["success"]]
    reachable_rows = [r for r in rows if r["reachable"]]
    setup = [r["setup_ms"] for r in ok]

    def median(key: str, subset: list[dict[str, Any]] = ok) -> float:
        values = [r[key] for r in subset]
        return statistics.median(values) if values else math.nan

    punched = [r for r in ok if r["callee_nat"] == "filtering"]
    reasons: dict[str, int] = {}
    for r in rows:
        reasons[r["end_reason"]] = reasons.get(r["end_reason"], 0) + 1
    return {
        "nodes": study.nodes,
        "calls": len(rows),
        "mode": "directory" if study.directory else "dht",
        "success_rate": len(ok) / len(rows) if rows else math.nan,
        "reachable_calls": len(reachable_rows),
        "reachable_success_rate": (sum(r["success"] for r in reachable_rows) / len(reachable_rows)
                                   if reachable_rows else math.nan),
        "setup_median_ms": statistics.median(setup) if setup else math.nan,
        "setup_p90_ms": percentile(setup, 90),
        "setup_p99_ms": percentile(setup, 99),
        "lookup_median_ms": median("lookup_ms"),
        "punch_median_ms": median("punch_ms", punched),
        "key_exchange_median_ms": median("key_exchange_ms"),
        "ring_median_ms": median("ring_ms"),
        "first_media_median_ms": median("first_media_ms"),
        "end_reasons": reasons,
        "seed": study.seed,
        "wire": study.wire_mode,
        "wall_s": round(wall_s, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def relay_load(nodes: list[Any], rows: list[dict[str, Any]],
               talk: tuple[dict[int, int], dict[int, int]] | None = None) -> dict[str, Any]:
    """How the relays' work spread, at the end of a run: over the nodes that serve (public,
    `[relay] serve = auto`), the calls each carried (rows' `relay`), the allocations each holds
    and the DATA each forwarded (datagrams, bytes); a list of each node's figures too. With
    `talk` (relayed_talk: each relay's most calls at once and busiest second's bytes), those
    and the DATA each dropped over its caps (TALK_RELAY_FIELDS)."""
    calls: dict[int, int] = {}
    for row in rows:
        if row.get("relay") is not None:
            calls[row["relay"]] = calls.get(row["relay"], 0) + 1
    per_relay = []
    for addr, node in enumerate(nodes):
        layer = node.relay if node is not None else None
        if layer is None or not layer.serving:
            continue
        server, stats = layer.server, layer.stats
        per_relay.append({"addr": addr, "calls": calls.get(addr, 0),
                          "allocations": len(server.allocations) if server is not None else 0,
                          "forwarded": stats["forwarded"],
                          "forwarded_bytes": stats["forwarded_bytes"]})
        if talk is not None:
            per_relay[-1] |= {"peak_calls": talk[0].get(addr, 0),
                              "peak_bytes_per_s": talk[1].get(addr, 0),
                              "over_rate": stats["over_allocation_rate"] + stats["over_relay_rate"]}

    def spread(key: str) -> dict[str, float]:
        values = sorted(r[key] for r in per_relay)
        if not values:
            return {"mean": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan,
                    "max": 0, "zero_share": math.nan}
        return {"mean": statistics.fmean(values), "p50": percentile(values, 50),
                "p90": percentile(values, 90), "p99": percentile(values, 99),
                "max": values[-1], "zero_share": sum(v == 0 for v in values) / len(values)}

    held = [n for n in nodes if n is not None and n.needs_relay]
    extra = {} if talk is None else {
        "relay_peak_calls": spread("peak_calls"),
        "relay_peak_bytes_per_s": spread("peak_bytes_per_s"),
        "relay_over_rate_total": sum(r["over_rate"] for r in per_relay),
    }
    return extra | {
        "relayed_calls": sum(calls.values()),
        "relays_serving": len(per_relay),
        "relay_calls": spread("calls"),
        "relay_allocations": spread("allocations"),
        "relay_forwarded": spread("forwarded"),
        "relay_forwarded_bytes": spread("forwarded_bytes"),
        "relay_forwarded_bytes_total": sum(r["forwarded_bytes"] for r in per_relay),
        "natted_holding": (sum(len(n.relays_held()) > 0 for n in held) / len(held)
                           if held else math.nan),
        "per_relay": per_relay,
    }


def run_call_study(study: CallStudy, progress: Progress | None = None) -> CallResult:
    """Build, converge and place the calls; deterministic for a given study (seed included)."""
    return _CallStudyRun(study, progress).run()


def study_parameters(study: CallStudy) -> dict[str, Any]:
    return asdict(study) | {"wire_mode": study.wire_mode}
