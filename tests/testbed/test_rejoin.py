"""A daemon whose join found nobody and that a peer reached since rejoins (node/upkeep.py
`Rejoin`): the flaky pairs test's run, forced. ds2 joins through ds1 over IPv6 and pub1 over
IPv4 while ds1 is stopped (SIGSTOP) and pub1 not started, so both requests time out ("0
contacts after 2 RPCs (2 timeouts)"); ds1 then resumes, answers the stale request too late and
probes ds2, which so holds one contact. Before the rule, that one contact stopped the upkeep:
ds2 never joined again (joined stayed false; 30 s here, 90 s in the pairs test).

Nothing sleeps: the waits are for ds2's join line and its `network` event, with timeouts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from kadtalk.experiments.testbed import pairs
from kadtalk.experiments.testbed.daemons import NsDaemon, stop_all

pytestmark = pytest.mark.timeout(200)


def layout(tb) -> None:
    for name, kind in (("ds1", "dual-stack"), ("pub1", "public-v4"), ("ds2", "dual-stack")):
        pairs.add_host(tb, name, kind)  # pub1: an address nobody listens at


async def failed_join_then_contacted(tb, root: Path) -> dict:
    daemons: dict[str, NsDaemon] = {}
    try:
        daemons["ds1"] = ds1 = await NsDaemon(tb, root, "ds1", 400.0).start(90)
        os.kill(ds1.proc.pid, signal.SIGSTOP)
        try:
            daemons["ds2"] = ds2 = NsDaemon(tb, root, "ds2", 431.0,
                                            *pairs.bootstrap_args(tb, "ds2", "dual-stack"))
            await ds2.start(90)
            line = await ds2.log_line("join:", 60)
        finally:
            os.kill(ds1.proc.pid, signal.SIGCONT)
        assert "join: 0 contacts after 2 RPCs (2 timeouts)" in line, line
        return await ds2.joined(timeout=30)
    finally:
        await stop_all(daemons)


def test_a_daemon_whose_join_failed_rejoins_after_a_peer_reached_it(make_testbed):
    tb = make_testbed(build=layout)
    root = Path(tempfile.mkdtemp(prefix="ktbj"))  # short: Unix socket paths
    try:
        event = asyncio.run(asyncio.wait_for(failed_join_then_contacted(tb, root), 180))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert event["joined"] and event["table_size"] >= 1
