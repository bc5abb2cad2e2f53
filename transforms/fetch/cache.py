"""The content-addressed cache of fetched audio: a local folder or a bucket, through Beam FileSystems.

    <cache>/objects/<sha[:2]>/<sha256>     the bytes, named by their SHA-256
    <cache>/urls/<h[:2]>/<h>.json          {"url", "digest", "bytes"}: what a URL gave (h: its SHA-256)
    <cache>/tmp/<random>                   a download in progress (a killed one's is swept later)

A download streams into ``tmp/`` and is renamed to its object name only once complete; the URL's
entry is written (atomically) after that. A killed fetch therefore leaves at most a temporary file,
never an entry, and a rerun fetches that URL again; a URL with an entry is not fetched twice.
Two URLs serving the same bytes share one object. URLs are named by their identity
(:func:`core.urls.url_identity`: redacted, no fragment), so an entry never holds a secret and a
re-signed URL finds its object.

Nothing under a name is trusted: an object is read back and hashed the first time a cache instance
uses it (:meth:`ContentCache.verify`), and one whose bytes are not its name (altered or cut short on
disk) is fetched again and replaced, as is an existing object that a fresh download of the same
content finds damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
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
        self._verified: set[str] = set()  # digests whose objects were read back whole and matched
        self._lock = threading.Lock()

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

    def verify(self, entry: CacheEntry) -> bool:
        """Whether ``entry``'s object holds exactly the bytes its name (and the entry) say; read and
        hashed once per digest for this cache instance."""
        with self._lock:
            if entry.digest in self._verified:
                return True
        h, size = hashlib.sha256(), 0
        try:
            with storage.open_read(entry.object) as f:
                while block := f.read(1 << 20):
                    h.update(block)
                    size += len(block)
        except OSError:
            return False
        if h.hexdigest() != entry.digest or size != entry.bytes:
            return False
        with self._lock:
            self._verified.add(entry.digest)
        return True

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
        found = CacheEntry(digest, self.size, path)
        if storage.exists(path) and self.cache.verify(found):
            storage.delete([self.tmp])  # the same bytes are there already (another URL, another try)
        elif storage.is_url(path):
            storage.rename(self.tmp, path)
        else:  # a damaged object is replaced in one step: a reader sees the old file or the new one
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(self.tmp, path)
        with self.cache._lock:
            self.cache._verified.add(digest)
        entry = {"url": url, "digest": digest, "bytes": self.size}
        storage.write_bytes_atomic(self.cache.entry_path(url), json.dumps(entry, sort_keys=True).encode())
        return found
