"""NAT traversal, sans-I/O: observed addresses, NAT keep-alives and hole punching (issue 7).

One extension type byte, 0x06 (TRAVERSAL), beside routing (0x00-0x01, nanotalk's format,
unchanged) and the session (0x02-0x05, 0x07). The second byte is the operation
(docs/protocol.md §20, "NAT traversal"):

| op | name | layout after type and op | sent by |
| --- | --- | --- | --- |
| 0x01 | ADDR_REQ | nonce (8), zero padding (6): 16 bytes | anyone, to a peer |
| 0x02 | ADDR_RES | nonce (8), observed IPv4 (4), port (2): 16 bytes | the peer: where the request came from |
| 0x03 | PUNCH_REQ | requester ID (20), target ID (20) [, cookie (16)]: 42 [58] bytes | a caller, to rendezvous peers |
| 0x04 | PUNCH_FWD | requester ID (20), requester's IPv4 (4), port (2): 28 bytes | a rendezvous that has the target in its table, to the target |
| 0x05 | PUNCH | sender ID (20): 22 bytes | the target, to the requester's observed address |
| 0x06 | PUNCH_COOKIE | cookie (16): 18 bytes | a rendezvous, to a requester whose address it has not validated |
| 0x07 | PUNCH_REQ_RELAY | as PUNCH_REQ, then relay address (6 or 18), allocation (8) [, cookie]: 56 / 68 [72 / 84] | a caller holding a relay allocation |
| 0x08 | PUNCH_FWD_RELAY | as PUNCH_FWD, then relay address (6 or 18), allocation (8): 42 / 54 bytes | the rendezvous, to the target |
| 0x09 | PROBE_REQ | nonce (8), zero padding (10): 20 bytes | a node checking, to a contact: the helper |
| 0x0a | PROBE_FWD | requester's IPv4 (4), port (2), nonce (8): 16 bytes | the helper, to a contact: the prober |
| 0x0b | PROBE | nonce (8): 10 bytes | the prober, to the requester's observed address |
| 0x0c | PROBE_ACK | nonce (8): 10 bytes | the helper, to the requester: forwarded |
| 0x0d | PUNCH6_REQ | requester ID (20), target ID (20) [, cookie (16)]: 42 [58] bytes | an IPv6 caller, over IPv6, to rendezvous peers |
| 0x0e | PUNCH6_FWD | requester ID (20), requester's IPv6 (16), port (2): 40 bytes | a rendezvous that holds the target at an IPv6 address, to the target |

PROBE_* is a reachability check without servers (RFC 5780's filtering test, the "other
address" being a peer we never sent to): does a datagram from a stranger reach us? The
requester names no address; the helper sends PROBE_FWD naming only where the PROBE_REQ came
from, and only for a contact of its table (`check_reachability`, `reachability`).

The relay variants carry the caller's relay allocation (docs/protocol.md §21, "Relayed calls"):
the target punches as usual and also KNOCKs there (`offered`, the node's call set-up).

Across address families (§20, "Across address families"): a relay address is IPv4 and port (6
bytes) or IPv6 and port (18), the message's size says which, as in the relay's own messages.
The punch requests and forwards may come from IPv6 peers (a dual-stack rendezvous between an
IPv6-only caller or callee and the other family; the cookie is keyed on the 18-byte address),
but a PUNCH_FWD(_RELAY)'s requester field names the requester only when it is IPv4, whatever
the family the rendezvous holds the target at (a dual-stack target behind an IPv4 NAT, held at
its IPv6 address, PUNCHes from its IPv4 side; an IPv6-only target's PUNCH fails): IPv6 has no
NAT to open, so for an IPv6 requester the field is six zero bytes ("no address": the target
knocks at the offered relay and sends no PUNCH), and a plain PUNCH_REQ that could only be
forwarded so is dropped (`punch_no_path`). The PROBE_* stay IPv4 (their answers carry 6-byte
addresses); ADDR_REQ goes to IPv6 contacts too, as a keep-alive for a stateful IPv6 firewall
(`keepalive_peers`), and its ADDR_RES then carries six zero bytes (no IPv4 view to tell).

IPv6 hole punching (§20, "IPv6 hole punching"): IPv6 has no NAT, but a host not on a public
address usually sits behind a stateful firewall (RFC 6092: inbound only from a peer it sent to
lately), so two firewalled IPv6 hosts reach each other only if both send at once. A caller
that reaches its callee over IPv6 sends PUNCH6_REQ over IPv6 to the callee's IPv6 neighbours
(`punch6`); the rendezvous validates the requester exactly as for PUNCH_REQ (a table entry at
that address, or its cookie, keyed on the 18-byte address) and sends PUNCH6_FWD, naming the
source address it saw, only to a target it holds at an IPv6 address (the target keeps that
rendezvous's firewall entry open with its IPv6 keep-alives); the target, on a contact's word
only, sends the usual PUNCH to that IPv6 address, which opens its firewall for the caller's
KEY_REQ while the caller's own KEY_REQ has opened the caller's for the PUNCH and the KEY_RES
(simultaneous open). A PUNCH6_REQ from an IPv4 source or for a target held at IPv4 is dropped
(`punch_no_path`). PUNCH_REQ and PUNCH_FWD are unchanged (nanotalk's IPv4 peers never see the
new operations). PUNCH6_FWD is smaller than the request (40 for 42 bytes) and draws 2 x 22.

No datagram can be used to aim traffic at a third party (issue 17, attack 3):
- a target obeys PUNCH_FWD only from an address of its routing table (a contact that has
  answered it); from anyone else it is a counted drop (`punch_fwd_stranger`);
- a rendezvous forwards PUNCH_REQ only to a node of its own table, and only for a requester
  whose address it has validated: the requester is a table entry at that very address, or its
  PUNCH_REQ echoes the cookie the rendezvous sent to that address (QUIC's Retry, WireGuard's
  cookie reply: a stateless keyed hash of the address, valid for two `cookie_lifetime`s). A
  caller remembers each rendezvous's cookie, so only its first punch through it waits a round
  trip. So the address a PUNCH goes to has received a datagram of the rendezvous and answered.
Every answer is metered per source and in all. No answer is larger than the request that causes
it, except the PUNCHes a PUNCH_FWD draws (2 x 22 bytes for 28: 1.6x). What remains open: the
contact check reads the source address, so an off-path attacker who forges a contact's address
(learned from our ROUTE_RES) can still aim those 44 bytes at a requester address of its choice,
at most `punch_rate` times a second (tests/node/test_traversal.py plays it); binding PUNCH_FWD
to the nonce of our last keep-alive to that contact would close it (a layout change).

A node asks a few peers (`probe`) where they see it: their answers give its public address
(`public`), and whether the mapping is the same towards different peers (endpoint-independent:
hole punching works) or not (symmetric NAT). With the node's upkeep on (`Node.keep_joined`),
its own timer repeats the probe to the contacts nearest its ID every `keepalive_interval` (20 s,
under the 30 s UDP timeout of many NATs) while it has contacts, and at once after each
successful join: the same datagrams keep its NAT's mappings towards them open, so that they can
act as its rendezvous for callers. A caller whose lookup found the callee sends
PUNCH_REQ to the lookup's contacts nearest the callee (`choose_rendezvous`: the callee's
neighbours, which its keep-alives reach; not the caller's own table, which rarely holds them)
while its KEY_REQs go to the callee; the
callee's PUNCH to the caller opens its NAT for the caller's next KEY_REQ (retransmitted after
0.5 s), and the caller's own KEY_REQ has already opened the caller's NAT for the PUNCH and the
KEY_RES.

Only nodes with an identity that asked for traversal allocate this (see `Node`); the routing
layer and routing-only simulated nodes never see it. The routing table is reached through a
`ContactView` (kadtalk.node.layer) given at construction.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import os
import struct
from dataclasses import dataclass
from random import Random
from typing import Any, Callable, Iterable

from .layer import ContactView, Event
from .relay.addresses import forbidden, from_wire6, to_wire6
from .ratelimit import FloodGuard, TokenBucket

TRAVERSAL = 0x06
ADDR_REQ, ADDR_RES, PUNCH_REQ, PUNCH_FWD, PUNCH, PUNCH_COOKIE = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
PUNCH_REQ_RELAY, PUNCH_FWD_RELAY = 0x07, 0x08
PROBE_REQ, PROBE_FWD, PROBE, PROBE_ACK = 0x09, 0x0A, 0x0B, 0x0C
PUNCH6_REQ, PUNCH6_FWD = 0x0D, 0x0E  # IPv6 hole punching (§20): a firewall's simultaneous open
COOKIE_SIZE = 16
RELAY_PART = 14  # relay IPv4 and port (6), allocation (8)
V6_EXTRA = 12  # an IPv6 relay address (18 bytes) instead of IPv4 (6)
NO_ADDRESS = bytes(6)  # a PUNCH_FWD(_RELAY)'s requester field across families: none
V6_SIZE = 18  # an IPv6 address and port on the wire
SIZES = {ADDR_REQ: 16, ADDR_RES: 16, PUNCH_REQ: 42, PUNCH_FWD: 28, PUNCH: 22,
         PUNCH_COOKIE: 2 + COOKIE_SIZE, PUNCH_REQ_RELAY: 42 + RELAY_PART,
         PUNCH_FWD_RELAY: 28 + RELAY_PART,
         PROBE_REQ: 20, PROBE_FWD: 16, PROBE: 10, PROBE_ACK: 10,
         PUNCH6_REQ: 42, PUNCH6_FWD: 22 + V6_SIZE}  # the requests may also carry a cookie
REQUESTS = (PUNCH_REQ, PUNCH_REQ_RELAY, PUNCH6_REQ)
SIZES6 = {PUNCH_REQ_RELAY: SIZES[PUNCH_REQ_RELAY] + V6_EXTRA,  # 68: an IPv6 relay address
          PUNCH_FWD_RELAY: SIZES[PUNCH_FWD_RELAY] + V6_EXTRA}  # 54
PUNCH_OPS = frozenset((PUNCH_REQ, PUNCH_REQ_RELAY, PUNCH_FWD, PUNCH_FWD_RELAY, PUNCH6_REQ,
                       PUNCH6_FWD))  # from IPv6 too
FORWARDS = (PUNCH_FWD, PUNCH_FWD_RELAY, PUNCH6_FWD)  # obeyed from a contact only
_ADDR_RES = bytes((TRAVERSAL, ADDR_RES))

# `stats` reasons that are dropped datagrams (the others count what was sent or received)
DROPS = frozenset({"malformed", "unusable_source", "unsolicited", "punch_unknown_target",
                   "punch_refused", "punch_fwd_stranger", "rate_limited",
                   "rate_limited_source", "probe_unvalidated", "probe_no_helper",
                   "probe_fwd_stranger", "probe_refused", "probe_unsolicited",
                   "punch_no_path"})


@dataclass(frozen=True, slots=True)
class TraversalSettings:
    keepalive_interval: float = 20.0  # s between address probes to the contacts nearest our ID
    keepalive_peers: int = 16  # how many of them (= max_observers; the rendezvous callers pick)
    # Keep-alive economy (`keepalive_plan`): a node not behind a NAT has no mapping to keep and
    # only checks its address now and then; behind a NAT whose filtering is found endpoint-
    # independent, one mapping serves every peer: refreshing it through a few peers suffices.
    address_check_interval: float = 300.0  # s between address checks of a node without NAT
    check_peers: int = 2  # peers an address check or a mapping refresh asks (two: a symmetric
    # NAT still shows as two views)
    watch_limit: int = 1024  # destinations remembered while watching for strangers
    stranger_hosts: int = 2  # public hosts never sent to whose well-formed routing or
    # traversal requests prove endpoint-independent filtering (or one stranger's PROBE of ours)
    punch_peers: int = 8  # rendezvous a caller asks: the callee's neighbours its lookup met
    punch_copies: int = 2  # PUNCHes a target sends per PUNCH_FWD (a lost one costs the call)
    # A caller that has neither the callee's PUNCH nor its KEY_RES this many smoothed round
    # trips after punching punches again through a find-closest lookup's nearest (0: never)
    punch_again: float = 4.0
    max_observers: int = 16  # peers whose view of our address is remembered
    cookie_lifetime: float = 120.0  # s; a rendezvous's cookie secret rotates this often
    punch_wait: float = 10.0  # s a caller waits for a rendezvous's cookie before forgetting
    answer_rate: float = 50.0  # answers (ADDR_RES, PUNCH_FWD, PUNCH_COOKIE) a second, in all
    answer_burst: float = 100.0
    source_rate: float = 5.0  # ... and per source host
    source_burst: float = 10.0
    max_sources: int = 1024  # source hosts metered at once
    punch_rate: float = 10.0  # PUNCH_FWDs obeyed a second, in all
    punch_burst: float = 20.0
    probe_rate: float = 10.0  # PROBE_FWDs and PROBEs sent a second, in all (reachability checks)
    probe_burst: float = 20.0

    def __post_init__(self) -> None:
        if min(self.keepalive_interval, self.cookie_lifetime, self.punch_wait,
               self.address_check_interval) <= 0:
            raise ValueError("intervals must be positive")
        if min(self.keepalive_peers, self.punch_peers, self.punch_copies, self.max_observers,
               self.max_sources, self.check_peers, self.watch_limit, self.probe_burst,
               self.stranger_hosts) < 1:
            raise ValueError("counts must be at least 1")
        if self.punch_again < 0:
            raise ValueError("punch_again must be 0 (never) or a positive number of round trips")


DEFAULT_SETTINGS = TraversalSettings()


class TraversalEvent(Event):
    """Base of the traversal layer's events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AddressObserved(TraversalEvent):
    """A peer told us where it sees us; `public` is the address most peers agree on."""

    observer: Any
    observed: Any
    public: Any
    symmetric: bool  # peers see different ports: endpoint-dependent mapping
    at: float


