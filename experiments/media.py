"""A call's media in the simulated world: two whole nodes talking over sim/network.py.

`simulate_call_media` runs one call between two real `Node`s (routing, session) on the SimPy
driver: the caller calls the callee's address, the callee answers, and from then on each side
captures a frame every 20 ms (a WAV file or a synthetic talker), encodes it with the media
layer (`MediaCall`) and hands the payload to `Node.send_media`, so the session layer seals it
(real bytes, real crypto) and sends its own receiver reports once a second, which drive the
other side's bitrate and FEC through `MediaCall.handle_event`. The network applies its latency
model, jitter and random loss to every datagram, the key exchange's too. The receiving side
plays a frame every 20 ms from its jitter buffer. The result is one row of quality figures per
direction (tidy, for pandas).

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

from kadtalk.experiments.harness.identities import derive_identity, node_id
from kadtalk.experiments.harness.world import at, simulated_network
from kadtalk.node.media.call import MediaCall, MediaSettings
from kadtalk.node.media.codec import FRAME_SAMPLES, FRAME_SECONDS
from kadtalk.node.media.jitter import PLAY
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.session import CallProgress, CallState, IncomingCall, MediaReceived
from kadtalk.node.stack import Node
from kadtalk.sim.latency import ConstantLatency, JitteredLatency
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.audiofile import ToneSource, WavSource

SETUP_LIMIT = 30.0  # s of simulated time for the key exchange, retransmissions included


class _End:
    """One side of the call: its node's session, its media and what it captured and played."""

    def __init__(self, addr: int, peer: int, source: Any, settings: MediaSettings):
        self.addr, self.peer = addr, peer
        self.source = source
        self.media = MediaCall(None, settings)
        self.session_id: int | None = None
        self.talking = False
        self.sent: list[np.ndarray] = []  # captured frames, by frame index
        self.seq_frame: dict[int, int] = {}  # stream sequence -> frame index (for alignment)
        self.played: list[tuple[int | None, np.ndarray]] = []  # (frame index or None, pcm)
        self.arrivals: dict[int, float] = {}
        self.holds: list[float] = []


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
    latency: Any = ConstantLatency(one_way)
    if jitter:
        latency = JitteredLatency(latency, jitter, Random(rng.getrandbits(32)))
    settings = settings or MediaSettings()
    identities = [derive_identity(rng), derive_identity(rng)]
    registry = SharedRegistry([node_id(i) for i in identities])
    sources = ([WavSource(source, loop=True), WavSource(source, loop=True)] if source else
               [ToneSource(440, talk=1.2, pause=0.6), ToneSource(660, talk=0.9, pause=0.8)])
    ends = [_End(0, 1, sources[0], settings), _End(1, 0, sources[1], settings)]

    def on_event(addr: int, event: Any) -> None:
        end = ends[addr]
        kind = type(event)
        if kind is MediaReceived:
            end.arrivals.setdefault(event.seq, event.at)
            end.media.handle_event(event)
        elif kind is IncomingCall:
            end.session_id = event.session_id
            end.media.session_id = event.session_id
            driver.nodes[addr].answer(event.at, event.session_id)
            driver.service(addr)
        elif kind is CallProgress:
            if event.state is CallState.TALKING:
                end.talking = True
        else:
            end.media.handle_event(event)  # receiver reports (and nothing else of ours)

    env, network, driver = simulated_network(latency, Random(rng.getrandbits(32)), on_event,
                                             "bytes", loss=loss)
    node_rng = Random(rng.getrandbits(32))
    for addr, identity in enumerate(identities):
        driver.add(Node(node_id(identity), registry, node_rng, RoutingSettings(), 0.0,
                        identity=identity))
    caller = ends[0]
    caller.session_id = driver.nodes[0].call(node_id(identities[1]), env.now, 1)
    caller.media.session_id = caller.session_id
    driver.service(0)
    while not all(end.talking for end in ends) and env.now < SETUP_LIMIT:
        env.step()
    if not all(end.talking for end in ends):
        raise RuntimeError(f"the call did not set up within {SETUP_LIMIT} s (loss {loss})")
    t0 = env.now
    frames = int(seconds / FRAME_SECONDS)
    phase = [rng.uniform(0, FRAME_SECONDS) for _ in ends]

    def capture(end: _End, k: int) -> None:
        now = env.now
        pcm = end.source.read_frame()
        end.sent.append(np.frombuffer(pcm, "<i2"))
        seq = driver.nodes[end.addr].send_media(end.session_id, end.media.send_frame(pcm, now), now)
        if seq is not None:
            end.seq_frame[seq] = k
        driver.service(end.addr)

    def play(end: _End) -> None:
        now = env.now
        pcm = np.frombuffer(end.media.play_frame(now), "<i2")
        last = end.media.receiver.last
        peer = ends[end.peer]
        frame = peer.seq_frame.get(last.seq) if last is not None and last.seq is not None else None
        end.played.append((frame, pcm))
        if last is not None and last.kind == PLAY and last.seq in end.arrivals:
            end.holds.append(now - end.arrivals[last.seq])

    for k in range(frames):
        for end in ends:
            at(env, t0 + (k + 1) * FRAME_SECONDS, lambda end=end, k=k: capture(end, k))
    for i, end in enumerate(ends):
        for j in range(frames):
            at(env, t0 + phase[i] + one_way + j * FRAME_SECONDS, lambda end=end: play(end))
    env.run(until=t0 + (frames + 20) * FRAME_SECONDS + one_way * 4)

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
            "network_lost": network.lost, "network_sent": network.sent,
            "setup_s": t0,
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
