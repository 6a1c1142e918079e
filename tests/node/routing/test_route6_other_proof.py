"""Who can get an entry named at an IPv6 address (R1's review, session 11, and session 12's
authenticated announce). Path a: a stranger at its own IPv6 address W claims a table entry X's
ID in a request over IPv6; the responder's ordinary admission probe of W is answered there "as
X" by the stranger. Only an announce probe's answer proves an other address, so that answer
goes through the admission rules (the old address's check: X still answers at its IPv4 address,
the entry stays) and X is named where it is held. Path b: a forger that sends from X's IPv4
address A (spoofing) and receives at W. In session 11 the announce rode in a request's padding
and the forger planted W for 2 h; now an announce is taken only from an answer to our keyed
request to A (or the query's echo), which the forger never sees, so nothing is probed at W."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing import route6
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingLayer, RoutingSettings
from kadtalk.node.routing.messages import RouteRequest, RouteResponse, encode_response

R_ID, X_ID, Q_ID = 0x1 << 156, 0x2 << 156, 0x3 << 156
A = ("198.51.100.2", 5004)  # X, honest, held at IPv4 and answering there
W = ("2001:db8:bad::1", 6666)  # the stranger's own IPv6 address
Q6 = ("2001:db8:3::3", 5004)  # an IPv6-only requester


def responder() -> RoutingLayer:
    r = RoutingLayer(R_ID, ContactRegistry(), Random(1),
                     RoutingSettings(refresh_on_join=False, ipv6=True, other_addresses=True))
    assert r.add_contact(X_ID, A, 0.0)
    return r


def named_x(r: RoutingLayer, now: float):
    r.receive_datagram(route6.encode_request(RouteRequest(Q_ID, X_ID ^ 1, 288)), Q6, now)
    for data, dst in r.datagrams_to_send(now):
        if dst == Q6 and data[0] == route6.ROUTE6_RES:
            return dict(route6.decode_response(data)[0].contacts).get(X_ID)
    raise AssertionError("no ROUTE6_RES")


def answer_as_x(r: RoutingLayer, out, at, now: float) -> int:
    """Whoever receives at `at` answers every probe there as X, echoing its target."""
    n = 0
    for data, dst in out:
        if dst == at and data[0] == 0 and len(data) == 41:
            echo = RouteResponse(X_ID, int.from_bytes(data[21:41], "big"), [])
            r.receive_datagram(encode_response(echo, ContactRegistry.addr_to_wire), at, now)
            n += 1
    return n


def test_a_stranger_s_answer_to_an_admission_probe_proves_no_other_address():
    r = responder()
    r.receive_datagram(route6.encode_request(RouteRequest(X_ID, 0x1234, 288)), W, 1.0)
    assert answer_as_x(r, r.datagrams_to_send(1.0), W, 1.01) == 1  # the admission probe of W
    assert len(r._others or ()) == 0
    assert named_x(r, 1.5) == A
    t = 1.02  # the old address's check runs, X answering at A throughout
    while t < 60.0:
        r.handle_timer(t)
        answer_as_x(r, r.datagrams_to_send(t), A, t + 0.01)
        t += 0.5
    assert r.registry.addrs[r.table.find(X_ID)] == A  # not moved: A still answers
    for at in (60.0, 3600.0, 7100.0):
        assert named_x(r, at) == A


def keyed_request(r: RoutingLayer, now: float) -> bytes:
    """R's join: its keyed request to X at A."""
    r.handle_timer(now)
    r.join([], now)
    [data] = [d for d, to in r.datagrams_to_send(now) if to == A]
    return data


def x_names_itself_at(r: RoutingLayer, request: bytes, at, now: float) -> list:
    """X's ROUTE6_RES to R's `request`, naming itself at `at` (last), from A; R's datagrams
    to IPv6 addresses after it (its probes)."""
    head = bytes((route6.ROUTE6_RES,)) + X_ID.to_bytes(20, "big") + request[21:41]
    r.receive_datagram(head + X_ID.to_bytes(20, "big") + route6.addresses.to_wire(at), A, now)
    return [(d, dst) for d, dst in r.datagrams_to_send(now) if route6.addresses.is_ipv6(dst)]


def test_an_announce_probe_answer_is_not_an_admission_probe_answer_either():
    """The two kinds are distinct both ways: an announce probe's echo does not pass for an
    admission probe's (it is keyed to the entry's IPv4 address and the announced one), and it
    proves only for the entry it was sent for."""
    r = responder()
    probes = [d for d, dst in x_names_itself_at(r, keyed_request(r, 1.0), W, 1.0) if dst == W]
    assert len(probes) == 1
    target = int.from_bytes(probes[0][21:41], "big")
    assert not r._is_probe_answer(RouteResponse(X_ID, target, []), W, 1.01)
    other_id = 0x5 << 156  # the same echo by another ID proves nothing
    r.receive_datagram(encode_response(RouteResponse(other_id, target, []),
                                       ContactRegistry.addr_to_wire), W, 1.01)
    assert r.stats["unsolicited"] == 1 and len(r._others or ()) == 0
    r.receive_datagram(encode_response(RouteResponse(X_ID, target, []),
                                       ContactRegistry.addr_to_wire), W, 1.02)
    assert named_x(r, 2.0) == W  # X's own echo from W, X having named W from A


