"""Relay target (0x08: HELLO ... DATA) through a serving RelayLayer and a client holding an
allocation with it.

The relay holds a live allocation (owner O, permitted peer P, which knocked and echoed its
cookie); inputs come from O, P, a stranger or any address, may name the live allocation, may
carry a cookie valid for their source (a CHALLENGE's, or a knock cookie for the allocation they
name), and may be a freshly signed ALLOCATE (so allocations come and go against the caps);
answers from the relay's address also go to the client. Sources include IPv6 addresses and
the seeds the IPv6 sizes (18-byte addresses, the padded 28-byte KNOCK). Rates are opened wide so
that every input reaches the checks behind them; consent lasts 1 s (a hundred inputs), so it
lapses often.
HOLD (§21, "Held first DATA"): the owner's HOLDs are tracked, and a knock of the token sizes
(24 / 36 bytes) or a CLAIM may carry the token of what its allocation holds.
Checked: no answer to the source larger than the input, but a held DATA released to a knock
echo that proved its source and carried the HOLD's token (that DATA, unchanged, once), or to a
CLAIM with that token (that DATA, unchanged, once, at most 3x the CLAIM; it proves nothing);
KNOCKED only to the owner and only for a knock whose cookie was minted for its source; DATA
only between an owner and a peer that proved its address, and to the peer only while it
consents (a DATA or a valid echo of its naming the allocation came within `consent`).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from benchmarks.fuzz.core import WIDE, Target, Violation, datagrams
from kadtalk.node.identity import Identity
from kadtalk.node.relay import RelayLayer, RelaySettings, addresses, wire
from kadtalk.node.session.cookie import _mac

FAST = RelaySettings(
    serve="always", max_allocations=16, max_per_host=3, max_per_identity=2, min_lifetime=30,
    default_lifetime=60, max_lifetime=120, lifetime=60, cookie_rotation=10.0,
    verify_rate=WIDE, verify_burst=WIDE, source_rate=WIDE, source_burst=WIDE,
    allocation_rate=WIDE, allocation_burst=WIDE, total_rate=WIDE, total_burst=WIDE,
    knock_rate=WIDE, knock_burst=WIDE, echo_rate=WIDE, echo_burst=WIDE, echo_cap_rate=WIDE,
    echo_cap_burst=WIDE, consent=1.0,
    max_sources=64,
)
CLIENT = RelaySettings(serve="never", lifetime=60, request_tries=3)
RELAY, OWNER, PEER, STRANGER = (("198.51.100.1", 3478), ("203.0.113.1", 5004),
                                ("203.0.113.2", 5004), ("203.0.113.3", 5004))
PEER6 = ("2001:db8:2::7", 5004)  # an IPv6 source (the relay is dual-stack: section 21, "IPv6")
RELAY6 = ("2001:db8:1::1", 3478)  # the relay's IPv6 address: ALLOCATED names it (WANT_OTHER)


class RelayState:
    def __init__(self) -> None:
        self.identities = [Identity.generate() for _ in range(3)]
        self.relay = RelayLayer(None, FAST)
        self.relay.set_public([RELAY, RELAY6])
        self.client = RelayLayer(self.identities[0], CLIENT)
        self.now = 0.0
        self.client.allocate(RELAY, 0.0)
        self.pump()
        self.path = self.client.next_event().path
        number = self.path.allocation
        self.relay.receive_datagram(wire.knock(number), PEER, 0.0)
        [(cookie, _)] = self.relay.datagrams_to_send(0.0)
        self.relay.receive_datagram(wire.knock(number, cookie[10:16]), PEER, 0.0)
        self.proven = {(number, PEER)}  # (allocation, address) that echoed a knock cookie
        self.held: dict[bytes, tuple[bytes, bytes]] = {}  # allocation -> (token, held DATA)
        self.heard = {(number, PEER): 0.0}  # (allocation, address) -> its last DATA / echo
        self.client.permit(self.path, PEER, 0.0)
        self.pump()
        me = self.identities[1]
        nonce, cookie = bytes(16), bytes(16)
        self.seeds = [
            wire.hello(bytes(16)), wire.challenge(bytes(16), bytes(16)),
            wire.allocate(nonce, cookie, 60, me.public_der,
                          me.sign(wire.signed_part(nonce, cookie, 60))),
            wire.allocated(bytes(16), number, 60, addresses.to_wire(OWNER)),
            wire.refresh(number, 60), wire.refresh(number, 60, wire.REFRESHED),
            wire.permit(number, addresses.to_wire(PEER)),
            wire.permit(number, addresses.to_wire(PEER), wire.PERMITTED),
            wire.error(wire.ALLOCATE, wire.QUOTA, number), wire.data(number, b"payload"),
            wire.knock(number), wire.knock(number, cookie[10:16]),
            wire.knock(number, cookie[10:16], wire.KNOCK_COOKIE),
            wire.knocked(number, addresses.to_wire(PEER)),
            wire.path_check(wire.PATH_CHALLENGE, bytes(8), bytes(16)),
            wire.path_check(wire.PATH_RESPONSE, bytes(8), bytes(16)),
            wire.permit(number, addresses.to_wire(STRANGER)),  # never knocked: refused
            # the IPv6 sizes: 18-byte addresses, a padded KNOCK
            wire.allocated(bytes(16), number, 60, addresses.to_wire6(PEER6)),
            wire.permit(number, addresses.to_wire6(PEER6)),
            wire.permit(number, addresses.to_wire6(PEER6), wire.PERMITTED),
            wire.knocked(number, addresses.to_wire6(PEER6)),
            wire.knock(number, ipv6=True), wire.knock(number, cookie[10:16], ipv6=True),
            # HOLD, and the echoes that claim it with its token (24 / 36 bytes)
            wire.hold(number, bytes(8), b"held"), wire.knock(number, cookie[10:16], token=bytes(8)),
            wire.knock(number, cookie[10:16], ipv6=True, token=bytes(8)),
            # CLAIM: as sent (94 bytes) and its smallest (18: claims a DATA up to 54 bytes)
            wire.claim(number, bytes(8)), wire.claim(number, bytes(8), wire.HOLD_HEADER),
            # across families (§21): HELLO's WANT_OTHER flag, ALLOCATED with the other address
            wire.hello(bytes(16), wire.WANT_OTHER),
            wire.allocated(bytes(16), number, 60, addresses.to_wire(OWNER),
                           addresses.to_wire6(RELAY6)),
            wire.allocated(bytes(16), number, 60, addresses.to_wire6(PEER6),
                           addresses.to_wire(RELAY)),
        ]

    def pump(self) -> None:
        """Carry datagrams between the client (at OWNER) and the relay until quiet."""
        moved = True
        while moved:
            moved = False
            for data, dst in self.client.datagrams_to_send(self.now):
                moved = True
                if dst == RELAY:
                    self.relay.receive_datagram(data, OWNER, self.now)
            for data, dst in self.relay.datagrams_to_send(self.now):
                moved = True
                if dst == OWNER:
                    self.client.receive_datagram(data, RELAY, self.now)


KNOCKS = (16, 28, 24, 36)  # KNOCK's sizes: IPv4, IPv6-padded, and both with a HOLD's token


def knock_cookie_valid(relay: RelayLayer, addr: Any, number: bytes, cookie: bytes,
                       now: float) -> bool:
    """The knock cookie rule recomputed here (the relay's secrets, the MAC of
    kadtalk.node.session.cookie), not asked of the code under test."""
    return any(secret is not None and _mac(secret, addr, number)[:wire.KNOCK_COOKIE_SIZE] == cookie
               for secret in relay.server._knock_cookies._secrets(now))


def relay_strategy(state: RelayState) -> st.SearchStrategy:
    sized = st.builds(lambda op, body: bytes([wire.RELAY, op]) + body, st.integers(0, 18),
                      st.binary(max_size=60))
    exact = st.sampled_from(state.seeds).flatmap(  # a valid layout, every field random
        lambda seed: st.binary(min_size=len(seed) - 2, max_size=len(seed) - 2).map(
            lambda body: seed[:2] + body))
    return st.tuples(
        st.one_of(exact, exact, datagrams(state.seeds, [wire.RELAY], 200), sized),
        st.integers(0, 5),  # source: owner, peer, stranger, any address, IPv6 peer, any IPv6
        st.booleans(),  # name the live allocation
        st.integers(0, 7),  # 0: a valid cookie for the source; 1: a signed ALLOCATE;
        #                     2: a KNOCK with a knock cookie valid for its source (and the
        #                     held token), or a CLAIM with the held token
        st.booleans(),  # also hand it to the client, as if from the relay
    )


def run_relay(state: RelayState, item: tuple) -> None:
    data, which, aim, extra, to_client = item
    relay, client = state.relay, state.client
    state.now += 0.01
    now = state.now
    addr: Any = (OWNER, PEER, STRANGER, ("192.0.2.%d" % (len(data) % 250 + 1), 4000), PEER6,
                 ("2001:db8:3::%x" % (len(data) % 250 + 1), 4000))[which]
    if aim and len(data) >= 10:
        data = data[:2] + state.path.allocation + data[10:]
    if extra == 0 and len(data) >= 34 and data[1] in (wire.ALLOCATE, wire.HELLO):
        tag = wire.hello_tag(data[2:18], len(data) % 2 == 1)  # a cookie with the flag, or not
        data = data[:18] + relay.server._cookies.mint(addr, tag, now) + data[34:]
    elif extra == 1:
        me = state.identities[len(data) % 3]
        nonce = bytes([len(data) % 256]) * 16
        cookie = relay.server._cookies.mint(addr, wire.hello_tag(nonce, len(data) % 2 == 1), now)
        data = wire.allocate(nonce, cookie, 60, me.public_der,
                             me.sign(wire.signed_part(nonce, cookie, 60)))
    elif extra == 2 and len(data) in KNOCKS and data[1] == wire.KNOCK:
        data = data[:10] + relay.server._knock_cookies.mint(addr, data[2:10], now) + data[16:]
        if len(data) in (24, 36) and data[2:10] in state.held:
            data = data[:16] + state.held[data[2:10]][0] + data[24:]  # the held token too
    elif extra == 2 and len(data) >= wire.HOLD_HEADER and data[1] == wire.CLAIM \
            and data[2:10] in state.held:
        data = data[:10] + state.held[data[2:10]][0] + data[18:]
    valid_knock = (len(data) in KNOCKS and data[1] == wire.KNOCK
                   and data[10:16] != wire.NO_COOKIE
                   and knock_cookie_valid(relay, addr, data[2:10], data[10:16], now))
    if len(data) >= 10 and data[:2] == bytes((wire.RELAY, wire.DATA)) and wire.well_formed(data) \
            or valid_knock:
        state.heard[(data[2:10], addr)] = now  # (more than the relay counts: a bound above)
    if valid_knock:  # an echo of a cookie minted for its source: the address is proven (a
        state.proven.add((data[2:10], addr))  # CLAIM's source becomes the peer on it)
    held = state.held.get(data[2:10])
    drops = sum(relay.drop_counts().values())
    relay.receive_datagram(data, addr, now)
    if not wire.well_formed(data) and sum(relay.drop_counts().values()) != drops + 1:
        raise Violation("a malformed relay datagram is not one counted drop")
    timer = relay.get_timer()
    if timer is not None and timer <= now:
        relay.handle_timer(now)
    server = relay.server
    back = 0
    alloc = server.allocations.get(data[2:10]) if server is not None else None
    if (wire.well_formed(data) and data[1] == wire.HOLD and alloc is not None
            and addr == alloc.owner and alloc.held is not None):
        state.held[alloc.number] = alloc.held[:2]  # (what it keeps: the budget may refuse)
    for out, dst in relay.datagrams_to_send(now):
        if dst == addr and out[1] == wire.DATA and data[1] == wire.CLAIM:
            # a held DATA to a CLAIM's source: the HOLD's token, once, at most 3x the CLAIM
            if held is None or held != (data[10:18], out) or len(out) > 3 * len(data):
                raise Violation("held DATA sent to a CLAIM without the HOLD's token, over 3x "
                                "its size, or not the DATA held")
            del state.held[data[2:10]]
            continue
        if dst == addr and out[1] == wire.DATA and data[1] == wire.KNOCK:
            # a held DATA released to the echo's source: proven, with the HOLD's token, once
            if not valid_knock or held is None or held != (data[16:24], out):
                raise Violation("held DATA sent to a knocker that did not prove its address "
                                "with the HOLD's token, or not the DATA held")
            del state.held[data[2:10]]
            state.proven.add((data[2:10], addr))
            continue
        if dst == addr:
            back += len(out)
            if out[1] == wire.ALLOCATED and len(out) == wire.ALLOCATED_OTHER:
                _, other = wire.allocated_fields(out, ":" in addr[0])
                named = addresses.IPV4.from_wire(other)
                if named not in (RELAY, RELAY6) or (":" in named[0]) == (":" in addr[0]):
                    raise Violation("ALLOCATED names another address than the relay's own "
                                    "in the other family")
            continue
        if out[1] == wire.KNOCKED and data[1] == wire.KNOCK and len(out) <= len(data):
            # a would-be peer's knock goes to the allocation's owner only, never larger, and
            # only once the knocker echoed the cookie minted for its address
            alloc = server.allocations.get(out[2:10])
            if alloc is None or dst != alloc.owner:
                raise Violation("KNOCKED to another address than the allocation's owner")
            if not valid_knock:
                raise Violation("KNOCKED for a knocker that did not prove its address")
            state.proven.add((alloc.number, addr))
            continue
        if out != data or out[1] != wire.DATA:
            raise Violation("the relay sent something else than a DATA it received to a third")
        alloc = server.allocations.get(out[2:10])
        if alloc is None or {addr, dst} != {alloc.owner, alloc.peer}:
            raise Violation("DATA forwarded outside an allocation's owner and its peer")
        if dst != alloc.owner and (alloc.number, dst) not in state.proven:
            raise Violation("DATA forwarded to a peer that never echoed a knock cookie")
        if dst != alloc.owner and now - state.heard.get((alloc.number, dst), -1e9) >= FAST.consent:
            raise Violation("DATA forwarded to a peer that said nothing within consent")
        if addresses.forbidden(dst, OWNER, [RELAY], False) not in (None, "forbidden_self"):
            raise Violation("DATA forwarded to a special address")
    if back > len(data):
        raise Violation("relay answers larger than their request")
    if len(server.allocations) > FAST.max_allocations:
        raise Violation("more allocations than the cap")
    if to_client:
        client.receive_datagram(data, RELAY, now)
    timer = client.get_timer()
    if timer is not None and timer <= now:
        client.handle_timer(now)
    for out, dst in client.datagrams_to_send(now):
        if dst != RELAY:
            raise Violation("the client sent to another address than its relay")
    while client.next_event() is not None:
        pass
    while relay.next_event() is not None:
        pass
    if RELAY not in client.client.held and len(data) % 5 == 0:
        client.allocate(RELAY, now)  # the client's allocation ended: a new one, some time


TARGETS = [
    Target(
        "relay",
        "relays (0x08) through a serving RelayLayer and a client holding an allocation",
        RelayState,
        relay_strategy,
        run_relay,
    ),
]
