"""The fuzz job: a short run of every target family reports its counts and finds no crash, and
each target's checks can fail."""

from __future__ import annotations

import json

import pytest

from benchmarks import fuzz
from benchmarks.fuzz import (control, relay, routing, runner, session, stack, storage,
                             traversal)

FAMILIES = {
    "routing": ["routing-decode", "route6-decode", "routing-layer"],
    "session": ["session-key", "session-stream", "session-cookie"],
    "traversal": ["traversal"],
    "relay": ["relay"],
    "storage": ["storage"],
    "stack": ["node-stack"],
    "control": ["control-json", "websocket"],
}


def test_every_target_belongs_to_one_family_and_the_runner_knows_them_all():
    modules = {"routing": routing, "session": session, "traversal": traversal, "relay": relay,
               "storage": storage, "stack": stack, "control": control}
    for family, names in FAMILIES.items():
        assert [t.name for t in modules[family].TARGETS] == names
    assert sorted(fuzz.TARGETS) == sorted(n for names in FAMILIES.values() for n in names)
    assert runner.FAMILIES == tuple(modules[f] for f in ("routing", "session", "traversal",
                                                        "relay", "storage", "stack", "control"))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_quick_run_of_each_family_finds_no_crash(family, tmp_path, capsys):
    names = [n for n in FAMILIES[family] if fuzz.TARGETS[n].available()]
    if not names:
        pytest.skip("kadtalk.app not installed")
    out = tmp_path / "fuzz.json"
    status = fuzz.main(["--quick", "--inputs", "400", "--targets", *names, "--json", str(out)])
    payload = json.loads(out.read_text())
    rows = {r["target"]: r for r in payload["results"]}
    assert list(rows) == names
    for name, row in rows.items():
        assert row["inputs"] >= 400, name  # hypothesis ran every input asked for
        assert row["crashes"] == 0, row["examples"]
    assert status == 0
    assert names[-1] in capsys.readouterr().out


def test_python_m_benchmarks_fuzz_keeps_its_flags():
    args = runner.build_parser().parse_args(
        ["--quick", "--targets", "session-cookie", "node-stack", "--seed", "3", "--json", "-"]
    )
    assert (args.quick, args.targets, args.seed, args.json) == (
        True, ["session-cookie", "node-stack"], 3, "-"
    )


def test_a_crash_is_counted_and_shown():
    """The harness itself: a target that raises on some inputs is reported, not stopped at."""

    def run(_state, data: bytes) -> None:
        if data[:1] == b"\x00":
            raise ValueError("boom")

    target = fuzz.Target("toy", "toy", lambda: None, lambda _s: fuzz.typed_bytes([0, 1], 4), run)
    result = fuzz.fuzz(target, 200)
    assert result["inputs"] >= 200
    assert 0 < result["crashes"] < result["inputs"]
    assert list(result["crash_kinds"]) == ["ValueError: boom"]


def _punch_fwd_from_anyone(monkeypatch):
    from kadtalk.node import stack as node_stack

    monkeypatch.setattr(node_stack.TableView, "is_contact", lambda self, addr: True)


def _punch_req_never_checked(monkeypatch):
    from kadtalk.node import stack as node_stack

    real = node_stack.TableView.address_of
    # an ID the table lacks seems to sit at the traversal target's stranger address
    monkeypatch.setattr(node_stack.TableView, "address_of",
                        lambda self, node_id: real(self, node_id) or ("198.51.100.9", 7777))


def _traversal_not_dispatched(monkeypatch):
    from kadtalk.node import stack as node_stack

    table = bytearray(node_stack.LAYER_OF)
    table[0x06] = node_stack.NONE
    monkeypatch.setattr(node_stack, "LAYER_OF", bytes(table))


def _unknown_types_not_counted(monkeypatch):
    from kadtalk.node import stack as node_stack

    monkeypatch.setattr(node_stack.Node, "_count", lambda self, reason: None)


def _every_address_validated(monkeypatch):
    from kadtalk.node.routing import layer

    monkeypatch.setattr(layer.RoutingLayer, "is_validated", lambda self, addr: True)


def _route6_entries_counted_as_ipv4(monkeypatch):
    from kadtalk.node.routing import layer

    monkeypatch.setattr(layer, "CONTACT6_SIZE", 26)  # a 39-byte entry budgeted as 26: > 3x


def _route6_any_family(monkeypatch):
    from kadtalk.node import addresses

    real = addresses.from_wire

    def lax(data, offset=0):
        if offset < len(data) and data[offset] not in (4, 6):
            data = data[:offset] + b"\x04" + data[offset + 1:]  # an unknown family read as IPv4
        return real(data, offset)

    monkeypatch.setattr(addresses, "from_wire", lax)


