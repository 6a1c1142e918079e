"""The media layer: Opus voice frames over the session layer's encrypted MEDIA stream.

Sans-I/O like the other layers (explicit `now`, plaintext in and out):

- `codec`: Opus through opuslib, with opuslib 3.0.1's bugs wrapped (lost-frame decoding, the
  in-band FEC setter);
- `packet`: Opus packet framing (split any packet; join two frames for redundancy);
- `jitter`: the adaptive jitter buffer (timestamps from sequence numbers);
- `playout`: when to pull it (every 20 ms, phased to packet arrival);
- `rate`: the bitrate / FEC controller driven by receiver reports;
- `call`: `MediaSender`, `MediaReceiver` and `MediaCall` (both directions of one call).

Audio devices (ALSA, WAV files) live in `kadtalk.transport`.
"""

from .call import MediaCall, MediaReceiver, MediaSender, MediaSettings
from .codec import FRAME_BYTES, FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE, OpusDecoder, OpusEncoder
from .jitter import JitterBuffer, JitterSettings, Playout
from .playout import PlayoutClock
from .rate import RateController, RateDecision, RateSettings

__all__ = [
    "FRAME_BYTES", "FRAME_SAMPLES", "FRAME_SECONDS", "SAMPLE_RATE", "JitterBuffer",
    "JitterSettings", "MediaCall", "MediaReceiver", "MediaSender", "MediaSettings",
    "OpusDecoder", "OpusEncoder", "Playout", "PlayoutClock", "RateController", "RateDecision",
    "RateSettings",
]
