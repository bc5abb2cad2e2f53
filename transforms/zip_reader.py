"""Zip archives read in place, one member at a time: one file, or split into parts as Info-ZIP's
``zip -s`` writes them (``X.z01``, ``X.z02`` ... ``X.zip``, the way WavCaps ships its audio).

A split archive is one archive over its parts. Its end record (in ``X.zip``, the last part) says how
many parts there are; each central directory entry says on which part its member starts and where in
that part. Laid end to end, without copying, the parts are one byte stream (:class:`JoinedParts`) in
which every member sits at ``start of its part + its offset``; a member may run on into the next part.
Python's ``zipfile`` reads one file only: it takes a split archive's offsets as offsets into ``X.zip``
(every member not in the last part then fails with "Bad magic number") and refuses a split Zip64
archive outright, which is what WavCaps' parts are (hundreds of gigabytes, up to 262 144 members).

This module reads the end records (Zip64 too), the central directory and the local headers itself
(APPNOTE 6.3.x, sections 4.3 and 4.5), through :mod:`transforms.storage`, so local paths and every Beam
filesystem work alike. Listing an archive reads its end and its central directory; reading a member
whose local header offset is known (:attr:`Member.offset`, which the manifest's index records) costs
one seek and the member's own bytes: the central directory is not read again per clip.

Compression: stored, deflated and bzip2 (what Info-ZIP writes). Encrypted members, other methods and a
CRC that does not match are :class:`OSError`, as a broken archive is a read error of that clip.
"""

from __future__ import annotations

import bz2
import functools
import io
import posixpath
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from clap_corpus.transforms import storage

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_EOCD_MAX_COMMENT = 0xFFFF
_CHUNK = 1 << 20  # compressed bytes read at a time
_STEP = 4 << 20  # decompressed bytes made at a time
STORED, DEFLATED, BZIP2 = 0, 8, 12
# X.z01 ... X.z99, X.z100 ...: the parts before the last one, X.zip
PART_RE = re.compile(r"\.z(\d{2,})$", re.IGNORECASE)


class ZipError(OSError):
    """The archive (or one of its parts) cannot be read as a zip archive."""


@dataclass(frozen=True)
class Member:
    """One entry of the central directory; ``offset`` is where its local header starts in the
    archive's byte stream (its parts joined)."""

    name: str
    offset: int
    compressed_size: int
    size: int
    method: int
    crc: int
    flags: int

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass(frozen=True)
class Layout:
    """The files an archive is made of, in order, and their sizes; ``split`` when more than one."""

    archive: str
    parts: tuple[str, ...]
    sizes: tuple[int, ...]
    cd_start: int  # where the central directory starts in the joined stream
    cd_size: int
    entries: int

    @property
    def split(self) -> bool:
        return len(self.parts) > 1

    def starts(self) -> list[int]:
        out, at = [], 0
        for n in self.sizes:
            out.append(at)
            at += n
        return out


def part_names(archive: str, last_disk: int) -> list[str]:
    """The files of an archive whose last part (``archive``, ``X.zip``) is disk ``last_disk``:
    ``X.z01`` ... then ``X.zip``, as Info-ZIP names them."""
    stem = archive[: -len(".zip")] if archive.lower().endswith(".zip") else archive
    return [f"{stem}.z{n:02d}" for n in range(1, last_disk + 1)] + [archive]


def head_of_part(path: str) -> str | None:
    """``X.zip`` for a part ``X.z07`` of a split archive, else None."""
    m = PART_RE.search(path)
    return path[: m.start()] + ".zip" if m else None


