"""kadtalk's media layer: speech quality, latency, overhead and CPU over a lossy, jittery path.

A few seconds of real speech (espeak-ng, Harvard sentences) go, frame by frame, through

    Opus encode -> session encryption (SendStream: MEDIA, 8-byte tag) -> a lossy, jittery path
    -> decryption (ReceiveStream) -> jitter buffer -> Opus decode (PLC / FEC) -> output,

with the session's other traffic in the same stream: each side's receiver report once a second
(a SIGNAL packet taking a sequence number in the forward stream, and the receiver's report
travelling back over the same path to drive the sender's bitrate and FEC).

The path (the two ends on a kadtalk.transport.memory network, whose route hook is `Path`):
every packet is lost with probability `loss`, and delayed 50 ms ± `jitter`
(uniform, netem style: packets can overtake each other). Random loss is drawn from one seeded
generator per repetition, so ours and the baseline see the same losses.

ours      the media layer as shipped: adaptive jitter buffer, PLC, in-band FEC and packet-level
          redundancy (the previous frame in each packet) from reports, adaptive bitrate
          (32 kbit/s start, 12-64 kbit/s);
baseline  the same path and the same bitrate control (without redundancy, so without its
          bitrate floor), but lost frames replaced by silence (no PLC, no FEC) and a fixed
          3-frame (60 ms) jitter buffer.

Figures, per loss rate (0, 5, 10, 20 %) and jitter (0, 20, 40 ms):

- wideband PESQ (ITU-T P.862.2, the `pesq` package, 16 kHz) of the output against the input;
  the first 2 s of the call (a lead-in sentence, while the first reports arrive) are not scored;
- the software path's added latency: frame (20 ms) + codec look-ahead + the jitter buffer's
  mean hold time of played frames + CPU time of the path (network delay not counted);
- bytes on the wire per packet and per second, and the overhead share;
- CPU time (process time) per 20 ms frame for encode+encrypt and decrypt+decode, and the
  share of one core a full-duplex call needs (both per frame, every 20 ms).

    python -m benchmarks.media                  # full grid, 3 repetitions (about a minute)
    python -m benchmarks.media --quick          # jitter 0 only, short speech, 1 repetition
    python -m benchmarks.media --json -         # last line: one JSON object

The JSON has `overhead_bytes`, `latency_ms`, `cpu_ms_per_frame`, `pesq` and `pesq_baseline`,
each a map from loss percent to the figure at 0 ms jitter, plus `grid` (every condition).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from random import Random
from typing import Any

if __package__ in (None, ""):  # run as a file: python benchmarks/media.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    HIGHER,
    LOWER,
    Figure,
    add_common_options,
    emit_json,
    environment,
    figures_payload,
    median,
    print_table,
    resolve_repeat,
)
from kadtalk.node.media.call import MediaReceiver, MediaSender, MediaSettings  # noqa: E402
from kadtalk.node.media.codec import (  # noqa: E402
    FRAME_SAMPLES,
    FRAME_SECONDS,
    SAMPLE_RATE,
    OpusEncoder,
)
from kadtalk.node.media.jitter import PLAY, JitterSettings  # noqa: E402
from kadtalk.node.session.stream import ReceiveStream, SendStream  # noqa: E402
from kadtalk.node.session.wire import MEDIA, SIGNAL, Drop, encode_report  # noqa: E402
from kadtalk.transport.audiofile import load_wav  # noqa: E402
from kadtalk.transport.memory import MemoryNet, Packet  # noqa: E402

LOSSES = (0, 5, 10, 20)  # percent
JITTERS = (0, 20, 40)  # ms
BASE_DELAY = 0.05  # s, one way
REPORT_EVERY = 50  # frames (the session layer's report_interval, 1 s)
LEAD_IN = "Rice is often served in round bowls."
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
)

OURS = MediaSettings()
BASELINE = MediaSettings(jitter=JitterSettings(min_delay=0.06, max_delay=0.06), fec=False,
                         plc=False, redundancy=False)


# -- speech -------------------------------------------------------------------------------------


def speak(text: str, workdir: str) -> np.ndarray:
    """espeak-ng's voice reading `text`, as 48 kHz int16 (padded to whole frames)."""
    path = os.path.join(workdir, f"s{abs(hash(text))}.wav")
    subprocess.run(["espeak-ng", "-w", path, text], check=True, capture_output=True)
    samples = load_wav(path)
    pad = -len(samples) % FRAME_SAMPLES
    return np.concatenate([samples, np.zeros(pad, np.int16)])


