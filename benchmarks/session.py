"""kadtalk's session layer: handshake CPU, packets per second and per-packet overhead.

Everything runs in one process, in one invocation, so that the ratios hold on a noisy machine:

(a) handshake: a full key exchange between two in-memory session layers with ECDSA P-256
    identities (KEY_REQ built and signed; checked, answered and keys derived by the callee;
    KEY_RES checked, keys derived and the first RING sealed by the caller; the RING opened by
    the callee), CPU time of each side and of both. Baseline: the bare primitives each side
    needs, called directly (1 ephemeral key, 1 signature, 1 verification, 1 ECDH, 2 HKDF per
    side; both sides together for the "both" row).
(b) packets/s, 80-byte payloads, encrypt + decrypt:
      stream  SendStream.seal + ReceiveStream.open (8-byte tag, replay window, statistics);
      layer   send_media + receive_datagram + next_event through two session layers;
    baseline: the same payload through the plain `AESGCM` class (encrypt + decrypt, 16-byte
    tag, the same 12-byte nonce and type-byte AAD).
(c) per-packet overhead in bytes: kadtalk's 13 (type, sequence, 8-byte tag) against the same
    framing with AESGCM's full 16-byte tag (21).

Every figure is the median over `--repeat` repetitions, ours and the baseline interleaved.

    python -m benchmarks.session                  # full run (about 20 s)
    python -m benchmarks.session --quick          # smoke run, a few seconds
    python -m benchmarks.session --json out.json  # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from random import Random
from typing import Any

if __package__ in (None, ""):  # run as a file: python benchmarks/session.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: E402

from benchmarks.common import (  # noqa: E402
    HIGHER,
    LOWER,
    Figure,
    add_common_options,
    emit_json,
    environment,
    figures_payload,
    median,
    positive_int,
    print_table,
    resolve_repeat,
)
from kadtalk.node.identity import Identity  # noqa: E402
from kadtalk.node.session.events import MediaReceived  # noqa: E402
from kadtalk.node.session.layer import SessionLayer, SessionSettings  # noqa: E402
from kadtalk.node.session.stream import ReceiveStream, SendStream  # noqa: E402
from kadtalk.node.session.wire import HEADER_SIZE, MEDIA  # noqa: E402

PAYLOAD = 80
WALL = 1_767_225_600.0
# Settings that let one pair of layers run thousands of handshakes back to back.
BENCH = SessionSettings(max_calls=1_000_000, max_pending=1_000_000, max_sessions=1_000_000,
                        source_burst=1e9, global_burst=1e9)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=positive_int, default=300,
                        help="handshakes per repetition (default 300; 40 with --quick)")
    parser.add_argument("--packets", type=positive_int, default=20_000,
                        help="packets per repetition (default 20000; 2000 with --quick)")
    add_common_options(parser)
    return parser


# -- (a) handshake ------------------------------------------------------------------------------


def handshake_ours(count: int) -> dict[str, float]:
    """CPU seconds per handshake: caller side, callee side, both."""
    caller_id, callee_id = Identity.generate(), Identity.generate()
    caller = SessionLayer(caller_id, Random(1), BENCH, WALL)
    callee = SessionLayer(callee_id, Random(2), BENCH, WALL)
    peer = int.from_bytes(callee_id.node_id, "big")
    caller_cpu = callee_cpu = 0.0
    clock = time.process_time
    for i in range(count):
        now = i * 1e-3
        t0 = clock()
        caller.call(peer, now, addr="callee")
        (key_req, _), = caller.datagrams_to_send(now)
        t1 = clock()
        callee.receive_datagram(key_req, "caller", now)
        (key_res, _), = callee.datagrams_to_send(now)
        t2 = clock()
        caller.receive_datagram(key_res, "callee", now)
        (ring, _), = caller.datagrams_to_send(now)  # the first RING
        t3 = clock()
        callee.receive_datagram(ring, "caller", now)  # the callee opens it and rings
        t4 = clock()
        caller_cpu += (t1 - t0) + (t3 - t2)
        callee_cpu += (t2 - t1) + (t4 - t3)
    assert len(caller.sessions) == count and not caller.stats, caller.stats
    assert callee.pending_handshakes == 0 and not callee.stats, callee.stats
    return {"caller": caller_cpu / count, "callee": callee_cpu / count,
            "both": (caller_cpu + callee_cpu) / count}


def handshake_primitives(count: int) -> dict[str, float]:
    """CPU seconds for the bare primitives of one handshake: per side (one ephemeral key, one
    signature, one verification of the peer's signature, one ECDH, two HKDF) and both."""
    keys = {"caller": ec.generate_private_key(ec.SECP256R1()),
            "callee": ec.generate_private_key(ec.SECP256R1())}
    algorithm = ec.ECDSA(hashes.SHA256())
    data = bytes(300)
    signed = {side: key.sign(data, algorithm) for side, key in keys.items()}
    peer_eph = ec.generate_private_key(ec.SECP256R1()).public_key()
    sides = {"caller": 0.0, "callee": 0.0}
    clock = time.process_time
    for _ in range(count):
        for side, other in (("caller", "callee"), ("callee", "caller")):
            start = clock()
            eph = ec.generate_private_key(ec.SECP256R1())
            keys[side].sign(data, algorithm)
            keys[other].public_key().verify(signed[other], data, algorithm)
            secret = eph.exchange(ec.ECDH(), peer_eph)
            for info in (b"1", b"2"):
                HKDF(hashes.SHA256(), 40, data[:32], info).derive(secret)
            sides[side] += clock() - start
    caller, callee = sides["caller"] / count, sides["callee"] / count
    return {"caller": caller, "callee": callee, "both": caller + callee}


# -- (b) packets --------------------------------------------------------------------------------


def packets_stream(count: int) -> float:
    key, salt = bytes(range(32)), bytes(8)
    tx, rx = SendStream(key, salt), ReceiveStream(key, salt)
    payload = bytes(PAYLOAD)
    seal, open_ = tx.seal, rx.open
    start = time.perf_counter()
    for _ in range(count):
        open_(seal(MEDIA, payload), 0.0)
    elapsed = time.perf_counter() - start
    assert rx.packets == count
    return count / elapsed


def packets_aesgcm(count: int) -> float:
    aead = AESGCM(bytes(range(32)))
    salt, aad = bytes(8), bytes((MEDIA,))
    payload = bytes(PAYLOAD)
    encrypt, decrypt = aead.encrypt, aead.decrypt
    start = time.perf_counter()
    for seq in range(count):
        nonce = salt + seq.to_bytes(4, "big")
        decrypt(nonce, encrypt(nonce, payload, aad), aad)
    return count / (time.perf_counter() - start)


def packets_layer(count: int) -> float:
    a_id, b_id = Identity.generate(), Identity.generate()
    a = SessionLayer(a_id, Random(1), BENCH, WALL)
    b = SessionLayer(b_id, Random(2), BENCH, WALL)
    sid = a.call(int.from_bytes(b_id.node_id, "big"), 0.0, addr="b")
    for _ in range(2):
        for data, _ in a.datagrams_to_send(0.0):
            b.receive_datagram(data, "a", 0.0)
        for data, _ in b.datagrams_to_send(0.0):
            a.receive_datagram(data, "b", 0.0)
    b.answer(0.0)
    for data, _ in b.datagrams_to_send(0.0):
        a.receive_datagram(data, "b", 0.0)
    while a.next_event() or b.next_event():
        pass
    payload = bytes(PAYLOAD)
    received = 0
    start = time.perf_counter()
    for i in range(count):
        now = i * 0.02
        a.send_media(sid, payload, now)
        for data, _ in a.datagrams_to_send(now):
            b.receive_datagram(data, "a", now)
        event = b.next_event()
        while event is not None:
            received += type(event) is MediaReceived
            event = b.next_event()
    elapsed = time.perf_counter() - start
    assert received == count, (received, b.stats)
    return count / elapsed


def overhead() -> tuple[int, int]:
    tx = SendStream(bytes(32), bytes(8))
    ours = len(tx.seal(MEDIA, bytes(PAYLOAD))) - PAYLOAD
    return ours, 1 + 4 + 16  # type, sequence, full GCM tag


# -- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[list[Figure], dict[str, Any]]:
    repeat = resolve_repeat(args)
    handshakes = 40 if args.quick and args.handshakes == 300 else args.handshakes
    packets = 2000 if args.quick and args.packets == 20_000 else args.packets
    keys = ("hs_both", "hs_caller", "hs_callee", "hs_primitives", "hs_primitives_caller",
            "hs_primitives_callee", "pps_stream", "pps_layer", "pps_aesgcm")
    reps: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(repeat):
        ours = handshake_ours(handshakes)
        reps["hs_both"].append(ours["both"] * 1e3)
        reps["hs_caller"].append(ours["caller"] * 1e3)
        reps["hs_callee"].append(ours["callee"] * 1e3)
        primitives = handshake_primitives(handshakes)
        reps["hs_primitives"].append(primitives["both"] * 1e3)
        reps["hs_primitives_caller"].append(primitives["caller"] * 1e3)
        reps["hs_primitives_callee"].append(primitives["callee"] * 1e3)
        reps["pps_aesgcm"].append(packets_aesgcm(packets))
        reps["pps_stream"].append(packets_stream(packets))
        reps["pps_layer"].append(packets_layer(packets))
    ours_bytes, baseline_bytes = overhead()

    def fig(name, ours_key, base_key, **kw) -> Figure:
        return Figure(name, median(reps[ours_key]), median(reps[base_key]),
                      samples={"kadtalk": reps[ours_key], "baseline": reps[base_key]}, **kw)

    figures = [
        fig("(a) handshake CPU, both sides", "hs_both", "hs_primitives", unit="ms", better=LOWER,
            digits=3, note="baseline: bare primitives"),
        fig("(a) handshake CPU, caller side", "hs_caller", "hs_primitives_caller", unit="ms",
            better=LOWER, digits=3, note="baseline: the caller's primitives"),
        fig("(a) handshake CPU, callee side", "hs_callee", "hs_primitives_callee", unit="ms",
            better=LOWER, digits=3, note="baseline: the callee's primitives"),
        fig("(b) seal+open packets/s, stream", "pps_stream", "pps_aesgcm", unit="/s", better=HIGHER,
            digits=0, note="baseline: AESGCM"),
        fig("(b) send+receive packets/s, layer", "pps_layer", "pps_aesgcm", unit="/s",
            better=HIGHER, digits=0, note="baseline: AESGCM"),
        Figure("(c) overhead per packet", float(ours_bytes), float(baseline_bytes), unit="B",
               better=LOWER, digits=0, note="baseline: 16-byte tag"),
    ]
    config = {"repeat": repeat, "handshakes": handshakes, "packets": packets,
              "payload": PAYLOAD, "quick": args.quick, "header_size": HEADER_SIZE}
    return figures, {"config": config, "reps": reps}


def notes(config: dict[str, Any]) -> list[str]:
    return [
        f"medians over {config['repeat']} repetition(s); ratio = kadtalk/baseline; 'better' "
        "says which direction wins",
        f"(a) {config['handshakes']} handshakes per repetition, ECDSA P-256 identities, process "
        "CPU time of both in-memory layers (the callee's includes opening the first RING); each "
        "side is compared with that side's primitives, both sides with all of them",
        f"(b) {config['packets']} packets of {PAYLOAD} B per repetition, encrypt and decrypt in "
        "one thread; AESGCM cannot make 8-byte tags, so ours decrypts through the Cipher API "
        "(a new GCM context per packet)",
        "(c) kadtalk: type (1) + sequence (4) + tag (8); baseline: the same with a 16-byte tag",
    ]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    figures, details = run(args)
    wall = time.perf_counter() - started
    print_table(
        f"Session layer: handshake, packets, overhead{' — QUICK smoke run' if args.quick else ''}",
        figures, "kadtalk", "baseline", notes(details["config"]) + [f"wall time {wall:.1f} s"],
    )
    emit_json(args.json, {
        "benchmark": "session",
        "baseline": "bare primitives (a), AESGCM (b), 16-byte-tag framing (c)",
        "ratio": "kadtalk/baseline",
        "config": details["config"],
        "figures": figures_payload(figures),
        "wall_s": wall,
        "environment": environment(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
