"""The run summary (``<out>/summary.json``), declared once: the graph's finalize step writes it through
:class:`RunSummary`, and the launcher, the printed report, the run report, the dataset card and
`clapcorpus report` read it through the same class.

Three rules keep the file what it has always been and let any version's file be read:

- **Keys read are keys written.** A field is dumped only if it was given (``exclude_unset``): the
  writer gives every key a summary of this version has, so a new summary.json holds exactly the
  keys it held as a dict; a summary read back is dumped with the keys it had, no more.
- **Keys added after the first summary have defaults** (``empty_sources``, ``silent``, ``storage``,
  ``distributions``, ...), so a summary written before them still validates and `clapcorpus report`
  redraws its report (the values the readers assumed for a missing key, as they did before).
- **Unknown keys are kept, not refused** (``extra="allow"``): a summary written by another version
  (a key since renamed or dropped, or one added later) is still readable, and dumping it gives its
  keys back unchanged. No reader here looks at them.

Open-ended parts stay plain JSON data: ``stages`` (each stage's own report: fetch, k2c, exclude,
leakage, duplicates, clap), ``distributions`` (pipeline/outputs/distributions.py) and a source's
``native_splits``; the rest is typed.
"""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from clap_corpus.core.encoding import dumps_json
from clap_corpus.transforms import storage


class _SummaryPart(BaseModel):
    # strict: a number where a number belongs (no "3" read as 3); frozen: read-only once built
    model_config = ConfigDict(frozen=True, extra="allow", strict=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The part as JSON data, with the keys it was built or read with (see the module's doc)."""
        return self.model_dump(mode="json", exclude_unset=True)


class Coverage(_SummaryPart):
    """A source held against an official list (options.wanted), as manifests/notes.py counts it, with
    the samples the run kept."""

    wanted: int
    obtained: int
    missing: int
    obtained_pct: float
    samples: int
    not_listed: int = 0  # mirror clips not on the list; summaries before it lack the count


class JoinCounts(_SummaryPart):
    """Records the metadata table (options.join) had a row for, and those it did not."""

    matched: int
    unmatched: int


class SourceSummary(_SummaryPart):
    """One source's accounting: ``inputs = samples + rejects``."""

    inputs: int
    samples: int
    rejects: int
    rejects_before_sharding: dict[str, int]  # reject code -> count, before the shard writers
    rejects_in_shards: int
    hours: float
    expected: int | None  # the spec's expected_count
    accounting_ok: bool
    # produced minus expected: negative when the copy at hand is smaller than the reference
    expected_delta: int | None = None
    # what reading the source found (manifests/notes.py); present only where the source has them
    native_splits: dict[str, int] | None = None
    split_map_unused: list[str] | None = None
    join: JoinCounts | None = None
    coverage: Coverage | None = None

    def notes(self) -> dict[str, Any]:
        """The reading notes in the names manifests/notes.py's printed lines read them by."""
        return self.model_dump(
            mode="json", exclude_unset=True, include={"native_splits", "split_map_unused", "join"}
        )


class SplitSummary(_SummaryPart):
    shards: int
    samples: int
    rejects: int
    hours: float = 0.0  # summaries before per-split hours lack it


class StorageFigures(_SummaryPart):
    """Bytes of one kind of shard file (tar, parquet, views): in all, per sample, per hour of audio."""

    bytes: int
    bytes_per_sample: int | None
    bytes_per_hour: int | None


class OutputsIndex(_SummaryPart):
    """Where the run's files are; a format the run does not write has no entry."""

    summary: str
    rejects: str
    stats: str
    webdataset: dict[str, str] | None = None  # split -> folder
    parquet: dict[str, str] | None = None
    views: dict[str, str] | None = None


class RunSummary(_SummaryPart):
    """summary.json: totals, accounting, per source and per split, stage reports, distributions."""

    corpus: str
    spec: str  # the spec file the run read
    spec_fingerprint: str
    output: str
    inputs: int
    samples: int
    rejects: int
    accounting_ok: bool  # inputs = samples + rejects, overall and for every source
    hours: float
    k2c_captions: int  # samples that ship a keyword-to-caption caption
    truncated: int  # samples cut at max_duration_s
    rejects_by_code: dict[str, int]
    sources: dict[str, SourceSummary]
    splits: dict[str, SplitSummary]
    shards_skipped_as_complete: int
    outputs: OutputsIndex
    # sources that produced nothing although their spec does not say `allow_empty: true`
    empty_sources: list[str] = []
    k2c_skipped_short: int = 0  # K2C caption dropped: clip too short
    incomplete: int = 0  # samples kept with `incomplete: true`
    silent: int = 0  # inputs rejected as too quiet
    storage: dict[str, StorageFigures] = {}  # "tar", "parquet", "views" -> their bytes
    stages: dict[str, dict[str, Any]] = {}  # stage name -> its report
    distributions: dict[str, Any] = {}
    # the launcher's wall-clock time, added after the run (never in the file the graph writes)
    wall_seconds: float | None = None

    @classmethod
    def from_json(cls, doc: Any) -> Self:
        """A summary from its JSON data (json.loads of summary.json, or :meth:`to_json_dict`)."""
        return cls.model_validate(doc)

    @classmethod
    def read(cls, path: str) -> Self:
        """summary.json at ``path`` (a local path or URL), parsed by ``json`` as it was written."""
        return cls.model_validate(json.loads(storage.read_text(path)))

    def to_json_bytes(self) -> bytes:
        """summary.json's bytes: indented, as people open it as often as programs do."""
        return dumps_json(self.to_json_dict(), indent=2) + b"\n"


class NotRun(_SummaryPart):
    """What a launch that builds the job without running it returns instead of a summary
    (``--template_location``, ``--dry_run``): nothing ran, so no summary exists."""

    not_run: str  # why
    corpus: str
    output: str


def run_result_from_json(doc: Any) -> RunSummary | NotRun:
    """:func:`~clap_corpus.pipeline.launch.run.run_corpus`'s JSON data, typed."""
    return NotRun.model_validate(doc) if "not_run" in doc else RunSummary.model_validate(doc)
