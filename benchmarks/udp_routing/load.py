"""The load generators of part (a), in each server's own wire format (a `LoadSpec` from its
adapter), counting the answers per second:

- `drive`: one UDP socket keeping a window of find-node requests outstanding (closed loop: the
  server's capacity, when nothing is refused);
- `drive_open`: requests at a fixed rate from many source addresses in 127.0.0.0/8 (open loop:
  refused requests do not slow the sender down, so a rate limit shows as answers/s), each
  source answering the requests the server sends it (kadtalk's address probes) as a peer would.

Everything system-specific is in the `LoadSpec`; the generators only match an answer to its
request by the key it carries, so that they measure the server, not the client.
"""

from __future__ import annotations

import collections
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Callable

from benchmarks.udp_routing.config import HOST

REQUEST_POOL = 4096  # distinct prebuilt requests the load generator cycles through
EXPIRY = 0.5  # seconds after which an unanswered load request is written off


@dataclass
class LoadSpec:
    """What the load generator sends to one system and how it recognises an answer."""

    system: str
    requests: list[tuple[bytes, bytes]]  # (datagram, key the answer carries)
    key_slice: slice  # where an answer carries the key
    contacts_in: Callable[[bytes], int]  # contacts in one answer (for the sanity check)
    # A source's reply to a datagram the server sent it (an address probe), given the source's
    # index (request i comes from source i % sources, by origins[i % sources]); None: ignore.
    reply: Callable[[bytes, int], bytes | None] | None = None


def source_address(i: int) -> str:
    """The i-th load source: 127.42.0.1, 127.42.0.2, ... (any 127.x.y.z binds on Linux)."""
    return f"127.42.{i // 250}.{i % 250 + 1}"


