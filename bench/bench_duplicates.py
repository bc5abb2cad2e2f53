"""What duplicate removal costs: the hashing passes against the shard writer's work.

Run: ``.venv/bin/python bench/bench_duplicates.py [--clips 24] [--pipeline]``.

``duplicates: report`` with ``cross_split_duplicates: report`` is free (the shard writer hashes the
PCM it already decoded, ~1 ms per 10 s). The default ``cross_split_duplicates: remove`` reads and
decodes the held-out clips (valid/test) once more before sharding; the train shard writers check
their own digests against that set. ``keep_first`` / ``drop_all`` must know every hash before the
shards are cut, so every clip is read and decoded once more. On the demo corpus (``pipeline/demo/corpus.py``:
mp3/ogg/opus/m4a/flac/wav, 1-60 s, 16-48 kHz, mono/stereo; its held-out share is printed, about a
quarter, far above a real corpus's few percent), this prints, in CPU seconds of one core (the primary
figure on a shared machine):

- per sample, no Beam, bytes already in memory: ``process_sample`` (decode, views, FLAC, JSON: what the
  writer does per clip) next to ``decoded_digest`` (decode + hash) over every clip (the keep_first
  pass) and over the held-out clips only (the cross-split pass);
- with ``--pipeline``: ``run_corpus`` on the local runner with the three settings, CPU time of each
  run's process tree (each in its own child process, waited for).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import yaml

from clap_corpus.core.records import Record
from clap_corpus.core.rejects import RejectError
from clap_corpus.manifests.generic import read_generic
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.spec.corpus import load_spec
from clap_corpus.pipeline.stages.duplicates import decoded_digest
from clap_corpus.transforms import storage
from clap_corpus.transforms.audio_source import read_audio_bytes
from clap_corpus.transforms.captions import render_captions
from clap_corpus.transforms.sample import process_sample
from clap_corpus.transforms.sharding import split_of

RUN = """
import json, sys
from clap_corpus.pipeline.launch.run import run_corpus
s = run_corpus(sys.argv[1], sys.argv[2], ["--runner=FnApiRunner"])
print(json.dumps({"samples": s["samples"], "stages": s.get("stages", {}).get("duplicates")}))
"""


def per_sample(spec_path: str, repeats: int) -> tuple[float, float, float, int, int, float]:
    from clap_corpus.transforms.views import one_thread

    one_thread()  # as the shard writer runs it: one worker process per core
    spec = load_spec(spec_path)
    opts = spec.options.sample
    items = []
    for item in read_generic(spec.sources[0]):
        if isinstance(item, Record):
            out = render_captions(item)
            if isinstance(out, Record) and storage.exists(out.audio.storage_path):
                items.append((out, read_audio_bytes(out.audio)))
    sample_cpu = digest_cpu = heldout_cpu = seconds = 0.0
    n = n_heldout = 0
    for record, data in items:
        try:
            process_sample(record, data, opts)  # warm-up, and skip what the writer would reject
        except RejectError:
            continue
        n += 1
        heldout = split_of(record, spec.options.split_proportions) not in spec.options.train_splits
        n_heldout += heldout
        for _ in range(repeats):
            t0 = time.process_time()
            s = process_sample(record, data, opts)
            t1 = time.process_time()
            decoded_digest(data, opts)
            t2 = time.process_time()
            sample_cpu += t1 - t0
            digest_cpu += t2 - t1
            heldout_cpu += (t2 - t1) if heldout else 0.0
        seconds += s.duration_s
    return sample_cpu / repeats, digest_cpu / repeats, heldout_cpu / repeats, n, n_heldout, seconds


def pipeline_cpu(spec_path: str, out: str) -> tuple[float, float, dict]:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", RUN, spec_path, out], cwd=repo, check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pipeline", action="store_true", help="also time whole runs (the three settings)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = write_demo_corpus(os.path.join(tmp, "demo"), n_clips=args.clips, k2c_model=None)
        sample_cpu, digest_cpu, heldout_cpu, n, n_heldout, audio_s = per_sample(spec_path, args.repeats)
        print(
            f"demo corpus: {n} decodable clips ({n_heldout} held out), {audio_s:.0f} s of audio "
            "(one core, CPU seconds)"
        )
        print(f"  {'per-sample work':<46}{'CPU s':>8}{'added':>8}")
        print(f"  {'shard writer: process_sample':<46}{sample_cpu:>8.2f}{'':>8}")
        for name, cpu in (
            ("cross-split pass: decode + hash, held out", heldout_cpu),
            ("keep_first pass: decode + hash, every clip", digest_cpu),
        ):
            print(f"  {name:<46}{cpu:>8.2f}{100 * cpu / sample_cpu:>7.0f}%")
        if args.pipeline:
            with open(spec_path) as f:
                doc = yaml.safe_load(f)
            runs = [
                ("cross_split report (free, the old default)", {"cross_split_duplicates": "report"}),
                ("cross_split remove (default)", {}),
                ("duplicates: keep_first", {"duplicates": "keep_first"}),
            ]
            print(f"  {'whole run, FnApiRunner (one process tree)':<46}{'CPU s':>8}{'wall s':>9}")
            for i, (name, options) in enumerate(runs):
                path = os.path.join(tmp, "demo", f"spec_{i}.yaml")
                with open(path, "w") as f:
                    yaml.safe_dump({**doc, "options": {**doc["options"], **options}}, f)
                cpu, wall, s = pipeline_cpu(path, os.path.join(tmp, f"out{i}"))
                print(f"  {name:<46}{cpu:>8.1f}{wall:>9.1f}   ({s['samples']} samples)")


if __name__ == "__main__":
    main()
