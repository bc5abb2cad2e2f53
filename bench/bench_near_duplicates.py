"""Near-duplicates at scale: the exact search against the approximate (IVF) one, recall and cost.

Run: ``.venv/bin/python bench/bench_near_duplicates.py [--sizes 100000 1000000] [--queries 2000]``.

The vectors are what CLAP audio embeddings look like, not random ones: 512 dimensions, float16, a
component every clip shares (two unrelated clips have cosine ~0.3, as LAION's model gives), topics and
sub-topics (sounds of one kind sit together, some in tight clusters), and 30 % of the vectors near
copies of another one (cosine 0.93-0.999 to it, groups of 1-30 copies spread over four sources), so
that thousands of pairs sit at and around the threshold (0.95).

For each size n:

- exact: every pair compared. At 10^6 that is hours on this machine, so it is measured on a fixed
  random subset of ``--queries`` vectors against all n (the reference pairs: every pair of different
  sources at or above the threshold with a subset vector in it) and its cost projected to all n
  queries (n^2 / 2 products, the self-join);
- approximate: the whole search as the pipeline runs it (``transforms.clap_scores``: k-means on a
  key-hashed sample, every vector filed and compared with the vectors of its 8 nearest lists,
  candidates re-ranked by the exact float64 inner product), on all n vectors; recall = the share of
  the reference pairs it found.

CPU seconds (``time.process_time``: all threads of this process) and wall seconds are printed apart.
The projections to 2.5 M and 100 M scale each measured part by how it grows: the exact search as n^2,
the k-means training as n (its sample is 32 vectors per list and there are ~2 sqrt(n) lists), filing
and comparing as n^1.5. On Dataflow the search is cut into ``near_duplicate_partitions`` blocks by a
stable hash of the key: each block pair meets in one worker, which holds its two blocks' vectors, so a
worker holds 2/P of them; the centroids (trained once, on one worker, from the sample) go to every
worker as a side input.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from clap_corpus.scoring import scores as cs

DIM = 512
THRESHOLD = 0.95
SOURCES = 4
WORKER_GIB = 4  # a worker's share of the vectors in the projection


def clustered(n: int, seed: int = 0, dup_share: float = 0.3, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors (float16) shaped like CLAP audio embeddings; see the module docstring."""
    rng = np.random.default_rng(seed)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    topics, subs = max(4, n // 2000), max(16, n // 50)
    common = unit(rng.standard_normal(DIM)).astype(np.float32)
    topic = unit(rng.standard_normal((topics, DIM))).astype(np.float32)
    sub_topic = rng.integers(0, topics, subs)
    sub = unit(0.75 * topic[sub_topic] + 0.66 * unit(rng.standard_normal((subs, DIM)))).astype(np.float32)
    n_orig = int(n * (1 - dup_share))
    out = np.empty((n, DIM), np.float16)
    for a in range(0, n_orig, chunk):
        b = min(n_orig, a + chunk)
        s = rng.integers(0, subs, b - a)
        spread = rng.uniform(0.2, 0.9, (b - a, 1)).astype(np.float32)  # 0.2: tight clusters of one sound
        noise = unit(rng.standard_normal((b - a, DIM), dtype=np.float32))
        out[a:b] = unit(0.7 * common + 0.8 * sub[s] + spread * noise)
    sizes, left = [], n - n_orig
    while left > 0:
        k = min(left, int(rng.geometric(0.2)), 30)
        sizes.append(k)
        left -= k
    of = np.repeat(rng.integers(0, n_orig, len(sizes)), sizes)
    for a in range(0, len(of), chunk):
        i = of[a : a + chunk]
        target = rng.uniform(0.93, 0.999, len(i))  # cosine of each copy with its original
        delta = np.sqrt(1 / target**2 - 1).astype(np.float32)[:, None]
        copy = out[i].astype(np.float32) + delta * unit(rng.standard_normal((len(i), DIM), dtype=np.float32))
        out[n_orig + a : n_orig + a + len(i)] = unit(copy)
    return out


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = _clock()
    return cpu - t0[0], wall - t0[1]


def bench(n: int, queries: int) -> dict:
    t0 = _clock()
    v16 = clustered(n)
    v = v16.astype(np.float32)
    src = np.random.default_rng(1).integers(0, SOURCES, n)
    keys = [f"k{i:09d}" for i in range(n)]
    made = _since(t0)
    rng = np.random.default_rng(2)
    q = np.sort(rng.choice(n, min(queries, n), replace=False))
    pairs_of = {}

    # exact, the subset of queries against every vector
    t0 = _clock()
    exact = set()
    for li, rj, _ in cs.near_pairs(v[q], src[q], v, src, THRESHOLD, None, same_block=False):
        for a, b in zip(q[li].tolist(), rj.tolist(), strict=True):
            if a != b:
                exact.add((min(a, b), max(a, b)))
    exact_cost = _since(t0)
    scale = (n * (n - 1) / 2) / (len(q) * n)  # the self-join's products over the subset's
    pairs_of["exact"] = exact

    # approximate, the whole search
    lists = round(2 * math.sqrt(n))
    t0 = _clock()
    fraction = cs.train_sample_fraction(n, lists)
    sample = [(keys[i], v[i]) for i in range(n) if cs.in_train_sample(keys[i], fraction)]
    plan = cs.plan_search(n, sample, lists=lists)
    train = _since(t0)
    t0 = _clock()
    wanted = set(q.tolist())
    found, total = set(), 0
    for li, rj, _ in cs.near_pairs(v, src, v, src, THRESHOLD, plan):
        total += len(li)
        for a, b in zip(li.tolist(), rj.tolist(), strict=True):
            if a in wanted or b in wanted:
                found.add((min(a, b), max(a, b)))
    search = _since(t0)
    recall = len(found & exact) / len(exact) if exact else float("nan")
    return {
        "n": n,
        "queries": len(q),
        "made": made,
        "exact_pairs": len(exact),
        "exact_subset": exact_cost,
        "exact_full": (exact_cost[0] * scale, exact_cost[1] * scale),
        "lists": plan.lists,
        "probes": plan.probes,
        "sample": len(sample),
        "train": train,
        "search": search,
        "approx_pairs_total": total,
        "found": len(found & exact),
        "extra": len(found - exact),
        "recall": recall,
    }


def project(row: dict, n: int) -> tuple[float, float]:
    """(exact, approximate) CPU seconds for n vectors from a measured row."""
    r = n / row["n"]
    exact = row["exact_full"][0] * r * r
    approx = row["train"][0] * r + row["search"][0] * r**1.5
    return exact, approx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=2000, help="exact search: this many random queries")
    args = ap.parse_args()
    print(
        f"near-duplicate search, {DIM} dimensions, threshold {THRESHOLD}, {SOURCES} sources; "
        "CPU s = all threads of this process, wall s apart"
    )
    rows = []
    for n in args.sizes:
        row = bench(n, args.queries)
        rows.append(row)
        print(f"\nn = {n:,} (vectors made in {row['made'][1]:.0f} s wall)")
        print(
            f"  exact, {row['queries']:,} random queries against all: {row['exact_pairs']:,} pairs >= "
            f"{THRESHOLD} (the reference); {row['exact_subset'][0]:.1f} CPU s / {row['exact_subset'][1]:.1f} "
            f"wall s; all n queries (self-join, projected): {row['exact_full'][0]:,.0f} CPU s"
        )
        print(
            f"  approximate, all n: IVF {row['lists']:,} lists, {row['probes']} probes, trained on "
            f"{row['sample']:,} vectors in {row['train'][0]:.1f} CPU s / {row['train'][1]:.1f} wall s; "
            f"search {row['search'][0]:.1f} CPU s / {row['search'][1]:.1f} wall s "
            f"({row['approx_pairs_total']:,} pair hits)"
        )
        print(
            f"  recall: {row['found']:,} of the {row['exact_pairs']:,} reference pairs: {row['recall']:.4f}; "
            f"speed-up {row['exact_full'][0] / (row['train'][0] + row['search'][0]):.1f}x (CPU)"
        )
    big = rows[-1]
    print(f"\nprojected from n = {big['n']:,} (exact ~ n^2; k-means ~ n; filing and comparing ~ n^1.5):")
    print(f"  {'vectors':>12}{'exact CPU-h':>14}{'approximate CPU-h':>20}{'blocks P':>10}{'shuffled':>11}")
    for n in (2_500_000, 100_000_000):
        exact, approx = project(big, n)
        # P keeps a worker's two blocks (float32) under WORKER_GIB; each vector travels to P block pairs
        parts = max(1, math.ceil(2 * n * DIM * 4 / (WORKER_GIB * 2**30)))
        shuffled = n * parts * DIM * 2 / 2**40  # float16 embeddings, P copies each
        print(f"  {n:>12,}{exact / 3600:>14,.1f}{approx / 3600:>20,.1f}{parts:>10}{shuffled:>8.2f} TiB")
    print(
        f"  (P: near_duplicate_partitions keeping a worker's two blocks under {WORKER_GIB} GiB; the "
        "k-means training, about a fifth of the approximate CPU at 10^6, runs on one worker)"
    )


if __name__ == "__main__":
    main()
