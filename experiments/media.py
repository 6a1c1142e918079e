"""A call's media in the simulated world: frames over sim/network.py's delay and loss.

`simulate_call_media` runs both directions of one call in a SimPy environment. Each side
captures a frame every 20 ms (a WAV file or a synthetic talker), encodes it with the media
layer, seals it in the session layer's encrypted stream (real bytes, real crypto) and sends it
through a `SimNetwork` (its latency model, jitter and random loss). Each side sends a receiver
report once a second in its stream (a SIGNAL packet, as the session layer does), which drives
the other side's bitrate and FEC. The receiving side plays a frame every 20 ms from its jitter
buffer. The result is one row of quality figures per direction (tidy, for pandas).

    from kadtalk.experiments.media import simulate_call_media
    rows = simulate_call_media(seconds=10, loss=0.05, one_way=0.04, jitter=0.5, seed=1)

Quality is given as the output's segmental SNR against the input aligned by the playout (a
quick figure with no dependencies), and the playout counts (concealed, FEC-recovered, late...);
benchmarks/media.py scores real speech with PESQ.
"""

from __future__ import annotations

import math
from random import Random
from typing import Any

import numpy as np
import simpy

from kadtalk.node.media.call import MediaCall, MediaSettings
from kadtalk.node.media.codec import FRAME_SAMPLES, FRAME_SECONDS
from kadtalk.node.media.jitter import PLAY
from kadtalk.node.session.stream import ReceiveStream, SendStream
from kadtalk.node.session.wire import (
    MEDIA,
    SIGNAL,
    Drop,
    decode_report,
    decode_signal,
    encode_report,
)
from kadtalk.sim.latency import ConstantLatency, JitteredLatency
from kadtalk.sim.network import SimNetwork
from kadtalk.transport.audiofile import ToneSource, WavSource

REPORT_INTERVAL = 1.0


class _End:
    """One side of the call: its media, its outgoing stream and the peer's incoming one."""

    def __init__(self, addr: int, peer: int, source: Any, settings: MediaSettings, rng: Random,
                 keys: tuple[bytes, bytes, bytes, bytes]):
        self.addr, self.peer = addr, peer
        self.source = source
        self.media = MediaCall(None, settings)
        self.tx = SendStream(keys[0], keys[1])
        self.rx = ReceiveStream(keys[2], keys[3])
        self.sent: list[np.ndarray] = []  # captured frames, by frame index
        self.seq_frame: dict[int, int] = {}  # stream sequence -> frame index (for alignment)
        self.played: list[tuple[int | None, np.ndarray]] = []  # (frame index or None, pcm)
        self.arrivals: dict[int, float] = {}
        self.holds: list[float] = []
        self.next_report = REPORT_INTERVAL


