"""Model presets: how a keyword list becomes the model's input text, and LAION's generation defaults.

Two families are in use (the models LAION-CLAP's keyword-to-caption code names):

- ``k2t`` (``gagan3012/k2t``, ``gagan3012/k2t-base``, and our embedded tiny model): keywords joined by
  ``"| "`` and followed by ``" </s>"``. The tokenizer appends its own end-of-sequence token as well;
  that is how those models were trained, so it is kept.
- ``common_gen`` (``mrm8488/t5-base-finetuned-common_gen`` and the like): keywords joined by spaces.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

TINY_MODEL_NAME = "tiny"
# realpath: under the editable install __file__ is a link in build/; the model is the source tree's
TINY_MODEL_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "tiny", "model")


@dataclass(frozen=True)
class Preset:
    name: str
    separator: str
    suffix: str = ""
    prefix: str = ""

    def format(self, keywords: Sequence[str]) -> str:
        """The model input for a (normalized, canonical) keyword list."""
        return f"{self.prefix}{self.separator.join(keywords)}{self.suffix}"


PRESETS: dict[str, Preset] = {
    "k2t": Preset("k2t", separator="| ", suffix=" </s>"),
    "common_gen": Preset("common_gen", separator=" "),
}


class GenerationSettings(TypedDict):
    """Keyword arguments of transformers' ``generate`` (typed per key, so that ``**`` them type-checks)."""

    num_beams: int
    length_penalty: float
    no_repeat_ngram_size: int
    early_stopping: bool
    max_new_tokens: int


# LAION's generation settings for the k2t models: 4 beams, length penalty 1.5, no repeated trigram,
# early stopping. max_new_tokens is ours: captions are one sentence, and a cap bounds the work of a
# model that never emits end-of-sequence.
GENERATION_DEFAULTS: GenerationSettings = {
    "num_beams": 4,
    "length_penalty": 1.5,
    "no_repeat_ngram_size": 3,
    "early_stopping": True,
    "max_new_tokens": 48,
}


def infer_preset(model: str) -> str | None:
    """The preset a known model family needs, or None when the name says nothing."""
    name = model.lower()
    if model == TINY_MODEL_NAME or "k2t" in name or "keytotext" in name:
        return "k2t"
    if "common_gen" in name or "commongen" in name:
        return "common_gen"
    return None
