"""Audio constants shared by the pipeline and the trainer."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 48_000
CLIP_SECONDS = 10
CLIP_SAMPLES = SAMPLE_RATE * CLIP_SECONDS  # 480 000

INT16_SCALE = 32767.0


def quantize_int16(samples: np.ndarray) -> np.ndarray:
    """LAION's quantisation: clamp to [-1, 1], scale by 32767, truncate toward zero.

    The stored FLAC holds exactly these integers. The mel views are not computed from ``int16 / 32767``
    but from what LAION-CLAP's loader makes of them: see :func:`transforms.views.laion_loader_input`.
    """
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    clipped *= np.float32(INT16_SCALE)  # in place: np.clip returned a fresh array, one temporary less
    return clipped.astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_int16` up to rounding: int16 -> float32 in [-1, 1].

    Not the views' input: LAION's loader reads a stored ``v`` as ``(v - sign(v)) / 32767``.
    """
    return np.asarray(samples, dtype=np.int16).astype(np.float32) / np.float32(INT16_SCALE)
