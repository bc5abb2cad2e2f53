"""WebDataset tars as a source: LAION's published tars, other mirrors' tars, and this project's own shards.

``audio_root`` holds the tars (a local folder or any Beam filesystem URL); ``options.pattern`` picks
them, relative to the root: a glob (``**.tar``, every tar at any depth: the default) or a brace pattern
as WebDataset writes them (``train/{000000..000099}.tar``), or a list of either. A tar is read as a
stream, once, while the manifest is read: members are grouped into samples the way the ``webdataset``
library groups them (the member name up to the first dot of its last path part is the sample key, the
rest its extension), only the JSON member's bytes are read, and the audio member becomes a
:class:`core.audio_ref.ArchiveMember` that the shard writer reads later. Nothing is unpacked to disk.
For an uncompressed tar the member's header offset travels with the reference, so reading one clip costs
one seek; a compressed tar (``.tar.gz``) is decompressed from its start for every clip, so prefer plain
tars (as WebDataset writes them) for large sets. Listing a plain tar reads its headers and JSON members
only, so `clapcorpus plan` reads them too (they are this source's metadata).

The audio member is the sample's first member whose extension is an audio one (``flac``, ``wav``,
``mp3`` ... any codec the decoder accepts; ``options.audio_extensions`` narrows or orders them). The
JSON member (``options.json_extension``, default ``json``) gives the metadata; the default field
names read LAION's tars (``text``, ``tag``, ``original_data``) and this project's own shards (also
``labels``, ``keywords``, ``source_id``, ``split``, ``license``, ``attribution``, ``origin_ids``,
``duration``), so both read with no options. ``tag`` is used when the document has neither
``labels`` nor ``keywords`` (LAION's tars), as ``options.tag_role`` says (keywords by default).

Origin ids (for the leakage guard) come from ``origin_ids`` (this project's shards), from the fields
``options.origin_fields`` names (dotted paths into the document -> origin kind; the spec's entries are
added to :data:`DEFAULT_ORIGIN_FIELDS`, which cover the YouTube and Freesound id fields of the public
tars; an entry mapped to ``""`` removes a default), and from YouTube / Freesound URLs among the
top-level values of ``original_data`` (``youtube.com/watch?v=``, ``youtu.be/``, Freesound's sound pages
and its API's ``/apiv2/sounds/<id>/download/``, which LAION's Freesound tars give as ``download_url``).
LAION's ``original_data.id`` is a Freesound id in those tars only: it is taken as one when the same
``original_data`` names a freesound.org URL (other LAION tars use ``id`` for other things).

A sample's id is ``<tar path under the root, without extension>/<key>`` (keys of different tars may
repeat), or the JSON field ``options.id_field``; this project's own shards, read back, keep the clip's
id: ``<source>/<source_id>`` from their JSON. The native split is the JSON's ``split`` field, else the
tar's folder when it names a split (``train``, ``valid``, ``test`` ...), also numbered as LAION numbers
its parts (``train_1``, ``train_2`` -> ``train``; a ``split_map`` entry for ``train_1`` itself wins).

Refused (one reject each, the accounting holds): a member whose name leaves its sample (``../x``, an
absolute name), a link or device member, a JSON member that is not an object or is over
:data:`MAX_JSON_BYTES`, a sample with no audio member, and the sample a truncated tar ends in (the
samples before it are kept). An audio member over ``max_file_bytes`` is refused when its shard reads
it (``too_large``), like any other file.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.base import Adapter, NativeRow
from clap_corpus.manifests.common import AUDIO_EXTENSIONS, missing_root_reason, parse_float
from clap_corpus.manifests.options import AdapterOptions
from clap_corpus.manifests.source import PathRejected, SourceSpec, resolve_audio_path
from clap_corpus.manifests.tables import NotText, jsonable, text_list, text_value
from clap_corpus.transforms import storage

DEFAULT_DURATION_S = 10.0  # LAION's tars: AudioSet clips are 10 s; Freesound clips vary, set mean_duration_s
MAX_JSON_BYTES = 1 << 20  # a sample's metadata; a larger JSON member is refused unread
SPLIT_FOLDERS = frozenset(
    {"train", "training", "valid", "validation", "val", "dev", "test", "eval", "evaluation"}
)

# Where the public tars keep a clip's YouTube or Freesound id (dotted paths into the JSON document).
DEFAULT_ORIGIN_FIELDS = {
    "original_data.youtube_id": "youtube",
    "original_data.ytid": "youtube",
    "original_data.YTID": "youtube",
    "original_data.video_id": "youtube",
    "original_data.freesound_id": "freesound",
    "original_data.fsid": "freesound",
}
# LAION's Freesound tars: original_data {id, username, download_url, title, tags, description}
LAION_FREESOUND_ID = "id"
_URL_IDS = (
    (re.compile(r"(?:youtube\.com/watch\?(?:.*&)?v=|youtu\.be/)([A-Za-z0-9_-]{11})"), "youtube"),
    (re.compile(r"freesound\.org/(?:people/[^/]+/sounds|s|apiv2/sounds)/(\d+)"), "freesound"),
)
_FREESOUND_URL = re.compile(r"^https?://(?:www\.)?freesound\.org/", re.IGNORECASE)
# LAION numbers the parts of a split: freesound_no_overlap/train_1, train_2
_NUMBERED_SPLIT = re.compile(r"^([a-z]+)[_-]\d+$")
# WebDataset's rule (webdataset.tariterators.base_plus_ext): key = up to the first dot of the last part
_KEY_RE = re.compile(r"^((?:.*/|)[^./]+)[.]([^/]*)$")


class Options(AdapterOptions):
    pattern: str | list[str] = "**.tar"  # tars under audio_root, any depth: glob(s) or brace pattern(s)
    audio_extensions: list[str] = Field(default_factory=list)  # default: any audio extension
    json_extension: str = "json"
    caption_fields: list[str] = Field(default_factory=lambda: ["text"])
    label_fields: list[str] = Field(default_factory=lambda: ["labels"])
    keyword_fields: list[str] = Field(default_factory=lambda: ["keywords"])
    tag_field: str = "tag"  # LAION's labels-and-keywords list, used when the document has neither
    tag_role: Literal["labels", "keywords"] = "keywords"
    id_field: str | None = None  # default: <tar path without extension>/<sample key>
    split_field: str = "split"
    license_field: str = "license"
    attribution_field: str = "attribution"
    duration_field: str = "duration"
    original_field: str = "original_data"
    # added to DEFAULT_ORIGIN_FIELDS (dotted path -> origin kind); "" as the kind removes a default
    origin_fields: dict[str, str] = Field(default_factory=dict)


def origin_fields(given: Mapping[str, str]) -> dict[str, str]:
    """The origin fields a source reads: the defaults, plus (or minus, for "") the spec's."""
    merged = {**DEFAULT_ORIGIN_FIELDS, **given}
    return {path: kind for path, kind in merged.items() if kind}


