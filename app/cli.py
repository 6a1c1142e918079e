"""The `kadtalk` subcommands of the calling service: the daemon, its command-line client and
the web GUI. kadtalk/cli.py adds them with `add_parsers` and runs them with `run`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

COMMANDS = ("daemon", "wait-ready", "status", "call", "answer", "decline", "hangup", "mute",
            "contacts", "block", "unblock", "accept", "watch", "stats", "audio", "web", "history",
            "send", "messages", "doctor", "presence", "contact", "volume")

EXAMPLES = """examples:
  kadtalk daemon --bootstrap 192.0.2.7:5004      run the service (Ctrl-C hangs up and stops)
  kadtalk wait-ready                              (in scripts) until it has started and joined
  kadtalk status                                  who am I, network, current call
  kadtalk contacts add alice 3f1c...e0            name a node ID
  kadtalk call alice                              ring, wait for the answer
  kadtalk answer | kadtalk hangup                 pick up / end the call
  kadtalk send alice "on my way"                  a text message; waits for its receipt
  kadtalk messages alice                          the conversation, oldest first
  kadtalk contact request 3f1c...e0 --note "Bob"  ask to be its contact; it accepts or not
  kadtalk presence away                           your status, told to your contacts only
  kadtalk volume 80 --ring 50                     call and ring tone volumes, percent
  kadtalk watch --json                            every event, one JSON object a line
  kadtalk doctor                                  can callers reach me? what to change
  kadtalk web                                     open the printed URL in a browser
"""


def _port(text: str) -> int:
    """A port number for argparse: a clear usage error, not a traceback from bind()."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: 0-65535 (0 = any free port)")
    return port


