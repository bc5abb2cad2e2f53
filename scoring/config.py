"""The spec's ``options.clap`` section: which CLAP model scores the pairs, and what the scores decide.

    options:
      clap:
        model: laion/clap-htsat-fused   # a hub id in the HF cache, a save_pretrained folder, or a
                                        # `clapcorpus train` run / checkpoint folder
        min_clap_score: 0.1             # pairs whose best caption scores lower are rejected
        keep_top_fraction: 0.9          # or: keep each source's best 90 %
        order_captions: true            # each sample's captions best first
        content_threshold: 0.95         # train audio this close to held-out audio is removed
                                        # (removals only where the run's calibration trusts the model)

Absent (the default), nothing of it runs and the output is byte for byte what it was.
"""

from __future__ import annotations

import json
import os
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictStr, ValidationInfo, model_validator
from pydantic.dataclasses import dataclass

from clap_corpus.core.config import MODEL_CONFIG, Count, Device, Fraction, loading, problem

_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _cosine(value: float) -> float:
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"a cosine is between -1 and 1, got {value}")
    return value


Cosine = Annotated[float, AfterValidator(_cosine)]


def model_kind(path: str) -> str:
    """``trainer`` for a folder written by ``clapcorpus train`` (a run or one checkpoint), else
    ``transformers`` (a ``save_pretrained`` folder or a hub id)."""
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return "trainer"
    cfg = os.path.join(path, "config.json")
    if os.path.isfile(os.path.join(path, "model.safetensors")) and os.path.isfile(cfg):
        try:
            with open(cfg, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return "transformers"
        if isinstance(doc, dict) and "model" in doc and "train" in doc:
            return "trainer"
    return "transformers"


@dataclass(frozen=True, config=MODEL_CONFIG)
class ClapConfig:
    model: StrictStr = Field(
        description="a Hugging Face ClapModel (hub id in the local cache, or a save_pretrained folder), or "
        "a `clapcorpus train` output / checkpoint folder"
    )
    kind: Literal["auto", "transformers", "trainer"] = "auto"  # never `auto` after validation
    model_path: StrictStr = ""  # resolved: the folder, or the hub id
    device: Device = "auto"  # CUDA when the worker has one
    min_batch_size: Count = 1
    max_batch_size: Count = 32
    large_model: StrictBool = True  # one model per worker machine, shared by its processes
    download: StrictBool = False  # let from_pretrained reach the hub (off: cache or folder only)
    min_clap_score: Cosine | None = None  # a pair whose best caption scores lower: `low_clap_score`
    # per source, keep this share of best-scoring pairs (0 would keep none)
    keep_top_fraction: Annotated[Fraction, Field(gt=0)] | None = None
    order_captions: StrictBool = False  # each sample's captions best first (scores in the same order)
    content_overlap: Literal["remove", "report", "off"] = "remove"  # train audio near held-out audio
    content_threshold: Cosine = 0.95  # audio-embedding cosine from which two clips are one content
    # cosine from which samples of different sources are near duplicates (None: not searched); what
    # happens to them follows options.duplicates (report, keep_first, drop_all)
    near_duplicate_threshold: Cosine | None = None
    # exact: every pair compared; approximate: an IVF index (lists and probes follow the number of
    # samples, >= 99 % of the pairs found, bench/bench_near_duplicates.py); auto: exact up to 100 000
    near_duplicate_search: Literal["auto", "exact", "approximate"] = "auto"
    # the search is cut into this many blocks by key; a worker holds two blocks' embeddings at a time.
    # A performance setting: the same groups come out for any number.
    near_duplicate_partitions: Count = 1
    # Before anything is removed by score or by content, the model is measured on this many of the
    # run's clips (its own caption against others'; each clip against a re-encoded copy of itself and
    # against the other clips). Removal happens only where that calibration shows the model can tell.
    calibration_clips: Count = 128
    trust_model: StrictBool = False  # true: remove even where the calibration says the model cannot tell
    report_pairs: Count = 20  # lowest-scoring and closest cross-split pairs listed in the report
    max_text_tokens: Annotated[Count, Field(le=512)] = 77  # text encoders hold 512 positions at most
    enabled: StrictBool = True  # false: the section stays in the spec, scoring is off

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> ClapConfig:
        if not self.model_path:
            context = loading(info)
            base = context.base_dir if context else "."
            expanded = os.path.expanduser(self.model.strip())
            candidate = (
                expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base, expanded))
            )
            if os.path.isdir(candidate) or self.model.startswith((".", "/", "~")):
                path = candidate
            elif _HUB_ID_RE.match(self.model.strip()):
                path = self.model.strip()
            else:
                raise problem(
                    f"{self.model!r} is neither an existing folder nor a hub id like 'owner/name'", "model"
                )
            object.__setattr__(self, "model_path", path)  # still being built
        if self.kind == "auto":
            object.__setattr__(self, "kind", model_kind(self.model_path))
        if self.max_batch_size < self.min_batch_size:
            raise problem(f"must be at least min_batch_size ({self.min_batch_size})", "max_batch_size")
        return self
