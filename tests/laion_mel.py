"""LAION-CLAP's ``get_mel``, written with torchaudio: the reference mel of tests/test_views.py, and the
torchaudio mel bench/bench_views.py times beside the views (bench/ puts tests/ on its path for it)."""

from __future__ import annotations

import torch
import torchaudio


def laion_get_mel() -> torch.nn.Module:
    """Wave (..., n) -> log-mel in dB (..., 64, n // 480 + 1), as LAION's ``get_mel`` before its ``.T``.

    ``onesided=True`` is omitted: torchaudio 2.11 deprecated it and it is the default."""
    mel_tf = torchaudio.transforms.MelSpectrogram(
        sample_rate=48000,
        n_fft=1024,
        win_length=1024,
        hop_length=480,
        center=True,
        pad_mode="reflect",
        power=2.0,
        norm=None,
        n_mels=64,
        f_min=50,
        f_max=14000,
    )
    return torch.nn.Sequential(mel_tf, torchaudio.transforms.AmplitudeToDB(top_db=None))
