"""Relayed calls (issue 13): a public node forwards opaque datagrams between an allocation's
owner and its one permitted peer, in the spirit of TURN (RFC 8656) over the node's one socket.

Modules: `wire` (RELAY 0x08 layouts, docs/protocol.md §21), `addresses` (where a relay never
sends), `server` (allocations, caps, forwarding), `client` (allocations we hold, paths we use),
`layer` (both roles behind the node/layer.py surface), `paths` (a node's relayed calls: relays
held, the allocation offered in a call's punch, path switches), `events`, `settings`, `vectors`
(docs/vectors/relay.json).
"""

from .events import (
    AllocationExpired,
    AllocationFailed,
    AllocationGranted,
    Knocked,
    PermissionGranted,
    PermissionRefused,
    RelayedData,
    RelayEvent,
    RelayLost,
    RelayPath,
)
from .layer import DROPS, RelayLayer
from .settings import RelaySettings
from .wire import RELAY

__all__ = [
    "AllocationExpired", "AllocationFailed", "AllocationGranted", "DROPS", "Knocked",
    "PermissionGranted", "PermissionRefused", "RELAY", "RelayEvent", "RelayLayer", "RelayLost",
    "RelayPath", "RelaySettings", "RelayedData",
]