class JoinedParts(io.RawIOBase):
    """The parts of an archive read as one seekable byte stream; each part is opened (through
    :mod:`transforms.storage`) only when a read reaches it."""

    def __init__(self, parts: tuple[str, ...], sizes: tuple[int, ...]):
        super().__init__()
        self.parts, self.sizes = parts, sizes
        self.starts = Layout("", parts, sizes, 0, 0, 0).starts()
        self.total = sum(sizes)
        self.pos = 0
        self._open: tuple[int, BinaryIO] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.total}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self.pos >= self.total:
            return 0
        index = max(i for i, s in enumerate(self.starts) if s <= self.pos)
        within = self.pos - self.starts[index]
        want = min(len(buffer), self.sizes[index] - within)
        f = self._part(index)
        f.seek(within)
        data = f.read(want)
        if not data:  # the part is shorter than it was when listed
            raise ZipError(f"{self.parts[index]} ends at {within} bytes, listed as {self.sizes[index]}")
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def read_exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.read(n - len(out))
            if not chunk:
                raise ZipError(f"the archive ends {n - len(out)} bytes early (at byte {self.pos})")
            out += chunk
        return bytes(out)

    def _part(self, index: int) -> BinaryIO:
        if self._open is None or self._open[0] != index:
            self._close_part()
            self._open = (index, storage.open_read(self.parts[index]))
        return self._open[1]

    def _close_part(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def close(self) -> None:
        self._close_part()
        super().close()


def _tail(path: str, size: int) -> bytes:
    """The end of a file: room for the end record, its longest comment and the Zip64 locator."""
    with storage.open_read(path) as f:
        f.seek(max(0, size - (22 + _EOCD_MAX_COMMENT + 20)))
        return f.read()


def _archive_size(archive: str) -> int:
    """The size of ``archive``; FileNotFoundError when there is none (Beam's filesystems raise their own
    error type for a missing file, which callers would take for a damaged one)."""
    try:
        return storage.size(archive)
    except OSError:
        if not storage.exists(archive):
            raise FileNotFoundError(f"no such archive: {archive}") from None
        raise


def layout(archive: str) -> Layout:
    """What ``archive`` is made of, from its end records; raises :class:`ZipError` (not a zip, a part
    missing) or FileNotFoundError (no such archive)."""
    last_size = _archive_size(archive)
    tail = _tail(archive, last_size)
    at = tail.rfind(_EOCD)
    # a signature inside the comment (or cut off at the end): look further back
    while at >= 0 and (
        at + 22 > len(tail) or at + 22 + struct.unpack_from("<H", tail, at + 20)[0] > len(tail)
    ):
        at = tail.rfind(_EOCD, 0, at)
    if at < 0:
        raise ZipError(f"{archive} is not a zip archive (no end of central directory record)")
    disk, cd_disk, _, entries, cd_size, cd_offset, _ = struct.unpack_from("<4xHHHHIIH", tail, at)
    zip64 = None
    loc = at - 20
    if loc >= 0 and tail[loc : loc + 4] == _ZIP64_LOCATOR:
        eocd64_disk, eocd64_offset, disks = struct.unpack_from("<4xIQI", tail, loc)
        zip64 = (eocd64_disk, eocd64_offset, disks)
        last_disk = disks - 1
    else:
        last_disk = disk
    parts = part_names(archive, last_disk)
    missing = [p for p in parts[:-1] if not storage.exists(p)]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ZipError(
            f"{posixpath.basename(archive)} is the last part of an archive split in {len(parts)} parts; "
            f"missing: {', '.join(posixpath.basename(p) for p in missing[:3])}{more}"
        )
    sizes = (*(storage.size(p) for p in parts[:-1]), last_size)
    starts = Layout(archive, tuple(parts), sizes, 0, 0, 0).starts()
    if zip64 is not None:
        eocd64_disk, eocd64_offset, _ = zip64
        with JoinedParts(tuple(parts), sizes) as f:
            f.seek(starts[eocd64_disk] + eocd64_offset)
            record = f.read_exactly(56)
        if record[:4] != _ZIP64_EOCD:
            raise ZipError(f"{archive}: the Zip64 end record is not where its locator says")
        # Zip64 end record: disk numbers are 4 bytes, counts, sizes and offsets 8
        cd_disk = struct.unpack_from("<I", record, 20)[0]
        entries, cd_size, cd_offset = struct.unpack_from("<QQQ", record, 32)
    if cd_disk >= len(parts):
        raise ZipError(
            f"{archive}: the central directory is said to start on part {cd_disk + 1} of {len(parts)}"
        )
    cd_start = starts[cd_disk] + cd_offset
    if cd_start + cd_size > sum(sizes):  # a damaged or crafted end record: never read past the end
        raise ZipError(f"{archive}: the central directory runs past the end of the archive")
    return Layout(archive, tuple(parts), sizes, cd_start, cd_size, entries)


def _zip64_extra(extra: bytes, sizes: list[int], need: list[bool]) -> list[int]:
    """The Zip64 extended information field (0x0001) fills, in order, each value that overflowed."""
    i = 0
    while i + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, i)
        if tag == 0x0001:
            body, j = extra[i + 4 : i + 4 + n], 0
            out = list(sizes)
            for k, needed in enumerate(need):
                if needed:
                    width = 4 if k == 3 else 8  # the disk number is 4 bytes, the others 8
                    if j + width > len(body):
                        break
                    out[k] = int.from_bytes(body[j : j + width], "little")
                    j += width
            return out
        i += 4 + n
    return sizes


def members(lay: Layout) -> Iterator[Member]:
    """Every entry of the central directory, in its order, with offsets into the joined stream."""
    starts = lay.starts()
    with JoinedParts(lay.parts, lay.sizes) as f:
        f.seek(lay.cd_start)
        data = f.read_exactly(lay.cd_size)
    i = 0
    while i + 46 <= len(data) and data[i : i + 4] == _CENTRAL:
        (flags, method, _t, _d, crc, csize, usize, nlen, xlen, clen, disk, _ia, _ea, offset) = (
            struct.unpack_from("<8xHHHHIIIHHHHHII", data, i)
        )
        raw = data[i + 46 : i + 46 + nlen]
        extra = data[i + 46 + nlen : i + 46 + nlen + xlen]
        usize, csize, offset, disk = _zip64_extra(
            extra,
            [usize, csize, offset, disk],
            [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF, disk == 0xFFFF],
        )
        name = raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        if disk >= len(starts):
            raise ZipError(f"{lay.archive}: member {name!r} is said to start on part {disk + 1}")
        yield Member(name, starts[disk] + offset, csize, usize, method, crc, flags)
        i += 46 + nlen + xlen + clen
    if i != len(data):
        raise ZipError(f"{lay.archive}: the central directory is damaged at byte {i}")


