"""A hypothesis stateful test of text messages between three session layers on a lossy network,
with calls placed, answered and hung up around them, and an owner that does what app/messages.py
does: it opens a session for messages when none carries them, and sends what came back unsent
again when the next session with that peer opens.

Invariants after every step: each message is in exactly one place (waiting in one of its
sender's sessions with the peer, delivered, or back with its owner); a receipt comes only for a
message the peer received; a session delivers a message at most once; outboxes stay bounded.
At the end, with the network healed, a new message to each peer brings every one home."""

from __future__ import annotations

from random import Random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kadtalk.node.session import (
    IncomingCall,
    MessageDelivered,
    MessageReceived,
    MessagesUnsent,
    Role,
    SessionOpened,
    SessionSettings,
)

from .conftest import Net, as_int

NAMES = ("a", "b", "c")


class Messaging(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loss = Random(0)
        self.loss_rate = 0.0
        self.net = Net(SessionSettings(max_calls=2, no_answer_timeout=8.0, chat_idle_timeout=15.0),
                       drop=lambda s, d, data: self.loss.random() < self.loss_rate)
        for name in NAMES:
            self.net.add(name)
        self.name_of = {as_int(self.net.layers[n].identity): n for n in NAMES}
        self.now = 0.0
        self.count = 0
        self.texts: dict[bytes, tuple[str, str]] = {}  # message id -> (sender, receiver)
        self.owner: dict[bytes, bool] = {}  # ids back with their owner (unsent), to resend
        self.delivered: set[bytes] = set()
        self.received: dict[tuple[str, int], set[bytes]] = {}  # (receiver, session) -> ids
        self.seen = {n: 0 for n in NAMES}

    def layer(self, name):
        return self.net.layers[name]

    def send(self, src: str, dst: str, message_id: bytes) -> None:
        """What Node.send_message does (a session for messages when none carries them)."""
        layer, peer = self.layer(src), as_int(self.layer(dst).identity)
        if layer.send_message(peer, message_id, 1, 0, "text", self.now) is None:
            layer.call(peer, self.now, addr=dst, chat=True)
            assert layer.send_message(peer, message_id, 1, 0, "text", self.now) is not None

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def message(self, src, dst):
        if src != dst:
            self.count += 1
            message_id = self.count.to_bytes(16, "big")
            self.texts[message_id] = (src, dst)
            self.send(src, dst, message_id)

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def call(self, src, dst):
        if src != dst:
            self.layer(src).call(as_int(self.layer(dst).identity), self.now, addr=dst)

    @rule(name=st.sampled_from(NAMES), index=st.integers(0, 5),
          action=st.sampled_from(["answer", "hang_up"]))
    def command(self, name, index, action):
        layer = self.layer(name)
        wanted = [sid for sid, s in sorted(layer.sessions.items())
                  if action == "hang_up" or (s.role is Role.CALLEE and s.announced)]
        if wanted:
            getattr(layer, action)(self.now, wanted[index % len(wanted)])

    @rule(rate=st.sampled_from([0.0, 0.0, 0.3, 1.0]), seed=st.integers(0, 2**32))
    def lossy(self, rate, seed):
        self.loss_rate, self.loss = rate, Random(seed)

    @rule(dt=st.sampled_from([0.0, 0.3, 1.0, 4.0, 12.0, 30.0]))
    def wait(self, dt):
        self.net.run(self.now)
        self.now = self.net.advance(self.now, self.now + dt, step=0.5) if dt else self.now

    def take_events(self) -> None:
        """Play the owner: resend what came back when a session with its peer opens."""
        self.net.run(self.now)
        again = True
        while again:
            again = False
            for name in NAMES:
                events = self.net.events[name]
                for event in events[self.seen[name]:]:
                    kind = type(event)
                    if kind is MessageReceived:
                        ids = self.received.setdefault((name, event.session_id), set())
                        assert event.message_id not in ids, "delivered twice by one session"
                        ids.add(event.message_id)
                        assert self.texts[event.message_id] == (self.name_of[event.peer_id], name)
                    elif kind is MessageDelivered:
                        assert event.message_id not in self.delivered
                        assert self.texts[event.message_id][0] == name
                        self.delivered.add(event.message_id)
                    elif kind is MessagesUnsent:
                        for message_id in event.message_ids:
                            assert message_id not in self.owner
                            self.owner[message_id] = True
                    elif kind is SessionOpened:
                        peer = self.name_of[event.peer_id]
                        for message_id in [m for m in self.owner if self.texts[m] == (name, peer)]:
                            del self.owner[message_id]
                            self.send(name, peer, message_id)
                            again = True
                    elif kind is IncomingCall:
                        pass
                self.seen[name] = len(events)
            self.net.run(self.now)

    @invariant()
    def each_message_is_in_one_place(self):
        self.take_events()
        waiting: dict[bytes, int] = {}
        for name in NAMES:
            layer = self.layer(name)
            for session in layer.sessions.values():
                if session.outbox is None:
                    continue
                assert len(session.outbox) <= 2 * layer.settings.max_unacked
                for message_id in session.outbox.ids():
                    assert self.texts[message_id] == (name, self.name_of[session.peer_int])
                    waiting[message_id] = waiting.get(message_id, 0) + 1
        for message_id in self.texts:
            places = (waiting.get(message_id, 0) + (message_id in self.delivered)
                      + (message_id in self.owner))
            assert places == 1, (message_id, waiting.get(message_id), self.owner, self.delivered)
        received = set().union(*self.received.values()) if self.received else set()
        assert self.delivered <= received

    def teardown(self):
        """Heal the network; a new message to each peer something waits for brings it home."""
        self.loss_rate = 0.0
        self.net.run(self.now)
        self.now = self.net.advance(self.now, self.now + 40.0, step=0.5)  # old sessions end
        self.take_events()
        pairs = {self.texts[m] for m in self.owner}
        for src, dst in sorted(pairs):
            self.message(src, dst)
        self.take_events()
        self.now = self.net.advance(self.now, self.now + 20.0, step=0.5)
        self.take_events()
        assert not self.owner and self.delivered == set(self.texts)


Messaging.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_messaging_state_machine = Messaging.TestCase
