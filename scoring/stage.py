"""CLAP scoring in the Beam graph (``options.clap``): embed, calibrate, score, filter, guard against
content leakage, group near-duplicates, and copy the clips the report lists next to it.

    placed ─► Prepare (read, decode, views) ─► RunInference ─► Score ─┬─► Filter ─► Guard ─► Near ─► out
                 │  └── unscored (unreadable, too short, silent: the shard writer rejects it) ─┘
                 ├── train copies of held-out audio (eval_overlap_audio, before the model sees them)
                 └── the calibration sample's copies (re-encoded) ─► RunInference ─► Calibration
    Calibration: how well the model tells a clip's own caption, and a copy of the clip, from other
    clips' (side input of Filter, Guard and Near: nothing is removed where it cannot tell).

Runs after the split, the id leakage guard and exact duplicate removal (the cheap filters go first:
the model never embeds a clip they drop) and before sharding, so a removed pair never reaches a
shard. Every clip is read and decoded once more here: the shard writer cannot score, since a
source's top fraction and the held-out embeddings are known only once every clip is embedded. A clip
this pass cannot read, or that the shard writer would reject (too short, silent), goes on unscored;
the shard writer then rejects it with the stage and code it always has.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, cast

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import Metrics  # defined there; apache_beam.metrics does not export it
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.pvalue import AsDict, AsList, AsSingleton, TaggedOutput

from clap_corpus.core.audio import quantize_int16
from clap_corpus.core.extras import require_extra
from clap_corpus.core.hashing import audio_digest
from clap_corpus.core.layout import Layout
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.scoring.config import ClapConfig
from clap_corpus.scoring.handler import ClapModelHandler, load_embedder
from clap_corpus.scoring.inputs import ScoringInputs
from clap_corpus.scoring.scores import (
    EMBEDDING_DTYPE,
    NEAR_METHOD,
    SCORE_EDGES,
    CalibrationClip,
    HeldOutEmbeddings,
    NeighbourIndex,
    audio_vector,
    calibrate,
    calibration_rank,
    clap_input,
    content_overlap_reject,
    groups_from_edges,
    in_train_sample,
    ivf_lists,
    l2_normalise,
    low_score_reject,
    near_edges,
    near_partition,
    normalise_caption,
    order_by_score,
    plan_search,
    removal_allowed,
    score_histogram,
    scores_of,
    top_fraction_threshold,
    train_sample_fraction,
)
from clap_corpus.transforms import storage
from clap_corpus.transforms.captions import for_duration
from clap_corpus.transforms.duplicate_groups import group_doc, preference
from clap_corpus.transforms.encode import encode_audio
from clap_corpus.transforms.heldout import HeldOutAudio, overlap_removal
from clap_corpus.transforms.sample import decode_with_options, measure_level, silence_reason
from clap_corpus.transforms.stage_output import NEAR_GROUPS, StageOutput
from clap_corpus.transforms.stage_output import OVERLAP_HASHES as OVERLAP_EXTRA

log = logging.getLogger(__name__)

STAGE = "clap"
REJECTS = "rejects"
UNSCORED = "unscored"
NEAREST = "nearest"
COPIES = "copies"
WITHHELD = "withheld"  # a removal the calibration did not allow: counted, the record ships
OVERLAP_HASHES = "overlap_hashes"  # a tag: part of a step's output name, unlike the extra (OVERLAP_EXTRA)

GUARD_BATCH = 1024  # train records searched against the held-out set per call
EXCERPT_SECONDS = 10.0  # what the report's players play: the clip's first seconds, as Ogg Opus
EXCERPT_DIR = "audio/clap"  # under report/; the players link it relatively
COPY_GAIN_DB, COPY_SHIFT_S = -3.0, 0.07  # the calibration copy: re-encoded, quieter, later


@dataclass(frozen=True)
class CalibrationCopy:
    """The RunInference key of a calibration sample's copy (a record's key is the Record itself)."""

    key: str


def calibration_copy(samples: np.ndarray) -> np.ndarray:
    """What the content guard is for, made from a clip: re-encoded as MP3 (128 kbit/s), 3 dB quieter
    and 70 ms later (float samples at 48 kHz in and out). Deterministic: the encoder runs bitexact."""
    from clap_corpus.transforms.decode import decode_audio

    shift = np.zeros(round(COPY_SHIFT_S * 48_000), dtype=np.float32)
    quieter = np.asarray(samples, dtype=np.float32) * np.float32(10 ** (COPY_GAIN_DB / 20))
    return decode_audio(encode_audio(np.concatenate([shift, quieter]), 48_000, "mp3")).samples


class PrepareFn(beam.DoFn):
    """A record in; (the record as it will ship, its model input) out, or the record unscored.

    With ``heldout`` (cross_split_duplicates: remove), a train clip whose decoded audio a held-out
    split holds is removed here, before the model sees it, as the shard writer would remove it. For
    the calibration sample, a copy of the clip goes to the model too."""

    def __init__(self, inputs: ScoringInputs):
        self.inputs = inputs
        self.train_splits = inputs.train_splits
        self.unscored = Metrics.counter(STAGE, "unscored")
        self._sample: tuple[int, frozenset[str]] | None = None

    def setup(self):
        import torch

        torch.set_num_threads(1)  # one worker process per core

    def _in_sample(self, key: str, sample: list[tuple[int, str]]) -> bool:
        if self._sample is None or self._sample[0] != id(sample):
            self._sample = (id(sample), frozenset(k for _, k in sample))
        return key in self._sample[1]

    def process(self, record: Record, sample: list[tuple[int, str]], heldout: HeldOutAudio | None = None):
        opts = self.inputs.sample
        try:
            decoded = decode_with_options(self.inputs.read_audio(record), opts)
            pcm = quantize_int16(decoded.samples)
            # What the shard writer will reject anyway is not embedded: it would only take a place
            # in its source's top fraction and in the held-out set.
            skip = decoded.duration_s < opts.min_duration_s or (
                opts.on_incomplete == "reject" and decoded.incomplete(opts.min_complete_fraction)
            )
            if skip or silence_reason(measure_level(pcm), opts):
                self.unscored.inc()
                yield TaggedOutput(UNSCORED, record)
                return
            if heldout is not None:
                digest = audio_digest(pcm)
                leak = overlap_removal(record, digest, heldout, self.train_splits)
                if leak is not None:
                    yield TaggedOutput(REJECTS, leak)
                    yield TaggedOutput(
                        OVERLAP_HASHES, (digest, ((record.key, record.source, record.split), False))
                    )
                    return
            shipped = for_duration(record, decoded.duration_s)
            yield shipped, clap_input(decoded.samples, record.key, shipped.text)
        except Exception as e:  # the shard writer reads it again and rejects it with its own code
            log.debug("CLAP: %s not scored: %s", record.key, e)
            self.unscored.inc()
            yield TaggedOutput(UNSCORED, record)
            return
        if self._in_sample(record.key, sample):
            try:
                copy = calibration_copy(decoded.samples)
                yield CalibrationCopy(record.key), clap_input(copy, record.key, ())
            except Exception as e:  # a clip the MP3 encoder cannot take: one copy fewer, said in the report
                log.warning("CLAP calibration: no copy of %s: %s", record.key, e)


def attach_scores(element: tuple[Any, PredictionResult], order_captions: bool):
    key, prediction = element
    # Embedder.embed's pair (Beam types the field with a TypeVar of no class)
    audio, texts = cast(tuple[np.ndarray, np.ndarray], prediction.inference)
    if isinstance(key, CalibrationCopy):
        yield TaggedOutput(COPIES, (key.key, l2_normalise(audio).astype(EMBEDDING_DTYPE).tobytes()))
        return
    out = replace(key, clap=scores_of(np.asarray(audio), np.asarray(texts)))
    yield order_by_score(out) if order_captions else out


def _calibration_item(record: Record) -> tuple[str, bytes, bytes, tuple[str, ...]]:
    assert record.clap is not None
    return record.key, record.clap.audio_embedding, record.clap.text_embeddings, tuple(record.text)


def build_calibration(
    _: None, items: list, copies: list[tuple[str, bytes]], thresholds: dict[str, float | None]
) -> dict[str, Any]:
    """The calibration (transforms.clap_scores.calibrate) from the sample's embeddings and copies."""
    copy_of = dict(copies)
    clips = []
    for key, audio, texts, captions in items:
        a = np.frombuffer(audio, dtype=EMBEDDING_DTYPE).astype(np.float32)
        t = np.frombuffer(texts, dtype=EMBEDDING_DTYPE).astype(np.float32).reshape(len(captions), -1)
        c = copy_of.get(key)
        copy = None if c is None else np.frombuffer(c, dtype=EMBEDDING_DTYPE).astype(np.float32)
        clips.append(CalibrationClip(key, a, t, captions, copy))
    return calibrate(clips, thresholds)


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
    def __init__(self, config: ClapConfig, guards: frozenset[str]):
        self.config, self.guards = config, guards

    def process(self, record: Record, thresholds: dict[str, float], calibration: dict[str, Any]):
        if record.source in self.guards:  # a guard is never filtered: it only guards
            yield record
            return
        top = thresholds.get(record.source) if self.config.keep_top_fraction is not None else None
        reject = low_score_reject(record, self.config.min_clap_score, top)
        if reject is None:
            yield record
        elif removal_allowed(calibration, "captions", self.config.trust_model)[0]:
            yield TaggedOutput(REJECTS, reject)
        else:
            yield TaggedOutput(WITHHELD, Code.LOW_CLAP_SCORE.value)
            yield record


