"""pipeline.synth: deterministic signals and real encoded files."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from clap_corpus.pipeline.demo import synth

RATE = 16_000


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def spectral_slope(x: np.ndarray, rate: int) -> float:
    """Slope of log power against log frequency over 50 Hz - 5 kHz (white 0, pink -1, brown -2)."""
    segments = x[: len(x) // 1024 * 1024].reshape(-1, 1024) * np.hanning(1024)
    power = np.mean(np.abs(np.fft.rfft(segments, axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(1024, 1.0 / rate)
    band = (freqs >= 50) & (freqs <= 5000)
    return float(np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0])


def test_generators_return_float32_of_the_right_length() -> None:
    for x in (
        synth.tone(440.0, 1.25, RATE),
        synth.noise("pink", 1.25, RATE, seed=1),
        synth.chirp(100.0, 1000.0, 1.25, RATE),
        synth.rhythm(4.0, 1.25, RATE),
    ):
        assert x.dtype == np.float32
        assert x.shape == (20_000,)
        assert np.abs(x).max() <= 1.0


def test_tone_frequency_and_amplitude() -> None:
    x = synth.tone(440.0, 2.0, RATE, amplitude=0.25)
    assert dominant_frequency(x, RATE) == pytest.approx(440.0, abs=1.0)
    assert np.abs(x).max() == pytest.approx(0.25, abs=1e-3)


@pytest.mark.parametrize(("colour", "slope"), [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_colour(colour: str, slope: float) -> None:
    x = synth.noise(colour, 4.0, RATE, seed=7, amplitude=0.3)
    assert spectral_slope(x, RATE) == pytest.approx(slope, abs=0.25)
    assert np.abs(x).max() == pytest.approx(0.3, rel=1e-5)
    assert abs(float(np.mean(x))) < 0.05


def test_noise_is_seeded() -> None:
    a = synth.noise("pink", 0.5, RATE, seed=3)
    np.testing.assert_array_equal(a, synth.noise("pink", 0.5, RATE, seed=3))
    assert not np.array_equal(a, synth.noise("pink", 0.5, RATE, seed=4))
    with pytest.raises(ValueError):
        synth.noise("blue", 0.5, RATE, seed=3)


def test_chirp_sweeps_from_f0_to_f1() -> None:
    x = synth.chirp(200.0, 3000.0, 2.0, RATE)
    window = RATE // 10
    assert dominant_frequency(x[:window], RATE) == pytest.approx(200.0 + 2800.0 * 0.025, abs=40.0)
    assert dominant_frequency(x[-window:], RATE) == pytest.approx(3000.0 - 2800.0 * 0.025, abs=40.0)


def test_rhythm_has_one_click_per_beat() -> None:
    x = synth.rhythm(4.0, 2.0, RATE, click_freq=1000.0)
    loud = np.flatnonzero(np.abs(x) > 0.3)
    # a click is a burst of loud samples; bursts are 250 ms apart, a click lasts 30 ms
    clicks = 1 + int(np.sum(np.diff(loud) > RATE // 20))
    assert clicks == 8
    assert dominant_frequency(x, RATE) == pytest.approx(1000.0, abs=20.0)


def test_to_channels() -> None:
    mono = synth.tone(440.0, 0.5, RATE)
    stereo = synth.to_channels(mono, 2)
    assert stereo.shape == (2, len(mono)) and stereo.dtype == np.float32
    np.testing.assert_array_equal(stereo[0], mono)
    assert not np.allclose(stereo[0], stereo[1])
    np.testing.assert_array_equal(synth.to_channels(mono, 1), mono[np.newaxis, :])
    assert synth.to_channels(mono, 6).shape == (6, len(mono))


def probe(data: bytes) -> tuple[str, str, int, int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        ctx = stream.codec_context
        return container.format.name, ctx.codec.canonical_name, ctx.sample_rate, ctx.channels, samples


@pytest.mark.parametrize("fmt", synth.FORMATS)
def test_encode_audio_is_deterministic_and_decodable(fmt: str) -> None:
    stereo = synth.to_channels(synth.chirp(300.0, 3000.0, 1.0, 44_100), 2)
    data = synth.encode_audio(stereo, 44_100, fmt)
    assert synth.encode_audio(stereo.copy(), 44_100, fmt) == data
    _, codec, rate, channels, samples = probe(data)
    expected_codec = {"mp3": "mp3", "ogg": "vorbis", "opus": "opus", "m4a": "aac", "flac": "flac"}
    assert codec == expected_codec.get(fmt, "pcm_s16le")
    assert channels == 2
    assert rate == (48_000 if fmt == "opus" else 44_100)
    assert samples >= 0.99 * rate


def test_encode_audio_special_cases() -> None:
    mono = synth.tone(440.0, 0.5, 22_050)
    # FFmpeg's vorbis encoder is stereo-only: mono becomes two identical channels
    assert probe(synth.encode_audio(mono, 22_050, "ogg"))[3] == 2
    # Opus cannot take 22.05 kHz: resampled to 48 kHz first
    assert probe(synth.encode_audio(mono, 22_050, "opus"))[2] == 48_000
    for bad in ("aiff", "MP3"):
        with pytest.raises(ValueError):
            synth.encode_audio(mono, 22_050, bad)
    with pytest.raises(ValueError):
        synth.encode_audio(np.zeros(0, np.float32), 22_050, "wav")
    with pytest.raises(ValueError):
        synth.encode_audio(np.zeros((1, 2, 3), np.float32), 22_050, "wav")


def test_matrix_fixture_files_exist(encoded_matrix: dict[str, Path]) -> None:
    assert len(encoded_matrix) == len(synth.FORMATS) * 4 * 2
    for name, path in encoded_matrix.items():
        assert path.suffix == "." + name.split("-")[0]
        assert path.stat().st_size > 100
