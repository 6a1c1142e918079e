"""Two `kadtalk daemon` processes on 127.0.0.1 call each other through their control sockets:
real UDP, real alsa-lib devices (the `file` plugin: capture from a raw file, playback into a
WAV file), the command-line client, SIGTERM. The audio each side played is compared with what
the other side captured."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import wave

import numpy as np
import pytest

from kadtalk.node.media.codec import SAMPLE_RATE

from ..transport.audio_env import alsa_files  # noqa: F401  (fixture)
from .conftest import KADTALK, DaemonProcess, connect, is_call

pytestmark = pytest.mark.timeout(300)


def talk_spurts(freq: float, on: float, off: float, seconds: float) -> np.ndarray:
    """A tone switched on and off: a pattern whose timing can be found again after a call."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    gate = (t % (on + off)) < on
    return np.round(8000 * np.sin(2 * math.pi * freq * t) * gate).astype(np.int16)


def read_wav(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)


def envelope(x: np.ndarray) -> np.ndarray:
    """RMS per 10 ms."""
    n = len(x) // 480
    return np.sqrt((x[: n * 480].reshape(n, 480) ** 2).mean(axis=1))


def dominant(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


def compare(sent: np.ndarray, played: np.ndarray) -> tuple[float, float, float]:
    """(best envelope correlation over delays up to 1 s, the delay in s, dominant Hz played)."""
    start = np.argmax(np.abs(played) > 500)  # the first audible sample
    played = played[start:]
    assert len(played) > SAMPLE_RATE, "less than a second of audio was played"
    p = envelope(played[: 2 * SAMPLE_RATE])
    s = envelope(sent.astype(np.float64)[: 4 * SAMPLE_RATE])
    best, lag = -1.0, 0
    for k in range(0, 100):  # the played audio starts up to 1 s into the sent signal
        a = s[k : k + len(p)]
        if len(a) < len(p):
            break
        c = float(np.corrcoef(a, p)[0, 1])
        if c > best:
            best, lag = c, k
    return best, lag / 100, dominant(played[: SAMPLE_RATE])


def test_two_daemons_call_each_other_with_audio_both_ways(sock_root, alsa_files):  # noqa: F811
    env = alsa_files("alice", "bob")
    alice_says = talk_spurts(440, 0.3, 0.2, 30)
    bob_says = talk_spurts(1000, 0.15, 0.35, 30)
    env.feed("alice", alice_says)
    env.feed("bob", bob_says)

    played = {}  # the first call's playback (the second call writes the files again)

    async def scenario():
        a = DaemonProcess(sock_root, "alice", "--capture", "alice_in", "--playback", "alice_out")
        try:
            await a.ready()
            ca = await connect(a.socket)
            port = (await ca.request("status"))["network"]["port"]
            b = DaemonProcess(sock_root, "bob", "--capture", "bob_in", "--playback", "bob_out",
                              "--bootstrap", f"127.0.0.1:{port}")
            try:
                await b.ready()
                cb = await connect(b.socket)
                await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
                alice_id = (await ca.request("id"))["node_id"]
                bob_id = (await cb.request("id"))["node_id"]
                await ca.request("add_contact", name="Bob", peer=bob_id)
                await cb.request("add_contact", name="Alice", peer=alice_id)
                watcher = await connect(a.socket)  # a second client sees every event too

                # Bob calls Alice by name with the command-line client, which waits for the answer
                cli = await asyncio.create_subprocess_exec(
                    *KADTALK, "call", "alice", "--json", "--socket", str(b.socket),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                ring = await ca.wait_event(lambda e: e.get("event") == "incoming", timeout=60)
                assert (ring["peer"], ring["name"]) == (bob_id, "Bob")
                await watcher.wait_event(lambda e: e.get("event") == "incoming")
                # a client that connects and disconnects mid-call changes nothing
                passer = await connect(a.socket)
                await passer.close()
                await ca.request("answer")
                out, err = await asyncio.wait_for(cli.communicate(), 60)
                assert cli.returncode == 0, err
                states = [json.loads(line)["state"] for line in out.decode().splitlines()]
                assert states[-1] == "talking" and "ringing" in states

                # a few seconds of call quality on both sides (waited for, not counted in
                # quality events: a daemon starved of CPU falls behind)
                for c in (ca, cb):
                    q = await c.wait_event(lambda e: e.get("event") == "quality"
                                           and e.get("packets_rx", 0) > 100, timeout=60)
                    assert q["rx_kbps"] > 5 and q["loss"] == 0 and q["latency_ms"] > 0
                await watcher.close()  # another client leaving mid-call: still talking
                s = await ca.request("status")
                assert s["call"]["state"] == "talking" and s["call"]["name"] == "Bob"
                for _ in range(300):  # up to 60 s (starved daemons had decoded 26 and 57
                    # frames when this was read once; load average 11, session 12)
                    stats = await cb.request("stats")
                    if stats["call"]["media"]["decoded"] > 100:
                        break
                    await asyncio.sleep(0.2)
                assert stats["current"] and stats["call"]["stats"]["packets"] > 100
                assert stats["call"]["media"]["decoded"] > 100

                # Alice hangs up through the command-line client
                hang = await asyncio.create_subprocess_exec(
                    *KADTALK, "hangup", "--socket", str(a.socket),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                out, err = await asyncio.wait_for(hang.communicate(), 15)
                assert hang.returncode == 0, err
                ended_a = await ca.wait_event(is_call("ended"))
                ended_b = await cb.wait_event(is_call("ended"))
                assert ended_a["reason"] == "hung_up" and ended_b["reason"] == "remote_hung_up"
                assert ended_b["duration"] > 2
                # both devices are closed when a call ends: the WAV files are complete
                played["bob"] = read_wav(env.wav("bob"))
                played["alice"] = read_wav(env.wav("alice"))

                # a second call, ended by SIGTERM to the caller: it hangs up on its way out
                since, since_b = len(ca.seen), len(cb.seen)
                await cb.request("dial", to=alice_id)
                await ca.wait_event(lambda e: e.get("event") == "incoming", since=since)
                await ca.request("answer")
                await cb.wait_event(is_call("talking"), since=since_b)
                assert await b.terminate() == 0
                gone = await ca.wait_event(is_call("ended"), since=since)
                assert gone["reason"] == "remote_hung_up"
                saved = json.loads((b.config_dir / "peers.json").read_text())
                assert saved["peers"][0]["id"] == alice_id
                assert not b.socket.exists()
                await cb.close()
            finally:
                b.kill()
            await ca.close()
            assert await a.terminate() == 0
        finally:
            a.kill()

    asyncio.run(asyncio.wait_for(scenario(), 240))

    # Each side played what the other captured: same tone, same on/off timing. The envelope
    # correlation is 0.95+ on a quiet machine; two real-time daemons starved of CPU (CI beside
    # other jobs on two cores) conceal late frames and measured 0.58-0.86, so the bar is what
    # tells "the other side's talk spurts" from silence, noise or a stuck tone (~0). Quality
    # and delay are measured by benchmarks.media, not here. At load average 12 (nice 10, one
    # core free for ~10 jobs; session 12) one run in 6 measured 0.21: not lowered for that,
    # since the best of 100 lags of unrelated envelopes comes near 0.2.
    corr, delay, hz = compare(alice_says, played["bob"])
    assert abs(hz - 440) < 5 and corr > 0.5 and delay < 0.5, (corr, delay, hz)
    corr, delay, hz = compare(bob_says, played["alice"])
    assert abs(hz - 1000) < 5 and corr > 0.5 and delay < 0.5, (corr, delay, hz)


def test_corrupted_config_contacts_or_key_is_a_clear_error_naming_the_file(tmp_path):
    cases = {
        "config.toml": "[network\nport = ",
        "contacts.json": "{not json",
        "identity.pem": "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
    }
    for name, text in cases.items():
        directory = tmp_path / name.replace(".", "_")
        directory.mkdir()
        broken = directory / name
        broken.write_text(text)
        result = subprocess.run(
            [*KADTALK, "daemon", "--config-dir", str(directory), "--port", "0",
             "--socket", str(directory / "s.sock")],
            capture_output=True, text=True, timeout=30)
        assert result.returncode == 1, (name, result.stderr)
        assert str(broken) in result.stderr, (name, result.stderr)
        assert broken.read_text() == text  # never replaced
        assert not (directory / "s.sock").exists()
    # an unknown setting is named too
    (tmp_path / "bad.toml").write_text("[audio]\nmicrophone = 'x'\n")
    result = subprocess.run([*KADTALK, "daemon", "--config", str(tmp_path / "bad.toml"),
                             "--config-dir", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "microphone" in result.stderr
    assert str(tmp_path / "bad.toml") in result.stderr


def test_the_client_says_when_no_daemon_runs(tmp_path):
    result = subprocess.run([*KADTALK, "status", "--socket", str(tmp_path / "none.sock")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 3 and "no kadtalk daemon" in result.stderr


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Unix sockets and ALSA: Linux only", allow_module_level=True)
