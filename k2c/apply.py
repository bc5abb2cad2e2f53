"""Putting a K2C caption on a record, and taking it off again for clips that turn out too short.

Per-sample functions without Beam: the stage calls :func:`plan` and :func:`attach`; the shard writer
(through :func:`transforms.sample.process_sample`) calls :func:`transforms.captions.for_duration`, and
the JSON writer :func:`transforms.captions.text_augment_all`.

Why the short-clip rule is applied in the shard writer: a clip's duration is only known for sure once
it is decoded, and that happens per shard. Probing container headers in the K2C stage would open every
file an extra time (1.9 M extra reads of AudioSet from a bucket) and can still be wrong (VBR MP3 without
a Xing header, Ogg without granule positions, truncated files), and manifests rarely carry durations.
So the stage captions every eligible record, and the writer drops the K2C caption of a clip shorter than
``min_clip_seconds``, measured on the decoded audio that the JSON ``duration`` also reports. With dedup
the extra model work is only for keyword sets that occur on short clips alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from clap_corpus.core.records import Record
from clap_corpus.k2c.config import K2CConfig
from clap_corpus.k2c.keywords import KeywordSet, keyword_set
from clap_corpus.k2c.outcomes import Outcome


@dataclass(frozen=True)
class Plan:
    """What the stage does with one record."""

    record: Record
    outcome: Outcome  # TODO, NOT_TEMPLATE, MODE_OFF or an input fallback (k2c.keywords)
    keywords: KeywordSet | None = None
    group: str = ""  # the dedup key (keyword set) or, without dedup, the record key


def plan(record: Record, config: K2CConfig) -> Plan:
    if config.mode_for(record.source) == "off":
        return Plan(record, Outcome.MODE_OFF)
    # Source captions win; only label-only and keyword-only clips (template captions) get K2C.
    if record.caption_kind != "template":
        return Plan(record, Outcome.NOT_TEMPLATE)
    ks = keyword_set(
        record.labels,
        record.keywords,
        max_keywords=config.max_keywords,
        max_keyword_chars=config.max_keyword_chars,
    )
    if ks.problem is not None:
        return Plan(record, ks.problem, ks)
    return Plan(record, Outcome.TODO, ks, ks.key if config.dedup else record.key)


def attach(record: Record, caption: str, mode: str, min_clip_seconds: float) -> Record | None:
    """The record with ``caption``; None when the caption only repeats the template caption.

    ``join`` leaves ``text`` alone: LAION's loader reads ``text`` for ``--text-augment-selection none``
    and ``text_augment_all`` (written from ``k2c_caption``) for ``all``, so a K2C caption in ``text``
    would make ``none`` behave like ``all``. ``caption_kind`` is ``mixed`` there: the clip's captions
    are the template one (``text``) and the K2C one (``text_augment_t5``). ``replace`` is the opt-in
    that ships the K2C caption as ``text`` itself (``caption_kind`` ``k2c``).
    """
    if caption.casefold() in {t.casefold() for t in record.text}:
        return None
    if mode == "replace":
        text, kind = (caption,), "k2c"
    else:
        text, kind = record.text, "mixed"
    return replace(
        record, text=text, caption_kind=kind, k2c_caption=caption, k2c_min_seconds=min_clip_seconds
    )
