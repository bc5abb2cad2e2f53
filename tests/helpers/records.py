"""One factory for the :class:`Record` a unit test hands to a stage, instead of one per test file."""

from __future__ import annotations

import os
from typing import Any

from clap_corpus.core.audio_ref import AudioRef, LocalFile
from clap_corpus.core.records import Record
from clap_corpus.transforms.captions import render_captions


def make_record(
    key: str = "k",
    *,
    source: str = "s",
    source_id: str | None = None,
    audio: AudioRef | str | os.PathLike[str] | None = None,
    row: int = 1,
    split: str | None = None,
    **fields: Any,
) -> Record:
    """A record whose every field a test does not name has a plain value.

    ``source_id`` defaults to the key and ``audio`` to ``/a/<key>.wav``, a local path nothing reads
    unless the test writes it; a string or path given as ``audio`` is a local file. ``split`` stays
    None (the hash split) as in a fresh adapter record. Any other :class:`Record` field goes in
    ``fields``.
    """
    if audio is None:
        audio = LocalFile(f"/a/{key}.wav")
    elif isinstance(audio, str | os.PathLike):
        audio = LocalFile(os.fspath(audio))
    return Record(
        key=key,
        source=source,
        source_id=key if source_id is None else source_id,
        audio=audio,
        row=row,
        split=split,
        **fields,
    )


def captioned(record: Record) -> Record:
    """The record after the caption step (``text`` and ``caption_kind`` filled), as stages after it
    see it; a record the caption step rejects fails the test here."""
    out = render_captions(record)
    assert isinstance(out, Record), out
    return out