def _percent(text: str) -> int:
    """A volume for argparse: a whole percentage, 0-MAX_VOLUME."""
    from .config import MAX_VOLUME

    try:
        value = int(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not 0 <= value <= MAX_VOLUME:
        raise argparse.ArgumentTypeError(f"{value} is not a volume: 0-{MAX_VOLUME} (percent)")
    return value


def _seconds(text: str) -> float:
    """A duration for argparse: finite, not negative."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds (0 or more)")
    return value


def _socket_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", type=Path, metavar="PATH",
                        help="the daemon's control socket (default $KADTALK_SOCKET, else "
                        "$XDG_RUNTIME_DIR/kadtalk/control.sock)")


def _client(commands: Any, name: str, help: str, json_flag: bool = True, **kw: Any):
    p = commands.add_parser(name, help=help, description=kw.pop("description", help.capitalize() + "."),
                            **kw)
    _socket_option(p)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON (one object a line)")
    return p


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "daemon", help="run the calling service (node, UDP socket, audio, control socket)",
        description="Run the kadtalk service in the foreground: the identity, one UDP socket, the "
        "audio devices and a control socket for `kadtalk status/call/...` and the web GUI. Settings "
        "come from config.toml in the config directory; flags override them. SIGTERM or Ctrl-C "
        "hangs up and stops cleanly.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, metavar="FILE", help="settings file (default CONFIG_DIR/config.toml)")
    p.add_argument("--config-dir", type=Path, metavar="DIR",
                   help="where the identity, contacts and saved peers live (default "
                   "$XDG_CONFIG_HOME/kadtalk)")
    p.add_argument("--host", help="address to bind the UDP socket (default 0.0.0.0: IPv6 and "
                   "IPv4 on one dual-stack socket where the OS allows, IPv4 only otherwise)")
    p.add_argument("--port", type=_port, help="UDP port (default 5004; 0 = any free port)")
    p.add_argument("--bootstrap", action="append", metavar="HOST:PORT",
                   help="a node to join through (repeatable; adds to the config's list)")
    p.add_argument("--capture", metavar="DEVICE",
                   help="ALSA capture device (default 'default'; also none, tone:HZ, wav:PATH)")
    p.add_argument("--playback", metavar="DEVICE",
                   help="ALSA playback device (default 'default'; also none, wav:PATH)")
    _socket_option(p)
    p.add_argument("--web", action="store_true", help="also serve the web GUI")
    p.add_argument("--web-port", type=_port, metavar="N", help="web GUI port (default 8080; 0 = any)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"],
                   help="json: one JSON object a line (time, level, logger, message)")

    p = _client(commands, "wait-ready", "wait until the daemon has started and joined its network",
                description="Wait until the daemon answers on its control socket and, if it has "
                "a node to join through (--bootstrap, or the peers saved by its last run), until "
                "it has joined: then calls can be placed. For scripts that start a daemon in the "
                "background. Exit 0 when ready, 1 when it runs but has not joined in time, 3 "
                "when no daemon answered in time.")
    p.add_argument("--timeout", type=_seconds, default=30.0, help="seconds to wait (default 30)")
    p = _client(commands, "status", "show the node ID, network, current call and audio devices")
    p = _client(commands, "call", "call a node ID or a contact and wait for the answer",
                description="Dial a node ID or contact name. Waits until the call is answered "
                "(exit 0) or ends (exit 1, with the reason: unreachable, declined, busy, ...).")
    p.add_argument("target", help="node ID (40 hex digits) or contact name")
    p.add_argument("--no-wait", action="store_true", help="return once dialling has started")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait (default 90)")
    p = _client(commands, "answer", "answer the ringing call")
    p.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                   help="if nothing rings yet, wait this long for a call (default 0)")
    _client(commands, "decline", "decline the ringing call")
    _client(commands, "hangup", "hang up (or cancel) the current call")
    p = _client(commands, "mute", "mute or unmute the microphone in the current call")
    p.add_argument("state", nargs="?", choices=["on", "off", "toggle"], default="toggle")
    p = _client(commands, "contacts", "list, add, rename or remove contacts",
                description="Contacts name node IDs; `kadtalk call NAME` dials them.")
    p.add_argument("action", nargs="?", choices=["list", "add", "rename", "remove"], default="list")
    p.add_argument("args", nargs="*", help="add NAME ID | rename NAME-OR-ID NEW | remove NAME-OR-ID")
    p.add_argument("--replace", action="store_true",
                   help="add: rename the contact that already has this ID (else refused)")
    p = _client(commands, "block", "never let a caller ring; without WHO: list the blocked",
                description="Calls from a blocked node ID are declined before they ring; you see "
                "a missed call (saved in CONFIG_DIR/blocked.json). [calls] block in config.toml "
                "blocks for good. Without WHO: list who is blocked.")
    p.add_argument("who", nargs="?", help="node ID or contact name")
    p = _client(commands, "unblock", "let a blocked caller ring again")
    p.add_argument("who", help="node ID or contact name")
    p = _client(commands, "accept", "who may ring: anyone, or contacts only",
                description="Set who may ring this node; kept across restarts (CONFIG_DIR/"
                "settings.json) until [calls] accept in config.toml is changed. Without MODE: "
                "show it.")
    p.add_argument("mode", nargs="?", choices=["anyone", "contacts"])
    p = _client(commands, "watch", "print events (calls, quality, network) as they happen",
                description="Print every event the daemon sends until Ctrl-C (or --seconds).")
    p.add_argument("--seconds", type=_seconds, metavar="N", help="stop after N seconds")
    _client(commands, "stats", "statistics of the current (or the last) call")
    p = _client(commands, "history", "past calls, newest first (all, or with one contact)",
                description="List past calls, newest first: when, who, what, how long. Listing "
                "them all clears the missed-call notice `kadtalk status` shows.")
    p.add_argument("contact", nargs="?", help="node ID or contact name")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="at most N calls (default 50)")
    p = _client(commands, "send", "send a text message to a node ID or a contact",
                description="Send an end-to-end encrypted text message (at most 1,024 bytes of "
                "UTF-8) over a session with the peer: the current call's, or one opened for "
                "messages. It is kept in the history first; if it cannot be delivered now it "
                "stays pending; if the peer is offline it is sealed to the peer's prekey and stored "
                "in its DHT mailbox (state stored), and in any case sent again at the next "
                "session with that peer. Exit 0 delivered (its receipt came), 2 still pending "
                "or stored after --wait, 1 refused.")
    p.add_argument("target", help="node ID (40 hex digits) or contact name")
    p.add_argument("text", help="the message (quote it)")
    p.add_argument("--wait", type=_seconds, default=20.0, metavar="SECONDS",
                   help="wait this long for the receipt (default 20; 0: return at once)")
    p = _client(commands, "messages", "text messages, oldest first (all, or with one contact)",
                description="List the latest text messages in conversation order: time, who, "
                "direction, delivery state, text. Listing them marks the incoming ones read.")
    p.add_argument("contact", nargs="?", help="node ID or contact name")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="the latest N messages (default 50)")
    p = _client(commands, "doctor", "can callers reach this node? what to change",
                description="Ask a few peers where they see this node and to have a peer it never "
                "talked to send it a probe, then say in plain words what works and what to "
                "change (forward a port, enable IPv6, ...). Takes a few seconds. Exit 0 when "
                "callers reach you directly, 1 when only through hole punching or a relay (or it "
                "could not be told), 2 when no peer answered, 3 when no daemon runs.")
    p.add_argument("--seconds", type=_seconds, default=6.0, metavar="N",
                   help="at most this long (1-30, default 6)")
    p = _client(commands, "presence", "show or set your status, and see your contacts'",
                description="Without STATUS: your status and each contact's (online, away, busy, "
                "or offline: not heard from for 15 minutes). With it: set yours (kept across "
                "restarts); it is told to your contacts only, directly, never published.")
    p.add_argument("status", nargs="?", choices=["online", "away", "busy"])
    p = _client(commands, "contact", "contact requests: request, requests, accept, decline",
                description="Ask a node to be your contact (`request ID`, with a short --note), "
                "list the requests (`requests`), answer one (`accept ID`, `decline ID`). "
                "Accepting adds both sides as contacts; declining is silent unless --tell. "
                "Requests get through even when only contacts may call and write.")
    p.add_argument("action", choices=["request", "requests", "accept", "decline"])
    p.add_argument("peer", nargs="?", help="node ID (40 hex digits)")
    p.add_argument("--name", help="request, accept: the contact name to give the peer")
    p.add_argument("--note", default="", help="request: a short note (at most 256 bytes)")
    p.add_argument("--tell", action="store_true",
                   help="decline: tell the requester (by default it is not told)")
    p = _client(commands, "audio", "show or set the audio devices",
                description="Without options: show the devices. With them: check the devices "
                "open, then use them (in a call: switch at once). Only the devices the daemon "
                "was configured with, none, default, tone:HZ, the PCMs ALSA lists (--list) and "
                "wav:NAME files in the recordings directory can be chosen here.")
    p.add_argument("--capture", metavar="DEVICE")
    p.add_argument("--playback", metavar="DEVICE")
    p.add_argument("--list", action="store_true", help="list the devices that can be chosen")
    p = _client(commands, "volume", "show or set the call volume and the ring tone's",
                description="Without options: show the volume of what calls play and of the "
                "daemon's own ring tone, in percent (100 plays sound untouched; above it loud "
                "samples clip). PERCENT sets the call volume, at once (in a call too); --ring "
                "the ring tone's. Both are kept across restarts (CONFIG_DIR/settings.json) "
                "until [audio] volume or [calls] ring_volume in config.toml is changed.")
    p.add_argument("percent", nargs="?", type=_percent, help="the call volume, 0-200")
    p.add_argument("--ring", type=_percent, metavar="PERCENT",
                   help="the daemon's ring tone's volume, 0-200")
    p = commands.add_parser("web", help="serve the web GUI for a running daemon",
                            description="Serve the HTML5 GUI on 127.0.0.1 and bridge it to the "
                            "daemon's control socket. Open the printed URL (it holds a secret "
                            "token, kept beside the socket across restarts; docs/gui.md).")
    _socket_option(p)
    p.add_argument("--port", type=_port, default=8080, help="TCP port (default 8080; 0 = any)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0: phones on the LAN, with "
                   "the token; docs/gui.md)")


def run(args: argparse.Namespace) -> int:
    from .client import NotRunning

    try:
        if args.command == "daemon":
            return _daemon(args)
        if args.command == "wait-ready":
            return asyncio.run(_wait_ready(args))
        if args.command == "web":
            from .config import default_socket
            from .web import WebError, run_web

            try:
                asyncio.run(run_web(args.socket or default_socket(), args.host, args.port))
            except WebError as e:
                print(f"kadtalk: {e}", file=sys.stderr)
                return 1
            return 0
        return asyncio.run(_client_command(args))
    except NotRunning as e:
        print(f"kadtalk: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


def _daemon(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .daemon import DaemonError, run_daemon

    try:
        config = load_config(args.config, args.config_dir)
        for name in ("host", "port", "capture", "playback", "log_level", "log_format"):
            value = getattr(args, name)
            if value is not None:
                setattr(config, name, value)
        if args.bootstrap:
            config.bootstrap = [*config.bootstrap, *args.bootstrap]
        if args.socket:
            config.socket = str(args.socket)
        if args.web_port is not None:
            config.web_port = args.web_port
        level = getattr(logging, config.log_level.upper(), None)
        if not isinstance(level, int):
            raise ConfigError(f"unknown log level {config.log_level!r}")
        if args.verbose == 0:
            logging.getLogger().setLevel(level)
        if config.log_format == "json":
            for handler in logging.getLogger().handlers:
                handler.setFormatter(JsonFormatter())
        elif config.log_format != "text":
            raise ConfigError(f"unknown log format {config.log_format!r} (text or json)")
        run_on_loop(config.event_loop, run_daemon(config, web=args.web))
    except (ConfigError, DaemonError) as e:
        print(f"kadtalk: {e}", file=sys.stderr)
        return 1
    return 0


def run_on_loop(kind: str, main: Any) -> Any:
    """Run ``main`` on the configured event loop: uvloop's when installed (less CPU per
    datagram: docs/results.md "Relay cost"), else asyncio's."""
    from .config import ConfigError

    if kind not in ("uvloop", "asyncio"):
        main.close()
        raise ConfigError(f"unknown event loop {kind!r} ([network] event_loop: uvloop or asyncio)")
    factory = None
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            logging.getLogger("kadtalk.daemon").warning(
                "uvloop is not installed (pip install uvloop): running on asyncio's event loop")
        else:
            factory = uvloop.new_event_loop
    logging.getLogger("kadtalk.daemon").info(
        "event loop: %s", "uvloop" if factory else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data) if args.json else text, flush=True)


