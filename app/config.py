"""The daemon's settings and files: XDG paths, the TOML config, contacts and saved peers.

Files in the config directory (``$XDG_CONFIG_HOME/kadtalk``, else ``~/.config/kadtalk``):

- ``config.toml``: settings (all optional; flags override them);
- ``identity.pem``: the identity key (kadtalk.node.identity);
- ``contacts.json``: the user's address book, names for node IDs;
- ``peers.json``: the routing table's best contacts, saved at shutdown and loaded at start so
  the daemon rejoins without a bootstrap node;
- ``settings.json``: the settings a control client changed (`KEPT`: the accept mode, the call
  and ring volumes), kept across restarts; config.toml is never written (`Config.keep`).

A file that exists but cannot be read or parsed (truncated, binary, nested too deeply, numbers
too long, wrong types) is a ConfigError that names the file; it is never replaced silently
(``peers.json``, a cache, is moved aside to ``peers.json.bad`` with a warning). Files are saved
atomically through ``.NAME.HEX.tmp``; ones a killed save left are removed at start
(`remove_temporaries`).

Recordings chosen by a control client (``set_audio`` ``wav:NAME``) go to ``[audio]
recordings_dir``, by default ``$XDG_DATA_HOME/kadtalk/recordings`` (``~/.local/share/...``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kadtalk.node.relay.settings import RelaySettings
from kadtalk.node.routing.layer import DEFAULT_SETTINGS, RoutingSettings
from kadtalk.node.routing.table import MAX_BUCKET_BITS

log = logging.getLogger(__name__)

DEFAULT_PORT = 5004
DEFAULT_WEB_PORT = 8080
MAX_NAME = 64
MAX_CONTACTS = 1000
MAX_PEERS = 64
MAX_VOLUME = 200  # percent: [audio] volume, [calls] ring_volume
# Settings a control client may change (the GUI's settings page, `kadtalk accept`), kept in
# settings.json: Config field -> its config.toml key
KEPT = {"accept": "[calls] accept", "volume": "[audio] volume",
        "ring_volume": "[calls] ring_volume"}


class ConfigError(Exception):
    """A settings or state file is unusable; the message names the file and the problem."""


def _xdg(variable: str, fallback: Path) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else fallback


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", Path.home() / ".config") / "kadtalk"


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", Path.home() / ".local" / "share") / "kadtalk"


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/kadtalk``; without XDG_RUNTIME_DIR, ``/tmp/kadtalk-UID``."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(base):
        return Path(base) / "kadtalk"
    return Path("/tmp") / f"kadtalk-{os.getuid()}"


def default_socket() -> Path:
    """The control socket: $KADTALK_SOCKET, else ``runtime_dir()/control.sock``."""
    env = os.environ.get("KADTALK_SOCKET", "")
    return Path(env) if env else runtime_dir() / "control.sock"


def private_dir(path: Path) -> Path:
    """Create ``path`` owner-only (0700) if missing; refuse one that another user owns or that
    others can enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(f"{path} belongs to another user (uid {info.st_uid}); choose another path")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