def simulate_call_media(
    seconds: float = 10.0,
    loss: float = 0.0,
    one_way: float = 0.04,
    jitter: float = 0.0,
    seed: int = 0,
    source: str | None = None,
    settings: MediaSettings | None = None,
) -> list[dict[str, Any]]:
    """Both directions of a simulated call; one row of figures per direction.

    loss: random loss of every datagram (SimNetwork); one_way: the path's delay in seconds;
    jitter: JitteredLatency's mean extra share (0.5: exponential extra delay, mean half the
    path's); source: a WAV file both sides talk from (default: tones of 440 and 660 Hz in
    talk spurts).
    """
    rng = Random(seed)
    env = simpy.Environment()
    latency: Any = ConstantLatency(one_way)
    if jitter:
        latency = JitteredLatency(latency, jitter, Random(rng.getrandbits(32)))
    net = SimNetwork(env, latency, Random(rng.getrandbits(32)), loss=loss)
    settings = settings or MediaSettings()
    k1, s1, k2, s2 = (rng.randbytes(32), rng.randbytes(8), rng.randbytes(32), rng.randbytes(8))
    sources = ([WavSource(source, loop=True), WavSource(source, loop=True)] if source else
               [ToneSource(440, talk=1.2, pause=0.6), ToneSource(660, talk=0.9, pause=0.8)])
    ends = [_End(0, 1, sources[0], settings, rng, (k1, s1, k2, s2)),
            _End(1, 0, sources[1], settings, rng, (k2, s2, k1, s1))]

    def arrive(dst: int, data: bytes, src: int) -> None:
        end = ends[dst]
        now = env.now
        try:
            kind, seq, plaintext = end.rx.open(data, now)
        except Drop:
            return
        if kind == MEDIA:
            end.media.on_media(seq, plaintext, now)
            end.arrivals.setdefault(seq, now)
        else:
            try:
                _, body = decode_signal(plaintext)
                fraction, _lost, _highest, jit = decode_report(body)
            except (Drop, Exception):
                return
            end.media.on_report(fraction, jit, now)

    net.receiver = arrive
    frames = int(seconds / FRAME_SECONDS)
    phase = [rng.uniform(0, FRAME_SECONDS) for _ in ends]

    def capture(end: _End, k: int) -> None:
        now = env.now
        pcm = end.source.read_frame()
        end.sent.append(np.frombuffer(pcm, "<i2"))
        end.seq_frame[end.tx.seq] = k
        net.send(end.addr, end.peer, end.tx.seal(MEDIA, end.media.send_frame(pcm, now)))
        if now >= end.next_report:
            end.next_report += REPORT_INTERVAL
            net.send(end.addr, end.peer, end.tx.seal(SIGNAL, encode_report(*end.rx.report())))

    def play(end: _End) -> None:
        now = env.now
        pcm = np.frombuffer(end.media.play_frame(now), "<i2")
        last = end.media.receiver.last
        peer = ends[end.peer]
        frame = peer.seq_frame.get(last.seq) if last is not None and last.seq is not None else None
        end.played.append((frame, pcm))
        if last is not None and last.kind == PLAY and last.seq in end.arrivals:
            end.holds.append(now - end.arrivals[last.seq])

    def every(delay: float, action, *args) -> None:
        timeout = simpy.Timeout(env, delay)
        timeout.callbacks.append(lambda _e: action(*args))

    for k in range(frames):
        for end in ends:
            every((k + 1) * FRAME_SECONDS, capture, end, k)
    for i, end in enumerate(ends):
        for j in range(frames):
            every(phase[i] + one_way + j * FRAME_SECONDS, play, end)
    env.run(until=(frames + 20) * FRAME_SECONDS + one_way * 4)

    rows = []
    for end in ends:
        peer = ends[end.peer]
        stats = end.media.stats()
        rows.append({
            "direction": f"{peer.addr}->{end.addr}", "seconds": seconds, "loss": loss,
            "one_way": one_way, "jitter": jitter, "seed": seed,
            "segsnr_db": _segsnr(peer.sent, end.played),
            "hold_ms": 1e3 * float(np.mean(end.holds)) if end.holds else math.nan,
            "bitrate_end": peer.media.sender.bitrate,
            "fec_end": peer.media.sender.encoder.fec,
            "redundancy_end": peer.media.sender.redundant,
            **{k: stats[k] for k in ("played", "late", "concealed", "fec", "skipped", "dropped",
                                     "stretched", "signal_slots", "target_delay")},
            "network_lost": net.lost, "network_sent": net.sent,
        })
    return rows


def _segsnr(sent: list[np.ndarray], played: list[tuple[int | None, np.ndarray]]) -> float:
    """Mean segmental SNR (dB, each frame clipped to [-10, 35]) over the frames played in
    their own slot, against the input they stand for; frames of silence are left out.

    The input is shifted by the codec's delay (found as the best-correlating lag up to 15 ms).
    """
    signal = np.concatenate(sent).astype(np.float64) if sent else np.zeros(0)
    slots = [(f, pcm.astype(np.float64)) for f, pcm in played if f is not None and f < len(sent)]
    if not slots:
        return math.nan

    def reference(frame: int, lag: int) -> np.ndarray:
        start = frame * FRAME_SAMPLES - lag
        if start < 0:
            return np.zeros(FRAME_SAMPLES)
        return signal[start:start + FRAME_SAMPLES]

    probe = slots[len(slots) // 4: len(slots) // 4 + 50]
    lag = max(range(0, 721, 4), key=lambda g: sum(float(np.dot(reference(f, g), p))
                                                   for f, p in probe))
    values = []
    for frame, pcm in slots:
        ref = reference(frame, lag)
        energy = float(np.sum(ref ** 2))
        if energy < FRAME_SAMPLES * 100.0 ** 2:
            continue
        noise = float(np.sum((ref - pcm) ** 2)) or 1e-9
        values.append(min(35.0, max(-10.0, 10 * math.log10(energy / noise))))
    return float(np.mean(values)) if values else math.nan
