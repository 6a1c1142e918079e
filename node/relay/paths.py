"""A node's relayed calls (issue 13 item 1): relays held for calls, the allocation a call offers
its callee, and the other paths a live call may move to.

The caller offers its relay allocation in the punch (PUNCH_REQ_RELAY through the callee's
rendezvous); the callee KNOCKs there while it punches; the relay tells the caller where it sees
the knocker (KNOCKED), the caller permits that address and sends its KEY_REQ through the relay
too (ICE's parallel checks: the direct and the relayed attempt race, docs/protocol.md §21).
A call moves to another path only when the session authenticates a datagram that came over it
(`SessionLayer.move`): a KEY_REQ's KEY_RES, or a MEDIA / SIGNAL packet under the call's keys.
While a call is relayed, the caller sends a copy of one of its packets a second over the direct
path its lookup found (for `CHECK_FOR` s): if the NATs let it through, the callee moves there,
and the caller follows on the callee's first direct packet (ICE's upgrade). The callee sends
nothing of the call to the caller's direct address before an authentic packet came from it:
that address came in a PUNCH_FWD_RELAY, which a forger can win the race with (`watch`).

An authentic packet does not prove that its source address receives: whoever is on the path
(the relay itself sees every DATA) may hold one back and send it from any address. So a call
moves to a direct address only once that address has answered (QUIC's path validation, RFC
9000 §8.2): an authentic packet from a new address is taken over the call's current path, and
a PATH_CHALLENGE (a random nonce, tagged under the session's sending key) goes to the address,
at most one each `PROBE_INTERVAL` and never more than `AMPLIFICATION` times the bytes that
came from it; the peer answers a challenge it can authenticate with a PATH_RESPONSE (the nonce,
tagged under its own sending key), and the next authentic packet from the validated address
moves the call. The relay path stays an alternate (`fallback`): when the direct path has been
silent `SILENCE` s, copies of the call's packets go over the relay again, and a packet that
comes over the relay once the direct path has been silent `FALLBACK_AFTER` s moves the call
back. A relayed call that hears nothing for `SILENCE` s while talking is offered, by its
caller, another relay the same way; with none, RelayLost says so and the session ends as
`peer_vanished`.

A relay path is validated the same way before a call moves to it (review 2, 2026-12-06: one
forged PUNCH_FWD_RELAY naming any address and one withheld packet sent from there moved the
callee, which then sent the call to an address that never answered): the offer is only noted
for the session (`relay_offers`, at most `PER_SESSION` each), the knocked path carries
nothing before its relay answered the knock with a KNOCK_COOKIE (relay/client.py), and the
PATH_CHALLENGE travels in DATA over the path and must come back over it. Only our own
allocation (its relay permits nobody but the address that proved itself) and the call's
fall-back skip this. A move from one relay to another keeps the old path as the fall-back too.
The tables a forged offer can reach are bounded without evicting what a call depends on:
`incoming` makes room only by dropping offers whose relay never answered (else the new offer
is refused), `relay_offers` holds only offers naming a live call's peer, and `alternates`
(where the fall-back lives) is filled only by our own checks, never by an offer.

Bookkeeping only: no datagram is made here (the relay layer, traversal and the session do).
"""

from __future__ import annotations

from typing import Any, Iterable

from . import wire
from .events import RelayPath

CHECK_INTERVAL = 1.0  # s between direct (or new relay) copies of a relayed call's packets
CHECK_FOR = 30.0  # s a path is checked after it became known
SILENCE = 3.0  # s without an authentic packet on a talking relayed call (reports come each 1 s)
RETRY_RELAY = 600.0  # s before a contact that did not relay for us is asked again
HOLD_INTERVAL = 2.0  # s between looks at whether we hold enough relays
ASK_SPARE = 4  # HELLOs beyond the relays wanted, at once (HELLO is stateless at a relay)
SERVED = 8  # relays that granted us an allocation, remembered (asked first next time)
KNOCK_AGAIN = 1.0  # s: the same offer again (from another rendezvous) draws no second knock,
# unless a call it carried has ended since (`heard`: the caller redials with the same allocation)
MAX_ENTRIES = 64  # bound on every table here
PER_SESSION = 8  # alternates (and relay offers: half) of one session; more are refused
UNANSWERED_FOR = 2.0  # s: an offered relay that sent no KNOCK_COOKIE by then may make room
MAX_CANDIDATES = 4  # direct addresses of a caller heard in the same offer (one per rendezvous)
PROBE_INTERVAL = 0.5  # s between PATH_CHALLENGEs to one address not validated yet
AMPLIFICATION = 3  # bytes sent to an address not validated, at most, per byte that came from it
PROBE_NONCES = 3  # challenges outstanding per address (the newest)
FALLBACK_AFTER = 1.0  # s the direct path is silent before a relayed packet moves the call back
REFLEXIVE_PER_SESSION = 2  # peer-reflexive addresses a call in key exchange tries at most
REFLEXIVE_COPIES = 3  # KEY_REQ copies to one of them, at most (one a PROBE_INTERVAL)


