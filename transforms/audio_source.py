"""Reading a record's audio bytes, by the kind of its :mod:`core.audio_ref` reference.

Plain files go through :func:`transforms.storage.read_bytes` (local paths and filesystem URLs alike).
Audio embedded in a Hugging Face dataset file is read one cell at a time; a member of a tar or zip
archive is read from the archive, which is opened in place (nothing is extracted to disk). Every kind
refuses audio over ``max_bytes`` with :class:`~transforms.storage.FileTooLarge`, and a reference to
something that is not there raises :class:`FileNotFoundError`, so each fails like a missing file.
"""

from __future__ import annotations

import functools
import tarfile
from typing import Any

from clap_corpus.core.audio_ref import ArchiveMember, AudioRef, EmbeddedCell, LocalFile, RemoteFile
from clap_corpus.transforms import storage, zip_reader


def read_audio_bytes(ref: AudioRef, max_bytes: int | None = None) -> bytes:
    """The audio bytes ``ref`` points at, at most ``max_bytes`` of them."""
    if isinstance(ref, LocalFile | RemoteFile):
        return storage.read_bytes(ref.storage_path, max_bytes=max_bytes)
    if isinstance(ref, EmbeddedCell):
        data = read_cell(ref)
        storage.check_size(len(data), max_bytes, "audio cell")
        return data
    if isinstance(ref, ArchiveMember):
        return read_member(ref, max_bytes)
    raise TypeError(f"not an audio reference: {ref!r}")


def read_cell(ref: EmbeddedCell) -> bytes:
    """The ``bytes`` of a datasets Audio cell. Arrow files are memory-mapped once per process and
    read by row at no extra cost; a Parquet row costs reading its row group's audio column."""
    file, column, row = ref.file, ref.column, ref.row
    if file.endswith(".parquet"):
        import pyarrow.parquet as pq

        with storage.open_read(file) as f:
            pf = pq.ParquetFile(f)
            first = 0
            for g in range(pf.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if row < first + n:
                    cell = pf.read_row_group(g, columns=[f"{column}.bytes"]).column(column)[row - first]
                    break
                first += n
            else:
                raise FileNotFoundError(f"row {row} is past the end of {file}")
    else:
        table = _arrow_table(file)
        if row >= table.num_rows:
            raise FileNotFoundError(f"row {row} is past the end of {file}")
        cell = table.column(column)[row]
    data = cell.as_py().get("bytes") if cell.is_valid else None
    if data is None:
        raise OSError(f"row {row} of {file} has no embedded audio bytes")
    return data


@functools.lru_cache(maxsize=4)
def _arrow_table(file: str) -> Any:  # pyarrow.Table, imported lazily
    import pyarrow as pa

    source = pa.memory_map(file) if not storage.is_url(file) else pa.BufferReader(storage.read_bytes(file))
    try:
        return pa.ipc.open_stream(source).read_all()  # what save_to_disk writes
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source).read_all()


def read_member(ref: ArchiveMember, max_bytes: int | None = None) -> bytes:
    """One member of a ``.zip`` archive (one file, or split in parts: :mod:`transforms.zip_reader`),
    or of a tar archive (plain, gzip, bzip2 or xz: any other name). The size the archive declares is
    checked before reading and the bytes read are capped too, since a crafted header can understate it.
    Only regular file members are read: a link member would name other bytes than the ones the
    manifest listed."""
    where = f"member {ref.member!r} of {ref.archive}"
    if ref.archive.lower().endswith(".zip"):
        # one file or split in parts (X.z01 ... X.zip): read in place, one seek when the offset is known
        return zip_reader.read_member(ref.archive, ref.member, ref.offset, max_bytes)
    try:
        with storage.open_read(ref.archive) as f:
            if ref.offset is not None:
                f.seek(ref.offset)
                # tarfile starts reading where the file object stands: its first member is ours
                with tarfile.open(fileobj=f, mode="r:") as t:
                    member = t.next()
                    if member is None or member.name != ref.member:
                        raise FileNotFoundError(f"no {where} at offset {ref.offset} (the tar changed?)")
                    data = _member_bytes(t, member, where, max_bytes)
            else:
                with tarfile.open(fileobj=f, mode="r:*") as t:
                    try:
                        member = t.getmember(ref.member)
                    except KeyError:
                        raise FileNotFoundError(f"no {where}") from None
                    data = _member_bytes(t, member, where, max_bytes)
    except (tarfile.TarError, EOFError) as e:
        # A broken archive is a read error of this clip, like an unreadable file.
        raise OSError(f"cannot read {where}: {e}") from None
    storage.check_size(len(data), max_bytes, where)
    return data


def _member_bytes(t: tarfile.TarFile, member: tarfile.TarInfo, where: str, max_bytes: int | None) -> bytes:
    if not member.isfile():
        raise OSError(f"{where} is not a regular file")
    storage.check_size(member.size, max_bytes, where)
    m = t.extractfile(member)
    assert m is not None  # a regular file member always has a file object
    data = m.read(-1 if max_bytes is None else max_bytes + 1)
    if len(data) < member.size:  # the declared size passed the cap, so all of it was asked for
        raise OSError(f"{where} is cut short: {len(data)} of {member.size} bytes (a truncated tar)")
    return data
