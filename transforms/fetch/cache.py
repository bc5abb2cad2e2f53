"""The content-addressed cache of fetched audio: a local folder or a bucket, through Beam FileSystems.

    <cache>/objects/<sha[:2]>/<sha256>     the bytes, named by their SHA-256
    <cache>/urls/<h[:2]>/<h>.json          {"url", "digest", "bytes"}: what a URL gave (h: its SHA-256)
    <cache>/tmp/<random>                   a download in progress (a killed one's is swept later)

A download streams into ``tmp/`` and is renamed to its object name only once complete; the URL's
entry is written (atomically) after that. A killed fetch therefore leaves at most a temporary file,
never an entry, and a rerun fetches that URL again; a URL with an entry is never fetched twice.
Two URLs serving the same bytes share one object.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from clap_corpus.transforms import storage


@dataclass(frozen=True)
class CacheEntry:
    digest: str  # SHA-256 of the bytes, hex
    bytes: int
    object: str  # where they are


class ContentCache:
    def __init__(self, root: str):
        self.root = root.rstrip("/") if storage.is_url(root) else root

    def object_path(self, digest: str) -> str:
        return storage.join(self.root, "objects", digest[:2], digest)

    def entry_path(self, url: str) -> str:
        h = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return storage.join(self.root, "urls", h[:2], f"{h}.json")

    def lookup(self, url: str) -> CacheEntry | None:
        """What ``url`` gave before, if its bytes are still in the cache."""
        try:
            entry = json.loads(storage.read_bytes(self.entry_path(url)))
        except (OSError, ValueError):
            return None
        if entry.get("url") != url:
            return None
        path = self.object_path(entry["digest"])
        if not storage.exists(path):
            return None
        return CacheEntry(entry["digest"], int(entry["bytes"]), path)

    def sweep(self, older_than_s: float) -> int:
        """Delete downloads left in ``tmp/`` by killed tasks: those unchanged for ``older_than_s``
        (longer than any live download can go without writing). Returns how many."""
        try:
            stale = [
                p for p, age in storage.match_ages(storage.join(self.root, "tmp", "*")) if age > older_than_s
            ]
        except Exception:  # nothing there yet, or a store that cannot list: nothing to sweep
            return 0
        with contextlib.suppress(Exception):  # another task may have swept them first
            storage.delete(stale)
        return len(stale)

    def pending(self) -> PendingObject:
        return PendingObject(self)


class PendingObject:
    """One download on its way into the cache: written to ``tmp/``, hashed as it streams."""

    def __init__(self, cache: ContentCache):
        self.cache = cache
        self.tmp = storage.join(cache.root, "tmp", uuid.uuid4().hex)
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            self._file = storage.create(self.tmp)
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def reset(self) -> None:
        """Forget what was written (a failed attempt; the next one starts over)."""
        self.discard()
        self._hash = hashlib.sha256()
        self.size = 0

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            with contextlib.suppress(Exception):
                storage.delete([self.tmp])
            self._file = None

    def commit(self, url: str) -> CacheEntry:
        """Move the bytes to their object name, then record that ``url`` gave them."""
        if self._file is None:  # an empty body
            self._file = storage.create(self.tmp)
        self._file.close()
        self._file = None
        digest = self._hash.hexdigest()
        path = self.cache.object_path(digest)
        if storage.exists(path):
            storage.delete([self.tmp])  # the same bytes are there already (another URL, another try)
        else:
            storage.rename(self.tmp, path)
        entry = {"url": url, "digest": digest, "bytes": self.size}
        storage.write_bytes_atomic(self.cache.entry_path(url), json.dumps(entry, sort_keys=True).encode())
        return CacheEntry(digest, self.size, path)
