"""Hugging Face `datasets` sources (real datasets built here), and duplicate removal end to end."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Value
from helpers.audio import tone_bytes

from clap_corpus.core.audio_ref import EmbeddedCell, LocalFile
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.hf_datasets import read_hf_dataset
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.stages.duplicates import _DecideFn
from clap_corpus.transforms import storage
from clap_corpus.transforms.audio_source import read_audio_bytes
from clap_corpus.transforms.flac import decode_flac

FEATURES = Features(
    {
        "audio": {"bytes": Value("binary"), "path": Value("string")},
        "caption": Value("string"),
        "label": ClassLabel(names=["dog", "cat"]),
        "license": Value("string"),
    }
)


def _dataset(rows: list[dict]) -> Dataset:
    # Built as a plain struct, then cast: encoding into Audio() would need torchcodec, casting does not.
    cols = {k: [r[k] for r in rows] for k in FEATURES}
    return Dataset.from_dict(cols, features=FEATURES).cast_column("audio", Audio(decode=False))


CLIPS = {
    name: tone_bytes(f) for name, f in {"a": 330.0, "b": 440.0, "c": 550.0, "d": 660.0, "e": 770.0}.items()
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A DatasetDict written by save_to_disk: train a, b, c; test d (all embedded)."""
    root = tmp_path_factory.mktemp("hf") / "saved"
    row = lambda n, cap, lab, lic: {  # noqa: E731
        "audio": {"bytes": CLIPS[n], "path": f"{n}.flac"},
        "caption": cap,
        "label": lab,
        "license": lic,
    }
    DatasetDict(
        {
            "train": _dataset(
                [row("a", "A low tone", 0, "CC0"), row("b", "A tone", 1, None), row("c", "Hi", 0, None)]
            ),
            "test": _dataset([row("d", "A held-out tone", 1, "CC-BY-4.0")]),
        }
    ).save_to_disk(str(root))
    return root


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def test_saved_dataset_dict(saved):
    records, rejects = _split(
        read_hf_dataset(SourceSpec(name="hf", adapter="hf_datasets", audio_root=str(saved)))
    )
    assert not rejects
    assert [(r.split, r.captions, r.labels, r.license, r.row) for r in records] == [
        ("train", ("A low tone",), ("dog",), "CC0", 1),
        ("train", ("A tone",), ("cat",), None, 2),
        ("train", ("Hi",), ("dog",), None, 3),
        ("test", ("A held-out tone",), ("cat",), "CC-BY-4.0", 4),
    ]
    first = records[0]
    assert first.audio == EmbeddedCell(f"{saved}/train/data-00000-of-00001.arrow", "audio", 0)
    # rejects name it as they always did
    assert str(first.audio) == f"{saved}/train/data-00000-of-00001.arrow::audio::0"
    assert first.original == {
        "dataset_file": "train/data-00000-of-00001.arrow",
        "dataset_row": 0,
        "audio_path": "a.flac",
    }
    # the reference reads back exactly the embedded bytes
    for r, name in zip(records, "abcd", strict=True):
        assert read_audio_bytes(r.audio) == CLIPS[name]
    with pytest.raises(storage.FileTooLarge):
        read_audio_bytes(first.audio, max_bytes=100)


def test_hub_parquet_files_embedded_path_and_missing_audio(tmp_path):
    root = tmp_path / "hub"
    (root / "data").mkdir(parents=True)
    (root / "clips").mkdir()
    (root / "clips" / "e.flac").write_bytes(CLIPS["e"])
    train = _dataset(
        [{"audio": {"bytes": CLIPS["a"], "path": "a.flac"}, "caption": "A", "label": 0, "license": None}]
    )
    train.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    mixed = _dataset(
        [
            {"audio": {"bytes": None, "path": "clips/e.flac"}, "caption": "E", "label": 1, "license": None},
            {"audio": {"bytes": None, "path": None}, "caption": "none", "label": 1, "license": None},
            {
                "audio": {"bytes": None, "path": "../../etc/passwd"},
                "caption": "x",
                "label": -1,
                "license": None,
            },
        ]
    )
    pq.write_table(mixed.data.table, root / "data" / "validation-00000-of-00001.parquet")
    src = SourceSpec(
        name="hub", adapter="hf_datasets", audio_root=str(root), split_map={"validation": "valid"}
    )
    records, rejects = _split(read_hf_dataset(src))
    assert [(r.split, r.captions, r.audio) for r in records] == [
        ("train", ("A",), EmbeddedCell(f"{root}/data/train-00000-of-00001.parquet", "audio", 0)),
        ("valid", ("E",), LocalFile(str(root / "clips" / "e.flac"))),
    ]
    assert read_audio_bytes(records[0].audio) == CLIPS["a"]
    assert [(j.row, j.code) for j in rejects] == [(3, "missing_audio"), (4, "outside_root")]


