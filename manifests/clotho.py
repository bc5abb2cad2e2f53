"""Clotho (v2.1): ``clotho_captions_<split>.csv`` plus, optionally, ``clotho_metadata_<split>.csv``::

    file_name,caption_1,caption_2,caption_3,caption_4,caption_5
    file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license

One sample per row with all its captions. The metadata adds keywords (separated by ';'), the
Freesound id (origin ``freesound:<id>``, unless the file says "Not found"), the license and the
uploader (``manufacturer``) for attribution. The metadata files of v2/v2.1 are ISO-8859-1, not
UTF-8 (``options.metadata_encoding``). Audio: ``<audio_root>/<file_name>``; the official archives
unpack to ``development/``, ``validation/``, ``evaluation/``.

Splits kept straight (LAION's script swapped the last two): development -> train,
validation -> valid, evaluation -> test, from the captions file's name unless the spec says.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.base import Adapter, NativeRow
from clap_corpus.manifests.common import native_split_from_file
from clap_corpus.manifests.options import AdapterOptions, SpecPath
from clap_corpus.manifests.tables import RowError, read_rows, text_value

log = logging.getLogger(__name__)

DEFAULT_DURATION_S = 22.5  # Clotho clips are 15 to 30 s long (Drossos et al., 2020); the midpoint


class Options(AdapterOptions):
    metadata: SpecPath | None = (
        None  # clotho_metadata_<split>.csv (keywords, sound_id, license, manufacturer)
    )
    metadata_encoding: str = "iso-8859-1"  # the encoding v2.1 ships its metadata files in


SPLITS_BY_FILE = {
    "clotho_captions_development": "development",
    "clotho_captions_validation": "validation",
    "clotho_captions_evaluation": "evaluation",
}
DEFAULT_SPLITS = {"development": "train", "validation": "valid", "evaluation": "test"}
_CAPTION_RE = re.compile(r"^caption_(\d+)$")
_DIGITS_RE = re.compile(r"^\d+$")


def load_metadata(path: str, encoding: str) -> dict[str, dict[str, Any]]:
    """file_name -> metadata row (rows that cannot be parsed add nothing)."""
    out: dict[str, dict[str, Any]] = {}
    for item in read_rows(path, "csv", encoding=encoding):
        if isinstance(item, RowError):
            # The clip still has its captions; it only loses keywords, license and attribution.
            log.warning("%s: metadata row %d skipped: %s", path, item.row, item.reason)
            continue
        _, row = item
        name = text_value(row.get("file_name"))
        if name and name not in out:
            out[name] = dict(row)
    return out


class ClothoAdapter(Adapter):
    Options = Options
    options: Options
    split_defaults = DEFAULT_SPLITS

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        source = self.source
        assert source.manifest is not None
        meta_path = self.options.metadata
        metadata = load_metadata(meta_path, self.options.metadata_encoding) if meta_path else {}
        native = native_split_from_file(source.manifest, SPLITS_BY_FILE)
        for item in read_rows(source.manifest, "csv"):
            if isinstance(item, RowError):
                yield item
                continue
            row_no, row = item
            name = text_value(row.get("file_name"))
            if name is None:
                yield self.reject(row_no, Code.MISSING_PATH, "column 'file_name' is empty")
                continue
            caption_cols = sorted((int(m.group(1)), k) for k in row if (m := _CAPTION_RE.match(k)))
            meta = metadata.get(name, {})
            sound_id = text_value(meta.get("sound_id"))
            user, link = text_value(meta.get("manufacturer")), text_value(meta.get("sound_link"))
            keywords = (" ".join(x.split()) for x in str(meta.get("keywords") or "").split(";"))
            yield NativeRow(
                row=row_no,
                id=name,
                audio=name,
                split=native,
                captions=tuple(dict.fromkeys(c for _, k in caption_cols if (c := text_value(row[k])))),
                keywords=tuple(dict.fromkeys(k for k in keywords if k)),
                license=text_value(meta.get("license")),
                attribution=_attribution(name, user, link),
                origin_ids=(f"freesound:{sound_id}",) if sound_id and _DIGITS_RE.match(sound_id) else (),
                original={
                    "file_name": name,
                    **{
                        k: text_value(v)
                        for k, v in sorted(meta.items())
                        if k not in ("file_name", "keywords")
                    },
                },
            )


read_clotho = ClothoAdapter.read


def _attribution(name: str, user: str | None, link: str | None) -> str | None:
    if not user:
        return None
    return f"{name} by {user}" + (f" ({link})" if link else "")
