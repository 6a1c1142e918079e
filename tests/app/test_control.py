"""The control protocol against daemons in this process: commands, events, bad input, audio
device errors, contacts, unreachable peers, saved peers."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest

from kadtalk.app.config import load_peers

from .conftest import KADTALK, DaemonProcess, connect, is_call, start_daemon


def run(coro, timeout: float = 180):
    # test_the_command_line_client_against_a_daemon took 48.6 s at load average 11 (its
    # `kadtalk` commands 2.6 s each; session 12): 60 s was too near
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_status_id_and_an_owner_only_socket(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            c = await connect(d)
            s = await c.request("status")
            assert s["ok"] and s["node_id"] == d.node_id and len(s["node_id"]) == 40
            assert s["call"] is None and s["network"]["reachable"] is False
            assert s["audio"] == {"capture": "none", "playback": "none", "error": None}
            assert (await c.request("id"))["node_id"] == d.node_id
            mode = stat.S_IMODE(os.stat(d.socket_path).st_mode)
            assert mode == 0o600
            await c.close()
        finally:
            await d.stop()
        assert not d.socket_path.exists()

    run(scenario())


def test_bad_input_gets_error_replies_and_never_hurts_the_daemon(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            c = await connect(d)
            since = len(c.seen)
            # not JSON, not an object, no cmd, unknown cmd, bad UTF-8, deep nesting
            for raw in (b"hello\n", b"[1,2]\n", b'{"req": 1}\n', b'"x"\n', b"\xff\xfe\n",
                        b"[" * 50000 + b"\n", b'{"cmd": 5}\n'):
                await c.send_raw(raw)
            errors = []
            for _ in range(7):
                e = await c.events.get()
                while e.get("event") is not None:  # skip pushed events
                    e = await c.events.get()
                errors.append(e)
            assert [e["error"] for e in errors] == ["malformed"] * 7
            assert all(e["ok"] is False and e["message"] for e in errors)
            r = await c.request("nonsense", check=False)
            assert r["error"] == "unknown_command" and "dial" in r["message"]
            # a huge line: one error, then the connection goes on working
            await c.send_raw(b'{"cmd": "status", "pad": "' + b"x" * 200_000 + b'"}\n')
            e = await c.wait_event(lambda e: e.get("error") == "line_too_long", since=since)
            assert e["ok"] is False
            assert (await c.request("status"))["ok"]
            # commands in the wrong state
            for cmd in ("answer", "decline", "hangup", "mute"):
                r = await c.request(cmd, check=False)
                assert (r["ok"], r["error"]) == (False, "no_call"), r
            r = await c.request("stats", check=False)
            assert r["error"] == "no_call"
            # bad arguments
            for args, code in (({}, "bad_argument"), ({"to": 7}, "bad_argument"),
                               ({"to": "nobody"}, "unknown_contact"),
                               ({"to": d.node_id}, "bad_argument")):
                r = await c.request("dial", check=False, **args)
                assert r["error"] == code, (args, r)
            r = await c.request("mute", check=False, on="yes")
            assert r["error"] == "no_call"
            r = await c.request("set_audio", check=False, capture=["x"])
            assert r["error"] == "bad_argument"
            # a client that sends half a line and vanishes
            _, w = await asyncio.open_unix_connection(str(d.socket_path))
            w.write(b'{"cmd": "sta')
            await w.drain()
            w.close()
            assert (await c.request("status"))["ok"]
            await c.close()
        finally:
            await d.stop()

    run(scenario())


def test_contacts_are_kept_in_the_config_dir_and_pushed_to_every_client(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        peer = "ab" * 20
        try:
            c1, c2 = await connect(d), await connect(d)
            r = await c1.request("add_contact", name="Bob", peer=peer.upper())
            assert (r["peer"], r["name"]) == (peer, "Bob")
            e = await c2.wait_event(lambda e: e.get("event") == "contacts")
            assert e["contacts"] == [{"peer": peer, "name": "Bob"}]
            for args, code in (({"name": "x", "peer": "12"}, "bad_argument"),
                               ({"name": "", "peer": peer}, "bad_argument"),
                               ({"name": "y" * 65, "peer": peer}, "bad_argument"),
                               ({"name": "bob", "peer": "cd" * 20}, "bad_argument")):  # taken
                assert (await c1.request("add_contact", check=False, **args))["error"] == code
            assert (await c1.request("rename_contact", who="bob", name="Robert"))["name"] == "Robert"
            assert (await c1.request("rename_contact", check=False, who="zed", name="Q"))["error"] == "unknown_contact"
            saved = json.loads(d.config.contacts_path.read_text())
            assert saved == {"contacts": [{"id": peer, "name": "Robert"}]}
            assert stat.S_IMODE(os.stat(d.config.contacts_path).st_mode) == 0o600
            await c1.request("add_contact", name="Carol", peer="cd" * 20)
            assert (await c1.request("remove_contact", who="Robert"))["peer"] == peer
            assert [x["name"] for x in (await c2.request("contacts"))["contacts"]] == ["Carol"]
            await c1.close()
            await c2.close()
        finally:
            await d.stop()
        # a new daemon on the same config dir has them
        d2 = await start_daemon(sock_root, "a")
        try:
            c = await connect(d2)
            assert (await c.request("contacts"))["contacts"] == [{"peer": "cd" * 20, "name": "Carol"}]
            await c.close()
        finally:
            await d2.stop()

    run(scenario())


def test_a_missing_audio_device_is_a_clear_error_and_the_daemon_keeps_running(sock_root):
    async def scenario():
        a = await start_daemon(sock_root, "a", playback="nosuchdevice")
        b = await start_daemon(sock_root, "b", capture="tone:440",
                               bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            ca, cb = await connect(a), await connect(b)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            # dialling out needs the devices: refused, naming the device
            r = await ca.request("dial", check=False, to=b.node_id)
            assert r["error"] == "audio_device" and "nosuchdevice" in r["message"]
            await ca.wait_event(lambda e: e.get("event") == "audio_error")
            s = await ca.request("status")
            assert s["call"] is None and "nosuchdevice" in s["audio"]["error"]
            # an incoming call cannot be answered until the device is fixed; it keeps ringing
            await cb.request("dial", to=a.node_id)
            await ca.wait_event(lambda e: e.get("event") == "incoming")
            r = await ca.request("answer", check=False)
            assert r["error"] == "audio_device" and "nosuchdevice" in r["message"]
            assert (await ca.request("status"))["call"]["state"] == "ringing"
            r = await ca.request("set_audio", check=False, playback="alsonothere")
            assert r["error"] == "not_allowed" and "alsonothere" in r["message"]
            assert (await ca.request("set_audio", playback="none"))["playback"] == "none"
            await ca.request("answer")
            await cb.wait_event(is_call("talking"))
            q = await ca.wait_event(lambda e: e.get("event") == "quality", timeout=5)
            assert q["packets_rx"] > 0
            await cb.request("hangup")
            e = await ca.wait_event(is_call("ended"))
            assert e["reason"] == "remote_hung_up"
            await ca.close()
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    run(scenario())


def test_dialling_a_node_id_nobody_has_ends_unreachable(sock_root):
    async def scenario():
        a = await start_daemon(sock_root, "a")
        b = await start_daemon(sock_root, "b", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            cb = await connect(b)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            r = await cb.request("dial", to="0123456789" * 4)
            e = await cb.wait_event(is_call("ended"), timeout=15)
            assert e["session"] == r["session"] and e["reason"] == "unreachable"
            assert (await cb.request("status"))["call"] is None
            # dialling again works; so does a lookup of a real node
            found = await cb.request("lookup", to=a.node_id)
            assert found["found"] and found["address"] == f"127.0.0.1:{a.driver.address[1]}"
            missing = await cb.request("lookup", to="f" * 40)
            assert missing["found"] is False
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    run(scenario())


def test_saved_peers_let_a_restarted_daemon_rejoin_without_a_bootstrap(sock_root):
    async def scenario():
        a = await start_daemon(sock_root, "a")
        b = await start_daemon(sock_root, "b", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            cb = await connect(b)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            await cb.close()
            await b.stop()
            saved = load_peers(b.config.peers_path)
            assert saved == [(a.node_id, ("127.0.0.1", a.driver.address[1]))]
            b = await start_daemon(sock_root, "b")  # no bootstrap this time
            cb = await connect(b)
            e = await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            assert e["joined"] is True
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    run(scenario())


def test_a_second_daemon_on_the_same_socket_is_refused(sock_root):
    async def scenario():
        from kadtalk.app.daemon import DaemonError

        a = await start_daemon(sock_root, "a")
        try:
            try:
                await start_daemon(sock_root, "a")
            except DaemonError as e:
                assert "another kadtalk daemon" in str(e)
            else:
                raise AssertionError("a second daemon started on the same socket")
            assert (await (await connect(a)).request("status"))["ok"]
        finally:
            await a.stop()
        # a stale socket file (a daemon that was killed) is replaced
        import socket

        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(a.socket_path))
        stale.close()
        a2 = await start_daemon(sock_root, "a")
        await a2.stop()

    run(scenario())


def test_the_command_line_client_against_a_daemon(sock_root):
    async def kadtalk(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *KADTALK, *args, "--socket", str(sock_root / "a.sock"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, out.decode(), err.decode()

    async def scenario():
        d = await start_daemon(sock_root, "a")
        peer = "12" * 20
        try:
            code, out, _ = await kadtalk("status")
            assert code == 0 and d.node_id in out and "call     none" in out
            code, out, _ = await kadtalk("status", "--json")
            assert json.loads(out)["node_id"] == d.node_id
            assert (await kadtalk("contacts", "add", "dora", peer))[0] == 0
            assert (await kadtalk("contacts", "rename", "dora", "Dora M"))[0] == 0
            code, out, _ = await kadtalk("contacts", "list", "--json")
            assert json.loads(out)["contacts"] == [{"peer": peer, "name": "Dora M"}]
            code, out, _ = await kadtalk("contacts")
            assert out.split() == ["Dora", "M", peer, "offline"]  # presence: never heard
            code, _, err = await kadtalk("contacts", "add", "x")
            assert code == 2 and "usage" in err
            code, _, err = await kadtalk("answer")
            assert code == 1 and "no incoming call" in err
            code, out, err = await kadtalk("call", "nobody-known")
            assert code == 1 and "neither a node ID" in err
            code, out, _ = await kadtalk("audio", "--json")
            assert json.loads(out) == {"capture": "none", "playback": "none", "error": None}
            code, _, err = await kadtalk("audio", "--capture", "nosuchpcm")
            assert code == 1 and "nosuchpcm" in err and "offers" in err
            code, out, _ = await kadtalk("audio", "--list")
            assert code == 0 and "tone:440" in out and "recordings" in out
            assert (await kadtalk("contacts", "remove", "Dora M"))[0] == 0
        finally:
            await d.stop()

    run(scenario())


def test_the_daemon_tells_systemd_when_it_is_ready_and_stopping(sock_root):
    import socket

    async def scenario():
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(sock_root / "notify"))
        notify.setblocking(False)
        loop = asyncio.get_running_loop()
        d = DaemonProcess(sock_root, "n", "--capture", "none", "--playback", "none",
                          env={"NOTIFY_SOCKET": str(sock_root / "notify")})
        try:
            assert await asyncio.wait_for(loop.sock_recv(notify, 100), 20) == b"READY=1"
            assert await d.terminate() == 0
            assert await asyncio.wait_for(loop.sock_recv(notify, 100), 5) == b"STOPPING=1"
        finally:
            d.kill()
            notify.close()

    run(scenario())


def test_decline_busy_mute_cancel_and_device_switch_with_their_reasons(sock_root):
    async def scenario():
        a = await start_daemon(sock_root, "a", capture="tone:440")
        boot = [f"127.0.0.1:{a.driver.address[1]}"]
        b = await start_daemon(sock_root, "b", capture="tone:660", bootstrap=boot)
        c = await start_daemon(sock_root, "c", bootstrap=boot)
        try:
            ca, cb, cc = await connect(a), await connect(b), await connect(c)
            for client in (cb, cc):
                await client.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            await a.driver.find_peer(b.driver.node.node_id)  # a learns where b and c are
            await a.driver.find_peer(c.driver.node.node_id)

            # declined
            since = len(ca.seen)
            await cb.request("dial", to=a.node_id)
            ring = await ca.wait_event(lambda e: e.get("event") == "incoming", since=since)
            assert ring["name"] is None and ring["peer"] == b.node_id
            await ca.request("decline")
            e = await cb.wait_event(is_call("ended"))
            assert e["reason"] == "declined" and e["role"] == "caller"
            assert (await ca.wait_event(is_call("ended"), since=since))["reason"] == "declined"

            # talking a <-> b; c rings a meanwhile: c hears busy, a sees a missed call
            since_a, since_b = len(ca.seen), len(cb.seen)
            await ca.request("dial", to=b.node_id)
            await cb.wait_event(lambda e: e.get("event") == "incoming", since=since_b)
            assert (await cb.request("dial", check=False, to=c.node_id))["error"] == "busy"
            await cb.request("answer")
            await ca.wait_event(is_call("talking"), since=since_a)
            since_c = len(cc.seen)
            await cc.request("dial", to=a.node_id)
            e = await cc.wait_event(is_call("ended"), since=since_c, timeout=15)
            assert e["reason"] == "busy"
            missed = await ca.wait_event(lambda e: e.get("event") == "missed", since=since_a)
            assert missed["peer"] == c.node_id
            # mute (pushed to every client as a call event), switch devices mid-call
            assert (await ca.request("mute"))["muted"] is True
            e = await ca.wait_event(lambda e: e.get("event") == "call" and e.get("muted"), since=since_a)
            assert e["state"] == "talking"
            assert (await ca.request("mute", on=False))["muted"] is False
            r = await ca.request("set_audio", capture="tone:300")
            assert r["capture"] == "tone:300"
            assert (await ca.request("status"))["call"]["state"] == "talking"
            await cb.request("hangup")
            e = await ca.wait_event(is_call("ended"), since=since_a)
            assert e["reason"] == "remote_hung_up" and e["stats"]["packets"] > 0
            last = await ca.request("stats")
            assert last["current"] is False and last["call"]["reason"] == "remote_hung_up"

            # a call cancelled while it rings: the callee hears the caller hang up
            since_b = len(cb.seen)
            await cc.request("dial", to=b.node_id)
            await cb.wait_event(lambda e: e.get("event") == "incoming", since=since_b)
            await cc.request("hangup")
            e = await cb.wait_event(is_call("ended"), since=since_b)
            assert e["reason"] == "remote_hung_up"
            for client in (ca, cb, cc):
                await client.close()
        finally:
            for d in (c, b, a):
                await d.stop()

    run(scenario())


def test_a_device_that_fails_mid_call_is_replaced_by_silence_and_reported():
    from kadtalk.app.audio import open_audio
    from kadtalk.transport.audiopump import Discard, Silence

    class Broken:
        def read_frame(self):
            raise OSError("device unplugged")

        def write_frame(self, pcm):
            raise OSError("device unplugged")

        def close(self):
            raise OSError("already gone")

    audio = open_audio("none", "none")
    audio.attach(1)
    audio.source = audio.sink = Broken()
    assert audio.tick(0.0, muted=False) is None  # nothing captured this tick
    assert len(audio.errors) == 2 and "capture device 'none' failed" in audio.errors[0]
    assert isinstance(audio.source, Silence) and isinstance(audio.sink, Discard)
    assert audio.tick(0.02, muted=False)  # goes on with silence
    audio.close()


def test_a_client_that_never_reads_is_dropped_and_the_others_go_on(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            good = await connect(d)
            hog_in, hog = await asyncio.open_unix_connection(str(d.socket_path))
            await asyncio.wait_for(hog_in.readline(), 5)  # hello: it is served; now it stops reading
            assert len(d.control.clients) == 2
            request = b'{"cmd": "status"}\n'
            for _ in range(40):  # up to 20,000 replies of ~500 bytes that it never reads
                try:
                    hog.write(request * 500)
                    await hog.drain()
                except ConnectionError:
                    break
                if len(d.control.clients) < 2:
                    break
            assert len(d.control.clients) == 1  # only the good client is left
            assert (await good.request("status"))["clients"] == 1
            hog.close()
            await good.close()
        finally:
            await d.stop()

    run(scenario())


def test_contacts_are_trusted_by_the_session_layer_at_once(sock_root):
    """Known contacts first (issue 17): the running node's session layer asks the daemon's live
    address book, so a contact added (or removed) over the control socket counts at once, and a
    stranger gets no admission budget of its own."""
    friend, stranger = "f" * 40, "e" * 40

    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            c = await connect(d)
            # the session layer is made on first need: a call to a stranger nobody can find
            # (through a contact that never answers: with an empty table, dial says not_joined)
            d.driver.node.add_contact(int("1" * 40, 16), ("127.0.0.1", 9), d.driver.loop.time())
            assert (await c.request("dial", to=stranger))["ok"]
            await c.wait_event(is_call("ended"), timeout=30)
            trusted = d.driver.node.session.settings.trusted
            assert not trusted(int(friend, 16)) and not trusted(int(stranger, 16))
            assert (await c.request("add_contact", peer=friend, name="Friend"))["ok"]
            assert trusted(int(friend, 16)) and not trusted(int(stranger, 16))
            assert (await c.request("remove_contact", who="Friend"))["ok"]
            assert not trusted(int(friend, 16))
            await c.close()
        finally:
            await d.stop()

    run(scenario())


def test_unwanted_callers_never_ring(sock_root):
    """Blocked callers, strangers in contacts-only mode and a caller calling too often are
    declined after the verified key exchange, before any ring: the user sees a missed call."""

    async def scenario():
        a = await start_daemon(sock_root, "a", calls_per_minute=1)
        boot = [f"127.0.0.1:{a.driver.address[1]}"]
        b = await start_daemon(sock_root, "b", bootstrap=boot)
        try:
            ca, cb = await connect(a), await connect(b)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])

            async def b_calls_a() -> tuple[dict, dict | None]:
                """(b's end-of-call event, a's missed event or None if a rang)."""
                since_a, since_b = len(ca.seen), len(cb.seen)
                await cb.request("dial", to=a.node_id)
                event = await ca.wait_event(
                    lambda e: e.get("event") in ("incoming", "missed"), since=since_a, timeout=15)
                if event["event"] == "incoming":
                    await ca.request("decline")
                    event = None
                ended = await cb.wait_event(is_call("ended"), since=since_b, timeout=15)
                return ended, event

            assert (await ca.request("block", who=b.node_id))["blocked"] == [b.node_id]
            ended, missed = await b_calls_a()
            assert missed["reason"] == "blocked" and ended["reason"] == "declined"
            assert json.loads((sock_root / "a" / "blocked.json").read_text())["blocked"] == [b.node_id]
            await ca.request("unblock", who=b.node_id)

            await ca.request("accept", **{"from": "contacts"})
            ended, missed = await b_calls_a()
            assert missed["reason"] == "not_a_contact"
            await ca.request("add_contact", peer=b.node_id, name="bob")
            ended, missed = await b_calls_a()
            assert missed is None  # a contact rings (a declined it by hand)
            ended, missed = await b_calls_a()
            assert missed is not None and missed["reason"] == "too_many_calls"  # 1 a minute

            bad = await ca.request("block", check=False, who="nobody")
            assert bad["ok"] is False and bad["error"] == "bad_argument"
            assert (await ca.request("accept", check=False, **{"from": "everyone"}))["ok"] is False
            for client in (ca, cb):
                await client.close()
        finally:
            for d in (b, a):
                await d.stop()

    run(scenario())


def test_call_filter_settings_are_checked(tmp_path):
    from kadtalk.app.config import ConfigError, load_config

    (tmp_path / "config.toml").write_text('[calls]\naccept = "friends"\n')
    with pytest.raises(ConfigError, match="accept"):
        load_config(directory=tmp_path)
    (tmp_path / "config.toml").write_text('[calls]\nblock = ["not-an-id"]\n')
    with pytest.raises(ConfigError, match="not a node ID"):
        load_config(directory=tmp_path)
    (tmp_path / "config.toml").write_text(f'[calls]\naccept = "contacts"\nblock = ["{"AB" * 20}"]\n')
    config = load_config(directory=tmp_path)
    assert config.accept == "contacts" and config.block == ["ab" * 20]