async def _client_command(args: argparse.Namespace) -> int:
    from .client import ControlClient, ControlError
    from .config import default_socket

    client = await ControlClient.connect(args.socket or default_socket())
    try:
        return await _dispatch(client, args)
    except ControlError as e:
        if getattr(args, "json", False):
            print(json.dumps(e.reply))
        print(f"kadtalk: {e}", file=sys.stderr)
        return 1
    finally:
        await client.close()


async def _dispatch(client: Any, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "answer" and args.wait > 0:
        return await _answer_when_ringing(client, args)
    if cmd == "status":
        s = await client.request("status")
        _out(args, s, _format_status(s))
    elif cmd == "call":
        return await _call(client, args)
    elif cmd in ("answer", "decline", "hangup"):
        r = await client.request(cmd)
        _out(args, r, {"answer": "answered", "decline": "declined", "hangup": "hung up"}[cmd])
    elif cmd == "mute":
        extra = {} if args.state == "toggle" else {"on": args.state == "on"}
        r = await client.request("mute", **extra)
        _out(args, r, "muted" if r["muted"] else "unmuted")
    elif cmd == "contacts":
        return await _contacts(client, args)
    elif cmd in ("block", "unblock"):
        return await _block(client, args)
    elif cmd == "accept":
        if args.mode is None:
            s = await _newer_status(client, "accept")
            if s is None:
                return 1
            _out(args, {"accept": s["accept"]}, _ACCEPT[s["accept"]])
        else:
            r = await client.request("accept", **{"from": args.mode})
            _out(args, r, _ACCEPT[r["accept"]])
    elif cmd == "watch":
        deadline = time.monotonic() + args.seconds if args.seconds is not None else None
        while True:
            try:
                left = None if deadline is None else max(deadline - time.monotonic(), 0)
                event = await asyncio.wait_for(client.events.get(), left)
            except asyncio.TimeoutError:
                return 0
            _out(args, event, _format_event(event))
            if event.get("event") == "shutdown":
                return 0
    elif cmd == "stats":
        r = await client.request("stats")
        _out(args, r, _format_stats(r))
    elif cmd == "history":
        extra = {"peer": args.contact} if args.contact else {}
        r = await client.request("history", limit=args.limit, **extra)
        _out(args, r, _format_history(r))
    elif cmd == "doctor":
        return await _doctor(client, args)
    elif cmd == "send":
        return await _send(client, args)
    elif cmd == "presence":
        extra = {"status": args.status} if args.status else {}
        r = await client.request("presence", **extra)
        _out(args, r, _format_presence(r))
    elif cmd == "contact":
        return await _contact(client, args)
    elif cmd == "messages":
        extra = {"peer": args.contact} if args.contact else {}
        r = await client.request("messages", limit=args.limit, **extra)
        _out(args, r, _format_messages(r))
    elif cmd == "volume":
        extra = {k: v for k, v in (("percent", args.percent), ("ring", args.ring))
                 if v is not None}
        r = await client.request("volume", **extra)
        _out(args, {"volume": r["volume"], "ring": r["ring"]},
             f"call volume {r['volume']} %, ring tone {r['ring']} %")
    elif cmd == "audio":
        if args.capture or args.playback:
            extra = {k: v for k, v in (("capture", args.capture), ("playback", args.playback)) if v}
            r = await client.request("set_audio", **extra)
            _out(args, r, f"capture {r['capture']!r}, playback {r['playback']!r}")
        elif args.list:
            r = await client.request("devices")
            _out(args, r, "\n".join([f"capture:  {', '.join(r['capture'])}",
                                      f"playback: {', '.join(r['playback'])}",
                                      f"wav:NAME files live in {r['recordings_dir']}"]))
        else:
            s = await client.request("status")
            a = s["audio"]
            _out(args, a, f"capture {a['capture']!r}, playback {a['playback']!r}"
                 + (f"\nlast error: {a['error']}" if a["error"] else ""))
    return 0


async def _wait_ready(args: argparse.Namespace) -> int:
    """`kadtalk wait-ready`: poll the socket until a daemon answers (it appears once the daemon
    has bound its UDP port), then wait for a `network` event saying it has joined, unless it has
    nothing to join through (the first node of a network)."""
    from .client import ControlClient, NotRunning
    from .config import default_socket

    path = args.socket or default_socket()
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            client = await ControlClient.connect(path)
            break
        except NotRunning as e:
            if time.monotonic() >= deadline:
                raise NotRunning(f"{e} (waited {args.timeout:g} s)") from None
            await asyncio.sleep(0.1)

    def ready(e: dict) -> bool:
        return e.get("event") == "network" and (e["reachable"] or not e.get("bootstrap"))

    try:
        try:
            network = await client.wait_event(ready, max(deadline - time.monotonic(), 0.1))
        except asyncio.TimeoutError:
            print(f"kadtalk: the daemon on {path} runs but has not joined its network after "
                  f"{args.timeout:g} s; is the bootstrap node up? (`kadtalk status` shows it)",
                  file=sys.stderr)
            return 1
        hello = next(e for e in client.seen if e.get("event") == "hello")
        text = (f"ready: node {hello['node_id']}, " + (
            f"joined ({_plural(network['table_size'], 'peer')})" if network["reachable"]
            else "nothing to join through: the first node of its network"))
        _out(args, {"ready": True, "node_id": hello["node_id"], "network": network}, text)
        return 0
    finally:
        await client.close()


async def _answer_when_ringing(client: Any, args: argparse.Namespace) -> int:
    """`kadtalk answer --wait N`: answer the call that rings now, or the next one within N s.
    Events count from the connection, so a call that rings while we ask is not missed."""
    call = (await client.request("status"))["call"]
    if not (call and call["role"] == "callee" and call["state"] == "ringing"):
        try:
            await client.wait_event(lambda e: e.get("event") == "incoming", timeout=args.wait)
        except asyncio.TimeoutError:
            print(f"kadtalk: no call rang within {args.wait:g} s", file=sys.stderr)
            return 1
    r = await client.request("answer")
    _out(args, r, "answered")
    return 0


_MARK = {True: "ok  ", False: "fix ", None: "note"}


async def _doctor(client: Any, args: argparse.Namespace) -> int:
    """`kadtalk doctor`: progress while the daemon checks, then one line a finding."""
    since = len(client.seen)
    if not args.json:
        print(f"checking (at most {args.seconds:g} s) ...", flush=True)
    task = asyncio.ensure_future(client.request("doctor", seconds=args.seconds,
                                                timeout=args.seconds + 10))
    while not task.done():
        try:
            event = await client.wait_event(lambda e: e.get("event") == "doctor", timeout=0.2,
                                            since=since)
        except asyncio.TimeoutError:
            continue
        since = client.seen.index(event) + 1
        if not args.json and event.get("step") != "done":
            print(f"  {event['text']}", flush=True)
    r = task.result()
    _out(args, r, "\n".join(f"{_MARK[f['ok']]}  {f['text']}" for f in r["findings"]))
    return r["code"]


async def _send(client: Any, args: argparse.Namespace) -> int:
    """`kadtalk send`: store and send, then wait for the receipt (or the session's end)."""
    since = len(client.seen)
    r = await client.request("send", to=args.target, text=args.text)
    who, message_id = r["name"] or r["peer"], r["message_id"]
    if args.wait <= 0:
        _out(args, r, f"sending to {who} (message {message_id})")
        return 0

    def outcome(e: dict) -> bool:
        return (e.get("event") == "receipt" and e.get("message_id") == message_id) or (
            e.get("event") == "message_pending" and message_id in e.get("message_ids", ()))

    def mailed(e: dict) -> bool:
        return e.get("event") in ("message_stored", "message_not_stored") \
            and e.get("message_id") == message_id

    deadline = time.monotonic() + args.wait
    try:
        event = await client.wait_event(outcome, timeout=args.wait, since=since)
    except asyncio.TimeoutError:
        network = (await client.request("status"))["network"]
        event = {"event": "message_pending", "reason": "no receipt yet" if network["reachable"]
                 else "this node knows no peers yet: it goes once it has joined"}
    if event["event"] == "receipt":
        _out(args, {**r, "state": "delivered"}, f"delivered to {who}")
        return 0
    reason = event["reason"].replace("_", " ")
    mail = None  # the session ended first: the daemon mails it, within what is left of --wait
    if event["event"] == "message_pending" and "message_ids" in event \
            and deadline > time.monotonic():
        try:
            mail = await client.wait_event(mailed, timeout=deadline - time.monotonic(),
                                           since=since)
        except asyncio.TimeoutError:
            pass
    if mail is not None and mail["event"] == "message_stored":
        _out(args, {**r, "state": "stored", "reason": event["reason"],
                    "holders": mail["holders"]},
             f"stored in {who}'s DHT mailbox (held by {_plural(mail['holders'], 'node')}): "
             f"{who} gets it when it comes online, even if this daemon is off by then (not "
             f"delivered now: {reason})")
        return 2
    _out(args, {**r, "reason": event["reason"]},
         f"pending: not delivered to {who} yet ({reason}); it is sent again at the next "
         f"session with {who}")
    return 2


# What a terminal must not get from a peer's text: C0 and C1 controls but tab and newline
# (cursor moves, line erasure, OSC titles and hyperlinks, hidden text: ESC, CSI, CR, BS, ...),
# DEL, the bidi embeddings, overrides and isolates (they reorder what follows on the line), and
# the Unicode line and paragraph separators. Each is shown as its escape (\x1b, \u202e).
_UNSAFE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (9, 10)}
_UNSAFE |= {c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A),
                                         0x2028, 0x2029)}