def _announce_taken_from_any_answer(monkeypatch):
    from kadtalk.node.routing import layer

    real = layer._Pending.__init__

    def every_request_keyed(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.keyed = True  # an answer to a user lookup's request passes for a keyed echo

    monkeypatch.setattr(layer._Pending, "__init__", every_request_keyed)


def _any_answer_echoes_the_query(monkeypatch):
    from kadtalk.node.routing import layer

    real = layer.RoutingLayer._is_probe_answer

    def lax(self, msg, addr, now, kind=b""):
        return kind == b"Q" or real(self, msg, addr, now, kind)

    monkeypatch.setattr(layer.RoutingLayer, "_is_probe_answer", lax)


def test_the_routing_layer_target_reaches_the_other_address_paths(monkeypatch):
    """Its contacts answer as themselves: the node queries entries ('Q'), takes announces from
    keyed answers and proves them (docs/protocol.md section 23), not only drops answers."""
    from kadtalk.node.routing import layer

    target = fuzz.TARGETS["routing-layer"]
    states = []

    def make():
        states.append(target.make())
        return states[-1]

    queries = []
    real = layer.RoutingLayer._query_other
    monkeypatch.setattr(layer.RoutingLayer, "_query_other",
                        lambda self, *args: queries.append(args) or real(self, *args))
    for seed_value in range(4):  # one seed does (measured); more in case hypothesis changes
        result = fuzz.fuzz(fuzz.Target(target.name, target.parser, make, target.strategy,
                                       target.run), 1500, seed_value)
        assert result["crashes"] == 0, result["examples"]
        if queries and len(states[-1].node.routing._others or ()):
            break
    assert queries  # 121 in 3,000 inputs at seed 0 (none before the contacts answered)
    assert len(states[-1].node.routing._others) > 0  # proven other addresses: 11 in 3,000


def _relay_challenges_twice(monkeypatch):
    from kadtalk.node.relay import server

    real = server.RelayServer.on_hello

    def twice(self, data, addr, now, flags=None):  # (on_allocate passes flags)
        real(self, data, addr, now, flags)
        real(self, data, addr, now, flags)

    monkeypatch.setattr(server.RelayServer, "on_hello", twice)


def _relay_forwards_anywhere(monkeypatch):
    from kadtalk.node.relay import server

    def anywhere(self, data, addr, now, send):  # any DATA for an allocation, no rule asked
        if not server.wire.is_data(data) or data[2:10] not in self.allocations:
            return False
        send(data, ("192.0.2.200", 9))
        return True

    monkeypatch.setattr(server.RelayServer, "forward", anywhere)


def _relay_knocks_need_no_cookie(monkeypatch):
    from kadtalk.node.relay import server

    monkeypatch.setattr(server.KnockCookies, "valid", lambda self, addr, tag, cookie, now: True)


def _relay_permits_unproven_peers(monkeypatch):
    from kadtalk.node.relay import server

    real = server.RelayServer.on_permit

    def permit(self, data, addr, now):
        alloc = self.allocations.get(data[2:10])
        if alloc is not None and addr == alloc.owner:
            alloc.proven[server.addresses.from_wire(data[10:16])] = now
        real(self, data, addr, now)

    monkeypatch.setattr(server.RelayServer, "on_permit", permit)


def _relay_ignores_consent(monkeypatch):
    from kadtalk.node.relay import server

    monkeypatch.setattr(server.Allocation, "heard", property(lambda self: 1e12,
                                                              lambda self, value: None))


def _storage_answers_in_full(monkeypatch):
    from kadtalk.node.storage import layer

    monkeypatch.setattr(layer.StorageLayer, "_budget", staticmethod(lambda size, proven: 1400))
    monkeypatch.setattr(layer.StorageLayer, "_answer",
                        lambda self, out, size, addr, validated=False: self._outbox.append(
                            (out, addr)))


def _storage_skips_signatures(monkeypatch):
    from kadtalk.node.storage import layer, records

    real = records.read
    monkeypatch.setattr(layer.records, "read",
                        lambda key, raw, check_signature=True: real(key, raw, False))


def _integers_unlimited(monkeypatch):
    from kadtalk.app import protocol

    monkeypatch.setattr(protocol, "_int", int)


def _lines_unlimited(monkeypatch):
    from kadtalk.app import protocol

    real = protocol.LineBuffer.__init__
    monkeypatch.setattr(protocol.LineBuffer, "__init__", lambda self, limit=0: real(self, 1 << 30))


@pytest.mark.parametrize(
    "name, sabotage",
    [
        ("traversal", _punch_fwd_from_anyone),
        ("traversal", _punch_req_never_checked),
        ("relay", _relay_challenges_twice),
        ("relay", _relay_forwards_anywhere),
        ("relay", _relay_knocks_need_no_cookie),
        ("relay", _relay_permits_unproven_peers),
        ("relay", _relay_ignores_consent),
        ("storage", _storage_answers_in_full),
        ("storage", _storage_skips_signatures),
        ("node-stack", _traversal_not_dispatched),
        ("node-stack", _unknown_types_not_counted),
        ("routing-layer", _every_address_validated),
        ("routing-layer", _route6_entries_counted_as_ipv4),
        ("routing-layer", _announce_taken_from_any_answer),
        ("routing-layer", _any_answer_echoes_the_query),
        ("route6-decode", _route6_any_family),
        ("control-json", _integers_unlimited),
        ("control-json", _lines_unlimited),
    ],
)
def test_each_check_catches_the_bug_it_is_for(name, sabotage, monkeypatch):
    """Break the rule a target checks in the code under test: the target reports crashes."""
    target = fuzz.TARGETS[name]
    if not target.available():
        pytest.skip("kadtalk.app not installed")
    sabotage(monkeypatch)
    # Up to four seeds of 1,500 inputs: a target's state holds fresh keys and secrets each run,
    # and some breaks need a rarer sequence (a relay permitting an unproven peer shows only
    # once that peer also sent, since DATA needs its consent): one seed missed it in CI.
    for seed_value in range(4):
        result = fuzz.fuzz(target, 1500, seed_value)
        if result["crashes"]:
            break
    assert result["crashes"] > 0
    kinds = result["crash_kinds"]
    assert all(kind.startswith("Violation") for kind in kinds), kinds
