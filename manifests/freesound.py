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

import json
import posixpath
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from core.records import Record, Reject, make_key
from manifests.common import (
    AudioFinder,
    audio_path,
    clean_title,
    corpus_split,
    first_sentence,
    parse_float,
    placement_reject,
    reject,
)
from manifests.options import COMMON, Opt, file_pattern
from manifests.source import PathRejected, SourceSpec
from manifests.tables import NotText, RowError, jsonable, read_rows, text_list, text_value
from transforms import storage

OPTIONS = {
    **COMMON,
    "columns": Opt("dict", doc="role -> column name, for columns with other names"),
    "format": Opt(
        "str", choices=("csv", "tsv", "jsonl", "parquet", "json"), doc="default: from the extension"
    ),
    "tag_separator": Opt("str", doc="separator of tags given as one text cell (default ',')"),
    "origin": Opt("str", doc="origin id prefix (default 'freesound'; '' for none)"),
    "file_from_url": Opt("bool", doc="take the file name from the URL column"),
    "file_pattern": file_pattern("id"),
}
# LAION-Audio-630K's Freesound part: 515 581 clips, 3 033.38 h (its Hugging Face card) -> 21.2 s.
DEFAULT_DURATION_S = 21.2
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


def iter_metadata(path: str, fmt: str | None) -> Iterator[tuple[int, Mapping[str, Any]] | RowError]:
    """Rows of a table, or of a JSON document (list of objects / object keyed by id).

    A JSON document is read whole (memory grows with it); use JSONL for large dumps. A ``.json``
    file that is not one document is read as JSON lines.
    """
    is_json = fmt == "json" or (fmt is None and path.lower().endswith(".json"))
    if not is_json:
        yield from read_rows(path, fmt)
        return
    try:
        doc = json.loads(storage.read_text(path))
    except ValueError:
        yield from read_rows(path, "jsonl")
        return
    items = doc.items() if isinstance(doc, dict) else enumerate(doc if isinstance(doc, list) else [doc])
    for n, (key, obj) in enumerate(items, start=1):
        if not isinstance(obj, dict):
            yield RowError(n, f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield n, obj if isinstance(doc, list) or "id" in obj else {"id": key, **obj}


def read_freesound(source: SourceSpec) -> Iterator[Record | Reject]:
    assert source.manifest is not None
    roles = {role: (source.option("columns") or {}).get(role) for role in ROLES}
    sep = source.option("tag_separator", ",")
    origin = source.option("origin", "freesound")
    finder = AudioFinder(source, id_of_stem)
    fmt = source.option("format")
    for item in iter_metadata(source.manifest, fmt):
        if isinstance(item, RowError):
            yield reject(source, item.row, "malformed_row", item.reason)
            continue
        row_no, row = item
        cols = {
            role: roles[role] or next((c for c in names if c in row), None) for role, names in ROLES.items()
        }
        yield _record(source, row_no, row, cols, sep, origin, finder)


def _get(row: Mapping[str, Any], col: str | None) -> Any:
    return row.get(col) if col else None


def _record(
    source: SourceSpec,
    row_no: int,
    row: Mapping[str, Any],
    cols: dict[str, str | None],
    sep: str,
    origin: str,
    finder: AudioFinder,
) -> Record | Reject:
    sid = text_value(_get(row, cols["id"]))
    file_cell = text_value(_get(row, cols["file"]))
    url = text_value(_get(row, cols["url"]))
    if sid is not None and sid.endswith(".0") and sid[:-2].isdigit():
        sid = sid[:-2]  # ids that went through a float column (pandas NaN handling)
    if not file_cell and source.option("file_from_url") and url:
        file_cell = urllib.parse.unquote(posixpath.basename(urllib.parse.urlparse(url).path)) or None
    source_id = sid or file_cell
    if source_id is None:
        return reject(source, row_no, "missing_id", "the row has neither an id nor a file name")
    try:
        audio = audio_path(source, file_cell) if file_cell else finder.find(source_id, {"id": source_id})
        split = corpus_split(source, text_value(_get(row, cols["split"])))
    except (PathRejected, ValueError) as e:
        return placement_reject(source, row_no, e, source_id=source_id)
    caption_cols = sorted(
        (int(m.group(1) or 0), k) for k in row if (m := _CAPTION_RE.match(str(k))) and k != "caption_t5"
    )
    try:
        captions = [c for _, k in caption_cols for c in text_list(row[k], separator=None)]
        keywords = text_list(_get(row, cols["tags"]), separator=sep, strict=False)
    except NotText as e:
        return reject(source, row_no, "caption_not_text", str(e), source_id=source_id)
    title = text_value(_get(row, cols["title"]))
    if not captions:
        description = text_value(_get(row, cols["description"]))
        captions = [t for t in (clean_title(title or ""), first_sentence(description or "")) if t]
    user = text_value(_get(row, cols["username"]))
    used = {c for c in cols.values() if c} | {k for _, k in caption_cols}
    return Record(
        key=make_key(source.name, source_id),
        source=source.name,
        source_id=source_id,
        audio_path=audio,
        row=row_no,
        split=split,
        captions=tuple(dict.fromkeys(captions)),
        keywords=keywords,
        license=text_value(_get(row, cols["license"])) or source.license,
        attribution=f"{title or source_id} by {user}" + (f" ({url})" if url else "") if user else None,
        origin_ids=(f"{origin}:{sid}",) if origin and sid else (),
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
    )
