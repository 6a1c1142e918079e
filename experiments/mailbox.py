"""The offline-delivery study: sealed mailbox messages under churn, whole nodes (issue 14).

N simulated peers run the real `Node` (routing, NAT traversal, session, value storage) on the
SimPy driver, on the shared harness (experiments/harness/: world, workload, recorder). Every
node keeps its mailbox as the daemon does (app/mailbox.py): `StorageLayer.keep_mailbox` with
the prekeys it kept before and the boxes it acknowledged, so that after each successful join
it publishes its prekey and fetches its mailbox, then again every `mailbox_interval`; each box
that opens is acknowledged (a DELETE to its storers). What a node stores for others lives in
memory, as in the daemon: a node that leaves (churn) comes back empty-handed.

Workload: `messages` sends at Poisson times over the first half of the time after `warmup`
(most recipients have the rest of the horizon to come back). At each, a sender among the
peers online and joined writes to a recipient offline at that moment (the case the study is
about; a live session is out of scope) that has published a prekey before (a recipient never
seen cannot be written to): `StorageLayer.mail`, as the daemon's app/mailbox.py does. With
`churn="none"` nobody is offline; the message still goes through the mailbox, to any peer.

Per message: the store's outcome (MailStored and at how many nodes, or MailFailed's reason;
`sender_left` if the sender left before it knew), whether and when the recipient opened it
(delay from the send), and whether the recipient came back at all after the send, at least
`GRACE` s before the horizon (a join and a fetch take seconds). `delivered_of_returning_share`
counts messages delivered among those whose recipient came back. Under Weibull churn (shape
0.38) about 9 % of sessions last under 5 s, too short for a join and a fetch, so that share is
bounded by the churn model rather than by the storage. The issue's goal (delivered among the
recipients that stayed online long enough to fetch) is `delivered_of_fetched_share`: of the
messages whose recipient finished a fetch of the message's mailbox key after its store (some
node answered it: `fetched`), the share it opened. A recipient that stayed long enough but
whose storers all lost the message counts as a miss there; one gone before its first fetch
ended counts nowhere.

The join a fast-bootstrap table stands for, and the protocol join realism makes at each
return, happen before the study turns the node's upkeep on (`keep_joined`); the study then
tells the storage layer of it (`StorageLayer.joined`), as the node does after its own joins.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kadtalk.experiments import checkpoint, realism
from kadtalk.experiments.harness.identities import derive_identity
from kadtalk.experiments.harness.recorder import Progress, environment, peak_rss_mb, percentile
from kadtalk.experiments.harness.world import BOOTSTRAPS, SimWorld, wire_mode
from kadtalk.node.identity import Identity
from kadtalk.node.routing.events import Joined
from kadtalk.node.stack import Node
from kadtalk.node.storage import (MailFailed, MailStored, MessageReceived, StorageSettings,
                                  ValuesFound, ValueStored, epoch_of, mailbox_key, prekey_key)
from kadtalk.node.traversal import AddressObserved, TraversalSettings, nat_kind
from kadtalk.sim.latency import MODELS

KEEPALIVE_INTERVAL = TraversalSettings().keepalive_interval
CLOCK_OFFSET = 1_800_000_000.0  # Unix seconds at simulated time 0 (mailbox epochs are wall-clock)
GRACE = 60.0  # s before the horizon a recipient must be back by to count as returning
TAG = b"kadtalk-sim-mail:"  # plaintext prefix; the message's index follows
RECIPIENT_TRIES = 1000  # draws for an offline recipient with a prekey before giving up

ROW_FIELDS = ("index", "sent_s", "sender", "recipient", "stored", "stored_at", "stored_s",
              "returned", "returned_s", "session_s", "fetched", "fetched_s", "delivered", "delay_s")
WALL_CLOCK_FIELDS = frozenset({"wall_s", "peak_rss_mb", "identity_s", "build_s"})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailboxStudy:
    nodes: int = 1000
    messages: int = 100
    seed: int = 1
    hours: float = 24.0  # simulated horizon, from the start of churn
    warmup: float = 600.0  # s of churn before the first send (prekeys get published)
    replicas: int = StorageSettings().replicas
    republish_interval: float = StorageSettings().republish_interval
    mailbox_interval: float = StorageSettings().mailbox_interval
    k: int = 20
    alpha: int = 3
    request_timeout: float = 1.0
    latency: str = "coordinate"
    loss: float = 0.0
    wire: str = "auto"
    bootstrap: str = "fast"
    join_interval: float = 0.02
    settle: float = 30.0
    refresh_on_join: bool = True
    # realism (experiments/realism.py); no NAT: storage reachability is not the question here
    routers: int = 1000
    topology: str = "waxman"
    jitter: float = 0.0
    churn: str = "weibull"
    session: float = 2544.0
    session_shape: float = 0.38
    offline: float = 2544.0
    offline_shape: float = 0.38
    nat_full_cone: float = 0.0
    nat_filtering: float = 0.0
    nat_timeout: float = 120.0
    traffic: bool = False
    cpu_limit: float = 0.0  # s of process CPU after which the run stops early (0: none)
    # the fast bootstrap's tables as joins at different times left them: each bucket's first
    # refresh at random in the second refresh interval, not every bucket of every node at once
    spread_refresh: bool = True

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise ValueError("a mailbox study needs at least 2 nodes")
        if self.messages < 0:
            raise ValueError("messages must be >= 0")
        if not self.hours > 0 or self.warmup < 0:
            raise ValueError("hours must be positive and warmup >= 0")
        if self.warmup + 2 * GRACE >= self.hours * 3600:
            raise ValueError("the horizon must be longer than the warm-up")
        if self.latency not in MODELS or self.latency == "site-matrix":
            raise ValueError("latency must be one of coordinate, sphere, topology, constant")
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(f"bootstrap must be one of {', '.join(BOOTSTRAPS)}")
        self.storage_settings  # noqa: B018 (validates replicas and intervals)
        realism.check(self)

    @property
    def wire_mode(self) -> str:
        return wire_mode(self.nodes, self.wire)

    @property
    def storage_settings(self) -> StorageSettings:
        return StorageSettings(replicas=self.replicas, republish_interval=self.republish_interval,
                               mailbox_interval=self.mailbox_interval)

    @property
    def send_window(self) -> tuple[float, float]:
        """(first, last) send time, from the start of churn."""
        first = self.warmup
        return first, first + (self.hours * 3600 - first) / 2


@dataclass
class MailboxResult:
    study: MailboxStudy
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)


class _Message:
    __slots__ = ("index", "sent", "sender", "recipient", "stored", "stored_at", "stored_time",
                 "key", "returned", "session", "fetched", "delivered")

    def __init__(self, index: int, sent: float, sender: int, recipient: int):
        self.index, self.sent, self.sender, self.recipient = index, sent, sender, recipient
        self.stored: str | None = None  # "ok" or MailFailed's reason
        self.stored_at = 0
        self.stored_time: float | None = None
        self.key = b""  # the mailbox key it was stored under
        self.fetched: float | None = None  # the recipient's first fetch of that key after
        self.returned: float | None = None
        self.session = math.nan  # s the recipient stayed online when it came back
        self.delivered: float | None = None


@dataclass(frozen=True)
class Checkpoints:
    """Save the running study to `path` every `every` simulated seconds (after the build), so
    that `resume_mailbox_study(path)` can go on from the last one: a run longer than a working
    session, or one killed, loses at most `every` (experiments/checkpoint.py)."""
    path: Path
    every: float = 3600.0

    def __post_init__(self) -> None:
        if not self.every > 0:
            raise ValueError("the checkpoint interval must be positive")


class _MailboxRun:
    def __init__(self, study: MailboxStudy, progress: Progress | None,
                 checkpoints: Checkpoints | None = None):
        self.study = study
        self.progress = progress
        self.checkpoints = checkpoints
        self.wall_start = time.perf_counter()
        self.wall_before = self.cpu_before = 0.0  # spent by the processes before a resume
        self.segments = 1  # processes the run has taken (1 + resumes)
        self.identities: dict[int, Identity] = {}
        self.storage_settings = study.storage_settings
        # storage lookups (all, and our own mailbox's fetches), and the periodic mailbox
        # fetches that asked the last fetch's storers with no lookup, and the storers'
        # republication lookups: of nodes gone, and live
        self.lookups = {"storage_lookups": 0, "mailbox_lookups": 0, "mailbox_direct": 0,
                        "republish_lookups": 0}
        self.live_stats: dict[int, Any] = {}
        self.world = SimWorld(study, ids_hook=self._with_identities, new_node=self._new_node,
                              traversal=True)
        self.rng = realism.feature_rng(study.seed, "mailbox")
        self.upkeep_rng = realism.feature_rng(study.seed, "upkeep")
        self.prekey_keys = {addr: prekey_key(identity.node_id)
                            for addr, identity in self.identities.items()}
        # what each address's owner keeps across restarts, as app/mailbox.py does
        self.kept: dict[int, list[tuple[bytes, float]]] = {}
        self.acked: dict[int, list[tuple[bytes, int]]] = {}
        self.published: set[int] = set()  # addresses whose prekey some node took
        self.messages: list[_Message] = []
        self.awaiting: dict[int, list[_Message]] = {}  # recipient -> messages before its return
        self.unfetched: dict[int, list[_Message]] = {}  # recipient -> stored, not fetched since
        self.skipped = 0  # sends with no recipient offline and published, or no sender

    def _with_identities(self, ids: list[int]) -> list[int]:
        """A key pair for every node (storage signs, seals and opens with it)."""
        started = time.perf_counter()
        rng = realism.feature_rng(self.study.seed, "identity")
        for addr in range(len(ids)):
            identity = derive_identity(rng)
            ids[addr] = int.from_bytes(identity.node_id, "big")
            self.identities[addr] = identity
        if len(set(ids)) != len(ids):
            raise ValueError("two nodes drew the same ID")
        self.identity_s = time.perf_counter() - started
        return ids

    # -- nodes ----------------------------------------------------------------------------------

    def _new_node(self, addr: int, now: float) -> Node:
        world = self.world
        node = Node(world.ids[addr], world.registry, world.node_rng, world.settings, now,
                    clock_offset=CLOCK_OFFSET, identity=self.identities[addr], traversal=True,
                    storage_settings=self.storage_settings)
        self._fold(addr)
        self.live_stats[addr] = node.storage.stats
        node.storage.keep_mailbox(list(self.kept.get(addr, ())), now,
                                  keep=lambda public, private, made: self._keep(addr, private, made),
                                  acknowledged=list(self.acked.get(addr, ())))
        churn = world.realism.churn
        session = churn.next_at[addr] - now if churn is not None else math.nan  # its leave time
        for message in self.awaiting.pop(addr, ()):
            message.returned = now  # counted if GRACE s before the end at least (`_row`)
            message.session = session
        return node

    def _fold(self, addr: int) -> None:
        """Add the lookups of `addr`'s last node (gone, or at the end) to the totals."""
        stats = self.live_stats.pop(addr, None)
        if stats is not None:
            self.lookups["storage_lookups"] += stats["lookups"]
            self.lookups["mailbox_lookups"] += stats["mailbox_lookups"]
            self.lookups["mailbox_direct"] += stats["mailbox_direct"]
            self.lookups["republish_lookups"] += stats["republish_lookups"]

    def _keep(self, addr: int, private: bytes, made: float) -> bool:
        self.kept.setdefault(addr, []).append((private, made))
        return True

    def _upkeep(self, addr: int, joined: bool) -> None:
        """The daemon's upkeep (`Node.keep_joined`) on, and the join just made (or the one a
        loaded table stands for) told to storage: prekey published, mailbox fetched."""
        world = self.world
        node = world.driver.nodes[addr]
        if node is None or node.rejoin is not None:
            return
        bootstrap = [self.upkeep_rng.randrange(self.study.nodes) for _ in range(3)]

        def start(n: Node, now: float) -> None:
            n.keep_joined(bootstrap, now)
            if joined:
                n.storage.joined(now)

        world.command(addr, start)

    # -- the run --------------------------------------------------------------------------------

    @property
    def horizon(self) -> float:
        return self.study.hours * 3600

    def run(self) -> MailboxResult:
        study, world = self.study, self.world
        world.attach(self._on_event)
        start = world.converge(self.progress)
        churn_start = start - study.settle  # realism starts churn then
        self.churn_start = churn_start
        if study.bootstrap != "protocol" and study.spread_refresh:
            self._spread_refresh()
        if study.bootstrap != "protocol":
            rng = realism.feature_rng(study.seed, "keepalive")
            for addr in range(study.nodes):
                world.at(rng.random() * KEEPALIVE_INTERVAL, lambda a=addr: self._upkeep(a, True))
        first, last = study.send_window
        rate = study.messages / (last - first) if study.messages else 1.0
        when = churn_start + first
        for index in range(study.messages):
            world.at(when, lambda i=index: self._send(i))
            when += self.rng.expovariate(rate)
        end = churn_start + self.horizon
        self._tick(end)
        env = world.env
        env.run(until=start)
        self.build_s = time.perf_counter() - self.wall_start
        self.horizon_at = end
        return self.go_on()

    def go_on(self) -> MailboxResult:
        """From the end of the build (or a checkpoint) to the horizon, and the result."""
        study, world, end = self.study, self.world, self.horizon_at
        self.end = self._run_until(end)
        rows = [self._row(m) for m in self.messages]
        for addr in list(self.live_stats):
            self._fold(addr)
        summary = summarize(study, rows, self._wall(), self.skipped) | {
            "identity_s": round(self.identity_s, 3),
            "build_s": round(self.build_s, 3),
            "sim_hours": round((self.end - self.churn_start) / 3600, 3),
            "cpu_s": round(self._cpu(), 1),
            "processes": self.segments,
            "stopped_early": self.end < end,
            "prekeys_published": len(self.published),
        } | self.lookups | world.realism.summary(world.network)
        return MailboxResult(study, rows, summary, environment())

    def _spread_refresh(self) -> None:
        """Tables loaded at 0 (the fast bootstrap) all count every bucket as looked into then,
        so every node would refresh all its idle buckets at the same instant one
        `refresh_interval` later: tens of thousands of lookups at once at 10^4 nodes (measured:
        the ten simulated minutes after 3,600 s cost 589 s of CPU, those before and after
        66-100 s), and again each hour among the nodes still up. Nodes that joined at different times refresh
        at different times: each bucket is marked as looked into at a random time in the first
        interval, so its first refresh falls at random in the second (a node's tables then
        refresh as its own lookups touch them, as in any run)."""
        world = self.world
        rng = realism.feature_rng(self.study.seed, "refresh")
        interval = world.settings.refresh_interval
        for node in world.driver.nodes:
            if node is None:
                continue
            table = node.routing.table
            for bucket in range(table.bucket_count()):
                table.touch(table.random_id_in_bucket(bucket, rng), interval * (1.0 - rng.random()))

    def _run_until(self, end: float) -> float:
        """Run to `end`, or, in steps of a simulated minute, until `cpu_limit` s of CPU have
        passed: returns where the run stopped (messages are judged there). With checkpoints,
        in steps that end at each one. Steps change no result: `env.run(until=t)` adds one
        event, at t, ahead of the others due then, and the order of the others stays."""
        env, limit, checkpoints = self.world.env, self.study.cpu_limit, self.checkpoints
        if not limit and checkpoints is None:
            env.run(until=end)
            return end
        due = math.inf
        while env.now < end:
            step = end
            if limit:
                step = min(step, env.now + 60.0)
            if checkpoints is not None:
                due = (math.floor(env.now / checkpoints.every) + 1) * checkpoints.every
                step = min(step, due)
            env.run(until=step)
            if limit and self._cpu() >= limit:
                break
            if env.now == due and env.now < end:
                self.save(checkpoints.path)
        return env.now

    def _cpu(self) -> float:
        return self.cpu_before + time.process_time()

    def _wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.wall_start

    def save(self, path: Path) -> None:
        """Checkpoint the run (experiments/checkpoint.py); the progress callback is not saved.
        A save that fails is logged and the run goes on (the previous checkpoint stays whole)."""
        started = time.perf_counter()
        wall, cpu = self.wall_before, self.cpu_before
        self.wall_before, self.cpu_before = self._wall(), self._cpu()
        try:
            size = checkpoint.save(self, path, skip=[self.progress])
        except (checkpoint.CheckpointError, OSError) as error:
            log.error("checkpoint at simulated %.0f s failed, the run goes on: %s",
                      self.world.env.now, error)
            return
        finally:
            self.wall_before, self.cpu_before = wall, cpu
        log.info("checkpoint %s at simulated %.0f s: %.0f MB in %.1f s", path, self.world.env.now,
                 size / 1e6, time.perf_counter() - started)
        if self.progress is not None:
            self.progress("checkpoint", 1, 1)

    def _tick(self, end: float) -> None:
        """Progress in simulated minutes (scheduled with or without a callback: a checkpoint
        may be resumed with one or without; the ticks change no result)."""
        total = int(end // 60)

        def tick(minute: int) -> None:
            if self.progress is not None:
                self.progress("minutes", minute, total)
            if minute < total:
                self.world.at((minute + 1) * 60, lambda: tick(minute + 1))

        self.world.at(0, lambda: tick(0))

    def _send(self, index: int) -> None:
        world = self.world
        churning = world.realism.started
        sender = world.realism.ready.choice(self.rng) if churning else \
            self.rng.randrange(self.study.nodes)
        recipient = self._recipient(sender) if sender >= 0 else -1
        if recipient < 0:
            self.skipped += 1
            return
        message = _Message(index, world.env.now - self.churn_start, sender, recipient)
        self.messages.append(message)
        if world.driver.nodes[recipient] is None:
            self.awaiting.setdefault(recipient, []).append(message)
        else:
            message.returned = world.env.now  # online already (no churn)
        recipient_id = self.identities[recipient].node_id
        text = TAG + str(index).encode()

        def mail(n: Node, now: float) -> None:
            n.storage.mail(recipient_id, text, now, tag=index)
            n.pump_storage(now)

        world.command(sender, mail)
        if self.progress:
            self.progress("messages", len(self.messages) + self.skipped, self.study.messages)

    def _recipient(self, sender: int) -> int:
        """A peer offline now (any peer without churn) that published a prekey before."""
        nodes = self.world.driver.nodes
        churning = self.world.realism.started
        for _ in range(RECIPIENT_TRIES):
            addr = self.rng.randrange(self.study.nodes)
            if addr != sender and addr in self.published and (
                    not churning or nodes[addr] is None):
                return addr
        return -1

    # -- events ---------------------------------------------------------------------------------

    def _on_event(self, addr: int, event: Any) -> None:
        kind = type(event)
        if kind is Joined:
            if event.success:
                self._upkeep(addr, True)
        elif kind is ValueStored:
            if event.key == self.prekey_keys[addr]:
                self.published.add(addr)
        elif kind is MailStored or kind is MailFailed:
            message = self._message(event.tag)
            if message is not None and message.sender == addr and message.stored is None:
                if kind is MailStored:
                    message.stored, message.stored_at = "ok", event.stored
                    message.stored_time = event.at
                    message.key = mailbox_key(event.recipient, epoch_of(
                        CLOCK_OFFSET + event.at, self.storage_settings.epoch_length))
                    self.unfetched.setdefault(message.recipient, []).append(message)
                else:
                    message.stored = event.reason
        elif kind is MessageReceived:
            self._received(addr, event)
        elif kind is ValuesFound:
            self._fetched(addr, event)
        elif kind is AddressObserved:
            node = self.world.driver.nodes[addr]  # no NAT here: every local address is public
            if node is not None and node.traversal is not None:
                node.traversal.set_nat(nat_kind(event, addr))

    def _message(self, index: Any) -> _Message | None:
        if type(index) is not int:
            return None
        for message in reversed(self.messages):  # sends are appended in index order
            if message.index == index:
                return message
            if message.index < index:
                return None
        return None

    def _fetched(self, addr: int, event: ValuesFound) -> None:
        """A fetch by `addr` that some node answered, of a key a message to it was stored
        under after the store: from then on the message is the storers' to lose."""
        waiting = self.unfetched.get(addr)
        if not waiting or not event.answered:
            return
        left = []
        for message in waiting:
            if message.key == event.key and message.stored_time <= event.at:
                message.fetched = event.at
            else:
                left.append(message)
        self.unfetched[addr] = left

    def _received(self, addr: int, event: MessageReceived) -> None:
        """A box opened: the recipient keeps it and acknowledges it (app/mailbox.py)."""
        text = event.plaintext
        if text.startswith(TAG):
            message = self._message(int(text[len(TAG):]))
            if message is not None and message.recipient == addr and message.delivered is None:
                message.delivered = self.world.env.now
                if message.returned is None:
                    message.returned = message.delivered
        self.acked.setdefault(addr, []).append((event.vid, event.epoch))

        def acknowledge(n: Node, now: float) -> None:
            n.storage.acknowledge(event.epoch, [event.vid], now)
            n.pump_storage(now)

        self.world.command(addr, acknowledge)

    def _row(self, m: _Message) -> dict[str, Any]:
        stored = m.stored
        if stored is None:
            stored = "unfinished" if self.world.driver.nodes[m.sender] is not None else "sender_left"
        base = self.churn_start
        returned = m.returned is not None and (m.returned <= self.end - GRACE
                                               or m.delivered is not None)
        return {
            "index": m.index,
            "sent_s": m.sent,
            "sender": m.sender,
            "recipient": m.recipient,
            "stored": stored,
            "stored_at": m.stored_at,
            "stored_s": m.stored_time - base if m.stored_time is not None else math.nan,
            "returned": returned,
            "returned_s": m.returned - base if returned else math.nan,
            "session_s": m.session if returned else math.nan,
            "fetched": m.fetched is not None,
            "fetched_s": m.fetched - base if m.fetched is not None else math.nan,
            "delivered": m.delivered is not None,
            "delay_s": m.delivered - base - m.sent if m.delivered is not None else math.nan,
        }


def summarize(study: MailboxStudy, rows: list[dict[str, Any]], wall_s: float,
              skipped: int = 0) -> dict[str, Any]:
    delivered = [r for r in rows if r["delivered"]]
    returning = [r for r in rows if r["returned"]]
    fetched = [r for r in rows if r["fetched"]]
    delays = [r["delay_s"] for r in delivered]
    reasons: dict[str, int] = {}
    for r in rows:
        reasons[r["stored"]] = reasons.get(r["stored"], 0) + 1
    stored_at = [r["stored_at"] for r in rows if r["stored"] == "ok"]
    return {
        "nodes": study.nodes,
        "messages": len(rows),
        "skipped": skipped,
        "delivered": len(delivered),
        "delivered_share": len(delivered) / len(rows) if rows else math.nan,
        "returning": len(returning),
        "delivered_of_returning_share": (sum(r["delivered"] for r in returning) / len(returning)
                                         if returning else math.nan),
        "fetched": len(fetched),
        "delivered_of_fetched_share": (sum(r["delivered"] for r in fetched) / len(fetched)
                                       if fetched else math.nan),
        "delay_median_s": statistics.median(delays) if delays else math.nan,
        "delay_p90_s": percentile(delays, 90),
        "delay_p99_s": percentile(delays, 99),
        "stored_failed": sum(1 for r in rows if r["stored"] != "ok"),
        "stored_at_median": statistics.median(stored_at) if stored_at else math.nan,
        "store_outcomes": reasons,
        "replicas": study.replicas,
        "republish_interval": study.republish_interval,
        "mailbox_interval": study.mailbox_interval,
        "hours": study.hours,
        "churn": study.churn,
        "seed": study.seed,
        "wire": study.wire_mode,
        "wall_s": round(wall_s, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def log_progress(every: float, out: Any) -> Progress:
    """Progress as lines for a log (a long run in the background): each phase's start and end,
    and every `every` simulated minutes, with process CPU, wall time and peak RSS so far."""
    started = time.perf_counter()

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "minutes":
            if done % max(1, round(every)) and done != total:
                return
        elif done not in (0, 1, total):
            return
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {phase} {done}/{total}"
                  f" cpu {time.process_time():.0f} s wall {time.perf_counter() - started:.0f} s"
                  f" rss {peak_rss_mb():.0f} MB\n")
        out.flush()

    return progress


def run_mailbox_study(study: MailboxStudy, progress: Progress | None = None,
                      checkpoints: Checkpoints | None = None) -> MailboxResult:
    """Build, converge, churn and mail; deterministic in what it counts for a given study
    (checkpoints or not, resumed or not)."""
    return _MailboxRun(study, progress, checkpoints).run()


def resume_mailbox_study(path: Path, progress: Progress | None = None,
                         checkpoints: Checkpoints | None = None) -> MailboxResult:
    """Go on from a checkpoint to the horizon (and keep checkpointing if `checkpoints`)."""
    started = time.perf_counter()  # the load counts in wall_s
    run = checkpoint.load(path)
    if not isinstance(run, _MailboxRun):
        raise checkpoint.CheckpointError(f"{path} is not a mailbox study's checkpoint")
    run.progress, run.checkpoints = progress, checkpoints
    run.wall_start = started
    run.segments += 1
    log.info("resumed %s at simulated %.0f s", path, run.world.env.now)
    return run.go_on()


def study_parameters(study: MailboxStudy) -> dict[str, Any]:
    return asdict(study) | {"wire_mode": study.wire_mode}


def delay_cdf(rows: list[dict[str, Any]], path: Any, title: str = "") -> Any:
    """CDF of the delay from send to delivery over the messages whose recipient came back: the
    curve ends at their delivered share."""
    from matplotlib.figure import Figure

    returning = [r for r in rows if r["returned"]]
    delays = sorted(r["delay_s"] / 60 for r in returning if r["delivered"])
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    if delays:
        n = len(returning)
        median = delays[len(delays) // 2]
        ax.step(delays, [(i + 1) / n for i in range(len(delays))], where="post",
                label=f"median {median:.1f} min, {len(delays) / n:.2%} of {n} delivered")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("delay from send to delivery (simulated minutes)")
    ax.set_ylabel("fraction of messages whose recipient came back")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title or "offline message delivery")
    fig.savefig(path, dpi=120)
    return path


# -- command line (kadtalk sim mailbox) ------------------------------------------------------------


def add_parser(sim: Any) -> None:
    from pathlib import Path

    from kadtalk.cli import _at_least_two, _fraction, _nonnegative, _nonnegative_int, _positive

    p = sim.add_parser(
        "mailbox", help="offline message delivery under churn (whole nodes, DHT mailboxes)",
        description="Simulate N whole kadtalk nodes with value storage under churn; senders mail M "
        "messages at Poisson times to recipients offline at that moment (sealed to their prekey, "
        "stored at the R nodes closest to their mailbox key); each recipient fetches its mailbox "
        "at each join and every --mailbox-interval. Prints the share delivered (of all, and of "
        "those whose recipient came back before the horizon) and the delay. See "
        "docs/simulation.md.")
    p.add_argument("--nodes", type=_at_least_two, default=1000, help="simulated peers (default 1000)")
    p.add_argument("--messages", type=_nonnegative_int, default=100, help="messages (default 100)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hours", type=_positive, default=24.0,
                   help="simulated hours of churn (default 24); sends fall in the first half "
                   "after the warm-up")
    p.add_argument("--warmup", type=_nonnegative, default=600.0, metavar="SECONDS",
                   help="churn before the first send (default 600)")
    p.add_argument("--churn", choices=["weibull", "exponential", "none"], default="weibull")
    p.add_argument("--session", type=_positive, default=2544.0, metavar="SECONDS")
    p.add_argument("--session-shape", type=_positive, default=0.38, metavar="K")
    p.add_argument("--offline", type=_positive, default=2544.0, metavar="SECONDS")
    p.add_argument("--offline-shape", type=_positive, default=0.38, metavar="K")
    settings = StorageSettings()
    p.add_argument("--replicas", type=int, default=settings.replicas,
                   help=f"nodes a value is stored at (default {settings.replicas})")
    p.add_argument("--republish-interval", type=_positive, default=settings.republish_interval,
                   metavar="SECONDS", help="s between a storer's republications (default "
                   f"{settings.republish_interval:g})")
    p.add_argument("--mailbox-interval", type=_positive, default=settings.mailbox_interval,
                   metavar="SECONDS", help="s between a recipient's fetches (default "
                   f"{settings.mailbox_interval:g})")
    p.add_argument("--latency", choices=["coordinate", "sphere", "constant"], default="coordinate")
    p.add_argument("--loss", type=_fraction, default=0.0, help="datagram loss rate (default 0)")
    p.add_argument("--cpu-limit", type=_nonnegative, default=0.0, metavar="SECONDS",
                   help="stop at the end of the simulated minute in which this much process CPU has "
                   "passed and judge the messages there (default 0: run to the horizon)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE",
                   help="save the running study to FILE every --checkpoint-every simulated minutes "
                   "(a long run that is stopped goes on with --resume FILE, same results)")
    p.add_argument("--checkpoint-every", type=_positive, default=60.0, metavar="MINUTES",
                   help="simulated minutes between checkpoints (default 60)")
    p.add_argument("--resume", type=Path, metavar="FILE",
                   help="go on from a checkpoint to its horizon (the study's parameters are the "
                   "checkpoint's: the other study options are ignored; only load files you wrote)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write mailbox.csv, params.json, delay_cdf.png")
    p.add_argument("--json", action="store_true", help="last output line is one JSON summary")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--log-every", type=_nonnegative, default=0.0, metavar="MINUTES",
                   help="without a terminal: one progress line on stderr every this many "
                   "simulated minutes, with process CPU and wall time so far (default 0: none)")


def main(args: Any) -> int:
    import json
    import sys

    from kadtalk.cli import _print_table, _progress_bar, _write_study

    study = MailboxStudy(
        nodes=args.nodes, messages=args.messages, seed=args.seed, hours=args.hours,
        warmup=args.warmup, replicas=args.replicas, republish_interval=args.republish_interval,
        mailbox_interval=args.mailbox_interval, latency=args.latency, loss=args.loss,
        churn=args.churn, session=args.session, session_shape=args.session_shape,
        offline=args.offline, offline_shape=args.offline_shape, cpu_limit=args.cpu_limit)
    checkpoints = (Checkpoints(args.checkpoint, args.checkpoint_every * 60)
                   if args.checkpoint else None)
    if checkpoints is not None and not checkpoints.path.parent.is_dir():
        print(f"kadtalk sim mailbox: no directory {checkpoints.path.parent} for the checkpoint "
              "(create it, or name a file in an existing one)", file=sys.stderr)
        return 2

    def run(progress: Progress | None) -> MailboxResult:
        if args.resume:
            return resume_mailbox_study(args.resume, progress, checkpoints)
        return run_mailbox_study(study, progress, checkpoints)

    show = not args.no_progress and sys.stderr.isatty()
    try:
        if not show and args.log_every:
            result = run(log_progress(args.log_every, sys.stderr))
        else:
            result = _progress_bar(run, show)
    except (checkpoint.CheckpointError, OSError) as error:
        print(f"kadtalk sim mailbox: {error}", file=sys.stderr)
        return 1
    study = result.study
    summary = result.summary
    _print_table(f"offline delivery, {summary['nodes']:,} simulated nodes", summary, (
        "messages", "skipped", "delivered_share", "returning", "delivered_of_returning_share",
        "fetched", "delivered_of_fetched_share",
        "delay_median_s", "delay_p90_s", "delay_p99_s", "stored_failed", "stored_at_median",
        "prekeys_published", "storage_lookups", "mailbox_lookups", "mailbox_direct", "republish_lookups", "datagrams",
        "sim_hours", "cpu_s", "departures", "returns", "wall_s", "peak_rss_mb"))
    print("store outcomes: " + ", ".join(f"{k} {v}" for k, v in
                                         sorted(summary["store_outcomes"].items())))
    if args.out:
        _write_study(args.out, "mailbox.csv", ROW_FIELDS, study_parameters(study), result)
        delay_cdf(result.rows, args.out / "delay_cdf.png",
                  f"offline delivery, N = {study.nodes:,}, {study.hours:g} h, R = {study.replicas}")
        print(f"wrote {args.out}/mailbox.csv, params.json, delay_cdf.png")
    if args.json:
        print(json.dumps(summary))
    return 0
