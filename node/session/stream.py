"""MEDIA / SIGNAL packets: AES-256-GCM with 8-byte tags, one key and sequence space per direction.

nonce = nonce salt (8) | sequence (u32), additional data = the type byte, the tag is the first
8 bytes of the GCM tag. `SendStream.seal` builds packets, `ReceiveStream.open` authenticates,
checks the replay window and keeps the receiver statistics. Keys live in bytearrays that `wipe`
zeroes (the cipher objects are dropped; copies inside OpenSSL are freed with them).
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .events import SessionStats
from .replay import DUPLICATE, ReplayWindow
from .wire import HEADER_SIZE, MAX_PACKET, MAX_SEQ, MEDIA, TAG_SIZE, Drop

_HEADER = struct.Struct(">BI")
_SEQ = struct.Struct(">I")


class Exhausted(Exception):
    """The 32-bit sequence space of a direction is used up."""


class SendStream:
    __slots__ = ("key", "salt", "seq", "packets", "bytes", "_aead")

    def __init__(self, key: bytes, salt: bytes):
        self.key = bytearray(key)
        self.salt = bytes(salt)
        self.seq = 0
        self.packets = 0
        self.bytes = 0
        self._aead: AESGCM | None = AESGCM(self.key)

    def seal(self, kind: int, plaintext: bytes) -> bytes:
        seq = self.seq
        if seq > MAX_SEQ:
            raise Exhausted
        aad = bytes((kind,))
        sealed = self._aead.encrypt(self.salt + _SEQ.pack(seq), plaintext, aad)
        wire = b"".join((_HEADER.pack(kind, seq), sealed[-16:-16 + TAG_SIZE], sealed[:-16]))
        self.seq = seq + 1
        self.packets += 1
        self.bytes += len(wire)
        return wire

    def wipe(self) -> None:
        self.key[:] = bytes(len(self.key))
        self._aead = None


class ReceiveStream:
    __slots__ = (
        "key", "salt", "window", "packets", "bytes", "reordered", "duplicate", "rejected",
        "jitter", "media_interval", "_aes", "_last_media", "_report_expected", "_report_received",
    )

    def __init__(self, key: bytes, salt: bytes, window: int = 1024, media_interval: float = 0.02):
        self.key = bytearray(key)
        self.salt = bytes(salt)
        self.window = ReplayWindow(window)
        self.packets = 0
        self.bytes = 0
        self.reordered = 0
        self.duplicate = 0
        self.rejected = 0
        self.jitter = 0.0
        self.media_interval = media_interval
        self._aes: algorithms.AES | None = algorithms.AES(self.key)
        self._last_media: tuple[int, float] | None = None  # (seq, arrival) of the last MEDIA
        self._report_expected = 0
        self._report_received = 0

    def open(
        self, data: bytes, now: float, count_auth_failures: bool = True
    ) -> tuple[int, int, bytes]:
        """(type, sequence, plaintext) of an authentic, fresh packet; else raises Drop.

        A packet that fails changes nothing but the `rejected` / `duplicate` counters. With
        `count_auth_failures=False` a tag failure is not counted here: the session layer, which
        tries each session at an address, counts it once when no session accepts the packet.
        """
        if self._aes is None:
            raise Drop("no_session")
        if len(data) < HEADER_SIZE:
            raise Drop("truncated")
        if len(data) > MAX_PACKET:
            raise Drop("oversized")
        kind, seq = _HEADER.unpack_from(data)
        tag = data[5:HEADER_SIZE]
        try:
            decryptor = Cipher(
                self._aes, modes.GCM(self.salt + data[1:5], tag, min_tag_length=TAG_SIZE)
            ).decryptor()
            decryptor.authenticate_additional_data(data[:1])
            plaintext = decryptor.update(data[HEADER_SIZE:]) + decryptor.finalize()
        except InvalidTag:
            if count_auth_failures:
                self.rejected += 1
            raise Drop("auth_failed") from None
        verdict = self.window.check(seq)
        if verdict is not None:
            if verdict == DUPLICATE:
                self.duplicate += 1
            else:
                self.rejected += 1
            raise Drop(verdict)
        if self.window.commit(seq):
            self.reordered += 1
        self.packets += 1
        self.bytes += len(data)
        if kind == MEDIA:
            last = self._last_media
            if last is not None and seq == last[0] + 1:
                deviation = abs(now - last[1] - self.media_interval)
                self.jitter += (deviation - self.jitter) / 16
            if last is None or seq > last[0]:
                self._last_media = (seq, now)
        return kind, seq, plaintext

    @property
    def highest(self) -> int:
        return self.window.highest

    @property
    def lost(self) -> int:
        return max(0, self.window.highest + 1 - self.packets)

    def report(self) -> tuple[float, int, int, float]:
        """(fraction lost since the last report, cumulative lost, highest seq, jitter)."""
        expected = self.window.highest + 1
        interval_expected = expected - self._report_expected
        interval_received = self.packets - self._report_received
        self._report_expected = expected
        self._report_received = self.packets
        fraction = 0.0
        if interval_expected > 0:
            fraction = min(1.0, max(0.0, 1 - interval_received / interval_expected))
        return fraction, self.lost, max(0, self.window.highest), self.jitter

    def wipe(self) -> None:
        self.key[:] = bytes(len(self.key))
        self._aes = None


def stats_of(tx: SendStream | None, rx: ReceiveStream | None) -> SessionStats:
    if rx is None:
        return SessionStats(
            packets_sent=tx.packets if tx else 0, bytes_sent=tx.bytes if tx else 0
        )
    return SessionStats(
        rx.packets, rx.bytes, rx.lost, rx.reordered, rx.duplicate, rx.rejected,
        tx.packets if tx else 0, tx.bytes if tx else 0, rx.jitter,
    )
