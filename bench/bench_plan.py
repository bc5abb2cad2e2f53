"""`clapcorpus plan` on a 2.5 M-row, metadata-only AudioSet-like manifest: wall time and peak memory.

Run: ``.venv/bin/python bench/bench_plan.py [--rows 2500000] [--workdir DIR]``.

Writes ``unbalanced_train_segments.csv`` as Google ships it (comment header, ", " separators, quoted
label lists of 1-4 of 527 label ids) plus its class index and a spec that names the audio files by
``file_pattern`` (nothing is listed: there is no audio). Then, each in a fresh process so that peak
RSS is its own:

- ours:     ``plan_spec`` on that spec (every row parsed, validated, keyed, split, hashed for the
            leakage estimate), streaming;
- baseline: ``pandas.read_csv`` of the same file into a DataFrame (parsing only; the whole table
            in memory), which is what LAION's scripts start with.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

N_CLASSES = 527
ID_ALPHABET = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8
)


def write_manifest(folder: str, rows: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    mids = [f"/m/0{i:05x}" for i in range(N_CLASSES)]
    with open(os.path.join(folder, "class_labels_indices.csv"), "w") as f:
        f.write("index,mid,display_name\n")
        f.writelines(f'{i},{m},"Class {i}, alias"\n' for i, m in enumerate(mids))
    path = os.path.join(folder, "unbalanced_train_segments.csv")
    chunk = 100_000
    with open(path, "w") as f:
        f.write("# Segments csv created Sun Mar  5 10:54:31 2017\n")
        f.write(
            f"# num_ytids={rows}, num_segs={rows}, num_unique_labels={N_CLASSES}, num_positive_labels=0\n"
        )
        f.write("# YTID, start_seconds, end_seconds, positive_labels\n")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = ID_ALPHABET[rng.integers(0, len(ID_ALPHABET), size=(n, 11))].view("S11").ravel()
            starts = rng.integers(0, 600, size=n) * 10
            counts = rng.integers(1, 5, size=n)
            labels = rng.integers(0, N_CLASSES, size=(n, 4))
            f.writelines(
                f"{ids[i].decode()}, {starts[i]:.3f}, {starts[i] + 10:.3f}, "
                f'"{",".join(mids[j] for j in labels[i, : counts[i]])}"\n'
                for i in range(n)
            )
    spec = {
        "corpus": "bench",
        "sources": [
            {
                "name": "audioset_unbalanced",
                "adapter": "audioset",
                "manifest": path,
                "audio_root": os.path.join(folder, "audio"),
                "options": {
                    "class_index": os.path.join(folder, "class_labels_indices.csv"),
                    "file_pattern": "Y{ytid}.wav",
                },
                "expected_count": 1912024,
            }
        ],
    }
    spec_path = os.path.join(folder, "spec.yaml")
    with open(spec_path, "w") as f:
        yaml.safe_dump(spec, f)
    return spec_path


OURS = """
import json, sys, time
from bench.memory import vm_hwm_mb as peak_mb  # the checkout is the cwd
from clap_corpus.manifests.plan import plan_spec
from clap_corpus.pipeline.spec.corpus import load_spec
t0 = time.perf_counter()
plan = plan_spec(load_spec(sys.argv[1]))
wall = time.perf_counter() - t0
rss = peak_mb()
print(json.dumps({"wall": wall, "rss_mb": rss, "records": plan["records"], "rejects": plan["rejects"]}))
"""

BASELINE = """
import json, sys, time
from bench.memory import vm_hwm_mb as peak_mb  # the checkout is the cwd
import pandas as pd
t0 = time.perf_counter()
df = pd.read_csv(sys.argv[1], skiprows=3, header=None, skipinitialspace=True, quotechar='"',
                 names=["YTID", "start_seconds", "end_seconds", "positive_labels"])
wall = time.perf_counter() - t0
rss = peak_mb()
print(json.dumps({"wall": wall, "rss_mb": rss, "records": len(df), "rejects": 0}))
"""

IDLE = """
import json
from bench.memory import vm_hwm_mb as peak_mb  # the checkout is the cwd
import clap_corpus.manifests.plan, clap_corpus.pipeline.spec.corpus, pandas
print(json.dumps({"rss_mb": peak_mb()}))
"""


def _child(code: str, *args: str) -> dict:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_500_000)
    ap.add_argument("--workdir", default=None, help="where to write the manifest (default: a temp folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        t0 = time.perf_counter()
        spec = write_manifest(folder, args.rows)
        csv = os.path.join(folder, "unbalanced_train_segments.csv")
        size_mb = os.path.getsize(csv) / 1e6
        print(f"manifest: {args.rows} rows, {size_mb:.0f} MB, written in {time.perf_counter() - t0:.1f} s")
        idle = _child(IDLE)
        ours = _child(OURS, spec)
        base = _child(BASELINE, csv)
        print(f"interpreter with the modules imported (no data): {idle['rss_mb']:.0f} MB peak RSS")
        print(f"{'':<42}{'wall s':>9}{'peak RSS MB':>13}{'rows/s':>11}{'records':>10}")
        for name, r in (
            ("ours: clapcorpus plan (streaming, full checks)", ours),
            ("baseline: pandas.read_csv (parse only)", base),
        ):
            print(
                f"{name:<42}{r['wall']:>9.1f}{r['rss_mb']:>13.0f}"
                f"{args.rows / r['wall']:>11.0f}{r['records']:>10}"
            )


if __name__ == "__main__":
    main()
