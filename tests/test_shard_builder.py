"""The shard builder without Beam: real encoded files, real decoding, real tar and Parquet files.

What the shard writer DoFn used to do inside Beam (duplicate keys, one failure one reject, train
copies of held-out audio, the K2C short-clip rule, stats written last, resume by fingerprint) is
checked here on a plain object.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers.audio import write_tone
from helpers.records import make_record

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.layout import Layout
from clap_corpus.core.records import Record
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.stages.audio_input import failure_reject
from clap_corpus.pipeline.stages.duplicates import decoded_digest
from clap_corpus.transforms.heldout import HeldOutAudio
from clap_corpus.transforms.sample import SampleOptions
from clap_corpus.transforms.shard_builder import ShardBuilder
from clap_corpus.transforms.shards import ShardStats, read_stats

RATE = 16_000
TRAIN = ("train",)
FORMATS = ("webdataset", "parquet")
OPTIONS = SampleOptions(store_mel=False)  # the mel views are tested elsewhere; they only cost time here


class WorkerKilled(BaseException):
    """What a killed worker looks like from inside: not an input's failure, so it is not a reject."""


class Reads:
    """The builder's audio reader: counts its calls, and can stand in for a worker killed mid-shard."""

    def __init__(self, kill_at: str | None = None):
        self.keys: list[str] = []
        self.kill_at = kill_at

    def __call__(self, record: Record) -> bytes:
        self.keys.append(record.key)
        if record.key == self.kill_at:
            raise WorkerKilled
        return Path(record.audio.storage_path).read_bytes()


def _builder(out: Path, reads: Reads, formats: tuple[str, ...] = FORMATS) -> ShardBuilder:
    return ShardBuilder(Layout(str(out), "c"), formats, OPTIONS, reads, failure_reject, "spec-fp", TRAIN)


def _members(tar_path: str) -> list[tuple[str, tarfile.TarInfo, bytes]]:
    with tarfile.open(tar_path) as tf:
        return [(m.name, m, tf.extractfile(m).read()) for m in tf.getmembers()]


def _rejects(layout: Layout, split: str, shard: str) -> list[dict]:
    with open(layout.shard_rejects_path(split, shard)) as f:
        return [json.loads(line) for line in f]


