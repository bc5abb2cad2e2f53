"""Where a sample goes: its split and its shard, from stable hashes of its key.

Shards are contiguous ranges of a 64-bit placement hash, cut so that every shard but the last holds
exactly ``shard_size`` keys. Placement never depends on the order in which workers saw the records,
so the same spec always gives the same shards (TensorFlow Datasets' Beam writer also orders examples by a
stable hash of the key; cutting the hash range at exact-size boundaries is ours).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from clap_corpus.core.hashing import stable_hash64, unit_interval
from clap_corpus.core.records import Record


def hash_split(key: str, proportions: Sequence[tuple[str, float]]) -> str:
    """A split drawn from ``proportions`` by the key's hash: stable, and independent of shard hashing."""
    u = unit_interval(key, salt="split")
    acc = 0.0
    for name, share in proportions:
        acc += share
        if u < acc:
            return name
    return proportions[-1][0]


def split_of(record: Record, proportions: Sequence[tuple[str, float]]) -> str:
    return record.split if record.split is not None else hash_split(record.key, proportions)


def placement_hash(key: str) -> int:
    return stable_hash64(key, salt="shard")


def shard_boundaries(hashes: Iterable[int], shard_size: int) -> list[int]:
    """Hash values at which a new shard starts: the sorted hashes at every ``shard_size``-th place."""
    ordered = sorted(hashes)
    return ordered[shard_size::shard_size]


def shard_index(h: int, boundaries: Sequence[int]) -> int:
    return bisect.bisect_right(boundaries, h)