@dataclass
class Config:
    """Settings: ``config.toml`` sections [network], [audio], [control], [web], [log], [calls],
    [hooks] (app/hooks.py), [relay] (kadtalk.node.relay.RelaySettings: `relay_settings`),
    [routing] (kadtalk.node.routing.layer.RoutingSettings: `routing_settings`)."""

    host: str = "0.0.0.0"  # [network] host
    port: int = DEFAULT_PORT  # [network] port
    bootstrap: list[str] = field(default_factory=list)  # [network] bootstrap = ["HOST:PORT"]
    # [network] event_loop: "uvloop" (default; asyncio's when uvloop is not installed) or
    # "asyncio": uvloop's loop costs less per datagram (a relayed call: docs/results.md "Relay cost")
    event_loop: str = "uvloop"
    capture: str = "default"  # [audio] capture (ALSA PCM name, or none / tone:HZ / wav:PATH)
    playback: str = "default"  # [audio] playback (ALSA PCM name, or none / wav:PATH)
    recordings_dir: str = ""  # [audio] recordings_dir: where clients' wav: files live
    volume: int = 100  # [audio] volume: calls' playback volume, percent (0-200)
    socket: str = ""  # [control] socket (default: runtime dir)
    web: bool = False  # [web] enabled
    web_host: str = "127.0.0.1"  # [web] host
    web_port: int = DEFAULT_WEB_PORT  # [web] port
    log_level: str = "info"  # [log] level
    log_format: str = "text"  # [log] format: text, or json (one object a line, for journald etc.)
    accept: str = "anyone"  # [calls] accept: "anyone", or "contacts" (only callers in contacts ring)
    block: list[str] = field(default_factory=list)  # [calls] block = ["ID", ...]: never ring
    calls_per_minute: int = 3  # [calls] per_caller_per_minute: more calls from one caller are refused
    auto_answer: str = "none"  # [calls] auto_answer: "none", or "contacts" (a door phone)
    ring_tone: str = "tone"  # [calls] ring_tone: "tone" (built in), "none", or a WAV file's path
    ring_device: str = ""  # [calls] ring_device: playback device to ring on ("": the playback one)
    ring_volume: int = 100  # [calls] ring_volume: the ring tone's volume, percent (0-200)
    hooks: dict[str, list[str]] = field(default_factory=dict)  # [hooks] on_EVENT = [argv]
    hook_timeout: float = 10.0  # [hooks] timeout: seconds before a hook is killed
    relay_enabled: bool = True  # [relay] enabled: false turns relays off (no calls through them)
    # [relay] serve: auto (relay for others, within the caps below, only while the NAT check
    # finds this node at its own public address), always, never (docs/protocol.md §21)
    relay_serve: str = "auto"
    relay_forward_private: bool = False  # [relay] forward_private: relay to LAN addresses
    relay_max_allocations: int = 64  # [relay] max_allocations: peers relayed for at once
    relay_max_per_host: int = 4  # [relay] max_per_host
    relay_allocation_rate: int = 40_000  # [relay] allocation_rate: bytes/s per relayed call
    relay_total_rate: int = 1_000_000  # [relay] total_rate: bytes/s relayed in all
    relay_call_relays: int = 2  # [relay] call_relays: relays held for our calls when NATed
    # [routing] other_addresses: take, prove and name the IPv6 address a dual-stack table entry
    # announces (docs/protocol.md §23 "The other address"); the node's own default
    routing_other_addresses: bool = DEFAULT_SETTINGS.other_addresses
    # [routing] bucket_bits: Kademlia's b bits a hop (1 to MAX_BUCKET_BITS; 1: the paper's table,
    # the node's default): quicker lookups for more datagrams a join and a larger table
    # (docs/design-decisions.md "Lookup latency: b bits a hop (bucket_bits)")
    routing_bucket_bits: int = DEFAULT_SETTINGS.bucket_bits
    # [routing] refresh_groups: with bucket_bits > 1, the hourly refresh one lookup a prefix
    # group rather than one a bucket: about b = 1's refresh datagrams for most of b's gain
    # (docs/design-decisions.md "A join and hourly refresh by prefix group"); no effect at 1
    routing_refresh_groups: bool = DEFAULT_SETTINGS.refresh_groups
    config_dir: Path = field(default_factory=config_dir)  # not in the file: where it lives
    # not in the file: the KEPT settings as config.toml (or the default) gives them, and the
    # entries of settings.json in force (name -> {"value", "over"}: see `keep`)
    from_file: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.from_file = {name: getattr(self, name) for name in KEPT}

    @property
    def settings_path(self) -> Path:
        return self.config_dir / "settings.json"

    def keep(self, name: str, value: Any) -> None:
        """Set a KEPT setting a control client changed, saved first in settings.json (OSError
        if it cannot be: then nothing changes). The entry remembers the config.toml value it
        replaces (`over`), so the later change wins: an edit of config.toml after this one
        prevails at the next start (`load_kept`). A value equal to config.toml's drops the
        entry. Never config.toml itself: it is the user's (comments, a read-only --config)."""
        kept = {k: v for k, v in self.kept.items() if k != name}
        if value != self.from_file[name]:
            kept[name] = {"value": value, "over": self.from_file[name]}
        if kept != self.kept:
            write_private(self.settings_path, json.dumps(kept, indent=1, sort_keys=True) + "\n")
            self.kept = kept
        setattr(self, name, value)

    @property
    def key_path(self) -> Path:
        return self.config_dir / "identity.pem"

    @property
    def contacts_path(self) -> Path:
        return self.config_dir / "contacts.json"

    @property
    def blocked_path(self) -> Path:
        return self.config_dir / "blocked.json"

    @property
    def peers_path(self) -> Path:
        return self.config_dir / "peers.json"

    @property
    def recordings_path(self) -> Path:
        return Path(self.recordings_dir).expanduser() if self.recordings_dir else data_dir() / "recordings"

    @property
    def socket_path(self) -> Path:
        return Path(self.socket) if self.socket else default_socket()

    @property
    def relay_settings(self) -> RelaySettings:
        """The [relay] section as the node's settings (raises ValueError when out of range)."""
        return RelaySettings(
            enabled=self.relay_enabled, serve=self.relay_serve,
            forward_private=self.relay_forward_private,
            max_allocations=self.relay_max_allocations, max_per_host=self.relay_max_per_host,
            allocation_rate=float(self.relay_allocation_rate),
            total_rate=float(self.relay_total_rate), call_relays=self.relay_call_relays)


    @property
    def routing_settings(self) -> RoutingSettings:
        """The [routing] section as the node's routing settings (the rest at their defaults;
        the UDP driver sets `ipv6` from the socket)."""
        return RoutingSettings(other_addresses=self.routing_other_addresses,
                               bucket_bits=self.routing_bucket_bits,
                               refresh_groups=self.routing_refresh_groups)