def _as_json(stats: ShardStats) -> dict:
    return json.loads(dumps_json(stats.to_json()))  # tuples read back as lists


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def audio(tmp_path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    return folder


def test_one_shard_with_every_kind_of_input(tmp_path, audio):
    junk = audio / "junk.wav"
    junk.write_bytes(b"RIFF this is not audio at all" * 20)
    leaked_pcm = write_tone(audio, "leaked", 660.0)
    k2c_fields = {
        "captions": ("a dog",),
        "k2c_caption": "a dog barks twice",
        "caption_kind": "k2c",
        "text": ("a dog barks twice",),
    }
    records = [
        # arrival order is not key order: the builder sorts
        make_record(
            "d-tone",
            source="lib",
            audio=write_tone(audio, "d", 550.0),
            row=4,
            split="train",
            text=("a tone",),
            caption_kind="source",
        ),
        make_record(
            "a-tone",
            source="lib",
            audio=write_tone(audio, "a", 440.0, fmt="flac"),
            row=1,
            split="train",
            text=("a tone",),
            caption_kind="source",
        ),
        # a second row with the same key
        make_record(
            "a-tone",
            source="lib",
            audio=write_tone(audio, "a2", 445.0),
            row=9,
            split="train",
            text=("a tone",),
            caption_kind="source",
        ),
        make_record(
            "b-junk",
            source="lib",
            audio=str(junk),
            row=2,
            split="train",
            text=("a tone",),
            caption_kind="source",
        ),
        make_record(
            "c-leak",
            source="lib",
            audio=leaked_pcm,
            row=3,
            split="train",
            text=("a tone",),
            caption_kind="source",
        ),
        make_record(
            "e-short",
            source="lib",
            audio=write_tone(audio, "e", 500.0, seconds=0.5),
            row=5,
            split="train",
            **k2c_fields,
            k2c_min_seconds=2.0,
        ),
        make_record(
            "f-long",
            source="lib",
            audio=write_tone(audio, "f", 520.0, seconds=2.5),
            row=6,
            split="train",
            **k2c_fields,
            k2c_min_seconds=2.0,
        ),
    ]
    # the held-out set as the Beam pass builds it: the digest of the same decode
    heldout = HeldOutAudio.build(
        [(decoded_digest(Path(leaked_pcm).read_bytes(), OPTIONS), ("lib", "test", "t-clip"))]
    )
    out = tmp_path / "out"
    stats = _builder(out, Reads()).build("train", "000000", records, heldout)
    layout = Layout(str(out), "c")

    # inputs = samples + rejects, and each reject says why
    assert (stats.samples, stats.rejects) == (4, 3)
    rejects = _rejects(layout, "train", "000000")
    assert [(r["key"], r["row"], r["stage"], r["code"]) for r in rejects] == [
        ("a-tone", 9, "shard", "duplicate_key"),
        ("b-junk", 2, "decode", rejects[1]["code"]),
        ("c-leak", 3, "leakage", "eval_overlap_audio"),
    ]
    assert rejects[1]["path"] == str(junk)
    assert "sample t-clip in split 'test' of source 'lib'" in rejects[2]["reason"]
    assert stats.rejects_by_code == dict(
        sorted({"duplicate_key": 1, rejects[1]["code"]: 1, "eval_overlap_audio": 1}.items())
    )
    assert [k for k, _, _ in stats.overlap_removed] == ["c-leak"]
    assert [k for k, _, _ in stats.audio_hashes] == ["a-tone", "d-tone", "e-short", "f-long"]

    # the tar: key order, flac then json per sample, fixed metadata, nothing of the rejected inputs
    members = _members(layout.tar_path("train", "000000"))
    assert [name for name, _, _ in members] == [
        f"{k}.{s}" for k in ("a-tone", "d-tone", "e-short", "f-long") for s in ("flac", "json")
    ]
    assert {(m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime) for _, m, _ in members} == {
        (0o644, 0, 0, "", "", 0)
    }
    docs = {name: json.loads(data) for name, _, data in members if name.endswith(".json")}
    # the K2C rule: the clip under k2c_min_seconds ships its template caption, the long one its K2C caption
    assert "text_augment_t5" not in docs["e-short.json"] and docs["e-short.json"]["text"] == ["a dog"]
    assert docs["f-long.json"]["text_augment_t5"] == "a dog barks twice"
    assert (stats.k2c_captions, stats.k2c_skipped_short) == (1, 1)
    assert stats.tar_bytes == os.path.getsize(layout.tar_path("train", "000000"))
    assert pq.read_table(layout.parquet_path("train", "000000")).column("key").to_pylist() == [
        "a-tone",
        "d-tone",
        "e-short",
        "f-long",
    ]
    assert stats.audio_seconds_by_source == {"lib": 4.0}
    assert _as_json(read_stats(layout, "train", "000000")) == _as_json(stats)


def test_held_out_audio_is_checked_in_train_splits_only(tmp_path, audio):
    path = write_tone(audio, "x", 700.0)
    heldout = HeldOutAudio.build([(decoded_digest(Path(path).read_bytes(), OPTIONS), ("lib", "test", "t"))])
    stats = _builder(tmp_path / "out", Reads()).build(
        "valid",
        "000000",
        [
            make_record(
                "x", source="lib", audio=path, row=1, split="valid", text=("a tone",), caption_kind="source"
            )
        ],
        heldout,
    )
    assert (stats.samples, stats.rejects, stats.overlap_removed) == (1, 0, ())


def test_a_crash_mid_shard_leaves_no_stats_and_no_final_files(tmp_path, audio):
    records = [
        make_record(
            k,
            source="lib",
            audio=write_tone(audio, k, 400.0 + i * 50),
            row=i + 1,
            split="train",
            text=("a tone",),
            caption_kind="source",
        )
        for i, k in enumerate(["a", "b", "c"])
    ]
    out = tmp_path / "out"
    with pytest.raises(WorkerKilled):
        _builder(out, Reads(kill_at="b")).build("train", "000000", records)
    # not a tar, a Parquet file, a rejects file or a stats file: neither final nor temporary
    assert _files(out) == {}

    # the next attempt builds the whole shard
    stats = _builder(out, Reads()).build("train", "000000", records)
    assert (stats.samples, stats.reused) == (3, False)


def test_resume_skips_a_shard_with_the_same_fingerprint(tmp_path, audio):
    records = [
        make_record(
            k,
            source="lib",
            audio=write_tone(audio, k, 400.0 + i * 50),
            row=i + 1,
            split="train",
            text=("a tone",),
            caption_kind="source",
        )
        for i, k in enumerate(["a", "b"])
    ]
    out = tmp_path / "out"
    first = _builder(out, Reads()).build("train", "000000", records)
    files = _files(out)

    reads = Reads()
    again = _builder(out, reads).build("train", "000000", list(reversed(records)))
    assert reads.keys == [] and again.reused and _as_json(replace(again, reused=False)) == _as_json(first)
    assert _files(out) == files

    # anything the fingerprint covers rebuilds: a record's caption, the held-out set of a train shard
    changed = [replace(records[0], text=("another caption",)), records[1]]
    reads = Reads()
    rebuilt = _builder(out, reads).build("train", "000000", changed)
    assert reads.keys == ["a", "b"] and not rebuilt.reused and rebuilt.fingerprint != first.fingerprint
    checked = _builder(out, Reads()).build("train", "000000", changed, HeldOutAudio.build([]))
    assert not checked.reused and checked.fingerprint != rebuilt.fingerprint


def test_the_tar_is_the_ustar_archive_byte_for_byte(tmp_path, audio):
    """The shard writer writes tarfile's default (PAX), as webdataset's TarWriter did;
    for the names the key rule admits, that is the USTAR archive the writer made before, byte for byte."""
    longest = "k" * 80  # the key rule's maximum: `<key>.mel.npy` is 88 bytes
    records = [
        make_record(
            longest,
            source="lib",
            audio=write_tone(audio, "l", 440.0),
            row=1,
            split="train",
            text=("a tone",),
            caption_kind="source",
        ),
        make_record(
            "s",
            source="lib",
            audio=write_tone(audio, "s", 550.0),
            row=2,
            split="train",
            text=("a tone",),
            caption_kind="source",
        ),
    ]
    out = tmp_path / "out"
    ShardBuilder(
        Layout(str(out), "c"), ("webdataset",), SampleOptions(), Reads(), failure_reject, "fp", TRAIN
    ).build("train", "000000", records)
    path = Layout(str(out), "c").tar_path("train", "000000")
    members = _members(path)
    assert [n for n, _, _ in members] == [
        f"{k}.{s}" for k in (longest, "s") for s in ("flac", "json", "mel.npy")
    ]

    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w|", format=tarfile.USTAR_FORMAT) as tf:
        for name, _, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                len(data),
                0,
                0o644,
                0,
                0,
                "",
                "",
            )
            tf.addfile(info, io.BytesIO(data))
    assert Path(path).read_bytes() == expected.getvalue()


