"""The pipeline against LAION's way and against the bare-loop floor, side by side, in one run.

Run from the repository root: ``.venv/bin/python -m bench.bench_pipeline`` (or ``clapcorpus bench``);
``--help`` lists the knobs. Needs ``pip install -e .[bench]`` (psutil; ffmpeg-python and the
``ffmpeg`` binary for the LAION column, which is skipped, and says so, without them).

Every configuration runs in its own child process; its cost is the CPU time (user + system) of that
process and all its descendants (Beam's SDK workers, the ffmpeg processes), read with
``getrusage(RUSAGE_CHILDREN)`` once they have all been waited for. CPU seconds are the primary figure:
on a shared machine wall time says as much about the neighbours as about the code. Each
configuration runs ``--repeats`` times at two corpus sizes (N and 4N clips), interleaved; medians
are reported. The two sizes split each configuration's cost into a fixed start-up part (imports,
worker processes, graph set-up) and a per-audio-second part: ``cpu = start-up + audio / rate``.
The steady-state ``rate`` is what a long job gets; the whole-run figures include the start-up.

Configurations (same fixed corpus, :mod:`bench.corpus`):

- ``laion``: one ffmpeg CLI call per file to 48 kHz mono 16-bit FLAC, then tar (:mod:`bench.laion_way`),
  as many ffmpeg processes at a time as there are cores;
- ``pipeline-lfl``: ``pipeline.run.run_corpus`` on the local runner (FnApiRunner, one worker process
  per core) with views and Parquet off (``store_mel: false``, ``formats: [webdataset]``): like for
  like with LAION's way;
- ``pipeline-all``: the same with the default options (views, tar and Parquet);
- ``floor-lfl`` / ``floor-all``: the same per-sample work (``process_sample`` + ``ShardWriter``) in a
  plain loop in one process, no Beam.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from bench.corpus import (
    build_bench_corpus,
    build_folder_corpus,
    corpus_seconds,
    manifest_path,
    manifest_rows,
    plan_bench,
    whole_file_cap,
    write_spec,
)
from bench.memory import vm_hwm_mb

if TYPE_CHECKING:
    from bench.bench_views import ViewsTiming  # imports torch: only where the views are timed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("laion", "pipeline-lfl", "floor-lfl", "pipeline-all", "floor-all")
LIKE_FOR_LIKE = {"store_mel": False, "formats": ["webdataset"]}
LABELS = {
    "laion": "LAION's way (ffmpeg CLI per file, tar)",
    "pipeline-lfl": "pipeline, views + Parquet off",
    "floor-lfl": "bare loop, views + Parquet off",
    "pipeline-all": "pipeline, everything on",
    "floor-all": "bare loop, everything on",
}

# Projection: LAION-CLAP's 2.5 M-pair training set (the ICASSP 2023 table), about 10 000 hours.
PROJECT_PAIRS = 2_541_614
PROJECT_HOURS = 10_000.0
# Dataflow batch list prices, us-central1, USD (cloud.google.com/dataflow/pricing). The stored copy of
# that page available while writing this did not include the price table itself; the figures match a
# third-party Dataflow cost script (VCPU_HR = 0.056, MEM_GB_HR = 0.003557, PD_GB_HR = 0.000054,
# DATA_GB = 0.011). Check them against the page before quoting a budget.
DATAFLOW_VCPU_HOUR = 0.056
DATAFLOW_GB_HOUR = 0.003557
DATAFLOW_PD_GB_HOUR = 0.000054
DATAFLOW_SHUFFLE_GB = 0.011
PRICES_NOTE = (
    "Dataflow batch list prices, us-central1, from cloud.google.com/dataflow/pricing "
    "(not re-verified at run time)"
)
# The worker the projection assumes: n1-standard-4 (4 vCPU, 15 GB), 25 GB boot disk (the batch
# default with Dataflow Shuffle).
WORKER_VCPUS, WORKER_GB, WORKER_DISK_GB = 4, 15.0, 25.0


# ---------------------------------------------------------------------------------------------
# What one child process does


def child_pipeline(spec_path: str, out: str) -> dict[str, Any]:
    from clap_corpus.pipeline.launch.run import run_corpus

    summary = run_corpus(spec_path, out)
    return {"samples": summary["samples"], "rejects": summary["rejects"]}  # workers: measured from outside


def child_floor(spec_path: str, out: str, workers: int, part: int | None = None) -> dict[str, Any]:
    """The per-sample work of the pipeline in plain loops, no Beam: adapter, captions, split, sort,
    shards. ``workers`` processes (as many as the pipeline has workers) each take every
    ``workers``-th shard, so both run with the same parallelism on the same machine."""
    if part is None and workers > 1:
        me = [sys.executable, "-m", "bench.bench_pipeline", "--child", "floor", spec_path, out]
        procs = [
            subprocess.Popen(
                [*me, "--workers", str(workers), "--part", str(i)],
                cwd=REPO,
                env=_child_env(),
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(workers)
        ]
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError("a bare-loop process failed")
        return {
            "samples": sum(r["samples"] for r in results),
            "rejects": sum(r["rejects"] for r in results),
            "worker_peak_mb": max(r["worker_peak_mb"] for r in results),
        }
    from clap_corpus.core.layout import Layout, shard_name
    from clap_corpus.core.records import Record
    from clap_corpus.core.rejects import RejectError
    from clap_corpus.manifests.registry import read_source
    from clap_corpus.pipeline.spec.corpus import load_spec
    from clap_corpus.transforms.audio_source import read_audio_bytes
    from clap_corpus.transforms.captions import render_captions
    from clap_corpus.transforms.sample import process_sample
    from clap_corpus.transforms.sharding import split_of
    from clap_corpus.transforms.shards import ShardWriter
    from clap_corpus.transforms.views import one_thread

    one_thread()  # as the pipeline's workers do
    spec = load_spec(spec_path)
    layout = Layout(os.path.abspath(out), spec.corpus)
    by_split: dict[str, list[Record]] = {}
    for source in spec.sources:
        for item in read_source(source):
            if not isinstance(item, Record):
                continue
            rec = render_captions(item)
            if not isinstance(rec, Record):
                continue
            props = source.split_proportions or spec.options.split_proportions
            rec = replace(rec, split=split_of(rec, props))
            by_split.setdefault(rec.split, []).append(rec)
    samples = rejects = 0
    size = spec.options.shard_size
    shards = [
        (split, i, sorted(records, key=lambda r: r.key)[i : i + size])
        for split, records in sorted(by_split.items())
        for i in range(0, len(records), size)
    ]
    for n, (split, i, chunk) in enumerate(shards):
        if part is not None and n % workers != part:
            continue
        writer = ShardWriter(layout, split, shard_name(i // size), spec.options.formats)
        for rec in chunk:
            data = read_audio_bytes(rec.audio, max_bytes=spec.options.sample.max_file_bytes)
            try:
                sample = process_sample(rec, data, spec.options.sample)
            except RejectError:
                rejects += 1
                continue
            writer.add(sample)
            samples += 1
        writer.close()
    return {"samples": samples, "rejects": rejects, "worker_peak_mb": vm_hwm_mb()}


def child_laion(manifest: str, out: str, workers: int) -> dict[str, Any]:
    from bench.laion_way import laion_way

    samples, failures = laion_way(manifest, out, workers=workers)
    return {"samples": samples, "rejects": failures}  # the ffmpeg processes: measured from outside


# ---------------------------------------------------------------------------------------------
# Measuring a child from the outside


@dataclass
class Measurement:
    config: str
    clips: int
    audio_s: float  # nominal audio duration of the clips processed
    wall_s: float
    cpu_s: float
    samples: int
    peak_total_mb: float  # whole process tree, sum of RSS, sampled every 50 ms
    peak_worker_mb: float  # largest worker process (its VmHWM)
    workers: int  # worker processes running at a time

    @property
    def per_cpu(self) -> float:
        return self.audio_s / self.cpu_s

    @property
    def per_wall(self) -> float:
        return self.audio_s / self.wall_s


def _is_worker(proc: Any, marker: str) -> bool:
    """The process itself, not the ``sh -c`` that Beam starts it through: the marker is its program
    name (ffmpeg) or one of its own arguments (``-m apache_beam.runners.worker.sdk_worker_main``)."""
    cmd = proc.cmdline()
    return bool(cmd) and (os.path.basename(cmd[0]) == marker or marker in cmd[1:])


class TreeSampler(threading.Thread):
    """Polls a process tree: the peak of its summed RSS, the most worker processes alive at once, and
    the largest worker's own peak (VmHWM, exact however short the peak: the kernel keeps it)."""

    def __init__(self, pid: int, worker_marker: str, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.marker, self.interval = pid, worker_marker, interval
        self.stop_event = threading.Event()
        self.peak_total = 0.0
        self.max_workers = 0
        self.peak_worker = 0.0

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop_event.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total, workers = 0.0, 0
            for p in procs:
                try:
                    total += p.memory_info().rss / 2**20
                    if _is_worker(p, self.marker):
                        workers += 1
                        self.peak_worker = max(self.peak_worker, vm_hwm_mb(p.pid))
                except psutil.Error:
                    continue
            self.peak_total = max(self.peak_total, total)
            self.max_workers = max(self.max_workers, workers)
            self.stop_event.wait(self.interval)


def measure(config: str, clips: int, argv: list[str], worker_marker: str, audio_s: float) -> Measurement:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_pipeline", *argv],
        cwd=REPO,
        env=_child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    sampler = TreeSampler(proc.pid, worker_marker)
    sampler.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop_event.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{config}: the child process exited with status {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    # Real recordings may hold a silent or broken file: a reject (or LAION's failure) still accounts
    # for its clip, and the clip's cost is in the figure as it is in a real run.
    if result["samples"] + result["rejects"] != clips or result["samples"] == 0:
        raise RuntimeError(f"{config}: {result['samples']} samples + {result['rejects']} from {clips} clips")
    return Measurement(
        config=config,
        clips=clips,
        audio_s=audio_s,
        wall_s=wall,
        cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        samples=result["samples"],
        peak_total_mb=sampler.peak_total,
        peak_worker_mb=max(sampler.peak_worker, result.get("worker_peak_mb", 0.0)),
        workers=max(sampler.max_workers, 1),
    )


def run_config(config: str, corpus: str, workdir: str, clips: int, workers: int) -> Measurement:
    out = os.path.join(workdir, f"out-{config}-{clips}")
    shutil.rmtree(out, ignore_errors=True)  # a leftover output would let the pipeline skip its shards
    kind, _, setting = config.partition("-")
    spec = os.path.join(corpus, f"spec-{clips}-{setting}.yaml")
    if kind == "laion":
        argv, marker = ["--child", "laion", manifest_path(corpus, clips), out], "ffmpeg"
    elif kind == "pipeline":
        argv, marker = ["--child", "pipeline", spec, out], "apache_beam.runners.worker.sdk_worker_main"
    else:
        argv, marker = ["--child", "floor", spec, out], "--part"
    argv += ["--workers", str(workers)]
    try:
        return measure(config, clips, argv, marker, corpus_seconds(corpus, clips))
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The other columns


def k2c_section(timed_clips: int) -> list[str]:
    """K2C captions/s with and without keyword-set dedup: bench/bench_k2c.py (the K2C bench) in a child
    process, its report passed through, plus the CPU time it took."""
    script = os.path.join(REPO, "bench", "bench_k2c.py")
    if not os.path.exists(script):
        return ["  K2C: SKIPPED, bench/bench_k2c.py is not in this checkout"]
    argv = [sys.executable, script, "--clips", "20000", "--timed-clips", str(timed_clips)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=_child_env())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [f"  K2C: FAILED (bench/bench_k2c.py exited with {proc.returncode}: {tail[0]})"]
    lines = [f"  {line}" for line in proc.stdout.strip().splitlines()]
    lines.append(
        f"  (bench/bench_k2c.py --timed-clips {timed_clips}: {cpu:.1f} CPU s, {wall:.1f} s wall in all)"
    )
    return lines


def _child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}, {platform.system()}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class Fit:
    """cpu = startup + audio / rate, through the runs at the two sizes."""

    startup_s: float
    rate: float  # audio seconds per CPU-second, steady state
    wall_rate: float  # audio seconds per wall-second, steady state


def _median(ms: Sequence[Measurement]) -> Measurement:
    """Median CPU and median wall (each its own measurement); peaks are the largest seen."""
    mid = sorted(ms, key=lambda m: m.cpu_s)[len(ms) // 2]
    return replace(
        mid,
        cpu_s=statistics.median(m.cpu_s for m in ms),
        wall_s=statistics.median(m.wall_s for m in ms),
        peak_total_mb=max(m.peak_total_mb for m in ms),
        peak_worker_mb=max(m.peak_worker_mb for m in ms),
    )


def fit(small: Measurement, big: Measurement) -> Fit:
    d_audio = big.audio_s - small.audio_s
    d_cpu = big.cpu_s - small.cpu_s
    d_wall = big.wall_s - small.wall_s
    rate = d_audio / d_cpu if d_cpu > 0 else float("inf")
    return Fit(
        startup_s=small.cpu_s - small.audio_s / rate,
        rate=rate,
        wall_rate=d_audio / d_wall if d_wall > 0 else float("inf"),
    )


def repeat_fits(runs: dict[int, list[Measurement]], sizes: tuple[int, int]) -> list[Fit]:
    """One fit per repeat, from the two sizes' runs of that repeat (run minutes apart, so a change
    in the machine's load between repeats does not leak into the difference)."""
    return [fit(a, b) for a, b in zip(runs[sizes[0]], runs[sizes[1]], strict=True)]


def median_fit(fits: Sequence[Fit]) -> Fit:
    return Fit(
        startup_s=statistics.median(f.startup_s for f in fits),
        rate=statistics.median(f.rate for f in fits),
        wall_rate=statistics.median(f.wall_rate for f in fits),
    )


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, first column left-aligned, the others right-aligned, padded to line up."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    )
    return [fmt(header), rule, *(fmt(r) for r in rows)]


def throughput_table(
    res: dict[str, dict[int, Measurement]], fits: dict[str, Fit], sizes: tuple[int, int]
) -> list[str]:
    n, big = sizes
    header = [
        "configuration",
        "steady x/CPU-s",
        "steady x/wall-s",
        "start-up CPU s",
        f"{big} clips: x/CPU-s",
        "x/wall-s",
        "clips/s",
        "CPU s",
        "wall s",
        f"{n} clips: x/CPU-s",
        "CPU s",
    ]
    rows = []
    for config in CONFIGS:
        if config in res:
            s, b, f = res[config][n], res[config][big], fits[config]
            rows.append(
                [
                    LABELS[config],
                    f"{f.rate:.0f}x",
                    f"{f.wall_rate:.0f}x",
                    f"{f.startup_s:.1f}",
                    f"{b.per_cpu:.0f}x",
                    f"{b.per_wall:.0f}x",
                    f"{b.samples / b.wall_s:.2f}",
                    f"{b.cpu_s:.1f}",
                    f"{b.wall_s:.1f}",
                    f"{s.per_cpu:.0f}x",
                    f"{s.cpu_s:.1f}",
                ]
            )
    return md_table(header, rows)


def memory_table(res: dict[str, dict[int, Measurement]], sizes: tuple[int, int]) -> list[str]:
    n, big = sizes
    header = [
        "configuration",
        "workers",
        f"peak per worker MB, {n} clips",
        f"{big} clips",
        f"peak whole run MB, {n} clips",
        f"{big} clips",
    ]
    rows = []
    for config in CONFIGS:
        if config in res:
            s, b = res[config][n], res[config][big]
            rows.append(
                [
                    LABELS[config],
                    str(b.workers),
                    f"{s.peak_worker_mb:.0f}",
                    f"{b.peak_worker_mb:.0f}",
                    f"{s.peak_total_mb:.0f}",
                    f"{b.peak_total_mb:.0f}",
                ]
            )
    return md_table(header, rows)


def _spread(values: Sequence[float], fmt: str) -> str:
    return ", ".join(format(v, fmt) for v in values)


def verdicts(
    res: dict[str, dict[int, Measurement]],
    per_repeat: dict[str, list[Fit]],
    views: list[ViewsTiming],
    big: int,
) -> list[str]:
    """The targets, each from ratios paired within a repeat (same minutes, same load), median first."""
    out = []

    def line(ok: bool, text: str) -> None:
        out.append(f"  [{'ok' if ok else 'MISSED'}] {text}")

    if "laion" in per_repeat and "pipeline-lfl" in per_repeat:
        ratios = [
            o.rate / t.rate for o, t in zip(per_repeat["pipeline-lfl"], per_repeat["laion"], strict=True)
        ]
        steady = statistics.median(ratios)
        whole = res["pipeline-lfl"][big].per_cpu / res["laion"][big].per_cpu
        line(
            whole >= 2.5,
            f"like for like: {whole:.2f}x LAION's way per CPU-second over the whole {big}-clip run, "
            f"start-up included (steady state: {steady:.2f}x; per repeat: {_spread(ratios, '.2f')}); "
            "target >= 2.5x",
        )
    elif "pipeline-lfl" in per_repeat:
        out.append("  [skipped] like for like vs LAION's way: no LAION column (see above)")
    if "pipeline-all" in res:
        whole_x = res["pipeline-all"][big].per_cpu
        line(
            whole_x >= 250,
            f"everything on: {whole_x:.0f}x realtime per CPU-second over the whole {big}-clip run, start-up "
            "included; target >= 250x",
        )
    if "pipeline-all" in per_repeat and "floor-all" in per_repeat:
        overs = [
            f.rate / p.rate - 1
            for p, f in zip(per_repeat["pipeline-all"], per_repeat["floor-all"], strict=True)
        ]
        steady = statistics.median(overs)
        whole = res["pipeline-all"][big].cpu_s / res["floor-all"][big].cpu_s - 1
        line(
            steady <= 0.25,
            f"everything on: {steady * 100:+.1f} % CPU over the bare loop in steady state (per repeat: "
            f"{_spread([o * 100 for o in overs], '+.1f')} %); {whole * 100:+.1f} % over the whole "
            f"{big}-clip run; target <= +25 %",
        )
    if views:
        worst = min(v.ours_x for v in views)
        line(worst >= 1500, f"views alone: {worst:.0f}x realtime per core at worst; target >= 1500x")
    return out


def projection(f: Fit, label: str) -> list[str]:
    """Worker-hours, workers and Dataflow cost for 10 000 h of audio at the steady-state rate."""
    vcpu_hours = PROJECT_HOURS / f.rate
    worker_hours = vcpu_hours / WORKER_VCPUS
    per_worker_hour = (
        WORKER_VCPUS * DATAFLOW_VCPU_HOUR
        + WORKER_GB * DATAFLOW_GB_HOUR
        + WORKER_DISK_GB * DATAFLOW_PD_GB_HOUR
    )
    cost = worker_hours * per_worker_hour
    lines = [
        f"  {PROJECT_PAIRS:,} pairs, {PROJECT_HOURS:,.0f} h of audio, at {f.rate:.0f}x realtime "
        f"per CPU-second ({label}, steady state):",
        f"    {vcpu_hours:,.1f} vCPU-hours = {worker_hours:,.1f} worker-hours of {WORKER_VCPUS}-vCPU workers "
        f"(n1-standard-4: {WORKER_GB:g} GB, {WORKER_DISK_GB:g} GB disk)",
        "    workers needed to finish in " + ", ".join(f"{h} h: {worker_hours / h:,.1f}" for h in (1, 4, 24)),
        f"    Dataflow at ${DATAFLOW_VCPU_HOUR}/vCPU-h + ${DATAFLOW_GB_HOUR}/GB-h + "
        f"${DATAFLOW_PD_GB_HOUR}/GB-h disk = ${per_worker_hour:.4f} per worker-hour: ${cost:,.2f} of compute",
        f"    (shuffle carries metadata only, under 1 KB a clip: {PROJECT_PAIRS * 1e-6:.1f} GB at "
        f"${DATAFLOW_SHUFFLE_GB}/GB; reading sources and writing shards to GCS is billed by Cloud Storage)",
        f"    prices: {PRICES_NOTE}",
    ]
    return lines


# ---------------------------------------------------------------------------------------------


def prepare(workdir: str, sizes: tuple[int, int], shard_size: int, corpus: str | None = None) -> str:
    options: dict[str, Any] = {}
    if corpus is None:
        corpus = build_bench_corpus(os.path.join(workdir, "corpora"), max(sizes))
    else:
        # LAION's way converts whole files: the pipeline decodes as much (default stop: 300 s)
        options["max_duration_s"] = whole_file_cap(corpus)
    for clips in sizes:
        write_spec(corpus, f"spec-{clips}-all.yaml", clips=clips, shard_size=shard_size, **options)
        write_spec(
            corpus, f"spec-{clips}-lfl.yaml", clips=clips, shard_size=shard_size, **LIKE_FOR_LIKE, **options
        )
    return corpus


def folder_info(corpus: str, clips: int) -> str:
    rows = manifest_rows(corpus, clips)
    kinds = Counter(r["audio"].rsplit(".", 1)[-1] for r in rows)
    seconds = [float(r["seconds"]) for r in rows]
    return (
        f"{sum(seconds) / 60:.1f} min of audio (real recordings, {min(seconds):.1f}-{max(seconds):.1f} s); "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    )


def corpus_info(clips: int) -> str:
    plan = plan_bench(clips)
    minutes = sum(c.seconds for c in plan) / 60
    fmts = Counter(c.fmt for c in plan)
    rates = sorted({c.rate for c in plan})
    return (
        f"{minutes:.1f} min of audio; "
        + ", ".join(f"{k} {v}" for k, v in sorted(fmts.items()))
        + f"; {rates[0] / 1000:g}-{rates[-1] / 1000:g} kHz; mono and stereo"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clapcorpus bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--clips", type=int, default=60, help="N: the small corpus size; the large one is 4N (default 60)"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="runs per configuration and size; medians are reported"
    )
    p.add_argument(
        "--shard-size",
        type=int,
        default=32,
        help="samples per shard (default 32: full shards at both sizes, so per-worker memory compares)",
    )
    p.add_argument(
        "--workdir", default=os.path.join(REPO, "out", "bench"), help="corpus cache and scratch outputs"
    )
    p.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS)
    )
    p.add_argument(
        "--k2c-clips", type=int, default=500, help="clips captioned by the K2C bench, each way (0: skip K2C)"
    )
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes at a time for LAION's way and the bare loop (default: one per core, as the pipeline)",
    )
    p.add_argument("--part", type=int, help=argparse.SUPPRESS)
    p.add_argument(
        "--corpus",
        metavar="DIR",
        help="run every configuration on the audio files under DIR (real recordings; copied into "
        "--workdir) instead of the synthetic corpus: the small size is a quarter of the files, the large "
        "one all of them (--clips is ignored)",
    )
    args = p.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "pipeline":
            result = child_pipeline(*rest)
        elif kind == "floor":
            result = child_floor(*rest, workers=args.workers, part=args.part)
        else:
            result = child_laion(*rest, workers=args.workers)
        print(json.dumps(result))
        return 0

    try:
        import psutil  # noqa: F401
    except ImportError:
        print("clapcorpus bench needs psutil: pip install -e .[bench]", file=sys.stderr)
        return 2
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        p.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    folder = None
    if args.corpus:
        folder = build_folder_corpus(args.corpus, os.path.join(args.workdir, "corpora"))
        quarter = len(manifest_rows(folder)) // 4
        if quarter < 1:
            p.error(f"--corpus {args.corpus}: needs at least 4 audio files")
        sizes = (quarter, 4 * quarter)
    else:
        sizes = (args.clips, 4 * args.clips)
    print(f"machine: {machine()}")
    print(f"load average at start: {load()}")
    from bench.laion_way import ffmpeg_available

    missing = ffmpeg_available()
    if "laion" in configs and missing:
        print(f"LAION's way: SKIPPED, {missing}")
        configs.remove("laion")
    corpus = prepare(args.workdir, sizes, args.shard_size, folder)
    for clips in sizes:
        info = folder_info(corpus, clips) if folder else corpus_info(clips)
        print(f"bench corpus, {clips} clips: {info}")

    runs: dict[str, dict[int, list[Measurement]]] = {c: {n: [] for n in sizes} for c in configs}
    for r in range(args.repeats):
        for clips in sizes:
            for config in configs:
                m = run_config(config, corpus, args.workdir, clips, args.workers)
                runs[config][clips].append(m)
                print(
                    f"  run {r + 1}/{args.repeats} {clips:>4} clips {config:<13} CPU {m.cpu_s:7.2f} s  "
                    f"wall {m.wall_s:7.2f} s  {m.per_cpu:5.0f}x/CPU-s  load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    res = {c: {n: _median(ms) for n, ms in by_n.items()} for c, by_n in runs.items()}
    per_repeat = {c: repeat_fits(by_n, sizes) for c, by_n in runs.items()}
    fits = {c: median_fit(fs) for c, fs in per_repeat.items()}
    from bench.bench_views import measure

    views = measure(30)
    k2c_lines = k2c_section(args.k2c_clips) if args.k2c_clips > 0 else ["  K2C: skipped (--k2c-clips 0)"]

    print(f"\nmachine: {machine()}; load average at end: {load()}")
    print(f"medians of {args.repeats} runs; shard size {args.shard_size}; x = seconds of audio per second")
    print(
        "\nthroughput (steady state: from the difference between the two sizes within each repeat, median"
        " over repeats; start-up: the rest; whole-run columns: medians)"
    )
    print("\n".join(throughput_table(res, fits, sizes)))
    print("\npeak memory (RSS; a worker is a Beam SDK worker process, an ffmpeg process, or the bare loop)")
    print("\n".join(memory_table(res, sizes)))
    print("\nviews alone (compute_views, one thread; bench/bench_views.py), torchaudio's mel + dB beside it:")
    for v in views:
        print(
            f"  {v.seconds:.0f} s clip ({v.mode}): {v.ours_x:.0f}x realtime per core "
            f"(torchaudio {v.torchaudio_x:.0f}x)"
        )
    print("\nkeyword-to-caption:")
    print("\n".join(k2c_lines))
    if "pipeline-all" in fits:
        print("\nprojection:")
        print("\n".join(projection(fits["pipeline-all"], LABELS["pipeline-all"])))
    print("\ntargets:")
    print("\n".join(verdicts(res, per_repeat, views, sizes[1])))
    if "pipeline-all" in res:
        s, b = res["pipeline-all"][sizes[0]], res["pipeline-all"][sizes[1]]
        growth = b.peak_worker_mb / s.peak_worker_mb - 1 if s.peak_worker_mb else float("nan")
        ok = growth <= 0.10
        print(
            f"  [{'ok' if ok else 'MISSED'}] memory: peak per pipeline worker {s.peak_worker_mb:.0f} MB at "
            f"{sizes[0]} clips, {b.peak_worker_mb:.0f} MB at {sizes[1]} ({growth * 100:+.1f} %); "
            "target: flat (within 10 %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
