"""CLAP scoring without Beam or a model: the model's input from a clip, embeddings to scores, the
filtering and leakage rules, caption normalisation and the nearest-neighbour search.

The Beam stage (scoring/stage.py) runs the model and applies these per record; everything here
is a pure function of its arguments, so it is tested on plain arrays.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from clap_corpus.core.audio import quantize_int16
from clap_corpus.core.hashing import stable_hash64
from clap_corpus.core.records import ClapScores, Record, Reject
from clap_corpus.core.rejects import Code, Stage

EMBEDDING_DTYPE = np.dtype("<f2")  # what the records carry and the sidecar files store
# Score histogram bins (cosine): bin i holds [edges[i], edges[i+1]); the last bin is open-ended.
SCORE_EDGES = tuple(round(-1.0 + 0.1 * i, 1) for i in range(20))


@dataclass(frozen=True)
class ClapInput:
    """What the model gets for one clip: LAION's four fusion views and whether the clip is longer
    than 10 s, plus the captions as they will ship."""

    views: np.ndarray  # float16 [4, 1001, 64], the views the shard writer stores
    longer: bool
    texts: tuple[str, ...]


def clap_input(samples: np.ndarray, key: str, texts: Sequence[str]) -> ClapInput:
    """The model input of a decoded clip (float samples at 48 kHz, as the decoder returns them).

    Quantised and planned exactly as the shard writer does (transforms/sample.py), so the model sees
    the very views a training run reads from ``<key>.mel.npy``."""
    from clap_corpus.transforms.views import plan_views, views_from_int16

    pcm = quantize_int16(samples)
    plan = plan_views(len(pcm), key)
    views = views_from_int16(pcm, plan).astype(np.float16)
    return ClapInput(views, bool(plan.longer), tuple(texts))


def unfused_view(views: np.ndarray) -> np.ndarray:
    """The one 10-second view an unfused model takes: LAION's unfused models saw a random 10-second
    crop of a long clip (``rand_trunc``) and the repeat-padded clip otherwise. Views 1-3 are such crops
    for a long clip (seeded by the key) and copies of the padded clip for a short one; view 1 it is."""
    return views[1:2]


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def scores_of(audio: np.ndarray, texts: np.ndarray, order_captions: bool = False) -> ClapScores:
    """The record's scores from its audio embedding [dim] and caption embeddings [captions, dim].

    Embeddings are stored as float16 and the scores computed from the stored values (in float64), so
    anyone who recomputes them from the sidecar file gets the same numbers."""
    a = l2_normalise(audio).astype(EMBEDDING_DTYPE)
    t = l2_normalise(texts).astype(EMBEDDING_DTYPE).reshape(len(texts), -1)
    scores = t.astype(np.float64) @ a.astype(np.float64)
    return ClapScores(
        tuple(round(float(s), 6) for s in scores),
        a.tobytes(),
        t.tobytes(),
    )


def audio_vector(scores: ClapScores) -> np.ndarray:
    return np.frombuffer(scores.audio_embedding, dtype=EMBEDDING_DTYPE).astype(np.float32)


def text_vectors(scores: ClapScores) -> np.ndarray:
    flat = np.frombuffer(scores.text_embeddings, dtype=EMBEDDING_DTYPE).astype(np.float32)
    return flat.reshape(len(scores.scores), -1) if scores.scores else flat.reshape(0, 0)


def order_by_score(record: Record) -> Record:
    """The record with its captions (and their scores and embeddings) best first; ties keep their order."""
    c = record.clap
    if c is None or len(c.scores) < 2:
        return record
    order = sorted(range(len(c.scores)), key=lambda i: (-c.scores[i], i))
    t = text_vectors(c)[order].astype(EMBEDDING_DTYPE)
    clap = ClapScores(tuple(c.scores[i] for i in order), c.audio_embedding, t.tobytes())
    return replace(record, text=tuple(record.text[i] for i in order), clap=clap)


# ------------------------------------------------------------------------------------------------
# Filtering


def top_fraction_threshold(scores: Iterable[float], fraction: float) -> float:
    """The lowest best-caption score a record of a source may have to be in its top ``fraction``.

    Kept: ceil(fraction x n) records, the highest-scoring; records tied with the last kept one are
    kept too (a threshold, not a count), so the decision is the same whatever order they come in."""
    ordered = sorted((s for s in scores if not math.isnan(s)), reverse=True)
    if not ordered or fraction >= 1.0:
        return -math.inf
    keep = max(1, math.ceil(fraction * len(ordered))) if fraction > 0 else 0
    return ordered[keep - 1] if keep else math.inf


def low_score_reject(record: Record, min_score: float | None, top_threshold: float | None) -> Reject | None:
    """The reject of a pair whose best caption scores too low; None if it may ship (or was not scored)."""
    if record.clap is None:
        return None
    best = record.clap.best
    if min_score is not None and best < min_score:
        why = f"under min_clap_score {min_score:g}"
    elif top_threshold is not None and best < top_threshold:
        why = f"under {top_threshold:.6f}, the lowest score in the top fraction of source '{record.source}'"
    else:
        return None
    return Reject.for_record(
        record, Stage.CLAP, Code.LOW_CLAP_SCORE, f"best caption's CLAP score {best:.4f} is {why}"
    )


# ------------------------------------------------------------------------------------------------
# Calibration: can this model, on this run's clips, tell a clip's caption and a copy of the clip
# from other clips' captions and other clips? Removal by score or by content happens only if it can.

CALIBRATION_MIN_CLIPS = 16  # fewer clips than this: no evidence, nothing removed
CAPTION_WINS_MIN = 0.75  # own caption above another clip's caption (chance: 0.5)
COPIES_FOUND_MIN = 0.5  # share of re-encoded copies at or above the threshold
RANDOM_ABOVE_MAX = 0.02  # share of pairs of different clips at or above the threshold (room for the
# corpus's own duplicates in the sample; the demo checkpoint on real recordings: 12.2 % at 0.95)


def calibration_rank(key: str) -> int:
    """Clips of lowest rank are the calibration sample: a fixed choice by key, whatever the runner."""
    return stable_hash64(key, salt="clap-calibration")


@dataclass(frozen=True)
class CalibrationClip:
    """One clip of the calibration sample: its stored embeddings, captions, and the embedding of a
    copy of it (re-encoded, quieter, shifted) when the copy could be made."""

    key: str
    audio: np.ndarray  # [dim]
    texts: np.ndarray  # [captions, dim]
    captions: tuple[str, ...]
    copy: np.ndarray | None = None


def _quantiles(values: np.ndarray) -> dict[str, float | int]:
    if not len(values):
        return {"n": 0}
    q = np.quantile(values, [0.05, 0.5, 0.95, 0.99])
    return {
        "n": len(values),
        "min": round(float(values.min()), 4),
        "p05": round(float(q[0]), 4),
        "median": round(float(q[1]), 4),
        "p95": round(float(q[2]), 4),
        "p99": round(float(q[3]), 4),
        "max": round(float(values.max()), 4),
    }


def calibrate(clips: Sequence[CalibrationClip], thresholds: Mapping[str, float | None]) -> dict:
    """The calibration of the model on the run's own clips, and what it allows.

    - captions: for each ordered pair of clips (i, j) with different captions, whether clip i's best
      own caption scores above clip j's best caption against clip i's audio (``caption_wins``; a model
      that learned nothing is at 0.5);
    - audio: the cosine of each clip with its copy (what a duplicate looks like to this model) and of
      each pair of different clips (what unrelated audio looks like), and for each threshold the share
      of each at or above it.
    ``thresholds``: name -> cosine (``content_threshold``, ``near_duplicate_threshold``; None: unused).
    """
    clips = sorted(clips, key=lambda c: c.key)
    n = len(clips)
    out: dict = {"clips": n, "min_clips": CALIBRATION_MIN_CLIPS}
    wins = pairs = 0.0
    if n:
        a = np.stack([c.audio for c in clips]).astype(np.float64)
        best = [
            np.max(c.texts.astype(np.float64) @ a[i]) if len(c.texts) else np.nan for i, c in enumerate(clips)
        ]
        capsets = [frozenset(normalise_caption(t) for t in c.captions) for c in clips]
        for i in range(n):
            for j, cj in enumerate(clips):
                if i == j or capsets[i] == capsets[j] or not len(cj.texts) or math.isnan(best[i]):
                    continue
                other = float(np.max(cj.texts.astype(np.float64) @ a[i]))
                wins += 1.0 if best[i] > other else 0.5 if best[i] == other else 0.0
                pairs += 1
    caption_wins = wins / pairs if pairs else None
    caption_ok = n >= CALIBRATION_MIN_CLIPS and caption_wins is not None and caption_wins >= CAPTION_WINS_MIN
    out["captions"] = {
        "pairs": int(pairs),
        "caption_wins": None if caption_wins is None else round(caption_wins, 4),
        "chance": 0.5,
        "required": CAPTION_WINS_MIN,
        "trusted": bool(caption_ok),
    }
    copies = np.array(
        [float(c.audio.astype(np.float64) @ c.copy.astype(np.float64)) for c in clips if c.copy is not None]
    )
    if n > 1:
        iu = np.triu_indices(n, 1)
        others = (a @ a.T)[iu]
    else:
        others = np.zeros(0)
    # how often a copy is closer than a pair of different clips (0.5: the model cannot tell them apart)
    separation = None
    if len(copies) and len(others):
        srt = np.sort(others)
        below = np.searchsorted(srt, copies, side="left") + 0.5 * (
            np.searchsorted(srt, copies, side="right") - np.searchsorted(srt, copies, side="left")
        )
        separation = round(float(np.mean(below / len(srt))), 4)
    out["audio"] = {
        "copies": _quantiles(copies),
        "different_clips": _quantiles(others),
        "separation": separation,
        "copy": "the clip re-encoded as MP3 at 128 kbit/s, 3 dB quieter and 70 ms later",
    }
    decisions = {}
    for name, t in thresholds.items():
        if t is None:
            continue
        found = float(np.mean(copies >= t)) if len(copies) else None
        above = float(np.mean(others >= t)) if len(others) else None
        why = []
        if n < CALIBRATION_MIN_CLIPS or len(copies) < CALIBRATION_MIN_CLIPS:
            why.append(
                f"only {min(n, len(copies))} clips could be measured (at least {CALIBRATION_MIN_CLIPS})"
            )
        if above is not None and above > RANDOM_ABOVE_MAX:
            why.append(
                f"{100 * above:.1f}% of pairs of different clips have cosine >= {t:g} "
                f"(at most {100 * RANDOM_ABOVE_MAX:g}% allowed)"
            )
        if found is not None and found < COPIES_FOUND_MIN:
            why.append(
                f"only {100 * found:.1f}% of re-encoded copies have cosine >= {t:g} "
                f"(at least {100 * COPIES_FOUND_MIN:g}% needed)"
            )
        decisions[name] = {
            "threshold": t,
            "copies_at_or_above": None if found is None else round(found, 4),
            "different_clips_at_or_above": None if above is None else round(above, 4),
            "trusted": not why,
            "why": "; ".join(why),
        }
    out["thresholds"] = decisions
    if len(copies) and len(others):
        # evidence for a threshold: above what unrelated clips reach, below what copies reach
        low, high = float(np.quantile(others, 0.999)), float(np.quantile(copies, 0.05))
        out["suggested_threshold"] = round((low + high) / 2, 3) if high > low else None
    else:
        out["suggested_threshold"] = None
    return out


def removal_allowed(calibration: Mapping | None, what: str, trust_model: bool = False) -> tuple[bool, str]:
    """Whether the calibration lets ``what`` (``captions``, or a threshold's name) remove samples, and
    why not."""
    if trust_model:
        return True, ""
    if not calibration:
        return False, "the model was not calibrated on this run's clips"
    if what == "captions":
        c = calibration["captions"]
        if c["trusted"]:
            return True, ""
        if calibration["clips"] < CALIBRATION_MIN_CLIPS:
            return False, (
                f"only {calibration['clips']} clips could be measured (at least {CALIBRATION_MIN_CLIPS})"
            )
        wins = (
            "no pairs of clips with different captions"
            if c["caption_wins"] is None
            else (
                f"a clip's own caption scored above another clip's caption {100 * c['caption_wins']:.1f}% of "
                f"the time (chance is 50%, at least {100 * CAPTION_WINS_MIN:g}% needed)"
            )
        )
        return False, wins
    d = calibration["thresholds"].get(what)
    if d is None:
        return False, f"{what} was not calibrated"
    return bool(d["trusted"]), d["why"]


# ------------------------------------------------------------------------------------------------
# Content leakage


@dataclass(frozen=True)
class HeldOutEmbeddings:
    """The audio embeddings of the held-out samples, each with the sample a reject names."""

    holders: tuple[tuple[str, str, str], ...]  # (source, split, key), sorted by key
    vectors: np.ndarray  # float32 [n, dim], row i is holders[i]'s

    @classmethod
    def build(cls, items: Iterable[tuple[tuple[str, str, str], bytes]]) -> HeldOutEmbeddings:
        rows = sorted(items, key=lambda kv: (kv[0][2], kv[0]))
        vectors = [np.frombuffer(v, dtype=EMBEDDING_DTYPE).astype(np.float32) for _, v in rows]
        dim = len(vectors[0]) if vectors else 0
        mat = np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
        # holders are lists once they have been through a Beam coder
        return cls(tuple((source, split, key) for (source, split, key), _ in rows), mat)


@dataclass(frozen=True)
class Neighbour:
    query: int  # row of the query
    index: int  # row in the searched set
    similarity: float  # cosine


class NeighbourIndex:
    """Exact inner-product search (cosine on L2-normalised vectors) with faiss when it is installed
    (the ``score`` extra), else with numpy in blocks; both give the same neighbours up to float
    rounding. Vectors are added in blocks, so the caller may stream them."""

    def __init__(self, dim: int, use_faiss: bool | None = None):
        self.dim = dim
        if use_faiss is None:
            try:
                import faiss

                use_faiss = True
            except ImportError:
                use_faiss = False
        self.use_faiss = use_faiss
        if use_faiss:
            import faiss

            self._index = faiss.IndexFlatIP(dim)
        self._blocks: list[np.ndarray] = []
        self.size = 0

    def add(self, vectors: np.ndarray) -> None:
        v = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self.use_faiss:
            self._index.add(v)
        else:
            self._blocks.append(v)
        self.size += len(v)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(similarities [q, k], indices [q, k]); index -1 where the set has fewer than k vectors."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.use_faiss:
            return self._index.search(q, k)
        sims = np.full((len(q), k), -np.inf, dtype=np.float32)
        idx = np.full((len(q), k), -1, dtype=np.int64)
        base = 0
        for block in self._blocks:
            s = q @ block.T
            both_s = np.concatenate([sims, s], axis=1)
            both_i = np.concatenate([idx, np.arange(base, base + len(block))[None, :].repeat(len(q), 0)], 1)
            top = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
            sims = np.take_along_axis(both_s, top, 1)
            idx = np.take_along_axis(both_i, top, 1)
            base += len(block)
        return sims, idx


def nearest_heldout(queries: np.ndarray, heldout: HeldOutEmbeddings) -> list[tuple[int, float]]:
    """(row in ``heldout``, cosine) of each query's nearest held-out sample ((-1, -inf) if none)."""
    if len(heldout.holders) == 0 or len(queries) == 0:
        return [(-1, -math.inf)] * len(queries)
    index = NeighbourIndex(heldout.vectors.shape[1])
    index.add(heldout.vectors)
    sims, idx = index.search(queries, 1)
    return [(int(i), float(s)) for i, s in zip(idx[:, 0], sims[:, 0], strict=True)]


def content_overlap_reject(record: Record, holder: tuple[str, str, str], similarity: float) -> Reject:
    source, split, key = holder
    return Reject.for_record(
        record,
        Stage.LEAKAGE,
        Code.EVAL_OVERLAP_CONTENT,
        f"audio embedding cosine {similarity:.4f} with sample {key} in split '{split}' of source "
        f"'{source}'; removed from split '{record.split}'",
    )


# ------------------------------------------------------------------------------------------------
# Captions across splits

_PUNCT_RE = re.compile(r"[^\w\s]+")
_SPACE_RE = re.compile(r"\s+")


def normalise_caption(text: str) -> str:
    """The form two captions are compared in: NFKC, case-folded, punctuation dropped, spaces collapsed
    ("A dog barks." and "a dog  barks" are one caption)."""
    t = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE_RE.sub(" ", _PUNCT_RE.sub(" ", t)).strip()


def score_histogram(scores: Iterable[float]) -> list[int]:
    from bisect import bisect_right

    counts = [0] * len(SCORE_EDGES)
    for s in scores:
        counts[max(0, bisect_right(SCORE_EDGES, s) - 1)] += 1
    return counts


def lowest(items: Iterable[tuple[float, str, Mapping]], n: int) -> list[tuple[float, str, Mapping]]:
    """The ``n`` items of lowest score, ties by key: the same list whatever order they come in."""
    return sorted(items, key=lambda x: (x[0], x[1]))[:n]


# ------------------------------------------------------------------------------------------------
# Near-duplicates across sources
#
# Every pair of samples of different sources whose audio embeddings have an inner product (cosine of
# the L2-normalised float16 vectors, computed in float64) at or above the threshold is an edge; a
# group is a connected component. That definition has no neighbour count and no block count in it, so
# neither can change what ships: the search may be cut into any number of blocks, and a group may be
# as large as the data makes it.
#
# Up to EXACT_SEARCH_MAX vectors every pair is compared. Above, an inverted-file index (IVF, as
# faiss's IndexIVFFlat): spherical k-means centroids trained on a sample fixed by the keys' hashes,
# every vector filed under its nearest centroid ("home list"), every vector compared with the vectors
# filed under its ``probes`` nearest centroids. A pair is a candidate when either member's probes
# reach the other's home list; candidates are re-ranked by the exact float64 inner product, so the
# threshold decides the same way whatever arithmetic found them. bench/bench_near_duplicates.py
# measures the pairs it finds against the exact search.

Member = tuple[str, str, str]  # (key, source, split)
NEAR_METHOD = "clap_audio_embedding"
EXACT_SEARCH_MAX = 100_000  # vectors; above this the search uses the IVF index
IVF_PROBES = 8  # lists each vector is compared with (of about 2 sqrt(n))
IVF_TRAIN_PER_LIST = 32  # k-means sample: this many vectors per list
IVF_ITERATIONS = 10
RERANK_MARGIN = 1e-3  # float32 candidates this far under the threshold are re-ranked in float64
_QUERY_BATCH = 1024  # rows of queries per matrix product: bounds memory on a large block


@dataclass(frozen=True)
class SearchPlan:
    """How the near-duplicate search runs for ``n`` vectors: ``centroids`` None is the exact search."""

    n: int
    centroids: np.ndarray | None = None  # float32 [lists, dim], unit rows
    probes: int = 0

    @property
    def lists(self) -> int:
        return 0 if self.centroids is None else len(self.centroids)

    def describe(self) -> dict:
        if self.centroids is None:
            return {"index": "exact", "vectors": self.n}
        return {"index": "ivf", "vectors": self.n, "lists": self.lists, "probes": self.probes}


def ivf_lists(n: int) -> int:
    """The number of IVF lists for ``n`` vectors (0: exact search): 2 sqrt(n), so that filing a vector
    (``lists`` products) and comparing it (``probes`` x n / ``lists`` products) cost about alike."""
    return 0 if n <= EXACT_SEARCH_MAX else max(IVF_PROBES, round(2 * math.sqrt(n)))


def train_sample_fraction(n: int, lists: int | None = None) -> float:
    """The share of vectors (chosen by their key's hash) the k-means centroids are trained on."""
    lists = ivf_lists(n) if lists is None else lists
    return 0.0 if not lists else min(1.0, IVF_TRAIN_PER_LIST * lists / max(n, 1))


def in_train_sample(key: str, fraction: float) -> bool:
    return fraction > 0 and stable_hash64(key, salt="ivf-sample") < fraction * 2.0**64


def train_centroids(keys: Sequence[str], vectors: np.ndarray, lists: int) -> np.ndarray:
    """Spherical k-means: ``lists`` unit centroids of ``vectors``. Deterministic: the rows are taken
    in the order of their keys' hashes, the first ``lists`` of them start the centroids, and a list
    left empty keeps its centroid."""
    order = sorted(range(len(keys)), key=lambda i: (stable_hash64(keys[i], salt="ivf-sample"), keys[i]))
    x = l2_normalise(np.asarray(vectors, dtype=np.float32)[order])
    lists = min(lists, len(x))
    c = x[:lists].copy()
    for _ in range(IVF_ITERATIONS):
        home = _nearest_lists(x, c, 1)[:, 0]
        sums = np.zeros_like(c, dtype=np.float64)
        np.add.at(sums, home, x)
        filled = np.bincount(home, minlength=lists) > 0
        c[filled] = l2_normalise(sums[filled]).astype(np.float32)
    return c


def _nearest_lists(x: np.ndarray, centroids: np.ndarray, k: int) -> np.ndarray:
    """Indices [len(x), k] of each row's ``k`` nearest centroids, nearest first (ties: lower index)."""
    out = np.empty((len(x), k), dtype=np.int64)
    for start in range(0, len(x), _QUERY_BATCH):
        s = x[start : start + _QUERY_BATCH] @ centroids.T
        if k < s.shape[1]:
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(s.shape[1]), s.shape).copy()
        sub = np.take_along_axis(s, part, 1)
        order = np.lexsort((part, -sub), axis=1)
        out[start : start + _QUERY_BATCH] = np.take_along_axis(part, order, 1)
    return out


