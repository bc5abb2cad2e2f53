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

WavCaps (``format: wavcaps``, the default for a ``.json`` manifest): one of its ``json_files``
(``fsd_final.json``, ``bbc_final.json``, ``sb_final.json``, ``as_final.json``), a ``data`` list of
entries with ``id``, ``caption`` (``options.caption_columns`` may name others, such as BBC's
``description``) and, per subset, ``tags``, ``author``, ``duration``, ``download_link``.
The file is ``<id>`` (AudioSet_SL's ids are already file names); ``options.origin`` makes the ids
origin ids (``freesound`` -> ``freesound:<id>``; ``youtube`` -> ``youtube:<11-character id>``, the
``Y`` prefix and extension dropped) so the leakage guard sees WavCaps' overlap with the other sources.

Tables of evaluation sets made of Freesound clips (ESC-50's ``meta/esc50.csv``, UrbanSound8K's
``metadata/UrbanSound8K.csv``): ``options.origin`` + ``options.origin_column`` (``src_file``, ``fsID``)
give each clip its origin id, so the leakage guard matches other copies of it by id; and
``options.file_pattern`` builds the file's path from the row's columns where the dataset keeps files in
folders the row names (UrbanSound8K: ``fold{fold}/{slice_file_name}``).

Tags such as ``adults_talking`` become keywords ("adults talking"). Audio: ``<audio_root>/<file>``, or,
with ``options.archives`` (zip or tar files, globs allowed), the member of those archives whose stem is
the file's stem (``180913.wav`` -> ``FreeSound_flac/180913.flac``): WavCaps ships FLAC in zips, some
split in parts (``FreeSound.z01`` ... ``FreeSound.zip``: name the ``.zip``), read in place by
:mod:`manifests.archives`; a file no archive holds is ``missing_audio``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.archives import check_archives, member_index, stem_of
from clap_corpus.manifests.base import Adapter, NativeRow
from clap_corpus.manifests.common import parse_float
from clap_corpus.manifests.exclusion import normalized
from clap_corpus.manifests.options import AdapterOptions, SpecPaths
from clap_corpus.manifests.tables import NotText, RowError, jsonable, read_rows, text_list, text_value
from clap_corpus.transforms import storage

DEFAULT_DURATION_S = 10.0  # MACS: TAU Urban Acoustic Scenes 2019 files are 10 s segments


class Options(AdapterOptions):
    format: Literal["yaml", "csv", "tsv", "jsonl", "parquet", "wavcaps"] | None = None  # default: extension
    encoding: str = "utf-8-sig"  # text encoding of a CSV/TSV file
    file_column: str | None = None
    caption_columns: list[str] = Field(default_factory=list)
    keyword_columns: list[str] = Field(default_factory=list)
    keyword_separator: str = ","  # separator of keywords given as one text cell
    duration_column: str | None = None  # clip length in seconds (BBC: secs)
    license_column: str | None = None
    attribution_column: str | None = None
    split_column: str | None = None
    archives: SpecPaths | None = None  # zip / tar files holding the audio (WavCaps' zips)
    origin: Literal["freesound", "youtube"] | None = None  # the ids are these origin ids (WavCaps)
    # tables: the column holding each clip's id in the `origin` namespace (ESC-50's src_file,
    # UrbanSound8K's fsID: Freesound ids), so the leakage guard matches the clip by id too
    origin_column: str | None = None
    # tables: the file's path under the audio root built from the row's columns, for datasets that
    # keep files in folders the row names (UrbanSound8K: "fold{fold}/{slice_file_name}")
    file_pattern: str | None = None

    @model_validator(mode="after")
    def _origin_named(self) -> Options:
        if self.origin_column and not self.origin:
            raise ValueError("origin_column needs origin (the namespace of its ids: freesound, youtube)")
        return self


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
    origin_ids: tuple[str, ...] = ()


def _tag_text(tag: str) -> str:
    return " ".join(tag.replace("_", " ").split())


class CaptionFilesAdapter(Adapter):
    Options = Options
    options: Options

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        manifest = self.source.manifest
        assert manifest is not None
        fmt = self.options.format or _format_of(manifest)
        archives = self.options.archives
        index: dict[str, ArchiveMember] | None = None
        if archives:  # a zip's directory is metadata: `clapcorpus plan` reads it too
            try:
                index = member_index(archives)
            except OSError as e:
                yield self.reject(None, Code.UNREADABLE_METADATA, str(e)[:300])
                return
        sounds: dict[str, _Sound] = {}
        if fmt == "yaml":
            rows = self._macs_rows()
        elif fmt == "wavcaps":
            rows = self._wavcaps_rows()
        else:
            rows = self._table_rows(fmt)
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
            audio: str | ArchiveMember = name
            if archives:
                member = index.get(stem_of(name)) if index is not None else None
                if member is None:
                    yield self.reject(
                        sound.row, Code.MISSING_AUDIO, f"no archive member for {name!r}", source_id=name
                    )
                    continue
                audio = member
            yield NativeRow(
                row=sound.row,
                id=name,
                audio=audio,
                origin_ids=sound.origin_ids,
                split=sound.split,
                captions=tuple(dict.fromkeys(sound.captions)),
                keywords=tuple(dict.fromkeys(k for k in (_tag_text(x) for x in sound.keywords) if k)),
                license=sound.license,
                attribution=sound.attribution,
                expected_duration_s=sound.duration,
                original={"file": name, **sound.original},
            )

    def _top_level_list(
        self, parse: Callable[[str], Any], error: type[Exception], what: str, key: str, layout: str
    ) -> list[Any] | Reject:
        """The manifest's top-level ``key`` list (MACS' YAML, WavCaps' JSON), or the reject saying why not."""
        assert self.source.manifest is not None
        try:
            doc = parse(storage.read_text(self.source.manifest))
        except (error, UnicodeDecodeError) as e:
            return self.reject(None, Code.UNREADABLE_METADATA, f"not a readable {what}: {str(e)[:300]}")
        found = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(found, list):
            return self.reject(
                None, Code.UNREADABLE_METADATA, f"expected a top-level '{key}' list (the {layout} layout)"
            )
        return found

    def _macs_rows(self) -> Iterator[tuple[str, _Sound] | Reject]:
        files = self._top_level_list(yaml.safe_load, yaml.YAMLError, "YAML caption file", "files", "MACS")
        if isinstance(files, Reject):
            yield files
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

    def _wavcaps_rows(self) -> Iterator[tuple[str, _Sound] | Reject]:
        data = self._top_level_list(json.loads, ValueError, "JSON file", "data", "WavCaps")
        if isinstance(data, Reject):
            yield data
            return
        origin = self.options.origin
        for n, entry in enumerate(data, start=1):
            if not isinstance(entry, dict):
                yield self.reject(n, Code.MALFORMED_ROW, f"entry is a {type(entry).__name__}, not an object")
                continue
            name = text_value(entry.get("id"))
            if name is None:
                yield self.reject(n, Code.MISSING_ID, "entry has no 'id'")
                continue
            try:
                captions = [
                    c
                    for col in self.options.caption_columns or ["caption"]
                    for c in text_list(entry.get(col), separator=None)
                ]
                keywords = list(text_list(entry.get("tags"), separator=",", strict=False))
            except NotText as e:
                yield self.reject(n, Code.CAPTION_NOT_TEXT, str(e), source_id=name)
                continue
            oid = stem_of(name)
            if origin == "youtube" and len(oid) == 12 and oid.startswith("Y"):
                oid = oid[1:]
            yield (
                name,
                _Sound(
                    row=n,
                    captions=captions,
                    keywords=keywords,
                    attribution=text_value(entry.get("author")),
                    duration=parse_float(entry.get("duration")),
                    original=_original(entry, {"id", "tags", *(self.options.caption_columns or ["caption"])}),
                    origin_ids=(f"{origin}:{oid}",) if origin else (),
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
            if opts.file_pattern:
                try:
                    name = opts.file_pattern.format(**{k: "" if v is None else v for k, v in row.items()})
                except (KeyError, IndexError, ValueError) as e:
                    yield self.reject(
                        row_no, Code.MISSING_PATH, f"file_pattern names no column of the row ({e})"
                    )
                    continue
            else:
                name = text_value(row.get(file_col)) if file_col else None
            if name is None:
                yield self.reject(
                    row_no, Code.MISSING_PATH, f"no file name (column '{file_col or FILE_COLUMNS[0]}')"
                )
                continue
            origin_ids: tuple[str, ...] = ()
            if opts.origin_column:
                oid = text_value(row.get(opts.origin_column))
                if oid is None:
                    yield self.reject(
                        row_no,
                        Code.MISSING_ID,
                        f"no {opts.origin} id (column '{opts.origin_column}')",
                        source_id=name,
                    )
                    continue
                origin_ids = (f"{opts.origin}:{normalized(opts.origin or '', oid)}",)
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
                    origin_ids=origin_ids,
                ),
            )


read_captionfiles = CaptionFilesAdapter.read


def check_source(source: Any) -> None:
    """At spec load: ``options.archives`` names each archive once, by the file it is read through."""
    archives = Options.read_back(source.options).archives
    if archives:
        check_archives(archives)


def _format_of(manifest: str) -> str | None:
    name = manifest.lower()
    return "yaml" if name.endswith((".yaml", ".yml")) else "wavcaps" if name.endswith(".json") else None


def _cell(row: Mapping[str, Any], column: str | None) -> str | None:
    return text_value(row.get(column)) if column else None


def _original(row: Mapping[str, Any], named: set[Any]) -> dict[str, Any]:
    return {
        str(k): jsonable(v) for k, v in sorted(row.items(), key=lambda kv: str(kv[0])) if k and k not in named
    }
