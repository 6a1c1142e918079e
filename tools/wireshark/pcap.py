"""Write kadtalk datagrams as a pcap file (Ethernet, IPv4, UDP), for the dissector and its tests.

    python tools/wireshark/pcap.py vectors.pcap [PORT]

writes every datagram of docs/vectors/*.json (relay, storage, the session's KEY messages,
packets and cookies) and docs/protocol.md's routing examples, one frame each, from 192.0.2.1 to
198.51.100.1 on PORT (5004, the daemon's default); docs/wireshark.md shows tshark reading it.
No capture privileges and no kadtalk import are needed: only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import sys
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"
WALL = 1_767_225_600  # 2026-01-01, the vectors' clock

Address = tuple[str, int]


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src: Address, dst: Address, payload: bytes) -> bytes:
    """One Ethernet frame carrying `payload` in UDP over IPv4 (UDP checksum 0: none)."""
    udp = struct.pack(">HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                       socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    head = head[:10] + struct.pack(">H", _ip_checksum(head)) + head[12:]
    return bytes(6) + b"\x02" + bytes(5) + b"\x08\x00" + head + udp


def pcap(frames: list[tuple[float, Address, Address, bytes]]) -> bytes:
    """A classic pcap file (link type Ethernet) of (time, source, destination, payload)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for t, src, dst, payload in frames:
        data = frame(src, dst, payload)
        sec = int(t)
        out.append(struct.pack("<IIII", sec, round((t - sec) * 1e6), len(data), len(data)))
        out.append(data)
    return b"".join(out)


def vector_datagrams() -> list[bytes]:
    """The datagrams of docs/protocol.md §6 and docs/vectors/*.json, in protocol order."""
    sha1 = lambda name: hashlib.sha1(name).digest()  # noqa: E731
    alice, bob, carol, dave, erin = (sha1(n) for n in (b"alice", b"bob", b"carol", b"dave",
                                                       b"erin"))
    out = [b"\x00" + alice + bob,
           b"\x01" + carol + bob + erin + socket.inet_aton("10.0.0.1") + struct.pack(">H", 5004)
           + dave + socket.inet_aton("192.168.1.7") + struct.pack(">H", 4000)]
    session = json.loads((VECTORS / "session.json").read_text())
    cookie = json.loads((VECTORS / "session-cookie.json").read_text())
    out += [bytes.fromhex(session["key_req"]), bytes.fromhex(cookie["cookie_reply"]),
            bytes.fromhex(cookie["cookie_retry"]), bytes.fromhex(session["key_res"])]
    out += [bytes.fromhex(p["wire"]) for p in session["packets"]]
    for name in ("relay.json", "storage.json"):
        vectors = json.loads((VECTORS / name).read_text())
        out += [bytes.fromhex(m["hex"]) for m in vectors["messages"]]
    return out


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    port = int(argv[1]) if len(argv) == 2 else 5004
    frames = [(WALL + i / 1000, ("192.0.2.1", port), ("198.51.100.1", port), d)
              for i, d in enumerate(vector_datagrams())]
    Path(argv[0]).write_bytes(pcap(frames))
    print(f"{argv[0]}: {len(frames)} datagrams on UDP port {port}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
