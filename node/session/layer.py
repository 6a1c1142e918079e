"""The session layer, sans-I/O: key exchange, encrypted stream and call control for many calls.

Datagrams 0x02-0x05 and 0x07 come in with the time; datagrams and events come out; `get_timer()` /
`handle_timer(now)` drive retransmission, keepalives, receiver reports and timeouts. Sessions
are told apart by peer address (and, on a clash, by which one's key authenticates a packet).

Every input that is malformed, forged, stale, replayed or unexpected is dropped and counted in
`stats` by reason; it never raises and never changes a session's state. Floods of KEY_REQ are
bounded by a per-source and a global token bucket (a token is taken after the cheap checks,
just before the signature check; a solicited KEY_RES spends its own call's budget) and by a
bounded table of pending handshakes that evicts its oldest entries (per caller ID, per source
host, in all) rather than refusing a newcomer.

Retry cookies (cookie.py, issue 17): a KEY_REQ from an address that has not proved itself gets
only a 34-byte COOKIE_REPLY, before any key is loaded or signature checked, when its KEY_RES
would exceed 3x the request or when the node is under load (cookie-less KEY_REQs arriving
faster than `global_rate`). The caller resends at once from the same address with the cookie
(COOKIE_RETRY); a valid cookie proves the address, and such KEY_REQs are admitted from budgets
of their own (`cookie_*`, and `contact_*` for peers `trusted` says are the user's contacts),
which a flood from forged addresses cannot touch.

Clocks: `now` is the driver's (monotonic) time; KEY timestamps are wall-clock milliseconds,
`now + clock_offset`, which the driver supplies (0 in the simulator, where time is shared).
Randomness: ephemeral keys come from `ephemeral()` (OpenSSL's generator by default; the test
vectors inject fixed keys); `rng` is the node's injected Random, kept for randomised timers
(none are randomised today, so runs with the same inputs are reproducible).
"""

from __future__ import annotations

import collections
import ipaddress
import os
from dataclasses import dataclass
from random import Random
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric import ec

from ..ratelimit import FloodGuard, TokenBucket
from .cookie import CookieJar
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
    SessionStats,
)
from .handshake import (
    check_signature,
    ephemeral_spki,
    id_of,
    load_ephemeral,
    load_identity,
    make_key_req,
    make_key_res,
    max_signature_size,
    req_signed_data,
    res_signed_data,
    session_keys,
    shared_secret,
    verify_cost,
)
from .messages import KINDS as MESSAGE_KINDS
from .messages import TEXT, Inbox, Outbox, decode_receipt, decode_text, encode_receipt, encode_text
from .presence import (
    CONTACT_REPLY,
    CONTACT_REQ,
    PRESENCE,
    RELIABLE,
    ContactReplied,
    ContactRequested,
    PresenceReceived,
    decode_presence,
    decode_reply,
    decode_request,
    encode_presence,
)
from .presence import frame_id as frame_id_of
from .state import (
    CARRIES_MESSAGES,
    ESTABLISHED,
    TIMEOUTS,
    CallState,
    EndReason,
    Role,
    check_transition,
)
from .stream import Exhausted, ReceiveStream, SendStream, stats_of
from .wire import (
    ANSWER,
    BUSY,
    COOKIE,
    COOKIE_REPLY,
    COOKIE_REPLY_SIZE,
    HANGUP,
    HANGUP_DECLINED,
    HANGUP_NO_ANSWER,
    HANGUP_NORMAL,
    HEADER_SIZE,
    KEEPALIVE,
    MAX_PACKET,
    KEY_REQ,
    KEY_RES,
    MEDIA,
    REPORT,
    RING,
    SIGNAL,
    Drop,
    decode_cookie,
    decode_key,
    decode_report,
    decode_signal,
    encode_cookie_reply,
    encode_cookie_retry,
    encode_report,
    encode_signal,
    request_tag,
)

S = CallState
MAX_PAYLOAD = MAX_PACKET - HEADER_SIZE  # 1,487 bytes: a MEDIA / SIGNAL packet fits 1,500
AMPLIFICATION = 3  # an answer to an address that has not proved itself: at most 3x the request
MAX_PATH_COOKIES = 4  # a caller's cookies from other paths of one call (relays, reflexive)
_REMOTE_END = {HANGUP_DECLINED: EndReason.DECLINED, HANGUP_NO_ANSWER: EndReason.NO_ANSWER}
SENT_HISTORY = 256  # send times kept per session for RTT samples (> 1 report_interval of MEDIA)
RTT_SAMPLES = 3  # the RTT is the median of the latest samples (one stray sample cannot move it)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Timeouts (seconds), limits and rates of the session layer."""

    dial_timeout: float = 20.0  # dialling: the lookup must find the peer by then
    key_retry: float = 0.5  # first KEY_REQ retransmission; doubles each time
    key_tries: int = 5  # KEY_REQ sends before giving up (unreachable / auth failure)
    # callee: KEY_RES sent (or sent again), waiting for the first RING: as long as a caller rings
    # without hearing us (peer_timeout), plus a round trip up to a ring_interval, so that every
    # RING finds the handshake (at 5 s, five RINGs lost in a row left a caller ringing at one
    # end only: the testbed's relayed calls at 30 % loss, "callee_never_rang", session 13)
    handshake_timeout: float = 11.0
    ring_interval: float = 1.0  # the caller repeats RING until answered
    no_answer_timeout: float = 45.0  # ringing without an answer
    keepalive_interval: float = 2.0  # KEEPALIVE when nothing else was sent for this long
    peer_timeout: float = 10.0  # ringing / talking with nothing authentic received: vanished
    report_interval: float = 1.0  # receiver reports while talking ...
    report_grace: float = 0.1  # ... each sent on the first packet from the peer once due (its
    #                            highest sequence is then fresh: an RTT sample), else this late
    answer_retry: float = 0.2  # callee: ANSWER again until the caller acknowledges; doubles ...
    answer_tries: int = 6  # ... ANSWER sends in all (0, 0.2, 0.6, 1.4, 3.0, 6.2 s with defaults)
    freshness_window: float = 60.0  # KEY timestamps must be within ± this of our clock
    replay_window: int = 1024  # packets
    media_interval: float = 0.02  # nominal MEDIA spacing, for the jitter estimate
    max_calls: int = 1  # ringing or talking calls at once; a further caller gets BUSY
    max_pending: int = 32  # callee handshakes waiting for their first RING (oldest evicted)
    max_pending_per_source: int = 2  # ... from one source host (its oldest evicted)
    max_pending_per_caller: int = 2  # ... from one caller ID (its oldest evicted)
    max_sessions: int = 256
    source_rate: float = 2.0  # KEY messages per second per source host ...
    source_burst: float = 8.0  # ... with this burst
    global_rate: float = 50.0  # KEY messages per second from everyone together ...
    global_burst: float = 100.0
    max_sources: int = 1024  # source hosts whose token buckets are remembered
    key_res_rate: float = 2.0  # KEY_RES signature checks per second per call awaiting one ...
    key_res_burst: float = 4.0  # ... with this burst (a budget apart from KEY_REQ's)
    # accepted KEY_REQ ephemeral keys remembered to reject replays; when full of live entries a
    # new KEY_REQ is refused (never forgotten early). Enough for global_rate × 2 ×
    # freshness_window + global_burst accepted KEY_REQs, so the defaults never refuse.
    max_seen: int = 8192
    terminal_repeats: int = 3  # copies of HANGUP / BUSY sent (the keys are wiped right after)
    # retry cookies (issue 17): secrets rotate every cookie_rotation s (two live); under load
    # (cookie-less KEY_REQs past the cheap checks arriving faster than global_rate, burst
    # global_burst, until less than load_threshold of that burst is left) every cookie-less
    # KEY_REQ gets only a COOKIE_REPLY
    cookie_rotation: float = 120.0
    load_threshold: float = 0.5
    cookie_rate: float = 50.0  # KEY_REQs with a valid cookie: a budget of their own ...
    cookie_burst: float = 100.0  # ... (per source host: source_rate, source_burst)
    contact_rate: float = 10.0  # ... and one for trusted callers (known contacts first)
    contact_burst: float = 20.0
    # the daemon's contacts: trusted(peer_id) -> True puts a caller whose cookie proved its
    # address in the contact budget (None: nobody is)
    trusted: Callable[[int], bool] | None = None
    # messages (messages.py): a TEXT goes again after message_retry s, the interval doubling up
    # to message_retry_max, until its RECEIPT; at most max_unacked wait per session; a session
    # opened for messages ends after chat_idle_timeout s without a new one either way
    message_retry: float = 0.5
    message_retry_max: float = 4.0
    max_unacked: int = 256
    inbox_size: int = 1024  # message ids a session remembers to deliver each once
    chat_idle_timeout: float = 60.0
    # new TEXTs delivered per second on one session, with this burst; one past it is dropped
    # without a RECEIPT (text_rate_limited), so its sender sends it again later
    text_rate: float = 5.0
    text_burst: float = 50.0
    # ... and on all sessions with peers `trusted` does not name (strangers; everyone when it is
    # None) together: many strangers' sessions cannot multiply the per-session budget
    stranger_text_rate: float = 20.0
    stranger_text_burst: float = 200.0

    @property
    def key_exchange_timeout(self) -> float:
        """A caller's key exchange: every KEY_REQ try, the interval doubling from key_retry."""
        return self.key_retry * (2**self.key_tries - 1)

    def __post_init__(self) -> None:
        if self.replay_window < 1024:
            raise ValueError("replay_window must be at least 1024")
        if (self.key_tries < 1 or self.max_calls < 0 or self.max_pending < 1
                or self.max_pending_per_source < 1 or self.max_pending_per_caller < 1):
            raise ValueError("key_tries and the max_pending limits must be positive, "
                             "max_calls >= 0")
        if self.terminal_repeats < 1 or self.answer_tries < 1:
            raise ValueError("terminal_repeats and answer_tries must be at least 1")
        if (self.message_retry <= 0 or self.message_retry_max < self.message_retry
                or self.max_unacked < 1 or self.inbox_size < 1 or self.chat_idle_timeout <= 0
                or min(self.text_rate, self.stranger_text_rate) <= 0
                or min(self.text_burst, self.stranger_text_burst) < 1):
            raise ValueError("message_retry, chat_idle_timeout, (stranger_)text_rate must be "
                             "positive, message_retry_max >= message_retry, max_unacked, "
                             "inbox_size, (stranger_)text_burst >= 1")
        if self.handshake_timeout < self.peer_timeout:
            raise ValueError("handshake_timeout must be at least peer_timeout (a callee waits "
                             "for the RING as long as a caller rings unheard)")
        if self.answer_retry <= 0 or self.report_grace < 0:
            raise ValueError("answer_retry must be positive, report_grace >= 0")
        if (self.cookie_rotation <= 0 or self.load_threshold < 0
                or min(self.cookie_rate, self.contact_rate) <= 0
                or min(self.cookie_burst, self.contact_burst) < 1):
            raise ValueError("cookie_rotation and the cookie / contact rates must be positive, "
                             "their bursts at least 1, load_threshold >= 0")


