"""Filename-as-caption collections (Sonniss, Free To Use Sounds, We Sound Effects, Paramount Motion ...):
no metadata file; every audio file under the audio root is a clip, its cleaned name its caption.

Cleaning, in order (LAION used the raw name; these rules make it read like a caption):

1. the extension is dropped; camelCase is split ("DoorCreak" -> "Door Creak");
2. ``_ - . +`` become spaces;
3. numbering is dropped: leading catalogue numbers ("07070001 Rain") and trailing takes
   ("Door Slam 01", "Whoosh v2", "Hit take3", "Impact 3b");
4. a name written in capitals only ("DOOR SLAM") is sentence-cased ("Door slam");
5. runs of spaces become one.

The folders between the root and the file become keywords (``options.folder_keywords``, default on),
cleaned the same way: "Sonniss GDC 2019/Doors/Door_Slam_01.wav" -> caption "Door Slam", keywords
"Sonniss GDC", "Doors". The file's path relative to the root is its id. A name that cleans to
nothing keeps only its keywords (the captions stage makes a template from them, or rejects it).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from clap_corpus.manifests.base import Adapter, NativeRow
from clap_corpus.manifests.common import list_audio_files
from clap_corpus.manifests.options import AdapterOptions

DEFAULT_DURATION_S = 10.0  # no published figure for these libraries: an assumption, set mean_duration_s


class Options(AdapterOptions):
    folder_keywords: bool = True  # folder names become keywords


_CAMEL_RE = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SEPARATORS_RE = re.compile(r"[_\-.+]+")
_TRAILING_NUMBER_RE = re.compile(r"^(?:\d+[a-z]?|v\d+|take\d+|#\d+)$", re.IGNORECASE)
_LEADING_NUMBER_RE = re.compile(r"^\d+$")


def caption_from_name(name: str) -> str:
    """The caption a file name gives, by the rules above; may be empty."""
    return clean_name(name.rsplit(".", 1)[0] if "." in name else name)


def clean_name(stem: str) -> str:
    """Rules 1-5 without the extension step (folder names)."""
    tokens = _SEPARATORS_RE.sub(" ", _CAMEL_RE.sub(" ", stem)).split()
    while tokens and _LEADING_NUMBER_RE.match(tokens[0]):
        tokens.pop(0)
    while tokens and _TRAILING_NUMBER_RE.match(tokens[-1]):
        tokens.pop()
    text = " ".join(tokens)
    if text.isupper():
        text = text[0] + text[1:].lower()
    return text


class FilenamesAdapter(Adapter):
    Options = Options
    options: Options

    def rows(self) -> Iterator[NativeRow]:
        for row_no, rel in enumerate(list_audio_files(self.source.audio_root), start=1):
            folder, name = posixpath.split(rel)
            caption = caption_from_name(name)
            keywords = [clean_name(p) for p in folder.split("/") if p] if self.options.folder_keywords else []
            yield NativeRow(
                row=row_no,
                id=rel,
                audio=rel,
                captions=(caption,) if caption else (),
                keywords=tuple(dict.fromkeys(k for k in keywords if k)),
                original={"file": rel},
                reject_path=rel,
            )


read_filenames = FilenamesAdapter.read