def open_socket(server_port: int, source: str = HOST, buffer: int = 1 << 20) -> socket.socket:
    """A socket with a `buffer`-byte receive buffer, bound to `source`, connected to the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    sock.bind((source, 0))
    sock.connect((HOST, server_port))
    return sock


def open_sources(server_port: int, count: int) -> list[socket.socket]:
    """`count` non-blocking sockets, one per source address (`source_address`)."""
    socks = []
    try:
        for i in range(count):
            sock = open_socket(server_port, source_address(i), 1 << 18)
            sock.setblocking(False)
            socks.append(sock)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def probe(sock: socket.socket, spec: LoadSpec, count: int = 8) -> list[int]:
    """Send a few requests one at a time; return the contacts in each answer."""
    found = []
    sock.settimeout(1.0)
    for datagram, key in spec.requests[-count:]:
        sock.send(datagram)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionRefusedError):
                continue
            if data[:1] == b"\x01" and data[spec.key_slice] == key:
                found.append(spec.contacts_in(data))
                break
    if not found:
        raise RuntimeError(f"the {spec.system} server did not answer the load generator's requests")
    return found


def drive(
    sock: socket.socket, spec: LoadSpec, window: int, lead_in: float, seconds: float,
    server_pid: int | None = None, cursor: list[int] | None = None,
) -> dict[str, float]:
    """Keep `window` requests outstanding; count answers during `seconds` after `lead_in`."""
    import psutil

    requests = spec.requests
    pool = len(requests)
    key_slice = spec.key_slice
    cursor = cursor if cursor is not None else [0]
    index = cursor[0]
    server = psutil.Process(server_pid) if server_pid else None
    send = sock.send
    recv = sock.recv
    clock = time.perf_counter
    outstanding: dict[bytes, float] = {}
    sent_order: collections.deque[tuple[float, bytes]] = collections.deque()
    sock.settimeout(0.05)

    start = clock()
    count_from = start + lead_in
    end = count_from + seconds
    counting = False
    answered = expired = sent = 0
    cpu0 = pcpu0 = t0 = 0.0
    now = start
    while True:
        while len(outstanding) < window:
            datagram, key = requests[index]
            index = index + 1 if index + 1 < pool else 0
            try:
                send(datagram)
            except (BlockingIOError, ConnectionRefusedError):
                break
            stamp = clock()
            outstanding[key] = stamp
            sent_order.append((stamp, key))
            sent += 1
        try:
            data = recv(65536)
        except (TimeoutError, ConnectionRefusedError):
            data = b""
        now = clock()
        if data and data[0] == 1 and outstanding.pop(data[key_slice], None) is not None:
            answered += counting
        if not counting and now >= count_from:
            counting = True
            answered = expired = sent = 0
            t0 = now
            pcpu0 = time.process_time()
            if server is not None:
                times = server.cpu_times()
                cpu0 = times.user + times.system
        if now >= end:
            break
        limit = now - EXPIRY
        while sent_order and sent_order[0][0] < limit:
            stamp, key = sent_order.popleft()
            if outstanding.get(key) == stamp:
                del outstanding[key]
                expired += 1
    elapsed = now - t0
    result = {
        "answers_per_s": answered / elapsed,
        "answered": answered,
        "sent": sent,
        "expired": expired,
        "seconds": elapsed,
        "client_cpu": (time.process_time() - pcpu0) / elapsed,
    }
    if server is not None:
        times = server.cpu_times()
        result["server_cpu"] = (times.user + times.system - cpu0) / elapsed
    # drain stragglers so the next repetition starts clean
    sock.settimeout(0.05)
    try:
        while True:
            sock.recv(65536)
    except (TimeoutError, ConnectionRefusedError):
        pass
    cursor[0] = index
    return result


def drive_open(
    socks: list[socket.socket], spec: LoadSpec, rate: float, lead_in: float, seconds: float,
    server_pid: int | None = None, cursor: list[int] | None = None,
    settle: tuple[int, float] | None = None,
) -> dict[str, float]:
    """Send `rate` requests a second, request i from source i % len(socks); count the answers
    during `seconds` after `lead_in`, and their contacts; answer what the server sends a source
    (`spec.reply`). Requests go out in small batches every millisecond or so. `settle` (a
    warm-up): (contacts, s): go on after `seconds` until every source's last answer held that
    many contacts (its address validated, for kadtalk), at most s longer; the result says how
    many sources got there ("sources_full") and when the last did ("full_after_s")."""
    import psutil

    requests = spec.requests
    pool = len(requests)
    sources = len(socks)
    keys = {key for _, key in requests}
    key_slice = spec.key_slice
    contacts_in = spec.contacts_in
    reply = spec.reply
    cursor = cursor if cursor is not None else [0]
    index = cursor[0]
    server = psutil.Process(server_pid) if server_pid else None
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, i)
    clock = time.perf_counter
    start = clock()
    count_from = start + lead_in
    end = count_from + seconds
    counting = False
    answered = sent = contacts = replies = 0
    cpu0 = pcpu0 = t0 = 0.0
    due = sent_at_t0 = 0
    now = start
    full_contacts, settle_for = settle if settle is not None else (0, 0.0)
    full: set[int] = set()  # sources whose last answer held full_contacts
    full_at: float | None = None  # when (s from the first request) every source first was
    began = start
    try:
        while now < end or (settle is not None and len(full) < sources
                            and now < end + settle_for):
            due = int((now - start) * rate)
            while sent < due:
                datagram, _ = requests[index]
                try:
                    socks[index % sources].send(datagram)
                except (BlockingIOError, ConnectionRefusedError):
                    pass  # the kernel's buffer is full: the offered load is what this host allows
                index = index + 1 if index + 1 < pool else 0
                sent += 1
            for ready, _ in selector.select(0.001):
                sock, source = ready.fileobj, ready.data
                while True:
                    try:
                        data = sock.recv(65536)  # type: ignore[union-attr]
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    if data[:1] == b"\x01" and data[key_slice] in keys:
                        got = contacts_in(data)
                        if counting:
                            answered += 1
                            contacts += got
                        if settle is not None:
                            if got >= full_contacts:
                                full.add(source)
                                if len(full) == sources and full_at is None:
                                    full_at = clock() - began
                            else:
                                full.discard(source)
                    elif reply is not None:
                        answer = reply(data, source)
                        if answer is not None:
                            try:
                                sock.send(answer)  # type: ignore[union-attr]
                                replies += 1
                            except (BlockingIOError, ConnectionRefusedError):
                                pass
            now = clock()
            if not counting and now >= count_from:
                counting = True
                answered = contacts = 0
                start, sent, due = now - sent / rate, sent, sent  # keep the pace
                t0 = now
                sent_at_t0 = sent
                pcpu0 = time.process_time()
                if server is not None:
                    times = server.cpu_times()
                    cpu0 = times.user + times.system
        elapsed = now - t0
        result = {
            "answers_per_s": answered / elapsed,
            "answered": answered,
            "sent": sent - sent_at_t0,
            "offered_per_s": (sent - sent_at_t0) / elapsed,
            "contacts_per_answer": contacts / answered if answered else float("nan"),
            "probes_answered": replies,
            "seconds": elapsed,
            "client_cpu": (time.process_time() - pcpu0) / elapsed,
        }
        if server is not None:
            times = server.cpu_times()
            result["server_cpu"] = (times.user + times.system - cpu0) / elapsed
        if settle is not None:
            result["sources_full"] = len(full)
            result["full_after_s"] = full_at
        time.sleep(0.05)  # drain stragglers so the next repetition starts clean
        for sock in socks:
            try:
                while True:
                    sock.recv(65536)
            except (BlockingIOError, ConnectionRefusedError):
                pass
    finally:
        selector.close()
    cursor[0] = index
    return result
