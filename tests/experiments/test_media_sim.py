"""The media layer in the simulated world: two real Nodes (session layer, real crypto) over
SimNetwork delay, jitter and loss."""

from __future__ import annotations

import numpy as np

from kadtalk.experiments.media import simulate_call_media
from kadtalk.transport.audiofile import save_wav


def test_a_clean_simulated_call_plays_every_frame_both_ways():
    rows = simulate_call_media(seconds=3, loss=0.0, one_way=0.04, seed=2)
    assert [r["direction"] for r in rows] == ["1->0", "0->1"]
    # the session layer set the call up first: KEY_REQ/KEY_RES, then RING/ANSWER (40 ms each way)
    assert all(0.16 - 1e-9 <= r["setup_s"] < 0.3 for r in rows)
    for row in rows:
        assert row["played"] >= 148 and row["concealed"] == row["late"] == 0
        assert row["segsnr_db"] > 12 and row["hold_ms"] < 25
        assert row["signal_slots"] >= 2  # the reports' sequence numbers cost no frame


def test_loss_and_jitter_are_survived_and_reproducible():
    rows = simulate_call_media(seconds=4, loss=0.1, one_way=0.04, jitter=0.5, seed=3)
    again = simulate_call_media(seconds=4, loss=0.1, one_way=0.04, jitter=0.5, seed=3)
    assert rows == again
    for row in rows:
        # the reports turned protection on (redundancy: FEC is off while it is on)
        assert row["network_lost"] > 0 and row["redundancy_end"] and not row["fec_end"]
        assert row["fec"] > 0 and row["segsnr_db"] > 15
        assert row["target_delay"] > 0.03  # the buffer grew with the jitter


def test_a_wav_source(tmp_path):
    t = np.arange(48000 * 2) / 48000
    save_wav(tmp_path / "talk.wav", np.round(6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16))
    rows = simulate_call_media(seconds=2, source=str(tmp_path / "talk.wav"), seed=1)
    assert all(r["segsnr_db"] > 20 for r in rows)


def test_the_stream_is_the_session_layers_own():
    """Every MEDIA and report packet crossed the network sealed by SessionLayer: the network
    carried the key exchange's datagrams too, and a frame costs one datagram per direction."""
    rows = simulate_call_media(seconds=2, one_way=0.02, seed=4)
    frames = 2 * 2 / 0.02
    sent = rows[0]["network_sent"]
    assert frames < sent < frames + 40  # frames, ~2 reports a side, key exchange, ring, answer
