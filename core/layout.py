"""The on-disk layout of a built corpus: the one place that knows paths and member names.

Writer, summary, readers, trainer and tests all go through here.

    <out>/webdataset/<corpus>/<split>/<shard>.tar     <key>.flac, <key>.json, <key>.mel.npy
    <out>/webdataset/<corpus>/<split>/sizes.json      {"<shard>.tar": n, ...}  (LAION's loader needs it)
    <out>/views/<corpus>/<split>/<shard>.tar          <key>.mel.npy only (formats: views; the
                                                      webdataset tars then carry no mel)
    <out>/parquet/<split>/<shard>.parquet
    <out>/rejects/shards/<split>/<shard>.jsonl        inputs that failed while their shard was built
    <out>/rejects/manifest/<source>.jsonl             inputs that failed before sharding
    <out>/stats/<split>/<shard>.json                  written last: the shard is done once it exists
    <out>/summary.json                                run summary and accounting
    <out>/plan.json                                   records per split, written once shards are cut
    <out>/report/index.html, report.json, *.png       run report
    <out>/README.md                                   dataset card (Hugging Face style)
    <out>/duplicates.jsonl                            groups of samples with identical decoded audio
    <out>/fetch/status/<source>/<shard>.parquet       one row per fetched URL (sources with URLs only)
    <out>/fetch/cache/                                fetched bytes, content-addressed (options.fetch.cache)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clap_corpus.core.paths import join

FLAC = "flac"
JSON = "json"
MEL = "mel.npy"

# Every value that becomes part of an output path or a tar member name - whether it came from the
# spec, a manifest or an adapter - must match its rule here. No rule admits '.', '/', '\\' or NUL,
# so no value can climb out of the output folder or hide a file. Keys also become tar member names
# (`<key>.flac`), which the webdataset library splits at the first dot.
NAME_RULES: dict[str, re.Pattern[str]] = {
    # Mixed case so that a corpus can carry the dataset names LAION-CLAP's loader looks for
    # (`Clotho`, `FSD50K`, `BBCSoundEffects`, `audiocaps`).
    "corpus": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"),
    # Lowercase: `Train` and `train` would be one folder on a case-insensitive disk.
    "source": re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$"),
    "split": re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$"),
    "shard": re.compile(r"^\d{6}$"),
    # Short enough that `<key>.mel.npy` stays far below the 100-byte USTAR name limit.
    "key": re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$"),
}
NAME_RULE_TEXT = {
    "corpus": "letters, digits, '-' or '_', starting with a letter or digit, at most 40",
    "source": "lowercase letters, digits, '-' or '_', starting with a letter or digit, at most 40",
    "split": "lowercase letters, digits, '-' or '_', starting with a letter or digit, at most 40",
    "shard": "six digits",
    "key": "lowercase letters, digits, '-' or '_', starting with a letter or digit, at most 80",
}


class UnsafeName(ValueError):
    """A value that may not become part of an output path."""

    def __init__(self, kind: str, value: object):
        super().__init__(f"{kind} name {value!r} is not usable ({NAME_RULE_TEXT[kind]})")
        self.kind, self.value = kind, value


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a safe ``kind`` name ('corpus', 'source', 'split', 'shard', 'key'); else
    :class:`UnsafeName`."""
    if not isinstance(value, str) or not NAME_RULES[kind].fullmatch(value):
        raise UnsafeName(kind, value)
    return value


SIZES_FILE = "sizes.json"
SUMMARY_FILE = "summary.json"
# `clapcorpus demo --output D` writes its raw source to D/source and builds the corpus into D/corpus
DEMO_CORPUS_FOLDER = "corpus"
PLAN_FILE = "plan.json"
REPORT_DIR = "report"
CARD_FILE = "README.md"
DUPLICATES_FILE = "duplicates.jsonl"
SHARD_NAME_RE = NAME_RULES["shard"]


def shard_name(index: int) -> str:
    return f"{index:06d}"


def member_name(key: str, suffix: str) -> str:
    return f"{check_name('key', key)}.{suffix}"


@dataclass(frozen=True)
class Layout:
    """Paths of one corpus under one output root. Every name it joins is checked (:func:`check_name`):
    adapters' records were already checked, so a failure here is a bug, and it stops the write."""

    root: str
    corpus: str

    def __post_init__(self) -> None:
        check_name("corpus", self.corpus)

    def webdataset_dir(self, split: str) -> str:
        return join(self.root, "webdataset", self.corpus, check_name("split", split))

    def tar_path(self, split: str, shard: str) -> str:
        return join(self.webdataset_dir(split), f"{check_name('shard', shard)}.tar")

    def views_dir(self, split: str) -> str:
        return join(self.root, "views", self.corpus, check_name("split", split))

    def views_tar_path(self, split: str, shard: str) -> str:
        """The sidecar shard of ``tar_path(split, shard)``: the same keys, their ``<key>.mel.npy`` only."""
        return join(self.views_dir(split), f"{check_name('shard', shard)}.tar")

    def sizes_path(self, split: str) -> str:
        return join(self.webdataset_dir(split), SIZES_FILE)

    def parquet_dir(self, split: str) -> str:
        return join(self.root, "parquet", check_name("split", split))

    def parquet_path(self, split: str, shard: str) -> str:
        return join(self.parquet_dir(split), f"{check_name('shard', shard)}.parquet")

    def stats_dir(self) -> str:
        return join(self.root, "stats")

    def stats_path(self, split: str, shard: str) -> str:
        return join(self.stats_dir(), check_name("split", split), f"{check_name('shard', shard)}.json")

    def clap_embeddings_path(self, split: str, shard: str) -> str:
        """The CLAP embeddings of a shard's samples (``options.clap``), beside the shard."""
        return join(self.root, "clap", check_name("split", split), f"{check_name('shard', shard)}.parquet")

    def shard_rejects_path(self, split: str, shard: str) -> str:
        return join(
            self.root, "rejects", "shards", check_name("split", split), f"{check_name('shard', shard)}.jsonl"
        )

    def manifest_rejects_path(self, source: str) -> str:
        return join(self.root, "rejects", "manifest", f"{check_name('source', source)}.jsonl")

    def summary_path(self) -> str:
        return join(self.root, SUMMARY_FILE)

    def plan_path(self) -> str:
        return join(self.root, PLAN_FILE)

    def report_path(self, name: str) -> str:
        return join(self.root, REPORT_DIR, name)

    def card_path(self) -> str:
        return join(self.root, CARD_FILE)

    def duplicates_path(self) -> str:
        return join(self.root, DUPLICATES_FILE)

    def fetch_status_path(self, source: str, shard: str) -> str:
        return join(
            self.root,
            "fetch",
            "status",
            check_name("source", source),
            f"{check_name('shard', shard)}.parquet",
        )

    def fetch_cache_dir(self) -> str:
        return join(self.root, "fetch", "cache")

    def shard_files(self, split: str, shard: str) -> list[str]:
        """Every file a shard owns, stats last (the order they must be written in)."""
        return [
            self.tar_path(split, shard),
            self.parquet_path(split, shard),
            self.shard_rejects_path(split, shard),
            self.stats_path(split, shard),
        ]
