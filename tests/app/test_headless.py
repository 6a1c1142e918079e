"""Headless calling (issue 16) and two call defects (issue 14 item 6) against daemons in this
process: the ring tone, auto-answer for contacts, the on_ring / on_call_end hooks, dialling
before the join, a busy refusal in the callee's log, and the RTT the quality events report."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import wave

import numpy as np
import pytest

from kadtalk.app.audio import AudioError
from kadtalk.app.ringer import FRAME, PATTERN, Ringer, generated_tone, load_ring_tone
from kadtalk.node.media.codec import FRAME_BYTES, SAMPLE_RATE

from .conftest import connect, is_call, start_daemon

DUMP_ENV = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
            "if k.startswith('KADTALK_')}, open(sys.argv[1], 'w'))")


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# -- the ring tone ------------------------------------------------------------------------------


def test_the_generated_ring_is_a_double_ring_of_400_and_450_hz():
    frames = generated_tone()
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert len(frames) * 0.02 == pytest.approx(sum(s for s, _ in PATTERN))
    pcm = np.frombuffer(b"".join(frames), "<i2").astype(float)
    on = pcm[: int(0.4 * SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(on))
    peaks = sorted(np.argsort(spectrum)[-2:] * SAMPLE_RATE / len(on))
    assert peaks == pytest.approx([400, 450], abs=3)
    assert not pcm[int(0.45 * SAMPLE_RATE): int(0.55 * SAMPLE_RATE)].any()  # the gap
    assert not pcm[int(1.05 * SAMPLE_RATE):].any()  # the long pause


def test_a_ring_tone_file_that_is_missing_or_not_audio_is_logged_and_the_tone_rings(
        tmp_path, caplog):
    junk = tmp_path / "ring.wav"
    junk.write_bytes(b"this is not a WAV file at all")
    with caplog.at_level(logging.WARNING, "kadtalk.app.ringer"):
        assert load_ring_tone(str(tmp_path / "missing.wav")) == generated_tone()
        assert load_ring_tone(str(junk)) == generated_tone()
    assert f"ring tone {tmp_path / 'missing.wav'}: no such file" in caplog.text
    assert f"ring tone {junk} is not a usable WAV file" in caplog.text
    assert load_ring_tone("none") is None

    good = tmp_path / "bell.wav"  # 8 kHz stereo: resampled, mixed down
    t = np.arange(8000) / 8000
    tone = np.round(5000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2")
    with wave.open(str(good), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.repeat(tone, 2).tobytes())
    frames = load_ring_tone(str(good))
    assert len(frames) == 50  # one second


class Sink:
    def __init__(self):
        self.frames, self.closed = [], False

    def write_frame(self, pcm: bytes) -> bool:
        self.frames.append(pcm)
        return True

    def close(self) -> None:
        self.closed = True


def test_the_ringer_plays_until_stopped_and_frees_its_device(caplog):
    sink = Sink()

    async def scenario():
        ringer = Ringer(generated_tone(), "speaker", lambda name: sink)
        loop = asyncio.get_running_loop()
        started = loop.time()
        ringer.start()
        while len(sink.frames) < 10:  # it plays on (0.2 s on a quiet machine)
            await asyncio.sleep(FRAME)
        ringer.stop()
        stopped, played = loop.time(), len(sink.frames)
        await asyncio.sleep(0.1)
        assert len(sink.frames) == played and sink.closed and not ringer.ringing
        # one frame every 20 ms, never faster: a loop held up skips ahead, it does not burst.
        # (No lower bound on the rate: "10 to 20 frames in 0.3 s" held only while nothing held
        # the loop up for 0.1 s.)
        assert played <= (stopped - started) / FRAME + 1.001

        def refuse(name):
            raise AudioError(f"cannot open playback device {name!r}: busy")

        silent = Ringer(generated_tone(), "speaker", refuse)
        silent.start()
        assert not silent.ringing

    with caplog.at_level(logging.WARNING, "kadtalk.app.ringer"):
        run(scenario())
    assert "cannot ring: cannot open playback device 'speaker': busy" in caplog.text
    assert sink.frames[0] == generated_tone()[0]


# -- daemons ------------------------------------------------------------------------------------


async def pair(sock_root, **b_settings):
    a = await start_daemon(sock_root, "a", capture="tone:440")
    b = await start_daemon(sock_root, "b", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"],
                           **b_settings)
    ca, cb = await connect(a), await connect(b)
    await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
    await a.driver.find_peer(b.driver.node.node_id)  # a learns where b is
    return a, b, ca, cb


def test_a_contact_is_answered_by_itself_and_the_hooks_run(sock_root, tmp_path):
    ring_env, end_env = tmp_path / "ring.json", tmp_path / "end.json"
    ring_file = tmp_path / "ring.wav"

    async def scenario():
        a, b, ca, cb = await pair(
            sock_root, auto_answer="contacts", ring_device=f"wav:{ring_file}",
            hooks={"ring": [sys.executable, "-c", DUMP_ENV, str(ring_env)],
                   "call_end": [sys.executable, "-c", DUMP_ENV, str(end_env)]})
        try:
            # a stranger rings (on the ring device) and must be answered by hand
            since_a, since_b = len(ca.seen), len(cb.seen)
            await ca.request("dial", to=b.node_id)
            await cb.wait_event(lambda e: e.get("event") == "incoming", since=since_b)
            assert b.calls.ringer.ringing
            await asyncio.sleep(0.2)
            await cb.request("answer")
            await ca.wait_event(is_call("talking"), since=since_a)
            assert not b.calls.ringer.ringing and b.calls.ringer.frames_played >= 5
            await ca.request("hangup")
            await cb.wait_event(is_call("ended"), since=since_b)
            for _ in range(100):
                if end_env.exists():
                    break
                await asyncio.sleep(0.05)
            end = json.loads(end_env.read_text())
            assert end["KADTALK_EVENT"] == "call_end" and end["KADTALK_PEER_ID"] == a.node_id
            assert end["KADTALK_REASON"] == "remote_hung_up" and end["KADTALK_ROLE"] == "callee"
            assert float(end["KADTALK_DURATION"]) >= 0
            ring = json.loads(ring_env.read_text())
            assert ring["KADTALK_EVENT"] == "ring" and ring["KADTALK_PEER_NAME"] == ""
            with wave.open(str(ring_file)) as w:
                assert w.getnframes() >= 5 * 960  # the ring tone was played

            # a contact is answered at once, without ringing
            await cb.request("add_contact", peer=a.node_id, name="Alice")
            ring_env.unlink()
            since_a, since_b = len(ca.seen), len(cb.seen)
            played = b.calls.ringer.frames_played
            await ca.request("dial", to=b.node_id)
            await ca.wait_event(is_call("talking"), since=since_a, timeout=15)
            await cb.wait_event(is_call("talking"), since=since_b)
            assert b.calls.ringer.frames_played == played
            for _ in range(100):
                if ring_env.exists():
                    break
                await asyncio.sleep(0.05)
            assert json.loads(ring_env.read_text())["KADTALK_PEER_NAME"] == "Alice"
            await cb.request("hangup")
            await ca.wait_event(is_call("ended"), since=since_a)
            await ca.close()
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    run(scenario())


def test_dialling_before_the_join_says_not_joined_yet(sock_root):
    async def scenario():
        lone = await start_daemon(sock_root, "lone")  # no bootstrap: its table stays empty
        # a bootstrap node that never answers: the join runs, then is retried
        late = await start_daemon(sock_root, "late", bootstrap=["127.0.0.1:9"])
        try:
            for daemon in (lone, late):
                client = await connect(daemon)
                r = await client.request("dial", check=False, to="ab" * 20)
                assert r["ok"] is False and r["error"] == "not_joined", r
                assert r["message"].startswith("not joined yet")
                assert (await client.request("status"))["call"] is None
                await client.close()
        finally:
            await late.stop()
            await lone.stop()

    run(scenario())


def test_a_call_refused_as_busy_is_in_the_callees_log(sock_root, caplog):
    async def scenario():
        a, b, ca, cb = await pair(sock_root)
        c = await start_daemon(sock_root, "c", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            cc = await connect(c)
            await cc.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            since_a, since_b = len(ca.seen), len(cb.seen)
            await cb.request("dial", to=a.node_id)
            await ca.wait_event(lambda e: e.get("event") == "incoming", since=since_a)
            await ca.request("answer")
            await cb.wait_event(is_call("talking"), since=since_b)
            since_c = len(cc.seen)
            await cc.request("dial", to=a.node_id)
            e = await cc.wait_event(is_call("ended"), since=since_c, timeout=15)
            assert e["reason"] == "busy"
            await ca.wait_event(lambda e: e.get("event") == "missed", since=since_a)
            for client in (ca, cb, cc):
                await client.close()
        finally:
            for d in (c, b, a):
                await d.stop()

    with caplog.at_level(logging.INFO, "kadtalk.app.calls"):
        run(scenario())
    refused = [r.getMessage() for r in caplog.records if "refused a call" in r.getMessage()]
    assert refused and "busy" in refused[0]


def test_the_reported_rtt_follows_the_session_layers_measurement(sock_root):
    """The quality event and `stats` read the RTT the session layer refreshes from receiver
    reports (tests/node/session/test_answer.py measures that), not the set-up estimate."""

    async def scenario():
        a, b, ca, cb = await pair(sock_root)
        try:
            since_a, since_b = len(ca.seen), len(cb.seen)
            await ca.request("dial", to=b.node_id)
            await cb.wait_event(lambda e: e.get("event") == "incoming", since=since_b)
            await cb.request("answer")
            await ca.wait_event(is_call("talking"), since=since_a)
            session = a.driver.node.session
            sid = a.calls.call.session_id
            for _ in range(60):  # the first reports come a second into the call
                if session.rtt_of(sid) is not None:
                    break
                await asyncio.sleep(0.1)
            measured = session.rtt_of(sid)
            # loopback: a few ms on a quiet machine, 87 ms under arm64 emulation
            # (docs/raspberry-pi.md); the bars below are far from both, and from the estimate
            assert measured is not None and measured < 1.0
            a.calls.call.rtt = 10.0  # a set-up estimate a lost KEY_REQ had inflated
            q = await ca.wait_event(lambda e: e.get("event") == "quality", since=len(ca.seen))
            # the measurement, not the estimate (10,000 ms; latency above 5,000 ms from it)
            assert q["rtt_ms"] < 1000 and q["latency_ms"] < 3000
            stats = await ca.request("stats")
            assert stats["call"]["rtt_ms"] < 1000
            await ca.request("hangup")
            await ca.close()
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    run(scenario())




def test_a_daemon_with_a_broken_ring_tone_and_hook_says_so_and_runs(sock_root):
    """`kadtalk daemon` as a process: a ring tone that is not audio and a hook that does not
    exist are each one clear log line at start; the daemon still gets ready and answers."""
    from .conftest import DaemonProcess

    config_dir = sock_root / "pi"
    config_dir.mkdir()
    junk = sock_root / "bell.wav"
    junk.write_text("not audio")
    (config_dir / "config.toml").write_text(
        f'[calls]\nring_tone = "{junk}"\nauto_answer = "contacts"\n'
        f'[hooks]\non_ring = ["{sock_root / "no-such-led"}", "on"]\n')

    async def scenario():
        d = DaemonProcess(sock_root, "pi", "--capture", "none", "--playback", "none")
        try:
            await d.ready()
            client = await connect(d.socket)
            assert (await client.request("status"))["node_id"]
            await client.close()
            assert await d.terminate() == 0
        finally:
            d.kill()
        log = d.log()
        assert f"ring tone {junk} is not a usable WAV file" in log
        assert f"hook on_ring: {sock_root / 'no-such-led'} is not an executable program" in log
        assert "answered by themselves" in log

    run(scenario())