# TOML layout: section -> {key: (Config field, type)}
_SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "network": {"host": ("host", str), "port": ("port", int), "bootstrap": ("bootstrap", list),
                "event_loop": ("event_loop", str)},
    "audio": {"capture": ("capture", str), "playback": ("playback", str),
              "recordings_dir": ("recordings_dir", str), "volume": ("volume", int)},
    "control": {"socket": ("socket", str)},
    "web": {"enabled": ("web", bool), "host": ("web_host", str), "port": ("web_port", int)},
    "log": {"level": ("log_level", str), "format": ("log_format", str)},
    "calls": {"accept": ("accept", str), "block": ("block", list),
              "per_caller_per_minute": ("calls_per_minute", int),
              "auto_answer": ("auto_answer", str), "ring_tone": ("ring_tone", str),
              "ring_device": ("ring_device", str), "ring_volume": ("ring_volume", int)},
    "hooks": {"on_ring": ("hook:ring", list), "on_call_end": ("hook:call_end", list),
              "on_message": ("hook:message", list), "timeout": ("hook_timeout", float)},
    "relay": {"enabled": ("relay_enabled", bool), "serve": ("relay_serve", str),
              "forward_private": ("relay_forward_private", bool),
              "max_allocations": ("relay_max_allocations", int),
              "max_per_host": ("relay_max_per_host", int),
              "allocation_rate": ("relay_allocation_rate", int),
              "total_rate": ("relay_total_rate", int), "call_relays": ("relay_call_relays", int)},
    "routing": {"other_addresses": ("routing_other_addresses", bool),
                "bucket_bits": ("routing_bucket_bits", int),
                "refresh_groups": ("routing_refresh_groups", bool)},
}
MAX_HOOK_TIMEOUT = 3600.0


