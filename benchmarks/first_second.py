"""Does the caller hear the callee's first second? Two real daemons, random loss, N calls.

Issue 16's goal: "no call in 20 at 20 % loss loses its first second of callee audio". Before
the fix the caller dropped the callee's MEDIA until it saw ANSWER, and a lost ANSWER was resent
only for the next RING (up to 1 s later); now an authentic MEDIA packet counts as the answer and
ANSWER is repeated until acknowledged (docs/protocol.md §15a). This benchmark checks that end
to end, through two `kadtalk daemon` processes on 127.0.0.1 (benchmarks/media.py's
`BenchDaemon`, alsa-lib file devices and iptables loss):

- loss: one iptables random-drop rule per daemon port (both directions, signalling included),
  inserted before the dial and removed after the hang-up;
- b dials a; a, the callee, answers by itself (`[calls] auto_answer = "contacts"`, the
  headless user's path, docs/headless-calling.md): its devices open and its capture starts at
  the moment of answering, and its microphone (an alsa-lib `file` PCM) plays speech from its
  first sample (espeak-ng, leading silence trimmed); b's microphone is silent;
- b's speaker is a `wav:` recording; after the call it is aligned with a's capture block by
  block (200 ms, 10 frames: the lag moves during a call, by the jitter buffer's stretches and
  by this shared host's ~100 ms freezes): each block's lag is where its normalised
  cross-correlation with the recording peaks, if that peak is at least 0.5, searched only where
  the delay from capture to playback is 0..1 s on the daemons' monotonic clock (the files'
  start offsets, `capture_epoch` / `playback_epoch`, as the media benchmark's delay:
  delay = lag + playback_epoch - capture_epoch);
- per 20 ms frame of a's capture that has speech (RMS at least 5 % of the loudest frame's), the
  frame is **heard** if the recording holds it: a normalised correlation of at least 0.6
  within ±30 ms of its block's lag or a neighbouring block's, or, in a block that was found,
  the recording at the block's lag no more than 10 dB quieter than the captured frame (Opus at
  32 kbit/s keeps a fricative's spectrum but not its waveform; a single lost frame's
  concealment passes this too, as a listener hears it). Else it is **missing**: not in the
  recording (it began later), silent there, or in a block that cannot be found.

**A call loses its first second** when more than 10 of the speech frames among the callee's
first 50 captured frames (its first second from answering) are missing. A caller that played
nothing for the callee's first 600 ms (what the issue measured before the fix) misses about 25
of the about 47 speech frames of this speech; random 20 % loss, repaired by the copy of each
frame in the next packet and Opus concealment, misses a few. The share heard
over the rest of the call (second 1 to the end of the talk) is the baseline column: the first
second should fare no worse than the steady state at the same loss.

    python -m benchmarks.first_second                      # 20 calls at 20 % loss (root)
    python -m benchmarks.first_second --calls 5 --loss 10
    python -m benchmarks.first_second --quick --json -     # 2 short calls

Loss needs root and iptables; without them the calls run on the clean path and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Any

if __package__ in (None, ""):  # run as a file: python benchmarks/first_second.py
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
)
from benchmarks.media import (  # noqa: E402
    BenchDaemon,
    StallProbe,
    alsa_config,
    iptables_clear,
    iptables_loss,
    read_wav_file,
    speech,
)
from kadtalk.node.media.codec import FRAME_SAMPLES, SAMPLE_RATE  # noqa: E402

FIRST = 50  # frames: the first second
MISSING_LIMIT = 10  # more missing speech frames than this in FIRST: the first second is lost
SPEECH_SHARE = 0.05  # a frame has speech when its RMS is at least this share of the loudest's
HEARD_CORRELATION = 0.6  # a frame's normalised correlation with the recording: heard
BLOCK = 10  # frames (200 ms) per alignment block
BLOCK_CORRELATION = 0.5  # a block's best normalised correlation: found at that lag
SEARCH = SAMPLE_RATE * 30 // 1000  # ±30 ms around a block's lag, for each frame
LEVEL_DB = 10.0  # in a found block, a frame played this much quieter or less is missing
MAX_DELAY = 1.0  # s, capture to playback: the alignment searches 0..MAX_DELAY


def trim_leading_silence(x: np.ndarray) -> np.ndarray:
    """Speech from its first frame with speech (so the callee talks from the first sample)."""
    rms = frame_rms(x)
    loud = np.nonzero(rms >= SPEECH_SHARE * rms.max())[0]
    return x[int(loud[0]) * FRAME_SAMPLES:] if len(loud) else x


def frame_rms(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME_SAMPLES
    frames = x[:n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    return np.sqrt((frames ** 2).mean(axis=1))


def best_match(segment: np.ndarray, played: np.ndarray, lo: int, hi: int) -> tuple[int, float]:
    """The position p in lo..hi where played[p:p+len(segment)] best matches `segment`
    (normalised correlation), and that correlation; (lo, 0.0) if no such window exists."""
    n = len(segment)
    lo, hi = max(lo, 0), min(hi, len(played) - n)
    if hi < lo:
        return lo, 0.0
    window = played[lo:hi + n].astype(np.float64)
    x = segment.astype(np.float64)
    size = 1 << (len(window) + n - 1).bit_length()
    dots = np.fft.irfft(np.fft.rfft(window, size) * np.conj(np.fft.rfft(x, size)), size)
    dots = dots[:hi - lo + 1]
    energy = np.concatenate([[0.0], np.cumsum(window ** 2)])
    norms = np.sqrt(np.maximum(energy[n:] - energy[:-n], 0.0)) * np.linalg.norm(x)
    score = np.where(norms > 1e-9 * max(norms.max(), 1.0), dots / np.maximum(norms, 1e-300), 0.0)
    best = int(np.argmax(score))
    return lo + best, float(score[best])


def block_lags(captured: np.ndarray, played: np.ndarray, lag_lo: int, lag_hi: int,
               frames: int, speech: np.ndarray) -> dict[int, int]:
    """Per block of 10 frames with speech: the lag (played position - captured position) at
    which the recording holds it, searched in lag_lo..lag_hi; blocks not found are absent.
    The lag moves during a call (a jitter buffer's stretch, a host freeze), so one lag for the
    whole call would count audio played 100 ms later as missing."""
    lags = {}
    for b in range(0, frames, BLOCK):
        if not speech[b:b + BLOCK].any():
            continue
        seg = captured[b * FRAME_SAMPLES:(b + BLOCK) * FRAME_SAMPLES]
        pos, score = best_match(seg, played, b * FRAME_SAMPLES + lag_lo,
                                b * FRAME_SAMPLES + lag_hi)
        if score >= BLOCK_CORRELATION:
            lags[b // BLOCK] = pos - b * FRAME_SAMPLES
    return lags


def heard_frames(captured: np.ndarray, played: np.ndarray, lags: dict[int, int], frames: int,
                 speech: np.ndarray) -> list[bool | None]:
    """Per captured frame k < `frames`: None without speech, else whether the recording holds
    it: a normalised correlation >= 0.6 within ±30 ms of its block's lag or a neighbour's
    (the waveform is there), or, in a block that was found, the frame at the block's lag within
    10 dB of the captured frame's level (Opus at 32 kbit/s keeps a fricative's spectrum, not
    its waveform; a single lost frame's concealment passes too, as a listener hears it)."""
    out: list[bool | None] = []
    for k in range(frames):
        if not speech[k]:
            out.append(None)
            continue
        block = k // BLOCK
        near = {lags[b] for b in (block - 1, block, block + 1) if b in lags}
        frame = captured[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]
        heard = any(best_match(frame, played, k * FRAME_SAMPLES + lag - SEARCH,
                               k * FRAME_SAMPLES + lag + SEARCH)[1] >= HEARD_CORRELATION
                    for lag in near)
        if not heard and block in lags:
            at = k * FRAME_SAMPLES + lags[block]
            there = played[max(at, 0):at + FRAME_SAMPLES]
            heard = at >= 0 and len(there) == FRAME_SAMPLES and level_db(there) >= (
                level_db(frame) - LEVEL_DB)
        out.append(heard)
    return out


def level_db(x: np.ndarray) -> float:
    return 10 * math.log10(float((x.astype(np.float64) ** 2).mean()) + 1.0)


def analyse(captured: np.ndarray, played: np.ndarray, capture_epoch: float | None,
            playback_epoch: float | None, talk_frames: int) -> dict[str, Any]:
    """One call's figures: missing speech frames in the callee's first second and after.

    The recording's sample j was played at playback_epoch + j/48000 and the capture's sample i
    captured at capture_epoch + i/48000 (the daemons' monotonic clock), so a lag (j - i) means
    a delay of lag/48000 + playback_epoch - capture_epoch; lags are searched for delays of
    0..1 s only."""
    rms = frame_rms(captured)
    speech = rms >= SPEECH_SHARE * rms.max()
    frames = min(talk_frames, len(speech))
    if capture_epoch is None or playback_epoch is None or len(played) < FRAME_SAMPLES:
        lags: dict[int, int] = {}
        offset = 0.0
    else:
        offset = playback_epoch - capture_epoch
        lags = block_lags(captured, played, int(-offset * SAMPLE_RATE),
                          int((MAX_DELAY - offset) * SAMPLE_RATE), frames, speech)
    heard = heard_frames(captured, played, lags, frames, speech)
    first, rest = heard[:FIRST], heard[FIRST:]
    speech_first = [h for h in first if h is not None]
    speech_rest = [h for h in rest if h is not None]
    missing = sum(not h for h in speech_first)
    heard_at = next((k for k, h in enumerate(first) if h), None)
    delays = [1e3 * (lag / SAMPLE_RATE + offset) for _, lag in sorted(lags.items())]
    return {
        "first_speech": len(speech_first),
        "first_missing": missing,
        "first_heard_share": 1 - missing / max(len(speech_first), 1),
        "first_heard_ms": None if heard_at is None else 20 * heard_at,
        "missing_frames": [k for k, h in enumerate(first) if h is False],
        "rest_speech": len(speech_rest),
        "rest_heard_share": (sum(speech_rest) / len(speech_rest)) if speech_rest else math.nan,
        "lost_first_second": missing > MISSING_LIMIT,
        "delay_ms": median(delays),
        "block_delays_ms": [round(d, 1) for d in delays],
    }


# -- the calls ------------------------------------------------------------------------------------


class SetUpFailed(Exception):
    """The caller's call ended before it talked (lookup or key exchange lost under loss)."""


def write_config(root: str, name: str, text: str) -> None:
    directory = os.path.join(root, name)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.toml"), "w") as f:
        f.write(text)


async def one_call(a: BenchDaemon, b: BenchDaemon, a_id: str, ports: list[int], loss: float,
                   talk: float) -> dict[str, Any]:
    """b dials a (who answers by itself) with `loss` on both ports; the call's end events."""
    ca, cb = a.client, b.client
    since_a, since_b = len(ca.seen), len(cb.seen)
    probe = StallProbe()
    started = time.monotonic()
    try:
        if loss:
            iptables_loss(ports, loss)
        await cb.request("dial", to=a_id)

        async def talking(c: Any, since: int) -> tuple[float, dict]:
            event = await c.wait_event(lambda e: e.get("event") == "call" and e.get("state") in
                                       ("talking", "ended"), timeout=40, since=since)
            return time.monotonic(), event

        # when each side's daemon reported talking (seen here; the control socket's delay
        # is the same for both): the caller's lag behind the callee is the answer's delay
        callee = asyncio.ensure_future(talking(ca, since_a))
        caller_at, event = await talking(cb, since_b)
        if event["state"] != "talking":  # the set-up failed: the callee may not know of it
            callee.cancel()
            raise SetUpFailed(str(event.get("reason")))
        callee_at, _ = await asyncio.wait_for(callee, 10)
        set_up = caller_at - started
        await asyncio.sleep(talk)
        await cb.request("hangup", check=False)
        ended = {}
        for name, c, since in (("a", ca, since_a), ("b", cb, since_b)):
            ended[name] = await c.wait_event(
                lambda e: e.get("event") == "call" and e.get("state") == "ended", timeout=30,
                since=since)
    finally:
        machine = probe.stop()
        if loss:
            iptables_clear()
    return {"ended": ended, "set_up_s": set_up, "answer_lag_ms": 1e3 * (caller_at - callee_at),
            **machine}


async def run_calls(voice: np.ndarray, calls: int, loss: int, talk: float,
                    realtime: bool) -> tuple[list[dict[str, Any]], list[str]]:
    root = tempfile.mkdtemp(prefix="kt-first-")
    pad = np.zeros(SAMPLE_RATE * 4, np.int16)  # the file plugin reads noise past the end
    for name, samples in (("a", voice), ("b", np.zeros_like(voice))):
        with open(os.path.join(root, f"{name}.raw"), "wb") as f:
            f.write(np.concatenate([samples, pad]).astype("<i2").tobytes())
    # a answers its contacts by itself; b may call it more than 3 times a minute (the default
    # per-caller limit would refuse every fourth call)
    write_config(root, "a", '[calls]\nauto_answer = "contacts"\nper_caller_per_minute = 1000\n')
    env = {**os.environ, "ALSA_CONFIG_PATH": alsa_config(root, ("a", "b")),
           "PYTHONWARNINGS": "ignore"}
    from kadtalk.app.client import ControlError

    a = BenchDaemon(root, "a", env, None, realtime)
    daemons = [a]
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    talk_frames = int(talk * SAMPLE_RATE) // FRAME_SAMPLES - 25  # the last half second: hang-up
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
        for n in range(calls):
            for attempt in range(3):  # a set-up that fails under loss is tried again
                try:
                    got = await one_call(a, b, ids["a"], [port_a, port_b], loss / 100, talk)
                    break
                except (asyncio.TimeoutError, ControlError, SetUpFailed) as e:
                    failed.append(f"call {n + 1}: {type(e).__name__} {e}")
                for c in (ca, cb):
                    await c.request("hangup", check=False)
                await asyncio.sleep(2.0)
            else:
                continue
            cap = got["ended"]["a"].get("media") or {}
            play = got["ended"]["b"].get("media") or {}
            played = read_wav_file(os.path.join(root, "b.wav"))
            row = analyse(voice, played, cap.get("capture_epoch"), play.get("playback_epoch"),
                          talk_frames)
            row.update(call=n + 1, set_up_s=got["set_up_s"], answer_lag_ms=got["answer_lag_ms"],
                       stalls_per_s=got["stalls_per_s"], stall_ms=got["stall_ms"],
                       concealed=play.get("concealed", 0), late=play.get("late", 0),
                       frames_captured=cap.get("frames_captured"),
                       frames_played=play.get("frames_played"), caller_media=play)
            rows.append(row)
            heard = row["first_speech"] - row["first_missing"]
            print(f"  call {n + 1}/{calls}: first second {heard}/{row['first_speech']} speech "
                  "frames heard"
                  + (f" (from {row['first_heard_ms']} ms)" if row["first_heard_ms"] else "")
                  + f", rest {100 * row.get('rest_heard_share', math.nan):.0f} %, delay "
                  f"{row['delay_ms']:.0f} ms, set-up {got['set_up_s']:.2f} s, caller talking "
                  f"{got['answer_lag_ms']:+.0f} ms after the callee, its buffer dropped "
                  f"{play.get('dropped', 0)} and skipped {play.get('skipped', 0)} frames"
                  + (" — LOST the first second" if row["lost_first_second"] else ""),
                  file=sys.stderr, flush=True)
    finally:
        iptables_clear()
        for d in daemons:
            if d.client is not None:
                await d.client.close()
            d.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows, failed


# -- the run --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.first_second",
        description="The callee's first second through two real daemons under random loss: "
        "how many calls lose it.")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--loss", type=int, default=20, help="percent (iptables, needs root)")
    parser.add_argument("--talk", type=float, default=4.0, help="seconds talked per call")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="run the daemons at normal priority (default as root: chrt --rr 20)")
    add_common_options(parser, default_repeat=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    calls, talk = (min(args.calls, 2), min(args.talk, 2.5)) if args.quick else (args.calls,
                                                                                  args.talk)
    loss = args.loss
    can_drop = os.geteuid() == 0 and shutil.which("iptables") is not None
    if loss and not can_drop:
        print("  loss needs root and iptables; clean path only", file=sys.stderr)
        loss = 0
    realtime = args.realtime and os.geteuid() == 0 and shutil.which("chrt") is not None
    lead, clip = speech(args.quick)
    voice = trim_leading_silence(np.concatenate([lead, clip]))
    import atexit
    import signal as signals

    atexit.register(iptables_clear)
    previous = signals.signal(signals.SIGTERM, lambda *_: sys.exit(143))
    try:
        rows, failed = asyncio.run(run_calls(voice, calls, loss, talk, realtime))
    finally:
        signals.signal(signals.SIGTERM, previous)
        iptables_clear()
    wall = time.perf_counter() - started
    lost = sum(r["lost_first_second"] for r in rows)
    first_share = [r.get("first_heard_share", 0.0) for r in rows]
    rest_share = [r.get("rest_heard_share", math.nan) for r in rows]
    figures = [
        Figure("calls that lost the callee's first second", lost, math.nan, better=LOWER,
               digits=0, note=f"of {len(rows)}; > {MISSING_LIMIT} of its speech frames missing"),
        Figure("speech frames heard, first second vs the rest of the call",
               100 * median(first_share), 100 * median(rest_share), unit="%", better=HIGHER,
               samples={"kadtalk": first_share, "baseline": rest_share},
               note="median over calls; baseline column: seconds 1 to the end"),
        Figure("worst call: speech frames heard in the first second",
               100 * min(first_share, default=math.nan), math.nan, unit="%", better=HIGHER),
        Figure("capture file to playback file", median([r["delay_ms"] for r in rows]), math.nan,
               unit="ms", better=LOWER, note="median over calls"),
        Figure("call set-up (dial to talking)", median([r["set_up_s"] for r in rows]), math.nan,
               unit="s", digits=2, better=LOWER),
    ]
    notes = [
        f"{len(rows)} call(s) at {loss} % random loss on both daemons' ports (iptables), b dials "
        "a, a answers by itself (auto_answer) and talks from the first sample; b's wav: recording "
        "scored against a's capture per 20 ms frame",
        f"a call loses its first second when more than {MISSING_LIMIT} of the speech frames among "
        f"the callee's first {FIRST} are missing (not in b's recording at their "
        "place: neither the waveform nor, in a block found, the level within 10 dB)",
        f"set-ups retried: {len(failed)}" + (f" ({'; '.join(failed[:3])})" if failed else ""),
        f"machine stalls > 30 ms: {median([r['stalls_per_s'] for r in rows]):.1f}/s (median); "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; wall time {wall:.1f} s",
    ]
    print_table("The callee's first second through two daemons"
                + (" — QUICK smoke run" if args.quick else ""), figures, "kadtalk", "baseline",
                notes)
    emit_json(args.json, {
        "benchmark": "first_second",
        "baseline": "the rest of the same calls (seconds 1 to the end of the talk)",
        "config": {"calls": calls, "loss": loss, "talk_s": talk, "quick": args.quick,
                   "realtime": realtime, "first_frames": FIRST, "missing_limit": MISSING_LIMIT,
                   "heard_correlation": HEARD_CORRELATION, "speech_share": SPEECH_SHARE},
        "lost_first_second": lost,
        "calls": rows,
        "failed_setups": failed,
        "figures": figures_payload(figures),
        "wall_s": wall,
        "load_average": os.getloadavg(),
        "environment": environment(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
