"""Keyword lists -> the canonical keyword set a caption is generated from (and deduplicated by).

A record's labels and keywords are normalized one by one, repeated ones dropped, the list cut to
``max_keywords`` in source order (the first ones are usually the most important: AudioSet lists
labels by id, taggers put the main tag first), and then sorted. Sorting is what makes it a *set*:
two clips whose lists differ only in order get the same model input, so the model runs once for both
and, with beam search, both get the same caption.

Normalization of one keyword:
- Unicode NFKC, whitespace collapsed; an AudioSet-style label is used up to its first comma and
  lowercased unless it starts with an acronym (the template caption's rule,
  :func:`transforms.captions.label_phrase`);
- ``|`` (the k2t separator), ``<``/``>`` (which could spell a special token such as ``</s>``) and other
  symbols become spaces; a period survives only between two digits ("2.5 kHz"), so "a.m." or
  "file.wav" cannot end the model's sentence early; ``_`` becomes a space;
- a keyword with letters from a non-Latin script is dropped (the T5 vocabularies in use are Latin;
  their output for other scripts is unknown-token soup), as is one with no letter or digit left;
- a keyword longer than ``max_keyword_chars`` is cut at a word boundary;
- a technical keyword (:func:`transforms.captions.is_technical_tag`: "44.1khz", "wav", "zoom-h4n") is
  left out, as it is from the template caption.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from clap_corpus.k2c.outcomes import Outcome
from clap_corpus.transforms.captions import is_technical_tag, label_phrase

SEPARATOR = "|"  # joins the canonical key; never inside a normalized keyword

_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
# Letters, digits, combining marks, spaces, apostrophes, hyphens, periods, '&', '+', '#' survive.
_DISALLOWED = re.compile(r"[^\w\s'’\-.&+#]|_", re.UNICODE)


@dataclass(frozen=True)
class KeywordSet:
    """The canonical keywords of one record, or why there are none."""

    keywords: tuple[str, ...]  # normalized, each once, at most max_keywords, sorted
    problem: Outcome | None = None  # NO_KEYWORDS | NON_LATIN when keywords is empty
    truncated: bool = False  # the record had more usable keywords than max_keywords
    dropped_non_latin: int = 0

    @property
    def key(self) -> str:
        """A stable string naming the set: the dedup key."""
        return SEPARATOR.join(self.keywords)


def _is_latin_letter(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith("LATIN")


def normalize_keyword(text: str, max_chars: int = 48) -> tuple[str | None, str | None]:
    """One keyword in; ``(normalized, None)`` or ``(None, reason)`` with reason "non_latin" | "empty"."""
    s = unicodedata.normalize("NFKC", text)
    s = s.replace(SEPARATOR, " ").replace("<", " ").replace(">", " ")
    s = label_phrase(s)  # first comma part, spaces collapsed, case rule of the template captions
    s = _PERIOD.sub(" ", s)
    s = _DISALLOWED.sub(" ", s)
    s = " ".join(s.split()).strip("-'’ ")
    if not any(ch.isalnum() for ch in s):
        return None, "empty"
    if any(ch.isalpha() and not _is_latin_letter(ch) for ch in s):
        return None, "non_latin"
    if len(s) > max_chars:
        cut = s[: max_chars + 1].rsplit(" ", 1)[0] if " " in s[:max_chars] else s[:max_chars]
        s = cut.strip("-'’ ")
    return s, None


def keyword_set(
    labels: Iterable[str], keywords: Iterable[str], *, max_keywords: int = 10, max_keyword_chars: int = 48
) -> KeywordSet:
    """The canonical set for a record's labels then keywords (see the module doc)."""
    kept: dict[str, str] = {}  # casefolded -> first spelling seen
    non_latin = 0
    truncated = False
    # Technical tags (sample rates, formats, recorders) are left out as in the template caption.
    tags = (k for k in keywords if isinstance(k, str) and not is_technical_tag(k))
    for raw in (*labels, *tags):
        if not isinstance(raw, str):
            continue
        norm, why = normalize_keyword(raw, max_keyword_chars)
        if norm is None:
            non_latin += why == "non_latin"
            continue
        folded = norm.casefold()
        if folded in kept:
            # the same word spelled twice ("dog", "DOG"): keep one spelling whatever the order
            kept[folded] = min(kept[folded], norm)
            continue
        if len(kept) >= max_keywords:
            truncated = True
            break  # thousands of tags cost nothing past the cap
        kept[folded] = norm
    words = tuple(kept[k] for k in sorted(kept))
    if not words:
        return KeywordSet((), Outcome.NON_LATIN if non_latin else Outcome.NO_KEYWORDS, False, non_latin)
    return KeywordSet(words, None, truncated, non_latin)
