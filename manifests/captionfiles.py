"""Caption files: a file name plus one or more captions per sound, in two shapes.

MACS (``MACS.yaml``), one entry per TAU Urban Acoustic Scenes file, one annotation per annotator::

    files:
    - filename: airport-barcelona-0-0-a.wav
      annotations:
      - annotator_id: 133
        sentence: Adults talking and footsteps in a busy hall.
        tags: [adults_talking, footsteps]

Tables (CSV / TSV / JSONL / Parquet) such as WavText5K (``view_link,download_link,title,description,
fname,tags``) or the BBC Sound Effects list (``location,description,secs,category,CDNumber,CDName,
tracknum``): ``options.file_column`` names the file (default: the first of fname, file_name,
filename, location, file, audio, path), ``options.caption_columns`` the captions (default: the first of
caption, captions, sentence, text, description), ``options.keyword_columns`` keyword lists.
Rows naming the same file become ONE sample with all their captions (a MACS-like CSV with one row
per annotator); the rows of a table are grouped in memory.

Tags such as ``adults_talking`` become keywords ("adults talking"). Audio: ``<audio_root>/<file>``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from core.records import Record, Reject, make_key
from manifests.common import audio_path, corpus_split, parse_float, placement_reject, reject
from manifests.options import COMMON, Opt
from manifests.source import PathRejected, SourceSpec
from manifests.tables import NotText, RowError, jsonable, read_rows, text_list, text_value
from transforms import storage

OPTIONS = {
    **COMMON,
    "format": Opt(
        "str", choices=("yaml", "csv", "tsv", "jsonl", "parquet"), doc="default: from the extension"
    ),
    "encoding": Opt("str", doc="text encoding of a CSV/TSV file (default utf-8)"),
    "file_column": Opt("str"),
    "caption_columns": Opt("list"),
    "keyword_columns": Opt("list"),
    "keyword_separator": Opt("str", doc="separator of keywords given as one text cell (default ',')"),
    "duration_column": Opt("str", doc="clip length in seconds (BBC: secs)"),
    "license_column": Opt("str"),
    "attribution_column": Opt("str"),
    "split_column": Opt("str"),
}
DEFAULT_DURATION_S = 10.0  # MACS: TAU Urban Acoustic Scenes 2019 files are 10 s segments
FILE_COLUMNS = ("fname", "file_name", "filename", "location", "file", "audio", "path")
CAPTION_COLUMNS = ("caption", "captions", "sentence", "text", "description")


@dataclass
class _Sound:
    row: int
    captions: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    license: str | None = None
    attribution: str | None = None
    duration: float | None = None
    split: str | None = None
    original: dict[str, Any] = field(default_factory=dict)


def _tag_text(tag: str) -> str:
    return " ".join(tag.replace("_", " ").split())


def read_captionfiles(source: SourceSpec) -> Iterator[Record | Reject]:
    assert source.manifest is not None
    fmt = source.option("format") or ("yaml" if source.manifest.lower().endswith((".yaml", ".yml")) else None)
    sounds: dict[str, _Sound] = {}
    rows = _macs_rows(source) if fmt == "yaml" else _table_rows(source, fmt)
    for item in rows:
        if isinstance(item, Reject):
            yield item
            continue
        name, sound = item
        have = sounds.get(name)
        if have is None:
            sounds[name] = sound
            continue
        have.captions += sound.captions
        have.keywords += sound.keywords
        have.license = have.license or sound.license
        have.attribution = have.attribution or sound.attribution
        have.duration = have.duration if have.duration is not None else sound.duration
    for name, sound in sounds.items():
        try:
            audio = audio_path(source, name)
            split = corpus_split(source, sound.split)
        except (PathRejected, ValueError) as e:
            yield placement_reject(source, sound.row, e, source_id=name)
            continue
        yield Record(
            key=make_key(source.name, name),
            source=source.name,
            source_id=name,
            audio_path=audio,
            row=sound.row,
            split=split,
            captions=tuple(dict.fromkeys(sound.captions)),
            keywords=tuple(dict.fromkeys(k for k in (_tag_text(x) for x in sound.keywords) if k)),
            license=sound.license or source.license,
            attribution=sound.attribution,
            expected_duration_s=sound.duration,
            original={"file": name, **sound.original},
        )


def _macs_rows(source: SourceSpec) -> Iterator[tuple[str, _Sound] | Reject]:
    assert source.manifest is not None
    try:
        doc = yaml.safe_load(storage.read_text(source.manifest))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        yield reject(source, None, "unreadable_metadata", f"not a readable YAML caption file: {str(e)[:300]}")
        return
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list):
        yield reject(
            source, None, "unreadable_metadata", "expected a top-level 'files' list (the MACS layout)"
        )
        return
    for n, entry in enumerate(files, start=1):
        if not isinstance(entry, dict):
            yield reject(source, n, "malformed_row", f"entry is a {type(entry).__name__}, not a mapping")
            continue
        name = text_value(entry.get("filename"))
        if name is None:
            yield reject(source, n, "missing_path", "entry has no 'filename'")
            continue
        annotations = entry.get("annotations")
        if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
            yield reject(
                source, n, "malformed_row", "'annotations' is not a list of mappings", source_id=name
            )
            continue
        try:
            captions = [c for a in annotations for c in text_list(a.get("sentence"), separator=None)]
            keywords = [k for a in annotations for k in text_list(a.get("tags"), separator=",", strict=False)]
        except NotText as e:
            yield reject(source, n, "caption_not_text", str(e), source_id=name)
            continue
        yield (
            name,
            _Sound(
                row=n,
                captions=captions,
                keywords=keywords,
                original={"annotator_ids": [jsonable(a.get("annotator_id")) for a in annotations]},
            ),
        )


def _table_rows(source: SourceSpec, fmt: str | None) -> Iterator[tuple[str, _Sound] | Reject]:
    assert source.manifest is not None
    opt = source.option
    kw_sep = opt("keyword_separator", ",")
    for item in read_rows(source.manifest, fmt, encoding=opt("encoding", "utf-8-sig")):
        if isinstance(item, RowError):
            yield reject(source, item.row, "malformed_row", item.reason)
            continue
        row_no, row = item
        file_col = opt("file_column") or next((c for c in FILE_COLUMNS if c in row), None)
        caption_cols = opt("caption_columns") or [next((c for c in CAPTION_COLUMNS if c in row), "caption")]
        name = text_value(row.get(file_col)) if file_col else None
        if name is None:
            yield reject(
                source, row_no, "missing_path", f"no file name (column '{file_col or FILE_COLUMNS[0]}')"
            )
            continue
        try:
            captions = [c for col in caption_cols for c in text_list(row.get(col), separator=None)]
            keywords = [
                k
                for col in opt("keyword_columns") or []
                for k in text_list(row.get(col), separator=kw_sep, strict=False)
            ]
        except NotText as e:
            yield reject(source, row_no, "caption_not_text", str(e), source_id=name)
            continue
        named = {file_col, *caption_cols, *(opt("keyword_columns") or [])}
        yield (
            name,
            _Sound(
                row=row_no,
                captions=captions,
                keywords=keywords,
                license=text_value(row.get(opt("license_column"))) if opt("license_column") else None,
                attribution=text_value(row.get(opt("attribution_column")))
                if opt("attribution_column")
                else None,
                duration=parse_float(row.get(opt("duration_column"))) if opt("duration_column") else None,
                split=text_value(row.get(opt("split_column"))) if opt("split_column") else None,
                original=_original(row, named),
            ),
        )


def _original(row: Mapping[str, Any], named: set[Any]) -> dict[str, Any]:
    return {
        str(k): jsonable(v) for k, v in sorted(row.items(), key=lambda kv: str(kv[0])) if k and k not in named
    }
