"""``clapcorpus plan``: what a corpus spec will produce, from its metadata alone.

Runs every source's adapter in this process (no Beam, no audio read, no audio folder listed unless
asked), streaming: memory holds one row at a time plus, per record, three small integers for the
leakage estimate and one for the duplicate-id count (about 25 bytes: ~60 MB for 2.5 M records).

For each source: rows read, rejects before sharding (by code: the manifest's, the captions stage's
and the exclusion lists', the stages a run applies before any audio is read), records, expected count
and delta, and hours (durations from the metadata where it has them, else the adapter's documented mean
clip length or the source's ``options.mean_duration_s``). Per split: records, hours and shards.
Then how many train records the leakage guard will remove, how many rows repeat an id, and a
worker-hour estimate. Per source too, what the run's summary says under the same names: the coverage
of a mirror's official list (``coverage``: wanted, obtained, missing, obtained_pct, not_listed), the
metadata join's counts (``join``) and ``split_map`` entries no clip used (``split_map_unused``).

The estimate divides audio hours by a throughput in "x realtime per worker core". The default,
:data:`THROUGHPUT_X_REALTIME`, comes from one-core measurements of each step, not from a
run of this pipeline: in-process decode + resample ~470-720x (500 taken), mel spectrogram ~1000x,
16-bit FLAC encode ~500-1100x (700 taken) combine to 1 / (1/500 + 1/1000 + 1/700) = 226x, rounded
down to 200x for file reads and shard writes. ``clapcorpus bench`` later measured the whole pipeline
(views, tar and Parquet) at 243x per CPU-second in steady state on its bench corpus (README,
Performance); 200x stays the default because that corpus is synthetic tones and noise, which decode
and compress faster than recorded audio. Pass ``--throughput`` with a rate measured on your workers
for a better figure.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from clap_corpus.core.hashing import stable_hash64
from clap_corpus.core.records import Reject
from clap_corpus.manifests.exclusion import excluded, load_lists, removal_report
from clap_corpus.manifests.notes import SourceNotes, coverage_line, join_line, split_map_line
from clap_corpus.manifests.registry import default_duration_s, read_source
from clap_corpus.transforms.captions import caption_problem
from clap_corpus.transforms.heldout import GUARD_SPLIT
from clap_corpus.transforms.sharding import split_of

THROUGHPUT_X_REALTIME = 200.0


@dataclass
class SourcePlan:
    name: str
    adapter: str
    expected: int | None
    mean_duration_s: float
    rows: int = 0
    records: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    seconds_from_metadata: int = 0  # records whose duration came from the metadata
    by_split: Counter[str] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)  # SourceNotes.to_json: coverage, join, split_map

    def to_json(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "rows": self.rows,
            "records": self.records,
            "rejects": sum(self.rejects.values()),
            "rejects_by_code": dict(sorted(self.rejects.items())),
            "expected": self.expected,
            "expected_delta": None if self.expected is None else self.records - self.expected,
            "hours": round(self.seconds / 3600.0, 3),
            "durations_from_metadata": self.seconds_from_metadata,
            "assumed_duration_s": self.mean_duration_s,
            "records_by_split": dict(sorted(self.by_split.items())),
            **self.notes,
        }


class _Tracker:
    """Compact per-record arrays for the leakage estimate and the duplicate-id count."""

    def __init__(self, train_splits: tuple[str, ...]):
        self.train_splits = set(train_splits)
        self.heldout: set[int] = set()
        self.origin = array("Q")  # hash of each origin id of a train record
        self.origin_record = array("I")  # ... and that record's index
        self.record_split = array("H")
        self.record_source = array("H")
        self.key_hashes = array("Q")
        self.splits: dict[str, int] = {}

    def add(self, source_idx: int, split: str, key: str, origin_ids: tuple[str, ...]) -> None:
        index = len(self.key_hashes)
        self.key_hashes.append(stable_hash64(key, salt="plan-key"))
        self.record_source.append(source_idx)
        self.record_split.append(self.splits.setdefault(split, len(self.splits)))
        hashes = [stable_hash64(o, salt="plan-origin") for o in origin_ids]
        if split in self.train_splits:
            for h in hashes:
                self.origin.append(h)
                self.origin_record.append(index)
        else:
            self.heldout.update(hashes)

    def leaked(self) -> np.ndarray:
        """Indices of train records sharing an origin id with a held-out record."""
        if not self.heldout or not self.origin:
            return np.zeros(0, dtype=np.int64)
        hits = np.isin(
            np.frombuffer(self.origin, dtype=np.uint64), np.fromiter(self.heldout, dtype=np.uint64)
        )
        return np.unique(np.frombuffer(self.origin_record, dtype=np.uint32)[hits]).astype(np.int64)

    def repeated_ids(self) -> int:
        keys = np.frombuffer(self.key_hashes, dtype=np.uint64)
        return int(len(keys) - len(np.unique(keys)))


def plan_spec(
    spec: Any, *, check_audio: bool = False, throughput: float = THROUGHPUT_X_REALTIME
) -> dict[str, Any]:
    """The plan of a loaded :class:`~clap_corpus.pipeline.spec.corpus.CorpusSpec`, as a JSON-able dict."""
    t0 = time.monotonic()
    tracker = _Tracker(spec.options.train_splits)
    sources: list[SourcePlan] = []
    split_seconds: defaultdict[str, float] = defaultdict(float)
    lists = load_lists(spec)
    removed: Counter[tuple[str, str]] = Counter()
    max_chars = spec.options.max_caption_chars
    for idx, source in enumerate(spec.sources):
        default = float(source.option("mean_duration_s") or default_duration_s(source.adapter))
        sp = SourcePlan(source.name, source.adapter, source.expected_count, default)
        sources.append(sp)
        proportions = source.split_proportions or spec.options.split_proportions
        notes = SourceNotes()
        for item in read_source(source, scan_audio=check_audio, notes=notes):
            sp.rows += 1
            if isinstance(item, Reject):
                sp.rejects[item.code] += 1
                continue
            # the stages a run applies before reading audio: captions, then (once split) the lists
            problem = caption_problem(item, max_chars)
            if problem is not None:
                sp.rejects[problem[0]] += 1
                continue
            # a guard-only source is held out (and never written): it checks, it takes no shard
            split = GUARD_SPLIT if source.guard else split_of(item, proportions)
            if lists:
                gone = excluded(replace(item, split=split), lists)
                if gone is not None:
                    sp.rejects[gone[0].code] += 1
                    removed[(source.name, gone[1])] += 1
                    continue
            sp.records += 1
            seconds = item.expected_duration_s
            if seconds is not None and seconds > 0:
                sp.seconds_from_metadata += 1
            else:
                seconds = default
            sp.seconds += seconds
            sp.by_split[split] += 1
            split_seconds[split] += seconds
            tracker.add(idx, split, item.key, item.origin_ids)
        sp.notes = notes.to_json(source.split_map, source.split)
    leaked = tracker.leaked()
    split_names = {i: s for s, i in tracker.splits.items()}
    leaked_by_split = Counter(
        split_names[int(i)] for i in np.frombuffer(tracker.record_split, np.uint16)[leaked]
    )
    leaked_by_source = Counter(
        sources[int(i)].name for i in np.frombuffer(tracker.record_source, np.uint16)[leaked]
    )
    shard_size = spec.options.shard_size
    splits = {}
    for name in sorted(split_seconds.keys() - {GUARD_SPLIT}):
        n = sum(sp.by_split[name] for sp in sources) - leaked_by_split[name]
        splits[name] = {
            "records": n,
            "hours": round(split_seconds[name] / 3600.0, 3),
            "shards": math.ceil(n / shard_size) if n else 0,
        }
    hours = sum(sp.seconds for sp in sources) / 3600.0
    return {
        "corpus": spec.corpus,
        "spec": spec.path,
        "sources": {sp.name: sp.to_json() for sp in sources},
        "rows": sum(sp.rows for sp in sources),
        "records": sum(sp.records for sp in sources),
        "rejects": sum(sum(sp.rejects.values()) for sp in sources),
        "splits": splits,
        "shard_size": shard_size,
        "leakage": {
            "guard": spec.options.leakage_guard,
            "train_records_to_remove": len(leaked) if spec.options.leakage_guard else 0,
            "overlapping_train_records": len(leaked),
            "by_source": dict(sorted(leaked_by_source.items())),
        },
        "repeated_ids": tracker.repeated_ids(),
        **({"exclude": removal_report(removed, lists)} if lists else {}),
        "hours": round(hours, 3),
        "throughput_x_realtime": throughput,
        "worker_core_hours": round(hours / throughput, 2),
        "audio_checked": check_audio,
        "seconds": round(time.monotonic() - t0, 2),
    }


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as the command prints it."""
    checked = "audio files listed" if plan["audio_checked"] else "no audio read or listed"
    lines = [f"plan for corpus '{plan['corpus']}' ({plan['spec']}): metadata only, {checked}"]
    lines.append(
        f"  {'source':<24}{'adapter':<13}{'rows':>10}{'rejects':>9}{'records':>10}{'expected':>10}"
        f"{'delta':>9}{'hours':>10}  durations"
    )
    codes: Counter[str] = Counter()
    for name, s in plan["sources"].items():
        codes.update(s["rejects_by_code"])
        expected = "" if s["expected"] is None else str(s["expected"])
        delta = "" if s["expected_delta"] is None else f"{s['expected_delta']:+d}"
        n, meta = s["records"], s["durations_from_metadata"]
        if n and meta == n:
            durations = "metadata"
        elif meta:
            durations = f"metadata for {meta}, else {s['assumed_duration_s']:g} s"
        else:
            durations = f"assumed {s['assumed_duration_s']:g} s"
        lines.append(
            f"  {name:<24}{s['adapter']:<13}{s['rows']:>10}{s['rejects']:>9}{n:>10}{expected:>10}{delta:>9}"
            f"{s['hours']:>10.2f}  {durations}"
        )
    if codes:
        lines.append("  rejects before sharding: " + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    for name, s in plan["sources"].items():
        if c := s.get("coverage"):
            lines.append(coverage_line(name, c))
        for line in (join_line(name, s), split_map_line(name, s)):
            if line:
                lines.append(line)
    if "exclude" in plan:
        by = ", ".join(f"{k} {v}" for k, v in plan["exclude"]["removed_by_list"].items())
        lines.append(
            f"  exclusion lists will remove {plan['exclude']['removed']} records" + (f" ({by})" if by else "")
        )
    lines.append(
        f"  {'split':<24}{'records':>10}{'hours':>10}{'shards':>8}   ({plan['shard_size']} per shard)"
    )
    for name, s in plan["splits"].items():
        lines.append(f"  {name:<24}{s['records']:>10}{s['hours']:>10.2f}{s['shards']:>8}")
    leak = plan["leakage"]
    if leak["overlapping_train_records"]:
        by = ", ".join(f"{k} {v}" for k, v in leak["by_source"].items())
        verb = "will remove" if leak["guard"] else "is OFF and would remove"
        lines.append(f"  leakage guard {verb} {leak['overlapping_train_records']} train records ({by})")
    else:
        lines.append("  leakage guard: no train record shares an origin id with a held-out split")
    if plan["repeated_ids"]:
        lines.append(
            f"  {plan['repeated_ids']} records repeat an id of their source (rejected as duplicate_key)"
        )
    lines.append(
        f"  total: {plan['records']} records, {plan['hours']:.1f} h of audio; at "
        f"{plan['throughput_x_realtime']:g}x realtime per worker core about {plan['worker_core_hours']:.1f} "
        "worker-core-hours (one-core figures per step, not a measured run; --throughput to change)"
    )
    lines.append(f"  metadata read in {plan['seconds']:.1f} s")
    return "\n".join(lines)
