"""Held-out audio: the decoded-audio digests of the evaluation splits, and the rule that keeps a
train copy of one of them out of the train shards (``options.cross_split_duplicates: remove``).

Pure values and rules only: the shard builder applies them per sample, and the Beam pass that
collects the set (pipeline/stages/duplicates.py, ``HeldOutAudioSet``) builds one :class:`HeldOutAudio`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage

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
            source, split, key = holder  # a list, once it has been through a Beam coder
            holder = (source, split, key)
            if digest not in holders or holder < holders[digest]:
                holders[digest] = holder
        h = hashlib.sha256()
        for digest in sorted(holders):
            h.update(dumps_json([digest, *holders[digest]]) + b"\n")
        return cls(dict(sorted(holders.items())), h.hexdigest())


def overlap_removal(
    record: Record, digest: str, heldout: HeldOutAudio, train_splits: Collection[str]
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
        # one stage with the removal by origin id (pipeline/stages/leakage.py): a source's rejects list
        # both together
        Stage.LEAKAGE,
        Code.EVAL_OVERLAP_AUDIO,
        f"same decoded audio as sample {key} in split '{split}' of source '{source}'; "
        f"removed from split '{record.split}'",
    )
