"""Reading metadata tables (CSV, JSONL, Parquet) row by row, from any Beam filesystem.

Adapters share these readers so that every source gets the same handling of encodings, byte-order
marks, blank lines and broken rows: a row that cannot be parsed is yielded as a :class:`RowError`,
never raised, so one bad line cannot take the source down.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from clap_corpus.transforms import storage

FORMATS = ("csv", "tsv", "jsonl", "parquet")
_EXTENSIONS = {
    "csv": "csv",
    "tsv": "tsv",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "json": "jsonl",
    "parquet": "parquet",
    "pq": "parquet",
}

# CSV fields in real metadata dumps (Freesound descriptions) can be long; the default 128 KiB limit
# turns them into parse errors.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass(frozen=True)
class RowError:
    """A row that could not be parsed at all."""

    row: int
    reason: str


def table_format(path: str, declared: str | None = None) -> str:
    if declared:
        fmt = declared.lower()
    else:
        name = path.lower().rsplit("/", 1)[-1]
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        fmt = _EXTENSIONS.get(ext, "")
        if not fmt:
            raise ValueError(f"cannot tell the table format of '{path}' from its name; set options.format")
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format '{fmt}' (known: {', '.join(FORMATS)})")
    return fmt


def read_rows(
    path: str,
    fmt: str | None = None,
    *,
    comment: str | None = None,
    encoding: str = "utf-8-sig",
    fieldnames: list[str] | None = None,
) -> Iterator[tuple[int, Mapping[str, Any]] | RowError]:
    """Yield ``(row_number, row)`` for each data row (1-based, header excluded), or RowError.

    ``encoding`` applies to CSV/TSV (Clotho's metadata files are ISO-8859-1); ``fieldnames`` is
    for CSV files without a header line (FSD50K's vocabulary.csv): every line is then data.
    """
    fmt = table_format(path, fmt)
    if fmt in ("csv", "tsv"):
        yield from _read_csv(path, "\t" if fmt == "tsv" else ",", comment, encoding, fieldnames)
    elif fmt == "jsonl":
        yield from _read_jsonl(path)
    else:
        yield from _read_parquet(path)


def read_table(path: str, fmt: str | None) -> Iterator[tuple[int, Mapping[str, Any]] | RowError]:
    """Rows of a table, or of a JSON document (list of objects / object keyed by id).

    A JSON document is read whole (memory grows with it); use JSONL for large dumps. A ``.json``
    file that is not one document is read as JSON lines.
    """
    is_json = fmt == "json" or (fmt is None and path.lower().endswith(".json"))
    if not is_json:
        yield from read_rows(path, fmt)
        return
    try:
        doc = json.loads(storage.read_text(path))
    except ValueError:
        yield from read_rows(path, "jsonl")
        return
    items = doc.items() if isinstance(doc, dict) else enumerate(doc if isinstance(doc, list) else [doc])
    for n, (key, obj) in enumerate(items, start=1):
        if not isinstance(obj, dict):
            yield RowError(n, f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield n, obj if isinstance(doc, list) or "id" in obj else {"id": key, **obj}


def _read_csv(
    path: str,
    delimiter: str,
    comment: str | None,
    encoding: str = "utf-8-sig",
    fieldnames: list[str] | None = None,
) -> Iterator[tuple[int, Mapping[str, Any]] | RowError]:
    with storage.open_read(path) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        lines = (line for line in text if not (comment and line.startswith(comment)))
        reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True)
        try:
            header = list(fieldnames) if fieldnames is not None else next(reader)
        except StopIteration:
            return
        header = [h.strip() for h in header]
        row_no = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                row_no += 1
                yield RowError(row_no, f"unparseable CSV row: {e}")
                continue
            if not values or all(not v.strip() for v in values):
                continue
            row_no += 1
            if len(values) != len(header):
                yield RowError(row_no, f"row has {len(values)} fields, the header has {len(header)}")
                continue
            yield row_no, dict(zip(header, values, strict=True))


def _read_jsonl(path: str) -> Iterator[tuple[int, Mapping[str, Any]] | RowError]:
    with storage.open_read(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace")
        row_no = 0
        for line in text:
            if not line.strip():
                continue
            row_no += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield RowError(row_no, f"invalid JSON: {e.msg} at column {e.colno}")
                continue
            if not isinstance(obj, dict):
                yield RowError(row_no, f"a JSON line must be an object, got {type(obj).__name__}")
                continue
            yield row_no, obj


def _read_parquet(path: str) -> Iterator[tuple[int, Mapping[str, Any]] | RowError]:
    import pyarrow.parquet as pq

    with storage.open_read(path) as raw:
        pf = pq.ParquetFile(raw)
        row_no = 0
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                row_no += 1
                yield row_no, row


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


class NotText(ValueError):
    """A value that should be text (a caption) is something else."""


def text_list(value: Any, *, separator: str | None = "|", strict: bool = True) -> tuple[str, ...]:
    """Normalise a list-valued cell: a real list, a JSON list in a string, or a separated string.

    With ``strict`` every element must be a string (a caption that is a number is bad input);
    otherwise numbers are turned into text (label ids, tags).
    """
    if is_missing(value):
        return ()
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                parsed = json.loads(s)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return text_list(parsed, separator=None, strict=strict)
        items = s.split(separator) if separator else [s]
    elif isinstance(value, list | tuple):
        items = list(value)
    elif hasattr(value, "tolist"):  # a numpy array (a cell read by pandas or pyarrow)
        items = list(value.tolist())
    elif not strict and isinstance(value, int | float) and not isinstance(value, bool):
        items = [value]
    else:
        raise NotText(f"expected text or a list of text, got {type(value).__name__}")
    out: list[str] = []
    for item in items:
        if is_missing(item):
            continue
        if not isinstance(item, str):
            if strict or isinstance(item, bool) or not isinstance(item, int | float):
                raise NotText(f"expected text, got {type(item).__name__} ({str(item)[:40]!r})")
            item = str(item)
        item = " ".join(item.split())
        if item:
            out.append(item)
    return tuple(dict.fromkeys(out))


def text_value(value: Any) -> str | None:
    """A single optional text cell, whitespace-normalised."""
    if is_missing(value):
        return None
    if not isinstance(value, str):
        value = str(value)
    return " ".join(value.split()) or None


def jsonable(value: Any) -> Any:
    """Make a cell JSON-safe and deterministic (for `original_data`)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return None
    return str(value)
