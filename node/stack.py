"""The `Node`: the protocol layers stacked behind one UDP socket, demultiplexed on the first byte.

`LAYER_OF[first byte]` names the layer a datagram goes to: 0x00-0x01 and 0x0b (ROUTE6_RES:
IPv6 contacts) routing, 0x02-0x05 and 0x07 (COOKIE) the session, 0x06 NAT traversal, 0x08
relays, 0x0a value storage; anything else is a counted drop. A call is a find-peer lookup,
then the key exchange with the address found (and through the caller's relay in parallel
when it is NATed: relay/paths.py), all over the one socket. The surface is
kadtalk.node.layer.Layer: datagrams and time in, datagrams and events out, one timer.

Scale: a simulated network holds up to a million `Node`s, so a routing-only node is three slots.
Everything the session needs (identity, settings, the layer itself, drop counters) sits in one
`_Upper` object behind the third slot, allocated only when first needed; the session layer
itself is created on the first session datagram or call.
"""

from __future__ import annotations

import collections
import struct
from random import Random
from typing import Any, Callable, Iterable

from .addresses import is_ipv6
from .layer import Event
from .relay import RELAY, Knocked, RelayLayer, RelayLost, RelayPath, RelaySettings
from .relay import wire as relay_wire
from .relay.addresses import Codec
from .relay.paths import (ASK_SPARE, FALLBACK_AFTER, HOLD_INTERVAL, KNOCK_AGAIN, MAX_ENTRIES,
                          RETRY_RELAY, SILENCE, CallPaths, bounded)

FAMILY_WAIT = 8.0  # s a call across families waits for a relay that reaches its callee
FAMILY_ASK = 4  # contacts asked at once for such a relay (which are dual-stack shows only in
#   ALLOCATED: HELLO and CHALLENGE are stateless and say nothing)
ACROSS_GRACE = 2.0  # smoothed round trips an IPv4-only caller's call lookup may go on after
#   an answer named the callee in IPv6 only (one more round's answers: one naming it in IPv4
#   ends the lookup, a dual-stack callee goes direct); then the call goes across families
ACROSS_GRACE_MAX = 1.0  # s, at most (and before any round trip was measured)
OFFER_AGAIN = KNOCK_AGAIN + 0.5  # s after a call's relay offer with no KNOCKED for it yet:
#   the offer again through the same rendezvous, the interval doubling; each draws the callee's
#   knock anew, whose two bare KNOCKs and cookies a lossy path may all lose. The callee knocks
#   once per offer a KNOCK_AGAIN, timed by arrival: 0.5 s above it, so a repeat whose one-way
#   delay is up to 0.5 s shorter than the last offer's still knocks (review 9: at exactly
#   KNOCK_AGAIN, any shorter delay -- jitter, or float rounding -- drew no knock, half the time)
OFFER_TRIES = 4  # offers of one call in all (at 0, 1.5, 4.5, 10.5 s)
from .routing.events import Joined, LookupCompleted
from .routing.layer import RoutingLayer, RoutingSettings, TooManyLookups
from .routing.messages import ROUTE_REQ, ROUTE_RES
from .routing.route6 import ROUTE6_RES, entry_of, mark
from .session.layer import SessionLayer, SessionSettings
from .session.state import CallState
from .session.wire import COOKIE, KEY_REQ, KEY_RES, MEDIA, SIGNAL
from .storage import STORAGE, StorageLayer, StorageSettings
from .traversal import TRAVERSAL, Traversal, TraversalSettings, choose_rendezvous, is_punch
from .upkeep import JOIN_RETRY, JoinRetry, Rejoin

NONE, ROUTING, SESSION, TRAVERSAL_LAYER, RELAY_LAYER, STORAGE_LAYER = 0, 1, 2, 3, 4, 5  # LAYER_OF
_ROUTES = {ROUTE_REQ: ROUTING, ROUTE_RES: ROUTING, ROUTE6_RES: ROUTING, KEY_REQ: SESSION,
           KEY_RES: SESSION, MEDIA: SESSION, SIGNAL: SESSION, COOKIE: SESSION,
           TRAVERSAL: TRAVERSAL_LAYER, RELAY: RELAY_LAYER, STORAGE: STORAGE_LAYER}
LAYER_OF = bytes(_ROUTES.get(kind, NONE) for kind in range(256))  # first byte -> layer


class _Upper:
    """What a node needs beyond routing; allocated on first need."""

    __slots__ = ("stats", "identity", "settings", "clock_offset", "session", "calls", "events",
                 "traversal", "rejoin", "relay", "relay_settings", "storage", "storage_settings",
                 "paths", "nat", "own", "punch_watch", "punch_lookups", "outbox", "named",
                 "family_wait", "family_at", "searched", "search_held", "dual", "callee_v6",
                 "across_at", "detached", "reoffer", "rerequest")

    def __init__(self, identity: Any = None, settings: SessionSettings | None = None,
                 clock_offset: float = 0.0):
        self.stats: collections.Counter[str] | None = None  # datagrams dropped before a layer
        self.identity = identity
        self.settings = settings
        self.clock_offset = clock_offset
        self.session: SessionLayer | None = None
        self.calls: dict[int, int] = {}  # routing lookup id -> dialling session id
        self.events: collections.deque[Event] = collections.deque()  # routing events passed on
        self.traversal: Traversal | None = None  # NAT traversal (0x06), when asked for
        self.rejoin: Rejoin | None = None  # rejoining while the table is empty or after a failed join (`keep_joined`)
        self.relay: RelayLayer | None = None  # relays (0x08), made on first need
        self.relay_settings: RelaySettings | None = None
        self.storage: StorageLayer | None = None  # value storage (0x0a), made on first need
        self.storage_settings: StorageSettings | None = None
        self.paths: CallPaths | None = None  # relayed calls and path switches (relay/paths.py)
        self.nat = "unknown"  # as the owner told us (`set_nat`): none / cone / symmetric
        self.own: tuple[Any, ...] = ()  # our addresses the owner named (`set_nat(own=)`)
        # calls punched once, awaiting the callee's PUNCH or KEY_RES: session id -> (when to
        # punch again, callee ID, rendezvous asked, relay offer); and the find-closest lookups
        # of second rounds: lookup id -> (session id, rendezvous asked, relay offer)
        self.punch_watch: dict[int, tuple[float, int, tuple[Any, ...], tuple | None]] = {}
        self.punch_lookups: dict[int, tuple[int, tuple[Any, ...], tuple | None]] = {}
        self.outbox: list[tuple[bytes, Any]] = []  # the node's own (peer-reflexive KEY_REQs)
        # Across address families (docs/protocol.md §20-21, "Across address families"): an
        # IPv4-only caller's call lookups ask for ROUTE6_RES; target ID -> [its address in a
        # family we cannot reach, if an answer named one, [(responder ID, address) that did]]
        self.named: dict[int, list] = {}
        # calls waiting for a relay that reaches their callee's family: session id -> (callee
        # ID, rendezvous, callee is IPv6, give up at); the next look for one; relays asked
        self.family_wait: dict[int, tuple[int, tuple[Any, ...], bool, float]] = {}
        self.family_at = 0.0
        self.searched: dict[Any, float] = {}  # relay asked by a family search -> when
        self.search_held: dict[Any, None] = {}  # a search's allocations not yet kept/released
        # relays whose search allocation named their other address (dual-stack ones): asked
        # first, and at once, by the next search (their `searched` stamp goes at release)
        self.dual: dict[Any, None] = {}
        self.callee_v6: dict[int, bool] = {}  # a relayed call's callee family (spare offers)
        # call lookups named their callee in IPv6 only: target ID -> when the call goes across
        # families without waiting for the lookup's end; lookups left to run, their end unheard
        self.across_at: dict[int, float] = {}
        self.detached: dict[int, None] = {}
        # a lossy relayed set-up: session id -> [when, callee ID, rendezvous, offer, offers
        # sent] until KNOCKED comes; session id -> [when, knocked path, KEY_REQs sent] of the
        # KEY_REQ through the relay until KEY_RES (the session's own go to its direct address)
        self.reoffer: dict[int, list] = {}
        self.rerequest: dict[int, list] = {}


