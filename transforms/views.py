"""LAION-CLAP feature-fusion views, reproducible and fast.

The pipeline stores the four views of every sample as ``<key>.mel.npy`` (float16, [4, 1001, 64]); the
trainer recomputes them on its GPU from the stored FLAC when that file is absent. Both must get the same
numbers, so the mel is written here once, on plain torch ops that run on any device and in batches.

The views' input is what LAION-CLAP's loader makes of the stored FLAC (:func:`laion_loader_input`), so a
LAION user reading our FLAC with LAION's own loader computes the views we store. Differences from
LAION's ``get_audio_features`` are deliberate and limited to two points:

- the fusion crop starts come from a generator seeded by the sample key (:func:`plan_views`) instead of
  the global numpy RNG, and are recorded in a :class:`ViewPlan`, so every view can be reproduced;
- the mel is computed without torchaudio (same definition, faster): the product must not depend on
  torchaudio's deprecation schedule, and the tests compare against torchaudio to keep us honest.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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

_PAD = N_FFT // 2
# Frames per block on CPU. Whole-clip temporaries for 30 s are ~12 MB each; glibc hands such blocks
# back to the OS and re-faults them on every call, which cost more than the FFT itself when measured.
# Blocks of a few hundred frames stay in reused heap memory and in cache.
_CPU_BLOCK_FRAMES = 256
# Samples per batched log_mel call on accelerators: bounds the frame and spectrum temporaries
# (~8 bytes per sample each) to a few hundred MB whatever batch the trainer passes in.
_DEVICE_BATCH_SAMPLES = 1 << 24


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
        if self.starts is not None and not isinstance(self.starts, tuple):
            # JSON and callers hand in lists; a frozen dataclass must hold a hashable tuple.
            object.__setattr__(self, "starts", tuple(int(s) for s in self.starts))
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
            starts=None if starts is None else tuple(int(s) for s in starts),
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
    f32 = torch.float32
    all_freqs = torch.linspace(0.0, SAMPLE_RATE // 2, N_FFT // 2 + 1, dtype=f32, device="cpu")
    m_min = 2595.0 * math.log10(1.0 + F_MIN / 700.0)
    m_max = 2595.0 * math.log10(1.0 + F_MAX / 700.0)
    m_pts = torch.linspace(m_min, m_max, MEL_BINS + 2, dtype=f32, device="cpu")
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).numpy()


@functools.cache
def _used_bins() -> tuple[int, int]:
    # Bins outside (F_MIN, F_MAX) have all-zero filter rows: ~300 of 513 bins carry weight, so slicing
    # the spectrum first saves the power and matmul work on the rest without changing the sum.
    used = np.flatnonzero(mel_filterbank().any(axis=1))
    return int(used[0]), int(used[-1]) + 1


@functools.lru_cache(maxsize=32)
def _dsp_constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Window and interleaved filterbank for ``device``/``dtype``, built once per process."""
    lo, hi = _used_bins()
    window = torch.hann_window(WIN, periodic=True, dtype=dtype, device=device)
    # Rows repeated so that (re, im) pairs from view_as_real multiply the same weight: the power
    # re**2 + im**2 then happens inside the matmul instead of in a separate reduction pass.
    fb = np.repeat(mel_filterbank()[lo:hi], 2, axis=0)
    fb_t = torch.from_numpy(fb).to(dtype=dtype, device=device)
    return window, fb_t


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel spectrogram (..., n) -> (..., n // 480 + 1, 64), as LAION-CLAP's ``get_mel``.

    Hann (periodic) window of 1024, hop 480, centred frames with reflect padding, power 2, HTK mel
    filterbank (50 Hz - 14 kHz, no norm), then ``10 * log10(max(x, 1e-10))``. Runs on the tensor's
    device, float32 or float64. Autocast is disabled inside: half-precision power spectra overflow.
    Under TF32 matmul (``torch.backends.cuda.matmul.allow_tf32``) CUDA keeps only ~3 significant digits.
    """
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"log_mel takes a torch.Tensor, got {type(wave).__name__}")
    if wave.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"log_mel takes float32 or float64 samples, got {wave.dtype}")
    if wave.ndim == 0:
        raise ValueError("log_mel needs a (..., n) tensor")
    n = wave.shape[-1]
    if n <= _PAD:
        # Reflect padding by N_FFT // 2 needs more samples than the pad itself.
        raise ValueError(f"log_mel needs more than {_PAD} samples, got {n}")
    lead = wave.shape[:-1]
    x = wave.reshape(-1, n)
    batch = x.shape[0]
    window, fb = _dsp_constants(x.device, x.dtype)
    lo, hi = _used_bins()
    with torch.autocast(device_type=x.device.type, enabled=False):
        # cat of two flipped edges is the same reflect pad as F.pad(mode="reflect"), ~3x cheaper on CPU.
        padded = torch.cat([x[:, 1 : _PAD + 1].flip(-1), x, x[:, -_PAD - 1 : -1].flip(-1)], dim=-1)
        frames = padded.unfold(-1, N_FFT, HOP)  # (B, T, N_FFT), a view: no copy yet
        total = frames.shape[1]
        # Accelerators take the whole batch at once; their memory is bounded by compute_views_torch.
        block = max(1, _CPU_BLOCK_FRAMES // max(batch, 1)) if x.device.type == "cpu" else total
        power_mel = torch.empty((batch, total, MEL_BINS), dtype=x.dtype, device=x.device)
        for start in range(0, total, block):
            spec = torch.fft.rfft(frames[:, start : start + block] * window, dim=-1)
            re_im = torch.view_as_real(spec[..., lo:hi])
            power_mel[:, start : start + block] = (re_im * re_im).flatten(-2) @ fb
        mel = 10.0 * torch.log10(torch.clamp(power_mel, min=AMIN))
    return mel.reshape(*lead, total, MEL_BINS)


def laion_loader_input(pcm: torch.Tensor) -> torch.Tensor:
    """Stored int16 samples -> the float32 signal LAION-CLAP's loader computes its mel from.

    LAION's WebDataset loader decodes the FLAC member to float (``v / 32768``), then runs its
    ``float32_to_int16`` (clamp, x 32767, truncate toward zero) and ``int16_to_float32`` (/ 32767)
    before ``get_audio_features``. ``trunc(v / 32768 * 32767)`` is ``v - sign(v)`` for every int16 ``v``
    (float32 rounding never reaches the next integer), so the mel input is ``(v - sign(v)) / 32767``.
    Reading ``v / 32767`` instead moves bins near the 16-bit noise floor by several dB. The pipeline
    (:func:`views_from_int16`) and the trainer's on-device views both go through here. Runs on the
    tensor's device.
    """
    if not isinstance(pcm, torch.Tensor) or pcm.dtype != torch.int16:
        raise TypeError(f"laion_loader_input takes an int16 tensor, got {getattr(pcm, 'dtype', type(pcm))}")
    # Moving toward zero cannot overflow int16, so the subtraction stays in the stored dtype.
    return (pcm - torch.sign(pcm)).to(torch.float32) / INT16_SCALE


def _as_float_tensor(wave: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(wave, torch.Tensor):
        return wave.to(device=device, dtype=torch.float32)
    arr = np.asarray(wave)
    if not np.issubdtype(arr.dtype, np.floating):
        # Integer PCM must go through views_from_int16: silently casting would skip LAION's read.
        raise TypeError(f"expected float samples, got {arr.dtype}; use views_from_int16 for int16")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(device)


def _repeat_pad(x: torch.Tensor) -> torch.Tensor:
    """LAION's repeatpad: tile ``480000 // n`` times, zero-fill to 480000 samples."""
    n = x.shape[-1]
    reps = CLIP_SAMPLES // n
    out = x.new_zeros(CLIP_SAMPLES)
    out[: reps * n].view(reps, n).copy_(x)  # broadcast copy: one pass, no tiled temporary
    return out


def _resize_time(mel: torch.Tensor) -> torch.Tensor:
    """(T, 64) -> (1001, 64) as torchvision>=0.17 ``Resize([1001, 64])`` does on a (1, T, 64) tensor.

    torchvision's tensor path is exactly ``interpolate(img[None], mode="bilinear",
    align_corners=False, antialias=True)``; along the mel axis the scale is 1, where the antialiased
    triangle filter reduces to the identity, so only time is resampled.
    """
    resized = F.interpolate(
        mel[None, None], size=(CHUNK_FRAMES, MEL_BINS), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0, 0]


def _fill_views(dst: torch.Tensor, mel: torch.Tensor, plan: ViewPlan) -> None:
    if mel.shape[0] != plan.mel_frames:
        raise ValueError(f"mel has {mel.shape[0]} frames, plan expects {plan.mel_frames}")
    if not plan.longer:
        dst.copy_(mel.expand(NUM_VIEWS, -1, -1))
        return
    assert plan.starts is not None  # guaranteed by ViewPlan validation
    dst[0] = _resize_time(mel)
    for view, start in enumerate(plan.starts, start=1):
        dst[view] = mel[start : start + CHUNK_FRAMES]


def _batches(indices: list[int], lengths: list[int], device: torch.device) -> list[list[int]]:
    if device.type == "cpu":
        # Batching buys nothing on CPU (log_mel already works in cache-sized blocks) and stacking
        # would copy every clip once more.
        return [[i] for i in indices]
    per_batch = max(1, _DEVICE_BATCH_SAMPLES // lengths[indices[0]])
    return [indices[i : i + per_batch] for i in range(0, len(indices), per_batch)]


@torch.no_grad()
def compute_views_torch(
    waves: Sequence[torch.Tensor | np.ndarray] | torch.Tensor,
    plans: Sequence[ViewPlan],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Batched views on ``device``: float32 tensor [B, 4, 1001, 64], channel 0 the global view.

    ``waves`` are quantised float mono 48 kHz clips of any lengths (a list), or a [B, n] tensor; each
    must have ``plans[i].num_samples`` samples. ``device`` defaults to the first wave's device.
    Clips whose mel input has the same length are stacked into one batched mel on accelerators.
    """
    if isinstance(waves, torch.Tensor):
        if waves.ndim == 1:
            waves = waves[None]
        if waves.ndim != 2:
            raise ValueError(f"a tensor of waves must be [B, n], got shape {tuple(waves.shape)}")
        items: list[torch.Tensor | np.ndarray] = list(waves.unbind(0))
    else:
        items = list(waves)
    if len(items) != len(plans):
        raise ValueError(f"{len(items)} waves but {len(plans)} plans")
    if device is None:
        first = items[0] if items else None
        device = first.device if isinstance(first, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)

    inputs: list[torch.Tensor] = []
    for wave, plan in zip(items, plans, strict=True):
        x = _as_float_tensor(wave, device)
        if x.ndim != 1 or x.shape[0] != plan.num_samples:
            raise ValueError(
                f"wave of shape {tuple(x.shape)} does not match plan ({plan.num_samples} samples)"
            )
        inputs.append(_repeat_pad(x) if plan.mode == MODE_REPEATPAD else x)

    out = torch.empty((len(inputs), NUM_VIEWS, CHUNK_FRAMES, MEL_BINS), dtype=torch.float32, device=device)
    by_length: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        by_length.setdefault(x.shape[0], []).append(i)
    lengths = [x.shape[0] for x in inputs]
    for indices in by_length.values():
        for batch in _batches(indices, lengths, device):
            stacked = inputs[batch[0]][None] if len(batch) == 1 else torch.stack([inputs[i] for i in batch])
            mels = log_mel(stacked)
            for row, i in enumerate(batch):
                _fill_views(out[i], mels[row], plans[i])
    return out


def compute_views(wave: np.ndarray | torch.Tensor, plan: ViewPlan) -> np.ndarray:
    """The four views of one clip, float32 [4, 1001, 64]: ``[global, front, middle, back]``.

    ``wave`` is float mono 48 kHz, the mel input as LAION's loader has it (:func:`laion_loader_input`
    of the stored int16), with ``plan.num_samples`` samples. A tensor is processed on its own device; the
    result is on the host.
    """
    if isinstance(wave, torch.Tensor):
        views = compute_views_torch([wave], [plan], device=wave.device)
    else:
        views = compute_views_torch([wave], [plan], device="cpu")
    return views[0].cpu().numpy()


def views_from_int16(samples: np.ndarray, plan: ViewPlan) -> np.ndarray:
    """Views straight from int16 PCM (the stored FLAC's samples), as LAION's loader computes them.

    :func:`laion_loader_input` then :func:`compute_views`: the pipeline stores these, and the trainer's
    on-device views take the same path.
    """
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {arr.dtype}")
    return compute_views(laion_loader_input(torch.from_numpy(np.ascontiguousarray(arr))), plan)
