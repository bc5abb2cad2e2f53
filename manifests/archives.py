"""Audio inside zip or tar archives (WavCaps ships FLAC in zips): an index of members, never extracted.

:func:`member_index` lists each archive once (a zip's central directory; a plain tar's headers, each
one seek apart) and maps the stem of every audio member (``FreeSound_flac/180913.flac`` -> ``180913``)
to an :class:`core.audio_ref.ArchiveMember` that records where the member starts, so reading it later
is one seek. A zip split in parts (``X.z01`` ... ``X.zip``, WavCaps' AudioSet_SL, BBC and FreeSound
subsets) is named by its last part ``X.zip`` and read in place as one archive over its parts
(:mod:`transforms.zip_reader`); a missing part makes the whole archive unreadable, naming the part.
:func:`check_archives` refuses, when the spec loads, a list that names a part instead of its
``X.zip``, or two archives that hold the same members (a split archive and a copy joined from it:
which one would be read is not for sort order to decide). Metadata rows then find their audio by id, as
:class:`~manifests.common.AudioFinder` finds it in a folder. Members that may not be read (a link, a
name with ``..`` or an absolute name) are left out of the index, so a row naming one reads as
missing audio; a member over ``max_file_bytes`` (a zip bomb declares its size, or gives itself away
while being read) is refused by the shard writer, like any file over the cap.
"""

from __future__ import annotations

import posixpath
import tarfile

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.manifests.common import AUDIO_EXTENSIONS
from clap_corpus.transforms import storage, zip_reader


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
    if archive.lower().endswith(".zip"):
        lay = zip_reader.layout(archive)  # raises OSError: not a zip, a part missing
        for m in zip_reader.members(lay):
            if not m.is_dir and _usable(m.name) and _audio_stem(m.name):
                out.append(ArchiveMember(archive, m.name, m.offset))
        return out
    plain = archive.lower().endswith(".tar")
    try:
        with storage.open_read(archive) as f, tarfile.open(fileobj=f, mode="r:" if plain else "r:*") as t:
            for m in t:
                if m.isfile() and _usable(m.name) and _audio_stem(m.name):
                    out.append(ArchiveMember(archive, m.name, m.offset if plain else None))
    except (tarfile.TarError, EOFError) as e:
        raise OSError(f"cannot read the archive {archive}: {e}") from None
    return out


def check_archives(archives: list[str]) -> None:
    """At spec load: every archive is named by the file it is read through, and no two of them hold
    the same members. Raises ValueError saying which files and what to write instead."""
    names = set(archives)
    for path in archives:
        head = zip_reader.head_of_part(path)
        if head is not None:
            where = "also matched" if head in names else "not matched"
            raise ValueError(
                f"{posixpath.basename(path)} is a part of the split archive {posixpath.basename(head)} "
                f"({where}): name the archive by its .zip, which reads all its parts in place"
            )
    if len(archives) < 2:
        return
    seen: dict[frozenset[str], str] = {}
    for path in archives:
        try:
            found = frozenset(m.member for m in archive_members(path))
        except (OSError, FileNotFoundError):
            continue  # said when the manifest is read, with the rows it costs
        if found and found in seen:
            first = seen[found]
            split = [p for p in (first, path) if p.lower().endswith(".zip") and _is_split(p)]
            why = (
                f"{posixpath.basename(split[0])} is split in parts and the other looks like a copy "
                "joined from it (`zip -s 0`); both are read in place"
                if split
                else "one is a copy of the other"
            )
            raise ValueError(
                f"{posixpath.basename(first)} and {posixpath.basename(path)} hold the same "
                f"{len(found)} audio members ({why}): name one of them in options.archives"
            )
        seen.setdefault(found, path)


def _is_split(archive: str) -> bool:
    try:
        return zip_reader.layout(archive).split
    except OSError:
        return False


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
