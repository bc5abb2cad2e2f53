"""Captions for every sample: source captions pass through, label-only clips get a template.

The template rule (one rule, everywhere; LAION's own scripts disagree with each other):

- one label:       ``The sound of {a}.``
- several labels:  ``The sounds of {a}, {b} and {c}.``  (no Oxford comma, one final period)
- a label is used up to its first comma: AudioSet names carry aliases after commas
  ("Vehicle horn, car horn, honking" -> "vehicle horn"), which would make the list unreadable;
- a label's first letter is lowercased unless its first word is an acronym or has inner capitals
  ("Dog" -> "dog", "TV" stays, "iPhone" stays);
- repeated labels are said once, in first-seen order.

Keyword-only clips (free tags) get the same template from their keywords; the K2C stage may then
replace or join it with a generated caption.
"""

from __future__ import annotations

from dataclasses import replace

from manifests.records import Record, Reject

ZERO_SHOT_PROMPT = "This is a sound of {label}."


def label_phrase(label: str) -> str:
    """How a label reads inside a sentence."""
    text = " ".join(label.split(",", 1)[0].split())
    if not text:
        return ""
    first = text.split(" ", 1)[0]
    keeps_case = (first.isupper() and len(first) > 1) or any(c.isupper() for c in first[1:])
    return text if keeps_case else text[0].lower() + text[1:]


def template_caption(labels: tuple[str, ...] | list[str]) -> str:
    """``The sound of x.`` / ``The sounds of a, b and c.``; ValueError for no usable label."""
    phrases = list(dict.fromkeys(p for p in (label_phrase(x) for x in labels) if p))
    if not phrases:
        raise ValueError("no usable label")
    if len(phrases) == 1:
        return f"The sound of {phrases[0]}."
    return f"The sounds of {', '.join(phrases[:-1])} and {phrases[-1]}."


def clean_caption(text: str) -> str:
    return " ".join(text.split())


def render_captions(record: Record) -> Record | Reject:
    """Fill ``record.text``: its own captions, else a template from labels, else from keywords."""
    captions = tuple(dict.fromkeys(c for c in (clean_caption(x) for x in record.captions) if c))
    if captions:
        return replace(record, text=captions, caption_kind="source")
    for names in (record.labels, record.keywords):
        try:
            return replace(record, text=(template_caption(names),), caption_kind="template")
        except ValueError:
            continue
    return Reject.for_record(record, "captions", "no_text", "the clip has no caption, label or keyword")
