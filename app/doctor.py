"""`kadtalk doctor`: what reaches this node, in plain words, and what to change.

A check runs the node's own messages (docs/protocol.md §20): ADDR_REQ to a few peers (the public
address; different ports towards different peers: a symmetric NAT) and the reachability check
(PROBE_REQ: a peer has one of its contacts, a stranger to us, send us a PROBE; if it gets in,
our NAT or firewall admits unsolicited UDP). `Checkup` gathers the facts (sans-I/O: the daemon
drives it with its loop, tests with the in-memory network); `assess` turns them into findings
and an exit code; `Doctor.cmd_doctor` is the control command (docs/control.md, "doctor").
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Callable

from kadtalk.node.addresses import text
from kadtalk.node.traversal import AddressObserved

from . import protocol

CHECK_SECONDS = 6.0  # a check's default limit; `seconds` may ask 1-30
PEERS = 4  # peers asked where they see us, and helpers asked for a PROBE
SETTLE = 2.0  # s a check still waits for PROBEs after the last helper said it forwarded
OK, LIMITED, NO_PEERS = 0, 1, 2  # exit codes (`kadtalk doctor`; 3: no daemon, as every client)


def _text(addr: Any) -> str | None:
    return None if addr is None else text(addr)


class Checkup:
    """One check of `node` (a kadtalk.node.stack.Node with traversal), driven with explicit
    `now`: `start`, then `done(now)` until it says so, then `facts()`. `nat(event)` is the
    daemon's NAT rule for an AddressObserved (traversal.nat_kind with our local address, which
    only the driver knows); `ipv6`: what the driver knows of IPv6 (socket, route)."""

    def __init__(self, node: Any, nat: Callable[[AddressObserved], str], port: int,
                 ipv6: dict[str, bool], seconds: float = CHECK_SECONDS):
        self.node = node
        self.nat = nat
        self.port = port
        self.ipv6 = ipv6
        self.seconds = seconds
        self.peers: list[Any] = []
        self.started = 0.0
        self._answers = 0  # addr_res_received before the check
        self._acked_at: float | None = None
        self._acked = 0

    def start(self, now: float) -> list[Any]:
        """Ask up to PEERS IPv4 contacts nearest our ID (they hold us in their tables: those
        can help; traversal is IPv4 only); returns them."""
        node, traversal = self.node, self.node.traversal
        self.started = now
        candidates = node.rendezvous(node.node_id, 4 * PEERS)
        self.peers = [peer for peer in candidates if ":" not in str(peer[0])][:PEERS]
        self._answers = traversal.stats["addr_res_received"]
        if self.peers:
            node.probe_address(self.peers, now)
            traversal.check_reachability(self.peers, now)
        return self.peers

    def done(self, now: float) -> bool:
        """All PROBEs in; or (two peers, or the only one, having told us our address) SETTLE s
        after the latest PROBE_ACK, or after the start if none came; or out of time."""
        if not self.peers or now - self.started >= self.seconds:
            return True
        found = self.node.traversal.reachability()
        if found.forwarded != self._acked:
            self._acked, self._acked_at = found.forwarded, now
        if found.arrived >= len(self.peers):
            return True
        answered = self.node.traversal.stats["addr_res_received"] - self._answers
        since = self._acked_at if self._acked_at is not None else self.started
        return answered >= min(2, len(self.peers)) and now - since >= SETTLE

    def facts(self) -> dict[str, Any]:
        node, traversal = self.node, self.node.traversal
        found = traversal.reachability()
        views = {_text(peer): _text(traversal.observed[peer]) for peer in self.peers
                 if peer in traversal.observed}
        public = traversal.public
        kind = "unknown"
        if public is not None:
            observer = next(iter(traversal.observed), None)
            kind = self.nat(AddressObserved(observer, public, public, traversal.symmetric, 0.0))
        table = node.routing.table
        addrs = node.routing.registry.addrs
        v6 = sum(1 for i in range(table.bucket_count()) for h in table.bucket(i)
                 if ":" in str(addrs[h][0]))
        relay = node.relay
        return {
            "table_size": len(table), "port": self.port, "peers_asked": len(self.peers),
            "peers_answered": min(traversal.stats["addr_res_received"] - self._answers,
                                  len(self.peers)),
            "views": views, "public_address": _text(public), "nat": kind,
            "symmetric": traversal.symmetric, "independent": traversal.independent,
            "probes": {"asked": found.asked, "forwarded": found.forwarded,
                       "from_strangers": found.strangers, "from_known": found.known,
                       "unclear": found.unclear},
            "ipv6": {**self.ipv6, "contacts": v6},
            "relay": {"needed": node.needs_relay,
                      "held": [_text(p.relay) for p in node.relays_held()]
                      if relay is not None else []},
        }


def assess(f: dict[str, Any], local: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """Findings (check, ok: True / False / None for "could not tell", text) and the exit code:
    OK when callers reach us directly, LIMITED when only through hole punching or a relay (or
    it could not be told), NO_PEERS when nobody answered. `local`: our LAN address, named in
    the port-forwarding advice."""
    port, probes = f["port"], f["probes"]
    public = f["public_address"]
    where = f" to {local}" if local else " to this machine"
    findings: list[dict[str, Any]] = []

    def say(check: str, ok: bool | None, text: str) -> None:
        findings.append({"check": check, "ok": ok, "text": text})

    if f["table_size"] == 0 or (f["peers_answered"] == 0 and probes["forwarded"] == 0):
        say("peers", False, "No peers answered: check the bootstrap address (kadtalk daemon "
            f"--bootstrap HOST:PORT) and that no firewall blocks UDP port {port}.")
        code = NO_PEERS
    else:
        say("peers", True, f"Peers answered ({f['peers_answered']} of {f['peers_asked']} "
            f"asked); they see you at {public or 'an address not known yet'}.")
        direct = probes["from_strangers"] > 0 or (f["independent"] and not f["symmetric"])
        if f["symmetric"] or f["nat"] == "symmetric":
            held = f["relay"]["held"]
            say("nat", False, "Your NAT changes the port for each peer (symmetric / carrier-grade "
                "NAT): calls to you need a relay" + (f" (holding {', '.join(held)})" if held
                                                      else "") + "; forwarding a port or IPv6 "
                "would avoid it.")
            code = LIMITED
        elif direct:
            say("nat", True, "Calls can reach you directly" + (
                " (no NAT: peers see your own address)." if f["nat"] == "none" else
                ": your router lets incoming UDP in (a full-cone NAT)."))
            code = OK
        elif probes["forwarded"] >= 2 and probes["from_known"] + probes["unclear"] == 0:
            # two probers, none got in (one PROBE may be lost, or refused by its meter)
            if f["nat"] == "none":
                say("nat", False, f"A firewall drops incoming UDP on port {port}: callers reach "
                    f"you only through hole punching; allow incoming UDP port {port}.")
            else:
                say("nat", False, "Your router filters incoming UDP: callers reach you through "
                    f"hole punching; forward UDP port {port}{where} for more reliable calls.")
            code = LIMITED
        elif f["nat"] == "none":
            say("nat", True, "Calls can reach you directly (no NAT: peers see your own address); "
                "whether a firewall drops strangers' UDP could not be tested.")
            code = OK
        else:
            say("nat", None, "Callers reach you through hole punching (one public port for all "
                "peers); whether your router also lets strangers in could not be tested: "
                f"forwarding UDP port {port}{where} makes sure.")
            code = LIMITED
    v6 = f["ipv6"]
    if v6["contacts"]:
        say("ipv6", True, f"IPv6 works: {v6['contacts']} peers are reached over IPv6.")
    elif not v6.get("socket"):
        say("ipv6", None, "No IPv6: the daemon's socket is IPv4 only (--host); bind it to :: "
            "(the default) to use IPv6 where the host has it.")
    elif not v6.get("route"):
        say("ipv6", None, "No IPv6: this machine has no IPv6 route to the internet; enabling "
            "IPv6 on your router (ask your ISP) lets IPv6 callers reach you without NAT.")
    else:
        say("ipv6", None, "This machine has IPv6, but no peer has answered over IPv6 yet "
            "(few peers have it, or a firewall drops it).")
    return findings, code


class Doctor:
    """The `doctor` control command; `network` is the daemon's app.network.Network."""

    def __init__(self, network: Any):
        self.network = network
        self.running = False

    def start(self, driver: Any) -> None:
        """At the daemon's start: remember where the node sends (a check needs it)."""
        if driver.node.traversal is not None:
            driver.node.traversal.remember_sent()

    def cmd_doctor(self, client: Any, msg: dict) -> Any:
        """The reply at once when there is nobody to ask (or the request is refused), else a
        coroutine that gives it when the check is done."""
        import socket

        from kadtalk.transport.udp import has_ipv6_route

        seconds = msg.get("seconds", CHECK_SECONDS)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not math.isfinite(seconds) or not 1 <= seconds <= 30:
            raise protocol.BadRequest("bad_request", "seconds: a number from 1 to 30")
        driver = self.network.driver
        if driver is None or driver.node.traversal is None:
            raise protocol.BadRequest("not_ready", "the node has not started")
        if self.running:
            raise protocol.BadRequest("busy", "a check is running; try again in a few seconds")
        ipv6 = {"socket": driver.family == socket.AF_INET6,
                "route": driver.node.routing.settings.ipv6 or (
                    driver.family == socket.AF_INET6 and has_ipv6_route())}
        check = Checkup(driver.node, self.network._nat_kind, driver.address[1], ipv6,
                        float(seconds))
        peers = check.start(driver.loop.time())
        if not peers:
            return self._result(driver, check)
        driver.service()
        client.send({"event": "doctor", "step": "asking", "peers": len(peers),
                     "text": f"asking {len(peers)} peers where they see you, and to have a "
                             "peer you never talked to send you a probe"})
        self.running = True
        return self._wait(client, driver, check)

    async def _wait(self, client: Any, driver: Any, check: Checkup) -> dict:
        try:
            while not check.done(driver.loop.time()):
                await asyncio.sleep(0.2)
        finally:
            self.running = False
        client.send({"event": "doctor", "step": "done", "text": "checked"})
        return self._result(driver, check)

    def _result(self, driver: Any, check: Checkup) -> dict:
        facts = check.facts()
        findings, code = assess(facts, self._local(driver, check.peers))
        return {"code": code, "findings": findings, "facts": facts,
                "seconds": round(driver.loop.time() - check.started, 1)}

    @staticmethod
    def _local(driver: Any, peers: list[Any]) -> str | None:
        """Our LAN address as routed towards a peer (no packet: just the route)."""
        import socket

        for peer in peers:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.connect(peer)
                    return s.getsockname()[0]
            except (OSError, TypeError, ValueError):
                continue
        return None
