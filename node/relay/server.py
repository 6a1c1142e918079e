"""The relay's side (TURN's server, RFC 8656, over one UDP socket): allocations, caps, forwarding.

An allocation costs the relay state and a signature check only after its requester has proven
its source address: HELLO draws a stateless CHALLENGE (a retry cookie of
kadtalk.node.session.cookie, keyed on the address and the HELLO's nonce, with the relay's own
secrets), and only an ALLOCATE that echoes it is looked at further. Then the caps (in all, per IP,
per node ID: all cheap) and a metered signature check; the allocation gets a random 8-byte
number, a lifetime, a byte budget (token bucket) and at most one permitted peer address.

DATA for an allocation is forwarded, unchanged, from its owner's address to the permitted peer
and from the peer to the owner; from anyone else, or without a permission, it is a counted drop.
Every answer goes to the datagram's source and is no larger than the datagram (but a held
DATA, below, to a source that has just proved it receives there); answers to an unproven
source are CHALLENGEs and KNOCK_COOKIEs only (34 bytes for 34 or more, 16 for 16), metered.
The relay never reads a payload.

The permitted peer must have proven its address first (return routability, as QUIC's Retry or
DTLS's HelloVerifyRequest): a KNOCK draws a stateless KNOCK_COOKIE to its source, HMAC-SHA-256
over the relay's rotating secret, the source address and the allocation, cut to the 6 bytes the
16-byte KNOCK has room for; only a KNOCK echoing it from that address within one to two
rotations puts the address among the allocation's proven ones (and tells the owner: KNOCKED,
at most once a `KNOCKED_AGAIN` per address). A PERMIT naming any other address, or one proven
more than `proof_lifetime` (300 s, TURN's permission lifetime) ago, is refused (ERROR
`unproven_peer`), so nothing of the owner's reaches an address that never asked for it.

Bare KNOCKs have a global bucket of their own (`knock_rate`, and `source_rate` per host): a
cookie is an HMAC and a 16-byte answer to a 16-byte KNOCK, so a flood of spoofed knocks neither
amplifies nor starves HELLO / ALLOCATE's CHALLENGEs (nor they the knocks). Every KNOCK that
carries a cookie, right or wrong, takes a token from its allocation's cap (`echo_cap_rate`
50/s, bounding the HMACs) and one from the bucket of its (allocation, source address)
(`echo_rate` 1/s, burst 4) before it is checked, so a replayed valid cookie costs the
allocation's DATA budget nothing and a guess cannot outrun the meter. The cookie is bound to
the source, so only guesses from the knocker's own address could prove it, and only those
share its bucket: the allocation number travels in clear to the rendezvous, but forged echoes
from other addresses no longer starve the honest knocker's (they did when the bucket was the
allocation's alone). The per-source table is bounded (`echo_sources`) and refuses a new source
when full rather than evicting one; a full bucket is forgotten, and the cap lets at most 250
sources be unfull at once, so spoofed sources alone cannot fill it. Six bytes suffice because
guesses cannot be made offline: a guess is right with probability at most 2 / 2^48 (two
secrets are valid at once), so one address takes on average 2^47 s, some 4.5 million years,
and the cap bounds all addresses together against one allocation to 2^47 / 50 s, some 89,000
years.

Held first DATA (session 10: a relayed call's set-up within one round trip of a direct one):
the owner may hand us one DATA ahead of any permission (HOLD: its call's KEY_REQ, sent with
the offer), tagged with a token the callee also knows (wire.hold_token). We keep it, one per
allocation (a new HOLD replaces it), at most `HOLD_FOR` s, its bytes taken from the
allocation's DATA budget when it comes, and send it, as the DATA the owner would have sent,
to the first knocker whose echo proves its address (the cookie, as above, with every meter
before it) and carries that token: that address becomes the permitted peer (the owner asked
for it in advance; its KNOCKED goes at the same time and its PERMIT confirms), so the callee's
answer comes back at once instead of a round trip to the owner later. Nothing goes to an
unproven address, a wrong token claims nothing (`hold_wrong_token`), a held DATA is sent once.

Claimed before the proof (CLAIM, session 10, later): the knocker sends, beside its bare KNOCK,
a CLAIM carrying the token, padded; a right token takes the held DATA at once, to the CLAIM's
source, if the DATA is at most 3x the CLAIM (wire.CLAIM_FACTOR; else `claim_short`, and it
stays; a wrong token: `claim_wrong_token`). No permission goes with it: the source is
remembered (`claimed`, `HOLD_FOR` s) and becomes the permitted peer only when its echo proves
the address (`hold_permitted`), so the callee's KEY_RES, sent right behind its echo, passes. So
the held KEY_REQ waits for no round trip of the proof; the proof still gates every later byte.
Why that is safe: the one unproven answer is a DATA at most 3x the datagram that drew it (the
bound of every answer to an unproven address in this project, QUIC's; wire.py says why not 1x),
sent once per HOLD (then it is gone), to a source that knew the token (the call's two ends and
the rendezvous that carried the offer, which could drop the offer anyway): a spoofed CLAIM
reflects one datagram; the callee it robbed then proves its address (counted,
`hold_claimed_elsewhere`: an echo from another address than the CLAIM's) and the call goes on
as without a HOLD (KNOCKED, the owner's PERMIT and relayed KEY_REQ).

Consent freshness (RFC 7675): DATA from the owner reaches its peer only while something came
from the peer (its DATA, or a cookie echo) within `consent` (30 s); else it is a counted drop
(`stale_consent`), and the peer's next datagram restores it. (The relay cannot authenticate a
peer's DATA: whoever forges the peer's source address can keep its consent fresh.)
"""

