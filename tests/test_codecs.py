"""Defects found on real recordings: codecs the whitelist refused, the multichannel downmix, partial
files, chained Ogg streams and silent clips. Every file here is really encoded, in the test, by PyAV's
encoders; the downmix is checked against the FFmpeg command line (imageio-ffmpeg's binary)."""

from __future__ import annotations

import io
import subprocess
import wave

import av
import numpy as np
import pytest
import yaml
from helpers.records import make_record

from clap_corpus.core.audio import SAMPLE_RATE, quantize_int16
from clap_corpus.core.rejects import RejectError
from clap_corpus.manifests.common import AUDIO_EXTENSIONS
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.spec.corpus import SpecError, parse_spec
from clap_corpus.transforms.decode import (
    ALLOWED_DEMUXERS,
    REFUSED_DEMUXERS,
    DecodeError,
    decode_audio,
    downmix_weights,
)
from clap_corpus.transforms.sample import (
    DBFS_FLOOR,
    SampleOptions,
    measure_level,
    process_sample,
)


def encode(
    x: np.ndarray, rate: int, muxer: str, encoder: str, *, layout: str | None = None, bit_rate: int = 0
) -> bytes:
    """``x`` ((n,) or (channels, n) float32) encoded by PyAV's ``encoder`` into a ``muxer`` file."""
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        x = x[np.newaxis]
    layout = layout or {1: "mono", 2: "stereo"}[x.shape[0]]
    codec = av.Codec(encoder, "w")
    sample_format = codec.audio_formats[0].name
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer, container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(encoder, rate=rate, layout=layout, options={"flags": "+bitexact"})
        stream.format = sample_format
        if bit_rate:
            stream.bit_rate = bit_rate
        # packed input: PyAV's from_ndarray mishandles planar frames of 8 channels or more
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(x.T.reshape(1, -1)), format="flt", layout=layout
        )
        frame.sample_rate, frame.pts = rate, 0
        size = stream.codec_context.frame_size or None
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate, frame_size=size)
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def peak_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(samples))


# --- 1. codecs FFmpeg decodes -----------------------------------------------------------------

# (muxer, encoder, rate, codec FFmpeg reports, container FFmpeg reports, extension)
ENCODED = [
    ("asf", "wmav2", 44_100, "wmav2", "asf", "wma", 128_000),
    ("asf", "wmav1", 44_100, "wmav1", "asf", "wma", 128_000),
    ("ac3", "ac3", 48_000, "ac3", "ac3", "ac3", 0),
    ("eac3", "eac3", 48_000, "eac3", "eac3", "eac3", 0),
    ("wv", "wavpack", 44_100, "wavpack", "wv", "wv", 0),
    ("tta", "tta", 44_100, "tta", "tta", "tta", 0),
    ("mp2", "mp2", 44_100, "mp2", "mp3", "mp2", 0),
    ("amr", "libopencore_amrnb", 8_000, "amr_nb", "amr", "amr", 12_200),
    ("au", "pcm_s16be", 22_050, "pcm_s16be", "au", "au", 0),
    ("caf", "alac", 44_100, "alac", "caf", "caf", 0),
    ("matroska", "wavpack", 44_100, "wavpack", "matroska,webm", "mka", 0),
]


@pytest.mark.parametrize("case", ENCODED, ids=[f"{c[1]}-in-{c[0]}" for c in ENCODED])
def test_codecs_ffmpeg_decodes_are_accepted(case: tuple) -> None:
    muxer, encoder, rate, codec, container, ext, bit_rate = case
    channels = 1 if rate == 8_000 else 2
    tone = synth.tone(440.0, 2.0, rate)
    data = encode(
        tone if channels == 1 else synth.to_channels(tone, 2), rate, muxer, encoder, bit_rate=bit_rate
    )
    out = decode_audio(data)
    assert (out.codec, out.container) == (codec, container)
    assert out.source_rate == rate
    assert out.duration_s == pytest.approx(2.0, abs=0.1)
    assert peak_frequency(out.samples) == pytest.approx(440.0, abs=3.0)
    assert not out.incomplete()
    assert ext in AUDIO_EXTENSIONS  # the adapters collect such files too


def test_every_allowed_demuxer_exists_and_none_names_other_files() -> None:
    for name in ALLOWED_DEMUXERS:
        av.ContainerFormat(name, "r")  # raises for a name the bundled FFmpeg cannot read
    assert not set(ALLOWED_DEMUXERS) & set(REFUSED_DEMUXERS)


