"""The control protocol against daemons in this process: commands, events, bad input, audio
device errors, contacts, unreachable peers, saved peers."""

from __future__ import annotations

import asyncio
import json
import os
import stat

from kadtalk.app.config import load_peers

from .conftest import connect, is_call, start_daemon


def run(coro, timeout: float = 60):
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
            assert r["error"] == "audio_device" and "alsonothere" in r["message"]
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
