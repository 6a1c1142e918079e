"""A hypothesis stateful test of calls between three session layers on a lossy network.

Rules place, answer, decline and hang up calls, send media, go busy, jump a sender's sequence
number anywhere in the u32 range, lose datagrams and let time pass; invariants check the call
state machine after every step: each live session sits in a state its role can be in and has a
timer, the pending-handshake count is right, ANSWER repeats stay bounded, MEDIA is delivered
only to a talking call (a callee's MEDIA answers a ringing caller first), and each session's
events follow the allowed transitions and end exactly once, with a reason.
"""

from __future__ import annotations

from random import Random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kadtalk.node.session import (
    CallEnded,
    CallProgress,
    CallState,
    EndReason,
    IncomingCall,
    MediaReceived,
    MissedCall,
    Role,
    SessionSettings,
)
from kadtalk.node.session.state import STATES_OF, TRANSITIONS, WAITING

from .conftest import Net, as_int

NAMES = ("a", "b", "c")
S = CallState


class Calls(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loss = Random(0)
        self.loss_rate = 0.0
        self.net = Net(SessionSettings(max_calls=2, no_answer_timeout=8.0),
                       drop=lambda s, d, data: self.loss.random() < self.loss_rate)
        for name in NAMES:
            self.net.add(name)
        self.now = 0.0
        self.seen: dict[str, int] = {n: 0 for n in NAMES}  # events checked so far
        self.last: dict[tuple[str, int], CallState] = {}  # announced sessions' last state
        self.ended: set[tuple[str, int]] = set()

    def layer(self, name):
        return self.net.layers[name]

    def pick(self, name, index, wanted=lambda s: True):
        sessions = sorted(sid for sid, s in self.layer(name).sessions.items() if wanted(s))
        return sessions[index % len(sessions)] if sessions else None

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def call(self, src, dst):
        if src != dst:
            self.layer(src).call(as_int(self.layer(dst).identity), self.now, addr=dst)

    @rule(name=st.sampled_from(NAMES), index=st.integers(0, 5),
          action=st.sampled_from(["answer", "decline", "hang_up"]))
    def command(self, name, index, action):
        if action == "hang_up":
            ringing = lambda s: True  # noqa: E731
        else:
            ringing = lambda s: s.role is Role.CALLEE and s.state is S.RINGING  # noqa: E731
        sid = self.pick(name, index, ringing)
        result = getattr(self.layer(name), action)(self.now, sid)
        assert result is (sid is not None)

    @rule(name=st.sampled_from(NAMES), index=st.integers(0, 5), size=st.integers(0, 200))
    def media(self, name, index, size):
        sid = self.pick(name, index)
        if sid is not None:
            seq = self.layer(name).send_media(sid, bytes(size), self.now)
            talking = self.layer(name).sessions.get(sid)
            assert (seq is None) or talking is None or talking.state is S.TALKING

    @rule(name=st.sampled_from(NAMES), index=st.integers(0, 5), seq=st.integers(0, 0xFFFFFFFF))
    def jump(self, name, index, seq):
        sid = self.pick(name, index, lambda s: s.tx is not None and s.state is S.TALKING)
        if sid is not None:
            self.layer(name).sessions[sid].tx.seq = max(seq, self.layer(name).sessions[sid].tx.seq)

    @rule(name=st.sampled_from(NAMES), busy=st.booleans())
    def busy(self, name, busy):
        self.layer(name).set_busy(busy)

    @rule(rate=st.sampled_from([0.0, 0.0, 0.2, 1.0]), seed=st.integers(0, 2**32))
    def lossy(self, rate, seed):
        self.loss_rate, self.loss = rate, Random(seed)

    @rule(dt=st.sampled_from([0.0, 0.1, 0.6, 2.0, 6.0, 20.0]))
    def wait(self, dt):
        self.net.run(self.now)
        self.now = self.net.advance(self.now, self.now + dt, step=0.5) if dt else self.now

    @invariant()
    def live_sessions_are_consistent(self):
        for name in NAMES:
            layer = self.layer(name)
            pending = 0
            for session in layer.sessions.values():
                assert session.state in STATES_OF[session.role] and session.state in WAITING
                assert layer._next_deadline(session) is not None, "a waiting session has no timer"
                pending += session.role is Role.CALLEE and session.state is S.KEY_EXCHANGE
                # ANSWER is repeated only by a talking callee, a bounded number of times
                if session.answer_at is not None:
                    assert session.role is Role.CALLEE and session.state is S.TALKING
                assert session.answer_sends <= layer.settings.answer_tries
                rtt = layer.rtt_of(session.id)
                assert rtt is None or rtt >= 0
            assert layer.pending_handshakes == pending <= layer.settings.max_pending
            if layer.sessions:
                assert layer.get_timer() is not None

    @invariant()
    def events_follow_the_transitions(self):
        self.net.run(self.now)
        for name in NAMES:
            events = self.net.events[name]
            for event in events[self.seen[name]:]:
                sid = getattr(event, "session_id", None)
                key = (name, sid)
                assert key not in self.ended, f"{type(event).__name__} after the end"
                if type(event) is CallProgress:
                    before = self.last.get(key, S.IDLE if event.role is Role.CALLER else
                                           S.KEY_EXCHANGE)
                    assert event.state in TRANSITIONS[before] or event.state is before
                    self.last[key] = event.state
                elif type(event) is IncomingCall:
                    self.last[key] = S.RINGING
                elif type(event) is CallEnded:
                    assert isinstance(event.reason, EndReason)
                    self.ended.add(key)
                    assert sid not in self.layer(name).sessions
                elif type(event) is MissedCall:
                    self.ended.add(key)
                elif type(event) is MediaReceived:  # only once talking (the callee's MEDIA
                    assert self.last.get(key) is S.TALKING  # answers: talking comes first)
            self.seen[name] = len(events)


Calls.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_calls_state_machine = Calls.TestCase
