"""What the source adapters share: split mapping, finding audio files, cleaning titles.

Every adapter yields :class:`Record` or :class:`Reject` and never reads audio. Audio files are
located either by ``options.file_pattern`` (a name built from the row, nothing listed) or by one
listing of the audio root, indexed by an adapter-specific id (a YouTube id, a Freesound id ...).
"""

from __future__ import annotations

import html
import math
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from clap_corpus.core.layout import UnsafeName, check_name
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.source import PathRejected, SourceSpec, resolve_audio_path
from clap_corpus.transforms import storage

AUDIO_EXTENSIONS = frozenset(
    {
        *("wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "mp4", "aac", "aif", "aiff", "aifc"),
        *("wma", "webm", "mka", "mkv", "w64", "caf", "wv", "ape", "amr", "spx"),
        # what else transforms.decode.ALLOWED_DEMUXERS reads, under its usual extensions
        *("ac3", "eac3", "ec3", "dts", "thd", "mp2", "mpa", "m2a", "tta", "tak", "shn", "mpc", "awb"),
        *("au", "snd", "voc", "dsf", "wsd", "oma", "m4b", "weba", "3gp", "rf64", "bwf", "ra"),
    }
)


def corpus_split(
    source: SourceSpec, native: str | None, defaults: Mapping[str, str] | None = None
) -> str | None:
    """The corpus split of a clip whose metadata says ``native``: the spec's ``split`` wins, then its
    ``split_map``, then the adapter's defaults (e.g. Clotho's evaluation -> test); None -> hash split.
    Raises ValueError for a name that cannot be a split folder."""
    if source.split is not None:
        return source.split
    if native is None or not str(native).strip():
        return None
    native = str(native).strip()
    out = source.split_map.get(native, (defaults or {}).get(native, native))
    try:
        return check_name("split", out)
    except UnsafeName:
        mapped = f" (mapped to {out!r})" if out != native else ""
        raise ValueError(
            f"split {native!r}{mapped} is not a usable split name (map it with split_map)"
        ) from None


def missing_root_reason(root: str, what: str) -> tuple[str, str]:
    """(reason, path) for a dataset folder with nothing to read: a folder that does not exist (never
    downloaded, or a typo) is named as such, not as an empty dataset."""
    if not storage.is_url(root) and not os.path.exists(root):
        return f"the audio root {root} does not exist (not downloaded, or a wrong path?)", root
    return f"{what} under the audio root {root}", root


def native_split_from_file(path: str | None, names: Mapping[str, str]) -> str | None:
    """The native split a metadata file's name implies (``val.csv`` -> ``val``), else None."""
    if not path:
        return None
    stem = posixpath.basename(path.replace("\\", "/")).rsplit(".", 1)[0].lower()
    return names.get(stem)


def parse_float(value: Any) -> float | None:
    """A finite number from a cell, or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(str(value).strip()) if not isinstance(value, int | float) else float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


_TAG_RE = re.compile(r"<[^>]*>")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
_SPACE_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,!?;:])")


def clean_title(title: str) -> str:
    """A title as LAION used it: audio extension stripped, underscores as spaces, spaces collapsed."""
    text = title.strip()
    stem, dot, ext = text.rpartition(".")
    if dot and ext.lower() in AUDIO_EXTENSIONS and stem:
        text = stem
    return _SPACE_RE.sub(" ", text.replace("_", " ")).strip()


def first_sentence(text: str, max_chars: int = 300) -> str:
    """The first sentence of a free-text description, HTML tags and entities removed."""
    plain = _SPACE_RE.sub(" ", html.unescape(_TAG_RE.sub(" ", text))).strip()
    plain = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", plain)
    if not plain:
        return ""
    first = _SENTENCE_END_RE.split(plain, maxsplit=1)[0].strip()
    return first[:max_chars].rsplit(" ", 1)[0] if len(first) > max_chars else first


def audio_path(source: SourceSpec, name: str, *, no_scan: bool = False) -> str:
    """:func:`resolve_audio_path`, except under `clapcorpus plan` (``no_scan``), which reads nothing:
    a plain relative name is then joined without the per-row ``realpath`` (the bulk of the time on
    millions of rows); names with '..', absolute paths and URLs still get the full rules."""
    if no_scan:
        value = name.strip()
        parts = value.replace("\\", "/").split("/")
        if value and not storage.is_url(value) and not value.startswith("/") and ".." not in parts:
            return os.path.join(source.audio_root, value)
    return resolve_audio_path(source, name)


def list_audio_files(root: str) -> Iterator[str]:
    """Audio files under ``root`` (recursive), as paths relative to it, in sorted order."""
    if storage.is_url(root):
        base = root.rstrip("/") + "/"
        for path in storage.match(base + "**"):
            rel = path[len(base) :] if path.startswith(base) else path
            if _is_audio_name(rel):
                yield rel
        return
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel_dir = os.path.relpath(folder, root)
        for name in files:
            if _is_audio_name(name) and not name.startswith("."):
                found.append(name if rel_dir == "." else os.path.join(rel_dir, name).replace(os.sep, "/"))
    yield from sorted(found)


def _is_audio_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS if "." in name else False


class AudioFinder:
    """Finds a row's audio file: ``options.file_pattern`` if the spec gives one, else one listing of the
    audio root, indexed by ``index_key(file stem)``.

    The listing holds one entry per audio file (about 150 bytes each: ~300 MB for AudioSet's two
    million files). For collections that large, ``file_pattern`` avoids both the listing and the memory.
    Two files with the same id (``abc.wav`` and ``Yabc.flac``): the first in sorted order wins.
    """

    def __init__(
        self,
        source: SourceSpec,
        pattern: str | None,
        index_key: Callable[[str], str | None],
        *,
        placeholder: bool = False,
    ):
        self.source = source
        self.pattern = pattern
        self.index_key = index_key
        self.placeholder = placeholder  # under `clapcorpus plan`: nothing listed, paths nobody reads
        self._index: dict[str, str] | None = None

    def find(self, lookup_id: str, fields: Mapping[str, Any]) -> str:
        """The path to read for this row; raises :class:`PathRejected` (missing file, bad path)."""
        if self.pattern:
            return audio_path(self.source, self.pattern.format(**fields), no_scan=self.placeholder)
        if self.placeholder:
            return storage.join(self.source.audio_root, lookup_id)
        rel = self.index().get(lookup_id)
        if rel is None:
            raise PathRejected(Code.MISSING_AUDIO, f"no audio file for id '{lookup_id}' under the audio root")
        return resolve_audio_path(self.source, rel)

    def index(self) -> dict[str, str]:
        if self._index is None:
            index: dict[str, str] = {}
            for rel in list_audio_files(self.source.audio_root):
                stem = posixpath.basename(rel).rsplit(".", 1)[0]
                key = self.index_key(stem)
                if key is not None and key not in index:
                    index[key] = rel
            self._index = index
        return self._index
