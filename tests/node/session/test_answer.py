"""Issue 16, a tighter call path: the callee's MEDIA counts as the answer, ANSWER is sent again
until the caller shows it heard it, and the round-trip time follows receiver reports."""

from __future__ import annotations

import pytest

from kadtalk.node.session import (
    CallEnded,
    CallProgress,
    CallState,
    IncomingCall,
    MediaReceived,
    ReceiverReport,
    SessionSettings,
)
from kadtalk.node.session.wire import MEDIA, SIGNAL

from .conftest import Net, as_int

FRAME = 0.02


def ring(net: Net, now: float = 0.0) -> tuple[int, int]:
    """a calls b and b rings; (caller's, callee's) session ids."""
    a, b = net.layers["a"], net.layers["b"]
    sid = a.call(as_int(b.identity), now, addr="b")
    net.run(now)
    return sid, net.of("b", IncomingCall)[-1].session_id


def signals_from(net: Net, src: str) -> list[bytes]:
    return [p.payload for p in net.log if p.src == src and p.payload[0] == SIGNAL]


def test_callee_media_answers_when_every_answer_is_lost():
    """The issue's defect: the ANSWERs are lost, the callee talks at once; its first frames
    used to be dropped (`unexpected_media`) until a RING fetched a new ANSWER (~0.6 s)."""
    lose_signals_from_b = [False]
    net = Net(drop=lambda src, dst, data: lose_signals_from_b[0] and src == "b"
              and data[0] == SIGNAL)
    a, b = net.add("a"), net.add("b")
    sid, incoming = ring(net)
    lose_signals_from_b[0] = True  # every ANSWER (first and repeated) from here on
    assert b.answer(0.3, incoming)
    net.run(0.3)
    assert a.state_of(sid) is CallState.RINGING  # the ANSWER was lost
    sent = []
    now = 0.3
    for i in range(30):  # 0.6 s of the callee's audio, from the first tick after answering
        now = 0.3 + FRAME * (i + 1)
        sent.append(b.send_media(incoming, bytes([i]) * 60, now))
        net.run(now)
    got = net.of("a", MediaReceived)
    assert [e.payload[0] for e in got] == list(range(30))  # every frame, the first one too
    assert [e.seq for e in got] == sent
    assert a.stats["unexpected_media"] == 0 and a.stats["media_answered"] == 1
    talking = [e for e in net.of("a", CallProgress) if e.state is CallState.TALKING]
    assert len(talking) == 1 and talking[0].at == pytest.approx(0.32)  # at the first frame
    assert got[0].at == talking[0].at


def test_answer_is_resent_with_backoff_until_the_callers_echo():
    """The caller sends no audio (nothing to ack with): the first ANSWER is lost, the repeat
    0.2 s later arrives and the caller talks; it echoes the next repeat (0.4 s later: to the
    caller that one is a repeat), and the callee stops."""
    lost = {"n": 1}

    def drop(src, dst, data):
        if src == "b" and data[0] == SIGNAL and lost["n"]:
            lost["n"] -= 1
            return True
        return False

    net = Net(drop=drop)
    a, b = net.add("a"), net.add("b")
    net.run(0.0)
    sid, incoming = ring(net)
    lost["n"] = 1
    b.answer(0.5, incoming)
    net.run(0.5)
    assert a.state_of(sid) is CallState.RINGING
    net.advance(0.5, 0.75, step=0.01)
    assert a.state_of(sid) is CallState.TALKING  # the repeat at 0.7 s
    assert b.stats["answer_resent"] == 1
    net.advance(0.75, 1.15, step=0.01)
    assert b.stats["answer_resent"] == 2  # at 1.1 s: echoed at once
    assert b.sessions[incoming].answer_at is None  # acknowledged by the echo
    net.advance(1.15, 8.0, step=0.05)
    assert b.stats["answer_resent"] == 2  # never again
    assert not net.of("a", CallEnded) and not net.of("b", CallEnded)


