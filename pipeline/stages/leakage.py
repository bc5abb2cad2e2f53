"""The leakage guard: a clip held out for evaluation is never also trained on.

AudioCaps clips are AudioSet clips (YouTube ids); Clotho and FSD50K clips are Freesound clips. A
record in a train split (``options.train_splits``: train, balanced_train, unbalanced_train by
default) is removed when any of its origin ids also belongs to a record of any other split, of any
source. Each removal becomes a Reject (stage ``leakage``, code ``eval_overlap``) whose reason names
the held-out source, split and key, so it is listed with the other rejects of its source.

The held-out origin ids travel as a side input: evaluation splits are small (AudioSet eval, the
valid/test parts of AudioCaps, Clotho and FSD50K: about 40 000 ids, a few MB), so the two million
train records stream past a dict instead of being shuffled for a join.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import AsDict, AsSingleton, TaggedOutput

from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code
from clap_corpus.core.rejects import Stage as RejectStage
from clap_corpus.pipeline.spec.corpus import CorpusSpec
from clap_corpus.transforms.heldout import Holder
from clap_corpus.transforms.stage_output import GUARD_RECORDS, StageOutput

REJECTS = "rejects"
PAIRS = "pairs"
GUARDS = "guards"
STAGE = "leakage"  # the report's section; the rejects' stage is RejectStage.LEAKAGE, of the same name


def heldout_origins(record: Record, train_splits: Iterable[str]) -> list[tuple[str, Holder]]:
    """(origin id, holder) for each origin id of a record outside the train splits."""
    if record.split in set(train_splits):
        return []
    return [(oid, (record.source, str(record.split), record.key)) for oid in record.origin_ids]


def find_overlap(
    record: Record, heldout: Mapping[str, Holder], train_splits: Iterable[str]
) -> tuple[str, Holder] | None:
    """(origin id, held-out holder) if the record is trained on and shares an origin with a held-out clip."""
    if record.split not in set(train_splits):
        return None
    for oid in record.origin_ids:
        holder = heldout.get(oid)
        if holder is not None:
            return oid, holder
    return None


def removal(record: Record, oid: str, holder: Holder) -> Reject:
    source, split, key = holder
    return Reject.for_record(
        record,
        RejectStage.LEAKAGE,
        Code.EVAL_OVERLAP,
        f"{oid} is also in split '{split}' of source '{source}' (sample {key}); "
        f"removed from split '{record.split}'",
    )


@dataclass(frozen=True)
class Removal:
    """A train record left out: its reject, and (train source, held-out "source/split") for the report."""

    reject: Reject
    overlap: tuple[str, str]


def guard(record: Record, heldout: Mapping[str, Holder], train_splits: Iterable[str]) -> Record | Removal:
    """The record, or its removal (a Reject naming the held-out source, split and sample)."""
    hit = find_overlap(record, heldout, train_splits)
    if hit is None:
        return record
    oid, holder = hit
    source, split, _ = holder
    return Removal(removal(record, oid, holder), (record.source, f"{source}/{split}"))


class _GuardFn(beam.DoFn):
    def __init__(self, train_splits: tuple[str, ...]):
        self.train_splits = train_splits

    def process(self, record: Record, heldout: Mapping[str, Holder]):
        out = guard(record, heldout, self.train_splits)
        if isinstance(out, Removal):
            yield TaggedOutput(REJECTS, out.reject)
            yield TaggedOutput(PAIRS, out.overlap)
        else:
            yield out


class CountPairs(beam.CombineFn):
    """Counts (a, b) pairs and hands the counter to ``report`` for the stage's summary dict."""

    def __init__(self, report: Callable[[Counter[tuple[str, str]]], dict[str, Any]]):
        self.report = report

    def create_accumulator(self) -> Counter[tuple[str, str]]:
        return Counter()

    def add_input(self, acc: Counter[tuple[str, str]], pair: tuple[str, str]) -> Counter[tuple[str, str]]:
        a, b = pair  # a list, once it has been through a Beam coder
        acc[(a, b)] += 1
        return acc

    def merge_accumulators(self, accs: Iterable[Counter[tuple[str, str]]]) -> Counter[tuple[str, str]]:
        out: Counter[tuple[str, str]] = Counter()
        for a in accs:
            out.update(a)
        return out

    def extract_output(self, acc: Counter[tuple[str, str]]) -> dict[str, Any]:
        return self.report(acc)


