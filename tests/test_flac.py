"""transforms.flac: bit-exact, deterministic 16-bit mono FLAC."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from clap_corpus.core.audio import quantize_int16
from clap_corpus.pipeline.demo import synth
from clap_corpus.transforms.decode import DecodeError
from clap_corpus.transforms.flac import decode_flac, encode_flac


def random_int16(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).integers(-32768, 32768, n, dtype=np.int16)
    if n >= 2:
        x[:2] = (-32768, 32767)  # the extremes must survive too
    return x


@pytest.mark.parametrize("n", [1, 4095, 4096, 4097, 3 * 48_000 + 17])
def test_round_trip_is_bit_exact(n: int) -> None:
    samples = random_int16(n, seed=n)
    decoded, rate = decode_flac(encode_flac(samples))
    assert rate == 48_000
    assert decoded.dtype == np.int16
    assert decoded.shape == (n,)
    np.testing.assert_array_equal(decoded, samples)


def test_round_trip_of_quantized_audio_and_another_rate() -> None:
    samples = quantize_int16(
        synth.chirp(100.0, 7000.0, 2.0, 16_000) + synth.noise("pink", 2.0, 16_000, seed=5)
    )
    decoded, rate = decode_flac(encode_flac(samples, 16_000))
    assert rate == 16_000
    np.testing.assert_array_equal(decoded, samples)


def test_same_input_gives_identical_bytes() -> None:
    samples = random_int16(48_000)
    first = encode_flac(samples)
    assert encode_flac(samples.copy()) == first
    # no encoder version strings (bitexact): only the fixed vendor string "ffmpeg"
    assert b"Lavf" not in first and b"Lavc" not in first


def test_soundfile_reads_48k_mono_pcm16() -> None:
    samples = random_int16(12_345)
    data = encode_flac(samples)
    info = soundfile.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (48_000, 1, "PCM_16", 12_345)
    read, _ = soundfile.read(io.BytesIO(data), dtype="int16")
    np.testing.assert_array_equal(read, samples)


def test_no_padding_block() -> None:
    # FFmpeg reserves 8 KiB for later tag edits unless told not to.
    assert len(encode_flac(np.zeros(10, np.int16))) < 1024


@pytest.mark.parametrize(
    "bad",
    [np.zeros(10, np.float32), np.zeros((2, 10), np.int16), np.zeros(0, np.int16), np.zeros(10, np.int32)],
)
def test_encode_rejects_anything_but_nonempty_1d_int16(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_flac(bad)


def test_decode_multichannel_flac_gives_channels_first() -> None:
    stereo = synth.to_channels(synth.tone(440.0, 0.5, 48_000), 2)
    decoded, rate = decode_flac(synth.encode_audio(stereo, 48_000, "flac"))
    assert rate == 48_000
    assert decoded.shape == (2, 24_000)
    assert not np.array_equal(decoded[0], decoded[1])


@pytest.mark.parametrize("data", [b"", b"not a flac file at all" * 10, b"fLaC" + bytes(60)])
def test_decode_rejects_non_flac(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_flac(data)
