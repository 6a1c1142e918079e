"""Keeping a node in the network: the join-retry rule, and rejoining while the table is empty
or the latest join failed.

One rule for everyone who joins (the daemon, the simulator, every study): after a join that
found nobody, try again after `JoinRetry.delay(failures)`: `first` seconds for the first `quick`
failures (a lost datagram, a bootstrap node that was restarting), then doubling up to `longest`
(offline, or every bootstrap contact gone: do not hammer them). The studies retry their
one-shot joins after `JOIN_RETRY_DELAY`, the rule's first delay.

`Rejoin` runs the rule inside a `Node` (`Node.keep_joined`): sans-I/O, with its own deadline;
the node joins through the bootstrap contacts (and its table) whenever the deadline has passed
and either its routing table is empty or its latest join failed, one join at a time. The second
case: a node whose join found nobody (its bootstrap nodes were not up yet) and that someone
contacted since has a table of one or two entries; it keeps joining, with the back-off, until a
join succeeds. NAT keep-alives and address probes are the traversal layer's timer
(kadtalk.node.traversal), started by the first successful join. With `storage.keep_mailbox` on,
each successful join also publishes the node's prekey and fetches its mailbox, again every
`StorageSettings.mailbox_interval` (kadtalk.node.storage: StorageLayer.joined). Behind a NAT
(or IPv6 firewall) the node also looks up its own ID now and then (`Rejoin.hood_at`, HOOD_FIRST):
peers that join near its ID after it cannot admit it otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .routing.events import Joined


@dataclass(frozen=True, slots=True)
class JoinRetry:
    first: float = 1.0  # s before retrying after each of the first `quick` failed joins
    quick: int = 5
    longest: float = 60.0  # s: the delay doubles after the quick retries, up to this

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.longest or self.quick < 0:
            raise ValueError("need 0 < first <= longest and quick >= 0")

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failed joins in a row (0: after a success)."""
        return min(self.first * 2.0 ** max(0, failures - self.quick), self.longest)


JOIN_RETRY = JoinRetry()
JOIN_RETRY_DELAY = JOIN_RETRY.first  # the studies' retry of a join that found nobody

# A node behind a filtering NAT or firewall looks up its own ID (`RoutingLayer.
# refresh_neighbourhood`) this long after each successful join, then after twice the last wait,
# up to HOOD_LONGEST: peers that join near its ID after it cannot admit it (their requests do
# not pass its NAT), so without this the nearest peers to its ID, where callers' lookups end and
# their rendezvous are, would not hold it (docs/design-decisions.md "A NATed node refreshes its
# neighbourhood"). A growing network's newcomers come fastest early; at HOOD_LONGEST, one
# lookup (~50 datagrams with the answers: 21 requests median at 300 peers) every 10 min against
# the keep-alives' 16 probes and answers every 20 s: ~5 % more of a NATed node's upkeep.
HOOD_FIRST = 60.0
HOOD_LONGEST = 600.0
HOOD_BUSY = 5.0  # a look-up refused because max_lookups run is tried again this much later


class Rejoin:
    """When a node joins (again) through its bootstrap contacts: while its routing table is
    empty, and after a failed join until one succeeds (`failures` > 0), whatever the table
    holds by then (contacts that found us are not a join of ours: the next join asks them too,
    and a join that ends with a contact in the table succeeds, so this costs one join)."""

    __slots__ = ("bootstrap", "retry", "failures", "joined", "due", "running", "hood_at",
                 "hood_wait")

    def __init__(self, bootstrap: Sequence[Any], retry: JoinRetry = JOIN_RETRY, now: float = 0.0):
        self.bootstrap = list(bootstrap)
        self.retry = retry
        self.failures = 0  # failed joins in a row (a join that could not start counts)
        self.joined = False  # the latest join found contacts
        self.due = now  # no join before this
        self.running: int | None = None  # lookup id of the join under way
        # next look-up of our own ID (behind a NAT: `hood_done`); also for a node that starts
        # with a table (saved contacts, the simulator's loaded tables) and so never joins
        self.hood_at = now + HOOD_FIRST
        self.hood_wait = HOOD_FIRST

    def get_timer(self, table_size: int) -> float | None:
        """The next join's time, while one is wanted (`table_size` 0, or the latest join
        failed) and none runs."""
        if (table_size and not self.failures) or self.running is not None or not self.bootstrap:
            return None
        return self.due

    def wants_join(self, table_size: int, now: float) -> bool:
        deadline = self.get_timer(table_size)
        return deadline is not None and now >= deadline

    def started(self, lookup_id: int | None, now: float) -> None:
        """A join started (`lookup_id`), or could not (None: too many lookups; retry later)."""
        self.running = lookup_id
        if lookup_id is None:
            self.failures += 1
            self.due = now + self.retry.delay(self.failures)

    def finished(self, event: Joined) -> None:
        """Any join's outcome (ours or one the node's owner started) moves the back-off."""
        if event.lookup_id == self.running:
            self.running = None
        self.joined = event.success
        self.failures = 0 if event.success else self.failures + 1
        self.due = event.finished + self.retry.delay(self.failures)
        if event.success:  # a new neighbourhood: looked at again soon, then less and less often
            self.hood_wait = HOOD_FIRST
            self.hood_at = event.finished + HOOD_FIRST

    def hood_done(self, now: float) -> None:
        """The neighbourhood look-up due now went (or was not needed): the next after twice
        the last wait, at most HOOD_LONGEST."""
        self.hood_wait = min(2 * self.hood_wait, HOOD_LONGEST)
        self.hood_at = now + self.hood_wait

    def hood_busy(self, now: float) -> None:
        """The look-up due now could not start (too many lookups run): again after HOOD_BUSY,
        the wait unchanged."""
        self.hood_at = now + HOOD_BUSY
