"""The views of :mod:`clap_corpus.transforms.views` on torch, for the trainer's GPU (and batches).

Same definition, same constants (window, filterbank, crop plans come from ``views``); only the
arithmetic runs on torch so that a trainer reading shards without ``<key>.mel.npy`` computes the views
on its device. The pipeline never imports this module: building a corpus needs no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clap_corpus.core.audio import CLIP_SAMPLES, INT16_SCALE
from clap_corpus.transforms.inference import length_groups
from clap_corpus.transforms.views import (
    AMIN,
    CHUNK_FRAMES,
    CPU_BLOCK_FRAMES,
    HOP,
    MEL_BINS,
    MODE_REPEATPAD,
    N_FFT,
    NUM_VIEWS,
    PAD,
    ViewPlan,
    fill_views,
    float32_samples,
    hann_window,
    interleaved_filterbank,
    mel_input_samples,
    used_bins,
)

# Samples per batched log_mel call on accelerators: bounds the frame and spectrum temporaries
# (~8 bytes per sample each) to a few hundred MB whatever batch the trainer passes in.
_DEVICE_BATCH_SAMPLES = 1 << 24


@functools.lru_cache(maxsize=32)
def _dsp_constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Window and interleaved filterbank for ``device``/``dtype``, built once per process."""
    window = torch.from_numpy(hann_window()).to(dtype=dtype, device=device)
    fb = torch.from_numpy(interleaved_filterbank()).to(dtype=dtype, device=device)
    return window, fb


def log_mel_torch(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel spectrogram (..., n) -> (..., n // 480 + 1, 64), as LAION-CLAP's ``get_mel``.

    Hann (periodic) window of 1024, hop 480, centred frames with reflect padding, power 2, HTK mel
    filterbank (50 Hz - 14 kHz, no norm), then ``10 * log10(max(x, 1e-10))``. Runs on the tensor's
    device, float32 or float64. Autocast is disabled inside: half-precision power spectra overflow.
    Under TF32 matmul (``torch.backends.cuda.matmul.allow_tf32``) CUDA keeps only ~3 significant digits.
    """
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"log_mel_torch takes a torch.Tensor, got {type(wave).__name__}")
    if wave.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"log_mel_torch takes float32 or float64 samples, got {wave.dtype}")
    n = mel_input_samples(tuple(wave.shape), "log_mel_torch", "tensor")
    lead = wave.shape[:-1]
    x = wave.reshape(-1, n)
    batch = x.shape[0]
    window, fb = _dsp_constants(x.device, x.dtype)
    lo, hi = used_bins()
    with torch.autocast(device_type=x.device.type, enabled=False):
        # cat of two flipped edges is the same reflect pad as F.pad(mode="reflect"), ~3x cheaper on CPU.
        padded = torch.cat([x[:, 1 : PAD + 1].flip(-1), x, x[:, -PAD - 1 : -1].flip(-1)], dim=-1)
        frames = padded.unfold(-1, N_FFT, HOP)  # (B, T, N_FFT), a view: no copy yet
        total = frames.shape[1]
        # Accelerators take the whole batch at once; their memory is bounded by compute_views_torch.
        block = max(1, CPU_BLOCK_FRAMES // max(batch, 1)) if x.device.type == "cpu" else total
        power_mel = torch.empty((batch, total, MEL_BINS), dtype=x.dtype, device=x.device)
        for start in range(0, total, block):
            spec = torch.fft.rfft(frames[:, start : start + block] * window, dim=-1)
            re_im = torch.view_as_real(spec[..., lo:hi])
            power_mel[:, start : start + block] = (re_im * re_im).flatten(-2) @ fb
        mel = 10.0 * torch.log10(torch.clamp(power_mel, min=AMIN))
    return mel.reshape(*lead, total, MEL_BINS)


def laion_loader_input_torch(pcm: torch.Tensor) -> torch.Tensor:
    """Stored int16 samples -> the float32 signal LAION-CLAP's loader computes its mel from:
    ``(v - sign(v)) / 32767``, as :func:`clap_corpus.transforms.views.laion_loader_input` (whose
    docstring says why) computes it for the pipeline. Runs on the tensor's device."""
    if not isinstance(pcm, torch.Tensor) or pcm.dtype != torch.int16:
        got = getattr(pcm, "dtype", type(pcm))
        raise TypeError(f"laion_loader_input_torch takes an int16 tensor, got {got}")
    # Moving toward zero cannot overflow int16, so the subtraction stays in the stored dtype.
    return (pcm - torch.sign(pcm)).to(torch.float32) / INT16_SCALE


def _as_float_tensor(wave: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(wave, torch.Tensor):
        return wave.to(device=device, dtype=torch.float32)
    return torch.from_numpy(float32_samples(wave)).to(device)


def _repeat_pad_torch(x: torch.Tensor) -> torch.Tensor:
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
        plan.check_wave(tuple(x.shape))
        inputs.append(_repeat_pad_torch(x) if plan.mode == MODE_REPEATPAD else x)

    out = torch.empty((len(inputs), NUM_VIEWS, CHUNK_FRAMES, MEL_BINS), dtype=torch.float32, device=device)
    lengths = [x.shape[0] for x in inputs]
    for indices in length_groups(lengths):
        for batch in _batches(indices, lengths, device):
            stacked = inputs[batch[0]][None] if len(batch) == 1 else torch.stack([inputs[i] for i in batch])
            mels = log_mel_torch(stacked)
            for row, i in enumerate(batch):
                fill_views(out[i], mels[row], plans[i], resize=_resize_time)
    return out