class TableView:
    """The routing table as NAT traversal may see it (kadtalk.node.layer.ContactView)."""

    __slots__ = ("routing",)

    def __init__(self, routing: RoutingLayer):
        self.routing = routing

    def address_of(self, node_id: int) -> Any | None:
        routing = self.routing
        handle = routing.table.find(node_id)
        return None if handle < 0 else routing.registry.addrs[handle]

    def is_contact(self, addr: Any) -> bool:
        table, addrs = self.routing.table, self.routing.registry.addrs
        return any(addrs[h] == addr for i in range(table.bucket_count()) for h in table.bucket(i))

    def rendezvous(self, target: int, count: int = 3) -> list[Any]:
        """The `count` contacts nearest `target` (not itself) that traversal can talk to: an
        IPv6 contact drops ADDR_REQ, PUNCH_REQ and PROBE_REQ (no wire form for its address)."""
        routing = self.routing
        registry, table = routing.registry, routing.table
        ids, addrs, wire = registry.ids, registry.addrs, registry.addr_to_wire
        asked, size = count + 1, len(table)
        while True:
            found = [addrs[h] for h in table.closest(target, asked)
                     if ids[h] != target and wire(addrs[h]) is not None]
            if len(found) >= count or asked >= size:
                return found[:count]
            asked = min(2 * asked, size)

    def rendezvous6(self, target: int, count: int) -> list[Any]:
        """The `count` IPv6 contacts nearest `target` (not itself): the ones an IPv6 firewall
        in front of us must keep open (traversal's keep-alives; `rendezvous` keeps IPv4)."""
        routing = self.routing
        registry, table = routing.registry, routing.table
        if not getattr(registry, "holds_ipv6", True):
            return []  # an IPv4-only simulated network: no table sort for nothing (issue 15)
        ids, addrs = registry.ids, registry.addrs
        asked, size = count + 1, len(table)
        while True:
            found = [addrs[h] for h in table.closest(target, asked)
                     if ids[h] != target and is_ipv6(addrs[h])]
            if len(found) >= count or asked >= size:
                return found[:count]
            asked = min(2 * asked, size)

    def round_trip(self, addr: Any, rtt: float) -> None:
        self.routing.observe_round_trip(rtt)

    def addr_to_wire(self, addr: Any) -> bytes:
        return self.routing.registry.addr_to_wire(addr)

    def addr_from_wire(self, data: bytes) -> Any | None:
        return self.routing.registry.addr_from_wire(data)


