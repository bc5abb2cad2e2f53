"""Captions for every sample: source captions pass through, label-only and keyword-only clips get a template.

Every text a sample ships with passes through :func:`render_captions` (the ``Captions`` stage, before
anything else looks at the text): captions, labels, keywords, license, attribution, the ids and the
strings of ``original_data`` are normalised there (:func:`normalize_text`, :func:`strip_controls`), so
the sample JSON and the Parquet rows never hold a control, escape or bidi-override character. K2C
output is normalised the same way (:func:`k2c.postprocess.clean`).

Length: a caption (source or template) longer than ``max_caption_chars`` after normalisation rejects the
clip (``caption_too_long``), even when it has other, shorter captions: a caption that size is a pasted
description or a misparsed row, and the rest of that row is not to be trusted either.

The label template (one rule, everywhere; LAION's own scripts disagree with each other):

- one label:       ``The sound of {a}.``
- several labels:  ``The sounds of {a}, {b} and {c}.``  (no Oxford comma, one final period)
- a label is used up to its first comma: AudioSet names carry aliases after commas
  ("Vehicle horn, car horn, honking" -> "vehicle horn"), which would make the list unreadable;
- a label's first letter is lowercased unless its first word is an acronym or has inner capitals
  ("Dog" -> "dog", "TV" stays, "iPhone" stays);
- repeated labels are said once, in first-seen order; at most the first ``TEMPLATE_MAX_TERMS`` are said.

Keyword-only clips (free tags: Freesound, caption files, a generic ``keywords`` column) get a template of
their own: tags are adjectives ("bright"), verbs ("barking") and nouns ("bird") alike, and "The sounds of
bright" is not English, so they read ``A sound tagged {a}, {b} and {c}.`` (same list rules). Tags that
describe the recording rather than the sound (:func:`is_technical_tag`: sample rates, bit depths, file
formats, channel layouts, recorder and microphone models) are left out of the caption and kept in
``keywords``/``tag``; a clip whose tags are all technical has no text (``no_text``). The K2C stage may
then replace or join the template with a generated caption.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage

ZERO_SHOT_PROMPT = "This is a sound of {label}."
DEFAULT_MAX_CAPTION_CHARS = 1000
# A template listing more terms stops reading as a caption (one test row carries 3000 tags); K2C also
# looks at the first 10 (k2c.config max_keywords).
TEMPLATE_MAX_TERMS = 10

# Terminal escape sequences are removed whole: removing ESC alone would leave "[31m" in the caption.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC (window titles, hyperlinks)
    r"|\x1b[ -/]*[0-~]"  # the other two-character escapes
)


# Format characters that stay: ZWNJ and ZWJ (Persian and Indic spelling, emoji sequences need them)
# and the prepended concatenation marks (visible signs: Arabic number sign, Syriac abbreviation mark).
KEPT_FORMAT = frozenset(
    "\u200c\u200d\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd"
)


def _removed_characters() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for cp in (*range(0x00, 0x20), *range(0x7F, 0xA0)):  # C0, DEL, C1
        table[cp] = " " if chr(cp).isspace() else None
    table[0x2028] = table[0x2029] = " "  # line / paragraph separators
    # Every other format character (category Cf): bidi embeddings, overrides, isolates and marks (they
    # reorder how the text around them displays), zero-width space, word joiner, soft hyphen, BOM,
    # interlinear annotations, and the tag characters (invisible ASCII look-alikes used to smuggle
    # text). Cf lives below U+20000 and in plane 14.
    for cp in (*range(0x20000), *range(0xE0000, 0xE1000)):
        if unicodedata.category(chr(cp)) == "Cf" and chr(cp) not in KEPT_FORMAT:
            table[cp] = None
    for cp in range(0xD800, 0xE000):  # lone surrogates (from JSON "\ud800") cannot be written as UTF-8
        table[cp] = None
    return table


_REMOVED = _removed_characters()


def strip_controls(text: str) -> str:
    """``text`` without escape sequences, control, bidi and invisible format characters (whitespace
    controls become a space); otherwise unchanged. For metadata that is kept as the source wrote it."""
    return _ESCAPES.sub("", text).translate(_REMOVED)


@functools.lru_cache(maxsize=4096)
def normalize_text(text: str) -> str:
    """The one normalisation of caption text: :func:`strip_controls`, NFC, whitespace collapsed, stripped.

    Cached: label names and tags repeat over millions of clips (AudioSet's 527 names), captions rarely."""
    return " ".join(unicodedata.normalize("NFC", strip_controls(text)).split())


@functools.lru_cache(maxsize=4096)
def label_phrase(label: str) -> str:
    """How a label reads inside a sentence."""
    text = " ".join(label.split(",", 1)[0].split())
    if not text:
        return ""
    first = text.split(" ", 1)[0]
    keeps_case = (first.isupper() and len(first) > 1) or any(c.isupper() for c in first[1:])
    return text if keeps_case else text[0].lower() + text[1:]


def _phrases(terms: Sequence[str]) -> list[str]:
    phrases = list(dict.fromkeys(p for p in (label_phrase(normalize_text(x)) for x in terms) if p))
    if not phrases:
        raise ValueError("no usable term")
    return phrases[:TEMPLATE_MAX_TERMS]


def _listed(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def template_caption(labels: Sequence[str]) -> str:
    """``The sound of x.`` / ``The sounds of a, b and c.``; ValueError for no usable label."""
    phrases = _phrases(labels)
    return f"The sound{'s' if len(phrases) > 1 else ''} of {_listed(phrases)}."


# Technical tags: what a tag is made of when it describes the file or the recorder, not the sound.
_RATE = (
    r"(?:8|11[.,]025|11|16|22[.,]05|22|24|32|44[.,-]1|44|48|88[.,]2|96|176[.,]4|192)-?k(?:hz)?"
    r"|(?:8000|11025|16000|22050|24000|32000|44100|48000|88200|96000|176400|192000)(?:-?hz)?"
)
_DEPTH = r"(?:8|16|24|32)-?bits?(?:-float)?|32-?float"
_FORMAT = r"wav|mp3|flac|aif|aiff|aifc|ogg|m4a|aac|bwf|wma|opus|pcm|lossless"
# The pipeline ships mono: a channel-layout tag describes a file that no longer exists.
_CHANNELS = r"stereo|mono|monophonic|stereophonic|binaural|ambisonics?|surround|multichannel"
_BRAND = (
    r"zoom|tascam|sony|roland|edirol|marantz|olympus|sennheiser|rode|shure|neumann|akg|audio-?technica"
    r"|sound-?devices|dpa|schoeps|lom|core-?sound|oktava|behringer|nagra|fostex|yamaha"
)
_MODEL = r"[a-z]{0,4}(?:-[a-z]{1,2})?-?\d{1,4}[a-z0-9]*(?:-(?:pro|mk-?i+|mk-?\d|ii|xl|hr|n))?"
# Models that are tagged without their brand.
_BARE_MODEL = (
    r"h[1-8]n?(?:-?pro)?|dr-?\d{2,3}[a-z]*|pcm-?[a-z]\d{2,3}[a-z]*|r-?\d{2}(?:hr)?|ls-?\d{1,3}"
    r"|pmd-?\d{3}[a-z]*|mkh-?\d{2,4}|ntg?-?\d[a-z]?|mixpre(?:-?\d+)?"
)
_TECH_TOKEN = rf"(?:{_RATE}|{_DEPTH}|{_FORMAT}|{_CHANNELS}|(?:{_BRAND})-?{_MODEL}|{_BARE_MODEL})"
_TECHNICAL = re.compile(rf"{_TECH_TOKEN}(?:[-/+,]+{_TECH_TOKEN})*")


def is_technical_tag(tag: str) -> bool:
    """Whether a tag only describes the recording (``44.1khz``, ``24bit``, ``wav``, ``stereo``,
    ``zoom-h4n``, ``h4n``, ``24bit-96khz``), not what it sounds like. ``zoom`` alone, ``440hz`` or
    ``loop`` are not technical."""
    key = re.sub(r"[\s_]+", "-", normalize_text(tag).casefold()).strip("-")
    return bool(_TECHNICAL.fullmatch(key))


def keyword_caption(keywords: Sequence[str]) -> str:
    """``A sound tagged x.`` / ``A sound tagged a, b and c.`` from the non-technical keywords;
    ValueError when none is left."""
    return f"A sound tagged {_listed(_phrases([k for k in keywords if not is_technical_tag(k)]))}."


def _texts(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(t for t in (normalize_text(v) for v in values) if t)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return strip_controls(value)
    if isinstance(value, Mapping):
        return {strip_controls(str(k)): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


def _optional(text: str | None) -> str | None:
    return None if text is None else (normalize_text(text) or None)


def clean_record_text(record: Record) -> Record:
    """The record with every text field normalised (empty labels, keywords and captions dropped).

    Identifiers (``source_id``, ``origin_ids``) and ``original_data`` only lose what must not ship: they
    are the source's own words. The key stays: it was made from the exact id and stays unique."""
    return replace(
        record,
        source_id=strip_controls(record.source_id),
        origin_ids=tuple(strip_controls(x) for x in record.origin_ids),
        captions=_texts(record.captions),
        labels=_texts(record.labels),
        keywords=_texts(record.keywords),
        license=_optional(record.license),
        attribution=_optional(record.attribution),
        original=_scrubbed(dict(record.original)),
    )


def render_captions(record: Record, max_chars: int | None = None) -> Record | Reject:
    """Fill ``record.text``: its own captions, else a template from labels, else from keywords.

    ``max_chars``: the caption cap (the stage passes ``options.max_caption_chars``; None: no cap, for
    callers that re-derive the template of a record that already passed it).
    """
    record = clean_record_text(record)
    captions, kind, problem = _rendered(record.captions, record.labels, record.keywords, max_chars)
    if problem is not None:
        return Reject.for_record(record, Stage.CAPTIONS, *problem)
    return replace(record, text=captions, caption_kind=kind)


def caption_problem(record: Record, max_chars: int | None = None) -> tuple[Code, str] | None:
    """(code, reason) of the reject :func:`render_captions` makes of ``record``, or None; from the
    same cleaned texts, without the rest of the record (what `clapcorpus plan` needs of this stage)."""
    return _rendered(_texts(record.captions), _texts(record.labels), _texts(record.keywords), max_chars)[2]


def _rendered(
    captions: tuple[str, ...], labels: tuple[str, ...], keywords: tuple[str, ...], max_chars: int | None
) -> tuple[tuple[str, ...], str, tuple[Code, str] | None]:
    """(texts, caption kind, problem) of cleaned captions, labels and keywords."""
    captions = tuple(dict.fromkeys(captions))
    kind = "source"
    if not captions:
        kind = "template"
        for build, names in ((template_caption, labels), (keyword_caption, keywords)):
            try:
                captions = (build(names),)
                break
            except ValueError:
                continue
        else:
            why = "only technical tags" if keywords else "no caption, label or keyword"
            return (), kind, (Code.NO_TEXT, f"the clip has {why}")
    if max_chars is not None:
        for i, caption in enumerate(captions):
            if len(caption) > max_chars:
                return (
                    captions,
                    kind,
                    (
                        Code.CAPTION_TOO_LONG,
                        f"{kind} caption {i + 1} has {len(caption)} characters, over the {max_chars} of "
                        "options.max_caption_chars",
                    ),
                )
    return captions, kind, None


# -- the K2C caption a record ships with (k2c/apply.py attaches it, and says why the
# short-clip rule is applied by the shard writer) --


def template_texts(record: Record) -> tuple[str, ...]:
    """The record's texts as the caption stage made them, before any K2C caption."""
    base = render_captions(replace(record, text=(), caption_kind="", k2c_caption=None))
    return base.text if isinstance(base, Record) else record.text


def ships_k2c(record: Record, duration_s: float) -> bool:
    """Whether the sample keeps its K2C caption at this decoded duration."""
    return record.k2c_caption is not None and duration_s >= record.k2c_min_seconds


def for_duration(record: Record, duration_s: float) -> Record:
    """The record as it ships: without its K2C caption when the clip is under the minimum."""
    if record.k2c_caption is None or ships_k2c(record, duration_s):
        return record
    # k2c_min_seconds stays: with no caption it marks a record that lost it here (the shard stats
    # count these as k2c_skipped_short).
    return replace(record, text=template_texts(record), caption_kind="template", k2c_caption=None)


def text_augment_all(record: Record) -> list[str]:
    """LAION's ``text_augment_all``: the original texts (source or template captions) plus the K2C one.

    In replace mode ``text`` holds only the K2C caption, so the template caption is recomputed here
    rather than lost.
    """
    originals = record.captions or template_texts(record)
    extra = (record.k2c_caption,) if record.k2c_caption is not None else ()
    return list(dict.fromkeys((*originals, *record.text, *extra)))