@dataclass(frozen=True, slots=True)
class Reachability:
    """What the latest reachability check (`Traversal.check_reachability`) found so far:
    helpers asked, PROBE_ACKs (forwarded), PROBEs that came in, and of those the ones from a
    host we had not sent to (`strangers`: they passed our NAT unsolicited) or from one we had
    (`known`: they prove nothing). `unclear`: PROBEs from hosts we cannot tell (the node
    neither watches nor remembers where it sent)."""

    asked: int
    forwarded: int
    strangers: int
    known: int
    unclear: int
    started: float | None  # when the check began (None: no check yet)

    @property
    def arrived(self) -> int:
        return self.strangers + self.known + self.unclear


def base_size(data: bytes) -> int | None:
    """A well-formed traversal datagram's size less its cookie (the requests may carry one);
    None for anything malformed. PUNCH_REQ_RELAY / PUNCH_FWD_RELAY are 12 bytes longer with an
    IPv6 relay address (`SIZES6`)."""
    op = data[1] if len(data) > 1 else -1
    size = len(data)
    for base in (SIZES.get(op), SIZES6.get(op)):
        if base is not None and (size == base or (op in REQUESTS and size == base + COOKIE_SIZE)):
            return base
    return None


def is_punch(data: bytes) -> bool:
    """Whether `data` is a well-formed PUNCH: a hole towards its sender has just opened."""
    return len(data) == SIZES[PUNCH] and data[1] == PUNCH