class Node:
    __slots__ = ("node_id", "routing", "_upper")

    def __init__(
        self,
        node_id: int,
        registry: Any,
        rng: Random,
        settings: RoutingSettings | None = None,
        now: float = 0.0,
        identity: Any = None,
        session_settings: SessionSettings | None = None,
        clock_offset: float = 0.0,
        traversal: bool = False,
        traversal_settings: TraversalSettings | None = None,
        relay_settings: RelaySettings | None = None,
        storage_settings: StorageSettings | None = None,
        random_bytes: Callable[[int], bytes] | None = None,
    ):
        """`identity` (a kadtalk.node.identity.Identity whose ID is `node_id`) enables calls;
        `clock_offset` turns `now` into wall-clock seconds for key-exchange timestamps;
        `traversal` (with an identity) enables NAT traversal (kadtalk.node.traversal);
        `relay_settings` the relay layer's (kadtalk.node.relay: on by default with an identity,
        relaying for others once `relay.set_public` is told a public address); `storage_settings`
        value storage's (kadtalk.node.storage: on by default with an identity); `random_bytes`
        the routing layer's secret keys' source (`os.urandom` in a real node; None: `rng`)."""
        if identity is not None and int.from_bytes(identity.node_id, "big") != node_id:
            raise ValueError("node_id must be the identity's node ID")
        self.node_id = node_id
        self.routing = RoutingLayer(node_id, registry, rng, settings, now, random_bytes)
        self._upper = (
            None if identity is None else _Upper(identity, session_settings, clock_offset)
        )
        if self._upper is not None:
            self._upper.relay_settings = relay_settings
            self._upper.storage_settings = storage_settings
        if traversal and self._upper is not None:
            self._upper.traversal = Traversal(node_id, rng, TableView(self.routing),
                                              traversal_settings, now)
            self._upper.traversal.offered = self._offered
            self._upper.traversal.own = self._own_addresses  # a PUNCH6_FWD naming us: refused

    # -- sans-I/O surface -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        if self._upper is None and data and data[0] <= ROUTE_RES:  # a routing-only node
            self.routing.receive_datagram(data, addr, now)  # `_route` without its checks
            return
        if data and data[0] == ROUTE_REQ:  # the datagram a node sees most (issue 15)
            upper = self._upper
            traversal = None if upper is None else upper.traversal
            if traversal is None or not traversal.watching:  # `_route` without its checks
                routing = self.routing
                routing.receive_datagram(data, addr, now)
                if upper is not None and routing._events:  # serving makes none; earlier ones
                    self._pump(now)
                return
        layer = LAYER_OF[data[0]] if data else NONE
        if layer == ROUTING:
            if data[0] == ROUTE6_RES and self._upper is not None and self._upper.named:
                self._named(data, addr, now)  # before routing: a completed lookup reads it
            self._route(data, addr, now, self.routing.receive_datagram)
        elif layer == SESSION:
            session = self._session()
            if session is None:
                self._count("unknown_type")  # a routing-only node does not speak the session
            elif not self._moved(addr, data, now):
                session.receive_datagram(data, addr, now)
        elif layer == TRAVERSAL_LAYER and self.traversal is not None:
            upper = self._upper
            upper.traversal.receive_datagram(data, addr, now)
            if upper.session is not None and is_punch(data):
                upper.session.path_opened(addr, now)  # a KEY_REQ now gets through its NAT
                self._reflexive(data, addr, now)
                if upper.punch_watch:
                    self._punched(addr)
        elif layer == RELAY_LAYER and self.relay is not None:
            self._upper.relay.receive_datagram(data, addr, now)
            if self._upper.family_wait:
                self._family_check(now)  # an ALLOCATED may name the family a call waits for
            elif self._upper.search_held:
                self._trim_searched(now)  # a search's allocation granted after it ended
        elif layer == STORAGE_LAYER and self.storage is not None:
            self._upper.storage.receive_datagram(data, addr, now)
        else:  # a type nobody speaks, or traversal on a node without it
            self._count("unknown_type" if data else "empty")

    def receive_message(self, msg: Any, addr: Any, now: float) -> None:
        """Simulator fast path: a routing message object (session datagrams stay bytes)."""
        if type(msg) is bytes:
            self.receive_datagram(msg, addr, now)
            return
        self._route(msg, addr, now, self.routing.receive_message)

    def _route(self, msg: Any, addr: Any, now: float, receive: Any) -> None:
        """A routing datagram or message to the routing layer. One from a `stranger` (a public
        host never sent to) that the layer takes without a drop tells NAT traversal that it
        got in (`Traversal.heard`: a few such hosts show endpoint-independent filtering)."""
        upper = self._upper
        traversal = None if upper is None else upper.traversal
        if traversal is None or not traversal.watching or not traversal.stranger(addr):
            receive(msg, addr, now)
        else:
            stats = self.routing.stats
            drops = 0 if stats is None else stats.total()
            receive(msg, addr, now)
            stats = self.routing.stats
            if (0 if stats is None else stats.total()) == drops:
                traversal.heard(addr, now)
        if upper is not None:
            self._pump(now)

    def handle_timer(self, now: float) -> None:
        self.routing.handle_timer(now)
        upper = self._upper
        if upper is not None:
            self._pump(now)
            if upper.session is not None:
                upper.session.handle_timer(now)
            if upper.traversal is not None:
                upper.traversal.handle_timer(now)
                if upper.punch_watch:
                    self._punch_again(now)
            if upper.relay is not None:
                upper.relay.handle_timer(now)
            if upper.traversal is not None and (upper.relay is not None or self.needs_relay):
                self._relay_upkeep(now)
            if upper.across_at:
                self._across_due(now)
            if upper.reoffer or upper.rerequest:
                self._relayed_again(now)
            if upper.family_wait:
                self._family_check(now)
            elif upper.search_held:
                self._trim_searched(now)  # once the search and the calls it served are over
            if upper.storage is not None:
                upper.storage.handle_timer(now)  # republish lookups, expiry, prekey rotation
                self._pump(now)
            rejoin = upper.rejoin
            if rejoin is not None and rejoin.wants_join(len(self.routing.table), now):
                try:
                    lookup_id: int | None = self.routing.join(rejoin.bootstrap, now)
                except TooManyLookups:
                    lookup_id = None
                rejoin.started(lookup_id, now)
                self._pump(now)
            if rejoin is not None and now >= rejoin.hood_at:
                if self._filtered() and not self.routing.refresh_neighbourhood(now):
                    rejoin.hood_busy(now)  # max_lookups run: again soon, the wait not doubled
                else:
                    rejoin.hood_done(now)

    def get_timer(self) -> float | None:
        deadline = self.routing.get_timer()
        upper = self._upper
        if upper is not None:
            for layer in (upper.session, upper.traversal, upper.relay, upper.storage):
                other = layer.get_timer() if layer is not None else None
                if other is not None and (deadline is None or other < deadline):
                    deadline = other
            if upper.rejoin is not None:
                other = upper.rejoin.get_timer(len(self.routing.table))
                if other is not None and (deadline is None or other < deadline):
                    deadline = other
                other = upper.rejoin.hood_at  # our neighbourhood's look-up, behind a NAT
                if ((deadline is None or other < deadline) and self._filtered()
                        and len(self.routing.table)):
                    deadline = other
            if upper.paths is not None and (upper.paths.offered or upper.paths.fallback):
                other = self._silence_timer()
                if other is not None and (deadline is None or other < deadline):
                    deadline = other
            if upper.punch_watch:
                other = min(due for due, _, _, _ in upper.punch_watch.values())
                if deadline is None or other < deadline:
                    deadline = other
            if upper.family_wait:
                other = min(upper.family_at, *(w[3] for w in upper.family_wait.values()))
                if deadline is None or other < deadline:
                    deadline = other
            if upper.across_at:
                other = min(upper.across_at.values())
                if deadline is None or other < deadline:
                    deadline = other
            for table in (upper.reoffer, upper.rerequest):
                if table:
                    other = min(entry[0] for entry in table.values())
                    if deadline is None or other < deadline:
                        deadline = other
            other = self._hold_timer()
            if other is not None and (deadline is None or other < deadline):
                deadline = other
        return deadline

    def _hold_timer(self) -> float | None:
        """When to look for relays next (`_relay_upkeep`): while a NATed node holds fewer than
        it wants, so that the first ones are asked as soon as the NAT is known, not at the
        next keep-alive."""
        upper = self._upper
        relay = upper.relay
        if relay is None or upper.traversal is None or relay.public or not self.needs_relay:
            return None
        wanted = relay.settings.call_relays
        if sum(h.state != "hello" for h in relay.client.held.values()) >= wanted:
            return None
        return upper.paths.hold_at if upper.paths is not None else 0.0

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out = self.routing.datagrams_to_send(now)
        if out and self._upper is not None and self._upper.named:
            named = self._upper.named  # an IPv4-only caller's call lookup asks for ROUTE6_RES
            wire4 = self.routing.registry.addr_to_wire  # towards IPv4 (the simulator's too)
            out = [(mark(data), addr) if data[0] == ROUTE_REQ and int.from_bytes(
                data[21:41], "big") in named and wire4(addr) is not None
                else (data, addr) for data, addr in out]
        return out if self._upper is None else self._with_upper(out, now)

    def messages_to_send(self, now: float) -> list[tuple[Any, Any]]:
        """Routing message objects, and session datagrams as bytes (simulator fast path)."""
        out = self.routing.messages_to_send(now)
        return out if self._upper is None else self._with_upper(out, now)

    def _with_upper(self, out: list[tuple[Any, Any]], now: float) -> list[tuple[Any, Any]]:
        """`out` followed by the session's and NAT traversal's datagrams."""
        upper = self._upper
        if upper.session is not None:
            more = upper.session.datagrams_to_send(now)
            if more and upper.paths is not None and upper.paths.checks:
                more = self._copies(more, now)
            if more and any(type(addr) is RelayPath for _, addr in more):
                more = self._relayed_out(more, now)
            if more:
                out = out + more if out else more
        if upper.outbox:
            out = out + upper.outbox if out else upper.outbox
            upper.outbox = []
        for layer in (upper.traversal, upper.relay, upper.storage):
            if layer is not None:
                more = layer.datagrams_to_send(now)
                if more:
                    out = out + more if out else more
        traversal = upper.traversal
        if out and traversal is not None and (traversal.watching or traversal.remembering):
            traversal.sent(out)  # their hosts may answer through an address-dependent filter
        return out

    def _relayed_out(self, out: list[tuple[bytes, Any]], now: float) -> list[tuple[bytes, Any]]:
        """Session datagrams to a RelayPath go through the relay layer (wrapped in DATA)."""
        relay = self.relay
        direct = [(data, addr) for data, addr in out if type(addr) is not RelayPath]
        for data, addr in out:
            if type(addr) is RelayPath and (relay is None or not relay.send(addr, data, now)):
                self._count("unrelayable")  # a path we do not hold (any more), or relays off
        return direct

    def next_event(self) -> Event | None:
        upper = self._upper
        if upper is None:
            return self.routing.next_event()
        if upper.events:
            return upper.events.popleft()
        event = self.routing.next_event()  # none waits there once pumped; kept for safety
        if event is None and upper.session is not None:
            event = upper.session.next_event()
        if event is None and upper.traversal is not None:
            event = upper.traversal.next_event()
        if event is None and upper.relay is not None:
            event = upper.relay.next_event()
        if event is None and upper.storage is not None:
            event = upper.storage.next_event()
        return event

    # -- routing commands -----------------------------------------------------------------------

    def find_peer(self, target: int, now: float) -> int:
        lookup_id = self.routing.find_peer(target, now)
        if self._upper is not None:
            self._pump(now)
        return lookup_id

    def find_closest(self, target: int, now: float) -> int:
        lookup_id = self.routing.find_closest(target, now)
        if self._upper is not None:
            self._pump(now)
        return lookup_id

    def join(self, bootstrap: Iterable[Any], now: float) -> int:
        lookup_id = self.routing.join(bootstrap, now)
        if self._upper is not None:
            self._pump(now)
        return lookup_id

    # -- network upkeep (kadtalk.node.upkeep) ---------------------------------------------------

    def keep_joined(self, bootstrap: Iterable[Any], now: float, retry: JoinRetry = JOIN_RETRY) -> None:
        """Turn the upkeep on: join through `bootstrap` now, and again whenever the routing
        table is empty or the latest join failed (node/upkeep.py `Rejoin`), with `retry`'s
        back-off while joins fail; with traversal, NAT
        keep-alives (address probes to the contacts nearest our ID) whenever the table has
        contacts, at once after each successful join."""
        if self._upper is None:
            self._upper = _Upper()
        self._upper.rejoin = Rejoin(bootstrap, retry, now)
        self.handle_timer(now)

    @property
    def rejoin(self) -> Rejoin | None:
        return None if self._upper is None else self._upper.rejoin

    def _filtered(self) -> bool:
        """Whether peers that never heard from us may not reach us, so that those joining near
        our ID cannot admit us unless we look our own ID up (`Rejoin.hood_at`): with traversal,
        a NAT not known to be none nor seen to filter endpoint-independently, or any but none
        with IPv6 (a firewall may stand beside an open IPv4 NAT; an IPv6-only host is told
        "none" only without one)."""
        traversal = self.traversal
        return traversal is not None and traversal.nat != "none" and (
            not traversal.independent or self.routing.settings.ipv6)

    def best_peers(self, limit: int = 64) -> list[tuple[int, Any]]:
        """Up to `limit` (ID, address) table entries worth saving for the next start: the
        longest-lived of each bucket first, taken round-robin from the nearest bucket out."""
        routing = self.routing
        table, ids, addrs = routing.table, routing.registry.ids, routing.registry.addrs
        buckets = [table.bucket(i) for i in range(table.bucket_count())]
        out: list[tuple[int, Any]] = []
        depth = 0
        while len(out) < limit and any(depth < len(b) for b in buckets):
            for bucket in reversed(buckets):  # nearest buckets first
                if depth < len(bucket) and len(out) < limit:
                    out.append((ids[bucket[depth]], addrs[bucket[depth]]))
            depth += 1
        return out

    def add_contact(self, node_id: int, addr: Any, now: float) -> bool:
        added = self.routing.add_contact(node_id, addr, now)
        if self._upper is not None:
            self._pump(now)
        return added

    # -- session commands -----------------------------------------------------------------------

    @property
    def session(self) -> SessionLayer | None:
        """The session layer, or None while no session datagram or call has needed it."""
        return None if self._upper is None else self._upper.session

    def session_layer(self) -> SessionLayer | None:
        """The session layer, made now if no session has needed it yet (the owner sets its
        presence or queues a frame before any session exists); None: no identity."""
        return self._session()

    def call(self, peer_id: int, now: float, addr: Any = None, chat: bool = False) -> int:
        """Call `peer_id`: look it up (unless `addr` is given), then exchange keys; return the
        session id. Progress comes as CallProgress / CallEnded events. `chat`: a session for
        messages only (SessionLayer.call)."""
        session = self._session()
        if session is None:
            raise RuntimeError("this node has no identity; it cannot place calls")
        session_id = session.call(peer_id, now, addr, chat=chat)
        if addr is None:
            try:
                lookup_id = self.routing.find_peer(peer_id, now, urgent=True)  # a user waits
            except TooManyLookups:
                session.peer_found(session_id, None, now)
                return session_id
            self._upper.calls[lookup_id] = session_id
            if not self.routing.settings.ipv6 and self.traversal is not None:
                named = self._upper.named  # an IPv6-only callee is named by ROUTE6_RES only
                if len(named) >= MAX_ENTRIES:
                    del named[next(iter(named))]
                named[peer_id] = [None, [], lookup_id, session_id]
            self._pump(now)
        return session_id

    def send_message(self, peer_id: int, message_id: bytes, seq: int, sent_ms: int, text: str,
                     now: float) -> int | None:
        """Send a text message on a session with `peer_id`, opening one for messages (a lookup,
        then the key exchange) when there is none; the session id (None: none could be opened,
        too many lookups run). Delivery comes as MessageDelivered, or MessagesUnsent when the
        session ends first."""
        session = self._session()
        if session is None:
            raise RuntimeError("this node has no identity; it cannot send messages")
        session_id = session.send_message(peer_id, message_id, seq, sent_ms, text, now)
        if session_id is None:
            self.call(peer_id, now, chat=True)
            session_id = session.send_message(peer_id, message_id, seq, sent_ms, text, now)
        return session_id

    def answer(self, now: float, session_id: int | None = None) -> bool:
        session = self.session
        return session is not None and session.answer(now, session_id)

    def decline(self, now: float, session_id: int | None = None) -> bool:
        session = self.session
        return session is not None and session.decline(now, session_id)

    def hang_up(self, now: float, session_id: int | None = None) -> bool:
        session = self.session
        return session is not None and session.hang_up(now, session_id)

    def send_media(self, session_id: int, payload: bytes, now: float) -> int | None:
        session = self.session
        return None if session is None else session.send_media(session_id, payload, now)

    # -- NAT traversal commands (with `traversal=True`) ------------------------------------------

    @property
    def traversal(self) -> Traversal | None:
        return None if self._upper is None else self._upper.traversal

    def probe_address(self, peers: Iterable[Any], now: float) -> None:
        """Ask `peers` where they see us (AddressObserved events); keeps their NAT mappings."""
        traversal = self.traversal
        if traversal is None:
            raise RuntimeError("this node was made without traversal=True")
        traversal.probe(list(peers), now)

    def rendezvous(self, target: int, count: int = 3) -> list[Any]:
        """The addresses of the `count` contacts of our table nearest `target` (not itself).
        A call's punch does not use this: our table rarely holds the callee's neighbours; the
        lookup's nearest contacts do (`_rendezvous_for`)."""
        return TableView(self.routing).rendezvous(target, count)

    def _rendezvous_for(self, event: LookupCompleted) -> list[Any]:
        """A call's rendezvous: the callee's neighbours its lookup met, nearest first (they hold
        it in their tables and receive its keep-alives; docs/protocol.md §20)."""
        count = self._upper.traversal.settings.punch_peers
        return choose_rendezvous(event.target, event.closest, count=count,
                                 usable=self._upper.traversal.usable)

    def _watch_punch(self, session_id: int, target: int, rendezvous: list[Any],
                     offer: tuple | None, now: float) -> None:
        """Punch again through other neighbours of the callee if neither its PUNCH nor its
        KEY_RES has come `punch_again` smoothed round trips after this punch (§20)."""
        upper = self._upper
        if offer is not None:
            bounded(upper.reoffer)
            upper.reoffer[session_id] = [now + OFFER_AGAIN, target, tuple(rendezvous), offer, 1]
        again = upper.traversal.settings.punch_again
        if not again:
            return
        srtt, settings = self.routing.smoothed_rtt, self.routing.settings
        wait = (max(again * srtt, settings.slow_floor) if srtt is not None
                else settings.request_timeout)
        bounded(upper.punch_watch)
        upper.punch_watch[session_id] = (now + wait, target, tuple(rendezvous), offer)

    def _reflexive(self, data: bytes, addr: Any, now: float) -> None:
        """A PUNCH from `addr`: if it names the callee of a call of ours still in key exchange
        and comes from another port of the host our KEY_REQ went to, it is the callee's NAT's
        flow towards us (a symmetric NAT gives each destination its own port, and admits
        replies there only: a peer-reflexive candidate, RFC 8445 §7.3.1.3). A copy of the
        KEY_REQ goes there (bounded: `CallPaths.reflexive_copy`), and the call moves there
        only on an authentic KEY_RES from it (`_moved`). Another host gets nothing: a forged
        PUNCH cannot aim even that copy at a third party (docs/protocol.md §20)."""
        session = self._upper.session
        peer, host = data[2:22], self._host
        where = None
        for s in session.sessions.values():
            if (s.peer_id != peer or s.rx is not None or s.state is not CallState.KEY_EXCHANGE
                    or s.addr == addr or type(s.addr) is RelayPath or s.key_req is None):
                continue
            if where is None:
                where = host(addr)
            if where is None or host(s.addr) != where:
                self._paths().count("reflexive_other_host")
                continue
            paths = self._paths()
            if len(paths.alternates) >= MAX_ENTRIES:
                paths.forget(self._live)  # with relays off nothing else tidies the tables
            if paths.reflexive_copy(s.id, addr, now, self._keying):
                # with that address's own cookie, if any (`Session.request`); the second punch
                # round stays: a forged PUNCH must not cancel it (`_punch_again` skips a keyed call)
                self._upper.outbox.append((s.request(addr), addr))

    def _keying(self, session_id: int) -> bool:
        """Whether call `session_id` is still in key exchange (its reflexive entries live)."""
        session = self.session
        s = session.sessions.get(session_id) if session is not None else None
        return s is not None and s.rx is None and s.state is CallState.KEY_EXCHANGE

    def _host(self, addr: Any) -> bytes | None:
        """An address's host (its wire form less the port), None if it has none."""
        try:
            wire = self.routing.registry.addr_to_wire(addr)
        except (OSError, TypeError, ValueError, IndexError, OverflowError, AttributeError,
                struct.error):
            return None
        return None if wire is None else wire[:-2]

    def _punched(self, addr: Any) -> None:
        """A PUNCH from `addr`: the calls to it need no second round."""
        upper, session = self._upper, self._upper.session
        for sid in [sid for sid in upper.punch_watch
                    if (s := session.sessions.get(sid)) is None or s.addr == addr]:
            del upper.punch_watch[sid]

    def _punch_again(self, now: float) -> None:
        """The second punch round: the callee's neighbours by a find-closest lookup of its ID
        (the ones that answer are alive; the find-peer lookup's nearest may all be dead, or
        not the callee's neighbours when an entry far from it named the callee)."""
        upper, session = self._upper, self._upper.session
        for sid, (due, target, asked, offer) in list(upper.punch_watch.items()):
            if due > now:
                continue
            del upper.punch_watch[sid]
            s = session.sessions.get(sid) if session is not None else None
            if s is None or s.rx is not None or s.state is CallState.ENDED:
                continue  # its KEY_RES came (the callee needed no punch), or the call ended
            try:
                lookup_id = self.routing.find_closest(target, now)
            except TooManyLookups:
                continue
            bounded(upper.punch_lookups)
            upper.punch_lookups[lookup_id] = (sid, asked, offer)
        self._pump(now)

    def _second_punch(self, event: LookupCompleted, now: float) -> None:
        """A second round's lookup ended: punch through its nearest not asked in the first."""
        upper, session = self._upper, self._upper.session
        sid, asked, offer = upper.punch_lookups.pop(event.lookup_id)
        s = session.sessions.get(sid) if session is not None else None
        if s is None or s.rx is not None or s.state is CallState.ENDED:
            return
        fresh = [(node_id, addr) for node_id, addr in event.closest if addr not in asked]
        rendezvous = choose_rendezvous(event.target, fresh,
                                       count=upper.traversal.settings.punch_peers,
                                       usable=upper.traversal.usable)
        if rendezvous:
            upper.traversal.punch(event.target, rendezvous, now, relay=offer)
        if is_ipv6(s.addr) and self._reaches(s.addr):  # not across families: no IPv6 here
            upper.traversal.punch6(event.target, self._rendezvous6(event.target, fresh), now)

    def _rendezvous6(self, target: int, closest: Iterable[tuple[int, Any]]) -> list[Any]:
        """A call's IPv6 rendezvous (PUNCH6_REQ, §20): the callee's IPv6 neighbours its
        lookup met, nearest first (they hold it at its IPv6 address)."""
        count = self._upper.traversal.settings.punch_peers
        return choose_rendezvous(target, closest, count=count, usable=is_ipv6)

    def set_busy(self, busy: bool) -> None:
        session = self._session()
        if session is None:
            raise RuntimeError("this node has no identity")
        session.set_busy(busy)

    def drop_counts(self) -> collections.Counter[str]:
        """Every datagram dropped so far, by reason."""
        total = collections.Counter(self.stats or {})
        total.update(self.routing.stats or {})
        upper = self._upper
        if upper is not None:
            if upper.session is not None:
                total.update(upper.session.stats)
            if upper.traversal is not None:
                total.update(upper.traversal.drop_counts())
            if upper.relay is not None:
                total.update(upper.relay.drop_counts())
            if upper.storage is not None:
                total.update(upper.storage.drop_counts())
        return total

    @property
    def stats(self) -> collections.Counter[str] | None:
        """Datagrams the node dropped before any layer: empty, or of a type it does not speak
        (0x02-0x05 too, when it has no identity)."""
        return None if self._upper is None else self._upper.stats

    # -- relays (kadtalk.node.relay) -------------------------------------------------------------

    @property
    def relay(self) -> RelayLayer | None:
        """The relay layer (made on first use), or None without an identity or with relays off.
        A session may call a RelayPath like any address: its datagrams travel in DATA."""
        upper = self._upper
        if upper is None or upper.identity is None:
            return None
        if upper.relay is None:
            settings = upper.relay_settings
            if settings is not None and not settings.enabled:
                return None
            upper.relay = RelayLayer(upper.identity, settings, deliver=self._from_relay,
                                     own=self._own_addresses,
                                     codec=Codec(self.routing.registry))  # addresses as routing's
            upper.relay.knocked = self._knocked
            upper.relay.path_checked = self._path_checked
        return upper.relay

    def set_relay_settings(self, settings: RelaySettings) -> None:
        """New relay settings (the daemon's [relay] section): the relay layer starts anew."""
        upper = self._upper
        if upper is None or upper.identity is None:
            raise RuntimeError("this node has no identity")
        upper.relay_settings, upper.relay = settings, None

    def set_nat(self, kind: str, public: Any = None, own: Iterable[Any] = ()) -> None:
        """What the owner learnt of our NAT (traversal.nat_kind: none / cone / symmetric /
        unknown) and our public address: a public node relays for others (`serve` auto), a NATed
        one holds `call_relays` allocations for its calls (as one that traversal finds
        symmetric does by itself). `own`: our other addresses (a dual-stack daemon's IPv4 and
        IPv6 ones), whatever the NAT: a public node's relay never forwards to them, nor do we
        knock at them when an offer names one (IPv6: their /64). Our IPv6 one, if any, is the
        address our requests over IPv4 announce (routing, protocol section 23)."""
        if self._upper is None:
            self._upper = _Upper()
        self._upper.nat = kind
        self._upper.own = tuple(dict.fromkeys(a for a in own if a is not None))
        self.routing.announce(next((a for a in self._upper.own if is_ipv6(a)), None))
        if self._upper.traversal is not None:
            self._upper.traversal.set_nat(kind)  # the keep-alive plan follows it
        relay = self.relay
        if relay is not None:
            relay.set_public(dict.fromkeys([public, *own]) if kind == "none"
                             and public is not None else [])

    @property
    def needs_relay(self) -> bool:
        """Whether calls may need a relay: we are behind a NAT (told, or found symmetric), or
        IPv6-only and not told we are open (`v6_only`)."""
        upper = self._upper
        if upper is None:
            return False
        traversal = upper.traversal
        return upper.nat in ("cone", "symmetric") or (traversal is not None
                                                     and (traversal.symmetric or self.v6_only))

    @property
    def v6_only(self) -> bool:
        """An IPv6-only node that no one told it is open (nat unknown): an IPv6 socket, no IPv4
        peer has answered (no IPv4 view of us, no IPv4 contact at the latest keep-alive: asked
        at every timer, so not a walk of the table). Most such hosts sit behind a stateful
        IPv6 firewall (RFC 6092, the home router's default) that drops unsolicited datagrams
        and which no PROBE can check (PROBE_* are IPv4), so it holds relays, at IPv6 ones, as
        a NATed node does (§21); an IPv6 punch (§20) needs none."""
        upper = self._upper
        traversal = upper.traversal
        return (traversal is not None and upper.nat == "unknown" and self.routing.settings.ipv6
                and traversal.public is None and not traversal.ipv4_contacts)

    def relays_held(self) -> list[RelayPath]:
        """Our granted relay allocations (the ones a call offers its callee)."""
        relay = self.relay if self._upper is not None else None
        if relay is None:
            return []
        granted = [held for held in relay.client.held.values() if held.state == "granted"]
        granted.sort(key=lambda held: held.rtt if held.rtt is not None else float("inf"))
        return [held.path for held in granted]  # the nearest first: the one a call offers

    def _paths(self) -> CallPaths:
        if self._upper.paths is None:
            self._upper.paths = CallPaths()
        return self._upper.paths

    def _live(self, session_id: int) -> bool:
        session = self.session
        return session is not None and session_id in session.sessions

    def _offer(self, session_id: int, peer: int, rendezvous: list[Any],
               v6: bool, count: bool = True) -> tuple | None:
        """Our relay allocation for this call (the callee knocks there), named by the relay's
        address in the callee's family (`v6`): the one we hold it at, or the other one a
        dual-stack relay told us in ALLOCATED (§21); with none that reaches that family, the
        call punches without an offer (counted: `relay_offer_ipv6_only` for an IPv4 callee,
        `relay_offer_no_ipv6` for an IPv6 one; a call across families waits instead, `count`
        False: counted once when its wait times out)."""
        held = self.relays_held()
        if not held:
            return None
        paths = self._paths()
        named = self._named_relays(held, v6)
        if not named:
            if count:  # a call across families: once, when its wait ends (`_family_check`)
                paths.count("relay_offer_no_ipv6" if v6 else "relay_offer_ipv6_only")
            return None
        paths.rendezvous[session_id] = (peer, rendezvous)
        bounded(self._upper.callee_v6)
        self._upper.callee_v6[session_id] = v6
        path = paths.offer(list(named), self._live, session_id)
        return None if path is None else (named[path], path.allocation)

    def _named_relays(self, held: list[RelayPath], v6: bool) -> dict[RelayPath, Any]:
        """Of our allocations `held`, those a callee in the IPv6 (`v6`) or IPv4 family can
        knock at, each with the relay address to name (nearest first)."""
        client, punchable = self.relay.client, self._upper.traversal.punchable
        named: dict[RelayPath, Any] = {}
        for path in held:
            other = getattr(client.held.get(path.relay), "other", None)
            if is_ipv6(path.relay) == v6 and punchable(path.relay):
                named[path] = path.relay
            elif other is not None and is_ipv6(other) == v6 and punchable(other):
                named[path] = other
        return named

    # -- across address families (docs/protocol.md §20-21) ---------------------------------------

    def _reaches(self, addr: Any) -> bool:
        """Whether we can send to `addr`'s family: IPv6 if our socket asks for IPv6 contacts
        (RoutingSettings.ipv6, the driver's finding); IPv4 (and the simulator's addresses) once
        a peer answered us over it (traversal saw our address, or the table holds such a
        contact: entries are admitted only after they answered)."""
        if is_ipv6(addr):
            return self.routing.settings.ipv6
        traversal = self.traversal
        if traversal is not None and traversal.public is not None:
            return True
        routing = self.routing
        table, addrs = routing.table, routing.registry.addrs
        return any(not is_ipv6(addrs[h]) for i in range(table.bucket_count())
                   for h in table.bucket(i))

    def _named(self, data: bytes, addr: Any, now: float) -> None:
        """A ROUTE6_RES during an IPv4-only caller's call lookup: the callee's entry, if it is
        in IPv6, is kept aside (the routing layer skips it: we cannot reach it) with who named
        it (a rendezvous that holds the callee). The first time, if no relay we hold reaches
        IPv6, the search for one starts now, while the lookup looks on for an IPv4 entry.
        Only an answer the routing layer takes counts (`awaits`: our request to that address
        for that target, by the ID we asked): an unsolicited or spoofed one would set the
        callee's address, take rendezvous slots and start a relay search at its source."""
        if len(data) < 41:
            return
        target = int.from_bytes(data[21:41], "big")
        seen = self._upper.named.get(target)
        responder = int.from_bytes(data[1:21], "big")
        if seen is None or not self.routing.awaits(addr, target, responder):
            return
        found = entry_of(data, target)
        if found is not None and is_ipv6(found):
            first = seen[0] is None
            seen[0] = found
            if len(seen[1]) < self._upper.traversal.settings.punch_peers:
                seen[1].append((responder, addr))
            if first and len(seen) > 3:  # a call's lookup: it need not run to its end
                srtt = self.routing.smoothed_rtt
                grace = ACROSS_GRACE_MAX if srtt is None else min(ACROSS_GRACE * srtt,
                                                                  ACROSS_GRACE_MAX)
                bounded(self._upper.across_at)
                self._upper.across_at[target] = now + grace
            relay = self.relay
            if first and relay is not None and not self._named_relays(
                    self.relays_held(), True):
                self._family_search([a for _, a in seen[1]], now)

    def _across(self, session_id: int, target: int, closest: Iterable[tuple[int, Any]],
                addr: Any, named: list[tuple[int, Any]], now: float) -> None:
        """A callee in a family we cannot reach: the call sets up through a relay alone, one
        that reaches the callee's family (a dual-stack relay named by its other address), its
        offer going through rendezvous we can reach (those that named the callee first: they
        hold it). Without such a relay the call waits for one (`_family_check`)."""
        traversal = self._upper.traversal
        self._paths().count("across_families")
        rendezvous = choose_rendezvous(
            target, named, closest, count=traversal.settings.punch_peers,
            usable=lambda a: traversal.punchable(a) and self._reaches(a))
        v6 = is_ipv6(addr)
        offer = self._offer(session_id, target, rendezvous, v6, count=False)
        if offer is not None:
            traversal.punch(target, rendezvous, now, relay=offer)
            self._watch_punch(session_id, target, rendezvous, offer, now)
            return
        if self.relay is None:
            return  # relays off: none will come (the key exchange's timeout ends the call)
        wait = self._upper.family_wait
        bounded(wait)
        wait[session_id] = (target, tuple(rendezvous), v6, now + FAMILY_WAIT)
        self._family_search(rendezvous, now)

    def _across_due(self, now: float) -> None:
        """Call lookups that named their callee in IPv6 only, `ACROSS_GRACE` ago, and found
        no IPv4 entry since: the call goes across families now (`_across`, as at the
        lookup's end, with the rendezvous that named the callee) and the lookup runs on
        unheard. Its end would come only once every contact near the target answered or
        timed out: seconds, where NATed and symmetric contacts are named at ports that never
        answer (the testbed's IPv4-only -> IPv6-only cells: 2.2-6.9 s)."""
        upper = self._upper
        for target, at in list(upper.across_at.items()):
            if at > now:
                continue
            del upper.across_at[target]
            seen = upper.named.get(target)
            if seen is None or seen[0] is None or len(seen) < 4:
                continue
            lookup_id, session_id = seen[2], seen[3]
            if upper.calls.get(lookup_id) != session_id:
                continue  # the lookup ended: the call went on from there
            del upper.calls[lookup_id], upper.named[target]
            bounded(upper.detached)
            upper.detached[lookup_id] = None
            self._paths().count("across_early")
            self._across(session_id, target, (), seen[0], seen[1], now)
            upper.session.peer_found(session_id, seen[0], now)
            self._hold(session_id, now)

    def _family_check(self, now: float) -> None:
        """Calls waiting for a relay of their callee's family: offer it once one is granted,
        look for one meanwhile, give up after FAMILY_WAIT (the key exchange's own timeout ends
        the call). Once no call waits, the allocations searches made that no call uses are
        released (`_trim_searched`)."""
        upper, session = self._upper, self.session
        for sid, (target, rendezvous, v6, until) in list(upper.family_wait.items()):
            s = session.sessions.get(sid) if session is not None else None
            if s is None or s.rx is not None or s.state is not CallState.KEY_EXCHANGE:
                del upper.family_wait[sid]
                continue
            offer = self._offer(sid, target, list(rendezvous), v6, count=False)
            if offer is not None:
                del upper.family_wait[sid]
                upper.traversal.punch(target, list(rendezvous), now, relay=offer)
                self._watch_punch(sid, target, list(rendezvous), offer, now)
                self._hold(sid, now)
                self._paths().count("family_relay_found")
            elif now >= until:
                del upper.family_wait[sid]
                self._paths().count("family_relay_timeout")
                if self.relays_held():  # once a call (not at every look meanwhile)
                    self._paths().count("relay_offer_no_ipv6" if v6 else "relay_offer_ipv6_only")
            else:
                self._family_search(list(rendezvous), now)
        if not upper.family_wait:
            self._trim_searched(now)

    def _family_search(self, first: list[Any], now: float) -> None:
        """Ask up to FAMILY_ASK contacts we can reach for an allocation (HELLO asks for the
        relay's other address): a dual-stack one answers with it. Relays that named it to an
        earlier search first (`dual`), then the call's rendezvous (`first`: they hold the
        callee in the other family, so they have it), then our relay candidates. One round
        every HOLD_INTERVAL while a call waits; each contact at most once per RETRY_RELAY,
        but a dual-stack relay whose allocation was released is asked again at once."""
        upper, relay = self._upper, self.relay
        if relay is None or now < upper.family_at:
            return
        client = relay.client
        busy = [upper.searched.get(a, -HOLD_INTERVAL) + HOLD_INTERVAL
                for a, h in client.held.items() if h.state != "granted"
                and now - upper.searched.get(a, -HOLD_INTERVAL) < HOLD_INTERVAL]
        if busy:
            upper.family_at = min(busy)  # a round is under way: look again once it is over
            return  # (not at once: `get_timer` would be due now for ever)
        upper.family_at = now + HOLD_INTERVAL
        own = self._own_addresses()
        contacts = [a for a in dict.fromkeys([*upper.dual, *first, *self._relay_candidates()])
                    if a not in client.held
                    and a not in own and relay.codec.to_wire(a) is not None
                    and self._reaches(a)]
        room = min(FAMILY_ASK, relay.settings.max_client_allocations - len(client.held))
        searched = upper.searched
        # not `CallPaths.candidates`: a relay the hold upkeep asked and passed over (its
        # CHALLENGE came after `wanted` others') is a good candidate here
        for addr in [a for a in contacts if now - searched.get(a, -RETRY_RELAY) >= RETRY_RELAY
                     ][:max(room, 0)]:
            try:
                relay.allocate(addr, now, always=True)  # every relay that answers, not `wanted`
            except ValueError:
                continue
            bounded(searched)
            searched[addr] = now
            upper.dual.pop(addr, None)  # back once it grants us an other address again
            bounded(upper.search_held)
            upper.search_held[addr] = None

    def _trim_searched(self, now: float) -> None:
        """Once no call waits for a relay of its callee's family (nor a call lookup, which may
        still find the callee in the other family), of the allocations searches made: those
        offered to a live call stay (looked at again when it ends), a NATed node keeps what it
        lacks of its `call_relays`, HELLOs not answered are forgotten, the rest is released."""
        upper, relay = self._upper, self.relay
        if relay is None:
            upper.search_held.clear()
            return
        if upper.family_wait or upper.named:
            return
        client, offered = relay.client, self._paths().offered
        keep = relay.settings.call_relays if self.needs_relay and not relay.public else 0
        kept = sum(h.state != "hello" for a, h in client.held.items()
                   if a not in upper.search_held)
        for addr in list(upper.search_held):
            held = client.held.get(addr)
            if held is None or not held.always:
                del upper.search_held[addr]  # gone (or asked anew by the hold upkeep)
            elif held.state == "hello":
                client.cancel(addr)
                del upper.search_held[addr]
            elif held.state != "granted":
                continue  # allocating: decided once granted
            elif held.path in offered and self._live(offered[held.path]):
                continue
            elif kept < keep:
                kept += 1
                held.always = False
                del upper.search_held[addr]  # one of the node's own now
            else:
                if held.request is None or held.request.kind != "release":
                    relay.release(held.path, now)
                del upper.search_held[addr]
                if held.other is not None:  # a dual-stack relay: the next call asks it again
                    upper.searched.pop(addr, None)
                    bounded(upper.dual)
                    upper.dual[addr] = None

    def _offered(self, requester: bytes, requester_addr: Any, relay_addr: Any, allocation: bytes,
                 now: float) -> None:
        """A caller's PUNCH_FWD_RELAY: knock at its relay (and let a call of ours with it move
        there: the caller is offering a new relay because its old one went silent)."""
        relay = self.relay
        if relay is None:
            return
        paths = self._paths()
        if relay.codec.forbidden(relay_addr, None, self._own_addresses(),
                                 relay.settings.forward_private):
            paths.count("relay_offer_refused")  # no knocks at special addresses
            return
        if not self._reaches(relay_addr):
            paths.count("relay_offer_unreachable")  # a family we cannot send to
            return
        path = RelayPath(relay_addr, allocation)
        caller = int.from_bytes(requester, "big")
        answered = relay.client.peers.__contains__  # its relay sent a KNOCK_COOKIE
        session = self.session

        def live(sid: int) -> bool:  # a call the knocked path carried, not ended
            s = session.sessions.get(sid) if session is not None else None
            return s is not None and s.state is not CallState.ENDED

        if not paths.heard(path, caller, requester_addr, now, answered, live):
            return  # one knock per offer (each rendezvous forwards the same one), or full
        # the echo claims the KEY_REQ the caller held at its relay (`_hold`)
        relay.knock(path, now, relay_wire.hold_token(allocation, requester,
                                                     self.node_id.to_bytes(20, "big")))
        for s in (session.sessions.values() if session is not None else ()):
            if s.peer_id == requester and s.rx is not None and s.state is not CallState.ENDED:
                # The requester ID is not authenticated here: nothing of the call goes to the
                # named relay, and the call moves there only once the path answered a
                # PATH_CHALLENGE sent over it (`_moved`), the relay a KNOCK_COOKIE before.
                paths.relay_offered(s.id, path, now, answered)

    def _knocked(self, event: Knocked) -> None:
        """The callee knocked at our allocation: permit it, and send our KEY_REQ there too."""
        paths, session, now = self._paths(), self.session, event.at
        sid = paths.offered.get(event.path)
        s = session.sessions.get(sid) if session is not None and sid is not None else None
        if s is None:
            paths.count("knock_unexpected")
            return
        if paths.knocks.get(event.path, (None,))[0] == sid:
            # The callee's second copy, or another source: a KNOCK's source is not proven
            # (docs/protocol.md §21), so one knocker per call, and one relayed KEY_REQ.
            paths.count("knock_again")
            return
        bounded(paths.knocks)
        paths.knocks[event.path] = (sid, event.peer)
        self.relay.permit(event.path, event.peer, now)
        paths.check(sid, event.path, now)
        self._upper.reoffer.pop(sid, None)  # the callee's knock came through
        if s.rx is None and s.key_req is not None:  # still in key exchange: try the relay now
            self.relay.send(event.path, s.request(event.path), now)
            bounded(self._upper.rerequest)
            self._upper.rerequest[sid] = [now + session.settings.key_retry, event.path, 1]

    def _hold(self, session_id: int, now: float) -> None:
        """Our call `session_id` has just offered our relay allocation (no KNOCKED yet): its
        KEY_REQ goes to that relay now, HELD there until the callee's CLAIM with the call's
        token, sent beside its first KNOCK, takes it (server.py, "Held first DATA", "Claimed
        before the proof"), so it reaches the callee one relay round trip after the offer, not
        after the knock's proof and a round trip to us: a relayed set-up about one callee-relay
        round trip over a direct one. Not held when a CLAIM could not take it (over 3x its
        size: an RSA identity's KEY_REQ): the KNOCKED path carries it then."""
        upper, relay = self._upper, self.relay
        entry = upper.reoffer.get(session_id)
        s = upper.session.sessions.get(session_id) if upper.session is not None else None
        if entry is None or relay is None or s is None or s.key_req is None or s.rx is not None:
            return
        allocation = entry[3][1]
        path = next((p for p, sid in self._paths().offered.items()
                     if sid == session_id and p.allocation == allocation), None)
        payload = s.request(path) if path is not None and relay.client.knows(path) else None
        if payload is None or relay_wire.HEADER + len(payload) > \
                relay_wire.CLAIM_FACTOR * relay_wire.CLAIM_SIZE:
            return
        relay.hold(path, relay_wire.hold_token(allocation, self.node_id.to_bytes(20, "big"),
                                               s.peer_id), payload)

    def _relayed_again(self, now: float) -> None:
        """A relayed set-up on a lossy path: the offer again while no KNOCKED came for it
        (`OFFER_AGAIN`), and, once it came, the KEY_REQ again through the knocked path on the
        session's own schedule (key_retry, doubling, key_tries in all) until KEY_RES: over a
        relay each crosses the network twice, and the session's retransmissions go to the
        callee's direct address (copied to the relay at most once a CHECK_INTERVAL)."""
        upper, session = self._upper, self.session

        def keying(sid: int) -> Any:
            s = session.sessions.get(sid) if session is not None else None
            return s if s is not None and s.rx is None and s.state is CallState.KEY_EXCHANGE \
                else None

        for sid, entry in list(upper.reoffer.items()):
            due, target, rendezvous, offer, sent = entry
            if due > now:
                continue
            if keying(sid) is None or sent >= OFFER_TRIES:
                del upper.reoffer[sid]
                continue
            upper.traversal.punch(target, list(rendezvous), now, relay=offer)
            self._hold(sid, now)  # the relay holds for HOLD_FOR: the held KEY_REQ anew too
            self._paths().count("offer_again")
            entry[0], entry[4] = now + OFFER_AGAIN * 2 ** sent, sent + 1
        for sid, entry in list(upper.rerequest.items()):
            due, path, sent = entry
            if due > now:
                continue
            s = keying(sid)
            settings = session.settings if session is not None else None
            if s is None or s.key_req is None or sent >= settings.key_tries:
                del upper.rerequest[sid]
                continue
            self.relay.send(path, s.request(path), now)
            self._paths().count("relayed_key_req_again")
            entry[0], entry[2] = now + settings.key_retry * 2 ** sent, sent + 1

    def _moved(self, addr: Any, data: bytes, now: float) -> bool:
        """A session datagram over another path of a call: the session moves the call if it
        authenticates (True: the datagram was taken)."""
        paths = self._upper.paths if self._upper is not None else None
        sid = paths.session_of(addr) if paths is not None else None
        session = self.session
        s = session.sessions.get(sid) if session is not None and sid is not None else None
        if s is None or s.addr == addr or not (data[0] in (KEY_RES, MEDIA, SIGNAL)
                                                or data[0] == COOKIE and s.rx is None):
            return False
        if s.rx is not None and not self._proven(sid, addr):
            self._probe(s, addr, data, now)  # an authentic packet proves nothing of its source
            return True
        if paths.fallback.get(sid) == addr and now - s.last_recv < FALLBACK_AFTER:
            session.receive_datagram(data, s.addr, now)  # late: the direct path still carries it
            return True
        old = s.addr
        if session.move(sid, addr, data, now):
            paths.moved(sid, addr, old)
            if type(addr) is RelayPath and type(old) is not RelayPath:
                paths.check(sid, old, now)  # keep trying the direct path: ICE's upgrade
        return True  # taken: moved, or refused and counted by the session (`move_refused`)

    def _proven(self, sid: int, addr: Any) -> bool:
        """Whether call `sid` may move to `addr` without a PATH_CHALLENGE: it answered one, it
        is the call's fall-back, or it is our own allocation (its relay forwards only to the
        address that proved itself there)."""
        paths, relay = self._upper.paths, self._upper.relay
        if paths.validated.get(addr) == sid or paths.fallback.get(sid) == addr:
            return True
        held = (relay.client.held.get(addr.relay)
                if relay is not None and type(addr) is RelayPath else None)
        return held is not None and held.path == addr

    def _probe(self, s: Any, addr: Any, data: bytes, now: float) -> None:
        """A packet of call `s` from a path not validated (relay/paths.py): taken over the
        call's own path; if authentic, a PATH_CHALLENGE goes to `addr` (in DATA to a
        RelayPath; bounded)."""
        session, paths, relay = self.session, self._upper.paths, self.relay
        rx = s.rx
        before = rx.packets + rx.duplicate
        session.receive_datagram(data, s.addr, now)
        if rx.packets + rx.duplicate == before:
            session.stats["move_refused"] += 1  # not the call's: no answer, no move
        elif (relay is not None and s.state is not CallState.ENDED
              and paths.probe(s.id, addr, len(data), now)):
            nonce = relay.nonce()
            if relay.path_check(relay_wire.PATH_CHALLENGE, nonce, s.tx.key, addr, now):
                paths.challenged(addr, nonce, now)

    def _path_checked(self, data: bytes, addr: Any, now: float) -> None:
        """A PATH_CHALLENGE (answered if a call of ours with an upgrade under way can
        authenticate it, once per nonce, to its source) or a PATH_RESPONSE to one of ours
        (the address it was sent to is validated)."""
        paths, session, relay = self._upper.paths, self.session, self.relay
        if paths is not None and session is not None:
            if data[1] == relay_wire.PATH_CHALLENGE:
                for sid in {*paths.alternates.values(), *paths.offered.values(),
                            *paths.fallback}:
                    s = session.sessions.get(sid)
                    if (s is not None and s.rx is not None and s.state is not CallState.ENDED
                            and relay_wire.path_check_valid(data, s.rx.key)):
                        if paths.answer(data[2:10]):
                            relay.path_check(relay_wire.PATH_RESPONSE, data[2:10], s.tx.key,
                                             addr, now)
                            paths.hurry(sid, addr, now)
                        return
            else:
                sent = paths.challenge_of(data[2:10])
                s = session.sessions.get(sent[0]) if sent is not None else None
                if (s is not None and s.rx is not None and s.state is not CallState.ENDED
                        and relay_wire.path_check_valid(data, s.rx.key)):
                    paths.validate(s.id, sent[1])
                    return
        relay.stats["bad_path_check"] += 1

    def _from_relay(self, payload: bytes, path: RelayPath, now: float) -> None:
        if payload[:1] == bytes((RELAY,)):  # a path check over a relay path (in DATA)
            if relay_wire.well_formed(payload) and payload[1] in (relay_wire.PATH_CHALLENGE,
                                                                  relay_wire.PATH_RESPONSE):
                self._path_checked(payload, path, now)
            else:
                self.relay.stats["bad_path_check"] += 1
            return
        session = self._session()
        if session is None or self._moved(path, payload, now):
            return
        session.receive_datagram(payload, path, now)
        paths = self._upper.paths
        knocked = paths.incoming.get(path) if paths is not None else None
        if knocked is not None and payload[:1] == bytes((KEY_REQ,)):
            for s in session.sessions.values():  # the callee's session over the caller's relay
                if s.addr == path:
                    if s.state is not CallState.ENDED:  # the call the offer was for: once it
                        paths.carried(path, s.id)  # ends, the caller's redial knocks again
                    for addr in knocked[1]:  # the direct path (ICE's upgrade), once it proves
                        if addr is not None:  # itself: no copies to an address a forger named
                            paths.watch(s.id, addr)  # (None: the caller is in another family)

    def _copies(self, out: list[tuple[bytes, Any]], now: float) -> list[tuple[bytes, Any]]:
        """Copies of checked calls' packets over their other paths (relay/paths.py)."""
        paths, session = self._upper.paths, self.session
        by_addr = {s.addr: s.id for sid in paths.checks
                   if (s := session.sessions.get(sid)) is not None}
        more: list[tuple[bytes, Any]] = []
        for data, addr in out:
            sid = by_addr.get(addr)
            if sid is None:
                continue
            for other in paths.due(sid, now):
                if other != addr:
                    more.append((data, other))
        return out + more if more else out

    def _relay_upkeep(self, now: float) -> None:
        """Hold relays for calls when NATed; offer another relay when a relayed call's is lost."""
        upper, relay = self._upper, self.relay
        if relay is None:
            return
        paths = self._paths()
        paths.forget(self._live)
        session = self.session
        for sid, path in list(paths.fallback.items()):
            s = session.sessions.get(sid) if session is not None else None
            if (s is not None and s.addr != path and s.state is CallState.TALKING
                    and now - s.last_recv >= SILENCE and path not in paths.checks.get(sid, ())):
                paths.check(sid, path, now)  # the path went silent: copies via the fall-back
                paths.count("fallback_checked")
        wanted, client = relay.settings.call_relays, relay.client
        held = client.held
        if (now >= paths.hold_at and self.needs_relay and not relay.public
                and sum(h.state != "hello" for h in held.values()) < wanted):
            paths.hold_at = now + HOLD_INTERVAL
            client.wanted = wanted  # the first to answer our HELLOs get the allocations
            for h in held.values():
                if h.state == "granted":
                    paths.served_by(h.relay)
            own = self._own_addresses()
            wire, offerable = relay.codec.to_wire, upper.traversal.usable
            # only relays a call's offer can name (IPv4, §20): one held at an IPv6 address
            # would never be offered, and would stand in for one that can (`_offer`); an
            # IPv6-only node's are IPv6 ones (its offers name them in 18 bytes)
            if self.v6_only:
                offerable = upper.traversal.punchable
            # a generator: `candidates` stops at the few it wants (a whole table's wire forms,
            # every 2 s while relays are sought, were 34 % of a 10^5-peer study's CPU: H3)
            contacts = (addr for addr in self._relay_candidates() if addr not in held
                        and addr not in own and wire(addr) is not None and offerable(addr))
            limit = min(wanted + ASK_SPARE, relay.settings.max_client_allocations)
            for addr in paths.candidates(contacts, len(held), limit, now):
                try:
                    relay.allocate(addr, now)
                except ValueError:
                    paths.count("relay_unusable")
        if session is None or not paths.offered:
            return
        for s in list(session.sessions.values()):
            since = paths.recovering.get(s.id)
            if since is not None and s.last_recv > since:
                del paths.recovering[s.id]  # heard again on the same path: watch it anew
                since = None
            if (type(s.addr) is not RelayPath or s.state is not CallState.TALKING
                    or since is not None or now - s.last_recv < SILENCE
                    or s.addr not in paths.offered):
                continue
            paths.recovering[s.id] = now
            named = self._named_relays([p for p in self.relays_held()
                                        if p.relay != s.addr.relay],
                                       upper.callee_v6.get(s.id, False))  # its family's
            peer_rv = paths.rendezvous.get(s.id)
            path = paths.offer(list(named), self._live, s.id) if named and peer_rv else None
            if path is not None:
                upper.traversal.punch(peer_rv[0], peer_rv[1], now,
                                      relay=(named[path], path.allocation))
            upper.events.append(RelayLost(s.id, s.addr, path is not None, now))

    def _relay_candidates(self) -> list[Any]:
        """Whom to ask for a relay: those that served us before, then our table's contacts in
        random order. Not the longest-lived first (`best_peers`): every NATed node would ask
        the same oldest peers, and allocations would follow uptime, not capacity (issue 13,
        session 6: the first 100 peers held ~20 each). The HELLOs go to several at once and
        the nearest that answer are kept (`RelayClient.wanted`)."""
        routing = self.routing
        table, addrs = routing.table, routing.registry.addrs
        contacts = [addrs[h] for i in range(table.bucket_count()) for h in table.bucket(i)]
        routing.rng.shuffle(contacts)
        served = self._paths().served
        return [addr for addr in served] + [addr for addr in contacts if addr not in served]

    def _silence_timer(self) -> float | None:
        """When the next talking relayed call of ours would count as silent."""
        session, paths = self.session, self._upper.paths
        deadline = None
        for s in (session.sessions.values() if session is not None else ()):
            if s.state is not CallState.TALKING:
                continue
            path = paths.fallback.get(s.id)
            if type(s.addr) is RelayPath and s.addr in paths.offered:
                if s.id in paths.recovering:
                    continue
            elif path is None or path == s.addr or path in paths.checks.get(s.id, ()):
                continue  # no fall-back, or its copies go already
            at = s.last_recv + SILENCE
            deadline = at if deadline is None or at < deadline else deadline
        return deadline

    def _own_addresses(self) -> tuple[Any, ...]:
        """Where we are: the public address traversal found, and those the owner named
        (`set_nat`): an IPv6-only node has no IPv4 public one, and its host and /64 count."""
        traversal, upper = self.traversal, self._upper
        own = () if upper is None else upper.own
        if traversal is None or traversal.public is None or traversal.public in own:
            return own
        return (traversal.public, *own)

    # -- value storage (kadtalk.node.storage) ---------------------------------------------------

    @property
    def storage(self) -> StorageLayer | None:
        """The storage layer (made on first use), or None without an identity or with storage
        off. Its commands (`put`, `fetch`, `send_message`, `mail`, ...) find nodes with our
        lookups; call `Node.pump_storage(now)` after one so a lookup that ended at once is
        routed. With the upkeep on (`keep_joined`) and `storage.keep_mailbox(...)`, each
        successful join publishes our prekey and fetches our mailbox (StorageLayer.joined)."""
        upper = self._upper
        if upper is None or upper.identity is None:
            return None
        if upper.storage is None:
            settings = upper.storage_settings
            if settings is not None and not settings.enabled:
                return None
            routing = self.routing
            upper.storage = StorageLayer(
                upper.identity, settings, upper.clock_offset, lookup=self._storage_lookup,
                closest=self._closest_contacts, addr_to_wire=routing.registry.addr_to_wire,
                validated=routing.is_validated,  # the addresses routing proved (§5.4)
                rng=routing.rng)  # republication times: seeded in a simulation
        return upper.storage

    def pump_storage(self, now: float) -> None:
        """Route lookup results a storage command's lookups produced (the same as any command)."""
        self._pump(now)

    def _storage_lookup(self, target: int, now: float) -> int | None:
        try:
            return self.routing.find_closest(target, now)
        except TooManyLookups:
            return None

    def _closest_contacts(self, target: int, count: int) -> list[tuple[int, Any]]:
        routing = self.routing
        ids, addrs = routing.registry.ids, routing.registry.addrs
        return [(ids[h], addrs[h]) for h in routing.table.closest(target, count)]

    # -- internals ------------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        if self._upper is None:
            self._upper = _Upper()
        if self._upper.stats is None:
            self._upper.stats = collections.Counter()
        self._upper.stats[reason] += 1

    def _session(self) -> SessionLayer | None:
        upper = self._upper
        if upper is None or upper.identity is None:
            return None
        if upper.session is None:
            upper.session = SessionLayer(
                upper.identity, self.routing.rng, upper.settings, upper.clock_offset,
                peer_seen=self._peer_seen,
            )
        return upper.session

    def _joined(self, event: Joined) -> None:
        upper = self._upper
        if upper.rejoin is None:
            return  # upkeep is off: joins are the owner's business
        upper.rejoin.finished(event)
        if event.success and upper.storage is not None:
            upper.storage.joined(event.finished)  # prekey and mailbox, with keep_mailbox on
        if event.success and upper.traversal is not None:
            upper.traversal.start_keepalives(event.finished)  # probe the new neighbours now

    def _peer_seen(self, peer_id: int, addr: Any, now: float) -> None:
        """An authenticated peer: the routing table learns from it too (not through a relay)."""
        if type(addr) is not RelayPath:
            self.routing.add_contact(peer_id, addr, now)

    def _pump(self, now: float) -> None:
        """Route the routing layer's events: a call's lookup goes to the session layer, a join's
        outcome also to the upkeep, the rest wait in order for `next_event`."""
        upper = self._upper
        event = self.routing.next_event()
        while event is not None:
            kind = type(event)
            session_id = upper.calls.pop(event.lookup_id, None) if kind is LookupCompleted else None
            if kind is LookupCompleted and upper.detached and event.lookup_id in upper.detached:
                del upper.detached[event.lookup_id]  # a call that went on without it
                event = self.routing.next_event()
                continue
            storage = upper.storage
            if kind is LookupCompleted and storage is not None and storage.owns(event.lookup_id):
                storage.lookup_done(event, now)  # a store's, fetch's or republication's nodes
                event = self.routing.next_event()
                continue
            if kind is Joined:
                self._joined(event)
            if kind is LookupCompleted and event.lookup_id in upper.punch_lookups:
                self._second_punch(event, now)
                event = self.routing.next_event()
                continue
            if session_id is None:
                upper.events.append(event)
            else:
                addr = event.peer[1] if event.peer is not None else None
                named = upper.named.pop(event.target, None)
                upper.across_at.pop(event.target, None)
                if addr is None and named is not None:
                    addr = named[0]  # only in a family we cannot reach (ROUTE6_RES)
                if (addr is not None and upper.traversal is not None
                        and not self._reaches(addr)):
                    self._across(session_id, event.target, event.closest, addr,
                                 named[1] if named else [], now)
                elif addr is not None and upper.traversal is not None:
                    # hole punching: the callee is asked, through peers near it, to send us a
                    # PUNCH while our KEY_REQs go to it (a NAT in front of it then admits them),
                    # and to knock at our relay allocation, if we hold one (relay/paths.py)
                    rendezvous = self._rendezvous_for(event)
                    if is_ipv6(addr):  # its IPv6 firewall opens to a simultaneous send (§20)
                        rendezvous6 = self._rendezvous6(event.target, event.closest)
                        upper.traversal.punch6(event.target, rendezvous6, now)
                        rendezvous = rendezvous or rendezvous6  # IPv6-only: offers over IPv6
                    offer = self._offer(session_id, event.target, rendezvous, is_ipv6(addr))
                    upper.traversal.punch(event.target, rendezvous, now, relay=offer)
                    self._watch_punch(session_id, event.target, rendezvous, offer, now)
                upper.session.peer_found(session_id, addr, now)
                if upper.reoffer:
                    self._hold(session_id, now)  # the KEY_REQ to our relay with the offer
            event = self.routing.next_event()
        traversal = upper.traversal
        if (upper.rejoin is not None and traversal is not None and traversal.get_timer() is None
                and len(self.routing.table) and traversal.keepalive_peers()):
            # upkeep on, and now there is someone to keep (an IPv6-only node's contacts are
            # all IPv6, which traversal does not keep: its timer would come due at once again)
            traversal.start_keepalives(now)
