"""transforms.views (numpy) and transforms.views_torch against an independent re-implementation of
LAION-CLAP's get_audio_features, and against each other.

The reference below is written from LAION-CLAP's get_audio_features with torchaudio's MelSpectrogram and
AmplitudeToDB, an antialiased bilinear resize in numpy written from its definition (torchvision is not
a dependency), and LAION's crop logic re-typed here; it shares no code with the product except the crop
starts taken from the plan (LAION draws them at random, we record them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave as wave_file

import numpy as np
import pytest
import torch
import torchaudio
from laion_mel import laion_get_mel

from clap_corpus.core.audio import CLIP_SAMPLES, int16_to_float, quantize_int16
from clap_corpus.transforms.views import (
    CHUNK_FRAMES,
    HOP,
    MEL_BINS,
    WIN,
    ViewPlan,
    compute_views,
    hann_window,
    laion_loader_input,
    log_mel,
    mel_filterbank,
    plan_views,
    views_from_int16,
)
from clap_corpus.transforms.views_torch import compute_views_torch, laion_loader_input_torch, log_mel_torch

SR = 48_000
# The product stores float16: agreement to float16's unit roundoff (relative) is all that can matter.
# The absolute floor covers values near 0 dB, where a relative bound would demand more than float32.
# Measured: the mel agrees with torchaudio to ~1e-5 dB; the global view to ~2e-3 dB, which is torch's
# float32 antialias kernel (what torchvision runs too) against the float64 resize below.
F16_RTOL = 2.0**-11
F16_ATOL = 1e-3


# ---------------------------------------------------------------------------------------------------
# Reference implementation (independent of transforms.views)
# ---------------------------------------------------------------------------------------------------


def _reference_mel(audio: torch.Tensor) -> torch.Tensor:
    return laion_get_mel()(audio).T  # (T, n_mels)


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


def _resize_axis0_bilinear_antialias(a: np.ndarray, out_len: int) -> np.ndarray:
    """Antialiased bilinear (triangle filter) resampling along axis 0, half-pixel centres.

    The definition PIL and torch's ``antialias=True`` use: output i is centred at ``(i + 0.5) * s``
    in input coordinates (s = in/out); when shrinking the triangle is stretched by s; weights over
    the input samples inside the support are normalised to sum to one.
    """
    in_len = a.shape[0]
    scale = in_len / out_len
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    out = np.empty((out_len, *a.shape[1:]), dtype=np.float64)
    for i in range(out_len):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_len)
        j = np.arange(lo, hi)
        w = _triangle((j - center + 0.5) * inv)
        w /= w.sum()
        out[i] = np.tensordot(w, a[lo:hi].astype(np.float64), axes=(0, 0))
    return out.astype(np.float32)


def _laion_thirds(total_frames: int, chunk_frames: int) -> list[np.ndarray]:
    ranges = np.array_split(list(range(0, total_frames - chunk_frames + 1)), 3)
    if len(ranges[1]) == 0:
        ranges[1] = [0]
    if len(ranges[2]) == 0:
        ranges[2] = [0]
    return ranges


def reference_views(audio_data: np.ndarray, starts: tuple[int, int, int] | None) -> tuple[np.ndarray, bool]:
    """LAION's get_audio_features (fusion + repeatpad), with the crop starts given instead of drawn."""
    audio = torch.from_numpy(np.asarray(audio_data, dtype=np.float32))
    max_len = 480000
    if len(audio) > max_len:
        mel = _reference_mel(audio)
        chunk_frames = max_len // 480 + 1
        total_frames = mel.shape[0]
        if chunk_frames == total_frames:
            return torch.stack([mel, mel, mel, mel], dim=0).numpy(), False
        ranges = _laion_thirds(total_frames, chunk_frames)
        assert starts is not None
        for start, allowed in zip(starts, ranges, strict=True):
            assert start in list(allowed)
        idx_front, idx_middle, idx_back = starts
        mel_np = mel.numpy()
        front = mel_np[idx_front : idx_front + chunk_frames]
        middle = mel_np[idx_middle : idx_middle + chunk_frames]
        back = mel_np[idx_back : idx_back + chunk_frames]
        shrink = _resize_axis0_bilinear_antialias(mel_np, chunk_frames)
        return np.stack([shrink, front, middle, back]), True
    if len(audio) < max_len:
        n_repeat = int(max_len / len(audio))
        audio = audio.repeat(n_repeat)
        audio = torch.nn.functional.pad(audio, (0, max_len - len(audio)), mode="constant", value=0)
    mel = _reference_mel(audio)
    return torch.stack([mel, mel, mel, mel], dim=0).numpy(), False