def folder_split(folder: str, split_map: Mapping[str, str]) -> str | None:
    """The native split a tar's folder names: ``train``, ``test`` ... or a numbered part of one
    (``train_1`` -> ``train``), unless the spec's split_map names the folder itself."""
    if folder in SPLIT_FOLDERS or folder in split_map:
        return folder
    m = _NUMBERED_SPLIT.match(folder)
    return m.group(1) if m and m.group(1) in SPLIT_FOLDERS else None


def expand_braces(pattern: str) -> list[str]:
    """WebDataset's shard notation: ``a{000..002}b`` and ``{x,y}``, nested left to right."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end() :]
    r = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if r:
        lo, hi = int(r.group(1)), int(r.group(2))
        width = len(r.group(1)) if r.group(1).startswith("0") else 0
        parts = [str(i).zfill(width) for i in range(lo, hi + 1)]
    else:
        parts = body.split(",")
    return [x for p in parts for x in expand_braces(head + p + tail)]


def tar_files(source: SourceSpec, patterns: str | list[str]) -> list[str]:
    """Every tar the patterns name under the audio root, sorted, each once."""
    found: dict[str, None] = {}
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        for name in expand_braces(pattern):
            path = storage.join(source.audio_root.rstrip("/"), name)
            if any(c in name for c in "*?["):
                hits = storage.match(path)
            else:
                hits = [path] if storage.exists(path) else []
            found.update((h, None) for h in sorted(hits))
    return sorted(found)


@dataclass
class _Sample:
    key: str
    members: list[tarfile.TarInfo] = field(default_factory=list)
    json_bytes: bytes | None = None
    problem: tuple[Code, str] | None = None  # (code, reason): refused whatever else it holds


class _CutInfo(tarfile.TarInfo):
    """Notes a header cut short or a missing end-of-archive marker, which tarfile takes for the end."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        # tarfile raises both; typeshed leaves them out, being undocumented
        except (tarfile.TruncatedHeaderError, tarfile.EmptyHeaderError):  # pyright: ignore[reportAttributeAccessIssue]
            tar._clap_cut = True  # type: ignore[attr-defined]
            raise


