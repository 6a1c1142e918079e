"""Relayed calls between real daemons (issue 13): two hosts behind symmetric NATs can only talk
through a relay (a public node: `[relay] serve = "auto"` by default). Under 10 % and 30 % loss
on the core the call still sets up and carries audio both ways; when the relay carrying it is
killed mid-call, the call recovers through the caller's spare relay.

The daemons, the call and the audio check are kadtalk.experiments.testbed.daemons (the pairs
table uses them too). Nothing sleeps: every wait is for a control event or a log line.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from kadtalk.experiments.testbed.daemons import (
    PORT,
    CallFailed,
    NsDaemon,
    assert_heard_each_other,
    call,
    is_call,
    stop_all,
)

pytestmark = pytest.mark.timeout(240)

TONES = {"pub1": 440.0, "pub2": 550.0, "pub3": 620.0, "sa": 770.0, "sb": 990.0}


def two_symmetric_nats(tb) -> None:
    for name in ("pub1", "pub2", "pub3"):
        tb.public(name)
    tb.nat("natsa", "symmetric")
    tb.private("sa", "natsa")
    tb.nat("natsb", "symmetric")
    tb.private("sb", "natsb")


@pytest.fixture
def root():
    path = Path(tempfile.mkdtemp(prefix="ktbr"))  # short: Unix socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def start_relay_network(tb, root: Path) -> dict[str, NsDaemon]:
    """pub1 (the bootstrap), pub2, pub3 (public: they relay), then sa and sb, which wait until
    they know they are behind symmetric NATs and hold two relays each (one spare)."""
    seed = ["--bootstrap", f"{tb.host('pub1').address}:{PORT}"]
    daemons = {"pub1": NsDaemon(tb, root, "pub1", TONES["pub1"])}
    await daemons["pub1"].start()
    for group in (["pub2", "pub3"], ["sa", "sb"]):
        for host in group:
            daemons[host] = NsDaemon(tb, root, host, TONES[host], *seed)
        await asyncio.gather(*(daemons[h].start() for h in group))
        await asyncio.gather(*(daemons[h].joined(timeout=60) for h in group))
    for host in ("sa", "sb"):
        await daemons[host].event(
            lambda e: (e.get("event") == "network" and e.get("nat") == "symmetric"
                       and len(e["relay"]["held"]) >= 2), timeout=90)
    return daemons


def relayed_via(facts: dict) -> str:
    """The relay a call runs through, from the callee's view at ringing ("relay H:P")."""
    path = facts["path"] or ""
    assert path.startswith("relay "), f"the call is not relayed: {path!r}"
    return path.split()[1].rpartition(":")[0]


@pytest.mark.parametrize("loss", [0.10, 0.30])
def test_relayed_calls_under_loss_set_up_and_carry_audio(make_testbed, root, loss):
    """sa -> sb, both behind symmetric NATs, through a relay, with `loss` of every datagram
    crossing the core dropped: a relayed datagram crosses it twice (host -> relay -> host), so
    each direction loses 1 - (1 - loss)^2 (19 % and 51 %). The lookup, the relay's knock and
    permission, the key exchange and ringing recover by retransmission; audio flows both ways
    (the FFT peak of each recording is the other side's tone). The user dials again at most
    twice (`attempts`). The network forms without loss (joins under loss: test_calls.py);
    the loss starts before the dial.

    At 30 % the relayed set-up itself is the weak part (docs/testbed.md, "Loss and failure
    through a relay": a few dials in ten ring): when no attempt rings at both ends the test is
    an expected failure with the last one's reason (the caller's end reason, or
    "callee_never_rang" when every RING was lost: the caller's call ended peer_vanished); a call
    that does set up must carry audio both ways."""
    tb = make_testbed(build=two_symmetric_nats)

    async def scenario():
        daemons = await start_relay_network(tb, root)
        tb.set_loss(loss)
        try:
            sa, sb = daemons["sa"], daemons["sb"]
            try:
                facts = await call(sa, sb, talk_reports=3, attempts=3, lossy=True)
            except CallFailed as failed:
                if loss < 0.3:
                    raise
                pytest.xfail(f"relayed set-up at {loss:.0%} core loss: no dial of 3 rang at "
                             f"both ends (the last: {failed.reason}; docs/testbed.md)")
            assert relayed_via(facts) in {tb.host(h).address for h in ("pub1", "pub2", "pub3")}
            path_loss = 1 - (1 - loss) ** 2
            for end in (facts["end_a"], facts["end_b"]):
                stats = end["stats"]
                assert stats["packets"] > 30, end  # ~3 s of 50 packets/s, less the loss
                lost = stats["lost"] / max(1, stats["packets"] + stats["lost"])
                assert lost < path_loss + 0.15, (lost, path_loss, stats)
            assert_heard_each_other(sa, sb)
        finally:
            await stop_all(daemons)

    asyncio.run(asyncio.wait_for(scenario(), 200))


def test_relay_killed_mid_call_the_call_recovers_through_the_spare_relay(make_testbed, root):
    """sa calls sb through a relay; the relay's daemon is SIGKILLed while they talk. The caller
    finds its relay silent (3 s), offers its spare relay to the callee through the call's
    rendezvous, and the call moves there: both sides hear each other again, the call never
    ends, and the caller's log names the lost relay ("went silent; trying another relay")."""
    tb = make_testbed(build=two_symmetric_nats)

    async def scenario():
        daemons = await start_relay_network(tb, root)
        try:
            sa, sb = daemons["sa"], daemons["sb"]
            facts = await call(sa, sb, hang_up=False)
            relay = relayed_via(facts)
            killed = next(h for h in ("pub1", "pub2", "pub3") if tb.host(h).address == relay)
            since_a, since_b = sa.event_count(), sb.event_count()
            daemons[killed].kill()
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            # audio arrives again on both sides after a gap: a quality report of a full stream
            # (> 10 kbit/s) after one of (nearly) nothing (< 5: the relay's silence)
            for side, since in ((sa, since_a), (sb, since_b)):
                gap = await side.event(
                    lambda e: e.get("event") == "quality" and e.get("rx_kbps", 0) < 5
                    or is_call("ended")(e), timeout=20, since=since)
                assert gap.get("event") == "quality", gap
                back = await side.event(
                    lambda e: e.get("event") == "quality" and e.get("rx_kbps", 0) > 10
                    or is_call("ended")(e), timeout=30, since=side.client.seen.index(gap) + 1)
                assert back.get("event") == "quality", (side.host, back)
            recovered = loop.time() - killed_at
            assert recovered < 20, recovered
            assert "went silent; trying another relay" in sa.log() + sb.log(), sa.log()[-2000:]
            assert not any(is_call("ended")(e) for d, s in ((sa, since_a), (sb, since_b))
                           for e in d.client.seen[s:])
            await sa.client.request("hangup")
            end_a = await sa.event(is_call("ended"), since=since_a)
            end_b = await sb.event(is_call("ended"), since=since_b)
            assert (end_a["reason"], end_b["reason"]) == ("hung_up", "remote_hung_up")
            assert_heard_each_other(sa, sb)
        finally:
            daemons = {h: d for h, d in daemons.items() if d.proc.poll() is None}
            await stop_all(daemons)

    asyncio.run(asyncio.wait_for(scenario(), 200))
