"""The routing layer: Kademlia over ROUTE_REQ / ROUTE_RES, sans-I/O.

Datagrams come in with the time (`receive_datagram(data, addr, now)`), datagrams to send and
events come out, and `get_timer()` / `handle_timer(now)` drive request timeouts and bucket
refreshes. The simulator may skip the byte codec with `receive_message` / `messages_to_send`;
both paths run the same code past the codec.

A response is matched to its request by (address, target), the only fields nanotalk's format
gives; a response that matches neither a request nor an address probe is dropped.

Contacts enter the table only by answering a request whose target they could not guess (a
round trip nobody can fake blind): an address probe, or with `keyed_requests` a join's or a
refresh's lookup request, whose target's last 64 bits are keyed by (address, asked ID, target);
never from a request alone (its origin ID is unauthenticated, its source address forgeable) nor
from an answer to a lookup request with the lookup's own target (a malicious contact knows that
target and can forge answers from addresses it named). The probe is stateless and unguessable:
a bare request whose target is a keyed hash of (address, claimed ID) under a secret that rotates
every PROBE_SECRET_LIFETIME seconds (the previous one stays live). Only a ROUTE_RES from that
address, by that ID, echoing that hash enters the table (table.py), moves a failing entry
there, and validates that address for the amplification limit. Nothing is kept per probe;
probes are metered by a token bucket (per address and in all, ratelimit.py), counted drops beyond.
A requester whose answer the amplification limit cuts and that no such probe checks (its bucket
full, its cache holding `cache_probes` already; or a table entry never validated) is sent a
validation probe at its address's second such request: its echo validates the address and
admits nobody (`_wants_validation`; protocol section 5.4).
Requests expire in the order they were sent (one timeout for all), so the pending dict's first
entry is always the next deadline. Before that, a lookup request still unanswered after the
node's adaptive slow time (srtt + 2 rttvar, RFC 6298's estimators over the round trips of its
answered requests and address probes) gives its slot to the next contact, and its answer
still counts until the timeout: under churn half a table may be dead, and without this a
lookup stalls a whole timeout whenever its `alpha` slots all hold dead contacts (libtorrent's
short timeout).
"""

from __future__ import annotations

import collections
import hashlib
import heapq
from dataclasses import dataclass
from random import Random
from typing import Any, Callable, Iterable

from ..addresses import is_ipv6, to_wire
from ..ratelimit import FloodGuard, TokenBucket
from .events import Joined, LookupCompleted
from .lookup import DisjointLookup, Lookup, Mode
from .messages import (
    CONTACT_SIZE,
    ID_BYTES,
    MAX_CONTACTS,
    MAX_REQUEST_SIZE,
    REQUEST_SIZE,
    RESPONSE_HEADER,
    ROUTE_REQ,
    MalformedMessage,
    RouteRequest,
    RouteResponse,
    encode_handles,
)
from .route6 import (
    CONTACT6_SIZE,
    MARKER,
    ROUTE6_REQUEST_SIZE,
    OtherAddresses,
    answer_formats,
    own_entry,
)
from .route6 import decode as decode_any
from .route6 import encode as encode_any
from .route6 import refused as announce_refused
from .rtt import RttEstimates, smoothed
from .table import RoutingTable, check_bucket_bits

