"""A multi-host testbed in Linux network namespaces on one machine (root only); docs/testbed.md.

    with Testbed(delay=CoordinateDelays(seed=1), loss=0.05) as tb:   # or delay=0.05 (one way)
        tb.public("a"); tb.nat("home", kind="filtering"); tb.private("b", nat="home")
        ...

One module per concept:

- topology.py: `Testbed`, `Host`: namespaces, veth links and the core router; running
  processes in hosts; teardown.
- nat.py: the NAT kinds (filtering, full-cone, symmetric) as iptables rules.
- delays.py: delay models (constant, the simulator's coordinates, a matrix) and loss at the core.
- relay.py: the NFQUEUE process in the core namespace that applies the delays.
- probes.py: UDP echo/probe/send/agent processes run inside hosts, and `Agent` to drive one.
- tools.py: running commands, the availability checks, removing namespaces by name prefix.
- cli.py: ``kadtalk testbed run|compare|cleanup``.
- __main__.py: ``python -m kadtalk.experiments.testbed relay|echo|probe|send|agent``, the
  helper processes the testbed starts inside its namespaces.
"""

from .delays import ConstantDelays, CoordinateDelays, MatrixDelays, delay_model
from .nat import NAT_KINDS, Nat
from .probes import Agent
from .tools import (
    PREFIX,
    TestbedError,
    cleanup_stale,
    list_namespaces,
    netfilterqueue_reason,
    unavailable_reason,
)
from .topology import Host, Testbed

__all__ = [
    "NAT_KINDS", "PREFIX", "Agent", "ConstantDelays", "CoordinateDelays", "Host", "MatrixDelays",
    "Nat", "Testbed", "TestbedError", "cleanup_stale", "delay_model", "list_namespaces",
    "netfilterqueue_reason", "unavailable_reason",
]
