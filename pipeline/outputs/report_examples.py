"""What the run report shows of the data itself: a few rejects per code read back from the reject files, and
the example clips copied next to the page (one seek each in the shards)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.core.layout import FLAC, Layout, member_name
from clap_corpus.transforms import storage
from clap_corpus.transforms.audio_source import read_member

log = logging.getLogger(__name__)


REJECT_EXAMPLES_PER_CODE = 3
# Reading reject files for examples stops after this many bytes: a run with millions of rejects
# must not make its report slow; the codes not reached by then just show no example.
REJECT_EXAMPLE_READ_BYTES = 8 * 1024 * 1024
EXAMPLE_AUDIO_DIR = "audio"


def reject_files(layout: Layout) -> list[str]:
    """Every reject file of the run: before sharding (per source), then per shard, in name order."""
    root = storage.join(layout.root, "rejects")
    return sorted(storage.match(storage.join(root, "manifest", "*.jsonl"))) + sorted(
        storage.match(storage.join(root, "shards", "*", "*.jsonl"))
    )


def reject_examples(layout: Layout, rejects_by_code: Mapping[str, int]) -> dict[str, list[dict[str, Any]]]:
    """A few rejects per code, each with the reject file it came from (relative to the output)."""
    wanted = {code for code, n in rejects_by_code.items() if n}
    found: dict[str, list[dict[str, Any]]] = {}
    read = 0
    for path in reject_files(layout):
        if not wanted or read > REJECT_EXAMPLE_READ_BYTES:
            break
        try:
            text = storage.read_text(path)
        except OSError:
            continue
        read += len(text)
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a damaged line (the files are written atomically, but can be edited): skip it
            code = doc.get("code")
            if code not in wanted:
                continue
            found.setdefault(code, []).append({**doc, "file": _relative(layout.root, path)})
            if len(found[code]) >= REJECT_EXAMPLES_PER_CODE:
                wanted.discard(code)
    return dict(sorted(found.items()))


def _relative(root: str, path: str) -> str:
    return path[len(root) :].lstrip("/") if path.startswith(root) else path


def write_example_audio(layout: Layout, examples: Mapping[str, list[Mapping[str, Any]]]) -> list[str]:
    """Copy the example samples' FLAC out of their tars into ``report/audio/``; return the keys copied.

    One seek per example (the shard writer recorded where the FLAC member lies), so a report over
    gigabyte shards on a bucket reads a few hundred kilobytes. A shard that is gone, or a run without
    tars, just leaves its examples without a player."""
    copied = []
    for found in examples.values():
        for e in found:
            if e.get("flac_offset") is None:
                continue
            ref = ArchiveMember(
                layout.tar_path(e["split"], e["shard"]), member_name(e["key"], FLAC), e["flac_offset"]
            )
            try:
                flac = read_member(ref)
            except OSError:
                log.warning("report: no audio for example %s", ref, exc_info=True)
                continue
            storage.write_bytes_atomic(layout.report_path(f"{EXAMPLE_AUDIO_DIR}/{e['key']}.flac"), flac)
            copied.append(e["key"])
    # An earlier run's examples that are not this run's go: the folder holds what the page shows.
    kept = {layout.report_path(f"{EXAMPLE_AUDIO_DIR}/{key}.flac") for key in copied}
    old = [p for p in storage.match(layout.report_path(f"{EXAMPLE_AUDIO_DIR}/*.flac")) if p not in kept]
    if old:
        storage.delete(old)
    return sorted(copied)


def prune_clap_excerpts(layout: Layout, clap: Mapping[str, Any] | None) -> None:
    """Remove the CLAP excerpts (written by the run) that this report does not play."""
    folder = (clap or {}).get("excerpt_dir", "audio/clap")
    kept = {layout.report_path(f"{folder}/{key}.opus") for key in (clap or {}).get("excerpts", {})}
    old = [p for p in storage.match(layout.report_path(f"{folder}/*.opus")) if p not in kept]
    if old:
        storage.delete(old)
