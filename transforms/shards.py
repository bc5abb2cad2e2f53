"""Writing one shard: a WebDataset tar and a Parquet file, their rejects, and stats last.

Every file goes to a temporary name and is renamed into place when complete; the stats file is
written after everything else, so a shard is finished exactly when its stats file exists (the
img2dataset rule). Members are written in key order with fixed metadata, so the same samples always
give the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.layout import FLAC, JSON, MEL, Layout, check_name
from clap_corpus.core.records import ClapScores, Record, Reject
from clap_corpus.core.schema import DICTIONARY_COLUMNS, parquet_row, parquet_schema
from clap_corpus.transforms import storage
from clap_corpus.transforms.sample import Sample

TAR_MTIME = 0  # fixed member mtime: archives must not depend on when they were written
# A row group is buffered whole before it is written: these bound the FLAC bytes a writer holds. 64
# ten-second clips are ~30 MB; the byte cap matters for long recordings (10 min of music is ~30 MB
# of FLAC alone), which would otherwise make a worker's memory grow with the shard's clip lengths.
PARQUET_ROWS_PER_GROUP = 64
PARQUET_GROUP_BYTES = 32 * 2**20

# Histogram bins: bin i holds values in [edges[i], edges[i+1]); the last bin is open-ended.
DURATION_EDGES_S = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 30, 45, 60, 90, 120, 180, 300)
CAPTION_WORD_EDGES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100)
# dBFS; the first bin (from -120, the digital-silence floor) collects everything under -90
LEVEL_EDGES_DBFS = (-120, -90, -80, -70, -60, -50, -45, -40, -35, -30, -25, -20, -15, -10, -6, -3, -1)
UNKNOWN_LICENSE = "unknown"
EXAMPLES_PER_SOURCE = 3  # example samples a shard keeps per source for the run report


def histogram(values: Iterable[float], edges: tuple[float, ...]) -> list[int]:
    counts = [0] * len(edges)
    for v in values:
        counts[max(0, bisect_right(edges, v) - 1)] += 1
    return counts


def level_fields(levels: Iterable[tuple[float, float]]) -> dict[str, Any]:
    """The level histograms of :class:`ShardStats` for a shard's (peak dBFS, RMS dBFS) pairs."""
    levels = list(levels)
    return {
        "peak_dbfs_hist": histogram((p for p, _ in levels), LEVEL_EDGES_DBFS),
        "rms_dbfs_hist": histogram((r for _, r in levels), LEVEL_EDGES_DBFS),
    }


def input_fields(inputs: Iterable[tuple[Any, Any, Any]]) -> dict[str, Any]:
    """What the kept samples were before decoding: counts by codec, channel count and sample rate,
    from (original_codec, original_channels, original_sample_rate) per sample."""
    inputs = list(inputs)

    def counts(i: int) -> dict[str, int]:
        c = Counter("unknown" if x[i] is None else str(x[i]) for x in inputs)
        return dict(sorted(c.items()))

    return {"input_codecs": counts(0), "input_channels": counts(1), "input_sample_rates": counts(2)}


def example_entry(meta: Mapping[str, Any], flac_offset: int | None) -> dict[str, Any]:
    """A sample as the run report shows it, with where its FLAC member's header lies in the shard's tar."""
    return {
        "key": meta["key"],
        "source": meta["source"],
        "caption": (meta.get("text") or [""])[0],
        "captions": len(meta.get("text") or []),
        "caption_kind": meta.get("caption_kind"),
        "duration": meta.get("duration"),
        "flac_offset": flac_offset,
    }


def distribution_fields(kept: Iterable[tuple[Record, float]]) -> dict[str, Any]:
    """The histogram and counter fields of :class:`ShardStats` for a shard's (record, seconds) pairs."""
    kept = list(kept)
    licenses: dict[str, Counter[str]] = {}
    for r, _ in kept:
        licenses.setdefault(r.source, Counter())[r.license or UNKNOWN_LICENSE] += 1
    return {
        "duration_hist": histogram((s for _, s in kept), DURATION_EDGES_S),
        "caption_words_hist": histogram(
            (len(t.split()) for r, _ in kept for t in r.text), CAPTION_WORD_EDGES
        ),
        "caption_kinds": dict(sorted(Counter(r.caption_kind or "none" for r, _ in kept).items())),
        "licenses_by_source": {k: dict(sorted(v.items())) for k, v in sorted(licenses.items())},
    }