@functools.lru_cache(maxsize=16)
def _cached_layout(archive: str, last_size: int) -> Layout:
    return layout(archive)


def read_member(archive: str, name: str, offset: int | None = None, max_bytes: int | None = None) -> bytes:
    """The bytes of member ``name``. With ``offset`` (its local header in the joined stream, from
    :func:`members`) one seek finds it; without, the central directory is read to find it. Raises
    FileNotFoundError (no such member), :class:`storage.FileTooLarge` and :class:`ZipError`."""
    where = f"member {name!r} of {archive}"
    lay = _cached_layout(archive, _archive_size(archive))
    entry: Member | None = None
    if offset is None:
        entry = next((m for m in members(lay) if m.name == name), None)
        if entry is None:
            raise FileNotFoundError(f"no {where}")
        offset = entry.offset
    with JoinedParts(lay.parts, lay.sizes) as f:
        f.seek(offset)
        header = f.read_exactly(30)
        if header[:4] != _LOCAL:
            raise ZipError(f"no {where} at byte {offset} (no local header there: the archive changed?)")
        flags, method, _t, _d, crc, csize, usize, nlen, xlen = struct.unpack_from("<4x2xHHHHIIIHH", header)
        raw = f.read_exactly(nlen)
        extra = f.read_exactly(xlen)
        found = raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        if found != name:
            raise FileNotFoundError(f"no {where} at byte {offset} (found {found!r}: the archive changed?)")
        if found.endswith("/"):
            raise ZipError(f"{where} is a folder, not a file")
        if flags & 0x1:
            raise ZipError(f"{where} is encrypted")
        usize, csize = _zip64_extra(extra, [usize, csize], [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF])
        if flags & 0x8 and entry is None:  # sizes after the data: only the central directory has them
            entry = next((m for m in members(lay) if m.offset == offset), None)
        if entry is not None:
            csize, usize, crc, method = entry.compressed_size, entry.size, entry.crc, entry.method
        storage.check_size(usize, max_bytes, where)
        if csize > f.total - f.tell():
            raise ZipError(f"{where} runs past the end of the archive ({csize} bytes declared)")
        if method == STORED:
            storage.check_size(csize, max_bytes, where)
        # never more than the declared size (as zipfile does): a header that understates it cannot
        # make the reader hold more; the CRC then fails
        data = _inflate(f, method, csize, usize, max_bytes, where)
    if zlib.crc32(data) != crc:
        raise ZipError(f"{where}: Bad CRC-32 (a damaged archive)")
    if len(data) != usize:
        raise ZipError(f"{where}: {len(data)} bytes decompressed, {usize} declared")
    return data


def _inflate(f: JoinedParts, method: int, csize: int, usize: int, max_bytes: int | None, where: str) -> bytes:
    """At most ``usize`` bytes of the member's data (its declared size)."""
    if method == STORED:
        return f.read_exactly(csize)
    if method not in (DEFLATED, BZIP2):
        raise ZipError(f"{where}: compression method {method} is not supported (stored, deflate, bzip2)")
    out = bytearray()
    left = csize
    pending = b""

    def more() -> bytes:
        nonlocal left
        chunk = f.read_exactly(min(_CHUNK, left))
        left -= len(chunk)
        return chunk

    try:
        if method == DEFLATED:
            d = zlib.decompressobj(-15)
            while not d.eof and len(out) < usize:
                if not pending:
                    if left <= 0:
                        break
                    pending = more()
                # at most _STEP bytes per call: a crafted header can understate the size, so what is
                # made so far is held to the cap before more is made
                out += d.decompress(pending, min(_STEP, usize - len(out)))
                pending = d.unconsumed_tail
                storage.check_size(len(out), max_bytes, where)
            if len(out) < usize and not pending:  # all input taken: what zlib still holds is small
                out += d.flush()[: usize - len(out)]
        else:
            b = bz2.BZ2Decompressor()
            while not b.eof and len(out) < usize:
                if b.needs_input:
                    if left <= 0:
                        break
                    pending = more()
                else:
                    pending = b""
                out += b.decompress(pending, min(_STEP, usize - len(out)))
                storage.check_size(len(out), max_bytes, where)
    except (zlib.error, OSError, EOFError) as e:
        if isinstance(e, ZipError):
            raise
        raise ZipError(f"{where}: cannot decompress: {e}") from None
    storage.check_size(len(out), max_bytes, where)
    return bytes(out)
