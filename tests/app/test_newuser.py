"""Defects a new user met (issue 14 item 6) in the daemon: one daemon per config directory,
audio devices checked at start, a wav: recording kept until a call plays, and the command-line
client's answers (contacts, block list, accept mode, status, stats). Real processes where the
defect was in how the command behaves."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import wave

import numpy as np

from kadtalk.transport.audiofile import save_wav

from .conftest import KADTALK, DaemonProcess, connect, is_call, start_daemon


def run(coro, timeout: float = 240):
    # a scenario of a dozen `kadtalk` commands: each took 2.6 s at load average 11 (session
    # 12), where test_block_list_... ran out of 60 s and test_volume_... took 59.5 s
    return asyncio.run(asyncio.wait_for(coro, timeout))


def daemon(root, name, *args, timeout=30) -> subprocess.CompletedProcess:
    """`kadtalk daemon` expected to stop by itself (it refuses to start)."""
    return subprocess.run(
        [*KADTALK, "daemon", "--config-dir", str(root / name), "--host", "127.0.0.1", "--port",
         "0", "--socket", str(root / f"{name}-{len(args)}.sock"), *args],
        capture_output=True, text=True, timeout=timeout)


# -- one daemon per config directory ------------------------------------------------------------

def test_a_second_daemon_on_the_same_config_dir_is_refused_naming_the_first_pid(sock_root):
    async def scenario():
        first = DaemonProcess(sock_root, "a", "--capture", "none", "--playback", "none")
        try:
            await first.ready()
            # its own socket and port: only the config directory is shared
            second = daemon(sock_root, "a", "--capture", "none", "--playback", "none")
            assert second.returncode == 1, second.stderr
            assert (f"another kadtalk daemon (pid {first.proc.pid}) uses the config directory "
                    f"{sock_root / 'a'}") in second.stderr
            assert "--config-dir" in second.stderr and "Traceback" not in second.stderr
            # the lock is told first, even when this one's audio device is wrong too (a
            # machine without a sound card, with the default devices)
            third = daemon(sock_root, "a", "--capture", "mic", "--playback", "none")
            assert third.returncode == 1 and "uses the config directory" in third.stderr
            assert "capture" not in third.stderr, third.stderr
            assert (await (await connect(first.socket)).request("status"))["ok"]
            first.proc.kill()  # SIGKILL: the kernel releases the lock, nothing stale remains
            first.proc.wait(10)
            again = DaemonProcess(sock_root, "a", "--capture", "none", "--playback", "none")
            try:
                await again.ready()
                assert (sock_root / "a" / "daemon.lock").read_text() == f"{again.proc.pid}\n"
            finally:
                assert await again.terminate() == 0
        finally:
            first.kill()

    run(scenario())


def test_the_lock_is_released_when_a_daemon_stops_or_fails_to_start(sock_root):
    async def scenario():
        from kadtalk.app.daemon import DaemonError

        a = await start_daemon(sock_root, "a")
        try:
            try:
                await start_daemon(sock_root, "a", socket=str(sock_root / "other.sock"))
            except DaemonError as e:
                assert "another kadtalk daemon" in str(e) and "uses the config directory" in str(e)
            else:
                raise AssertionError("two daemons share a config directory")
        finally:
            await a.stop()
        b = await start_daemon(sock_root, "a")  # the same directory, free again
        await b.stop()

    run(scenario())


# -- audio devices checked at start ---------------------------------------------------------------

def test_unusable_audio_devices_stop_the_daemon_at_start_with_the_fix(sock_root):
    cases = {
        ("--capture", "mic", "--playback", "none"): ["'mic'", "`arecord -L`", "--capture"],
        ("--capture", "tone:abc", "--playback", "none"): ["tone:HZ", "20 to 20000", "--capture"],
        ("--capture", "none", "--playback", f"wav:{sock_root}/missing/out.wav"):
            [f"the folder {sock_root}/missing does not exist", "--playback"],
        ("--capture", f"wav:{sock_root}/nothere.wav", "--playback", "none"):
            ["no such file", "--capture"],
        ("--capture", "none", "--playback", "mic"): ["'mic'", "`aplay -L`", "--playback"],
    }
    for args, wanted in cases.items():
        result = daemon(sock_root, "a", *args)
        assert result.returncode == 1, (args, result.stderr)
        assert "ready:" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        for text in wanted:
            assert text in last, (args, last)
        if "--capture" in wanted:
            assert "aplay" not in last  # capture devices are listed by arecord
    assert not (sock_root / "missing").exists()


# -- a wav: recording is not emptied by a call that never plays ----------------------------------

def test_a_call_that_never_talks_leaves_the_last_recording_alone(sock_root):
    out = sock_root / "rec" / "hears.wav"
    out.parent.mkdir()
    save_wav(out, np.full(4800, 1000, "<i2"))  # the recording of an earlier call
    before = out.read_bytes()

    async def scenario():
        b = await start_daemon(sock_root, "b")
        a = await start_daemon(sock_root, "a", capture="tone:440", playback=f"wav:{out}",
                               recordings_dir=str(out.parent),
                               bootstrap=[f"127.0.0.1:{b.driver.address[1]}"])
        try:
            c = await connect(a)
            await c.wait_event(lambda e: e.get("event") == "network" and e["joined"])
            r = await c.request("dial", to="0123456789" * 4)  # nobody: it ends unreachable
            e = await c.wait_event(is_call("ended"), timeout=20)
            assert e["session"] == r["session"] and e["reason"] == "unreachable"
            assert out.read_bytes() == before
            # checking the devices (set_audio with no call) does not empty it either
            await c.request("set_audio", playback=f"wav:{out}")
            assert out.read_bytes() == before
            await c.close()
        finally:
            await a.stop()
            await b.stop()
        assert out.read_bytes() == before

    run(scenario())


def test_a_call_that_talks_records_into_the_wav_file(sock_root):
    out = sock_root / "a-hears.wav"
    save_wav(out, np.full(4800, 1000, "<i2"))

    async def scenario():
        a = await start_daemon(sock_root, "a", playback=f"wav:{out}")
        b = await start_daemon(sock_root, "b", capture="tone:660",
                               bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            ca, cb = await connect(a), await connect(b)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            await cb.request("dial", to=a.node_id)
            await ca.wait_event(lambda e: e.get("event") == "incoming", timeout=15)
            await ca.request("answer")
            await ca.wait_event(lambda e: e.get("event") == "quality" and e["packets_rx"] > 25,
                                timeout=15)
            await ca.request("hangup")
            await ca.wait_event(is_call("ended"))
            await ca.close()
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    run(scenario())
    with wave.open(str(out)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert len(samples) >= 25 * 960 and not np.all(samples == 1000)  # a new recording
    assert np.abs(samples).max() > 1000  # the tone came through


# -- the command-line client's answers ------------------------------------------------------------

async def cli(socket, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *KADTALK, *args, "--socket", str(socket), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


def test_contacts_add_refuses_an_id_another_contact_has(sock_root):
    alice, bob = "a1" * 20, "b0" * 20

    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            assert (await cli(d.socket_path, "contacts", "add", "alice", alice))[0] == 0
            code, out, err = await cli(d.socket_path, "contacts", "add", "bob", alice.upper())
            assert code == 1 and out == ""
            assert err.strip() == (f"kadtalk: {alice} is already your contact 'alice'; "
                                   "`kadtalk contacts rename alice bob` renames it (or add "
                                   "--replace)")
            assert d.callers.contacts.list() == [{"id": alice, "name": "alice"}]
            # the same name again changes nothing; another ID is another contact
            assert (await cli(d.socket_path, "contacts", "add", "ALICE", alice))[0] == 0
            assert (await cli(d.socket_path, "contacts", "add", bob, "bob"))[0] == 0
            # --replace renames on purpose
            code, out, _ = await cli(d.socket_path, "contacts", "add", "carol", alice,
                                     "--replace")
            assert code == 0 and out == f"added carol ({alice})\n"
            assert sorted(c["name"] for c in d.callers.contacts.list()) == ["bob", "carol"]
        finally:
            await d.stop()

    run(scenario())


def test_block_list_and_accept_mode_can_be_shown(sock_root):
    alice = "a1" * 20

    async def scenario():
        d = await start_daemon(sock_root, "a")
        s = d.socket_path
        try:
            await cli(s, "contacts", "add", "alice", alice)
            assert await cli(s, "block") == (0, "nobody is blocked\n", "")
            assert await cli(s, "block", "alice") == (0, "blocked alice; blocked now: 1 node\n", "")
            assert await cli(s, "block") == (0, f"{alice}  alice\n", "")
            assert (await cli(s, "block", "--json"))[1] == f'{{"blocked": ["{alice}"]}}\n'
            assert await cli(s, "accept") == (0, "calls accepted from anyone\n", "")
            assert (await cli(s, "accept", "contacts"))[0] == 0
            assert await cli(s, "accept") == (0, "calls accepted from contacts only\n", "")
            status = (await cli(s, "status"))[1]
            assert "calls    accepted from contacts only, 1 node blocked\n" in status
            assert await cli(s, "unblock", "alice") == (
                0, "unblocked alice; nobody is blocked now\n", "")
            assert "calls    accepted from contacts only, nobody blocked\n" in (
                await cli(s, "status"))[1]
        finally:
            await d.stop()

    run(scenario())


def test_volume_can_be_shown_and_set_from_the_command_line_and_is_kept(sock_root):
    async def scenario():
        d = DaemonProcess(sock_root, "a", "--capture", "none", "--playback", "none")
        try:
            await d.ready()
            s = d.socket
            assert await cli(s, "volume") == (0, "call volume 100 %, ring tone 100 %\n", "")
            assert await cli(s, "volume", "80") == (0, "call volume 80 %, ring tone 100 %\n", "")
            assert await cli(s, "volume", "--ring", "35%") == (
                0, "call volume 80 %, ring tone 35 %\n", "")
            assert (await cli(s, "volume", "--json"))[1] == '{"volume": 80, "ring": 35}\n'
            for bad in ("201", "-1", "loud"):  # a usage error naming the range, no traceback
                code, out, err = await cli(s, "volume", bad)
                assert code == 2 and out == "" and "Traceback" not in err
                assert "0-200" in err or "not a percentage" in err, err
            assert await d.terminate() == 0
            d = DaemonProcess(sock_root, "a", "--capture", "none", "--playback", "none")
            await d.ready()  # kept across a restart (settings.json)
            assert await cli(d.socket, "volume") == (0, "call volume 80 %, ring tone 35 %\n", "")
            assert await d.terminate() == 0
        finally:
            d.kill()

    run(scenario())


def test_status_counts_peers_and_shows_the_public_address_and_nat_and_stats_have_units(sock_root):
    async def scenario():
        a = await start_daemon(sock_root, "a")
        try:
            code, out, _ = await cli(a.socket_path, "status")
        except BaseException:
            await a.stop()
            raise
        assert code == 0
        assert "network  0 peers in the routing table, not connected yet\n" in out
        assert "public   not known yet, NAT: unknown\n" in out
        assert "contacts 0\n" in out
        b = await start_daemon(sock_root, "b", capture="tone:440",
                               bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            cb = await connect(b)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["public_address"])
            out = (await cli(b.socket_path, "status"))[1]
            assert "network  1 peer in the routing table, reachable\n" in out
            assert f"public   127.0.0.1:{b.driver.address[1]}, NAT: none\n" in out
            # a call, then its statistics with units
            ca = await connect(a)
            await cb.request("dial", to=a.node_id)
            await ca.wait_event(lambda e: e.get("event") == "incoming", timeout=15)
            await ca.request("answer")
            await cb.wait_event(lambda e: e.get("event") == "quality", timeout=15)
            code, out, _ = await cli(b.socket_path, "stats")
            # minutes:seconds (a loaded machine's `kadtalk` commands made one call last 00:10)
            assert code == 0 and re.match(rf"current call with {a.node_id}: talking, \d\d:\d\d\b",
                                          out), out
            assert "round trip " in out and " ms" in out
            network, audio = out.splitlines()[1:3]
            assert network.startswith("network: received ") and " packets (" in network
            assert "jitter " in network and network.endswith(" ms")
            assert audio.startswith("audio:   ") and re.search(r"bitrate [\d.]+ kbit/s", audio)
            assert "target delay " in audio
            assert not re.search(r"\d\.\d{4,}", out), out  # no raw floats
            assert not re.search(r"\de[+-]\d", out) and "epoch" not in out, out  # nor clocks
            await cb.request("hangup")
            await cb.wait_event(is_call("ended"))
            out = (await cli(b.socket_path, "stats"))[1]
            assert re.match(rf"last call with {a.node_id}: ended \(hung up\), \d\d:\d\d talking\n",
                            out), out
            await ca.close()
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    run(scenario())


# -- waiting for a daemon, in scripts -----------------------------------------------------------

def test_wait_ready_waits_for_a_daemon_started_after_it_and_for_its_join(sock_root):
    async def scenario():
        path = sock_root / "a.sock"
        waiter = await asyncio.create_subprocess_exec(
            *KADTALK, "wait-ready", "--socket", str(path), "--timeout", "30",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        await asyncio.sleep(0.5)  # the script's daemon is slow to start (the race to show)
        assert waiter.returncode is None
        a = await start_daemon(sock_root, "a")
        try:
            out, err = await asyncio.wait_for(waiter.communicate(), 30)
            assert waiter.returncode == 0, err
            assert out.decode() == (f"ready: node {a.node_id}, nothing to join through: the "
                                    "first node of its network\n")
            b = await start_daemon(sock_root, "b", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
            try:
                code, out, _ = await cli(b.socket_path, "wait-ready")
                assert code == 0 and out == f"ready: node {b.node_id}, joined (1 peer)\n"
                assert len(b.driver.node.routing.table) == 1  # so a dial can start its lookup
            finally:
                await b.stop()
            # nothing answers at the bootstrap address: running, not joined
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
                dead.bind(("127.0.0.1", 0))
                c = await start_daemon(sock_root, "c",
                                       bootstrap=[f"127.0.0.1:{dead.getsockname()[1]}"])
                try:
                    code, _, err = await cli(c.socket_path, "wait-ready", "--timeout", "1")
                    assert code == 1 and "has not joined its network after 1 s" in err
                finally:
                    await c.stop()
            code, _, err = await cli(sock_root / "none.sock", "wait-ready", "--timeout", "0.3")
            assert code == 3 and "no kadtalk daemon" in err and "(waited 0.3 s)" in err
            # answer --wait with nothing ringing, watch --seconds
            code, _, err = await cli(a.socket_path, "answer", "--wait", "0.3")
            assert code == 1 and err == "kadtalk: no call rang within 0.3 s\n"
            code, out, _ = await cli(a.socket_path, "watch", "--seconds", "0.3")
            assert code == 0 and "connected to node" in out
        finally:
            await a.stop()

    run(scenario())


# -- kadtalk watch prints every event in words ---------------------------------------------------

WATCHED = {  # one of each event docs/control.md lists that `kadtalk watch` can get
    "hello": {"version": "1", "node_id": "ab" * 20},
    "network": {"table_size": 3, "reachable": True},
    "incoming": {"peer": "ab" * 20, "name": "Bob", "address": "127.0.0.1:5004"},
    "call": {"peer": "ab" * 20, "name": "Bob", "role": "caller", "state": "talking"},
    "quality": {"rx_kbps": 40, "bitrate_kbps": 40, "loss": 0.0, "jitter_ms": 1.0,
                "latency_ms": 40.0},
    "missed": {"peer": "ab" * 20, "name": None, "reason": "busy"},
    "audio_error": {"message": "no such device"},
    "audio": {"capture": "none", "playback": "none"},
    "contacts": {"contacts": []},
    "message": {"peer": "ab" * 20, "name": "Bob", "text": "hi"},
    "receipt": {"peer": "ab" * 20, "name": "Bob", "message_id": "cd" * 16},
    "message_stored": {"peer": "ab" * 20, "name": "Bob", "message_id": "cd" * 16, "holders": 3},
    "message_not_stored": {"peer": "ab" * 20, "name": None, "message_id": "cd" * 16,
                           "reason": "no_prekey"},
    "message_pending": {"peer": "ab" * 20, "name": "Bob", "message_ids": ["cd" * 16],
                        "reason": "unreachable"},
    "presence": {"peer": "ab" * 20, "name": "Bob", "status": "away"},
    "contact_request": {"peer": "ab" * 20, "request_id": "cd" * 16, "note": "hi"},
    "contact_request_stored": {"peer": "ab" * 20, "request_id": "cd" * 16},
    "contact_reply": {"peer": "ab" * 20, "name": "Bob", "accepted": True},
    "shutdown": {},
    "volume": {"volume": 80, "ring": 100},
}
ASKER_ONLY = {"audio_level", "doctor"}  # answers to the client that asked: the command prints


def test_watch_prints_every_documented_event_in_words_not_json():
    from pathlib import Path

    from kadtalk.app.cli import _format_event

    control = (Path(__file__).resolve().parents[2] / "docs" / "control.md").read_text()
    table = control[control.index("## Events"):]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert documented - ASKER_ONLY == set(WATCHED)  # a new event needs its line here
    for kind, fields in WATCHED.items():
        line = _format_event({"event": kind, **fields})
        assert "{" not in line and "event" not in line, (kind, line)
