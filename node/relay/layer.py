"""The relay layer: both roles behind one type byte (0x08), with the surface of node/layer.py.

Requests (HELLO, ALLOCATE, REFRESH, PERMIT, KNOCK, HOLD) go to the server role, answers (CHALLENGE,
ALLOCATED, REFRESHED, PERMITTED, ERROR, KNOCKED, KNOCK_COOKIE) to the client role; DATA to the
server when it names one of its allocations, else to the client (a path of ours);
PATH_CHALLENGE / PATH_RESPONSE (a call's path validation, made with its session keys) to the
node's `path_checked` hook (relay/paths.py), a counted drop without one; those that travel in
DATA over a relay path reach the node with the rest of that path's payloads (`deliver`). A node serves only
when it may (`RelaySettings.serve`: `always`, `never`, or `auto` = once `set_public` has told
it its public address); a request to a node that does not serve is a counted drop, never
answered. The server role is made on the first request it serves, so a node that never relays
holds none of it.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Callable, Iterable

from . import addresses, wire
from .client import RelayClient
from .events import Knocked, RelayedData, RelayEvent, RelayPath
from .server import RelayServer
from .settings import DEFAULT_SETTINGS, RelaySettings

REQUESTS = frozenset({wire.HELLO, wire.ALLOCATE, wire.REFRESH, wire.PERMIT, wire.KNOCK,
                      wire.HOLD, wire.CLAIM})
ANSWERS = frozenset({wire.CHALLENGE, wire.ALLOCATED, wire.REFRESHED, wire.PERMITTED, wire.ERROR,
                     wire.KNOCKED, wire.KNOCK_COOKIE})
PATH_CHECKS = frozenset({wire.PATH_CHALLENGE, wire.PATH_RESPONSE})
# `stats` reasons that are dropped or refused datagrams (the others count what was done)
DROPS = frozenset({
    "malformed", "not_serving", "unusable_source", "bad_cookie", "rate_limited",
    "rate_limited_source", "relay_full", "quota", "bad_signature", "forbidden_peer",
    "forbidden_private", "forbidden_self", "unknown_allocation", "not_owner", "no_permission",
    "not_permitted", "over_allocation_rate", "over_relay_rate", "unsolicited", "duplicate_answer",
    "bad_knock_cookie", "unproven_peer", "rate_limited_echo", "stale_consent", "bad_path_check",
    "rate_limited_echo_source", "echo_sources_full", "no_consent", "short_knock",
    "hold_replaced", "hold_expired", "claim_nothing_held", "claim_wrong_token", "claim_short",
})

Deliver = Callable[[bytes, RelayPath, float], None]
OnKnock = Callable[[Knocked], None]
OnPathCheck = Callable[[bytes, Any, float], None]


class RelayLayer:
    __slots__ = ("identity", "settings", "_stats", "server", "client", "public", "_own",
                 "_outbox", "_events", "_deliver", "_random", "knocked", "path_checked",
                 "codec", "forward")

    def __init__(self, identity: Any, settings: RelaySettings | None = None,
                 deliver: Deliver | None = None, own: Callable[[], Iterable[Any]] | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom,
                 codec: addresses.Codec = addresses.IPV4):
        """`deliver(payload, path, now)` takes what comes through our paths (else RelayedData
        events); `own()` names the node's addresses besides `public` (never a peer); `codec`
        how addresses travel (the node's registry's wire form: relay/addresses.py)."""
        self.identity = identity
        self.settings = settings or DEFAULT_SETTINGS
        self._stats: collections.Counter[str] = collections.Counter()  # `stats`
        self.public: tuple[Any, ...] = ()  # our public addresses, once known (`set_public`)
        self._own = own
        self._outbox: list[tuple[bytes, Any]] = []
        self._events: collections.deque[RelayEvent] = collections.deque()
        self._deliver = deliver
        self._random = random_bytes
        self.codec = codec
        self.knocked: OnKnock | None = None  # takes Knocked at once (the node's call set-up)
        self.path_checked: OnPathCheck | None = None  # PATH_CHALLENGE / _RESPONSE (the node's)
        self.server: RelayServer | None = None
        # forward(data, addr, now, send) -> bool: RelayServer.forward once we serve, else
        # False. A driver's fast path for what a relay mostly does (transport/udp.py): a DATA
        # taken here (True: sent on through `send`, or a counted drop) makes no event, no
        # other datagram and no earlier timer, so the driver need not hand out, transmit or
        # re-arm after it; anything else (False) goes to `receive_datagram` as usual. The
        # server's bound method itself, not a wrapper: one call less per relayed datagram.
        self.forward: Callable[[bytes, Any, float, Callable[[bytes, Any], Any]], bool] = \
            _not_serving
        self.client = RelayClient(identity, self.settings, self._stats, self._send, self._events,
                                  random_bytes, codec)

    # -- sans-I/O surface -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        if not wire.well_formed(data):
            self._stats["malformed"] += 1
            return
        op = data[1]
        if op == wire.DATA:
            if self.forward(data, addr, now, self._send):
                return  # one of our allocations': relayed, or dropped by its rules
            path = self.client.on_data(data, addr, now)
            if path is None:
                return
            if self._deliver is not None:
                self._deliver(data[wire.HEADER:], path, now)
            else:
                self._events.append(RelayedData(path, data[wire.HEADER:], now))
        elif op in PATH_CHECKS:
            if self.path_checked is None:
                self._stats["bad_path_check"] += 1
            else:
                self.path_checked(data, addr, now)
        elif op in ANSWERS:
            self.client.on_answer(data, addr, now)
            events = self._events
            if op == wire.KNOCKED and self.knocked is not None and events \
                    and type(events[-1]) is Knocked:
                self.knocked(events.pop())
        else:
            server = self._server(now)
            if server is None:
                self._stats["not_serving"] += 1
            elif op == wire.HELLO:
                server.on_hello(data, addr, now)
            elif op == wire.ALLOCATE:
                server.on_allocate(data, addr, now)
            elif op == wire.REFRESH:
                server.on_refresh(data, addr, now)
            elif op == wire.KNOCK:
                server.on_knock(data, addr, now)
            elif op == wire.HOLD:
                server.on_hold(data, addr, now)
            elif op == wire.CLAIM:
                server.on_claim(data, addr, now)
            else:
                server.on_permit(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out = self._outbox
        if out:
            self._outbox = []
        return out

    def next_event(self) -> RelayEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        client = self.client
        deadline = client.get_timer() if client.held or client.knocking else None
        if self.server is not None:
            other = self.server.get_timer()
            if other is not None and (deadline is None or other < deadline):
                deadline = other
        return deadline

    def handle_timer(self, now: float) -> None:
        if self.server is not None:
            self.server.expire(now)
        self.client.handle_timer(now)

    @property
    def stats(self) -> collections.Counter[str]:
        """What both roles did and dropped, by reason (DROPS: the drops). The server keeps its
        forwarded counts as plain integers (a Counter's update cost a relayed datagram
        several µs, benchmarks/relay.py) and folds them in here (`RelayServer.tally`)."""
        if self.server is not None:
            self.server.tally()
        return self._stats

    def drop_counts(self) -> collections.Counter[str]:
        """The datagrams dropped or refused, by reason (`stats` also counts what was done)."""
        return collections.Counter({k: v for k, v in self.stats.items() if k in DROPS})

    # -- commands -------------------------------------------------------------------------------

    def set_public(self, addrs: Iterable[Any]) -> None:
        """Our public addresses (none: not reachable). With `serve="auto"` we relay only with
        one; they are never a peer's address either."""
        self.public = tuple(addrs)

    @property
    def serving(self) -> bool:
        serve = self.settings.serve
        return serve == "always" or (serve == "auto" and bool(self.public))

    def allocate(self, relay: Any, now: float, always: bool = False) -> None:
        """Ask `relay` for an allocation (AllocationGranted / AllocationFailed follow);
        `always`: whatever `RelayClient.wanted` says (a family search)."""
        self.client.allocate(relay, now, always)

    def permit(self, path: RelayPath, peer: Any, now: float) -> None:
        """Let `peer` (and only it) exchange DATA with us through our allocation `path`."""
        self.client.permit(path, peer, now)

    def release(self, path: RelayPath, now: float) -> None:
        self.client.release(path, now)

    def knock(self, path: RelayPath, now: float, token: bytes = b"") -> None:
        """Ask the owner of `path` (told us in a call's set-up) to permit us: KNOCK to the relay
        (twice, and again with back-off until DATA comes through `path`), echo its
        KNOCK_COOKIE (the relay's proof that we receive at our address), and accept DATA
        through `path` once the relay answered. `token`: a CLAIM carrying it goes with each
        bare KNOCK, for the DATA the owner held for us (wire.hold_token)."""
        self.client.knock(path, now, token)
        self._stats["knock_sent"] += 1

    def hold(self, path: RelayPath, token: bytes, payload: bytes) -> None:
        """Hand our relay `payload` (a call's KEY_REQ) for the knocker that will prove its
        address at our allocation `path` with `token` (wire.hold_token): it reaches the callee
        as soon as its knock's proof does (server.py, "Held first DATA")."""
        self.client.hold(path, token, payload)

    def connect(self, path: RelayPath, now: float) -> None:
        """Accept DATA through another node's allocation `path` (we are its permitted peer)."""
        self.client.connect(path, now)

    def path_check(self, op: int, nonce: bytes, key: bytes, addr: Any, now: float = 0.0) -> bool:
        """Send a PATH_CHALLENGE or PATH_RESPONSE (`op`) with `nonce`, tagged under `key` (the
        session's sending key), to `addr`: in DATA when `addr` is a RelayPath (a new relay path
        is validated like a direct address). False when it could not go."""
        datagram = wire.path_check(op, nonce, key)
        if type(addr) is RelayPath:
            return self.send(addr, datagram, now)
        self._outbox.append((datagram, addr))
        return True

    def nonce(self) -> bytes:
        return self._random(wire.PATH_NONCE_SIZE)

    def send(self, path: RelayPath, payload: bytes, now: float) -> bool:
        """Queue `payload` for the other end of `path`; False for an unknown path or a payload
        over wire.MAX_PAYLOAD."""
        datagram = self.client.wrap(path, payload, now)
        if datagram is None:
            return False
        self._outbox.append((datagram, path.relay))
        return True

    # -- internals ------------------------------------------------------------------------------

    def _send(self, data: bytes, addr: Any) -> None:
        self._outbox.append((data, addr))

    def _own_addresses(self) -> tuple[Any, ...]:
        more = tuple(self._own()) if self._own is not None else ()
        return self.public + more

    def _server(self, now: float) -> RelayServer | None:
        if not self.serving:
            return None
        if self.server is None:
            self.server = RelayServer(self.settings, self._stats, self._send, self._own_addresses,
                                      now, self._random, self.codec)
            self.forward = self.server.forward
        return self.server


def _not_serving(data: bytes, addr: Any, now: float, send: Callable[[bytes, Any], Any]) -> bool:
    return False  # no server role (yet): no allocation of ours to forward for
