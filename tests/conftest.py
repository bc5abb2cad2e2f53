"""Shared fixtures: real encoded audio files, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from clap_corpus.pipeline.demo import synth

MATRIX_RATES = (16_000, 22_050, 44_100, 48_000)
MATRIX_LAYOUTS = {"mono": 1, "stereo": 2}


@pytest.fixture(scope="session")
def encoded_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every format in ``synth.FORMATS`` x 16/22.05/44.1/48 kHz x mono/stereo, as files on disk.

    Keys are ``"<fmt>-<rate>-<mono|stereo>"`` (e.g. ``"mp3-44100-stereo"``). Each file holds
    ``synth.tone(440.0, 1.5, rate)`` (amplitude 0.5); stereo files hold
    ``synth.to_channels(tone, 2)``. Whatever the encoder needs is left to ``synth.encode_audio``: Opus
    files are resampled to 48 kHz before encoding and "ogg" (vorbis) files are always stereo.
    """
    folder = tmp_path_factory.mktemp("matrix")
    files: dict[str, Path] = {}
    for rate in MATRIX_RATES:
        mono = synth.tone(440.0, 1.5, rate)
        for layout, channels in MATRIX_LAYOUTS.items():
            samples = mono if channels == 1 else synth.to_channels(mono, channels)
            for fmt in synth.FORMATS:
                name = f"{fmt}-{rate}-{layout}"
                path = folder / f"{name}.{fmt}"
                path.write_bytes(synth.encode_audio(samples, rate, fmt))
                files[name] = path
    return files


@pytest.fixture(scope="session")
def clap_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small copies of every source of the shipped specs, as downloaded (tests/fixtures_sources.py)."""
    from fixtures_sources import build_clap_data

    return build_clap_data(tmp_path_factory.mktemp("clap_data"))