def test_answer_resends_are_bounded_and_back_off():
    """A caller that went silent after our answer: ANSWER is sent answer_tries times in all,
    the interval doubling from answer_retry, then the call ends by peer_timeout."""
    settings = SessionSettings(answer_retry=0.2, answer_tries=5, peer_timeout=10.0)
    net = Net(settings)
    a, b = net.add("a"), net.add("b")
    sid, incoming = ring(net)
    net.drop = lambda src, dst, data: src == "a" or src == "b"  # nothing arrives anywhere
    b.answer(1.0, incoming)
    net.run(1.0)
    times, now, count = [], 1.0, 0
    while now < 12.0:
        now = net.advance(now, now + 0.01, step=0.01)
        if b.stats["answer_resent"] != count:
            count = b.stats["answer_resent"]
            times.append(round(now, 2))
    assert times == pytest.approx([1.2, 1.6, 2.4, 4.0], abs=0.011)  # 5 ANSWERs in all
    assert [e.reason.value for e in net.of("b", CallEnded)] == ["peer_vanished"]


def test_caller_media_acknowledges_the_answer():
    net = Net()
    a, b = net.add("a"), net.add("b")
    sid, incoming = ring(net)
    b.answer(0.1, incoming)
    net.run(0.1)
    assert a.state_of(sid) is CallState.TALKING
    a.send_media(sid, b"x" * 60, 0.12)
    net.run(0.12)
    assert b.sessions[incoming].answer_at is None
    net.advance(0.12, 3.0)
    assert b.stats["answer_resent"] == 0
    assert len(signals_from(net, "a")) >= 1 and a.stats["unexpected_signal"] == 0


def test_an_answer_echo_is_a_no_op_for_the_callee_state():
    """The echo (ANSWER from the caller) is what a callee before issue 16 took as a repeat of
    what already happened: wire compatible. It changes only the retransmission timer."""
    lost = {"n": 0}
    net = Net(drop=lambda s, d, data: s == "b" and data[0] == SIGNAL and lost["n"] > 0)
    a, b = net.add("a"), net.add("b")
    sid, incoming = ring(net)
    b.answer(0.0, incoming)
    net.advance(0.0, 0.3, step=0.01)  # b repeats at 0.2, a echoes
    assert b.stats["answer_resent"] == 1
    assert b.stats["unexpected_signal"] == 0 and a.stats["unexpected_signal"] == 0
    assert [e.state for e in net.of("b", CallProgress)] == [CallState.TALKING]


class DelayedNet(Net):
    """Net with a one-way delay the test changes mid-call."""

    def __init__(self, delay: float, settings=None):
        super().__init__(settings)
        self.delay = delay
        self.route = lambda packet, now: (self.log.append(packet) or ((self.delay, packet),))


def talk(net: DelayedNet, sid: int, incoming: int, start: float, end: float) -> float:
    """Both send a MEDIA packet every 20 ms from start to end; the clock at the end."""
    a, b = net.layers["a"], net.layers["b"]
    now = start
    while now < end - 1e-9:
        now = round(now + FRAME, 6)
        net.run_until(now)
        a.send_media(sid, b"a" * 60, now)
        net.service()
        net.run_until(now + 0.007)  # the two 20 ms clocks out of phase
        b.send_media(incoming, b"b" * 60, now + 0.007)
        net.service()
    return now


def test_rtt_follows_the_real_delay_through_the_call():
    """The issue's defect: the latency was measured once at set-up (here: 150 ms one way while
    the KEY exchange runs) and never refreshed. From receiver reports it follows the path."""
    net = DelayedNet(0.150)
    a, b = net.add("a"), net.add("b")
    sid = a.call(as_int(b.identity), 0.0, addr="b")
    net.service()
    net.run_until(2.0)
    incoming = net.of("b", IncomingCall)[-1].session_id
    b.answer(2.0, incoming)
    net.service()
    net.run_until(2.5)
    assert a.state_of(sid) is CallState.TALKING
    now = talk(net, sid, incoming, 2.5, 6.0)
    assert a.rtt_of(sid) == pytest.approx(0.300, abs=0.002)
    assert b.rtt_of(incoming) == pytest.approx(0.300, abs=0.002)
    net.delay = 0.0235  # the path gets faster (47 ms round trip)
    now = talk(net, sid, incoming, now, now + 5.0)
    assert a.rtt_of(sid) == pytest.approx(0.047, abs=0.002)
    assert b.rtt_of(incoming) == pytest.approx(0.047, abs=0.002)
    reports = net.of("a", ReceiverReport)
    assert reports[-1].rtt == a.rtt_of(sid)
    assert len(reports) >= 7


