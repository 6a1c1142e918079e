"""Opus through opuslib, with opuslib 3.0.1's two bugs wrapped in one place.

- `opuslib.Decoder.decode(None, n)` raises TypeError (it takes `len(None)`): a lost frame is
  concealed by decoding an empty packet, `decode(b"", n)`, which libopus treats as "missing".
- The `Encoder.inband_fec` setter drops its value (`ctl_set(...)` is called without it) and
  raises TypeError: FEC is switched through `encoder_ctl(state, set_inband_fec, value)`.

Everything else goes through opuslib's documented API. One frame is 20 ms at 48 kHz mono:
960 samples, 1,920 bytes of S16_LE PCM. A corrupt packet never raises: it is concealed and
counted, like a lost one.
"""

from __future__ import annotations

import opuslib
import opuslib.api.ctl as ctl
import opuslib.api.encoder as opus_encoder

SAMPLE_RATE = 48_000
CHANNELS = 1
FRAME_SECONDS = 0.02
FRAME_SAMPLES = 960  # per channel, 20 ms at 48 kHz
SAMPLE_BYTES = 2  # S16_LE
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * SAMPLE_BYTES
MIN_BITRATE = 6_000  # bit/s, libopus's range
MAX_BITRATE = 510_000
MAX_PACKET = 1_275  # the largest Opus packet for one 20 ms frame (RFC 6716, 3.2.1)
SILENCE = bytes(FRAME_BYTES)
BANDWIDTHS = {"narrowband": opuslib.BANDWIDTH_NARROWBAND, "mediumband": opuslib.BANDWIDTH_MEDIUMBAND,
              "wideband": opuslib.BANDWIDTH_WIDEBAND,
              "superwideband": opuslib.BANDWIDTH_SUPERWIDEBAND,
              "fullband": opuslib.BANDWIDTH_FULLBAND}
SIGNALS = {"auto": opuslib.AUTO, "voice": opuslib.SIGNAL_VOICE, "music": opuslib.SIGNAL_MUSIC}


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, int(value)))


