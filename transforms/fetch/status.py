"""The fetch status table: one row per manifest row that names a URL, one Parquet file per status shard.

img2dataset's ``<shard>_stats``/parquet status, for audio: what was asked for, what came back, why
not. ``url`` is the URL's identity (:func:`core.urls.url_identity`): no userinfo, no secret query
parameter, no fragment. A rerun reads the previous table of its shard to keep failed rows failed
(``--retry-failed`` fetches them again) and ``download_cap`` rows pending.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, fields

import pyarrow as pa
import pyarrow.parquet as pq

from clap_corpus.transforms import storage

OK, CACHED, FAILED, DEFERRED = "ok", "cached", "failed", "deferred"
STATUSES = (OK, CACHED, FAILED, DEFERRED)

SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("row", pa.int64()),
        ("key", pa.string()),
        ("url", pa.string()),
        ("status", pa.string()),  # ok (fetched now) | cached (fetched before) | failed | deferred
        ("code", pa.string()),  # the reject code of a failed or deferred row
        ("http_code", pa.int32()),
        ("error_class", pa.string()),  # timeout, reset, http_404, too_large, private_video ...
        ("error", pa.string()),
        ("bytes", pa.int64()),
        ("digest", pa.string()),  # SHA-256 of the fetched bytes (the cache object's name)
        ("attempts", pa.int32()),  # requests made in this run (0: from the cache or the old table)
        ("seconds", pa.float64()),  # time spent fetching this row in this run
        # why a cached copy was fetched again: cache_mismatch (the object's bytes were not its digest),
        # content_rejected (--retry-failed, and the decoder had rejected the cached bytes)
        ("refetched", pa.string()),
    ]
)


@dataclass(frozen=True)
class StatusRow:
    source: str
    row: int | None
    key: str
    url: str
    status: str
    code: str | None = None
    http_code: int | None = None
    error_class: str | None = None
    error: str | None = None
    bytes: int | None = None
    digest: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    refetched: str | None = None


def status_parquet(rows: list[StatusRow]) -> bytes:
    ordered = sorted(rows, key=lambda r: (r.source, r.row if r.row is not None else -1, r.key))
    columns = {f.name: [getattr(r, f.name) for r in ordered] for f in fields(StatusRow)}
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_status(path: str, rows: list[StatusRow]) -> None:
    storage.write_bytes_atomic(path, status_parquet(rows))


def read_status(path: str) -> dict[str, StatusRow]:
    """The rows of an earlier status table, by URL identity ({} when there is none or it cannot be
    read)."""
    try:
        data = storage.read_bytes(path)
        table = pq.read_table(io.BytesIO(data))
    except (OSError, pa.ArrowException):
        return {}
    names = {f.name for f in fields(StatusRow)}
    return {d["url"]: StatusRow(**{k: v for k, v in d.items() if k in names}) for d in table.to_pylist()}


def as_dict(row: StatusRow) -> dict:
    return asdict(row)