def speech(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    """(lead-in, scored speech) at 48 kHz; raises if espeak-ng is missing."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("benchmarks/media.py needs espeak-ng (./setup.sh installs it)")
    with tempfile.TemporaryDirectory() as workdir:
        lead = speak(LEAD_IN, workdir)
        text = " ".join(SENTENCES[:1] if quick else SENTENCES)
        return lead, speak(text, workdir)


def to_16k(x: np.ndarray) -> np.ndarray:
    """48 kHz -> 16 kHz: windowed-sinc low-pass at 7.6 kHz, then every third sample."""
    taps = np.arange(-60, 61)
    cutoff = 7600 / SAMPLE_RATE
    h = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
    y = np.convolve(x.astype(np.float64), h / h.sum(), mode="same")[::3]
    return np.clip(y, -32768, 32767).astype(np.float32)


def pesq_wb(reference: np.ndarray, degraded: np.ndarray) -> float:
    from pesq import pesq

    try:
        return float(pesq(16000, to_16k(reference), to_16k(degraded), "wb"))
    except Exception:  # no utterances found (silent output) and the like
        return math.nan


# -- one call over the path ---------------------------------------------------------------------

TX, RX = "sender", "receiver"  # the two ends' addresses on the MemoryNet


class Path:
    """The route hook: each packet is lost with probability `loss`, else delayed `BASE_DELAY` ±
    `jitter` (uniform). Draws loss then delay for every packet, lost or not: the published
    figures come from that order (so not `Link`, which draws no delay for a lost packet)."""

    def __init__(self, loss: float, jitter: float, rng: Random):
        self.loss, self.jitter, self.rng = loss, jitter, rng

    def __call__(self, packet: Packet, now: float) -> tuple:
        rng = self.rng
        lost = rng.random() < self.loss
        delay = BASE_DELAY + (rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        return () if lost else ((delay, packet),)


class End:
    """One end of the call on the MemoryNet. It has no timers: the benchmark's capture and
    playback clocks act on it from outside and queue what it sends in `outbox`."""

    stats = None

    def __init__(self):
        self.outbox: list[tuple[bytes, str]] = []

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, str]]:
        out, self.outbox = self.outbox, []
        return out

    def next_event(self) -> None:
        return None

    def get_timer(self) -> None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


class SenderEnd(End):
    """The sending end: the receiver's reports arrive here and drive the sender's bitrate."""

    def __init__(self, back_rx: ReceiveStream, sender: MediaSender):
        super().__init__()
        self.back_rx, self.sender = back_rx, sender

    def receive_datagram(self, data: bytes, addr: str, now: float) -> None:
        try:
            kind, _, plaintext = self.back_rx.open(data, now)
        except Drop:
            return
        fraction, _lost, _highest, jit = decode_report_plain(plaintext)
        self.sender.on_report(fraction, jit, now)


class ReceiverEnd(End):
    """The receiving end: decrypts into the jitter buffer; `cpu` is its process time (the
    playback clock's pulls add theirs), `arrival` each MEDIA sequence number's first arrival."""

    def __init__(self, rx: ReceiveStream, receiver: MediaReceiver):
        super().__init__()
        self.rx, self.receiver = rx, receiver
        self.cpu = 0.0
        self.arrival: dict[int, float] = {}

    def receive_datagram(self, data: bytes, addr: str, now: float) -> None:
        started = time.process_time()
        try:
            kind, seq, plaintext = self.rx.open(data, now)
        except Drop:
            return
        if kind == MEDIA:
            self.receiver.receive(seq, plaintext, now)
            self.arrival.setdefault(seq, now)
        else:
            self.receiver.signal_received(now, seq)  # as the session's ReceiverReport.seq
        self.cpu += time.process_time() - started


def run_call(signal: np.ndarray, lead_frames: int, settings: MediaSettings, loss: float,
             jitter: float, seed: int) -> dict[str, Any]:
    """One direction of a call, both ends in this process on a MemoryNet; the output and the
    measurements."""
    rng = Random(seed)
    path_rng = Random(seed * 7919 + 1)  # the same losses and delays for ours and the baseline
    key, salt = rng.randbytes(32), rng.randbytes(8)
    back_key, back_salt = rng.randbytes(32), rng.randbytes(8)
    tx, rx = SendStream(key, salt), ReceiveStream(key, salt)
    back_tx, back_rx = SendStream(back_key, back_salt), ReceiveStream(back_key, back_salt)
    sender, receiver = MediaSender(settings), MediaReceiver(settings)
    frames = [signal[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES].tobytes()
              for k in range(len(signal) // FRAME_SAMPLES)]
    n = len(frames)
    phase = rng.uniform(0, FRAME_SECONDS)  # the playback clock's phase against capture
    net = MemoryNet(Path(loss, jitter, path_rng))
    tx_end, rx_end = SenderEnd(back_rx, sender), ReceiverEnd(rx, receiver)
    net.attach(TX, tx_end)
    net.attach(RX, rx_end)

    seq_of_frame: list[int] = []
    arrival = rx_end.arrival
    wire_bytes = payload_bytes = packets = 0
    cpu_tx = 0.0
    out: list[bytes] = []
    playouts = []
    holds: list[float] = []
    pull_k = 0
    end = (n + 10) * FRAME_SECONDS + BASE_DELAY + jitter + 0.3
    k = 0
    while True:
        capture = (k + 1) * FRAME_SECONDS if k < n else math.inf  # frame k is complete
        pull = phase + BASE_DELAY + pull_k * FRAME_SECONDS
        now = min(capture, pull)
        if now > end:
            break
        net.run_until(now)  # packets arriving by now come first
        if now == capture:
            started = time.process_time()
            payload = sender.encode(frames[k])
            seq_of_frame.append(tx.seq)
            wire = tx.seal(MEDIA, payload)
            cpu_tx += time.process_time() - started
            wire_bytes += len(wire)
            payload_bytes += len(payload)
            packets += 1
            tx_end.outbox.append((wire, RX))
            if k % REPORT_EVERY == REPORT_EVERY - 1:
                # the sender's own report on the reverse stream: a SIGNAL in the forward stream
                tx_end.outbox.append((tx.seal(SIGNAL, encode_report(0.0, 0, 0, 0.0)), RX))
                # the receiver's report on this stream travels back to the sender
                rx_end.outbox.append((back_tx.seal(SIGNAL, encode_report(*rx.report())), TX))
            net.service(TX)
            net.service(RX)
            k += 1
        else:
            started = time.process_time()
            out.append(receiver.pull(now))
            rx_end.cpu += time.process_time() - started
            last = receiver.last
            playouts.append(last)
            if last.kind == PLAY and last.seq in arrival:
                holds.append(now - arrival[last.seq])
            pull_k += 1
    net.run_until(end)  # what arrives after the last pull still counts (late packets)
    cpu_rx = rx_end.cpu

    # align: the output from the pull that played (or stood in for) the first scored frame
    first_seq = seq_of_frame[lead_frames]
    start = next((i for i, p in enumerate(playouts) if p.seq is not None and p.seq >= first_seq),
                 len(out))
    scored = np.frombuffer(b"".join(out[start:start + (n - lead_frames) + 5]), "<i2")
    lookahead = OpusEncoder().lookahead / SAMPLE_RATE
    cpu_frame = (cpu_tx + cpu_rx) / n
    hold = float(np.mean(holds)) if holds else math.nan
    stats = receiver.stats()
    return {
        "output": scored,
        "latency_ms": 1e3 * (FRAME_SECONDS + lookahead + hold + cpu_frame),
        "hold_ms": 1e3 * hold,
        "wire_bytes_per_packet": wire_bytes / packets,
        "payload_bytes_per_packet": payload_bytes / packets,
        "overhead_bytes": (wire_bytes - payload_bytes) / packets,
        "wire_bytes_per_s": wire_bytes / (n * FRAME_SECONDS),
        "cpu_tx_ms": 1e3 * cpu_tx / n,
        "cpu_rx_ms": 1e3 * cpu_rx / n,
        "stats": stats,
        "final_bitrate": sender.bitrate,
        "playouts": playouts[start:start + (n - lead_frames) + 5],
    }


def decode_report_plain(plaintext: bytes) -> tuple[float, int, int, float]:
    from kadtalk.node.session.wire import decode_report, decode_signal

    _, body = decode_signal(plaintext)
    return decode_report(body)


# -- the run ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.media",
        description="Media layer: PESQ, latency, overhead and CPU over a lossy, jittery path "
        "(ours vs silence-filling with a fixed 3-frame jitter buffer).",
    )
    parser.add_argument("--seed", type=int, default=1)
    add_common_options(parser, default_repeat=3)
    return parser


def run(args: argparse.Namespace) -> tuple[list[Figure], dict[str, Any]]:
    repeat = resolve_repeat(args, quick_repeat=1)
    jitters = (0,) if args.quick else JITTERS
    lead, clip = speech(args.quick)
    signal = np.concatenate([lead, clip])
    lead_frames = len(lead) // FRAME_SAMPLES
    grid: dict[str, dict[str, dict[str, list[float]]]] = {}
    for jitter in jitters:
        for loss in LOSSES:
            cell = grid.setdefault(str(jitter), {}).setdefault(str(loss), {})
            for rep in range(repeat):
                seed = args.seed + 1000 * rep + 10 * loss + jitter
                for name, settings in (("ours", OURS), ("baseline", BASELINE)):
                    result = run_call(signal, lead_frames, settings, loss / 100, jitter / 1e3, seed)
                    score = pesq_wb(clip, result["output"])
                    for key, value in (
                        ("pesq", score), ("latency_ms", result["latency_ms"]),
                        ("hold_ms", result["hold_ms"]),
                        ("overhead_bytes", result["overhead_bytes"]),
                        ("wire_bytes_per_packet", result["wire_bytes_per_packet"]),
                        ("wire_bytes_per_s", result["wire_bytes_per_s"]),
                        ("cpu_tx_ms", result["cpu_tx_ms"]), ("cpu_rx_ms", result["cpu_rx_ms"]),
                        ("late", result["stats"]["late"]),
                        ("final_bitrate", result["final_bitrate"]),
                    ):
                        cell.setdefault(f"{name}.{key}", []).append(value)

    def med(jitter: int, loss: int, key: str) -> float:
        return median(grid[str(jitter)][str(loss)][key])

    figures: list[Figure] = []
    for jitter in jitters:
        for loss in LOSSES:
            cell = grid[str(jitter)][str(loss)]
            figures.append(Figure(
                f"PESQ-WB, loss {loss} %, jitter ±{jitter} ms", med(jitter, loss, "ours.pesq"),
                med(jitter, loss, "baseline.pesq"), better=HIGHER, digits=2,
                samples={"kadtalk": cell["ours.pesq"], "baseline": cell["baseline.pesq"]}))
    for jitter in jitters:
        figures.append(Figure(
            f"added latency, jitter ±{jitter} ms", med(jitter, 0, "ours.latency_ms"),
            med(jitter, 0, "baseline.latency_ms"), unit="ms", better=LOWER,
            note="frame + look-ahead + buffer + CPU"))
    figures += [
        Figure("overhead per packet", med(0, 0, "ours.overhead_bytes"),
               med(0, 0, "baseline.overhead_bytes"), unit="B", digits=0,
               note="type, sequence, 8-byte tag"),
        Figure("bytes on the wire per packet, clean", med(0, 0, "ours.wire_bytes_per_packet"),
               med(0, 0, "baseline.wire_bytes_per_packet"), unit="B"),
        Figure("bytes on the wire per packet, 10 % loss",
               med(0, 10, "ours.wire_bytes_per_packet"),
               med(0, 10, "baseline.wire_bytes_per_packet"), unit="B",
               note="redundancy costs bits"),
        Figure("encode+encrypt CPU per frame", med(0, 0, "ours.cpu_tx_ms"),
               med(0, 0, "baseline.cpu_tx_ms"), unit="ms", digits=3),
        Figure("decrypt+decode CPU per frame, 10 % loss", med(0, 10, "ours.cpu_rx_ms"),
               med(0, 10, "baseline.cpu_rx_ms"), unit="ms", digits=3),
    ]
    duplex = {str(loss): 100 * (med(0, loss, "ours.cpu_tx_ms") + med(0, loss, "ours.cpu_rx_ms"))
              / (FRAME_SECONDS * 1e3) for loss in LOSSES}
    figures.append(Figure("full-duplex call, % of one core", duplex["0"],
                          100 * (med(0, 0, "baseline.cpu_tx_ms") + med(0, 0, "baseline.cpu_rx_ms"))
                          / (FRAME_SECONDS * 1e3), unit="%", digits=2, better=LOWER))
    maps = {
        "overhead_bytes": {str(loss): med(0, loss, "ours.overhead_bytes") for loss in LOSSES},
        "latency_ms": {str(loss): med(0, loss, "ours.latency_ms") for loss in LOSSES},
        "cpu_ms_per_frame": {
            str(loss): med(0, loss, "ours.cpu_tx_ms") + med(0, loss, "ours.cpu_rx_ms")
            for loss in LOSSES
        },
        "pesq": {str(loss): med(0, loss, "ours.pesq") for loss in LOSSES},
        "pesq_baseline": {str(loss): med(0, loss, "baseline.pesq") for loss in LOSSES},
        "latency_ms_baseline": {str(loss): med(0, loss, "baseline.latency_ms") for loss in LOSSES},
        "call_cpu_percent": duplex,
        "wire_bytes_per_s": {str(loss): med(0, loss, "ours.wire_bytes_per_s") for loss in LOSSES},
    }
    summary = {
        f"{name}.{key}": {j: {lo: median(v) for lo, v2 in cells.items()
                              for v in [v2[f"{name}.{key}"]]}
                          for j, cells in grid.items()}
        for name in ("ours", "baseline")
        for key in ("pesq", "latency_ms", "late", "final_bitrate", "wire_bytes_per_s")
    }
    config = {"repeat": repeat, "losses": list(LOSSES), "jitters": list(jitters),
              "seconds_scored": len(clip) / SAMPLE_RATE, "seconds_lead_in": len(lead) / SAMPLE_RATE,
              "base_delay_ms": BASE_DELAY * 1e3, "quick": args.quick, "seed": args.seed,
              "encryption": "kadtalk.node.session.stream (SendStream / ReceiveStream)"}
    return figures, {"config": config, "maps": maps, "grid": summary}


def notes(config: dict[str, Any], maps: dict[str, Any]) -> list[str]:
    goal_10 = maps["pesq"]["10"] - maps["pesq_baseline"]["10"]
    below = maps["pesq"]["0"] - maps["pesq"]["10"]
    return [
        f"medians over {config['repeat']} repetition(s); {config['seconds_scored']:.1f} s of "
        f"espeak-ng speech scored after a {config['seconds_lead_in']:.1f} s lead-in",
        "path: 50 ms ± jitter (uniform, reordering), random loss of every packet (MEDIA and "
        "SIGNAL, both ways); receiver reports once a second",
        "baseline: lost frames as silence, no FEC or redundancy, fixed 60 ms jitter buffer; "
        "same path, same seeds, same bitrate control (without redundancy's floor)",
        f"goal checks: 10 % loss is {goal_10:+.2f} over the baseline (goal >= +0.5) and "
        f"{below:.2f} below lossless (goal <= 0.8); clean-path latency "
        f"{maps['latency_ms']['0']:.1f} ms (goal <= 50); full-duplex call "
        f"{maps['call_cpu_percent']['0']:.2f} % of a core (goal < 3)",
    ]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    figures, details = run(args)
    wall = time.perf_counter() - started
    print_table(
        "Media layer: quality, latency, overhead, CPU"
        + (" — QUICK smoke run" if args.quick else ""),
        figures, "kadtalk", "baseline",
        notes(details["config"], details["maps"]) + [f"wall time {wall:.1f} s"],
    )
    emit_json(args.json, {
        "benchmark": "media",
        "baseline": "silence for lost frames, no FEC or redundancy, fixed 3-frame jitter buffer",
        "ratio": "kadtalk/baseline",
        "config": details["config"],
        **details["maps"],
        "grid": details["grid"],
        "figures": figures_payload(figures),
        "wall_s": wall,
        "environment": environment(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
