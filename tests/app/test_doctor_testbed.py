"""`kadtalk doctor` on real daemons behind real NATs (the namespace testbed: iptables NATs in
network namespaces; skips without root). A public host, a full-cone, a filtering and a
symmetric NAT: the verdict each may give, and the ones it must never give (a filtering NAT
reported reachable directly, a full-cone one reported filtering)."""

from __future__ import annotations

import pytest

from tests.testbed import test_calls as tc
from tests.testbed.conftest import make_testbed  # noqa: F401 (a fixture)

pytestmark = pytest.mark.timeout(180)
root = tc.root  # the fixture: short socket paths


def layout(tb) -> None:
    tb.public("pub1")
    tb.public("pub2")
    tb.nat("natc", "full-cone")
    tb.private("hc", "natc")
    tb.nat("natf", "filtering")
    tb.private("hf", "natf")
    tb.nat("nats", "symmetric")
    tb.private("hs", "nats")


def test_doctor_behind_each_nat_kind(make_testbed, root):  # noqa: F811
    tb = make_testbed(build=layout)

    async def scenario():
        daemons = await tc.start_network(tb, root, ["pub1", "pub2", "hc", "hf", "hs"])
        try:
            await daemons["hs"].client.wait_event(
                lambda e: e.get("event") == "network" and e.get("nat") == "symmetric", timeout=40)
            for host in ("hc", "hf"):
                await daemons[host].observed()
            r = {host: await d.client.request("doctor", seconds=8, timeout=20)
                 for host, d in daemons.items()}
            text = {host: next(f["text"] for f in x["findings"] if f["check"] == "nat")
                    for host, x in r.items()}
            assert r["pub1"]["code"] == 0 and r["pub1"]["facts"]["nat"] == "none"
            assert text["pub1"].startswith("Calls can reach you directly")
            assert r["hs"]["code"] == 1 and r["hs"]["facts"]["symmetric"]
            assert text["hs"].startswith("Your NAT changes the port for each peer")
            assert r["hs"]["facts"]["probes"]["from_strangers"] == 0
            assert r["hf"]["code"] == 1 and r["hf"]["facts"]["nat"] == "cone"
            assert not text["hf"].startswith("Calls can reach you directly")
            assert r["hf"]["facts"]["probes"]["from_strangers"] == 0
            assert r["hc"]["facts"]["nat"] == "cone" and "filters" not in text["hc"]
            for x in r.values():
                assert x["facts"]["peers_answered"] >= 1 and x["seconds"] <= 9
        finally:
            await tc.stop_all(daemons)

    tc.run(scenario(), timeout=170)