DEFAULT_SETTINGS = SessionSettings()


class Session:
    """One call's state. Fields that do not apply to a role or state stay None."""

    __slots__ = (
        "id", "role", "peer_id", "addr", "state", "announced", "started", "entered",
        "eph_private", "eph_spki", "ts_req", "key_req", "key_res", "caller_eph", "tries",
        "retx_at", "tx", "rx", "last_sent", "last_recv", "next_ring", "next_report",
        "auth_failures", "reason", "key_res_budget", "answers", "tag", "cookie", "retry",
        "cookie_resends", "validated", "answer_at", "answer_sends", "sent", "rtt_samples",
        "media_sent", "chat", "outbox", "inbox", "peer_presence", "path_cookies",
    )

    def __init__(self, session_id: int, role: Role, peer_id: bytes, now: float):
        self.id = session_id
        self.role = role
        self.peer_id = peer_id
        self.addr: Any = None
        self.state = S.IDLE
        self.announced = role is Role.CALLER
        self.started = now
        self.entered = now  # when the current state was entered (its timeouts count from it)
        self.eph_private: ec.EllipticCurvePrivateKey | None = None
        self.eph_spki: bytes | None = None
        self.ts_req = 0
        self.key_req: bytes | None = None
        self.key_res: bytes | None = None  # caller: the KEY_RES received; callee: the one sent
        self.caller_eph: bytes | None = None
        self.tries = 0
        self.retx_at: float | None = None
        self.tx: SendStream | None = None
        self.rx: ReceiveStream | None = None
        self.last_sent = now
        self.last_recv = now
        self.next_ring: float | None = None
        self.next_report: float | None = None
        self.auth_failures = 0  # advisory: KEY_RES from the address that failed (spoofable)
        self.reason: EndReason | None = None
        self.key_res_budget: TokenBucket | None = None  # caller in key exchange
        self.answers = 0  # callee: copies of KEY_RES sent for duplicate KEY_REQs
        self.tag: bytes | None = None  # caller: request tag of key_req (COOKIE_REPLY matching)
        self.cookie: bytes | None = None  # caller: the cookie the callee gave us
        self.retry: bytes | None = None  # caller: COOKIE_RETRY sent instead of key_req
        self.cookie_resends = 0  # caller: retries sent at once for a new cookie
        self.path_cookies: dict[Any, tuple[bytes, int]] | None = None  # caller: other paths'
        self.validated = False  # callee: the caller's address proved itself (cookie or RING)
        self.answer_at: float | None = None  # callee: next ANSWER retransmission (None: acked)
        self.answer_sends = 0  # callee: ANSWERs sent by the retransmission rule
        self.sent: collections.deque | None = None  # (seq, time) of our latest packets (RTT)
        self.rtt_samples: collections.deque | None = None  # the latest round-trip samples
        self.media_sent: float | None = None  # when we last sent MEDIA
        self.chat = False  # caller: opened for messages (no RING, never announced)
        self.outbox: Outbox | None = None  # our messages awaiting their receipts
        self.inbox: Inbox | None = None  # ids of the peer's messages delivered
        self.peer_presence: int | None = None  # the peer's last PRESENCE status here

    @property
    def peer_int(self) -> int:
        return int.from_bytes(self.peer_id, "big")

    def request(self, addr: Any) -> bytes | None:
        """Caller: the KEY_REQ to send to `addr`, with a cookie only from `addr` itself (a
        cookie binds to its path: one from a relay or a peer-reflexive candidate must not
        reach the call's own path, whose callee would drop it as bad_cookie)."""
        if addr == self.addr:
            return self.retry or self.key_req
        cookie = self.path_cookies.get(addr) if self.path_cookies else None
        return self.key_req if cookie is None else encode_cookie_retry(cookie[0], self.key_req)


