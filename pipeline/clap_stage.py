"""CLAP scoring in the Beam graph (``options.clap``): embed, score, filter, guard against content leakage.

    placed ─► Prepare (read, decode, views) ─► RunInference ─► Score ─┬─► Filter ─► Guard ─► out
                 └── unscored (unreadable: the shard writer rejects it) ─┘     │          │
                            thresholds per source (side input, low_clap_score) ─┘          │
                            held-out audio embeddings (side input, eval_overlap_content) ──┘

Runs after the split (the guard needs to know which records are held out) and before sharding, so a
removed pair never reaches a shard. Every clip is read and decoded once more here: the shard writer
cannot score, since a source's top fraction and the held-out embeddings are known only once every
clip is embedded. A clip this pass cannot read or decode goes on unscored; the shard writer then
rejects it with the stage and code it always has.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import replace
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.pvalue import AsDict, AsList, AsSingleton, TaggedOutput

from clap_corpus.core.extras import require_extra
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.pipeline.audio_input import read_audio
from clap_corpus.pipeline.clap_config import ClapConfig
from clap_corpus.pipeline.clap_handler import ClapModelHandler, load_embedder
from clap_corpus.pipeline.duplicates import group_doc, preference
from clap_corpus.pipeline.spec import CorpusSpec
from clap_corpus.transforms.captions import for_duration
from clap_corpus.transforms.clap_scores import (
    EMBEDDING_DTYPE,
    NEAR_METHOD,
    SCORE_EDGES,
    HeldOutEmbeddings,
    NeighbourIndex,
    audio_vector,
    clap_input,
    content_overlap_reject,
    groups_from_edges,
    low_score_reject,
    near_edges,
    near_partition,
    normalise_caption,
    order_by_score,
    score_histogram,
    scores_of,
    top_fraction_threshold,
)
from clap_corpus.transforms.sample import decode_with_options

log = logging.getLogger(__name__)

STAGE = "clap"
REJECTS = "rejects"
UNSCORED = "unscored"
NEAREST = "nearest"


def _link(record: Record) -> str:
    return str(record.audio)


class PrepareFn(beam.DoFn):
    """A record in; (the record as it will ship, its model input) out, or the record unscored."""

    def __init__(self, spec: CorpusSpec):
        self.spec = spec
        self.unscored = Metrics.counter(STAGE, "unscored")

    def setup(self):
        import torch

        torch.set_num_threads(1)  # one worker process per core

    def process(self, record: Record):
        try:
            decoded = decode_with_options(read_audio(self.spec, record), self.spec.options.sample)
            shipped = for_duration(record, decoded.duration_s)
            yield shipped, clap_input(decoded.samples, record.key, shipped.text)
        except Exception as e:  # the shard writer reads it again and rejects it with its own code
            log.debug("CLAP: %s not scored: %s", record.key, e)
            self.unscored.inc()
            yield TaggedOutput(UNSCORED, record)


def attach_scores(element: tuple[Record, PredictionResult], order_captions: bool) -> Record:
    record, prediction = element
    audio, texts = prediction.inference
    out = replace(record, clap=scores_of(np.asarray(audio), np.asarray(texts)))
    return order_by_score(out) if order_captions else out


class TopFractionFn(beam.CombineFn):
    """A source's best-caption scores in; the lowest score its top fraction keeps out (4 bytes a clip)."""

    def __init__(self, fraction: float):
        self.fraction = fraction

    def create_accumulator(self) -> list[float]:
        return []

    def add_input(self, acc: list[float], score: float) -> list[float]:
        acc.append(score)
        return acc

    def merge_accumulators(self, accs) -> list[float]:
        return [s for a in accs for s in a]

    def extract_output(self, acc: list[float]) -> float:
        return top_fraction_threshold(acc, self.fraction)


class FilterFn(beam.DoFn):
    def __init__(self, config: ClapConfig):
        self.config = config

    def process(self, record: Record, thresholds: dict[str, float]):
        top = thresholds.get(record.source) if self.config.keep_top_fraction is not None else None
        reject = low_score_reject(record, self.config.min_clap_score, top)
        yield TaggedOutput(REJECTS, reject) if reject else record