def _shown(text: str, indent: int = 0) -> str:
    """Text from a peer (a message) as the CLI prints it: nothing in it acts on the terminal
    (`_UNSAFE`), and its further lines start `indent` columns in, under its first, so none
    can pass for a line of ours. The daemon stores and sends it unchanged (JSON escapes it)."""
    return text.translate(_UNSAFE).replace("\n", "\n" + " " * indent)


def _format_messages(r: dict) -> str:
    """One line a message, oldest first: time, who, direction and state, text."""
    lines = []
    for m in r["messages"]:
        at = m["received"] if m["direction"] == "in" else m["sent"]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(at))
        who = _shown(m.get("name") or m["peer"][:12])
        arrow = f"<- {who}" if m["direction"] == "in" else f"-> {who}"
        state = "" if m["direction"] == "in" else f" [{m['state']}]"
        head = f"{when}  {arrow[:28]:<28}{state:<12} "
        lines.append(head + _shown(m["text"], len(head)))  # further lines aligned
    return "\n".join(lines) or "no messages yet"


def _format_presence(r: dict) -> str:
    lines = [f"you are {r['status']}"]
    for c in r["contacts"]:
        seen = c.get("last_seen")
        when = f" (last heard {time.strftime('%Y-%m-%d %H:%M', time.localtime(seen))})" \
            if seen and c["status"] == "offline" else ""
        lines.append(f"  {c['name']:<24} {c['status']}{when}")
    return "\n".join(lines)