# ---------------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------------


def _signal(n: int, seed: int) -> np.ndarray:
    """Tones, a chirp and noise, quantised as the pipeline does: every mel bin carries energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = (
        0.3 * np.sin(2 * np.pi * 440.0 * t)
        + 0.15 * np.sin(2 * np.pi * 3100.0 * t + 1.0)
        + 0.1 * np.sin(2 * np.pi * (200.0 + 300.0 * t) * t)
        + 0.02 * rng.standard_normal(n)
    )
    # Slow amplitude envelope so the crops and the global view differ from each other.
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.07 * t) ** 2
    return int16_to_float(quantize_int16(x))


def _assert_f16_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    assert ours.dtype == np.float32
    err = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    bound = F16_ATOL + F16_RTOL * np.abs(ref.astype(np.float64))
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"max err {err.max():.3g} at {worst}: ours {ours[worst]}, ref {ref[worst]}"


# ---------------------------------------------------------------------------------------------------
# compute_views vs reference
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_samples", "expect_longer"),
    [
        (62_400, False),  # 1.3 s, repeat-padded
        (480_000, False),  # exactly 10 s
        (480_001, False),  # just over 10 s: T == 1001
        (480_479, False),  # last length with T == 1001
        (480_480, True),  # first length with T == 1002: thirds [0], [1], [] -> back falls back to 0
        (504_000, True),  # 10.5 s
        (2_160_000, True),  # 45 s
    ],
)
def test_compute_views_matches_laion_reference(num_samples: int, expect_longer: bool) -> None:
    wave = _signal(num_samples, seed=num_samples)
    plan = plan_views(num_samples, f"clip-{num_samples}")
    assert plan.longer is expect_longer
    ours = compute_views(wave, plan)
    ref, ref_longer = reference_views(wave, plan.starts)
    assert ref_longer is plan.longer
    assert ours.shape == (4, CHUNK_FRAMES, MEL_BINS)
    _assert_f16_close(ours, ref)
    if plan.longer:
        # The global view must be a resize, not a crop, and the crops must be where the plan says.
        assert not np.allclose(ours[0], ours[1])
        whole = log_mel(wave)
        for view, start in enumerate(plan.starts, start=1):
            np.testing.assert_array_equal(ours[view], whole[start : start + CHUNK_FRAMES])
    else:
        for view in range(1, 4):
            np.testing.assert_array_equal(ours[view], ours[0])


def test_silent_clip_is_log_floor() -> None:
    for num_samples in (48_000, 720_000):
        plan = plan_views(num_samples, "silence")
        wave = np.zeros(num_samples, dtype=np.float32)
        ours = compute_views(wave, plan)
        ref, _ = reference_views(wave, plan.starts)
        np.testing.assert_array_equal(ref, np.full_like(ref, -100.0))
        # Crops and repeats are exactly the floor; the resized global view of a constant may be off by
        # float32 rounding of the normalised resize weights (torchvision's Resize is too).
        first = 1 if plan.longer else 0
        np.testing.assert_array_equal(ours[first:], np.full_like(ours[first:], -100.0))
        _assert_f16_close(ours, ref)


def test_quiet_tail_repeatpad_zero_fill() -> None:
    # 4.7 s tiles twice into 9.4 s and leaves 0.6 s of zeros: the last frames hit the -100 dB floor.
    wave = _signal(225_600, seed=3)
    plan = plan_views(len(wave), "tail")
    ours = compute_views(wave, plan)
    ref, _ = reference_views(wave, None)
    _assert_f16_close(ours, ref)
    assert (ours[0, -1] == -100.0).all()


def _laion_read(pcm: np.ndarray) -> np.ndarray:
    """What LAION's loader hands get_audio_features for stored int16: the FLAC read as float
    (v / 32768), its float32_to_int16 (clamp, x 32767, truncate) and int16_to_float32 (/ 32767)."""
    as_read = pcm.astype(np.float32) / np.float32(32768)
    requantised = (np.clip(as_read, -1.0, 1.0) * np.float32(32767)).astype(np.int16)
    return requantised.astype(np.float32) / np.float32(32767)


def test_laion_loader_input_every_int16_value() -> None:
    every = np.arange(-32768, 32768).astype(np.int16)
    ours = laion_loader_input(every)
    np.testing.assert_array_equal(ours, _laion_read(every))
    np.testing.assert_array_equal(laion_loader_input_torch(torch.from_numpy(every)).numpy(), ours)
    # (v - sign(v)) / 32767: one step toward zero, which is what reading v / 32767 misses
    np.testing.assert_array_equal(ours, (every - np.sign(every)).astype(np.float32) / np.float32(32767))
    assert ours[every == 1] == 0 and ours[every == -32768] == -1.0
    with pytest.raises(TypeError):
        laion_loader_input(every.astype(np.int32))
    with pytest.raises(TypeError):
        laion_loader_input_torch(torch.from_numpy(every.astype(np.int32)))


def test_views_from_int16_take_laion_loaders_input() -> None:
    wave = _signal(100_000, seed=5)
    wave[40_000:] *= 1e-3  # a quiet passage of a few LSB: there the two readings differ by dBs
    pcm = quantize_int16(wave)
    plan = plan_views(len(pcm), "pcm")
    views = views_from_int16(pcm, plan)
    np.testing.assert_array_equal(views, compute_views(_laion_read(pcm), plan))
    assert np.abs(views - compute_views(int16_to_float(pcm), plan)).max() > 1.0
    with pytest.raises(TypeError):
        views_from_int16(pcm.astype(np.float32), plan)
    with pytest.raises(TypeError):
        compute_views(pcm, plan)


def test_compute_views_checks_length() -> None:
    wave = _signal(30_000, seed=6)
    plan = plan_views(len(wave), "t")
    with pytest.raises(ValueError):
        compute_views(wave[:-1], plan)
    with pytest.raises(ValueError):
        compute_views_torch([torch.from_numpy(wave[:-1])], [plan])


@pytest.mark.parametrize("num_samples", [62_400, 480_000, 480_001, 480_480, 504_000, 2_160_000])
def test_numpy_and_torch_paths_agree(num_samples: int) -> None:
    # The pipeline stores the numpy views; the trainer recomputes them on torch when they are absent.
    wave = _signal(num_samples, seed=num_samples + 1)
    plan = plan_views(num_samples, f"paths-{num_samples}")
    on_torch = compute_views_torch([torch.from_numpy(wave)], [plan])[0].numpy()
    ours = compute_views(wave, plan)
    # Two FFT libraries: float32 agreement is not promised, agreement inside float16's rounding is.
    _assert_f16_close(ours, on_torch)
    # And it is far inside it for most bins (measured: median 0, under 1e-3 dB at worst).
    assert np.median(np.abs(ours - on_torch)) < 1e-5


def test_compute_views_torch_batch_equals_single() -> None:
    lengths = [30_000, 480_000, 504_000, 30_000, 700_000]
    waves = [_signal(n, seed=i) for i, n in enumerate(lengths)]
    plans = [plan_views(n, f"b{i}") for i, n in enumerate(lengths)]
    batch = compute_views_torch([torch.from_numpy(w) for w in waves], plans)
    assert batch.shape == (len(lengths), 4, CHUNK_FRAMES, MEL_BINS)
    assert batch.dtype == torch.float32
    for i, (w, p) in enumerate(zip(waves, plans, strict=True)):
        np.testing.assert_array_equal(batch[i].numpy(), compute_views_torch([torch.from_numpy(w)], [p])[0])
    with pytest.raises(ValueError):
        compute_views_torch(waves, plans[:-1])


def test_accelerator_batching_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stacking/splitting branch normally runs only on CUDA; route CPU through it to test it here.
    import clap_corpus.transforms.views_torch as views

    as_device = views._batches
    monkeypatch.setattr(
        views, "_batches", lambda idx, lengths, _device: as_device(idx, lengths, torch.device("cuda"))
    )
    monkeypatch.setattr(views, "_DEVICE_BATCH_SAMPLES", 2 * 504_000)  # forces a split of the 504 000 group
    lengths = [504_000, 30_000, 504_000, 480_000, 504_000]
    waves = torch.stack([torch.from_numpy(_signal(504_000, seed=i)) for i in range(len(lengths))])
    items = [waves[i, :n] for i, n in enumerate(lengths)]
    plans = [plan_views(n, f"acc{i}") for i, n in enumerate(lengths)]
    batch = compute_views_torch(items, plans)
    monkeypatch.undo()
    for i, (w, p) in enumerate(zip(items, plans, strict=True)):
        torch.testing.assert_close(batch[i], compute_views_torch([w], [p])[0], rtol=1e-6, atol=1e-5)
    # A [B, n] tensor is accepted as B clips.
    same = plan_views(504_000, "acc0")
    torch.testing.assert_close(
        compute_views_torch(waves[:1], [same])[0], compute_views_torch([waves[0]], [same])[0]
    )


# ---------------------------------------------------------------------------------------------------
# log_mel
# ---------------------------------------------------------------------------------------------------


def test_filterbank_matches_torchaudio() -> None:
    ours = mel_filterbank()
    theirs = torchaudio.functional.melscale_fbanks(513, 50.0, 14000.0, 64, 48000, None, "htk").numpy()
    assert ours.shape == (513, 64)
    assert ours.dtype == np.float32
    # Bit-identical on purpose: LAION's checkpoints were trained on these float32 weights.
    np.testing.assert_array_equal(ours, theirs)
    # And they are the formulas' values up to float32 rounding of the intermediate frequencies.
    freqs = np.linspace(0.0, 24000.0, 513)
    mels = np.linspace(2595.0 * np.log10(1 + 50 / 700), 2595.0 * np.log10(1 + 14000 / 700), 66)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    exact = np.stack(
        [np.interp(freqs, edges[m : m + 3], [0.0, 1.0, 0.0], left=0.0, right=0.0) for m in range(64)], axis=1
    )
    np.testing.assert_allclose(ours, exact, atol=1e-5)
    # The written-out mel edge points are torch's float32 linspace, which torchaudio uses.
    from clap_corpus.transforms.views import _MEL_POINTS

    m_min, m_max = 2595.0 * np.log10(1 + 50 / 700), 2595.0 * np.log10(1 + 14000 / 700)
    linspace = torch.linspace(m_min, m_max, 66, dtype=torch.float32).numpy()
    np.testing.assert_array_equal(np.array(_MEL_POINTS, dtype=np.float32), linspace)


def test_hann_window_is_the_formula() -> None:
    ours = hann_window()
    assert ours.dtype == np.float32 and ours.shape == (WIN,)
    # the float64 formula rounded once; torch's float32 window differs from it by at most an ulp or two
    exact = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)
    assert np.abs(ours - exact).max() <= 2.0**-25
    np.testing.assert_allclose(ours, torch.hann_window(WIN, periodic=True).numpy(), rtol=0, atol=3e-7)


def test_log_mel_frame_count_and_shape() -> None:
    for n in (513, 480, 481, 959, 960, 480_000):
        if n <= 512:
            with pytest.raises(ValueError):
                log_mel(np.zeros(n, dtype=np.float32))
            with pytest.raises(ValueError):
                log_mel_torch(torch.zeros(n))
            continue
        assert log_mel(np.zeros(n, dtype=np.float32)).shape == (n // HOP + 1, MEL_BINS)
        assert log_mel_torch(torch.zeros(n)).shape == (n // HOP + 1, MEL_BINS)
    assert log_mel(np.zeros((2, 3, 5000), dtype=np.float32)).shape == (2, 3, 5000 // HOP + 1, MEL_BINS)
    assert log_mel_torch(torch.zeros(2, 3, 5000)).shape == (2, 3, 5000 // HOP + 1, MEL_BINS)
    with pytest.raises(TypeError):
        log_mel(np.zeros(5000, dtype=np.int16))
    with pytest.raises(TypeError):
        log_mel_torch(torch.zeros(5000, dtype=torch.int16))


def test_log_mel_matches_torchaudio_directly() -> None:
    wave = _signal(150_001, seed=9)
    reference = _reference_mel(torch.from_numpy(wave)).numpy()
    _assert_f16_close(log_mel(wave), reference)
    _assert_f16_close(log_mel_torch(torch.from_numpy(wave)).numpy(), reference)


def test_log_mel_batched_equals_per_item() -> None:
    waves = np.stack([_signal(200_000, seed=s) for s in range(3)])
    batched = log_mel(waves)
    batched_torch = log_mel_torch(torch.from_numpy(waves))
    for i in range(3):
        # Different block shapes may change BLAS summation order, hence not exact equality.
        np.testing.assert_allclose(batched[i], log_mel(waves[i]), rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(
            batched_torch[i], log_mel_torch(torch.from_numpy(waves[i])), rtol=1e-6, atol=1e-5
        )


def test_log_mel_torch_float64() -> None:
    wave = torch.from_numpy(_signal(60_000, seed=4))
    torch.testing.assert_close(
        log_mel_torch(wave.double()).float(), log_mel_torch(wave), rtol=1e-5, atol=1e-4
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    lengths = [62_400, 480_000, 480_001, 504_000, 1_440_000, 504_000]
    waves = [torch.from_numpy(_signal(n, seed=i)) for i, n in enumerate(lengths)]
    plans = [plan_views(n, f"cuda{i}") for i, n in enumerate(lengths)]
    # The check is about the mel, not TF32: pin full float32 matmuls for its duration.
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        on_gpu = compute_views_torch([w.cuda() for w in waves], plans)
        assert on_gpu.device.type == "cuda"
        single = compute_views_torch([waves[1].cuda()], [plans[1]])[0].cpu().numpy()
        batched_mel = log_mel_torch(torch.stack([waves[3], waves[5]]).cuda())
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    for i, (w, p) in enumerate(zip(waves, plans, strict=True)):
        _assert_f16_close(on_gpu[i].cpu().numpy(), compute_views(w.numpy(), p))
    _assert_f16_close(single, compute_views(waves[1].numpy(), plans[1]))
    _assert_f16_close(batched_mel[0].cpu().numpy(), log_mel(waves[3].numpy()))


# ---------------------------------------------------------------------------------------------------
# plan_views / ViewPlan
# ---------------------------------------------------------------------------------------------------

# Pinned: a change here silently changes every stored corpus's crops.
PINNED_STARTS = {
    ("freesound-12345", 1_440_000): (91, 711, 1791),
    ("audiocaps-Y0abc", 2_160_000): (815, 2196, 2747),
    ("clotho-x", 504_000): (8, 27, 46),
}


def test_plan_views_pinned_starts() -> None:
    for (key, n), starts in PINNED_STARTS.items():
        assert plan_views(n, key).starts == starts, (key, n)


def test_plan_views_deterministic_across_processes() -> None:
    cases = [(k, n) for (k, n) in PINNED_STARTS] + [("another", 3_000_000)]
    code = (
        "import json, sys\n"
        "from clap_corpus.transforms.views import plan_views\n"
        "cases = json.loads(sys.argv[1])\n"
        "print(json.dumps([plan_views(n, k).to_json() for k, n in cases]))\n"
    )
    outputs = []
    for seed in ("0", "12345"):
        # A different PYTHONHASHSEED proves nothing depends on the salted built-in hash().
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(cases)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0] == [plan_views(n, k).to_json() for k, n in cases]


def test_plan_views_starts_in_thirds() -> None:
    for n in (480_480, 480_960, 481_440, 482_000, 504_000, 720_000, 1_440_000, 2_160_000, 4_800_000):
        total = n // HOP + 1
        thirds = _laion_thirds(total, CHUNK_FRAMES)
        for key in ("a", "b", "c", "d", "e"):
            plan = plan_views(n, key)
            assert plan.longer and plan.mode == "fusion" and plan.mel_frames == total
            assert plan.starts is not None
            for start, allowed in zip(plan.starts, thirds, strict=True):
                assert start in list(allowed), (n, key, plan.starts)


def test_plan_views_spreads_over_thirds() -> None:
    # Different keys must land on different starts: a constant draw would pass the range check.
    starts = {plan_views(2_160_000, f"k{i}").starts for i in range(50)}
    assert len(starts) > 40


def test_plan_views_boundaries() -> None:
    assert plan_views(1, "k") == ViewPlan(1, False, "repeatpad", CHUNK_FRAMES, None)
    assert plan_views(CLIP_SAMPLES, "k") == ViewPlan(CLIP_SAMPLES, False, "repeatpad", CHUNK_FRAMES, None)
    for n in (480_001, 480_479):
        assert plan_views(n, "k") == ViewPlan(n, False, "fusion", CHUNK_FRAMES, None)
    # T = 1002: the thirds are [0], [1], [] and the empty back third falls back to start 0.
    assert plan_views(480_480, "k") == ViewPlan(480_480, True, "fusion", 1002, (0, 1, 0))
    # T = 1003: one start per third.
    assert plan_views(480_960, "k").starts == (0, 1, 2)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            plan_views(bad, "k")


def test_view_plan_json_round_trip() -> None:
    for n in (1, 480_000, 480_001, 504_000):
        plan = plan_views(n, "json")
        encoded = json.loads(json.dumps(plan.to_json()))
        assert set(encoded) == {"num_samples", "longer", "mode", "mel_frames", "starts"}
        assert ViewPlan.from_json(encoded) == plan


def test_view_plan_rejects_inconsistent_fields() -> None:
    good = plan_views(504_000, "v").to_json()
    for field, value in [
        ("starts", [0, 0, 99_999]),
        ("starts", None),
        ("starts", [0, 1]),
        ("mode", "repeatpad"),
        ("mel_frames", 1001),
        ("longer", False),
        ("num_samples", 0),
    ]:
        with pytest.raises(ValueError):
            ViewPlan.from_json({**good, field: value})


# ---------------------------------------------------------------------------------------------------
# The same bytes on every CPU (issue 25)
# ---------------------------------------------------------------------------------------------------

# The whole per-sample chain from the encoded bytes (decode, downmix, quantise, views, FLAC), in a
# process whose numpy (and OpenBLAS) runs the code paths the environment selects.
# A second argument names the CPU flags FFmpeg is to start from, as if it had detected them on
# another CPU (FFmpeg's own flag names): the pipeline's pin must bring every such start to one level.
_STORED_BYTES = r"""
import ctypes, hashlib, json, sys
from pathlib import Path
from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record
from clap_corpus.transforms import ffmpeg_cpu
from clap_corpus.transforms.sample import SampleOptions, process_sample
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