def _removals(acc: Counter[tuple[str, str]]) -> dict[str, Any]:
    """Removals per train source and per (train source <- held-out source/split)."""
    by_source: Counter[str] = Counter()
    for (train_source, _), n in acc.items():
        by_source[train_source] += n
    return {
        "removed": sum(acc.values()),
        "removed_by_source": dict(sorted(by_source.items())),
        "removed_by_overlap": {f"{a} <- {b}": n for (a, b), n in sorted(acc.items())},
    }


def _report(counts: dict[str, Any], heldout_ids: int, train_splits: tuple[str, ...]) -> tuple[str, dict]:
    return STAGE, {"train_splits": list(train_splits), "heldout_origin_ids": heldout_ids, **counts}


class LeakageGuard(beam.PTransform):
    """Records in; a :class:`StageOutput` out, its report one ``("leakage", {...})`` element."""

    def __init__(self, train_splits: tuple[str, ...]):
        super().__init__()
        self.train_splits = tuple(train_splits)

    def expand(self, records) -> StageOutput:
        ts = self.train_splits
        heldout = (
            records
            | "HeldOutOrigins" >> beam.FlatMap(heldout_origins, ts)
            # Several held-out clips may share an origin: name the smallest holder, deterministically.
            | "OneHolderPerOrigin" >> beam.CombinePerKey(min)
        )
        checked = records | "Guard" >> beam.ParDo(_GuardFn(ts), AsDict(heldout)).with_outputs(
            REJECTS, PAIRS, main="records"
        )
        n_heldout = heldout | "CountHeldOut" >> beam.combiners.Count.Globally()
        report = (
            checked[PAIRS]
            | "CountRemovals" >> beam.CombineGlobally(CountPairs(_removals))
            | "LeakageReport" >> beam.Map(_report, AsSingleton(n_heldout), ts)
        )
        return StageOutput(checked.records, checked[REJECTS], report)


# -- guard-only sources ---------------------------------------------------------------------------
# A source with ``guard: true`` (an evaluation set such as AudioCaps test or ESC-50) is read, its
# records placed in the split ``guard`` (held out), so the id guard above, the exact-audio check
# (cross_split_duplicates, duplicates) and CLAP's content guard all check training clips against it;
# then, before the shards, each of its records becomes a ``guard_only`` reject: it is never written,
# and inputs = samples + rejects still holds.


def guard_only_reject(record: Record) -> Reject:
    return Reject.for_record(
        record,
        RejectStage.GUARD,
        Code.GUARD_ONLY,
        "a clip of a guard-only source: training clips were checked against it (ids, decoded audio and, "
        "with options.clap, audio embeddings); it is not written",
    )


class _GuardOnlyFn(beam.DoFn):
    def __init__(self, guards: frozenset[str]):
        self.guards = guards

    def process(self, record: Record):
        if record.source in self.guards:
            yield TaggedOutput(REJECTS, guard_only_reject(record))
            yield TaggedOutput(GUARDS, record)
        else:
            yield record


def guard_only_out(spec: CorpusSpec, records) -> StageOutput:
    """Records in; a :class:`StageOutput` out: the records without those of guard-only sources, their
    ``guard_only`` rejects, and the records themselves as the extra ``GUARD_RECORDS`` (the exact
    duplicate report hashes them). Not a PTransform: its one step has always been the ParDo labelled
    GuardOnlyOut, and a composite around it would relabel it."""
    guards = spec.guard_sources()
    if not guards:
        return StageOutput(records)
    out = records | "GuardOnlyOut" >> beam.ParDo(_GuardOnlyFn(guards)).with_outputs(
        REJECTS, GUARDS, main="records"
    )
    return StageOutput(out.records, out[REJECTS], extras={GUARD_RECORDS: out[GUARDS]})