def _format_requests(r: dict) -> str:
    lines = []
    for q in r["incoming"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(q["made"]))
        head = f"{when}  from {q['peer']}: "
        lines.append(head + _shown(q["note"] or "(no note)", len(head)))
    for q in r["outgoing"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(q["made"]))
        lines.append(f"{when}  to   {q['peer']}  [{q['state']}]")
    return "\n".join(lines) or "no contact requests"


async def _contact(client: Any, args: argparse.Namespace) -> int:
    if args.action == "requests":
        r = await client.request("contact_requests")
        _out(args, r, _format_requests(r))
        return 0
    if args.peer is None:
        print(f"usage: kadtalk contact {args.action} ID", file=sys.stderr)
        return 2
    extra = {"name": args.name} if args.name else {}
    if args.action == "request":
        r = await client.request("contact_request", to=args.peer, note=args.note, **extra)
        _out(args, r, f"contact request sent to {r['peer']} (pending until it answers)")
    elif args.action == "accept":
        r = await client.request("contact_accept", peer=args.peer, **extra)
        _out(args, r, f"accepted: {r['peer']} is your contact {_shown(r['name'])}")
    else:
        r = await client.request("contact_decline", peer=args.peer, tell=args.tell)
        _out(args, r, f"declined {r['peer']}" + (" (told)" if r["told"] else " (not told)"))
    return 0


