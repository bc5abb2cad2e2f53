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

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.layout import SHARD_NAME_RE, Layout
from clap_corpus.pipeline.spec.corpus import CorpusSpec
from clap_corpus.transforms import storage
from clap_corpus.transforms.shards import ShardStats

# The shard files each output format writes, as `storage` names them.
STORAGE_KINDS = {"webdataset": "tar", "parquet": "parquet", "views": "views"}


def storage_figures(
    stats: list[ShardStats], samples: int, audio_seconds: float, formats: Iterable[str]
) -> dict[str, Any]:
    """Bytes of the tar, Parquet and sidecar views shards, in all, per sample and per hour of audio (for
    sizing a corpus: the 2.5 M recipe's storage is ``bytes_per_hour`` x its hours). Only the formats
    the run writes are listed: a format left out is not a 0-byte one."""
    out: dict[str, Any] = {}
    for fmt, kind in STORAGE_KINDS.items():
        if fmt not in formats:
            continue
        total = sum(getattr(s, f"{kind}_bytes") for s in stats)
        out[kind] = {
            "bytes": total,
            "bytes_per_sample": round(total / samples) if samples else None,
            "bytes_per_hour": round(total * 3600.0 / audio_seconds) if audio_seconds else None,
        }
    return out


def build_summary(
    spec: CorpusSpec,
    layout: Layout,
    stats: list[ShardStats],
    inputs: Mapping[str, int],
    early_rejects: Mapping[str, Mapping[str, int]],
    notes: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
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
    sources = {}
    for src in spec.sources:
        name = src.name
        early = dict(early_rejects.get(name, {}))
        n_early = sum(early.values())
        n_rejects = n_early + shard_rejects[name]
        n_inputs = int(inputs.get(name, 0))
        sources[name] = {
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
        }
        found = (notes or {}).get(name, {})
        for key in ("native_splits", "split_map_unused", "join"):
            if key in found:
                sources[name][key] = found[key]
        if "coverage" in found:  # options.wanted: counted over the list's ids (manifests/wanted.py)
            sources[name]["coverage"] = {**found["coverage"], "samples": samples[name]}
    splits: dict[str, dict[str, Any]] = {}
    for s in sorted(stats, key=lambda s: (s.split, s.shard)):
        d = splits.setdefault(s.split, {"shards": 0, "samples": 0, "rejects": 0, "hours": 0.0})
        d["shards"] += 1
        d["samples"] += s.samples
        d["rejects"] += s.rejects
        d["hours"] += sum(s.audio_seconds_by_source.values()) / 3600.0
    for d in splits.values():
        d["hours"] = round(d["hours"], 4)
    total_inputs = sum(v["inputs"] for v in sources.values())
    total_samples = sum(v["samples"] for v in sources.values())
    total_rejects = sum(v["rejects"] for v in sources.values())
    return {
        "corpus": spec.corpus,
        "spec": spec.path,
        "spec_fingerprint": spec.fingerprint(),
        "output": layout.root,
        "inputs": total_inputs,
        "samples": total_samples,
        "rejects": total_rejects,
        "accounting_ok": total_inputs == total_samples + total_rejects
        and all(v["accounting_ok"] for v in sources.values()),
        # sources that produced nothing although their spec does not say `allow_empty: true`: the run
        # fails for them (written here so that a Dataflow job's summary says it too)
        "empty_sources": [
            name
            for name, v in sources.items()
            if v["samples"] == 0 and not spec.check(name).allow_empty and not spec.source(name).guard
        ],
        "hours": round(sum(seconds.values()) / 3600.0, 4),
        "k2c_captions": k2c,
        "k2c_skipped_short": sum(s.k2c_skipped_short for s in stats),  # K2C caption dropped: clip too short
        "truncated": truncated,
        "incomplete": incomplete,  # samples kept with `incomplete: true` (rejected ones: rejects_by_code)
        "silent": silent,  # inputs rejected as too quiet (code `silent`)
        "rejects_by_code": dict(sorted(reject_codes.items())),
        "sources": sources,
        "splits": splits,
        "shards_skipped_as_complete": sum(1 for s in stats if s.reused),
        "storage": storage_figures(stats, total_samples, sum(seconds.values()), spec.options.formats),
        "outputs": outputs_index(spec, layout, sorted(splits)),
    }


def coverage_rows(sources: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    """Per source held against an official list: wanted, obtained, missing, %, the mirror's clips not
    on the list, samples, LAION's count."""
    return [
        [
            name,
            c["wanted"],
            c["obtained"],
            c["missing"],
            f"{c['obtained_pct']:g} %",
            c.get("not_listed", 0),
            c["samples"],
            s.get("expected"),
        ]
        for name, s in sources.items()
        if (c := s.get("coverage"))
    ]


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


def outputs_index(spec: CorpusSpec, layout: Layout, splits: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": layout.summary_path(),
        "rejects": storage.join(layout.root, "rejects"),
        "stats": layout.stats_dir(),
    }
    if "webdataset" in spec.options.formats:
        out["webdataset"] = {s: layout.webdataset_dir(s) for s in splits}
    if "parquet" in spec.options.formats:
        out["parquet"] = {s: layout.parquet_dir(s) for s in splits}
    if "views" in spec.options.formats:
        out["views"] = {s: layout.views_dir(s) for s in splits}
    return out


def sizes_by_split(stats: list[ShardStats]) -> dict[str, dict[str, int]]:
    """LAION's sizes.json per split: shard file name -> sample count, in shard order."""
    sizes: dict[str, dict[str, int]] = defaultdict(dict)
    for s in sorted(stats, key=lambda s: (s.split, s.shard)):
        sizes[s.split][f"{s.shard}.tar"] = s.samples
    return dict(sizes)


def write_outputs(
    spec: CorpusSpec, layout: Layout, stats: list[ShardStats], summary: Mapping[str, Any]
) -> None:
    sizes = sizes_by_split(stats)
    if "webdataset" in spec.options.formats:
        for split, table in sizes.items():
            storage.write_bytes_atomic(layout.sizes_path(split), json.dumps(table, indent=1).encode() + b"\n")
    for name, source in summary["sources"].items():
        # A source with no early rejects this time still gets its (empty) file, replacing any old one.
        if not source["rejects_before_sharding"]:
            storage.write_bytes_atomic(layout.manifest_rejects_path(name), b"")
    remove_stale_files(spec, layout, stats, set(summary["sources"]))
    # indented: people open it as often as programs do
    storage.write_bytes_atomic(layout.summary_path(), dumps_json(summary, indent=2) + b"\n")


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
