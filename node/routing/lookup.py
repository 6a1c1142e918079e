"""One iterative Kademlia lookup as a state machine over contact handles.

The lookup keeps a shortlist sorted by XOR distance to the target. It asks the closest contacts it
has not asked yet, keeping `alpha` requests in flight; every request has its own timeout (the
routing layer reports it), so one slow or dead peer never holds up the others.

Two stop rules:
- FIND_PEER ends as soon as the target's own entry is learned (a call needs nothing more);
- FIND_CLOSEST ends when the `k` closest contacts known have all answered (join, refresh).
Either one also ends when nothing is left to ask; but an urgent FIND_PEER (a call's: one
with `aggressive` or a larger `first`, below) none of whose requests was answered (every one
timed out: a lossy path, or a table of a few contacts whose datagrams were all lost) asks the
same contacts again, up to `LOST_ROUNDS` more times, before it gives up (session 10: at 30 %
loss a call's lookup through three contacts ended `unreachable` after 1.0 s in about one dial
of three). A lookup that heard anyone never repeats a request.

How many requests are in flight: the paper keeps `alpha` in all. With `aggressive` (libtorrent's
aggressive lookups) it keeps `alpha` among the nearest contacts not yet answered: a request
overtaken by `alpha` nearer contacts (asked or to ask) no longer holds them back, so an answer
naming several nearer contacts has them all asked at once. `first` > `alpha` asks that many in
the first round (dead table entries then cost no round of their own). The routing layer sets
both for urgent lookups only (a call's).

Two caps hold whatever the answers say (a responder may name ever nearer contacts, each answer a
fresh ID of its own plus victims' addresses): an aggressive lookup keeps `first` + 2 alpha
requests in flight at most (the paper's rule keeps alpha; max(first, 2 alpha) made the call
study's lookups 27 ms slower at the median, docs/design-decisions.md), and any lookup sends
`max_requests` in all (RoutingSettings.lookup_requests; 0: no cap), after which it ends with
what it has once its requests in flight are over.

A bucket-refresh lookup may aim at filling one bucket rather than at the k closest of its
random target (`fill`, RoutingSettings.refresh_fill): once it knows a contact in the bucket's
range it asks only contacts in that range, and it ends once as many new contacts of the
range have answered as the bucket lacked (each answer's sender then enters the table: its
keyed answer or the address probe it draws admits it), or when `alpha` answers in a row named
no new contact in the range (a round brought nothing: the range is empty or exhausted).

Two options serve the attack studies (docs/security.md):
- `verify`: a check of a learned target entry (standing for the key exchange that follows a
  call's lookup); an entry that fails it is a fake, is never asked, and the lookup goes on;
- `DisjointLookup`: S/Kademlia's d lookups over disjoint sets of nodes.
"""

from __future__ import annotations

from bisect import insort
from enum import IntEnum
from typing import Any, Callable, Iterable

NEW, IN_FLIGHT, ANSWERED, FAILED = 0, 1, 2, 3
LOST_ROUNDS = 2  # FIND_PEER: rounds of asking again when no request was answered at all
_STATE_BITS = 2
_STATE_MASK = 3


class Mode(IntEnum):
    FIND_PEER = 0
    FIND_CLOSEST = 1


# The members as module globals: an enum member read off its class costs about ten times a
# global's on Python 3.11, and `add` asks for every contact of a lookup's first round.
_FIND_PEER, _FIND_CLOSEST = Mode.FIND_PEER, Mode.FIND_CLOSEST