@dataclass(frozen=True)
class ShardStats:
    """What a finished shard holds; its file marks the shard as done."""

    split: str
    shard: str
    fingerprint: str  # of the spec, the code format and the shard's records: a mismatch means redo
    samples: int
    rejects: int
    samples_by_source: Mapping[str, int] = field(default_factory=dict)
    rejects_by_source: Mapping[str, int] = field(default_factory=dict)
    rejects_by_code: Mapping[str, int] = field(default_factory=dict)
    audio_seconds_by_source: Mapping[str, float] = field(default_factory=dict)
    truncated: int = 0
    incomplete: int = 0  # samples flagged `incomplete` (kept: on_incomplete is keep)
    silent: int = 0  # inputs rejected as `silent`
    k2c_captions: int = 0
    k2c_skipped_short: int = 0  # records whose K2C caption was dropped: clip under min_clip_seconds
    tar_bytes: int = 0
    parquet_bytes: int = 0
    views_bytes: int = 0  # the sidecar views tar (formats: views); left out of the stats file when 0
    seconds: float = 0.0  # wall time spent building the shard
    # (key, source, audio digest) per sample, for the duplicates report; dropped before the summary
    audio_hashes: tuple[tuple[str, str, str], ...] = ()
    # (key, source, audio digest) of the train samples left out because a held-out split has the same
    # audio (pipeline/stages/duplicates.py, cross_split_duplicates: remove); dropped before the summary too
    overlap_removed: tuple[tuple[str, str, str], ...] = ()
    # Set when a finished shard from an earlier run was kept. The stats file on disk always says false
    # (it is written by the run that built the shard); the summary counts the kept ones from this.
    reused: bool = False
    # Fixed-bin histograms (edges below) and small counters, so the run report can be built from
    # the stats alone, whatever the corpus size.
    duration_hist: list[int] = field(default_factory=list)  # samples per DURATION_EDGES_S bin
    caption_words_hist: list[int] = field(default_factory=list)  # captions per CAPTION_WORD_EDGES bin
    caption_kinds: Mapping[str, int] = field(default_factory=dict)
    licenses_by_source: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    peak_dbfs_hist: list[int] = field(default_factory=list)  # samples per LEVEL_EDGES_DBFS bin
    rms_dbfs_hist: list[int] = field(default_factory=list)
    # Kept samples by what they were before decoding (see input_fields)
    input_codecs: Mapping[str, int] = field(default_factory=dict)
    input_channels: Mapping[str, int] = field(default_factory=dict)
    input_sample_rates: Mapping[str, int] = field(default_factory=dict)
    # The first EXAMPLES_PER_SOURCE samples of each source, in key order (see example_entry)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["views_bytes"]:
            del d["views_bytes"]  # stats files of runs without sidecar views stay as they were
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ShardStats:
        return cls(**d)


class _CountingWriter(io.BufferedIOBase):
    """Counts bytes on their way to the real stream: a tar written in stream mode cannot tell its
    size (TarWriter reports member payloads only; the headers and the end-of-archive padding count too).

    Only ``write`` is called; a BufferedIOBase (its ``read`` gives bytes) is the file object tarfile's
    types ask for."""

    def __init__(self, inner: BinaryIO):
        self.inner, self.count = inner, 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = len(b)
        self.inner.write(bytes(b))
        self.count += n
        return n


class _TarWriter:
    """Tar members with fixed metadata (mode 0o644, uid/gid 0, no user or group name, mtime 0): the same
    samples always give the same bytes.

    What webdataset's TarWriter (1.0.2, ``encoder=False, compress=False``) wrote, byte for byte: a
    streamed ``tarfile`` in its default (PAX) format, members ``<key>.<suffix>`` in sorted suffix order.
    For every name the key rule admits (ASCII, ``<key>.mel.npy`` under 100 bytes) and every member
    under 8 GiB, PAX needs no extended header, and its header block is the USTAR one byte for byte
    (tests/test_shard_builder.py compares the two). Written on the standard library because importing
    webdataset imports torch where it is installed (seconds of CPU in every worker).
    """

    def __init__(self, stream: io.BufferedIOBase):
        self._tar = tarfile.open(fileobj=stream, mode="w|")  # noqa: SIM115 (closed by close())

    @property
    def offset(self) -> int:
        """Where the next member's header will start."""
        return self._tar.offset

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        for suffix in sorted(members):
            data = members[suffix]
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), TAR_MTIME, 0o644, "", ""
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()


