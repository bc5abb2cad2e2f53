"""File access through Beam's FileSystems, so local paths and gs:// / s3:// URLs work alike.

This is the only module that touches storage; everything else passes paths around.
Writes go to a temporary name first and are renamed into place only when complete, so a killed
run never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import posixpath
import re
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_PLAIN = CompressionTypes.UNCOMPRESSED
TEMP_MARKER = ".inprogress-"


class FileTooLarge(Exception):
    """The file is over the configured size cap; it is not read."""


class StorageError(OSError):
    """The filesystem layer failed to read an existing file with an error that is not an OSError
    (a cloud client's own exception type); the message is the original one."""


@contextlib.contextmanager
def _typed_read_errors(path: str) -> Iterator[None]:
    """Beam's filesystems report a missing file in their own ways (a BeamIOError wrapping the local
    FileNotFoundError, a cloud client's NotFound): make it FileNotFoundError, and every other read
    failure an OSError, so that callers tell them apart by type."""
    try:
        yield
    except (FileNotFoundError, FileTooLarge):
        raise
    except Exception as e:
        try:
            missing = not exists(path)
        except Exception:
            missing = False  # the store cannot say either: report the first failure as it was
        if missing:
            raise FileNotFoundError(errno.ENOENT, "no such file", path) from e
        if isinstance(e, OSError):
            raise
        raise StorageError(str(e)) from e


def is_url(path: str) -> bool:
    return "://" in path


def scheme(path: str) -> str:
    """'gs', 's3', ... for URLs; 'file' for local paths."""
    return path.split("://", 1)[0].lower() if is_url(path) else "file"


def join(base: str, *parts: str) -> str:
    if is_url(base):
        return posixpath.join(base, *parts)
    return FileSystems.join(base, *parts)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def size(path: str) -> int:
    return FileSystems.get_filesystem(path).size(path)


def open_read(path: str) -> BinaryIO:
    # Explicitly uncompressed: Beam would otherwise gunzip anything named *.gz behind our back.
    return FileSystems.open(path, compression_type=_PLAIN)


def read_bytes(path: str, *, max_bytes: int | None = None) -> bytes:
    """Whole file as bytes; refuses files over ``max_bytes`` before reading them.

    A :func:`cell_ref` (audio embedded in a Hugging Face dataset file) reads that one cell.
    """
    ref = parse_cell_ref(path)
    if ref is not None:
        data = read_cell(*ref)
        if max_bytes is not None and len(data) > max_bytes:
            raise FileTooLarge(f"audio cell is {len(data)} bytes, over the {max_bytes}-byte cap")
        return data
    with _typed_read_errors(path):
        if max_bytes is not None:
            n = size(path)
            if n > max_bytes:
                raise FileTooLarge(f"file is {n} bytes, over the {max_bytes}-byte cap")
        with open_read(path) as f:
            data = f.read(max_bytes + 1 if max_bytes is not None else -1)
    if max_bytes is not None and len(data) > max_bytes:
        raise FileTooLarge(f"file grew past the {max_bytes}-byte cap while reading")
    return data


# `<data file>::<column>::<row>`: audio stored inside an Arrow/Parquet file (Hugging Face datasets).
_CELL_REF_RE = re.compile(r"^(?P<file>.+\.(?:arrow|parquet))::(?P<column>[^:/]+)::(?P<row>\d+)$")


def cell_ref(file: str, column: str, row: int) -> str:
    """A path-like reference to the audio bytes of ``row`` (0-based) of ``file``'s ``column``."""
    return f"{file}::{column}::{row}"


def parse_cell_ref(path: str) -> tuple[str, str, int] | None:
    m = _CELL_REF_RE.match(path)
    return (m["file"], m["column"], int(m["row"])) if m else None


def read_cell(file: str, column: str, row: int) -> bytes:
    """The ``bytes`` of a datasets Audio cell. Arrow files are memory-mapped once per process and
    read by row at no extra cost; a Parquet row costs reading its row group's audio column."""
    if file.endswith(".parquet"):
        import pyarrow.parquet as pq

        with open_read(file) as f:
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
def _arrow_table(file: str):  # -> pyarrow.Table (imported lazily)
    import pyarrow as pa

    source = pa.memory_map(file) if not is_url(file) else pa.BufferReader(read_bytes(file))
    try:
        return pa.ipc.open_stream(source).read_all()  # what save_to_disk writes
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source).read_all()


def read_text(path: str) -> str:
    with open_read(path) as f:
        return f.read().decode("utf-8")


def temp_name(final_path: str) -> str:
    """A unique sibling name: two attempts at the same shard never write the same temp file."""
    return f"{final_path}{TEMP_MARKER}{uuid.uuid4().hex[:12]}"


def rename(src: str, dst: str) -> None:
    if exists(dst):
        FileSystems.delete([dst])
    FileSystems.rename([src], [dst])


def create(path: str) -> BinaryIO:
    """A new file for writing (parent folders are made as needed on local disks)."""
    return FileSystems.create(path, mime_type="application/octet-stream", compression_type=_PLAIN)


@contextlib.contextmanager
def atomic_create(final_path: str) -> Iterator[BinaryIO]:
    """Write to a temporary name; rename to ``final_path`` only if the block completes."""
    tmp = temp_name(final_path)
    f = create(tmp)
    try:
        yield f
        f.close()
    except BaseException:
        with contextlib.suppress(Exception):
            f.close()
        with contextlib.suppress(Exception):
            FileSystems.delete([tmp])
        raise
    rename(tmp, final_path)


def write_bytes_atomic(final_path: str, data: bytes) -> None:
    with atomic_create(final_path) as f:
        f.write(data)


def match(pattern: str) -> list[str]:
    """Paths matching a glob pattern; [] when nothing matches."""
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def delete(paths: list[str]) -> None:
    if paths:
        FileSystems.delete(paths)
