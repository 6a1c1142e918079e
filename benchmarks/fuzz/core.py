"""The fuzz engine: a target's shape, the shared input strategies, and `fuzz` (one target run)."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

WALL = 1_767_225_600.0  # session layers' wall clock at now = 0
WIDE = 1e12  # a rate or burst no input reaches (so every input reaches the checks behind)


class Violation(Exception):
    """An invariant the target checks does not hold (counted as a crash)."""


def always() -> bool:
    return True


@dataclass
class Target:
    name: str
    parser: str  # what it fuzzes, for the table
    make: Callable[[], Any]  # builds the state once per run
    strategy: Callable[[Any], st.SearchStrategy]
    run: Callable[[Any, Any], None]  # feeds one input; raises on a crash
    available: Callable[[], bool] = always  # False: the code under test is not installed


# -- strategies ------------------------------------------------------------------------------------

MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 4096)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("flip"), st.integers(0, 4096 * 8)),
    st.tuples(st.just("set"), st.integers(0, 4096), st.integers(0, 255)),
    st.tuples(st.just("body"), st.binary(max_size=200)),
)


def mutate(data: bytes, how: tuple) -> bytes:
    if not data:
        return data
    kind = how[0]
    if kind == "truncate":
        return data[: how[1] % len(data)]
    if kind == "extend":
        return data + how[1]
    if kind == "flip":
        bit = how[1] % (len(data) * 8)
        return data[: bit // 8] + bytes([data[bit // 8] ^ (1 << (bit % 8))]) + data[bit // 8 + 1 :]
    if kind == "set":
        i = how[1] % len(data)
        return data[:i] + bytes([how[2]]) + data[i + 1 :]
    return data[:1] + how[1]  # the same type byte, any body


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A valid message from `seeds`, with one to four mutations."""
    return st.builds(
        lambda data, hows: _apply(data, hows),
        st.sampled_from(seeds),
        st.lists(MUTATION, min_size=1, max_size=4),
    )


def _apply(data: bytes, hows: list[tuple]) -> bytes:
    for how in hows:
        data = mutate(data, how)
    return data


def typed_bytes(types: list[int], max_size: int = 700) -> st.SearchStrategy[bytes]:
    """A known type byte followed by random bytes."""
    return st.builds(
        lambda t, body: bytes([t]) + body, st.sampled_from(types), st.binary(max_size=max_size)
    )


def datagrams(
    seeds: list[bytes], types: list[int], max_size: int = 700
) -> st.SearchStrategy[bytes]:
    """The usual mix: mutated seeds, a known type byte with a random body, random bytes."""
    return st.one_of(mutated(seeds), typed_bytes(types, max_size), st.binary(max_size=max_size))


# -- running ---------------------------------------------------------------------------------------


def fuzz(target: Target, inputs: int, seed_value: int = 0, keep: int = 3) -> dict[str, Any]:
    """Run `inputs` inputs through one target; return counts, time and the first crashes."""
    state = target.make()
    tried = 0
    crashes = 0
    kinds: dict[str, int] = {}
    examples: list[dict[str, str]] = []

    @seed(seed_value)
    @settings(
        max_examples=inputs,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(target.strategy(state))
    def one(item: Any) -> None:
        nonlocal tried, crashes
        tried += 1
        try:
            target.run(state, item)
        except Exception as error:  # noqa: BLE001 - anything escaping a parser is a finding
            crashes += 1
            kind = f"{type(error).__name__}: {str(error)[:80]}"
            if kind in kinds or len(kinds) < 20:
                kinds[kind] = kinds.get(kind, 0) + 1
            if len(examples) < keep:
                examples.append(
                    {
                        "error": kind,
                        "input": repr(item)[:400],
                        "traceback": traceback.format_exc(limit=4),
                    }
                )

    started = time.perf_counter()
    one()
    seconds = time.perf_counter() - started
    return {
        "target": target.name,
        "parser": target.parser,
        "inputs": tried,
        "crashes": crashes,
        "crash_kinds": kinds,
        "examples": examples,
        "seconds": round(seconds, 2),
        "inputs_per_s": round(tried / seconds) if seconds else None,
    }
