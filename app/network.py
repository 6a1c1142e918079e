"""The daemon's view of the network: where it joins (bootstrap and the saved peers.json), saving
the routing table's best contacts, the public address and NAT kind the node observed, `network`
events when any of it changes, and the `lookup` command. Rejoining, NAT keep-alives and address
probes are the node's own upkeep (kadtalk.node.upkeep, kadtalk.node.traversal): the same code
runs in the simulator; no protocol timing lives here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable

from kadtalk.node import addresses
from kadtalk.node.layer import Event
from kadtalk.node.relay import RelayLost
from kadtalk.node.routing.events import Joined
from kadtalk.node.routing.layer import TooManyLookups
from kadtalk.node.traversal import AddressObserved, nat_kind
from kadtalk.transport.udp import UdpDriver, parse_hostport

from . import protocol
from .callers import Callers
from .config import Config, load_peers, save_peers
from .control import DaemonError

log = logging.getLogger(__name__)

# How long a client's `lookup` command waits for its answer: a limit of the control surface,
# not protocol timing (the lookup's own timeouts are the routing layer's, and it ends sooner).
LOOKUP_TIMEOUT = 30.0
SAVE_INTERVAL = 600.0  # seconds between saves of the routing table's best contacts


def best_peers(driver: Any, limit: int = 64) -> list[tuple[str, tuple[str, int]]]:
    """The table's longest-lived contacts, taken round-robin across buckets (Node.best_peers)."""
    return [(f"{node_id:040x}", tuple(addr)) for node_id, addr in driver.node.best_peers(limit)]


PROBES = (("8.8.8.8", 9), ("2001:4860:4860::8888", 9))  # a route out for each family


def route_sources(towards: Any) -> list[str]:
    """The source address the host's routes pick towards each address (IPv4 or IPv6 (host,
    port)): a UDP connect sends nothing. Unroutable ones are left out."""
    found = []
    for addr in towards:
        try:
            family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(addr[:2])
                found.append(s.getsockname()[0])
        except (OSError, TypeError, ValueError, IndexError):
            pass
    return found


def carried(addrs: list[Any], driver: Any) -> list[Any]:
    """Of our `addrs`, those in a family `driver`'s socket carries: IPv4 for an AF_INET one,
    IPv6 for an AF_INET6 one, and IPv4 too when that one is dual-stack and not bound to one
    address. A relay names its other-family address (ALLOCATED) from these alone: one its
    socket does not listen on would take every knock of the owner's callees (and one it
    cannot send to needs no guard as a forwarding target either). A driver that does not say
    its socket's family (a test's stand-in) carries both."""
    family = getattr(driver, "family", None)
    if family is None:
        return list(addrs)
    v6 = family == socket.AF_INET6
    v4 = not v6 or (driver.dual_stack and driver.address[0] in ("::", ""))
    return [a for a in addrs if (v6 if addresses.is_ipv6(a) else v4)]