def scan_tar(path: str, json_extension: str) -> Iterator[_Sample | str]:
    """The samples of one tar in member order; a final string says why the tar ended early."""
    plain = path.lower().endswith(".tar")
    with storage.open_read(path) as f:
        sample: _Sample | None = None
        try:
            # A plain tar is walked header to header (seeking past the audio: only headers and JSON
            # are read); a compressed one can only be streamed through.
            tar = tarfile.open(fileobj=f, mode="r:" if plain else "r|*", tarinfo=_CutInfo)  # noqa: SIM115
            for info in tar:  # closed with f: the TarFile holds nothing else
                m = _KEY_RE.match(info.name)
                key, ext = (m.group(1), m.group(2)) if m else (info.name, "")
                if sample is None or key != sample.key:
                    if sample is not None:
                        yield sample
                    sample = _Sample(key)
                if info.isdir():
                    continue
                sample.members.append(info)
                if sample.problem is None:
                    sample.problem = _member_problem(info)
                if sample.problem is None and ext == json_extension and info.isfile():
                    if info.size > MAX_JSON_BYTES:
                        sample.problem = (
                            Code.MALFORMED_ROW,
                            f"JSON member {info.name!r} is {info.size} bytes",
                        )
                    else:
                        member = tar.extractfile(info)
                        assert member is not None
                        sample.json_bytes = member.read()
                        if len(sample.json_bytes) != info.size:
                            raise tarfile.ReadError("unexpected end of data")
            if getattr(tar, "_clap_cut", False):
                raise tarfile.ReadError("the tar ends without its end-of-archive marker")
        except (tarfile.TarError, EOFError, OSError) as e:
            if sample is None:  # not one member read: not a tar, or cut inside its first header
                yield f"cannot read {path} as a tar: {e}"
            else:  # the samples before it are whole; this one may miss members or bytes
                sample.problem = (Code.TRUNCATED_ARCHIVE, f"the tar ends inside this sample ({e})")
                yield sample
            return
        if sample is not None:
            yield sample


def _member_problem(info: tarfile.TarInfo) -> tuple[Code, str] | None:
    name = info.name
    if name.startswith("/") or ".." in name.replace("\\", "/").split("/") or "\x00" in name:
        return Code.BAD_MEMBER, f"member {name!r} is named outside its sample"
    if not info.isfile():
        kind = "a link" if info.issym() or info.islnk() else "not a regular file"
        return Code.BAD_MEMBER, f"member {name!r} is {kind}"
    return None


def _tags(doc: Mapping[str, Any], fields: list[str]) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(t for f in fields for t in text_list(_at(doc, f), separator=",", strict=False))
    )