class OpusEncoder:
    """A VOIP-mode Opus encoder: variable bitrate, complexity, in-band FEC, expected loss.

    `max_bandwidth` caps the audio bandwidth libopus may choose ("wideband": 0-8 kHz, SILK
    only up to ~64 kbit/s; "fullband": libopus decides, as before) and `signal` hints the
    content ("voice" keeps libopus in SILK/hybrid at bitrates where "auto" switches to CELT;
    docs/media.md "Encoder settings" has the measurements behind the defaults).
    """

    __slots__ = ("_enc", "_bitrate", "_fec", "_loss_perc", "_complexity")

    def __init__(
        self,
        bitrate: int = 24_000,
        complexity: int = 10,
        fec: bool = False,
        loss_perc: int = 0,
        application: str = "voip",
        max_bandwidth: str = "fullband",
        signal: str = "auto",
    ):
        app = {"voip": opuslib.APPLICATION_VOIP, "audio": opuslib.APPLICATION_AUDIO,
               "lowdelay": opuslib.APPLICATION_RESTRICTED_LOWDELAY}[application]
        self._enc = opuslib.Encoder(SAMPLE_RATE, CHANNELS, app)
        self._enc.vbr = 1
        state = self._enc.encoder_state
        opus_encoder.encoder_ctl(state, ctl.set_max_bandwidth, BANDWIDTHS[max_bandwidth])
        opus_encoder.encoder_ctl(state, ctl.set_signal, SIGNALS[signal])
        self._bitrate = self._fec = self._loss_perc = self._complexity = None
        self.complexity = complexity
        self.bitrate = bitrate
        self.fec = fec
        self.loss_perc = loss_perc

    # Each setter talks to libopus only when the value changes (a ctl call costs ~1 µs, but
    # the rate controller sets all three on every report).

    @property
    def bitrate(self) -> int:
        return self._bitrate

    @bitrate.setter
    def bitrate(self, value: int) -> None:
        value = _clamp(value, MIN_BITRATE, MAX_BITRATE)
        if value != self._bitrate:
            self._enc.bitrate = value
            self._bitrate = value

    @property
    def complexity(self) -> int:
        return self._complexity

    @complexity.setter
    def complexity(self, value: int) -> None:
        value = _clamp(value, 0, 10)
        if value != self._complexity:
            self._enc.complexity = value
            self._complexity = value

    @property
    def fec(self) -> bool:
        return self._fec

    @fec.setter
    def fec(self, on: bool) -> None:
        on = bool(on)
        if on != self._fec:
            # Workaround: `self._enc.inband_fec = 1` raises TypeError in opuslib 3.0.1.
            opus_encoder.encoder_ctl(self._enc.encoder_state, ctl.set_inband_fec, int(on))
            self._fec = on

    @property
    def loss_perc(self) -> int:
        return self._loss_perc

    @loss_perc.setter
    def loss_perc(self, value: int) -> None:
        value = _clamp(value, 0, 100)
        if value != self._loss_perc:
            self._enc.packet_loss_perc = value
            self._loss_perc = value

    def ctl_get(self, request) -> int:
        """Read a setting back from libopus itself (tests check the workarounds with this)."""
        return opus_encoder.encoder_ctl(self._enc.encoder_state, request)

    @property
    def lookahead(self) -> int:
        """The encoder's look-ahead in samples (312 at 48 kHz in VOIP mode: 6.5 ms)."""
        return self.ctl_get(ctl.get_lookahead)

    def encode(self, pcm: bytes) -> bytes:
        """One 20 ms frame of S16_LE PCM (short frames are padded with silence) to one packet."""
        if len(pcm) != FRAME_BYTES:
            pcm = bytes(pcm[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
        return self._enc.encode(pcm, FRAME_SAMPLES)


class OpusDecoder:
    """An Opus decoder that conceals lost frames and recovers them from the next packet's FEC.

    One decoder lives for the whole call and is never reset: a gap is concealed, so the
    decoder's state (and the concealment's fade-out) stays continuous.
    """

    __slots__ = ("_dec", "decoded", "concealed", "fec_recovered", "corrupt")

    def __init__(self):
        self._dec = opuslib.Decoder(SAMPLE_RATE, CHANNELS)
        self.decoded = 0
        self.concealed = 0
        self.fec_recovered = 0
        self.corrupt = 0

    def decode(self, packet: bytes) -> bytes:
        """One frame of PCM; a corrupt packet is concealed and counted, never raised."""
        if not packet or len(packet) > MAX_PACKET:
            self.corrupt += bool(packet)
            return self.conceal()
        try:
            pcm = self._dec.decode(bytes(packet), FRAME_SAMPLES)
        except opuslib.OpusError:
            self.corrupt += 1
            return self.conceal()
        self.decoded += 1
        return _frame(pcm)

    def conceal(self) -> bytes:
        """Packet-loss concealment for one missing frame."""
        # Workaround: `decode(None, n)` raises TypeError in opuslib 3.0.1; b"" means "lost".
        self.concealed += 1
        return _frame(self._dec.decode(b"", FRAME_SAMPLES))

    def recover(self, next_packet: bytes) -> bytes:
        """The missing frame rebuilt from the in-band FEC of the packet that follows it.

        Without FEC data in `next_packet` libopus conceals instead; call `decode(next_packet)`
        afterwards for the next frame itself.
        """
        if not next_packet or len(next_packet) > MAX_PACKET:
            return self.conceal()
        try:
            pcm = self._dec.decode(bytes(next_packet), FRAME_SAMPLES, decode_fec=True)
        except opuslib.OpusError:
            return self.conceal()
        self.fec_recovered += 1  # libopus conceals itself when the packet holds no FEC data
        return _frame(pcm)


def _frame(pcm: bytes) -> bytes:
    """Exactly one frame (libopus returns fewer samples only for packets of other durations)."""
    if len(pcm) == FRAME_BYTES:
        return pcm
    return pcm[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")

