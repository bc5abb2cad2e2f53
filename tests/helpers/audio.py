"""Small real audio files for tests: a sine tone, encoded by the same code the demo corpus uses."""

from __future__ import annotations

from pathlib import Path

from clap_corpus.pipeline.demo import synth

RATE = 16_000


def tone_bytes(freq: float = 440.0, seconds: float = 1.0, fmt: str = "flac", rate: int = RATE) -> bytes:
    """A ``seconds`` long sine at ``freq`` Hz (amplitude 0.5), mono, encoded as ``fmt``
    (any of ``synth.FORMATS``). Give each clip of a test its own pitch when the test needs clips that
    do not decode alike."""
    return synth.encode_audio(synth.tone(freq, seconds, rate), rate, fmt)


def write_tone(
    folder: Path, name: str, freq: float, seconds: float = 0.5, fmt: str = "wav", rate: int = RATE
) -> str:
    """:func:`tone_bytes` written to ``folder/<name>.<fmt>``; returns the path."""
    path = folder / f"{name}.{fmt}"
    path.write_bytes(tone_bytes(freq, seconds, fmt, rate))
    return str(path)
