"""Shared fixtures, each made once per test session: real encoded audio files, small copies of the
sources, and the demo corpus builds that several test files read (tests/helpers/ has the builders)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from clap_corpus.pipeline.demo import synth

if TYPE_CHECKING:  # the build imports Beam: only a session that builds the corpus pays for it
    from helpers.corpora import DemoBuild

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


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """The demo corpus, 10 clips of 1-14 s in shards of 3 (K2C's tiny model, the demo's bad rows),
    built once for every file that only reads it (tests/test_interop.py, tests/test_report.py).
    A test that writes into a corpus builds its own."""
    from helpers.corpora import build_demo

    build = build_demo(tmp_path_factory.mktemp("small_demo"), n_clips=10, max_seconds=14.0, shard_size=3)
    assert build.summary["samples"] == 10
    return build
