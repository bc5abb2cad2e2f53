"""The normalized record every adapter emits, and the reject every failing row becomes.

A :class:`Record` is metadata only: it travels through shuffles, so it never carries audio bytes.
It is the one type from adapter to shard writer; later stages fill fields with
:func:`dataclasses.replace` instead of inventing new types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clap_corpus.core.audio_ref import AudioRef
from clap_corpus.core.hashing import short_digest
from clap_corpus.core.rejects import Code, Stage

# Keys become tar member names (`<key>.flac`): make_key builds them within the "key" rule of
# core.layout.NAME_RULES (no dots, at most 80 characters).
_SLUG_RE = re.compile(r"[^a-z0-9]+")


def slug(text: str, max_len: int) -> str:
    """Lowercase ASCII slug: runs of anything else become '-'; never empty."""
    out = _SLUG_RE.sub("-", text.lower()).strip("-")[:max_len].strip("-")
    return out or "x"


def make_key(source: str, source_id: str) -> str:
    """The sample key: readable, unique per (source, source id), safe as a file name.

    The digest is over the exact id, so two ids that slug to the same text still get two keys.
    """
    return f"{slug(source, 20)}_{slug(source_id, 40)}_{short_digest(source + chr(0) + source_id)}"


@dataclass(frozen=True)
class ClapScores:
    """What CLAP scoring (``options.clap``) found for one record: its embeddings and the cosine of the
    audio with each caption. The embeddings ride along with the record to the shard writer, which
    stores them beside the shard; float16 keeps that to 2 bytes a dimension."""

    scores: tuple[float, ...]  # cosine of the audio with each caption of ``Record.text``, in order
    audio_embedding: bytes  # float16 little-endian [dim], L2-normalised
    text_embeddings: bytes  # float16 little-endian [len(text), dim], L2-normalised

    @property
    def best(self) -> float:
        return max(self.scores) if self.scores else float("nan")


@dataclass(frozen=True)
class Record:
    """One input clip, normalized. Metadata only; audio is read from ``audio`` per shard."""

    key: str
    source: str  # name of the source in the corpus spec
    source_id: str  # the clip's id inside its source (file name, YouTube id, Freesound id ...)
    audio: AudioRef  # where the audio is (local or remote file, dataset cell, archive member)
    row: int  # 1-based data row in the source's manifest, for rejects that point back at it
    split: str | None = None  # official split after the spec's mapping; None -> hash split
    captions: tuple[str, ...] = ()  # natural-language captions from the source
    labels: tuple[str, ...] = ()  # class labels (AudioSet ontology names ...)
    keywords: tuple[str, ...] = ()  # free tags / keywords
    license: str | None = None
    attribution: str | None = None
    origin_ids: tuple[str, ...] = ()  # cross-source identities, e.g. "youtube:abc", "freesound:123"
    expected_duration_s: float | None = None  # from the metadata, when it says; `clapcorpus plan` uses it
    original: Mapping[str, Any] = field(default_factory=dict)  # free-form source metadata (JSON-able)
    # Filled by later stages:
    text: tuple[str, ...] = ()  # the captions the sample ships with (JSON `text`)
    caption_kind: str = ""  # "source" | "template" | "k2c" | "mixed"
    k2c_caption: str | None = None  # keyword-to-caption output (JSON `text_augment_t5`)
    # The K2C caption holds only for clips at least this long; the shard writer checks it against the
    # decoded duration (k2c/apply.py says why there).
    k2c_min_seconds: float = 0.0
    clap: ClapScores | None = None  # set by CLAP scoring only (scoring/stage.py)

    @property
    def tags(self) -> tuple[str, ...]:
        """Labels then keywords, each once, in order: the JSON `tag` field."""
        return tuple(dict.fromkeys(self.labels + self.keywords))


@dataclass(frozen=True)
class Reject:
    """An input that produced no sample, with the stage that failed and a readable reason."""

    source: str
    stage: Stage
    code: Code  # stable snake_case reason, for counting (core.rejects lists them all)
    reason: str  # one readable sentence
    path: str = ""
    row: int | None = None
    key: str | None = None
    source_id: str | None = None

    def __post_init__(self) -> None:
        # The types say Stage and Code, but from_json and third-party adapters hand over plain strings:
        # a code nobody declared fails here, not in a report.
        object.__setattr__(self, "stage", Stage(self.stage))
        object.__setattr__(self, "code", Code(self.code))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "stage": self.stage.value,
            "code": self.code.value,
            "reason": self.reason,
            "path": self.path,
            "row": self.row,
            "key": self.key,
            "source_id": self.source_id,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Reject:
        # JSON values, untyped: __post_init__ turns stage and code into the enums (or refuses them).
        fields: dict[str, Any] = {
            k: d.get(k) for k in ("source", "stage", "code", "reason", "path", "row", "key", "source_id")
        }
        return cls(**fields)

    @classmethod
    def for_record(cls, record: Record, stage: Stage, code: Code, reason: str) -> Reject:
        return cls(
            source=record.source,
            stage=stage,
            code=code,
            reason=reason,
            path=str(record.audio),
            row=record.row,
            key=record.key,
            source_id=record.source_id,
        )