def _new_ephemeral() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class SessionLayer:
    def __init__(
        self,
        identity: Any,
        rng: Random,
        settings: SessionSettings | None = None,
        clock_offset: float = 0.0,
        ephemeral: Callable[[], ec.EllipticCurvePrivateKey] = _new_ephemeral,
        peer_seen: Callable[[int, Any, float], Any] | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ):
        self.identity = identity
        self.own_id: bytes = identity.node_id
        self.rng = rng
        self.settings = settings or DEFAULT_SETTINGS
        self.clock_offset = clock_offset
        self.busy = False  # do not disturb: every caller gets BUSY
        self.presence: int | None = None  # our status for trusted peers (None: tell nobody)
        self.stats: collections.Counter[str] = collections.Counter()  # drop reasons
        self._ephemeral = ephemeral
        self._peer_seen = peer_seen
        self._sessions: dict[int, Session] = {}
        self._keyed: dict[Any, list[Session]] = {}  # addr -> sessions with stream keys
        self._awaiting: dict[Any, list[Session]] = {}  # addr -> callers waiting for KEY_RES
        self._by_eph: dict[bytes, Session] = {}  # caller ephemeral SPKI -> live callee session
        self._seen: dict[bytes, float] = {}  # accepted caller ephemeral SPKI -> forget after
        self._flood: FloodGuard | None = None  # KEY messages: per source host and global
        self._admit: dict[str, FloodGuard] = {}  # "cookie" / "contact": proven addresses
        self._arrivals: TokenBucket | None = None  # cookie-less KEY_REQs: the load meter
        self._stranger_texts: TokenBucket | None = None  # new TEXTs from strangers, together
        self._random_bytes = random_bytes
        self._jar: CookieJar | None = None
        self._res_bound: int | None = None  # the largest KEY_RES we can send
        self._deadline: float | None | bool = False  # get_timer's answer; False: work it out
        self._untouched = False  # this datagram changed no session (a cookie-only answer)
        self._pending: dict[int, Session] = {}  # callee sessions in key exchange, oldest first
        self._outbox: list[tuple[bytes, Any]] = []
        self._events: collections.deque = collections.deque()
        self._next_id = 0

    # -- sans-I/O surface -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self._untouched = False
        try:
            kind = data[0] if data else -1
            if kind == KEY_REQ:
                self._on_key_req(data, addr, now)
            elif kind == KEY_RES:
                self._on_key_res(data, addr, now)
            elif kind == MEDIA or kind == SIGNAL:
                self._on_packet(data, addr, now)
            elif kind == COOKIE:
                self._on_cookie(data, addr, now)
            else:
                raise Drop("unknown_type" if data else "empty")
        except Drop as drop:
            self.stats[drop.reason] += 1  # bad input changes no session (nor its timers)
            return
        if not self._untouched:
            self._deadline = False

    def handle_timer(self, now: float) -> None:
        self._deadline = False
        for session in list(self._sessions.values()):
            if session.state is not S.ENDED:
                self._guard(session, now, self._tick, session, now)

    def get_timer(self) -> float | None:
        """The earliest deadline of any session; remembered until something may have changed
        one (the driver asks after every datagram: under a flood most change nothing)."""
        if self._deadline is not False:
            return self._deadline
        earliest = None
        for session in self._sessions.values():
            deadline = self._next_deadline(session)
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        self._deadline = earliest
        return earliest

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out = self._outbox
        if out:
            self._outbox = []
        return out

    def next_event(self) -> Any:
        return self._events.popleft() if self._events else None

    # -- commands -------------------------------------------------------------------------------

    def call(self, peer_id: int, now: float, addr: Any = None, chat: bool = False) -> int:
        """Start a call; return its session id. Without `addr` it waits in dialling for
        `peer_found` (the Node runs the lookup). `chat`: a session for messages only: no RING,
        never announced (no CallProgress / CallEnded); open once the keys are agreed."""
        self._deadline = False
        peer = peer_id.to_bytes(20, "big")
        if peer == self.own_id:
            raise ValueError("cannot call our own ID")
        session = Session(self._next_id, Role.CALLER, peer, now)
        session.chat = chat
        session.announced = not chat
        self._next_id += 1
        self._sessions[session.id] = session
        if addr is None:
            self._set_state(session, S.DIALLING, now)
        else:
            self._start_key_exchange(session, addr, now)
        return session.id

    def peer_found(self, session_id: int, addr: Any, now: float) -> None:
        """The dialling lookup ended: the peer's address, or None when it was not found."""
        self._deadline = False
        session = self._sessions.get(session_id)
        if session is None or session.state is not S.DIALLING:
            return
        if addr is None:
            self._end(session, EndReason.UNREACHABLE, now)
        else:
            self._start_key_exchange(session, addr, now)

    def path_opened(self, addr: Any, now: float) -> None:
        """A NAT hole towards `addr` has just opened (its PUNCH reached us): a caller waiting
        there for KEY_RES sends its second try now instead of at the retransmission timer
        (ICE's triggered check). Only as the second try, so a forged PUNCH buys one datagram
        per call at most and never shortens the retransmission schedule."""
        for session in self._awaiting.get(addr, ()):
            if session.tries == 1 and session.retx_at is not None:
                self._outbox.append((session.request(addr), addr))
                session.tries = 2
                session.retx_at = now + self.settings.key_retry * 2
                if session.tries >= self.settings.key_tries:
                    session.retx_at = None

    def move(self, session_id: int, addr: Any, data: bytes, now: float) -> bool:
        """`data` reached us from `addr`, another path of call `session_id` (a relay, or a
        direct address found later: ICE's switch). Only if it authenticates for that call (a
        KEY_RES to its KEY_REQ; a MEDIA / SIGNAL packet under its keys) does the call move to
        `addr`, and the datagram is then taken as usual; else nothing changes (`move_refused`).
        A COOKIE_REPLY to its KEY_REQ over that path is answered over it, the call staying put."""
        session = self._sessions.get(session_id)
        if session is None or session.state is S.ENDED or addr == session.addr:
            return False
        if data[:1] == bytes((COOKIE,)):
            if data[1:2] == bytes((COOKIE_REPLY,)) and data[2:18] == session.tag:
                self._path_cookie(session, data, addr)
            else:  # another call's cookie, or an incoming call's COOKIE_RETRY: not this path's
                self.receive_datagram(data, addr, now)
            return False
        index = self._awaiting if session.rx is None else self._keyed
        old, received = session.addr, session.rx.packets if session.rx is not None else 0
        position, failures = index[old].index(session), session.auth_failures
        _remove(index, old, session)
        session.addr = addr
        index.setdefault(addr, []).insert(0, session)
        self.receive_datagram(data, addr, now)  # the caller's KEY_RES or the packet, if authentic
        moved = (session in self._keyed.get(addr, ()) if index is self._awaiting
                 else session.rx is not None and session.rx.packets > received)
        if not moved and session.state is not S.ENDED:  # not authentic: back where it was
            _remove(index, addr, session)
            session.addr = old
            session.auth_failures = failures  # a forgery over another path is not this path's
            index.setdefault(old, []).insert(position, session)
        if not moved and data[:1] != bytes((COOKIE,)):
            self.stats["move_refused"] += 1
        self._deadline = False
        return moved

    def answer(self, now: float, session_id: int | None = None) -> bool:
        """Answer a ringing incoming call (the only one when `session_id` is None)."""
        self._deadline = False
        session = self._pick(session_id, lambda s: s.role is Role.CALLEE and s.state is S.RINGING)
        if session is None:
            return False
        self._guard(session, now, self._answer, session, now)
        return True

    def decline(self, now: float, session_id: int | None = None) -> bool:
        self._deadline = False
        session = self._pick(session_id, lambda s: s.role is Role.CALLEE and s.state is S.RINGING)
        if session is None:
            return False
        self._terminate(session, HANGUP_DECLINED, EndReason.DECLINED, now)
        return True

    def hang_up(self, now: float, session_id: int | None = None) -> bool:
        """End a call in any state (the only live one when `session_id` is None)."""
        self._deadline = False
        session = self._pick(session_id, lambda s: s.state is not S.ENDED)
        if session is None:
            return False
        self._terminate(session, HANGUP_NORMAL, EndReason.HUNG_UP, now)
        return True

    def send_media(self, session_id: int, payload: bytes, now: float) -> int | None:
        """Encrypt and queue one MEDIA packet; its sequence number, or None if not talking."""
        self._deadline = False
        session = self._sessions.get(session_id)
        if session is None or session.state is not S.TALKING:
            return None
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"a MEDIA payload is at most {MAX_PAYLOAD} bytes")
        seq = session.tx.seq
        return seq if self._guard(session, now, self._send, session, MEDIA, payload, now) else None

    def send_message(
        self, peer_id: int, message_id: bytes, seq: int, sent_ms: int, text: str, now: float
    ) -> int | None:
        """Queue a text message for `peer_id` on a session with it: a call's, one open for
        messages, or one of ours being set up (it goes once the keys are agreed); the session's
        id. None when there is none: open one (`Node.send_message` does, with `call(chat=True)`)
        and send again. A message id queued already is not queued twice. ValueError for a text
        the frame cannot carry (messages.encode_text) or a full outbox (messages.Full)."""
        return self.send_frame(peer_id, message_id, encode_text(message_id, seq, sent_ms, text),
                               now)

    def send_frame(self, peer_id: int, frame_id: bytes, frame: bytes, now: float) -> int | None:
        """Queue a frame a RECEIPT acknowledges (a TEXT, CONTACT_REQ or CONTACT_REPLY, made by
        messages.py / presence.py; `frame_id` is the id in it) as `send_message` does."""
        if frame[:1] not in (bytes((TEXT,)), bytes((CONTACT_REQ,)), bytes((CONTACT_REPLY,))) \
                or frame_id_of(frame) != frame_id:
            raise ValueError("send_frame takes a TEXT, CONTACT_REQ or CONTACT_REPLY with its id")
        message_id = frame_id
        peer = peer_id.to_bytes(20, "big")
        session = self._carrier(peer)
        if session is None:
            return None
        holder = next((s for s in self._sessions.values() if s.peer_id == peer
                       and s.outbox is not None and message_id in s.outbox), None)
        if holder is not None and (holder is session or holder.state in CARRIES_MESSAGES):
            return holder.id
        self._outbox_of(session).add(message_id, frame)  # messages.Full: it stays where it is
        if holder is not None:
            holder.outbox.discard(message_id)  # it waited for its keys there: taken over
        self._deadline = False
        if session.state in CARRIES_MESSAGES:
            if session.state is S.OPEN:
                session.entered = now  # a new message: not idle
            self._guard(session, now, self._flush, session, now)
        return session.id

    def confirm(self, session_id: int, message_id: bytes, now: float) -> bool:
        """The owner saved the message MessageReceived(`session_id`, `message_id`) reported (or
        refuses it for good: blocked, a duplicate): its RECEIPT goes now. The same for a contact
        request or reply (ContactRequested's `request_id`, ContactReplied's `reply_id`). Until then none goes,
        so a message the owner could not write is sent again by its sender, on this session or
        a later one. False when nothing waits for it here (confirmed already, or the session
        ended: its sender sends it again on the next one, and the owner confirms it then)."""
        session = self._sessions.get(session_id)
        if session is None or session.inbox is None or not session.inbox.confirm(message_id):
            return False
        if session.state not in CARRIES_MESSAGES:
            return False
        self._deadline = False
        return bool(self._guard(session, now, self._send, session, SIGNAL,
                                encode_receipt(message_id), now))

    def _outbox_of(self, session: Session) -> Outbox:
        if session.outbox is None:
            settings = self.settings
            session.outbox = Outbox(settings.message_retry, settings.message_retry_max,
                                    settings.max_unacked)
        return session.outbox

    def _carrier(self, peer: bytes) -> Session | None:
        """The session a message to `peer` goes on: one that carries messages now (a call's
        first), else one of ours being set up. A callee's handshake is no carrier: a replayed
        KEY_REQ makes one that never opens."""
        best, rank = None, 0
        for s in self._sessions.values():
            if s.peer_id != peer or s.state is S.ENDED:
                continue
            r = (3 if s.state in ESTABLISHED else 2 if s.state is S.OPEN
                 else 1 if s.role is Role.CALLER else 0)
            if r > rank:
                best, rank = s, r
        return best

    def _flush(self, session: Session, now: float) -> bool:
        """Send what the session's outbox has due (new messages, retransmissions). Until the
        peer's first stream packet, no less often than a RING: a callee that has not heard our
        first TEXT forgets the handshake after handshake_timeout."""
        cap = self.settings.ring_interval if not session.rx.packets else None
        for frame, again in session.outbox.due(now, cap):
            self._send(session, SIGNAL, frame, now)
            if again:
                self.stats["message_resent"] += 1
        return True

    def set_busy(self, busy: bool) -> None:
        self.busy = busy

    def set_presence(self, status: int | None, now: float) -> None:
        """Our status (presence.py's ONLINE ... OFFLINE; None: tell nobody). It goes at once on
        every session that carries messages with a peer `trusted` names, and from then on when
        such a session opens and in place of its KEEPALIVEs (§15c)."""
        self.presence = status
        if status is None:
            return
        for session in list(self._sessions.values()):
            if session.state in CARRIES_MESSAGES and self._tells(session):
                self._guard(session, now, self._send, session, SIGNAL, encode_presence(status),
                            now)

    def _tells(self, session: Session) -> bool:
        """Does this session's peer get our PRESENCE? Only the owner's contacts do."""
        trusted = self.settings.trusted
        return (self.presence is not None and trusted is not None
                and trusted(session.peer_int))

    # -- queries --------------------------------------------------------------------------------

    def state_of(self, session_id: int) -> CallState | None:
        session = self._sessions.get(session_id)
        return None if session is None else session.state

    def rtt_of(self, session_id: int) -> float | None:
        """The round-trip time (s) from the peer's receiver reports: the median of the latest
        samples; None before the first (no report yet, or we sent nothing to measure by)."""
        session = self._sessions.get(session_id)
        samples = None if session is None else session.rtt_samples
        if not samples:
            return None
        return sorted(samples)[len(samples) // 2]

    def session_stats(self, session_id: int) -> SessionStats | None:
        session = self._sessions.get(session_id)
        return None if session is None else stats_of(session.tx, session.rx)

    @property
    def sessions(self) -> dict[int, Session]:
        return self._sessions

    @property
    def pending_handshakes(self) -> int:
        """Callee handshakes waiting for the caller's first authenticated packet."""
        return len(self._pending)

    def snapshot(self) -> tuple:
        """Everything that is session state (not counters): tests compare it around bad input."""
        return (
            tuple(
                (
                    s.id, s.role, s.peer_id, s.addr, s.state, s.announced, s.entered, s.ts_req,
                    s.key_req, s.key_res, s.tries, s.retx_at, s.last_sent, s.last_recv,
                    s.next_ring, s.next_report, s.eph_private is None, s.cookie, s.validated,
                    s.answer_at, s.answer_sends, tuple(s.rtt_samples or ()),
                    tuple(s.outbox.ids()) if s.outbox else (), len(s.inbox or ()),
                    None if s.tx is None else (bytes(s.tx.key), s.tx.seq),
                    None if s.rx is None else (bytes(s.rx.key), s.rx.window.highest,
                                               s.rx.window.bits, s.rx.packets),
                )
                for s in self._sessions.values()
            ),
            tuple((a, tuple(x.id for x in v)) for a, v in self._keyed.items()),
            tuple((a, tuple(x.id for x in v)) for a, v in self._awaiting.items()),
            tuple((k, v.id) for k, v in self._by_eph.items()),
            tuple(self._seen),
            len(self._outbox),
            len(self._events),
            tuple(self._pending),
        )

    # -- key exchange ---------------------------------------------------------------------------

    def _wall_ms(self, now: float) -> int:
        return int(round((now + self.clock_offset) * 1000))

    def _fresh(self, timestamp: int, now: float) -> bool:
        return abs(self._wall_ms(now) - timestamp) <= self.settings.freshness_window * 1000

    def _rate_limit(self, addr: Any, now: float, cost: float = 1.0, budget: str = "") -> None:
        """Take a token from the source host's and the global bucket of `budget` ("" for
        cookie-less KEY_REQs, "cookie" / "contact" for proven addresses), else Drop with the
        reason (`rate_limited_source` or `rate_limited`, prefixed by the budget's name)."""
        settings = self.settings
        guard = self._flood if not budget else self._admit.get(budget)
        if guard is None:
            rate, burst = {
                "": (settings.global_rate, settings.global_burst),
                "cookie": (settings.cookie_rate, settings.cookie_burst),
                "contact": (settings.contact_rate, settings.contact_burst),
            }[budget]
            guard = FloodGuard(rate, burst, settings.source_rate, settings.source_burst, now,
                               settings.max_sources, always=True)
            if budget:
                self._admit[budget] = guard
            else:
                self._flood = guard
        reason = guard.check(_host(addr), now, cost)
        if reason is not None:
            raise Drop(f"{budget}_{reason}" if budget else reason)

    def _admit_proven(self, caller_id: bytes, addr: Any, now: float, cost: float) -> None:
        """Charge a cookie-proven KEY_REQ's signature check: a contact's ID tries the contact
        budget first, then (like everyone) the cookie budget, which caps the checks. The ID's
        SPKI is public, so anyone can drain the contact budget with bad signatures; falling
        through keeps a contact never worse off than a stranger (issue 17, contact drain)."""
        trusted = self.settings.trusted
        if trusted is not None and trusted(int.from_bytes(caller_id, "big")):
            try:
                self._rate_limit(addr, now, cost, "contact")
                return
            except Drop:
                self.stats["contact_fell_through"] += 1
        self._rate_limit(addr, now, cost, "cookie")

    # -- retry cookies --------------------------------------------------------------------------

    def _cookie_jar(self) -> CookieJar:
        if self._jar is None:
            self._jar = CookieJar(self.settings.cookie_rotation, self._random_bytes)
        return self._jar

    def _under_load(self, now: float) -> bool:
        """Meter a cookie-less KEY_REQ: True when they arrive faster than `global_rate` for
        long enough to use up `load_threshold` of `global_burst` (each one takes a token,
        answered or not, so a steady flood keeps the node under load)."""
        settings = self.settings
        meter = self._arrivals
        if meter is None:
            meter = self._arrivals = TokenBucket(settings.global_rate, settings.global_burst, now)
        loaded = meter.level(now) < settings.global_burst * settings.load_threshold
        meter.take(now)
        return loaded

    def _key_res_bound(self) -> int:
        """The largest KEY_RES we send: type, ephemeral SPKI, our SPKI, timestamp, signature."""
        if self._res_bound is None:
            der = self.identity.public_der
            self._res_bound = 1 + 91 + len(der) + 8 + max_signature_size(load_identity(der))
        return self._res_bound

    def _send_cookie(self, key_req: bytes, size: int, addr: Any, now: float) -> None:
        """Answer a KEY_REQ of `size` bytes with a COOKIE_REPLY (never larger than it)."""
        if size < COOKIE_REPLY_SIZE:
            raise Drop("truncated")
        tag = request_tag(key_req)
        self._outbox.append((encode_cookie_reply(tag, self._cookie_jar().mint(addr, tag, now)),
                             addr))
        self.stats["cookie_sent"] += 1
        self._untouched = True  # no session changed; a live one's repeat is marked again below

    def _on_cookie(self, data: bytes, addr: Any, now: float) -> None:
        msg = decode_cookie(data)
        if msg.op != COOKIE_REPLY:
            tag = request_tag(msg.key_req)
            if not self._cookie_jar().valid(addr, tag, msg.cookie, now):
                raise Drop("bad_cookie")  # forged, from another address, or expired
            self._on_key_req(msg.key_req, addr, now, len(data), proven=True)
            return
        # a caller: a COOKIE_REPLY for a KEY_REQ of ours sent to that address
        for session in self._awaiting.get(addr, ()):
            if session.tag == msg.tag:
                break
        else:
            raise Drop("unsolicited_cookie")
        if msg.cookie == session.cookie:
            raise Drop("duplicate_cookie")  # our retry is on its way or lost: the timer resends
        if session.cookie_resends >= self.settings.key_tries:
            raise Drop("cookie_resends")  # a peer that keeps changing its cookie: timer only
        session.cookie = msg.cookie
        session.retry = encode_cookie_retry(msg.cookie, session.key_req)
        session.cookie_resends += 1
        self._outbox.append((session.retry, addr))  # at once: the KEY_RES is a round trip away

    def _path_cookie(self, session: Session, data: bytes, addr: Any) -> None:
        """A COOKIE_REPLY to our KEY_REQ over another path of the call (a relay, a
        peer-reflexive candidate): kept for that path only (`Session.request`) and answered
        there; each path has its own `key_tries` cookies, so one cannot use up another's."""
        try:
            msg = decode_cookie(data)
        except Drop as bad:
            self.stats[bad.reason] += 1
            return
        cookies = session.path_cookies or {}
        old = cookies.get(addr)
        if msg.op != COOKIE_REPLY or session.rx is not None or msg.tag != session.tag:
            drop = "unsolicited_cookie"
        elif old is not None and (msg.cookie == old[0] or old[1] >= self.settings.key_tries):
            drop = "duplicate_cookie" if msg.cookie == old[0] else "cookie_resends"
        elif old is None and len(cookies) >= MAX_PATH_COOKIES:
            drop = "cookie_paths"
        else:
            cookies[addr] = (msg.cookie, 1 if old is None else old[1] + 1)
            session.path_cookies = cookies
            self._outbox.append((session.request(addr), addr))  # at once, as on the own path
            return
        self.stats[drop] += 1

    def _start_key_exchange(self, session: Session, addr: Any, now: float) -> None:
        private = self._ephemeral()
        session.addr = addr
        session.eph_private = private
        session.eph_spki = ephemeral_spki(private.public_key())
        session.ts_req = self._wall_ms(now)
        session.key_req = make_key_req(
            self.identity.sign, self.identity.public_der, self.own_id, session.peer_id,
            session.eph_spki, session.ts_req,
        )
        session.tag = request_tag(session.key_req)
        session.tries = 1
        session.retx_at = now + self.settings.key_retry if self.settings.key_tries > 1 else None
        session.key_res_budget = TokenBucket(
            self.settings.key_res_rate, self.settings.key_res_burst, now
        )
        self._awaiting.setdefault(addr, []).append(session)
        self._set_state(session, S.KEY_EXCHANGE, now)
        self._outbox.append((session.key_req, addr))

    def _on_key_req(
        self, data: bytes, addr: Any, now: float, size: int = 0, proven: bool = False
    ) -> None:
        """A KEY_REQ, bare or (`proven`) inside a COOKIE_RETRY whose cookie was valid for
        `addr`; `size` is the datagram's length (the 3x rule's measure)."""
        size = size or len(data)
        msg = decode_key(data)
        live = self._by_eph.get(msg.ephemeral)
        if live is not None:
            if data == live.key_req and addr == live.addr:
                self.stats["duplicate_key_req"] += 1
                live.answers += 1
                if live.answers >= self.settings.key_tries:
                    return  # more copies than a caller sends: someone replays it; stay quiet
                live.validated = live.validated or proven
                if live.validated or len(live.key_res) <= AMPLIFICATION * size:
                    self._outbox.append((live.key_res, addr))  # answered again, idempotently
                else:
                    self._send_cookie(data, size, addr, now)  # the big KEY_RES only once proven
                if live.state is S.KEY_EXCHANGE:  # our KEY_RES was lost: wait for RING anew
                    live.entered = now
                    self._untouched = False  # its timeout moved
                return
            raise Drop("replayed_key_req")
        self._forget_seen(now)
        if msg.ephemeral in self._seen:
            raise Drop("replayed_key_req")
        if len(self._seen) >= self.settings.max_seen:
            raise Drop("replay_memory_full")  # forgetting a live entry would re-open a replay
        caller_id = id_of(msg.identity)
        if caller_id == self.own_id:
            raise Drop("own_id")
        if not self._fresh(msg.timestamp, now):
            raise Drop("stale_timestamp")
        settings = self.settings
        if len(self._sessions) >= settings.max_sessions and not self._pending:
            raise Drop("pending_full")  # every session is a call: nothing to evict
        if not proven and (
            self._under_load(now) or self._key_res_bound() > AMPLIFICATION * size
        ):
            self._send_cookie(data, size, addr, now)  # before loading any key: costs one HMAC
            return
        peer_eph = load_ephemeral(msg.ephemeral)
        identity_key = load_identity(msg.identity)
        # everything cheap has passed: only now spend a token on the signature check, from the
        # budget of proven addresses when a cookie came with it
        cost = verify_cost(identity_key)
        if not proven:
            try:
                self._rate_limit(addr, now, cost)
            except Drop:
                self._send_cookie(data, size, addr, now)  # the cookie budget may admit it
                raise
        else:
            self._admit_proven(caller_id, addr, now, cost)
        check_signature(
            identity_key, msg.signature,
            req_signed_data(caller_id, self.own_id, msg.timestamp, msg.ephemeral),
        )
        # authentic and fresh: answer it, evicting older handshakes if the table is full
        self._make_room(caller_id, _host(addr), now)
        # twice the window (a caller's clock may be a window ahead of ours), and a second more
        # so that no millisecond rounding lets a replay be fresh while forgotten
        self._seen[msg.ephemeral] = now + 2 * settings.freshness_window + 1.0
        private = self._ephemeral()
        eph_spki = ephemeral_spki(private.public_key())
        secret = shared_secret(private, peer_eph)
        del private  # forward secrecy: the ephemeral private key goes as soon as it is used
        ts_res = self._wall_ms(now)
        _, forward, backward = session_keys(
            secret, caller_id, self.own_id, msg.timestamp, ts_res, msg.ephemeral, eph_spki
        )
        session = Session(self._next_id, Role.CALLEE, caller_id, now)
        self._next_id += 1
        session.addr = addr
        session.validated = proven
        session.ts_req = msg.timestamp
        session.caller_eph = msg.ephemeral
        session.key_req = data
        session.key_res = make_key_res(
            self.identity.sign, self.identity.public_der, caller_id, self.own_id,
            msg.timestamp, ts_res, msg.ephemeral, eph_spki,
        )
        session.tx = SendStream(backward.key, backward.salt)
        session.rx = ReceiveStream(
            forward.key, forward.salt, settings.replay_window, settings.media_interval
        )
        self._sessions[session.id] = session
        self._by_eph[msg.ephemeral] = session
        self._keyed.setdefault(addr, []).append(session)
        self._set_state(session, S.KEY_EXCHANGE, now)
        self._outbox.append((session.key_res, addr))
        # the routing table learns the caller at its first RING (`_on_authentic`), which proves
        # it holds the ephemeral key: a KEY_REQ alone may be a replay from another address

    def _on_key_res(self, data: bytes, addr: Any, now: float) -> None:
        msg = decode_key(data)
        candidates = self._awaiting.get(addr)
        if not candidates:
            raise Drop("unsolicited_key_res")
        peer = id_of(msg.identity)
        matches = [s for s in candidates if s.peer_id == peer]
        if not matches:
            for session in candidates:
                session.auth_failures += 1
            raise Drop("wrong_identity")
        if not self._fresh(msg.timestamp, now):
            raise Drop("stale_timestamp")
        peer_eph = load_ephemeral(msg.ephemeral)
        identity_key = load_identity(msg.identity)
        # a solicited KEY_RES spends its own call's budget, not the KEY_REQ buckets that
        # spoofed KEY_REQs may have drained
        if not any(s.key_res_budget.take(now) for s in matches):
            raise Drop("rate_limited")
        for session in matches:
            signed = res_signed_data(
                self.own_id, peer, session.ts_req, msg.timestamp, session.eph_spki, msg.ephemeral
            )
            try:
                check_signature(identity_key, msg.signature, signed)
                break
            except Drop:
                continue
        else:
            for session in matches:
                session.auth_failures += 1
            raise Drop("bad_signature")
        secret = shared_secret(session.eph_private, peer_eph)
        session.eph_private = None  # forward secrecy
        _, forward, backward = session_keys(
            secret, self.own_id, peer, session.ts_req, msg.timestamp, session.eph_spki,
            msg.ephemeral,
        )
        settings = self.settings
        session.tx = SendStream(forward.key, forward.salt)
        session.rx = ReceiveStream(
            backward.key, backward.salt, settings.replay_window, settings.media_interval
        )
        session.key_res = data
        session.retx_at = None
        session.key_res_budget = None
        _remove(self._awaiting, addr, session)
        self._keyed.setdefault(addr, []).append(session)
        session.last_recv = now
        if session.chat:
            self._set_state(session, S.OPEN, now)  # no RING: our first TEXT opens the callee's
        else:
            self._set_state(session, S.RINGING, now)
            session.next_ring = now + settings.ring_interval
            self._guard(session, now, self._send, session, SIGNAL, encode_signal(RING), now)
        if session.outbox:
            self._guard(session, now, self._flush, session, now)
        if self._peer_seen is not None:
            self._peer_seen(int.from_bytes(peer, "big"), addr, now)

    def _make_room(self, caller_id: bytes, host: Any, now: float) -> None:
        """Evict the oldest pending handshakes so that one more fits every limit: per caller
        ID, per source host, in all (there unproven ones first). Spoofed KEY_REQs can then only
        push out handshakes older than themselves, never keep an honest caller out (review M2)."""
        settings = self.settings
        pending = self._pending
        for limit, same in (
            (settings.max_pending_per_caller, lambda x: x.peer_id == caller_id),
            (settings.max_pending_per_source, lambda x: _host(x.addr) == host),
        ):
            matching = [x for x in pending.values() if same(x)]
            for victim in matching[: max(0, len(matching) - limit + 1)]:
                self._evict(victim, now)
        while pending and (
            len(pending) >= settings.max_pending or len(self._sessions) >= settings.max_sessions
        ):
            # the oldest whose address never proved itself goes first: spoofed KEY_REQs verified
            # before the node noticed the load cannot push out a caller that echoed a cookie
            victim = next((x for x in pending.values() if not x.validated), None)
            self._evict(victim or next(iter(pending.values())), now)

    def _evict(self, session: Session, now: float) -> None:
        self.stats["handshake_evicted"] += 1
        self._end(session, EndReason.UNREACHABLE, now)  # never announced: no event

    def _forget_seen(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, expiry = next(iter(seen.items()))
            if expiry > now:
                break
            del seen[key]

    # -- the stream -----------------------------------------------------------------------------

    def _on_packet(self, data: bytes, addr: Any, now: float) -> None:
        if len(data) < HEADER_SIZE:
            raise Drop("truncated")
        candidates = self._keyed.get(addr)
        if not candidates:
            raise Drop("no_session")
        for session in tuple(candidates):
            try:
                kind, seq, plaintext = session.rx.open(data, now, count_auth_failures=False)
            except Drop as drop:
                if drop.reason == "auth_failed":
                    continue
                raise
            self._guard(session, now, self._on_authentic, session, kind, seq, plaintext, now)
            return
        if len(candidates) == 1:  # unambiguous: that session's failure (else the layer's only)
            candidates[0].rx.rejected += 1
        raise Drop("auth_failed")

    def _on_authentic(
        self, session: Session, kind: int, seq: int, plaintext: bytes, now: float
    ) -> None:
        self._on_authentic_packet(session, kind, seq, plaintext, now)
        if session.outbox and session.state in CARRIES_MESSAGES:
            self._flush(session, now)  # what waited for the session to open
        if (session.state is S.TALKING and session.next_report is not None
                and now >= session.next_report):
            self._send_report(session, now)  # on arrival: its highest sequence is this fresh

    def _on_authentic_packet(
        self, session: Session, kind: int, seq: int, plaintext: bytes, now: float
    ) -> None:
        session.last_recv = now
        session.validated = True  # an authentic packet from its address: the address answers
        state = session.state
        caller = session.role is Role.CALLER
        if kind == MEDIA:
            if state is S.RINGING and caller:
                # only the callee's keys make this packet, and it sends MEDIA only once it
                # answered: the answer, whose ANSWER was lost or is late (issue 16)
                self.stats["media_answered"] += 1
                self._start_talking(session, now)
                state = session.state
            if state is S.TALKING:
                session.answer_at = None  # callee: the caller talks, so it heard our ANSWER
                self._events.append(MediaReceived(session.id, seq, plaintext, now))
            else:
                self.stats["unexpected_media"] += 1
            return
        if plaintext and (plaintext[0] in MESSAGE_KINDS or plaintext[0] in RELIABLE):
            self._on_message_frame(session, plaintext, now)
            return
        if plaintext and plaintext[0] == PRESENCE:
            self._on_presence(session, plaintext, now)
            return
        try:
            signal, body = decode_signal(plaintext)
        except Drop as drop:
            self.stats[drop.reason] += 1
            return
        if signal == HANGUP:
            self._end(session, _REMOTE_END.get(body[0], EndReason.REMOTE_HUNG_UP), now)
        elif signal == RING and not caller:
            if state is S.KEY_EXCHANGE or state is S.OPEN:  # open: a TEXT came before the RING
                if self._peer_seen is not None and not session.announced:
                    self._peer_seen(session.peer_int, session.addr, now)
                self._ring_arrived(session, now)
            elif state is S.TALKING:
                self._send(session, SIGNAL, encode_signal(ANSWER), now)  # our ANSWER was lost
        elif signal == ANSWER and caller and state is S.RINGING:
            self._start_talking(session, now)
        elif signal == ANSWER and caller and state is S.TALKING:
            # a repeat: the callee has not heard us since it answered. Echo it as the
            # acknowledgement (peers before issue 16 take an ANSWER from the caller as a no-op),
            # unless our MEDIA is flowing: that acknowledges, and an echo would take a sequence
            # number between two frames, which the peer's jitter buffer would take for a loss
            if session.media_sent is None or now - session.media_sent > self.settings.answer_retry:
                self._send(session, SIGNAL, encode_signal(ANSWER), now)
        elif signal == ANSWER and state is S.TALKING:
            session.answer_at = None  # callee: the caller's echo acknowledges our ANSWER
        elif signal == BUSY and caller and state is S.RINGING:
            self._end(session, EndReason.BUSY, now)
        elif signal == REPORT and state is S.TALKING:
            session.answer_at = None  # a caller's report: it talks, so it heard our ANSWER
            fraction, lost, highest, jitter = decode_report(body)
            self._events.append(ReceiverReport(
                session.id, fraction, lost, highest, jitter, now, seq,
                self._rtt_sample(session, highest, now),
            ))
        elif signal == KEEPALIVE or signal in (RING, ANSWER, REPORT):
            pass  # keepalives, and repeats of what already happened
        else:
            self.stats["unexpected_signal"] += 1

    def _on_message_frame(self, session: Session, plaintext: bytes, now: float) -> None:
        """TEXT, CONTACT_REQ, CONTACT_REPLY or RECEIPT (messages.py, presence.py). A callee's
        first authentic packet may be one of the first three: the caller opened the session
        for messages (or its RING is late), and it opens here. A RECEIPT does not open it:
        nothing of ours can wait on a session that never opened."""
        kind = plaintext[0]
        try:
            frame = (decode_text(plaintext) if kind == TEXT else decode_request(plaintext)
                     if kind == CONTACT_REQ else decode_reply(plaintext) if kind in RELIABLE
                     else None)
            receipt = decode_receipt(plaintext) if frame is None else None
        except Drop as drop:
            self.stats[drop.reason] += 1
            return
        if session.state is S.KEY_EXCHANGE and session.role is Role.CALLEE and frame is not None:
            if self._peer_seen is not None:
                self._peer_seen(session.peer_int, session.addr, now)  # proven, as by a RING
            self._set_state(session, S.OPEN, now, announce=False)
        elif session.state not in CARRIES_MESSAGES:
            self.stats["unexpected_message"] += 1
            return
        if frame is not None:
            frame_id = frame_id_of(plaintext)
            inbox = session.inbox
            if inbox is None:
                settings = self.settings
                inbox = session.inbox = Inbox(
                    settings.inbox_size, TokenBucket(settings.text_rate, settings.text_burst, now))
            if not inbox.admits(frame_id, now):
                self.stats["text_rate_limited"] += 1  # no RECEIPT: the sender sends it again
                return
            if not inbox.known(frame_id) and not self._admit_stranger_text(session, now):
                self.stats["stranger_text_rate_limited"] += 1  # the same: sent again later
                return
            fresh = inbox.add(frame_id, hold=True)
            if not inbox.held(frame_id):
                # confirmed already: a retransmission means our RECEIPT was lost; again
                self._send(session, SIGNAL, encode_receipt(frame_id), now)
                self.stats["duplicate_message"] += 1
                return
            # the RECEIPT waits for the owner's `confirm` (it saved the frame); one that comes
            # again before is reported again: the owner may save it now
            if not fresh:
                self.stats["held_message_repeat"] += 1
            if kind == TEXT:
                self._events.append(MessageReceived(
                    session.id, session.peer_int, frame.message_id, frame.seq, frame.sent_ms,
                    frame.text, now))
            elif kind == CONTACT_REQ:
                self._events.append(ContactRequested(
                    session.id, session.peer_int, frame.request_id, frame.note, now))
            else:
                self._events.append(ContactReplied(
                    session.id, session.peer_int, frame.reply_id, frame.request_id,
                    frame.accepted, now))
            if fresh and session.state is S.OPEN:
                session.entered = now  # a new message: not idle
            return
        elif session.outbox is not None and session.outbox.acknowledge(receipt):
            self._events.append(MessageDelivered(session.id, session.peer_int, receipt, now))
        else:
            self.stats["unsolicited_receipt"] += 1  # a repeat, or for a message moved away
            return
        if session.state is S.OPEN:
            session.entered = now  # a new message or receipt: not idle

    def _admit_stranger_text(self, session: Session, now: float) -> bool:
        """A new TEXT from a peer that is not the user's contact takes a token from the budget
        all strangers share (stranger_text_rate); a contact's does not."""
        trusted = self.settings.trusted
        if trusted is not None and trusted(session.peer_int):
            return True
        if self._stranger_texts is None:
            settings = self.settings
            self._stranger_texts = TokenBucket(settings.stranger_text_rate,
                                               settings.stranger_text_burst, now)
        return self._stranger_texts.take(now)

    def _on_presence(self, session: Session, plaintext: bytes, now: float) -> None:
        """A PRESENCE (presence.py): reported when it differs from the peer's last one here. A
        callee's first authentic packet may be one: a contact opened the session to tell us
        (its status, nothing else), and it opens here as for a TEXT."""
        try:
            status = decode_presence(plaintext)
        except Drop as drop:
            self.stats[drop.reason] += 1
            return
        if session.state is S.KEY_EXCHANGE and session.role is Role.CALLEE:
            if self._peer_seen is not None:
                self._peer_seen(session.peer_int, session.addr, now)
            self._set_state(session, S.OPEN, now, announce=False)
        elif session.state not in CARRIES_MESSAGES:
            self.stats["unexpected_presence"] += 1
            return
        if status != session.peer_presence:
            session.peer_presence = status
            self._events.append(PresenceReceived(session.id, session.peer_int, status, now))

    def _ring_arrived(self, session: Session, now: float) -> None:
        # glare: we are calling this peer too. The lower ID keeps its outgoing call and leaves
        # the peer's unrung (the peer drops it for ours when our RING arrives); the higher ID
        # drops its outgoing call and answers this one at once.
        ours = [
            s for s in self._sessions.values()
            if s.role is Role.CALLER and s.peer_id == session.peer_id and not s.chat
            and s.state in (S.KEY_EXCHANGE, S.RINGING)
        ]
        if ours and self.own_id < session.peer_id:
            self.stats["glare"] += 1  # not rung; the peer's HANGUP (or handshake_timeout) ends it
            return
        for outgoing in ours:
            self._terminate(outgoing, HANGUP_NORMAL, EndReason.GLARE, now)
        active = sum(1 for s in self._sessions.values() if s.state in ESTABLISHED)
        if self.busy or active >= self.settings.max_calls:
            for _ in range(self.settings.terminal_repeats):
                self._send(session, SIGNAL, encode_signal(BUSY), now)
            self._events.append(MissedCall(session.id, session.peer_int, session.addr, now))
            self._end(session, EndReason.BUSY, now)
            return
        self._set_state(session, S.RINGING, now, announce=False)
        session.announced = True
        self._events.append(IncomingCall(session.id, session.peer_int, session.addr, now))
        if ours:
            self._answer(session, now)  # our user asked for this peer already

    def _answer(self, session: Session, now: float) -> None:
        self._send(session, SIGNAL, encode_signal(ANSWER), now)
        self._start_talking(session, now)
        # until the caller's MEDIA, REPORT or ANSWER echo shows it heard us, ANSWER again
        session.answer_sends = 1
        session.answer_at = (now + self.settings.answer_retry
                             if self.settings.answer_tries > 1 else None)

    def _rtt_sample(self, session: Session, highest: int, now: float) -> float | None:
        """A peer's REPORT names the highest sequence it had; it went out when one of our
        packets arrived once the report was due, so now minus that packet's send time is a
        round trip. Valid only when our next packet followed within `report_grace`: else the
        report may have waited for the grace timer, not for our packet (we were quiet)."""
        sent = session.sent
        if not sent:
            return None
        index = highest - sent[0][0]
        if not 0 <= index < len(sent) or sent[index][0] != highest:
            return None  # too old, not ours, or a sequence jump (kept short on purpose)
        sent_at = sent[index][1]
        following = sent[index + 1][1] if index + 1 < len(sent) else now
        if following - sent_at > self.settings.report_grace:
            return None
        samples = session.rtt_samples
        if samples is None:
            samples = session.rtt_samples = collections.deque(maxlen=RTT_SAMPLES)
        samples.append(max(0.0, now - sent_at))
        return self.rtt_of(session.id)

    def _send_report(self, session: Session, now: float) -> None:
        self._send(session, SIGNAL, encode_report(*session.rx.report()), now)
        session.next_report = now + self.settings.report_interval

    def _start_talking(self, session: Session, now: float) -> None:
        self._set_state(session, S.TALKING, now)
        session.next_ring = None
        session.next_report = now + self.settings.report_interval

    def _send(self, session: Session, kind: int, plaintext: bytes, now: float) -> bool:
        seq = session.tx.seq
        self._outbox.append((session.tx.seal(kind, plaintext), session.addr))
        session.last_sent = now
        sent = session.sent
        if sent is None:
            sent = session.sent = collections.deque(maxlen=SENT_HISTORY)
        sent.append((seq, now))
        if kind == MEDIA:
            session.media_sent = now
        return True

    def _guard(self, session: Session, now: float, action: Callable, *args: Any) -> Any:
        """Run `action`; a sequence space running out ends the call."""
        try:
            return action(*args)
        except Exhausted:
            self._end(session, EndReason.EXHAUSTED, now)
            return None

    def _terminate(self, session: Session, code: int, reason: EndReason, now: float) -> None:
        """Tell the peer (when we have keys) and end."""
        if session.tx is not None:
            body = encode_signal(HANGUP, bytes((code,)))
            for _ in range(self.settings.terminal_repeats):
                if not self._guard(session, now, self._send, session, SIGNAL, body, now):
                    return
        self._end(session, reason, now)

    # -- timers ---------------------------------------------------------------------------------

    def _timeouts(self, session: Session):
        """(time, timeout) of each timeout of the session's state, from the `TIMEOUTS` table."""
        settings = self.settings
        for timeout in TIMEOUTS.get((session.state, session.role), ()):
            base = session.entered if timeout.since == "entered" else session.last_recv
            yield base + getattr(settings, timeout.setting), timeout

    def _next_deadline(self, session: Session) -> float | None:
        times = [at for at, _ in self._timeouts(session)]
        times += [session.retx_at, session.next_ring, session.answer_at]
        if session.next_report is not None:
            times.append(session.next_report + self.settings.report_grace)
        if session.state in CARRIES_MESSAGES:
            times.append(session.last_sent + self.settings.keepalive_interval)
            if session.outbox:
                times.append(session.outbox.next_at())
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def _tick(self, session: Session, now: float) -> None:
        settings = self.settings
        for at, timeout in self._timeouts(session):
            if now >= at:
                reason = timeout.reason
                if timeout.if_auth_failed is not None and session.auth_failures:
                    reason = timeout.if_auth_failed
                if timeout.counted is not None:
                    self.stats[timeout.counted] += 1
                if timeout.hangup is not None:
                    self._terminate(session, timeout.hangup, reason, now)
                else:
                    self._end(session, reason, now)
                return
        if session.retx_at is not None and now >= session.retx_at:  # caller: KEY_REQ again
            self._outbox.append((session.request(session.addr), session.addr))
            session.retx_at = now + settings.key_retry * 2 ** session.tries
            session.tries += 1
            if session.tries >= settings.key_tries:
                session.retx_at = None  # the last try: key_exchange_timeout ends the wait
        if session.state not in CARRIES_MESSAGES:
            return
        if session.outbox:
            self._flush(session, now)  # retransmissions due
        if session.next_ring is not None and now >= session.next_ring:
            self._send(session, SIGNAL, encode_signal(RING), now)
            session.next_ring = now + settings.ring_interval
        if session.answer_at is not None and now >= session.answer_at:
            self._send(session, SIGNAL, encode_signal(ANSWER), now)
            self.stats["answer_resent"] += 1
            session.answer_at = now + settings.answer_retry * 2 ** session.answer_sends
            session.answer_sends += 1
            if session.answer_sends >= settings.answer_tries:
                session.answer_at = None  # bounded: RINGs still get an ANSWER each
        if (session.next_report is not None
                and now >= session.next_report + settings.report_grace):
            self._send_report(session, now)  # no packet of the peer's came: send it anyway
        if now >= session.last_sent + settings.keepalive_interval:
            # a contact's keepalive is our PRESENCE: one that was lost is made good by the next
            keepalive = (encode_presence(self.presence) if self._tells(session)
                         else encode_signal(KEEPALIVE))
            self._send(session, SIGNAL, keepalive, now)

    # -- state ----------------------------------------------------------------------------------

    def _set_state(
        self, session: Session, state: CallState, now: float, announce: bool = True
    ) -> None:
        if session.role is Role.CALLEE:
            if state is S.KEY_EXCHANGE:
                self._pending[session.id] = session
            elif session.state is S.KEY_EXCHANGE:
                del self._pending[session.id]
        opened = state in CARRIES_MESSAGES and session.state not in CARRIES_MESSAGES
        session.state = check_transition(session.state, state)
        session.entered = now
        if opened:
            self._events.append(SessionOpened(session.id, session.peer_int, now))
            if self._tells(session):
                self._send(session, SIGNAL, encode_presence(self.presence), now)
        if announce and session.announced and state is not S.ENDED:
            self._events.append(
                CallProgress(session.id, session.peer_int, session.role, state, now)
            )

    def _end(self, session: Session, reason: EndReason, now: float) -> None:
        if session.state is S.ENDED:
            return
        stats = stats_of(session.tx, session.rx)
        self._set_state(session, S.ENDED, now)
        session.reason = reason
        session.eph_private = None
        for stream in (session.tx, session.rx):
            if stream is not None:
                stream.wipe()
        session.retx_at = session.next_ring = session.next_report = session.answer_at = None
        _remove(self._awaiting, session.addr, session)
        _remove(self._keyed, session.addr, session)
        if session.caller_eph is not None and self._by_eph.get(session.caller_eph) is session:
            del self._by_eph[session.caller_eph]
        del self._sessions[session.id]
        if session.announced:
            self._events.append(
                CallEnded(session.id, session.peer_int, session.role, reason, now, stats)
            )
        if session.outbox:
            self._hand_over(session, reason, now)

    def _hand_over(self, session: Session, reason: EndReason, now: float) -> None:
        """An ending session's unacknowledged messages move to another session with the peer,
        else they are reported unsent (the owner keeps them pending)."""
        taken = session.outbox.take()
        heir = self._carrier(session.peer_id)
        if heir is None:  # contact requests and replies: their owner sends them again (§15c)
            texts = tuple(message_id for message_id, frame in taken if frame[0] == TEXT)
            if texts:
                self._events.append(MessagesUnsent(session.peer_int, texts, reason, now))
            return
        self._outbox_of(heir).adopt(taken)
        if heir.state in CARRIES_MESSAGES:
            self._guard(heir, now, self._flush, heir, now)

    def _pick(self, session_id: int | None, wanted: Callable[[Session], bool]) -> Session | None:
        if session_id is not None:
            session = self._sessions.get(session_id)
            return session if session is not None and wanted(session) else None
        found = [s for s in self._sessions.values() if s.announced and wanted(s)]
        if len(found) > 1:
            raise ValueError(f"{len(found)} calls match; name one by session_id")
        return found[0] if found else None


def _host(addr: Any) -> Any:
    """The source host of an address: the IP of an (ip, port) tuple (for IPv6 its /64, which
    one host usually holds whole), else the address itself."""
    if type(addr) is not tuple:
        return addr
    ip = addr[0]
    if type(ip) is str and ":" in ip:
        try:
            return ipaddress.IPv6Network((ip.split("%", 1)[0], 64), strict=False)
        except ValueError:
            return ip
    return ip


def _remove(index: dict[Any, list[Session]], addr: Any, session: Session) -> None:
    sessions = index.get(addr)
    if sessions is not None and session in sessions:
        sessions.remove(session)
        if not sessions:
            del index[addr]
