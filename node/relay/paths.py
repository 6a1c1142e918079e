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
that address came in a PUNCH_FWD_RELAY, which a forger can win the race with (`watch`). A
relayed call that hears nothing for `SILENCE` s while talking is offered, by its caller, another
relay the same way; with none, RelayLost says so and the session ends as `peer_vanished`.

Bookkeeping only: no datagram is made here (the relay layer, traversal and the session do).
"""

from __future__ import annotations

from typing import Any

from .events import RelayPath

CHECK_INTERVAL = 1.0  # s between direct (or new relay) copies of a relayed call's packets
CHECK_FOR = 30.0  # s a path is checked after it became known
SILENCE = 3.0  # s without an authentic packet on a talking relayed call (reports come each 1 s)
RETRY_RELAY = 600.0  # s before a contact that did not relay for us is asked again
HOLD_INTERVAL = 5.0  # s between looks at whether we hold enough relays
KNOCK_AGAIN = 1.0  # s: the same offer again (from another rendezvous) draws no second knock
MAX_ENTRIES = 64  # bound on every table here
MAX_CANDIDATES = 4  # direct addresses of a caller heard in the same offer (one per rendezvous)


class CallPaths:
    __slots__ = ("offered", "incoming", "alternates", "checks", "rendezvous", "tried",
                 "recovering", "stats", "hold_at", "knocks")

    def __init__(self) -> None:
        self.offered: dict[RelayPath, int] = {}  # our allocation -> the session it was offered for
        self.incoming: dict[RelayPath, tuple[int, list[Any], float]] = {}  # knocked ->
        #   (caller ID, its direct addresses as the offers named them, when)
        self.alternates: dict[Any, int] = {}  # another path -> the session that may move there
        self.checks: dict[int, dict[Any, list[float]]] = {}  # session -> path -> [next, until]
        self.rendezvous: dict[int, tuple[int, list[Any]]] = {}  # caller's session -> (peer, rv)
        self.tried: dict[Any, float] = {}  # relay candidate -> when it was asked
        self.recovering: dict[int, float] = {}  # session -> when its relay was found lost
        self.stats: dict[str, int] = {}
        self.hold_at = 0.0  # when to look at the relays we hold next
        self.knocks: dict[RelayPath, tuple[int, Any]] = {}  # allocation -> (session, knocker)

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

    def heard(self, path: RelayPath, caller: int, addr: Any, now: float) -> bool:
        """An offer of `caller`'s allocation `path`, naming `addr` as its direct address: True
        when it is new (knock), False when it repeats one of the last `KNOCK_AGAIN` s (another
        rendezvous's copy: its address is kept as a candidate too, as either may be forged)."""
        known = self.incoming.get(path)
        if known is not None and known[0] == caller and now - known[2] < KNOCK_AGAIN:
            if addr not in known[1] and len(known[1]) < MAX_CANDIDATES:
                known[1].append(addr)
            return False
        bounded(self.incoming)
        self.incoming[path] = (caller, [addr], now)
        return True

    def watch(self, session_id: int, path: Any) -> None:
        """Let the session move to `path` on an authentic packet from it, sending nothing
        there before (an address nobody proved)."""
        bounded(self.alternates)
        self.alternates[path] = session_id

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

    def moved(self, session_id: int, path: Any) -> None:
        self.checks.get(session_id, {}).pop(path, None)
        self.recovering.pop(session_id, None)
        if type(path) is RelayPath:
            self.count("moved_relay")
            return
        self.count("moved_direct")
        # direct now: the peer moved first (it sends direct only after an authentic packet
        # came over that path), so what still comes through the relay is late, not a reason
        # to move back
        for other in [p for p, sid in self.alternates.items()
                      if sid == session_id and type(p) is RelayPath]:
            del self.alternates[other]

    def forget(self, live: Any) -> None:
        """Drop what belongs to sessions that are gone (`live(id)` False)."""
        for table in (self.checks, self.rendezvous, self.recovering):
            for sid in [sid for sid in table if not live(sid)]:
                del table[sid]
        for path in [p for p in self.knocks if p not in self.offered]:
            del self.knocks[path]
        for table in (self.alternates, self.offered):
            for key in [k for k, sid in table.items() if not live(sid)]:
                del table[key]

    def candidates(self, contacts: list[Any], held: int, wanted: int, now: float) -> list[Any]:
        """Contacts to ask for an allocation so that `wanted` are held or asked for."""
        out = []
        for addr in contacts:
            if held + len(out) >= wanted:
                break
            asked = self.tried.get(addr)
            if asked is None or now - asked >= RETRY_RELAY:
                bounded(self.tried)
                self.tried[addr] = now
                out.append(addr)
        return out


def bounded(table: dict) -> None:
    """Make room for one more entry (the oldest goes)."""
    if len(table) >= MAX_ENTRIES:
        del table[next(iter(table))]