def test_other_addresses_are_on_by_default_and_off_no_announce_is_probed_kept_or_named():
    assert RoutingSettings().other_addresses is True  # since session 12 (authenticated)
    r = RoutingLayer(R_ID, ContactRegistry(), Random(1),
                     RoutingSettings(refresh_on_join=False, ipv6=True, other_addresses=False))
    assert r.add_contact(X_ID, A, 0.0)
    assert x_names_itself_at(r, keyed_request(r, 1.0), W, 1.0) == []  # not probed
    key = r._announce_kind(r.table.find(X_ID))  # an echo of what a probe would have been
    target = r._probe_target(r._probe_secrets(1.0)[0], W, X_ID, key)
    r.receive_datagram(encode_response(RouteResponse(X_ID, target, []),
                                       ContactRegistry.addr_to_wire), W, 1.02)
    assert r.stats["unsolicited"] == 1 and r._others is None  # not kept
    assert named_x(r, 2.0) == A  # not named


def forge(r: RoutingLayer, now: float, target: int) -> None:
    """Path b: from X's IPv4 source A, as X: session 11's announce (W after a marked request's
    marker), and a ROUTE6_RES naming X at W for `target` (any target the forger can know)."""
    req = route6.encode_request(RouteRequest(X_ID, 0x1234, 288))
    r.receive_datagram(req[:45] + route6.addresses.to_wire(W) + req[64:], A, now)
    head = bytes((route6.ROUTE6_RES,)) + X_ID.to_bytes(20, "big") + target.to_bytes(20, "big")
    r.receive_datagram(head + X_ID.to_bytes(20, "big") + route6.addresses.to_wire(W), A, now)


def test_a_forger_of_the_entrys_ipv4_source_cannot_plant_its_address():
    """Path b, the attack session 11 documented as open (docs/security.md names this test): the
    forger sends from A, receives at W and answers, at W, every probe it gets there as X. It
    sees neither R's keyed requests to A nor R's queries (they go to A, where X is): its
    request-carried announce is padding, its forged answers with a lookup's own target (a user
    lookup's, which a contact that named X knows) or with a guessed target announce nothing.
    No datagram of R's ever goes to W, and X is named at A throughout."""
    r = responder()
    r._answered_from(A)  # X validated at A: the forger's marked requests draw R's query there
    to_w = []
    for i, now in enumerate((1.0, 2.0, 700.0, 1500.0)):
        r.handle_timer(now)
        r.find_closest(X_ID ^ (5 + i), now)  # a user lookup: its target is no secret
        r.join([], now)  # a keyed request to A too, unseen by the forger
        out = r.datagrams_to_send(now)
        exact = X_ID ^ (5 + i)
        forge(r, now + 0.01, exact)
        forge(r, now + 0.01, exact ^ 1)  # a guess at the keyed target
        out += r.datagrams_to_send(now + 0.01)
        to_w += [d for d, dst in out if dst == W]
        answer_as_x(r, [(d, W) for d in to_w], W, now + 0.02)
        assert named_x(r, now + 1.0) == A
    assert to_w == []  # nothing ever probed at W
    assert len(r._others or ()) == 0 and r.registry.addrs[r.table.find(X_ID)] == A
    assert (r.stats or {}).get("unsolicited", 0) >= 4  # the guessed answers, dropped


_ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("join")), st.tuples(st.just("lookup"), st.integers(0, 255)),
    st.tuples(st.just("forge"), st.integers(0, (1 << 160) - 1), st.booleans()),
    st.tuples(st.just("request"), st.integers(0, (1 << 160) - 1)),
    st.tuples(st.just("garbage"), st.binary(max_size=200), st.sampled_from([A, W, Q6])),
    st.tuples(st.just("wait"), st.floats(0.01, 900.0))), max_size=30)


@settings(max_examples=100, deadline=None)
@given(_ACTIONS)
def test_random_traffic_from_the_forger_never_plants_nor_probes_its_address(actions):
    """Hypothesis over the new path: R's joins and user lookups, and a forger sending from A as
    X (ROUTE6_RES naming X at W for targets it can know or guesses, marked requests, garbage),
    answering at W whatever reaches it there, in any order and at any pace: nothing raises, no
    datagram of R's goes to W, X is never moved or named there."""
    r = responder()
    r._answered_from(A)
    now = 1.0
    known = []  # the targets of R's requests the forger can know: its user lookups' own
    for action in actions:
        kind = action[0]
        if kind == "join":
            r.join([], now)
        elif kind == "lookup":
            target = X_ID ^ (action[1] + 2)
            known.append(target)
            r.find_closest(target, now)
        elif kind == "forge":
            target = known[action[1] % len(known)] if known and action[2] else action[1]
            forge(r, now, target)
        elif kind == "request":
            r.receive_datagram(route6.encode_request(RouteRequest(X_ID, action[1], 288)), A,
                               now)
        elif kind == "garbage":
            r.receive_datagram(action[1], action[2], now)
        else:
            now += action[1]
            r.handle_timer(now)
        out = r.datagrams_to_send(now)
        assert all(dst != W for _, dst in out)
        answer_as_x(r, out, W, now)
    assert len(r._others or ()) == 0
    entry = r.table.find(X_ID)  # X itself is silent here: its entry may fail, never move
    assert entry < 0 or r.registry.addrs[entry] == A
    assert named_x(r, now) in (A, None)
