"""LAION-CLAP feature-fusion views, reproducible and fast, on numpy alone.

The pipeline stores the four views of every sample as ``<key>.mel.npy`` (float16, [4, 1001, 64]); the
trainer recomputes them on its GPU from the stored FLAC when that file is absent
(:mod:`clap_corpus.transforms.views_torch`). Both must get the same numbers, so the constants (window,
filterbank, crop plan) are defined here once and the torch path takes them from this module. Building a
corpus needs no torch: a worker that imports torch pays ~2 s of CPU and ~600 MB before its first sample.

The views' input is what LAION-CLAP's loader makes of the stored FLAC (:func:`laion_loader_input`), so a
LAION user reading our FLAC with LAION's own loader computes the views we store. Differences from
LAION's ``get_audio_features`` are deliberate and limited to two points:

- the fusion crop starts come from a generator seeded by the sample key (:func:`plan_views`) instead of
  the global numpy RNG, and are recorded in a :class:`ViewPlan`, so every view can be reproduced;
- the mel is computed without torchaudio (same definition, faster): the product must not depend on
  torchaudio's deprecation schedule, and the tests compare against torchaudio to keep us honest.

The stored bytes are the same on every x86-64 CPU (issue 25). numpy picks its loops for the CPU it runs
on (SSE, AVX2, AVX-512) and OpenBLAS its kernels: elementwise ``+ - * /`` round correctly whichever
runs, but sums (matmul, einsum, ``sum``) change their order with the vector width and transcendental
functions (``log10``, ``**``, ``cos``) their error, so the views once differed between an AVX-512
machine and an older one. Here nothing that reaches the views is a numpy reduction, a BLAS call or a
numpy transcendental: the mel and the resize sum their terms one at a time in float64 (every product
of two float32 is exact there) and round once to float32, the dB come from :func:`_db` (``frexp`` and
a fixed polynomial: exact operations only), the filterbank's edge frequencies are written out, and the
window is ``math.cos`` rounded to float32 (tests/test_views.py shows no value near a rounding edge).
scipy's pocketfft is compiled for the baseline instruction set, with no runtime dispatch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from clap_corpus.core.audio import CLIP_SAMPLES, INT16_SCALE, SAMPLE_RATE
from clap_corpus.core.hashing import rng_for

MEL_BINS = 64
N_FFT = 1024
HOP = 480
WIN = 1024
F_MIN = 50.0
F_MAX = 14000.0
CHUNK_FRAMES = CLIP_SAMPLES // HOP + 1  # 1001: center=True adds one frame
NUM_VIEWS = 4
AMIN = 1e-10  # AmplitudeToDB floor: silence maps to -100 dB

MODE_REPEATPAD = "repeatpad"
MODE_FUSION = "fusion"

PAD = N_FFT // 2
# Frames per block on CPU. Whole-clip temporaries for 30 s are ~12 MB each; glibc hands such blocks
# back to the OS and re-faults them on every call, which cost more than the FFT itself when measured.
# Blocks of a few hundred frames stay in reused heap memory and in cache.
CPU_BLOCK_FRAMES = 256

# The 66 HTK mel edge points (50 Hz .. 14 kHz) exactly as torch.linspace(..., dtype=float32) makes them
# for torchaudio.functional.melscale_fbanks, which LAION-CLAP was trained with. Written out because
# torch's float32 linspace is not the textbook formula (12 of the 66 differ from it by an ulp) and
# numpy cannot reproduce it portably; tests/test_views.py checks them against torch and torchaudio.
_MEL_POINTS = (
    77.75456,
    129.3454,
    180.93625,
    232.52708,
    284.11792,
    335.70877,
    387.2996,
    438.89044,
    490.48126,
    542.07214,
    593.66296,
    645.2538,
    696.8446,
    748.4355,
    800.0263,
    851.6171,
    903.208,
    954.7988,
    1006.38965,
    1057.9805,
    1109.5713,
    1161.1622,
    1212.753,
    1264.3439,
    1315.9347,
    1367.5255,
    1419.1163,
    1470.7073,
    1522.2981,
    1573.8889,
    1625.4797,
    1677.0706,
    1728.6614,
    1780.2523,
    1831.8431,
    1883.434,
    1935.0248,
    1986.6157,
    2038.2065,
    2089.7974,
    2141.3882,
    2192.979,
    2244.5698,
    2296.1606,
    2347.7515,
    2399.3423,
    2450.9333,
    2502.5242,
    2554.115,
    2605.7058,
    2657.2966,
    2708.8875,
    2760.4783,
    2812.069,
    2863.66,
    2915.2507,
    2966.8416,
    3018.4324,
    3070.0232,
    3121.6143,
    3173.205,
    3224.796,
    3276.3867,
    3327.9775,
    3379.5684,
    3431.1592,
)


# The same points in Hz, ``700 * (10 ** (m / 2595) - 1)`` in float32 as torchaudio evaluates it: written
# out because float32 ``**`` is one of the functions whose result depends on the CPU's vector unit in
# numpy (and in torch); tests/test_views.py checks them against torch and torchaudio.
_HZ_POINTS = (
    49.999977,
    85.13095,
    121.90758,
    160.40688,
    200.70946,
    242.89992,
    287.06656,
    333.3021,
    381.70334,
    432.3718,
    485.41357,
    540.9399,
    599.06714,
    659.9173,
    723.61755,
    790.3018,
    860.1095,
    933.1871,
    1009.6877,
    1089.7717,
    1173.6069,
    1261.3695,
    1353.2426,
    1449.4191,
    1550.1007,
    1655.4987,
    1765.8331,
    1881.3363,
    2002.2496,
    2128.8264,
    2261.332,
    2400.0452,
    2545.2551,
    2697.2673,
    2856.4001,
    3022.9863,
    3197.3762,
    3379.9348,
    3571.0444,
    3771.106,
    3980.5383,
    4199.7803,
    4429.293,
    4669.5557,
    4921.073,
    5184.3716,
    5460.004,
    5748.547,
    6050.606,
    6366.8135,
    6697.831,
    7044.3555,
    7407.1123,
    7786.8584,
    8184.395,
    8600.553,
    9036.203,
    9492.258,
    9969.678,
    10469.46,
    10992.653,
    11540.354,
    12113.709,
    12713.917,
    13342.244,
    14000.003,
)


@dataclass(frozen=True)
class ViewPlan:
    """Everything needed to rebuild the four views of one clip, apart from the audio itself.

    Stored next to the sample (``to_json``) so that a view computed today can be recomputed bit for
    bit later, on another machine or device, without re-drawing any random number.
    """

    num_samples: int
    longer: bool
    mode: str
    mel_frames: int
    starts: tuple[int, int, int] | None

    def __post_init__(self) -> None:
        starts: Any = self.starts  # JSON and callers hand in lists, whatever the declared type
        if starts is not None and not isinstance(starts, tuple):
            # a frozen dataclass must hold a hashable tuple
            object.__setattr__(self, "starts", tuple(int(s) for s in starts))
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int):
            raise TypeError(f"num_samples must be an int, got {self.num_samples!r}")
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {self.num_samples}")
        expected_mode = MODE_REPEATPAD if self.num_samples <= CLIP_SAMPLES else MODE_FUSION
        if self.mode != expected_mode:
            raise ValueError(
                f"mode {self.mode!r} does not match {self.num_samples} samples ({expected_mode})"
            )
        expected_frames = _whole_clip_frames(self.num_samples)
        if self.mel_frames != expected_frames:
            raise ValueError(
                f"mel_frames {self.mel_frames} != {expected_frames} for {self.num_samples} samples"
            )
        expected_longer = self.mel_frames > CHUNK_FRAMES
        if not isinstance(self.longer, bool) or self.longer != expected_longer:
            raise ValueError(f"longer={self.longer!r} but {self.mel_frames} frames implies {expected_longer}")
        if not self.longer:
            if self.starts is not None:
                raise ValueError("starts must be None when longer is False")
            return
        if self.starts is None or len(self.starts) != 3:
            raise ValueError(f"longer plans need three crop starts, got {self.starts!r}")
        last = self.mel_frames - CHUNK_FRAMES
        for s in self.starts:
            if not 0 <= s <= last:
                raise ValueError(f"crop start {s} outside 0..{last}")

    def check_wave(self, shape: tuple[int, ...]) -> None:
        """The mel input (numpy or torch) is one clip of the plan's length."""
        if len(shape) != 1 or shape[0] != self.num_samples:
            raise ValueError(f"wave of shape {shape} does not match plan ({self.num_samples} samples)")

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict; the field names are part of the stored format."""
        return {
            "num_samples": self.num_samples,
            "longer": self.longer,
            "mode": self.mode,
            "mel_frames": self.mel_frames,
            "starts": list(self.starts) if self.starts is not None else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ViewPlan:
        """Inverse of :meth:`to_json`; unknown keys are ignored so later writers may add fields."""
        starts = d["starts"]
        return cls(
            num_samples=int(d["num_samples"]),
            longer=bool(d["longer"]),
            mode=str(d["mode"]),
            mel_frames=int(d["mel_frames"]),
            # three starts, or __post_init__ refuses them
            starts=None if starts is None else cast(tuple[int, int, int], tuple(int(s) for s in starts)),
        )


def _whole_clip_frames(num_samples: int) -> int:
    # Repeat-padded clips are always exactly CLIP_SAMPLES long before the mel.
    if num_samples <= CLIP_SAMPLES:
        return CHUNK_FRAMES
    return num_samples // HOP + 1


def plan_views(num_samples: int, key: str) -> ViewPlan:
    """Decide how the views of a clip of ``num_samples`` (48 kHz) are cut, reproducibly from ``key``.

    Mirrors LAION's ``get_audio_features`` with ``data_truncating="fusion"``,
    ``data_filling="repeatpad"``: valid crop starts ``0 .. T-1001`` are split into three thirds with
    ``numpy.array_split`` (an empty third falls back to ``[0]``) and one start is drawn per third, in
    order front, middle, back, from ``rng_for(key, salt="views")``.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer):
        raise TypeError(f"num_samples must be an int, got {num_samples!r}")
    num_samples = int(num_samples)
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if num_samples <= CLIP_SAMPLES:
        return ViewPlan(num_samples, False, MODE_REPEATPAD, CHUNK_FRAMES, None)
    total = _whole_clip_frames(num_samples)
    if total == CHUNK_FRAMES:
        # Over 10 s by less than one hop: LAION uses the whole mel four times and clears `longer`.
        return ViewPlan(num_samples, False, MODE_FUSION, total, None)
    thirds = np.array_split(np.arange(total - CHUNK_FRAMES + 1), 3)
    thirds = [t if len(t) else np.array([0]) for t in thirds]
    rng = rng_for(key, salt="views")
    # rng.choice over the third, as LAION's np.random.choice does: the draw sequence is part of the
    # stored format, so it must not change once corpora exist.
    front, middle, back = (int(rng.choice(t)) for t in thirds)
    return ViewPlan(num_samples, True, MODE_FUSION, total, (front, middle, back))


