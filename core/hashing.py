"""Stable hashing: the only source of pseudo-randomness and placement in the project.

Python's built-in ``hash()`` is salted per process, so nothing that must be reproducible may use it.
Everything that needs a number derived from a string (split, shard, crop starts) goes through here.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash64(text: str, *, salt: str = "") -> int:
    """A 64-bit unsigned integer that depends only on ``salt`` and ``text``."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=salt.encode("utf-8")[:16])
    return int.from_bytes(digest.digest(), "big")


def unit_interval(text: str, *, salt: str = "") -> float:
    """Map ``text`` to a float in [0, 1), uniformly."""
    return stable_hash64(text, salt=salt) / 2.0**64


def rng_for(text: str, *, salt: str = "") -> np.random.Generator:
    """A numpy generator seeded from ``text``: the same key always draws the same numbers."""
    return np.random.default_rng(stable_hash64(text, salt=salt))


def short_digest(text: str, length: int = 10) -> str:
    """A short lowercase hex digest, for names that must be unique and stable."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()[:length]


def audio_digest(pcm: np.ndarray) -> str:
    """Digest of decoded int16 PCM: equal exactly when two clips decode to the same samples."""
    # Hashed through a memoryview (the array's .data): tobytes() would copy the whole clip first.
    data = np.ascontiguousarray(pcm, dtype="<i2").data.cast("B")
    return hashlib.blake2b(data, digest_size=16).hexdigest()