class Network:
    """`driver` is set by `start` once the node runs."""

    def __init__(self, config: Config, callers: Callers, broadcast: Callable[[dict], None]):
        self.config = config
        self.callers = callers
        self.broadcast = broadcast
        self.driver: UdpDriver | None = None
        self.joined = False
        self.observed: AddressObserved | None = None  # the latest answer to an address probe
        self.nat = "unknown"  # none | cone | symmetric | unknown (docs/testbed.md)
        self.bootstrap: list[tuple[str, int]] = []  # what it joins through (bootstrap_addresses)
        self._sent: tuple | None = None  # what the last network event said
        self._last_save = 0.0

    def bootstrap_addresses(self) -> list[tuple[str, int]]:
        """The configured bootstrap nodes, then the contacts saved by the last run."""
        addresses: list[tuple[str, int]] = []
        for text in self.config.bootstrap:
            try:
                addresses.append(parse_hostport(text))
            except ValueError as e:
                raise DaemonError(f"bootstrap {e}") from None
        for _, addr in load_peers(self.config.peers_path):
            if addr not in addresses:
                addresses.append(addr)
        self.bootstrap = addresses
        return addresses

    def start(self, driver: UdpDriver, now: float) -> None:
        self.driver = driver
        self._last_save = now
        driver.node.set_relay_settings(self.config.relay_settings)  # [relay]
        # our addresses before any probe answers (an IPv6-only daemon never gets one): the
        # node knocks at none of them, nor anywhere in their IPv6 /64, when an offer names one
        driver.node.set_nat(self.nat, None, own=self.local_addresses())

    def local_addresses(self) -> list[Any]:
        """The address we are bound to and each family's route source, at our port, in a
        family our socket carries (`carried`)."""
        host, port = self.driver.address[:2]
        own = [(host, port)] + [(h, port) for h in route_sources(PROBES)]
        return carried([a for a in dict.fromkeys(own) if a[0] not in ("0.0.0.0", "::")],
                       self.driver)

    def save_peers(self) -> None:
        if self.driver is None:
            return
        peers = best_peers(self.driver)
        if not peers:
            return  # keep the previous list: an empty table teaches nothing
        try:
            save_peers(self.config.peers_path, peers)
            log.info("saved %d routing contacts to %s", len(peers), self.config.peers_path)
        except OSError as e:
            log.warning("cannot save routing contacts to %s: %s", self.config.peers_path, e)

    def status(self) -> dict[str, Any]:
        size = len(self.driver.node.routing.table) if self.driver is not None else 0
        host, port = self.driver.address if self.driver is not None else (None, None)
        return {"table_size": size, "reachable": size > 0, "joined": self.joined,
                "bootstrap": len(self.bootstrap),
                "host": host, "port": port,
                "public_address": (addresses.text(self.observed.public)
                                   if self.observed is not None else None),
                "nat": self.nat, "relay": self.relay_status()}

    def relay_status(self) -> dict[str, Any]:
        """Whether calls need a relay (we are NATed), the relays we hold for them, and whether
        we relay for others (public, [relay] serve)."""
        node = self.driver.node if self.driver is not None else None
        layer = node.relay if node is not None else None
        if layer is None:
            return {"enabled": False, "needed": False, "held": [], "serving": False,
                    "relayed_for": 0}
        server = layer.server
        return {"enabled": True, "needed": node.needs_relay,
                "held": [addresses.text(p.relay) for p in node.relays_held()],
                "serving": layer.serving,
                "relayed_for": len(server.allocations) if server is not None else 0}

    def check(self, force: bool = False) -> None:
        """A `network` event to every client if the status changed (or `force`)."""
        status = self.status()
        key = (status["table_size"], status["reachable"], status["public_address"], status["nat"],
               status["relay"]["needed"], tuple(status["relay"]["held"]),
               status["relay"]["serving"])
        if force or key != self._sent:
            self._sent = key
            self.broadcast({"event": "network", **status})

    def every_second(self, now: float) -> None:
        self.check()
        if now - self._last_save >= SAVE_INTERVAL:
            self._last_save = now
            self.save_peers()

    def on_event(self, event: Event) -> None:
        """A node event; those not about joining or our address are ignored."""
        if type(event) is Joined:
            log.info("join: %d contacts after %d RPCs (%d timeouts)",
                     event.table_size, event.rpcs, event.timeouts)
            self.joined = event.success
            if event.success:
                self.save_peers()  # a daemon killed before its shutdown save still rejoins
            self.check(force=True)  # after the save: clients may rely on peers.json
        elif type(event) is RelayLost:
            log.warning("call %d: its relay %s:%d went silent; %s", event.session_id,
                        *event.path.relay, "trying another relay" if event.recovering
                        else "no other relay: the call ends if the peer stays silent")
        elif type(event) is AddressObserved:
            nat, before = self._nat_kind(event), self.observed
            self.observed = event
            if self.driver is not None and (nat != self.nat or before is None
                                            or before.public != event.public):
                # a public node relays for others ([relay] serve auto); a NATed one holds relays
                self.driver.node.set_nat(nat, event.public, own=self.own_addresses(event))
            self.nat = nat
            self.check()

    def own_addresses(self, event: AddressObserved) -> list[Any]:
        """Every address of ours we know (a relay we serve never forwards to one, IPv6: its
        /64): where the probe saw us, the address we are bound to, and the source address of
        each family's route out (a dual-stack daemon seen over IPv4 has an IPv6 one too), in
        a family our socket carries (`carried`: the relay names its other one from these)."""
        port = self.driver.address[1]
        own = [event.public, (self.driver.address[0], port)]
        own += [(host, port) for host in route_sources((event.observer, *PROBES))]
        return carried([a for a in dict.fromkeys(own) if a[0] not in ("0.0.0.0", "::")],
                       self.driver)

    def _nat_kind(self, event: AddressObserved) -> str:
        """The node's rule (kadtalk.node.traversal.nat_kind), given our local address as routed
        towards the observer: the I/O part, which only the daemon can do."""
        local = None
        if not event.symmetric:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.connect(event.observer)  # no packet: just the route's source address
                    local = (s.getsockname()[0], self.driver.address[1])
            except (OSError, TypeError, ValueError):
                pass
        return nat_kind(event, local)

    async def cmd_lookup(self, client: Any, msg: dict) -> dict:
        peer = self.callers.target(msg)
        started = self.driver.loop.time()
        try:
            result = await asyncio.wait_for(self.driver.find_peer(int(peer, 16)), LOOKUP_TIMEOUT)
        except asyncio.TimeoutError:
            raise protocol.BadRequest("timeout", "the lookup took too long") from None
        except TooManyLookups:
            raise protocol.BadRequest("busy", "too many lookups are running; try again") from None
        found = result.peer is not None
        return {
            "peer": peer, "found": found,
            "address": addresses.text(result.peer[1]) if found else None,
            "rpcs": result.rpcs, "hops": result.hops, "timeouts": result.timeouts,
            "ms": round((self.driver.loop.time() - started) * 1000, 1),
        }
