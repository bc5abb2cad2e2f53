"""Duplicate groups without Beam: who of a group's copies stays, and the group's line in duplicates.jsonl.

One rule for the exact duplicates (pipeline/stages/duplicates.py) and CLAP's near-duplicates
(scoring/stage.py): held-out splits first, then the spec's source order, then the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Member = tuple[str, str, str]  # (key, source, split)


def preference(member: Member, source_order: Mapping[str, int], train_splits: Iterable[str]) -> tuple:
    """Sort key: held-out splits first, then spec source order, then key."""
    key, source, split = member
    return (split in set(train_splits), source_order.get(source, len(source_order)), key)


def group_doc(digest: str, members: list[Member], kept: set[str]) -> dict[str, Any]:
    """One line of duplicates.jsonl: members in preference order, which stayed, and whether the
    group spans training and held-out splits."""
    return {
        "digest": digest,
        "samples": [{"key": k, "source": s, "split": sp, "kept": k in kept} for k, s, sp in members],
        "splits": sorted({sp for _, _, sp in members}),
    }
