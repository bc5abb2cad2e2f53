"""Where a record's audio lives: one small typed value per kind, in the manner of lhotse's ``AudioSource``.

A record used to carry one string that was a local path, a filesystem URL or a ``file::column::row``
reference into a dataset file, told apart by pattern matching at read time (a local file whose name
looked like a cell reference would have been read as one). Each kind is now its own frozen type:

- :class:`LocalFile`: a path on this machine's (or the worker's) disk;
- :class:`RemoteFile`: a filesystem URL Beam's FileSystems reads (``gs://``, ``s3://`` ...), or a web URL
  (``http(s)://``, YouTube, the Freesound API) that the fetch stage downloads first;
- :class:`WebFile`: a web URL holding a secret, written only in its redacted form;
- :class:`FetchedFile`: a web URL whose bytes the fetch stage put in its content-addressed cache (a
  :class:`RemoteFile` still: rejects name the URL, reading takes the cached copy);
- :class:`EmbeddedCell`: the audio bytes stored in one cell of an Arrow/Parquet file (Hugging Face
  ``datasets``), by file, column and 0-based row;
- :class:`ArchiveMember`: one member of a tar or zip archive (local or remote).

``str(ref)`` renders the string the record carried before (reject files name it unchanged), and
``ref.storage_path`` is the file in storage that holds the audio: what must exist, and what the path
rules of the source are checked against. Reading is ``transforms.audio_source.read_audio_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clap_corpus.core.paths import is_url


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: str

    def __str__(self) -> str:
        return self.path

    @property
    def storage_path(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True)
class RemoteFile:
    url: str

    def __str__(self) -> str:
        return self.url

    @property
    def storage_path(self) -> str:
        return self.url


WEB_SCHEMES = frozenset({"http", "https"})


def is_web_url(path: str) -> bool:
    """An ``http(s)://`` URL: fetched over the network by the fetch stage, never by Beam FileSystems."""
    return is_url(path) and path.split("://", 1)[0].lower() in WEB_SCHEMES


@dataclass(frozen=True, slots=True)
class WebFile(RemoteFile):
    """A web URL with a secret in it (userinfo, a signature or token parameter): ``url`` is its
    redacted form, which is all that is ever written (``str(ref)``, rejects, keys); ``request`` is the
    URL as the manifest gave it, which only the fetch stage reads."""

    request: str = field(repr=False)

    @property
    def storage_path(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True)
class FetchedFile(RemoteFile):
    """A web URL's bytes as the fetch stage stored them: ``object`` is the cache file named by the
    content's SHA-256, so a shard's fingerprint changes when the URL starts serving other bytes."""

    object: str

    @property
    def storage_path(self) -> str:
        return self.object


@dataclass(frozen=True, slots=True)
class EmbeddedCell:
    file: str  # the .arrow / .parquet file
    column: str  # the datasets Audio column (a struct of bytes and path)
    row: int  # 0-based, inside this file

    def __str__(self) -> str:
        return f"{self.file}::{self.column}::{self.row}"

    @property
    def storage_path(self) -> str:
        return self.file


@dataclass(frozen=True, slots=True)
class ArchiveMember:
    archive: str  # a .tar (optionally compressed) or .zip file, local path or URL
    member: str  # the member's name inside the archive
    # Where the member's header starts in an uncompressed tar, when the adapter saw it: one seek
    # instead of a scan of every header before it (a tar has no index).
    offset: int | None = None

    def __str__(self) -> str:
        return f"{self.archive}::{self.member}"

    @property
    def storage_path(self) -> str:
        return self.archive


AudioRef = LocalFile | RemoteFile | EmbeddedCell | ArchiveMember


def file_ref(path: str) -> LocalFile | RemoteFile:
    """A plain audio file: a URL (``scheme://...``) is remote, anything else local."""
    return RemoteFile(path) if is_url(path) else LocalFile(path)
