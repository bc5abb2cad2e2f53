"""The Beam graph: manifests in, shards out. Thin wiring around the per-sample steps.

    sources ─► ReadManifests ─► Captions ─► Split ─► shard boundaries (per split) ─► GroupByKey(shard)
                   │               │                                                   │
                   └── rejects ────┴──► WriteEarlyRejects                        WriteShards ─► stats
                                                                                       │
                                                                   Finalize: sizes.json, summary.json

Only metadata (:class:`~core.records.Record`) crosses a shuffle; each shard's worker reads
its audio files itself, so no element comes near gRPC's 2 GB limit.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics  # defined there; apache_beam.metrics does not export it
from apache_beam.pvalue import AsDict, AsList, AsSingleton, TaggedOutput

from clap_corpus.core.layout import Layout, shard_name
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.notes import SourceNotes, split_map_line
from clap_corpus.manifests.registry import read_source
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.outputs import summary as summary_mod
from clap_corpus.pipeline.outputs.plan import write_plan
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.pipeline.spec.corpus import CorpusSpec
from clap_corpus.pipeline.spec.k2c_model import check_k2c_model
from clap_corpus.pipeline.stages.audio_input import failure_reject, read_audio
from clap_corpus.pipeline.stages.duplicates import (
    DropDuplicates,
    DuplicateReport,
    WriteDropped,
    heldout_audio,
    without_hashes,
)
from clap_corpus.pipeline.stages.exclusion import ExcludeStage, load_lists
from clap_corpus.pipeline.stages.fetch import FetchStage, fetches, report_of_status
from clap_corpus.pipeline.stages.leakage import LeakageGuard, guard_only_out
from clap_corpus.scoring.inputs import ScoringInputs
from clap_corpus.transforms import storage
from clap_corpus.transforms.captions import render_captions
from clap_corpus.transforms.heldout import GUARD_SPLIT, HeldOutAudio
from clap_corpus.transforms.shard_builder import ShardBuilder
from clap_corpus.transforms.sharding import placement_hash, shard_boundaries, shard_index, split_of
from clap_corpus.transforms.shards import ShardStats, count_by, rejects_jsonl
from clap_corpus.transforms.stage_output import (
    EXACT_GROUPS,
    FETCH_STATUS,
    GUARD_RECORDS,
    NEAR_GROUPS,
    OVERLAP_HASHES,
    StageOutput,
)

log = logging.getLogger(__name__)

REJECTS = "rejects"
NOTES = "notes"
NAMESPACE = "clapcorpus"


class ReadSourceFn(beam.DoFn):
    """One source spec in; its normalized records out, one reject per bad row, and what else reading
    it found (native splits, split_map entries no clip used, join and coverage counts) as NOTES."""

    def process(self, source: SourceSpec):
        n = 0
        notes = SourceNotes()
        for item in read_source(source, notes=notes):
            n += 1
            if isinstance(item, Reject):
                yield TaggedOutput(REJECTS, item)
            else:
                yield item
        found = notes.to_json(source.split_map, source.split)
        if line := split_map_line(source.name, found):
            log.warning("%s", line.strip())
        yield TaggedOutput(NOTES, (source.name, found))
        log.info("source %s: %d manifest rows read", source.name, n)


class RenderCaptionsFn(beam.DoFn):
    def __init__(self, max_caption_chars: int):
        self.max_caption_chars = max_caption_chars

    def process(self, record: Record):
        out = render_captions(record, self.max_caption_chars)
        yield TaggedOutput(REJECTS, out) if isinstance(out, Reject) else out


class ShardBoundariesFn(beam.CombineFn):
    """Collects the placement hashes of one split (8 bytes per sample) and cuts them into shards."""

    def __init__(self, shard_size: int):
        self.shard_size = shard_size

    def create_accumulator(self) -> array:
        return array("Q")

    def add_input(self, acc: array, h: int) -> array:
        acc.append(h)
        return acc

    def merge_accumulators(self, accs) -> array:
        out = array("Q")
        for a in accs:
            out.extend(a)
        return out

    def extract_output(self, acc: array) -> list[int]:
        return shard_boundaries(acc, self.shard_size)


class WriteShardFn(beam.DoFn):
    """One shard's records in; the shard built (or found finished) by :class:`ShardBuilder`; its stats out.

    Beam's part only: counters, per-process setup, the held-out side input."""

    def __init__(self, spec: CorpusSpec, layout: Layout):
        self.builder = ShardBuilder(
            layout,
            spec.options.formats,
            spec.options.sample,
            partial(read_audio, spec),
            failure_reject,
            spec.fingerprint(),
            spec.options.train_splits,
            ("clap",) if spec.options.clap is not None else (),
        )
        self.samples = Metrics.counter(NAMESPACE, "samples")
        self.rejects = Metrics.counter(NAMESPACE, "rejects")
        self.shards_done = Metrics.counter(NAMESPACE, "shards_done")
        self.shards_skipped = Metrics.counter(NAMESPACE, "shards_skipped")
        self.audio_ms = Metrics.counter(NAMESPACE, "audio_milliseconds")

    def setup(self):
        from clap_corpus.transforms.views import one_thread

        # One worker process per core: BLAS threads (the mel matmul) would only fight each other.
        one_thread()

    def process(self, element: tuple[tuple[str, str], Any], heldout: HeldOutAudio | None = None):
        (split, shard), records = element
        stats = self.builder.build(split, shard, records, heldout)
        if stats.reused:
            self.shards_skipped.inc()
        else:
            self.samples.inc(stats.samples)
            self.rejects.inc(stats.rejects)
            self.shards_done.inc()
            # from the per-source seconds of the stats (rounded to the millisecond there)
            self.audio_ms.inc(round(sum(stats.audio_seconds_by_source.values()) * 1000))
        yield stats


