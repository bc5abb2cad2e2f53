"""What a corpus worker pays before its first sample: imports, then the first sample, in CPU seconds.

Run: ``.venv/bin/python bench/bench_startup.py [--python OTHER/bin/python ...] [--repeats N]``. Each
interpreter given (default: this one) starts fresh ``--repeats`` times and

- imports what a Beam worker unpickling the pipeline's DoFns imports (``pipeline.graph``), the
  per-sample modules and what ``setup()`` runs (``views.one_thread``, or ``torch.set_num_threads``
  on an install whose views still import torch);
- then builds one sample (a 5 s tone, FLAC + views) and writes it into a tar shard, as the shard
  writer's first call does (first-call imports such as webdataset's included).

CPU seconds (user + system of the child) are the figure: wall time on a shared machine says as much
about the neighbours. ``-X importtime`` gives the cumulative import time of the heaviest packages.
Use it with two installs side by side, e.g. the tree before issue 17 and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, time
def peak_mb():  # VmHWM: ru_maxrss keeps the parent's peak across fork and exec
    return next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')) / 1024
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
import clap_corpus.pipeline.stages.graph
from clap_corpus.transforms import views
if hasattr(views, "one_thread"):
    views.one_thread()
else:  # the views of this install are on torch: its workers' setup() did this
    import torch
    torch.set_num_threads(1)
from clap_corpus.core.layout import Layout
from clap_corpus.core.records import Record
from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.pipeline.demo import synth
from clap_corpus.transforms.captions import render_captions
from clap_corpus.transforms.sample import SampleOptions, process_sample
from clap_corpus.transforms.shards import ShardWriter
imported = cpu()
import numpy as np
t = np.arange(5 * 44100) / 44100
data = synth.encode_audio((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100, "ogg")
base = Record(key="k", source="s", source_id="k", audio=LocalFile("/k"), row=1, labels=("Bell",))
record = render_captions(base)
sample = process_sample(record, data, SampleOptions())
writer = ShardWriter(Layout(sys.argv[1], "c"), "train", "000000", ("webdataset",))
writer.add(sample)
writer.close()
first = cpu()
heavy = sorted(m for m in ("torch", "transformers", "webdataset", "scipy") if m in sys.modules)
print(json.dumps({"import_cpu_s": imported, "first_sample_cpu_s": first, "loaded": heavy,
                  "rss_mb": peak_mb()}))
"""

PACKAGES = ("torch", "apache_beam", "scipy", "pyarrow", "av", "matplotlib", "webdataset", "pydantic", "numpy")
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def run_child(python: str, importtime: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        args = [python, *(["-X", "importtime"] if importtime else []), "-c", CHILD, out]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=out)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result = json.loads(proc.stdout.splitlines()[-1])
    result["process_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if importtime:
        # each package's own import line (where it is first imported, at any depth): cumulative us
        cumulative: dict[str, int] = {}
        total = 0
        for line in proc.stderr.splitlines():
            m = IMPORT_LINE.match(line)
            if not m:
                continue
            if m.group(3) == " ":
                total += int(m.group(2))
            if m.group(4) in PACKAGES:
                cumulative[m.group(4)] = max(cumulative.get(m.group(4), 0), int(m.group(2)))
        result["import_ms"] = {k: v / 1000 for k, v in sorted(cumulative.items(), key=lambda kv: -kv[1])}
        result["import_total_ms"] = total / 1000
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", nargs="+", default=[sys.executable], help="interpreters (installs) to compare")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"{'install':<44} {'import CPU s':>12} {'+1st sample':>12} {'process CPU s':>13} {'peak RSS':>9}")
    for python in args.python:
        runs = [run_child(python, importtime=False) for _ in range(args.repeats)]
        timed = run_child(python, importtime=True)

        def med(key: str, runs: list[dict] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        name = os.path.dirname(os.path.dirname(python))
        print(
            f"{name:<44} {med('import_cpu_s'):>12.2f} {med('first_sample_cpu_s'):>12.2f} "
            f"{med('process_cpu_s'):>13.2f} {med('rss_mb'):>7.0f}MB"
        )
        top = ", ".join(f"{k} {v:.0f} ms" for k, v in timed["import_ms"].items())
        loaded = ", ".join(runs[0]["loaded"])
        print(f"  loaded: {loaded}; -X importtime total {timed['import_total_ms']:.0f} ms, of which {top}")


if __name__ == "__main__":
    main()
