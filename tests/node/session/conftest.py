"""Helpers: identities of every key type, and two or more session layers wired by hand."""

from __future__ import annotations

from pathlib import Path
from random import Random
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from kadtalk.node.identity import Identity
from kadtalk.node.session import MessageReceived, SessionLayer, SessionSettings
from kadtalk.node.session.presence import ContactReplied, ContactRequested
from kadtalk.transport.memory import MemoryNet, Packet

HELD = (MessageReceived, ContactRequested, ContactReplied)  # held until the owner confirms


def held_id(event: Any) -> bytes:
    """The frame id an owner confirms for a reported TEXT, CONTACT_REQ or CONTACT_REPLY."""
    if type(event) is MessageReceived:
        return event.message_id
    return event.request_id if type(event) is ContactRequested else event.reply_id


WALL = 1_767_225_600.0  # clock offset: now = 0 is 2026-01-01 on the wall clock

_CACHE: dict[str, Identity] = {}


def identity(kind: str = "p256", name: str = "") -> Identity:
    """A cached identity per (kind, name); RSA and DSA keys are slow to make."""
    key = f"{kind}:{name}"
    if key not in _CACHE:
        maker: dict[str, Callable[[], Any]] = {
            "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
            "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
            "rsa": lambda: rsa.generate_private_key(65537, 2048),
            "rsa4096": lambda: rsa.generate_private_key(65537, 4096),
            "rsa8192": _rsa8192,
            "dsa": lambda: _dsa_parameters().generate_private_key(),
            "ed25519": ed25519.Ed25519PrivateKey.generate,
        }
        _CACHE[key] = Identity.from_private_key(maker[kind]())
    return _CACHE[key]


_DSA_PARAMETERS: list = []


def _dsa_parameters():
    """One set of 2,048-bit DSA domain parameters for every DSA test key (making them is slow)."""
    if not _DSA_PARAMETERS:
        _DSA_PARAMETERS.append(dsa.generate_parameters(2048))
    return _DSA_PARAMETERS[0]


def _rsa8192():
    """The largest identity allowed (RSA 8,192 bits), from a file: making one takes seconds to
    minutes. A test key only (tests/node/session/rsa8192.pem); one key, whatever the name."""
    with open(Path(__file__).with_name("rsa8192.pem"), "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


KINDS = ("p256", "p384", "rsa", "dsa", "ed25519")
ALL_SIZES = KINDS + ("p521", "rsa4096", "rsa8192")  # every key type, smallest to largest sizes


def as_int(ident: Identity) -> int:
    return int.from_bytes(ident.node_id, "big")


class Net(MemoryNet):
    """Session layers at string addresses on the in-memory network (zero delay, explicit
    time); `run(now)` takes what every layer has to send and delivers until quiet (it is
    MemoryNet.settle under the name these tests use; MemoryNet.run is not used here).

    `drop(src, dst, data)` returning True loses a datagram; every datagram sent is logged.
    Each layer's owner saves every message it is given and confirms it at once (so its RECEIPT
    goes), as the daemon does after its history write; one named in `unsaved` never does.
    """

    def __init__(self, settings: SessionSettings | None = None, drop=None):
        super().__init__(self._route)
        self.layers: dict[str, SessionLayer] = self.nodes
        self.log: list[tuple[str, str, bytes]] = []
        self.settings = settings
        self.drop = drop
        self.unsaved: set[str] = set()  # owners that cannot save: no RECEIPT goes

    def service(self, addr: Any = None) -> None:
        if addr is None:
            super().service(None)  # each node through this method
            return
        seen = len(self.events[addr])
        super().service(addr)
        if addr in self.unsaved:
            return
        layer = self.nodes[addr]
        confirmed = [e for e in self.events[addr][seen:] if type(e) in HELD
                     and layer.confirm(e.session_id, held_id(e), self.now)]
        if confirmed:
            super().service(addr)  # the RECEIPTs go now

    def _route(self, packet: Packet, now: float) -> tuple:
        self.log.append(packet)
        if self.drop is not None and self.drop(*packet):
            return ()
        return ((0.0, packet),)

    def add(self, name: str, ident: Identity | None = None, settings: SessionSettings | None = None,
            clock: float = WALL) -> SessionLayer:
        ident = ident or identity("p256", name)
        layer = SessionLayer(ident, Random(len(self.layers)), settings or self.settings, clock)
        self.attach(name, layer)
        return layer

    def run(self, now: float) -> None:
        self.settle(now)

    def tick(self, now: float) -> None:
        self.settle(now)  # timers due by now fire at their deadlines

    def advance(self, start: float, end: float, step: float = 0.05) -> float:
        """From start to end: every timer at its deadline, every layer polled every `step`."""
        now = start
        while now < end:
            now = min(now + step, end)
            self.settle(now)
        return now


@pytest.fixture
def net() -> Net:
    return Net()
