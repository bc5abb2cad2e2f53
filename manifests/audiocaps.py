"""AudioCaps: ``train.csv`` / ``val.csv`` / ``test.csv`` from the AudioCaps repository::

    audiocap_id,youtube_id,start_time,caption
    91139,r1nicOVtvkQ,130,A woman talks nearby as water pours

One clip can have several caption rows (five in val and test). They become ONE sample carrying all
its captions, in file order; LAION's script wrote every evaluation clip five times, once per caption.
The input count of the source is therefore clips (plus rejected rows), not rows. The rows are
grouped in memory: AudioCaps has about 50 000 of them.

AudioCaps clips are AudioSet segments: every sample carries the origin id ``youtube:<id>``, which the
leakage guard compares across sources. Audio files are found like AudioSet's (named by YouTube id,
with or without "Y" and a start/end suffix), or by ``options.file_pattern`` with the fields
``{youtube_id}``, ``{start_time}`` (as written in the CSV) and ``{audiocap_id}`` (the clip's first).
Without ``split``/``split_map``, the split follows the file name: train, val -> valid, test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.audioset import YTID_RE, youtube_id_of_stem
from clap_corpus.manifests.base import Adapter, Lookup, NativeRow
from clap_corpus.manifests.common import native_split_from_file, parse_float
from clap_corpus.manifests.options import AdapterOptions, file_pattern_check
from clap_corpus.manifests.tables import RowError, read_rows, text_value

DEFAULT_DURATION_S = 10.0  # AudioSet segments
FilePattern = Annotated[str, file_pattern_check("youtube_id", "start_time", "audiocap_id")]


class Options(AdapterOptions):
    file_pattern: FilePattern | None = None


SPLITS_BY_FILE = {"train": "train", "val": "val", "test": "test"}
DEFAULT_SPLITS = {"val": "valid"}


@dataclass
class _Clip:
    row: int
    start_text: str
    start: float
    audiocap_ids: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


class AudioCapsAdapter(Adapter):
    Options = Options
    options: Options
    split_defaults = DEFAULT_SPLITS

    def index_key(self, stem: str) -> str | None:
        return youtube_id_of_stem(stem)

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        source = self.source
        assert source.manifest is not None
        clips: dict[str, _Clip] = {}
        for item in read_rows(source.manifest, "csv"):
            if isinstance(item, RowError):
                yield item
                continue
            row_no, row = item
            ytid = text_value(row.get("youtube_id"))
            if ytid is None:
                yield self.reject(row_no, Code.MISSING_ID, "column 'youtube_id' is empty")
                continue
            if not YTID_RE.match(ytid):
                yield self.reject(row_no, Code.BAD_ID, f"'{ytid[:40]}' is not an 11-character YouTube id")
                continue
            start_text = text_value(row.get("start_time")) or ""
            start = parse_float(start_text)
            if start is None or start < 0:
                yield self.reject(
                    row_no, Code.BAD_TIMESTAMPS, f"start_time {start_text!r} is not a time", source_id=ytid
                )
                continue
            caption = text_value(row.get("caption"))
            if caption is None:
                yield self.reject(row_no, Code.EMPTY_CAPTION, "column 'caption' is empty", source_id=ytid)
                continue
            clip = clips.get(ytid)
            if clip is None:
                clip = clips[ytid] = _Clip(row=row_no, start_text=start_text, start=start)
            elif clip.start != start:
                yield self.reject(
                    row_no,
                    Code.CONFLICTING_SEGMENT,
                    f"clip {ytid} starts at {clip.start_text} in row {clip.row} but at {start_text} here",
                    source_id=ytid,
                )
                continue
            clip.captions.append(caption)
            if aid := text_value(row.get("audiocap_id")):
                clip.audiocap_ids.append(aid)

        native = native_split_from_file(source.manifest, SPLITS_BY_FILE)
        for ytid, clip in clips.items():
            fields = {
                "youtube_id": ytid,
                "start_time": clip.start_text,
                "audiocap_id": clip.audiocap_ids[0] if clip.audiocap_ids else "",
            }
            yield NativeRow(
                row=clip.row,
                id=ytid,
                audio=Lookup(ytid, fields),
                split=native,
                captions=tuple(dict.fromkeys(clip.captions)),
                origin_ids=(f"youtube:{ytid}",),
                original={"youtube_id": ytid, "start_time": clip.start, "audiocap_ids": clip.audiocap_ids},
            )


read_audiocaps = AudioCapsAdapter.read
