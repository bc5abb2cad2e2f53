"""Reading WebDataset tars as a source: listing a tar, and reading one clip out of it, side by side.

Run: ``.venv/bin/python bench/bench_archives.py [--samples 4000] [--member-kb 256] [--reads 200]``.

Writes one uncompressed tar of ``--samples`` samples (``<n>.flac`` of ``--member-kb`` random bytes, and
a small ``<n>.json``), as LAION's tars are, then times:

- listing (what the manifest stage does): the ``webdataset`` adapter, which walks the headers and reads
  the JSON members only, against iterating the tar with the ``webdataset`` library, which reads every
  byte (what a reader that streams the tar does);
- reading clips (what the shard writers do, one clip per call, each call opening the tar afresh):
  ``read_audio_bytes`` of ``--reads`` members spread over the tar, with the header offset the adapter
  recorded, against the same references without it (tarfile then walks every header before the member).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import tempfile
import time

import numpy as np
import webdataset as wds

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.core.records import Record
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.manifests.webdataset import read_webdataset
from clap_corpus.transforms.audio_source import read_audio_bytes


def build(path: str, samples: int, member_kb: int) -> None:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w") as t:
        for n in range(samples):
            for name, data in (
                (f"{n}.flac", rng.bytes(member_kb * 1024)),
                (f"{n}.json", json.dumps({"text": [f"clip {n}"], "tag": ["x"]}).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--member-kb", type=int, default=256)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "000000.tar")
        build(path, args.samples, args.member_kb)
        size_mb = os.path.getsize(path) / 1e6
        t0 = time.perf_counter()
        records = [r for r in read_webdataset(SourceSpec(name="b", adapter="webdataset", audio_root=d))]
        t_adapter = time.perf_counter() - t0
        assert len(records) == args.samples and all(isinstance(r, Record) for r in records)
        t0 = time.perf_counter()
        n_lib = sum(1 for _ in wds.WebDataset(path, shardshuffle=False))
        t_lib = time.perf_counter() - t0
        assert n_lib == args.samples

        picks = np.linspace(0, args.samples - 1, args.reads).astype(int)
        refs = [records[i].audio for i in picks]
        assert all(isinstance(r, ArchiveMember) and r.offset is not None for r in refs)
        t0 = time.perf_counter()
        with_offset = [read_audio_bytes(r) for r in refs]
        t_offset = time.perf_counter() - t0
        t0 = time.perf_counter()
        without = [read_audio_bytes(ArchiveMember(r.archive, r.member)) for r in refs]
        t_scan = time.perf_counter() - t0
        assert with_offset == without

    print(f"tar: {args.samples} samples, {size_mb:.0f} MB; {args.reads} clips read, spread over the tar")
    print(f"{'step':<46}{'ours':>12}{'baseline':>12}{'ratio':>8}")
    print(
        f"{'list the tar (adapter vs webdataset library)':<46}{t_adapter:>11.2f}s{t_lib:>11.2f}s"
        f"{t_lib / t_adapter:>7.1f}x"
    )
    print(
        f"{'read one clip (offset vs header walk), mean':<46}{1e3 * t_offset / args.reads:>10.2f}ms"
        f"{1e3 * t_scan / args.reads:>10.2f}ms{t_scan / t_offset:>7.1f}x"
    )


if __name__ == "__main__":
    main()
