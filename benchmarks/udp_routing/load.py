"""The load generator of part (a): one UDP socket keeping a window of find-node requests
outstanding at one server, in that server's own wire format (a `LoadSpec` from its adapter), and
counting the answers per second.

Everything system-specific is in the `LoadSpec`; the generator only matches an answer to its
request by the key it carries, so that it measures the server, not the client.
"""

from __future__ import annotations

import collections
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


def open_socket(server_port: int, source: str = HOST) -> socket.socket:
    """A socket with a 1 MiB receive buffer, bound to `source` and connected to the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((source, 0))
    sock.connect((HOST, server_port))
    return sock


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