class GuardFn(beam.DoFn):
    """Train records whose audio embedding is within ``content_threshold`` of a held-out one's are
    removed (or only reported); every scored train record's nearest held-out sample goes to NEAREST."""

    def __init__(self, config: ClapConfig, train_splits: tuple[str, ...]):
        self.config, self.train_splits = config, train_splits
        self._cached: tuple[int, HeldOutEmbeddings, NeighbourIndex | None] | None = None

    def _index(self, heldout: HeldOutEmbeddings) -> NeighbourIndex | None:
        if self._cached is None or self._cached[0] != id(heldout):
            index = None
            if len(heldout.holders):
                index = NeighbourIndex(heldout.vectors.shape[1])
                index.add(heldout.vectors)
            self._cached = (id(heldout), heldout, index)
        return self._cached[2]

    def process(self, record: Record, heldout: HeldOutEmbeddings):
        if record.split not in self.train_splits or record.clap is None:
            yield record
            return
        index = self._index(heldout)
        if index is None:
            yield record
            return
        sims, idx = index.search(audio_vector(record.clap)[None, :], 1)
        sim, row = round(float(sims[0, 0]), 6), int(idx[0, 0])
        holder = heldout.holders[row]
        near = sim >= self.config.content_threshold
        removed = near and self.config.content_overlap == "remove"
        yield TaggedOutput(
            NEAREST,
            {
                "similarity": sim,
                "train": _pair_side(record),
                "heldout": {"source": holder[0], "split": holder[1], "key": holder[2]},
                "removed": removed,
            },
        )
        if removed:
            yield TaggedOutput(REJECTS, content_overlap_reject(record, holder, sim))
        else:
            yield record


def _pair_side(record: Record) -> dict[str, Any]:
    return {
        "key": record.key,
        "source": record.source,
        "split": record.split,
        "caption": record.text[0] if record.text else "",
        "audio": _link(record),
    }


def _heldout_item(record: Record) -> tuple[tuple[str, str, str], bytes]:
    assert record.clap is not None and record.split is not None
    return (record.source, record.split, record.key), record.clap.audio_embedding


class ScoreStatsFn(beam.CombineFn):
    """Per source: a histogram of best-caption scores, their sum and count; the ``n`` lowest pairs."""

    def __init__(self, n: int):
        self.n = n

    def create_accumulator(self) -> dict[str, Any]:
        return {"sources": {}, "lowest": []}

    def add_input(self, acc: dict[str, Any], record: Record) -> dict[str, Any]:
        assert record.clap is not None
        best = record.clap.best
        s = acc["sources"].setdefault(record.source, {"n": 0, "sum": 0.0, "scores": []})
        s["n"] += 1
        s["sum"] += best
        s["scores"].append(best)
        if len(s["scores"]) > 4096:  # keep the accumulator small: histogram counts instead
            self._fold(s)
        i = int(np.argmax(record.clap.scores))
        acc["lowest"].append(
            (best, record.key, {**_pair_side(record), "caption": record.text[i], "score": best})
        )
        if len(acc["lowest"]) > 4 * self.n:
            acc["lowest"] = sorted(acc["lowest"], key=lambda x: (x[0], x[1]))[: self.n]
        return acc

    @staticmethod
    def _fold(s: dict[str, Any]) -> None:
        hist = score_histogram(s.pop("scores"))
        s["hist"] = [a + b for a, b in zip(s.get("hist", [0] * len(hist)), hist, strict=True)]
        s["scores"] = []

    def merge_accumulators(self, accs) -> dict[str, Any]:
        out = self.create_accumulator()
        for a in accs:
            for source, s in a["sources"].items():
                self._fold(s)
                o = out["sources"].setdefault(source, {"n": 0, "sum": 0.0, "scores": []})
                self._fold(o)
                o["n"] += s["n"]
                o["sum"] += s["sum"]
                o["hist"] = [x + y for x, y in zip(o["hist"], s["hist"], strict=True)]
            out["lowest"] = sorted(out["lowest"] + a["lowest"], key=lambda x: (x[0], x[1]))[: self.n]
        return out

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        sources = {}
        for source, s in sorted(acc["sources"].items()):
            self._fold(s)
            sources[source] = {
                "scored": s["n"],
                "mean_score": round(s["sum"] / s["n"], 6) if s["n"] else None,
                "score_hist": s["hist"],
            }
        lowest = sorted(acc["lowest"], key=lambda x: (x[0], x[1]))[: self.n]
        return {"sources": sources, "lowest_pairs": [item for _, _, item in lowest]}


def caption_overlaps(
    record: Record, heldout_captions: dict[str, tuple[str, str, str]], train_splits: tuple[str, ...]
):
    """(normalised caption, train side, held-out holder) for each train caption a held-out sample has."""
    if record.split not in train_splits:
        return
    for text in dict.fromkeys(record.text):
        holder = heldout_captions.get(normalise_caption(text))
        if holder is not None:
            yield {
                "caption": text,
                "train": {"key": record.key, "source": record.source, "split": record.split},
                "heldout": {"source": holder[0], "split": holder[1], "key": holder[2]},
            }


