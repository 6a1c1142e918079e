"""Issue 17, attack 4 on real sockets: a node flooded with valid KEY_REQs from forged 127.0.0.0/8
source addresses (a raw IPPROTO_RAW socket, hand-made IPv4 + UDP headers, in another process:
benchmarks/flood.py) while an honest caller on 127.0.0.1 calls it.

Two floods, because what the kernel does with datagrams the node has no time to read is not the
node's doing:
- 500/s, ten times the rate that puts the node under load (global_rate, 50/s) and below what a
  Python node reads on a busy machine: every honest call rings, the flood draws cookie replies.
- 20,000/s, more than a node reads on a busy machine: the kernel drops the rest of the flood,
  honest datagrams among them, before any rule applies; the node answers what it reads with
  cookies, and a call is lost only to the kernel's drops.
Call success and set-up times under the 20,000/s flood are measured by
`python -m benchmarks.flood --mode key-req` (docs/results-session.md), not asserted here: they
depend on how fast the machine reads.

Spreads measured on the shared 2-core machine, session 12 (one core taken by a study, the load
average 5-11, the node at 4-19 % of a core; /work/notes/s12/H4): at 20,000/s the node read
300-4,500 datagrams/s, the flooder offered 2,000-20,800/s, 2 of 3 honest calls were lost to
kernel drops in 2 of 8 runs (the old test, "two of three ring", 15,000/s offered, 5,000
cookies in a flood of 1 s and more, failed 6 of those 8), and 48-305 flood KEY_REQs began a
handshake and ended (see `budget`: the meter's rule, never more; up to `max_pending`, 32, more
were still pending, uncounted then); at 500/s every honest call rang in 18
runs (the node at 6-9 % of a core), and in the 6 whose figures were kept: no kernel drop,
537-704 cookie replies, 38-65 handshakes (426-803 cookie replies in 4 more)."""

from __future__ import annotations

import asyncio
import time

import pytest

from benchmarks import flood
from kadtalk.node.session.layer import SessionSettings

pytestmark = pytest.mark.skipif(
    not flood.can_spoof(), reason="forging source addresses needs a raw socket: run as root "
    "(or with CAP_NET_RAW)")


def flooded(**kwargs) -> tuple[dict, float]:
    started = time.monotonic()
    run = asyncio.run(flood.run_key_req_flood(seed=1, distinct=2000, **kwargs))
    return run, time.monotonic() - started


def said(run: dict, seconds: float) -> dict:
    """What a failed assertion shows (pytest cuts a long dict short)."""
    keys = ("flooded", "seconds", "offered_per_s", "kernel_drops_per_s", "cpu_share", "drops",
            "pending_handshakes")
    return {"run_s": seconds, **{k: run[k] for k in keys}}


def signature_checks(run: dict) -> int:
    """Flood KEY_REQs whose handshake began (the node was not under load): each cost a check.
    Those ended (evicted, timed out) and those still pending when the run ended (up to
    `max_pending`; before session 13's review, R1-3, they went uncounted)."""
    drops = run["drops"]
    return (drops.get("handshake_evicted", 0) + drops.get("handshake_timeout", 0)
            + run["pending_handshakes"])


def budget(run: dict, seconds: float) -> float:
    """The most handshakes the flood can begin in `seconds` (the whole run, by the clock the
    node reads: loop.time() is time.monotonic()), by the load meter's rule (node/session/
    layer.py `_under_load`): every bare KEY_REQ takes a token from a meter of `global_rate`
    (50/s), burst `global_burst` (100), and begins a handshake only while at least
    `load_threshold` (half) of the burst is left. So from a full meter at most
    burst x (1 - threshold) + 1 = 51 begin, plus one for each token refilled, 50 a second of the
    node's clock, read or not: a node that reads a flood steadily faster than 50/s stops after
    about 51, one the machine stalls refills on wall time and begins up to 50 more per second
    of stall (48-305 seen in 2-8 s of flood, session 12). An honest call's KEY_REQ that a
    cookie proved skips the meter: one that did not ring may have begun a handshake that timed
    out or was evicted, so each counts too."""
    s = SessionSettings()
    lost = sum(not ok for ok, _ in run["flooded"])
    return s.global_burst * (1 - s.load_threshold) + 1 + s.global_rate * seconds + lost


def test_every_honest_call_rings_during_a_spoofed_key_req_flood_the_node_can_read():
    run, seconds = flooded(count=3, rate=500, seconds=1.0)
    assert all(ok for ok, _ in run["baseline"])
    # the flood lasts at least 1 s (calls ring within milliseconds): 500 KEY_REQs and more
    assert all(ok for ok, _ in run["flooded"]), said(run, seconds)
    assert run["offered_per_s"] > 400, said(run, seconds)  # the flood ran (measured 494-508/s)
    drops = run["drops"]
    # what the node read of it drew cookies (426-803 in 1-2 s: 0.6-1.14 times the offered
    # count; the node's backlog when the count is taken is not read, the honest calls' cookies
    # count too), ...
    assert drops["cookie_sent"] > 100, said(run, seconds)
    # ... a signature check only while the meter was not empty
    assert signature_checks(run) <= budget(run, seconds), said(run, seconds)


def test_a_spoofed_key_req_flood_beyond_what_the_node_reads_draws_only_cookie_replies():
    run, seconds = flooded(count=1, rate=20_000, seconds=5.0)
    assert all(ok for ok, _ in run["baseline"])
    if not all(ok for ok, _ in run["flooded"]):
        assert run["kernel_drops_per_s"], ("a call failed although the kernel dropped nothing",
                                           said(run, seconds))
    # far above the 50/s that puts a node under load (the flooder shares the cores: 2,000/s
    # measured when they were busiest)
    assert run["offered_per_s"] > 1_000, said(run, seconds)
    drops = run["drops"]
    # for 5 s at least the node answered what it read with cookies (300/s read at the worst:
    # 1,500), and checked signatures for no more than the meter let through
    assert drops["cookie_sent"] > 500, said(run, seconds)
    assert signature_checks(run) <= budget(run, seconds), said(run, seconds)
