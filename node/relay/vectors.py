"""Generate the relay test vectors (docs/vectors/relay.json) by running a client and a relay.

Deterministic: the client's identity is an Ed25519 key from a fixed seed (Ed25519 signatures
are deterministic), and each side's random bytes (the client's nonce; the relay's cookie secret
and allocation number) come from SHAKE-256 of a fixed label. Usage:

    python -m kadtalk.node.relay.vectors                 # print the JSON
    python -m kadtalk.node.relay.vectors -o FILE         # write it
    python -m kadtalk.node.relay.vectors --check FILE    # exit 1 if FILE differs
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any, Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .. import vectorfile
from ..identity import Identity
from . import wire
from .layer import RelayLayer
from .settings import RelaySettings

CLIENT, RELAY, PEER = ("192.0.2.1", 5004), ("198.51.100.1", 3478), ("203.0.113.7", 5004)
LOOPBACK = ("127.0.0.1", 5004)


def stream(label: str) -> Callable[[int], bytes]:
    """`random_bytes` for one side: SHAKE-256 of the label and a counter."""
    count = [0]

    def take(n: int) -> bytes:
        count[0] += 1
        return hashlib.shake_256(f"{label} {count[0]}".encode()).digest(n)

    return take


def client_identity() -> Identity:
    seed = hashlib.sha256(b"kadtalk relay vector client").digest()
    return Identity.from_private_key(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def _addr(addr: Any) -> str:
    return f"{addr[0]}:{addr[1]}"


def carrier(relay: RelayLayer, ends: dict[Any, RelayLayer], names: dict[Any, str],
            messages: list[dict[str, Any]]) -> Callable[..., None]:
    """`carry(src, layer, now, note="")`: deliver what `layer` (at `src`) sends to the relay
    or to one of the `ends` (by address; the relay's source for them), logging each datagram
    in `messages` with the `names` of its ends."""

    def carry(src: Any, layer: RelayLayer, now: float, note: str = "") -> None:
        for data, dst in layer.datagrams_to_send(now):
            entry = {"name": wire.NAMES[data[1]], "from": names[src], "to": names[dst],
                     "size": len(data), "hex": data.hex()}
            if note:
                entry["note"] = note
            messages.append(entry)
            if dst == RELAY:
                relay.receive_datagram(data, src, now)
            elif dst in ends:
                ends[dst].receive_datagram(data, RELAY, now)

    return carry


def generate() -> dict[str, Any]:
    me = client_identity()
    client = RelayLayer(me, RelaySettings(lifetime=600, keepalive=300.0),
                        random_bytes=stream("client"))
    relay = RelayLayer(None, RelaySettings(serve="always"),  # a relay needs no identity
                       random_bytes=stream("relay"))
    relay.set_public([RELAY])
    names = {CLIENT: "client", RELAY: "relay", PEER: "peer"}
    messages: list[dict[str, Any]] = []
    now = 0.0
    carry = carrier(relay, {CLIENT: client}, names, messages)

    client.allocate(RELAY, now)
    carry(CLIENT, client, now)  # HELLO
    carry(RELAY, relay, now)  # CHALLENGE
    carry(CLIENT, client, now)  # ALLOCATE
    carry(RELAY, relay, now)  # ALLOCATED
    path = client.next_event().path
    client.permit(path, LOOPBACK, now)
    carry(CLIENT, client, now, "a special address")
    carry(RELAY, relay, now, "FORBIDDEN_PEER: loopback is never a peer")
    client.permit(path, PEER, now)
    carry(CLIENT, client, now, "a peer that has not knocked yet")
    carry(RELAY, relay, now, "UNPROVEN_PEER: it never echoed a knock cookie")

    def from_peer(data: bytes, note: str) -> None:
        messages.append({"name": wire.NAMES[data[1]], "from": "peer", "to": "relay",
                         "size": len(data), "hex": data.hex(), "note": note})
        relay.receive_datagram(data, PEER, now)

    from_peer(wire.knock(path.allocation), "a would-be peer, told the allocation in a call's "
                                           "set-up (PUNCH_FWD_RELAY): zero cookie")
    [(answer, _)] = relay.datagrams_to_send(now)
    messages.append({"name": "KNOCK_COOKIE", "from": "relay", "to": "peer", "size": len(answer),
                     "hex": answer.hex(), "note": "to the knocker: nothing to the owner yet"})
    from_peer(wire.knock(path.allocation, answer[10:16]), "the cookie echoed: address proven")
    carry(RELAY, relay, now, "to the owner: where the relay sees the proven knocker")
    client.permit(path, PEER, now)
    carry(CLIENT, client, now)
    carry(RELAY, relay, now)
    client.send(path, b"session datagram", now)
    carry(CLIENT, client, now, "from the owner: the payload is any session datagram, opaque")
    for data, dst in relay.datagrams_to_send(now):
        messages.append({"name": "DATA", "from": "relay", "to": names[dst], "size": len(data),
                         "hex": data.hex(), "note": "forwarded unchanged to the permitted peer"})
    now = 300.0
    client.handle_timer(now)  # the refresh at half the lifetime
    carry(CLIENT, client, now)
    carry(RELAY, relay, now)
    client.release(path, now)
    carry(CLIENT, client, now, "lifetime 0: release")
    carry(RELAY, relay, now)
    # a relayed call's path validation: between its two ends, directly (never to the relay)
    peer_key, client_key = stream("peer sending key")(16), stream("client sending key")(16)
    peer = RelayLayer(None, RelaySettings(), random_bytes=stream("peer"))
    nonce = peer.nonce()
    peer.path_check(wire.PATH_CHALLENGE, nonce, peer_key, CLIENT)
    client.path_check(wire.PATH_RESPONSE, nonce, client_key, PEER)
    for layer, src, note in ((peer, "peer", "to a new address of the call's other end: a nonce, "
                              "tagged under the sender's session key"),
                             (client, "client", "the nonce again, to the challenge's source, "
                              "tagged under the answerer's session key")):
        [(data, dst)] = layer.datagrams_to_send(now)
        messages.append({"name": wire.NAMES[data[1]], "from": src, "to": names[dst],
                         "size": len(data), "hex": data.hex(), "note": note})
    private = me.private_key.private_bytes(serialization.Encoding.Raw,
                                           serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption())
    first_secret = stream("relay")(32)
    knock_secret = relay.server._knock_cookies._current
    return {
        "description": "RELAY (0x08) exchange of docs/protocol.md section 21: a client "
                       "allocates, is refused a loopback peer and a peer that has not proven "
                       "its address, hears the peer knock and echo the relay's cookie, "
                       "permits it, sends DATA, refreshes and releases; then a relayed call's "
                       "path validation between the peer and the client",
        "client": {"address": _addr(CLIENT), "ed25519_private_key": private.hex(),
                   "spki": me.public_der.hex(), "node_id": me.node_id.hex()},
        "relay": {"address": _addr(RELAY), "cookie_secret": first_secret.hex(),
                  "knock_cookie_secret": knock_secret.hex(), "cookie_label": "kadtalk/1 cookie"},
        "peer": {"address": _addr(PEER)},
        "signed_label": wire.SIGNED_LABEL.decode(),
        "path_validation": {"peer_sending_key": peer_key.hex(),
                            "client_sending_key": client_key.hex(),
                            "label": wire.PATH_LABEL.decode()},
        "messages": messages,
    }


def main(argv: list[str] | None = None) -> int:
    return vectorfile.main("relay", generate, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
