"""The baseline: LAION's way of turning a folder of audio into WebDataset shards.

As LAION's audio-dataset scripts do it: one ``ffmpeg`` CLI process per file (through ffmpeg-python)
converts the file to 48 kHz mono FLAC on disk (16-bit, as our output is), a ``.json`` with the
captions is written next to it, and the folder is then packed into tars of ``shard_size`` samples
with :mod:`tarfile`. Benchmark-only: needs the ``ffmpeg`` binary and ``ffmpeg-python``
(``pip install -e .[bench]``); the product never imports this module.

Run alone: ``.venv/bin/python -m bench.laion_way <bench manifest.jsonl> <output folder>``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor

from bench.corpus import corpus_files


def ffmpeg_available() -> str | None:
    """Why LAION's way cannot run here, or None when it can."""
    if shutil.which("ffmpeg") is None:
        return "no ffmpeg binary on PATH (apt-get install ffmpeg)"
    try:
        import ffmpeg  # noqa: F401
    except ImportError:
        return "ffmpeg-python is not installed (pip install ffmpeg-python)"
    return None


def to_flac(src: str, dst: str) -> None:
    import ffmpeg

    (
        ffmpeg.input(src)
        .output(dst, ac=1, ar=48000, acodec="flac", sample_fmt="s16", vn=None)
        .overwrite_output()
        .run(quiet=True)
    )


def _convert(work: str, path: str, row: dict) -> str | None:
    key = row["id"]
    try:
        to_flac(path, os.path.join(work, f"{key}.flac"))
    except Exception:  # LAION's scripts skip a file ffmpeg cannot convert
        return None
    doc = {"text": row["captions"], "tag": row.get("keywords", []), "original_data": row}
    with open(os.path.join(work, f"{key}.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return key


def laion_way(manifest: str, out: str, shard_size: int = 512, workers: int = 1) -> tuple[int, int]:
    """Convert every clip of a bench ``manifest`` and pack the tars into ``out``; returns (samples, failures).

    ``workers`` ffmpeg processes run at a time (LAION's scripts use a process pool); threads are
    enough to keep them busy, the work happens in the ffmpeg processes.
    """
    work = os.path.join(out, "flac")
    os.makedirs(work, exist_ok=True)
    files = corpus_files(manifest)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(lambda item: _convert(work, *item), files))
    keys = [k for k in done if k is not None]
    failures = len(done) - len(keys)
    sizes = {}
    for start in range(0, len(keys), shard_size):
        name = f"{start // shard_size}.tar"
        with tarfile.open(os.path.join(out, name), "w") as tar:
            for key in keys[start : start + shard_size]:
                for ext in ("flac", "json"):
                    tar.add(os.path.join(work, f"{key}.{ext}"), arcname=f"{key}.{ext}")
        sizes[name] = len(keys[start : start + shard_size])
    with open(os.path.join(out, "sizes.json"), "w", encoding="utf-8") as f:
        json.dump(sizes, f)
    shutil.rmtree(work)
    return len(keys), failures


if __name__ == "__main__":
    missing = ffmpeg_available()
    if missing:
        sys.exit(f"LAION's way cannot run: {missing}")
    print(laion_way(sys.argv[1], sys.argv[2]))