class WriteEarlyRejectsFn(beam.DoFn):
    """All rejects of one source from before sharding, in row order, in one JSONL file."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def process(self, element: tuple[str, Any]):
        source, rejects = element
        ordered = sorted(rejects, key=lambda r: (r.row if r.row is not None else -1, r.stage, r.code, r.path))
        storage.write_bytes_atomic(self.layout.manifest_rejects_path(source), rejects_jsonl(ordered))
        yield source, count_by(ordered, "code")


def scoring_inputs(spec: CorpusSpec) -> ScoringInputs:
    """What CLAP scoring takes from the spec (scoring/ never imports the pipeline)."""
    assert spec.options.clap is not None
    return ScoringInputs(
        clap=spec.options.clap,
        sample=spec.options.sample,
        duplicates=spec.options.duplicates,
        train_splits=tuple(spec.options.train_splits),
        source_order=spec.source_order(),
        guard_sources=spec.guard_sources(),
        spec_path=spec.path,
        read_audio=partial(read_audio, spec),
    )


# (step label, record stage): each stage a PTransform whose expand returns a StageOutput. The labels are
# the graph's step names (Dataflow updates a running job by them): never rename one.
Stages = list[tuple[str, beam.PTransform]]


def stages_before_split(spec: CorpusSpec, layout: Layout, retry_failed: bool) -> Stages:
    """(step label, record stage) before the split: fetch (a source names http(s) URLs: download them
    into the cache first), then keyword-to-caption."""
    stages: Stages = []
    if fetches(spec):
        stages.append(("Fetch", FetchStage(spec, layout, retry_failed)))
    if spec.k2c_sources():  # K2C on for at least one source (mode "off" everywhere: no model needed)
        check_k2c_model(spec)  # in the launcher: a missing model stops the run, naming the sources
        # Imported here: k2c.stage pulls in Beam's RunInference (and torch, scipy), ~0.5 s of CPU
        # in every process that unpickles this module's DoFns, K2C or not.
        from clap_corpus.k2c.stage import K2CStage

        assert spec.options.k2c is not None  # k2c_sources() names none without the section
        stages.append(("K2C", K2CStage(spec.options.k2c, spec.path)))
    return stages


def stages_after_split(spec: CorpusSpec) -> Stages:
    """(step label, record stage) after the split that need no model: exclusion lists, leakage guard,
    exact duplicates. They go first, so that CLAP scoring never embeds a clip they drop."""
    stages: Stages = []
    lists = load_lists(spec)  # exclusion lists (options.exclude), read here: a bad one stops the launch
    if lists:
        stages.append(("ExclusionLists", ExcludeStage(lists)))
    if spec.options.leakage_guard:
        stages.append(("LeakageGuard", LeakageGuard(spec.options.train_splits)))
    if spec.options.duplicates != "report":
        stages.append(("DropDuplicates", DropDuplicates(spec)))
    return stages


def model_stages(spec: CorpusSpec, layout: Layout, heldout) -> Stages:
    """(step label, record stage) after the held-out audio set is known: CLAP scoring (``heldout``: the
    held-out digests, or None)."""
    if spec.options.clap is None:
        return []
    # Imported here, as K2C is: RunInference and the model code stay out of runs without it.
    from clap_corpus.scoring.stage import ClapStage

    return [("CLAP", ClapStage(scoring_inputs(spec), layout, heldout))]


class RecordStages:
    """Runs record stages one after another and keeps the :class:`StageOutput` of each, in order."""

    def __init__(self) -> None:
        self.outputs: list[StageOutput] = []

    def run(self, records, stages: Stages):
        """Each stage applied under its label to what the one before kept; the records left."""
        for label, stage in stages:
            records = self.add(records | label >> stage)
        return records

    def add(self, out: StageOutput):
        assert isinstance(out, StageOutput), f"a record stage returned {type(out).__name__}"
        self.outputs.append(out)
        return out.records

    def rejects(self) -> list:
        return [o.rejects for o in self.outputs if o.rejects is not None]

    def reports(self) -> list:
        return [o.report for o in self.outputs if o.report is not None]

    def extras(self) -> dict[str, Any]:
        """Every stage's extras, by name (a name given twice would hide one: refused)."""
        out: dict[str, Any] = {}
        for o in self.outputs:
            assert not set(o.extras) & set(out), f"extras given twice: {sorted(set(o.extras) & set(out))}"
            out.update(o.extras)
        return out


