"""Wanted vs obtained: a source read from a mirror, held against the official list it is meant to cover.

A source's ``options.wanted`` names the official list (AudioSet's segment CSVs, AudioCaps' or Clotho's
caption CSVs: one file or several, globs allowed) and how its rows meet the mirror's clips::

    options:
      wanted:
        files: [metadata/balanced_train_segments.csv]
        id_column: YTID        # default: the first of YTID, youtube_id, ytid, video_id, freesound_id,
                               # sound_id, file_name, fname, id
        origin: youtube        # match the mirror's origin ids (youtube:<YTID>); without it, match ids

Every listed id the mirror has no clip (and no reject) for becomes a ``not_in_mirror`` reject naming
the list file, its data row (``row``, header and comment lines not counted, as every reject's row) and
its line in the file (in the reason), so ``inputs = samples + rejects`` counts the official list. Clips
of the mirror that the list does not name are not part of this source: they are left out and counted
(``not_listed``). Coverage counts listed ids only: a reject of the mirror that names no clip (a file
that cannot be read) is passed on as a reject but obtains nothing. Without ``origin`` a clip
matches by its id's stem (``Y7fmOlUlwoNg.wav`` and ``train/0/Y7fmOlUlwoNg`` both read ``Y7fmOlUlwoNg``).
The ids are held in memory (about 100 bytes each: 200 MB for AudioSet's two million segments).
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.manifests.notes import SourceNotes
from clap_corpus.manifests.options import WantedList
from clap_corpus.transforms import storage

ID_COLUMNS = (
    "YTID",
    "youtube_id",
    "ytid",
    "video_id",
    "freesound_id",
    "sound_id",
    "file_name",
    "fname",
    "id",
)


@dataclass(frozen=True)
class Listed:
    file: str
    row: int  # 1-based data row of the file
    id: str
    line: int = 0  # 1-based line of the file the row ends on


def _stem(value: str) -> str:
    base = posixpath.basename(value.replace("\\", "/"))
    stem, dot, _ = base.rpartition(".")
    return stem if dot and stem else base


def read_list(wanted: WantedList) -> Iterator[Listed]:
    """The listed ids in file and row order, each once. AudioSet's files keep their header in a
    ``# YTID, start_seconds, ...`` comment line and put a space after each comma: both are handled.
    Raises OSError / ValueError for a list that cannot be read."""
    seen: set[str] = set()
    for path in wanted.files:
        lines = storage.read_text(path).lstrip("\ufeff").splitlines()
        first = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), None)
        if first is None:
            continue
        header = next(csv.reader([lines[first]], skipinitialspace=True))
        data = lines[first + 1 :]
        if first > 0:  # AudioSet: the header is the last comment line, the first plain line is data
            commented = next(csv.reader([lines[first - 1].lstrip("#").strip()], skipinitialspace=True), [])
            if any(c in commented for c in (wanted.id_column, *ID_COLUMNS) if c):
                header, data = commented, lines[first:]
        column = wanted.id_column or next((c for c in ID_COLUMNS if c in header), None)
        if column is None or column not in header:
            raise ValueError(f"{path}: no id column (looked for {wanted.id_column or ', '.join(ID_COLUMNS)})")
        at = header.index(column)
        before = len(lines) - len(data)  # lines above the first data row
        reader = csv.reader(io.StringIO("\n".join(data)), skipinitialspace=True)
        for n, row in enumerate(reader, start=1):
            value = row[at].strip() if at < len(row) else ""
            if value and not value.startswith("#") and value not in seen:
                seen.add(value)
                yield Listed(path, n, value, before + reader.line_num)


def hold_to_list(
    source_name: str, wanted: WantedList, items: Iterator[Record | Reject], notes: SourceNotes | None = None
) -> Iterator[Record | Reject]:
    """The mirror's records and rejects of listed clips, then one ``not_in_mirror`` per listed id
    that the mirror lacks; a list that cannot be read is one reject and the mirror is passed as is.
    ``notes`` gets the counts: listed, obtained, missing, and the mirror's clips not listed."""
    try:
        listed = {_match_key(wanted, x.id): x for x in read_list(wanted)}
    except (OSError, ValueError, UnicodeDecodeError) as e:
        yield Reject(source_name, Stage.MANIFEST, Code.UNREADABLE_METADATA, f"wanted list: {str(e)[:300]}")
        yield from items
        return
    obtained: set[str] = set()
    not_listed = 0
    for item in items:
        keys = _item_keys(wanted, item)
        hits = [k for k in keys if k in listed]
        if hits:
            obtained.update(hits)
            yield item
        elif isinstance(item, Reject) and not keys:
            yield item  # a reject of no clip in particular (an unreadable file): it may hold listed ones
        else:
            not_listed += 1
    missing = 0
    for key, x in listed.items():
        if key not in obtained:
            missing += 1
            yield Reject(
                source_name,
                Stage.MANIFEST,
                Code.NOT_IN_MIRROR,
                f"listed in {posixpath.basename(x.file)} (line {x.line}) but not in the mirror",
                path=x.file,
                row=x.row,
                source_id=x.id,
            )
    if notes is not None:
        notes.wanted, notes.obtained, notes.missing, notes.not_listed = (
            len(listed),
            len(obtained),
            missing,
            not_listed,
        )


def _match_key(wanted: WantedList, value: str) -> str:
    return f"{wanted.origin}:{value}" if wanted.origin else _stem(value)


def _item_keys(wanted: WantedList, item: Record | Reject) -> list[str]:
    if wanted.origin and isinstance(item, Record):
        return [o for o in item.origin_ids if o.startswith(wanted.origin + ":")]
    sid = item.source_id
    if not sid:
        return []
    return (
        [_match_key(wanted, sid)]
        if not wanted.origin
        else [f"{wanted.origin}:{sid}", _match_key(wanted, sid)]
    )
