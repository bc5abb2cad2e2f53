"""Where the CPU goes on a folder of recordings, file by file, by clip length: LAION's way (one
ffmpeg CLI process per file) against our per-sample steps, in one process, no Beam.

``clapcorpus bench --corpus DIR`` gives whole runs; this splits them: the ffmpeg CLI pays a process
start per file (tens of milliseconds of CPU here), which dominates short clips, while on long
recordings both sides spend their time in the same FFmpeg decoder and FLAC encoder, so no in-process
design can be much faster there. The table shows how far each length class is from that floor.

Run from the repository root: ``.venv/bin/python -m bench.bench_breakdown DIR`` (needs ``pip install
-e .[bench]`` and the ``ffmpeg`` binary).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from bench.corpus import build_folder_corpus, corpus_files, whole_file_cap
from bench.laion_way import ffmpeg_available, to_flac

# Clip-length classes, upper bounds in seconds.
CLASSES = ((10.0, "up to 10 s"), (60.0, "10 s to 1 min"), (float("inf"), "over 1 min"))
STEPS = ("decode", "quantise + level + digest", "FLAC", "views")


@dataclass
class Tally:
    files: int = 0
    audio_s: float = 0.0
    laion_s: float = 0.0
    steps: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))

    @property
    def like_for_like_s(self) -> float:
        return sum(v for k, v in self.steps.items() if k != "views")


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass(frozen=True)
class FileCost:
    seconds: float
    laion_s: float
    like_for_like_s: float
    everything_s: float  # like for like + views


def breakdown(folder: str) -> tuple[dict[str, Tally], list[FileCost]]:
    from clap_corpus.core.audio import quantize_int16
    from clap_corpus.core.hashing import audio_digest
    from clap_corpus.transforms.flac import encode_flac
    from clap_corpus.transforms.sample import SampleOptions, decode_with_options, measure_level
    from clap_corpus.transforms.views import one_thread, plan_views, views_from_int16

    one_thread()  # as the pipeline's workers do
    files = corpus_files(os.path.join(folder, "raw", "manifest.jsonl"))
    options = SampleOptions(max_duration_s=whole_file_cap(folder))
    tallies: dict[str, Tally] = defaultdict(Tally)
    costs: list[FileCost] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, row in files:
            with open(path, "rb") as f:
                data = f.read()
            t0 = _self_cpu()
            decoded = decode_with_options(data, options)
            t1 = _self_cpu()
            pcm = quantize_int16(decoded.samples)
            measure_level(pcm)
            audio_digest(pcm)
            t2 = _self_cpu()
            encode_flac(pcm)
            t3 = _self_cpu()
            views_from_int16(pcm, plan_views(len(pcm), row["id"]))
            t4 = _self_cpu()
            times = dict(zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True))
            c0 = _children_cpu()
            to_flac(path, os.path.join(tmp, "out.flac"))
            laion = _children_cpu() - c0
            lfl = times["decode"] + times["quantise + level + digest"] + times["FLAC"]
            costs.append(FileCost(decoded.duration_s, laion, lfl, lfl + times["views"]))
            label = next(name for bound, name in CLASSES if decoded.duration_s <= bound)
            for tally in (tallies[label], tallies["all"]):
                tally.files += 1
                tally.audio_s += decoded.duration_s
                tally.laion_s += laion
                for k, v in times.items():
                    tally.steps[k] += v
    return tallies, costs


def per_clip_and_second(costs: list[FileCost], column: str) -> tuple[float, float]:
    """Least squares ``cpu = a + b * seconds`` over the files: (a, per clip; b, per audio second).

    A corpus's cost is not one rate per audio hour: a process start, a container open and the views
    (always ten seconds' worth) are paid per clip, codec work per second. Two numbers carry a
    measurement on one corpus over to another with a different clip count and length."""
    x = np.array([[1.0, c.seconds] for c in costs])
    y = np.array([getattr(c, column) for c in costs])
    (a, b), *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(a), float(b)


def projection(costs: list[FileCost], clips: int, hours: float) -> list[str]:
    lines = [f"projected to {clips:,} clips, {hours:,.0f} h of audio (per clip + per second fits):"]
    for column, label in (
        ("laion_s", "LAION's way"),
        ("like_for_like_s", "ours, like for like"),
        ("everything_s", "ours, with views"),
    ):
        a, b = per_clip_and_second(costs, column)
        cpu = clips * a + hours * 3600 * b
        lines.append(
            f"  {label}: {a * 1000:.1f} ms per clip + {b * 1000:.2f} ms per audio second = "
            f"{cpu / 3600:,.0f} vCPU-hours ({hours * 3600 / cpu:.0f}x realtime per CPU-second)"
        )
    return lines


def report(tallies: dict[str, Tally]) -> list[str]:
    header = (
        "| clips | files | audio min | LAION's way CPU s | ours, like for like CPU s | ratio | "
        + " | ".join(f"{s} s" for s in STEPS)
        + " | ours, with views: x realtime per CPU-s |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in [n for _, n in CLASSES] + ["all"]:
        t = tallies.get(name)
        if t is None:
            continue
        ours = t.like_for_like_s
        lines.append(
            f"| {name} | {t.files} | {t.audio_s / 60:.1f} | {t.laion_s:.1f} | {ours:.1f} | "
            f"{t.laion_s / ours:.2f}x | "
            + " | ".join(f"{t.steps[s]:.1f}" for s in STEPS)
            + f" | {t.audio_s / (ours + t.steps['views']):.0f}x |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", metavar="DIR", help="a folder of audio files (as for clapcorpus bench --corpus)")
    p.add_argument("--workdir", default=os.path.join("out", "bench"), help="where the corpus copy is cached")
    p.add_argument(
        "--clips", type=int, default=2_541_614, help="projected corpus: clips (LAION-CLAP's 2.5 M)"
    )
    p.add_argument("--hours", type=float, default=10_000.0, help="projected corpus: hours of audio")
    args = p.parse_args(argv)
    missing = ffmpeg_available()
    if missing:
        print(f"needs LAION's way: {missing}", file=sys.stderr)
        return 2
    folder = build_folder_corpus(args.corpus, os.path.join(args.workdir, "corpora"))
    print("per-file CPU seconds, one process, no Beam (ffmpeg CLI: its process's CPU, start-up included)")
    tallies, costs = breakdown(folder)
    print("\n".join(report(tallies)))
    print("\n".join(projection(costs, args.clips, args.hours)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
