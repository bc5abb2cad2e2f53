"""CLAP scoring without Beam or a model: the model's input from a clip, embeddings to scores, the
filtering and leakage rules, caption normalisation and the nearest-neighbour search.

The Beam stage (pipeline/clap_stage.py) runs the model and applies these per record; everything here
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
        return cls(tuple(tuple(h) for h, _ in rows), mat)


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

Member = tuple[str, str, str]  # (key, source, split)
NEAR_METHOD = "clap_audio_embedding"


def near_duplicate_groups(
    members: Sequence[Member], vectors: np.ndarray, threshold: float, k: int = 8
) -> list[tuple[list[Member], float]]:
    """Groups of samples of different sources whose audio embeddings have cosine >= ``threshold``:
    each sample is joined to its ``k`` nearest neighbours above it (union-find), so a group is a
    connected component. Returns (members sorted by key, the lowest cosine of an edge that joined it),
    sorted by first key. Samples of one source are never joined directly (same-source near copies are
    a source's own business: takes, loops, variations)."""
    return groups_from_edges(near_edges(members, vectors, members, vectors, threshold, k, same_block=True))


def near_partition(key: str, partitions: int) -> int:
    """The block a sample's embedding belongs to when the search is cut into blocks."""
    return stable_hash64(key, salt="near-duplicates") % partitions


def near_edges(
    left: Sequence[Member],
    left_vectors: np.ndarray,
    right: Sequence[Member],
    right_vectors: np.ndarray,
    threshold: float,
    k: int,
    same_block: bool,
) -> list[tuple[Member, Member, float]]:
    """Edges (smaller member, larger member, cosine) between samples of different sources at or above
    ``threshold``: each sample's ``k`` nearest in the other block (both ways). Only two blocks are in
    memory at a time, so a corpus is searched in blocks that each fit (``near_duplicate_partitions``)."""
    edges: dict[tuple[Member, Member], float] = {}

    def search(queries: Sequence[Member], qv: np.ndarray, base: Sequence[Member], bv: np.ndarray) -> None:
        if not len(queries) or not len(base):
            return
        index = NeighbourIndex(bv.shape[1])
        index.add(bv)
        sims, idx = index.search(qv, min(k + 1, len(base)))
        for i, q in enumerate(queries):
            for s, j in zip(sims[i], idx[i], strict=True):
                j = int(j)
                if j < 0 or s < threshold:
                    continue
                b = base[j]
                if b == q or b[1] == q[1]:
                    continue
                e = (min(q, b), max(q, b))
                edges[e] = max(edges.get(e, -1.0), round(float(s), 6))

    search(left, left_vectors, right, right_vectors)
    if not same_block:
        search(right, right_vectors, left, left_vectors)
    return [(a, b, s) for (a, b), s in sorted(edges.items())]


def groups_from_edges(edges: Iterable[tuple[Member, Member, float]]) -> list[tuple[list[Member], float]]:
    """Connected groups of the edges, each with the weakest cosine its maximum spanning forest needs."""
    best: dict[tuple[Member, Member], float] = {}
    for a, b, s in edges:
        a, b = tuple(a), tuple(b)
        e = (min(a, b), max(a, b))
        best[e] = max(best.get(e, -1.0), s)
    parent: dict[Member, Member] = {}

    def find(m: Member) -> Member:
        parent.setdefault(m, m)
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    weakest: dict[Member, float] = {}
    # strongest edges first (a maximum spanning forest): the weakest edge it needs is the group's cosine
    for (a, b), s in sorted(best.items(), key=lambda kv: (-kv[1], kv[0])):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
            weakest[ra] = min(s, weakest.get(ra, 1.0), weakest.get(rb, 1.0))
    groups: dict[Member, list[Member]] = {}
    for m in list(parent):
        groups.setdefault(find(m), []).append(m)
    out = [(sorted(ms), weakest[root]) for root, ms in groups.items() if len(ms) > 1]
    return sorted(out, key=lambda g: g[0][0])
