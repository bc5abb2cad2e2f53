"""The run's distributions: the shards' histograms and counters summed (summary.json's ``distributions``).

The graph's last step computes them from the shards' stats; the report draws them. Kept apart from the
report module so that the Beam graph never loads matplotlib.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from clap_corpus.transforms.shards import (
    CAPTION_WORD_EDGES,
    DURATION_EDGES_S,
    EXAMPLES_PER_SOURCE,
    LEVEL_EDGES_DBFS,
    ShardStats,
)


def aggregate_distributions(stats: Iterable[ShardStats]) -> dict[str, Any]:
    """Sum the shards' histograms and counters (summary.json's ``distributions``)."""
    durations = [0] * len(DURATION_EDGES_S)
    words = [0] * len(CAPTION_WORD_EDGES)
    peaks = [0] * len(LEVEL_EDGES_DBFS)
    rmss = [0] * len(LEVEL_EDGES_DBFS)
    kinds: Counter[str] = Counter()
    inputs: dict[str, Counter[str]] = {name: Counter() for name in INPUT_COUNTERS}
    examples: dict[str, list[dict[str, Any]]] = {}
    licenses: dict[str, Counter[str]] = {}
    built = reused = 0
    shard_seconds = 0.0
    tar_bytes = parquet_bytes = 0
    for s in stats:
        # A stats file written before the histograms existed has none: it just adds nothing.
        for acc, hist in (
            (durations, s.duration_hist),
            (words, s.caption_words_hist),
            (peaks, s.peak_dbfs_hist),
            (rmss, s.rms_dbfs_hist),
        ):
            for i, n in enumerate(hist[: len(acc)]):
                acc[i] += n
        kinds.update(s.caption_kinds)
        for name, acc in inputs.items():
            acc.update(getattr(s, name))
        for e in s.examples:
            examples.setdefault(e["source"], []).append({**e, "split": s.split, "shard": s.shard})
        for source, counts in s.licenses_by_source.items():
            licenses.setdefault(source, Counter()).update(counts)
        if s.reused:
            reused += 1
        else:
            built += 1
            shard_seconds += s.seconds
        tar_bytes += s.tar_bytes
        parquet_bytes += s.parquet_bytes
    return {
        "duration_s": {"edges": list(DURATION_EDGES_S), "counts": durations},
        "caption_words": {"edges": list(CAPTION_WORD_EDGES), "counts": words},
        "peak_dbfs": {"edges": list(LEVEL_EDGES_DBFS), "counts": peaks},
        "rms_dbfs": {"edges": list(LEVEL_EDGES_DBFS), "counts": rmss},
        "caption_kinds": dict(sorted(kinds.items())),
        "licenses_by_source": {k: dict(sorted(v.items())) for k, v in sorted(licenses.items())},
        **{name: _by_count(acc) for name, acc in inputs.items()},
        # every shard keeps its first few samples per source; the run keeps the first few of those
        "examples": {
            source: sorted(found, key=lambda e: e["key"])[:EXAMPLES_PER_SOURCE]
            for source, found in sorted(examples.items())
        },
        "shards_built": built,
        "shards_reused": reused,
        "shard_seconds": round(shard_seconds, 3),
        "tar_bytes": tar_bytes,
        "parquet_bytes": parquet_bytes,
    }


INPUT_COUNTERS = ("input_codecs", "input_channels", "input_sample_rates")


def _by_count(counts: Counter[str]) -> dict[str, int]:
    """Most common first, ties by name: the order a person reads a breakdown in."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
