"""Generate the held-first-DATA test vectors (docs/vectors/relay-hold.json) by running a client,
a relay and a knocker (docs/protocol.md §21, "Held first DATA").

The client (relay.json's seeded Ed25519 identity) allocates, HOLDs a payload for the knocker
that will claim it with the call's token; the knocker sends a bare KNOCK and a CLAIM with the
token; the relay answers the KNOCK with its cookie and the CLAIM with the held DATA (no
permission yet); the knocker's plain echo proves its address, which becomes the permitted
peer, and the relay tells the owner (KNOCKED). Deterministic, as vectors.py. Usage:

    python -m kadtalk.node.relay.vectors_hold [-o FILE | --check FILE]
"""

from __future__ import annotations

import sys
from typing import Any

from .. import vectorfile
from . import wire
from .layer import RelayLayer
from .settings import RelaySettings
from .vectors import CLIENT, PEER, RELAY, _addr, carrier, client_identity, stream

CALLEE_ID = bytes(range(0xA0, 0xB4))  # the knocker's node ID (20 bytes; any callee's)
PAYLOAD = b"held session datagram"  # a call's KEY_REQ in a real set-up; opaque to the relay


def generate() -> dict[str, Any]:
    me = client_identity()
    client = RelayLayer(me, RelaySettings(lifetime=600, keepalive=300.0),
                        random_bytes=stream("client"))
    relay = RelayLayer(None, RelaySettings(serve="always"), random_bytes=stream("relay"))
    relay.set_public([RELAY])
    knocker = RelayLayer(None, RelaySettings(), random_bytes=stream("peer"))
    names = {CLIENT: "client", RELAY: "relay", PEER: "peer"}
    messages: list[dict[str, Any]] = []
    now = 0.0
    carry = carrier(relay, {CLIENT: client, PEER: knocker}, names, messages)

    client.allocate(RELAY, now)
    for _ in range(2):  # HELLO / CHALLENGE, ALLOCATE / ALLOCATED (relay.json shows them)
        for data, _ in client.datagrams_to_send(now):
            relay.receive_datagram(data, CLIENT, now)
        for data, _ in relay.datagrams_to_send(now):
            client.receive_datagram(data, RELAY, now)
    path = client.next_event().path
    token = wire.hold_token(path.allocation, me.node_id, CALLEE_ID)
    client.hold(path, token, PAYLOAD)
    carry(CLIENT, client, now, "with the call's offer: the first DATA, held for the knocker "
                               "whose CLAIM carries the token")
    knocker.knock(path, now, token)
    carry(PEER, knocker, now, "told the allocation in the call's offer: a bare KNOCK (zero "
                              "cookie) and a CLAIM with the token, zero-padded to 94 bytes")
    carry(RELAY, relay, now, "to the knocker: the cookie, and the held DATA (at most 3x the "
                             "CLAIM), sent once; nothing permitted, nothing to the owner yet")
    carry(PEER, knocker, now, "the cookie echoed (16 bytes, as to any relay): address proven, "
                              "and it is the CLAIM's source, so it becomes the permitted peer")
    carry(RELAY, relay, now, "to the owner (KNOCKED)")
    return {
        "description": "HOLD (docs/protocol.md section 21, 'Held first DATA'): the owner of an "
                       "allocation holds its call's KEY_REQ at the relay with the call's token; "
                       "the callee's CLAIM, sent with its knock, takes it at once (session 10, "
                       "later), and its knock's proof permits it",
        "client": {"address": _addr(CLIENT), "node_id": me.node_id.hex()},
        "relay": {"address": _addr(RELAY)},
        "peer": {"address": _addr(PEER), "node_id": CALLEE_ID.hex()},
        "allocation": path.allocation.hex(),
        "token": token.hex(),
        "token_label": wire.HOLD_LABEL.decode(),
        "messages": messages,
    }


def main(argv: list[str] | None = None) -> int:
    return vectorfile.main("relay-hold", generate, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