async def _call(client: Any, args: argparse.Namespace) -> int:
    since = len(client.seen)
    r = await client.request("dial", to=args.target)
    session = r["session"]
    who = r["name"] or r["peer"]
    if args.no_wait:
        _out(args, r, f"calling {who}")
        return 0
    if not args.json:
        print(f"calling {who} ...", flush=True)
    deadline = time.monotonic() + args.timeout
    shown = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            print("kadtalk: still not answered; the call goes on (kadtalk hangup ends it)",
                  file=sys.stderr)
            return 2
        event = await client.wait_event(
            lambda e: e.get("event") == "call" and e.get("session") == session
            and e.get("state") != shown, timeout=left, since=since)
        since = client.seen.index(event) + 1
        shown = event["state"]
        if args.json:
            print(json.dumps(event), flush=True)
        if shown == "talking":
            if not args.json:
                print(f"talking with {who}", flush=True)
            return 0
        if shown == "ended":
            if not args.json:
                print(f"call ended: {event.get('reason', '?').replace('_', ' ')}", flush=True)
            return 1
        if not args.json:
            print(f"  {shown.replace('_', ' ')}", flush=True)


async def _contacts(client: Any, args: argparse.Namespace) -> int:
    a = args.args
    need = {"list": 0, "add": 2, "rename": 2, "remove": 1}[args.action]
    if len(a) != need:
        usage = {"list": "contacts list", "add": "contacts add NAME ID",
                 "rename": "contacts rename NAME-OR-ID NEW-NAME", "remove": "contacts remove NAME-OR-ID"}
        print(f"usage: kadtalk {usage[args.action]}", file=sys.stderr)
        return 2
    if args.action == "list":
        r = await client.request("contacts")
        shown = {} if args.json else {  # each one's presence (`kadtalk presence` says more)
            c["peer"]: c["status"] for c in (await client.request("presence"))["contacts"]}
        text = "\n".join(f"{c['name']:<24} {c['peer']}  {shown.get(c['peer'], '')}"
                         for c in r["contacts"]) or "no contacts"
        _out(args, r, text)
        return 0
    if args.action == "add":
        name, peer = a
        from .config import parse_id

        if parse_id(name) is not None and parse_id(peer) is None:
            name, peer = peer, name  # `contacts add ID NAME` works too
        if not args.replace:  # the daemon would rename the contact that has this ID
            from .config import name_key

            have = {c["peer"]: c["name"] for c in (await client.request("contacts"))["contacts"]}
            other = have.get(parse_id(peer) or "")
            if other is not None and name_key(other) != name_key(name):
                print(f"kadtalk: {parse_id(peer)} is already your contact {other!r}; "
                      f"`kadtalk contacts rename {other} {name}` renames it (or add --replace)",
                      file=sys.stderr)
                return 1
        r = await client.request("add_contact", name=name, peer=peer)
        _out(args, r, f"added {r['name']} ({r['peer']})")
    elif args.action == "rename":
        r = await client.request("rename_contact", who=a[0], name=a[1])
        _out(args, r, f"renamed to {r['name']}")
    else:
        r = await client.request("remove_contact", who=a[0])
        _out(args, r, f"removed {r['name']}")
    return 0


