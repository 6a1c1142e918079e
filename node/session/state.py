"""The call state machine as data (h11 style): states, allowed transitions, end reasons.

    idle -> dialling (lookup) -> key exchange -> ringing -> talking -> ended

A caller with a known address skips dialling; a callee starts in key exchange (its KEY_RES is
sent, it waits for the caller's first authenticated packet). Every waiting state has a timeout
(see `SessionSettings`), and every way into `ended` carries an `EndReason`.
"""

from __future__ import annotations

from enum import Enum


class Role(Enum):
    CALLER = "caller"
    CALLEE = "callee"


class CallState(Enum):
    IDLE = "idle"
    DIALLING = "dialling"
    KEY_EXCHANGE = "key_exchange"
    RINGING = "ringing"
    TALKING = "talking"
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


S = CallState
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    S.IDLE: frozenset({S.DIALLING, S.KEY_EXCHANGE, S.ENDED}),
    S.DIALLING: frozenset({S.KEY_EXCHANGE, S.ENDED}),
    S.KEY_EXCHANGE: frozenset({S.RINGING, S.ENDED}),
    S.RINGING: frozenset({S.TALKING, S.ENDED}),
    S.TALKING: frozenset({S.ENDED}),
    S.ENDED: frozenset(),
}

# The SessionSettings field that bounds each waiting state.
TIMEOUTS: dict[CallState, str] = {
    S.DIALLING: "dial_timeout",
    S.KEY_EXCHANGE: "key_retries (caller) / handshake_timeout (callee)",
    S.RINGING: "no_answer_timeout, peer_timeout",
    S.TALKING: "peer_timeout",
}

ESTABLISHED = frozenset({S.RINGING, S.TALKING})


class InvalidTransition(RuntimeError):
    """A bug: the layer tried a transition the table does not allow (never caused by input)."""


def check_transition(current: CallState, new: CallState) -> CallState:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"{current.value} -> {new.value}")
    return new