class GuardFn(beam.DoFn):
    """Batches of records in: a train record whose audio embedding is within ``content_threshold`` of
    a held-out one's is removed (or only reported: ``content_overlap: report``, or a calibration
    that does not trust the threshold); every scored train record's nearest held-out sample goes to
    NEAREST. One search per batch; the nearest of a few candidates is re-ranked by the exact float64
    inner product, so the decision does not depend on the batch."""

    CANDIDATES = 4

    def __init__(self, config: ClapConfig, train_splits: tuple[str, ...]):
        self.config, self.train_splits = config, train_splits
        self._cached: tuple[int, NeighbourIndex | None] | None = None

    def _index(self, heldout: HeldOutEmbeddings) -> NeighbourIndex | None:
        if self._cached is None or self._cached[0] != id(heldout):
            index = None
            if len(heldout.holders):
                index = NeighbourIndex(heldout.vectors.shape[1])
                index.add(heldout.vectors)
            self._cached = (id(heldout), index)
        return self._cached[1]

    def process(self, batch: list[Record], heldout: HeldOutEmbeddings, calibration: dict[str, Any]):
        index = self._index(heldout)
        queries = [r for r in batch if r.split in self.train_splits and r.clap is not None]
        for r in batch:
            if index is None or not (r.split in self.train_splits and r.clap is not None):
                yield r
        if index is None or not queries:
            return
        allowed, _ = removal_allowed(calibration, "content_threshold", self.config.trust_model)
        remove = self.config.content_overlap == "remove"
        # every query has scores (see queries); the condition says so to the type checker
        q = np.stack([audio_vector(r.clap) for r in queries if r.clap is not None])
        _, idx = index.search(q, min(self.CANDIDATES, len(heldout.holders)))
        for record, qv, rows in zip(queries, q.astype(np.float64), idx, strict=True):
            rows = sorted({int(i) for i in rows if i >= 0})
            sims = heldout.vectors[rows].astype(np.float64) @ qv
            best = int(np.argmax(sims))  # the first of equals: the lowest row, i.e. the smallest key
            sim, holder = round(float(sims[best]), 6), heldout.holders[rows[best]]
            near = sim >= self.config.content_threshold
            removed = near and remove and allowed
            yield TaggedOutput(
                NEAREST,
                {
                    "similarity": sim,
                    "train": _pair_side(record),
                    "heldout": {"source": holder[0], "split": holder[1], "key": holder[2]},
                    "removed": removed,
                    **({"withheld": True} if near and remove and not allowed else {}),
                },
            )
            if removed:
                yield TaggedOutput(REJECTS, content_overlap_reject(record, holder, sim))
            else:
                if near and remove:
                    yield TaggedOutput(WITHHELD, Code.EVAL_OVERLAP_CONTENT.value)
                yield record


