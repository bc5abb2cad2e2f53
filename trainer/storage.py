"""The trainer's reads of a built corpus, through fsspec: local paths and any URL whose protocol an
installed fsspec implementation serves (``gs://`` with gcsfs, ``s3://`` with s3fs, ``memory://``, ...).

The pipeline's storage goes through Beam FileSystems; the trainer has its own so that training never
needs Apache Beam installed. Local paths need no extra package.
"""

from __future__ import annotations

from typing import BinaryIO

import fsspec

from clap_corpus.core.paths import is_url, join  # noqa: F401  (the trainer's callers use storage.join)


class StorageError(Exception):
    """A URL whose protocol no installed fsspec implementation serves (the message says which to add)."""


def _fs(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as e:  # fsspec's "Install gcsfs to access ..." / unknown protocol
        raise StorageError(f"{path}: {e}") from e


def exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.exists(p)


def open_read(path: str) -> BinaryIO:
    """The file, opened for binary reads; never decompressed on the fly, whatever its name."""
    fs, p = _fs(path)
    # binary in "rb"; fsspec's inferred type also holds the text wrapper of its text modes
    return fs.open(p, "rb")  # pyright: ignore[reportReturnType]


def read_text(path: str) -> str:
    with open_read(path) as f:
        return f.read().decode("utf-8")


def match(pattern: str) -> list[str]:
    """Paths matching a glob pattern, sorted; [] when nothing matches. URLs keep their protocol."""
    fs, p = _fs(pattern)
    found = fs.glob(p)
    if is_url(pattern):
        found = [fs.unstrip_protocol(x) for x in found]
    # paths (a dict only with detail=True); fsspec's inferred type mixes both
    return sorted(found)  # pyright: ignore[reportReturnType]