def mel_filterbank() -> np.ndarray:
    """HTK-scale triangular mel filterbank without normalisation, float32, shape (N_FFT // 2 + 1, 64).

    The formulas of ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``,
    evaluated in float32 in the same order, so the weights are bit-identical to the ones LAION-CLAP
    was trained with. Exact (float64) weights differ by up to 5e-6, which moves a mel bin by a few
    thousandths of a dB when a strong partial sits on the far edge of a filter.
    """
    f32 = np.float32
    # 24000 / 512 is exact in binary: every frequency is exact, as in torch's linspace.
    all_freqs = np.arange(N_FFT // 2 + 1, dtype=f32) * f32(SAMPLE_RATE // 2 / (N_FFT // 2))
    f_pts = np.array(_HZ_POINTS, dtype=f32)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = (f32(-1.0) * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(np.minimum(down, up), f32(0.0))


def hann_window() -> np.ndarray:
    """Periodic Hann window of WIN samples, float32: the float64 formula rounded once.

    ``math.cos`` (the C library's, within an ulp of float64 everywhere) rather than numpy's, whose
    vectorised cos differs with the CPU; no value lies near enough to a float32 rounding edge for
    either to matter (tests/test_views.py measures the margin)."""
    values = [0.5 - 0.5 * math.cos(2.0 * math.pi * n / WIN) for n in range(WIN)]
    return np.array(values, dtype=np.float64).astype(np.float32)


@functools.cache
def used_bins() -> tuple[int, int]:
    """First and one-past-last spectrum bin with any filter weight: ~300 of 513 bins carry weight, so
    slicing the spectrum first saves the power and matmul work on the rest without changing the sum."""
    used = np.flatnonzero(mel_filterbank().any(axis=1))
    return int(used[0]), int(used[-1]) + 1


@functools.cache
def interleaved_filterbank() -> np.ndarray:
    """The used rows of the filterbank, each repeated twice, float32 (2 * used, 64).

    (re, im) pairs of a complex spectrum viewed as floats then multiply the same weight: the power
    re**2 + im**2 happens inside the matmul instead of in a separate reduction pass.
    """
    lo, hi = used_bins()
    return np.ascontiguousarray(np.repeat(mel_filterbank()[lo:hi], 2, axis=0))


@functools.cache
def mel_taps() -> tuple[tuple[np.ndarray, np.ndarray, int], ...]:
    """The filterbank as taps: entry j is (bins, weights, first) for the j-th nonzero weight of each
    mel filter from mel ``first`` on (bins relative to :func:`used_bins`, weights float64, 0 where a
    filter has fewer taps). Summed in order j = 0, 1, ... they give each mel bin the same float64
    sum as the filter's weights taken from its lowest bin up; the widest filter has 27 taps, the
    narrowest one, and ~580 weights are nonzero where a dense product would multiply 19 000."""
    lo, hi = used_bins()
    fb = mel_filterbank()[lo:hi]
    nonzero = fb != 0
    first = nonzero.argmax(axis=0)
    widths = nonzero.sum(axis=0)
    taps = []
    for j in range(int(widths.max())):
        start = int(np.argmax(widths > j))  # mels below have no tap j: skipped, not multiplied by 0
        mels = np.arange(start, MEL_BINS)
        bins = np.minimum(first[start:] + j, hi - lo - 1)
        weights = np.where(j < widths[start:], fb[bins, mels], 0.0).astype(np.float64)
        taps.append((bins, weights, start))
    return tuple(taps)


@functools.cache
def _window() -> np.ndarray:
    return hann_window()


_LN2 = math.log(2.0)
_DB_PER_LN = 10.0 / math.log(10.0)
_SQRT_HALF = math.sqrt(0.5)
# ln(m) = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...), s = (m - 1) / (m + 1), |s| <= 0.1716 for m in
# [sqrt(1/2), sqrt(2)): eight terms leave under 1e-13 dB of error (tests/test_views.py measures it).
_ATANH_TERMS = tuple(1.0 / (2 * k + 1) for k in range(8))


def _db(power: np.ndarray) -> np.ndarray:
    """``10 * log10(power)`` for positive float64 ``power``, the same bits on every CPU.

    numpy's log10 takes another code path (and another rounding) per vector unit; this takes only
    exact steps (``frexp``, scaling by 2) and single IEEE ``+ - * /``, in a fixed order."""
    mantissa, exponent = np.frexp(power)
    small = mantissa < _SQRT_HALF
    mantissa[small] *= 2.0
    exponent -= small
    s = (mantissa - 1.0) / (mantissa + 1.0)
    z = s * s
    out = z * _ATANH_TERMS[-1]
    for c in reversed(_ATANH_TERMS[1:-1]):
        out += c
        out *= z
    out += 1.0
    out *= s
    out *= 2.0
    out += exponent * _LN2
    out *= _DB_PER_LN
    return out


def _reflect_padded(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """``[a, b)`` of ``x`` (B, n) reflect-padded by PAD on both ends (torch.stft's ``center=True``):
    a view of ``x`` away from its ends, a small copy at them, never a padded copy of the whole clip."""
    n = x.shape[-1]
    if a >= PAD and b <= n + PAD:
        return x[:, a - PAD : b - PAD]
    head = x[:, PAD:0:-1][:, a:b] if a < PAD else x[:, :0]
    body = x[:, max(a - PAD, 0) : min(b - PAD, n)]
    tail = x[:, -2 : -PAD - 2 : -1][:, max(a - PAD - n, 0) : b - PAD - n] if b > n + PAD else x[:, :0]
    return np.concatenate([head, body, tail], axis=-1)


def mel_input_samples(shape: tuple[int, ...], name: str, kind: str) -> int:
    """Samples per row of a log-mel input of ``shape`` (..., n), numpy's or torch's (``name`` and
    ``kind``, "array" or "tensor", for the message)."""
    if not shape:
        raise ValueError(f"{name} needs a (..., n) {kind}")
    n = shape[-1]
    if n <= PAD:
        # Reflect padding by N_FFT // 2 needs more samples than the pad itself.
        raise ValueError(f"{name} needs more than {PAD} samples, got {n}")
    return n


def log_mel(wave: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram float32 (..., n) -> (..., n // 480 + 1, 64), as LAION-CLAP's ``get_mel``.

    Hann (periodic) window of 1024, hop 480, centred frames with reflect padding, power 2, HTK mel
    filterbank (50 Hz - 14 kHz, no norm), then ``10 * log10(max(x, 1e-10))``: the spectrum in float32,
    the mel sum and the dB in float64 rounded once to float32, the same bits on every CPU (see the
    module's docstring).
    """
    x = np.asarray(wave)
    if x.dtype != np.float32:
        raise TypeError(f"log_mel takes float32 samples, got {x.dtype}")
    n = mel_input_samples(x.shape, "log_mel", "array")
    lead = x.shape[:-1]
    x = x.reshape(-1, n)
    batch, total = x.shape[0], n // HOP + 1
    window, taps = _window(), mel_taps()
    lo, hi = used_bins()
    floor = np.float64(np.float32(AMIN))  # torch.clamp(min=1e-10) on float32, as LAION's mel has it
    out = np.empty((batch, total, MEL_BINS), dtype=np.float32)
    block = max(1, CPU_BLOCK_FRAMES // batch)
    for start in range(0, total, block):
        stop = min(start + block, total)
        segment = _reflect_padded(x, start * HOP, (stop - 1) * HOP + N_FFT)
        frames = sliding_window_view(segment, N_FFT, axis=-1)[:, ::HOP]  # (B, stop - start, N_FFT), a view
        # scipy's pocketfft: float32 in, complex64 out, one thread; ~1.8x numpy.fft's speed here.
        # (an array: the types of scipy.fft's dispatch wrapper say a tuple of Dispatchable)
        spec: np.ndarray = scipy.fft.rfft(frames * window, axis=-1, workers=1)  # pyright: ignore[reportAssignmentType]
        re_im = np.ascontiguousarray(spec[..., lo:hi]).view(np.float32)
        re, im = re_im[..., 0::2], re_im[..., 1::2]
        power = re * re
        power += im * im
        # float32 power times float32 weight is exact in float64; the sum runs tap by tap, in order
        bins, weights, _ = taps[0]
        mel = power[..., bins] * weights
        for bins, weights, first in taps[1:]:
            mel[..., first:] += power[..., bins] * weights
        np.maximum(mel, floor, out=mel)
        out[:, start:stop] = _db(mel)
    return out.reshape(*lead, total, MEL_BINS)


def one_thread() -> None:
    """Cap this process's BLAS at one thread: the pipeline runs a worker per core, and OpenBLAS's own
    threads only fight them (measured, when the mel was a matmul: 16 ms instead of 0.5 ms per block).
    The stored views and the downmix no longer call BLAS; any other numpy product a worker makes does."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def laion_loader_input(pcm: np.ndarray) -> np.ndarray:
    """Stored int16 samples -> the float32 signal LAION-CLAP's loader computes its mel from.

    LAION's WebDataset loader decodes the FLAC member to float (``v / 32768``), then runs its
    ``float32_to_int16`` (clamp, x 32767, truncate toward zero) and ``int16_to_float32`` (/ 32767)
    before ``get_audio_features``. ``trunc(v / 32768 * 32767)`` is ``v - sign(v)`` for every int16 ``v``
    (float32 rounding never reaches the next integer), so the mel input is ``(v - sign(v)) / 32767``.
    Reading ``v / 32767`` instead moves bins near the 16-bit noise floor by several dB. The pipeline
    (:func:`views_from_int16`) and the trainer's on-device views both compute this.
    """
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        raise TypeError(f"laion_loader_input takes int16 samples, got {arr.dtype}")
    out = np.empty(arr.shape, dtype=np.float32)
    src, dst = arr.reshape(-1), out.reshape(-1)
    # In blocks: whole-clip temporaries (the signs, the difference) would be three more copies of a
    # long clip. Moving toward zero cannot overflow int16, so the subtraction stays in the stored dtype.
    step = CPU_BLOCK_FRAMES * HOP
    for start in range(0, src.size, step):
        v = src[start : start + step]
        dst[start : start + v.size] = v - np.sign(v)
    out /= np.float32(INT16_SCALE)
    return out


def repeat_pad(x: np.ndarray) -> np.ndarray:
    """LAION's repeatpad: tile ``480000 // n`` times, zero-fill to 480000 samples."""
    n = x.shape[-1]
    reps = CLIP_SAMPLES // n
    out = np.zeros(CLIP_SAMPLES, dtype=x.dtype)
    out[: reps * n].reshape(reps, n)[:] = x  # broadcast copy: one pass, no tiled temporary
    return out


@functools.lru_cache(maxsize=64)
def _resize_taps(in_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and weights (each [1001, K]) of the antialiased bilinear resize ``in_len -> 1001``.

    The definition torch's ``interpolate(mode="bilinear", antialias=True, align_corners=False)`` (what
    torchvision's ``Resize`` runs) uses: output i is centred at ``(i + 0.5) * s`` input frames
    (s = in / out), the triangle filter is stretched by s, the weights inside the support are normalised
    to sum to one. Computed in float64, rounded once to float32.
    """
    scale = in_len / CHUNK_FRAMES
    support = max(scale, 1.0)
    inv = 1.0 / support
    centers = scale * (np.arange(CHUNK_FRAMES) + 0.5)
    lows = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    highs = np.minimum((centers + support + 0.5).astype(np.int64), in_len)
    taps = int((highs - lows).max())
    idx = lows[:, None] + np.arange(taps)[None, :]
    weights = np.maximum(0.0, 1.0 - np.abs((idx - centers[:, None] + 0.5) * inv))
    weights[idx >= highs[:, None]] = 0.0
    total = weights[:, 0].copy()
    for k in range(1, taps):  # in order, not numpy's sum (its order follows the CPU's vector width)
        total += weights[:, k]
    weights /= total[:, None]
    return np.minimum(idx, in_len - 1), weights.astype(np.float32)


def resize_time(mel: np.ndarray) -> np.ndarray:
    """(T, 64) -> (1001, 64) as torchvision>=0.17 ``Resize([1001, 64])`` does on a (1, T, 64) tensor.

    Along the mel axis the scale is 1, where the antialiased triangle filter reduces to the identity,
    so only time is resampled. Each output sums its taps in order in float64 (the products of float32
    weights and values are exact there) and is rounded once to float32.
    """
    idx, weights = _resize_taps(mel.shape[0])
    out = mel[idx[:, 0]] * weights[:, :1].astype(np.float64)
    for k in range(1, idx.shape[1]):
        out += mel[idx[:, k]] * weights[:, k : k + 1].astype(np.float64)
    return out.astype(np.float32)


def fill_views(dst: Any, mel: Any, plan: ViewPlan, resize: Callable[[Any], Any] = resize_time) -> None:
    """Write the four views of ``plan`` cut from the whole-clip ``mel`` into ``dst`` [4, 1001, 64].

    numpy arrays, or torch tensors with views_torch's ``resize`` of the global view."""
    if mel.shape[0] != plan.mel_frames:
        raise ValueError(f"mel has {mel.shape[0]} frames, plan expects {plan.mel_frames}")
    if not plan.longer:
        dst[:] = mel[None]
        return
    assert plan.starts is not None  # guaranteed by ViewPlan validation
    dst[0] = resize(mel)
    for view, start in enumerate(plan.starts, start=1):
        dst[view] = mel[start : start + CHUNK_FRAMES]


def float32_samples(wave: np.ndarray) -> np.ndarray:
    """``wave`` as contiguous float32: float samples only."""
    arr = np.asarray(wave)
    if not np.issubdtype(arr.dtype, np.floating):
        # Integer PCM must go through views_from_int16: silently casting would skip LAION's read.
        raise TypeError(f"expected float samples, got {arr.dtype}; use views_from_int16 for int16")
    return np.ascontiguousarray(arr, dtype=np.float32)


def compute_views(wave: np.ndarray, plan: ViewPlan) -> np.ndarray:
    """The four views of one clip, float32 [4, 1001, 64]: ``[global, front, middle, back]``.

    ``wave`` is float mono 48 kHz, the mel input as LAION's loader has it (:func:`laion_loader_input`
    of the stored int16), with ``plan.num_samples`` samples. On torch tensors and accelerators, use
    :func:`clap_corpus.transforms.views_torch.compute_views_torch`.
    """
    x = float32_samples(wave)
    plan.check_wave(x.shape)
    if plan.mode == MODE_REPEATPAD:
        x = repeat_pad(x)
    out = np.empty((NUM_VIEWS, CHUNK_FRAMES, MEL_BINS), dtype=np.float32)
    fill_views(out, log_mel(x), plan)
    return out


def expand_views(mel: np.ndarray) -> np.ndarray:
    """Stored views -> [4, 1001, 64]: a single stored view (``mel_single_view``, clips with ``longer:
    false``, whose four views are one) is repeated, four views are returned as they are.

    For readers without this package the same is one line of numpy::

        mel = np.repeat(mel, 4 // len(mel), axis=0)  # [1|4, 1001, 64] -> [4, 1001, 64]
    """
    if mel.ndim != 3 or mel.shape[1:] != (CHUNK_FRAMES, MEL_BINS) or mel.shape[0] not in (1, NUM_VIEWS):
        raise ValueError(f"stored views must be [1 or 4, {CHUNK_FRAMES}, {MEL_BINS}], got {mel.shape}")
    return np.repeat(mel, NUM_VIEWS // len(mel), axis=0)


def views_from_int16(samples: np.ndarray, plan: ViewPlan) -> np.ndarray:
    """Views straight from int16 PCM (the stored FLAC's samples), as LAION's loader computes them.

    :func:`laion_loader_input` then :func:`compute_views`: the pipeline stores these, and the trainer's
    on-device views take the same path.
    """
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {arr.dtype}")
    return compute_views(laion_loader_input(arr), plan)
