"""The node's own CPU per find-node answer, in-process and without sockets, beside what part
(a) measures through the sockets: how much of a server's time is the node (not the driver or
the kernel), and how much of that is encoding the answer's 20 contacts.

    python -m benchmarks.udp_routing.node_cost

The node is the one part (a) runs with the limits lifted (200 contacts, one sender, the load
generator's requests); each figure is the best of 7 rounds of 4,000, in CPU time. Since
17e0e7f the codec keeps each sent contact's entry bytes (`entry_cache` in
node/routing/messages.py), so "encoding 20 contacts" is the cached path of a RouteResponse's
(ID, address) pairs (after the first round every entry is cached): since 0757770 only the
simulator's shared registry answers that way, and a real node (the answer figure) joins entry
bytes it keeps per contact handle, as "kept wire bytes" does here by hand.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Callable

from benchmarks.udp_routing import kadtalk_adapter
from benchmarks.udp_routing.config import HOST

ROUNDS, PER_ROUND = 7, 4000


def best_us(step: Callable[[int], object]) -> float:
    """The fastest round's CPU microseconds per call of `step(i)`."""
    fastest = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for i in range(PER_ROUND):
            step(i)
        fastest = min(fastest, (time.process_time() - started) / PER_ROUND)
    return fastest * 1e6


async def measure(contacts: int = 200, seed: int = 1) -> dict[str, float]:
    from kadtalk.node.routing.contacts import route_wire
    from kadtalk.node.routing.messages import ID_BYTES, RouteResponse, encode_response
    from kadtalk.transport.udp import start_node

    rng = random.Random(seed)
    driver = await start_node(host=HOST, port=0, settings=kadtalk_adapter.settings(False))
    try:
        node, now = driver.node, driver.loop.time()
        for i in range(contacts):
            node.add_contact(rng.getrandbits(160), (HOST, 30000 + i), now)
        spec = kadtalk_adapter.load_spec(random.Random(seed + 1), [rng.getrandbits(160)])
        requests = [datagram for datagram, _ in spec.requests]
        source = (HOST, 40000)

        def serve(i: int) -> None:  # what the driver asks of the node per request
            node.receive_datagram(requests[i], source, now)
            while node.next_event() is not None:
                pass
            node.datagrams_to_send(now)
            node.get_timer()

        entries = tuple((rng.getrandbits(160), (HOST, 21002 + i)) for i in range(20))
        answer = RouteResponse(rng.getrandbits(160), rng.getrandbits(160), entries)
        kept = {entry: entry[0].to_bytes(ID_BYTES, "big") + (route_wire(entry[1]) or b"")
                for entry in entries}

        def with_kept_bytes(i: int) -> bytes:
            return b"".join([b"\x01", answer.responder.to_bytes(ID_BYTES, "big"),
                             answer.target.to_bytes(ID_BYTES, "big"),
                             *[kept[entry] for entry in answer.contacts]])

        assert with_kept_bytes(0) == encode_response(answer, route_wire)
        return {"node_us_per_answer": best_us(serve),
                "encode_us": best_us(lambda i: encode_response(answer, route_wire)),
                "encode_kept_bytes_us": best_us(with_kept_bytes)}
    finally:
        driver.close()


def main() -> int:
    import os

    figures = asyncio.run(measure())
    print(f"node per find-node answer (in-process, no sockets): "
          f"{figures['node_us_per_answer']:.1f} µs CPU; of which encoding 20 contacts: "
          f"{figures['encode_us']:.1f} µs; with each contact's wire bytes kept: "
          f"{figures['encode_kept_bytes_us']:.1f} µs (load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
