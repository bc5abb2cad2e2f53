"""Progress of a running build: the plan (records per split) and a live line polled from the stats files.

The graph writes ``<out>/plan.json`` (pipeline/outputs/plan.py) as soon as every record has its split
(the moment shard boundaries are cut), and every finished shard writes its stats file. A background
thread in the launcher lists the stats files every few seconds and prints samples, rate and ETA. It
reads the output folder through :mod:`transforms.storage`, so it works the same for local folders and gs://
outputs; on Dataflow the same figures are also Beam counters (namespace ``clapcorpus``) on the job
page: ``planned_records``, ``samples``, ``rejects``, ``shards_done``, ``audio_milliseconds``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from clap_corpus.core.layout import SHARD_NAME_RE, Layout
from clap_corpus.pipeline.outputs.plan import read_plan
from clap_corpus.transforms import storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    elapsed_s: float
    planned_records: int | None  # None until plan.json exists
    planned_shards: int | None
    records_done: int  # samples + rejects of finished shards
    samples: int
    shards_done: int
    audio_seconds: float
    rate: float  # records per second finished by this run (shards kept from an earlier run excluded)

    @property
    def fraction(self) -> float | None:
        if not self.planned_records:
            return None
        return min(1.0, self.records_done / self.planned_records)

    @property
    def eta_s(self) -> float | None:
        if self.planned_records is None or self.rate <= 0:
            return None
        return max(0.0, self.planned_records - self.records_done) / self.rate

    def line(self) -> str:
        elapsed = f"elapsed {format_duration(self.elapsed_s)}"
        if self.planned_records is None:
            return f"reading manifests, no shard plan yet | {elapsed}"
        parts = [
            f"{self.records_done:,}/{self.planned_records:,} records ({100 * (self.fraction or 0):.1f}%)",
            f"{self.samples:,} samples",
            f"{self.shards_done}/{self.planned_shards} shards",
            f"{self.rate:.1f} records/s",
            f"{self.audio_seconds / 3600:.2f} h audio",
            elapsed,
        ]
        eta = self.eta_s
        if eta is not None and self.records_done < self.planned_records:
            parts.append(f"ETA {format_duration(eta)}")
        return " | ".join(parts)


def format_duration(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressMonitor:
    """Polls ``<out>/stats`` and prints one progress line.

    On a terminal the line is rewritten in place (carriage return); on anything else (a log file,
    CI, a pipe) a plain line is printed at most every ``plain_interval_s`` and only if it changed, so
    logs get a few lines per hour instead of one per poll.
    """

    def __init__(
        self,
        layout: Layout,
        spec_fingerprint: str,
        *,
        stream: TextIO | None = None,
        interval_s: float = 2.0,
        plain_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.layout, self.spec_fingerprint = layout, spec_fingerprint
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s, self.plain_interval_s = interval_s, plain_interval_s
        self.clock = clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = clock()
        self._seen: dict[str, tuple[int, int, float]] = {}  # stats path -> (records, samples, seconds)
        self._baseline: set[str] | None = None  # stats files already there when we started
        self._plan: dict[str, Any] | None = None
        self._last_line = ""
        self._last_print = float("-inf")
        self._width = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> Progress:
        """One scan of the output folder (cheap: each stats file is read once)."""
        if self._plan is None:
            self._plan = read_plan(self.layout, self.spec_fingerprint)
        pattern = storage.join(self.layout.stats_dir(), "*", "*.json")
        paths = [p for p in storage.match(pattern) if self._in_plan(p)]
        if self._baseline is None:
            self._baseline = set(paths)
        for path in paths:
            if path not in self._seen:
                counts = self._read_counts(path)
                if counts is not None:
                    self._seen[path] = counts
        done = {p: self._seen[p] for p in paths if p in self._seen}
        now_records = sum(c[0] for p, c in done.items() if p not in self._baseline)
        elapsed = self.clock() - self._t0
        plan = self._plan
        return Progress(
            elapsed_s=elapsed,
            planned_records=None if plan is None else int(plan["records"]),
            planned_shards=None if plan is None else int(sum(plan["shards_by_split"].values())),
            records_done=sum(c[0] for c in done.values()),
            samples=sum(c[1] for c in done.values()),
            shards_done=len(done),
            audio_seconds=sum(c[2] for c in done.values()),
            rate=now_records / elapsed if elapsed > 0 else 0.0,
        )

    def _in_plan(self, path: str) -> bool:
        """Only shards this run will write count (a bigger earlier run may have left more)."""
        parts = path.replace("\\", "/").split("/")
        split, name = parts[-2], parts[-1].rsplit(".", 1)[0]
        if not SHARD_NAME_RE.match(name):
            return False
        if self._plan is None:
            return True
        return int(name) < int(self._plan["shards_by_split"].get(split, 0))

    @staticmethod
    def _read_counts(path: str) -> tuple[int, int, float] | None:
        try:
            d = json.loads(storage.read_text(path))
            return (
                int(d["samples"]) + int(d["rejects"]),
                int(d["samples"]),
                float(sum(d.get("audio_seconds_by_source", {}).values())),
            )
        except Exception:  # being replaced right now, or not ours: try again next poll
            return None

    def tick(self, *, force: bool = False) -> Progress | None:
        """Poll and print if due; never raises (progress must not take a run down)."""
        try:
            progress = self.poll()
        except Exception as e:
            log.debug("progress poll failed: %s", e)
            return None
        text = progress.line()
        now = self.clock()
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
            self.stream.flush()
        elif force or (text != self._last_line and now - self._last_print >= self.plain_interval_s):
            self.stream.write(f"progress: {text}\n")
            self.stream.flush()
            self._last_print = now
        self._last_line = text
        return progress

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def start(self) -> ProgressMonitor:
        try:
            self.poll()  # what is already there now is kept from an earlier run: not this run's rate
        except Exception as e:
            log.debug("progress poll failed: %s", e)
        self._thread = threading.Thread(target=self._run, name="clapcorpus-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.tick(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