def plan_search(
    n: int, sample: Iterable[tuple[str, np.ndarray]] = (), lists: int | None = None
) -> SearchPlan:
    """The plan for ``n`` vectors; ``sample``: (key, vector) of the vectors :func:`in_train_sample`
    picked (ignored for the exact search). ``lists`` overrides :func:`ivf_lists` (0: exact)."""
    lists = ivf_lists(n) if lists is None else lists
    items = sorted(sample, key=lambda kv: kv[0]) if lists else []
    if not lists or not items:
        return SearchPlan(n)
    keys = [k for k, _ in items]
    centroids = train_centroids(keys, np.stack([v for _, v in items]), lists)
    return SearchPlan(n, centroids, min(IVF_PROBES, len(centroids)))


def near_partition(key: str, partitions: int) -> int:
    """The block a sample's embedding belongs to when the search is cut into blocks."""
    return stable_hash64(key, salt="near-duplicates") % partitions


def _pairs_above(
    q: np.ndarray, b: np.ndarray, q_src: np.ndarray, b_src: np.ndarray, threshold: float, upper: bool
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(query rows, base rows) of the pairs of different sources whose float32 inner product is at
    least ``threshold - RERANK_MARGIN``; ``upper``: q is b, and only pairs i < j count."""
    floor = np.float32(threshold - RERANK_MARGIN)
    for start in range(0, len(q), _QUERY_BATCH):
        s = q[start : start + _QUERY_BATCH] @ b.T
        hit = (s >= floor) & (q_src[start : start + _QUERY_BATCH, None] != b_src[None, :])
        if upper:
            rows = np.arange(start, start + len(s))[:, None]
            hit &= np.arange(len(b))[None, :] > rows
        i, j = np.nonzero(hit)
        if len(i):
            yield i + start, j


def near_pairs(
    left_vectors: np.ndarray,
    left_sources: np.ndarray,
    right_vectors: np.ndarray,
    right_sources: np.ndarray,
    threshold: float,
    plan: SearchPlan | None = None,
    same_block: bool = True,
) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(left rows, right rows, float64 inner products) of the pairs of different sources (source ids
    as integers) at or above ``threshold``, in batches; a pair may come more than once, never with
    itself. ``same_block``: left is right (each pair is still found at least once)."""
    lv = np.ascontiguousarray(left_vectors, dtype=np.float32)
    rv = lv if same_block else np.ascontiguousarray(right_vectors, dtype=np.float32)
    l_src = np.asarray(left_sources)
    r_src = l_src if same_block else np.asarray(right_sources)
    if not len(lv) or not len(rv):
        return

    def exact(li: np.ndarray, rj: np.ndarray):
        s = np.einsum("ij,ij->i", lv[li].astype(np.float64), rv[rj].astype(np.float64))
        keep = (s >= threshold) & ((li != rj) if same_block else True)
        return li[keep], rj[keep], s[keep]

    if plan is None or plan.centroids is None:
        for li, rj in _pairs_above(lv, rv, l_src, r_src, threshold, upper=same_block):
            yield exact(li, rj)
        return
    l_probe = _nearest_lists(lv, plan.centroids, plan.probes)
    r_probe = l_probe if same_block else _nearest_lists(rv, plan.centroids, plan.probes)
    directions = [(lv, l_src, l_probe, rv, r_src, r_probe, False)]
    if not same_block:
        directions.append((rv, r_src, r_probe, lv, l_src, l_probe, True))
    for qv, q_src, q_probe, bv, b_src, b_probe, swapped in directions:
        filed: dict[int, list[int]] = {}
        for row, home in enumerate(b_probe[:, 0].tolist()):
            filed.setdefault(home, []).append(row)
        asking: dict[int, list[int]] = {}
        for row, probes in enumerate(q_probe.tolist()):
            for lst in probes:
                if lst in filed:
                    asking.setdefault(lst, []).append(row)
        for lst in sorted(asking):
            qi, bj = np.array(asking[lst]), np.array(filed[lst])
            for i, j in _pairs_above(qv[qi], bv[bj], q_src[qi], b_src[bj], threshold, upper=False):
                a, b = qi[i], bj[j]
                yield exact(*((b, a) if swapped else (a, b)))


def near_edges(
    left: Sequence[Member],
    left_vectors: np.ndarray,
    right: Sequence[Member],
    right_vectors: np.ndarray,
    threshold: float,
    plan: SearchPlan | None = None,
    same_block: bool = True,
) -> list[tuple[Member, Member, float]]:
    """Edges (smaller member, larger member, cosine) between samples of different sources whose
    stored embeddings have an inner product at or above ``threshold``, left against right (one block
    against itself when ``same_block``), reduced to a maximum spanning forest: the groups and each
    group's weakest needed cosine are those of all the edges, in at most one edge per sample."""
    if same_block:
        right, right_vectors = left, left_vectors
    sources: dict[str, int] = {}
    l_src = np.array([sources.setdefault(m[1], len(sources)) for m in left], dtype=np.int64)
    r_src = np.array([sources.setdefault(m[1], len(sources)) for m in right], dtype=np.int64)
    forest: list[tuple[Member, Member, float]] = []
    pending: list[tuple[Member, Member, float]] = []
    for li, rj, sims in near_pairs(left_vectors, l_src, right_vectors, r_src, threshold, plan, same_block):
        for a, b, s in zip(li.tolist(), rj.tolist(), sims.tolist(), strict=True):
            x, y = left[a], right[b]
            pending.append((min(x, y), max(x, y), round(s, 6)))
        if len(pending) > max(65_536, 2 * len(forest)):  # memory: about one edge per member
            forest, pending = spanning_forest([*forest, *pending]), []
    return sorted(spanning_forest([*forest, *pending]))


def _as_member(m: Sequence[str]) -> Member:
    """A member as the tuple it is declared: a Beam coder hands lists back."""
    key, source, split = m
    return key, source, split


def spanning_forest(edges: Iterable[tuple[Member, Member, float]]) -> list[tuple[Member, Member, float]]:
    """The maximum spanning forest of the edges (Kruskal, strongest first, ties by members): what
    connects the groups, with each group's weakest needed edge, in at most one edge per member. The
    forest of a union is the forest of the parts' forests, so blocks may reduce before they meet."""
    best: dict[tuple[Member, Member], float] = {}
    for a, b, s in edges:
        a, b = _as_member(a), _as_member(b)
        e = (min(a, b), max(a, b))
        best[e] = max(best.get(e, -1.0), s)
    parent: dict[Member, Member] = {}
    out = []
    for (a, b), s in sorted(best.items(), key=lambda kv: (-kv[1], kv[0])):
        ra, rb = _root(parent, a), _root(parent, b)
        if ra != rb:
            parent[rb] = ra
            out.append((a, b, s))
    return out


def _root(parent: dict[Member, Member], m: Member) -> Member:
    """Union-find: the root of ``m``'s set in ``parent`` (added as its own set if new), halving paths."""
    parent.setdefault(m, m)
    while parent[m] != m:
        parent[m] = parent[parent[m]]
        m = parent[m]
    return m


def near_duplicate_groups(
    members: Sequence[Member], vectors: np.ndarray, threshold: float, plan: SearchPlan | None = None
) -> list[tuple[list[Member], float]]:
    """Groups of samples of different sources joined by embeddings at or above ``threshold`` (see the
    section comment), each as (members sorted by key, the weakest cosine that joined it), sorted by
    first key. Samples of one source are never joined directly (same-source near copies are a
    source's own business: takes, loops, variations), but may meet through another source's copy."""
    return groups_from_edges(near_edges(members, vectors, members, vectors, threshold, plan))


def groups_from_edges(edges: Iterable[tuple[Member, Member, float]]) -> list[tuple[list[Member], float]]:
    """Connected groups of the edges, each with the weakest cosine its maximum spanning forest needs."""
    parent: dict[Member, Member] = {}

    def find(m: Member) -> Member:
        return _root(parent, m)

    forest = spanning_forest(edges)
    for a, b, _ in forest:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    weakest: dict[Member, float] = {}
    for a, _, s in forest:
        r = find(a)
        weakest[r] = min(s, weakest.get(r, 1.0))
    groups: dict[Member, list[Member]] = {}
    for m in list(parent):
        groups.setdefault(find(m), []).append(m)
    out = [(sorted(ms), weakest[root]) for root, ms in groups.items() if len(ms) > 1]
    return sorted(out, key=lambda g: g[0][0])
