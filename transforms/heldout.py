"""Held-out audio: the decoded-audio digests of the evaluation splits, and the rule that keeps a
train copy of one of them out of the train shards (``options.cross_split_duplicates: remove``).

Pure values and rules only: the shard builder applies them per sample, and the Beam pass that
collects the set (pipeline/stages/duplicates.py, ``HeldOutAudioSet``) builds one :class:`HeldOutAudio`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.records import Record, Reject

# Both removals of a clip held out for evaluation (by origin id in pipeline/stages/leakage.py, by decoded
# audio here) are one stage, so the rejects of a source list them together.
LEAKAGE_STAGE = "leakage"
OVERLAP_CODE = "eval_overlap_audio"
# The split of every record of a guard-only source (``guard: true``): held out from training like
# valid and test, so every guard checks against it; never written.
GUARD_SPLIT = "guard"

Holder = tuple[str, str, str]  # (source, split, key) of the held-out record that owns an id or a digest


@dataclass(frozen=True)
class HeldOutAudio:
    """The decoded-audio digests of the held-out records, each with the one sample a reject names."""

    holders: Mapping[str, Holder]  # digest -> (source, split, key), the smallest holder
    fingerprint: str  # of the whole set: part of every train shard's fingerprint

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, Holder]]) -> HeldOutAudio:
        holders: dict[str, Holder] = {}
        for digest, holder in pairs:
            holder = tuple(holder)
            if digest not in holders or holder < holders[digest]:
                holders[digest] = holder
        h = hashlib.sha256()
        for digest in sorted(holders):
            h.update(dumps_json([digest, *holders[digest]]) + b"\n")
        return cls(dict(sorted(holders.items())), h.hexdigest())


def overlap_removal(
    record: Record, digest: str, heldout: HeldOutAudio, train_splits: Iterable[str]
) -> Reject | None:
    """The reject of a train sample whose decoded audio a held-out split holds; None if it may ship."""
    if record.split not in train_splits:
        return None
    holder = heldout.holders.get(digest)
    if holder is None:
        return None
    source, split, key = holder
    return Reject.for_record(
        record,
        LEAKAGE_STAGE,
        OVERLAP_CODE,
        f"same decoded audio as sample {key} in split '{split}' of source '{source}'; "
        f"removed from split '{record.split}'",
    )