def load_config(path: Path | None = None, directory: Path | None = None) -> Config:
    """Settings from ``path`` (default ``DIR/config.toml``); a missing default file gives the
    defaults, a missing named file or a broken one raises ConfigError naming it. Then what
    clients changed since (settings.json, `load_kept`)."""
    directory = Path(directory) if directory is not None else config_dir()
    config = Config(config_dir=directory)
    explicit = path is not None
    path = Path(path) if explicit else directory / "config.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        load_kept(config)
        return config
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:
        # ValueError: an integer of more than 4,300 digits; RecursionError: deep nesting
        raise ConfigError(f"config file {path} is not valid TOML: {str(e)[:200]}") from None
    for section, values in data.items():
        schema = _SCHEMA.get(section)
        if schema is None or not isinstance(values, dict):
            raise ConfigError(
                f"config file {path}: unknown section [{section}] (known: {', '.join(_SCHEMA)})"
            )
        for key, value in values.items():
            if key not in schema:
                raise ConfigError(
                    f"config file {path}: unknown key {key!r} in [{section}] "
                    f"(known: {', '.join(schema)})"
                )
            name, kind = schema[key]
            if name == "routing_bucket_bits" and not (
                    type(value) is int and 1 <= value <= MAX_BUCKET_BITS):
                raise ConfigError(f"config file {path}: [routing] bucket_bits must be an integer "
                                  f"from 1 to {MAX_BUCKET_BITS} (1, the default: the paper's "
                                  f"table), got {_shown(value)}")
            if kind is int and (type(value) is not int):
                raise ConfigError(f"config file {path}: [{section}] {key} must be an integer")
            if kind is float:
                if type(value) not in (int, float) or not 0 < value <= MAX_HOOK_TIMEOUT:
                    raise ConfigError(f"config file {path}: [{section}] {key} must be a number of "
                                      f"seconds, more than 0 and at most {MAX_HOOK_TIMEOUT:g}")
                value = float(value)
            elif kind is bool and type(value) is not bool:
                raise ConfigError(f"config file {path}: [{section}] {key} must be true or false "
                                  f"(no quotes), got {_shown(value)}")
            elif kind is not int and not isinstance(value, kind):
                raise ConfigError(
                    f"config file {path}: [{section}] {key} must be a {kind.__name__}"
                )
            if kind is list and not all(isinstance(v, str) for v in value):
                raise ConfigError(f"config file {path}: [{section}] {key} must list strings")
            if name.startswith("hook:"):
                if not value or not value[0].strip() or any("\0" in v for v in value):
                    raise ConfigError(
                        f"config file {path}: [hooks] {key} must be a command as a list: the "
                        'program, then its arguments (e.g. ["/usr/local/bin/led", "on"]); it '
                        "is run directly, never through a shell")
                config.hooks[name[5:]] = list(value)
                continue
            setattr(config, name, value)
    for name in ("port", "web_port"):
        if not 0 <= getattr(config, name) < 65536:
            raise ConfigError(f"config file {path}: port {getattr(config, name)} out of range")
    if config.accept not in ("anyone", "contacts"):
        raise ConfigError(f'config file {path}: [calls] accept must be "anyone" or "contacts"')
    if config.auto_answer not in ("none", "contacts"):
        raise ConfigError(f'config file {path}: [calls] auto_answer must be "none" or "contacts"')
    for name in ("volume", "ring_volume"):
        if not 0 <= getattr(config, name) <= MAX_VOLUME:
            raise ConfigError(
                f"config file {path}: {KEPT[name]} must be a percentage, 0-{MAX_VOLUME}")
    if config.calls_per_minute < 1:
        raise ConfigError(f"config file {path}: [calls] per_caller_per_minute must be at least 1")
    for entry in config.block:
        if parse_id(entry) is None:
            raise ConfigError(f"config file {path}: [calls] block: {entry!r} is not a node ID "
                              "(40 hex digits)")
    config.block = [parse_id(entry) for entry in config.block]
    try:
        config.relay_settings  # noqa: B018 -- checked here, so a bad value names the file
    except ValueError as e:
        raise ConfigError(f"config file {path}: [relay] {e} (serve: auto, always or never; "
                          "counts and rates positive; call_relays 0 to 8)") from None
    load_kept(config)
    return config


