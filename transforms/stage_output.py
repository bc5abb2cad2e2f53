"""What every record stage of the Beam graph returns: one shape, declared once.

A record stage (fetch, K2C, exclusion lists, leakage guard, exact duplicates, CLAP scoring) is a
PTransform from records to records. Its ``expand`` returns a :class:`StageOutput`; the graph
(``pipeline/stages/graph.py``) runs the stages as a list and collects rejects, reports and extras
from it, so adding a stage is one line there.

Here, below the pipeline, so that k2c/ and scoring/ return it too; it holds PCollections typed as
``Any``, so this module needs no Beam.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

NO_EXTRAS: Mapping[str, Any] = MappingProxyType({})


# A NamedTuple, not a dataclass: Beam registers a composite's outputs only from tuples, lists and
# dicts (by field name for a NamedTuple), so the stage's PCollections stay its outputs in the graph.
class StageOutput(NamedTuple):
    """One record stage's PCollections. ``rejects`` and ``report`` are None for a stage that drops
    nothing or reports elsewhere; ``extras`` carries what later steps need, by name (exact duplicate
    groups, CLAP's near-duplicate groups, the fetch status counts ...). Extras names are unique
    across the stages of one graph."""

    records: Any  # the records that go on
    rejects: Any = None  # Reject elements, or None when the stage drops nothing
    report: Any = None  # one (stage name, JSON-able dict) element for summary.json's "stages"
    extras: Mapping[str, Any] = NO_EXTRAS


# The extras, by name: declared here once, for the stages that give them and the graph that reads them.
FETCH_STATUS = "fetch_status"  # (source, status counts) per fetch status shard: the fetch report's input
EXACT_GROUPS = "exact_groups"  # duplicates.jsonl lines of the exact duplicate groups (keep_first, drop_all)
NEAR_GROUPS = "near_groups"  # duplicates.jsonl lines of CLAP scoring's near-duplicate groups
OVERLAP_HASHES = "overlap_hashes"  # (digest, (member, False)): train copies of held-out audio CLAP removed
GUARD_RECORDS = "guard_records"  # the records of guard-only sources, which reach no shard
