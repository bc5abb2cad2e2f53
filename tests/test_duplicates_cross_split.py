"""Exact duplicates across splits: a train copy of held-out audio is left out of the train shards.

Real files (the same PCM as WAV and as FLAC, in train, valid and test), real FnApiRunner runs."""

import glob
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from helpers.records import make_record

from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.run import format_report, run_corpus
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.pipeline.spec.corpus import SpecError, parse_spec
from clap_corpus.transforms.heldout import HeldOutAudio, overlap_removal

TRAIN = ("train", "balanced_train", "unbalanced_train")
RATE = 16_000


def test_held_out_set_and_removal_rule():
    pairs = [("d1", ("lib", "valid", "v1")), ("d1", ("lib", "test", "t1")), ("d2", ("other", "test", "x"))]
    heldout = HeldOutAudio.build(pairs)
    # several held-out copies: the smallest (source, split, key) is named, whatever the arrival order
    assert heldout.holders == {"d1": ("lib", "test", "t1"), "d2": ("other", "test", "x")}
    assert HeldOutAudio.build(reversed(pairs)) == heldout
    assert HeldOutAudio.build(pairs[:2]).fingerprint != heldout.fingerprint
    assert HeldOutAudio.build([]).holders == {}

    out = overlap_removal(make_record("k", source="lib", row=3, split="train"), "d1", heldout, TRAIN)
    assert (out.stage, out.code, out.key, out.row, out.source) == (
        "leakage",
        "eval_overlap_audio",
        "k",
        3,
        "lib",
    )
    assert (
        out.reason
        == "same decoded audio as sample t1 in split 'test' of source 'lib'; removed from split 'train'"
    )
    assert (
        overlap_removal(make_record("k", source="lib", row=3, split="train"), "d3", heldout, TRAIN) is None
    )  # audio not held out
    assert (
        overlap_removal(make_record("k", source="lib", row=3, split="valid"), "d1", heldout, TRAIN) is None
    )  # held-out copies stay
    assert (
        overlap_removal(make_record("k", source="lib", row=3, split="dev"), "d1", heldout, ("train", "dev"))
        is not None
    )  # train_splits rule


@pytest.mark.parametrize("value", ["drop", True])
def test_the_option_is_checked(tmp_path, value):
    doc = {
        "corpus": "x",
        "options": {"cross_split_duplicates": value},
        "sources": [{"name": "a", "adapter": "filenames", "audio_root": str(tmp_path)}],
    }
    with pytest.raises(SpecError, match=r"options\.cross_split_duplicates"):
        parse_spec(doc, str(tmp_path / "spec.yaml"))
    doc["options"] = {}
    assert parse_spec(doc, str(tmp_path / "spec.yaml")).options.cross_split_duplicates == "remove"


def _pcm(freq: float):
    return synth.tone(freq, 1.0, RATE)