def _shown(value: Any) -> str:
    """A config.toml value as TOML writes it, for an error message (at most 60 characters)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, list, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)  # TOML's quotes and arrays
    else:
        text = str(value)  # numbers, dates and times
    return text if len(text) <= 60 else text[:57] + "..."


def _valid_setting(name: str, value: Any) -> bool:
    if name == "accept":
        return value in ("anyone", "contacts")
    return type(value) is int and 0 <= value <= MAX_VOLUME


def load_kept(config: Config) -> None:
    """Apply settings.json over config.toml's values (`Config.keep`): an entry applies while
    config.toml still gives what it replaced (`over`); once config.toml's value changed, the
    file wins (logged) and the entry is removed. A broken file is a
    ConfigError naming it (as blocked.json)."""
    config.from_file = {name: getattr(config, name) for name in KEPT}
    path = config.settings_path
    data = _read_json(path, "settings file")
    if data is None:
        return
    if not isinstance(data, dict) or not all(
            name in KEPT and isinstance(entry, dict) and set(entry) == {"value", "over"}
            and _valid_setting(name, entry["value"]) and _valid_setting(name, entry["over"])
            for name, entry in data.items()):
        raise ConfigError(f'settings file {path}: expected {{"NAME": {{"value": V, "over": V}}}} '
                          f"with NAME one of {', '.join(KEPT)}; fix it or move it away")
    for name, entry in data.items():
        if entry["over"] != config.from_file[name]:
            log.warning("%s is %r in config.toml, changed since %r was set from a client: "
                     "config.toml's value applies", KEPT[name], config.from_file[name],
                     entry["value"])
            continue
        config.kept[name] = entry
        setattr(config, name, entry["value"])
    if config.kept != data:  # forget what config.toml overrode, so it cannot come back
        try:
            write_private(path, json.dumps(config.kept, indent=1, sort_keys=True) + "\n")
        except OSError as e:
            log.warning("cannot update the settings file %s: %s", path, e)


# -- JSON state files ---------------------------------------------------------------------------


_TEMPORARY = re.compile(r"\.(contacts|blocked|peers|settings)\.json\.[0-9a-f]{12}\.tmp")


def write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically, owner-only, through ``.NAME.HEX.tmp``."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_temporaries(directory: Path) -> list[str]:
    """Remove the temporary files of saves that a SIGKILL or power loss interrupted (only names
    `write_private` makes for kadtalk's own files); the names removed. Two daemons must not
    share a config directory."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if _TEMPORARY.fullmatch(name):
            try:
                os.unlink(directory / name)
            except OSError as e:
                log.warning("cannot remove the left-over temporary file %s: %s", directory / name, e)
            else:
                removed.append(name)
    if removed:
        log.info("removed %d temporary file(s) of an interrupted save in %s", len(removed), directory)
    return removed


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} {path}: {e}") from e
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # also: > 4,300 digits, nested too deeply
        raise ConfigError(f"{what} {path} is not valid JSON ({str(e)[:200]}); fix it or move it "
                          "away") from None


def load_blocked(path: Path) -> list[str]:
    """Callers blocked from the control socket (`kadtalk block`), saved as {"blocked": [ID, ...]}."""
    data = _read_json(path, "block list")
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("blocked"), list) or not all(
        parse_id(entry) for entry in data["blocked"]
    ):
        raise ConfigError(f'block list {path}: expected {{"blocked": [node IDs]}}; fix it or move it away')
    return [parse_id(entry) for entry in data["blocked"]]


def save_blocked(path: Path, blocked: list[str]) -> None:
    write_private(path, json.dumps({"blocked": blocked}, indent=1) + "\n")


def parse_id(text: Any) -> str | None:
    """A node ID as 40 lowercase hex digits, or None when ``text`` is not one."""
    if not isinstance(text, str):
        return None
    text = text.strip().lower()
    if len(text) == 40 and all(c in "0123456789abcdef" for c in text):
        return text
    return None


def name_key(name: str) -> str:
    """What makes two contact names the same: Unicode case folding after compatibility
    normalisation ("Straße" = "STRASSE" = "ＳＴＲＡＳＳＥ")."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def check_name(name: Any) -> str:
    """A contact name: 1-64 printable characters, not a node ID (ValueError otherwise)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a contact name must be a non-empty string")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise ValueError(f"a contact name has at most {MAX_NAME} characters")
    if not name.isprintable():
        raise ValueError("a contact name must be printable text")
    if parse_id(name) is not None:
        raise ValueError("a contact name cannot be a node ID")
    return name


