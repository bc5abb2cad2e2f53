"""A metadata table joined to a source's records by id: license, attribution and captions per clip.

Audio and its metadata are often published apart: LAION's Freesound tars carry captions and tags in
their JSON, and the per-clip license in ``freesound_no_overlap_meta.csv`` next to them. Any source may
name such a table in ``options.join`` (every adapter accepts it; :func:`manifests.registry.read_source`
applies it after the adapter, before ``wanted``)::

    options:
      join:
        files: ${HUB}/CLAP_freesound/freesound_no_overlap_meta.csv   # CSV, TSV, JSONL, Parquet or JSON
        key: freesound_id            # the table's id column
        origin: freesound            # it meets the records' origin ids freesound:<id>
        license: license             # per-clip license
        attribution: "sound {freesound_id} by {username} ({freesound_url})"   # a column or a template
        captions: [caption_1, caption_2]   # added to the record's own (replace_captions: true replaces)

Without ``origin`` a row meets the record whose id has the same stem (``2394.flac`` and
``train_1/0/2394`` both read ``2394``). A value from the table replaces the record's (an empty cell
leaves it); a record the table has no row for keeps what its source gave it. The spec load checks that
the named columns exist (manifests/options.py's MetadataJoin). The table is read once per source read
and held in memory (about 200 bytes a row: ~100 MB for LAION's 460 801 Freesound rows). `clapcorpus
plan` and the run's ``summary.json`` say how many records found a row (``join``: ``matched``,
``unmatched``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.manifests.notes import SourceNotes
from clap_corpus.manifests.options import MetadataJoin, template_fields
from clap_corpus.manifests.tables import NotText, RowError, read_table, text_list, text_value


@dataclass(frozen=True)
class Row:
    license: str | None
    attribution: str | None
    captions: tuple[str, ...]


def _stem(value: str) -> str:
    base = posixpath.basename(value.replace("\\", "/"))
    stem, dot, _ = base.rpartition(".")
    return stem if dot and stem else base


def _key(value: str) -> str:
    if value.endswith(".0") and value[:-2].isdigit():
        return value[:-2]  # an id that went through a float column (pandas' NaN handling)
    return value


def _rows(join: MetadataJoin) -> Iterator[tuple[int, Mapping[str, Any]] | RowError]:
    for path in join.files:
        yield from read_table(path, join.format)


def load(join: MetadataJoin) -> dict[str, Row]:
    """match key -> the table's values; raises OSError / ValueError (unreadable table)."""
    table: dict[str, Row] = {}
    for item in _rows(join):
        if isinstance(item, RowError):
            continue  # a broken row joins nothing; its record keeps its own metadata
        _, row = item
        raw = text_value(row.get(join.key))
        if raw is None:
            continue
        key = f"{join.origin}:{_key(raw)}" if join.origin else _stem(_key(raw))
        try:
            captions = tuple(c for col in join.captions for c in text_list(row.get(col), separator=None))
        except NotText:
            captions = ()
        attribution = None
        if join.attribution:
            cells = {f: text_value(row.get(f)) for f in template_fields(join.attribution)}
            if any(cells.values()):
                attribution = (
                    join.attribution.format(**{k: v or "" for k, v in cells.items()})
                    if "{" in join.attribution
                    else cells[join.attribution]
                )
        table.setdefault(
            key, Row(text_value(row.get(join.license)) if join.license else None, attribution, captions)
        )
    return table


def _keys(join: MetadataJoin, record: Record) -> list[str]:
    if join.origin:
        return [o for o in record.origin_ids if o.startswith(join.origin + ":")]
    return [_stem(record.source_id)]


def apply(
    source_name: str, join: MetadataJoin, items: Iterator[Record | Reject], notes: SourceNotes | None = None
) -> Iterator[Record | Reject]:
    """The source's items, each record completed from its row of the table; a table that cannot be
    read is one reject (naming it) and the records pass as they are."""
    try:
        table = load(join)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        yield Reject(
            source_name,
            Stage.MANIFEST,
            Code.UNREADABLE_METADATA,
            f"join table: {str(e)[:300]}",
            path=join.files[0] if join.files else "",
        )
        table = {}
    matched = unmatched = 0
    for item in items:
        if isinstance(item, Reject):
            yield item
            continue
        row = next((table[k] for k in _keys(join, item) if k in table), None)
        if row is None:
            unmatched += 1
            yield item
            continue
        matched += 1
        captions = item.captions
        if row.captions:
            captions = (
                row.captions if join.replace_captions else tuple(dict.fromkeys((*captions, *row.captions)))
            )
        yield replace(
            item,
            license=row.license or item.license,
            attribution=row.attribution or item.attribution,
            captions=captions,
        )
    if notes is not None:
        notes.joined, notes.not_joined = matched, unmatched