def _with_split(record: Record, spec: CorpusSpec) -> Record:
    if spec.source(record.source).guard:
        return replace(record, split=GUARD_SPLIT)  # held out from every split, never written
    proportions = spec.source(record.source).split_proportions or spec.options.split_proportions
    return replace(record, split=split_of(record, proportions))


def _shard_key(record: Record, boundaries: dict[str, list[int]]) -> tuple[tuple[str, str], Record]:
    assert record.split is not None
    idx = shard_index(placement_hash(record.key), boundaries.get(record.split, []))
    return (record.split, shard_name(idx)), record


class BuildCorpus(beam.PTransform):
    """The whole job for one corpus spec into one output root."""

    def __init__(self, spec: CorpusSpec, output: str, retry_failed: bool = False):
        super().__init__()
        self.spec = spec
        self.layout = Layout(output, spec.corpus)
        self.retry_failed = retry_failed  # the fetch stage refetches rows its status table says failed

    def expand(self, pbegin):
        spec, layout = self.spec, self.layout
        read = (
            pbegin
            | "Sources" >> beam.Create(list(spec.sources))
            | "ReadManifests" >> beam.ParDo(ReadSourceFn()).with_outputs(REJECTS, NOTES, main="records")
        )
        # Manifests are read one source per worker; spread their records before the real work.
        records = read.records | "Spread" >> beam.Reshuffle()
        captioned = records | "Captions" >> beam.ParDo(
            RenderCaptionsFn(spec.options.max_caption_chars)
        ).with_outputs(REJECTS, main="records")
        # The record stages, each one line in the lists below (stages_before_split ...); what they
        # drop, report and hand on (StageOutput) is collected here.
        stages = RecordStages()
        ready = stages.run(captioned.records, stages_before_split(spec, layout, self.retry_failed))
        placed = stages.run(ready | "Split" >> beam.Map(_with_split, spec), stages_after_split(spec))
        heldout = heldout_audio(spec, placed)  # cross-split duplicates: the held-out digests, or None
        placed = stages.run(placed, model_stages(spec, layout, heldout))
        # guard-only sources were checked against: they end here
        placed = stages.add(guard_only_out(spec, placed))
        extras = stages.extras()
        # What every stage between reading and sharding dropped (as Reject PCollections), so that the
        # accounting still holds.
        dropped = [read[REJECTS], captioned[REJECTS], *stages.rejects()]
        # (stage name, JSON-able dict) PCollections: summary.json gets them under "stages".
        reports = stages.reports()
        if FETCH_STATUS in extras:  # the fetch report's steps sit beside the stage, as they always have
            reports.append(report_of_status(extras[FETCH_STATUS]))
        boundaries = (
            placed
            | "PlacementHash" >> beam.Map(lambda r: (r.split, placement_hash(r.key)))
            | "ShardBoundaries" >> beam.CombinePerKey(ShardBoundariesFn(spec.options.shard_size))
        )
        # plan.json (records per split) lets the launcher show progress and an ETA.
        _ = (
            placed
            | "PlanSplits" >> beam.Map(lambda r: r.split)
            | "CountPlanned" >> beam.combiners.Count.PerElement()
            | "PlanTable" >> beam.combiners.ToDict()
            | "WritePlan" >> beam.Map(write_plan, spec.fingerprint(), spec.options.shard_size, layout)
        )
        stats = (
            placed
            | "AssignShard" >> beam.Map(_shard_key, AsDict(boundaries))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards"
            >> beam.ParDo(WriteShardFn(spec, layout), *([] if heldout is None else [AsSingleton(heldout)]))
        )
        # duplicates.jsonl and its report, with CLAP's near-duplicate groups: in report mode from the
        # hashes the shard writers recorded (and CLAP's removed train copies, and the guard-only clips,
        # which reach no shard), else from the groups DropDuplicates decided on.
        near = extras.get(NEAR_GROUPS)
        if spec.options.duplicates == "report":
            removed, guards = extras.get(OVERLAP_HASHES), extras.get(GUARD_RECORDS)
            reports.append(stats | "DuplicateReport" >> DuplicateReport(spec, layout, near, removed, guards))
        else:
            reports.append(extras[EXACT_GROUPS] | "DuplicateGroupsOut" >> WriteDropped(spec, layout, near))
        early_rejects = tuple(dropped) | "EarlyRejects" >> beam.Flatten()
        early_counts = (
            early_rejects
            | "RejectsBySource" >> beam.Map(lambda r: (r.source, r))
            | "GroupRejects" >> beam.GroupByKey()
            | "WriteEarlyRejects" >> beam.ParDo(WriteEarlyRejectsFn(layout))
        )
        inputs = (
            (read.records, read[REJECTS])
            | "AllInputs" >> beam.Flatten()
            | "InputSource" >> beam.Map(lambda x: x.source)
            | "CountInputs" >> beam.combiners.Count.PerElement()
        )
        stage_reports = (
            tuple(reports) | "StageReports" >> beam.Flatten()
            if reports
            else pbegin | "NoStageReports" >> beam.Create([])
        )
        return (
            pbegin
            | "Once" >> beam.Create([None])
            | "Finalize"
            >> beam.Map(
                finalize,
                spec,
                layout,
                AsList(stats | "StatsForSummary" >> beam.Map(without_hashes)),
                AsDict(inputs),
                AsList(early_counts),
                AsList(stage_reports),
                AsList(read[NOTES]),
            )
        )


def finalize(
    _: None,
    spec: CorpusSpec,
    layout: Layout,
    stats: list[ShardStats],
    inputs: dict[str, int],
    early: list[tuple[str, dict[str, int]]],
    stage_reports: list[tuple[str, dict[str, Any]]],
    notes: Sequence[tuple[str, dict[str, Any]]] = (),
) -> RunSummary:
    """Runs once at the end: sizes.json per split, stale files removed, summary.json written last."""
    summary = summary_mod.build_summary(
        spec, layout, stats, inputs, dict(early), dict(notes), stages=dict(stage_reports)
    )
    summary_mod.write_outputs(spec, layout, stats, summary)
    return summary
