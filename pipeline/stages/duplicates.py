"""Exact duplicates: clips whose decoded audio is identical (the same int16 PCM, 48 kHz mono).

The spec's ``options.duplicates`` picks what happens to them:

- ``report`` (default): nothing is removed. The shard writer decodes every clip anyway; it hashes the
  PCM (``core.hashing.audio_digest``, about 1 ms for a 10 s clip) and keeps (key, source,
  digest) in each shard's stats. After the shards, a GroupByKey on the digest lists every group of
  two or more samples in ``<output>/duplicates.jsonl`` and in summary.json (``stages.duplicates``).
- ``keep_first``: one copy of each group stays. That must be known before the shards are cut, so a
  hashing pass reads and decodes every clip once more before sharding (its cost is measured by
  ``bench/bench_duplicates.py``). The copy kept is, in this order of preference: one in a held-out
  split (an evaluation set stays whole and the training copy goes), one of the source listed first
  in the spec, the smallest key. Every other copy becomes a reject (stage ``duplicate``, code
  ``duplicate_audio``) that names the kept sample.
- ``drop_all``: every member of a group is removed (a clip that occurs twice is suspect).

A clip the hashing pass cannot read or decode is rejected there, with the same stage and code the
shard writer would have given it.

Across splits (``options.cross_split_duplicates``, used while ``duplicates`` is ``report``): a held-out
clip's audio in a train split (``options.train_splits``) is leakage whatever its id says.

- ``remove`` (default): before the shards, only the held-out records (valid/test: usually a few
  percent of a corpus) are read and decoded once more and their digests collected into a side input
  (:class:`transforms.heldout.HeldOutAudio`). The train shard builders decode and hash every sample
  anyway; a train sample whose digest is held out is not written but becomes a reject (stage ``leakage``, code
  ``eval_overlap_audio``, as the id-based ``eval_overlap``) naming the held-out sample. Nothing is
  hashed when no record is in a train split. A train shard's fingerprint includes the held-out set's,
  so a resumed run rebuilds the train shards whenever the set they were checked against changed.
- ``report``: nothing is removed; the groups are listed as below.

Either way ``stages.duplicates.cross_split`` in summary.json counts the groups that span more than
one split and lists the first ones (which splits, which keys and sources, which copies were removed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import AsList, AsSingleton, TaggedOutput

from clap_corpus.core.audio import quantize_int16
from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.hashing import audio_digest
from clap_corpus.core.layout import Layout
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.pipeline.spec.corpus import CorpusSpec
from clap_corpus.pipeline.stages.audio_input import failure_reject, read_audio
from clap_corpus.transforms import storage
from clap_corpus.transforms.duplicate_groups import Member, group_doc, preference
from clap_corpus.transforms.heldout import HeldOutAudio, Holder
from clap_corpus.transforms.sample import SampleOptions, decode_with_options
from clap_corpus.transforms.shards import ShardStats
from clap_corpus.transforms.stage_output import EXACT_GROUPS, StageOutput

STAGE = "duplicates"
REJECTS = "rejects"
GROUPS = "groups"

CROSS_SPLIT_LISTED = 20  # groups listed in summary.json; duplicates.jsonl has them all


def decoded_digest(data: bytes, options: SampleOptions) -> str:
    """The digest the shard writer will record for these bytes (same decode, same quantisation)."""
    return audio_digest(quantize_int16(decode_with_options(data, options).samples))


def cross_split_mode(spec: CorpusSpec) -> str:
    """Who decides about copies in several splits: the removing duplicate modes keep one copy anyway."""
    return (
        spec.options.cross_split_duplicates
        if spec.options.duplicates == "report"
        else spec.options.duplicates
    )


def cross_split_report(
    groups: list[dict[str, Any]], mode: str, train_splits: Iterable[str]
) -> dict[str, Any]:
    """The groups (in duplicates.jsonl order) whose copies sit in more than one split."""
    train = set(train_splits)
    across = [g for g in groups if len(g["splits"]) > 1]
    removed = Counter(
        m["source"] for g in across for m in g["samples"] if not m["kept"] and m["split"] in train
    )
    return {
        "mode": mode,
        "groups": len(across),
        "samples_in_groups": sum(len(g["samples"]) for g in across),
        "train_copies_removed": sum(removed.values()),
        "removed_by_source": dict(sorted(removed.items())),
        "listed": [
            {
                "digest": g.get("digest"),  # near-duplicate groups (options.clap) have none
                **({"method": g["method"], "similarity": g["similarity"]} if "method" in g else {}),
                "splits": g["splits"],
                "samples": g["samples"],
                "removed": sum(1 for m in g["samples"] if not m["kept"]),
            }
            for g in across[:CROSS_SPLIT_LISTED]
        ],
    }


def write_duplicates(
    groups: list[dict[str, Any]],
    layout: Layout,
    mode: str,
    train_splits: tuple[str, ...],
    cross_mode: str,
    near: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> tuple[str, dict[str, Any]]:
    """Write duplicates.jsonl (always, so a rerun never leaves an old list) and return the report.

    ``near``: the near-duplicate groups of CLAP scoring (``method`` and ``similarity``, no digest)."""
    groups = [*groups, *near]
    ordered = sorted(groups, key=lambda g: (g["samples"][0]["key"], g.get("digest") or ""))
    path = layout.duplicates_path()
    storage.write_bytes_atomic(path, b"".join(dumps_json(g) + b"\n" for g in ordered))
    train = set(train_splits)
    return STAGE, {
        "mode": mode,
        "groups": len(ordered),
        "samples_in_groups": sum(len(g["samples"]) for g in ordered),
        # in report mode, what cross_split_duplicates: remove left out of the train shards
        "removed": sum(1 for g in ordered for m in g["samples"] if not m["kept"]),
        "groups_across_train_and_heldout": sum(
            1 for g in ordered if {*g["splits"]} & train and {*g["splits"]} - train
        ),
        "cross_split": cross_split_report(ordered, cross_mode, train_splits),
        "file": path,
        **({"near_groups": len(near)} if near else {}),
    }


def stats_hashes(stats: ShardStats) -> list[tuple[str, tuple[Member, bool]]]:
    """(digest, (member, shipped)) for every sample the shard decoded, the removed train copies too."""
    shipped = [(d, ((k, s, stats.split), True)) for k, s, d in stats.audio_hashes]
    return shipped + [(d, ((k, s, stats.split), False)) for k, s, d in stats.overlap_removed]


def _report_groups(
    element: tuple[str, Iterable[tuple[Member, bool]]], source_order: dict[str, int], ts: tuple[str, ...]
):
    digest, flagged = element
    flagged = sorted(flagged, key=lambda mf: preference(mf[0], source_order, ts))
    if len(flagged) > 1:
        yield group_doc(digest, [m for m, _ in flagged], kept={m[0] for m, shipped in flagged if shipped})


class DuplicateReport(beam.PTransform):
    """Report mode: shard stats in, one ("duplicates", report) element out. ``removed``: (digest,
    (member, False)) of train copies of held-out audio removed before the shards (CLAP scoring)."""

    def __init__(self, spec: CorpusSpec, layout: Layout, near=None, removed=None, guards=None):
        super().__init__()
        self.spec, self.layout, self.near, self.removed, self.guards = spec, layout, near, removed, guards

    def expand(self, stats):
        order = self.spec.source_order()
        ts = self.spec.options.train_splits
        hashes = [stats | "AudioHashes" >> beam.FlatMap(stats_hashes)]
        if self.removed is not None:
            hashes.append(self.removed)
        if self.guards is not None:  # guard-only clips reach no shard: hashed here, to be listed
            hashed = self.guards | "HashGuards" >> beam.ParDo(_HashAudioFn(self.spec)).with_outputs(
                REJECTS, main="hashed"
            )
            hashes.append(
                hashed.hashed | "GuardHashes" >> beam.MapTuple(lambda d, r: (d, (_member(r), True)))
            )
        hashes = tuple(hashes) | "AllHashes" >> beam.Flatten()
        return (
            hashes
            | "GroupByAudio" >> beam.GroupByKey()
            | "DuplicateGroups" >> beam.FlatMap(_report_groups, order, ts)
            | "AllGroups" >> beam.combiners.ToList()
            | "WriteDuplicates"
            >> beam.Map(
                write_duplicates,
                self.layout,
                "report",
                ts,
                cross_split_mode(self.spec),
                *([] if self.near is None else [AsList(self.near)]),
            )
        )


class _HashAudioFn(beam.DoFn):
    def __init__(self, spec: CorpusSpec):
        self.spec = spec

    def process(self, record: Record):
        try:
            digest = decoded_digest(read_audio(self.spec, record), self.spec.options.sample)
        except Exception as e:  # one input must never take the stage down
            yield TaggedOutput(REJECTS, failure_reject(record, e))
            return
        yield digest, record


class _DecideFn(beam.DoFn):
    def __init__(self, mode: str, source_order: dict[str, int], train_splits: tuple[str, ...]):
        self.mode, self.order, self.ts = mode, source_order, train_splits

    def process(self, element: tuple[str, Iterable[Record]]):
        digest, records = element
        ranked = sorted(
            records, key=lambda r: preference((r.key, r.source, str(r.split)), self.order, self.ts)
        )
        if len(ranked) == 1:
            yield ranked[0]
            return
        keep = ranked[:1] if self.mode == "keep_first" else []
        for r in keep:
            yield r
        first = ranked[0]
        for r in ranked[len(keep) :]:
            if keep:
                reason = (
                    f"same decoded audio as {first.key} (source '{first.source}', split '{first.split}'), "
                    "which is kept"
                )
            else:
                others = [o.key for o in ranked if o is not r]
                reason = f"same decoded audio as {len(others)} other sample(s): {', '.join(others[:5])}"
            yield TaggedOutput(REJECTS, Reject.for_record(r, Stage.DUPLICATE, Code.DUPLICATE_AUDIO, reason))
        members = [(r.key, r.source, str(r.split)) for r in ranked]
        yield TaggedOutput(GROUPS, group_doc(digest, members, kept={r.key for r in keep}))


class DropDuplicates(beam.PTransform):
    """keep_first / drop_all: records in; a :class:`StageOutput` out, with the exact duplicate groups as
    the extra ``EXACT_GROUPS``. No report: the groups are written after the shards, with CLAP's
    near-duplicate groups, by :class:`WriteDropped`."""

    def __init__(self, spec: CorpusSpec):
        super().__init__()
        self.spec = spec

    def expand(self, records) -> StageOutput:
        spec = self.spec
        order = spec.source_order()
        ts = spec.options.train_splits
        hashed = records | "HashAudio" >> beam.ParDo(_HashAudioFn(spec)).with_outputs(REJECTS, main="hashed")
        decided = (
            hashed.hashed
            | "GroupByAudio" >> beam.GroupByKey()
            | "KeepOrDrop"
            >> beam.ParDo(_DecideFn(spec.options.duplicates, order, ts)).with_outputs(
                REJECTS, GROUPS, main="records"
            )
        )
        rejects = (hashed[REJECTS], decided[REJECTS]) | "DuplicateRejects" >> beam.Flatten()
        return StageOutput(decided.records, rejects, extras={EXACT_GROUPS: decided[GROUPS]})


class WriteDropped(beam.PTransform):
    """keep_first / drop_all: the exact groups in, duplicates.jsonl written (with ``near``, CLAP's
    near-duplicate groups), one ("duplicates", report) out."""

    def __init__(self, spec: CorpusSpec, layout: Layout, near=None):
        super().__init__()
        self.spec, self.layout, self.near = spec, layout, near

    def expand(self, groups):
        spec = self.spec
        return (
            groups
            | "AllGroups" >> beam.combiners.ToList()
            | "WriteDuplicates"
            >> beam.Map(
                write_duplicates,
                self.layout,
                spec.options.duplicates,
                spec.options.train_splits,
                cross_split_mode(spec),
                *([] if self.near is None else [AsList(self.near)]),
            )
        )


def _is_train(record: Record, train_splits: tuple[str, ...]) -> bool:
    return record.split in train_splits


def _is_heldout_and_needed(record: Record, train_splits: tuple[str, ...], n_train: int) -> bool:
    return n_train > 0 and record.split not in train_splits


def _member(record: Record) -> Member:
    return record.key, record.source, str(record.split)


def _holder(element: tuple[str, Record]) -> tuple[str, Holder]:
    digest, r = element
    return digest, (r.source, str(r.split), r.key)


class HeldOutAudioSet(beam.PTransform):
    """Records in; one :class:`HeldOutAudio` out (empty when no record is trained on)."""

    def __init__(self, spec: CorpusSpec):
        super().__init__()
        self.spec = spec

    def expand(self, records):
        ts = tuple(self.spec.options.train_splits)
        n_train = (
            records
            | "TrainRecords" >> beam.Filter(_is_train, ts)
            | "CountTrain" >> beam.combiners.Count.Globally()
        )
        hashed = (
            records
            | "HeldOutRecords" >> beam.Filter(_is_heldout_and_needed, ts, AsSingleton(n_train))
            | "HashHeldOut" >> beam.ParDo(_HashAudioFn(self.spec)).with_outputs(REJECTS, main="hashed")
        )
        # hashed[REJECTS] is left alone: a held-out clip that cannot be read here is rejected by its
        # own shard writer, and has no audio to compare against.
        return (
            hashed.hashed
            | "HeldOutHolder" >> beam.Map(_holder)
            | "AllHeldOut" >> beam.combiners.ToList()
            | "HeldOutSet" >> beam.Map(HeldOutAudio.build)
        )


def heldout_audio(spec: CorpusSpec, records):
    """The side input the train shard writers check against, or None when nothing is to be removed
    (cross_split_duplicates: report, or a removing duplicates mode that keeps the held-out copy)."""
    if cross_split_mode(spec) != "remove":
        return None
    return records | "HeldOutAudio" >> HeldOutAudioSet(spec)


def without_hashes(stats: ShardStats) -> ShardStats:
    """Stats as the summary needs them: the per-sample hashes would only weigh on the final step."""
    return replace(stats, audio_hashes=(), overlap_removed=())
