"""Freesound-style metadata, and the LAION-Audio-630K metadata files built the same way.

One row per sound, in CSV / TSV / JSONL / Parquet, or a JSON document (a list of objects, or an
object keyed by id). Columns are found by name; the first present of each role wins, and
``options.columns`` renames any role::

    id           id, freesound_id, sound_id, epidemic_id
    file         audio_filename, file_name, filename, fname        (else: by id, or from the URL)
    captions     caption, caption1, caption_1, caption2 ...        (LAION's released CSVs)
    title        title, name                                       (Freesound API: "name")
    description  description
    tags         tags, "tags:" (LAION's Freesound dump), metadataTags (Epidemic), tag, keywords
    license      license
    username     username, uploader, user, author
    url          freesound_url, url, download_url, view_link
    duration     duration, length, secs

Captions: the caption columns when a row has any; otherwise, as LAION made them (its Freesound scripts),
the title (extension stripped, '_' as space) and the first sentence of the description (HTML
removed). Tags become keywords. ``caption_t5`` (LAION's own K2C output) stays in original_data.
License and attribution ("<title> by <username> (<url>)") pass through per sound.

Origin ids: ``<origin>:<id>`` with ``options.origin`` (default "freesound"; set "" for sources whose
ids are not Freesound ids, e.g. Epidemic Sound). Audio: the file column if the row has one; else,
with ``options.file_from_url``, the URL's last path segment; else the file named by the id (a
listing of the audio root indexed by the leading number of each file name, or ``file_pattern``
with ``{id}``).
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.base import Adapter, Lookup, NativeRow
from clap_corpus.manifests.common import clean_title, first_sentence, parse_float
from clap_corpus.manifests.options import AdapterOptions, file_pattern_check
from clap_corpus.manifests.tables import NotText, RowError, jsonable, read_table, text_list, text_value

# LAION-Audio-630K's Freesound part: 515 581 clips, 3 033.38 h (its Hugging Face card) -> 21.2 s.
DEFAULT_DURATION_S = 21.2
FilePattern = Annotated[str, file_pattern_check("id")]


class Options(AdapterOptions):
    columns: dict[str, str] = Field(default_factory=dict)  # role -> column name, for columns with other names
    format: Literal["csv", "tsv", "jsonl", "parquet", "json"] | None = None  # default: from the extension
    tag_separator: str = ","  # separator of tags given as one text cell
    origin: str = "freesound"  # origin id prefix ('' for none)
    file_from_url: bool = False  # take the file name from the URL column
    file_pattern: FilePattern | None = None


ROLES: dict[str, tuple[str, ...]] = {
    "id": ("id", "freesound_id", "sound_id", "epidemic_id"),
    "file": ("audio_filename", "file_name", "filename", "fname"),
    "title": ("title", "name"),
    "description": ("description",),
    "tags": ("tags", "tags:", "metadataTags", "tag", "keywords"),
    "license": ("license",),
    "username": ("username", "uploader", "user", "author"),
    "url": ("freesound_url", "url", "download_url", "view_link"),
    "duration": ("duration", "length", "secs"),
    "split": ("split",),
}
_CAPTION_RE = re.compile(r"^caption_?(\d*)$")
_LEADING_ID_RE = re.compile(r"^(\d+)(?:[_\-. ].*)?$")


def id_of_stem(stem: str) -> str:
    """Downloads are named ``<id>.ext`` or ``<id>_<user>_<title>.ext``: index them by the id."""
    m = _LEADING_ID_RE.match(stem)
    return m.group(1) if m else stem


iter_metadata = read_table  # the reader moved to tables.py; the name stays for callers


class FreesoundAdapter(Adapter):
    Options = Options
    options: Options

    def index_key(self, stem: str) -> str | None:
        return id_of_stem(stem)

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        assert self.source.manifest is not None
        roles = {role: self.options.columns.get(role) for role in ROLES}
        for item in iter_metadata(self.source.manifest, self.options.format):
            if isinstance(item, RowError):
                yield item
                continue
            row_no, row = item
            cols = {
                role: roles[role] or next((c for c in names if c in row), None)
                for role, names in ROLES.items()
            }
            yield self._row(row_no, row, cols)

    def _row(self, row_no: int, row: Mapping[str, Any], cols: dict[str, str | None]) -> NativeRow | Reject:
        opts = self.options
        sid = text_value(_get(row, cols["id"]))
        file_cell = text_value(_get(row, cols["file"]))
        url = text_value(_get(row, cols["url"]))
        if sid is not None and sid.endswith(".0") and sid[:-2].isdigit():
            sid = sid[:-2]  # ids that went through a float column (pandas NaN handling)
        if not file_cell and opts.file_from_url and url:
            file_cell = urllib.parse.unquote(posixpath.basename(urllib.parse.urlparse(url).path)) or None
        source_id = sid or file_cell
        if source_id is None:
            return self.reject(row_no, Code.MISSING_ID, "the row has neither an id nor a file name")
        caption_cols = sorted(
            (int(m.group(1) or 0), k) for k in row if (m := _CAPTION_RE.match(str(k))) and k != "caption_t5"
        )
        problem = None
        captions: list[str] = []
        keywords: tuple[str, ...] = ()
        try:
            captions = [c for _, k in caption_cols for c in text_list(row[k], separator=None)]
            keywords = text_list(_get(row, cols["tags"]), separator=opts.tag_separator, strict=False)
        except NotText as e:
            problem = (Code.CAPTION_NOT_TEXT, str(e))
        title = text_value(_get(row, cols["title"]))
        if not captions:
            description = text_value(_get(row, cols["description"]))
            captions = [t for t in (clean_title(title or ""), first_sentence(description or "")) if t]
        user = text_value(_get(row, cols["username"]))
        used = {c for c in cols.values() if c} | {k for _, k in caption_cols}
        return NativeRow(
            row=row_no,
            id=source_id,
            audio=file_cell or Lookup(source_id, {"id": source_id}),
            split=text_value(_get(row, cols["split"])),
            captions=tuple(dict.fromkeys(captions)),
            keywords=keywords,
            license=text_value(_get(row, cols["license"])),
            attribution=f"{title or source_id} by {user}" + (f" ({url})" if url else "") if user else None,
            origin_ids=(f"{opts.origin}:{sid}",) if opts.origin and sid else (),
            expected_duration_s=parse_float(_get(row, cols["duration"])),
            original={
                **{
                    k: jsonable(row[k])
                    for k in (cols["title"], cols["description"], cols["url"])
                    if k and k in row
                },
                "id": source_id,
                **{
                    str(k): jsonable(v)
                    for k, v in sorted(row.items(), key=lambda kv: str(kv[0]))
                    if k and k not in used
                },
            },
            problem=problem,
        )


read_freesound = FreesoundAdapter.read


def _get(row: Mapping[str, Any], col: str | None) -> Any:
    return row.get(col) if col else None
