"""Calls between real `kadtalk daemon`s in testbed namespaces, through NATs (issue 7).

Each daemon runs in its host's namespace on UDP port 5004 with a synthetic microphone
(`--capture tone:HZ`, a different tone for each host) and records what it plays
(`--playback wav:PATH`); no sound card is involved. The tests drive the daemons through their
control sockets (ordinary files: the namespaces share the file system) and, after each call,
check that the WAV each side played holds the *other* side's tone (the FFT peak).

Nothing sleeps: every wait is for a control event, a log line or a process exit, with a timeout.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from kadtalk.experiments.testbed.daemons import NsDaemon as Daemon
from kadtalk.experiments.testbed.daemons import (
    PORT,
    assert_heard_each_other,
    call,
    is_call,
    stop_all,
)

from .conftest import standard_nat_layout

pytestmark = pytest.mark.timeout(150)

TONES = {"pub1": 440.0, "pub2": 550.0, "hf": 660.0, "hc": 880.0, "hg": 990.0, "hs": 770.0}


def NsDaemon(tb, root: Path, host: str, *args: str, call_no: int = 0) -> Daemon:
    """A daemon in `host` playing its tone from TONES."""
    return Daemon(tb, root, host, TONES[host], *args, call_no=call_no)


@pytest.fixture
def root():
    # Unix socket paths have at most 108 bytes: pytest's tmp_path can be longer
    path = Path(tempfile.mkdtemp(prefix="ktbc"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def start_network(tb, root: Path, hosts: list[str], extra: dict | None = None,
                        call_no: int = 0) -> dict[str, NsDaemon]:
    """Start pub1 first (no bootstrap), then the others bootstrapped through it; all joined."""
    seed = f"{tb.host('pub1').address}:{PORT}"
    daemons = {"pub1": NsDaemon(tb, root, "pub1", call_no=call_no)}
    await daemons["pub1"].start()
    # the other public hosts first, so that every host behind a NAT finds several peers
    for group in ([h for h in hosts if h.startswith("pub") and h != "pub1"],
                  [h for h in hosts if not h.startswith("pub")]):
        for host in group:
            daemons[host] = NsDaemon(tb, root, host, "--bootstrap", seed,
                                     *(extra or {}).get(host, ()), call_no=call_no)
        await asyncio.gather(*(daemons[h].start() for h in group))
        await asyncio.gather(*(daemons[h].joined() for h in group))
    return daemons


def run(coro, timeout: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_calls_from_behind_nats_to_public_and_between_nats(nat_testbed, root):
    """hc (full-cone NAT) calls pub1; hf (filtering NAT) calls hc and hc calls hf: NAT to NAT.
    Lookup through the public hosts, key exchange (with hole punching towards hf), ring,
    answer, audio both ways, hang-up. Each node learns its public address from its peers."""
    tb = nat_testbed

    async def scenario():
        daemons = await start_network(tb, root, ["pub1", "pub2", "hf", "hc"])
        try:
            pub1, hf, hc = daemons["pub1"], daemons["hf"], daemons["hc"]
            # observed addresses: where the peers see each node, and what kind of NAT that is
            for d, public, nat in ((pub1, tb.host("pub1").address, "none"),
                                   (hf, tb.nats["natf"].address, "cone"),
                                   (hc, tb.nats["natc"].address, "cone")):
                seen = await d.observed()
                assert (seen["public_address"], seen["nat"]) == (f"{public}:{PORT}", nat), seen
                status = (await d.client.request("status"))["network"]
                assert status["public_address"] == f"{public}:{PORT}"
            # the caller behind the full-cone NAT calls a public host
            facts = await call(hc, pub1)
            # the callee sees the caller at its NAT's outside address
            assert facts["end_b"]["address"] == f"{tb.nats['natc'].address}:{PORT}"
            assert_heard_each_other(hc, pub1)
            # NAT to NAT: from behind the filtering NAT to the host behind the full-cone NAT
            for d in daemons.values():
                d.wav.unlink(missing_ok=True)
            facts = await call(hf, hc)
            assert facts["end_b"]["address"] == f"{tb.nats['natf'].address}:{PORT}"
            assert_heard_each_other(hf, hc)
            # ... and back, into the filtering NAT
            for d in daemons.values():
                d.wav.unlink(missing_ok=True)
            facts = await call(hc, hf)
            assert facts["end_b"]["address"] == f"{tb.nats['natc'].address}:{PORT}"
            assert_heard_each_other(hc, hf)
        finally:
            await stop_all(daemons)

    run(scenario())


@pytest.mark.parametrize("loss", [0.10, 0.30])
def test_calls_under_loss_set_up_and_carry_audio(make_testbed, root, loss):
    """Every datagram crossing the core is dropped with probability `loss` (both ways): the
    lookup, the key exchange (KEY_REQ retransmissions) and ringing recover, and audio flows.
    At 30 % a key exchange (5 KEY_REQs) still fails ~3.5 % of the time: the user dials again."""
    tb = make_testbed(loss=loss, build=standard_nat_layout)

    async def scenario():
        daemons = await start_network(tb, root, ["pub1", "hc"])
        try:
            facts = await call(daemons["hc"], daemons["pub1"], talk_reports=3, attempts=3,
                               lossy=True)
            for end in (facts["end_a"], facts["end_b"]):
                assert end["stats"]["packets"] > 40, end  # ~2-3 s of 50 packets/s, less the loss
            lost = facts["end_b"]["stats"]["lost"] / max(
                1, facts["end_b"]["stats"]["packets"] + facts["end_b"]["stats"]["lost"])
            assert lost < loss + 0.15, (lost, facts["end_b"]["stats"])
            assert_heard_each_other(daemons["hc"], daemons["pub1"])
        finally:
            await stop_all(daemons)

    run(scenario())


def test_a_host_killed_mid_call_vanishes_and_rejoins_from_saved_contacts(nat_testbed, root):
    """hc is SIGKILLed while talking to pub1: pub1 ends the call with `peer_vanished` within its
    peer timeout (10 s of silence). hc, restarted without a bootstrap node, rejoins through the
    contacts it saved after joining, and can be called again."""
    tb = nat_testbed

    async def scenario():
        daemons = await start_network(tb, root, ["pub1", "pub2", "hc"])
        try:
            pub1, hc = daemons["pub1"], daemons["hc"]
            # the contacts are saved once the join has found some (a SIGKILL saves nothing)
            saved = hc.config_dir / "peers.json"
            assert saved.exists(), "peers.json is written after a successful join"
            facts = await call(pub1, hc, hang_up=False)
            since = facts["since"][0]
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            hc.kill()
            end = await pub1.event(is_call("ended"), timeout=20, since=since)
            took = loop.time() - killed_at
            assert end["reason"] == "peer_vanished", end
            assert 8.0 < took < 13.0, took  # the 10 s peer timeout, counted from the last packet
            # restart hc with its config (identity, peers.json) and no --bootstrap
            await hc.client.close()
            hc.client = None
            again = NsDaemon(tb, root, "hc", call_no=1)
            daemons["hc"] = again
            await again.start()
            assert again.node_id == hc.node_id
            status = await again.joined()
            assert status["table_size"] >= 1
            await call(pub1, again)
        finally:
            await stop_all(daemons)

    run(scenario())


def two_filtering_nats(tb) -> None:
    tb.public("pub1")
    tb.public("pub2")
    tb.nat("natf", "filtering")
    tb.private("hf", "natf")
    tb.nat("natg", "filtering")
    tb.private("hg", "natg")


def test_hole_punching_between_two_filtering_nats(make_testbed, root):
    """hf and hg sit behind address-and-port-filtering NATs: neither admits a packet from an
    endpoint its host has not sent to. hf's lookup finds hg's public address; hf asks the
    rendezvous peers near hg (pub1, pub2, which hg keeps its mappings open to) to have hg send
    it a PUNCH while hf's KEY_REQs go to hg; then the call proceeds as usual, both ways."""
    tb = make_testbed(build=two_filtering_nats)

    async def scenario():
        daemons = await start_network(tb, root, ["pub1", "pub2", "hf", "hg"])
        try:
            hf, hg = daemons["hf"], daemons["hg"]
            for d, nat in ((hf, "natf"), (hg, "natg")):
                seen = await d.observed()
                assert seen["public_address"] == f"{tb.nats[nat].address}:{PORT}", seen
                assert seen["nat"] == "cone"
            facts = await call(hf, hg)
            # the punched path, or a relay: both hosts hold relays at pub1/pub2, and hf's
            # relayed KEY_REQ (held at its relay, session 10) can reach hg before the punched
            # one; the call then runs relayed, and its move to the direct path (protocol.md
            # "Moving a call") had not come by the hang-up once in a CI run (session 13, not
            # traced). The punch itself is asserted by the counters below.
            relays = {f"relay {tb.host(h).address}:{PORT}" for h in ("pub1", "pub2")}
            assert facts["end_b"]["address"] in {f"{tb.nats['natf'].address}:{PORT}", *relays}
            assert_heard_each_other(hf, hg)
            # the punch went through the rendezvous: hg sent it, it reached hf through natf
            assert (await hg.client.request("status"))["traversal"]["punch_sent"] >= 1
            assert (await hf.client.request("status"))["traversal"]["punch_received"] >= 1
            for d in daemons.values():
                d.wav.unlink(missing_ok=True)
            await call(hg, hf)
            assert_heard_each_other(hg, hf)
        finally:
            await stop_all(daemons)

    run(scenario())