class Contacts:
    """The address book: node ID (hex) -> name, saved in ``contacts.json`` on every change."""

    def __init__(self, path: Path):
        self.path = path
        self.by_id: dict[str, str] = {}
        data = _read_json(path, "contacts file")
        if data is None:
            return
        items = data.get("contacts") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ConfigError(f"contacts file {path}: expected {{\"contacts\": [...]}}")
        for i, item in enumerate(items):
            node_id = parse_id(item.get("id")) if isinstance(item, dict) else None
            try:
                name = check_name(item.get("name")) if isinstance(item, dict) else None
            except ValueError as e:
                raise ConfigError(f"contacts file {path}: entry {i}: {e}") from None
            if node_id is None or name is None:
                raise ConfigError(f"contacts file {path}: entry {i} needs an id and a name")
            other = self.resolve(name)
            if other is not None and other != node_id:
                raise ConfigError(
                    f"contacts file {path}: entry {i}: {name!r} and {self.by_id[other]!r} are the "
                    "same name (names are case-insensitive); rename one")
            self.by_id[node_id] = name

    def list(self) -> list[dict[str, str]]:
        return [{"id": i, "name": n} for i, n in sorted(self.by_id.items(), key=lambda x: x[1].lower())]

    def name_of(self, node_id: str) -> str | None:
        return self.by_id.get(node_id)

    def resolve(self, text: Any) -> str | None:
        """A node ID for an ID or a contact name (case-insensitive), else None."""
        node_id = parse_id(text)
        if node_id is not None:
            return node_id
        if isinstance(text, str):
            wanted = name_key(text.strip())
            for node_id, name in self.by_id.items():
                if name_key(name) == wanted:
                    return node_id
        return None

    def add(self, node_id: Any, name: Any) -> dict[str, str]:
        hex_id = parse_id(node_id)
        if hex_id is None:
            raise ValueError(f"{node_id!r} is not a node ID (40 hex digits)")
        name = check_name(name)
        self._check_unique(name, hex_id)
        if hex_id not in self.by_id and len(self.by_id) >= MAX_CONTACTS:
            raise ValueError(f"at most {MAX_CONTACTS} contacts")
        self.by_id[hex_id] = name
        self.save()
        return {"id": hex_id, "name": name}

    def rename(self, who: Any, name: Any) -> dict[str, str]:
        hex_id = self.resolve(who)
        if hex_id is None or hex_id not in self.by_id:
            raise KeyError(f"no contact {who!r}")
        name = check_name(name)
        self._check_unique(name, hex_id)
        self.by_id[hex_id] = name
        self.save()
        return {"id": hex_id, "name": name}

    def remove(self, who: Any) -> dict[str, str]:
        hex_id = self.resolve(who)
        if hex_id is None or hex_id not in self.by_id:
            raise KeyError(f"no contact {who!r}")
        name = self.by_id.pop(hex_id)
        self.save()
        return {"id": hex_id, "name": name}

    def _check_unique(self, name: str, hex_id: str) -> None:
        key = name_key(name)
        for other, other_name in self.by_id.items():
            if other != hex_id and name_key(other_name) == key:
                raise ValueError(f"another contact is already called {other_name!r}")

    def save(self) -> None:
        write_private(self.path, json.dumps({"contacts": self.list()}, indent=2) + "\n")


def load_peers(path: Path) -> list[tuple[str, tuple[str, int]]]:
    """Saved routing contacts [(hex id, (host, port))]; a broken file is moved aside."""
    try:
        data = _read_json(path, "saved peers file")
        if data is None:
            return []
        peers = []
        for item in data["peers"]:
            node_id = parse_id(item["id"])
            host, port = item["host"], item["port"]
            if (node_id is None or not isinstance(host, str) or not 0 < len(host) <= 253
                    or type(port) is not int or not 0 < port < 65536):
                raise ValueError("bad entry")
            peers.append((node_id, (host, port)))
        return peers[:MAX_PEERS]
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        bad = path.with_name(path.name + ".bad")
        log.warning("saved peers file %s is unusable (%s); moved it to %s", path, e, bad)
        try:
            os.replace(path, bad)
        except OSError:
            pass
        return []


def save_peers(path: Path, peers: list[tuple[str, tuple[str, int]]]) -> None:
    items = [{"id": i, "host": a[0], "port": a[1]} for i, a in peers[:MAX_PEERS]]
    write_private(path, json.dumps({"peers": items}, indent=1) + "\n")
