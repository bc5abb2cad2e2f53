"""FSD50K: the ground truth (``FSD50K.ground_truth/dev.csv``, ``eval.csv``), the vocabulary, and
optionally the clips' Freesound metadata (``FSD50K.metadata/<dev|eval>_clips_info_FSD50K.json``)::

    dev.csv:        fname,labels,mids,split
                    64760,"Electric_guitar,Guitar,Plucked_string_instrument",/m/02sgy,/m/0342h,...,train
    eval.csv:       fname,labels,mids
    vocabulary.csv: 0,Accelerating_and_revving_and_vroom,/m/07q2z82      (no header)
    clips_info:     {"64760": {"title": .., "description": .., "tags": [..], "license": .., "uploader": ..}}

Label-only clips: ``labels`` are the class names with underscores as spaces (the template caption
and K2C use them); the clip's Freesound tags become keywords. ``fname`` is the Freesound id (origin
``freesound:<fname>``). Audio: ``<audio_root>/<fname>.wav`` (``FSD50K.dev_audio/``,
``FSD50K.eval_audio/``), or ``options.file_pattern`` with ``{fname}``.

Splits: dev.csv's own column (train -> train, val -> valid); eval.csv -> test. ``options.include_splits``
keeps only rows of the listed native splits (``[train]``: the 36 796 clips LAION trained on); rows of
other splits are not inputs of this source at all (put them in another source to keep them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field

from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.base import Adapter, NativeRow
from clap_corpus.manifests.common import native_split_from_file
from clap_corpus.manifests.options import AdapterOptions, SpecPath, file_pattern_check
from clap_corpus.manifests.tables import RowError, read_rows, text_list, text_value
from clap_corpus.transforms import storage

DEFAULT_DURATION_S = 7.6  # FSD50K: 51 197 clips, 108.3 h (Fonseca et al., 2022) -> 7.6 s on average
FilePattern = Annotated[str, file_pattern_check("fname")]


class Options(AdapterOptions):
    vocabulary: SpecPath | None = None  # FSD50K.ground_truth/vocabulary.csv: unknown label ids are rejected
    clips_info: SpecPath | None = None  # FSD50K.metadata/<dev|eval>_clips_info_FSD50K.json
    # native splits to read (train, val, eval); default all
    include_splits: list[str] = Field(default_factory=list)
    file_pattern: FilePattern = "{fname}.wav"


SPLITS_BY_FILE = {"dev": "dev", "eval": "eval"}
DEFAULT_SPLITS = {"val": "valid", "eval": "test"}
_DIGITS_RE = re.compile(r"^\d+$")


def load_vocabulary(path: str) -> dict[str, str]:
    """mid -> class name (underscores as spaces)."""
    out: dict[str, str] = {}
    for item in read_rows(path, "csv", fieldnames=["index", "label", "mid"]):
        if isinstance(item, RowError):
            continue
        _, row = item
        mid, label = text_value(row.get("mid")), text_value(row.get("label"))
        if mid and label:
            out[mid] = label.replace("_", " ")
    return out


def load_clips_info(path: str) -> dict[str, dict[str, Any]]:
    doc = json.loads(storage.read_text(path))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by fname")
    return {str(k): v for k, v in doc.items() if isinstance(v, dict)}


class FSD50KAdapter(Adapter):
    Options = Options
    options: Options
    split_defaults = DEFAULT_SPLITS

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        source, opts = self.source, self.options
        assert source.manifest is not None
        try:
            vocab = load_vocabulary(opts.vocabulary) if opts.vocabulary else None
            info = load_clips_info(opts.clips_info) if opts.clips_info else {}
        except (ValueError, OSError) as e:
            yield self.reject(None, Code.UNREADABLE_METADATA, str(e)[:300])
            return
        include = set(opts.include_splits)
        file_split = native_split_from_file(source.manifest, SPLITS_BY_FILE)
        for item in read_rows(source.manifest, "csv"):
            if isinstance(item, RowError):
                yield item
                continue
            row_no, row = item
            native = text_value(row.get("split")) or ("eval" if file_split == "eval" else None)
            if include and native not in include:
                continue
            fname = text_value(row.get("fname"))
            if fname is None:
                yield self.reject(row_no, Code.MISSING_ID, "column 'fname' is empty")
                continue
            mids = text_list(row.get("mids"), separator=",", strict=False)
            names = text_list(row.get("labels"), separator=",", strict=False)
            if vocab is not None:
                unknown = [m for m in mids if m not in vocab]
                if unknown:
                    yield self.unknown_labels(row_no, unknown, "the vocabulary", source_id=fname)
                    continue
                labels = tuple(vocab[m] for m in mids)
            else:
                labels = tuple(n.replace("_", " ") for n in names)
            if not labels:
                yield self.reject(row_no, Code.NO_LABELS, "the row has no label", source_id=fname)
                continue
            clip = info.get(fname, {})
            title, uploader = text_value(clip.get("title")), text_value(clip.get("uploader"))
            yield NativeRow(
                row=row_no,
                id=fname,
                audio=opts.file_pattern.format(fname=fname),
                split=native,
                labels=tuple(dict.fromkeys(labels)),
                keywords=text_list(clip.get("tags"), separator=",", strict=False),
                license=text_value(clip.get("license")),
                attribution=(
                    f"{title or fname} by {uploader} (https://freesound.org/s/{fname}/)" if uploader else None
                ),
                origin_ids=(f"freesound:{fname}",) if _DIGITS_RE.match(fname) else (),
                original={
                    "fname": fname,
                    "mids": list(mids),
                    "split": native,
                    **{k: clip[k] for k in ("title", "description") if clip.get(k) is not None},
                },
            )


read_fsd50k = FSD50KAdapter.read
