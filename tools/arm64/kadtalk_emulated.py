"""pytest plugin for the emulated arm64 run (`-p kadtalk_emulated`): no Hypothesis deadlines.

Under qemu-user every instruction is translated, so a Hypothesis example can take many times
its 200 ms default deadline without anything being wrong; timing under emulation says nothing
about a Raspberry Pi. Tests that set their own deadline keep it."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "kadtalk-emulated", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("kadtalk-emulated")
