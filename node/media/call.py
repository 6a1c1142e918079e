"""One call's media, sans-I/O: Opus sender with adaptive bitrate, jitter buffer and decoder.

The session layer carries the bytes; this class only sees plaintext. Per 20 ms the driver
calls `send_frame(pcm, now)` and hands the payload to `Node.send_media`, and `play_frame(now)`
for the PCM to play, at the times `next_play(now)` names (playout phased to packet arrival,
see `playout`); session events go to `handle_event` (MediaReceived: into the jitter
buffer; ReceiverReport: to the bitrate controller, and, being a SIGNAL packet of the peer's
stream, marks a sequence number that holds no frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..layer import Event
from ..session.events import MediaReceived, ReceiverReport
from .codec import FRAME_BYTES, SILENCE, OpusDecoder, OpusEncoder
from .jitter import CONCEAL, FEC, PLAY, JitterBuffer, JitterSettings, Playout
from .packet import join_two, single, split
from .playout import PlayoutClock
from .rate import RateController, RateDecision, RateSettings


@dataclass(frozen=True, slots=True)
class MediaSettings:
    rate: RateSettings = field(default_factory=RateSettings)
    jitter: JitterSettings = field(default_factory=JitterSettings)
    complexity: int = 10
    bandwidth: str = "wideband"  # the encoder's audio bandwidth cap (codec.BANDWIDTHS)
    signal: str = "voice"  # libopus's content hint (codec.SIGNALS)
    adaptive: bool = True  # follow receiver reports (else: start_bitrate, no FEC, for ever)
    fec: bool = True  # in-band FEC when the reports show loss (and FEC recovery on receipt)
    plc: bool = True  # conceal lost frames (False: play silence, the benchmark's baseline)
    redundancy: bool = True  # previous frame in each packet when the reports show loss (and
    #                          a lost frame rebuilt from it); two-frame packets always play


class MediaSender:
    """Opus-encodes one frame per call; timestamps are implicit (one frame per sequence number).

    With redundancy on (the rate controller's decision), the payload for frame n is one
    two-frame Opus packet holding frames n-1 and n, each encoded once at half the bitrate
    budget; when the two cannot share a packet (the encoder changed mode or bandwidth between
    them) frame n goes alone.
    """

    __slots__ = ("encoder", "rate", "settings", "frames", "bytes", "redundant", "doubled",
                 "_prev")

    def __init__(self, settings: MediaSettings | None = None):
        self.settings = settings or MediaSettings()
        rate = self.settings.rate
        if not self.settings.redundancy and rate.redundancy:
            rate = replace(rate, redundancy=False)
        self.rate = RateController(rate)
        self.encoder = OpusEncoder(rate.start_bitrate, self.settings.complexity,
                                   max_bandwidth=self.settings.bandwidth,
                                   signal=self.settings.signal)
        self.frames = 0
        self.bytes = 0
        self.redundant = False  # carrying the previous frame in each packet
        self.doubled = 0  # packets sent with two frames
        self._prev: bytes | None = None  # the previous frame's own (single-frame) packet
        if self.settings.adaptive:
            self.apply(self.rate.decision())  # redundancy from the start (`red_start`)

    def encode(self, pcm: bytes) -> bytes:
        packet = self.encoder.encode(pcm)
        prev, self._prev = self._prev, packet
        if self.redundant and prev is not None:
            joined = join_two(prev, packet)
            if joined is not None:
                packet = joined
                self.doubled += 1
        self.frames += 1
        self.bytes += len(packet)
        return packet

    def on_report(self, fraction_lost: float, jitter: float, now: float) -> RateDecision:
        decision = self.rate.on_report(fraction_lost, jitter, now)
        if self.settings.adaptive:
            self.apply(decision)
        return decision

    def apply(self, decision: RateDecision) -> None:
        self.redundant = decision.redundancy and self.settings.redundancy
        self.encoder.bitrate = decision.bitrate // 2 if self.redundant else decision.bitrate
        self.encoder.fec = decision.fec and self.settings.fec
        self.encoder.loss_perc = decision.loss_perc

    @property
    def bitrate(self) -> int:
        """The total bitrate asked of the encoder (both copies while redundancy is on)."""
        return self.encoder.bitrate * (2 if self.redundant else 1)


class MediaReceiver:
    """Jitter buffer + one Opus decoder for the whole call (never reset by a gap).

    A payload is one Opus packet of one frame, or of two (frames n-1 and n, redundancy; told
    apart by the TOC byte alone). Frame n is played from its own packet: a two-frame packet's
    second frame, rebuilt as a one-frame packet. A missing frame n-1 is rebuilt, in this
    order, from the first frame of packet n when that holds two (the frame itself, as
    encoded), from packet n's in-band FEC, or by concealment. The decoder sees every frame in
    order, once.
    """

    __slots__ = ("buffer", "decoder", "settings", "last", "red_recovered")

    def __init__(self, settings: MediaSettings | None = None):
        self.settings = settings or MediaSettings()
        self.buffer = JitterBuffer(self.settings.jitter)
        self.decoder = OpusDecoder()
        self.last: Playout | None = None
        self.red_recovered = 0  # missing frames decoded from the next packet's copy

    def receive(self, seq: int, payload: bytes, now: float) -> bool:
        return self.buffer.put(seq, payload, now)

    def signal_received(self, now: float, seq: int | None = None) -> None:
        self.buffer.signal_received(now, seq)

    def pull(self, now: float) -> bytes:
        """The 20 ms of PCM (S16_LE, 48 kHz mono) to play from `now`."""
        out = self.last = self.buffer.pull(now)
        kind = out.kind
        if kind == PLAY:
            return self.decoder.decode(_frame_of(out.payload, -1))
        if not self.settings.plc:
            return SILENCE
        if kind == FEC:
            if self.settings.redundancy:
                frame = _frame_of(out.payload, 0)
                if frame is not None:
                    self.red_recovered += 1
                    return self.decoder.decode(frame)
            if self.settings.fec:
                return self.decoder.recover(out.payload)
            return self.decoder.conceal()
        if kind == CONCEAL:
            return self.decoder.conceal()
        return SILENCE

    def stats(self) -> dict[str, float]:
        stats = self.buffer.stats()
        d = self.decoder
        stats.update(decoded=d.decoded, plc=d.concealed, fec_decoded=d.fec_recovered,
                     red_decoded=self.red_recovered, corrupt=d.corrupt)
        return stats


def _frame_of(payload: bytes, which: int) -> bytes | None:
    """Frame `which` (0: the first, -1: the last) of a two-frame payload as a one-frame packet.

    For `which` = -1 anything else comes back as it is (the decoder copes with, and counts,
    corrupt packets); for 0 None: the payload holds no copy of the frame before."""
    if payload and payload[0] & 3:  # codes 1-3: maybe two frames
        got = split(payload)
        if got is not None and len(got[1]) == 2:
            return single(got[0], got[1][which])
    return payload if which == -1 else None


class MediaCall:
    """Both directions of one call's media."""

    __slots__ = ("session_id", "sender", "receiver", "playout")

    def __init__(self, session_id: int | None = None, settings: MediaSettings | None = None):
        settings = settings or MediaSettings()
        self.session_id = session_id
        self.sender = MediaSender(settings)
        self.receiver = MediaReceiver(settings)
        self.playout = PlayoutClock()

    def send_frame(self, pcm: bytes, now: float) -> bytes:
        """The MEDIA payload (one Opus packet) for 20 ms of captured PCM."""
        return self.sender.encode(pcm)

    def play_frame(self, now: float) -> bytes:
        """The PCM to play for the pull due at `next_play` (a late pull plays its own slot's
        frame: `PlayoutClock.slot`)."""
        at = self.playout.slot(now)
        self.playout.pulled(now)
        return self.receiver.pull(at)

    def next_play(self, now: float) -> float | None:
        """When to call `play_frame` next (<= now: at once); None until a frame is held."""
        return self.playout.next_pull(self.receiver.buffer, now)

    def on_media(self, seq: int, payload: bytes, now: float) -> bool:
        return self.receiver.receive(seq, payload, now)

    def on_report(self, fraction_lost: float, jitter: float, now: float,
                  seq: int | None = None) -> RateDecision:
        """A receiver report from the peer. The report itself took a sequence number of the
        peer's stream: `seq` when the session layer says which, else the buffer finds it."""
        self.receiver.signal_received(now, seq)
        return self.sender.on_report(fraction_lost, jitter, now)

    def handle_event(self, event: Event) -> bool:
        """Feed a session event of this call; True when it was one of ours."""
        kind = type(event)
        if kind is not MediaReceived and kind is not ReceiverReport:
            return False
        if self.session_id is not None and event.session_id != self.session_id:
            return False
        if kind is MediaReceived:
            self.on_media(event.seq, event.payload, event.at)
        else:
            self.on_report(event.fraction_lost, event.jitter, event.at, event.seq)
        return True

    def stats(self) -> dict[str, float]:
        stats = self.receiver.stats()
        stats.update(self.playout.stats())
        enc = self.sender.encoder
        stats.update(
            frames_sent=self.sender.frames, payload_bytes_sent=self.sender.bytes,
            bitrate=self.sender.bitrate, frame_bitrate=enc.bitrate, fec_enabled=int(enc.fec),
            loss_perc=enc.loss_perc, redundancy=int(self.sender.redundant),
            packets_doubled=self.sender.doubled,
        )
        return stats


__all__ = ["FRAME_BYTES", "MediaCall", "MediaReceiver", "MediaSender", "MediaSettings"]