def test_parquet_row_groups_are_cut_by_flac_bytes_too(tmp_path, audio, monkeypatch):
    """Long recordings make big FLACs: a row group is written once its FLAC bytes reach the cap, not
    only after 64 rows, so a writer never buffers a whole shard of them."""
    from clap_corpus.transforms import shards

    noise = [synth.noise("white", 2.0, RATE, seed=i) for i in range(5)]  # noise: FLAC cannot shrink it
    records = []
    for i, wave in enumerate(noise):
        path = audio / f"n{i}.wav"
        path.write_bytes(synth.encode_audio(wave, RATE, "wav"))
        records.append(
            make_record(
                f"n{i}",
                source="lib",
                audio=str(path),
                row=i + 1,
                split="train",
                text=("a tone",),
                caption_kind="source",
            )
        )
    out = tmp_path / "out"
    layout = Layout(str(out), "c")
    _builder(out, Reads()).build("train", "000000", records)
    whole = pq.ParquetFile(layout.parquet_path("train", "000000"))
    assert whole.metadata.num_row_groups == 1
    flac = [len(a["bytes"]) for a in whole.read().column("audio").to_pylist()]

    monkeypatch.setattr(shards, "PARQUET_GROUP_BYTES", int(max(flac) * 1.5))
    cut = tmp_path / "cut"
    _builder(cut, Reads()).build("train", "000000", records)
    f = pq.ParquetFile(Layout(str(cut), "c").parquet_path("train", "000000"))
    sizes = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
    assert sizes == [2, 2, 1]  # each group flushed as its second FLAC took it past 1.5 FLACs
    assert f.read().to_pylist() == whole.read().to_pylist()
