"""Fixtures for tests on the namespace testbed (kadtalk.experiments.testbed).

Every test here is marked `testbed` and skips with the reason when the machine cannot build one
(not root, no `ip netns`, no iptables; delays also need the NetfilterQueue package). CI runs as
root on this machine kind, so they run there.

`make_testbed(...)` builds a described Testbed and tears it down after the test; `nat_testbed`
is the standard NAT layout for call tests: public hosts pub1 and pub2, a filtering NAT `natf`
with host `hf` behind it, and a full-cone NAT `natc` with host `hc` behind it.
"""

from __future__ import annotations

import functools

import pytest

from kadtalk.experiments.testbed import (
    Testbed,
    cleanup_stale,
    netfilterqueue_reason,
    unavailable_reason,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "testbed: needs root and network namespaces (runs in CI as root)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/testbed/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.testbed)


@functools.cache
def _reason() -> str | None:
    reason = unavailable_reason()
    if reason is None:
        cleanup_stale()  # leftovers of crashed runs
    return reason


def require_testbed(delay: bool = False) -> None:
    reason = _reason()
    if reason:
        pytest.skip(reason)
    if delay and netfilterqueue_reason():
        pytest.skip(netfilterqueue_reason())


@pytest.fixture
def make_testbed():
    built: list[Testbed] = []

    def make(*, delay=None, loss=0.0, build=None) -> Testbed:
        require_testbed(delay=bool(delay))
        tb = Testbed(delay=delay, loss=loss)
        if build is not None:
            build(tb)
        built.append(tb)
        return tb.up()

    yield make
    for tb in built:
        tb.down()


def standard_nat_layout(tb: Testbed) -> None:
    tb.public("pub1")
    tb.public("pub2")
    tb.nat("natf", "filtering")
    tb.private("hf", "natf")
    tb.nat("natc", "full-cone")
    tb.private("hc", "natc")


@pytest.fixture
def nat_testbed(make_testbed):
    """pub1, pub2 public; hf behind a filtering NAT; hc behind a full-cone NAT; no delay."""
    return make_testbed(build=standard_nat_layout)