def _add_clip(root: Path, name: str, pcm, split: str) -> None:
    """One real encoded file and its manifest row (id: the file name with '.' as '_')."""
    fmt = name.rsplit(".", 1)[1]
    (root / "raw" / name).write_bytes(synth.encode_audio(pcm, RATE, fmt))
    row = {"audio": name, "id": name.replace(".", "_"), "split": split, "captions": ["a tone"]}
    with open(root / "raw" / "manifest.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _write_corpus(root: Path, **options) -> Path:
    """Source "tones" with explicit splits, source "library" (file names, all train). Audio A: three
    train copies (WAV, FLAC, the library's FLAC), one valid (FLAC), one test (WAV). Audio B: twice in
    train only. Two more distinct clips."""
    (root / "raw").mkdir(parents=True)
    (root / "library").mkdir()
    a, b = _pcm(440.0), _pcm(550.0)
    for name, pcm, split in (
        ("a_train.wav", a, "train"),
        ("a_train.flac", a, "train"),
        ("a_valid.flac", a, "valid"),
        ("a_test.wav", a, "test"),
        ("b_one.wav", b, "train"),
        ("b_two.flac", b, "train"),
        ("unique.wav", _pcm(660.0), "train"),
        ("held.flac", _pcm(770.0), "test"),
    ):
        _add_clip(root, name, pcm, split)
    (root / "library" / "Tone_Copy.flac").write_bytes(synth.encode_audio(a, RATE, "flac"))
    spec = {
        "corpus": "xsplit",
        "options": {"shard_size": 2, "store_mel": False, **options},
        "sources": [
            {"name": "tones", "adapter": "generic", "manifest": "raw/manifest.jsonl", "audio_root": "raw"},
            {"name": "library", "adapter": "filenames", "audio_root": "library", "split": "train"},
        ],
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


def _run(spec: Path, out: Path) -> dict:
    return run_corpus(str(spec), str(out), ["--runner=FnApiRunner"])


def _shipped(out: Path) -> dict[str, tuple[str, str]]:
    """source_id -> (split, key) of every sample in the Parquet shards."""
    return {
        row["source_id"]: (row["split"], row["key"])
        for p in sorted(glob.glob(f"{out}/parquet/*/*.parquet"))
        for row in pq.read_table(p, columns=["key", "source_id", "split"]).to_pylist()
    }


def _shard_rejects(out: Path) -> list[dict]:
    return [
        json.loads(line)
        for p in sorted(glob.glob(f"{out}/rejects/shards/*/*.jsonl"))
        for line in Path(p).read_text().splitlines()
    ]


def _files(root: Path) -> dict[str, bytes]:
    return {
        os.path.relpath(p, root): Path(p).read_bytes()
        for p in glob.glob(f"{root}/**/*", recursive=True)
        if p.endswith((".tar", ".parquet", ".jsonl", "sizes.json"))
    }


def _same_files(a: Path, b: Path) -> None:
    first, second = _files(a), _files(b)
    assert first.keys() == second.keys() and [k for k in first if first[k] != second[k]] == []


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("xsplit")
    spec = _write_corpus(root)
    out = root / "out"
    return spec, out, _run(spec, out)


A_COPIES = {"a_train_wav", "a_train_flac", "a_valid_flac", "a_test_wav", "Tone_Copy.flac"}


def test_train_copies_of_held_out_audio_become_rejects(built):
    _, out, s = built
    assert s["accounting_ok"] and (s["inputs"], s["samples"], s["rejects"]) == (9, 6, 3)
    shipped = _shipped(out)
    assert {sid: split for sid, (split, _) in shipped.items() if sid in A_COPIES} == {
        "a_valid_flac": "valid",
        "a_test_wav": "test",
    }
    assert {"b_one_wav", "b_two_flac", "unique_wav", "held_flac"} <= set(shipped)  # train-only copies stay
    rejects = _shard_rejects(out)
    assert sorted((j["source_id"], j["stage"], j["code"]) for j in rejects) == [
        ("Tone_Copy.flac", "leakage", "eval_overlap_audio"),
        ("a_train_flac", "leakage", "eval_overlap_audio"),
        ("a_train_wav", "leakage", "eval_overlap_audio"),
    ]
    test_key = shipped["a_test_wav"][1]  # of the two held-out copies, the smallest (source, split, key)
    assert all(
        j["reason"] == f"same decoded audio as sample {test_key} in split 'test' of source 'tones'; "
        "removed from split 'train'"
        for j in rejects
    )
    assert s["rejects_by_code"] == {"eval_overlap_audio": 3}
    assert s["sources"]["library"]["rejects_in_shards"] == 1


def test_the_summary_the_report_and_the_list_show_the_cross_split_group(built):
    _, out, s = built
    shipped = _shipped(out)
    dup = s["stages"]["duplicates"]
    assert (dup["mode"], dup["groups"], dup["samples_in_groups"], dup["removed"]) == ("report", 2, 7, 3)
    cross = dup["cross_split"]
    assert (cross["mode"], cross["groups"], cross["train_copies_removed"]) == ("remove", 1, 3)
    assert cross["removed_by_source"] == {"library": 1, "tones": 2}
    (group,) = cross["listed"]
    assert group["splits"] == ["test", "train", "valid"] and group["removed"] == 3
    assert [(m["key"], m["split"], m["kept"]) for m in group["samples"]][:2] == [
        (shipped["a_test_wav"][1], "test", True),
        (shipped["a_valid_flac"][1], "valid", True),
    ]
    assert [(m["source"], m["split"], m["kept"]) for m in group["samples"]][2:] == [
        ("tones", "train", False),
        ("tones", "train", False),
        ("library", "train", False),
    ]
    listed = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert {k: v for k, v in group.items() if k != "removed"} in listed
    printed = format_report(RunSummary.from_json(s))
    assert (
        "duplicates across splits (remove): 1 groups, 3 train copies removed (library 1, tones 2)" in printed
    )
    assert f"test/train/valid: {shipped['a_test_wav'][1]}, {shipped['a_valid_flac'][1]}, " in printed
    # train copies of held-out audio have their own line, apart from the id guard's
    assert "leakage guard: 3 train samples removed by exact audio (eval_overlap_audio)" in printed
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["removals"]["duplicates"] == 3
    page = (out / "report" / "index.html").read_text()
    removed_key = group["samples"][-1]["key"]
    assert "Duplicates across splits" in page and f"{removed_key} (library/train, removed)" in page


def test_rerun_is_byte_identical_and_resume_reuses_every_shard(built, tmp_path):
    spec, out, s = built
    again = _run(spec, tmp_path / "fresh")
    _same_files(out, tmp_path / "fresh")
    assert again["stages"]["duplicates"]["cross_split"] == s["stages"]["duplicates"]["cross_split"]
    resumed = _run(spec, tmp_path / "fresh")
    assert resumed["shards_skipped_as_complete"] == sum(v["shards"] for v in resumed["splits"].values())
    _same_files(out, tmp_path / "fresh")


def test_a_new_held_out_clip_rebuilds_the_train_shards_on_resume(tmp_path):
    """The train shards were checked against the held-out audio: a held-out row added to the manifest
    (same spec, same train records) must not let a resumed run reuse them."""
    spec = _write_corpus(tmp_path)
    out = tmp_path / "out"
    assert _run(spec, out)["rejects"] == 3
    _add_clip(tmp_path, "b_test.wav", _pcm(550.0), "test")  # audio B is now held out too
    s = _run(spec, out)
    assert s["accounting_ok"] and (s["inputs"], s["samples"], s["rejects"]) == (10, 5, 5)
    assert not {"b_one_wav", "b_two_flac"} & set(_shipped(out))
    assert s["rejects_by_code"] == {"eval_overlap_audio": 5}
    assert s["shards_skipped_as_complete"] == s["splits"]["valid"]["shards"]  # only valid was unchanged
    _run(spec, tmp_path / "fresh")
    _same_files(out, tmp_path / "fresh")


def test_report_mode_keeps_every_copy_and_lists_the_group(tmp_path):
    s = _run(_write_corpus(tmp_path, cross_split_duplicates="report"), tmp_path / "out")
    assert s["accounting_ok"] and (s["samples"], s["rejects"]) == (9, 0)
    cross = s["stages"]["duplicates"]["cross_split"]
    assert (cross["mode"], cross["groups"], cross["train_copies_removed"], cross["samples_in_groups"]) == (
        "report",
        1,
        0,
        5,
    )
    assert all(m["kept"] for m in cross["listed"][0]["samples"])