_ACCEPT = {"anyone": "calls accepted from anyone",
           "contacts": "calls accepted from contacts only"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


async def _newer_status(client: Any, field: str) -> dict | None:
    """The daemon's status if it has `field` (a daemon started before an upgrade has not)."""
    s = await client.request("status")
    if field not in s:
        print(f"kadtalk: the running daemon is older than this command and does not report "
              f"{field!r}; restart it", file=sys.stderr)
        return None
    return s


async def _block(client: Any, args: argparse.Namespace) -> int:
    """block WHO, unblock WHO, or (block alone) the list, with contact names."""
    names = {c["peer"]: c["name"] for c in (await client.request("contacts"))["contacts"]}

    def who(peer: str) -> str:
        return f"{peer}  {names[peer]}" if peer in names else peer

    if args.who is None:
        s = await _newer_status(client, "blocked")
        if s is None:
            return 1
        blocked = s["blocked"]
        _out(args, {"blocked": blocked},
             "\n".join(who(p) for p in blocked) or "nobody is blocked")
        return 0
    r = await client.request(args.command, who=args.who)
    done = "blocked" if args.command == "block" else "unblocked"
    _out(args, r, f"{done} {args.who}; blocked now: {_plural(len(r['blocked']), 'node')}"
         if r["blocked"] else f"{done} {args.who}; nobody is blocked now")
    return 0


def _fmt_duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02}:{s % 60:02}" if s >= 3600 else f"{s // 60:02}:{s % 60:02}"


def _relay_line(r: dict, nat: str | None) -> str:
    if not r["enabled"]:
        return "relay    off ([relay] enabled = false): calls that need a relay cannot connect"
    need = (f"calls may need one; holding {', '.join(r['held'])}" if r["needed"] and r["held"]
            else "calls may need one; none found yet" if r["needed"]
            else "calls need none" if nat == "none" else "not known yet whether calls need one")
    serve = f", relaying for {r['relayed_for']}" if r["serving"] else ""
    return f"relay    {need}{serve}"


def _format_status(s: dict) -> str:
    n = s["network"]
    lines = [
        f"node     {s['node_id']}",
        f"udp      {n['host']}:{n['port']}",
        f"public   {n.get('public_address') or 'not known yet'}, NAT: {n.get('nat', 'unknown')}",
    ] + ([_relay_line(n["relay"], n.get("nat"))] if "relay" in n else []) + [
        f"network  {_plural(n['table_size'], 'peer')} in the routing table, "
        + ("reachable" if n["reachable"] else "not connected yet"),
        f"contacts {s['contacts']}",
    ]
    if "accept" in s and "blocked" in s:  # not from a daemon started before an upgrade
        lines.append(f"calls    {_ACCEPT[s['accept']][len('calls '):]}, " + (
            f"{_plural(len(s['blocked']), 'node')} blocked" if s["blocked"] else "nobody blocked"))
    c = s.get("call")
    if c:
        who = c["name"] or c["peer"]
        line = f"call     {c['state'].replace('_', ' ')} {'to' if c['role'] == 'caller' else 'from'} {who}"
        if c["state"] == "talking":
            line += f", {_fmt_duration(c['duration'])}" + (", muted" if c["muted"] else "")
        lines.append(line)
    else:
        lines.append("call     none")
    a = s["audio"]
    lines.append(f"audio    capture {a['capture']!r}, playback {a['playback']!r}")
    if a.get("error"):
        lines.append(f"         last error: {a['error']}")
    missed = (s.get("history") or {}).get("missed_calls")  # None: an older daemon, or unread
    if missed is not None:
        lines.append(f"history  {_plural(missed, 'missed call')} (`kadtalk history` lists them)"
                     if missed else "history  no missed calls")
    unread = (s.get("history") or {}).get("unread_messages")
    if unread:
        lines.append(f"messages {_plural(unread, 'new message')} (`kadtalk messages` shows them)")
    return "\n".join(lines)


def _format_history(r: dict) -> str:
    """One line a call: time, who, what (direction and outcome), how long it talked."""
    lines = []
    for c in r["calls"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c["started"]))
        who = c.get("contact") or c.get("name") or c["peer"]
        what = f"{'incoming' if c['direction'] == 'in' else 'outgoing'}, {c['outcome']}"
        if c["outcome"] in ("declined", "failed") and c.get("reason") not in (None, "declined"):
            what += f" ({c['reason'].replace('_', ' ')})"
        talked = _fmt_duration(c["duration"]) if c["outcome"] == "answered" else ""
        lines.append(f"{when}  {who[:24]:<24}  {what:<36} {talked}".rstrip())
    return "\n".join(lines) or "no calls yet"