def _pair_side(record: Record) -> dict[str, Any]:
    return {
        "key": record.key,
        "source": record.source,
        "split": record.split,
        "caption": record.text[0] if record.text else "",
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
    calibration: dict[str, Any],
    near: list[dict[str, Any]],
    plan: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    c = Counter(dict(counts))
    withheld = {
        code: c[f"{WITHHELD}:{code}"]
        for code in (Code.LOW_CLAP_SCORE, Code.EVAL_OVERLAP_CONTENT, Code.NEAR_DUPLICATE_AUDIO)
        if c[f"{WITHHELD}:{code}"]
    }
    refused = {}
    for what, code, active in (
        (
            "captions",
            Code.LOW_CLAP_SCORE,
            config.min_clap_score is not None or config.keep_top_fraction is not None,
        ),
        ("content_threshold", Code.EVAL_OVERLAP_CONTENT, config.content_overlap == "remove"),
        ("near_duplicate_threshold", Code.NEAR_DUPLICATE_AUDIO, config.near_duplicate_threshold is not None),
    ):
        ok, why = removal_allowed(calibration, what, config.trust_model)
        if active and not ok:
            refused[code.value] = why
    report = {
        "model": config.model,
        "kind": config.kind,
        "min_clap_score": config.min_clap_score,
        "keep_top_fraction": config.keep_top_fraction,
        "order_captions": config.order_captions,
        "content_overlap": config.content_overlap,
        "content_threshold": config.content_threshold,
        "trust_model": config.trust_model,
        "scored": c["scored"],
        "unscored": c["unscored"],
        "low_clap_score": c["low_clap_score"],
        "eval_overlap_content": c["eval_overlap_content"],
        "eval_overlap_audio": c["eval_overlap_audio"],  # train copies of held-out audio, before embedding
        "near_duplicate_audio": c["near_duplicate_audio"],
        # removals the calibration did not allow: these records shipped
        "withheld": withheld,
        "removal_refused": refused,
        "calibration": calibration,
        "score_edges": list(SCORE_EDGES),
        **stats,
        "closest_cross_split_pairs": sorted(nearest, key=lambda p: (-p["similarity"], p["train"]["key"])),
        "caption_overlaps": len(captions),
        "caption_overlap_pairs": sorted(captions, key=lambda p: (p["train"]["key"], p["caption"]))[
            : config.report_pairs
        ],
    }
    if config.near_duplicate_threshold is not None:
        docs = sorted(near, key=lambda g: g["samples"][0]["key"])
        report["near_duplicates"] = {
            "threshold": config.near_duplicate_threshold,
            "search": plan,
            "partitions": config.near_duplicate_partitions,
            "groups": len(docs),
            "samples_in_groups": sum(len(g["samples"]) for g in docs),
            "removed": sum(1 for g in docs for m in g["samples"] if not m["kept"]),
            "listed": docs[: config.report_pairs],
        }
    return STAGE, report


def listed_keys(element: tuple[str, dict[str, Any]]):
    """Every key the report lists with a player: (key, True), once each."""
    _, report = element
    keys = {p["key"] for p in report.get("lowest_pairs", [])}
    for p in report.get("closest_cross_split_pairs", []):
        keys |= {p["train"]["key"], p["heldout"]["key"]}
    for p in report.get("caption_overlap_pairs", []):
        keys |= {p["train"]["key"], p["heldout"]["key"]}
    for g in (report.get("near_duplicates") or {}).get("listed", []):
        keys |= {m["key"] for m in g["samples"]}
    for key in sorted(keys):
        yield key, True


class WriteExcerptFn(beam.DoFn):
    """A listed record in: the first EXCERPT_SECONDS of its clip written as Ogg Opus (what every
    browser plays, whatever the source's codec) next to the report; (key, seconds) out."""

    def __init__(self, inputs: ScoringInputs, layout: Layout):
        self.inputs, self.layout = inputs, layout

    def process(self, record: Record, wanted: dict[str, bool]):
        if record.key not in wanted:
            return
        try:
            decoded = decode_with_options(self.inputs.read_audio(record), self.inputs.sample)
            clip = decoded.samples[: round(EXCERPT_SECONDS * 48_000)]
            data = encode_audio(clip, 48_000, "opus")
        except Exception as e:  # the report lists it without a player
            log.warning("CLAP report: no excerpt of %s: %s", record.key, e)
            return
        storage.write_bytes_atomic(self.layout.report_path(f"{EXCERPT_DIR}/{record.key}.opus"), data)
        yield record.key, round(len(clip) / 48_000, 3)


def with_excerpts(
    element: tuple[str, dict[str, Any]], excerpts: dict[str, float]
) -> tuple[str, dict[str, Any]]:
    name, report = element
    return name, {**report, "excerpt_dir": EXCERPT_DIR, "excerpts": dict(sorted(excerpts.items()))}


# ------------------------------------------------------------------------------------------------
# Near-duplicates across sources


def near_blocks(item: tuple[tuple[str, str, str], bytes], partitions: int):
    """The sample under every pair of blocks that holds its own: block pair (i, j) meets in one worker."""
    p = near_partition(item[0][0], partitions)
    for q in range(partitions):
        yield (min(p, q), max(p, q)), (p, item)


def block_edges(element: tuple[tuple[int, int], Any], threshold: float, plan):
    (i, j), tagged = element
    rows = sorted(tagged)
    left = [it for p, it in rows if p == i]
    right = left if i == j else [it for p, it in rows if p == j]

    def unpack(items):
        members = [m for m, _ in items]
        vecs = [np.frombuffer(v, dtype=EMBEDDING_DTYPE).astype(np.float32) for _, v in items]
        return members, (np.stack(vecs) if vecs else np.zeros((0, 1), np.float32))

    (lm, lv), (rm, rv) = unpack(left), unpack(right)
    yield from near_edges(lm, lv, rm, rv, threshold, plan, same_block=i == j)


def search_lists(n: int, mode: str) -> int:
    """IVF lists for ``n`` embedded samples under ``near_duplicate_search`` (0: exact)."""
    if mode == "exact":
        return 0
    if mode == "approximate":
        return max(1, round(2 * math.sqrt(n)))
    return ivf_lists(n)


def near_group_docs(
    edges: list[tuple[tuple[str, str, str], tuple[str, str, str], float]],
    config: ClapConfig,
    mode: str,
    source_order: dict[str, int],
    train_splits: tuple[str, ...],
    calibration: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """duplicates.jsonl lines for the near-duplicate groups the edges make; who stays follows
    ``options.duplicates`` as for exact copies, when the calibration allows removal (else all stay,
    and the line says ``withheld``)."""
    allowed, _ = removal_allowed(calibration, "near_duplicate_threshold", config.trust_model)
    docs = []
    for group, similarity in groups_from_edges(edges):
        ranked = sorted(group, key=lambda m: preference(m, source_order, train_splits))
        kept = {m[0] for m in ranked}
        if mode in ("keep_first", "drop_all") and allowed:
            kept = {ranked[0][0]} if mode == "keep_first" else set()
        doc = {k: v for k, v in group_doc("", ranked, kept).items() if k != "digest"}
        doc.update(method=NEAR_METHOD, similarity=similarity, threshold=config.near_duplicate_threshold)
        if mode in ("keep_first", "drop_all") and not allowed:
            doc["withheld"] = len(ranked) - (1 if mode == "keep_first" else 0)
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


def _plan(sample: list[tuple[str, bytes]], n: int, mode: str):
    vectors = [(k, np.frombuffer(v, dtype=EMBEDDING_DTYPE).astype(np.float32)) for k, v in sample]
    return plan_search(n, vectors, lists=search_lists(n, mode))


class NearDuplicateGroups(beam.PTransform):
    """Scored records in; ``(group docs, search plan)`` out (both one element per run, the docs a
    list): every pair of samples of different sources at or above ``near_duplicate_threshold``,
    searched in ``near_duplicate_partitions`` blocks (the groups are the same for any number)."""

    def __init__(self, config: ClapConfig, mode: str, order: dict[str, int], train_splits, calibration):
        super().__init__()
        self.config, self.mode, self.order, self.ts, self.calibration = (
            config,
            mode,
            order,
            train_splits,
            calibration,
        )

    def expand(self, records):
        cfg = self.config
        search = cfg.near_duplicate_search
        items = (
            records
            | "Embedded" >> beam.Filter(lambda r: r.clap is not None)
            | "NearItems" >> beam.Map(lambda r: ((r.key, r.source, str(r.split)), r.clap.audio_embedding))
        )
        n = items | "CountEmbedded" >> beam.combiners.Count.Globally()
        # The IVF centroids are trained on a sample fixed by the keys' hashes (a few per list), on one
        # worker; every worker then files and searches its blocks against the same centroids.
        plan = (
            items
            | "TrainSample"
            >> beam.Filter(
                lambda it, n: in_train_sample(it[0][0], train_sample_fraction(n, search_lists(n, search))),
                AsSingleton(n),
            )
            | "SampleKeys" >> beam.Map(lambda it: (it[0][0], it[1]))
            | "SampleList" >> beam.combiners.ToList()
            | "SearchPlan" >> beam.Map(_plan, AsSingleton(n), search)
        )
        assert cfg.near_duplicate_threshold is not None
        docs = (
            items
            | "NearBlocks" >> beam.FlatMap(near_blocks, cfg.near_duplicate_partitions)
            | "GroupBlocks" >> beam.GroupByKey()
            | "BlockEdges" >> beam.FlatMap(block_edges, cfg.near_duplicate_threshold, AsSingleton(plan))
            | "AllEdges" >> beam.combiners.ToList()
            | "NearGroups"
            >> beam.Map(near_group_docs, cfg, self.mode, self.order, self.ts, AsSingleton(self.calibration))
        )
        return docs, plan | "DescribePlan" >> beam.Map(lambda p: p.describe())


class ClapStage(beam.PTransform):
    """Placed records in; a :class:`StageOutput` out, its report one ``("clap", {...})`` element, with
    the extras ``NEAR_GROUPS`` (duplicates.jsonl lines of the near-duplicate groups) and
    ``OVERLAP_HASHES`` ((digest, (member, False)) of the train copies of held-out audio removed here).
    ``heldout``: the held-out audio digests (a singleton, cross_split_duplicates: remove) or None."""

    def __init__(self, inputs: ScoringInputs, layout: Layout, heldout=None):
        super().__init__()
        self.inputs, self.layout, self.heldout = inputs, layout, heldout
        self.config = inputs.clap

    def expand(self, records) -> StageOutput:
        cfg, inputs = self.config, self.inputs
        p = records.pipeline
        train_splits = inputs.train_splits
        guards = inputs.guard_sources
        # In the launcher, before any worker starts: a model that cannot be loaded stops the run here.
        require_extra("score", "options.clap (CLAP scoring)")
        load_embedder(cfg, inputs.spec_path)
        sample_keys = (
            records
            | "CalibrationRanks" >> beam.Map(lambda r: (calibration_rank(r.key), r.key))
            | "CalibrationSample" >> beam.combiners.Top.Smallest(cfg.calibration_clips)
        )
        heldout = [] if self.heldout is None else [AsSingleton(self.heldout)]
        prepared = records | "Prepare" >> beam.ParDo(
            PrepareFn(inputs), AsSingleton(sample_keys), *heldout
        ).with_outputs(UNSCORED, REJECTS, OVERLAP_HASHES, main="ready")
        embedded = (
            prepared.ready
            | "RunInference" >> RunInference(KeyedModelHandler(ClapModelHandler(cfg)))
            | "Score" >> beam.ParDo(attach_scores, cfg.order_captions).with_outputs(COPIES, main="scored")
        )
        scored = embedded.scored
        thresholds = {"content_threshold": cfg.content_threshold if cfg.content_overlap != "off" else None}
        thresholds["near_duplicate_threshold"] = cfg.near_duplicate_threshold
        calibration = (
            p
            | "CalibrateOnce" >> beam.Create([None])
            | "Calibration"
            >> beam.Map(
                build_calibration,
                AsList(
                    scored
                    | "SampleScored"
                    >> beam.Filter(lambda r, s: r.key in {k for _, k in s}, AsSingleton(sample_keys))
                    | "SampleItems" >> beam.Map(_calibration_item)
                ),
                AsList(embedded[COPIES]),
                thresholds,
            )
        )
        every = (scored, prepared[UNSCORED]) | "AllRecords" >> beam.Flatten()
        rejects = [prepared[REJECTS]]
        withheld = []
        if cfg.min_clap_score is not None or cfg.keep_top_fraction is not None:
            thresholds_by_source = (
                scored
                | "NotGuards" >> beam.Filter(lambda r: r.source not in guards)
                | "BestBySource" >> beam.Map(lambda r: (r.source, r.clap.best))
                | "TopFraction" >> beam.CombinePerKey(TopFractionFn(cfg.keep_top_fraction or 1.0))
            )
            filtered = every | "FilterScores" >> beam.ParDo(
                FilterFn(cfg, guards), AsDict(thresholds_by_source), AsSingleton(calibration)
            ).with_outputs(REJECTS, WITHHELD, main="kept")
            every = filtered.kept
            rejects.append(filtered[REJECTS])
            withheld.append(filtered[WITHHELD])
        # Held-out embeddings are taken before the score filter: a held-out clip guards whatever its
        # captions score (guard sources included).
        heldout_records = scored | "HeldOut" >> beam.Filter(lambda r: r.split not in train_splits)
        nearest = p | "NoNearest" >> beam.Create([])
        if cfg.content_overlap != "off":
            heldout_set = (
                heldout_records
                | "HeldOutItems" >> beam.Map(_heldout_item)
                | "HeldOutList" >> beam.combiners.ToList()
                | "HeldOutSet" >> beam.Map(HeldOutEmbeddings.build)
            )
            guarded = (
                every
                | "GuardBatches" >> beam.BatchElements(min_batch_size=GUARD_BATCH, max_batch_size=GUARD_BATCH)
                | "ContentGuard"
                >> beam.ParDo(
                    GuardFn(cfg, train_splits), AsSingleton(heldout_set), AsSingleton(calibration)
                ).with_outputs(REJECTS, NEAREST, WITHHELD, main="kept")
            )
            every = guarded.kept
            rejects.append(guarded[REJECTS])
            withheld.append(guarded[WITHHELD])
            nearest = guarded[NEAREST] | "Closest" >> beam.combiners.Top.Of(
                cfg.report_pairs, key=lambda p: (p["similarity"], _neg_key(p["train"]["key"]))
            )
            nearest = nearest | "ClosestFlat" >> beam.FlatMap(lambda xs: xs)
        near = p | "NoNearGroups" >> beam.Create([])
        plan = p | "NoPlan" >> beam.Create([{}])
        if cfg.near_duplicate_threshold is not None:
            order = dict(inputs.source_order)
            docs, plan = every | "NearDuplicates" >> NearDuplicateGroups(
                cfg, inputs.duplicates, order, train_splits, calibration
            )
            near = docs | "NearDocs" >> beam.FlatMap(lambda ds: ds)
            withheld.append(
                docs
                | "NearWithheld"
                >> beam.FlatMap(
                    lambda ds: [Code.NEAR_DUPLICATE_AUDIO.value] * sum(d.get("withheld", 0) for d in ds)
                )
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
        all_rejects = tuple(rejects) | "ClapRejects" >> beam.Flatten()
        counted = [
            scored | "CountScored" >> beam.Map(lambda _: "scored"),
            prepared[UNSCORED] | "CountUnscored" >> beam.Map(lambda _: "unscored"),
            all_rejects | "CountRejects" >> beam.Map(lambda r: r.code.value),
        ]
        if withheld:
            counted.append(
                tuple(withheld)
                | "Withheld" >> beam.Flatten()
                | "CountWithheld" >> beam.Map(lambda c: f"{WITHHELD}:{c}")
            )
        counts = (
            tuple(counted) | "Counts" >> beam.Flatten() | "CountEach" >> beam.combiners.Count.PerElement()
        )
        stats = (
            scored
            | "StatsNotGuards" >> beam.Filter(lambda r: r.source not in guards)
            | "ScoreStats" >> beam.CombineGlobally(ScoreStatsFn(cfg.report_pairs))
        )
        listing = (
            p
            | "ReportOnce" >> beam.Create([None])
            | "Report"
            >> beam.Map(
                build_report,
                cfg,
                AsSingleton(stats),
                AsList(counts),
                AsList(nearest),
                AsList(overlaps),
                AsSingleton(calibration),
                AsList(near),
                AsSingleton(plan),
            )
        )
        # The excerpts wait for the report's lists, which wait for every record: a fusion break keeps
        # the runner from fusing this read of `records` into the stage that makes them (a deadlock).
        excerpts = (
            records
            | "ExcerptInput" >> beam.Reshuffle()
            | "Excerpts"
            >> beam.ParDo(
                WriteExcerptFn(inputs, self.layout), AsDict(listing | "Listed" >> beam.FlatMap(listed_keys))
            )
        )
        report = listing | "WithExcerpts" >> beam.Map(with_excerpts, AsDict(excerpts))
        extras = {NEAR_GROUPS: near, OVERLAP_EXTRA: prepared[OVERLAP_HASHES]}
        return StageOutput(every, all_rejects, report, extras)


def _neg_key(key: str) -> tuple[int, ...]:
    # Top.Of keeps the largest; among equal similarities the smallest key should win.
    return (*(-ord(ch) for ch in key), math.inf)  # type: ignore[return-value]
