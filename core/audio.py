"""Audio constants shared by the pipeline and the trainer."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 48_000
CLIP_SECONDS = 10
CLIP_SAMPLES = SAMPLE_RATE * CLIP_SECONDS  # 480 000

INT16_SCALE = 32767.0
_QUANTIZE_BLOCK = 1 << 16  # samples per block of quantize_int16 (256 KB of float32)


def quantize_int16(samples: np.ndarray) -> np.ndarray:
    """LAION's quantisation: clamp to [-1, 1], scale by 32767, truncate toward zero.

    The stored FLAC holds exactly these integers. The mel views are not computed from ``int16 / 32767``
    but from what LAION-CLAP's loader makes of them: see :func:`transforms.views.laion_loader_input`.
    """
    x = np.ascontiguousarray(samples, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.int16)
    src, dst = x.reshape(-1), out.reshape(-1)
    # In blocks through one small buffer: a whole-clip float32 temporary would be twice the int16
    # result (130 MB for ten minutes) and would leave the cache between the clip and the cast.
    buf = np.empty(min(_QUANTIZE_BLOCK, src.size), dtype=np.float32)
    for start in range(0, src.size, _QUANTIZE_BLOCK):
        block = buf[: min(_QUANTIZE_BLOCK, src.size - start)]
        np.clip(src[start : start + block.size], -1.0, 1.0, out=block)
        block *= np.float32(INT16_SCALE)
        dst[start : start + block.size] = block  # the C cast astype(int16) does: truncation toward zero
    return out


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_int16` up to rounding: int16 -> float32 in [-1, 1].

    Not the views' input: LAION's loader reads a stored ``v`` as ``(v - sign(v)) / 32767``.
    """
    return np.asarray(samples, dtype=np.int16).astype(np.float32) / np.float32(INT16_SCALE)