if len(sys.argv) > 2:
    lib = ffmpeg_cpu._libavutil()
    flags = ctypes.c_uint(0)
    assert lib.av_parse_cpu_caps(ctypes.byref(flags), sys.argv[2].encode()) >= 0
    lib.av_force_cpu_flags(ctypes.c_int(flags.value))
out = {"dispatch": [k for k in __cpu_dispatch__ if __cpu_features__[k]]}
for path in sorted(Path(sys.argv[1]).iterdir()):
    audio = LocalFile(str(path))
    record = Record(key=path.stem, source="s", source_id=path.stem, audio=audio, row=1, text=("a",))
    sample = process_sample(record, path.read_bytes(), SampleOptions())
    out[path.name] = [hashlib.sha256(b).hexdigest() for b in (sample.mel_bytes(), sample.flac)]
out["ffmpeg"] = ffmpeg_cpu.current_flags()
print(json.dumps(out))
"""


def _dispatch_levels() -> dict[str, dict[str, str]]:
    """Every dispatch level numpy offers on this CPU, and OpenBLAS's kernels for the CPUs it can run."""
    import platform

    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    available = [k for k in __cpu_dispatch__ if __cpu_features__[k]]
    levels: dict[str, dict[str, str]] = {"default": {}}
    levels["baseline"] = {"NPY_DISABLE_CPU_FEATURES": ",".join(available)} if available else {}
    for feature in available:
        levels[feature] = {"NPY_ENABLE_CPU_FEATURES": feature}
    if platform.machine() in ("x86_64", "AMD64"):
        cores = ["Prescott"]  # SSE3: every x86-64 CPU runs it
        if __cpu_features__.get("AVX2") and __cpu_features__.get("FMA3"):
            cores += ["Sandybridge", "Haswell"]
        if __cpu_features__.get("AVX512F") and __cpu_features__.get("AVX512BW"):
            cores += ["SkylakeX"]
        levels |= {f"OPENBLAS_CORETYPE={c}": {"OPENBLAS_CORETYPE": c} for c in cores}
    return levels