from __future__ import annotations

import collections
import heapq
import hmac
import os
from typing import Any, Callable, Iterable

from ..identity import node_id_of, verify
from ..ratelimit import FloodGuard, TokenBucket
from ..session.cookie import CookieJar, _mac
from . import addresses, wire
from .settings import RelaySettings

PROVEN = 4  # proven peer addresses kept per allocation (the newest; the permitted one stays)
KNOCKED_AGAIN = 1.0  # s: a proven address's next echo tells the owner again only after this
HOLD_FOR = 10.0  # s a held DATA waits for its knocker (a caller holds again with each re-offer)


class KnockCookies(CookieJar):
    """The retry cookie's secrets and MAC (kadtalk.node.session.cookie), tagged with the
    allocation and cut to wire.KNOCK_COOKIE_SIZE bytes; a jar of its own, so a knock cookie
    and a CHALLENGE never share a secret."""

    def mint(self, addr: Any, tag: bytes, now: float) -> bytes:
        return super().mint(addr, tag, now)[:wire.KNOCK_COOKIE_SIZE]

    def valid(self, addr: Any, tag: bytes, cookie: bytes, now: float) -> bool:
        return any(secret is not None and hmac.compare_digest(
            _mac(secret, addr, tag)[:wire.KNOCK_COOKIE_SIZE], cookie)
            for secret in self._secrets(now))


class Allocation:
    __slots__ = ("number", "owner", "host", "identity", "nonce", "peer", "proven", "expires",
                 "budget", "echoes", "sources", "heard", "held", "claimed")

    def __init__(self, number: bytes, owner: Any, host: Any, identity: bytes, nonce: bytes,
                 expires: float, budget: TokenBucket, echoes: TokenBucket):
        self.number = number
        self.owner = owner
        self.host = host
        self.identity = identity
        self.nonce = nonce  # of the ALLOCATE that made it: a retransmission draws ALLOCATED again
        self.peer: Any = None
        self.proven: dict[Any, float] = {}  # address that echoed a knock cookie -> when
        self.expires = expires
        self.budget = budget  # DATA's bytes
        self.echoes = echoes  # KNOCKs with a cookie, from all sources: the cap
        self.sources: dict[Any, TokenBucket] = {}  # ... and per source (bounded, refusing)
        self.heard = 0.0  # when the permitted peer last sent us something (consent)
        self.held: tuple[bytes, bytes, float] | None = None  # (token, DATA, until): HOLD
        self.claimed: tuple[Any, float] | None = None  # (source, until): a CLAIM took `held`


