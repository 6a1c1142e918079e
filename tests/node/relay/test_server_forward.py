"""`RelayLayer.forward`, the drivers' fast path for relayed DATA (transport/udp.py), against
the ordinary path (`receive_datagram`, then `datagrams_to_send`): for any sequence of
datagrams, good and bad, from the owner, its peer and a stranger, at any times, the same
datagrams leave for the same addresses and the same counts come out; `forward` takes only a
well-formed DATA naming one of the relay's allocations, and leaves anything else untouched."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.relay import DROPS, RelaySettings, wire

from .conftest import A, B, C, World

# small budgets and a short consent, so that drops of every kind come up
LIMITED = RelaySettings(serve="always", allocation_rate=400.0, allocation_burst=600.0,
                        total_rate=700.0, total_burst=900.0, consent=2.0,
                        default_lifetime=60, max_lifetime=60)
SOURCES = {"owner": A, "peer": B, "stranger": C}


def _datagram(kind: str, number: bytes, size: int) -> bytes:
    """The concrete datagram of an abstract one, with this world's allocation number."""
    if kind == "data":
        return wire.data(number, bytes(size))
    if kind == "unknown":
        return wire.data(bytes(8), bytes(size))
    if kind == "long":
        return wire.data(number, bytes(wire.MAX_PAYLOAD + 1))
    if kind == "short":
        return wire.data(number, b"")[:9]
    if kind == "refresh":
        return wire.refresh(number, 60)
    return b""  # "empty": the node counts it, the layer never sees it; here: malformed


DATAGRAMS = st.lists(st.tuples(
    st.sampled_from(["data"] * 6 + ["unknown", "long", "short", "refresh", "empty"]),
    st.sampled_from(sorted(SOURCES)), st.integers(0, 300), st.floats(0.0, 1.5)),
    min_size=1, max_size=40)


def _run(steps: list, fast: bool) -> tuple[list, dict]:
    world = World(LIMITED)
    path = world.linked(0.0).path
    relay, number = world.relay, path.allocation
    world.at(B).send(path, b"consent", 0.0)  # the peer speaks first: consent is fresh
    world.settle(0.0)
    relay.datagrams_to_send(0.0)  # (what settle already carried)
    out: list = []
    now = 0.0
    for kind, who, size, step in steps:
        now += step
        data, src = _datagram(kind, number, size), SOURCES[who]
        before = dict(relay.stats)
        sent: list = []
        if fast and data:
            taken = relay.forward(data, src, now, lambda d, target: sent.append((d, target)))
            if taken:
                assert wire.is_data(data) and data[2:10] == number  # only ours
                after = relay.stats
                changed = {k: after.get(k, 0) - before.get(k, 0)
                           for k in set(before) | set(after) if after.get(k, 0) != before.get(k, 0)}
                # exactly one outcome: forwarded (once, its bytes) and sent, or one drop
                # reason counted once (an expired allocation: also its expiry) and not sent
                if sent:
                    assert changed == {"forwarded": 1, "forwarded_bytes": len(data)}
                    [(copy, target)] = sent
                    assert copy is data  # unchanged
                    assert {src, target} == {A, B}  # between the owner and its peer only
                else:
                    assert changed in ({"unknown_allocation": 1, "expired": 1},) or (
                        len(changed) == 1 and list(changed.values()) == [1]
                        and set(changed) <= DROPS)
            else:
                assert dict(relay.stats) == before and not sent  # untouched
                relay.receive_datagram(data, src, now)
                sent = relay.datagrams_to_send(now)
        elif data:
            relay.receive_datagram(data, src, now)
            sent = relay.datagrams_to_send(now)
        # allocation numbers differ between worlds: compare the rest
        out.append([(d.replace(number, b"N" * 8), target) for d, target in sent])
    return out, dict(relay.stats)


@settings(max_examples=60, deadline=None)
@given(DATAGRAMS)
def test_the_fast_path_sends_and_counts_exactly_what_the_ordinary_path_does(steps):
    fast_out, fast_stats = _run(steps, fast=True)
    slow_out, slow_stats = _run(steps, fast=False)
    assert fast_out == slow_out
    assert fast_stats == slow_stats


def test_forward_counts_each_outcome_once_and_tally_folds_the_forwarded_counts():
    world = World(LIMITED)
    path = world.linked(0.0).path
    relay, number = world.relay, path.allocation
    sent: list = []

    def send(data: bytes, target: tuple) -> None:
        sent.append((data, target))

    assert relay.forward(wire.refresh(number, 60), A, 0.1, send) is False  # not DATA
    assert relay.forward(wire.data(bytes(8), b"x"), A, 0.1, send) is False  # not ours
    assert relay.forward(wire.data(number, b"x")[:9], A, 0.1, send) is False  # malformed
    assert sent == []
    there = wire.data(number, b"to the peer")  # the peer's knock echo was its consent
    assert relay.forward(there, A, 0.1, send) is True and sent == [(there, B)]
    assert relay.forward(wire.data(number, b"?"), C, 0.3, send) is True  # a stranger: dropped
    assert relay.drop_counts()["not_permitted"] == 1 and len(sent) == 1
    late = wire.data(number, b"late")  # nothing from the peer for consent (2 s): dropped
    assert relay.forward(late, A, 0.1 + LIMITED.consent, send) is True and len(sent) == 1
    assert relay.drop_counts()["stale_consent"] == 1
    back = wire.data(number, b"from the peer")  # which its next datagram restores
    assert relay.forward(back, B, 2.5, send) is True and sent[1:] == [(back, A)]
    server = relay.server
    assert server.forwarded == 1  # kept as an integer until `stats` is read (drop_counts did)
    assert relay.stats["forwarded"] == 2
    assert relay.stats["forwarded_bytes"] == len(there) + len(back)
    assert server.forwarded == 0  # folded in by reading `stats`, once
    assert relay.stats["forwarded"] == 2


def test_a_layer_that_does_not_serve_takes_nothing():
    world = World(RelaySettings(serve="never"))
    relay = world.relay
    assert relay.server is None
    assert relay.forward(wire.data(bytes(8), b"x"), A, 0.0, lambda d, t: None) is False
    assert "forwarded" not in relay.stats
