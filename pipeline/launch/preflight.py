"""The start check: before any worker starts, every source must find the audio its rows name.

A wrong ``audio_root`` otherwise builds a corpus of zero samples and exits 0, after a Dataflow job
has been paid for. For each source the check runs the source's adapter in this process (what
``ReadManifests`` will do), takes a deterministic sample of its rows and checks that their audio
files exist, through Beam FileSystems, so a ``gs://`` root costs a bounded number of requests:

- the sample is the first ``start_check_rows / 2`` rows, then rows chosen by a stable hash of their
  position (one in :data:`SAMPLE_ONE_IN`), until ``start_check_rows`` rows are taken or
  ``start_check_rows x`` :data:`SCAN_FACTOR` rows are read: reading stops there, so a huge manifest
  is not read to its end (adapters that load their whole metadata first still do);
- a sampled row counts as found when it became a record whose file exists, and as not found when it
  became a record whose file does not exist or a reject for its audio path (``missing_audio`` from
  adapters that list the audio root, ``outside_root`` ...). Rows rejected for other reasons (no
  caption, malformed) say nothing about the audio and are left out of the fraction.

A source fails when fewer than ``min_audio_found`` of its sampled rows are found, or when no sampled
row names audio at all; a source whose manifest has no rows fails unless ``allow_empty``. Every
failing source gets one line, together with sources whose manifest file does not exist.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clap_corpus.core.audio_ref import AudioRef, RemoteFile, is_web_url
from clap_corpus.core.hashing import stable_hash64
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import PATH_CODES
from clap_corpus.manifests.registry import read_source
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.spec.corpus import CorpusSpec, SourceCheck, SpecError, load_spec
from clap_corpus.transforms import storage

SAMPLE_ONE_IN = 1000
SCAN_FACTOR = 500
EXISTS_THREADS = 16  # existence checks on gs:// are one request each: overlap their latency

T = TypeVar("T")


class StartCheckError(SpecError):
    """One or more sources do not find their data; one line per source."""


@dataclass
class SourceCheckResult:
    source: str
    audio_root: str
    check: SourceCheck
    rows_read: int = 0
    sampled: int = 0
    found: int = 0
    not_found: int = 0
    other_rejects: Counter[str] = field(default_factory=Counter)
    path_rejects: Counter[str] = field(default_factory=Counter)
    example: str = ""  # one missing file (or the reason its row was refused)
    other_example: str = ""  # the reason of one reject that is not about the audio path
    seconds: float = 0.0

    @property
    def fraction(self) -> float | None:
        named = self.found + self.not_found
        return self.found / named if named else None

    def problem(self) -> str:
        """Why this source stops the run ("" when it passes)."""
        where = f"source '{self.source}' (audio_root {self.audio_root})"
        if self.sampled == 0:
            if self.check.allow_empty:
                return ""
            return f"{where}: the manifest yields no rows (allow_empty: true if that is expected)"
        fraction = self.fraction
        if fraction is None:
            codes = ", ".join(f"{k} {v}" for k, v in sorted(self.other_rejects.items()))
            if self.check.allow_empty:
                return ""
            example = f"; e.g. {self.other_example}" if self.other_example else ""
            return (
                f"{where}: none of {self.sampled} sampled rows names an audio file (rejects: {codes})"
                + example
            )
        minimum = self.check.min_audio_found
        assert minimum is not None  # CorpusSpec.check() fills it in from options.min_audio_found
        if fraction >= minimum:
            return ""
        named = self.found + self.not_found
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.path_rejects.items()))
        return (
            f"{where}: audio found for {self.found} of {named} sampled rows ({fraction:.0%}, "
            f"min_audio_found is {minimum:g})"
            + (f"; rejects: {detail}" if detail else "")
            + f"; e.g. {self.example}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "sampled": self.sampled,
            "found": self.found,
            "not_found": self.not_found,
            "path_rejects": dict(sorted(self.path_rejects.items())),
            "other_rejects": dict(sorted(self.other_rejects.items())),
            "min_audio_found": self.check.min_audio_found,
            "allow_empty": self.check.allow_empty,
            "example": self.example,
            "other_example": self.other_example,
            "seconds": round(self.seconds, 3),
            "problem": self.problem(),
        }


def sample_positions(items: Iterable[T], size: int, salt: str) -> Iterator[T]:
    """A deterministic sample of ``items``: the first ``size // 2``, then one in
    :data:`SAMPLE_ONE_IN` by a stable hash of the position, stopping after ``size`` items or
    ``size * SCAN_FACTOR`` items read (the rest is never pulled from the iterator)."""
    head = (size + 1) // 2
    taken = 0
    for i, item in enumerate(itertools.islice(items, size * SCAN_FACTOR)):
        if i < head or stable_hash64(str(i), salt=salt) % SAMPLE_ONE_IN == 0:
            yield item
            taken += 1
            if taken >= size:
                return


def _lookup(ref: AudioRef) -> str:
    """Why ``ref`` cannot be read ("missing", or the storage error), or "" when the file holding it
    (the audio file, the dataset file, the archive) exists."""
    if isinstance(ref, RemoteFile) and is_web_url(ref.url):
        return ""  # fetched by the fetch stage, whose status table says what a URL gave
    try:
        return "" if storage.exists(ref.storage_path) else "missing"
    except Exception as e:  # an unreachable bucket or a refused request: the message says which
        return f"unreadable ({type(e).__name__}: {e})"


def check_source(source: SourceSpec, check: SourceCheck, size: int) -> SourceCheckResult:
    """Sample ``size`` rows of ``source`` and check that their audio exists."""
    t0 = time.monotonic()
    result = SourceCheckResult(source.name, source.audio_root, check)
    counted = _Counted(read_source(source))
    records: list[Record] = []
    for item in sample_positions(counted, size, salt="start-check"):
        result.sampled += 1
        if isinstance(item, Reject):
            if item.code in PATH_CODES:
                result.path_rejects[item.code] += 1
                result.not_found += 1
                if not result.example:
                    result.example = f"row {item.row}: {item.reason}"
            else:
                result.other_rejects[item.code] += 1
                if not result.other_example:
                    where = f"row {item.row}" if item.row is not None else (item.path or "the source")
                    result.other_example = f"{where}: {item.code}: {item.reason}"
        else:
            records.append(item)
    result.rows_read = counted.n
    with ThreadPoolExecutor(EXISTS_THREADS) as pool:
        lookups = list(pool.map(_lookup, [r.audio for r in records]))
    named_file = False  # a file that is not there names the problem better than a refused row
    for record, why in zip(records, lookups, strict=True):
        if not why:
            result.found += 1
            continue
        result.not_found += 1
        if not named_file:
            result.example = f"{why} {record.audio} (row {record.row})"
            named_file = True
    result.seconds = time.monotonic() - t0
    return result


class _Counted:
    """Counts what is pulled from an iterator (rows read before the sample was complete)."""

    def __init__(self, items: Iterable[Any]):
        self.items, self.n = iter(items), 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.n += 1
            yield item


def check_spec(
    spec: CorpusSpec, *, missing_manifests: Iterable[tuple[str, str]] = ()
) -> dict[str, SourceCheckResult]:
    """Run the start check on every source of ``spec``; raise :class:`StartCheckError` naming every
    source that fails (and every source in ``missing_manifests``: (name, message) from
    :func:`~clap_corpus.pipeline.spec.corpus.load_spec`). Returns the per-source results when all pass."""
    missing = dict(missing_manifests)
    size = spec.options.start_check_rows
    results: dict[str, SourceCheckResult] = {}
    lines: list[str] = []
    for source in spec.sources:
        if source.name in missing:
            lines.append(missing[source.name])
            continue
        if size == 0:
            continue
        result = check_source(source, spec.check(source.name), size)
        results[source.name] = result
        problem = result.problem()
        if problem:
            lines.append(f"{spec.path}: {problem}")
    if lines:
        raise StartCheckError(
            "\n".join(lines) + "\n(the start check samples each source's rows; "
            "min_audio_found and allow_empty per source, start_check_rows under options)"
        )
    return results


def load_checked_spec(
    path: str, *, start_check: bool = True
) -> tuple[CorpusSpec, dict[str, SourceCheckResult]]:
    """:func:`~clap_corpus.pipeline.spec.corpus.load_spec`, then the start check: one error names every
    source whose manifest is missing or whose audio is not found. Returns the spec and the check's results."""
    if not start_check:
        return load_spec(path), {}
    missing: list[tuple[str, str]] = []
    spec = load_spec(path, missing=missing)
    return spec, check_spec(spec, missing_manifests=missing)


def format_results(results: dict[str, SourceCheckResult]) -> str:
    """One line: audio found per source, of its sampled rows that name audio."""
    parts = [f"{name} {r.found}/{r.found + r.not_found}" for name, r in results.items()]
    return "start check (audio found / sampled rows naming audio): " + ", ".join(parts)