def test_no_rtt_sample_from_a_report_that_waited_for_its_timer():
    """No MEDIA either way: a report goes out by its grace timer, long after the peer's last
    packet, and would read as an RTT of up to a second. Those give no sample; the report sent
    on the arrival of that one does (20 ms, the real round trip)."""
    net = DelayedNet(0.01)
    a, b = net.add("a"), net.add("b")
    sid = a.call(as_int(b.identity), 0.0, addr="b")
    net.service()
    net.run_until(0.5)
    incoming = net.of("b", IncomingCall)[-1].session_id
    b.answer(0.5, incoming)
    net.service()
    net.run_until(8.0)
    reports = net.of("a", ReceiverReport) + net.of("b", ReceiverReport)
    assert len(reports) >= 10
    samples = [r.rtt for r in reports if r.rtt is not None]
    assert samples and all(x == pytest.approx(0.02, abs=1e-6) for x in samples)
    assert len(samples) < len(reports)  # the timer-sent ones gave none


def test_reports_go_out_on_the_first_packet_once_due():
    net = DelayedNet(0.0)
    a, b = net.add("a"), net.add("b")
    sid = a.call(as_int(b.identity), 0.0, addr="b")
    net.service()
    net.run_until(0.0)
    incoming = net.of("b", IncomingCall)[-1].session_id
    b.answer(0.0, incoming)
    net.service()
    net.run_until(0.0)
    talk(net, sid, incoming, 0.0, 1.5)
    # both reports were due at 1.0 s; each goes out with the next packet from its peer (both
    # send every 20 ms), not report_grace (0.1 s) late by the timer
    for name in ("a", "b"):
        first = net.of(name, ReceiverReport)[0]
        assert 1.0 <= first.at <= 1.0 + FRAME
        assert first.rtt == pytest.approx(0.0, abs=1e-9)  # zero delay, and no hold


def test_the_documented_answer_packets_open_with_the_vector_keys():
    """docs/protocol.md section 15a's hex: ANSWER at sequence 1 in each direction."""
    import json
    from pathlib import Path

    from kadtalk.node.session.stream import ReceiveStream
    from kadtalk.node.session.wire import ANSWER

    docs = Path(__file__).resolve().parents[3] / "docs"
    keys = json.loads((docs / "vectors" / "session.json").read_text())["directions"]
    text = (docs / "protocol.md").read_text()
    section = text[text.index("## 15a."):text.index("## 16.")]
    lines = [line.split("  ")[0] for line in section.splitlines() if line.startswith("05 ")]
    assert len(lines) == 2
    for line, direction in zip(lines, ("callee_to_caller", "caller_to_callee")):
        wire = bytes.fromhex(line.replace(" ", ""))
        rx = ReceiveStream(bytes.fromhex(keys[direction]["key"]),
                           bytes.fromhex(keys[direction]["salt"]))
        assert rx.open(wire, 0.0) == (SIGNAL, 1, bytes((ANSWER,)))


@pytest.mark.parametrize("seed", range(20))
def test_at_20_percent_loss_no_call_loses_the_callees_first_second(seed):
    """The issue's goal at the session layer: 20 calls with 20 % random loss both ways from the
    answer on (RING, ANSWER, MEDIA, echo alike). Every MEDIA packet from the callee that
    arrives is delivered, the first one included; none is dropped as `unexpected_media`."""
    import random

    rng = random.Random(seed)
    lossy, lost = [False], []

    def drop(src, dst, data):
        if lossy[0] and rng.random() < 0.2:
            lost.append(data)
            return True
        return False

    net = Net(drop=drop)
    a, b = net.add("a"), net.add("b")
    sid, incoming = ring(net)
    lossy[0] = True
    b.answer(0.5, incoming)
    net.run(0.5)
    for i in range(50):  # the callee's first second of audio
        now = 0.5 + FRAME * (i + 1)
        b.send_media(incoming, bytes([i]) * 60, now)
        net.run(now)
    sent = [p.payload for p in net.log if p.src == "b" and p.payload[0] == MEDIA]
    arrived = [data for data in sent if data not in lost]
    delivered = net.of("a", MediaReceived)
    assert len(sent) == 50 and len(delivered) == len(arrived)  # lost on the way, none after
    assert [e.seq for e in delivered] == [int.from_bytes(d[1:5], "big") for d in arrived]
    assert a.stats["unexpected_media"] == 0 and a.state_of(sid) is CallState.TALKING
