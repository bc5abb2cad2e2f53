"""From the model's raw text to a caption, or to a counted reason for keeping the template caption.

Steps: debias (optional) -> clean (the caption normaliser of :mod:`transforms.captions`: NFC, no
control, escape or bidi characters, single spaces; then capital first letter, one final period) ->
checks. A caption falls back to the template when it is

- ``empty``: nothing with a letter or digit is left;
- ``copy_of_keywords``: it only lists the keywords back ("Dog, rain and thunder."): every word of it
  is a keyword word or one of "and"/"or";
- ``too_long``: longer than the cap (characters, after cleaning);
- ``gendered``: with debias on, a listed word survived the pass (a guard against a gap between
  the word list and the pass; not expected to happen);
- ``same_as_template``: it says exactly what the record's template caption already says (checked
  per record, when the caption is attached: :mod:`k2c.apply`).

Input-side reasons (``no_keywords``, ``non_latin``) come from :mod:`k2c.keywords`;
``generation_error`` from the handler.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from clap_corpus.k2c.debias import contains_gendered, debias
from clap_corpus.k2c.outcomes import Outcome
from clap_corpus.transforms.captions import normalize_text

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_TRAILING = re.compile(r"[\s.,;:!?…·\-–—|]+$")
_LEADING = re.compile(r"^[\s.,;:!?…·\-–—|]+")
_LIST_WORDS = frozenset({"and", "or"})


@dataclass(frozen=True)
class CaptionResult:
    """What the K2C step decided for one keyword set."""

    caption: str | None  # None -> keep the template caption
    reason: Outcome | None = None  # why there is no caption (one of k2c.outcomes.FALLBACKS)


def clean(text: str) -> str:
    """Normalised as every caption is, capital first letter, exactly one final period."""
    s = normalize_text(text)
    s = _LEADING.sub("", s)
    s = _TRAILING.sub("", s)
    if not s:
        return ""
    return s[0].upper() + s[1:] + "."


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def is_copy_of_keywords(caption: str, keywords: Sequence[str]) -> bool:
    words = _words(caption)
    kw_words = {w for k in keywords for w in _words(k)}
    content = [w for w in words if w not in _LIST_WORDS]
    return bool(content) and all(w in kw_words for w in content)


def finish(
    raw: str | None,
    keywords: Sequence[str],
    *,
    max_chars: int,
    use_debias: bool = True,
) -> CaptionResult:
    """The caption for one keyword set from the model's decoded text (None: generation failed)."""
    if raw is None:
        return CaptionResult(None, Outcome.GENERATION_ERROR)
    text = debias(raw) if use_debias else raw
    caption = clean(text)
    if not any(ch.isalnum() for ch in caption):
        return CaptionResult(None, Outcome.EMPTY)
    if is_copy_of_keywords(caption, keywords):
        return CaptionResult(None, Outcome.COPY_OF_KEYWORDS)
    if len(caption) > max_chars:
        return CaptionResult(None, Outcome.TOO_LONG)
    if use_debias and contains_gendered(caption):
        return CaptionResult(None, Outcome.GENDERED)
    return CaptionResult(caption)
