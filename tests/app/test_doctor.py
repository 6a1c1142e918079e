"""`kadtalk doctor` (app/doctor.py): each NAT kind's verdict on the in-memory network with the
simulated NATs of transport/memory.py (explicit time), and real daemons on loopback (the
control command, its progress event, the command line and its exit codes)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from kadtalk.app.doctor import LIMITED, NO_PEERS, OK, Checkup, assess
from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.traversal import nat_kind
from kadtalk.transport.memory import FilteringNat, MemoryNet, SymmetricNat, direct

from .conftest import KADTALK, connect, joined_pair, start_daemon

R_PUBLIC, R_PRIVATE = ("203.0.113.5", 5004), ("10.0.0.5", 5004)
P, Q, O = ("198.51.100.1", 5004), ("198.51.100.2", 5004), ("198.51.100.3", 5004)
Q2 = ("198.51.100.4", 5004)
NO_V6 = {"socket": True, "route": False}


def node() -> Node:
    ident = Identity.generate()
    return Node(int.from_bytes(ident.node_id, "big"), ContactRegistry(), random.Random(1),
                identity=ident, traversal=True)


def doctor(kind: str, lonely: bool = False) -> tuple[list[dict], int, dict]:
    """r behind `kind`, checked: r knows helpers p and o; p knows r and q, o knows r and q2
    (strangers to r); `lonely`: o knows r only. The findings, the exit code and the facts."""
    nat: Any = direct
    r_at, local = R_PUBLIC, R_PUBLIC
    if kind in ("full-cone", "filtering"):
        local = R_PRIVATE  # behind a NAT that keeps the port (endpoint-independent mapping)
    if kind in ("filtering", "firewall"):
        nat = FilteringNat()
        nat.add(R_PUBLIC)
    elif kind == "symmetric":
        nat = SymmetricNat()
        nat.add(R_PRIVATE, R_PUBLIC[0])
        r_at = local = R_PRIVATE
    net = MemoryNet(nat)
    r, p, q, o, q2 = node(), node(), node(), node(), node()
    r.traversal.remember_sent()  # as the daemon does
    for addr, n in ((r_at, r), (P, p), (Q, q), (O, o), (Q2, q2)):
        net.attach(addr, n)
    if kind != "alone":
        r.add_contact(p.node_id, P, 0.0)
        r.add_contact(o.node_id, O, 0.0)
        r.probe_address([P, O], 0.0)  # r talks to its contacts: they see where it is
        net.service(r_at)
        net.run_until(1.0)
        p.add_contact(r.node_id, r.traversal.observed[P], 1.0)
        o.add_contact(r.node_id, r.traversal.observed[O], 1.0)
        p.add_contact(q.node_id, Q, 1.0)
        q.add_contact(p.node_id, P, 1.0)
        if not lonely:
            o.add_contact(q2.node_id, Q2, 1.0)
            q2.add_contact(o.node_id, O, 1.0)
    check = Checkup(r, lambda event: nat_kind(event, (local[0], 5004)), 5004, NO_V6)
    check.start(net.now)
    net.service(r_at)
    while not check.done(net.now):
        net.run_until(net.now + 0.2)
    assert net.now - check.started <= 6.0
    facts = check.facts()
    json.dumps(facts)  # the control reply carries them
    findings, code = assess(facts, "10.0.0.5")
    return findings, code, facts


def nat_text(findings: list[dict]) -> str:
    return next(f["text"] for f in findings if f["check"] == "nat")


def test_public_address_calls_reach_you_directly():
    findings, code, facts = doctor("open")
    assert code == OK and facts["nat"] == "none" and facts["probes"]["from_strangers"] == 2
    assert nat_text(findings).startswith("Calls can reach you directly (no NAT")


def test_full_cone_nat_calls_reach_you_directly():
    findings, code, facts = doctor("full-cone")
    assert code == OK and facts["nat"] == "cone" and facts["independent"]
    assert "full-cone" in nat_text(findings)


def test_filtering_nat_hole_punching_and_forward_a_port():
    findings, code, facts = doctor("filtering")
    assert code == LIMITED and facts["nat"] == "cone"
    assert facts["probes"]["forwarded"] == 2 and facts["probes"]["from_strangers"] == 0
    assert nat_text(findings) == ("Your router filters incoming UDP: callers reach you through "
                                  "hole punching; forward UDP port 5004 to 10.0.0.5 for more "
                                  "reliable calls.")


def test_one_helper_s_probe_missing_is_not_enough_to_say_filtering():
    """One PROBE may be lost (or refused by its prober's meter): with one helper forwarding,
    a filtering NAT is "could not be tested", never a verdict either way."""
    findings, code, facts = doctor("filtering", lonely=True)
    assert facts["probes"]["forwarded"] == 1 and code == LIMITED
    assert "could not be tested" in nat_text(findings)


def test_a_firewall_without_nat_is_named():
    findings, code, facts = doctor("firewall")
    assert code == LIMITED and facts["nat"] == "none"
    assert nat_text(findings).startswith("A firewall drops incoming UDP on port 5004")


def test_symmetric_nat_calls_need_a_relay():
    findings, code, facts = doctor("symmetric")
    assert code == LIMITED and facts["symmetric"] and len(set(facts["views"].values())) == 2
    assert nat_text(findings).startswith("Your NAT changes the port for each peer (symmetric")
    assert "relay" in nat_text(findings)


def test_no_peers_answered():
    findings, code, facts = doctor("alone")
    assert code == NO_PEERS and facts["peers_asked"] == 0
    assert findings[0]["text"].startswith("No peers answered: check the bootstrap address")


def test_ipv6_findings():
    base = {"table_size": 3, "port": 5004, "peers_asked": 2, "peers_answered": 2, "views": {},
            "public_address": "203.0.113.5:5004", "nat": "none", "symmetric": False,
            "independent": True, "probes": {"asked": 2, "forwarded": 0, "from_strangers": 0,
                                            "from_known": 0, "unclear": 0},
            "relay": {"needed": False, "held": []}}
    texts = {}
    for name, v6 in (("works", {"socket": True, "route": True, "contacts": 3}),
                     ("v4 socket", {"socket": False, "route": True, "contacts": 0}),
                     ("no route", {"socket": True, "route": False, "contacts": 0}),
                     ("silent", {"socket": True, "route": True, "contacts": 0})):
        findings, code = assess({**base, "ipv6": v6})
        assert code == OK  # IPv6 is advice, not a failure
        texts[name] = findings[-1]
    assert texts["works"]["ok"] and texts["works"]["text"].startswith("IPv6 works: 3 peers")
    assert "IPv4 only" in texts["v4 socket"]["text"]
    assert "enabling IPv6 on your router" in texts["no route"]["text"]
    assert "no peer has answered over IPv6" in texts["silent"]["text"]


def run(coro, timeout: float = 90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_real_daemons_on_loopback_doctor_command_progress_and_cli(sock_root):
    """Three daemons on 127.0.0.1 (public, no NAT): c's helpers forward its probes and they
    arrive (from a host c has sent to, loopback: no proof), so: no NAT, reachable, exit 0.
    A daemon alone: no peers, exit 2. Bad arguments are refused."""

    async def kadtalk(sock: str, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *KADTALK, "doctor", "--socket", sock, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 40)
        return proc.returncode, out.decode(), err.decode()

    async def scenario():
        async with joined_pair(sock_root) as pair:
            a_port = pair.a.driver.address[1]
            c = await start_daemon(sock_root, "c", bootstrap=[f"127.0.0.1:{a_port}"])
            try:
                cc = await connect(c)
                await cc.wait_event(lambda e: e.get("event") == "network"
                                    and e.get("table_size", 0) >= 2, timeout=20)
                r = await cc.request("doctor", seconds=6)
                event = await cc.wait_event(lambda e: e.get("event") == "doctor", timeout=1)
                assert event["step"] == "asking" and event["peers"] >= 1
                facts = r["facts"]
                assert r["code"] == OK and r["seconds"] <= 7
                assert facts["nat"] == "none" and facts["peers_answered"] >= 1
                probes = facts["probes"]  # they came in, from loopback: proof of nothing
                assert probes["forwarded"] >= 1 and probes["from_known"] + probes["unclear"] >= 1
                assert probes["from_strangers"] == 0
                assert facts["public_address"] == f"127.0.0.1:{c.driver.address[1]}"
                assert [f["check"] for f in r["findings"]] == ["peers", "nat", "ipv6"]
                assert "IPv4 only" in r["findings"][2]["text"]  # bound to 127.0.0.1
                bad = await cc.request("doctor", check=False, seconds=0)
                assert bad["error"] == "bad_request"
                code, out, _ = await kadtalk(str(c.socket_path))
                assert code == 0 and "Calls can reach you directly" in out
                assert out.startswith("checking") and "asking" in out
                code, out, _ = await kadtalk(str(c.socket_path), "--json", "--seconds", "3")
                assert code == 0 and json.loads(out)["code"] == 0
                await cc.close()
            finally:
                await c.stop()
        alone = await start_daemon(sock_root, "d")
        try:
            code, out, _ = await kadtalk(str(alone.socket_path), "--seconds", "2")
            assert code == 2 and "No peers answered" in out
        finally:
            await alone.stop()

    run(scenario())