class RelayServer:
    __slots__ = ("settings", "stats", "send", "own", "allocations", "_by_nonce", "_per_identity",
                 "_per_host", "_expiry", "_cookies", "_knock_cookies", "_guard", "_knock_guard",
                 "_total", "_random", "codec", "forwarded", "forwarded_bytes")

    def __init__(self, settings: RelaySettings, stats: collections.Counter[str],
                 send: Callable[[bytes, Any], None], own: Callable[[], Iterable[Any]],
                 now: float, random_bytes: Callable[[int], bytes] = os.urandom,
                 codec: addresses.Codec = addresses.IPV4):
        self.codec = codec  # how addresses travel, and the host each is on
        self.settings = settings
        self.stats = stats
        self.send = send
        self.own = own  # the relay's own addresses (never a peer)
        self.allocations: dict[bytes, Allocation] = {}
        self._by_nonce: dict[bytes, Allocation] = {}
        self._per_identity: collections.Counter[bytes] = collections.Counter()
        self._per_host: collections.Counter[Any] = collections.Counter()
        self._expiry: list[tuple[float, bytes]] = []  # (deadline, number); stale entries skipped
        self._cookies = CookieJar(settings.cookie_rotation, random_bytes)
        self._knock_cookies = KnockCookies(settings.cookie_rotation, random_bytes)
        self._guard = FloodGuard(settings.verify_rate, settings.verify_burst, settings.source_rate,
                                 settings.source_burst, now, max_sources=settings.max_sources,
                                 always=True)
        self._knock_guard = FloodGuard(settings.knock_rate, settings.knock_burst,
                                       settings.source_rate, settings.source_burst, now,
                                       max_sources=settings.max_sources, always=True)
        self._total = TokenBucket(settings.total_rate, settings.total_burst, now)
        self._random = random_bytes
        self.forwarded = self.forwarded_bytes = 0  # since the last `tally` into `stats`

    # -- requests -------------------------------------------------------------------------------

    def on_hello(self, data: bytes, addr: Any, now: float, flags: int | None = None) -> None:
        """A CHALLENGE whose cookie binds the HELLO's nonce and its WANT_OTHER flag (`flags`
        overrides the datagram's byte: an ALLOCATE's bad cookie draws a flagless one)."""
        if self.codec.to_wire(addr) is None:
            self.stats["unusable_source"] += 1
        elif self._metered(addr, now):
            nonce = data[2:18]
            want = bool((data[18] if flags is None else flags) & wire.WANT_OTHER)  # a bit test
            self.send(wire.challenge(nonce, self._cookies.mint(
                addr, wire.hello_tag(nonce, want), now)), addr)
            self.stats["challenge_sent"] += 1

    def on_allocate(self, data: bytes, addr: Any, now: float) -> None:
        request = wire.parse_allocate(data)
        reflexive = self.codec.to_wire(addr)
        if request is None:
            self.stats["malformed"] += 1
            return
        if reflexive is None:
            self.stats["unusable_source"] += 1
            return
        cookies = self._cookies
        if cookies.valid(addr, wire.hello_tag(request.nonce, True), request.cookie, now):
            other = self._other_address(addr)  # asked for (the flag is in the cookie)
        elif cookies.valid(addr, request.nonce, request.cookie, now):
            other = b""
        else:
            self.stats["bad_cookie"] += 1  # forged, expired or from another address: no state
            self.on_hello(data[:34], addr, now, 0)  # a fresh CHALLENGE (34 bytes for 38 or more)
            return
        self.expire(now)
        again = self._by_nonce.get(request.nonce)
        if again is not None and again.owner == addr:  # our ALLOCATED was lost: the same again
            if len(data) >= wire.SIZES[wire.ALLOCATED] + len(reflexive) + len(other) \
                    - wire.ADDR_SIZE:
                self._granted(again, request.nonce, reflexive, now, other)  # (never larger)
            return
        identity = node_id_of(request.spki)
        if len(self.allocations) >= self.settings.max_allocations:
            self._refuse(wire.RELAY_FULL, request.nonce, addr, "relay_full")
        elif (self._per_host[self.codec.host(addr)] >= self.settings.max_per_host
              or self._per_identity[identity] >= self.settings.max_per_identity):
            self._refuse(wire.QUOTA, request.nonce, addr, "quota")
        elif not self._metered(addr, now):
            pass  # counted by _metered; the client retries
        elif not verify(request.spki, request.signature,
                        wire.signed_part(request.nonce, request.cookie, request.lifetime)):
            self._refuse(wire.BAD_SIGNATURE, request.nonce, addr, "bad_signature")
        else:
            lifetime = self._lifetime(request.lifetime or self.settings.default_lifetime)
            number = self._random(wire.ID_SIZE)
            while number in self.allocations:
                number = self._random(wire.ID_SIZE)
            settings = self.settings
            alloc = Allocation(number, addr, self.codec.host(addr), identity, request.nonce,
                               now + lifetime,
                               TokenBucket(settings.allocation_rate, settings.allocation_burst,
                                           now),
                               TokenBucket(settings.echo_cap_rate, settings.echo_cap_burst, now))
            self.allocations[number] = alloc
            self._by_nonce[request.nonce] = alloc
            self._per_identity[identity] += 1
            self._per_host[alloc.host] += 1
            heapq.heappush(self._expiry, (alloc.expires, number))
            self.stats["allocated"] += 1
            self._granted(alloc, request.nonce, reflexive, now, other)

    def on_refresh(self, data: bytes, addr: Any, now: float) -> None:
        alloc = self._owned(data, addr, now)
        if alloc is None:
            return
        asked = wire.u16(data, 10)
        if asked == 0:
            self._remove(alloc)
            self.stats["released"] += 1
            self.send(wire.refresh(alloc.number, 0, wire.REFRESHED), addr)
            return
        lifetime = self._lifetime(asked)
        alloc.expires = now + lifetime  # its expiry entry, when due, moves to the new deadline
        self.send(wire.refresh(alloc.number, lifetime, wire.REFRESHED), addr)

    def on_permit(self, data: bytes, addr: Any, now: float) -> None:
        alloc = self._owned(data, addr, now)
        if alloc is None:
            return
        field = wire.address_field(data, 10)  # 6 bytes (IPv4) or 18 (IPv6)
        peer = self.codec.from_wire(field)
        refused = self.codec.forbidden(peer, addr, self.own(), self.settings.forward_private) \
            if peer is not None else "forbidden_peer"
        if refused is not None:
            self._refuse(wire.FORBIDDEN_PEER, alloc.number, addr, refused, wire.PERMIT)
            return
        proven = alloc.proven.get(peer)
        if proven is not None and now - proven >= self.settings.proof_lifetime:
            proven = None  # an old proof: the address may have changed hands since
        if peer == alloc.peer and now - alloc.heard < self.settings.consent:
            proven = alloc.heard  # the permitted peer again, still consenting
        if proven is None:  # it never echoed a knock cookie, or long ago
            self._refuse(wire.UNPROVEN_PEER, alloc.number, addr, "unproven_peer", wire.PERMIT)
            return
        alloc.peer, alloc.heard = peer, proven  # exactly one: a new permission replaces the old
        self.send(wire.permit(alloc.number, field, wire.PERMITTED), addr)

    def on_hold(self, data: bytes, addr: Any, now: float) -> None:
        """The owner's first DATA of a call, kept for the knocker that will prove its address
        with the HOLD's token (never answered: the source is the owner, nothing is owed)."""
        alloc = self._owned(data, addr, now)
        if alloc is None:
            return
        datagram = wire.data(alloc.number, data[wire.HOLD_HEADER:])
        if not alloc.budget.take(now, len(datagram)):
            self.stats["over_allocation_rate"] += 1
            return
        if alloc.held is not None:
            self.stats["hold_replaced"] += 1  # never claimed: the owner's newer one counts
        alloc.held = (data[wire.HEADER:wire.HOLD_HEADER], datagram, now + HOLD_FOR)
        self.stats["held"] += 1

    def _knock_target(self, data: bytes, addr: Any, now: float) -> Allocation | None:
        """The live allocation a KNOCK or CLAIM from `addr` names, or None (counted): unknown,
        or a knocker the owner could not permit anyway (codec.forbidden)."""
        self.expire(now)
        alloc = self.allocations.get(data[2:10])
        if alloc is None:
            self.stats["unknown_allocation"] += 1
            return None
        refused = self.codec.forbidden(addr, alloc.owner, self.own(),
                                      self.settings.forward_private)
        if refused is not None:
            self.stats[refused] += 1
            return None
        return alloc

    def on_knock(self, data: bytes, addr: Any, now: float) -> None:
        """A would-be peer asks the owner to permit it. With a zero cookie it gets a
        KNOCK_COOKIE (as large as the KNOCK, from the knock bucket); echoing that from the same
        address proves the address, and only then does the owner hear where we see it
        (KNOCKED, as large as the KNOCK). An echo takes a token of the allocation's echo
        bucket before its cookie is looked at: right and wrong guesses alike are metered."""
        alloc = self._knock_target(data, addr, now)
        if alloc is None:
            return
        cookie = data[10:16]
        if cookie == wire.NO_COOKIE:
            refused = self._knock_guard.check(self.codec.host(addr), now)
            if refused is not None:
                self.stats[refused] += 1
            else:
                self.send(wire.knock(alloc.number, self._knock_cookies.mint(
                    addr, alloc.number, now), wire.KNOCK_COOKIE), addr)
                self.stats["knock_cookie_sent"] += 1
        elif len(data) < wire.SIZES[wire.KNOCK] + len(self.codec.to_wire(addr)) - wire.ADDR_SIZE:
            self.stats["short_knock"] += 1  # an IPv6 knocker's echo draws a 28-byte KNOCKED
        elif not alloc.echoes.take(now):
            self.stats["rate_limited_echo"] += 1  # before the check: no guess goes unmetered
        elif (refused := self._echo_metered(alloc, addr, now)) is not None:
            self.stats[refused] += 1  # this source's guesses (1/s), whatever others send
        elif not self._knock_cookies.valid(addr, alloc.number, cookie, now):
            self.stats["bad_knock_cookie"] += 1  # forged, expired, or from elsewhere
        else:
            if alloc.held is not None:
                self._release(alloc, data, addr, now)
            if alloc.claimed is not None:
                self._claim_proven(alloc, addr, now)
            if addr == alloc.peer:
                alloc.heard = now  # the peer still consents
            told = alloc.proven.get(addr)
            if told is not None and now - told < KNOCKED_AGAIN:
                self.stats["knocked_again"] += 1  # the owner knows (a second echo, a replay)
                return
            alloc.proven.pop(addr, None)
            alloc.proven[addr] = now  # newest last
            if len(alloc.proven) > PROVEN:
                del alloc.proven[next(iter(alloc.proven))]
            self.send(wire.knocked(alloc.number, self.codec.to_wire(addr)), alloc.owner)
            self.stats["knocked"] += 1

    def on_claim(self, data: bytes, addr: Any, now: float) -> None:
        """A knocker's CLAIM (beside its bare KNOCK): the held DATA, at once, if the token is
        right and the DATA at most 3x the CLAIM; no permission (that waits for the echo)."""
        alloc = self._knock_target(data, addr, now)
        if alloc is None:
            return
        if alloc.held is None:
            self.stats["claim_nothing_held"] += 1  # claimed already, never held, a retransmission
            return
        token, datagram, until = alloc.held
        if now >= until:
            alloc.held = None
            self.stats["hold_expired"] += 1
        elif not hmac.compare_digest(data[wire.HEADER:wire.HOLD_HEADER], token):
            self.stats["claim_wrong_token"] += 1
        elif len(datagram) > wire.CLAIM_FACTOR * len(data):
            self.stats["claim_short"] += 1  # no answer over 3x its request
        elif self._send_held(datagram, addr, now):
            alloc.held = None  # sent once
            alloc.claimed = (addr, now + HOLD_FOR)
            self.stats["hold_claimed"] += 1

    def forward(self, data: bytes, addr: Any, now: float,
                send: Callable[[bytes, Any], Any]) -> bool:
        """DATA from `addr`: False when it is not a well-formed DATA naming one of our
        allocations (the caller looks further: a path of ours, the client role); else True,
        and it went to `send(data, target)` unchanged (counted as forwarded) or, if a rule
        forbids it, nowhere (counted as a drop). Every rule of a relayed datagram, in one
        function for the layer's `receive_datagram` and a driver's fast path alike
        (`RelayLayer.forward`): this runs for every datagram a relay forwards, so the layout
        check (wire.is_data) and the two token buckets' `take` are inline, and the counts
        are plain integers (`tally`)."""
        if not (wire.HEADER <= len(data) <= wire.HEADER + wire.MAX_PAYLOAD
                and data[0] == wire.RELAY and data[1] == wire.DATA):
            return False
        alloc = self.allocations.get(data[2:10])
        if alloc is None:
            return False
        if now >= alloc.expires:
            self.expire(now)
            self.stats["unknown_allocation"] += 1
            return True
        if addr == alloc.owner:
            target = alloc.peer
            if target is None:
                self.stats["no_permission"] += 1
                return True
            if now - alloc.heard >= self.settings.consent:
                self.stats["stale_consent"] += 1  # nothing from the peer lately: it may be gone
                return True
        elif addr == alloc.peer:
            target = alloc.owner
            alloc.heard = now
        else:
            self.stats["not_permitted"] += 1  # neither the owner nor its one peer
            return True
        size = len(data)
        budget = alloc.budget  # alloc.budget.take(now, size), then self._total.take(now, size)
        if now > budget.stamp:
            budget.tokens = min(budget.burst, budget.tokens + (now - budget.stamp) * budget.rate)
            budget.stamp = now
        if budget.tokens < size:
            self.stats["over_allocation_rate"] += 1
            return True
        budget.tokens -= size
        total = self._total
        if now > total.stamp:
            total.tokens = min(total.burst, total.tokens + (now - total.stamp) * total.rate)
            total.stamp = now
        if total.tokens < size:
            self.stats["over_relay_rate"] += 1
            return True
        total.tokens -= size
        self.forwarded += 1  # (not stats["forwarded"]: see `tally`)
        self.forwarded_bytes += size
        send(data, target)  # unchanged: the same size, the payload never read
        return True

    def tally(self) -> None:
        """Fold the forwarded counts into `stats` ("forwarded", "forwarded_bytes"): `forward`
        keeps them as two integers, a Counter's update being one of the dearer steps of a
        relayed datagram once the caches went cold (~7 µs of ~45, benchmarks/relay.py)."""
        if self.forwarded:
            self.stats["forwarded"] += self.forwarded
            self.stats["forwarded_bytes"] += self.forwarded_bytes
            self.forwarded = self.forwarded_bytes = 0

    # -- time -------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def expire(self, now: float) -> None:
        allocations = self.allocations
        while self._expiry and self._expiry[0][0] <= now:  # (_remove may rebuild the heap)
            _, number = heapq.heappop(self._expiry)
            alloc = allocations.get(number)
            if alloc is None:
                continue  # released earlier
            if alloc.expires > now:
                heapq.heappush(self._expiry, (alloc.expires, number))  # refreshed since
            else:
                self._remove(alloc)
                self.stats["expired"] += 1

    # -- internals ------------------------------------------------------------------------------

    def _metered(self, addr: Any, now: float) -> bool:
        refused = self._guard.check(self.codec.host(addr), now)
        if refused is not None:
            self.stats[refused] += 1
        return refused is None

    def _echo_metered(self, alloc: Allocation, addr: Any, now: float) -> str | None:
        """None if `addr` may have one more cookie of `alloc` checked now, else the reason."""
        sources, settings = alloc.sources, self.settings
        bucket = sources.get(addr)
        if bucket is None:
            if len(sources) >= settings.echo_sources:
                for key in [k for k, b in sources.items() if b.level(now) >= b.burst]:
                    del sources[key]  # full buckets: forgetting them loses nothing
                if len(sources) >= settings.echo_sources:
                    return "echo_sources_full"  # refused: established sources are kept
            bucket = sources[addr] = TokenBucket(settings.echo_rate, settings.echo_burst, now)
        return None if bucket.take(now) else "rate_limited_echo_source"

    def _release(self, alloc: Allocation, data: bytes, addr: Any, now: float) -> None:
        """A proven echo at an allocation holding DATA: if it carries the HOLD's token, the
        DATA goes to the echo's (proven) source, which becomes the permitted peer."""
        token, datagram, until = alloc.held
        if now >= until:
            alloc.held = None
            self.stats["hold_expired"] += 1
        elif wire.knock_token(data) is None:
            pass  # a knock for another reason (consent, a move): it claims nothing
        elif not hmac.compare_digest(wire.knock_token(data), token):
            self.stats["hold_wrong_token"] += 1  # another call's knocker: proven, not this one
        elif self._send_held(datagram, addr, now):
            alloc.held = None
            alloc.peer, alloc.heard = addr, now
            self.stats["hold_released"] += 1

    def _send_held(self, datagram: bytes, addr: Any, now: float) -> bool:
        """Send a held DATA as `forward` sends any DATA: within the relay's total byte rate
        (the allocation's budget paid at HOLD) and counted as forwarded. False (counted
        `over_relay_rate`; the DATA stays held) when the total is spent."""
        if not self._total.take(now, len(datagram)):
            self.stats["over_relay_rate"] += 1
            return False
        self.forwarded += 1
        self.forwarded_bytes += len(datagram)
        self.send(datagram, addr)
        return True

    def _claim_proven(self, alloc: Allocation, addr: Any, now: float) -> None:
        """A proven echo at an allocation whose held DATA a CLAIM took: from the CLAIM's
        source, it becomes the permitted peer (the owner asked for its token's knocker in
        advance; KNOCKED goes too and its PERMIT confirms); from another, the CLAIM was not the
        echo's knocker (a spoofed one, or a move): counted, nothing granted."""
        source, until = alloc.claimed
        alloc.claimed = None
        if now >= until:
            return
        if addr == source:
            alloc.peer, alloc.heard = addr, now
            self.stats["hold_permitted"] += 1
        else:
            self.stats["hold_claimed_elsewhere"] += 1

    def _lifetime(self, asked: int) -> int:
        return max(self.settings.min_lifetime, min(asked, self.settings.max_lifetime))

    def _owned(self, data: bytes, addr: Any, now: float) -> Allocation | None:
        """The allocation a REFRESH / PERMIT names, if it comes from its owner's address."""
        self.expire(now)
        alloc = self.allocations.get(data[2:10])
        if alloc is None:
            self.stats["unknown_allocation"] += 1
        elif addr != alloc.owner:
            self.stats["not_owner"] += 1  # no answer: the source is not proven
        else:
            return alloc
        return None

    def _granted(self, alloc: Allocation, nonce: bytes, reflexive: bytes, now: float,
                 other: bytes = b"") -> None:
        lifetime = max(0, min(0xFFFF, round(alloc.expires - now)))
        self.send(wire.allocated(nonce, alloc.number, lifetime, reflexive, other), alloc.owner)

    def _other_address(self, owner: Any) -> bytes:
        """Our address in the family `owner` is not in, as ALLOCATED carries it (b"": none):
        one of our own public addresses (`own`: the daemon's route source of that family),
        never a special one, nor a private one unless we forward to private peers
        (`forward_private`, a LAN's relay) and only to an owner whose own address is private
        too (a remote owner would hand our LAN address to its callee, who would knock at that
        address on its own LAN), and only of a family the codec can carry."""
        ipv6 = len(self.codec.to_wire(owner) or b"") == wire.ADDR6_SIZE
        private = self.settings.forward_private and \
            self.codec.forbidden(owner, None, (), False) == "forbidden_private"
        for addr in self.own():
            field = self.codec.to_wire(addr)
            if field is None or (len(field) == wire.ADDR6_SIZE) == ipv6:
                continue
            if self.codec.forbidden(addr, None, (), private) is None:
                return field
        return b""

    def _refuse(self, code: int, reference: bytes, addr: Any, reason: str,
                op: int = wire.ALLOCATE) -> None:
        self.stats[reason] += 1
        self.send(wire.error(op, code, reference), addr)

    def _remove(self, alloc: Allocation) -> None:
        del self.allocations[alloc.number]
        if self._by_nonce.get(alloc.nonce) is alloc:
            del self._by_nonce[alloc.nonce]
        for counter, key in ((self._per_identity, alloc.identity), (self._per_host, alloc.host)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        if len(self._expiry) > 2 * len(self.allocations) + 16:  # released ones' entries
            self._expiry = [(a.expires, n) for n, a in self.allocations.items()]
            heapq.heapify(self._expiry)
