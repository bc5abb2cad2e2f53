"""What CLAP scoring takes from the corpus spec, as one value the pipeline builds.

Kept out of stage.py so that the pipeline can build it without loading RunInference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from clap_corpus.core.records import Record
from clap_corpus.scoring.config import ClapConfig
from clap_corpus.transforms.sample import SampleOptions


@dataclass(frozen=True)
class ScoringInputs:
    """What the stage takes from the corpus spec. The pipeline builds it from the spec
    (pipeline/stages/graph.py), so that scoring, like K2C, never imports the pipeline."""

    clap: ClapConfig
    sample: SampleOptions  # options.sample: the decode the shard writer does, and what it rejects
    duplicates: str  # options.duplicates (report | keep_first | drop_all): what a near-duplicate group loses
    train_splits: tuple[str, ...]
    source_order: Mapping[str, int]  # each source's place in the spec: who of a group stays
    guard_sources: frozenset[str]  # sources only read to keep their clips out of training (guard: true)
    spec_path: str  # the spec file: a model path in options.clap is relative to it
    read_audio: Callable[[Record], bytes]  # a record's audio bytes, read as the shard writer reads them
