"""Presence and contact requests in the session stream (node/session/presence.py, §15c): the
frames (hypothesis: anything decodes or is a named drop), PRESENCE only to trusted peers, on
open, on change and in place of keepalives, a session opened by a PRESENCE alone, requests and
replies acknowledged and delivered once, and their limits. Explicit `now`, no sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.session import CallState, MessageDelivered, MessagesUnsent, SessionSettings
from kadtalk.node.session.messages import ID_SIZE
from kadtalk.node.session.presence import (
    AWAY,
    BUSY,
    CONTACT_REPLY,
    CONTACT_REQ,
    MAX_NOTE,
    ONLINE,
    PRESENCE,
    ContactReplied,
    ContactRequested,
    PresenceReceived,
    decode_presence,
    decode_reply,
    decode_request,
    encode_presence,
    encode_reply,
    encode_request,
)
from kadtalk.node.session.wire import SIGNAL, Drop

from .conftest import Net, as_int, identity

RID = bytes(range(16))


# -- frames ---------------------------------------------------------------------------------------


def test_the_frames_of_protocol_md_byte_for_byte():
    assert encode_presence(AWAY).hex() == "0901"
    assert encode_request(RID, "hi").hex() == "0a" "000102030405060708090a0b0c0d0e0f" "6869"
    reply = encode_reply(bytes(16), RID, True)
    assert reply.hex() == "0b" + "00" * 16 + "000102030405060708090a0b0c0d0e0f" + "01"
    assert decode_reply(reply).accepted and not decode_reply(encode_reply(RID, RID, False)).accepted


@given(st.integers(0, 3))
def test_presence_round_trips(status):
    assert decode_presence(encode_presence(status)) == status


@given(st.binary(min_size=16, max_size=16), st.text(max_size=80))
def test_requests_round_trip(request_id, note):
    try:
        frame = encode_request(request_id, note)
    except ValueError:
        assert len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE or any(
            0xD800 <= ord(c) <= 0xDFFF for c in note)
        return
    got = decode_request(frame)
    assert (got.request_id, got.note) == (request_id, note)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.booleans())
def test_replies_round_trip(reply_id, request_id, accepted):
    got = decode_reply(encode_reply(reply_id, request_id, accepted))
    assert (got.reply_id, got.request_id, got.accepted) == (reply_id, request_id, accepted)


@given(st.sampled_from([PRESENCE, CONTACT_REQ, CONTACT_REPLY]), st.binary(max_size=400))
def test_any_plaintext_decodes_or_is_a_named_drop(kind, body):
    data = bytes((kind,)) + body
    decode = {PRESENCE: decode_presence, CONTACT_REQ: decode_request,
              CONTACT_REPLY: decode_reply}[kind]
    try:
        decode(data)
    except Drop as drop:
        assert drop.reason in ("bad_presence", "bad_request", "oversized_note", "bad_utf8",
                               "bad_reply")


def test_a_note_over_the_limit_is_refused_naming_it():
    with pytest.raises(ValueError, match=str(MAX_NOTE)):
        encode_request(RID, "x" * (MAX_NOTE + 1))
    assert decode_request(encode_request(RID, "é" * (MAX_NOTE // 2))).note == "é" * 128
    with pytest.raises(Drop, match="oversized_note"):
        decode_request(bytes((CONTACT_REQ,)) + RID + b"x" * (MAX_NOTE + 1))
    with pytest.raises(ValueError):
        encode_presence(4)


# -- the layer ------------------------------------------------------------------------------------


def pair(trust_a: bool = True, trust_b: bool = True, **settings) -> Net:
    """a and b on the memory net; each trusts the other (its contact) as told."""
    ids = {"a": identity("p256", "a"), "b": identity("p256", "b")}
    net = Net()
    for name, other, trusts in (("a", "b", trust_a), ("b", "a", trust_b)):
        peer = as_int(ids[other])
        net.add(name, ids[name], SessionSettings(
            trusted=(lambda p, peer=peer, t=trusts: t and p == peer), **settings))
    return net


def presences(net: Net, name: str) -> list[int]:
    return [e.status for e in net.of(name, PresenceReceived)]


def open_chat(net: Net, now: float = 0.0) -> int:
    a, b = net.layers["a"], net.layers["b"]
    sid = a.call(as_int(b.identity), now, addr="b", chat=True)
    net.run(now)
    return sid


def test_a_session_opened_for_presence_alone_opens_both_sides_and_each_tells_once():
    net = pair()
    a, b = net.layers["a"], net.layers["b"]
    a.set_presence(ONLINE, 0.0)
    b.set_presence(BUSY, 0.0)
    open_chat(net)
    # a's PRESENCE is its first packet: b opens on it (as on a TEXT) and answers with its own
    assert [s.state for s in b.sessions.values()] == [CallState.OPEN]
    assert presences(net, "b") == [ONLINE] and presences(net, "a") == [BUSY]
    # a change goes at once; a repeat (the keepalive) is not reported again
    a.set_presence(AWAY, 1.0)
    net.run(1.0)
    net.advance(1.0, 10.0, step=0.5)  # keepalives carry the status every 2 s: no new event
    assert presences(net, "b") == [ONLINE, AWAY]
    assert not a.stats and not b.stats
    # presence does not keep the session: it closes after chat_idle_timeout
    net.advance(10.0, 61.0, step=1.0)
    assert not a.sessions and not b.sessions


def test_a_lost_presence_is_made_good_by_the_next_keepalive():
    lost = []

    def drop(src, dst, data):  # lose a's first PRESENCE-sized SIGNAL after the key exchange
        if src == "a" and data[0] == SIGNAL and len(data) == 15 and not lost:
            lost.append(data)
            return True
        return False

    net = pair()
    net.drop = drop
    net.layers["a"].set_presence(AWAY, 0.0)
    open_chat(net)
    assert lost and presences(net, "b") == []
    net.advance(0.0, 2.5, step=0.25)
    assert presences(net, "b") == [AWAY]  # the keepalive at 2 s was a PRESENCE


def test_presence_goes_to_trusted_peers_only():
    net = pair(trust_a=False)  # a does not count b as a contact: b never hears a's status
    a, b = net.layers["a"], net.layers["b"]
    a.set_presence(ONLINE, 0.0)
    b.set_presence(AWAY, 0.0)
    open_chat(net)  # a (untrusting) opens: its first packet is no PRESENCE, so b stays unopened
    a.set_presence(BUSY, 1.0)
    net.advance(0.0, 6.0, step=0.5)
    assert presences(net, "b") == []
    # without `trusted` (the simulator) nobody is told anything
    net = Net()
    x, y = net.add("x"), net.add("y")
    x.set_presence(ONLINE, 0.0)
    sid = x.send_message(as_int(y.identity), bytes(16), 1, 0, "hi", 0.0)
    assert sid is None
    x.call(as_int(y.identity), 0.0, addr="y", chat=True)
    x.send_message(as_int(y.identity), bytes(16), 1, 0, "hi", 0.0)
    net.advance(0.0, 5.0, step=0.5)
    assert not net.of("y", PresenceReceived)


def test_a_stranger_presence_is_reported_for_the_owner_to_drop_and_bad_ones_are_counted():
    net = pair(trust_b=False)
    a, b = net.layers["a"], net.layers["b"]
    a.set_presence(ONLINE, 0.0)
    open_chat(net)
    (got,) = net.of("b", PresenceReceived)  # the node reports; app/presence.py drops (counted)
    assert got.peer_id == as_int(a.identity) and got.status == ONLINE
    assert presences(net, "a") == []  # b trusts nobody: it tells nobody
    session = next(iter(a.sessions.values()))
    for bad in (b"\x09", b"\x09\x04", b"\x09\x00\x00"):
        a._send(session, SIGNAL, bad, 1.0)
    net.run(1.0)
    assert b.stats["bad_presence"] == 3 and len(net.of("b", PresenceReceived)) == 1


def test_a_contact_request_and_its_reply_are_acknowledged_and_delivered_once():
    lose = [True]

    def drop(src, dst, data):  # the first RECEIPT (b's, for the request) is lost
        if src == "b" and data[0] == SIGNAL and len(data) == 30 and lose[0]:
            lose[0] = False
            return True
        return False

    net = pair(trust_a=False, trust_b=False)
    net.drop = drop
    a, b = net.layers["a"], net.layers["b"]
    b_int, a_int = as_int(b.identity), as_int(a.identity)
    assert a.send_frame(b_int, RID, encode_request(RID, "it's Alice"), 0.0) is None
    a.call(b_int, 0.0, addr="b", chat=True)
    a.send_frame(b_int, RID, encode_request(RID, "it's Alice"), 0.0)
    net.advance(0.0, 3.0, step=0.25)
    (req,) = net.of("b", ContactRequested)  # the request opened b's session; sent again, once
    assert (req.peer_id, req.request_id, req.note) == (a_int, RID, "it's Alice")
    assert b.stats["duplicate_message"] == 1
    assert [e.message_id for e in net.of("a", MessageDelivered)] == [RID]
    reply_id = bytes([7]) * ID_SIZE
    b.send_frame(a_int, reply_id, encode_reply(reply_id, RID, True), 3.0)
    net.run(3.0)
    (rep,) = net.of("a", ContactReplied)
    assert (rep.peer_id, rep.request_id, rep.accepted) == (b_int, RID, True)
    # an unanswered request when the session ends is its owner's to send again: no
    # MessagesUnsent (that is for texts only)
    a.send_frame(b_int, bytes([9]) * 16, encode_request(bytes([9]) * 16), 4.0)
    net.drop = lambda *p: True
    net.advance(4.0, 20.0, step=1.0)
    assert not a.sessions and not net.of("a", MessagesUnsent)


def test_a_request_and_a_reply_get_their_receipt_only_once_their_owner_confirms_it_kept_them():
    """Like a TEXT's (test_messages_receipts.py): an owner that cannot write a request or a
    reply (disk full) confirms nothing, so no RECEIPT goes; its sender sends the frame again,
    each repeat is reported again, and the RECEIPT goes at the owner's confirm."""
    net = pair(trust_a=False, trust_b=False)
    a, b = net.layers["a"], net.layers["b"]
    b_int, a_int = as_int(b.identity), as_int(a.identity)
    net.unsaved.update(("a", "b"))
    a.call(b_int, 0.0, addr="b", chat=True)
    a.send_frame(b_int, RID, encode_request(RID, "it's Alice"), 0.0)
    net.advance(0.0, 6.0, step=0.25)
    got = net.of("b", ContactRequested)
    resent = a.stats["message_resent"]
    assert resent >= 3 and len(got) == 1 + resent  # reported again each time: b may save it now
    assert not net.of("a", MessageDelivered) and b.stats["held_message_repeat"] == resent
    assert b.confirm(got[-1].session_id, RID, 6.0)  # the disk is back: kept, confirmed
    net.run(6.0)
    assert [e.message_id for e in net.of("a", MessageDelivered)] == [RID]
    assert not b.confirm(got[-1].session_id, RID, 6.0)  # once

    reply_id = bytes([7]) * ID_SIZE
    b.send_frame(a_int, reply_id, encode_reply(reply_id, RID, True), 6.0)
    net.advance(6.0, 12.0, step=0.25)
    replies = net.of("a", ContactReplied)
    assert len(replies) >= 3 and {(r.reply_id, r.request_id, r.accepted) for r in replies} \
        == {(reply_id, RID, True)}
    assert [e.message_id for e in net.of("b", MessageDelivered)] == []
    assert a.confirm(replies[-1].session_id, reply_id, 12.0)
    net.run(12.0)
    assert [e.message_id for e in net.of("b", MessageDelivered)] == [reply_id]
    net.advance(12.0, 20.0, step=1.0)
    assert len(net.of("a", ContactReplied)) == len(replies)  # nothing more comes


