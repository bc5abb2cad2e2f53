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
from typing import Literal

from pydantic import Field

from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.base import Adapter, NativeRow
from clap_corpus.manifests.options import AdapterOptions
from clap_corpus.manifests.tables import NotText, RowError, jsonable, read_rows, text_list, text_value

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
DEFAULT_DURATION_S = 10.0  # no documented clip length for an arbitrary manifest: an assumption


class Options(AdapterOptions):
    columns: dict[str, str] = Field(default_factory=dict)  # role -> column name, for columns named otherwise
    list_separator: str = "|"  # separator of list cells given as one text
    format: Literal["csv", "tsv", "jsonl", "parquet"] | None = None  # default: from the extension


class GenericAdapter(Adapter):
    Options = Options
    options: Options

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        assert self.source.manifest is not None  # the spec loader requires it for this adapter
        cols = {**DEFAULT_COLUMNS, **self.options.columns}
        sep = self.options.list_separator
        known = set(cols.values())
        for item in read_rows(self.source.manifest, self.options.format):
            if isinstance(item, RowError):
                yield item
                continue
            row_no, row = item
            raw_path = text_value(row.get(cols["audio"]))
            source_id = text_value(row.get(cols["id"])) or raw_path or ""
            if raw_path is None:
                yield self.reject(
                    row_no,
                    Code.MISSING_PATH,
                    f"column '{cols['audio']}' is empty",
                    path="",
                    source_id=source_id or None,
                )
                continue
            captions: tuple[str, ...] = ()
            labels: tuple[str, ...] = ()
            keywords: tuple[str, ...] = ()
            problem = None
            try:
                captions = text_list(row.get(cols["captions"]), separator=sep, strict=True)
            except NotText as e:
                problem = (Code.CAPTION_NOT_TEXT, f"column '{cols['captions']}': {e}")
            if problem is None:
                try:
                    labels = text_list(row.get(cols["labels"]), separator=sep, strict=False)
                    keywords = text_list(row.get(cols["keywords"]), separator=sep, strict=False)
                except NotText as e:
                    problem = (Code.TAG_NOT_TEXT, str(e))
            yield NativeRow(
                row=row_no,
                id=source_id,
                audio=raw_path,
                split=text_value(row.get(cols["split"])),
                captions=captions,
                labels=labels,
                keywords=keywords,
                license=text_value(row.get(cols["license"])),
                attribution=text_value(row.get(cols["attribution"])),
                original={k: jsonable(v) for k, v in sorted(row.items()) if k not in known},
                reject_path=raw_path,
                problem=problem,
            )


read_generic = GenericAdapter.read