def nat_kind(event: AddressObserved, local: Any) -> str:
    """none: peers see us at our own `local` address (the socket's, as routed towards the
    observer: the driver knows it); symmetric: they see different ports; cone: one public
    address for all (full-cone or filtering: both connect, docs/testbed.md); unknown."""
    if event.symmetric:
        return "symmetric"
    if local is None:
        return "unknown"
    return "none" if event.public == local else "cone"


_INSIDE = tuple(ipaddress.ip_network(net) for net in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16"))


def _inside(addr: Any) -> bool:
    """Whether a real IPv4 source may sit on our side of a NAT (private, carrier-grade shared,
    loopback, link-local): its datagram proves nothing of the NAT's filtering. The simulator's
    addresses are never inside (its NAT model decides what gets in)."""
    if type(addr) is not tuple or type(addr[0]) is not str:
        return False
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return True
    return ip.version != 4 or any(ip in net for net in _INSIDE)


def choose_rendezvous(target: int, *candidates: Iterable[tuple[int, Any]],
                      count: int, usable: Callable[[Any], bool] | None = None) -> list[Any]:
    """The addresses of the `count` candidates (id, address), from any of the groups, nearest
    `target`, the target left out, each address once, only those `usable` says (a rendezvous
    must be able to take a PUNCH_REQ: `Traversal.usable`). A caller (`Node`) passes its
    find-peer lookup's nearest contacts: the callee's neighbours, which hold it in their
    tables and receive its keep-alives."""
    nearest = sorted({(node_id ^ target, addr) for group in candidates for node_id, addr in group
                      if node_id != target and (usable is None or usable(addr))},
                     key=lambda pair: pair[0])
    chosen: list[Any] = []
    for _, addr in nearest:
        if addr not in chosen:
            chosen.append(addr)
            if len(chosen) == count:
                break
    return chosen


class Traversal:
    __slots__ = ("node_id", "rng", "contacts", "settings", "stats", "observed", "_outbox",
                 "_events", "_nonces", "_guard", "_punches", "_keepalive_at", "_secrets",
                 "_secret_at", "_cookies", "_punching", "last_rendezvous", "offered", "nat",
                 "independent", "watching", "_sent", "_hosts", "_probed_at", "_public",
                 "_symmetric", "_probes", "_checks", "_checked_at", "remembering", "_recent",
                 "_recent_limit", "_last_sent", "_evidence_at", "_strangers", "_started",
                 "ipv4_contacts", "own")

    def __init__(self, node_id: int, rng: Random, contacts: ContactView,
                 settings: TraversalSettings | None = None, now: float = 0.0):
        settings = settings or DEFAULT_SETTINGS
        self.node_id = node_id
        self.rng = rng
        self.contacts = contacts
        self.settings = settings
        self.stats: collections.Counter[str] = collections.Counter()  # drops (DROPS) and sends
        self.observed: dict[Any, Any] = {}  # observer address -> where it sees us
        self._outbox: list[tuple[bytes, Any]] = []
        self._events: collections.deque[TraversalEvent] = collections.deque()
        self._nonces: dict[bytes, tuple[Any, float]] = {}  # ADDR_REQ nonce -> (peer, sent at)
        self._guard = FloodGuard(settings.answer_rate, settings.answer_burst, settings.source_rate,
                                 settings.source_burst, now, max_sources=settings.max_sources,
                                 always=True)
        self._punches = TokenBucket(settings.punch_rate, settings.punch_burst, now)
        self._keepalive_at: float | None = None  # set once the node has joined
        # Cookie secrets (current, previous), from the OS: peers see the rng's nonces, so the
        # rng must not key the cookies. Made at the first cookie asked for.
        self._secrets: tuple[bytes, bytes] | None = None
        self._secret_at = 0.0
        self._cookies: dict[Any, bytes] = {}  # rendezvous address -> its cookie for us
        self._punching: dict[Any, tuple[float, list[bytes]]] = {}  # rendezvous -> PUNCH_REQs
        self.last_rendezvous: tuple[Any, ...] = ()  # the latest `punch`'s (the studies read it)
        # offered(requester ID, requester address, relay, allocation, now): a PUNCH_FWD_RELAY
        # obeyed (the node knocks at the caller's relay); None: relay variants punch only
        self.offered: Any = None
        # own(): our addresses as the owner knows them (`Node._own_addresses`; None: only the
        # public one we found): no PUNCH6 goes to any port of them (IPv6: their /64)
        self.own: Callable[[], Iterable[Any]] | None = None
        self.nat = "unknown"  # as the owner told us (`set_nat`, from `nat_kind`)
        # Endpoint-independent filtering, seen (`_evidence`, latest at `_evidence_at`, void
        # after two `address_check_interval`s without more): a PROBE of our own check from a
        # public host we never sent to (`_on_probe`), or well-formed routing datagrams or
        # traversal requests from `stranger_hosts` such hosts (`heard`; `_strangers` so far).
        # The node watches the hosts it has sent to since it started (up to `watch_limit`).
        self.independent = False
        self._evidence_at: float | None = None
        self._strangers: set[bytes] = set()
        self._started = now  # our own checks begin one `address_check_interval` after this
        self.watching = True
        self._sent: set[Any] | None = set()  # addresses sent to (a cheap first check)
        self._hosts: set[bytes] | None = set()  # ... and their hosts (the wire form less port)
        self._probed_at = now  # the latest keep-alive or address check
        self._public: Any = None  # `public` and `symmetric`, kept as answers change them
        self._symmetric = False
        self._probes = TokenBucket(settings.probe_rate, settings.probe_burst, now)
        # the latest reachability check: nonce -> [helper, forwarded, PROBE's source, verdict]
        self._checks: dict[bytes, list[Any]] = {}
        self._checked_at: float | None = None
        # Hosts sent to lately (`remember_sent`: the daemon), in order of their latest datagram:
        # a PROBE from one of them proves nothing, an address-dependent filter admits it.
        self.remembering = False
        self._recent: dict[bytes, None] = {}
        self._recent_limit = 0
        self._last_sent: Any = None
        # whether the table held an IPv4 contact at the latest `keepalive_peers` (None: not
        # looked yet): an IPv6-only node has none (`Node.v6_only`), a cheap answer to ask often
        self.ipv4_contacts: bool | None = None

    # -- sans-I/O surface -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        op = data[1] if len(data) > 1 else -1
        size = base_size(data)
        if size is None:
            self.stats["malformed"] += 1
            return
        if op == ADDR_RES:
            self._on_addr_res(data, addr, now)
            return
        if op == PUNCH:
            self.stats["punch_received"] += 1  # it opened our NAT for the peer: nothing to do
            return
        if op == PUNCH_COOKIE:
            self._on_cookie(data, addr, now)
            return
        if op in (PROBE, PROBE_ACK):
            self._on_probe(data, addr, now)
            return
        wire = self._wire(addr)
        if wire is None and (op in PUNCH_OPS or op == ADDR_REQ):
            wire = to_wire6(addr)  # a punch request or forward, or a keep-alive, over IPv6
        if wire is None:
            self.stats["unusable_source"] += 1
            return
        refused = self._guard.check(addr[0] if type(addr) is tuple else addr, now)
        if refused is not None:  # metered first: the contact check below scans the table
            self.stats[refused] += 1
            return
        if op in FORWARDS and not self.contacts.is_contact(addr):
            self.stats["punch_fwd_stranger"] += 1  # only a contact that answered us may ask
            return
        if self.watching and self.stranger(addr):
            self.heard(addr, now)  # a well-formed request got in unsolicited
        if op in (PROBE_REQ, PROBE_FWD):
            self._on_probe_request(data, addr, wire, now)
            return
        if op == ADDR_REQ:  # over IPv6 a keep-alive's: no IPv4 view to tell (no address)
            seen = wire if len(wire) == len(NO_ADDRESS) else NO_ADDRESS
            self._send(_ADDR_RES + data[2:10] + seen, addr, "addr_res_sent")
        elif op == PUNCH6_REQ:
            self._on_punch6_req(data, addr, wire, size, now)
        elif op in REQUESTS:
            self._on_punch_req(data, addr, wire, size, now)
        elif op == PUNCH6_FWD:
            self._on_punch6_fwd(data, addr, now)
        else:  # PUNCH_FWD(_RELAY) from a contact
            requester = None if data[22:28] == NO_ADDRESS else self.contacts.addr_from_wire(
                data[22:28])  # none: the caller is in the other family (knock, no PUNCH)
            relay = self._relay_from_wire(data[28:-8]) if op == PUNCH_FWD_RELAY else None
            if (requester is None and op == PUNCH_FWD) \
                    or (op == PUNCH_FWD_RELAY and relay is None) or not self._punches.take(now):
                self.stats["punch_refused"] += 1
                return
            if relay is not None and self.offered is not None:
                self.offered(data[2:22], requester, relay, data[-8:], now)
            if requester is None:
                return
            body = bytes((TRAVERSAL, PUNCH)) + self.node_id.to_bytes(20, "big")
            for _ in range(self.settings.punch_copies):
                self._outbox.append((body, requester))
            self.stats["punch_sent"] += 1

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out = self._outbox
        if out:
            self._outbox = []
        return out

    def next_event(self) -> TraversalEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        return self._keepalive_at

    def handle_timer(self, now: float) -> None:
        """Keep-alives: probe the contacts nearest our ID (the rendezvous callers pick), as
        many and as often as `keepalive_plan` says."""
        if self._keepalive_at is None or now < self._keepalive_at:
            return
        peers = self.keepalive_peers()
        if not peers:
            self._keepalive_at = None  # nobody to keep: idle until the node has contacts again
            return
        evidence = self._evidence_at
        if evidence is not None and now - evidence > 2 * self.settings.address_check_interval:
            self.independent, self._evidence_at = False, None  # old: the safe plan until a check
            peers = self.keepalive_peers()
        self._keepalive_at = now + self.keepalive_plan()[1]
        self._probed_at = now
        self._forget_observers(peers, now)
        self.probe(peers, now)
        self.stats["keepalive"] += 1
        if self.nat == "cone" and not self._symmetric:
            self._recheck(peers, now)

    def keepalive_plan(self) -> tuple[int, float]:
        """(peers, interval) of our keep-alives, by what we know of our NAT:
        - none (the owner saw our observers see our local address): no mapping to keep, an
          address check of `check_peers` every `address_check_interval`;
        - endpoint-independent filtering seen (`independent`: a stranger's PROBE of one of our
          reachability checks, or well-formed requests of `stranger_hosts` public hosts never
          sent to, at most two `address_check_interval`s ago), not symmetric: one
          mapping, refreshed by any datagram out (RFC 4787 REQ-6), open to anyone (the
          full-cone NAT of sim/nat.py): `check_peers` every `keepalive_interval`;
        - otherwise (address-dependent filtering, symmetric, not known yet): the
          `keepalive_peers` nearest every `keepalive_interval`: only peers we sent to lately
          get through, and those are the rendezvous a caller asks to forward its PUNCH_REQ."""
        settings = self.settings
        if self.nat == "none":
            return settings.check_peers, settings.address_check_interval
        if self.independent and self.nat != "symmetric" and not self._symmetric:
            return settings.check_peers, settings.keepalive_interval
        return settings.keepalive_peers, settings.keepalive_interval

    def keepalive_peers(self) -> list[Any]:
        """The contacts our keep-alives go to: those nearest our ID, the ones that hold us in
        their tables and that a caller's lookup meets last (`choose_rendezvous`); as many as
        `keepalive_plan` says of each family: the IPv4 ones (`usable`) for our NAT, and the
        IPv6 ones (the table view's `rendezvous6`) for a stateful IPv6 firewall in front of us
        (RFC 6092: it admits only peers we sent to lately), which their PUNCH_FWD(_RELAY)s and
        relay offers must cross. We cannot tell whether there is one, so a host with IPv6
        contacts keeps them as if there were: `keepalive_peers` of them (a firewall filters
        by peer, whatever our IPv4 NAT's filtering), but only the plan's few without an IPv4
        NAT (a host on a public IPv4 address: a server, whose IPv6 is open too)."""
        count, contacts = self.keepalive_plan()[0], self.contacts
        peers = [addr for addr in contacts.rendezvous(self.node_id, count)
                 if self._wire(addr) is not None]
        self.ipv4_contacts = bool(peers)
        nearest6 = getattr(contacts, "rendezvous6", None)  # views without IPv6: none
        if nearest6 is None:
            return peers
        return peers + nearest6(self.node_id, count if self.nat == "none"
                                else self.settings.keepalive_peers)

    def usable(self, addr: Any) -> bool:
        """Whether traversal can talk to `addr` (it has the wire form ADDR_RES and PUNCH_FWD
        carry: IPv4, or the simulator's addresses); an IPv6 peer drops ADDR_REQ and PROBE_*,
        and forwards our PUNCH_REQ only with no address (`punchable`)."""
        return self._wire(addr) is not None

    def punchable(self, addr: Any) -> bool:
        """Whether a punch request may go to `addr` (a rendezvous) or name it (a relay): an
        IPv4 (or simulated) address, or an IPv6 one (18 bytes on the wire)."""
        return self._wire(addr) is not None or to_wire6(addr) is not None

    def set_nat(self, kind: str) -> None:
        """What the owner learnt of our NAT (`nat_kind`: none / cone / symmetric / unknown):
        the keep-alive plan follows it from the latest keep-alive on."""
        self.nat = kind
        self._replan()

    def stranger(self, addr: Any) -> bool:
        """Whether a datagram from `addr` would have crossed an address-dependent filter
        unsolicited (RFC 4787 §5): a public IPv4 host we have not sent to since we started (we
        tell while `watching`). The node asks before a routing datagram, then calls `heard`
        if its layer took it (no drop counted)."""
        if not self.watching or addr in self._sent:
            return False
        host = self._host(addr)
        return host is not None and host not in self._hosts and not _inside(addr)

    def heard(self, addr: Any, now: float) -> None:
        """A well-formed routing datagram or traversal request came in from a `stranger`
        (the node and `receive_datagram` call this): from `stranger_hosts`
        distinct ones, evidence of endpoint-independent filtering. Not from any datagram:
        garbage, a LAN host, IPv6 or a single peer (answering from another address of its
        pool) would prove nothing (review finding, tests/node/test_traversal_keepalive.py)."""
        host = self._host(addr)
        if host is None:
            return
        strangers = self._strangers
        strangers.add(host)
        if len(strangers) >= self.settings.stranger_hosts:
            strangers.clear()
            self._evidence(now)

    def sent(self, out: list[tuple[Any, Any]]) -> None:
        """Datagrams went out (the node calls this while `watching` or `remembering`): their
        hosts are no strangers from now on."""
        if self.remembering:
            self._remember(out)
        if not self.watching:
            return
        known, hosts = self._sent, self._hosts
        for _, addr in out:
            if addr not in known:
                known.add(addr)
                host = self._host(addr)
                if host is not None:
                    hosts.add(host)
        if len(known) > self.settings.watch_limit:
            self._stop_watching()  # too many to remember: we cannot tell; stay on the safe side

    def drop_counts(self) -> collections.Counter[str]:
        """The datagrams dropped, by reason (`stats` also counts what was sent)."""
        return collections.Counter({k: v for k, v in self.stats.items() if k in DROPS})

    # -- commands -------------------------------------------------------------------------------

    def start_keepalives(self, now: float) -> None:
        """Probe the nearest contacts now and as `keepalive_plan` says from then on, while
        there are any (the node's upkeep calls this; `Node.keep_joined`)."""
        self._keepalive_at = now

    def probe(self, peers: list[Any], now: float) -> None:
        """Ask each peer where it sees us (and refresh the NAT mapping towards it)."""
        limit = 4 * self.settings.max_observers
        for addr in peers:
            nonce = self.rng.getrandbits(64).to_bytes(8, "big")
            if len(self._nonces) >= limit:
                del self._nonces[next(iter(self._nonces))]
            self._nonces[nonce] = (addr, now)
            self._send(bytes((TRAVERSAL, ADDR_REQ)) + nonce + bytes(6), addr, "addr_req_sent")

    def punch(self, target_id: int, rendezvous: list[Any], now: float,
              relay: tuple[Any, bytes] | None = None) -> None:
        """Ask the rendezvous peers to have `target_id` send us a PUNCH; with `relay` (the
        relay's address, our allocation there) also to knock there (PUNCH_REQ_RELAY). A relay
        the offer's IPv4 field cannot carry (an IPv6 address) is left out: the plain PUNCH_REQ
        goes, counted (`punch_offer_unencodable`; the node offers such a relay never)."""
        part = None if relay is None else self._wire(relay[0]) or to_wire6(relay[0])
        if relay is not None and part is None:
            self.stats["punch_offer_unencodable"] += 1
        op = PUNCH_REQ if part is None else PUNCH_REQ_RELAY
        body = (bytes((TRAVERSAL, op)) + self.node_id.to_bytes(20, "big")
                + target_id.to_bytes(20, "big"))
        if part is not None:
            body += part + relay[1]
        else:  # an IPv6 rendezvous forwards a plain one nowhere (`punch_no_path`): `punch6`
            rendezvous = [addr for addr in rendezvous if self._wire(addr) is not None]
        self.last_rendezvous = tuple(rendezvous)
        self._ask(body, rendezvous, now)

    def punch6(self, target_id: int, rendezvous: list[Any], now: float) -> None:
        """Ask the IPv6 ones of the rendezvous peers (the callee's neighbours, which hold it
        at its IPv6 address) to have `target_id` send us a PUNCH over IPv6 (PUNCH6_REQ): our
        KEY_REQ to the callee opens our firewall for it, its PUNCH opens the callee's for our
        next KEY_REQ. For a callee we reach over IPv6 (the node's call set-up)."""
        body = (bytes((TRAVERSAL, PUNCH6_REQ)) + self.node_id.to_bytes(20, "big")
                + target_id.to_bytes(20, "big"))
        self._ask(body, [addr for addr in rendezvous if to_wire6(addr) is not None], now,
                  "punch6_req_sent")

    def _ask(self, body: bytes, rendezvous: list[Any], now: float,
             counter: str = "punch_req_sent") -> None:
        """Send a punch request to each rendezvous, with its cookie if we hold one, and keep
        it to repeat with the cookie a rendezvous may answer with (`_on_cookie`)."""
        punching = self._punching
        for addr in rendezvous:
            # remembered, to be repeated with the cookie this may draw (none known, or stale)
            since, bodies = punching.pop(addr, (now, []))
            if now - since > self.settings.punch_wait:
                since, bodies = now, []
            if len(bodies) < 8:
                bodies.append(body)
            if len(punching) >= 4 * self.settings.max_observers:
                del punching[next(iter(punching))]
            punching[addr] = (since, bodies)
            self._send(body + self._cookies.get(addr, b""), addr, counter)

    def remember_sent(self, limit: int = 4096) -> None:
        """Remember the `limit` hosts we sent to last, for as long as the node runs, so that a
        reachability check can tell a stranger's PROBE (the daemon calls this at start: a NAT's
        filter state outlives `watching`, which ends at the first evidence)."""
        self.remembering = True
        self._recent_limit = max(limit, 1)

    def check_reachability(self, helpers: list[Any], now: float) -> None:
        """Ask each helper (a contact that holds us in its table) to have another of its
        contacts send us a PROBE (docs/protocol.md §20, "Reachability check"); a new check
        forgets the previous one. `reachability()` tells what came back."""
        checks = self._checks
        checks.clear()
        self._checked_at = now
        for addr in helpers[: 4 * self.settings.max_observers]:
            nonce = self.rng.getrandbits(64).to_bytes(8, "big")
            checks[nonce] = [addr, False, None, None]
            self._send(bytes((TRAVERSAL, PROBE_REQ)) + nonce + bytes(10), addr, "probe_req_sent")

    def reachability(self) -> Reachability:
        """The latest check's findings so far (`Reachability`)."""
        verdicts = collections.Counter(check[3] for check in self._checks.values())
        return Reachability(len(self._checks), sum(1 for c in self._checks.values() if c[1]),
                            verdicts["stranger"], verdicts["known"], verdicts["unclear"],
                            self._checked_at)

    @property
    def public(self) -> Any:
        """The address most peers see us at (ties: the latest), or None before any answer."""
        return self._public

    @property
    def symmetric(self) -> bool:
        """Whether peers see us at different ports (or addresses): a symmetric NAT."""
        return self._symmetric

    # -- internals ------------------------------------------------------------------------------

    def _send(self, data: bytes, addr: Any, counter: str) -> None:
        self._outbox.append((data, addr))
        self.stats[counter] += 1

    def _replan(self) -> None:
        """The next keep-alive after the latest one, by the plan as it is now."""
        if self._keepalive_at is not None:
            self._keepalive_at = self._probed_at + self.keepalive_plan()[1]

    def _recheck(self, peers: list[Any], now: float) -> None:
        """Behind a cone NAT, our own reachability check through the nearest `check_peers`
        (they hold us in their tables): a stranger's PROBE is evidence (`_on_probe`). At most
        every `address_check_interval` (the owner's, `kadtalk doctor`, counts), not while
        strangers' requests have shown it within that time, and not in the first interval
        after we started (a previous run's peers may still get through the filter, and
        strangers' requests usually tell sooner)."""
        settings, started, evidence = self.settings, self._checked_at, self._evidence_at
        interval = settings.address_check_interval
        if now - self._started < interval or (started is not None and now - started < interval) \
                or (evidence is not None and now - evidence < interval):
            return
        self.check_reachability(peers[: settings.check_peers], now)
        self.stats["reachability_check"] += 1

    def _evidence(self, now: float) -> None:
        """Endpoint-independent filtering seen now: the two-peer plan from the latest keep-alive
        on, for two `address_check_interval`s unless seen again."""
        self._evidence_at = now
        if not self.independent:
            self.independent = True
            self._replan()

    def _stop_watching(self) -> None:
        self.watching = False
        self._strangers.clear()
        self._sent = self._hosts = None

    def _host(self, addr: Any) -> bytes | None:
        """The host part of an address (its wire form less the port), None if it has none."""
        try:
            return self.contacts.addr_to_wire(addr)[:-2]
        except (OSError, TypeError, ValueError, IndexError, OverflowError, AttributeError,
                struct.error):
            return None

    def _relay_from_wire(self, field: bytes) -> Any | None:
        """A relay address field: 6 bytes (IPv4, as the routing registry spells it) or 18."""
        return from_wire6(field) if len(field) == 18 else self.contacts.addr_from_wire(field)

    def _wire(self, addr: Any) -> bytes | None:
        """An address's wire form if it could be a peer's (it survives the encoding), else None."""
        contacts = self.contacts
        try:
            wire = contacts.addr_to_wire(addr)
            return wire if contacts.addr_from_wire(wire) is not None else None
        except (OSError, TypeError, ValueError, IndexError, OverflowError, struct.error):
            return None

    def _remember(self, out: list[tuple[Any, Any]]) -> None:
        recent, last = self._recent, self._last_sent
        for _, addr in out:
            if addr == last:
                continue  # a call's stream: one address, its host the latest already
            last = addr
            host = self._host(addr)
            if host is not None:
                recent.pop(host, None)
                recent[host] = None
        self._last_sent = last
        while len(recent) > self._recent_limit:
            del recent[next(iter(recent))]

    def _on_probe_request(self, data: bytes, addr: Any, wire: bytes, now: float) -> None:
        """PROBE_REQ (we are the helper) or PROBE_FWD (we are the prober), metered already.
        Both only from a contact: the PROBE goes where the PROBE_REQ came from, an address that
        has answered the helper (never one a datagram names to the helper)."""
        contacts = self.contacts
        if data[1] == PROBE_FWD:
            target = contacts.addr_from_wire(data[2:8])
            if not contacts.is_contact(addr):
                self.stats["probe_fwd_stranger"] += 1
            elif target is None or target == addr or not self._probes.take(now):
                self.stats["probe_refused"] += 1
            else:
                self._send(bytes((TRAVERSAL, PROBE)) + data[8:16], target, "probe_sent")
            return
        if not contacts.is_contact(addr):
            self.stats["probe_unvalidated"] += 1  # a forged source reaches nobody
            return
        # a random part of our table; another host than the requester's if we have one
        others = [peer for peer in contacts.rendezvous(self.rng.getrandbits(160), 8)
                  if peer != addr and self._host(peer) is not None]
        prober = next((peer for peer in others if self._host(peer) != wire[:-2]),
                      others[0] if others else None)
        if prober is None:
            self.stats["probe_no_helper"] += 1
            return
        if not self._probes.take(now):
            self.stats["probe_refused"] += 1
            return
        nonce = data[2:10]
        self._send(bytes((TRAVERSAL, PROBE_FWD)) + wire + nonce, prober, "probe_forwarded")
        self._send(bytes((TRAVERSAL, PROBE_ACK)) + nonce, addr, "probe_ack_sent")

    def _on_probe(self, data: bytes, addr: Any, now: float) -> None:
        """PROBE_ACK from the helper asked, or a PROBE (from anyone) with a nonce of ours."""
        check = self._checks.get(data[2:10])
        if check is None or (data[1] == PROBE_ACK and check[0] != addr):
            self.stats["probe_unsolicited"] += 1
            return
        if data[1] == PROBE_ACK:
            check[1] = True
            return
        if check[2] is not None:
            return  # a copy: the first one counted
        check[2] = addr
        self.stats["probe_received"] += 1
        host = self._host(addr)
        if host is None or _inside(addr):
            check[3] = "unclear"  # not IPv4, or it need not have crossed our NAT (our LAN)
        elif self.contacts.is_contact(addr) or host in self._recent \
                or (self.watching and host in self._hosts):
            check[3] = "known"
        elif self.remembering or self.watching:
            # RFC 4787 §5: an address-dependent filter drops this one; our nonce shows it was
            # sent for our check, to where a helper sees us: the keep-alive plan's evidence
            check[3] = "stranger"
            self._evidence(now)
        else:
            check[3] = "unclear"  # we no longer know where we sent

    def _on_punch_req(self, data: bytes, addr: Any, wire: bytes, size: int,
                      now: float) -> None:
        requester, target = data[2:22], int.from_bytes(data[22:42], "big")
        where = self.contacts.address_of(target) if target != self.node_id else None
        if where is None:
            self.stats["punch_unknown_target"] += 1
            return
        # an IPv4 requester's address travels whatever the family we hold the target at (a
        # dual-stack target behind an IPv4 NAT PUNCHes it from its IPv4 side; an IPv6-only
        # one's PUNCH fails); an IPv6 requester's does not (an IPv6 host has no NAT to open,
        # and 18 bytes would make the forward larger): no address, a knock only
        field = wire if len(wire) == len(NO_ADDRESS) else NO_ADDRESS
        if field == NO_ADDRESS and data[1] == PUNCH_REQ:
            self.stats["punch_no_path"] += 1  # nothing the target could do with it
            return
        if not self._validated(data, addr, wire, size, now):
            return
        if data[1] == PUNCH_REQ:
            body = bytes((TRAVERSAL, PUNCH_FWD))
        else:  # the relay part travels on, unread: the target checks the address
            body = bytes((TRAVERSAL, PUNCH_FWD_RELAY))
        self._send(body + requester + field + data[42:size], where, "punch_forwarded")

    def _validated(self, data: bytes, addr: Any, wire: bytes, size: int, now: float) -> bool:
        """Whether a punch request's source address is validated: the requester is a table
        entry at that very address, or the request echoes our cookie for it. Else it must prove
        it receives what we send there: a cookie goes back (an expired or forged one draws a
        fresh one)."""
        if (self.contacts.address_of(int.from_bytes(data[2:22], "big")) == addr
                or any(hmac.compare_digest(data[size:], cookie)
                       for cookie in self._cookies_for(wire, now))):
            return True
        self.stats["bad_cookie" if len(data) > size else "punch_unvalidated"] += 1
        self._send(bytes((TRAVERSAL, PUNCH_COOKIE)) + self._cookies_for(wire, now)[0], addr,
                   "punch_cookie_sent")
        return False

    def _on_punch6_req(self, data: bytes, addr: Any, wire: bytes, size: int,
                       now: float) -> None:
        """PUNCH6_REQ: forwarded, naming the IPv6 source we saw, to a target we hold at an
        IPv6 address (the one its keep-alives keep our way open at); from an IPv4 source, or
        for a target held at IPv4, there is no IPv6 path to punch (`punch_no_path`)."""
        target = int.from_bytes(data[22:42], "big")
        where = self.contacts.address_of(target) if target != self.node_id else None
        if where is None:
            self.stats["punch_unknown_target"] += 1
            return
        if len(wire) != V6_SIZE or to_wire6(where) is None:
            self.stats["punch_no_path"] += 1
            return
        if self._validated(data, addr, wire, size, now):
            self._send(bytes((TRAVERSAL, PUNCH6_FWD)) + data[2:22] + wire, where,
                       "punch6_forwarded")

    def _on_punch6_fwd(self, data: bytes, addr: Any, now: float) -> None:
        """PUNCH6_FWD from the contact at `addr`: PUNCHes to the requester's IPv6 address,
        which opens our firewall for it, metered as PUNCH_FWD is; none to an address no
        datagram may go to (loopback, multicast, link-local, IPv4-mapped:
        node/relay/addresses.py), to any port of our own (`own`, `public`), nor to a private
        one (ULA, NAT64 of RFC 1918, ...) unless we are in private IPv6 space ourselves: an own
        IPv6 address, or the contact that forwards, is private (a site's hosts, the simulator's
        fd00::/8): a contact, or whoever forges one's source, cannot aim PUNCHes into our
        site from outside it (as the relay's KNOCK check, node/relay/server.py)."""
        requester = from_wire6(data[22:40])
        own = tuple(self.own()) if self.own is not None else ()
        if self._public is not None:
            own = (self._public, *own)
        private = any(to_wire6(a) is not None and forbidden(a, None, (), False)
                      == "forbidden_private" for a in (addr, *own))  # IPv6 ones: the scope
        if (requester is None or forbidden(requester, None, own, private) is not None
                or not self._punches.take(now)):
            self.stats["punch_refused"] += 1
            return
        body = bytes((TRAVERSAL, PUNCH)) + self.node_id.to_bytes(20, "big")
        for _ in range(self.settings.punch_copies):
            self._outbox.append((body, requester))
        self.stats["punch6_sent"] += 1

    def _cookies_for(self, wire: bytes, now: float) -> tuple[bytes, bytes]:
        """The cookies valid now for the address whose wire form (6 or 18 bytes) is `wire`:
        under the current secret, then the previous one."""
        secrets = self._secrets
        age = now - self._secret_at
        lifetime = self.settings.cookie_lifetime
        if secrets is None or age >= lifetime:
            fresh = os.urandom(32)
            # the previous secret stays valid for one lifetime, never longer
            previous = secrets[0] if secrets is not None and age < 2 * lifetime else fresh
            secrets = self._secrets = (fresh, previous)
            self._secret_at = now
        return (hashlib.blake2b(wire, key=secrets[0], digest_size=COOKIE_SIZE).digest(),
                hashlib.blake2b(wire, key=secrets[1], digest_size=COOKIE_SIZE).digest())

    def _on_cookie(self, data: bytes, addr: Any, now: float) -> None:
        """A rendezvous we asked wants our address proven: repeat the requests with its cookie."""
        pending = self._punching.pop(addr, None)
        if pending is None or now - pending[0] > self.settings.punch_wait:
            self.stats["unsolicited"] += 1
            return
        cookie = data[2:]
        if len(self._cookies) >= 4 * self.settings.max_observers:
            del self._cookies[next(iter(self._cookies))]
        self._cookies[addr] = cookie
        for body in pending[1]:
            self._send(body + cookie, addr, "punch_req_sent")

    def _on_addr_res(self, data: bytes, addr: Any, now: float) -> None:
        asked = self._nonces.get(data[2:10])
        if asked is None or asked[0] != addr:
            self.stats["unsolicited"] += 1  # only the peer asked may tell us our address
            return
        del self._nonces[data[2:10]]
        self.stats["addr_res_received"] += 1  # answers in all (a reachability check counts them)
        self.contacts.round_trip(addr, now - asked[1])
        if data[10:16] == NO_ADDRESS and self._wire(addr) is None:
            return  # an IPv6 peer's answer to a keep-alive: it sees no IPv4 address of ours
        seen = self.contacts.addr_from_wire(data[10:16])
        if seen is None:
            self.stats["malformed"] += 1
            return
        observed = self.observed
        before = observed.pop(addr, None)
        if len(observed) >= self.settings.max_observers:
            del observed[next(iter(observed))]
        observed[addr] = seen
        public, symmetric = self._public, self._symmetric
        if seen == public and not symmetric:
            return  # every view is this one: nothing changed, nothing to tell
        self._review()
        if public is not None and self._public != public:
            self.independent = False  # another NAT, perhaps: what we saw of the last one is void
            self._evidence_at = None
            self._replan()
        if before not in (None, seen) or (self._public, self._symmetric) != (public, symmetric):
            self._events.append(AddressObserved(addr, seen, self._public, self._symmetric, now))

    def _forget_observers(self, peers: list[Any], now: float) -> None:
        """Views of peers no longer asked go: with the plan down to two peers, the others'
        would otherwise outvote every answer for good (a node that moves to another network
        must see its new public address)."""
        observed = self.observed
        stale = [addr for addr in observed if addr not in peers]
        if not stale:
            return
        for addr in stale:
            del observed[addr]
        if observed:
            public, symmetric = self._public, self._symmetric
            self._review()
            if (self._public, self._symmetric) != (public, symmetric):
                observer = next(reversed(observed))
                self._events.append(AddressObserved(observer, observed[observer], self._public,
                                                    self._symmetric, now))

    def _review(self) -> None:
        """`public`: the address most observers see us at (ties: the latest); `symmetric`:
        they see different ones."""
        values = list(self.observed.values())
        counts = collections.Counter(values)
        best = max(counts.values())
        self._public = next(addr for addr in reversed(values) if counts[addr] == best)
        self._symmetric = len(counts) > 1