def _at(doc: Mapping[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


class WebDatasetAdapter(Adapter):
    Options = Options
    options: Options

    def rows(self) -> Iterator[NativeRow | Reject]:
        source, opts = self.source, self.options
        try:
            tars = tar_files(source, opts.pattern)
        except (OSError, ValueError) as e:
            yield self.reject(None, Code.UNREADABLE_METADATA, f"cannot list the tars: {str(e)[:300]}")
            return
        if not tars:
            reason, root = missing_root_reason(source.audio_root, f"no tar matches {opts.pattern!r}")
            yield self.reject(None, Code.UNREADABLE_METADATA, reason, path=root)
            return
        row = 0
        for tar in tars:
            try:
                resolve_audio_path(source, tar)
            except PathRejected as e:
                yield self.reject(None, e.code, f"tar {tar}: {e.reason}", path=tar)
                continue
            rel = tar[len(source.audio_root.rstrip("/")) + 1 :] if tar.startswith(source.audio_root) else tar
            stem = rel[: -len(".tar")] if rel.endswith(".tar") else rel.rsplit(".tar", 1)[0]
            folder = posixpath.basename(posixpath.dirname(rel))
            for item in scan_tar(tar, opts.json_extension):
                if isinstance(item, str):
                    yield self.reject(None, Code.UNREADABLE_METADATA, item, path=tar)
                    continue
                row += 1
                yield self._row(row, tar, rel, stem, folder, item)

    def _row(self, row: int, tar: str, rel: str, stem: str, folder: str, s: _Sample) -> NativeRow | Reject:
        opts = self.options
        sid = f"{stem}/{s.key}"
        names = [m.name for m in s.members]
        if s.problem is not None:
            return self.reject(row, s.problem[0], s.problem[1], path=tar, source_id=sid)
        doc: Any = {}
        if s.json_bytes is not None:
            try:
                doc = json.loads(s.json_bytes)
            except (ValueError, UnicodeDecodeError) as e:
                return self.reject(
                    row, Code.MALFORMED_ROW, f"JSON member is not JSON: {e}", path=tar, source_id=sid
                )
            if not isinstance(doc, dict):
                return self.reject(
                    row,
                    Code.MALFORMED_ROW,
                    f"JSON member is a {type(doc).__name__}, not an object",
                    path=tar,
                    source_id=sid,
                )
        if opts.id_field:
            sid = text_value(_at(doc, opts.id_field)) or sid
        elif text_value(doc.get("source")) and text_value(doc.get("source_id")):
            # this project's own shards read back: the clip keeps its id (and its source, so that two
            # sources' same ids stay apart)
            sid = f"{text_value(doc['source'])}/{text_value(doc['source_id'])}"
        audio = self._audio_member(s)
        if audio is None:
            return self.reject(
                row,
                Code.MISSING_AUDIO,
                f"sample has no audio member (members: {', '.join(names)})",
                path=tar,
                source_id=sid,
            )
        problem = None
        captions: tuple[str, ...] = ()
        labels: tuple[str, ...] = ()
        keywords: tuple[str, ...] = ()
        try:
            captions = tuple(c for f in opts.caption_fields for c in text_list(_at(doc, f), separator=None))
        except NotText as e:
            problem = (Code.CAPTION_NOT_TEXT, str(e))
        try:
            labels = _tags(doc, opts.label_fields)
            keywords = _tags(doc, opts.keyword_fields)
            if not any(_at(doc, f) is not None for f in (*opts.label_fields, *opts.keyword_fields)):
                tags = _tags(doc, [opts.tag_field])
                labels, keywords = (tags, ()) if opts.tag_role == "labels" else ((), tags)
        except NotText as e:
            problem = problem or (Code.TAG_NOT_TEXT, str(e))
        original = _at(doc, opts.original_field)
        return NativeRow(
            row=row,
            id=sid,
            audio=ArchiveMember(tar, audio.name, audio.offset if tar.lower().endswith(".tar") else None),
            split=text_value(_at(doc, opts.split_field)) or folder_split(folder, self.source.split_map),
            captions=captions,
            labels=labels,
            keywords=keywords,
            license=text_value(_at(doc, opts.license_field)),
            attribution=text_value(_at(doc, opts.attribution_field)),
            origin_ids=self._origins(doc),
            expected_duration_s=parse_float(_at(doc, opts.duration_field)),
            original={
                **(jsonable(original) if isinstance(original, dict) else {}),
                "webdataset_tar": rel,
                "webdataset_key": s.key,
            },
            reject_path=tar,
            problem=problem,
        )

    def _audio_member(self, s: _Sample) -> tarfile.TarInfo | None:
        wanted = [e.lower().lstrip(".") for e in self.options.audio_extensions]
        by_ext = {}
        for m in s.members:
            ext = m.name[len(s.key) + 1 :].lower()
            by_ext.setdefault(ext, m)
        if wanted:
            return next((by_ext[e] for e in wanted if e in by_ext), None)
        return next((m for e, m in by_ext.items() if e in AUDIO_EXTENSIONS), None)

    def _origins(self, doc: Mapping[str, Any]) -> tuple[str, ...]:
        found: list[str] = []
        given = doc.get("origin_ids")
        if isinstance(given, list):
            found += [x for x in given if isinstance(x, str) and ":" in x]
        original = _at(doc, self.options.original_field)
        fields = origin_fields(self.options.origin_fields)
        laion_id = f"{self.options.original_field}.{LAION_FREESOUND_ID}"
        if (
            laion_id not in self.options.origin_fields
            and isinstance(original, Mapping)
            and any(isinstance(v, str) and _FREESOUND_URL.match(v) for v in original.values())
        ):
            fields[laion_id] = "freesound"
        for path, kind in fields.items():
            value = text_value(_at(doc, path))
            if value:
                if kind == "youtube" and len(value) == 12 and value.startswith("Y"):
                    value = value[1:]  # AudioSet file names put a Y before the id
                found.append(f"{kind}:{value}")
        if isinstance(original, Mapping):
            for v in original.values():
                if isinstance(v, str):
                    for rx, kind in _URL_IDS:
                        found += [f"{kind}:{m}" for m in rx.findall(v)]
        return tuple(dict.fromkeys(found))


read_webdataset = WebDatasetAdapter.read
