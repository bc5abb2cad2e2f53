"""Path arithmetic for local paths and filesystem URLs (gs://, s3:// ...), without touching storage.

Both storages build on these: the pipeline's (Beam FileSystems, transforms/storage.py) and the
trainer's (fsspec, trainer/storage.py), so a path means the same thing to the writer and the reader.
"""

from __future__ import annotations

import os
import posixpath


def is_url(path: str) -> bool:
    return "://" in path


def scheme(path: str) -> str:
    """'gs', 's3', ... for URLs; 'file' for local paths."""
    return path.split("://", 1)[0].lower() if is_url(path) else "file"


def join(base: str, *parts: str) -> str:
    """'/' in URLs, the platform's separator on a local disk (what Beam's LocalFileSystem.join does)."""
    return posixpath.join(base, *parts) if is_url(base) else os.path.join(base, *parts)