def symmetric_and_filtering(tb) -> None:
    tb.public("pub1")
    tb.public("pub2")
    tb.nat("nats", "symmetric")
    tb.private("hs", "nats")
    tb.nat("natf", "filtering")
    tb.private("hf", "natf")


def test_a_host_behind_a_symmetric_nat_calls_out_and_reaches_a_filtering_nat_through_a_relay(
        make_testbed, root):
    """A symmetric NAT maps each destination to another outside port: the peers see hs at
    different ports (status: nat = symmetric), and hs holds relays at public nodes. hs calls a
    public host directly (its KEY_REQ opens the way for the answer). hs -> hf (filtering) has no
    direct path: hf's PUNCH goes to the port the rendezvous saw, and hs's KEY_REQs come from
    another; the call runs through hs's relay (issue 13; before relays: `unreachable`)."""
    tb = make_testbed(build=symmetric_and_filtering)

    async def scenario():
        daemons = await start_network(tb, root, ["pub1", "pub2", "hs", "hf"])
        try:
            hs, hf, pub1 = daemons["hs"], daemons["hf"], daemons["pub1"]
            seen = await hs.client.wait_event(
                lambda e: (e.get("event") == "network" and e.get("nat") == "symmetric"
                           and e["relay"]["held"]), timeout=60)
            assert seen["public_address"].startswith(tb.nats["nats"].address + ":")
            facts = await call(hs, pub1)
            assert not facts["path"].startswith("relay"), facts["path"]
            assert_heard_each_other(hs, pub1)
            for d in daemons.values():
                d.new_call()
            facts = await call(hs, hf)
            relays = {f"relay {tb.host(h).address}:{PORT}" for h in ("pub1", "pub2")}
            assert facts["path"] in relays, facts["path"]
            assert_heard_each_other(hs, hf)
        finally:
            await stop_all(daemons)

    run(scenario())
