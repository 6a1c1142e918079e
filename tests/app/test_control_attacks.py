"""Issue 17, attack 5: the attacks that worked against the daemon's control surface, played
against an in-process daemon (or a real `kadtalk daemon` process where its exit matters).
Each test performs the attack and asserts that it no longer works; every one of them failed
on the code before the fix (docs/security.md, "The control surface")."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from websockets.asyncio.client import connect as ws_connect

from kadtalk.app.config import ConfigError, Contacts, load_blocked, load_config, load_peers
from kadtalk.app.daemon import Daemon, DaemonError, load_identity

from .conftest import KADTALK, connect, start_daemon


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def reply_to(client, raw: bytes, timeout: float = 5.0) -> dict:
    """Send one raw line; the next reply (not an event) or an AssertionError if none comes."""
    since = len(client.seen)
    await client.send_raw(raw)
    try:
        return await client.wait_event(lambda e: "reply" in e, since=since, timeout=timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no reply to {raw[:80]!r}; connection closed: "
                             f"{client.closed.is_set()}") from None


# -- set_audio: no file a client names is ever created or truncated ---------------------------


def test_set_audio_cannot_truncate_a_file_outside_the_recordings_directory(sock_root):
    victim = sock_root / "precious.txt"
    victim.write_text("do not truncate me\n")
    recordings = sock_root / "recordings"

    async def scenario():
        d = await start_daemon(sock_root, "a", recordings_dir=str(recordings))
        try:
            c = await connect(d)
            attacks = [{"playback": f"wav:{victim}"},  # the attack of issue 17
                       {"playback": f"wav:{recordings}/../precious.txt"},
                       {"playback": f"file:FILE={victim}"},  # ALSA's file plugin truncates too
                       {"playback": f"tee:null,{victim}"},
                       {"capture": f"wav:{victim}"}]
            for args in attacks:
                r = await c.request("set_audio", check=False, **args)
                assert (r["ok"], r["error"]) == (False, "not_allowed"), (args, r)
                assert victim.read_text() == "do not truncate me\n", args
            # a symlink inside the recordings directory that leads out of it
            recordings.mkdir(parents=True, exist_ok=True)
            (recordings / "link.wav").symlink_to(victim)
            r = await c.request("set_audio", check=False, playback="wav:link.wav")
            assert r["error"] == "not_allowed"
            # a symlink loop, a home directory that does not exist, a NUL: refused, not internal
            (recordings / "loop.wav").symlink_to(recordings / "loop.wav")
            for name, code in (("wav:loop.wav", "not_allowed"), ("wav:~nobody-here/x.wav", "audio_device"),
                               ("wav:a\u0000b.wav", "bad_argument")):
                r = await c.request("set_audio", check=False, playback=name)
                assert r["error"] == code, (name, r)
            # an existing file that is not kadtalk's own recording, inside the directory
            (recordings / "notes.wav").write_text("mine\n")
            r = await c.request("set_audio", check=False, playback="wav:notes.wav")
            assert r["error"] == "not_allowed" and "notes.wav" in r["message"]
            assert (recordings / "notes.wav").read_text() == "mine\n"
            assert victim.read_text() == "do not truncate me\n"
            # a new recording in the directory works, and so does choosing it again
            for _ in range(2):
                r = await c.request("set_audio", playback="wav:call.wav")
                assert r["playback"] == f"wav:{recordings.resolve() / 'call.wav'}"
            # only checked: a wav: file is created at the first frame a call plays
            assert not (recordings / "call.wav").exists()
            # the devices the user configured stay allowed
            r = await c.request("set_audio", playback="none", capture="tone:440")
            assert r["ok"]
            r = await c.request("devices")
            assert "none" in r["playback"] and "default" in r["capture"]
            await c.close()
        finally:
            await d.stop()

    run(scenario())


def test_set_audio_over_the_web_bridge_cannot_truncate_a_file(sock_root):
    """Anyone holding the web token could send the attack; the bridge is just another client."""
    from kadtalk.app.web import WebBridge

    victim = sock_root / "precious.txt"
    victim.write_text("do not truncate me\n")

    async def scenario():
        d = await start_daemon(sock_root, "a", recordings_dir=str(sock_root / "rec"))
        web = await WebBridge.start(d.socket_path, "127.0.0.1", 0)
        try:
            uri = f"ws://127.0.0.1:{web.port}/ws?token={web.token}"
            async with ws_connect(uri, origin=f"http://127.0.0.1:{web.port}") as ws:
                await ws.send(json.dumps({"cmd": "set_audio", "req": 1,
                                          "playback": f"wav:{victim}"}))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if message.get("req") == 1:
                        break
            assert (message["ok"], message["error"]) == (False, "not_allowed")
            assert victim.read_text() == "do not truncate me\n"
        finally:
            await web.close()
            await d.stop()

    run(scenario())


# -- encoding: lone surrogates never break a reply or a connection ---------------------------


def test_a_lone_surrogate_never_breaks_status_or_drops_a_connection(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a", recordings_dir=str(sock_root / "rec"))
        try:
            attacker, other = await connect(d), await connect(d)
            # the attack of issue 17: a playback path with a lone surrogate (JSON allows "\udc80")
            r = await reply_to(attacker, b'{"cmd":"set_audio","req":1,"playback":"wav:x\\udc80.wav"}\n')
            assert (r["ok"], r["error"]) == (False, "malformed"), r
            s = await asyncio.wait_for(other.request("status"), 5)
            assert s["ok"] and "\udc80" not in json.dumps(s)
            # in req and in cmd: a malformed reply, and the connection goes on
            for raw in (b'{"cmd":"status","req":"\\udc80"}\n', b'{"cmd":"\\ud800x","req":2}\n',
                        b'{"cmd":"status","req":3,"\\udfff":1}\n'):
                r = await reply_to(attacker, raw)
                assert (r["ok"], r["error"]) == (False, "malformed"), (raw, r)
            assert (await asyncio.wait_for(attacker.request("id"), 5))["ok"]
            await attacker.close()
            await other.close()
        finally:
            await d.stop()

    run(scenario())


def test_a_surrogate_in_a_configured_device_name_is_escaped_in_replies(sock_root):
    """A device name from the command line can hold a surrogate (a non-UTF-8 byte in argv):
    status still answers, with the character escaped."""
    async def scenario():
        d = await start_daemon(sock_root, "a", playback="none\udc80")
        try:
            c = await connect(d)
            s = await asyncio.wait_for(c.request("status"), 5)
            assert s["audio"]["playback"] == "none\udc80"  # the escape decodes to it again
            await c.close()
        finally:
            await d.stop()

    run(scenario())


# -- numbers: bounded, never a traceback -------------------------------------------------------


def test_huge_and_non_finite_numbers_are_malformed_not_internal_errors(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            c = await connect(d)
            for raw in (b'{"cmd":"status","req":' + b"9" * 5000 + b"}\n",  # the attack: > 4,300 digits
                        b'{"cmd":"status","req":' + b"9" * 40 + b"}\n",  # beyond 2^53
                        b'{"cmd":"status","req":1e400}\n', b'{"cmd":"status","req":NaN}\n',
                        b'{"cmd":"status","req":-Infinity}\n',
                        b'{"cmd":"status","req":' + b"[" * 100 + b"]" * 100 + b"}\n"):
                r = await reply_to(c, raw)
                assert (r["ok"], r["error"]) == (False, "malformed"), (raw[:60], r)
            r = await c.request("set_audio", check=False, capture="tone:1e400")
            assert r["error"] == "bad_argument"
            assert (await c.request("status"))["ok"]
            await c.close()
        finally:
            await d.stop()

    run(scenario())


# -- damaged files: a clean error naming the file, never a traceback --------------------------

DAMAGE = {
    "truncated": lambda good: good[: len(good) // 2],
    "binary": lambda good: b"\x00\xff\xfe\x80garbage\x9f" * 10,
    "deep": lambda good: b"[" * 200_000 + b"]" * 200_000,
    "deep_object": lambda good: b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "huge_number": lambda good: b'{"contacts": ' + b"9" * 10_000 + b"}",
    "wrong_types": lambda good: b'{"contacts": {"id": 5}, "blocked": 7, "peers": "x"}',
}
GOOD_JSON = {
    "contacts.json": b'{"contacts": [{"id": "' + b"a" * 40 + b'", "name": "alice"}]}',
    "blocked.json": b'{"blocked": ["' + b"b" * 40 + b'"]}',
    "peers.json": b'{"peers": [{"id": "' + b"c" * 40 + b'", "host": "127.0.0.1", "port": 5004}]}',
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("name", sorted(GOOD_JSON))
def test_a_damaged_json_state_file_is_a_clean_error(tmp_path, name, damage):
    path = tmp_path / name
    path.write_bytes(DAMAGE[damage](GOOD_JSON[name]))
    if name == "peers.json":  # a cache: moved aside, never an exception
        assert load_peers(path) == []
        assert not path.exists() and (tmp_path / "peers.json.bad").exists()
        return
    load = Contacts if name == "contacts.json" else load_blocked
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_peers_json_entries_with_impossible_values_are_refused(tmp_path):
    path = tmp_path / "peers.json"
    for item in ({"id": "c" * 40, "host": "127.0.0.1", "port": 70000},
                 {"id": "c" * 40, "host": "x" * 10_000, "port": 5004},
                 {"id": "c" * 40, "host": "127.0.0.1", "port": True}):
        path.write_text(json.dumps({"peers": [item]}))
        assert load_peers(path) == [], item


TOML_DAMAGE = {
    "truncated": b'[network]\nhost = "127.0',
    "binary": b"\x00\xff\xfe\x80garbage",
    "deep": b"x = " + b"[" * 100_000 + b"]" * 100_000,
    "deep_table": b"x = " + b"{a = " * 50_000 + b"1" + b"}" * 50_000,
    "huge_number": b"[network]\nport = " + b"9" * 10_000,
    "wrong_types": b'[network]\nport = "x"\n',
    "wrong_section_type": b"network = 5\n",
    "huge_port": b"[network]\nport = 99999999999999999999\n",
    "recordings_dir_type": b"[audio]\nrecordings_dir = 5\n",
}


@pytest.mark.parametrize("damage", sorted(TOML_DAMAGE))
def test_a_damaged_config_toml_is_a_clean_error(tmp_path, damage):
    path = tmp_path / "config.toml"
    path.write_bytes(TOML_DAMAGE[damage])
    with pytest.raises(ConfigError) as caught:
        load_config(directory=tmp_path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("damage", ["truncated", "binary", "empty", "deep"])
def test_a_damaged_identity_is_a_clean_error(tmp_path, damage):
    good = load_identity(load_config(directory=tmp_path))
    path = tmp_path / "identity.pem"
    assert good is not None and path.exists()
    text = path.read_bytes()
    path.write_bytes({"truncated": text[: len(text) // 2], "binary": b"\x00\xff" * 50,
                      "empty": b"", "deep": b"[" * 100_000}[damage])
    with pytest.raises(DaemonError) as caught:
        load_identity(load_config(directory=tmp_path))
    assert str(path) in str(caught.value)
    assert path.read_bytes() != text  # never replaced


def test_a_deeply_nested_contacts_file_stops_the_real_daemon_with_a_clean_message(tmp_path):
    """The attack of issue 17: a raw RecursionError (a traceback) from `kadtalk daemon`."""
    directory = tmp_path / "a"
    directory.mkdir()
    (directory / "contacts.json").write_bytes(b"[" * 200_000)
    proc = subprocess.run(
        [*KADTALK, "daemon", "--config-dir", str(directory), "--host", "127.0.0.1", "--port", "0",
         "--socket", str(tmp_path / "a.sock")], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr, proc.stderr[-2000:]
    assert "contacts.json" in proc.stderr


# -- temporary files of a save killed with SIGKILL --------------------------------------------


def test_temporary_files_of_a_killed_save_are_removed_at_start(sock_root):
    directory = sock_root / "a"
    directory.mkdir()
    # Perform the attack: a process saving contacts.json is killed with SIGKILL mid-save.
    saver = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from kadtalk.app import config
        def stuck(*args):
            print("saving", flush=True)
            time.sleep(60)
        os.replace = stuck
        config.write_private(Path({str(directory / 'contacts.json')!r}), '{{"contacts": []}}')
    """)
    proc = subprocess.Popen([sys.executable, "-c", saver], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saving"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".contacts.json.")
    unrelated = directory / ".notes.tmp"
    unrelated.write_text("not ours")

    async def scenario():
        d = await start_daemon(sock_root, "a")
        await d.stop()

    run(scenario())
    assert sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp")) == [".notes.tmp"]


# -- contact names: unique whatever their case -------------------------------------------------


def test_contact_names_differing_only_in_case_are_one_name(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            c = await connect(d)
            await c.request("add_contact", name="Straße", peer="a" * 40)
            for name in ("STRASSE", "strasse", "straße", "ＳＴＲＡＳＳＥ"):
                r = await c.request("add_contact", check=False, name=name, peer="b" * 40)
                assert (r["ok"], r["error"]) == (False, "bad_argument"), (name, r)
            assert (await c.request("contacts"))["contacts"] == [
                {"peer": "a" * 40, "name": "Straße"}]
            assert d.callers.contacts.resolve("STRASSE") == "a" * 40
            await c.close()
        finally:
            await d.stop()

    run(scenario())


def test_a_contacts_file_with_names_differing_only_in_case_is_refused(tmp_path):
    """The attack of issue 17: "x" and "X" both accepted (from the file); `dial X` was ambiguous."""
    path = tmp_path / "contacts.json"
    path.write_text(json.dumps({"contacts": [{"id": "a" * 40, "name": "x"},
                                             {"id": "b" * 40, "name": "X"}]}))
    with pytest.raises(ConfigError) as caught:
        Contacts(path)
    assert str(path) in str(caught.value) and "'x'" in str(caught.value)
    assert json.loads(path.read_text())["contacts"][1]["name"] == "X"  # never rewritten
