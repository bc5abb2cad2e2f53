"""The on-disk layout of a built corpus: the one place that knows paths and member names.

Writer, summary, readers, trainer and tests all go through here.

    <out>/webdataset/<corpus>/<split>/<shard>.tar     <key>.flac, <key>.json, <key>.mel.npy
    <out>/webdataset/<corpus>/<split>/sizes.json      {"<shard>.tar": n, ...}  (LAION's loader needs it)
    <out>/parquet/<split>/<shard>.parquet
    <out>/rejects/shards/<split>/<shard>.jsonl        inputs that failed while their shard was built
    <out>/rejects/manifest/<source>.jsonl             inputs that failed before sharding
    <out>/stats/<split>/<shard>.json                  written last: the shard is done once it exists
    <out>/summary.json                                run summary and accounting
    <out>/plan.json                                   records per split, written once shards are cut
    <out>/report/index.html, report.json, *.png       run report
    <out>/README.md                                   dataset card (Hugging Face style)
    <out>/duplicates.jsonl                            groups of samples with identical decoded audio
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from transforms.storage import join

FLAC = "flac"
JSON = "json"
MEL = "mel.npy"
MEMBER_SUFFIXES = (FLAC, JSON, MEL)

SIZES_FILE = "sizes.json"
SUMMARY_FILE = "summary.json"
PLAN_FILE = "plan.json"
REPORT_DIR = "report"
CARD_FILE = "README.md"
DUPLICATES_FILE = "duplicates.jsonl"
SHARD_NAME_RE = re.compile(r"^\d{6}$")


def shard_name(index: int) -> str:
    return f"{index:06d}"


def member_name(key: str, suffix: str) -> str:
    return f"{key}.{suffix}"


@dataclass(frozen=True)
class Layout:
    root: str
    corpus: str

    def webdataset_dir(self, split: str) -> str:
        return join(self.root, "webdataset", self.corpus, split)

    def tar_path(self, split: str, shard: str) -> str:
        return join(self.webdataset_dir(split), f"{shard}.tar")

    def sizes_path(self, split: str) -> str:
        return join(self.webdataset_dir(split), SIZES_FILE)

    def parquet_dir(self, split: str) -> str:
        return join(self.root, "parquet", split)

    def parquet_path(self, split: str, shard: str) -> str:
        return join(self.parquet_dir(split), f"{shard}.parquet")

    def stats_dir(self) -> str:
        return join(self.root, "stats")

    def stats_path(self, split: str, shard: str) -> str:
        return join(self.stats_dir(), split, f"{shard}.json")

    def shard_rejects_path(self, split: str, shard: str) -> str:
        return join(self.root, "rejects", "shards", split, f"{shard}.jsonl")

    def manifest_rejects_path(self, source: str) -> str:
        return join(self.root, "rejects", "manifest", f"{source}.jsonl")

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

    def shard_files(self, split: str, shard: str) -> list[str]:
        """Every file a shard owns, stats last (the order they must be written in)."""
        return [
            self.tar_path(split, shard),
            self.parquet_path(split, shard),
            self.shard_rejects_path(split, shard),
            self.stats_path(split, shard),
        ]
