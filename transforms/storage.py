"""File access through Beam's FileSystems, so local paths and gs:// / s3:// URLs work alike.

This is the only module that touches storage; everything else passes paths around. Beam is imported
on the first file access, not with this module: the transforms and the manifests import it, and
loading Beam takes 2-3 s that reading a spec or a manifest in a test or a notebook need not pay.
Writes go to a temporary name first and are renamed into place only when complete, so a killed
run never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from clap_corpus.core.paths import is_url, join, scheme  # noqa: F401  (callers use storage.join etc.)

if TYPE_CHECKING:
    from apache_beam.io.filesystems import FileSystems

TEMP_MARKER = ".inprogress-"


class FileTooLarge(Exception):
    """The file is over the configured size cap; it is not read."""


class StorageError(OSError):
    """The filesystem layer failed to read an existing file with an error that is not an OSError
    (a cloud client's own exception type); the message is the original one."""


def _filesystems() -> type[FileSystems]:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _plain() -> str:
    # Explicitly uncompressed: Beam would otherwise gunzip anything named *.gz behind our back.
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


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


def exists(path: str) -> bool:
    return _filesystems().exists(path)


def size(path: str) -> int:
    return _filesystems().get_filesystem(path).size(path)


def open_read(path: str) -> BinaryIO:
    return _filesystems().open(path, compression_type=_plain())


def check_size(size: int, max_bytes: int | None, what: str = "file") -> None:
    """Raise :class:`FileTooLarge` when ``size`` bytes are over ``max_bytes`` (None: no cap)."""
    if max_bytes is not None and size > max_bytes:
        raise FileTooLarge(f"{what} is {size} bytes, over the {max_bytes}-byte cap")


def read_bytes(path: str, *, max_bytes: int | None = None) -> bytes:
    """Whole file as bytes; refuses files over ``max_bytes`` before reading them. A missing file
    raises FileNotFoundError and any other failure an OSError, whatever the filesystem."""
    with _typed_read_errors(path):
        if max_bytes is None:
            with open_read(path) as f:
                data = f.read()
        else:
            known = size(path)
            check_size(known, max_bytes)
            with open_read(path) as f:
                # What the file holds and one byte more, to see it grow: a buffered read of n bytes
                # allocates n at once, and a cap of a terabyte must not mean a terabyte per file.
                data = f.read(known + 1)
                if len(data) > known:
                    data += f.read(max_bytes + 1 - len(data))
    if max_bytes is not None and len(data) > max_bytes:
        raise FileTooLarge(f"file grew past the {max_bytes}-byte cap while reading")
    return data


def read_text(path: str) -> str:
    with open_read(path) as f:
        return f.read().decode("utf-8")


def temp_name(final_path: str) -> str:
    """A unique sibling name: two attempts at the same shard never write the same temp file."""
    return f"{final_path}{TEMP_MARKER}{uuid.uuid4().hex[:12]}"


def rename(src: str, dst: str) -> None:
    if not is_url(dst):  # buckets have no folders; a local one may not exist yet (the fetch cache)
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    if exists(dst):
        _filesystems().delete([dst])
    _filesystems().rename([src], [dst])


def create(path: str) -> BinaryIO:
    """A new file for writing (parent folders are made as needed on local disks)."""
    return _filesystems().create(path, mime_type="application/octet-stream", compression_type=_plain())


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
            _filesystems().delete([tmp])
        raise
    rename(tmp, final_path)


def write_bytes_atomic(final_path: str, data: bytes) -> None:
    with atomic_create(final_path) as f:
        f.write(data)


def match(pattern: str) -> list[str]:
    """Paths matching a glob pattern; [] when nothing matches."""
    result = _filesystems().match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def match_ages(pattern: str) -> list[tuple[str, float]]:
    """(path, seconds since its last change) for every path matching ``pattern``."""
    import time

    result = _filesystems().match([pattern])[0]
    now = time.time()
    return sorted((m.path, now - (m.last_updated_in_seconds or now)) for m in result.metadata_list)


def delete(paths: list[str]) -> None:
    if paths:
        _filesystems().delete(paths)
