"""Synthetic sounds and real encoded files made from them.

Used by the tests (a matrix of real files in every format the pipeline reads), the demo corpus and the
trainer's synthetic corpus. Everything is deterministic: the signals are pure functions of their
arguments (noise draws from a numpy Generator seeded by the caller), and the encoders run with
FFmpeg's bitexact flags so the same samples give the same bytes on every run of the pinned PyAV.
"""

from __future__ import annotations

import struct

import numpy as np

# The encoders are transforms/encode.py's (CLAP scoring makes its calibration copies with them too);
# the demo and the tests take them from here with the signals.
from clap_corpus.transforms.encode import FORMATS, encode_audio  # noqa: F401


def _time(seconds: float, rate: int) -> np.ndarray:
    n = round(seconds * rate)
    # float64 for the phase: float32 time loses sub-sample precision after a few seconds
    return np.arange(n, dtype=np.float64) / rate


def tone(freq_hz: float, seconds: float, rate: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A sine at ``freq_hz``, ``seconds`` long, as float32 samples at ``rate``."""
    t = _time(seconds, rate)
    return (amplitude * np.sin(2.0 * np.pi * freq_hz * t)).astype(np.float32)


def noise(colour: str, seconds: float, rate: int, *, seed: int, amplitude: float = 0.3) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f² power) noise, scaled so its peak is ``amplitude``."""
    if colour not in ("white", "pink", "brown"):
        raise ValueError(f"unknown noise colour {colour!r}: expected 'white', 'pink' or 'brown'")
    n = round(seconds * rate)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    if colour == "white":
        shaped = white
    else:
        # Shape the spectrum in one FFT instead of filtering sample by sample; cumulative-sum brown
        # noise would also drift without bound, this version has no DC.
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, d=1.0 / rate)
        gain = np.zeros_like(freqs)
        exponent = 0.5 if colour == "pink" else 1.0
        gain[1:] = 1.0 / freqs[1:] ** exponent
        shaped = np.fft.irfft(spectrum * gain, n=n)
    peak = float(np.max(np.abs(shaped)))
    if peak == 0.0:
        return np.zeros(n, dtype=np.float32)
    return (shaped * (amplitude / peak)).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float, rate: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A linear sweep from ``f0`` to ``f1`` Hz over ``seconds``."""
    t = _time(seconds, rate)
    duration = max(seconds, 1e-12)
    phase = 2.0 * np.pi * (f0 * t + (f1 - f0) * t * t / (2.0 * duration))
    return (amplitude * np.sin(phase)).astype(np.float32)


def rhythm(
    beats_per_second: float,
    seconds: float,
    rate: int,
    *,
    click_freq: float = 1000.0,
    amplitude: float = 0.6,
) -> np.ndarray:
    """Clicks (short decaying bursts at ``click_freq``) at a steady ``beats_per_second``."""
    if beats_per_second <= 0:
        raise ValueError("beats_per_second must be positive")
    n = round(seconds * rate)
    out = np.zeros(n, dtype=np.float32)
    click_len = min(int(0.03 * rate), n)
    if click_len == 0:
        return out
    tc = np.arange(click_len, dtype=np.float64) / rate
    click = (amplitude * np.sin(2.0 * np.pi * click_freq * tc) * np.exp(-tc / 0.006)).astype(np.float32)
    period = rate / beats_per_second
    for start in (np.arange(0.0, n, period)).astype(np.int64):
        stop = min(start + click_len, n)
        out[start:stop] += click[: stop - start]
    return out


def to_channels(mono: np.ndarray, channels: int) -> np.ndarray:
    """(n,) -> (channels, n). Channel 0 is the input; the others are a little quieter and a few
    samples late, so that a downmix is not a trivial copy and channel mix-ups are visible."""
    mono = np.asarray(mono, dtype=np.float32)
    if mono.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {mono.shape}")
    if channels < 1:
        raise ValueError("channels must be at least 1")
    out = np.empty((channels, mono.shape[0]), dtype=np.float32)
    for c in range(channels):
        gain = np.float32(1.0 - 0.1 * c / channels)
        delay = min(c * 3, mono.shape[0])
        out[c, :delay] = 0.0
        out[c, delay:] = mono[: mono.shape[0] - delay] * gain
    return out


def wav_with_header(
    payload: bytes, *, channels: int, rate: int, bits: int, format_tag: int = 1, data_size: int | None = None
) -> bytes:
    """A WAV file with a hand-written header, for hostile-input tests.

    ``format_tag`` 1 is integer PCM, 3 IEEE float; ``data_size`` lets the header claim more (or
    less) data than ``payload`` holds.
    """
    block_align = channels * bits // 8
    byte_rate = min(rate * block_align, 2**32 - 1)
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, byte_rate, block_align, bits)
    claimed = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", claimed)
    return b"RIFF" + struct.pack("<I", min(len(body) + claimed, 2**32 - 1)) + body + payload
