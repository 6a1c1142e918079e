"""The call state machine as data (h11 style): states, allowed transitions, end reasons.

    idle -> dialling (lookup) -> key exchange -> ringing -> talking -> ended
                                           `-> open (messages only, no call) -> ended

A caller with a known address skips dialling; a callee starts in key exchange (its KEY_RES is
sent, it waits for the caller's first authenticated packet). Every waiting state has a timeout:
`TIMEOUTS` maps (state, role) to the `SessionSettings` field that bounds it and the end reason,
and the layer's timer reads nothing else. Every way into `ended` carries an `EndReason`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .wire import HANGUP_NO_ANSWER, HANGUP_NORMAL


class Role(Enum):
    CALLER = "caller"
    CALLEE = "callee"


class CallState(Enum):
    IDLE = "idle"
    DIALLING = "dialling"
    KEY_EXCHANGE = "key_exchange"
    RINGING = "ringing"
    TALKING = "talking"
    OPEN = "open"  # a session that carries messages and no call (messages.py)
    ENDED = "ended"


class EndReason(Enum):
    HUNG_UP = "hung_up"  # we hung up (or cancelled before an answer)
    REMOTE_HUNG_UP = "remote_hung_up"  # the peer hung up (or the caller cancelled)
    BUSY = "busy"  # the callee answered the ring with BUSY
    DECLINED = "declined"  # the callee declined
    UNREACHABLE = "unreachable"  # lookup failed, or no KEY_RES after every retry
    NO_ANSWER = "no_answer"  # ringing timed out
    PEER_VANISHED = "peer_vanished"  # nothing authentic from the peer for peer_timeout
    AUTH_FAILURE = "auth_failure"  # every KEY_RES from the peer's address failed authentication
    EXHAUSTED = "exhausted"  # the 32-bit sequence space is used up: call again to rekey
    GLARE = "glare"  # we called each other at once; the peer's call (answered at once) replaced
    #                  ours, because its ID is the lower one
    IDLE = "idle"  # a session open for messages carried none for chat_idle_timeout


S = CallState
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    S.IDLE: frozenset({S.DIALLING, S.KEY_EXCHANGE, S.ENDED}),
    S.DIALLING: frozenset({S.KEY_EXCHANGE, S.ENDED}),
    S.KEY_EXCHANGE: frozenset({S.RINGING, S.OPEN, S.ENDED}),
    S.RINGING: frozenset({S.TALKING, S.ENDED}),
    S.TALKING: frozenset({S.ENDED}),
    # a callee's session that a TEXT opened rings when the call's RING (lost, or late) comes
    S.OPEN: frozenset({S.RINGING, S.ENDED}),
    S.ENDED: frozenset(),
}



@dataclass(frozen=True, slots=True)
class Timeout:
    """A call in its state ends `setting` seconds (a `SessionSettings` field) after `since`:
    "entered" (the state was entered; a callee's duplicate KEY_REQ re-enters key exchange, a new
    message sent or received re-enters open) or
    "last_recv" (the last authentic packet from the peer)."""

    setting: str
    reason: EndReason
    since: str = "entered"
    hangup: int | None = None  # HANGUP reason code sent to the peer first (None: none sent)
    if_auth_failed: EndReason | None = None  # the reason instead, after failed KEY_RES (advisory)
    counted: str | None = None  # a `stats` counter (for ends that are never announced)


_VANISHED = Timeout("peer_timeout", EndReason.PEER_VANISHED, since="last_recv")
_NO_ANSWER = Timeout("no_answer_timeout", EndReason.NO_ANSWER, hangup=HANGUP_NO_ANSWER)
_IDLE = Timeout("chat_idle_timeout", EndReason.IDLE, hangup=HANGUP_NORMAL)

# (state, role) -> its timeouts, checked in this order. A caller's key exchange lasts
# key_retry × (2^key_tries − 1) seconds: the KEY_REQ retransmissions, then give up.
TIMEOUTS: dict[tuple[CallState, Role], tuple[Timeout, ...]] = {
    (S.DIALLING, Role.CALLER): (Timeout("dial_timeout", EndReason.UNREACHABLE),),
    (S.KEY_EXCHANGE, Role.CALLER): (
        Timeout("key_exchange_timeout", EndReason.UNREACHABLE,
                if_auth_failed=EndReason.AUTH_FAILURE),
    ),
    (S.KEY_EXCHANGE, Role.CALLEE): (
        Timeout("handshake_timeout", EndReason.UNREACHABLE, counted="handshake_timeout"),
    ),
    (S.RINGING, Role.CALLER): (_NO_ANSWER, _VANISHED),
    (S.RINGING, Role.CALLEE): (_NO_ANSWER, _VANISHED),
    (S.TALKING, Role.CALLER): (_VANISHED,),
    (S.TALKING, Role.CALLEE): (_VANISHED,),
    (S.OPEN, Role.CALLER): (_IDLE, _VANISHED),
    (S.OPEN, Role.CALLEE): (_IDLE, _VANISHED),
}

# where each role can be (a callee never dials); every one but ended waits for something
STATES_OF: dict[Role, frozenset[CallState]] = {
    Role.CALLER: frozenset({S.IDLE, S.DIALLING, S.KEY_EXCHANGE, S.RINGING, S.TALKING, S.OPEN,
                            S.ENDED}),
    Role.CALLEE: frozenset({S.IDLE, S.KEY_EXCHANGE, S.RINGING, S.TALKING, S.OPEN, S.ENDED}),
}
WAITING = frozenset({S.DIALLING, S.KEY_EXCHANGE, S.RINGING, S.TALKING, S.OPEN})  # IDLE: momentary

ESTABLISHED = frozenset({S.RINGING, S.TALKING})  # calls (max_calls counts them)
CARRIES_MESSAGES = ESTABLISHED | {S.OPEN}  # keys both ways, the peer proven: messages go now


class InvalidTransition(RuntimeError):
    """A bug: the layer tried a transition the table does not allow (never caused by input)."""


def check_transition(current: CallState, new: CallState) -> CallState:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"{current.value} -> {new.value}")
    return new