def _ffmpeg_starts() -> dict[str, str]:
    """CPU flags FFmpeg could have detected on other x86-64-v3 machines, limited to what this CPU runs:
    the "AVX slow" marker it sets on some AMD generations (its resampler then takes the SSE path,
    which rounds differently), the slow-gather marker, and the AVX-512 paths."""
    import platform

    from clap_corpus.transforms.ffmpeg_cpu import LEVELS, pin

    level = LEVELS.get(platform.machine().lower())
    if level is None or not pin().startswith("pinned"):
        return {}
    starts = {"avxslow": f"{level}+avxslow", "slowgather": f"{level}+slowgather"}
    from numpy._core._multiarray_umath import __cpu_features__

    if __cpu_features__.get("AVX512F") and __cpu_features__.get("AVX512BW"):
        starts["avx512"] = f"{level}+avx512"
    return starts


def _clips(folder) -> None:
    """Real encoded files (PyAV's encoders: resampled, lossy, stereo) and synthetic clips for every
    kind of view plan: repeat-padded, exactly 10 s, fusion with crops and the resized global view, a
    quiet tail near the 16-bit floor (where log10's last bits show), silence in the middle."""
    from clap_corpus.pipeline.demo import synth

    rng = np.random.default_rng(25)
    tone = synth.tone(440.0, 1.5, 44_100)
    for fmt in ("mp3", "ogg", "m4a", "opus", "flac"):
        (folder / f"real.{fmt}").write_bytes(synth.encode_audio(synth.to_channels(tone, 2), 44_100, fmt))
    for channels in (6, 9):  # downmixed: 5.1's matrix (FFmpeg's guess for six), the average of nine
        t = np.arange(SR) / SR
        x = np.stack([0.5 * np.sin(2 * np.pi * (200 + 150 * c) * t) for c in range(channels)])
        with wave_file.open(str(folder / f"channels-{channels}.wav"), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(44_100)
            w.writeframes(np.round(x.T * 32767).astype("<i2").tobytes())
    for seconds in (2.0, 10.0, 10.5, 31.0):
        n = round(seconds * SR)
        t = np.arange(n) / SR
        wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
        wave *= np.where(t < seconds / 2, 1.0, 3e-4)  # the second half a few LSB above silence
        wave[n // 3 : n // 3 + SR // 2] = 0.0
        (folder / f"synthetic-{seconds:g}s.flac").write_bytes(synth.encode_audio(wave, SR, "flac"))


@pytest.mark.slow
def test_stored_views_are_the_same_bytes_under_every_cpu_dispatch_level(tmp_path) -> None:
    _clips(tmp_path)
    results = {}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NPY_", "OPENBLAS_CORETYPE"))}
    runs = [(name, env, []) for name, env in _dispatch_levels().items()]
    runs += [(f"ffmpeg {name}", {}, [flags]) for name, flags in _ffmpeg_starts().items()]
    for name, env, extra in runs:
        proc = subprocess.run(
            [sys.executable, "-c", _STORED_BYTES, str(tmp_path), *extra],
            capture_output=True,
            text=True,
            timeout=600,
            env=clean | env,
        )
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        results[name] = json.loads(proc.stdout.splitlines()[-1])
    assert len(results) >= 3
    # the levels really ran different numpy code (baseline has no dispatch target enabled)
    assert results["baseline"]["dispatch"] == []
    assert len({tuple(r["dispatch"]) for r in results.values()}) >= 2
    # every process decoded on the same FFmpeg paths, whatever flags it started from
    assert len({r["ffmpeg"] for r in results.values()}) == 1
    default = {k: v for k, v in results["default"].items() if k not in ("dispatch", "ffmpeg")}
    assert len(default) == 11
    for name, result in results.items():
        differ = sorted(k for k, v in default.items() if result[k] != v)
        assert not differ, f"{name}: the stored bytes of {differ} differ from the default's"


def test_db_is_log10_to_float32_precision() -> None:
    from clap_corpus.transforms.views import _db

    x = np.exp(np.linspace(np.log(1e-10), np.log(1e7), 1_000_001))
    assert np.abs(_db(x.copy()) - 10.0 * np.log10(x)).max() < 1e-12  # dB; float32 steps are ~1e-6 there
    assert _db(np.array([np.float64(np.float32(1e-10))])).astype(np.float32)[0] == -100.0


def test_hann_window_is_far_from_every_float32_rounding_edge() -> None:
    # The window is math.cos rounded to float32: C libraries (and their FMA variants) may differ in
    # the last bit of a double, which could only move a float32 whose double lies within an ulp or
    # two of a rounding edge. None does: the closest is orders of magnitude further away.
    import math

    exact = np.array([0.5 - 0.5 * math.cos(2.0 * math.pi * n / WIN) for n in range(WIN)])
    rounded = exact.astype(np.float32).astype(np.float64)
    step = np.spacing(exact.astype(np.float32)).astype(np.float64)
    margin = (step / 2 - np.abs(exact - rounded))[exact != 0] / exact[exact != 0]  # relative
    assert margin.min() > 1e-12
    np.testing.assert_array_equal(hann_window(), exact.astype(np.float32))


def test_hz_points_are_torchaudios() -> None:
    from clap_corpus.transforms.views import _HZ_POINTS, _MEL_POINTS

    mels = torch.tensor(_MEL_POINTS, dtype=torch.float32)
    np.testing.assert_array_equal(
        np.array(_HZ_POINTS, dtype=np.float32), (700.0 * (10.0 ** (mels / 2595.0) - 1.0)).numpy()
    )