def test_a_flood_of_requests_from_a_stranger_is_metered_like_texts():
    net = pair(trust_a=False, trust_b=False, text_rate=1.0, text_burst=5.0,
               stranger_text_rate=100.0, stranger_text_burst=100.0)
    a, b = net.layers["a"], net.layers["b"]
    b_int = as_int(b.identity)
    a.call(b_int, 0.0, addr="b", chat=True)
    for i in range(50):
        rid = i.to_bytes(16, "big")
        a.send_frame(b_int, rid, encode_request(rid, "spam"), 0.0)
    net.run(0.0)
    assert len(net.of("b", ContactRequested)) == 5  # the burst; the rest wait, unacknowledged
    assert b.stats["text_rate_limited"] == 45


def test_send_frame_takes_only_acknowledged_frames_with_their_own_id():
    net = pair()
    a, b = net.layers["a"], net.layers["b"]
    b_int = as_int(b.identity)
    a.call(b_int, 0.0, addr="b", chat=True)
    for frame_id, frame in ((RID, encode_presence(ONLINE)),  # PRESENCE is never queued
                            (bytes(16), encode_request(RID))):  # an id that is not the frame's
        with pytest.raises(ValueError):
            a.send_frame(b_int, frame_id, frame, 0.0)
    assert a.send_frame(b_int, RID, encode_request(RID), 0.0) is not None
