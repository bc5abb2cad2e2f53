"""The end of a run: sizes.json per split, stale files cleaned, the run summary and its accounting.

Accounting identity, per source and overall: ``inputs = samples + rejects``, where inputs are the
manifest rows the adapter read, samples are what the shards hold, and rejects are every input that
produced no sample (before sharding or while its shard was built).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from clap_corpus.core.layout import SHARD_NAME_RE, Layout
from clap_corpus.pipeline.outputs.distributions import aggregate_distributions
from clap_corpus.pipeline.outputs.summary_model import (
    Coverage,
    OutputsIndex,
    RunSummary,
    SourceSummary,
    SplitSummary,
    StorageFigures,
)
from clap_corpus.pipeline.spec.corpus import CorpusSpec
from clap_corpus.transforms import storage
from clap_corpus.transforms.shards import ShardStats

# The shard files each output format writes, as `storage` names them.
STORAGE_KINDS = {"webdataset": "tar", "parquet": "parquet", "views": "views"}


def storage_figures(
    stats: list[ShardStats], samples: int, audio_seconds: float, formats: Iterable[str]
) -> dict[str, StorageFigures]:
    """Bytes of the tar, Parquet and sidecar views shards, in all, per sample and per hour of audio (for
    sizing a corpus: the 2.5 M recipe's storage is ``bytes_per_hour`` x its hours). Only the formats
    the run writes are listed: a format left out is not a 0-byte one."""
    out: dict[str, StorageFigures] = {}
    for fmt, kind in STORAGE_KINDS.items():
        if fmt not in formats:
            continue
        total = sum(getattr(s, f"{kind}_bytes") for s in stats)
        out[kind] = StorageFigures(
            bytes=total,
            bytes_per_sample=round(total / samples) if samples else None,
            bytes_per_hour=round(total * 3600.0 / audio_seconds) if audio_seconds else None,
        )
    return out


def build_summary(
    spec: CorpusSpec,
    layout: Layout,
    stats: list[ShardStats],
    inputs: Mapping[str, int],
    early_rejects: Mapping[str, Mapping[str, int]],
    notes: Mapping[str, Mapping[str, Any]] | None = None,
    stages: Mapping[str, dict[str, Any]] | None = None,
) -> RunSummary:
    """The run summary from the shards' stats, the counts before sharding, the sources' reading notes
    and the stages' reports (stage name -> report)."""
    samples: Counter[str] = Counter()
    shard_rejects: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    reject_codes: Counter[str] = Counter()
    k2c = truncated = incomplete = silent = 0
    for s in stats:
        samples.update(s.samples_by_source)
        shard_rejects.update(s.rejects_by_source)
        seconds.update(s.audio_seconds_by_source)
        reject_codes.update(s.rejects_by_code)
        k2c += s.k2c_captions
        truncated += s.truncated
        incomplete += s.incomplete
        silent += s.silent
    for counts in early_rejects.values():
        reject_codes.update(counts)
    sources: dict[str, SourceSummary] = {}
    for src in spec.sources:
        name = src.name
        early = dict(early_rejects.get(name, {}))
        n_early = sum(early.values())
        n_rejects = n_early + shard_rejects[name]
        n_inputs = int(inputs.get(name, 0))
        found = (notes or {}).get(name, {})
        # only the notes the source has: a key absent from its notes is absent from summary.json
        noted: dict[str, Any] = {
            k: found[k] for k in ("native_splits", "split_map_unused", "join") if k in found
        }
        if "coverage" in found:  # options.wanted: counted over the list's ids (manifests/wanted.py)
            noted["coverage"] = {**found["coverage"], "samples": samples[name]}
        sources[name] = SourceSummary.model_validate(
            {
                "inputs": n_inputs,
                "samples": samples[name],
                "rejects": n_rejects,
                "rejects_before_sharding": early,
                "rejects_in_shards": shard_rejects[name],
                "hours": round(seconds[name] / 3600.0, 4),
                "expected": src.expected_count,
                # produced minus expected: negative when the copy at hand is smaller than the reference
                "expected_delta": None if src.expected_count is None else samples[name] - src.expected_count,
                "accounting_ok": n_inputs == samples[name] + n_rejects,
                **noted,
            }
        )
    split_stats: dict[str, list[ShardStats]] = defaultdict(list)
    for s in sorted(stats, key=lambda s: (s.split, s.shard)):
        split_stats[s.split].append(s)
    splits = {
        split: SplitSummary(
            shards=len(shards),
            samples=sum(s.samples for s in shards),
            rejects=sum(s.rejects for s in shards),
            # summed shard by shard, in shard order, as it always was: the same rounding
            hours=round(_running_sum(sum(s.audio_seconds_by_source.values()) / 3600.0 for s in shards), 4),
        )
        for split, shards in split_stats.items()
    }
    total_inputs = sum(v.inputs for v in sources.values())
    total_samples = sum(v.samples for v in sources.values())
    total_rejects = sum(v.rejects for v in sources.values())
    return RunSummary(
        corpus=spec.corpus,
        spec=spec.path,
        spec_fingerprint=spec.fingerprint(),
        output=layout.root,
        inputs=total_inputs,
        samples=total_samples,
        rejects=total_rejects,
        accounting_ok=total_inputs == total_samples + total_rejects
        and all(v.accounting_ok for v in sources.values()),
        # sources that produced nothing although their spec does not say `allow_empty: true`: the run
        # fails for them (written here so that a Dataflow job's summary says it too)
        empty_sources=[
            name
            for name, v in sources.items()
            if v.samples == 0 and not spec.check(name).allow_empty and not spec.source(name).guard
        ],
        hours=round(sum(seconds.values()) / 3600.0, 4),
        k2c_captions=k2c,
        k2c_skipped_short=sum(s.k2c_skipped_short for s in stats),
        truncated=truncated,
        incomplete=incomplete,  # samples kept with `incomplete: true` (rejected ones: rejects_by_code)
        silent=silent,  # inputs rejected as too quiet (code `silent`)
        rejects_by_code=dict(sorted(reject_codes.items())),
        sources=sources,
        splits=splits,
        shards_skipped_as_complete=sum(1 for s in stats if s.reused),
        storage=storage_figures(stats, total_samples, sum(seconds.values()), spec.options.formats),
        outputs=outputs_index(spec, layout, sorted(splits)),
        stages=dict(sorted((stages or {}).items())),
        distributions=aggregate_distributions(stats),
    )


def _running_sum(values: Iterable[float]) -> float:
    """``0.0 + a + b + ...`` left to right (``sum`` of floats may not add in this order on 3.12+)."""
    total = 0.0
    for v in values:
        total += v
    return total


def coverage_row(name: str, c: Coverage, expected: int | None) -> list[Any]:
    """A source held against an official list: wanted, obtained, missing, %, the mirror's clips not
    on the list, samples, LAION's count (the columns of :data:`COVERAGE_HEADER`)."""
    return [name, c.wanted, c.obtained, c.missing, f"{c.obtained_pct:g} %", c.not_listed, c.samples, expected]


def coverage_rows(sources: Mapping[str, SourceSummary]) -> list[list[Any]]:
    """One :func:`coverage_row` per source that has a list (options.wanted)."""
    return [coverage_row(name, s.coverage, s.expected) for name, s in sources.items() if s.coverage]


COVERAGE_HEADER = [
    "source",
    "wanted",
    "obtained",
    "missing",
    "obtained %",
    "not listed",
    "samples",
    "expected",
]


def outputs_index(spec: CorpusSpec, layout: Layout, splits: list[str]) -> OutputsIndex:
    formats = spec.options.formats
    # a format the run does not write gets no entry (not an empty one)
    folders = {
        fmt: {s: folder(s) for s in splits}
        for fmt, folder in (
            ("webdataset", layout.webdataset_dir),
            ("parquet", layout.parquet_dir),
            ("views", layout.views_dir),
        )
        if fmt in formats
    }
    return OutputsIndex(
        summary=layout.summary_path(),
        rejects=storage.join(layout.root, "rejects"),
        stats=layout.stats_dir(),
        **folders,
    )


def sizes_by_split(stats: list[ShardStats]) -> dict[str, dict[str, int]]:
    """LAION's sizes.json per split: shard file name -> sample count, in shard order."""
    sizes: dict[str, dict[str, int]] = defaultdict(dict)
    for s in sorted(stats, key=lambda s: (s.split, s.shard)):
        sizes[s.split][f"{s.shard}.tar"] = s.samples
    return dict(sizes)


def write_outputs(spec: CorpusSpec, layout: Layout, stats: list[ShardStats], summary: RunSummary) -> None:
    sizes = sizes_by_split(stats)
    if "webdataset" in spec.options.formats:
        for split, table in sizes.items():
            storage.write_bytes_atomic(layout.sizes_path(split), json.dumps(table, indent=1).encode() + b"\n")
    for name, source in summary.sources.items():
        # A source with no early rejects this time still gets its (empty) file, replacing any old one.
        if not source.rejects_before_sharding:
            storage.write_bytes_atomic(layout.manifest_rejects_path(name), b"")
    remove_stale_files(spec, layout, stats, set(summary.sources))
    storage.write_bytes_atomic(layout.summary_path(), summary.to_json_bytes())


def remove_stale_files(
    spec: CorpusSpec, layout: Layout, stats: list[ShardStats], sources: set[str]
) -> list[str]:
    """Delete what an earlier run into the same folder left behind and this run did not write.

    Only names this project writes are touched (six-digit shard files, temporaries, sizes.json of
    splits that no longer exist); anything else in the output folder is left alone.
    """
    current = {(s.split, s.shard) for s in stats}
    splits = {s.split for s in stats}
    patterns = {
        storage.join(layout.root, "webdataset", spec.corpus, "*", "*.tar"): 2,
        storage.join(layout.root, "parquet", "*", "*.parquet"): 2,
        storage.join(layout.root, "views", spec.corpus, "*", "*.tar"): 2,
        storage.join(layout.root, "rejects", "shards", "*", "*.jsonl"): 2,
        storage.join(layout.root, "stats", "*", "*.json"): 2,
    }
    stale: list[str] = []
    for pattern in patterns:
        for path in storage.match(pattern):
            parts = path.replace("\\", "/").rstrip("/").split("/")
            split, name = parts[-2], parts[-1].split(".", 1)[0]
            if SHARD_NAME_RE.match(name) and (split, name) not in current:
                stale.append(path)
    # CLAP embeddings (options.clap) go with their shard, and all of them once scoring is off
    for path in storage.match(storage.join(layout.root, "clap", "*", "*.parquet")):
        parts = path.replace("\\", "/").rstrip("/").split("/")
        split, name = parts[-2], parts[-1].split(".", 1)[0]
        if SHARD_NAME_RE.match(name) and (spec.options.clap is None or (split, name) not in current):
            stale.append(path)
    for path in storage.match(storage.join(layout.root, "webdataset", spec.corpus, "*", "sizes.json")):
        if path.replace("\\", "/").split("/")[-2] not in splits:
            stale.append(path)
    for path in storage.match(storage.join(layout.root, "rejects", "manifest", "*.jsonl")):
        name = path.replace("\\", "/").split("/")[-1][: -len(".jsonl")]
        if name not in sources:
            stale.append(path)
    temp = f"*{storage.TEMP_MARKER}*"
    # '**' does not match files directly under the root, hence two patterns
    for pattern in (storage.join(layout.root, "**", temp), storage.join(layout.root, temp)):
        stale.extend(storage.match(pattern))
    storage.delete(sorted(set(stale)))
    return stale