def _format_event(e: dict) -> str:
    kind = e.get("event")
    stamp = time.strftime("%H:%M:%S")
    if kind == "incoming":
        return f"{stamp} incoming call from {e.get('name') or e['peer']} ({e['address']})"
    if kind == "call":
        who = e.get("name") or e.get("peer")
        text = f"{stamp} call {e.get('state')} {'to' if e.get('role') == 'caller' else 'from'} {who}"
        if e.get("reason"):
            text += f": {e['reason'].replace('_', ' ')}"
        return text
    if kind == "quality":
        return (f"{stamp} quality rx {e.get('rx_kbps')} kbit/s, codec {e.get('bitrate_kbps')} kbit/s, "
                f"loss {e.get('loss', 0) * 100:.1f}%, jitter {e.get('jitter_ms')} ms, "
                f"latency ~{e.get('latency_ms')} ms")
    if kind == "network":
        return (f"{stamp} network {_plural(e['table_size'], 'peer')}, "
                + ("reachable" if e["reachable"] else "unreachable"))
    if kind == "missed":
        return f"{stamp} missed call from {e.get('name') or e['peer']} ({e.get('reason')})"
    if kind == "audio_error":
        return f"{stamp} audio error: {e['message']}"
    if kind == "hello":
        return f"{stamp} connected to node {e['node_id']}"
    if kind == "contacts":
        return f"{stamp} contacts changed: {_plural(len(e['contacts']), 'contact')}"
    if kind == "audio":
        return f"{stamp} audio devices: capture {e['capture']!r}, playback {e['playback']!r}"
    if kind == "shutdown":
        return f"{stamp} the daemon is shutting down"
    if kind == "message":
        head = f"{stamp} message from {_shown(e.get('name') or e['peer'])}: "
        return head + _shown(e["text"], len(head))
    if kind == "presence":
        return f"{stamp} {_shown(e.get('name') or e['peer'])} is {e['status']}"
    if kind == "contact_request":
        head = f"{stamp} contact request from {e['peer']}: "
        return head + _shown(e["note"] or "(no note)", len(head))
    if kind == "contact_reply":
        return (f"{stamp} {e['peer']} " + (f"accepted: your contact {_shown(e['name'])}"
                                            if e["accepted"] else "declined your request"))
    if kind == "receipt":
        return f"{stamp} message {e['message_id'][:8]} delivered to {e.get('name') or e['peer']}"
    if kind == "message_pending":
        return (f"{stamp} {_plural(len(e['message_ids']), 'message')} to "
                f"{e.get('name') or e['peer']} pending ({e['reason'].replace('_', ' ')})")
    if kind == "message_stored":
        return (f"{stamp} message {e['message_id'][:8]} to {e.get('name') or e['peer']} stored "
                f"in its DHT mailbox (held by {_plural(e['holders'], 'node')})")
    if kind == "message_not_stored":
        return (f"{stamp} message {e['message_id'][:8]} to {e.get('name') or e['peer']} could "
                f"not be stored in its DHT mailbox ({e['reason'].replace('_', ' ')}); pending")
    if kind == "contact_request_stored":
        return f"{stamp} contact request to {e['peer']} stored in its DHT mailbox"
    if kind == "volume":
        return f"{stamp} call volume {e['volume']} %, ring tone {e['ring']} %"
    return f"{stamp} {json.dumps(e)}"


# units of the `stats` fields (docs/control.md); the others are counts
_SECONDS = {"jitter", "target_delay"}
_BYTES = {"bytes", "bytes_sent", "payload_bytes_sent"}
_BITRATES = {"bitrate", "frame_bitrate"}
# clock readings for benchmarks (transport/audiopump.py), no use to a reader: --json has them
_HIDDEN = {"capture_epoch", "playback_epoch"}


def _stat(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value) if isinstance(value, str) else str(value)
    if key in _SECONDS:
        return f"{value * 1000:.1f} ms"
    if key in _BYTES:
        return f"{value} B" if value < 1000 else f"{value / 1000:.1f} kB" if value < 10**6 \
            else f"{value / 10**6:.1f} MB"
    if key in _BITRATES:
        return f"{value / 1000:g} kbit/s"
    if key == "loss_perc":
        return f"{value} %"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _format_stats(r: dict) -> str:
    c = r["call"]
    head = (f"{'current' if r['current'] else 'last'} call with {c.get('name') or c.get('peer')}: "
            f"{c.get('state')}" + (f" ({c['reason'].replace('_', ' ')})" if c.get("reason") else "")
            + f", {_fmt_duration(c.get('duration') or 0)} talking")
    if c.get("rtt_ms") is not None:
        head += f", round trip {c['rtt_ms']:.1f} ms"
    lines = [head]
    for group, title in (("stats", "network"), ("media", "audio")):
        values = dict(c.get(group) or {})
        parts = []
        for way, suffix in (("received", ""), ("sent", "_sent")):  # packets and their bytes
            if f"packets{suffix}" in values and f"bytes{suffix}" in values:
                parts.append(f"{way} {_plural(values.pop(f'packets{suffix}'), 'packet')} "
                             f"({_stat('bytes', values.pop(f'bytes{suffix}'))})")
        parts += [f"{k.replace('_', ' ')} {_stat(k, v)}" for k, v in values.items()
                  if k not in _HIDDEN]
        if parts:
            lines.append(f"{title + ':':<9}" + ", ".join(parts))
    return "\n".join(lines)