def build_report(
    _: None,
    config: ClapConfig,
    stats: dict[str, Any],
    counts: list[tuple[str, int]],
    nearest: list[dict[str, Any]],
    captions: list[dict[str, Any]],
) -> tuple[str, dict[str, Any]]:
    c = Counter(dict(counts))
    return STAGE, {
        "model": config.model,
        "kind": config.kind,
        "min_clap_score": config.min_clap_score,
        "keep_top_fraction": config.keep_top_fraction,
        "order_captions": config.order_captions,
        "content_overlap": config.content_overlap,
        "content_threshold": config.content_threshold,
        "scored": c["scored"],
        "unscored": c["unscored"],
        "low_clap_score": c["low_clap_score"],
        "eval_overlap_content": c["eval_overlap_content"],
        "near_duplicate_audio": c["near_duplicate_audio"],
        "score_edges": list(SCORE_EDGES),
        **stats,
        "closest_cross_split_pairs": sorted(nearest, key=lambda p: (-p["similarity"], p["train"]["key"])),
        "caption_overlaps": len(captions),
        "caption_overlap_pairs": sorted(captions, key=lambda p: (p["train"]["key"], p["caption"]))[
            : config.report_pairs
        ],
    }


def near_blocks(item: tuple[tuple[str, str, str], bytes], partitions: int):
    """The sample under every pair of blocks that holds its own: block pair (i, j) meets in one worker."""
    p = near_partition(item[0][0], partitions)
    for q in range(partitions):
        yield (min(p, q), max(p, q)), (p, item)


def block_edges(element: tuple[tuple[int, int], Any], config: ClapConfig):
    (i, j), tagged = element
    rows = sorted(tagged)
    left = [it for p, it in rows if p == i]
    right = left if i == j else [it for p, it in rows if p == j]

    def unpack(items):
        members = [m for m, _ in items]
        vecs = [np.frombuffer(v, dtype=EMBEDDING_DTYPE).astype(np.float32) for _, v in items]
        return members, (np.stack(vecs) if vecs else np.zeros((0, 1), np.float32))

    (lm, lv), (rm, rv) = unpack(left), unpack(right)
    assert config.near_duplicate_threshold is not None
    yield from near_edges(
        lm, lv, rm, rv, config.near_duplicate_threshold, config.near_duplicate_neighbours, same_block=i == j
    )


def near_group_docs(
    edges: list[tuple[tuple[str, str, str], tuple[str, str, str], float]],
    config: ClapConfig,
    mode: str,
    source_order: dict[str, int],
    train_splits: tuple[str, ...],
) -> list[dict[str, Any]]:
    """duplicates.jsonl lines for the near-duplicate groups the edges make; who stays follows
    ``options.duplicates`` as for exact copies."""
    docs = []
    for group, similarity in groups_from_edges(edges):
        ranked = sorted(group, key=lambda m: preference(m, source_order, train_splits))
        kept = {m[0] for m in ranked}
        if mode == "keep_first":
            kept = {ranked[0][0]}
        elif mode == "drop_all":
            kept = set()
        doc = {k: v for k, v in group_doc("", ranked, kept).items() if k != "digest"}
        doc.update(method=NEAR_METHOD, similarity=similarity, threshold=config.near_duplicate_threshold)
        docs.append(doc)
    return docs


def near_removals(doc: dict[str, Any]):
    """(key, reason) for each sample of a near-duplicate group that does not stay."""
    kept = [m["key"] for m in doc["samples"] if m["kept"]]
    for m in doc["samples"]:
        if not m["kept"]:
            others = kept or [o["key"] for o in doc["samples"] if o["key"] != m["key"]]
            why = "which is kept" if kept else "all removed (duplicates: drop_all)"
            yield (
                m["key"],
                (
                    f"audio embedding within cosine {doc['similarity']:.4f} of {', '.join(others[:5])} "
                    f"(another source), {why}"
                ),
            )


class NearFilterFn(beam.DoFn):
    def process(self, record: Record, removals: dict[str, str]):
        reason = removals.get(record.key)
        if reason is None:
            yield record
        else:
            yield TaggedOutput(
                REJECTS, Reject.for_record(record, Stage.DUPLICATE, Code.NEAR_DUPLICATE_AUDIO, reason)
            )