USER, JOIN, REFRESH = 0, 1, 2
FULL_ANSWER_PADDING = -(-MAX_REQUEST_SIZE // 3) - REQUEST_SIZE  # 146
VALIDATED_LIMIT = 4096  # addresses that answered a probe, remembered for the amplification limit
PROBE_SECRET_LIFETIME = 120.0  # seconds a probe secret is current; it stays live as long again
# A keyed request's target differs from its lookup's in these last bits only (keyed_requests):
# unguessable to a forger (2^-64 a try), and the closest contacts to it are the lookup's (two
# IDs sharing 96 leading bits do not occur in a network of fewer than ~2^40 nodes).
KEYED_BITS = 64


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Kademlia parameters; defaults are the paper's (k = 20, α = 3, hourly refresh)."""

    k: int = 20
    alpha: int = 3
    request_timeout: float = 1.0  # seconds before an unanswered request counts as failed
    # A known ID answering at a new address: its entry's old address gets this many probes,
    # about `address_check_spacing` s apart (drawn between 0.5x and 1.5x: not predictable);
    # any answer there keeps the entry, none (the last one's request_timeout passed) moves it.
    # A forger must then keep the real node from answering for the whole window (protocol
    # section 5.1), not for one round trip.
    address_check_probes: int = 3
    address_check_spacing: float = 10.0
    # A lookup request unanswered after srtt + `slow_rttvars` x rttvar of this node's answered
    # requests (at least `slow_floor`, at most `request_timeout`) frees its slot for the next
    # contact (its late answer still counts); False: the paper's lookup, `alpha` requests in
    # flight at most. docs/results.md "Call set-up" has the study behind the defaults.
    free_slow_slots: bool = True
    slow_rttvars: float = 2.0
    slow_floor: float = 0.1
    # Urgent lookups (`find_peer(urgent=True)`: a call's, which a user waits on). True: keep
    # `alpha` requests in flight among the nearest contacts not yet answered, not `alpha` in
    # all (libtorrent's aggressive lookups), so a request overtaken by nearer contacts no longer
    # delays asking them; False: the paper's rule. `urgent_first`: requests in the first round
    # (dead table entries then cost no round of their own); at most alpha: alpha. The study
    # behind the defaults: docs/design-decisions.md "Call lookups under churn".
    urgent_aggressive: bool = True
    urgent_first: int = 8
    # Requests one lookup sends at most (8 k; 0: no cap), whatever its answers name: a responder
    # naming ever nearer contacts (a fresh ID of its own, victims' addresses) cannot keep it
    # going. 3 k cut joins and refreshes under churn (up to 97 requests measured in the pinned
    # call study) and failed 3 of its 40 calls. An aggressive lookup also keeps urgent_first +
    # 2 alpha requests in flight at most.
    lookup_requests: int = 160
    # Round trips per contact address (rtt.py, fed by answers to lookup requests), after
    # Jimenez et al. 2011. `rtt_choice_bits` >= 0: a lookup asks, among the contacts not yet
    # asked whose distance to the target has at most that many bits more than the nearest's,
    # those with the least srtt + `rtt_bit_cost` s per extra bit (unknown: the node's srtt);
    # -1: XOR order (the paper). `contact_slow`: a request's slow time is its contact's own
    # srtt + slow_rttvars x rttvar when measured, not the node's. The study: docs/results.md
    # and docs/design-decisions.md, "Lookup latency: RTT-aware choice and per-contact slow
    # times".
    rtt_choice_bits: int = -1
    rtt_bit_cost: float = 0.0
    contact_slow: bool = False
    # `rtt_hints`: with rtt_choice_bits, a contact never measured is expected as fast as the
    # round trip of the answer that named it (under proximity a contact's entries are near it,
    # so near us when it is), not at the node's srtt. `proximity` (proximity neighbour
    # selection, Kaune et al. 2008): a full bucket takes a newcomer that answered our lookup
    # request and our probe faster than its slowest entry (srtt; never measured: the node's),
    # which goes to the replacement cache. The study: docs/results.md "Lookup latency:
    # proximity neighbour selection".
    # `proximity_keep`: the oldest entries of a bucket that proximity never displaces (they
    # keep the uptime rule's guarantee: newcomers near us cannot take a whole bucket).
    # `rtt_floor` (s): round trips below it count as equal to it, in the proximity rule and
    # in the RTT-aware choice: a newcomer displaces only an entry slower than the floor (among
    # contacts "near enough" the incumbent stays, so a bucket whose displaceable entries all
    # answered within the floor takes no one, an attacker next to the node included), and a
    # lookup asks contacts within the floor in XOR order. 0: the nearest wins.
    # `proximity_measured`: only entries the node measured itself may be displaced (one never
    # measured keeps its place, as under the uptime rule): a young table's entries are not all
    # counted slow at the node's srtt, which let a near attacker take them (design-decisions,
    # "Lookup latency: PNS that displaces only measured entries").
    rtt_hints: bool = False
    proximity: bool = False
    proximity_keep: int = 0
    rtt_floor: float = 0.0
    proximity_measured: bool = False
    refresh_interval: float = 3600.0  # a bucket no lookup went into for this long is refreshed
    refresh_on_join: bool = True  # after joining, refresh buckets farther than the closest neighbour
    # Maintenance cost (issue 15 item 2; the study: docs/design-decisions.md "Cheaper joins and
    # refreshes"). `refresh_fill`: a refresh lookup (after a join, and of an idle bucket) aims
    # at filling its bucket: it asks only contacts in the bucket's range once it knows one and
    # ends when as many new ones there answered as the bucket lacked, or when `alpha` answers
    # in a row named nothing new there; False: the paper's lookup to the k closest of a random
    # ID in the bucket. `join_fill` (refresh_fill only): what a refresh after a join aims at,
    # this many entries a bucket (k at most), a bucket holding them already is skipped; the
    # rest of a bucket fills as the node hears from its range. `refresh_join_full`: False
    # skips, after a join, the buckets already full. `cache_probes`: a contact whose bucket is
    # full is probed (for the replacement cache) only while the cache holds fewer than this
    # many. `refresh_heard`: a bucket also counts as active when one of its entries answers
    # us or (an entry without failures) sends us a request (BEP 5's rule), not only when our
    # own lookup goes into it.
    # `keyed_requests`: a join's and a refresh's lookup requests (lookups whose exact target
    # nobody else needs) carry a keyed target, the lookup's with its last KEYED_BITS bits
    # XORed with a keyed hash of (address, asked ID, target): an answer echoing it came from a
    # host that receives at that address (the probe's proof), so it admits its sender and
    # validates the address without a probe of its own. A user's lookup keeps its exact target
    # (its answerers are probed). docs/design-decisions.md "Admission by a keyed answer".
    keyed_requests: bool = True
    refresh_fill: bool = True
    join_fill: int = 20
    refresh_join_full: bool = True
    cache_probes: int = 2
    refresh_heard: bool = False
    replacement_cache: int = 20
    max_failures: int = 5
    # Kademlia section 4.2's accelerated lookups, b bits a hop: every prefix bucket split into
    # 2^(b-1) buckets of k by the b-1 ID bits after the first bit differing from ours
    # (table.bucket_of), so that a lookup's hop fixes about b - 1 more ID bits, at up to
    # 2^(b-1) times the table. 1: the paper's table. docs/design-decisions.md "Lookup latency: b bits a
    # hop (bucket_bits)".
    bucket_bits: int = 1
    # Prefix groups (bucket_bits > 1 only; inert at 1): `refresh_groups` makes the hourly
    # refresh, `join_groups` a join's refresh, take each prefix group (the 2^(b-1) buckets of
    # one common-prefix length) as one bucket: one refresh lookup a group that has a bucket to
    # refresh, its target in the emptiest of those (a random one of equals), its fill range the
    # whole group, aiming at what they lack; it counts as a lookup into every bucket of the
    # group (none idle after it). False: each bucket refreshed on its own. Measured: by group
    # the hourly refresh costs about b = 1's and keeps most of b's gain; a join by group costs
    # b = 1's but leaves b = 1's table (most of the gain lost). docs/design-decisions.md "A
    # join and hourly refresh by prefix group".
    refresh_groups: bool = False
    join_groups: bool = False
    max_lookups: int = 256  # lookups running at once; more are refused
    registry_limit: int = 20_000  # contacts remembered before unreferenced ones are forgotten
    # Zero bytes appended to ROUTE_REQ: 146 makes a request 187 bytes, a third of a full answer,
    # so a peer applying the amplification limit below still answers in full.
    request_padding: int = FULL_ANSWER_PADDING
    amplification: int = 3  # to an address not yet validated, answer at most this × the request
    # Flood limits on requests served: the node as a whole, and each source while it is busy.
    request_rate: float = 1000.0
    request_burst: float = 2000.0
    source_request_rate: float = 20.0
    source_request_burst: float = 100.0
    # At most this many entries of one bucket from one /24 (IPv4) network (the registry's
    # `subnet` says which); 0: no limit. A Sybil defence; see docs/security.md.
    max_per_subnet: int = 0
    # Address probes (bare requests checking that an address answers by the claimed ID before
    # the contact enters the table): per second and burst in all (`probe_limit` beyond; as many
    # as requests served, so a flood that starves probes already starves requests), and per
    # address (`probes_skipped` beyond; forged claims from one address draw one probe a second).
    probe_rate: float = 1000.0
    probe_burst: float = 2000.0
    address_probe_rate: float = 1.0
    # Validation probes (protocol section 5.4; issue 15 item 1, session 11): a requester whose
    # answer the amplification limit cut, from an address not validated, and that drew no
    # probe for the table, is remembered; its address's next such request draws one address
    # probe of its own kind, whose answer validates the address and admits nothing (a full
    # bucket's cache stays as `cache_probes` left it). An address is sent one at most every
    # `validation_retry` s (a lost probe or answer costs that long; a silent address draws
    # one a retry, each with a cut answer: 108 bytes for a 41-byte request, less than the 119
    # it would get without), at most `validation_rate` a second in all (as many saved up;
    # `validation_limit` beyond). 0: none (the rule before).
    validation_rate: float = 100.0
    validation_retry: float = 10.0
    # False lifts the flood limits and the amplification limit above (every request is answered
    # in full): for capacity benchmarks on one host only (benchmarks/udp_routing); a node on a
    # network keeps them. Table admission and address probes are unchanged.
    limits: bool = True
    # This node can reach IPv6 peers: its requests ask for ROUTE6_RES (route6.py, protocol
    # section 23), whose contacts may be IPv6. The UDP driver sets it for a dual-stack socket.
    ipv6: bool = False
    # Other addresses (protocol section 23, "The other address"): probe the IPv6 address a table
    # entry announces (naming itself there in its ROUTE6_RES to our keyed request over IPv4,
    # whose echo proved its IPv4 address), keep it once its answer comes from there by the
    # entry's ID, and name the entry there to requesters over IPv6. Off, no announce is probed,
    # kept or named (our own answers announce our address either way). On by default since the
    # announce is authenticated (session 12; docs/results.md, "IPv6-only hosts' tables").
    other_addresses: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_CONTACTS:
            raise ValueError(f"k must be between 1 and {MAX_CONTACTS} (the wire format's limit)")
        if self.alpha < 1:
            raise ValueError("alpha must be at least 1")
        if self.request_timeout <= 0 or self.refresh_interval <= 0 or self.slow_floor <= 0:
            raise ValueError("timeouts must be positive")
        if self.slow_rttvars < 0:
            raise ValueError("slow_rttvars must be >= 0")
        if self.address_check_probes < 1 or self.address_check_spacing <= 0:
            raise ValueError("address_check_probes must be >= 1 and address_check_spacing > 0")
        if not 0 <= self.request_padding <= MAX_REQUEST_SIZE - REQUEST_SIZE:
            raise ValueError(f"request_padding must be between 0 and {MAX_REQUEST_SIZE - REQUEST_SIZE}")
        if not 0 <= self.proximity_keep <= self.k or self.rtt_floor < 0:
            raise ValueError("proximity_keep must be between 0 and k and rtt_floor >= 0")
        if self.rtt_choice_bits < -1 or self.rtt_bit_cost < 0:
            raise ValueError("rtt_choice_bits must be >= -1 (-1: off) and rtt_bit_cost >= 0")
        if self.lookup_requests < 0:
            raise ValueError("lookup_requests must be >= 0 (0: no cap)")
        if self.amplification < 1:
            raise ValueError("amplification must be at least 1")
        if self.cache_probes < 0 or self.join_fill < 1:
            raise ValueError("cache_probes must be >= 0 and join_fill >= 1")
        check_bucket_bits(self.bucket_bits)
        for name in ("refresh_groups", "join_groups"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.max_per_subnet < 0:
            raise ValueError("max_per_subnet must be >= 0 (0: no limit)")
        if self.validation_rate < 0 or self.validation_retry <= 0:
            raise ValueError("validation_rate must be >= 0 (0: off) and validation_retry > 0")
        if min(self.request_rate, self.source_request_rate, self.probe_rate,
               self.address_probe_rate) <= 0 or self.probe_burst < 1 or min(
            self.request_burst, self.source_request_burst
        ) < 1:
            raise ValueError("request rates must be positive and bursts at least 1")


class TooManyLookups(RuntimeError):
    pass


class _Pending:
    """A request in flight to one address for one target, and who waits for its answer.

    Each waiter is (lookup, handle asked): several lookups, or several IDs claimed at one
    address, may wait on one datagram. Handle -1 is a bootstrap address whose ID is unknown.
    """

    __slots__ = ("deadline", "waiters", "key", "live", "keyed")

    def __init__(self, deadline: float, lookup: Lookup, handle: int, key: tuple[Any, int],
                 keyed: bool = False):
        self.deadline = deadline  # sent + request_timeout: the round trip derives from it
        self.waiters = [(lookup, handle)]
        self.key = key  # (address, target): its place in the layer's pending dict
        self.live = True  # in that dict: neither answered nor timed out yet
        self.keyed = keyed  # its target is keyed (keyed_requests): an answer proves the address


class RoutingLayer:
    __slots__ = (
        "node_id", "registry", "rng", "settings", "table", "stats",
        "_lookups", "_pending", "_expiry", "_outbox", "_events", "_next_lookup_id", "_refresh_at",
        "_collect", "_formats", "_validated", "_request_size", "limited_answers", "_guard",
        "_probe_guard",
        "_probe_keys", "probes_skipped", "_slow", "_slow_seq", "_srtt", "_rttvar", "rtts",
        "_announce", "_others", "_unvalidated", "_validation_meter", "_random_bytes",
    )

    def __init__(
        self,
        node_id: int,
        registry: Any,
        rng: Random,
        settings: RoutingSettings | None = None,
        now: float = 0.0,
        random_bytes: Callable[[int], bytes] | None = None,
    ):
        self.node_id = node_id
        self.registry = registry
        self.rng = rng
        # the probe secrets' source: a real node's is the OS (`os.urandom`), since peers see
        # the rng's draws (lookup targets, traversal's nonces) and could rebuild its state;
        # None: `rng` (the simulator and tests, so that a seed replays the same run)
        self._random_bytes = random_bytes
        self.settings = settings = settings or DEFAULT_SETTINGS
        # it reads k and the cache rules; a node's own registry (one table) keeps the set of
        # handles held, so that `_wants_probe`'s `known` is one lookup (not a million tables')
        self.table = RoutingTable(node_id, registry.ids, settings, index=registry.recycles)
        self.stats: collections.Counter[str] | None = None  # drop reasons, allocated on first drop
        # Allocated on first use: a million idle simulated nodes should cost nothing here.
        self._lookups: dict[int, Lookup] | None = None
        self._pending: dict[tuple[Any, int], _Pending] | None = None  # in deadline order
        # The same requests in the same order, and ones answered since (not `live`, dropped
        # when they reach the head): the next deadline from the head, with no iterator over
        # the dict (which walks every slot deleted since its last resize) and no hashing of
        # its (address, 160-bit target) keys per delivery (issue 15 item 2).
        self._expiry: collections.deque[_Pending] | None = None
        self._outbox: list[tuple[RouteRequest | RouteResponse, Any]] | None = None
        self._events: collections.deque | None = None
        self._next_lookup_id = 0
        self._refresh_at = now + settings.refresh_interval
        self._collect = registry.retain if registry.recycles else None
        # Answers wait in the outbox as (target, handles, ipv6) and are encoded from each
        # handle's entry bytes. A node's own registry: kept here, per format (ROUTE_RES,
        # ROUTE6_RES: header, address codec, handle -> entry), emptied whenever handles are
        # recycled (`_forget_unreferenced`). A registry that never recycles (the simulator's
        # shared one) keeps them once for all its layers: its `answer_format`.
        self._formats: tuple[tuple[bytes, Callable[[Any], bytes | None], dict[int, bytes]],
                             ...] | None = None
        if registry.recycles:
            formats = answer_formats(node_id, registry.addr_to_wire)
            self._formats = tuple((head, codec, {}) for head, codec in formats)
        # Addresses that answered one of our address probes (so they do receive what we send:
        # QUIC's address validation) -> True, oldest first, at most VALIDATED_LIMIT. Only
        # requests too small for a full answer consult it; made at the first probe answer.
        self._validated: dict[Any, bool] | None = None
        # Addresses whose answers the amplification limit cut and that drew no table probe ->
        # (when, target): seen once (target None), or sent a validation probe then with that
        # target, which its answer must echo. At most VALIDATED_LIMIT, oldest first; made at
        # the first (`_wants_validation`). The meter: validation_rate, made at the first probe.
        self._unvalidated: dict[Any, tuple[float, int | None]] | None = None
        self._validation_meter: TokenBucket | None = None
        self._probe_guard: FloodGuard | None = None  # made at the first probe
        # (current secret, previous secret or None, when the current one was drawn)
        self._probe_keys: tuple[bytes, bytes | None, float] | None = None
        self._request_size = REQUEST_SIZE + settings.request_padding
        self.limited_answers = 0  # answers cut short by the amplification limit
        self.probes_skipped = 0  # probes not sent: that address was probed within the last second
        self._guard: FloodGuard | None = None  # made at the first request served
        # Lookup requests by when they become slow: (time, seq, key, request); made on first use.
        self._slow: list[tuple[float, int, tuple[Any, int], _Pending]] | None = None
        self._slow_seq = 0
        self._srtt: float | None = None  # round trips of answered requests (RFC 6298)
        self._rttvar = 0.0
        self.rtts: RttEstimates | None = None  # per contact address; made on the first sample
        # Our IPv6 address, named in our ROUTE6_RES to marked requests over IPv4 (`announce`),
        # and the entries' IPv6 addresses proven by our probes (route6.OtherAddresses, made at
        # the first): protocol section 23, "The other address".
        self._announce: Any = None
        self._others: OtherAddresses | None = None

    # -- sans-I/O surface -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        size = len(data)
        if REQUEST_SIZE <= size <= MAX_REQUEST_SIZE and data[0] == ROUTE_REQ:
            # A request, the datagram a node sees most: read in place (messages.decode's and
            # route6.decode's reading, without building a RouteRequest; issue 15).
            self._serve(int.from_bytes(data[1:21], "big"), int.from_bytes(data[21:41], "big"),
                        size, size > REQUEST_SIZE and data[41:45] == MARKER, addr, now)
            registry, limit = self.registry, self.settings.registry_limit
            # `ids` holds every handle ever given, freed ones too: no fewer than len(registry)
            if self._collect is not None and len(registry.ids) > limit and len(registry) > limit:
                self._forget_unreferenced()
            return
        try:
            msg, skipped = decode_any(data, self.registry.addr_from_wire, ipv6=self.settings.ipv6)
        except MalformedMessage as error:
            self.count(error.reason)
            return
        if skipped:
            self.count("bad_contact", skipped)
        self.receive_message(msg, addr, now)

    def receive_message(self, msg: RouteRequest | RouteResponse, addr: Any, now: float) -> None:
        if type(msg) is RouteRequest:
            self._serve(msg.origin, msg.target, msg.size, msg.ipv6, addr, now)
        else:
            self._on_response(msg, addr, now)
        if self._collect is not None and len(self.registry) > self.settings.registry_limit:
            self._forget_unreferenced()

    def handle_timer(self, now: float) -> None:
        pending = self._pending
        slow = self._slow
        while slow and slow[0][0] <= now:
            request = heapq.heappop(slow)[3]
            if not request.live:
                continue  # answered or timed out already
            for lookup, handle in request.waiters:
                if handle >= 0 and not lookup.done:
                    lookup.slow(handle)
                    self._advance(lookup, now)
        expiry = self._expiry
        while expiry:
            request = expiry[0]
            if not request.live:
                expiry.popleft()  # answered already
                continue
            if request.deadline > now:
                break
            expiry.popleft()
            request.live = False
            del pending[request.key]
            failed = set()
            for lookup, handle in request.waiters:
                if handle >= 0 and handle not in failed:
                    failed.add(handle)
                    self.table.failed(handle)
                if lookup.done:
                    continue
                if handle < 0:
                    lookup.probe_failed()
                else:
                    lookup.failed(handle)
                self._advance(lookup, now)
        if now >= self._refresh_at:
            self._refresh(now)
        if now >= self.table.next_check():
            self._moves_due(now)

    def get_timer(self) -> float:
        timer = self._refresh_at
        check = self.table.next_check()
        if check < timer:
            timer = check
        expiry = self._expiry
        if expiry:
            while expiry and not expiry[0].live:
                expiry.popleft()  # answered already
            if expiry:
                deadline = expiry[0].deadline
                if deadline < timer:
                    timer = deadline
        slow = self._slow
        if slow:
            while slow and not slow[0][3].live:
                heapq.heappop(slow)  # answered already: no wake-up for it
            if slow and slow[0][0] < timer:
                timer = slow[0][0]
        return timer

    def messages_to_send(self, now: float) -> list[tuple[RouteRequest | RouteResponse, Any]]:
        out = self._outbox
        if out is None:
            return []
        self._outbox = None
        ids, addrs = self.registry.ids, self.registry.addrs  # answers kept as handles
        return [(RouteResponse(self.node_id, msg[0], [(ids[h], addrs[h]) for h in msg[1]], msg[2]),
                 addr) if type(msg) is tuple else (msg, addr) for msg, addr in out]

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out = self._outbox
        if out is None:
            return []
        self._outbox = None
        registry, formats = self.registry, self._formats
        ids, addrs = registry.ids, registry.addrs
        addr_to_wire, ipv6 = registry.addr_to_wire, self.settings.ipv6
        datagrams = []
        for msg, addr in out:
            if type(msg) is tuple:  # an answer kept as handles: (target, handles, ipv6)
                head, codec, kept = (formats[msg[2]] if formats is not None
                                     else registry.answer_format(self.node_id, msg[2]))
                data = encode_handles([head, msg[0].to_bytes(ID_BYTES, "big")], msg[1], kept,
                                      ids, addrs, codec)
            else:
                data = encode_any(msg, addr_to_wire, ipv6)
            datagrams.append((data, addr))
        return datagrams

    def next_event(self) -> LookupCompleted | Joined | None:
        return self._events.popleft() if self._events else None

    # -- commands -------------------------------------------------------------------------------

    def find_peer(self, target: int, now: float, paths: int = 1,
                  verify: Callable[[int], bool] | None = None, urgent: bool = False) -> int:
        """Start a lookup that ends as soon as `target`'s own entry is learned; return its id.

        `paths` > 1 runs S/Kademlia's disjoint-path lookup; `verify(handle)` checks a learned
        target entry (the simulator's stand-in for the key exchange a call does next): a fake
        is skipped and the lookup goes on. `urgent` (a call's lookup, which a user waits on;
        one path only): more requests for less time (`urgent_aggressive`, `urgent_first`).
        """
        return self._start(target, Mode.FIND_PEER, USER, now, paths, verify, urgent).lookup_id

    def find_closest(self, target: int, now: float) -> int:
        """Start a lookup that ends when the k closest to `target` have answered."""
        return self._start(target, Mode.FIND_CLOSEST, USER, now).lookup_id

    def refresh_neighbourhood(self, now: float) -> bool:
        """Look up our own ID as a refresh (no event): our nearest neighbours hear a request
        of ours and admit us, we learn of those that joined since. For a node behind a
        filtering NAT or firewall, which those cannot admit otherwise (`Node`'s upkeep,
        node/upkeep.py `Rejoin.hood_at`). False: too many lookups run (none started)."""
        if self.lookups_running >= self.settings.max_lookups:
            return False
        self._advance(self._new_lookup(self.node_id, Mode.FIND_CLOSEST, REFRESH, now), now)
        return True

    def add_contact(self, node_id: int, addr: Any, now: float) -> bool:
        """Put a known contact (saved from an earlier run, say) into the table."""
        if node_id == self.node_id:
            return False
        handle = self.registry.intern(node_id, addr)
        if self.settings.max_per_subnet and self._subnet_full(handle):
            return False
        if self._address_holder(handle) >= 0:
            return False  # one ID per address
        if self.table.observe(handle, now):
            return True
        if self.table.moved(handle):
            self._probe(handle, addr, node_id, now)  # the entry moves if the new address answers
        return False

    def join(self, bootstrap: Iterable[Any], now: float) -> int:
        """Look up our own ID, asking the bootstrap addresses (IDs unknown) and the table."""
        lookup = self._new_lookup(self.node_id, Mode.FIND_CLOSEST, JOIN, now)
        if self._pending is None:
            self._pending = {}
        for addr in bootstrap:
            key = (addr, self.node_id)
            if key in self._pending:
                continue
            self._pending[key] = request = _Pending(now + self.settings.request_timeout, lookup, -1,
                                                    key)
            self._expect(request)
            lookup.probe_sent()
            self._send(RouteRequest(self.node_id, self.node_id, self._request_size), addr)
        self._advance(lookup, now)
        return lookup.lookup_id

    def awaits(self, addr: Any, target: int, responder: int) -> bool:
        """Whether an answer from `addr` about `target` by `responder` answers a request of ours
        (`_on_response`'s check: pending, and an ID we asked there or a bootstrap address), so
        a layer that reads answers too (node.stack's ROUTE6_RES entries) takes only these."""
        request = self._pending.get((addr, target)) if self._pending else None
        if request is None or responder == self.node_id:
            return False
        ids = self.registry.ids
        return any(asked < 0 or ids[asked] == responder for _, asked in request.waiters)

    @property
    def lookups_running(self) -> int:
        return len(self._lookups) if self._lookups else 0

    def count(self, reason: str, n: int = 1) -> None:
        if self.stats is None:
            self.stats = collections.Counter()
        self.stats[reason] += n

    # -- internals ------------------------------------------------------------------------------

    def _serve(self, origin: int, target: int, size: int, ipv6: bool, addr: Any,
               now: float) -> None:
        """Answer a request (`size` bytes, padding included; `ipv6`: it asks for ROUTE6_RES)."""
        if origin == self.node_id:
            self.count("own_id")
            return
        settings = self.settings
        limits = settings.limits
        if limits:
            guard = self._guard
            if guard is None:
                guard = self._guard = FloodGuard(
                    settings.request_rate, settings.request_burst,
                    settings.source_request_rate, settings.source_request_burst, now,
                )
            refused = guard.check(addr, now)
            if refused is not None:
                self.count(refused)
                return
        registry = self.registry
        handle = registry.intern(origin, addr)
        probe = self._wants_probe(handle, addr, now)
        count = settings.k
        entry = CONTACT6_SIZE if ipv6 else CONTACT_SIZE  # the largest an entry can be
        budget = settings.amplification * size
        if probe:
            budget -= REQUEST_SIZE  # the probe counts towards what we send there
        validate = False
        if (limits and RESPONSE_HEADER + count * entry > budget
                and not self.is_validated(addr)):
            # Anti-amplification: the source address may be forged to aim our answer at a victim.
            if budget < RESPONSE_HEADER:  # no room for the probe after an empty answer
                budget += REQUEST_SIZE
                probe = False
            elif (not probe and budget - REQUEST_SIZE >= RESPONSE_HEADER
                  and settings.validation_rate and self._wants_validation(addr, now)):
                budget -= REQUEST_SIZE  # a validation probe instead: it counts likewise
                probe = validate = True
            count = min(count, max(0, (budget - RESPONSE_HEADER) // entry))
            self.limited_answers += 1
        if ipv6 and self._announce is not None and count and not is_ipv6(addr):
            # our announce (section 23): ourselves at our IPv6 address, last, in place of the
            # farthest contact; a requester takes it only from an answer to its keyed request
            closest = self.table.closest(target, count - 1, handle)
            closest.append(registry.intern(self.node_id, self._announce))
        else:
            closest = self.table.closest(target, count, handle)
            if ipv6 and self._others is not None and is_ipv6(addr):  # asked over IPv6
                closest = self._others.name(closest, now, handle)
        # kept as handles, encoded when sent (`datagrams_to_send`, `messages_to_send`)
        if self._outbox is None:
            self._outbox = [((target, closest, ipv6), addr)]
        else:
            self._outbox.append(((target, closest, ipv6), addr))
        if probe:  # after the answer, so an honest requester knows us when the probe arrives
            if validate:
                self._send_validation(addr, origin, now)
            else:
                self._send_probe(addr, origin, now)
        if ipv6 and size >= ROUTE6_REQUEST_SIZE and settings.other_addresses and settings.ipv6 \
                and not is_ipv6(addr) and self.table.find(origin) == handle \
                and self.is_validated(addr):
            self._query_other(handle, addr, origin, now)  # an entry at IPv4 asking for IPv6

    def _wants_probe(self, handle: int, addr: Any, now: float) -> bool:
        """Offer a requester to the table; whether to probe it. A request proves nothing about
        its origin (ID unauthenticated, source address forgeable): a contact already held is
        heard from again (which clears no failure), any other one the table would take is
        probed (within the probe meter)."""
        table = self.table
        held = table.heard(handle, now)  # known(handle) and observe(handle, now), or None
        if held is not None:  # it answered a probe to get there: the uptime rule, as before
            probe = not held and table.moved(handle)
            if held and self.settings.refresh_heard and not table.failures(handle):
                table.touch(self.registry.ids[handle], now)  # BEP 5: its bucket is active
        elif self._probe_guard is not None and not self._probe_guard.ready(addr, now):
            # That address was probed within the last second: no probe is possible, so spare
            # the admission check (the table's bucket, the one-ID-per-address walk: O(IDs
            # claimed there), 3.9 s of CPU a second at 450 forged/s, and ~2 µs of the 14 µs an
            # answer cost a requester the table does not hold, issue 15). Counted as skipped
            # whether or not the table would have taken it: the check is what is saved.
            self.probes_skipped += 1
            return False
        else:
            probe = self._admissible(handle)
        return probe and self._may_probe(addr, now)

    def _wants_validation(self, addr: Any, now: float) -> bool:
        """Whether a request from `addr` (not validated, its answer cut, no table probe drawn)
        draws a validation probe: not an address's first such request (a one-off, such as a
        kadtalk node's own probe of us, draws none, nor does a flood of forged sources each
        seen once); after that one every `validation_retry` s at most (its answer would have
        validated the address), within `validation_rate` (`validation_limit` beyond) and the
        probe meters (none while a probe of the address is within its second: its answer, if
        any, is on the way)."""
        unvalidated = self._unvalidated
        if unvalidated is None:
            unvalidated = self._unvalidated = {}
        seen = unvalidated.get(addr)
        if seen is None:
            if len(unvalidated) >= VALIDATED_LIMIT:
                del unvalidated[next(iter(unvalidated))]  # forget the oldest
            unvalidated[addr] = (now, None)
            return False
        settings = self.settings
        if seen[1] is not None and now < seen[0] + settings.validation_retry:
            return False  # probed lately: unanswered, or its answer is on the way
        guard = self._probe_guard
        if guard is not None and not guard.ready(addr, now):
            return False
        meter = self._validation_meter
        if meter is None:
            rate = settings.validation_rate
            meter = self._validation_meter = TokenBucket(rate, max(rate, 1.0), now)
        if not meter.take(now):
            self.count("validation_limit")
            return False
        return self._may_probe(addr, now)

    def _send_validation(self, addr: Any, node_id: int, now: float) -> None:
        """A validation probe: a bare request whose target is a keyed hash of (address, claimed
        ID, "V") under the probe secret, unguessable like a probe's and never a probe's (its
        answer must not admit); remembered, so that only its echo from `addr` validates."""
        target = self._probe_target(self._probe_secrets(now)[0], addr, node_id, b"V")
        unvalidated = self._unvalidated
        del unvalidated[addr]  # re-inserted last: the most recent
        unvalidated[addr] = (now, target)
        self._send(RouteRequest(self.node_id, target), addr)

    def _admissible(self, handle: int) -> bool:
        """Whether a probe answer from `handle` could change the table: the table admits it,
        its /24 has room, and no entry of another ID that still answers holds its address."""
        table = self.table
        settings = self.settings
        # not either when its bucket is full, its ID no entry, and the bucket's cache holds
        # `cache_probes` already: a probe would only push an older newcomer out of the cache
        cached = settings.cache_probes
        if not table.admits(handle, cached if cached < settings.replacement_cache else None):
            return False
        if settings.max_per_subnet and self._subnet_full(handle):
            return False
        holder = self._address_holder(handle)
        return holder < 0 or table.failures(holder) > 0 or holder not in table

    def _address_holder(self, handle: int) -> int:
        """The table's handle (entry or cache) of another ID at `handle`'s address, or -1: one
        address holds at most one ID, so one socket cannot fill a bucket with IDs."""
        registry, table = self.registry, self.table
        ids = registry.ids
        node_id = ids[handle]
        for other in registry.handles_at(registry.addrs[handle]):  # not a scan of the table
            if ids[other] != node_id and table.known(other):
                return other
        return -1

    def _probe(self, handle: int, addr: Any, node_id: int, now: float) -> None:
        """Ask `addr` a bare request whose target only we can compute: only an answer there, by
        `node_id`, echoing it puts the contact in the table (or moves a failing entry to it).
        Bare (41 bytes, no more than any request that made the claim) and metered, so forged
        claims can neither amplify nor flood (counted drops)."""
        if self._may_probe(addr, now):
            self._send_probe(addr, node_id, now)

    def _may_probe(self, addr: Any, now: float) -> bool:
        guard = self._probe_guard
        if guard is None:
            settings = self.settings
            guard = self._probe_guard = FloodGuard(
                settings.probe_rate, settings.probe_burst, settings.address_probe_rate, 1.0, now,
                max_sources=1024, always=True,
            )
        refused = guard.check(addr, now)
        if refused is None:
            return True
        if refused == "rate_limited_source":
            # probed within the last second: its answer, if any, is on its way. Honest traffic
            # does this too (a request and a lookup answer from one newcomer), so not a drop.
            self.probes_skipped += 1
        else:
            self.count("probe_limit")
        return False

    def _send_probe(self, addr: Any, node_id: int, now: float) -> None:
        secret = self._probe_secrets(now)[0]
        self._send(RouteRequest(self.node_id, self._probe_target(secret, addr, node_id)), addr)

    def _probe_secrets(self, now: float) -> tuple[bytes, bytes | None, float]:
        """The live secrets, the current one first; drawn from `random_bytes` (the OS in a real
        node) or else `rng` (a seeded simulation stays reproducible), rotated every
        PROBE_SECRET_LIFETIME seconds."""
        keys = self._probe_keys
        if keys is None or now >= keys[2] + PROBE_SECRET_LIFETIME:
            previous = (keys[0] if keys is not None and now < keys[2] + 2 * PROBE_SECRET_LIFETIME
                        else None)
            fresh = (self._random_bytes(16) if self._random_bytes is not None
                     else self.rng.getrandbits(128).to_bytes(16, "big"))
            keys = self._probe_keys = (fresh, previous, now)
        return keys

    def _probe_target(self, secret: bytes, addr: Any, node_id: int, kind: bytes = b"") -> int:
        """A probe's target (`kind` b"V": a validation probe's, `_send_validation`)."""
        digest = hashlib.blake2b(
            (self.registry.addr_to_wire(addr) or repr(addr).encode())  # IPv6: no ROUTE_RES bytes
            + node_id.to_bytes(20, "big") + kind,
            key=secret, digest_size=20,
        ).digest()
        return int.from_bytes(digest, "big")

    def _keyed_target(self, addr: Any, node_id: int, target: int, now: float) -> int:
        """A lookup request's wire target under `keyed_requests`: `target` with its last
        KEYED_BITS bits XORed with a keyed hash of (address, asked ID, target) under the
        current probe secret. A forger off the path (the contact that named the address
        included: it knows `target`) cannot echo it; the pending request remembers it, so no
        secret needs to stay live for the answer."""
        digest = hashlib.blake2b(
            (self.registry.addr_to_wire(addr) or repr(addr).encode())
            + node_id.to_bytes(20, "big") + target.to_bytes(20, "big"),
            key=self._probe_secrets(now)[0], digest_size=KEYED_BITS // 8,
        ).digest()
        return target ^ int.from_bytes(digest, "big")

    def _is_probe_answer(self, msg: RouteResponse, addr: Any, now: float,
                         kind: bytes = b"") -> bool:
        """Whether `msg` answers one of our live probes of `addr` for its responder's ID (of
        `kind`: b"" an admission probe's, `_announce_kind` an announce probe's)."""
        keys = self._probe_keys
        if keys is None or now >= keys[2] + 2 * PROBE_SECRET_LIFETIME:
            return False
        current, previous, issued = keys
        target, responder = msg.target, msg.responder
        if self._probe_target(current, addr, responder, kind) == target:
            return True
        return (previous is not None and now < issued + PROBE_SECRET_LIFETIME
                and self._probe_target(previous, addr, responder, kind) == target)

    def _announce_kind(self, entry: int) -> bytes:
        """The key an announce probe's target adds for table entry `entry` ("A" and the
        entry's IPv4 address): its answer names the (entry, announced address) it was sent
        for, and no other probe's answer (an admission or validation probe's) can pass for
        it (protocol section 23, "The other address")."""
        registry = self.registry
        addr = registry.addrs[entry]
        return b"A" + (registry.addr_to_wire(addr) or repr(addr).encode())

    def _probe_announce(self, entry: int, addr: Any, node_id: int, now: float) -> None:
        """Probe `addr`, the IPv6 address table entry `entry` (ID `node_id`, at IPv4)
        announced: a bare request with a target of its own kind (`_announce_kind`), metered as
        any probe. Only its echo from `addr` by `node_id` proves the other address."""
        if self._may_probe(addr, now):
            target = self._probe_target(self._probe_secrets(now)[0], addr, node_id,
                                        self._announce_kind(entry))
            self._send(RouteRequest(self.node_id, target), addr)

    def _admit(self, handle: int, now: float) -> None:
        """`handle` answered our probe from its address: the table learns it (uptime, moved
        and one-ID-per-address rules)."""
        if self.settings.max_per_subnet and self._subnet_full(handle):
            return
        table = self.table
        holder = self._address_holder(handle)
        if holder >= 0:
            if holder in table and not table.failures(holder):
                self.count("address_taken")  # that address's entry still answers as its own ID
                return
            table.remove(holder) if holder in table else table.failed(holder)  # stale: gone
        if table.observe(handle, now, answered=True):
            if self.settings.refresh_heard:
                table.touch(self.registry.ids[handle], now)  # BEP 5: its bucket is active
            return
        old = table.check_wanted(handle, now)
        if old >= 0:  # its ID answers at another address: does the old one still answer?
            self._check_address(old, handle, now)
        elif self.settings.proximity:
            self._prefer_near(handle)

    def _check_address(self, old: int, new: int, now: float) -> None:
        """Entry `old`'s ID answered our probe at another address (a restart on another port,
        or a forger receiving there): probe the old address `address_check_probes` times,
        `address_check_spacing` apart (`_moves_due` sends the others); none answered within the
        request timeout of the last, the new address takes the entry's place. Not sent (probe
        meter, or that address probed this second): no check, the entry stays."""
        registry = self.registry
        addr = registry.addrs[old]
        if self._may_probe(addr, now):
            self._send_probe(addr, registry.ids[old], now)
            more = self.settings.address_check_probes - 1
            self.table.start_check(old, new, now + self._check_wait(more), now, more)

    def _check_wait(self, more: int) -> float:
        """How long after an address check's probe its next step comes (`more` probes left):
        a spacing drawn between 0.5x and 1.5x, so a forger cannot time a flood of the checked
        node to the probes; after the last probe, the request timeout."""
        settings = self.settings
        if not more:
            return settings.request_timeout
        return settings.address_check_spacing * (0.5 + self.rng.random())

    def _moves_due(self, now: float) -> None:
        """Checks of old addresses unanswered by their deadline: the new address takes the
        entry's place (unless another ID that answers holds it by now: one ID per address, as
        in `_admit`); with probes left, the next probe (a probe the meter refuses waits a
        spacing, not counted: a drained meter never moves an entry)."""
        table = self.table
        for old, new, more in table.expired_checks(now):
            if more:
                registry = self.registry
                addr = registry.addrs[old]
                if self._may_probe(addr, now):
                    self._send_probe(addr, registry.ids[old], now)
                    more -= 1
                    table.continue_check(old, now + self._check_wait(more), more)
                else:
                    table.continue_check(old, now + self.settings.address_check_spacing, more)
                continue
            holder = self._address_holder(new)
            if holder >= 0:
                if holder in table and not table.failures(holder):
                    continue
                table.remove(holder) if holder in table else table.failed(holder)  # stale
            table.move(old, new)

    def measured_answer(self, handle: int, rtt: float, now: float) -> bool:
        """`handle` answered our lookup request after `rtt` s: the node's round trip and (when a
        setting uses them) the contact's; an entry or cached contact is alive. True when it is
        neither but admissible: its probe's answer then admits it (`admit_probed`, where the
        proximity rule acts). The simulator's `--near` tables run this too (one rule)."""
        self.observe_round_trip(rtt)
        settings = self.settings
        if settings.rtt_choice_bits >= 0 or settings.contact_slow or settings.proximity:
            self.observe_contact_rtt(self.registry.addrs[handle], rtt)
        table = self.table
        held = table.heard(handle, now, answered=True)  # known(handle) and observe(...), or None
        if held is not None:  # held at this address already: it is alive
            if held and settings.refresh_heard:
                table.touch(self.registry.ids[handle], now)  # BEP 5: its bucket is active
            return False
        return self._admissible(handle)

    def admit_probed(self, handle: int, now: float) -> None:
        """`handle` answered our probe from its address (what `_on_response` does for a probe's
        answer; the simulator's `--near` tables call it for a probe they take as answered)."""
        self._admit(handle, now)

    def _prefer_near(self, handle: int) -> None:
        """Proximity neighbour selection: `handle` (cached: its bucket is full) takes the place
        of the bucket's slowest entry if it answered faster (a round trip measured by our own
        lookup request; an entry never measured counts as the node's srtt), the bucket's
        `proximity_keep` oldest entries aside; round trips below `rtt_floor` count as the
        floor, so the entry must be slower than that too; with `proximity_measured` an entry
        never measured is not displaced at all."""
        rtts = self.rtts
        addrs = self.registry.addrs
        rtt = rtts.srtt(addrs[handle]) if rtts is not None else None
        if rtt is None:
            return  # a requester we only probed: not measured, the uptime rule alone
        table = self.table
        default = None if self.settings.proximity_measured else self._srtt
        slowest, worst = -1, max(rtt, self.settings.rtt_floor)
        bucket = table.bucket(table.bucket_index(self.registry.ids[handle]))
        for entry in bucket[self.settings.proximity_keep:]:
            expected = rtts.srtt(addrs[entry])
            if expected is None:
                expected = default
            if expected is not None and expected > worst:
                slowest, worst = entry, expected
        if slowest >= 0:
            table.displace(handle, slowest)

    def _subnet_full(self, handle: int) -> bool:
        """Whether `handle`'s bucket already holds `max_per_subnet` others from its /24."""
        table = self.table
        registry = self.registry
        bucket = table.bucket(table.bucket_index(registry.ids[handle]))
        if handle in bucket:
            return False
        subnet, addrs = registry.subnet, registry.addrs
        mine = subnet(addrs[handle])
        return sum(1 for h in bucket if subnet(addrs[h]) == mine) >= self.settings.max_per_subnet

    def apply_subnet_limit(self) -> int:
        """Drop the entries over `max_per_subnet` (the youngest of each /24 in each bucket): for
        tables loaded whole (the simulator's fast bootstrap). Return how many were dropped."""
        limit = self.settings.max_per_subnet
        if not limit:
            return 0
        table = self.table
        subnet, addrs = self.registry.subnet, self.registry.addrs
        extra = []
        for index in range(table.bucket_count()):
            seen: dict[Any, int] = {}
            for handle in table.bucket(index):  # oldest first
                key = subnet(addrs[handle])
                seen[key] = seen.get(key, 0) + 1
                if seen[key] > limit:
                    extra.append(handle)
        for handle in extra:
            table.remove(handle)
        return len(extra)

    def announce(self, addr: Any) -> None:
        """Our IPv6 address (None: none), announced in our ROUTE6_RES to marked requests over
        IPv4 (section 23, "The other address": we name ourselves there, last): a requester that
        proves it by a probe names us there to requesters that ask over IPv6. Ignored by a node
        that cannot reach IPv6 peers, and an address with no wire form."""
        self._announce = (addr if self.settings.ipv6 and is_ipv6(addr)
                          and to_wire(addr) is not None else None)

    def _query_other(self, entry: int, addr: Any, node_id: int, now: float) -> None:
        """Table entry `entry` (ID `node_id`) at IPv4 `addr` sent us a marked request (it can
        reach IPv6) of ROUTE6_REQUEST_SIZE bytes or more (kadtalk's; our query is no larger)
        from a validated address (the amplification limit does not apply there): unless its
        other address was proven, or it was asked, within OTHER_REFRESH (the bound: one query
        an entry per OTHER_REFRESH; the probe meter's second per address would skip the query
        that follows an entry's admission probe), ask it back: a marked request whose target is
        keyed (the probe key over `addr`, its ID and "Q"). Its ROUTE6_RES, echoing the target
        from `addr`, carries its announce (it names itself at its IPv6 address, last), taken as
        one from a keyed answer (`_on_response`). Nothing is kept per query but when it went
        (`OtherAddresses.ask`)."""
        others = self._others
        if others is None:
            others = self._others = OtherAddresses()
        if others.due(entry, now):
            others.ask(entry, now)
            target = self._probe_target(self._probe_secrets(now)[0], addr, node_id, b"Q")
            # ROUTE6_REQUEST_SIZE, not our own padded size: no larger than what drew it
            self._send(RouteRequest(self.node_id, target, ROUTE6_REQUEST_SIZE), addr)

    def _announced(self, entry: int, other: Any, node_id: int, now: float) -> None:
        """Table entry `entry` (ID `node_id`, at IPv4) named itself at IPv6 `other` in its
        answer to our keyed request (which proved its IPv4 address): probe `other` with an
        announce probe (`_probe_announce`; its answer: `_proves_other`), unless it was proven
        for that entry within OTHER_REFRESH or is in a special range (route6.REFUSED6)."""
        registry = self.registry
        others = self._others
        if others is not None and not others.wants(entry, other, registry.addrs, now):
            return  # proven within OTHER_REFRESH
        if announce_refused(other, registry.addrs[entry]):
            self.count("announce_refused")  # loopback, multicast, NAT64...: route6.REFUSED6
        else:
            self._probe_announce(entry, other, node_id, now)

    def _is_announce_answer(self, msg: RouteResponse, addr: Any, now: float) -> bool:
        """Whether `msg` from IPv6 `addr` echoes our announce probe (`_probe_announce`) of
        `addr` for the IPv4 table entry of its responder's ID."""
        entry = self.table.find(msg.responder)
        return (entry >= 0 and not is_ipv6(self.registry.addrs[entry])
                and self._is_probe_answer(msg, addr, now, self._announce_kind(entry)))

    def _proves_other(self, responder: int, addr: Any, now: float) -> bool:
        """Our announce probe of IPv6 `addr` for `responder` was answered (only an announce
        probe's answer: `_is_announce_answer`): if the table holds that ID at an IPv4 address
        that has not failed, `addr` is its other address (kept beside the entry, named to IPv6
        requesters; the entry is not moved: both addresses are its own) unless another ID that
        answers holds `addr`; True then (handled), False for the admission rules (`_admit`: a
        failing entry, which `addr` may replace)."""
        table, registry = self.table, self.registry
        entry = table.find(responder)
        if entry < 0 or is_ipv6(registry.addrs[entry]) or table.failures(entry):
            return False
        handle = registry.intern(responder, addr)
        holder = self._address_holder(handle)
        if holder >= 0 and holder in table and not table.failures(holder):
            self.count("address_taken")
            return True
        if self._others is None:
            self._others = OtherAddresses()
        self._others.prove(entry, handle, now)
        return True

    def is_validated(self, addr: Any) -> bool:
        """Whether `addr` answered one of our requests (among the last VALIDATED_LIMIT)."""
        validated = self._validated
        return validated is not None and addr in validated

    def _answered_from(self, addr: Any) -> None:
        """An answer to our unguessable probe, validation probe or keyed request came from
        `addr` (or a join's bootstrap address, which the user named, answered us there): the
        address receives our datagrams (QUIC's address validation). An answer to a request with
        a lookup's own target does not count: a third party may know it and forge it from an
        address it named."""
        validated = self._validated
        if validated is None:
            validated = self._validated = {}
        elif addr in validated:
            del validated[addr]  # renewed: forgotten last
        elif len(validated) >= VALIDATED_LIMIT:
            del validated[next(iter(validated))]  # forget the oldest
        validated[addr] = True
        if self._unvalidated:
            self._unvalidated.pop(addr, None)

    def _send(self, msg: RouteRequest | RouteResponse | tuple[int, list[int], bool],
              addr: Any) -> None:
        if self._outbox is None:
            self._outbox = [(msg, addr)]
        else:
            self._outbox.append((msg, addr))

    def _on_response(self, msg: RouteResponse, addr: Any, now: float) -> None:
        key = (addr, msg.target)
        request = self._pending.get(key) if self._pending else None
        responder = msg.responder
        if responder == self.node_id:
            self.count("own_id")
            return
        registry = self.registry
        if request is None:
            unvalidated = self._unvalidated
            seen = unvalidated.get(addr) if unvalidated else None
            if seen is not None and seen[1] == msg.target:  # echoes our validation probe
                self._answered_from(addr)  # and nothing more: it admits nobody
            elif self._is_probe_answer(msg, addr, now):
                self._answered_from(addr)  # an admission probe's: it never proves an other address
                self._admit(registry.intern(responder, addr), now)
            elif (is_ipv6(addr) and self.settings.other_addresses
                  and self._is_announce_answer(msg, addr, now)):
                self._answered_from(addr)
                if not self._proves_other(responder, addr, now):
                    self._admit(registry.intern(responder, addr), now)
            elif (msg.ipv6 and self.settings.other_addresses and not is_ipv6(addr)
                  and self._is_probe_answer(msg, addr, now, b"Q")):  # echoes our query
                self._answered_from(addr)
                self._admit(registry.intern(responder, addr), now)  # as a probe's answer
                other = own_entry(msg.contacts, responder)[1]
                entry = self.table.find(responder)
                if other is not None and entry >= 0 and registry.addrs[entry] == addr:
                    self._announced(entry, other, responder, now)  # its IPv4 address proven
            else:
                self.count("unsolicited")
            return
        ids = registry.ids
        bootstrap = claimed = False  # a waiter asked a bootstrap address / asked this ID there
        for _, asked in request.waiters:
            if asked < 0:
                bootstrap = claimed = True
            elif ids[asked] == responder:
                claimed = True
        if not claimed:
            self.count("wrong_responder")  # someone else at that address; let the request time out
            return
        del self._pending[key]
        request.live = False
        rtt = now - (request.deadline - self.settings.request_timeout)
        settings = self.settings
        # A bootstrap address the user named answered our join, or an echo of a keyed target
        # (only a host receiving at `addr` knows it, as a probe's): the address is validated
        # and the answer admits its sender, as add_contact / a probe answer would.
        proven = bootstrap or request.keyed
        if proven:
            self._answered_from(addr)
        handle = registry.intern(responder, addr)
        table = self.table
        if self.measured_answer(handle, rtt, now):
            if proven:
                self._admit(handle, now)
            else:  # named by another contact, who knows the target: only a probe answer admits
                self._probe(handle, addr, responder, now)
        contacts = msg.contacts
        if msg.ipv6:  # the responder's own entry is its announce, not a contact (section 23)
            contacts, other = own_entry(contacts, responder)
            if (other is not None and request.keyed and settings.other_addresses
                    and settings.ipv6 and not is_ipv6(addr) and table.find(responder) == handle):
                self._announced(handle, other, responder, now)  # an entry, its IPv4 proven
        target = msg.target
        own = self.node_id
        intern = registry.intern
        hint = max(rtt, settings.rtt_floor) if settings.rtt_hints else None  # floored too
        for lookup, asked in request.waiters:
            if asked >= 0 and ids[asked] != responder:
                table.failed(asked)  # another node answers at the address it claimed
                if not lookup.done:
                    lookup.failed(asked)
                    self._advance(lookup, now)
                continue
            if lookup.done:
                continue
            if asked < 0:
                lookup.answered_probe(handle, responder ^ target)
                hop = 2
            else:
                hop = lookup.answered(asked)
            lookup.add_contacts(contacts, hop, intern, own, hint)
            self._advance(lookup, now)

    def _new_lookup(self, target: int, mode: Mode, purpose: int, now: float, paths: int = 1,
                    verify: Callable[[int], bool] | None = None, urgent: bool = False,
                    fill: int = -1, joined: bool = False,
                    group: list[int] | None = None) -> Lookup:
        if self._lookups is None:
            self._lookups = {}
        elif len(self._lookups) >= self.settings.max_lookups:
            raise TooManyLookups(f"{len(self._lookups)} lookups already running")
        settings = self.settings
        if paths > 1:
            lookup = DisjointLookup(self._next_lookup_id, target, mode, now, settings.k,
                                    settings.alpha, purpose, paths, verify)
        else:
            lookup = Lookup(self._next_lookup_id, target, mode, now, settings.k, settings.alpha,
                            purpose)
            lookup.max_requests = settings.lookup_requests
            if urgent:
                lookup.aggressive = settings.urgent_aggressive
                lookup.first = settings.urgent_first
            lookup.verify = verify
            if settings.rtt_choice_bits >= 0:
                lookup.prefer_fast(self._expected_rtt, settings.rtt_choice_bits,
                                   settings.rtt_bit_cost, self._node_rtt)
        self._next_lookup_id += 1
        self._lookups[lookup.lookup_id] = lookup
        table = self.table
        if fill >= 0:  # a bucket-filling refresh of bucket `fill` (refresh_fill)
            aim = min(settings.join_fill, settings.k) if joined else settings.k
            if group is None:
                lookup.fill(table.range_bits(fill), aim - len(table.bucket(fill)))
            else:  # by group: what the group's buckets refreshed lack, in the whole group (the
                # k-nearest and dry rules end such a lookup long before: review R1 F2)
                lookup.fill(table.group_range_bits(fill),
                            sum(aim - len(table.bucket(index)) for index in group))
        table.touch(target, now)
        if group is not None:
            table.touch_group(target, now)
        ids = self.registry.ids
        for handle in table.closest(target, settings.k):
            lookup.add(handle, ids[handle] ^ target, 1)
        return lookup

    def _start(self, target: int, mode: Mode, purpose: int, now: float, paths: int = 1,
               verify: Callable[[int], bool] | None = None, urgent: bool = False) -> Lookup:
        lookup = self._new_lookup(target, mode, purpose, now, paths, verify, urgent)
        self._advance(lookup, now)
        return lookup

    def _advance(self, lookup: Lookup, now: float) -> None:
        if not lookup.done:
            target = lookup.target
            settings = self.settings
            timeout = now + settings.request_timeout
            slow_at = now + self._slow_after() if settings.free_slow_slots else timeout
            rtts = self.rtts
            contact_slow = settings.contact_slow and settings.free_slow_slots and rtts is not None
            pending = self._pending
            if pending is None:
                pending = self._pending = {}
            expiry = self._expiry
            if expiry is None:
                expiry = self._expiry = collections.deque()
            addrs = self.registry.addrs
            keyed = settings.keyed_requests and lookup.purpose != USER
            ids = self.registry.ids
            for handle in lookup.next_requests():
                addr = addrs[handle]
                key = (addr, target)
                request = pending.get(key)  # a join's bootstrap request there shares its answer
                if request is None and keyed:
                    wire = self._keyed_target(addr, ids[handle], target, now)
                    key = (addr, wire)
                    request = pending.get(key)
                else:
                    wire = target
                if request is None:
                    pending[key] = request = _Pending(timeout, lookup, handle, key, keyed)
                    expiry.append(request)
                    self._send(RouteRequest(self.node_id, wire, self._request_size), addr)
                    at = slow_at
                    if contact_slow and addr in rtts:
                        at = now + self._slow_after(rtts.get(addr))
                    if at < timeout:
                        if self._slow is None:
                            self._slow = []
                        self._slow_seq += 1
                        heapq.heappush(self._slow, (at, self._slow_seq, key, request))
                else:
                    request.waiters.append((lookup, handle))
        if lookup.done:
            self._complete(lookup, now)

    def _expect(self, request: _Pending) -> None:
        if self._expiry is None:
            self._expiry = collections.deque()
        self._expiry.append(request)

    def _slow_after(self, estimate: tuple[float, float] | None = None) -> float:
        """How long a lookup request may go unanswered before its slot goes to another contact:
        by the contact's own (srtt, rttvar) `estimate` if given, else the node's."""
        settings = self.settings
        srtt, rttvar = estimate if estimate is not None else (self._srtt, self._rttvar)
        if srtt is None:
            return settings.request_timeout
        slow = srtt + settings.slow_rttvars * rttvar
        return min(max(slow, settings.slow_floor), settings.request_timeout)

    @property
    def smoothed_rtt(self) -> float | None:
        """This node's smoothed round trip (s), None before anyone answered."""
        return self._srtt

    def observe_round_trip(self, rtt: float) -> None:
        """A peer answered after `rtt` s (our lookup requests, and NAT traversal's address
        probes: a node whose table came from a bulk load has measured nothing else yet).
        RFC 6298's smoothed round trip and its variation (rtt.smoothed, as per contact)."""
        srtt = self._srtt
        self._srtt, self._rttvar = smoothed(None if srtt is None else (srtt, self._rttvar), rtt)

    def observe_contact_rtt(self, addr: Any, rtt: float) -> None:
        """The contact at `addr` answered after `rtt` s (rtt.py; the simulator's fast bootstrap
        may also load what a join would have measured)."""
        if self.rtts is None:
            self.rtts = RttEstimates()
        self.rtts.observe(addr, rtt)

    def _expected_rtt(self, handle: int) -> float | None:
        """A lookup's guess of `handle`'s round trip: its own srtt (at least `rtt_floor`), else
        None (the lookup then takes a hint or the node's srtt, `_node_rtt`, floored as well)."""
        rtts = self.rtts
        srtt = None if rtts is None else rtts.srtt(self.registry.addrs[handle])
        floor = self.settings.rtt_floor
        return srtt if srtt is None or srtt >= floor else floor

    def _node_rtt(self) -> float | None:
        """A never-measured contact's expected round trip: the node's srtt, at least `rtt_floor`
        (unfloored, every contact never measured -- a sybil's fresh name -- would rank ahead of
        the measured ones within the floor whenever the node's srtt is below it)."""
        srtt = self._srtt
        floor = self.settings.rtt_floor
        return srtt if srtt is None or srtt >= floor else floor

    def _complete(self, lookup: Lookup, now: float) -> None:
        if not self._lookups or self._lookups.pop(lookup.lookup_id, None) is None:
            return  # already reported
        if lookup.purpose == REFRESH:
            return
        if self._events is None:
            self._events = collections.deque()
        registry = self.registry
        if lookup.purpose == JOIN:
            self._events.append(Joined(now, len(self.table), lookup.rpcs, lookup.timeouts,
                                       lookup.lookup_id))
            if self.settings.refresh_on_join:
                self._refresh_beyond_closest(lookup, now)
            return
        ids, addrs = registry.ids, registry.addrs
        found = lookup.found
        peer = (ids[found], addrs[found]) if found >= 0 else None
        closest = tuple(
            (ids[h], addrs[h])
            for h in (lookup.closest_answered() if lookup.mode is Mode.FIND_CLOSEST
                      else lookup.closest_live(self.settings.k))
        )
        self._events.append(
            LookupCompleted(
                lookup.lookup_id, lookup.target, lookup.mode, peer, closest, lookup.started, now,
                lookup.rpcs, lookup.timeouts, lookup.hops, lookup.rejected,
            )
        )

    def _refresh_lookup(self, bucket: int, now: float, joined: bool = False,
                        group: list[int] | None = None) -> None:
        """A refresh lookup to a random ID in `bucket`; `group` (refresh_groups, join_groups):
        the buckets of its prefix group it refreshes (`bucket` among them), as one bucket."""
        settings = self.settings
        if self.lookups_running >= settings.max_lookups:
            # counted, not raised: the bucket stays idle and its next refresh comes an
            # interval on (drop_counts; docs/protocol.md section 5.6)
            self.count("refresh_refused")
            return
        target = self.table.random_id_in_bucket(bucket, self.rng)
        lookup = self._new_lookup(target, Mode.FIND_CLOSEST, REFRESH, now,
                                  fill=bucket if settings.refresh_fill else -1, joined=joined,
                                  group=group)
        self._advance(lookup, now)

    def _refresh_beyond_closest(self, lookup: Lookup, now: float) -> None:
        """The paper's join: refresh every bucket farther away than our closest neighbour (the
        nearest the join met that answered: its probe answer may still be on the way)."""
        table = self.table
        nearest = lookup.closest_answered()[:1] or table.closest(self.node_id, 1)
        if not nearest:
            return
        settings = self.settings
        every = settings.refresh_join_full and not settings.refresh_fill
        aim = min(settings.join_fill, settings.k) if settings.refresh_fill else settings.k
        farther = table.farther_buckets(self.registry.ids[nearest[0]])
        if settings.join_groups and settings.bucket_bits > 1:
            wanted = [bucket for bucket in farther if every or len(table.bucket(bucket)) < aim]
            for bucket, group in table.group_refreshes(wanted, self.rng):
                self._refresh_lookup(bucket, now, joined=True, group=group)
            return
        for bucket in farther:
            if every or len(table.bucket(bucket)) < aim:
                self._refresh_lookup(bucket, now, joined=True)

    def _refresh(self, now: float) -> None:
        settings = self.settings
        interval = settings.refresh_interval
        table = self.table
        idle = table.idle_buckets(now, interval)
        refreshes: list[tuple[int, list[int] | None]]
        if settings.refresh_groups and settings.bucket_bits > 1:
            refreshes = list(table.group_refreshes(idle, self.rng))
        else:
            refreshes = [(bucket, None) for bucket in idle]
        if len(refreshes) > settings.max_lookups - self.lookups_running:
            # not all can start (the rest are counted, refresh_refused): the longest idle
            # first, so that those refused now go first an interval on (review R1 F5)
            refreshes.sort(key=lambda pair: table.idle_since(pair[1] or (pair[0],)))
        for bucket, group in refreshes:
            self._refresh_lookup(bucket, now, group=group)
        next_at = table.next_refresh(interval)
        self._refresh_at = next_at if next_at is not None and next_at > now else now + interval

    def _forget_unreferenced(self) -> None:
        live = set(self.table.handles())
        live.update(self.table.checking())
        for lookup in (self._lookups or {}).values():
            live.update(lookup.handles())
        live.update(h for r in (self._pending or {}).values() for _, h in r.waiters if h >= 0)
        for msg, _ in self._outbox or ():
            if type(msg) is tuple:
                live.update(msg[1])  # an answer not encoded yet
        if self._others is not None:
            self._others.retain(live)
        if self._collect(live) and self._formats is not None:
            for _, _, kept in self._formats:
                kept.clear()  # a freed handle may name another contact next


DEFAULT_SETTINGS = RoutingSettings()
