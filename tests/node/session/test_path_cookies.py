"""Cookies over another path of a call (docs/protocol.md §20, peer-reflexive addresses and relays;
review of 967009b): a path's COOKIE_REPLY is kept for that path only and bounded, and a COOKIE
that is not that call's (another call's reply, an incoming call's COOKIE_RETRY) is handled as if
it had come from an address no call watches. Explicit `now`, no sockets."""

from __future__ import annotations

import os
from random import Random

from kadtalk.node.session import SessionLayer
from kadtalk.node.session.layer import MAX_PATH_COOKIES
from kadtalk.node.session.wire import (COOKIE, encode_cookie_reply, encode_cookie_retry,
                                       request_tag)

from .conftest import WALL, as_int, identity


def caller() -> SessionLayer:
    return SessionLayer(identity("p256", "A"), Random(1), clock_offset=WALL)


def test_another_calls_cookie_reply_over_a_watched_path_reaches_that_call():
    """Call 1's own COOKIE_REPLY from its own address X, which the node also watches as a path
    of call 2, is taken by call 1 (967009b dropped it as unsolicited for call 2)."""
    a, now = caller(), 0.0
    call1 = a.call(as_int(identity("p256", "B")), now, "X")
    call2 = a.call(as_int(identity("p256", "C")), now, "Y")
    a.datagrams_to_send(now)
    s1, cookie = a._sessions[call1], os.urandom(16)
    assert a.move(call2, "X", encode_cookie_reply(s1.tag, cookie), now) is False
    out = a.datagrams_to_send(now)
    assert s1.cookie == cookie and [addr for _, addr in out] == ["X"]
    assert cookie in out[0][0] and not a.stats["unsolicited_cookie"]


def test_an_incoming_calls_cookie_retry_over_a_watched_path_opens_that_call():
    """Glare: B calls us from Xp, a peer-reflexive path of our own call to B, and its KEY_REQ
    comes back in a COOKIE_RETRY with our cookie: the incoming call starts as it would from
    any address."""
    a, now = caller(), 0.0
    b = SessionLayer(identity("p256", "B"), Random(2), clock_offset=WALL)
    ours = a.call(as_int(b.identity), now, "X")
    a.datagrams_to_send(now)
    b.call(as_int(a.identity), now, "A")
    key_req = b.datagrams_to_send(now)[0][0]
    retry = encode_cookie_retry(a._cookie_jar().mint("Xp", request_tag(key_req), now), key_req)
    before = set(a._sessions)
    assert a.move(ours, "Xp", retry, now) is False
    assert len(set(a._sessions) - before) == 1 and not a.stats["unsolicited_cookie"]


def test_path_cookies_are_bounded_and_never_reach_the_own_path():
    a, now = caller(), 0.0
    sid = a.call(as_int(identity("p256", "B")), now, "B")
    a.datagrams_to_send(now)
    s, tries = a._sessions[sid], a.settings.key_tries
    for path in range(10):
        for _ in range(10):
            a.move(sid, f"relay{path}", encode_cookie_reply(s.tag, os.urandom(16)), now)
    sent: dict[str, int] = {}
    for _, addr in a.datagrams_to_send(now):
        sent[addr] = sent.get(addr, 0) + 1
    assert len(sent) == MAX_PATH_COOKIES and set(sent.values()) == {tries}
    assert len(s.path_cookies) == MAX_PATH_COOKIES
    assert a.stats["cookie_paths"] == (10 - MAX_PATH_COOKIES) * 10
    assert a.stats["cookie_resends"] == MAX_PATH_COOKIES * (10 - tries)
    own = os.urandom(16)  # the own path's cookie after the paths': kept, sent, and only there
    a.receive_datagram(encode_cookie_reply(s.tag, own), "B", now)
    out = a.datagrams_to_send(now)
    assert [addr for _, addr in out] == ["B"] and out[0][0][:1] == bytes((COOKIE,))
    assert own in out[0][0] and own in s.request("B") and own not in s.request("relay0")


def test_the_own_cookie_first_then_a_path_cookie_each_stays_on_its_path():
    a, now = caller(), 0.0
    sid = a.call(as_int(identity("p256", "B")), now, "B")
    a.datagrams_to_send(now)
    s, own, other = a._sessions[sid], os.urandom(16), os.urandom(16)
    a.receive_datagram(encode_cookie_reply(s.tag, own), "B", now)
    a.move(sid, "relayX", encode_cookie_reply(s.tag, other), now)
    assert own in s.request("B") and other not in s.request("B")
    assert other in s.request("relayX") and own not in s.request("relayX")