class Lookup:
    __slots__ = (
        "lookup_id", "target", "mode", "started", "k", "alpha",
        "_order", "_status", "in_flight", "rpcs", "timeouts", "found", "hops", "done", "purpose",
        "verify", "rejected", "_slow", "aggressive", "first", "max_requests", "rtt", "rtt_bits",
        "rtt_bit_cost", "rtt_default", "_hints", "_fill", "_fresh", "_lost", "_again", "answers",
    )

    def __init__(
        self, lookup_id: int, target: int, mode: Mode, started: float, k: int, alpha: int,
        purpose: int = 0, aggressive: bool = False, first: int = 0,
    ):
        self.lookup_id = lookup_id
        self.target = target
        self.mode = mode
        self.started = started
        self.k = k
        self.alpha = alpha
        self._order: list[tuple[int, int]] = []  # (distance, handle), sorted
        self._status: dict[int, int] = {}  # handle -> hop << 2 | state
        self.in_flight = 0
        self.rpcs = 0
        self.timeouts = 0
        self.found = -1  # handle of the target, once learned
        self.hops = 0
        self.done = False
        self.purpose = purpose  # who asked: the routing layer's USER, JOIN or REFRESH
        self.verify: Callable[[int], bool] | None = None  # FIND_PEER: is a target entry genuine?
        self.rejected = 0  # target entries `verify` turned down
        self._slow: set[int] | None = None  # in flight, but no longer holding a slot
        self.aggressive = aggressive  # alpha in flight among the nearest, not alpha in all
        self.first = first  # requests in the first round, when more than alpha
        self.max_requests = 0  # requests in all at most (0: no cap)
        # RTT-aware choice (`prefer_fast`): handle -> its expected round trip (s) or None
        self.rtt: Callable[[int], float | None] | None = None
        self.rtt_bits = 0  # candidates this many bits farther than the nearest are eligible
        self.rtt_bit_cost = 0.0  # seconds a candidate's round trip must save per bit farther
        self.rtt_default: Callable[[], float | None] | None = None  # a contact never measured
        self._hints: dict[int, float] | None = None  # handle -> round trip of who named it
        # `fill`: [range_bits, contacts still wanted, new ones in range answered, answers in a
        # row naming no new contact in range, a contact in range known (0/1)]
        self._fill: list[int] | None = None
        self._fresh: set[int] | None = None  # fill: contacts in range learned from answers
        self._lost: list[int] | None = None  # FIND_PEER: asked, timed out (asked again if
        self._again = 0  # ... no request was answered: `LOST_ROUNDS`), and rounds asked again
        self.answers = 0

    def prefer_fast(self, rtt: Callable[[int], float | None], bits: int, bit_cost: float,
                    default: Callable[[], float | None] | None = None) -> None:
        """Among the contacts to ask, choose by expected round trip rather than XOR order alone:
        a contact not yet asked whose distance to the target has at most `bits` more bits than
        the nearest such contact's is as useful (Kademlia's bucket granularity: it shares
        nearly as long a prefix with the target); the lookup asks the ones with the least
        expected round trip + `bit_cost` x (extra bits), ties in XOR order. Expected: rtt(handle)
        (measured), else the hint given with the answer that named it (`add_contacts`), else
        default(), else unknown (last). How many it asks at once stays the rule's (alpha,
        aggressive, caps); only which."""
        self.rtt = rtt
        self.rtt_bits = bits
        self.rtt_bit_cost = bit_cost
        self.rtt_default = default

    def fill(self, range_bits: int, wanted: int) -> None:
        """Aim at filling one bucket: its range is the IDs whose distance to the target is below
        2**range_bits (the target lies in it); `wanted` entries are missing from it. Call before
        contacts are added."""
        self._fill = [range_bits, wanted, 0, 0, 0]
        self._fresh = set()

    def add(self, handle: int, distance: int, hop: int) -> None:
        """A contact to consider, learned at `hop` (1 = from our own table)."""
        if handle in self._status:
            return
        self._status[handle] = hop << _STATE_BITS
        insort(self._order, (distance, handle))
        fill = self._fill
        if fill is not None and not distance >> fill[0]:
            fill[4] = 1
        if distance == 0 and self.mode is _FIND_PEER and self.found < 0:
            self._found(handle, hop)

    def _found(self, handle: int, hop: int) -> None:
        if self.verify is not None and not self.verify(handle):
            self._status[handle] = hop << _STATE_BITS | FAILED  # a fake: never asked
            self.rejected += 1
            return
        self.found = handle
        self.hops = hop - 1
        self.done = True

    def add_contacts(self, contacts: Iterable[tuple[int, Any]], hop: int, intern: Callable[[int, Any], int],
                     own_id: int, hint: float | None = None) -> None:
        """Contacts from one response, learned at `hop` (the same as `add` for each, but this is
        the simulator's hottest loop). `hint`: the answer's round trip, the expected round trip
        of a contact it names that was never measured (RTT-aware choice only)."""
        status = self._status
        order = self._order
        target = self.target
        value = hop << _STATE_BITS
        hints = None
        if hint is not None and self.rtt is not None:
            hints = self._hints
            if hints is None:
                hints = self._hints = {}
        fill = self._fill
        if fill is not None:
            self._add_filling(contacts, hop, intern, own_id, fill)
            return
        for node_id, addr in contacts:
            if node_id == own_id:
                continue
            handle = intern(node_id, addr)
            if handle in status:
                continue
            status[handle] = value
            if hints is not None:
                hints[handle] = hint
            distance = node_id ^ target
            insort(order, (distance, handle))
            if distance == 0 and self.mode is _FIND_PEER and self.found < 0:
                self._found(handle, hop)

    def _add_filling(self, contacts: Iterable[tuple[int, Any]], hop: int,
                     intern: Callable[[int, Any], int], own_id: int, fill: list[int]) -> None:
        """`add_contacts` for a fill lookup: counts whether the answer named a new contact in
        the bucket's range (`alpha` answers in a row that did not end the lookup)."""
        target, bits = self.target, fill[0]
        status = self._status
        fresh = False
        for node_id, addr in contacts:
            if node_id == own_id:
                continue
            handle = intern(node_id, addr)
            if handle in status:
                continue
            distance = node_id ^ target
            status[handle] = hop << _STATE_BITS
            insort(self._order, (distance, handle))
            if not distance >> bits:
                fresh = True
                self._fresh.add(handle)
        if fresh:
            fill[3] = 0
            fill[4] = 1
        else:
            fill[3] += 1

    def next_requests(self) -> list[int]:
        """Handles to ask now (marked in flight); sets `done` when the stop rule holds."""
        if self.done:
            return []
        status = self._status
        alpha = self.alpha if self.rpcs or self.first <= self.alpha else self.first
        aggressive = self.aggressive
        wanted = alpha if aggressive else alpha - self.in_flight
        room = 1 << 30  # requests we may still send (the caps)
        if aggressive:
            room = self.first + 2 * self.alpha - self.in_flight
        if self.max_requests:
            room = min(room, self.max_requests - self.rpcs)
        chosen: list[int] = []
        considered = 0
        settled = True
        slow = self._slow
        fill = self._fill
        if fill is not None and self.rpcs and (fill[2] >= fill[1] or fill[3] >= self.alpha):
            self._finish()  # the bucket has what it lacked, or a round brought nothing
            return []
        in_range = fill[0] if fill is not None and fill[4] else -1
        pool: list[tuple[int, int]] | None = [] if self.rtt is not None else None
        limit = min(wanted, room)  # chosen at most: fewer than wanted and within the room
        k = self.k
        for distance, handle in self._order:
            value = status[handle]
            state = value & _STATE_MASK
            if state == FAILED:
                continue
            if in_range >= 0 and distance >> in_range:
                break  # outside the bucket's range, as is every later one: none can fill it
            if slow and state == IN_FLIGHT and handle in slow:
                settled = False  # may still answer, but holds no place among the k nearest
                continue
            considered += 1
            if state == NEW:
                settled = False
                if pool is not None:  # RTT-aware: which ones is decided below
                    if len(chosen) < limit:
                        chosen.append(handle)
                    pool.append((distance, handle))
                elif len(chosen) < limit:
                    status[handle] = value | IN_FLIGHT
                    chosen.append(handle)
            elif state == IN_FLIGHT:
                settled = False
                if aggressive:
                    wanted -= 1  # holds one of the alpha places among the nearest
                    limit = min(wanted, room)
            if considered >= k or (pool is None and not settled and len(chosen) >= limit):
                break
        if pool is not None and chosen:
            chosen = self._fastest(pool, len(chosen))
            for handle in chosen:
                status[handle] |= IN_FLIGHT
        self.in_flight += len(chosen)
        self.rpcs += len(chosen)
        if settled and not chosen and self.in_flight == 0 or (settled and considered >= self.k) \
                or (self.max_requests and self.rpcs >= self.max_requests and self.in_flight <= 0):
            if self._lost and not self.answers and self._again < LOST_ROUNDS \
                    and (not self.max_requests or self.rpcs < self.max_requests):
                for handle in self._lost:  # nobody answered: the datagrams may just be lost
                    status[handle] = status[handle] & ~_STATE_MASK  # NEW: ask it again
                self._lost = None
                self._again += 1
                return self.next_requests()
            self._finish()
        return chosen

    def _fastest(self, pool: list[tuple[int, int]], count: int) -> list[int]:
        """The `count` handles of `pool` (not yet asked, in XOR order) to ask: the eligible ones
        (at most `rtt_bits` more bits of distance than the nearest) by expected round trip."""
        if len(pool) <= count:
            return [h for _, h in pool]
        rtt, cost, hints = self.rtt, self.rtt_bit_cost, self._hints
        default = self.rtt_default() if self.rtt_default is not None else None
        nearest = pool[0][0].bit_length()
        limit = nearest + self.rtt_bits
        ranked = []
        for position, (distance, handle) in enumerate(pool):
            extra = distance.bit_length() - nearest
            if extra + nearest > limit:
                break  # pool is in XOR order: the rest are farther still
            expected = rtt(handle)
            if expected is None:
                expected = hints.get(handle, default) if hints else default
            ranked.append((expected + cost * extra if expected is not None else float("inf"),
                           position, handle))
        if len(ranked) <= count:
            return [h for _, h in pool[:count]]
        ranked.sort()
        picked = {h for _, _, h in ranked[:count]}
        return [h for _, h in pool if h in picked]

    def _finish(self) -> None:
        self.done = True
        if self.mode is _FIND_CLOSEST:
            for _, handle in self._order:
                if self._status[handle] & _STATE_MASK == ANSWERED:
                    self.hops = self._status[handle] >> _STATE_BITS
                    break

    def hop_of(self, handle: int) -> int:
        return self._status[handle] >> _STATE_BITS

    def is_waiting_for(self, handle: int) -> bool:
        value = self._status.get(handle)
        return value is not None and value & _STATE_MASK == IN_FLIGHT

    def slow(self, handle: int) -> None:
        """`handle` is late: its slot goes to the next contact, and its answer still counts if
        it comes before the request times out (libtorrent's short timeout)."""
        if self._status.get(handle, 0) & _STATE_MASK != IN_FLIGHT:
            return
        if self._slow is None:
            self._slow = set()
        elif handle in self._slow:
            return
        self._slow.add(handle)
        self.in_flight -= 1

    def _release(self, handle: int) -> None:
        """An in-flight request to `handle` ended: free its slot unless it was freed already."""
        if self._slow is not None and handle in self._slow:
            self._slow.discard(handle)
        else:
            self.in_flight -= 1

    def answered(self, handle: int) -> int:
        """Mark a reply from `handle`; return the hop at which its contacts were learned."""
        value = self._status[handle]
        if value & _STATE_MASK == IN_FLIGHT:
            self._release(handle)
        self._status[handle] = (value & ~_STATE_MASK) | ANSWERED
        self.answers += 1
        if self._fresh and handle in self._fresh:
            self._fill[2] += 1  # a new contact in range answered: its probe may admit it
        return (value >> _STATE_BITS) + 1

    def answered_probe(self, handle: int, distance: int) -> None:
        """A reply from a bootstrap address we asked before we knew its ID."""
        self.in_flight -= 1
        value = self._status.get(handle)
        if value is not None:
            if value & _STATE_MASK == NEW:
                self._status[handle] = value | ANSWERED
        else:
            self._status[handle] = 1 << _STATE_BITS | ANSWERED
            insort(self._order, (distance, handle))

    def probe_sent(self) -> None:
        self.in_flight += 1
        self.rpcs += 1

    def probe_failed(self) -> None:
        self.in_flight -= 1
        self.timeouts += 1

    def failed(self, handle: int) -> None:
        value = self._status[handle]
        if value & _STATE_MASK == IN_FLIGHT:
            self._release(handle)
            self.timeouts += 1
            if self.mode is _FIND_PEER and not self.answers and (
                    self.aggressive or self.first > self.alpha):  # urgent: a call's
                if self._lost is None:
                    self._lost = []
                self._lost.append(handle)  # timed out: asked again if nobody answers
        self._status[handle] = (value & ~_STATE_MASK) | FAILED

    def closest_answered(self) -> list[int]:
        status = self._status
        return [h for _, h in self._order if status[h] & _STATE_MASK == ANSWERED][: self.k]

    def closest_live(self, count: int) -> list[int]:
        """The `count` contacts nearest the target not known dead (answered, or learned and not
        asked yet), the target's own entry left out: a FIND_PEER stops as soon as the target
        is learned, so its neighbours are mostly learned, not asked (NAT rendezvous, §20)."""
        return [h for _, h in self.live(count)]

    def live(self, count: int) -> list[tuple[int, int]]:
        """`closest_live` as (distance, handle) pairs."""
        status = self._status
        return [(d, h) for d, h in self._order if d and status[h] & _STATE_MASK != FAILED][:count]

    def handles(self) -> list[int]:
        return list(self._status)


