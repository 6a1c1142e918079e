"""Generate the IPv6 relay test vectors (docs/vectors/relay-ipv6.json): a dual-stack relay.

An IPv6 owner allocates (ALLOCATED carries its 18-byte reflexive address), is refused the
loopback ::1 as a peer, an IPv6 peer knocks with padded 28-byte KNOCKs and echoes the cookie,
the owner hears KNOCKED (28) and permits it (PERMIT / PERMITTED 28), DATA goes both ways; then an
IPv4 owner of the same relay hears an IPv6 knocker (the relay's two families in one allocation);
last, an IPv4 and an IPv6 owner ask for the relay's address in the other family (HELLO's
WANT_OTHER flag) and get a 52-byte ALLOCATED naming it.
The relay runs the real server code; the clients' datagrams are built with the wire helpers
(deterministic as kadtalk.node.relay.vectors: an Ed25519 key from a fixed seed, SHAKE-256
streams for every random byte). Usage:

    python -m kadtalk.node.relay.vectors6                 # print the JSON
    python -m kadtalk.node.relay.vectors6 -o FILE         # write it
    python -m kadtalk.node.relay.vectors6 --check FILE    # exit 1 if FILE differs
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from .. import vectorfile
from . import wire
from .layer import RelayLayer
from .settings import RelaySettings
from .vectors import client_identity, stream

OWNER, RELAY, PEER = ("2001:db8::1", 5004), ("2001:db8:1::1", 3478), ("2001:db8:2::7", 5004)
RELAY4, OWNER4 = ("198.51.100.1", 3478), ("192.0.2.1", 5004)
LOOPBACK = ("::1", 5004)


def packed(addr: tuple[str, int]) -> bytes:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    return socket.inet_pton(family, addr[0]) + addr[1].to_bytes(2, "big")


def _addr(addr: tuple[str, int]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def generate() -> dict[str, Any]:
    me = client_identity()
    nonces = stream("ipv6 client")
    relay = RelayLayer(None, RelaySettings(serve="always", max_per_identity=4),
                       random_bytes=stream("ipv6 relay"))
    relay.set_public([RELAY4, RELAY])
    names = {OWNER: "owner", RELAY: "relay", PEER: "peer", LOOPBACK: "::1", RELAY4: "relay",
             OWNER4: "owner4"}
    messages: list[dict[str, Any]] = []

    def log(data: bytes, src: Any, dst: Any, note: str) -> None:
        entry = {"name": wire.NAMES[data[1]], "from": names[src], "to": names[dst],
                 "size": len(data), "hex": data.hex()}
        if note:
            entry["note"] = note
        messages.append(entry)

    def ask(data: bytes, src: Any, note: str = "", answer: str = "", to: Any = RELAY) -> bytes:
        """`src` sends `data` to the relay; what the relay sends (one datagram) is logged."""
        log(data, src, to, note)
        relay.receive_datagram(data, src, 0.0)
        [(out, dst)] = relay.datagrams_to_send(0.0)
        log(out, to, dst, answer)
        return out

    def allocate(owner: Any, to: Any, note: str, flags: int = 0, hello: str = "") -> bytes:
        nonce = nonces(wire.NONCE_SIZE)
        cookie = ask(wire.hello(nonce, flags), owner, hello, to=to)[18:34]
        signature = me.sign(wire.signed_part(nonce, cookie, 600))
        return ask(wire.allocate(nonce, cookie, 600, me.public_der, signature), owner,
                   answer=note, to=to)[18:26]

    number = allocate(OWNER, RELAY, "46 bytes: the reflexive address is IPv6 (18)")
    ask(wire.permit(number, packed(LOOPBACK)), OWNER, "PERMIT [::1]:5004 (28 bytes)",
        "FORBIDDEN_PEER: loopback is never a peer")
    cookie = ask(wire.knock(number, ipv6=True), PEER,
                 "a knocker at an IPv6 relay pads KNOCK with 12 zero bytes (28)",
                 "16 bytes, as for IPv4")[10:16]
    ask(wire.knock(number, cookie, ipv6=True), PEER, "the cookie echoed, padded",
        "to the owner: the knocker's IPv6 address (28 bytes, no larger than the echo)")
    ask(wire.permit(number, packed(PEER)), OWNER, "PERMIT [2001:db8:2::7]:5004", "PERMITTED")
    ask(wire.data(number, b"session datagram"), OWNER, "from the owner",
        "forwarded unchanged to the permitted peer")
    ask(wire.data(number, b"and back"), PEER, "from the peer", "forwarded unchanged to the owner")
    number4 = allocate(OWNER4, RELAY4, "an IPv4 owner of the same relay: 34 bytes, as ever")
    cookie = ask(wire.knock(number4, ipv6=True), PEER, "the IPv6 peer knocks at the relay's "
                 "IPv6 address for the IPv4 owner's allocation")[10:16]
    ask(wire.knock(number4, cookie, ipv6=True), PEER, "",
        "to the IPv4 owner: the IPv6 knocker (28 bytes)", to=RELAY)
    # across families (§21): the owner asks for the relay's address in the other family
    allocate(OWNER4, RELAY4, "52 bytes: the reflexive IPv4 address (6), then the relay's IPv6 "
             "address (18): what an IPv4-only owner offers an IPv6-only callee",
             wire.WANT_OTHER, "flags 0x01 (WANT_OTHER): tell me your other address")
    allocate(OWNER, RELAY, "52 bytes: the reflexive IPv6 address (18), then the relay's IPv4 "
             "address (6)", wire.WANT_OTHER, "flags 0x01 (WANT_OTHER), over IPv6")
    return {
        "description": "RELAY (0x08) over IPv6, docs/protocol.md section 21 \"IPv6\": a "
                       "dual-stack relay; an IPv6 owner allocates, is refused ::1, hears an "
                       "IPv6 peer knock (padded) and echo the cookie, permits it, DATA both "
                       "ways; an IPv4 owner hears the IPv6 knocker too; an IPv4 and an IPv6 owner "
                       "ask for the relay's other address (WANT_OTHER) and get it in a 52-byte "
                       "ALLOCATED",
        "owner": {"address": _addr(OWNER), "spki": me.public_der.hex(),
                  "ipv4_address": _addr(OWNER4)},
        "relay": {"address": _addr(RELAY), "ipv4_address": _addr(RELAY4),
                  "cookie_secret": stream("ipv6 relay")(32).hex(),
                  "knock_cookie_secret": relay.server._knock_cookies._current.hex(),
                  "cookie_label": "kadtalk/1 cookie"},
        "peer": {"address": _addr(PEER)},
        "messages": messages,
    }


def main(argv: list[str] | None = None) -> int:
    return vectorfile.main("relay-ipv6", generate, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