class ShardWriter:
    """Streams samples into the shard's files; nothing is visible under the final names until close."""

    def __init__(
        self,
        layout: Layout,
        split: str,
        shard: str,
        formats: tuple[str, ...],
        features: tuple[str, ...] = (),
    ):
        self.layout, self.split, self.shard = layout, split, shard
        self.features = features  # core.schema features on in this corpus ("clap")
        self.schema = parquet_schema(features)
        self._open: list[tuple[str, str, BinaryIO]] = []  # (temp, final, stream)
        self._tar: _TarWriter | None = None
        self._tar_count: _CountingWriter | None = None
        self._views: _TarWriter | None = None
        self._views_count: _CountingWriter | None = None
        self.views_bytes = 0
        self._pq: pq.ParquetWriter | None = None
        self._pq_stream: BinaryIO | None = None
        self._rows: list[dict[str, Any]] = []
        self._rows_bytes = 0  # FLAC bytes in self._rows
        self._clap: list[tuple[str, ClapScores]] | None = [] if "clap" in features else None
        if "webdataset" in formats:
            raw = self._create(layout.tar_path(split, shard))
            self._tar_count = _CountingWriter(raw)
            self._tar = _TarWriter(self._tar_count)
        if "views" in formats:
            self._views_count = _CountingWriter(self._create(layout.views_tar_path(split, shard)))
            self._views = _TarWriter(self._views_count)
        if "parquet" in formats:
            self._pq_stream = self._create(layout.parquet_path(split, shard))
            self._pq = pq.ParquetWriter(
                self._pq_stream,
                self.schema,
                compression="zstd",
                # a list of columns, as pyarrow documents; its stubs say bool
                use_dictionary=list(DICTIONARY_COLUMNS),  # pyright: ignore[reportArgumentType]
            )

    def _create(self, final: str) -> BinaryIO:
        tmp = storage.temp_name(final)
        stream = storage.create(tmp)
        self._open.append((tmp, final, stream))
        return stream

    def add(self, sample: Sample, clap: ClapScores | None = None) -> int | None:
        """Write the sample; return where its first member's (the FLAC's) header starts in the tar,
        None without a tar: with it, the run report reads an example clip with one seek
        (an :class:`~clap_corpus.core.audio_ref.ArchiveMember` with that offset)."""
        key = check_name("key", sample.key)
        flac_offset = None
        if self._clap is not None and clap is not None:
            self._clap.append((sample.key, clap))
        if self._tar is not None:
            flac_offset = self._tar.offset
            # members `<key>.<suffix>` in sorted suffix order: flac, json, mel.npy
            members = {FLAC: sample.flac, JSON: sample.json_bytes()}
            if sample.mel is not None and self._views is None:
                members[MEL] = sample.mel_bytes()
            self._tar.write(key, members)
        if self._views is not None and sample.mel is not None:
            self._views.write(key, {MEL: sample.mel_bytes()})
        if self._pq is not None:
            self._rows.append(parquet_row(sample.key, sample.flac, sample.meta, self.features))
            self._rows_bytes += len(sample.flac)
            if len(self._rows) >= PARQUET_ROWS_PER_GROUP or self._rows_bytes >= PARQUET_GROUP_BYTES:
                self._flush_rows()
        return flac_offset

    def _flush_rows(self) -> None:
        if self._rows and self._pq is not None:
            self._pq.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows, self._rows_bytes = [], 0

    def close(self) -> tuple[int, int]:
        """Finish every file and rename it into place; returns (tar bytes, parquet bytes). The sidecar
        views tar's bytes are in :attr:`views_bytes` afterwards."""
        tar_bytes = parquet_bytes = 0
        if self._tar is not None and self._tar_count is not None:
            self._tar.close()
            tar_bytes = self._tar_count.count
        if self._views is not None and self._views_count is not None:
            self._views.close()
            self.views_bytes = self._views_count.count
        if self._pq is not None:
            self._flush_rows()
            self._pq.close()
        if self._clap is not None:
            stream = self._create(self.layout.clap_embeddings_path(self.split, self.shard))
            pq.write_table(clap_embeddings_table(self._clap), stream, compression="zstd")
        for _, _, stream in self._open:
            if stream is self._pq_stream:
                parquet_bytes = stream.tell() if hasattr(stream, "tell") else 0
            stream.close()
        for tmp, final, _ in self._open:
            storage.rename(tmp, final)
        self._open = []
        return tar_bytes, parquet_bytes

    def abort(self) -> None:
        """Drop every temporary file (the shard will be redone by the next attempt)."""
        # Closed first, into files deleted next: left to the garbage collector, they would flush
        # into streams already closed.
        for writer in (self._tar, self._views, self._pq):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
        self._tar = self._views = self._pq = None
        for tmp, _, stream in self._open:
            with contextlib.suppress(Exception):  # best effort: the file is deleted next
                stream.close()
            with contextlib.suppress(Exception):
                storage.delete([tmp])
        self._open = []


CLAP_EMBEDDINGS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("audio_embedding", pa.binary()),  # float16 little-endian [dim]
        ("text_embeddings", pa.binary()),  # float16 little-endian [captions, dim], `text`'s order
        ("clap_scores", pa.list_(pa.float64())),
    ],
    metadata={b"clap_corpus": b'{"dtype": "<f2", "normalised": "L2"}'},
)


def clap_embeddings_table(rows: list[tuple[str, ClapScores]]) -> pa.Table:
    """One row per sample, in the shard's key order: what ``<out>/clap/<split>/<shard>.parquet`` holds."""
    return pa.Table.from_pylist(
        [
            {
                "key": key,
                "audio_embedding": c.audio_embedding,
                "text_embeddings": c.text_embeddings,
                "clap_scores": list(c.scores),
            }
            for key, c in rows
        ],
        schema=CLAP_EMBEDDINGS_SCHEMA,
    )


def rejects_jsonl(rejects: list[Reject]) -> bytes:
    return b"".join(dumps_json(r.to_json()) + b"\n" for r in rejects)


def count_by(items: list[Any], attr: str) -> dict[str, int]:
    return dict(sorted(Counter(getattr(x, attr) for x in items).items()))


def read_stats(layout: Layout, split: str, shard: str) -> ShardStats | None:
    path = layout.stats_path(split, shard)
    if not storage.exists(path):
        return None
    try:
        return ShardStats.from_json(json.loads(storage.read_text(path)))
    except (ValueError, TypeError):
        return None  # a stats file we cannot read means the shard is not known to be done
