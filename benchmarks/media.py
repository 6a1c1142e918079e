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
    python -m benchmarks.media --daemons-only   # two real daemons on loopback (see below;
                                                # loss needs root for iptables), ~3 min
    python -m benchmarks.media --daemons        # both

The two-daemon mode (`--daemons`, `--daemons-only`, `--daemon-losses 0,10,20`): two `kadtalk
daemon` processes call each other on 127.0.0.1 with the same speech as microphone (alsa-lib's
file plugin), loss by iptables on their ports; per loss, medians over calls and both
directions of PESQ and of the delay from the capture file to the playback file.

The JSON has `overhead_bytes`, `latency_ms`, `cpu_ms_per_frame`, `pesq` and `pesq_baseline`,
each a map from loss percent to the figure at 0 ms jitter, plus `grid` (every condition).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shlex
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
from kadtalk.node.media.playout import PlayoutClock  # noqa: E402
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
# the baseline's buffer is fixed: it waits for any frame due later and never cuts one
BASELINE = MediaSettings(jitter=JitterSettings(min_delay=0.06, max_delay=0.06,
                                               accelerate_at=math.inf, wait_tolerance=0.0),
                         fec=False, plc=False, redundancy=False)


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
    `jitter` (uniform). Draws loss then delay for every packet, lost or not, and at 0 jitter
    too, so one seed gives the same losses at every jitter (so not `Link`, which draws no
    delay for a lost packet)."""

    def __init__(self, loss: float, jitter: float, rng: Random):
        self.loss, self.jitter, self.rng = loss, jitter, rng

    def __call__(self, packet: Packet, now: float) -> tuple:
        rng = self.rng
        lost = rng.random() < self.loss
        delay = BASE_DELAY + rng.uniform(-self.jitter, self.jitter)  # drawn at 0 jitter too:
        return () if lost else ((delay, packet),)  # the same losses at every jitter


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
             jitter: float, seed: int, aligned: bool = False,
             phase: float | None = None) -> dict[str, Any]:
    """One direction of a call, both ends in this process on a MemoryNet; the output and the
    measurements. `aligned`: pull on a `PlayoutClock` (the daemon's playout, phased to packet
    arrival), else on a 20 ms clock of phase `phase` (random when None)."""
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
    drawn = rng.uniform(0, FRAME_SECONDS)  # the playback clock's phase against capture
    phase = drawn if phase is None else phase
    clock = PlayoutClock() if aligned else None  # ours: playout phased to packet arrival
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
    last_now = 0.0
    while True:
        capture = (k + 1) * FRAME_SECONDS if k < n else math.inf  # frame k is complete
        if clock is None:
            pull = phase + BASE_DELAY + pull_k * FRAME_SECONDS
        else:  # before the first frame is held: look again in 1 ms (as an arrival would)
            pull = clock.next_pull(receiver.buffer, last_now)
            pull = last_now + 0.001 if pull is None else pull
        now = min(capture, pull)
        last_now = now
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
        elif clock is not None and (clock.next_pull(receiver.buffer, now) or math.inf) > now:
            continue  # nothing held yet, or the first frame is not due: no pull
        else:
            started = time.process_time()
            if clock is not None:
                clock.pulled(now)
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


# -- two real daemons on loopback (--daemons) -----------------------------------------------------
#
# Two `kadtalk daemon` processes on 127.0.0.1 call each other; each captures the speech from an
# alsa-lib `file`-plugin PCM (a raw file) and plays into the project's `wav:` device (a WAV
# file, written as the frames come; tests/app/test_call.py plays into a `file`-plugin PCM).
# Loss: an iptables rule per daemon port drops that share of UDP datagrams arriving on
# loopback (the statistic module, random mode), both ways, set before the dial and removed
# after the call (and on any error). Each direction of each call is scored:
# PESQ of the played speech against the captured one, and the delay from the capture file to
# the playback file: the cross-correlation lag between the two files plus the offset of their
# starts on the system's monotonic clock (each daemon reports its devices' epochs: the loop
# time of a file's first sample, app audio stats), so neither daemon's start time enters.

DAEMON_LOSSES = (0, 10, 20)  # percent
DAEMON_TAG = f"kadtalk-media-bench-{os.getpid()}"
ALSA_CONF = "/usr/share/alsa/alsa.conf"


def iptables_loss(ports: list[int], loss: float) -> list[list[str]]:
    """Insert one random-drop rule per UDP port on loopback; the rules (for `iptables_clear`)."""
    rules = []
    for port in ports:
        rule = ["INPUT", "-i", "lo", "-p", "udp", "--dport", str(port), "-m", "statistic",
                "--mode", "random", "--probability", f"{loss:.4f}", "-m", "comment",
                "--comment", DAEMON_TAG, "-j", "DROP"]
        subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
        rules.append(rule)
    return rules


def iptables_clear() -> None:
    """Remove every rule this process inserted (by its comment), whatever happened."""
    listing = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True)
    for line in listing.stdout.splitlines():
        if DAEMON_TAG in line and line.startswith("-A "):
            subprocess.run(["iptables", "-D", *shlex.split(line)[1:]], capture_output=True)


class BenchDaemon:
    """One `kadtalk daemon` subprocess with alsa-lib file devices <name>_in / <name>_out."""

    def __init__(self, root: str, name: str, env: dict[str, str], bootstrap: str | None,
                 realtime: bool = False):
        self.name, self.root = name, root
        self.socket = os.path.join(root, f"{name}.sock")
        self.log = open(os.path.join(root, f"{name}.log"), "w")
        args = [sys.executable, "-m", "kadtalk", "daemon", "--config-dir",
                os.path.join(root, name), "--host", "127.0.0.1", "--port", "0", "--socket",
                self.socket, "--capture", f"{name}_in", "--playback",
                f"wav:{os.path.join(root, name)}.wav"]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        if realtime:  # round-robin real-time priority, as audio programs get: the shared
            args = ["chrt", "--rr", "20", *args]  # machine's load then delays them less
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        self.client = None

    async def connect(self, timeout: float = 30.0):
        from kadtalk.app.client import ControlClient, NotRunning

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon {self.name} exited; see {self.log.name}")
            try:
                self.client = await ControlClient.connect(self.socket)
                return self.client
            except (OSError, ConnectionError, NotRunning):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def alsa_config(root: str, names: tuple[str, ...]) -> str:
    """An alsa-lib configuration with a capture PCM <name>_in (from <name>.raw) for each
    name (alsa-lib's `file` plugin over `null`)."""
    lines = []
    for name in names:
        raw = os.path.join(root, f"{name}.raw")
        lines += [
            f'pcm.{name}_in_file {{ type file slave.pcm "null" file "/dev/null" infile "{raw}" '
            'format "raw" }',
            f'pcm.{name}_in {{ type plug slave {{ pcm "{name}_in_file" format S16_LE '
            f'rate {SAMPLE_RATE} channels 1 }} }}',
        ]
    path = os.path.join(root, "kadtalk-bench.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return f"{ALSA_CONF}:{path}"


def file_lag(captured: np.ndarray, played: np.ndarray, max_lag: int) -> int:
    """The lag (samples, -max_lag..max_lag) at which `played` best matches `captured`."""
    n = len(captured) + len(played)
    size = 1 << (n - 1).bit_length()
    a = np.fft.rfft(captured.astype(np.float64), size)
    b = np.fft.rfft(played.astype(np.float64), size)
    xc = np.fft.irfft(np.conj(a) * b, size)  # xc[k]: played[t + k] against captured[t]
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([xc[:max_lag + 1], xc[size - max_lag:]])
    return int(lags[int(np.argmax(values))])


def read_wav_file(path: str) -> np.ndarray:
    import wave

    with wave.open(path) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy()


def score_direction(signal: np.ndarray, lead: int, clip: np.ndarray, played: np.ndarray,
                    capture_epoch: float, playback_epoch: float) -> dict[str, float]:
    """PESQ of the clip as played, and the capture-file to playback-file delay (ms)."""
    scored = np.concatenate([np.zeros(lead, np.int16), clip])  # the lead-in not scored
    lag = file_lag(scored, played, SAMPLE_RATE // 2)
    start = lead + lag
    segment = played[max(start, 0):start + len(clip)]
    if start < 0 or len(segment) < len(clip):
        segment = np.concatenate([segment, np.zeros(len(clip) - len(segment), np.int16)])
    delay = lag / SAMPLE_RATE + (playback_epoch - capture_epoch)
    return {"pesq": pesq_wb(clip, segment), "delay_ms": 1e3 * delay,
            "file_lag_ms": 1e3 * lag / SAMPLE_RATE}


class StallProbe:
    """A thread that sleeps 5 ms at a time and counts oversleeps above 30 ms: how often this
    machine holds a process up (a shared or throttled host freezes every process now and
    then; the daemons' packets and ticks wait as long)."""

    def __init__(self):
        import threading

        self.stalls: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(0.005)
            now = time.monotonic()
            if now - last > 0.03:
                self.stalls.append(now - last)
            last = now

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        seconds = time.monotonic() - self.started
        return {"stalls_per_s": len(self.stalls) / seconds,
                "stall_ms": 1e3 * (median(self.stalls) if self.stalls else 0.0)}


async def daemon_call(a: BenchDaemon, b: BenchDaemon, ids: dict[str, str], root: str,
                      signal: np.ndarray, lead: int, clip: np.ndarray, talk: float,
                      ports: list[int], loss: float) -> list[dict[str, Any]]:
    """One call, b dials a, with `loss` on both ports; one result per direction."""
    ca, cb = a.client, b.client
    since_a, since_b = len(ca.seen), len(cb.seen)
    probe = StallProbe()
    try:
        if loss:
            iptables_loss(ports, loss)
        await cb.request("dial", to=ids["a"])
        await ca.wait_event(lambda e: e.get("event") == "incoming", timeout=30, since=since_a)
        await ca.request("answer")
        for c, since in ((ca, since_a), (cb, since_b)):
            await c.wait_event(lambda e: e.get("event") == "call" and e.get("state") in
                               ("talking", "ended"), timeout=30, since=since)
        await asyncio.sleep(talk)
        await cb.request("hangup")
        ended = {}
        for name, c, since in (("a", ca, since_a), ("b", cb, since_b)):
            ended[name] = await c.wait_event(
                lambda e: e.get("event") == "call" and e.get("state") == "ended", timeout=30,
                since=since)
    finally:
        machine = probe.stop()
        if loss:
            iptables_clear()
    results = []
    for speaker, listener in (("a", "b"), ("b", "a")):
        cap, play = ended[speaker].get("media") or {}, ended[listener].get("media") or {}
        played = read_wav_file(os.path.join(root, f"{listener}.wav"))
        if cap.get("capture_epoch") is None or play.get("playback_epoch") is None:
            results.append({"pesq": math.nan, "delay_ms": math.nan, "direction": speaker})
            continue
        result = score_direction(signal, lead, clip, played, cap["capture_epoch"],
                                 play["playback_epoch"])
        result.update(direction=f"{speaker}->{listener}", late=play.get("late", 0),
                      concealed=play.get("concealed", 0), stretched=play.get("stretched", 0),
                      skipped=play.get("skipped", 0), red_decoded=play.get("red_decoded", 0),
                      signals_inferred=play.get("signals_inferred", 0),
                      target_ms=1e3 * (play.get("target_delay") or 0.0),
                      regrids=play.get("playout_regrids", 0), receiver=play, sender=cap,
                      **machine)
        results.append(result)
    return results


async def run_daemons_async(signal: np.ndarray, lead: int, clip: np.ndarray, losses: list[int],
                            repeat: int, realtime: bool) -> dict[str, list[dict[str, Any]]]:
    root = tempfile.mkdtemp(prefix="kt-media-")
    pad = np.zeros(SAMPLE_RATE * 4, np.int16)  # the file plugin reads noise past the end
    for name in ("a", "b"):
        with open(os.path.join(root, f"{name}.raw"), "wb") as f:
            f.write(np.concatenate([signal, pad]).astype("<i2").tobytes())
    env = {**os.environ, "ALSA_CONFIG_PATH": alsa_config(root, ("a", "b")),
           "PYTHONWARNINGS": "ignore"}
    a = BenchDaemon(root, "a", env, None, realtime)
    daemons = [a]
    results: dict[str, list[dict[str, Any]]] = {}
    failed: list[str] = []
    from kadtalk.app.client import ControlError

    try:
        ca = await a.connect()
        port_a = (await ca.request("status"))["network"]["port"]
        b = BenchDaemon(root, "b", env, f"127.0.0.1:{port_a}", realtime)
        daemons.append(b)
        cb = await b.connect()
        port_b = (await cb.request("status"))["network"]["port"]
        await cb.wait_event(lambda e: e.get("event") == "network" and e.get("reachable"),
                            timeout=60)
        ids = {"a": (await ca.request("id"))["node_id"], "b": (await cb.request("id"))["node_id"]}
        await ca.request("add_contact", name="B", peer=ids["b"])
        await cb.request("add_contact", name="A", peer=ids["a"])
        talk = len(signal) / SAMPLE_RATE + 0.5
        for rep in range(repeat):
            for loss in losses:
                for attempt in range(3):  # a call that fails to set up (lossy signalling,
                    try:                  # a contact dropped from a table) is tried again
                        got = await daemon_call(a, b, ids, root, signal, lead, clip, talk,
                                                [port_a, port_b], loss / 100)
                        break
                    except (asyncio.TimeoutError, ControlError) as e:
                        failed.append(f"loss {loss} %: {type(e).__name__} {e}")
                        for c in (ca, cb):
                            await c.request("hangup", check=False)
                        await asyncio.sleep(2.0)
                else:
                    continue
                results.setdefault(str(loss), []).extend(got)
                print(f"  daemons: loss {loss} %, repetition {rep + 1}: " + ", ".join(
                    f"{r['direction']} PESQ {r['pesq']:.2f} delay {r['delay_ms']:.1f} ms"
                    for r in got), file=sys.stderr, flush=True)
    finally:
        iptables_clear()
        for d in daemons:
            if d.client is not None:
                await d.client.close()
            d.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["failed_setups"] = failed  # type: ignore[assignment]
    return results


def run_daemons(args: argparse.Namespace, lead: np.ndarray, clip: np.ndarray) -> dict[str, Any]:
    """Figures of the two-daemon loopback path: per loss, medians over calls and directions."""
    losses = [0] if args.quick else list(args.daemon_losses)
    if any(losses) and (os.geteuid() != 0 or shutil.which("iptables") is None):
        print("  daemons: loss needs root and iptables; clean path only", file=sys.stderr)
        losses = [0]
    repeat = resolve_repeat(args, quick_repeat=1)
    signal = np.concatenate([lead, clip])
    realtime = args.realtime and os.geteuid() == 0 and shutil.which("chrt") is not None
    import atexit
    import signal as signals

    atexit.register(iptables_clear)  # the loss rules go whatever ends the run (SIGTERM too)
    previous = signals.signal(signals.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = asyncio.run(run_daemons_async(signal, len(lead), clip, losses, repeat,
                                                realtime))
    finally:
        signals.signal(signals.SIGTERM, previous)
        iptables_clear()
    failed = results.pop("failed_setups")
    table = {}
    for loss, rows in results.items():
        table[loss] = {
            key: median([r[key] for r in rows if key in r and not math.isnan(r[key])])
            if any(key in r and not math.isnan(r[key]) for r in rows) else math.nan
            for key in ("pesq", "delay_ms", "file_lag_ms", "late", "concealed", "stretched",
                        "skipped", "red_decoded", "signals_inferred", "target_ms", "regrids",
                        "stalls_per_s", "stall_ms")
        }
        table[loss]["samples"] = {k: [r.get(k) for r in rows] for k in ("pesq", "delay_ms")}
    return {"losses": losses, "repeat": repeat, "realtime": realtime, "table": table,
            "failed_setups": failed, "calls": results}  # calls: every direction's figures and
    #                                                     both daemons' media statistics


# -- the run ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.media",
        description="Media layer: PESQ, latency, overhead and CPU over a lossy, jittery path "
        "(ours vs silence-filling with a fixed 3-frame jitter buffer).",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--daemons", action="store_true",
                        help="also call between two real daemons on loopback (alsa-lib file "
                        "devices, loss by iptables as root) and score that path")
    parser.add_argument("--daemons-only", action="store_true",
                        help="only the two-daemon path (skips the simulated grid)")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="run the daemons at normal priority (default as root: chrt --rr 20)")
    parser.add_argument("--daemon-losses", type=lambda t: [int(x) for x in t.split(",")],
                        default=list(DAEMON_LOSSES), help="percent, comma-separated")
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
                seed = args.seed + 1000 * rep + 10 * loss  # the same losses at every jitter
                for name, settings in (("ours", OURS), ("baseline", BASELINE)):
                    result = run_call(signal, lead_frames, settings, loss / 100, jitter / 1e3, seed,
                                      aligned=name == "ours")
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

    # Before issue 16 the daemon pulled on its capture tick, in step with the sender's: a frame
    # arrived just after the receiver's tick (0.3 ms of loopback transit) and waited for the next
    in_step = {loss: [run_call(signal, lead_frames, OURS, loss / 100, 0.0,
                               args.seed + 1000 * rep + 10 * loss,
                               phase=FRAME_SECONDS - 0.0003)["latency_ms"]
                      for rep in range(repeat)] for loss in (0, 10)}

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
    for loss in (0, 10):
        figures.append(Figure(
            f"added latency, loss {loss} %: playout phased to arrival vs on a capture tick in "
            "step", med(0, loss, "ours.latency_ms"), median(in_step[loss]), unit="ms",
            better=LOWER, note="baseline column: the same media layer pulled on the tick"))
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
        "latency_ms_on_tick_in_step": {str(loss): median(v) for loss, v in in_step.items()},
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


def daemon_figures(daemons: dict[str, Any], simulated: dict[str, Any] | None) -> list[Figure]:
    """The two-daemon rows; the baseline column is the simulated path's figure where there is
    one (PESQ at 0 ms jitter: the same speech, the same media code, no daemons)."""
    figures = []
    for loss, row in daemons["table"].items():
        sim = simulated["pesq"].get(loss, math.nan) if simulated else math.nan
        figures.append(Figure(f"daemons: PESQ-WB, loss {loss} %", row["pesq"], sim,
                              better=HIGHER, digits=2, samples={"kadtalk": row["samples"]["pesq"]},
                              note="baseline column: simulated path"))
    for loss, row in daemons["table"].items():
        figures.append(Figure(f"daemons: capture file to playback file, loss {loss} %",
                              row["delay_ms"], math.nan, unit="ms", better=LOWER,
                              samples={"kadtalk": row["samples"]["delay_ms"]},
                              note=f"buffer target {row['target_ms']:.1f} ms; machine "
                              f"stalls {row['stalls_per_s']:.1f}/s of {row['stall_ms']:.0f} ms"))
    return figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    figures: list[Figure] = []
    details: dict[str, Any] = {"config": {}, "maps": {}, "grid": {}}
    if not args.daemons_only:
        figures, details = run(args)
    daemons = None
    if args.daemons or args.daemons_only:
        lead, clip = speech(args.quick)
        daemons = run_daemons(args, lead, clip)
        figures += daemon_figures(daemons, details["maps"] or None)
    wall = time.perf_counter() - started
    lines = notes(details["config"], details["maps"]) if details["maps"] else []
    if daemons is not None:
        lines.append(
            f"daemons: two `kadtalk daemon` processes on 127.0.0.1, alsa-lib file devices, "
            f"iptables random drop on both ports; medians over {daemons['repeat']} call(s) x 2 "
            "directions; delay = file cross-correlation lag + the files' start offset on the "
            "monotonic clock (add 20 ms of framing for mouth to ear)")
    print_table(
        "Media layer: quality, latency, overhead, CPU"
        + (" — QUICK smoke run" if args.quick else ""),
        figures, "kadtalk", "baseline", lines + [f"wall time {wall:.1f} s"],
    )
    emit_json(args.json, {
        "benchmark": "media",
        "baseline": "silence for lost frames, no FEC or redundancy, fixed 3-frame jitter buffer",
        "ratio": "kadtalk/baseline",
        "config": details["config"],
        **details["maps"],
        "grid": details["grid"],
        "daemons": daemons,
        "figures": figures_payload(figures),
        "wall_s": wall,
        "environment": environment(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
