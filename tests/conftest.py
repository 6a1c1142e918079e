"""Settings for the whole suite.

Hypothesis: no per-example deadline and no too_slow health check, whichever profile is active.
Both are wall-clock checks (200 ms per example by default): on a loaded 2-core machine they fail
tests whose property holds, and performance lives in benchmarks, not in tests. Everything else
comes from the active profile: with CI set, Hypothesis's "ci" profile (derandomized, no
database), so CI replays the examples a `CI=true` fresh-clone check ran."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "kadtalk", parent=settings.default, deadline=None,
    suppress_health_check={*settings.default.suppress_health_check, HealthCheck.too_slow})
settings.load_profile("kadtalk")
