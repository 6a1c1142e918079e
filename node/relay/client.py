"""The client's side: allocations held with chosen relays, permissions, refreshes, DATA.

A node asks a relay for an allocation (HELLO, then ALLOCATE signed with its node key over the
relay's cookie), permits its one peer's address there, refreshes at half the granted lifetime
and releases it when done; every request is retransmitted after 0.5, 1, 2, 4 s and given up
after `request_tries`, but a HELLO after `HELLO_TRIES` (1.5 s): HELLO draws a stateless
CHALLENGE, so a node asks several candidates at once and, with `wanted` set, ALLOCATEs only at
the first `wanted` to answer (the nearest: `Held.rtt`), dropping later CHALLENGEs. A peer that talks to someone else's allocation (as its permitted peer)
`connect`s its path first, so DATA from relays is accepted only for paths the node knows. The
relay never sees a session key: what travels in DATA is the session's datagram, unchanged.
A knocker sends a bare KNOCK, a second after 0.5 s unless a KNOCK_COOKIE came, and, once the
relay has answered, more after 1, 2, 4 s (`request_timeout`, doubling, `request_tries` in all)
until DATA comes through the path (the owner heard KNOCKED and permitted us): a lost KNOCK,
cookie, echo or KNOCKED costs a retry, not the relayed path. An address that never answers (a
forged offer may name anyone) gets the two KNOCKs only, and a call's knock one CLAIM (wire.py):
16 + 94 + 16 bytes for a 42-byte offer, 3x, the bound of what a request draws unproven. It
echoes the relay's KNOCK_COOKIE (the proof that it receives at its address) once per cookie, at
most once per bare KNOCK sent and within `KNOCK_WAIT` s of the last: never more than the relay
sent, so a forged KNOCK_COOKIE draws at most its own size back.

A knocked path is accepted (DATA through it taken, and sent) only once a KNOCK_COOKIE for it
came from its relay's address: an address named in an unauthenticated offer that never
answered is sent the two KNOCKs and nothing else, whatever comes "from" it. And nothing goes
through another owner's path that nothing has come through (a cookie or DATA) for `consent`
(30 s; RFC 7675's consent freshness, the relay's own rule on the client's side): a path whose
far end stopped answering is not fed (`no_consent`); a KNOCK goes instead (once per knock
round), and the relay's cookie restores it, as the echo restores the relay's consent for us.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Callable

from ..addresses import is_ipv6
from . import addresses, wire
from .events import (
    AllocationExpired,
    AllocationFailed,
    AllocationGranted,
    Knocked,
    PermissionGranted,
    PermissionRefused,
    RelayEvent,
    RelayPath,
)
from .settings import RelaySettings

UNANSWERED = 2  # bare KNOCKs to a relay that sent no KNOCK_COOKIE yet
KNOCK_WAIT = 10.0  # s a knock's KNOCK_COOKIE is awaited
HELLO_TRIES = 2  # HELLOs before a silent candidate is given up (0.5 + 1 s): a contact that
# does not relay never answers, and a lost HELLO only costs a later look (`Held.rtt`)


class _Knock:
    __slots__ = ("echoes", "until", "retry_at", "tries", "answered", "token", "held")

    def __init__(self, now: float, timeout: float, token: bytes = b""):
        self.token = token  # a CLAIM's, sent with the first bare KNOCK: the held DATA (HOLD)
        self.echoes = 1  # cookies we may still echo: one per bare KNOCK sent
        self.until = now + KNOCK_WAIT
        self.retry_at: float | None = now + timeout
        self.tries = 1
        self.answered = False  # a KNOCK_COOKIE came: the address is a relay that knows us
        self.held = bool(token)  # a CLAIM went: the first DATA may be the held one, sent
        #   before our echo was checked, so it does not end the knocking (the second does)


class _Request:
    __slots__ = ("kind", "datagram", "retry_at", "tries", "peer")

    def __init__(self, kind: str, datagram: bytes, now: float, timeout: float, peer: Any = None):
        self.kind = kind  # hello, allocate, refresh, release, permit
        self.datagram = datagram
        self.retry_at = now + timeout
        self.tries = 1
        self.peer = peer


class Held:
    """One allocation of ours (asked for, or granted) with one relay."""

    __slots__ = ("relay", "nonce", "state", "path", "reflexive", "lifetime", "expires",
                 "refresh_at", "peer", "request", "permit", "asked", "rtt", "other", "always")

    def __init__(self, relay: Any, nonce: bytes, now: float = 0.0, always: bool = False):
        self.relay = relay
        self.always = always  # ALLOCATE when it answers, whatever `RelayClient.wanted` says
        self.nonce = nonce
        self.state = "hello"  # -> allocating -> granted
        self.asked = now  # when the first HELLO went
        self.rtt: float | None = None  # HELLO -> CHALLENGE, if the first HELLO was answered
        self.path: RelayPath | None = None
        self.reflexive: Any = None
        self.other: Any = None  # the relay's address in the other family, if it told one
        self.lifetime = 0
        self.expires = self.refresh_at = 0.0
        self.peer: Any = None  # the permitted peer, once PERMITTED
        self.request: _Request | None = None  # hello / allocate / refresh / release
        self.permit: _Request | None = None


class RelayClient:
    __slots__ = ("settings", "identity", "stats", "send", "events", "held", "peers", "knocking",
                 "_random", "codec", "wanted")

    def __init__(self, identity: Any, settings: RelaySettings, stats: collections.Counter[str],
                 send: Callable[[bytes, Any], None], events: collections.deque[RelayEvent],
                 random_bytes: Callable[[int], bytes] = os.urandom,
                 codec: addresses.Codec = addresses.IPV4):
        self.codec = codec  # how addresses travel (relay/addresses.py)
        self.identity = identity
        self.settings = settings
        self.stats = stats
        self.send = send
        self.events = events
        self.held: dict[Any, Held] = {}  # relay address -> our allocation there
        self.peers: dict[RelayPath, float] = {}  # others' allocations we are the peer of ->
        #   when something last came through (consent)
        self.knocking: dict[RelayPath, _Knock] = {}  # paths we knock at, until DATA comes
        self._random = random_bytes
        # HELLO is a free probe (the relay keeps no state for it): with `wanted` set, the
        # owner may ask more candidates at once and ALLOCATE only at the first `wanted` to
        # answer (the nearest); a later CHALLENGE is dropped, nothing allocated there
        self.wanted: int | None = None

    # -- commands -------------------------------------------------------------------------------

    def allocate(self, relay: Any, now: float, always: bool = False) -> None:
        """Ask `relay` (HELLO); `always`: ALLOCATE when it answers even if `wanted` others did
        (a family search wants every relay's answer: which are dual-stack shows in ALLOCATED)."""
        if relay in self.held:
            return  # one allocation per relay: asked for or held already
        if len(self.held) >= self.settings.max_client_allocations:
            raise ValueError("too many relay allocations held at once")
        if self.codec.to_wire(relay) is None:
            raise ValueError(f"not a relay address: {relay!r}")
        held = self.held[relay] = Held(relay, self._random(wire.NONCE_SIZE), now, always)
        self._request(held, "hello", wire.hello(held.nonce, wire.WANT_OTHER), now)

    def cancel(self, relay: Any) -> None:
        """Forget a HELLO to `relay` not answered yet (its CHALLENGE then counts unsolicited:
        nothing is allocated there)."""
        held = self.held.get(relay)
        if held is not None and held.state == "hello":
            del self.held[relay]

    def permit(self, path: RelayPath, peer: Any, now: float) -> None:
        held = self._granted(path)
        wire_peer = self.codec.to_wire(peer)
        if wire_peer is None:
            raise ValueError(f"not a peer address: {peer!r}")
        held.permit = _Request("permit", wire.permit(path.allocation, wire_peer), now,
                               self.settings.request_timeout, peer)
        self.send(held.permit.datagram, path.relay)

    def hold(self, path: RelayPath, token: bytes, payload: bytes) -> None:
        """HOLD `payload` at our allocation `path` for the knocker with `token` (not
        retransmitted: a lost HOLD costs the round trip it would have saved, not the call)."""
        self._granted(path)
        if len(payload) > wire.MAX_PAYLOAD or len(token) != wire.TOKEN_SIZE:
            raise ValueError("a HOLD's payload or token does not fit")
        self.send(wire.hold(path.allocation, token, payload), path.relay)
        self.stats["hold_sent"] += 1

    def release(self, path: RelayPath, now: float) -> None:
        held = self._granted(path)
        held.permit = None
        self._request(held, "release", wire.refresh(path.allocation, 0), now)

    def connect(self, path: RelayPath, now: float) -> None:
        """Accept DATA through someone else's allocation `path` (we are its permitted peer)."""
        self.peers.pop(path, None)
        if len(self.peers) >= self.settings.max_paths:
            del self.peers[next(iter(self.peers))]
        self.peers[path] = now

    def knock(self, path: RelayPath, now: float, token: bytes = b"") -> None:
        """We KNOCK at `path` (someone else's allocation), KNOCK again with back-off until DATA
        comes, echo the relay's KNOCK_COOKIEs meanwhile (with `token`, if any: it claims the
        owner's held DATA), and accept DATA through `path` once the first came (from
        `path.relay`: an address that answers for that allocation)."""
        self.knocking.pop(path, None)
        if len(self.knocking) >= self.settings.max_paths:
            del self.knocking[next(iter(self.knocking))]
        self.knocking[path] = _Knock(now, self.settings.request_timeout, token)
        self.send(wire.knock(path.allocation, ipv6=is_ipv6(path.relay)), path.relay)
        if token:  # with the first KNOCK only: 16 + 94 + 16 bytes for a 42-byte offer (3x)
            self.send(wire.claim(path.allocation, token), path.relay)
            self.stats["claim_sent"] += 1

    def disconnect(self, path: RelayPath) -> None:
        self.peers.pop(path, None)

    def knows(self, path: RelayPath) -> bool:
        held = self.held.get(path.relay)
        return path in self.peers or (held is not None and held.path == path)

    def wrap(self, path: RelayPath, payload: bytes, now: float) -> bytes | None:
        """The DATA datagram carrying `payload` through `path` (to send to `path.relay`), or
        None for a path we do not know, another's path without consent, or a payload too
        large."""
        if len(payload) > wire.MAX_PAYLOAD or not self.knows(path):
            return None
        heard = self.peers.get(path)
        if heard is not None and now - heard >= self.settings.consent:
            self.stats["no_consent"] += 1  # nothing came through it lately: its end may be gone
            if path not in self.knocking:
                self.knock(path, now)  # ask again: the relay's cookie restores it (and the
                self.stats["consent_knock"] += 1  # echo the relay's consent for us)
            return None
        return wire.data(path.allocation, payload)

    # -- answers from relays --------------------------------------------------------------------

    def on_answer(self, data: bytes, addr: Any, now: float) -> None:
        op, held = data[1], self.held.get(addr)
        if op == wire.KNOCK_COOKIE:
            self._on_knock_cookie(data, addr, now)
            return
        if held is None:
            self.stats["unsolicited"] += 1
            return
        request = held.request
        if op == wire.CHALLENGE:
            if held.state == "granted" or data[2:18] != held.nonce:
                self.stats["unsolicited"] += 1
                return
            if held.state == "hello":
                wanted = self.wanted
                if wanted is not None and not held.always and sum(
                        h.state != "hello" for h in self.held.values()) >= wanted:
                    del self.held[addr]  # enough nearer relays answered first: none here
                    self.stats["hello_spare"] += 1
                    return
                if request is not None and request.tries == 1:
                    held.rtt = now - held.asked  # Karn: only an answer to the one HELLO
            held.state = "allocating"
            lifetime = self.settings.lifetime
            cookie = data[18:34]
            signature = self.identity.sign(wire.signed_part(held.nonce, cookie, lifetime))
            datagram = wire.allocate(held.nonce, cookie, lifetime, self.identity.public_der,
                                     signature)
            self._request(held, "allocate", datagram, now)
        elif op == wire.ALLOCATED:
            if data[2:18] != held.nonce or held.state == "hello":
                self.stats["unsolicited"] += 1
            elif held.state == "granted":
                self.stats["duplicate_answer"] += 1  # our retransmission was answered too
            else:
                self._on_allocated(held, data, now)
        elif op == wire.REFRESHED:
            if (held.path is None or data[2:10] != held.path.allocation or request is None
                    or request.kind not in ("refresh", "release")):
                self.stats["unsolicited"] += 1
                return
            lifetime = wire.u16(data, 10)
            if request.kind == "release" or lifetime == 0:
                self._drop(held, "released", now)
                return
            held.request = None
            self._schedule(held, lifetime, now)
        elif op == wire.PERMITTED:
            pending = held.permit
            if (held.path is None or pending is None or data[2:10] != held.path.allocation
                    or wire.address_field(data, 10) != self.codec.to_wire(pending.peer)):
                self.stats["unsolicited"] += 1
                return
            held.permit, held.peer = None, pending.peer
            self.events.append(PermissionGranted(held.path, pending.peer, now))
        elif op == wire.KNOCKED:
            peer = self.codec.from_wire(wire.address_field(data, 10))
            if held.path is None or data[2:10] != held.path.allocation or peer is None:
                self.stats["unsolicited"] += 1
                return
            self.events.append(Knocked(held.path, peer, now))
        else:  # ERROR
            self._on_error(held, data, now)

    def on_data(self, data: bytes, addr: Any, now: float) -> RelayPath | None:
        """The path a DATA datagram came through, if it is one of ours; else a counted drop."""
        path = RelayPath(addr, data[2:10])
        if self.knows(path):
            if path in self.peers:
                self.peers[path] = now  # consent
            knock = self.knocking.get(path)
            if knock is not None and knock.held:
                knock.held = False  # perhaps the held DATA: our echo may yet be lost
            elif knock is not None:
                del self.knocking[path]  # the owner permitted us: no more knocks
            return path
        self.stats["unknown_allocation"] += 1
        return None

    # -- time -------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        deadline = None
        for held in self.held.values():
            for at in (held.request.retry_at if held.request else None,
                       held.permit.retry_at if held.permit else None,
                       held.refresh_at if held.state == "granted" and not held.request else None,
                       held.expires if held.state == "granted" else None):
                if at is not None and (deadline is None or at < deadline):
                    deadline = at
        for knock in self.knocking.values():
            at = knock.retry_at if knock.retry_at is not None else knock.until
            if at is not None and (deadline is None or at < deadline):
                deadline = at
        return deadline

    def handle_timer(self, now: float) -> None:
        self._knock_again(now)
        for held in list(self.held.values()):
            if held.state == "granted" and now >= held.expires:
                self._drop(held, "expired", now)
                continue
            if held.state == "granted" and held.request is None and now >= held.refresh_at:
                self._request(held, "refresh",
                              wire.refresh(held.path.allocation, self.settings.lifetime), now)
            for pending in (held.request, held.permit):
                if pending is None or now < pending.retry_at:
                    continue
                tries = HELLO_TRIES if pending.kind == "hello" else self.settings.request_tries
                if pending.tries >= min(tries, self.settings.request_tries):
                    self._gave_up(held, pending, now)
                    if held.relay not in self.held:
                        break
                    continue
                pending.tries += 1
                pending.retry_at = now + self.settings.request_timeout * 2 ** (pending.tries - 1)
                self.send(pending.datagram, held.relay)
                self.stats["retransmitted"] += 1

    # -- internals ------------------------------------------------------------------------------

    def _granted(self, path: RelayPath) -> Held:
        held = self.held.get(path.relay)
        if held is None or held.path != path:
            raise ValueError(f"no allocation of ours at {path!r}")
        return held

    def _request(self, held: Held, kind: str, datagram: bytes, now: float) -> None:
        held.request = _Request(kind, datagram, now, self.settings.request_timeout)
        self.send(datagram, held.relay)

    def _schedule(self, held: Held, lifetime: int, now: float) -> None:
        held.lifetime = lifetime
        held.expires = now + lifetime
        # half the lifetime, and often enough to keep our NAT's mapping towards the relay open
        held.refresh_at = now + min(lifetime / 2, self.settings.keepalive)

    def _on_allocated(self, held: Held, data: bytes, now: float) -> None:
        field, other = wire.allocated_fields(data, is_ipv6(held.relay))
        reflexive = self.codec.from_wire(field)
        lifetime = wire.u16(data, 26)
        if reflexive is None or lifetime == 0:
            self.stats["malformed"] += 1
            return
        held.state, held.request = "granted", None
        held.path = RelayPath(held.relay, data[18:26])
        held.reflexive = reflexive
        # the relay's other address: offered to a callee of that family only (a lying relay
        # names an address the callee knocks at twice, as a forged offer may; never a special
        # one: the knocker refuses those, relay_offer_refused)
        held.other = self.codec.from_wire(other) if other is not None else None
        if held.other is not None and is_ipv6(held.other) == is_ipv6(held.relay):
            held.other = None
        self._schedule(held, lifetime, now)
        self.events.append(AllocationGranted(held.path, reflexive, lifetime, now))

    def _knock_again(self, now: float) -> None:
        for path, knock in list(self.knocking.items()):
            if knock.retry_at is None:
                if now >= knock.until:
                    del self.knocking[path]  # given up: the owner never answered
                continue
            if now < knock.retry_at:
                continue
            if not knock.answered and knock.tries >= UNANSWERED:
                knock.retry_at = None  # never answered: it may not even be a relay
                continue
            knock.tries += 1
            knock.retry_at = (None if knock.tries >= self.settings.request_tries else
                              now + self.settings.request_timeout * 2 ** (knock.tries - 1))
            knock.echoes += 1
            knock.until = now + KNOCK_WAIT
            self.send(wire.knock(path.allocation, ipv6=is_ipv6(path.relay)), path.relay)
            self.stats["knock_retransmitted"] += 1

    def _on_knock_cookie(self, data: bytes, addr: Any, now: float) -> None:
        path = RelayPath(addr, data[2:10])
        pending = self.knocking.get(path)
        if pending is None or now >= pending.until or pending.echoes <= 0:
            self.stats["unsolicited"] += 1  # not a relay we knocked at lately, for this number
            return
        pending.echoes -= 1
        pending.answered = True
        self.connect(path, now)  # its relay answers for it: DATA through it is taken now
        # 16 bytes for 16, a form every relay takes (the token went in the CLAIM: a 24-byte
        # echo, session 10's first form, an older relay dropped as malformed)
        self.send(wire.knock(path.allocation, data[10:16], ipv6=is_ipv6(addr)), addr)
        self.stats["knock_echoed"] += 1

    def _on_error(self, held: Held, data: bytes, now: float) -> None:
        request_op, reason = data[2], wire.ERROR_NAMES.get(data[3], "error")
        reference = data[4:12]
        if request_op == wire.ALLOCATE and held.state == "allocating" \
                and reference == held.nonce[:wire.ID_SIZE]:
            del self.held[held.relay]
            self.events.append(AllocationFailed(held.relay, reason, now))
        elif (request_op == wire.PERMIT and held.permit is not None and held.path is not None
              and reference == held.path.allocation):
            peer, held.permit = held.permit.peer, None
            self.events.append(PermissionRefused(held.path, peer, reason, now))
        else:
            self.stats["unsolicited"] += 1

    def _gave_up(self, held: Held, pending: _Request, now: float) -> None:
        if pending.kind == "permit":
            held.permit = None
            self.events.append(PermissionRefused(held.path, pending.peer, "timeout", now))
        elif pending.kind in ("hello", "allocate"):
            del self.held[held.relay]
            self.events.append(AllocationFailed(held.relay, "timeout", now))
        else:
            self._drop(held, "released" if pending.kind == "release" else "refresh_failed", now)

    def _drop(self, held: Held, reason: str, now: float) -> None:
        del self.held[held.relay]
        self.events.append(AllocationExpired(held.path, reason, now))
