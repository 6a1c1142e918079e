"""The call state machine as data: every waiting state has a timer the layer reads."""

from __future__ import annotations

import dataclasses

from kadtalk.node.session import CallState, EndReason, Role, SessionSettings
from kadtalk.node.session.state import STATES_OF, TIMEOUTS, TRANSITIONS, WAITING


def test_every_waiting_state_of_every_role_has_a_timeout():
    for role, states in STATES_OF.items():
        for state in states & WAITING:
            assert TIMEOUTS.get((state, role)), f"{state.value} ({role.value}) waits forever"
    assert set(TIMEOUTS) == {(s, r) for r, states in STATES_OF.items() for s in states & WAITING}


def test_every_timeout_names_a_positive_setting_and_ends_in_a_reason():
    settings = SessionSettings()
    fields = {f.name for f in dataclasses.fields(SessionSettings)} | {"key_exchange_timeout"}
    for (state, _role), timeouts in TIMEOUTS.items():
        for timeout in timeouts:
            assert timeout.setting in fields
            assert getattr(settings, timeout.setting) > 0
            assert isinstance(timeout.reason, EndReason)
            assert timeout.since in ("entered", "last_recv")
            assert CallState.ENDED in TRANSITIONS[state]
    assert SessionSettings().key_exchange_timeout == 15.5  # 0.5 s doubling, five tries


def test_the_layer_takes_its_timeouts_from_the_table(monkeypatch):
    """Change the table, and the layer's timer follows it."""
    from kadtalk.node.session import state as state_module
    from kadtalk.node.session.state import Timeout

    from .conftest import Net, as_int, identity

    table = dict(TIMEOUTS)
    table[(CallState.DIALLING, Role.CALLER)] = (Timeout("peer_timeout", EndReason.NO_ANSWER),)
    monkeypatch.setattr(state_module, "TIMEOUTS", table)
    from kadtalk.node.session import layer as layer_module

    monkeypatch.setattr(layer_module, "TIMEOUTS", table)
    net = Net()
    a = net.add("a")
    a.call(as_int(identity("p256", "x")), 0.0)
    assert a.get_timer() == SessionSettings().peer_timeout
    net.tick(10.0)
    (event,) = net.events["a"][-1:]
    assert event.reason is EndReason.NO_ANSWER
