"""Who is who and who may ring: the address book (contacts.json), the block list (blocked.json and
[calls] block), contacts-only mode ([calls] accept) and the per-caller limit
([calls] per_caller_per_minute), with their control commands. The session layer asks `trusted`
under a flood: the user's contacts get an admission budget of their own (SessionSettings.trusted).
"""

from __future__ import annotations

import collections
from typing import Any, Callable

from . import protocol
from .config import Config, Contacts, load_blocked, save_blocked


class Callers:
    def __init__(self, config: Config, broadcast: Callable[[dict], None]):
        self.config = config
        self.broadcast = broadcast
        self.contacts = Contacts(config.contacts_path)  # ConfigError names a broken file
        self.blocked = load_blocked(config.blocked_path)  # from `kadtalk block`; ConfigError if broken
        self._recent_calls: dict[str, collections.deque] = {}  # caller -> times it rang, last minute
        self.added: Callable[[str], None] = lambda peer: None  # app/presence.py: tell it now

    def name_of(self, peer: str) -> str | None:
        return self.contacts.name_of(peer)

    def trusted(self, peer_id: int) -> bool:
        """Is this caller one of the user's contacts? Read at every call attempt, so a contact
        added while the daemon runs counts at once."""
        return f"{peer_id:040x}" in self.contacts.by_id

    def target(self, msg: dict, key: str = "to") -> str:
        """The node ID a request names by ID or contact name, else a bad request."""
        text = msg.get(key)
        if not isinstance(text, str) or not text.strip():
            raise protocol.BadRequest("bad_argument", f'"{key}" must be a node ID or a contact name')
        node_id = self.contacts.resolve(text)
        if node_id is None:
            raise protocol.BadRequest(
                "unknown_contact", f"{text!r} is neither a node ID (40 hex digits) nor a contact"
            )
        return node_id

    def refusal(self, peer: str, now: float) -> str | None:
        """Why a verified caller must not ring: blocked, not a contact, or calling too often."""
        if peer in self.config.block or peer in self.blocked:
            return "blocked"
        if self.config.accept == "contacts" and self.contacts.name_of(peer) is None:
            return "not_a_contact"
        recent = self._recent_calls.setdefault(peer, collections.deque())
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self.config.calls_per_minute:
            return "too_many_calls"
        recent.append(now)
        if len(self._recent_calls) > 1024:  # forget callers with nothing recent
            self._recent_calls = {p: q for p, q in self._recent_calls.items() if q and q[-1] > now - 60}
        return None

    # -- commands -------------------------------------------------------------------------------

    def cmd_block(self, client: Any, msg: dict) -> dict:
        peer = self.contacts.resolve(msg.get("who"))
        if peer is None:
            raise protocol.BadRequest("bad_argument", '"who" must be a node ID or a contact name')
        if peer not in self.blocked:
            self.blocked.append(peer)
            self._save_blocked()
        return {"blocked": self._blocked_list()}

    def cmd_unblock(self, client: Any, msg: dict) -> dict:
        peer = self.contacts.resolve(msg.get("who"))
        if peer in self.config.block:
            raise protocol.BadRequest(
                "bad_argument", f"{peer} is blocked in {self.config.config_dir / 'config.toml'}")
        if peer is None or peer not in self.blocked:
            raise protocol.BadRequest("bad_argument", f"{msg.get('who')!r} is not blocked")
        self.blocked.remove(peer)
        self._save_blocked()
        return {"blocked": self._blocked_list()}

    def _blocked_list(self) -> list[str]:
        return sorted(set(self.config.block) | set(self.blocked))

    def _save_blocked(self) -> None:
        try:
            save_blocked(self.config.blocked_path, self.blocked)
        except OSError as e:
            raise protocol.BadRequest(
                "io_error", f"cannot save {self.config.blocked_path}: {e.strerror}") from None

    def cmd_accept(self, client: Any, msg: dict) -> dict:
        mode = msg.get("from")
        if mode not in ("anyone", "contacts"):
            raise protocol.BadRequest("bad_argument", '"from" must be "anyone" or "contacts"')
        try:
            self.config.keep("accept", mode)  # in settings.json: kept across restarts
        except OSError as e:
            raise protocol.BadRequest(
                "io_error", f"cannot save {self.config.settings_path}: {e.strerror}") from None
        return {"accept": mode}

    def cmd_contacts(self, client: Any, msg: dict) -> dict:
        return {"contacts": self._contact_list()}

    def _contact_list(self) -> list[dict[str, str]]:
        return [{"peer": c["id"], "name": c["name"]} for c in self.contacts.list()]

    def _contact_op(self, action: Callable[[], dict]) -> dict:
        try:
            entry = action()
        except ValueError as e:
            raise protocol.BadRequest("bad_argument", str(e)) from None
        except KeyError as e:
            raise protocol.BadRequest("unknown_contact", e.args[0]) from None
        except OSError as e:
            raise protocol.BadRequest(
                "io_error", f"cannot save {self.contacts.path}: {e.strerror}") from None
        self.broadcast({"event": "contacts", "contacts": self._contact_list()})
        return {"peer": entry["id"], "name": entry["name"]}

    def cmd_add_contact(self, client: Any, msg: dict) -> dict:
        known = set(self.contacts.by_id)
        reply = self._contact_op(lambda: self.contacts.add(msg.get("peer"), msg.get("name")))
        if reply["peer"] not in known:
            self.added(reply["peer"])  # a new contact: our status goes to it now
        return reply

    def cmd_rename_contact(self, client: Any, msg: dict) -> dict:
        return self._contact_op(lambda: self.contacts.rename(msg.get("who"), msg.get("name")))

    def cmd_remove_contact(self, client: Any, msg: dict) -> dict:
        return self._contact_op(lambda: self.contacts.remove(msg.get("who")))