def test_a_recognised_but_refused_format_has_its_own_code() -> None:
    # AVI is a video container FFmpeg reads; the audio inside (MP2) is one we decode elsewhere.
    avi = encode(synth.tone(440.0, 1.0, 44_100), 44_100, "avi", "mp2")
    with av.open(io.BytesIO(avi)) as control:
        assert control.format.name == "avi"
    for data in (avi, b"1\n00:00:01,000 --> 00:00:02,000\nhello\n\n"):  # and an SRT subtitle file
        with pytest.raises(DecodeError) as info:
            decode_audio(data)
        assert info.value.code == "format_not_allowed", info.value


@pytest.mark.parametrize(
    "data",
    [
        b"Extended Module: a song" + bytes(400),
        b"IMPM" + bytes(600),
        bytes(44) + b"SCRM" + bytes(600),
        bytes(1080) + b"M.K." + bytes(2000),
    ],
    ids=["xm", "it", "s3m", "mod"],
)
def test_tracker_modules_are_refused_with_their_own_code(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_audio(data)
    assert info.value.code == "tracker_module"


# --- 2. the multichannel downmix --------------------------------------------------------------


def multichannel_wav(layout: str, seconds: float = 1.0) -> tuple[bytes, np.ndarray]:
    """A 16-bit WAV with a different tone in every channel (FFmpeg writes the channel mask)."""
    n_channels = av.AudioLayout(layout).nb_channels
    freqs = (200, 300, 500, 700, 1100, 1300, 1700, 1900)
    x = np.stack([synth.tone(f, seconds, SAMPLE_RATE, amplitude=0.9) for f in freqs[:n_channels]])
    return encode(x, SAMPLE_RATE, "wav", "pcm_s16le", layout=layout), x


def ffmpeg_mono(data: bytes) -> np.ndarray:
    """What ``ffmpeg -i in.wav -ac 1 out.wav`` holds, as float (16-bit output, as from the CLI)."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    args = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-ac", "1"]
    done = subprocess.run(
        [*args, "-f", "s16le", "-c:a", "pcm_s16le", "-"], input=data, capture_output=True, check=True
    )
    return np.frombuffer(done.stdout, np.int16).astype(np.float32) / 32768


@pytest.mark.parametrize("layout", ["5.1", "7.1", "quad"])
def test_multichannel_downmix_matches_ffmpeg_ac_1(layout: str) -> None:
    data, x = multichannel_wav(layout)
    out = decode_audio(data)
    assert out.source_channels == x.shape[0]
    reference = ffmpeg_mono(data)
    assert len(reference) == len(out.samples)
    # two 16-bit steps: the CLI mixes in fixed point and rounds to s16, we keep float; a plain
    # average, or a mix that keeps the LFE, is off by thousands of steps
    np.testing.assert_allclose(out.samples, reference, rtol=0, atol=2.5 / 32768)
    # and nothing clips: a full-scale channel set stays within [-1, 1]
    assert np.abs(out.samples).max() <= 1.0


def test_five_one_weights_are_ffmpegs_and_lfe_is_left_out() -> None:
    w = downmix_weights("5.1")
    assert w is not None
    np.testing.assert_allclose(w, [0.2071, 0.2071, 0.2929, 0.0, 0.1464, 0.1464], atol=1e-4)
    assert sum(w) == pytest.approx(1.0)
    # six channels in no stated order: FFmpeg's guess for six is 5.1 (issue 25); for nine it has none,
    # and they keep the plain average
    assert downmix_weights("6 channels") == w
    assert downmix_weights("9 channels") is None


def unmasked_wav(n_channels: int, seconds: float = 1.0) -> bytes:
    """A 16-bit WAV with a different tone per channel and no channel mask (a plain PCM header, as
    Python's wave module and many recorders write it): FFmpeg reads its layout as unspecified."""
    freqs = (200, 300, 500, 700, 1100, 1300, 1700, 1900, 2300, 2900, 3100, 3700)
    x = np.stack([synth.tone(freqs[i], seconds, SAMPLE_RATE, amplitude=0.9) for i in range(n_channels)])
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(n_channels)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.round(x.T * 32767).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("n_channels", [3, 4, 5, 6, 7, 8, 10])
def test_channels_without_a_mask_are_mixed_as_ffmpeg_guesses_them(n_channels: int) -> None:
    # `ffmpeg -ac 1` logs "Guessed Channel Layout: 5.1" for six channels and mixes them as 5.1; so do
    # we, for every count FFmpeg has a guess for (before issue 25 they were averaged: 6.5 dB SNR
    # against FFmpeg's mix for six channels)
    data = unmasked_wav(n_channels)
    out = decode_audio(data)
    assert out.source_channels == n_channels
    reference = ffmpeg_mono(data)
    assert len(reference) == len(out.samples)
    np.testing.assert_allclose(out.samples, reference, rtol=0, atol=2.5 / 32768)


def test_channels_ffmpeg_cannot_guess_are_averaged() -> None:
    data = unmasked_wav(9)
    x = np.frombuffer(data[44:], "<i2").reshape(-1, 9).astype(np.float64) / 32768
    out = decode_audio(data)
    np.testing.assert_allclose(out.samples, x.mean(axis=1), rtol=0, atol=1e-6)


def test_only_the_lfe_channel_contributes_nothing() -> None:
    x = np.zeros((6, SAMPLE_RATE), np.float32)
    x[3] = synth.tone(60.0, 1.0, SAMPLE_RATE, amplitude=0.9)  # LFE only
    out = decode_audio(encode(x, SAMPLE_RATE, "wav", "pcm_s16le", layout="5.1"))
    assert np.abs(out.samples).max() == 0.0


# --- 3. partial files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def six_second_flac() -> bytes:
    return synth.encode_audio(synth.tone(440.0, 6.0, 44_100), 44_100, "flac")


def test_a_cut_flac_is_flagged_incomplete_not_truncated(six_second_flac: bytes) -> None:
    out = decode_audio(six_second_flac[:12_000])
    assert out.duration_s < 0.5 and out.declared_duration_s == pytest.approx(6.0)
    assert out.incomplete() and not out.truncated
    sample = process_sample(
        make_record(split="train", text=("a tone",)), six_second_flac[:12_000], SampleOptions(store_mel=False)
    )
    assert sample.meta["incomplete"] is True and sample.meta["truncated"] is False
    with pytest.raises(RejectError) as info:
        process_sample(
            make_record(split="train", text=("a tone",)),
            six_second_flac[:12_000],
            SampleOptions(store_mel=False, on_incomplete="reject"),
        )
    assert (info.value.stage, info.value.code) == ("decode", "incomplete")


def test_a_cut_wav_is_incomplete_by_its_header() -> None:
    """FFmpeg clamps a WAV's data size to the bytes present, so only the header tells a cut WAV."""
    wav = synth.encode_audio(synth.to_channels(synth.tone(440.0, 6.0, 44_100), 2), 44_100, "wav")
    whole = decode_audio(wav)
    assert whole.declared_duration_s == pytest.approx(6.0, abs=1e-3) and not whole.incomplete()
    cut = decode_audio(wav[: len(wav) * 3 // 10])
    assert cut.duration_s == pytest.approx(1.8, abs=0.01) and cut.declared_duration_s == pytest.approx(6.0)
    assert cut.incomplete()
    # A LIST chunk before the data chunk, as many editors write: the walk finds the data chunk.
    fmt_end = wav.index(b"data")
    info = b"LIST" + (5).to_bytes(4, "little") + b"INFOx" + b"\0"  # odd size: one pad byte
    riff_size = (len(wav) - 8 + len(info)).to_bytes(4, "little")
    listed = wav[:4] + riff_size + wav[8:fmt_end] + info + wav[fmt_end:]
    assert decode_audio(listed[: len(listed) // 2]).incomplete()
    # A streamed WAV says its size is unknown (0xFFFFFFFF): not judged, whatever is there.
    streamed = wav[: fmt_end + 4] + b"\xff\xff\xff\xff" + wav[fmt_end + 8 : len(wav) // 2]
    out = decode_audio(streamed)
    assert out.duration_s == pytest.approx(3.0, abs=0.01) and not out.incomplete()


def test_our_own_cap_is_not_incomplete(six_second_flac: bytes) -> None:
    sample = process_sample(
        make_record(split="train", text=("a tone",)),
        six_second_flac,
        SampleOptions(store_mel=False, max_duration_s=2.0),
    )
    assert sample.meta["truncated"] is True and sample.meta["incomplete"] is False
    full = process_sample(
        make_record(split="train", text=("a tone",)), six_second_flac, SampleOptions(store_mel=False)
    )
    assert full.meta["incomplete"] is False


def test_a_cut_mp3_with_a_length_header_is_incomplete_one_without_is_not_judged() -> None:
    mp3 = synth.encode_audio(synth.tone(440.0, 6.0, 44_100), 44_100, "mp3")  # LAME writes an Info header
    assert decode_audio(mp3[: len(mp3) // 3]).incomplete()
    assert not decode_audio(mp3).incomplete()
    # MP2 has no such header: FFmpeg's length is a guess from the bitrate, which shrinks with the cut
    mp2 = encode(synth.tone(440.0, 6.0, 44_100), 44_100, "mp2", "mp2")
    cut = decode_audio(mp2[: len(mp2) // 3])
    assert cut.declared_duration_s is None and not cut.incomplete()


def test_incomplete_threshold_is_configurable(six_second_flac: bytes) -> None:
    out = decode_audio(six_second_flac[: len(six_second_flac) * 2 // 3])
    share = out.duration_s / 6.0
    assert 0.5 < share < 0.8
    assert out.incomplete(0.9) and not out.incomplete(0.5)


def spec_with(**options: object) -> dict:
    return {
        "corpus": "c",
        "options": options,
        "sources": [{"name": "s", "adapter": "generic", "audio_root": "."}],
    }


def test_spec_checks_on_incomplete_and_levels(tmp_path) -> None:
    (tmp_path / "m.jsonl").write_text("")
    base = spec_with(on_incomplete="reject", min_peak_dbfs=-50, min_rms_dbfs=-65.5)
    base["sources"][0]["manifest"] = str(tmp_path / "m.jsonl")
    spec = parse_spec(base, str(tmp_path / "spec.yaml"))
    assert spec.options.sample.on_incomplete == "reject"
    assert (spec.options.sample.min_peak_dbfs, spec.options.sample.min_rms_dbfs) == (-50.0, -65.5)
    for bad, field in (({"on_incomplete": "drop"}, "on_incomplete"), ({"min_peak_dbfs": 3}, "min_peak_dbfs")):
        doc = yaml.safe_load(yaml.safe_dump(base))
        doc["options"].update(bad)
        with pytest.raises(SpecError) as info:
            parse_spec(doc, str(tmp_path / "spec.yaml"))
        assert "spec.yaml" in str(info.value) and f"options.{field}" in str(info.value)


# --- 4. chained Ogg ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["opus", "ogg"])
def test_every_chained_ogg_stream_is_decoded(fmt: str) -> None:
    rate = 48_000 if fmt == "opus" else 44_100
    first = synth.tone(440.0, 3.0, rate)
    # the second stream differs: stereo after mono (Opus), 22.05 after 44.1 kHz (Vorbis, always stereo)
    second_rate = rate if fmt == "opus" else 22_050
    second = synth.to_channels(synth.tone(1000.0, 3.0, second_rate), 2)
    data = synth.encode_audio(first, rate, fmt) + synth.encode_audio(second, second_rate, fmt)
    with av.open(io.BytesIO(data)) as control, pytest.raises(av.FFmpegError):
        # control: FFmpeg's Ogg demuxer gives up at the second chain
        for _ in control.demux():
            pass
    out = decode_audio(data)
    assert out.duration_s == pytest.approx(6.0, abs=0.05)
    assert peak_frequency(out.samples[: 2 * SAMPLE_RATE]) == pytest.approx(440.0, abs=3.0)
    assert peak_frequency(out.samples[-2 * SAMPLE_RATE :]) == pytest.approx(1000.0, abs=3.0)
    assert not out.incomplete()
    capped = decode_audio(data, max_duration_s=4.0)
    assert capped.truncated and len(capped.samples) == 4 * SAMPLE_RATE


def test_a_chain_that_cannot_be_decoded_flags_the_sample() -> None:
    first = synth.encode_audio(synth.tone(440.0, 2.0, 48_000), 48_000, "opus")
    second = synth.encode_audio(synth.tone(880.0, 2.0, 48_000), 48_000, "opus")
    out = decode_audio(first + second[:200])  # the second chain's header pages are cut
    assert out.chains_dropped == 1 and out.incomplete()


# --- 5. degenerate audio ----------------------------------------------------------------------


def test_measure_level() -> None:
    full = quantize_int16(synth.tone(440.0, 1.0, SAMPLE_RATE, amplitude=1.0))
    level = measure_level(full)
    assert level.peak_dbfs == pytest.approx(0.0, abs=0.01)
    assert level.rms_dbfs == pytest.approx(-3.01, abs=0.02)
    assert level.silent_fraction == 0.0
    half = np.concatenate([full[: SAMPLE_RATE // 2], np.zeros(SAMPLE_RATE // 2, np.int16)])
    assert measure_level(half).silent_fraction == pytest.approx(0.5, abs=0.02)
    zero = measure_level(np.zeros(SAMPLE_RATE, np.int16))
    assert zero.digital_silence and zero.peak_dbfs == zero.rms_dbfs == DBFS_FLOOR
    assert measure_level(np.array([-32768], np.int16)).peak_dbfs >= 0.0  # no int16 overflow


def wav_bytes(x: np.ndarray) -> bytes:
    return synth.encode_audio(x, SAMPLE_RATE, "wav")


@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(30 * SAMPLE_RATE, np.float32),  # 30 s of digital silence
        synth.tone(440.0, 0.013, SAMPLE_RATE, amplitude=2e-4),  # 13 ms at -74 dBFS
    ],
    ids=["all_zero_30s", "near_silent_13ms"],
)
def test_silent_clips_are_rejected(signal: np.ndarray) -> None:
    with pytest.raises(RejectError) as info:
        process_sample(
            make_record(split="train", text=("a tone",)), wav_bytes(signal), SampleOptions(store_mel=False)
        )
    assert (info.value.stage, info.value.code) == ("level", "silent")
    assert info.value.reason


def test_quiet_but_real_recordings_are_kept_and_levels_shipped() -> None:
    # brown noise peaking at -40 dBFS (RMS near -50): a quiet room, not silence
    quiet = synth.noise("brown", 3.0, SAMPLE_RATE, seed=3, amplitude=0.01)
    sample = process_sample(
        make_record(split="train", text=("a tone",)), wav_bytes(quiet), SampleOptions(store_mel=False)
    )
    assert sample.meta["peak_dbfs"] == pytest.approx(-40.0, abs=0.1)
    assert -65.0 < sample.meta["rms_dbfs"] < -40.0
    assert 0.0 <= sample.meta["silent_fraction"] <= 1.0
    # a stricter spec rejects it
    with pytest.raises(RejectError):
        process_sample(
            make_record(split="train", text=("a tone",)),
            wav_bytes(quiet),
            SampleOptions(store_mel=False, min_peak_dbfs=-30.0),
        )


# --- the run: summary, report and Parquet -----------------------------------------------------


def test_a_run_counts_silent_and_incomplete_clips(tmp_path) -> None:
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    from clap_corpus.pipeline.launch.run import format_report, run_corpus
    from clap_corpus.pipeline.outputs.summary_model import RunSummary

    audio = tmp_path / "audio"
    audio.mkdir()
    flac = synth.encode_audio(synth.tone(440.0, 6.0, 44_100), 44_100, "flac")
    files = {
        "good.wma": encode(
            synth.to_channels(synth.tone(440.0, 2.0, 44_100), 2), 44_100, "asf", "wmav2", bit_rate=128_000
        ),
        "cut.flac": flac[:20_000],
        "zeros.wav": wav_bytes(np.zeros(3 * SAMPLE_RATE, np.float32)),
        "song.xm": b"Extended Module: a song" + bytes(400),
    }
    for name, data in files.items():
        (audio / name).write_bytes(data)
    (audio / "m.jsonl").write_text(
        "".join(json.dumps({"audio": n, "id": n, "captions": ["x"]}) + "\n" for n in files)
    )
    spec = tmp_path / "spec.yaml"
    options = {"shard_size": 8, "store_mel": False, "split_proportions": {"train": 1.0}}
    source = {"name": "s", "adapter": "generic", "manifest": "audio/m.jsonl", "audio_root": "audio"}
    spec.write_text(yaml.safe_dump({"corpus": "levels", "options": options, "sources": [source]}))
    out = tmp_path / "out"
    summary = run_corpus(str(spec), str(out), ["--runner=FnApiRunner"])
    assert summary["accounting_ok"] and summary["samples"] == 2
    assert (summary["incomplete"], summary["silent"]) == (1, 1)
    assert summary["rejects_by_code"] == {"silent": 1, "tracker_module": 1}
    (table,) = [pq.read_table(p).to_pylist() for p in out.glob("parquet/*/*.parquet")]
    rows = {r["source_id"]: r for r in table}
    assert rows["cut.flac"]["incomplete"] and not rows["good.wma"]["incomplete"]
    assert rows["good.wma"]["original_codec"] == "wmav2" and rows["good.wma"]["peak_dbfs"] > -10
    peaks = summary["distributions"]["peak_dbfs"]["counts"]
    assert sum(peaks) == sum(summary["distributions"]["rms_dbfs"]["counts"]) == 2
    report = json.loads(Path(out, "report", "report.json").read_text())
    assert report["totals"]["silent"] == 1 and report["totals"]["incomplete"] == 1
    assert report["peak_level_histogram"]["counts"] == peaks
    assert "samples by peak" in Path(out, "report", "index.html").read_text()
    printed = format_report(RunSummary.from_json(summary))
    assert "0 truncated at max_duration_s, 1 incomplete kept" in printed and "1 silent rejected" in printed
