"""The loopback flood benchmark: a real flooding process; honest lookups through the flooded
node."""

from __future__ import annotations

import json

from benchmarks import flood


def test_quick_flood_run_keeps_honest_lookups_working(tmp_path, capsys):
    out = tmp_path / "flood.json"
    assert (
        flood.main(
            ["--quick", "--seconds", "0.5", "--lookups", "10", "--rate", "5000", "--json", str(out)]
        )
        == 0
    )
    payload = json.loads(out.read_text())
    figures = payload["figures"]
    assert figures["honest lookups that succeed"]["ours"] >= 0.9  # under flood
    assert figures["honest lookups that succeed"]["baseline"] == 1.0
    [run] = payload["runs"]
    assert run["refused_source"] > 0  # the flood did reach the server and was held to its budget
    assert run["flooded"]["success"] >= 0.9
    assert "Flood on loopback" in capsys.readouterr().out


def test_forged_datagrams_are_well_formed_ipv4_udp():
    import socket
    import struct

    data = flood.udp_over_ipv4(("127.1.2.3", 4000), ("127.0.0.1", 5000), b"\x02hello")
    assert len(data) == 20 + 8 + 6
    version_ihl, _, total, _, _, ttl, proto, _, src, dst = struct.unpack(">BBHHHBBH4s4s", data[:20])
    assert (version_ihl, total, proto) == (0x45, 34, socket.IPPROTO_UDP) and ttl > 0
    assert (socket.inet_ntoa(src), socket.inet_ntoa(dst)) == ("127.1.2.3", "127.0.0.1")
    assert struct.unpack(">HHHH", data[20:28]) == (4000, 5000, 14, 0) and data[28:] == b"\x02hello"
    sources = {flood.forged_source(i) for i in range(70_000)}
    assert len(sources) == 70_000 and all(not s[0].startswith("127.0.0.") for s in sources)
