"""transforms.decode on real encoded files: every format/rate/layout, and hostile input."""

from __future__ import annotations

import io
import pickle
import tracemalloc
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clap_corpus.core.audio import SAMPLE_RATE
from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record
from clap_corpus.core.rejects import RejectError
from clap_corpus.pipeline.demo import synth
from clap_corpus.transforms.decode import SAFE_INPUT_OPTIONS, DecodedAudio, DecodeError, decode_audio
from clap_corpus.transforms.flac import encode_flac
from clap_corpus.transforms.sample import SampleOptions, process_sample

# What conftest.encoded_matrix writes into every file.
TONE_HZ = 440.0
TONE_SECONDS = 1.5
RATES = (16_000, 22_050, 44_100, 48_000)
LAYOUTS = {"mono": 1, "stereo": 2}
MATRIX = [f"{fmt}-{rate}-{layout}" for fmt in synth.FORMATS for rate in RATES for layout in LAYOUTS]

CODECS = {"mp3": "mp3", "ogg": "vorbis", "opus": "opus", "m4a": "aac", "flac": "flac", "wav": "pcm_s16le"}
CONTAINERS = {
    "mp3": "mp3",
    "ogg": "ogg",
    "opus": "ogg",
    "m4a": "mov,mp4,m4a,3gp,3g2,mj2",
    "flac": "flac",
    "wav": "wav",
}


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def expect_error(code: str, data: bytes, **kwargs: object) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_audio(data, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code, info.value
    assert info.value.reason
    return info.value


# --- the format matrix ------------------------------------------------------------------------


@pytest.mark.parametrize("name", MATRIX)
def test_matrix_file_decodes_to_48k_mono(encoded_matrix: dict[str, Path], name: str) -> None:
    """Duration tolerance: WAV, FLAC, MP3 (LAME's gapless header) and Opus (pre-skip and end trim
    from the Ogg granule) decode to the encoded length within 1 ms. Vorbis and AAC may end with up to
    one codec frame of padding (AAC: 1024 samples, at the source rate), never less than the input."""
    fmt, rate_text, layout = name.split("-")
    rate, channels = int(rate_text), LAYOUTS[layout]
    out = decode_audio(encoded_matrix[name].read_bytes())

    assert isinstance(out, DecodedAudio)
    assert out.samples.dtype == np.float32
    assert out.samples.ndim == 1
    assert out.samples.flags.c_contiguous
    assert out.codec == CODECS[fmt]
    assert out.container == CONTAINERS[fmt]
    # Opus always decodes at 48 kHz; FFmpeg's vorbis encoder writes stereo only.
    assert out.source_rate == (48_000 if fmt == "opus" else rate)
    assert out.source_channels == (2 if fmt == "ogg" else channels)
    assert out.truncated is False
    assert out.source_duration_s == pytest.approx(TONE_SECONDS, abs=0.05)

    excess = out.duration_s - TONE_SECONDS
    if fmt in ("ogg", "m4a"):
        assert -1e-3 <= excess <= 1024 / rate + 1e-3
    else:
        assert abs(excess) <= 1e-3

    assert peak_frequency(out.samples, SAMPLE_RATE) == pytest.approx(TONE_HZ, abs=2.0)
    tone = synth.tone(TONE_HZ, TONE_SECONDS, rate)
    source = tone if channels == 1 else synth.to_channels(tone, channels).mean(axis=0)
    # loose enough for 16 kHz MP3, tight enough to catch a -3 dB or +6 dB downmix
    assert rms(out.samples) == pytest.approx(rms(source), rel=0.1)


def test_lossless_48k_mono_is_sample_exact(encoded_matrix: dict[str, Path]) -> None:
    path = encoded_matrix["wav-48000-mono"]
    expected, rate = soundfile.read(path, dtype="float32")
    out = decode_audio(path.read_bytes())
    assert rate == SAMPLE_RATE
    np.testing.assert_array_equal(out.samples, expected)


def test_stereo_downmix_is_the_channel_average() -> None:
    left = (synth.tone(440.0, 0.5, SAMPLE_RATE) * 32767).astype(np.int16)
    right = (synth.tone(1000.0, 0.5, SAMPLE_RATE, amplitude=0.9) * 32767).astype(np.int16)
    buf = io.BytesIO()
    soundfile.write(buf, np.stack([left, right], axis=1), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    out = decode_audio(buf.getvalue())
    expected = (left.astype(np.float32) + right.astype(np.float32)) / 2 / 32768
    np.testing.assert_allclose(out.samples, expected, rtol=0, atol=1e-7)
    assert out.source_channels == 2


@pytest.mark.parametrize("rate", [16_000, 22_050, 44_100])
def test_resampled_length_is_exact_for_lossless_input(encoded_matrix: dict[str, Path], rate: int) -> None:
    out = decode_audio(encoded_matrix[f"flac-{rate}-stereo"].read_bytes())
    assert len(out.samples) == round(TONE_SECONDS * SAMPLE_RATE)


def test_integer_and_float_sample_formats_are_scaled_to_unit_range() -> None:
    u8 = synth.wav_with_header(bytes([192]) * 4800, channels=1, rate=48_000, bits=8)
    s24 = synth.wav_with_header(b"\x00\x00\x40" * 4800, channels=1, rate=48_000, bits=24)
    f64 = synth.wav_with_header(np.full(4800, 0.25).tobytes(), channels=1, rate=48_000, bits=64, format_tag=3)
    np.testing.assert_array_equal(decode_audio(u8).samples, np.full(4800, 0.5, np.float32))
    np.testing.assert_array_equal(decode_audio(s24).samples, np.full(4800, 0.5, np.float32))
    np.testing.assert_array_equal(decode_audio(f64).samples, np.full(4800, 0.25, np.float32))


# --- the duration cap -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def five_second_flac_44k() -> bytes:
    return synth.encode_audio(synth.chirp(200.0, 4000.0, 5.0, 44_100), 44_100, "flac")


def test_long_file_is_cut_exactly_and_flagged(five_second_flac_44k: bytes) -> None:
    full = decode_audio(five_second_flac_44k)
    assert not full.truncated
    cut = decode_audio(five_second_flac_44k, max_duration_s=1.5)
    assert cut.truncated
    assert len(cut.samples) == 72_000
    # the cap takes a prefix of the same decode, it does not change the samples
    np.testing.assert_array_equal(cut.samples, full.samples[:72_000])


def test_file_exactly_at_the_cap_is_not_truncated() -> None:
    data = synth.encode_audio(synth.tone(440.0, 1.0, SAMPLE_RATE), SAMPLE_RATE, "wav")
    out = decode_audio(data, max_duration_s=1.0)
    assert len(out.samples) == SAMPLE_RATE
    assert not out.truncated


def test_memory_stays_bounded_for_a_file_that_decodes_to_ten_minutes() -> None:
    # Ten minutes of 8 kHz silence is ~60 kB of FLAC but 115 MB as float32 at 48 kHz.
    data = encode_flac(np.zeros(8_000 * 600, dtype=np.int16), 8_000)
    tracemalloc.start()
    try:
        out = decode_audio(data, max_duration_s=2.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.truncated
    assert len(out.samples) == 2 * SAMPLE_RATE
    assert peak < 8 * 2**20


# --- bad input --------------------------------------------------------------------------------


def test_empty_input() -> None:
    expect_error("empty_file", b"")


def test_random_bytes() -> None:
    data = np.random.default_rng(1234).bytes(4096)
    with pytest.raises(DecodeError) as info:
        decode_audio(data)
    assert info.value.code in ("not_audio", "corrupt")


def test_text_file() -> None:
    expect_error("not_audio", b"A dog barks twice in the distance, then a car passes.\n" * 40)


def test_mp3_cut_short_returns_what_decoded(encoded_matrix: dict[str, Path]) -> None:
    data = encoded_matrix["mp3-44100-mono"].read_bytes()
    out = decode_audio(data[: len(data) // 2])
    assert 0.5 < out.duration_s < 1.0
    assert not out.truncated
    assert out.source_duration_s is not None
    assert peak_frequency(out.samples, SAMPLE_RATE) == pytest.approx(TONE_HZ, abs=3.0)


def test_mp3_cut_inside_its_header_is_corrupt(encoded_matrix: dict[str, Path]) -> None:
    data = encoded_matrix["mp3-44100-mono"].read_bytes()
    expect_error("corrupt", data[:100])


def test_m4a_without_its_index_is_corrupt(encoded_matrix: dict[str, Path]) -> None:
    # FFmpeg writes the moov index at the end: half a file has no index at all.
    data = encoded_matrix["m4a-44100-mono"].read_bytes()
    expect_error("corrupt", data[: len(data) // 2])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_samples(bad: float) -> None:
    samples = synth.tone(440.0, 0.1, SAMPLE_RATE)
    samples[1000] = bad
    data = synth.wav_with_header(samples.tobytes(), channels=1, rate=SAMPLE_RATE, bits=32, format_tag=3)
    expect_error("non_finite", data)


def test_forty_channel_header() -> None:
    payload = np.random.default_rng(0).integers(-1000, 1000, 40 * 4800, dtype=np.int16).tobytes()
    data = synth.wav_with_header(payload, channels=40, rate=48_000, bits=16)
    expect_error("too_many_channels", data)
    out = decode_audio(data, max_channels=64)
    assert out.source_channels == 40
    expected = np.frombuffer(payload, np.int16).reshape(-1, 40).astype(np.float64).mean(axis=1) / 32768
    np.testing.assert_allclose(out.samples, expected, atol=1e-6)


@pytest.mark.parametrize("rate", [500, 2_000_000])
def test_absurd_sample_rate_header(rate: int) -> None:
    data = synth.wav_with_header(np.zeros(4800, np.int16).tobytes(), channels=1, rate=rate, bits=16)
    expect_error("bad_sample_rate", data)


def test_file_without_an_audio_stream() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuvj420p"
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        frame = picture.reformat(format="yuvj420p")
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    expect_error("no_audio_stream", buf.getvalue())


def test_unknown_codec_in_a_wav() -> None:
    data = synth.wav_with_header(bytes(9600), channels=1, rate=8_000, bits=16, format_tag=0x9999)
    expect_error("unsupported_codec", data)


def test_time_limit(encoded_matrix: dict[str, Path]) -> None:
    expect_error("time_limit", encoded_matrix["mp3-44100-stereo"].read_bytes(), time_limit_s=0.0)


def test_a_wav_without_frames_is_too_short() -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
    err = expect_error("too_short", buf.getvalue())
    assert err.reason == "0 samples decoded, fewer than the 1 required"


def test_a_clip_under_min_duration_is_too_short(encoded_matrix: dict[str, Path]) -> None:
    # min_duration_s is the spec's bound; the sample builder applies it to what decoded.
    record = Record(key="k", source="s", source_id="k", audio=LocalFile("/x/k.wav"), row=1, text=("a tone",))
    data = encoded_matrix["wav-48000-mono"].read_bytes()
    seconds = decode_audio(data).duration_s
    with pytest.raises(RejectError) as info:
        process_sample(record, data, SampleOptions(store_mel=False, min_duration_s=seconds + 0.5))
    assert (info.value.stage, info.value.code) == ("decode", "too_short")
    assert f"clip is {seconds:.3f} s" in info.value.reason


def test_every_decode_applies_the_one_duration_rule(encoded_matrix: dict[str, Path]) -> None:
    # The rule lives in decode_audio (issue 25): the duplicate pass hashes what the shard writer
    # keeps, so a clip under min_duration_s is too_short there too, never one of a duplicate group.
    from clap_corpus.pipeline.stages.duplicates import decoded_digest

    data = encoded_matrix["wav-48000-mono"].read_bytes()
    seconds = decode_audio(data).duration_s
    with pytest.raises(RejectError) as info:
        decoded_digest(data, SampleOptions(min_duration_s=seconds + 0.5))
    assert (info.value.stage, info.value.code) == ("decode", "too_short")
    assert decoded_digest(data, SampleOptions(min_duration_s=seconds - 0.5))


def test_decode_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(DecodeError("corrupt", "3 of 9 audio packets failed to decode")))
    assert type(err) is DecodeError and err.stage == "decode"
    assert (err.code, err.reason) == ("corrupt", "3 of 9 audio packets failed to decode")
    assert str(err) == "corrupt: 3 of 9 audio packets failed to decode"


# --- files that point at other files ----------------------------------------------------------


@pytest.fixture
def audio_beside_playlists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real WAV in the working directory, where relative playlist entries resolve."""
    (tmp_path / "secret.wav").write_bytes(synth.encode_audio(synth.tone(440.0, 1.0, 48_000), 48_000, "wav"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_ffconcat_list_disguised_as_wav_is_never_followed(audio_beside_playlists: Path) -> None:
    for entry in ("secret.wav", str(audio_beside_playlists / "secret.wav")):
        listing = f"ffconcat version 1.0\nfile '{entry}'\n".encode()
        disguised = audio_beside_playlists / "clip.wav"
        disguised.write_bytes(listing)
        if entry == "secret.wav":
            # Control: plain FFmpeg does follow the list and reads the other file.
            with av.open(str(disguised)) as container:
                assert container.format.name == "concat"
                assert sum(f.samples for f in container.decode(audio=0)) == 48_000
        err = expect_error("format_not_allowed", disguised.read_bytes())
        assert "never read" in err.reason


def test_hls_playlist_disguised_as_mp3_is_never_followed(audio_beside_playlists: Path) -> None:
    for entry in ("secret.wav", (audio_beside_playlists / "secret.wav").as_uri()):
        playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\n{entry}\n#EXT-X-ENDLIST\n".encode()
        (audio_beside_playlists / "list.m3u8").write_bytes(playlist)
        # Control: FFmpeg's HLS demuxer, opened on the playlist, reads the WAV it names.
        with av.open(str(audio_beside_playlists / "list.m3u8"), options={"extension_picky": "0"}) as c:
            assert c.format.name == "hls"
            assert sum(f.samples for f in c.decode(audio=0)) == 48_000
        (audio_beside_playlists / "song.mp3").write_bytes(playlist)
        expect_error("format_not_allowed", (audio_beside_playlists / "song.mp3").read_bytes())


def test_each_lock_holds_on_its_own(audio_beside_playlists: Path) -> None:
    concat = b"ffconcat version 1.0\nfile 'secret.wav'\n"
    hls = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\nsecret.wav\n#EXT-X-ENDLIST\n"
    # The demuxer whitelist alone refuses the concat demuxer...
    with pytest.raises(av.FFmpegError):
        av.open(
            io.BytesIO(concat), container_options={"format_whitelist": SAFE_INPUT_OPTIONS["format_whitelist"]}
        )
    # ...and the protocol whitelist alone stops a demuxer forced to follow the list.
    no_protocols = {"protocol_whitelist": SAFE_INPUT_OPTIONS["protocol_whitelist"]}
    forced = [("concat", concat, no_protocols), ("hls", hls, {**no_protocols, "extension_picky": "0"})]
    for demuxer, listing, options in forced:
        with pytest.raises(av.FFmpegError):
            container = av.open(io.BytesIO(listing), format=demuxer, container_options=options)
            with container:
                list(container.decode(audio=0))


# --- fuzzing ----------------------------------------------------------------------------------

FUZZ_SEEDS = ["mp3-44100-stereo", "ogg-22050-mono", "opus-48000-stereo", "m4a-16000-mono", "flac-48000-mono"]
FUZZ_SEEDS += ["wav-22050-stereo"]


def mutate(data: bytes, edits: list[tuple[int, int, int]], keep: float) -> bytes:
    out = bytearray(data[: max(1, int(len(data) * keep))])
    for kind, position, value in edits:
        i = position % len(out)
        if kind == 0:
            out[i] ^= 1 << (value % 8)  # bit flip
        elif kind == 1:
            out[i] = value % 256  # byte overwrite
        else:
            del out[i : i + 1 + value % 64]  # deletion shifts everything after it
            if not out:
                out.append(0)
    return bytes(out)


edit = st.tuples(st.integers(0, 2), st.integers(0, 2**31), st.integers(0, 255))
fuzz_input = st.one_of(
    st.binary(max_size=2048),
    st.tuples(
        st.sampled_from(FUZZ_SEEDS),
        st.lists(edit, max_size=8),
        st.floats(0.0, 1.0),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=fuzz_input)
def test_fuzz_only_returns_audio_or_raises_decode_error(
    encoded_matrix: dict[str, Path], case: bytes | tuple[str, list[tuple[int, int, int]], float]
) -> None:
    if isinstance(case, bytes):
        data = case
    else:
        name, edits, keep = case
        data = mutate(encoded_matrix[name].read_bytes(), edits, keep)
    try:
        out = decode_audio(data, time_limit_s=10.0)
    except DecodeError as err:
        assert err.code and err.reason
        return
    assert out.samples.dtype == np.float32 and out.samples.ndim == 1
    assert len(out.samples) >= 1
    assert np.isfinite(out.samples).all()