def test_a_file_named_like_a_cell_reference_is_read_as_a_file(saved, tmp_path):
    """The kind of a reference is its type, not a pattern in a string: a local file whose name looks
    like a cell of a dataset file is that file (a string-matched reference read the cell instead)."""
    cell = EmbeddedCell(str(saved / "train" / "data-00000-of-00001.arrow"), "audio", 1)
    lookalike = tmp_path / "data-00000-of-00001.arrow::audio::1"
    lookalike.write_bytes(b"the file's own bytes")
    assert read_audio_bytes(cell) == CLIPS["b"]
    assert read_audio_bytes(LocalFile(str(lookalike))) == b"the file's own bytes"
    with pytest.raises(FileNotFoundError):
        read_audio_bytes(EmbeddedCell(cell.file, "audio", 99))


def test_drop_all_removes_every_copy():
    r = [
        Record(key=k, source=s, source_id=k, audio=LocalFile("x"), row=1, split=sp)
        for k, s, sp in (("k2", "b", "train"), ("k1", "a", "train"), ("k3", "b", "test"))
    ]
    out = list(_DecideFn("drop_all", {"a": 0, "b": 1}, ("train",)).process(("digest", r)))
    rejects = [o.value for o in out if getattr(o, "tag", None) == "rejects"]
    (group,) = [o.value for o in out if getattr(o, "tag", None) == "groups"]
    assert len(rejects) == 3 and all(j.code == "duplicate_audio" and j.stage == "duplicate" for j in rejects)
    assert [m["key"] for m in group["samples"]] == ["k3", "k1", "k2"]  # held out first, then spec order
    assert not any(m["kept"] for m in group["samples"])
    kept = list(_DecideFn("keep_first", {"a": 0, "b": 1}, ("train",)).process(("digest", r)))
    assert [o.key for o in kept if isinstance(o, Record)] == ["k3"]


def test_hf_source_and_keep_first_duplicates_end_to_end(saved, tmp_path):
    """keep_first: a copy in a held-out split wins over a training copy; otherwise the first source."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "Low_Tone_Copy.flac").write_bytes(CLIPS["a"])  # = hf train "a": this source is listed first
    (extra / "Held_Out_Copy.flac").write_bytes(CLIPS["d"])  # = hf test "d": the held-out copy wins
    (extra / "Unique_Tone.wav").write_bytes(tone_bytes(880.0, fmt="wav"))
    spec = {
        "corpus": "hfdemo",
        "options": {"shard_size": 4, "duplicates": "keep_first", "store_mel": False},
        "sources": [
            {"name": "extra", "adapter": "filenames", "audio_root": str(extra), "split": "train"},
            {"name": "hf", "adapter": "hf_datasets", "audio_root": str(saved)},
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    s = run_corpus(str(tmp_path / "spec.yaml"), str(out), ["--runner=FnApiRunner"])
    assert s["accounting_ok"]
    assert {n: (v["inputs"], v["samples"], v["rejects"]) for n, v in s["sources"].items()} == {
        "extra": (3, 2, 1),
        "hf": (4, 3, 1),
    }
    dup = s["stages"]["duplicates"]
    assert (dup["mode"], dup["groups"], dup["removed"], dup["groups_across_train_and_heldout"]) == (
        "keep_first",
        2,
        2,
        1,
    )
    groups = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    kept = {m["source"] + ":" + m["split"] for g in groups for m in g["samples"] if m["kept"]}
    assert kept == {"extra:train", "hf:test"}
    rejects = [
        json.loads(x)
        for p in (out / "rejects" / "manifest").glob("*.jsonl")
        for x in p.read_text().splitlines()
    ]
    assert sorted((r["source"], r["code"]) for r in rejects) == [
        ("extra", "duplicate_audio"),
        ("hf", "duplicate_audio"),
    ]
    removed_hf = next(r for r in rejects if r["source"] == "hf")
    assert (
        removed_hf["source_id"] == "train/data-00000-of-00001.arrow:0"
        and "source 'extra'" in removed_hf["reason"]
    )
    # the embedded audio went through decode and FLAC like any file
    rows = pq.read_table(out / "parquet" / "test").to_pylist()
    assert [r["text"] for r in rows] == [["A held-out tone"]] and rows[0]["license"] == "CC-BY-4.0"
    pcm, rate = decode_flac(rows[0]["audio"]["bytes"])
    assert rate == 48000 and abs(len(pcm) - 48000) < 50 and np.abs(pcm).max() > 10000
