"""Audio inside zip or tar archives (WavCaps ships FLAC in zips): an index of members, never extracted.

:func:`member_index` lists each archive once (a zip's central directory; a plain tar's headers, each
one seek apart) and maps the stem of every audio member (``FreeSound_flac/180913.flac`` -> ``180913``)
to an :class:`core.audio_ref.ArchiveMember`. Metadata rows then find their audio by id, as
:class:`~manifests.common.AudioFinder` finds it in a folder. Members that may not be read (a link, a
name with ``..`` or an absolute name) are left out of the index, so a row naming one reads as
missing audio; a member over ``max_file_bytes`` (a zip bomb declares its size, or gives itself away
while being read) is refused by the shard writer, like any file over the cap.
"""

from __future__ import annotations

import posixpath
import tarfile
import zipfile

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.manifests.common import AUDIO_EXTENSIONS
from clap_corpus.transforms import storage


def _usable(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return not name.startswith("/") and ".." not in parts and "\x00" not in name


def _audio_stem(name: str) -> str | None:
    base = posixpath.basename(name.replace("\\", "/"))
    stem, dot, ext = base.rpartition(".")
    return stem if dot and stem and ext.lower() in AUDIO_EXTENSIONS else None


def archive_members(archive: str) -> list[ArchiveMember]:
    """The audio members of one archive that may be read, in archive order; raises OSError."""
    out: list[ArchiveMember] = []
    try:
        with storage.open_read(archive) as f:
            if archive.lower().endswith(".zip"):
                with zipfile.ZipFile(f) as z:
                    for info in z.infolist():
                        if not info.is_dir() and _usable(info.filename) and _audio_stem(info.filename):
                            out.append(ArchiveMember(archive, info.filename))
            else:
                plain = archive.lower().endswith(".tar")
                with tarfile.open(fileobj=f, mode="r:" if plain else "r:*") as t:
                    for m in t:
                        if m.isfile() and _usable(m.name) and _audio_stem(m.name):
                            out.append(ArchiveMember(archive, m.name, m.offset if plain else None))
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise OSError(f"cannot read the archive {archive}: {e}") from None
    return out


def member_index(archives: list[str]) -> dict[str, ArchiveMember]:
    """Audio member stem -> member, over ``archives`` in order (the first of two same stems wins)."""
    index: dict[str, ArchiveMember] = {}
    for archive in archives:
        for m in archive_members(archive):
            index.setdefault(_audio_stem(m.member) or "", m)
    return index


def stem_of(name: str) -> str:
    """A metadata file name or id as the index keys it: ``Y7fmOlUlwoNg.wav`` -> ``Y7fmOlUlwoNg``."""
    base = posixpath.basename(name.replace("\\", "/"))
    return _audio_stem(base) or base
