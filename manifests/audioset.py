"""AudioSet: the segment lists (``balanced_train_segments.csv``, ``unbalanced_train_segments.csv``,
``eval_segments.csv``) plus the class index (``class_labels_indices.csv``).

The segment lists as Google ships them, three comment lines, the header inside the third, fields
separated by ", " and the label ids of a clip quoted as one comma-separated field::

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

Each line is parsed on its own, so a broken quote costs that row only instead of swallowing the rows
after it. The clips are label-only: ``labels`` are the display names of the class index (they get
the template caption and are the keywords K2C writes from). Audio files are the 10 s segments,
named by YouTube id with or without the leading "Y" and with or without a ``_<start>_<end>`` suffix
(``Y--PJHxphWEs.wav``, ``--PJHxphWEs_30.000_40.000.flac``); ``options.file_pattern`` (fields
``{ytid}``, ``{start}``, ``{end}``: "30.000") names them without listing the folder.

Without ``split``/``split_map`` in the spec, the split is the file's: ``balanced_train``,
``unbalanced_train`` or ``eval``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Annotated

from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.base import Adapter, Lookup, NativeRow
from clap_corpus.manifests.common import native_split_from_file, parse_float
from clap_corpus.manifests.options import AdapterOptions, SpecPath, file_pattern_check
from clap_corpus.manifests.tables import RowError, read_rows, text_value
from clap_corpus.transforms import storage

DEFAULT_DURATION_S = 10.0  # AudioSet segments are 10 s (shorter only where the video ends)


FilePattern = Annotated[str, file_pattern_check("ytid", "start", "end")]


class Options(AdapterOptions):
    class_index: SpecPath  # class_labels_indices.csv (index, mid, display_name)
    file_pattern: FilePattern | None = None


SPLITS_BY_FILE = {
    "balanced_train_segments": "balanced_train",
    "unbalanced_train_segments": "unbalanced_train",
    "eval_segments": "eval",
}
YTID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
# A YouTube id is 11 characters; downloaders add a "Y" in front and/or "_<start>_<end>" behind.
_STEM_RE = re.compile(r"^Y?([A-Za-z0-9_-]{11})(?:_\d+(?:\.\d+)?(?:_\d+(?:\.\d+)?)?)?$")


def youtube_id_of_stem(stem: str) -> str | None:
    """The YouTube id a downloaded file's stem names, or None."""
    m = _STEM_RE.match(stem)
    return m.group(1) if m else None


class SourceError(ValueError):
    """A metadata file the whole source depends on is unusable."""


def load_class_index(path: str) -> dict[str, str]:
    """mid -> display name, from class_labels_indices.csv."""
    names: dict[str, str] = {}
    for item in read_rows(path, "csv"):
        if isinstance(item, RowError):
            continue  # a label whose line is broken is unknown: rows using it are rejected by name
        _, row = item
        mid, name = text_value(row.get("mid")), text_value(row.get("display_name"))
        if mid and name:
            names[mid] = name
    if not names:
        raise SourceError(f"{path}: no (mid, display_name) rows: not an AudioSet class index")
    return names


def segment_lines(path: str) -> Iterator[tuple[int, str]]:
    """(data row number, line) for every non-comment, non-blank line."""
    row = 0
    with storage.open_read(path) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace"):
            if line.startswith("#") or not line.strip():
                continue
            row += 1
            yield row, line.rstrip("\r\n")


class AudioSetAdapter(Adapter):
    Options = Options
    options: Options

    def index_key(self, stem: str) -> str | None:
        return youtube_id_of_stem(stem)

    def rows(self) -> Iterator[NativeRow | Reject]:
        assert self.source.manifest is not None
        try:
            names = load_class_index(self.options.class_index)
        except (SourceError, OSError) as e:
            # Every row would be rejected for it: one reject says why, and the run goes on.
            yield self.reject(None, Code.UNREADABLE_METADATA, str(e), path=self.options.class_index)
            return
        native = native_split_from_file(self.source.manifest, SPLITS_BY_FILE)
        for row_no, line in segment_lines(self.source.manifest):
            yield self._row(names, native, row_no, line)

    def _row(self, names: dict[str, str], native: str | None, row_no: int, line: str) -> NativeRow | Reject:
        try:
            fields = next(csv.reader([line], skipinitialspace=True, strict=True))
        except csv.Error as e:
            return self.reject(row_no, Code.BROKEN_QUOTING, f"unparseable line (quoting): {e}")
        if len(fields) != 4:
            return self.reject(
                row_no,
                Code.MALFORMED_ROW,
                f"row has {len(fields)} fields, expected 4 (YTID, start_seconds, end_seconds, quoted labels)",
            )
        ytid, start_s, end_s, label_field = (f.strip() for f in fields)
        if not ytid:
            return self.reject(row_no, Code.MISSING_ID, "the row has no YouTube id")
        if not YTID_RE.match(ytid):
            return self.reject(
                row_no, Code.BAD_ID, f"'{ytid[:40]}' is not an 11-character YouTube id", source_id=ytid
            )
        start, end = parse_float(start_s), parse_float(end_s)
        if start is None or end is None or start < 0 or end <= start:
            return self.reject(
                row_no,
                Code.BAD_TIMESTAMPS,
                f"start {start_s!r}, end {end_s!r}: not 0 <= start < end",
                source_id=ytid,
            )
        mids = [m.strip() for m in label_field.split(",") if m.strip()]
        if not mids:
            return self.reject(row_no, Code.NO_LABELS, "the row has no label id", source_id=ytid)
        unknown = [m for m in mids if m not in names]
        if unknown:
            return self.unknown_labels(row_no, unknown, "the class index", source_id=ytid)
        return NativeRow(
            row=row_no,
            id=ytid,
            audio=Lookup(ytid, {"ytid": ytid, "start": f"{start:.3f}", "end": f"{end:.3f}"}),
            split=native,
            labels=tuple(dict.fromkeys(names[m] for m in mids)),
            origin_ids=(f"youtube:{ytid}",),
            expected_duration_s=round(end - start, 3),
            original={"ytid": ytid, "start_seconds": start, "end_seconds": end, "positive_labels": mids},
        )


read_audioset = AudioSetAdapter.read
