"""Wanted vs obtained: a mirror held against its official list (AudioSet segments, Clotho captions)."""

import json
from pathlib import Path

import pytest
import webdataset as wds
import yaml
from datasets import Audio, Dataset, Features, Sequence, Value
from helpers.audio import tone_bytes

from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.options import WantedList
from clap_corpus.manifests.registry import read_source
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.manifests.wanted import read_list
from clap_corpus.pipeline.launch.run import format_report, run_corpus
from clap_corpus.pipeline.outputs.summary_model import RunSummary

SEGMENTS = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=3, num_segs=3, num_unique_labels=2, num_positive_labels=3\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
    '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
    '-0RWZT-miFs, 420.000, 430.000, "/m/03v3yw"\n'
    'idAbsent123, 0.000, 10.000, "/m/09x0r"\n'
)


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def test_audioset_segment_list_header_in_a_comment(tmp_path):
    (tmp_path / "bal.csv").write_text(SEGMENTS)
    listed = list(read_list(WantedList(files=[str(tmp_path / "bal.csv")])))
    assert [(x.row, x.id) for x in listed] == [(1, "--PJHxphWEs"), (2, "-0RWZT-miFs"), (3, "idAbsent123")]


@pytest.fixture
def audioset_mirror(tmp_path) -> Path:
    """agkphysics/AudioSet's shape: Parquet with video_id, audio, labels, human_labels; one clip the
    list does not name."""
    root = tmp_path / "mirror"
    (root / "data").mkdir(parents=True)
    feats = Features(
        {
            "video_id": Value("string"),
            "audio": {"bytes": Value("binary"), "path": Value("string")},
            "labels": Sequence(Value("string")),
            "human_labels": Sequence(Value("string")),
        }
    )
    rows = [
        ("--PJHxphWEs", 330.0, ["/m/09x0r"], ["Speech"]),
        ("-0RWZT-miFs", 440.0, ["/m/03v3yw"], ["Keys jangling"]),
        ("notListed01", 550.0, ["/m/09x0r"], ["Speech"]),
    ]
    ds = Dataset.from_dict(
        {
            "video_id": [r[0] for r in rows],
            "audio": [{"bytes": tone_bytes(r[1]), "path": f"{r[0]}.flac"} for r in rows],
            "labels": [r[2] for r in rows],
            "human_labels": [r[3] for r in rows],
        },
        features=feats,
    ).cast_column("audio", Audio(decode=False))
    ds.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    (tmp_path / "bal.csv").write_text(SEGMENTS)
    return root


def test_hub_mirror_against_audioset_list_end_to_end(tmp_path, audioset_mirror):
    spec = {
        "corpus": "covered",
        "options": {"shard_size": 8, "store_mel": False},
        "sources": [
            {
                "name": "audioset",
                "adapter": "hf_datasets",
                "audio_root": "mirror",
                "split": "train",
                "expected_count": 3,
                "options": {
                    "id_column": "video_id",
                    "label_column": "human_labels",
                    "origin": "youtube",
                    "wanted": {"files": "bal.csv", "origin": "youtube"},
                },
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    s = run_corpus(str(tmp_path / "spec.yaml"), str(out), ["--runner=FnApiRunner"])
    assert s["accounting_ok"]
    src = s["sources"]["audioset"]
    assert (src["inputs"], src["samples"], src["rejects"]) == (3, 2, 1)
    # the mirror's clip the list does not name is left out, and counted
    assert src["coverage"] == {
        "wanted": 3,
        "obtained": 2,
        "missing": 1,
        "obtained_pct": 66.67,
        "not_listed": 1,
        "samples": 2,
    }
    # the printed summary says what plan says
    assert (
        "audioset: the mirror holds 2 of the 3 listed rows (66.67 %), 1 missing (not_in_mirror); "
        "1 mirror clips not on the list left out" in format_report(RunSummary.from_json(s))
    )
    (miss,) = [
        json.loads(x) for x in (out / "rejects" / "manifest" / "audioset.jsonl").read_text().splitlines()
    ]
    assert (miss["code"], miss["source_id"], miss["row"]) == ("not_in_mirror", "idAbsent123", 3)
    assert "listed in bal.csv (line 6) but not in the mirror" in miss["reason"]  # data row 3 is line 6
    assert miss["path"].endswith("bal.csv")
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["sources"]["audioset"]["coverage"]["missing"] == 1
    assert "Coverage of the official lists" in (out / "report" / "index.html").read_text()
    card = (out / "README.md").read_text()
    assert "| audioset | 3 | 2 | 1 | 66.67 % | 1 | 2 | 3 |" in card


def test_webdataset_mirror_against_clotho_captions_by_stem(tmp_path):
    (tmp_path / "clotho_captions_development.csv").write_text(
        "file_name,caption_1,caption_2\n"
        "Distorted AM Radio noise.wav,A radio hisses.,Static.\n"
        "Rain on a roof.wav,Rain falls.,Drops patter.\n"
    )
    tars = tmp_path / "tars"
    tars.mkdir()
    with wds.TarWriter(str(tars / "0.tar")) as w:
        w.write(
            {
                "__key__": "Distorted AM Radio noise",
                "flac": tone_bytes(330.0),
                "json": b'{"text": ["A radio"]}',
            }
        )
        w.write({"__key__": "Something else", "flac": tone_bytes(440.0), "json": b'{"text": ["Other"]}'})
    (tars / "1.tar").write_bytes(
        b"garbage" * 100
    )  # not a tar: it may hold listed clips, so it stays a reject
    source = SourceSpec(
        name="clotho",
        adapter="webdataset",
        audio_root=str(tars),
        options={"wanted": {"files": [str(tmp_path / "clotho_captions_development.csv")]}},
    )
    records, rejects = _split(read_source(source))
    assert [r.source_id for r in records] == ["0/Distorted AM Radio noise"]
    assert sorted((r.code, r.source_id) for r in rejects) == [
        ("not_in_mirror", "Rain on a roof.wav"),
        ("unreadable_metadata", None),
    ]