class ClapStage(beam.PTransform):
    """Placed records in; ``(records, rejects, report, near groups)`` out, the report one
    ``("clap", {...})`` element, the near groups duplicates.jsonl lines (none unless
    ``near_duplicate_threshold`` is set)."""

    def __init__(self, spec: CorpusSpec):
        super().__init__()
        self.spec = spec
        self.config = spec.options.clap

    def expand(self, records):
        cfg, spec = self.config, self.spec
        assert cfg is not None
        train_splits = tuple(spec.options.train_splits)
        # In the launcher, before any worker starts: a model that cannot be loaded stops the run here.
        require_extra("score", "options.clap (CLAP scoring)")
        load_embedder(cfg, spec.path)
        prepared = records | "Prepare" >> beam.ParDo(PrepareFn(spec)).with_outputs(UNSCORED, main="ready")
        scored = (
            prepared.ready
            | "RunInference" >> RunInference(KeyedModelHandler(ClapModelHandler(cfg)))
            | "Score" >> beam.Map(attach_scores, cfg.order_captions)
        )
        every = (scored, prepared[UNSCORED]) | "AllRecords" >> beam.Flatten()
        rejects = []
        if cfg.min_clap_score is not None or cfg.keep_top_fraction is not None:
            thresholds = (
                scored
                | "BestBySource" >> beam.Map(lambda r: (r.source, r.clap.best))
                | "TopFraction" >> beam.CombinePerKey(TopFractionFn(cfg.keep_top_fraction or 1.0))
            )
            filtered = every | "FilterScores" >> beam.ParDo(FilterFn(cfg), AsDict(thresholds)).with_outputs(
                REJECTS, main="kept"
            )
            every = filtered.kept
            rejects.append(filtered[REJECTS])
        heldout_records = every | "HeldOut" >> beam.Filter(
            lambda r: r.split not in train_splits and r.clap is not None
        )
        nearest = records.pipeline | "NoNearest" >> beam.Create([])
        if cfg.content_overlap != "off":
            heldout = (
                heldout_records
                | "HeldOutItems" >> beam.Map(_heldout_item)
                | "HeldOutList" >> beam.combiners.ToList()
                | "HeldOutSet" >> beam.Map(HeldOutEmbeddings.build)
            )
            guarded = every | "ContentGuard" >> beam.ParDo(
                GuardFn(cfg, train_splits), AsSingleton(heldout)
            ).with_outputs(REJECTS, NEAREST, main="kept")
            every = guarded.kept
            rejects.append(guarded[REJECTS])
            nearest = guarded[NEAREST] | "Closest" >> beam.combiners.Top.Of(
                cfg.report_pairs, key=lambda p: (p["similarity"], _neg_key(p["train"]["key"]))
            )
            nearest = nearest | "ClosestFlat" >> beam.FlatMap(lambda xs: xs)
        near = records.pipeline | "NoNearGroups" >> beam.Create([])
        if cfg.near_duplicate_threshold is not None:
            order = {s.name: i for i, s in enumerate(spec.sources)}
            near = (
                every
                | "Embedded" >> beam.Filter(lambda r: r.clap is not None)
                | "NearItems" >> beam.Map(lambda r: ((r.key, r.source, str(r.split)), r.clap.audio_embedding))
                | "NearBlocks" >> beam.FlatMap(near_blocks, cfg.near_duplicate_partitions)
                | "GroupBlocks" >> beam.GroupByKey()
                | "BlockEdges" >> beam.FlatMap(block_edges, cfg)
                | "AllEdges" >> beam.combiners.ToList()
                | "NearGroups"
                >> beam.FlatMap(near_group_docs, cfg, spec.options.duplicates, order, train_splits)
            )
            removals = near | "NearRemovals" >> beam.FlatMap(near_removals)
            deduped = every | "NearFilter" >> beam.ParDo(NearFilterFn(), AsDict(removals)).with_outputs(
                REJECTS, main="kept"
            )
            every = deduped.kept
            rejects.append(deduped[REJECTS])
        heldout_captions = (
            heldout_records
            | "HeldOutCaptions"
            >> beam.FlatMap(lambda r: [(normalise_caption(t), (r.source, r.split, r.key)) for t in r.text])
            | "CaptionOwner" >> beam.CombinePerKey(min)
        )
        overlaps = every | "CaptionOverlaps" >> beam.FlatMap(
            caption_overlaps, AsDict(heldout_captions), train_splits
        )
        all_rejects = (
            tuple(rejects) | "ClapRejects" >> beam.Flatten()
            if rejects
            else records.pipeline | "NoClapRejects" >> beam.Create([])
        )
        counts = (
            (
                scored | "CountScored" >> beam.Map(lambda _: "scored"),
                prepared[UNSCORED] | "CountUnscored" >> beam.Map(lambda _: "unscored"),
                all_rejects | "CountRejects" >> beam.Map(lambda r: r.code.value),
            )
            | "Counts" >> beam.Flatten()
            | "CountEach" >> beam.combiners.Count.PerElement()
        )
        stats = scored | "ScoreStats" >> beam.CombineGlobally(ScoreStatsFn(cfg.report_pairs))
        report = (
            records.pipeline
            | "ReportOnce" >> beam.Create([None])
            | "Report"
            >> beam.Map(
                build_report,
                cfg,
                AsSingleton(stats),
                AsList(counts),
                AsList(nearest),
                AsList(overlaps),
            )
        )
        return every, all_rejects, report, near


def _neg_key(key: str) -> tuple[int, ...]:
    # Top.Of keeps the largest; among equal similarities the smallest key should win.
    return (*(-ord(ch) for ch in key), math.inf)  # type: ignore[return-value]
