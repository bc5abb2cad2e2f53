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
from typing import Any, Literal

import yaml
from pydantic import Field

from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.base import Adapter, NativeRow
from clap_corpus.manifests.common import parse_float
from clap_corpus.manifests.options import AdapterOptions
from clap_corpus.manifests.tables import NotText, RowError, jsonable, read_rows, text_list, text_value
from clap_corpus.transforms import storage

DEFAULT_DURATION_S = 10.0  # MACS: TAU Urban Acoustic Scenes 2019 files are 10 s segments


class Options(AdapterOptions):
    format: Literal["yaml", "csv", "tsv", "jsonl", "parquet"] | None = None  # default: from the extension
    encoding: str = "utf-8-sig"  # text encoding of a CSV/TSV file
    file_column: str | None = None
    caption_columns: list[str] = Field(default_factory=list)
    keyword_columns: list[str] = Field(default_factory=list)
    keyword_separator: str = ","  # separator of keywords given as one text cell
    duration_column: str | None = None  # clip length in seconds (BBC: secs)
    license_column: str | None = None
    attribution_column: str | None = None
    split_column: str | None = None


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


class CaptionFilesAdapter(Adapter):
    Options = Options
    options: Options

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        manifest = self.source.manifest
        assert manifest is not None
        fmt = self.options.format or ("yaml" if manifest.lower().endswith((".yaml", ".yml")) else None)
        sounds: dict[str, _Sound] = {}
        rows = self._macs_rows() if fmt == "yaml" else self._table_rows(fmt)
        for item in rows:
            if not isinstance(item, tuple):
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
            yield NativeRow(
                row=sound.row,
                id=name,
                audio=name,
                split=sound.split,
                captions=tuple(dict.fromkeys(sound.captions)),
                keywords=tuple(dict.fromkeys(k for k in (_tag_text(x) for x in sound.keywords) if k)),
                license=sound.license,
                attribution=sound.attribution,
                expected_duration_s=sound.duration,
                original={"file": name, **sound.original},
            )

    def _macs_rows(self) -> Iterator[tuple[str, _Sound] | Reject]:
        assert self.source.manifest is not None
        try:
            doc = yaml.safe_load(storage.read_text(self.source.manifest))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            yield self.reject(
                None, Code.UNREADABLE_METADATA, f"not a readable YAML caption file: {str(e)[:300]}"
            )
            return
        files = doc.get("files") if isinstance(doc, dict) else None
        if not isinstance(files, list):
            yield self.reject(
                None, Code.UNREADABLE_METADATA, "expected a top-level 'files' list (the MACS layout)"
            )
            return
        for n, entry in enumerate(files, start=1):
            if not isinstance(entry, dict):
                yield self.reject(n, Code.MALFORMED_ROW, f"entry is a {type(entry).__name__}, not a mapping")
                continue
            name = text_value(entry.get("filename"))
            if name is None:
                yield self.reject(n, Code.MISSING_PATH, "entry has no 'filename'")
                continue
            annotations = entry.get("annotations")
            if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
                yield self.reject(
                    n, Code.MALFORMED_ROW, "'annotations' is not a list of mappings", source_id=name
                )
                continue
            try:
                captions = [c for a in annotations for c in text_list(a.get("sentence"), separator=None)]
                keywords = [
                    k for a in annotations for k in text_list(a.get("tags"), separator=",", strict=False)
                ]
            except NotText as e:
                yield self.reject(n, Code.CAPTION_NOT_TEXT, str(e), source_id=name)
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

    def _table_rows(self, fmt: str | None) -> Iterator[tuple[str, _Sound] | RowError | Reject]:
        assert self.source.manifest is not None
        opts = self.options
        for item in read_rows(self.source.manifest, fmt, encoding=opts.encoding):
            if isinstance(item, RowError):
                yield item
                continue
            row_no, row = item
            file_col = opts.file_column or next((c for c in FILE_COLUMNS if c in row), None)
            caption_cols = opts.caption_columns or [next((c for c in CAPTION_COLUMNS if c in row), "caption")]
            name = text_value(row.get(file_col)) if file_col else None
            if name is None:
                yield self.reject(
                    row_no, Code.MISSING_PATH, f"no file name (column '{file_col or FILE_COLUMNS[0]}')"
                )
                continue
            try:
                captions = [c for col in caption_cols for c in text_list(row.get(col), separator=None)]
                keywords = [
                    k
                    for col in opts.keyword_columns
                    for k in text_list(row.get(col), separator=opts.keyword_separator, strict=False)
                ]
            except NotText as e:
                yield self.reject(row_no, Code.CAPTION_NOT_TEXT, str(e), source_id=name)
                continue
            named = {file_col, *caption_cols, *opts.keyword_columns}
            yield (
                name,
                _Sound(
                    row=row_no,
                    captions=captions,
                    keywords=keywords,
                    license=_cell(row, opts.license_column),
                    attribution=_cell(row, opts.attribution_column),
                    duration=parse_float(row.get(opts.duration_column)) if opts.duration_column else None,
                    split=_cell(row, opts.split_column),
                    original=_original(row, named),
                ),
            )


read_captionfiles = CaptionFilesAdapter.read


def _cell(row: Mapping[str, Any], column: str | None) -> str | None:
    return text_value(row.get(column)) if column else None


def _original(row: Mapping[str, Any], named: set[Any]) -> dict[str, Any]:
    return {
        str(k): jsonable(v) for k, v in sorted(row.items(), key=lambda kv: str(kv[0])) if k and k not in named
    }
