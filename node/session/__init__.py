"""The session layer: signed ephemeral ECDH, per-direction AES-256-GCM streams, call control.

Sans-I/O like the routing layer: `SessionLayer` takes datagrams 0x02-0x05 with the time and
hands back datagrams and events. Modules:

- `wire`: the KEY_REQ / KEY_RES, MEDIA / SIGNAL and signal-payload codecs;
- `handshake`: transcript, signatures, key checks and ECDH;
- `keys`: HKDF-SHA-256 per-direction keys and nonce salts;
- `replay`: the sliding replay window;
- `stream`: sealing and opening MEDIA / SIGNAL packets, receiver statistics;
- `state`: the call state machine as data (states, transitions, end reasons);
- `messages`: TEXT / RECEIPT frames, retransmission until the receipt, duplicates once;
- `events`: what the layer reports;
- `layer`: `SessionLayer` and `SessionSettings`;
- `vectors`: generates docs/vectors/session.json.
"""

from .events import (
    CallEnded,
    CallProgress,
    IncomingCall,
    MediaReceived,
    MessageDelivered,
    MessageReceived,
    MessagesUnsent,
    MissedCall,
    ReceiverReport,
    SessionOpened,
)
from .layer import SessionLayer, SessionSettings
from .state import CallState, EndReason, Role

__all__ = [
    "CallEnded",
    "CallProgress",
    "CallState",
    "EndReason",
    "IncomingCall",
    "MediaReceived",
    "MessageDelivered",
    "MessageReceived",
    "MessagesUnsent",
    "MissedCall",
    "ReceiverReport",
    "Role",
    "SessionLayer",
    "SessionOpened",
    "SessionSettings",
]