class Probe:
    """An address a call's authentic packets came from, being validated."""

    __slots__ = ("session_id", "received", "sent", "last", "nonces")

    def __init__(self, session_id: int):
        self.session_id = session_id
        self.received = self.sent = 0  # bytes from it (authentic), challenge bytes to it
        self.last = -PROBE_INTERVAL  # when we last challenged it
        self.nonces: list[bytes] = []


class CallPaths:
    __slots__ = ("offered", "incoming", "alternates", "checks", "rendezvous", "tried",
                 "recovering", "stats", "hold_at", "knocks", "probes", "challenges", "validated",
                 "answered", "fallback", "relay_offers", "reflexive", "served")

    def __init__(self) -> None:
        self.offered: dict[RelayPath, int] = {}  # our allocation -> the session it was offered for
        self.incoming: dict[RelayPath, tuple[int, list[Any], float, list[int]]] = {}  # knocked
        #   -> (caller ID, its direct addresses as the offers named them, when, our sessions
        #   the knocked path carried: `carried`)
        self.alternates: dict[Any, int] = {}  # another path -> the session that may move there
        self.checks: dict[int, dict[Any, list[float]]] = {}  # session -> path -> [next, until]
        self.rendezvous: dict[int, tuple[int, list[Any]]] = {}  # caller's session -> (peer, rv)
        self.tried: dict[Any, float] = {}  # relay candidate -> when it was asked
        self.recovering: dict[int, float] = {}  # session -> when its relay was found lost
        self.stats: dict[str, int] = {}
        self.hold_at = 0.0  # when to look at the relays we hold next
        self.knocks: dict[RelayPath, tuple[int, Any]] = {}  # allocation -> (session, knocker)
        self.probes: dict[Any, Probe] = {}  # direct address being validated -> its probe
        self.challenges: dict[bytes, Any] = {}  # nonce of a challenge we sent -> its address
        self.validated: dict[Any, int] = {}  # address that answered a challenge -> session
        self.answered: dict[bytes, None] = {}  # nonces of the peers' challenges we answered
        self.fallback: dict[int, Any] = {}  # session moved -> the path it came from
        self.relay_offers: dict[RelayPath, tuple[int, float]] = {}  # a new relay the peer of
        #   a live call offered (not authenticated: validated before any move) -> (session, when)
        self.served: dict[Any, None] = {}  # relays that granted us, latest last (`SERVED`)
        self.reflexive: dict[tuple[int, Any], list] = {}  # (session, a callee's PUNCH source
        #   we did not know) -> [KEY_REQ copies sent there, when the last went] (`reflexive_copy`)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def offer(self, paths: list[RelayPath], live: Any, session_id: int) -> RelayPath | None:
        """One of our granted allocations not offered for another live call (`live(id)`)."""
        for path in paths:
            owner = self.offered.get(path)
            if owner is None or owner == session_id or not live(owner):
                bounded(self.offered)
                self.offered[path] = session_id
                return path
        return None

    def heard(self, path: RelayPath, caller: int, addr: Any, now: float,
              answered: Any = lambda path: False, live: Any = lambda sid: True) -> bool:
        """An offer of `caller`'s allocation `path`, naming `addr` as its direct address: True
        when it is new (knock), False when it repeats one of the last `KNOCK_AGAIN` s (another
        rendezvous's copy: its address is kept as a candidate too, as either may be forged),
        or when the table is full of offers whose relay answered (`answered(path)`). A repeat
        is a new call, and knocks, once a call the path carried has ended (`live(id)` False
        for one of `carried`): a caller reuses its allocation when it redials, and the offer
        names no call (before: a redial within `KNOCK_AGAIN` drew no knock and failed). No
        forger can end our calls, so one call's copies still draw one knock a `KNOCK_AGAIN`."""
        known = self.incoming.get(path)
        if known is not None and known[0] == caller and now - known[2] < KNOCK_AGAIN \
                and all(live(sid) for sid in known[3]):
            if addr not in known[1] and len(known[1]) < MAX_CANDIDATES:
                known[1].append(addr)
            return False
        self.incoming.pop(path, None)
        if not make_room(self.incoming, lambda p, v: answered(p) or now - v[2] < UNANSWERED_FOR):
            self.count("offer_refused_full")
            return False
        self.incoming[path] = (caller, [addr], now, [])
        return True

    def carried(self, path: RelayPath, session_id: int) -> None:
        """Our session `session_id` came over the knocked `path` (its KEY_REQ): the call the
        offer was for (`heard`)."""
        known = self.incoming.get(path)
        if known is not None and session_id not in known[3] and len(known[3]) < PER_SESSION:
            known[3].append(session_id)

    def relay_offered(self, session_id: int, path: RelayPath, now: float,
                      answered: Any) -> None:
        """The peer of a live call offers a new relay (its own went silent, or a forger says
        so): the call may move there once the path is validated. Bounded per session; an
        offer whose relay never answered makes room, others are kept."""
        table = self.relay_offers
        if path in table:
            return
        mine = [p for p, (sid, _) in table.items() if sid == session_id]
        for p in mine if len(mine) >= PER_SESSION // 2 else ():
            if not answered(p) and now - table[p][1] >= UNANSWERED_FOR:
                del table[p]
                mine.remove(p)
                break
        if len(mine) >= PER_SESSION // 2 or not make_room(
                table, lambda p, v: answered(p) or now - v[1] < UNANSWERED_FOR):
            self.count("relay_offer_refused_full")
            return
        table[path] = (session_id, now)

    def session_of(self, path: Any) -> int | None:
        """The session that may move to `path`: an alternate, a fall-back or a relay offer."""
        sid = self.alternates.get(path)
        if sid is None:
            offer = self.relay_offers.get(path) if type(path) is RelayPath else None
            sid = offer[0] if offer is not None else None
        if sid is None and self.fallback:
            sid = next((k for k, p in self.fallback.items() if p == path), None)
        return sid

    def watch(self, session_id: int, path: Any) -> bool:
        """Let the session move to `path` on an authentic packet from it, sending nothing
        there before (an address nobody proved). Refused (False) when the session has
        `PER_SESSION` alternates already or the table is full: nothing is evicted."""
        if self.alternates.get(path) == session_id:
            return True
        if (len(self.alternates) >= MAX_ENTRIES * PER_SESSION
                or sum(sid == session_id for sid in self.alternates.values()) >= PER_SESSION):
            self.count("alternate_refused")
            return False
        self.alternates[path] = session_id
        return True

    def check(self, session_id: int, path: Any, now: float) -> None:
        """Send copies of the session's packets over `path` too, and let it move there."""
        self.watch(session_id, path)
        self.checks.setdefault(session_id, {})[path] = [now, now + CHECK_FOR]

    def due(self, session_id: int, now: float) -> list[Any]:
        """The paths a copy of the session's next packet goes to now."""
        checks = self.checks.get(session_id)
        if not checks:
            return []
        out = []
        for path, times in list(checks.items()):
            if now >= times[1]:
                del checks[path]
            elif now >= times[0]:
                times[0] = now + CHECK_INTERVAL
                out.append(path)
        if not checks:
            del self.checks[session_id]
        return out

    def moved(self, session_id: int, path: Any, old: Any = None) -> None:
        self.checks.get(session_id, {}).pop(path, None)
        self.recovering.pop(session_id, None)
        self.relay_offers.pop(path, None)
        relayed = type(path) is RelayPath
        self.count("moved_relay" if relayed else "moved_direct")
        if type(old) is RelayPath and old != path:  # the fall-back (FALLBACK_AFTER), kept in a
            self.fallback[session_id] = old  # table of its own: nothing else writes there
        elif relayed:
            self.fallback.pop(session_id, None)  # direct -> relay: the direct path is checked

    def reflexive_copy(self, session_id: int, addr: Any, now: float,
                       live: Any = lambda session_id: True) -> bool:
        """The callee of call `session_id` (in key exchange) PUNCHed us from `addr`, another
        port of the host we sent our KEY_REQ to (its symmetric NAT's flow towards us: a
        peer-reflexive candidate, RFC 8445 §7.3.1.3): whether a copy of the KEY_REQ may go
        there now. The PUNCH is not authenticated, so this is all `addr` ever gets unless a
        KEY_RES from it authenticates (the call then moves there, `watch`): at most
        `REFLEXIVE_PER_SESSION` addresses a call, `REFLEXIVE_COPIES` copies each, one a
        `PROBE_INTERVAL`. Entries go only with their call (`live(id)` False, or `forget`):
        when the table is full a new one is refused, never one of a live call evicted (its
        counts would start again)."""
        key = (session_id, addr)
        entry = self.reflexive.get(key)
        if entry is None:
            if (sum(sid == session_id for sid, _ in self.reflexive) >= REFLEXIVE_PER_SESSION
                    or not make_room(self.reflexive, lambda k, v: live(k[0]))):
                self.count("reflexive_refused")
                return False
            if not self.watch(session_id, addr):
                return False
            entry = self.reflexive[key] = [0, -PROBE_INTERVAL]
            self.count("reflexive_candidate")
        if entry[0] >= REFLEXIVE_COPIES or now - entry[1] < PROBE_INTERVAL:
            return False
        entry[0] += 1
        entry[1] = now
        return True

    # -- path validation (RFC 9000 §8.2) ---------------------------------------------------------

    def probe(self, session_id: int, addr: Any, size: int, now: float) -> bool:
        """`size` bytes of an authentic packet of the session came from `addr`, not validated:
        whether a PATH_CHALLENGE may go there now (`challenged` when it went)."""
        probe = self.probes.get(addr)
        if probe is None or probe.session_id != session_id:
            bounded(self.probes)
            probe = self.probes[addr] = Probe(session_id)
        probe.received += size
        return (now - probe.last >= PROBE_INTERVAL and probe.sent + wire.SIZES[
            wire.PATH_CHALLENGE] <= AMPLIFICATION * probe.received)

    def challenged(self, addr: Any, nonce: bytes, now: float) -> None:
        probe = self.probes[addr]
        probe.sent += wire.SIZES[wire.PATH_CHALLENGE]
        probe.last = now
        probe.nonces.append(nonce)
        if len(probe.nonces) > PROBE_NONCES:
            self.challenges.pop(probe.nonces.pop(0), None)
        bounded(self.challenges)
        self.challenges[nonce] = addr

    def challenge_of(self, nonce: bytes) -> tuple[int, Any] | None:
        """(session, address) of the challenge we sent with `nonce`, if it is still open."""
        addr = self.challenges.get(nonce)
        probe = self.probes.get(addr) if addr is not None else None
        return None if probe is None else (probe.session_id, addr)

    def validate(self, session_id: int, addr: Any) -> None:
        """`addr` answered our challenge: the session may move there."""
        probe = self.probes.pop(addr, None)
        for nonce in probe.nonces if probe is not None else ():
            self.challenges.pop(nonce, None)
        bounded(self.validated)
        self.validated[addr] = session_id
        self.count("path_validated")

    def hurry(self, session_id: int, path: Any, now: float) -> None:
        """The peer validates `path` (it challenged us from there): copy our next packet there
        at once, so that it moves without waiting out CHECK_INTERVAL."""
        times = self.checks.get(session_id, {}).get(path)
        if times is not None:
            times[0] = now

    def answer(self, nonce: bytes) -> bool:
        """Whether the peer's challenge `nonce` is new (each is answered once)."""
        if nonce in self.answered:
            return False
        bounded(self.answered)
        self.answered[nonce] = None
        return True

    def forget(self, live: Any) -> None:
        """Drop what belongs to sessions that are gone (`live(id)` False)."""
        for table in (self.checks, self.rendezvous, self.recovering, self.fallback):
            for sid in [sid for sid in table if not live(sid)]:
                del table[sid]
        for addr in [a for a, probe in self.probes.items() if not live(probe.session_id)]:
            for nonce in self.probes.pop(addr).nonces:
                self.challenges.pop(nonce, None)
        for path in [p for p in self.knocks if p not in self.offered]:
            del self.knocks[path]
        for table in (self.alternates, self.offered, self.validated):
            for key in [k for k, sid in table.items() if not live(sid)]:
                del table[key]
        for path in [p for p, (sid, _) in self.relay_offers.items() if not live(sid)]:
            del self.relay_offers[path]
        for key in [k for k in self.reflexive if not live(k[0])]:
            del self.reflexive[key]

    def served_by(self, relay: Any) -> None:
        """`relay` granted us an allocation: a relay, asked first when we need one again."""
        self.served.pop(relay, None)
        if len(self.served) >= SERVED:
            del self.served[next(iter(self.served))]
        self.served[relay] = None

    def candidates(self, contacts: Iterable[Any], held: int, wanted: int,
                   now: float) -> list[Any]:
        """Contacts to ask for an allocation so that `wanted` are held or asked for (a relay
        that served us is asked again at once, but once: it leaves `served` until it grants us
        again, so a relay that went away waits `RETRY_RELAY` like any other contact)."""
        out = []
        for addr in contacts:
            if held + len(out) >= wanted:
                break
            asked = self.tried.get(addr)
            if asked is None or now - asked >= RETRY_RELAY or addr in self.served:
                self.served.pop(addr, None)
                bounded(self.tried)
                self.tried[addr] = now
                out.append(addr)
        return out


def bounded(table: dict) -> None:
    """Make room for one more entry (the oldest goes)."""
    if len(table) >= MAX_ENTRIES:
        del table[next(iter(table))]


def make_room(table: dict, keep: Any) -> bool:
    """Make room for one more entry by dropping the oldest one not to `keep(key, value)`;
    False (the new one is refused) when every entry is kept."""
    if len(table) < MAX_ENTRIES:
        return True
    for key, value in table.items():
        if not keep(key, value):
            del table[key]
            return True
    return False