class DisjointLookup:
    """S/Kademlia's disjoint-path lookup (Baumgart & Mies 2007), for FIND_PEER: `paths` lookups,
    each with its own shortlist and `alpha` requests in flight; the table's closest contacts
    are dealt to the paths in turn, and a contact belongs to the first path that hears of it,
    so no node is asked by two paths. It ends when one path finds the target (verified, when
    `verify` is set) or every path has run out.

    The routing layer calls `answered(handle)` right before `add_contacts(...)` with that
    handle's answer; the contacts go to the path that asked.
    """

    __slots__ = ("lookup_id", "target", "mode", "started", "purpose", "paths", "_owner", "_deal",
                 "_last", "found", "hops", "done")

    def __init__(
        self, lookup_id: int, target: int, mode: Mode, started: float, k: int, alpha: int,
        purpose: int, paths: int, verify: Callable[[int], bool] | None = None,
    ):
        if mode is not _FIND_PEER:
            raise ValueError("disjoint paths serve FIND_PEER lookups only")
        if paths < 1:
            raise ValueError("paths must be at least 1")
        self.lookup_id = lookup_id
        self.target = target
        self.mode = mode
        self.started = started
        self.purpose = purpose
        self.paths = [Lookup(lookup_id, target, mode, started, k, alpha, purpose)
                      for _ in range(paths)]
        for path in self.paths:
            path.verify = verify
            path._again = LOST_ROUNDS  # each path asks a node once (the attack studies' rule)
        self._owner: dict[int, int] = {}  # handle -> the path it belongs to
        self._deal = 0
        self._last = 0
        self.found = -1
        self.hops = 0
        self.done = False

    def _settle(self, path: Lookup) -> None:
        if path.found >= 0 and self.found < 0:
            self.found = path.found
            self.hops = path.hops
            self.done = True

    def add(self, handle: int, distance: int, hop: int) -> None:
        if handle in self._owner:
            return
        index = self._deal % len(self.paths)
        self._deal += 1
        self._owner[handle] = index
        path = self.paths[index]
        path.add(handle, distance, hop)
        self._settle(path)

    def add_contacts(self, contacts: Iterable[tuple[int, Any]], hop: int,
                     intern: Callable[[int, Any], int], own_id: int,
                     hint: float | None = None) -> None:
        index = self._last
        path = self.paths[index]
        owner = self._owner
        target = self.target
        for node_id, addr in contacts:
            if node_id == own_id:
                continue
            handle = intern(node_id, addr)
            if handle in owner:
                continue  # another path's (or already this one's)
            owner[handle] = index
            path.add(handle, node_id ^ target, hop)
        self._settle(path)

    def next_requests(self) -> list[int]:
        if self.done:
            return []
        chosen: list[int] = []
        for path in self.paths:
            chosen.extend(path.next_requests())
        if all(path.done for path in self.paths):
            self.done = True
        return chosen

    def answered(self, handle: int) -> int:
        self._last = self._owner[handle]
        return self.paths[self._last].answered(handle)

    def failed(self, handle: int) -> None:
        self.paths[self._owner[handle]].failed(handle)

    def slow(self, handle: int) -> None:
        self.paths[self._owner[handle]].slow(handle)

    def hop_of(self, handle: int) -> int:
        return self.paths[self._owner[handle]].hop_of(handle)

    def is_waiting_for(self, handle: int) -> bool:
        index = self._owner.get(handle)
        return index is not None and self.paths[index].is_waiting_for(handle)

    def closest_answered(self) -> list[int]:
        return []

    def closest_live(self, count: int) -> list[int]:
        """The paths' `Lookup.closest_live`, merged by distance to the target."""
        return [h for _, h in sorted(pair for path in self.paths for pair in path.live(count))
                ][:count]

    def handles(self) -> list[int]:
        return list(self._owner)

    @property
    def rpcs(self) -> int:
        return sum(path.rpcs for path in self.paths)

    @property
    def timeouts(self) -> int:
        return sum(path.timeouts for path in self.paths)

    @property
    def in_flight(self) -> int:
        return sum(path.in_flight for path in self.paths)

    @property
    def rejected(self) -> int:
        return sum(path.rejected for path in self.paths)
