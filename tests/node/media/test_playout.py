"""Playout phased to packet arrival (issue 16): with both ends' 20 ms clocks in step, a frame
pulled on the capture tick waits ~19 ms; on the PlayoutClock it waits the buffer's target only.
Explicit `now` throughout."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.media.call import MediaCall
from kadtalk.node.media.codec import FRAME_BYTES, SILENCE
from kadtalk.node.media.jitter import FRAME, PLAY, JitterBuffer
from kadtalk.node.media.playout import GUARD, PlayoutClock
from kadtalk.transport.audiopump import AudioPump

TRANSIT = 0.0003  # loopback: the frame captured on the sender's tick arrives 0.3 ms later


def waits(aligned: bool, frames: int = 100) -> list[float]:
    """Seconds each frame waits in the buffer; frame k is sent on the sender's tick at k*20 ms
    and the receiver's own tick runs in step (the same phase), as two daemons' tickers do."""
    jb, clock = JitterBuffer(), PlayoutClock()
    arrivals = [k * FRAME + TRANSIT for k in range(frames)]
    waited: list[float] = []
    i = ticks = 0
    now = 0.0
    while len(waited) < frames - 5:
        arrival = arrivals[i] if i < frames else float("inf")
        if aligned:
            pull = clock.next_pull(jb, now)
            pull = float("inf") if pull is None else pull
        else:
            pull = ticks * FRAME
        if arrival <= pull:
            now = arrival
            jb.put(i, b"x", now)
            i += 1
            continue
        now = pull
        if aligned:
            clock.pulled(now)
        ticks += 1
        out = jb.pull(now)
        if out.kind == PLAY:
            waited.append(now - arrivals[out.seq])
    return waited


def test_frames_no_longer_wait_for_the_next_tick_when_the_clocks_run_in_step():
    on_tick, aligned = waits(False), waits(True)
    assert min(on_tick) > 0.019  # every frame waited for the receiver's next tick
    margin = JitterBuffer().settings.margin  # the target on a path without jitter
    assert max(aligned) < margin + GUARD + 0.001
    assert sum(aligned) / len(aligned) < 0.25 * sum(on_tick) / len(on_tick)


def test_no_pull_before_a_frame_is_held_then_the_first_at_its_due_time():
    jb, clock = JitterBuffer(), PlayoutClock()
    assert jb.due_time() is None and clock.next_pull(jb, 5.0) is None
    jb.put(0, b"x", 10.0)
    due = jb.due_time()
    assert due == 10.0 + jb.target_delay
    assert clock.next_pull(jb, 10.0) == due + GUARD
    assert clock.next_pull(jb, 11.0) == 11.0  # overdue (the driver was busy): at once
    clock.pulled(due + GUARD)
    assert jb.pull(due + GUARD).kind == PLAY
    assert clock.next_pull(jb, due + GUARD) == due + GUARD + FRAME  # then every 20 ms


def test_a_stalled_driver_catches_up_a_few_pulls_or_starts_a_new_grid():
    jb, clock = JitterBuffer(), PlayoutClock(max_late=5)
    jb.put(0, b"x", 0.0)
    clock.pulled(0.01)
    clock.pulled(0.07)  # 60 ms late: the missed pulls are still on the grid, due at once
    assert abs(clock.next_pull(jb, 0.07) - 0.05) < 1e-9 and clock.regrids == 0
    clock.pulled(0.5)  # far behind: a new grid from now, no burst of 20 pulls
    assert clock.regrids == 1 and abs(clock.next_pull(jb, 0.5) - 0.52) < 1e-9


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10, allow_nan=False), st.integers(0, 400)),
                max_size=60))
def test_pull_times_never_go_back_and_stay_a_frame_apart(arrivals):
    jb, clock = JitterBuffer(), PlayoutClock()
    for t, seq in sorted(arrivals):
        jb.put(seq, b"x", t)
    last = None
    now = 0.0
    for _ in range(40):
        at = clock.next_pull(jb, now)
        if at is None:
            assert not arrivals or jb.buffered == 0
            break
        assert at >= now or last is not None  # only a started clock names a past time
        now = max(now, at)
        if last is not None:
            assert abs(at - last - FRAME) < 1e-9 or clock.regrids
        clock.pulled(now)
        jb.pull(now)
        last = at


class Frames:
    def __init__(self):
        self.reads = 0

    def read_frame(self):
        self.reads += 1
        return SILENCE

    def close(self):
        pass


class Sink:
    def __init__(self):
        self.frames = []

    def write_frame(self, pcm):
        self.frames.append(pcm)
        return True

    def close(self):
        pass


def test_the_pump_writes_nothing_before_the_first_frame_and_reports_its_file_epochs():
    sink = Sink()
    pump = AudioPump(Frames(), sink)
    pump.attach(7)
    sender = MediaCall(7)
    for k in range(3):
        assert pump.capture(100.0 + k * FRAME + 0.001) is not None
    assert pump.next_play(100.05) is None and sink.frames == []
    pump.media.on_media(0, sender.send_frame(SILENCE, 0.0), 100.2)
    at = pump.next_play(100.2)
    assert abs(at - (100.2 + pump.media.receiver.buffer.target_delay + GUARD)) < 1e-9
    for k in range(4):
        pump.play(at + k * FRAME)
    assert len(sink.frames) == 4 and all(len(f) == FRAME_BYTES for f in sink.frames)
    stats = pump.stats()
    assert abs(stats["capture_epoch"] - 100.001) < 1e-9  # the first sample's time on the clock
    assert abs(stats["playback_epoch"] - at) < 1e-9
    assert stats["playout_pulls"] == 4 and stats["frames_played"] == 4


def test_pulls_caught_up_after_a_stall_play_their_own_frames_not_drop_them():
    """A driver held up for 70 ms makes its missed pulls at once; each stands for its own
    slot, so the frames that are here are played in order, none dropped to cut a delay that
    was only the driver's (pulled at the late time, the buffer dropped two of them)."""

    def run(call):
        for k in range(10):
            call.on_media(k, b"\x08x", 0.05 + k * FRAME)
        first = call.next_play(0.05)
        call.play_frame(first)
        for when in [first + 0.09] * 4 + [first + 0.1 + k * FRAME for k in range(4)]:
            call.play_frame(when)  # slots 1-4 pulled at once, 70 ms late; then on time
        return call.receiver.buffer

    jb = run(MediaCall())
    assert jb.dropped == 0 and jb.played == 9
    class AtNow(PlayoutClock):  # the call before: pulled at the late time
        def slot(self, now):
            return now

    late = MediaCall()
    late.playout = AtNow()
    assert run(late).dropped >= 1
