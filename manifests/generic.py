"""The generic adapter: a CSV / TSV / JSONL / Parquet manifest with one row per clip.

Columns (names configurable under ``options.columns``)::

    audio       path of the audio file, relative to the source's audio_root (required)
    captions    list of captions (a list, a JSON list, or text separated by options.list_separator)
    labels      list of class labels
    keywords    list of keywords / tags
    split       the clip's native split (mapped through split_map)
    id          the clip's id inside the source (default: the audio path)
    license     per-clip license (default: the source's license)
    attribution per-clip attribution

Every other column is kept in ``original_data``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from core.records import Record, Reject, make_key
from manifests.common import corpus_split, placement_reject
from manifests.source import SourceSpec, resolve_audio_path
from manifests.tables import NotText, RowError, jsonable, read_rows, text_list, text_value

DEFAULT_COLUMNS = {
    "audio": "audio",
    "captions": "captions",
    "labels": "labels",
    "keywords": "keywords",
    "split": "split",
    "id": "id",
    "license": "license",
    "attribution": "attribution",
}


def columns_for(source: SourceSpec) -> dict[str, str]:
    return {**DEFAULT_COLUMNS, **dict(source.option("columns", {}) or {})}


def read_generic(source: SourceSpec) -> Iterator[Record | Reject]:
    assert source.manifest is not None  # the spec loader requires it for this adapter
    cols = columns_for(source)
    sep = source.option("list_separator", "|")
    known = set(cols.values())
    for item in read_rows(source.manifest, source.option("format")):
        if isinstance(item, RowError):
            yield Reject(
                source.name, "manifest", "malformed_row", item.reason, path=source.manifest, row=item.row
            )
            continue
        row_no, row = item
        raw_path = text_value(row.get(cols["audio"]))
        source_id = text_value(row.get(cols["id"])) or raw_path or ""

        reject = partial(_reject, source.name, row_no, raw_path or "", source_id)
        if raw_path is None:
            yield reject("missing_path", f"column '{cols['audio']}' is empty")
            continue
        try:
            audio_path = resolve_audio_path(source, raw_path)
            split = corpus_split(source, text_value(row.get(cols["split"])))
        except ValueError as e:
            yield placement_reject(source, row_no, e, path=raw_path, source_id=source_id or None)
            continue
        try:
            captions = text_list(row.get(cols["captions"]), separator=sep, strict=True)
        except NotText as e:
            yield reject("caption_not_text", f"column '{cols['captions']}': {e}")
            continue
        try:
            labels = text_list(row.get(cols["labels"]), separator=sep, strict=False)
            keywords = text_list(row.get(cols["keywords"]), separator=sep, strict=False)
        except NotText as e:
            yield reject("tag_not_text", str(e))
            continue
        yield Record(
            key=make_key(source.name, source_id),
            source=source.name,
            source_id=source_id,
            audio_path=audio_path,
            row=row_no,
            split=split,
            captions=captions,
            labels=labels,
            keywords=keywords,
            license=text_value(row.get(cols["license"])) or source.license,
            attribution=text_value(row.get(cols["attribution"])),
            original={k: jsonable(v) for k, v in sorted(row.items()) if k not in known},
        )


def _reject(source: str, row: int, path: str, source_id: str, code: str, reason: str) -> Reject:
    return Reject(source, "manifest", code, reason, path=path, row=row, source_id=source_id or None)
