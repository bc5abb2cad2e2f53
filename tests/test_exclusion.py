"""Exclusion lists by origin id (manifests/exclusion.py, the `Exclude` stage): WavCaps' blacklist JSON as
WavCaps publishes it, DCASE-style CSVs of Freesound ids, plain text lists; per source or corpus-wide."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.records import make_record

from clap_corpus.manifests.exclusion import ExclusionListError, excluded, load_lists, read_ids
from clap_corpus.manifests.options import ExclusionList
from clap_corpus.manifests.plan import plan_spec
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.run import format_report, run_corpus
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.pipeline.spec.corpus import SpecError, load_spec

# WavCaps' json_files/blacklist/blacklist_exclude_test_ac.json, in its shape (4-space indent, AudioSet
# entries as AudioSet_SL file names "Y<YTID>.wav", FreeSound ids as strings)
WAVCAPS = {"AudioSet": ["YvfY_TJq7n_U.wav", "Y7fmOlUlwoNg.wav"], "FreeSound": ["166426", "128160"]}


def test_the_formats(tmp_path):
    (tmp_path / "blacklist_exclude_test_ac.json").write_text(json.dumps(WAVCAPS, indent=4))
    assert read_ids(ExclusionList(files=(str(tmp_path / "blacklist_exclude_test_ac.json"),))) == {
        f"{ns}:{i}": str(tmp_path / "blacklist_exclude_test_ac.json")
        for ns, i in [
            ("youtube", "vfY_TJq7n_U"),
            ("youtube", "7fmOlUlwoNg"),
            ("freesound", "166426"),
            ("freesound", "128160"),
        ]
    }
    (tmp_path / "dcase.csv").write_text("sound_id,sound_link\n310101,https://freesound.org/s/310101/\n")
    ids = read_ids(ExclusionList(files=(str(tmp_path / "dcase.csv"),), origin="freesound"))
    assert list(ids) == ["freesound:310101"]
    (tmp_path / "mine.txt").write_text(
        "# clips to leave out\nabc\nbbc:07070114  # a namespace of its own\n\n"
    )
    ids = read_ids(ExclusionList(files=(str(tmp_path / "mine.txt"),), origin="youtube"))
    assert list(ids) == ["youtube:abc", "bbc:07070114"]
    # a list whose ids have no namespace, or a WavCaps key with none, cannot be guessed
    with pytest.raises(ValueError, match="has no namespace: set the list's origin"):
        read_ids(ExclusionList(files=(str(tmp_path / "mine.txt"),)))
    (tmp_path / "odd.json").write_text(json.dumps({"VGGSound": ["x"]}))
    with pytest.raises(ValueError, match="no namespace for key\\(s\\) 'VGGSound': map them with keys"):
        read_ids(ExclusionList(files=(str(tmp_path / "odd.json"),)))
    ids = read_ids(ExclusionList(files=(str(tmp_path / "odd.json"),), keys={"VGGSound": "youtube"}))
    assert list(ids) == ["youtube:x"]


def test_splits_and_sources_a_list_applies_to(tmp_path):
    (tmp_path / "bl.json").write_text(json.dumps(WAVCAPS))
    doc = {
        "corpus": "c",
        "options": {"exclude": [{"files": "bl.json"}]},
        "sources": [
            {"name": "a", "adapter": "filenames", "audio_root": "."},
            {
                "name": "b",
                "adapter": "filenames",
                "audio_root": ".",
                "options": {"exclude": [{"files": "ids.txt", "origin": "freesound", "splits": ["test"]}]},
            },
        ],
    }
    (tmp_path / "ids.txt").write_text("999\n")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    lists = load_lists(load_spec(str(tmp_path / "spec.yaml")))
    hit = excluded(make_record(source="a", split="train", origin_ids=("freesound:166426",)), lists)
    assert hit is not None
    reject, name = hit
    assert (reject.stage, reject.code, name) == ("exclude", "excluded", "bl.json")
    assert reject.reason.startswith("freesound:166426 is on the exclusion list bl.json")
    # the held-out copy stays (default splits: train_splits); other ids pass
    assert excluded(make_record(source="a", split="test", origin_ids=("freesound:166426",)), lists) is None
    assert excluded(make_record(source="a", split="train", origin_ids=("freesound:1",)), lists) is None
    # b's own list applies to b only, in the split it names
    assert excluded(make_record(source="b", split="test", origin_ids=("freesound:999",)), lists) is not None
    assert excluded(make_record(source="b", split="train", origin_ids=("freesound:999",)), lists) is None
    assert excluded(make_record(source="a", split="test", origin_ids=("freesound:999",)), lists) is None
    # a list that cannot be read stops plan and run at start, naming it
    (tmp_path / "bl.json").write_text("[1, 2]")
    with pytest.raises(ExclusionListError, match=r"bl\.json: expected an object of id lists"):
        load_lists(load_spec(str(tmp_path / "spec.yaml")))
    (tmp_path / "bl.json").unlink()
    with pytest.raises(SpecError, match=r"options\.exclude\[0\]\.files: file not found"):
        load_spec(str(tmp_path / "spec.yaml"))


def test_excluded_rejects_end_to_end(tmp_path):
    """Freesound-style metadata of three clips, two on WavCaps' list (one of them in the test split):
    the train copy leaves as an `excluded` reject, the held-out one stays; plan said so before."""
    audio = tmp_path / "audio"
    audio.mkdir()
    lines = ["id,audio_filename,caption_1,split\n"]
    for i, (fs, split) in enumerate([("166426", "train"), ("5", "train"), ("128160", "test")]):
        (audio / f"{fs}.wav").write_bytes(
            synth.encode_audio(synth.tone(300.0 + 50 * i, 1.0, 16000), 16000, "wav")
        )
        lines.append(f"{fs},{fs}.wav,Clip {i}.,{split}\n")
    (tmp_path / "fs.csv").write_text("".join(lines))
    (tmp_path / "blacklist_exclude_test_ac.json").write_text(json.dumps(WAVCAPS, indent=4))
    doc = {
        "corpus": "ex",
        "options": {
            "shard_size": 8,
            "store_mel": False,
            "exclude": [{"files": "blacklist_exclude_test_ac.json"}],
        },
        "sources": [{"name": "g", "adapter": "freesound", "manifest": "fs.csv", "audio_root": "audio"}],
    }
    spec = Path(tmp_path / "spec.yaml")
    spec.write_text(yaml.safe_dump(doc))
    plan = plan_spec(load_spec(str(spec)))
    s = run_corpus(str(spec), str(tmp_path / "out"), ["--runner=FnApiRunner"])
    assert s["accounting_ok"] and s["sources"]["g"]["samples"] == 2  # the test-split copy stays
    assert s["stages"]["exclude"] == {
        "removed": 1,
        "removed_by_list": {"blacklist_exclude_test_ac.json": 1},
        "removed_by_source": {"g": 1},
        "lists": [str(tmp_path / "blacklist_exclude_test_ac.json")],
        "ids": 4,
    }
    assert s["rejects_by_code"] == {"excluded": 1}
    (reject,) = [json.loads(x) for x in (tmp_path / "out" / "rejects" / "manifest" / "g.jsonl").open()]
    assert (reject["stage"], reject["code"], reject["source_id"]) == ("exclude", "excluded", "166426")
    assert plan["exclude"]["removed"] == 1 and plan["sources"]["g"]["rejects_by_code"] == {"excluded": 1}
    printed = format_report(RunSummary.from_json(s))
    assert "exclusion lists: 1 samples removed (blacklist_exclude_test_ac.json 1)" in printed
    assert (
        "1 clips were left out because an exclusion list names them"
        in (tmp_path / "out" / "README.md").read_text()
    )
